"""Poll budget on a mixed workload: ddbstreams' square-root budget vs KCL's fixed schedule.

A stream of many open shards (by default 1,000), few of them busy (10, at 10 writes/s each)
and the rest quiet (one write a minute each), arrivals Poisson with a fixed seed, served
over HTTP by the stream simulator. Two readers follow it, one after the other, on the same
workload (same seed, a fresh stream each time):

- **KCL schedule**: a poller written here that follows the DynamoDB Streams Kinesis
  Adapter's defaults for every shard, as bench/latency.py does for one: the next GetRecords
  starts 1 s after the previous one returned, 2 s if it returned no records. It runs first:
  what it spends (GetRecords calls per second, measured) is the budget of the next run.
- **ddbstreams**: ``StreamReader(follow=True, start=LATEST)`` with
  ``ReaderOptions(poll_budget=<KCL's measured calls/s>)``: the same number of calls,
  shared out by the square-root rule (see ``reading/_schedule.py``).

Both use the same ``StreamsClient`` over the same kind of endpoint. The simulator and the
writer run in a separate process, so that ``getrusage(RUSAGE_SELF)`` in this process is
the reader's CPU alone. Writes start once every shard has been polled once (every LATEST
iterator is taken); the first ``--warmup`` seconds of writes let the reader learn the
arrival rates and are not measured; the next ``--duration`` seconds are.

Measured, over that window:

- GetRecords calls per second, from the simulator's counters (busy and quiet shards apart);
- write-to-delivery latency, p50 and p99, for busy and quiet shards apart: from just before
  the simulator's ``put_item`` is called (in the server process) to the moment the record
  reaches the caller's loop (in this process), both ``time.time()`` on this host;
- the reader process's CPU: user + system seconds per wall-clock second.

Checked before the table is printed: each reader delivered every write exactly once, in
write order per item (exit status 1 otherwise). Run: ``.venv/bin/python bench/budget.py``
(``--quick`` for a short try).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import multiprocessing
import pstats
import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from _common import (
    KCL_EMPTY_READ_FACTOR,
    KCL_IDLE_BETWEEN_READS,
    cpu_seconds,
    follow_on_kcl_schedule,
    pct,
    report,
)

from ddbstreams import (
    LATEST,
    DefaultParser,
    ReaderOptions,
    Record,
    RecordsPage,
    ShardStart,
    StreamReader,
    StreamsClient,
    SystemClock,
)

# The DynamoDB Streams Kinesis Adapter's defaults (see bench/_common.py for the sources):
# idleTimeBetweenReadsInMillis = 1000, twice that after a GetRecords with no records, each
# counted from when the previous call returned.

BUSY_RATE = 10.0  # writes per second on a busy shard
QUIET_RATE = 1.0 / 60.0  # writes per second on a quiet shard
READY_TIMEOUT = 180.0  # seconds for the reader to poll every shard once
DRAIN_TIMEOUT = 60.0  # seconds after the last write before a missing record is an error

# Goals of the poll budget (issue 10) on this workload.
GOAL_BUSY_P50 = 0.100  # seconds
GOAL_QUIET_P50_RATIO = 1.3  # at most this times KCL's
GOAL_CPU = 0.5  # cores


@dataclass(frozen=True)
class Workload:
    shards: int
    busy: int
    warmup: float
    duration: float
    seed: int


# ---------------------------------------------------------------------- server process


@dataclass
class Window:
    """What the server process saw between the start and the end of the measured window."""

    started: float = 0.0  # time.time()
    ended: float = 0.0
    busy_calls: int = 0  # GetRecords on busy shards
    quiet_calls: int = 0
    other_calls: Counter[str] = field(default_factory=Counter)  # other operations
    server_cpu: float = 0.0  # seconds of the server process (server and writer threads)


@dataclass
class Written:
    """The server process's account of one run's writes."""

    writes: list[tuple[str, str, float, float]]  # (pk, sequence number, put at, scheduled)
    window: Window
    late: float  # worst delay of a write behind its schedule, seconds


def keys_per_shard(sim: Any, shard_ids: list[str]) -> list[str]:
    """One partition key routed to each shard (in ``shard_ids`` order)."""
    wanted = {shard_id: i for i, shard_id in enumerate(shard_ids)}
    keys: list[str | None] = [None] * len(shard_ids)
    missing = len(shard_ids)
    candidate = 0
    while missing:
        key = f"item-{candidate}"
        candidate += 1
        i = wanted[sim.shard_for({"pk": key})]
        if keys[i] is None:
            keys[i] = key
            missing -= 1
    return [k for k in keys if k is not None]


def arrivals(workload: Workload, busy: set[int]) -> list[tuple[float, int]]:
    """(seconds from the start, shard index) of every write: Poisson per shard, seeded."""
    rng = random.Random(workload.seed)
    end = workload.warmup + workload.duration
    events = []
    for i in range(workload.shards):
        rate = BUSY_RATE if i in busy else QUIET_RATE
        t = rng.expovariate(rate)
        while t < end:
            events.append((t, i))
            t += rng.expovariate(rate)
    events.sort()
    return events


def snapshot(sim: Any) -> tuple[dict[str, int], Counter[str]]:
    """The simulator's counters (copied while the server thread may add to them)."""
    while True:
        with contextlib.suppress(RuntimeError):  # "dictionary changed size during iteration"
            return dict(sim.get_records_calls), Counter(sim.calls)


