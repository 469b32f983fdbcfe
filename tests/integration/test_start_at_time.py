"""Starting at a time against DynamoDB Local: the library and ``tail --from time:/ago:``.

DynamoDB Local rounds ApproximateCreationDateTime down to the minute (AWS: to the second),
so the moment is compared rounded down to the minute there: a record of the moment's
minute is kept even when it was made before the moment, a record of an earlier minute is
dropped. The module's table holds records of two consecutive minutes (one wait for the
minute to turn, shared by the tests) to show both sides of the rule.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

import ddbstreams
from ddbstreams.cli._main import main
from ddbstreams.local import DynamoDBLocal, SourceTable

pytestmark = pytest.mark.integration

MINUTE = timedelta(minutes=1)
EVERYTHING = ["early-1", "early-2", "late-1", "early-1"]


async def read(
    engine: DynamoDBLocal, stream: str, start: Any, **kwargs: Any
) -> tuple[list[ddbstreams.Record], list[ddbstreams.ReaderEvent]]:
    events: list[ddbstreams.ReaderEvent] = []
    async with (
        ddbstreams.StreamsClient(**engine.client_kwargs()) as client,
        ddbstreams.StreamReader(
            stream, start=start, client=client, on_event=events.append, **kwargs
        ) as reader,
    ):
        return [record async for record in reader], events


def keys(records: list[ddbstreams.Record]) -> list[str]:
    return [record.keys["pk"] for record in records]


@pytest.fixture(scope="module")
def two_minutes(ddb_local: DynamoDBLocal) -> Iterator[tuple[SourceTable, datetime]]:
    """A table with ``early-*`` records in one minute and ``late-*`` ones in the next, and
    the start of the later minute."""
    table = ddb_local.source_table(f"ddbstreams-at-time-{uuid.uuid4().hex[:12]}")
    table.put({"pk": "early-1"})
    table.put({"pk": "early-2"})
    # Wait for the minute to turn (DynamoDB Local stamps records with this machine's clock).
    now = datetime.now(UTC)
    turn = now.replace(second=0, microsecond=0) + MINUTE
    time.sleep((turn - now).total_seconds() + 0.2)
    table.put({"pk": "late-1"})
    table.update({"pk": "early-1"}, set={"v": 1})
    yield table, turn
    if ddb_local.running:
        table.delete_table()


async def test_records_of_an_earlier_minute_are_dropped_those_of_the_moments_kept(
    ddb_local: DynamoDBLocal, two_minutes: tuple[SourceTable, datetime]
) -> None:
    table, turn = two_minutes
    everything, _ = await read(ddb_local, table.stream_arn, ddbstreams.TRIM_HORIZON)
    assert [r.approximate_creation_time for r in everything] == [turn - MINUTE] * 2 + [turn] * 2

    # The moment is 40 s into the later minute, after every record was made: rounded down
    # to the minute, as DynamoDB Local rounds the records, the later minute is kept.
    records, events = await read(
        ddb_local, table.stream_arn, ddbstreams.at_time(turn + timedelta(seconds=40))
    )

    assert keys(records) == ["late-1", "early-1"]
    assert [r.event_name for r in records] == ["INSERT", "MODIFY"]
    (skipped,) = [e for e in events if isinstance(e, ddbstreams.RecordsSkipped)]
    assert skipped.records == 2
    assert skipped.after_sequence_number == everything[1].sequence_number


async def test_a_moment_before_or_after_every_record(
    ddb_local: DynamoDBLocal, two_minutes: tuple[SourceTable, datetime]
) -> None:
    table, turn = two_minutes

    before, _ = await read(ddb_local, table.stream_arn, ddbstreams.at_time(turn - 2 * MINUTE))
    after, _ = await read(ddb_local, table.stream_arn, ddbstreams.at_time(turn + MINUTE))

    assert keys(before) == EVERYTHING
    assert after == []


async def test_a_checkpoint_short_of_the_moment_keeps_the_filter(
    ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    source_table.put({"pk": "a"})
    moment = datetime.now(UTC) + 3 * MINUTE  # still to come: nothing is kept yet
    async with (
        ddbstreams.StreamsClient(**ddb_local.client_kwargs()) as client,
        ddbstreams.StreamReader(
            source_table.stream_arn, start=ddbstreams.at_time(moment), client=client
        ) as reader,
    ):
        assert [record async for record in reader] == []
        checkpoint = reader.checkpoint()

    (start,) = checkpoint.pending.values()
    assert start.not_before == moment
    assert start.iterator_type == "AFTER_SEQUENCE_NUMBER"  # past what was dropped
    again = ddbstreams.Checkpoint.from_json(json.dumps(checkpoint.to_json()))
    source_table.put({"pk": "b"})

    records, _ = await read(ddb_local, source_table.stream_arn, again)

    assert records == []  # "b" is older than the moment too


def test_the_blocking_facade_takes_a_time(
    ddb_local: DynamoDBLocal,
    two_minutes: tuple[SourceTable, datetime],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    table, turn = two_minutes
    kwargs = ddb_local.client_kwargs()
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])

    records = ddbstreams.read(
        table.stream_arn,
        start=ddbstreams.at_time(turn),
        endpoint_url=kwargs["endpoint_url"],
        region_name=kwargs["region_name"],
    )

    assert keys(list(records)) == ["late-1", "early-1"]


# -- the command line ---------------------------------------------------------------------------


def run_cli(*argv: str) -> tuple[int, str, str]:
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(list(argv))
    stdout.flush()
    assert isinstance(stdout.buffer, io.BytesIO)
    return status, stdout.buffer.getvalue().decode("utf-8"), stderr.getvalue()


@pytest.fixture(scope="module")
def tail(ddb_local: DynamoDBLocal) -> Iterator[Any]:
    """``ddbstreams tail STREAM ARGS`` in process against ``ddb_local``, with dummy
    credentials and no other AWS setting of the machine."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "ddbstreamstest")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "ddbstreamstest")
        connection = ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]

        def run(stream: str, *args: str) -> tuple[int, list[str], str]:
            status, out, err = run_cli("tail", stream, *args, *connection)
            return status, [json.loads(line)["keys"]["pk"] for line in out.splitlines()], err

        yield run


