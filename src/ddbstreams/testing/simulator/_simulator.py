"""The facade: :class:`StreamSimulator`, a source table with a DynamoDB stream in memory.

It owns the options, the lock and the seeded random source, and wires the concerns
together: the table (:mod:`._table`), the stream's data model (:mod:`._stream`), writes
(:mod:`._writes`), the service's answers (:mod:`._service`) and injected failures
(:mod:`._faults`). Components read the options from the simulator itself (through small
protocols), so options changed on it take effect at once. Every public method takes the
lock; the components assume it is held.
"""

from __future__ import annotations

import random
import re
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final, Unpack

from ddbstreams._clock import Clock
from ddbstreams.model._types import Shard
from ddbstreams.testing.simulator._clock import SimulatedClock
from ddbstreams.testing.simulator._faults import FaultInjector, Faults
from ddbstreams.testing.simulator._live import LiveOptions, LiveWriter
from ddbstreams.testing.simulator._records import VIEW_TYPES, SimulatedChange, StreamViewType
from ddbstreams.testing.simulator._service import CALL_OPERATIONS, StreamService
from ddbstreams.testing.simulator._stream import StreamModel
from ddbstreams.testing.simulator._table import SourceTable
from ddbstreams.testing.simulator._transport import SimulatorTransport
from ddbstreams.testing.simulator._writes import ChangeWriter
from ddbstreams.transport._seam import TransportError

if TYPE_CHECKING:
    from ddbstreams.client._streams import StreamsClient

__all__ = ["DEFAULT_FIRST_SEQUENCE_NUMBER", "DEFAULT_RETENTION", "StreamSimulator"]

