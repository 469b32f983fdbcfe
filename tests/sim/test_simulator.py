"""The stream simulator, exercised through its Transport (no reader, no HTTP)."""

from __future__ import annotations

import asyncio
import itertools
import re
import threading
from decimal import Decimal
from typing import Any

import orjson
import pytest

from ddbstreams.model._decode import DefaultParser, parse_get_records_body
from ddbstreams.testing.simulator import (
    SimulatedClock,
    SimulatorTransport,
    StreamSimulator,
)
from ddbstreams.transport._seam import TransportError

SHARD_ID = re.compile(r"^shardId-\d{20}-[0-9a-f]{8}$")


# --------------------------------------------------------------------------- helpers


async def describe_all(
    transport: SimulatorTransport, arn: str, *, limit: int | None = None, **extra: Any
) -> tuple[list[dict[str, Any]], int]:
    """Every shard over all DescribeStream pages, and how many pages it took."""
    shards: list[dict[str, Any]] = []
    start: str | None = None
    pages = 0
    while True:
        params: dict[str, Any] = {"StreamArn": arn, **extra}
        if limit is not None:
            params["Limit"] = limit
        if start is not None:
            params["ExclusiveStartShardId"] = start
        description = (await transport.call("DescribeStream", params))["StreamDescription"]
        pages += 1
        shards.extend(description["Shards"])
        start = description.get("LastEvaluatedShardId")
        if start is None:
            return shards, pages


async def iterator(
    transport: SimulatorTransport,
    sim: StreamSimulator,
    shard_id: str,
    kind: str = "TRIM_HORIZON",
    sequence_number: str | None = None,
) -> str:
    params = {"StreamArn": sim.stream_arn, "ShardId": shard_id, "ShardIteratorType": kind}
    if sequence_number is not None:
        params["SequenceNumber"] = sequence_number
    result = await transport.call("GetShardIterator", params)
    value = result["ShardIterator"]
    assert isinstance(value, str)
    return value


async def page(transport: SimulatorTransport, it: str, limit: int | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"ShardIterator": it}
    if limit is not None:
        params["Limit"] = limit
    body = await transport.get_records_body(params)
    decoded = orjson.loads(body)
    assert isinstance(decoded, dict)
    return decoded


async def read_closed_shard(
    transport: SimulatorTransport, sim: StreamSimulator, shard_id: str, limit: int | None = None
) -> list[dict[str, Any]]:
    """Every page of a closed shard, from TRIM_HORIZON to the page without an iterator."""
    pages = []
    it: str | None = await iterator(transport, sim, shard_id)
    while it is not None:
        result = await page(transport, it, limit)
        pages.append(result)
        it = result.get("NextShardIterator")
        assert len(pages) < 10_000
    return pages


def records_of(pages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [record for p in pages for record in p["Records"]]


def seqs(records: list[dict[str, Any]]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in records]


async def error_of(awaitable: Any) -> TransportError:
    with pytest.raises(TransportError) as info:
        await awaitable
    return info.value


def ancestors(sim: StreamSimulator, shard_id: str) -> list[str]:
    parents = {s.shard_id: s.parent_shard_id for s in sim.shards(include_trimmed=True)}
    chain = [shard_id]
    while (parent := parents.get(chain[-1])) is not None:
        chain.append(parent)
    return chain


# --------------------------------------------------------------------------- identity & shapes


def test_arn_label_and_shard_ids_have_the_service_shapes() -> None:
    sim = StreamSimulator(partitions=3)
    assert sim.stream_arn == (
        "arn:aws:dynamodb:us-east-1:123456789012:table/simulated/stream/2026-11-29T06:31:20.000"
    )
    assert sim.table_name == "simulated"
    shards = sim.shards()
    assert len(shards) == 3
    for shard in shards:
        assert SHARD_ID.match(shard.shard_id)
        assert shard.shard_id.startswith("shardId-00000001795933880000-")
        assert shard.is_open
        assert shard.parent_shard_id is None


def test_same_seed_same_stream_other_seed_other_ids() -> None:
    def build(seed: int) -> tuple[list[str], list[str]]:
        sim = StreamSimulator(partitions=2, seed=seed)
        for i in range(20):
            sim.put_item({"pk": f"k{i}"})
        sim.split()
        return [s.shard_id for s in sim.shards()], [c.sequence_number for c in sim.history]

    assert build(1) == build(1)
    assert build(1)[0] != build(2)[0]


def test_invalid_arguments_are_rejected() -> None:
    with pytest.raises(ValueError, match="partitions"):
        StreamSimulator(partitions=0)
    with pytest.raises(ValueError, match="view type"):
        StreamSimulator(stream_view_type="EVERYTHING")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="key_names"):
        StreamSimulator(key_names=("a", "b", "c"))
    with pytest.raises(ValueError, match="empty_page_rate"):
        StreamSimulator(empty_page_rate=1.0)
    with pytest.raises(ValueError, match="max_records_per_page"):
        StreamSimulator(max_records_per_page=1001)


