"""Worker groups in one process: the stream from the simulator over HTTP, the lease and
workers tables in DynamoDB Local (real time, short failover)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from ddbstreams import LATEST, BlockingConsumer, LeaseReleased, LeasesCreated, LeaseTaken
from ddbstreams._clock import SystemClock
from ddbstreams.coordination import LeaseTable
from ddbstreams.local import DynamoDBLocal
from ddbstreams.testing import SimulatorServer, StreamSimulator
from tests.support.groups import FAST, Handled, Worker, group_name, local_client, running, wait_for
from tests.support.shards import assert_complete_in_item_order, key_per_shard

SHARDS = 8


@pytest.fixture
def sim() -> StreamSimulator:
    return StreamSimulator(partitions=SHARDS, seed=3, retention=None)


@pytest.fixture
def server(sim: StreamSimulator, ddb_local: DynamoDBLocal) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as served:
        yield served


def write_round(sim: StreamSimulator, round_number: int) -> int:
    keys = key_per_shard(sim)
    for key in keys.values():
        sim.put_item({"pk": key, "n": round_number})
    return len(keys)


async def leases_of(server: SimulatorServer, group: str) -> dict[str, object]:
    async with local_client(server.endpoint_url) as client:
        table = LeaseTable(client.tables, group, clock=client.clock)
        return {lease.key: lease for lease in await table.scan_leases()}


async def test_one_worker_reads_every_shard_and_checkpoints_each_in_its_lease(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    handled = Handled()
    write_round(sim, 0)
    async with running(Worker(server.endpoint_url, sim.stream_arn, group, handled, "w1")):
        await wait_for(lambda: len(handled.calls) >= SHARDS, within=20)
        for round_number in range(1, 3):
            write_round(sim, round_number)
        await wait_for(lambda: len(handled.calls) >= 3 * SHARDS, within=20)
    assert_complete_in_item_order(sim, handled.records(), exactly_once=True)
    leases = await leases_of(server, group)
    assert set(leases) == set(sim.open_shard_ids())
    last = {}
    for change in sim.history:
        last[change.shard_id] = change.sequence_number
    created = {
        r.sequence_number: r.approximate_creation_time.timestamp() for r in handled.records()
    }
    for key, lease in leases.items():
        assert lease.owner is None  # released when the worker stopped
        assert lease.checkpoint == last[key]
        assert lease.checkpoint_time == created[last[key]]  # for `ddbstreams lag`


async def test_a_rollover_creates_child_leases_and_children_follow_their_parents(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    handled = Handled()
    write_round(sim, 0)
    async with running(Worker(server.endpoint_url, sim.stream_arn, group, handled, "w1")):
        await wait_for(lambda: len(handled.calls) >= SHARDS, within=20)
        for shard_id in list(sim.open_shard_ids()):
            sim.roll_over(shard_id)
        write_round(sim, 1)
        await wait_for(lambda: len(handled.calls) >= 2 * SHARDS, within=30)
    assert_complete_in_item_order(sim, handled.records(), exactly_once=True)
    leases = await leases_of(server, group)
    children = set(sim.open_shard_ids())
    assert children <= set(leases)
    for key in children:
        assert leases[key].parent_shard_ids  # KCL's parentShardId
    finished = {key for key, lease in leases.items() if lease.finished}
    assert finished <= {s.shard_id for s in sim.shards()} - children


async def test_two_workers_share_the_shards_and_a_planned_stop_hands_them_over(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    handled = Handled()
    write_round(sim, 0)
    first = Worker(server.endpoint_url, sim.stream_arn, group, handled, "w1")
    second = Worker(server.endpoint_url, sim.stream_arn, group, handled, "w2")
    async with running(first, second):
        await wait_for(
            lambda: len(first.consumer.leases()) == len(second.consumer.leases()) == SHARDS // 2,
            within=30,
        )
        await wait_for(lambda: len(handled.calls) >= SHARDS, within=20)
        await first.stop()
        await wait_for(lambda: len(second.consumer.leases()) == SHARDS, within=10)
        write_round(sim, 1)
        await wait_for(lambda: len(handled.calls) >= 2 * SHARDS, within=20)
    assert_complete_in_item_order(sim, handled.records(), exactly_once=True)
    released = [e for w, e in handled.events if w == "w1" and isinstance(e, LeaseReleased)]
    assert {e.reason for e in released} == {"balance", "stopping"} or {
        e.reason for e in released
    } == {"stopping"}
    taken = [e for w, e in handled.events if w == "w2" and isinstance(e, LeaseTaken)]
    assert len({e.shard_id for e in taken}) == SHARDS
    # Handed over, not expired: no timing asserted here (bench/workers.py measures it).
    assert not any(e.expired for e in taken)


async def test_child_leases_are_created_exactly_once_whichever_worker_finishes_the_parent(
    sim: StreamSimulator, server: SimulatorServer
) -> None:
    group = group_name()
    handled = Handled()
    write_round(sim, 0)
    first = Worker(server.endpoint_url, sim.stream_arn, group, handled, "w1")
    second = Worker(server.endpoint_url, sim.stream_arn, group, handled, "w2")
    async with running(first, second):
        await wait_for(lambda: len(handled.calls) >= SHARDS, within=30)
        parents = list(sim.open_shard_ids())
        for shard_id in parents:
            sim.roll_over(shard_id)
        write_round(sim, 1)
        await wait_for(lambda: len(handled.calls) >= 2 * SHARDS, within=30)
    created = [
        shard_id
        for _, event in handled.events
        if isinstance(event, LeasesCreated)
        for shard_id in event.shard_ids
    ]
    children = set(sim.open_shard_ids())
    assert sorted(c for c in created if c in children) == sorted(children)
    assert_complete_in_item_order(sim, handled.records(), exactly_once=True)


def test_a_blocking_consumer_runs_as_a_worker_of_a_group(
    sim: StreamSimulator, server: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    write_round(sim, 0)
    got: list[str] = []
    consumer = BlockingConsumer(
        sim.stream_arn,
        lambda records: got.extend(r.sequence_number for r in records),
        group=group_name(),
        group_options=FAST,
        endpoint_url=server.endpoint_url,
        region_name="ddblocal",
    )
    runner = threading.Thread(target=consumer.run)
    runner.start()
    deadline = time.monotonic() + 20
    while len(got) < SHARDS and time.monotonic() < deadline:
        time.sleep(0.05)
    consumer.stop()
    runner.join(10)
    assert sorted(got) == sorted(c.sequence_number for c in sim.history)
    assert consumer.consumer.leases() == frozenset()  # released at the stop


async def test_a_group_from_latest_misses_nothing_written_while_a_lease_changed_hands(
    ddb_local: DynamoDBLocal,
) -> None:
    # Record times on the wall clock, as on AWS: a lease remembers when it was made.
    sim = StreamSimulator(partitions=SHARDS, seed=3, retention=None, clock=SystemClock())
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as server:
        await _latest_leases_changing_hands(sim, server)


async def _latest_leases_changing_hands(sim: StreamSimulator, server: SimulatorServer) -> None:
    group = group_name()
    handled = Handled()
    write_round(sim, 0)  # before the group: LATEST leaves these out
    before = {c.sequence_number for c in sim.history}
    first = Worker(
        server.endpoint_url, sim.stream_arn, group, handled, "w1", starting_position=LATEST
    )
    async with running(first):
        await wait_for(lambda: len(first.consumer.leases()) == SHARDS, within=20)
    # Every lease released at LATEST, nothing of it processed; then records arrive.
    write_round(sim, 1)
    second = Worker(
        server.endpoint_url, sim.stream_arn, group, handled, "w2", starting_position=LATEST
    )
    async with running(second):
        await wait_for(lambda: len(handled.calls) >= SHARDS, within=20)
    got = {r.sequence_number for r in handled.records()}
    # Everything written while nobody held the leases is handled. (A lease is read from a
    # minute before it was made, for clocks that differ: records of that minute may come
    # too, as at-least-once allows.)
    assert {c.sequence_number for c in sim.history} - before <= got
