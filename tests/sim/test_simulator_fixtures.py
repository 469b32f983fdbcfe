"""The simulator fixtures the pytest plugin gives users."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import ddbstreams
from ddbstreams.testing import SimulatorServer, StreamSimulator


async def test_stream_simulator_fixture_reads_back(stream_simulator: StreamSimulator) -> None:
    stream_simulator.put_item({"pk": "a", "v": 1})

    async with ddbstreams.StreamReader(
        stream_simulator.stream_arn, client=stream_simulator.client()
    ) as reader:
        records = [record async for record in reader]

    assert [(r.event_name, r.new_image) for r in records] == [("INSERT", {"pk": "a", "v": 1})]


def test_make_stream_simulator_takes_options(
    make_stream_simulator: Callable[..., StreamSimulator],
) -> None:
    sim = make_stream_simulator(partitions=3, seed=4)
    assert len(sim.open_shard_ids()) == 3


def test_simulator_server_serves_the_fixture_stream(
    stream_simulator: StreamSimulator, simulator_server: SimulatorServer, monkeypatch: Any
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    stream_simulator.put_item({"pk": "over-http"})

    records = list(
        ddbstreams.read(
            stream_simulator.table_name,
            endpoint_url=simulator_server.endpoint_url,
            region_name="us-east-1",
        )
    )

    assert [r.keys for r in records] == [{"pk": "over-http"}]


async def test_simulated_clock_fixture_drives_a_follow_reader_in_virtual_time(
    simulated_clock: Any, make_stream_simulator: Callable[..., StreamSimulator]
) -> None:
    sim = make_stream_simulator(clock=simulated_clock, partitions=2, seed=3)
    start = simulated_clock.monotonic()
    got: list[ddbstreams.Record] = []
    all_read = asyncio.Event()
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, clock=simulated_clock
    ) as reader:
        async with sim.live(writes_per_second=20.0, rollover_every=1.0, duration=5.0) as live:
            await live.wait()

        async def consume() -> None:
            async for record in reader:
                got.append(record)
                if len(got) == len(sim.history):
                    all_read.set()

        consuming = asyncio.create_task(consume())
        await asyncio.wait_for(all_read.wait(), 30)
        consuming.cancel()

    assert len(got) == len(sim.history) == 100
    assert simulated_clock.monotonic() - start >= 5.0
