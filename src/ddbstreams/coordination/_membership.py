"""Membership: a worker's heartbeat item in the workers table, and what it sees of the others.

A worker's heartbeat is one item of its own in ``GROUP-ddbstreams-workers``, renewed every
``heartbeat_interval`` whatever the number of leases the worker holds. Its liveness is
judged by the others on their own monotonic clocks (:class:`~._planning.Liveness`): a
heartbeat value unchanged for ``failover_time`` means the worker is gone. The worker
itself counts its leases as held only while its last successful heartbeat, timed from when
the request was *sent*, is younger than ``failover_time``: the others first saw that
value after it was sent, so they decide it is gone later than it stops.

Who calls what: the :class:`~._worker.GroupWorker` owning it calls :meth:`beat` (once to
join), runs :meth:`heartbeats` and :meth:`watch` in its task group, asks :meth:`renewed`
and :meth:`alive`, and calls :meth:`announce_changes`, :meth:`stopping` and :meth:`leave`.
Membership calls back ``on_change`` (plan now: the group changed, or leases were freed)
and ``on_lapse`` (the heartbeat was not renewed in time: drop every lease).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from ddbstreams._clock import Clock
from ddbstreams._errors import DDBStreamsError
from ddbstreams._events import EventHub, GroupChanged, GroupError
from ddbstreams._tasks import until_stopped
from ddbstreams.coordination._options import GroupOptions
from ddbstreams.coordination._planning import Liveness
from ddbstreams.coordination._table import LeaseTable, WorkerRecord, WorkerState

__all__ = ["Membership", "repeat"]


class Membership:
    """The heartbeat of worker ``worker_id`` and its view of the group (see the module)."""

    def __init__(
        self,
        table: LeaseTable,
        worker_id: str,
        stream_arn: str,
        *,
        options: GroupOptions,
        events: EventHub,
        clock: Clock,
        on_change: Callable[[], None],
        on_lapse: Callable[[], None],
        lease_count: Callable[[], int],
    ) -> None:
        self._table = table
        self._worker_id = worker_id
        self._stream_arn = stream_arn
        self._options = options
        self._events = events
        self._clock = clock
        self._on_change = on_change
        self._on_lapse = on_lapse
        self._lease_count = lease_count
        self.liveness = Liveness(options.failover_time)
        #: The workers table as last read.
        self.workers: list[WorkerRecord] = []
        self._beats = 0
        self._changes = 0
        self._state = WorkerState.RUNNING
        self._renewed_at: float | None = None
        self._wake = asyncio.Event()
        self._beating = asyncio.Lock()
        self._left = False
        self._members: dict[str, tuple[str, int]] = {}
        self._alive: tuple[str, ...] = ()
        self._started_at = datetime.now(UTC).isoformat(timespec="seconds")

    def renewed(self, now: float) -> bool:
        """Whether the last successful heartbeat was sent less than ``failover_time`` ago."""
        renewed_at = self._renewed_at
        return renewed_at is not None and now - renewed_at < self._options.failover_time

    def alive(self, now: float) -> frozenset[str]:
        """The workers alive as seen from here, this one included."""
        return self.liveness.alive(now) | {self._worker_id}

    async def beat(self) -> None:
        """Renew the heartbeat once (a failure is published; nothing is raised). Leases are
        dropped first if the last renewal is too old: others may have taken them already,
        and a new heartbeat must not make them look held again."""
        async with self._beating:
            if self._left:
                return
            sent = self._clock.monotonic()
            if not self.renewed(sent):
                self._on_lapse()
            try:
                await self._table.heartbeat(self._record())
            except DDBStreamsError as error:
                self._events.publish(GroupError(self._table.name, "heartbeat", str(error)))
            else:
                self._beats += 1
                self._renewed_at = sent

    async def heartbeats(self) -> None:
        """Renew the heartbeat every ``heartbeat_interval``, and at once when woken, until
        cancelled."""
        await repeat(self.beat, self._wake, self._options.heartbeat_every, self._clock)

    async def watch(self) -> None:
        """Read the workers table every ``membership_interval`` until cancelled; a worker
        joining, stopping, failing or announcing changes calls ``on_change``."""
        while True:
            try:
                workers = await self._table.scan_workers()
            except DDBStreamsError as error:
                self._events.publish(GroupError(self._table.name, "reading workers", str(error)))
            else:
                self._observe(workers)
            await self._clock.sleep(self._options.membership_interval)

    def announce_changes(self) -> None:
        """This worker freed or created leases: the next heartbeat (now) says so."""
        self._changes += 1
        self._wake.set()

    def stopping(self) -> None:
        """Tell the group this worker is stopping (it is not counted for balance)."""
        self._state = WorkerState.STOPPING
        self._wake.set()

    async def leave(self) -> None:
        """Remove this worker's item; no heartbeat writes it back afterwards (the one in
        flight, if any, is waited for). Never raises a service error."""
        async with self._beating:
            self._left = True
            with contextlib.suppress(DDBStreamsError):
                await self._table.remove_worker(self._worker_id)

    def _record(self) -> WorkerRecord:
        return WorkerRecord(
            worker_id=self._worker_id,
            heartbeat=self._beats,
            state=self._state,
            changes=self._changes,
            stream_arn=self._stream_arn,
            host=socket.gethostname(),
            pid=os.getpid(),
            started_at=self._started_at,
            lease_count=self._lease_count(),
        )

    def _observe(self, workers: list[WorkerRecord]) -> None:
        now = self._clock.monotonic()
        self.workers = workers
        self.liveness.observe_workers(workers, now)
        members = {
            w.worker_id: (w.state.value, w.changes)
            for w in workers
            if w.worker_id != self._worker_id
        }
        alive = tuple(sorted(self.alive(now)))
        changed = members != self._members
        if alive != self._alive:
            self._alive = alive
            self._events.publish(GroupChanged(self._table.name, alive))
            changed = True
        self._members = members
        if changed:
            self._on_change()


async def repeat(
    step: Callable[[], Awaitable[None]], wake: asyncio.Event, interval: float, clock: Clock
) -> None:
    """Run ``step`` every ``interval`` seconds of ``clock``, or at once when ``wake`` is
    set, until cancelled."""
    while True:
        wake.clear()
        await step()
        await until_stopped(clock.sleep(interval), wake)
