"""One HTTP endpoint for a simulated stream and real state tables.

``serve_simulator``/``SimulatorServer`` with ``tables_endpoint`` answer the streams
operations (and DescribeTable of the simulated source table) from the simulator and forward
every other DynamoDB request to DynamoDB Local, as a worker process needs: it has a single
``endpoint_url`` for DynamoDB Streams and DynamoDB.
"""

from __future__ import annotations

import asyncio
import gzip
import socket
import uuid
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import botocore.session
import orjson
import pytest
from aiohttp import web
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

import ddbstreams
from ddbstreams import ConditionFailedError, StreamReader, TableNotFoundError
from ddbstreams.client._streams import StreamsClient
from ddbstreams.local import DynamoDBLocal
from ddbstreams.testing import Faults, SimulatorServer, StreamSimulator, serve_simulator

pytestmark = pytest.mark.integration

CREDENTIALS: dict[str, Any] = {"aws_access_key_id": "x", "aws_secret_access_key": "x"}
NO_RETRIES = Config(retries={"total_max_attempts": 1})
JSON = "application/x-amz-json-1.0"
KEY_SCHEMA: dict[str, Any] = {
    "attribute_definitions": [{"AttributeName": "pk", "AttributeType": "S"}],
    "key_schema": [{"AttributeName": "pk", "KeyType": "HASH"}],
}


def botocore_client(service: str, endpoint_url: str, config: Config | None = None) -> Any:
    """A sync botocore client for ``service`` at ``endpoint_url`` (any credentials)."""
    return botocore.session.get_session().create_client(
        service, endpoint_url=endpoint_url, region_name="us-east-1", config=config, **CREDENTIALS
    )


def written(partitions: int = 2, seed: int = 5) -> StreamSimulator:
    """A simulator with a dozen changes, one rollover in between."""
    sim = StreamSimulator(partitions=partitions, seed=seed)
    for i in range(12):
        sim.put_item({"pk": f"k{i}", "n": i})
        if i == 5:
            sim.roll_over()
    return sim


@pytest.fixture
def make_table_name(ddb_local: DynamoDBLocal) -> Iterator[Callable[[], str]]:
    """Unique state table names; the tables (if created) are deleted after the test."""
    names: list[str] = []

    def make() -> str:
        names.append(f"ddbstreams-state-{uuid.uuid4().hex[:12]}")
        return names[-1]

    yield make
    for name in names:
        ddb_local.delete_table(name)


@pytest.fixture
async def client_and_sim(
    ddb_local: DynamoDBLocal,
) -> AsyncIterator[tuple[StreamsClient, StreamSimulator]]:
    """A StreamsClient whose one endpoint is a simulator with tables in DynamoDB Local."""
    sim = written()
    async with (
        serve_simulator(sim, tables_endpoint=ddb_local.endpoint_url) as endpoint_url,
        StreamsClient(endpoint_url=endpoint_url, region_name="us-east-1", **CREDENTIALS) as client,
    ):
        yield client, sim


# --------------------------------------------------------------------------- async, StreamsClient


async def test_one_client_reads_the_stream_and_writes_tables_in_dynamodb_local(
    client_and_sim: tuple[StreamsClient, StreamSimulator],
    ddb_local: DynamoDBLocal,
    make_table_name: Callable[[], str],
) -> None:
    client, sim = client_and_sim
    name = make_table_name()

    async with StreamReader(sim.table_name, client=client) as reader:
        records = [record async for record in reader]
    assert await client.tables.create_table(name, **KEY_SCHEMA) is True
    assert await client.tables.create_table(name, **KEY_SCHEMA) is False  # ResourceInUse
    await wait_active(client, name)
    await client.tables.put_item(
        name,
        {"pk": {"S": "lease-1"}, "owner": {"S": "w1"}},
        condition_expression="attribute_not_exists(pk)",
    )
    await client.tables.put_item(name, {"pk": {"S": "lease-2"}, "owner": {"S": "w2"}})
    got = await client.tables.get_item(name, {"pk": {"S": "lease-1"}})
    missing = await client.tables.get_item(name, {"pk": {"S": "nope"}})
    await client.tables.delete_item(
        name,
        {"pk": {"S": "lease-2"}},
        condition_expression="#o = :o",
        names={"#o": "owner"},
        values={":o": {"S": "w2"}},
    )

    assert sorted(r.sequence_number for r in records) == sorted(
        c.sequence_number for c in sim.history
    )
    assert len(records) == 12
    assert got == {"pk": {"S": "lease-1"}, "owner": {"S": "w1"}}
    assert missing is None
    direct = ddb_local.dynamodb_client()  # straight at the engine, not through the server
    assert name in direct.list_tables()["TableNames"]
    items = direct.scan(TableName=name, ConsistentRead=True)["Items"]
    assert items == [{"pk": {"S": "lease-1"}, "owner": {"S": "w1"}}]
    # Only DescribeTable of the simulated table reached the simulator.
    assert sim.calls["DescribeTable"] == 1


