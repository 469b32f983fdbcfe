"""The OpenTelemetry exporter, over ``opentelemetry-api`` (the ``otel`` extra).

Counters and the handler-duration histogram are synchronous instruments fed by events,
without a shard attribute; the iterator age per shard, its maximum and the leases held are
observable gauges whose callbacks read the tracked sources at each collection, so a shard
no longer read is simply not observed any more. Exporting (OTLP, Prometheus, in memory) is
the SDK's ``MeterProvider``'s business; without one configured the API's no-op meter
records nothing.
"""

from __future__ import annotations

from collections.abc import Iterable

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Histogram, Meter, Observation

from ddbstreams.metrics._catalog import CATALOG, Metric
from ddbstreams.metrics._listener import EventMetrics

__all__ = ["OpenTelemetryMetrics"]


class OpenTelemetryMetrics(EventMetrics):
    """ddbstreams' metrics as OpenTelemetry instruments of ``meter`` (by default the
    global meter provider's meter ``ddbstreams``).

    Pass it as ``on_event=`` of a :class:`~ddbstreams.StreamReader` or
    :class:`~ddbstreams.Consumer`, and :meth:`track` that reader or consumer for the
    iterator age (``ddbstreams.iterator.age``, attribute ``shard_id``) and the leases held.
    """

    __slots__ = ("_attributes", "_instruments")

    def __init__(self, meter: Meter | None = None) -> None:
        super().__init__()
        if meter is None:
            meter = metrics.get_meter("ddbstreams")
        self._instruments: dict[str, Counter | Histogram] = {
            metric.name: _instrument(meter, metric) for metric in CATALOG
        }
        # (metric name, label values) -> attributes: built once per combination.
        self._attributes: dict[tuple[str, tuple[str, ...]], dict[str, str]] = {}
        meter.create_observable_gauge(
            "ddbstreams.iterator.age",
            callbacks=[self._observe_ages],
            unit="s",
            description="Per shard being read: now minus the approximate creation time of "
            "the newest record read from it; 0 when caught up.",
        )
        meter.create_observable_gauge(
            "ddbstreams.iterator.age.max",
            callbacks=[self._observe_max_age],
            unit="s",
            description="The largest iterator age over the shards being read.",
        )
        meter.create_observable_gauge(
            "ddbstreams.leases.held",
            callbacks=[self._observe_leases],
            unit="{lease}",
            description="Leases this worker holds now (workers of a group only).",
        )

    def _record(self, metric: Metric, labels: tuple[str, ...], amount: float) -> None:
        key = (metric.name, labels)
        attributes = self._attributes.get(key)
        if attributes is None:
            attributes = self._attributes[key] = dict(zip(metric.labels, labels, strict=True))
        instrument = self._instruments[metric.name]
        if isinstance(instrument, Histogram):
            instrument.record(amount, attributes)
        else:
            instrument.add(amount, attributes)

    def _observe_ages(self, options: CallbackOptions) -> Iterable[Observation]:
        ages = self._pulled.iterator_ages()
        return [Observation(age, {"shard_id": shard}) for shard, age in sorted(ages.items())]

    def _observe_max_age(self, options: CallbackOptions) -> Iterable[Observation]:
        if not self._pulled.tracking:
            return []
        return [Observation(max(self._pulled.iterator_ages().values(), default=0.0))]

    def _observe_leases(self, options: CallbackOptions) -> Iterable[Observation]:
        held = self._pulled.leases_held()
        return [] if held is None else [Observation(held)]


def _instrument(meter: Meter, metric: Metric) -> Counter | Histogram:
    if metric.kind == "histogram":
        return meter.create_histogram(metric.otel_name, unit=metric.unit, description=metric.help)
    return meter.create_counter(metric.otel_name, unit=metric.unit, description=metric.help)
