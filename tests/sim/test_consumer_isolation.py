"""The consumer keeps shards independent and lets its process go, as Lambda does.

- a record whose handler keeps failing holds back its own shard (and that shard's
  children) only, for every parallelization factor, on a stream with many shards;
- a blocking handler that hangs past ``stop_timeout`` cannot keep the process alive;
- bisecting a failing batch gives every record its own retry backoff;
- ``run()`` runs again after it returned.
"""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import textwrap

import pytest

import ddbstreams
from ddbstreams import FailedBatch, Record
from ddbstreams.testing import SimulatedClock, StreamSimulator
from tests.support.consumers import virtual_consumer
from tests.support.shards import keys_per_shard

SHARDS = 40


@pytest.mark.parametrize("parallelization_factor", [1, 3])
async def test_a_poison_record_holds_back_only_its_own_shard_and_its_children(
    parallelization_factor: int,
) -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=SHARDS, seed=3, retention=None)
    keys = keys_per_shard(sim, 3)
    poison_shard = sim.open_shard_ids()[0]
    poison_key = keys[poison_shard][0]
    for round_number in range(12):
        for shard_keys in keys.values():
            for key in shard_keys:
                sim.put_item({"pk": key, "round": round_number})
    poison = next(
        c for c in sim.history if c.keys == {"pk": poison_key} and c.new_image["round"] == 4
    )
    sim.roll_over(poison_shard)
    child = next(s.shard_id for s in sim.shards() if s.parent_shard_id == poison_shard)
    for round_number in range(12, 15):
        for key in keys[poison_shard]:
            sim.put_item({"pk": key, "round": round_number})

    handled: list[Record] = []

    async def handler(records: list[Record]) -> None:
        if any(r.sequence_number == poison.sequence_number for r in records):
            raise ValueError("poison")
        handled.extend(records)

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        batch_size=5,
        parallelization_factor=parallelization_factor,
    )
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await clock.sleep(600)  # ten minutes of retrying the poison record, forever
        await consumer.stop()
        await running

    got = {r.sequence_number for r in handled}
    healthy = [c for c in sim.history if c.shard_id not in (poison_shard, child)]
    assert len(healthy) == (SHARDS - 1) * 3 * 12
    assert not [c for c in healthy if c.sequence_number not in got], "a healthy shard stalled"
    # The poison key's changes before the poison record were handled, none after it.
    poison_key_changes = [c for c in sim.history if c.keys == {"pk": poison_key}]
    before = [c for c in poison_key_changes if int(c.sequence_number) < int(poison.sequence_number)]
    after = [c for c in poison_key_changes if int(c.sequence_number) >= int(poison.sequence_number)]
    assert before
    assert {c.sequence_number for c in before} <= got
    assert not {c.sequence_number for c in after} & got
    # The child continues the poison shard's items: nothing of it before the parent is done.
    assert not [r for r in handled if r.shard_id == child]
    # The checkpoint stops right before the poison record.
    checkpoint = consumer.checkpoint()
    stopped_at = checkpoint.positions.get(poison_shard)
    assert stopped_at is None or int(stopped_at) < int(poison.sequence_number)


