"""Lambda-style event filtering of stream records.

A :class:`RecordFilter` decides, record by record, whether a handler sees a record. It takes
the filter patterns of an AWS Lambda event source mapping (``FilterCriteria``) and applies
them the way Lambda does, so filters move freely between a Lambda trigger and a ddbstreams
consumer. Pure, no I/O; patterns are compiled once into small closures.

What a pattern is matched against
=================================

Patterns address the record in the shape Lambda delivers it (and GetRecords returns it):
attribute values stay typed DynamoDB JSON, numbers in ``N`` are strings::

    {"eventID": "...", "eventName": "INSERT" | "MODIFY" | "REMOVE", "eventVersion": "1.1",
     "eventSource": "aws:dynamodb", "awsRegion": "...", "eventSourceARN": "...",
     "dynamodb": {"ApproximateCreationDateTime": 1428537600, "Keys": {"pk": {"S": "a"}},
                  "NewImage": {...}, "OldImage": {...}, "SequenceNumber": "...",
                  "SizeBytes": 26, "StreamViewType": "NEW_AND_OLD_IMAGES"},
     "userIdentity": {"type": "Service", "principalId": "dynamodb.amazonaws.com"}}

so ``{"dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}`` selects records whose new
image has the string attribute ``status`` equal to ``"active"``. ``userIdentity`` is only
present on TTL deletes; images the stream view type does not carry (``NewImage`` of a
REMOVE, both images of KEYS_ONLY) are absent, as are ``eventSourceARN`` on records read
from GetRecords.

Semantics (Lambda / EventBridge event patterns)
===============================================

* A pattern is a JSON object shaped like the record; every field it names must match (AND).
  A field's value is a list of rules, and the field matches if *any* rule does (OR).
  Several patterns (``FilterCriteria.Filters``) are ORed: a record passes if any matches.
  An empty filter (no patterns) passes every record.
* ``"$or": [{...}, {...}]`` at any level ORs whole sub-patterns (at least two).
* Rules: exact values (``"x"``, numbers, ``true``/``false``, ``null``; ``""`` matches the
  empty string, never a missing field), ``{"prefix": "x"}``, ``{"suffix": "x"}`` (both also
  with ``{"equals-ignore-case": "x"}`` as the operand), ``{"equals-ignore-case": "x"}``,
  ``{"wildcard": "a*b"}`` (``*`` matches any run of characters; ``\\*`` and ``\\\\`` escape),
  ``{"anything-but": ...}`` (a string, a number, a list of strings or of numbers, or one of
  ``{"prefix"|"suffix"|"equals-ignore-case"|"wildcard": str | [str]}``, a prefix or suffix
  never empty),
  ``{"numeric": [">", 0, "<=", 5]}`` (comparators ``< <= > >=``, one lower and one upper
  bound at most, or ``["=", n]`` alone), ``{"exists": true|false}``.
* Exact strings match character by character; exact numbers match by their representation
  (``300`` is not ``300.0``), as the Lambda docs say. ``numeric`` and an ``anything-but`` of
  numbers compare JSON numbers as EventBridge does, as IEEE doubles (``300`` is ``300.0``;
  see :func:`_comparable`). ``equals-ignore-case`` (also inside prefix, suffix and
  anything-but) compares Unicode case-folded text. The string operators apply to strings
  only, so an ``anything-but`` of one matches every value that is not a string (numbers,
  booleans, null), as on AWS; an ``anything-but`` list matches any value it does not list.
* Field names are paths joined with dots, as in EventBridge: ``{"dynamodb.Keys": ...}`` is
  ``{"dynamodb": {"Keys": ...}}``, and an attribute whose name holds dots is named by that
  name (``{"user.email": {"S": [...]}}``) or by its nested form. A key given twice (in JSON
  text, or as a dotted and a nested form) merges objects; of two rule lists the later wins.
* Rules apply to leaf values only. An object in the record matches no value rule, and
  ``{"exists": false}`` is true of it -- so the type tag must be spelled out:
  ``{"status": {"S": [{"exists": true}]}}``, not ``{"status": [{"exists": true}]}``.
  A missing field matches only ``{"exists": false}``; ``anything-but`` needs a value.
* A list in the record (``SS``/``NS``/``BS`` members, ``L`` elements) matches a rule if any
  element does; a sub-pattern under ``L`` is tried against each element in turn.
* A DynamoDB ``NULL`` attribute is ``{"NULL": true}``: match it with ``{"NULL": [true]}``.
  JSON ``null`` never occurs in a stream record, so ``[null]`` only matches raw input that
  has an explicit null.

A record from the default parser is matched as if its images were on the wire: the
attributes a pattern names are encoded back to DynamoDB JSON, an ``N`` as the text DynamoDB
writes for its value (normalised: no exponent, no trailing zeros -- the text it sends).
The Lambda guide says DynamoDB mappings filter on the ``dynamodb`` key only, yet its own
examples filter on ``eventName`` and the DynamoDB TTL guide on ``userIdentity``; every
field of the record can be filtered on here.

One deliberate extension: **numbers in N.** Lambda's DynamoDB filtering does not support
numeric operators, because ``N`` values are strings in the event. Here ``numeric`` rules and
number literals in ``anything-but`` or exact lists compare *numerically* (exactly, no
precision or range limit) with ``N`` values and ``NS`` members; a string literal still
compares as text, as in Lambda (``{"N": ["101"]}`` matches ``"101"`` only). Elsewhere
``numeric`` applies to JSON numbers: ``dynamodb.SizeBytes`` and
``dynamodb.ApproximateCreationDateTime`` (epoch seconds).

Patterns are checked when compiled: unknown fields of the record, of ``dynamodb`` or of
``userIdentity``, unknown type tags, rule lists where an attribute needs its type tag,
unknown operators, operands of the wrong type, bad ``numeric`` comparators or empty ranges,
malformed wildcards and maps/lists nested deeper than DynamoDB's 32 levels raise
:class:`~ddbstreams.ConfigurationError` naming the pattern, the path and the problem. The
number of patterns is not limited (Lambda allows 5 by default, 10 with a quota increase).

References: AWS Lambda Developer Guide, "Control which events Lambda sends to your
function" (filter rule syntax, OR of filters, stream records that fail the filter still
advance the iterator) and "Using event filtering with a DynamoDB event source" (typed
attribute values, Exists on leaf nodes, no numeric operators on DynamoDB); Amazon
EventBridge User Guide, "Event patterns", "Arrays in event patterns", "Matching null values
and empty strings", "Content filtering" / "Comparison operators"; DynamoDB Developer Guide,
"DynamoDB Streams and Time to Live" (the TTL ``userIdentity``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Final, NoReturn

from ddbstreams._errors import ConfigurationError
from ddbstreams.model._encode import encode_value
from ddbstreams.model._types import Record

__all__ = ["RecordFilter"]

Pattern = Mapping[str, Any]
# Matchers of a node of the record in Lambda's shape (a dict, a list, a leaf or _MISSING).
Matcher = Callable[[Any], bool]
# A Record field in Lambda's shape: (record, whether its images are DynamoDB JSON) -> value.
Getter = Callable[[Record, bool], Any]
# A matcher of a whole Record, reading its fields directly: (record, wire) -> match.
RecordMatcher = Callable[[Record, bool], bool]


class _Missing:
    """The value of a field the record does not have."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "<missing>"


