"""Typed events: what readers and consumers report about their progress (Galvani's state
channel).

Events are facts, not requests: handling them is optional and never changes what the
component does. Every event is a frozen, slotted dataclass. They travel on one channel, an
:class:`EventHub`: a reader's own (``StreamReader(on_event=...)``, ``reader.events()``), or
the hub of a consumer, which its reader publishes on too (``Consumer(on_event=...)``,
``consumer.events()``), so that one subscriber sees reader and consumer events alike.
Logging is such a subscriber (:func:`log_event`); so are the CLI's ``--verbose`` and, later,
metrics.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ddbstreams.model._position import ShardStart, StartPosition

__all__ = [
    "BatchFailed",
    "BatchHandled",
    "CheckpointSaved",
    "ConsumerEvent",
    "ConsumerStarted",
    "Event",
    "EventHub",
    "ForeignWorkers",
    "GetRecordsCalled",
    "GetRecordsOutcome",
    "GroupChanged",
    "GroupError",
    "GroupEvent",
    "IteratorRefreshed",
    "LeaseLost",
    "LeaseReleased",
    "LeaseTaken",
    "LeasesCreated",
    "ReaderError",
    "ReaderEvent",
    "RecordsGivenUp",
    "RecordsSkipped",
    "RecordsTrimmed",
    "RequestRetried",
    "ShardFinished",
    "ShardStarted",
    "ShardsDiscovered",
    "StreamDisabled",
    "StreamReplaced",
    "Subscription",
    "Throttled",
    "WorkerJoined",
    "log_event",
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
class RecordsSkipped:
    """``records`` records of ``shard_id`` were read and dropped because they are older than
    the moment ``not_before`` of an ``at_time`` start (the service has no iterator at a
    time, so a shard is read from its start). ``after_sequence_number`` is the last one
    dropped: the shard goes on after it. One event per page with dropped records."""

    shard_id: str
    records: int
    not_before: datetime
    after_sequence_number: str


GetRecordsOutcome = Literal["records", "empty", "throttled", "error"]
"""How a GetRecords call ended: with records, with none, throttled, or failed otherwise."""


@dataclass(frozen=True, slots=True)
class GetRecordsCalled:
    """A GetRecords call on ``shard_id`` ended with ``outcome``: ``records`` records in a
    response of ``size_bytes`` bytes (both 0 for a failed call).

    Published once per call the reader made, after the client's retries: an attempt the
    client retried is a :class:`Throttled` or :class:`RequestRetried` instead, so that
    every request sent is told exactly once (what metrics count). A call whose retries ran
    out on throttling is ``"throttled"``; any other failure (an expired iterator, trimmed
    records, a 5xx...) is an ``"error"``.
    """

    shard_id: str
    outcome: GetRecordsOutcome
    records: int = 0
    size_bytes: int = 0


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
    | RecordsSkipped
    | GetRecordsCalled
    | StreamDisabled
    | ReaderError
)


# -- consumer events ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ConsumerStarted:
    """A consumer's reader has started, under ``name``, at ``start``: the checkpoint loaded
    from the store, or the starting position when the store had none for the stream."""

    stream_arn: str
    name: str
    start: StartPosition


@dataclass(frozen=True, slots=True)
class BatchHandled:
    """The handler handled ``records`` records of ``shard_id`` in ``duration`` seconds (all
    of a batch, or those before the first failure its partial batch response reported)."""

    shard_id: str
    records: int
    duration: float


BatchFailure = Literal["exception", "reported", "invalid_response"]
"""How a batch failed: the handler raised, its partial batch response reported failed
records, or that response was unusable (which fails the whole batch, as in Lambda)."""


@dataclass(frozen=True, slots=True)
class BatchFailed:
    """``records`` records of ``shard_id`` failed in the handler.

    ``attempt`` is 1 for the first call with these records and grows by one per retry (the
    halves of a bisected batch keep their batch's count); ``error`` describes the failure
    (see ``cause``). ``will_retry``: the records are tried again (retried after a delay, or
    bisected); otherwise they are given up on (:class:`RecordsGivenUp`) or, when the
    consumer is stopping, left for the next run (not checkpointed).
    """

    shard_id: str
    records: int
    attempt: int
    error: str
    will_retry: bool
    cause: BatchFailure = "exception"


@dataclass(frozen=True, slots=True)
class RecordsGivenUp:
    """``count`` records of ``shard_id`` were given up on and sent to the on-failure
    destination (dropped when the consumer has none); they are checkpointed as done.
    ``condition`` is Lambda's: ``"RetryAttemptsExhausted"`` or ``"RecordAgeExceeded"``."""

    shard_id: str
    count: int
    condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]


