"""Property tests of attribute value decoding.

- ddbstreams agrees with boto3's ``TypeDeserializer`` (fed what botocore hands it: B already
  base64-decoded) on arbitrary attribute values, given the documented differences: integral
  numbers are ``int`` here and ``Decimal`` there, binary is ``bytes`` here and ``Binary``
  there;
- a whole GetRecords body decodes like botocore's response parser + TypeDeserializer;
- ``encode_value`` then ``decode_value`` gives back the value (floats come back as the exact
  decimal of their repr);
- ``dumps_plain_json`` keeps every number exact.
"""

from __future__ import annotations

import base64
import json
from decimal import Context, Decimal
from typing import Any

import botocore.parsers
import botocore.session
import orjson
from boto3.dynamodb.types import Binary, TypeDeserializer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbstreams.model._decode import (
    DefaultParser,
    decode_map,
    decode_value,
    dumps_plain_json,
    parse_get_records_body,
)
from ddbstreams.model._encode import encode_value

SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
EXACT = Context(prec=200)
MAX_COEFFICIENT = 10**38 - 1
DESERIALIZE = TypeDeserializer().deserialize

Pair = tuple[Any, Any]  # (as on the wire, as botocore hands it to TypeDeserializer)


# --- strategies ----------------------------------------------------------------------------


@st.composite
def number_literals(draw: st.DrawFn) -> str:
    """N literals within DynamoDB's limits (38 significant digits), in every written form."""
    if draw(st.booleans()):
        return str(draw(st.integers(-MAX_COEFFICIENT, MAX_COEFFICIENT)))
    coefficient = draw(st.integers(-MAX_COEFFICIENT, MAX_COEFFICIENT))
    exponent = draw(st.integers(-60, 60))
    value = Decimal(coefficient).scaleb(exponent, context=EXACT)
    forms = [str(value), str(value).lower(), format(value, "f"), format(value, "E")]
    if value >= 0:
        forms.append("00" + format(value, "f"))
    # Trailing zeros count as digits: keep forms within the 38 digits DynamoDB allows.
    forms = [f for f in forms if len(Decimal(f).as_tuple().digits) <= 38]
    return draw(st.sampled_from(forms))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _unique_decimal(literal: str) -> Decimal:
    return Decimal(literal)


LEAVES: st.SearchStrategy[Pair] = st.one_of(
    st.text().map(lambda s: ({"S": s}, {"S": s})),
    number_literals().map(lambda n: ({"N": n}, {"N": n})),
    st.binary(max_size=40).map(lambda b: ({"B": _b64(b)}, {"B": b})),
    st.lists(st.text(max_size=10), min_size=1, max_size=6, unique=True).map(
        lambda ss: ({"SS": ss}, {"SS": ss})
    ),
    st.lists(number_literals(), min_size=1, max_size=6, unique_by=_unique_decimal).map(
        lambda ns: ({"NS": ns}, {"NS": ns})
    ),
    st.lists(st.binary(max_size=12), min_size=1, max_size=5, unique=True).map(
        lambda bs: ({"BS": [_b64(b) for b in bs]}, {"BS": bs})
    ),
    st.just(({"NULL": True}, {"NULL": True})),
    st.booleans().map(lambda b: ({"BOOL": b}, {"BOOL": b})),
)


def _as_list(items: list[Pair]) -> Pair:
    return {"L": [w for w, _ in items]}, {"L": [b for _, b in items]}


def _as_map(items: dict[str, Pair]) -> Pair:
    return (
        {"M": {k: w for k, (w, _) in items.items()}},
        {"M": {k: b for k, (_, b) in items.items()}},
    )


ATTRIBUTE_VALUES: st.SearchStrategy[Pair] = st.recursive(
    LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5).map(_as_list),
        st.dictionaries(st.text(max_size=6), children, max_size=5).map(_as_map),
    ),
    max_leaves=15,
)

