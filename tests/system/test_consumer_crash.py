"""Crash test of the Consumer: SIGKILL at random moments, restart, nothing lost or reordered.

A consumer process (``tests/support/crash_consumer.py``: a follow-mode Consumer with the SQLite
checkpoint store) is killed with SIGKILL again and again while a writer keeps changing the
source table (puts and deletes of a few dozen items), and restarted each time; once the
writer has stopped, a last process runs until it has saved a checkpoint covering every
record and is stopped with SIGTERM. Two sources: the stream simulator over loopback HTTP
(two partitions, shards rolling over every second and splitting), with parallelization
factor 1 and 3; and DynamoDB Local (one shard, no splits), with factor 1.

Every process appends what it does to one log (see the script's docstring): the checkpoint
it loaded at start, each record handed to the handler (``rec``, tagged with a batch id),
the handler's return (``end``), each checkpoint save as it starts (``save``, with the
checkpoint) and when it returned (``saved``). Only one process runs at a time, and a
process writes only from its event loop thread, so the log is one timeline. The test then
checks it against the truth (the simulator's history, or the whole DynamoDB Local stream
read with botocore):

1. At least once: every record written was handled; nothing else was.
2. Per-item order: within a process each item's records are handled in write order, each
   once; over the whole log a record is only handled after every earlier record of the
   same item was handled at least once (a restart may go back, never skip ahead).
3. Re-deliveries are limited to batches in flight at a kill. A checkpoint covers, per
   shard, a prefix of the shard's records (computed as the reader resumes from it:
   finished shards, positions, pending starts, and the ancestors of named shards). Let
   ``J`` be, per shard, the prefix of records that the process completed (handler
   returned, ``end`` logged) on top of what its loaded checkpoint covered. With
   parallelization factor 1 a handler batch is one segment of the consumer and a shard's
   segments complete in order; with factor P > 1 a segment (one reader batch, at most
   ``batch_size`` records) is split over lanes and completes with its last part. So:

   a. Durable, atomic saves: a process loads exactly the last checkpoint its predecessor
      saved or, if the predecessor was killed during that save, the one before it (or
      what the predecessor loaded, if it saved nothing).
   b. Never ahead: a saved checkpoint covers at most ``J`` records of each shard, and never
      fewer than the checkpoint before it.
   c. Not behind: it covers at least ``J`` (factor 1), or ``J - (batch_size - 1)`` (factor
      P: all segments before the one holding the first unfinished record).
   d. A process never handles a record that its loaded checkpoint covers.
   e. Commits are prompt: once ``J`` (less that slack) passes the last checkpoint saved,
      the next save begins before any lane ends a second batch (per shard: at most P batch
      ends), or, if a save is in progress, right after it returns. (The committer is woken
      by the completion and runs on the event loop's next turn.)
   f. Hence, and checked record by record: every record a killed process handled and its
      successor handles again was, at the kill, in a batch still in the handler (no
      ``end``), or in a batch completed after the surviving checkpoint was taken (its
      commit still to come: by e, only the batches of that last turn or of a save in
      progress), or (factor P > 1) at most ``batch_size - 1`` records before or after the
      first record of its shard unfinished when that checkpoint was taken (its segment
      waited for another lane). Every record handled more than once is such a record.

   After the graceful stop the stored checkpoint is the last one saved, and covers every
   record.

Kills land at random moments, in turn: at a random time after spawning (often during
start-up), at a random time after the checkpoint was loaded, and while a batch is surely in
the handler (the handler sleeps briefly, and now and then long: a batch seen unfinished
for longer than any brief sleep is a long one). The counts (kills, records, deliveries,
duplicates, re-delivered records by cause) are printed, and added to any failure. A
failed run leaves its log and the truth (``truth.json``) in its ``tmp_path``.
"""

from __future__ import annotations

import bisect
import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import orjson
import pytest

from ddbstreams import SQLiteCheckpointStore, SystemClock
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.testing import SimulatorServer, StreamSimulator

SCRIPT = Path(__file__).parent.parent / "support" / "crash_consumer.py"
#: The handler sleeps up to MAX_SLEEP seconds per batch, or SLOW_SLEEP for a SLOW_RATE
#: fraction of batches; a batch still in the handler SLOW_SEEN seconds after its records
#: were seen is a slow one.
MAX_SLEEP = 0.02
SLOW_RATE = 0.04
SLOW_SLEEP = 0.25
SLOW_SEEN = 0.06

