"""Unit tests of the pure parts of starting at a time: ``at_time``, the shard start's time
filter and its JSON form, lineage's choice of shards, the per-page filter, the CLI forms."""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import ddbstreams
from ddbstreams import (
    TRIM_HORIZON,
    AtTime,
    Checkpoint,
    CheckpointError,
    ConfigurationError,
    InvalidPositionError,
    RecordsSkipped,
    ShardStart,
    at_time,
)
from ddbstreams.cli import _render
from ddbstreams.cli._group import _starting_position
from ddbstreams.cli._main import main, parse_position
from ddbstreams.cli._moments import moment_text, parse_ago, parse_time
from ddbstreams.lineage._graph import LineageTracker, ShardGraph, plan_reads
from ddbstreams.model._position import (
    SHARD_TRIM_HORIZON,
    creation_time_resolution,
    creation_time_threshold,
)
from ddbstreams.model._types import Record, Shard
from ddbstreams.reading._state import ReadState
from ddbstreams.reading._timefilter import TimedParser, TimeFilter, first_at_or_after

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
LOCAL_ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/orders/stream/2026-01-01T00:00:00.000"
MOMENT = datetime(2026, 12, 1, 10, 0, 0, tzinfo=UTC)
MOMENT_MS = int(MOMENT.timestamp() * 1000)


def sid(offset_ms: int, tag: int) -> str:
    """A shard id created ``offset_ms`` milliseconds after MOMENT."""
    return f"shardId-{MOMENT_MS + offset_ms:020d}-{tag:08x}"


def shard(shard_id: str, parent: str | None = None, *, closed: bool = True) -> Shard:
    return Shard(shard_id, parent, "100", "200" if closed else None)


def filtered(moment: datetime = MOMENT) -> ShardStart:
    return ShardStart("TRIM_HORIZON", not_before=moment)


# -- at_time ---------------------------------------------------------------------------------


def test_at_time_keeps_an_aware_moment_in_utc() -> None:
    paris = timezone(timedelta(hours=1))
    position = at_time(datetime(2026, 12, 1, 11, 0, tzinfo=paris))

    assert isinstance(position, AtTime)
    assert position.moment == MOMENT
    assert position.moment.tzinfo is UTC
    assert position == at_time(MOMENT)
    assert repr(position) == "at_time(2026-12-01T10:00:00+00:00)"


@pytest.mark.parametrize("moment", [datetime(2026, 12, 1, 10, 0), "2026-12-01T10:00:00Z", 0])
def test_at_time_refuses_naive_datetimes_and_other_values(moment: Any) -> None:
    with pytest.raises(InvalidPositionError) as raised:
        at_time(moment)

    assert isinstance(raised.value, ConfigurationError)
    if isinstance(moment, datetime):
        assert "naive datetime" in str(raised.value)
        assert "tzinfo=UTC" in str(raised.value)


def test_at_time_is_exported_and_accepted_as_a_consumer_starting_position() -> None:
    assert ddbstreams.at_time is at_time
    assert "at_time" in ddbstreams.__all__
    assert "AtTime" in ddbstreams.__all__
    assert "RecordsSkipped" in ddbstreams.__all__
    options = ddbstreams.ConsumerOptions(starting_position=at_time(MOMENT))
    assert options.starting_position == at_time(MOMENT)


def test_a_group_refuses_a_time_its_leases_cannot_hold(tmp_path: Any) -> None:
    with pytest.raises(ConfigurationError, match="a group starts at TRIM_HORIZON"):
        ddbstreams.Consumer(
            ARN,
            lambda records: None,
            group="orders-app",
            options=ddbstreams.ConsumerOptions(starting_position=at_time(MOMENT)),
        )


# -- rounding --------------------------------------------------------------------------------


def test_the_resolution_is_a_minute_on_dynamodb_local_and_a_second_on_aws() -> None:
    assert creation_time_resolution(ARN) == 1
    assert creation_time_resolution(LOCAL_ARN) == 60
    assert creation_time_resolution("not an arn") == 1


def test_the_threshold_is_the_moment_rounded_down() -> None:
    moment = datetime(2026, 12, 1, 10, 0, 42, 700_000, tzinfo=UTC)

    assert (
        creation_time_threshold(moment) == datetime(2026, 12, 1, 10, 0, 42, tzinfo=UTC).timestamp()
    )
    assert creation_time_threshold(moment, 60) == MOMENT.timestamp()
    assert creation_time_threshold(MOMENT, 60) == MOMENT.timestamp()


