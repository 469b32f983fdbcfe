"""Strings holding a lone UTF-16 surrogate (``"\\ud83d"``).

DynamoDB accepts them and GetRecords returns them as ``\\uXXXX`` escapes that orjson
refuses. They are read as boto3 reads them (the surrogate is kept in the Python str), and
every output stays valid: JSON Lines, pretty text, the on-failure destination and Lambda
events.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import pytest

import ddbstreams
from ddbstreams import FailedBatch, JsonLinesDestination, Record, record_to_lambda
from ddbstreams._errors import MalformedRecordError
from ddbstreams.cli._render import record_to_jsonl, record_to_pretty
from ddbstreams.model._decode import (
    DefaultParser,
    RawParser,
    dumps_plain_json,
    parse_get_records_body,
)

SHARD = "shardId-00000001700000000000-aaaaaaaa"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
HIGH = "\ud83d"
LOW = "\ude00"


def raw_record(n: int, new_image: str) -> str:
    """One GetRecords record as JSON text; ``new_image`` is the NewImage's JSON text."""
    record = {
        "eventID": f"e{n}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1700000000,
            "Keys": {"pk": {"S": f"k{n}"}},
            "NewImage": "@IMAGE@",
            "SequenceNumber": f"{100 + n:021d}",
            "SizeBytes": 20,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return json.dumps(record, separators=(",", ":")).replace('"@IMAGE@"', new_image)


def body(*new_images: str) -> bytes:
    records = ",".join(raw_record(n, image) for n, image in enumerate(new_images))
    return ('{"Records":[' + records + '],"NextShardIterator":"it-2"}').encode()


GOOD = '{"pk":{"S":"k"},"v":{"S":"fine"}}'
# Escapes as the service writes them: a lone high surrogate inside a value, a lone low
# surrogate in an attribute name, and lone surrogates in a set, a list and a nested map.
LONE = (
    '{"pk":{"S":"k"},"v":{"S":"x\\ud83dy"},"\\ude00name":{"S":"\\ude00"},'
    '"ss":{"SS":["a","\\ud83d"]},"l":{"L":[{"S":"\\udfff"}]},"m":{"M":{"k":{"S":"\\ud800z"}}},'
    '"big":{"N":"12345678901234567890123456789012345678"},"dec":{"N":"1.5"}}'
)
LONE_DECODED: dict[str, Any] = {
    "pk": "k",
    "v": f"x{HIGH}y",
    f"{LOW}name": LOW,
    "ss": {"a", HIGH},
    "l": ["\udfff"],
    "m": {"k": "\ud800z"},
    "big": 12345678901234567890123456789012345678,
    "dec": Decimal("1.5"),
}


def surrogate_record() -> Record:
    [record] = DefaultParser().parse_records([orjson.loads(raw_record(0, GOOD).encode())], SHARD)
    return Record(
        **{
            **{f: getattr(record, f) for f in record.__dataclass_fields__},
            "keys": {"pk": f"k{HIGH}"},
            "new_image": LONE_DECODED,
            "old_image": {"pk": f"k{HIGH}", "v": LOW},
            "event_name": "MODIFY",
        }
    )


# --------------------------------------------------------------------------- reading


def test_orjson_refuses_the_body() -> None:
    """The premise: the fast decoder rejects lone surrogates; the stdlib keeps them."""
    with pytest.raises(orjson.JSONDecodeError, match="surrogate"):
        orjson.loads(body(GOOD, LONE, GOOD))
    assert json.loads(body(LONE))["Records"][0]["dynamodb"]["NewImage"]["v"] == {"S": "x\ud83dy"}


def test_a_lone_surrogate_between_two_good_records() -> None:
    page = parse_get_records_body(body(GOOD, LONE, GOOD), SHARD, DefaultParser())

    assert [r.event_id for r in page.records] == ["e0", "e1", "e2"]
    assert page.records[0].new_image == {"pk": "k", "v": "fine"}
    assert page.records[1].new_image == LONE_DECODED
    assert page.records[2].new_image == {"pk": "k", "v": "fine"}
    assert page.next_shard_iterator == "it-2"
    assert page.last_sequence_number == f"{102:021d}"
    assert page.sequence_numbers == [f"{100 + n:021d}" for n in range(3)]


def test_raw_parser_keeps_the_surrogate_too() -> None:
    page = parse_get_records_body(body(GOOD, LONE), SHARD, RawParser())
    assert page.records[1].new_image is not None
    assert page.records[1].new_image["v"] == {"S": f"x{HIGH}y"}
    assert page.records[1].new_image[f"{LOW}name"] == {"S": LOW}


def test_a_surrogate_pair_is_one_character() -> None:
    page = parse_get_records_body(
        body('{"pk":{"S":"k"},"v":{"S":"\\ud83d\\ude00"}}'), SHARD, DefaultParser()
    )
    assert page.records[0].new_image == {"pk": "k", "v": "\U0001f600"}


@pytest.mark.parametrize(
    "text",
    [
        b'{"Records":[{"S":"\\ud83d"}],',  # truncated, with a surrogate before the cut
        b'{"Records":"\\ud83d" "x"}',  # two strings in a row
        b'{"Records":[],"NextShardIterator":NaN,"x":"\\ud83d"}',  # not JSON for orjson either
        b'{"x":"\\ud83d","Records":[],"NextShardIterator":NaN}',  # nor for the fallback
        b'{"x":"\\ud83d","Records":[],"NextShardIterator":Infinity}',
        b'{"x":"\xed\xa0\xbd","Records":[]}',  # a surrogate as bytes: not UTF-8
        b"\xff\xfe{}",
    ],
)
def test_a_body_that_is_not_json_is_still_refused(text: bytes) -> None:
    with pytest.raises(MalformedRecordError, match="not JSON"):
        parse_get_records_body(text, SHARD, DefaultParser())


def test_lambda_events_with_lone_surrogates() -> None:
    event = json.loads('{"Records":[' + raw_record(0, LONE) + "]}")
    event["Records"][0]["eventSourceARN"] = ARN
    [record] = ddbstreams.parse_lambda_event(event)
    assert record.new_image == LONE_DECODED


# --------------------------------------------------------------------------- writing


def assert_valid_json_line(line: bytes, *, exact: bool = True) -> Any:
    """``line`` is one line of strict UTF-8 JSON; its document (json.loads, with exact
    numbers unless ``exact`` is false)."""
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    text = line.decode("utf-8")  # strict: no lone surrogates encoded as bytes
    return json.loads(text, parse_float=Decimal) if exact else json.loads(text)


def test_dumps_plain_json_escapes_lone_surrogates() -> None:
    value = {f"{LOW}key": [f"x{HIGH}y", "é✓", "\U0001f600", Decimal("1.50"), 2**70, b"\x00"]}
    out = dumps_plain_json(value)

    assert out == (
        b'{"\\ude00key":["x\\ud83dy","\xc3\xa9\xe2\x9c\x93","\xf0\x9f\x98\x80",1.50,'
        + str(2**70).encode()
        + b',"AA=="]}'
    )
    assert json.loads(out, parse_float=Decimal) == {
        f"{LOW}key": [f"x{HIGH}y", "é✓", "\U0001f600", Decimal("1.50"), 2**70, "AA=="]
    }
    assert dumps_plain_json(HIGH) == b'"\\ud83d"'
    assert dumps_plain_json(f'"{HIGH}\\\n') == b'"\\"\\ud83d\\\\\\n"'
    indented = dumps_plain_json({"a": [HIGH]}, option=orjson.OPT_INDENT_2)
    assert indented == b'{\n  "a": [\n    "\\ud83d"\n  ]\n}'
    # Strings without lone surrogates are written exactly as before.
    assert dumps_plain_json({"a": "é"}) == orjson.dumps({"a": "é"})


def test_dumps_plain_json_still_refuses_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        dumps_plain_json({"a": HIGH, "b": object()})


def test_jsonl_round_trips() -> None:
    record = surrogate_record()
    document = assert_valid_json_line(record_to_jsonl(record))

    assert document["keys"] == {"pk": f"k{HIGH}"}
    assert document["newImage"] == {
        **LONE_DECODED,
        "ss": sorted(LONE_DECODED["ss"]),
    }
    assert document["oldImage"] == {"pk": f"k{HIGH}", "v": LOW}
    assert b"\\ud83d" in record_to_jsonl(record)


def test_raw_jsonl_round_trips() -> None:
    [record] = RawParser().parse_records(json.loads("[" + raw_record(0, LONE) + "]"), SHARD)
    document = assert_valid_json_line(record_to_jsonl(record))
    assert document["newImage"] == json.loads(LONE)


def test_pretty_output_is_valid_text() -> None:
    text = record_to_pretty(surrogate_record(), width=0)
    text.encode("utf-8")  # strict: would fail on a lone surrogate
    assert 'pk="k\\ud83d"' in text
    assert '~ v: "\\ude00" → "x\\ud83dy"' in text
    assert '+ \\ude00name: "\\ude00"' in text


def test_record_to_lambda_round_trips() -> None:
    record = surrogate_record()
    event = {"Records": [record_to_lambda(record, ARN)]}

    # The event holds the str as read, like the event Lambda gives a handler...
    assert event["Records"][0]["dynamodb"]["NewImage"]["v"] == {"S": f"x{HIGH}y"}
    [again] = ddbstreams.parse_lambda_event(event)
    assert (again.keys, again.new_image, again.old_image) == (
        record.keys,
        record.new_image,
        record.old_image,
    )
    # ...and it serialises to valid JSON that reads back the same, with orjson or the stdlib.
    line = dumps_plain_json(event) + b"\n"
    assert assert_valid_json_line(line, exact=False) == json.loads(json.dumps(event))
    [from_json] = ddbstreams.parse_lambda_event(json.loads(line))
    assert from_json.new_image == record.new_image


async def test_on_failure_destination_writes_valid_json(tmp_path: Path) -> None:
    record = surrogate_record()
    destination = JsonLinesDestination(tmp_path / "failed.jsonl")
    failed = FailedBatch(
        stream_arn=ARN,
        shard_id=SHARD,
        records=(record,),
        condition="RetryAttemptsExhausted",
        attempts=3,
        error=f"ValueError: bad {HIGH}",
        timestamp=datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
    )

    await destination(failed)
    await destination(failed)

    lines = (tmp_path / "failed.jsonl").read_bytes().splitlines(keepends=True)
    assert len(lines) == 2
    document = assert_valid_json_line(lines[0], exact=False)
    assert document["error"] == f"ValueError: bad {HIGH}"
    assert document["DDBStreamBatchInfo"]["batchSize"] == 1
    [replayed] = ddbstreams.parse_lambda_event({"Records": document["records"]})
    assert replayed.new_image == record.new_image
    assert replayed.keys == record.keys