async def test_a_stuck_shard_holds_a_bounded_number_of_records() -> None:
    """A stuck shard is paused in the reader: its backlog stays in the stream."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=5, retention=None)
    keys = keys_per_shard(sim, 1)
    stuck_shard, healthy_shard = sim.open_shard_ids()
    for n in range(3000):
        sim.put_item({"pk": keys[stuck_shard][0], "n": n})
        sim.put_item({"pk": keys[healthy_shard][0], "n": n})
    taken_from_stuck: list[int] = []

    async def handler(records: list[Record]) -> None:
        if records[0].shard_id == stuck_shard:
            taken_from_stuck.append(len(records))
            raise ValueError("stuck")

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        batch_size=10,
        reader_options=ddbstreams.ReaderOptions(page_limit=100),
    )
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await clock.sleep(300)
        reads = dict(sim.get_records_calls)
        await consumer.stop()
        await running
    # The healthy shard was read to its end; the stuck one only a few pages ahead of its
    # handler (the lane's queue, the reader's buffer and one request in flight).
    assert consumer.checkpoint().positions[healthy_shard] == sim.history[-1].sequence_number
    assert reads[stuck_shard] <= 2 + ddbstreams.ReaderOptions().buffer_pages + 2


@pytest.mark.parametrize("blocking_consumer", [False, True])
def test_a_hung_blocking_handler_does_not_keep_the_process_alive(
    blocking_consumer: bool,
) -> None:
    script = textwrap.dedent(
        f"""
        import asyncio, threading, time
        import ddbstreams
        from ddbstreams.testing import StreamSimulator

        sim = StreamSimulator()
        sim.put_item({{"pk": "a"}})
        started = threading.Event()

        def handler(records):
            started.set()
            time.sleep(3600)  # hangs: a deadlocked client, a lost connection...

        options = dict(
            client=sim.client(), store=ddbstreams.MemoryCheckpointStore(), stop_timeout=0.2
        )
        if {blocking_consumer}:
            consumer = ddbstreams.BlockingConsumer(sim.stream_arn, handler, **options)
            def stop_when_started():
                started.wait()
                consumer.stop()
            threading.Thread(target=stop_when_started).start()
            consumer.run()
        else:
            async def main():
                consumer = ddbstreams.Consumer(sim.stream_arn, handler, **options)
                running = asyncio.create_task(consumer.run())
                while not started.is_set():
                    await asyncio.sleep(0.01)
                await consumer.stop()
                await running
            asyncio.run(main())
        print("stopped", flush=True)
        """
    )
    # A hang shows as a timeout; the limit is generous, not a measure of speed.
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "stopped"


async def test_bisect_gives_each_record_its_own_backoff() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=1)
    for n in range(100):
        sim.put_item({"pk": f"item-{n}"})
    failed_at: list[float] = []
    everything_failed = asyncio.Event()

    async def handler(records: list[Record]) -> None:
        raise ValueError("always")

    async def on_failure(failed: FailedBatch) -> None:
        failed_at.extend(clock.monotonic() for _ in failed.records)
        if len(failed_at) == 100:
            everything_failed.set()

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        on_failure=on_failure,
        batch_size=100,
        bisect_batch_on_error=True,
        maximum_retry_attempts=1,
        retry_delay=0.5,
    )
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        running = group.create_task(consumer.run())
        await everything_failed.wait()
        await consumer.stop()
        await running
    # Each record is tried, waits 0.5 s, is retried once and given up on: 0.5 s apart,
    # not 0.5, 1, 2, 4 ... s (which took 47 minutes for 100 records).
    gaps = [later - earlier for earlier, later in itertools.pairwise(failed_at)]
    assert max(gaps) == pytest.approx(0.5, abs=0.05)
    assert failed_at[-1] - failed_at[0] == pytest.approx(99 * 0.5, abs=1.0)


async def test_run_runs_again_after_it_returned() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, seed=2)
    handled: list[Record] = []
    arrived = asyncio.Event()

    async def handler(records: list[Record]) -> None:
        handled.extend(records)
        arrived.set()

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
    )

    async def run_until(count: int) -> None:
        async with asyncio.timeout(30), asyncio.TaskGroup() as group:
            running = group.create_task(consumer.run())
            while len(handled) < count:
                arrived.clear()
                await arrived.wait()
            await consumer.stop()
            await running

    for n in range(5):
        sim.put_item({"pk": f"first-{n}"})
    await run_until(5)
    for n in range(5):
        sim.put_item({"pk": f"second-{n}"})
    await run_until(10)
    assert [r.keys["pk"] for r in handled] == [f"first-{n}" for n in range(5)] + [
        f"second-{n}" for n in range(5)
    ]