_MISSING: Final = _Missing()

# Fields of a DynamoDB stream record as Lambda delivers it, by the pattern level they sit at.
_RECORD_SCALARS: Final = frozenset(
    ("eventID", "eventName", "eventVersion", "eventSource", "awsRegion", "eventSourceARN")
)
_RECORD_FIELDS: Final = _RECORD_SCALARS | {"dynamodb", "userIdentity"}
_IDENTITY_FIELDS: Final = frozenset(("type", "principalId"))
_DYNAMODB_SCALARS: Final = frozenset(
    ("ApproximateCreationDateTime", "SequenceNumber", "SizeBytes", "StreamViewType")
)
_DYNAMODB_ITEMS: Final = frozenset(("Keys", "NewImage", "OldImage"))
_SCALAR_TAGS: Final = frozenset(("S", "N", "B", "BOOL", "NULL", "SS", "NS", "BS"))
_NUMBER_TAGS: Final = frozenset(("N", "NS"))
_ALL_TAGS: Final = _SCALAR_TAGS | {"M", "L"}
# DynamoDB documents nest at most 32 levels deep.
_MAX_DEPTH: Final = 32
_OPERATORS: Final = (
    "anything-but",
    "equals-ignore-case",
    "exists",
    "numeric",
    "prefix",
    "suffix",
    "wildcard",
)
_LOWER: Final = frozenset((">", ">="))
_UPPER: Final = frozenset(("<", "<="))
_NUMBER_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

_RECORD, _IDENTITY, _DYNAMODB, _ITEM, _ATTRIBUTE = range(5)


# --- values ------------------------------------------------------------------------------


def _json_number(x: Any) -> int | Decimal | None:
    """The value of a JSON number in the record, or None for anything else."""
    kind = type(x)
    if kind is int:
        return x  # type: ignore[no-any-return]
    if kind is float:
        # repr() is the shortest text that reads back as x: compare what was written.
        return Decimal(repr(x)) if math.isfinite(x) else None
    if kind is Decimal:
        return x if x.is_finite() else None
    return None


def _n_number(x: Any) -> int | Decimal | None:
    """The value of an N payload (a numeric string) or of a JSON number; None otherwise."""
    if type(x) is not str:
        return _json_number(x)
    if len(x) <= 40 and x.isdigit() and x.isascii():
        return int(x)
    if _NUMBER_TEXT.fullmatch(x) is None:
        return None
    try:
        value = Decimal(x)
    except InvalidOperation:  # an exponent beyond any context
        return None
    return value if value.is_finite() else None


def _comparable(x: Any) -> float | None:
    """A JSON number as EventBridge compares it in ``numeric`` and numeric ``anything-but``.

    aws/event-ruler, src/main/software/amazon/event/ruler/ComparableNumber.java: a number is
    read as an IEEE 754 double and compared as one -- so ``300`` and ``300.0`` are equal --
    and only if the double holds it exactly (``BigDecimal.valueOf(double)`` compares equal
    to the text); any other number (e.g. more than 17 significant digits) is not comparable.
    None for such a number and for whatever is not a number.
    """
    kind = type(x)
    if kind is float:
        return x if math.isfinite(x) else None
    if kind is not int and kind is not Decimal:
        return None
    try:
        double = float(x)
    except OverflowError:
        return None
    if not math.isfinite(double) or Decimal(repr(double)) != x:
        return None
    return double


def _number_text(x: Any) -> str | None:
    """How a JSON number is written (EventBridge compares numbers as text); None otherwise."""
    kind = type(x)
    if kind is int or kind is Decimal:
        return str(x)
    if kind is float:
        return repr(x)
    return None


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float | Decimal) and not isinstance(x, bool)


def _leaves(values: list[Any], out: list[Any]) -> list[Any]:
    for x in values:
        kind = type(x)
        if kind is list:
            _leaves(x, out)
        elif kind is not dict and kind is not _DecodedItem:
            out.append(x)
    return out


def _objects(values: list[Any]) -> Iterator[Any]:
    for x in values:
        kind = type(x)
        if kind is dict or kind is _DecodedItem:
            yield x
        elif kind is list:
            yield from _objects(x)


