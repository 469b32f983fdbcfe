"""A GetRecords page parsed in pieces is exactly the page parsed whole.

With :class:`DefaultParser`, :func:`parse_get_records_body` parses a large body a piece of
its Records array at a time and decodes each piece right away (``_parse_in_pieces``, whose
docstring says why, and why that is exact). Each test runs a body both ways -- pieces
forced (``_PIECE_BYTES`` tiny: every record boundary is a cut) and pieces off (the whole
body at once, as before) -- and requires the same outcome: equal pages, field by field and
type by type, or the same error with the same message. Bodies it cannot cut cleanly
(whitespace, a "]" after the array, duplicate keys, malformed pieces) must come out right
through the whole-body parse it falls back to.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from typing import Any
from unittest import mock

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbstreams.model import _decode
from ddbstreams.model._decode import DefaultParser, parse_get_records_body
from tests.unit.test_decode_properties import IMAGES, SETTINGS, Pair

SHARD = "shardId-00000001717243200000-0123abcd"
# The order in which AWS writes a stream record's keys (alphabetical, "awsRegion" first).
AWS_ORDER = ("awsRegion", "dynamodb", "eventID", "eventName", "eventSource", "eventVersion")


@contextmanager
def _piece_bytes(size: int) -> Iterator[None]:
    with mock.patch.object(_decode, "_PIECE_BYTES", size):
        yield


def _typed(value: Any) -> Any:
    """A comparable form that tells int from Decimal (and keeps a Decimal's exponent),
    bytes from str, and a record's or a page's fields apart."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return (
            type(value).__name__,
            {f.name: _typed(getattr(value, f.name)) for f in dataclasses.fields(value)},
        )
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, set):
        return sorted((_typed(v) for v in value), key=repr)
    if isinstance(value, Decimal):
        return ("Decimal", value.as_tuple())
    return (type(value).__name__, value)


def _outcome(body: bytes, piece_bytes: int) -> Any:
    with _piece_bytes(piece_bytes):
        try:
            page = parse_get_records_body(body, SHARD, DefaultParser())
        except ValueError as exc:  # MalformedRecordError among them
            return ("raises", type(exc).__name__, str(exc))
    return ("page", _typed(page))


def _same_either_way(body: bytes, piece_bytes: int = 1) -> Any:
    """The outcome of parsing ``body`` in pieces of ``piece_bytes``, checked equal to that of
    parsing it whole."""
    whole = _outcome(body, 10**12)
    assert _outcome(body, piece_bytes) == whole
    return whole


def _cut(body: bytes) -> bool:
    """Whether ``body`` is parsed in pieces (pieces forced), rather than whole."""
    with _piece_bytes(1):
        return _decode._parse_in_pieces(body, SHARD) is not None


def _record(
    n: int,
    new: dict[str, Any] | None = None,
    order: tuple[str, ...] = AWS_ORDER,
    **extra: Any,
) -> dict[str, Any]:
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": 1717243200 + n / 2,
        "Keys": {"pk": {"S": f"k{n}"}, "sk": {"N": str(n)}},
        "SequenceNumber": str(10**21 + n),
        "SizeBytes": 40 + n,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        ddb["NewImage"] = new
    fields = {
        "awsRegion": "eu-west-1",
        "dynamodb": ddb,
        "eventID": f"e{n}",
        "eventName": "MODIFY",
        "eventSource": "aws:dynamodb",
        "eventVersion": "1.1",
    }
    return {**{k: fields[k] for k in order}, **extra}


IMAGE = {
    "name": {"S": "żółw"},
    "n": {"N": "-12.50"},
    "l": {"L": [{"M": {"a": {"N": "1"}}}, {"S": "x"}, {"NS": ["1", "2.5"]}]},
    "m": {"M": {"b": {"BS": ["AA=="]}, "ok": {"BOOL": True}, "no": {"NULL": True}}},
}


def _aws_body(records: list[dict[str, Any]], iterator: Any = "it|1|AAAA") -> bytes:
    """A body laid out as AWS writes one: NextShardIterator first, then Records."""
    return orjson.dumps({"NextShardIterator": iterator, "Records": records})


RECORDS = [_record(n, IMAGE) for n in range(6)]


# --- the fast path is taken, and agrees ------------------------------------------------------


