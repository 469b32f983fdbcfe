"""``ddbstreams tail --checkpoint`` and ``ddbstreams checkpoints show|reset``.

The ``checkpoints`` commands are tested against SQLite files written with
:class:`SQLiteCheckpointStore` (no engine). ``tail --checkpoint`` (a :class:`Consumer`) is
tested first with a stand-in client and reader (when exactly the checkpoint is saved,
relative to the output), then end to end against DynamoDB Local, in process and as a
``--follow`` process stopped with SIGINT.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ddbstreams._clock import SystemClock
from ddbstreams._errors import StreamNotFoundError, TrimmedDataError
from ddbstreams._events import BatchHandled
from ddbstreams.cli import _main as _cli
from ddbstreams.cli._main import main
from ddbstreams.consuming import _consumer
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._position import (
    LATEST,
    SHARD_TRIM_HORIZON,
    TRIM_HORIZON,
    Checkpoint,
    ShardStart,
)
from ddbstreams.model._types import Record
from ddbstreams.reading import ShardBatch
from ddbstreams.state._stores import SQLiteCheckpointStore
from tests.integration.test_cli_follow import FollowingTail

ARN_A = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2025-11-29T06:31:20.000"
ARN_A_OLD = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2025-01-01T00:00:00.000"
ARN_B = "arn:aws:dynamodb:eu-west-1:123456789012:table/users/stream/2025-11-29T06:31:20.000"
SHARD = "shardId-00000001764397880000-0a1b2c3d"
CHILD = "shardId-00000001764412280000-4e5f6a7b"
ROOT = "shardId-00000001764383480000-99999999"
SEQ = "000000000000000000042"
UPDATED_AT = 1764397880.25  # 2025-11-29T06:31:20.250Z


class FixedClock(SystemClock):
    """The store's ``updated_at`` comes from ``time()``: a fixed one."""

    def time(self) -> float:
        return UPDATED_AT


def save(path: Path, checkpoint: Checkpoint, *, name: str = "tail") -> None:
    with SQLiteCheckpointStore(path, clock=FixedClock()) as store:
        store.load_sync(checkpoint.stream_arn, name=name)
        store.save_sync(checkpoint, name=name)


def load(path: Path, stream_arn: str, *, name: str = "tail") -> Checkpoint | None:
    with SQLiteCheckpointStore(path) as store:
        return store.load_sync(stream_arn, name=name)


def stored_keys(path: Path) -> list[tuple[str, str]]:
    with SQLiteCheckpointStore(path) as store:
        return [(s.name, s.stream_arn) for s in store.list_sync()]


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured; returns (status, stdout, stderr)."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(list(argv))
    stdout.flush()
    assert isinstance(stdout.buffer, io.BytesIO)
    return status, stdout.buffer.getvalue().decode("utf-8"), stderr.getvalue()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def file(tmp_path: Path) -> Path:
    """A checkpoint file with four checkpoints: two names, two tables, two streams of one."""
    path = tmp_path / "checkpoints.sqlite"
    save(path, Checkpoint(ARN_A, {SHARD: SEQ}, frozenset({ROOT}), {CHILD: SHARD_TRIM_HORIZON}))
    save(path, Checkpoint(ARN_A_OLD, finished=frozenset({ROOT})))
    save(path, Checkpoint(ARN_B, pending={SHARD: ShardStart("LATEST")}))
    save(path, Checkpoint(ARN_A, {SHARD: "7"}), name="billing")
    return path


class FakeTerminal(io.StringIO):
    """A stdin that is a terminal, with the user's answer already typed."""

    def isatty(self) -> bool:
        return True


# -- checkpoints show ---------------------------------------------------------------------


def test_show_lists_every_checkpoint(file: Path) -> None:
    status, out, err = run_cli("checkpoints", "show", str(file))

    assert (status, err) == (0, "")
    blocks = out.split("\n\n")
    assert [block.splitlines()[:2] for block in blocks] == [
        ["name     billing", f"stream   {ARN_A}"],
        ["name     tail", f"stream   {ARN_A_OLD}"],
        ["name     tail", f"stream   {ARN_A}"],
        ["name     tail", f"stream   {ARN_B}"],
    ]
    assert blocks[2] + "\n" == (
        "name     tail\n"
        f"stream   {ARN_A}\n"
        "version  1\n"
        "updated  2025-11-29T06:31:20.250Z\n"
        "shards   1 in progress, 1 finished, 1 pending\n"
        f"  {ROOT}  finished\n"
        f"  {SHARD}  after {SEQ}\n"
        f"  {CHILD}  pending, starts at trim horizon\n"
    )
    assert blocks[3].splitlines()[-2:] == [
        "shards   0 in progress, 0 finished, 1 pending",
        f"  {SHARD}  pending, starts at latest",
    ]


