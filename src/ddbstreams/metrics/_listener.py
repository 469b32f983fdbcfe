"""The part both exporters share: an event listener over the catalog, and the sources of
the figures read on demand."""

from __future__ import annotations

from collections.abc import Callable

from ddbstreams._events import Event
from ddbstreams.metrics._catalog import LagSource, Metric, Pulled, measurements

__all__ = ["EventMetrics", "missing_extra"]


class EventMetrics:
    """An event listener (``on_event=metrics``, or ``hub.listen(metrics)``) that turns
    events into metrics; :meth:`track` adds the figures read when scraped.

    Subclasses say how one measurement is recorded (:meth:`_record`). Listeners run on the
    event loop for every event, so this does little: a ``match`` and an addition or two.
    """

    __slots__ = ("_pulled",)

    def __init__(self) -> None:
        self._pulled = Pulled()

    def __call__(self, event: Event) -> None:
        for metric, labels, amount in measurements(event):
            self._record(metric, labels, amount)

    def track(self, source: LagSource) -> Callable[[], None]:
        """Report the iterator age of every shard ``source`` (a
        :class:`~ddbstreams.StreamReader` or :class:`~ddbstreams.Consumer`) reads, and the
        leases a consumer in a group holds; returns a function that stops it."""
        return self._pulled.track(source)

    def _record(self, metric: Metric, labels: tuple[str, ...], amount: float) -> None:
        raise NotImplementedError


def missing_extra(what: str, module: str, extra: str) -> ImportError:
    """The error for an exporter whose library is not installed."""
    return ImportError(
        f"{what} needs {module}, which is not installed: pip install 'ddbstreams[{extra}]'"
    )
