"""Consumers: run a batch handler over a stream with durable checkpoints and Lambda's controls.

A :class:`Consumer` reads a stream (in follow mode, or as a single pass) and calls a handler
with batches of records from one shard at a time, in order, checkpointing after the handler
succeeds. Options carry the names and meanings of a Lambda event source mapping for
DynamoDB Streams (batch size, batching window, retries, record age, bisect on error,
partial batch responses, on-failure destination, parallelization factor, filters).

Structure (one run of :meth:`Consumer.run` builds a :class:`_Pass`):

* the intake (``_Pass.intake``) takes :class:`~ddbstreams.ShardBatch` es from the reader and
  hands them to a :class:`_Gatherer`, which holds each shard's records until they are due
  (batch size, the batching window on the consumer's clock, end of shard, end of read);
* a due batch is queued on the shard's lanes (``parallelization_factor`` of them; a
  record's lane is chosen by its item key, so one item's changes never run in two batches
  at once); a lane runs its batches one after another, each through the error policy
  (:class:`_BatchPolicy`: filters, record age, handler, retries, bisection, partial batch
  responses, on-failure destination); each handler call holds one of the consumer's
  ``max_concurrent_handlers`` slots (:class:`_HandlerSlots`, first come, first served);
* per shard, :class:`_ShardWork` keeps the batches in stream order and the position up to
  which every record is processed; a child shard's lanes wait until its parent is fully
  processed;
* a committer task writes the checkpoint (:class:`_Checkpointer`) after batches complete,
  and once more when the run ends, however it ends.

The checkpoint only ever covers records whose batch completed (handled, filtered out, or
given up on and sent to the on-failure destination), or that a partial batch response
reported as handled; records of batches in flight at a crash are delivered again on
restart, never skipped.

Everything observable is an event on the consumer's one :class:`~ddbstreams.EventHub`
(its reader publishes there too); logging is a subscriber of it
(:func:`~ddbstreams._events.log_event`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import enum
import inspect
import os
import uuid
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ddbstreams._clock import Clock, SystemClock
from ddbstreams._errors import ConfigurationError, DDBStreamsError
from ddbstreams._events import (
    BatchFailed,
    BatchFailure,
    BatchHandled,
    CheckpointSaved,
    ConsumerStarted,
    Event,
    EventHub,
    RecordsGivenUp,
    StreamReplaced,
    log_event,
)
from ddbstreams._tasks import run_in_daemon_thread, until_stopped, wait_tasks
from ddbstreams.client._backoff import exponential_delay
from ddbstreams.client._streams import StreamsClient
from ddbstreams.consuming._filter import RecordFilter
from ddbstreams.coordination._lease import LATEST_CHECKPOINT
from ddbstreams.coordination._options import GroupOptions, default_worker_id
from ddbstreams.coordination._table import LeaseTable
from ddbstreams.coordination._worker import GroupWorker, Processed
from ddbstreams.model._arn import is_table_name
from ddbstreams.model._decode import dumps_plain_json
from ddbstreams.model._encode import encode_item
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import (
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    AtTime,
    Checkpoint,
    Latest,
    ShardStart,
    StartPosition,
    TrimHorizon,
)
from ddbstreams.model._types import Record
from ddbstreams.reading import ReaderOptions, ShardBatch, ShardPosition, StreamReader
from ddbstreams.state._stores import CheckpointStore, SQLiteCheckpointStore

__all__ = [
    "Consumer",
    "ConsumerLifecycle",
    "ConsumerOptions",
    "FailedBatch",
    "Handler",
    "JsonLinesDestination",
    "LambdaContext",
    "lambda_handler",
    "record_to_lambda",
]

Handler = Callable[[list[Record]], Any]
"""A batch handler: a plain or async function taking a list of records of one shard.

It returns ``None`` on success. With ``report_batch_item_failures`` it may return Lambda's
partial batch response, ``{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}``:
the records before the first failed one are done (and checkpointed), the rest is retried.
Raising an exception fails the whole batch.
"""

FailureDestination = Callable[["FailedBatch"], Awaitable[None] | None]

Condition = Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]

DEFAULT_STORE_PATH = "ddbstreams-checkpoints.sqlite"


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Lambda's event source mapping options, with their names and meanings.

    - ``batch_size`` (BatchSize, default 100, 1 to 10,000): most records per handler call.
    - ``maximum_batching_window`` (MaximumBatchingWindowInSeconds, default 0): how long to
      gather records of a shard before calling the handler with fewer than ``batch_size``.
    - ``starting_position`` (StartingPosition): TRIM_HORIZON or LATEST (or, beyond Lambda,
      ``at_sequence(...)`` / ``after_sequence(...)`` / ``at_time(...)``; not in a group),
      used when the store holds no checkpoint for the stream.
    - ``maximum_retry_attempts`` (MaximumRetryAttempts, default -1 = until the record
      expires): retries of a failed batch before it goes to the on-failure destination.
    - ``maximum_record_age`` (MaximumRecordAgeInSeconds, default -1 = no limit): records
      older than this (by approximate creation time) are not handled but sent to the
      on-failure destination.
    - ``bisect_batch_on_error`` (BisectBatchOnFunctionError): a failed batch is split in two
      and each half retried, until the failing record is alone; splitting uses no retry.
    - ``report_batch_item_failures`` (FunctionResponseTypes ReportBatchItemFailures): honour
      the handler's partial batch response.
    - ``parallelization_factor`` (ParallelizationFactor, 1 to 10): batches of one shard in
      flight at once; records of one item key always go to the same lane, in order.
    - ``retry_delay`` / ``retry_max_delay``: wait before retrying a failed batch, doubling.
      They apply per batch (and per bisected half): one record's failures never lengthen
      another record's wait.
    - ``stop_timeout``: how long :meth:`Consumer.stop` lets in-flight handler calls finish
      before abandoning them (not checkpointed: they are delivered again on restart). A
      blocking handler still running then goes on in a daemon thread until it returns;
      it does not keep the process alive.
    - ``max_concurrent_handlers`` (default 64): handler calls running at once, over every
      shard and lane of the consumer (Lambda's analogue: concurrency per shard x shards,
      capped by the account's concurrency). Only the handler call holds a slot (not
      waits, retry delays, filters or the on-failure destination); slots go to the
      waiting batches first come, first served, so every shard gets its turn. A blocking
      handler runs in a thread of its own per call: the bound also bounds those threads.
      After :meth:`Consumer.stop`, a batch still waiting for a slot is not started (it is
      delivered again on the next run). Why 64: few threads and downstream connections,
      yet 64 calls of 100 records taking 50 ms each handle 128,000 records a second.

    Every duration is measured on the consumer's clock (``Consumer(clock=...)``).
    """

    batch_size: int = 100
    maximum_batching_window: float = 0.0
    starting_position: TrimHorizon | Latest | AtSequence | AfterSequence | AtTime = TRIM_HORIZON
    maximum_retry_attempts: int = -1
    maximum_record_age: float = -1
    bisect_batch_on_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    retry_delay: float = 0.5
    retry_max_delay: float = 30.0
    stop_timeout: float = 30.0
    max_concurrent_handlers: int = 64

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ConfigurationError("batch_size must be between 1 and 10000")
        if not 0 <= self.maximum_batching_window <= 300:
            raise ConfigurationError("maximum_batching_window must be between 0 and 300 seconds")
        if not isinstance(
            self.starting_position, TrimHorizon | Latest | AtSequence | AfterSequence | AtTime
        ):
            raise ConfigurationError(
                "starting_position must be TRIM_HORIZON, LATEST, at_sequence(...), "
                "after_sequence(...) or at_time(...)"
            )
        if not -1 <= self.maximum_retry_attempts <= 10_000:
            raise ConfigurationError("maximum_retry_attempts must be -1 or between 0 and 10000")
        if self.maximum_record_age != -1 and not 0 < self.maximum_record_age <= 604_800:
            raise ConfigurationError(
                "maximum_record_age must be -1 or between 0 and 604800 seconds"
            )
        if not 1 <= self.parallelization_factor <= 10:
            raise ConfigurationError("parallelization_factor must be between 1 and 10")
        if self.retry_delay < 0 or self.retry_max_delay < 0 or self.stop_timeout < 0:
            raise ConfigurationError("durations must not be negative")
        if self.max_concurrent_handlers < 1:
            raise ConfigurationError("max_concurrent_handlers must be at least 1")


