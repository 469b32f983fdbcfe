"""Injected faults: throttling, 5xx, connection resets and timeouts, in memory and over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from ddbstreams._errors import EndpointConnectionError as DDBEndpointConnectionError
from ddbstreams.client._backoff import RetryPolicy
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._position import ShardStart
from ddbstreams.testing._server import SimulatorServer, serve_simulator
from ddbstreams.testing.simulator import Faults, SimulatedClock, StreamSimulator
from ddbstreams.transport._seam import TransportError

NO_RETRIES = Config(retries={"total_max_attempts": 1})
CREDENTIALS: dict[str, Any] = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}


def botocore_client(endpoint_url: str, config: Config = NO_RETRIES) -> Any:
    return botocore.session.get_session().create_client(
        "dynamodbstreams",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        config=config,
        **CREDENTIALS,
    )


async def outcome(call: Any) -> tuple[str, int | None]:
    """("ok", None) or the (code, status) of the TransportError raised."""
    try:
        await call
    except TransportError as error:
        return error.code, error.status
    return "ok", None


async def describe_outcomes(sim: StreamSimulator, n: int) -> list[tuple[str, int | None]]:
    transport = sim.transport()
    return [
        await outcome(transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))
        for _ in range(n)
    ]


# --------------------------------------------------------------------------- in memory


async def test_each_fault_kind_comes_with_its_code_and_status_at_about_its_rate() -> None:
    faults = Faults(
        throttle_rate=0.2, server_error_rate=0.1, connection_reset_rate=0.1, timeout_rate=0.05
    )
    sim = StreamSimulator(faults=faults, seed=1)

    outcomes = await describe_outcomes(sim, 4000)

    counts = Counter(outcomes)
    assert set(counts) == {
        ("ok", None),
        ("LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
        ("ConnectionError", None),
        ("Timeout", None),
    }
    throttled = counts[("LimitExceededException", 400)] + counts[("ThrottlingException", 400)]
    # Fixed seed, so these are exact reruns; the bands only document the rates.
    assert 0.17 < throttled / 4000 < 0.23
    assert 0.08 < counts[("InternalServerError", 500)] / 4000 < 0.12
    assert 0.08 < counts[("ConnectionError", None)] / 4000 < 0.12
    assert 0.03 < counts[("Timeout", None)] / 4000 < 0.07
    assert sim.calls["DescribeStream"] == 4000
    assert sim.faults_injected == Counter({c: n for (c, _), n in counts.items() if c != "ok"})


async def test_faults_are_deterministic_per_seed_and_per_operation() -> None:
    faults = Faults(throttle_rate=0.3, connection_reset_rate=0.1)

    first = await describe_outcomes(StreamSimulator(faults=faults, seed=7), 200)
    again = await describe_outcomes(StreamSimulator(faults=faults, seed=7), 200)
    other = await describe_outcomes(StreamSimulator(faults=faults, seed=8), 200)

    assert first == again
    assert first != other

    # The n-th call of an operation draws the same fault whatever else happens in between.
    sim = StreamSimulator(faults=faults, seed=7)
    transport = sim.transport()
    interleaved = []
    for i in range(200):
        interleaved.append(
            await outcome(transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))
        )
        for _ in range(i % 3):
            await outcome(transport.call("ListStreams", {}))
    assert interleaved == first


async def test_faults_only_hit_the_chosen_operations_and_can_change_at_runtime() -> None:
    sim = StreamSimulator(faults=Faults(server_error_rate=1.0, operations={"GetRecords"}))
    sim.put_item({"pk": "a"})
    transport = sim.transport()
    (shard_id,) = sim.open_shard_ids()
    it = (
        await transport.call(
            "GetShardIterator",
            {"StreamArn": sim.stream_arn, "ShardId": shard_id, "ShardIteratorType": "TRIM_HORIZON"},
        )
    )["ShardIterator"]
    assert await transport.call("DescribeStream", {"StreamArn": sim.stream_arn})
    for _ in range(5):
        assert await outcome(transport.get_records_body({"ShardIterator": it})) == (
            "InternalServerError",
            500,
        )

    sim.set_faults(None)
    assert sim.faults is None
    assert b'"Records":[{' in await transport.get_records_body({"ShardIterator": it})
    sim.set_faults(Faults(timeout_rate=1.0))
    assert await outcome(transport.call("ListStreams", {})) == ("Timeout", None)
    assert sim.faults_injected == Counter({"InternalServerError": 5, "Timeout": 1})


def test_fault_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        Faults(throttle_rate=1.5)
    with pytest.raises(ValueError, match="at most 1"):
        Faults(throttle_rate=0.6, server_error_rate=0.6)
    with pytest.raises(ValueError, match="PutItem"):
        Faults(throttle_rate=0.1, operations=["PutItem"])
    with pytest.raises(ValueError, match="throttle_codes"):
        Faults(throttle_codes=())
    faults = Faults(throttle_rate=0.25, timeout_rate=0.25, operations=["GetRecords"])
    assert faults.operations == frozenset({"GetRecords"})
    assert faults.total_rate == 0.5
    assert faults.applies_to("GetRecords")
    assert not faults.applies_to("DescribeStream")


async def test_fail_next_takes_transport_level_codes_and_goes_first() -> None:
    sim = StreamSimulator(faults=Faults(throttle_rate=1.0, throttle_codes=("ThrottlingException",)))
    sim.fail_next("ListStreams", "ConnectionError")
    sim.fail_next("ListStreams", "Timeout", message="slow")
    transport = sim.transport()

    assert await outcome(transport.call("ListStreams", {})) == ("ConnectionError", None)
    with pytest.raises(TransportError) as info:
        await transport.call("ListStreams", {})
    assert (info.value.code, info.value.message, info.value.status) == ("Timeout", "slow", None)
    assert await outcome(transport.call("ListStreams", {})) == ("ThrottlingException", 400)


async def test_streams_client_retries_through_faults_on_the_virtual_clock() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock,
        partitions=2,
        seed=2,
        faults=Faults(throttle_rate=0.2, server_error_rate=0.1, connection_reset_rate=0.05),
    )
    for i in range(300):
        sim.put_item({"pk": f"k{i}", "v": i})
    sim.roll_over()
    wall = time.monotonic()
    policy = RetryPolicy(max_attempts=20, connect_max_attempts=20, base_delay=0.1)

    read: list[str] = []
    async with sim.client(retry=policy) as client:
        description = await client.describe_stream(sim.stream_arn)
        for shard in description.shards:
            if shard.is_open:
                continue
            it: str | None = await client.get_shard_iterator(
                sim.stream_arn, shard.shard_id, ShardStart("TRIM_HORIZON")
            )
            while it is not None:
                page = await client.get_records(
                    it, shard_id=shard.shard_id, parser=DefaultParser(), limit=10
                )
                read.extend(r.sequence_number for r in page.records)
                it = page.next_shard_iterator

    assert sorted(read, key=int) == [c.sequence_number for c in sim.history]
    assert sum(sim.faults_injected.values()) > 5
    assert clock.monotonic() > 0  # backoff waited in virtual time...
    assert time.monotonic() - wall < 10.0  # ...not in real time


# --------------------------------------------------------------------------- over HTTP


@pytest.fixture
def served() -> Iterator[SimulatorServer]:
    sim = StreamSimulator(partitions=2, seed=3)
    for i in range(20):
        sim.put_item({"pk": f"k{i}"})
    with SimulatorServer(sim, timeout_delay=3.0) as server:
        yield server


def test_throttling_and_server_errors_are_real_error_responses(served: SimulatorServer) -> None:
    sim = served.simulator
    streams = botocore_client(served.endpoint_url)
    sim.set_faults(Faults(throttle_rate=1.0, throttle_codes=("LimitExceededException",)))
    with pytest.raises(ClientError) as info:
        streams.describe_stream(StreamArn=sim.stream_arn)
    assert info.value.response["Error"]["Code"] == "LimitExceededException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(streams.exceptions.LimitExceededException):
        streams.list_streams()

    sim.set_faults(Faults(throttle_rate=1.0, throttle_codes=("ThrottlingException",)))
    with pytest.raises(ClientError) as info:
        streams.list_streams()
    assert info.value.response["Error"]["Code"] == "ThrottlingException"

    sim.set_faults(Faults(server_error_rate=1.0))
    with pytest.raises(ClientError) as info:
        streams.describe_stream(StreamArn=sim.stream_arn)
    assert info.value.response["Error"]["Code"] == "InternalServerError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500

    sim.set_faults(None)
    assert streams.describe_stream(StreamArn=sim.stream_arn)["StreamDescription"]["Shards"]


def test_a_connection_reset_is_a_real_connection_error(served: SimulatorServer) -> None:
    sim = served.simulator
    streams = botocore_client(served.endpoint_url)
    sim.fail_next("DescribeStream", "ConnectionError")

    with pytest.raises(ConnectionClosedError):
        streams.describe_stream(StreamArn=sim.stream_arn)

    # The server goes on serving on new connections.
    assert streams.describe_stream(StreamArn=sim.stream_arn)["StreamDescription"]["Shards"]
    sim.set_faults(Faults(connection_reset_rate=1.0, operations={"GetShardIterator"}))
    (shard_id, _) = sim.open_shard_ids()
    with pytest.raises(ConnectionClosedError):
        streams.get_shard_iterator(
            StreamArn=sim.stream_arn, ShardId=shard_id, ShardIteratorType="LATEST"
        )
    assert sim.faults_injected == Counter({"ConnectionError": 2})


def test_a_timeout_stalls_then_drops_the_connection(served: SimulatorServer) -> None:
    sim = served.simulator
    impatient = botocore_client(
        served.endpoint_url, Config(retries={"total_max_attempts": 1}, read_timeout=0.2)
    )
    sim.fail_next("ListStreams", "Timeout")

    with pytest.raises(ReadTimeoutError):
        impatient.list_streams()
    assert impatient.list_streams()["Streams"]


async def test_a_short_timeout_delay_looks_like_a_reset_to_a_patient_client() -> None:
    sim = StreamSimulator()
    sim.fail_next("ListStreams", "Timeout")
    async with serve_simulator(sim, timeout_delay=0.05) as endpoint_url:
        streams = botocore_client(endpoint_url)
        with pytest.raises(ConnectionClosedError):
            await asyncio.to_thread(streams.list_streams)


async def test_aiobotocore_and_the_streams_client_see_resets_and_retry_them() -> None:
    sim = StreamSimulator()
    async with serve_simulator(sim) as endpoint_url:
        async with StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            retry=RetryPolicy(connect_max_attempts=1, base_delay=0.0, max_delay=0.0),
            **CREDENTIALS,
        ) as client:
            sim.fail_next("DescribeStream", "ConnectionError")
            with pytest.raises(DDBEndpointConnectionError):
                await client.describe_stream(sim.stream_arn)
        async with StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            retry=RetryPolicy(connect_max_attempts=3, base_delay=0.0, max_delay=0.0),
            **CREDENTIALS,
        ) as client:
            sim.fail_next("DescribeStream", "ConnectionError", times=2)
            description = await client.describe_stream(sim.stream_arn)
    assert len(description.shards) == 1
    assert sim.faults_injected["ConnectionError"] == 3


async def test_same_faults_over_http_as_in_memory() -> None:
    faults = Faults(throttle_rate=0.2, server_error_rate=0.15, connection_reset_rate=0.15)
    expected = await describe_outcomes(StreamSimulator(faults=faults, seed=11), 40)
    sim = StreamSimulator(faults=faults, seed=11)

    def kind(call: Any) -> tuple[str, int | None]:
        try:
            call()
        except ClientError as error:
            return (
                error.response["Error"]["Code"],
                error.response["ResponseMetadata"]["HTTPStatusCode"],
            )
        except ConnectionClosedError:
            return "ConnectionError", None
        return "ok", None

    async with serve_simulator(sim) as endpoint_url:
        streams = botocore_client(endpoint_url)
        over_http = [
            await asyncio.to_thread(kind, lambda: streams.describe_stream(StreamArn=sim.stream_arn))
            for _ in range(40)
        ]

    assert over_http == expected
    assert {k for k, _ in expected} >= {"ok", "InternalServerError", "ConnectionError"}


def test_timeout_delay_is_checked() -> None:
    with pytest.raises(ValueError, match="timeout_delay"):
        SimulatorServer(StreamSimulator(), timeout_delay=-1.0)
