"""The aiobotocore transport: DynamoDB Streams and DynamoDB over HTTP.

:class:`AwsTransport` implements :class:`ddbstreams.transport._seam.Transport`. It only moves
requests and responses: retries belong to the client's
:class:`~ddbstreams.client._retrying.RetryExecutor`, so botocore's own retries are switched off
(``total_max_attempts=1``) and every botocore, aiobotocore or aiohttp failure is turned
into a :class:`TransportError` here.

GetRecords hot path: the session's response parser factory is replaced by one whose parser
hands back the raw body of a successful GetRecords response (``{"RawBody": bytes}``)
instead of walking botocore's output shape; the client decodes those bytes directly into
records. Every other operation, and every error response, goes to botocore's own parser.
botocore only verifies DynamoDB's ``x-amz-crc32`` header for the ``dynamodb`` service and
only inside its retry machinery (which is off), so the parser checks it for every
successful response itself; the check costs about a millisecond per megabyte. The same
parser is where a successful response that is not a JSON object, or whose JSON does not
have the operation's shape, becomes a ``ResponseParserError`` (botocore's own parser
would fail with whatever AttributeError or KeyError the shape walk hits).

Region: when none is configured and no endpoint URL is given, the transport waits for the
client to name one (:meth:`AwsTransport.adopt_region`, the region of a stream ARN) and only
a call made without one fails. Credentials are resolved once, with a time limit.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import zlib
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any, Final
from urllib.parse import urlsplit

import aiohttp
import botocore.exceptions as bce
from aiobotocore.config import AioConfig
from aiobotocore.parsers import AioResponseParserFactory
from aiobotocore.session import AioSession
from botocore import xform_name
from botocore.parsers import ResponseParserError

from ddbstreams._errors import ConfigurationError
from ddbstreams.transport._connection import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_CREDENTIALS_TIMEOUT,
    DEFAULT_MAX_POOL_CONNECTIONS,
    DEFAULT_READ_TIMEOUT,
)
from ddbstreams.transport._seam import TransportError

__all__ = ["DEFAULT_LOCAL_REGION", "AwsTransport", "RawGetRecordsParserFactory"]

DEFAULT_LOCAL_REGION: Final = "us-east-1"
"""Region used when an endpoint URL is given but no region is configured anywhere: local
engines accept any region, and botocore needs one to sign."""

_NO_REGION: Final = (
    "no AWS region configured: pass region_name (--region), set AWS_REGION, or name the "
    "stream by its ARN (the region is part of it)"
)

# DescribeTable resolves source tables; the rest serve state tables (checkpoints, leases).
_DYNAMODB_OPERATIONS: Final = frozenset(
    {"DescribeTable", "CreateTable", "GetItem", "PutItem", "DeleteItem", "UpdateItem", "Scan"}
)
_STREAMS_OPERATIONS: Final = frozenset(
    {"DescribeStream", "GetShardIterator", "GetRecords", "ListStreams"}
)

_CREDENTIAL_EXCEPTIONS: tuple[type[BaseException], ...] = tuple(
    cls
    for cls in (
        getattr(bce, name, None)
        for name in (
            "NoCredentialsError",
            "PartialCredentialsError",
            "CredentialRetrievalError",
            "UnknownCredentialError",
            "TokenRetrievalError",
            "NoAuthTokenError",
            "SSOError",
            "LoginError",
        )
    )
    if isinstance(cls, type)
)


class _RawGetRecordsParser:
    """Wraps botocore's parser: raw bytes for successful GetRecords, delegation otherwise."""

    __slots__ = ("_inner",)

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def parse(self, response: dict[str, Any], shape: Any) -> Any:
        status = response["status_code"]
        body = response.get("body")
        if status < 300 and isinstance(body, bytes | bytearray):
            headers = response["headers"]
            _check_crc32(headers, body)
            _check_json_object(headers, body)
            operation = response.get("context", {}).get("operation_name")
            if operation == "GetRecords" and getattr(shape, "name", None) == "GetRecordsOutput":
                return {
                    "RawBody": bytes(body),
                    "ResponseMetadata": {
                        "RequestId": headers.get("x-amzn-requestid", ""),
                        "HTTPStatusCode": status,
                        "HTTPHeaders": dict(headers),
                    },
                }
        try:
            return await self._inner.parse(response, shape)
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            # botocore walks the output shape assuming the JSON has it; JSON of another
            # shape fails with whatever the walk trips on, which says nothing to a user.
            name = getattr(shape, "name", None) or "the operation's output"
            raise ResponseParserError(f"the JSON does not have the shape of {name}") from exc

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


