"""The lease table of a worker group, and its workers table (I/O over ``client.tables``).

:class:`LeaseTable` reads and writes the KCL-format lease table named after the group (see
:mod:`ddbstreams.coordination._lease`) and the group's workers table
(``<group>-ddbstreams-workers``), which keeps worker liveness out of the lease table: a KCL
1.x worker reads every lease-table item as a lease.

Every lease write is an UpdateItem whose expression touches only the attributes it
changes, so attributes this library does not know (KCL 3.x ``throughputKBps``, hash key
ranges...) are kept. Writes of an owner are conditional on the lease counter it last saw
(fencing): a write that finds the lease owned by another worker, or its counter moved on,
raises :class:`~ddbstreams.LeaseLostError`. A condition that fails after a lost response
(the first attempt landed, its answer did not arrive, the retry found the counter spent) is
re-read: when the table holds exactly what this write would have left, it landed.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

from ddbstreams._clock import Clock
from ddbstreams._errors import (
    ConditionFailedError,
    ConfigurationError,
    LeaseLostError,
    LeaseTableError,
)
from ddbstreams.client._tables import StateTableClient
from ddbstreams.coordination._lease import (
    CHECKPOINT,
    CHECKPOINT_OWNER,
    CHECKPOINT_SUB_SEQUENCE,
    CHECKPOINT_TIME,
    CHILD_SHARD_IDS,
    LEASE_COUNTER,
    LEASE_KEY,
    LEASE_OWNER,
    OWNER_SWITCHES,
    PENDING_CHECKPOINT_ATTRIBUTES,
    SHARD_END_CHECKPOINT,
    ItemReader,
    Lease,
    check_checkpoint,
    lease_from_item,
    new_lease_item,
)
from ddbstreams.model._arn import is_table_name

__all__ = ["WORKERS_TABLE_SUFFIX", "LeaseTable", "WorkerRecord", "WorkerState"]

WORKERS_TABLE_SUFFIX: Final = "-ddbstreams-workers"
"""The workers table of group ``g`` is ``g + WORKERS_TABLE_SUFFIX``."""

_WORKER_ID: Final = "workerId"


class WorkerState(enum.Enum):
    """What a worker says it is doing: taking part, or handing its leases off to leave."""

    RUNNING = "RUNNING"
    STOPPING = "STOPPING"


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A worker's item in the workers table.

    ``heartbeat`` is a counter (+1 per heartbeat): others judge liveness by seeing it move
    on their own clocks, never by comparing wall clocks. ``changes`` is a counter bumped
    whenever the worker freed or created leases, so the others rescan the lease table at
    once. ``started_at`` is ISO 8601 UTC.
    """

    worker_id: str
    heartbeat: int
    state: WorkerState
    changes: int
    stream_arn: str
    host: str
    pid: int
    started_at: str
    lease_count: int


def _worker_item(record: WorkerRecord) -> dict[str, Any]:
    return {
        _WORKER_ID: {"S": record.worker_id},
        "heartbeat": {"N": str(record.heartbeat)},
        "state": {"S": record.state.value},
        "changes": {"N": str(record.changes)},
        "streamArn": {"S": record.stream_arn},
        "host": {"S": record.host},
        "pid": {"N": str(record.pid)},
        "startedAt": {"S": record.started_at},
        "leaseCount": {"N": str(record.lease_count)},
    }


def _worker_from_item(item: Mapping[str, Any], table: str) -> WorkerRecord:
    reader = ItemReader(item, f"workers table {table!r}", _WORKER_ID)
    state = reader.string("state")
    try:
        worker_state = WorkerState(state)
    except ValueError:
        raise reader.error("state", f"is not RUNNING or STOPPING: {state!r}") from None
    return WorkerRecord(
        worker_id=reader.string(_WORKER_ID),
        heartbeat=reader.integer("heartbeat"),
        state=worker_state,
        changes=reader.integer("changes"),
        stream_arn=reader.string("streamArn"),
        host=reader.string("host"),
        pid=reader.integer("pid"),
        started_at=reader.string("startedAt"),
        lease_count=reader.integer("leaseCount"),
    )


