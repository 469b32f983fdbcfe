"""Which shard holds a sequence number, when the ranges of several shards hold it."""

from __future__ import annotations

from ddbstreams._errors import InvalidPositionError, TrimmedDataError, ValidationError
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._decode import RawParser
from ddbstreams.model._position import ShardStart
from ddbstreams.model._types import Shard

__all__ = ["locate_record"]

_PROBE_PAGES = 5


async def locate_record(
    client: StreamsClient, stream_arn: str, candidates: tuple[Shard, ...], sequence_number: str
) -> str | None:
    """Which of ``candidates`` holds the record ``sequence_number``, found by reading.

    Shards open side by side have overlapping ranges, so the range alone can name the wrong
    shard. With one candidate (the usual case) nothing is read. Returns None when no
    candidate shows the record within a few pages; the range-based choice then stands.
    """
    if len(candidates) < 2:
        return None
    parser = RawParser()
    for shard in candidates:
        try:
            iterator: str | None = await client.get_shard_iterator(
                stream_arn, shard.shard_id, ShardStart("AT_SEQUENCE_NUMBER", sequence_number)
            )
        except (InvalidPositionError, ValidationError, TrimmedDataError):
            continue
        for _ in range(_PROBE_PAGES):
            if iterator is None:
                break
            page = await client.get_records(
                iterator, shard_id=shard.shard_id, parser=parser, limit=1
            )
            if page.last_sequence_number is not None:
                if page.last_sequence_number == sequence_number:
                    return shard.shard_id
                break
            iterator = page.next_shard_iterator
    return None