@dataclass(frozen=True, slots=True)
class FailedBatch:
    """Records given up on, as sent to the on-failure destination.

    ``condition`` is Lambda's: ``"RetryAttemptsExhausted"`` or ``"RecordAgeExceeded"``.
    ``error`` describes the last handler error (``None`` for records too old to try).
    """

    stream_arn: str
    shard_id: str
    records: tuple[Record, ...]
    condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded"]
    attempts: int
    error: str | None
    timestamp: datetime

    def to_lambda_json(self) -> dict[str, Any]:
        """The document Lambda sends to an on-failure destination for a DynamoDB stream."""
        first, last = self.records[0], self.records[-1]
        return {
            "requestContext": {
                "requestId": str(uuid.uuid4()),
                "functionArn": None,
                "condition": self.condition,
                "approximateInvokeCount": self.attempts,
            },
            "responseContext": {
                "statusCode": 200,
                "executedVersion": "$LATEST",
                "functionError": "Unhandled" if self.error is not None else None,
            },
            "version": "1.0",
            "timestamp": self.timestamp.isoformat().replace("+00:00", "Z"),
            "DDBStreamBatchInfo": {
                "shardId": self.shard_id,
                "startSequenceNumber": first.sequence_number,
                "endSequenceNumber": last.sequence_number,
                "approximateArrivalOfFirstRecord": _iso(first.approximate_creation_time),
                "approximateArrivalOfLastRecord": _iso(last.approximate_creation_time),
                "batchSize": len(self.records),
                "streamArn": self.stream_arn,
            },
            "error": self.error,
        }


class JsonLinesDestination:
    """An on-failure destination that appends one JSON document per failed batch to a file.

    Each line is :meth:`FailedBatch.to_lambda_json` plus ``"records"``: the failed records
    in Lambda's event shape, so they can be replayed. The line is flushed and fsynced before
    the consumer checkpoints past the batch. A string holding a lone UTF-16 surrogate is
    written as a ``\\uXXXX`` escape, so every line is valid JSON (``json.loads`` gives the
    string back).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    async def __call__(self, failed: FailedBatch) -> None:
        document = failed.to_lambda_json()
        document["records"] = [record_to_lambda(r, failed.stream_arn) for r in failed.records]
        line = dumps_plain_json(document) + b"\n"
        await asyncio.to_thread(self._append, line)

    def _append(self, line: bytes) -> None:
        with self.path.open("ab") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


# -- Lambda compatibility --------------------------------------------------------------


def record_to_lambda(record: Record, stream_arn: str | None = None) -> dict[str, Any]:
    """A record in the shape of one element of a Lambda DynamoDB event's ``Records``."""
    dynamodb: dict[str, Any] = {
        "ApproximateCreationDateTime": record.approximate_creation_time.timestamp(),
        "Keys": encode_item(record.keys),
        "SequenceNumber": record.sequence_number,
        "SizeBytes": record.size_bytes,
        "StreamViewType": record.stream_view_type,
    }
    if record.new_image is not None:
        dynamodb["NewImage"] = encode_item(record.new_image)
    if record.old_image is not None:
        dynamodb["OldImage"] = encode_item(record.old_image)
    event: dict[str, Any] = {
        "eventID": record.event_id,
        "eventName": record.event_name,
        "eventVersion": record.event_version,
        "eventSource": record.event_source,
        "awsRegion": record.aws_region,
        "dynamodb": dynamodb,
        "eventSourceARN": stream_arn or record.event_source_arn,
    }
    if record.user_identity is not None:
        event["userIdentity"] = {
            "type": record.user_identity.type,
            "principalId": record.user_identity.principal_id,
        }
    return event


@dataclass(slots=True)
class LambdaContext:
    """The parts of Lambda's context object a handler commonly uses.

    ``deadline`` is on ``clock``'s monotonic time: ``timeout`` seconds (Lambda's longest,
    15 minutes) after the context was made, unless given.
    """

    function_name: str = "ddbstreams-consumer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    deadline: float | None = None
    clock: Clock = field(default_factory=SystemClock, repr=False, compare=False)
    timeout: float = 900.0

    def __post_init__(self) -> None:
        if self.deadline is None:
            self.deadline = self.clock.monotonic() + self.timeout

    def get_remaining_time_in_millis(self) -> int:
        deadline = self.deadline if self.deadline is not None else 0.0
        return max(0, int((deadline - self.clock.monotonic()) * 1000))


def lambda_handler(
    function: Callable[[dict[str, Any], LambdaContext], Any], *, stream_arn: str | None = None
) -> Handler:
    """Adapt a Lambda function ``handler(event, context)`` into a consumer handler.

    The function receives ``{"Records": [...]}`` in Lambda's DynamoDB event shape (with
    ``eventSourceARN`` set to the stream being consumed) and a :class:`LambdaContext` on
    the consumer's clock; its return value (e.g. a partial batch response) is passed on.
    """
    return _LambdaAdapter(function, stream_arn)


class _LambdaAdapter:
    __slots__ = ("__name__", "clock", "function", "stream_arn")

    def __init__(
        self, function: Callable[[dict[str, Any], LambdaContext], Any], stream_arn: str | None
    ) -> None:
        self.function = function
        self.stream_arn = stream_arn
        self.clock: Clock = SystemClock()
        self.__name__ = getattr(function, "__name__", "lambda_handler")

    def bind(self, stream_arn: str, clock: Clock) -> None:
        """Set the stream (unless given) and the clock of the consumer running this."""
        if self.stream_arn is None:
            self.stream_arn = stream_arn
        self.clock = clock

    def __call__(self, records: list[Record]) -> Any:
        event = {"Records": [record_to_lambda(r, self.stream_arn) for r in records]}
        return self.function(event, LambdaContext(clock=self.clock))


# -- lifecycle ------------------------------------------------------------------------------


class ConsumerLifecycle(enum.Enum):
    """A consumer's lifecycle::

        IDLE --run()--> STARTING --reader started--> RUNNING --> STOPPING --> IDLE
        STARTING --error or cancellation--> IDLE

    STARTING resolves the stream, loads the checkpoint and starts the reader. RUNNING ends
    when :meth:`Consumer.stop` (or :meth:`Consumer.request_stop`) is called, when the read
    is over (a single pass done, a disabled stream read to its end) or when the read fails.
    STOPPING lets the lanes finish (see :meth:`Consumer.stop`), saves the checkpoint and
    stops the reader; then :meth:`Consumer.run` returns (or raises) and the consumer is IDLE
    again: ``run()`` may be called again.
    """

    IDLE = "idle"
    STARTING = "starting"
    RUNNING = "running"
    STOPPING = "stopping"