async def wait_active(client: StreamsClient, name: str) -> None:
    """Poll DescribeTable (forwarded: not the simulated table) until the table is ACTIVE."""
    for _ in range(100):
        table = await client.tables.describe_table(name)
        assert table["TableName"] == name
        if table["TableStatus"] == "ACTIVE":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became ACTIVE")


async def test_dynamodb_local_errors_arrive_as_library_errors(
    client_and_sim: tuple[StreamsClient, StreamSimulator],
    ddb_local: DynamoDBLocal,
    make_table_name: Callable[[], str],
) -> None:
    client, _ = client_and_sim
    name = make_table_name()
    await client.tables.create_table(name, **KEY_SCHEMA)
    await wait_active(client, name)
    lease = {"pk": {"S": "lease-1"}, "owner": {"S": "w1"}}
    await client.tables.put_item(name, lease, condition_expression="attribute_not_exists(pk)")

    with pytest.raises(ConditionFailedError):
        await client.tables.put_item(
            name,
            {"pk": {"S": "lease-1"}, "owner": {"S": "w2"}},
            condition_expression="attribute_not_exists(pk)",
        )
    with pytest.raises(ConditionFailedError):
        await client.tables.delete_item(
            name,
            {"pk": {"S": "lease-1"}},
            condition_expression="#o = :o",
            names={"#o": "owner"},
            values={":o": {"S": "w2"}},
        )
    with pytest.raises(TableNotFoundError):
        await client.tables.describe_table(make_table_name())

    item = ddb_local.dynamodb_client().get_item(
        TableName=name, Key={"pk": {"S": "lease-1"}}, ConsistentRead=True
    )
    assert item["Item"] == lease  # the refused writes changed nothing


async def test_forwarded_answers_are_dynamodb_locals_bytes(
    ddb_local: DynamoDBLocal, make_table_name: Callable[[], str]
) -> None:
    name = make_table_name()
    direct = ddb_local.dynamodb_client()
    direct.create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    direct.put_item(TableName=name, Item={"pk": {"S": "a"}, "blob": {"B": b"\x00\xff"}})
    requests = [
        ("GetItem", {"TableName": name, "Key": {"pk": {"S": "a"}}, "ConsistentRead": True}),
        ("GetItem", {"TableName": name, "Key": {"pk": {"N": "1"}}}),  # ValidationException
        ("DescribeTable", {"TableName": make_table_name()}),  # ResourceNotFoundException
        ("NoSuchOperation", {}),
    ]
    sim = StreamSimulator()
    async with (
        serve_simulator(sim, tables_endpoint=ddb_local.endpoint_url + "/") as endpoint_url,
        aiohttp.ClientSession() as session,
    ):
        for operation, params in requests:
            body = orjson.dumps(params)
            via = await post(session, endpoint_url, f"DynamoDB_20120810.{operation}", body)
            straight = await post(
                session, ddb_local.endpoint_url, f"DynamoDB_20120810.{operation}", body
            )
            assert via[0] == straight[0], operation  # status
            assert via[2] == straight[2], operation  # body, byte for byte
            assert comparable(via[1]) == comparable(straight[1]), operation
            if via[0] == 200:  # DynamoDB Local sends no checksum with its errors
                assert int(via[1]["x-amz-crc32"]) == zlib.crc32(via[2])
        # The simulated table is still the simulator's.
        status, _, body = await post(
            session, endpoint_url, "DynamoDB_20120810.DescribeTable", b'{"TableName":"simulated"}'
        )
        assert status == 200
        assert orjson.loads(body)["Table"]["LatestStreamArn"] == sim.stream_arn


def comparable(headers: Any) -> list[tuple[str, str]]:
    """Response headers but those that differ between any two answers."""
    per_answer = {"date", "x-amzn-requestid"}
    return sorted((k.lower(), v) for k, v in headers.items() if k.lower() not in per_answer)


async def post(
    session: aiohttp.ClientSession, url: str, target: str, body: bytes
) -> tuple[int, Any, bytes]:
    """POST one JSON-protocol request; (status, headers, body)."""
    headers = {"X-Amz-Target": target, "Content-Type": JSON}
    async with session.post(url, data=body, headers=headers) as response:
        return response.status, response.headers, await response.read()


# --------------------------------------------------------------------------- forwarding details


