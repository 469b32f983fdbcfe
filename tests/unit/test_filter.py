"""RecordFilter: Lambda-style filter patterns on stream records.

Every check runs three ways and requires the same answer: on a Record from the default
parser (decoded values), on a Record from the raw parser (DynamoDB JSON) and on the plain
GetRecords dict (``matches_raw``).
"""

from __future__ import annotations

import copy
import json
from decimal import Decimal
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ddbstreams import ConfigurationError
from ddbstreams.consuming._filter import RecordFilter
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._encode import encode_item, encode_value
from ddbstreams.model._lambda_event import parse_lambda_event

KEYS_ONLY = "KEYS_ONLY"
BOTH = "NEW_AND_OLD_IMAGES"


def raw_record(
    event_name: str = "INSERT",
    *,
    keys: dict[str, Any] | None = None,
    new: dict[str, Any] | None = None,
    old: dict[str, Any] | None = None,
    view: str = BOTH,
    identity: dict[str, str] | None = None,
    size: int = 26,
    created: float = 1428537600,
) -> dict[str, Any]:
    """A GetRecords record; images are given as Python values and encoded to the wire."""
    ddb: dict[str, Any] = {
        "ApproximateCreationDateTime": created,
        "Keys": encode_item(keys if keys is not None else {"pk": "user#1"}),
        "SequenceNumber": "4421584500000000017450439091",
        "SizeBytes": size,
        "StreamViewType": view,
    }
    if new is not None:
        ddb["NewImage"] = encode_item(new)
    if old is not None:
        ddb["OldImage"] = encode_item(old)
    raw: dict[str, Any] = {
        "eventID": "c4ca4238a0b923820dcc509a6f75849b",
        "eventName": event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-central-1",
        "dynamodb": ddb,
    }
    if identity is not None:
        raw["userIdentity"] = identity
    return raw


def check(flt: RecordFilter, raw: dict[str, Any]) -> bool:
    """The filter's answer for ``raw``, required to be the same all three ways."""
    decoded = DefaultParser().parse_records([copy.deepcopy(raw)], "shardId-1")[0]
    wire = RawParser().parse_records([copy.deepcopy(raw)], "shardId-1")[0]
    answers = (flt.matches(decoded), flt.matches(wire), flt.matches_raw(raw))
    assert len(set(answers)) == 1, f"decoded/raw parser/raw dict disagree: {answers}"
    return answers[0]


def pattern(p: dict[str, Any]) -> RecordFilter:
    return RecordFilter.from_patterns([p])


def new_image(attrs: dict[str, Any]) -> RecordFilter:
    return pattern({"dynamodb": {"NewImage": attrs}})


ITEM: dict[str, Any] = {
    "pk": "user#1",
    "status": "active",
    "empty": "",
    "count": 5,
    "price": Decimal("12.5"),
    "big": 10**37 + 1,
    "flag": True,
    "nothing": None,
    "blob": b"\x01\x02",
    "tags": {"blue", "new"},
    "scores": {1, Decimal("2.5"), 10},
    "blobs": {b"a", b"b"},
    "address": {"city": "Paris", "geo": {"zip": "75001", "floor": 3}},
    "items": [
        {"sku": "A", "qty": 1},
        {"sku": "B", "qty": 7},
    ],
    "words": ["alpha", 42],
}


def item_record(**changes: Any) -> dict[str, Any]:
    return raw_record(new={**ITEM, **changes})


# --- event name, keys, exact values ------------------------------------------------------


def test_event_name_equality_and_or_list() -> None:
    inserts = pattern({"eventName": ["INSERT"]})
    assert check(inserts, raw_record("INSERT"))
    assert not check(inserts, raw_record("MODIFY"))
    changes = pattern({"eventName": ["INSERT", "MODIFY"]})
    assert check(changes, raw_record("MODIFY"))
    assert not check(changes, raw_record("REMOVE", old=ITEM))


def test_exact_strings_are_case_sensitive() -> None:
    assert not check(pattern({"eventName": ["insert"]}), raw_record("INSERT"))


def test_other_record_fields() -> None:
    raw = raw_record()
    assert check(pattern({"awsRegion": [{"prefix": "eu-"}], "eventSource": ["aws:dynamodb"]}), raw)
    assert check(pattern({"eventVersion": ["1.1"], "eventID": [{"exists": True}]}), raw)
    assert check(pattern({"dynamodb": {"StreamViewType": [BOTH]}}), raw)
    assert check(pattern({"dynamodb": {"SequenceNumber": [{"prefix": "4421"}]}}), raw)
    # GetRecords records carry no eventSourceARN.
    assert check(pattern({"eventSourceARN": [{"exists": False}]}), raw)


