"""Follow mode over the stream simulator: shard churn while reading, faults, lifecycle."""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from dataclasses import replace

import pytest

import ddbstreams
from ddbstreams.testing import Faults, SimulatedClock, StreamSimulator, serve_simulator

# Fast polling so tests run in well under a second of idle time per shard.
FAST = ddbstreams.ReaderOptions(
    idle_poll_delay=0.005,
    idle_poll_max_delay=0.02,
    describe_interval=0.5,
    describe_rate=50.0,
    child_discovery_timeout=2.0,
    max_concurrent_requests=16,
)


class Collector:
    """Consumes a follow reader in a task until told to stop; records what it got."""

    def __init__(self, reader: ddbstreams.StreamReader[ddbstreams.Record]) -> None:
        self.reader = reader
        self.records: list[ddbstreams.Record] = []
        self.arrived = asyncio.Event()

    async def run(self, limit: int | None = None) -> None:
        async for record in self.reader:
            self.records.append(record)
            self.arrived.set()
            if limit is not None and len(self.records) >= limit:
                return

    async def wait_for(self, count: int, within: float = 20.0) -> None:
        async def reached() -> None:
            while len(self.records) < count:
                self.arrived.clear()
                await self.arrived.wait()

        await asyncio.wait_for(reached(), within)


def write_round(sim: StreamSimulator, rng: random.Random, items: int, round_number: int) -> None:
    for _ in range(rng.randint(3, 15)):
        key = f"item-{rng.randrange(items)}"
        if rng.random() < 0.1:
            sim.delete_item({"pk": key})
        else:
            sim.put_item({"pk": key, "round": round_number, "r": rng.random()})


def change_topology(sim: StreamSimulator, rng: random.Random) -> None:
    open_shards = sim.open_shard_ids()
    action = rng.random()
    if action < 0.45:
        sim.roll_over(rng.choice(open_shards))
    elif action < 0.9 and len(open_shards) < 10:
        sim.split(rng.choice(open_shards))
    else:
        sim.roll_over()


def assert_exactly_once_in_item_order(
    sim: StreamSimulator, records: list[ddbstreams.Record]
) -> None:
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


async def churn_while_following(
    sim: StreamSimulator, reader: ddbstreams.StreamReader[ddbstreams.Record], rounds: int, seed: int
) -> Collector:
    rng = random.Random(seed)
    collector = Collector(reader)
    async with asyncio.TaskGroup() as group:
        consuming = group.create_task(collector.run())
        for round_number in range(rounds):
            write_round(sim, rng, 30, round_number)
            if round_number % 2 == 0:
                change_topology(sim, rng)
            await asyncio.sleep(rng.random() * 0.02)
        await collector.wait_for(len(sim.history))
        consuming.cancel()
    return collector


@pytest.mark.parametrize("seed", [1, 2])
async def test_follow_through_dozens_of_rollovers_and_splits(seed: int) -> None:
    sim = StreamSimulator(partitions=2, seed=seed, empty_page_rate=0.2, describe_page_limit=4)
    events: list[ddbstreams.ReaderEvent] = []
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=events.append
    ) as reader:
        collector = await churn_while_following(sim, reader, rounds=60, seed=seed)
        checkpoint = reader.checkpoint()

    assert len(sim.shards(include_trimmed=True)) > 30
    # Finished shards are forgotten once their children run: the checkpoint stays small.
    assert len(checkpoint.finished) <= len(sim.open_shard_ids())
    assert len(checkpoint.positions) + len(checkpoint.pending) <= 2 * len(sim.open_shard_ids())
    assert_exactly_once_in_item_order(sim, collector.records)
    finished = {e.shard_id for e in events if isinstance(e, ddbstreams.ShardFinished)}
    assert len(finished) > 20
    assert any(isinstance(e, ddbstreams.ShardsDiscovered) for e in events)


