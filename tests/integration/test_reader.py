"""The single-pass reader against DynamoDB Local, over HTTP, through the client users run."""

from __future__ import annotations

import socket
from decimal import Decimal
from typing import Any

import pytest

import ddbstreams
from ddbstreams.local import DynamoDBLocal

pytestmark = pytest.mark.integration

EVERY_TYPE: dict[str, Any] = {
    "pk": "every-type",
    "s": "text with ünïcode",
    "empty_s": "",
    "n_int": 42,
    "n_neg": -7,
    "n_dec": Decimal("3.14159"),
    "n_38": 12345678901234567890123456789012345678,
    "n_38_frac": Decimal("-0.12345678901234567890123456789012345678"),
    "b": b"\x00\x01binary\xff",
    "empty_b": b"",
    "ss": {"a", "b", "c"},
    "ns": {1, 2, Decimal("3.5")},
    "bs": {b"x", b"y"},
    "m": {"nested": {"deeper": [1, "two", {"three": True}]}, "empty": {}, "empty_l": []},
    "l": [1, "x", None, False, [b"z"]],
    "null": None,
    "bool_t": True,
    "bool_f": False,
}


async def read_all(stream: str, engine: DynamoDBLocal, **kwargs: Any) -> list[ddbstreams.Record]:
    async with (
        ddbstreams.StreamsClient(**engine.client_kwargs()) as client,
        ddbstreams.StreamReader(stream, client=client, **kwargs) as reader,
    ):
        return [record async for record in reader]


async def test_insert_modify_remove_in_order(ddb_local: DynamoDBLocal, source_table: Any) -> None:
    source_table.put({"pk": "a", "v": 1})
    source_table.update({"pk": "a"}, set={"v": 2, "w": "x"})
    source_table.put({"pk": "b", "v": 10})
    source_table.delete({"pk": "a"})

    records = await read_all(source_table.stream_arn, ddb_local)

    assert [(r.event_name, r.keys) for r in records] == [
        ("INSERT", {"pk": "a"}),
        ("MODIFY", {"pk": "a"}),
        ("INSERT", {"pk": "b"}),
        ("REMOVE", {"pk": "a"}),
    ]
    insert, modify, _, remove = records
    assert insert.new_image == {"pk": "a", "v": 1}
    assert insert.old_image is None
    assert modify.old_image == {"pk": "a", "v": 1}
    assert modify.new_image == {"pk": "a", "v": 2, "w": "x"}
    assert remove.new_image is None
    assert remove.old_image == {"pk": "a", "v": 2, "w": "x"}
    sequence_numbers = [int(r.sequence_number) for r in records]
    assert sequence_numbers == sorted(sequence_numbers)
    assert len({r.event_id for r in records}) == 4
    shard_ids = {r.shard_id for r in records}
    assert len(shard_ids) == 1
    assert next(iter(shard_ids)).startswith("shardId-")
    for record in records:
        assert record.approximate_creation_time.tzinfo is not None
        assert record.event_source == "aws:dynamodb"
        assert record.stream_view_type == "NEW_AND_OLD_IMAGES"
        assert record.size_bytes > 0


@pytest.mark.parametrize(
    ("view_type", "has_new", "has_old"),
    [
        ("KEYS_ONLY", False, False),
        ("NEW_IMAGE", True, False),
        ("OLD_IMAGE", False, True),
        ("NEW_AND_OLD_IMAGES", True, True),
    ],
)
async def test_stream_view_types(
    ddb_local: DynamoDBLocal, make_source_table: Any, view_type: str, has_new: bool, has_old: bool
) -> None:
    table = make_source_table(stream_view_type=view_type)
    table.put({"pk": "k", "v": 1})
    table.put({"pk": "k", "v": 2})

    insert, modify = await read_all(table.stream_arn, ddb_local)

    assert (insert.event_name, modify.event_name) == ("INSERT", "MODIFY")
    assert insert.keys == modify.keys == {"pk": "k"}
    assert modify.stream_view_type == view_type
    assert (modify.new_image == {"pk": "k", "v": 2}) if has_new else modify.new_image is None
    assert (modify.old_image == {"pk": "k", "v": 1}) if has_old else modify.old_image is None


async def test_every_attribute_type_round_trips(
    ddb_local: DynamoDBLocal, source_table: Any
) -> None:
    source_table.put(EVERY_TYPE)

    (record,) = await read_all(source_table.stream_arn, ddb_local)

    assert record.new_image == EVERY_TYPE
    image = record.new_image
    assert image is not None
    assert type(image["n_38"]) is int
    assert type(image["n_dec"]) is Decimal
    assert str(image["n_38_frac"]) == "-0.12345678901234567890123456789012345678"
    assert type(image["b"]) is bytes
    assert type(image["ss"]) is set


async def test_raw_parser_keeps_dynamodb_json(ddb_local: DynamoDBLocal, source_table: Any) -> None:
    source_table.put({"pk": "r", "n": 5, "b": b"\x01"})

    (record,) = await read_all(source_table.stream_arn, ddb_local, parser=ddbstreams.RawParser())

    assert record.keys == {"pk": {"S": "r"}}
    assert record.new_image == {"pk": {"S": "r"}, "n": {"N": "5"}, "b": {"B": "AQ=="}}


