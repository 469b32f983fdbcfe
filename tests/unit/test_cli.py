"""The ``ddbstreams`` command without a service: renderings, argument errors, exit codes.

Records are built by the real parsers from wire-shaped dicts, so the JSON Lines checks cover
the decoding the CLI relies on. Command behaviour (errors, ``--max-records``, broken pipes)
is exercised through ``main([...])`` with a stand-in reader; tests/integration/test_cli.py runs
the same commands against DynamoDB Local.
"""

from __future__ import annotations

import asyncio
import io
import json
import signal
import sys
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

from ddbstreams._errors import (
    CredentialsError,
    EndpointConnectionError,
    InvalidStreamArnError,
    StreamNotFoundError,
    ThrottledError,
)
from ddbstreams._events import (
    IteratorRefreshed,
    ReaderError,
    ReaderEvent,
    RecordsTrimmed,
    RequestRetried,
    ShardFinished,
    ShardsDiscovered,
    ShardStarted,
    StreamDisabled,
    Throttled,
)
from ddbstreams.cli import _main as _cli
from ddbstreams.cli._main import main, parse_position
from ddbstreams.cli._render import (
    ASCII,
    description_to_json,
    description_to_text,
    event_to_text,
    format_time,
    record_to_jsonl,
    record_to_pretty,
)
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._position import (
    LATEST,
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    ShardStart,
)
from ddbstreams.model._types import Record, Shard, StreamDescription

SHARD = "shardId-00000001764397880000-0a1b2c3d"
BIG = "12345678901234567890123456789012345678"
JSONL_KEYS = [
    "eventID",
    "eventName",
    "shardId",
    "sequenceNumber",
    "approximateCreationDateTime",
    "keys",
    "newImage",
    "oldImage",
]

# Every attribute type, as DynamoDB Streams sends it.
EVERY_TYPE: dict[str, Any] = {
    "pk": {"S": "order#1"},
    "sk": {"N": "7"},
    "text": {"S": "héllo"},
    "empty": {"S": ""},
    "int": {"N": "-42"},
    "big": {"N": BIG},
    "decimal": {"N": "19.990"},
    "tiny": {"N": "0.000000000000000000000000000000000001"},
    "bin": {"B": "AAEC/w=="},
    "ss": {"SS": ["pear", "apple", "fig"]},
    "ns": {"NS": ["10", "2.5", "-3", BIG]},
    "bs": {"BS": ["/w==", "YQ=="]},
    "map": {"M": {"inner": {"M": {"n": {"N": "1"}, "l": {"L": [{"S": "x"}]}}}}},
    "list": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": True}, {"BOOL": False}, {"B": "AQ=="}]},
    "null": {"NULL": True},
    "yes": {"BOOL": True},
    "no": {"BOOL": False},
}


def wire_record(
    event_name: str,
    *,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    keys: dict[str, Any] | None = None,
    sequence: str = "000000000000000000001",
    created: float = 1764397880,
    view: str = "NEW_AND_OLD_IMAGES",
) -> dict[str, Any]:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": keys or {"pk": {"S": "order#1"}, "sk": {"N": "7"}},
        "SequenceNumber": sequence,
        "SizeBytes": 100,
        "StreamViewType": view,
    }
    if new is not None:
        ddb["NewImage"] = new
    if old is not None:
        ddb["OldImage"] = old
    return {
        "eventID": f"event-{sequence}",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "ddblocal",
        "dynamodb": ddb,
    }


def parse(raw: dict[str, Any], *, raw_mode: bool = False) -> Record:
    parser = RawParser() if raw_mode else DefaultParser()
    (record,) = parser.parse_records([raw], SHARD)
    return record


def exact_loads(line: bytes) -> Any:
    return json.loads(line, parse_float=Decimal)


# -- JSON Lines ---------------------------------------------------------------------------