# -- per-shard bookkeeping ------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    """One due batch of a shard, done when every lane's part of it is done.

    ``done_through``: the last record of a batch processed in one part (one lane) that a
    partial batch response reported done while the rest is still pending.
    """

    last_sequence_number: str | None
    ends_shard: bool
    parts_left: int
    single: bool
    done_through: str | None = None
    last_created: float | None = None


class _ShardWork:
    """A shard's batches in stream order and the position all of whose records are done.

    ``base`` is the shard's checkpoint entry before its oldest unfinished segment (AFTER a
    sequence number, or the start of a shard that has handed nothing), or ``None`` when the
    checkpoint did not name the shard. ``queued`` counts the jobs waiting in its lanes: the
    pass pauses the shard in the reader while it is at ``_QUEUED_PER_LANE`` per lane, so
    a shard whose handler is stuck holds a bounded number of records and stops no other
    shard.
    """

    __slots__ = (
        "base",
        "base_created",
        "finished",
        "lanes",
        "parent",
        "queued",
        "segments",
        "shard_id",
    )

    def __init__(self, shard_id: str, parent: str | None) -> None:
        self.shard_id = shard_id
        self.parent = parent
        self.segments: deque[_Segment] = deque()
        self.base: ShardStart | None = None
        self.base_created: float | None = None
        self.finished = asyncio.Event()
        self.lanes: list[_Lane] = []
        self.queued = 0

    @property
    def busy(self) -> bool:
        return bool(self.segments)

    def position(self) -> ShardStart | None:
        """Where the shard's checkpoint stands: ``base``, or past the part of the oldest
        segment that a partial batch response reported done."""
        if self.segments and self.segments[0].done_through is not None:
            return ShardStart("AFTER_SEQUENCE_NUMBER", self.segments[0].done_through)
        return self.base

    def complete(self, segment: _Segment) -> bool:
        """Mark a part of ``segment`` done; True if the done prefix moved."""
        segment.parts_left -= 1
        moved = False
        while self.segments and self.segments[0].parts_left == 0:
            done = self.segments.popleft()
            moved = True
            if done.last_sequence_number is not None:
                self.base = ShardStart("AFTER_SEQUENCE_NUMBER", done.last_sequence_number)
                self.base_created = done.last_created
            if done.ends_shard:
                self.finished.set()
        return moved


@dataclass(slots=True)
class _Job:
    records: list[Record]
    segment: _Segment


_QUEUED_PER_LANE = 2
"""Jobs that may wait in a lane before the pass pauses the lane's shard in the reader."""


class _Lane:
    """Runs one shard's batches for one slice of its item keys, one batch at a time.

    Its queue never blocks the intake (which serves every shard); the shard's ``queued``
    count bounds it instead, through pausing the shard in the reader.
    """

    __slots__ = ("jobs", "task")

    def __init__(self) -> None:
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


# -- handler slots ----------------------------------------------------------------------


class _HandlerSlots:
    """``max_concurrent_handlers`` slots for handler calls, handed out first come, first
    served: a freed slot goes straight to the longest-waiting batch, never to one that
    arrives later, so no shard is starved however many compete. Every operation is O(1)
    (amortized: waiters that gave up are skipped when their turn comes)."""

    __slots__ = ("_free", "_waiters")

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._waiters: deque[asyncio.Future[None]] = deque()

    async def take(self, stop: asyncio.Event) -> bool:
        """Take a slot: at once if one is free, else in turn. False (no slot taken) if
        ``stop`` is set before one comes: a batch not started yet is not started then."""
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return True
        return await until_stopped(self._wait(), stop)

    def release(self) -> None:
        while self._waiters:
            turn = self._waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot passes to the first waiter, still taken
                return
        self._free += 1

    async def _wait(self) -> None:
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(turn)
        try:
            await turn
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a slot just as the wait was given up: pass it on
            raise


# -- the error policy -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Failure:
    """How a handler call failed: from which record on, the error for the on-failure
    destination, how, and what to tell (``detail``, the error unless more is known)."""

    failed_from: int
    error: str
    cause: BatchFailure
    detail: str = ""

    def __post_init__(self) -> None:
        if not self.detail:
            object.__setattr__(self, "detail", self.error)


_REPORTED = "reported batch item failure"
"""The error of records that a partial batch response reported failed."""

_NOT_STARTED = _Failure(0, "not started: the consumer is stopping", "exception")
"""What :meth:`_BatchPolicy._attempt` returns when the consumer stopped before a handler
slot came: the batch was not started (it is delivered again on the next run)."""


class _Progress:
    """How far a batch is done, in stream order: every record before the first one still
    pending. Reports each advance (the last done record's sequence number)."""

    __slots__ = ("_done", "_index", "_records", "_report")

    def __init__(self, records: list[Record], report: Callable[[str], None]) -> None:
        self._records = records
        self._report = report
        self._index: dict[int, int] | None = None
        self._done = 0

    def pending_from(self, record: Record) -> None:
        if self._records[self._done] is record:
            return  # no advance (most calls): no index needed
        if self._index is None:
            self._index = {id(r): i for i, r in enumerate(self._records)}
        index = self._index[id(record)]
        if index > self._done:
            self._done = index
            self._report(self._records[index - 1].sequence_number)


