"""Write-to-delivery latency and idle polling cost: ddbstreams vs KCL's DynamoDB Streams defaults.

Against DynamoDB Local (one table, one stream shard), two readers follow the same stream side
by side in one run while a writer thread puts items at random moments:

- ddbstreams: ``StreamReader(..., follow=True)`` with default options (after a page with
  records it polls again at once; after an empty page it waits 0.1 s, doubling per further
  empty page up to 0.4 s);
- KCL model: a poller (``bench/_common.py``, with the sources) that follows the schedule of
  the DynamoDB Streams Kinesis Adapter's defaults: the next
  GetRecords starts 1 s after the previous one returned, 2 s if it returned no records. It
  uses the same StreamsClient over the same endpoint, so only the schedule differs. It is
  generous to KCL: no JVM, no prefetch queue, no lease or checkpoint work.

Measured:

- write-to-delivery latency per record (p50, p99, max): from just *before* PutItem is
  called to the moment the record is handed to the caller, both on this host's clock
  (``time.time()``). It therefore includes the PutItem round trip (printed for reference).
  The records' ApproximateCreationDateTime is useless here: DynamoDB Local rounds it to the
  minute.
- GetRecords calls per idle shard per second: after the writes, neither reader sees new
  records; the calls each makes during a quiet window give its steady idle polling rate.

Checked before anything is printed: each reader got every write exactly once, in write order
(exit status 1 otherwise). Run: ``.venv/bin/python bench/latency.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import random
import statistics
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TypeVar

from _common import (
    KCL_EMPTY_READ_FACTOR,
    KCL_IDLE_BETWEEN_READS,
    follow_on_kcl_schedule,
    pct,
    report,
)

from ddbstreams import (
    TRIM_HORIZON,
    DefaultParser,
    Parser,
    Record,
    RecordsPage,
    ShardStart,
    StreamReader,
    StreamsClient,
)
from ddbstreams.local import DYNAMODB_LOCAL_VERSION, DynamoDBLocal, SourceTable

T = TypeVar("T")


SETTLE = 2.5  # seconds for both pollers to reach their steady idle schedule
DELIVERY_TIMEOUT = 30.0  # seconds after the last write before a missing record is an error


@dataclass
class Calls:
    """GetRecords calls made through one client: start times (monotonic) and record counts."""

    starts: list[float] = field(default_factory=list)
    records: list[int] = field(default_factory=list)


class CountingClient(StreamsClient):
    """A StreamsClient that notes every GetRecords call it makes."""

    def __init__(self, calls: Calls, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calls = calls

    async def get_records(
        self,
        shard_iterator: str,
        *,
        shard_id: str,
        parser: Parser[T],
        limit: int | None = None,
    ) -> RecordsPage[T]:
        self.calls.starts.append(time.monotonic())
        page = await super().get_records(
            shard_iterator, shard_id=shard_id, parser=parser, limit=limit
        )
        self.calls.records.append(len(page.records))
        return page


@dataclass
class Delivery:
    key: str
    sequence_number: str
    at: float  # time.time() when handed to the caller


async def follow_ddbstreams(stream_arn: str, client: StreamsClient, out: list[Delivery]) -> None:
    """A follow-mode StreamReader with default options, until cancelled."""
    async with StreamReader(stream_arn, client=client, follow=True, start=TRIM_HORIZON) as reader:
        async for record in reader:
            out.append(Delivery(record.keys["pk"], record.sequence_number, time.time()))


async def follow_kcl_model(stream_arn: str, client: StreamsClient, out: list[Delivery]) -> None:
    """Poll the stream's one shard on the KCL/adapter default schedule, until cancelled."""
    description = await client.describe_stream(stream_arn)
    open_shards = [s for s in description.shards if s.is_open]
    if len(open_shards) != 1:
        raise RuntimeError(f"expected one open shard, found {len(open_shards)}")
    shard_id = open_shards[0].shard_id
    parser = DefaultParser()
    iterator: str | None = await client.get_shard_iterator(
        stream_arn, shard_id, ShardStart("TRIM_HORIZON")
    )

    def deliver(page: RecordsPage[Record]) -> None:
        now = time.time()
        out.extend(Delivery(r.keys["pk"], r.sequence_number, now) for r in page.records)

    await follow_on_kcl_schedule(client, shard_id, iterator, parser, deliver)


