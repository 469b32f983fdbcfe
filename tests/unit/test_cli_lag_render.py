"""Pure parts of ``ddbstreams lag`` and of the progress of a single-pass tail: shard states
and lag from a checkpoint and what was read, the renderings, checkpoint times in JSON."""

from __future__ import annotations

from datetime import UTC, datetime

import orjson
import pytest

from ddbstreams.cli import _render
from ddbstreams.cli._lag import LagReport, Seen, ShardLag, measure_all, shard_rows
from ddbstreams.cli._progress import TailProgress
from ddbstreams.lineage._graph import ShardGraph
from ddbstreams.model._position import SHARD_TRIM_HORIZON, Checkpoint
from ddbstreams.model._types import Shard

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/T/stream/2026-01-01T00:00:00.000"
P = "shardId-00000001700000000000-aaaaaaaa"
C = "shardId-00000001700014400000-bbbbbbbb"
R = "shardId-00000001700000000000-cccccccc"


def graph() -> ShardGraph:
    return ShardGraph.from_shards(
        [
            Shard(P, None, "100000000000000000001", "100000000000000000050"),
            Shard(C, P, "100000000000000000060", None),
            Shard(R, None, "200000000000000000001", None),
        ]
    )


def test_states_from_a_checkpoint() -> None:
    checkpoint = Checkpoint(ARN, {P: "100000000000000000010"}, times={P: 1000.0})
    rows = {row.shard_id: row for row in shard_rows(graph(), checkpoint)}
    assert rows[P].state == "reading"
    assert rows[P].checkpoint_time == 1000.0
    assert rows[C].state == "waiting-for-parent"
    assert rows[R].state == "not-started"
    order = [row.shard_id for row in shard_rows(graph(), checkpoint)]
    assert order.index(P) < order.index(C)  # parents first


def test_finished_gone_and_no_lease() -> None:
    gone = "shardId-00000001690000000000-dddddddd"
    checkpoint = Checkpoint(ARN, {gone: "1" * 21}, frozenset({P}))
    rows = {row.shard_id: row for row in shard_rows(graph(), checkpoint, leased=frozenset({P}))}
    assert rows[P].state == "finished"
    assert rows[C].state == "no-lease"
    assert rows[gone].state == "gone"
    assert rows[gone].records_lost


def test_lag_is_measured_from_the_lineage_checkpoint() -> None:
    checkpoint = Checkpoint(ARN, {P: "100000000000000000010"}, times={P: 1000.0})
    rows = shard_rows(graph(), checkpoint)
    seen = {P: Seen(2, 1060.0, 1120.0), C: Seen(3, 1200.0, 1500.0), R: Seen(2, 900.0, 960.0)}
    measured = {row.shard_id: row for row in measure_all(rows, seen, read=True)}
    assert measured[P].behind == 120.0
    assert not measured[P].lower_bound
    assert measured[C].behind == 500.0  # from the parent's checkpointed record
    assert not measured[C].lower_bound
    assert measured[R].behind == 60.0  # nothing processed: from its oldest pending record
    assert measured[R].lower_bound
    report = LagReport(ARN, "file x", "file", 2000.0, True, tuple(measured.values()))
    assert report.behind == (500.0, False)
    assert report.pending == 7


def test_caught_up_and_not_read() -> None:
    checkpoint = Checkpoint(ARN, {P: "100000000000000000010"}, times={P: 1000.0})
    rows = shard_rows(graph(), checkpoint)
    caught_up = {row.shard_id: row for row in measure_all(rows, {}, read=True)}
    assert caught_up[P].behind == 0.0
    assert caught_up[P].pending == 0
    not_read = {row.shard_id: row for row in measure_all(rows, {}, read=False)}
    assert not_read[P].behind is None
    assert not_read[P].pending is None
    report = LagReport(ARN, "file x", "file", 2000.0, False, tuple(not_read.values()))
    assert report.pending is None
    assert report.behind == (None, False)


