"""Worker groups with the default GroupOptions, measured against a model of the KCL's defaults.

Worker processes (``python -m tests.support.group_worker``: one ``Consumer(stream, handler,
group=APP)`` each, with the library's default ``GroupOptions``: failover 10 s, a heartbeat
every failover / 3, the workers table read every 1 s, the lease table every 10 s, discovery
every 60 s) share a stream served over HTTP by the simulator (``SimulatorServer``); their
lease and workers tables are in DynamoDB Local (the server forwards every DynamoDB request
it does not answer there, and counts them per operation and table). A writer thread puts
one change on every open shard every 0.2 s (every 1 s in the cost scenario). Each worker
logs what it does as JSON lines with wall-clock times (``rec`` when its handler starts a
batch, ``cp``, ``taken``, ``released``, ``lost``, ``created``, and on SIGUSR1 ``calls``: its
client's calls per operation); every figure comes from those logs, the server's counters of
forwarded requests and the simulator's call counters. Scenarios, each on a fresh stream
and group:

1. **Planned stop**: 2 workers on 16 shards; SIGTERM one (it finishes its batches,
   checkpoints and releases its leases). Per shard: from its ``released`` to the other
   worker's ``taken``, and to the first record the new owner's handler starts.
2. **Crash**: 2 workers on 16 shards; SIGKILL one (``--crashes`` times, the second time
   the group's leader). Per lost shard: from the kill to the survivor's ``taken``, and to
   its first record.
3. **Balance**: 32 shards, 1 worker, then 3 more: the time from launching them until every
   worker holds ceil(32/4) +- 1 leases; then ownership changes during ``--watch`` seconds
   (120); then scale in 4 -> 1, one SIGTERM after another, gaps as in 1.
4. **Cost**: 100 shards, 4 workers, once balanced: DynamoDB requests on the lease and
   workers tables during ``--window`` seconds (60), per minute: coordination writes
   (heartbeat PutItems; lease takes and releases, as logged; lease creations and
   deletions), reads (Scans of either table, GetItems) and checkpoint writes (the
   lease-table UpdateItems that are neither a take nor a release; the ``cp`` events logged
   in the window are printed beside them as a cross-check); read units estimated from the
   items' sizes (DynamoDB's item-size rules: a consistent Scan page costs 1 RRU per 4 KB of
   items read, rounded up); a month at on-demand prices.
5. **Discovery**: DescribeStream calls per worker during the cost window (only the leader
   lists the stream); then every shard rolls over: per worker, DescribeStream calls
   against the shards it ended (one filtered call per ended shard), the peak calls per
   second (a stream allows 10), and every child lease created exactly once (``created``).

The KCL side is a model of KCL 2.x with its defaults (failover 10 s, epsilon 25 ms:
``DynamoDBLeaseCoordinator`` renews every ``failover/3 - epsilon`` = 3.308 s and takes every
``(failover + epsilon) * 2`` = 20.05 s; ``DynamoDBLeaseTaker`` treats a lease as expired once
two of its scans saw the same counter more than the failover time apart and steals at most
one lease per take; ``DynamoDBLeaseRefresher.listLeases`` scans without ``ConsistentRead``).
DESIGN.md, "Worker groups". So: a lease of a stopped or crashed worker (KCL 2.x does not
release on shutdown) is taken at the second take after its last renewal: 20.05-40.1 s
later, p50 30.1 s (the stop falls anywhere in the take interval); a new worker steals
ceil(32/4) = 8 leases, one per take: ~160 s; 100 leases renewed every 3.308 s are 1,814
writes a minute, and each worker scans the lease table every 20.05 s. KCL 1.x (adapter 1.x)
lists the whole stream in the worker that ended a shard, for each ended shard
(``ShutdownTask`` -> ``ShardSyncer.checkAndCreateLeasesForNewShards``). The model is
generous to KCL: no JVM, no time for a new owner to start reading.

Prices assumed (DynamoDB on-demand, us-east-1): $0.625 per million write request units,
$0.125 per million read request units; a month is 30 days. Coordination items are under
1 KB, so each write is one WRU.

Checked (exit status 1, before the table): every scenario reaches the state it waits for
within its time limit and every record written is handled at least once. A goal not met
is printed as ``NOT met``, not an error. About 5 minutes on 2 cores; ``--quick`` (one
crash, 15 s watch, 20 s window) about 2. Run: ``.venv/bin/python bench/workers.py``.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from _common import pct, report

from ddbstreams import GroupOptions
from ddbstreams.local import DYNAMODB_LOCAL_VERSION, DynamoDBLocal
from ddbstreams.testing import SimulatorServer, StreamSimulator

ROOT = Path(__file__).resolve().parents[1]
OPTIONS = GroupOptions()  # the library's defaults: what this benchmark measures
FAILOVER = OPTIONS.failover_time

# KCL 2.x defaults (see the module docstring).
KCL_EPSILON = 0.025
KCL_RENEW_EVERY = FAILOVER / 3 - KCL_EPSILON
KCL_TAKE_EVERY = (FAILOVER + KCL_EPSILON) * 2
KCL_GAP_MIN, KCL_GAP_P50, KCL_GAP_MAX = KCL_TAKE_EVERY, 1.5 * KCL_TAKE_EVERY, 2 * KCL_TAKE_EVERY
KCL_DESCRIBE_PAGE = 100  # DescribeStream returns at most 100 shards a call

WRU_PRICE = 0.625 / 1e6
RRU_PRICE = 0.125 / 1e6
MINUTES_PER_MONTH = 30 * 24 * 60

RESUME_GOAL = 2.0
CRASH_GOAL = 20.0
BALANCE_GOAL = 60.0
COST_GOAL = 0.2
DESCRIBE_LIMIT = 10.0


class BenchError(Exception):
    """A scenario did not reach the state it waits for: something is wrong, not slow."""


# -- the workers' logs ---------------------------------------------------------------------


class Logs:
    """The workers' JSON-lines logs in ``folder``, read incrementally: each poll reads what
    was appended since the last one, keeps every event and the current owner of each
    shard (from ``taken``/``released``/``lost``)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.events: list[dict[str, Any]] = []
        self.owner: dict[str, str] = {}
        self.calls: dict[str, dict[str, Any]] = {}  # worker -> its last "calls" event
        self._offsets: dict[Path, int] = {}

    def poll(self) -> None:
        new: list[dict[str, Any]] = []
        for path in sorted(self.folder.glob("*.jsonl")):
            offset = self._offsets.get(path, 0)
            with path.open("rb") as file:
                file.seek(offset)
                data = file.read()
            end = data.rfind(b"\n") + 1
            self._offsets[path] = offset + end
            new.extend(orjson.loads(line) for line in data[:end].splitlines() if line)
        new.sort(key=lambda e: e["t"])
        for event in new:
            apply_ownership(self.owner, event)
            if event["ev"] == "calls":
                self.calls[event["w"]] = event
        self.events.extend(new)

    def sorted_events(self, since: float = 0.0) -> list[dict[str, Any]]:
        return sorted((e for e in self.events if e["t"] >= since), key=lambda e: e["t"])

    def counts(self) -> dict[str, int]:
        return dict(Counter(self.owner.values()))


