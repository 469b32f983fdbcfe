"""Live mode: the stream keeps changing (writes, roll-overs, splits) while readers run."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from typing import Any

import botocore.session
import orjson
import pytest

from ddbstreams.testing._server import SimulatorServer
from ddbstreams.testing.simulator import (
    LiveWriter,
    SimulatedClock,
    SimulatorTransport,
    StreamSimulator,
)

START = 1_795_933_880.0


def live_tasks() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "ddbstreams live writer"]


async def test_writes_at_the_virtual_rate_with_rollovers_and_splits() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=3)
    wall = time.monotonic()

    async with sim.live(
        writes_per_second=200.0, rollover_every=2.0, split_every=5.0, duration=10.0
    ) as live:
        await live.wait()

    assert live.finished
    assert clock.monotonic() == pytest.approx(10.0)
    assert live.writes == 2000 == len(sim.history)
    per_second = Counter(int(c.approximate_creation_time - START) for c in sim.history)
    assert per_second == {second: 200 for second in range(10)}
    assert (live.rollovers, live.splits) == (4, 1)  # at 2, 4, 6, 8 s; at 5 s
    shards = sim.shards()
    assert len(shards) == 2 + 4 + 2  # roots, one child per roll-over, two for the split
    assert len(sim.open_shard_ids()) == 3
    assert {c.event_name for c in sim.history} == {"INSERT", "MODIFY", "REMOVE"}
    assert {c.shard_id for c in sim.history} == {s.shard_id for s in shards}
    assert time.monotonic() - wall < 10.0  # ten virtual seconds, not ten real ones


async def test_splits_stop_at_max_open_shards() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=4)

    async with sim.live(
        writes_per_second=10.0,
        rollover_every=None,
        split_every=1.0,
        max_open_shards=4,
        duration=20.0,
    ) as live:
        await live.wait()

    assert len(sim.open_shard_ids()) == 4
    assert live.splits == 3
    assert live.rollovers == 0
    assert live.writes == 200


async def test_concurrent_pollers_read_every_change_while_the_stream_churns() -> None:
    """A crude follower (one polling task per shard, discovery every second) sharing the
    virtual clock with the writer: many concurrent sleepers, and nothing is lost."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=5, describe_page_limit=3)
    transport = SimulatorTransport(sim)
    read: list[str] = []
    shard_counts: list[int] = []

    async def follow_shard(shard_id: str) -> None:
        it: str | None = (
            await transport.call(
                "GetShardIterator",
                {
                    "StreamArn": sim.stream_arn,
                    "ShardId": shard_id,
                    "ShardIteratorType": "TRIM_HORIZON",
                },
            )
        )["ShardIterator"]
        while it is not None:
            body = orjson.loads(await transport.get_records_body({"ShardIterator": it}))
            read.extend(r["dynamodb"]["SequenceNumber"] for r in body["Records"])
            it = body.get("NextShardIterator")
            if not body["Records"]:
                await clock.sleep(0.25)

    async def discover(group: asyncio.TaskGroup, live: LiveWriter) -> None:
        started: set[str] = set()
        while True:
            start: str | None = None
            while True:
                params: dict[str, Any] = {"StreamArn": sim.stream_arn}
                if start is not None:
                    params["ExclusiveStartShardId"] = start
                description = (await transport.call("DescribeStream", params))["StreamDescription"]
                for shard in description["Shards"]:
                    if shard["ShardId"] not in started:
                        started.add(shard["ShardId"])
                        group.create_task(follow_shard(shard["ShardId"]))
                start = description.get("LastEvaluatedShardId")
                if start is None:
                    break
            shard_counts.append(len(started))
            if live.finished:
                return
            await clock.sleep(1.0)

    async with (
        sim.live(
            writes_per_second=100.0, rollover_every=1.5, split_every=2.5, duration=12.0
        ) as live,
        asyncio.TaskGroup() as group,
    ):
        group.create_task(discover(group, live))
        await live.wait()
        sim.disable_stream()  # close every shard (no children) so each follower ends

    assert sorted(read, key=int) == [c.sequence_number for c in sim.history]
    assert len(read) == live.writes == 1200
    assert shard_counts == sorted(shard_counts)
    assert shard_counts[0] == 2 < shard_counts[-1]  # shards appeared while reading


