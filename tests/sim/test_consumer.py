"""The Consumer over the stream simulator: Lambda's options, checkpoints, stop and resume."""

from __future__ import annotations

import asyncio
import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

import ddbstreams
from ddbstreams import Consumer, MemoryCheckpointStore, Record
from ddbstreams.testing import SimulatedClock, StreamSimulator
from tests.support.consumers import virtual_consumer

FAST = ddbstreams.ReaderOptions(
    idle_poll_delay=0.005,
    idle_poll_max_delay=0.02,
    describe_interval=0.5,
    describe_rate=50.0,
    child_discovery_timeout=2.0,
)


def consumer_for(sim: StreamSimulator, handler: Any, **kwargs: Any) -> Consumer:
    """A consumer of ``sim`` with a fresh memory store and fast polling."""
    kwargs.setdefault("store", MemoryCheckpointStore())
    kwargs.setdefault("options", fast_options())
    return Consumer(sim.stream_arn, handler, client=sim.client(), reader_options=FAST, **kwargs)


def fast_options(**fields: Any) -> ddbstreams.ConsumerOptions:
    return ddbstreams.ConsumerOptions(retry_delay=0.001, retry_max_delay=0.01, **fields)


class Handled:
    """A handler that records what it was given, and a way to wait for enough."""

    def __init__(self) -> None:
        self.batches: list[list[Record]] = []
        self.changed = asyncio.Event()

    def add(self, records: list[Record]) -> None:
        self.batches.append(list(records))
        self.changed.set()

    @property
    def records(self) -> list[Record]:
        return [r for batch in self.batches for r in batch]

    async def wait_until(self, predicate: Any, within: float = 20.0) -> None:
        async def until() -> None:
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

        await asyncio.wait_for(until(), within)


async def run_until(consumer: Consumer, handled: Handled, predicate: Any) -> None:
    """Run ``consumer`` until ``predicate()`` holds, then stop it gracefully."""
    async with asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await handled.wait_until(predicate)
        await consumer.stop()
        await running


def populate(sim: StreamSimulator, changes: int, seed: int, items: int = 20) -> None:
    rng = random.Random(seed)
    for i in range(changes):
        sim.put_item({"pk": f"item-{rng.randrange(items)}", "n": i})
        if i % 40 == 39:
            sim.split(rng.choice(sim.open_shard_ids())) if len(
                sim.open_shard_ids()
            ) < 6 else sim.roll_over()


def assert_item_order(records: list[Record]) -> None:
    per_item: dict[str, list[int]] = defaultdict(list)
    for record in records:
        per_item[record.keys["pk"]].append(int(record.sequence_number))
    for key, sequence_numbers in per_item.items():
        assert sequence_numbers == sorted(sequence_numbers), f"{key} out of order"


async def test_batches_come_from_one_shard_in_order_and_are_checkpointed() -> None:
    sim = StreamSimulator(partitions=2, seed=1)
    populate(sim, 200, seed=1)
    handled = Handled()
    store = MemoryCheckpointStore()
    consumer = Consumer(
        sim.stream_arn,
        handled.add,
        store=store,
        client=sim.client(),
        reader_options=FAST,
        options=fast_options(batch_size=25),
    )

    await run_until(consumer, handled, lambda: len(handled.records) >= len(sim.history))

    assert sorted(r.sequence_number for r in handled.records) == sorted(
        c.sequence_number for c in sim.history
    )
    for batch in handled.batches:
        assert 1 <= len(batch) <= 25
        assert len({r.shard_id for r in batch}) == 1
    assert_item_order(handled.records)
    saved = await store.load(sim.stream_arn, name="default")
    assert saved == consumer.checkpoint()
    # Resuming from the stored checkpoint hands nothing again.
    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client(), start=saved) as rest:
        assert [r async for r in rest] == []


async def test_failed_batch_is_retried_and_nothing_is_skipped() -> None:
    sim = StreamSimulator(partitions=1, seed=2)
    populate(sim, 30, seed=2)
    handled = Handled()
    failures = {"left": 3}

    def flaky(records: list[Record]) -> None:
        if failures["left"]:
            failures["left"] -= 1
            raise RuntimeError("downstream unavailable")
        handled.add(records)

    consumer = consumer_for(
        sim,
        flaky,
        options=fast_options(batch_size=10),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 30)

    assert [r.sequence_number for r in handled.records] == [c.sequence_number for c in sim.history]


