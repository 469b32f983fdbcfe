"""Follow mode at the scale users have: hundreds of shards open for hours, writes on all.

A busy table has hundreds of shards that each stay open for about four hours. Every test
here keeps 200+ shards open for hours of virtual time while writes keep arriving on every
one of them, and checks that every record is delivered (exactly once by the reader, at
least once and in item order by the consumer). Follow tests whose shards close within
seconds cannot catch a reader that follows only some open shards: a closing shard frees
whatever slot it held.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from dataclasses import replace
from typing import Any

import orjson
import pytest

import ddbstreams
from ddbstreams import Record
from ddbstreams.testing import SimulatedClock, SimulatorServer, StreamSimulator
from tests.support.consumers import virtual_consumer
from tests.support.shards import assert_complete_in_item_order, key_per_shard, write_on_every_shard

SHARDS = 240
HOURS = 2.0
WRITE_EVERY = 300.0  # seconds between two writes to the same shard
# Idle shards are polled at most every 20 s here (the default is faster): this keeps the
# number of simulated calls (and the test's real time) small without changing what is read.
SLOW_IDLE = ddbstreams.ReaderOptions(
    idle_poll_delay=1.0, idle_poll_max_delay=20.0, describe_interval=600.0
)


async def test_reader_follows_hundreds_of_open_shards_for_hours() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=SHARDS, seed=7, retention=None)
    got: list[Record] = []
    reader = ddbstreams.StreamReader(
        sim.stream_arn,
        follow=True,
        start=ddbstreams.TRIM_HORIZON,
        client=sim.client(),
        clock=clock,
        options=SLOW_IDLE,
    )
    async with reader, asyncio.timeout(120):
        written = await _read_while_writing(sim, clock, reader, got)
    assert written == SHARDS * int(HOURS * 3600 / WRITE_EVERY)
    assert len(sim.open_shard_ids()) == SHARDS  # no shard closed: nothing freed a slot
    assert_complete_in_item_order(sim, got, exactly_once=True)
    assert {r.shard_id for r in got} == set(sim.open_shard_ids())


async def _read_while_writing(
    sim: StreamSimulator,
    clock: SimulatedClock,
    reader: ddbstreams.StreamReader[Record],
    got: list[Record],
) -> int:
    async def read() -> None:
        async for record in reader:
            got.append(record)

    reading = asyncio.create_task(read())
    try:
        written = await write_on_every_shard(sim, clock, duration=HOURS * 3600, every=WRITE_EVERY)
        # Time for the slowest idle poll to come round once more.
        await clock.sleep(2 * SLOW_IDLE.idle_poll_max_delay)
    finally:
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    return written


@pytest.mark.parametrize("parallelization_factor", [1, 3])
async def test_consumer_handles_hundreds_of_open_shards_for_hours(
    parallelization_factor: int,
) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=SHARDS, seed=11, retention=None)
    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        handled.extend(records)

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        reader_options=SLOW_IDLE,
        parallelization_factor=parallelization_factor,
    )
    async with asyncio.timeout(120), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await write_on_every_shard(sim, clock, duration=HOURS * 3600, every=WRITE_EVERY)
        await clock.sleep(2 * SLOW_IDLE.idle_poll_max_delay)
        await consumer.stop()
        await running
    assert len(sim.open_shard_ids()) == SHARDS
    assert_complete_in_item_order(sim, handled, exactly_once=True)
    # Everything handled is checkpointed: a restart would handle nothing again.
    checkpoint = consumer.checkpoint()
    for change in sim.history[-SHARDS:]:
        assert int(checkpoint.positions[change.shard_id]) >= int(change.sequence_number)


def test_tail_follow_prints_changes_of_every_open_shard() -> None:
    """`tail --follow` over HTTP (real time): 120 open shards, a change on each, all printed."""
    shards = 120
    sim = StreamSimulator(partitions=shards, seed=5)
    keys = key_per_shard(sim)
    env = {
        **os.environ,
        "AWS_ACCESS_KEY_ID": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "PYTHONUNBUFFERED": "1",
    }
    with SimulatorServer(sim) as server:
        tail = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ddbstreams",
                "tail",
                sim.stream_arn,
                "--follow",
                "--from",
                "latest",
                "--max-records",
                str(2 * shards),
                "--endpoint-url",
                server.endpoint_url,
                "--region",
                "us-east-1",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            _wait_until_every_shard_is_polled(sim, shards, tail)
            for round_number in range(2):
                for key in keys.values():
                    sim.put_item({"pk": key, "round": round_number})
            out, err = tail.communicate(timeout=60)
        finally:
            if tail.poll() is None:
                tail.kill()
                tail.communicate()
    assert tail.returncode == 0, err.decode()
    printed = [orjson.loads(line) for line in out.splitlines()]
    assert {p["sequenceNumber"] for p in printed} == {c.sequence_number for c in sim.history}
    assert len({p["shardId"] for p in printed}) == shards


def _wait_until_every_shard_is_polled(
    sim: StreamSimulator, shards: int, process: subprocess.Popen[Any]
) -> None:
    """A LATEST iterator only sees what is written after it was taken: wait for them all."""
    deadline = time.monotonic() + 60
    while len(sim.get_records_calls) < shards:
        assert process.poll() is None, process.communicate()[1].decode()
        assert time.monotonic() < deadline, f"{len(sim.get_records_calls)} of {shards} polled"
        time.sleep(0.05)


async def test_children_of_hundreds_of_shards_start_and_describe_stays_within_its_rate() -> None:
    """Every shard rolls over at once (children listed late, as the service does): each
    child is found and read, and DescribeStream stays within the reader's rate instead of
    one call (or one full listing) per ended shard."""
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock, partitions=SHARDS, seed=13, retention=None, children_visibility_delay=5.0
    )
    options = replace(SLOW_IDLE, describe_rate=5.0)
    got: list[Record] = []
    reader = ddbstreams.StreamReader(
        sim.stream_arn, follow=True, client=sim.client(), clock=clock, options=options
    )

    async def read() -> None:
        async for record in reader:
            got.append(record)

    async with reader, asyncio.timeout(120):
        reading = asyncio.create_task(read())
        await write_on_every_shard(sim, clock, duration=600, every=300)
        sim.roll_over()  # every shard at once
        rolled_at = clock.monotonic()
        describes_before = sim.calls["DescribeStream"]
        await write_on_every_shard(sim, clock, duration=600, every=300)
        await clock.sleep(2 * options.idle_poll_max_delay)
        describes = sim.calls["DescribeStream"] - describes_before
        elapsed = clock.monotonic() - rolled_at
        reading.cancel()
        await asyncio.gather(reading, return_exceptions=True)
    assert len(sim.open_shard_ids()) == SHARDS
    assert_complete_in_item_order(sim, got, exactly_once=True)
    assert {r.shard_id for r in got} >= set(sim.open_shard_ids())
    assert describes <= options.describe_rate * elapsed
    # A few listings (3 pages each), not one DescribeStream per ended shard.
    assert describes < SHARDS / 2