def test_show_json_prints_the_stored_documents(file: Path) -> None:
    status, out, err = run_cli("checkpoints", "show", str(file), "--json", "--name", "tail")

    assert (status, err) == (0, "")
    documents = json.loads(out)
    assert [(d["name"], d["streamArn"], d["version"]) for d in documents] == [
        ("tail", ARN_A_OLD, 1),
        ("tail", ARN_A, 1),
        ("tail", ARN_B, 1),
    ]
    assert documents[1]["updatedAt"] == "2025-11-29T06:31:20.250Z"
    assert documents[1]["checkpoint"] == {
        "version": 1,
        "stream_arn": ARN_A,
        "positions": {SHARD: SEQ},
        "finished": [ROOT],
        "pending": {CHILD: {"type": "TRIM_HORIZON"}},
    }
    assert Checkpoint.from_json(documents[1]["checkpoint"]) == load(file, ARN_A)


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (["--stream", ARN_A], [("billing", ARN_A), ("tail", ARN_A)]),
        # A table name matches every stream of the table, old and new.
        (["--stream", "orders"], [("billing", ARN_A), ("tail", ARN_A_OLD), ("tail", ARN_A)]),
        (["--stream", "orders", "--name", "tail"], [("tail", ARN_A_OLD), ("tail", ARN_A)]),
        (["--name", "billing"], [("billing", ARN_A)]),
        (["--stream", "users"], [("tail", ARN_B)]),
    ],
)
def test_show_filters_by_name_and_stream(
    file: Path, filters: list[str], expected: list[tuple[str, str]]
) -> None:
    status, out, err = run_cli("checkpoints", "show", str(file), "--json", *filters)

    assert (status, err) == (0, "")
    assert [(d["name"], d["streamArn"]) for d in json.loads(out)] == expected


def test_show_nothing_matching_is_not_an_error(file: Path, tmp_path: Path) -> None:
    assert run_cli("checkpoints", "show", str(file), "--stream", "nothing") == (
        0,
        f"no checkpoints in {file} for stream nothing\n",
        "",
    )
    assert run_cli("checkpoints", "show", str(file), "--name", "x", "--json") == (0, "[]\n", "")


def test_show_many_shards_lists_the_first_ones(tmp_path: Path) -> None:
    path = tmp_path / "many.sqlite"
    shards = {f"shardId-{n:020d}-00000000": f"{n + 1}" for n in range(25)}
    save(path, Checkpoint(ARN_A, shards))

    status, out, err = run_cli("checkpoints", "show", str(path))

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[4] == "shards   25 in progress, 0 finished, 0 pending"
    assert lines[5] == "  shardId-00000000000000000000-00000000  after 1"
    assert len(lines) == 5 + 20 + 1
    assert lines[-1] == "  … and 5 more shards (--json lists every one)"
    _, out, _ = run_cli("checkpoints", "show", str(path), "--json")
    assert json.loads(out)[0]["checkpoint"]["positions"] == shards


def test_show_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"

    status, out, err = run_cli("checkpoints", "show", str(missing))

    assert (status, out) == (1, "")
    assert f"checkpoint file {missing} does not exist" in one_error_line(err)
    assert not missing.exists()


def test_show_file_that_is_not_a_database_is_an_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"this is not a SQLite database, just some text\n" * 100)

    status, out, err = run_cli("checkpoints", "show", str(garbage))

    assert (status, out) == (1, "")
    assert "is not a SQLite database" in one_error_line(err)


def test_show_other_sqlite_database_is_an_error(tmp_path: Path) -> None:
    other = tmp_path / "other.sqlite"
    with contextlib.closing(sqlite3.connect(other)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.commit()

    status, out, err = run_cli("checkpoints", "show", str(other))

    assert (status, out) == (1, "")
    assert "not a ddbstreams checkpoint file" in one_error_line(err)


def corrupt(path: Path, name: str, stream_arn: str, text: str = "{not json") -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute(
            "UPDATE checkpoints SET checkpoint = ? WHERE name = ? AND stream_arn = ?",
            (text, name, stream_arn),
        )
        conn.commit()


def test_show_corrupt_entry_is_an_error(file: Path) -> None:
    corrupt(file, "tail", ARN_B)

    status, out, err = run_cli("checkpoints", "show", str(file))

    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert "corrupt checkpoint" in line
    assert ARN_B in line


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["checkpoints"], "required: ACTION"),
        (["checkpoints", "show"], "required: FILE"),
        (["checkpoints", "reset", "f.sqlite"], "one of the arguments --stream --all is required"),
        (["checkpoints", "reset", "f", "--all", "--stream", "t1x"], "not allowed with argument"),
        (["checkpoints", "show", "f", "--stream", "arn:aws:nope"], "invalid stream ARN"),
        (["checkpoints", "show", "f", "--stream", "no/table"], "neither a stream ARN nor a table"),
        (["tail", "orders", "--name", "x"], "--name needs --checkpoint FILE"),
    ],
)
def test_usage_errors(argv: list[str], fragment: str) -> None:
    status, out, err = run_cli(*argv)

    assert (status, out) == (2, "")
    assert fragment in one_error_line(err)