JSON = dict[str, Any]


# --------------------------------------------------------------------------- the truth


@dataclass
class Truth:
    """What the stream holds: per shard, its records in sequence number order."""

    parents: dict[str, str | None]
    seqs: dict[str, list[int]] = field(default_factory=dict)
    #: sequence number -> (shard, index within the shard, item key, rank among the item's
    #: changes in write order)
    where: dict[str, tuple[str, int, str, int]] = field(default_factory=dict)
    #: (shard, sequence number, item key) in write order
    changes: list[tuple[str, str, str]] = field(default_factory=list)

    @classmethod
    def build(
        cls, parents: dict[str, str | None], changes: Iterable[tuple[str, str, str]]
    ) -> Truth:
        """From the shards (id -> parent id) and the changes (shard, seq, key) in write order."""
        truth = cls(dict(parents), {shard_id: [] for shard_id in parents})
        ranks: Counter[str] = Counter()
        listed: list[tuple[str, str, str, int]] = []
        truth.changes = list(changes)
        for shard_id, seq, key in truth.changes:
            assert shard_id in truth.seqs, f"change {seq} in unknown shard {shard_id}"
            listed.append((shard_id, seq, key, ranks[key]))
            ranks[key] += 1
        for shard_id, seq, _, _ in listed:
            truth.seqs[shard_id].append(int(seq))
        for seqs in truth.seqs.values():
            seqs.sort()
        for shard_id, seq, key, rank in listed:
            index = bisect.bisect_left(truth.seqs[shard_id], int(seq))
            truth.where[seq] = (shard_id, index, key, rank)
        assert len(truth.where) == len(listed), "duplicate sequence numbers"
        return truth

    def dump(self, path: Path) -> None:
        path.write_bytes(orjson.dumps({"parents": self.parents, "changes": self.changes}))

    @classmethod
    def load(cls, path: Path) -> Truth:
        data = orjson.loads(path.read_bytes())
        return cls.build(data["parents"], [tuple(change) for change in data["changes"]])

    @property
    def records(self) -> int:
        return len(self.where)

    def descendants(self) -> dict[str, set[str]]:
        children: dict[str, list[str]] = defaultdict(list)
        for shard_id, parent in self.parents.items():
            if parent is not None:
                children[parent].append(shard_id)
        out: dict[str, set[str]] = {}

        def walk(shard_id: str) -> set[str]:
            if shard_id not in out:
                below: set[str] = set()
                for kid in children.get(shard_id, ()):
                    below.add(kid)
                    below |= walk(kid)
                out[shard_id] = below
            return out[shard_id]

        for shard_id in self.parents:
            walk(shard_id)
        return out


def coverage(checkpoint: JSON | None, truth: Truth, below: dict[str, set[str]]) -> dict[str, int]:
    """Per shard, how many of its records (a prefix in sequence order) ``checkpoint`` covers,
    i.e. a reader resuming from it does not read again; mirrors the lineage planner."""
    if checkpoint is None:
        return {shard_id: 0 for shard_id in truth.seqs}
    positions: dict[str, str] = checkpoint["positions"]
    finished = set(checkpoint["finished"])
    pending: dict[str, JSON] = checkpoint["pending"]
    named = finished | set(positions) | set(pending)
    out: dict[str, int] = {}
    for shard_id, seqs in truth.seqs.items():
        if shard_id in finished:
            out[shard_id] = len(seqs)
        elif shard_id in positions:
            out[shard_id] = bisect.bisect_right(seqs, int(positions[shard_id]))
        elif shard_id in pending:
            start = pending[shard_id]
            kind = start["type"]
            if kind == "TRIM_HORIZON":
                out[shard_id] = 0
            elif kind == "AFTER_SEQUENCE_NUMBER":
                out[shard_id] = bisect.bisect_right(seqs, int(start["sequence_number"]))
            elif kind == "AT_SEQUENCE_NUMBER":
                out[shard_id] = bisect.bisect_left(seqs, int(start["sequence_number"]))
            else:
                raise AssertionError(f"unexpected pending start {start} for {shard_id}")
        elif below[shard_id] & named:
            out[shard_id] = len(seqs)  # a descendant was being read: this one was done
        else:
            out[shard_id] = 0
    return out


