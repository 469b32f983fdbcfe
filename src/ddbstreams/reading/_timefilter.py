"""The time filter of an ``at_time`` start: which records of a shard come before the moment.

The service has no AT_TIMESTAMP iterator, so a shard is read from its start and its records
older than the moment are dropped, up to the first record that is not older: from there on
every record is kept, as an iterator positioned at that record would return them. So the
filter is a prefix cut, decided once per page until the moment is reached and then gone
(the fetcher drops it); a page whose first record is already at or after the moment costs
one comparison.

Pure: no I/O. Records of the default and raw parsers carry their creation time; for any
other parser, :class:`TimedParser` notes the raw creation times while it parses.
"""

from __future__ import annotations

import operator
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any, Final, Generic, TypeVar

from ddbstreams.model._parser import Parser
from ddbstreams.model._position import creation_time_threshold
from ddbstreams.model._types import Record

__all__ = ["TimeFilter", "TimedParser", "first_at_or_after"]

T = TypeVar("T")
C = TypeVar("C", float, datetime)

_CREATION_TIME: Final = operator.attrgetter("approximate_creation_time")


def first_at_or_after(times: Iterable[C], threshold: C) -> int:
    """Index of the first time at or after ``threshold`` (inclusive); the number of times
    when there is none. Stops at the first such time, so a page already past the moment
    costs one comparison."""
    count = 0
    for created in times:
        if created >= threshold:
            return count
        count += 1
    return count


class TimeFilter:
    """Drops a shard's records created before ``moment`` (rounded down to the stream's
    ``resolution`` in seconds; see :func:`~ddbstreams.model._position.creation_time_threshold`).
    """

    __slots__ = ("_threshold_time", "moment", "threshold")

    def __init__(self, moment: datetime, resolution: int) -> None:
        self.moment = moment
        #: The oldest kept creation time, epoch seconds.
        self.threshold = creation_time_threshold(moment, resolution)
        self._threshold_time = datetime.fromtimestamp(self.threshold, tz=UTC)

    def first_kept_record(self, records: list[Record]) -> int:
        """How many of ``records`` (default or raw parser) to drop: the index of the first
        one to keep, ``len(records)`` when none is."""
        return first_at_or_after(map(_CREATION_TIME, records), self._threshold_time)

    def first_kept_time(self, times: list[float]) -> int:
        """The same from the records' ApproximateCreationDateTime (epoch seconds)."""
        return first_at_or_after(times, self.threshold)

    def __repr__(self) -> str:
        return f"TimeFilter(not_before={self._threshold_time.isoformat()})"


class TimedParser(Generic[T]):
    """A parser that notes each raw record's creation time (``times``, of the last call)
    before handing the records to ``parser``: how a filter reads times of records that a
    user's parser turns into anything."""

    __slots__ = ("parser", "times")

    def __init__(self, parser: Parser[T]) -> None:
        self.parser = parser
        self.times: list[float] = []

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[T]:
        # A record without a creation time fails in the page's own parsing already (the
        # last record's time is read there); 0.0 keeps this one from failing differently.
        self.times = [
            float(raw.get("dynamodb", {}).get("ApproximateCreationDateTime", 0.0))
            for raw in raw_records
        ]
        return self.parser.parse_records(raw_records, shard_id)