def apply_ownership(owner: dict[str, str], event: dict[str, Any]) -> None:
    if event["ev"] == "taken":
        owner[event["shard"]] = event["w"]
    elif event["ev"] in ("released", "lost") and owner.get(event["shard"]) == event["w"]:
        del owner[event["shard"]]


def first_moment(
    events: list[dict[str, Any]], since: float, holds: Callable[[dict[str, str]], bool]
) -> float | None:
    """The wall-clock time of the first lease event at or after ``since`` after which
    ``holds(owner of each shard)`` is true (``events`` sorted by time)."""
    owner: dict[str, str] = {}
    for event in events:
        apply_ownership(owner, event)
        if event["t"] >= since and event["ev"] in ("taken", "released", "lost") and holds(owner):
            return float(event["t"])
    return None


# -- a group of worker processes -----------------------------------------------------------


@dataclass
class Group:
    """Worker processes of one group on one simulated stream, and what they logged."""

    server: SimulatorServer
    sim: StreamSimulator
    name: str
    folder: Path
    logs: Logs
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    ended: set[str] = field(default_factory=set)  # stopped or killed on purpose

    def start(self, *worker_ids: str) -> float:
        """Launch workers with the default group options; the wall-clock launch time."""
        launched = time.time()
        for worker_id in worker_ids:
            command = [
                sys.executable,
                "-m",
                "tests.support.group_worker",
                *("--endpoint-url", self.server.endpoint_url),
                *("--stream", self.sim.stream_arn, "--group", self.name),
                *("--worker-id", worker_id, "--log", str(self.folder / f"{worker_id}.jsonl")),
                *("--failover-time", str(OPTIONS.failover_time)),
                *("--membership-interval", str(OPTIONS.membership_interval)),
                *("--lease-scan-interval", str(OPTIONS.lease_scan_interval)),
                *("--batch-size", "100"),
            ]
            with (self.folder / f"{worker_id}.stderr").open("wb") as errors:
                self.processes[worker_id] = subprocess.Popen(
                    command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=errors
                )
        return launched

    def live(self) -> list[str]:
        return [w for w in self.processes if w not in self.ended]

    def wait(self, condition: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll the logs until ``condition()``; the seconds it took (BenchError after
        ``timeout``, or when a worker died on its own)."""
        start = time.monotonic()
        while True:
            self.logs.poll()
            if condition():
                return time.monotonic() - start
            for worker_id in self.live():
                if self.processes[worker_id].poll() is not None:
                    raise BenchError(f"{worker_id} exited: {self.stderr(worker_id)}")
            if time.monotonic() - start > timeout:
                raise BenchError(f"{what}: not within {timeout:g} s (owners: {self.logs.counts()})")
            time.sleep(0.1)

    def terminate(self, worker_id: str, timeout: float = 60.0) -> None:
        """SIGTERM (graceful stop: release) and wait for the process to exit."""
        process = self.processes[worker_id]
        self.ended.add(worker_id)
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise BenchError(f"{worker_id} did not stop within {timeout:g} s") from None
        if process.returncode != 0:
            raise BenchError(
                f"{worker_id} exited with {process.returncode}: {self.stderr(worker_id)}"
            )

    def kill(self, worker_id: str) -> None:
        self.ended.add(worker_id)
        self.processes[worker_id].kill()
        self.processes[worker_id].wait(10)

    def calls(self) -> dict[str, dict[str, int]]:
        """Each live worker's client calls so far, per operation (asked with SIGUSR1)."""
        asked = time.time()
        live = self.live()
        for worker_id in live:
            self.processes[worker_id].send_signal(signal.SIGUSR1)

        def answered() -> bool:
            return all(self.logs.calls.get(w, {}).get("t", 0.0) >= asked for w in live)

        self.wait(answered, 15, "workers report their calls")
        return {w: dict(self.logs.calls[w]["ops"]) for w in live}

    def stderr(self, worker_id: str) -> str:
        return (self.folder / f"{worker_id}.stderr").read_text()[-2000:]

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(10)


@contextlib.contextmanager
def group_on(engine: DynamoDBLocal, shards: int, label: str) -> Iterator[Group]:
    """A fresh stream of ``shards`` shards served with tables in ``engine``, a fresh group."""
    sim = StreamSimulator(partitions=shards, seed=11, retention=None)
    with (
        tempfile.TemporaryDirectory(prefix=f"ddbstreams-bench-{label}-") as folder,
        SimulatorServer(sim, tables_endpoint=engine.endpoint_url) as server,
    ):
        name = f"bench-{label}-{int(time.time() * 1000) % 10**8}"
        group = Group(server, sim, name, Path(folder), Logs(Path(folder)))
        try:
            yield group
        finally:
            group.close()


class Writer:
    """Puts one change on every open shard every ``every`` seconds, in a thread."""

    def __init__(self, sim: StreamSimulator, every: float) -> None:
        self.sim = sim
        self.every = every
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self._keys: dict[str, str] = {}

    def keys(self) -> list[str]:
        """One partition key landing on each open shard (found again after a rollover)."""
        open_ids = set(self.sim.open_shard_ids())
        if set(self._keys) != open_ids:
            self._keys, n = {}, 0
            while len(self._keys) < len(open_ids):
                key = f"item-{n}"
                self._keys.setdefault(self.sim.shard_for({"pk": key}), key)
                n += 1
        return list(self._keys.values())

    def run(self) -> None:
        n = 0
        while not self.stopped.is_set():
            for key in self.keys():
                self.sim.put_item({"pk": key, "n": n})
            n += 1
            self.stopped.wait(self.every)

    def __enter__(self) -> Writer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.thread.join()


def all_handled(group: Group) -> Callable[[], bool]:
    def check() -> bool:
        handled = {e["seq"] for e in group.logs.events if e["ev"] == "rec"}
        return all(change.sequence_number in handled for change in group.sim.history)

    return check


def balanced(group: Group, workers: int, shards: int, spread: int = 0) -> Callable[[], bool]:
    """Every one of ``workers`` workers holds ceil(shards / workers) +- ``spread`` leases
    and every shard is held."""
    target = math.ceil(shards / workers)

    def check() -> bool:
        counts = group.logs.counts()
        return (
            len(counts) == workers
            and sum(counts.values()) == shards
            and all(abs(count - target) <= spread for count in counts.values())
        )

    return check


# -- hand-offs -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Resumed:
    """One shard resuming at another worker: seconds from ``origin`` (release or kill) to
    the new owner's ``taken`` and to the first record its handler started."""

    shard: str
    taken: float
    first_record: float


def resumed_after(
    events: list[dict[str, Any]], shard: str, origin: float, *, not_by: str
) -> Resumed | None:
    """When ``shard`` was taken after ``origin`` by a worker other than ``not_by``, and
    when that worker first handled one of its records; None if not (yet)."""
    taken = next(
        (
            e
            for e in events
            if e["ev"] == "taken" and e["shard"] == shard and e["t"] >= origin and e["w"] != not_by
        ),
        None,
    )
    if taken is None:
        return None
    record = next(
        (
            e
            for e in events
            if e["ev"] == "rec"
            and e["shard"] == shard
            and e["w"] == taken["w"]
            and e["t"] >= taken["t"]
        ),
        None,
    )
    if record is None:
        return None
    return Resumed(shard, taken["t"] - origin, record["t"] - origin)


def stop_and_measure(group: Group, worker_id: str) -> list[Resumed]:
    """SIGTERM ``worker_id``; per shard it released: how soon another worker resumed it."""
    since = time.time()
    group.terminate(worker_id)
    group.logs.poll()
    released = {
        e["shard"]: e["t"]
        for e in group.logs.events
        if e["ev"] == "released" and e["w"] == worker_id and e["t"] >= since
    }
    if not released:
        raise BenchError(f"{worker_id} released no lease when stopped")

    def resumed() -> list[Resumed | None]:
        events = group.logs.sorted_events(since)
        return [resumed_after(events, s, t, not_by=worker_id) for s, t in released.items()]

    group.wait(lambda: all(resumed()), 60, f"the shards {worker_id} released resumed")
    return [r for r in resumed() if r is not None]


# -- the scenarios -------------------------------------------------------------------------


def planned_stop(engine: DynamoDBLocal) -> dict[str, Any]:
    with group_on(engine, 16, "stop") as group, Writer(group.sim, 0.2):
        group.start("w1", "w2")
        group.wait(balanced(group, 2, 16), 90, "2 workers share 16 shards")
        time.sleep(3.0)
        gaps = stop_and_measure(group, "w1")
        group.wait(all_handled(group), 60, "every record handled")
    return {"resumed": gaps}


def crashes(engine: DynamoDBLocal, rounds: int) -> dict[str, Any]:
    """Kill one of two workers ``rounds`` times: first a follower, then the leader."""
    results: list[Resumed] = []
    with group_on(engine, 16, "crash") as group, Writer(group.sim, 0.2):
        group.start("w1", "w2")
        pairs = [("w2", "w1")] + [("w1", "w3")] * (rounds > 1)
        for victim, joiner in pairs:
            if joiner not in group.processes:
                group.start(joiner)
            group.wait(balanced(group, 2, 16), 90, "2 workers share 16 shards")
            time.sleep(3.0)
            lost = [s for s, w in group.logs.owner.items() if w == victim]
            killed_at = time.time()
            group.kill(victim)

            def resumed(
                victim: str = victim, killed_at: float = killed_at, lost: list[str] = lost
            ) -> list[Resumed | None]:
                events = group.logs.sorted_events(killed_at)
                return [resumed_after(events, s, killed_at, not_by=victim) for s in lost]

            group.wait(lambda: all(resumed()), 4 * FAILOVER + 30, f"{victim}'s shards resumed")
            results.extend(r for r in resumed() if r is not None)
        group.wait(all_handled(group), 60, "every record handled")
    return {"resumed": results, "kills": len(pairs)}


def balance(engine: DynamoDBLocal, watch: float) -> dict[str, Any]:
    shards, workers = 32, 4
    with group_on(engine, shards, "balance") as group, Writer(group.sim, 0.2):
        group.start("w1")
        group.wait(lambda: group.logs.counts().get("w1") == shards, 60, "w1 holds every lease")
        launched = group.start("w2", "w3", "w4")
        group.wait(balanced(group, workers, shards, spread=1), 180, "1 -> 4 within +-1")
        reached = first_moment(
            group.logs.sorted_events(),
            launched,
            lambda owner: within(owner, workers, shards, spread=1),
        )
        group.wait(balanced(group, workers, shards), 60, "1 -> 4 exactly")
        exact = first_moment(
            group.logs.sorted_events(), launched, lambda owner: within(owner, workers, shards)
        )
        watch_from = time.time()
        time.sleep(watch)
        group.logs.poll()
        changes = [
            e
            for e in group.logs.events
            if e["ev"] in ("taken", "released", "lost") and e["t"] >= watch_from
        ]
        settled = sorted(group.logs.counts().values())
        gaps: list[Resumed] = []
        for worker_id in ("w4", "w3", "w2"):
            gaps.extend(stop_and_measure(group, worker_id))
        group.wait(lambda: group.logs.counts().get("w1") == shards, 60, "w1 holds every lease")
        group.wait(all_handled(group), 60, "every record handled")
    return {
        "balanced": (reached or math.inf) - launched,
        "exact": (exact or math.inf) - launched,
        "settled": settled,
        "changes": len(changes),
        "scale_in": gaps,
    }


def within(owner: dict[str, str], workers: int, shards: int, spread: int = 0) -> bool:
    counts = Counter(owner.values())
    target = math.ceil(shards / workers)
    return (
        len(counts) == workers
        and sum(counts.values()) == shards
        and all(abs(c - target) <= spread for c in counts.values())
    )


def cost_and_discovery(engine: DynamoDBLocal, window: float) -> dict[str, Any]:
    shards, workers = 100, ("w1", "w2", "w3", "w4")
    with group_on(engine, shards, "cost") as group, Writer(group.sim, 1.0):
        launched = group.start(*workers)
        group.wait(balanced(group, len(workers), shards), 180, "4 workers share 100 shards")
        time.sleep(5.0)
        steady = measure_window(group, window)
        steady["since_launch"] = time.time() - launched
        steady["sizes"] = table_sizes(engine, group.name)
        steady["leader"] = min(group.live())
        rollover = roll_everything_over(group)
        group.wait(all_handled(group), 90, "every record handled")
    return {"steady": steady, "rollover": rollover}


def measure_window(group: Group, window: float) -> dict[str, Any]:
    """Requests by table and operation, and each worker's calls, during ``window`` s."""
    calls_before = group.calls()
    forwarded_before = group.server.forwarded_calls
    started = time.time()
    time.sleep(window)
    calls_after = group.calls()
    forwarded_after = group.server.forwarded_calls
    ended = time.time()
    forwarded = Counter(forwarded_after)
    forwarded.subtract(forwarded_before)
    in_window = [e for e in group.logs.events if started <= e["t"] < ended]
    return {
        "minutes": (ended - started) / 60,
        "forwarded": dict(forwarded),
        "calls": diff_calls(calls_before, calls_after),
        "calls_total": calls_after,
        "cp_events": sum(e["ev"] == "cp" for e in in_window),
        "lease_writes": sum(e["ev"] in ("taken", "released") for e in in_window),
        "lease_events": sum(e["ev"] in ("taken", "released", "lost") for e in in_window),
        "lease_table": group.name,
        "workers_table": f"{group.name}-ddbstreams-workers",
    }


def diff_calls(
    before: dict[str, dict[str, int]], after: dict[str, dict[str, int]]
) -> dict[str, dict[str, int]]:
    diff: dict[str, dict[str, int]] = {}
    for worker_id, ops in after.items():
        earlier = before.get(worker_id, {})
        diff[worker_id] = {op: n - earlier.get(op, 0) for op, n in ops.items()}
    return diff


def roll_everything_over(group: Group) -> dict[str, Any]:
    """Roll every shard over; wait until every child is held and handled. Counts the
    DescribeStream calls (per worker and the peak per second) and the leases created."""
    calls_before = group.calls()
    forwarded_before = group.server.forwarded_calls
    parents = set(group.sim.open_shard_ids())
    rolled_at = time.time()
    children = set(group.sim.roll_over())
    samples: list[tuple[float, int]] = []

    def done() -> bool:
        samples.append((time.monotonic(), group.sim.calls["DescribeStream"]))
        events = group.logs.events
        ended = {e["shard"] for e in events if e["ev"] == "cp" and e["pos"] == "SHARD_END"}
        handled = {e["shard"] for e in events if e["ev"] == "rec" and e["t"] >= rolled_at}
        return parents <= ended and children <= handled and children <= set(group.logs.owner)

    took = group.wait(done, 180, "every shard rolled over and its child handled")
    time.sleep(2.0)  # late DescribeStream calls (children asked for again) still count
    calls_after = group.calls()
    forwarded = Counter(group.server.forwarded_calls)
    forwarded.subtract(forwarded_before)
    events = [e for e in group.logs.events if e["t"] >= rolled_at]
    created = Counter(s for e in events if e["ev"] == "created" for s in e["shards"])
    ended_by = Counter(e["w"] for e in events if e["ev"] == "cp" and e["pos"] == "SHARD_END")
    return {
        "parents": len(parents),
        "children": len(children),
        "took": took,
        "created_once": sum(created[c] == 1 for c in children),
        "created_twice": sum(created[c] > 1 for c in children),
        "not_created": sum(created[c] == 0 for c in children),
        "create_attempts": forwarded[("PutItem", group.name)],
        "calls": diff_calls(calls_before, calls_after),
        "ended_by": dict(ended_by),
        "peak_describe": peak_rate(samples),
    }


def peak_rate(samples: list[tuple[float, int]]) -> int:
    """The most calls counted within any 1 s between samples (monotonic, cumulative)."""
    peak, first = 0, 0
    for last in range(len(samples)):
        while samples[last][0] - samples[first][0] > 1.0:
            first += 1
        peak = max(peak, samples[last][1] - samples[first][1])
    return peak


# -- item sizes and request units ----------------------------------------------------------


def number_size(text: str) -> int:
    """DynamoDB's size of a number: about one byte per two significant digits, plus one."""
    digits = str(Decimal(text).normalize()).lstrip("-").replace(".", "").lstrip("0") or "0"
    digits = digits.split("E")[0]
    return (len(digits) + 1) // 2 + 1


def value_size(value: dict[str, Any]) -> int:
    ((kind, content),) = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        return number_size(content)
    if kind == "B":
        return len(content)
    if kind == "SS":
        return sum(len(s.encode()) for s in content)
    if kind == "NS":
        return sum(number_size(n) for n in content)
    if kind == "BS":
        return sum(len(b) for b in content)
    if kind == "L":
        return 3 + sum(1 + value_size(v) for v in content)
    if kind == "M":
        return 3 + sum(len(k.encode()) + 1 + value_size(v) for k, v in content.items())
    return 1  # BOOL, NULL


def item_size(item: dict[str, Any], *, without: tuple[str, ...] = ()) -> int:
    return sum(len(k.encode()) + value_size(v) for k, v in item.items() if k not in without)


def table_sizes(engine: DynamoDBLocal, group: str) -> dict[str, list[int]]:
    """Item sizes of the group's lease table (ours, and without our one extra attribute:
    what the KCL's items weigh) and workers table, read straight from the engine."""
    client = engine.dynamodb_client()
    sizes: dict[str, list[int]] = {}
    for label, table in (("leases", group), ("workers", f"{group}-ddbstreams-workers")):
        items: list[dict[str, Any]] = []
        params: dict[str, Any] = {"TableName": table, "ConsistentRead": True}
        while True:
            page = client.scan(**params)
            items.extend(page["Items"])
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        sizes[label] = [item_size(item) for item in items]
        if label == "leases":
            sizes["kcl_leases"] = [item_size(i, without=("ddbstreamsStreamArn",)) for i in items]
    return sizes


def scan_rru(sizes: list[int], *, consistent: bool) -> float:
    """Read units of one Scan of a table whose items weigh ``sizes`` (one page)."""
    units = math.ceil(sum(sizes) / 4096)
    return float(units if consistent else units / 2)


# -- printing ------------------------------------------------------------------------------


def seconds(values: list[float]) -> str:
    return f"{max(values):.2f} / {pct(values, 50):.2f}"


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def row(label: str, ours: str, kcl: str, ratio: str = "", goal: str = "") -> None:
    print(f"  {label:<44} {ours:>15} {kcl:>15} {ratio:>9}  {goal}")


def print_resumes(stop: list[Resumed], crash: list[Resumed], kills: int) -> None:
    taken = [r.taken for r in stop]
    first = [r.first_record for r in stop]
    kcl = f"{KCL_GAP_MAX:.1f} / {KCL_GAP_P50:.1f}"
    print(f"1. planned stop (SIGTERM 1 of 2 workers, 16 shards, {len(stop)} leases released)")
    row("released -> taken, max / p50 s", seconds(taken), kcl, f"{max(taken) / KCL_GAP_MAX:.3f}")
    goal = f"resume <= {RESUME_GOAL:g} s: {verdict(max(first) <= RESUME_GOAL)}"
    ratio = f"{max(first) / KCL_GAP_MAX:.3f}"
    row("released -> first record, max / p50 s", seconds(first), kcl, ratio, goal)
    taken = [r.taken for r in crash]
    first = [r.first_record for r in crash]
    print(f"2. crash (SIGKILL 1 of 2 workers, 16 shards, {kills} kills, {len(crash)} leases)")
    row("kill -> taken, max / p50 s", seconds(taken), kcl, f"{max(taken) / KCL_GAP_MAX:.3f}")
    goal = f"<= {CRASH_GOAL:g} s: {verdict(max(first) <= CRASH_GOAL)}"
    ratio = f"{max(first) / KCL_GAP_MAX:.3f}"
    row("kill -> first record, max / p50 s", seconds(first), kcl, ratio, goal)


def print_balance(result: dict[str, Any], watch: float) -> None:
    kcl_balance = math.ceil(32 / 4) * KCL_TAKE_EVERY
    print("3. balance (32 shards, 1 -> 4 workers, then 4 -> 1)")
    took = result["balanced"]
    goal = f"<= {BALANCE_GOAL:g} s: {verdict(took <= BALANCE_GOAL)}"
    row(
        "launch -> every worker 7..9 leases, s",
        f"{took:.1f}",
        f"{kcl_balance:.0f}",
        f"{took / kcl_balance:.3f}",
        goal,
    )
    row(
        "launch -> every worker 8 leases, s",
        f"{result['exact']:.1f}",
        "",
        "",
        f"(then {'/'.join(map(str, result['settled']))})",
    )
    changes = result["changes"]
    row(
        f"ownership changes in the next {watch:g} s",
        str(changes),
        "0",
        "",
        f"0: {verdict(changes == 0)}",
    )
    first = [r.first_record for r in result["scale_in"]]
    kcl = f"{KCL_GAP_MAX:.1f} / {KCL_GAP_P50:.1f}"
    goal = f"<= {RESUME_GOAL:g} s: {verdict(max(first) <= RESUME_GOAL)}"
    row(
        f"4 -> 1: released -> first record ({len(first)})",
        seconds(first),
        kcl,
        f"{max(first) / KCL_GAP_MAX:.3f}",
        goal,
    )
    taken = [r.taken for r in result["scale_in"]]
    row("4 -> 1: released -> taken, max / p50 s", seconds(taken), kcl, "")


def cost_figures(steady: dict[str, Any]) -> dict[str, float]:
    """Per-minute requests and units, ours and the KCL model's."""
    forwarded: dict[tuple[str, str], int] = steady["forwarded"]
    minutes = steady["minutes"]
    leases, workers = steady["lease_table"], steady["workers_table"]

    def per_minute(operation: str, table: str) -> float:
        return forwarded.get((operation, table), 0) / minutes

    # Every lease-table UpdateItem is a checkpoint but the takes and releases, which the
    # workers log (a take that lost a race is not logged: none at steady state).
    takes_and_releases = steady["lease_writes"] / minutes
    checkpoints = max(0.0, per_minute("UpdateItem", leases) - takes_and_releases)
    lease_writes = takes_and_releases + sum(
        per_minute(op, leases) for op in ("PutItem", "DeleteItem")
    )
    worker_writes = sum(per_minute(op, workers) for op in ("PutItem", "DeleteItem"))
    sizes = steady["sizes"]
    lease_count = len(sizes["leases"])
    figures = {
        "heartbeats": per_minute("PutItem", workers),
        "lease_coordination": lease_writes,
        "coordination": worker_writes + lease_writes,
        "checkpoints": checkpoints,
        "cp_events": steady["cp_events"] / minutes,
        "scan_workers": per_minute("Scan", workers),
        "scan_leases": per_minute("Scan", leases),
        "get_items": per_minute("GetItem", leases) + per_minute("GetItem", workers),
        "kcl_writes": lease_count * 60 / KCL_RENEW_EVERY,
        "kcl_scans": 4 * 60 / KCL_TAKE_EVERY,
    }
    figures["reads"] = figures["scan_workers"] + figures["scan_leases"] + figures["get_items"]
    figures["rru"] = (
        figures["scan_workers"] * scan_rru(sizes["workers"], consistent=True)
        + figures["scan_leases"] * scan_rru(sizes["leases"], consistent=True)
        + figures["get_items"]
    )
    figures["kcl_rru"] = figures["kcl_scans"] * scan_rru(sizes["kcl_leases"], consistent=False)
    return figures


def monthly(writes: float, rru: float) -> float:
    return (writes * WRU_PRICE + rru * RRU_PRICE) * MINUTES_PER_MONTH


def print_cost(steady: dict[str, Any]) -> None:
    f = cost_figures(steady)
    sizes = steady["sizes"]
    print(
        f"4. cost at steady state (100 leases, 4 workers, {steady['minutes'] * 60:.0f} s;"
        f" {steady['lease_events']} lease changes in it), per minute"
    )
    ratio = f["coordination"] / f["kcl_writes"]
    goal = f"<= {COST_GOAL:g} x KCL: {verdict(ratio <= COST_GOAL)}"
    row(
        "coordination writes",
        f"{f['coordination']:.1f}",
        f"{f['kcl_writes']:.0f}",
        f"{ratio:.3f}",
        goal,
    )
    row("  heartbeats (PutItem, workers table)", f"{f['heartbeats']:.1f}", "0")
    row(
        "  lease takes/releases/creations",
        f"{f['lease_coordination']:.1f}",
        f"{f['kcl_writes']:.0f}",
        "",
        "(KCL: renewals)",
    )
    reads = f"{f['scan_workers']:.0f}/{f['scan_leases']:.1f}/{f['get_items']:.0f}"
    row(
        "reads: Scan workers / Scan leases / GetItem",
        reads,
        f"0/{f['kcl_scans']:.1f}/0",
        f"{f['reads'] / f['kcl_scans']:.1f}",
    )
    row(
        "read units (estimated from item sizes)",
        f"{f['rru']:.0f}",
        f"{f['kcl_rru']:.0f}",
        f"{f['rru'] / f['kcl_rru']:.1f}",
        "(reports; no goal)",
    )
    row(
        "checkpoint writes (1 per batch: the workload's)",
        f"{f['checkpoints']:.0f}",
        "app's",
        "",
        f"({f['cp_events']:.0f} cp events logged)",
    )
    ours = monthly(f["coordination"], f["rru"])
    kcl = monthly(f["kcl_writes"], f["kcl_rru"])
    row(
        "USD a month: coordination writes + reads",
        f"${ours:.2f}",
        f"${kcl:.2f}",
        f"{ours / kcl:.3f}",
    )
    row("USD a month: these checkpoint writes", f"${monthly(f['checkpoints'], 0):.2f}", "", "")
    lease_sizes, worker_sizes = sizes["leases"], sizes["workers"]
    print(
        f"  items: {len(lease_sizes)} leases, {sum(lease_sizes)} B in all"
        f" ({scan_rru(lease_sizes, consistent=True):g} RRU a consistent scan); KCL's:"
        f" {sum(sizes['kcl_leases'])} B ({scan_rru(sizes['kcl_leases'], consistent=False):g}"
        f" RRU an eventually consistent scan);\n  {len(worker_sizes)} worker items of"
        f" {max(worker_sizes)} B at most (1 RRU a scan); every item under 1 KB: 1 WRU a write"
    )


def print_discovery(steady: dict[str, Any], rollover: dict[str, Any]) -> None:
    leader = steady["leader"]
    print("5. discovery")
    total = steady["calls_total"]
    per_worker = ", ".join(
        f"{w}{'*' if w == leader else ''} {ops.get('DescribeStream', 0)}"
        f"/{total[w].get('DescribeStream', 0)}"
        for w, ops in sorted(steady["calls"].items())
    )
    print(
        f"  DescribeStream per worker (* leader), in the cost window / since launch"
        f" ({steady['since_launch']:.0f} s): {per_worker}"
    )
    ended = rollover["ended_by"]
    per_worker = ", ".join(
        f"{w} {ops.get('DescribeStream', 0)}/{ended.get(w, 0)}"
        for w, ops in sorted(rollover["calls"].items())
    )
    print(
        f"  every shard rolled over: children held and handled after {rollover['took']:.1f} s;"
        f"\n  DescribeStream calls / shards ended, per worker: {per_worker}"
    )
    total = sum(ops.get("DescribeStream", 0) for ops in rollover["calls"].values())
    listed = rollover["parents"] + rollover["children"]
    kcl = rollover["parents"] * math.ceil(listed / KCL_DESCRIBE_PAGE)
    row(
        "DescribeStream calls for the rollover",
        str(total),
        str(kcl),
        f"{total / kcl:.2f}",
        "(KCL 1.x: a full listing per ended shard)",
    )
    peak = rollover["peak_describe"]
    row(
        "peak DescribeStream calls in 1 s",
        str(peak),
        "",
        "",
        f"<= {DESCRIBE_LIMIT:g}: {verdict(peak <= DESCRIBE_LIMIT)}",
    )
    once = rollover["created_once"] == rollover["children"]
    row(
        "child leases created once / twice / never",
        f"{rollover['created_once']}/{rollover['created_twice']}/{rollover['not_created']}",
        "",
        "",
        f"all once: {verdict(once)} ({rollover['create_attempts']} PutItems)",
    )


# -- main ----------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    print(
        f"worker groups, default GroupOptions: failover {OPTIONS.failover_time:g} s, heartbeat"
        f" every {OPTIONS.heartbeat_every:.2f} s, workers table read every"
        f" {OPTIONS.membership_interval:g} s, lease table every {OPTIONS.lease_scan_interval:g}"
        f" s, discovery every {OPTIONS.discovery_interval:g} s"
    )
    print(
        f"KCL 2.x model: renew every {KCL_RENEW_EVERY:.3f} s, take every {KCL_TAKE_EVERY:.2f} s"
        f" (one steal per take); an unreleased lease resumes {KCL_GAP_MIN:.1f}-"
        f"{KCL_GAP_MAX:.1f} s later (p50 {KCL_GAP_P50:.1f})"
    )
    with DynamoDBLocal() as engine:
        print(f"DynamoDB Local {DYNAMODB_LOCAL_VERSION} at {engine.endpoint_url}", flush=True)
        try:
            print("1. planned stop ...", flush=True)
            stop = planned_stop(engine)
            print("2. crash ...", flush=True)
            crash = crashes(engine, args.crashes)
            print(f"3. balance (then {args.watch:g} s of watching) ...", flush=True)
            balanced_result = balance(engine, args.watch)
            print(f"4./5. cost ({args.window:g} s window) and discovery ...", flush=True)
            cost = cost_and_discovery(engine, args.window)
        except BenchError as error:
            return report([str(error)])
    print()
    row("", "ddbstreams", "KCL model", "ours/KCL", "goal")
    print_resumes(stop["resumed"], crash["resumed"], crash["kills"])
    print_balance(balanced_result, args.watch)
    print_cost(cost["steady"])
    print_discovery(cost["steady"], cost["rollover"])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a smoke run: shorter watches")
    parser.add_argument("--crashes", type=int, help="kills in scenario 2 (2; quick 1)")
    parser.add_argument("--watch", type=float, help="seconds watched for flapping (120; quick 15)")
    parser.add_argument("--window", type=float, help="cost window in seconds (60; quick 20)")
    args = parser.parse_args()
    defaults = (1, 15.0, 20.0) if args.quick else (2, 120.0, 60.0)
    for name, default in zip(("crashes", "watch", "window"), defaults, strict=True):
        if getattr(args, name) is None:
            setattr(args, name, default)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