def test_jsonl_insert_every_attribute_type() -> None:
    line = record_to_jsonl(parse(wire_record("INSERT", new=EVERY_TYPE)))

    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    obj = exact_loads(line)
    assert list(obj) == JSONL_KEYS
    assert obj["eventID"] == "event-000000000000000000001"
    assert obj["eventName"] == "INSERT"
    assert obj["shardId"] == SHARD
    assert obj["sequenceNumber"] == "000000000000000000001"
    assert obj["approximateCreationDateTime"] == "2025-11-29T06:31:20Z"
    assert obj["keys"] == {"pk": "order#1", "sk": 7}
    assert obj["oldImage"] is None
    assert obj["newImage"] == {
        "pk": "order#1",
        "sk": 7,
        "text": "héllo",
        "empty": "",
        "int": -42,
        "big": int(BIG),
        "decimal": Decimal("19.990"),
        "tiny": Decimal("1E-36"),
        "bin": "AAEC/w==",
        "ss": ["apple", "fig", "pear"],
        "ns": [-3, Decimal("2.5"), 10, int(BIG)],
        "bs": ["YQ==", "/w=="],
        "map": {"inner": {"n": 1, "l": ["x"]}},
        "list": [1, "two", None, False, "AQ=="],
        "null": None,
        "yes": True,
        "no": False,
    }
    # Numbers are written as exact literals, never through float.
    assert f'"big":{BIG},'.encode() in line
    assert b'"decimal":19.990,' in line
    assert b"e+37" not in line.lower()


def test_jsonl_modify_and_remove_images() -> None:
    old = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "count": {"N": "1"}}
    new = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "count": {"N": "2"}}
    modify = exact_loads(record_to_jsonl(parse(wire_record("MODIFY", new=new, old=old))))
    remove = exact_loads(record_to_jsonl(parse(wire_record("REMOVE", old=new))))

    assert modify["oldImage"] == {"pk": "order#1", "sk": 7, "count": 1}
    assert modify["newImage"] == {"pk": "order#1", "sk": 7, "count": 2}
    assert remove["eventName"] == "REMOVE"
    assert remove["newImage"] is None
    assert remove["oldImage"] == {"pk": "order#1", "sk": 7, "count": 2}


def test_jsonl_keys_only_record_has_null_images() -> None:
    obj = exact_loads(record_to_jsonl(parse(wire_record("INSERT", view="KEYS_ONLY"))))

    assert obj["newImage"] is None
    assert obj["oldImage"] is None
    assert obj["keys"] == {"pk": "order#1", "sk": 7}


def test_jsonl_raw_mode_passes_dynamodb_json_through() -> None:
    line = record_to_jsonl(parse(wire_record("INSERT", new=EVERY_TYPE), raw_mode=True))
    obj = json.loads(line)

    assert list(obj) == JSONL_KEYS
    assert obj["keys"] == {"pk": {"S": "order#1"}, "sk": {"N": "7"}}
    assert obj["newImage"] == EVERY_TYPE
    assert obj["oldImage"] is None


@pytest.mark.parametrize(
    ("moment", "text"),
    [
        (datetime(2026, 11, 29, 6, 31, 20, tzinfo=UTC), "2026-11-29T06:31:20Z"),
        (datetime(2026, 11, 29, 6, 31, 20, 250000, tzinfo=UTC), "2026-11-29T06:31:20.250Z"),
        (datetime(2026, 11, 29, 6, 31, 20, 123456, tzinfo=UTC), "2026-11-29T06:31:20.123456Z"),
        (datetime(2026, 11, 29, 6, 31, 20), "2026-11-29T06:31:20Z"),
        (
            datetime(2026, 11, 29, 8, 31, 20, tzinfo=timezone(timedelta(hours=2))),
            "2026-11-29T06:31:20Z",
        ),
    ],
)
def test_format_time_is_iso_utc(moment: datetime, text: str) -> None:
    assert format_time(moment) == text


def test_jsonl_fractional_creation_time() -> None:
    obj = json.loads(record_to_jsonl(parse(wire_record("INSERT", created=1764397880.5))))

    assert obj["approximateCreationDateTime"] == "2025-11-29T06:31:20.500Z"


# -- pretty -------------------------------------------------------------------------------


def test_pretty_insert_lists_new_attributes_without_repeating_keys() -> None:
    new = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "big": {"N": BIG}, "tags": {"SS": ["b", "a"]}}
    text = record_to_pretty(parse(wire_record("INSERT", new=new)))

    assert text == (
        'INSERT pk="order#1" sk=7\n'
        f"       2025-11-29T06:31:20Z  {SHARD}  seq 000000000000000000001\n"
        f"       + big: {BIG}\n"
        '       + tags: ["a","b"]\n'
    )