# --------------------------------------------------------------------------- the log


@dataclass
class Process:
    """One consumer process as its log lines tell it: (position in the log, event)."""

    pid: int
    loaded: JSON | None
    events: list[tuple[int, JSON]] = field(default_factory=list)


def parse_log(data: bytes) -> tuple[list[Process], int]:
    """The processes in log order, and the number of torn lines (cut by a kill)."""
    processes: list[Process] = []
    by_pid: dict[int, Process] = {}
    torn = 0
    lines = data.split(b"\n")
    for position, line in enumerate(lines):
        if not line:
            continue
        try:
            event = orjson.loads(line)
        except orjson.JSONDecodeError:
            # Only the last write of a killed process can be cut short.
            later = [other for other in lines[position + 1 :] if other][:1]
            assert not later or b'"ev":"start"' in later[0], f"corrupt log line {line[:200]!r}"
            torn += 1
            continue
        pid = event["pid"]
        process = by_pid.get(pid)
        if process is None:
            assert event["ev"] == "start", f"process {pid} logged {event} before starting"
            process = by_pid[pid] = Process(pid, event["loaded"])
            assert not processes or processes[-1].pid != pid
            processes.append(process)
        else:
            assert processes[-1] is process, f"process {pid} logged after its successor"
        process.events.append((position, event))
    return processes, torn


@dataclass
class Save:
    """A checkpoint save as logged (or the loaded checkpoint, as position -1 of a process)."""

    position: int
    checkpoint: JSON | None
    completed: dict[str, int]  # J per shard when the save started
    returned: bool = False


@dataclass
class Run:
    """What one process did, as far as the checks need to remember it."""

    process: Process
    batches: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    ended: dict[str, int] = field(default_factory=dict)  # batch -> position of its end
    saves: list[Save] = field(default_factory=list)
    stopped: bool = False


@dataclass
class Stats:
    spawned: int = 0
    kills: int = 0
    kills_mid_batch: int = 0  # kills while a slow batch was surely in the handler
    logged_processes: int = 0
    torn_lines: int = 0
    records: int = 0
    shards: int = 0
    deliveries: int = 0
    duplicates: int = 0
    saves: int = 0
    redelivered_batches: int = 0
    in_handler: int = 0  # re-delivered records whose batch was in the handler at the kill
    uncommitted: int = 0  # ... completed after the surviving checkpoint was taken
    behind_lane: int = 0  # ... waiting for another lane's part of their segment
    seconds: float = 0.0

    def __str__(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in vars(self).items())


