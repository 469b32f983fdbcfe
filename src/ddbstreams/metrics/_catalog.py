"""What ddbstreams measures: the metric catalog, the events each metric counts, and the
figures read on demand (iterator age, leases held).

Both exporters (Prometheus, OpenTelemetry) are built from this one catalog, so that their
metrics mean the same things. Nothing here imports an exporter's library.

Label sets are bounded on purpose: counters carry no shard id (shard ids churn every few
hours, and a counter's series lives as long as the process). Per-shard figures are read on
demand from the readers being tracked (:class:`Pulled`): a shard that is no longer read
is simply not reported any more, so its series disappear with it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal, Protocol

from ddbstreams._events import (
    BatchFailed,
    BatchHandled,
    CheckpointSaved,
    Event,
    GetRecordsCalled,
    GroupError,
    IteratorRefreshed,
    LeaseLost,
    LeaseReleased,
    LeaseTaken,
    ReaderError,
    RecordsGivenUp,
    RecordsSkipped,
    RecordsTrimmed,
    RequestRetried,
    ShardFinished,
    ShardStarted,
    Throttled,
)

__all__ = [
    "CATALOG",
    "HANDLER_DURATION",
    "LagSource",
    "Metric",
    "Pulled",
    "measurements",
]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric. ``name`` is the Prometheus name without the ``ddbstreams_`` prefix and
    the ``_total`` suffix of counters; ``otel_name`` and ``unit`` (UCUM) are
    OpenTelemetry's. ``label_values`` lists the values of ``labels`` known in advance:
    their series exist (at 0) before anything happened, so a rate never starts from
    nothing."""

    name: str
    otel_name: str
    kind: Literal["counter", "histogram"]
    unit: str
    help: str
    labels: tuple[str, ...] = ()
    label_values: tuple[tuple[str, ...], ...] = ()


def _counter(
    name: str, otel_name: str, unit: str, help: str, labels: tuple[str, ...] = (), *values: str
) -> Metric:
    return Metric(name, otel_name, "counter", unit, help, labels, tuple((v,) for v in values))


RECORDS_READ = _counter(
    "records_read", "ddbstreams.records.read", "{record}", "Records returned by GetRecords."
)
READ_BYTES = _counter(
    "read_bytes", "ddbstreams.read.size", "By", "Bytes of GetRecords responses received."
)
GET_RECORDS_CALLS = _counter(
    "get_records_calls",
    "ddbstreams.get_records.calls",
    "{call}",
    "GetRecords requests by outcome: records, empty, throttled or error.",
    ("outcome",),
    *("records", "empty", "throttled", "error"),
)
REQUESTS_THROTTLED = _counter(
    "requests_throttled",
    "ddbstreams.requests.throttled",
    "{request}",
    "Requests the service throttled and the client retried, by API operation.",
    ("operation",),
)
REQUESTS_RETRIED = _counter(
    "requests_retried",
    "ddbstreams.requests.retried",
    "{request}",
    "Requests that failed (5xx, connection, timeout) and were retried, by API operation.",
    ("operation",),
)
READER_ERRORS = _counter(
    "reader_errors",
    "ddbstreams.reader.errors",
    "{error}",
    "Reader errors after the client's retries; retrying=true: a follow reader goes on.",
    ("retrying",),
    *("true", "false"),
)
ITERATORS_REFRESHED = _counter(
    "iterators_refreshed",
    "ddbstreams.iterators.refreshed",
    "{iterator}",
    "Shard iterators that expired and were acquired again.",
)
RECORDS_SKIPPED = _counter(
    "records_skipped",
    "ddbstreams.records.skipped",
    "{record}",
    "Records read and dropped because older than the moment of an at_time start.",
)
TRIMMED_GAPS = _counter(
    "trimmed_gaps",
    "ddbstreams.trimmed_gaps",
    "{gap}",
    "Times records were trimmed (older than 24 h) before they could be read; "
    "shard_gone=true: the whole shard was.",
    ("shard_gone",),
    *("true", "false"),
)
SHARDS_STARTED = _counter(
    "shards_started", "ddbstreams.shards.started", "{shard}", "Shard readers started."
)
SHARDS_FINISHED = _counter(
    "shards_finished", "ddbstreams.shards.finished", "{shard}", "Shards read to their end."
)
BATCHES_HANDLED = _counter(
    "batches_handled",
    "ddbstreams.batches.handled",
    "{batch}",
    "Handler calls that handled records (all of a batch, or the part before a reported failure).",
)
RECORDS_HANDLED = _counter(
    "records_handled", "ddbstreams.records.handled", "{record}", "Records the handler handled."
)
BATCHES_FAILED = _counter(
    "batches_failed",
    "ddbstreams.batches.failed",
    "{batch}",
    "Batches that failed in the handler, by cause: exception, reported, invalid_response.",
    ("cause",),
    *("exception", "reported", "invalid_response"),
)
BATCHES_RETRIED = _counter(
    "batches_retried",
    "ddbstreams.batches.retried",
    "{batch}",
    "Failed batches that are tried again (after a delay, or bisected).",
)
BATCHES_GIVEN_UP = _counter(
    "batches_given_up",
    "ddbstreams.batches.given_up",
    "{batch}",
    "Batches given up on and sent to the on-failure destination (dropped without one).",
    ("condition",),
    *("RetryAttemptsExhausted", "RecordAgeExceeded"),
)
RECORDS_GIVEN_UP = _counter(
    "records_given_up",
    "ddbstreams.records.given_up",
    "{record}",
    "Records given up on and sent to the on-failure destination (dropped without one).",
    ("condition",),
    *("RetryAttemptsExhausted", "RecordAgeExceeded"),
)
CHECKPOINTS_SAVED = _counter(
    "checkpoints_saved",
    "ddbstreams.checkpoints.saved",
    "{checkpoint}",
    "Checkpoints stored (a store's save, or one shard's checkpoint in its lease).",
)
LEASES_TAKEN = _counter(
    "leases_taken",
    "ddbstreams.leases.taken",
    "{lease}",
    "Leases this worker took: free ones (previous_owner=none) or expired ones.",
    ("previous_owner",),
    *("none", "expired"),
)
LEASES_STOLEN = _counter(
    "leases_stolen",
    "ddbstreams.leases.stolen",
    "{lease}",
    "Leases taken from an owner that stopped renewing them within the failover time.",
)
LEASES_RELEASED = _counter(
    "leases_released",
    "ddbstreams.leases.released",
    "{lease}",
    "Leases this worker released, by reason: balance, stopping, shard_end.",
    ("reason",),
    *("balance", "stopping", "shard_end"),
)
LEASES_LOST = _counter(
    "leases_lost",
    "ddbstreams.leases.lost",
    "{lease}",
    "Leases this worker lost (taken by another worker, or not renewed in time).",
)
GROUP_ERRORS = _counter(
    "group_errors",
    "ddbstreams.group.errors",
    "{error}",
    "Coordination calls of this worker that failed after their retries.",
)
HANDLER_DURATION = Metric(
    "handler_duration_seconds",
    "ddbstreams.handler.duration",
    "histogram",
    "s",
    "Duration of handler calls that handled records, in seconds.",
)

