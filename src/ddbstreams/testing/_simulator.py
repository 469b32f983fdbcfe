"""An in-memory DynamoDB Streams for tests: the stream behaviours DynamoDB Local never shows.

:class:`StreamSimulator` keeps a source table and its stream in memory. Writes
(:meth:`~StreamSimulator.put_item`, :meth:`~StreamSimulator.delete_item`,
:meth:`~StreamSimulator.ttl_delete`) append stream records to the shard that owns the item's
partition key; topology changes (:meth:`~StreamSimulator.roll_over`,
:meth:`~StreamSimulator.split`, :meth:`~StreamSimulator.trim`) reshape the shard graph the
way the service does over hours. Readers reach it through :meth:`~StreamSimulator.transport`
(the library's :class:`~ddbstreams._transport.Transport` seam, no HTTP) or over loopback HTTP
with :func:`ddbstreams.testing.serve_simulator` so botocore runs end to end.

What it reproduces from the real service, on purpose:

* several root shards (``partitions``), each owning a range of the partition-key hash space;
  every change of one item lands in one lineage (a shard and its descendants), in order;
* roll-overs (one child, same range), splits (two children, halved ranges) and trimmed
  parents (a child whose ``ParentShardId`` is no longer listed);
* sequence numbers that are strictly increasing integers with gaps, written as 21+ digit
  strings that cross a digit-length boundary early (``"999...9xx"`` then ``"1000...0yy"``),
  so comparing them as text is caught;
* GetRecords pages capped at ``Limit``/1000 records and ~1 MB; empty pages while records
  follow (``empty_page_rate``); closed shards that end with a page without
  ``NextShardIterator`` (possibly after one or two empty pages);
* DescribeStream pages of at most ``describe_page_limit`` shards in a shuffled (but stable)
  order, with ``LastEvaluatedShardId`` also set on a full last page (the documented
  "not empty does not mean more data" case), and the ``CHILD_SHARDS`` shard filter;
* iterators that expire after 15 minutes of the simulator's clock
  (``ExpiredIteratorException``), and errors with the service's codes.

The simulator is deterministic for a given ``seed`` and sequence of calls. Writes are plain
synchronous methods, safe to call from another thread while readers (or the HTTP server)
run: state is guarded by one lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import copy
import hashlib
import random
import re
import threading
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any, Final, Literal

import orjson

from ddbstreams._clock import Clock
from ddbstreams._encode import encode_item, encode_value
from ddbstreams._model import EventName, Shard
from ddbstreams._transport import TransportError

if TYPE_CHECKING:
    from ddbstreams._client import StreamsClient

__all__ = [
    "SimulatedChange",
    "SimulatedClock",
    "SimulatorTransport",
    "StreamSimulator",
]

StreamViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]

#: 2026-11-29T06:31:20Z: a fixed, recognisable start for :class:`SimulatedClock`.
DEFAULT_START_TIME: Final = 1_795_933_880.0
#: Just below 10**21: the first few sequence numbers have 21 digits, later ones 22.
DEFAULT_FIRST_SEQUENCE_NUMBER: Final = 10**21 - 200
#: Iterators live 15 minutes, as in the service.
ITERATOR_LIFETIME: Final = 15 * 60.0

_HASH_SPACE: Final = 1 << 128
_MAX_GAP: Final = 50
_TTL_IDENTITY: Final = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
_VIEW_TYPES: Final = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
_ITERATOR_TYPES: Final = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[\w-]+:\d{12}:table/[\w.-]{3,255}/stream/\S+$")
_SEQUENCE = re.compile(r"^\d{21,40}$")
_PAGE_OVERHEAD: Final = len(b'{"Records":[],"NextShardIterator":""}')


class SimulatedClock:
    """A controllable clock: time stands still until advanced.

    ``time()`` starts at ``start`` (epoch seconds; default 2026-11-29T06:31:20Z) and
    ``monotonic()`` at 0; both move together, only by :meth:`advance` or :meth:`sleep`.
    ``sleep(seconds)`` advances virtual time by ``seconds`` and yields to the event loop once
    instead of waiting, so backoff and polling run instantly. It is a simple clock, not a
    scheduler: concurrent sleepers each add their own duration. Give the same clock to the
    simulator and the client/reader under test so iterator expiry (15 minutes) and record
    ages are measured on one timeline.
    """

    __slots__ = ("_offset", "_start")

    def __init__(self, start: float = DEFAULT_START_TIME) -> None:
        self._start = float(start)
        self._offset = 0.0

    def monotonic(self) -> float:
        return self._offset

    def time(self) -> float:
        return self._start + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (ValueError if negative)."""
        if seconds < 0:
            raise ValueError("time cannot go backwards")
        self._offset += seconds

    async def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` (if positive) and let other tasks run once."""
        if seconds > 0:
            self._offset += seconds
        await asyncio.sleep(0)


@dataclass(frozen=True, slots=True)
class SimulatedChange:
    """One change written to the simulated stream, as the stream records it.

    ``keys``, ``new_image`` and ``old_image`` hold the Python values that were written (an
    image is ``None`` when the stream view type leaves it out, as the record does), so they
    compare equal to records decoded by the default parser as long as numbers were written
    as ``int``/``Decimal`` (floats decode to ``Decimal``). ``is_ttl_delete`` marks a REMOVE
    made by :meth:`StreamSimulator.ttl_delete`. ``approximate_creation_time`` is epoch
    seconds from the simulator's clock.
    """

    event_id: str
    event_name: EventName
    shard_id: str
    sequence_number: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    approximate_creation_time: float
    is_ttl_delete: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        """The item's key values, in the simulator's ``key_names`` order."""
        return tuple(self.keys.values())


class _ShardState:
    """One shard, mutable, guarded by the simulator's lock."""

    __slots__ = (
        "ending",
        "hash_high",
        "hash_low",
        "index",
        "order_key",
        "parent_shard_id",
        "records",
        "seqs",
        "shard_id",
        "starting",
        "trimmed",
    )

    def __init__(
        self,
        shard_id: str,
        parent_shard_id: str | None,
        hash_low: int,
        hash_high: int,
        starting: int,
        index: int,
        order_key: tuple[bytes, int],
    ) -> None:
        self.shard_id = shard_id
        self.parent_shard_id = parent_shard_id
        self.hash_low = hash_low  # inclusive
        self.hash_high = hash_high  # exclusive
        self.starting = starting
        self.ending: int | None = None
        self.records: list[bytes] = []  # serialized wire records, in sequence order
        self.seqs: list[int] = []
        self.trimmed = False
        self.index = index  # creation order
        self.order_key = order_key  # position in DescribeStream listings

    @property
    def is_open(self) -> bool:
        return self.ending is None

    def wire(self) -> dict[str, Any]:
        seq_range: dict[str, str] = {"StartingSequenceNumber": str(self.starting)}
        if self.ending is not None:
            seq_range["EndingSequenceNumber"] = str(self.ending)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": seq_range}
        if self.parent_shard_id is not None:
            out["ParentShardId"] = self.parent_shard_id
        return out

    def model(self) -> Shard:
        return Shard(
            shard_id=self.shard_id,
            parent_shard_id=self.parent_shard_id,
            starting_sequence_number=str(self.starting),
            ending_sequence_number=None if self.ending is None else str(self.ending),
        )


@dataclass(frozen=True, slots=True)
class _Iterator:
    shard_id: str
    position: int  # index into the shard's records
    issued_at: float  # clock.time() when issued
    empties: int  # injected empty pages returned in a row on this chain


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    message: str
    status: int


def _error(code: str, message: str) -> TransportError:
    return TransportError(code, message, 500 if code == "InternalServerError" else 400)


def _validation(message: str) -> TransportError:
    return _error("ValidationException", message)


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


def _attribute_size(value: Mapping[str, Any]) -> int:
    """Approximate DynamoDB storage size of one attribute value (for ``SizeBytes``)."""
    ((kind, payload),) = value.items()
    if kind == "S":
        return len(str(payload).encode())
    if kind == "N":
        return len(str(payload).lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(payload) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in payload)
    if kind == "NS":
        return sum(len(str(n)) // 2 + 1 for n in payload)
    if kind == "BS":
        return sum(len(b) * 3 // 4 for b in payload)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _attribute_size(v) + 1 for k, v in payload.items())
    if kind == "L":
        return 3 + sum(_attribute_size(v) + 1 for v in payload)
    return 0  # pragma: no cover - encode_value produces nothing else


def _item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    if not item:
        return 0
    return sum(len(name.encode()) + _attribute_size(v) for name, v in item.items())


def _key_part(value: Mapping[str, Any]) -> tuple[str, str]:
    """A hashable, canonical form of a key attribute value (numbers normalised)."""
    ((kind, payload),) = value.items()
    if kind == "N":
        try:
            return kind, str(Decimal(payload).normalize())
        except InvalidOperation:  # pragma: no cover - encode_value emits valid numbers
            return kind, str(payload)
    return kind, str(payload)


def _plain_key_value(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray | memoryview) else value


class StreamSimulator:
    """An in-memory source table with a DynamoDB stream, for tests.

    Args:
        table_name: the source table's name (``DescribeTable``/``ListStreams`` answer to it).
        region, account_id: used in the stream ARN and each record's ``awsRegion``.
        key_names: the table's key attributes: partition key first, then the optional sort
            key. Items route to shards by a stable hash of the partition key, as in DynamoDB.
        stream_view_type: ``KEYS_ONLY``, ``NEW_IMAGE``, ``OLD_IMAGE`` or
            ``NEW_AND_OLD_IMAGES``; decides which images records carry.
        partitions: number of root shards at start, each owning an equal slice of the hash
            space.
        seed: seeds shard id suffixes, event ids, sequence number gaps, the listing order
            and empty-page injection. Same seed and same calls, same stream.
        clock: source of time for shard ids, record creation times and iterator expiry;
            a new :class:`SimulatedClock` by default (time stands still unless advanced).
        max_records_per_page, max_bytes_per_page: GetRecords caps (the service: 1000
            records, 1 MB). The byte cap counts serialized records; a page always carries
            at least one record when one is available.
        empty_page_rate: probability that a GetRecords call returns an empty page (with an
            iterator at the same position) although records are waiting, and that a closed
            shard ends with one or two empty pages before its final page.
        max_consecutive_empty_pages: bound on injected empty pages in a row on one iterator
            chain (trailing ones at the end of a closed shard are bounded by
            ``min(2, max_consecutive_empty_pages)``).
        describe_page_limit: most shards per DescribeStream page (the service: 100).
        shuffle_listing: list shards in a seeded, stable permutation instead of creation
            order (so parents may come after their children, as the API allows).
        first_sequence_number: the first sequence number handed out; by default just below
            ``10**21`` so sequence numbers grow from 21 to 22 digits after a few writes.

    Raises ValueError for invalid arguments.
    """

    def __init__(
        self,
        *,
        table_name: str = "simulated",
        region: str = "us-east-1",
        account_id: str = "123456789012",
        key_names: Sequence[str] = ("pk",),
        stream_view_type: StreamViewType = "NEW_AND_OLD_IMAGES",
        partitions: int = 1,
        seed: int = 0,
        clock: Clock | None = None,
        max_records_per_page: int = 1000,
        max_bytes_per_page: int = 1_048_576,
        empty_page_rate: float = 0.0,
        max_consecutive_empty_pages: int = 2,
        describe_page_limit: int = 100,
        shuffle_listing: bool = True,
        first_sequence_number: int = DEFAULT_FIRST_SEQUENCE_NUMBER,
    ) -> None:
        if not re.fullmatch(r"[\w.-]{3,255}", table_name):
            raise ValueError(f"invalid table name {table_name!r}")
        if not re.fullmatch(r"\d{12}", account_id):
            raise ValueError(f"account_id must be 12 digits, got {account_id!r}")
        if not 1 <= len(key_names) <= 2 or len(set(key_names)) != len(key_names):
            raise ValueError("key_names must be a partition key and an optional sort key")
        if stream_view_type not in _VIEW_TYPES:
            raise ValueError(f"unknown stream view type {stream_view_type!r}")
        if partitions < 1:
            raise ValueError("partitions must be at least 1")
        if not 1 <= max_records_per_page <= 1000:
            raise ValueError("max_records_per_page must be between 1 and 1000")
        if max_bytes_per_page < 1:
            raise ValueError("max_bytes_per_page must be positive")
        if not 0.0 <= empty_page_rate < 1.0:
            raise ValueError("empty_page_rate must be in [0, 1)")
        if max_consecutive_empty_pages < 0:
            raise ValueError("max_consecutive_empty_pages must not be negative")
        if not 1 <= describe_page_limit <= 100:
            raise ValueError("describe_page_limit must be between 1 and 100")
        if first_sequence_number < 10**20:
            raise ValueError("first_sequence_number must have at least 21 digits")

        self.table_name: Final = table_name
        self.region: Final = region
        self.account_id: Final = account_id
        self.key_names: Final = tuple(key_names)
        self.stream_view_type: Final[StreamViewType] = stream_view_type
        self.clock: Final[Clock] = clock if clock is not None else SimulatedClock()
        self.max_records_per_page = max_records_per_page
        self.max_bytes_per_page = max_bytes_per_page
        self.empty_page_rate = empty_page_rate
        self.max_consecutive_empty_pages = max_consecutive_empty_pages
        self.describe_page_limit = describe_page_limit
        self.shuffle_listing = shuffle_listing

        #: Every change in write order (trimmed ones included).
        self.history: list[SimulatedChange] = []
        #: How many times each operation was called through any transport
        #: (``DescribeStream``, ``GetShardIterator``, ``GetRecords``, ``ListStreams``,
        #: ``DescribeTable``), failed calls included.
        self.calls: Counter[str] = Counter()

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._listing_key = hashlib.sha256(repr(seed).encode()).digest()
        self._next_seq = first_sequence_number
        self._last_seq = first_sequence_number - 1
        self._created_at = self.clock.time()
        self.stream_label: Final = (
            datetime.fromtimestamp(self._created_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
            + f"{int(self._created_at * 1000) % 1000:03d}"
        )
        self.table_arn: Final = f"arn:aws:dynamodb:{region}:{account_id}:table/{table_name}"
        self.stream_arn: Final = f"{self.table_arn}/stream/{self.stream_label}"
        self._enabled = True
        self._shards: dict[str, _ShardState] = {}  # every shard ever created, in order
        # Indexes so that streams with thousands of shards stay fast: open shards sorted by
        # the start of their hash range, children by parent, and the sorted listing.
        self._open_lows: list[int] = []
        self._open: list[_ShardState] = []
        self._children: dict[str, list[_ShardState]] = {}
        self._listing: list[_ShardState] | None = None
        self._items: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        step = _HASH_SPACE // partitions
        for i in range(partitions):
            high = _HASH_SPACE if i == partitions - 1 else (i + 1) * step
            self._new_shard(None, i * step, high)

    # ------------------------------------------------------------------ inspection

    def __repr__(self) -> str:
        return f"StreamSimulator({self.stream_arn!r})"

    @property
    def enabled(self) -> bool:
        """Whether the stream still records changes (False after :meth:`disable_stream`)."""
        return self._enabled

    def shards(self, *, include_trimmed: bool = False) -> list[Shard]:
        """The shards in creation order (parents before children), as DescribeStream
        would describe them; trimmed shards only with ``include_trimmed``."""
        with self._lock:
            return [s.model() for s in self._shards.values() if include_trimmed or not s.trimmed]

    def open_shard_ids(self) -> list[str]:
        """Ids of the shards that currently take writes, in creation order."""
        with self._lock:
            return [s.shard_id for s in sorted(self._open, key=lambda s: s.index)]

    def shard_for(self, key: Mapping[str, Any]) -> str:
        """Id of the open shard that a write of ``key`` would go to now."""
        with self._lock:
            return self._route(self._encode_key(key)).shard_id

    def changes_by_item(self) -> dict[tuple[Any, ...], list[str]]:
        """Sequence numbers of every change, grouped by item key tuple, in write order.

        The expected per-item order for assertions: a correct reader delivers each item's
        changes in exactly this order (trimmed shards aside).
        """
        with self._lock:
            out: dict[tuple[Any, ...], list[str]] = {}
            for change in self.history:
                out.setdefault(change.key, []).append(change.sequence_number)
            return out

    def items(self) -> list[dict[str, Any]]:
        """The source table's current items (copies), in first-write order."""
        with self._lock:
            return [dict(item) for item, _ in self._items.values()]

    # ------------------------------------------------------------------ writes

    def put_item(self, item: Mapping[str, Any]) -> SimulatedChange | None:
        """Write ``item`` (plain Python values): an INSERT if new, else a MODIFY.

        Returns the change recorded, or ``None`` when nothing was recorded: the item is
        identical to the stored one (DynamoDB Streams records no change for a write that
        changes nothing) or the stream is disabled. Raises ValueError if a key attribute is
        missing and TypeError for values DynamoDB cannot hold.
        """
        new_wire = encode_item(item)
        key_wire = self._key_wire(new_wire)
        # A deep copy: the caller may mutate nested values later; history must not change.
        new_plain = copy.deepcopy(dict(item))
        with self._lock:
            ikey = self._internal_key(key_wire)
            old = self._items.get(ikey)
            if old is not None and old[1] == new_wire:
                return None
            self._items[ikey] = (new_plain, new_wire)
            return self._record(
                "MODIFY" if old is not None else "INSERT",
                key_wire,
                {k: new_plain[k] for k in self.key_names},
                new=(new_plain, new_wire),
                old=old,
            )

    def delete_item(self, key: Mapping[str, Any]) -> SimulatedChange | None:
        """Delete the item with ``key`` (a mapping holding at least the key attributes):
        a REMOVE, or ``None`` if there was no such item (nothing is recorded then)."""
        return self._delete(key, ttl=False)

    def ttl_delete(self, key: Mapping[str, Any]) -> SimulatedChange | None:
        """Delete as DynamoDB's time-to-live does: a REMOVE whose record carries
        ``userIdentity {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}``."""
        return self._delete(key, ttl=True)

    def _delete(self, key: Mapping[str, Any], *, ttl: bool) -> SimulatedChange | None:
        key_wire = self._encode_key(key)
        with self._lock:
            old = self._items.pop(self._internal_key(key_wire), None)
            if old is None:
                return None
            return self._record(
                "REMOVE",
                key_wire,
                {k: old[0][k] for k in self.key_names},
                new=None,
                old=old,
                ttl=ttl,
            )

    # ------------------------------------------------------------------ topology

    def roll_over(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (or every open shard) and open one child per closed shard
        owning the same hash range, as the service does about every 4 hours.

        Returns the new shard ids. ValueError if ``shard_id`` is not an open shard.
        """
        with self._lock:
            new: list[str] = []
            for shard in self._targets(shard_id):
                self._close(shard)
                new.append(self._new_shard(shard.shard_id, shard.hash_low, shard.hash_high))
            return new

    def split(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (or every open shard) and open two children, each owning half
        of the parent's hash range. Returns the new shard ids (two per closed shard).

        ValueError if ``shard_id`` is not an open shard or its range is too small to halve.
        """
        with self._lock:
            targets = self._targets(shard_id)
            for shard in targets:
                if shard.hash_high - shard.hash_low < 2:
                    raise ValueError(f"shard {shard.shard_id} is too small to split")
            new: list[str] = []
            for shard in targets:
                self._close(shard)
                middle = (shard.hash_low + shard.hash_high) // 2
                new.append(self._new_shard(shard.shard_id, shard.hash_low, middle))
                new.append(self._new_shard(shard.shard_id, middle, shard.hash_high))
            return new

    def trim(self, shard_id: str) -> None:
        """Remove a closed shard and its records, as retention does after 24 hours.

        The shard disappears from DescribeStream while its children keep naming it as
        ``ParentShardId``; GetShardIterator on it raises ResourceNotFoundException and
        GetRecords with an iterator issued before raises TrimmedDataAccessException.
        ValueError if the shard is unknown, already trimmed, or still open.
        """
        with self._lock:
            shard = self._shards.get(shard_id)
            if shard is None or shard.trimmed:
                raise ValueError(f"no listed shard {shard_id!r}")
            if shard.is_open:
                raise ValueError(f"shard {shard_id} is open; roll it over or split it first")
            shard.trimmed = True
            self._listing = None
            shard.records = []
            shard.seqs = []

    def disable_stream(self) -> None:
        """Disable the stream: every open shard is closed, the status becomes DISABLED and
        later writes change the table without recording anything. Idempotent."""
        with self._lock:
            if not self._enabled:
                return
            for shard in list(self._shards.values()):
                if shard.is_open:
                    self._close(shard)
            self._enabled = False

    def fail_next(
        self,
        operation: str,
        code: str,
        *,
        times: int = 1,
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail with the AWS error ``code``.

        ``operation`` is ``DescribeStream``, ``GetShardIterator``, ``GetRecords``,
        ``ListStreams`` or ``DescribeTable``; ``code`` e.g. ``ThrottlingException``,
        ``LimitExceededException``, ``InternalServerError``, ``ExpiredIteratorException``.
        ``status`` defaults to 500 for ``InternalServerError``, 400 otherwise. Injected
        failures queue up in call order and fire before the call does anything.
        """
        if operation not in _OPERATIONS and operation != "GetRecords":
            raise ValueError(f"unknown operation {operation!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        failure = _Failure(
            code,
            message or f"simulated {code}",
            status if status is not None else (500 if code == "InternalServerError" else 400),
        )
        with self._lock:
            self._failures.setdefault(operation, deque()).extend([failure] * times)

    # ------------------------------------------------------------------ clients

    def transport(self) -> SimulatorTransport:
        """A new :class:`~ddbstreams._transport.Transport` over this simulator."""
        return SimulatorTransport(self)

    def client(self, **kwargs: Any) -> StreamsClient:
        """A :class:`~ddbstreams.StreamsClient` reading this simulator in memory.

        ``kwargs`` go to ``StreamsClient`` (``retry=``, ``clock=``...); ``clock`` defaults
        to the simulator's clock so backoff sleeps run on the same (virtual) timeline.
        """
        from ddbstreams._client import StreamsClient

        kwargs.setdefault("clock", self.clock)
        return StreamsClient(transport=self.transport(), **kwargs)

    # ------------------------------------------------------------------ internals (locked)

    def _allocate(self) -> int:
        value = self._next_seq
        self._last_seq = value
        self._next_seq = value + self._rng.randint(1, _MAX_GAP)
        return value

    def _new_shard(self, parent: str | None, low: int, high: int) -> str:
        millis = int(self.clock.time() * 1000)
        while True:
            shard_id = f"shardId-{millis:020d}-{self._rng.getrandbits(32):08x}"
            if shard_id not in self._shards:
                break
        index = len(self._shards)
        if self.shuffle_listing:
            # A keyed hash of the id: a fixed permutation for one seed, unaffected by shards
            # created between two pages, so ExclusiveStartShardId pagination stays consistent.
            digest = hashlib.blake2b(
                shard_id.encode(), digest_size=8, key=self._listing_key
            ).digest()
        else:
            digest = b""
        # The shard starts at the next sequence number to be handed out, so a shard's first
        # record (if nothing else is written in between) carries its StartingSequenceNumber.
        shard = _ShardState(shard_id, parent, low, high, self._next_seq, index, (digest, index))
        self._shards[shard_id] = shard
        if parent is not None:
            self._children.setdefault(parent, []).append(shard)
        at = bisect.bisect_left(self._open_lows, low)
        self._open_lows.insert(at, low)
        self._open.insert(at, shard)
        self._listing = None
        return shard_id

    def _close(self, shard: _ShardState) -> None:
        shard.ending = shard.seqs[-1] if shard.seqs else self._allocate()
        at = self._open.index(shard, bisect.bisect_left(self._open_lows, shard.hash_low))
        del self._open_lows[at]
        del self._open[at]

    def _targets(self, shard_id: str | None) -> list[_ShardState]:
        if not self._enabled:
            raise ValueError("the stream is disabled")
        if shard_id is None:
            return list(self._open)
        shard = self._shards.get(shard_id)
        if shard is None or not shard.is_open:
            raise ValueError(f"no open shard {shard_id!r}")
        return [shard]

    def _key_wire(self, item_wire: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        missing = [k for k in self.key_names if k not in item_wire]
        if missing:
            raise ValueError(f"item lacks key attribute(s) {', '.join(missing)}")
        for name in self.key_names:
            kind = next(iter(item_wire[name]))
            if kind not in ("S", "N", "B"):
                raise TypeError(f"key attribute {name} must be a string, number or bytes")
        return {k: item_wire[k] for k in self.key_names}

    def _encode_key(self, key: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        missing = [k for k in self.key_names if k not in key]
        if missing:
            raise ValueError(f"key lacks attribute(s) {', '.join(missing)}")
        return self._key_wire({k: encode_value(key[k]) for k in self.key_names})

    def _internal_key(self, key_wire: Mapping[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
        return tuple(_key_part(key_wire[k]) for k in self.key_names)

    def _route(self, key_wire: Mapping[str, dict[str, Any]]) -> _ShardState:
        # Like DynamoDB: the partition key alone decides the partition, so items sharing a
        # partition key share a lineage. md5 keeps routing stable across processes.
        digest = hashlib.md5(
            orjson.dumps(_key_part(key_wire[self.key_names[0]])), usedforsecurity=False
        ).digest()
        point = int.from_bytes(digest, "big")
        shard = self._open[bisect.bisect_right(self._open_lows, point) - 1]
        assert shard.hash_low <= point < shard.hash_high, "open shards cover the hash space"
        return shard

    def _record(
        self,
        event_name: EventName,
        key_wire: dict[str, dict[str, Any]],
        key_plain: dict[str, Any],
        *,
        new: tuple[dict[str, Any], dict[str, Any]] | None,
        old: tuple[dict[str, Any], dict[str, Any]] | None,
        ttl: bool = False,
    ) -> SimulatedChange | None:
        if not self._enabled:
            return None
        view = self.stream_view_type
        if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
            new = None
        if view not in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
            old = None
        shard = self._route(key_wire)
        seq = self._allocate()
        now = self.clock.time()
        event_id = f"{self._rng.getrandbits(128):032x}"
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": float(int(now)),
            "Keys": key_wire,
        }
        if new is not None:
            body["NewImage"] = new[1]
        if old is not None:
            body["OldImage"] = old[1]
        body["SequenceNumber"] = str(seq)
        body["SizeBytes"] = (
            _item_size(key_wire)
            + _item_size(None if new is None else new[1])
            + _item_size(None if old is None else old[1])
        )
        body["StreamViewType"] = view
        record: dict[str, Any] = {
            "eventID": event_id,
            "eventName": event_name,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": body,
        }
        if ttl:
            record["userIdentity"] = dict(_TTL_IDENTITY)
        shard.records.append(orjson.dumps(record))
        shard.seqs.append(seq)
        change = SimulatedChange(
            event_id=event_id,
            event_name=event_name,
            shard_id=shard.shard_id,
            sequence_number=str(seq),
            keys={k: _plain_key_value(v) for k, v in key_plain.items()},
            new_image=None if new is None else dict(new[0]),
            old_image=None if old is None else dict(old[0]),
            approximate_creation_time=now,
            is_ttl_delete=ttl,
        )
        self.history.append(change)
        return change

    def _take_failure(self, operation: str) -> None:
        self.calls[operation] += 1
        queue = self._failures.get(operation)
        if queue:
            failure = queue.popleft()
            raise TransportError(failure.code, failure.message, failure.status)

    def _check_stream(self, params: Mapping[str, Any]) -> None:
        arn = params.get("StreamArn")
        if not isinstance(arn, str) or _STREAM_ARN.match(arn) is None:
            raise _validation(f"Invalid StreamArn: {arn!r}")
        if arn != self.stream_arn:
            raise _error(
                "ResourceNotFoundException",
                f"Requested resource not found: Stream: {arn} not found",
            )

    def _describe_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_stream(params)
        limit = _limit(params, "Limit", 100) or 100
        limit = min(limit, self.describe_page_limit)
        shard_filter = params.get("ShardFilter")
        if shard_filter is not None:
            if (
                not isinstance(shard_filter, Mapping)
                or shard_filter.get("Type") != "CHILD_SHARDS"
                or not isinstance(shard_filter.get("ShardId"), str)
            ):
                raise _validation("ShardFilter needs Type CHILD_SHARDS and a ShardId")
            children = self._children.get(shard_filter["ShardId"], [])
            listed = sorted((s for s in children if not s.trimmed), key=lambda s: s.order_key)
        else:
            if self._listing is None:
                self._listing = sorted(
                    (s for s in self._shards.values() if not s.trimmed), key=lambda s: s.order_key
                )
            listed = self._listing
        start = params.get("ExclusiveStartShardId")
        if start is not None:
            if not isinstance(start, str) or start not in self._shards:
                raise _error(
                    "ResourceNotFoundException",
                    f"Requested resource not found: Shard: {start} not found",
                )
            after = self._shards[start].order_key
            first = bisect.bisect_right(listed, after, key=lambda s: s.order_key)
        else:
            first = 0
        page = listed[first : first + limit]
        description: dict[str, Any] = {
            "StreamArn": self.stream_arn,
            "StreamLabel": self.stream_label,
            "StreamStatus": "ENABLED" if self._enabled else "DISABLED",
            "StreamViewType": self.stream_view_type,
            "CreationRequestDateTime": self._created_at,
            "TableName": self.table_name,
            "KeySchema": self._key_schema(),
            "Shards": [s.wire() for s in page],
        }
        # The service may set LastEvaluatedShardId on a full page with nothing after it
        # (documented: only its absence means the end); do the same to exercise callers.
        if len(page) == limit:
            description["LastEvaluatedShardId"] = page[-1].shard_id
        return {"StreamDescription": description}

    def _key_schema(self) -> list[dict[str, str]]:
        return [
            {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, name in enumerate(self.key_names)
        ]

    def _listed_shard(self, shard_id: Any) -> _ShardState:
        shard = self._shards.get(shard_id) if isinstance(shard_id, str) else None
        if shard is None or shard.trimmed:
            raise _error(
                "ResourceNotFoundException",
                f"Requested resource not found: Shard does not exist: {shard_id}",
            )
        return shard

    def _get_shard_iterator(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_stream(params)
        shard = self._listed_shard(params.get("ShardId"))
        kind = params.get("ShardIteratorType")
        if kind not in _ITERATOR_TYPES:
            raise _validation(f"Invalid ShardIteratorType: {kind!r}")
        sequence = params.get("SequenceNumber")
        if kind in ("TRIM_HORIZON", "LATEST"):
            if sequence is not None:
                raise _validation(f"SequenceNumber is not allowed with {kind}")
            position = 0 if kind == "TRIM_HORIZON" else len(shard.records)
        else:
            if not isinstance(sequence, str) or _SEQUENCE.match(sequence) is None:
                raise _validation(f"Invalid SequenceNumber for {kind}: {sequence!r}")
            value = int(sequence)
            high = shard.ending if shard.ending is not None else max(self._last_seq, shard.starting)
            if not shard.starting <= value <= high:
                raise _validation(
                    f"Invalid SequenceNumber {sequence} for shard {shard.shard_id}: "
                    "it is not in the shard's sequence number range"
                )
            if kind == "AT_SEQUENCE_NUMBER":
                position = bisect.bisect_left(shard.seqs, value)
            else:
                position = bisect.bisect_right(shard.seqs, value)
        return {
            "ShardIterator": self._iterator(
                _Iterator(shard.shard_id, position, self.clock.time(), 0)
            )
        }

    def _iterator(self, it: _Iterator) -> str:
        payload = orjson.dumps([1, it.shard_id, it.position, it.issued_at, it.empties])
        # Shaped like the service's ("<stream arn>|1|<opaque>") and as opaque to readers.
        return f"{self.stream_arn}|1|{base64.urlsafe_b64encode(payload).decode('ascii')}"

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
        if arn != self.stream_arn:
            raise _error(
                "ResourceNotFoundException",
                f"Requested resource not found: Stream: {arn} not found",
            )
        return _Iterator(fields[1], fields[2], float(fields[3]), fields[4])

    def _get_records(self, params: Mapping[str, Any]) -> bytes:
        it = self._parse_iterator(params.get("ShardIterator"))
        limit = _limit(params, "Limit", 1000) or 1000
        limit = min(limit, self.max_records_per_page)
        shard = self._shards.get(it.shard_id)
        if shard is None or (not shard.trimmed and not 0 <= it.position <= len(shard.records)):
            # Only a forged or corrupted iterator gets here.
            raise _validation(f"Invalid ShardIterator: {params.get('ShardIterator')!r}")
        if self.clock.time() - it.issued_at > ITERATOR_LIFETIME:
            raise _error(
                "ExpiredIteratorException",
                "Iterator expired. The iterator was created at time "
                f"{datetime.fromtimestamp(it.issued_at, tz=UTC).isoformat()} "
                "and is valid for 15 minutes",
            )
        if shard.trimmed:
            raise _error(
                "TrimmedDataAccessException",
                f"The records of shard {shard.shard_id} have been trimmed",
            )
        available = len(shard.records) - it.position
        closed = not shard.is_open
        rate = self.empty_page_rate
        if (
            available > 0
            and rate > 0.0
            and it.empties < self.max_consecutive_empty_pages
            and self._rng.random() < rate
        ):
            return self._page(
                [], _Iterator(shard.shard_id, it.position, self.clock.time(), it.empties + 1)
            )
        taken: list[bytes] = []
        size = _PAGE_OVERHEAD
        for raw in shard.records[it.position : it.position + limit]:
            if taken and size + len(raw) + 1 > self.max_bytes_per_page:
                break
            taken.append(raw)
            size += len(raw) + 1
        position = it.position + len(taken)
        if not closed:
            # Caught-up empty pages are normal, not injected: they reset the chain's count.
            empties = 0
            return self._page(
                taken, _Iterator(shard.shard_id, position, self.clock.time(), empties)
            )
        if position < len(shard.records):
            return self._page(taken, _Iterator(shard.shard_id, position, self.clock.time(), 0))
        # At the end of a closed shard: maybe one or two empty pages before the final one.
        empties_after = it.empties + 1 if not taken else 0
        tail_cap = min(2, self.max_consecutive_empty_pages)
        if rate > 0.0 and empties_after + 1 <= tail_cap and self._rng.random() < rate:
            return self._page(
                taken, _Iterator(shard.shard_id, position, self.clock.time(), empties_after)
            )
        return self._page(taken, None)

    def _page(self, records: list[bytes], next_iterator: _Iterator | None) -> bytes:
        body = b'{"Records":[' + b",".join(records) + b"]"
        if next_iterator is not None:
            body += b',"NextShardIterator":' + orjson.dumps(self._iterator(next_iterator))
        return body + b"}"

    def _list_streams(self, params: Mapping[str, Any]) -> dict[str, Any]:
        _limit(params, "Limit", 100)
        table = params.get("TableName")
        start = params.get("ExclusiveStartStreamArn")
        streams: list[dict[str, Any]] = []
        if (table is None or table == self.table_name) and start is None:
            streams.append(
                {
                    "StreamArn": self.stream_arn,
                    "TableName": self.table_name,
                    "StreamLabel": self.stream_label,
                }
            )
        return {"Streams": streams}

    def _describe_table(self, params: Mapping[str, Any]) -> dict[str, Any]:
        name = params.get("TableName")
        if name not in (self.table_name, self.table_arn):
            raise _error(
                "ResourceNotFoundException",
                f"Requested resource not found: Table: {name} not found",
            )
        return {
            "Table": {
                "TableName": self.table_name,
                "TableArn": self.table_arn,
                "TableStatus": "ACTIVE",
                "KeySchema": self._key_schema(),
                "CreationDateTime": self._created_at,
                "ItemCount": len(self._items),
                "StreamSpecification": {
                    "StreamEnabled": self._enabled,
                    **({"StreamViewType": self.stream_view_type} if self._enabled else {}),
                },
                "LatestStreamArn": self.stream_arn,
                "LatestStreamLabel": self.stream_label,
            }
        }


_OPERATIONS: Final = {
    "DescribeStream": StreamSimulator._describe_stream,
    "GetShardIterator": StreamSimulator._get_shard_iterator,
    "ListStreams": StreamSimulator._list_streams,
    "DescribeTable": StreamSimulator._describe_table,
}


class SimulatorTransport:
    """The :class:`~ddbstreams._transport.Transport` of a :class:`StreamSimulator`.

    Answers with the service's wire shapes (timestamps as epoch seconds) and raises
    :class:`~ddbstreams._transport.TransportError` with the service's error codes. Each call
    yields to the event loop once, as real I/O would. After :meth:`close` every call raises
    ``TransportError("ConnectionError", ...)`` so use-after-close bugs show.
    """

    __slots__ = ("_closed", "simulator")

    def __init__(self, simulator: StreamSimulator) -> None:
        self.simulator = simulator
        self._closed = False

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Perform ``DescribeStream``, ``GetShardIterator``, ``ListStreams`` or
        ``DescribeTable``; ``UnknownOperationException`` for anything else."""
        await asyncio.sleep(0)
        return self.call_sync(operation, params)

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        """Perform GetRecords; return the response body exactly as the service sends it."""
        await asyncio.sleep(0)
        return self.get_records_sync(params)

    def call_sync(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`call` without the event loop (used by the HTTP server)."""
        self._check_open()
        handler = _OPERATIONS.get(operation)
        if handler is None:
            raise TransportError(
                "UnknownOperationException", f"unknown operation {operation!r}", 400
            )
        sim = self.simulator
        with sim._lock:
            sim._take_failure(operation)
            return handler(sim, params)

    def get_records_sync(self, params: Mapping[str, Any]) -> bytes:
        """:meth:`get_records_body` without the event loop (used by the HTTP server)."""
        self._check_open()
        sim = self.simulator
        with sim._lock:
            sim._take_failure("GetRecords")
            return sim._get_records(params)

    async def close(self) -> None:
        """Mark this transport closed (the simulator itself stays usable). Idempotent."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("ConnectionError", "the simulator transport is closed")