async def test_requests_and_answers_pass_through_verbatim() -> None:
    seen: list[tuple[str, str, Any, bytes]] = []
    answer = gzip.compress(b'{"__type":"x#Teapot","message":"short and stout"}')

    async def echo(request: web.Request) -> web.Response:
        seen.append((request.method, request.path_qs, request.headers, await request.read()))
        headers = [
            ("Content-Type", JSON),
            ("Content-Encoding", "gzip"),
            ("x-amz-crc32", "12345"),
            ("X-Twice", "one"),
            ("X-Twice", "two"),
        ]
        return web.Response(body=answer, status=418, headers=headers)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    tables_url = f"http://127.0.0.1:{runner.addresses[0][1]}/prefix"
    request_headers = {
        "X-Amz-Target": "DynamoDB_20120810.PutItem",
        "Content-Type": JSON,
        "Authorization": "AWS4-HMAC-SHA256 Credential=x/20260101/us-east-1/dynamodb/aws4_request",
        "X-Amz-Date": "20260101T000000Z",
        "X-Amz-Security-Token": "token",
        "User-Agent": "worker/1.0",
    }
    try:
        async with (
            serve_simulator(StreamSimulator(), tables_endpoint=tables_url) as endpoint_url,
            aiohttp.ClientSession(auto_decompress=False) as session,
            session.post(
                endpoint_url + "/?q=1", data=b'{"TableName":"t"}', headers=request_headers
            ) as response,
        ):
            status, headers, body = response.status, response.headers, await response.read()
    finally:
        await runner.cleanup()

    ((method, path, sent, sent_body),) = seen
    assert (method, path, sent_body) == ("POST", "/prefix/?q=1", b'{"TableName":"t"}')
    for name, value in request_headers.items():
        assert sent.getall(name) == [value], name
    assert sent["Host"] == tables_url.split("/")[2]
    assert (status, body) == (418, answer)  # still gzipped: passed through as bytes
    assert headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"] == JSON
    assert headers["x-amz-crc32"] == "12345"
    assert headers.getall("X-Twice") == ["one", "two"]


def test_injected_faults_do_not_touch_forwarded_requests(ddb_local: DynamoDBLocal) -> None:
    sim = written()
    sim.set_faults(Faults(server_error_rate=1.0))
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as server:
        dynamodb = botocore_client("dynamodb", server.endpoint_url, NO_RETRIES)
        streams = botocore_client("dynamodbstreams", server.endpoint_url, NO_RETRIES)

        tables = dynamodb.list_tables()["TableNames"]  # forwarded: no fault
        sim.set_faults(None)
        sim.fail_next("DescribeTable", "ThrottlingException")
        with pytest.raises(dynamodb.exceptions.ResourceNotFoundException):
            dynamodb.describe_table(TableName="not-the-simulated-one")  # forwarded
        with pytest.raises(ClientError) as info:
            dynamodb.describe_table(TableName=sim.table_name)  # the simulator's: fails
        streams.list_streams()

    assert tables == ddb_local.dynamodb_client().list_tables()["TableNames"]
    assert info.value.response["Error"]["Code"] == "ThrottlingException"


def test_an_unreachable_tables_endpoint_resets_the_connection() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        sim = written()
        with SimulatorServer(sim, tables_endpoint=f"http://127.0.0.1:{port}") as server:
            dynamodb = botocore_client("dynamodb", server.endpoint_url, NO_RETRIES)
            with pytest.raises((ConnectionClosedError, EndpointConnectionError)):
                dynamodb.get_item(TableName="t", Key={"pk": {"S": "a"}})
            table = dynamodb.describe_table(TableName=sim.table_name)["Table"]
    assert table["LatestStreamArn"] == sim.stream_arn


@pytest.mark.parametrize("url", ["127.0.0.1:8000", "ftp://127.0.0.1:8000", "http://"])
async def test_tables_endpoint_must_be_an_http_url(url: str) -> None:
    with pytest.raises(ValueError, match="tables_endpoint"):
        SimulatorServer(StreamSimulator(), tables_endpoint=url)
    with pytest.raises(ValueError, match="tables_endpoint"):
        async with serve_simulator(StreamSimulator(), tables_endpoint=url):
            pass


# ---------------------------------------------------------------- thread, boto3, blocking


