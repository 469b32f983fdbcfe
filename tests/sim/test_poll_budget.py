"""Follow mode under a poll budget, in virtual time: busy and quiet shards side by side.

The workload of the budget benchmark (bench/budget.py), scaled down: a few busy shards
(10 writes/s each) among many quiet ones (one write a minute each), arrivals Poisson with a
fixed seed. The budget equals what KCL's schedule (1 s between reads, 2 s after an empty
one) spends on it. The reader must stay within it and, by the square-root rule, deliver
busy shards' records far sooner than KCL's schedule would (~0.5 s) while quiet shards'
wait stays within 1.3x of KCL's (~1 s).
"""

from __future__ import annotations

import asyncio
import random
import statistics

import ddbstreams
from ddbstreams import Record
from ddbstreams.testing import SimulatedClock, StreamSimulator
from tests.support.shards import key_per_shard

BUSY, QUIET = 2, 198  # 1% busy, as in the benchmark (10 of 1,000)
DURATION = 300.0


async def test_a_budget_as_large_as_kcls_spend_beats_its_schedule() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=BUSY + QUIET, seed=21, retention=None)
    keys = list(key_per_shard(sim).values())
    busy, quiet = keys[:BUSY], keys[BUSY:]
    kcl_spend = BUSY * 1.0 + QUIET * 0.5
    options = ddbstreams.ReaderOptions(poll_budget=kcl_spend, describe_interval=600.0)
    written: dict[str, float] = {}
    latency: dict[str, float] = {}

    async def write(key: str, rate: float, rng: random.Random) -> None:
        while True:
            await clock.sleep(rng.expovariate(rate))
            change = sim.put_item({"pk": key, "n": rng.random()})
            assert change is not None
            written[change.sequence_number] = clock.time()

    async def read(reader: ddbstreams.StreamReader[Record]) -> None:
        async for record in reader:
            latency[record.sequence_number] = clock.time() - written[record.sequence_number]

    reader = ddbstreams.StreamReader(
        sim.stream_arn,
        follow=True,
        start=ddbstreams.LATEST,
        client=sim.client(),
        clock=clock,
        options=options,
    )
    async with reader, asyncio.timeout(120), asyncio.TaskGroup() as group:
        reading = group.create_task(read(reader))
        await clock.sleep(5.0)  # every LATEST iterator is taken
        calls_before = sum(sim.get_records_calls.values())
        started = clock.monotonic()
        writers = [
            group.create_task(write(key, 10.0, random.Random(f"b{n}")))
            for n, key in enumerate(busy)
        ] + [
            group.create_task(write(key, 1 / 60, random.Random(f"q{n}")))
            for n, key in enumerate(quiet)
        ]
        await clock.sleep(DURATION)
        calls = sum(sim.get_records_calls.values()) - calls_before
        elapsed = clock.monotonic() - started
        for writer in writers:
            writer.cancel()
        await clock.sleep(40.0)  # the last records arrive
        reading.cancel()

    assert set(latency) == set(written), "records missing"
    by_key = {key: [] for key in keys}
    for change in sim.history:
        by_key[change.keys["pk"]].append(latency[change.sequence_number])
    busy_p50 = statistics.median(t for key in busy for t in by_key[key])
    quiet_p50 = statistics.median(t for key in quiet for t in by_key[key])
    assert calls / elapsed <= kcl_spend * 1.02
    assert busy_p50 <= 0.1  # KCL's schedule: about 0.5 s
    assert quiet_p50 <= 1.3 * 1.0  # KCL's schedule: about 1 s (half its 2 s wait)
