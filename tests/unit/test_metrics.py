"""Metrics (``ddbstreams.metrics``): events counted, iterator age read on demand, Prometheus
scraped over HTTP from a running consumer, OpenTelemetry read through the SDK's in-memory
reader, and per-shard series that do not outlive their shards."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import prometheus_client
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry

from ddbstreams import (
    BatchFailed,
    BatchHandled,
    CheckpointSaved,
    Consumer,
    GetRecordsCalled,
    LeaseLost,
    LeaseReleased,
    LeaseTaken,
    MemoryCheckpointStore,
    RecordsGivenUp,
    RecordsSkipped,
    RecordsTrimmed,
    StreamReader,
    Throttled,
)
from ddbstreams._clock import SystemClock
from ddbstreams.metrics import OpenTelemetryMetrics, PrometheusMetrics
from ddbstreams.testing import StreamSimulator
from ddbstreams.testing.simulator import SimulatedClock

SHARD = "shardId-00000001764397880000-0a1b2c3d"


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_events_become_prometheus_counters() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    for event in (
        GetRecordsCalled(SHARD, "records", 3, 900),
        GetRecordsCalled(SHARD, "empty", 0, 40),
        GetRecordsCalled(SHARD, "throttled"),
        Throttled("GetRecords", SHARD, 1, 0.1),
        Throttled("DescribeStream", None, 1, 0.1),
        BatchHandled(SHARD, 3, 0.02),
        BatchFailed(SHARD, 2, 1, "ValueError: x", True),
        BatchFailed(SHARD, 2, 3, "ValueError: x", False),
        RecordsGivenUp(SHARD, 2, "RetryAttemptsExhausted"),
        CheckpointSaved("arn", "app", SHARD, "123"),
        RecordsTrimmed(SHARD, None),
        RecordsSkipped(SHARD, 7, datetime(2026, 12, 1, tzinfo=UTC), "123"),
        LeaseTaken("app", SHARD, "w1", None, expired=False),
        LeaseTaken("app", SHARD, "w1", "w0", expired=True),
        LeaseReleased("app", SHARD, "w1", "balance"),
        LeaseLost("app", SHARD, "w1", "taken by w2"),
    ):
        metrics(event)

    def total(name: str, **labels: str) -> float | None:
        return _value(registry, f"ddbstreams_{name}_total", **labels)

    assert total("records_read") == 3
    assert total("read_bytes") == 940
    assert total("get_records_calls", outcome="records") == 1
    assert total("get_records_calls", outcome="empty") == 1
    assert total("get_records_calls", outcome="throttled") == 2  # a retried attempt, the last
    assert total("get_records_calls", outcome="error") == 0
    assert total("requests_throttled", operation="DescribeStream") == 1
    assert total("batches_handled") == 1
    assert total("records_handled") == 3
    assert _value(registry, "ddbstreams_handler_duration_seconds_count") == 1
    assert _value(registry, "ddbstreams_handler_duration_seconds_sum") == pytest.approx(0.02)
    assert total("batches_failed", cause="exception") == 2
    assert total("batches_retried") == 1
    assert total("batches_given_up", condition="RetryAttemptsExhausted") == 1
    assert total("records_given_up", condition="RetryAttemptsExhausted") == 2
    assert total("checkpoints_saved") == 1
    assert total("trimmed_gaps", shard_gone="false") == 1
    assert total("records_skipped") == 7
    assert total("leases_taken", previous_owner="none") == 1
    assert total("leases_taken", previous_owner="expired") == 1
    assert total("leases_stolen") == 1
    assert total("leases_released", reason="balance") == 1
    assert total("leases_lost") == 1
    # Nothing tracked: the iterator age is unknown, not 0.
    assert _value(registry, "ddbstreams_iterator_age_max_seconds") is None
    # No counter carries a shard id: shard ids churn.
    assert "shard_id" not in metrics.exposition().decode()


class _Source:
    """A stand-in reader: the iterator ages it reports, and leases as a group's worker."""

    group = "app"

    def __init__(self, ages: Mapping[str, float]) -> None:
        self.ages = dict(ages)

    def lag(self) -> dict[str, float]:
        return dict(self.ages)

    def leases(self) -> frozenset[str]:
        return frozenset(self.ages)


def _otel_points(reader: InMemoryMetricReader) -> dict[str, list[tuple[dict[str, Any], Any]]]:
    points: dict[str, list[tuple[dict[str, Any], Any]]] = {}
    data = reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    value = getattr(point, "value", None)
                    if value is None:
                        value = (point.count, point.sum)  # type: ignore[union-attr]
                    points.setdefault(metric.name, []).append((dict(point.attributes), value))
    return points


def test_opentelemetry_through_the_in_memory_reader() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    metrics = OpenTelemetryMetrics(provider.get_meter("test"))
    source = _Source({SHARD: 12.5, "shardId-2": 0.0})
    metrics.track(source)
    metrics(GetRecordsCalled(SHARD, "records", 4, 1000))
    metrics(GetRecordsCalled(SHARD, "empty", 0, 30))
    metrics(BatchHandled(SHARD, 4, 0.5))
    metrics(LeaseTaken("app", SHARD, "w1", "w0", expired=True))

    points = _otel_points(reader)
    assert points["ddbstreams.records.read"] == [({}, 4)]
    assert points["ddbstreams.read.size"] == [({}, 1030)]
    assert sorted(points["ddbstreams.get_records.calls"], key=str) == [
        ({"outcome": "empty"}, 1),
        ({"outcome": "records"}, 1),
    ]
    assert points["ddbstreams.handler.duration"] == [({}, (1, 0.5))]
    assert points["ddbstreams.leases.stolen"] == [({}, 1)]
    assert sorted(points["ddbstreams.iterator.age"], key=str) == [
        ({"shard_id": SHARD}, 12.5),
        ({"shard_id": "shardId-2"}, 0.0),
    ]
    assert points["ddbstreams.iterator.age.max"] == [({}, 12.5)]
    assert points["ddbstreams.leases.held"] == [({}, 2)]

    # A shard that is no longer read is no longer observed.
    source.ages = {"shardId-3": 1.0}
    points = _otel_points(reader)
    assert points["ddbstreams.iterator.age"] == [({"shard_id": "shardId-3"}, 1.0)]
    provider.shutdown()


