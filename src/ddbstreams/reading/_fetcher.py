"""The shard fetcher (layer 4): follows one shard and puts its pages into the buffer.

States: acquiring an iterator -> paging -> done. Paging ends when the shard ends (no
NextShardIterator) or, for an open shard in a single pass, when it has caught up. An
expired iterator is re-acquired AFTER the last sequence number put in the buffer (or at
the start if nothing was), so nothing is lost or repeated. Trimmed records follow the
reader's ``on_trimmed`` policy. A start with a time filter (``at_time``) drops the records
older than its moment until the first one that is not (:mod:`._timefilter`), moving the
shard's start past what it dropped. In follow mode, calls that still fail after the client's
retries are tried again later from the same position. A paused shard makes no request
until resumed. Cancelling :meth:`ShardFetcher.run` (release, stop) leaves nothing behind:
a page not yet in the buffer is simply not put there.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar, cast

from ddbstreams._errors import (
    ExpiredIteratorError,
    ShardNotFoundError,
    ThrottledError,
    TrimmedDataError,
)
from ddbstreams._events import (
    GetRecordsCalled,
    IteratorRefreshed,
    ReaderError,
    RecordsSkipped,
    RecordsTrimmed,
)
from ddbstreams.client._backoff import exponential_delay
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import ShardStart, creation_time_resolution
from ddbstreams.model._types import Record, RecordsPage, Shard
from ddbstreams.reading._calls import TRANSIENT_ERRORS, StreamCalls
from ddbstreams.reading._delivery import EndOfRead, Page
from ddbstreams.reading._schedule import PollSchedule
from ddbstreams.reading._state import ReadState
from ddbstreams.reading._timefilter import TimedParser, TimeFilter

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
        # A copy first (atomic under the GIL): a metrics server may ask from its own thread
        # while fetchers add and remove shards.
        return {
            shard_id: 0.0 if created is None else max(0.0, now - created)
            for shard_id, created in tuple(self._origins.items())
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
    tells a single pass when an open shard has caught up with the pass's start;
    ``schedule`` says when a follow reader polls each shard next.
    """

    calls: StreamCalls
    parser: Parser[T]
    buffer: asyncio.Queue[Page[T] | EndOfRead]
    state: ReadState
    lag: LagBoard
    pauses: Pauses
    caught_up: Callable[[float | None], bool]
    schedule: PollSchedule


def _yields_records(parser: object) -> bool:
    """Whether ``parser`` is one of ours, whose records carry their creation time (exact
    types: a subclass may override ``parse_records``)."""
    return type(parser) in (DefaultParser, RawParser)