class LogChecker:
    """Checks the log of all processes against the truth (see the module docstring)."""

    def __init__(self, truth: Truth, *, factor: int, batch_size: int, stats: Stats) -> None:
        self.truth = truth
        self.stats = stats
        # How far a checkpoint may lag the completed prefix: 0 when segments complete in
        # order; with lanes, the records before the first unfinished one in its segment.
        self.factor = factor
        self.slack = 0 if factor == 1 else batch_size - 1
        self.below = truth.descendants()
        self.seq_at = {(shard, index): seq for seq, (shard, index, _, _) in truth.where.items()}
        self.deliveries: Counter[str] = Counter()
        self.handled_ranks: dict[str, set[int]] = defaultdict(set)
        self.first_missing: dict[str, int] = defaultdict(int)
        self.may_repeat: set[str] = set()  # records in flight at some kill
        self.redelivered_batches: set[str] = set()

    def coverage(self, checkpoint: JSON | None) -> dict[str, int]:
        return coverage(checkpoint, self.truth, self.below)

    def check(
        self, processes: list[Process], *, killed: set[int], stopped: int, stored: JSON | None
    ) -> None:
        everything = {shard_id: len(seqs) for shard_id, seqs in self.truth.seqs.items()}
        self.stats.logged_processes = len(processes)
        self.stats.records = self.truth.records
        self.stats.shards = len(self.truth.seqs)
        previous: Run | None = None
        for number, process in enumerate(processes):
            where = f"process #{number} (pid {process.pid})"
            # (a) It loaded what its predecessor left durable: the last checkpoint saved,
            # or the one before if the kill cut the last save short.
            if previous is None:
                survivors = [Save(-1, None, {}, returned=True)]
            elif previous.saves[-1].returned:
                survivors = previous.saves[-1:]
            else:
                survivors = previous.saves[-2:]
            matching = [save for save in survivors if save.checkpoint == process.loaded]
            if not matching:
                raise Failure(
                    f"{where} loaded {process.loaded}, not one of the checkpoints its "
                    f"predecessor could have left: {[save.checkpoint for save in survivors]}"
                )
            resumed = self.coverage(process.loaded)
            if previous is not None:
                self.account_for_kill(previous, matching[-1], resumed)
            run = self.replay(where, process, resumed)
            if process.pid == stopped:
                if not run.stopped or not run.saves[-1].returned:
                    raise Failure(f"{where} was stopped gracefully but did not finish its stop")
                if stored != run.saves[-1].checkpoint:
                    raise Failure(f"stored checkpoint {stored} is not the last one saved")
                if self.coverage(stored) != everything:
                    raise Failure(f"the final checkpoint does not cover every record: {stored}")
                if number != len(processes) - 1:
                    raise Failure(f"{where} was stopped last but is not last in the log")
            elif process.pid not in killed:
                raise Failure(f"{where} was neither killed nor stopped by this test")
            previous = run

        missing = set(self.truth.where) - set(self.deliveries)
        if missing:
            raise Failure(f"{len(missing)} records never handled, e.g. {sorted(missing)[:5]}")
        repeated = {seq for seq, count in self.deliveries.items() if count > 1}
        if repeated - self.may_repeat:
            raise Failure(
                "records handled more than once without being in flight at a kill: "
                f"{sorted(repeated - self.may_repeat)[:5]}"
            )
        self.stats.deliveries = sum(self.deliveries.values())
        self.stats.duplicates = self.stats.deliveries - len(self.deliveries)
        self.stats.redelivered_batches = len(self.redelivered_batches)

    def replay(self, where: str, process: Process, base: dict[str, int]) -> Run:
        """Go through one process's events, checking 2, 3b, 3c, 3d and 3e as they happen."""
        truth = self.truth
        run = Run(process)
        completed = dict(base)  # J: per shard, the completed prefix
        done: dict[str, set[int]] = defaultdict(set)
        last_rank: dict[str, int] = {}
        seen: set[str] = set()
        last_coverage = base
        run.saves.append(Save(process.events[0][0], process.loaded, dict(base), returned=True))
        # 3e: once the completed prefix (less the slack) passes the last checkpoint saved, a
        # save is owed. If none is in progress, the committer runs on the event loop's next
        # turn, before any lane ends a second batch: until a save begins, each shard may end
        # at most `factor` batches (one per lane). If one is in progress, the next save
        # begins as soon as it returns, in the same step of the committer.
        saving = False
        owed = False
        window: Counter[str] | None = None
        save_next = False
        for position, event in process.events[1:]:
            kind = event["ev"]
            if run.stopped:
                raise Failure(f"{where} logged {event} after it stopped")
            if save_next and kind != "save":
                raise Failure(
                    f"{where}: a save returned while batches had completed past it, but the "
                    f"next save did not begin at once (log line {position}: {event})"
                )
            save_next = False
            if kind == "rec":
                seq = event["seq"]
                if seq not in truth.where:
                    raise Failure(f"{where} handled {seq}, which was never written")
                shard_id, index, key, rank = truth.where[seq]
                if (event["shard"], event["key"]) != (shard_id, key):
                    raise Failure(f"{where} handled {event}, written as {shard_id}/{key}")
                if index < base[shard_id]:
                    raise Failure(f"{where} handled {seq} of {shard_id}: its checkpoint covers it")
                if seq in seen:
                    raise Failure(f"{where} handled {seq} twice (the handler never fails)")
                seen.add(seq)
                if rank <= last_rank.get(key, -1):
                    raise Failure(f"{where}: item {key} went back to its change #{rank} ({seq})")
                last_rank[key] = rank
                if rank > self.first_missing[key]:
                    raise Failure(
                        f"{where} handled change #{rank} of {key} ({seq}) before change "
                        f"#{self.first_missing[key]} was ever handled"
                    )
                self.handled_ranks[key].add(rank)
                while self.first_missing[key] in self.handled_ranks[key]:
                    self.first_missing[key] += 1
                self.deliveries[seq] += 1
                part = run.batches.setdefault(event["batch"], [])
                if part and part[0][0] != shard_id:
                    raise Failure(f"{where}: batch {event['batch']} mixes shards")
                part.append((shard_id, index))
            elif kind == "end":
                run.ended[event["batch"]] = position
                for shard_id, index in run.batches[event["batch"]]:
                    done[shard_id].add(index)
                    while completed[shard_id] in done[shard_id]:
                        completed[shard_id] += 1
                    if completed[shard_id] - self.slack > last_coverage[shard_id]:
                        owed = True
                if owed and not saving:
                    window = Counter() if window is None else window
                    shard_id = run.batches[event["batch"]][0][0]
                    window[shard_id] += 1
                    if window[shard_id] > self.factor:
                        raise Failure(
                            f"{where}: batches completed past the last checkpoint saved, then "
                            f"{window[shard_id]} batches of {shard_id} ended without a save "
                            f"beginning (log line {position})"
                        )
            elif kind == "save":
                covered = self.coverage(event["cp"])
                for shard_id, count in covered.items():
                    high = completed[shard_id]
                    if count < last_coverage[shard_id]:
                        raise Failure(
                            f"{where}: the checkpoint went back on {shard_id} (covers {count} "
                            f"records, {last_coverage[shard_id]} before)"
                        )
                    if count > high:
                        raise Failure(
                            f"{where}: a checkpoint covers {count} records of {shard_id} though "
                            f"only {high} were completed (records would be skipped): {event['cp']}"
                        )
                    if count < high - self.slack:
                        raise Failure(
                            f"{where}: a checkpoint covers {count} records of {shard_id} though "
                            f"{high} were completed (it lags behind): {event['cp']}"
                        )
                last_coverage = covered
                run.saves.append(Save(position, event["cp"], dict(completed)))
                self.stats.saves += 1
                saving, owed, window = True, False, None
            elif kind == "saved":
                run.saves[-1].returned = True
                saving, save_next = False, owed
            elif kind == "stop":
                run.stopped = True
            else:
                raise Failure(f"{where}: unknown event {event}")
        return run

    def account_for_kill(self, run: Run, survivor: Save, resumed: dict[str, int]) -> None:
        """3f: classify what a killed process handled that its successor, resuming at
        ``resumed`` (the coverage of ``survivor``), hands out again; anything that was not
        in flight at the kill fails."""
        for batch, records in run.batches.items():
            ended = run.ended.get(batch)
            for shard_id, index in records:
                if index < resumed[shard_id]:
                    continue
                if ended is None:
                    self.stats.in_handler += 1
                elif ended > survivor.position:
                    self.stats.uncommitted += 1
                elif self.slack and index >= survivor.completed[shard_id] - self.slack:
                    self.stats.behind_lane += 1
                else:
                    raise Failure(
                        f"pid {run.process.pid}: record {index} of {shard_id} (batch {batch}) "
                        "was completed before the checkpoint that survived the kill was taken, "
                        f"yet it is not covered: {survivor.checkpoint}"
                    )
                self.may_repeat.add(self.seq_at[shard_id, index])
                self.redelivered_batches.add(batch)