def test_help_texts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "checkpoints" in capsys.readouterr().out
    assert main(["tail", "--help"]) == 0
    tail_help = " ".join(capsys.readouterr().out.split())
    assert "--checkpoint FILE" in tail_help
    assert "--name NAME" in tail_help
    assert "(default: tail)" in tail_help
    assert "with --checkpoint only when no checkpoint is stored" in tail_help
    assert main(["checkpoints", "reset", "--help"]) == 0
    reset_help = " ".join(capsys.readouterr().out.split())
    assert "-y, --yes" in reset_help
    assert "--all" in reset_help
    assert main(["checkpoints", "show", "--help"]) == 0
    assert "--json" in capsys.readouterr().out


# -- checkpoints reset --------------------------------------------------------------------


def test_reset_one_stream_by_arn(file: Path) -> None:
    status, out, err = run_cli(
        "checkpoints", "reset", str(file), "--name", "tail", "--stream", ARN_A, "--yes"
    )

    assert (status, err) == (0, "")
    assert out == f"reset name 'tail', stream {ARN_A}, version 1\n"
    assert stored_keys(file) == [("billing", ARN_A), ("tail", ARN_A_OLD), ("tail", ARN_B)]


def test_reset_deletes_what_show_lists(file: Path) -> None:
    _, shown, _ = run_cli("checkpoints", "show", str(file), "--json", "--stream", "orders")

    status, out, err = run_cli("checkpoints", "reset", str(file), "--stream", "orders", "-y")

    assert (status, err) == (0, "")
    reset = [(d["name"], d["streamArn"]) for d in json.loads(shown)]
    assert out.splitlines() == [
        f"reset name {name!r}, stream {arn}, version 1" for name, arn in reset
    ]
    assert stored_keys(file) == [("tail", ARN_B)]


def test_reset_all_of_one_name_and_all(file: Path) -> None:
    status, out, _ = run_cli("checkpoints", "reset", str(file), "--all", "--name", "tail", "--yes")

    assert status == 0
    assert len(out.splitlines()) == 3
    assert stored_keys(file) == [("billing", ARN_A)]

    assert run_cli("checkpoints", "reset", str(file), "--all", "--yes")[0] == 0
    assert stored_keys(file) == []
    assert run_cli("checkpoints", "show", str(file)) == (0, f"no checkpoints in {file}\n", "")


def test_reset_nothing_matching(file: Path) -> None:
    status, out, err = run_cli("checkpoints", "reset", str(file), "--stream", "nothing", "--yes")

    assert (status, err) == (0, "")
    assert out == f"nothing to reset: no checkpoints in {file} for stream nothing\n"
    assert len(stored_keys(file)) == 4


def test_reset_without_yes_and_without_terminal_refuses(
    file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO("y\n"))  # not a terminal

    status, out, err = run_cli("checkpoints", "reset", str(file), "--all")

    assert (status, out) == (2, "")
    assert "refusing to reset without --yes" in one_error_line(err)
    assert len(stored_keys(file)) == 4


@pytest.mark.parametrize("answer", ["y\n", "yes\n", "Y\n"])
def test_reset_on_a_terminal_asks_first(
    file: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))

    status, out, err = run_cli("checkpoints", "reset", str(file), "--stream", ARN_B)

    assert status == 0
    assert err == (
        f"  name 'tail', stream {ARN_B}, version 1\nreset 1 checkpoint in {file}? [y/N] "
    )
    assert out == f"reset name 'tail', stream {ARN_B}, version 1\n"
    assert ("tail", ARN_B) not in stored_keys(file)


@pytest.mark.parametrize("answer", ["n\n", "\n", "", "maybe\n"])
def test_reset_declined_changes_nothing(
    file: Path, monkeypatch: pytest.MonkeyPatch, answer: str
) -> None:
    monkeypatch.setattr(sys, "stdin", FakeTerminal(answer))

    status, out, err = run_cli("checkpoints", "reset", str(file), "--stream", "orders")

    assert (status, out) == (1, "")
    assert "reset 3 checkpoints in" in err
    assert err.endswith("[y/N] ddbstreams: nothing reset\n")
    assert len(stored_keys(file)) == 4


