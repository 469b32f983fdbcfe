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
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Final, Self

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


def _make_app(
    simulator: StreamSimulator, timeout_delay: float, closing: asyncio.Event
) -> web.Application:
    transport = SimulatorTransport(simulator)

    async def handle(request: web.Request) -> web.Response:
        target = request.headers.get("X-Amz-Target", "")
        prefix, _, operation = target.rpartition(".")
        allowed = {
            _STREAMS_TARGET: _STREAMS_OPERATIONS,
            _DYNAMODB_TARGET: _DYNAMODB_OPERATIONS,
        }.get(prefix + ".", frozenset())
        if operation not in allowed:
            return _error_response(
                "UnknownOperationException", f"unknown operation {target!r}", 400
            )
        raw = await request.read()
        try:
            params: Any = orjson.loads(raw) if raw else {}
        except orjson.JSONDecodeError:
            return _error_response("SerializationException", "request body is not JSON", 400)
        if not isinstance(params, dict):
            return _error_response("SerializationException", "request body must be an object", 400)
        try:
            if operation == "GetRecords":
                body = transport.get_records_sync(params)
            else:
                body = orjson.dumps(transport.call_sync(operation, params))
        except TransportError as exc:
            if exc.status is None and exc.code in ("ConnectionError", "Timeout"):
                return await _drop_connection(
                    request, timeout_delay if exc.code == "Timeout" else 0.0, closing
                )
            return _error_response(exc.code, exc.message, exc.status)
        except Exception as exc:  # a simulator bug: answer like the service would, log it
            _log.exception("simulator failed on %s", operation)
            return _error_response("InternalServerError", f"simulator error: {exc!r}", 500)
        return _response(body)

    app = web.Application(client_max_size=16 * 1024 * 1024)
    app.router.add_post("/", handle)
    return app


@contextlib.asynccontextmanager
async def serve_simulator(
    simulator: StreamSimulator,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
) -> AsyncIterator[str]:
    """Serve ``simulator`` on the running event loop; yield its endpoint URL.

    ``port=0`` picks a free port. ``timeout_delay`` is how long (real seconds) an injected
    ``Timeout`` holds the request before the connection is dropped. The server stops when
    the block exits (requests still held are abandoned). Sync HTTP clients (boto3) must not
    call it from the same thread, as they would block the loop that serves them: use
    :class:`SimulatorServer` or ``asyncio.to_thread`` for those.
    """
    if not timeout_delay >= 0:
        raise ValueError("timeout_delay must not be negative")
    closing = asyncio.Event()
    runner = web.AppRunner(
        _make_app(simulator, timeout_delay, closing), access_log=None, shutdown_timeout=1.0
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


class SimulatorServer:
    """Serve a simulator over HTTP from a background thread (for synchronous code).

    ``start()`` returns once the server accepts connections; ``stop()`` shuts it down and
    joins the thread (idempotent). Also a context manager. Writes to the simulator from
    the test's thread are safe while the server runs. ``timeout_delay`` as for
    :func:`serve_simulator`.
    """

    def __init__(
        self,
        simulator: StreamSimulator,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        timeout_delay: float = DEFAULT_TIMEOUT_DELAY,
    ) -> None:
        if not timeout_delay >= 0:
            raise ValueError("timeout_delay must not be negative")
        self.simulator = simulator
        self._host = host
        self._port = port
        self._timeout_delay = timeout_delay
        self._endpoint_url: str | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None

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
            self.simulator, host=self._host, port=self._port, timeout_delay=self._timeout_delay
        ) as url:
            self._endpoint_url = url
            self._ready.set()
            await self._stopping.wait()
