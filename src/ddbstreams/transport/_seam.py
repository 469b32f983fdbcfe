"""The transport seam: the one interface through which the client reaches a service.

``StreamsClient`` (``ddbstreams.client._streams``) owns retries and error mapping; a transport only
moves requests and responses. Two transports exist: the aiobotocore one that talks HTTP to
AWS or DynamoDB Local (``ddbstreams.transport._aws``), and the in-memory stream simulator
(``ddbstreams.testing``). Both speak the wire shapes of the DynamoDB Streams JSON protocol:
requests and responses are dicts keyed as in the AWS API reference (``StreamArn``,
``Shards``, ``NextShardIterator``...). Timestamps may arrive as epoch seconds (wire) or as
datetimes (botocore); the client accepts both.

Operations: ``DescribeStream``, ``GetShardIterator``, ``ListStreams`` (DynamoDB Streams),
``DescribeTable`` (DynamoDB, for resolving a source table name to its latest stream) and, for
state tables (checkpoints, leases), ``CreateTable``, ``GetItem``, ``PutItem``,
``DeleteItem``, ``UpdateItem`` and ``Scan``.
GetRecords is separate because its body is never given to a generic parser: the transport
returns the raw response bytes and the client decodes them directly into records.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

__all__ = ["Transport", "TransportError"]


class TransportError(Exception):
    """A failed call, before mapping to the library's exception tree.

    ``code`` is the AWS error code (``ResourceNotFoundException``, ``ExpiredIteratorException``,
    ``ThrottlingException``, ...) or one of the transport-level codes ``ConnectionError``,
    ``Timeout``, ``NoCredentials``, ``CredentialsTimeout`` (credentials took too long to
    resolve) and ``ResponseParserError`` (a successful response that is not the operation's
    JSON). ``status`` is the HTTP status when there was a response.
    """

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status


class Transport(Protocol):
    """Moves one request to the service and back. Raises only :class:`TransportError`."""

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Perform ``operation`` with ``params``; return the response as a dict."""
        ...

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        """Perform GetRecords with ``params``; return the raw JSON response body."""
        ...

    async def close(self) -> None:
        """Release connections. Idempotent."""
        ...
