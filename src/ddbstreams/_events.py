"""Typed events a reader reports about its own progress (Galvani's state channel).

Events are facts, not requests: handling them is optional and never changes what the reader
does. They reach the caller through ``StreamReader(on_event=...)`` (a plain function called
on the event loop) and through ``reader.events()`` (an async iterator).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

from ddbstreams._position import ShardStart

__all__ = [
    "EventHub",
    "IteratorRefreshed",
    "ReaderError",
    "ReaderEvent",
    "RecordsTrimmed",
    "RequestRetried",
    "ShardFinished",
    "ShardStarted",
    "ShardsDiscovered",
    "StreamDisabled",
    "Subscription",
    "Throttled",
]

log = logging.getLogger("ddbstreams")


@dataclass(frozen=True, slots=True)
class ShardStarted:
    """A shard reader began at ``start``."""

    shard_id: str
    start: ShardStart


@dataclass(frozen=True, slots=True)
class ShardFinished:
    """A shard was read to its end (its last page is in the buffer or delivered)."""

    shard_id: str


@dataclass(frozen=True, slots=True)
class ShardsDiscovered:
    """New shards were seen (children of a finished shard, or a periodic DescribeStream)."""

    shard_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Throttled:
    """The service throttled a call (LimitExceeded/Throttling); it is retried after ``delay``."""

    operation: str
    shard_id: str | None
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class RequestRetried:
    """A call failed with a 5xx, a dropped connection or a timeout; it is retried."""

    operation: str
    shard_id: str | None
    code: str
    attempt: int
    delay: float


@dataclass(frozen=True, slots=True)
class IteratorRefreshed:
    """A shard iterator expired and was acquired again, after ``after_sequence_number``
    (the last record taken from the shard) or at the shard's original start if ``None``."""

    shard_id: str
    after_sequence_number: str | None


@dataclass(frozen=True, slots=True)
class RecordsTrimmed:
    """Records were trimmed (older than 24 hours) before they could be read.

    The shard continues at its oldest remaining record (TRIM_HORIZON): records after
    ``after_sequence_number`` (the last one taken, or ``None`` if none was) up to the new
    start are lost. ``shard_gone`` is set when the whole shard had been trimmed away.
    """

    shard_id: str
    after_sequence_number: str | None
    shard_gone: bool = False


@dataclass(frozen=True, slots=True)
class StreamDisabled:
    """The stream was disabled: what remains is read, then a follow reader ends."""

    stream_arn: str


@dataclass(frozen=True, slots=True)
class ReaderError:
    """An error in the reader. ``retrying``: a follow reader keeps trying; otherwise the
    error ends the read and is raised to the caller as well."""

    error: BaseException
    shard_id: str | None
    retrying: bool


ReaderEvent = (
    ShardStarted
    | ShardFinished
    | ShardsDiscovered
    | Throttled
    | RequestRetried
    | IteratorRefreshed
    | RecordsTrimmed
    | StreamDisabled
    | ReaderError
)


class EventHub:
    """The one channel events travel on: fans each event out to a callback and to
    subscribers (:meth:`StreamReader.events`).

    Any component publishes; publishing never blocks (a subscriber that falls behind loses
    its oldest events, counted in ``dropped``). A failing callback is logged, not
    propagated. :meth:`close` ends every subscription.
    """

    __slots__ = ("_callback", "_closed", "_subscribers", "dropped")

    def __init__(self, callback: Callable[[ReaderEvent], None] | None) -> None:
        self._callback = callback
        self._subscribers: list[Subscription] = []
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

    def subscribe(self, size: int) -> Subscription:
        subscription = Subscription(size)
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


class Subscription:
    """A bounded queue of events for one subscriber, iterated with ``async for``."""

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
