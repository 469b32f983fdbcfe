"""Unit tests of the decoder: attribute values, records, GetRecords bodies, plain JSON."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import orjson
import pytest

import ddbstreams
from ddbstreams.model import _decode
from ddbstreams.model._decode import (
    DefaultParser,
    RawParser,
    decode_map,
    decode_value,
    dumps_plain_json,
    parse_get_records_body,
)
from ddbstreams.model._types import Record, RecordsPage, UserIdentity

SHARD = "shardId-00000001717243200000-0123abcd"
MAX_38 = "9" * 38


def _is(value: Any, expected: Any) -> None:
    """Equal and of the same type (1 == Decimal(1) == True would hide the bugs we test for)."""
    assert type(value) is type(expected), (value, expected)
    assert value == expected
    if isinstance(expected, Decimal):
        assert value.as_tuple() == expected.as_tuple()  # same digits and exponent


# --- attribute values ----------------------------------------------------------------------


def test_string() -> None:
    _is(decode_value({"S": "hello"}), "hello")
    _is(decode_value({"S": ""}), "")
    _is(decode_value({"S": "żółw 🐢\n\u0000"}), "żółw 🐢\n\u0000")


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("-5", -5),
        ("00012", 12),
        ("-0", 0),
        ("+5", 5),
        (MAX_38, int(MAX_38)),
        ("-" + MAX_38, -int(MAX_38)),
        ("12345678901234567890123456789012345678", 12345678901234567890123456789012345678),
        # Integral by value though not written as an integer.
        ("1.0", 1),
        ("-2.000", -2),
        ("5.", 5),
        ("0.000", 0),
        ("1E+2", 100),
        ("1e2", 100),
        ("-1.5E+1", -15),
        ("1E+125", 10**125),
        ("9.9999999999999999999999999999999999999E+125", int("9" * 38) * 10**88),
        ("0E+500", 0),
    ],
)
def test_number_integral_is_int(literal: str, expected: int) -> None:
    _is(decode_value({"N": literal}), expected)


@pytest.mark.parametrize(
    "literal",
    [
        "1.5",
        "-0.25",
        "3.14159",
        ".5",
        "-.5",
        "1.50",  # the literal's own exponent is kept, not normalised
        "0.1",
        "1E-130",
        "-1E-130",
        "1.5E-7",
        "2.5e+0",
        "123456789012345678901234567890.12345678",  # 38 digits with a fraction
        "-1234567890123456789012345678901234567.8",
        "0.00000000000000000000000000000000000001",
        "1." + "0" * 36 + "1",
        "1E+127",  # integral, but past the int digit cap: stays Decimal
        "1E+999999999",
    ],
)
def test_number_fraction_is_exact_decimal(literal: str) -> None:
    value = decode_value({"N": literal})
    _is(value, Decimal(literal))
    assert str(value) == str(Decimal(literal))


@pytest.mark.parametrize(
    "literal",
    [
        MAX_38,
        "-" + MAX_38,
        "1" + "0" * 37,
        "0." + MAX_38,
        "-9." + "9" * 37,
        "12345678901234567890.123456789012345678",
    ],
)
def test_38_digit_numbers_round_trip_exactly(literal: str) -> None:
    value = decode_value({"N": literal})
    assert str(value) == literal
    assert dumps_plain_json(value) == literal.encode()


@pytest.mark.parametrize(
    "literal",
    [
        "",
        "-",
        ".",
        "abc",
        "1.2.3",
        "NaN",
        "nan",
        "Infinity",
        "-Infinity",
        "inf",
        " 1",
        "1 ",
        "1_000",
        "1_000.5",
        "١٢",  # Arabic-Indic digits: int() would take them
        "²",
        "0x10",
        "1e",
        "--1",
        "1E+9999999999999999999999",  # beyond any Decimal context
    ],
)
def test_number_malformed(literal: str) -> None:
    with pytest.raises(ValueError, match="number"):
        decode_value({"N": literal})


def test_number_not_a_string() -> None:
    with pytest.raises(ValueError, match="number"):
        decode_value({"N": 5})


def test_binary() -> None:
    _is(decode_value({"B": base64.b64encode(b"\x00\xffabc").decode()}), b"\x00\xffabc")
    _is(decode_value({"B": ""}), b"")
    _is(decode_value({"B": "AA=="}), b"\x00")


@pytest.mark.parametrize("text", ["not base64!", "AA=", "A", "AA==AA", "żółw"])
def test_binary_malformed(text: str) -> None:
    with pytest.raises(ValueError, match="binary"):
        decode_value({"B": text})


def test_sets() -> None:
    _is(decode_value({"SS": ["a", "b", ""]}), {"a", "b", ""})
    ns = decode_value({"NS": ["1", "2.5", "-3", MAX_38, "1E+2"]})
    assert ns == {1, Decimal("2.5"), -3, int(MAX_38), 100}
    assert sorted(type(x).__name__ for x in ns) == ["Decimal", "int", "int", "int", "int"]
    _is(decode_value({"BS": ["AA==", "AQ==", ""]}), {b"\x00", b"\x01", b""})


def test_big_number_set() -> None:
    members = [str(n) for n in range(-2500, 2500)] + [f"{n}.5" for n in range(2500)]
    members.append("-" + MAX_38)
    decoded = decode_value({"NS": members})
    assert len(decoded) == len(members)
    assert decoded == {int(m) for m in members if "." not in m} | {
        Decimal(m) for m in members if "." in m
    }


def test_null_and_bool() -> None:
    assert decode_value({"NULL": True}) is None
    assert decode_value({"BOOL": True}) is True
    assert decode_value({"BOOL": False}) is False


def test_nested_map_and_list() -> None:
    av = {
        "M": {
            "name": {"S": "x"},
            "tags": {"L": [{"S": "a"}, {"N": "1"}, {"NULL": True}, {"L": []}, {"M": {}}]},
            "inner": {"M": {"deep": {"M": {"n": {"N": "1.25"}, "b": {"B": "AA=="}}}}},
            "empty_map": {"M": {}},
            "empty_list": {"L": []},
            "sets": {"L": [{"SS": ["s"]}, {"NS": ["2"]}, {"BS": ["AQ=="]}]},
        }
    }
    assert decode_value(av) == {
        "name": "x",
        "tags": ["a", 1, None, [], {}],
        "inner": {"deep": {"n": Decimal("1.25"), "b": b"\x00"}},
        "empty_map": {},
        "empty_list": [],
        "sets": [{"s"}, {2}, {b"\x01"}],
    }


def test_decode_map_of_an_item() -> None:
    item = {
        "pk": {"S": "user#1"},
        "sk": {"N": "42"},
        "price": {"N": "19.99"},
        "active": {"BOOL": True},
        "gone": {"NULL": True},
        "blob": {"B": "aGk="},
    }
    assert decode_map(item) == {
        "pk": "user#1",
        "sk": 42,
        "price": Decimal("19.99"),
        "active": True,
        "gone": None,
        "blob": b"hi",
    }
    assert decode_map({}) == {}


@pytest.mark.parametrize(
    ("av", "message"),
    [
        ({"X": "1"}, "unknown DynamoDB attribute type tag 'X'"),
        ({"s": "lowercase"}, "unknown DynamoDB attribute type tag 's'"),
        ({"SSS": []}, "unknown DynamoDB attribute type tag 'SSS'"),
        ({}, "exactly one type tag"),
        ({"S": "a", "N": "1"}, "exactly one type tag"),
        ("S", "exactly one type tag"),
        (None, "exactly one type tag"),
        ([{"S": "x"}], "exactly one type tag"),
        ({"M": [1]}, "M must hold an object"),
        ({"L": "abc"}, "L must hold an array"),
        ({"SS": "abc"}, "SS must hold an array"),
        ({"NS": "123"}, "NS must hold an array"),
        ({"BS": "AA=="}, "BS must hold an array"),
        ({"NS": ["1", "x"]}, "invalid DynamoDB number"),
        ({"L": [{"S": "ok"}, {"Q": "bad"}]}, "unknown DynamoDB attribute type tag 'Q'"),
        ({"M": {"a": {"M": {"b": {"NaN": "1"}}}}}, "unknown DynamoDB attribute type tag 'NaN'"),
    ],
)
def test_malformed_attribute_values(av: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        decode_value(av)


def test_decode_map_malformed() -> None:
    with pytest.raises(ValueError, match="unknown DynamoDB attribute type tag 'Z'"):
        decode_map({"ok": {"S": "x"}, "bad": {"Z": "x"}})
    with pytest.raises(ValueError, match="attribute map must be an object"):
        decode_map(["not", "a", "map"])  # type: ignore[arg-type]


# --- records -------------------------------------------------------------------------------

KEYS = {"pk": {"S": "user#1"}, "sk": {"N": "1"}}
OLD = {"pk": {"S": "user#1"}, "sk": {"N": "1"}, "n": {"N": "1.5"}, "b": {"B": "AA=="}}
NEW = {"pk": {"S": "user#1"}, "sk": {"N": "1"}, "n": {"N": "2"}, "tags": {"SS": ["x"]}}


def _raw(
    event_name: str = "MODIFY",
    view: str = "NEW_AND_OLD_IMAGES",
    seq: str = "4930000000000000000000000001",
    created: float = 1717243200,
    **extra: Any,
) -> dict[str, Any]:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": KEYS,
        "SequenceNumber": seq,
        "SizeBytes": 57,
        "StreamViewType": view,
    }
    has_new = event_name != "REMOVE" and view in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES")
    has_old = event_name != "INSERT" and view in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES")
    if has_new:
        ddb["NewImage"] = NEW
    if has_old:
        ddb["OldImage"] = OLD
    raw = {
        "eventID": "a1b2c3",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": ddb,
    }
    raw.update(extra)
    return raw


DECODED_KEYS = {"pk": "user#1", "sk": 1}
DECODED_OLD = {"pk": "user#1", "sk": 1, "n": Decimal("1.5"), "b": b"\x00"}
DECODED_NEW = {"pk": "user#1", "sk": 1, "n": 2, "tags": {"x"}}


def test_default_parser_fills_every_field() -> None:
    (record,) = DefaultParser().parse_records([_raw()], SHARD)
    assert record == Record(
        event_id="a1b2c3",
        event_name="MODIFY",
        event_version="1.1",
        event_source="aws:dynamodb",
        aws_region="eu-west-1",
        keys=DECODED_KEYS,
        new_image=DECODED_NEW,
        old_image=DECODED_OLD,
        sequence_number="4930000000000000000000000001",
        size_bytes=57,
        stream_view_type="NEW_AND_OLD_IMAGES",
        approximate_creation_time=datetime(2024, 6, 1, 12, 0, tzinfo=UTC),
        shard_id=SHARD,
        user_identity=None,
        event_source_arn=None,
    )
    assert not record.is_ttl_delete


def test_fast_record_constructor_is_in_use_and_equivalent() -> None:
    # The fast constructor (a _RecordDraft turned into a Record) must be active (a change
    # of Record's fields would silently fall back to the slow path) and build exactly what
    # Record() builds.
    assert _decode._make_record is _decode._make_record_fast
    args: tuple[Any, ...] = ("e", "INSERT", "1.1", "aws:dynamodb", "r", {"k": 1}, None, None)
    args += ("1", 1, "KEYS_ONLY", datetime(2024, 1, 1, tzinfo=UTC), "s")
    args += (UserIdentity("Service", "p"), "arn")
    fast = _decode._make_record(*args)
    assert type(fast) is Record
    assert fast == Record(*args)
    assert repr(fast) == repr(Record(*args))
    with pytest.raises(AttributeError):
        fast.event_id = "changed"  # type: ignore[misc]


@pytest.mark.parametrize(
    ("view", "event_name", "has_new", "has_old"),
    [
        ("KEYS_ONLY", "INSERT", False, False),
        ("KEYS_ONLY", "MODIFY", False, False),
        ("KEYS_ONLY", "REMOVE", False, False),
        ("NEW_IMAGE", "INSERT", True, False),
        ("NEW_IMAGE", "MODIFY", True, False),
        ("NEW_IMAGE", "REMOVE", False, False),
        ("OLD_IMAGE", "INSERT", False, False),
        ("OLD_IMAGE", "MODIFY", False, True),
        ("OLD_IMAGE", "REMOVE", False, True),
        ("NEW_AND_OLD_IMAGES", "INSERT", True, False),
        ("NEW_AND_OLD_IMAGES", "MODIFY", True, True),
        ("NEW_AND_OLD_IMAGES", "REMOVE", False, True),
    ],
)
def test_stream_view_types_and_event_names(
    view: str, event_name: str, has_new: bool, has_old: bool
) -> None:
    raw = _raw(event_name, view)
    (record,) = DefaultParser().parse_records([raw], SHARD)
    assert record.event_name == event_name
    assert record.stream_view_type == view
    assert record.keys == DECODED_KEYS
    assert record.new_image == (DECODED_NEW if has_new else None)
    assert record.old_image == (DECODED_OLD if has_old else None)
    (raw_record,) = RawParser().parse_records([raw], SHARD)
    assert raw_record.keys == KEYS
    assert raw_record.new_image == (NEW if has_new else None)
    assert raw_record.old_image == (OLD if has_old else None)


def test_raw_parser_leaves_wire_maps_untouched() -> None:
    raw = _raw()
    (record,) = RawParser().parse_records([raw], SHARD)
    assert record.keys is raw["dynamodb"]["Keys"]
    assert record.new_image is raw["dynamodb"]["NewImage"]
    assert record.old_image is raw["dynamodb"]["OldImage"]
    assert record.old_image == OLD  # B still base64 text, N still a string
    (decoded,) = DefaultParser().parse_records([raw], SHARD)
    for field in ("event_id", "sequence_number", "approximate_creation_time", "size_bytes"):
        assert getattr(record, field) == getattr(decoded, field)
    assert raw == _raw()  # decoding does not modify the input


def test_ttl_delete_user_identity() -> None:
    identity = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    raw = _raw("REMOVE", userIdentity=identity)
    (record,) = DefaultParser().parse_records([raw], SHARD)
    assert record.user_identity == UserIdentity("Service", "dynamodb.amazonaws.com")
    assert record.is_ttl_delete
    lowercase = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    (record,) = DefaultParser().parse_records([_raw("REMOVE", userIdentity=lowercase)], SHARD)
    assert record.is_ttl_delete
    (record,) = DefaultParser().parse_records([_raw("REMOVE", userIdentity=None)], SHARD)
    assert record.user_identity is None


def test_creation_time_int_and_float_epoch() -> None:
    records = DefaultParser().parse_records(
        [_raw(created=1717243200), _raw(created=1717243200.25), _raw(created=1717243200)], SHARD
    )
    assert records[0].approximate_creation_time == datetime(2024, 6, 1, 12, 0, tzinfo=UTC)
    assert records[1].approximate_creation_time == datetime(2024, 6, 1, 12, 0, 0, 250000, UTC)
    for record in records:
        assert record.approximate_creation_time.tzinfo is UTC


def test_event_source_arn_only_when_present() -> None:
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/2024-06-01T00:00:00.000"
    (with_arn, without) = DefaultParser().parse_records([_raw(eventSourceARN=arn), _raw()], "")
    assert with_arn.event_source_arn == arn
    assert without.event_source_arn is None
    assert with_arn.shard_id == ""


def test_records_keep_order() -> None:
    raws = [_raw(seq=str(4930000000000000000000000000 + n)) for n in range(50)]
    records = DefaultParser().parse_records(raws, SHARD)
    assert [r.sequence_number for r in records] == [r["dynamodb"]["SequenceNumber"] for r in raws]
    assert DefaultParser().parse_records([], SHARD) == []


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda r: r.pop("eventID"), "missing eventID"),
        (lambda r: r.pop("dynamodb"), "missing dynamodb"),
        (lambda r: r["dynamodb"].pop("SequenceNumber"), "missing dynamodb.SequenceNumber"),
        (lambda r: r["dynamodb"].pop("Keys"), "missing dynamodb.Keys"),
        (
            lambda r: r["dynamodb"].pop("ApproximateCreationDateTime"),
            "missing dynamodb.ApproximateCreationDateTime",
        ),
        (
            lambda r: r["dynamodb"].update(ApproximateCreationDateTime="2024-06-01"),
            "dynamodb.ApproximateCreationDateTime has the wrong type",
        ),
        (lambda r: r.update(dynamodb=[]), "dynamodb has the wrong type"),
        (lambda r: r["dynamodb"].update(NewImage="x"), "dynamodb.NewImage is not an object"),
        (
            lambda r: r["dynamodb"]["NewImage"].update(bad={"N": "x"}),
            "in dynamodb.NewImage: invalid DynamoDB number",
        ),
        (
            lambda r: r["dynamodb"]["Keys"].update(bad={"T": "x"}),
            "in dynamodb.Keys: unknown DynamoDB attribute type tag 'T'",
        ),
        (lambda r: r.update(userIdentity={"type": 1}), "malformed userIdentity"),
        (
            lambda r: r["dynamodb"].update(ApproximateCreationDateTime=1e300),
            "malformed stream record",
        ),
    ],
)
def test_malformed_records(mutate: Any, message: str) -> None:
    raw = json.loads(json.dumps(_raw()))  # a private deep copy
    mutate(raw)
    with pytest.raises(ValueError, match=message):
        DefaultParser().parse_records([_raw(), raw], SHARD)


def test_malformed_record_not_an_object() -> None:
    with pytest.raises(ValueError, match="not an object"):
        DefaultParser().parse_records(["nope"], SHARD)  # type: ignore[list-item]


def test_raw_parser_does_not_validate_images() -> None:
    raw = _raw()
    raw["dynamodb"]["NewImage"] = {"bad": {"T": "x"}}
    (record,) = RawParser().parse_records([raw], SHARD)
    assert record.new_image == {"bad": {"T": "x"}}


# --- GetRecords bodies ---------------------------------------------------------------------


def _body(**doc: Any) -> bytes:
    return orjson.dumps(doc)


def test_body_with_records_and_iterator() -> None:
    raws = [_raw(seq="100000000000000000001"), _raw(seq="100000000000000000002", created=17.5)]
    page = parse_get_records_body(
        _body(Records=raws, NextShardIterator="iter-2"), SHARD, DefaultParser()
    )
    assert isinstance(page, RecordsPage)
    assert [r.sequence_number for r in page.records] == [
        "100000000000000000001",
        "100000000000000000002",
    ]
    assert all(r.shard_id == SHARD for r in page.records)
    assert page.next_shard_iterator == "iter-2"
    assert page.last_sequence_number == "100000000000000000002"
    assert page.last_creation_time == 17.5
    assert type(page.last_creation_time) is float


def test_body_last_page_of_a_shard_has_records_and_no_iterator() -> None:
    page = parse_get_records_body(_body(Records=[_raw()]), SHARD, DefaultParser())
    assert len(page.records) == 1
    assert page.next_shard_iterator is None
    assert page.last_sequence_number == "4930000000000000000000000001"
    assert page.last_creation_time == 1717243200.0
    page = parse_get_records_body(
        _body(Records=[_raw()], NextShardIterator=None), SHARD, DefaultParser()
    )
    assert page.next_shard_iterator is None


@pytest.mark.parametrize(
    "body",
    [
        _body(Records=[], NextShardIterator="iter"),
        _body(NextShardIterator="iter"),
        _body(Records=None, NextShardIterator="iter"),
    ],
)
def test_body_empty_page(body: bytes) -> None:
    page = parse_get_records_body(body, SHARD, DefaultParser())
    assert page == RecordsPage([], "iter", None, None, [])


def test_body_empty_and_ended() -> None:
    assert parse_get_records_body(b"{}", SHARD, RawParser()) == RecordsPage(
        [], None, None, None, []
    )


def test_body_with_raw_and_custom_parsers() -> None:
    raws = [_raw(seq="1" * 21), _raw(seq="2" * 21)]
    body = _body(Records=raws, NextShardIterator="it")
    page = parse_get_records_body(body, SHARD, RawParser())
    assert page.records[0].keys == KEYS
    assert page.sequence_numbers == ["1" * 21, "2" * 21]

    class Sequences:
        def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[str]:
            return [f"{shard_id}/{r['dynamodb']['SequenceNumber']}" for r in raw_records]

    custom = parse_get_records_body(body, "s-1", Sequences())
    assert custom.records == ["s-1/" + "1" * 21, "s-1/" + "2" * 21]
    assert custom.last_sequence_number == "2" * 21


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", None),
        (b"not json", None),
        (b"[]", "not a JSON object"),
        (b'"x"', "not a JSON object"),
        (_body(Records={}), "Records is not an array"),
        (_body(Records=[], NextShardIterator=5), "NextShardIterator is not a string"),
        (_body(Records=[{"eventID": "x"}]), "missing"),
    ],
)
def test_body_malformed(body: bytes, message: str | None) -> None:
    with pytest.raises(ValueError, match=message):
        parse_get_records_body(body, SHARD, DefaultParser())


def test_body_with_every_type_decodes_like_decode_map() -> None:
    image = {
        "s": {"S": "x"},
        "n": {"N": "-" + MAX_38},
        "d": {"N": "0." + MAX_38},
        "b": {"B": base64.b64encode(bytes(range(256))).decode()},
        "ss": {"SS": ["a", "b"]},
        "ns": {"NS": ["1", "1.5"]},
        "bs": {"BS": ["AA==", "AQ=="]},
        "m": {"M": {"l": {"L": [{"NULL": True}, {"BOOL": False}]}}},
    }
    raw = _raw("INSERT")
    raw["dynamodb"]["NewImage"] = image
    (record,) = parse_get_records_body(_body(Records=[raw]), SHARD, DefaultParser()).records
    assert record.new_image == decode_map(image)
    assert record.new_image is not None
    assert record.new_image["b"] == bytes(range(256))
    assert str(record.new_image["d"]) == "0." + MAX_38


# --- plain JSON ----------------------------------------------------------------------------


def test_dumps_plain_json_numbers_are_exact() -> None:
    value = {
        "small": 5,
        "negative": -7,
        "big": int(MAX_38),
        "big_negative": -int(MAX_38),
        "u64": 2**64 - 1,
        "i64": -(2**63),
        "beyond": 2**64,
        "fraction": Decimal("0." + MAX_38),
        "scaled": Decimal("1.50"),
        "exponent": Decimal("1E-130"),
        "float": 0.5,
    }
    text = dumps_plain_json(value)
    assert text == (
        b'{"small":5,"negative":-7,'
        b'"big":99999999999999999999999999999999999999,'
        b'"big_negative":-99999999999999999999999999999999999999,'
        b'"u64":18446744073709551615,"i64":-9223372036854775808,'
        b'"beyond":18446744073709551616,'
        b'"fraction":0.99999999999999999999999999999999999999,'
        b'"scaled":1.50,"exponent":1E-130,"float":0.5}'
    )
    parsed = json.loads(text, parse_float=Decimal)
    assert parsed["fraction"] == Decimal("0." + MAX_38)
    assert parsed["big"] == int(MAX_38)
    assert parsed["exponent"] == Decimal("1E-130")


def test_dumps_plain_json_bytes_sets_and_nesting() -> None:
    value = {
        "b": b"\x00\xff",
        "empty": b"",
        "ss": {"b", "a", "c"},
        "ns": {3, Decimal("2.5"), -1, int(MAX_38)},
        "bs": {b"\x02", b"\x01"},
        "l": [None, True, False, {"m": frozenset({"z"})}, ("t", 1)],
        "s": 'quote " and marker-like ddbstreams-number-0',
    }
    parsed = json.loads(dumps_plain_json(value), parse_float=Decimal)
    assert parsed == {
        "b": "AP8=",
        "empty": "",
        "ss": ["a", "b", "c"],
        "ns": [-1, Decimal("2.5"), 3, int(MAX_38)],
        "bs": ["AQ==", "Ag=="],
        "l": [None, True, False, {"m": ["z"]}, ["t", 1]],
        "s": 'quote " and marker-like ddbstreams-number-0',
    }


def test_dumps_plain_json_without_decimals_is_orjson() -> None:
    value = {"a": [1, "x", None, True], "t": datetime(2024, 6, 1, tzinfo=UTC)}
    assert dumps_plain_json(value) == orjson.dumps(value)
    assert dumps_plain_json(value, option=orjson.OPT_UTC_Z) == orjson.dumps(
        value, option=orjson.OPT_UTC_Z
    )


def test_dumps_plain_json_options_pass_through() -> None:
    value = {"b": Decimal("0.1"), "a": [10**40]}
    assert dumps_plain_json(value, option=orjson.OPT_SORT_KEYS) == (
        b'{"a":[10000000000000000000000000000000000000000],"b":0.1}'
    )
    indented = dumps_plain_json(value, option=orjson.OPT_INDENT_2)
    assert json.loads(indented, parse_float=Decimal) == {"b": Decimal("0.1"), "a": [10**40]}
    assert b"\n" in indented


def test_dumps_plain_json_of_a_decoded_record_image() -> None:
    (record,) = DefaultParser().parse_records([_raw()], SHARD)
    text = dumps_plain_json({"newImage": record.new_image, "oldImage": record.old_image})
    assert json.loads(text, parse_float=Decimal) == {
        "newImage": {"pk": "user#1", "sk": 1, "n": 2, "tags": ["x"]},
        "oldImage": {"pk": "user#1", "sk": 1, "n": Decimal("1.5"), "b": "AA=="},
    }


@pytest.mark.parametrize("bad", [Decimal("NaN"), Decimal("Infinity"), Decimal("-Infinity")])
def test_dumps_plain_json_rejects_non_finite_decimals(bad: Decimal) -> None:
    with pytest.raises(ValueError, match="JSON number"):
        dumps_plain_json({"x": bad})


def test_dumps_plain_json_rejects_unknown_types() -> None:
    with pytest.raises(TypeError):
        dumps_plain_json({"x": object()})


def test_dumps_plain_json_other_containers_and_numbers() -> None:
    import enum
    from types import MappingProxyType

    class Level(enum.IntEnum):
        HIGH = 2**70

    value = {
        "enum": Level.HIGH,
        "proxy": MappingProxyType({"d": Decimal("0.5")}),
        "mixed_set": {"a", 1},
        "tuple": (Decimal("1.25"), b"\x00"),
    }
    parsed = json.loads(dumps_plain_json(value), parse_float=Decimal)
    assert parsed == {
        "enum": 2**70,
        "proxy": {"d": Decimal("0.5")},
        "mixed_set": ["a", 1],  # mixed types: sorted by repr, still deterministic
        "tuple": [Decimal("1.25"), "AA=="],
    }


def test_dynamodb_local_empty_nested_map_quirk() -> None:
    # DynamoDB Local 3.x writes an empty map nested in a map as {} in stream records.
    raw = _raw(seq="3" * 21)
    raw["dynamodb"]["NewImage"] = {"m": {"M": {"empty": {}, "x": {"M": {"y": {}}}}}}
    page = parse_get_records_body(_body(Records=[raw, _raw(seq="4" * 21)]), SHARD, DefaultParser())
    assert page.records[0].new_image == {"m": {"empty": {}, "x": {"y": {}}}}
    assert [r.sequence_number for r in page.records] == ["3" * 21, "4" * 21]


def test_malformed_record_is_a_typed_error() -> None:
    raw = _raw(seq="5" * 21)
    raw["dynamodb"]["NewImage"] = {"a": {"XX": "1"}}
    with pytest.raises(ddbstreams.MalformedRecordError, match="XX"):
        parse_get_records_body(_body(Records=[raw]), SHARD, DefaultParser())
    with pytest.raises(ddbstreams.MalformedRecordError, match="not JSON"):
        parse_get_records_body(b"{not json", SHARD, DefaultParser())
