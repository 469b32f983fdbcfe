"""An in-memory DynamoDB Streams for tests: the stream behaviours DynamoDB Local never shows.

:class:`StreamSimulator` keeps a source table and its stream in memory. Writes
(:meth:`~StreamSimulator.put_item`, :meth:`~StreamSimulator.delete_item`,
:meth:`~StreamSimulator.ttl_delete`) append stream records to the shard that owns the item's
partition key; topology changes (:meth:`~StreamSimulator.roll_over`,
:meth:`~StreamSimulator.split`, :meth:`~StreamSimulator.trim`) reshape the shard graph the
way the service does over hours, and :meth:`~StreamSimulator.live` does all of that
continuously while a reader runs. Readers reach it through
:meth:`~StreamSimulator.transport` (the library's :class:`~ddbstreams._transport.Transport`
seam, no HTTP) or over loopback HTTP with :func:`ddbstreams.testing.serve_simulator` so
botocore runs end to end.

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
  optionally the service's eventual consistency: children listed late
  (``children_visibility_delay``) and closed parents listed as open
  (``stale_parent_duration``);
* iterators that expire after 15 minutes of the simulator's clock
  (``ExpiredIteratorException``); 24-hour retention (``retention``): records older than that
  are trimmed (``TrimmedDataAccessException``) and old closed shards vanish from listings;
* throttling, 5xx errors, connection resets and timeouts injected at chosen rates
  (:class:`Faults`), or one by one (:meth:`~StreamSimulator.fail_next`);
* disabling the stream, deleting the table, and the stream disappearing altogether.

The simulator is deterministic for a given ``seed`` and sequence of calls. Writes are plain
synchronous methods, safe to call from another thread while readers (or the HTTP server)
run: state is guarded by one lock.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import bisect
import contextlib
import copy
import hashlib
import heapq
import itertools
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self

import orjson

from ddbstreams._clock import Clock
from ddbstreams._encode import encode_item, encode_value
from ddbstreams._model import EventName, Shard
from ddbstreams._transport import TransportError

if TYPE_CHECKING:
    from ddbstreams._client import StreamsClient

__all__ = [
    "OPERATIONS",
    "Faults",
    "LiveWriter",
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
#: Stream records are kept 24 hours, as in the service.
DEFAULT_RETENTION: Final = 24 * 3600.0
#: The operations the simulator answers (``GetRecords`` included).
OPERATIONS: Final = frozenset(
    {"DescribeStream", "GetShardIterator", "GetRecords", "ListStreams", "DescribeTable"}
)

_HASH_SPACE: Final = 1 << 128
_MAX_GAP: Final = 50
_TTL_IDENTITY: Final = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
_VIEW_TYPES: Final = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
_ITERATOR_TYPES: Final = ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
_STREAM_ARN = re.compile(r"^arn:aws[\w-]*:dynamodb:[\w-]+:\d{12}:table/[\w.-]{3,255}/stream/\S+$")
_SEQUENCE = re.compile(r"^\d{21,40}$")
_PAGE_OVERHEAD: Final = len(b'{"Records":[],"NextShardIterator":""}')
#: Transport-level failures: no response at all (the HTTP server drops the connection).
_NO_RESPONSE_CODES: Final = frozenset({"ConnectionError", "Timeout"})
#: Slack when comparing virtual times that went through float arithmetic (1 microsecond).
_TIME_SLACK: Final = 1e-6


# --------------------------------------------------------------------------- clock


class SimulatedClock:
    """A virtual clock: time moves only when every task is waiting, or when advanced.

    ``time()`` starts at ``start`` (epoch seconds; default 2026-11-29T06:31:20Z) and
    ``monotonic()`` at 0; both move together, by :meth:`advance` or by the scheduler below.

    ``await sleep(seconds)`` is a virtual-time scheduler, so many concurrent sleepers (shard
    pollers, backoff, a live writer) behave as they would in real time, only instantly: a
    sleeper registers its wake-up time and waits; a driver task, started on the first
    sleep and ending when nobody sleeps, lets every runnable task run and, once the event
    loop has nothing else ready to run, moves time to the earliest wake-up and wakes the
    sleepers due then (in wake-up order, ties in the order they went to sleep). A sleeper
    therefore wakes with ``monotonic()`` exactly at its wake-up time, and no real time
    passes.

    "Nothing else ready" is read from the event loop's ready queue (``loop._ready``, a
    CPython asyncio detail; on loops without it the driver yields 20 times instead). A task
    waiting for real I/O, a real timer (``asyncio.sleep``) or a thread counts as waiting:
    virtual time may jump ahead meanwhile. So give the same clock to everything that sleeps
    in the code under test (``StreamSimulator(clock=clock)``, ``sim.client()`` uses it by
    default, ``StreamReader(..., clock=clock)``) and keep real I/O out of virtual-time tests
    (over HTTP, use the real clock). Real-time bounds such as ``asyncio.timeout()`` still
    measure real time.

    :meth:`advance` moves time by hand (thread-safe); sleepers whose time has come wake at
    the driver's next turn. One clock drives sleepers of one event loop at a time
    (RuntimeError otherwise).
    """

    __slots__ = ("_driver", "_heap", "_lock", "_loop", "_offset", "_order", "_start")

    def __init__(self, start: float = DEFAULT_START_TIME) -> None:
        self._start = float(start)
        self._offset = 0.0
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SimulatedClock(monotonic={self._offset!r}, sleepers={self.sleepers})"

    def monotonic(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._offset

    def time(self) -> float:
        """Virtual wall-clock time, epoch seconds (``start + monotonic()``)."""
        return self._start + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (ValueError if negative). Thread-safe.

        Sleepers whose wake-up time has passed wake at the driver's next turn.
        """
        if not seconds >= 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._offset += seconds

    @property
    def sleepers(self) -> int:
        """How many :meth:`sleep` calls are waiting now."""
        with self._lock:
            return sum(1 for *_, future in self._heap if not future.done())

    def next_wakeup(self) -> float | None:
        """The earliest pending wake-up, on the ``monotonic()`` scale; None if none."""
        with self._lock:
            pending = [when for when, _, future in self._heap if not future.done()]
            return min(pending, default=None)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (see the class docs); ``<= 0`` only yields.

        Cancellation: a cancelled sleeper simply stops waiting. ``math.inf`` waits until
        cancelled; NaN is a ValueError.
        """
        if math.isnan(seconds):
            raise ValueError("cannot sleep NaN seconds")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._bind(loop)
            heapq.heappush(self._heap, (self._offset + seconds, next(self._order), future))
            if self._driver is None or self._driver.done():
                self._driver = loop.create_task(
                    self._drive(loop), name="ddbstreams SimulatedClock driver"
                )
        await future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        previous, driver = self._loop, self._driver
        if (
            previous is not None
            and not previous.is_closed()
            and driver is not None
            and not driver.done()
        ):
            raise RuntimeError("this SimulatedClock already drives sleepers of another event loop")
        # Sleepers left by a finished loop can never be woken: forget them.
        self._loop = loop
        self._heap = []
        self._driver = None

    async def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = getattr(loop, "_ready", None)
        quiet_turns_needed = 2 if ready is not None else 20
        quiet = 0
        try:
            while True:
                await asyncio.sleep(0)
                with self._lock:
                    self._wake_due()
                    if not self._heap or math.isinf(self._heap[0][0]):
                        return
                if ready is not None and len(ready) > 0:
                    quiet = 0
                    continue
                quiet += 1
                if quiet < quiet_turns_needed:
                    continue
                quiet = 0
                with self._lock:
                    self._offset = max(self._offset, self._heap[0][0])
                    self._wake_due()
        finally:
            with self._lock:
                if self._driver is asyncio.current_task():
                    self._driver = None

    def _wake_due(self) -> None:
        # Called on the loop's thread only (futures are not thread-safe), lock held.
        heap = self._heap
        while heap and (heap[0][2].done() or heap[0][0] <= self._offset):
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True, slots=True)
class Faults:
    """Failures injected at random, at chosen rates, into the simulator's operations.

    Each rate is a probability per call; their sum must not exceed 1. A call that draws a
    fault fails before doing anything:

    * ``throttle_rate``: ``LimitExceededException`` or ``ThrottlingException`` (status
      400; the code drawn among ``throttle_codes``);
    * ``server_error_rate``: ``InternalServerError`` (status 500);
    * ``connection_reset_rate``: in memory ``TransportError("ConnectionError")`` without a
      status; over HTTP the server resets the connection without answering;
    * ``timeout_rate``: in memory ``TransportError("Timeout")``; over HTTP the server stalls
      (``timeout_delay`` of :func:`~ddbstreams.testing.serve_simulator`) and then drops the
      connection, so a client with a shorter read timeout sees a timeout.

    ``operations`` limits injection to some of ``DescribeStream``, ``GetShardIterator``,
    ``GetRecords``, ``ListStreams``, ``DescribeTable`` (None: all of them).

    Draws are deterministic: whether the n-th call of an operation fails (counting every
    call since the simulator was made) depends only on the simulator's ``seed``, the
    operation, n and these rates, not on how calls of different operations interleave.
    """

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    connection_reset_rate: float = 0.0
    timeout_rate: float = 0.0
    operations: Collection[str] | None = None
    throttle_codes: tuple[str, ...] = ("LimitExceededException", "ThrottlingException")

    def __post_init__(self) -> None:
        rates = (
            self.throttle_rate,
            self.server_error_rate,
            self.connection_reset_rate,
            self.timeout_rate,
        )
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-12:
            raise ValueError("fault rates must add up to at most 1")
        if self.operations is not None:
            operations = frozenset(self.operations)
            unknown = operations - OPERATIONS
            if unknown:
                raise ValueError(f"unknown operation(s) {', '.join(sorted(unknown))}")
            object.__setattr__(self, "operations", operations)
        if not self.throttle_codes:
            raise ValueError("throttle_codes must not be empty")

    @property
    def total_rate(self) -> float:
        """The probability that a call (of a selected operation) fails."""
        return (
            self.throttle_rate
            + self.server_error_rate
            + self.connection_reset_rate
            + self.timeout_rate
        )

    def applies_to(self, operation: str) -> bool:
        """Whether calls of ``operation`` may draw a fault."""
        return self.operations is None or operation in self.operations


def _unit(key: bytes, *parts: object) -> float:
    """A deterministic number in [0, 1) for ``parts`` under ``key``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _draw_fault(faults: Faults, key: bytes, operation: str, call: int) -> _Failure | None:
    if not faults.applies_to(operation):
        return None
    u = _unit(key, operation, call)
    bands: tuple[tuple[float, str], ...] = (
        (faults.throttle_rate, "throttle"),
        (faults.server_error_rate, "InternalServerError"),
        (faults.connection_reset_rate, "ConnectionError"),
        (faults.timeout_rate, "Timeout"),
    )
    kind: str | None = None
    for rate, name in bands:
        if u < rate:
            kind = name
            break
        u -= rate
    if kind is None:
        return None
    if kind == "throttle":
        codes = faults.throttle_codes
        code = codes[int(_unit(key, operation, call, "code") * len(codes))]
        return _Failure(code, f"Rate exceeded for {operation} (simulated fault)", 400)
    if kind == "InternalServerError":
        return _Failure(kind, "Internal server error (simulated fault)", 500)
    if kind == "ConnectionError":
        return _Failure(kind, "Connection reset by peer (simulated fault)", None)
    return _Failure(kind, "Timed out waiting for the response (simulated fault)", None)