async def test_faults_are_survived_without_loss_or_duplicates() -> None:
    sim = StreamSimulator(partitions=2, seed=5)
    events: list[ddbstreams.ReaderEvent] = []
    rng = random.Random(5)
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=events.append
    ) as reader:
        collector = Collector(reader)
        async with asyncio.TaskGroup() as group:
            consuming = group.create_task(collector.run())
            for round_number in range(30):
                write_round(sim, rng, 20, round_number)
                fault = round_number % 5
                if fault == 0:
                    sim.fail_next("GetRecords", "LimitExceededException", times=2)
                elif fault == 1:
                    sim.fail_next("GetRecords", "InternalServerError")
                elif fault == 2:
                    sim.fail_next("GetRecords", "ExpiredIteratorException")
                elif fault == 3:
                    sim.fail_next("DescribeStream", "ThrottlingException", times=2)
                    change_topology(sim, rng)
                else:
                    sim.fail_next("GetShardIterator", "InternalServerError")
                    change_topology(sim, rng)
                await asyncio.sleep(0.01)
            await collector.wait_for(len(sim.history))
            consuming.cancel()

    assert_exactly_once_in_item_order(sim, collector.records)
    kinds = {type(e) for e in events}
    assert ddbstreams.Throttled in kinds
    assert ddbstreams.RequestRetried in kinds
    assert ddbstreams.IteratorRefreshed in kinds


async def test_stop_midway_and_resume_across_churn_while_down() -> None:
    sim = StreamSimulator(partitions=2, seed=7, empty_page_rate=0.1)
    rng = random.Random(7)
    for round_number in range(10):
        write_round(sim, rng, 25, round_number)
        change_topology(sim, rng)

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, buffer_pages=2
    ) as reader:
        collector = Collector(reader)
        await collector.run(limit=len(sim.history) // 2)
    checkpoint = reader.checkpoint()
    first = collector.records

    # While the reader is down: more writes, rollovers and splits.
    for round_number in range(10, 25):
        write_round(sim, rng, 25, round_number)
        change_topology(sim, rng)

    async with ddbstreams.StreamReader(
        sim.stream_arn,
        client=sim.client(),
        follow=True,
        options=FAST,
        start=ddbstreams.Checkpoint.from_json(checkpoint.to_json()),
    ) as reader:
        collector = Collector(reader)
        async with asyncio.TaskGroup() as group:
            consuming = group.create_task(collector.run())
            await collector.wait_for(len(sim.history) - len(first))
            await asyncio.sleep(0.05)  # anything extra (a duplicate) would show up now
            consuming.cancel()

    assert_exactly_once_in_item_order(sim, first + collector.records)


async def test_disabled_stream_is_read_to_its_end_then_the_reader_ends() -> None:
    sim = StreamSimulator(partitions=2, seed=9)
    for i in range(20):
        sim.put_item({"pk": f"item-{i}"})
    events: list[ddbstreams.ReaderEvent] = []

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=events.append
    ) as reader:
        collector = Collector(reader)
        consuming = asyncio.create_task(collector.run())
        await collector.wait_for(20)
        for i in range(20, 30):
            sim.put_item({"pk": f"item-{i}"})
        sim.disable_stream()
        await asyncio.wait_for(consuming, 10)  # iteration ends by itself

    assert_exactly_once_in_item_order(sim, collector.records)
    assert ddbstreams.StreamDisabled(sim.stream_arn) in events
    assert reader.checkpoint().positions == {}  # every shard finished


async def test_trimmed_records_are_skipped_and_reported_by_default() -> None:
    sim = StreamSimulator(partitions=1, seed=11)
    for i in range(5):
        sim.put_item({"pk": f"item-{i}"})
    sim.fail_next("GetRecords", "TrimmedDataAccessException")
    events: list[ddbstreams.ReaderEvent] = []

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=events.append
    ) as reader:
        collector = Collector(reader)
        await collector.run(limit=5)

    assert [r.keys["pk"] for r in collector.records] == [f"item-{i}" for i in range(5)]
    trimmed = [e for e in events if isinstance(e, ddbstreams.RecordsTrimmed)]
    assert len(trimmed) == 1
    assert trimmed[0].after_sequence_number is None


async def test_trimmed_records_raise_when_asked() -> None:
    sim = StreamSimulator(partitions=1, seed=13)
    sim.put_item({"pk": "x"})
    sim.fail_next("GetRecords", "TrimmedDataAccessException")

    async def read() -> None:
        async with ddbstreams.StreamReader(
            sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_trimmed="raise"
        ) as reader:
            async for _ in reader:
                pass

    with pytest.raises(ddbstreams.TrimmedDataError, match="trimmed"):
        await read()


