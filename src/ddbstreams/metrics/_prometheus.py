"""The Prometheus exporter, over ``prometheus_client`` (the ``prometheus`` extra).

Counters and the handler-duration histogram are fed by events; the iterator age per shard,
its maximum and the leases held are produced by a collector when the registry is scraped,
from the sources being tracked, so a shard that is no longer read leaves no series behind.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import prometheus_client
from aiohttp import web
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector, CollectorRegistry

from ddbstreams.metrics._catalog import CATALOG, Metric, Pulled
from ddbstreams.metrics._endpoint import LoopbackEndpoint
from ddbstreams.metrics._listener import EventMetrics

__all__ = ["MetricsServer", "PrometheusMetrics"]

PREFIX = "ddbstreams_"

# Handler calls range from a millisecond to minutes (Lambda's timeout is 15 minutes).
DURATION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300)


class PrometheusMetrics(EventMetrics):
    """ddbstreams' metrics in a ``prometheus_client`` registry (by default the global
    ``REGISTRY``, which ``prometheus_client.start_http_server`` serves).

    Pass it as ``on_event=`` of a :class:`~ddbstreams.StreamReader` or
    :class:`~ddbstreams.Consumer`, and :meth:`track` that reader or consumer for the
    iterator age and the leases held. One instance per registry (the names are taken).
    """

    __slots__ = ("_children", "_collector", "_families", "registry")

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        super().__init__()
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._families: dict[str, prometheus_client.Counter | prometheus_client.Histogram] = {}
        # (metric name, label values) -> the series to add to: found once, then a dict hit.
        self._children: dict[
            tuple[str, tuple[str, ...]], prometheus_client.Counter | prometheus_client.Histogram
        ] = {}
        for metric in CATALOG:
            self._families[metric.name] = family = _family(metric, self.registry)
            for values in metric.label_values:
                self._children[metric.name, values] = family.labels(*values)
        self._collector = _PulledCollector(self._pulled)
        self.registry.register(self._collector)

    def _record(self, metric: Metric, labels: tuple[str, ...], amount: float) -> None:
        child = self._children.get((metric.name, labels))
        if child is None:
            family = self._families[metric.name]
            child = family.labels(*labels) if labels else family
            self._children[metric.name, labels] = child
        if isinstance(child, prometheus_client.Histogram):
            child.observe(amount)
        else:
            child.inc(amount)

    def unregister(self) -> None:
        """Remove every ddbstreams metric from the registry."""
        for family in self._families.values():
            self.registry.unregister(family)
        self.registry.unregister(self._collector)

    def exposition(self) -> bytes:
        """The registry's metrics in Prometheus' text format (what a scrape gets)."""
        return prometheus_client.generate_latest(self.registry)


def _family(
    metric: Metric, registry: CollectorRegistry
) -> prometheus_client.Counter | prometheus_client.Histogram:
    name = PREFIX + metric.name
    if metric.kind == "histogram":
        return prometheus_client.Histogram(
            name, metric.help, metric.labels, registry=registry, buckets=DURATION_BUCKETS
        )
    return prometheus_client.Counter(name, metric.help, metric.labels, registry=registry)


class _PulledCollector(Collector):
    """Produces the figures read on demand (see :class:`~ddbstreams.metrics._catalog.Pulled`)
    each time the registry is collected."""

    def __init__(self, pulled: Pulled) -> None:
        self._pulled = pulled

    def describe(self) -> Iterable[GaugeMetricFamily]:
        return list(_gauges())

    def collect(self) -> Iterable[GaugeMetricFamily]:
        pulled = self._pulled
        if not pulled.tracking:
            return []  # unknown rather than 0: nothing is being read
        age, age_max, leases = _gauges()
        ages = pulled.iterator_ages()
        for shard_id, seconds in sorted(ages.items()):
            age.add_metric([shard_id], seconds)
        age_max.add_metric([], max(ages.values(), default=0.0))
        gauges = [age, age_max]
        held = pulled.leases_held()
        if held is not None:
            leases.add_metric([], held)
            gauges.append(leases)
        return gauges


def _gauges() -> Iterator[GaugeMetricFamily]:
    yield GaugeMetricFamily(
        PREFIX + "iterator_age_seconds",
        "Per shard being read: now minus the approximate creation time of the newest record "
        "read from it; 0 when caught up.",
        labels=["shard_id"],
    )
    yield GaugeMetricFamily(
        PREFIX + "iterator_age_max_seconds",
        "The largest iterator age over the shards being read (0 when none is).",
    )
    yield GaugeMetricFamily(
        PREFIX + "leases_held", "Leases this worker holds now (workers of a group only)."
    )


class MetricsServer:
    """Serves ``GET /metrics`` (the text format) on ``host:port``, on the running event
    loop (aiohttp), so scrapes read the figures on the loop's thread.

    Port 0 binds any free port (:attr:`port` tells which once started). A port that cannot
    be bound is a :class:`~ddbstreams.ConfigurationError`.
    """

    __slots__ = ("_endpoint", "_metrics")

    def __init__(self, metrics: PrometheusMetrics, port: int, *, host: str = "127.0.0.1") -> None:
        self._metrics = metrics
        self._endpoint = LoopbackEndpoint("/metrics", self._handle, port, what="metrics", host=host)

    @property
    def port(self) -> int:
        return self._endpoint.port

    @property
    def url(self) -> str:
        return self._endpoint.url

    async def _handle(self, request: web.Request) -> web.Response:
        return web.Response(
            body=self._metrics.exposition(),
            headers={"Content-Type": prometheus_client.CONTENT_TYPE_LATEST},
        )

    async def start(self) -> None:
        """Start serving (the port is bound when this returns)."""
        await self._endpoint.start()

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        await self._endpoint.close()

    async def __aenter__(self) -> MetricsServer:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()