def test_reset_missing_file_is_an_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.sqlite"

    status, out, err = run_cli("checkpoints", "reset", str(missing), "--all", "--yes")

    assert (status, out) == (1, "")
    assert "does not exist" in one_error_line(err)
    assert not missing.exists()


def test_reset_corrupt_file_is_an_error(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"\x00garbage" * 512)

    status, out, err = run_cli("checkpoints", "reset", str(garbage), "--all", "--yes")

    assert (status, out) == (1, "")
    assert "is not a SQLite database" in one_error_line(err)
    assert garbage.read_bytes() == b"\x00garbage" * 512


def test_reset_corrupt_entry_by_its_exact_key(file: Path) -> None:
    corrupt(file, "tail", ARN_B)

    # Selecting by table name needs every entry read: the error says how to get out.
    status, _, err = run_cli("checkpoints", "reset", str(file), "--stream", "users", "--yes")
    assert status == 1
    assert "--name NAME --stream STREAM_ARN" in one_error_line(err)

    status, out, err = run_cli(
        "checkpoints", "reset", str(file), "--name", "tail", "--stream", ARN_B, "--yes"
    )

    assert (status, err) == (0, "")
    assert out == f"reset name 'tail', stream {ARN_B}, unreadable\n"
    assert run_cli("checkpoints", "show", str(file), "--json")[0] == 0
    assert len(stored_keys(file)) == 3


# -- tail --checkpoint with a stand-in client and reader ---------------------------------


