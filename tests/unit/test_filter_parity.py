"""RecordFilter against AWS Lambda / EventBridge on the points of issue 12, item 5.

Every check runs three ways (default parser, raw parser, plain dict) via ``check`` from
test_filter. Sources of each rule are cited in consuming/_filter.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from ddbstreams import ConfigurationError
from ddbstreams.consuming._filter import RecordFilter

from .test_filter import check, item_record, new_image, pattern, raw_record

# --- anything-but with a nested operator matches values that are not strings -------------


@pytest.mark.parametrize(
    "operand",
    [
        {"prefix": "a"},
        {"suffix": "a"},
        {"wildcard": "a*"},
        {"equals-ignore-case": "a"},
        {"prefix": ["a", "b"]},
    ],
)
def test_nested_anything_but_matches_numbers_booleans_and_null(operand: dict[str, Any]) -> None:
    rule = [{"anything-but": operand}]
    # A JSON number, a BOOL payload and a NULL payload (true) are no strings.
    assert check(pattern({"dynamodb": {"SizeBytes": rule}}), raw_record(size=300))
    raw = item_record()
    assert check(new_image({"flag": {"BOOL": rule}}), raw)
    assert check(new_image({"nothing": {"NULL": rule}}), raw)
    # A JSON null (only in raw input) is no string either.
    flt = pattern({"awsRegion": rule})
    assert flt.matches_raw({**raw_record(), "awsRegion": None})
    # Strings are still tested.
    assert not check(pattern({"awsRegion": [{"anything-but": {"prefix": "eu"}}]}), raw_record())


def test_anything_but_prefix_and_suffix_lists() -> None:
    raw = item_record()  # status = "active"
    assert not check(new_image({"status": {"S": [{"anything-but": {"prefix": ["x", "ac"]}}]}}), raw)
    assert check(new_image({"status": {"S": [{"anything-but": {"prefix": ["x", "y"]}}]}}), raw)
    assert not check(new_image({"status": {"S": [{"anything-but": {"suffix": ["ve", "z"]}}]}}), raw)
    assert check(new_image({"status": {"S": [{"anything-but": {"suffix": ["x", "z"]}}]}}), raw)


@pytest.mark.parametrize(
    "operand",
    [{"prefix": ""}, {"suffix": ""}, {"prefix": ["a", ""]}, {"suffix": []}, {"prefix": [1]}],
)
def test_anything_but_rejects_empty_or_bad_affixes(operand: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError, match="anything-but"):
        pattern({"eventName": [{"anything-but": operand}]})


def test_plain_empty_prefix_is_still_allowed_and_matches_every_string() -> None:
    # event-ruler rejects "" only inside anything-but; {"prefix": ""} matches any string.
    assert check(pattern({"eventName": [{"prefix": ""}]}), raw_record())
    assert not check(pattern({"dynamodb": {"SizeBytes": [{"prefix": ""}]}}), raw_record())


# --- numbers ------------------------------------------------------------------------------


def test_numeric_equality_compares_numbers_not_text() -> None:
    flt = pattern({"dynamodb": {"SizeBytes": [{"numeric": ["=", 300]}]}})
    assert flt.matches_raw(raw_record(size=300))
    raw = raw_record()
    raw["dynamodb"]["SizeBytes"] = 300.0
    assert flt.matches_raw(raw)
    assert pattern({"dynamodb": {"SizeBytes": [{"numeric": ["=", 3.0e2]}]}}).matches_raw(raw)
    assert check(
        pattern({"dynamodb": {"SizeBytes": [{"numeric": ["=", 300.0]}]}}), raw_record(size=300)
    )


def test_exact_number_literals_still_compare_as_written() -> None:
    # The Lambda guide: "300, 300.0, and 3.0e2 are not considered equal" for exact values.
    raw = raw_record()
    raw["dynamodb"]["SizeBytes"] = 300.0
    assert not pattern({"dynamodb": {"SizeBytes": [300]}}).matches_raw(raw)


def test_anything_but_numbers_compare_as_numbers() -> None:
    flt = pattern({"dynamodb": {"SizeBytes": [{"anything-but": [300, 400]}]}})
    raw = raw_record()
    raw["dynamodb"]["SizeBytes"] = 300.0
    assert not flt.matches_raw(raw)
    assert not check(flt, raw_record(size=300))
    assert check(flt, raw_record(size=301))


def test_numbers_are_compared_as_doubles_outside_n() -> None:
    # event-ruler's ComparableNumber: IEEE doubles, numbers a double cannot hold exactly are
    # not comparable in events and rejected in rules.
    raw = raw_record()
    raw["dynamodb"]["SizeBytes"] = 12345678901234567891
    assert not pattern({"dynamodb": {"SizeBytes": [{"numeric": [">", 0]}]}}).matches_raw(raw)
    with pytest.raises(ConfigurationError, match="cannot compare the number"):
        pattern({"dynamodb": {"SizeBytes": [{"numeric": [">", 12345678901234567891]}]}})
    # Under N (the documented extension) comparison stays exact, without that limit.
    big = item_record(big=12345678901234567891)
    assert check(new_image({"big": {"N": [{"numeric": [">", 12345678901234567890]}]}}), big)


# --- field names with dots, repeated keys ------------------------------------------------


def test_dotted_pattern_keys_are_nested_paths() -> None:
    raw = item_record()
    assert check(pattern({"dynamodb.NewImage.status.S": ["active"]}), raw)
    assert check(pattern({"dynamodb": {"NewImage.status": {"S": ["active"]}}}), raw)
    assert not check(pattern({"dynamodb.NewImage.status.S": ["idle"]}), raw)
    assert check(new_image({"address.M.city.S": ["Paris"]}), raw)


def test_attribute_names_with_dots() -> None:
    raw = item_record(**{"user.email": "a@example.com"})
    for attrs in (
        {"user.email": {"S": ["a@example.com"]}},
        {"user": {"email": {"S": ["a@example.com"]}}},
        {"user.email.S": ["a@example.com"]},
    ):
        assert check(new_image(attrs), raw), attrs
    assert not check(new_image({"user.email": {"S": ["b@example.com"]}}), raw)
    # An attribute and one whose dotted name continues it are two conditions (AND).
    both = item_record(**{"user": "x", "user.email": "a@example.com"})
    flt = new_image({"user": {"S": ["x"], "email": {"S": [{"prefix": "a@"}]}}})
    assert check(flt, both)
    assert not check(flt, raw)


def test_repeated_keys_merge_objects_and_the_last_rule_list_wins() -> None:
    texts = [
        '{"eventName": ["REMOVE"], "eventName": ["INSERT"]}',
        '{"dynamodb": {"SizeBytes": [1]}, "dynamodb": {"SizeBytes": [26]}}',
    ]
    for text in texts:
        assert check(RecordFilter.from_patterns([text]), raw_record()), text
    both = RecordFilter.from_patterns(
        ['{"dynamodb": {"SizeBytes": [26]}, "dynamodb": {"Keys": {"pk": {"S": ["nope"]}}}}']
    )
    assert not check(both, raw_record())  # merged: both conditions hold (AND)


def test_a_dotted_key_meeting_its_nested_form() -> None:
    merged = pattern({"dynamodb.SizeBytes": [1], "dynamodb": {"SizeBytes": [26]}})
    assert check(merged, raw_record())  # same path: the later rule list wins
    with pytest.raises(ConfigurationError, match="an object and rules"):
        pattern({"dynamodb.NewImage": [1], "dynamodb": {"NewImage": {"a": {"S": ["x"]}}}})