def test_tail_from_a_time(tail: Any, two_minutes: tuple[SourceTable, datetime]) -> None:
    table, turn = two_minutes
    in_later_minute = (turn + timedelta(seconds=30)).strftime("%Y-%m-%dT%H:%M:%SZ")
    in_paris = (turn - MINUTE).astimezone(timezone(timedelta(hours=1))).isoformat()

    assert tail(table.stream_arn, "--from", f"time:{in_later_minute}") == (
        0,
        ["late-1", "early-1"],
        "",
    )
    assert tail(table.name, "--from", f"time:{in_paris}") == (0, EVERYTHING, "")


def test_tail_from_ago(tail: Any, two_minutes: tuple[SourceTable, datetime]) -> None:
    table, turn = two_minutes
    # A second or two into the later minute: its records are kept, the earlier ones not.
    seconds = math.floor((datetime.now(UTC) - turn).total_seconds()) - 1

    assert tail(table.stream_arn, "--from", f"ago:{seconds}s") == (0, ["late-1", "early-1"], "")
    assert tail(table.stream_arn, "--from", "ago:1d") == (0, EVERYTHING, "")
    assert tail(table.stream_arn, "--from", "AGO:0.5H") == (0, EVERYTHING, "")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("time:2026-12-01T10:00:00", "has no time zone"),
        ("time:noon", "is not an ISO 8601 time"),
        ("ago:fortnight", "is not a duration"),
    ],
)
def test_tail_refuses_bad_times_in_one_line(
    tail: Any, two_minutes: tuple[SourceTable, datetime], value: str, reason: str
) -> None:
    table, _ = two_minutes

    status, records, err = tail(table.stream_arn, "--from", value)

    assert (status, records) == (2, [])
    (line,) = err.splitlines()
    assert line.startswith(f"ddbstreams: error: argument --from: invalid position {value!r}")
    assert reason in line