def test_key_equality_on_s_and_n() -> None:
    raw = raw_record(keys={"pk": "user#1", "sk": 101})
    assert check(pattern({"dynamodb": {"Keys": {"pk": {"S": ["user#1"]}}}}), raw)
    assert not check(pattern({"dynamodb": {"Keys": {"pk": {"S": ["user#2"]}}}}), raw)
    # As in the Lambda docs, N is matched by its text: {"N": ["101"]}.
    assert check(pattern({"dynamodb": {"Keys": {"sk": {"N": ["101"]}}}}), raw)
    assert not check(pattern({"dynamodb": {"Keys": {"sk": {"N": ["101.0"]}}}}), raw)
    # The type tag is part of the value: the key is an N, not an S.
    assert not check(pattern({"dynamodb": {"Keys": {"sk": {"S": ["101"]}}}}), raw)


def test_number_literals_under_n_compare_numerically() -> None:
    # The extension: Lambda never matches numbers against N (they are strings there).
    raw = item_record()
    assert check(new_image({"count": {"N": [5]}}), raw)
    assert check(new_image({"count": {"N": [Decimal("5.0")]}}), raw)
    assert check(new_image({"price": {"N": [12.5]}}), raw)
    assert not check(new_image({"price": {"N": [12]}}), raw)
    assert check(new_image({"big": {"N": [10**37 + 1]}}), raw)
    assert not check(new_image({"big": {"N": [10**37]}}), raw)


def test_event_names_of_lambda_events_and_eventsourcearn() -> None:
    raw = {**raw_record("MODIFY", old=ITEM, new=ITEM), "eventSourceARN": "arn:aws:x"}
    flt = pattern({"eventName": ["MODIFY"], "eventSourceARN": [{"suffix": ":x"}]})
    assert check(flt, raw)
    (record,) = parse_lambda_event({"Records": [raw]})
    assert flt.matches(record)


# --- string operators ---------------------------------------------------------------------