def write_all(
    sim: Any,
    keys: list[str],
    busy_ids: set[str],
    schedule: list[tuple[float, int]],
    workload: Workload,
    t0: float,
    out: list[Written],
) -> None:
    """Put every scheduled write at its time (``t0`` + offset); note the window's counters."""
    marks = [(workload.warmup, -1), (workload.warmup + workload.duration, -2)]
    counts = [0] * len(keys)
    writes = []
    window = Window()
    before: tuple[dict[str, int], Counter[str]] = ({}, Counter())
    cpu_before = 0.0
    late = 0.0
    for offset, i in sorted(schedule + marks):
        due = t0 + offset
        delay = due - time.time()
        if delay > 0:
            time.sleep(delay)
        if i == -1:
            window.started, before, cpu_before = time.time(), snapshot(sim), cpu_seconds()
            continue
        if i == -2:
            window.ended, (calls, other), cpu = time.time(), snapshot(sim), cpu_seconds()
            for shard_id, n in calls.items():
                delta = n - before[0].get(shard_id, 0)
                if shard_id in busy_ids:
                    window.busy_calls += delta
                else:
                    window.quiet_calls += delta
            window.other_calls = other - before[1]
            del window.other_calls["GetRecords"]
            window.server_cpu = cpu - cpu_before
            continue
        put_at = time.time()
        late = max(late, put_at - due)
        change = sim.put_item({"pk": keys[i], "n": counts[i]})
        counts[i] += 1
        writes.append((keys[i], change.sequence_number, put_at, offset))
    out.append(Written(writes, window, late))


def serve_stream(conn: Connection, workload: Workload) -> None:
    """The server process: a simulator over HTTP, and its writer, driven through ``conn``."""
    from ddbstreams.testing import SimulatorServer, StreamSimulator

    sim = StreamSimulator(partitions=workload.shards, seed=workload.seed, clock=SystemClock())
    shard_ids = sim.open_shard_ids()
    keys = keys_per_shard(sim, shard_ids)
    busy = set(random.Random(workload.seed).sample(range(workload.shards), workload.busy))
    busy_ids = {shard_ids[i] for i in busy}
    schedule = arrivals(workload, busy)
    out: list[Written] = []
    writer: threading.Thread | None = None
    with SimulatorServer(sim) as server:
        conn.send((server.endpoint_url, sim.stream_arn, {keys[i] for i in busy}))
        while True:
            command, *args = conn.recv()
            if command == "polled":  # how many shards have had a GetRecords
                conn.send(len(snapshot(sim)[0]))
            elif command == "write":  # start writing at t0 (epoch seconds)
                writer = threading.Thread(
                    target=write_all,
                    args=(sim, keys, busy_ids, schedule, workload, args[0], out),
                    daemon=True,
                )
                writer.start()
                conn.send(None)
            elif command == "written":  # wait for the last write; return the account
                if writer is not None:
                    writer.join()
                conn.send(out[0] if out else None)
            else:  # "stop"
                break


# ---------------------------------------------------------------------- reader process

Delivery = tuple[str, str, float]  # (pk, sequence number, time.time() when handed over)


async def follow_ddbstreams(
    stream_arn: str, client: StreamsClient, budget: float, out: list[Delivery]
) -> None:
    """A follow-mode StreamReader from LATEST with the given poll budget, until cancelled."""
    options = ReaderOptions(poll_budget=budget)
    async with StreamReader(
        stream_arn, client=client, follow=True, start=LATEST, options=options
    ) as reader:
        async for record in reader:
            out.append((record.keys["pk"], record.sequence_number, time.time()))