async def test_start_positions(ddb_local: DynamoDBLocal, source_table: Any) -> None:
    for i in range(5):
        source_table.put({"pk": f"item-{i}"})
    every = await read_all(source_table.stream_arn, ddb_local)
    assert [r.keys["pk"] for r in every] == [f"item-{i}" for i in range(5)]
    third = every[2].sequence_number

    at = await read_all(source_table.stream_arn, ddb_local, start=ddbstreams.at_sequence(third))
    after = await read_all(
        source_table.stream_arn, ddb_local, start=ddbstreams.after_sequence(third)
    )
    latest = await read_all(source_table.stream_arn, ddb_local, start=ddbstreams.LATEST)
    horizon = await read_all(source_table.stream_arn, ddb_local, start=ddbstreams.TRIM_HORIZON)

    assert [r.keys["pk"] for r in at] == ["item-2", "item-3", "item-4"]
    assert [r.keys["pk"] for r in after] == ["item-3", "item-4"]
    assert latest == []
    assert [r.sequence_number for r in horizon] == [r.sequence_number for r in every]


async def test_checkpoint_resumes_right_after_what_was_delivered(
    ddb_local: DynamoDBLocal, source_table: Any
) -> None:
    for i in range(6):
        source_table.put({"pk": f"item-{i}"})
    client_kwargs = ddb_local.client_kwargs()

    async with (
        ddbstreams.StreamsClient(**client_kwargs) as client,
        ddbstreams.StreamReader(source_table.stream_arn, client=client) as reader,
    ):
        batches = reader.batches(4)
        first = await anext(batches)
        checkpoint = reader.checkpoint()
    assert [r.keys["pk"] for r in first] == [f"item-{i}" for i in range(4)]
    (shard_id,) = checkpoint.positions
    assert checkpoint.positions[shard_id] == first[-1].sequence_number

    source_table.put({"pk": "item-6"})
    stored = ddbstreams.Checkpoint.from_json(checkpoint.to_json())
    rest = await read_all(source_table.stream_arn, ddb_local, start=stored)

    assert [r.keys["pk"] for r in rest] == ["item-4", "item-5", "item-6"]


async def test_table_name_in_place_of_arn(ddb_local: DynamoDBLocal, source_table: Any) -> None:
    source_table.put({"pk": "by-name"})

    async with (
        ddbstreams.StreamsClient(**ddb_local.client_kwargs()) as client,
        ddbstreams.StreamReader(source_table.name, client=client) as reader,
    ):
        records = [record async for record in reader]
        assert reader.stream_arn == source_table.stream_arn

    assert [r.keys for r in records] == [{"pk": "by-name"}]


def test_blocking_read(
    ddb_local: DynamoDBLocal, source_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        source_table.put({"pk": f"sync-{i}", "n": i})
    kwargs = ddb_local.client_kwargs()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])

    records = list(
        ddbstreams.read(
            source_table.name,
            endpoint_url=kwargs["endpoint_url"],
            region_name=kwargs["region_name"],
        )
    )

    assert [(r.keys["pk"], r.new_image) for r in records] == [
        (f"sync-{i}", {"pk": f"sync-{i}", "n": i}) for i in range(3)
    ]


def test_blocking_reader_checkpoint(
    ddb_local: DynamoDBLocal, source_table: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    for i in range(3):
        source_table.put({"pk": f"sync-{i}"})
    kwargs = ddb_local.client_kwargs()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    where = {"endpoint_url": kwargs["endpoint_url"], "region_name": kwargs["region_name"]}

    with ddbstreams.BlockingStreamReader(source_table.stream_arn, **where) as reader:
        records = iter(reader)
        first = [next(records), next(records)]
        checkpoint = reader.checkpoint()
    rest = list(ddbstreams.read(source_table.stream_arn, start=checkpoint, **where))

    assert [r.keys["pk"] for r in first + rest] == ["sync-0", "sync-1", "sync-2"]


async def test_malformed_arn_is_a_clear_error(ddb_local: DynamoDBLocal) -> None:
    with pytest.raises(ddbstreams.InvalidStreamArnError, match="arn:aws:dynamodb:nowhere"):
        await read_all("arn:aws:dynamodb:nowhere", ddb_local)


async def test_unknown_stream_is_a_clear_error(ddb_local: DynamoDBLocal) -> None:
    arn = "arn:aws:dynamodb:ddblocal:000000000000:table/missing/stream/2026-01-01T00:00:00.000"
    with pytest.raises(ddbstreams.StreamNotFoundError, match="missing"):
        await read_all(arn, ddb_local)


async def test_unknown_table_is_a_clear_error(ddb_local: DynamoDBLocal) -> None:
    with pytest.raises(ddbstreams.TableNotFoundError, match="no-such-table"):
        await read_all("no-such-table", ddb_local)


async def test_unreachable_endpoint_is_a_clear_error() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    client = ddbstreams.StreamsClient(
        endpoint_url=f"http://127.0.0.1:{port}",
        region_name="us-east-1",
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    async with client:
        with pytest.raises(ddbstreams.EndpointConnectionError, match=str(port)):
            async with ddbstreams.StreamReader("some-table", client=client):
                pass


async def test_checkpoint_of_another_stream_is_refused(
    ddb_local: DynamoDBLocal, source_table: Any
) -> None:
    other = ddbstreams.Checkpoint(
        "arn:aws:dynamodb:ddblocal:000000000000:table/other/stream/2026-01-01T00:00:00.000"
    )
    with pytest.raises(ddbstreams.CheckpointError, match="table/other"):
        await read_all(source_table.stream_arn, ddb_local, start=other)


async def test_sequence_number_held_by_no_shard(
    ddb_local: DynamoDBLocal, source_table: Any
) -> None:
    source_table.put({"pk": "x"})
    # Below the shard's StartingSequenceNumber: no listed shard's range holds it.
    with pytest.raises(ddbstreams.InvalidPositionError, match="0" * 21):
        await read_all(source_table.stream_arn, ddb_local, start=ddbstreams.at_sequence("0" * 21))