def test_prefix_and_suffix() -> None:
    raw = item_record()
    assert check(pattern({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "user#"}]}}}}), raw)
    assert not check(pattern({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": "USER#"}]}}}}), raw)
    assert check(new_image({"status": {"S": [{"suffix": "ive"}]}}), raw)
    assert not check(new_image({"status": {"S": [{"suffix": "IVE"}]}}), raw)
    ignore_case = {"equals-ignore-case": "USER#"}
    assert check(pattern({"dynamodb": {"Keys": {"pk": {"S": [{"prefix": ignore_case}]}}}}), raw)
    assert check(new_image({"status": {"S": [{"suffix": {"equals-ignore-case": "IVE"}}]}}), raw)
    # On N the operators see the number's text, as in Lambda.
    assert check(new_image({"price": {"N": [{"prefix": "12."}]}}), raw)


def test_equals_ignore_case() -> None:
    raw = item_record()
    assert check(new_image({"status": {"S": [{"equals-ignore-case": "ACTIVE"}]}}), raw)
    assert not check(new_image({"status": {"S": [{"equals-ignore-case": "ACTIV"}]}}), raw)


def test_wildcard() -> None:
    raw = item_record(path="logs/2024/app.png", star="a*b")
    assert check(new_image({"path": {"S": [{"wildcard": "logs/*.png"}]}}), raw)
    assert check(new_image({"path": {"S": [{"wildcard": "*/2024/*"}]}}), raw)
    assert not check(new_image({"path": {"S": [{"wildcard": "logs/*.jpg"}]}}), raw)
    assert check(new_image({"star": {"S": [{"wildcard": "a\\*b"}]}}), raw)
    assert not check(new_image({"star": {"S": [{"wildcard": "a\\*c"}]}}), raw)
    assert check(new_image({"path": {"S": [{"wildcard": "logs/2024/app.png"}]}}), raw)


def test_anything_but() -> None:
    raw = item_record()
    status = ("status", "S")

    def but(operand: Any, attr: tuple[str, str] = status) -> RecordFilter:
        name, tag = attr
        return new_image({name: {tag: [{"anything-but": operand}]}})

    assert check(but(["stopped", "overloaded"]), raw)
    assert not check(but(["stopped", "active"]), raw)
    assert not check(but("active"), raw)
    assert check(but({"prefix": "init"}), raw)
    assert not check(but({"prefix": "act"}), raw)
    assert not check(but({"suffix": "ive"}), raw)
    assert not check(but({"equals-ignore-case": ["ACTIVE", "x"]}), raw)
    assert check(but({"equals-ignore-case": "stopped"}), raw)
    assert not check(but({"wildcard": "a*e"}), raw)
    assert check(but({"wildcard": ["x*", "*z"]}), raw)
    # Numbers under N compare numerically; strings as text.
    assert not check(but([5, 6], ("count", "N")), raw)
    assert check(but([4, 6], ("count", "N")), raw)
    assert not check(but(["5"], ("count", "N")), raw)
    # anything-but needs a value: a missing attribute does not match.
    assert not check(new_image({"missing": {"S": [{"anything-but": "x"}]}}), raw)


def test_anything_but_on_a_set_matches_if_any_member_differs() -> None:
    raw = item_record()
    assert check(new_image({"tags": {"SS": [{"anything-but": ["blue"]}]}}), raw)
    assert not check(new_image({"tags": {"SS": [{"anything-but": ["blue", "new"]}]}}), raw)


def test_anything_but_on_the_event_name() -> None:
    not_removes = pattern({"eventName": [{"anything-but": "REMOVE"}]})
    assert check(not_removes, raw_record("INSERT"))
    assert not check(not_removes, raw_record("REMOVE", old=ITEM))


# --- numbers ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ([">", 0, "<=", 5], True),
        ([">", 0, "<", 5], False),
        ([">=", 5], True),
        ([">", 5], False),
        (["<", 6], True),
        (["<=", 4], False),
        (["=", 5], True),
        (["=", 5.0], True),
        (["=", 6], False),
        (["<=", 5, ">", 4], True),  # bounds in either order
        ([">", -1.5, "<", 5.5], True),
    ],
)
def test_numeric_on_an_integer_n(rule: list[Any], expected: bool) -> None:
    assert check(new_image({"count": {"N": [{"numeric": rule}]}}), item_record()) is expected


@pytest.mark.parametrize(
    ("rule", "expected"),
    [
        ([">", 12, "<", 13], True),
        (["=", 12.5], True),
        (["=", Decimal("12.50")], True),
        ([">=", Decimal("12.5000000000000000000000000001")], False),
        (["<", Decimal("12.5000000000000000000000000001")], True),
        ([">", 12.5], False),
        (["<=", 12.5], True),
    ],
)
def test_numeric_on_a_decimal_n(rule: list[Any], expected: bool) -> None:
    assert check(new_image({"price": {"N": [{"numeric": rule}]}}), item_record()) is expected


def test_numeric_is_exact_for_38_digit_numbers() -> None:
    big = 99999999999999999999999999999999999999
    raw = item_record(big=big)
    assert check(new_image({"big": {"N": [{"numeric": [">", big - 1]}]}}), raw)
    assert not check(new_image({"big": {"N": [{"numeric": [">", big]}]}}), raw)
    tiny = Decimal("0.00000000000000000000000000000000000001")
    raw = item_record(tiny=tiny)
    assert check(new_image({"tiny": {"N": [{"numeric": [">", 0, "<", Decimal("1E-37")]}]}}), raw)


def test_numeric_float_operands_mean_their_decimal_text() -> None:
    raw = item_record(rate=Decimal("0.1"))
    assert check(new_image({"rate": {"N": [{"numeric": ["=", 0.1]}]}}), raw)


def test_numeric_on_number_set_members() -> None:
    raw = item_record()  # scores = {1, 2.5, 10}
    assert check(new_image({"scores": {"NS": [{"numeric": [">", 2, "<", 3]}]}}), raw)
    assert not check(new_image({"scores": {"NS": [{"numeric": [">", 10]}]}}), raw)


def test_numeric_does_not_apply_to_strings() -> None:
    raw = item_record(text_number="10")
    assert not check(new_image({"text_number": {"S": [{"numeric": [">", 5]}]}}), raw)


def test_numeric_on_size_and_creation_time() -> None:
    raw = raw_record(size=300, created=1428537600)
    assert check(pattern({"dynamodb": {"SizeBytes": [{"numeric": [">=", 300]}]}}), raw)
    assert not check(pattern({"dynamodb": {"SizeBytes": [{"numeric": ["<", 300]}]}}), raw)
    window = [">=", 1428537600, "<", 1428537601]
    assert check(pattern({"dynamodb": {"ApproximateCreationDateTime": [{"numeric": window}]}}), raw)


def test_exact_numbers_outside_n_compare_as_written() -> None:
    # "For numbers, Lambda also uses string representation: 300, 300.0 are not equal."
    raw = raw_record(size=300)
    assert check(pattern({"dynamodb": {"SizeBytes": [300]}}), raw)
    assert not check(pattern({"dynamodb": {"SizeBytes": [300.0]}}), raw)
    assert not check(pattern({"dynamodb": {"SizeBytes": ["300"]}}), raw)
    assert check(pattern({"dynamodb": {"SizeBytes": [{"anything-but": [100, 200]}]}}), raw)


# --- exists, null, empty -----------------------------------------------------------------


def test_exists_true_and_false() -> None:
    raw = item_record()
    assert check(new_image({"status": {"S": [{"exists": True}]}}), raw)
    assert not check(new_image({"status": {"S": [{"exists": False}]}}), raw)
    assert not check(new_image({"missing": {"S": [{"exists": True}]}}), raw)
    assert check(new_image({"missing": {"S": [{"exists": False}]}}), raw)
    # The attribute exists, but as a number: there is no S leaf.
    assert not check(new_image({"count": {"S": [{"exists": True}]}}), raw)
    assert check(new_image({"count": {"S": [{"exists": False}]}}), raw)


def test_exists_works_on_leaves_only() -> None:
    # The Lambda docs' example: "Organizations" is an L, so exists goes under L and S.
    raw = item_record(Organizations=["Sales", "Marketing", "Support"])
    assert check(new_image({"Organizations": {"L": {"S": [{"exists": True}]}}}), raw)
    # "geo" is a map, so it has no S leaf; its own leaves are reached through M.
    assert check(new_image({"address": {"M": {"geo": {"S": [{"exists": False}]}}}}), raw)
    assert not check(new_image({"address": {"M": {"geo": {"S": [{"exists": True}]}}}}), raw)
    zip_code = {"zip": {"S": [{"exists": True}]}}
    assert check(new_image({"address": {"M": {"geo": {"M": zip_code}}}}), raw)


def test_rules_on_an_object_see_no_value() -> None:
    # In raw input a rule list can land on an object: only exists false holds there.
    raw = raw_record()
    assert pattern({"awsRegion": [{"exists": False}]}).matches_raw({**raw, "awsRegion": {"a": 1}})
    assert not pattern({"awsRegion": [{"exists": True}]}).matches_raw({**raw, "awsRegion": {}})
    assert not pattern({"awsRegion": [{"anything-but": "x"}]}).matches_raw(
        {**raw, "awsRegion": {"a": "b"}}
    )


def test_empty_string_and_null() -> None:
    raw = item_record()
    assert check(new_image({"empty": {"S": [""]}}), raw)
    assert not check(new_image({"status": {"S": [""]}}), raw)
    assert not check(new_image({"missing": {"S": [""]}}), raw)
    # A DynamoDB NULL is {"NULL": true}.
    assert check(new_image({"nothing": {"NULL": [True]}}), raw)
    assert not check(new_image({"status": {"NULL": [True]}}), raw)
    # JSON null never occurs in a stream record ...
    assert not check(new_image({"nothing": {"NULL": [None]}}), raw)
    assert not check(pattern({"eventSourceARN": [None]}), raw)
    # ... but matches an explicit null in raw input, and "" does not.
    explicit = {**raw, "eventSourceARN": None}
    assert pattern({"eventSourceARN": [None]}).matches_raw(explicit)
    assert not pattern({"eventSourceARN": [""]}).matches_raw(explicit)
    assert pattern({"eventSourceARN": [{"exists": True}]}).matches_raw(explicit)  # a value


def test_bool_binary_and_sets() -> None:
    raw = item_record()
    assert check(new_image({"flag": {"BOOL": [True]}}), raw)
    assert not check(new_image({"flag": {"BOOL": [False]}}), raw)
    assert not check(new_image({"count": {"BOOL": [True]}}), raw)
    blob = encode_value(b"\x01\x02")["B"]
    assert check(new_image({"blob": {"B": [blob]}}), raw)
    assert check(new_image({"blobs": {"BS": [encode_value(b"b")["B"]]}}), raw)
    assert check(new_image({"tags": {"SS": ["new"]}}), raw)
    assert not check(new_image({"tags": {"SS": ["red"]}}), raw)
    assert check(new_image({"scores": {"NS": ["2.5"]}}), raw)


# --- structure ---------------------------------------------------------------------------


def test_nested_maps() -> None:
    raw = item_record()
    city = {"address": {"M": {"city": {"S": ["Paris"]}}}}
    assert check(new_image(city), raw)
    deep = {"address": {"M": {"geo": {"M": {"zip": {"S": [{"prefix": "75"}]}}}}}}
    assert check(new_image(deep), raw)
    floor = {"address": {"M": {"geo": {"M": {"floor": {"N": [{"numeric": [">", 2]}]}}}}}}
    assert check(new_image(floor), raw)
    assert not check(new_image({"address": {"M": {"city": {"S": ["Lyon"]}}}}), raw)


def test_lists_match_if_any_element_does_and_fields_stay_together() -> None:
    raw = item_record()
    assert check(new_image({"words": {"L": {"S": ["alpha"]}}}), raw)
    assert check(new_image({"words": {"L": {"N": [{"numeric": ["=", 42]}]}}}), raw)
    same_element = {"items": {"L": {"M": {"sku": {"S": ["B"]}, "qty": {"N": [7]}}}}}
    assert check(new_image(same_element), raw)
    # sku A and qty 7 exist, but not in the same element.
    split = {"items": {"L": {"M": {"sku": {"S": ["A"]}, "qty": {"N": [7]}}}}}
    assert not check(new_image(split), raw)


def test_fields_are_anded() -> None:
    raw = item_record()
    both = {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}
    assert check(pattern(both), raw)
    wrong = {"eventName": ["MODIFY"], "dynamodb": {"NewImage": {"status": {"S": ["active"]}}}}
    assert not check(pattern(wrong), raw)
    assert not check(new_image({"status": {"S": ["active"]}, "count": {"N": ["6"]}}), raw)


def test_patterns_are_ored() -> None:
    flt = RecordFilter.from_patterns(
        [
            {"eventName": ["INSERT"], "dynamodb": {"NewImage": {"status": {"S": ["done"]}}}},
            {"eventName": ["REMOVE"]},
        ]
    )
    assert check(flt, raw_record("INSERT", new={"pk": "a", "status": "done"}))
    assert check(flt, raw_record("REMOVE", old={"pk": "a"}))
    assert not check(flt, raw_record("INSERT", new={"pk": "a", "status": "todo"}))
    assert not check(flt, raw_record("MODIFY", new={"pk": "a", "status": "done"}))


def test_dollar_or() -> None:
    flt = pattern(
        {
            "eventName": ["MODIFY"],
            "$or": [
                {"dynamodb": {"NewImage": {"status": {"S": ["done"]}}}},
                {"dynamodb": {"OldImage": {"status": {"S": ["done"]}}}},
            ],
        }
    )
    assert check(flt, raw_record("MODIFY", old={"status": "todo"}, new={"status": "done"}))
    assert check(flt, raw_record("MODIFY", old={"status": "done"}, new={"status": "gone"}))
    assert not check(flt, raw_record("MODIFY", old={"status": "a"}, new={"status": "b"}))
    assert not check(flt, raw_record("INSERT", new={"status": "done"}))
    inside = new_image({"$or": [{"status": {"S": ["active"]}}, {"count": {"N": ["99"]}}]})
    assert check(inside, item_record())
    assert check(inside, item_record(status="x", count=99))
    assert not check(inside, item_record(status="x"))


def test_dollar_or_inside_dynamodb_and_rules_mixed_in_one_list() -> None:
    flt = pattern(
        {
            "dynamodb": {
                "$or": [
                    {"Keys": {"pk": {"S": [{"prefix": "order#"}]}}},
                    {"NewImage": {"status": {"S": [{"exists": False}, "active"]}}},
                ]
            }
        }
    )
    assert check(flt, item_record())
    assert check(flt, raw_record(new={"pk": "user#1"}))
    assert check(flt, raw_record(keys={"pk": "order#1"}, new={"status": "x"}))
    assert not check(flt, raw_record(new={"pk": "user#1", "status": "x"}))


def test_matches_raw_takes_any_mapping_and_changes_nothing() -> None:
    raw = raw_record(
        "REMOVE", old={"pk": "a"}, identity={"Type": "Service", "PrincipalId": "x.amazonaws.com"}
    )
    before = copy.deepcopy(raw)
    flt = pattern({"userIdentity": {"principalId": [{"suffix": ".amazonaws.com"}]}})
    assert flt.matches_raw(MappingProxyType(raw))
    assert raw == before


def test_remove_without_new_image() -> None:
    raw = raw_record("REMOVE", old={"pk": "user#1", "status": "active"})
    assert not check(new_image({"status": {"S": ["active"]}}), raw)
    assert not check(new_image({"status": {"S": [{"anything-but": "x"}]}}), raw)
    assert check(new_image({"status": {"S": [{"exists": False}]}}), raw)
    assert check(pattern({"dynamodb": {"OldImage": {"status": {"S": ["active"]}}}}), raw)


def test_keys_only_records() -> None:
    raw = raw_record("MODIFY", keys={"pk": "user#1"}, view=KEYS_ONLY)
    assert check(pattern({"dynamodb": {"Keys": {"pk": {"S": ["user#1"]}}}}), raw)
    assert not check(new_image({"pk": {"S": ["user#1"]}}), raw)
    assert not check(pattern({"dynamodb": {"OldImage": {"pk": {"S": [{"exists": True}]}}}}), raw)
    assert check(pattern({"dynamodb": {"StreamViewType": [KEYS_ONLY]}}), raw)


TTL = {"userIdentity": {"type": ["Service"], "principalId": ["dynamodb.amazonaws.com"]}}


def test_ttl_delete_filter_on_getrecords_records() -> None:
    # GetRecords capitalises the identity's keys; the pattern uses Lambda's lowercase.
    identity = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}
    ttl_delete = raw_record("REMOVE", old={"pk": "a"}, identity=identity)
    user_delete = raw_record("REMOVE", old={"pk": "a"})
    flt = pattern({"eventName": ["REMOVE"], **TTL})
    assert check(flt, ttl_delete)
    assert not check(flt, user_delete)
    # Keeping everything but TTL deletes: exists false (anything-but needs a value).
    not_ttl = pattern({"userIdentity": {"type": [{"exists": False}]}})
    assert not check(not_ttl, ttl_delete)
    assert check(not_ttl, user_delete)


