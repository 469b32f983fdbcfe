"""The decoder's fast paths agree with its careful ones, and leave the process as they found it.

A GetRecords body parsed with :class:`DefaultParser` is decoded *in place* (into the document
orjson built) with the collector paused; numbers are decoded by tests inlined in the map loop
as well as by ``_number``; records are built by a ``__class__`` switch. Each of these must give
exactly what the plain paths give (``decode_value`` / ``decode_map`` of the caller's data, and
a parser that is not exactly ``DefaultParser``), and every malformed input must still be
refused with the same message.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import json
import pickle
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ddbstreams
from ddbstreams.model import _decode
from ddbstreams.model._decode import DefaultParser, decode_map, decode_value, parse_get_records_body
from ddbstreams.model._types import Record
from tests.unit.test_decode_properties import IMAGES, SETTINGS, Pair

SHARD = "shardId-00000001717243200000-0123abcd"


class CopyingParser(DefaultParser):
    """DefaultParser by another type: takes the path that leaves the document alone."""

    __slots__ = ()


def _raw(n: int, new_image: Any, keys: Any = None) -> dict[str, Any]:
    return {
        "eventID": f"e{n}",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1717243200 + n,
            "Keys": keys if keys is not None else {"pk": {"S": f"k{n}"}},
            "NewImage": new_image,
            "SequenceNumber": str(10**21 + n),
            "SizeBytes": 10,
            "StreamViewType": "NEW_IMAGE",
        },
    }


def _body(*images: Any) -> bytes:
    records = [_raw(n, image) for n, image in enumerate(images)]
    return orjson.dumps({"Records": records, "NextShardIterator": "it"})


def _typed(value: Any) -> Any:
    """A comparable form that tells int from Decimal (and keeps a Decimal's exponent)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, set):
        return sorted((_typed(v) for v in value), key=repr)
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    return (type(value).__name__, value)


def _images(body: bytes, parser: DefaultParser) -> list[Any]:
    return [r.new_image for r in parse_get_records_body(body, SHARD, parser).records]


# --- numbers on every path -------------------------------------------------------------------

VALID_NUMBERS = [
    "0", "7", "-5", "00012", "-0", "+5", "9" * 38, "-" + "9" * 38, "1" * 126, "1" * 127,
    "1.0", "-2.000", "5.", "0.000", "1E+2", "-1.5E+1", "0E+500", "1E+127",
    "1.5", "-0.25", "3000.89", ".5", "-.5", "+1.5", "007.5", "1.50", "1.01", "0.1",
    "1E-130", "2.5e+0", "0." + "9" * 38, "-9." + "9" * 37, "1." + "0" * 36 + "1",
]  # fmt: skip
INVALID_NUMBERS = [
    "", "-", ".", "abc", "1.2.3", "1..5", "NaN", "Infinity", "inf", " 1", "1 ", " 1.5",
    "1.5 ", "1_000", "1_0.5", "\u0661\u0662", "\u0661.5", "1.\u0665", "²", "0x10", "1e",
    "--1", "--1.5", "1E+9999999999999999999999",
]  # fmt: skip


def _number_paths(literal: str) -> Iterator[tuple[str, Any]]:
    """(path, decoded N) for ``literal`` through every decoding path."""
    yield "decode_value", decode_value({"N": literal})
    yield "decode_map", decode_map({"n": {"N": literal}})["n"]
    yield "in a list", decode_value({"L": [{"N": literal}]})[0]
    (member,) = decode_value({"NS": [literal]})
    yield "in a set", member
    image = {"n": {"N": literal}, "m": {"M": {"n": {"N": literal}}}, "l": {"L": [{"N": literal}]}}
    for parser in (DefaultParser(), CopyingParser()):
        (decoded,) = _images(_body(image), parser)
        for where in ("n", "m", "l"):
            value = decoded[where]
            yield (
                f"{type(parser).__name__} {where}",
                value if where == "n" else (value["n"] if where == "m" else value[0]),
            )


@pytest.mark.parametrize("literal", VALID_NUMBERS)
def test_every_path_decodes_a_number_alike(literal: str) -> None:
    results = dict(_number_paths(literal))
    expected = _typed(results["decode_value"])
    assert {path: _typed(value) for path, value in results.items()} == dict.fromkeys(
        results, expected
    )
    value = results["decode_value"]
    assert isinstance(value, int | Decimal)
    if isinstance(value, Decimal):
        assert value == Decimal(literal)
        assert value.as_tuple() == Decimal(literal).as_tuple()
    else:
        assert value == Decimal(literal)


@pytest.mark.parametrize("literal", INVALID_NUMBERS)
def test_every_path_refuses_a_malformed_number(literal: str) -> None:
    for av in ({"N": literal}, {"L": [{"N": literal}]}, {"NS": [literal]}):
        with pytest.raises(ValueError, match="number"):
            decode_value(av)
    with pytest.raises(ValueError, match="number"):
        decode_map({"n": {"N": literal}})
    for parser in (DefaultParser(), CopyingParser()):
        with pytest.raises(ddbstreams.MalformedRecordError, match="number"):
            parse_get_records_body(_body({"m": {"M": {"n": {"N": literal}}}}), SHARD, parser)


# --- in place vs a copy ----------------------------------------------------------------------


@settings(SETTINGS, max_examples=80)
@given(st.lists(IMAGES, min_size=1, max_size=4))
def test_in_place_decoding_agrees_with_decode_map(images: list[dict[str, Pair]]) -> None:
    wire = [{k: w for k, (w, _) in image.items()} for image in images]
    before = json.dumps(wire, sort_keys=True)
    expected = [_typed(decode_map(image)) for image in wire]
    assert json.dumps(wire, sort_keys=True) == before  # decode_map leaves its input alone
    body = _body(*wire)
    assert [_typed(image) for image in _images(body, DefaultParser())] == expected
    assert [_typed(image) for image in _images(body, CopyingParser())] == expected


def test_a_failure_after_records_decoded_in_place_starts_over_from_the_bytes() -> None:
    # Records 0 and 1 are decoded in place before record 2 fails (DynamoDB Local's {} for
    # an empty nested map): the body is parsed again, and every record comes out right.
    good = {"m": {"M": {"n": {"N": "1.5"}, "l": {"L": [{"M": {"x": {"S": "y"}}}]}}}}
    quirk = {"m": {"M": {"empty": {}, "n": {"N": "2"}}}}
    body = _body(good, good, quirk, good)
    expected = {"m": {"n": Decimal("1.5"), "l": [{"x": "y"}]}}
    assert _images(body, DefaultParser()) == [
        expected,
        expected,
        {"m": {"empty": {}, "n": 2}},
        expected,
    ]
    assert _images(body, CopyingParser()) == _images(body, DefaultParser())


@pytest.mark.parametrize(
    ("av", "message"),
    [
        ({"X": "1"}, "unknown DynamoDB attribute type tag 'X'"),
        ({"S": "a", "N": "1"}, "exactly one type tag"),
        ({"M": [1]}, "M must hold an object"),
        ({"L": "abc"}, "L must hold an array"),
        ({"SS": "abc"}, "SS must hold an array"),
        ({"NS": ["1", "x"]}, "invalid DynamoDB number"),
        ({"B": "not base64!"}, "binary"),
        ({"BS": ["AA==", "A"]}, "binary"),
        ({"L": [{"S": "ok"}, {"Q": "bad"}]}, "unknown DynamoDB attribute type tag 'Q'"),
    ],
)
def test_malformed_values_after_good_records_are_refused_alike(av: Any, message: str) -> None:
    body = _body({"a": {"M": {"b": {"N": "1.5"}}}}, {"a": {"M": {"b": av}}})
    for parser in (DefaultParser(), CopyingParser()):
        with pytest.raises(ddbstreams.MalformedRecordError, match=message.replace("(", r"\(")):
            parse_get_records_body(body, SHARD, parser)


# --- the garbage collector ------------------------------------------------------------------


class GcWatchingParser:
    """A parser that notes whether the collector was enabled while it ran."""

    def __init__(self, fail: bool = False) -> None:
        self.seen: list[bool] = []
        self.fail = fail

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[Any]:
        self.seen.append(gc.isenabled())
        if self.fail:
            raise ValueError("parser failed")
        return raw_records


@pytest.fixture
def gc_state() -> Iterator[None]:
    enabled = gc.isenabled()
    yield
    if enabled:
        gc.enable()
    else:  # pragma: no cover - the suite runs with the collector on
        gc.disable()


@pytest.mark.usefixtures("gc_state")
def test_the_collector_is_paused_during_a_page_and_enabled_after() -> None:
    gc.enable()
    parser = GcWatchingParser()
    parse_get_records_body(_body({"a": {"S": "x"}}), SHARD, parser)
    assert parser.seen == [False]
    assert gc.isenabled()
    failing = GcWatchingParser(fail=True)
    with pytest.raises(ValueError, match="parser failed"):
        parse_get_records_body(_body({"a": {"S": "x"}}), SHARD, failing)
    assert gc.isenabled()
    with pytest.raises(ddbstreams.MalformedRecordError):
        parse_get_records_body(b"{not json", SHARD, DefaultParser())
    assert gc.isenabled()
    with pytest.raises(ddbstreams.MalformedRecordError):
        parse_get_records_body(_body({"a": {"Z": "x"}}), SHARD, DefaultParser())
    assert gc.isenabled()


@pytest.mark.usefixtures("gc_state")
def test_a_disabled_collector_stays_disabled() -> None:
    gc.disable()
    parser = GcWatchingParser()
    page = parse_get_records_body(_body({"a": {"S": "x"}}), SHARD, DefaultParser())
    parse_get_records_body(_body({"a": {"S": "x"}}), SHARD, parser)
    assert page.records[0].new_image == {"a": "x"}
    assert parser.seen == [False]
    assert not gc.isenabled()


# --- records built by the __class__ switch ----------------------------------------------------


def test_records_of_the_fast_constructor_behave_as_records() -> None:
    (record,) = parse_get_records_body(
        _body({"a": {"SS": ["x"]}, "n": {"N": "1.5"}}), SHARD, DefaultParser()
    ).records
    assert type(record) is Record
    assert _decode._make_record is _decode._make_record_fast
    plain = Record(**{f.name: getattr(record, f.name) for f in dataclasses.fields(Record)})
    assert record == plain
    assert repr(record) == repr(plain)
    assert pickle.loads(pickle.dumps(record)) == record
    assert copy.deepcopy(record) == record
    assert dataclasses.replace(record, shard_id="other").shard_id == "other"
    with pytest.raises(dataclasses.FrozenInstanceError):
        record.shard_id = "changed"  # type: ignore[misc]
    assert not hasattr(record, "__dict__")
