"""Stream ARN parsing and table name validation (pure)."""

from __future__ import annotations

import pytest

from ddbstreams._errors import ConfigurationError, InvalidStreamArnError
from ddbstreams.model._arn import EXPECTED_ARN_SHAPE, StreamArn, is_table_name, parse_stream_arn

AWS_ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2024-05-01T12:34:56.789"


def test_parses_aws_stream_arn() -> None:
    arn = parse_stream_arn(AWS_ARN)
    assert arn == StreamArn(
        partition="aws",
        region="eu-west-1",
        account_id="123456789012",
        table_name="Orders",
        stream_label="2024-05-01T12:34:56.789",
        text=AWS_ARN,
    )
    assert str(arn) == AWS_ARN


@pytest.mark.parametrize(
    ("text", "partition", "region"),
    [
        (
            "arn:aws-cn:dynamodb:cn-north-1:123456789012:table/t-1/stream/2024-01-01T00:00:00.000",
            "aws-cn",
            "cn-north-1",
        ),
        (
            "arn:aws-us-gov:dynamodb:us-gov-west-1:123456789012:table/abc/stream/x",
            "aws-us-gov",
            "us-gov-west-1",
        ),
        (
            "arn:aws-iso-b:dynamodb:us-isob-east-1:123456789012:table/abc/stream/x",
            "aws-iso-b",
            "us-isob-east-1",
        ),
        (
            "arn:aws:dynamodb:ddblocal:000000000000:table/tab1/stream/2026-11-29T06:39:04.227",
            "aws",
            "ddblocal",
        ),
    ],
)
def test_parses_partitions_and_dynamodb_local(text: str, partition: str, region: str) -> None:
    arn = parse_stream_arn(text)
    assert (arn.partition, arn.region) == (partition, region)
    assert arn.text == text


def test_table_names_with_dots_dashes_underscores() -> None:
    text = AWS_ARN.replace("Orders", "my.table-name_v2")
    assert parse_stream_arn(text).table_name == "my.table-name_v2"


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("", "empty"),
        (" " + AWS_ARN, "whitespace"),
        (AWS_ARN + "\n", "whitespace"),
        ("arn:aws:dynamodb", "six"),
        (AWS_ARN.replace("arn:aws:", "arn:foo:"), "partition 'foo'"),
        (AWS_ARN.replace("arn:aws:", "arn::"), "partition ''"),
        (AWS_ARN.replace(":dynamodb:", ":kinesis:"), "'kinesis'"),
        (AWS_ARN.replace("eu-west-1", ""), "region ''"),
        (AWS_ARN.replace("eu-west-1", "EU_WEST"), "region 'EU_WEST'"),
        (AWS_ARN.replace("123456789012", "12345"), "account id '12345'"),
        (AWS_ARN.replace("123456789012", "12345678901a"), "account id"),
        (AWS_ARN.replace("table/", "index/"), "does not start with 'table/'"),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/Orders", "table ARN"),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream", "'/stream/<label>'"),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/index/x", "'/stream/<label>'"),
        ("arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/", "label is empty"),
        (AWS_ARN + "/extra", "extra"),
        (AWS_ARN.replace("Orders", "ab"), "table name 'ab'"),
        (AWS_ARN.replace("Orders", "a" * 256), "table name"),
        (AWS_ARN.replace("Orders", "bad name"), "table name"),
        (AWS_ARN.replace("2024-05-01T12:34:56.789", "la bel"), "label"),
    ],
)
def test_rejects_malformed_arns(text: str, fragment: str) -> None:
    with pytest.raises(InvalidStreamArnError) as info:
        parse_stream_arn(text)
    message = str(info.value)
    assert fragment in message
    assert EXPECTED_ARN_SHAPE in message
    assert repr(text) in message


def test_invalid_arn_error_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError):
        parse_stream_arn("arn:nope")


def test_rejects_non_string() -> None:
    with pytest.raises(InvalidStreamArnError, match="must be a string"):
        parse_stream_arn(None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name", ["abc", "Orders", "my.table-name_v2", "a" * 255, "123", "a-b", "..."]
)
def test_valid_table_names(name: str) -> None:
    assert is_table_name(name)


@pytest.mark.parametrize(
    "name",
    ["", "ab", "a" * 256, "bad name", "table/x", "tåble", "a:b", "arn:aws:x", "abc\n"],
)
def test_invalid_table_names(name: str) -> None:
    assert not is_table_name(name)