class RawGetRecordsParserFactory(AioResponseParserFactory):  # type: ignore[misc]
    """aiobotocore's parser factory, with GetRecords bodies returned unparsed.

    Registered on the transport's own session only, as the ``response_parser_factory``
    component: clients of other sessions are unaffected.
    """

    def create_parser(self, protocol_name: str) -> Any:
        return _RawGetRecordsParser(super().create_parser(protocol_name))


def _check_json_object(headers: Mapping[str, str], body: bytes | bytearray) -> None:
    """Raise ResponseParserError unless ``body`` looks like a JSON object (or is empty).

    Every successful response of these APIs is a JSON object; anything else (an HTML page
    from a proxy or a web server, a bare JSON value) comes from something that is not
    DynamoDB. Only the first bytes are looked at: the hot path pays nothing more.
    """
    head = bytes(body[:64]).lstrip()
    if not head or head.startswith(b"{"):
        return
    content_type = headers.get("content-type") or "none"
    start = bytes(body[:60]).decode("utf-8", "replace")
    raise ResponseParserError(
        f"the body is not a JSON object (content-type {content_type}, it begins {start!r})"
    )


def _check_crc32(headers: Mapping[str, str], body: bytes | bytearray) -> None:
    expected = headers.get("x-amz-crc32")
    if expected is None:
        return
    try:
        expected_value = int(expected)
    except ValueError:
        return
    actual = zlib.crc32(body) & 0xFFFFFFFF
    if actual != expected_value:
        raise bce.ChecksumError(
            checksum_type="crc32", expected_checksum=expected_value, actual_checksum=actual
        )


def to_transport_error(exc: Exception) -> TransportError | None:
    """The TransportError for a botocore/aiobotocore/aiohttp failure, or None if unknown."""
    if isinstance(exc, bce.ClientError):
        response = exc.response
        error = response.get("Error", {})
        code = str(error.get("Code") or "Unknown")
        message = str(error.get("Message") or exc)
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return TransportError(code, message, status if isinstance(status, int) else None)
    if isinstance(exc, bce.ConnectTimeoutError | aiohttp.ConnectionTimeoutError):
        return TransportError("ConnectionError", str(exc))
    if isinstance(exc, bce.ReadTimeoutError | aiohttp.ServerTimeoutError | TimeoutError):
        return TransportError("Timeout", str(exc) or "timed out waiting for the response")
    if isinstance(
        exc,
        bce.ConnectionError
        | bce.HTTPClientError
        | aiohttp.ClientConnectionError
        | aiohttp.ClientPayloadError
        | OSError,
    ):
        return TransportError("ConnectionError", str(exc) or type(exc).__name__)
    if isinstance(exc, _CREDENTIAL_EXCEPTIONS):
        return TransportError("NoCredentials", str(exc))
    if isinstance(exc, bce.ChecksumError):
        return TransportError("ChecksumError", str(exc), 200)
    if isinstance(exc, ResponseParserError):
        return TransportError("ResponseParserError", str(exc), 200)
    if isinstance(exc, bce.ParamValidationError):
        return TransportError("ParamValidationError", str(exc))
    if isinstance(exc, bce.BotoCoreError):
        return TransportError(type(exc).__name__, str(exc))
    return None


def _check_endpoint_url(endpoint_url: str) -> None:
    """ConfigurationError unless ``endpoint_url`` can be connected to (scheme, host, port):
    a bad port would otherwise surface as a bare ValueError from deep inside botocore."""
    problem = None
    try:
        parts = urlsplit(endpoint_url)
        parts.port  # noqa: B018 - parsing the port is the check
    except ValueError as exc:
        problem = str(exc).lower()
    else:
        if parts.scheme not in ("http", "https"):
            problem = "expected http://host[:port] or https://..."
        elif not parts.hostname:
            problem = "it names no host"
    if problem is not None:
        raise ConfigurationError(f"invalid endpoint URL {endpoint_url!r}: {problem}")