class _BatchPolicy:
    """Lambda's error policy for one batch of one shard.

    Filters, record age, the handler (a plain function runs in a daemon thread), retries
    with a doubling delay on the consumer's clock, bisection, partial batch responses and
    the on-failure destination. Publishes :class:`BatchHandled`, :class:`BatchFailed` and
    :class:`RecordsGivenUp`. ``stop`` set means the consumer is stopping: a failing batch
    is then abandoned rather than retried.
    """

    __slots__ = (
        "_clock",
        "_events",
        "_filter",
        "_handler",
        "_handler_is_async",
        "_on_failure",
        "_options",
        "_slots",
        "_stop",
        "_stream_arn",
    )

    def __init__(
        self,
        options: ConsumerOptions,
        handler: Handler,
        record_filter: RecordFilter | None,
        on_failure: FailureDestination | None,
        *,
        stream_arn: str,
        clock: Clock,
        events: EventHub,
        stop: asyncio.Event,
    ) -> None:
        self._options = options
        self._handler = handler
        # An async function, or an object whose __call__ is one, runs on the event loop.
        self._handler_is_async = _is_async(handler)
        self._filter = record_filter
        self._on_failure = on_failure
        self._stream_arn = stream_arn
        self._clock = clock
        self._events = events
        self._stop = stop
        self._slots = _HandlerSlots(options.max_concurrent_handlers)

    async def process(
        self, shard_id: str, records: list[Record], progress: Callable[[str], None]
    ) -> bool:
        """Run ``records`` (stream order) through the policy.

        Returns True once every record is handled, filtered out or given up on; False if
        the consumer is stopping while the batch still fails, or before a handler slot
        came for it (it is abandoned, not checkpointed). ``progress(sequence_number)`` is
        called whenever the records up to that one are done while later ones are pending.
        """
        done = _Progress(records, progress)
        matching = records
        if self._filter is not None:
            matching = [r for r in records if self._filter.matches(r)]
        # Each part carries its own attempt count, and so its own backoff: parts split off a
        # failing batch are other records, which have not failed as often.
        parts: deque[tuple[list[Record], int]] = deque([(matching, 0)] if matching else [])
        while parts:
            done.pending_from(parts[0][0][0])
            part, attempts = parts.popleft()
            part, expired = self._split_expired(part)
            if expired:
                await self._give_up(shard_id, expired, "RecordAgeExceeded", attempts, None)
            if not part:
                continue
            failure = await self._attempt(shard_id, part)
            if failure is _NOT_STARTED:
                return False
            if failure is None:
                continue
            retry = part[failure.failed_from :]
            if self._options.bisect_batch_on_error and len(retry) > 1:
                # Splitting does not use a retry (as in Lambda).
                self._failed(shard_id, retry, attempts + 1, failure, will_retry=True)
                middle = len(retry) // 2
                parts.extendleft([(retry[middle:], attempts), (retry[:middle], attempts)])
                continue
            attempts += 1
            limit = self._options.maximum_retry_attempts
            if limit != -1 and attempts > limit:
                self._failed(shard_id, retry, attempts, failure, will_retry=False)
                await self._give_up(
                    shard_id, retry, "RetryAttemptsExhausted", attempts, failure.error
                )
                continue
            stopping = self._stop.is_set()
            self._failed(shard_id, retry, attempts, failure, will_retry=not stopping)
            done.pending_from(retry[0])
            if stopping:
                return False
            delay = exponential_delay(
                self._options.retry_delay, self._options.retry_max_delay, attempts
            )
            # A stop cuts the wait short: the batch gets one last try before it is abandoned.
            await until_stopped(self._clock.sleep(delay), self._stop)
            parts.appendleft((retry, attempts))
        return True

    def _failed(
        self,
        shard_id: str,
        records: list[Record],
        attempt: int,
        failure: _Failure,
        *,
        will_retry: bool,
    ) -> None:
        self._events.publish(
            BatchFailed(shard_id, len(records), attempt, failure.detail, will_retry, failure.cause)
        )

    async def _attempt(self, shard_id: str, part: list[Record]) -> _Failure | None:
        """Call the handler once with ``part``, holding a handler slot for the call only;
        None if every record was handled, :data:`_NOT_STARTED` if the consumer stopped
        before a slot came."""
        if not await self._slots.take(self._stop):
            return _NOT_STARTED
        try:
            started = self._clock.monotonic()
            result = await self._call_handler(part)
        except Exception as exc:
            return _Failure(0, f"{type(exc).__name__}: {exc}", "exception")
        finally:
            self._slots.release()
        failure = self._first_failure(part, result)
        handled = len(part) if failure is None else failure.failed_from
        if handled:
            duration = self._clock.monotonic() - started
            self._events.publish(BatchHandled(shard_id, handled, duration))
        return failure

    async def _call_handler(self, records: list[Record]) -> Any:
        if self._handler_is_async:
            return await self._handler(records)
        # A plain function runs in a thread so the reader keeps fetching meanwhile; a daemon
        # thread, so that a handler still hanging after stop() cannot keep the process alive.
        result = await run_in_daemon_thread(self._handler, records, name="ddbstreams-handler")
        if inspect.isawaitable(result):
            return await result
        return result

    def _first_failure(self, records: list[Record], result: Any) -> _Failure | None:
        """The failure a partial batch response reports, or None."""
        if not self._options.report_batch_item_failures or result is None:
            return None
        failures = result.get("batchItemFailures") if isinstance(result, Mapping) else None
        if not failures:
            return None if isinstance(result, Mapping) else _Failure(0, _REPORTED, "reported")
        positions = {r.sequence_number: i for i, r in enumerate(records)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if identifier not in positions:
                # Like Lambda: an unusable response fails the whole batch.
                detail = f"invalid batchItemFailures entry {failure!r}"
                return _Failure(0, _REPORTED, "invalid_response", detail)
            indexes.append(positions[identifier])
        return _Failure(min(indexes), _REPORTED, "reported")

    def _split_expired(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        limit = self._options.maximum_record_age
        if limit == -1:
            return records, []
        oldest_allowed = self._clock.time() - limit
        expired = [r for r in records if r.approximate_creation_time.timestamp() < oldest_allowed]
        if not expired:
            return records, []
        gone = {id(r) for r in expired}
        return [r for r in records if id(r) not in gone], expired

    async def _give_up(
        self,
        shard_id: str,
        records: list[Record],
        condition: Condition,
        attempts: int,
        error: str | None,
    ) -> None:
        failed = FailedBatch(
            self._stream_arn,
            shard_id,
            tuple(records),
            condition,
            attempts,
            error,
            datetime.fromtimestamp(self._clock.time(), UTC),
        )
        self._events.publish(RecordsGivenUp(shard_id, len(records), condition))
        if self._on_failure is None:
            return
        outcome = self._on_failure(failed)
        if inspect.isawaitable(outcome):
            await outcome


# -- checkpoints ----------------------------------------------------------------------


class _Checkpointer:
    """Saves a consumer's checkpoint under its name: only when it changed since the last
    save (or the load), one save at a time, publishing :class:`CheckpointSaved`."""

    __slots__ = ("_events", "_lock", "_name", "_store", "saved")

    def __init__(
        self, store: CheckpointStore, name: str, events: EventHub, loaded: Checkpoint | None
    ) -> None:
        self._store = store
        self._name = name
        self._events = events
        self._lock = asyncio.Lock()
        self.saved = loaded

    async def save(self, current: Callable[[], Checkpoint]) -> None:
        """Save ``current()``, taken once the previous save is over (so it is the newest)."""
        async with self._lock:
            checkpoint = current()
            if checkpoint == self.saved:
                return
            await self._store.save(checkpoint, name=self._name)
            self.saved = checkpoint
        self._events.publish(CheckpointSaved(checkpoint.stream_arn, self._name))

    async def save_at_exit(
        self, current: Callable[[], Checkpoint], error: BaseException | None
    ) -> None:
        """The last save of a run. Its failure is the run's error when the run ended well
        (or was cancelled); after another error, that error is the one that counts."""
        if error is None or isinstance(error, asyncio.CancelledError):
            await self.save(current)
            return
        with contextlib.suppress(DDBStreamsError, OSError):
            await self.save(current)


# -- one run --------------------------------------------------------------------------


class _Gatherer:
    """Holds each shard's batches until they are due: ``batch_size`` records gathered, the
    shard ended, the read over (:meth:`flush_all`), or ``window`` seconds of the clock
    passed since the shard's first held record (:meth:`run_timer`)."""

    __slots__ = ("_clock", "_deadlines", "_dispatch", "_held", "_size", "_wakeup", "_window")

    def __init__(
        self,
        batch_size: int,
        window: float,
        clock: Clock,
        dispatch: Callable[[list[ShardBatch[Record]]], None],
    ) -> None:
        self._size = batch_size
        self._window = window
        self._clock = clock
        self._dispatch = dispatch
        self._held: dict[str, tuple[list[ShardBatch[Record]], int]] = {}
        self._deadlines: dict[str, float] = {}
        self._wakeup = asyncio.Event()

    def add(self, batch: ShardBatch[Record]) -> None:
        shard_id = batch.shard_id
        held, count = self._held.get(shard_id, ([], 0))
        held.append(batch)
        count += len(batch.records)
        self._held[shard_id] = (held, count)
        if self._window == 0 or count >= self._size or batch.ends_shard:
            self._flush(shard_id)
        elif shard_id not in self._deadlines:
            self._deadlines[shard_id] = self._clock.monotonic() + self._window
            self._wakeup.set()

    def holds(self, shard_id: str) -> bool:
        return shard_id in self._held

    def position_before(self, shard_id: str) -> ShardStart | None:
        """Where ``shard_id``'s checkpoint stood before its held records."""
        held, _ = self._held[shard_id]
        return held[0].position_before

    def drop(self, shard_id: str) -> None:
        """Forget ``shard_id``'s held records (its shard was taken away)."""
        self._deadlines.pop(shard_id, None)
        self._held.pop(shard_id, None)

    def positions_before(self) -> dict[str, ShardStart | None]:
        """Per shard with held records, where its checkpoint stood before them."""
        return {shard_id: held[0].position_before for shard_id, (held, _) in self._held.items()}

    def flush_all(self) -> None:
        for shard_id in list(self._held):
            self._flush(shard_id)

    async def run_timer(self) -> None:
        """Dispatch what is due by the window, forever (cancelled when the pass ends)."""
        while True:
            if not self._deadlines:
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            # Deadlines are made ``window`` after now: a later one is never due earlier.
            delay = min(self._deadlines.values()) - self._clock.monotonic()
            if delay > 0:
                await self._clock.sleep(delay)
            now = self._clock.monotonic()
            for shard_id, deadline in list(self._deadlines.items()):
                if deadline <= now:
                    self._flush(shard_id)

    def _flush(self, shard_id: str) -> None:
        self._deadlines.pop(shard_id, None)
        held, _ = self._held.pop(shard_id, ([], 0))
        if held:
            self._dispatch(held)


class _Pass:
    """What exists while a consumer runs: the reader's batches gathered, queued on each
    shard's lanes and processed through the policy, and the checkpoint of what is done.

    :meth:`consume` runs every task of the pass in one task group: the intake, the lanes,
    the committer and the batching window's timer; none outlives it.
    """

    __slots__ = (
        "_checkpointer",
        "_clock",
        "_closing",
        "_dirty",
        "_gatherer",
        "_group",
        "_on_stopping",
        "_options",
        "_policy",
        "_reader",
        "_revoked",
        "_shards",
        "_stop",
        "_stopped",
        "_unprocessed",
        "_worker",
    )

    def __init__(
        self,
        reader: StreamReader[Record],
        policy: _BatchPolicy,
        checkpointer: _Checkpointer | None,
        *,
        options: ConsumerOptions,
        clock: Clock,
        stop: asyncio.Event,
        on_stopping: Callable[[], None],
        worker: GroupWorker | None = None,
    ) -> None:
        self._reader = reader
        self._policy = policy
        # Either a store's checkpointer (one process) or a group's worker (leases).
        self._checkpointer = checkpointer
        self._worker = worker
        self._revoked: set[str] = set()
        self._unprocessed: dict[str, ShardStart | None] = {}
        self._stopped: dict[str, Processed | None] = {}
        self._options = options
        self._clock = clock
        self._stop = stop
        self._on_stopping = on_stopping
        self._shards: dict[str, _ShardWork] = {}
        self._dirty = asyncio.Event()
        self._closing = False
        self._group: asyncio.TaskGroup | None = None
        self._gatherer = _Gatherer(
            options.batch_size, options.maximum_batching_window, clock, self._dispatch
        )

    def lag(self) -> dict[str, float]:
        """The reader's iterator age per shard (see :meth:`Consumer.lag`)."""
        return self._reader.lag()

    def checkpoint(self) -> Checkpoint:
        """The position up to which every record has been processed."""
        handed = self._reader.checkpoint()
        # Shards with records handed but not processed yet: held for the batching window,
        # or queued and running in the lanes (which are further back).
        behind: dict[str, ShardStart | None] = self._gatherer.positions_before()
        for shard_id, work in self._shards.items():
            if work.busy:
                behind[shard_id] = work.position()
        positions = dict(handed.positions)
        finished = set(handed.finished)
        pending = dict(handed.pending)
        for shard_id, start in behind.items():
            positions.pop(shard_id, None)
            finished.discard(shard_id)
            pending.pop(shard_id, None)
            if start is None:
                continue
            # A start with a time filter (an at_time read short of its moment) stays
            # pending: as a plain position it would lose the filter.
            if (
                start.iterator_type == "AFTER_SEQUENCE_NUMBER"
                and start.sequence_number
                and start.not_before is None
            ):
                positions[shard_id] = start.sequence_number
            else:
                pending[shard_id] = start
        # The checkpointed records' creation times, where the lanes know them (for lag).
        times = {
            shard_id: work.base_created
            for shard_id, work in self._shards.items()
            if work.base_created is not None
            and work.base is not None
            and positions.get(shard_id) == work.base.sequence_number
        }
        return Checkpoint(handed.stream_arn, positions, frozenset(finished), pending, times)

    async def consume(self) -> None:
        """Process the read until it is over, fails, or ``stop`` is set; then let the lanes
        finish (:meth:`_drain`). A failed read raises its error after the drain."""
        error: Exception | None = None
        async with asyncio.TaskGroup() as group:
            self._group = group
            committer = group.create_task(self._commit_loop(), name="ddbstreams-commit")
            timer = None
            if self._options.maximum_batching_window > 0:
                timer = group.create_task(self._gatherer.run_timer(), name="ddbstreams-window")
            try:
                await until_stopped(self._intake(), self._stop)
            except Exception as exc:
                error = exc  # the batches handed before the failure are processed first
            self._on_stopping()
            await self._drain()
            if timer is not None:
                timer.cancel()
            # Not cancelled: a save cancelled midway may land without being known to have.
            self._closing = True
            self._dirty.set()
            await committer
        if error is not None:
            raise error

    async def _intake(self) -> None:
        while True:
            batch = await self._reader.next_shard_batch(self._options.batch_size)
            if batch is None:
                self._gatherer.flush_all()
                return
            if batch.shard_id in self._revoked:
                # Handed out by the reader, yet never processed: the shard's checkpoint
                # must stay before it (the next owner reads it again).
                self._unprocessed.setdefault(batch.shard_id, batch.position_before)
            else:
                self._gatherer.add(batch)

    async def _commit_loop(self) -> None:
        """Save after batches complete (one save covers every completion before it), until
        the pass is closing; its last save is left to the caller of :meth:`consume`."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            if self._closing:
                return
            await self.save()

    async def save(self) -> None:
        """Store what is processed: the whole checkpoint in the store, or each held
        shard's position in its lease (written only where it moved)."""
        if self._checkpointer is not None:
            await self._checkpointer.save(self.checkpoint)
            return
        worker = self._worker
        assert worker is not None
        held = worker.held()
        for shard_id in [s for s in self._stopped if s not in held]:
            del self._stopped[shard_id]  # handed off: nothing asks for it any more
        writes = []
        for shard_id in held:
            processed = self.shard_checkpoint(shard_id)
            if processed is not None:
                writes.append(worker.checkpoint(shard_id, processed))
        await asyncio.gather(*writes)

    def shard_checkpoint(self, shard_id: str) -> Processed | None:
        """The lease checkpoint of what is processed of ``shard_id``: the last sequence
        number processed (with its record's creation time when known), or the start
        (``TRIM_HORIZON`` / ``LATEST``) when nothing was; None when unknown, or when the
        shard is processed to its end (the worker then writes ``SHARD_END`` once its
        children's leases exist)."""
        if shard_id in self._stopped:
            return self._stopped[shard_id]
        work = self._shards.get(shard_id)
        position: ShardPosition | None
        if work is not None and work.busy:
            position = work.position()
        elif self._gatherer.holds(shard_id):
            position = self._gatherer.position_before(shard_id)
        elif shard_id in self._unprocessed:
            position = self._unprocessed[shard_id]
        else:
            position = self._reader.position(shard_id)
        if not isinstance(position, ShardStart):
            return None
        if position.iterator_type == "AFTER_SEQUENCE_NUMBER" and position.sequence_number:
            base = work.base if work is not None else None
            created = work.base_created if work is not None and base == position else None
            return Processed(position.sequence_number, created)
        if position.iterator_type in ("TRIM_HORIZON", "LATEST") and position.not_before is None:
            return Processed(position.iterator_type)
        return None

    # -- the shard host of a group worker (ShardHost) -----------------------------------------

    def start_shard(self, shard_id: str, start: ShardStart, parent_shard_id: str | None) -> None:
        """Worker: read and process ``shard_id`` from ``start`` (its lease is held)."""
        self._revoked.discard(shard_id)
        self._unprocessed.pop(shard_id, None)
        self._stopped.pop(shard_id, None)
        self._reader.assign(shard_id, start, parent_shard_id=parent_shard_id)

    async def stop_shard(self, shard_id: str) -> Processed | None:
        """Worker: start no further batch of ``shard_id``, give the one in flight up to
        ``stop_timeout`` (then abandon it: not checkpointed), stop reading the shard, and
        return the lease checkpoint of what was processed."""
        self._revoked.add(shard_id)
        work = self._shards.get(shard_id)
        if work is not None:
            for lane in work.lanes:
                lane.jobs.put_nowait(None)
            tasks = [lane.task for lane in work.lanes if lane.task and not lane.task.done()]
            if tasks:
                late = await wait_tasks(tasks, within=self._options.stop_timeout, clock=self._clock)
                for task in late:
                    task.cancel()
                if late:
                    await asyncio.wait(late)
        checkpoint = self.shard_checkpoint(shard_id)
        # Pinned: a save running while the shard is being released must not fall back on
        # the reader's position, which counts the held records dropped here as handed.
        self._stopped[shard_id] = checkpoint
        self._gatherer.drop(shard_id)
        self._shards.pop(shard_id, None)
        await self._reader.release(shard_id)
        self._unprocessed.pop(shard_id, None)
        return checkpoint

    def _dispatch(self, held: list[ShardBatch[Record]]) -> None:
        """Queue ``held`` (one shard's batches, in order) on the shard's lanes, in batches
        of at most ``batch_size``, without waiting: the intake serves every shard, so a
        stuck shard is paused in the reader instead."""
        first = held[0]
        work = self._work_for(first)
        if not work.busy:
            work.base = first.position_before
        records = [r for batch in held for r in batch.records]
        ends_shard = held[-1].ends_shard
        size = self._options.batch_size
        # An empty end-of-shard batch goes through a lane too, so it finishes the shard only
        # once the lane has waited for the parent shard and run everything queued before it.
        chunks = [records[i : i + size] for i in range(0, len(records), size)] or [[]]
        for index, chunk in enumerate(chunks):
            self._queue(work, chunk, ends_shard=ends_shard and index == len(chunks) - 1)
        if work.queued >= _QUEUED_PER_LANE * len(work.lanes):
            self._reader.pause(work.shard_id)
        if ends_shard:
            for lane in work.lanes:
                lane.jobs.put_nowait(None)

    def _work_for(self, first: ShardBatch[Record]) -> _ShardWork:
        work = self._shards.get(first.shard_id)
        if work is not None:
            return work
        assert self._group is not None
        work = self._shards[first.shard_id] = _ShardWork(first.shard_id, first.parent_shard_id)
        parent = self._shards.get(first.parent_shard_id or "")
        for index in range(self._options.parallelization_factor):
            lane = _Lane()
            lane.task = self._group.create_task(
                self._run_lane(lane, work, parent),
                name=f"ddbstreams-lane {first.shard_id}/{index}",
            )
            work.lanes.append(lane)
        return work

    def _queue(self, work: _ShardWork, records: list[Record], *, ends_shard: bool) -> None:
        parts = self._split(records) or [(0, [])]
        sequence_number = records[-1].sequence_number if records else None
        created = records[-1].approximate_creation_time.timestamp() if records else None
        segment = _Segment(
            sequence_number, ends_shard, len(parts), single=len(parts) == 1, last_created=created
        )
        work.segments.append(segment)
        for lane_index, part in parts:
            work.lanes[lane_index].jobs.put_nowait(_Job(part, segment))
        work.queued += len(parts)

    def _split(self, records: list[Record]) -> list[tuple[int, list[Record]]]:
        """Records per lane, by item key, keeping stream order within each lane."""
        factor = self._options.parallelization_factor
        if not records:
            return []
        if factor == 1:
            return [(0, records)]
        lanes: dict[int, list[Record]] = {}
        for record in records:
            index = hash(_key_of(record)) % factor
            lanes.setdefault(index, []).append(record)
        return sorted(lanes.items())

    async def _run_lane(self, lane: _Lane, work: _ShardWork, parent: _ShardWork | None) -> None:
        """Run the lane's batches in order. States: waiting for the parent shard to be fully
        processed -> running batches -> done (end of shard, or stopping: no new batch starts)."""
        # The parent's records come first for every item: wait until it is processed.
        if (
            parent is not None
            and not parent.finished.is_set()
            and not await until_stopped(parent.finished.wait(), self._stop)
        ):
            return
        while not self._stop.is_set():
            job = await lane.jobs.get()
            if job is None or self._stop.is_set() or work.shard_id in self._revoked:
                return
            if self._worker is not None and not self._worker.holds(work.shard_id):
                # The lease may be another worker's by now: start no batch of it.
                return
            work.queued -= 1
            if work.queued < _QUEUED_PER_LANE * len(work.lanes):
                self._reader.resume(work.shard_id)
            segment = job.segment

            def progress(sequence_number: str, segment: _Segment = segment) -> None:
                if segment.single:
                    segment.done_through = sequence_number
                    self._dirty.set()

            if await self._policy.process(work.shard_id, job.records, progress):
                self._complete(work, segment)

    def _complete(self, work: _ShardWork, segment: _Segment) -> None:
        if work.complete(segment):
            self._dirty.set()
        if work.finished.is_set() and not work.busy and self._worker is not None:
            assert self._group is not None
            self._group.create_task(self._worker.finish_shard(work.shard_id))
        if work.finished.is_set() and not work.busy:
            # Fully processed: the reader's checkpoint covers it from now on.
            self._shards.pop(work.shard_id, None)

    async def _drain(self) -> None:
        """Let the lanes finish. At the end of the read, everything handed is processed;
        when stopping (then, or meanwhile) in-flight batches get ``stop_timeout`` seconds
        of the clock, and no new batch starts; what still runs then is abandoned."""
        lanes = [lane for work in self._shards.values() for lane in work.lanes]
        for lane in lanes:
            lane.jobs.put_nowait(None)
        tasks = [lane.task for lane in lanes if lane.task is not None and not lane.task.done()]
        if not tasks:
            return
        if not self._stop.is_set() and await until_stopped(asyncio.wait(tasks), self._stop):
            return
        still_running = await wait_tasks(
            tasks, within=self._options.stop_timeout, clock=self._clock
        )
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running)


# -- the consumer ---------------------------------------------------------------------


class Consumer:
    """Runs ``handler`` over a stream with checkpoints in ``store``.

    ``stream`` is a stream ARN or a source table name. ``store`` defaults to a SQLite file
    ``ddbstreams-checkpoints.sqlite`` in the working directory; ``name`` is the application's
    name (default ``"default"``): the store keeps this consumer's checkpoint under it, so
    several applications can share one store. ``filters`` are Lambda filter patterns (dicts
    or JSON strings); records that match none are skipped but still checkpointed.
    ``on_failure`` receives a :class:`FailedBatch` for records given up on (a callable, or
    a :class:`JsonLinesDestination`). Options: :class:`ConsumerOptions` or its fields as
    keyword arguments. ``follow=False`` makes a run a single pass: it processes what the
    stream holds when it starts, checkpoints it, and returns. ``parser`` is the reader's
    (records must be :class:`Record` s; ``RawParser()`` keeps DynamoDB JSON). Every wait
    and every duration is on ``clock``.

    Events: the consumer owns one :class:`~ddbstreams.EventHub`; its reader publishes there,
    and so does the consumer (:class:`~ddbstreams.BatchHandled`, ``BatchFailed``,
    ``RecordsGivenUp``, ``CheckpointSaved``, ``ConsumerStarted``). ``on_event`` receives
    them all; :meth:`events` iterates them; they are logged on the ``ddbstreams`` logger.

    :meth:`run` returns when :meth:`stop` is called or the read is over (a single pass done,
    a disabled stream fully processed); it raises the reader's errors (unknown stream,
    trimmed checkpoint under ``on_trimmed="raise"``, ...) once the batches handed before
    the error are processed, and store errors. Cancelling :meth:`run` abandons in-flight
    batches without checkpointing them, and saves the checkpoint of what was processed.
    See :class:`ConsumerLifecycle` for its states.
    """

    def __init__(
        self,
        stream: str,
        handler: Handler,
        *,
        store: CheckpointStore | None = None,
        name: str = "default",
        group: str | None = None,
        worker_id: str | None = None,
        group_options: GroupOptions | None = None,
        filters: Sequence[Mapping[str, Any] | str] | RecordFilter | None = None,
        on_failure: FailureDestination | None = None,
        options: ConsumerOptions | None = None,
        follow: bool = True,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: StreamsClient | None = None,
        parser: Parser[Record] | None = None,
        reader_options: ReaderOptions | None = None,
        on_event: Callable[[Event], None] | None = None,
        clock: Clock | None = None,
        **option_fields: Any,
    ) -> None:
        _check_arguments(handler, name, client, endpoint_url, region_name)
        self.options = _options(options, option_fields)
        if group is not None:
            name = _check_group(group, name, store=store, follow=follow, options=self.options)
        self._stream = stream
        self._handler = handler
        self._group = group
        self._worker_id = worker_id or default_worker_id()
        self._group_options = group_options or GroupOptions()
        self._store = store if store is not None else SQLiteCheckpointStore(DEFAULT_STORE_PATH)
        self._name = name
        self._filter = _record_filter(filters)
        self._on_failure = on_failure
        self._follow = follow
        self._client = client
        self._owns_client = client is None
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
        }
        self._parser = parser
        self._reader_options = reader_options or ReaderOptions()
        self._clock = clock or SystemClock()
        self._events = EventHub(on_event)
        self._events.listen(log_event)
        self._lifecycle = ConsumerLifecycle.IDLE
        self._idle = asyncio.Event()
        self._idle.set()
        self._stop = asyncio.Event()
        self._stop_requested = False
        self._stream_arn: str | None = None
        self._pass: _Pass | None = None
        self._worker: GroupWorker | None = None
        self._checkpointer: _Checkpointer | None = None
        self._saved: Checkpoint | None = None

    @property
    def lifecycle(self) -> ConsumerLifecycle:
        return self._lifecycle

    @property
    def name(self) -> str:
        return self._name

    @property
    def follow(self) -> bool:
        """False for a single pass (see the class)."""
        return self._follow

    @property
    def group(self) -> str | None:
        """The worker group this consumer is a worker of (its lease table), if any."""
        return self._group

    @property
    def worker_id(self) -> str:
        """This consumer's id as a worker of its group."""
        return self._worker_id

    def leases(self) -> frozenset[str]:
        """The shards whose leases this worker holds now (empty outside a group)."""
        worker = self._worker
        return worker.held() if worker is not None else frozenset()

    def lag(self) -> dict[str, float]:
        """Per shard being read now, its iterator age: seconds between now and the creation
        of the newest record read from it, 0 for a shard that is caught up (see
        :meth:`StreamReader.lag`). Empty while the consumer is not running."""
        consumed = self._pass
        if consumed is None:
            return {}
        try:
            return consumed.lag()
        except RuntimeError:  # the run is ending: its reader is being stopped
            return {}

    @property
    def heartbeat_fresh(self) -> bool:
        """In a group: whether this worker renewed its heartbeat within the failover time
        (it may start batches of its leases). False outside a group or while not joined."""
        worker = self._worker
        return worker is not None and worker.heartbeat_fresh

    @property
    def stream_arn(self) -> str:
        if self._stream_arn is None:
            raise RuntimeError("the consumer has not started")
        return self._stream_arn

    def checkpoint(self) -> Checkpoint:
        """The position up to which every record has been processed (what the store gets)."""
        if self._pass is not None:
            return self._pass.checkpoint()
        if self._saved is None:
            raise RuntimeError("the consumer has not started")
        return self._saved

    def events(self) -> AsyncIterator[Event]:
        """Iterate the events of the reader and of the consumer from now on, until the
        current (or next) :meth:`run` returns.

        Events are kept in a bounded buffer (the reader options' ``event_buffer``); a slow
        iterator loses the oldest ones rather than slowing the consumer down.
        """
        return aiter(self._events.subscribe(self._reader_options.event_buffer))

    async def save_checkpoint(self) -> None:
        """Save the checkpoint of what has been processed so far, now (unless the store has
        it already), and return once it is stored.

        For a handler that must know that everything before its batch is durable before it
        acts (``ddbstreams tail --checkpoint`` saves this way before printing a batch).
        Raises RuntimeError before the consumer started, and what the store raises.
        """
        if self._pass is None:
            raise RuntimeError("the consumer has not started")
        await self._pass.save()

    async def run(self) -> None:
        """Consume until :meth:`stop` is called or the read is over (see the class).

        May be called again after it returned: it resumes from the store's checkpoint.
        """
        if self._lifecycle is not ConsumerLifecycle.IDLE:
            raise RuntimeError("the consumer is already running")
        self._set_lifecycle(ConsumerLifecycle.STARTING)
        try:
            await self._run()
        finally:
            # A stop ends this run only; the next run() runs until it is stopped again.
            self._stop.clear()
            self._stop_requested = False
            self._pass = None
            self._events.end_subscriptions()
            try:
                if self._owns_client and self._client is not None:
                    client, self._client = self._client, None
                    await asyncio.shield(client.close())
            finally:
                self._set_lifecycle(ConsumerLifecycle.IDLE)

    def request_stop(self) -> None:
        """Ask :meth:`run` to stop as :meth:`stop` does, without waiting for it: for a
        handler (which :meth:`stop` would wait for) or a signal handler. Idempotent."""
        self._stop.set()
        self._stop_requested = True
        if self._lifecycle is ConsumerLifecycle.RUNNING:
            self._set_lifecycle(ConsumerLifecycle.STOPPING)

    async def stop(self) -> None:
        """Stop taking new records, let in-flight batches finish (up to ``stop_timeout``),
        save the checkpoint of what was processed, and wait for :meth:`run` to return.

        Idempotent. Called before :meth:`run`, it makes that run return at once. A blocking
        handler still running at ``stop_timeout`` is abandoned: its batch is not
        checkpointed (it is delivered again on the next run, so any side effects it had
        half done must be safe to repeat), and it keeps running in a daemon thread until it
        returns by itself or the process exits; it never keeps the process alive.
        """
        self.request_stop()
        await self._idle.wait()

    async def close(self) -> None:
        """Close the checkpoint store and end every event subscription."""
        self._events.close()
        await self._store.close()

    def _set_lifecycle(self, lifecycle: ConsumerLifecycle) -> None:
        self._lifecycle = lifecycle
        if lifecycle is ConsumerLifecycle.IDLE:
            self._idle.set()
        else:
            self._idle.clear()

    async def _run(self) -> None:
        """STARTING: resolve the stream, load the checkpoint, start the reader; then run a
        pass over it (RUNNING, STOPPING)."""
        if self._client is None:
            self._client = StreamsClient(**self._client_args)
        self._stream_arn = stream_arn = await self._client.resolve_stream(self._stream)
        if isinstance(self._handler, _LambdaAdapter):
            self._handler.bind(stream_arn, self._clock)
        if self._group is not None:
            await self._run_in_group(self._group, stream_arn)
            return
        stored = await self._store.load(stream_arn, name=self._name)
        start: StartPosition = stored if stored is not None else self.options.starting_position
        reader = StreamReader(
            stream_arn,
            start=start,
            follow=self._follow,
            client=self._client,
            parser=self._parser,
            options=self._reader_options,
            event_hub=self._events,
            clock=self._clock,
        )
        checkpointer = _Checkpointer(self._store, self._name, self._events, stored)
        async with reader:
            consumed = self._begin(reader, checkpointer)
            self._events.publish(ConsumerStarted(stream_arn, self._name, start))
            try:
                await self._consume(consumed, checkpointer)
            finally:
                self._saved = consumed.checkpoint()

    async def _run_in_group(self, group: str, stream_arn: str) -> None:
        """Work in ``group`` until stopped. When the stream ends (disabled and processed to
        its end), a consumer configured by table name goes on with the table's new stream,
        if it has one (:class:`StreamReplaced`), from its start; otherwise the run is over."""
        assert self._client is not None
        while await self._work_in_group(group, stream_arn) and not self._stop_requested:
            replaced_by = await self._client.resolve_stream(self._stream)
            if is_table_name(self._stream) and replaced_by != stream_arn:
                self._events.publish(StreamReplaced(group, stream_arn, replaced_by))
                self._stop.clear()
                stream_arn = self._stream_arn = replaced_by
                continue
            return

    async def _work_in_group(self, group: str, stream_arn: str) -> bool:
        """Join ``group`` on ``stream_arn``, then process the shards whose leases this worker
        holds until stopped or the stream ended (True); then hand every lease off
        (in-flight batches finish, checkpoint, release)."""
        assert self._client is not None
        table = LeaseTable(self._client.tables, group, clock=self._clock)
        worker = GroupWorker(
            table,
            self._client,
            stream_arn,
            worker_id=self._worker_id,
            options=self._group_options,
            from_latest=isinstance(self.options.starting_position, Latest),
            events=self._events,
            clock=self._clock,
        )
        await worker.join()
        reader = StreamReader(
            stream_arn,
            follow=True,
            assigned=True,
            client=self._client,
            parser=self._parser,
            options=self._reader_options,
            event_hub=self._events,
            clock=self._clock,
        )
        self._worker = worker
        try:
            async with reader:
                consumed = self._begin(reader, None, worker)
                worker.attach(consumed)
                start = self.options.starting_position
                self._events.publish(ConsumerStarted(stream_arn, self._name, start))
                try:
                    await _consume_in_group(consumed, worker, self._stop)
                finally:
                    self._saved = consumed.checkpoint()
        finally:
            self._worker = None
            await asyncio.shield(worker.aclose())
        return worker.stream_ended.is_set()

    def _begin(
        self,
        reader: StreamReader[Record],
        checkpointer: _Checkpointer | None,
        worker: GroupWorker | None = None,
    ) -> _Pass:
        policy = _BatchPolicy(
            self.options,
            self._handler,
            self._filter,
            self._on_failure,
            stream_arn=reader.stream_arn,
            clock=self._clock,
            events=self._events,
            stop=self._stop,
        )
        self._checkpointer = checkpointer
        self._pass = _Pass(
            reader,
            policy,
            checkpointer,
            options=self.options,
            clock=self._clock,
            stop=self._stop,
            on_stopping=lambda: self._stopping(worker),
            worker=worker,
        )
        self._set_lifecycle(
            ConsumerLifecycle.STOPPING if self._stop.is_set() else ConsumerLifecycle.RUNNING
        )
        return self._pass

    def _stopping(self, worker: GroupWorker | None) -> None:
        self._set_lifecycle(ConsumerLifecycle.STOPPING)
        if worker is not None:
            worker.stop_taking()

    async def _consume(self, consumed: _Pass, checkpointer: _Checkpointer) -> None:
        """Run the pass, then save the checkpoint however it ended."""
        try:
            await consumed.consume()
        except BaseExceptionGroup as group:
            error = _first_leaf(group)
            await checkpointer.save_at_exit(consumed.checkpoint, error)
            raise error from None
        except BaseException as error:
            await checkpointer.save_at_exit(consumed.checkpoint, error)
            raise
        await checkpointer.save_at_exit(consumed.checkpoint, None)