async def test_record_wire_shape_and_round_trip_through_the_default_parser() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(key_names=("pk", "sk"), clock=clock, region="eu-west-1")
    item = {
        "pk": "user#1",
        "sk": 7,
        "name": "Ada",
        "n": Decimal("1.5"),
        "blob": b"\x00\x01",
        "tags": {"a", "b"},
        "nums": {1, 2},
        "m": {"x": [1, "two", None, True]},
    }
    clock.advance(12.75)
    change = sim.put_item(item)
    assert change is not None
    transport = sim.transport()
    body = await transport.get_records_body(
        {"ShardIterator": await iterator(transport, sim, change.shard_id)}
    )

    (raw,) = orjson.loads(body)["Records"]
    assert raw["eventID"] == change.event_id
    assert re.fullmatch(r"[0-9a-f]{32}", raw["eventID"])
    assert raw["eventName"] == "INSERT"
    assert raw["eventVersion"] == "1.1"
    assert raw["eventSource"] == "aws:dynamodb"
    assert raw["awsRegion"] == "eu-west-1"
    assert "userIdentity" not in raw
    dynamodb = raw["dynamodb"]
    assert dynamodb["ApproximateCreationDateTime"] == 1_795_933_892
    assert dynamodb["Keys"] == {"pk": {"S": "user#1"}, "sk": {"N": "7"}}
    assert dynamodb["NewImage"]["blob"] == {"B": "AAE="}
    assert dynamodb["NewImage"]["tags"] == {"SS": ["a", "b"]}
    assert "OldImage" not in dynamodb
    assert dynamodb["SequenceNumber"] == change.sequence_number
    assert isinstance(dynamodb["SizeBytes"], int)
    assert dynamodb["SizeBytes"] > 20
    assert dynamodb["StreamViewType"] == "NEW_AND_OLD_IMAGES"

    (record,) = parse_get_records_body(body, change.shard_id, DefaultParser()).records
    assert record.keys == change.keys == {"pk": "user#1", "sk": 7}
    assert record.new_image == change.new_image == item
    assert record.old_image is None
    assert change.old_image is None
    assert record.sequence_number == change.sequence_number
    assert record.approximate_creation_time.timestamp() == 1_795_933_892


# --------------------------------------------------------------------------- writes


def test_insert_modify_remove_and_no_record_for_unchanged_or_missing_items() -> None:
    sim = StreamSimulator()
    first = sim.put_item({"pk": "a", "v": 1})
    assert first is not None
    assert first.event_name == "INSERT"
    assert sim.put_item({"pk": "a", "v": 1}) is None  # nothing changed: no stream record
    second = sim.put_item({"pk": "a", "v": 2})
    assert second is not None
    assert second.event_name == "MODIFY"
    assert second.old_image == {"pk": "a", "v": 1}
    assert second.new_image == {"pk": "a", "v": 2}
    removed = sim.delete_item({"pk": "a"})
    assert removed is not None
    assert removed.event_name == "REMOVE"
    assert removed.old_image == {"pk": "a", "v": 2}
    assert removed.new_image is None
    assert sim.delete_item({"pk": "a"}) is None
    assert sim.ttl_delete({"pk": "never-written"}) is None
    assert [c.event_name for c in sim.history] == ["INSERT", "MODIFY", "REMOVE"]
    assert sim.items() == []


def test_writes_validate_keys_and_values() -> None:
    sim = StreamSimulator(key_names=("pk", "sk"))
    with pytest.raises(ValueError, match="sk"):
        sim.put_item({"pk": "a"})
    with pytest.raises(ValueError, match="sk"):
        sim.delete_item({"pk": "a"})
    with pytest.raises(TypeError, match="key attribute"):
        sim.put_item({"pk": ["a"], "sk": 1})
    with pytest.raises(TypeError):
        sim.put_item({"pk": "a", "sk": 1, "bad": object()})
    assert sim.history == []


@pytest.mark.parametrize(
    ("view", "insert", "modify", "remove"),
    [
        # (NewImage, OldImage) present for INSERT, MODIFY, REMOVE
        ("KEYS_ONLY", (False, False), (False, False), (False, False)),
        ("NEW_IMAGE", (True, False), (True, False), (False, False)),
        ("OLD_IMAGE", (False, False), (False, True), (False, True)),
        ("NEW_AND_OLD_IMAGES", (True, False), (True, True), (False, True)),
    ],
)
async def test_images_follow_the_stream_view_type(
    view: Any, insert: tuple[bool, bool], modify: tuple[bool, bool], remove: tuple[bool, bool]
) -> None:
    sim = StreamSimulator(stream_view_type=view)
    sim.put_item({"pk": "a", "v": 1})
    sim.put_item({"pk": "a", "v": 2})
    sim.delete_item({"pk": "a"})
    transport = sim.transport()
    (shard_id,) = sim.open_shard_ids()
    raw = (await page(transport, await iterator(transport, sim, shard_id)))["Records"]

    assert [r["eventName"] for r in raw] == ["INSERT", "MODIFY", "REMOVE"]
    for record, change, expected in zip(raw, sim.history, [insert, modify, remove], strict=True):
        dynamodb = record["dynamodb"]
        assert dynamodb["StreamViewType"] == view
        assert dynamodb["Keys"] == {"pk": {"S": "a"}}
        assert ("NewImage" in dynamodb, "OldImage" in dynamodb) == expected
        assert (change.new_image is not None, change.old_image is not None) == expected
    if view == "NEW_AND_OLD_IMAGES":
        assert raw[1]["dynamodb"]["OldImage"] == {"pk": {"S": "a"}, "v": {"N": "1"}}
        assert raw[1]["dynamodb"]["NewImage"] == {"pk": {"S": "a"}, "v": {"N": "2"}}