class Failure(AssertionError):
    pass


class TimedOut(Failure):
    pass


# --------------------------------------------------------------------------- processes


class Crasher:
    """Starts consumer processes one at a time, kills them, and follows the log."""

    def __init__(
        self,
        workdir: Path,
        *,
        endpoint_url: str,
        region: str,
        stream_arn: str,
        batch_size: int,
        factor: int,
        rng: random.Random,
        stats: Stats,
    ) -> None:
        self.workdir = workdir
        self.log_path = workdir / "handled.jsonl"
        self.store_path = workdir / "checkpoints.sqlite"
        self.stream_arn = stream_arn
        self.rng = rng
        self.stats = stats
        self.killed: set[int] = set()
        self.stopped: int | None = None
        self.started: set[int] = set()  # pids that logged their start
        self.handled: set[str] = set()
        self.in_handler: dict[str, float] = {}  # batch -> when its records were seen
        self.last_save: JSON | None = None  # the last checkpoint the current process saved
        self.current: subprocess.Popen[bytes] | None = None
        self._offset = 0
        self._partial = b""
        self._stderr: Path | None = None
        self.command = [
            sys.executable,
            str(SCRIPT),
            "--endpoint-url",
            endpoint_url,
            "--region",
            region,
            "--stream",
            stream_arn,
            "--store",
            str(self.store_path),
            "--log",
            str(self.log_path),
            "--batch-size",
            str(batch_size),
            "--parallelization-factor",
            str(factor),
            "--max-sleep",
            str(MAX_SLEEP),
            "--slow-rate",
            str(SLOW_RATE),
            "--slow-sleep",
            str(SLOW_SLEEP),
        ]
        self.env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith("AWS_") and name != "DDBSTREAMS_LOCAL_ENDPOINT"
        }
        self.env.update(
            AWS_ACCESS_KEY_ID="crashtest",  # DynamoDB Local: letters and digits only
            AWS_SECRET_ACCESS_KEY="crashtest",
            AWS_CONFIG_FILE=str(workdir / "no-aws-config"),
            AWS_SHARED_CREDENTIALS_FILE=str(workdir / "no-aws-credentials"),
            AWS_EC2_METADATA_DISABLED="true",
        )

    def __enter__(self) -> Crasher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.current is not None and self.current.poll() is None:
            self.current.kill()
            self.current.wait()

    def spawn(self) -> subprocess.Popen[bytes]:
        assert self.current is None or self.current.poll() is not None
        self.stats.spawned += 1
        self.last_save = None
        self._stderr = self.workdir / f"consumer-{self.stats.spawned}.stderr"
        with self._stderr.open("wb") as stderr:
            self.current = subprocess.Popen(
                self.command, env=self.env, stdout=subprocess.DEVNULL, stderr=stderr
            )
        return self.current

    def stderr_tail(self) -> str:
        if self._stderr is None or not self._stderr.exists():
            return ""
        return self._stderr.read_text(errors="replace")[-3000:]

    def follow(self) -> None:
        """Read what the log gained since the last call."""
        if not self.log_path.exists():
            return
        with self.log_path.open("rb") as log:
            log.seek(self._offset)
            data = log.read()
        self._offset += len(data)
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        now = time.monotonic()
        for line in lines:
            try:
                event = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue  # torn by a kill, or the newline added after one
            kind = event["ev"]
            if kind == "rec":
                self.handled.add(event["seq"])
                self.in_handler.setdefault(event["batch"], now)
            elif kind == "end":
                self.in_handler.pop(event["batch"], None)
            elif kind == "start":
                self.started.add(event["pid"])
            elif kind == "save" and self.current is not None and event["pid"] == self.current.pid:
                self.last_save = event["cp"]

    def wait_for(self, condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
        process = self.current
        assert process is not None
        deadline = time.monotonic() + timeout
        while True:
            self.follow()
            if condition():
                return
            if process.poll() is not None:
                raise Failure(
                    f"consumer {process.pid} exited ({process.returncode}) while waiting for "
                    f"{what}:\n{self.stderr_tail()}"
                )
            if time.monotonic() > deadline:
                raise TimedOut(f"timed out waiting for {what}:\n{self.stderr_tail()}")
            time.sleep(0.005)

    def kill(self) -> None:
        process = self.current
        assert process is not None
        process.kill()
        process.wait()
        if process.returncode != -signal.SIGKILL:
            raise Failure(
                f"consumer {process.pid} ended by itself ({process.returncode}) before the "
                f"kill:\n{self.stderr_tail()}"
            )
        self.killed.add(process.pid)
        self.stats.kills += 1
        # A write cut short leaves a line without its end: end it, so the next process
        # starts on a line of its own.
        if self.log_path.exists() and self.log_path.stat().st_size:
            with self.log_path.open("rb+") as log:
                log.seek(-1, os.SEEK_END)
                if log.read(1) != b"\n":
                    log.write(b"\n")

    def crash(self, kills: int) -> None:
        """Start and SIGKILL consumer processes ``kills`` times, at random moments."""
        for number in range(kills):
            self.spawn()
            self.await_moment(number % 3)
            self.kill()

    def await_moment(self, mode: int) -> None:
        """Wait for a moment to kill the current process: 0, anywhere from start-up
        (imports, loading the checkpoint) to steady state; 1, a random time after it loaded
        its checkpoint; 2, while a batch is surely in its handler."""
        process = self.current
        assert process is not None
        if mode == 0:
            time.sleep(self.rng.uniform(0.0, 2.0))
            return
        self.wait_for(lambda: process.pid in self.started, "the consumer to start")
        if mode == 1:
            time.sleep(self.rng.uniform(0.0, 1.0))
            return
        # A batch of this process still open SLOW_SEEN seconds after its records were seen
        # is a slow one (normal ones end within MAX_SLEEP): it stays in the handler for
        # SLOW_SLEEP seconds.
        prefix = f"{process.pid}-"
        self.in_handler.clear()

        def slow_batch_open() -> bool:
            now = time.monotonic()
            return any(
                batch.startswith(prefix) and now - seen >= SLOW_SEEN
                for batch, seen in self.in_handler.items()
            )

        self.wait_for(slow_batch_open, "a slow batch")
        self.stats.kills_mid_batch += 1

    def finish(self, truth: Truth, timeout: float = 60.0) -> None:
        """Run a last process until it saved a checkpoint covering every record of
        ``truth`` (or ``timeout``: the checks then tell what went wrong), then stop it with
        SIGTERM (a graceful stop) and wait for it to exit.

        Waiting for the checkpoint and not merely for every record to be handled matters:
        records that a killed process handled come again, and a graceful stop leaves
        batches not yet started to the next run."""
        below = truth.descendants()
        everything = {shard_id: len(seqs) for shard_id, seqs in truth.seqs.items()}
        checked: list[JSON | None] = [None]

        def all_committed() -> bool:
            if self.last_save is checked[0]:
                return False
            checked[0] = self.last_save
            return coverage(self.last_save, truth, below) == everything

        process = self.spawn()
        with contextlib.suppress(TimedOut):
            self.wait_for(all_committed, "a checkpoint covering every record", timeout)
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=30.0)
        except subprocess.TimeoutExpired:
            raise Failure(f"consumer did not stop on SIGTERM:\n{self.stderr_tail()}") from None
        if returncode != 0:
            raise Failure(f"consumer exited with {returncode} on SIGTERM:\n{self.stderr_tail()}")
        self.stopped = process.pid

    def verify(self, truth: Truth, *, factor: int, batch_size: int) -> None:
        """Check the whole log (module docstring); print the counts."""
        assert self.stopped is not None
        with SQLiteCheckpointStore(self.store_path) as store:
            final = store.load_sync(self.stream_arn, name="default")
        truth.dump(self.workdir / "truth.json")  # for a post-mortem
        processes, self.stats.torn_lines = parse_log(self.log_path.read_bytes())
        checker = LogChecker(truth, factor=factor, batch_size=batch_size, stats=self.stats)
        try:
            checker.check(
                processes,
                killed=self.killed,
                stopped=self.stopped,
                stored=None if final is None else final.to_json(),
            )
        except AssertionError as exc:
            exc.add_note(f"crash test: {self.stats}; log and truth in {self.workdir}")
            raise
        print(f"crash test: {self.stats}")


