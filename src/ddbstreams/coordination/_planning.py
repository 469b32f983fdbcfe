"""Lease planning: which leases a worker of a group takes, gives up or has lost.

Pure decision logic (layer 6): no I/O, no asyncio, no clock of its own. The worker loop
feeds it scans of the workers table and of the lease table, stamped with its own
monotonic clock, and performs the conditional writes it asks for.

Two pieces:

- :class:`Liveness` — what one worker has observed of the others. It remembers, per worker,
  the heartbeat value last seen and when (on the observer's monotonic clock) that value was
  first seen, and per lease the counter last seen and when it was first seen. From that it
  answers which workers are alive, which leases are expired and which owners are foreign.
- :func:`plan_leases` — from one snapshot of the lease table and those answers, the
  :class:`LeasePlan` of one worker: leases to take, leases to release, leases lost, and
  whether this worker is the group's leader.

Liveness (no wall clock anywhere; clocks of different hosts are never compared):

- A *known* worker is one in the last workers-table scan. It is *alive* when its state is
  ``RUNNING`` and its heartbeat value was first seen less than ``failover_time`` ago, so a
  worker seen for the first time counts as alive until ``failover_time`` passes without a
  change. A ``STOPPING`` worker is never alive (it is leaving and does not count for
  balancing), but its leases are not expired while its heartbeat still moves: it is
  finishing its batches and will release them.
- A lease owned by a known worker is expired when that worker's heartbeat has not changed
  for ``failover_time``. Our workers never renew lease counters; the heartbeat is the
  renewal, one write per worker instead of one per lease.
- A lease whose owner is not a known worker (a stopped Java KCL worker, or a crashed worker
  whose item was deleted) is expired when its counter has not changed for
  ``failover_time`` since first seen — the KCL's own rule, so a Java worker that still
  renews its leases never looks expired.
- Such an unknown owner is *foreign* while a counter change of one of its leases was seen
  less than ``failover_time`` ago (a live Java KCL worker on the same table). Foreign
  leases are never taken; once the foreign worker stops renewing, they expire as above.
- An unowned lease is free, never expired.

Planning (every worker computes the same global assignment from the same inputs; each
applies only its own part):

- A lease is *ready* when none of its parents names a lease in the table that is not
  finished (a missing parent lease counts as finished: it was deleted after being read to
  its end, or trimmed). It is *active* when ready and not finished. Other leases are
  neither taken nor counted: a child is never read before its parent is done.
- Workers = ``alive`` | {``me``}. An active lease is *free* when it is unowned, or its key is
  in ``expired`` and its owner is not ``foreign``. Otherwise it is *counted* for its owner
  when the owner is a worker, and *pinned* when not (foreign owners, ``STOPPING`` workers,
  dead or unknown owners whose leases have not expired yet): pinned leases are neither
  taken nor balanced, so that the share of a foreign or leaving worker does not skew the
  targets of the others.
- ``total`` = free + counted leases, ``hi = ceil(total / workers)``,
  ``lo = floor(total / workers)``; with ``max_leases``, neither is above it.
- Water-fill: free leases in stable order (creation time encoded in the shard id, 0 when
  there is none, then key) each go to the worker with the smallest count (ties: smallest
  id) among the workers below ``hi``, until none is left. ``take`` = those given to ``me``,
  plus leases the table says ``me`` owns that ``me`` does not hold (left over from a
  lost response, so that they are not stuck), oldest first.
- Release: with ``D`` = the deficit of the workers below ``lo``, repeatedly the worker with
  the largest count (ties: smallest id) gives up one lease while its count is above ``hi``
  (``D`` shrinks by one when positive) or above ``lo`` with ``D > 0`` (``D`` shrinks by
  one). ``release`` = the leases ``me`` gives up, newest first among the leases it holds.
  Released leases become free in the table, and the next round's water-fill gives them to
  the smallest counts first, that is to the workers below ``lo``.
- ``lost`` = held keys whose lease is gone, has another owner or a counter other than the
  one held. ``leader`` = ``me`` is the smallest worker id.

Why this is safe: every take and release is a write conditional on the lease counter seen,
so two workers that disagree (different snapshots, different clocks) cannot both own a
lease; the loser gets ``LeaseLostError`` and plans again. A lease is taken from another
owner only after ``failover_time`` without any sign of life from it, measured on the
taker's own clock. Why it is deterministic and stable: the plan depends only on the inputs
(sets and sorted orders, no iteration order of hash tables, no randomness), so workers with
the same snapshot compute disjoint takes; and a water-fill never raises a worker above
``hi`` and a worker that takes never releases in the same round, so with a fixed membership
two rounds reach ``lo <= count <= hi`` for every worker, and from there no worker takes or
releases anything (no flapping).
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from ddbstreams.coordination._lease import Lease
from ddbstreams.model._types import shard_created_ms

__all__ = [
    "LeasePlan",
    "Liveness",
    "WorkerStateView",
    "WorkerView",
    "active_leases",
    "is_ready",
    "lease_order_key",
    "plan_leases",
]

_RUNNING = "RUNNING"


class WorkerStateView(Protocol):
    """A worker state: anything with a ``value`` of ``"RUNNING"`` or ``"STOPPING"``."""

    @property
    def value(self) -> str: ...


class WorkerView(Protocol):
    """What :class:`Liveness` reads of a workers-table item (``WorkerRecord`` has it)."""

    @property
    def worker_id(self) -> str: ...

    @property
    def heartbeat(self) -> int: ...

    @property
    def state(self) -> WorkerStateView: ...


def lease_order_key(key: str) -> tuple[int, str]:
    """Stable order of leases: shard creation time in the key (0 when none), then key."""
    return (shard_created_ms(key) or 0, key)


def is_ready(lease: Lease, by_key: Mapping[str, Lease]) -> bool:
    """Whether no parent of ``lease`` names a lease in ``by_key`` that is not finished.

    A parent lease missing from ``by_key`` counts as finished (deleted once read to its
    end, or never created because the parent was trimmed).
    """
    for parent in lease.parent_shard_ids:
        found = by_key.get(parent)
        if found is not None and not found.finished:
            return False
    return True


def active_leases(leases: Iterable[Lease]) -> tuple[Lease, ...]:
    """The leases that are neither finished nor waiting for a parent, in stable order."""
    by_key = {lease.key: lease for lease in leases}
    active = [lease for lease in by_key.values() if not lease.finished and is_ready(lease, by_key)]
    active.sort(key=lambda lease: lease_order_key(lease.key))
    return tuple(active)


@dataclass(frozen=True, slots=True)
class _WorkerSeen:
    heartbeat: int
    since: float  # when this heartbeat value was first seen
    running: bool


@dataclass(frozen=True, slots=True)
class _LeaseSeen:
    owner: str | None
    counter: int
    since: float  # when this (owner, counter) was first seen
    moved: bool  # whether it replaced a different value seen before


class Liveness:
    """What a worker has observed of the others, on its own monotonic clock.

    Feed it every scan with :meth:`observe_workers` and :meth:`observe_leases`; ``now`` is
    the observer's monotonic time of the scan and must not go backwards. Each scan is taken
    as complete: workers and leases missing from it are forgotten (a forgotten lease is
    timed from scratch when seen again, which only delays its expiry). See the module
    docstring for the rules.
    """

    __slots__ = ("_failover_time", "_last_lease_scan", "_leases", "_workers")

    def __init__(self, failover_time: float) -> None:
        """Observe with ``failover_time`` seconds of silence meaning "dead".

        Raises ValueError unless ``failover_time`` is positive.
        """
        if not failover_time > 0:
            raise ValueError(f"failover_time must be positive, not {failover_time!r}")
        self._failover_time = failover_time
        self._workers: dict[str, _WorkerSeen] = {}
        self._leases: dict[str, _LeaseSeen] = {}
        self._last_lease_scan: float | None = None

    @property
    def failover_time(self) -> float:
        """Seconds without a change after which a worker or a lease counts as dead."""
        return self._failover_time

    @property
    def known_workers(self) -> frozenset[str]:
        """Worker ids of the last workers-table scan, whatever their state."""
        return frozenset(self._workers)

    def observe_workers(self, workers: Iterable[WorkerView], now: float) -> None:
        """Record a complete scan of the workers table made at ``now``.

        A heartbeat value other than the one last seen (or a worker not seen before) is
        timed from ``now``; workers missing from the scan are no longer known.
        """
        seen: dict[str, _WorkerSeen] = {}
        for worker in workers:
            running = worker.state.value == _RUNNING
            old = self._workers.get(worker.worker_id)
            since = now if old is None or old.heartbeat != worker.heartbeat else old.since
            seen[worker.worker_id] = _WorkerSeen(worker.heartbeat, since, running)
        self._workers = seen

    def observe_leases(self, leases: Iterable[Lease], now: float) -> None:
        """Record a complete scan of the lease table made at ``now``.

        An owner or counter other than the one last seen is timed from ``now`` and marks
        the lease as moved; a lease seen for the first time is timed from ``now`` but has
        not moved. Leases missing from the scan are forgotten.
        """
        seen: dict[str, _LeaseSeen] = {}
        for lease in leases:
            old = self._leases.get(lease.key)
            if old is None:
                seen[lease.key] = _LeaseSeen(lease.owner, lease.counter, now, moved=False)
            elif (old.owner, old.counter) != (lease.owner, lease.counter):
                seen[lease.key] = _LeaseSeen(lease.owner, lease.counter, now, moved=True)
            else:
                seen[lease.key] = old
        self._leases = seen
        self._last_lease_scan = now

    def alive(self, now: float) -> frozenset[str]:
        """Known ``RUNNING`` workers whose heartbeat changed less than failover ago."""
        return frozenset(
            worker_id
            for worker_id, seen in self._workers.items()
            if seen.running and now - seen.since < self._failover_time
        )

    def expired(self, lease: Lease, now: float) -> bool:
        """Whether ``lease`` may be taken from its owner at ``now``.

        Unowned: False (free, not expired). Owner a known worker: its heartbeat unchanged
        for at least failover. Owner unknown: the lease's counter unchanged for at least
        failover since first seen; False for a lease never observed or observed with
        another owner or counter than ``lease`` has.
        """
        if lease.owner is None:
            return False
        worker = self._workers.get(lease.owner)
        if worker is not None:
            return now - worker.since >= self._failover_time
        seen = self._leases.get(lease.key)
        if seen is None or (seen.owner, seen.counter) != (lease.owner, lease.counter):
            return False
        return now - seen.since >= self._failover_time

    def expired_keys(self, leases: Iterable[Lease], now: float) -> frozenset[str]:
        """Keys of the ``leases`` that are :meth:`expired` at ``now``."""
        return frozenset(lease.key for lease in leases if self.expired(lease, now))

    def foreign_owners(self) -> frozenset[str]:
        """Unknown owners one of whose leases was seen moving within failover.

        "Within failover" is measured back from the last lease scan. These are live workers
        that do not use the workers table, such as a Java KCL worker on the same table;
        their leases are never taken while they keep renewing them.
        """
        last = self._last_lease_scan
        if last is None:
            return frozenset()
        return frozenset(
            seen.owner
            for seen in self._leases.values()
            if seen.owner is not None
            and seen.moved
            and seen.owner not in self._workers
            and last - seen.since < self._failover_time
        )


@dataclass(frozen=True, slots=True)
class LeasePlan:
    """What one worker should do after a lease-table scan.

    ``take``: free or expired leases to take now (conditional on their counter), oldest
    first. ``release``: keys of held leases to give up for balance, newest first.
    ``lost``: held keys the table no longer shows as held by this worker at the held
    counter (stop processing them; do not write to them). ``leader``: this worker has the
    smallest live id and does discovery and cleanup for the group.
    """

    take: tuple[Lease, ...]
    release: tuple[str, ...]
    lost: tuple[str, ...]
    leader: bool


@dataclass(frozen=True, slots=True)
class _Split:
    free: tuple[Lease, ...]  # stable order
    counts: dict[str, int]  # worker -> counted leases
    mine: tuple[Lease, ...]  # counted for me, stable order


def _split(
    active: Sequence[Lease],
    workers: frozenset[str],
    me: str,
    expired: frozenset[str],
    foreign: frozenset[str],
) -> _Split:
    free: list[Lease] = []
    mine: list[Lease] = []
    counts = dict.fromkeys(workers, 0)
    for lease in active:
        owner = lease.owner
        if owner is None or (owner not in foreign and lease.key in expired):
            free.append(lease)
        elif owner in counts and owner not in foreign:
            counts[owner] += 1
            if owner == me:
                mine.append(lease)
    return _Split(tuple(free), counts, tuple(mine))


def _water_fill(free: Sequence[Lease], counts: dict[str, int], hi: int) -> dict[str, str]:
    """Give each free lease to the smallest count below ``hi``; updates ``counts``."""
    heap = [(count, worker) for worker, count in counts.items() if count < hi]
    heapq.heapify(heap)
    given: dict[str, str] = {}
    for lease in free:
        if not heap:
            break
        count, worker = heapq.heappop(heap)
        given[lease.key] = worker
        counts[worker] = count + 1
        if count + 1 < hi:
            heapq.heappush(heap, (count + 1, worker))
    return given


def _releases(counts: Mapping[str, int], lo: int, hi: int) -> dict[str, int]:
    """How many leases each worker gives up: everything above ``hi``, and above ``lo``
    as long as workers below ``lo`` still miss some."""
    deficit = sum(lo - count for count in counts.values() if count < lo)
    heap = [(-count, worker) for worker, count in counts.items()]
    heapq.heapify(heap)
    released: dict[str, int] = {}
    while heap:
        negative, worker = heap[0]
        count = -negative
        if not (count > hi or (count > lo and deficit > 0)):
            break
        deficit = max(0, deficit - 1)
        released[worker] = released.get(worker, 0) + 1
        heapq.heapreplace(heap, (-(count - 1), worker))
    return released


def _holds(lease: Lease, me: str, held: Mapping[str, int]) -> bool:
    return lease.owner == me and held.get(lease.key) == lease.counter


def _lost(leases: Sequence[Lease], me: str, held: Mapping[str, int]) -> tuple[str, ...]:
    by_key = {lease.key: lease for lease in leases}
    lost = []
    for key, counter in held.items():
        lease = by_key.get(key)
        if lease is None or lease.owner != me or lease.counter != counter:
            lost.append(key)
    return tuple(sorted(lost, key=lease_order_key))


def plan_leases(
    leases: Sequence[Lease],
    *,
    me: str,
    held: Mapping[str, int],
    alive: frozenset[str],
    expired: frozenset[str],
    foreign: frozenset[str] = frozenset(),
    max_leases: int | None = None,
) -> LeasePlan:
    """Plan worker ``me``'s part of the group's assignment of ``leases``.

    ``leases`` is a complete scan of the lease table, ``held`` maps the keys ``me`` holds to
    the counter it holds them at, ``alive``/``expired``/``foreign`` come from
    :class:`Liveness` (``expired`` as keys). ``max_leases`` caps every worker of the group
    (all must use the same value): ``hi`` and ``lo`` become at most ``max_leases``, and
    leases beyond what the capped workers hold stay free. Rules in the module docstring.
    Workers that call it with the same ``leases``, ``alive``, ``expired``, ``foreign`` and
    ``max_leases`` compute plans whose takes are disjoint and together form one
    assignment. Raises ValueError for a negative ``max_leases``.
    """
    if max_leases is not None and max_leases < 0:
        raise ValueError(f"max_leases must not be negative, not {max_leases}")
    workers = alive | {me}
    split = _split(active_leases(leases), workers, me, expired, foreign)
    counts = split.counts
    total = len(split.free) + sum(counts.values())
    hi = -(-total // len(workers))
    lo = total // len(workers)
    if max_leases is not None:
        hi, lo = min(hi, max_leases), min(lo, max_leases)
    given = _water_fill(split.free, counts, hi)
    take = [
        lease for lease in split.free if given.get(lease.key) == me and not _holds(lease, me, held)
    ]
    take.extend(lease for lease in split.mine if lease.key not in held)
    take.sort(key=lambda lease: lease_order_key(lease.key))
    releasable = [lease.key for lease in split.mine if _holds(lease, me, held)]
    count = _releases(counts, lo, hi).get(me, 0)
    release = tuple(reversed(releasable))[:count]
    return LeasePlan(
        take=tuple(take),
        release=release,
        lost=_lost(leases, me, held),
        leader=me == min(workers),
    )
