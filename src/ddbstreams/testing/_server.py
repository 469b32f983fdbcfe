"""Serve a :class:`~ddbstreams.testing.StreamSimulator` over HTTP on loopback.

The server speaks the DynamoDB Streams JSON protocol (``POST /`` with
``X-Amz-Target: DynamoDBStreams_20120810.<Operation>``; ``DynamoDB_20120810.DescribeTable``
for resolving a table name), so anything built on botocore — ``StreamsClient(endpoint_url=...)``,
boto3, the ``ddbstreams`` CLI — reads the simulator as it would read AWS. Responses are
the exact dicts/bytes of :class:`~ddbstreams.testing.SimulatorTransport`, with an
``x-amz-crc32`` header (botocore checks it for DynamoDB); errors are JSON
``{"__type": "com.amazonaws.dynamodb.v20120810#<Code>", "message": ...}`` with status 400
(500 for ``InternalServerError``). Requests are not authenticated: any credentials work.

Injected transport-level failures (:class:`~ddbstreams.testing.Faults`, or
``fail_next(..., "ConnectionError" | "Timeout")``) get no response at all: for
``ConnectionError`` the server resets the connection (TCP RST) at once, for ``Timeout`` it
first holds the request ``timeout_delay`` seconds (real time), so a client whose read timeout
is shorter sees a timeout, and one whose is longer sees the reset. Clients see real
connection errors (botocore ``ConnectionClosedError``/``EndpointConnectionError``,
``ReadTimeoutError``).

With ``tables_endpoint`` (e.g. DynamoDB Local's URL) the server also fronts the state
tables: every ``DynamoDB_20120810.*`` request it does not answer itself (anything but
``DescribeTable`` of the simulated source table, by name or ARN) is forwarded verbatim --
method, path, body and headers -- to that endpoint, and its answer (status, body, headers
such as ``x-amz-crc32``) comes back unchanged. A process with one ``endpoint_url`` for
DynamoDB Streams and DynamoDB (a worker: stream reads plus lease and worker tables) then
reads the simulator and keeps its state in a real engine. Injected failures apply only to
the operations the simulator answers; forwarded requests never see them. If the tables
endpoint cannot be reached, the client's connection is reset (as it would be talking to it
directly). Without ``tables_endpoint`` other DynamoDB operations are
``UnknownOperationException``. Forwarded requests are counted per operation and table
(:attr:`SimulatorServer.forwarded_calls`, or ``on_forward`` of :func:`serve_simulator`), so
a test or benchmark can tell what its state tables cost in requests.

Two ways to run it:

* ``async with serve_simulator(sim) as endpoint_url:`` serves on the running event loop;
* ``SimulatorServer(sim)`` serves from a background thread with its own loop, for
  synchronous code (CLI tests, boto3): ``with SimulatorServer(sim) as server:
  server.endpoint_url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
import threading
import uuid
import zlib
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterable
from types import TracebackType
from typing import Any, Final, Self
from urllib.parse import urlsplit

import aiohttp
import orjson
from aiohttp import web

from ddbstreams.testing.simulator import SimulatorTransport, StreamSimulator
from ddbstreams.transport._seam import TransportError

__all__ = ["SimulatorServer", "serve_simulator"]

_log = logging.getLogger(__name__)

_CONTENT_TYPE: Final = "application/x-amz-json-1.0"
_ERROR_PREFIX: Final = "com.amazonaws.dynamodb.v20120810#"
_STREAMS_TARGET: Final = "DynamoDBStreams_20120810."
_DYNAMODB_TARGET: Final = "DynamoDB_20120810."
_STREAMS_OPERATIONS: Final = frozenset(
    {"DescribeStream", "GetShardIterator", "GetRecords", "ListStreams"}
)
_DYNAMODB_OPERATIONS: Final = frozenset({"DescribeTable"})
#: Headers that describe one hop, not the request or the response: never forwarded.
_HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "content-length",
        "host",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "trailers",
        "transfer-encoding",
        "upgrade",
    }
)
#: Headers aiohttp's client would add on its own: forwarded only when the caller sent them.
_NO_AUTO_HEADERS: Final = ("Accept", "Accept-Encoding", "Content-Type", "User-Agent")


def _response(body: bytes, status: int = 200) -> web.Response:
    return web.Response(
        body=body,
        status=status,
        headers={
            "Content-Type": _CONTENT_TYPE,
            "x-amz-crc32": str(zlib.crc32(body) & 0xFFFFFFFF),
            "x-amzn-RequestId": uuid.uuid4().hex.upper(),
        },
    )


def _error_response(code: str, message: str, status: int | None) -> web.Response:
    body = orjson.dumps({"__type": _ERROR_PREFIX + code, "message": message})
    return _response(body, status or (500 if code == "InternalServerError" else 400))


#: Default real-time stall before an injected ``Timeout`` drops the connection.
DEFAULT_TIMEOUT_DELAY: Final = 2.0


async def _drop_connection(
    request: web.Request, delay: float, closing: asyncio.Event
) -> web.Response:
    """Reset the client's connection without answering (after ``delay`` seconds, or as
    soon as the server shuts down)."""
    if delay > 0:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(closing.wait(), delay)
    transport = request.transport
    if transport is not None and not transport.is_closing():
        sock = transport.get_extra_info("socket")
        if sock is not None:
            # Linger 0: close() sends RST, a real "connection reset by peer", not a FIN.
            with contextlib.suppress(OSError):  # the peer may be gone already
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()
    # Nothing can be sent any more; aiohttp drops the exception quietly on a closed transport.
    raise web.HTTPServiceUnavailable()


def _end_to_end(headers: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones (repeated headers kept, in order)."""
    return [(name, value) for name, value in headers if name.lower() not in _HOP_BY_HOP]