# --------------------------------------------------------------------------- the tests


def new_seed() -> int:
    """A fresh seed per run (printed); set CRASH_TEST_SEED to replay one's choices."""
    chosen = os.environ.get("CRASH_TEST_SEED")
    return int(chosen) if chosen else random.randrange(1 << 32)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("factor", [1, 3])
def test_sigkill_over_rollovers_and_splits(tmp_path: Path, factor: int) -> None:
    seed = new_seed()
    print(f"seed {seed}")
    stats = Stats()
    started = time.monotonic()
    batch_size = 8
    sim = StreamSimulator(partitions=2, seed=seed, clock=SystemClock(), empty_page_rate=0.05)
    with (
        SimulatorServer(sim) as server,
        Crasher(
            tmp_path,
            endpoint_url=server.endpoint_url,
            region=sim.region,
            stream_arn=sim.stream_arn,
            batch_size=batch_size,
            factor=factor,
            rng=random.Random(seed),
            stats=stats,
        ) as crasher,
    ):
        with sim.live(
            writes_per_second=80.0,
            rollover_every=1.0,
            split_every=2.5,
            max_open_shards=6,
            keys=50,
            seed=seed,
        ) as live:
            crasher.crash(kills=12)
        truth = Truth.build(
            {shard.shard_id: shard.parent_shard_id for shard in sim.shards(include_trimmed=True)},
            ((c.shard_id, c.sequence_number, c.keys["pk"]) for c in sim.history),
        )
        crasher.finish(truth)
    stats.seconds = round(time.monotonic() - started, 1)
    assert truth.records == live.writes > 500
    assert live.rollovers >= 5, live
    assert live.splits >= 2, live
    assert any(change.event_name == "REMOVE" for change in sim.history)
    crasher.verify(truth, factor=factor, batch_size=batch_size)
    assert stats.kills == 12
    assert stats.kills_mid_batch == 4
    # Those batches were in the handler at a kill: they must have come again.
    assert stats.in_handler > 0, stats


