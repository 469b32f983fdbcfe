"""StreamsClient over a scripted fake transport: retries, pagination, resolution, errors.

Also the pure parts of the aiobotocore transport: exception translation and the raw
GetRecords parser (driven with synthetic response dicts, no network).
"""

from __future__ import annotations

import asyncio
import os
import random
import zlib
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import aiohttp
import botocore.exceptions as bce
import botocore.session
import orjson
import pytest

from ddbstreams._errors import (
    AccessDeniedError,
    ConfigurationError,
    CredentialsError,
    DDBStreamsError,
    EndpointConnectionError,
    ExpiredIteratorError,
    InvalidPositionError,
    InvalidStreamArnError,
    ServiceError,
    ShardNotFoundError,
    StreamNotEnabledError,
    StreamNotFoundError,
    TableNotFoundError,
    ThrottledError,
    TrimmedDataError,
    UnexpectedResponseError,
    ValidationError,
)
from ddbstreams.client._backoff import RetryPolicy, backoff_cap, backoff_delay
from ddbstreams.client._streams import RetryNotice, StreamsClient
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._position import SHARD_LATEST, SHARD_TRIM_HORIZON, ShardStart
from ddbstreams.model._types import Shard
from ddbstreams.transport._aws import AwsTransport, RawGetRecordsParserFactory, to_transport_error
from ddbstreams.transport._seam import TransportError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
ENDPOINT = "http://fake.invalid:8000"

Reply = dict[str, Any] | bytes | TransportError | Callable[[Mapping[str, Any]], Any]


class FakeTransport:
    """Scripted transport: per operation, a queue of replies (dicts/bytes or errors).

    A reply may be a callable of the params (for pagination). When an operation's queue
    holds a single reply, it is reused forever (``forever``).
    """

    def __init__(self) -> None:
        self.endpoint_url = ENDPOINT
        self.scripts: dict[str, deque[Reply]] = {}
        self.forever: dict[str, Reply] = {}
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.closed = 0

    def script(self, operation: str, *replies: Reply) -> None:
        self.scripts.setdefault(operation, deque()).extend(replies)

    def always(self, operation: str, reply: Reply) -> None:
        self.forever[operation] = reply

    def ops(self) -> list[str]:
        return [op for op, _ in self.calls]

    async def _reply(self, operation: str, params: Mapping[str, Any]) -> Any:
        self.calls.append((operation, dict(params)))
        await asyncio.sleep(0)
        queue = self.scripts.get(operation)
        if queue:
            reply = queue.popleft()
        elif operation in self.forever:
            reply = self.forever[operation]
        else:
            raise AssertionError(f"unscripted call {operation} {dict(params)}")
        if isinstance(reply, TransportError):
            raise reply
        if callable(reply):
            reply = reply(params)
            if isinstance(reply, TransportError):
                raise reply
        return reply

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        reply = await self._reply(operation, params)
        assert isinstance(reply, dict)
        return reply

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        reply = await self._reply("GetRecords", params)
        assert isinstance(reply, bytes)
        return reply

    async def close(self) -> None:
        self.closed += 1


