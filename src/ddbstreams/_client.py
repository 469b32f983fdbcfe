"""StreamsClient: the one place that talks to DynamoDB Streams.

It sends requests through a :class:`~ddbstreams._transport.Transport` (aiobotocore by
default, or the stream simulator), retries retryable failures with capped exponential
backoff and full jitter (waiting through an injectable clock), follows pagination, and maps
every :class:`~ddbstreams._transport.TransportError` to the library's exception tree in one
function, :func:`map_transport_error`.

When no region is configured, the region of the first stream ARN the client is asked about
is used (an ARN names its region); a source table name names none.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar, cast

from ddbstreams._arn import EXPECTED_ARN_SHAPE, is_table_name, parse_stream_arn
from ddbstreams._backoff import (
    CONNECTION_CODES,
    CREDENTIALS_CODES,
    THROTTLING_CODES,
    RetryPolicy,
    backoff_delay,
    classify,
)
from ddbstreams._clock import Clock, SystemClock
from ddbstreams._decode import parse_get_records_body
from ddbstreams._errors import (
    AccessDeniedError,
    ConditionFailedError,
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
from ddbstreams._model import RecordsPage, Shard, StreamDescription, StreamStatus, StreamSummary
from ddbstreams._parser import Parser
from ddbstreams._position import ShardStart
from ddbstreams._transport import Transport, TransportError

__all__ = [
    "DESCRIBE_STREAM_PAGE_LIMIT",
    "ResponseListener",
    "RetryListener",
    "RetryNotice",
    "StreamsClient",
    "map_transport_error",
]

T = TypeVar("T")
R = TypeVar("R")

log = logging.getLogger("ddbstreams.client")

DESCRIBE_STREAM_PAGE_LIMIT: Final = 100
"""The most shards DescribeStream returns per page."""
_LIST_STREAMS_PAGE_LIMIT: Final = 100

_DEFAULT_CONNECT_TIMEOUT: Final = 5.0
_DEFAULT_READ_TIMEOUT: Final = 30.0
_DEFAULT_MAX_POOL_CONNECTIONS: Final = 64
_DEFAULT_CREDENTIALS_TIMEOUT: Final = 60.0

_VALIDATION_CODES: Final = frozenset(
    {
        "ValidationException",
        "ParamValidationError",
        "InvalidArgumentException",
        "InvalidParameterValueException",
        "SerializationException",
    }
)
_ACCESS_DENIED_CODES: Final = frozenset({"AccessDeniedException", "AccessDenied"})
# DynamoDB operations on a state table (checkpoints, leases): "not found" means the table.
_TABLE_OPERATIONS: Final = frozenset(
    {"DescribeTable", "CreateTable", "GetItem", "PutItem", "DeleteItem"}
)

_CREDENTIALS_HELP: Final = (
    "pass aws_access_key_id and aws_secret_access_key, set the AWS_ACCESS_KEY_ID and "
    "AWS_SECRET_ACCESS_KEY environment variables, or configure a profile (AWS_PROFILE, "
    "~/.aws/credentials); DynamoDB Local accepts any non-empty keys"
)


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A failed call about to be retried: what failed, why, and how long the client waits.

    ``throttled`` tells throttling (LimitExceeded/Throttling) apart from 5xx and connection
    failures. Given to the listeners of :meth:`StreamsClient.add_retry_listener`.
    """

    operation: str
    code: str
    attempt: int
    delay: float
    throttled: bool
    stream_arn: str | None
    shard_id: str | None


RetryListener = Callable[[RetryNotice], None]

ResponseListener = Callable[[str], None]
"""Called with the operation name after each call that got a successful response."""


@dataclass(frozen=True, slots=True)
class _Target:
    """What a call was about, for error messages."""

    stream_arn: str | None = None
    shard_id: str | None = None
    table_name: str | None = None
    start: ShardStart | None = None

    def describe(self) -> str:
        where = self._where()
        start = self.start
        if start is not None and start.sequence_number is not None:
            return f"{where} at {start.iterator_type} {start.sequence_number}"
        return where

    def _where(self) -> str:
        if self.table_name is not None:
            return f"table {self.table_name!r}"
        if self.shard_id is not None and self.stream_arn is not None:
            return f"shard {self.shard_id} of stream {self.stream_arn}"
        if self.shard_id is not None:
            return f"shard {self.shard_id}"
        if self.stream_arn is not None:
            return f"stream {self.stream_arn}"
        return "the service"


