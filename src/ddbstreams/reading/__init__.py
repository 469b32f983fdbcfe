"""Layers 4 and 5: reading shards (fetchers) and streams (coordinator, delivery, state)."""

from ddbstreams.reading._delivery import ShardBatch
from ddbstreams.reading._options import ReaderOptions, TrimmedPolicy
from ddbstreams.reading._reader import ReaderLifecycle, StreamReader
from ddbstreams.reading._state import SHARD_END, ShardEnd, ShardPosition, ShardStatus

__all__ = [
    "SHARD_END",
    "ReaderLifecycle",
    "ReaderOptions",
    "ShardBatch",
    "ShardEnd",
    "ShardPosition",
    "ShardStatus",
    "StreamReader",
    "TrimmedPolicy",
]
