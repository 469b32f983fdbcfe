"""LeaseTable against DynamoDB Local, through the real aiobotocore transport.

Lost responses are injected by :class:`FaultyTransport`, a transport around the real one
that forwards a call and then, once, reports a retryable failure although the call landed.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import pytest

from ddbstreams import LeaseLostError, LeaseTableError, TableNotFoundError
from ddbstreams._clock import SystemClock
from ddbstreams.client._streams import StreamsClient
from ddbstreams.coordination import (
    SHARD_END_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
    Lease,
    LeaseTable,
    WorkerRecord,
    WorkerState,
    new_lease_item,
)
from ddbstreams.local import DynamoDBLocal
from ddbstreams.transport._aws import AwsTransport
from ddbstreams.transport._seam import Transport, TransportError

pytestmark = pytest.mark.integration

SHARD = "shardId-00000001700000000000-aaaaaaaa"
PARENT = "shardId-00000001690000000000-pppppppp"
CHILD_A = "shardId-00000001710000000000-cccccccc"
CHILD_B = "shardId-00000001710000000001-dddddddd"
SEQ1 = "300000000000000499659"
SEQ2 = "300000000000000499700"
ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/Orders/stream/2024-05-01T00:00:00.000"


class FaultyTransport:
    """The real transport, plus faults: ``lose(operation)`` makes the next such call land
    and then fail with a retryable error (its response "lost"); ``before_loss`` runs after
    the call landed and before the loss is reported. ``calls`` records every operation."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.calls: list[str] = []
        self._lost: dict[str, int] = {}
        self.before_loss: Callable[[], None] | None = None

    def lose(self, operation: str, times: int = 1) -> None:
        self._lost[operation] = self._lost.get(operation, 0) + times

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(operation)
        response = await self.inner.call(operation, params)
        if self._lost.get(operation, 0) > 0:
            self._lost[operation] -= 1
            if self.before_loss is not None:
                self.before_loss()
            raise TransportError("InternalServerError", "the response was lost", 500)
        return response

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        return await self.inner.get_records_body(params)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
async def transport(ddb_local: DynamoDBLocal) -> FaultyTransport:
    return FaultyTransport(AwsTransport(**ddb_local.client_kwargs()))


@pytest.fixture
async def client(transport: FaultyTransport) -> AsyncIterator[StreamsClient]:
    async with StreamsClient(transport=transport) as streams:
        yield streams


@pytest.fixture
async def other_client(ddb_local: DynamoDBLocal) -> AsyncIterator[StreamsClient]:
    """Another process's client."""
    async with StreamsClient(**ddb_local.client_kwargs()) as streams:
        yield streams


@pytest.fixture
def group(ddb_local: DynamoDBLocal) -> Iterator[str]:
    """A unique group name; its tables (if a test created them) are deleted afterwards."""
    name = f"ddbstreams-group-{uuid.uuid4().hex[:12]}"
    yield name
    ddb_local.delete_table(name)
    ddb_local.delete_table(name + "-ddbstreams-workers")


@pytest.fixture
async def table(client: StreamsClient, group: str) -> LeaseTable:
    leases = LeaseTable(client.tables, group, clock=SystemClock())
    await leases.ensure()
    return leases


@pytest.fixture
async def rival(other_client: StreamsClient, table: LeaseTable) -> LeaseTable:
    """The same lease table as another worker process sees it."""
    return LeaseTable(other_client.tables, table.name, clock=SystemClock())


def raw_item(ddb_local: DynamoDBLocal, table: str, key: str) -> dict[str, Any] | None:
    response = ddb_local.dynamodb_client().get_item(
        TableName=table, Key={"leaseKey": {"S": key}}, ConsistentRead=True
    )
    item: dict[str, Any] | None = response.get("Item")
    return item


async def new_lease(table: LeaseTable, key: str = SHARD) -> Lease:
    assert await table.create_lease(key, TRIM_HORIZON_CHECKPOINT, stream_arn=ARN)
    lease = await table.get_lease(key)
    assert lease is not None
    return lease