async def test_events_async_iterator_and_lag() -> None:
    sim = StreamSimulator(partitions=1, seed=17)
    sim.put_item({"pk": "a"})

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST
    ) as reader:
        seen: list[ddbstreams.ReaderEvent] = []

        async def watch() -> None:
            async for event in reader.events():
                seen.append(event)

        async with asyncio.TaskGroup() as group:
            watching = group.create_task(watch())
            collector = Collector(reader)
            consuming = group.create_task(collector.run())
            await collector.wait_for(1)
            (child,) = sim.roll_over()
            sim.put_item({"pk": "b"})
            await collector.wait_for(2)
            lag = reader.lag()
            consuming.cancel()
            await reader.stop()
            await asyncio.wait_for(watching, 5)  # the event iterator ends when the reader stops

    assert set(lag) == {child}
    assert all(value >= 0 for value in lag.values())
    assert ddbstreams.ShardStarted(child, ddbstreams.ShardStart("TRIM_HORIZON")) in seen


async def test_stop_leaves_no_task_behind_and_is_idempotent() -> None:
    sim = StreamSimulator(partitions=4, seed=19)
    for i in range(200):
        sim.put_item({"pk": f"item-{i}"})
    before = asyncio.all_tasks()

    reader = ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, buffer_pages=1
    )
    await reader.start()
    await reader.start()
    async for _ in reader:
        break
    await reader.stop()
    await reader.stop()

    assert asyncio.all_tasks() == before


async def test_cancelling_the_consumer_cancels_cleanly() -> None:
    sim = StreamSimulator(partitions=2, seed=23)
    sim.put_item({"pk": "a"})
    before = asyncio.all_tasks()

    async def consume() -> None:
        async with ddbstreams.StreamReader(
            sim.stream_arn, client=sim.client(), follow=True, options=FAST
        ) as reader:
            async for _ in reader:
                pass

    task = asyncio.create_task(consume())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert asyncio.all_tasks() == before


async def test_stream_deleted_while_following_is_a_clear_error() -> None:
    sim = StreamSimulator(partitions=1, seed=29)
    sim.put_item({"pk": "a"})
    got = []

    async def read() -> None:
        async with ddbstreams.StreamReader(
            sim.stream_arn, client=sim.client(), follow=True, options=FAST
        ) as reader:
            async for record in reader:
                got.append(record)
                sim.delete_stream()

    with pytest.raises(ddbstreams.StreamNotFoundError, match=r"not found|does not exist"):
        await read()
    assert len(got) == 1


def shard_gone(shard_id: str) -> str:
    """DynamoDB Local's message for a shard it does not know (after a restart, say)."""
    return f"Requested resource not found: Shard does not exist: {shard_id}"


@pytest.mark.parametrize("on_trimmed", ["skip", "raise"])
async def test_stream_vanished_under_a_follow_reader_is_not_called_trimmed(
    on_trimmed: ddbstreams.TrimmedPolicy,
) -> None:
    """An engine restart or a deleted table makes the shard unknown first: the reader asks
    whether the stream itself is gone before blaming retention."""
    sim = StreamSimulator(partitions=1, seed=29)
    sim.put_item({"pk": "a"})
    got = []
    events: list[ddbstreams.ReaderEvent] = []

    async def read() -> None:
        async with ddbstreams.StreamReader(
            sim.stream_arn,
            client=sim.client(),
            follow=True,
            options=replace(FAST, on_trimmed=on_trimmed),
            on_event=events.append,
        ) as reader:
            async for record in reader:
                got.append(record)
                # What DynamoDB Local answers once restarted: the shard is unknown.
                sim.fail_next(
                    "GetRecords",
                    "ResourceNotFoundException",
                    message=shard_gone(record.shard_id),
                )
                sim.delete_stream()

    with pytest.raises(ddbstreams.StreamNotFoundError, match="stream not found"):
        await read()
    assert len(got) == 1
    assert not [e for e in events if isinstance(e, ddbstreams.RecordsTrimmed)]


