"""The stream reader: runs shard readers under one task group and hands records to the caller.

Structure (after aiokafka's fetcher / coordinator split):

* ``_ShardFetcher`` follows one shard: iterator acquisition, paging through empty pages,
  iterator expiry, end of shard. It only produces pages into the shared buffer.
* ``StreamReader._coordinate`` owns the task group: it starts shard fetchers as lineage
  allows (a child only once every planned parent has been read to its end), bounded by
  ``max_concurrent_shards``, and ends the pass when lineage is done.
* ``_Delivery`` is the shared state on the caller's side: the page being handed out and the
  checkpoint of exactly what was handed out so far.

Pages travel through one bounded FIFO (``buffer_pages``). Because a parent's fetcher has put
its last page in the FIFO before its child's fetcher starts, every item's changes come out
in order, and a slow caller pauses the fetchers instead of growing memory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast, overload

from ddbstreams._client import StreamsClient
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._decode import DefaultParser, RawParser
from ddbstreams._errors import (
    CheckpointError,
    ConfigurationError,
    DDBStreamsError,
    ExpiredIteratorError,
    InvalidPositionError,
    TrimmedDataError,
    ValidationError,
)
from ddbstreams._lineage import LineageTracker, ShardGraph, plan_reads
from ddbstreams._model import Record, Shard
from ddbstreams._parser import Parser
from ddbstreams._position import (
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    Checkpoint,
    ShardStart,
    StartPosition,
)

__all__ = ["StreamReader"]

T = TypeVar("T")


@dataclass(slots=True)
class _Page(Generic[T]):
    """A slice of one shard in the buffer. ``ends_shard``: the shard has no more records."""

    shard_id: str
    records: list[T]
    sequence_numbers: list[str]
    ends_shard: bool


@dataclass(frozen=True, slots=True)
class _EndOfPass:
    """Last item in the buffer: the pass is over, with ``error`` if it failed."""

    error: BaseException | None


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """Tuning of a :class:`StreamReader` (all durations in seconds).

    ``catch_up_empty_pages``: in a single pass an open shard counts as caught up after this
    many consecutive empty pages (GetRecords may return an empty page mid-shard, so one is
    not enough). ``creation_time_slack``: a single pass also stops reading an open shard
    after a page whose last record was created this long after the pass began (clock skew
    allowance between this host and the service).
    """

    max_concurrent_shards: int = 8
    buffer_pages: int = 8
    page_limit: int | None = None
    catch_up_empty_pages: int = 3
    empty_page_delay: float = 0.1
    creation_time_slack: float = 5.0

    def __post_init__(self) -> None:
        if self.max_concurrent_shards < 1:
            raise ConfigurationError("max_concurrent_shards must be at least 1")
        if self.buffer_pages < 1:
            raise ConfigurationError("buffer_pages must be at least 1")
        if self.page_limit is not None and not 1 <= self.page_limit <= 1000:
            raise ConfigurationError("page_limit must be between 1 and 1000")
        if self.catch_up_empty_pages < 1:
            raise ConfigurationError("catch_up_empty_pages must be at least 1")
        if self.empty_page_delay < 0 or self.creation_time_slack < 0:
            raise ConfigurationError("durations must not be negative")


class _Delivery(Generic[T]):
    """Caller-side state: the page being handed out and the checkpoint of what was handed.

    Only the caller's task touches it, so ``checkpoint()`` names exactly the records that
    left the reader, never records that merely sit in the buffer.
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

    Use it as an async context manager (or call :meth:`start` and :meth:`stop`), and iterate
    records with ``async for`` or batches with :meth:`batches`. :meth:`checkpoint` returns the
    position reached: exactly what was handed to the caller.

    Errors: typed :class:`DDBStreamsError` subclasses from :meth:`start` (unknown stream or
    table, malformed ARN, unusable position, checkpoint of another stream) and from iteration
    (a shard failing after the client's retries). Cancelling the iterating task, or leaving
    the ``async with`` block early, stops every shard fetcher; none outlives the reader.
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
        max_concurrent_shards: int = ...,
        buffer_pages: int = ...,
        page_limit: int | None = ...,
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
        max_concurrent_shards: int = ...,
        buffer_pages: int = ...,
        page_limit: int | None = ...,
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
        max_concurrent_shards: int | None = None,
        buffer_pages: int | None = None,
        page_limit: int | None = None,
        options: ReaderOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        if follow:
            raise ConfigurationError(
                "follow=True (continuous reading) is not available in this version of "
                "ddbstreams yet; use follow=False for a single pass"
            )
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise ConfigurationError("pass either client= or endpoint_url=/region_name=, not both")
        if not isinstance(stream, str) or not stream:
            raise ConfigurationError("stream must be a stream ARN or a table name")
        base = options or ReaderOptions()
        overrides: dict[str, Any] = {}
        if max_concurrent_shards is not None:
            overrides["max_concurrent_shards"] = max_concurrent_shards
        if buffer_pages is not None:
            overrides["buffer_pages"] = buffer_pages
        if page_limit is not None:
            overrides["page_limit"] = page_limit
        self._options = ReaderOptions(**{**_fields(base), **overrides}) if overrides else base
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
        self._stream_arn: str | None = None
        self._buffer: asyncio.Queue[_Page[T] | _EndOfPass] = asyncio.Queue(
            self._options.buffer_pages
        )
        self._coordinator: asyncio.Task[None] | None = None
        self._delivery: _Delivery[T] | None = None
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
            description = await client.describe_stream(self._stream_arn)
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
                # A finished shard trimmed away lost nothing; an unfinished one did.
                lost = plan.missing_checkpoint_shards & (
                    set(initial.positions) | set(initial.pending)
                )
                if lost:
                    raise CheckpointError(
                        f"the checkpoint names unfinished shards no longer in stream "
                        f"{self._stream_arn} (trimmed after 24 hours?): {', '.join(sorted(lost))}"
                    )
                # Forget what the service has forgotten, so checkpoints do not grow forever.
                initial = Checkpoint(
                    initial.stream_arn,
                    initial.positions,
                    initial.finished - plan.missing_checkpoint_shards,
                    initial.pending,
                )
        except BaseException:
            await self._close_client()
            raise
        self._delivery = _Delivery(
            initial if isinstance(initial, Checkpoint) else None, plan.starts
        )
        tracker = LineageTracker(graph, plan)
        self._coordinator = asyncio.get_running_loop().create_task(
            self._coordinate(tracker), name=f"ddbstreams-reader {self._stream_arn}"
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
        ``finished``; planned shards that have delivered nothing yet are ``pending``.
        """
        delivery = self._delivery
        if delivery is None or self._stream_arn is None:
            raise RuntimeError("the reader has not been started")
        return Checkpoint(
            stream_arn=self._stream_arn,
            positions=dict(delivery.positions),
            finished=frozenset(delivery.finished),
            pending=dict(delivery.pending),
        )

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

    async def _next_batch(self, max_size: int) -> list[T] | None:
        """Next non-empty batch, or None at the end of the pass. Raises the pass's error."""
        if not await self._fill():
            return None
        return self._delivery_state().take(max_size)

    def _delivery_state(self) -> _Delivery[T]:
        if self._delivery is None:
            raise RuntimeError("start the reader (async with, or await start()) before reading")
        return self._delivery

    async def _fill(self) -> bool:
        """Make a page with records current; False at the end of the pass.

        Waits for the fetchers (cancellable) and raises the error that ended the pass.
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

    # -- fetching --------------------------------------------------------------------------

    async def _coordinate(self, tracker: LineageTracker) -> None:
        """Start shard fetchers as lineage allows; end the pass when every shard is done."""
        error: BaseException | None = None
        finished: asyncio.Queue[str] = asyncio.Queue()
        try:
            async with asyncio.TaskGroup() as group:
                while not tracker.is_done():
                    free = self._options.max_concurrent_shards - len(tracker.running)
                    for shard_id, start in tracker.ready()[: max(free, 0)]:
                        tracker.start(shard_id)
                        fetcher = _ShardFetcher(self, tracker.graph.shards[shard_id], start)
                        group.create_task(
                            fetcher.run(finished), name=f"ddbstreams-shard {shard_id}"
                        )
                    if not tracker.running:
                        # Lineage guarantees progress; waiting here would hang silently.
                        raise RuntimeError(f"no shard can start: waiting {sorted(tracker.waiting)}")
                    tracker.finish(await finished.get())
        except BaseExceptionGroup as group_error:
            error = _first_error(group_error)
        except DDBStreamsError as exc:
            error = exc
        await self._buffer.put(_EndOfPass(error))

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
    the original start if nothing was), so nothing is lost or repeated.
    """

    __slots__ = ("_last_sequence_number", "_reader", "_shard", "_start")

    def __init__(self, reader: StreamReader[T], shard: Shard, start: ShardStart) -> None:
        self._reader = reader
        self._shard = shard
        self._start = start
        self._last_sequence_number: str | None = None

    async def _acquire(self) -> str:
        reader = self._reader
        assert reader._client is not None
        start = self._start
        if self._last_sequence_number is not None:
            start = ShardStart("AFTER_SEQUENCE_NUMBER", self._last_sequence_number)
        return await reader._client.get_shard_iterator(
            reader.stream_arn, self._shard.shard_id, start
        )

    async def run(self, finished: asyncio.Queue[str]) -> None:
        reader = self._reader
        client = reader._client
        assert client is not None
        options = reader._options
        shard_id = self._shard.shard_id
        # Open in the listing and without children: this pass reads it only up to "now".
        open_shard = self._shard.is_open
        iterator = await self._acquire()
        empty_pages = 0
        while True:
            try:
                page = await client.get_records(
                    iterator, shard_id=shard_id, parser=reader._parser, limit=options.page_limit
                )
            except ExpiredIteratorError:
                iterator = await self._acquire()
                continue
            ends_shard = page.next_shard_iterator is None
            if page.records or ends_shard:
                sequence_numbers = page.sequence_numbers
                if sequence_numbers is None:
                    sequence_numbers = [
                        cast(Record, record).sequence_number for record in page.records
                    ]
                await reader._buffer.put(
                    _Page(shard_id, page.records, sequence_numbers, ends_shard)
                )
                if sequence_numbers:
                    self._last_sequence_number = sequence_numbers[-1]
            if page.next_shard_iterator is None:
                break
            iterator = page.next_shard_iterator
            if page.records:
                empty_pages = 0
                if open_shard and reader._caught_up(page.last_creation_time):
                    break
                continue
            empty_pages += 1
            if open_shard:
                if empty_pages >= options.catch_up_empty_pages:
                    break
                await reader._clock.sleep(options.empty_page_delay)
        finished.put_nowait(shard_id)


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


def _first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of an exception group: shard errors surface as themselves."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _fields(options: ReaderOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ReaderOptions.__dataclass_fields__}