# --------------------------------------------------------------------------- tables


async def test_ensure_creates_both_tables_on_demand_and_is_idempotent(
    ddb_local: DynamoDBLocal, client: StreamsClient, group: str
) -> None:
    leases = LeaseTable(client.tables, group, clock=SystemClock())
    assert (leases.name, leases.workers_name) == (group, f"{group}-ddbstreams-workers")
    with pytest.raises(TableNotFoundError, match=group):
        await leases.ensure(create=False)
    await leases.ensure()
    dynamodb = ddb_local.dynamodb_client()
    for name, key in ((group, "leaseKey"), (leases.workers_name, "workerId")):
        description = dynamodb.describe_table(TableName=name)["Table"]
        assert description["TableStatus"] == "ACTIVE"
        assert description["KeySchema"] == [{"AttributeName": key, "KeyType": "HASH"}]
        assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # Again, and from another table object: the tables are used as they are.
    await leases.ensure()
    await LeaseTable(client.tables, group, clock=SystemClock()).ensure(create=False)
    assert await leases.scan_leases() == []
    assert await leases.scan_workers() == []


@pytest.mark.parametrize("which", ["lease", "workers"])
async def test_ensure_refuses_a_table_with_another_key_schema(
    ddb_local: DynamoDBLocal, client: StreamsClient, group: str, which: str
) -> None:
    name = group if which == "lease" else f"{group}-ddbstreams-workers"
    ddb_local.dynamodb_client().create_table(
        TableName=name,
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "N"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(LeaseTableError, match=rf"{name}'.*not a {which} table.*pk HASH S, sk"):
        await LeaseTable(client.tables, group, clock=SystemClock()).ensure()


# --------------------------------------------------------------------------- creating


async def test_create_lease_exactly_once(ddb_local: DynamoDBLocal, table: LeaseTable) -> None:
    created = await asyncio.gather(
        *(
            table.create_lease(SHARD, TRIM_HORIZON_CHECKPOINT, parent_shard_ids=[PARENT])
            for _ in range(5)
        )
    )
    assert sorted(created) == [False, False, False, False, True]
    assert not await table.create_lease(SHARD, SEQ1)
    assert raw_item(ddb_local, table.name, SHARD) == new_lease_item(
        SHARD, TRIM_HORIZON_CHECKPOINT, parent_shard_ids=[PARENT]
    )
    assert await table.get_lease(SHARD) == Lease(
        SHARD, None, 0, TRIM_HORIZON_CHECKPOINT, parent_shard_ids=frozenset({PARENT})
    )
    assert await table.get_lease("shardId-missing") is None


# --------------------------------------------------------------------------- owner writes


async def test_take_checkpoint_release_and_end_shard(
    ddb_local: DynamoDBLocal, table: LeaseTable
) -> None:
    lease = await new_lease(table)
    mine = await table.take(lease, "w1")
    assert (mine.owner, mine.counter, mine.owner_switches) == ("w1", 1, 0)
    assert mine.stream_arn == ARN
    mine = await table.checkpoint(mine, "w1", SEQ1)
    assert (mine.checkpoint, mine.counter) == (SEQ1, 2)
    # Another worker takes it over (say it expired): the owner switch is counted.
    theirs = await table.take(mine, "w2")
    assert (theirs.owner, theirs.counter, theirs.owner_switches) == ("w2", 3, 1)
    theirs = await table.checkpoint(theirs, "w2", SEQ2)
    assert (theirs.owner_switches, theirs.counter) == (0, 4)
    await table.release(theirs, "w2")
    released = await table.get_lease(SHARD)
    assert released is not None
    assert (released.owner, released.counter, released.checkpoint) == (None, 5, SEQ2)
    assert "leaseOwner" not in (raw_item(ddb_local, table.name, SHARD) or {})
    # Releasing again finds the lease as that release left it: done (idempotent). But
    # the released lease can no longer be checkpointed.
    await table.release(theirs, "w2")
    with pytest.raises(LeaseLostError, match=SHARD):
        await table.checkpoint(theirs, "w2", SEQ2)

    mine = await table.take(released, "w1")
    assert not await table.delete_finished(SHARD)  # not finished
    ended = await table.end_shard(mine, "w1", [CHILD_B, CHILD_A])
    assert (ended.owner, ended.checkpoint, ended.counter) == (None, SHARD_END_CHECKPOINT, 7)
    assert ended.finished
    assert ended.child_shard_ids == {CHILD_A, CHILD_B}
    item = raw_item(ddb_local, table.name, SHARD)
    assert item is not None
    assert item["childShardIds"] == {"SS": [CHILD_A, CHILD_B]}
    assert item["checkpointSubSequenceNumber"] == {"N": "0"}
    assert await table.delete_finished(SHARD)
    assert await table.get_lease(SHARD) is None
    assert not await table.delete_finished(SHARD)  # gone


async def test_end_shard_without_children_and_delete_lease(table: LeaseTable) -> None:
    lease = await table.take(await new_lease(table), "w1")
    ended = await table.end_shard(lease, "w1", ())
    assert ended.child_shard_ids == frozenset()
    await table.delete_lease(SHARD)
    await table.delete_lease(SHARD)  # none: fine
    assert await table.scan_leases() == []


async def test_two_takers_race_for_one_lease(table: LeaseTable, rival: LeaseTable) -> None:
    lease = await new_lease(table)
    results = await asyncio.gather(
        table.take(lease, "w1"), rival.take(lease, "w2"), return_exceptions=True
    )
    won = [r for r in results if isinstance(r, Lease)]
    lost = [r for r in results if isinstance(r, LeaseLostError)]
    assert len(won) == 1
    assert len(lost) == 1
    stored = await table.get_lease(SHARD)
    assert stored == won[0]
    assert stored is not None
    assert stored.counter == 1


async def test_a_checkpoint_after_the_lease_was_taken_is_fenced(
    table: LeaseTable, rival: LeaseTable
) -> None:
    mine = await table.take(await new_lease(table), "w1")
    mine = await table.checkpoint(mine, "w1", SEQ1)
    # w1 stalls; w2 finds the lease expired and takes it.
    theirs = await rival.take(mine, "w2")
    with pytest.raises(LeaseLostError, match=r"owned by 'w2' with counter 3"):
        await table.checkpoint(mine, "w1", SEQ2)
    with pytest.raises(LeaseLostError):
        await table.end_shard(mine, "w1", [CHILD_A])
    with pytest.raises(LeaseLostError):
        await table.release(mine, "w1")
    assert await table.get_lease(SHARD) == theirs
    # Taking again needs the counter now in the table.
    with pytest.raises(LeaseLostError):
        await table.take(mine, "w1")
    # A lease that is gone is lost too.
    await rival.delete_lease(SHARD)
    with pytest.raises(LeaseLostError, match="no longer exists"):
        await rival.checkpoint(theirs, "w2", SEQ2)


# --------------------------------------------------------------------------- lost responses


async def test_lost_responses_are_recognised_as_success(
    table: LeaseTable, transport: FaultyTransport
) -> None:
    lease = await new_lease(table)
    transport.lose("UpdateItem")
    transport.calls.clear()
    mine = await table.take(lease, "w1")
    # The first attempt landed, its retry found the condition spent, a read settled it.
    assert transport.calls == ["UpdateItem", "UpdateItem", "GetItem"]
    assert (mine.owner, mine.counter) == ("w1", 1)
    transport.lose("UpdateItem")
    mine = await table.checkpoint(mine, "w1", SEQ1)
    assert (mine.checkpoint, mine.counter) == (SEQ1, 2)
    transport.lose("UpdateItem")
    ended = await table.end_shard(mine, "w1", [CHILD_A])
    assert (ended.checkpoint, ended.counter, ended.owner) == (SHARD_END_CHECKPOINT, 3, None)

    other = await table.take(await new_lease(table, CHILD_A), "w1")
    transport.lose("UpdateItem")
    await table.release(other, "w1")
    released = await table.get_lease(CHILD_A)
    assert released is not None
    assert (released.owner, released.counter) == (None, 2)

    transport.lose("PutItem")  # a create whose answer is lost finds the lease there
    assert not await table.create_lease(CHILD_B, TRIM_HORIZON_CHECKPOINT)
    assert await table.get_lease(CHILD_B) is not None


async def test_a_lost_response_overtaken_by_another_worker_is_lost(
    ddb_local: DynamoDBLocal, table: LeaseTable, transport: FaultyTransport
) -> None:
    mine = await table.take(await new_lease(table), "w1")

    def another_worker_takes_it() -> None:
        ddb_local.dynamodb_client().update_item(
            TableName=table.name,
            Key={"leaseKey": {"S": SHARD}},
            UpdateExpression="SET leaseOwner = :o, leaseCounter = :c",
            ExpressionAttributeValues={":o": {"S": "w2"}, ":c": {"N": "3"}},
        )

    transport.before_loss = another_worker_takes_it
    transport.lose("UpdateItem")
    with pytest.raises(LeaseLostError, match="'w2'"):
        await table.checkpoint(mine, "w1", SEQ1)
    stored = await table.get_lease(SHARD)
    assert stored is not None
    assert (stored.owner, stored.counter, stored.checkpoint) == ("w2", 3, SEQ1)


# --------------------------------------------------------------------------- KCL attributes


async def test_attributes_written_by_a_kcl_survive(
    ddb_local: DynamoDBLocal, table: LeaseTable
) -> None:
    kcl_item = {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "1093"},
        "leaseOwner": {"S": "worker-java-new"},
        "checkpointOwner": {"S": "worker-java-old"},
        "ownerSwitchesSinceCheckpoint": {"N": "2"},
        "checkpoint": {"S": SEQ1},
        "checkpointSubSequenceNumber": {"N": "0"},
        "pendingCheckpoint": {"S": SEQ2},
        "pendingCheckpointSubSequenceNumber": {"N": "0"},
        "pendingCheckpointState": {"B": b"state"},
        "parentShardId": {"SS": [PARENT]},
        "throughputKBps": {"N": "12.5"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "340282366920938463463374607431768211455"},
        "entityType": {"S": "LEASE"},
    }
    ddb_local.dynamodb_client().put_item(TableName=table.name, Item=kcl_item)
    kept = {
        name: kcl_item[name]
        for name in (
            "parentShardId",
            "throughputKBps",
            "startingHashKey",
            "endingHashKey",
            "entityType",
        )
    }

    def stored() -> dict[str, Any]:
        item = raw_item(ddb_local, table.name, SHARD)
        assert item is not None
        assert {name: item.get(name) for name in kept} == kept
        return item

    lease = await table.get_lease(SHARD)
    assert lease is not None
    mine = await table.take(lease, "w1")
    item = stored()
    assert "checkpointOwner" not in item
    assert item["ownerSwitchesSinceCheckpoint"] == {"N": "3"}
    assert item["pendingCheckpoint"] == {"S": SEQ2}  # untouched until a checkpoint
    mine = await table.checkpoint(mine, "w1", SEQ2)
    item = stored()
    assert not {"pendingCheckpoint", "pendingCheckpointSubSequenceNumber"} & item.keys()
    assert "pendingCheckpointState" not in item
    assert item["ownerSwitchesSinceCheckpoint"] == {"N": "0"}
    await table.release(mine, "w1")
    item = stored()
    assert item["leaseCounter"] == {"N": "1096"}
    assert "leaseOwner" not in item