class _DecodedItem:
    """A decoded image seen as DynamoDB JSON, one attribute at a time.

    Only the attributes a pattern names are encoded back, and only when it asks for them.
    """

    __slots__ = ("_item",)

    def __init__(self, item: Mapping[str, Any]) -> None:
        self._item = item

    def get(self, name: str, default: Any) -> Any:
        item = self._item
        if name not in item:
            return default
        return encode_value(item[name])


# --- matchers ----------------------------------------------------------------------------


def _object_matcher(
    fields: tuple[tuple[str, Matcher], ...], ors: tuple[tuple[Matcher, ...], ...]
) -> Matcher:
    def match(node: Any) -> bool:
        kind = type(node)
        if kind is dict or kind is _DecodedItem:
            get = node.get
            for key, matcher in fields:
                if not matcher(get(key, _MISSING)):
                    return False
            for alternatives in ors:
                for alternative in alternatives:
                    if alternative(node):
                        break
                else:
                    return False
            return True
        if kind is list:
            found = False
            for element in _objects(node):
                if match(element):
                    return True
                found = True
            if found:
                return False
        return on_missing

    # Whatever is not an object (a missing field, a string where a map was expected, a list
    # without objects) has none of the fields: how that matches is known now.
    on_missing = all(matcher(_MISSING) for _, matcher in fields) and all(
        any(alternative(_MISSING) for alternative in alternatives) for alternatives in ors
    )
    return match


def _leaf_matcher(
    predicates: tuple[Callable[[Any], bool], ...], exists_true: bool, exists_false: bool
) -> Matcher:
    # Explicit loops, not any(<generator>): this runs per record and per leaf, and the
    # generator costs more than the predicates themselves.
    if len(predicates) == 1:
        hit = predicates[0]
    else:

        def hit(x: Any) -> bool:
            for predicate in predicates:  # noqa: SIM110
                if predicate(x):
                    return True
            return False

    def match(node: Any) -> bool:
        kind = type(node)
        if kind is list:
            leaves = _leaves(node, [])
            if not leaves:
                return exists_false
            if exists_true:
                return True
            for x in leaves:  # noqa: SIM110
                if hit(x):
                    return True
            return False
        if kind is dict or kind is _DecodedItem or node is _MISSING:
            return exists_false  # rules see leaves only; an object is no value
        return exists_true or hit(node)

    return match


def _starts(prefix: str, fold: bool) -> Callable[[Any], bool]:
    if fold:
        prefix = prefix.casefold()
        return lambda x: type(x) is str and x.casefold().startswith(prefix)
    return lambda x: type(x) is str and x.startswith(prefix)


def _ends(suffix: str, fold: bool) -> Callable[[Any], bool]:
    if fold:
        suffix = suffix.casefold()
        return lambda x: type(x) is str and x.casefold().endswith(suffix)
    return lambda x: type(x) is str and x.endswith(suffix)


def _range(
    low: int | Decimal | float | None,
    low_inclusive: bool,
    high: int | Decimal | float | None,
    high_inclusive: bool,
    number: Callable[[Any], int | Decimal | float | None],
) -> Callable[[Any], bool]:
    def predicate(x: Any) -> bool:
        n = number(x)
        if n is None:
            return False
        if low is not None and (n < low or (n == low and not low_inclusive)):
            return False
        return high is None or n < high or (n == high and high_inclusive)

    return predicate


def _through(getter: Getter, matcher: Matcher) -> RecordMatcher:
    return lambda record, wire: matcher(getter(record, wire))


def _record_matcher(
    fields: tuple[RecordMatcher, ...], ors: tuple[tuple[RecordMatcher, ...], ...]
) -> RecordMatcher:
    if len(fields) == 1 and not ors:
        return fields[0]

    def match(record: Record, wire: bool) -> bool:
        for field in fields:
            if not field(record, wire):
                return False
        for alternatives in ors:
            for alternative in alternatives:
                if alternative(record, wire):
                    break
            else:
                return False
        return True

    return match


# --- records as Lambda sees them ---------------------------------------------------------


def _image(image: dict[str, Any] | None, wire: bool) -> Any:
    if image is None:
        return _MISSING
    return image if wire else _DecodedItem(image)


def _epoch(when: datetime) -> int | float:
    seconds = when.timestamp()
    return int(seconds) if seconds.is_integer() else seconds


_DYNAMODB_GETTERS: Final[dict[str, Getter]] = {
    # A sample Lambda event's record without a time has none to match, as in the event.
    "ApproximateCreationDateTime": lambda r, w: (
        _epoch(r.approximate_creation_time) if r.creation_time_known else _MISSING
    ),
    "Keys": lambda r, w: _image(r.keys, w),
    "NewImage": lambda r, w: _image(r.new_image, w),
    "OldImage": lambda r, w: _image(r.old_image, w),
    "SequenceNumber": lambda r, w: r.sequence_number,
    "SizeBytes": lambda r, w: r.size_bytes,
    "StreamViewType": lambda r, w: r.stream_view_type,
}


def _identity_getter(record: Record, wire: bool) -> Any:
    identity = record.user_identity
    if identity is None:
        return _MISSING
    return {"type": identity.type, "principalId": identity.principal_id}


_RECORD_GETTERS: Final[dict[str, Getter]] = {
    "awsRegion": lambda r, w: r.aws_region,
    "eventID": lambda r, w: r.event_id,
    "eventName": lambda r, w: r.event_name,
    "eventSource": lambda r, w: r.event_source,
    "eventSourceARN": lambda r, w: _MISSING if r.event_source_arn is None else r.event_source_arn,
    "eventVersion": lambda r, w: r.event_version,
}