def test_a_large_page_is_decoded_in_several_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    records = [_record(n, IMAGE) for n in range(300)]
    body = _aws_body(records)
    assert len(body) > 2 * _decode._PIECE_BYTES  # the default size: no forcing here
    calls: list[int] = []
    decode_records = _decode._records

    def spy(raw_records: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        calls.append(len(raw_records))
        return decode_records(raw_records, *args, **kwargs)

    monkeypatch.setattr(_decode, "_records", spy)
    page = parse_get_records_body(body, SHARD, DefaultParser())
    assert len(calls) > 5
    assert sum(calls) == 300
    monkeypatch.undo()
    whole = _outcome(body, 10**12)
    assert ("page", _typed(page)) == whole


@pytest.mark.parametrize(
    "body",
    [
        _aws_body(RECORDS),
        orjson.dumps({"Records": RECORDS, "NextShardIterator": "it"}),
        orjson.dumps({"Records": RECORDS}),
        _aws_body(RECORDS, iterator=None),
        _aws_body([_record(n, IMAGE, order=tuple(reversed(AWS_ORDER))) for n in range(4)]),
        _aws_body([]),
        _aws_body(RECORDS[:1]),
    ],
    ids=["aws", "records-first", "no-iterator", "null-iterator", "other-order", "empty", "one"],
)
def test_pages_as_aws_writes_them_are_cut_and_agree(body: bytes) -> None:
    assert _cut(body)
    assert _same_either_way(body)[0] == "page"


def test_records_with_their_keys_in_different_orders_are_cut_where_they_can_be() -> None:
    orders = [AWS_ORDER, tuple(reversed(AWS_ORDER)), AWS_ORDER, AWS_ORDER[1:] + AWS_ORDER[:1]]
    body = _aws_body([_record(n, IMAGE, order=o) for n, o in enumerate(orders * 2)])
    assert _cut(body)
    assert _same_either_way(body)[0] == "page"


# Values that spell the very things _parse_in_pieces looks for.
TRICKY_IMAGE = {
    "Records": {"L": [{"M": {"awsRegion": {"S": "x"}}}, {"M": {"awsRegion": {"S": "y"}}}]},
    "awsRegion": {"S": '},{"awsRegion":'},
    "s1": {"S": '"Records":["'},
    "s2": {"S": "]"},
    "s3": {"S": '}],"Records":[{"awsRegion":'},
    "s4": {"SS": ["},{", '"}', "\\"]},
}


@settings(SETTINGS, max_examples=100)
@given(
    images=st.lists(IMAGES, max_size=5),
    orders=st.lists(st.permutations(AWS_ORDER), min_size=5, max_size=5),
    layout=st.sampled_from(["aws", "records-first", "no-iterator"]),
    piece_bytes=st.sampled_from([1, 60, 400, 3000]),
    identity=st.booleans(),
)
def test_any_page_comes_out_as_when_parsed_whole(
    images: list[dict[str, Pair]],
    orders: list[tuple[str, ...]],
    layout: str,
    piece_bytes: int,
    identity: bool,
) -> None:
    extra = {"userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}
    records = [
        _record(n, {k: w for k, (w, _) in image.items()}, orders[n], **(extra if identity else {}))
        for n, image in enumerate(images)
    ]
    records.append(_record(len(records), TRICKY_IMAGE))
    if layout == "aws":
        body = _aws_body(records)
    elif layout == "records-first":
        body = orjson.dumps({"Records": records, "NextShardIterator": "it"})
    else:
        body = orjson.dumps({"Records": records})
    assert _cut(body)
    assert _same_either_way(body, piece_bytes)[0] == "page"


# --- bodies that cannot be cut cleanly still come out right ---------------------------------

R1 = orjson.dumps(_record(1, IMAGE))
R2 = orjson.dumps(_record(2, IMAGE))
R3 = orjson.dumps(_record(3, IMAGE))
R4 = orjson.dumps(_record(4, IMAGE))


@pytest.mark.parametrize(
    ("body", "cut"),
    [
        # Whitespace: the Records key is not found as such; the body is parsed whole.
        (json.dumps({"NextShardIterator": "it", "Records": RECORDS}, indent=1).encode(), False),
        (b'{"Records": [ ' + R1 + b" , " + R2 + b" ]}", False),
        (b'{"Records":[' + R1 + b" , " + R2 + b"]}", True),  # not cut there: one piece
        # A "]" after the array: the array seems to end later; a piece then fails.
        (orjson.dumps({"Records": RECORDS[:3], "NextShardIterator": "x]y"}), False),
        (_aws_body(RECORDS[:3], iterator="x]y"), True),  # before the array: no matter
        # The same key twice: the last one counts, whole or in pieces.
        (b'{"Recor\\u0064s":[' + R1 + b'],"Records":[' + R2 + b"]}", True),
        (b'{"Records":[' + R1 + b'],"Recor\\u0064s":[' + R2 + b"]}", False),
        (b'{"Recor\\u0064s":[],"X":{"Records":[' + R1 + b"]}}", False),
        (b'{"Records":[' + R1 + b'],"Records":[]}', False),
        (b'{"X":{"Records":[' + R1 + b']},"Records":[' + R2 + b"]}", False),
        (b'{"Records":[' + R1 + b"," + R2 + b'],"Records":[' + R3 + b"," + R4 + b"]}", False),
        (b'{"Records":[' + R1 + b"," + R2 + b'],"x":[' + R3 + b"," + R4 + b"]}", False),
        # The stand-in's token in the body itself.
        (_aws_body(RECORDS[:2], iterator=_decode._RECORDS_TOKEN), False),
    ],
)
def test_bodies_that_cannot_be_cut_cleanly_come_out_right(body: bytes, cut: bool) -> None:
    assert _cut(body) is cut
    assert _same_either_way(body)[0] == "page"


def _deep(levels: int) -> bytes:
    """A body whose second record holds ``levels`` nested arrays where the decoder does not
    look (in userIdentity), so that only the parser's depth limit (1024) matters."""
    deep = _record(2, IMAGE)
    deep["userIdentity"] = {
        "Type": "Service",
        "PrincipalId": "p",
        "x": orjson.Fragment(b"[" * levels + b"]" * levels),
    }
    return orjson.dumps({"Records": [_record(1, IMAGE), deep, _record(3, IMAGE)]})


def test_the_depth_limit_is_the_same_in_pieces() -> None:
    limit = next(n for n in range(1000, 1030) if not _parses(_deep(n)))
    assert _same_either_way(_deep(limit - 1))[0] == "page"
    assert _same_either_way(_deep(limit)) == (
        "raises",
        "MalformedRecordError",
        _outcome(_deep(limit), 10**12)[2],
    )
    assert "depth" in _outcome(_deep(limit), 1)[2]


def _parses(body: bytes) -> bool:
    try:
        orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return True


def _replace_last(body: bytes, old: bytes, new: bytes) -> bytes:
    head, found, tail = body.rpartition(old)
    assert found
    return head + new + tail


def _with_last_record(drop: str = "", **changes: Any) -> bytes:
    last = _record(9, IMAGE)
    last["dynamodb"].update(changes)
    last["dynamodb"].pop(drop, None)
    return _aws_body([*RECORDS, last])


MALFORMED: list[tuple[str, Callable[[], bytes]]] = [
    ("garbage between records", lambda: b'{"Records":[' + R1 + b",x," + R2 + b"]}"),
    ("no comma between records", lambda: b'{"Records":[' + R1 + R2 + b"]}"),
    ("two commas", lambda: b'{"Records":[' + R1 + b",," + R2 + b"]}"),
    ("trailing comma", lambda: b'{"Records":[' + R1 + b"," + R2 + b",]}"),
    ("trailing garbage", lambda: _aws_body(RECORDS) + b"x"),
    ("truncated", lambda: _aws_body(RECORDS)[:-30]),
    ("not an object", lambda: b"[" + _aws_body(RECORDS) + b"]"),
    ("iterator not a string", lambda: _aws_body(RECORDS, iterator=5)),
    ("Records not an array", lambda: orjson.dumps({"Records": {"x": RECORDS}})),
    ("bad number late", lambda: _with_last_record(NewImage={"n": {"N": "1e"}})),
    ("bad tag late", lambda: _with_last_record(NewImage={"n": {"Q": "1"}})),
    ("two tags late", lambda: _with_last_record(NewImage={"n": {"S": "1", "N": "1"}})),
    ("no sequence number late", lambda: _with_last_record(drop="SequenceNumber")),
    ("no keys late", lambda: _with_last_record(drop="Keys")),
    ("bad time late", lambda: _with_last_record(ApproximateCreationDateTime="soon")),
    ("invalid UTF-8 late", lambda: _replace_last(_aws_body(RECORDS), "żółw".encode(), b"\xff")),
]


@pytest.mark.parametrize("make", [m for _, m in MALFORMED], ids=[i for i, _ in MALFORMED])
def test_a_malformed_body_is_refused_alike(make: Callable[[], bytes]) -> None:
    outcome = _same_either_way(make())
    assert outcome[:2] == ("raises", "MalformedRecordError"), outcome


def test_what_only_the_whole_parse_accepts_comes_out_alike() -> None:
    # A lone surrogate (orjson refuses it, the standard library's json reads it) and
    # DynamoDB Local's {} for an empty nested map, both in the last piece.
    surrogate = _replace_last(_aws_body(RECORDS), b"k5", b"\\ud83d")
    assert _same_either_way(surrogate)[0] == "page"
    quirk = _with_last_record(NewImage={"m": {"M": {"empty": {}, "n": {"N": "2"}}}})
    outcome = _same_either_way(quirk)
    assert outcome[0] == "page"
