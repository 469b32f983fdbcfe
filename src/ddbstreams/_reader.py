"""The stream reader: runs shard readers under one task group and hands records to the caller.

Structure (after aiokafka's fetcher / coordinator split):

* ``_ShardFetcher`` follows one shard: iterator acquisition, paging through empty pages,
  polling an open shard, iterator expiry, trimmed records, end of shard. It only produces
  pages into the shared buffer and reports to the coordinator.
* ``StreamReader._coordinate`` owns the task group: it starts a fetcher for every shard
  as soon as lineage allows (a child only once every planned parent has been read to its
  end); in follow mode it also discovers new shards (children at a shard's end, and a
  periodic full DescribeStream) and forgets finished ones.

Every shard that may be read has a fetcher, always: a bound on concurrency never decides
*which* shards are followed. ``max_concurrent_requests`` bounds the requests in flight and
the pages fetched but not yet in the buffer (a fetcher holds a request slot from its call
until its page is in the buffer); waiters get slots first come, first served, so a busy
shard cannot starve a quiet one. A caller that cannot take a shard's records for a while
(a consumer whose handler keeps failing on that shard) pauses it (:meth:`StreamReader.pause`)
and the other shards go on.
* ``_Delivery`` is the state on the caller's side: the page being handed out and the
  checkpoint of exactly what was handed out so far.

Pages travel through one bounded FIFO (``buffer_pages``). Because a parent's fetcher has put
its last page in the FIFO before its child's fetcher starts, every item's changes come out
in order, and a slow caller pauses the fetchers instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import warnings
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from types import TracebackType
from typing import Any, Generic, Literal, Self, TypeVar, cast, overload

from ddbstreams._backoff import exponential_delay, idle_poll_delay, next_call_slot
from ddbstreams._client import RetryNotice, StreamsClient
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._decode import DefaultParser, RawParser
from ddbstreams._errors import (
    CheckpointError,
    ConfigurationError,
    DDBStreamsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidPositionError,
    ServiceError,
    ShardNotFoundError,
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
from ddbstreams._lineage import LineageTracker, ShardGraph, plan_reads
from ddbstreams._model import Record, RecordsPage, Shard, StreamDescription
from ddbstreams._parser import Parser
from ddbstreams._position import (
    SHARD_TRIM_HORIZON,
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    Checkpoint,
    ShardStart,
    StartPosition,
)
from ddbstreams._tasks import first_error, first_of

__all__ = ["ReaderOptions", "ShardBatch", "StreamReader", "TrimmedPolicy"]

log = logging.getLogger("ddbstreams")

T = TypeVar("T")
R = TypeVar("R")

TrimmedPolicy = Literal["skip", "raise"]

# Errors a follow reader outlives: it waits and tries again rather than ending.
_TRANSIENT = (ThrottledError, ServiceError, EndpointConnectionError)


@dataclass(slots=True)
class _Page(Generic[T]):
    """A slice of one shard in the buffer. ``ends_shard``: the shard has no more records."""

    shard_id: str
    records: list[T]
    sequence_numbers: list[str]
    ends_shard: bool
    parent_shard_id: str | None = None


@dataclass(frozen=True, slots=True)
class ShardBatch(Generic[T]):
    """Consecutive records of one shard, as :meth:`StreamReader.shard_batches` yields them.

    ``sequence_numbers[i]`` is the sequence number of ``records[i]``. ``ends_shard`` is set
    on the last batch of a shard that has ended; that batch may have no records (the
    shard's last page was empty), which is how a consumer learns the shard is finished.
    ``parent_shard_id`` is the shard's parent as listed (its records come first).
    ``position_before`` is where :meth:`StreamReader.checkpoint` had the shard just before
    this batch was handed out: AFTER the last record handed, the start of a shard that has
    handed nothing yet, or ``None`` when the checkpoint did not name the shard.
    """

    shard_id: str
    records: list[T]
    sequence_numbers: list[str]
    ends_shard: bool
    parent_shard_id: str | None = None
    position_before: ShardStart | None = None


@dataclass(frozen=True, slots=True)
class _EndOfPass:
    """Last item in the buffer: the read is over, with ``error`` if it failed."""

    error: BaseException | None


@dataclass(frozen=True, slots=True)
class _ShardDone:
    """Coordinator message: a fetcher ended; ``ended`` if the shard itself has ended."""

    shard_id: str
    ended: bool


@dataclass(frozen=True, slots=True)
class _Discovered:
    """Coordinator message: shards seen by DescribeStream; ``complete`` if every page."""

    shards: tuple[Shard, ...]
    complete: bool
    disabled: bool


_Message = _ShardDone | _Discovered


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """Tuning of a :class:`StreamReader` (all durations in seconds).

    - ``max_concurrent_requests``: GetRecords / GetShardIterator calls in flight at once
      (and pages fetched but not yet in the buffer). It bounds load and memory, never which
      shards are read: every shard that may be read has its own fetcher, and fetchers take
      turns first come, first served. ``max_concurrent_shards`` is its deprecated former
      name (it used to cap the shards read at once, which left every shard past that
      number unread in follow mode).
    - ``buffer_pages``: pages waiting for the caller; when full, fetching pauses.
    - ``page_limit``: GetRecords Limit (1 to 1000; ``None``: the service's maximum).
    - ``catch_up_empty_pages``: in a single pass an open shard counts as caught up after
      this many consecutive empty pages (GetRecords may return an empty page mid-shard, so
      one is not enough). ``creation_time_slack``: a single pass also stops reading an open
      shard after a page whose last record was created this long after the pass began
      (clock skew allowance between this host and the service).
    - ``empty_page_delay``: wait between empty pages of an open shard in a single pass.
    - ``idle_poll_delay`` / ``idle_poll_max_delay``: in follow mode, the wait after an
      empty page doubles from the first to the second for a shard that stays idle; after a
      page with records the next poll is immediate.
    - ``describe_interval``: in follow mode, how often a full DescribeStream looks for
      shards that were missed. ``describe_rate``: DescribeStream calls allowed per second
      (the service allows 10 per stream).
    - ``child_discovery_timeout``: how long to keep asking for a finished shard's children
      (they can take a moment to appear) before leaving it to the periodic DescribeStream.
    - ``on_trimmed``: ``"skip"`` continues at the oldest remaining record and reports a
      :class:`~ddbstreams.RecordsTrimmed` event; ``"raise"`` ends the read with
      :class:`~ddbstreams.TrimmedDataError`.
    - ``retry_max_delay``: in follow mode, the longest wait between attempts at a shard
      whose calls keep failing after the client's own retries (throttling, 5xx, network).
    - ``event_buffer``: events kept for :meth:`StreamReader.events` before the oldest drop.
    """

    max_concurrent_requests: int = 8
    buffer_pages: int = 8
    page_limit: int | None = None
    catch_up_empty_pages: int = 3
    empty_page_delay: float = 0.1
    creation_time_slack: float = 5.0
    idle_poll_delay: float = 0.1
    idle_poll_max_delay: float = 0.4
    describe_interval: float = 60.0
    describe_rate: float = 5.0
    child_discovery_timeout: float = 30.0
    on_trimmed: TrimmedPolicy = "skip"
    retry_max_delay: float = 30.0
    event_buffer: int = 1000
    max_concurrent_shards: int | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent_shards is not None:
            warnings.warn(
                "max_concurrent_shards is deprecated: use max_concurrent_requests (it bounds "
                "requests in flight; every shard is always read)",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "max_concurrent_requests", self.max_concurrent_shards)
            object.__setattr__(self, "max_concurrent_shards", None)
        if self.max_concurrent_requests < 1:
            raise ConfigurationError("max_concurrent_requests must be at least 1")
        if self.buffer_pages < 1:
            raise ConfigurationError("buffer_pages must be at least 1")
        if self.page_limit is not None and not 1 <= self.page_limit <= 1000:
            raise ConfigurationError("page_limit must be between 1 and 1000")
        if self.catch_up_empty_pages < 1:
            raise ConfigurationError("catch_up_empty_pages must be at least 1")
        durations = (
            self.empty_page_delay,
            self.creation_time_slack,
            self.idle_poll_delay,
            self.idle_poll_max_delay,
            self.child_discovery_timeout,
            self.retry_max_delay,
        )
        if any(value < 0 for value in durations):
            raise ConfigurationError("durations must not be negative")
        if self.describe_interval <= 0 or self.describe_rate <= 0:
            raise ConfigurationError("describe_interval and describe_rate must be positive")
        if self.on_trimmed not in ("skip", "raise"):
            raise ConfigurationError("on_trimmed must be 'skip' or 'raise'")
        if self.event_buffer < 1:
            raise ConfigurationError("event_buffer must be at least 1")


class _Delivery(Generic[T]):
    """Caller-side state: the page being handed out and the checkpoint of what was handed.

    Only the caller touches it, so ``checkpoint()`` names exactly the records that left the
    reader, never records that merely sit in the buffer.
    """

    __slots__ = ("current", "finished", "offset", "pending", "positions")

    def __init__(self, initial: Checkpoint | None, plan: Mapping[str, ShardStart]) -> None:
        self.positions: dict[str, str] = dict(initial.positions) if initial else {}
        self.finished: set[str] = set(initial.finished) if initial else set()
        self.pending: dict[str, ShardStart] = {
            shard_id: start
            for shard_id, start in plan.items()
            if shard_id not in self.positions and shard_id not in self.finished
        }
        self.current: _Page[T] | None = None
        self.offset = 0

    def take(self, max_size: int) -> list[T]:
        """Hand out up to ``max_size`` records of the current page (there must be one)."""
        page = self.current
        assert page is not None
        start = self.offset
        end = min(start + max_size, len(page.records))
        self._handed(page, end)
        return page.records[start:end]

    def take_one(self) -> T:
        """Hand out the next record of the current page (there must be one)."""
        page = self.current
        assert page is not None
        index = self.offset
        self._handed(page, index + 1)
        return page.records[index]

    def accept(self, page: _Page[T]) -> None:
        """Make ``page`` current; a page without records only settles its shard's state."""
        self.current = page
        self.offset = 0
        if not page.records:
            self._handed(page, 0)

    def _handed(self, page: _Page[T], end: int) -> None:
        # Positions change before the caller sees the records, so a checkpoint taken while
        # holding a record includes it, and one taken before receiving it does not.
        if end > self.offset:
            self.positions[page.shard_id] = page.sequence_numbers[end - 1]
            self.pending.pop(page.shard_id, None)
        self.offset = end
        if end == len(page.records):
            if page.ends_shard:
                self.finished.add(page.shard_id)
                self.positions.pop(page.shard_id, None)
                self.pending.pop(page.shard_id, None)
            self.current = None
            self.offset = 0


class _EventHub:
    """Fans events out to the callback and to :meth:`StreamReader.events` subscribers.

    Publishing never blocks a fetcher: a subscriber that falls behind loses its oldest
    events (counted in ``dropped``). A failing callback is logged, not propagated.
    """

    __slots__ = ("_callback", "_closed", "_subscribers", "dropped")

    def __init__(self, callback: Callable[[ReaderEvent], None] | None) -> None:
        self._callback = callback
        self._subscribers: list[_Subscription] = []
        self._closed = False
        self.dropped = 0

    def publish(self, event: ReaderEvent) -> None:
        if self._callback is not None:
            try:
                self._callback(event)
            except Exception:
                log.exception("on_event callback failed on %r", event)
        for subscriber in self._subscribers:
            self.dropped += subscriber.put(event)

    def subscribe(self, size: int) -> _Subscription:
        subscription = _Subscription(size)
        if self._closed:
            subscription.close()
        else:
            self._subscribers.append(subscription)
        return subscription

    def close(self) -> None:
        self._closed = True
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers.clear()


class _Subscription:
    __slots__ = ("_closed", "_events", "_wakeup")

    def __init__(self, size: int) -> None:
        self._events: deque[ReaderEvent] = deque(maxlen=size)
        self._wakeup = asyncio.Event()
        self._closed = False

    def put(self, event: ReaderEvent) -> int:
        dropped = int(len(self._events) == self._events.maxlen)
        self._events.append(event)
        self._wakeup.set()
        return dropped

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    async def __aiter__(self) -> AsyncIterator[ReaderEvent]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


class StreamReader(Generic[T]):
    """Reads one DynamoDB stream, honouring shard lineage.

    ``stream`` is a stream ARN or a source table name (resolved to its latest stream).
    ``start`` is ``TRIM_HORIZON``, ``LATEST``, ``at_sequence(...)``, ``after_sequence(...)``
    or a :class:`Checkpoint` from an earlier reader of the same stream.

    Single pass (``follow=False``): reads every selected shard that exists when the reader
    starts; a closed shard to its end (through any empty pages), an open shard until it has
    caught up with the moment the pass began. Every record present when the pass began is
    delivered exactly once, and no shard's records are delivered before its parent's. Then
    iteration ends.

    Follow (``follow=True``): runs until stopped. Open shards are polled (immediately after
    a page with records, after a short, growing wait after an empty one); when a shard ends
    its children are found and started once all their parents are finished; a periodic
    DescribeStream catches anything missed. Expired iterators are re-acquired after the
    last record taken; trimmed records follow ``on_trimmed``; throttling, 5xx and network
    failures are retried without losing the shard's position. A disabled stream is read
    to its end, then iteration ends; a deleted stream raises StreamNotFoundError.

    Use it as an async context manager (or call :meth:`start` and :meth:`stop`), and iterate
    records with ``async for`` or batches with :meth:`batches`. :meth:`checkpoint` returns the
    position reached: exactly what was handed to the caller. Progress is reported as typed
    events (``on_event=`` callback, or :meth:`events`) and :meth:`lag`.

    Errors: typed :class:`DDBStreamsError` subclasses from :meth:`start` (unknown stream or
    table, malformed ARN, unusable position, checkpoint of another stream) and from iteration.
    Cancelling the iterating task, or leaving the ``async with`` block early, stops every
    shard fetcher; none outlives the reader.
    """

    @overload
    def __init__(
        self: StreamReader[Record],
        stream: str,
        *,
        start: StartPosition = ...,
        follow: bool = ...,
        endpoint_url: str | None = ...,
        region_name: str | None = ...,
        client: StreamsClient | None = ...,
        parser: None = ...,
        max_concurrent_requests: int | None = ...,
        max_concurrent_shards: int | None = ...,
        buffer_pages: int | None = ...,
        page_limit: int | None = ...,
        on_trimmed: TrimmedPolicy | None = ...,
        on_event: Callable[[ReaderEvent], None] | None = ...,
        options: ReaderOptions | None = ...,
        clock: Clock | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: StreamReader[T],
        stream: str,
        *,
        start: StartPosition = ...,
        follow: bool = ...,
        endpoint_url: str | None = ...,
        region_name: str | None = ...,
        client: StreamsClient | None = ...,
        parser: Parser[T],
        max_concurrent_requests: int | None = ...,
        max_concurrent_shards: int | None = ...,
        buffer_pages: int | None = ...,
        page_limit: int | None = ...,
        on_trimmed: TrimmedPolicy | None = ...,
        on_event: Callable[[ReaderEvent], None] | None = ...,
        options: ReaderOptions | None = ...,
        clock: Clock | None = ...,
    ) -> None: ...

    def __init__(
        self,
        stream: str,
        *,
        start: StartPosition = TRIM_HORIZON,
        follow: bool = False,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: StreamsClient | None = None,
        parser: Parser[Any] | None = None,
        max_concurrent_requests: int | None = None,
        max_concurrent_shards: int | None = None,
        buffer_pages: int | None = None,
        page_limit: int | None = None,
        on_trimmed: TrimmedPolicy | None = None,
        on_event: Callable[[ReaderEvent], None] | None = None,
        options: ReaderOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise ConfigurationError("pass either client= or endpoint_url=/region_name=, not both")
        if not isinstance(stream, str) or not stream:
            raise ConfigurationError("stream must be a stream ARN or a table name")
        overrides: dict[str, Any] = {
            name: value
            for name, value in (
                ("max_concurrent_requests", max_concurrent_requests),
                ("max_concurrent_shards", max_concurrent_shards),
                ("buffer_pages", buffer_pages),
                ("page_limit", page_limit),
                ("on_trimmed", on_trimmed),
            )
            if value is not None
        }
        self._options = replace(options or ReaderOptions(), **overrides)
        self._stream = stream
        self._start_position = start
        self._follow = follow
        self._client = client
        self._owns_client = client is None
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
        }
        self._parser: Parser[T] = cast("Parser[T]", parser or DefaultParser())
        self._clock = clock or SystemClock()
        self._events = _EventHub(on_event)
        self._stream_arn: str | None = None
        self._buffer: asyncio.Queue[_Page[T] | _EndOfPass] = asyncio.Queue(
            self._options.buffer_pages
        )
        self._control: asyncio.Queue[_Message] = asyncio.Queue()
        self._request_slots = asyncio.Semaphore(self._options.max_concurrent_requests)
        # Full listings on demand (follow mode): requested by child discovery, made by the
        # periodic describe task, shared by every task waiting for one.
        self._listing_wanted = asyncio.Event()
        self._listing: asyncio.Future[StreamDescription] | None = None
        self._discovering: set[str] = set()
        # Paused shards, each with the event that resumes it.
        self._paused: dict[str, asyncio.Event] = {}
        self._coordinator: asyncio.Task[None] | None = None
        self._tracker: LineageTracker | None = None
        self._delivery: _Delivery[T] | None = None
        self._remove_retry_listener: Callable[[], None] | None = None
        self._describe_slots: list[float] = []
        self._lag_origin: dict[str, float | None] = {}
        # Where each started shard began, until the caller has had all of it: a shard whose
        # pages still wait in the buffer must stay named in checkpoints, or a resume would
        # take it for consumed once its children are named.
        self._started: dict[str, ShardStart] = {}
        self._disabled = False
        self._ended = False
        self._stopped = False
        self._pass_started_at = 0.0

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def stream_arn(self) -> str:
        """The ARN of the stream being read (after :meth:`start`)."""
        if self._stream_arn is None:
            raise RuntimeError("the reader has not been started")
        return self._stream_arn

    @property
    def follow(self) -> bool:
        return self._follow

    async def start(self) -> None:
        """Resolve the stream, plan the shards to read and start fetching.

        Raises the errors listed on the class before any record is fetched. Idempotent.
        """
        if self._coordinator is not None:
            return
        if self._stopped:
            raise RuntimeError("a stopped reader cannot be started again")
        try:
            if self._client is None:
                self._client = StreamsClient(**self._client_args)
            client = self._client
            self._stream_arn = await client.resolve_stream(self._stream)
            initial = self._start_position
            if isinstance(initial, Checkpoint) and initial.stream_arn != self._stream_arn:
                raise CheckpointError(
                    f"the checkpoint belongs to stream {initial.stream_arn}, "
                    f"not to {self._stream_arn}"
                )
            self._pass_started_at = self._clock.time()
            description = await self._describe()
            graph = ShardGraph.from_shards(description.shards)
            holder = None
            if isinstance(initial, AtSequence | AfterSequence):
                holder = await _locate_record(
                    client,
                    self._stream_arn,
                    graph.shards_holding(initial.sequence_number),
                    initial.sequence_number,
                )
            plan = plan_reads(graph, initial, holder=holder)
            if isinstance(initial, Checkpoint):
                initial = self._settle_checkpoint(initial, plan.missing_checkpoint_shards)
        except BaseException:
            await self._close_client()
            raise
        self._disabled = description.stream_status in ("DISABLING", "DISABLED")
        self._delivery = _Delivery(
            initial if isinstance(initial, Checkpoint) else None, plan.starts
        )
        self._tracker = LineageTracker(graph, plan)
        self._remove_retry_listener = client.add_retry_listener(self._on_retry)
        self._coordinator = asyncio.get_running_loop().create_task(
            self._coordinate(self._tracker), name=f"ddbstreams-reader {self._stream_arn}"
        )

    def _settle_checkpoint(self, checkpoint: Checkpoint, missing: frozenset[str]) -> Checkpoint:
        """Apply the trimming policy to checkpoint shards the service no longer lists."""
        # A finished shard trimmed away lost nothing; an unfinished one did.
        lost = missing & (set(checkpoint.positions) | set(checkpoint.pending))
        if lost and self._options.on_trimmed == "raise":
            raise CheckpointError(
                f"the checkpoint names unfinished shards no longer in stream "
                f"{self._stream_arn} (trimmed after 24 hours?): {', '.join(sorted(lost))}"
            )
        for shard_id in sorted(lost):
            self._events.publish(
                RecordsTrimmed(shard_id, checkpoint.positions.get(shard_id), shard_gone=True)
            )
        # Forget what the service has forgotten, so checkpoints do not grow forever.
        return Checkpoint(
            checkpoint.stream_arn,
            {k: v for k, v in checkpoint.positions.items() if k not in missing},
            checkpoint.finished - missing,
            {k: v for k, v in checkpoint.pending.items() if k not in missing},
        )

    async def stop(self) -> None:
        """Stop fetching and release the client (if the reader created it). Idempotent.

        Returns once every shard fetcher has ended. Records already handed to the caller
        stay in :meth:`checkpoint`; records still in the buffer are dropped.
        """
        self._stopped = True
        coordinator, self._coordinator = self._coordinator, None
        if coordinator is not None:
            coordinator.cancel()
            # Shielded so a caller cancelled while stopping still waits for the fetchers.
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(_wait_quietly(coordinator))
        if self._remove_retry_listener is not None:
            self._remove_retry_listener()
            self._remove_retry_listener = None
        self._events.close()
        await self._close_client()

    async def _close_client(self) -> None:
        if self._owns_client and self._client is not None:
            client, self._client = self._client, None
            await asyncio.shield(client.close())

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- consuming -------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The position reached: per shard, the last sequence number handed to the caller.

        Pass it back as ``start=`` to resume right after it. Shards read to their end are
        ``finished``; shards being read or waiting to be read that have handed nothing yet
        are ``pending`` with the position they start at. Finished shards whose readers'
        children have started are left out (lineage infers them from their descendants), so
        a follow reader's checkpoint does not grow with the stream's age.
        """
        delivery = self._delivery
        if delivery is None or self._stream_arn is None:
            raise RuntimeError("the reader has not been started")
        positions = dict(delivery.positions)
        finished = set(delivery.finished)
        pending = dict(delivery.pending)
        tracker = self._tracker
        if tracker is not None:
            finished -= tracker.forgotten
            # Name every shard still to be read or handed out, so that the finished ancestors
            # left out above are known to be consumed (they have a named descendant).
            self._prune_started()
            unhanded = dict(self._started)
            unhanded.update((sid, tracker.start_of(sid)) for sid in tracker.waiting)
            for shard_id, start in unhanded.items():
                if shard_id not in positions and shard_id not in finished:
                    pending.setdefault(shard_id, start)
        return Checkpoint(
            stream_arn=self._stream_arn,
            positions=positions,
            finished=frozenset(finished),
            pending=pending,
        )

    def _prune_started(self) -> None:
        delivered = self._delivery_state().finished
        for shard_id in [sid for sid in self._started if sid in delivered]:
            del self._started[shard_id]

    def pause(self, shard_id: str) -> None:
        """Stop fetching ``shard_id`` until :meth:`resume`; the other shards go on.

        For a caller that cannot take this shard's records for a while (a consumer whose
        handler keeps failing on one shard). A request in flight completes and its page
        still reaches the buffer; then the shard's fetcher waits. Pausing a shard that is not
        being read yet takes effect when it starts. Idempotent.
        """
        self._paused.setdefault(shard_id, asyncio.Event())

    def resume(self, shard_id: str) -> None:
        """Let a paused shard's fetcher go on (see :meth:`pause`). Idempotent."""
        resumed = self._paused.pop(shard_id, None)
        if resumed is not None:
            resumed.set()

    def paused(self) -> frozenset[str]:
        """The shards paused now."""
        return frozenset(self._paused)

    def lag(self) -> dict[str, float]:
        """Per running shard, seconds between now and the creation of the last record read.

        A shard whose last poll found nothing new (caught up) has lag 0. Creation times are
        approximate (DynamoDB rounds them; DynamoDB Local to the minute).
        """
        now = self._clock.time()
        return {
            shard_id: 0.0 if created is None else max(0.0, now - created)
            for shard_id, created in self._lag_origin.items()
        }

    def events(self) -> AsyncIterator[ReaderEvent]:
        """Iterate the reader's events from now on, until the reader stops.

        Events are kept in a bounded buffer (``event_buffer``); a slow iterator loses the
        oldest ones rather than slowing the reader down.
        """
        return aiter(self._events.subscribe(self._options.event_buffer))

    def __aiter__(self) -> AsyncIterator[T]:
        return self._records()

    async def _records(self) -> AsyncIterator[T]:
        delivery = self._delivery_state()
        while await self._fill():
            while delivery.current is not None:
                yield delivery.take_one()

    def batches(self, max_size: int = 1000) -> AsyncIterator[list[T]]:
        """Iterate lists of at most ``max_size`` records, each from a single shard, in order."""
        if max_size < 1:
            raise ConfigurationError("max_size must be at least 1")
        return self._batches(max_size)

    async def _batches(self, max_size: int) -> AsyncIterator[list[T]]:
        while True:
            batch = await self._next_batch(max_size)
            if batch is None:
                return
            yield batch

    def shard_batches(self, max_size: int = 1000) -> AsyncIterator[ShardBatch[T]]:
        """Iterate :class:`ShardBatch` es: like :meth:`batches`, with the shard, the sequence
        numbers and end-of-shard markers (possibly without records) for consumers that
        keep their own checkpoints."""
        if max_size < 1:
            raise ConfigurationError("max_size must be at least 1")
        return self._shard_batches(max_size)

    async def _shard_batches(self, max_size: int) -> AsyncIterator[ShardBatch[T]]:
        while True:
            batch = await self._next_shard_batch(max_size)
            if batch is None:
                return
            yield batch

    async def _next_shard_batch(self, max_size: int) -> ShardBatch[T] | None:
        delivery = self._delivery_state()
        while delivery.current is None:
            if self._ended:
                return None
            item = await self._buffer.get()
            if isinstance(item, _EndOfPass):
                self._ended = True
                if item.error is not None:
                    raise item.error
                return None
            # Not accept(): an empty end-of-shard page must reach the caller as a batch.
            delivery.current = item
            delivery.offset = 0
        page = delivery.current
        start = delivery.offset
        end = min(start + max_size, len(page.records))
        before = self._position_of(page.shard_id)
        delivery._handed(page, end)
        return ShardBatch(
            page.shard_id,
            page.records[start:end],
            page.sequence_numbers[start:end],
            page.ends_shard and end == len(page.records),
            page.parent_shard_id,
            before,
        )

    def _position_of(self, shard_id: str) -> ShardStart | None:
        """The shard's entry in :meth:`checkpoint`, without building the whole checkpoint."""
        delivery = self._delivery_state()
        if shard_id in delivery.positions:
            return ShardStart("AFTER_SEQUENCE_NUMBER", delivery.positions[shard_id])
        if shard_id in delivery.pending:
            return delivery.pending[shard_id]
        return self._started.get(shard_id)

    async def _next_batch(self, max_size: int) -> list[T] | None:
        """Next non-empty batch, or None at the end of the read. Raises the read's error."""
        if not await self._fill():
            return None
        return self._delivery_state().take(max_size)

    def _delivery_state(self) -> _Delivery[T]:
        if self._delivery is None:
            raise RuntimeError("start the reader (async with, or await start()) before reading")
        return self._delivery

    async def _fill(self) -> bool:
        """Make a page with records current; False at the end of the read.

        Waits for the fetchers (cancellable) and raises the error that ended the read.
        """
        delivery = self._delivery_state()
        while delivery.current is None:
            if self._ended:
                return False
            item = await self._buffer.get()
            if isinstance(item, _EndOfPass):
                self._ended = True
                if item.error is not None:
                    raise item.error
                return False
            delivery.accept(item)
        return True

    # -- coordinating ----------------------------------------------------------------------

    async def _coordinate(self, tracker: LineageTracker) -> None:
        """Start shard fetchers as lineage allows; discover shards in follow mode.

        States: reading (fetchers run, discovery runs) -> done (single pass: every planned
        shard read; follow: the stream is disabled and every shard read) -> the end-of-read
        marker is put in the buffer. An error in any task ends the read with that error.
        """
        error: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                periodic = None
                if self._follow:
                    periodic = group.create_task(
                        self._describe_periodically(), name="ddbstreams-describe"
                    )
                while True:
                    self._start_ready(tracker, group)
                    if self._follow:
                        # Parents whose children have all started are covered by them now.
                        tracker.forget_finished()
                        self._prune_started()
                    if tracker.is_done() and (not self._follow or self._disabled):
                        break
                    if not tracker.running and not self._follow:
                        # Lineage guarantees progress; waiting here would hang silently.
                        raise RuntimeError(f"no shard can start: waiting {sorted(tracker.waiting)}")
                    self._handle(await self._control.get(), tracker, group)
                if periodic is not None:
                    periodic.cancel()
        except BaseExceptionGroup as group_error:
            error = first_error(group_error)
        except DDBStreamsError as exc:
            error = exc
        if error is not None:
            self._events.publish(ReaderError(error, None, retrying=False))
        await self._buffer.put(_EndOfPass(error))

    def _start_ready(self, tracker: LineageTracker, group: asyncio.TaskGroup) -> None:
        # Every ready shard gets its fetcher now: request slots, not shard slots, bound the
        # work, so no open shard waits for another one to close.
        for shard_id, start in tracker.ready():
            tracker.start(shard_id)
            self._started[shard_id] = start
            self._lag_origin[shard_id] = None
            self._events.publish(ShardStarted(shard_id, start))
            fetcher = _ShardFetcher(self, tracker.graph.shards[shard_id], start)
            group.create_task(fetcher.run(), name=f"ddbstreams-shard {shard_id}")

    def _handle(self, message: _Message, tracker: LineageTracker, group: asyncio.TaskGroup) -> None:
        if isinstance(message, _ShardDone):
            tracker.finish(message.shard_id)
            self._lag_origin.pop(message.shard_id, None)
            if message.ended:
                self._events.publish(ShardFinished(message.shard_id))
                if self._follow and not self._disabled:
                    group.create_task(
                        self._discover_children(message.shard_id),
                        name=f"ddbstreams-children {message.shard_id}",
                    )
            if self._follow:
                tracker.forget_finished()
                self._prune_started()
            return
        known = set(tracker.graph.shards) | tracker.forgotten | tracker.excluded
        new = tracker.add_shards(message.shards, complete=message.complete)
        unseen = tuple(s.shard_id for s in message.shards if s.shard_id not in known)
        if unseen:
            self._events.publish(ShardsDiscovered(unseen))
        if new:
            log.debug("new shards to read: %s", new)
        if message.disabled and not self._disabled:
            self._disabled = True
            self._events.publish(StreamDisabled(self.stream_arn))
        tracker.forget_finished()
        self._prune_started()

    async def _paced(self, call: Callable[[], Awaitable[R]]) -> R:
        """Run a DescribeStream ``call`` once the reader is within ``describe_rate``.

        Every DescribeStream of the reader (full listings and child queries alike) goes
        through here: the service allows 10 calls per second per stream.
        """
        now = self._clock.monotonic()
        slot = next_call_slot(self._describe_slots, now, self._options.describe_rate, 1.0)
        self._describe_slots = [t for t in self._describe_slots if t > now - 1.0] + [slot]
        if slot > now:
            await self._clock.sleep(slot - now)
        return await call()

    async def _describe(self) -> StreamDescription:
        """A full DescribeStream, within ``describe_rate``."""
        client = self._client
        assert client is not None
        arn = self.stream_arn
        return await self._paced(lambda: client.describe_stream(arn))

    async def _describe_periodically(self) -> None:
        """Owns full listings in follow mode: every ``describe_interval``, and at once when
        :meth:`_next_listing` asks; one listing answers every task waiting for it."""
        while True:
            await first_of(
                self._clock.sleep(self._options.describe_interval), self._listing_wanted.wait()
            )
            self._listing_wanted.clear()
            waiting, self._listing = self._listing, None
            description = await self._retry_transient(self._describe, None)
            self._control.put_nowait(
                _Discovered(
                    description.shards,
                    complete=True,
                    disabled=description.stream_status in ("DISABLING", "DISABLED"),
                )
            )
            if waiting is not None:
                waiting.set_result(description)

    async def _next_listing(self) -> StreamDescription:
        """The next full listing (made by :meth:`_describe_periodically`, shared)."""
        if self._listing is None:
            self._listing = asyncio.get_running_loop().create_future()
            self._listing_wanted.set()
        return await asyncio.shield(self._listing)

    async def _discover_children(self, shard_id: str) -> None:
        """Find a finished shard's children, asking again while they are not yet visible.

        One shard ending asks for its children alone (DescribeStream with a CHILD_SHARDS
        filter); when many end together (a stream-wide rollover), one shared full listing
        finds them all in a few pages instead of one call per shard.
        """
        client = self._client
        assert client is not None
        arn = self.stream_arn
        deadline = self._clock.monotonic() + self._options.child_discovery_timeout
        self._discovering.add(shard_id)
        try:
            attempt = 0
            while not self._children_known(shard_id):
                attempt += 1
                if len(self._discovering) <= 1 + len(self._tracker_graph()) // 100:
                    children = await self._retry_transient(
                        lambda: self._paced(lambda: client.child_shards(arn, shard_id)),
                        shard_id,
                    )
                    if children:
                        self._control.put_nowait(
                            _Discovered(children, complete=False, disabled=False)
                        )
                        return
                # No children yet: either they are not visible yet, or the stream was
                # disabled (a closed shard without children). A full listing tells which.
                description = await self._next_listing()
                if description.stream_status in ("DISABLING", "DISABLED"):
                    return
                if self._children_known(shard_id, description.shards):
                    return
                if self._clock.monotonic() >= deadline:
                    return  # left to the periodic listing
                await self._clock.sleep(exponential_delay(0.1, 5.0, attempt))
        finally:
            self._discovering.discard(shard_id)

    def _tracker_graph(self) -> ShardGraph:
        tracker = self._tracker
        assert tracker is not None
        return tracker.graph

    def _children_known(self, shard_id: str, listed: Iterable[Shard] = ()) -> bool:
        shards = itertools.chain(self._tracker_graph().shards.values(), listed)
        return any(shard.parent_shard_id == shard_id for shard in shards)

    async def _retry_transient(self, call: Callable[[], Awaitable[R]], shard_id: str | None) -> R:
        """Run ``call``; in follow mode, keep retrying the errors a long-running reader
        outlives (after the client's own retries were spent), reporting each one."""
        attempt = 0
        while True:
            try:
                return await call()
            except _TRANSIENT as exc:
                if not self._follow:
                    raise
                attempt += 1
                self._events.publish(ReaderError(exc, shard_id, retrying=True))
                await self._clock.sleep(
                    exponential_delay(1.0, self._options.retry_max_delay, attempt)
                )

    def _on_retry(self, notice: RetryNotice) -> None:
        if notice.stream_arn is not None and notice.stream_arn != self._stream_arn:
            return  # a shared client's retry for some other reader
        if notice.throttled:
            self._events.publish(
                Throttled(notice.operation, notice.shard_id, notice.attempt, notice.delay)
            )
        else:
            self._events.publish(
                RequestRetried(
                    notice.operation, notice.shard_id, notice.code, notice.attempt, notice.delay
                )
            )

    async def _until_resumed(self, shard_id: str) -> None:
        resumed = self._paused.get(shard_id)
        if resumed is not None:
            await resumed.wait()

    async def _check_stream_exists(self) -> None:
        """Raise StreamNotFoundError if the stream itself is gone (table deleted, engine
        restarted): a shard that vanished with its stream was not trimmed."""
        client = self._client
        assert client is not None
        arn = self.stream_arn
        await self._retry_transient(
            lambda: self._paced(lambda: client.describe_stream_page(arn, limit=1)), None
        )

    def _caught_up(self, last_creation_time: float | None) -> bool:
        return (
            last_creation_time is not None
            and last_creation_time > self._pass_started_at + self._options.creation_time_slack
        )


class _ShardFetcher(Generic[T]):
    """Fetches one shard's pages into the reader's buffer.

    States: acquiring an iterator -> paging -> done. Paging ends when the shard ends (no
    NextShardIterator) or, for an open shard in a single pass, when it has caught up. An
    expired iterator is re-acquired AFTER the last sequence number put in the buffer (or at
    the original start if nothing was), so nothing is lost or repeated. Trimmed records
    follow the reader's ``on_trimmed`` policy. In follow mode, calls that still fail after
    the client's retries are tried again later from the same position.
    """

    __slots__ = ("_last_sequence_number", "_reader", "_shard", "_start")

    def __init__(self, reader: StreamReader[T], shard: Shard, start: ShardStart) -> None:
        self._reader = reader
        self._shard = shard
        self._start = start
        self._last_sequence_number: str | None = None

    @property
    def _position(self) -> ShardStart:
        if self._last_sequence_number is not None:
            return ShardStart("AFTER_SEQUENCE_NUMBER", self._last_sequence_number)
        return self._start

    async def _acquire(self) -> str | None:
        """A fresh iterator at the current position; None if the shard is gone (skipped)."""
        reader = self._reader
        client = reader._client
        assert client is not None
        shard_id = self._shard.shard_id

        async def get_iterator() -> str:
            async with reader._request_slots:
                return await client.get_shard_iterator(reader.stream_arn, shard_id, self._position)

        while True:
            try:
                return cast(str, await reader._retry_transient(get_iterator, shard_id))
            except TrimmedDataError:
                self._trimmed(shard_gone=False)
            except ShardNotFoundError:
                # A shard is missing either because retention trimmed it or because the
                # whole stream is gone; only the first is a trimming matter.
                await reader._check_stream_exists()
                if reader._options.on_trimmed == "raise":
                    raise
                self._trimmed(shard_gone=True)
                return None

    def _trimmed(self, *, shard_gone: bool) -> None:
        """Apply the trimming policy: raise, or report the gap and go to TRIM_HORIZON."""
        reader = self._reader
        if reader._options.on_trimmed == "raise":
            raise TrimmedDataError(
                f"records of shard {self._shard.shard_id} of stream {reader.stream_arn} after "
                f"{self._last_sequence_number or self._start} were trimmed before being read"
            )
        reader._events.publish(
            RecordsTrimmed(self._shard.shard_id, self._last_sequence_number, shard_gone)
        )
        self._start = SHARD_TRIM_HORIZON
        reader._started[self._shard.shard_id] = SHARD_TRIM_HORIZON
        self._last_sequence_number = None

    async def run(self) -> None:
        reader = self._reader
        ended = await self._fetch()
        reader._control.put_nowait(_ShardDone(self._shard.shard_id, ended))

    async def _fetch(self) -> bool:
        """Read pages until the shard ends (True) or a single pass has caught up (False)."""
        reader = self._reader
        options = reader._options
        follow = reader._follow
        # Open in the listing and without children: a single pass reads it only up to "now".
        open_shard = self._shard.is_open
        iterator = await self._acquire()
        empty_pages = 0
        failures = 0  # consecutive transient failures of GetRecords
        while iterator is not None:
            await reader._until_resumed(self._shard.shard_id)
            try:
                # The slot is held until the page is in the buffer, so the pages held
                # outside the buffer are bounded by the slots too.
                async with reader._request_slots:
                    page = await self._get_page(iterator)
            except ExpiredIteratorError:
                reader._events.publish(
                    IteratorRefreshed(self._shard.shard_id, self._last_sequence_number)
                )
                iterator = await self._acquire()
                continue
            except TrimmedDataError:
                self._trimmed(shard_gone=False)
                iterator = await self._acquire()
                continue
            except ShardNotFoundError:
                await reader._check_stream_exists()
                iterator = await self._acquire()
                continue
            except _TRANSIENT as exc:
                if not follow:
                    raise
                failures += 1
                reader._events.publish(ReaderError(exc, self._shard.shard_id, retrying=True))
                await reader._clock.sleep(exponential_delay(1.0, options.retry_max_delay, failures))
                # The iterator may have expired meanwhile; the next call says so if it has.
                continue
            failures = 0
            if page.next_shard_iterator is None:
                reader._lag_origin.pop(self._shard.shard_id, None)
                return True
            iterator = page.next_shard_iterator
            if page.records:
                reader._lag_origin[self._shard.shard_id] = page.last_creation_time
                empty_pages = 0
                if not follow and open_shard and reader._caught_up(page.last_creation_time):
                    return False
                continue
            reader._lag_origin[self._shard.shard_id] = None
            empty_pages += 1
            if follow:
                await reader._clock.sleep(
                    idle_poll_delay(
                        options.idle_poll_delay, options.idle_poll_max_delay, empty_pages
                    )
                )
            elif open_shard:
                if empty_pages >= options.catch_up_empty_pages:
                    return False
                await reader._clock.sleep(options.empty_page_delay)
        # The shard was trimmed away (skipped by policy): it ends, and the caller learns so.
        await reader._buffer.put(
            _Page(self._shard.shard_id, [], [], True, self._shard.parent_shard_id)
        )
        return True

    async def _get_page(self, iterator: str) -> RecordsPage[T]:
        """One GetRecords call; a page with records, or the shard's last page, goes into
        the buffer before this returns."""
        reader = self._reader
        client = reader._client
        assert client is not None
        shard_id = self._shard.shard_id
        page = await client.get_records(
            iterator, shard_id=shard_id, parser=reader._parser, limit=reader._options.page_limit
        )
        if page.records or page.next_shard_iterator is None:
            sequence_numbers = page.sequence_numbers
            if sequence_numbers is None:
                sequence_numbers = [cast(Record, record).sequence_number for record in page.records]
            await reader._buffer.put(
                _Page(
                    shard_id,
                    page.records,
                    sequence_numbers,
                    page.next_shard_iterator is None,
                    self._shard.parent_shard_id,
                )
            )
            if sequence_numbers:
                self._last_sequence_number = sequence_numbers[-1]
        return page


_PROBE_PAGES = 5


async def _locate_record(
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


async def _wait_quietly(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        await task