def test_fixture_serves_boto3_and_the_blocking_reader(
    simulator_server_with_tables: SimulatorServer,
    ddb_local: DynamoDBLocal,
    make_table_name: Callable[[], str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import boto3

    server = simulator_server_with_tables
    sim = server.simulator
    changes = [sim.put_item({"pk": f"k{i}"}) for i in range(5)]
    assert server.tables_endpoint == ddb_local.endpoint_url
    session = boto3.session.Session(region_name="us-east-1", **CREDENTIALS)
    dynamodb = session.client("dynamodb", endpoint_url=server.endpoint_url)
    streams = session.client("dynamodbstreams", endpoint_url=server.endpoint_url)
    name = make_table_name()

    dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **boto3_schema())
    dynamodb.get_waiter("table_exists").wait(TableName=name, WaiterConfig={"Delay": 0.1})
    dynamodb.put_item(TableName=name, Item={"pk": {"S": "w1"}, "beat": {"N": "1"}})
    with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
        dynamodb.put_item(
            TableName=name, Item={"pk": {"S": "w1"}}, ConditionExpression="attribute_not_exists(pk)"
        )
    got = dynamodb.get_item(TableName=name, Key={"pk": {"S": "w1"}}, ConsistentRead=True)
    scanned = dynamodb.scan(TableName=name)["Items"]
    listed = streams.list_streams(TableName=sim.table_name)["Streams"]
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    records = list(
        ddbstreams.read(sim.table_name, endpoint_url=server.endpoint_url, region_name="us-east-1")
    )

    assert got["Item"] == {"pk": {"S": "w1"}, "beat": {"N": "1"}}
    assert scanned == [got["Item"]]
    assert [s["StreamArn"] for s in listed] == [sim.stream_arn]
    assert [r.sequence_number for r in records] == [c.sequence_number for c in changes if c]
    direct = ddb_local.dynamodb_client().scan(TableName=name, ConsistentRead=True)["Items"]
    assert direct == scanned


def boto3_schema() -> dict[str, Any]:
    """AttributeDefinitions and KeySchema of a table keyed by ``pk`` (S)."""
    return {
        "AttributeDefinitions": KEY_SCHEMA["attribute_definitions"],
        "KeySchema": KEY_SCHEMA["key_schema"],
    }


def test_forwarded_requests_are_counted_per_operation_and_table(
    ddb_local: DynamoDBLocal, make_table_name: Callable[[], str]
) -> None:
    sim = written()
    first, second = make_table_name(), make_table_name()
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as server:
        assert server.forwarded_calls == {}
        dynamodb = botocore_client("dynamodb", server.endpoint_url)
        streams = botocore_client("dynamodbstreams", server.endpoint_url)
        for name in (first, second):
            dynamodb.create_table(TableName=name, BillingMode="PAY_PER_REQUEST", **boto3_schema())
        dynamodb.put_item(TableName=first, Item={"pk": {"S": "a"}})
        dynamodb.put_item(TableName=first, Item={"pk": {"S": "b"}})
        with pytest.raises(dynamodb.exceptions.ConditionalCheckFailedException):
            dynamodb.put_item(
                TableName=first,
                Item={"pk": {"S": "a"}},
                ConditionExpression="attribute_not_exists(pk)",
            )
        dynamodb.scan(TableName=first)
        dynamodb.batch_write_item(
            RequestItems={
                name: [{"PutRequest": {"Item": {"pk": {"S": "c"}}}}] for name in (first, second)
            }
        )
        dynamodb.list_tables()
        before = server.forwarded_calls
        dynamodb.describe_table(TableName=sim.table_name)  # the simulator answers these
        streams.describe_stream(StreamArn=sim.stream_arn)
        after = server.forwarded_calls
    assert before == {
        ("CreateTable", first): 1,
        ("CreateTable", second): 1,
        ("PutItem", first): 3,  # a failed request counts too: it was forwarded
        ("Scan", first): 1,
        ("BatchWriteItem", first): 1,
        ("BatchWriteItem", second): 1,
        ("ListTables", None): 1,
    }
    assert after == before
    assert server.forwarded_calls == before  # kept after stop()
    assert sim.calls["DescribeTable"] == 1


async def test_serve_simulator_reports_each_forwarded_request(
    client_and_sim: tuple[StreamsClient, StreamSimulator], ddb_local: DynamoDBLocal
) -> None:
    _, sim = client_and_sim
    seen: list[tuple[str, str | None]] = []
    async with (
        serve_simulator(
            sim,
            tables_endpoint=ddb_local.endpoint_url,
            on_forward=lambda operation, table: seen.append((operation, table)),
        ) as endpoint_url,
        StreamsClient(endpoint_url=endpoint_url, region_name="us-east-1", **CREDENTIALS) as client,
    ):
        with pytest.raises(TableNotFoundError):
            await client.tables.get_item("no-such-table", {"pk": {"S": "a"}})
        await client.describe_stream(sim.stream_arn)
    assert seen == [("GetItem", "no-such-table")]
