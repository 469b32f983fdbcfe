"""ddbstreams: read Amazon DynamoDB Streams from Python.

Correct shard lineage, single-pass readers, typed records and checkpoints, over an async
core (:class:`StreamReader`) with a blocking facade (:func:`read`). See the README for a
tour; ``ddbstreams.testing`` has a stream simulator and pytest fixtures, and
``ddbstreams.local`` manages DynamoDB Local.
"""

from ddbstreams._backoff import RetryPolicy
from ddbstreams._client import StreamsClient
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._decode import DefaultParser, RawParser, parse_lambda_event
from ddbstreams._errors import (
    AccessDeniedError,
    CheckpointError,
    ConfigurationError,
    CredentialsError,
    DDBStreamsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidPositionError,
    InvalidStreamArnError,
    LocalEngineError,
    ServiceError,
    ShardNotFoundError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
    ValidationError,
)
from ddbstreams._lineage import ShardGraph
from ddbstreams._model import (
    Record,
    RecordsPage,
    Shard,
    StreamDescription,
    StreamSummary,
    UserIdentity,
)
from ddbstreams._parser import Parser
from ddbstreams._position import (
    LATEST,
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    Checkpoint,
    Latest,
    ShardStart,
    StartPosition,
    TrimHorizon,
    after_sequence,
    at_sequence,
)
from ddbstreams._reader import ReaderOptions, StreamReader
from ddbstreams._sync import BlockingStreamReader, read

__version__ = "0.1.0"

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "AccessDeniedError",
    "AfterSequence",
    "AtSequence",
    "BlockingStreamReader",
    "Checkpoint",
    "CheckpointError",
    "Clock",
    "ConfigurationError",
    "CredentialsError",
    "DDBStreamsError",
    "DefaultParser",
    "EndpointConnectionError",
    "ExpiredIteratorError",
    "InvalidPositionError",
    "InvalidStreamArnError",
    "Latest",
    "LocalEngineError",
    "Parser",
    "RawParser",
    "ReaderOptions",
    "Record",
    "RecordsPage",
    "RetryPolicy",
    "ServiceError",
    "Shard",
    "ShardGraph",
    "ShardNotFoundError",
    "ShardStart",
    "StartPosition",
    "StreamDescription",
    "StreamNotEnabledError",
    "StreamNotFoundError",
    "StreamReader",
    "StreamSummary",
    "StreamsClient",
    "SystemClock",
    "TableNotFoundError",
    "ThrottledError",
    "TrimHorizon",
    "TrimmedDataError",
    "UserIdentity",
    "ValidationError",
    "__version__",
    "after_sequence",
    "at_sequence",
    "parse_lambda_event",
    "read",
]