@dataclass(frozen=True, slots=True)
class CheckpointSaved:
    """A consumer stored its checkpoint of ``stream_arn`` under ``name``; in a group, the
    checkpoint ``position`` (a sequence number, or ``SHARD_END``) of one shard,
    ``shard_id``, in its lease."""

    stream_arn: str
    name: str
    shard_id: str | None = None
    position: str | None = None


ConsumerEvent = ConsumerStarted | BatchHandled | BatchFailed | RecordsGivenUp | CheckpointSaved


# -- worker group events --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WorkerJoined:
    """This worker (``worker_id``) joined the group ``group`` (the lease table's name)."""

    group: str
    worker_id: str


@dataclass(frozen=True, slots=True)
class GroupChanged:
    """The live workers of ``group``, as this worker sees them, changed to ``workers``."""

    group: str
    workers: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class LeaseTaken:
    """This worker took the lease of ``shard_id``: free, released by ``previous_owner``, or
    ``expired`` (its owner stopped renewing it within the failover time)."""

    group: str
    shard_id: str
    worker_id: str
    previous_owner: str | None
    expired: bool


LeaseReleaseReason = Literal["balance", "stopping", "shard_end"]


@dataclass(frozen=True, slots=True)
class LeaseReleased:
    """This worker finished its in-flight batches of ``shard_id``, checkpointed them and
    released the lease (``reason``: to balance the group, because it is stopping, or because
    the shard ended and its children's leases exist)."""

    group: str
    shard_id: str
    worker_id: str
    reason: LeaseReleaseReason


@dataclass(frozen=True, slots=True)
class LeaseLost:
    """This worker no longer holds the lease of ``shard_id`` and starts no further batch of
    it (``reason`` says why: taken by another worker, or not renewed within the failover
    time). A batch in flight may still finish; its checkpoint is refused."""

    group: str
    shard_id: str
    worker_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class LeasesCreated:
    """Leases created in ``group``'s table for ``shard_ids`` (by discovery, or children of a
    shard that ended, created by the worker that finished it)."""

    group: str
    shard_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ForeignWorkers:
    """Leases of ``group`` are being renewed by ``owners``, workers outside the group (such
    as a Java KCL application on the same table): not supported; their leases are left
    alone."""

    group: str
    owners: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class StreamReplaced:
    """The source table's stream was replaced (disabled and enabled again): the group read
    ``old_stream_arn`` to its end and goes on with ``new_stream_arn`` from its start."""

    group: str
    old_stream_arn: str
    new_stream_arn: str


@dataclass(frozen=True, slots=True)
class GroupError:
    """A coordination call of this worker failed (``operation``, ``error``) after its
    retries; the worker tries again on its next round and keeps its leases meanwhile, as
    long as its heartbeat is renewed within the failover time."""

    group: str
    operation: str
    error: str


GroupEvent = (
    WorkerJoined
    | GroupChanged
    | LeaseTaken
    | LeaseReleased
    | LeaseLost
    | LeasesCreated
    | ForeignWorkers
    | StreamReplaced
    | GroupError
)

Event = ReaderEvent | ConsumerEvent | GroupEvent
"""Everything that travels on an :class:`EventHub`."""


# -- the channel ----------------------------------------------------------------------------


