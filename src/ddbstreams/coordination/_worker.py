"""GroupWorker: one worker of a group sharing a stream through leases in DynamoDB.

The protocol (why it is safe is in the comments of the methods that rely on it):

- **Liveness** is a heartbeat: each worker renews one item of its own in the workers table
  every ``heartbeat_interval``, whatever the number of leases it holds. A worker holds a
  lease while the lease names it as owner *and* its own last successful heartbeat (timed
  from when the request was sent, on its monotonic clock) is younger than
  ``failover_time``. Others consider its leases expired once they have seen its heartbeat
  unchanged for ``failover_time`` on *their* monotonic clocks. Since they first saw that
  value after it was written, which is after it was sent, they decide later than the owner
  stops: the owner has stopped starting batches before anyone takes its leases.
- **Fencing**: every lease write (take, checkpoint, release, shard end) is conditional on
  the lease counter the writer holds and increments it, so a worker whose lease was taken
  fails its next write (``LeaseLostError``) and starts nothing more of that shard.
- **Balance** is cooperative: the pure planner (:mod:`._planning`) tells each worker which
  free or expired leases to take and which of its own to hand off; a worker hands a lease
  off by finishing its in-flight batches, checkpointing and releasing it, so the next
  owner re-reads nothing. Membership changes (seen in the workers table every
  ``membership_interval``) trigger a plan at once.
- **Shard end**: the worker that processed a shard to its end creates the children's
  leases, then checkpoints the parent ``SHARD_END`` (and releases it). A lease is taken
  only when its parent's lease is finished or gone, so a child's first record is handled
  after its parent's last one was handled and checkpointed, whoever owns them.
- **Discovery** (leases for shards nobody created) and cleanup of finished leases are done
  by one worker, the leader (the live worker with the smallest id).

Who calls what: the consumer drives a worker through :meth:`join`, :meth:`run` (in its task
group), :meth:`holds` (before each batch), :meth:`checkpoint`, :meth:`finish_shard`,
:meth:`stop_taking` and :meth:`leave`; the worker drives the consumer's shards through the
:class:`ShardHost` it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping
from typing import NamedTuple, Protocol

from ddbstreams._clock import Clock
from ddbstreams._errors import DDBStreamsError, LeaseLostError
from ddbstreams._events import (
    CheckpointSaved,
    EventHub,
    ForeignWorkers,
    GroupError,
    LeaseLost,
    LeaseReleased,
    LeaseReleaseReason,
    LeasesCreated,
    LeaseTaken,
    WorkerJoined,
)
from ddbstreams._tasks import TaskSet
from ddbstreams.client._backoff import CallPacer, exponential_delay
from ddbstreams.client._streams import StreamsClient
from ddbstreams.coordination._discovery import deletable_leases, leases_to_create
from ddbstreams.coordination._lease import (
    LATEST_CHECKPOINT,
    SHARD_END_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
    Lease,
)
from ddbstreams.coordination._membership import Membership, repeat
from ddbstreams.coordination._options import GroupOptions
from ddbstreams.coordination._planning import LeasePlan, plan_leases
from ddbstreams.coordination._table import LeaseTable, WorkerRecord
from ddbstreams.model._position import ShardStart

__all__ = ["GroupWorker", "Processed", "ShardHost"]

_DESCRIBE_RATE = 8.0
"""DescribeStream calls per second the workers of a group make at most together for the
children of the shards they finished (each takes its share): a stream allows 10 per second,
shared by every worker and reader of it."""

_CHILD_DISCOVERY_TIMEOUT = 30.0
"""How long a worker that finished a shard keeps asking for its children (they may be
listed a few seconds after the parent closed); the leader's discovery catches the rest."""


class Processed(NamedTuple):
    """How far a shard is processed: its lease checkpoint (a sequence number, or the start
    sentinel) and, for a sequence number, its record's approximate creation time (epoch
    seconds) when known."""

    checkpoint: str
    created: float | None = None