class _Expression:
    """Placeholders for the names and values of one request's expressions."""

    __slots__ = ("names", "values")

    def __init__(self) -> None:
        self.names: dict[str, str] = {}
        self.values: dict[str, Any] = {}

    def name(self, attribute: str) -> str:
        for placeholder, known in self.names.items():
            if known == attribute:
                return placeholder
        placeholder = f"#a{len(self.names)}"
        self.names[placeholder] = attribute
        return placeholder

    def value(self, value: Mapping[str, Any]) -> str:
        placeholder = f":v{len(self.values)}"
        self.values[placeholder] = dict(value)
        return placeholder

    def update(
        self,
        sets: Mapping[str, Mapping[str, Any]],
        adds: Mapping[str, Mapping[str, Any]],
        removes: Iterable[str],
    ) -> str:
        """An UpdateExpression: SET, then ADD, then REMOVE clauses."""
        clauses = []
        if sets:
            pairs = (f"{self.name(a)} = {self.value(v)}" for a, v in sets.items())
            clauses.append("SET " + ", ".join(pairs))
        if adds:
            pairs = (f"{self.name(a)} {self.value(v)}" for a, v in adds.items())
            clauses.append("ADD " + ", ".join(pairs))
        removed = [self.name(a) for a in removes]
        if removed:
            clauses.append("REMOVE " + ", ".join(removed))
        return " ".join(clauses)


def _n(number: int) -> dict[str, str]:
    return {"N": str(number)}


def _s(text: str) -> dict[str, str]:
    return {"S": text}


def _key_schema_error(table: Mapping[str, Any], name: str, kind: str, key: str) -> str | None:
    """Why ``table`` is not a ``kind`` table keyed by ``key`` (S) alone, or None if it is."""
    found = [(k.get("AttributeName"), k.get("KeyType")) for k in table.get("KeySchema") or ()]
    types = {
        d.get("AttributeName"): d.get("AttributeType")
        for d in table.get("AttributeDefinitions") or ()
    }
    if found == [(key, "HASH")] and types.get(key) == "S":
        return None
    shown = ", ".join(f"{n} {t} {types.get(n, '?')}" for n, t in found) or "none"
    return (
        f"table {name!r} is not a {kind}: its key schema is {shown}; a {kind} has the "
        f"partition key {key!r} (S) and no sort key"
    )