async def follow_kcl_model(
    stream_arn: str, client: StreamsClient, seed: int, out: list[Delivery]
) -> None:
    """Poll every open shard on the KCL/adapter default schedule, until cancelled.

    Each shard's loop starts at a random moment of the first 2 s (KCL's shard consumers
    do not start in step either), so that the pollers do not all call at once.
    """
    description = await client.describe_stream(stream_arn)
    shard_ids = [s.shard_id for s in description.shards if s.is_open]
    parser = DefaultParser()
    rng = random.Random(seed)
    acquiring = asyncio.Semaphore(8)

    async def poll(shard_id: str, phase: float) -> None:
        async with acquiring:
            iterator: str | None = await client.get_shard_iterator(
                stream_arn, shard_id, ShardStart("LATEST")
            )
        await asyncio.sleep(phase)

        def deliver(page: RecordsPage[Record]) -> None:
            now = time.time()
            out.extend((r.keys["pk"], r.sequence_number, now) for r in page.records)

        await follow_on_kcl_schedule(client, shard_id, iterator, parser, deliver)

    async with asyncio.TaskGroup() as group:
        for shard_id in shard_ids:
            group.create_task(poll(shard_id, rng.uniform(0.0, KCL_EMPTY_READ_FACTOR)))


@dataclass
class Result:
    name: str
    calls: float  # GetRecords per second, all shards
    busy_calls: float  # per second, on the busy shards together
    quiet_calls: float
    busy: list[float]  # latencies of the measured writes, seconds
    quiet: list[float]
    cpu: float  # reader process, cores
    server_cpu: float  # server process, cores
    other_calls: Counter[str]
    late: float
    window: float  # seconds


def ask(conn: Connection, *message: Any) -> Any:
    conn.send(message)
    return conn.recv()


async def sleep_until(wall: float) -> None:
    await asyncio.sleep(max(0.0, wall - time.time()))


def check(name: str, writes: list[tuple[str, str, float, float]], got: list[Delivery]) -> list[str]:
    """Problems with a reader's deliveries: missing, repeated, unexpected, out of order."""
    written = {seq for _, seq, _, _ in writes}
    seen = Counter(seq for _, seq, _ in got)
    problems = []
    twice = sum(1 for n in seen.values() if n > 1)
    if twice:
        problems.append(f"{name}: {twice} records delivered more than once")
    missing = len(written - seen.keys())
    if missing:
        problems.append(f"{name}: {missing} of {len(written)} writes never delivered")
    unexpected = len(seen.keys() - written)
    if unexpected:
        problems.append(f"{name}: {unexpected} records delivered that were not written")
    by_item_written: dict[str, list[str]] = {}
    for pk, seq, _, _ in writes:
        by_item_written.setdefault(pk, []).append(seq)
    by_item_got: dict[str, list[str]] = {}
    for pk, seq, _ in got:
        by_item_got.setdefault(pk, []).append(seq)
    if not problems:
        disordered = sum(1 for pk, seqs in by_item_written.items() if by_item_got.get(pk) != seqs)
        if disordered:
            problems.append(f"{name}: {disordered} items' changes delivered out of write order")
    return problems