class ShardHost(Protocol):
    """What a worker drives: the consumer's processing of shards."""

    def start_shard(self, shard_id: str, start: ShardStart, parent_shard_id: str | None) -> None:
        """Begin reading and processing ``shard_id`` at ``start``."""

    async def stop_shard(self, shard_id: str) -> Processed | None:
        """Start no further batch of ``shard_id``, let the one in flight finish (bounded by
        the consumer's ``stop_timeout``), stop reading it, and return how far it was
        processed (None if unknown)."""


class GroupWorker:
    """One worker of the group ``table.name`` on ``stream_arn`` (see the module)."""

    def __init__(
        self,
        table: LeaseTable,
        client: StreamsClient,
        stream_arn: str,
        *,
        worker_id: str,
        options: GroupOptions,
        from_latest: bool,
        events: EventHub,
        clock: Clock,
    ) -> None:
        self._table = table
        self._client = client
        self._stream_arn = stream_arn
        self.worker_id = worker_id
        self._options = options
        self._from_latest = from_latest
        self._events = events
        self._clock = clock
        self._host: ShardHost | None = None
        self._held: dict[str, Lease] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._taking = True
        self._planning = asyncio.Lock()
        self._wake_planner = asyncio.Event()
        self._membership = Membership(
            table,
            worker_id,
            stream_arn,
            options=options,
            events=events,
            clock=clock,
            on_change=self._wake_planner.set,
            on_lapse=self._drop_all,
            lease_count=lambda: len(self._held),
        )
        self._liveness = self._membership.liveness
        self._foreign: dict[str, float] = {}
        self._reported_foreign: set[str] = set()
        self._failover = options.failover_time
        self._last_discovery: float | None = None
        self._background = TaskSet()
        #: Set once the stream is disabled and every shard of it was processed to its end.
        self.stream_ended = asyncio.Event()
        self._describe_pacer = CallPacer(_DESCRIBE_RATE, clock)

    @property
    def group(self) -> str:
        return self._table.name

    def held(self) -> frozenset[str]:
        """The shards whose leases this worker holds now."""
        return frozenset(self._held)

    @property
    def heartbeat_fresh(self) -> bool:
        """Whether the last heartbeat was renewed within the failover time (monotonic)."""
        return self._membership.renewed(self._clock.monotonic())

    # -- called by the consumer ---------------------------------------------------------------

    def attach(self, host: ShardHost) -> None:
        """Give the worker the shards' host (before :meth:`run`)."""
        self._host = host

    async def join(self) -> None:
        """Create or check the tables and write this worker's first heartbeat.

        Raises what the table raises: :class:`~ddbstreams.LeaseTableError` for an unusable
        table, TableNotFoundError when it is missing and ``create_table`` is off, service
        errors.
        """
        await self._table.ensure(create=self._options.create_table)
        await self._membership.beat()
        if not self.heartbeat_fresh:
            raise DDBStreamsError(f"could not join {self.group}: the first heartbeat failed")
        self._events.publish(WorkerJoined(self.group, self.worker_id))

    def holds(self, shard_id: str) -> bool:
        """Whether this worker may start a batch of ``shard_id`` now: it holds the lease and
        renewed its heartbeat within the failover time (monotonic clock)."""
        return shard_id in self._held and self._membership.renewed(self._clock.monotonic())

    async def run(self) -> None:
        """Heartbeat, watch the group and plan leases until cancelled.

        Errors of single rounds are published as :class:`GroupError` and retried on the
        next round. Cancellation ends every task of the worker (taking no lease after).
        """
        async with asyncio.TaskGroup() as group:
            group.create_task(self._membership.heartbeats())
            group.create_task(self._membership.watch())
            scan = self._options.lease_scan_interval
            group.create_task(repeat(self._plan_round, self._wake_planner, scan, self._clock))

    def stop_taking(self) -> None:
        """Take no more leases and tell the group so (the consumer is stopping)."""
        self._taking = False
        self._membership.stopping()

    async def checkpoint(self, shard_id: str, processed: Processed) -> bool:
        """Store ``processed`` in the lease of ``shard_id``; False if it is not held (any
        more): a lease found taken by another worker is lost (:class:`LeaseLost`). Other
        errors (after retries) are published (:class:`GroupError`); the lease is kept and
        the next save writes the newer position."""
        async with self._lock(shard_id):
            lease = self._held.get(shard_id)
            if lease is None or not self.holds(shard_id):
                return False
            try:
                self._held[shard_id] = await self._store(lease, processed)
            except LeaseLostError as error:
                self._lose(shard_id, str(error))
                return False
            except DDBStreamsError as error:
                # Kept for the next save (or the hand-off): the lease is still ours.
                self._events.publish(
                    GroupError(self.group, f"checkpointing {shard_id}", str(error))
                )
                return False
        return True

    async def _store(self, lease: Lease, processed: Processed) -> Lease:
        """Write ``processed`` into ``lease`` unless it is there already (the caller holds
        the lease's lock); the lease as now stored."""
        if processed.checkpoint == lease.checkpoint:
            return lease
        stored = await self._table.checkpoint(
            lease, self.worker_id, processed.checkpoint, checkpoint_time=processed.created
        )
        self._saved(lease.key, processed.checkpoint)
        return stored

    def _saved(self, shard_id: str, checkpoint: str) -> None:
        self._events.publish(CheckpointSaved(self._stream_arn, self.group, shard_id, checkpoint))

    async def finish_shard(self, shard_id: str) -> None:
        """``shard_id`` was processed to its end: create its children's leases, checkpoint
        it ``SHARD_END`` and let it go. Errors are published; the next owner of the lease
        reads the (empty) rest of the shard and finishes it."""
        try:
            children = await child_shard_ids(
                self._client, self._stream_arn, shard_id, self._clock, self._describe_pacer
            )
            async with self._lock(shard_id):
                lease = self._held.get(shard_id)
                if lease is None:
                    return
                created = [
                    child
                    for child in children
                    if await self._table.create_lease(
                        child,
                        TRIM_HORIZON_CHECKPOINT,
                        parent_shard_ids=(shard_id,),
                        stream_arn=self._stream_arn,
                    )
                ]
                del self._held[shard_id]
                await self._table.end_shard(lease, self.worker_id, children)
                self._saved(shard_id, SHARD_END_CHECKPOINT)
        except LeaseLostError as error:
            self._publish_lost(shard_id, str(error))
            return
        except DDBStreamsError as error:
            self._events.publish(GroupError(self.group, f"ending {shard_id}", str(error)))
            return
        if created:
            self._events.publish(LeasesCreated(self.group, tuple(created)))
        self._events.publish(LeaseReleased(self.group, shard_id, self.worker_id, "shard_end"))
        self._announce_changes()

    async def leave(self) -> None:
        """Hand off every lease (in-flight batches finish, checkpoint, release), then leave
        the group. Publishes what fails; never raises a service error."""
        self.stop_taking()
        async with self._planning:  # a round under way takes nothing more, then ends
            held = list(self._held)
        await asyncio.gather(*(self._hand_off(key, "stopping") for key in held))
        await self._membership.leave()

    def _drop_all(self) -> None:
        # The last renewal is older than the failover time (the process was paused, or the
        # table unreachable): others may have taken these leases already. Leases still
        # naming this worker are taken back through the counter check.
        for shard_id in list(self._held):
            self._lose(shard_id, "heartbeat not renewed within the failover time")

    def _announce_changes(self) -> None:
        """Leases were freed or created: others read the lease table at once (the next
        heartbeat says so), and this worker plans too."""
        self._membership.announce_changes()
        self._wake_planner.set()

    # -- planning ---------------------------------------------------------------------------

    async def _plan_round(self) -> None:
        try:
            async with self._planning:
                await self._plan()
        except DDBStreamsError as error:
            self._events.publish(GroupError(self.group, "lease planning", str(error)))

    async def _plan(self) -> None:
        leases = [
            lease
            for lease in await self._table.scan_leases()
            if lease.stream_arn in (None, self._stream_arn)
        ]
        now = self._clock.monotonic()
        self._liveness.observe_leases(leases, now)
        plan = self._planned(leases, now)
        self._describe_pacer.rate = _DESCRIBE_RATE / len(self._membership.alive(now))
        # Lost: the lease names another owner, or is gone. (A counter ahead of ours with
        # this worker as owner is our own write whose response is still on its way: no
        # other worker can write a lease without making itself the owner.)
        by_key = {lease.key: lease for lease in leases}
        for shard_id in list(self._held):
            lease = by_key.get(shard_id)
            if lease is None or lease.owner != self.worker_id:
                owner = "deleted" if lease is None else f"taken by {lease.owner or 'nobody'}"
                self._lose(shard_id, f"lease {owner}")
        for key in [k for k, lock in self._locks.items() if k not in by_key and not lock.locked()]:
            del self._locks[key]  # the lease is gone (finished and deleted)
        for lease in plan.take:
            await self._take(lease)
        for key in plan.release:
            self._background.spawn(self._hand_off(key, "balance"))
        if leases and all(lease.finished for lease in leases) and not self.stream_ended.is_set():
            await self._check_stream_end()
        if plan.leader:
            await self._lead({lease.key: lease for lease in leases}, now)

    def _planned(self, leases: list[Lease], now: float) -> LeasePlan:
        foreign = self._liveness.foreign_owners()
        # A worker that just joined may take leases before this one has read its item:
        # only an owner foreign for a whole failover time is reported.
        self._foreign = {owner: self._foreign.get(owner, now) for owner in foreign}
        settled = {o for o, since in self._foreign.items() if now - since >= self._failover}
        if settled - self._reported_foreign:
            self._events.publish(ForeignWorkers(self.group, tuple(sorted(settled))))
        self._reported_foreign = settled
        # Leases naming this worker that it does not hold (dropped when its heartbeat
        # lapsed) are planned as takes: it takes them back through the counter check.
        return plan_leases(
            leases,
            me=self.worker_id,
            held={key: lease.counter for key, lease in self._held.items()},
            alive=self._membership.alive(now),
            expired=self._liveness.expired_keys(leases, now),
            foreign=foreign,
            max_leases=self._options.max_leases,
        )

    async def _check_stream_end(self) -> None:
        """Every lease of the stream is finished: if the stream is disabled, it was read to
        its end (no shard will ever come): set :attr:`stream_ended`."""
        await self._describe_pacer.wait()
        description = await self._client.describe_stream_page(self._stream_arn, limit=1)
        if description.stream_status in ("DISABLING", "DISABLED"):
            self.stream_ended.set()

    async def _take(self, lease: Lease) -> None:
        host = self._host
        assert host is not None, "attach() a host before run()"
        expired = lease.owner is not None and lease.owner != self.worker_id
        # Under the lease's lock: this worker's writes to one lease never overlap (a
        # hand-off still writing must not meet a take of a stale view of the same lease).
        async with self._lock(lease.key):
            if not self._taking:
                return
            try:
                taken = await self._table.take(lease, self.worker_id)
            except LeaseLostError:
                return  # another worker took it first, or the view was stale
        self._held[taken.key] = taken
        parent = min(taken.parent_shard_ids) if taken.parent_shard_ids else None
        host.start_shard(taken.key, taken.start(), parent)
        self._events.publish(
            LeaseTaken(self.group, taken.key, self.worker_id, lease.owner, expired=expired)
        )

    async def _hand_off(self, shard_id: str, reason: LeaseReleaseReason) -> None:
        """Finish the shard's in-flight batches, checkpoint and release its lease."""
        host = self._host
        position = await host.stop_shard(shard_id) if host is not None else None
        async with self._lock(shard_id):
            lease = self._held.pop(shard_id, None)
            if lease is None:
                return
            try:
                if position is not None:
                    lease = await self._store(lease, position)
                await self._table.release(lease, self.worker_id)
            except LeaseLostError as error:
                self._publish_lost(shard_id, str(error))
                return
            except DDBStreamsError as error:
                # The lease stays ours in the table: it expires, and the next owner
                # resumes at the checkpoint stored before.
                self._events.publish(GroupError(self.group, f"releasing {shard_id}", str(error)))
                return
        self._events.publish(LeaseReleased(self.group, shard_id, self.worker_id, reason))
        self._announce_changes()

    def _lose(self, shard_id: str, reason: str) -> None:
        """Forget a lease that is not ours any more and stop its shard in the background."""
        if self._held.pop(shard_id, None) is None:
            return
        self._publish_lost(shard_id, reason)
        if self._host is not None:
            self._background.spawn(self._host.stop_shard(shard_id))

    def _publish_lost(self, shard_id: str, reason: str) -> None:
        self._events.publish(LeaseLost(self.group, shard_id, self.worker_id, reason))

    # -- the leader's work ------------------------------------------------------------------

    async def _lead(self, leases: dict[str, Lease], now: float) -> None:
        """Create missing leases (at once for a new group, then every discovery interval)
        and delete finished leases nothing needs any more."""
        last = self._last_discovery
        if leases and last is not None and now - last < self._options.discovery_interval:
            return
        self._last_discovery = now
        alive = self._membership.alive(now)
        created = await maintain(
            self._table,
            self._client,
            self._stream_arn,
            leases,
            from_latest=self._from_latest,
            now=self._clock.time(),
        )
        await remove_departed(self._table, self._membership.workers, leases, alive)
        if created:
            self._events.publish(LeasesCreated(self.group, tuple(created)))
            self._announce_changes()

    # -- helpers ----------------------------------------------------------------------------

    def _lock(self, shard_id: str) -> asyncio.Lock:
        """Serialises the writes of one lease (each is conditional on the last one's counter)."""
        return self._locks.setdefault(shard_id, asyncio.Lock())

    async def aclose(self) -> None:
        """Cancel the hand-offs and shard stops still running, and wait for them."""
        await self._background.aclose()