async def test_stop_ends_writing_early() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)

    async with sim.live(writes_per_second=200.0, rollover_every=None, split_every=None) as live:
        await clock.sleep(3.0025)
        live.stop()
        await live.wait()
        assert live.finished
        assert not live.running

    assert live.writes == 601  # at 0, 0.005, ..., 3.0 s
    await clock.sleep(10.0)
    assert live.writes == 601
    assert live_tasks() == []


async def test_leaving_the_block_cancels_the_writer() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    async with sim.live(writes_per_second=50.0) as live:
        await clock.sleep(1.0)
        assert live.running
    assert live.finished
    assert live_tasks() == []
    writes = live.writes
    await clock.sleep(5.0)
    assert live.writes == writes


async def test_writer_ends_when_the_stream_is_disabled() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    async with sim.live(writes_per_second=10.0) as live:
        await clock.sleep(2.05)
        sim.disable_stream()
        await live.wait()
    assert live.writes == 21
    assert len(sim.history) == 21


async def test_a_failing_writer_cancels_the_block_and_raises() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    calls = 0
    original = sim.put_item

    def broken(item: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 5:
            raise RuntimeError("disk on fire")
        return original(item)

    sim.put_item = broken  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="disk on fire"):
        async with sim.live(writes_per_second=10.0, rollover_every=None, split_every=None):
            await clock.sleep(3600.0)  # cancelled by the writer's failure
    assert clock.monotonic() < 3600.0
    assert live_tasks() == []
    # The task running this test was not left with a pending cancellation.
    await asyncio.sleep(0)


async def test_the_body_error_wins_over_a_clean_writer() -> None:
    sim = StreamSimulator()
    with pytest.raises(KeyError):
        async with sim.live(writes_per_second=10.0):
            raise KeyError("from the body")
    assert live_tasks() == []


async def test_same_seed_same_churn() -> None:
    async def run(seed: int) -> list[tuple[str, str, str]]:
        clock = SimulatedClock()
        sim = StreamSimulator(clock=clock, seed=seed, partitions=2)
        async with sim.live(writes_per_second=50.0, rollover_every=1.0, duration=6.0) as live:
            await live.wait()
        return [(c.shard_id, c.sequence_number, c.event_name) for c in sim.history]

    assert await run(9) == await run(9)
    assert await run(9) != await run(10)


def test_sort_key_tables_and_argument_checks() -> None:
    sim = StreamSimulator(key_names=("pk", "sk"))
    for bad in (
        {"writes_per_second": -1.0},
        {"rollover_every": 0.0},
        {"split_every": -2.0},
        {"max_open_shards": 0},
        {"keys": 0},
        {"duration": -1.0},
    ):
        with pytest.raises(ValueError, match=next(iter(bad))):
            sim.live(**bad)
    with sim.live(writes_per_second=1000.0, rollover_every=None, duration=0.05) as live:
        assert live.join(10.0)
    assert live.writes == 50
    assert all(set(c.keys) == {"pk", "sk"} and c.keys["sk"] == 0 for c in live.changes)
    with pytest.raises(RuntimeError, match="once"), live:
        pass


def test_thread_mode_paced_by_real_time_served_over_http() -> None:
    sim = StreamSimulator(partitions=2, seed=6)
    with (
        SimulatorServer(sim) as server,
        sim.live(
            writes_per_second=500.0, rollover_every=0.05, split_every=None, duration=0.2
        ) as live,
    ):
        assert live.join(10.0)
        streams = botocore.session.get_session().create_client(
            "dynamodbstreams",
            endpoint_url=server.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        shards = streams.describe_stream(StreamArn=sim.stream_arn)["StreamDescription"]["Shards"]

    # Events sit on a fixed grid, so the counts are exact however the thread was scheduled.
    assert live.writes == 100
    assert live.rollovers == 3
    assert len(shards) == 5
    closed = [s for s in shards if "EndingSequenceNumber" in s["SequenceNumberRange"]]
    assert len(closed) == 3


def test_thread_mode_ends_at_once_without_a_table() -> None:
    sim = StreamSimulator()
    sim.delete_table()
    with sim.live(writes_per_second=100.0) as live:
        assert live.join(10.0)  # nothing to write to: it ends at once
    assert live.writes == 0


async def test_thread_mode_can_be_awaited_from_async_code() -> None:
    sim = StreamSimulator()
    with sim.live(writes_per_second=400.0, rollover_every=None, duration=0.05) as live:
        await asyncio.wait_for(live.wait(), timeout=30.0)
        assert live.finished
        await live.wait()  # already finished: returns at once
    assert live.writes == 20