# -- the shard start's filter and its JSON form -----------------------------------------------


def test_a_shard_start_with_a_filter_round_trips_through_json() -> None:
    start = ShardStart("AFTER_SEQUENCE_NUMBER", "123", not_before=MOMENT)

    data = start.to_json()

    assert data == {
        "type": "AFTER_SEQUENCE_NUMBER",
        "sequence_number": "123",
        "not_before": "2026-12-01T10:00:00+00:00",
    }
    assert ShardStart.from_json(data) == start
    assert start.without_filter() == ShardStart("AFTER_SEQUENCE_NUMBER", "123")
    assert SHARD_TRIM_HORIZON.to_json() == {"type": "TRIM_HORIZON"}


def test_latest_takes_no_filter_and_a_filter_must_be_aware() -> None:
    with pytest.raises(InvalidPositionError, match="LATEST takes no time filter"):
        ShardStart("LATEST", not_before=MOMENT)
    with pytest.raises(InvalidPositionError, match="naive"):
        ShardStart("TRIM_HORIZON", not_before=datetime(2026, 12, 1))


def test_a_checkpoint_keeps_pending_filters_and_older_checkpoints_still_load() -> None:
    checkpoint = Checkpoint(ARN, {"a": "150"}, frozenset({"b"}), {"c": filtered()})

    again = Checkpoint.from_json(json.dumps(checkpoint.to_json()))

    assert again == checkpoint
    assert again.pending["c"].not_before == MOMENT
    older = {
        "version": 1,
        "stream_arn": ARN,
        "positions": {"a": "150"},
        "finished": ["b"],
        "pending": {"c": {"type": "TRIM_HORIZON"}},
    }
    assert Checkpoint.from_json(older).pending == {"c": SHARD_TRIM_HORIZON}


@pytest.mark.parametrize("not_before", ["yesterday", 12, "2026-12-01T10:00:00"])
def test_a_checkpoint_with_a_bad_filter_is_corrupt(not_before: Any) -> None:
    data = Checkpoint(ARN, pending={"c": filtered()}).to_json()
    data["pending"]["c"]["not_before"] = not_before  # type: ignore[index]

    with pytest.raises(CheckpointError, match="corrupt checkpoint"):
        Checkpoint.from_json(data)


# -- lineage ---------------------------------------------------------------------------------


def test_shards_whose_children_were_created_before_the_moment_are_skipped() -> None:
    old = sid(-8 * 3600_000, 1)  # rolled over twice before the moment
    middle = sid(-4 * 3600_000, 2)
    current = sid(-3600_000, 3)  # open at the moment, rolled over after it
    newest = sid(2 * 3600_000, 4)
    graph = ShardGraph(
        [
            shard(old),
            shard(middle, old),
            shard(current, middle),
            shard(newest, current, closed=False),
        ]
    )

    plan = plan_reads(graph, at_time(MOMENT))

    assert dict(plan.starts) == {current: filtered(), newest: filtered()}
    assert plan.new_shards == filtered()
    assert not plan.excluded


def test_a_split_parent_is_read_unless_every_child_came_before_the_moment() -> None:
    parent = sid(-5 * 3600_000, 1)
    early, late = sid(-1000, 2), sid(1000, 3)
    graph = ShardGraph(
        [shard(parent), shard(early, parent, closed=False), shard(late, parent, closed=False)]
    )

    assert set(plan_reads(graph, at_time(MOMENT)).starts) == {parent, early, late}


def test_a_child_created_within_the_moments_second_keeps_its_parent() -> None:
    # The filter keeps records whose rounded time is the moment's rounded-down second, so
    # a parent that may hold such records must be read.
    moment = MOMENT + timedelta(milliseconds=900)
    parent, child = sid(-3600_000, 1), sid(300, 2)
    graph = ShardGraph([shard(parent), shard(child, parent, closed=False)])

    assert set(plan_reads(graph, at_time(moment)).starts) == {parent, child}
    assert set(plan_reads(graph, at_time(moment + timedelta(seconds=1))).starts) == {child}


