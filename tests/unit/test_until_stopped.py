"""``until_stopped``: the one way to race work against a stop signal (and ``wait_tasks``)."""

from __future__ import annotations

import asyncio

import pytest

from ddbstreams._tasks import until_stopped, wait_tasks
from ddbstreams.testing import SimulatedClock


async def test_work_that_ends_first_returns_true() -> None:
    stop = asyncio.Event()
    assert await until_stopped(asyncio.sleep(0), stop) is True


async def test_a_stop_cancels_the_work_and_waits_for_its_cleanup() -> None:
    stop = asyncio.Event()
    cleaned = []

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0)
            cleaned.append(True)

    before = asyncio.all_tasks()
    asyncio.get_running_loop().call_soon(stop.set)
    assert await until_stopped(work(), stop) is False
    assert cleaned == [True]
    assert asyncio.all_tasks() == before


async def test_a_stop_set_already_never_starts_the_work() -> None:
    stop = asyncio.Event()
    stop.set()
    started = []

    async def work() -> None:
        started.append(True)

    assert await until_stopped(work(), stop) is False
    assert started == []


async def test_an_error_of_the_work_is_raised_as_itself() -> None:
    class Boom(Exception):
        pass

    async def work() -> None:
        try:
            raise KeyError("cause")
        except KeyError as exc:
            raise Boom("boom") from exc

    with pytest.raises(Boom, match="boom") as raised:
        await until_stopped(work(), asyncio.Event())
    assert isinstance(raised.value.__cause__, KeyError)


async def test_cancelling_the_caller_cancels_the_work() -> None:
    cancelled = []

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(True)
            raise

    before = asyncio.all_tasks()
    caller = asyncio.ensure_future(until_stopped(work(), asyncio.Event()))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert cancelled == [True]
    assert asyncio.all_tasks() == before


async def test_a_sleep_cut_short_in_virtual_time() -> None:
    clock = SimulatedClock()
    stop = asyncio.Event()

    async def stop_later() -> None:
        await clock.sleep(5.0)
        stop.set()

    async with asyncio.TaskGroup() as group:
        group.create_task(stop_later())
        assert await until_stopped(clock.sleep(3600.0), stop) is False
    assert clock.monotonic() == pytest.approx(5.0)


async def test_wait_tasks_returns_those_still_running_after_the_time() -> None:
    clock = SimulatedClock()

    async def takes(seconds: float) -> None:
        await clock.sleep(seconds)

    async with asyncio.TaskGroup() as group:
        quick = group.create_task(takes(1.0))
        slow = group.create_task(takes(100.0))
        assert await wait_tasks([quick, slow], within=10.0, clock=clock) == {slow}
        assert clock.monotonic() == pytest.approx(10.0)
        slow.cancel()
        assert await wait_tasks([quick], within=10.0, clock=clock) == set()