# --------------------------------------------------------------------------- scans


async def test_scan_leases_skips_items_that_are_not_leases(
    ddb_local: DynamoDBLocal, table: LeaseTable
) -> None:
    await new_lease(table, CHILD_B)
    await new_lease(table, CHILD_A)
    ddb_local.dynamodb_client().put_item(
        TableName=table.name,
        Item={
            "leaseKey": {"S": "Migration3.0"},
            "entityType": {"S": "CLIENT_VERSION_MIGRATION"},
            "cv": {"S": "CLIENT_VERSION_3X"},
        },
    )
    assert [lease.key for lease in await table.scan_leases()] == [CHILD_A, CHILD_B]
    assert await table.get_lease("Migration3.0") is None


async def test_a_malformed_lease_names_table_key_and_attribute(
    ddb_local: DynamoDBLocal, table: LeaseTable
) -> None:
    ddb_local.dynamodb_client().put_item(
        TableName=table.name,
        Item={"leaseKey": {"S": SHARD}, "leaseCounter": {"S": "1"}, "checkpoint": {"S": SEQ1}},
    )
    with pytest.raises(LeaseTableError, match=rf"'{table.name}'.*'{SHARD}'.*'leaseCounter'"):
        await table.scan_leases()


async def test_scans_read_every_page(
    ddb_local: DynamoDBLocal, client: StreamsClient, table: LeaseTable, transport: FaultyTransport
) -> None:
    # DynamoDB pages scans at 1 MB: 400 leases of ~3 KB take two pages at least.
    padding = {"S": "x" * 3000}
    keys = [f"shardId-00000001700000000000-{i:08d}" for i in range(400)]
    dynamodb = ddb_local.dynamodb_client()
    for start in range(0, len(keys), 25):
        requests = [
            {"PutRequest": {"Item": {**new_lease_item(key, SEQ1), "padding": padding}}}
            for key in keys[start : start + 25]
        ]
        dynamodb.batch_write_item(RequestItems={table.name: requests})
    transport.calls.clear()
    leases = await table.scan_leases()
    assert [lease.key for lease in leases] == keys
    assert transport.calls.count("Scan") >= 2
    # The page size can be set too.
    transport.calls.clear()
    items = await client.tables.scan(table.name, page_size=150)
    assert len(items) == 400
    assert transport.calls.count("Scan") >= 3