@dataclass
class Write:
    key: str
    started: float  # time.time() just before PutItem
    returned: float  # time.time() when PutItem returned


def write_items(
    table: SourceTable, prefix: str, count: int, mean_gap: float, seed: int
) -> list[Write]:
    """Put ``count`` items, waiting an exponentially distributed gap before each one."""
    rng = random.Random(seed)
    writes = []
    for i in range(count):
        time.sleep(rng.expovariate(1.0 / mean_gap) if mean_gap > 0 else 0.0)
        key = f"{prefix}{i:05d}"
        started = time.time()
        table.put({"pk": key, "i": i})
        writes.append(Write(key, started, time.time()))
    return writes


async def delivered(deliveries: list[list[Delivery]], keys: set[str]) -> None:
    """Return once every reader has delivered every key in ``keys``."""
    # Checking two plain lists now and then is simpler than wiring events into both readers.
    while not all(keys <= {d.key for d in out} for out in deliveries):  # noqa: ASYNC110
        await asyncio.sleep(0.05)


def check(name: str, writes: list[Write], deliveries: list[Delivery]) -> list[str]:
    """Problems with one reader's deliveries of ``writes`` (missing, repeated, reordered)."""
    wanted = {w.key for w in writes}
    got = [d for d in deliveries if d.key in wanted]
    problems = []
    keys = [d.key for d in got]
    if len(set(keys)) != len(keys):
        problems.append(f"{name}: {len(keys) - len(set(keys))} records delivered twice")
    missing = wanted - set(keys)
    if missing:
        problems.append(f"{name}: {len(missing)} records never delivered")
    if not problems and keys != [w.key for w in writes]:
        problems.append(f"{name}: records delivered out of write order")
    sequence = [int(d.sequence_number) for d in deliveries]
    if any(b <= a for a, b in itertools.pairwise(sequence)):
        problems.append(f"{name}: sequence numbers not strictly increasing")
    return problems


def latencies(writes: list[Write], deliveries: list[Delivery]) -> list[float]:
    delivered = {d.key: d.at for d in deliveries}
    return [delivered[w.key] - w.started for w in writes]


def idle_rate(calls: Calls, start: float, end: float) -> tuple[int, float]:
    """Calls started in [start, end) and the steady rate (1 / mean gap between them)."""
    inside = [t for t in calls.starts if start <= t < end]
    if len(inside) < 2:
        return len(inside), len(inside) / (end - start)
    return len(inside), (len(inside) - 1) / (inside[-1] - inside[0])


