"""Time-driven and lifecycle behaviour: retention, iterator expiry, listing delays, stale
parents, disabling the stream, deleting the table or the stream."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
import pytest

from ddbstreams._errors import StreamNotFoundError, TableNotFoundError
from ddbstreams.client._streams import StreamsClient
from ddbstreams.testing._server import serve_simulator
from ddbstreams.testing.simulator import SimulatedClock, SimulatorTransport, StreamSimulator
from ddbstreams.transport._seam import TransportError

HOUR = 3600.0


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
    value = (await transport.call("GetShardIterator", params))["ShardIterator"]
    assert isinstance(value, str)
    return value


async def page(transport: SimulatorTransport, it: str) -> dict[str, Any]:
    result = orjson.loads(await transport.get_records_body({"ShardIterator": it}))
    assert isinstance(result, dict)
    return result


async def listed(
    transport: SimulatorTransport, sim: StreamSimulator, **extra: Any
) -> dict[str, dict[str, Any]]:
    shards: dict[str, dict[str, Any]] = {}
    start: str | None = None
    while True:
        params: dict[str, Any] = {"StreamArn": sim.stream_arn, **extra}
        if start is not None:
            params["ExclusiveStartShardId"] = start
        description = (await transport.call("DescribeStream", params))["StreamDescription"]
        shards.update((s["ShardId"], s) for s in description["Shards"])
        start = description.get("LastEvaluatedShardId")
        if start is None:
            return shards


async def error_code(awaitable: Any) -> str:
    with pytest.raises(TransportError) as info:
        await awaitable
    return info.value.code


def is_closed(shard: dict[str, Any]) -> bool:
    return "EndingSequenceNumber" in shard["SequenceNumberRange"]


# --------------------------------------------------------------------------- retention


async def test_retention_trims_old_records_and_moves_the_trim_horizon() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    (root,) = sim.open_shard_ids()
    old = [sim.put_item({"pk": f"old-{i}"}) for i in range(5)]
    clock.advance(12 * HOUR)
    new = [sim.put_item({"pk": f"new-{i}"}) for i in range(5)]
    transport = sim.transport()
    old_seqs = [c.sequence_number for c in old if c is not None]
    new_seqs = [c.sequence_number for c in new if c is not None]

    clock.advance(12 * HOUR)  # the old records are exactly 24 h old: still kept
    first = await page(transport, await iterator(transport, sim, root))
    assert [r["dynamodb"]["SequenceNumber"] for r in first["Records"]] == old_seqs + new_seqs

    clock.advance(1.0)  # now older than 24 h
    horizon = await page(transport, await iterator(transport, sim, root))
    assert [r["dynamodb"]["SequenceNumber"] for r in horizon["Records"]] == new_seqs
    for kind in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
        for seq in (old_seqs[0], old_seqs[-1]):
            code = await error_code(iterator(transport, sim, root, kind, seq))
            assert code == "TrimmedDataAccessException"
    at_new = await page(
        transport, await iterator(transport, sim, root, "AT_SEQUENCE_NUMBER", new_seqs[0])
    )
    assert [r["dynamodb"]["SequenceNumber"] for r in at_new["Records"]] == new_seqs
    assert [c.sequence_number for c in sim.retained_history()] == new_seqs
    assert len(sim.history) == 10
    assert list(sim.changes_by_item(retained_only=True)) == [(f"new-{i}",) for i in range(5)]


async def test_an_iterator_left_behind_by_the_trim_horizon_fails_on_get_records() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    (root,) = sim.open_shard_ids()
    sim.put_item({"pk": "a"})
    clock.advance(24 * HOUR - 60)
    sim.put_item({"pk": "b"})
    transport = sim.transport()
    held = await iterator(transport, sim, root)  # points at "a"

    clock.advance(120)  # "a" is trimmed while the iterator (2 minutes old) is still valid

    assert await error_code(page(transport, held)) == "TrimmedDataAccessException"
    fresh = await page(transport, await iterator(transport, sim, root))
    assert [r["dynamodb"]["Keys"]["pk"]["S"] for r in fresh["Records"]] == ["b"]


async def test_old_closed_shards_disappear_and_their_children_name_an_unlisted_parent() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=3)
    first, second = sim.open_shard_ids()
    for i in range(20):
        sim.put_item({"pk": f"k{i}"})
    clock.advance(1 * HOUR)
    (child,) = sim.roll_over(first)  # `first` closes at 1 h
    transport = sim.transport()

    clock.advance(23 * HOUR + 30)  # its records are > 24 h old, but it closed < 24 h ago
    shards = await listed(transport, sim)
    assert first in shards
    assert await page(transport, await iterator(transport, sim, first)) == {"Records": []}

    clock.advance(HOUR)  # closed more than 24 h ago: gone
    shards = await listed(transport, sim)
    assert set(shards) == {second, child}
    assert shards[child]["ParentShardId"] == first
    assert await error_code(iterator(transport, sim, first)) == "ResourceNotFoundException"
    assert first not in {s.shard_id for s in sim.shards()}
    assert first in {s.shard_id for s in sim.shards(include_trimmed=True)}
    assert (await page(transport, await iterator(transport, sim, second)))["Records"] == []
    assert sim.retained_history() == []


async def test_apply_retention_and_no_retention() -> None:
    clock = SimulatedClock()
    keep = StreamSimulator(clock=clock, retention=None)
    short = StreamSimulator(clock=clock, retention=60.0)
    for sim in (keep, short):
        sim.put_item({"pk": "a"})
        sim.roll_over()
    clock.advance(100 * HOUR)

    short.apply_retention()

    assert len(keep.retained_history()) == 1
    assert len(keep.shards()) == 2
    assert short.retained_history() == []
    assert len(short.shards()) == 1
    with pytest.raises(ValueError, match="retention"):
        StreamSimulator(retention=0)


# --------------------------------------------------------------------------- expiry


async def test_an_iterator_expires_while_a_task_sleeps_holding_it() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()

    async def slow_reader() -> str:
        it = await iterator(transport, sim, root)
        await clock.sleep(15 * 60 + 1)  # e.g. a consumer busy for 15 minutes
        return await error_code(page(transport, it))

    async def punctual_reader() -> int:
        it = await iterator(transport, sim, root)
        await clock.sleep(14 * 60)
        return len((await page(transport, it))["Records"])

    slow, punctual = await asyncio.gather(slow_reader(), punctual_reader())
    assert (slow, punctual) == ("ExpiredIteratorException", 1)


# --------------------------------------------------------------------------- listing delays


async def test_children_are_listed_only_after_the_visibility_delay() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, children_visibility_delay=30.0, seed=4)
    (root,) = sim.open_shard_ids()
    sim.put_item({"pk": "before"})
    children = sim.split(root)
    after = sim.put_item({"pk": "after"})
    transport = sim.transport()
    child_filter = {"ShardFilter": {"Type": "CHILD_SHARDS", "ShardId": root}}

    shards = await listed(transport, sim)
    assert list(shards) == [root]
    assert is_closed(shards[root])
    assert await listed(transport, sim, **child_filter) == {}
    # The hidden children already exist and take writes.
    assert after is not None
    assert after.shard_id in children
    assert (await page(transport, await iterator(transport, sim, after.shard_id)))["Records"]

    clock.advance(29.0)
    assert list(await listed(transport, sim)) == [root]
    clock.advance(1.0)
    assert set(await listed(transport, sim)) == {root, *children}
    assert set(await listed(transport, sim, **child_filter)) == set(children)
    assert {s.shard_id for s in sim.shards()} == {root, *children}  # the truth, at all times


async def test_a_closed_parent_is_listed_as_open_for_a_while() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, stale_parent_duration=60.0, seed=5)
    (root,) = sim.open_shard_ids()
    change = sim.put_item({"pk": "a"})
    (child,) = sim.roll_over(root)
    transport = sim.transport()

    shards = await listed(transport, sim)
    assert set(shards) == {root, child}
    assert not is_closed(shards[root])  # stale: no EndingSequenceNumber yet
    assert shards[child]["ParentShardId"] == root
    # Reading it shows the truth: the shard ends (a page without NextShardIterator).
    assert change is not None
    last = await page(transport, await iterator(transport, sim, root))
    assert [r["dynamodb"]["SequenceNumber"] for r in last["Records"]] == [change.sequence_number]
    assert "NextShardIterator" not in last
    assert next(s for s in sim.shards() if s.shard_id == root).ending_sequence_number

    clock.advance(60.0)
    shards = await listed(transport, sim)
    assert shards[root]["SequenceNumberRange"]["EndingSequenceNumber"] == change.sequence_number


async def test_a_shard_disabled_without_children_is_never_stale() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, stale_parent_duration=60.0)
    sim.disable_stream()
    shards = await listed(sim.transport(), sim)
    assert all(is_closed(s) for s in shards.values())


def test_listing_delay_arguments_are_checked() -> None:
    with pytest.raises(ValueError, match="children_visibility_delay"):
        StreamSimulator(children_visibility_delay=-1.0)
    with pytest.raises(ValueError, match="stale_parent_duration"):
        StreamSimulator(stale_parent_duration=-1.0)


# --------------------------------------------------------------------------- lifecycle


async def test_a_disabled_stream_stays_readable_and_grows_no_shards() -> None:
    sim = StreamSimulator(partitions=2, seed=6)
    for i in range(10):
        sim.put_item({"pk": f"k{i}"})
    before = {s.shard_id for s in sim.shards()}

    sim.disable_stream()

    transport = sim.transport()
    description = (await transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))[
        "StreamDescription"
    ]
    assert description["StreamStatus"] == "DISABLED"
    assert {s["ShardId"] for s in description["Shards"]} == before
    assert all(is_closed(s) for s in description["Shards"])
    read: list[str] = []
    for shard_id in before:
        it: str | None = await iterator(transport, sim, shard_id)
        while it is not None:
            result = await page(transport, it)
            read.extend(r["dynamodb"]["SequenceNumber"] for r in result["Records"])
            it = result.get("NextShardIterator")
    assert sorted(read) == sorted(c.sequence_number for c in sim.history)
    with pytest.raises(ValueError, match="disabled"):
        sim.roll_over()
    table = (await transport.call("DescribeTable", {"TableName": sim.table_name}))["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": False}
    assert table["LatestStreamArn"] == sim.stream_arn
    assert await transport.call("ListStreams", {}) == {
        "Streams": [
            {
                "StreamArn": sim.stream_arn,
                "TableName": sim.table_name,
                "StreamLabel": sim.stream_label,
            }
        ]
    }


async def test_a_deleted_table_leaves_a_disabled_readable_stream() -> None:
    sim = StreamSimulator()
    change = sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    sim.delete_table()
    sim.delete_table()
    transport = sim.transport()

    assert not sim.table_exists
    assert not sim.enabled
    assert sim.stream_exists
    code = await error_code(transport.call("DescribeTable", {"TableName": sim.table_name}))
    assert code == "ResourceNotFoundException"
    description = (await transport.call("DescribeStream", {"StreamArn": sim.stream_arn}))[
        "StreamDescription"
    ]
    assert description["StreamStatus"] == "DISABLED"
    last = await page(transport, await iterator(transport, sim, root))
    assert change is not None
    assert [r["dynamodb"]["SequenceNumber"] for r in last["Records"]] == [change.sequence_number]
    assert "NextShardIterator" not in last
    assert len((await transport.call("ListStreams", {}))["Streams"]) == 1
    with pytest.raises(ValueError, match="deleted"):
        sim.put_item({"pk": "b"})
    with pytest.raises(ValueError, match="deleted"):
        sim.delete_item({"pk": "a"})
    assert sim.items() == []


async def test_a_deleted_stream_is_not_found_anywhere() -> None:
    sim = StreamSimulator()
    sim.put_item({"pk": "a"})
    (root,) = sim.open_shard_ids()
    transport = sim.transport()
    held = await iterator(transport, sim, root)

    sim.delete_stream()
    sim.delete_stream()

    assert not sim.stream_exists
    assert sim.table_exists
    for call in (
        transport.call("DescribeStream", {"StreamArn": sim.stream_arn}),
        iterator(transport, sim, root),
        transport.get_records_body({"ShardIterator": held}),
    ):
        assert await error_code(call) == "ResourceNotFoundException"
    assert await transport.call("ListStreams", {}) == {"Streams": []}
    table = (await transport.call("DescribeTable", {"TableName": sim.table_name}))["Table"]
    assert table["StreamSpecification"] == {"StreamEnabled": False}


async def test_deleted_stream_and_table_through_the_client_over_http() -> None:
    sim = StreamSimulator()
    async with (
        serve_simulator(sim) as endpoint_url,
        StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        ) as client,
    ):
        sim.delete_stream()
        with pytest.raises(StreamNotFoundError):
            await client.describe_stream(sim.stream_arn)
        sim.delete_table()
        with pytest.raises(TableNotFoundError):
            await client.resolve_stream(sim.table_name)


# --------------------------------------------------------------------------- counters


async def test_get_records_calls_are_counted_per_shard() -> None:
    sim = StreamSimulator(partitions=2, seed=7)
    busy, idle = sim.open_shard_ids()
    transport = sim.transport()
    it_busy = await iterator(transport, sim, busy)
    it_idle = await iterator(transport, sim, idle)
    for _ in range(3):
        it_busy = (await page(transport, it_busy))["NextShardIterator"]
    for _ in range(5):
        it_idle = (await page(transport, it_idle))["NextShardIterator"]

    assert sim.get_records_calls == {busy: 3, idle: 5}
    assert sim.calls["GetRecords"] == 8
    assert sim.calls["GetShardIterator"] == 2
