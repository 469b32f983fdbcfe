"""Planning a read: resolve the stream, choose the shards and their starts, wire the parts.

:func:`plan_read` does what :meth:`StreamReader.start` needs before any record is
fetched — resolve the stream, check a checkpoint belongs to it, list the shards, locate an
AT/AFTER sequence number, plan the reads with lineage (an ``at_time`` start skips the
shards that ended before its moment and filters the rest), apply the trimming policy to a
checkpoint's vanished shards — and returns the :class:`ReadParts` of a running reader.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from typing import Generic, TypeVar

from ddbstreams._clock import Clock
from ddbstreams._errors import CheckpointError
from ddbstreams._events import EventHub, RecordsTrimmed
from ddbstreams.client._streams import StreamsClient
from ddbstreams.lineage._graph import LineageTracker, ShardGraph, plan_reads
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import (
    AfterSequence,
    AtSequence,
    Checkpoint,
    StartPosition,
    creation_time_resolution,
)
from ddbstreams.reading._calls import StreamCalls
from ddbstreams.reading._coordinator import StreamCoordinator
from ddbstreams.reading._delivery import Delivery
from ddbstreams.reading._fetcher import FetchContext, LagBoard, Pauses
from ddbstreams.reading._locate import locate_record
from ddbstreams.reading._options import ReaderOptions
from ddbstreams.reading._schedule import PollSchedule
from ddbstreams.reading._state import ReadState

__all__ = ["ReadParts", "ReadRequest", "plan_read"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ReadRequest(Generic[T]):
    """What the caller asked a reader for."""

    stream: str
    start: StartPosition
    follow: bool
    assigned: bool
    options: ReaderOptions
    parser: Parser[T]
    clock: Clock
    events: EventHub


@dataclass(slots=True)
class ReadParts(Generic[T]):
    """The parts of a running reader. ``task`` runs the coordinator (set by the reader)."""

    stream_arn: str
    calls: StreamCalls
    state: ReadState
    delivery: Delivery[T]
    coordinator: StreamCoordinator[T]
    lag: LagBoard
    pauses: Pauses
    schedule: PollSchedule
    task: asyncio.Task[None] | None = None


async def plan_read(client: StreamsClient, request: ReadRequest[T]) -> ReadParts[T]:
    """Resolve the stream and plan the read (see the module docstring).

    Raises the reader's start errors: unknown stream or table, malformed ARN, unusable
    position, a checkpoint of another stream, trimmed checkpoint shards under
    ``on_trimmed="raise"``.
    """
    stream_arn = await client.resolve_stream(request.stream)
    initial = request.start
    if isinstance(initial, Checkpoint) and initial.stream_arn != stream_arn:
        raise CheckpointError(
            f"the checkpoint belongs to stream {initial.stream_arn}, not to {stream_arn}"
        )
    options = request.options
    pass_started_at = request.clock.time()
    calls = StreamCalls(
        client,
        stream_arn,
        options=options,
        clock=request.clock,
        events=request.events,
        follow=request.follow,
    )
    tracker = None
    disabled = False
    if request.assigned:
        state = ReadState(stream_arn, {})
    else:
        description = await calls.describe()
        disabled = description.stream_status in ("DISABLING", "DISABLED")
        graph = ShardGraph.from_shards(description.shards)
        holder = None
        if isinstance(initial, AtSequence | AfterSequence):
            candidates = graph.shards_holding(initial.sequence_number)
            holder = await locate_record(client, stream_arn, candidates, initial.sequence_number)
        # The resolution makes at_time skip shards with the rounding its filter uses.
        resolution = creation_time_resolution(stream_arn)
        plan = plan_reads(graph, initial, holder=holder, time_resolution=resolution)
        checkpoint = None
        if isinstance(initial, Checkpoint):
            checkpoint = settle_checkpoint(
                initial, plan.missing_checkpoint_shards, options, request.events
            )
        state = ReadState(stream_arn, plan.starts, checkpoint)
        tracker = LineageTracker(graph, plan)
    delivery: Delivery[T] = Delivery(state, options.buffer_pages)
    lag = LagBoard()
    pauses = Pauses()
    # Nothing the tasks hold refers back to the reader, so an abandoned reader is
    # collected (and warns) instead of running on unseen.
    caught_up = functools.partial(_caught_up, pass_started_at + options.creation_time_slack)
    schedule = PollSchedule(options.poll_schedule_budget())
    context = FetchContext(
        calls, request.parser, delivery.buffer, state, lag, pauses, caught_up, schedule
    )
    coordinator = StreamCoordinator(context, tracker, disabled=disabled)
    return ReadParts(stream_arn, calls, state, delivery, coordinator, lag, pauses, schedule)


def settle_checkpoint(
    checkpoint: Checkpoint, missing: frozenset[str], options: ReaderOptions, events: EventHub
) -> Checkpoint:
    """Apply the trimming policy to checkpoint shards the service no longer lists."""
    # A finished shard trimmed away lost nothing; an unfinished one did.
    lost = missing & (set(checkpoint.positions) | set(checkpoint.pending))
    if lost and options.on_trimmed == "raise":
        raise CheckpointError(
            f"the checkpoint names unfinished shards no longer in stream "
            f"{checkpoint.stream_arn} (trimmed after 24 hours?): {', '.join(sorted(lost))}"
        )
    for shard_id in sorted(lost):
        events.publish(
            RecordsTrimmed(shard_id, checkpoint.positions.get(shard_id), shard_gone=True)
        )
    # Forget what the service has forgotten, so checkpoints do not grow forever.
    return Checkpoint(
        checkpoint.stream_arn,
        {k: v for k, v in checkpoint.positions.items() if k not in missing},
        checkpoint.finished - missing,
        {k: v for k, v in checkpoint.pending.items() if k not in missing},
    )


def _caught_up(moment: float, last_creation_time: float | None) -> bool:
    """Whether a single pass has caught up: the last record read was created after the
    pass began (plus the clock-skew allowance)."""
    return last_creation_time is not None and last_creation_time > moment