async def test_iterator_age_is_zero_when_caught_up_and_does_not_grow_while_idle() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock)
    for i in range(3):
        sim.put_item({"pk": f"item-{i}"})
    await clock.sleep(100)  # the records are 100 s old when read
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    async with StreamReader(
        sim.stream_arn, follow=True, client=sim.client(), on_event=metrics, clock=clock
    ) as reader:
        metrics.track(reader)
        shard = sim.open_shard_ids()[0]
        records = reader.__aiter__()
        await anext(records)
        age = _value(registry, "ddbstreams_iterator_age_seconds", shard_id=shard)
        assert age is not None
        assert age >= 100
        assert _value(registry, "ddbstreams_iterator_age_max_seconds") == age
        await anext(records)
        await anext(records)
        await clock.sleep(30)  # polls find nothing new: caught up
        assert _value(registry, "ddbstreams_iterator_age_seconds", shard_id=shard) == 0
        await clock.sleep(600)  # idle for ten minutes: still 0
        assert _value(registry, "ddbstreams_iterator_age_seconds", shard_id=shard) == 0
        assert _value(registry, "ddbstreams_iterator_age_max_seconds") == 0
        empty = _value(registry, "ddbstreams_get_records_calls_total", outcome="empty")
        assert empty is not None
        assert empty > 10
        assert _value(registry, "ddbstreams_records_read_total") == 3


async def test_per_shard_series_of_finished_shards_go_away() -> None:
    """Shards roll over many times: only the shards read now have an iterator-age series."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2)
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    seen: set[str] = set()
    rounds = 25
    async with StreamReader(
        sim.stream_arn, follow=True, client=sim.client(), on_event=metrics, clock=clock
    ) as reader:
        metrics.track(reader)
        records = reader.__aiter__()
        for i in range(rounds):
            sim.put_item({"pk": f"item-{i}"})
            sim.roll_over()
            record = await anext(records)
            seen.add(record.shard_id)
            series = _shard_series(metrics)
            assert len(series) <= 4  # two open shards, and at most their parents finishing
        await clock.sleep(30)
        series = _shard_series(metrics)
    assert series <= set(sim.open_shard_ids())
    assert len(series) == 2
    assert len(seen) > 10  # many shards were read and finished
    finished = _value(registry, "ddbstreams_shards_finished_total")
    assert finished is not None
    assert finished >= rounds


def _shard_series(metrics: PrometheusMetrics) -> set[str]:
    text = metrics.exposition().decode()
    return set(re.findall(r'shard_id="([^"]+)"', text))


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


async def test_a_running_consumer_is_scraped_over_http() -> None:
    sim = StreamSimulator(clock=SystemClock())
    for i in range(5):
        sim.put_item({"pk": f"item-{i}"})
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    handled = asyncio.Event()
    count = 0

    def handler(records: list[Any]) -> None:
        nonlocal count
        count += len(records)
        if count >= 5:
            handled.set()

    consumer = Consumer(
        sim.stream_arn,
        handler,
        store=MemoryCheckpointStore(),
        client=sim.client(),
        on_event=metrics,
    )
    metrics.track(consumer)
    server, thread = prometheus_client.start_http_server(0, addr="127.0.0.1", registry=registry)
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    run = asyncio.create_task(consumer.run())
    try:
        await asyncio.wait_for(handled.wait(), 30)
        await asyncio.sleep(1.5)  # a poll finds nothing more, a checkpoint is saved
        text = await asyncio.to_thread(_scrape, url)
    finally:
        await consumer.stop()
        await run
        await consumer.close()
        server.shutdown()
        thread.join(5)
    shard = sim.open_shard_ids()[0]
    assert "ddbstreams_records_read_total 5.0" in text
    assert "ddbstreams_records_handled_total 5.0" in text
    assert re.search(r"ddbstreams_batches_handled_total [1-9]", text)
    assert re.search(r"ddbstreams_checkpoints_saved_total [1-9]", text)
    assert re.search(r'ddbstreams_get_records_calls_total\{outcome="records"\} [1-9]', text)
    assert f'ddbstreams_iterator_age_seconds{{shard_id="{shard}"}} 0.0' in text
    assert "ddbstreams_handler_duration_seconds_bucket" in text


def test_ddbstreams_imports_without_the_exporters() -> None:
    code = (
        "import sys\n"
        "sys.modules['prometheus_client'] = None\n"
        "sys.modules['opentelemetry'] = None\n"
        "import ddbstreams, ddbstreams.metrics\n"
        "try:\n"
        "    ddbstreams.metrics.PrometheusMetrics\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
        "try:\n"
        "    ddbstreams.metrics.OpenTelemetryMetrics\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    lines = result.stdout.splitlines()
    assert "pip install 'ddbstreams[prometheus]'" in lines[0]
    assert "pip install 'ddbstreams[otel]'" in lines[1]