def make_records(count: int) -> list[Record]:
    raw = [
        {
            "eventID": f"event-{n}",
            "eventName": "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": {
                "ApproximateCreationDateTime": 1764397880,
                "Keys": {"pk": {"S": f"k{n}"}},
                "NewImage": {"pk": {"S": f"k{n}"}},
                "SequenceNumber": f"{100 + n:021d}",
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        for n in range(count)
    ]
    return DefaultParser().parse_records(raw, SHARD)


class Script:
    """What the stand-in reader does: prepared batches, then an error, or ``then`` (if set)
    and a wait for records that never come (like a reader on an idle stream)."""

    def __init__(self) -> None:
        records = make_records(9)
        self.batches = [records[0:3], records[3:6], records[6:9]]
        self.error_after_batches: BaseException | None = None
        self.then: Callable[[], None] | None = None
        self.readers: list[FakeReader] = []


class FakeClient:
    def __init__(self, **kwargs: Any) -> None:
        self.kwargs = kwargs
        self.closed = False

    async def __aenter__(self) -> FakeClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.closed = True

    async def resolve_stream(self, stream: str) -> str:
        return ARN_A if stream in ("orders", ARN_A) else ARN_B

    # The command listens to the client's retries and responses (outage notices).
    def add_retry_listener(self, listener: Callable[..., None]) -> Callable[[], None]:
        return lambda: None

    def add_response_listener(self, listener: Callable[..., None]) -> Callable[[], None]:
        return lambda: None


class FakeReader:
    """Hands out the script's batches in order, after the start position, and keeps the
    checkpoint of what it handed out, like StreamReader (the consumer's side of it).

    Once out of batches it runs the script's ``then`` when the consumer has handled every
    record handed out (it listens on the consumer's event hub), like a stream going quiet
    after what it held was printed."""

    script: Script

    def __init__(self, stream: str, **kwargs: Any) -> None:
        self.stream_arn = stream
        self.kwargs = kwargs
        self.follow: bool = kwargs["follow"]
        start = kwargs["start"]
        after = start.positions.get(SHARD) if isinstance(start, Checkpoint) else None
        self.last: str | None = after
        self.pending = [
            [r for r in batch if after is None or int(r.sequence_number) > int(after)]
            for batch in self.script.batches
        ]
        self.pending = [batch for batch in self.pending if batch]
        self.shard_finished = False
        self.exited = False
        self.handed = 0
        self.handled = 0
        self.progress = asyncio.Event()
        kwargs["event_hub"].listen(self.on_event)
        self.script.readers.append(self)

    def on_event(self, event: object) -> None:
        if isinstance(event, BatchHandled):
            self.handled += event.records
            self.progress.set()

    async def __aenter__(self) -> FakeReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited = True

    def checkpoint(self) -> Checkpoint:
        if self.shard_finished:
            return Checkpoint(self.stream_arn, finished=frozenset({SHARD}))
        if self.last is None:
            return Checkpoint(self.stream_arn, pending={SHARD: SHARD_TRIM_HORIZON})
        return Checkpoint(self.stream_arn, {SHARD: self.last})

    def pause(self, shard_id: str) -> None:
        pass

    def resume(self, shard_id: str) -> None:
        pass

    async def next_shard_batch(self, max_size: int = 1000) -> ShardBatch[Record] | None:
        if self.pending:
            batch = self.pending[0][:max_size]
            self.pending[0] = self.pending[0][max_size:]
            if not self.pending[0]:
                self.pending.pop(0)
            before = (
                SHARD_TRIM_HORIZON
                if self.last is None
                else ShardStart("AFTER_SEQUENCE_NUMBER", self.last)
            )
            self.last = batch[-1].sequence_number
            self.handed += len(batch)
            return ShardBatch(SHARD, batch, [r.sequence_number for r in batch], False, None, before)
        if self.script.error_after_batches is not None:
            raise self.script.error_after_batches
        if self.follow or self.script.then is not None:
            if self.script.then is not None:
                while self.handled < self.handed:
                    self.progress.clear()
                    await self.progress.wait()
                self.script.then()
            await asyncio.Event().wait()
        return None


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    script = Script()
    FakeReader.script = script
    monkeypatch.setattr(_cli, "StreamsClient", FakeClient)
    monkeypatch.setattr(_consumer, "StreamReader", FakeReader)
    return script


def keys_of(out: str) -> list[str]:
    return [json.loads(line)["keys"]["pk"] for line in out.splitlines()]


def position(path: Path, stream_arn: str = ARN_A, name: str = "tail") -> str | None:
    checkpoint = load(path, stream_arn, name=name)
    return None if checkpoint is None else checkpoint.positions.get(SHARD)


def seq(n: int) -> str:
    return f"{100 + n:021d}"


class CheckingStdout(io.RawIOBase):
    """A stdout that notes, each time a batch reaches it, the position saved at that moment."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = bytearray()
        self.saved_when_written: list[str | None] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.saved_when_written.append(position(self.path) if self.path.exists() else None)
        self.data += bytes(data)
        return len(data)


def test_tail_saves_after_each_printed_batch(
    script: Script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cp.sqlite"
    stdout = CheckingStdout(path)
    monkeypatch.setattr(sys, "stdout", io.TextIOWrapper(io.BufferedWriter(stdout), "utf-8"))

    assert main(["tail", "orders", "--checkpoint", str(path)]) == 0

    assert keys_of(stdout.data.decode()) == [f"k{n}" for n in range(9)]
    # A batch is printed before the position that covers it is saved, never after.
    assert stdout.saved_when_written == [None, seq(2), seq(5)]
    assert position(path) == seq(8)
    (reader,) = script.readers
    assert reader.stream_arn == ARN_A  # resolved before the reader is made
    assert reader.kwargs["start"] == TRIM_HORIZON
    assert reader.kwargs["options"].on_trimmed == "raise"
    assert reader.exited


def test_tail_resumes_and_checkpoint_wins_over_from(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    save(path, Checkpoint(ARN_A, {SHARD: seq(4)}))

    status, out, err = run_cli("tail", ARN_A, "--checkpoint", str(path), "--from", "latest")

    assert status == 0
    assert keys_of(out) == ["k5", "k6", "k7", "k8"]
    assert err == (
        f"ddbstreams: resuming from the checkpoint in {path} (name 'tail'); --from only "
        "applies when no checkpoint is stored\n"
    )
    assert script.readers[0].kwargs["start"] == Checkpoint(ARN_A, {SHARD: seq(4)})
    assert position(path) == seq(8)


def test_tail_without_checkpoint_starts_at_from(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"

    status, _, err = run_cli(
        "tail", "orders", "--checkpoint", str(path), "--from", "latest", "-v", "--name", "n1"
    )

    assert status == 0
    assert script.readers[0].kwargs["start"] == LATEST
    lines = err.splitlines()
    assert lines[:2] == [
        f"ddbstreams: no checkpoint in {path} (name 'n1') for this stream yet: starting at latest",
        f"ddbstreams: reading {ARN_A}",
    ]
    assert lines[-2:] == [
        "ddbstreams: reader stopped",
        f"ddbstreams: checkpoint saved in {path} (name 'n1')",
    ]
    # In between, the consumer's events: each batch handled, each save.
    progress = lines[2:-2]
    handled = [line for line in progress if line.startswith("ddbstreams: batch handled: ")]
    assert [line.split(" of ")[0] for line in handled] == [
        "ddbstreams: batch handled: 3 records"
    ] * 3
    saves = [line for line in progress if line not in handled]
    assert saves
    assert set(saves) == {f"ddbstreams: checkpoint saved: 'n1', stream {ARN_A}"}
    assert position(path, name="n1") == seq(8)
    assert stored_keys(path) == [("n1", ARN_A)]


def test_tail_max_records_saves_exactly_what_was_printed(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"

    assert keys_of(
        run_cli("tail", "orders", "--checkpoint", str(path), "--max-records", "4")[1]
    ) == [
        "k0",
        "k1",
        "k2",
        "k3",
    ]
    assert position(path) == seq(3)
    status, out, _ = run_cli("tail", "orders", "--checkpoint", str(path), "--max-records", "4")
    assert (status, keys_of(out)) == (0, ["k4", "k5", "k6", "k7"])
    assert position(path) == seq(7)


class BrokenAfterFirstBatch(io.RawIOBase):
    def __init__(self) -> None:
        self.writes = 0

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.writes += 1
        if self.writes > 1:
            raise BrokenPipeError(32, "Broken pipe")
        return len(data)


def test_tail_broken_pipe_saves_only_what_was_printed(
    script: Script, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "cp.sqlite"
    stdout = io.TextIOWrapper(io.BufferedWriter(BrokenAfterFirstBatch()), "utf-8")
    monkeypatch.setattr(sys, "stdout", stdout)

    assert main(["tail", "orders", "--checkpoint", str(path)]) == 0

    # The second batch was taken from the reader but never printed: not in the checkpoint.
    assert position(path) == seq(2)


def test_tail_error_saves_what_was_printed_then_reports(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    script.error_after_batches = StreamNotFoundError("stream went away")

    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))

    assert status == 1
    assert len(out.splitlines()) == 9
    assert "stream went away" in one_error_line(err)
    assert position(path) == seq(8)


def test_tail_trimmed_error_says_how_to_start_over(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    script.batches = []
    script.error_after_batches = TrimmedDataError("records of shard x were trimmed")

    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))

    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert "records of shard x were trimmed; to start over: ddbstreams checkpoints reset " in line
    assert line.endswith(f"--name tail --stream {ARN_A} --yes")


def test_tail_corrupt_checkpoint_is_one_line(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    save(path, Checkpoint(ARN_A, {SHARD: SEQ}))
    corrupt(path, "tail", ARN_A, json.dumps(Checkpoint(ARN_B, {SHARD: SEQ}).to_json()))

    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))

    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert f"names stream {ARN_B}" in line
    assert "to start over: ddbstreams checkpoints reset" in line
    assert script.readers == []


def test_tail_checkpoint_file_that_is_not_a_database(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    path.write_bytes(b"not a database at all" * 100)

    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))

    assert (status, out) == (1, "")
    assert "is not a SQLite database" in one_error_line(err)


def test_tail_corrupt_entry_hint_works_when_followed(script: Script, tmp_path: Path) -> None:
    path = tmp_path / "cp.sqlite"
    save(path, Checkpoint(ARN_A, {SHARD: SEQ}))
    corrupt(path, "tail", ARN_A)

    status, _, err = run_cli("tail", "orders", "--checkpoint", str(path))
    assert status == 1
    command = shlex.split(one_error_line(err).split("; to start over: ", 1)[1])
    assert command[:3] == ["ddbstreams", "checkpoints", "reset"]

    assert run_cli(*command[1:])[0] == 0
    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))
    assert (status, err) == (0, "")
    assert keys_of(out) == [f"k{n}" for n in range(9)]


UNUSABLE = ["not-sqlite", "other-database", "directory"]


def make_unusable(kind: str, path: Path) -> Callable[[Path], None]:
    """Put an unusable checkpoint file at ``path``: bytes that are not SQLite, another
    application's SQLite database, or a directory. Returns a check that what was there is
    untouched (given where it is now)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "not-sqlite":
        data = b"not a database at all\n" * 100
        path.write_bytes(data)

        def same_bytes(where: Path) -> None:
            assert where.read_bytes() == data

        return same_bytes
    if kind == "other-database":
        with contextlib.closing(sqlite3.connect(path)) as conn:
            conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
            conn.execute("INSERT INTO users (email) VALUES ('a@example.com')")
            conn.commit()

        def same_rows(where: Path) -> None:
            with contextlib.closing(sqlite3.connect(where)) as conn:
                assert conn.execute("SELECT email FROM users").fetchall() == [("a@example.com",)]

        return same_rows
    path.mkdir()
    (path / "notes.txt").write_text("mine")

    def same_directory(where: Path) -> None:
        assert [p.name for p in where.iterdir()] == ["notes.txt"]

    return same_directory


def follow_move_hint(line: str, path: Path) -> Path:
    """Run the command that ``line``'s hint suggests: a ``mv`` of the file out of the way.
    Returns where the file went."""
    assert "checkpoints reset" not in line  # that fails on this file with the same error
    hint = line.split("to start over", 1)[1]
    assert ": mv " in hint, line
    command = ["mv", *shlex.split(hint.split(": mv ", 1)[1])[:2]]
    assert command[:2] == ["mv", str(path)]
    subprocess.run(command, check=True, timeout=30)
    assert not path.exists()
    return Path(command[2])


@pytest.mark.parametrize("kind", UNUSABLE)
def test_tail_unusable_checkpoint_file_says_how_to_start_over(
    script: Script, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "my checkpoints" / "cp.sqlite"
    untouched = make_unusable(kind, path)

    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))

    assert (status, out) == (1, "")
    moved = follow_move_hint(one_error_line(err), path)
    untouched(moved)
    assert script.readers == []
    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))
    assert (status, err) == (0, "")
    assert keys_of(out) == [f"k{n}" for n in range(9)]
    assert position(path) == seq(8)
    untouched(moved)


