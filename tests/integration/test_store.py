"""DynamoDBCheckpointStore against DynamoDB Local, through the real aiobotocore transport."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import orjson
import pytest

from ddbstreams import StreamReader
from ddbstreams._errors import CheckpointError, TableNotFoundError
from ddbstreams.client._streams import StreamsClient
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._position import SHARD_LATEST, SHARD_TRIM_HORIZON, Checkpoint, ShardStart
from ddbstreams.state._stores import DynamoDBCheckpointStore, SQLiteCheckpointStore

pytestmark = pytest.mark.integration

ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/Orders/stream/2024-05-01T00:00:00.000"
ARN2 = "arn:aws:dynamodb:ddblocal:000000000000:table/Users/stream/2024-06-01T00:00:00.000"
SEQ = "4930000000000000000000000000000000001"


def checkpoint(arn: str = ARN, n: int = 1) -> Checkpoint:
    return Checkpoint(
        stream_arn=arn,
        positions={"shardId-00000001700000000000-aaaaaaaa": str(10**21 + n)},
        finished=frozenset({"shardId-00000001600000000000-cccccccc"}),
        pending={
            "shardId-00000001700000000002-dddddddd": SHARD_TRIM_HORIZON,
            "shardId-00000001700000000003-eeeeeeee": SHARD_LATEST,
            "shardId-00000001700000000004-ffffffff": ShardStart("AT_SEQUENCE_NUMBER", SEQ),
            "shardId-00000001700000000005-00000000": ShardStart("AFTER_SEQUENCE_NUMBER", SEQ),
        },
    )


@pytest.fixture
async def client(ddb_local: DynamoDBLocal) -> AsyncIterator[StreamsClient]:
    async with StreamsClient(**ddb_local.client_kwargs()) as streams:
        yield streams


@pytest.fixture
def table_name(ddb_local: DynamoDBLocal) -> Iterator[str]:
    """A unique state table name; the table (if a test created it) is deleted afterwards."""
    name = f"ddbstreams-checkpoints-{uuid.uuid4().hex[:12]}"
    yield name
    ddb_local.delete_table(name)


NAME = "app"


@pytest.fixture
def make_store(client: StreamsClient, table_name: str) -> Callable[..., DynamoDBCheckpointStore]:
    """A new store over the state table each call, as another process would open it."""

    def make(**kwargs: Any) -> DynamoDBCheckpointStore:
        return DynamoDBCheckpointStore(table_name, client=client, **kwargs)

    return make


async def test_table_is_created_on_demand(
    ddb_local: DynamoDBLocal, make_store: Callable[..., DynamoDBCheckpointStore], table_name: str
) -> None:
    store = make_store()
    assert await store.load(ARN, name=NAME) is None
    table = ddb_local.dynamodb_client().describe_table(TableName=table_name)["Table"]
    assert table["TableStatus"] == "ACTIVE"
    assert table["KeySchema"] == [
        {"AttributeName": "name", "KeyType": "HASH"},
        {"AttributeName": "stream_arn", "KeyType": "RANGE"},
    ]
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    # A second store finds the table and uses it as is.
    await make_store().save(checkpoint(), name=NAME)
    assert await store.load(ARN, name=NAME) == checkpoint()


async def test_round_trip_and_item_layout(
    ddb_local: DynamoDBLocal, make_store: Callable[..., DynamoDBCheckpointStore], table_name: str
) -> None:
    store = make_store()
    await store.save(checkpoint(ARN, 1), name=NAME)
    await store.save(checkpoint(ARN, 2), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 2)
    item = ddb_local.dynamodb_client().get_item(
        TableName=table_name,
        Key={"name": {"S": "app"}, "stream_arn": {"S": ARN}},
        ConsistentRead=True,
    )["Item"]
    assert item["version"] == {"N": "2"}
    assert float(item["updated_at"]["N"]) > 0
    assert orjson.loads(item["checkpoint"]["S"]) == checkpoint(ARN, 2).to_json()


async def test_conditional_write_conflict(
    make_store: Callable[..., DynamoDBCheckpointStore],
) -> None:
    a, b = make_store(), make_store()
    await a.save(checkpoint(ARN, 1), name=NAME)
    with pytest.raises(CheckpointError, match=r"updated by another process \(version 1\)"):
        await b.save(checkpoint(ARN, 2), name=NAME)
    assert await b.load(ARN, name=NAME) == checkpoint(ARN, 1)
    await b.save(checkpoint(ARN, 2), name=NAME)
    with pytest.raises(CheckpointError, match=r"version 2\); reload it"):
        await a.save(checkpoint(ARN, 3), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 2)
    assert await a.load(ARN, name=NAME) == checkpoint(ARN, 2)
    await a.save(checkpoint(ARN, 3), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 3)


async def test_clear(make_store: Callable[..., DynamoDBCheckpointStore]) -> None:
    store = make_store()
    await store.save(checkpoint(ARN), name=NAME)
    await store.save(checkpoint(ARN2), name=NAME)
    await store.clear(ARN, name=NAME)
    assert await make_store().load(ARN, name=NAME) is None
    assert await make_store().load(ARN2, name=NAME) == checkpoint(ARN2)
    await store.clear(ARN, name=NAME)  # nothing stored: fine
    await store.save(checkpoint(ARN, 4), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 4)


async def test_two_names(make_store: Callable[..., DynamoDBCheckpointStore]) -> None:
    store = make_store()
    await store.save(checkpoint(ARN, 1), name="one")
    await store.save(checkpoint(ARN, 2), name="two")
    await store.save(checkpoint(ARN, 3), name="one")
    assert await make_store().load(ARN, name="one") == checkpoint(ARN, 3)
    assert await make_store().load(ARN, name="two") == checkpoint(ARN, 2)
    await store.clear(ARN, name="two")
    assert await make_store().load(ARN, name="one") == checkpoint(ARN, 3)
    assert await make_store().load(ARN, name="two") is None
    # Versions are per name: another process writing "two" does not stop "one".
    other = make_store()
    await other.save(checkpoint(ARN, 4), name="two")
    await store.save(checkpoint(ARN, 5), name="one")
    with pytest.raises(CheckpointError, match=r"under 'two'.*\(version 1\)"):
        await store.save(checkpoint(ARN, 6), name="two")


async def test_missing_table_without_create(
    make_store: Callable[..., DynamoDBCheckpointStore], table_name: str
) -> None:
    with pytest.raises(TableNotFoundError, match=table_name):
        await make_store(create_table=False).load(ARN, name=NAME)


async def test_table_of_another_shape_is_refused(
    ddb_local: DynamoDBLocal, make_store: Callable[..., DynamoDBCheckpointStore], table_name: str
) -> None:
    ddb_local.dynamodb_client().create_table(
        TableName=table_name,
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        BillingMode="PAY_PER_REQUEST",
    )
    with pytest.raises(CheckpointError, match="not a ddbstreams checkpoint table"):
        await make_store().save(checkpoint(), name=NAME)


async def test_store_with_its_own_client(
    ddb_local: DynamoDBLocal, table_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    kwargs = ddb_local.client_kwargs()
    # The store builds its client from endpoint and region; credentials from the environment.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    async with DynamoDBCheckpointStore(
        table_name, endpoint_url=kwargs["endpoint_url"], region_name=kwargs["region_name"]
    ) as store:
        await store.save(checkpoint(), name=NAME)
        assert await store.load(ARN, name=NAME) == checkpoint()
    with pytest.raises(RuntimeError, match="closed"):
        await store.client.tables.describe_table(table_name)


async def test_reader_resumes_from_a_stored_checkpoint(
    client: StreamsClient,
    source_table: SourceTable,
    make_store: Callable[..., DynamoDBCheckpointStore],
    tmp_path: Any,
) -> None:
    for i in range(3):
        source_table.put({"pk": f"item-{i}"})
    async with StreamReader(source_table.stream_arn, client=client) as reader:
        first = [record.keys["pk"] async for record in reader]
        position = reader.checkpoint()
    assert first == ["item-0", "item-1", "item-2"]
    await make_store().save(position, name="resumer")
    sqlite = SQLiteCheckpointStore(tmp_path / "cp.db")
    await sqlite.save(position, name="resumer")

    for i in range(3, 5):
        source_table.put({"pk": f"item-{i}"})
    for store in (make_store(), sqlite):
        loaded = await store.load(source_table.stream_arn, name="resumer")
        assert loaded == position
        async with StreamReader(source_table.stream_arn, client=client, start=loaded) as reader:
            rest = [record.keys["pk"] async for record in reader]
        assert rest == ["item-3", "item-4"]
    await sqlite.close()