async def test_an_unknown_shard_of_a_live_stream_is_read_on() -> None:
    """A shard reported missing while its stream exists is asked for again, from where the
    reader was: nothing lost, nothing repeated."""
    sim = StreamSimulator(partitions=1, seed=30)
    sim.put_item({"pk": "a", "n": 0})
    reader = ddbstreams.StreamReader(sim.stream_arn, client=sim.client(), follow=True, options=FAST)
    async with reader:
        collector = Collector(reader)
        task = asyncio.create_task(collector.run(limit=3))
        await collector.wait_for(1)
        shard_id = collector.records[0].shard_id
        sim.fail_next(
            "GetRecords",
            "ResourceNotFoundException",
            message=shard_gone(shard_id),
        )
        sim.put_item({"pk": "a", "n": 1})
        sim.put_item({"pk": "a", "n": 2})
        await asyncio.wait_for(task, 20)
    assert [r.new_image["n"] for r in collector.records] == [0, 1, 2]


async def test_faults_over_http_through_botocore() -> None:
    sim = StreamSimulator(
        partitions=2,
        seed=31,
        faults=Faults(throttle_rate=0.05, server_error_rate=0.05, connection_reset_rate=0.05),
    )
    events: list[ddbstreams.ReaderEvent] = []
    async with serve_simulator(sim) as endpoint_url:
        client = ddbstreams.StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="test",
            aws_secret_access_key="test",
            retry=ddbstreams.RetryPolicy(base_delay=0.001, max_delay=0.01, connect_max_attempts=8),
        )
        async with (
            client,
            ddbstreams.StreamReader(
                sim.stream_arn, client=client, follow=True, options=FAST, on_event=events.append
            ) as reader,
        ):
            collector = await churn_while_following(sim, reader, rounds=20, seed=31)

    assert_exactly_once_in_item_order(sim, collector.records)
    assert sum(sim.faults_injected.values()) > 0
    kinds = {type(e) for e in events}
    assert ddbstreams.RequestRetried in kinds or ddbstreams.Throttled in kinds


def test_blocking_follow_reader_start_and_stop() -> None:
    sim = StreamSimulator(partitions=1, seed=31)
    for i in range(3):
        sim.put_item({"pk": f"item-{i}"})
    reader: ddbstreams.BlockingStreamReader[ddbstreams.Record] = ddbstreams.BlockingStreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST
    )
    reader.start()
    got = []
    for record in reader:
        got.append(record.keys["pk"])
        if len(got) == 3:
            break
    checkpoint = reader.checkpoint()
    reader.stop()
    reader.stop()

    assert got == ["item-0", "item-1", "item-2"]
    assert list(checkpoint.positions.values()) == [sim.history[2].sequence_number]


async def test_checkpoint_names_started_children_so_forgotten_parents_stay_consumed() -> None:
    sim = StreamSimulator(partitions=1, seed=37)
    for i in range(5):
        sim.put_item({"pk": f"item-{i}"})
    (parent,) = sim.open_shard_ids()
    (child,) = sim.roll_over(parent)
    child_started = asyncio.Event()

    def on_event(event: ddbstreams.ReaderEvent) -> None:
        if event == ddbstreams.ShardStarted(child, ddbstreams.ShardStart("TRIM_HORIZON")):
            child_started.set()

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=on_event
    ) as reader:
        collector = Collector(reader)
        await collector.run(limit=5)
        await asyncio.wait_for(child_started.wait(), 10)
        await asyncio.sleep(0.05)  # let the coordinator forget the finished parent
        checkpoint = reader.checkpoint()

    assert parent not in checkpoint.finished  # compacted away...
    assert checkpoint.pending == {child: ddbstreams.ShardStart("TRIM_HORIZON")}  # ...as covered
    sim.put_item({"pk": "in-child"})
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), start=checkpoint
    ) as resumed:
        again = [record.keys["pk"] async for record in resumed]
    assert again == ["in-child"]


