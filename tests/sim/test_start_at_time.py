"""Starting at a time over the stream simulator, in virtual time.

Hours of writes with rollovers, splits, trimmed parents and retention; a reader or a
consumer started with ``at_time`` must deliver exactly the records created at or after the
moment (inclusive after rounding: the simulator, like AWS, rounds creation times down to
the second), never read the shards that ended before it, and a checkpoint taken before the
moment was reached must resume with the filter still on.
"""

from __future__ import annotations

import asyncio
import math
import random
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

import ddbstreams
from ddbstreams import Consumer, MemoryCheckpointStore, Record, at_time
from ddbstreams.testing import SimulatedClock, StreamSimulator

HOUR = 3600.0


def write_for(
    sim: StreamSimulator,
    clock: SimulatedClock,
    hours: float,
    *,
    rng: random.Random,
    every: float = 300.0,
    rollover_every: float = 4 * HOUR,
) -> None:
    """Write a few changes every ``every`` seconds for ``hours``, rolling every shard over
    every ``rollover_every`` seconds and splitting one now and then (clock advanced by hand)."""
    since_rollover = 0.0
    for _ in range(int(hours * HOUR / every)):
        for _ in range(rng.randint(1, 4)):
            sim.put_item({"pk": f"item-{rng.randrange(30)}", "n": rng.random()})
        clock.advance(every)
        since_rollover += every
        if since_rollover >= rollover_every:
            since_rollover = 0.0
            sim.roll_over()
        elif rng.random() < 0.02 and len(sim.open_shard_ids()) < 6:
            sim.split(rng.choice(sim.open_shard_ids()))


def kept_by(moment: datetime, sim: StreamSimulator) -> set[str]:
    """Sequence numbers of the retained changes an at_time(moment) read must deliver: those
    whose creation time, rounded down to the second, is not before the moment's."""
    threshold = math.floor(moment.timestamp())
    return {
        change.sequence_number
        for change in sim.retained_history()
        if math.floor(change.approximate_creation_time) >= threshold
    }


def assert_item_order(records: list[Record]) -> None:
    per_item: dict[str, list[int]] = defaultdict(list)
    for record in records:
        per_item[record.keys["pk"]].append(int(record.sequence_number))
    for key, sequence_numbers in per_item.items():
        assert sequence_numbers == sorted(sequence_numbers), f"{key} out of order"


async def read(
    sim: StreamSimulator, clock: SimulatedClock, start: Any, **kwargs: Any
) -> tuple[list[Any], list[ddbstreams.ReaderEvent]]:
    events: list[ddbstreams.ReaderEvent] = []
    async with (
        asyncio.timeout(60),
        ddbstreams.StreamReader(
            sim.stream_arn,
            start=start,
            client=sim.client(),
            clock=clock,
            on_event=events.append,
            **kwargs,
        ) as reader,
    ):
        return [record async for record in reader], events


def ended_before(sim: StreamSimulator, moment: datetime) -> set[str]:
    """Listed shards every child of which was created before the moment."""
    shards = sim.shards()
    children: dict[str, list[Any]] = defaultdict(list)
    for shard in shards:
        if shard.parent_shard_id is not None:
            children[shard.parent_shard_id].append(shard)
    return {
        shard.shard_id
        for shard in shards
        if children[shard.shard_id]
        and all(kid.created_at_hint < moment for kid in children[shard.shard_id])
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_a_single_pass_delivers_exactly_the_records_from_the_moment(seed: int) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock, partitions=2, seed=seed, max_records_per_page=7, empty_page_rate=0.2
    )
    rng = random.Random(seed)
    write_for(sim, clock, 30, rng=rng)  # the first 6 hours fall out of the 24-hour retention
    moment = datetime.fromtimestamp(clock.time() - 13 * HOUR + 0.5, tz=UTC)

    records, events = await read(sim, clock, at_time(moment))

    delivered = [r.sequence_number for r in records]
    assert len(delivered) == len(set(delivered))
    assert set(delivered) == kept_by(moment, sim)
    assert all(r.approximate_creation_time >= moment - timedelta(seconds=1) for r in records)
    assert_item_order(records)
    assert len(sim.retained_history()) < len(sim.history)  # retention trimmed the oldest
    # Shards that ended before the moment were not read at all; the others were read from
    # their start, and what they held before the moment was dropped and reported.
    skipped = ended_before(sim, moment)
    assert skipped
    assert all(sim.get_records_calls[shard_id] == 0 for shard_id in skipped)
    dropped = sum(e.records for e in events if isinstance(e, ddbstreams.RecordsSkipped))
    read_shards = {s.shard_id for s in sim.shards()} - skipped
    older = [
        c
        for c in sim.retained_history()
        if c.shard_id in read_shards and c.sequence_number not in kept_by(moment, sim)
    ]
    assert dropped == len(older) > 0