def test_ttl_delete_filter_on_lambda_events() -> None:
    identity = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    raw = {**raw_record("REMOVE", old={"pk": "a"}, identity=identity), "eventSourceARN": "arn"}
    flt = pattern(TTL)
    assert check(flt, raw)
    (record,) = parse_lambda_event({"Records": [raw]})
    assert record.is_ttl_delete
    assert flt.matches(record)
    other = {**raw, "userIdentity": {"type": "Service", "principalId": "other"}}
    assert not check(flt, other)


# --- FilterCriteria and JSON text ----------------------------------------------------------

ANYCOMPANY = raw_record(
    keys={"CustomerName": "AnyCompany Industries"},
    new={
        "AccountManager": "Pat Candella",
        "PaymentTerms": "60 days",
        "CustomerName": "AnyCompany Industries",
    },
    old={"AccountManager": "Terry Whitlock", "CustomerName": "AnyCompany Industries"},
)


def test_filter_criteria_from_the_lambda_docs() -> None:
    # "Using event filtering with a DynamoDB event source", verbatim.
    keys = RecordFilter.from_filter_criteria(
        {
            "Filters": [
                {
                    "Pattern": '{ "dynamodb" : { "Keys" : { "CustomerName" : { "S" : '
                    '[ "AnyCompany Industries" ] } } } }'
                }
            ]
        }
    )
    assert check(keys, ANYCOMPANY)
    managers = RecordFilter.from_filter_criteria(
        {
            "Filters": [
                {
                    "Pattern": '{ "dynamodb" : { "NewImage" : { "AccountManager" : { "S" : '
                    '[ "Pat Candella", "Shirley Rodriguez" ] } } } }'
                }
            ]
        }
    )
    assert check(managers, ANYCOMPANY)