# --------------------------------------------------------------------------- workers


def worker(worker_id: str, beat: int = 0, state: WorkerState = WorkerState.RUNNING) -> WorkerRecord:
    return WorkerRecord(
        worker_id=worker_id,
        heartbeat=beat,
        state=state,
        changes=2,
        stream_arn=ARN,
        host="host-1",
        pid=4242,
        started_at="2026-11-29T06:31:20Z",
        lease_count=3,
    )


async def test_heartbeat_scan_and_remove_workers(
    ddb_local: DynamoDBLocal, table: LeaseTable, rival: LeaseTable
) -> None:
    first = await table.heartbeat(worker("w1"))
    assert first == worker("w1", 1)
    second = await table.heartbeat(first)
    assert second.heartbeat == 2
    await rival.heartbeat(worker("w0", 5, WorkerState.STOPPING))
    assert await table.scan_workers() == [worker("w0", 6, WorkerState.STOPPING), second]
    item = ddb_local.dynamodb_client().get_item(
        TableName=table.workers_name, Key={"workerId": {"S": "w1"}}, ConsistentRead=True
    )["Item"]
    assert item == {
        "workerId": {"S": "w1"},
        "heartbeat": {"N": "2"},
        "state": {"S": "RUNNING"},
        "changes": {"N": "2"},
        "streamArn": {"S": ARN},
        "host": {"S": "host-1"},
        "pid": {"N": "4242"},
        "startedAt": {"S": "2026-11-29T06:31:20Z"},
        "leaseCount": {"N": "3"},
    }
    # Workers never show up among the leases.
    assert await table.scan_leases() == []
    await table.remove_worker("w0")
    await table.remove_worker("w0")  # gone already: fine
    assert await table.scan_workers() == [second]


async def test_a_malformed_worker_item(ddb_local: DynamoDBLocal, table: LeaseTable) -> None:
    ddb_local.dynamodb_client().put_item(
        TableName=table.workers_name,
        Item={"workerId": {"S": "w9"}, "heartbeat": {"N": "1"}, "state": {"S": "NAPPING"}},
    )
    with pytest.raises(LeaseTableError, match=r"workers table .*'w9'.*'state'.*NAPPING"):
        await table.scan_workers()
