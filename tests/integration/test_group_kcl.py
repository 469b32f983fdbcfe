"""A group adopts a lease table written by a Java KCL application, leaves a valid KCL lease
table behind, and detects Java workers still renewing leases on it (not supported).

The Java items are built as the KCL's serializers write them (see the fixtures and
citations in tests/unit/test_lease_format.py); the tables live in DynamoDB Local, the stream
in the simulator served over HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ddbstreams import ForeignWorkers, LeaseTaken
from ddbstreams.coordination import LeaseTable
from ddbstreams.local import DynamoDBLocal
from ddbstreams.testing import SimulatorServer, StreamSimulator
from tests.support.groups import FAST, Handled, Worker, group_name, local_client, running, wait_for
from tests.unit.test_lease_format import kcl3_worker_metric_stats, kcl_from_dynamo_record


@pytest.fixture
def sim() -> StreamSimulator:
    sim = StreamSimulator(partitions=3, seed=5, retention=None)
    for n in range(30):
        sim.put_item({"pk": f"item-{n}", "n": n})
    return sim


@pytest.fixture
def server(sim: StreamSimulator, ddb_local: DynamoDBLocal) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as served:
        yield served


def java_table(sim: StreamSimulator) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """Lease items a Java KCL application (adapter 2.x on KCL 3.x, and 1.x-style items)
    left after shard 0 rolled over: shard 0 finished, its child and shard 1 held by Java
    workers that stopped, shard 2 free. Returns the items and the sequence numbers a group
    adopting them must handle (everything after each checkpoint)."""
    first, second, third = sorted(s.shard_id for s in sim.shards())
    sim.roll_over(first)
    child = next(s.shard_id for s in sim.shards() if s.parent_shard_id == first)
    for n in range(30, 40):
        sim.put_item({"pk": f"item-{n}", "n": n})
    by_shard: dict[str, list[str]] = {}
    for change in sim.history:
        by_shard.setdefault(change.shard_id, []).append(change.sequence_number)
    common = {"ownerSwitchesSinceCheckpoint": {"N": "0"}, "checkpointSubSequenceNumber": {"N": "0"}}
    items = {
        first: {  # KCL 1.x: read to its end, children recorded
            "leaseKey": {"S": first},
            "leaseCounter": {"N": "7"},
            "checkpoint": {"S": "SHARD_END"},
            "childShardIds": {"SS": [child]},
            **common,
        },
        child: {  # KCL 1.x, held by a stopped Java worker, checkpointed at its 2nd record
            "leaseKey": {"S": child},
            "leaseCounter": {"N": "17"},
            "leaseOwner": {"S": "java-worker-1"},
            "checkpoint": {"S": by_shard[child][1]},
            "parentShardId": {"SS": [first]},
            **common,
        },
        second: {  # KCL 3.x, held by a stopped Java worker, checkpointed at its 3rd record
            "leaseKey": {"S": second},
            "leaseCounter": {"N": "1093"},
            "leaseOwner": {"S": "java-worker-2"},
            "checkpoint": {"S": by_shard[second][2]},
            "throughputKBps": {"N": "12.5"},
            "entityType": {"S": "LEASE"},
            **common,
        },
        third: {  # KCL 3.x, free, never checkpointed
            "leaseKey": {"S": third},
            "leaseCounter": {"N": "0"},
            "checkpoint": {"S": "TRIM_HORIZON"},
            "entityType": {"S": "LEASE"},
            **common,
        },
    }
    due = set(by_shard[child][2:]) | set(by_shard[second][3:]) | set(by_shard[third])
    return items, due


async def write_items(server: SimulatorServer, group: str, items: list[dict[str, Any]]) -> None:
    async with local_client(server.endpoint_url) as client:
        table = LeaseTable(client.tables, group, clock=client.clock)
        await table.ensure()
        for item in items:
            await client.tables.put_item(group, item)


async def scan(server: SimulatorServer, group: str) -> list[dict[str, Any]]:
    async with local_client(server.endpoint_url) as client:
        return await client.tables.scan(group)


async def test_a_group_adopts_a_java_kcl_table_and_leaves_a_valid_one(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    items, due = java_table(sim)
    await write_items(server, group, [*items.values(), kcl3_worker_metric_stats()])
    handled = Handled()
    started = time.monotonic()
    async with running(Worker(server.endpoint_url, sim.stream_arn, group, handled, "py-1")):
        await wait_for(lambda: {r.sequence_number for r in handled.records()} >= due, within=30)
    took = time.monotonic() - started
    got = [r.sequence_number for r in handled.records()]
    assert set(got) == due, "resumed right after each Java checkpoint, nothing before"
    assert len(got) == len(set(got))
    taken = {e.shard_id: e for _, e in handled.events if isinstance(e, LeaseTaken)}
    java_owned = [key for key, item in items.items() if "leaseOwner" in item]
    for key in java_owned:
        assert taken[key].expired, "a stopped Java worker's lease is taken once expired"
        assert taken[key].previous_owner == items[key]["leaseOwner"]["S"]
    assert took >= FAST.failover_time  # not before the Java leases expired
    stored = await scan(server, group)
    leases = [kcl_from_dynamo_record(item) for item in stored]
    assert None in leases  # the KCL 3.x worker-metrics item is still there, still no lease
    by_key = {
        lease["leaseKey"]: (lease, item)
        for lease, item in zip(leases, stored, strict=True)
        if lease
    }
    assert set(by_key) <= set(items)
    for key, (lease, _) in by_key.items():
        assert lease["leaseCounter"] > int(items[key]["leaseCounter"]["N"]) or key not in taken
        assert lease["leaseOwner"] is None  # released at the stop
    second = sorted(s.shard_id for s in sim.shards() if s.parent_shard_id is None)[1]
    assert by_key[second][1]["throughputKBps"] == {"N": "12.5"}  # KCL 3.x's own attribute kept


async def test_java_workers_still_renewing_leases_are_reported_and_left_alone(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    items, _ = java_table(sim)
    await write_items(server, group, list(items.values()))
    second = next(key for key, item in items.items() if "throughputKBps" in item)

    async def java_renews() -> None:
        async with local_client(server.endpoint_url) as client:
            counter = 1093
            while True:
                await client.tables.update_item(
                    group,
                    {"leaseKey": {"S": second}},
                    update_expression="SET leaseCounter = :next",
                    condition_expression="leaseCounter = :seen",
                    values={":next": {"N": str(counter + 1)}, ":seen": {"N": str(counter)}},
                )
                counter += 1
                await asyncio.sleep(FAST.failover_time / 3)

    handled = Handled()
    renewing = asyncio.create_task(java_renews())
    try:
        async with running(Worker(server.endpoint_url, sim.stream_arn, group, handled, "py-1")):
            await wait_for(
                lambda: any(isinstance(e, ForeignWorkers) for _, e in handled.events), within=20
            )
            await asyncio.sleep(2 * FAST.failover_time)
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
    foreign = [e for _, e in handled.events if isinstance(e, ForeignWorkers)]
    assert foreign[0].owners == ("java-worker-2",)
    taken = {e.shard_id for _, e in handled.events if isinstance(e, LeaseTaken)}
    assert second not in taken
    assert {r.shard_id for r in handled.records()}.isdisjoint({second})
