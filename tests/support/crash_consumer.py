"""A consumer process for the crash test (tests/system/test_consumer_crash.py), run as a subprocess.

    python tests/support/crash_consumer.py --endpoint-url URL --region R --stream ARN \
        --store FILE --log LOGFILE [--batch-size N] [--parallelization-factor P] \
        [--max-sleep S] [--slow-rate R] [--slow-sleep S]

It runs a follow-mode :class:`ddbstreams.Consumer` with a :class:`SQLiteCheckpointStore` on
FILE until SIGTERM (graceful stop) or SIGKILL (the crash under test), and appends what it
does to LOGFILE, one JSON object per line, in the order it happens (everything runs on the
event loop thread, so the file order is the real order):

- ``{"ev": "start", "pid", "loaded"}``: the checkpoint the consumer loaded from the store
  (``Checkpoint.to_json()``, or null when the store had none), before reading anything;
- ``{"ev": "rec", "pid", "batch", "shard", "seq", "key"}``: one line per record of a batch
  the handler was given, written (one write, then fsync) when the handler starts;
- ``{"ev": "end", "pid", "batch"}``: the handler is returning, after a random sleep (up to
  ``--max-sleep``; with probability ``--slow-rate`` a "slow batch" of ``--slow-sleep``
  instead, which the test uses to kill a process while a batch is surely in the handler).
  Nothing yields between this line and the consumer marking the batch complete;
- ``{"ev": "save", "pid", "cp"}``: the consumer calls ``store.save(cp)`` (logged before the
  write starts; the consumer computes ``cp`` right before the call, without yielding);
- ``{"ev": "saved", "pid"}``: that save returned (the checkpoint is durable);
- ``{"ev": "stop", "pid"}``: a graceful stop finished and the store is closed.

The file name starts with an underscore so pytest does not collect it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
from typing import Any

import orjson

import ddbstreams
from ddbstreams import Checkpoint, Consumer, ConsumerOptions, Record, SQLiteCheckpointStore


class Log:
    """Appends JSON lines to a file; each call is one ``write`` (never interleaved)."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        self.pid = os.getpid()

    def write(self, events: list[dict[str, Any]], *, sync: bool = False) -> None:
        data = b"".join(orjson.dumps({**event, "pid": self.pid}) + b"\n" for event in events)
        view = memoryview(data)
        while view:
            written = os.write(self.fd, view)
            view = view[written:]
        if sync:
            os.fsync(self.fd)


class LoggingStore(SQLiteCheckpointStore):
    """The SQLite store, logging what was loaded and each save as it starts and returns."""

    def __init__(self, path: str, log: Log) -> None:
        super().__init__(path)
        self.log = log

    async def load(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        loaded = await super().load(stream_arn, name=name)
        self.log.write(
            [{"ev": "start", "loaded": None if loaded is None else loaded.to_json()}], sync=True
        )
        return loaded

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        self.log.write([{"ev": "save", "cp": checkpoint.to_json()}])
        await super().save(checkpoint, name=name)
        self.log.write([{"ev": "saved"}])


def key_of(record: Record) -> Any:
    keys = record.keys
    return keys["pk"] if list(keys) == ["pk"] else sorted(keys.items())


async def main(args: argparse.Namespace) -> None:
    log = Log(args.log)
    rng = random.Random()
    batches = 0

    async def handler(records: list[Record]) -> None:
        nonlocal batches
        batches += 1
        batch = f"{log.pid}-{batches}"
        log.write(
            [
                {
                    "ev": "rec",
                    "batch": batch,
                    "shard": r.shard_id,
                    "seq": r.sequence_number,
                    "key": key_of(r),
                }
                for r in records
            ],
            sync=True,
        )
        slow = rng.random() < args.slow_rate
        await asyncio.sleep(args.slow_sleep if slow else rng.uniform(0.0, args.max_sleep))
        log.write([{"ev": "end", "batch": batch}])

    consumer = Consumer(
        args.stream,
        handler,
        store=LoggingStore(args.store, log),
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        reader_options=ddbstreams.ReaderOptions(
            idle_poll_delay=0.01,
            idle_poll_max_delay=0.05,
            describe_interval=0.5,
            describe_rate=50.0,
            child_discovery_timeout=2.0,
        ),
        options=ConsumerOptions(
            batch_size=args.batch_size,
            parallelization_factor=args.parallelization_factor,
            retry_delay=0.01,
            retry_max_delay=0.1,
            stop_timeout=10.0,
        ),
    )
    # A graceful stop, asked for from the signal handler without waiting for it.
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, consumer.request_stop)
    try:
        await consumer.run()
    finally:
        await consumer.close()
    log.write([{"ev": "stop"}], sync=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--endpoint-url", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--stream", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--log", required=True)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--parallelization-factor", type=int, default=1)
    parser.add_argument("--max-sleep", type=float, default=0.02)
    parser.add_argument("--slow-rate", type=float, default=0.0)
    parser.add_argument("--slow-sleep", type=float, default=0.2)
    return parser.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