CATALOG: tuple[Metric, ...] = (
    RECORDS_READ,
    READ_BYTES,
    GET_RECORDS_CALLS,
    REQUESTS_THROTTLED,
    REQUESTS_RETRIED,
    READER_ERRORS,
    ITERATORS_REFRESHED,
    TRIMMED_GAPS,
    RECORDS_SKIPPED,
    SHARDS_STARTED,
    SHARDS_FINISHED,
    BATCHES_HANDLED,
    RECORDS_HANDLED,
    BATCHES_FAILED,
    BATCHES_RETRIED,
    BATCHES_GIVEN_UP,
    RECORDS_GIVEN_UP,
    CHECKPOINTS_SAVED,
    LEASES_TAKEN,
    LEASES_STOLEN,
    LEASES_RELEASED,
    LEASES_LOST,
    GROUP_ERRORS,
    HANDLER_DURATION,
)
"""Every metric fed by events (the pulled gauges are :class:`Pulled`'s)."""

Measurement = tuple[Metric, tuple[str, ...], float]
"""A metric, its label values and the amount to add (or, for a histogram, to observe)."""

_NOTHING: tuple[Measurement, ...] = ()
_NO_LABELS: tuple[str, ...] = ()
_FLAG = {True: ("true",), False: ("false",)}


def measurements(event: Event) -> tuple[Measurement, ...]:
    """What ``event`` adds to the metrics (most events add to one or two)."""
    match event:
        # First: one per GetRecords call, by far the most frequent.
        case GetRecordsCalled(_, outcome, records, size):
            if records:
                return (
                    (GET_RECORDS_CALLS, (outcome,), 1),
                    (RECORDS_READ, _NO_LABELS, records),
                    (READ_BYTES, _NO_LABELS, size),
                )
            return ((GET_RECORDS_CALLS, (outcome,), 1), (READ_BYTES, _NO_LABELS, size))
        case BatchHandled(_, records, duration):
            return (
                (BATCHES_HANDLED, _NO_LABELS, 1),
                (RECORDS_HANDLED, _NO_LABELS, records),
                (HANDLER_DURATION, _NO_LABELS, duration),
            )
        case CheckpointSaved():
            return ((CHECKPOINTS_SAVED, _NO_LABELS, 1),)
    return _reader_measurements(event) or _consumer_measurements(event)


