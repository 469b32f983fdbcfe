"""``--metrics-port`` of ``tail`` and ``run``: Prometheus metrics served on 127.0.0.1.

The exporter's library is an optional extra: without it the option is a usage error that
says what to install; without the option nothing of it is imported.
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING

from ddbstreams._events import Event
from ddbstreams.cli._common import UsageError, note

if TYPE_CHECKING:
    from ddbstreams.metrics import PrometheusMetrics

__all__ = ["add_metrics_port_option", "both", "serving_metrics"]


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 0 to 65535, got {text!r}")
    return value


def add_metrics_port_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--metrics-port",
        metavar="PORT",
        type=_port,
        help=(
            "serve Prometheus metrics at http://127.0.0.1:PORT/metrics (0: any free port, "
            "said on stderr); needs pip install 'ddbstreams[prometheus]'"
        ),
    )


@contextlib.asynccontextmanager
async def serving_metrics(port: int | None) -> AsyncIterator[PrometheusMetrics | None]:
    """The metrics to feed (None without ``--metrics-port``), served while the block runs."""
    if port is None:
        yield None
        return
    try:
        from ddbstreams.metrics import MetricsServer, PrometheusMetrics
    except ImportError as exc:
        raise UsageError(f"--metrics-port: {exc}") from None
    # The global registry: it also has the process's own metrics (CPU, memory, files).
    metrics = PrometheusMetrics()
    server = MetricsServer(metrics, port)
    await server.start()
    note(f"metrics on {server.url}")
    try:
        yield metrics
    finally:
        await server.close()
        metrics.unregister()


def both(
    first: Callable[[Event], None], second: Callable[[Event], None] | None
) -> Callable[[Event], None]:
    """One listener calling ``first``, then ``second`` (if any)."""
    if second is None:
        return first

    def listener(event: Event) -> None:
        first(event)
        second(event)

    return listener