class TableWriter:
    """Changes items pk-0 ... pk-<keys-1> of a DynamoDB Local table from a thread."""

    def __init__(self, table: SourceTable, *, keys: int, interval: float, seed: int) -> None:
        self.table = table
        self.keys = keys
        self.interval = interval
        self.rng = random.Random(seed)
        self.changes = 0
        self.deletes = 0
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="crash-test-writer", daemon=True)

    def __enter__(self) -> TableWriter:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join()
        if self.error is not None and exc is None:
            raise self.error

    def _run(self) -> None:
        present: set[int] = set()
        version = 0
        try:
            while not self._stop.wait(self.interval):
                index = self.rng.randrange(self.keys)
                if index in present and self.rng.random() < 0.15:
                    self.table.delete({"pk": f"pk-{index}"})
                    present.discard(index)
                    self.deletes += 1
                else:
                    version += 1
                    self.table.put({"pk": f"pk-{index}", "version": version})
                    present.add(index)
                self.changes += 1
        except BaseException as error:  # reported by __exit__
            self.error = error


def read_stream_with_botocore(ddb_local: DynamoDBLocal, stream_arn: str) -> Truth:
    """The whole stream, read with botocore (not with ddbstreams): the truth to check by."""
    client = ddb_local.streams_client()
    shards: list[JSON] = []
    request: JSON = {"StreamArn": stream_arn}
    while True:
        description = client.describe_stream(**request)["StreamDescription"]
        shards.extend(description["Shards"])
        if not description.get("LastEvaluatedShardId"):
            break
        request["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]
    changes: list[tuple[str, str, str]] = []
    for shard in shards:
        iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        empty = 0
        while iterator is not None and empty < 2:
            page = client.get_records(ShardIterator=iterator)
            records = page["Records"]
            empty = 0 if records else empty + 1
            changes.extend(
                (
                    shard["ShardId"],
                    record["dynamodb"]["SequenceNumber"],
                    record["dynamodb"]["Keys"]["pk"]["S"],
                )
                for record in records
            )
            iterator = page.get("NextShardIterator")
    return Truth.build({shard["ShardId"]: shard.get("ParentShardId") for shard in shards}, changes)


@pytest.mark.integration
@pytest.mark.timeout(240)
def test_sigkill_against_dynamodb_local(
    tmp_path: Path, ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    seed = new_seed()
    print(f"seed {seed}")
    stats = Stats()
    started = time.monotonic()
    batch_size = 5
    factor = 1
    with Crasher(
        tmp_path,
        endpoint_url=ddb_local.endpoint_url,
        region=ddb_local.region_name,
        stream_arn=source_table.stream_arn,
        batch_size=batch_size,
        factor=factor,
        rng=random.Random(seed),
        stats=stats,
    ) as crasher:
        with TableWriter(source_table, keys=30, interval=0.02, seed=seed) as writer:
            crasher.crash(kills=6)
        truth = read_stream_with_botocore(ddb_local, source_table.stream_arn)
        crasher.finish(truth)
    stats.seconds = round(time.monotonic() - started, 1)
    assert truth.records == writer.changes > 100
    assert writer.deletes > 0
    crasher.verify(truth, factor=factor, batch_size=batch_size)
    assert stats.kills == 6
    assert stats.kills_mid_batch == 2
    assert stats.in_handler > 0, stats