def _reader_measurements(event: Event) -> tuple[Measurement, ...]:
    match event:
        case Throttled(operation, _, _, _):
            counted = (REQUESTS_THROTTLED, (operation,), 1)
            if operation == "GetRecords":  # a request sent: see GetRecordsCalled
                return (counted, (GET_RECORDS_CALLS, ("throttled",), 1))
            return (counted,)
        case RequestRetried(operation, _, _, _, _):
            counted = (REQUESTS_RETRIED, (operation,), 1)
            if operation == "GetRecords":
                return (counted, (GET_RECORDS_CALLS, ("error",), 1))
            return (counted,)
        case ShardStarted():
            return ((SHARDS_STARTED, _NO_LABELS, 1),)
        case ShardFinished():
            return ((SHARDS_FINISHED, _NO_LABELS, 1),)
        case IteratorRefreshed():
            return ((ITERATORS_REFRESHED, _NO_LABELS, 1),)
        case RecordsTrimmed(_, _, shard_gone):
            return ((TRIMMED_GAPS, _FLAG[shard_gone], 1),)
        case RecordsSkipped(_, records, _, _):
            return ((RECORDS_SKIPPED, _NO_LABELS, records),)
        case ReaderError(_, _, retrying):
            return ((READER_ERRORS, _FLAG[retrying], 1),)
    return _NOTHING


def _consumer_measurements(event: Event) -> tuple[Measurement, ...]:
    match event:
        case BatchFailed(_, _, _, _, will_retry, cause):
            failed = (BATCHES_FAILED, (cause,), 1)
            return (failed, (BATCHES_RETRIED, _NO_LABELS, 1)) if will_retry else (failed,)
        case RecordsGivenUp(_, count, condition):
            return (
                (BATCHES_GIVEN_UP, (condition,), 1),
                (RECORDS_GIVEN_UP, (condition,), count),
            )
        case LeaseTaken(_, _, _, _, expired):
            if expired:
                return ((LEASES_TAKEN, ("expired",), 1), (LEASES_STOLEN, _NO_LABELS, 1))
            return ((LEASES_TAKEN, ("none",), 1),)
        case LeaseReleased(_, _, _, reason):
            return ((LEASES_RELEASED, (reason,), 1),)
        case LeaseLost():
            return ((LEASES_LOST, _NO_LABELS, 1),)
        case GroupError():
            return ((GROUP_ERRORS, _NO_LABELS, 1),)
    return _NOTHING


# -- figures read on demand -------------------------------------------------------------------


class LagSource(Protocol):
    """What :meth:`Pulled.track` reads: a :class:`~ddbstreams.StreamReader` or a
    :class:`~ddbstreams.Consumer` (whose ``leases()`` also gives the leases held)."""

    def lag(self) -> Mapping[str, float]: ...


class Pulled:
    """The figures an exporter reads when it is scraped, from the readers and consumers
    being tracked.

    **Iterator age** of a shard (as Lambda's IteratorAge): now minus the approximate
    creation time of the newest record the reader has taken from the shard; 0 once a
    GetRecords call on the shard returned nothing new (the shard is caught up), so it does
    not grow on an idle shard. Only shards being read now are reported: a finished or
    released shard's figure goes away with it. The maximum is over those shards (0 when
    none is read).

    Reading may happen on another thread (a metrics server's): sources only copy what
    they hold.
    """

    __slots__ = ("_sources",)

    def __init__(self) -> None:
        self._sources: list[LagSource] = []

    def track(self, source: LagSource) -> Callable[[], None]:
        """Report ``source``'s figures from now on; returns a function that stops it."""
        self._sources.append(source)

        def untrack() -> None:
            if source in self._sources:
                self._sources.remove(source)

        return untrack

    @property
    def tracking(self) -> bool:
        return bool(self._sources)

    def iterator_ages(self) -> dict[str, float]:
        """Seconds per shard being read (the largest if two sources read one shard)."""
        ages: dict[str, float] = {}
        for source in tuple(self._sources):
            try:
                lag = source.lag()
            except RuntimeError:  # a reader not started yet, or stopped
                continue
            for shard_id, age in lag.items():
                ages[shard_id] = max(age, ages.get(shard_id, 0.0))
        return ages

    def leases_held(self) -> int | None:
        """Leases held by the tracked consumers that work in a group (None: none does)."""
        held: int | None = None
        for source in tuple(self._sources):
            leases = getattr(source, "leases", None)
            if leases is not None and getattr(source, "group", None) is not None:
                held = (held or 0) + len(leases())
        return held