async def run_one(
    name: str, workload: Workload, budget: float | None, profile: cProfile.Profile | None
) -> tuple[Result | None, list[str]]:
    """One reader on a fresh stream in a fresh server process."""
    context = multiprocessing.get_context("spawn")
    conn, child_conn = context.Pipe()
    server = context.Process(target=serve_stream, args=(child_conn, workload), daemon=True)
    server.start()
    client: StreamsClient | None = None
    task: asyncio.Task[None] | None = None
    try:
        endpoint_url, stream_arn, busy_keys = await asyncio.to_thread(conn.recv)
        client = StreamsClient(
            endpoint_url=endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="x",
            aws_secret_access_key="x",
        )
        got: list[Delivery] = []
        if budget is None:
            task = asyncio.create_task(follow_kcl_model(stream_arn, client, workload.seed, got))
        else:
            task = asyncio.create_task(follow_ddbstreams(stream_arn, client, budget, got))

        # Every shard polled once: every LATEST iterator is taken.
        print(f"{name}: waiting until all {workload.shards} shards were polled ...", flush=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while await asyncio.to_thread(ask, conn, "polled") < workload.shards:
            if task.done():
                task.result()  # a reader that died says why
            if time.monotonic() > deadline:
                return None, [f"{name}: not every shard was polled within {READY_TIMEOUT:g} s"]
            await asyncio.sleep(0.5)

        t0 = time.time() + 0.5
        await asyncio.to_thread(ask, conn, "write", t0)
        print(
            f"{name}: writing for {workload.warmup + workload.duration:g} s "
            f"(measuring the last {workload.duration:g} s) ...",
            flush=True,
        )
        await sleep_until(t0 + workload.warmup)
        cpu_start, wall_start = cpu_seconds(), time.time()
        if profile is not None:
            profile.enable()
        await sleep_until(t0 + workload.warmup + workload.duration)
        if profile is not None:
            profile.disable()
        cpu_end, wall_end = cpu_seconds(), time.time()
        written: Written = await asyncio.to_thread(ask, conn, "written")

        # Every write delivered (or the time is up: check() says what is missing).
        deadline = time.monotonic() + DRAIN_TIMEOUT
        while len(got) < len(written.writes) and time.monotonic() < deadline:
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        await asyncio.sleep(0.5)  # anything delivered twice shows up too
        if task.done():
            task.result()
    finally:
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        if client is not None:
            await client.close()
        with contextlib.suppress(OSError):
            conn.send(("stop",))
        await asyncio.to_thread(server.join, 10.0)
        if server.is_alive():
            server.kill()

    problems = check(name, written.writes, got)
    if problems:
        return None, problems
    delivered = {seq: at for _, seq, at in got}
    busy: list[float] = []
    quiet: list[float] = []
    for pk, seq, put_at, offset in written.writes:
        if workload.warmup <= offset < workload.warmup + workload.duration:
            (busy if pk in busy_keys else quiet).append(delivered[seq] - put_at)
    window = written.window
    span = window.ended - window.started
    return (
        Result(
            name=name,
            calls=(window.busy_calls + window.quiet_calls) / span,
            busy_calls=window.busy_calls / span,
            quiet_calls=window.quiet_calls / span,
            busy=busy,
            quiet=quiet,
            cpu=(cpu_end - cpu_start) / (wall_end - wall_start),
            server_cpu=window.server_cpu / span,
            other_calls=window.other_calls,
            late=written.late,
            window=span,
        ),
        [],
    )


def print_table(workload: Workload, kcl: Result, ours: list[Result], budget: float) -> None:
    quiet = workload.shards - workload.busy
    print(
        f"\n{workload.shards} shards over HTTP (stream simulator in its own process): "
        f"{workload.busy} busy at {BUSY_RATE:g} writes/s, {quiet} quiet at 1 write/min; "
        f"Poisson arrivals, seed {workload.seed}"
    )
    print(
        f"measured: {workload.duration:g} s after {workload.warmup:g} s of writes as warm-up; "
        f"{len(kcl.busy)} busy and {len(kcl.quiet)} quiet writes"
    )
    print("latency: put_item called -> record in the caller's loop (host clock), ms")
    head = (
        f"{'reader':<30}{'calls/s':>9}{'busy':>7}{'quiet':>7}"
        f"{'busy p50':>10}{'p99':>7}{'quiet p50':>11}{'p99':>7}{'CPU':>7}"
    )
    print(head)
    rows = [kcl, *ours]
    for r in rows:
        print(
            f"{r.name:<30}{r.calls:>9.1f}{r.busy_calls:>7.1f}{r.quiet_calls:>7.1f}"
            f"{pct(r.busy, 50) * 1e3:>10.0f}{pct(r.busy, 99) * 1e3:>7.0f}"
            f"{pct(r.quiet, 50) * 1e3:>11.0f}{pct(r.quiet, 99) * 1e3:>7.0f}{r.cpu:>7.2f}"
        )
    for r in ours:
        label = f"{r.name} / KCL"
        print(
            f"{label:<30}{r.calls / kcl.calls:>8.2f}x{r.busy_calls / kcl.busy_calls:>6.2f}x"
            f"{r.quiet_calls / kcl.quiet_calls:>6.2f}x"
            f"{pct(r.busy, 50) / pct(kcl.busy, 50):>9.2f}x"
            f"{pct(r.busy, 99) / pct(kcl.busy, 99):>6.2f}x"
            f"{pct(r.quiet, 50) / pct(kcl.quiet, 50):>10.2f}x"
            f"{pct(r.quiet, 99) / pct(kcl.quiet, 99):>6.2f}x{r.cpu / kcl.cpu:>6.2f}x"
        )
    print(
        "calls/s: GetRecords per second (all shards, then the busy and the quiet ones "
        "together); CPU: the reader process's user+sys seconds per second"
    )
    for r in rows:
        other = ", ".join(f"{op} {n}" for op, n in sorted(r.other_calls.items())) or "none"
        print(
            f"  {r.name}: server process CPU {r.server_cpu:.2f}; other calls in the window: "
            f"{other}; writes at most {r.late * 1e3:.0f} ms behind schedule"
        )
    print(
        f"KCL schedule: next GetRecords {KCL_IDLE_BETWEEN_READS:g} s after the last one "
        f"returned, {KCL_IDLE_BETWEEN_READS * KCL_EMPTY_READ_FACTOR:g} s after an empty one; "
        f"ddbstreams: ReaderOptions(poll_budget={budget:.1f})"
    )
    print("\ngoals (issue 10):")
    kcl_quiet = pct(kcl.quiet, 50)
    for r in ours:
        goals = [
            (f"calls/s {r.calls:.1f} <= KCL's {kcl.calls:.1f}", r.calls <= kcl.calls),
            (
                f"busy p50 {pct(r.busy, 50) * 1e3:.0f} ms <= {GOAL_BUSY_P50 * 1e3:.0f} ms "
                f"(KCL {pct(kcl.busy, 50) * 1e3:.0f} ms)",
                pct(r.busy, 50) <= GOAL_BUSY_P50,
            ),
            (
                f"quiet p50 {pct(r.quiet, 50) * 1e3:.0f} ms <= {GOAL_QUIET_P50_RATIO:g} x "
                f"KCL's {kcl_quiet * 1e3:.0f} ms",
                pct(r.quiet, 50) <= GOAL_QUIET_P50_RATIO * kcl_quiet,
            ),
            (f"reader CPU {r.cpu:.2f} <= {GOAL_CPU:g} core", r.cpu <= GOAL_CPU),
        ]
        for text, met in goals:
            print(f"  {r.name}: {'met' if met else 'NOT met'}: {text}")


async def run(args: argparse.Namespace) -> int:
    workload = Workload(args.shards, args.busy, args.warmup, args.duration, args.seed)
    problems: list[str] = []
    kcl: Result | None = None
    budget = args.budget
    if budget is None:
        kcl, problems = await run_one("KCL schedule", workload, None, None)
        if kcl is None:
            return report(problems)
        budget = kcl.calls
        print(
            f"KCL schedule spent {budget:.1f} GetRecords/s: that is ddbstreams' budget", flush=True
        )
    profile = cProfile.Profile() if args.profile else None
    ours: list[Result] = []
    for n in range(args.runs):
        name = "ddbstreams" if args.runs == 1 else f"ddbstreams, run {n + 1}"
        result, problems = await run_one(name, workload, budget, profile)
        if result is None:
            return report(problems)
        ours.append(result)
    if kcl is None:  # --budget without the KCL run: print ours alone
        kcl, problems = await run_one("KCL schedule", workload, None, None)
        if kcl is None:
            return report(problems)
    print_table(workload, kcl, ours, budget)
    if profile is not None:
        text = io.StringIO()
        stats = pstats.Stats(profile, stream=text)
        stats.sort_stats("tottime").print_stats(args.profile)
        stats.sort_stats("cumulative").print_stats(args.profile)
        print("\ncProfile of the ddbstreams reader process over the measured window(s):")
        print(text.getvalue())
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", type=int, default=1000, help="open shards (default 1000)")
    parser.add_argument(
        "--busy", type=int, default=10, help=f"busy shards, {BUSY_RATE:g} writes/s each"
    )
    parser.add_argument(
        "--duration", type=float, default=60.0, help="seconds measured (default 60)"
    )
    parser.add_argument(
        "--warmup", type=float, default=30.0, help="seconds of writes before (default 30)"
    )
    parser.add_argument("--seed", type=int, default=20240601, help="seed of the arrivals")
    parser.add_argument(
        "--quick", action="store_true", help="200 shards, 10 s warm-up, 30 s measured"
    )
    parser.add_argument(
        "--runs", type=int, default=1, help="ddbstreams runs after the KCL one (default 1)"
    )
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        help="ddbstreams' poll_budget; then KCL runs last (default: what KCL, run first, spent)",
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="N",
        help="cProfile the ddbstreams reader over the window; print the top N entries",
    )
    args = parser.parse_args()
    if args.quick:
        args.shards, args.warmup, args.duration = 200, 10.0, 30.0
    if not 1 <= args.busy < args.shards:
        parser.error("need 1 <= --busy < --shards")
    if args.duration <= 0 or args.warmup < 0 or args.runs < 1:
        parser.error("--duration must be positive, --warmup not negative, --runs at least 1")
    return asyncio.run(run(args))


if __name__ == "__main__":
    sys.exit(main())
