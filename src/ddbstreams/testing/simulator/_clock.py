"""Virtual time for the stream simulator: :class:`SimulatedClock`, a clock and a scheduler."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import threading
from typing import Final

__all__ = ["DEFAULT_START_TIME", "SimulatedClock"]

#: 2026-11-29T06:31:20Z: a fixed, recognisable start for :class:`SimulatedClock`.
DEFAULT_START_TIME: Final = 1_795_933_880.0


class SimulatedClock:
    """A virtual clock: time moves only when every task is waiting, or when advanced.

    ``time()`` starts at ``start`` (epoch seconds; default 2026-11-29T06:31:20Z) and
    ``monotonic()`` at 0; both move together, by :meth:`advance` or by the scheduler below.

    ``await sleep(seconds)`` is a virtual-time scheduler, so many concurrent sleepers (shard
    pollers, backoff, a live writer) behave as they would in real time, only instantly: a
    sleeper registers its wake-up time and waits; a driver task, started on the first
    sleep and ending when nobody sleeps, lets every runnable task run and, once the event
    loop has nothing else ready to run, moves time to the earliest wake-up and wakes the
    sleepers due then (in wake-up order, ties in the order they went to sleep). A sleeper
    therefore wakes with ``monotonic()`` exactly at its wake-up time, and no real time
    passes.

    "Nothing else ready" is read from the event loop's ready queue (``loop._ready``, a
    CPython asyncio detail; on loops without it the driver yields 20 times instead). A task
    waiting for real I/O, a real timer (``asyncio.sleep``) or a thread counts as waiting:
    virtual time may jump ahead meanwhile. So give the same clock to everything that sleeps
    in the code under test (``StreamSimulator(clock=clock)``, ``sim.client()`` uses it by
    default, ``StreamReader(..., clock=clock)``) and keep real I/O out of virtual-time tests
    (over HTTP, use the real clock). Real-time bounds such as ``asyncio.timeout()`` still
    measure real time.

    :meth:`advance` moves time by hand (thread-safe); sleepers whose time has come wake at
    the driver's next turn. One clock drives sleepers of one event loop at a time
    (RuntimeError otherwise).
    """

    __slots__ = ("_driver", "_heap", "_lock", "_loop", "_offset", "_order", "_start")

    def __init__(self, start: float = DEFAULT_START_TIME) -> None:
        self._start = float(start)
        self._offset = 0.0
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()
        self._driver: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"SimulatedClock(monotonic={self._offset!r}, sleepers={self.sleepers})"

    def monotonic(self) -> float:
        """Virtual seconds since the clock was made."""
        return self._offset

    def time(self) -> float:
        """Virtual wall-clock time, epoch seconds (``start + monotonic()``)."""
        return self._start + self._offset

    def advance(self, seconds: float) -> None:
        """Move time forward by ``seconds`` (ValueError if negative). Thread-safe.

        Sleepers whose wake-up time has passed wake at the driver's next turn.
        """
        if not seconds >= 0:
            raise ValueError("time cannot go backwards")
        with self._lock:
            self._offset += seconds

    @property
    def sleepers(self) -> int:
        """How many :meth:`sleep` calls are waiting now."""
        with self._lock:
            return sum(1 for *_, future in self._heap if not future.done())

    def next_wakeup(self) -> float | None:
        """The earliest pending wake-up, on the ``monotonic()`` scale; None if none."""
        with self._lock:
            pending = [when for when, _, future in self._heap if not future.done()]
            return min(pending, default=None)

    async def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` of virtual time (see the class docs); ``<= 0`` only yields.

        Cancellation: a cancelled sleeper simply stops waiting. ``math.inf`` waits until
        cancelled; NaN is a ValueError.
        """
        if math.isnan(seconds):
            raise ValueError("cannot sleep NaN seconds")
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        with self._lock:
            self._bind(loop)
            heapq.heappush(self._heap, (self._offset + seconds, next(self._order), future))
            if self._driver is None or self._driver.done():
                self._driver = loop.create_task(
                    self._drive(loop), name="ddbstreams SimulatedClock driver"
                )
        await future

    def _bind(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._loop is loop:
            return
        previous, driver = self._loop, self._driver
        if (
            previous is not None
            and not previous.is_closed()
            and driver is not None
            and not driver.done()
        ):
            raise RuntimeError("this SimulatedClock already drives sleepers of another event loop")
        # Sleepers left by a finished loop can never be woken: forget them.
        self._loop = loop
        self._heap = []
        self._driver = None

    async def _drive(self, loop: asyncio.AbstractEventLoop) -> None:
        ready = getattr(loop, "_ready", None)
        quiet_turns_needed = 2 if ready is not None else 20
        quiet = 0
        try:
            while True:
                await asyncio.sleep(0)
                with self._lock:
                    self._wake_due()
                    if not self._heap or math.isinf(self._heap[0][0]):
                        return
                if ready is not None and len(ready) > 0:
                    quiet = 0
                    continue
                quiet += 1
                if quiet < quiet_turns_needed:
                    continue
                quiet = 0
                with self._lock:
                    self._offset = max(self._offset, self._heap[0][0])
                    self._wake_due()
        finally:
            with self._lock:
                if self._driver is asyncio.current_task():
                    self._driver = None

    def _wake_due(self) -> None:
        # Called on the loop's thread only (futures are not thread-safe), lock held.
        heap = self._heap
        while heap and (heap[0][2].done() or heap[0][0] <= self._offset):
            _, _, future = heapq.heappop(heap)
            if not future.done():
                future.set_result(None)
