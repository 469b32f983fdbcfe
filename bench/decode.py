"""Decoding one full GetRecords page: ddbstreams vs botocore + boto3's TypeDeserializer.

Builds one realistic page (1000 NEW_AND_OLD_IMAGES records, about 1 MB, every attribute
type) and times, side by side in one run:

- ddbstreams: ``parse_get_records_body(body, shard_id, DefaultParser())`` (records fully
  materialised, images decoded to Python values);
- baseline:   what a boto3 user pays: botocore's JSON response parsing of the same bytes
  against the GetRecords output shape, then ``TypeDeserializer`` over every Keys, NewImage
  and OldImage;
- floor:      bare ``orjson.loads(body)``, once as in real use (garbage collector on) and
              once with the collector paused, as ddbstreams pauses it while it parses a
              page: the stricter floor.

Both pipelines are checked to produce the same decoded images before anything is timed, so
a broken fast path cannot look fast. Times are the CPU time of this process
(``time.process_time``), so that other work on a shared machine does not count.
Run: ``.venv/bin/python bench/decode.py``.
"""

from __future__ import annotations

import base64
import gc
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import orjson

from ddbstreams.model._decode import DefaultParser, parse_get_records_body
from ddbstreams.model._encode import encode_item

SHARD_ID = "shardId-00000001700000000000-0123abcd"
RECORDS = 1000
TARGET_BYTES = 1_000_000


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choices(string.ascii_letters + string.digits, k=rng.randint(lo, hi)))


def _item(rng: random.Random, n: int, variant: int) -> dict[str, Any]:
    """One item with every attribute type, sized so a page comes out near 1 MB."""
    big = rng.randint(10**37, 10**38 - 1) * rng.choice((1, -1))  # 38 significant digits
    return {
        "pk": f"customer#{n % 97:04d}",
        "sk": n,
        "name": _word(rng, 4, 10),
        "price": Decimal(rng.randint(1, 10**7)) / 100,
        "balance": big if n % 2 else Decimal(f"{big}E-20"),
        "active": rng.random() < 0.5,
        "deleted": None,
        "avatar": rng.randbytes(12),
        "tags": {_word(rng, 3, 6) for _ in range(2)},
        "scores": {rng.randint(-1000, 10**6), Decimal("2.5")},
        "keys": {rng.randbytes(6) for _ in range(2)},
        "address": {
            "zip": f"{rng.randint(0, 99999):05d}",
            "geo": {"lat": Decimal(f"{rng.uniform(-90, 90):.4f}"), "lon": variant},
        },
        "lines": [{"sku": _word(rng, 6, 6), "qty": rng.randint(1, 9), "gift": False}],
    }


def build_page(seed: int = 20240601) -> bytes:
    """One GetRecords response body as the service sends it (B as base64 text)."""
    rng = random.Random(seed)
    records = []
    base_seq = 4930000000000000000000000000
    for n in range(RECORDS):
        event = ("INSERT", "MODIFY", "INSERT", "REMOVE")[n % 4]
        old = _item(rng, n, 1)
        new = _item(rng, n, 2)
        dynamodb: dict[str, Any] = {
            "ApproximateCreationDateTime": 1717243200 + n // 50 + (0.5 if n % 3 else 0),
            "Keys": encode_item({"pk": new["pk"], "sk": new["sk"]}),
            "SequenceNumber": str(base_seq + n * 1000),
            "SizeBytes": 0,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if event != "REMOVE":
            dynamodb["NewImage"] = encode_item(new)
        if event != "INSERT":
            dynamodb["OldImage"] = encode_item(old)
        dynamodb["SizeBytes"] = len(orjson.dumps(dynamodb)) // 2
        record: dict[str, Any] = {
            "eventID": f"{rng.getrandbits(128):032x}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": "eu-west-1",
            "dynamodb": dynamodb,
        }
        if event == "REMOVE" and n % 8 == 3:
            record["userIdentity"] = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
        records.append(record)
    body = {
        "Records": records,
        "NextShardIterator": "arn:aws:dynamodb:eu-west-1:123456789012:table/t/stream/"
        "2024-06-01T00:00:00.000|1|" + base64.b64encode(b"x" * 200).decode(),
    }
    return orjson.dumps(body)


def _botocore_pipeline() -> Callable[[bytes], list[dict[str, Any] | None]]:
    """What a boto3 user pays per page: botocore's response parsing, then TypeDeserializer."""
    import botocore.parsers
    import botocore.session
    from boto3.dynamodb.types import TypeDeserializer

    model = botocore.session.get_session().get_service_model("dynamodbstreams")
    shape = model.operation_model("GetRecords").output_shape
    parser = botocore.parsers.create_parser(model.metadata["protocol"])
    deserialize = TypeDeserializer().deserialize
    headers = {"x-amzn-requestid": "bench", "content-type": "application/x-amz-json-1.0"}

    def run(body: bytes) -> list[dict[str, Any] | None]:
        parsed = parser.parse({"body": body, "headers": headers, "status_code": 200}, shape)
        images: list[dict[str, Any] | None] = []
        for record in parsed["Records"]:
            ddb = record["dynamodb"]
            for part in ("Keys", "NewImage", "OldImage"):
                image = ddb.get(part)
                images.append(
                    None if image is None else {k: deserialize(v) for k, v in image.items()}
                )
        return images

    return run


def _ddbstreams(body: bytes) -> list[Any]:
    return parse_get_records_body(body, SHARD_ID, DefaultParser()).records


def normalise(value: Any) -> Any:
    """boto3's types as ddbstreams decodes them: Binary -> bytes, integral Decimal -> int."""
    from boto3.dynamodb.types import Binary

    if isinstance(value, Binary):
        return value.value
    if isinstance(value, Decimal):
        integral = int(value)
        return integral if integral == value else value
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, set):
        return {normalise(v) for v in value}
    return value


