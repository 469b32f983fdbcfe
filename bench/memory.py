"""Peak RSS while a caller 100x slower than the stream works through a backlog of 1,000,000 records.

An in-memory :class:`~ddbstreams.testing.StreamSimulator` (no HTTP) holds the backlog: small
NEW_IMAGE records (``{"pk": "itemNNNN", "n": i}``, 1,000 items written over and over) in 4
shards. Then, each scenario in its own forked process (so that ``ru_maxrss`` is that
scenario's peak and the scenarios cannot disturb each other; the backlog is shared
copy-on-write and counted in every process's RSS alike):

1. stream speed: a single-pass ``StreamReader`` with default options reads the whole backlog
   as fast as it can (consumer does nothing but the checks). Its rate R is "the stream".
2. ddbstreams, default ``buffer_pages`` (8): a caller that handles R/100 records per second
   (``await asyncio.sleep`` between batches of 100, so the fetchers are free to run) reads
   for about 25 s, while RSS is sampled every 0.5 s.
3. baseline, same caller and pace, but ``buffer_pages=1,000,000``: what a reader without
   backpressure does (fetch ahead into an unbounded buffer, i.e. read everything into a
   list), for the same records.

Printed per scenario: records fetched by the reader, RSS growth over the process's RSS at
the scenario's start (peak from ``ru_maxrss``, and the range of the 0.5 s samples after a 5 s
warm-up), and the sample series. The bounded reader should stay flat: its read-ahead is at
most ``buffer_pages`` pages plus one page per shard fetcher, whatever the backlog.

Checked: the fast pass delivers every record exactly once, each item's changes in order;
the slow scenarios deliver no duplicates and keep per-item order (exit status 1 otherwise).
Run: ``.venv/bin/python bench/memory.py`` (``--backlog N`` to try another size). Linux only
(``fork``, ``/proc``).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import resource
import sys
import threading
import time
from typing import Any, TypeVar

from _common import in_child

from ddbstreams import Parser, ReaderOptions, RecordsPage, StreamReader, StreamsClient
from ddbstreams.testing import SimulatedClock, StreamSimulator

T = TypeVar("T")

SHARDS = 4
ITEMS = 1000
SLOWDOWN = 100
FAST_RECORDS = 200_000  # records the flat-out pass reads to measure the stream's speed
BATCH = 100
SAMPLE_EVERY = 0.5
WARM_UP = 5.0
UNBOUNDED_PAGES = 1_000_000
# What a backlog record costs in memory, measured, to shrink a backlog that would not fit:
# the simulator holds about 4.7 KB per record (orjson.dumps returns bytes objects with a
# ~4 KB allocation whatever their length), a scenario that reads the whole backlog makes a
# private copy-on-write copy of those pages (reading a record touches its refcount), and
# the unbounded baseline holds about 1.2 KB per decoded record on top.
SIMULATOR_BYTES_PER_RECORD = 5000
DECODED_BYTES_PER_RECORD = 1500


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    # Linux reports ru_maxrss in KiB. A forked child's peak starts at its RSS at fork time.
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def available_mb() -> float:
    with open("/proc/meminfo") as meminfo:
        for line in meminfo:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("inf")


class FetchCounter(StreamsClient):
    """A StreamsClient that counts the records its GetRecords calls fetched."""

    fetched = 0

    async def get_records(
        self,
        shard_iterator: str,
        *,
        shard_id: str,
        parser: Parser[T],
        limit: int | None = None,
    ) -> RecordsPage[T]:
        page = await super().get_records(
            shard_iterator, shard_id=shard_id, parser=parser, limit=limit
        )
        self.fetched += len(page.records)
        return page


def build_backlog(records: int) -> StreamSimulator:
    # The simulator's clock starts now so that a single pass sees the backlog as written
    # before it began (a clock in the future would look like records from after the pass).
    sim = StreamSimulator(
        table_name="bench_memory",
        stream_view_type="NEW_IMAGE",
        partitions=SHARDS,
        seed=1,
        clock=SimulatedClock(start=time.time()),
    )
    for n in range(records):
        sim.put_item({"pk": f"item{n % ITEMS:04d}", "n": n})
    return sim


async def consume(
    sim: StreamSimulator, buffer_pages: int, pace: float | None, limit: int | None
) -> dict[str, Any]:
    """Read the backlog at ``pace`` records/s (None: flat out) until ``limit`` records."""
    seen = bytearray(len(sim.history))
    last: dict[str, int] = {}
    duplicates = reordered = skipped = consumed = 0
    client = FetchCounter(transport=sim.transport())
    options = ReaderOptions(buffer_pages=buffer_pages)
    started = time.monotonic()
    due = started
    try:
        async with StreamReader(sim.stream_arn, client=client, options=options) as reader:
            async for batch in reader.batches(BATCH):
                for record in batch:
                    # Item n % ITEMS was written by changes n % ITEMS, + ITEMS, + 2 * ITEMS...
                    # and one shard holds them all: each must follow the previous exactly.
                    n = record.new_image["n"] if record.new_image else 0
                    pk = record.keys["pk"]
                    expected = last.get(pk, n % ITEMS - ITEMS) + ITEMS
                    if seen[n]:
                        duplicates += 1
                    elif n < expected:
                        reordered += 1
                    elif n > expected:
                        skipped += 1
                    seen[n] = 1
                    last[pk] = n
                consumed += len(batch)
                if limit is not None and consumed >= limit:
                    break
                if pace is not None:
                    due += len(batch) / pace
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
    finally:
        await client.close()
    return {
        "elapsed": time.monotonic() - started,
        "consumed": consumed,
        "fetched": client.fetched,
        "duplicates": duplicates,
        "reordered": reordered,
        "skipped": skipped,
    }


def scenario(
    sim: StreamSimulator, buffer_pages: int, pace: float | None, limit: int | None
) -> dict[str, Any]:
    """Run one scenario in this (forked) process, sampling RSS every SAMPLE_EVERY s."""
    start_rss = rss_mb()
    samples: list[tuple[float, float]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def sample() -> None:
        while not done.wait(SAMPLE_EVERY):
            samples.append((time.monotonic() - t0, rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = asyncio.run(consume(sim, buffer_pages, pace, limit))
    done.set()
    sampler.join()
    result.update(start_rss=start_rss, peak_rss=peak_rss_mb(), samples=samples)
    return result


def problems(name: str, result: dict[str, Any]) -> list[str]:
    found = []
    for key, what in (
        ("skipped", "records skipped (an item's next change came first)"),
        ("duplicates", "records delivered twice"),
        ("reordered", "records out of per-item order"),
    ):
        if result[key]:
            found.append(f"{name}: {result[key]} {what}")
    return found


def describe_rss(result: dict[str, Any]) -> tuple[float, float, float]:
    """(peak growth, min and max growth of the samples after warm-up), in MB."""
    start = result["start_rss"]
    after = [rss for t, rss in result["samples"] if t >= WARM_UP] or [start]
    return result["peak_rss"] - start, min(after) - start, max(after) - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backlog", type=int, default=1_000_000, help="records in the backlog")
    parser.add_argument(
        "--slow-seconds", type=float, default=25.0, help="how long each slow caller reads"
    )
    args = parser.parse_args()
    if not sys.platform.startswith("linux"):
        print("bench/memory.py needs Linux (fork and /proc)", file=sys.stderr)
        return 2

    backlog = args.backlog
    per_record = 2 * SIMULATOR_BYTES_PER_RECORD + DECODED_BYTES_PER_RECORD
    fits = int((available_mb() - 1024) * 2**20 / per_record)
    if fits < backlog:
        reduced = max(10_000, fits // 10_000 * 10_000)
        print(
            f"NOTE: a {backlog:,}-record backlog needs about {backlog * per_record / 2**30:.1f}"
            f" GB here but only {available_mb() / 1024:.1f} GB is available; using "
            f"{reduced:,} records instead"
        )
        backlog = reduced

    print(f"building a backlog of {backlog:,} records in the simulator ...", flush=True)
    before = rss_mb()
    started = time.monotonic()
    sim = build_backlog(backlog)
    build_seconds = time.monotonic() - started
    # Objects alive now are never collected: keep the collector from walking (and so
    # copying) the shared backlog in every forked scenario.
    gc.collect()
    gc.freeze()
    print(
        f"backlog: {backlog:,} NEW_IMAGE records in {SHARDS} shards, built in "
        f"{build_seconds:.0f} s; the simulator holds {rss_mb() - before:,.0f} MB "
        "(in every scenario's RSS, shared)",
        flush=True,
    )

    fast_records = min(backlog, FAST_RECORDS)
    fast = in_child(scenario, sim, ReaderOptions().buffer_pages, None, fast_records)
    found = problems("fast pass", fast)
    if fast["consumed"] < fast_records:
        found.append(f"fast pass: only {fast['consumed']:,} of {backlog:,} records delivered")
    rate = fast["consumed"] / fast["elapsed"]
    pace = rate / SLOWDOWN
    portion = min(backlog, max(BATCH, int(pace * args.slow_seconds) // BATCH * BATCH))
    print(
        f"stream: a reader with default options, flat out, reads the first "
        f"{fast['consumed']:,} records in {fast['elapsed']:.1f} s = {rate:,.0f} records/s "
        f"(peak RSS +{fast['peak_rss'] - fast['start_rss']:.0f} MB)"
    )
    print(
        f"slow caller: {pace:,.0f} records/s (1/{SLOWDOWN} of that), reads the first "
        f"{portion:,} records ({portion / pace:.0f} s) in each scenario below",
        flush=True,
    )

    runs = []
    for name, pages in (
        (f"ddbstreams, buffer_pages={ReaderOptions().buffer_pages}", ReaderOptions().buffer_pages),
        (f"no bound, buffer_pages={UNBOUNDED_PAGES:,}", UNBOUNDED_PAGES),
    ):
        result = in_child(scenario, sim, pages, pace, portion)
        found += problems(name, result)
        runs.append((name, result))

    width = max(len(name) for name, _ in runs) + 2
    print(
        f"\n{'scenario':<{width}}{'read':>8}{'fetched':>11}{'RSS at start':>14}"
        f"{'after warm-up':>17}{'peak':>10}"
    )
    for name, result in runs:
        peak, low, high = describe_rss(result)
        print(
            f"{name:<{width}}{result['consumed']:>8,}{result['fetched']:>11,}"
            f"{result['start_rss']:>11,.0f} MB{f'+{low:,.0f}..+{high:,.0f} MB':>17}"
            f"{f'+{peak:,.0f} MB':>10}"
        )
    print(f"RSS above start (MB), one {SAMPLE_EVERY:g} s sample every {WARM_UP:g} s:")
    for name, result in runs:
        shown = result["samples"][int(WARM_UP / SAMPLE_EVERY) - 1 :: int(WARM_UP / SAMPLE_EVERY)]
        series = " ".join(f"{rss - result['start_rss']:+.0f}" for _, rss in shown)
        print(f"{name:<{width}}{series}")
    (_, bounded), (_, unbounded) = runs
    bounded_peak, low, high = describe_rss(bounded)
    unbounded_peak = describe_rss(unbounded)[0]
    print(
        f"peak RSS growth, no bound / ddbstreams: {unbounded_peak / max(bounded_peak, 1.0):.0f}x"
        f" ({unbounded_peak:,.0f} MB vs {bounded_peak:.0f} MB); ddbstreams after warm-up "
        f"varied by {high - low:.1f} MB"
    )
    for problem in found:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