async def _consume_in_group(consumed: _Pass, worker: GroupWorker, stop: asyncio.Event) -> None:
    """Run the pass with the worker's loops beside it until ``stop`` is set or the stream
    ended (which sets it); then hand every lease off before the loops stop, so that leases
    stay renewed until they are released. Cancellation hands off too (shielded)."""

    async def stop_at_stream_end() -> None:
        await worker.stream_ended.wait()
        stop.set()

    try:
        async with asyncio.TaskGroup() as group:
            loops = group.create_task(worker.run(), name="ddbstreams-worker")
            watch = group.create_task(stop_at_stream_end(), name="ddbstreams-stream-end")
            try:
                await consumed.consume()
            finally:
                try:
                    await asyncio.shield(worker.leave())
                finally:
                    loops.cancel()
                    watch.cancel()
    except BaseExceptionGroup as failed:
        raise _first_leaf(failed) from None


def _record_filter(
    filters: Sequence[Mapping[str, Any] | str] | RecordFilter | None,
) -> RecordFilter | None:
    if filters is None or isinstance(filters, RecordFilter):
        return filters
    return RecordFilter.from_patterns(filters)


def _check_arguments(
    handler: Handler,
    name: str,
    client: StreamsClient | None,
    endpoint_url: str | None,
    region_name: str | None,
) -> None:
    if not callable(handler):
        raise ConfigurationError("handler must be a function taking a list of records")
    if client is not None and (endpoint_url is not None or region_name is not None):
        raise ConfigurationError("pass either client= or endpoint_url=/region_name=, not both")
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"name must be a non-empty string: {name!r}")