def test_repeated_dynamodb_key_is_an_and() -> None:
    # The docs' "Boolean expressions" example repeats the "dynamodb" key.
    text = (
        '{ "dynamodb" : { "NewImage" : { "AccountManager" : { "S" : [ "Pat Candella" ] } } } , '
        '"dynamodb" : { "OldImage" : { "AccountManager" : { "S" : [ "Terry Whitlock" ] } } } }'
    )
    flt = RecordFilter.from_filter_criteria({"Filters": [{"Pattern": text}]})
    assert check(flt, ANYCOMPANY)
    other_old = copy.deepcopy(ANYCOMPANY)
    other_old["dynamodb"]["OldImage"]["AccountManager"] = {"S": "Someone Else"}
    assert not check(flt, other_old)
    assert flt.patterns[0]["dynamodb"].keys() == {"NewImage", "OldImage"}


def test_filter_criteria_or_of_filters_and_object_patterns() -> None:
    flt = RecordFilter.from_filter_criteria(
        {
            "Filters": [
                {"Pattern": json.dumps({"eventName": ["REMOVE"]})},
                {"Pattern": {"dynamodb": {"NewImage": {"PaymentTerms": {"S": ["60 days"]}}}}},
            ]
        }
    )
    assert check(flt, ANYCOMPANY)
    assert check(flt, raw_record("REMOVE", old={"pk": "a"}))
    assert not check(flt, raw_record("INSERT", new={"pk": "a"}))