def _configuration_error(exc: Exception) -> ConfigurationError | None:
    if isinstance(exc, bce.NoRegionError):
        return ConfigurationError(
            "no AWS region configured: pass region_name or set AWS_REGION (or AWS_DEFAULT_REGION)"
        )
    if isinstance(exc, bce.ProfileNotFound | bce.InvalidRegionError | bce.UnknownRegionError):
        return ConfigurationError(str(exc))
    if isinstance(exc, bce.InvalidConfigError):
        return ConfigurationError(f"invalid AWS configuration: {exc}")
    return None


class AwsTransport:
    """A :class:`Transport` over aiobotocore, for AWS and DynamoDB Local alike.

    Endpoint, region and credentials come from the arguments or, when those are ``None``,
    from the usual AWS environment variables, config files and profile. The region falls
    back to :data:`DEFAULT_LOCAL_REGION` when an endpoint URL is given; otherwise, when
    none is configured, ``region_name`` is ``None`` until :meth:`adopt_region` names one,
    and a call made without one raises :class:`ConfigurationError`. Credentials that take
    longer than ``credentials_timeout`` seconds to resolve (a hung credential_process)
    fail the call with a ``CredentialsTimeout`` TransportError. Clients are created on
    first use; :meth:`close` releases them and is idempotent. Calls after close raise
    RuntimeError. Cancellation propagates unchanged.
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
        connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
        read_timeout: float = DEFAULT_READ_TIMEOUT,
        max_pool_connections: int = DEFAULT_MAX_POOL_CONNECTIONS,
        credentials_timeout: float = DEFAULT_CREDENTIALS_TIMEOUT,
    ) -> None:
        if endpoint_url is not None:
            _check_endpoint_url(endpoint_url)
        if (aws_access_key_id is None) != (aws_secret_access_key is None):
            raise ConfigurationError(
                "pass aws_access_key_id and aws_secret_access_key together, or neither"
            )
        if not all(
            0 < timeout < math.inf
            for timeout in (connect_timeout, read_timeout, credentials_timeout)
        ):
            raise ConfigurationError(
                "connect_timeout, read_timeout and credentials_timeout must be positive"
            )
        if max_pool_connections < 1:
            raise ConfigurationError("max_pool_connections must be at least 1")
        self._session = AioSession(profile=profile_name)
        self._session.register_component("response_parser_factory", RawGetRecordsParserFactory())
        self._endpoint_url = endpoint_url
        self.region_name: str | None = self._resolve_region(region_name, endpoint_url)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self._credentials_timeout = credentials_timeout
        self._credentials_resolved = aws_access_key_id is not None
        self._credentials = {
            "aws_access_key_id": aws_access_key_id,
            "aws_secret_access_key": aws_secret_access_key,
            "aws_session_token": aws_session_token,
        }
        self._config = AioConfig(
            retries={"total_max_attempts": 1, "mode": "standard"},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            max_pool_connections=max_pool_connections,
            user_agent_extra="ddbstreams",
            # Read botocore's model files in a thread, not on the event loop.
            warm_up_loader_caches=True,
        )
        self._clients: dict[str, Any] = {}
        self._stack = AsyncExitStack()
        self._lock = asyncio.Lock()
        self._closed = False
        self._resolved_endpoint: str | None = None

    def _resolve_region(self, region_name: str | None, endpoint_url: str | None) -> str | None:
        if region_name:
            return region_name
        env_region = os.environ.get("AWS_REGION")
        if env_region:
            return env_region
        try:
            configured = self._session.get_config_variable("region")
        except Exception as exc:
            config_error = _configuration_error(exc)
            if config_error is not None:
                raise config_error from exc
            raise
        if configured:
            return str(configured)
        if endpoint_url is not None or os.environ.get("AWS_ENDPOINT_URL"):
            return DEFAULT_LOCAL_REGION
        return None

    def adopt_region(self, region: str) -> None:
        """Use ``region`` (the region a stream ARN names) if none was configured."""
        if self.region_name is None and region:
            self.region_name = region

    @property
    def endpoint_url(self) -> str:
        """The DynamoDB Streams endpoint in use (best known value before the first call)."""
        if self._endpoint_url is not None:
            return self._endpoint_url
        if self._resolved_endpoint is not None:
            return self._resolved_endpoint
        return f"https://streams.dynamodb.{self.region_name or '<region>'}.amazonaws.com"

    async def _resolve_credentials(self) -> None:
        """Resolve the session's credentials (it keeps them) within the time limit.

        botocore waits as long as a credential_process, an SSO cache or a metadata service
        takes, so a hung one would hang every call without a word.
        """
        limit = asyncio.timeout(self._credentials_timeout)
        started: list[Any] = []
        restore = self._track_credential_processes(started)
        try:
            async with limit:
                await self._session.get_credentials()
        except TimeoutError as exc:
            if not limit.expired():
                raise
            # Cancelling botocore's wait leaves its credential_process running on its own.
            for process in started:
                if process.returncode is None:
                    with contextlib.suppress(ProcessLookupError):
                        process.kill()
            raise TransportError("CredentialsTimeout", self._slow_credentials()) from exc
        finally:
            restore()
        self._credentials_resolved = True

    def _track_credential_processes(self, started: list[Any]) -> Callable[[], None]:
        """Record the processes the profile's credential_process provider starts (into
        ``started``) until the returned function is called."""
        resolver = self._session.get_component("credential_provider")
        provider = next(
            (
                p
                for p in getattr(resolver, "providers", ())
                if getattr(p, "METHOD", None) == "custom-process" and hasattr(p, "_popen")
            ),
            None,
        )
        if provider is None:
            return lambda: None
        popen = provider._popen

        async def tracking_popen(*args: Any, **kwargs: Any) -> Any:
            process = await popen(*args, **kwargs)
            started.append(process)
            return process

        provider._popen = tracking_popen

        def restore() -> None:
            provider._popen = popen

        return restore

    def _slow_credentials(self) -> str:
        within = f"within {self._credentials_timeout:g} s"
        try:
            profile = self._session.profile or "default"
            process = self._session.get_scoped_config().get("credential_process")
        except Exception:  # the configuration was readable moments ago; say less
            return f"AWS credentials were not resolved {within}"
        if process:
            return (
                f"the credential_process of AWS profile {profile!r} ({process}) gave no "
                f"credentials {within}; run it by hand to see why"
            )
        return (
            f"the AWS credentials of profile {profile!r} were not resolved {within} "
            "(SSO, assumed role, container or instance metadata)"
        )

    async def _client(self, service: str) -> Any:
        client = self._clients.get(service)
        if client is not None:
            return client
        async with self._lock:
            if self._closed:
                raise RuntimeError("AwsTransport is closed")
            existing = self._clients.get(service)
            if existing is not None:
                return existing
            if self.region_name is None:
                raise ConfigurationError(_NO_REGION)
            if not self._credentials_resolved:
                await self._resolve_credentials()
            context = self._session.create_client(
                service,
                region_name=self.region_name,
                endpoint_url=self._endpoint_url,
                config=self._config,
                **self._credentials,
            )
            created = await self._stack.enter_async_context(context)
            self._clients[service] = created
            if service == "dynamodbstreams":
                self._resolved_endpoint = str(created.meta.endpoint_url)
            return created

    async def _invoke(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        if self._closed:
            raise RuntimeError("AwsTransport is closed")
        if operation in _STREAMS_OPERATIONS:
            service = "dynamodbstreams"
        elif operation in _DYNAMODB_OPERATIONS:
            service = "dynamodb"
        else:
            raise ValueError(f"unsupported operation {operation!r}")
        try:
            client = await self._client(service)
            response: dict[str, Any] = await getattr(client, xform_name(operation))(**params)
        except (TransportError, ConfigurationError):
            raise
        except Exception as exc:
            config_error = _configuration_error(exc)
            if config_error is not None:
                raise config_error from exc
            transport_error = to_transport_error(exc)
            if transport_error is None:
                raise
            raise transport_error from exc
        return response

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Perform ``operation``; return botocore's parsed response without ResponseMetadata."""
        response = await self._invoke(operation, params)
        response.pop("ResponseMetadata", None)
        return response

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        """Perform GetRecords; return the response body exactly as received."""
        response = await self._invoke("GetRecords", params)
        body = response.get("RawBody")
        if not isinstance(body, bytes):
            raise TransportError(
                "ResponseParserError", "the GetRecords response body was not captured raw"
            )
        return body

    async def close(self) -> None:
        """Close the HTTP clients. Idempotent."""
        if self._closed:
            return
        self._closed = True
        async with self._lock:
            self._clients.clear()
            await self._stack.aclose()
