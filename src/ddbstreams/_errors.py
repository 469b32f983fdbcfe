"""The exception tree of ddbstreams.

Every error the library raises on purpose derives from :class:`DDBStreamsError`. AWS error
codes are mapped to these classes in exactly one place (``ddbstreams.client._streams``); nothing
else inspects botocore exceptions.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "AccessDeniedError",
    "CheckpointConflictError",
    "CheckpointError",
    "CheckpointFileError",
    "ConditionFailedError",
    "ConfigurationError",
    "CredentialsError",
    "DDBStreamsError",
    "EndpointConnectionError",
    "ExpiredIteratorError",
    "InvalidPositionError",
    "InvalidStreamArnError",
    "LeaseLostError",
    "LeaseTableError",
    "LocalEngineError",
    "MalformedRecordError",
    "ServiceError",
    "ShardNotFoundError",
    "StreamNotEnabledError",
    "StreamNotFoundError",
    "TableNotFoundError",
    "ThrottledError",
    "TrimmedDataError",
    "UnexpectedResponseError",
    "ValidationError",
]


class DDBStreamsError(Exception):
    """Base class of every error raised by ddbstreams."""


class ConfigurationError(DDBStreamsError, ValueError):
    """An argument given to ddbstreams is invalid before any call is made."""


class InvalidStreamArnError(ConfigurationError):
    """A string passed as a stream is neither a valid stream ARN nor a valid table name."""


class InvalidPositionError(ConfigurationError):
    """A start position cannot be used: malformed sequence number, or no shard holds it."""


class CheckpointError(DDBStreamsError):
    """A checkpoint is corrupt, belongs to another stream, or cannot be stored."""


class CheckpointFileError(CheckpointError):
    """A checkpoint file that cannot be used at all: not a SQLite database, another
    application's database, a directory, or a layout this version does not know.

    Nothing in it can be read, reset or written; ``path`` is the file. To start over, move
    it out of the way (or use another file): a missing file holds no checkpoints.
    """

    def __init__(self, message: str, path: os.PathLike[str] | str) -> None:
        super().__init__(message)
        self.path = Path(path)


class CheckpointConflictError(CheckpointError):
    """Another process saved a newer checkpoint under the same name and stream: the save
    was refused so that neither overwrites the other."""


class ConditionFailedError(DDBStreamsError):
    """A conditional write to a state table was refused: its condition did not hold
    (ConditionalCheckFailedException). Checkpoint stores turn it into a CheckpointError."""


class LeaseLostError(DDBStreamsError):
    """A conditional write to a lease found it owned by another worker, or its counter moved
    on since this worker last wrote it: the lease is no longer this worker's (fencing).

    Stop processing the shard; whatever was not checkpointed will be read again by the
    lease's new owner.
    """


class LeaseTableError(DDBStreamsError):
    """A lease table (or its workers table) is unusable: another key schema than a lease
    table's, or an item that cannot be read as a lease (the message names the table, the
    item's key and the attribute)."""


class StreamNotFoundError(DDBStreamsError):
    """The stream does not exist (ResourceNotFoundException on a stream ARN)."""


class ShardNotFoundError(DDBStreamsError):
    """A shard named in a request is not part of the stream (it may have been trimmed)."""


class TableNotFoundError(DDBStreamsError):
    """The source table named in place of a stream ARN does not exist."""


class StreamNotEnabledError(DDBStreamsError):
    """The source table exists but has no stream enabled."""


class ExpiredIteratorError(DDBStreamsError):
    """A shard iterator is older than 15 minutes (ExpiredIteratorException)."""


class TrimmedDataError(DDBStreamsError):
    """The requested records are older than the 24-hour retention (TrimmedDataAccessException)."""


class ThrottledError(DDBStreamsError):
    """The service kept throttling (LimitExceeded/Throttling) after every retry was spent."""


class ServiceError(DDBStreamsError):
    """The service failed (InternalServerError, 5xx, unknown error code) after retries."""


class UnexpectedResponseError(ServiceError):
    """A response could not be understood: not JSON, or JSON of another shape than the
    operation returns (an endpoint that is not DynamoDB, a proxy's HTML page...)."""


class ValidationError(DDBStreamsError):
    """The service rejected a request as invalid (ValidationException)."""


class AccessDeniedError(DDBStreamsError):
    """The credentials in use are not allowed to make this call."""


class CredentialsError(DDBStreamsError):
    """No AWS credentials were found, or they were rejected as unknown or malformed."""


class EndpointConnectionError(DDBStreamsError):
    """The endpoint could not be reached (connection refused, DNS failure, timeout)."""


class MalformedRecordError(DDBStreamsError, ValueError):
    """A GetRecords response or a stream record could not be decoded (says what is wrong)."""


class LocalEngineError(DDBStreamsError):
    """DynamoDB Local could not be installed, started or stopped."""
