"""A consumer's events: reader and consumer events on one channel, logging as a subscriber."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

import ddbstreams
from ddbstreams import (
    BatchFailed,
    BatchHandled,
    CheckpointSaved,
    Consumer,
    ConsumerStarted,
    Event,
    MemoryCheckpointStore,
    Record,
    RecordsGivenUp,
    ShardStarted,
)
from ddbstreams.testing import SimulatedClock, StreamSimulator


def make(clock: SimulatedClock, sim: StreamSimulator, handler: Any, **kwargs: Any) -> Consumer:
    kwargs.setdefault("store", MemoryCheckpointStore())
    return Consumer(sim.stream_arn, handler, client=sim.client(), clock=clock, **kwargs)


async def run_until(consumer: Consumer, clock: SimulatedClock, done: Any) -> None:
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        while not done():
            await clock.sleep(0.1)
        await consumer.stop()
        await running


async def test_on_event_gets_reader_and_consumer_events_alike() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=1)
    for n in range(3):
        sim.put_item({"pk": f"item-{n}"})
    seen: list[Event] = []
    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        await clock.sleep(0.25)
        handled.extend(records)

    consumer = make(clock, sim, handler, on_event=seen.append, name="app")
    await run_until(consumer, clock, lambda: len(handled) == 3)

    (shard_id,) = sim.open_shard_ids()
    kinds = [type(event) for event in seen]
    assert kinds.index(ConsumerStarted) < kinds.index(BatchHandled)
    assert ShardStarted in kinds  # the reader's, on the consumer's channel
    started = next(e for e in seen if isinstance(e, ConsumerStarted))
    assert started == ConsumerStarted(sim.stream_arn, "app", ddbstreams.TRIM_HORIZON)
    (batch,) = [e for e in seen if isinstance(e, BatchHandled)]
    assert (batch.shard_id, batch.records) == (shard_id, 3)
    assert batch.duration == pytest.approx(0.25)
    assert CheckpointSaved(sim.stream_arn, "app") in seen


async def test_events_iterates_until_the_run_returns() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=2)
    sim.put_item({"pk": "a"})
    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        handled.extend(records)

    consumer = make(clock, sim, handler)
    events = consumer.events()
    collected: list[Event] = []

    async def collect() -> None:
        async for event in events:
            collected.append(event)

    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        collector = group.create_task(collect())
        await run_until(consumer, clock, lambda: bool(handled))
        await collector  # ended by the end of the run

    assert any(isinstance(e, BatchHandled) for e in collected)
    assert any(isinstance(e, ShardStarted) for e in collected)


async def test_failures_retries_and_giving_up_are_events() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=3)
    sim.put_item({"pk": "good"})
    sim.put_item({"pk": "poison"})
    seen: list[Event] = []
    given_up: list[ddbstreams.FailedBatch] = []

    async def handler(records: list[Record]) -> None:
        if any(r.keys["pk"] == "poison" for r in records):
            raise ValueError("poison")

    consumer = make(
        clock,
        sim,
        handler,
        on_event=seen.append,
        on_failure=given_up.append,
        bisect_batch_on_error=True,
        maximum_retry_attempts=1,
        retry_delay=2.0,
    )
    await run_until(consumer, clock, lambda: bool(given_up))

    (shard_id,) = sim.open_shard_ids()
    failures = [e for e in seen if isinstance(e, BatchFailed)]
    assert failures == [
        # The pair fails, is bisected (no retry used), the poison fails, is retried once.
        BatchFailed(shard_id, 2, 1, "ValueError: poison", True),
        BatchFailed(shard_id, 1, 1, "ValueError: poison", True),
        BatchFailed(shard_id, 1, 2, "ValueError: poison", False),
    ]
    assert [e for e in seen if isinstance(e, RecordsGivenUp)] == [
        RecordsGivenUp(shard_id, 1, "RetryAttemptsExhausted")
    ]
    assert [e.records for e in seen if isinstance(e, BatchHandled)] == [1]


async def test_a_partial_batch_response_is_a_reported_failure() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=4)
    changes = [sim.put_item({"pk": f"item-{n}"}) for n in range(4)]
    seen: list[Event] = []
    calls: list[int] = []

    async def handler(records: list[Record]) -> dict[str, Any]:
        calls.append(len(records))
        if len(calls) == 1:
            return {"batchItemFailures": [{"itemIdentifier": records[2].sequence_number}]}
        return {"batchItemFailures": []}

    consumer = make(clock, sim, handler, on_event=seen.append, report_batch_item_failures=True)
    await run_until(consumer, clock, lambda: len(calls) == 2)

    (shard_id,) = sim.open_shard_ids()
    assert [e for e in seen if isinstance(e, BatchFailed)] == [
        BatchFailed(shard_id, 2, 1, "reported batch item failure", True, "reported")
    ]
    assert [e.records for e in seen if isinstance(e, BatchHandled)] == [2, 2]
    assert consumer.checkpoint().positions == {shard_id: changes[-1].sequence_number}


async def test_logging_is_a_subscriber_with_the_same_warnings(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=5)
    sim.put_item({"pk": "a"})
    sim.put_item({"pk": "b"})
    calls: list[int] = []

    async def handler(records: list[Record]) -> Any:
        calls.append(len(records))
        if len(calls) == 1:
            raise RuntimeError("downstream down")
        return {"batchItemFailures": [{"nonsense": 1}]}

    consumer = make(
        clock,
        sim,
        handler,
        report_batch_item_failures=True,
        maximum_retry_attempts=1,
        retry_delay=0.5,
    )
    (shard_id,) = sim.open_shard_ids()
    with caplog.at_level(logging.WARNING, logger="ddbstreams"):
        await run_until(consumer, clock, lambda: len(calls) == 2)
        await asyncio.sleep(0)

    assert [(r.levelno, r.getMessage()) for r in caplog.records] == [
        (
            logging.WARNING,
            f"handler failed on 2 records of {shard_id}: RuntimeError: downstream down",
        ),
        (logging.WARNING, "invalid batchItemFailures entry {'nonsense': 1}: retrying the batch"),
        (logging.WARNING, f"giving up on 2 records of {shard_id} (RetryAttemptsExhausted)"),
    ]
