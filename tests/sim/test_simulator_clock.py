"""SimulatedClock: a virtual-time scheduler for many concurrent sleepers."""

from __future__ import annotations

import asyncio
import math
import time

import pytest

from ddbstreams.client._backoff import RetryPolicy
from ddbstreams.testing.simulator import SimulatedClock, StreamSimulator


def driver_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "ddbstreams SimulatedClock driver"]


async def test_concurrent_sleepers_wake_in_order_at_exact_virtual_times() -> None:
    clock = SimulatedClock()
    woke: list[tuple[str, float]] = []

    async def sleeper(name: str, seconds: float) -> None:
        await clock.sleep(seconds)
        woke.append((name, clock.monotonic()))

    wall = time.monotonic()
    async with asyncio.TaskGroup() as group:
        # Started in reverse order: the wake-up time decides, not the order of sleeping.
        group.create_task(sleeper("three", 3.0))
        group.create_task(sleeper("two", 2.0))
        group.create_task(sleeper("one", 1.0))
    elapsed_wall = time.monotonic() - wall

    assert woke == [("one", 1.0), ("two", 2.0), ("three", 3.0)]
    assert clock.monotonic() == 3.0
    assert clock.time() == 1_795_933_880.0 + 3.0
    # Functional check that time is virtual (not a performance bound): 3 s did not pass.
    assert elapsed_wall < 2.5


async def test_periodic_pollers_interleave_as_in_real_time() -> None:
    clock = SimulatedClock()
    ticks: list[tuple[float, str]] = []

    async def poller(name: str, period: float, until: float) -> None:
        while clock.monotonic() + period <= until:
            await clock.sleep(period)
            ticks.append((clock.monotonic(), name))

    async with asyncio.TaskGroup() as group:
        group.create_task(poller("fast", 0.25, 3.0))
        group.create_task(poller("slow", 1.0, 3.0))
        group.create_task(poller("odd", 0.7, 3.0))

    assert [t for t, _ in ticks] == sorted(t for t, _ in ticks)
    counts = {name: sum(1 for _, n in ticks if n == name) for name in ("fast", "slow", "odd")}
    assert counts == {"fast": 12, "slow": 3, "odd": 4}
    slow_times = [t for t, n in ticks if n == "slow"]
    assert slow_times == [1.0, 2.0, 3.0]


async def test_time_stands_still_while_any_task_can_run() -> None:
    clock = SimulatedClock()
    seen: list[float] = []

    async def busy() -> None:
        for _ in range(200):
            seen.append(clock.monotonic())
            await asyncio.sleep(0)  # runnable all along: virtual time must not move

    async def sleeper() -> float:
        await clock.sleep(5.0)
        return clock.monotonic()

    busy_task = asyncio.create_task(busy())
    woke_at = await sleeper()
    await busy_task

    assert seen == [0.0] * 200
    assert woke_at == 5.0


async def test_tasks_waiting_on_each_other_count_as_blocked() -> None:
    clock = SimulatedClock()
    ready = asyncio.Event()
    queue: asyncio.Queue[float] = asyncio.Queue()

    async def producer() -> None:
        for _ in range(3):
            await clock.sleep(10.0)
            queue.put_nowait(clock.monotonic())
        ready.set()

    async def consumer() -> list[float]:
        got = [await queue.get() for _ in range(3)]
        await ready.wait()
        await clock.sleep(1.0)
        got.append(clock.monotonic())
        return got

    async with asyncio.TaskGroup() as group:
        group.create_task(producer())
        result = group.create_task(consumer())

    assert result.result() == [10.0, 20.0, 30.0, 31.0]


async def test_advance_wakes_sleepers_whose_time_has_come() -> None:
    clock = SimulatedClock()
    task = asyncio.create_task(clock.sleep(60.0))
    await asyncio.sleep(0)
    assert clock.sleepers == 1
    assert clock.next_wakeup() == 60.0

    clock.advance(90.0)  # past the wake-up: time does not go back to 60
    await task

    assert clock.monotonic() == 90.0
    assert clock.sleepers == 0


async def test_cancelled_sleepers_are_forgotten_and_the_driver_ends() -> None:
    clock = SimulatedClock()
    doomed = asyncio.create_task(clock.sleep(100.0))
    forever = asyncio.create_task(clock.sleep(math.inf))
    await asyncio.sleep(0)
    doomed.cancel()
    await clock.sleep(1.0)  # the driver advances past nothing but this sleeper

    assert clock.monotonic() == 1.0
    assert doomed.cancelled()
    assert not forever.done()  # infinite sleeps never wake...
    forever.cancel()
    with pytest.raises(asyncio.CancelledError):
        await forever
    for _ in range(5):
        await asyncio.sleep(0)
    assert clock.sleepers == 0
    assert driver_tasks() == []  # ...and nothing is left running


async def test_non_positive_sleeps_only_yield_and_nan_is_refused() -> None:
    clock = SimulatedClock(start=1000.0)
    ran: list[bool] = []

    async def other() -> None:
        ran.append(True)

    task = asyncio.create_task(other())
    await clock.sleep(0)
    await clock.sleep(-5)
    assert ran == [True]
    assert (clock.time(), clock.monotonic()) == (1000.0, 0.0)
    with pytest.raises(ValueError, match="NaN"):
        await clock.sleep(math.nan)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    await task


def test_one_clock_serves_event_loops_one_after_another() -> None:
    clock = SimulatedClock()

    async def nap(seconds: float) -> float:
        await clock.sleep(seconds)
        return clock.monotonic()

    assert asyncio.run(nap(2.0)) == 2.0
    assert asyncio.run(nap(3.0)) == 5.0


async def test_client_backoff_runs_on_the_shared_virtual_clock() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    sim.fail_next("DescribeStream", "LimitExceededException", times=5)
    wall = time.monotonic()

    async with sim.client(retry=RetryPolicy(max_attempts=8, base_delay=1.0, max_delay=30.0)) as c:
        description = await c.describe_stream(sim.stream_arn)

    assert len(description.shards) == 1
    assert sim.calls["DescribeStream"] == 6
    assert clock.monotonic() > 0.0  # the backoff waited, in virtual time
    assert time.monotonic() - wall < 5.0


async def test_a_clock_refuses_sleepers_of_a_second_running_loop() -> None:
    clock = SimulatedClock()
    spinning = True

    async def busy() -> None:
        # Always runnable on purpose (an Event would let the loop go idle): virtual time
        # cannot move, so the driver stays alive while the other loop tries to sleep.
        while spinning:  # noqa: ASYNC110
            await asyncio.sleep(0)

    sleeper = asyncio.create_task(clock.sleep(10.0))
    spinner = asyncio.create_task(busy())
    await asyncio.sleep(0)

    def sleep_on_another_loop() -> str:
        try:
            asyncio.run(clock.sleep(1.0))
        except RuntimeError as error:
            return str(error)
        return "slept"

    message = await asyncio.to_thread(sleep_on_another_loop)
    spinning = False
    await spinner
    await sleeper

    assert message == "this SimulatedClock already drives sleepers of another event loop"
    assert clock.monotonic() == 10.0