# --------------------------------------------------------------------------- state


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
    """One shard, mutable, guarded by the simulator's lock.

    Records trimmed by retention leave the lists; positions (in iterators) stay absolute:
    ``base`` records were removed from the head, so position ``p`` is ``records[p - base]``.
    """

    __slots__ = (
        "base",
        "closed_at",
        "ending",
        "hash_high",
        "hash_low",
        "index",
        "last_trimmed",
        "order_key",
        "parent_shard_id",
        "records",
        "seqs",
        "shard_id",
        "stale_until",
        "starting",
        "times",
        "trimmed",
        "visible_at",
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
        visible_at: float,
    ) -> None:
        self.shard_id = shard_id
        self.parent_shard_id = parent_shard_id
        self.hash_low = hash_low  # inclusive
        self.hash_high = hash_high  # exclusive
        self.starting = starting
        self.ending: int | None = None
        self.records: list[bytes] = []  # serialized wire records, in sequence order
        self.seqs: list[int] = []
        self.times: list[float] = []  # creation time (clock.time()) of each record
        self.base = 0  # records trimmed from the head
        self.last_trimmed: int | None = None  # sequence number of the last trimmed record
        self.trimmed = False  # the whole shard is gone (retention or trim())
        self.index = index  # creation order
        self.order_key = order_key  # position in DescribeStream listings
        self.visible_at = visible_at  # listed from this clock.time() on
        self.closed_at: float | None = None
        self.stale_until = -math.inf  # listed as open until this clock.time()

    @property
    def is_open(self) -> bool:
        return self.ending is None

    @property
    def end(self) -> int:
        """The position after the last record."""
        return self.base + len(self.records)

    def wire(self, now: float) -> dict[str, Any]:
        seq_range: dict[str, str] = {"StartingSequenceNumber": str(self.starting)}
        if self.ending is not None and now >= self.stale_until:
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

    def drop_head(self, count: int) -> None:
        if count <= 0:
            return
        self.last_trimmed = self.seqs[count - 1]
        del self.records[:count]
        del self.seqs[:count]
        del self.times[:count]
        self.base += count


