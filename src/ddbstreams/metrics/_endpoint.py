"""LoopbackEndpoint: one GET route served on the running event loop (aiohttp).

What the metrics server (``/metrics``) and the CLI's health check (``/healthz``) share:
binding (port 0 picks a free port), one clear error when the port cannot be bound, and an
idempotent close.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from ddbstreams._errors import ConfigurationError

__all__ = ["LoopbackEndpoint"]


class LoopbackEndpoint:
    """Serves ``GET path`` with ``handler`` on ``host:port`` once :meth:`start` ed.

    ``what`` names the endpoint in the error raised when the port cannot be bound
    (:class:`~ddbstreams.ConfigurationError`). :attr:`port` is the bound port once started.
    """

    __slots__ = ("_handler", "_host", "_path", "_port", "_runner", "_what")

    def __init__(
        self,
        path: str,
        handler: Callable[[web.Request], Awaitable[web.Response]],
        port: int,
        *,
        what: str,
        host: str = "127.0.0.1",
    ) -> None:
        self._path = path
        self._handler = handler
        self._port = port
        self._what = what
        self._host = host
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        return self._port

    @property
    def url(self) -> str:
        return f"http://{self._host}:{self._port}{self._path}"

    async def start(self) -> None:
        """Start serving (the port is bound when this returns)."""
        app = web.Application()
        app.router.add_get(self._path, self._handler)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, self._host, self._port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise ConfigurationError(
                f"cannot serve {self._what} on {self._host}:{self._port}: {exc.strerror or exc}"
            ) from exc
        self._runner = runner
        for address in runner.addresses:  # the port chosen for port 0
            if isinstance(address, tuple) and len(address) >= 2:
                self._port = int(address[1])
                break

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
