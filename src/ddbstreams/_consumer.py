"""Consumers: run a batch handler over a stream with durable checkpoints and Lambda's controls.

A :class:`Consumer` reads a stream in follow mode and calls a handler with batches of
records from one shard at a time, in order, checkpointing after the handler succeeds.
Options carry the names and meanings of a Lambda event source mapping for DynamoDB
Streams (batch size, batching window, retries, record age, bisect on error, partial batch
responses, on-failure destination, parallelization factor, filters).

Structure:

* the intake (``Consumer._intake``) takes :class:`~ddbstreams.ShardBatch` es from the reader,
  gathers them per shard up to the batch size or the batching window, and hands each batch
  to the shard's lanes (``parallelization_factor`` of them; a record's lane is chosen by
  its item key, so one item's changes never run in two batches at once);
* a lane (``_Lane``) runs its batches one after another, each through the error policy
  (``_process``);
* per shard, ``_ShardWork`` keeps the batches in stream order and the position up to which
  every record is processed; a child shard's lanes wait until its parent is fully processed;
* a committer task writes the consumer's checkpoint to the store after batches complete.

The checkpoint only ever covers records whose batch completed (handled, filtered out, or
given up on and sent to the on-failure destination); records of batches in flight at a
crash are delivered again on restart, never skipped.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import inspect
import logging
import os
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from ddbstreams._backoff import exponential_delay
from ddbstreams._client import StreamsClient
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._decode import dumps_plain_json
from ddbstreams._encode import encode_item
from ddbstreams._errors import ConfigurationError
from ddbstreams._events import ReaderEvent
from ddbstreams._filter import RecordFilter
from ddbstreams._model import Record
from ddbstreams._position import (
    TRIM_HORIZON,
    Checkpoint,
    Latest,
    ShardStart,
    TrimHorizon,
)
from ddbstreams._store import CheckpointStore, SQLiteCheckpointStore
from ddbstreams._tasks import first_error, first_of, run_in_daemon_thread
from ddbstreams.reading import ReaderOptions, ShardBatch, StreamReader

__all__ = [
    "Consumer",
    "ConsumerOptions",
    "FailedBatch",
    "Handler",
    "JsonLinesDestination",
    "LambdaContext",
    "lambda_handler",
    "record_to_lambda",
]

log = logging.getLogger("ddbstreams")

Handler = Callable[[list[Record]], Any]
"""A batch handler: a plain or async function taking a list of records of one shard.

It returns ``None`` on success. With ``report_batch_item_failures`` it may return Lambda's
partial batch response, ``{"batchItemFailures": [{"itemIdentifier": "<sequence number>"}]}``:
the records before the first failed one are done, the rest is retried. Raising an
exception fails the whole batch.
"""

FailureDestination = Callable[["FailedBatch"], Awaitable[None] | None]

DEFAULT_STORE_PATH = "ddbstreams-checkpoints.sqlite"


@dataclass(frozen=True, slots=True)
class ConsumerOptions:
    """Lambda's event source mapping options, with their names and meanings.

    - ``batch_size`` (BatchSize, default 100, 1 to 10,000): most records per handler call.
    - ``maximum_batching_window`` (MaximumBatchingWindowInSeconds, default 0): how long to
      gather records of a shard before calling the handler with fewer than ``batch_size``.
    - ``starting_position`` (StartingPosition): TRIM_HORIZON or LATEST, used when the store
      holds no checkpoint for the stream.
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
    - ``retry_delay`` / ``retry_max_delay`` apply per batch (and per bisected half): one
      record's failures never lengthen another record's wait.
    - ``stop_timeout``: how long :meth:`Consumer.stop` lets in-flight handler calls finish
      before abandoning them (not checkpointed: they are delivered again on restart). A
      blocking handler still running then goes on in a daemon thread until it returns;
      it does not keep the process alive.
    """

    batch_size: int = 100
    maximum_batching_window: float = 0.0
    starting_position: TrimHorizon | Latest = TRIM_HORIZON
    maximum_retry_attempts: int = -1
    maximum_record_age: float = -1
    bisect_batch_on_error: bool = False
    report_batch_item_failures: bool = False
    parallelization_factor: int = 1
    retry_delay: float = 0.5
    retry_max_delay: float = 30.0
    stop_timeout: float = 30.0

    def __post_init__(self) -> None:
        if not 1 <= self.batch_size <= 10_000:
            raise ConfigurationError("batch_size must be between 1 and 10000")
        if not 0 <= self.maximum_batching_window <= 300:
            raise ConfigurationError("maximum_batching_window must be between 0 and 300 seconds")
        if not isinstance(self.starting_position, TrimHorizon | Latest):
            raise ConfigurationError("starting_position must be TRIM_HORIZON or LATEST")
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
    """The parts of Lambda's context object a handler commonly uses."""

    function_name: str = "ddbstreams-consumer"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 0
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    invoked_function_arn: str = ""
    deadline: float = field(default_factory=lambda: time.monotonic() + 900.0)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def lambda_handler(
    function: Callable[[dict[str, Any], LambdaContext], Any], *, stream_arn: str | None = None
) -> Handler:
    """Adapt a Lambda function ``handler(event, context)`` into a consumer handler.

    The function receives ``{"Records": [...]}`` in Lambda's DynamoDB event shape (with
    ``eventSourceARN`` set to the stream being consumed) and a :class:`LambdaContext`; its
    return value (e.g. a partial batch response) is passed on.
    """
    return _LambdaAdapter(function, stream_arn)


