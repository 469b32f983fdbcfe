"""ddbstreams: read Amazon DynamoDB Streams from Python.

Correct shard lineage, single-pass readers, typed records and checkpoints, over an async
core (:class:`StreamReader`) with a blocking facade (:func:`read`). See the README for a
tour; ``ddbstreams.testing`` has a stream simulator and pytest fixtures, and
``ddbstreams.local`` manages DynamoDB Local.
"""

from ddbstreams._backoff import RetryPolicy
from ddbstreams._client import RetryNotice, StreamsClient
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._consumer import (
    Consumer,
    ConsumerOptions,
    FailedBatch,
    JsonLinesDestination,
    LambdaContext,
    lambda_handler,
    record_to_lambda,
)
from ddbstreams._decode import (
    DefaultParser,
    RawParser,
    decode_map,
    decode_value,
    parse_lambda_event,
)
from ddbstreams._errors import (
    AccessDeniedError,
    CheckpointError,
    ConditionFailedError,
    ConfigurationError,
    CredentialsError,
    DDBStreamsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidPositionError,
    InvalidStreamArnError,
    LocalEngineError,
    MalformedRecordError,
    ServiceError,
    ShardNotFoundError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
    ValidationError,
)
from ddbstreams._events import (
    IteratorRefreshed,
    ReaderError,
    ReaderEvent,
    RecordsTrimmed,
    RequestRetried,
    ShardFinished,
    ShardsDiscovered,
    ShardStarted,
    StreamDisabled,
    Throttled,
)
from ddbstreams._filter import RecordFilter
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
from ddbstreams._reader import ReaderOptions, ShardBatch, StreamReader, TrimmedPolicy
from ddbstreams._store import (
    CheckpointStore,
    DynamoDBCheckpointStore,
    MemoryCheckpointStore,
    SQLiteCheckpointStore,
    StoredCheckpoint,
)
from ddbstreams._sync import BlockingConsumer, BlockingStreamReader, read

__version__ = "0.1.0"

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "AccessDeniedError",
    "AfterSequence",
    "AtSequence",
    "BlockingConsumer",
    "BlockingStreamReader",
    "Checkpoint",
    "CheckpointError",
    "CheckpointStore",
    "Clock",
    "ConditionFailedError",
    "ConfigurationError",
    "Consumer",
    "ConsumerOptions",
    "CredentialsError",
    "DDBStreamsError",
    "DefaultParser",
    "DynamoDBCheckpointStore",
    "EndpointConnectionError",
    "ExpiredIteratorError",
    "FailedBatch",
    "InvalidPositionError",
    "InvalidStreamArnError",
    "IteratorRefreshed",
    "JsonLinesDestination",
    "LambdaContext",
    "Latest",
    "LocalEngineError",
    "MalformedRecordError",
    "MemoryCheckpointStore",
    "Parser",
    "RawParser",
    "ReaderError",
    "ReaderEvent",
    "ReaderOptions",
    "Record",
    "RecordFilter",
    "RecordsPage",
    "RecordsTrimmed",
    "RequestRetried",
    "RetryNotice",
    "RetryPolicy",
    "SQLiteCheckpointStore",
    "ServiceError",
    "Shard",
    "ShardBatch",
    "ShardFinished",
    "ShardGraph",
    "ShardNotFoundError",
    "ShardStart",
    "ShardStarted",
    "ShardsDiscovered",
    "StartPosition",
    "StoredCheckpoint",
    "StreamDescription",
    "StreamDisabled",
    "StreamNotEnabledError",
    "StreamNotFoundError",
    "StreamReader",
    "StreamSummary",
    "StreamsClient",
    "SystemClock",
    "TableNotFoundError",
    "Throttled",
    "ThrottledError",
    "TrimHorizon",
    "TrimmedDataError",
    "TrimmedPolicy",
    "UserIdentity",
    "ValidationError",
    "__version__",
    "after_sequence",
    "at_sequence",
    "decode_map",
    "decode_value",
    "lambda_handler",
    "parse_lambda_event",
    "read",
    "record_to_lambda",
]
