"""Helpers the benchmarks share: forked scenarios, CPU time, percentiles, error reports."""

from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

from ddbstreams import Parser, Record, RecordsPage, StreamsClient


def in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a forked process and return its (JSON) result.

    Each scenario gets a process of its own, so that its peak RSS (``ru_maxrss``) and
    memory growth are its own and scenarios cannot disturb each other.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code
        os.close(read_end)
        status = 0
        try:
            outcome = function(*args)
        except BaseException:
            outcome = {"error": traceback.format_exc()}
            status = 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps(outcome).encode())
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"scenario process ended without a result (wait status {status})")
    result: dict[str, Any] = json.loads(data)
    if "error" in result:
        raise RuntimeError(f"scenario failed:\n{result['error']}")
    return result


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the value itself for one value."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(problems: list[str]) -> int:
    """Print each problem on stderr; the exit status of a failed check (1)."""
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1


# KCL's documented defaults for DynamoDB Streams, as the DynamoDB Streams Kinesis Adapter
# (awslabs/dynamodb-streams-kinesis-adapter, the AWS-recommended way to run KCL on DynamoDB
# Streams) sets them for KCL 3.x:
# - DynamoDBStreamsPollingConfig: ``idleTimeBetweenReadsInMillis = 1000L`` (KCL's own
#   Kinesis default differs; the adapter overrides it for DynamoDB Streams).
# - DynamoDBStreamsSleepTimeController.getSleepTimeMillis: ``sleepTime =
#   lastRecordsCount > 0 ? idleMillisBetweenCalls : 2 * idleMillisBetweenCalls``, minus the
#   time since the last successful call (0 if already past). KCL's PrefetchRecordsPublisher
#   sets that time right after GetRecords returns and skips the wait before the very first
#   call. So the wait doubles once after an empty read and does not grow further (the
#   "cap" is 2 s); catch-up mode (DynamoDBStreamsClientSideCatchUpConfig) is off by default.
# The AWS Kinesis guide ("Improve low-latency processing") states the same 1 s polling
# default for KCL in general.
KCL_IDLE_BETWEEN_READS = 1.0
KCL_EMPTY_READ_FACTOR = 2.0


async def follow_on_kcl_schedule(
    client: StreamsClient,
    shard_id: str,
    iterator: str | None,
    parser: Parser[Record],
    on_page: Callable[[RecordsPage[Record]], None],
) -> None:
    """Poll one shard on KCL's schedule until it ends: the next GetRecords starts
    ``KCL_IDLE_BETWEEN_READS`` after the previous one returned, twice that after an empty
    one, none before the first. The baseline every benchmark compares with."""
    last_return: float | None = None
    last_count = 0
    while iterator is not None:
        if last_return is not None:
            factor = 1.0 if last_count > 0 else KCL_EMPTY_READ_FACTOR
            wait = KCL_IDLE_BETWEEN_READS * factor - (time.monotonic() - last_return)
            if wait > 0:
                await asyncio.sleep(wait)
        page: RecordsPage[Record] = await client.get_records(
            iterator, shard_id=shard_id, parser=parser
        )
        last_return = time.monotonic()
        last_count = len(page.records)
        on_page(page)
        iterator = page.next_shard_iterator