async def test_checkpoint_names_a_shard_whose_pages_still_wait_in_the_buffer() -> None:
    sim = StreamSimulator(partitions=1, seed=41)
    for i in range(2):
        sim.put_item({"pk": f"a-{i}"})
    (a,) = sim.open_shard_ids()
    c_started = asyncio.Event()
    names: dict[str, str] = {}

    def on_event(event: ddbstreams.ReaderEvent) -> None:
        if isinstance(event, ddbstreams.ShardStarted) and event.shard_id == names.get("c"):
            c_started.set()

    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, options=FAST, on_event=on_event
    ) as reader:
        collector = Collector(reader)
        await collector.run(limit=2)
        for i in range(2, 5):
            sim.put_item({"pk": f"a-{i}"})
        (b,) = sim.roll_over(a)
        for i in range(2):
            sim.put_item({"pk": f"b-{i}"})
        (names["c"],) = sim.roll_over(b)
        sim.put_item({"pk": "c-0"})
        # B is discovered during the read, fetched into the buffer and finished; C starts.
        await asyncio.wait_for(c_started.wait(), 10)
        checkpoint = reader.checkpoint()

    assert checkpoint.pending.get(b) == ddbstreams.ShardStart("TRIM_HORIZON")
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), start=checkpoint
    ) as resumed:
        rest = sorted([record.keys["pk"] async for record in resumed])
    assert rest == ["a-2", "a-3", "a-4", "b-0", "b-1", "c-0"]


def test_max_concurrent_shards_is_a_deprecated_name_for_max_concurrent_requests() -> None:
    with pytest.warns(DeprecationWarning, match="max_concurrent_requests"):
        options = ddbstreams.ReaderOptions(max_concurrent_shards=3)
    assert options.max_concurrent_requests == 3
    assert options.max_concurrent_shards is None
    with pytest.raises(ddbstreams.ConfigurationError, match="max_concurrent_requests"):
        ddbstreams.ReaderOptions(max_concurrent_requests=0)


async def test_a_paused_shard_is_not_polled_while_the_others_go_on() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=3, seed=43)
    paused_shard, *others = sim.open_shard_ids()
    reader = ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), follow=True, clock=clock, options=FAST
    )
    async with reader:
        collector = Collector(reader)
        task = asyncio.create_task(collector.run())
        await clock.sleep(1.0)
        reader.pause(paused_shard)
        assert reader.paused() == {paused_shard}
        await clock.sleep(0.1)  # a poll in flight when pausing completes
        polls = dict(sim.get_records_calls)
        await clock.sleep(60.0)
        assert sim.get_records_calls[paused_shard] == polls[paused_shard]
        assert all(sim.get_records_calls[s] > polls[s] for s in others)
        key = next(f"k{n}" for n in range(99) if sim.shard_for({"pk": f"k{n}"}) == paused_shard)
        change = sim.put_item({"pk": key})
        await clock.sleep(5.0)
        assert not collector.records
        reader.resume(paused_shard)
        await collector.wait_for(1)
        task.cancel()
    assert [r.sequence_number for r in collector.records] == [change.sequence_number]


class _SlowDescribes:
    """A client whose DescribeStream calls take 50 ms of virtual time, as over a network."""

    @staticmethod
    def wrap(client: ddbstreams.StreamsClient, clock: SimulatedClock) -> None:
        for name in ("describe_stream", "child_shards", "describe_stream_page"):
            call = getattr(client, name)

            async def slow(*args: object, _call: object = call, **kwargs: object) -> object:
                await clock.sleep(0.05)
                return await _call(*args, **kwargs)  # type: ignore[operator]

            setattr(client, name, slow)


@pytest.mark.parametrize("partitions", [1, 8, 30])
@pytest.mark.parametrize("disable_at", [1.0, 10.0, 59.9])
async def test_a_follow_reader_ends_when_its_stream_is_disabled_while_children_are_sought(
    partitions: int, disable_at: float
) -> None:
    """Child discovery waits for a shared listing; once the read is over nobody makes one,
    so the waits must be cancelled rather than hang the reader (a regression test)."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=partitions, seed=3)
    for n in range(50):
        sim.put_item({"pk": f"k{n}"})
    client = sim.client()
    _SlowDescribes.wrap(client, clock)
    got = 0
    async with ddbstreams.StreamReader(
        sim.stream_arn, follow=True, client=client, clock=clock
    ) as reader:

        async def disable_later() -> None:
            await clock.sleep(disable_at)
            sim.disable_stream()

        disabling = asyncio.create_task(disable_later())
        async with asyncio.timeout(20):  # real seconds: a hang is a failure
            async for _ in reader:
                got += 1
        await disabling
    assert got == 50
