"""``max_concurrent_handlers``: the consumer's bound on handler calls running at once.

Only the handler call holds a slot: a failing shard's retry delay does not keep another
shard waiting; blocking handlers (one thread per call) are bounded too; a stop does not
start the batches still waiting for a slot. The bound at scale (1,000 shards, fairness)
is in tests/system/test_thousand_shards.py.
"""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

import ddbstreams
from ddbstreams import Consumer, MemoryCheckpointStore, Record
from ddbstreams.testing import SimulatedClock, StreamSimulator
from tests.support.consumers import virtual_consumer
from tests.support.shards import key_per_shard


def test_the_option_defaults_to_64_and_must_be_positive() -> None:
    assert ddbstreams.ConsumerOptions().max_concurrent_handlers == 64
    with pytest.raises(ddbstreams.ConfigurationError, match="max_concurrent_handlers"):
        ddbstreams.ConsumerOptions(max_concurrent_handlers=0)
    sim = StreamSimulator()
    consumer = Consumer(sim.stream_arn, print, client=sim.client(), max_concurrent_handlers=5)
    assert consumer.options.max_concurrent_handlers == 5


async def test_blocking_handlers_are_bounded_too() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=12, seed=41, retention=None)
    for round_number in range(3):
        for key in key_per_shard(sim).values():
            sim.put_item({"pk": key, "round": round_number})
    lock = threading.Lock()
    handled: list[Record] = []
    running = peak = 0

    def handler(records: list[Record]) -> None:  # a plain function: a thread per call
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(0.02)
        with lock:
            running -= 1
            handled.extend(records)

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        batch_size=1,
        max_concurrent_handlers=3,
    )
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        run = group.create_task(consumer.run())
        while len(handled) < len(sim.history):
            await clock.sleep(1.0)
        await consumer.stop()
        await run
    assert peak == 3
    assert sorted(r.sequence_number for r in handled) == sorted(
        c.sequence_number for c in sim.history
    )


async def test_a_failing_shards_retry_delay_holds_no_slot() -> None:
    """One slot, one shard failing forever with a 100 s retry delay: the other shard's
    record is handled during that delay, not after it."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=43, retention=None)
    keys = key_per_shard(sim)
    failing, healthy = sim.open_shard_ids()
    sim.put_item({"pk": keys[failing]})
    attempts: list[float] = []
    handled_at: list[float] = []

    async def handler(records: list[Record]) -> None:
        if records[0].shard_id == failing:
            attempts.append(clock.monotonic())
            raise ValueError("failing")
        handled_at.append(clock.monotonic())

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        max_concurrent_handlers=1,
        retry_delay=100.0,
        retry_max_delay=100.0,
    )
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        run = group.create_task(consumer.run())
        while not attempts:
            await clock.sleep(0.5)
        sim.put_item({"pk": keys[healthy]})
        await clock.sleep(250.0)
        await consumer.stop()
        await run
    assert len(attempts) >= 2
    assert len(handled_at) == 1
    assert handled_at[0] < attempts[1], "the healthy shard waited for the failing one's retry"


async def test_a_stop_starts_no_batch_still_waiting_for_a_slot() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=6, seed=47, retention=None)
    for key in key_per_shard(sim).values():
        sim.put_item({"pk": key})
    store = MemoryCheckpointStore()
    calls: list[list[Record]] = []

    async def handler(records: list[Record]) -> None:
        calls.append(records)
        await clock.sleep(10.0)

    def consumer() -> Consumer:
        return Consumer(
            sim.stream_arn,
            handler,
            client=sim.client(),
            clock=clock,
            store=store,
            max_concurrent_handlers=1,
        )

    first = consumer()
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        run = group.create_task(first.run())
        while not calls:
            await clock.sleep(0.5)
        await clock.sleep(1.0)  # the other five shards' batches wait for the slot now
        stopping_at = clock.monotonic()
        await first.stop()
        await run
    # The call in flight finished; none of the waiting batches started.
    assert len(calls) == 1
    assert clock.monotonic() - stopping_at <= 10.0
    (done,) = calls
    checkpoint = first.checkpoint()
    assert set(checkpoint.positions) == {done[0].shard_id}

    # The next run handles the five other records, once each.
    second = consumer()
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        run = group.create_task(second.run())
        while len(calls) < 6:
            await clock.sleep(1.0)
        await second.stop()
        await run
    handled = [r.sequence_number for batch in calls for r in batch]
    assert sorted(handled) == sorted(c.sequence_number for c in sim.history)