class _LambdaAdapter:
    __slots__ = ("__name__", "function", "stream_arn")

    def __init__(
        self, function: Callable[[dict[str, Any], LambdaContext], Any], stream_arn: str | None
    ) -> None:
        self.function = function
        self.stream_arn = stream_arn
        self.__name__ = getattr(function, "__name__", "lambda_handler")

    def __call__(self, records: list[Record]) -> Any:
        event = {"Records": [record_to_lambda(r, self.stream_arn) for r in records]}
        return self.function(event, LambdaContext())


# -- per-shard bookkeeping ------------------------------------------------------------


@dataclass(slots=True)
class _Segment:
    """One reader batch of a shard, done when every lane's part of it is done."""

    last_sequence_number: str | None
    ends_shard: bool
    parts_left: int


class _ShardWork:
    """A shard's batches in stream order and the position all of whose records are done.

    ``base`` is the shard's checkpoint entry before its oldest unfinished segment (AFTER a
    sequence number, or the start of a shard that has handed nothing), or ``None`` when the
    checkpoint did not name the shard. ``queued`` counts the jobs waiting in its lanes: the
    intake pauses the shard in the reader while it is at ``_QUEUED_PER_LANE`` per lane, so
    a shard whose handler is stuck holds a bounded number of records and stops no other
    shard.
    """

    __slots__ = ("base", "finished", "lanes", "parent", "queued", "segments", "shard_id")

    def __init__(self, shard_id: str, parent: str | None) -> None:
        self.shard_id = shard_id
        self.parent = parent
        self.segments: deque[_Segment] = deque()
        self.base: ShardStart | None = None
        self.finished = asyncio.Event()
        self.lanes: list[_Lane] = []
        self.queued = 0

    @property
    def busy(self) -> bool:
        return bool(self.segments)

    def complete(self, segment: _Segment) -> bool:
        """Mark a part of ``segment`` done; True if the done prefix moved."""
        segment.parts_left -= 1
        moved = False
        while self.segments and self.segments[0].parts_left == 0:
            done = self.segments.popleft()
            moved = True
            if done.last_sequence_number is not None:
                self.base = ShardStart("AFTER_SEQUENCE_NUMBER", done.last_sequence_number)
            if done.ends_shard:
                self.finished.set()
        return moved


@dataclass(slots=True)
class _Job:
    records: list[Record]
    segment: _Segment


_QUEUED_PER_LANE = 2
"""Jobs that may wait in a lane before the intake pauses the lane's shard in the reader."""


class _Lane:
    """Runs one shard's batches for one slice of its item keys, one batch at a time.

    Its queue never blocks the intake (which serves every shard); the shard's ``queued``
    count bounds it instead, through pausing the shard in the reader.
    """

    __slots__ = ("jobs", "task")

    def __init__(self) -> None:
        self.jobs: asyncio.Queue[_Job | None] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None


# -- the consumer ---------------------------------------------------------------------


