"""The caller's side of a reader: the page buffer and handing records out.

Fetchers put :class:`Page` s into one bounded FIFO (``buffer_pages``); the caller takes
them through :class:`Delivery`, which records every record it hands out in the
:class:`~ddbstreams.reading._state.ReadState` *before* the caller sees it, so a checkpoint
taken while holding a record includes it and one taken before receiving it does not.
Because a parent's fetcher has put its last page in the FIFO before its child's fetcher
starts, every item's changes come out in order; a slow caller pauses the fetchers instead
of growing memory. Pages of a shard released while they waited are dropped here (the
shard's next owner reads them again).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Generic, TypeVar

from ddbstreams.model._position import ShardStart
from ddbstreams.reading._state import ReadState, ShardEnd

__all__ = ["Delivery", "EndOfRead", "Page", "ShardBatch"]

T = TypeVar("T")


@dataclass(slots=True)
class Page(Generic[T]):
    """A slice of one shard in the buffer. ``ends_shard``: the shard has no more records.
    ``token`` is the fetch that produced it (see :class:`ReadState`)."""

    shard_id: str
    records: list[T]
    sequence_numbers: list[str]
    ends_shard: bool
    parent_shard_id: str | None
    token: object


@dataclass(frozen=True, slots=True)
class EndOfRead:
    """Last item in the buffer: the read is over, with ``error`` if it failed."""

    error: BaseException | None


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


class Delivery(Generic[T]):
    """Hands out the buffer's pages to the caller, keeping :class:`ReadState` exact.

    Called by the caller's task only (the reader's iterators, the blocking facade, a
    consumer's intake); fetchers only put pages into :attr:`buffer`. States: between pages
    (``current`` is None) -> handing out a page -> ... -> ended (the end-of-read item was
    taken; its error, if any, was raised once).
    """

    __slots__ = ("_ended", "_offset", "_state", "buffer", "current")

    def __init__(self, state: ReadState, buffer_pages: int) -> None:
        self._state = state
        self.buffer: asyncio.Queue[Page[T] | EndOfRead] = asyncio.Queue(buffer_pages)
        self.current: Page[T] | None = None
        self._offset = 0
        self._ended = False

    @property
    def ended(self) -> bool:
        return self._ended

    async def fill(self) -> bool:
        """Make a page with records current; False at the end of the read.

        Waits for the fetchers (cancellable) and raises the error that ended the read.
        """
        while self.current is None:
            page = await self._next_page()
            if page is None:
                return False
            self._accept(page)
        return True

    def take(self, max_size: int) -> list[T]:
        """Hand out up to ``max_size`` records of the current page (there must be one)."""
        page = self.current
        assert page is not None
        start = self._offset
        end = min(start + max_size, len(page.records))
        self._handed(page, end)
        return page.records[start:end]

    def take_one(self) -> T:
        """Hand out the next record of the current page (there must be one)."""
        page = self.current
        assert page is not None
        index = self._offset
        self._handed(page, index + 1)
        return page.records[index]

    async def next_shard_batch(self, max_size: int) -> ShardBatch[T] | None:
        """The next :class:`ShardBatch` (possibly an empty end-of-shard batch), or None at
        the end of the read."""
        while self.current is None:
            page = await self._next_page()
            if page is None:
                return None
            # Not _accept(): an empty end-of-shard page must reach the caller as a batch.
            self.current = page
            self._offset = 0
        page = self.current
        start = self._offset
        end = min(start + max_size, len(page.records))
        position = self._state.position(page.shard_id)
        before = None if isinstance(position, ShardEnd) else position
        self._handed(page, end)
        return ShardBatch(
            page.shard_id,
            page.records[start:end],
            page.sequence_numbers[start:end],
            page.ends_shard and end == len(page.records),
            page.parent_shard_id,
            before,
        )

    def drop_current(self, shard_id: str) -> None:
        """Forget the rest of the current page if it is ``shard_id``'s (released)."""
        if self.current is not None and self.current.shard_id == shard_id:
            self.current = None
            self._offset = 0

    async def _next_page(self) -> Page[T] | None:
        while not self._ended:
            item = await self.buffer.get()
            if isinstance(item, EndOfRead):
                self._ended = True
                if item.error is not None:
                    raise item.error
                return None
            if self._state.is_current(item.shard_id, item.token):
                return item
        return None

    def _accept(self, page: Page[T]) -> None:
        """Make ``page`` current; a page without records only settles its shard's state."""
        self.current = page
        self._offset = 0
        if not page.records:
            self._handed(page, 0)

    def _handed(self, page: Page[T], end: int) -> None:
        # The state changes before the caller sees the records (see the module docstring).
        if end > self._offset:
            self._state.handed(page.shard_id, page.sequence_numbers[end - 1])
        self._offset = end
        if end == len(page.records):
            if page.ends_shard:
                self._state.consumed(page.shard_id)
            self.current = None
            self._offset = 0
