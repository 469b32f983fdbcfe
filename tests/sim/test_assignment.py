"""Shard assignment as an input of the reader: shards moved between readers mid-stream.

Two assigned readers share a stream that keeps rolling over and splitting, with injected
faults. A scripted assigner (what a worker group's lease coordinator will do) gives each
shard to one reader, gives a shard's children out once the shard was handed out to its
end, and every few seconds moves a shard from one reader to the other: ``release()`` on
the owner, ``assign()`` at the returned position on the other. Nothing may be lost, nothing
handed out twice (a release returns exactly what was handed), and every item's changes come
out in order across both readers.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict

import pytest

import ddbstreams
from ddbstreams import SHARD_END, Record, ShardEnd, ShardStart, StreamReader
from ddbstreams.testing import Faults, SimulatedClock, StreamSimulator

FAST = ddbstreams.ReaderOptions(idle_poll_delay=0.05, idle_poll_max_delay=0.5)


class ScriptedAssigner:
    """Gives shards to readers, respecting lineage, and moves them on request."""

    def __init__(self, sim: StreamSimulator, readers: list[StreamReader[Record]]) -> None:
        self.sim = sim
        self.readers = readers
        self.owner: dict[str, int] = {}
        self.consumed: set[str] = set()
        self.handed: list[Record] = []
        self.moves = 0
        self.released_at_end = 0
        self.rng = random.Random(5)

    def parent_of(self, shard_id: str) -> str | None:
        return next(s.parent_shard_id for s in self.sim.shards() if s.shard_id == shard_id)

    def give(self, shard_id: str, start: ShardStart, index: int | None = None) -> None:
        index = self.rng.randrange(len(self.readers)) if index is None else index
        self.owner[shard_id] = index
        self.readers[index].assign(shard_id, start, parent_shard_id=self.parent_of(shard_id))

    def shard_consumed(self, shard_id: str) -> None:
        if shard_id in self.consumed:
            return
        self.consumed.add(shard_id)
        self.owner.pop(shard_id, None)
        for child in self.sim.shards():
            if child.parent_shard_id == shard_id:
                self.give(child.shard_id, ShardStart("TRIM_HORIZON"))

    async def move_one(self) -> None:
        if not self.owner:
            return
        shard_id = self.rng.choice(sorted(self.owner))
        index = self.owner[shard_id]
        position = await self.readers[index].release(shard_id)
        self.moves += 1
        if isinstance(position, ShardEnd):
            self.released_at_end += 1
            self.shard_consumed(shard_id)
            return
        assert position is not None
        assert shard_id not in self.readers[index].checkpoint().positions
        self.give(shard_id, position, 1 - index)

    async def hand_out(self, reader: StreamReader[Record], clock: SimulatedClock) -> None:
        async for batch in reader.shard_batches(7):
            self.handed.extend(batch.records)
            if batch.ends_shard:
                self.shard_consumed(batch.shard_id)
            # A caller slower than the stream: pages wait in the buffer when shards move.
            await clock.sleep(0.05)


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_shards_moved_between_two_readers_lose_and_repeat_nothing(seed: int) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock,
        partitions=3,
        seed=seed,
        empty_page_rate=0.2,
        faults=Faults(
            throttle_rate=0.03,
            server_error_rate=0.02,
            connection_reset_rate=0.01,
            operations={"GetRecords", "GetShardIterator"},
        ),
    )
    readers = [
        StreamReader(
            sim.stream_arn,
            follow=True,
            assigned=True,
            client=sim.client(),
            clock=clock,
            options=FAST,
        )
        for _ in range(2)
    ]
    assigner = ScriptedAssigner(sim, readers)
    async with readers[0], readers[1], asyncio.timeout(60):
        for index, shard_id in enumerate(sim.open_shard_ids()):
            assigner.give(shard_id, ShardStart("TRIM_HORIZON"), index % 2)
        handing = [asyncio.create_task(assigner.hand_out(reader, clock)) for reader in readers]
        async with sim.live(
            writes_per_second=40.0,
            rollover_every=4.0,
            split_every=9.0,
            max_open_shards=6,
            keys=30,
            duration=60.0,
            seed=seed,
        ) as live:
            while live.running:
                await clock.sleep(1.5)
                await assigner.move_one()
        while len(assigner.handed) < len(sim.history):
            await clock.sleep(1.0)
            await assigner.move_one()
        for task in handing:
            assert not task.done(), task.exception()
            task.cancel()
        await asyncio.gather(*handing, return_exceptions=True)

    assert assigner.moves > 30
    assert live.rollovers + live.splits > 10
    handed = [r.sequence_number for r in assigner.handed]
    assert len(handed) == len(set(handed)), "a record was handed out twice"
    assert set(handed) == {c.sequence_number for c in sim.history}
    per_item: dict[object, list[int]] = defaultdict(list)
    for record in assigner.handed:
        per_item[tuple(sorted(record.keys.items()))].append(int(record.sequence_number))
    for key, numbers in per_item.items():
        assert numbers == sorted(numbers), f"{key} out of order"


async def test_release_returns_the_exact_position_handed_out() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=4)
    changes = [sim.put_item({"pk": f"k{n}"}) for n in range(10)]
    (shard_id,) = sim.open_shard_ids()
    reader = StreamReader(
        sim.stream_arn, follow=True, assigned=True, client=sim.client(), clock=clock
    )
    async with reader:
        assert reader.position(shard_id) is None
        reader.assign(shard_id, ShardStart("TRIM_HORIZON"))
        batch = await reader.next_shard_batch(3)
        assert batch is not None
        assert [r.sequence_number for r in batch.records] == [
            c.sequence_number for c in changes[:3]
        ]
        # Seven more records were fetched with that page and sit in the reader: dropped.
        position = await reader.release(shard_id)
        assert position == ShardStart("AFTER_SEQUENCE_NUMBER", changes[2].sequence_number)
        assert reader.checkpoint().positions == {}
        assert await reader.release(shard_id) is None
        # Assigned again at that position, it goes on with the fourth record.
        reader.assign(shard_id, position)
        batch = await reader.next_shard_batch(100)
        assert batch is not None
        assert [r.sequence_number for r in batch.records] == [
            c.sequence_number for c in changes[3:]
        ]
        sim.roll_over(shard_id)
        end = await reader.next_shard_batch(100)
        assert end is not None
        assert end.ends_shard
        assert await reader.release(shard_id) == SHARD_END


def test_assigned_readers_follow() -> None:
    with pytest.raises(ddbstreams.ConfigurationError, match="follow"):
        StreamReader("arn:aws:dynamodb:us-east-1:1:table/t/stream/x", assigned=True)


async def test_a_release_right_after_an_assignment_takes_it_back() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    for n in range(5):
        sim.put_item({"pk": f"k{n}"})
    (shard_id,) = sim.open_shard_ids()
    reader = StreamReader(
        sim.stream_arn, follow=True, assigned=True, client=sim.client(), clock=clock
    )
    async with reader:
        reader.assign(shard_id, ShardStart("TRIM_HORIZON"))
        # Before the coordinator started the fetcher: nothing was handed out.
        assert await reader.release(shard_id) == ShardStart("TRIM_HORIZON")
        got: list[Record] = []

        async def take() -> None:
            async for record in reader:
                got.append(record)

        taking = asyncio.create_task(take())
        await clock.sleep(5.0)
        taking.cancel()
        await asyncio.gather(taking, return_exceptions=True)
        assert got == []
        assert reader.checkpoint().pending == {}
        assert reader.lag() == {}


async def test_an_assignment_again_starts_from_its_own_position() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=6)
    changes = [sim.put_item({"pk": f"k{n}"}) for n in range(6)]
    (shard_id,) = sim.open_shard_ids()
    sim.roll_over(shard_id)
    reader = StreamReader(
        sim.stream_arn, follow=True, assigned=True, client=sim.client(), clock=clock
    )
    async with reader:
        reader.assign(shard_id, ShardStart("TRIM_HORIZON"))
        while (batch := await reader.next_shard_batch(100)) is not None and not batch.ends_shard:
            pass
        assert reader.position(shard_id) == SHARD_END
        # The shard's fetcher has ended; the assigner wants it read again after the second.
        again = ShardStart("AFTER_SEQUENCE_NUMBER", changes[1].sequence_number)
        reader.assign(shard_id, again)
        await clock.sleep(0.0)
        assert reader.position(shard_id) == again
        batch = await reader.next_shard_batch(2)
        assert batch is not None
        assert [r.sequence_number for r in batch.records] == [
            c.sequence_number for c in changes[2:4]
        ]
        assert await reader.release(shard_id) == ShardStart(
            "AFTER_SEQUENCE_NUMBER", changes[3].sequence_number
        )


async def test_a_lineage_reader_refuses_release() -> None:
    sim = StreamSimulator()
    async with StreamReader(sim.stream_arn, follow=True, client=sim.client()) as reader:
        with pytest.raises(RuntimeError, match="assigned=True"):
            await reader.release(sim.open_shard_ids()[0])