def map_transport_error(
    operation: str,
    error: TransportError,
    target: _Target,
    *,
    endpoint: str | None = None,
    attempts: int = 1,
) -> DDBStreamsError:
    """The library exception for ``error`` raised by ``operation`` about ``target``.

    The single place where AWS error codes become ddbstreams exceptions. Messages name the
    resource (table, stream ARN, shard id) and end with the AWS code and message.
    ``attempts`` is how many attempts were made (retryable codes reach here only once the
    retries are spent).
    """
    code = error.code
    detail = f"({code}: {error.message})"
    what = target.describe()
    tries = f"after {attempts} attempt{'s' if attempts != 1 else ''}"

    if code == "ConditionalCheckFailedException":
        return ConditionFailedError(f"{operation} on {what}: the condition did not hold {detail}")
    if code == "ResourceNotFoundException":
        if operation in _TABLE_OPERATIONS or (
            operation == "ListStreams" and target.table_name is not None
        ):
            return TableNotFoundError(f"table {target.table_name!r} not found {detail}")
        if target.shard_id is not None and "shard" in error.message.lower():
            return ShardNotFoundError(f"{what} not found; it may have been trimmed {detail}")
        if target.stream_arn is not None:
            return StreamNotFoundError(f"stream not found: {target.stream_arn} {detail}")
        return StreamNotFoundError(f"the stream of {what} was not found {detail}")
    if code == "ExpiredIteratorException":
        return ExpiredIteratorError(
            f"the shard iterator of {what} expired (iterators last 15 minutes) {detail}"
        )
    if code == "TrimmedDataAccessException":
        return TrimmedDataError(
            f"records requested from {what} are older than the stream's 24-hour retention "
            f"and were trimmed {detail}"
        )
    if code in _VALIDATION_CODES:
        start = target.start
        if (
            operation == "GetShardIterator"
            and start is not None
            and start.sequence_number is not None
        ):
            return InvalidPositionError(f"{what}: not a valid position {detail}")
        return ValidationError(f"{operation} for {what} was rejected as invalid {detail}")
    if code in _ACCESS_DENIED_CODES:
        return AccessDeniedError(f"access denied: {operation} on {what} {detail}")
    if code == "NoCredentials":
        return CredentialsError(f"no usable AWS credentials found {detail}: {_CREDENTIALS_HELP}")
    if code == "CredentialsTimeout":
        return CredentialsError(f"no AWS credentials: {error.message}")
    if code == "ResponseParserError":
        where = endpoint if endpoint is not None else "the endpoint"
        return UnexpectedResponseError(
            f"unexpected response to {operation} for {what} from {where}, which may not be "
            f"DynamoDB: {error.message}"
        )
    if code in CREDENTIALS_CODES:
        return CredentialsError(
            f"the service rejected the AWS credentials when calling {operation} {detail}: "
            f"check the access key, secret key and session token, or {_CREDENTIALS_HELP}"
        )
    if code in THROTTLING_CODES:
        return ThrottledError(f"{operation} on {what} was still throttled {tries} {detail}")
    if code in CONNECTION_CODES:
        where = endpoint if endpoint is not None else "the endpoint"
        if code == "Timeout":
            return EndpointConnectionError(f"no response from {where} {tries} {detail}")
        return EndpointConnectionError(f"cannot connect to {where} {tries} {detail}")
    return ServiceError(f"{operation} on {what} failed {tries} {detail}")


