"""StreamsClient: the one place that talks to DynamoDB Streams.

Every call runs on one :class:`~ddbstreams.client._retrying.RetryExecutor`: it sends requests
through a :class:`~ddbstreams.transport._seam.Transport` (aiobotocore by default, or the stream
simulator), retries retryable failures with capped exponential backoff and full jitter
(waiting through an injectable clock), and maps every
:class:`~ddbstreams.transport._seam.TransportError` to the library's exception tree in one
function, :func:`map_transport_error` (:mod:`ddbstreams.client._errormap`). The streams operations
are methods of :class:`StreamsClient`, which also follows their pagination; the operations
on state tables (checkpoints, leases) are those of ``client.tables``, a
:class:`~ddbstreams.client._tables.StateTableClient` on the same executor.

When no region is configured, the region of the first stream ARN the client is asked about
is used (an ARN names its region); a source table name names none.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, Self, TypeVar, cast

from ddbstreams._clock import Clock, SystemClock
from ddbstreams._errors import (
    AccessDeniedError,
    ConfigurationError,
    InvalidStreamArnError,
    ServiceError,
    StreamNotEnabledError,
)
from ddbstreams.client._backoff import RetryPolicy
from ddbstreams.client._errormap import CallTarget, map_transport_error
from ddbstreams.client._retrying import ResponseListener, RetryExecutor, RetryListener, RetryNotice
from ddbstreams.client._tables import StateTableClient
from ddbstreams.model._arn import EXPECTED_ARN_SHAPE, is_table_name, parse_stream_arn
from ddbstreams.model._decode import parse_get_records_body
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import ShardStart
from ddbstreams.model._types import (
    RecordsPage,
    Shard,
    StreamDescription,
    StreamStatus,
    StreamSummary,
)
from ddbstreams.transport._connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CREDENTIALS_TIMEOUT,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
    ConnectionSettings,
)
from ddbstreams.transport._seam import Transport

__all__ = [
    "DESCRIBE_STREAM_PAGE_LIMIT",
    "ResponseListener",
    "RetryListener",
    "RetryNotice",
    "StreamsClient",
    "map_transport_error",
]

T = TypeVar("T")

DESCRIBE_STREAM_PAGE_LIMIT: Final = 100
"""The most shards DescribeStream returns per page."""
_LIST_STREAMS_PAGE_LIMIT: Final = 100


def _transport_for(settings: ConnectionSettings, transport: Transport | None) -> Transport:
    """``transport``, or an aiobotocore transport built from ``settings`` when it is None.

    :class:`ConfigurationError` when both a transport and connection settings are given.
    """
    if transport is None:
        from ddbstreams.transport._aws import AwsTransport  # aiobotocore only when it is needed

        return AwsTransport(**settings.as_arguments())
    conflicting = settings.given()
    if conflicting:
        raise ConfigurationError(
            "pass either transport= or connection arguments, not both "
            f"(got transport and {', '.join(conflicting)})"
        )
    return transport


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
    cancels its request or its backoff sleep. :attr:`tables` makes the calls on state
    tables (checkpoints, leases) with the same transport, retries and listeners.
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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
        rng: random.Random | None = None,
        credentials_timeout: float = DEFAULT_CREDENTIALS_TIMEOUT,
    ) -> None:
        settings = ConnectionSettings(
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
        self._executor = RetryExecutor(
            _transport_for(settings, transport),
            policy=retry if retry is not None else RetryPolicy(),
            clock=clock if clock is not None else SystemClock(),
            rng=rng if rng is not None else random.Random(),
        )
        self._tables = StateTableClient(self._executor)

    @property
    def tables(self) -> StateTableClient:
        """The operations on state tables, on this client's transport and retries."""
        return self._tables

    def add_retry_listener(self, listener: RetryListener) -> Callable[[], None]:
        """Call ``listener`` before every retry sleep; returns a function that removes it.

        Listeners run on the event loop, synchronously: keep them short. An exception in a
        listener is logged and otherwise ignored. State-table calls report here too.
        """
        return self._executor.retry_listeners.add(listener)

    def add_response_listener(self, listener: ResponseListener) -> Callable[[], None]:
        """Call ``listener(operation)`` after every call that got a successful response
        (retried or not); returns a function that removes it.

        With :meth:`add_retry_listener` it tells when the service became reachable again
        after failures. Listeners run on the event loop, synchronously: keep them short.
        An exception in a listener is logged and otherwise ignored.
        """
        return self._executor.response_listeners.add(listener)

    @property
    def transport(self) -> Transport:
        """The transport requests go through."""
        return self._executor.transport

    @property
    def clock(self) -> Clock:
        """The clock the client waits through (state-table stores share it)."""
        return self._executor.clock

    @property
    def retry_policy(self) -> RetryPolicy:
        return self._executor.policy

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint in use, when the transport knows it (for messages and display)."""
        return self._executor.endpoint_url

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
        await self._executor.close()

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
            self._executor.adopt_region(arn.text)
            return arn.text
        if not is_table_name(stream):
            raise InvalidStreamArnError(
                f"{stream!r} is neither a stream ARN ({EXPECTED_ARN_SHAPE}) nor a table name "
                "(3-255 characters of a-z, A-Z, 0-9, '_', '-' and '.')"
            )
        target = CallTarget(table_name=stream)
        try:
            response = await self._executor.call("DescribeTable", {"TableName": stream}, target)
        except AccessDeniedError as denied:
            return await self._latest_stream_from_list(stream, denied)
        try:
            table = response["Table"]
            spec = table.get("StreamSpecification") or {}
            enabled = bool(spec.get("StreamEnabled"))
            latest = table.get("LatestStreamArn")
        except (KeyError, TypeError, AttributeError) as exc:
            raise self._executor.malformed("DescribeTable", target, exc) from exc
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
        target = CallTarget(stream_arn=stream_arn, shard_id=child_shards_of)
        response = await self._executor.call("DescribeStream", params, target)
        try:
            return _to_description(response)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise self._executor.malformed("DescribeStream", target, exc) from exc

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
        target = CallTarget(stream_arn=stream_arn, shard_id=shard_id, start=start)
        response = await self._executor.call("GetShardIterator", params, target)
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
        transport = self._executor.transport
        body = await self._executor.run(
            "GetRecords",
            lambda: transport.get_records_body(params),
            CallTarget(shard_id=shard_id),
        )
        return parse_get_records_body(body, shard_id, parser)

    async def list_streams(self, table_name: str | None = None) -> list[StreamSummary]:
        """Every stream of the account and region, or of one source table (all pages)."""
        params: dict[str, Any] = {"Limit": _LIST_STREAMS_PAGE_LIMIT}
        if table_name is not None:
            params["TableName"] = table_name
        target = CallTarget(table_name=table_name)
        summaries: list[StreamSummary] = []
        seen: set[str] = set()
        while True:
            response = await self._executor.call("ListStreams", dict(params), target)
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
                raise self._executor.malformed("ListStreams", target, exc) from exc
            next_start = response.get("LastEvaluatedStreamArn")
            if not next_start:
                return summaries
            if next_start in seen:
                raise ServiceError(
                    f"ListStreams pagination repeated LastEvaluatedStreamArn {next_start}"
                )
            seen.add(next_start)
            params["ExclusiveStartStreamArn"] = next_start
