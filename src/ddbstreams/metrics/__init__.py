"""Metrics of readers, consumers and worker groups, for Prometheus and OpenTelemetry.

Both exporters are event listeners on the one event channel (``on_event=``) plus figures
read when scraped (:meth:`~ddbstreams.metrics.PrometheusMetrics.track`)::

    metrics = PrometheusMetrics()          # pip install 'ddbstreams[prometheus]'
    consumer = Consumer(stream, handler, on_event=metrics)
    metrics.track(consumer)                # iterator age per shard, leases held
    prometheus_client.start_http_server(9464, addr="127.0.0.1")

    metrics = OpenTelemetryMetrics()       # pip install 'ddbstreams[otel]'

The exporters' libraries are optional: importing this package needs neither; naming an
exporter imports its library, and says which extra to install when it is missing. The
metrics are listed in the README ("Metrics") and in :mod:`ddbstreams.metrics._catalog`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ddbstreams.metrics._catalog import CATALOG, LagSource, Metric
from ddbstreams.metrics._listener import EventMetrics, missing_extra

if TYPE_CHECKING:
    from ddbstreams.metrics._otel import OpenTelemetryMetrics
    from ddbstreams.metrics._prometheus import MetricsServer, PrometheusMetrics

__all__ = [
    "CATALOG",
    "EventMetrics",
    "LagSource",
    "Metric",
    "MetricsServer",
    "OpenTelemetryMetrics",
    "PrometheusMetrics",
]

# name -> (its module, the library it needs, the extra that installs it)
_EXPORTERS = {
    "PrometheusMetrics": ("_prometheus", "prometheus_client", "prometheus"),
    "MetricsServer": ("_prometheus", "prometheus_client", "prometheus"),
    "OpenTelemetryMetrics": ("_otel", "opentelemetry-api", "otel"),
}


def __getattr__(name: str) -> Any:
    # Imported on first use, so that the core never needs an exporter's library.
    if name not in _EXPORTERS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    module, library, extra = _EXPORTERS[name]
    import importlib

    try:
        loaded = importlib.import_module(f"{__name__}.{module}")
    except ModuleNotFoundError as exc:
        if exc.name is not None and exc.name.startswith(("prometheus_client", "opentelemetry")):
            raise missing_extra(name, library, extra) from exc
        raise
    return getattr(loaded, name)