def test_pretty_modify_shows_a_diff() -> None:
    old = {
        "pk": {"S": "order#1"},
        "sk": {"N": "7"},
        "count": {"N": "1"},
        "gone": {"S": "bye"},
        "same": {"S": "x"},
        "flag": {"N": "1"},
        "also": {"L": []},
    }
    new = {
        "pk": {"S": "order#1"},
        "sk": {"N": "7"},
        "count": {"N": "2"},
        "same": {"S": "x"},
        "flag": {"BOOL": True},
        "added": {"M": {"a": {"NULL": True}}},
        "also": {"L": []},
    }
    text = record_to_pretty(parse(wire_record("MODIFY", new=new, old=old)))

    assert text.splitlines()[2:] == [
        '       + added: {"a":null}',
        "       ~ count: 1 → 2",
        "       ~ flag: 1 → true",
        '       - gone: "bye"',
        "       (2 unchanged)",
    ]


def test_pretty_modify_without_old_image_shows_new_values() -> None:
    new = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "count": {"N": "2"}}
    text = record_to_pretty(parse(wire_record("MODIFY", new=new, view="NEW_IMAGE")))

    assert text.splitlines()[2:] == ["       = count: 2"]


def test_pretty_remove_and_keys_only() -> None:
    old = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "blob": {"B": "AAE="}}
    remove = record_to_pretty(parse(wire_record("REMOVE", old=old)))
    keys_only = record_to_pretty(parse(wire_record("REMOVE", view="KEYS_ONLY")))
    insert_keys_only = record_to_pretty(parse(wire_record("INSERT", view="KEYS_ONLY")))

    assert remove.splitlines()[0] == 'REMOVE pk="order#1" sk=7'
    assert remove.splitlines()[2:] == ['       - blob: "AAE="']
    assert keys_only.splitlines()[2:] == ["       (old image not in stream)"]
    assert insert_keys_only.splitlines()[2:] == ["       (keys only)"]


def test_pretty_raw_mode_colour_ascii_and_width() -> None:
    new = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "long": {"S": "x" * 500}}
    old = {"pk": {"S": "order#1"}, "sk": {"N": "7"}, "long": {"S": "y"}}
    record = parse(wire_record("MODIFY", new=new, old=old), raw_mode=True)

    plain = record_to_pretty(record, glyphs=ASCII, width=40)
    coloured = record_to_pretty(record, color=True)

    assert plain.splitlines()[0] == 'MODIFY pk={"S":"order#1"} sk={"N":"7"}'
    change = plain.splitlines()[2]
    assert change.startswith('       ~ long: {"S":"y"} -> {"S":"xxx')
    assert change.endswith("...")
    assert "\x1b[" not in plain
    assert "\x1b[1m\x1b[33mMODIFY\x1b[0m" in coloured
    assert coloured.endswith("\x1b[0m\n")


# -- describe -----------------------------------------------------------------------------


def shard(suffix: str, parent: str | None, start: int, end: int | None, ms: int = 0) -> Shard:
    return Shard(
        shard_id=f"shardId-{1764397880000 + ms:020d}-{suffix}",
        parent_shard_id=parent,
        starting_sequence_number=f"{start:021d}",
        ending_sequence_number=None if end is None else f"{end:021d}",
    )


def sid(suffix: str, ms: int = 0) -> str:
    return f"shardId-{1764397880000 + ms:020d}-{suffix}"


def lineage_description() -> StreamDescription:
    # A root split in two; one child rolled over; a child whose parent was trimmed; a shard
    # listed open that already has a child (effectively closed).
    shards = (
        shard("aaaaaaaa", None, 100, 199),
        shard("bbbbbbbb", sid("aaaaaaaa"), 200, 299, ms=1000),
        shard("cccccccc", sid("aaaaaaaa"), 300, None, ms=1000),
        shard("dddddddd", sid("bbbbbbbb", ms=1000), 400, None, ms=2000),
        shard("eeeeeeee", sid("99999999", ms=-5000), 500, None, ms=3000),
        shard("ffffffff", None, 600, None, ms=4000),
        shard("00000000", sid("ffffffff", ms=4000), 700, None, ms=5000),
    )
    return StreamDescription(
        stream_arn="arn:aws:dynamodb:ddblocal:000000000000:table/orders/stream/2025-11-29T06:31:20.000",
        stream_label="2025-11-29T06:31:20.000",
        stream_status="ENABLED",
        stream_view_type="NEW_AND_OLD_IMAGES",
        table_name="orders",
        creation_time=datetime(2025, 11, 29, 6, 31, 20, tzinfo=UTC),
        key_schema=(("pk", "HASH"), ("sk", "RANGE")),
        shards=shards,
    )