def test_json_numbers_are_read_exactly() -> None:
    flt = RecordFilter.from_patterns(
        ['{"dynamodb": {"NewImage": {"price": {"N": [{"numeric": ["=", 12.50]}]}}}}']
    )
    assert flt.patterns[0]["dynamodb"]["NewImage"]["price"]["N"][0]["numeric"][1] == Decimal(
        "12.50"
    )
    assert check(flt, item_record())


@pytest.mark.parametrize("criteria", [{}, {"Filters": []}, {"Filters": None}])
def test_no_filters_pass_everything(criteria: dict[str, Any]) -> None:
    flt = RecordFilter.from_filter_criteria(criteria)
    assert flt.patterns == ()
    assert check(flt, raw_record("REMOVE", old={"pk": "a"}))
    assert check(RecordFilter.from_patterns([]), raw_record())


def test_filter_is_immutable_callable_and_shows_its_patterns() -> None:
    flt = pattern({"eventName": ["INSERT"]})
    with pytest.raises(AttributeError):
        flt._patterns = ()
    record = DefaultParser().parse_records([raw_record()], "s")[0]
    assert flt(record)
    assert list(filter(flt, [record])) == [record]
    assert repr(flt) == "RecordFilter([{'eventName': ['INSERT']}])"


# --- invalid patterns ----------------------------------------------------------------------

NEW = "dynamodb.NewImage"


def _nest(depth: int) -> dict[str, Any]:
    node: dict[str, Any] = {"S": ["x"]}
    for _ in range(depth):
        node = {"M": {"a": node}}
    return node


