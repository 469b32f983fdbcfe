"""The single-pass reader over the stream simulator: lineage, paging and checkpoints.

The simulator does what DynamoDB Local cannot: rollovers, splits, trimmed parents, sparse
empty pages, DescribeStream pages listing shards in no particular order.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from typing import Any

import pytest

import ddbstreams
from ddbstreams.testing import SimulatedClock, StreamSimulator, serve_simulator


def churn(sim: StreamSimulator, *, items: int, rounds: int, seed: int) -> None:
    """Write changes to ``items`` keys over ``rounds`` rounds of shard rollovers and splits."""
    rng = random.Random(seed)
    version: dict[str, int] = defaultdict(int)
    for round_number in range(rounds):
        for _ in range(rng.randint(5, 40)):
            key = f"item-{rng.randrange(items)}"
            if version[key] and rng.random() < 0.15:
                sim.delete_item({"pk": key})
                version[key] = 0
            else:
                version[key] += 1
                sim.put_item({"pk": key, "version": version[key], "round": round_number})
        action = rng.random()
        open_shards = sim.open_shard_ids()
        if action < 0.3:
            sim.roll_over()  # every open shard rolls over, as at DynamoDB's ~4-hour mark
        elif action < 0.8 and len(open_shards) < 12:
            sim.split(rng.choice(open_shards))
        elif action < 0.9:
            sim.roll_over(rng.choice(open_shards))


def assert_exactly_once_in_item_order(sim: StreamSimulator, records: list[ddbstreams.Record]):
    delivered = [r.sequence_number for r in records]
    assert len(delivered) == len(set(delivered)), "a record was delivered twice"
    written = {change.sequence_number for change in sim.history}
    assert set(delivered) == written, (
        f"missing {len(written - set(delivered))}, unexpected {len(set(delivered) - written)}"
    )
    per_item: dict[str, list[int]] = defaultdict(list)
    for record in records:
        per_item[record.keys["pk"]].append(int(record.sequence_number))
    for key, sequence_numbers in per_item.items():
        assert sequence_numbers == sorted(sequence_numbers), f"{key} out of order"


async def read_all(sim: StreamSimulator, **kwargs: Any) -> list[ddbstreams.Record]:
    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client(), **kwargs) as reader:
        return [record async for record in reader]


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_lineage_through_rollovers_and_splits(seed: int) -> None:
    sim = StreamSimulator(partitions=3, seed=seed, describe_page_limit=3, empty_page_rate=0.3)
    churn(sim, items=40, rounds=25, seed=seed)
    assert len(sim.history) > 300

    records = await read_all(sim, page_limit=7, max_concurrent_requests=4)

    assert_exactly_once_in_item_order(sim, records)


async def test_one_shard_at_a_time_still_reads_everything() -> None:
    sim = StreamSimulator(partitions=2, seed=5, empty_page_rate=0.2)
    churn(sim, items=10, rounds=10, seed=5)

    records = await read_all(sim, max_concurrent_requests=1, buffer_pages=1)

    assert_exactly_once_in_item_order(sim, records)


async def shard_ids(sim: StreamSimulator) -> list[str]:
    async with sim.client() as client:
        description = await client.describe_stream(sim.stream_arn)
    return [shard.shard_id for shard in description.shards]


async def test_trimmed_parent_makes_its_children_roots() -> None:
    sim = StreamSimulator(partitions=1, seed=7)
    for i in range(10):
        sim.put_item({"pk": f"old-{i}"})
    (root,) = await shard_ids(sim)
    children = sim.split(root)
    for i in range(10):
        sim.put_item({"pk": f"new-{i}"})
    sim.trim(root)
    assert sorted(await shard_ids(sim)) == sorted(children)

    records = await read_all(sim)

    assert sorted(r.keys["pk"] for r in records) == sorted(f"new-{i}" for i in range(10))


async def test_big_pages_are_capped_and_read_whole() -> None:
    sim = StreamSimulator(partitions=1, seed=9)
    for i in range(2500):
        sim.put_item({"pk": f"item-{i}", "padding": "x" * 600})

    records = await read_all(sim)

    assert [r.keys["pk"] for r in records] == [f"item-{i}" for i in range(2500)]


async def test_batches_come_from_one_shard_and_respect_max_size() -> None:
    sim = StreamSimulator(partitions=3, seed=11)
    churn(sim, items=30, rounds=6, seed=11)

    seen: list[ddbstreams.Record] = []
    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client()) as reader:
        async for batch in reader.batches(5):
            assert 1 <= len(batch) <= 5
            assert len({r.shard_id for r in batch}) == 1
            seen.extend(batch)

    assert_exactly_once_in_item_order(sim, seen)


@pytest.mark.parametrize("stop_after", [1, 37, 150])
async def test_resume_from_checkpoint_across_new_rollovers_and_splits(stop_after: int) -> None:
    sim = StreamSimulator(partitions=2, seed=stop_after, empty_page_rate=0.2)
    churn(sim, items=25, rounds=8, seed=stop_after)

    first: list[ddbstreams.Record] = []
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), page_limit=10
    ) as reader:
        async for record in reader:
            first.append(record)
            if len(first) == stop_after:
                break
        checkpoint = reader.checkpoint()

    # The stream moves on while the reader is down: more writes, rollovers and splits.
    churn(sim, items=25, rounds=6, seed=stop_after + 1000)
    resumed = await read_all(sim, start=ddbstreams.Checkpoint.from_json(checkpoint.to_json()))

    assert_exactly_once_in_item_order(sim, first + resumed)


async def test_at_and_after_sequence_read_that_shard_then_its_descendants() -> None:
    sim = StreamSimulator(partitions=2, seed=13)
    churn(sim, items=20, rounds=6, seed=13)
    middle = sim.history[len(sim.history) // 3]

    at = await read_all(sim, start=ddbstreams.at_sequence(middle.sequence_number))
    after = await read_all(sim, start=ddbstreams.after_sequence(middle.sequence_number))

    assert at[0].sequence_number == middle.sequence_number
    assert [r.sequence_number for r in after] == [r.sequence_number for r in at[1:]]
    # Only middle's shard and its descendants: every record of that lineage from there on.
    lineage = {r.shard_id for r in at}
    expected = [
        c.sequence_number
        for c in sim.history
        if c.shard_id in lineage and int(c.sequence_number) >= int(middle.sequence_number)
    ]
    assert sorted(r.sequence_number for r in at) == sorted(expected)


async def test_latest_single_pass_reads_nothing_but_checkpoints_the_open_shards() -> None:
    sim = StreamSimulator(partitions=2, seed=17)
    churn(sim, items=5, rounds=3, seed=17)

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), start=ddbstreams.LATEST
    ) as reader:
        records = [record async for record in reader]
        checkpoint = reader.checkpoint()

    assert records == []
    assert checkpoint.pending
    assert all(start.iterator_type == "LATEST" for start in checkpoint.pending.values())


async def test_position_held_by_no_shard_is_a_clear_error() -> None:
    sim = StreamSimulator(partitions=1, seed=19)
    sim.put_item({"pk": "x"})
    first = int(sim.history[0].sequence_number)

    with pytest.raises(ddbstreams.InvalidPositionError, match=str(first - 1)):
        await read_all(sim, start=ddbstreams.at_sequence(str(first - 1)))


async def test_leaving_early_stops_every_fetcher() -> None:
    sim = StreamSimulator(partitions=4, seed=23)
    churn(sim, items=50, rounds=10, seed=23)
    before = asyncio.all_tasks()

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), buffer_pages=1
    ) as reader:
        async for _ in reader:
            break

    assert asyncio.all_tasks() == before


async def test_over_http_through_botocore() -> None:
    sim = StreamSimulator(partitions=2, seed=29, describe_page_limit=2, empty_page_rate=0.2)
    churn(sim, items=15, rounds=6, seed=29)

    async with (
        serve_simulator(sim) as endpoint_url,
        ddbstreams.StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
        ) as client,
        ddbstreams.StreamReader(sim.table_name, client=client) as reader,
    ):
        records = [record async for record in reader]

    assert_exactly_once_in_item_order(sim, records)


def test_blocking_read_over_the_simulator() -> None:
    sim = StreamSimulator(partitions=2, seed=31)
    churn(sim, items=15, rounds=5, seed=31)

    records = list(ddbstreams.read(sim.stream_arn, client=sim.client()))

    assert_exactly_once_in_item_order(sim, records)


def test_blocking_read_raises_typed_errors() -> None:
    sim = StreamSimulator(partitions=1, seed=37)
    with pytest.raises(ddbstreams.InvalidStreamArnError):
        list(ddbstreams.read("arn:aws:dynamodb:bad", client=sim.client()))
    with pytest.raises(ddbstreams.InvalidPositionError):
        list(
            ddbstreams.read(sim.stream_arn, client=sim.client(), start=ddbstreams.at_sequence("1"))
        )


async def test_checkpoint_survives_trimming_of_finished_shards_but_not_of_unfinished() -> None:
    sim = StreamSimulator(partitions=1, seed=41)
    for i in range(5):
        sim.put_item({"pk": f"old-{i}"})
    (root,) = await shard_ids(sim)
    (child,) = sim.roll_over(root)
    for i in range(5):
        sim.put_item({"pk": f"new-{i}"})

    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client()) as reader:
        first = [record async for record in reader]
        done = reader.checkpoint()
    assert root in done.finished
    assert len(first) == 10

    sim.trim(root)
    sim.put_item({"pk": "newest"})
    resumed = await read_all(sim, start=done)
    assert [r.keys["pk"] for r in resumed] == ["newest"]

    # A checkpoint still inside the root when the root is trimmed lost records: by default
    # the gap is reported and reading goes on; with on_trimmed="raise" it is an error.
    partial = ddbstreams.Checkpoint(
        sim.stream_arn, positions={root: first[2].sequence_number, child: first[7].sequence_number}
    )
    events: list[ddbstreams.ReaderEvent] = []
    after_gap = await read_all(sim, start=partial, on_event=events.append)
    assert [r.keys["pk"] for r in after_gap] == ["new-3", "new-4", "newest"]
    assert ddbstreams.RecordsTrimmed(root, first[2].sequence_number, shard_gone=True) in events
    with pytest.raises(ddbstreams.CheckpointError, match=root):
        await read_all(sim, start=partial, on_trimmed="raise")


async def test_at_sequence_finds_the_right_shard_among_overlapping_open_ranges() -> None:
    # Three partitions open side by side: every open shard's range holds every new number.
    sim = StreamSimulator(partitions=3, seed=43)
    for i in range(60):
        sim.put_item({"pk": f"item-{i}"})
    by_shard: dict[str, list[str]] = defaultdict(list)
    for change in sim.history:
        by_shard[change.shard_id].append(change.sequence_number)
    assert len(by_shard) == 3

    for shard_id, sequence_numbers in by_shard.items():
        target = sequence_numbers[len(sequence_numbers) // 2]
        records = await read_all(sim, start=ddbstreams.at_sequence(target))
        assert {r.shard_id for r in records} == {shard_id}
        assert [r.sequence_number for r in records] == sequence_numbers[
            len(sequence_numbers) // 2 :
        ]


async def test_shard_batches_carry_sequence_numbers_and_end_markers() -> None:
    sim = StreamSimulator(partitions=1, seed=47)
    for i in range(7):
        sim.put_item({"pk": f"item-{i}"})
    (root,) = await shard_ids(sim)
    (child,) = sim.roll_over(root)
    sim.put_item({"pk": "in-child"})

    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client()) as reader:
        batches = [batch async for batch in reader.shard_batches(3)]

    by_shard = [(b.shard_id, len(b.records), b.ends_shard) for b in batches]
    # Root: 3 + 3 + 1 records, the last batch ending it (possibly an empty marker after).
    assert by_shard[:2] == [(root, 3, False), (root, 3, False)]
    assert [b for b in batches if b.shard_id == root][-1].ends_shard
    assert sum(n for shard, n, _ in by_shard if shard == root) == 7
    assert [(s, n) for s, n, _ in by_shard if s == child] == [(child, 1)]
    for batch in batches:
        assert batch.sequence_numbers == [r.sequence_number for r in batch.records]
    # Each batch says where the checkpoint stood before it was handed out.
    assert batches[0].position_before == ddbstreams.ShardStart("TRIM_HORIZON")
    assert batches[1].position_before == ddbstreams.ShardStart(
        "AFTER_SEQUENCE_NUMBER", batches[0].sequence_numbers[-1]
    )


@pytest.mark.parametrize("seed", range(8))
async def test_a_single_pass_reads_a_parent_listed_open_but_with_children_to_its_end(
    seed: int,
) -> None:
    """A stale listing shows the closed parent without its end while its child is listed:
    the parent is closed, so empty pages mid-shard must not end it early (and its child must
    not start before it has ended)."""
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock,
        seed=seed,
        stale_parent_duration=600.0,
        empty_page_rate=0.6,
        max_consecutive_empty_pages=5,
        max_records_per_page=5,
    )
    for n in range(40):
        sim.put_item({"pk": f"k{n % 4}", "n": n})
    (parent,) = sim.open_shard_ids()
    sim.roll_over()
    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client(), clock=clock) as reader:
        got = [record async for record in reader]
    assert {r.sequence_number for r in got} == {c.sequence_number for c in sim.history}
    assert [r.shard_id for r in got] == sorted(
        (r.shard_id for r in got), key=lambda shard_id: shard_id != parent
    )
