"""The stream reader: the public face of the reading layer.

:class:`StreamReader` wires the parts and owns their lifecycle; it holds no reading logic
of its own:

* :class:`~ddbstreams.reading._state.ReadState` — the one owner of per-shard positions
  (what was handed out); the checkpoint is a view of it;
* :class:`~ddbstreams.reading._coordinator.StreamCoordinator` — which shards are fetched
  (lineage, or an assignment), discovery, and every task, in one task group;
* :class:`~ddbstreams.reading._fetcher.ShardFetcher` — one shard's pages;
* :class:`~ddbstreams.reading._delivery.Delivery` — the buffer and handing records out.

A record's path: the transport returns a GetRecords body -> the client decodes it with the
parser straight from bytes into a ``RecordsPage`` -> the shard's fetcher puts it in the
buffer as a ``Page`` (holding a request slot until it is in) -> ``Delivery`` takes the page,
records the handed position in ``ReadState`` -> the caller's ``async for``.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import warnings
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, cast, overload

from ddbstreams._clock import Clock, SystemClock
from ddbstreams._errors import ConfigurationError
from ddbstreams._events import (
    EventHub,
    ReaderEvent,
    RequestRetried,
    Throttled,
)
from ddbstreams.client._streams import RetryNotice, StreamsClient
from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import (
    TRIM_HORIZON,
    Checkpoint,
    ShardStart,
    StartPosition,
)
from ddbstreams.model._types import Record, Shard
from ddbstreams.reading._delivery import Delivery, ShardBatch
from ddbstreams.reading._options import ReaderOptions, TrimmedPolicy
from ddbstreams.reading._planning import ReadParts, ReadRequest, plan_read
from ddbstreams.reading._state import ShardPosition

__all__ = ["ReaderLifecycle", "StreamReader"]

T = TypeVar("T")
R = TypeVar("R")


class ReaderLifecycle(enum.Enum):
    """A reader's lifecycle::

        NEW --start()--> STARTING --planned--> RUNNING --stop()--> STOPPED
        STARTING --error--> STOPPED (the error is raised from start())
        NEW --stop()--> STOPPED

    A STOPPED reader cannot start again (make a new one, passing its checkpoint). The
    read itself may end while RUNNING (a single pass is over, a disabled stream was read
    to its end, an error): iteration then ends (or raises), and :meth:`stop` still
    releases the client.
    """

    NEW = "new"
    STARTING = "starting"
    RUNNING = "running"
    STOPPED = "stopped"


class StreamReader(Generic[T]):
    """Reads one DynamoDB stream, honouring shard lineage.

    ``stream`` is a stream ARN or a source table name (resolved to its latest stream).
    ``start`` is ``TRIM_HORIZON``, ``LATEST``, ``at_sequence(...)``, ``after_sequence(...)``,
    ``at_time(datetime)`` (records created from then on; the README says what it costs) or
    a :class:`Checkpoint` from an earlier reader of the same stream.

    Single pass (``follow=False``): reads every selected shard that exists when the reader
    starts; a closed shard to its end (through any empty pages), an open shard until it has
    caught up with the moment the pass began. Every record present when the pass began is
    delivered exactly once, and no shard's records are delivered before its parent's. Then
    iteration ends.

    Follow (``follow=True``): runs until stopped. Every open shard is followed, however
    many there are (``max_concurrent_requests`` bounds only the requests in flight). Open
    shards are polled (immediately after a page with records, after a short, growing wait
    after an empty one); when a shard ends its children are found and started once all
    their parents have ended; a periodic DescribeStream catches anything missed. Expired
    iterators are re-acquired after the last record taken; trimmed records follow
    ``on_trimmed``; throttling, 5xx and network failures are retried without losing the
    shard's position. A disabled stream is read to its end, then iteration ends; a deleted
    stream raises StreamNotFoundError.

    Assigned (``assigned=True``, follow mode): the reader reads only the shards given to
    :meth:`assign`, from the position given, and :meth:`release` takes a shard back with
    the exact position of what was handed out of it. This is what a worker of a group
    drives; it is responsible for lineage (assign a child once its parent is processed).

    Use it as an async context manager (or call :meth:`start` and :meth:`stop`), and iterate
    records with ``async for`` or batches with :meth:`batches`. :meth:`checkpoint` returns the
    position reached: exactly what was handed to the caller. Progress is reported as typed
    events (``on_event=`` callback, or :meth:`events`; ``event_hub=`` publishes them on a
    channel of the caller's, such as a consumer's) and :meth:`lag`.

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
        assigned: bool = ...,
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
        event_hub: EventHub | None = ...,
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
        assigned: bool = ...,
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
        event_hub: EventHub | None = ...,
        options: ReaderOptions | None = ...,
        clock: Clock | None = ...,
    ) -> None: ...

    def __init__(
        self,
        stream: str,
        *,
        start: StartPosition = TRIM_HORIZON,
        follow: bool = False,
        assigned: bool = False,
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
        event_hub: EventHub | None = None,
        options: ReaderOptions | None = None,
        clock: Clock | None = None,
    ) -> None:
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise ConfigurationError("pass either client= or endpoint_url=/region_name=, not both")
        if not isinstance(stream, str) or not stream:
            raise ConfigurationError("stream must be a stream ARN or a table name")
        if on_event is not None and event_hub is not None:
            raise ConfigurationError("pass either on_event= or event_hub=, not both")
        if assigned and not follow:
            raise ConfigurationError("assigned=True needs follow=True")
        self._options = _with_overrides(
            options or ReaderOptions(),
            max_concurrent_requests=max_concurrent_requests,
            max_concurrent_shards=max_concurrent_shards,
            buffer_pages=buffer_pages,
            page_limit=page_limit,
            on_trimmed=on_trimmed,
        )
        self._stream = stream
        self._start_position = start
        self._follow = follow
        self._assigned = assigned
        self._client = client
        self._owns_client = client is None
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
        }
        self._parser: Parser[T] = cast("Parser[T]", parser or DefaultParser())
        self._clock = clock or SystemClock()
        # The hub is the one channel for events: a component on top (a consumer) may pass
        # its own, which it then closes.
        self._owns_events = event_hub is None
        self._events = event_hub if event_hub is not None else EventHub(on_event)
        self._stream_arn: str | None = None
        self._lifecycle = ReaderLifecycle.NEW
        self._running: ReadParts[T] | None = None
        self._remove_retry_listener: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    @property
    def lifecycle(self) -> ReaderLifecycle:
        return self._lifecycle

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

        Raises the errors listed on the class before any record is fetched. Idempotent
        while running; a stopped reader cannot start again.
        """
        if self._lifecycle is ReaderLifecycle.RUNNING:
            return
        if self._lifecycle is not ReaderLifecycle.NEW:
            raise RuntimeError(f"a {self._lifecycle.value} reader cannot be started")
        self._lifecycle = ReaderLifecycle.STARTING
        try:
            if self._client is None:
                self._client = StreamsClient(**self._client_args)
            running = await plan_read(
                self._client,
                ReadRequest(
                    self._stream,
                    self._start_position,
                    self._follow,
                    self._assigned,
                    self._options,
                    self._parser,
                    self._clock,
                    self._events,
                ),
            )
        except BaseException:
            self._lifecycle = ReaderLifecycle.STOPPED
            await self._close_client()
            raise
        self._running = running
        self._stream_arn = running.stream_arn
        on_retry = weakref.WeakMethod(self._on_retry)
        self._remove_retry_listener = self._client.add_retry_listener(
            lambda notice: _call_if_alive(on_retry, notice)
        )
        running.task = asyncio.get_running_loop().create_task(
            running.coordinator.run(), name=f"ddbstreams-reader {self._stream_arn}"
        )
        self._lifecycle = ReaderLifecycle.RUNNING

    async def stop(self) -> None:
        """Stop fetching and release the client (if the reader created it). Idempotent.

        Returns once every shard fetcher has ended (shielded: a caller cancelled while
        stopping still leaves no task behind). Records already handed to the caller stay
        in :meth:`checkpoint`; records still in the buffer are dropped.
        """
        self._lifecycle = ReaderLifecycle.STOPPED
        running = self._running
        task = running.task if running is not None else None
        if running is not None:
            running.task = None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(_wait_quietly(task))
        if self._remove_retry_listener is not None:
            self._remove_retry_listener()
            self._remove_retry_listener = None
        if self._owns_events:
            self._events.close()
        await self._close_client()

    def __del__(self) -> None:
        running = getattr(self, "_running", None)
        if running is not None and running.task is not None and not running.task.done():
            warnings.warn(
                f"StreamReader of {self._stream_arn} was started and never stopped: "
                "use 'async with', or await stop()",
                ResourceWarning,
                stacklevel=1,
            )
            running.task.cancel()

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

    def _parts(self) -> ReadParts[T]:
        if self._running is None:
            raise RuntimeError("start the reader (async with, or await start()) before reading")
        return self._running

    # -- assignment --------------------------------------------------------------------------

    def assign(
        self, shard_id: str, start: ShardStart, *, parent_shard_id: str | None = None
    ) -> None:
        """Start reading ``shard_id`` at ``start`` (assigned readers only).

        ``parent_shard_id`` is passed on in the shard's :class:`ShardBatch` es. Assigning a
        shard being read already does nothing.
        """
        running = self._parts()
        if not self._assigned:
            raise RuntimeError("assign() is for readers made with assigned=True")
        shard = Shard(shard_id, parent_shard_id, None, None)
        running.coordinator.assign(shard, start)

    async def release(self, shard_id: str) -> ShardPosition | None:
        """Stop reading ``shard_id`` and return the position of what was handed out of it.

        The position is AFTER the last record handed out, the shard's start when nothing
        was, or ``SHARD_END`` once all of it was handed out; None for a shard this reader
        does not know. Records fetched but not handed out are dropped, not lost: the next
        owner reads them from the returned position. The shard leaves :meth:`checkpoint`.
        Returns once the shard's fetcher has ended.
        """
        running = self._parts()
        if not self._assigned:  # lineage decides there: a child would wait forever
            raise RuntimeError("release() is for readers made with assigned=True")
        queued_start = await running.coordinator.release(shard_id)
        running.delivery.drop_current(shard_id)
        running.pauses.resume(shard_id)
        position = running.state.release(shard_id)
        return queued_start if position is None else position

    def pause(self, shard_id: str) -> None:
        """Stop fetching ``shard_id`` until :meth:`resume`; the other shards go on.

        For a caller that cannot take this shard's records for a while (a consumer whose
        handler keeps failing on one shard). A request in flight completes and its page
        still reaches the buffer; then the shard's fetcher waits. Pausing a shard that is not
        being read yet takes effect when it starts. Idempotent.
        """
        self._parts().pauses.pause(shard_id)

    def resume(self, shard_id: str) -> None:
        """Let a paused shard's fetcher go on (see :meth:`pause`). Idempotent."""
        self._parts().pauses.resume(shard_id)

    def paused(self) -> frozenset[str]:
        """The shards paused now."""
        return self._parts().pauses.paused()

    # -- consuming -------------------------------------------------------------------------

    def checkpoint(self) -> Checkpoint:
        """The position reached: per shard, the last sequence number handed to the caller.

        Pass it back as ``start=`` to resume right after it. Shards read to their end are
        ``finished``; shards being read or waiting to be read that have handed nothing yet
        are ``pending`` with the position they start at. Consumed shards whose children
        have started are left out (lineage infers them from their descendants), so a follow
        reader's checkpoint does not grow with the stream's age.
        """
        if self._running is None or self._stream_arn is None:
            raise RuntimeError("the reader has not been started")
        return self._running.state.checkpoint()

    def position(self, shard_id: str) -> ShardPosition | None:
        """One shard's position (as :meth:`release` would return it), or None if unknown."""
        return self._parts().state.position(shard_id)

    def lag(self) -> dict[str, float]:
        """Per shard being fetched, seconds between now and the creation of the last record
        read. A shard whose last poll found nothing new (caught up) has lag 0. Creation
        times are approximate (DynamoDB rounds them; DynamoDB Local to the minute).
        """
        return self._parts().lag.seconds_behind(self._clock.time())

    def events(self) -> AsyncIterator[ReaderEvent]:
        """Iterate the reader's events from now on, until the reader stops.

        Events are kept in a bounded buffer (``event_buffer``); a slow iterator loses the
        oldest ones rather than slowing the reader down.
        """
        return aiter(self._events.subscribe(self._options.event_buffer))

    @property
    def delivery(self) -> Delivery[T]:
        """The caller's side of the buffer, for facades that hand out records one by one
        on another thread (the blocking reader)."""
        return self._parts().delivery

    def __aiter__(self) -> AsyncIterator[T]:
        return _records(self._parts().delivery)

    def batches(self, max_size: int = 1000) -> AsyncIterator[list[T]]:
        """Iterate lists of at most ``max_size`` records, each from a single shard, in order."""
        if max_size < 1:
            raise ConfigurationError("max_size must be at least 1")
        return _until_none(functools.partial(self.next_batch, max_size))

    def shard_batches(self, max_size: int = 1000) -> AsyncIterator[ShardBatch[T]]:
        """Iterate :class:`ShardBatch` es: like :meth:`batches`, with the shard, the sequence
        numbers and end-of-shard markers (possibly without records) for consumers that
        keep their own checkpoints."""
        if max_size < 1:
            raise ConfigurationError("max_size must be at least 1")
        return _until_none(functools.partial(self.next_shard_batch, max_size))

    async def next_batch(self, max_size: int = 1000) -> list[T] | None:
        """The next non-empty batch (one shard, at most ``max_size`` records), or None at
        the end of the read. Raises the error that ended the read."""
        delivery = self._parts().delivery
        if not await delivery.fill():
            return None
        return delivery.take(max_size)

    async def next_shard_batch(self, max_size: int = 1000) -> ShardBatch[T] | None:
        """The next :class:`ShardBatch` (see :meth:`shard_batches`), or None at the end."""
        return await self._parts().delivery.next_shard_batch(max_size)

    # -- events --------------------------------------------------------------------------

    def _on_retry(self, notice: RetryNotice) -> None:
        if notice.stream_arn is not None and notice.stream_arn != self._stream_arn:
            return  # a shared client's retry for some other reader
        if notice.throttled:
            running = self._running
            if running is not None and notice.shard_id is not None:
                now = self._clock.monotonic()
                running.schedule.polled(notice.shard_id, now, records=0, throttled=True)
            self._events.publish(
                Throttled(notice.operation, notice.shard_id, notice.attempt, notice.delay)
            )
        else:
            self._events.publish(
                RequestRetried(
                    notice.operation, notice.shard_id, notice.code, notice.attempt, notice.delay
                )
            )


def _with_overrides(options: ReaderOptions, **overrides: Any) -> ReaderOptions:
    """``options`` with the keyword arguments given (not None) in place of its fields."""
    return replace(options, **{k: v for k, v in overrides.items() if v is not None})


async def _records(delivery: Delivery[T]) -> AsyncIterator[T]:
    while await delivery.fill():
        while delivery.current is not None:
            yield delivery.take_one()


async def _until_none(next_item: Callable[[], Awaitable[R | None]]) -> AsyncIterator[R]:
    while (item := await next_item()) is not None:
        yield item


def _call_if_alive(method: weakref.WeakMethod[Any], notice: RetryNotice) -> None:
    bound = method()
    if bound is not None:
        bound(notice)


async def _wait_quietly(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(BaseException):
        await task