def test_lag_renderings() -> None:
    rows = (
        ShardLag(P, None, "reading", "100000000000000000010", 1000.0, "w1", 1120.0, 2, 120.0),
        ShardLag(C, P, "waiting-for-parent", newest_time=1500.0, pending=3, behind=500.0),
    )
    report = LagReport(ARN, "group 'g'", "group", 2000.0, True, rows, group=True)
    text = _render.lag_to_text(report)
    assert "behind   8m 20s (the most behind shard)" in text
    assert "pending  5 records not processed yet" in text
    assert "shards   2 (1 reading, 1 waiting-for-parent)" in text
    lines = text.splitlines()
    assert lines[7].split()[:3] == ["SHARD", "STATE", "OWNER"]
    assert lines[8].split()[:3] == [P, "reading", "w1"]
    assert "16m 40s" in lines[8]  # age: now - checkpointed record's time
    document = orjson.loads(_render.lag_to_json(report))
    assert document["behindSeconds"] == 500.0
    assert document["shards"][0]["checkpointTime"] == "1970-01-01T00:16:40Z"
    assert document["shards"][0]["checkpointAgeSeconds"] == 1000.0
    assert document["shards"][1]["owner"] is None
    file_report = LagReport(ARN, "file x", "file", 2000.0, True, rows)
    assert "OWNER" not in _render.lag_to_text(file_report)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (-3, "0s"),
        (0, "0s"),
        (59.9, "59s"),
        (60, "1m 00s"),
        (3599, "59m 59s"),
        (3600, "1h 00m"),
        (86399, "23h 59m"),
        (90000, "1d 01h"),
    ],
)
def test_format_duration(seconds: float, text: str) -> None:
    assert _render.format_duration(seconds) == text


def test_progress_line() -> None:
    assert _render.progress_line(12345, 5.0, 3, 7, 250.0) == (
        "12,345 records  2,469/s  shards 3/7 done  iterator age 4m 10s"
    )
    assert _render.progress_line(1, 0.0, 0, 1, None) == (
        "1 record  -/s  shards 0/1 done  iterator age -"
    )


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:  # pragma: no cover - not used
        self.now += seconds


class FakeReader:
    def __init__(self) -> None:
        self.done = 0

    def checkpoint(self) -> Checkpoint:
        finished = frozenset([P, C][: self.done])
        pending = {s: SHARD_TRIM_HORIZON for s in [P, C][self.done :]}
        return Checkpoint(ARN, finished=finished, pending=pending)


class FakeRecord:
    creation_time_known = True

    def __init__(self, seconds: float) -> None:
        self.approximate_creation_time = datetime.fromtimestamp(seconds, UTC)


def test_tail_progress_redraws_at_most_every_interval_and_ends_its_line() -> None:
    written: list[str] = []
    clock = FakeClock()
    progress = TailProgress(written.append, clock=clock, interval=0.5)
    reader = FakeReader()
    progress.start(reader)
    assert written == ["\r\x1b[K0 records  -/s  shards 0/2 done  iterator age -"]
    clock.now = 0.1
    progress.add([FakeRecord(999_000.0)] * 10)  # type: ignore[list-item]
    assert len(written) == 1  # too soon to redraw
    clock.now = 1.0
    reader.done = 1
    progress.add([FakeRecord(999_990.0)] * 10)  # type: ignore[list-item]
    assert written[-1] == "\r\x1b[K20 records  20/s  shards 1/2 done  iterator age 11s"
    reader.done = 2
    progress.finish()
    assert written[-2].endswith("shards 2/2 done  iterator age 11s")
    assert written[-1] == "\n"
    progress.finish()  # once only
    assert written[-1] == "\n"
    assert len(written) == 4


def test_checkpoint_times_round_trip_and_older_documents_load() -> None:
    checkpoint = Checkpoint(ARN, {P: "100000000000000000010"}, times={P: 1000.5})
    data = checkpoint.to_json()
    assert data["times"] == {P: 1000.5}
    again = Checkpoint.from_json(orjson.dumps(data))
    assert again.times == {P: 1000.5}
    assert again == Checkpoint(ARN, {P: "100000000000000000010"})  # times do not compare
    old = Checkpoint(ARN, {P: "100000000000000000010"}).to_json()
    assert "times" not in old  # stored exactly as before
    assert Checkpoint.from_json(old).times == {}
    from ddbstreams._errors import CheckpointError

    with pytest.raises(CheckpointError, match="not a number"):
        Checkpoint.from_json({**old, "times": {P: "soon"}})