async def run(args: argparse.Namespace) -> int:
    with DynamoDBLocal() as engine:
        table = engine.source_table("bench_latency")
        kwargs = engine.client_kwargs()
        ours_calls, kcl_calls = Calls(), Calls()
        ours_client = CountingClient(ours_calls, **kwargs)
        kcl_client = CountingClient(kcl_calls, **kwargs)
        ours: list[Delivery] = []
        kcl: list[Delivery] = []
        tasks = [
            asyncio.create_task(follow_ddbstreams(table.stream_arn, ours_client, ours)),
            asyncio.create_task(follow_kcl_model(table.stream_arn, kcl_client, kcl)),
        ]
        try:
            # Warm up the JVM, connections and both readers; these writes are not measured.
            warm = await asyncio.to_thread(write_items, table, "warm", 10, 0.05, 1)
            try:
                async with asyncio.timeout(DELIVERY_TIMEOUT):
                    await delivered([ours, kcl], {w.key for w in warm})
            except TimeoutError:
                problems = check("ddbstreams", warm, ours) + check("KCL model", warm, kcl)
                return report(["warm-up: " + p for p in problems] or ["warm-up timed out"])
            await asyncio.sleep(SETTLE)

            print(
                f"writing {args.writes} items, exponential gaps (mean {args.mean_gap * 1e3:.0f}"
                f" ms) ...",
                flush=True,
            )
            write_started = time.monotonic()
            writes = await asyncio.to_thread(
                write_items, table, "w", args.writes, args.mean_gap, args.seed
            )
            write_ended = time.monotonic()
            try:
                async with asyncio.timeout(DELIVERY_TIMEOUT):
                    await delivered([ours, kcl], {w.key for w in writes})
            except TimeoutError:
                pass  # check() below names what is missing

            # No more writes: both readers now poll an idle shard.
            print(f"measuring idle polling for {args.idle_window:g} s ...", flush=True)
            await asyncio.sleep(SETTLE)
            idle_start = time.monotonic()
            await asyncio.sleep(args.idle_window)
            idle_end = time.monotonic()
            for task in tasks:
                if task.done():  # a reader that died would leave its error here
                    task.result()
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await ours_client.close()
            await kcl_client.close()

    problems = check("ddbstreams", writes, ours) + check("KCL model", writes, kcl)
    if problems:
        return report(problems)

    rows = []
    for name, deliveries, calls in (
        ("ddbstreams (defaults)", ours, ours_calls),
        ("KCL adapter defaults", kcl, kcl_calls),
    ):
        lat = latencies(writes, deliveries)
        during = sum(write_started <= t < write_ended for t in calls.starts)
        count, rate = idle_rate(calls, idle_start, idle_end)
        rows.append((name, pct(lat, 50), pct(lat, 99), max(lat), rate, count, during))

    put_ms = [(w.returned - w.started) * 1e3 for w in writes]
    span = write_ended - write_started
    print(
        f"\nDynamoDB Local {DYNAMODB_LOCAL_VERSION}, one shard; {len(writes)} writes over "
        f"{span:.1f} s; both readers side by side in this run"
    )
    print("latency: PutItem called -> record handed to the caller (host clock)")
    print(
        f"{'reader':<24}{'p50 ms':>8}{'p99 ms':>8}{'max ms':>8}"
        f"{'idle calls/s':>14}{'calls while writing':>21}"
    )
    for name, p50, p99, worst, rate, _count, during in rows:
        print(
            f"{name:<24}{p50 * 1e3:>8.0f}{p99 * 1e3:>8.0f}{worst * 1e3:>8.0f}"
            f"{rate:>14.2f}{during:>21d}"
        )
    (_, p50a, p99a, maxa, ratea, _, duringa), (_, p50b, p99b, maxb, rateb, _, duringb) = rows
    print(
        f"{'ddbstreams / KCL':<24}{p50a / p50b:>7.2f}x{p99a / p99b:>7.2f}x{maxa / maxb:>7.2f}x"
        f"{ratea / rateb:>13.2f}x{duringa / duringb:>20.2f}x"
    )
    print(
        f"idle window: {idle_end - idle_start:.0f} s without writes "
        f"({rows[0][5]} and {rows[1][5]} GetRecords calls); "
        f"PutItem round trip p50 {statistics.median(put_ms):.1f} ms"
    )
    print(
        f"KCL schedule: next GetRecords {KCL_IDLE_BETWEEN_READS:g} s after the last one "
        f"returned, {KCL_IDLE_BETWEEN_READS * KCL_EMPTY_READ_FACTOR:g} s after an empty one"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--writes", type=int, default=200, help="measured writes (default 200)")
    parser.add_argument(
        "--mean-gap", type=float, default=0.3, help="mean seconds between writes (default 0.3)"
    )
    parser.add_argument(
        "--idle-window", type=float, default=15.0, help="seconds of idle polling measured"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the write gaps")
    args = parser.parse_args()
    if args.writes < 2:
        parser.error("--writes must be at least 2")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