@pytest.mark.parametrize("kind", UNUSABLE)
def test_reset_unusable_checkpoint_file_says_how_to_start_over(
    script: Script, tmp_path: Path, kind: str
) -> None:
    path = tmp_path / "my checkpoints" / "cp.sqlite"
    untouched = make_unusable(kind, path)
    (path.parent / "cp.sqlite.bak").write_text("an older backup, to be kept")

    status, out, err = run_cli("checkpoints", "reset", str(path), "--all", "--yes")

    assert (status, out) == (1, "")
    line = one_error_line(err)
    moved = follow_move_hint(line, path)
    assert moved != path.parent / "cp.sqlite.bak"  # never onto something that exists
    untouched(moved)
    assert (path.parent / "cp.sqlite.bak").read_text() == "an older backup, to be kept"
    # Started over: the next tail prints everything and keeps a checkpoint in a new file.
    status, out, err = run_cli("tail", "orders", "--checkpoint", str(path))
    assert (status, err) == (0, "")
    assert keys_of(out) == [f"k{n}" for n in range(9)]
    assert stored_keys(path) == [("tail", ARN_A)]


def finish_shard_then(script: Script, signum: signal.Signals) -> Callable[[], None]:
    """A ``then`` that changes the reader's checkpoint without a batch (as an empty page
    that ends a shard does), then raises ``signum``: only a save at exit can store it."""

    def then() -> None:
        script.readers[0].shard_finished = True
        signal.raise_signal(signum)

    return then


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_follow_stopped_by_a_signal_saves_at_exit(
    script: Script, tmp_path: Path, signum: signal.Signals
) -> None:
    path = tmp_path / "cp.sqlite"
    script.then = finish_shard_then(script, signum)

    status, out, err = run_cli("tail", "orders", "-f", "--checkpoint", str(path))

    assert (status, err) == (0, "")
    assert len(out.splitlines()) == 9
    assert load(path, ARN_A) == Checkpoint(ARN_A, finished=frozenset({SHARD}))
    assert script.readers[0].exited


