"""The stream coordinator (layer 5): which shards are fetched, and discovery.

:class:`StreamCoordinator` owns every task of a reader in one task group: a
:class:`~ddbstreams.reading._fetcher.ShardFetcher` per shard being read, child discovery,
the periodic DescribeStream. It runs in one of two modes:

- **lineage** (the default): the reader reads the whole stream. A fetcher starts for every
  shard as soon as lineage allows (a child once its planned parent has ended), however many
  there are; request slots, not shard slots, bound the work. In follow mode it discovers
  new shards (children at a shard's end, a periodic full listing) and forgets consumed
  ancestors.
- **assigned**: whoever drives the reader (a worker of a group, holding leases) says which
  shards to read and from where (:meth:`assign`), and takes them back (:meth:`release`).
  The driver has checked lineage (a child is assigned once its parent is processed); the
  coordinator discovers nothing.

Messages from tasks reach :meth:`run` through one unbounded queue; the reader calls
:meth:`assign` and :meth:`release` from the caller's task. States of :meth:`run`: reading
-> done (single pass: every planned shard ended; follow: the stream is disabled and every
shard ended) -> the end-of-read item is put in the buffer, with the error that ended the
read if one did.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ddbstreams._errors import DDBStreamsError
from ddbstreams._events import (
    ReaderError,
    ShardFinished,
    ShardsDiscovered,
    ShardStarted,
    StreamDisabled,
)
from ddbstreams._tasks import first_error, until_stopped
from ddbstreams.client._backoff import exponential_delay
from ddbstreams.lineage._graph import LineageTracker
from ddbstreams.model._position import ShardStart
from ddbstreams.model._types import Shard, StreamDescription
from ddbstreams.reading._delivery import EndOfRead
from ddbstreams.reading._fetcher import FetchContext, ShardFetcher

__all__ = ["StreamCoordinator"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class _FetcherDone:
    """A fetcher returned; ``ended`` if the shard itself has ended."""

    fetcher: ShardFetcher[object]
    ended: bool


@dataclass(frozen=True, slots=True)
class _Discovered:
    """Shards seen by DescribeStream; ``complete`` if every page was read."""

    shards: tuple[Shard, ...]
    complete: bool
    disabled: bool


@dataclass(frozen=True, slots=True)
class _Assigned:
    shard: Shard
    start: ShardStart


_Message = _FetcherDone | _Discovered | _Assigned


def _is_disabled(description: StreamDescription) -> bool:
    return description.stream_status in ("DISABLING", "DISABLED")


class StreamCoordinator(Generic[T]):
    """Owns the fetchers and discovery of one reader (see the module docstring).

    ``tracker`` is the lineage tracker (lineage mode) or None (assigned mode).
    ``disabled``: the stream was already disabled when the read was planned.
    """

    def __init__(
        self,
        context: FetchContext[T],
        tracker: LineageTracker | None,
        *,
        disabled: bool,
    ) -> None:
        self._context = context
        self._calls = context.calls
        self._tracker = tracker
        self._disabled = disabled
        self._messages: asyncio.Queue[_Message] = asyncio.Queue()
        self._fetchers: dict[str, tuple[ShardFetcher[T], asyncio.Task[None]]] = {}
        self._group: asyncio.TaskGroup | None = None
        # Full listings on demand: requested by child discovery, made by the periodic
        # describe task, shared by every task waiting for one.
        self._listing_wanted = asyncio.Event()
        self._listing: asyncio.Future[StreamDescription] | None = None
        self._discovering: set[str] = set()
        self._discovery_tasks: set[asyncio.Task[None]] = set()
        # Assignments queued but not yet started, so that a release can take them back.
        self._queued: dict[str, _Assigned] = {}

    @property
    def assigned_mode(self) -> bool:
        return self._tracker is None

    # -- called by the reader ---------------------------------------------------------------

    def assign(self, shard: Shard, start: ShardStart) -> None:
        """Reader (assigned mode): start fetching ``shard`` at ``start`` (soon: the
        coordinator's task starts the fetcher; a release before then takes it back)."""
        message = _Assigned(shard, start)
        self._queued[shard.shard_id] = message
        self._messages.put_nowait(message)

    async def release(self, shard_id: str) -> ShardStart | None:
        """Reader: stop fetching ``shard_id`` and wait until its fetcher has ended, so no
        page of it is put into the buffer afterwards. Idempotent. Returns the start of an
        assignment taken back before its fetcher started (nothing of it was handed out)."""
        queued = self._queued.pop(shard_id, None)
        self._context.lag.remove(shard_id)
        entry = self._fetchers.pop(shard_id, None)
        if entry is not None:
            _, task = entry
            task.cancel()
            # Shielded: the caller cancelled meanwhile still leaves no fetcher behind.
            await asyncio.shield(asyncio.wait([task]))
        return None if queued is None else queued.start

    # -- the coordinator's task ---------------------------------------------------------

    async def run(self) -> None:
        """Run until the read is done (see the module docstring); never raises a read error
        (it goes to the caller through the buffer). Cancellation stops every task."""
        error: BaseException | None = None
        try:
            async with asyncio.TaskGroup() as group:
                self._group = group
                periodic = None
                if self._calls.follow and not self.assigned_mode:
                    periodic = group.create_task(
                        self._describe_periodically(), name="ddbstreams-describe"
                    )
                while not self._done():
                    self._handle(await self._messages.get())
                # The read is over: discovery still looking for children has nothing left
                # to find (and would wait for a listing nobody makes any more).
                if periodic is not None:
                    periodic.cancel()
                for task in self._discovery_tasks:
                    task.cancel()
        except BaseExceptionGroup as group_error:
            error = first_error(group_error)
        except DDBStreamsError as exc:
            error = exc
        finally:
            self._group = None
        if error is not None:
            self._calls.events.publish(ReaderError(error, None, retrying=False))
        await self._context.buffer.put(EndOfRead(error))

    def _done(self) -> bool:
        """Start what may start; whether the read is over."""
        tracker = self._tracker
        if tracker is None:
            return False  # assigned mode: until stopped
        self._start_ready(tracker)
        if self._calls.follow:
            self._forget_consumed_ancestors(tracker)
        if tracker.is_done() and (not self._calls.follow or self._disabled):
            return True
        if not tracker.running and not self._calls.follow:
            # Lineage guarantees progress; waiting here would hang silently.
            raise RuntimeError(f"no shard can start: waiting {sorted(tracker.waiting)}")
        return False

    def _start_ready(self, tracker: LineageTracker) -> None:
        # Every ready shard gets its fetcher now: request slots, not shard slots, bound the
        # work, so no open shard waits for another one to close.
        for shard_id, start in tracker.ready():
            tracker.start(shard_id)
            # Listed open but with listed children: closed (a stale listing), so a single
            # pass reads it to its end, not just until it seems caught up.
            closed = tracker.graph.is_closed(shard_id)
            self._start_fetcher(tracker.graph.shards[shard_id], start, open_shard=not closed)

    def _start_fetcher(self, shard: Shard, start: ShardStart, *, open_shard: bool = True) -> None:
        group = self._group
        assert group is not None
        fetcher = ShardFetcher(self._context, shard, start, open_shard=open_shard)
        self._context.state.started(shard.shard_id, start, fetcher.token)
        self._context.lag.set(shard.shard_id, None)
        self._calls.events.publish(ShardStarted(shard.shard_id, start))
        task = group.create_task(self._fetch(fetcher), name=f"ddbstreams-shard {shard.shard_id}")
        self._fetchers[shard.shard_id] = (fetcher, task)

    async def _fetch(self, fetcher: ShardFetcher[T]) -> None:
        ended = await fetcher.run()
        self._messages.put_nowait(_FetcherDone(fetcher, ended))  # type: ignore[arg-type]

    def _forget_consumed_ancestors(self, tracker: LineageTracker) -> None:
        before = tracker.forgotten
        tracker.forget_ended()
        # Parents whose children have all started are covered by them now.
        self._context.state.forget(tracker.forgotten - before)

    def _handle(self, message: _Message) -> None:
        if isinstance(message, _FetcherDone):
            self._fetcher_done(message)
        elif isinstance(message, _Assigned):
            shard_id = message.shard.shard_id
            if self._queued.get(shard_id) is not message:
                return  # released (or assigned again) before it started
            del self._queued[shard_id]
            if shard_id not in self._fetchers:
                # A new assignment starts from its own position, whatever an earlier fetch
                # of the shard handed out.
                self._context.state.release(shard_id)
                self._start_fetcher(message.shard, message.start)
        else:
            self._discovered(message)

    def _fetcher_done(self, message: _FetcherDone) -> None:
        shard_id = message.fetcher.shard_id
        current = self._fetchers.get(shard_id)
        if current is None or current[0] is not message.fetcher:
            return  # released meanwhile
        del self._fetchers[shard_id]
        self._context.lag.remove(shard_id)
        if message.ended:
            self._context.state.ended(shard_id)
            self._calls.events.publish(ShardFinished(shard_id))
        tracker = self._tracker
        if tracker is None:
            return
        tracker.end(shard_id)
        if message.ended and self._calls.follow and not self._disabled:
            group = self._group
            assert group is not None
            task = group.create_task(
                self._discover_children(shard_id), name=f"ddbstreams-children {shard_id}"
            )
            self._discovery_tasks.add(task)
            task.add_done_callback(self._discovery_tasks.discard)

    def _discovered(self, message: _Discovered) -> None:
        tracker = self._tracker
        assert tracker is not None
        known = set(tracker.graph.shards) | tracker.forgotten | tracker.excluded
        before = set(tracker.graph.shards) if message.complete else set()
        new = tracker.add_shards(message.shards, complete=message.complete)
        for shard_id in new:
            self._context.state.planned(shard_id, tracker.start_of(shard_id))
        if message.complete:
            # What the service no longer lists was trimmed: forget it, so the state does
            # not grow with the stream's age.
            self._context.state.drop(before - set(tracker.graph.shards) - tracker.running)
        unseen = tuple(s.shard_id for s in message.shards if s.shard_id not in known)
        if unseen:
            self._calls.events.publish(ShardsDiscovered(unseen))
        if message.disabled and not self._disabled:
            self._disabled = True
            self._calls.events.publish(StreamDisabled(self._calls.stream_arn))

    # -- discovery (lineage mode, follow) ----------------------------------------------------

    async def _describe_periodically(self) -> None:
        """Owns full listings: every ``describe_interval``, and at once when
        :meth:`_next_listing` asks; one listing answers every task waiting for it."""
        calls = self._calls
        waiting: asyncio.Future[StreamDescription] | None = None
        try:
            while True:
                await until_stopped(
                    calls.clock.sleep(calls.options.describe_interval), self._listing_wanted
                )
                self._listing_wanted.clear()
                waiting, self._listing = self._listing, None
                description = await calls.retry_transient(calls.describe, None)
                self._messages.put_nowait(
                    _Discovered(
                        description.shards, complete=True, disabled=_is_disabled(description)
                    )
                )
                if waiting is not None:
                    waiting.set_result(description)
                    waiting = None
        finally:
            # Nobody makes listings any more: whoever waits for one must not wait forever.
            for future in (waiting, self._listing):
                if future is not None and not future.done():
                    future.cancel()
            self._listing = None

    async def _next_listing(self) -> StreamDescription:
        """The next full listing (made by :meth:`_describe_periodically`, shared)."""
        if self._listing is None:
            self._listing = asyncio.get_running_loop().create_future()
            self._listing_wanted.set()
        return await asyncio.shield(self._listing)

    async def _discover_children(self, shard_id: str) -> None:
        """Find an ended shard's children, asking again while they are not yet visible.

        One shard ending asks for its children alone (DescribeStream with a CHILD_SHARDS
        filter); when many end together (a stream-wide rollover), one shared full listing
        finds them all in a few pages instead of one call per shard.
        """
        calls = self._calls
        deadline = calls.clock.monotonic() + calls.options.child_discovery_timeout
        self._discovering.add(shard_id)
        try:
            attempt = 0
            while not self._children_known(shard_id):
                attempt += 1
                if len(self._discovering) <= 1 + len(self._graph_shards()) // 100:
                    children = await calls.child_shards(shard_id)
                    if children:
                        self._messages.put_nowait(
                            _Discovered(children, complete=False, disabled=False)
                        )
                        return
                # No children yet: either they are not visible yet, or the stream was
                # disabled (a closed shard without children). A full listing tells which.
                description = await self._next_listing()
                if _is_disabled(description) or self._children_known(shard_id, description.shards):
                    return
                if calls.clock.monotonic() >= deadline:
                    return  # left to the periodic listing
                await calls.clock.sleep(exponential_delay(0.1, 5.0, attempt))
        finally:
            self._discovering.discard(shard_id)

    def _graph_shards(self) -> dict[str, Shard]:
        tracker = self._tracker
        assert tracker is not None
        return dict(tracker.graph.shards)

    def _children_known(self, shard_id: str, listed: Iterable[Shard] = ()) -> bool:
        tracker = self._tracker
        assert tracker is not None
        shards = itertools.chain(tracker.graph.shards.values(), listed)
        return any(shard.parent_shard_id == shard_id for shard in shards)