@dataclass(frozen=True, slots=True)
class _Iterator:
    shard_id: str
    position: int  # absolute index into the shard's records
    issued_at: float  # clock.time() when issued
    empties: int  # injected empty pages returned in a row on this chain


@dataclass(frozen=True, slots=True)
class _Failure:
    code: str
    message: str
    status: int | None


def _default_status(code: str) -> int | None:
    if code in _NO_RESPONSE_CODES:
        return None
    return 500 if code == "InternalServerError" else 400


def _error(code: str, message: str) -> TransportError:
    return TransportError(code, message, _default_status(code))


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


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=UTC).isoformat()


# --------------------------------------------------------------------------- simulator


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
        seed: seeds shard id suffixes, event ids, sequence number gaps, the listing order,
            empty-page injection, :class:`Faults` draws and :meth:`live` writers. Same seed
            and same calls, same stream.
        clock: source of time for shard ids, record creation times, iterator expiry,
            retention and the listing delays; a new :class:`SimulatedClock` by default
            (time stands still unless advanced or slept on).
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
        retention: seconds (on ``clock``) a stream record is kept: older records are
            trimmed, and a closed shard vanishes from DescribeStream once it closed longer
            ago than that (see :meth:`apply_retention`). The service: 24 hours. None keeps
            everything.
        faults: failures injected at random (:class:`Faults`); change them with
            :meth:`set_faults`.
        children_visibility_delay: seconds (on ``clock``) after a roll-over or split
            during which the new children are not listed by DescribeStream (neither in full
            listings nor with the ``CHILD_SHARDS`` filter), though they already take writes:
            the service's listing is eventually consistent, so a reader at the end of a
            parent must look again.
        stale_parent_duration: seconds (on ``clock``) after a roll-over or split during
            which the closed parent is still listed without ``EndingSequenceNumber`` (as if
            open) while its children may already be listed.

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
        retention: float | None = DEFAULT_RETENTION,
        faults: Faults | None = None,
        children_visibility_delay: float = 0.0,
        stale_parent_duration: float = 0.0,
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
        if retention is not None and not retention > 0:
            raise ValueError("retention must be positive (or None)")
        if not children_visibility_delay >= 0:
            raise ValueError("children_visibility_delay must not be negative")
        if not stale_parent_duration >= 0:
            raise ValueError("stale_parent_duration must not be negative")

        self.table_name: Final = table_name
        self.region: Final = region
        self.account_id: Final = account_id
        self.key_names: Final = tuple(key_names)
        self.stream_view_type: Final[StreamViewType] = stream_view_type
        self.seed: Final = seed
        self.clock: Final[Clock] = clock if clock is not None else SimulatedClock()
        self.max_records_per_page = max_records_per_page
        self.max_bytes_per_page = max_bytes_per_page
        self.empty_page_rate = empty_page_rate
        self.max_consecutive_empty_pages = max_consecutive_empty_pages
        self.describe_page_limit = describe_page_limit
        self.shuffle_listing = shuffle_listing
        self.retention: Final = None if retention is None else float(retention)
        self.children_visibility_delay = float(children_visibility_delay)
        self.stale_parent_duration = float(stale_parent_duration)

        #: Every change in write order (trimmed ones included).
        self.history: list[SimulatedChange] = []
        #: How many times each operation was called through any transport
        #: (``DescribeStream``, ``GetShardIterator``, ``GetRecords``, ``ListStreams``,
        #: ``DescribeTable``), failed calls included.
        self.calls: Counter[str] = Counter()
        #: GetRecords calls per shard id (calls that failed before reading the iterator,
        #: such as injected faults, are not counted here).
        self.get_records_calls: Counter[str] = Counter()
        #: Failures injected so far (by :meth:`fail_next` or :class:`Faults`), by error code.
        self.faults_injected: Counter[str] = Counter()

        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._listing_key = hashlib.sha256(repr(seed).encode()).digest()
        self._fault_key = hashlib.sha256(f"faults:{seed!r}".encode()).digest()[:32]
        self._faults = faults
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
        self._table_deleted = False
        self._stream_deleted = False
        self._shards: dict[str, _ShardState] = {}  # every shard ever created, in order
        # Indexes so that streams with thousands of shards stay fast: open shards sorted by
        # the start of their hash range, children by parent, and the sorted listing.
        self._open_lows: list[int] = []
        self._open: list[_ShardState] = []
        self._children: dict[str, list[_ShardState]] = {}
        self._listing: list[_ShardState] | None = None
        self._hidden_until = -math.inf  # some shard is not listed yet before this time
        self._retention_due = math.inf  # the earliest time something needs trimming
        self._items: dict[tuple[tuple[str, str], ...], tuple[dict[str, Any], dict[str, Any]]] = {}
        self._failures: dict[str, deque[_Failure]] = {}
        step = _HASH_SPACE // partitions
        for i in range(partitions):
            high = _HASH_SPACE if i == partitions - 1 else (i + 1) * step
            self._new_shard(None, i * step, high, self._created_at)

    # ------------------------------------------------------------------ inspection

    def __repr__(self) -> str:
        return f"StreamSimulator({self.stream_arn!r})"

    @property
    def enabled(self) -> bool:
        """Whether the stream still records changes (False once disabled or deleted)."""
        return self._enabled

    @property
    def table_exists(self) -> bool:
        """False after :meth:`delete_table`."""
        return not self._table_deleted

    @property
    def stream_exists(self) -> bool:
        """False after :meth:`delete_stream`."""
        return not self._stream_deleted

    @property
    def faults(self) -> Faults | None:
        """The random failures currently injected (see :meth:`set_faults`)."""
        return self._faults

    def shards(self, *, include_trimmed: bool = False) -> list[Shard]:
        """The shards in creation order (parents before children) as they really are:
        listing delays and stale parents do not apply here; shards removed by retention or
        :meth:`trim` only with ``include_trimmed``."""
        with self._lock:
            self._maintain()
            return [s.model() for s in self._shards.values() if include_trimmed or not s.trimmed]

    def open_shard_ids(self) -> list[str]:
        """Ids of the shards that currently take writes, in creation order."""
        with self._lock:
            return [s.shard_id for s in sorted(self._open, key=lambda s: s.index)]

    def shard_for(self, key: Mapping[str, Any]) -> str:
        """Id of the open shard that a write of ``key`` would go to now."""
        with self._lock:
            return self._route(self._encode_key(key)).shard_id

    def changes_by_item(self, *, retained_only: bool = False) -> dict[tuple[Any, ...], list[str]]:
        """Sequence numbers of every change, grouped by item key tuple, in write order.

        The expected per-item order for assertions: a correct reader delivers each item's
        changes in exactly this order. ``retained_only`` leaves out trimmed changes (see
        :meth:`retained_history`).
        """
        changes = self.retained_history() if retained_only else None
        with self._lock:
            out: dict[tuple[Any, ...], list[str]] = {}
            for change in self.history if changes is None else changes:
                out.setdefault(change.key, []).append(change.sequence_number)
            return out

    def retained_history(self) -> list[SimulatedChange]:
        """The changes still readable: :attr:`history` without those trimmed by retention
        or :meth:`trim`, in write order."""
        with self._lock:
            self._maintain()
            out = []
            for change in self.history:
                shard = self._shards[change.shard_id]
                if shard.trimmed:
                    continue
                if shard.last_trimmed is not None and (
                    int(change.sequence_number) <= shard.last_trimmed
                ):
                    continue
                out.append(change)
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
        missing or the table was deleted, and TypeError for values DynamoDB cannot hold.
        """
        new_wire = encode_item(item)
        key_wire = self._key_wire(new_wire)
        # A deep copy: the caller may mutate nested values later; history must not change.
        new_plain = copy.deepcopy(dict(item))
        with self._lock:
            self._check_table()
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
        a REMOVE, or ``None`` if there was no such item (nothing is recorded then).
        ValueError if the table was deleted."""
        return self._delete(key, ttl=False)

    def ttl_delete(self, key: Mapping[str, Any]) -> SimulatedChange | None:
        """Delete as DynamoDB's time-to-live does: a REMOVE whose record carries
        ``userIdentity {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}``."""
        return self._delete(key, ttl=True)

    def _delete(self, key: Mapping[str, Any], *, ttl: bool) -> SimulatedChange | None:
        key_wire = self._encode_key(key)
        with self._lock:
            self._check_table()
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

        Returns the new shard ids. ValueError if ``shard_id`` is not an open shard or the
        stream is disabled.
        """
        with self._lock:
            self._maintain()
            now = self.clock.time()
            new: list[str] = []
            for shard in self._targets(shard_id):
                self._close(shard, now, has_children=True)
                new.append(self._new_shard(shard.shard_id, shard.hash_low, shard.hash_high, now))
            return new

    def split(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (or every open shard) and open two children, each owning half
        of the parent's hash range. Returns the new shard ids (two per closed shard).

        ValueError if ``shard_id`` is not an open shard or its range is too small to halve,
        or the stream is disabled.
        """
        with self._lock:
            self._maintain()
            now = self.clock.time()
            targets = self._targets(shard_id)
            for shard in targets:
                if shard.hash_high - shard.hash_low < 2:
                    raise ValueError(f"shard {shard.shard_id} is too small to split")
            new: list[str] = []
            for shard in targets:
                self._close(shard, now, has_children=True)
                middle = (shard.hash_low + shard.hash_high) // 2
                new.append(self._new_shard(shard.shard_id, shard.hash_low, middle, now))
                new.append(self._new_shard(shard.shard_id, middle, shard.hash_high, now))
            return new

    def trim(self, shard_id: str) -> None:
        """Remove a closed shard and its records now, as retention does after 24 hours.

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
            self._remove(shard)

    def apply_retention(self) -> None:
        """Trim what ``retention`` says is too old, now (on the simulator's clock).

        A record is trimmed once it is older than ``retention`` seconds: GetShardIterator at
        or after its sequence number raises TrimmedDataAccessException, an iterator pointing
        at it raises TrimmedDataAccessException on GetRecords, and TRIM_HORIZON starts after
        it. A closed shard that closed more than ``retention`` seconds ago (so every record
        of it is trimmed) disappears from DescribeStream, like :meth:`trim`.

        Every operation and write calls this first; it costs one comparison unless something
        is due. Call it yourself only to inspect the effect of :meth:`SimulatedClock.advance`
        without making a call.
        """
        with self._lock:
            self._maintain()

    def disable_stream(self) -> None:
        """Disable the stream: every open shard is closed, the status becomes DISABLED and
        later writes change the table without recording anything; DescribeTable shows
        ``StreamEnabled: false``. What was recorded stays readable. Idempotent."""
        with self._lock:
            self._disable()

    def delete_table(self) -> None:
        """Delete the source table: DescribeTable raises ResourceNotFoundException, writes
        raise ValueError, and the stream becomes DISABLED (every shard closed) but stays
        readable, as a deleted table's stream does for 24 hours. Idempotent."""
        with self._lock:
            self._disable()
            self._table_deleted = True
            self._items.clear()

    def delete_stream(self) -> None:
        """Make the stream disappear altogether: every call naming its ARN (or using one of
        its iterators) raises ResourceNotFoundException and ListStreams no longer lists it.
        The table stays (with its stream disabled, ``LatestStreamArn`` still naming the
        gone stream). Idempotent."""
        with self._lock:
            self._disable()
            self._stream_deleted = True

    # ------------------------------------------------------------------ failures

    def fail_next(
        self,
        operation: str,
        code: str,
        *,
        times: int = 1,
        message: str | None = None,
        status: int | None = None,
    ) -> None:
        """Make the next ``times`` calls of ``operation`` fail with the error ``code``.

        ``operation`` is ``DescribeStream``, ``GetShardIterator``, ``GetRecords``,
        ``ListStreams`` or ``DescribeTable``; ``code`` an AWS error code such as
        ``ThrottlingException``, ``LimitExceededException``, ``InternalServerError``,
        ``ExpiredIteratorException``, or a transport-level ``ConnectionError`` (over HTTP:
        a reset connection) or ``Timeout`` (over HTTP: a stalled, then dropped connection).
        ``status`` defaults to 500 for ``InternalServerError``, none for the transport-level
        codes, 400 otherwise. Injected failures queue up in call order and fire before the
        call does anything (and before :class:`Faults` draws).
        """
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        failure = _Failure(
            code,
            message or f"simulated {code}",
            status if status is not None else _default_status(code),
        )
        with self._lock:
            self._failures.setdefault(operation, deque()).extend([failure] * times)

    def set_faults(self, faults: Faults | None = None) -> None:
        """Replace the random failures injected from now on (None: no more)."""
        with self._lock:
            self._faults = faults

    # ------------------------------------------------------------------ clients & live

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

    def live(
        self,
        *,
        writes_per_second: float = 200.0,
        rollover_every: float | None = 2.0,
        split_every: float | None = 5.0,
        max_open_shards: int = 8,
        keys: int = 50,
        duration: float | None = None,
        seed: int | None = None,
    ) -> LiveWriter:
        """A writer that keeps changing the stream while a reader runs (see
        :class:`LiveWriter`): ``async with sim.live(...) as live:`` runs it as a task paced
        by the simulator's clock; ``with sim.live(...) as live:`` in a background thread
        paced by real time. ValueError for invalid arguments."""
        return LiveWriter(
            self,
            writes_per_second=writes_per_second,
            rollover_every=rollover_every,
            split_every=split_every,
            max_open_shards=max_open_shards,
            keys=keys,
            duration=duration,
            seed=seed,
        )

    # ------------------------------------------------------------------ internals (locked)

    def _maintain(self) -> None:
        """Apply retention if anything is due (cheap otherwise)."""
        retention = self.retention
        if retention is None:
            return
        now = self.clock.time()
        if not self._retention_due < now:
            return
        due = math.inf
        for shard in self._shards.values():
            if shard.trimmed:
                continue
            if shard.closed_at is not None and shard.closed_at + retention < now:
                self._remove(shard)
                continue
            times = shard.times
            if times and times[0] + retention < now:
                shard.drop_head(bisect.bisect_left(times, True, key=lambda t: t + retention >= now))
            if times:
                due = min(due, times[0] + retention)
            if shard.closed_at is not None:
                due = min(due, shard.closed_at + retention)
        self._retention_due = due

    def _remove(self, shard: _ShardState) -> None:
        shard.drop_head(len(shard.records))
        shard.trimmed = True
        self._listing = None

    def _disable(self) -> None:
        if not self._enabled:
            return
        now = self.clock.time()
        for shard in list(self._open):
            self._close(shard, now, has_children=False)
        self._enabled = False

    def _check_table(self) -> None:
        if self._table_deleted:
            raise ValueError(f"table {self.table_name} has been deleted")

    def _allocate(self) -> int:
        value = self._next_seq
        self._last_seq = value
        self._next_seq = value + self._rng.randint(1, _MAX_GAP)
        return value

    def _new_shard(self, parent: str | None, low: int, high: int, now: float) -> str:
        millis = int(now * 1000)
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
        visible_at = now if parent is None else now + self.children_visibility_delay
        # The shard starts at the next sequence number to be handed out, so a shard's first
        # record (if nothing else is written in between) carries its StartingSequenceNumber.
        shard = _ShardState(
            shard_id, parent, low, high, self._next_seq, index, (digest, index), visible_at
        )
        self._shards[shard_id] = shard
        if parent is not None:
            self._children.setdefault(parent, []).append(shard)
        self._hidden_until = max(self._hidden_until, visible_at)
        at = bisect.bisect_left(self._open_lows, low)
        self._open_lows.insert(at, low)
        self._open.insert(at, shard)
        self._listing = None
        return shard_id

    def _close(self, shard: _ShardState, now: float, *, has_children: bool) -> None:
        shard.ending = shard.seqs[-1] if shard.seqs else self._allocate()
        shard.closed_at = now
        if has_children:
            shard.stale_until = now + self.stale_parent_duration
        if self.retention is not None:
            self._retention_due = min(self._retention_due, now + self.retention)
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
        self._maintain()
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
        # An exact-size copy: orjson's result keeps a ~4 KB allocation whatever its length,
        # which made a backlog of a million records take ~5 GB instead of under 1 GB.
        shard.records.append(bytes(memoryview(orjson.dumps(record))))
        shard.seqs.append(seq)
        shard.times.append(now)
        if self.retention is not None:
            self._retention_due = min(self._retention_due, now + self.retention)
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

    # ------------------------------------------------------------------ operations (locked)

    def _begin(self, operation: str) -> None:
        """Count the call, apply retention, fire a queued or drawn failure."""
        self.calls[operation] += 1
        self._maintain()
        queue = self._failures.get(operation)
        failure = queue.popleft() if queue else None
        if failure is None and self._faults is not None:
            failure = _draw_fault(self._faults, self._fault_key, operation, self.calls[operation])
        if failure is not None:
            self.faults_injected[failure.code] += 1
            raise TransportError(failure.code, failure.message, failure.status)

    def _check_stream(self, params: Mapping[str, Any]) -> None:
        arn = params.get("StreamArn")
        if not isinstance(arn, str) or _STREAM_ARN.match(arn) is None:
            raise _validation(f"Invalid StreamArn: {arn!r}")
        if arn != self.stream_arn or self._stream_deleted:
            raise _not_found(f"Stream: {arn} not found")

    def _listed(self, shards: list[_ShardState], now: float) -> list[_ShardState]:
        if now >= self._hidden_until:
            return shards
        return [s for s in shards if s.visible_at <= now]

    def _describe_stream(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._check_stream(params)
        now = self.clock.time()
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
        listed = self._listed(listed, now)
        start = params.get("ExclusiveStartShardId")
        if start is not None:
            if not isinstance(start, str) or start not in self._shards:
                raise _not_found(f"Shard: {start} not found")
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
            "Shards": [s.wire(now) for s in page],
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
            raise _not_found(f"Shard does not exist: {shard_id}")
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
            position = shard.base if kind == "TRIM_HORIZON" else shard.end
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
            if shard.last_trimmed is not None and value <= shard.last_trimmed:
                raise _error(
                    "TrimmedDataAccessException",
                    f"Sequence number {sequence} of shard {shard.shard_id} is beyond the "
                    "trim horizon: records older than the retention period were trimmed",
                )
            if kind == "AT_SEQUENCE_NUMBER":
                position = shard.base + bisect.bisect_left(shard.seqs, value)
            else:
                position = shard.base + bisect.bisect_right(shard.seqs, value)
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
        if arn != self.stream_arn or self._stream_deleted:
            raise _not_found(f"Stream: {arn} not found")
        return _Iterator(fields[1], fields[2], float(fields[3]), fields[4])

    def _get_records(self, params: Mapping[str, Any]) -> bytes:
        it = self._parse_iterator(params.get("ShardIterator"))
        limit = _limit(params, "Limit", 1000) or 1000
        limit = min(limit, self.max_records_per_page)
        shard = self._shards.get(it.shard_id)
        if shard is None or not 0 <= it.position <= shard.end:
            # Only a forged or corrupted iterator gets here.
            raise _validation(f"Invalid ShardIterator: {params.get('ShardIterator')!r}")
        self.get_records_calls[shard.shard_id] += 1
        now = self.clock.time()
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
        base = shard.base
        available = shard.end - it.position
        closed = not shard.is_open
        rate = self.empty_page_rate
        if (
            available > 0
            and rate > 0.0
            and it.empties < self.max_consecutive_empty_pages
            and self._rng.random() < rate
        ):
            return self._page([], _Iterator(shard.shard_id, it.position, now, it.empties + 1))
        taken: list[bytes] = []
        size = _PAGE_OVERHEAD
        for raw in shard.records[it.position - base : it.position - base + limit]:
            if taken and size + len(raw) + 1 > self.max_bytes_per_page:
                break
            taken.append(raw)
            size += len(raw) + 1
        position = it.position + len(taken)
        if not closed:
            # Caught-up empty pages are normal, not injected: they reset the chain's count.
            return self._page(taken, _Iterator(shard.shard_id, position, now, 0))
        if position < shard.end:
            return self._page(taken, _Iterator(shard.shard_id, position, now, 0))
        # At the end of a closed shard: maybe one or two empty pages before the final one.
        empties_after = it.empties + 1 if not taken else 0
        tail_cap = min(2, self.max_consecutive_empty_pages)
        if rate > 0.0 and empties_after + 1 <= tail_cap and self._rng.random() < rate:
            return self._page(taken, _Iterator(shard.shard_id, position, now, empties_after))
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
        if (
            (table is None or table == self.table_name)
            and start is None
            and not self._stream_deleted
        ):
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
        if name not in (self.table_name, self.table_arn) or self._table_deleted:
            raise _not_found(f"Table: {name} not found")
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


# --------------------------------------------------------------------------- live mode


class LiveWriter:
    """Keeps a :class:`StreamSimulator` changing while a reader runs: made by
    :meth:`StreamSimulator.live`.

    The writer puts, modifies and deletes items ``live-0`` ... ``live-<keys-1>`` (partition
    key; a sort key, if the table has one, is 0) at ``writes_per_second``, rolls over a
    random open shard every ``rollover_every`` seconds and splits a random open shard every
    ``split_every`` seconds while fewer than ``max_open_shards`` are open (None disables
    either). Events are scheduled on a fixed grid from the start (write n at n /
    ``writes_per_second``; a late wake-up catches up), so the rate is exact on average.
    It stops after ``duration`` seconds (None: until :meth:`stop` or the end of the
    ``with`` block), or when the stream stops taking writes (disabled, deleted, table
    deleted). Choices come from ``seed`` (default: the simulator's seed).

    Two ways to run it, each usable once:

    * ``async with sim.live(...) as live:`` runs the writer as a task on the running loop,
      paced by the simulator's clock: with a :class:`SimulatedClock` in virtual time (a
      reader sharing the clock sees exactly ``writes_per_second`` per virtual second), with
      the real clock in real time. Leaving the block cancels the task and waits for it; if
      the writer fails, the block is cancelled and the error raised from it.
    * ``with sim.live(...) as live:`` runs it in a background thread paced by real time
      (``time.monotonic``), for synchronous code and readers over HTTP; leaving the block
      stops and joins the thread, then raises the writer's error if it had one.

    Counters (``writes``, ``rollovers``, ``splits``, ``changes``) may be read at any time.
    """

    def __init__(
        self,
        simulator: StreamSimulator,
        *,
        writes_per_second: float = 200.0,
        rollover_every: float | None = 2.0,
        split_every: float | None = 5.0,
        max_open_shards: int = 8,
        keys: int = 50,
        duration: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not writes_per_second >= 0 or math.isinf(writes_per_second):
            raise ValueError("writes_per_second must be a finite number >= 0")
        for name, every in (("rollover_every", rollover_every), ("split_every", split_every)):
            if every is not None and not every > 0:
                raise ValueError(f"{name} must be positive (or None)")
        if max_open_shards < 1:
            raise ValueError("max_open_shards must be at least 1")
        if keys < 1:
            raise ValueError("keys must be at least 1")
        if duration is not None and not duration >= 0:
            raise ValueError("duration must not be negative (or None)")
        self.simulator: Final = simulator
        self.writes_per_second: Final = float(writes_per_second)
        self.rollover_every: Final = rollover_every
        self.split_every: Final = split_every
        self.max_open_shards: Final = max_open_shards
        self.keys: Final = keys
        self.duration: Final = duration
        #: The changes this writer recorded, in order.
        self.changes: list[SimulatedChange] = []
        #: Roll-overs and splits done.
        self.rollovers = 0
        self.splits = 0
        self._rng = random.Random(f"live:{simulator.seed if seed is None else seed!r}")
        self._present: set[int] = set()
        self._version = 0
        self._writes_due = 0  # index of the next write on the grid
        self._rollovers_due = 1
        self._splits_due = 1
        self._stopped = False
        self._used = False
        self._finished = threading.Event()
        self._stop_event = threading.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._cancelled_parent = False
        self._exiting = False
        self._thread: threading.Thread | None = None
        self._waiters_lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def __repr__(self) -> str:
        return (
            f"LiveWriter(writes={self.writes}, rollovers={self.rollovers}, "
            f"splits={self.splits}, running={self.running})"
        )

    @property
    def writes(self) -> int:
        """Changes recorded so far."""
        return len(self.changes)

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._used and not self._finished.is_set()

    @property
    def finished(self) -> bool:
        """The writer ended (duration reached, stopped, the stream stopped, or failed)."""
        return self._finished.is_set()

    def stop(self) -> None:
        """End writing now (thread-safe, idempotent). The ``with`` block still waits for
        the writer when it exits."""
        self._stopped = True
        self._stop_event.set()
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    async def wait(self) -> None:
        """Wait until the writer ends (forever if it has no ``duration`` and is not
        stopped). Does not raise the writer's error: leaving the block does."""
        if self._task is not None:
            await asyncio.wait([self._task])
        elif self._thread is not None:
            # Woken by the thread through the loop (not waited for in an executor thread,
            # which a cancelled wait would leave blocked).
            event = asyncio.Event()
            with self._waiters_lock:
                if self._finished.is_set():
                    return
                self._waiters.append((asyncio.get_running_loop(), event))
            await event.wait()

    def join(self, timeout: float | None = None) -> bool:
        """Block until a thread-run writer ends; return whether it ended (sync mode)."""
        return self._finished.wait(timeout)

    # ------------------------------------------------------------------ async mode

    async def __aenter__(self) -> Self:
        self._claim()
        self._loop = asyncio.get_running_loop()
        self._parent = asyncio.current_task()
        self._task = self._loop.create_task(self._run_async(), name="ddbstreams live writer")
        self._task.add_done_callback(self._on_task_done)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exiting = True
        task = self._task
        assert task is not None
        task.cancel()
        cancelled_meanwhile = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                cancelled_meanwhile = True  # re-raised once the writer is gone
        error = None if task.cancelled() else task.exception()
        if self._cancelled_parent and self._parent is not None:
            self._parent.uncancel()  # our own cancellation, turned into the writer's error
            if error is not None and (exc_type is None or exc_type is asyncio.CancelledError):
                raise error
        if cancelled_meanwhile:
            raise asyncio.CancelledError
        if error is not None:
            if exc is None:
                raise error
            exc.add_note(f"the live writer also failed: {error!r}")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if self._exiting or task.cancelled() or task.exception() is None:
            return
        if self._parent is not None and not self._parent.done():
            self._cancelled_parent = True
            self._parent.cancel()

    async def _run_async(self) -> None:
        clock = self.simulator.clock
        started = clock.monotonic()
        try:
            while True:
                wake = self._step(clock.monotonic() - started)
                if wake is None:
                    return
                await clock.sleep(wake - (clock.monotonic() - started))
        finally:
            self._finished.set()

    # ------------------------------------------------------------------ thread mode

    def __enter__(self) -> Self:
        self._claim()
        self._thread = threading.Thread(
            target=self._run_thread, name="ddbstreams-live-writer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        assert self._thread is not None
        self._thread.join()
        error = self._error
        if error is not None:
            if exc is None:
                raise error
            exc.add_note(f"the live writer also failed: {error!r}")

    def _run_thread(self) -> None:
        started = time.monotonic()
        try:
            while True:
                wake = self._step(time.monotonic() - started)
                if wake is None:
                    return
                if self._stop_event.wait(max(0.0, wake - (time.monotonic() - started))):
                    return
        except BaseException as error:  # reported by __exit__
            self._error = error
        finally:
            self._finished.set()
            with self._waiters_lock:
                for loop, event in self._waiters:
                    with contextlib.suppress(RuntimeError):  # that loop is closed
                        loop.call_soon_threadsafe(event.set)
                self._waiters.clear()

    # ------------------------------------------------------------------ schedule

    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a LiveWriter runs once; make another with sim.live()")
        self._used = True

    def _next_event(self) -> tuple[float, int] | None:
        """(time since start, kind) of the next event on the grid: 0 write, 1 roll, 2 split."""
        events: list[tuple[float, int]] = []
        if self.writes_per_second > 0:
            events.append((self._writes_due / self.writes_per_second, 0))
        if self.rollover_every is not None:
            events.append((self._rollovers_due * self.rollover_every, 1))
        if self.split_every is not None:
            events.append((self._splits_due * self.split_every, 2))
        return min(events, default=None)

    def _step(self, elapsed: float) -> float | None:
        """Do every event due by ``elapsed``; return when to wake next (None: finished)."""
        end = self.duration
        while not self._stopped:
            event = self._next_event()
            if event is None:
                return None
            at, kind = event
            if end is not None and at >= end - _TIME_SLACK:
                return None if elapsed >= end - _TIME_SLACK else end
            if at > elapsed + _TIME_SLACK:
                return at
            if not self._perform(kind):
                return None
        return None

    def _perform(self, kind: int) -> bool:
        """One event; False when the stream no longer takes changes (the writer ends)."""
        sim = self.simulator
        if not sim.enabled:
            return False
        try:
            if kind == 0:
                self._writes_due += 1
                self._write()
            elif kind == 1:
                self._rollovers_due += 1
                open_ids = sim.open_shard_ids()
                if open_ids:
                    sim.roll_over(self._rng.choice(open_ids))
                    self.rollovers += 1
            else:
                self._splits_due += 1
                open_ids = sim.open_shard_ids()
                if open_ids and len(open_ids) < self.max_open_shards:
                    sim.split(self._rng.choice(open_ids))
                    self.splits += 1
        except ValueError:
            # Another thread closed the shard or disabled the stream between our look and
            # our change: skip this event, or end if the stream is done.
            return sim.enabled
        return True

    def _write(self) -> None:
        sim = self.simulator
        index = self._rng.randrange(self.keys)
        key: dict[str, Any] = {sim.key_names[0]: f"live-{index}"}
        if len(sim.key_names) > 1:
            key[sim.key_names[1]] = 0
        if index in self._present and self._rng.random() < 0.1:
            self._present.discard(index)
            change = sim.delete_item(key)
        else:
            self._present.add(index)
            self._version += 1
            change = sim.put_item({**key, "version": self._version})
        if change is not None:
            self.changes.append(change)


# --------------------------------------------------------------------------- transport


class SimulatorTransport:
    """The :class:`~ddbstreams._transport.Transport` of a :class:`StreamSimulator`.

    Answers with the service's wire shapes (timestamps as epoch seconds) and raises
    :class:`~ddbstreams._transport.TransportError` with the service's error codes (and the
    transport-level ``ConnectionError``/``Timeout`` for injected resets and timeouts). Each
    call yields to the event loop once, as real I/O would. After :meth:`close` every call
    raises ``TransportError("ConnectionError", ...)`` so use-after-close bugs show.
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
            sim._begin(operation)
            return handler(sim, params)

    def get_records_sync(self, params: Mapping[str, Any]) -> bytes:
        """:meth:`get_records_body` without the event loop (used by the HTTP server)."""
        self._check_open()
        sim = self.simulator
        with sim._lock:
            sim._begin("GetRecords")
            return sim._get_records(params)

    async def close(self) -> None:
        """Mark this transport closed (the simulator itself stays usable). Idempotent."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("ConnectionError", "the simulator transport is closed")