def test_the_minute_resolution_of_dynamodb_local_keeps_the_moments_minute() -> None:
    parent, child = sid(-3600_000, 1), sid(20_000, 2)
    graph = ShardGraph([shard(parent), shard(child, parent, closed=False)])
    moment = MOMENT + timedelta(seconds=40)

    assert set(plan_reads(graph, at_time(moment)).starts) == {child}
    assert set(plan_reads(graph, at_time(moment), time_resolution=60).starts) == {parent, child}


def test_a_child_without_a_creation_time_keeps_its_parent() -> None:
    parent = sid(-8 * 3600_000, 1)
    graph = ShardGraph([shard(parent), shard("shardId-custom", parent, closed=False)])

    assert set(plan_reads(graph, at_time(MOMENT)).starts) == {parent, "shardId-custom"}


def test_a_child_of_a_trimmed_parent_is_a_root_and_follows_the_same_rule() -> None:
    trimmed = sid(-30 * 3600_000, 1)  # referenced, no longer listed
    root, child = sid(-20 * 3600_000, 2), sid(-2 * 3600_000, 3)
    graph = ShardGraph([shard(root, trimmed), shard(child, root, closed=False)])

    assert dict(plan_reads(graph, at_time(MOMENT)).starts) == {child: filtered()}


def test_shards_found_later_keep_the_filter() -> None:
    only = sid(-3600_000, 1)
    graph = ShardGraph([shard(only, closed=False)])
    tracker = LineageTracker(graph, plan_reads(graph, at_time(MOMENT)))
    tracker.start(only)
    tracker.end(only)

    added = tracker.add_shards([shard(only), shard(sid(3600_000, 2), only, closed=False)])

    assert [tracker.start_of(shard_id) for shard_id in added] == [filtered()]


def test_a_checkpoint_with_pending_filters_passes_them_on() -> None:
    parent, child, other = sid(-3600_000, 1), sid(3600_000, 2), sid(-3600_000, 3)
    graph = ShardGraph(
        [shard(parent), shard(child, parent, closed=False), shard(other, closed=False)]
    )
    later = MOMENT + timedelta(minutes=5)
    checkpoint = Checkpoint(ARN, pending={parent: filtered(), other: filtered(later)})

    plan = plan_reads(graph, checkpoint)

    # The child, born after the checkpoint, and shards found later keep the latest filter.
    assert dict(plan.starts) == {parent: filtered(), child: filtered(later), other: filtered(later)}
    assert plan.new_shards == filtered(later)
    assert plan_reads(graph, Checkpoint(ARN, {other: "150"})).new_shards == SHARD_TRIM_HORIZON


def test_a_pending_shard_keeps_its_filter_in_the_read_state() -> None:
    state = ReadState(ARN, {"a": filtered()})
    state.started("a", filtered(), object())
    moved = ShardStart("AFTER_SEQUENCE_NUMBER", "150", not_before=MOMENT)

    state.restarted("a", moved)

    assert state.checkpoint().pending == {"a": moved}
    state.handed("a", "160")
    assert state.checkpoint().positions == {"a": "160"}


# -- the per-page filter ----------------------------------------------------------------------


def test_first_at_or_after_is_inclusive_and_stops_at_the_first_kept_time() -> None:
    assert first_at_or_after([], 10.0) == 0
    assert first_at_or_after([10.0, 5.0], 10.0) == 0
    assert first_at_or_after([8.0, 9.0, 10.0, 3.0], 10.0) == 2
    assert first_at_or_after([8.0, 9.0], 10.0) == 2
    # A prefix cut, as an iterator at the first record of the moment would read: a later
    # record with an earlier (rounded) time is kept.
    assert first_at_or_after(iter([1.0, 11.0, 2.0]), 10.0) == 1


def record(created: datetime, sequence_number: str = "1") -> Record:
    return Record(
        "e", "INSERT", "1.1", "aws:dynamodb", "eu-west-1", {"pk": "a"}, None, None,
        sequence_number, 10, "KEYS_ONLY", created, "shard",
    )  # fmt: skip


def test_the_filter_compares_rounded_record_times_with_the_rounded_moment() -> None:
    moment = MOMENT + timedelta(seconds=30, milliseconds=500)
    on_aws = TimeFilter(moment, 1)
    on_local = TimeFilter(moment, 60)
    times = [MOMENT, MOMENT + timedelta(seconds=29), MOMENT + timedelta(seconds=30)]
    records = [record(t) for t in times]

    assert on_aws.first_kept_record(records) == 2
    assert on_aws.first_kept_time([t.timestamp() for t in times]) == 2
    # DynamoDB Local says 10:00:00 for anything in that minute: all of it is kept.
    assert on_local.first_kept_record(records) == 0
    assert on_local.first_kept_record([record(MOMENT - timedelta(minutes=1))]) == 1


