"""The service's API behaviour: how the simulated DynamoDB Streams answers DescribeStream,
GetShardIterator, GetRecords, ListStreams and DescribeTable -- wire shapes, pagination,
listing delays, iterators (opaque, expiring), empty pages, and the service's errors."""

from __future__ import annotations

import base64
import binascii
import bisect
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import orjson

from ddbstreams._clock import Clock
from ddbstreams.testing.simulator._faults import default_status
from ddbstreams.testing.simulator._stream import ShardState, StreamModel
from ddbstreams.testing.simulator._table import SourceTable
from ddbstreams.transport._seam import TransportError

__all__ = ["CALL_OPERATIONS", "ITERATOR_LIFETIME", "ServiceSettings", "StreamService"]

#: Iterators live 15 minutes, as in the service.
ITERATOR_LIFETIME: Final = 15 * 60.0
#: The operations answered by :meth:`StreamService.call` (GetRecords has its own method).
CALL_OPERATIONS: Final = frozenset(
    {"DescribeStream", "GetShardIterator", "ListStreams", "DescribeTable"}
)

_ITERATOR_TYPES: Final = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[\w-]+:\d{12}:table/[\w.-]{3,255}/stream/\S+$")
_SEQUENCE = re.compile(r"^\d{21,40}$")
_PAGE_OVERHEAD: Final = len(b'{"Records":[],"NextShardIterator":""}')


def _error(code: str, message: str) -> TransportError:
    return TransportError(code, message, default_status(code))


def _validation(message: str) -> TransportError:
    return _error("ValidationException", message)


def _not_found(message: str) -> TransportError:
    return _error("ResourceNotFoundException", f"Requested resource not found: {message}")


def _limit(params: Mapping[str, Any], name: str, maximum: int) -> int | None:
    value = params.get(name)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= maximum:
        raise _validation(
            f"1 validation error detected: Value '{value}' at '{name[0].lower() + name[1:]}' "
            f"failed to satisfy constraint: Member must have value between 1 and {maximum}"
        )
    return value


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


@dataclass(frozen=True, slots=True)
class _Iterator:
    shard_id: str
    position: int  # absolute index into the shard's records
    issued_at: float  # clock.time() when issued
    empties: int  # injected empty pages returned in a row on this chain


class ServiceSettings(Protocol):
    """What the service reads from the simulator: its names and its paging options (which
    may change at any time), and where it counts GetRecords calls per shard."""

    @property
    def table_name(self) -> str: ...

    @property
    def table_arn(self) -> str: ...

    @property
    def stream_arn(self) -> str: ...

    @property
    def stream_label(self) -> str: ...

    @property
    def stream_view_type(self) -> str: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def max_records_per_page(self) -> int: ...

    @property
    def max_bytes_per_page(self) -> int: ...

    @property
    def empty_page_rate(self) -> float: ...

    @property
    def max_consecutive_empty_pages(self) -> int: ...

    @property
    def describe_page_limit(self) -> int: ...

    @property
    def get_records_calls(self) -> Counter[str]: ...


