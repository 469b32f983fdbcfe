"""Live mode: :class:`LiveWriter` keeps a simulated stream changing while a reader runs."""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import threading
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Self, TypedDict

from ddbstreams.testing.simulator._records import SimulatedChange

if TYPE_CHECKING:
    from ddbstreams.testing.simulator._simulator import StreamSimulator

__all__ = ["LiveOptions", "LiveWriter"]


class LiveOptions(TypedDict, total=False):
    """The keyword options of :meth:`StreamSimulator.live` (see :class:`LiveWriter`)."""

    writes_per_second: float
    rollover_every: float | None
    split_every: float | None
    max_open_shards: int
    keys: int
    duration: float | None
    seed: int | None


#: Slack when comparing virtual times that went through float arithmetic (1 microsecond).
_TIME_SLACK: Final = 1e-6


class LiveWriter:
    """Keeps a :class:`StreamSimulator` changing while a reader runs: made by
    :meth:`StreamSimulator.live`.

    The writer puts, modifies and deletes items ``live-0`` ... ``live-<keys-1>`` (partition
    key; a sort key, if the table has one, is 0) at ``writes_per_second``, rolls over a
    random open shard every ``rollover_every`` seconds and splits a random open shard every
    ``split_every`` seconds while fewer than ``max_open_shards`` are open (None disables
    either). Events are scheduled on a fixed grid from the start (write n at n /
    ``writes_per_second``; a late wake-up catches up), so the rate is exact on average.
    It stops after ``duration`` seconds (None: until :meth:`stop` or the end of the
    ``with`` block), or when the stream stops taking writes (disabled, deleted, table
    deleted). Choices come from ``seed`` (default: the simulator's seed).

    Two ways to run it, each usable once:

    * ``async with sim.live(...) as live:`` runs the writer as a task on the running loop,
      paced by the simulator's clock: with a :class:`SimulatedClock` in virtual time (a
      reader sharing the clock sees exactly ``writes_per_second`` per virtual second), with
      the real clock in real time. Leaving the block cancels the task and waits for it; if
      the writer fails, the block is cancelled and the error raised from it.
    * ``with sim.live(...) as live:`` runs it in a background thread paced by real time
      (``time.monotonic``), for synchronous code and readers over HTTP; leaving the block
      stops and joins the thread, then raises the writer's error if it had one.

    Counters (``writes``, ``rollovers``, ``splits``, ``changes``) may be read at any time.
    """

    def __init__(
        self,
        simulator: StreamSimulator,
        *,
        writes_per_second: float = 200.0,
        rollover_every: float | None = 2.0,
        split_every: float | None = 5.0,
        max_open_shards: int = 8,
        keys: int = 50,
        duration: float | None = None,
        seed: int | None = None,
    ) -> None:
        if not writes_per_second >= 0 or math.isinf(writes_per_second):
            raise ValueError("writes_per_second must be a finite number >= 0")
        for name, every in (("rollover_every", rollover_every), ("split_every", split_every)):
            if every is not None and not every > 0:
                raise ValueError(f"{name} must be positive (or None)")
        if max_open_shards < 1:
            raise ValueError("max_open_shards must be at least 1")
        if keys < 1:
            raise ValueError("keys must be at least 1")
        if duration is not None and not duration >= 0:
            raise ValueError("duration must not be negative (or None)")
        self.simulator: Final = simulator
        self.writes_per_second: Final = float(writes_per_second)
        self.rollover_every: Final = rollover_every
        self.split_every: Final = split_every
        self.max_open_shards: Final = max_open_shards
        self.keys: Final = keys
        self.duration: Final = duration
        #: The changes this writer recorded, in order.
        self.changes: list[SimulatedChange] = []
        #: Roll-overs and splits done.
        self.rollovers = 0
        self.splits = 0
        self._rng = random.Random(f"live:{simulator.seed if seed is None else seed!r}")
        self._present: set[int] = set()
        self._version = 0
        self._writes_due = 0  # index of the next write on the grid
        self._rollovers_due = 1
        self._splits_due = 1
        self._stopped = False
        self._used = False
        self._finished = threading.Event()
        self._stop_event = threading.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._parent: asyncio.Task[Any] | None = None
        self._cancelled_parent = False
        self._exiting = False
        self._thread: threading.Thread | None = None
        self._waiters_lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = []

    def __repr__(self) -> str:
        return (
            f"LiveWriter(writes={self.writes}, rollovers={self.rollovers}, "
            f"splits={self.splits}, running={self.running})"
        )

    @property
    def writes(self) -> int:
        """Changes recorded so far."""
        return len(self.changes)

    @property
    def running(self) -> bool:
        """Started and not finished."""
        return self._used and not self._finished.is_set()

    @property
    def finished(self) -> bool:
        """The writer ended (duration reached, stopped, the stream stopped, or failed)."""
        return self._finished.is_set()

    def stop(self) -> None:
        """End writing now (thread-safe, idempotent). The ``with`` block still waits for
        the writer when it exits."""
        self._stopped = True
        self._stop_event.set()
        task, loop = self._task, self._loop
        if task is None or loop is None or task.done():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            task.cancel()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(task.cancel)

    async def wait(self) -> None:
        """Wait until the writer ends (forever if it has no ``duration`` and is not
        stopped). Does not raise the writer's error: leaving the block does."""
        if self._task is not None:
            await asyncio.wait([self._task])
        elif self._thread is not None:
            # Woken by the thread through the loop (not waited for in an executor thread,
            # which a cancelled wait would leave blocked).
            event = asyncio.Event()
            with self._waiters_lock:
                if self._finished.is_set():
                    return
                self._waiters.append((asyncio.get_running_loop(), event))
            await event.wait()

    def join(self, timeout: float | None = None) -> bool:
        """Block until a thread-run writer ends; return whether it ended (sync mode)."""
        return self._finished.wait(timeout)

    # ------------------------------------------------------------------ async mode

    async def __aenter__(self) -> Self:
        self._claim()
        self._loop = asyncio.get_running_loop()
        self._parent = asyncio.current_task()
        self._task = self._loop.create_task(self._run_async(), name="ddbstreams live writer")
        self._task.add_done_callback(self._on_task_done)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exiting = True
        task = self._task
        assert task is not None
        task.cancel()
        cancelled_meanwhile = False
        while not task.done():
            try:
                await asyncio.wait([task])
            except asyncio.CancelledError:
                cancelled_meanwhile = True  # re-raised once the writer is gone
        error = None if task.cancelled() else task.exception()
        if self._cancelled_parent and self._parent is not None:
            self._parent.uncancel()  # our own cancellation, turned into the writer's error
            if error is not None and (exc_type is None or exc_type is asyncio.CancelledError):
                raise error
        if cancelled_meanwhile:
            raise asyncio.CancelledError
        if error is not None:
            if exc is None:
                raise error
            exc.add_note(f"the live writer also failed: {error!r}")

    def _on_task_done(self, task: asyncio.Task[None]) -> None:
        if self._exiting or task.cancelled() or task.exception() is None:
            return
        if self._parent is not None and not self._parent.done():
            self._cancelled_parent = True
            self._parent.cancel()

    async def _run_async(self) -> None:
        clock = self.simulator.clock
        started = clock.monotonic()
        try:
            while True:
                wake = self._step(clock.monotonic() - started)
                if wake is None:
                    return
                await clock.sleep(wake - (clock.monotonic() - started))
        finally:
            self._finished.set()

    # ------------------------------------------------------------------ thread mode

    def __enter__(self) -> Self:
        self._claim()
        self._thread = threading.Thread(
            target=self._run_thread, name="ddbstreams-live-writer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
        assert self._thread is not None
        self._thread.join()
        error = self._error
        if error is not None:
            if exc is None:
                raise error
            exc.add_note(f"the live writer also failed: {error!r}")

    def _run_thread(self) -> None:
        started = time.monotonic()
        try:
            while True:
                wake = self._step(time.monotonic() - started)
                if wake is None:
                    return
                if self._stop_event.wait(max(0.0, wake - (time.monotonic() - started))):
                    return
        except BaseException as error:  # reported by __exit__
            self._error = error
        finally:
            self._finished.set()
            with self._waiters_lock:
                for loop, event in self._waiters:
                    with contextlib.suppress(RuntimeError):  # that loop is closed
                        loop.call_soon_threadsafe(event.set)
                self._waiters.clear()

    # ------------------------------------------------------------------ schedule

    def _claim(self) -> None:
        if self._used:
            raise RuntimeError("a LiveWriter runs once; make another with sim.live()")
        self._used = True

    def _next_event(self) -> tuple[float, int] | None:
        """(time since start, kind) of the next event on the grid: 0 write, 1 roll, 2 split."""
        events: list[tuple[float, int]] = []
        if self.writes_per_second > 0:
            events.append((self._writes_due / self.writes_per_second, 0))
        if self.rollover_every is not None:
            events.append((self._rollovers_due * self.rollover_every, 1))
        if self.split_every is not None:
            events.append((self._splits_due * self.split_every, 2))
        return min(events, default=None)

    def _step(self, elapsed: float) -> float | None:
        """Do every event due by ``elapsed``; return when to wake next (None: finished)."""
        end = self.duration
        while not self._stopped:
            event = self._next_event()
            if event is None:
                return None
            at, kind = event
            if end is not None and at >= end - _TIME_SLACK:
                return None if elapsed >= end - _TIME_SLACK else end
            if at > elapsed + _TIME_SLACK:
                return at
            if not self._perform(kind):
                return None
        return None

    def _perform(self, kind: int) -> bool:
        """One event; False when the stream no longer takes changes (the writer ends)."""
        sim = self.simulator
        if not sim.enabled:
            return False
        try:
            if kind == 0:
                self._writes_due += 1
                self._write()
            elif kind == 1:
                self._rollovers_due += 1
                open_ids = sim.open_shard_ids()
                if open_ids:
                    sim.roll_over(self._rng.choice(open_ids))
                    self.rollovers += 1
            else:
                self._splits_due += 1
                open_ids = sim.open_shard_ids()
                if open_ids and len(open_ids) < self.max_open_shards:
                    sim.split(self._rng.choice(open_ids))
                    self.splits += 1
        except ValueError:
            # Another thread closed the shard or disabled the stream between our look and
            # our change: skip this event, or end if the stream is done.
            return sim.enabled
        return True

    def _write(self) -> None:
        sim = self.simulator
        index = self._rng.randrange(self.keys)
        key: dict[str, Any] = {sim.key_names[0]: f"live-{index}"}
        if len(sim.key_names) > 1:
            key[sim.key_names[1]] = 0
        if index in self._present and self._rng.random() < 0.1:
            self._present.discard(index)
            change = sim.delete_item(key)
        else:
            self._present.add(index)
            self._version += 1
            change = sim.put_item({**key, "version": self._version})
        if change is not None:
            self.changes.append(change)