@pytest.mark.parametrize(
    ("bad", "where", "message"),
    [
        ({"eventname": ["INSERT"]}, "eventname", "unknown record field 'eventname'"),
        ({"dynamodb": {"NewImages": {}}}, "dynamodb.NewImages", "unknown dynamodb field"),
        ({"userIdentity": {"Type": ["Service"]}}, "userIdentity.Type", "unknown userIdentity"),
        ({"dynamodb": {"NewImage": {"a": {"X": ["x"]}}}}, f"{NEW}.a.X", "unknown attribute type"),
        ({"dynamodb": {"NewImage": {"status": ["x"]}}}, f"{NEW}.status", "under its type tag"),
        ({"dynamodb": {"NewImage": {"a": {"M": ["x"]}}}}, f"{NEW}.a.M", "M is not a leaf"),
        ({"dynamodb": {"NewImage": {"a": {"L": ["x"]}}}}, f"{NEW}.a.L", "L is not a leaf"),
        ({"dynamodb": {"NewImage": {"a": _nest(33)}}}, f"{NEW}.a", "deeper than DynamoDB's 32"),
        ({"eventName": "INSERT"}, "eventName", "expected a list of rules"),
        ({"eventName": []}, "eventName", "empty list of rules"),
        ({"eventName": [["INSERT"]]}, "eventName[0]", "a rule is a string"),
        ({"dynamodb": {}}, "dynamodb", "empty object"),
        ({}, "", "empty object"),
        ({"dynamodb": "x"}, "dynamodb", "expected an object"),
        ({"eventName": [{"prefix": "a", "suffix": "b"}]}, "eventName[0]", "exactly one key"),
        ({"eventName": [{"begins-with": "a"}]}, "eventName[0]", "unknown operator 'begins-with'"),
        ({"eventName": [{"prefix": 1}]}, "eventName[0].prefix", "expected a string"),
        ({"eventName": [{"prefix": {"x": "a"}}]}, "eventName[0].prefix", "equals-ignore-case"),
        ({"eventName": [{"equals-ignore-case": ["a"]}]}, "[0].equals-ignore-case", "a string"),
        ({"eventName": [{"exists": "yes"}]}, "eventName[0].exists", "true or false"),
        ({"eventName": [{"cidr": "10.0.0.0/8"}]}, "eventName[0].cidr", "not supported"),
        ({"eventName": [{"wildcard": "a**b"}]}, "eventName[0].wildcard", "consecutive"),
        ({"eventName": [{"wildcard": "a\\b"}]}, "eventName[0].wildcard", "backslash"),
        ({"eventName": [{"anything-but": []}]}, "anything-but", "at least one value"),
        ({"eventName": [{"anything-but": ["a", 1]}]}, "anything-but", "strings only or numbers"),
        ({"eventName": [{"anything-but": [True]}]}, "anything-but", "strings only or numbers"),
        ({"eventName": [{"anything-but": {"exists": True}}]}, "anything-but.exists", "takes"),
        ({"eventName": [{"anything-but": {"prefix": 1}}]}, "anything-but.prefix", "a string"),
        ({"eventName": [{"numeric": [">", 1, "<"]}]}, "numeric", "takes"),
        ({"eventName": [{"numeric": 5}]}, "numeric", "takes"),
        ({"eventName": [{"numeric": ["!=", 1]}]}, "numeric[0]", "unknown comparator '!='"),
        ({"eventName": [{"numeric": [">", "1"]}]}, "numeric[1]", "expected a number"),
        ({"eventName": [{"numeric": [">", True]}]}, "numeric[1]", "expected a number"),
        ({"eventName": [{"numeric": [">", float("nan")]}]}, "numeric[1]", "finite"),
        ({"eventName": [{"numeric": ["=", 1, "<", 2]}]}, "numeric", '"=" cannot be combined'),
        ({"eventName": [{"numeric": [">", 1, ">=", 2]}]}, "numeric", "two lower bounds"),
        ({"eventName": [{"numeric": ["<", 1, "<=", 2]}]}, "numeric", "two upper bounds"),
        ({"eventName": [{"numeric": [">", 5, "<", 1]}]}, "numeric", "the range is empty"),
        ({"eventName": [{"numeric": [">", 1, "<=", 1]}]}, "numeric", "the range is empty"),
        ({"$or": [{"eventName": ["A"]}]}, "$or", "at least two"),
        ({"$or": [{"eventName": ["A"]}, "x"]}, "$or[1]", "expected an object"),
        ({1: ["x"]}, "", "field names must be strings"),
    ],
)
def test_invalid_patterns(bad: Any, where: str, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        RecordFilter.from_patterns([{"eventName": ["INSERT"]}, bad])
    text = str(raised.value)
    assert "pattern [1]" in text
    assert where in text
    assert message in text


def test_nesting_up_to_32_levels_is_allowed() -> None:
    flt = new_image({"a": _nest(32)})
    value: Any = "x"
    for _ in range(32):
        value = {"a": value}
    assert check(flt, item_record(a=value))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"eventName": ["INSERT"]', "not a JSON pattern"),
        ('{"eventName": [NaN]}', "not a JSON pattern"),
        ('{"eventName": ["A"], "eventName": {"x": ["B"]}}', "duplicate key 'eventName'"),
        ('{"dynamodb": {"SizeBytes": [1]}, "dynamodb": {"SizeBytes": {"a": [2]}}}', "duplicate"),
        ('["INSERT"]', "expected an object"),
    ],
)
def test_invalid_json_patterns(text: str, message: str) -> None:
    with pytest.raises(ConfigurationError, match="pattern \\[0\\]") as raised:
        RecordFilter.from_patterns([text])
    assert message in str(raised.value)