# Smaller values for whole images, so a page of them stays quick to generate.
IMAGES: st.SearchStrategy[dict[str, Pair]] = st.dictionaries(
    st.text(min_size=1, max_size=8),
    st.recursive(
        LEAVES,
        lambda children: st.one_of(
            st.lists(children, max_size=3).map(_as_list),
            st.dictionaries(st.text(max_size=4), children, max_size=3).map(_as_map),
        ),
        max_leaves=6,
    ),
    max_size=5,
)


# --- comparison ----------------------------------------------------------------------------


def _canon(value: Any) -> Any:
    """A comparable form that tells int from Decimal, keeps a Decimal's digits and exponent,
    and turns boto3's types into what ddbstreams promises (integral Decimal -> int,
    Binary -> bytes)."""
    if isinstance(value, bool) or value is None:
        return ("const", value)
    if isinstance(value, int):
        return ("int", value)
    if isinstance(value, Decimal):
        if value == value.to_integral_value(context=EXACT):
            # Past 126 digits an integral value stays Decimal; how its exponent is written
            # (1E+126 or 1000...0) is not kept by encode_value, so compare the value.
            return ("int" if value.adjusted() < 126 else "integral Decimal", int(value))
        return ("dec", value.as_tuple())
    if isinstance(value, Binary):
        return ("bytes", value.value)
    if isinstance(value, bytes):
        return ("bytes", value)
    if isinstance(value, str):
        return ("str", value)
    if isinstance(value, dict):
        return ("map", {k: _canon(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [_canon(v) for v in value])
    if isinstance(value, set):
        return ("set", frozenset(_canon(v) for v in value))
    raise AssertionError(f"unexpected type {type(value)}")


def _ours_is_exact(value: Any) -> None:
    """ddbstreams' own promise: ints for integral numbers, never an integral Decimal."""
    if isinstance(value, Decimal):
        assert value != value.to_integral_value(context=EXACT) or value.adjusted() >= 126
    elif isinstance(value, dict):
        for v in value.values():
            _ours_is_exact(v)
    elif isinstance(value, list | set):
        for v in value:
            _ours_is_exact(v)
    else:
        assert not isinstance(value, float)


# --- properties ----------------------------------------------------------------------------


@SETTINGS
@given(ATTRIBUTE_VALUES)
def test_decode_value_agrees_with_type_deserializer(pair: Pair) -> None:
    wire, botocore_parsed = pair
    before = json.dumps(wire, sort_keys=True)
    ours = decode_value(wire)
    _ours_is_exact(ours)
    assert _canon(ours) == _canon(DESERIALIZE(botocore_parsed))
    assert json.dumps(wire, sort_keys=True) == before  # the input is left alone


_STREAMS_MODEL = botocore.session.get_session().get_service_model("dynamodbstreams")
_GET_RECORDS_OUTPUT = _STREAMS_MODEL.operation_model("GetRecords").output_shape
_BOTOCORE_PARSER = botocore.parsers.create_parser(_STREAMS_MODEL.metadata["protocol"])


def _record(n: int, keys: dict[str, Any], new: dict[str, Any], old: dict[str, Any]) -> Any:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1717243200 + n,
        "Keys": keys,
        "SequenceNumber": str(10**21 + n),
        "SizeBytes": 100,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new:
        ddb["NewImage"] = new
    if old:
        ddb["OldImage"] = old
    return {
        "eventID": f"id-{n}",
        "eventName": "MODIFY",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": ddb,
    }


@settings(SETTINGS, max_examples=60)
@given(st.lists(st.tuples(IMAGES, IMAGES, IMAGES), max_size=3))
def test_get_records_body_agrees_with_botocore(
    images: list[tuple[dict[str, Pair], dict[str, Pair], dict[str, Pair]]],
) -> None:
    wire = [
        _record(n, *({k: w for k, (w, _) in image.items()} for image in triple))
        for n, triple in enumerate(images)
    ]
    body = orjson.dumps({"Records": wire, "NextShardIterator": "next"})
    page = parse_get_records_body(body, "shard-1", DefaultParser())
    response = {"body": body, "headers": {}, "status_code": 200}
    parsed = _BOTOCORE_PARSER.parse(response, _GET_RECORDS_OUTPUT)
    assert page.next_shard_iterator == parsed["NextShardIterator"] == "next"
    assert len(page.records) == len(parsed["Records"]) == len(wire)
    for record, theirs in zip(page.records, parsed["Records"], strict=True):
        ddb = theirs["dynamodb"]
        assert record.sequence_number == ddb["SequenceNumber"]
        assert record.approximate_creation_time == ddb["ApproximateCreationDateTime"]
        for ours, part in (
            (record.keys, "Keys"),
            (record.new_image, "NewImage"),
            (record.old_image, "OldImage"),
        ):
            expected = ddb.get(part)
            if expected is None:
                assert ours is None
            else:
                assert ours is not None
                _ours_is_exact(ours)
                assert _canon(ours) == _canon({k: DESERIALIZE(v) for k, v in expected.items()})


# Python values that encode_value accepts; floats handled separately (they are inexact).
DECIMALS = st.builds(
    lambda c, e: Decimal(c).scaleb(e, context=EXACT),
    st.integers(-MAX_COEFFICIENT, MAX_COEFFICIENT),
    st.integers(-60, 60),
)
NUMBERS = st.one_of(st.integers(-MAX_COEFFICIENT, MAX_COEFFICIENT), DECIMALS)
PYTHON_LEAVES = st.one_of(
    st.text(),
    NUMBERS,
    st.floats(allow_nan=False, allow_infinity=False),
    st.binary(max_size=30),
    st.none(),
    st.booleans(),
    st.frozensets(st.text(max_size=8), min_size=1, max_size=5).map(set),
    st.frozensets(st.binary(max_size=8), min_size=1, max_size=5).map(set),
    st.frozensets(NUMBERS, min_size=1, max_size=5).map(set),
)
PYTHON_VALUES = st.recursive(
    PYTHON_LEAVES,
    lambda children: st.one_of(
        st.lists(children, max_size=5), st.dictionaries(st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=25,
)


def _expected_after_round_trip(value: Any) -> Any:
    if isinstance(value, float):
        return _canon(Decimal(repr(value)))
    if isinstance(value, dict):
        return ("map", {k: _expected_after_round_trip(v) for k, v in value.items()})
    if isinstance(value, list):
        return ("list", [_expected_after_round_trip(v) for v in value])
    return _canon(value)


@SETTINGS
@given(PYTHON_VALUES)
def test_encode_then_decode_round_trips(value: Any) -> None:
    decoded = decode_value(encode_value(value))
    _ours_is_exact(decoded)
    assert _canon(decoded) == _expected_after_round_trip(value)


@SETTINGS
@given(st.dictionaries(st.text(max_size=8), PYTHON_VALUES, max_size=6))
def test_encode_item_then_decode_map_round_trips(item: dict[str, Any]) -> None:
    encoded = {k: encode_value(v) for k, v in item.items()}
    assert _canon(decode_map(encoded)) == _expected_after_round_trip(item)


def _plain_expected(value: Any) -> Any:
    """What dumps_plain_json promises, read back with exact numbers."""
    if isinstance(value, bytes):
        return _b64(value)
    if isinstance(value, set):
        return [_plain_expected(v) for v in sorted(value)]
    if isinstance(value, dict):
        return {k: _plain_expected(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_expected(v) for v in value]
    return value


def _typed(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, Decimal):
        return ("dec", value.as_tuple())
    return (type(value).__name__, value)


@SETTINGS
@given(ATTRIBUTE_VALUES)
def test_dumps_plain_json_keeps_numbers_exact(pair: Pair) -> None:
    decoded = decode_value(pair[0])
    text = dumps_plain_json({"value": decoded})
    back = json.loads(text, parse_float=Decimal)["value"]
    assert _typed(back) == _typed(_plain_expected(decoded))
