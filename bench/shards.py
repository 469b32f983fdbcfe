"""Memory per open shard: a follow reader over N open, idle shards, N from 10 to 1,000.

An in-memory :class:`~ddbstreams.testing.StreamSimulator` (no HTTP, virtual clock) has N
open shards and no writes. For each N, in its own forked process (so that every figure is
that process's alone and one N cannot disturb another):

1. **simulator alone**: build the simulator, collect garbage, read RSS; then make, on every
   shard, the calls a reader makes (a GetShardIterator, then GetRecords ``--polls`` times),
   straight on the simulator without a reader; collect, read RSS again. The difference is
   what the simulator itself keeps for being polled (its per-shard call counters).
2. **reader**: build the same simulator, collect, read RSS; start
   ``StreamReader(follow=True)`` with default options on the virtual clock and let it run
   until every shard has been polled ``--polls`` times and a periodic DescribeStream has
   run (steady state: every fetcher is in its idle poll loop); collect, read RSS; let it
   run as long again and read RSS once more: the difference ("drift") stays small, as
   nothing is kept per poll.

Printed per N: the reader's RSS growth (its RSS at steady state minus its RSS with the
simulator built, minus what the simulator alone grew in step 1), that growth divided by N,
and the **marginal cost per open shard**: (growth at N - growth at the smallest N) / (N -
smallest N), which leaves out the reader's fixed cost (event loop, client, task group). The
target is at most 20 KB per open shard. RSS counts whole pages and freed memory is not
always returned to the system, so small N are noisy; the marginal figure at 1,000 is the one
to read.

``--trace N`` runs the reader once more under ``tracemalloc`` and prints the allocations
still alive at steady state that were made after the simulator was built, by file and line,
per open shard: what holds the memory.

Checked: every shard is polled (exit status 1 otherwise). Run: ``.venv/bin/python
bench/shards.py`` (``--shards 10 100 1000 3000`` for other sizes). Linux only (``fork``,
``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import sys
import tracemalloc
from collections.abc import Callable
from typing import Any

from _common import in_child

from ddbstreams import LATEST, StreamReader
from ddbstreams.testing import SimulatedClock, StreamSimulator

TARGET_KB = 20.0
POLLS = 5


def rss_kb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024


def settled_rss_kb() -> float:
    gc.collect()
    return rss_kb()


def build(shards: int) -> tuple[SimulatedClock, StreamSimulator]:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=shards, seed=3, retention=None)
    return clock, sim


def simulator_alone(shards: int, polls: int) -> dict[str, Any]:
    """Step 1: what the simulator keeps for being polled, without a reader."""
    _, sim = build(shards)
    before = settled_rss_kb()
    for shard_id in sim.open_shard_ids():
        iterator = sim.call(
            "GetShardIterator",
            {"StreamArn": sim.stream_arn, "ShardId": shard_id, "ShardIteratorType": "LATEST"},
        )["ShardIterator"]
        for _ in range(polls):
            body = json.loads(sim.get_records_body({"ShardIterator": iterator}))
            iterator = body["NextShardIterator"]
    return {"before": before, "after": settled_rss_kb()}


async def follow_idle(
    clock: SimulatedClock,
    sim: StreamSimulator,
    polls: int,
    at_steady: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Follow every shard until each was polled ``polls`` times and a periodic listing ran;
    call ``at_steady``; run as long again; report."""
    shard_ids = sim.open_shard_ids()
    reader = StreamReader(
        sim.stream_arn, follow=True, start=LATEST, client=sim.client(), clock=clock
    )
    describe_interval = 60.0

    def least_polls() -> int:
        calls = sim.get_records_calls
        return min(calls[shard_id] for shard_id in shard_ids)

    async with reader:
        while least_polls() < polls or clock.monotonic() <= describe_interval:
            await clock.sleep(1.0)
        steady_at = clock.monotonic()
        steady = at_steady()
        await clock.sleep(steady_at)
        later = settled_rss_kb()
        return {
            **steady,
            "later": later,
            "virtual_seconds": clock.monotonic(),
            "least_polls": least_polls(),
            "get_records": sum(sim.get_records_calls.values()),
        }