ForwardListener = Callable[[str, str | None], None]
"""Called with (operation, table name) for each request forwarded to the tables endpoint."""


def _tables_named(raw: bytes) -> list[str | None]:
    """The tables a DynamoDB request body names: its ``TableName``, or each table of a
    batch's ``RequestItems``; ``[None]`` when it names none (ListTables, unparsable)."""
    try:
        params = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return [None]
    if not isinstance(params, dict):
        return [None]
    name = params.get("TableName")
    if isinstance(name, str):
        return [name]
    batch = params.get("RequestItems")
    if isinstance(batch, dict) and batch:
        return [str(table) for table in batch]
    return [None]


def _check_tables_endpoint(url: str | None) -> None:
    if url is not None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"tables_endpoint must be an http(s) URL, not {url!r}")


class _TablesForwarder:
    """Forwards DynamoDB requests verbatim to the tables endpoint, over one client session.

    Bodies pass through as bytes (no decompression, no re-encoding), headers minus the
    hop-by-hop ones; aiohttp adds none of its own, cookies are not kept and redirects are
    not followed, so the engine sees the request the client sent and the client gets the
    engine's answer.
    """

    def __init__(
        self, endpoint_url: str, closing: asyncio.Event, on_forward: ForwardListener | None
    ) -> None:
        self.endpoint_url = endpoint_url.rstrip("/")
        self._closing = closing
        self._on_forward = on_forward
        self._session = aiohttp.ClientSession(
            auto_decompress=False,
            cookie_jar=aiohttp.DummyCookieJar(),
            skip_auto_headers=_NO_AUTO_HEADERS,
        )

    async def forward(self, request: web.Request, body: bytes) -> web.Response:
        """Send ``request`` (whose body, already read, is ``body``) on; return the answer."""
        if self._on_forward is not None:
            _, _, operation = request.headers.get("X-Amz-Target", "").rpartition(".")
            for table in _tables_named(body):
                self._on_forward(operation, table)
        url = self.endpoint_url + str(request.rel_url)
        try:
            async with self._session.request(
                request.method,
                url,
                data=body,
                headers=_end_to_end(request.headers.items()),
                allow_redirects=False,
            ) as answer:
                answer_body = await answer.read()
                return web.Response(
                    body=answer_body,
                    status=answer.status,
                    reason=answer.reason,
                    headers=_end_to_end(answer.headers.items()),
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            _log.warning("cannot forward %s to %s: %r", request.method, url, exc)
            return await _drop_connection(request, 0.0, self._closing)

    async def close(self) -> None:
        """Close the client session (its pooled connections to the tables endpoint)."""
        await self._session.close()


class _Handler:
    """Answers one request: from the simulator, by forwarding it, or with an error."""

    def __init__(
        self,
        simulator: StreamSimulator,
        timeout_delay: float,
        closing: asyncio.Event,
        tables: _TablesForwarder | None,
    ) -> None:
        self._simulator = simulator
        self._transport = SimulatorTransport(simulator)
        self._timeout_delay = timeout_delay
        self._closing = closing
        self._tables = tables

    async def handle(self, request: web.Request) -> web.Response:
        """Route ``request`` by its ``X-Amz-Target``."""
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.rpartition(".")
        service = prefix + "."
        tables = self._tables if service == _DYNAMODB_TARGET else None
        allowed = {
            _STREAMS_TARGET: _STREAMS_OPERATIONS,
            _DYNAMODB_TARGET: _DYNAMODB_OPERATIONS,
        }.get(service, frozenset())
        if operation not in allowed and tables is None:
            return _error_response(
                "UnknownOperationException", f"unknown operation {target!r}", 400
            )
        raw = await request.read()
        if tables is not None and not self._is_source_table(operation, raw):
            return await tables.forward(request, raw)
        try:
            params: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return _error_response("SerializationException", "request body is not JSON", 400)
        if not isinstance(params, dict):
            return _error_response("SerializationException", "request body must be an object", 400)
        return await self._answer(request, operation, params)

    def _is_source_table(self, operation: str, raw: bytes) -> bool:
        """Whether a DynamoDB request is DescribeTable of the simulated source table."""
        if operation != "DescribeTable":
            return False
        try:
            params = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return False
        sim = self._simulator
        return isinstance(params, dict) and params.get("TableName") in (
            sim.table_name,
            sim.table_arn,
        )

    async def _answer(
        self, request: web.Request, operation: str, params: dict[str, Any]
    ) -> web.Response:
        """The simulator's answer to a streams operation or DescribeTable."""
        try:
            if operation == "GetRecords":
                body = self._transport.get_records_sync(params)
            else:
                body = orjson.dumps(self._transport.call_sync(operation, params))
        except TransportError as exc:
            if exc.status is None and exc.code in ("ConnectionError", "Timeout"):
                delay = self._timeout_delay if exc.code == "Timeout" else 0.0
                return await _drop_connection(request, delay, self._closing)
            return _error_response(exc.code, exc.message, exc.status)
        except Exception as exc:  # a simulator bug: answer like the service would, log it
            _log.exception("simulator failed on %s", operation)
            return _error_response("InternalServerError", f"simulator error: {exc!r}", 500)
        return _response(body)


def _make_app(
    simulator: StreamSimulator,
    timeout_delay: float,
    closing: asyncio.Event,
    tables: _TablesForwarder | None,
) -> web.Application:
    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/", _Handler(simulator, timeout_delay, closing, tables).handle)
    return app


@contextlib.asynccontextmanager
async def serve_simulator(
    simulator: StreamSimulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
    tables_endpoint: str | None = None,
    on_forward: ForwardListener | None = None,
) -> AsyncIterator[str]:
    """Serve ``simulator`` on the running event loop; yield its endpoint URL.

    ``port=0`` picks a free port. ``timeout_delay`` is how long (real seconds) an injected
    ``Timeout`` holds the request before the connection is dropped. ``tables_endpoint``
    (an ``http(s)://`` URL, e.g. DynamoDB Local's) receives every DynamoDB request the
    simulator does not answer itself (see the module docs); its client session is closed
    when the server stops. ``on_forward(operation, table)`` is called on the serving loop
    for each request forwarded there, before it is sent (``table`` is the ``TableName``;
    once per table for a batch naming several; None for a request naming none, such as
    ListTables); it must neither block nor raise. The server stops when the block exits
    (requests still held are abandoned). Sync HTTP clients (boto3) must not call it from
    the same thread, as they would block the loop that serves them: use
    :class:`SimulatorServer` or ``asyncio.to_thread`` for those.
    """
    if not timeout_delay >= 0:
        raise ValueError("timeout_delay must not be negative")
    _check_tables_endpoint(tables_endpoint)
    closing = asyncio.Event()
    tables = (
        None if tables_endpoint is None else _TablesForwarder(tables_endpoint, closing, on_forward)
    )
    try:
        runner = web.AppRunner(
            _make_app(simulator, timeout_delay, closing, tables),
            access_log=None,
            shutdown_timeout=1.0,
        )
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
            bound_port = runner.addresses[0][1]
            yield f"http://{host}:{bound_port}"
        finally:
            closing.set()  # stalled requests give up now rather than hold the shutdown
            await runner.cleanup()
    finally:
        if tables is not None:
            await tables.close()


class SimulatorServer:
    """Serve a simulator over HTTP from a background thread (for synchronous code).

    ``start()`` returns once the server accepts connections; ``stop()`` shuts it down and
    joins the thread (idempotent). Also a context manager. Writes to the simulator from
    the test's thread are safe while the server runs. ``timeout_delay`` and
    ``tables_endpoint`` as for :func:`serve_simulator`; :attr:`forwarded_calls` counts
    what was forwarded to the tables endpoint.
    """

    def __init__(
        self,
        simulator: StreamSimulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
        tables_endpoint: str | None = None,
    ) -> None:
        if not timeout_delay >= 0:
            raise ValueError("timeout_delay must not be negative")
        _check_tables_endpoint(tables_endpoint)
        self.simulator = simulator
        #: Where DynamoDB requests the simulator does not answer go (None: nowhere).
        self.tables_endpoint = tables_endpoint
        self._host = host
        self._port = port
        self._timeout_delay = timeout_delay
        self._endpoint_url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._forwarded: Counter[tuple[str, str | None]] = Counter()
        self._forwarded_lock = threading.Lock()

    @property
    def forwarded_calls(self) -> dict[tuple[str, str | None], int]:
        """Requests forwarded to ``tables_endpoint`` so far, per ``(operation, table
        name)`` (table None for a request naming none; a batch counts once per table it
        names), e.g. ``{("UpdateItem", "app"): 12, ("Scan", "app-workers"): 30}``.

        A copy, consistent at the moment it is taken: read it from any thread, before,
        during or after serving, and subtract two readings to count a window. Requests
        the simulator answers itself (streams operations, DescribeTable of its table) are
        in the simulator's ``calls``, not here.
        """
        with self._forwarded_lock:
            return dict(self._forwarded)

    def _count_forwarded(self, operation: str, table: str | None) -> None:
        with self._forwarded_lock:
            self._forwarded[operation, table] += 1

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``; RuntimeError before :meth:`start`."""
        if self._endpoint_url is None:
            raise RuntimeError("SimulatorServer is not running; call start() first")
        return self._endpoint_url

    def start(self) -> str:
        """Start serving; return the endpoint URL. RuntimeError if already started."""
        if self._thread is not None:
            raise RuntimeError("SimulatorServer already started")
        self._thread = threading.Thread(
            target=self._run, name="ddbstreams-simulator-server", daemon=True
        )
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            self._thread.join()
            raise RuntimeError(f"simulator server failed to start: {self._error}") from self._error
        return self.endpoint_url

    def stop(self) -> None:
        """Stop serving and join the thread. Idempotent."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
        thread.join()
        self._endpoint_url = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported to start() through _error
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        async with serve_simulator(
            self.simulator,
            host=self._host,
            port=self._port,
            timeout_delay=self._timeout_delay,
            tables_endpoint=self.tables_endpoint,
            on_forward=self._count_forwarded,
        ) as url:
            self._endpoint_url = url
            self._ready.set()
            await self._stopping.wait()