class StreamService:
    """Answers the API calls over a :class:`StreamModel` and a :class:`SourceTable`.

    Not thread-safe: the simulator calls it under its lock, after counting the call,
    applying retention and firing injected failures.
    """

    __slots__ = ("_created_at", "_handlers", "_model", "_rng", "_settings", "_table")

    def __init__(
        self,
        settings: ServiceSettings,
        model: StreamModel,
        table: SourceTable,
        *,
        rng: random.Random,
        created_at: float,
    ) -> None:
        self._settings = settings
        self._model = model
        self._table = table
        self._rng = rng  # shared with the simulator: one seeded sequence of draws
        self._created_at = created_at
        self._handlers: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
            "DescribeStream": self.describe_stream,
            "GetShardIterator": self.get_shard_iterator,
            "ListStreams": self.list_streams,
            "DescribeTable": self.describe_table,
        }

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Answer one of :data:`CALL_OPERATIONS` (KeyError for anything else)."""
        return self._handlers[operation](params)

    # ------------------------------------------------------------------ DescribeStream

    def describe_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_stream(params)
        now = self._settings.clock.time()
        limit = _limit(params, "Limit", 100) or 100
        limit = min(limit, self._settings.describe_page_limit)
        listed = self._model.visible(self._candidates(params.get("ShardFilter")), now)
        start = params.get("ExclusiveStartShardId")
        if start is not None:
            if not isinstance(start, str) or start not in self._model.shards:
                raise _not_found(f"Shard: {start} not found")
            after = self._model.shards[start].order_key
            first = bisect.bisect_right(listed, after, key=lambda s: s.order_key)
        else:
            first = 0
        page = listed[first : first + limit]
        settings = self._settings
        description: dict[str, Any] = {
            "StreamArn": settings.stream_arn,
            "StreamLabel": settings.stream_label,
            "StreamStatus": "ENABLED" if self._model.enabled else "DISABLED",
            "StreamViewType": settings.stream_view_type,
            "CreationRequestDateTime": self._created_at,
            "TableName": settings.table_name,
            "KeySchema": self._table.key_schema(),
            "Shards": [s.wire(now) for s in page],
        }
        # The service may set LastEvaluatedShardId on a full page with nothing after it
        # (documented: only its absence means the end); do the same to exercise callers.
        if len(page) == limit:
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def _candidates(self, shard_filter: Any) -> list[ShardState]:
        """Every listed shard, or the children the ``CHILD_SHARDS`` filter asks for."""
        if shard_filter is None:
            return self._model.listing()
        if (
            not isinstance(shard_filter, Mapping)
            or shard_filter.get("Type") != "CHILD_SHARDS"
            or not isinstance(shard_filter.get("ShardId"), str)
        ):
            raise _validation("ShardFilter needs Type CHILD_SHARDS and a ShardId")
        return self._model.children_listing(shard_filter["ShardId"])

    # ------------------------------------------------------------------ GetShardIterator

    def get_shard_iterator(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_stream(params)
        shard = self._listed_shard(params.get("ShardId"))
        kind = params.get("ShardIteratorType")
        if kind not in _ITERATOR_TYPES:
            raise _validation(f"Invalid ShardIteratorType: {kind!r}")
        sequence = params.get("SequenceNumber")
        if kind in ("TRIM_HORIZON", "LATEST"):
            if sequence is not None:
                raise _validation(f"SequenceNumber is not allowed with {kind}")
            position = shard.base if kind == "TRIM_HORIZON" else shard.end
        else:
            position = self._sequence_position(shard, kind, sequence)
        issued = _Iterator(shard.shard_id, position, self._settings.clock.time(), 0)
        return {"ShardIterator": self._iterator(issued)}

    def _sequence_position(self, shard: ShardState, kind: str, sequence: Any) -> int:
        """The position AT_SEQUENCE_NUMBER or AFTER_SEQUENCE_NUMBER ``sequence`` names."""
        if not isinstance(sequence, str) or _SEQUENCE.match(sequence) is None:
            raise _validation(f"Invalid SequenceNumber for {kind}: {sequence!r}")
        value = int(sequence)
        high = (
            shard.ending if shard.ending is not None else max(self._model.last_seq, shard.starting)
        )
        if not shard.starting <= value <= high:
            raise _validation(
                f"Invalid SequenceNumber {sequence} for shard {shard.shard_id}: "
                "it is not in the shard's sequence number range"
            )
        if shard.last_trimmed is not None and value <= shard.last_trimmed:
            raise _error(
                "TrimmedDataAccessException",
                f"Sequence number {sequence} of shard {shard.shard_id} is beyond the "
                "trim horizon: records older than the retention period were trimmed",
            )
        if kind == "AT_SEQUENCE_NUMBER":
            return shard.base + bisect.bisect_left(shard.seqs, value)
        return shard.base + bisect.bisect_right(shard.seqs, value)

    # ------------------------------------------------------------------ GetRecords

    def get_records(self, params: Mapping[str, Any]) -> bytes:
        """Answer GetRecords: the response body exactly as the service sends it."""
        it = self._parse_iterator(params.get("ShardIterator"))
        settings = self._settings
        limit = _limit(params, "Limit", 1000) or 1000
        limit = min(limit, settings.max_records_per_page)
        shard = self._model.shards.get(it.shard_id)
        if shard is None or not 0 <= it.position <= shard.end:
            # Only a forged or corrupted iterator gets here.
            raise _validation(f"Invalid ShardIterator: {params.get('ShardIterator')!r}")
        settings.get_records_calls[shard.shard_id] += 1
        now = settings.clock.time()
        self._check_readable(it, shard, now)
        rate = settings.empty_page_rate
        if (
            shard.end > it.position
            and rate > 0.0
            and it.empties < settings.max_consecutive_empty_pages
            and self._rng.random() < rate
        ):
            return self._page([], _Iterator(shard.shard_id, it.position, now, it.empties + 1))
        taken = self._take(shard, it.position, limit)
        position = it.position + len(taken)
        if shard.is_open or position < shard.end:
            # Caught-up empty pages are normal, not injected: they reset the chain's count.
            return self._page(taken, _Iterator(shard.shard_id, position, now, 0))
        # At the end of a closed shard: maybe one or two empty pages before the final one.
        empties_after = it.empties + 1 if not taken else 0
        tail_cap = min(2, settings.max_consecutive_empty_pages)
        if rate > 0.0 and empties_after + 1 <= tail_cap and self._rng.random() < rate:
            return self._page(taken, _Iterator(shard.shard_id, position, now, empties_after))
        return self._page(taken, None)

    @staticmethod
    def _check_readable(it: _Iterator, shard: ShardState, now: float) -> None:
        if now - it.issued_at > ITERATOR_LIFETIME:
            raise _error(
                "ExpiredIteratorException",
                f"Iterator expired. The iterator was created at time {_iso(it.issued_at)} "
                "and is valid for 15 minutes",
            )
        if shard.trimmed or it.position < shard.base:
            raise _error(
                "TrimmedDataAccessException",
                f"The iterator points at records of shard {shard.shard_id} that have been "
                "trimmed (older than the retention period)",
            )

    def _take(self, shard: ShardState, position: int, limit: int) -> list[bytes]:
        """The records from ``position`` on that fit in a page."""
        taken: list[bytes] = []
        size = _PAGE_OVERHEAD
        start = position - shard.base
        for raw in shard.records[start : start + limit]:
            if taken and size + len(raw) + 1 > self._settings.max_bytes_per_page:
                break
            taken.append(raw)
            size += len(raw) + 1
        return taken

    def _page(self, records: list[bytes], next_iterator: _Iterator | None) -> bytes:
        body = b'{"Records":[' + b",".join(records) + b"]"
        if next_iterator is not None:
            body += b',"NextShardIterator":' + orjson.dumps(self._iterator(next_iterator))
        return body + b"}"

    # ------------------------------------------------------------------ ListStreams, DescribeTable

    def list_streams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _limit(params, "Limit", 100)
        settings = self._settings
        table = params.get("TableName")
        start = params.get("ExclusiveStartStreamArn")
        streams: list[dict[str, Any]] = []
        if (
            (table is None or table == settings.table_name)
            and start is None
            and not self._model.deleted
        ):
            streams.append(
                {
                    "StreamArn": settings.stream_arn,
                    "TableName": settings.table_name,
                    "StreamLabel": settings.stream_label,
                }
            )
        return {"Streams": streams}

    def describe_table(self, params: Mapping[str, Any]) -> dict[str, Any]:
        settings = self._settings
        name = params.get("TableName")
        if name not in (settings.table_name, settings.table_arn) or self._table.deleted:
            raise _not_found(f"Table: {name} not found")
        enabled = self._model.enabled
        return {
            "Table": {
                "TableName": settings.table_name,
                "TableArn": settings.table_arn,
                "TableStatus": "ACTIVE",
                "KeySchema": self._table.key_schema(),
                "CreationDateTime": self._created_at,
                "ItemCount": len(self._table),
                "StreamSpecification": {
                    "StreamEnabled": enabled,
                    **({"StreamViewType": settings.stream_view_type} if enabled else {}),
                },
                "LatestStreamArn": settings.stream_arn,
                "LatestStreamLabel": settings.stream_label,
            }
        }

    # ------------------------------------------------------------------ names and iterators

    def _check_stream(self, params: Mapping[str, Any]) -> None:
        arn = params.get("StreamArn")
        if not isinstance(arn, str) or _STREAM_ARN.match(arn) is None:
            raise _validation(f"Invalid StreamArn: {arn!r}")
        if arn != self._settings.stream_arn or self._model.deleted:
            raise _not_found(f"Stream: {arn} not found")

    def _listed_shard(self, shard_id: Any) -> ShardState:
        shard = self._model.shards.get(shard_id) if isinstance(shard_id, str) else None
        if shard is None or shard.trimmed:
            raise _not_found(f"Shard does not exist: {shard_id}")
        return shard

    def _iterator(self, it: _Iterator) -> str:
        payload = orjson.dumps([1, it.shard_id, it.position, it.issued_at, it.empties])
        # Shaped like the service's ("<stream arn>|1|<opaque>") and as opaque to readers.
        encoded = base64.urlsafe_b64encode(payload).decode("ascii")
        return f"{self._settings.stream_arn}|1|{encoded}"

    def _parse_iterator(self, value: Any) -> _Iterator:
        invalid = _validation(f"Invalid ShardIterator: {value!r}")
        if not isinstance(value, str):
            raise invalid
        arn, sep, rest = value.partition("|1|")
        if not sep:
            raise invalid
        try:
            fields = orjson.loads(base64.urlsafe_b64decode(rest.encode("ascii")))
        except (ValueError, binascii.Error, orjson.JSONDecodeError):
            raise invalid from None
        if (
            not isinstance(fields, list)
            or len(fields) != 5
            or fields[0] != 1
            or not isinstance(fields[1], str)
            or not isinstance(fields[2], int)
            or not isinstance(fields[3], float | int)
            or not isinstance(fields[4], int)
        ):
            raise invalid
        if arn != self._settings.stream_arn or self._model.deleted:
            raise _not_found(f"Stream: {arn} not found")
        return _Iterator(fields[1], fields[2], float(fields[3]), fields[4])
