"""``--metrics-port``: scraping a running ``ddbstreams tail --follow`` and a running
``ddbstreams run`` (real processes, against the stream simulator served over HTTP, so no
DynamoDB Local is needed)."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from ddbstreams._clock import SystemClock
from ddbstreams.testing import SimulatorServer, StreamSimulator
from tests.integration.test_cli_follow import DEADLINE, FollowingTail, _pump


@pytest.fixture
def served() -> Iterator[SimulatorServer]:
    # Real time: the command under test runs on the real clock too.
    with SimulatorServer(StreamSimulator(clock=SystemClock())) as server:
        yield server


def _env() -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name != "PYTHONUNBUFFERED"
    }
    env.update(
        AWS_ACCESS_KEY_ID="test", AWS_SECRET_ACCESS_KEY="test", AWS_EC2_METADATA_DISABLED="true"
    )
    return env


def _metrics_url(process: FollowingTail) -> str:
    line = process.wait_stderr("metrics on http://127.0.0.1:")
    match = re.search(r"(http://127\.0\.0\.1:\d+/metrics)", line)
    assert match is not None, line
    return match.group(1)


def _scrape(url: str) -> str:
    with urllib.request.urlopen(url, timeout=DEADLINE) as response:
        assert response.headers["Content-Type"].startswith("text/plain")
        return str(response.read().decode())


def _scrape_until(url: str, pattern: str) -> str:
    """Scrape until ``pattern`` shows (the figures move as the process polls)."""
    deadline = time.monotonic() + DEADLINE
    while True:
        text = _scrape(url)
        if re.search(pattern, text):
            return text
        if time.monotonic() > deadline:
            pytest.fail(f"{pattern!r} never showed in:\n{text}")
        time.sleep(0.2)


def test_tail_follow_serves_metrics(served: SimulatorServer) -> None:
    sim = served.simulator
    for i in range(4):
        sim.put_item({"pk": f"item-{i}"})
    tail = FollowingTail(
        [
            sim.stream_arn,
            "--follow",
            "--metrics-port",
            "0",
            "--endpoint-url",
            served.endpoint_url,
            "--region",
            "us-east-1",
        ],
        _env(),
    )
    try:
        url = _metrics_url(tail)
        for _ in range(4):
            tail.next_record()
        shard = sim.open_shard_ids()[0]
        # Caught up: a poll found nothing new, the age is 0.
        text = _scrape_until(url, rf'ddbstreams_iterator_age_seconds\{{shard_id="{shard}"\}} 0\.0')
        assert "ddbstreams_records_read_total 4.0" in text
        assert re.search(r'ddbstreams_get_records_calls_total\{outcome="records"\} 1\.0', text)
        assert re.search(r'ddbstreams_get_records_calls_total\{outcome="empty"\} [1-9]', text)
        assert re.search(r"ddbstreams_read_bytes_total [1-9]", text)
        assert "ddbstreams_iterator_age_max_seconds 0.0" in text
        assert "ddbstreams_shards_started_total 1.0" in text
        sim.put_item({"pk": "item-late"})
        tail.next_record()
        _scrape_until(url, r"ddbstreams_records_read_total 5\.0")
        status, _, _ = tail.stop(signal.SIGINT)
        assert status == 0
    finally:
        tail.kill()


HANDLER = """
def handle(records):
    for record in records:
        print(record.keys["pk"], flush=True)
"""


def test_run_serves_metrics(served: SimulatorServer, tmp_path: Path) -> None:
    sim = served.simulator
    for i in range(3):
        sim.put_item({"pk": f"item-{i}"})
    handler = tmp_path / "handler_for_metrics.py"
    handler.write_text(HANDLER)
    argv = [
        f"{handler}:handle",
        "--stream",
        sim.stream_arn,
        "--checkpoint",
        str(tmp_path / "checkpoints.sqlite"),
        "--metrics-port",
        "0",
        "--endpoint-url",
        served.endpoint_url,
        "--region",
        "us-east-1",
    ]
    run = _RunProcess(argv)
    try:
        url = _metrics_url(run)
        text = _scrape_until(url, r"ddbstreams_records_handled_total 3\.0")
        assert re.search(r"ddbstreams_batches_handled_total [1-9]", text)
        assert re.search(r"ddbstreams_checkpoints_saved_total [1-9]", text)
        assert "ddbstreams_handler_duration_seconds_count" in text
        assert "ddbstreams_iterator_age_seconds{shard_id=" in text
        assert "ddbstreams_leases_held" not in text  # not a group worker
        status, _, _ = run.stop(signal.SIGTERM)
        assert status == 0
    finally:
        run.kill()


class _RunProcess(FollowingTail):
    """A running ``ddbstreams run ...``, its output read as FollowingTail reads a tail's."""

    def __init__(self, argv: list[str]) -> None:  # FollowingTail's, for another command
        self.argv = [sys.executable, "-m", "ddbstreams", "run", *argv]
        self.process = subprocess.Popen(
            self.argv, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._stdout: queue.Queue[str | None] = queue.Queue()
        self._stderr: queue.Queue[str | None] = queue.Queue()
        self.stderr_lines: list[str] = []
        assert self.process.stdout is not None
        assert self.process.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(self.process.stdout, self._stdout), daemon=True),
            threading.Thread(target=_pump, args=(self.process.stderr, self._stderr), daemon=True),
        ]
        for thread in self._threads:
            thread.start()
