"""The shard fetcher (layer 4): follows one shard and puts its pages into the buffer.

States: acquiring an iterator -> paging -> done. Paging ends when the shard ends (no
NextShardIterator) or, for an open shard in a single pass, when it has caught up. An
expired iterator is re-acquired AFTER the last sequence number put in the buffer (or at
the start if nothing was), so nothing is lost or repeated. Trimmed records follow the
reader's ``on_trimmed`` policy. In follow mode, calls that still fail after the client's
retries are tried again later from the same position. A paused shard makes no request
until resumed. Cancelling :meth:`ShardFetcher.run` (release, stop) leaves nothing behind:
a page not yet in the buffer is simply not put there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from ddbstreams._backoff import exponential_delay, idle_poll_delay
from ddbstreams._errors import ExpiredIteratorError, ShardNotFoundError, TrimmedDataError
from ddbstreams._events import IteratorRefreshed, ReaderError, RecordsTrimmed
from ddbstreams._model import Record, RecordsPage, Shard
from ddbstreams._parser import Parser
from ddbstreams._position import SHARD_TRIM_HORIZON, ShardStart
from ddbstreams.reading._calls import TRANSIENT_ERRORS, StreamCalls
from ddbstreams.reading._delivery import EndOfRead, Page
from ddbstreams.reading._state import ReadState

__all__ = ["FetchContext", "LagBoard", "Pauses", "ShardFetcher"]

T = TypeVar("T")


class LagBoard:
    """Per shard being fetched, the creation time of the last record read (None: caught
    up). Fetchers write it; :meth:`StreamReader.lag` reads it."""

    __slots__ = ("_origins",)

    def __init__(self) -> None:
        self._origins: dict[str, float | None] = {}

    def set(self, shard_id: str, last_creation_time: float | None) -> None:
        self._origins[shard_id] = last_creation_time

    def remove(self, shard_id: str) -> None:
        self._origins.pop(shard_id, None)

    def seconds_behind(self, now: float) -> dict[str, float]:
        return {
            shard_id: 0.0 if created is None else max(0.0, now - created)
            for shard_id, created in self._origins.items()
        }


class Pauses:
    """Shards paused by the caller, each with the event that resumes it."""

    __slots__ = ("_paused",)

    def __init__(self) -> None:
        self._paused: dict[str, asyncio.Event] = {}

    def pause(self, shard_id: str) -> None:
        self._paused.setdefault(shard_id, asyncio.Event())

    def resume(self, shard_id: str) -> None:
        resumed = self._paused.pop(shard_id, None)
        if resumed is not None:
            resumed.set()

    def paused(self) -> frozenset[str]:
        return frozenset(self._paused)

    async def until_resumed(self, shard_id: str) -> None:
        resumed = self._paused.get(shard_id)
        if resumed is not None:
            await resumed.wait()


@dataclass(frozen=True, slots=True)
class FetchContext(Generic[T]):
    """What every fetcher of one reader shares (built by the coordinator).

    ``buffer`` receives pages; ``state`` learns of restarts after trimming; ``caught_up``
    tells a single pass when an open shard has caught up with the pass's start.
    """

    calls: StreamCalls
    parser: Parser[T]
    buffer: asyncio.Queue[Page[T] | EndOfRead]
    state: ReadState
    lag: LagBoard
    pauses: Pauses
    caught_up: Callable[[float | None], bool]


class ShardFetcher(Generic[T]):
    """Fetches one shard's pages into the buffer (see the module docstring)."""

    __slots__ = ("_context", "_last_sequence_number", "_shard", "_start", "token")

    def __init__(self, context: FetchContext[T], shard: Shard, start: ShardStart) -> None:
        self._context = context
        self._shard = shard
        self._start = start
        self._last_sequence_number: str | None = None
        self.token = object()

    @property
    def shard_id(self) -> str:
        return self._shard.shard_id

    @property
    def _position(self) -> ShardStart:
        if self._last_sequence_number is not None:
            return ShardStart("AFTER_SEQUENCE_NUMBER", self._last_sequence_number)
        return self._start

    async def run(self) -> bool:
        """Read pages until the shard ends (True) or a single pass has caught up (False)."""
        context = self._context
        calls = context.calls
        options = calls.options
        # Open in the listing and without children: a single pass reads it only up to "now".
        open_shard = self._shard.is_open
        iterator = await self._acquire()
        empty_pages = 0
        failures = 0  # consecutive transient failures of GetRecords
        while iterator is not None:
            await context.pauses.until_resumed(self.shard_id)
            try:
                # The slot is held until the page is in the buffer, so the pages held
                # outside the buffer are bounded by the slots too.
                async with calls.request_slots:
                    page = await self._get_page(iterator)
            except (ExpiredIteratorError, TrimmedDataError, ShardNotFoundError) as exc:
                iterator = await self._reacquire(exc)
                continue
            except TRANSIENT_ERRORS as exc:
                failures += 1
                await self._wait_after_failure(exc, failures)
                # The iterator may have expired meanwhile; the next call says so if it has.
                continue
            failures = 0
            if page.next_shard_iterator is None:
                context.lag.remove(self.shard_id)
                return True
            iterator = page.next_shard_iterator
            if page.records:
                context.lag.set(self.shard_id, page.last_creation_time)
                empty_pages = 0
                if not calls.follow and open_shard and context.caught_up(page.last_creation_time):
                    return False
                continue
            context.lag.set(self.shard_id, None)
            empty_pages += 1
            if calls.follow:
                await calls.clock.sleep(
                    idle_poll_delay(
                        options.idle_poll_delay, options.idle_poll_max_delay, empty_pages
                    )
                )
            elif open_shard:
                if empty_pages >= options.catch_up_empty_pages:
                    return False
                await calls.clock.sleep(options.empty_page_delay)
        # The shard was trimmed away (skipped by policy): it ends, and the caller learns so.
        await context.buffer.put(self._page([], [], ends_shard=True))
        return True

    async def _reacquire(
        self, error: ExpiredIteratorError | TrimmedDataError | ShardNotFoundError
    ) -> str | None:
        """A new iterator after GetRecords said the current one is no good."""
        calls = self._context.calls
        if isinstance(error, ExpiredIteratorError):
            calls.events.publish(IteratorRefreshed(self.shard_id, self._last_sequence_number))
        elif isinstance(error, TrimmedDataError):
            self._trimmed(shard_gone=False)
        else:
            await calls.check_stream_exists()
        return await self._acquire()

    async def _wait_after_failure(self, error: Exception, failures: int) -> None:
        """Follow mode outlives transient failures (reported, then retried later); a
        single pass ends with them."""
        calls = self._context.calls
        if not calls.follow:
            raise error
        calls.events.publish(ReaderError(error, self.shard_id, retrying=True))
        await calls.clock.sleep(exponential_delay(1.0, calls.options.retry_max_delay, failures))

    def _page(self, records: list[T], sequence_numbers: list[str], *, ends_shard: bool) -> Page[T]:
        return Page(
            self.shard_id,
            records,
            sequence_numbers,
            ends_shard,
            self._shard.parent_shard_id,
            self.token,
        )

    async def _get_page(self, iterator: str) -> RecordsPage[T]:
        """One GetRecords call; a page with records, or the shard's last page, goes into
        the buffer before this returns."""
        context = self._context
        calls = context.calls
        page = await calls.client.get_records(
            iterator, shard_id=self.shard_id, parser=context.parser, limit=calls.options.page_limit
        )
        ends_shard = page.next_shard_iterator is None
        if page.records or ends_shard:
            sequence_numbers = page.sequence_numbers
            if sequence_numbers is None:
                sequence_numbers = [cast(Record, record).sequence_number for record in page.records]
            await context.buffer.put(
                self._page(page.records, sequence_numbers, ends_shard=ends_shard)
            )
            if sequence_numbers:
                self._last_sequence_number = sequence_numbers[-1]
        return page

    async def _acquire(self) -> str | None:
        """A fresh iterator at the current position; None if the shard is gone (skipped)."""
        calls = self._context.calls

        async def get_iterator() -> str:
            async with calls.request_slots:
                return await calls.client.get_shard_iterator(
                    calls.stream_arn, self.shard_id, self._position
                )

        while True:
            try:
                return await calls.retry_transient(get_iterator, self.shard_id)
            except TrimmedDataError:
                self._trimmed(shard_gone=False)
            except ShardNotFoundError:
                # A shard is missing either because retention trimmed it or because the
                # whole stream is gone; only the first is a trimming matter.
                await calls.check_stream_exists()
                if calls.options.on_trimmed == "raise":
                    raise
                self._trimmed(shard_gone=True)
                return None

    def _trimmed(self, *, shard_gone: bool) -> None:
        """Apply the trimming policy: raise, or report the gap and go to TRIM_HORIZON."""
        calls = self._context.calls
        if calls.options.on_trimmed == "raise":
            raise TrimmedDataError(
                f"records of shard {self.shard_id} of stream {calls.stream_arn} after "
                f"{self._last_sequence_number or self._start} were trimmed before being read"
            )
        calls.events.publish(RecordsTrimmed(self.shard_id, self._last_sequence_number, shard_gone))
        self._start = SHARD_TRIM_HORIZON
        self._context.state.restarted(self.shard_id, SHARD_TRIM_HORIZON)
        self._last_sequence_number = None
