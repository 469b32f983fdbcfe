"""ddbstreams: read Amazon DynamoDB Streams from Python."""

from ddbstreams._errors import *  # noqa: F403  (re-exported; final __all__ below)