def _check_group(
    group: str,
    name: str,
    *,
    store: CheckpointStore | None,
    follow: bool,
    options: ConsumerOptions,
) -> str:
    """Validate a group consumer's arguments; returns its name (the group's)."""
    if not isinstance(group, str) or not group:
        raise ConfigurationError(f"group must be a non-empty string: {group!r}")
    if name not in ("default", group):
        raise ConfigurationError("in a group, the application's name is the group's: pass one")
    if store is not None:
        raise ConfigurationError(
            "a group keeps its checkpoints in its lease table: do not pass store="
        )
    if not follow:
        raise ConfigurationError(
            "a worker of a group follows the stream: follow=False is not for groups"
        )
    if not isinstance(options.starting_position, TrimHorizon | Latest):
        raise ConfigurationError(
            f"a group starts at TRIM_HORIZON or {LATEST_CHECKPOINT} (its leases say where "
            "each shard resumes)"
        )
    return group


def _options(options: ConsumerOptions | None, fields: dict[str, Any]) -> ConsumerOptions:
    base = options or ConsumerOptions()
    if not fields:
        return base
    try:
        return ConsumerOptions(**{**_option_values(base), **fields})
    except TypeError as exc:
        raise ConfigurationError(f"unknown consumer option: {exc}") from exc


def _is_async(handler: Handler) -> bool:
    """An async function, or an object whose ``__call__`` is one (it runs on the loop)."""
    call = type(handler).__call__ if not inspect.isroutine(handler) else handler
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(call)


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


def _key_of(record: Record) -> str:
    return repr(sorted((name, _hashable(value)) for name, value in record.keys.items()))


def _hashable(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    return value


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _option_values(options: ConsumerOptions) -> dict[str, Any]:
    return {name: getattr(options, name) for name in ConsumerOptions.__dataclass_fields__}