def test_describe_text_draws_the_lineage_tree() -> None:
    text = description_to_text(lineage_description())
    s = "000000000000000000"  # leading zeros of the 21-digit sequence numbers

    assert text == (
        "stream     arn:aws:dynamodb:ddblocal:000000000000:table/orders/stream/"
        "2025-11-29T06:31:20.000\n"
        "table      orders\n"
        "status     ENABLED\n"
        "view type  NEW_AND_OLD_IMAGES\n"
        "label      2025-11-29T06:31:20.000\n"
        "created    2025-11-29T06:31:20Z\n"
        "key        pk (HASH), sk (RANGE)\n"
        "shards     7 (4 open, 3 closed)\n"
        "\n"
        f"{sid('aaaaaaaa')}  closed  seq {s}100…{s}199  created ~2025-11-29T06:31:20Z\n"
        f"├── {sid('bbbbbbbb', 1000)}  closed  seq {s}200…{s}299"
        "  created ~2025-11-29T06:31:21Z\n"
        f"│   └── {sid('dddddddd', 2000)}  open  seq {s}400…  created ~2025-11-29T06:31:22Z\n"
        f"└── {sid('cccccccc', 1000)}  open  seq {s}300…  created ~2025-11-29T06:31:21Z\n"
        f"{sid('eeeeeeee', 3000)}  open  seq {s}500…  created ~2025-11-29T06:31:23Z"
        f"  parent {sid('99999999', -5000)} (trimmed)\n"
        f"{sid('ffffffff', 4000)}  closed (has children)  seq {s}600…"
        "  created ~2025-11-29T06:31:24Z\n"
        f"└── {sid('00000000', 5000)}  open  seq {s}700…  created ~2025-11-29T06:31:25Z\n"
    )


def test_describe_text_ascii_and_empty_stream() -> None:
    description = lineage_description()
    ascii_text = description_to_text(description, glyphs=ASCII)
    empty = StreamDescription(
        stream_arn=description.stream_arn,
        stream_label=description.stream_label,
        stream_status="DISABLED",
        stream_view_type="KEYS_ONLY",
        table_name="orders",
        creation_time=None,
        key_schema=(),
        shards=(),
    )

    assert f"|-- {sid('bbbbbbbb', 1000)}  closed" in ascii_text
    assert f"|   `-- {sid('dddddddd', 2000)}  open" in ascii_text
    assert "…" not in ascii_text
    assert "├" not in ascii_text
    assert description_to_text(empty).splitlines()[-1] == "shards     0 (0 open, 0 closed)"


def test_describe_json_document() -> None:
    doc = json.loads(description_to_json(lineage_description()))

    assert {k: v for k, v in doc.items() if k != "shards"} == {
        "streamArn": lineage_description().stream_arn,
        "tableName": "orders",
        "streamStatus": "ENABLED",
        "streamViewType": "NEW_AND_OLD_IMAGES",
        "streamLabel": "2025-11-29T06:31:20.000",
        "creationTime": "2025-11-29T06:31:20Z",
        "keySchema": [
            {"attributeName": "pk", "keyType": "HASH"},
            {"attributeName": "sk", "keyType": "RANGE"},
        ],
        "shardCount": 7,
        "openShardCount": 4,
        "closedShardCount": 3,
    }
    by_id = {s["shardId"]: s for s in doc["shards"]}
    order = [s["shardId"] for s in doc["shards"]]
    assert set(by_id) == {s.shard_id for s in lineage_description().shards}
    for entry in doc["shards"]:
        if entry["parentShardId"] in by_id:
            assert order.index(entry["parentShardId"]) < order.index(entry["shardId"])
    assert by_id[sid("aaaaaaaa")] == {
        "shardId": sid("aaaaaaaa"),
        "parentShardId": None,
        "parentTrimmed": False,
        "startingSequenceNumber": "000000000000000000100",
        "endingSequenceNumber": "000000000000000000199",
        "open": False,
        "createdHint": "2025-11-29T06:31:20Z",
        "children": [sid("bbbbbbbb", 1000), sid("cccccccc", 1000)],
    }
    trimmed_child = by_id[sid("eeeeeeee", 3000)]
    assert trimmed_child["parentTrimmed"] is True
    assert trimmed_child["parentShardId"] == sid("99999999", -5000)
    assert trimmed_child["open"] is True
    assert by_id[sid("ffffffff", 4000)]["open"] is False
    assert by_id[sid("ffffffff", 4000)]["endingSequenceNumber"] is None