def _to_datetime(value: Any) -> datetime | None:
    """A timezone-aware UTC datetime from botocore's datetime or the wire's epoch seconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(float(value), tz=UTC)
    if isinstance(value, str):
        try:
            return datetime.fromtimestamp(float(value), tz=UTC)
        except ValueError:
            return _to_datetime(datetime.fromisoformat(value))
    raise ValueError(f"unexpected timestamp {value!r}")


def _to_shard(raw: dict[str, Any]) -> Shard:
    sequence_range = raw.get("SequenceNumberRange") or {}
    return Shard(
        shard_id=raw["ShardId"],
        parent_shard_id=raw.get("ParentShardId"),
        starting_sequence_number=sequence_range.get("StartingSequenceNumber"),
        ending_sequence_number=sequence_range.get("EndingSequenceNumber"),
    )


def _to_description(response: dict[str, Any]) -> StreamDescription:
    raw = response["StreamDescription"]
    return StreamDescription(
        stream_arn=raw["StreamArn"],
        stream_label=raw.get("StreamLabel", ""),
        stream_status=cast(StreamStatus, raw.get("StreamStatus", "ENABLED")),
        stream_view_type=raw.get("StreamViewType", ""),
        table_name=raw.get("TableName", ""),
        creation_time=_to_datetime(raw.get("CreationRequestDateTime")),
        key_schema=tuple(
            (key["AttributeName"], key["KeyType"]) for key in raw.get("KeySchema") or ()
        ),
        shards=tuple(_to_shard(shard) for shard in raw.get("Shards") or ()),
        last_evaluated_shard_id=raw.get("LastEvaluatedShardId"),
    )


class StreamsClient:
    """Async client of the DynamoDB Streams API with retries, pagination and error mapping.

    Without ``transport`` it builds an aiobotocore transport from the connection arguments
    (endpoint URL, region, credentials, profile; ``None`` means the usual AWS environment,
    config files and profile). With ``transport`` the connection arguments must be left
    unset (:class:`ConfigurationError` otherwise), and the client owns the transport from
    then on: :meth:`close` closes it. Durations (``connect_timeout``, ``read_timeout``,
    ``credentials_timeout``: how long resolving credentials may take) are seconds.

    Retryable failures (throttling, 5xx, connection errors, timeouts) are retried according
    to ``retry`` (a :class:`RetryPolicy`), sleeping through ``clock`` with jitter drawn from
    ``rng``. Every error raised is a :class:`~ddbstreams.DDBStreamsError` subclass; the AWS
    error is chained as ``__cause__``. Calls are safe to make concurrently; cancelling one
    cancels its request or its backoff sleep.
    """

    def __init__(
        self,
        *,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        aws_access_key_id: str | None = None,
        aws_secret_access_key: str | None = None,
        aws_session_token: str | None = None,
        profile_name: str | None = None,
        transport: Transport | None = None,
        retry: RetryPolicy | None = None,
        clock: Clock | None = None,
        connect_timeout: float = _DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = _DEFAULT_READ_TIMEOUT,
        max_pool_connections: int = _DEFAULT_MAX_POOL_CONNECTIONS,
        rng: random.Random | None = None,
        credentials_timeout: float = _DEFAULT_CREDENTIALS_TIMEOUT,
    ) -> None:
        if transport is None:
            from ddbstreams._aws import AwsTransport

            transport = AwsTransport(
                endpoint_url=endpoint_url,
                region_name=region_name,
                aws_access_key_id=aws_access_key_id,
                aws_secret_access_key=aws_secret_access_key,
                aws_session_token=aws_session_token,
                profile_name=profile_name,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
                max_pool_connections=max_pool_connections,
                credentials_timeout=credentials_timeout,
            )
        else:
            given = {
                "endpoint_url": endpoint_url,
                "region_name": region_name,
                "aws_access_key_id": aws_access_key_id,
                "aws_secret_access_key": aws_secret_access_key,
                "aws_session_token": aws_session_token,
                "profile_name": profile_name,
            }
            conflicting = [name for name, value in given.items() if value is not None]
            if connect_timeout != _DEFAULT_CONNECT_TIMEOUT:
                conflicting.append("connect_timeout")
            if read_timeout != _DEFAULT_READ_TIMEOUT:
                conflicting.append("read_timeout")
            if max_pool_connections != _DEFAULT_MAX_POOL_CONNECTIONS:
                conflicting.append("max_pool_connections")
            if credentials_timeout != _DEFAULT_CREDENTIALS_TIMEOUT:
                conflicting.append("credentials_timeout")
            if conflicting:
                raise ConfigurationError(
                    "pass either transport= or connection arguments, not both "
                    f"(got transport and {', '.join(conflicting)})"
                )
        self._transport: Transport = transport
        self._retry = retry if retry is not None else RetryPolicy()
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = rng if rng is not None else random.Random()
        self._closed = False
        self._retry_listeners: list[RetryListener] = []
        self._response_listeners: list[ResponseListener] = []
        # Only a transport that knows no region yet can take the one of a stream ARN.
        self._needs_region = getattr(transport, "region_name", "") is None

    def add_retry_listener(self, listener: RetryListener) -> Callable[[], None]:
        """Call ``listener`` before every retry sleep; returns a function that removes it.

        Listeners run on the event loop, synchronously: keep them short. An exception in a
        listener is logged and otherwise ignored.
        """
        self._retry_listeners.append(listener)

        def remove() -> None:
            if listener in self._retry_listeners:
                self._retry_listeners.remove(listener)

        return remove

    def add_response_listener(self, listener: ResponseListener) -> Callable[[], None]:
        """Call ``listener(operation)`` after every call that got a successful response
        (retried or not); returns a function that removes it.

        With :meth:`add_retry_listener` it tells when the service became reachable again
        after failures. Listeners run on the event loop, synchronously: keep them short.
        An exception in a listener is logged and otherwise ignored.
        """
        self._response_listeners.append(listener)

        def remove() -> None:
            if listener in self._response_listeners:
                self._response_listeners.remove(listener)

        return remove

    def _adopt_region(self, stream_arn: str) -> None:
        adopt = getattr(self._transport, "adopt_region", None)
        try:
            region = parse_stream_arn(stream_arn).region
        except InvalidStreamArnError:
            return  # the call itself reports the ARN
        if adopt is not None:
            adopt(region)
        self._needs_region = False

    @property
    def transport(self) -> Transport:
        """The transport requests go through."""
        return self._transport

    @property
    def clock(self) -> Clock:
        """The clock the client waits through (state-table stores share it)."""
        return self._clock

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._retry

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint in use, when the transport knows it (for messages and display)."""
        value = getattr(self._transport, "endpoint_url", None)
        return value if isinstance(value, str) else None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Close the transport (and its connections). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._transport.close()

    # ------------------------------------------------------------------ retry core

    async def _retrying(
        self, operation: str, attempt: Callable[[], Awaitable[R]], target: _Target
    ) -> R:
        """Run ``attempt`` until it succeeds, a failure is not retryable, or retries run out."""
        if self._closed:
            raise RuntimeError("StreamsClient is closed")
        if self._needs_region and target.stream_arn is not None:
            self._adopt_region(target.stream_arn)
        policy = self._retry
        attempts = 0
        connection_failures = 0
        while True:
            attempts += 1
            try:
                result = await attempt()
            except TransportError as error:
                decision = classify(error.code, error.status)
                if decision == "retry_connection":
                    connection_failures += 1
                    exhausted = connection_failures >= policy.connect_max_attempts
                else:
                    exhausted = attempts >= policy.max_attempts
                if decision == "fail" or exhausted:
                    raise map_transport_error(
                        operation,
                        error,
                        target,
                        endpoint=self.endpoint_url,
                        attempts=attempts,
                    ) from error
                delay = backoff_delay(policy, attempts, self._rng.random())
                if self._retry_listeners:
                    self._notify_retry(operation, error.code, attempts, delay, target)
                log.debug(
                    "%s on %s failed (%s), attempt %d; retrying in %.3fs",
                    operation,
                    target.describe(),
                    error.code,
                    attempts,
                    delay,
                )
                await self._clock.sleep(delay)
                continue
            if self._response_listeners:
                self._notify_response(operation)
            return result

    def _notify_response(self, operation: str) -> None:
        for listener in list(self._response_listeners):
            try:
                listener(operation)
            except Exception:
                log.exception("response listener %r failed", listener)

    def _notify_retry(
        self, operation: str, code: str, attempt: int, delay: float, target: _Target
    ) -> None:
        notice = RetryNotice(
            operation,
            code,
            attempt,
            delay,
            code in THROTTLING_CODES,
            target.stream_arn,
            target.shard_id,
        )
        for listener in list(self._retry_listeners):
            try:
                listener(notice)
            except Exception:
                log.exception("retry listener %r failed", listener)

    async def _call(
        self, operation: str, params: dict[str, Any], target: _Target
    ) -> dict[str, Any]:
        return await self._retrying(
            operation, lambda: self._transport.call(operation, params), target
        )

    def _malformed(self, operation: str, target: _Target, exc: Exception) -> DDBStreamsError:
        """The error for a response the transport parsed but whose content is unusable."""
        if isinstance(exc, KeyError):
            problem = f"it has no {exc.args[0]!r}" if exc.args else "a member is missing"
        else:
            problem = f"a member has the wrong type ({exc})"
        return map_transport_error(
            operation,
            TransportError("ResponseParserError", problem, 200),
            target,
            endpoint=self.endpoint_url,
        )

    # ------------------------------------------------------------------ streams

    async def resolve_stream(self, stream: str) -> str:
        """The stream ARN to read for ``stream``: a stream ARN, or a source table name.

        An ARN (anything starting with ``arn:``) is validated and returned as given
        (:class:`InvalidStreamArnError` if malformed). A table name is resolved to the
        table's latest stream with DescribeTable (:class:`TableNotFoundError`,
        :class:`StreamNotEnabledError` when the table has no enabled stream); if
        DescribeTable is denied, ListStreams for the table is used instead and the stream
        with the latest label is chosen.
        """
        if not isinstance(stream, str):
            raise InvalidStreamArnError(f"a stream must be a string, not {type(stream).__name__}")
        if stream.startswith("arn:"):
            arn = parse_stream_arn(stream)
            if self._needs_region:
                self._adopt_region(arn.text)
            return arn.text
        if not is_table_name(stream):
            raise InvalidStreamArnError(
                f"{stream!r} is neither a stream ARN ({EXPECTED_ARN_SHAPE}) nor a table name "
                "(3-255 characters of a-z, A-Z, 0-9, '_', '-' and '.')"
            )
        target = _Target(table_name=stream)
        try:
            response = await self._call("DescribeTable", {"TableName": stream}, target)
        except AccessDeniedError as denied:
            return await self._latest_stream_from_list(stream, denied)
        try:
            table = response["Table"]
            spec = table.get("StreamSpecification") or {}
            enabled = bool(spec.get("StreamEnabled"))
            latest = table.get("LatestStreamArn")
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._malformed("DescribeTable", target, exc) from exc
        if not enabled or not latest:
            raise StreamNotEnabledError(
                f"table {stream!r} has no stream enabled: enable DynamoDB Streams on it "
                "(StreamSpecification StreamEnabled=true) or pass a stream ARN"
            )
        return str(latest)

    async def _latest_stream_from_list(self, table_name: str, denied: AccessDeniedError) -> str:
        try:
            streams = await self.list_streams(table_name)
        except AccessDeniedError as exc:
            raise AccessDeniedError(
                f"cannot resolve table {table_name!r} to its stream: DescribeTable and "
                f"ListStreams were both denied; pass the stream ARN instead ({denied}; {exc})"
            ) from exc
        candidates = [s for s in streams if s.table_name == table_name]
        if not candidates:
            raise StreamNotEnabledError(
                f"no stream found for table {table_name!r}: the table has no stream or does "
                "not exist (DescribeTable was denied, so ListStreams was asked)"
            )
        # Labels are ISO-8601 creation timestamps, so the greatest label is the newest.
        latest = max(candidates, key=lambda s: s.stream_label)
        page = await self.describe_stream_page(latest.stream_arn, limit=1)
        if page.stream_status not in ("ENABLED", "ENABLING"):
            raise StreamNotEnabledError(
                f"table {table_name!r} has no stream enabled: its latest stream "
                f"{latest.stream_arn} is {page.stream_status}"
            )
        return latest.stream_arn

    async def describe_stream_page(
        self,
        stream_arn: str,
        *,
        exclusive_start_shard_id: str | None = None,
        limit: int | None = None,
        child_shards_of: str | None = None,
    ) -> StreamDescription:
        """One DescribeStream call: a page of shards, maybe filtered to a parent's children.

        ``last_evaluated_shard_id`` of the result is set when more pages follow.
        :class:`StreamNotFoundError` for an unknown stream.
        """
        params: dict[str, Any] = {"StreamArn": stream_arn}
        if exclusive_start_shard_id is not None:
            params["ExclusiveStartShardId"] = exclusive_start_shard_id
        if limit is not None:
            params["Limit"] = limit
        if child_shards_of is not None:
            params["ShardFilter"] = {"Type": "CHILD_SHARDS", "ShardId": child_shards_of}
        target = _Target(stream_arn=stream_arn, shard_id=child_shards_of)
        response = await self._call("DescribeStream", params, target)
        try:
            return _to_description(response)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._malformed("DescribeStream", target, exc) from exc

    async def _all_pages(
        self, stream_arn: str, child_shards_of: str | None
    ) -> tuple[StreamDescription, tuple[Shard, ...]]:
        shards: dict[str, Shard] = {}
        used_starts: set[str] = set()
        start: str | None = None
        while True:
            page = await self.describe_stream_page(
                stream_arn,
                exclusive_start_shard_id=start,
                limit=DESCRIBE_STREAM_PAGE_LIMIT,
                child_shards_of=child_shards_of,
            )
            for shard in page.shards:
                shards[shard.shard_id] = shard
            start = page.last_evaluated_shard_id
            if start is None:
                return page, tuple(shards.values())
            if start in used_starts:
                # A service that keeps handing back the same page would loop forever.
                raise ServiceError(
                    f"DescribeStream pagination of stream {stream_arn} repeated "
                    f"LastEvaluatedShardId {start}"
                )
            used_starts.add(start)

    async def describe_stream(self, stream_arn: str) -> StreamDescription:
        """The stream with every shard: all DescribeStream pages merged.

        Shards are deduplicated by id (the last page that lists a shard wins, since a shard
        may close while the pages are read); the stream's own fields come from the last
        page. :class:`StreamNotFoundError` for an unknown stream.
        """
        last_page, shards = await self._all_pages(stream_arn, None)
        return dataclasses.replace(last_page, shards=shards, last_evaluated_shard_id=None)

    async def child_shards(self, stream_arn: str, parent_shard_id: str) -> tuple[Shard, ...]:
        """The shards whose parent is ``parent_shard_id`` (DescribeStream CHILD_SHARDS)."""
        _, shards = await self._all_pages(stream_arn, parent_shard_id)
        return shards

    async def get_shard_iterator(self, stream_arn: str, shard_id: str, start: ShardStart) -> str:
        """A shard iterator for ``shard_id`` positioned at ``start``.

        :class:`ShardNotFoundError` for a shard that is not (or no longer) in the stream,
        :class:`StreamNotFoundError` for an unknown stream, :class:`TrimmedDataError` for a
        sequence number past retention, :class:`InvalidPositionError` for a sequence number
        the service rejects.
        """
        params: dict[str, Any] = {
            "StreamArn": stream_arn,
            "ShardId": shard_id,
            "ShardIteratorType": start.iterator_type,
        }
        if start.sequence_number is not None:
            params["SequenceNumber"] = start.sequence_number
        target = _Target(stream_arn=stream_arn, shard_id=shard_id, start=start)
        response = await self._call("GetShardIterator", params, target)
        iterator = response.get("ShardIterator")
        if not isinstance(iterator, str):
            raise ServiceError(
                f"GetShardIterator for {target.describe()} at {start.iterator_type} "
                "returned no shard iterator"
            )
        return iterator

    async def get_records(
        self,
        shard_iterator: str,
        *,
        shard_id: str,
        parser: Parser[T],
        limit: int | None = None,
    ) -> RecordsPage[T]:
        """One GetRecords call, decoded straight from the response bytes by ``parser``.

        :class:`ExpiredIteratorError` when the iterator is older than 15 minutes,
        :class:`TrimmedDataError` when it points past retention. A page with no records
        but a next iterator is normal; no next iterator means the shard has ended.
        """
        params: dict[str, Any] = {"ShardIterator": shard_iterator}
        if limit is not None:
            params["Limit"] = limit
        body = await self._retrying(
            "GetRecords",
            lambda: self._transport.get_records_body(params),
            _Target(shard_id=shard_id),
        )
        return parse_get_records_body(body, shard_id, parser)

    async def list_streams(self, table_name: str | None = None) -> list[StreamSummary]:
        """Every stream of the account and region, or of one source table (all pages)."""
        params: dict[str, Any] = {"Limit": _LIST_STREAMS_PAGE_LIMIT}
        if table_name is not None:
            params["TableName"] = table_name
        target = _Target(table_name=table_name)
        summaries: list[StreamSummary] = []
        seen: set[str] = set()
        while True:
            response = await self._call("ListStreams", dict(params), target)
            try:
                for raw in response.get("Streams") or ():
                    summaries.append(
                        StreamSummary(
                            stream_arn=raw["StreamArn"],
                            table_name=raw.get("TableName", ""),
                            stream_label=raw.get("StreamLabel", ""),
                        )
                    )
            except (KeyError, TypeError, AttributeError) as exc:
                raise self._malformed("ListStreams", target, exc) from exc
            next_start = response.get("LastEvaluatedStreamArn")
            if not next_start:
                return summaries
            if next_start in seen:
                raise ServiceError(
                    f"ListStreams pagination repeated LastEvaluatedStreamArn {next_start}"
                )
            seen.add(next_start)
            params["ExclusiveStartStreamArn"] = next_start

    # ------------------------------------------------------------------ state tables
    # DynamoDB item operations for the tables this library writes (checkpoints, leases).
    # Items and keys are DynamoDB wire attribute maps ({"name": {"S": "x"}}); these methods
    # are internal plumbing for the stores, which own the item layout.

    async def describe_table(self, table_name: str) -> dict[str, Any]:
        """DescribeTable: the ``Table`` description (wire shape).

        :class:`TableNotFoundError` when the table does not exist.
        """
        target = _Target(table_name=table_name)
        response = await self._call("DescribeTable", {"TableName": table_name}, target)
        table = response.get("Table")
        if not isinstance(table, dict):
            raise ServiceError(f"DescribeTable for {target.describe()} returned no table")
        return table

    async def create_table(
        self,
        table_name: str,
        *,
        attribute_definitions: Sequence[Mapping[str, str]],
        key_schema: Sequence[Mapping[str, str]],
        billing_mode: str = "PAY_PER_REQUEST",
    ) -> bool:
        """CreateTable; True if this call created it, False if it already existed.

        Returns as soon as the service accepted the request: the table may still be
        CREATING (poll :meth:`describe_table`). ResourceInUseException (the table exists
        or is being created, perhaps by a concurrent caller) is not an error here.
        """
        params: dict[str, Any] = {
            "TableName": table_name,
            "AttributeDefinitions": [dict(d) for d in attribute_definitions],
            "KeySchema": [dict(k) for k in key_schema],
            "BillingMode": billing_mode,
        }

        async def attempt() -> bool:
            try:
                await self._transport.call("CreateTable", params)
            except TransportError as error:
                if error.code == "ResourceInUseException":
                    return False
                raise
            return True

        return await self._retrying("CreateTable", attempt, _Target(table_name=table_name))

    async def get_item(
        self, table_name: str, key: Mapping[str, Any], *, consistent_read: bool = True
    ) -> dict[str, Any] | None:
        """GetItem (strongly consistent by default): the item's attribute map, or None."""
        params: dict[str, Any] = {
            "TableName": table_name,
            "Key": dict(key),
            "ConsistentRead": consistent_read,
        }
        response = await self._call("GetItem", params, _Target(table_name=table_name))
        item = response.get("Item")
        return item if isinstance(item, dict) else None

    async def put_item(
        self,
        table_name: str,
        item: Mapping[str, Any],
        *,
        condition_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """PutItem, optionally conditional.

        :class:`ConditionFailedError` when ``condition_expression`` does not hold. A retried
        attempt (after a lost response) may find the condition already spent by its own
        earlier attempt: callers that care read the item back to tell.
        """
        params = self._item_params(table_name, condition_expression, names, values)
        params["Item"] = dict(item)
        await self._call("PutItem", params, _Target(table_name=table_name))

    async def delete_item(
        self,
        table_name: str,
        key: Mapping[str, Any],
        *,
        condition_expression: str | None = None,
        names: Mapping[str, str] | None = None,
        values: Mapping[str, Any] | None = None,
    ) -> None:
        """DeleteItem, optionally conditional (:class:`ConditionFailedError`). Deleting an
        item that does not exist is not an error."""
        params = self._item_params(table_name, condition_expression, names, values)
        params["Key"] = dict(key)
        await self._call("DeleteItem", params, _Target(table_name=table_name))

    @staticmethod
    def _item_params(
        table_name: str,
        condition_expression: str | None,
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"TableName": table_name}
        if condition_expression is not None:
            params["ConditionExpression"] = condition_expression
        if names:
            params["ExpressionAttributeNames"] = dict(names)
        if values:
            params["ExpressionAttributeValues"] = dict(values)
        return params