def _is_wire(record: Record) -> bool:
    """Whether a record's images are DynamoDB JSON (RawParser) rather than decoded values.

    Key attributes are S, N or B, which decode to str, int/Decimal or bytes -- never a dict
    -- while on the wire every attribute value is an object: one key value tells.
    """
    for image in (record.keys, record.new_image, record.old_image):
        if image:
            return type(next(iter(image.values()))) is dict
    return True


def _lambda_identity(raw: Any) -> Any:
    # GetRecords capitalises the userIdentity keys; Lambda (and patterns) do not.
    if isinstance(raw, Mapping) and ("Type" in raw or "PrincipalId" in raw):
        out = {k: v for k, v in raw.items() if k not in ("Type", "PrincipalId")}
        if "Type" in raw:
            out["type"] = raw["Type"]
        if "PrincipalId" in raw:
            out["principalId"] = raw["PrincipalId"]
        return out
    return raw


class _PatternError(Exception):
    """A problem found while a pattern is rewritten, before it is compiled."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(problem)
        self.path = path
        self.problem = problem


def _where(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _expand(node: Any, path: str) -> Any:
    """``node`` with dotted field names split into nested objects, as EventBridge reads them.

    aws/event-ruler README, "Compiled rules and JSON keys with dots": field names are joined
    with ``.``, so ``{"a.b": [...]}`` and ``{"a": {"b": [...]}}`` are one rule, and where both
    occur they merge as repeated keys do (:func:`_merge_pattern`). Rule lists are left
    alone; ``$or`` lists hold sub-patterns and are expanded.
    """
    if not isinstance(node, Mapping):
        return node
    out: dict[Any, Any] = {}
    for key, value in node.items():
        where = _where(path, str(key))
        if key == "$or" and isinstance(value, list | tuple):
            value = [_expand(alternative, where) for alternative in value]
        elif isinstance(value, Mapping):
            value = _expand(value, where)
        if isinstance(key, str) and "." in key:
            key, *rest = key.split(".")
            for part in reversed(rest):
                value = {part: value}
        if key in out:
            try:
                value = _merge_pattern(out[key], value, _where(path, key))
            except ValueError as exc:
                raise _PatternError(where, str(exc)) from None
        out[key] = value
    return out


def _attribute_entries(name: str, value: Any, path: str) -> list[tuple[str, Any, str]]:
    """An attribute's own sub-pattern, and those of attributes whose names continue it.

    DynamoDB attribute names may hold dots. A pattern names such an attribute by the dotted
    name, which :func:`_expand` has split: ``{"user": {"email": {"S": [...]}}}``. An
    attribute value is an object with one type tag, so a key under an attribute that is no
    type tag and holds an object continues the name -- ``user.email`` -- which is how
    EventBridge, joining the path with dots, reads it too.
    """
    if not isinstance(value, Mapping):
        return [(name, value, path)]
    continued = [
        key
        for key, sub in value.items()
        if isinstance(key, str) and key not in _ALL_TAGS and key != "$or"
        if isinstance(sub, Mapping)
    ]
    own = {key: sub for key, sub in value.items() if key not in continued}
    entries = [(name, own, path)] if own or not value else []
    for key in continued:
        entries.extend(_attribute_entries(f"{name}.{key}", value[key], f"{path}.{key}"))
    return entries


# --- compiling ---------------------------------------------------------------------------


class _Compiler:
    """Checks one pattern and compiles it; notes whether it reads userIdentity or images."""

    def __init__(self, label: str, pattern: Any) -> None:
        self.label = label
        self.pattern = pattern
        self.uses_identity = False
        self.uses_images = False

    def fail(self, path: str, problem: str) -> NoReturn:
        shown = repr(self.pattern)
        if len(shown) > 200:
            shown = shown[:197] + "..."
        where = f" at {path}" if path else ""
        raise ConfigurationError(f"invalid filter {self.label}{where}: {problem}; pattern: {shown}")

    def compile(self) -> tuple[Matcher, RecordMatcher]:
        """The pattern as a matcher of record dicts and as a matcher of Records."""
        try:
            expanded = _expand(self.pattern, "")
        except _PatternError as exc:
            self.fail(exc.path, exc.problem)
        return self.record_level(expanded, "", _RECORD)

    def record_level(self, node: Any, path: str, level: int) -> tuple[Matcher, RecordMatcher]:
        """The record and its ``dynamodb`` part, whose fields are known in advance.

        Besides the matcher of dicts, these two levels compile to a matcher that reads a
        :class:`Record`'s fields directly: no event dict is built per record.
        """
        self.check_object(node, path)
        fields: list[tuple[str, Matcher]] = []
        record_fields: list[RecordMatcher] = []
        ors: list[tuple[Matcher, ...]] = []
        record_ors: list[tuple[RecordMatcher, ...]] = []
        for key, value in node.items():
            where = self.where(path, key)
            if key == "$or":
                pairs = [
                    self.record_level(alternative, f"{where}[{i}]", level)
                    for i, alternative in enumerate(self.alternative_list(value, where))
                ]
                ors.append(tuple(dict_matcher for dict_matcher, _ in pairs))
                record_ors.append(tuple(record_matcher for _, record_matcher in pairs))
                continue
            if level == _RECORD and key == "dynamodb":
                matcher, record_matcher = self.record_level(value, where, _DYNAMODB)
            elif level == _RECORD:
                matcher = self.field(key, value, where, level, 0)
                getter = _identity_getter if key == "userIdentity" else _RECORD_GETTERS[key]
                self.uses_identity |= key == "userIdentity"
                record_matcher = _through(getter, matcher)
            else:
                matcher = self.field(key, value, where, level, 0)
                self.uses_images |= key in _DYNAMODB_ITEMS
                record_matcher = _through(_DYNAMODB_GETTERS[key], matcher)
            fields.append((key, matcher))
            record_fields.append(record_matcher)
        return (
            _object_matcher(tuple(fields), tuple(ors)),
            _record_matcher(tuple(record_fields), tuple(record_ors)),
        )

    def check_object(self, node: Any, path: str) -> None:
        if not isinstance(node, Mapping):
            self.fail(path, f"expected an object, got {_kind(node)}")
        if not node:
            self.fail(path, "an empty object has nothing to match")
        for key in node:
            if not isinstance(key, str):
                self.fail(path, f"field names must be strings, got {key!r}")

    @staticmethod
    def where(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def object(self, node: Any, path: str, level: int, depth: int) -> Matcher:
        self.check_object(node, path)
        fields: list[tuple[str, Matcher]] = []
        ors: list[tuple[Matcher, ...]] = []
        for key, value in node.items():
            where = self.where(path, key)
            if key == "$or":
                ors.append(
                    tuple(
                        self.object(alternative, f"{where}[{i}]", level, depth)
                        for i, alternative in enumerate(self.alternative_list(value, where))
                    )
                )
            elif level == _ITEM:
                for name, attribute, at in _attribute_entries(key, value, where):
                    fields.append((name, self.field(name, attribute, at, level, depth)))
            else:
                fields.append((key, self.field(key, value, where, level, depth)))
        return _object_matcher(tuple(fields), tuple(ors))

    def alternative_list(self, value: Any, path: str) -> list[Any]:
        if not isinstance(value, list | tuple) or len(value) < 2:
            self.fail(path, "$or takes a list of at least two sub-patterns (objects)")
        return list(value)

    def field(self, key: str, value: Any, path: str, level: int, depth: int) -> Matcher:
        if level == _RECORD:  # "dynamodb" is compiled by record_level
            if key == "userIdentity":
                return self.object(value, path, _IDENTITY, depth)
            if key in _RECORD_SCALARS:
                return self.rules(value, path, numbers=False)
            self.fail(
                path, f"unknown record field {key!r}; known: {', '.join(sorted(_RECORD_FIELDS))}"
            )
        if level == _IDENTITY:
            if key in _IDENTITY_FIELDS:
                return self.rules(value, path, numbers=False)
            self.fail(path, f"unknown userIdentity field {key!r}; known: principalId, type")
        if level == _DYNAMODB:
            if key in _DYNAMODB_ITEMS:
                return self.object(value, path, _ITEM, depth)
            if key in _DYNAMODB_SCALARS:
                return self.rules(value, path, numbers=False)
            known = ", ".join(sorted(_DYNAMODB_ITEMS | _DYNAMODB_SCALARS))
            self.fail(path, f"unknown dynamodb field {key!r}; known: {known}")
        if level == _ITEM:
            if isinstance(value, list | tuple):
                self.fail(
                    path,
                    "an attribute value is typed: put the rules under its type tag, e.g. "
                    f'{{"{key}": {{"S": [...]}}}} (also for exists)',
                )
            return self.object(value, path, _ATTRIBUTE, depth)
        # _ATTRIBUTE: the keys are type tags.
        if key in _SCALAR_TAGS:
            return self.rules(value, path, numbers=key in _NUMBER_TAGS)
        if key in ("M", "L"):
            if depth + 1 > _MAX_DEPTH:
                self.fail(path, f"nested deeper than DynamoDB's {_MAX_DEPTH} levels")
            if not isinstance(value, Mapping):
                example = '{"M": {"name": {"S": [...]}}}' if key == "M" else '{"L": {"S": [...]}}'
                self.fail(path, f"{key} is not a leaf: match inside it, e.g. {example}")
            return self.object(value, path, _ITEM if key == "M" else _ATTRIBUTE, depth + 1)
        self.fail(
            path, f"unknown attribute type {key!r}; use one of {', '.join(sorted(_ALL_TAGS))}"
        )

    def rules(self, value: Any, path: str, *, numbers: bool) -> Matcher:
        """A list of rules for one leaf; ``numbers``: the leaf holds N payloads (strings)."""
        if not isinstance(value, list | tuple):
            self.fail(path, f'expected a list of rules, e.g. ["x"], got {_kind(value)}')
        if not value:
            self.fail(path, "an empty list of rules matches nothing")
        strings: set[str] = set()
        number_texts: set[str] = set()
        number_values: set[int | Decimal] = set()
        flags: set[bool] = set()
        null = exists_true = exists_false = False
        predicates: list[Callable[[Any], bool]] = []
        for i, rule in enumerate(value):
            where = f"{path}[{i}]"
            if rule is None:
                null = True
            elif isinstance(rule, bool):
                flags.add(rule)
            elif isinstance(rule, str):
                strings.add(rule)
            elif _is_number(rule):
                if numbers:
                    number_values.add(self.number(rule, where))
                else:
                    number_texts.add(self.number_text(rule, where))
            elif isinstance(rule, Mapping):
                if len(rule) != 1:
                    self.fail(where, "an operator object has exactly one key")
                ((operator, operand),) = rule.items()
                if operator == "exists":
                    if not isinstance(operand, bool):
                        self.fail(f"{where}.exists", "exists takes true or false")
                    exists_true |= operand
                    exists_false |= not operand
                else:
                    predicates.append(self.operator(operator, operand, where, numbers))
            else:
                self.fail(
                    where,
                    "a rule is a string, number, boolean, null or operator object, "
                    f"got {_kind(rule)}",
                )
        # Cheap set lookups first, operators after.
        literal: list[Callable[[Any], bool]] = []
        if strings:
            frozen_strings = frozenset(strings)
            literal.append(lambda x: type(x) is str and x in frozen_strings)
        if number_values:
            frozen_values = frozenset(number_values)
            literal.append(lambda x: _n_number(x) in frozen_values)
        if number_texts:
            frozen_texts = frozenset(number_texts)
            literal.append(lambda x: _number_text(x) in frozen_texts)
        if flags:
            frozen_flags = frozenset(flags)
            literal.append(lambda x: type(x) is bool and x in frozen_flags)
        if null:
            literal.append(lambda x: x is None)
        return _leaf_matcher(tuple(literal + predicates), exists_true, exists_false)

    def operator(
        self, operator: Any, operand: Any, path: str, numbers: bool
    ) -> Callable[[Any], bool]:
        where = f"{path}.{operator}"
        if operator in ("prefix", "suffix"):
            text, fold = self.affix(operand, where)
            return _starts(text, fold) if operator == "prefix" else _ends(text, fold)
        if operator == "equals-ignore-case":
            folded = self.string(operand, where).casefold()
            return lambda x: type(x) is str and x.casefold() == folded
        if operator == "wildcard":
            regex = self.wildcard(operand, where)
            return lambda x: type(x) is str and regex.fullmatch(x) is not None
        if operator == "numeric":
            return self.numeric(operand, where, numbers)
        if operator == "anything-but":
            return self.anything_but(operand, where, numbers)
        if operator == "cidr":
            self.fail(where, "cidr (IP address) matching is not supported")
        self.fail(path, f"unknown operator {operator!r}; known: {', '.join(_OPERATORS)}")

    def affix(self, operand: Any, path: str) -> tuple[str, bool]:
        if isinstance(operand, Mapping):
            if len(operand) != 1 or "equals-ignore-case" not in operand:
                self.fail(path, 'takes a string or {"equals-ignore-case": string}')
            return self.string(operand["equals-ignore-case"], f"{path}.equals-ignore-case"), True
        return self.string(operand, path), False

    def string(self, operand: Any, path: str) -> str:
        if not isinstance(operand, str):
            self.fail(path, f"expected a string, got {_kind(operand)}")
        return operand

    def strings(self, operand: Any, path: str) -> list[str]:
        items = list(operand) if isinstance(operand, list | tuple) else [operand]
        if not items:
            self.fail(path, "expected a string or a non-empty list of strings")
        return [self.string(item, f"{path}[{i}]") for i, item in enumerate(items)]

    def number(self, operand: Any, path: str) -> int | Decimal:
        if not _is_number(operand):
            self.fail(path, f"expected a number, got {_kind(operand)}")
        if isinstance(operand, int):
            return int(operand)
        value = _json_number(float(operand) if isinstance(operand, float) else operand)
        if value is None:
            self.fail(path, f"expected a finite number, got {operand!r}")
        return value

    def number_text(self, operand: Any, path: str) -> str:
        self.number(operand, path)
        text = _number_text(operand)
        if text is None:  # an int or float subclass: read its value
            text = _number_text(int(operand) if isinstance(operand, int) else float(operand))
        assert text is not None
        return text

    def wildcard(self, operand: Any, path: str) -> re.Pattern[str]:
        text = self.string(operand, path)
        parts: list[str] = []
        i = 0
        star = False
        while i < len(text):
            char = text[i]
            if char == "\\":
                if i + 1 >= len(text) or text[i + 1] not in "*\\":
                    self.fail(path, "a backslash may only escape * or \\ in a wildcard")
                parts.append(re.escape(text[i + 1]))
                star = False
                i += 2
                continue
            if char == "*":
                if star:
                    self.fail(path, "consecutive wildcard characters (**) are not allowed")
                parts.append(".*")
                star = True
            else:
                parts.append(re.escape(char))
                star = False
            i += 1
        return re.compile("".join(parts), re.DOTALL)

    def numeric(self, operand: Any, path: str, numbers: bool) -> Callable[[Any], bool]:
        usage = 'takes ["=", n], [op, n] or [lower-op, n, upper-op, m] with ops < <= > >='
        if not isinstance(operand, list | tuple) or len(operand) not in (2, 4):
            self.fail(path, usage)
        low: int | Decimal | float | None = None
        high: int | Decimal | float | None = None
        low_inclusive = high_inclusive = False
        for i in range(0, len(operand), 2):
            comparator, bound = operand[i], operand[i + 1]
            exact = self.number(bound, f"{path}[{i + 1}]")
            # Outside N a JSON number: compared as EventBridge does (see _comparable).
            value = exact if numbers else self.double(exact, f"{path}[{i + 1}]")
            if comparator == "=":
                if len(operand) != 2:
                    self.fail(path, f'"=" cannot be combined with another comparator; {usage}')
                low = high = value
                low_inclusive = high_inclusive = True
            elif comparator in _LOWER:
                if low is not None:
                    self.fail(path, f"two lower bounds; {usage}")
                low, low_inclusive = value, comparator == ">="
            elif comparator in _UPPER:
                if high is not None:
                    self.fail(path, f"two upper bounds; {usage}")
                high, high_inclusive = value, comparator == "<="
            else:
                self.fail(f"{path}[{i}]", f"unknown comparator {comparator!r}; {usage}")
        if (
            low is not None
            and high is not None
            and (low > high or (low == high and not (low_inclusive and high_inclusive)))
        ):
            self.fail(path, "the range is empty: the lower bound is not below the upper bound")
        return _range(
            low, low_inclusive, high, high_inclusive, _n_number if numbers else _comparable
        )

    def double(self, value: int | Decimal, path: str) -> float:
        # aws/event-ruler's ComparableNumber.generate rejects such a number in a rule.
        double = _comparable(value)
        if double is None:
            self.fail(
                path,
                f"cannot compare the number {value}: outside N, numbers are compared as IEEE "
                "doubles (as in EventBridge) and no double holds this one exactly",
            )
        return double

    def anything_but(self, operand: Any, path: str, numbers: bool) -> Callable[[Any], bool]:
        if isinstance(operand, Mapping):
            return self.anything_but_operator(operand, path)
        items = list(operand) if isinstance(operand, list | tuple) else [operand]
        if not items:
            self.fail(path, "anything-but needs at least one value")
        if all(isinstance(item, str) for item in items):
            excluded = frozenset(items)
            return lambda x: not (type(x) is str and x in excluded)
        if all(_is_number(item) for item in items):
            numbers_at = [(self.number(item, f"{path}[{i}]"), i) for i, item in enumerate(items)]
            if numbers:  # the N extension: exact values
                values = frozenset(value for value, _ in numbers_at)
                return lambda x: _n_number(x) not in values
            # A JSON number: EventBridge compiles anything-but numbers to ComparableNumber
            # (aws/event-ruler JsonRuleCompiler.processAnythingButListMatchExpression), so
            # excluding 300 excludes 300.0 too.
            doubles = frozenset(self.double(value, f"{path}[{i}]") for value, i in numbers_at)
            return lambda x: _comparable(x) not in doubles
        self.fail(path, "anything-but takes strings only or numbers only (or an operator object)")

    def anything_but_operator(self, operand: Mapping[Any, Any], path: str) -> Callable[[Any], bool]:
        """``anything-but`` of prefix, suffix, equals-ignore-case or wildcard.

        Each takes a string or a list of strings (aws/event-ruler README, "Anything-but
        matching"; JsonRuleCompiler.processAnythingButValuesSetMatchExpression), and an empty
        prefix or suffix is rejected there ("Null prefix/suffix not allowed"). The operators
        only ever match strings, so their anything-but matches every value that is not a
        string -- numbers, booleans, null -- as on AWS: in event-ruler these patterns are
        the complement of a match on the quoted string form, which no other value has.
        """
        if len(operand) != 1:
            self.fail(path, "a nested anything-but operator object has exactly one key")
        ((operator, inner),) = operand.items()
        where = f"{path}.{operator}"
        if operator in ("prefix", "suffix"):
            affixes = tuple(self.strings(inner, where))
            if "" in affixes:
                self.fail(where, f"an empty {operator} is not allowed in anything-but (as on AWS)")
            if operator == "prefix":
                return lambda x: type(x) is not str or not x.startswith(affixes)
            return lambda x: type(x) is not str or not x.endswith(affixes)
        if operator == "equals-ignore-case":
            folded = frozenset(s.casefold() for s in self.strings(inner, where))
            return lambda x: type(x) is not str or x.casefold() not in folded
        if operator == "wildcard":
            regexes = tuple(
                self.wildcard(s, f"{where}[{i}]") for i, s in enumerate(self.strings(inner, where))
            )
            return lambda x: type(x) is not str or not any(r.fullmatch(x) for r in regexes)
        self.fail(
            where,
            f"anything-but takes prefix, suffix, equals-ignore-case or wildcard, not {operator!r}",
        )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"the string {value!r:.60}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    if _is_number(value):
        return f"the number {value!r}"
    return f"a {type(value).__name__}"


def _merge_pattern(first: Any, second: Any, path: str) -> Any:
    """The pattern for a key given twice, or for a dotted key meeting its nested form.

    As in EventBridge: objects merge (their fields all apply), and of two rule lists for the
    same field the later one wins -- aws/event-ruler JsonRuleCompiler: ``compile(source)``
    uses ``withOverriding = true`` and ``writeRules`` puts a path's rules over earlier ones.
    An object and a rule list for the same field cannot both hold here: ValueError.
    """
    if isinstance(first, Mapping) and isinstance(second, Mapping):
        merged = dict(first)
        for key, value in second.items():
            where = f"{path}.{key}" if path else str(key)
            merged[key] = _merge_pattern(merged[key], value, where) if key in merged else value
        return merged
    if isinstance(first, Mapping) or isinstance(second, Mapping):
        raise ValueError(f"duplicate key {path!r} whose values are an object and rules")
    return second


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # The Lambda docs' "Boolean expressions" example repeats the "dynamodb" key to AND two
    # conditions; a plain JSON parser would keep only the last. Merge as EventBridge does.
    out: dict[str, Any] = {}
    for key, value in pairs:
        out[key] = _merge_pattern(out[key], value, key) if key in out else value
    return out


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _load_pattern(text: str, label: str) -> Any:
    try:
        return json.loads(
            text,
            object_pairs_hook=_object_pairs,
            parse_float=Decimal,  # exact, like the N values it is compared with
            parse_constant=_reject_constant,
        )
    except ValueError as exc:  # json.JSONDecodeError is a ValueError
        raise ConfigurationError(
            f"invalid filter {label}: not a JSON pattern ({exc}); pattern: {text!r:.200}"
        ) from None


# --- the filter --------------------------------------------------------------------------


class RecordFilter:
    """Compiled Lambda-style filter patterns; a record passes if any pattern matches it.

    Build one with :meth:`from_patterns` or :meth:`from_filter_criteria` (this module's
    docstring describes the pattern language and where it departs from Lambda). Immutable
    and safe to share between tasks and threads.

    ``matches(record)`` takes a :class:`~ddbstreams.Record` from the default parser (decoded
    values; the attributes a pattern names are turned back into DynamoDB JSON on demand) or
    from :class:`~ddbstreams.RawParser` (wire maps, used as they are) -- which one is told
    by the record's key values. ``matches_raw(raw)`` takes a stream record as a plain dict,
    as GetRecords returns it or a Lambda event carries it. A filter is also callable, as
    ``matches``.

    Raises :class:`~ddbstreams.ConfigurationError` when built from an invalid pattern.
    Matching itself does not raise for any well-formed record.
    """

    __slots__ = (
        "_dict_matchers",
        "_patterns",
        "_record_matchers",
        "_uses_identity",
        "_uses_images",
    )

    _patterns: tuple[Any, ...]
    _dict_matchers: tuple[Matcher, ...]
    _record_matchers: tuple[RecordMatcher, ...]
    _uses_identity: bool
    _uses_images: bool

    def __init__(self, patterns: Sequence[Pattern | str] = ()) -> None:
        """Compile ``patterns`` (objects, or JSON text as in ``FilterCriteria``).

        Prefer :meth:`from_patterns`; an empty sequence makes a filter that passes all.
        """
        if isinstance(patterns, str | bytes | Mapping) or not isinstance(patterns, Sequence):
            raise ConfigurationError(
                "filter patterns must be a list of patterns (objects or JSON text), "
                f"got {_kind(patterns)}; wrap a single pattern in a list"
            )
        self._compile([(f"pattern [{i}]", p) for i, p in enumerate(patterns)])

    def _compile(self, labelled: list[tuple[str, Any]]) -> None:
        parsed: list[Any] = []
        dict_matchers: list[Matcher] = []
        record_matchers: list[RecordMatcher] = []
        uses_identity = uses_images = False
        for label, pattern in labelled:
            if isinstance(pattern, str):
                pattern = _load_pattern(pattern, label)
            compiler = _Compiler(label, pattern)
            dict_matcher, record_matcher = compiler.compile()
            parsed.append(pattern)
            dict_matchers.append(dict_matcher)
            record_matchers.append(record_matcher)
            uses_identity |= compiler.uses_identity
            uses_images |= compiler.uses_images
        setattr_ = object.__setattr__
        setattr_(self, "_patterns", tuple(parsed))
        setattr_(self, "_dict_matchers", tuple(dict_matchers))
        setattr_(self, "_record_matchers", tuple(record_matchers))
        setattr_(self, "_uses_identity", uses_identity)
        setattr_(self, "_uses_images", uses_images)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    @classmethod
    def from_patterns(cls, patterns: Sequence[Pattern | str]) -> RecordFilter:
        """A filter from patterns: each an object, or its JSON text (as in a ``Pattern``).

        JSON text is read with exact decimals; a key repeated with object values is merged
        (the Lambda docs use this to AND conditions on ``NewImage`` and ``OldImage``), and of
        two rule lists for one field the later wins, as in EventBridge.
        No patterns: every record passes. Raises ``ConfigurationError`` for a pattern that
        is invalid, naming the pattern, the path in it and the problem.
        """
        return cls(patterns)

    @classmethod
    def from_filter_criteria(cls, criteria: Mapping[str, Any]) -> RecordFilter:
        """A filter from a Lambda ``FilterCriteria``: ``{"Filters": [{"Pattern": "<json>"}]}``.

        ``Pattern`` may also be an object. A missing or empty ``Filters`` passes every
        record, as in Lambda. Raises ``ConfigurationError`` for any other shape or an
        invalid pattern.
        """
        if not isinstance(criteria, Mapping):
            raise ConfigurationError(f"FilterCriteria must be an object, got {_kind(criteria)}")
        unknown = sorted(str(key) for key in criteria if key != "Filters")
        if unknown:
            raise ConfigurationError(f"FilterCriteria has unknown keys {unknown}; expected Filters")
        filters = criteria.get("Filters")
        if filters is None:
            filters = []
        if isinstance(filters, str | bytes | Mapping) or not isinstance(filters, Sequence):
            raise ConfigurationError(f"FilterCriteria.Filters must be a list, got {_kind(filters)}")
        labelled: list[tuple[str, Any]] = []
        for i, entry in enumerate(filters):
            where = f"FilterCriteria.Filters[{i}]"
            if not isinstance(entry, Mapping) or set(entry) != {"Pattern"}:
                raise ConfigurationError(
                    f'{where} must be {{"Pattern": "<json>"}}, got {entry!r:.200}'
                )
            labelled.append((f"{where}.Pattern", entry["Pattern"]))
        self = object.__new__(cls)
        self._compile(labelled)
        return self

    @property
    def patterns(self) -> tuple[Any, ...]:
        """The patterns as objects (JSON text parsed), in order; empty: everything passes."""
        return self._patterns

    def matches(self, record: Record) -> bool:
        """Whether ``record`` (default or raw parser) passes: any pattern matches it."""
        matchers = self._record_matchers
        if not matchers:
            return True
        wire = self._uses_images and _is_wire(record)
        for matcher in matchers:  # noqa: SIM110 - see _leaf_matcher
            if matcher(record, wire):
                return True
        return False

    __call__ = matches

    def matches_raw(self, raw: Mapping[str, Any]) -> bool:
        """Whether a stream record given as a dict (GetRecords or Lambda shape) passes.

        The record must be plain JSON data (dicts, lists, strings, numbers); GetRecords'
        capitalised ``userIdentity`` keys are read as Lambda's lowercase ones.
        """
        matchers = self._dict_matchers
        if not matchers:
            return True
        event: Any = raw
        if type(event) is not dict:
            event = dict(event)
        if self._uses_identity and "userIdentity" in event:
            identity = _lambda_identity(event["userIdentity"])
            if identity is not event["userIdentity"]:
                event = {**event, "userIdentity": identity}
        for matcher in matchers:  # noqa: SIM110 - see _leaf_matcher
            if matcher(event):
                return True
        return False

    def __repr__(self) -> str:
        return f"RecordFilter({list(self._patterns)!r})"
