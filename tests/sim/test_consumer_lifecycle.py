"""The consumer's lifecycle: explicit states, single pass, stop, cancellation, no task left.

The consumer's states are IDLE -> STARTING -> RUNNING -> STOPPING -> IDLE, and every task a
run makes ends with it. A single pass (``follow=False``) returns by itself once what the
stream held is processed and checkpointed. What a partial batch response reports as done is
checkpointed even when the consumer stops before the rest is retried: that is how
``tail --checkpoint --max-records N`` checkpoints exactly the N records it printed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from ddbstreams import (
    Consumer,
    ConsumerLifecycle,
    MemoryCheckpointStore,
    Record,
    StreamNotFoundError,
    StreamReader,
    at_sequence,
)
from ddbstreams.testing import SimulatedClock, StreamSimulator


def make(clock: SimulatedClock, sim: StreamSimulator, handler: Any, **kwargs: Any) -> Consumer:
    kwargs.setdefault("store", MemoryCheckpointStore())
    return Consumer(sim.stream_arn, handler, client=sim.client(), clock=clock, **kwargs)


async def test_the_states_of_a_run() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=1)
    sim.put_item({"pk": "a"})
    states: list[ConsumerLifecycle] = []
    consumer: Consumer

    async def handler(records: list[Record]) -> None:
        states.append(consumer.lifecycle)

    consumer = make(clock, sim, handler)
    assert consumer.lifecycle is ConsumerLifecycle.IDLE
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await asyncio.sleep(0)
        assert consumer.lifecycle is ConsumerLifecycle.STARTING
        while not states:
            await clock.sleep(0.1)
        consumer.request_stop()
        assert consumer.lifecycle is ConsumerLifecycle.STOPPING
        await consumer.stop()
        assert consumer.lifecycle is ConsumerLifecycle.IDLE
        await running
    assert states == [ConsumerLifecycle.RUNNING]
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await asyncio.sleep(0)
        with pytest.raises(RuntimeError, match="already running"):
            await consumer.run()
        await consumer.stop()


async def test_a_single_pass_returns_by_itself_with_everything_checkpointed() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=2)
    for n in range(30):
        sim.put_item({"pk": f"item-{n}"})
    sim.split(sim.open_shard_ids()[0])
    for n in range(30, 40):
        sim.put_item({"pk": f"item-{n}"})
    handled: list[Record] = []
    store = MemoryCheckpointStore()

    async def handler(records: list[Record]) -> None:
        handled.extend(records)

    consumer = make(clock, sim, handler, store=store, follow=False, batch_size=7)
    async with asyncio.timeout(30):
        await consumer.run()

    assert consumer.lifecycle is ConsumerLifecycle.IDLE
    assert sorted(r.sequence_number for r in handled) == sorted(
        c.sequence_number for c in sim.history
    )
    saved = await store.load(sim.stream_arn, name="default")
    assert saved == consumer.checkpoint()
    async with StreamReader(sim.stream_arn, client=sim.client(), start=saved) as rest:
        assert [r async for r in rest] == []
    # Run again: nothing new, then only what was written since.
    again: list[Record] = []
    consumer = make(clock, sim, lambda records: again.extend(records), store=store, follow=False)
    async with asyncio.timeout(30):
        await consumer.run()
        assert again == []
        sim.put_item({"pk": "late"})
        await consumer.run()
    assert [r.keys["pk"] for r in again] == ["late"]


async def test_a_reported_failure_then_a_stop_checkpoints_what_was_done() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=3)
    changes = [sim.put_item({"pk": f"item-{n}"}) for n in range(10)]
    consumer: Consumer

    async def handler(records: list[Record]) -> dict[str, Any]:
        # Take the first four, say the rest were not done, and stop.
        consumer.request_stop()
        return {"batchItemFailures": [{"itemIdentifier": records[4].sequence_number}]}

    store = MemoryCheckpointStore()
    consumer = make(
        clock, sim, handler, store=store, report_batch_item_failures=True, batch_size=10
    )
    async with asyncio.timeout(30):
        await consumer.run()

    (shard_id,) = sim.open_shard_ids()
    saved = await store.load(sim.stream_arn, name="default")
    assert saved is not None
    assert saved.positions == {shard_id: changes[3].sequence_number}


async def test_stop_before_run_makes_that_run_return_at_once() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=4)
    sim.put_item({"pk": "a"})
    handled: list[Record] = []
    consumer = make(clock, sim, handled.extend)

    await consumer.stop()
    async with asyncio.timeout(30):
        await consumer.run()

    assert handled == []
    assert consumer.lifecycle is ConsumerLifecycle.IDLE


async def test_cancelling_run_saves_what_was_processed_and_leaves_no_task() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=5)
    changes = [sim.put_item({"pk": f"item-{n}"}) for n in range(3)]
    store = MemoryCheckpointStore()
    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        if records[0].sequence_number == changes[2].sequence_number:
            await asyncio.Event().wait()  # hangs: cancelled with the run
        handled.extend(records)

    consumer = make(clock, sim, handler, store=store, batch_size=1)
    before = asyncio.all_tasks()
    async with asyncio.timeout(30):
        running = asyncio.ensure_future(consumer.run())
        while len(handled) < 2:
            await clock.sleep(0.1)
        await clock.sleep(1.0)
        running.cancel()
        with pytest.raises(asyncio.CancelledError):
            await running

    assert asyncio.all_tasks() == before
    assert consumer.lifecycle is ConsumerLifecycle.IDLE
    (shard_id,) = sim.open_shard_ids()
    saved = await store.load(sim.stream_arn, name="default")
    assert saved is not None
    assert saved.positions == {shard_id: changes[1].sequence_number}


async def test_a_failed_read_first_processes_what_was_handed() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=6)
    changes = [sim.put_item({"pk": f"item-{n}"}) for n in range(4)]
    store = MemoryCheckpointStore()
    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        handled.extend(records)
        if len(handled) == 1:
            # The stream goes away while the rest waits in the consumer.
            sim.delete_stream()
            await clock.sleep(5.0)

    consumer = make(clock, sim, handler, store=store, batch_size=1)
    async with asyncio.timeout(30):
        with pytest.raises(StreamNotFoundError):
            await consumer.run()

    assert [r.sequence_number for r in handled] == [c.sequence_number for c in changes]
    saved = await store.load(sim.stream_arn, name="default")
    assert saved is not None
    assert list(saved.positions.values()) == [changes[-1].sequence_number]


async def test_a_sequence_number_can_be_the_starting_position() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=7)
    changes = [sim.put_item({"pk": f"item-{n}"}) for n in range(4)]
    handled: list[Record] = []
    consumer = make(
        clock,
        sim,
        handled.extend,
        follow=False,
        starting_position=at_sequence(changes[2].sequence_number),
    )
    async with asyncio.timeout(30):
        await consumer.run()
    assert [r.sequence_number for r in handled] == [c.sequence_number for c in changes[2:]]
