"""Faults on the lease and workers tables: throttling, 5xx, responses lost after the write
landed, a slow table. No worker loses a lease because of them, no shard has two owners at
once, every record is handled exactly once, and each fault is reported as an event."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Iterator, Mapping
from typing import Any

import pytest

from ddbstreams import (
    GroupOptions,
    LeaseLost,
    LeaseReleased,
    LeaseTaken,
    RequestRetried,
    StreamsClient,
    Throttled,
)
from ddbstreams.local import DynamoDBLocal
from ddbstreams.testing import SimulatorServer, StreamSimulator
from ddbstreams.transport._aws import AwsTransport
from ddbstreams.transport._seam import TransportError
from tests.support.groups import Handled, Worker, group_name, running, wait_for
from tests.support.shards import assert_complete_in_item_order, key_per_shard

TABLE_OPERATIONS = frozenset({"PutItem", "UpdateItem", "GetItem", "Scan", "DeleteItem"})
SHARDS = 8


class FaultyTables:
    """The real transport, with faults on state-table calls only (seeded): throttling and
    5xx before the call, a lost response after it landed, or a slow answer."""

    def __init__(self, inner: AwsTransport, seed: int) -> None:
        self.inner = inner
        self.rng = random.Random(seed)
        self.injected: dict[str, int] = {"throttled": 0, "5xx": 0, "lost": 0, "slow": 0}

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if operation not in TABLE_OPERATIONS:
            return await self.inner.call(operation, params)
        roll = self.rng.random()
        if roll < 0.05:
            self.injected["throttled"] += 1
            raise TransportError("ProvisionedThroughputExceededException", "slow down", 400)
        if roll < 0.08:
            self.injected["5xx"] += 1
            raise TransportError("InternalServerError", "injected", 500)
        if roll < 0.13:
            self.injected["slow"] += 1
            await asyncio.sleep(0.3)
        response = await self.inner.call(operation, params)
        if roll > 0.96:
            self.injected["lost"] += 1
            raise TransportError("InternalServerError", "the response was lost", 500)
        return response

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        return await self.inner.get_records_body(params)

    async def close(self) -> None:
        await self.inner.close()


@pytest.fixture
def sim() -> StreamSimulator:
    return StreamSimulator(partitions=SHARDS, seed=9, retention=None)


@pytest.fixture
def server(sim: StreamSimulator, ddb_local: DynamoDBLocal) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as served:
        yield served


def faulty_worker(
    server: SimulatorServer, sim: StreamSimulator, group: str, handled: Handled, name: str
) -> tuple[Worker, FaultyTables]:
    transport = FaultyTables(
        AwsTransport(
            endpoint_url=server.endpoint_url,
            region_name="ddblocal",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ),
        seed=sum(map(ord, name)),
    )
    worker = Worker(
        server.endpoint_url,
        sim.stream_arn,
        group,
        handled,
        name,
        options=GroupOptions(failover_time=4.0, membership_interval=0.25, lease_scan_interval=1.0),
        client=StreamsClient(transport=transport),
    )
    return worker, transport


async def test_transient_faults_on_the_tables_lose_no_lease_and_make_no_second_owner(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    handled = Handled()
    first, first_faults = faulty_worker(server, sim, group, handled, "w1")
    second, second_faults = faulty_worker(server, sim, group, handled, "w2")
    keys = list(key_per_shard(sim).values())
    async with running(first, second):
        for n in range(40):
            for key in keys:
                sim.put_item({"pk": key, "n": n})
            await asyncio.sleep(0.2)
        written = {c.sequence_number for c in sim.history}
        await wait_for(lambda: written <= {r.sequence_number for r in handled.records()}, within=30)
    injected = {k: n + second_faults.injected[k] for k, n in first_faults.injected.items()}
    assert all(count > 0 for count in injected.values()), injected
    events = handled.events
    lost = [e for _, e in events if isinstance(e, LeaseLost)]
    assert not lost, f"leases lost to transient faults: {lost[:3]}"
    holder: dict[str, str] = {}
    for worker, event in events:
        if isinstance(event, LeaseTaken):
            assert event.shard_id not in holder, f"{event.shard_id} taken while {holder} held it"
            holder[event.shard_id] = worker
        elif isinstance(event, LeaseReleased) and holder.get(event.shard_id) == worker:
            del holder[event.shard_id]
    assert_complete_in_item_order(sim, handled.records(), exactly_once=True)
    retried = {e.operation for _, e in events if isinstance(e, RequestRetried | Throttled)}
    assert retried & TABLE_OPERATIONS, "table retries are reported as events"
