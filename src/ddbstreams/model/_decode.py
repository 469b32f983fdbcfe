"""Decoding of DynamoDB Streams wire data: GetRecords bodies, Lambda events, attribute values.

Layer 1, pure, no I/O, and the hot path of every reader: a full GetRecords page (up to 1000
records, 1 MB) goes from bytes to :class:`~ddbstreams.model._types.Record` objects here.

Attribute values (DynamoDB JSON) decode as follows:

====== =====================================================================
S      ``str``
N      ``int`` when the number's value is an integer, else ``Decimal`` (exact)
B      ``bytes`` (the wire carries base64 text)
SS     ``set[str]``
NS     ``set`` of ``int`` / ``Decimal`` (each member as for N)
BS     ``set[bytes]``
M      ``dict[str, ...]`` (decoded recursively)
L      ``list`` (decoded recursively)
NULL   ``None``
BOOL   ``bool``
====== =====================================================================

Numbers are never turned into floats. The N rule, exactly: the literal must be a decimal
number as JSON and DynamoDB write it (optional sign, digits with an optional fraction, an
optional exponent; no ``NaN``/``Infinity``, no whitespace or underscores). It decodes to
``int`` when its *value* is an integer of at most 126 digits -- so ``"100"``, ``"-5"``,
``"00012"`` (12), ``"-0"`` (0), ``"1.0"`` (1) and ``"1E+2"`` (100) are ints -- and to
``Decimal(literal)`` otherwise, e.g. ``"1.5"``, ``"-0.25"``, ``"1E-130"``. The digit cap
only matters for literals outside DynamoDB's range (magnitude below 1E+126): it keeps a
hostile ``"1E+999999999"`` from being expanded into a huge int. Either way the value is
exact: 38-digit numbers round-trip unchanged. DynamoDB itself returns numbers normalised
(no exponent, no trailing fractional zeros), for which the rule is simply "no decimal
point means int".

Malformed input raises ``ValueError`` with a message that says what is wrong (unknown type
tag, bad number, bad base64, a record missing a field...). The hot path does not check what
it can pass through unchanged: the payloads of S and BOOL, the members of SS, and record
fields such as ``SizeBytes`` are taken as the service sends them.

Lone surrogates: DynamoDB stores strings holding a lone UTF-16 surrogate (``"\\ud83d"``,
half of a character outside the Basic Multilingual Plane) and GetRecords returns them as
``\\uXXXX`` escapes, which orjson refuses. A GetRecords body is decoded by orjson straight
from bytes (the fast path); only when orjson refuses it for a surrogate is that one body
decoded again with the standard library's ``json`` (NaN and Infinity still refused), which
keeps the lone surrogate in the Python ``str`` -- exactly what boto3 gives. Such strings
cannot be encoded as UTF-8, so :func:`dumps_plain_json` writes each lone surrogate as a
``\\uXXXX`` escape: the output is valid JSON and ``json.loads`` reads the same ``str`` back.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import gc
import json
import operator
import re
import secrets
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Final, TypeVar, cast

import orjson

from ddbstreams._errors import MalformedRecordError
from ddbstreams.model._parser import Parser
from ddbstreams.model._types import Record, RecordsPage, UserIdentity

__all__ = [
    "DefaultParser",
    "RawParser",
    "decode_map",
    "decode_value",
    "dumps_plain_json",
    "escape_lone_surrogates",
    "parse_get_records_body",
]

T = TypeVar("T")

# A DynamoDB number literal; anything Decimal() accepts beyond this (whitespace, "_",
# NaN, Infinity, non-ASCII digits) is rejected.
_NUMBER: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Integral values with more digits than this stay Decimal (see the module docstring).
_MAX_INT_DIGITS: Final = 126
_NONZERO_DIGITS: Final = frozenset("123456789")

_a2b: Final = binascii.a2b_base64
_gc_isenabled: Final = gc.isenabled
_gc_disable: Final = gc.disable
_gc_enable: Final = gc.enable
_fromtimestamp: Final = datetime.fromtimestamp


def _number(text: str) -> int | Decimal:
    """Decode the text of an N (or NS member); see the module docstring for the rule."""
    # Plain ASCII digits are the bulk of what DynamoDB sends. isascii() is O(1) and rules
    # out the non-ASCII digits that int() would otherwise accept.
    if text.isdigit() and text.isascii() and len(text) <= _MAX_INT_DIGITS:
        return int(text)
    # Then digits with one point and a nonzero last digit (how DynamoDB writes a number
    # with a fraction): never integral. _map and _map_owned inline both tests.
    if text[-1] in _NONZERO_DIGITS and text.isascii() and text.replace(".", "", 1).isdigit():
        return Decimal(text)
    return _number_slow(text)


def _number_slow(text: str) -> int | Decimal:
    # Cheap checks first for the two shapes DynamoDB itself writes, -?digits and
    # -?digits.digits (normalised, so the last fractional digit is nonzero); the regex and
    # the exact integral test are for everything else.
    if type(text) is str and text.isascii():
        unsigned = text.removeprefix("-")
        if "." in unsigned:
            if text[-1] in _NONZERO_DIGITS and unsigned.replace(".", "", 1).isdigit():
                return Decimal(text)  # a nonzero last fractional digit: never integral
        elif unsigned.isdigit() and len(unsigned) <= _MAX_INT_DIGITS:
            return int(text)
    if type(text) is not str or _NUMBER.fullmatch(text) is None:
        raise ValueError(f"invalid DynamoDB number (N): {text!r:.80}")
    try:
        value = Decimal(text)
    except ArithmeticError:  # decimal.InvalidOperation: an exponent beyond any context
        raise ValueError(f"DynamoDB number (N) out of range: {text!r:.80}") from None
    if value.adjusted() < _MAX_INT_DIGITS:
        integral = int(value)
        if integral == value:
            return integral
    elif not value:
        return 0  # zero with a silly exponent, e.g. "0E+500"
    return value


def _binary(text: str) -> bytes:
    try:
        return _a2b(text, strict_mode=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise ValueError(f"invalid DynamoDB binary (B): not base64 text: {text!r:.80}") from exc


def _bad_attribute(av: object) -> ValueError:
    if isinstance(av, dict) and len(av) == 1:
        (tag,) = av
        return ValueError(f"unknown DynamoDB attribute type tag {tag!r} in {av!r:.120}")
    return ValueError(
        f"a DynamoDB attribute value must be an object with exactly one type tag, got {av!r:.120}"
    )


_TAGS: Final = frozenset(("S", "N", "B", "SS", "NS", "BS", "M", "L", "NULL", "BOOL"))


def _map(m: dict[str, Any]) -> dict[str, Any]:
    """Decode an attribute map into a new dict, unchecked: malformed input raises whatever
    Python raises. ``m`` is left alone: this is the decoder for the caller's data
    (:func:`decode_map`, Lambda events, parsers other than exactly DefaultParser).

    The hottest loop of the library, one iteration per attribute of every image: the
    common tags are tested in order of frequency and decoded inline. :func:`_map_owned`
    is its twin for a document this module parsed itself.
    """
    out = {}
    for k, av in m.items():
        (tag,) = av
        v = av[tag]
        if tag == "S":
            out[k] = v
        elif tag == "N":
            if v.isdigit() and v.isascii() and len(v) <= _MAX_INT_DIGITS:
                out[k] = int(v)
            elif v[-1] in _NONZERO_DIGITS and v.isascii() and v.replace(".", "", 1).isdigit():
                out[k] = Decimal(v)
            else:
                out[k] = _number_slow(v)
        elif tag == "M":
            out[k] = _map(v)
        elif tag == "BOOL":
            out[k] = v
        elif tag == "NULL":
            out[k] = None
        # A string payload would be iterated (L) or split into characters (sets): refuse it.
        elif tag == "L" and type(v) is list:
            out[k] = _list(v)
        elif tag == "SS" and type(v) is list:
            out[k] = set(v)
        elif tag == "B":
            out[k] = _a2b(v, strict_mode=True)
        elif tag == "NS" and type(v) is list:
            out[k] = _number_set(v)
        elif tag == "BS" and type(v) is list:
            out[k] = _binary_set(v)
        else:
            raise KeyError(tag)
    return out


def _map_owned(m: dict[str, Any]) -> dict[str, Any]:
    """Decode an attribute map in place and return it, unchecked as :func:`_map`: each
    attribute value in ``m`` and in its nested maps and lists is replaced by its decoded
    value.

    Only for a document this module parsed and owns (see :func:`parse_get_records_body`),
    for the attribute value objects are emptied as they are read: ``av.popitem()`` gives
    the tag and the payload in one call, without the iterator that ``(tag,) = av`` makes
    and the lookup of ``av[tag]`` (some 4% of a page's CPU time on ``bench/decode.py``). A
    value with more than one tag is left non-empty, which is refused. Otherwise
    :func:`_map` line by line.
    """
    for k, av in m.items():
        tag, v = av.popitem()
        if av:
            raise ValueError("more than one type tag")
        if tag == "S":
            m[k] = v
        elif tag == "N":
            if v.isdigit() and v.isascii() and len(v) <= _MAX_INT_DIGITS:
                m[k] = int(v)
            elif v[-1] in _NONZERO_DIGITS and v.isascii() and v.replace(".", "", 1).isdigit():
                m[k] = Decimal(v)
            else:
                m[k] = _number_slow(v)
        elif tag == "M":
            m[k] = _map_owned(v)
        elif tag == "BOOL":
            m[k] = v
        elif tag == "NULL":
            m[k] = None
        elif tag == "L" and type(v) is list:
            m[k] = _list_owned(v)
        elif tag == "SS" and type(v) is list:
            m[k] = set(v)
        elif tag == "B":
            m[k] = _a2b(v, strict_mode=True)
        elif tag == "NS" and type(v) is list:
            m[k] = _number_set(v)
        elif tag == "BS" and type(v) is list:
            m[k] = _binary_set(v)
        else:
            raise KeyError(tag)
    return m


def _number_set(values: list[Any]) -> set[int | Decimal]:
    """The members of an NS, unchecked: :func:`_number` with its tests inline, as the maps
    have them (a call per member would cost more than the member)."""
    out: set[int | Decimal] = set()
    add = out.add
    for x in values:
        if x.isdigit() and x.isascii() and len(x) <= _MAX_INT_DIGITS:
            add(int(x))
        elif x[-1] in _NONZERO_DIGITS and x.isascii() and x.replace(".", "", 1).isdigit():
            add(Decimal(x))
        else:
            add(_number_slow(x))
    return out


def _binary_set(values: list[Any]) -> set[bytes]:
    """The members of a BS, unchecked (a loop: cheaper than a set comprehension's call)."""
    out: set[bytes] = set()
    add = out.add
    for x in values:
        add(_a2b(x, strict_mode=True))
    return out


def _other(tag: str, v: Any, decode_list: Callable[[list[Any]], list[Any]]) -> Any:
    """The payload ``v`` of a value tagged anything but S, N, M, BOOL and NULL, unchecked
    (as :func:`_map` decodes it inline); an L by ``decode_list``."""
    if type(v) is list:
        if tag == "L":
            return decode_list(v)
        if tag == "SS":
            return set(v)
        if tag == "NS":
            return _number_set(v)
        if tag == "BS":
            return _binary_set(v)
    elif tag == "B":
        return _a2b(v, strict_mode=True)
    raise KeyError(tag)


def _list(values: list[Any]) -> list[Any]:
    """Decode the payload of an L into a new list, unchecked; maps (lists of objects) and S
    inline."""
    out: list[Any] = []
    append = out.append
    for av in values:
        (tag,) = av
        v = av[tag]
        if tag == "M":
            append(_map(v))
        elif tag == "S":
            append(v)
        else:
            append(_value(av))
    return out


def _list_owned(values: list[Any]) -> list[Any]:
    """:func:`_list` for a document this module owns, as :func:`_map_owned` is to
    :func:`_map` (``values`` is left with emptied attribute values)."""
    out: list[Any] = []
    append = out.append
    for av in values:
        tag, v = av.popitem()
        if av:
            raise ValueError("more than one type tag")
        if tag == "M":
            append(_map_owned(v))
        elif tag == "S":
            append(v)
        elif tag == "N":
            append(_number(v))
        elif tag == "BOOL":
            append(v)
        elif tag == "NULL":
            append(None)
        else:
            append(_other(tag, v, _list_owned))
    return out


def _value(av: dict[str, Any]) -> Any:
    """Decode one attribute value, unchecked (see :func:`_map`)."""
    (tag,) = av
    v = av[tag]
    if tag == "S":
        return v
    if tag == "N":
        return _number(v)
    if tag == "M":
        return _map(v)
    if tag == "BOOL":
        return v
    if tag == "NULL":
        return None
    return _other(tag, v, _list)


# What the unchecked fast path raises on malformed input (binascii.Error is a ValueError).
_DECODE_ERRORS: Final = (LookupError, TypeError, AttributeError, ValueError)


def decode_value(av: dict[str, Any]) -> Any:
    """Decode one attribute value (``{"S": "x"}``, ``{"N": "1"}``, ...) to a Python value.

    Raises ``ValueError`` naming the problem for an unknown type tag, an attribute value that
    is not a one-key object, a malformed number, or binary that is not base64.
    """
    try:
        return _value(av)
    except _DECODE_ERRORS as exc:
        raise _diagnose(av) from exc


def decode_map(m: dict[str, Any]) -> dict[str, Any]:
    """Decode a map of attribute values (an item, a key, or the value of an M).

    Raises ``ValueError`` as :func:`decode_value` does.
    """
    try:
        return _map(m)
    except _DECODE_ERRORS as exc:
        if not isinstance(m, dict):
            raise ValueError(f"an attribute map must be an object, got {m!r:.120}") from exc
        raise _diagnose({"M": m}) from exc


def _diagnose(av: Any) -> ValueError:
    """The error to raise for an attribute value the fast path failed on.

    The fast path lets Python raise whatever it raises (so it pays nothing for checks);
    this walks the value again, slowly and carefully, to say what is wrong.
    """
    try:
        _decode_checked(av)
    except ValueError as exc:
        return exc
    return ValueError(f"malformed DynamoDB attribute value {av!r:.120}")  # pragma: no cover


def _decode_checked(av: Any, lenient: bool = False) -> Any:
    if lenient and type(av) is dict and not av:
        # DynamoDB Local 3.x writes an empty map nested in a map as {} instead of
        # {"M": {}} in stream records (GetItem shows {"M": {}}); read it as the empty map.
        return {}
    if not isinstance(av, dict) or len(av) != 1:
        raise _bad_attribute(av)
    ((tag, v),) = av.items()
    if tag not in _TAGS:
        raise _bad_attribute(av)
    if tag == "S":
        if type(v) is not str:
            raise ValueError(f"S must hold a string: {av!r:.120}")
        return v
    if tag == "N":
        return _number_slow(v)
    if tag == "B":
        return _binary(v)
    if tag == "BOOL":
        if type(v) is not bool:
            raise ValueError(f"BOOL must hold true or false: {av!r:.120}")
        return v
    if tag == "NULL":
        return None
    if tag == "M":
        if not isinstance(v, dict):
            raise ValueError(f"M must hold an object: {av!r:.120}")
        return {k: _decode_checked(x, lenient) for k, x in v.items()}
    if not isinstance(v, list):
        raise ValueError(f"{tag} must hold an array: {av!r:.120}")
    if tag == "L":
        return [_decode_checked(x, lenient) for x in v]
    if tag == "SS":
        if not all(type(x) is str for x in v):
            raise ValueError(f"SS members must be strings: {av!r:.120}")
        return set(v)
    if tag == "NS":
        return {_number_slow(x) for x in v}
    return {_binary(x) for x in v}


def _user_identity(raw: Any) -> UserIdentity:
    # GetRecords capitalises these keys; Lambda events do not.
    kind = raw.get("Type", raw.get("type"))
    principal = raw.get("PrincipalId", raw.get("principalId"))
    if type(kind) is not str or type(principal) is not str:
        raise ValueError(f"malformed userIdentity in stream record: {raw!r:.120}")
    return UserIdentity(kind, principal)


_RECORD_FIELDS: Final = (
    "event_id",
    "event_name",
    "event_version",
    "event_source",
    "aws_region",
    "keys",
    "new_image",
    "old_image",
    "sequence_number",
    "size_bytes",
    "stream_view_type",
    "approximate_creation_time",
    "shard_id",
    "user_identity",
    "event_source_arn",
)


class _RecordDraft:
    """A mutable twin of Record (the same slots): see :func:`_record_factory`."""

    __slots__ = _RECORD_FIELDS


def _record_factory() -> Callable[..., Record]:
    """A constructor for Record taking its fields positionally, about three times as fast.

    A frozen dataclass's ``__init__`` assigns each field through ``object.__setattr__``
    (a global lookup, an attribute lookup and a generic call per field). Here the fields
    are stored into a :class:`_RecordDraft` with plain attribute stores, and the object
    then becomes a Record by ``__class__`` assignment, which Python allows between classes
    with the same slots (and checks). If Record's fields are no longer exactly the ones
    this was written for, falls back to calling ``Record`` by keyword (correct, just
    slower; a test checks the fast path is in use).
    """
    names = tuple(f.name for f in dataclasses.fields(Record))
    if names == _RECORD_FIELDS:
        try:
            probe: Any = object.__new__(_RecordDraft)
            probe.__class__ = Record
        except TypeError:  # pragma: no cover - the layouts differ
            pass
        else:
            return _make_record_fast

    def slow(*args: Any) -> Record:  # pragma: no cover - guards against a change of Record
        return Record(**dict(zip(_RECORD_FIELDS, args, strict=True)))

    return slow


def _make_record_fast(
    a0: Any, a1: Any, a2: Any, a3: Any, a4: Any, a5: Any, a6: Any, a7: Any,
    a8: Any, a9: Any, a10: Any, a11: Any, a12: Any, a13: Any, a14: Any,
) -> Record:  # fmt: skip
    r: Any = _new_object(_RecordDraft)
    r.event_id = a0
    r.event_name = a1
    r.event_version = a2
    r.event_source = a3
    r.aws_region = a4
    r.keys = a5
    r.new_image = a6
    r.old_image = a7
    r.sequence_number = a8
    r.size_bytes = a9
    r.stream_view_type = a10
    r.approximate_creation_time = a11
    r.shard_id = a12
    r.user_identity = a13
    r.event_source_arn = a14
    r.__class__ = Record
    return r  # type: ignore[no-any-return]


_new_object: Final = object.__new__
_make_record: Final = _record_factory()

_Decode = Callable[[dict[str, Any]], dict[str, Any]]
# What a record's fast path may raise on malformed input (datetime: OverflowError, OSError).
_RECORD_ERRORS: Final = (*_DECODE_ERRORS, OverflowError, OSError)


def _records(
    raw_records: list[dict[str, Any]],
    shard_id: str,
    decode: _Decode | None,
    in_place: bool = False,
) -> list[Record]:
    """Records of ``raw_records``, images decoded by ``decode`` (``None``: left raw).

    In place (``decode`` is :func:`_map_owned`), a failure is raised as it is: the caller
    parses the body again and decodes it the careful way. Otherwise the fast path goes on
    record by record with the careful decoder from the first record it failed on.
    """
    out: list[Record] = []
    try:
        _fill(out, raw_records, shard_id, decode)
    except _RECORD_ERRORS as exc:
        if in_place:
            raise
        done = len(out)
        if decode is None or decode is _decode_lenient_map:
            raise _diagnose_record(raw_records[done], decode is not None) from exc
        # The fast path checks nothing. Go on record by record with the careful decoder,
        # which also reads DynamoDB Local's quirks; it says what is wrong if it fails too.
        try:
            out.extend(_records(raw_records[done : done + 1], shard_id, _decode_lenient_map))
        except MalformedRecordError as careful:
            raise careful from exc
        out.extend(_records(raw_records[done + 1 :], shard_id, decode))
    return out


def _fill(
    out: list[Record],
    raw_records: list[dict[str, Any]],
    shard_id: str,
    decode: _Decode | None,
) -> None:
    """Append the Record of each raw record to ``out``, unchecked (the caller handles errors)."""
    append = out.append
    make = _make_record
    # A page's records share a handful of creation times (second resolution): convert
    # each distinct one once. datetimes are immutable, so sharing them is safe.
    times: dict[Any, datetime] = {}
    for raw in raw_records:
        ddb = raw["dynamodb"]
        keys = ddb["Keys"]
        new = ddb.get("NewImage")
        old = ddb.get("OldImage")
        if decode is not None:
            keys = decode(keys)
            if new is not None:
                new = decode(new)
            if old is not None:
                old = decode(old)
        epoch = ddb["ApproximateCreationDateTime"]
        created = times.get(epoch)
        if created is None:
            created = times[epoch] = _fromtimestamp(epoch, UTC)
        identity = raw.get("userIdentity")
        append(
            make(
                raw["eventID"],
                raw["eventName"],
                raw["eventVersion"],
                raw["eventSource"],
                raw["awsRegion"],
                keys,
                new,
                old,
                ddb["SequenceNumber"],
                ddb["SizeBytes"],
                ddb["StreamViewType"],
                created,
                shard_id,
                None if identity is None else _user_identity(identity),
                raw.get("eventSourceARN"),
            )
        )


def _decode_lenient_map(m: dict[str, Any]) -> dict[str, Any]:
    decoded = _decode_checked({"M": m}, lenient=True)
    assert isinstance(decoded, dict)
    return decoded


_REQUIRED: Final = (
    ("eventID", str),
    ("eventName", str),
    ("eventVersion", str),
    ("eventSource", str),
    ("awsRegion", str),
    ("dynamodb", dict),
)
_REQUIRED_DYNAMODB: Final = (
    ("Keys", dict),
    ("SequenceNumber", str),
    ("SizeBytes", int),
    ("StreamViewType", str),
    ("ApproximateCreationDateTime", (int, float)),
)


def _missing_field(
    part: dict[str, Any], fields: tuple[tuple[str, type | tuple[type, ...]], ...], label: str
) -> str | None:
    for name, kind in fields:
        if name not in part:
            return f"missing {label}{name}"
        value = part[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            return f"{label}{name} has the wrong type"
    return None


def _diagnose_record(raw: Any, decode: bool) -> MalformedRecordError:
    """The error for a stream record the fast path failed on, saying what is wrong."""
    where = f"malformed stream record {raw!r:.200}"
    if not isinstance(raw, dict):
        return MalformedRecordError(f"{where}: not an object")
    problem = _missing_field(raw, _REQUIRED, "") or _missing_field(
        raw["dynamodb"], _REQUIRED_DYNAMODB, "dynamodb."
    )
    if problem:
        return MalformedRecordError(f"{where}: {problem}")
    ddb = raw["dynamodb"]
    for name in ("NewImage", "OldImage"):
        if ddb.get(name) is not None and not isinstance(ddb[name], dict):
            return MalformedRecordError(f"{where}: dynamodb.{name} is not an object")
    try:
        _fromtimestamp(ddb["ApproximateCreationDateTime"], UTC)
        if raw.get("userIdentity") is not None:
            _user_identity(raw["userIdentity"])
    except (OverflowError, OSError, ValueError, AttributeError) as exc:
        return MalformedRecordError(f"{where}: {exc}")
    if decode:
        for name in ("Keys", "NewImage", "OldImage"):
            if ddb.get(name) is not None:
                try:
                    _decode_checked({"M": ddb[name]}, lenient=True)
                except ValueError as exc:
                    return MalformedRecordError(f"{where}: in dynamodb.{name}: {exc}")
    return MalformedRecordError(where)  # pragma: no cover - the fast path failed for another reason


class DefaultParser:
    """The default :class:`~ddbstreams.model._parser.Parser`: records with decoded Python values.

    ``keys``, ``new_image`` and ``old_image`` are decoded per the module docstring; images
    the stream view type does not carry are ``None``. Raises ``ValueError`` for a record or
    attribute value that is malformed.
    """

    __slots__ = ()

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[Record]:
        return _records(raw_records, shard_id, _map)


_DEFAULT_PARSER_TYPE: Final[type] = DefaultParser


class RawParser:
    """A :class:`~ddbstreams.model._parser.Parser` that leaves attribute values as on the wire.

    ``keys``, ``new_image`` and ``old_image`` are the DynamoDB JSON maps exactly as received
    (B still base64 text, N still strings); every other field is filled as by
    :class:`DefaultParser`.
    """

    __slots__ = ()

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[Record]:
        return _records(raw_records, shard_id, None)


def parse_get_records_body(body: bytes, shard_id: str, parser: Parser[T]) -> RecordsPage[T]:
    """Parse one GetRecords response body into a :class:`~ddbstreams.model._types.RecordsPage`.

    ``Records`` may be missing or empty; a missing or null ``NextShardIterator`` means the
    shard has ended (``next_shard_iterator`` is ``None``). ``last_sequence_number`` and
    ``last_creation_time`` (epoch seconds) come from the last raw record, or are ``None`` for
    an empty page. Raises :class:`~ddbstreams.MalformedRecordError` (a ``ValueError``) for a
    body that is not a GetRecords response, and whatever ``parser`` raises.

    The cyclic garbage collector is paused while the page is parsed, if it is enabled, and
    enabled again afterwards (also on an error). A page is some 100,000 new containers
    that all either survive the parse or are freed by reference counting, so every
    collection it would trigger is wasted, and a costly one: each traverses the page built
    so far again, which made the collector take more CPU than the parsing on large pages.
    (The switch is process-wide: a thread that disables the collector while a page is
    parsed finds it enabled again afterwards.) With :class:`DefaultParser` the images are
    decoded in place into the document that orjson built (see :func:`_map_owned`), which this
    function owns, and a large body is parsed and decoded a piece of its Records array at a
    time (see :func:`_parse_in_pieces`).
    """
    in_place = type(parser) is _DEFAULT_PARSER_TYPE  # not a subclass: it may override
    if not _gc_isenabled():
        return _parse_body(body, shard_id, parser, in_place)
    _gc_disable()
    try:
        return _parse_body(body, shard_id, parser, in_place)
    finally:
        _gc_enable()


def _parse_body(body: bytes, shard_id: str, parser: Parser[T], in_place: bool) -> RecordsPage[T]:
    # A body of a piece or two is as well parsed at once (its objects fit in the cache).
    if in_place and type(body) is bytes and len(body) > 2 * _PIECE_BYTES:
        page = _parse_in_pieces(body, shard_id)
        if page is not None:
            return cast(RecordsPage[T], page)
    try:
        doc = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        doc = _loads_with_lone_surrogates(body, exc)
    if type(doc) is not dict:
        raise MalformedRecordError(f"GetRecords response body is not a JSON object: {body[:80]!r}")
    raw_records = doc.get("Records")
    if raw_records is None:
        raw_records = []
    elif type(raw_records) is not list:
        raise MalformedRecordError("GetRecords response: Records is not an array")
    iterator = doc.get("NextShardIterator")
    if iterator is not None and type(iterator) is not str:
        raise MalformedRecordError("GetRecords response: NextShardIterator is not a string")
    last_sequence: str | None = None
    last_time: float | None = None
    if raw_records:
        try:
            last = raw_records[-1]["dynamodb"]
            last_sequence = last["SequenceNumber"]
            last_time = float(last["ApproximateCreationDateTime"])
        except (KeyError, TypeError, ValueError) as exc:
            raise _diagnose_record(raw_records[-1], decode=False) from exc
    if in_place:
        try:
            built = _records(raw_records, shard_id, _map_owned, in_place=True)
        except _RECORD_ERRORS:
            # Malformed, or DynamoDB Local's empty maps: the document is now half decoded.
            # Parse the body again and decode it the careful way.
            return _parse_body(body, shard_id, parser, in_place=False)
        # Each record holds its raw record's sequence number (a record without one failed
        # above): read them there, in memory just written, rather than from the raw records
        # again, which are cold by now (a page is some 10 MB of objects).
        sequence_numbers = list(map(_SEQUENCE_NUMBER, built))
        records = cast(list[T], built)
    else:
        sequence_numbers = _sequence_numbers(raw_records)
        records = parser.parse_records(raw_records, shard_id)
    return RecordsPage(records, iterator, last_sequence, last_time, sequence_numbers, len(body))


_SEQUENCE_NUMBER: Final = operator.attrgetter("sequence_number")

# How much of a Records array _parse_in_pieces parses at a time: some 15 records of 1 KB,
# whose objects (about ten times the JSON) stay in a core's cache until they are decoded.
# Anything from 4 to 32 KB does as well on bench/decode.py; a whole page took 45% longer.
_PIECE_BYTES: Final = 16_384
_RECORDS_KEY: Final = b'"Records":['
# What stands in for the Records array when the rest of a body is parsed on its own: a
# random token, which no body holds (checked), so the one that comes back is this one.
_RECORDS_TOKEN: Final = "ddbstreams-records-" + secrets.token_hex(16)
_RECORDS_TOKEN_BYTES: Final = _RECORDS_TOKEN.encode()
_RECORDS_STAND_IN: Final = b'["' + _RECORDS_TOKEN_BYTES + b'"]'
# Each piece is parsed as the one element of an array, so that its records sit as deep as
# in the body (orjson refuses documents nested deeper than 1024 levels); the outer array
# having that one element shows that the piece did not close the inner one early.
_PIECE_OPEN: Final = b"[["
_PIECE_CLOSE: Final = b"]]"


def _parse_in_pieces(body: bytes, shard_id: str) -> RecordsPage[Record] | None:
    """The page of ``body`` for :class:`DefaultParser`, its Records array parsed and decoded
    a piece at a time; ``None`` if the body is not laid out as expected or anything in it
    fails, and the caller parses it whole (which says what is wrong, if anything is).

    Why: ``orjson.loads`` of a 1 MB page builds some 10 MB of objects, much more than the
    CPU's caches hold, so decoding them afterwards fetched nearly every one from memory
    again. Here each piece (some 16 KB of JSON) is decoded right after it is parsed,
    while its objects are still in the cache: about 40% less CPU time per page on
    ``bench/decode.py``.

    Why the result is exactly that of parsing the body whole: the body is cut as
    ``A [C] Z`` around the array that follows the first ``"Records":`` key, and ``C``
    after some of the ``}`` that end its records. ``A``, a stand-in array and ``Z`` are
    parsed together, and each piece of ``C`` as the elements of an array of its own.
    JSON's grammar is context-free, so when every part parses, the body parses, to the
    same values; and the stand-in coming back as the top-level Records (of duplicate keys
    the last one counts, in orjson as in the whole body) shows that the array cut out is
    the body's Records.
    """
    start = body.find(_RECORDS_KEY)
    first = start + len(_RECORDS_KEY)  # where C begins
    end = body.rfind(b"]")  # where C ends, unless Z holds a "]": then a piece fails
    if start < 0 or end < first:
        return None
    rest = b"".join((body[: first - 1], _RECORDS_STAND_IN, body[end + 1 :]))
    try:
        doc = orjson.loads(rest)
    except orjson.JSONDecodeError:
        return None
    if (
        type(doc) is not dict
        or doc.get("Records") != [_RECORDS_TOKEN]
        or rest.count(_RECORDS_TOKEN_BYTES) != 1  # A and Z hold no token of their own
    ):
        return None
    iterator = doc.get("NextShardIterator")
    if iterator is not None and type(iterator) is not str:
        return None
    try:
        decoded = _decode_pieces(body, first, end, shard_id)
    except _RECORD_ERRORS:  # orjson.JSONDecodeError is a ValueError
        return None
    if decoded is None:
        return None
    records, last_sequence, last_time = decoded
    sequence_numbers = list(map(_SEQUENCE_NUMBER, records))
    return RecordsPage(records, iterator, last_sequence, last_time, sequence_numbers, len(body))


def _decode_pieces(
    body: bytes, first: int, end: int, shard_id: str
) -> tuple[list[Record], str | None, float | None] | None:
    """The records of ``body[first:end]``, the content of a Records array, parsed and
    decoded a piece at a time (see :func:`_parse_in_pieces`), and the last one's sequence
    number and creation time; ``None`` if it does not begin as a record does. Raises what
    parsing or decoding a piece raises."""
    if first == end:
        return [], None, None
    colon = body.find(b'":', first, end)
    if colon < 0 or not body.startswith(b'{"', first):
        return None
    # Cut where a record ends ("}") and the next one starts with the key the first one
    # starts with ({"awsRegion": from AWS). Nothing else in a valid body reads so: in an
    # L the objects are keyed by a type tag, and "}," inside a map is followed by a key.
    # A record with its keys in another order is simply not cut from the one before; a
    # cut anywhere else leaves a piece that is no list of values, and None.
    boundary = b"}," + body[first : colon + 2]
    view = memoryview(body)  # pieces are copied once, into the document orjson parses
    records: list[Record] = []
    start = first
    while True:
        cut = body.find(boundary, start + _PIECE_BYTES, end)
        stop = end if cut < 0 else cut + 1
        parsed = orjson.loads(b"".join((_PIECE_OPEN, view[start:stop], _PIECE_CLOSE)))
        if len(parsed) != 1:  # e.g. '[[{...}],[{...}]]': the piece is no list of records
            return None
        raw_records = parsed[0]
        if cut < 0:
            last = raw_records[-1]["dynamodb"]
            last_sequence = last["SequenceNumber"]
            last_time = float(last["ApproximateCreationDateTime"])
            records += _records(raw_records, shard_id, _map_owned, in_place=True)
            return records, last_sequence, last_time
        records += _records(raw_records, shard_id, _map_owned, in_place=True)
        start = cut + 2  # past "},"


def _sequence_numbers(raw_records: list[Any]) -> list[str]:
    """The sequence number of each raw record; MalformedRecordError for one without."""
    try:
        return [raw["dynamodb"]["SequenceNumber"] for raw in raw_records]
    except (KeyError, TypeError) as exc:
        bad = next(r for r in raw_records if not _has_sequence_number(r))
        raise _diagnose_record(bad, decode=False) from exc


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _loads_with_lone_surrogates(body: bytes, refused: orjson.JSONDecodeError) -> Any:
    """Decode a body orjson refused, if a lone surrogate escape is why (see the module
    docstring); MalformedRecordError for anything that is not JSON."""
    if "surrogate" not in str(refused):
        raise MalformedRecordError(f"GetRecords response body is not JSON: {refused}") from refused
    try:
        # Strict UTF-8 (json.loads of bytes would let surrogates encoded as bytes through);
        # the escape "\ud83d" becomes a one-character str, as with boto3.
        return json.loads(body.decode("utf-8"), parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, UnicodeDecodeError, NaN
        raise MalformedRecordError(f"GetRecords response body is not JSON: {exc}") from exc


def _has_sequence_number(raw: Any) -> bool:
    return (
        isinstance(raw, dict)
        and isinstance(raw.get("dynamodb"), dict)
        and "SequenceNumber" in raw["dynamodb"]
    )


# --- plain JSON output -------------------------------------------------------------------

# Exact numbers orjson cannot write (Decimals, ints beyond 64 bits) are written as this
# marker plus an index, then spliced back in as number literals. The marker is random per
# process, so a user string cannot collide with it by accident; the splice count is checked.
# Strings holding lone surrogates (which orjson refuses) go the same way, spliced back in as
# string literals with the surrogates escaped.
_MARK: Final = "ddbstreams-number-" + secrets.token_hex(12) + "-"
_MARK_RE: Final = re.compile(b'"' + re.escape(_MARK.encode()) + rb'(\d+)"')
_INT64_MIN: Final = -(2**63)
_UINT64_MAX: Final = 2**64 - 1
_SURROGATE: Final = re.compile("[\ud800-\udfff]")


def _plain(value: Any, numbers: list[bytes]) -> Any:
    if value is None or value is True or value is False:
        return value
    kind = type(value)
    if kind is str or kind is float:
        return value
    if kind is int:
        if _INT64_MIN <= value <= _UINT64_MAX:
            return value
        numbers.append(str(value).encode())
        return f"{_MARK}{len(numbers) - 1}"
    if kind is dict:
        return {k: _plain(v, numbers) for k, v in value.items()}
    if kind is list or kind is tuple:
        return [_plain(v, numbers) for v in value]
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"cannot write {value} as a JSON number")
        numbers.append(str(value).encode())
        return f"{_MARK}{len(numbers) - 1}"
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, set | frozenset):
        try:
            members = sorted(value)
        except TypeError:  # mixed member types: still deterministic
            members = sorted(value, key=repr)
        return [_plain(v, numbers) for v in members]
    if isinstance(value, int):  # bool handled above; int subclasses such as IntEnum
        return _plain(int(value), numbers)
    if isinstance(value, Mapping):
        return {k: _plain(v, numbers) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v, numbers) for v in value]
    return value  # datetime, date, UUID...: orjson's own encoding, or its TypeError


def escape_lone_surrogates(text: str) -> str:
    """``text`` with each lone surrogate written as a ``\\uXXXX`` escape (6 characters), so
    that it can be encoded as UTF-8; other text is unchanged."""
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _string_literal(text: str) -> bytes:
    """The JSON string literal of ``text``, lone surrogates escaped as ``\\uXXXX``."""
    parts = [b'"']
    start = 0
    for match in _SURROGATE.finditer(text):
        parts.append(orjson.dumps(text[start : match.start()])[1:-1])
        parts.append(b"\\u%04x" % ord(match.group()))
        start = match.end()
    parts.append(orjson.dumps(text[start:])[1:-1])
    parts.append(b'"')
    return b"".join(parts)


def _mark_surrogates(value: Any, literals: list[bytes]) -> Any:
    """``value`` (as :func:`_plain` returns it) with each string, dict key included, that
    holds a lone surrogate replaced by a marker for its escaped literal."""
    kind = type(value)
    if kind is str:
        if _SURROGATE.search(value) is None:
            return value
        literals.append(_string_literal(value))
        return f"{_MARK}{len(literals) - 1}"
    if kind is dict:
        return {
            _mark_surrogates(k, literals) if type(k) is str else k: _mark_surrogates(v, literals)
            for k, v in value.items()
        }
    if kind is list:
        return [_mark_surrogates(v, literals) for v in value]
    return value


def dumps_plain_json(obj: Any, option: int | None = None) -> bytes:
    """Serialise decoded values as plain JSON, keeping every number exact.

    ``int`` and ``Decimal`` become JSON number literals with all their digits (``Decimal``
    as ``str(d)``, e.g. ``1.50`` or ``1E+2``; never rounded through float), ``bytes`` become
    base64 strings, sets become sorted arrays (bytes sorted as bytes), tuples arrays;
    datetimes and everything else orjson knows are written as orjson writes them. A lone
    surrogate in a string (a value or a key) is written as a ``\\uXXXX`` escape, so the
    output is always valid UTF-8 JSON and ``json.loads`` gives the same string back.
    ``option`` is passed to ``orjson.dumps`` (e.g. ``orjson.OPT_INDENT_2``; with
    ``OPT_SORT_KEYS``, keys holding lone surrogates are not sorted).

    Raises ``ValueError`` for a non-finite Decimal and ``TypeError`` (orjson's
    ``JSONEncodeError``) for a value JSON cannot hold.
    """
    numbers: list[bytes] = []
    plain = _plain(obj, numbers)
    try:
        text = orjson.dumps(plain, option=option)
    except orjson.JSONEncodeError as exc:
        if "surrogates" not in str(exc):
            raise
        # Rare: a string holds a lone surrogate. Its escaped literal is spliced in as the
        # numbers are (the literals go on in the same list, after the numbers).
        text = orjson.dumps(_mark_surrogates(plain, numbers), option=option)
    if not numbers:
        return text
    spliced, count = _MARK_RE.subn(lambda m: numbers[int(m.group(1))], text)
    if count != len(numbers):  # pragma: no cover - only if a user string holds the marker
        raise ValueError("cannot write exact numbers: a string collides with the number marker")
    return spliced