class FakeClock:
    """Records sleeps and advances virtual time; never waits."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_700_000_000.0 + self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def transport() -> FakeTransport:
    return FakeTransport()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client(transport: FakeTransport, clock: FakeClock) -> StreamsClient:
    return StreamsClient(transport=transport, clock=clock, rng=random.Random(7))


def err(code: str, message: str = "boom", status: int | None = 400) -> TransportError:
    return TransportError(code, message, status)


def shard(n: int, *, parent: int | None = None, end: str | None = None) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "ShardId": f"shardId-{1700000000000 + n:020d}-{n:08x}",
        "SequenceNumberRange": {"StartingSequenceNumber": f"{n:021d}"},
    }
    if parent is not None:
        raw["ParentShardId"] = f"shardId-{1700000000000 + parent:020d}-{parent:08x}"
    if end is not None:
        raw["SequenceNumberRange"]["EndingSequenceNumber"] = end
    return raw


def sid(n: int) -> str:
    return str(shard(n)["ShardId"])


def description(
    shards: list[dict[str, Any]], *, last: str | None = None, status: str = "ENABLED"
) -> dict[str, Any]:
    raw: dict[str, Any] = {
        "StreamArn": ARN,
        "StreamLabel": "2024-05-01T00:00:00.000",
        "StreamStatus": status,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
        "CreationRequestDateTime": 1714521600.5,
        "TableName": "Orders",
        "KeySchema": [
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        "Shards": shards,
    }
    if last is not None:
        raw["LastEvaluatedShardId"] = last
    return {"StreamDescription": raw}


# --------------------------------------------------------------------------- retries

RETRYABLE = [
    ("LimitExceededException", 400),
    ("ThrottlingException", 400),
    ("ProvisionedThroughputExceededException", 400),
    ("RequestLimitExceeded", 400),
    ("InternalServerError", 500),
    ("InternalFailure", 500),
    ("ServiceUnavailable", 503),
    ("UnknownBadGateway", 502),
    ("ChecksumError", 200),
    ("ConnectionError", None),
    ("Timeout", None),
]


@pytest.mark.parametrize(("code", "status"), RETRYABLE)
async def test_retries_retryable_codes_until_success(
    client: StreamsClient,
    transport: FakeTransport,
    clock: FakeClock,
    code: str,
    status: int | None,
) -> None:
    transport.script("DescribeStream", err(code, status=status), err(code, status=status))
    transport.script("DescribeStream", description([shard(1)]))
    page = await client.describe_stream_page(ARN)
    assert [s.shard_id for s in page.shards] == [sid(1)]
    assert transport.ops() == ["DescribeStream"] * 3
    assert len(clock.sleeps) == 2
    policy = RetryPolicy()
    for attempt, delay in enumerate(clock.sleeps, start=1):
        assert 0.0 <= delay <= backoff_cap(policy, attempt)


async def test_sleeps_follow_the_jittered_schedule_of_the_injected_rng(
    transport: FakeTransport, clock: FakeClock
) -> None:
    policy = RetryPolicy(max_attempts=6, base_delay=0.25, max_delay=1.0)
    client = StreamsClient(transport=transport, clock=clock, retry=policy, rng=random.Random(42))
    transport.script("GetShardIterator", *[err("ThrottlingException")] * 5, {"ShardIterator": "it"})
    assert await client.get_shard_iterator(ARN, sid(1), SHARD_TRIM_HORIZON) == "it"
    draws = random.Random(42)
    expected = [backoff_delay(policy, n, draws.random()) for n in range(1, 6)]
    assert clock.sleeps == pytest.approx(expected)
    assert max(clock.sleeps) <= policy.max_delay


async def test_gives_up_on_throttling_after_max_attempts(
    client: StreamsClient, transport: FakeTransport, clock: FakeClock
) -> None:
    transport.always("DescribeStream", err("LimitExceededException", "Rate exceeded"))
    with pytest.raises(ThrottledError) as info:
        await client.describe_stream(ARN)
    assert transport.ops() == ["DescribeStream"] * 8
    assert len(clock.sleeps) == 7
    message = str(info.value)
    assert ARN in message
    assert "LimitExceededException" in message
    assert "8 attempts" in message
    assert isinstance(info.value.__cause__, TransportError)


@pytest.mark.parametrize(
    ("code", "status"), [("InternalServerError", 500), ("Whatever", 503), ("ChecksumError", 200)]
)
async def test_gives_up_on_service_failures_with_service_error(
    transport: FakeTransport, clock: FakeClock, code: str, status: int
) -> None:
    client = StreamsClient(transport=transport, clock=clock, retry=RetryPolicy(max_attempts=4))
    transport.always("GetRecords", err(code, status=status))
    with pytest.raises(ServiceError) as info:
        await client.get_records("iter", shard_id=sid(3), parser=RawParser())
    assert transport.ops() == ["GetRecords"] * 4
    assert len(clock.sleeps) == 3
    assert sid(3) in str(info.value)
    assert code in str(info.value)


@pytest.mark.parametrize("code", ["ConnectionError", "Timeout"])
async def test_connection_failures_give_up_after_connect_max_attempts(
    client: StreamsClient, transport: FakeTransport, clock: FakeClock, code: str
) -> None:
    transport.always("DescribeTable", err(code, "Could not connect", None))
    with pytest.raises(EndpointConnectionError) as info:
        await client.resolve_stream("Orders")
    assert transport.ops() == ["DescribeTable"] * 3
    assert len(clock.sleeps) == 2
    assert ENDPOINT in str(info.value)
    assert code in str(info.value)


async def test_connection_attempts_are_counted_apart_from_throttling(
    client: StreamsClient, transport: FakeTransport, clock: FakeClock
) -> None:
    transport.script(
        "ListStreams",
        err("ThrottlingException"),
        err("ThrottlingException"),
        err("ThrottlingException"),
        err("ConnectionError", status=None),
        err("ConnectionError", status=None),
        {"Streams": []},
    )
    assert await client.list_streams() == []
    assert len(clock.sleeps) == 5


async def test_total_attempts_bound_mixed_failures(
    transport: FakeTransport, clock: FakeClock
) -> None:
    client = StreamsClient(
        transport=transport,
        clock=clock,
        retry=RetryPolicy(max_attempts=3, connect_max_attempts=3),
    )
    transport.script(
        "ListStreams",
        err("ConnectionError", status=None),
        err("ThrottlingException"),
        err("ThrottlingException"),
    )
    with pytest.raises(ThrottledError):
        await client.list_streams()
    assert len(transport.calls) == 3


NOT_RETRYABLE: list[tuple[str, str, str, type[DDBStreamsError], list[str]]] = [
    (
        "DescribeStream",
        "ResourceNotFoundException",
        f"Requested resource not found: Stream: {ARN} not found",
        StreamNotFoundError,
        [ARN],
    ),
    (
        "GetShardIterator",
        "ResourceNotFoundException",
        "Stream does not exist",
        StreamNotFoundError,
        [ARN],
    ),
    (
        "GetShardIterator",
        "ResourceNotFoundException",
        "Shard does not exist",
        ShardNotFoundError,
        [ARN, "shardId-"],
    ),
    ("GetShardIterator", "TrimmedDataAccessException", "trimmed", TrimmedDataError, [ARN]),
    ("GetShardIterator", "ValidationException", "bad", ValidationError, [ARN]),
    ("GetShardIterator", "AccessDeniedException", "no", AccessDeniedError, [ARN]),
    ("DescribeStream", "AccessDeniedException", "no", AccessDeniedError, [ARN]),
    ("DescribeStream", "UnrecognizedClientException", "bad token", CredentialsError, []),
    ("DescribeStream", "InvalidSignatureException", "sig", CredentialsError, []),
    ("DescribeStream", "MissingAuthenticationToken", "none", CredentialsError, []),
    ("DescribeStream", "ParamValidationError", "Limit", ValidationError, [ARN]),
    ("DescribeStream", "SomethingElseException", "odd", ServiceError, [ARN]),
]


@pytest.mark.parametrize(("operation", "code", "message", "expected", "names"), NOT_RETRYABLE)
async def test_non_retryable_codes_fail_at_once_with_mapped_errors(
    client: StreamsClient,
    transport: FakeTransport,
    clock: FakeClock,
    operation: str,
    code: str,
    message: str,
    expected: type[DDBStreamsError],
    names: list[str],
) -> None:
    transport.always(operation, err(code, message))
    call: Coroutine[Any, Any, object]
    if operation == "DescribeStream":
        call = client.describe_stream(ARN)
    else:
        call = client.get_shard_iterator(ARN, sid(1), SHARD_TRIM_HORIZON)
    with pytest.raises(expected) as info:
        await call
    assert type(info.value) is expected
    assert transport.ops() == [operation]
    assert clock.sleeps == []
    text = str(info.value)
    assert code in text
    for name in names:
        assert name in text
    cause = info.value.__cause__
    assert isinstance(cause, TransportError)
    assert cause.code == code


async def test_get_records_errors_name_the_shard(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("GetRecords", err("ExpiredIteratorException", "Iterator expired"))
    with pytest.raises(ExpiredIteratorError, match=sid(5)):
        await client.get_records("old", shard_id=sid(5), parser=RawParser())
    transport.script("GetRecords", err("TrimmedDataAccessException", "gone"))
    with pytest.raises(TrimmedDataError, match=sid(5)):
        await client.get_records("old", shard_id=sid(5), parser=RawParser())
    transport.script("GetRecords", err("ValidationException", "Invalid ShardIterator"))
    with pytest.raises(ValidationError, match="Invalid ShardIterator"):
        await client.get_records("bad", shard_id=sid(5), parser=RawParser())
    assert len(transport.calls) == 3


async def test_missing_credentials_message_says_how_to_provide_them(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.always("DescribeTable", err("NoCredentials", "Unable to locate credentials", None))
    with pytest.raises(CredentialsError) as info:
        await client.resolve_stream("Orders")
    text = str(info.value)
    assert "AWS_ACCESS_KEY_ID" in text
    assert "aws_access_key_id" in text
    assert "profile" in text
    assert len(transport.calls) == 1


@pytest.mark.parametrize(
    "start", [ShardStart("AT_SEQUENCE_NUMBER", "1" * 21), ShardStart("AFTER_SEQUENCE_NUMBER", "7")]
)
async def test_rejected_sequence_number_is_an_invalid_position(
    client: StreamsClient, transport: FakeTransport, start: ShardStart
) -> None:
    transport.script("GetShardIterator", err("ValidationException", "Invalid SequenceNumber"))
    with pytest.raises(InvalidPositionError) as info:
        await client.get_shard_iterator(ARN, sid(2), start)
    text = str(info.value)
    assert start.iterator_type in text
    assert str(start.sequence_number) in text
    assert sid(2) in text


async def test_transport_configuration_errors_pass_through(
    client: StreamsClient, transport: FakeTransport
) -> None:
    def raise_config(_: Mapping[str, Any]) -> Any:
        raise ConfigurationError("no region")

    transport.script("DescribeStream", raise_config)
    with pytest.raises(ConfigurationError, match="no region"):
        await client.describe_stream(ARN)


# --------------------------------------------------------------------------- pagination


async def test_describe_stream_follows_every_page(
    client: StreamsClient, transport: FakeTransport
) -> None:
    pages = {
        None: description([shard(1), shard(2)], last=sid(2)),
        sid(2): description([shard(3, parent=1), shard(4, parent=2)], last=sid(4)),
        # shard 2 is listed again, now closed: the later listing wins.
        sid(4): description([shard(2, end="9" * 21), shard(5, parent=3)], last=sid(5)),
        sid(5): description([shard(6, parent=4)], status="ENABLED"),
    }
    transport.always("DescribeStream", lambda params: pages[params.get("ExclusiveStartShardId")])
    result = await client.describe_stream(ARN)
    assert [s.shard_id for s in result.shards] == [sid(n) for n in (1, 2, 3, 4, 5, 6)]
    assert len(transport.calls) == 4
    for _, params in transport.calls:
        assert params["Limit"] == 100
        assert params["StreamArn"] == ARN
        assert "ShardFilter" not in params
    closed = next(s for s in result.shards if s.shard_id == sid(2))
    assert closed.ending_sequence_number == "9" * 21
    assert not closed.is_open
    child = next(s for s in result.shards if s.shard_id == sid(3))
    assert child == Shard(sid(3), sid(1), f"{3:021d}", None)
    assert result.last_evaluated_shard_id is None
    assert result.stream_arn == ARN
    assert result.table_name == "Orders"
    assert result.stream_status == "ENABLED"
    assert result.stream_view_type == "NEW_AND_OLD_IMAGES"
    assert result.key_schema == (("pk", "HASH"), ("sk", "RANGE"))
    assert result.creation_time == datetime(2024, 5, 1, 0, 0, 0, 500000, tzinfo=UTC)


async def test_describe_stream_page_passes_paging_arguments(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeStream", description([shard(9)], last=sid(9)))
    page = await client.describe_stream_page(ARN, exclusive_start_shard_id=sid(8), limit=1)
    assert page.last_evaluated_shard_id == sid(9)
    assert transport.calls == [
        ("DescribeStream", {"StreamArn": ARN, "ExclusiveStartShardId": sid(8), "Limit": 1})
    ]


async def test_describe_stream_stops_on_a_repeating_page(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.always("DescribeStream", description([shard(1)], last=sid(1)))
    with pytest.raises(ServiceError, match="repeated"):
        await client.describe_stream(ARN)
    assert len(transport.calls) == 2


async def test_child_shards_is_filtered_and_paginated(
    client: StreamsClient, transport: FakeTransport
) -> None:
    parent = sid(1)
    pages = {
        None: description([shard(2, parent=1)], last=sid(2)),
        sid(2): description([shard(3, parent=1)], last=sid(3)),
        sid(3): description([shard(4, parent=1)]),
    }
    transport.always("DescribeStream", lambda params: pages[params.get("ExclusiveStartShardId")])
    children = await client.child_shards(ARN, parent)
    assert [c.shard_id for c in children] == [sid(2), sid(3), sid(4)]
    assert all(c.parent_shard_id == parent for c in children)
    assert len(transport.calls) == 3
    for _, params in transport.calls:
        assert params["ShardFilter"] == {"Type": "CHILD_SHARDS", "ShardId": parent}


async def test_child_shards_of_missing_parent(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeStream", err("ResourceNotFoundException", "Shard does not exist"))
    with pytest.raises(ShardNotFoundError, match=sid(7)):
        await client.child_shards(ARN, sid(7))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1714521600, datetime(2024, 5, 1, tzinfo=UTC)),
        (1714521600.25, datetime(2024, 5, 1, 0, 0, 0, 250000, tzinfo=UTC)),
        (
            datetime(2024, 5, 1, 2, 0, tzinfo=timezone(timedelta(hours=2))),
            datetime(2024, 5, 1, tzinfo=UTC),
        ),
        (datetime(2024, 5, 1), datetime(2024, 5, 1, tzinfo=UTC)),
        ("1714521600", datetime(2024, 5, 1, tzinfo=UTC)),
        ("2024-05-01T00:00:00+00:00", datetime(2024, 5, 1, tzinfo=UTC)),
        (None, None),
    ],
)
async def test_creation_time_becomes_aware_utc(
    client: StreamsClient, transport: FakeTransport, value: Any, expected: datetime | None
) -> None:
    raw = description([])
    if value is None:
        del raw["StreamDescription"]["CreationRequestDateTime"]
    else:
        raw["StreamDescription"]["CreationRequestDateTime"] = value
    transport.script("DescribeStream", raw)
    page = await client.describe_stream_page(ARN)
    assert page.creation_time == expected
    if expected is not None:
        assert page.creation_time is not None
        assert page.creation_time.utcoffset() == timedelta(0)


async def test_malformed_describe_stream_is_a_service_error(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeStream", {"StreamDescription": {"Shards": []}})
    with pytest.raises(UnexpectedResponseError) as caught:
        await client.describe_stream_page(ARN)
    assert isinstance(caught.value, ServiceError)
    assert str(caught.value) == (
        f"unexpected response to DescribeStream for stream {ARN} from {ENDPOINT}, which may "
        "not be DynamoDB: it has no 'StreamArn'"
    )


async def test_list_streams_is_paginated(client: StreamsClient, transport: FakeTransport) -> None:
    def arn(n: int) -> str:
        return ARN.replace("Orders", f"T{n:03d}")

    def page(params: Mapping[str, Any]) -> dict[str, Any]:
        start = params.get("ExclusiveStartStreamArn")
        first = 0 if start is None else int(start.split("/")[1][1:]) + 1
        numbers = range(first, min(first + 2, 5))
        reply: dict[str, Any] = {
            "Streams": [
                {"StreamArn": arn(n), "TableName": f"T{n:03d}", "StreamLabel": "L"} for n in numbers
            ]
        }
        if numbers[-1] < 4:
            reply["LastEvaluatedStreamArn"] = arn(numbers[-1])
        return reply

    transport.always("ListStreams", page)
    streams = await client.list_streams()
    assert [s.table_name for s in streams] == [f"T{n:03d}" for n in range(5)]
    assert len(transport.calls) == 3
    assert "ExclusiveStartStreamArn" not in transport.calls[0][1]
    assert transport.calls[1][1]["ExclusiveStartStreamArn"] == arn(1)
    assert all("TableName" not in params for _, params in transport.calls)


# --------------------------------------------------------------------------- resolve_stream


def table(*, enabled: bool | None = True, arn: str | None = ARN) -> dict[str, Any]:
    raw: dict[str, Any] = {"TableName": "Orders", "TableStatus": "ACTIVE"}
    if enabled is not None:
        raw["StreamSpecification"] = {"StreamEnabled": enabled}
    if arn is not None:
        raw["LatestStreamArn"] = arn
    return {"Table": raw}


async def test_resolve_stream_returns_a_valid_arn_without_calls(
    client: StreamsClient, transport: FakeTransport
) -> None:
    assert await client.resolve_stream(ARN) == ARN
    assert transport.calls == []


@pytest.mark.parametrize(
    "text",
    [
        "arn:aws:dynamodb:us-east-1:123:table/Orders/stream/x",
        "arn:aws:dynamodb:us-east-1:123456789012:table/Orders",
        "arn:",
        "arn:Orders",
    ],
)
async def test_resolve_stream_rejects_malformed_arns(
    client: StreamsClient, transport: FakeTransport, text: str
) -> None:
    with pytest.raises(InvalidStreamArnError, match="invalid stream ARN"):
        await client.resolve_stream(text)
    assert transport.calls == []


@pytest.mark.parametrize("text", ["", "ab", "my table", "a" * 256, "table/x"])
async def test_resolve_stream_rejects_what_is_neither(
    client: StreamsClient, transport: FakeTransport, text: str
) -> None:
    with pytest.raises(InvalidStreamArnError, match="neither a stream ARN"):
        await client.resolve_stream(text)
    assert transport.calls == []


async def test_resolve_stream_by_table_name(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeTable", table())
    assert await client.resolve_stream("Orders") == ARN
    assert transport.calls == [("DescribeTable", {"TableName": "Orders"})]


@pytest.mark.parametrize(
    "reply",
    [
        table(enabled=False),  # disabled: LatestStreamArn stays behind
        table(enabled=None),
        table(enabled=None, arn=None),
        table(enabled=True, arn=None),
    ],
)
async def test_resolve_stream_table_without_enabled_stream(
    client: StreamsClient, transport: FakeTransport, reply: dict[str, Any]
) -> None:
    transport.script("DescribeTable", reply)
    with pytest.raises(StreamNotEnabledError, match="'Orders'"):
        await client.resolve_stream("Orders")


async def test_resolve_stream_unknown_table(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script(
        "DescribeTable",
        err("ResourceNotFoundException", "Cannot do operations on a non-existent table"),
    )
    with pytest.raises(TableNotFoundError) as info:
        await client.resolve_stream("Missing")
    assert "'Missing'" in str(info.value)
    assert "ResourceNotFoundException" in str(info.value)


async def test_resolve_stream_falls_back_to_list_streams_when_describe_table_is_denied(
    client: StreamsClient, transport: FakeTransport
) -> None:
    old = ARN.replace("2024-05-01T00:00:00.000", "2023-01-01T00:00:00.000")
    new = ARN.replace("2024-05-01T00:00:00.000", "2024-06-01T00:00:00.000")
    transport.script("DescribeTable", err("AccessDeniedException", "not allowed"))
    transport.script(
        "ListStreams",
        {
            "Streams": [{"StreamArn": old, "TableName": "Orders", "StreamLabel": old[-23:]}],
            "LastEvaluatedStreamArn": old,
        },
        {"Streams": [{"StreamArn": new, "TableName": "Orders", "StreamLabel": new[-23:]}]},
    )
    transport.script("DescribeStream", description([]))
    assert await client.resolve_stream("Orders") == new
    assert transport.ops() == ["DescribeTable", "ListStreams", "ListStreams", "DescribeStream"]
    assert transport.calls[1][1]["TableName"] == "Orders"
    assert transport.calls[3][1] == {"StreamArn": new, "Limit": 1}


async def test_resolve_stream_fallback_finds_a_disabled_stream(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeTable", err("AccessDeniedException", "not allowed"))
    transport.script(
        "ListStreams",
        {"Streams": [{"StreamArn": ARN, "TableName": "Orders", "StreamLabel": ARN[-23:]}]},
    )
    transport.script("DescribeStream", description([], status="DISABLED"))
    with pytest.raises(StreamNotEnabledError, match="DISABLED"):
        await client.resolve_stream("Orders")


async def test_resolve_stream_fallback_finds_nothing(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("DescribeTable", err("AccessDeniedException", "not allowed"))
    transport.script("ListStreams", {"Streams": []})
    with pytest.raises(StreamNotEnabledError, match="'Orders'"):
        await client.resolve_stream("Orders")


async def test_resolve_stream_both_denied(client: StreamsClient, transport: FakeTransport) -> None:
    transport.script("DescribeTable", err("AccessDeniedException", "no DescribeTable"))
    transport.script("ListStreams", err("AccessDeniedException", "no ListStreams"))
    with pytest.raises(AccessDeniedError) as info:
        await client.resolve_stream("Orders")
    text = str(info.value)
    assert "'Orders'" in text
    assert "no DescribeTable" in text
    assert "no ListStreams" in text
    assert "stream ARN" in text


# --------------------------------------------------------------------------- iterators, records


@pytest.mark.parametrize(
    ("start", "extra"),
    [
        (SHARD_TRIM_HORIZON, {}),
        (SHARD_LATEST, {}),
        (ShardStart("AT_SEQUENCE_NUMBER", "1" * 21), {"SequenceNumber": "1" * 21}),
        (ShardStart("AFTER_SEQUENCE_NUMBER", "2" * 21), {"SequenceNumber": "2" * 21}),
    ],
)
async def test_get_shard_iterator_parameters(
    client: StreamsClient, transport: FakeTransport, start: ShardStart, extra: dict[str, str]
) -> None:
    transport.script("GetShardIterator", {"ShardIterator": "iter-1"})
    assert await client.get_shard_iterator(ARN, sid(1), start) == "iter-1"
    assert transport.calls == [
        (
            "GetShardIterator",
            {
                "StreamArn": ARN,
                "ShardId": sid(1),
                "ShardIteratorType": start.iterator_type,
                **extra,
            },
        )
    ]


async def test_get_shard_iterator_without_iterator_is_a_service_error(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.script("GetShardIterator", {})
    with pytest.raises(ServiceError, match="no shard iterator"):
        await client.get_shard_iterator(ARN, sid(1), SHARD_LATEST)


def records_body(next_iterator: str | None) -> bytes:
    record = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1714521600.0,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}, "n": {"N": "12"}},
            "SequenceNumber": "100000000000000000001",
            "SizeBytes": 12,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    body: dict[str, Any] = {"Records": [record]}
    if next_iterator is not None:
        body["NextShardIterator"] = next_iterator
    return orjson.dumps(body)


async def test_get_records_decodes_the_raw_body(
    client: StreamsClient, transport: FakeTransport, clock: FakeClock
) -> None:
    transport.script(
        "GetRecords", err("ProvisionedThroughputExceededException"), records_body("next-it")
    )
    page = await client.get_records("it-0", shard_id=sid(1), parser=DefaultParser(), limit=50)
    assert transport.calls[-1] == ("GetRecords", {"ShardIterator": "it-0", "Limit": 50})
    assert len(clock.sleeps) == 1
    assert page.next_shard_iterator == "next-it"
    assert page.last_sequence_number == "100000000000000000001"
    [record] = page.records
    assert record.new_image == {"pk": "a", "n": 12}
    assert record.shard_id == sid(1)

    transport.script("GetRecords", records_body(None))
    raw_page = await client.get_records("it-1", shard_id=sid(1), parser=RawParser())
    assert transport.calls[-1] == ("GetRecords", {"ShardIterator": "it-1"})
    assert raw_page.next_shard_iterator is None
    assert raw_page.records[0].new_image == {"pk": {"S": "a"}, "n": {"N": "12"}}


# --------------------------------------------------------------------------- lifecycle


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint_url": "http://localhost:8000"},
        {"region_name": "us-east-1"},
        {"aws_access_key_id": "a", "aws_secret_access_key": "b"},
        {"profile_name": "dev"},
        {"connect_timeout": 1.0},
        {"read_timeout": 1.0},
        {"max_pool_connections": 8},
    ],
)
def test_transport_excludes_connection_arguments(
    transport: FakeTransport, kwargs: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError, match="transport"):
        StreamsClient(transport=transport, **kwargs)


async def test_close_is_idempotent_and_closes_the_transport(transport: FakeTransport) -> None:
    async with StreamsClient(transport=transport) as client:
        assert client.transport is transport
        assert client.endpoint_url == ENDPOINT
    assert transport.closed == 1
    await client.close()
    assert transport.closed == 1
    with pytest.raises(RuntimeError, match="closed"):
        await client.describe_stream(ARN)


async def test_concurrent_calls_share_the_client(
    client: StreamsClient, transport: FakeTransport
) -> None:
    transport.always("GetShardIterator", lambda p: {"ShardIterator": f"it-{p['ShardId']}"})
    results = await asyncio.gather(
        *(client.get_shard_iterator(ARN, sid(n), SHARD_LATEST) for n in range(10))
    )
    assert results == [f"it-{sid(n)}" for n in range(10)]


async def test_state_table_calls_share_the_retries_and_listeners(
    client: StreamsClient, transport: FakeTransport, clock: FakeClock
) -> None:
    notices: list[RetryNotice] = []
    heard: list[str] = []
    client.add_retry_listener(notices.append)
    client.add_response_listener(heard.append)
    key = {"pk": {"S": "a"}}
    transport.script("GetItem", err("ThrottlingException"), {"Item": key})
    assert await client.tables.get_item("State", key) == key
    assert [(n.operation, n.throttled) for n in notices] == [("GetItem", True)]
    assert len(clock.sleeps) == 1
    transport.script("DescribeStream", err("InternalServerError", status=500), description([]))
    await client.describe_stream(ARN)
    assert [n.operation for n in notices] == ["GetItem", "DescribeStream"]
    assert heard == ["GetItem", "DescribeStream"]
    transport.script("PutItem", err("ResourceNotFoundException"))
    with pytest.raises(TableNotFoundError, match="'State'"):
        await client.tables.put_item("State", key)
    transport.script("CreateTable", err("ResourceInUseException"))
    assert (
        await client.tables.create_table("State", attribute_definitions=[], key_schema=[]) is False
    )
    await client.close()
    with pytest.raises(RuntimeError, match="closed"):
        await client.tables.describe_table("State")


# --------------------------------------------------------------------------- aws transport, pure


@pytest.fixture
def no_aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for name in (
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ):
        monkeypatch.delenv(name, raising=False)
    empty = tmp_path / "empty"
    empty.write_text("")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(empty))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(empty))


@pytest.mark.usefixtures("no_aws_env")
def test_region_defaults_for_an_explicit_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    assert AwsTransport(endpoint_url="http://localhost:8000").region_name == "us-east-1"
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    assert AwsTransport(endpoint_url="http://localhost:8000").region_name == "eu-west-1"
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    assert AwsTransport().region_name == "eu-central-1"
    assert AwsTransport(region_name="ap-south-1").region_name == "ap-south-1"


@pytest.mark.usefixtures("no_aws_env")
def test_region_from_the_profile(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    config = tmp_path / "config"
    config.write_text("[profile dev]\nregion = sa-east-1\n")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    transport = AwsTransport(profile_name="dev")
    assert transport.region_name == "sa-east-1"
    assert transport.endpoint_url == "https://streams.dynamodb.sa-east-1.amazonaws.com"
    with pytest.raises(ConfigurationError, match="nope"):
        AwsTransport(profile_name="nope")


@pytest.mark.parametrize(
    "kwargs",
    [
        {"endpoint_url": "localhost:8000"},
        {"aws_access_key_id": "only-the-id"},
        {"connect_timeout": 0.0},
        {"max_pool_connections": 0},
    ],
)
def test_aws_transport_rejects_bad_arguments(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        AwsTransport(region_name="us-east-1", **kwargs)


def _client_error(code: str, message: str, status: int) -> bce.ClientError:
    return bce.ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "DescribeStream",
    )


@pytest.mark.parametrize(
    ("exc", "code", "status"),
    [
        (_client_error("LimitExceededException", "slow", 400), "LimitExceededException", 400),
        (_client_error("InternalServerError", "oops", 500), "InternalServerError", 500),
        (bce.EndpointConnectionError(endpoint_url="http://x:1"), "ConnectionError", None),
        (bce.ConnectionClosedError(endpoint_url="http://x:1"), "ConnectionError", None),
        (bce.ConnectTimeoutError(endpoint_url="http://x:1"), "ConnectionError", None),
        (bce.ReadTimeoutError(endpoint_url="http://x:1"), "Timeout", None),
        (aiohttp.ClientConnectionError("reset"), "ConnectionError", None),
        (aiohttp.ClientPayloadError("truncated"), "ConnectionError", None),
        (TimeoutError(), "Timeout", None),
        (ConnectionResetError("reset"), "ConnectionError", None),
        (bce.NoCredentialsError(), "NoCredentials", None),
        (bce.PartialCredentialsError(provider="env", cred_var="x"), "NoCredentials", None),
        (
            bce.ChecksumError(checksum_type="crc32", expected_checksum=1, actual_checksum=2),
            "ChecksumError",
            200,
        ),
        (bce.ParamValidationError(report="bad Limit"), "ParamValidationError", None),
    ],
)
def test_botocore_exceptions_become_transport_errors(
    exc: Exception, code: str, status: int | None
) -> None:
    error = to_transport_error(exc)
    assert error is not None
    assert (error.code, error.status) == (code, status)
    assert error.message


def test_foreign_exceptions_are_not_translated() -> None:
    assert to_transport_error(KeyError("x")) is None


def _output_shape(operation: str) -> Any:
    model = botocore.session.get_session().get_service_model("dynamodbstreams")
    return model.operation_model(operation).output_shape


def _response(
    operation: str, body: bytes, status: int = 200, crc: int | None = None
) -> dict[str, Any]:
    headers = {"x-amzn-requestid": "req-1", "content-type": "application/x-amz-json-1.0"}
    headers["x-amz-crc32"] = str(zlib.crc32(body) if crc is None else crc)
    return {
        "status_code": status,
        "headers": headers,
        "body": body,
        "context": {"operation_name": operation},
    }


class _CountingParser:
    def __init__(self) -> None:
        self.calls = 0

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        self.calls += 1
        return {"parsed": True}


async def test_raw_parser_returns_get_records_bytes_unparsed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    counting = _CountingParser()
    parser = RawGetRecordsParserFactory().create_parser("json")
    monkeypatch.setattr(parser, "_inner", counting)
    body = records_body("next")
    parsed = await parser.parse(_response("GetRecords", body), _output_shape("GetRecords"))
    assert parsed["RawBody"] == body
    assert type(parsed["RawBody"]) is bytes
    assert parsed["ResponseMetadata"]["RequestId"] == "req-1"
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert counting.calls == 0
    # Everything else goes to botocore's parser.
    await parser.parse(_response("DescribeStream", b"{}"), _output_shape("DescribeStream"))
    await parser.parse(_response("GetRecords", b"{}", status=400), _output_shape("GetRecords"))
    assert counting.calls == 2


async def test_raw_parser_delegates_errors_to_botocore() -> None:
    parser = RawGetRecordsParserFactory().create_parser("json")
    body = b'{"__type":"com.amazonaws#ExpiredIteratorException","message":"Iterator expired"}'
    parsed = await parser.parse(
        _response("GetRecords", body, status=400), _output_shape("GetRecords")
    )
    assert parsed["Error"]["Code"] == "ExpiredIteratorException"
    assert parsed["Error"]["Message"] == "Iterator expired"


async def test_raw_parser_still_parses_other_operations() -> None:
    parser = RawGetRecordsParserFactory().create_parser("json")
    body = orjson.dumps({"ShardIterator": "abc"})
    parsed = await parser.parse(
        _response("GetShardIterator", body), _output_shape("GetShardIterator")
    )
    assert parsed["ShardIterator"] == "abc"


@pytest.mark.parametrize("operation", ["GetRecords", "DescribeStream"])
async def test_raw_parser_checks_the_crc32_header(operation: str) -> None:
    parser = RawGetRecordsParserFactory().create_parser("json")
    body = records_body(None)
    with pytest.raises(bce.ChecksumError):
        await parser.parse(
            _response(operation, body, crc=zlib.crc32(body) ^ 1), _output_shape(operation)
        )


# --------------------------------------------------------------------------- issue 8


@pytest.mark.usefixtures("no_aws_env")
async def test_region_comes_from_the_stream_arn_when_none_is_configured() -> None:
    arn = "arn:aws:dynamodb:eu-west-3:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
    async with StreamsClient() as client:
        assert await client.resolve_stream(arn) == arn
        assert client.endpoint_url == "https://streams.dynamodb.eu-west-3.amazonaws.com"
    # A table name names no region: the error comes with the first call that needs one.
    async with StreamsClient() as client:
        with pytest.raises(ConfigurationError, match="no AWS region configured"):
            await client.resolve_stream("Orders")


@pytest.mark.usefixtures("no_aws_env")
async def test_a_configured_region_wins_over_the_arn(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DEFAULT_REGION", "ap-south-1")
    arn = "arn:aws:dynamodb:eu-west-3:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
    async with StreamsClient() as client:
        await client.resolve_stream(arn)
        assert client.endpoint_url == "https://streams.dynamodb.ap-south-1.amazonaws.com"


@pytest.mark.parametrize(
    "endpoint_url", ["http://127.0.0.1:99999", "http://:8000", "http://[::1", "https://"]
)
def test_aws_transport_rejects_unusable_endpoint_urls(endpoint_url: str) -> None:
    with pytest.raises(ConfigurationError, match="invalid endpoint URL"):
        AwsTransport(region_name="us-east-1", endpoint_url=endpoint_url)


async def test_response_listeners_hear_of_every_successful_call(
    client: StreamsClient, transport: FakeTransport
) -> None:
    heard: list[str] = []
    remove = client.add_response_listener(heard.append)
    transport.script("DescribeStream", err("ConnectionError", status=None), description([]))
    await client.describe_stream(ARN)
    transport.script("GetShardIterator", err("ValidationException"))
    with pytest.raises(ValidationError):
        await client.get_shard_iterator(ARN, sid(1), SHARD_LATEST)
    remove()
    transport.script("DescribeStream", description([]))
    await client.describe_stream(ARN)
    assert heard == ["DescribeStream"]


class _FixedResponses:
    """A loopback HTTP server answering every request with one fixed 200 response."""

    def __init__(self, body: bytes, content_type: str) -> None:
        import http.server
        import threading

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length", 0)))
                self.send_response(200)
                self.send_header("content-type", content_type)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint_url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


JSON_TYPE = "application/x-amz-json-1.0"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b"[]", JSON_TYPE),
        (b'"text"', JSON_TYPE),
        (b'{"StreamDescription": []}', JSON_TYPE),
        (b'{"StreamDescription": {"Shards": "x"}, "Table": 7}', JSON_TYPE),
        (b"<html><body><h1>Proxy login</h1></body></html>", "text/html"),
    ],
    ids=["list", "string", "wrong-member", "wrong-nested", "html"],
)
@pytest.mark.parametrize(
    ("stream", "operation"), [(ARN, "DescribeStream"), ("Orders", "DescribeTable")]
)
def test_unexpected_responses_are_typed_errors_naming_the_operation(
    monkeypatch: pytest.MonkeyPatch,
    body: bytes,
    content_type: str,
    stream: str,
    operation: str,
) -> None:
    import ddbstreams

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    server = _FixedResponses(body, content_type)
    try:
        with pytest.raises(UnexpectedResponseError) as caught:
            list(ddbstreams.read(stream, endpoint_url=server.endpoint_url, region_name="us-east-1"))
    finally:
        server.close()
    message = str(caught.value)
    assert isinstance(caught.value, ServiceError)
    assert f"unexpected response to {operation}" in message
    assert server.endpoint_url in message
    assert "KeyError" not in message
    assert "AttributeError" not in message


HAS_PROC = os.path.isdir("/proc")


def _running(pid: int) -> bool:
    """Whether process ``pid`` exists and is not a zombie (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.usefixtures("no_aws_env")
async def test_credential_resolution_is_bounded_in_time(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pid_file = tmp_path / "pid"
    config = tmp_path / "config"
    config.write_text(
        "[profile slow]\n"
        f"credential_process = sh -c 'echo $$ > {pid_file}; exec sleep 60'\n"
        "region = us-east-1\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(config))
    loop = asyncio.get_running_loop()
    started = loop.time()
    async with StreamsClient(
        profile_name="slow", endpoint_url="http://127.0.0.1:9", credentials_timeout=0.5
    ) as client:
        with pytest.raises(CredentialsError) as caught:
            await client.describe_stream(ARN)
    assert loop.time() - started < 10
    message = str(caught.value)
    assert "credential_process" in message
    assert "'slow'" in message
    assert "sleep 60" in message
    assert "0.5 s" in message
    if HAS_PROC:
        pid = int(pid_file.read_text())
        deadline = loop.time() + 5
        while _running(pid):  # killed, not left to run on by itself
            assert loop.time() < deadline, f"credential_process {pid} still runs"
            await asyncio.sleep(0.05)


def test_credentials_timeout_is_a_connection_argument(transport: FakeTransport) -> None:
    with pytest.raises(ConfigurationError, match="credentials_timeout"):
        StreamsClient(transport=transport, credentials_timeout=1.0)
    with pytest.raises(ConfigurationError, match="positive"):
        AwsTransport(region_name="us-east-1", credentials_timeout=0.0)


# --------------------------------------------------------------------------- checkpoint JSON


def test_checkpoint_from_json_accepts_the_dict_and_its_json_text() -> None:
    from ddbstreams._errors import CheckpointError
    from ddbstreams.model._position import Checkpoint

    checkpoint = Checkpoint(
        ARN,
        {sid(1): "000000000000000000042"},
        frozenset({sid(0)}),
        {sid(2): SHARD_TRIM_HORIZON},
    )
    document = checkpoint.to_json()
    text = orjson.dumps(document).decode()
    assert Checkpoint.from_json(document) == checkpoint
    assert Checkpoint.from_json(text) == checkpoint
    assert Checkpoint.from_json(text.encode()) == checkpoint
    assert Checkpoint.from_json(bytearray(text.encode())) == checkpoint
    for bad in ("{not json", b"\xff\xfe", "[]", '"text"'):
        with pytest.raises(CheckpointError, match="corrupt checkpoint"):
            Checkpoint.from_json(bad)