# -- --from -------------------------------------------------------------------------------


def test_parse_position_forms() -> None:
    assert parse_position("trim-horizon") is TRIM_HORIZON
    assert parse_position("TRIM-HORIZON") is TRIM_HORIZON
    assert parse_position("latest") is LATEST
    assert parse_position("at:123") == AtSequence("123")
    assert parse_position("after:000123") == AfterSequence("000123")


# -- main: usage errors -------------------------------------------------------------------


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    return lines[0]


@pytest.mark.parametrize("value", ["bogus", "at:", "at:12a", "after:-1", "since:5", "latest:1"])
def test_bad_from_is_a_one_line_usage_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "orders", "--from", value]) == 2

    out, err = capsys.readouterr()
    line = one_error_line(err)
    assert f"invalid position {value!r}" in line
    assert "trim-horizon, latest, at:SEQ or after:SEQ" in line
    assert out == ""


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        ([], "required: COMMAND"),
        (["nope"], "invalid choice: 'nope'"),
        (["tail"], "required: STREAM"),
        (["tail", "orders", "--max-records", "0"], "positive whole number"),
        (["tail", "orders", "--max-records", "x"], "positive whole number"),
        (["tail", "orders", "--format", "xml"], "invalid choice: 'xml'"),
        (["describe", "orders", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_usage_errors_are_one_line_with_status_2(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2

    assert fragment in one_error_line(capsys.readouterr().err)


def test_help_and_version_exit_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "tail" in capsys.readouterr().out
    assert main(["tail", "--help"]) == 0
    tail_help = " ".join(capsys.readouterr().out.split())
    assert "--max-records" in tail_help
    assert "-f, --follow" in tail_help
    assert "-v, --verbose" in tail_help
    assert "SIGTERM or SIGHUP stops cleanly with exit status 0" in tail_help
    assert "including a --follow stopped by Ctrl-C (SIGINT), SIGTERM or SIGHUP" in tail_help
    assert "--read-timeout SECONDS" in tail_help
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("ddbstreams ")


# -- main: driving a stand-in reader ------------------------------------------------------


STREAM_ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/orders/stream/2025-11-29T06:31:20.000"


class FakeReader:
    """Stands in for StreamReader: yields prepared batches, records how it was used.

    Like the real reader, successive ``batches(max_size)`` iterators continue where the
    previous one stopped, and a prepared batch larger than ``max_size`` is split. In follow
    mode, after the prepared batches it runs ``then`` (if set) and waits for more records
    that never come, like a follow reader on an idle stream.
    """

    instances: list[FakeReader] = []
    batches_to_yield: list[list[Record]] = []
    error_on_enter: BaseException | None = None
    error_after_batches: BaseException | None = None
    events_on_enter: list[ReaderEvent] = []
    then: Callable[[], None] | None = None

    def __init__(self, stream: str, **kwargs: Any) -> None:
        self.stream = stream
        self.kwargs = kwargs
        self.follow: bool = kwargs.get("follow", False)
        self.stream_arn = STREAM_ARN
        self.entered = False
        self.exited = False
        self.cancelled_while_waiting = False
        self.pending = [list(batch) for batch in FakeReader.batches_to_yield]
        self.sizes_asked: list[int] = []
        FakeReader.instances.append(self)

    async def __aenter__(self) -> FakeReader:
        if FakeReader.error_on_enter is not None:
            raise FakeReader.error_on_enter
        self.entered = True
        on_event = self.kwargs.get("on_event")
        for event in FakeReader.events_on_enter:
            assert on_event is not None
            on_event(event)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.exited = True

    async def batches(self, max_size: int = 1000) -> AsyncIterator[list[Record]]:
        self.sizes_asked.append(max_size)
        while self.pending:
            batch = self.pending[0]
            if len(batch) > max_size:
                self.pending[0] = batch[max_size:]
                batch = batch[:max_size]
            else:
                self.pending.pop(0)
            yield batch
        if FakeReader.error_after_batches is not None:
            raise FakeReader.error_after_batches
        if self.follow:
            if FakeReader.then is not None:
                FakeReader.then()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled_while_waiting = True
                raise


@pytest.fixture
def fake_reader(monkeypatch: pytest.MonkeyPatch) -> type[FakeReader]:
    FakeReader.instances = []
    FakeReader.error_on_enter = None
    FakeReader.error_after_batches = None
    FakeReader.events_on_enter = []
    FakeReader.then = None
    parser = DefaultParser()
    FakeReader.batches_to_yield = [
        parser.parse_records(
            [
                wire_record("INSERT", new={"pk": {"S": f"k{i}"}}, keys={"pk": {"S": f"k{i}"}})
                for i in range(start, start + 3)
            ],
            SHARD,
        )
        for start in (0, 3, 6)
    ]
    monkeypatch.setattr(_cli, "StreamReader", FakeReader)
    return FakeReader


def printed_keys(out: str) -> list[str]:
    return [json.loads(line)["keys"]["pk"] for line in out.splitlines()]


def test_tail_passes_options_to_the_reader(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["tail", "orders", "--from", "after:42", "--endpoint-url", "http://x:1"]
    assert main([*argv, "--region", "eu-west-1", "--raw"]) == 0

    (reader,) = fake_reader.instances
    assert reader.stream == "orders"
    assert reader.kwargs["start"] == AfterSequence("42")
    assert reader.kwargs["follow"] is False
    assert callable(reader.kwargs["on_event"])
    # The command builds the client (timeouts, retry listeners) and hands it over.
    transport = reader.kwargs["client"].transport
    assert (transport.endpoint_url, transport.region_name) == ("http://x:1", "eu-west-1")
    assert isinstance(reader.kwargs["parser"], RawParser)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["keys"]["pk"] for line in lines] == [f"k{i}" for i in range(9)]


def test_tail_max_records_stops_and_closes_the_reader(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "orders", "--max-records", "4"]) == 0

    (reader,) = fake_reader.instances
    assert reader.exited
    assert isinstance(reader.kwargs["parser"], DefaultParser)
    lines = capsys.readouterr().out.splitlines()
    assert [json.loads(line)["keys"]["pk"] for line in lines] == ["k0", "k1", "k2", "k3"]
    # Never more records taken from the reader than printed: its checkpoint stays exact.
    assert reader.sizes_asked == [4, 1]
    assert [len(batch) for batch in reader.pending] == [2, 3]


def test_tail_pretty_format(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "orders", "--format", "pretty", "--max-records", "2"]) == 0

    out = capsys.readouterr().out
    assert out.splitlines()[0] == 'INSERT pk="k0"'
    assert out.count("INSERT") == 2
    assert "\x1b[" not in out  # not a terminal: no colour


class BrokenPipeBuffer(io.RawIOBase):
    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_tail_broken_pipe_exits_0_quietly(
    fake_reader: type[FakeReader],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    broken = io.TextIOWrapper(io.BufferedWriter(BrokenPipeBuffer(), buffer_size=16))
    monkeypatch.setattr(sys, "stdout", broken)

    assert main(["tail", "orders"]) == 0

    assert capsys.readouterr().err == ""
    assert fake_reader.instances[0].exited


@pytest.mark.parametrize(
    ("error", "status", "message"),
    [
        (StreamNotFoundError("stream arn:x not found"), 1, "stream arn:x not found"),
        (EndpointConnectionError("cannot reach\nhttp://127.0.0.1:9"), 1, "cannot reach http"),
        (CredentialsError("no AWS credentials found"), 1, "no AWS credentials found"),
        (InvalidStreamArnError("'arn:nope' is not a stream ARN"), 2, "is not a stream ARN"),
        (StreamNotFoundError(), 1, "StreamNotFoundError"),
        (RuntimeError("boom"), 1, "internal error: RuntimeError: boom"),
    ],
)
def test_runtime_errors_are_one_line(
    fake_reader: type[FakeReader],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    error: BaseException,
    status: int,
    message: str,
) -> None:
    monkeypatch.delenv("DDBSTREAMS_DEBUG", raising=False)
    fake_reader.error_on_enter = error

    assert main(["tail", "orders"]) == status

    out, err = capsys.readouterr()
    assert message in one_error_line(err)
    assert out == ""


def test_keyboard_interrupt_exits_130(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_reader.error_on_enter = KeyboardInterrupt()

    assert main(["tail", "orders"]) == 130

    assert "Traceback" not in capsys.readouterr().err


# -- main: --follow -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("flags", "follow", "verbose"),
    [
        ([], False, False),
        (["--follow"], True, False),
        (["-f"], True, False),
        (["-f", "-v"], True, True),
        (["--verbose"], False, True),
        (["-fv"], True, True),
    ],
)
def test_follow_and_verbose_flags(flags: list[str], follow: bool, verbose: bool) -> None:
    args = _cli._build_parser().parse_args(["tail", "orders", *flags])

    assert args.follow is follow
    assert args.verbose is verbose
    assert args.max_records is None


def test_follow_with_max_records_stops_by_itself(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "orders", "-f", "--max-records", "5"]) == 0

    (reader,) = fake_reader.instances
    assert reader.kwargs["follow"] is True
    assert reader.exited
    out, err = capsys.readouterr()
    assert printed_keys(out) == ["k0", "k1", "k2", "k3", "k4"]
    assert err == ""  # stderr is not a terminal and --verbose is off: nothing to say


class SignalGuard:
    """A Python-level handler that must NOT run: the loop's handler should take the signal."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, signum: int, frame: object) -> None:
        self.calls += 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_follow_stops_on_signal_with_status_0(
    fake_reader: type[FakeReader],
    capsys: pytest.CaptureFixture[str],
    signum: signal.Signals,
) -> None:
    guard = SignalGuard()
    previous = signal.signal(signum, guard)
    try:
        fake_reader.then = lambda: signal.raise_signal(signum)

        status = main(["tail", "orders", "--follow"])

        handler_after = signal.getsignal(signum)
    finally:
        signal.signal(signum, previous)

    assert status == 0
    (reader,) = fake_reader.instances
    assert reader.cancelled_while_waiting
    assert reader.exited
    out, err = capsys.readouterr()
    assert printed_keys(out) == [f"k{i}" for i in range(9)]
    assert err == ""
    assert guard.calls == 0
    assert handler_after is guard  # the handler in place before the command is back


def test_follow_verbose_logs_events_and_the_stop_on_stderr(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    guard = SignalGuard()
    previous = signal.signal(signal.SIGTERM, guard)
    fake_reader.events_on_enter = [
        ShardStarted(SHARD, SHARD_TRIM_HORIZON),
        # Retries are told by the client's retry listener, not twice.
        Throttled("GetRecords", SHARD, 2, 0.4),
        ReaderError(StreamNotFoundError("gone"), None, retrying=False),
    ]
    fake_reader.then = lambda: signal.raise_signal(signal.SIGTERM)
    try:
        status = main(["tail", "orders", "-f", "-v"])
    finally:
        signal.signal(signal.SIGTERM, previous)

    assert status == 0
    (reader,) = fake_reader.instances
    assert callable(reader.kwargs["on_event"])
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 9
    assert err.splitlines() == [
        f"ddbstreams: shard started: {SHARD} at trim horizon",
        # The final error is not logged as an event: main() reports it as the error line.
        f"ddbstreams: following {STREAM_ARN}, Ctrl-C to stop",
        "ddbstreams: SIGTERM received, stopping",
        "ddbstreams: reader stopped",
    ]


def test_follow_error_while_reading_is_one_line_with_status_1(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    fake_reader.error_after_batches = StreamNotFoundError("stream arn:x not found")

    assert main(["tail", "orders", "--follow"]) == 1

    (reader,) = fake_reader.instances
    assert reader.exited
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 9  # what was read before the error was written
    assert "stream arn:x not found" in one_error_line(err)


def test_follow_ctrl_c_without_loop_signal_support_is_still_a_stop(
    fake_reader: type[FakeReader],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Like Windows: the loop cannot take signals, so asyncio.run's own SIGINT handling
    # cancels the command and raises KeyboardInterrupt; a follow still exits 0.
    def unsupported(*args: object) -> None:
        raise NotImplementedError

    monkeypatch.setattr(asyncio.SelectorEventLoop, "add_signal_handler", unsupported)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    fake_reader.then = lambda: signal.raise_signal(signal.SIGINT)

    assert main(["tail", "orders", "--follow"]) == 0

    (reader,) = fake_reader.instances
    assert reader.cancelled_while_waiting
    assert reader.exited
    out, err = capsys.readouterr()
    assert len(out.splitlines()) == 9
    assert err == ""
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_single_pass_verbose_says_what_it_reads(
    fake_reader: type[FakeReader], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "orders", "-v", "--max-records", "1"]) == 0

    out, err = capsys.readouterr()
    assert printed_keys(out) == ["k0"]
    assert err.splitlines() == [f"ddbstreams: reading {STREAM_ARN}", "ddbstreams: reader stopped"]


# -- reader events ------------------------------------------------------------------------

SEQ = "000000000000000000042"


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (ShardStarted(SHARD, SHARD_TRIM_HORIZON), f"shard started: {SHARD} at trim horizon"),
        (ShardStarted(SHARD, SHARD_LATEST), f"shard started: {SHARD} at latest"),
        (
            ShardStarted(SHARD, ShardStart("AT_SEQUENCE_NUMBER", SEQ)),
            f"shard started: {SHARD} at {SEQ}",
        ),
        (
            ShardStarted(SHARD, ShardStart("AFTER_SEQUENCE_NUMBER", SEQ)),
            f"shard started: {SHARD} after {SEQ}",
        ),
        (ShardFinished(SHARD), f"shard finished: {SHARD} (read to its end)"),
        (
            ShardsDiscovered((sid("bbbbbbbb", 1000), sid("aaaaaaaa"))),
            f"shards discovered: {sid('aaaaaaaa')}, {sid('bbbbbbbb', 1000)}",
        ),
        (
            Throttled("GetRecords", SHARD, 3, 1.25),
            f"throttled: GetRecords on {SHARD} (attempt 3), retrying in 1.25 s",
        ),
        (
            Throttled("DescribeStream", None, 1, 0.1),
            "throttled: DescribeStream (attempt 1), retrying in 0.10 s",
        ),
        (
            RequestRetried("GetRecords", SHARD, "InternalServerError", 2, 0.5),
            f"request failed: GetRecords on {SHARD} (InternalServerError, attempt 2), "
            "retrying in 0.50 s",
        ),
        (
            IteratorRefreshed(SHARD, SEQ),
            f"iterator expired: {SHARD}, continuing after {SEQ}",
        ),
        (
            IteratorRefreshed(SHARD, None),
            f"iterator expired: {SHARD}, continuing at its start position",
        ),
        (
            RecordsTrimmed(SHARD, SEQ),
            f"records trimmed: {SHARD}, records after {SEQ} were lost; "
            "continuing at the oldest remaining record",
        ),
        (
            RecordsTrimmed(SHARD, None, shard_gone=True),
            f"records trimmed: {SHARD} is gone (records from its start position were lost)",
        ),
        (
            StreamDisabled(STREAM_ARN),
            f"stream disabled: {STREAM_ARN}; reading what remains, then stopping",
        ),
        (
            ReaderError(ThrottledError("rate\nexceeded"), SHARD, retrying=True),
            f"error on {SHARD} (retrying): ThrottledError: rate exceeded",
        ),
        (
            ReaderError(StreamNotFoundError(), None, retrying=False),
            "error (giving up): StreamNotFoundError",
        ),
    ],
)
def test_event_to_text(event: ReaderEvent, text: str) -> None:
    assert event_to_text(event) == text
