"""``ddbstreams tail --follow`` as a real process against DynamoDB Local.

Each test starts ``python -m ddbstreams tail STREAM --follow`` with its stdout on a pipe
(no PYTHONUNBUFFERED: the command must flush by itself), writes to the source table while
the command runs, and reads the records as the command prints them. Stopping is done the
way a user or a service manager does it: SIGINT (Ctrl-C) or SIGTERM.

Nothing here measures time: every wait is for a line that must come, with a generous
deadline that only turns a hang into a failure.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import IO, Any, NoReturn

import pytest

from ddbstreams.cli import _main as _cli
from ddbstreams.local import DynamoDBLocal, SourceTable

pytestmark = pytest.mark.integration

DEADLINE = 30.0  # seconds to wait for a line that must come (a hang fails, not a slow box)


class FollowingTail:
    """A running ``ddbstreams tail ... --follow`` whose output lines are read as they come."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.argv = [sys.executable, "-m", "ddbstreams", "tail", *argv]
        self.process = subprocess.Popen(
            self.argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(self.process.stdout, self._stdout), daemon=True),
            threading.Thread(target=_pump, args=(self.process.stderr, self._stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _fail(self, what: str) -> NoReturn:
        self._drain_stderr()
        stderr = "\n".join(self.stderr_lines)
        pytest.fail(f"{what} (command {self.argv}, exit {self.process.poll()}); stderr:\n{stderr}")

    def _drain_stderr(self) -> None:
        while True:
            try:
                line = self._stderr.get_nowait()
            except queue.Empty:
                return
            if line is not None:
                self.stderr_lines.append(line)

    def next_record(self, timeout: float = DEADLINE) -> dict[str, Any]:
        """The next JSON Lines record printed; fails if none comes or the output ends."""
        try:
            line = self._stdout.get(timeout=timeout)
        except queue.Empty:
            self._fail(f"no record printed within {timeout:g} s")
        if line is None:
            self._fail("stdout ended while a record was expected")
        record: dict[str, Any] = json.loads(line, parse_float=Decimal)
        return record

    def next_record_or_none(self, timeout: float) -> dict[str, Any] | None:
        """The next record if one is printed within ``timeout``, else None."""
        try:
            line = self._stdout.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self._fail("stdout ended while the command should still be following")
        record: dict[str, Any] = json.loads(line, parse_float=Decimal)
        return record

    def wait_stderr(self, fragment: str, timeout: float = DEADLINE) -> str:
        """Wait for a stderr line containing ``fragment``; returns it."""
        for seen in self.stderr_lines:
            if fragment in seen:
                return seen
        while True:
            try:
                line = self._stderr.get(timeout=timeout)
            except queue.Empty:
                self._fail(f"no stderr line with {fragment!r} within {timeout:g} s")
            if line is None:
                self._fail(f"stderr ended without a line with {fragment!r}")
            self.stderr_lines.append(line)
            if fragment in line:
                return line

    def wait(self, timeout: float = DEADLINE) -> tuple[int, list[str], str]:
        """Wait for the command to exit: (status, the stdout lines not read yet, stderr)."""
        try:
            status = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self._fail(f"the command did not exit within {timeout:g} s")
        for thread in self._threads:
            thread.join(timeout=timeout)
        rest: list[str] = []
        while (line := self._stdout.get(timeout=timeout)) is not None:
            rest.append(line)
        self._drain_stderr()
        return status, rest, "".join(f"{line}\n" for line in self.stderr_lines)

    def stop(self, signum: signal.Signals) -> tuple[int, list[str], str]:
        """Send ``signum`` and wait for the command to exit (see :meth:`wait`)."""
        self.process.send_signal(signum)
        return self.wait()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Copy a pipe's lines into a queue as they arrive; None marks the end."""
    try:
        for raw in iter(stream.readline, b""):
            lines.put(raw.decode("utf-8").rstrip("\n"))
    except (OSError, ValueError):  # closed by kill() during teardown
        pass
    finally:
        lines.put(None)


Start = Callable[..., FollowingTail]


@pytest.fixture
def start_tail(ddb_local: DynamoDBLocal) -> Iterator[Start]:
    """Start ``ddbstreams tail STREAM [options]`` against ``ddb_local``; killed at teardown."""
    kwargs = ddb_local.client_kwargs()
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name != "PYTHONUNBUFFERED"
    }
    env.update(
        AWS_ACCESS_KEY_ID=kwargs["aws_access_key_id"],
        AWS_SECRET_ACCESS_KEY=kwargs["aws_secret_access_key"],
        AWS_EC2_METADATA_DISABLED="true",
    )
    connection = ["--endpoint-url", kwargs["endpoint_url"], "--region", kwargs["region_name"]]
    started: list[FollowingTail] = []

    def start(stream: str, *options: str) -> FollowingTail:
        tail = FollowingTail([stream, *options, *connection], env)
        started.append(tail)
        return tail

    yield start
    for tail in started:
        tail.kill()


def change(record: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return record["eventName"], record["keys"]


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_follow_prints_changes_as_written_and_stops_cleanly(
    start_tail: Start, source_table: SourceTable, signum: signal.Signals
) -> None:
    source_table.put({"pk": "a", "v": 1})
    source_table.update({"pk": "a"}, set={"v": 2})

    tail = start_tail(source_table.stream_arn, "--follow")

    # Written before the start: the default --from trim-horizon prints them first.
    first, second = tail.next_record(), tail.next_record()
    assert change(first) == ("INSERT", {"pk": "a"})
    assert first["newImage"] == {"pk": "a", "v": 1}
    assert change(second) == ("MODIFY", {"pk": "a"})
    # Written while it runs: each one shows up before the next is written.
    source_table.put({"pk": "b", "n": 1})
    third = tail.next_record()
    assert change(third) == ("INSERT", {"pk": "b"})
    source_table.update({"pk": "b"}, set={"n": 2})
    fourth = tail.next_record()
    assert change(fourth) == ("MODIFY", {"pk": "b"})
    assert (fourth["oldImage"], fourth["newImage"]) == ({"pk": "b", "n": 1}, {"pk": "b", "n": 2})
    source_table.delete({"pk": "a"})
    fifth = tail.next_record()
    assert change(fifth) == ("REMOVE", {"pk": "a"})
    assert (fifth["oldImage"], fifth["newImage"]) == ({"pk": "a", "v": 2}, None)
    records = [first, second, third, fourth, fifth]
    sequence_numbers = [int(r["sequenceNumber"]) for r in records]
    assert sequence_numbers == sorted(sequence_numbers)
    assert len({r["eventID"] for r in records}) == 5

    status, rest, stderr = tail.stop(signum)

    assert status == 0
    assert rest == []
    assert "Traceback" not in stderr
    assert stderr == ""  # stderr is a pipe and --verbose is off: nothing to report


def test_follow_max_records_exits_by_itself(start_tail: Start, source_table: SourceTable) -> None:
    source_table.put({"pk": "before"})

    tail = start_tail(source_table.name, "-f", "--max-records", "3")

    assert change(tail.next_record()) == ("INSERT", {"pk": "before"})
    source_table.put({"pk": "one"})
    assert change(tail.next_record()) == ("INSERT", {"pk": "one"})
    source_table.put({"pk": "two"})
    source_table.put({"pk": "three"})  # beyond --max-records: never printed
    status, rest, stderr = tail.wait()

    assert status == 0
    assert [change(json.loads(line)) for line in rest] == [("INSERT", {"pk": "two"})]
    assert stderr == ""


def test_follow_from_latest_shows_only_later_changes(
    start_tail: Start, source_table: SourceTable
) -> None:
    source_table.put({"pk": "before"})

    tail = start_tail(source_table.stream_arn, "--follow", "--from", "latest", "--verbose")
    tail.wait_stderr(f"following {source_table.stream_arn}, Ctrl-C to stop")
    tail.wait_stderr("shard started: shardId-")
    # "shard started" comes just before the shard's LATEST iterator is taken, so a write
    # right then may land before it. Write probes until one is printed: from then on the
    # iterator is certainly in place. No probe before the printed one may appear later.
    probes = 0
    first_seen: dict[str, Any] | None = None
    while first_seen is None:
        assert probes < 20, "no probe was ever printed"
        source_table.put({"pk": f"probe-{probes}"})
        probes += 1
        first_seen = tail.next_record_or_none(timeout=2.0)
    seen = [first_seen]
    source_table.put({"pk": "after", "v": 1})
    source_table.update({"pk": "after"}, set={"v": 2})
    source_table.delete({"pk": "after"})
    while change(seen[-1]) != ("REMOVE", {"pk": "after"}):
        seen.append(tail.next_record())

    keys = [record["keys"]["pk"] for record in seen]
    first_probe = int(keys[0].removeprefix("probe-"))
    assert keys == [f"probe-{n}" for n in range(first_probe, probes)] + ["after"] * 3
    assert [r["eventName"] for r in seen[-3:]] == ["INSERT", "MODIFY", "REMOVE"]
    assert "before" not in keys

    status, rest, stderr = tail.stop(signal.SIGINT)

    assert status == 0
    assert rest == []
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert lines[-2:] == ["ddbstreams: SIGINT received, stopping", "ddbstreams: reader stopped"]
    assert all(line.startswith("ddbstreams: ") for line in lines)
    assert not any("error" in line for line in lines)


class SignalOnFirstWrite(io.RawIOBase):
    """A stdout that raises ``signum`` in this process once the first record is written."""

    def __init__(self, signum: signal.Signals) -> None:
        self.signum = signum
        self.data = bytearray()

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        first = not self.data
        self.data += bytes(data)
        if first:
            signal.raise_signal(self.signum)
        return len(data)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_follow_in_process_stop_leaves_no_task_and_restores_handlers(
    ddb_local: DynamoDBLocal,
    source_table: SourceTable,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
) -> None:
    kwargs = ddb_local.client_kwargs()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    source_table.put({"pk": "a"})
    raw = SignalOnFirstWrite(signum)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(raw), encoding="utf-8"))
    leftover: list[asyncio.Task[Any]] = []
    tail = _cli._tail

    async def tail_then_look(args: Any, out: Any) -> int:
        status = await tail(args, out)
        leftover.extend(task for task in asyncio.all_tasks() if task is not asyncio.current_task())
        return status

    monkeypatch.setattr(_cli, "_tail", tail_then_look)
    handlers_before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    connection = ["--endpoint-url", kwargs["endpoint_url"], "--region", kwargs["region_name"]]

    status = _cli.main(["tail", source_table.stream_arn, "--follow", *connection])

    assert status == 0
    assert leftover == []  # every shard fetcher, the coordinator and discovery have ended
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers_before
    assert [json.loads(line)["keys"] for line in raw.data.decode().splitlines()] == [{"pk": "a"}]
    assert capsys.readouterr().err == ""
