"""The simulator fixtures the pytest plugin gives users."""

from __future__ import annotations

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
