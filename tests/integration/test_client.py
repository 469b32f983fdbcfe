"""StreamsClient against DynamoDB Local through the real aiobotocore transport."""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.parsers import AioJSONParser

from ddbstreams._errors import (
    CredentialsError,
    EndpointConnectionError,
    InvalidPositionError,
    InvalidStreamArnError,
    ServiceError,
    ShardNotFoundError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
)
from ddbstreams.client._streams import StreamsClient
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import SHARD_LATEST, SHARD_TRIM_HORIZON, ShardStart
from ddbstreams.model._types import Record
from ddbstreams.transport._aws import AwsTransport

pytestmark = pytest.mark.integration


class RecordingClock:
    """Records backoff sleeps without waiting, so retry tests take no wall time."""

    def __init__(self) -> None:
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return 0.0

    def time(self) -> float:
        return 0.0

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


def local_kwargs(engine: DynamoDBLocal) -> dict[str, Any]:
    return dict(engine.client_kwargs())


@pytest.fixture
async def client(ddb_local: DynamoDBLocal) -> AsyncIterator[StreamsClient]:
    async with StreamsClient(**local_kwargs(ddb_local)) as streams:
        yield streams


@pytest.fixture
def table_without_stream(ddb_local: DynamoDBLocal) -> Iterator[str]:
    name = f"ddbstreams-nostream-{uuid.uuid4().hex[:12]}"
    ddb_local.dynamodb_client().create_table(
        TableName=name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    yield name
    ddb_local.delete_table(name)


async def only_shard(client: StreamsClient, stream_arn: str) -> str:
    description = await client.describe_stream(stream_arn)
    [shard] = description.shards
    return shard.shard_id


async def read(
    client: StreamsClient,
    stream_arn: str,
    shard_id: str,
    start: ShardStart,
    parser: Parser[Record] | None = None,
) -> list[Record]:
    """Records from ``start`` up to the first empty page after some records (or 5 pages)."""
    iterator: str | None = await client.get_shard_iterator(stream_arn, shard_id, start)
    records: list[Record] = []
    for _ in range(5):
        assert iterator is not None
        page = await client.get_records(
            iterator, shard_id=shard_id, parser=parser or DefaultParser()
        )
        records.extend(page.records)
        iterator = page.next_shard_iterator
        if iterator is None or (records and not page.records):
            break
    return records


async def test_describe_stream_of_a_fresh_table(
    client: StreamsClient, source_table: SourceTable
) -> None:
    description = await client.describe_stream(source_table.stream_arn)
    assert description.stream_arn == source_table.stream_arn
    assert description.table_name == source_table.name
    assert description.stream_status == "ENABLED"
    assert description.stream_view_type == "NEW_AND_OLD_IMAGES"
    assert description.key_schema == (("pk", "HASH"),)
    assert description.stream_label == source_table.stream_arn.rsplit("/", 1)[1]
    assert description.creation_time is not None
    assert description.creation_time.utcoffset() is not None
    assert description.creation_time.utcoffset().total_seconds() == 0  # type: ignore[union-attr]
    assert description.last_evaluated_shard_id is None
    [shard] = description.shards
    assert shard.shard_id.startswith("shardId-")
    assert shard.is_open
    assert shard.parent_shard_id is None

    page = await client.describe_stream_page(source_table.stream_arn, limit=1)
    assert [s.shard_id for s in page.shards] == [shard.shard_id]
    assert await client.child_shards(source_table.stream_arn, shard.shard_id) == ()


async def test_resolve_stream_by_table_name_and_by_arn(
    client: StreamsClient, source_table: SourceTable
) -> None:
    assert await client.resolve_stream(source_table.name) == source_table.stream_arn
    assert await client.resolve_stream(source_table.stream_arn) == source_table.stream_arn
    streams = await client.list_streams(source_table.name)
    assert [s.stream_arn for s in streams] == [source_table.stream_arn]
    assert streams[0].table_name == source_table.name
    assert source_table.stream_arn in [s.stream_arn for s in await client.list_streams()]


async def test_get_records_decodes_inserts_modifies_and_removes(
    client: StreamsClient, source_table: SourceTable
) -> None:
    source_table.put({"pk": "a", "n": 1, "tags": {"x", "y"}})
    source_table.update({"pk": "a"}, set={"n": 2}, remove=["tags"])
    source_table.delete({"pk": "a"})
    shard_id = await only_shard(client, source_table.stream_arn)
    records = await read(client, source_table.stream_arn, shard_id, SHARD_TRIM_HORIZON)
    assert [r.event_name for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = records
    assert insert.keys == {"pk": "a"}
    assert insert.new_image == {"pk": "a", "n": 1, "tags": {"x", "y"}}
    assert insert.old_image is None
    assert modify.old_image == {"pk": "a", "n": 1, "tags": {"x", "y"}}
    assert modify.new_image == {"pk": "a", "n": 2}
    assert remove.old_image == {"pk": "a", "n": 2}
    assert remove.new_image is None
    assert all(r.shard_id == shard_id for r in records)
    sequence_numbers = [int(r.sequence_number) for r in records]
    assert sequence_numbers == sorted(sequence_numbers)

    raw = await read(client, source_table.stream_arn, shard_id, SHARD_TRIM_HORIZON, RawParser())
    assert raw[0].new_image == {"pk": {"S": "a"}, "n": {"N": "1"}, "tags": {"SS": ["x", "y"]}}


async def test_all_four_iterator_types(client: StreamsClient, source_table: SourceTable) -> None:
    for n in range(3):
        source_table.put({"pk": f"k{n}"})
    arn = source_table.stream_arn
    shard_id = await only_shard(client, arn)

    everything = await read(client, arn, shard_id, SHARD_TRIM_HORIZON)
    assert [r.keys["pk"] for r in everything] == ["k0", "k1", "k2"]
    second = everything[1].sequence_number

    at = await read(client, arn, shard_id, ShardStart("AT_SEQUENCE_NUMBER", second))
    assert [r.keys["pk"] for r in at] == ["k1", "k2"]
    after = await read(client, arn, shard_id, ShardStart("AFTER_SEQUENCE_NUMBER", second))
    assert [r.keys["pk"] for r in after] == ["k2"]

    latest = await client.get_shard_iterator(arn, shard_id, SHARD_LATEST)
    page = await client.get_records(latest, shard_id=shard_id, parser=DefaultParser())
    assert page.records == []
    assert page.next_shard_iterator is not None
    source_table.put({"pk": "k3"})
    page = await client.get_records(
        page.next_shard_iterator, shard_id=shard_id, parser=DefaultParser()
    )
    assert [r.keys["pk"] for r in page.records] == ["k3"]
    assert page.last_sequence_number == page.records[-1].sequence_number


async def test_get_records_body_skips_botocore_parsing(
    ddb_local: DynamoDBLocal, source_table: SourceTable, monkeypatch: pytest.MonkeyPatch
) -> None:
    parsed: list[str] = []
    original_parse = AioJSONParser.parse

    async def counting_parse(self: Any, response: dict[str, Any], shape: Any) -> Any:
        parsed.append(response["context"]["operation_name"])
        return await original_parse(self, response, shape)

    monkeypatch.setattr(AioJSONParser, "parse", counting_parse)
    source_table.put({"pk": "raw", "v": "x" * 100})
    transport = AwsTransport(**local_kwargs(ddb_local))
    seen_bodies: list[bytes] = []

    def capture(response_dict: dict[str, Any], **_: Any) -> None:
        seen_bodies.append(response_dict["body"])

    transport._session.register("before-parse.dynamodb-streams.GetRecords", capture)
    async with StreamsClient(transport=transport) as client:
        shard_id = await only_shard(client, source_table.stream_arn)
        iterator = await client.get_shard_iterator(
            source_table.stream_arn, shard_id, SHARD_TRIM_HORIZON
        )
        body = await transport.get_records_body({"ShardIterator": iterator})
    assert "DescribeStream" in parsed
    assert "GetShardIterator" in parsed
    assert "GetRecords" not in parsed
    assert seen_bodies == [body]
    assert body.startswith(b"{")
    assert b'"raw"' in body


async def test_unknown_stream_and_shard(client: StreamsClient, source_table: SourceTable) -> None:
    unknown = source_table.stream_arn.replace(source_table.name, "no-such-table-here")
    with pytest.raises(StreamNotFoundError, match="no-such-table-here"):
        await client.describe_stream(unknown)
    shard_id = await only_shard(client, source_table.stream_arn)
    with pytest.raises(StreamNotFoundError, match="ResourceNotFoundException"):
        await client.get_shard_iterator(unknown, shard_id, SHARD_TRIM_HORIZON)
    missing_shard = "shardId-00000001700000000000-deadbeef"
    with pytest.raises(ShardNotFoundError, match=missing_shard):
        await client.get_shard_iterator(source_table.stream_arn, missing_shard, SHARD_LATEST)


async def test_invalid_sequence_numbers(
    ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    clock = RecordingClock()
    async with StreamsClient(**local_kwargs(ddb_local), clock=clock) as client:
        shard_id = await only_shard(client, source_table.stream_arn)
        # Shorter than the API's 21-digit minimum: botocore rejects it before sending.
        with pytest.raises(InvalidPositionError, match="12345"):
            await client.get_shard_iterator(
                source_table.stream_arn, shard_id, ShardStart("AT_SEQUENCE_NUMBER", "12345")
            )
        assert clock.sleeps == []
        # Well-formed but not in the shard: DynamoDB Local answers InternalFailure (500),
        # which is retried and then reported naming the position.
        beyond = "9" * 30
        with pytest.raises(ServiceError) as info:
            await client.get_shard_iterator(
                source_table.stream_arn, shard_id, ShardStart("AFTER_SEQUENCE_NUMBER", beyond)
            )
        assert beyond in str(info.value)
        assert len(clock.sleeps) == client.retry_policy.max_attempts - 1


async def test_malformed_arn(client: StreamsClient) -> None:
    with pytest.raises(InvalidStreamArnError, match="expected arn:"):
        await client.resolve_stream("arn:aws:dynamodb:ddblocal:000000000000:table/x")


async def test_unknown_table(client: StreamsClient) -> None:
    with pytest.raises(TableNotFoundError, match="no-such-table"):
        await client.resolve_stream("no-such-table")


async def test_table_without_stream(client: StreamsClient, table_without_stream: str) -> None:
    with pytest.raises(StreamNotEnabledError, match=table_without_stream):
        await client.resolve_stream(table_without_stream)


async def test_table_with_disabled_stream(
    client: StreamsClient, ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    ddb_local.dynamodb_client().update_table(
        TableName=source_table.name, StreamSpecification={"StreamEnabled": False}
    )
    with pytest.raises(StreamNotEnabledError, match=source_table.name):
        await client.resolve_stream(source_table.name)
    # The old stream itself can still be described: it is DISABLED, its shard closed.
    description = await client.describe_stream(source_table.stream_arn)
    assert description.stream_status == "DISABLED"


def _closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_unreachable_endpoint() -> None:
    endpoint = f"http://127.0.0.1:{_closed_port()}"
    clock = RecordingClock()
    client = StreamsClient(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="y",
        clock=clock,
    )
    async with client:
        with pytest.raises(EndpointConnectionError) as info:
            await client.describe_stream(
                "arn:aws:dynamodb:ddblocal:000000000000:table/t1/stream/2024-01-01T00:00:00.000"
            )
    assert endpoint in str(info.value)
    assert len(clock.sleeps) == client.retry_policy.connect_max_attempts - 1


async def test_missing_credentials(
    ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_SECURITY_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ROLE_ARN",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    # No instance metadata service here; do not wait for one.
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    async with StreamsClient(endpoint_url=ddb_local.endpoint_url) as client:
        with pytest.raises(CredentialsError) as info:
            await client.list_streams()
    assert "AWS_ACCESS_KEY_ID" in str(info.value)