#: Just below 10**21: the first few sequence numbers have 21 digits, later ones 22.
DEFAULT_FIRST_SEQUENCE_NUMBER: Final = 10**21 - 200
#: Stream records are kept 24 hours, as in the service.
DEFAULT_RETENTION: Final = 24 * 3600.0


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
        _check_names(table_name, account_id, key_names, stream_view_type, partitions)
        _check_paging(
            max_records_per_page,
            max_bytes_per_page,
            empty_page_rate,
            max_consecutive_empty_pages,
            describe_page_limit,
        )
        _check_timing(
            first_sequence_number, retention, children_visibility_delay, stale_parent_duration
        )
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
        created_at = self.clock.time()
        self.stream_label: Final = _stream_label(created_at)
        self.table_arn: Final = f"arn:aws:dynamodb:{region}:{account_id}:table/{table_name}"
        self.stream_arn: Final = f"{self.table_arn}/stream/{self.stream_label}"
        self._setup(faults, first_sequence_number, partitions, created_at)

    def _setup(
        self, faults: Faults | None, first_sequence_number: int, partitions: int, created_at: float
    ) -> None:
        """The counters and the components, with the root shards."""
        #: Every change in write order (trimmed ones included).
        self.history: list[SimulatedChange] = []
        #: Calls of each operation (through any transport, :meth:`call` or
        #: :meth:`get_records_body`), failed calls included.
        self.calls: Counter[str] = Counter()
        #: GetRecords calls per shard id (calls that failed before reading the iterator,
        #: such as injected faults, are not counted here).
        self.get_records_calls: Counter[str] = Counter()
        self._faults = FaultInjector(self.seed, faults)
        #: Failures injected so far (by :meth:`fail_next` or :class:`Faults`), by error code.
        self.faults_injected: Counter[str] = self._faults.injected
        self._lock = threading.Lock()
        # One seeded sequence of draws: shard ids, sequence gaps, event ids, empty pages.
        self._rng = random.Random(self.seed)
        self._table = SourceTable(self.table_name, self.key_names)
        self._stream = StreamModel(self, rng=self._rng, first_sequence_number=first_sequence_number)
        self._service = StreamService(
            self, self._stream, self._table, rng=self._rng, created_at=created_at
        )
        self._writer = ChangeWriter(self, self._table, self._stream, lock=self._lock, rng=self._rng)
        self._stream.add_roots(partitions, created_at)

    # ------------------------------------------------------------------ inspection

    def __repr__(self) -> str:
        return f"StreamSimulator({self.stream_arn!r})"

    @property
    def enabled(self) -> bool:
        """Whether the stream still records changes (False once disabled or deleted)."""
        return self._stream.enabled

    @property
    def table_exists(self) -> bool:
        """False after :meth:`delete_table`."""
        return not self._table.deleted

    @property
    def stream_exists(self) -> bool:
        """False after :meth:`delete_stream`."""
        return not self._stream.deleted

    @property
    def faults(self) -> Faults | None:
        """The random failures currently injected (see :meth:`set_faults`)."""
        return self._faults.faults

    def shards(self, *, include_trimmed: bool = False) -> list[Shard]:
        """The shards in creation order (parents before children) as they really are:
        listing delays and stale parents do not apply here; shards removed by retention or
        :meth:`trim` only with ``include_trimmed``."""
        with self._lock:
            self._stream.maintain()
            return self._stream.models(include_trimmed=include_trimmed)

    def open_shard_ids(self) -> list[str]:
        """Ids of the shards that currently take writes, in creation order."""
        with self._lock:
            return self._stream.open_ids()

    def shard_for(self, key: Mapping[str, Any]) -> str:
        """Id of the open shard that a write of ``key`` would go to now."""
        with self._lock:
            return self._stream.route(self._table.hash_point(self._table.encode_key(key))).shard_id

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
            self._stream.maintain()
            return [change for change in self.history if self._stream.retains(change)]

    def items(self) -> list[dict[str, Any]]:
        """The source table's current items (copies), in first-write order."""
        with self._lock:
            return self._table.images()

    # ------------------------------------------------------------------ writes

    def put_item(self, item: Mapping[str, Any]) -> SimulatedChange | None:
        """Write ``item`` (plain Python values): an INSERT if new, else a MODIFY.

        Returns the change recorded, or ``None`` when nothing was recorded: the item is
        identical to the stored one (DynamoDB Streams records no change for a write that
        changes nothing) or the stream is disabled. Raises ValueError if a key attribute is
        missing or the table was deleted, and TypeError for values DynamoDB cannot hold.
        """
        return self._writer.put(item)

    def delete_item(self, key: Mapping[str, Any]) -> SimulatedChange | None:
        """Delete the item with ``key`` (a mapping holding at least the key attributes):
        a REMOVE, or ``None`` if there was no such item (nothing is recorded then).
        ValueError if the table was deleted."""
        return self._writer.delete(key, ttl=False)

    def ttl_delete(self, key: Mapping[str, Any]) -> SimulatedChange | None:
        """Delete as DynamoDB's time-to-live does: a REMOVE whose record carries
        ``userIdentity {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}``."""
        return self._writer.delete(key, ttl=True)

    # ------------------------------------------------------------------ topology

    def roll_over(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (or every open shard) and open one child per closed shard
        owning the same hash range, as the service does about every 4 hours.

        Returns the new shard ids. ValueError if ``shard_id`` is not an open shard or the
        stream is disabled.
        """
        with self._lock:
            return self._stream.roll_over(shard_id)

    def split(self, shard_id: str | None = None) -> list[str]:
        """Close ``shard_id`` (or every open shard) and open two children, each owning half
        of the parent's hash range. Returns the new shard ids (two per closed shard).

        ValueError if ``shard_id`` is not an open shard or its range is too small to halve,
        or the stream is disabled.
        """
        with self._lock:
            return self._stream.split(shard_id)

    def trim(self, shard_id: str) -> None:
        """Remove a closed shard and its records now, as retention does after 24 hours.

        The shard disappears from DescribeStream while its children keep naming it as
        ``ParentShardId``; GetShardIterator on it raises ResourceNotFoundException and
        GetRecords with an iterator issued before raises TrimmedDataAccessException.
        ValueError if the shard is unknown, already trimmed, or still open.
        """
        with self._lock:
            self._stream.trim(shard_id)

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
            self._stream.maintain()

    def disable_stream(self) -> None:
        """Disable the stream: every open shard is closed, the status becomes DISABLED and
        later writes change the table without recording anything; DescribeTable shows
        ``StreamEnabled: false``. What was recorded stays readable. Idempotent."""
        with self._lock:
            self._stream.disable()

    def delete_table(self) -> None:
        """Delete the source table: DescribeTable raises ResourceNotFoundException, writes
        raise ValueError, and the stream becomes DISABLED (every shard closed) but stays
        readable, as a deleted table's stream does for 24 hours. Idempotent."""
        with self._lock:
            self._stream.disable()
            self._table.delete()

    def delete_stream(self) -> None:
        """Make the stream disappear altogether: every call naming its ARN (or using one of
        its iterators) raises ResourceNotFoundException and ListStreams no longer lists it.
        The table stays (with its stream disabled, ``LatestStreamArn`` still naming the
        gone stream). Idempotent."""
        with self._lock:
            self._stream.disable()
            self._stream.deleted = True

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
        with self._lock:
            self._faults.fail_next(operation, code, times=times, message=message, status=status)

    def set_faults(self, faults: Faults | None = None) -> None:
        """Replace the random failures injected from now on (None: no more)."""
        with self._lock:
            self._faults.faults = faults

    # ------------------------------------------------------------------ answering calls

    def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Answer a ``DescribeStream``, ``GetShardIterator``, ``ListStreams`` or
        ``DescribeTable`` request (``params``) as the service would, or raise
        :class:`~ddbstreams.transport._seam.TransportError` with its error code (any other
        operation: ``UnknownOperationException``). Counts in :attr:`calls`, applies retention
        and fires injected failures first. Thread-safe; :meth:`transport` and the HTTP server
        answer through it."""
        if operation not in CALL_OPERATIONS:
            raise TransportError(
                "UnknownOperationException", f"unknown operation {operation!r}", 400
            )
        with self._lock:
            self._begin(operation)
            return self._service.call(operation, params)

    def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        """Answer one ``GetRecords`` call: the response body exactly as the service sends
        it (JSON bytes), or :class:`~ddbstreams.transport._seam.TransportError`; see :meth:`call`.
        Thread-safe."""
        with self._lock:
            self._begin("GetRecords")
            return self._service.get_records(params)

    # ------------------------------------------------------------------ clients & live

    def transport(self) -> SimulatorTransport:
        """A new :class:`~ddbstreams.transport._seam.Transport` over this simulator."""
        return SimulatorTransport(self)

    def client(self, **kwargs: Any) -> StreamsClient:
        """A :class:`~ddbstreams.StreamsClient` reading this simulator in memory.

        ``kwargs`` go to ``StreamsClient`` (``retry=``, ``clock=``...); ``clock`` defaults
        to the simulator's clock so backoff sleeps run on the same (virtual) timeline.
        """
        from ddbstreams.client._streams import StreamsClient

        kwargs.setdefault("clock", self.clock)
        return StreamsClient(transport=self.transport(), **kwargs)

    def live(self, **options: Unpack[LiveOptions]) -> LiveWriter:
        """A writer that keeps changing the stream while a reader runs (see
        :class:`LiveWriter`, which lists the options ``writes_per_second``,
        ``rollover_every``, ``split_every``, ``max_open_shards``, ``keys``, ``duration`` and
        ``seed`` with their defaults): ``async with sim.live(...) as live:`` runs it as a task
        paced by the simulator's clock; ``with sim.live(...) as live:`` in a background thread
        paced by real time. ValueError for invalid arguments."""
        return LiveWriter(self, **options)

    # ------------------------------------------------------------------ internals (locked)

    def _begin(self, operation: str) -> None:
        """Count the call, apply retention, fire a queued or drawn failure."""
        self.calls[operation] += 1
        self._stream.maintain()
        self._faults.fire(operation, self.calls[operation])


def _stream_label(created_at: float) -> str:
    """The stream's label, from its creation time: ``2026-11-29T06:31:20.000``."""
    return (
        datetime.fromtimestamp(created_at, tz=UTC).strftime("%Y-%m-%dT%H:%M:%S.")
        + f"{int(created_at * 1000) % 1000:03d}"
    )


def _check_names(
    table_name: str,
    account_id: str,
    key_names: Sequence[str],
    stream_view_type: str,
    partitions: int,
) -> None:
    if not re.fullmatch(r"[\w.-]{3,255}", table_name):
        raise ValueError(f"invalid table name {table_name!r}")
    if not re.fullmatch(r"\d{12}", account_id):
        raise ValueError(f"account_id must be 12 digits, got {account_id!r}")
    if not 1 <= len(key_names) <= 2 or len(set(key_names)) != len(key_names):
        raise ValueError("key_names must be a partition key and an optional sort key")
    if stream_view_type not in VIEW_TYPES:
        raise ValueError(f"unknown stream view type {stream_view_type!r}")
    if partitions < 1:
        raise ValueError("partitions must be at least 1")


def _check_paging(
    max_records_per_page: int,
    max_bytes_per_page: int,
    empty_page_rate: float,
    max_consecutive_empty_pages: int,
    describe_page_limit: int,
) -> None:
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


def _check_timing(
    first_sequence_number: int,
    retention: float | None,
    children_visibility_delay: float,
    stale_parent_duration: float,
) -> None:
    if first_sequence_number < 10**20:
        raise ValueError("first_sequence_number must have at least 21 digits")
    if retention is not None and not retention > 0:
        raise ValueError("retention must be positive (or None)")
    if not children_visibility_delay >= 0:
        raise ValueError("children_visibility_delay must not be negative")
    if not stale_parent_duration >= 0:
        raise ValueError("stale_parent_duration must not be negative")
