"""Access denied: the error names the IAM action to grant and the resource to grant it on.

A transport that answers every call with AccessDeniedException, and each operation the
library makes (streams and state tables) called through the client: the message must name
``dynamodb:<Operation>`` and the stream ARN or table that a policy has to allow.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import pytest

from ddbstreams._errors import AccessDeniedError
from ddbstreams.client._backoff import RetryPolicy
from ddbstreams.client._errormap import CallTarget, iam_action, iam_resource
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._decode import RawParser
from ddbstreams.model._position import SHARD_TRIM_HORIZON
from ddbstreams.transport._seam import TransportError

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
SHARD = "shardId-00000001714521600000-0a1b2c3d"


class DenyingTransport:
    """Every call fails as IAM refusing it, the way botocore reports it."""

    endpoint_url = "https://dynamodb.eu-west-1.amazonaws.com"

    def __init__(self, code: str = "AccessDeniedException") -> None:
        self.code = code
        self.calls: list[str] = []

    def _deny(self, operation: str) -> TransportError:
        self.calls.append(operation)
        return TransportError(
            self.code,
            f"User: arn:aws:iam::123456789012:user/app is not authorized to perform: "
            f"dynamodb:{operation}",
            400,
        )

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        raise self._deny(operation)

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        raise self._deny("GetRecords")

    async def close(self) -> None:
        pass


Call = Callable[[StreamsClient], Awaitable[object]]

CALLS: list[tuple[str, Call, str]] = [
    ("DescribeStream", lambda c: c.describe_stream(ARN), ARN),
    (
        "GetShardIterator",
        lambda c: c.get_shard_iterator(ARN, SHARD, SHARD_TRIM_HORIZON),
        ARN,
    ),
    (
        "GetRecords",
        lambda c: c.get_records("iterator", shard_id=SHARD, parser=RawParser()),
        f"the ARN of the stream of shard {SHARD}",
    ),
    ("ListStreams", lambda c: c.list_streams("Orders"), "table/Orders"),
    ("DescribeTable", lambda c: c.tables.describe_table("state"), "table/state"),
    (
        "CreateTable",
        lambda c: c.tables.create_table(
            "state",
            attribute_definitions=[{"AttributeName": "k", "AttributeType": "S"}],
            key_schema=[{"AttributeName": "k", "KeyType": "HASH"}],
        ),
        "table/state",
    ),
    ("GetItem", lambda c: c.tables.get_item("state", {"k": {"S": "x"}}), "table/state"),
    ("PutItem", lambda c: c.tables.put_item("state", {"k": {"S": "x"}}), "table/state"),
    (
        "UpdateItem",
        lambda c: c.tables.update_item(
            "state", {"k": {"S": "x"}}, update_expression="SET a = :a", values={":a": {"N": "1"}}
        ),
        "table/state",
    ),
    ("DeleteItem", lambda c: c.tables.delete_item("state", {"k": {"S": "x"}}), "table/state"),
    ("Scan", lambda c: c.tables.scan("state"), "table/state"),
]


@pytest.mark.parametrize(("operation", "call", "resource"), CALLS, ids=[c[0] for c in CALLS])
@pytest.mark.parametrize("code", ["AccessDeniedException", "AccessDenied"])
async def test_access_denied_names_the_action_and_the_resource(
    operation: str, call: Call, resource: str, code: str
) -> None:
    transport = DenyingTransport(code)
    client = StreamsClient(transport=transport, retry=RetryPolicy(max_attempts=3))
    async with client:
        with pytest.raises(AccessDeniedError) as info:
            await call(client)
    text = str(info.value)
    assert f"IAM permission dynamodb:{operation} on " in text
    assert resource in text
    assert code in text  # the AWS code and message are kept
    assert "not authorized to perform" in text
    # Not retryable: one attempt, no backoff on a policy that will not change.
    assert transport.calls == [operation]


def test_iam_action_is_the_dynamodb_action_of_the_operation() -> None:
    assert iam_action("GetRecords") == "dynamodb:GetRecords"
    assert iam_action("DescribeStream") == "dynamodb:DescribeStream"


def test_iam_resource_of_each_kind_of_target() -> None:
    assert iam_resource(CallTarget(stream_arn=ARN, shard_id=SHARD)) == ARN
    assert iam_resource(CallTarget(table_name="leases")) == (
        "arn:aws:dynamodb:REGION:ACCOUNT:table/leases"
    )
    assert iam_resource(CallTarget(shard_id=SHARD)) == f"the ARN of the stream of shard {SHARD}"
    assert iam_resource(CallTarget()) is None


async def test_list_streams_of_every_table_names_resource_star() -> None:
    client = StreamsClient(transport=DenyingTransport())
    async with client:
        with pytest.raises(AccessDeniedError) as info:
            await client.list_streams()
    assert "IAM permission dynamodb:ListStreams (resource *)" in str(info.value)