class LeaseTable:
    """The lease table ``group`` (KCL format) and the workers table of a worker group.

    Calls go through ``tables`` (a client's :attr:`~ddbstreams.StreamsClient.tables`: its
    retries and error mapping). ``clock`` paces the wait for new tables. Service errors are
    the client's (EndpointConnectionError, ThrottledError... after its retries).
    ConfigurationError when ``group`` is not a valid table name.
    """

    def __init__(self, tables: StateTableClient, group: str, *, clock: Clock) -> None:
        if not is_table_name(group) or len(group) + len(WORKERS_TABLE_SUFFIX) > 255:
            raise ConfigurationError(
                f"invalid group name {group!r}: it names the lease table, so it must be 3-"
                f"{255 - len(WORKERS_TABLE_SUFFIX)} characters of a-z, A-Z, 0-9, '_', '-', '.'"
            )
        self._tables = tables
        self._group = group
        self._clock = clock

    def __repr__(self) -> str:
        return f"LeaseTable({self._group!r})"

    @property
    def name(self) -> str:
        """The lease table's name: the group's (the KCL's application name)."""
        return self._group

    @property
    def workers_name(self) -> str:
        """The workers table's name, ``<group>-ddbstreams-workers``."""
        return self._group + WORKERS_TABLE_SUFFIX

    # ------------------------------------------------------------------ tables

    async def ensure(self, *, create: bool = True) -> None:
        """Make sure both tables exist and are ACTIVE.

        With ``create`` a missing table is created (on-demand capacity, hash key
        ``leaseKey`` / ``workerId`` of type S) and waited for. Without it a missing table
        raises :class:`~ddbstreams.TableNotFoundError`. LeaseTableError when an existing
        table has another key schema, or is being deleted.
        """
        for name, key, kind in (
            (self.name, LEASE_KEY, "lease table"),
            (self.workers_name, _WORKER_ID, "workers table"),
        ):
            table = await self._tables.ensure_table(
                name,
                attribute_definitions=[{"AttributeName": key, "AttributeType": "S"}],
                key_schema=[{"AttributeName": key, "KeyType": "HASH"}],
                create=create,
                clock=self._clock,
                unusable=LeaseTableError,
                kind=kind,
            )
            problem = _key_schema_error(table, name, kind, key)
            if problem is not None:
                raise LeaseTableError(problem)

    # ------------------------------------------------------------------ reading leases

    async def scan_leases(self) -> list[Lease]:
        """Every lease in the table (consistent scan, all pages), sorted by key; items that
        are not leases (KCL 3.x entityType) are skipped. LeaseTableError for a malformed
        lease item."""
        items = await self._tables.scan(self.name)
        leases = [lease_from_item(item, table=self.name) for item in items]
        return sorted((lease for lease in leases if lease is not None), key=lambda x: x.key)

    async def get_lease(self, key: str) -> Lease | None:
        """The lease ``key`` (strongly consistent read), or None if there is none."""
        item = await self._tables.get_item(self.name, {LEASE_KEY: _s(key)})
        return None if item is None else lease_from_item(item, table=self.name)

    # ------------------------------------------------------------------ writing leases

    async def create_lease(
        self,
        key: str,
        checkpoint: str,
        *,
        parent_shard_ids: Iterable[str] = (),
        stream_arn: str | None = None,
        checkpoint_time: float | None = None,
    ) -> bool:
        """Create the unassigned lease ``key`` (:func:`new_lease_item`) unless it exists.

        True if this call created it, False if the lease existed already (a retry after a
        lost response, finding its own first attempt, also says False).
        """
        item = new_lease_item(
            key,
            checkpoint,
            parent_shard_ids=parent_shard_ids,
            stream_arn=stream_arn,
            checkpoint_time=checkpoint_time,
        )
        try:
            await self._tables.put_item(
                self.name,
                item,
                condition_expression="attribute_not_exists(#k)",
                names={"#k": LEASE_KEY},
            )
        except ConditionFailedError:
            return False
        return True

    async def take(self, lease: Lease, owner: str) -> Lease:
        """Make ``owner`` the owner of ``lease``, conditional on the counter seen in it.

        Sets the owner and counter + 1, adds 1 to ``ownerSwitchesSinceCheckpoint`` when
        another worker owned it, removes a KCL 3.x ``checkpointOwner``. Returns the lease as
        now stored. LeaseLostError when the counter moved on (another worker wrote it).
        """
        switched = lease.owner is not None and lease.owner != owner
        expected = lease.counter + 1
        return await self._fenced(
            lease,
            owner,
            "take",
            sets={LEASE_OWNER: _s(owner), LEASE_COUNTER: _n(expected)},
            adds={OWNER_SWITCHES: _n(1)} if switched else {},
            removes=(CHECKPOINT_OWNER,),
            check_owner=False,
            landed=lambda now: now.owner == owner and now.counter == expected,
        )

    async def checkpoint(
        self, lease: Lease, owner: str, checkpoint: str, *, checkpoint_time: float | None = None
    ) -> Lease:
        """Store ``checkpoint`` in a lease ``owner`` holds; the lease as now stored.
        ``checkpoint_time``: the approximate creation time of the checkpointed record
        (``ddbstreamsCheckpointTime``, which the KCL ignores).

        Sets the checkpoint (sub-sequence 0), resets ``ownerSwitchesSinceCheckpoint``,
        counter + 1, and clears a KCL pending checkpoint; conditional on ``lease.counter``
        and the owner. LeaseLostError when another worker took the lease or wrote it since.
        ValueError (InvalidPositionError) for a checkpoint that is neither a sequence
        number nor a sentinel.
        """
        check_checkpoint(checkpoint)
        expected = lease.counter + 1
        return await self._fenced(
            lease,
            owner,
            "checkpoint",
            sets={
                CHECKPOINT: _s(checkpoint),
                CHECKPOINT_SUB_SEQUENCE: _n(0),
                OWNER_SWITCHES: _n(0),
                LEASE_COUNTER: _n(expected),
                **(
                    {}
                    if checkpoint_time is None
                    else {CHECKPOINT_TIME: {"N": repr(checkpoint_time)}}
                ),
            },
            removes=PENDING_CHECKPOINT_ATTRIBUTES,
            landed=lambda now: (
                now.owner == owner and now.counter == expected and now.checkpoint == checkpoint
            ),
        )

    async def release(self, lease: Lease, owner: str) -> None:
        """Give up a lease ``owner`` holds: remove the owner, counter + 1 (conditional on
        both). LeaseLostError when another worker has it (there is nothing to release)."""
        expected = lease.counter + 1
        await self._fenced(
            lease,
            owner,
            "release",
            sets={LEASE_COUNTER: _n(expected)},
            removes=(LEASE_OWNER,),
            landed=lambda now: now.owner is None and now.counter == expected,
        )

    async def end_shard(self, lease: Lease, owner: str, child_shard_ids: Collection[str]) -> Lease:
        """Mark the shard of a lease ``owner`` holds as read to its end, and let it go.

        Checkpoint ``SHARD_END`` (sub-sequence 0, owner switches 0, pending checkpoint
        cleared), ``childShardIds`` when there are children, counter + 1, no owner;
        conditional as :meth:`checkpoint`. Returns the lease as now stored.
        """
        expected = lease.counter + 1
        sets: dict[str, Mapping[str, Any]] = {
            CHECKPOINT: _s(SHARD_END_CHECKPOINT),
            CHECKPOINT_SUB_SEQUENCE: _n(0),
            OWNER_SWITCHES: _n(0),
            LEASE_COUNTER: _n(expected),
        }
        if child_shard_ids:
            sets[CHILD_SHARD_IDS] = {"SS": sorted(set(child_shard_ids))}
        return await self._fenced(
            lease,
            owner,
            "end_shard",
            sets=sets,
            removes=(LEASE_OWNER, *PENDING_CHECKPOINT_ATTRIBUTES),
            landed=lambda now: now.owner is None and now.counter == expected and now.finished,
        )

    async def delete_finished(self, key: str) -> bool:
        """Delete the lease ``key`` if its checkpoint is ``SHARD_END``; whether it did
        (False: no such lease, or not finished)."""
        try:
            await self._tables.delete_item(
                self.name,
                {LEASE_KEY: _s(key)},
                condition_expression="#c = :end",
                names={"#c": CHECKPOINT},
                values={":end": _s(SHARD_END_CHECKPOINT)},
            )
        except ConditionFailedError:
            return False
        return True

    async def delete_lease(self, key: str) -> None:
        """Delete the lease ``key`` whatever it holds (``leases reset``); none is fine."""
        await self._tables.delete_item(self.name, {LEASE_KEY: _s(key)})

    async def _fenced(
        self,
        lease: Lease,
        owner: str,
        action: str,
        *,
        sets: Mapping[str, Mapping[str, Any]],
        removes: Iterable[str],
        landed: Callable[[Lease], bool],
        adds: Mapping[str, Mapping[str, Any]] | None = None,
        check_owner: bool = True,
    ) -> Lease:
        """An UpdateItem of ``lease`` conditional on its counter (and on ``owner`` with
        ``check_owner``); the lease as stored after it. When the condition fails, the
        lease is re-read: if ``landed`` holds for it, this write landed (a lost response
        retried), else LeaseLostError."""
        expression = _Expression()
        update = expression.update(sets, adds or {}, removes)
        condition = f"{expression.name(LEASE_COUNTER)} = {expression.value(_n(lease.counter))}"
        if check_owner:
            condition += f" AND {expression.name(LEASE_OWNER)} = {expression.value(_s(owner))}"
        try:
            stored = await self._tables.update_item(
                self.name,
                {LEASE_KEY: _s(lease.key)},
                update_expression=update,
                condition_expression=condition,
                names=expression.names,
                values=expression.values,
                return_values="ALL_NEW",
            )
        except ConditionFailedError as exc:
            current = await self.get_lease(lease.key)
            if current is not None and landed(current):
                return current
            raise LeaseLostError(self._lost(lease, owner, action, current)) from exc
        after = lease_from_item(stored or {}, table=self.name)
        if after is None:
            raise LeaseTableError(
                f"lease table {self.name!r}: item {lease.key!r} is not a lease after {action}"
            )
        return after

    def _lost(self, lease: Lease, owner: str, action: str, current: Lease | None) -> str:
        where = f"lease {lease.key!r} in lease table {self.name!r}"
        if current is None:
            found = "the lease no longer exists"
        else:
            found = f"it is owned by {current.owner!r} with counter {current.counter}"
        return (
            f"{action} by {owner!r} refused: {where} changed since counter {lease.counter} "
            f"({found})"
        )

    # ------------------------------------------------------------------ workers

    async def heartbeat(self, record: WorkerRecord) -> WorkerRecord:
        """Write this worker's item with ``heartbeat`` + 1 (unconditionally); the record
        as written."""
        beat = replace(record, heartbeat=record.heartbeat + 1)
        await self._tables.put_item(self.workers_name, _worker_item(beat))
        return beat

    async def scan_workers(self) -> list[WorkerRecord]:
        """Every worker item (consistent scan, all pages), sorted by worker id.
        LeaseTableError for a malformed item."""
        items = await self._tables.scan(self.workers_name)
        workers = [_worker_from_item(item, self.workers_name) for item in items]
        return sorted(workers, key=lambda w: w.worker_id)

    async def remove_worker(self, worker_id: str) -> None:
        """Delete a worker's item (it left the group); none is fine."""
        await self._tables.delete_item(self.workers_name, {_WORKER_ID: _s(worker_id)})