class EventHub:
    """The one channel events travel on: fans each event out to listeners (plain functions
    called on the event loop, in the order they were added) and to subscribers
    (:meth:`subscribe`: bounded async iterators).

    Any component publishes; publishing never blocks (a subscriber that falls behind loses
    its oldest events, counted in ``dropped``). A failing listener is logged, not
    propagated. :meth:`end_subscriptions` ends the current subscriptions (the hub goes on:
    a consumer does this when a run ends); :meth:`close` ends them for good.

    ``callback`` is a first listener. It is typed loosely because a hub carries what its
    owner publishes: a reader's own hub carries only :data:`ReaderEvent` s, so a callback
    taking those fits it; a consumer's hub carries every :data:`Event`.
    """

    __slots__ = ("_closed", "_listeners", "_subscribers", "dropped")

    def __init__(self, callback: Callable[[Any], None] | None = None) -> None:
        self._listeners: list[Callable[[Any], None]] = [] if callback is None else [callback]
        self._subscribers: list[Subscription] = []
        self._closed = False
        self.dropped = 0

    def listen(self, listener: Callable[[Event], None]) -> Callable[[], None]:
        """Call ``listener`` with every event from now on; returns a function that stops it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def publish(self, event: Event) -> None:
        for listener in tuple(self._listeners):
            try:
                listener(event)
            except Exception:
                log.exception("on_event callback failed on %r", event)
        for subscriber in self._subscribers:
            self.dropped += subscriber.put(event)

    def subscribe(self, size: int) -> Subscription:
        """A subscription to the events from now on (the ``size`` newest ones are kept)."""
        subscription = Subscription(size)
        if self._closed:
            subscription.close()
        else:
            self._subscribers.append(subscription)
        return subscription

    def end_subscriptions(self) -> None:
        """End every current subscription (their iterators finish once drained)."""
        for subscriber in self._subscribers:
            subscriber.close()
        self._subscribers.clear()

    def close(self) -> None:
        """End every subscription, and any made later at once. Listeners stay."""
        self._closed = True
        self.end_subscriptions()


class Subscription:
    """A bounded queue of events for one subscriber, iterated with ``async for``."""

    __slots__ = ("_closed", "_events", "_wakeup")

    def __init__(self, size: int) -> None:
        self._events: deque[Event] = deque(maxlen=size)
        self._wakeup = asyncio.Event()
        self._closed = False

    def put(self, event: Event) -> int:
        dropped = int(len(self._events) == self._events.maxlen)
        self._events.append(event)
        self._wakeup.set()
        return dropped

    def close(self) -> None:
        self._closed = True
        self._wakeup.set()

    # Typed Any like the hub's callback: the events are those its hub carries.
    async def __aiter__(self) -> AsyncIterator[Any]:
        while True:
            while self._events:
                yield self._events.popleft()
            if self._closed:
                return
            self._wakeup.clear()
            await self._wakeup.wait()


# -- logging, a subscriber ------------------------------------------------------------------


def log_event(event: Event) -> None:
    """Log ``event`` on the ``ddbstreams`` logger: one line.

    Failures that need a person are warnings (a handler that raised, an unusable partial
    batch response, records given up on); everything else is debug.
    """
    match event:
        case BatchFailed(shard_id, records, _, error, _, "exception"):
            log.warning("handler failed on %d records of %s: %s", records, shard_id, error)
        case BatchFailed(_, _, _, error, _, "invalid_response"):
            log.warning("%s: retrying the batch", error)
        case RecordsGivenUp(shard_id, count, condition):
            log.warning("giving up on %d records of %s (%s)", count, shard_id, condition)
        case LeaseLost(group, shard_id, worker_id, reason):
            log.warning("%s lost the lease of %s in %s: %s", worker_id, shard_id, group, reason)
        case ForeignWorkers(group, owners):
            log.warning(
                "leases of %s are renewed by workers outside the group (%s): running other "
                "workers (a Java KCL application?) on the same lease table is not supported",
                group,
                ", ".join(owners),
            )
        case GroupError(group, operation, error):
            log.warning("%s in %s failed: %s", operation, group, error)
        case StreamReplaced(group, old, new):
            log.warning("%s: stream %s was replaced by %s", group, old, new)
        case LeaseTaken() | LeaseReleased() | GroupChanged() | WorkerJoined() | LeasesCreated():
            log.info("%r", event)
        case GetRecordsCalled():
            pass  # one per poll of every shard: for metrics, too many lines for a log
        case _:
            log.debug("%r", event)
