"""The consumer's injectable clock: every wait and every duration is on it.

In virtual time (a SimulatedClock shared with the simulator), a batching window of a
minute, a stop timeout of 30 seconds and Lambda's 15-minute deadline pass in well under a
second of real time, and exactly as long as configured.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import pytest

import ddbstreams
from ddbstreams import Consumer, LambdaContext, MemoryCheckpointStore, Record
from ddbstreams.testing import SimulatedClock, StreamSimulator


def virtual_consumer(
    clock: SimulatedClock, sim: StreamSimulator, handler: Any, **kwargs: Any
) -> Consumer:
    kwargs.setdefault("store", MemoryCheckpointStore())
    return Consumer(sim.stream_arn, handler, client=sim.client(), clock=clock, **kwargs)


async def test_a_batching_window_of_a_minute_in_virtual_time() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=1)
    for n in range(3):
        sim.put_item({"pk": f"early-{n}"})
    calls: list[tuple[float, list[str]]] = []
    arrived = asyncio.Event()

    async def handler(records: list[Record]) -> None:
        calls.append((clock.monotonic(), [r.keys["pk"] for r in records]))
        arrived.set()

    consumer = virtual_consumer(clock, sim, handler, batch_size=100, maximum_batching_window=60.0)
    started_real = time.perf_counter()
    started = clock.monotonic()
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await clock.sleep(10.0)
        for n in range(2):
            sim.put_item({"pk": f"late-{n}"})
        await arrived.wait()
        await consumer.stop()
        await running

    # One call with all five records: the window opened when the first record was taken
    # (within the first idle poll) and closed 60 virtual seconds later.
    ((called_at, keys),) = calls
    assert keys == ["early-0", "early-1", "early-2", "late-0", "late-1"]
    assert 60.0 <= called_at - started <= 61.0
    assert time.perf_counter() - started_real < 5.0


async def test_the_batching_window_never_makes_a_batch_larger_than_batch_size() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=2)
    sizes: list[int] = []
    done = asyncio.Event()

    async def handler(records: list[Record]) -> None:
        sizes.append(len(records))
        if sum(sizes) == 25:
            done.set()

    consumer = virtual_consumer(
        clock,
        sim,
        handler,
        batch_size=10,
        maximum_batching_window=5.0,
        reader_options=ddbstreams.ReaderOptions(page_limit=7),
    )
    for n in range(25):
        sim.put_item({"pk": f"item-{n}"})
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await done.wait()
        await consumer.stop()
        await running

    assert sum(sizes) == 25
    assert max(sizes) <= 10


@pytest.mark.parametrize("blocking", [False, True], ids=["async", "blocking"])
async def test_stop_timeout_of_30_virtual_seconds(blocking: bool) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=3)
    sim.put_item({"pk": "a"})
    called = asyncio.Event()
    loop = asyncio.get_running_loop()
    release = threading.Event()

    async def hanging(records: list[Record]) -> None:
        called.set()
        await asyncio.Event().wait()  # a handler that never returns

    def hanging_blocking(records: list[Record]) -> None:
        loop.call_soon_threadsafe(called.set)
        release.wait(60)

    store = MemoryCheckpointStore()
    consumer = virtual_consumer(
        clock, sim, hanging_blocking if blocking else hanging, store=store, stop_timeout=30.0
    )
    started_real = time.perf_counter()
    try:
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            running = group.create_task(consumer.run())
            await called.wait()
            stop_asked = clock.monotonic()
            await consumer.stop()
            stopped = clock.monotonic()
            await running
    finally:
        release.set()

    assert stopped - stop_asked == pytest.approx(30.0, abs=0.5)
    assert time.perf_counter() - started_real < 5.0
    # The abandoned batch is not checkpointed: it is delivered again on the next run.
    saved = await store.load(sim.stream_arn, name="default")
    assert saved is None or not saved.positions


def test_lambda_context_counts_down_on_its_clock() -> None:
    clock = SimulatedClock()
    context = LambdaContext(clock=clock)

    assert context.get_remaining_time_in_millis() == 900_000
    clock.advance(899.5)
    assert context.get_remaining_time_in_millis() == 500
    clock.advance(10.0)
    assert context.get_remaining_time_in_millis() == 0
    assert LambdaContext(clock=clock, timeout=60.0).get_remaining_time_in_millis() == 60_000
    explicit = LambdaContext(clock=clock, deadline=clock.monotonic() + 2.0)
    assert explicit.get_remaining_time_in_millis() == 2000


async def test_a_lambda_handler_gets_a_context_on_the_consumers_clock() -> None:
    clock = SimulatedClock()
    clock.advance(12_345.0)  # far from the real monotonic clock
    sim = StreamSimulator(clock=clock, seed=4)
    sim.put_item({"pk": "a"})
    contexts: list[LambdaContext] = []
    seen = threading.Event()

    def function(event: dict[str, Any], context: LambdaContext) -> None:
        contexts.append(context)
        seen.set()

    consumer = virtual_consumer(clock, sim, ddbstreams.lambda_handler(function))
    before = clock.monotonic()
    async with asyncio.timeout(30), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        while not seen.is_set():
            await clock.sleep(0.1)
        await consumer.stop()
        await running
    after = clock.monotonic()

    (context,) = contexts
    assert context.deadline is not None
    assert before + 900.0 <= context.deadline <= after + 900.0
    clock.advance(context.deadline - clock.monotonic() - 1.0)
    assert context.get_remaining_time_in_millis() == 1000
