"""A worker process of a group for the system tests (tests/system/test_group_workers.py).

    python -m tests.support.group_worker --endpoint-url URL --stream ARN --group APP \
        --worker-id ID --log FILE [--failover-time S] [--batch-size N] [--handler-sleep S]

It runs a :class:`ddbstreams.Consumer` in the group until SIGTERM (graceful stop: in-flight
batches finish, leases are checkpointed and released), SIGKILL (a crash) or SIGSTOP/SIGCONT
(a zombie), and appends what it does to FILE, one JSON object per line with ``t`` (wall
clock, comparable between processes of one machine) and ``w`` (the worker id):

- ``{"ev": "rec", "shard", "seq", "key"}``: a record of a batch the handler was given,
  written (one write, then fsync) when the handler starts;
- ``{"ev": "end", "shard"}``: the handler returns;
- ``{"ev": "cp", "shard", "pos"}``: a checkpoint stored in the shard's lease;
- ``{"ev": "taken" | "released" | "lost", "shard", ...}``: lease events;
- ``{"ev": "group", "workers"}``: the live workers as this one sees them;
- ``{"ev": "created", "shards"}``: leases this worker created (``LeasesCreated``);
- ``{"ev": "calls", "ops"}``: on SIGUSR1, and after the graceful stop, the calls with a
  successful response this worker's client made so far, per operation (cumulative:
  subtract two of them to count a window; ``bench/workers.py`` does);
- ``{"ev": "stopped"}``: the graceful stop is over.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections import Counter
from typing import Any

import orjson

import ddbstreams
from ddbstreams import (
    CheckpointSaved,
    Consumer,
    Event,
    GroupChanged,
    GroupOptions,
    LeaseLost,
    LeaseReleased,
    LeasesCreated,
    LeaseTaken,
    Record,
)


class Log:
    """Appends JSON lines to a file; each call is one ``write`` (never interleaved)."""

    def __init__(self, path: str, worker_id: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.worker_id = worker_id

    def write(self, events: list[dict[str, Any]], *, sync: bool = False) -> None:
        now = time.time()
        data = b"".join(
            orjson.dumps({**event, "t": now, "w": self.worker_id}) + b"\n" for event in events
        )
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if sync:
            os.fsync(self.fd)


def on_event(log: Log) -> Any:
    def record(event: Event) -> None:
        match event:
            case CheckpointSaved(_, _, shard_id, position) if shard_id is not None:
                log.write([{"ev": "cp", "shard": shard_id, "pos": position}])
            case LeaseTaken(_, shard_id, _, previous, expired):
                log.write([{"ev": "taken", "shard": shard_id, "from": previous, "exp": expired}])
            case LeaseReleased(_, shard_id, _, reason):
                log.write([{"ev": "released", "shard": shard_id, "why": reason}])
            case LeaseLost(_, shard_id, _, reason):
                log.write([{"ev": "lost", "shard": shard_id, "why": reason}])
            case GroupChanged(_, workers):
                log.write([{"ev": "group", "workers": list(workers)}])
            case LeasesCreated(_, shard_ids):
                log.write([{"ev": "created", "shards": list(shard_ids)}])
            case _:
                pass

    return record


def handler(log: Log, sleep: float) -> Any:
    async def handle(records: list[Record]) -> None:
        log.write(
            [
                {"ev": "rec", "shard": r.shard_id, "seq": r.sequence_number, "key": r.keys["pk"]}
                for r in records
            ],
            sync=True,
        )
        if sleep:
            await asyncio.sleep(sleep)
        log.write([{"ev": "end", "shard": records[0].shard_id if records else None}])

    return handle


async def main(args: argparse.Namespace) -> None:
    log = Log(args.log, args.worker_id)
    client = ddbstreams.StreamsClient(
        endpoint_url=args.endpoint_url,
        region_name="ddblocal",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    consumer = Consumer(
        args.stream,
        handler(log, args.handler_sleep),
        group=args.group,
        worker_id=args.worker_id,
        group_options=GroupOptions(
            failover_time=args.failover_time,
            membership_interval=args.membership_interval,
            lease_scan_interval=args.lease_scan_interval,
        ),
        client=client,
        batch_size=args.batch_size,
        on_event=on_event(log),
    )
    calls: Counter[str] = Counter()
    client.add_response_listener(lambda operation: calls.update((operation,)))

    def log_calls() -> None:
        log.write([{"ev": "calls", "ops": dict(calls)}], sync=True)

    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, consumer.request_stop)
    loop.add_signal_handler(signal.SIGUSR1, log_calls)
    try:
        await consumer.run()
    finally:
        await client.close()
    log_calls()
    log.write([{"ev": "stopped"}], sync=True)


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--worker-id", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--failover-time", type=float, default=3.0)
    parser.add_argument("--membership-interval", type=float, default=0.25)
    parser.add_argument("--lease-scan-interval", type=float, default=2.0)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--handler-sleep", type=float, default=0.0)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse()))