def reader_scenario(shards: int, polls: int) -> dict[str, Any]:
    """Step 2: the reader's RSS growth over the simulator's."""
    clock, sim = build(shards)
    before = settled_rss_kb()
    result = asyncio.run(follow_idle(clock, sim, polls, lambda: {"steady": settled_rss_kb()}))
    return {"before": before, **result}


def traced_scenario(shards: int, polls: int) -> dict[str, Any]:
    """The reader under tracemalloc: allocations alive at steady state, by file and line."""
    clock, sim = build(shards)
    gc.collect()
    tracemalloc.start(1)
    first = tracemalloc.take_snapshot()

    def at_steady() -> dict[str, Any]:
        gc.collect()
        diff = tracemalloc.take_snapshot().compare_to(first, "lineno")
        top = [
            (str(stat.traceback), stat.size_diff, stat.count_diff)
            for stat in sorted(diff, key=lambda s: -s.size_diff)[:25]
        ]
        total = sum(stat.size_diff for stat in diff)
        return {"top": top, "traced_total": total}

    result = asyncio.run(follow_idle(clock, sim, polls, at_steady))
    tracemalloc.stop()
    return result


def print_trace(shards: int, polls: int) -> None:
    traced = in_child(traced_scenario, shards, polls)
    total = traced["traced_total"]
    print(
        f"\ntracemalloc, reader over {shards:,} idle shards at steady state: "
        f"{total / 1024:,.0f} KB alive that the reader allocated = "
        f"{total / 1024 / shards:.2f} KB per shard; largest, by line:"
    )
    print(f"{'KB':>9}{'B/shard':>9}{'blocks':>9}  where")
    for where, size, count in traced["top"]:
        print(f"{size / 1024:>9,.1f}{size / shards:>9,.0f}{count:>9,}  {where}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--shards", type=int, nargs="+", default=[10, 100, 1000], help="open shard counts"
    )
    parser.add_argument("--polls", type=int, default=POLLS, help="polls per shard before measuring")
    parser.add_argument(
        "--trace", type=int, default=0, help="also a tracemalloc run with this many shards"
    )
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("bench/shards.py needs Linux (fork and /proc)", file=sys.stderr)
        return 2
    counts = sorted(set(args.shards))
    gc.collect()
    gc.freeze()  # what the parent made is never collected: no copy-on-write of it in a child

    rows = []
    found = []
    for shards in counts:
        alone = in_child(simulator_alone, shards, args.polls)
        read = in_child(reader_scenario, shards, args.polls)
        sim_growth = alone["after"] - alone["before"]
        growth = read["steady"] - read["before"] - sim_growth
        drift = read["later"] - read["steady"]
        rows.append((shards, read["before"], sim_growth, growth, drift, read))
        if read["least_polls"] < args.polls:
            found.append(f"{shards} shards: a shard was polled only {read['least_polls']} times")

    print(
        f"follow reader (default options) over N open idle shards, each polled >= {args.polls} "
        "times; RSS in KB\n"
    )
    print(
        f"{'N':>6}{'RSS with sim':>14}{'sim growth':>12}{'reader growth':>15}"
        f"{'per shard':>11}{'marginal':>10}{'drift':>8}{'GetRecords':>12}{'virtual s':>11}"
    )
    base_n, _, _, base_growth, _, _ = rows[0]
    marginals = {}
    for shards, before, sim_growth, growth, drift, read in rows:
        marginal = (growth - base_growth) / (shards - base_n) if shards > base_n else None
        marginals[shards] = marginal
        shown = "" if marginal is None else f"{marginal:.2f}"
        print(
            f"{shards:>6,}{before:>14,.0f}{sim_growth:>+12,.0f}{growth:>+15,.0f}"
            f"{growth / shards:>11.2f}{shown:>10}{drift:>+8,.0f}{read['get_records']:>12,}"
            f"{read['virtual_seconds']:>11,.0f}"
        )
    largest = counts[-1]
    marginal = marginals[largest]
    if marginal is not None:
        verdict = "within" if marginal <= TARGET_KB else "ABOVE"
        print(
            f"\nKB per open shard, reader alone, from {base_n:,} to {largest:,} shards: "
            f"{marginal:.2f} ({verdict} the {TARGET_KB:g} KB target)"
        )
    if args.trace:
        print_trace(args.trace, args.polls)
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
