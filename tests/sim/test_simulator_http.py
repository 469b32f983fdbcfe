"""The simulator served over loopback HTTP, read by real botocore clients end to end."""

from __future__ import annotations

import asyncio
import socket
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import botocore.session
import orjson
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from ddbstreams._errors import StreamNotFoundError
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._position import ShardStart
from ddbstreams.testing._server import SimulatorServer, serve_simulator
from ddbstreams.testing.simulator import StreamSimulator

CREDENTIALS = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
NO_RETRIES = Config(retries={"total_max_attempts": 1})


def botocore_client(service: str, endpoint_url: str, config: Config | None = None) -> Any:
    return botocore.session.get_session().create_client(
        service, endpoint_url=endpoint_url, region_name="us-east-1", config=config, **CREDENTIALS
    )


def populated(**kwargs: Any) -> StreamSimulator:
    sim = StreamSimulator(key_names=("pk", "sk"), **kwargs)
    for i in range(40):
        sim.put_item({"pk": f"item-{i % 10}", "sk": i // 10, "blob": b"\x00\xff", "n": i})
    sim.split()
    for i in range(10):
        sim.put_item({"pk": f"item-{i}", "sk": 9, "tags": {"a", "b"}})
    sim.ttl_delete({"pk": "item-3", "sk": 0})
    return sim


@pytest.fixture
def server() -> Iterator[SimulatorServer]:
    sim = populated(partitions=3, seed=3, describe_page_limit=2, empty_page_rate=0.3)
    with SimulatorServer(sim) as running:
        yield running


def describe_all(streams: Any, arn: str) -> list[dict[str, Any]]:
    shards: list[dict[str, Any]] = []
    kwargs: dict[str, Any] = {"StreamArn": arn, "Limit": 100}
    while True:
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(description["Shards"])
        if "LastEvaluatedShardId" not in description:
            return shards
        kwargs["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]


def read_shard(streams: Any, arn: str, shard: dict[str, Any]) -> list[dict[str, Any]]:
    """Every record of a shard: to the end of a closed one, to the first caught-up page of an
    open one (injected empty pages are never more than two in a row)."""
    it = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    is_open = "EndingSequenceNumber" not in shard["SequenceNumberRange"]
    records: list[dict[str, Any]] = []
    empty_in_a_row = 0
    while it is not None:
        result = streams.get_records(ShardIterator=it, Limit=4)
        records.extend(result["Records"])
        empty_in_a_row = 0 if result["Records"] else empty_in_a_row + 1
        if is_open and empty_in_a_row > 2:
            break
        it = result.get("NextShardIterator")
    return records


def test_botocore_reads_every_change_over_http(server: SimulatorServer) -> None:
    sim = server.simulator
    streams = botocore_client("dynamodbstreams", server.endpoint_url)

    shards = describe_all(streams, sim.stream_arn)

    assert len(shards) == len({s["ShardId"] for s in shards}) == 9
    expected = {s.shard_id: s for s in sim.shards()}
    for shard in shards:
        model = expected[shard["ShardId"]]
        assert shard.get("ParentShardId") == model.parent_shard_id
        assert shard["SequenceNumberRange"]["StartingSequenceNumber"] == (
            model.starting_sequence_number
        )
        assert shard["SequenceNumberRange"].get("EndingSequenceNumber") == (
            model.ending_sequence_number
        )
    read = {s["ShardId"]: read_shard(streams, sim.stream_arn, s) for s in shards}
    for shard_id, records in read.items():
        changes = [c for c in sim.history if c.shard_id == shard_id]
        assert [r["eventID"] for r in records] == [c.event_id for c in changes]
        for record, change in zip(records, changes, strict=True):
            dynamodb = record["dynamodb"]
            assert record["eventName"] == change.event_name
            assert dynamodb["SequenceNumber"] == change.sequence_number
            assert dynamodb["Keys"] == {
                "pk": {"S": change.keys["pk"]},
                "sk": {"N": str(change.keys["sk"])},
            }
            assert dynamodb["ApproximateCreationDateTime"] == datetime(
                2026, 11, 29, 6, 31, 20, tzinfo=UTC
            )
            if change.new_image is not None and "blob" in change.new_image:
                assert dynamodb["NewImage"]["blob"] == {"B": b"\x00\xff"}  # botocore decodes B
            if change.is_ttl_delete:
                assert record["userIdentity"] == {
                    "Type": "Service",
                    "PrincipalId": "dynamodb.amazonaws.com",
                }
    assert sum(len(r) for r in read.values()) == len(sim.history) == 51


def test_botocore_sees_the_service_error_codes(server: SimulatorServer) -> None:
    sim = server.simulator
    streams = botocore_client("dynamodbstreams", server.endpoint_url, NO_RETRIES)
    other = sim.stream_arn.replace("table/simulated/", "table/missing/")

    with pytest.raises(ClientError) as info:
        streams.describe_stream(StreamArn=other)
    assert info.value.response["Error"]["Code"] == "ResourceNotFoundException"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    with pytest.raises(streams.exceptions.ResourceNotFoundException):
        streams.get_shard_iterator(
            StreamArn=sim.stream_arn,
            ShardId="shardId-00000000000000000000-00000000",
            ShardIteratorType="LATEST",
        )
    with pytest.raises(ClientError) as info:
        streams.get_records(ShardIterator=f"{sim.stream_arn}|1|garbage")
    assert info.value.response["Error"]["Code"] == "ValidationException"
    sim.fail_next("GetRecords", "InternalServerError")
    with pytest.raises(ClientError) as info:
        streams.get_records(ShardIterator="whatever")
    assert info.value.response["Error"]["Code"] == "InternalServerError"
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 500
    sim.fail_next("DescribeStream", "ThrottlingException")
    with pytest.raises(ClientError) as info:
        streams.describe_stream(StreamArn=sim.stream_arn)
    assert info.value.response["Error"]["Code"] == "ThrottlingException"
    dynamodb = botocore_client("dynamodb", server.endpoint_url, NO_RETRIES)
    with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
        dynamodb.describe_table(TableName="missing")


def test_botocore_retries_injected_throttling(server: SimulatorServer) -> None:
    sim = server.simulator
    streams = botocore_client(
        "dynamodbstreams",
        server.endpoint_url,
        Config(retries={"mode": "standard", "total_max_attempts": 2}),
    )
    before = sim.calls["ListStreams"]
    sim.fail_next("ListStreams", "LimitExceededException")

    streams.list_streams()

    assert sim.calls["ListStreams"] == before + 2


def test_list_streams_and_describe_table_over_http(server: SimulatorServer) -> None:
    sim = server.simulator
    streams = botocore_client("dynamodbstreams", server.endpoint_url)
    dynamodb = botocore_client("dynamodb", server.endpoint_url)

    listed = streams.list_streams(TableName="simulated")["Streams"]
    table = dynamodb.describe_table(TableName="simulated")["Table"]

    assert listed == [
        {"StreamArn": sim.stream_arn, "TableName": "simulated", "StreamLabel": sim.stream_label}
    ]
    assert table["LatestStreamArn"] == sim.stream_arn
    assert table["StreamSpecification"]["StreamEnabled"] is True
    assert table["CreationDateTime"] == datetime(2026, 11, 29, 6, 31, 20, tzinfo=UTC)
    assert streams.list_streams(TableName="other")["Streams"] == []


def test_writes_from_the_test_thread_show_up_while_serving(server: SimulatorServer) -> None:
    sim = server.simulator
    streams = botocore_client("dynamodbstreams", server.endpoint_url)
    shard_id = sim.shard_for({"pk": "fresh", "sk": 1})
    it = streams.get_shard_iterator(
        StreamArn=sim.stream_arn, ShardId=shard_id, ShardIteratorType="LATEST"
    )["ShardIterator"]

    change = sim.put_item({"pk": "fresh", "sk": 1})
    got: list[dict[str, Any]] = []
    for _ in range(10):  # injected empty pages: at most two in a row
        result = streams.get_records(ShardIterator=it)
        got.extend(result["Records"])
        it = result["NextShardIterator"]
        if got:
            break
    assert change is not None
    assert [r["dynamodb"]["SequenceNumber"] for r in got] == [change.sequence_number]


async def test_wire_details_crc32_content_type_and_error_bodies() -> None:
    sim = populated()
    async with serve_simulator(sim) as endpoint_url, aiohttp.ClientSession() as session:

        async def post(target: str, body: bytes) -> tuple[int, Any, bytes]:
            async with session.post(
                endpoint_url,
                data=body,
                headers={
                    "X-Amz-Target": target,
                    "Content-Type": "application/x-amz-json-1.0",
                },
            ) as response:
                return response.status, response.headers, await response.read()

        status, headers, body = await post(
            "DynamoDBStreams_20120810.DescribeStream",
            orjson.dumps({"StreamArn": sim.stream_arn}),
        )
        assert status == 200
        assert headers["Content-Type"] == "application/x-amz-json-1.0"
        assert int(headers["x-amz-crc32"]) == zlib.crc32(body)
        assert headers["x-amzn-RequestId"]
        assert orjson.loads(body)["StreamDescription"]["StreamArn"] == sim.stream_arn

        (shard_id, *_) = sim.open_shard_ids()
        status, _, body = await post(
            "DynamoDBStreams_20120810.GetShardIterator",
            orjson.dumps(
                {
                    "StreamArn": sim.stream_arn,
                    "ShardId": shard_id,
                    "ShardIteratorType": "TRIM_HORIZON",
                }
            ),
        )
        iterator = orjson.loads(body)["ShardIterator"]
        status, headers, body = await post(
            "DynamoDBStreams_20120810.GetRecords", orjson.dumps({"ShardIterator": iterator})
        )
        in_memory = await sim.transport().get_records_body({"ShardIterator": iterator})
        assert status == 200
        assert body == in_memory  # byte for byte what the transport produces
        assert int(headers["x-amz-crc32"]) == zlib.crc32(body)

        status, headers, body = await post(
            "DynamoDBStreams_20120810.DescribeStream", orjson.dumps({"StreamArn": "arn:x"})
        )
        assert status == 400
        assert orjson.loads(body) == {
            "__type": "com.amazonaws.dynamodb.v20120810#ValidationException",
            "message": "Invalid StreamArn: 'arn:x'",
        }
        assert int(headers["x-amz-crc32"]) == zlib.crc32(body)
        for target in ("DynamoDB_20120810.PutItem", "Kinesis_20131202.GetRecords", ""):
            status, _, body = await post(target, b"{}")
            assert status == 400
            assert orjson.loads(body)["__type"].endswith("#UnknownOperationException")
        status, _, body = await post("DynamoDBStreams_20120810.ListStreams", b"{not json")
        assert status == 400
        assert orjson.loads(body)["__type"].endswith("#SerializationException")
        sim.fail_next("ListStreams", "InternalServerError", message="boom")
        status, _, body = await post("DynamoDBStreams_20120810.ListStreams", b"{}")
        assert (status, orjson.loads(body)["message"]) == (500, "boom")


async def test_serve_simulator_in_the_running_loop_with_sync_botocore_in_a_thread() -> None:
    sim = populated(partitions=2, seed=8)
    async with serve_simulator(sim) as endpoint_url:
        assert urlsplit(endpoint_url).hostname == "127.0.0.1"
        streams = botocore_client("dynamodbstreams", endpoint_url)
        shards = await asyncio.to_thread(describe_all, streams, sim.stream_arn)
        records = [
            record
            for shard in shards
            for record in await asyncio.to_thread(read_shard, streams, sim.stream_arn, shard)
        ]
    assert sorted(r["dynamodb"]["SequenceNumber"] for r in records) == sorted(
        c.sequence_number for c in sim.history
    )


async def test_streams_client_over_http() -> None:
    sim = populated(partitions=2, seed=5, describe_page_limit=2)
    async with (
        serve_simulator(sim) as endpoint_url,
        StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ) as client,
    ):
        assert await client.resolve_stream("simulated") == sim.stream_arn
        description = await client.describe_stream(sim.stream_arn)
        assert sorted(s.shard_id for s in description.shards) == sorted(
            s.shard_id for s in sim.shards()
        )
        closed = next(s for s in description.shards if not s.is_open)
        it: str | None = await client.get_shard_iterator(
            sim.stream_arn, closed.shard_id, ShardStart("TRIM_HORIZON")
        )
        records = []
        while it is not None:
            page = await client.get_records(it, shard_id=closed.shard_id, parser=DefaultParser())
            records.extend(page.records)
            it = page.next_shard_iterator
        expected = [c for c in sim.history if c.shard_id == closed.shard_id]
        assert [r.sequence_number for r in records] == [c.sequence_number for c in expected]
        assert [r.new_image for r in records] == [c.new_image for c in expected]
        assert all(r.shard_id == closed.shard_id for r in records)
        with pytest.raises(StreamNotFoundError):
            await client.describe_stream(sim.stream_arn.replace("simulated", "missing"))


def test_server_lifecycle() -> None:
    server = SimulatorServer(StreamSimulator())
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.endpoint_url
    url = server.start()
    with pytest.raises(RuntimeError, match="already started"):
        server.start()
    port = urlsplit(url).port
    assert port is not None
    server.stop()
    server.stop()
    with pytest.raises(RuntimeError, match="not running"):
        _ = server.endpoint_url
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


def test_server_reports_a_port_it_cannot_bind() -> None:
    with SimulatorServer(StreamSimulator()) as first:
        port = urlsplit(first.endpoint_url).port
        assert port is not None
        with pytest.raises(RuntimeError, match="failed to start"):
            SimulatorServer(StreamSimulator(), port=port).start()