async def test_records_of_the_moments_second_are_kept_and_earlier_ones_dropped() -> None:
    clock = SimulatedClock(start=1_796_119_200.0)  # 2026-12-01T10:00:00Z
    sim = StreamSimulator(clock=clock, seed=4)
    sim.put_item({"pk": "long-before"})
    clock.advance(41.6)
    sim.put_item({"pk": "second-before"})  # 10:00:41.6, rounded to :41
    clock.advance(0.5)
    sim.put_item({"pk": "same-second-before"})  # 10:00:42.1, rounded to :42
    clock.advance(0.6)
    sim.put_item({"pk": "after"})  # 10:00:42.7
    moment = datetime(2026, 12, 1, 10, 0, 42, 500_000, tzinfo=UTC)

    records, _ = await read(sim, clock, at_time(moment))

    # A record made in the moment's second carries the same rounded time: it is kept.
    assert [r.keys["pk"] for r in records] == ["same-second-before", "after"]


async def test_a_trimmed_parent_leaves_a_root_that_is_read_or_skipped_by_the_same_rule() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=1, seed=5)
    rng = random.Random(5)
    write_for(sim, clock, 3, rng=rng, rollover_every=HOUR)
    (root,) = [s.shard_id for s in sim.shards() if s.parent_shard_id is None]
    sim.trim(root)
    moment = datetime.fromtimestamp(clock.time() - 1.5 * HOUR, tz=UTC)

    records, _ = await read(sim, clock, at_time(moment))

    assert {r.sequence_number for r in records} == kept_by(moment, sim)
    assert_item_order(records)


async def test_a_parser_of_ones_own_is_filtered_on_the_raw_creation_times() -> None:
    class SequenceNumbers:
        def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[str]:
            return [raw["dynamodb"]["SequenceNumber"] for raw in raw_records]

    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=6, max_records_per_page=5)
    write_for(sim, clock, 10, rng=random.Random(6))
    moment = datetime.fromtimestamp(clock.time() - 5 * HOUR, tz=UTC)

    numbers, _ = await read(sim, clock, at_time(moment), parser=SequenceNumbers())
    raw, _ = await read(sim, clock, at_time(moment), parser=ddbstreams.RawParser())

    assert set(numbers) == kept_by(moment, sim) == {r.sequence_number for r in raw}


async def test_follow_from_a_moment_still_to_come() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=7)
    rng = random.Random(7)
    write_for(sim, clock, 2, rng=rng)
    moment = datetime.fromtimestamp(clock.time() + HOUR, tz=UTC)
    delivered: list[Record] = []

    async def follow() -> None:
        async with ddbstreams.StreamReader(
            sim.stream_arn, start=at_time(moment), follow=True, client=sim.client(), clock=clock
        ) as reader:
            async for record in reader:
                delivered.append(record)

    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        task = group.create_task(follow())
        for _ in range(3 * 12):  # three more hours: a rollover before the moment, one after
            await clock.sleep(300)
            sim.put_item({"pk": f"item-{rng.randrange(30)}"})
            if rng.random() < 0.1:
                sim.roll_over()
        await clock.sleep(60)
        task.cancel()

    assert {r.sequence_number for r in delivered} == kept_by(moment, sim)
    assert_item_order(delivered)


async def test_a_checkpoint_taken_before_the_moment_resumes_with_the_filter() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=8)
    rng = random.Random(8)
    write_for(sim, clock, 2, rng=rng)
    moment = datetime.fromtimestamp(clock.time() + HOUR, tz=UTC)
    store = MemoryCheckpointStore()
    handled: list[Record] = []

    def consumer() -> Consumer:
        return Consumer(
            sim.stream_arn,
            handled.extend,
            store=store,
            client=sim.client(),
            clock=clock,
            options=ddbstreams.ConsumerOptions(starting_position=at_time(moment)),
        )

    # A first run before the moment: it reads and drops all there is, handles nothing.
    first = consumer()
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        running = group.create_task(first.run())
        await clock.sleep(120)
        await first.stop()
        await running
    assert handled == []
    saved = await store.load(sim.stream_arn, name="default")
    assert saved is not None
    assert not saved.positions
    assert saved.pending
    assert all(start.not_before == moment for start in saved.pending.values())

    # Meanwhile: more records before the moment, in shards born after the checkpoint too.
    write_for(sim, clock, 0.5, rng=rng)
    sim.roll_over()
    write_for(sim, clock, 1.0, rng=rng)  # the moment passes in here
    expected = kept_by(moment, sim)
    assert expected
    assert len(expected) < len(sim.history)

    second = consumer()
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        running = group.create_task(second.run())
        while len(handled) < len(expected):
            await clock.sleep(1)
        await clock.sleep(30)  # time for anything extra to show up
        await second.stop()
        await running

    assert {r.sequence_number for r in handled} == expected
    assert len(handled) == len(expected)
    assert_item_order(handled)