def typed(value: Any) -> Any:
    """A comparable form that also tells int from Decimal and bytes from str."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, set):
        return sorted((typed(v) for v in value), key=repr)
    return (type(value).__name__, value)


def _check(body: bytes, baseline: Callable[[bytes], list[dict[str, Any] | None]]) -> None:
    records = _ddbstreams(body)
    expected = [normalise(image) for image in baseline(body)]
    ours: list[dict[str, Any] | None] = []
    for record in records:
        ours += [record.keys, record.new_image, record.old_image]
    assert len(records) == RECORDS, len(records)
    assert typed(ours) == typed(expected), "ddbstreams and boto3 decode the page differently"
    raw = orjson.loads(body)["Records"]
    for record, wire in zip(records, raw, strict=True):
        assert record.sequence_number == wire["dynamodb"]["SequenceNumber"]
        stamp = wire["dynamodb"]["ApproximateCreationDateTime"]
        assert record.approximate_creation_time.timestamp() == stamp
        assert record.event_name == wire["eventName"]
        assert (record.user_identity is not None) == ("userIdentity" in wire)


def _loads_without_gc(body: bytes) -> Any:
    gc.disable()
    try:
        return orjson.loads(body)
    finally:
        gc.enable()


def _time(
    pipelines: dict[str, Callable[[bytes], object]], body: bytes, repeats: int
) -> dict[str, tuple[float, float]]:
    """(best, median) CPU seconds per page of each pipeline, GC on as in real use.

    Runs are interleaved round-robin so that load from elsewhere on the machine hits every
    pipeline alike and the ratios stay meaningful.
    """
    times: dict[str, list[float]] = {name: [] for name in pipelines}
    for _ in range(repeats):
        for name, run in pipelines.items():
            gc.collect()
            start = time.process_time()
            result = run(body)
            times[name].append(time.process_time() - start)
            del result
    return {name: (min(t), statistics.median(t)) for name, t in times.items()}


def main() -> int:
    body = build_page()
    baseline = _botocore_pipeline()
    _check(body, baseline)
    repeats = 25
    results = _time(
        {
            "ddbstreams DefaultParser": _ddbstreams,
            "botocore + TypeDeserializer": baseline,
            "orjson.loads (floor)": orjson.loads,
            "orjson.loads, GC paused": _loads_without_gc,
        },
        body,
        repeats,
    )
    print(f"one GetRecords page: {RECORDS} records, {len(body) / 1e6:.2f} MB, {repeats} runs each")
    print(f"{'pipeline (CPU time)':<30}{'best ms':>10}{'median ms':>12}")
    for name, (best, median) in results.items():
        print(f"{name:<30}{best * 1e3:>10.1f}{median * 1e3:>12.1f}")
    ours, boto, floor, strict = results.values()
    for label, num, den in (
        ("baseline / ddbstreams", boto, ours),
        ("ddbstreams / floor", ours, floor),
        ("ddbstreams / GC-paused floor", ours, strict),
    ):
        print(f"{label + ':':<30}{num[0] / den[0]:.2f}x (best), {num[1] / den[1]:.2f}x (median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
