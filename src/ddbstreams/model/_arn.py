"""Stream ARNs and source table names: parsing and validation (pure).

A stream ARN has the shape
``arn:<partition>:dynamodb:<region>:<account>:table/<table name>/stream/<label>``. DynamoDB
Local uses the region ``ddblocal`` and the account ``000000000000``. Anything that starts
with ``arn:`` is an ARN or an error: it is never mistaken for a table name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ddbstreams._errors import InvalidStreamArnError

__all__ = ["EXPECTED_ARN_SHAPE", "StreamArn", "is_table_name", "parse_stream_arn"]

EXPECTED_ARN_SHAPE = (
    "arn:<partition>:dynamodb:<region>:<12-digit account id>:table/<table name>/stream/<label>"
)

_PARTITION = re.compile(r"^aws(-[a-z]+)*$")
# Lenient on purpose: new regions appear; DynamoDB Local says "ddblocal".
_REGION = re.compile(r"^[a-z][a-z0-9-]*[a-z0-9]$")
_ACCOUNT = re.compile(r"^\d{12}$")
_TABLE_NAME = re.compile(r"^[a-zA-Z0-9_.-]{3,255}$")
# Labels are ISO-8601 timestamps in practice; accept any token without separators.
_LABEL = re.compile(r"^[A-Za-z0-9:._+-]+$")


@dataclass(frozen=True, slots=True)
class StreamArn:
    """A parsed stream ARN; ``text`` is the ARN exactly as given."""

    partition: str
    region: str
    account_id: str
    table_name: str
    stream_label: str
    text: str

    def __str__(self) -> str:
        return self.text


def is_table_name(text: str) -> bool:
    """Whether ``text`` is a valid DynamoDB table name (3-255 of ``[a-zA-Z0-9_.-]``)."""
    return isinstance(text, str) and _TABLE_NAME.fullmatch(text) is not None


def _invalid(text: str, problem: str) -> InvalidStreamArnError:
    return InvalidStreamArnError(
        f"invalid stream ARN {text!r}: {problem}; expected {EXPECTED_ARN_SHAPE}"
    )


def parse_stream_arn(text: str) -> StreamArn:
    """Parse and validate a DynamoDB stream ARN.

    Raises :class:`InvalidStreamArnError` naming the first part that is wrong and showing
    the expected shape. A table ARN (no ``/stream/<label>``) is rejected with a hint.
    """
    if not isinstance(text, str):
        raise InvalidStreamArnError(f"a stream ARN must be a string, not {type(text).__name__}")
    if not text:
        raise _invalid(text, "it is empty")
    if text != text.strip():
        raise _invalid(text, "it has leading or trailing whitespace")
    parts = text.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        raise _invalid(text, "it does not have the six ':'-separated parts of an ARN")
    _, partition, service, region, account, resource = parts
    if _PARTITION.fullmatch(partition) is None:
        raise _invalid(text, f"unknown partition {partition!r} (aws, aws-cn, aws-us-gov, ...)")
    if service != "dynamodb":
        raise _invalid(text, f"service is {service!r}, not 'dynamodb'")
    if _REGION.fullmatch(region) is None:
        raise _invalid(text, f"region {region!r} is not a region name")
    if _ACCOUNT.fullmatch(account) is None:
        raise _invalid(text, f"account id {account!r} is not 12 digits")
    pieces = resource.split("/")
    if not pieces or pieces[0] != "table":
        raise _invalid(text, f"resource {resource!r} does not start with 'table/'")
    if len(pieces) == 2:
        raise _invalid(
            text,
            "this is a table ARN, not a stream ARN (pass the table name to read its latest "
            "stream, or the stream ARN)",
        )
    if len(pieces) < 4 or pieces[2] != "stream":
        raise _invalid(text, "the resource does not end with '/stream/<label>'")
    if len(pieces) > 4:
        raise _invalid(text, "the resource has extra '/'-separated parts after the label")
    table_name, label = pieces[1], pieces[3]
    if not is_table_name(table_name):
        raise _invalid(text, f"table name {table_name!r} is not 3-255 characters of [a-zA-Z0-9_.-]")
    if not label:
        raise _invalid(text, "the stream label is empty")
    if _LABEL.fullmatch(label) is None:
        raise _invalid(text, f"stream label {label!r} has unexpected characters")
    return StreamArn(
        partition=partition,
        region=region,
        account_id=account,
        table_name=table_name,
        stream_label=label,
        text=text,
    )