async def test_bisect_isolates_the_poison_record_and_sends_it_to_the_destination(
    tmp_path: Path,
) -> None:
    sim = StreamSimulator(partitions=1, seed=3)
    for i in range(16):
        sim.put_item({"pk": f"item-{i}"})
    poison = "item-11"
    handled = Handled()
    calls: list[list[str]] = []

    def handler(records: list[Record]) -> None:
        calls.append([r.keys["pk"] for r in records])
        if any(r.keys["pk"] == poison for r in records):
            raise ValueError("poison")
        handled.add(records)

    destination = ddbstreams.JsonLinesDestination(tmp_path / "failed.jsonl")
    failed: list[ddbstreams.FailedBatch] = []

    async def on_failure(batch: ddbstreams.FailedBatch) -> None:
        failed.append(batch)
        await destination(batch)

    consumer = consumer_for(
        sim,
        handler,
        on_failure=on_failure,
        options=fast_options(batch_size=16, bisect_batch_on_error=True, maximum_retry_attempts=2),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 15 and failed)

    assert sorted(r.keys["pk"] for r in handled.records) == sorted(
        f"item-{i}" for i in range(16) if f"item-{i}" != poison
    )
    # Halves until alone: 16 -> 8 -> 4 -> 2 -> 1, then the retries (2) of the lone record.
    assert [len(c) for c in calls if poison in c] == [16, 8, 4, 2, 1, 1, 1]
    (batch,) = failed
    assert [r.keys["pk"] for r in batch.records] == [poison]
    assert (batch.condition, batch.attempts) == ("RetryAttemptsExhausted", 3)
    (line,) = (tmp_path / "failed.jsonl").read_text().splitlines()
    document = json.loads(line)
    info = document["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == batch.records[0].sequence_number
    assert document["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert document["records"][0]["dynamodb"]["Keys"] == {"pk": {"S": poison}}
    # Everything, the poison included, is past the checkpoint now.
    async with ddbstreams.StreamReader(
        sim.stream_arn, client=sim.client(), start=consumer.checkpoint()
    ) as rest:
        assert [r async for r in rest] == []


async def test_maximum_record_age_sends_old_records_to_the_destination() -> None:
    sim = StreamSimulator(partitions=1, seed=4)
    for i in range(5):
        sim.put_item({"pk": f"item-{i}"})
    async with ddbstreams.StreamReader(sim.stream_arn, client=sim.client()) as reader:
        newest = max([r.approximate_creation_time.timestamp() async for r in reader])

    class TwoHoursLater(ddbstreams.SystemClock):
        def time(self) -> float:
            return newest + 7200.0

    handled = Handled()
    failed: list[ddbstreams.FailedBatch] = []

    def on_failure(batch: ddbstreams.FailedBatch) -> None:
        failed.append(batch)
        handled.changed.set()

    consumer = consumer_for(
        sim,
        handled.add,
        on_failure=on_failure,
        clock=TwoHoursLater(),
        options=fast_options(maximum_record_age=3600),
    )
    await run_until(consumer, handled, lambda: sum(len(b.records) for b in failed) >= 5)

    assert handled.records == []
    assert [r.keys["pk"] for b in failed for r in b.records] == [f"item-{i}" for i in range(5)]
    assert {b.condition for b in failed} == {"RecordAgeExceeded"}


async def test_report_batch_item_failures_checkpoints_before_the_failed_record() -> None:
    sim = StreamSimulator(partitions=1, seed=5)
    for i in range(10):
        sim.put_item({"pk": f"item-{i}"})
    calls: list[list[str]] = []
    handled = Handled()

    def handler(records: list[Record]) -> dict[str, Any]:
        calls.append([r.keys["pk"] for r in records])
        if len(calls) == 1:
            handled.add(records[:4])
            return {"batchItemFailures": [{"itemIdentifier": records[4].sequence_number}]}
        handled.add(records)
        return {"batchItemFailures": []}

    consumer = consumer_for(
        sim,
        handler,
        options=fast_options(batch_size=10, report_batch_item_failures=True),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 10)

    assert calls[0] == [f"item-{i}" for i in range(10)]
    assert calls[1] == [f"item-{i}" for i in range(4, 10)]
    assert [r.keys["pk"] for r in handled.records] == [f"item-{i}" for i in range(10)]


async def test_parallelization_never_runs_one_item_twice_at_once() -> None:
    sim = StreamSimulator(partitions=1, seed=6)
    rng = random.Random(6)
    for i in range(300):
        sim.put_item({"pk": f"item-{rng.randrange(12)}", "n": i})
    in_flight: set[str] = set()
    overlaps: list[str] = []
    concurrent_batches = {"now": 0, "max": 0}
    handled = Handled()

    async def handler(records: list[Record]) -> None:
        keys = {r.keys["pk"] for r in records}
        overlaps.extend(keys & in_flight)
        in_flight.update(keys)
        concurrent_batches["now"] += 1
        concurrent_batches["max"] = max(concurrent_batches["max"], concurrent_batches["now"])
        await asyncio.sleep(0.005)
        concurrent_batches["now"] -= 1
        in_flight.difference_update(keys)
        handled.add(records)

    consumer = consumer_for(
        sim,
        handler,
        options=fast_options(batch_size=20, parallelization_factor=4),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 300)

    assert overlaps == []
    assert concurrent_batches["max"] > 1
    assert_item_order(handled.records)
    assert len(handled.records) == 300


async def test_filters_skip_records_but_advance_the_checkpoint() -> None:
    sim = StreamSimulator(partitions=1, seed=7)
    for i in range(10):
        sim.put_item({"pk": f"item-{i}", "kind": "keep" if i % 3 == 0 else "drop"})
    handled = Handled()
    consumer = consumer_for(
        sim,
        handled.add,
        filters=[{"dynamodb": {"NewImage": {"kind": {"S": ["keep"]}}}}],
        options=fast_options(),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 4)
    await asyncio.sleep(0)

    assert [r.keys["pk"] for r in handled.records] == ["item-0", "item-3", "item-6", "item-9"]
    (position,) = consumer.checkpoint().positions.values()
    assert position == sim.history[-1].sequence_number


async def test_batching_window_gathers_records_of_a_shard() -> None:
    sim = StreamSimulator(partitions=1, seed=8)
    handled = Handled()
    consumer = consumer_for(
        sim,
        handled.add,
        options=fast_options(batch_size=50, maximum_batching_window=0.5),
    )
    async with asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        for i in range(10):
            sim.put_item({"pk": f"item-{i}"})
            await asyncio.sleep(0.02)
        await handled.wait_until(lambda: len(handled.records) >= 10)
        await consumer.stop()
        await running

    # Written over ~0.2 s, gathered for up to 0.5 s: far fewer calls than records.
    assert len(handled.batches) <= 3


async def test_stop_and_restart_resume_without_loss() -> None:
    sim = StreamSimulator(partitions=2, seed=9)
    populate(sim, 300, seed=9)
    store = MemoryCheckpointStore()
    first = Handled()
    options = fast_options(batch_size=10)
    consumer = Consumer(
        sim.stream_arn,
        first.add,
        store=store,
        client=sim.client(),
        reader_options=FAST,
        options=options,
    )
    await run_until(consumer, first, lambda: len(first.records) >= 100)
    populate(sim, 100, seed=10)

    second = Handled()
    again = Consumer(
        sim.stream_arn,
        second.add,
        store=store,
        client=sim.client(),
        reader_options=FAST,
        options=options,
    )
    expected = {c.sequence_number for c in sim.history}
    await run_until(
        again,
        second,
        lambda: {r.sequence_number for r in first.records + second.records} >= expected,
    )

    assert not {r.sequence_number for r in first.records} & {
        r.sequence_number for r in second.records
    }, "a graceful stop must not re-deliver processed batches"
    assert_item_order(first.records + second.records)


async def test_lambda_handler_runs_unchanged() -> None:
    sim = StreamSimulator(partitions=1, seed=11)
    sim.put_item({"pk": "a", "n": 1, "b": b"\x01"})
    sim.delete_item({"pk": "a"})
    seen: list[dict[str, Any]] = []
    handled = Handled()

    def lambda_function(event: dict[str, Any], context: Any) -> dict[str, Any]:
        assert context.get_remaining_time_in_millis() > 0
        for record in event["Records"]:
            seen.append(record)
        handled.add(ddbstreams.parse_lambda_event(event))
        return {"batchItemFailures": []}

    consumer = consumer_for(
        sim,
        ddbstreams.lambda_handler(lambda_function),
        options=fast_options(report_batch_item_failures=True),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 2)

    assert [r["eventName"] for r in seen] == ["INSERT", "REMOVE"]
    assert seen[0]["dynamodb"]["NewImage"] == {
        "pk": {"S": "a"},
        "n": {"N": "1"},
        "b": {"B": "AQ=="},
    }
    assert seen[0]["eventSourceARN"] == sim.stream_arn
    assert handled.records[0].new_image == {"pk": "a", "n": 1, "b": b"\x01"}


def test_invalid_options_are_clear_errors() -> None:
    with pytest.raises(ddbstreams.ConfigurationError, match="batch_size"):
        ddbstreams.ConsumerOptions(batch_size=0)
    with pytest.raises(ddbstreams.ConfigurationError, match="parallelization_factor"):
        ddbstreams.ConsumerOptions(parallelization_factor=11)
    with pytest.raises(ddbstreams.ConfigurationError, match="unknown consumer option"):
        Consumer("table", print, store=MemoryCheckpointStore(), bath_size=3)


def test_blocking_consumer_runs_and_stops_from_another_thread() -> None:
    import threading

    sim = StreamSimulator(partitions=1, seed=12)
    for i in range(5):
        sim.put_item({"pk": f"item-{i}"})
    got: list[str] = []
    done = threading.Event()

    def handler(records: list[Record]) -> None:
        got.extend(r.keys["pk"] for r in records)
        if len(got) >= 5:
            done.set()

    consumer = ddbstreams.BlockingConsumer(
        sim.stream_arn,
        handler,
        store=MemoryCheckpointStore(),
        client=sim.client(),
        reader_options=FAST,
    )
    stopper = threading.Thread(target=lambda: (done.wait(10), consumer.stop()))
    stopper.start()
    consumer.run()
    stopper.join()

    assert got == [f"item-{i}" for i in range(5)]
    (position,) = consumer.checkpoint().positions.values()
    assert position == sim.history[-1].sequence_number


async def test_a_shard_without_records_does_not_let_its_child_overtake_the_parent() -> None:
    # A -> B (no records) -> C: C's records must wait until A's are processed.
    sim = StreamSimulator(partitions=1, seed=13)
    for n in range(5):
        sim.put_item({"pk": "x", "n": n})
    (b,) = sim.roll_over()
    sim.roll_over(b)
    sim.put_item({"pk": "x", "n": 5})
    handled = Handled()

    async def slow(records: list[Record]) -> None:
        await asyncio.sleep(0.05)  # A's batches queue up in its lane meanwhile
        handled.add(records)

    consumer = consumer_for(
        sim,
        slow,
        options=fast_options(batch_size=1),
    )
    await run_until(consumer, handled, lambda: len(handled.records) >= 6)

    assert [r.new_image["n"] for r in handled.records if r.new_image] == [0, 1, 2, 3, 4, 5]


async def test_a_stored_checkpoint_carries_its_records_creation_times_for_lag() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=3, seed=4, retention=None)
    for n in range(12):
        sim.put_item({"pk": f"item-{n}"})
        clock.advance(7.0)
    got: list[Record] = []
    store = MemoryCheckpointStore()
    consumer = virtual_consumer(sim, clock, got.extend, store=store, follow=False)
    await consumer.run()
    stored = await store.load(sim.stream_arn, name="default")
    assert stored is not None
    last = {r.shard_id: r for r in got}
    assert set(stored.positions) == set(last)
    for shard_id, record in last.items():
        assert stored.positions[shard_id] == record.sequence_number
        assert stored.times[shard_id] == record.approximate_creation_time.timestamp()