async def test_ttl_delete_carries_the_service_user_identity() -> None:
    sim = StreamSimulator()
    sim.put_item({"pk": "a"})
    sim.put_item({"pk": "b"})
    ttl = sim.ttl_delete({"pk": "a"})
    plain = sim.delete_item({"pk": "b"})
    assert ttl is not None
    assert ttl.is_ttl_delete
    assert plain is not None
    assert not plain.is_ttl_delete
    transport = sim.transport()
    (shard_id,) = sim.open_shard_ids()
    raw = (await page(transport, await iterator(transport, sim, shard_id)))["Records"]

    assert raw[2]["eventName"] == "REMOVE"
    assert raw[2]["userIdentity"] == {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    assert raw[3]["eventName"] == "REMOVE"
    assert "userIdentity" not in raw[3]
    records = parse_get_records_body(
        await transport.get_records_body(
            {"ShardIterator": await iterator(transport, sim, shard_id)}
        ),
        shard_id,
        DefaultParser(),
    ).records
    assert [r.is_ttl_delete for r in records] == [False, False, True, False]


def test_sequence_numbers_increase_as_integers_and_cross_a_digit_length() -> None:
    sim = StreamSimulator(partitions=3, seed=4)
    for i in range(60):
        sim.put_item({"pk": f"k{i % 13}", "v": i})
        if i % 20 == 19:
            sim.split()
    numbers = [c.sequence_number for c in sim.history]

    assert all(n.isdigit() and len(n) >= 21 for n in numbers)
    as_ints = [int(n) for n in numbers]
    assert as_ints == sorted(as_ints)
    assert len(set(as_ints)) == len(as_ints)
    assert {len(n) for n in numbers} == {21, 22}
    assert sorted(numbers) != numbers  # text order is wrong: the point of the boundary
    gaps = {b - a for a, b in itertools.pairwise(as_ints)}
    assert len(gaps) > 1  # gaps vary, so nobody can count on consecutive numbers


# --------------------------------------------------------------------------- routing & topology


def test_every_change_of_an_item_stays_in_one_lineage_in_order() -> None:
    sim = StreamSimulator(partitions=4, seed=3, key_names=("pk", "sk"))
    for round_number in range(12):
        for i in range(60):
            sim.put_item({"pk": f"item-{i % 20}", "sk": i // 20, "round": round_number})
        if round_number % 3 == 0:
            sim.split()
        elif round_number % 3 == 1:
            sim.roll_over(sim.open_shard_ids()[0])

    by_item: dict[tuple[Any, ...], list[str]] = {}
    for change in sim.history:
        by_item.setdefault(change.key, []).append(change.shard_id)
    for shard_ids in by_item.values():
        for earlier, later in itertools.pairwise(shard_ids):
            assert earlier in ancestors(sim, later)  # same shard or a descendant
    # Items sharing a partition key share a lineage too (DynamoDB routes by partition key).
    for i in range(20):
        first_shards = {by_item[(f"item-{i}", sk)][0] for sk in range(3)}
        assert len(first_shards) == 1
    roots = {s.shard_id for s in sim.shards() if s.parent_shard_id is None}
    assert roots <= {c.shard_id for c in sim.history}  # writes spread over every root
    grouped = sim.changes_by_item()
    assert set(grouped) == set(by_item)
    for numbers in grouped.values():
        assert [int(n) for n in numbers] == sorted(int(n) for n in numbers)
        assert len(numbers) == 12


def test_shard_for_predicts_where_a_write_goes() -> None:
    sim = StreamSimulator(partitions=4, seed=8)
    for i in range(30):
        expected = sim.shard_for({"pk": f"k{i}"})
        change = sim.put_item({"pk": f"k{i}"})
        assert change is not None
        assert change.shard_id == expected


async def test_roll_over_closes_and_opens_one_child_with_the_same_range() -> None:
    sim = StreamSimulator(partitions=2, seed=1)
    keys = [f"k{i}" for i in range(40)]
    for key in keys:
        sim.put_item({"pk": key})
    first, second = sim.open_shard_ids()
    last_in_first = [c for c in sim.history if c.shard_id == first][-1]

    (child,) = sim.roll_over(first)

    shards = {s.shard_id: s for s in sim.shards()}
    assert shards[first].ending_sequence_number == last_in_first.sequence_number
    assert shards[child].parent_shard_id == first
    assert shards[child].is_open
    assert int(shards[child].starting_sequence_number or 0) > int(last_in_first.sequence_number)
    assert shards[second].is_open
    for key in keys:  # same range: what went to the parent now goes to the child
        before = next(c.shard_id for c in sim.history if c.key == (key,))
        assert sim.shard_for({"pk": key}) == (child if before == first else second)

    children = sim.roll_over()
    assert len(children) == 2
    assert set(sim.open_shard_ids()) == set(children)
    assert {s.parent_shard_id for s in sim.shards() if s.shard_id in children} == {
        child,
        second,
    }
    with pytest.raises(ValueError, match="no open shard"):
        sim.roll_over(first)


def test_empty_shard_closes_with_an_allocated_ending() -> None:
    sim = StreamSimulator(seed=2)
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    shard = next(s for s in sim.shards() if s.shard_id == root)
    assert shard.ending_sequence_number is not None
    assert int(shard.ending_sequence_number) >= int(shard.starting_sequence_number or 0)


def test_split_halves_the_range_between_two_children() -> None:
    sim = StreamSimulator(partitions=1, seed=6)
    (root,) = sim.open_shard_ids()
    sim.put_item({"pk": "before"})

    children = sim.split(root)

    assert len(children) == 2
    listed = {s.shard_id: s for s in sim.shards()}
    assert not listed[root].is_open
    assert all(listed[c].parent_shard_id == root and listed[c].is_open for c in children)
    for i in range(60):
        sim.put_item({"pk": f"after-{i}"})
    used = {c.shard_id for c in sim.history[1:]}
    assert used == set(children)  # both halves take writes, the parent none
    grandchildren = sim.split()
    assert len(grandchildren) == 4
    assert set(sim.open_shard_ids()) == set(grandchildren)


async def test_trim_removes_a_closed_shard_but_children_still_name_it() -> None:
    sim = StreamSimulator(seed=7)
    (root,) = sim.open_shard_ids()
    for i in range(5):
        sim.put_item({"pk": f"k{i}"})
    transport = sim.transport()
    old_iterator = await iterator(transport, sim, root)
    with pytest.raises(ValueError, match="open"):
        sim.trim(root)
    children = sim.split()

    sim.trim(root)

    listed, _ = await describe_all(transport, sim.stream_arn)
    assert sorted(s["ShardId"] for s in listed) == sorted(children)
    assert {s["ParentShardId"] for s in listed} == {root}
    assert root not in {s.shard_id for s in sim.shards()}
    assert root in {s.shard_id for s in sim.shards(include_trimmed=True)}
    error = await error_of(iterator(transport, sim, root))
    assert error.code == "ResourceNotFoundException"
    assert error.status == 400
    error = await error_of(page(transport, old_iterator))
    assert error.code == "TrimmedDataAccessException"
    with pytest.raises(ValueError, match="no listed shard"):
        sim.trim(root)
    assert len(sim.history) == 5  # the write log keeps trimmed changes


async def test_disable_stream_closes_every_shard_and_stops_recording() -> None:
    sim = StreamSimulator(partitions=2)
    sim.put_item({"pk": "a"})
    sim.disable_stream()
    sim.disable_stream()

    assert sim.put_item({"pk": "b"}) is None
    assert not sim.enabled
    assert sim.open_shard_ids() == []
    assert len(sim.history) == 1
    assert len(sim.items()) == 2
    transport = sim.transport()
    description = (await transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))[
        "StreamDescription"
    ]
    assert description["StreamStatus"] == "DISABLED"
    assert all("EndingSequenceNumber" in s["SequenceNumberRange"] for s in description["Shards"])
    table = (await transport.call("DescribeTable", {"TableName": "simulated"}))["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": False}
    with pytest.raises(ValueError, match="disabled"):
        sim.split()


# --------------------------------------------------------------------------- DescribeStream


async def test_describe_pages_list_every_shard_once_in_a_stable_shuffled_order() -> None:
    sim = StreamSimulator(partitions=5, seed=11, describe_page_limit=4)
    for i in range(50):
        sim.put_item({"pk": f"k{i}"})
    sim.split()
    sim.roll_over()  # 5 roots + 10 split children + 10 rollover children
    transport = sim.transport()

    listed, pages = await describe_all(transport, sim.stream_arn)
    again, _ = await describe_all(transport, sim.stream_arn)
    smaller, smaller_pages = await describe_all(transport, sim.stream_arn, limit=3)

    ids = [s["ShardId"] for s in listed]
    creation_order = [s.shard_id for s in sim.shards()]
    assert len(ids) == len(set(ids)) == 25
    assert set(ids) == set(creation_order)
    assert ids != creation_order  # shuffled...
    assert [s["ShardId"] for s in again] == ids  # ...but stable
    assert [s["ShardId"] for s in smaller] == ids
    assert pages == 7  # 25 shards by 4: six full pages, then one with one shard
    assert smaller_pages == 9  # 8 full pages of 3, then one more (empty or 1)
    for shard in listed:
        model = next(s for s in sim.shards() if s.shard_id == shard["ShardId"])
        assert shard.get("ParentShardId") == model.parent_shard_id
        assert shard["SequenceNumberRange"].get("EndingSequenceNumber") == (
            model.ending_sequence_number
        )


async def test_full_last_page_still_names_a_last_evaluated_shard() -> None:
    sim = StreamSimulator(partitions=4, describe_page_limit=2)
    transport = sim.transport()
    first = await transport.call("DescribeStream", {"StreamArn": sim.stream_arn})
    second = await transport.call(
        "DescribeStream",
        {
            "StreamArn": sim.stream_arn,
            "ExclusiveStartShardId": first["StreamDescription"]["LastEvaluatedShardId"],
        },
    )
    assert len(second["StreamDescription"]["Shards"]) == 2
    last = second["StreamDescription"]["LastEvaluatedShardId"]  # documented: may be set
    third = await transport.call(
        "DescribeStream", {"StreamArn": sim.stream_arn, "ExclusiveStartShardId": last}
    )
    assert third["StreamDescription"]["Shards"] == []
    assert "LastEvaluatedShardId" not in third["StreamDescription"]


async def test_pagination_is_consistent_when_shards_appear_between_pages() -> None:
    sim = StreamSimulator(partitions=6, seed=5, describe_page_limit=2)
    transport = sim.transport()
    before = {s.shard_id for s in sim.shards()}
    seen: list[str] = []
    start: str | None = None
    while True:
        params: dict[str, Any] = {"StreamArn": sim.stream_arn}
        if start is not None:
            params["ExclusiveStartShardId"] = start
        description = (await transport.call("DescribeStream", params))["StreamDescription"]
        seen.extend(s["ShardId"] for s in description["Shards"])
        if len(seen) == 2:
            sim.split()  # 12 new shards land anywhere in the permutation
        start = description.get("LastEvaluatedShardId")
        if start is None:
            break
    assert len(seen) == len(set(seen))
    assert before <= set(seen)


async def test_creation_order_without_shuffle() -> None:
    sim = StreamSimulator(partitions=3, shuffle_listing=False, describe_page_limit=2)
    sim.split()
    listed, _ = await describe_all(sim.transport(), sim.stream_arn)
    assert [s["ShardId"] for s in listed] == [s.shard_id for s in sim.shards()]


async def test_child_shards_filter_lists_only_listed_children() -> None:
    sim = StreamSimulator(partitions=2, seed=9)
    first, second = sim.open_shard_ids()
    children = sim.split(first)
    (rolled,) = sim.roll_over(second)
    transport = sim.transport()

    def child_filter(shard_id: str) -> dict[str, Any]:
        return {"ShardFilter": {"Type": "CHILD_SHARDS", "ShardId": shard_id}}

    found, _ = await describe_all(transport, sim.stream_arn, **child_filter(first))
    assert sorted(s["ShardId"] for s in found) == sorted(children)
    found, _ = await describe_all(transport, sim.stream_arn, **child_filter(second))
    assert [s["ShardId"] for s in found] == [rolled]
    found, _ = await describe_all(transport, sim.stream_arn, **child_filter(rolled))
    assert found == []
    error = await error_of(
        transport.call(
            "DescribeStream",
            {"StreamArn": sim.stream_arn, "ShardFilter": {"Type": "PARENT", "ShardId": first}},
        )
    )
    assert error.code == "ValidationException"


async def test_describe_stream_fields() -> None:
    sim = StreamSimulator(key_names=("pk", "sk"), stream_view_type="KEYS_ONLY")
    description = (await sim.transport().call("DescribeStream", {"StreamArn": sim.stream_arn}))[
        "StreamDescription"
    ]
    assert description["StreamArn"] == sim.stream_arn
    assert description["StreamLabel"] == "2026-11-29T06:31:20.000"
    assert description["StreamStatus"] == "ENABLED"
    assert description["StreamViewType"] == "KEYS_ONLY"
    assert description["TableName"] == "simulated"
    assert description["CreationRequestDateTime"] == 1_795_933_880.0
    assert description["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    (shard,) = description["Shards"]
    assert "ParentShardId" not in shard
    assert "EndingSequenceNumber" not in shard["SequenceNumberRange"]


# --------------------------------------------------------------------------- GetRecords


async def test_pages_hold_at_most_1000_records_or_the_limit() -> None:
    sim = StreamSimulator(seed=12)
    for i in range(2500):
        sim.put_item({"pk": f"k{i}"})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    transport = sim.transport()

    pages = await read_closed_shard(transport, sim, root)
    assert [len(p["Records"]) for p in pages] == [1000, 1000, 500]
    assert "NextShardIterator" not in pages[-1]  # the last page carries records and ends
    assert seqs(records_of(pages)) == [c.sequence_number for c in sim.history]

    limited = await read_closed_shard(transport, sim, root, limit=700)
    assert [len(p["Records"]) for p in limited] == [700, 700, 700, 400]
    for bad in (0, 1001, "10"):
        it = await iterator(transport, sim, root)
        error = await error_of(page(transport, it, bad))  # type: ignore[arg-type]
        assert error.code == "ValidationException"


async def test_pages_stay_under_one_megabyte() -> None:
    sim = StreamSimulator(seed=13, stream_view_type="NEW_IMAGE")
    for i in range(30):
        sim.put_item({"pk": f"k{i}", "blob": "x" * 150_000})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    transport = sim.transport()

    it: str | None = await iterator(transport, sim, root)
    counts = []
    while it is not None:
        body = await transport.get_records_body({"ShardIterator": it})
        result = orjson.loads(body)
        size_without_iterator = len(body) - len(orjson.dumps(result.get("NextShardIterator", "")))
        assert size_without_iterator <= 1_048_576
        counts.append(len(result["Records"]))
        it = result.get("NextShardIterator")
    assert sum(counts) == 30
    assert max(counts) == 6


async def test_a_record_bigger_than_the_byte_cap_still_comes_alone() -> None:
    sim = StreamSimulator(max_bytes_per_page=1000)
    for i in range(3):
        sim.put_item({"pk": f"k{i}", "blob": "y" * 5000})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    pages = await read_closed_shard(sim.transport(), sim, root)
    assert [len(p["Records"]) for p in pages] == [1, 1, 1]


async def test_open_shard_returns_empty_pages_with_an_iterator_when_caught_up() -> None:
    sim = StreamSimulator()
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    it = await iterator(transport, sim, root)

    empty = await page(transport, it)
    assert empty["Records"] == []
    assert isinstance(empty["NextShardIterator"], str)
    sim.put_item({"pk": "a"})
    result = await page(transport, empty["NextShardIterator"])
    assert [r["dynamodb"]["Keys"] for r in result["Records"]] == [{"pk": {"S": "a"}}]
    # The shard closes: an iterator taken while open ends it with a last, empty page.
    sim.roll_over()
    final = await page(transport, result["NextShardIterator"])
    assert final == {"Records": []}


async def test_closed_shard_without_records_ends_at_once() -> None:
    sim = StreamSimulator()
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    pages = await read_closed_shard(sim.transport(), sim, root)
    assert pages == [{"Records": []}]


async def test_injected_empty_pages_are_bounded_and_lose_nothing() -> None:
    sim = StreamSimulator(seed=21, empty_page_rate=0.9, max_consecutive_empty_pages=2)
    for i in range(300):
        sim.put_item({"pk": f"k{i}"})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    transport = sim.transport()

    injected_runs = []
    trailing = []
    for _ in range(5):
        pages = await read_closed_shard(transport, sim, root, limit=10)
        assert seqs(records_of(pages)) == [c.sequence_number for c in sim.history]
        run = 0
        delivered = 0
        for p in pages:
            if p["Records"]:
                delivered += len(p["Records"])
                injected_runs.append(run)
                run = 0
            else:
                run += 1
        trailing.append(run)
        assert delivered == 300
    assert max(injected_runs) == 2  # at most two empty pages in a row while records wait
    assert max(trailing) <= 2  # the end may come after one or two empty pages
    assert any(trailing)


async def test_no_empty_pages_without_injection() -> None:
    sim = StreamSimulator(seed=22)
    for i in range(100):
        sim.put_item({"pk": f"k{i}"})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    pages = await read_closed_shard(sim.transport(), sim, root, limit=10)
    assert [len(p["Records"]) for p in pages] == [10] * 10


async def test_injection_on_an_open_shard_keeps_the_position() -> None:
    sim = StreamSimulator(seed=23, empty_page_rate=0.5, max_consecutive_empty_pages=1)
    for i in range(50):
        sim.put_item({"pk": f"k{i}"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    it = await iterator(transport, sim, root)
    got: list[dict[str, Any]] = []
    previous_empty = False
    while len(got) < 50:
        result = await page(transport, it, 7)
        if not result["Records"]:
            assert not previous_empty
        previous_empty = not result["Records"]
        got.extend(result["Records"])
        it = result["NextShardIterator"]
    assert seqs(got) == [c.sequence_number for c in sim.history]


# --------------------------------------------------------------------------- iterators


async def test_iterator_types_position_where_the_api_says() -> None:
    sim = StreamSimulator(seed=31)
    for i in range(10):
        sim.put_item({"pk": f"k{i}"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    numbers = [c.sequence_number for c in sim.history]

    async def first_seqs(kind: str, sequence_number: str | None = None) -> list[str]:
        it = await iterator(transport, sim, root, kind, sequence_number)
        return seqs((await page(transport, it))["Records"])

    assert await first_seqs("TRIM_HORIZON") == numbers
    assert await first_seqs("AT_SEQUENCE_NUMBER", numbers[4]) == numbers[4:]
    assert await first_seqs("AFTER_SEQUENCE_NUMBER", numbers[4]) == numbers[5:]
    assert await first_seqs("AFTER_SEQUENCE_NUMBER", numbers[-1]) == []
    starting = sim.shards()[0].starting_sequence_number
    assert starting == numbers[0]  # the shard's first record carries its starting number
    assert await first_seqs("AT_SEQUENCE_NUMBER", starting) == numbers
    between = str(int(numbers[6]) - 1)  # in range, held by no record: lands on the next one
    if between != numbers[5]:
        assert await first_seqs("AT_SEQUENCE_NUMBER", between) == numbers[6:]

    latest = await iterator(transport, sim, root, "LATEST")
    assert (await page(transport, latest))["Records"] == []
    sim.put_item({"pk": "new"})
    assert seqs((await page(transport, latest))["Records"]) == [sim.history[-1].sequence_number]


async def test_latest_on_a_closed_shard_ends_it() -> None:
    sim = StreamSimulator()
    sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    sim.roll_over()
    transport = sim.transport()
    assert await page(transport, await iterator(transport, sim, root, "LATEST")) == {"Records": []}


async def test_iterators_expire_after_fifteen_minutes_of_the_clock() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    it = await iterator(transport, sim, root)
    clock.advance(899)
    fresh = (await page(transport, it))["NextShardIterator"]  # still valid; a new iterator
    clock.advance(2)

    error = await error_of(page(transport, it))
    assert error.code == "ExpiredIteratorException"
    assert error.status == 400
    assert (await page(transport, fresh))["Records"] == []


# --------------------------------------------------------------------------- errors


async def test_errors_carry_the_service_codes() -> None:
    sim = StreamSimulator()
    sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    other = sim.stream_arn.replace("table/simulated/", "table/other/")
    first = sim.history[0].sequence_number

    cases: list[tuple[str, Any]] = [
        ("ResourceNotFoundException", transport.call("DescribeStream", {"StreamArn": other})),
        ("ValidationException", transport.call("DescribeStream", {"StreamArn": "arn:nope"})),
        (
            "ValidationException",
            transport.call("DescribeStream", {"StreamArn": sim.stream_arn, "Limit": 101}),
        ),
        (
            "ResourceNotFoundException",
            iterator(transport, sim, "shardId-00000000000000000000-deadbeef"),
        ),
        ("ValidationException", iterator(transport, sim, root, "AT_TIMESTAMP")),
        ("ValidationException", iterator(transport, sim, root, "AT_SEQUENCE_NUMBER")),
        ("ValidationException", iterator(transport, sim, root, "AT_SEQUENCE_NUMBER", "12x")),
        ("ValidationException", iterator(transport, sim, root, "TRIM_HORIZON", first)),
        (
            "ValidationException",
            iterator(transport, sim, root, "AT_SEQUENCE_NUMBER", str(int(first) - 1)),
        ),
        ("ValidationException", iterator(transport, sim, root, "AT_SEQUENCE_NUMBER", str(10**30))),
        ("ValidationException", page(transport, "not an iterator")),
        ("ValidationException", page(transport, f"{sim.stream_arn}|1|!!!")),
        ("ResourceNotFoundException", transport.call("DescribeTable", {"TableName": "other"})),
        ("UnknownOperationException", transport.call("PutItem", {})),
    ]
    for code, awaitable in cases:
        error = await error_of(awaitable)
        assert error.code == code, (code, error)
        assert error.status == 400
        assert error.message


async def test_an_iterator_from_another_stream_is_not_found() -> None:
    sim = StreamSimulator(table_name="one")
    other = StreamSimulator(table_name="two")
    (root,) = other.open_shard_ids()
    it = await iterator(other.transport(), other, root)
    error = await error_of(page(sim.transport(), it))
    assert error.code == "ResourceNotFoundException"


async def test_fail_next_injects_errors_in_order_then_recovers() -> None:
    sim = StreamSimulator()
    transport = sim.transport()
    sim.fail_next("DescribeStream", "ThrottlingException", times=2)
    sim.fail_next("DescribeStream", "InternalServerError")
    sim.fail_next("GetRecords", "LimitExceededException", message="slow down")
    params = {"StreamArn": sim.stream_arn}

    codes = []
    for _ in range(3):
        error = await error_of(transport.call("DescribeStream", params))
        codes.append((error.code, error.status))
    assert codes == [
        ("ThrottlingException", 400),
        ("ThrottlingException", 400),
        ("InternalServerError", 500),
    ]
    assert (await transport.call("DescribeStream", params))["StreamDescription"]["Shards"]
    (root,) = sim.open_shard_ids()
    it = await iterator(transport, sim, root)
    error = await error_of(page(transport, it))
    assert (error.code, error.message) == ("LimitExceededException", "slow down")
    assert (await page(transport, it))["Records"] == []
    assert sim.calls["DescribeStream"] == 4
    assert sim.calls["GetRecords"] == 2
    with pytest.raises(ValueError, match="operation"):
        sim.fail_next("PutItem", "ThrottlingException")


async def test_a_closed_transport_refuses_calls() -> None:
    sim = StreamSimulator()
    transport = sim.transport()
    await transport.close()
    await transport.close()
    error = await error_of(transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))
    assert error.code == "ConnectionError"
    assert await sim.transport().call("DescribeStream", {"StreamArn": sim.stream_arn})


# --------------------------------------------------------------------------- tables & listing


async def test_list_streams_and_describe_table() -> None:
    sim = StreamSimulator(table_name="orders", key_names=("id",))
    sim.put_item({"id": 1})
    transport = sim.transport()
    summary = {"StreamArn": sim.stream_arn, "TableName": "orders", "StreamLabel": sim.stream_label}

    assert await transport.call("ListStreams", {}) == {"Streams": [summary]}
    assert await transport.call("ListStreams", {"TableName": "orders"}) == {"Streams": [summary]}
    assert await transport.call("ListStreams", {"TableName": "other"}) == {"Streams": []}
    table = (await transport.call("DescribeTable", {"TableName": "orders"}))["Table"]
    assert table["LatestStreamArn"] == sim.stream_arn
    assert table["TableArn"] == "arn:aws:dynamodb:us-east-1:123456789012:table/orders"
    assert table["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    assert table["KeySchema"] == [{"AttributeName": "id", "KeyType": "HASH"}]
    by_arn = await transport.call("DescribeTable", {"TableName": sim.table_arn})
    assert by_arn["Table"]["TableName"] == "orders"


# --------------------------------------------------------------------------- clock & threads


def test_shard_ids_carry_the_clock_time_at_creation() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    clock.advance(4 * 3600)
    (child,) = sim.roll_over()
    assert child.startswith(f"shardId-{((1_795_933_880 + 4 * 3600) * 1000):020d}-")
    shard = next(s for s in sim.shards() if s.shard_id == child)
    assert shard.created_at_hint is not None
    assert shard.created_at_hint.timestamp() == 1_795_933_880 + 4 * 3600


async def test_writes_from_another_thread_while_reading() -> None:
    sim = StreamSimulator(partitions=1, seed=41)
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    it = await iterator(transport, sim, root)

    def writer() -> None:
        for i in range(500):
            sim.put_item({"pk": f"k{i}", "v": i})

    thread = threading.Thread(target=writer)
    thread.start()
    got: list[dict[str, Any]] = []
    while thread.is_alive() or len(got) < 500:
        result = await page(transport, it, 50)
        got.extend(result["Records"])
        it = result["NextShardIterator"]
        await asyncio.sleep(0)
    thread.join()
    assert seqs(got) == [c.sequence_number for c in sim.history]


async def test_client_reads_the_simulator_in_memory() -> None:
    sim = StreamSimulator(partitions=3, seed=43)
    sim.split()
    async with sim.client() as client:
        description = await client.describe_stream(sim.stream_arn)
        assert await client.resolve_stream("simulated") == sim.stream_arn
    assert sorted(s.shard_id for s in description.shards) == sorted(
        s.shard_id for s in sim.shards()
    )


def test_call_and_get_records_body_answer_without_a_transport() -> None:
    sim = StreamSimulator(partitions=1, seed=47)
    change = sim.put_item({"pk": "a", "v": 1})
    assert change is not None
    (root,) = sim.open_shard_ids()
    description = sim.call("DescribeStream", {"StreamArn": sim.stream_arn})
    assert [s["ShardId"] for s in description["StreamDescription"]["Shards"]] == [root]
    it = sim.call(
        "GetShardIterator",
        {"StreamArn": sim.stream_arn, "ShardId": root, "ShardIteratorType": "TRIM_HORIZON"},
    )["ShardIterator"]
    body = sim.get_records_body({"ShardIterator": it})
    assert seqs(orjson.loads(body)["Records"]) == [change.sequence_number]
    assert sim.calls == {"DescribeStream": 1, "GetShardIterator": 1, "GetRecords": 1}

    for operation in ("GetRecords", "PutItem"):
        with pytest.raises(TransportError) as caught:
            sim.call(operation, {})
        assert (caught.value.code, caught.value.status) == ("UnknownOperationException", 400)
    assert sum(sim.calls.values()) == 3  # unknown operations are not counted

    sim.fail_next("GetRecords", "ThrottlingException")
    with pytest.raises(TransportError) as caught:
        sim.get_records_body({"ShardIterator": it})
    assert caught.value.code == "ThrottlingException"
    assert sim.faults_injected == {"ThrottlingException": 1}