def test_single_pass_interrupted_saves_at_exit(
    script: Script, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "cp.sqlite"
    script.then = finish_shard_then(script, signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler

    assert main(["tail", "orders", "--checkpoint", str(path)]) == 130

    assert len(capsys.readouterr().out.splitlines()) == 9
    assert load(path, ARN_A) == Checkpoint(ARN_A, finished=frozenset({SHARD}))


# -- against DynamoDB Local ---------------------------------------------------------------


@pytest.fixture
def engine_env(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment for the command: the engine's dummy credentials and no other AWS
    setting of the machine running the tests."""
    kwargs = ddb_local.client_kwargs()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return dict(os.environ)


Tail = Callable[..., list[dict[str, Any]]]


@pytest.fixture
def tail(ddb_local: DynamoDBLocal, engine_env: dict[str, str], tmp_path: Path) -> Tail:
    """Run ``tail STREAM --checkpoint <tmp file> [options]`` in process; returns the records
    printed (and checks that it succeeded without a word on stderr)."""
    connection = ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]

    def run(stream: str, *options: str, path: Path = tmp_path / "cp.sqlite") -> list[Any]:
        status, out, err = run_cli("tail", stream, "--checkpoint", str(path), *options, *connection)
        assert (status, err) == (0, "")
        return [json.loads(line) for line in out.splitlines()]

    return run


def pks(records: list[dict[str, Any]]) -> list[str]:
    return [record["keys"]["pk"] for record in records]


@pytest.mark.integration
def test_tail_checkpoint_prints_each_record_once(
    tail: Tail, source_table: SourceTable, tmp_path: Path
) -> None:
    for pk in ("a", "b", "c"):
        source_table.put({"pk": pk})

    first = tail(source_table.stream_arn)
    assert pks(first) == ["a", "b", "c"]
    assert tail(source_table.stream_arn) == []
    source_table.put({"pk": "d"})
    source_table.update({"pk": "a"}, set={"v": 1})
    third = tail(source_table.name)  # by table name: the same stream, the same checkpoint

    assert [(r["eventName"], r["keys"]["pk"]) for r in third] == [("INSERT", "d"), ("MODIFY", "a")]
    checkpoint = load(tmp_path / "cp.sqlite", source_table.stream_arn)
    assert checkpoint is not None
    assert checkpoint.positions == {third[-1]["shardId"]: third[-1]["sequenceNumber"]}
    assert stored_keys(tmp_path / "cp.sqlite") == [("tail", source_table.stream_arn)]


@pytest.mark.integration
def test_tail_max_records_then_continue(tail: Tail, source_table: SourceTable) -> None:
    for pk in ("a", "b", "c", "d", "e"):
        source_table.put({"pk": pk})

    assert pks(tail(source_table.stream_arn, "--max-records", "2")) == ["a", "b"]
    assert pks(tail(source_table.stream_arn, "--max-records", "1")) == ["c"]
    assert pks(tail(source_table.stream_arn)) == ["d", "e"]


@pytest.mark.integration
def test_show_and_reset_then_tail_starts_over(
    tail: Tail, source_table: SourceTable, tmp_path: Path
) -> None:
    path = tmp_path / "cp.sqlite"
    for pk in ("a", "b", "c"):
        source_table.put({"pk": pk})
    printed = tail(source_table.stream_arn)
    tail(source_table.stream_arn, "--name", "other", "--max-records", "1")
    last = printed[-1]

    status, out, err = run_cli("checkpoints", "show", str(path), "--name", "tail")

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[:3] == ["name     tail", f"stream   {source_table.stream_arn}", "version  1"]
    assert lines[4:] == [
        "shards   1 in progress, 0 finished, 0 pending",
        f"  {last['shardId']}  after {last['sequenceNumber']}",
    ]
    _, out, _ = run_cli("checkpoints", "show", str(path), "--json", "--stream", source_table.name)
    assert [(d["name"], d["version"]) for d in json.loads(out)] == [("other", 1), ("tail", 1)]

    status, out, err = run_cli(
        "checkpoints",
        "reset",
        str(path),
        "--name",
        "tail",
        "--stream",
        source_table.stream_arn,
        "-y",
    )

    assert (status, err) == (0, "")
    assert out == f"reset name 'tail', stream {source_table.stream_arn}, version 1\n"
    assert pks(tail(source_table.stream_arn)) == ["a", "b", "c"]
    # The other name kept its own position.
    assert pks(tail(source_table.stream_arn, "--name", "other")) == ["b", "c"]


@pytest.mark.integration
def test_tail_checkpoint_with_a_vanished_shard_is_an_error(
    ddb_local: DynamoDBLocal, engine_env: dict[str, str], source_table: SourceTable, tmp_path: Path
) -> None:
    # A checkpoint position in a shard the stream no longer lists: its records were trimmed.
    path = tmp_path / "cp.sqlite"
    source_table.put({"pk": "a"})
    gone = "shardId-00000001000000000000-deadbeef"
    save(path, Checkpoint(source_table.stream_arn, {gone: "000000000000000000001"}))
    connection = ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]

    status, out, err = run_cli("tail", source_table.name, "--checkpoint", str(path), *connection)

    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert gone in line
    assert f"--stream {source_table.stream_arn} --yes" in line
    # Nothing was skipped: the checkpoint is untouched.
    assert load(path, source_table.stream_arn) == Checkpoint(
        source_table.stream_arn, {gone: "000000000000000000001"}
    )


@pytest.fixture
def follow_env(engine_env: dict[str, str]) -> dict[str, str]:
    return {name: value for name, value in engine_env.items() if name != "PYTHONUNBUFFERED"}


@pytest.mark.integration
def test_follow_checkpoint_saved_on_sigint(
    ddb_local: DynamoDBLocal,
    follow_env: dict[str, str],
    tail: Tail,
    source_table: SourceTable,
    tmp_path: Path,
) -> None:
    path = tmp_path / "cp.sqlite"
    connection = ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]
    source_table.put({"pk": "a"})
    source_table.put({"pk": "b"})
    following = FollowingTail(
        [source_table.stream_arn, "-f", "--checkpoint", str(path), *connection], follow_env
    )
    try:
        assert [following.next_record()["keys"]["pk"] for _ in range(2)] == ["a", "b"]
        source_table.put({"pk": "c"})
        third = following.next_record()
        assert third["keys"]["pk"] == "c"

        status, rest, stderr = following.stop(signal.SIGINT)
    finally:
        following.kill()

    assert (status, rest, stderr) == (0, [], "")
    checkpoint = load(path, source_table.stream_arn)
    assert checkpoint is not None
    assert checkpoint.positions == {third["shardId"]: third["sequenceNumber"]}
    # A later run prints only what the follow did not.
    assert tail(source_table.stream_arn) == []
    source_table.put({"pk": "d"})
    assert pks(tail(source_table.stream_arn)) == ["d"]