async def child_shard_ids(
    client: StreamsClient, stream_arn: str, shard_id: str, clock: Clock, pacer: CallPacer
) -> list[str]:
    """The ids of ``shard_id``'s children, asking again while they are not listed yet
    (empty for a shard of a disabled stream, or when they stay unlisted for
    ``_CHILD_DISCOVERY_TIMEOUT``: the leader's discovery creates them later)."""
    deadline = clock.monotonic() + _CHILD_DISCOVERY_TIMEOUT
    attempt = 0
    while True:
        await pacer.wait()
        children = await client.child_shards(stream_arn, shard_id)
        if children:
            return sorted(child.shard_id for child in children)
        await pacer.wait()  # one page tells the stream's status; no full listing
        description = await client.describe_stream_page(stream_arn, limit=1)
        if description.stream_status in ("DISABLING", "DISABLED"):
            return []
        attempt += 1
        if clock.monotonic() >= deadline:
            return []
        await clock.sleep(exponential_delay(0.2, 5.0, attempt))


async def maintain(
    table: LeaseTable,
    client: StreamsClient,
    stream_arn: str,
    leases: Mapping[str, Lease],
    *,
    from_latest: bool,
    now: float,
) -> list[str]:
    """The leader's discovery: create the leases the stream's listing says are due, delete
    finished leases nothing needs (:mod:`._discovery`). Returns the shards given leases."""
    description = await client.describe_stream(stream_arn)
    created = []
    for new in leases_to_create(description.shards, leases, from_latest=from_latest):
        parents = (new.parent_shard_id,) if new.parent_shard_id else ()
        # A LATEST lease remembers when it was made (a minute early, for clocks that
        # differ): read from then if it changes hands before its first record.
        moment = now - 60.0 if new.checkpoint == LATEST_CHECKPOINT else None
        if await table.create_lease(
            new.shard_id,
            new.checkpoint,
            parent_shard_ids=parents,
            stream_arn=stream_arn,
            checkpoint_time=moment,
        ):
            created.append(new.shard_id)
    for key in deletable_leases(leases):
        await table.delete_finished(key)
    return created


async def remove_departed(
    table: LeaseTable,
    workers: Iterable[WorkerRecord],
    leases: Mapping[str, Lease],
    alive: frozenset[str],
) -> None:
    """Remove the items of workers that are gone (crashed, or paused for long) and own no
    lease any more; one that comes back writes its item again with its next heartbeat."""
    owners = {lease.owner for lease in leases.values()}
    for worker in workers:
        if worker.worker_id not in alive and worker.worker_id not in owners:
            await table.remove_worker(worker.worker_id)
