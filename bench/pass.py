"""One whole single pass over HTTP: ddbstreams vs a boto3 + TypeDeserializer loop, in CPU.

Against DynamoDB Local (one table, NEW_AND_OLD_IMAGES stream), ``--items`` wide, nested items
(maps, lists, sets, binary, decimals; about 1 KB each) are written once and then modified
once, so the stream holds ``2 * --items`` records (30,000 by default): INSERTs with a new
image, MODIFYs with both. Then, side by side in one process and interleaved, each reader
reads the whole stream from TRIM_HORIZON, ``--repeats`` times:

- ddbstreams: ``StreamReader(arn, client=..., start=TRIM_HORIZON)`` (a single pass,
  ``follow=False``), records decoded by the default parser;
- boto3: what a boto3 user writes: a ``dynamodbstreams`` client, DescribeStream,
  GetShardIterator(TRIM_HORIZON) per shard, a GetRecords loop (it stops after three empty
  pages in a row, as the reader's single pass does on an open shard) and
  ``TypeDeserializer`` over the Keys, NewImage and OldImage of every record.

DynamoDB Local returns up to 1,000 records per GetRecords whatever their size, where
DynamoDB stops at 1 MB; so both readers pass the same Limit, ``--page-limit`` (400 by
default: pages of about 1 MB of MODIFY records, 0.5 MB of INSERTs; 0 for none).

Measured: the CPU time of this process (``resource.getrusage(RUSAGE_SELF)``, user + sys)
around each pass, so the work of DynamoDB Local (another process) is not counted; both
clients are created and warmed up before anything is timed. Wall time is printed too but
depends mostly on DynamoDB Local. Both readers must deliver every record exactly once, in
order, with the same decoded images (checked once before timing; exit status 1 otherwise).
Run: ``.venv/bin/python bench/pass.py`` (``--help`` for the options).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import statistics
import string
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

import orjson
from _common import cpu_seconds
from decode import normalise, typed  # bench/decode.py, beside this script

from ddbstreams import (
    TRIM_HORIZON,
    Parser,
    ReaderOptions,
    RecordsPage,
    StreamReader,
    StreamsClient,
)
from ddbstreams.local import DYNAMODB_LOCAL_VERSION, DynamoDBLocal
from ddbstreams.model._encode import encode_item

BATCH = 25  # items per BatchWriteItem
CATCH_UP_EMPTY_PAGES = 3  # the reader's default ReaderOptions.catch_up_empty_pages

T = TypeVar("T")


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(lo, hi)))


def _money(rng: random.Random, top: int) -> Decimal:
    return Decimal(rng.randint(1, top * 100)) / 100


def make_item(rng: random.Random, n: int, version: int) -> dict[str, Any]:
    """One order-like item, about 1 KB as DynamoDB JSON, with every attribute type."""
    lines = [
        {
            "sku": f"SKU-{rng.randint(0, 99999):05d}",
            "qty": rng.randint(1, 9),
            "price": _money(rng, 500),
            "tags": {_word(rng, 3, 7) for _ in range(2)},
        }
        for _ in range(3)
    ]
    return {
        "pk": f"order#{n:07d}",
        "version": version,
        "status": ("NEW", "PAID", "SHIPPED")[version % 3],
        "created_at": f"2024-06-{1 + n % 28:02d}T{n % 24:02d}:{n % 60:02d}:00Z",
        "updated_at": 1717243200000 + n * 1000 + version,
        "total": _money(rng, 2000),
        "discount": Decimal("0.15") if n % 5 == 0 else 0,
        "currency": "EUR",
        "customer": {
            "id": f"c-{rng.randint(1, 50000):06d}",
            "name": f"{_word(rng, 4, 9)} {_word(rng, 5, 12)}",
            "email": f"{_word(rng, 5, 10)}@example.com",
            "tier": rng.choice(("basic", "silver", "gold")),
            "since": rng.randint(2010, 2024),
        },
        "shipping": {
            "address": {
                "street": f"{rng.randint(1, 300)} {_word(rng, 5, 12)} Street",
                "city": _word(rng, 4, 10),
                "zip": f"{rng.randint(0, 99999):05d}",
                "country": rng.choice(("FR", "DE", "IE", "ES")),
            },
            "geo": {
                "lat": Decimal(f"{rng.uniform(-90, 90):.5f}"),
                "lon": Decimal(f"{rng.uniform(-180, 180):.5f}"),
            },
            "express": rng.random() < 0.3,
            "eta_days": rng.randint(1, 10),
        },
        "lines": lines,
        "labels": {_word(rng, 4, 8) for _ in range(3)},
        "scores": {rng.randint(0, 1000), Decimal(rng.randint(1, 999)) / 10},
        "checksum": rng.randbytes(16),
        "attachments": {rng.randbytes(8) for _ in range(2)},
        "gift": rng.random() < 0.1,
        "note": None if n % 2 else _word(rng, 20, 60),
        "history": [{"at": 1717243200 + i, "event": f"step-{i}"} for i in range(version + 1)],
    }


def populate(table: Any, items: int, seed: int) -> int:
    """Write every item, then write each again modified: 2 * items stream records."""
    from boto3.dynamodb.types import TypeSerializer

    client = table.client
    serialize = TypeSerializer().serialize

    def batch(first: int, version: int) -> None:
        rng = random.Random(seed * 1_000_003 + first * 7 + version)
        last = min(first + BATCH, items)
        items_ = (make_item(rng, n, version) for n in range(first, last))
        requests = [
            {"PutRequest": {"Item": {k: serialize(v) for k, v in item.items()}}} for item in items_
        ]
        pending: dict[str, Any] = {table.name: requests}
        while pending:
            response = client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}

    size = len(orjson.dumps(encode_item(make_item(random.Random(seed), 0, 0))))
    print(f"writing {items} items (about {size} bytes of DynamoDB JSON each), then", end=" ")
    print("modifying each of them ...", flush=True)
    started = time.monotonic()
    # Per item, the modification is written after its first version: phase by phase.
    with ThreadPoolExecutor(4) as pool:
        for version in (0, 1):
            firsts = range(0, items, BATCH)
            list(pool.map(batch, firsts, [version] * len(firsts)))
    print(f"  written in {time.monotonic() - started:.0f} s", flush=True)
    return 2 * items


# --- the two readers ---------------------------------------------------------------------


def boto3_pass(
    client: Any, stream_arn: str, limit: int | None, keep: list[Any] | None = None
) -> tuple[list[str], int]:
    """The boto3 loop: (sequence numbers read, GetRecords calls); the images into ``keep``."""
    from boto3.dynamodb.types import TypeDeserializer

    deserialize = TypeDeserializer().deserialize
    shards: list[dict[str, Any]] = []
    params: dict[str, Any] = {"StreamArn": stream_arn}
    while True:
        description = client.describe_stream(**params)["StreamDescription"]
        shards += description["Shards"]
        if "LastEvaluatedShardId" not in description:
            break
        params["ExclusiveStartShardId"] = description["LastEvaluatedShardId"]
    sequence_numbers: list[str] = []
    calls = 0
    for shard in shards:  # DynamoDB Local lists parents before children
        iterator = client.get_shard_iterator(
            StreamArn=stream_arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        ).get("ShardIterator")
        empty = 0
        while iterator and empty < CATCH_UP_EMPTY_PAGES:
            page = client.get_records(ShardIterator=iterator, **({"Limit": limit} if limit else {}))
            calls += 1
            for record in page["Records"]:
                ddb = record["dynamodb"]
                keys = {k: deserialize(v) for k, v in ddb["Keys"].items()}
                new = ddb.get("NewImage")
                old = ddb.get("OldImage")
                if new is not None:
                    new = {k: deserialize(v) for k, v in new.items()}
                if old is not None:
                    old = {k: deserialize(v) for k, v in old.items()}
                sequence_numbers.append(ddb["SequenceNumber"])
                if keep is not None:
                    keep.append([keys, new, old])
            empty = 0 if page["Records"] else empty + 1
            iterator = page.get("NextShardIterator")
    return sequence_numbers, calls


class CountingClient(StreamsClient):
    """A StreamsClient that counts its GetRecords calls."""

    calls = 0

    async def get_records(
        self, shard_iterator: str, *, shard_id: str, parser: Parser[T], limit: int | None = None
    ) -> RecordsPage[T]:
        self.calls += 1
        return await super().get_records(
            shard_iterator, shard_id=shard_id, parser=parser, limit=limit
        )


async def ddbstreams_pass(
    client: CountingClient, stream_arn: str, limit: int | None, keep: list[Any] | None = None
) -> tuple[list[str], int]:
    """A single pass of StreamReader: (sequence numbers, GetRecords calls); images into
    ``keep``."""
    sequence_numbers: list[str] = []
    before = client.calls
    options = ReaderOptions(page_limit=limit)
    async with StreamReader(
        stream_arn, client=client, start=TRIM_HORIZON, options=options
    ) as reader:
        async for record in reader:
            sequence_numbers.append(record.sequence_number)
            if keep is not None:
                keep.append([record.keys, record.new_image, record.old_image])
    return sequence_numbers, client.calls - before


# --- checking and timing -----------------------------------------------------------------


def check(name: str, sequence_numbers: list[str], expected: int) -> list[str]:
    problems = []
    if len(sequence_numbers) != expected:
        problems.append(f"{name}: {len(sequence_numbers)} records, expected {expected}")
    if len(set(sequence_numbers)) != len(sequence_numbers):
        problems.append(f"{name}: records delivered twice")
    if [int(s) for s in sequence_numbers] != sorted(int(s) for s in sequence_numbers):
        problems.append(f"{name}: records out of order")
    return problems


Pass = Callable[[], Awaitable[tuple[list[str], int]]]


@dataclass
class Run:
    cpu: float  # seconds of this process's CPU (user + sys)
    wall: float
    records: int
    calls: int  # GetRecords calls


async def measure(run: Pass) -> Run:
    gc.collect()
    cpu, wall = cpu_seconds(), time.perf_counter()
    sequence_numbers, calls = await run()
    return Run(cpu_seconds() - cpu, time.perf_counter() - wall, len(sequence_numbers), calls)


async def compare(engine: DynamoDBLocal, stream_arn: str, expected: int, args: Any) -> int:
    import boto3

    limit = args.page_limit or None
    boto = boto3.client("dynamodbstreams", **engine.client_kwargs())
    async with CountingClient(**engine.client_kwargs()) as ours:
        # Warm-up and check: both clients and connections exist before anything is timed.
        ours_images: list[Any] = []
        boto_images: list[Any] = []
        read, _ = await ddbstreams_pass(ours, stream_arn, limit, ours_images)
        problems = check("ddbstreams", read, expected)
        read, _ = boto3_pass(boto, stream_arn, limit, boto_images)
        problems += check("boto3", read, expected)
        if not problems and typed(ours_images) != typed(normalise(boto_images)):
            problems.append("ddbstreams and boto3 decode the records differently")
        del ours_images, boto_images
        if problems:
            return report_problems(problems)

        async def run_boto() -> tuple[list[str], int]:
            return boto3_pass(boto, stream_arn, limit)

        readers: dict[str, Pass] = {
            "ddbstreams StreamReader": lambda: ddbstreams_pass(ours, stream_arn, limit),
            "boto3 + TypeDeserializer": run_boto,
        }
        results: dict[str, list[Run]] = {name: [] for name in readers}
        for _ in range(args.repeats):
            for name, run in readers.items():
                results[name].append(await measure(run))
    return report(results, expected, args.repeats)


def report_problems(problems: list[str]) -> int:
    for problem in problems:
        print("FAIL:", problem)
    return 1


def report(results: dict[str, list[Run]], expected: int, repeats: int) -> int:
    problems = [
        f"{name}: {run.records} records in a timed pass, expected {expected}"
        for name, runs in results.items()
        for run in runs
        if run.records != expected
    ]
    if problems:
        return report_problems(problems)
    print(f"a single pass over {expected} records, {repeats} passes each (interleaved)")
    print(f"{'reader':<26}{'best CPU s':>11}{'median CPU s':>14}{'µs/record':>11}", end="")
    print(f"{'median wall s':>15}{'calls':>7}")
    cpu: dict[str, tuple[float, float]] = {}
    for name, runs in results.items():
        times = [run.cpu for run in runs]
        best, median = min(times), statistics.median(times)
        cpu[name] = (best, median)
        print(f"{name:<26}{best:>11.2f}{median:>14.2f}{median / expected * 1e6:>11.0f}", end="")
        print(f"{statistics.median(run.wall for run in runs):>15.2f}{runs[0].calls:>7}")
    (ours_best, ours_median), (boto_best, boto_median) = cpu.values()
    print(
        f"CPU boto3 / ddbstreams: {boto_best / ours_best:.1f}x (best), "
        f"{boto_median / ours_median:.1f}x (median)"
    )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--items", type=int, default=15_000, help="items (2 records each)")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per reader")
    parser.add_argument(
        "--page-limit",
        type=int,
        default=400,
        help="GetRecords Limit of both readers (0: none; see the module docstring)",
    )
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    with DynamoDBLocal() as engine:
        print(f"DynamoDB Local {DYNAMODB_LOCAL_VERSION} at {engine.endpoint_url}")
        table = engine.source_table("bench_pass")
        expected = populate(table, args.items, args.seed)
        return asyncio.run(compare(engine, table.stream_arn, expected, args))


if __name__ == "__main__":
    sys.exit(main())