@pytest.mark.parametrize(
    ("criteria", "message"),
    [
        ([], "FilterCriteria must be an object"),
        ({"filters": []}, "unknown keys ['filters']"),
        ({"Filters": {"Pattern": "{}"}}, "Filters must be a list"),
        ({"Filters": ["{}"]}, "Filters[0] must be"),
        ({"Filters": [{"pattern": "{}"}]}, "Filters[0] must be"),
        ({"Filters": [{"Pattern": '{"eventName": "INSERT"}'}]}, "Filters[0].Pattern at eventName"),
    ],
)
def test_invalid_filter_criteria(criteria: Any, message: str) -> None:
    with pytest.raises(ConfigurationError) as raised:
        RecordFilter.from_filter_criteria(criteria)
    assert message in str(raised.value)


@pytest.mark.parametrize("patterns", [{"eventName": ["INSERT"]}, '{"eventName": ["INSERT"]}', 5])
def test_patterns_must_be_a_list(patterns: Any) -> None:
    with pytest.raises(ConfigurationError, match="wrap a single pattern in a list"):
        RecordFilter.from_patterns(patterns)


def test_configuration_error_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="unknown operator"):
        RecordFilter.from_patterns([{"eventName": [{"nope": 1}]}])


# --- properties ------------------------------------------------------------------------------

NAMES = st.text(alphabet="abcxyz_", min_size=1, max_size=6)


def as_dynamodb_writes(number: Decimal) -> int | Decimal:
    """The value DynamoDB stores for ``number``: it normalises (no trailing zeros)."""
    normal = number.normalize()
    return int(normal) if normal == normal.to_integral_value() else normal


DECIMALS = st.decimals(
    allow_nan=False, allow_infinity=False, places=3, min_value=-(10**9), max_value=10**9
).map(as_dynamodb_writes)
SCALARS = st.one_of(
    st.text(max_size=8),
    st.integers(min_value=-(10**38) + 1, max_value=10**38 - 1),
    DECIMALS,
    st.binary(min_size=1, max_size=6),
    st.booleans(),
    st.none(),
)
VALUES = st.recursive(
    st.one_of(
        SCALARS,
        st.frozensets(st.text(max_size=5), min_size=1, max_size=3).map(set),
        st.frozensets(st.integers(-1000, 1000), min_size=1, max_size=3).map(set),
    ),
    lambda inner: st.one_of(
        st.lists(inner, min_size=1, max_size=3),
        st.dictionaries(NAMES, inner, min_size=1, max_size=3),
    ),
    max_leaves=8,
)
ITEMS = st.dictionaries(NAMES, VALUES, min_size=1, max_size=5)


def own_value_pattern(av: dict[str, Any], draw_index: int) -> dict[str, Any]:
    """A sub-pattern at attribute-value level that the attribute value ``av`` matches."""
    ((tag, payload),) = av.items()
    if tag == "M":
        name = sorted(payload)[draw_index % len(payload)]
        return {"M": {name: own_value_pattern(payload[name], draw_index)}}
    if tag == "L":
        return {"L": own_value_pattern(payload[draw_index % len(payload)], draw_index)}
    if tag in ("SS", "NS", "BS"):
        return {tag: [sorted(payload)[draw_index % len(payload)]]}
    return {tag: [payload]}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(item=ITEMS, pick=st.integers(min_value=0, max_value=50))
def test_a_pattern_built_from_a_records_own_values_matches_it(
    item: dict[str, Any], pick: int
) -> None:
    raw = raw_record("MODIFY", new=item, old=item)
    name = sorted(item)[pick % len(item)]
    attribute = own_value_pattern(encode_value(item[name]), pick)
    for image in ("NewImage", "OldImage"):
        assert check(pattern({"dynamodb": {image: {name: attribute}}}), raw)
    assert check(
        pattern({"dynamodb": {"Keys": {"pk": {"S": ["user#1"]}}}, "eventName": ["MODIFY"]}), raw
    )


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=12), other=st.text(max_size=12))
def test_anything_but_own_string_never_matches(text: str, other: str) -> None:
    raw = item_record(s=text)
    assert not check(new_image({"s": {"S": [{"anything-but": text}]}}), raw)
    assert check(new_image({"s": {"S": [{"anything-but": other}]}}), raw) is (text != other)
    assert check(new_image({"s": {"S": [{"prefix": text[:3]}]}}), raw)
    assert check(new_image({"s": {"S": [{"equals-ignore-case": text.upper()}]}}), raw) is (
        text.upper().casefold() == text.casefold()
    )


@settings(max_examples=150, deadline=None)
@given(
    value=st.decimals(
        allow_nan=False, allow_infinity=False, places=4, min_value=-(10**6), max_value=10**6
    ),
    low=st.integers(-(10**6), 10**6),
    width=st.integers(0, 10**6),
)
def test_numeric_range_agrees_with_python_comparison(value: Decimal, low: int, width: int) -> None:
    raw = item_record(n=value)
    high = low + width
    inside = check(new_image({"n": {"N": [{"numeric": [">=", low, "<=", high]}]}}), raw)
    assert inside is (low <= value <= high)