class ShardFetcher(Generic[T]):
    """Fetches one shard's pages into the buffer (see the module docstring)."""

    __slots__ = (
        "_context",
        "_filter",
        "_last_sequence_number",
        "_open",
        "_parser",
        "_shard",
        "_start",
        "_timed",
        "token",
    )

    def __init__(
        self, context: FetchContext[T], shard: Shard, start: ShardStart, *, open_shard: bool
    ) -> None:
        """``open_shard``: the shard may still get records (listed open, no listed
        children); a single pass reads such a shard only until it has caught up."""
        self._context = context
        self._shard = shard
        self._open = open_shard and shard.is_open
        self._start = start
        self._last_sequence_number: str | None = None
        self.token = object()
        self._parser: Parser[T] = context.parser
        self._filter: TimeFilter | None = None
        self._timed: TimedParser[T] | None = None
        if start.not_before is not None:
            resolution = creation_time_resolution(context.calls.stream_arn)
            self._filter = TimeFilter(start.not_before, resolution)
            # Records of these parsers carry their creation time; any other parser's are
            # timed from the raw records (the default parser keeps its fast path).
            if not _yields_records(context.parser):
                self._timed = self._parser = TimedParser(context.parser)

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
        schedule = self._context.schedule
        schedule.add(self.shard_id, self._context.calls.clock.monotonic())
        try:
            return await self._read_pages()
        finally:
            schedule.remove(self.shard_id)

    async def _read_pages(self) -> bool:
        context = self._context
        calls = context.calls
        open_shard = self._open
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
            context.lag.set(self.shard_id, page.last_creation_time if page.records else None)
            empty_pages = 0 if page.records else empty_pages + 1
            if calls.follow:
                await self._wait_for_next_poll(page, empty_pages)
            elif open_shard and not await self._single_pass_goes_on(page, empty_pages):
                return False
        # The shard was trimmed away (skipped by policy): it ends, and the caller learns so.
        await context.buffer.put(self._page([], [], ends_shard=True))
        return True

    async def _wait_for_next_poll(self, page: RecordsPage[T], empty_pages: int) -> None:
        """Follow mode: wait as the poll schedule says (a backlog is read at once)."""
        context = self._context
        clock = context.calls.clock
        now = clock.monotonic()
        schedule = context.schedule
        schedule.polled(self.shard_id, now, records=len(page.records))
        if page.records:
            full = len(page.records) >= (context.calls.options.page_limit or 1000)
            created = page.last_creation_time
            age = None if created is None else clock.time() - created
            wait = schedule.after_records(self.shard_id, now, full_page=full, newest_age=age)
        else:
            wait = schedule.interval(self.shard_id, now, empty_pages=empty_pages)
        if wait > 0:
            await clock.sleep(wait)

    async def _single_pass_goes_on(self, page: RecordsPage[T], empty_pages: int) -> bool:
        """A single pass over an open shard: False once it has caught up with the pass's
        start (a record created after it, or a few empty pages in a row)."""
        context = self._context
        options = context.calls.options
        if page.records:
            return not context.caught_up(page.last_creation_time)
        if empty_pages >= options.catch_up_empty_pages:
            return False
        await context.calls.clock.sleep(options.empty_page_delay)
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
        try:
            page = await calls.client.get_records(
                iterator,
                shard_id=self.shard_id,
                parser=self._parser,
                limit=calls.options.page_limit,
            )
        except Exception as error:
            throttled = isinstance(error, ThrottledError)
            calls.events.publish(
                GetRecordsCalled(self.shard_id, "throttled" if throttled else "error")
            )
            raise
        # One small event per call (metrics count records, bytes and outcomes from it).
        calls.events.publish(
            GetRecordsCalled(
                self.shard_id,
                "records" if page.records else "empty",
                len(page.records),
                page.size_bytes,
            )
        )
        ends_shard = page.next_shard_iterator is None
        records = page.records
        if records or ends_shard:
            sequence_numbers = page.sequence_numbers
            if sequence_numbers is None:
                sequence_numbers = [cast(Record, record).sequence_number for record in records]
            if self._filter is not None and records:
                records, sequence_numbers = self._drop_older(records, sequence_numbers)
            if records or ends_shard:
                await context.buffer.put(
                    self._page(records, sequence_numbers, ends_shard=ends_shard)
                )
            if sequence_numbers:
                self._last_sequence_number = sequence_numbers[-1]
        return page

    def _drop_older(
        self, records: list[T], sequence_numbers: list[str]
    ) -> tuple[list[T], list[str]]:
        """The page's records from the first one at or after the filter's moment; once one
        is kept, the filter is done (the moment is reached) and later pages pass as read."""
        time_filter = self._filter
        assert time_filter is not None
        if self._timed is not None:
            kept = time_filter.first_kept_time(self._timed.times)
        else:
            kept = time_filter.first_kept_record(cast(list[Record], records))
        if kept:
            # Go on after what was dropped, filter kept: a refreshed iterator, and a
            # checkpoint taken now, need not read it again.
            dropped_through = sequence_numbers[kept - 1]
            self._start = ShardStart(
                "AFTER_SEQUENCE_NUMBER", dropped_through, not_before=time_filter.moment
            )
            self._context.state.restarted(self.shard_id, self._start)
            self._context.calls.events.publish(
                RecordsSkipped(self.shard_id, kept, time_filter.moment, dropped_through)
            )
        if kept < len(records):
            self._filter = self._timed = None
            self._parser = self._context.parser
            if kept:
                return records[kept:], sequence_numbers[kept:]
            return records, sequence_numbers
        return [], []

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
        # A shard that has not reached an at_time moment yet keeps filtering.
        not_before = None if self._filter is None else self._filter.moment
        self._start = ShardStart("TRIM_HORIZON", not_before=not_before)
        self._context.state.restarted(self.shard_id, self._start)
        self._last_sequence_number = None