class Consumer:
    """Runs ``handler`` over a stream with checkpoints in ``store``, until stopped.

    ``stream`` is a stream ARN or a source table name. ``store`` defaults to a SQLite file
    ``ddbstreams-checkpoints.sqlite`` in the working directory; ``name`` is the application's
    name (default ``"default"``): the store keeps this consumer's checkpoint under it, so
    several applications can share one store. ``filters`` are Lambda filter patterns (dicts
    or JSON strings); records that match none are skipped but still checkpointed.
    ``on_failure`` receives a :class:`FailedBatch` for records given up on (a callable, or
    a :class:`JsonLinesDestination`). Options: :class:`ConsumerOptions` or its fields as
    keyword arguments.

    :meth:`run` returns when :meth:`stop` is called or the stream is disabled and fully
    processed; it raises the reader's errors (unknown stream, trimmed checkpoint under
    ``on_trimmed="raise"``, ...) and store errors. Cancelling :meth:`run` abandons in-flight
    batches without checkpointing them.
    """

    def __init__(
        self,
        stream: str,
        handler: Handler,
        *,
        store: CheckpointStore | None = None,
        name: str = "default",
        filters: Sequence[Mapping[str, Any] | str] | RecordFilter | None = None,
        on_failure: FailureDestination | None = None,
        options: ConsumerOptions | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        client: StreamsClient | None = None,
        reader_options: ReaderOptions | None = None,
        on_event: Callable[[ReaderEvent], None] | None = None,
        clock: Clock | None = None,
        **option_fields: Any,
    ) -> None:
        if not callable(handler):
            raise ConfigurationError("handler must be a function taking a list of records")
        try:
            base = options or ConsumerOptions()
            self.options = (
                ConsumerOptions(**{**_option_values(base), **option_fields})
                if option_fields
                else base
            )
        except TypeError as exc:
            raise ConfigurationError(f"unknown consumer option: {exc}") from exc
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise ConfigurationError("pass either client= or endpoint_url=/region_name=, not both")
        self._stream = stream
        self._handler = handler
        self._handler_is_async = inspect.iscoroutinefunction(handler)
        self._store = store if store is not None else SQLiteCheckpointStore(DEFAULT_STORE_PATH)
        if not isinstance(name, str) or not name:
            raise ConfigurationError(f"name must be a non-empty string: {name!r}")
        self._name = name
        if filters is None or isinstance(filters, RecordFilter):
            self._filter = filters
        else:
            self._filter = RecordFilter.from_patterns(filters)
        self._on_failure = on_failure
        self._client = client
        self._owns_client = client is None
        self._client_args: dict[str, Any] = {
            "endpoint_url": endpoint_url,
            "region_name": region_name,
        }
        self._reader_options = reader_options
        self._on_event = on_event
        self._clock = clock or SystemClock()
        self._reader: StreamReader[Record] | None = None
        self._shards: dict[str, _ShardWork] = {}
        self._dirty = asyncio.Event()
        self._stopping = asyncio.Event()
        self._running = False
        self._stream_arn: str | None = None
        self._saved: Checkpoint | None = None
        self._finished = asyncio.Event()

    @property
    def stream_arn(self) -> str:
        if self._stream_arn is None:
            raise RuntimeError("the consumer has not started")
        return self._stream_arn

    def checkpoint(self) -> Checkpoint:
        """The position up to which every record has been processed (what the store gets)."""
        reader = self._reader
        if reader is None:
            if self._saved is None:
                raise RuntimeError("the consumer has not started")
            return self._saved
        handed = reader.checkpoint()
        positions = dict(handed.positions)
        finished = set(handed.finished)
        pending = dict(handed.pending)
        for shard_id, work in self._shards.items():
            if not work.busy:
                continue  # everything handed to this consumer from the shard is processed
            positions.pop(shard_id, None)
            finished.discard(shard_id)
            pending.pop(shard_id, None)
            base = work.base
            if base is None:
                continue
            if base.iterator_type == "AFTER_SEQUENCE_NUMBER" and base.sequence_number:
                positions[shard_id] = base.sequence_number
            else:
                pending[shard_id] = base
        return Checkpoint(handed.stream_arn, positions, frozenset(finished), pending)

    async def run(self) -> None:
        """Consume until :meth:`stop` is called (or the stream is disabled and done).

        May be called again after it returned: it resumes from the store's checkpoint.
        """
        if self._running:
            raise RuntimeError("the consumer is already running")
        self._running = True
        self._finished.clear()
        self._shards = {}
        self._dirty.clear()
        try:
            if self._client is None:
                self._client = StreamsClient(**self._client_args)
            self._stream_arn = await self._client.resolve_stream(self._stream)
            if isinstance(self._handler, _LambdaAdapter) and self._handler.stream_arn is None:
                self._handler.stream_arn = self._stream_arn
            stored = await self._store.load(self._stream_arn, name=self._name)
            start = stored if stored is not None else self.options.starting_position
            reader = StreamReader(
                self._stream_arn,
                start=start,
                follow=True,
                client=self._client,
                options=self._reader_options,
                on_event=self._on_event,
                clock=self._clock,
            )
            async with reader:
                self._reader = reader
                try:
                    await self._consume(reader)
                finally:
                    self._saved = self.checkpoint()
                    self._reader = None
        finally:
            self._running = False
            # A stop() ends this run only; the next run() runs until it is stopped again.
            self._stopping.clear()
            self._finished.set()
            if self._owns_client and self._client is not None:
                client, self._client = self._client, None
                await asyncio.shield(client.close())

    async def stop(self) -> None:
        """Stop taking new records, let in-flight batches finish (up to ``stop_timeout``),
        save the checkpoint of what was processed, and wait for :meth:`run` to return.

        Idempotent. Called before :meth:`run`, it makes that run return at once; called
        after :meth:`run` returned, it does nothing. A blocking handler still running at
        ``stop_timeout`` is abandoned: its batch is not checkpointed (it is delivered again
        on the next run, so any side effects it had half done must be safe to repeat), and
        it keeps running in a daemon thread until it returns by itself or the process
        exits; it never keeps the process alive.
        """
        self._stopping.set()
        if self._running:
            await self._finished.wait()

    async def close(self) -> None:
        """Close the checkpoint store."""
        await self._store.close()

    async def _consume(self, reader: StreamReader[Record]) -> None:
        try:
            await self._consume_in_group(reader)
        except BaseExceptionGroup as group_error:
            raise first_error(group_error) from None

    async def _consume_in_group(self, reader: StreamReader[Record]) -> None:
        async with asyncio.TaskGroup() as group:
            committer = group.create_task(self._commit_loop(), name="ddbstreams-commit")
            intake = group.create_task(self._intake(reader, group), name="ddbstreams-intake")
            stopping = group.create_task(self._stopping.wait())
            await asyncio.wait({intake, stopping}, return_when=asyncio.FIRST_COMPLETED)
            stopping.cancel()
            intake.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await intake
            await self._drain()
            committer.cancel()
        await self._save()

    async def _drain(self) -> None:
        """Let the lanes finish what they hold, up to ``stop_timeout``; then abandon."""
        lanes = [lane for work in self._shards.values() for lane in work.lanes]
        for lane in lanes:
            with contextlib.suppress(asyncio.QueueFull):
                lane.jobs.put_nowait(None)
        tasks = [lane.task for lane in lanes if lane.task is not None]
        if not tasks:
            return
        if not self._stopping.is_set():
            # The stream ended (disabled and read): everything handed must be processed.
            await asyncio.gather(*tasks)
            return
        _, still_running = await asyncio.wait(tasks, timeout=self.options.stop_timeout)
        for task in still_running:
            task.cancel()
        if still_running:
            await asyncio.wait(still_running)

    async def _intake(self, reader: StreamReader[Record], group: asyncio.TaskGroup) -> None:
        options = self.options
        window = options.maximum_batching_window
        gathering: dict[str, list[ShardBatch[Record]]] = {}
        deadlines: dict[str, float] = {}
        while True:
            timeout = None
            if deadlines:
                timeout = max(0.0, min(deadlines.values()) - self._clock.monotonic())
            try:
                batch = await asyncio.wait_for(reader.next_shard_batch(options.batch_size), timeout)
            except TimeoutError:
                batch = None
                ended = False
            else:
                ended = batch is None
            if batch is not None:
                held = gathering.setdefault(batch.shard_id, [])
                held.append(batch)
                if window > 0 and batch.shard_id not in deadlines:
                    deadlines[batch.shard_id] = self._clock.monotonic() + window
            now = self._clock.monotonic()
            for shard_id in list(gathering):
                held = gathering[shard_id]
                size = sum(len(b.records) for b in held)
                due = (
                    window == 0
                    or ended
                    or size >= options.batch_size
                    or held[-1].ends_shard
                    or deadlines.get(shard_id, now) <= now
                )
                if due:
                    del gathering[shard_id]
                    deadlines.pop(shard_id, None)
                    self._dispatch(reader, held, group)
            if ended:
                return

    def _dispatch(
        self, reader: StreamReader[Record], held: list[ShardBatch[Record]], group: asyncio.TaskGroup
    ) -> None:
        """Queue ``held`` (one shard's batches) on the shard's lanes, without waiting: the
        intake serves every shard, so a stuck shard is paused in the reader instead."""
        first = held[0]
        shard_id = first.shard_id
        work = self._shards.get(shard_id)
        if work is None:
            work = self._shards[shard_id] = _ShardWork(shard_id, first.parent_shard_id)
            factor = self.options.parallelization_factor
            parent = self._shards.get(first.parent_shard_id or "")
            for index in range(factor):
                lane = _Lane()
                lane.task = group.create_task(
                    self._run_lane(reader, lane, work, parent),
                    name=f"ddbstreams-lane {shard_id}/{index}",
                )
                work.lanes.append(lane)
        if not work.busy:
            work.base = first.position_before
        records = [r for batch in held for r in batch.records]
        last = held[-1]
        sequence_number = records[-1].sequence_number if records else None
        # An empty end-of-shard batch goes through a lane too, so it finishes the shard only
        # once the lane has waited for the parent shard and run everything queued before it.
        parts = self._split(records) or [(0, [])]
        segment = _Segment(sequence_number, last.ends_shard, len(parts))
        work.segments.append(segment)
        for lane_index, part in parts:
            work.lanes[lane_index].jobs.put_nowait(_Job(part, segment))
        work.queued += len(parts)
        if work.queued >= _QUEUED_PER_LANE * len(work.lanes):
            reader.pause(shard_id)
        if last.ends_shard:
            for lane in work.lanes:
                lane.jobs.put_nowait(None)

    def _split(self, records: list[Record]) -> list[tuple[int, list[Record]]]:
        """Records per lane, by item key, keeping stream order within each lane."""
        factor = self.options.parallelization_factor
        if not records:
            return []
        if factor == 1:
            return [(0, records)]
        lanes: dict[int, list[Record]] = {}
        for record in records:
            index = hash(_key_of(record)) % factor
            lanes.setdefault(index, []).append(record)
        return sorted(lanes.items())

    def _complete(self, work: _ShardWork, segment: _Segment) -> None:
        if work.complete(segment):
            self._dirty.set()
        if work.finished.is_set() and not work.busy:
            # Fully processed: the reader's checkpoint covers it from now on.
            self._shards.pop(work.shard_id, None)

    async def _run_lane(
        self,
        reader: StreamReader[Record],
        lane: _Lane,
        work: _ShardWork,
        parent: _ShardWork | None,
    ) -> None:
        """Run the lane's batches in order. States: waiting for the parent shard to be fully
        processed -> running batches -> done (end of shard, or stopping: no new batch starts)."""
        if parent is not None and not parent.finished.is_set():
            # The parent's records come first for every item: wait until it is processed.
            await first_of(parent.finished.wait(), self._stopping.wait())
        while not self._stopping.is_set():
            job = await lane.jobs.get()
            if job is None or self._stopping.is_set():
                return
            work.queued -= 1
            if work.queued < _QUEUED_PER_LANE * len(work.lanes):
                reader.resume(work.shard_id)
            if await self._process(work.shard_id, job.records):
                self._complete(work, job.segment)

    async def _process(self, shard_id: str, records: list[Record]) -> bool:
        """Apply filters, record age, the handler and the error policy to one batch.

        Returns True once every record is handled, filtered out or sent to the on-failure
        destination; False if the consumer is stopping while the batch still fails (it is
        abandoned, not checkpointed).
        """
        options = self.options
        if self._filter is not None:
            records = [r for r in records if self._filter.matches(r)]
        # Each part carries its own attempt count, and so its own backoff: parts split off a
        # failing batch are other records, which have not failed as often.
        parts: deque[tuple[list[Record], int]] = deque([(records, 0)] if records else [])
        while parts:
            part, attempts = parts.popleft()
            part, expired = self._split_expired(part)
            if expired:
                await self._fail(shard_id, expired, "RecordAgeExceeded", attempts, None)
            if not part:
                continue
            failed_from: int | None
            try:
                result = await self._call_handler(part)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
                log.warning("handler failed on %d records of %s: %s", len(part), shard_id, error)
                failed_from = 0
            else:
                failed_from = self._first_failure(part, result)
                if failed_from is None:
                    continue
                error = "reported batch item failure"
            retry = part[failed_from:]
            if options.bisect_batch_on_error and len(retry) > 1:
                # Splitting does not use a retry (as in Lambda).
                middle = len(retry) // 2
                parts.appendleft((retry[middle:], attempts))
                parts.appendleft((retry[:middle], attempts))
                continue
            attempts += 1
            limit = options.maximum_retry_attempts
            if limit != -1 and attempts > limit:
                await self._fail(shard_id, retry, "RetryAttemptsExhausted", attempts, error)
                continue
            if self._stopping.is_set():
                return False
            delay = exponential_delay(options.retry_delay, options.retry_max_delay, attempts)
            await first_of(self._clock.sleep(delay), self._stopping.wait())
            parts.appendleft((retry, attempts))
        return True

    def _split_expired(self, records: list[Record]) -> tuple[list[Record], list[Record]]:
        limit = self.options.maximum_record_age
        if limit == -1:
            return records, []
        oldest_allowed = self._clock.time() - limit
        expired = [r for r in records if r.approximate_creation_time.timestamp() < oldest_allowed]
        if not expired:
            return records, []
        gone = {id(r) for r in expired}
        return [r for r in records if id(r) not in gone], expired

    async def _call_handler(self, records: list[Record]) -> Any:
        if self._handler_is_async:
            return await self._handler(records)
        # A plain function runs in a thread so the reader keeps fetching meanwhile; a daemon
        # thread, so that a handler still hanging after stop() cannot keep the process alive.
        result = await run_in_daemon_thread(self._handler, records, name="ddbstreams-handler")
        if inspect.isawaitable(result):
            return await result
        return result

    def _first_failure(self, records: list[Record], result: Any) -> int | None:
        """Index of the first failed record of a partial batch response, or None."""
        if not self.options.report_batch_item_failures or result is None:
            return None
        failures = result.get("batchItemFailures") if isinstance(result, Mapping) else None
        if not failures:
            return None if isinstance(result, Mapping) else 0
        positions = {r.sequence_number: i for i, r in enumerate(records)}
        indexes = []
        for failure in failures:
            identifier = failure.get("itemIdentifier") if isinstance(failure, Mapping) else None
            if identifier not in positions:
                # Like Lambda: an unusable response fails the whole batch.
                log.warning("invalid batchItemFailures entry %r: retrying the batch", failure)
                return 0
            indexes.append(positions[identifier])
        return min(indexes)

    async def _fail(
        self,
        shard_id: str,
        records: list[Record],
        condition: Literal["RetryAttemptsExhausted", "RecordAgeExceeded"],
        attempts: int,
        error: str | None,
    ) -> None:
        failed = FailedBatch(
            self.stream_arn,
            shard_id,
            tuple(records),
            condition,
            attempts,
            error,
            datetime.fromtimestamp(self._clock.time(), UTC),
        )
        log.warning("giving up on %d records of %s (%s)", len(records), shard_id, condition)
        if self._on_failure is None:
            return
        outcome = self._on_failure(failed)
        if inspect.isawaitable(outcome):
            await outcome

    async def _commit_loop(self) -> None:
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            await self._save()

    async def _save(self) -> None:
        if self._reader is None:
            return
        checkpoint = self.checkpoint()
        if checkpoint == self._saved:
            return
        await self._store.save(checkpoint, name=self._name)
        self._saved = checkpoint


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