def test_a_timed_parser_notes_raw_creation_times() -> None:
    class Keys:
        def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[str]:
            return [raw["dynamodb"]["SequenceNumber"] for raw in raw_records]

    timed = TimedParser(Keys())
    raw = [
        {"dynamodb": {"SequenceNumber": "1", "ApproximateCreationDateTime": 1.7e9}},
        {"dynamodb": {"SequenceNumber": "2", "ApproximateCreationDateTime": 1.8e9}},
    ]

    assert timed.parse_records(raw, "shard") == ["1", "2"]
    assert timed.times == [1.7e9, 1.8e9]


# -- the command line --------------------------------------------------------------------------


def test_from_time_and_ago_become_at_time() -> None:
    assert parse_position("time:2026-12-01T10:00:00Z") == at_time(MOMENT)
    assert parse_position("TIME:2026-12-01T11:00:00+01:00") == at_time(MOMENT)
    now = MOMENT + timedelta(minutes=15)
    assert parse_ago("15m", now) == at_time(MOMENT)
    assert parse_ago("90s", now) == at_time(now - timedelta(seconds=90))
    assert parse_ago("1.5h", now) == at_time(now - timedelta(minutes=90))
    assert parse_ago("2d", now) == at_time(now - timedelta(days=2))
    assert parse_time(" 2026-12-01T10:00:00.250Z ").moment == MOMENT + timedelta(milliseconds=250)
    assert moment_text(at_time(MOMENT)) == "time:2026-12-01T10:00:00Z"


def test_ago_counts_back_from_now() -> None:
    before = datetime.now(UTC)
    position = parse_position("ago:15m")
    after = datetime.now(UTC)

    assert isinstance(position, AtTime)
    assert before - timedelta(minutes=15) <= position.moment <= after - timedelta(minutes=15)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("time:2026-12-01T10:00:00", "has no time zone: add Z for UTC"),
        ("time:yesterday", "is not an ISO 8601 time"),
        ("time:", "is not an ISO 8601 time"),
        ("ago:15", "is not a duration"),
        ("ago:-5m", "is not a duration"),
        ("ago:5w", "is not a duration"),
        ("ago:99999d", "too long ago"),
    ],
)
def test_bad_times_are_one_line_usage_errors(
    value: str, reason: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=reason):
        parse_position(value)

    assert main(["tail", "orders", "--from", value]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    (line,) = err.splitlines()
    assert line.startswith("ddbstreams: error: argument --from: invalid position")
    assert reason in line


def test_an_unknown_form_names_the_time_forms() -> None:
    with pytest.raises(
        argparse.ArgumentTypeError, match=r"time:ISO-8601 .* or ago:N\[s\|m\|h\|d\]"
    ):
        parse_position("since:5m")


def test_run_takes_a_time_as_starting_position() -> None:
    assert _starting_position("time:2026-12-01T10:00:00Z") == at_time(MOMENT)
    assert _starting_position("LATEST") == ddbstreams.LATEST
    assert _starting_position("trim-horizon") == TRIM_HORIZON
    for bad in ("at:1", "time:2026-12-01", "ago:x"):
        with pytest.raises(argparse.ArgumentTypeError, match="invalid starting position"):
            _starting_position(bad)


def test_events_and_starts_with_a_filter_read_well() -> None:
    skipped = RecordsSkipped("shardId-1", 12, MOMENT, "4930")
    started = ddbstreams.ShardStarted("shardId-1", filtered())

    assert _render.event_to_text(skipped) == (
        "records skipped: 12 records of shardId-1 older than 2026-12-01T10:00:00Z (through 4930)"
    )
    assert _render.event_to_text(started) == (
        "shard started: shardId-1 at trim horizon, records from 2026-12-01T10:00:00Z"
    )
    consumer = ddbstreams.ConsumerStarted(ARN, "app", at_time(MOMENT))
    assert _render.event_to_text(consumer).endswith("at records from 2026-12-01T10:00:00Z")
