"""Immutable data types of the stream: records, shards, stream descriptions, pages.

Pure: no I/O. Decoding from the wire lives in ``ddbstreams.model._decode``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final, Generic, Literal, TypeVar

__all__ = [
    "UNKNOWN_CREATION_TIME",
    "EventName",
    "Record",
    "RecordsPage",
    "Shard",
    "StreamDescription",
    "StreamStatus",
    "StreamSummary",
    "UserIdentity",
    "sequence_key",
    "shard_created_ms",
]

T = TypeVar("T")

EventName = Literal["INSERT", "MODIFY", "REMOVE"]
StreamStatus = Literal["ENABLING", "ENABLED", "DISABLING", "DISABLED"]

# The approximate_creation_time of a record whose source gave none (see Record).
UNKNOWN_CREATION_TIME: Final = datetime(1970, 1, 1, tzinfo=UTC)

_SHARD_ID_TIME = re.compile(r"^shardId-(\d{20})-[0-9a-fA-F]+$")


def shard_created_ms(shard_id: str) -> int | None:
    """Creation time (epoch milliseconds) encoded in a ``shardId-<20 digits>-<hex>`` id.

    Undocumented but stable; use it only as a hint. ``None`` for an id of another shape.
    """
    match = _SHARD_ID_TIME.match(shard_id)
    return None if match is None else int(match.group(1))


def sequence_key(sequence_number: str) -> int:
    """Sort key of a sequence number: numeric strings compare as integers, never as text."""
    return int(sequence_number)


@dataclass(frozen=True, slots=True)
class UserIdentity:
    """Who made a change; only present for changes made by the service (TTL deletes)."""

    type: str
    principal_id: str

    @property
    def is_ttl_delete(self) -> bool:
        return self.type == "Service" and self.principal_id == "dynamodb.amazonaws.com"


@dataclass(frozen=True, slots=True)
class Record:
    """One item-level change read from a stream.

    With the default parser ``keys``, ``new_image`` and ``old_image`` hold plain Python values
    (see DESIGN.md for the mapping); with :class:`RawParser` they hold the wire attribute
    maps (DynamoDB JSON) untouched. Images absent for the stream view type are ``None``.
    ``shard_id`` is set by the reader; records parsed from a Lambda event have ``""``.

    ``approximate_creation_time`` is always a timezone-aware UTC ``datetime``. Every record
    read from a stream has one; only a hand-written or published sample Lambda event can lack
    it (see :func:`~ddbstreams.parse_lambda_event`). Such a record holds the documented
    sentinel :data:`UNKNOWN_CREATION_TIME` (the Unix epoch, a moment no stream record can
    have: DynamoDB Streams began in 2014) and ``creation_time_known`` is ``False``. A
    sentinel rather than ``None`` keeps the type plain for every consumer (ages, lag, the
    CLI); code that compares times should check ``creation_time_known`` first.
    """

    event_id: str
    event_name: EventName
    event_version: str
    event_source: str
    aws_region: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    sequence_number: str
    size_bytes: int
    stream_view_type: str
    approximate_creation_time: datetime
    shard_id: str
    user_identity: UserIdentity | None = None
    event_source_arn: str | None = None

    @property
    def creation_time_known(self) -> bool:
        """False when the source carried no ApproximateCreationDateTime (a sample event)."""
        return self.approximate_creation_time != UNKNOWN_CREATION_TIME

    @property
    def is_ttl_delete(self) -> bool:
        """True for a REMOVE made by DynamoDB's time-to-live, not by a client."""
        return (
            self.event_name == "REMOVE"
            and self.user_identity is not None
            and self.user_identity.is_ttl_delete
        )


@dataclass(frozen=True, slots=True)
class Shard:
    """One shard as DescribeStream lists it.

    A shard is open while ``ending_sequence_number`` is ``None``. ``parent_shard_id`` may
    name a shard that is no longer listed (trimmed); lineage treats such a child as a root.
    """

    shard_id: str
    parent_shard_id: str | None
    starting_sequence_number: str | None
    ending_sequence_number: str | None

    @property
    def is_open(self) -> bool:
        return self.ending_sequence_number is None

    @property
    def created_at_hint(self) -> datetime | None:
        """Creation time encoded in the shard id (undocumented; use only as a hint)."""
        created_ms = shard_created_ms(self.shard_id)
        if created_ms is None:
            return None
        return datetime.fromtimestamp(created_ms / 1000, tz=UTC)

    def holds(self, sequence_number: str) -> bool:
        """Whether ``sequence_number`` falls in this shard's sequence number range."""
        value = int(sequence_number)
        if self.starting_sequence_number is not None and value < int(self.starting_sequence_number):
            return False
        return self.ending_sequence_number is None or value <= int(self.ending_sequence_number)


@dataclass(frozen=True, slots=True)
class StreamDescription:
    """A stream and its shards, as a (possibly multi-page) DescribeStream returns them.

    ``last_evaluated_shard_id`` is set on a single page that has more pages after it and is
    ``None`` on a complete description.
    """

    stream_arn: str
    stream_label: str
    stream_status: StreamStatus
    stream_view_type: str
    table_name: str
    creation_time: datetime | None
    key_schema: tuple[tuple[str, str], ...]
    shards: tuple[Shard, ...]
    last_evaluated_shard_id: str | None = None


@dataclass(frozen=True, slots=True)
class StreamSummary:
    """One entry of ListStreams."""

    stream_arn: str
    table_name: str
    stream_label: str


@dataclass(frozen=True, slots=True)
class RecordsPage(Generic[T]):
    """One GetRecords response: parsed records and the iterator for the next call.

    ``next_shard_iterator`` is ``None`` when the shard has ended; that last page may still
    carry records. An empty ``records`` with an iterator is normal and ends nothing.
    ``sequence_numbers`` holds each record's sequence number in order (the reader needs them
    to checkpoint records of any parser's type); ``last_creation_time`` is the last record's
    ApproximateCreationDateTime in epoch seconds.
    """

    records: list[T]
    next_shard_iterator: str | None
    last_sequence_number: str | None
    last_creation_time: float | None
    sequence_numbers: list[str] | None = None
    # Of the response body: what metrics count as bytes read. Not part of the page's
    # content, so pages compare as before.
    size_bytes: int = field(default=0, compare=False)
