"""A lone UTF-16 surrogate in an item, end to end against DynamoDB Local.

DynamoDB Local accepts ``{"S": "\\ud83d"}`` and writes it into GetRecords bodies as a
``\\ud83d`` escape. The records around it must still be read, by the library and by
``ddbstreams tail`` (whose every line stays valid JSON).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

import ddbstreams
from ddbstreams.local import DynamoDBLocal, SourceTable

pytestmark = pytest.mark.integration

LONE = "x\ud83dy"


@pytest.fixture
def env(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    kwargs = ddb_local.client_kwargs()
    for variable in list(os.environ):
        if variable.startswith("AWS_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return dict(os.environ)


@pytest.fixture
def table(ddb_local: DynamoDBLocal, source_table: SourceTable) -> SourceTable:
    """Three items; the middle one holds lone surrogates (written with boto3's low-level
    client, which sends them as JSON escapes)."""
    import boto3

    client = boto3.client("dynamodb", **ddb_local.client_kwargs())
    client.put_item(TableName=source_table.name, Item={"pk": {"S": "a"}, "v": {"S": "fine"}})
    client.put_item(
        TableName=source_table.name,
        Item={
            "pk": {"S": "b"},
            "v": {"S": LONE},
            "w": {"SS": ["\udfff", "ok"]},
            "m": {"M": {"k": {"S": "\ud800z"}}},
        },
    )
    client.put_item(TableName=source_table.name, Item={"pk": {"S": "c"}, "v": {"S": "fine"}})
    return source_table


def test_read_gets_every_record(
    ddb_local: DynamoDBLocal, env: dict[str, str], table: SourceTable
) -> None:
    records = list(
        ddbstreams.read(
            table.stream_arn,
            endpoint_url=ddb_local.endpoint_url,
            region_name=ddb_local.region_name,
        )
    )

    assert [r.keys["pk"] for r in records] == ["a", "b", "c"]
    assert records[1].new_image == {
        "pk": "b",
        "v": LONE,
        "w": {"\udfff", "ok"},
        "m": {"k": "\ud800z"},
    }


def tail(ddb_local: DynamoDBLocal, env: dict[str, str], *options: str) -> bytes:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "ddbstreams",
            "tail",
            *options,
            "--endpoint-url",
            ddb_local.endpoint_url,
            "--region",
            ddb_local.region_name,
        ],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert (result.returncode, result.stderr) == (0, b"")
    return result.stdout


@pytest.mark.parametrize("raw", [False, True], ids=["plain", "raw"])
def test_tail_prints_every_record_as_valid_json(
    ddb_local: DynamoDBLocal, env: dict[str, str], table: SourceTable, raw: bool
) -> None:
    out = tail(ddb_local, env, table.name, *(["--raw"] if raw else []))

    lines = out.decode("utf-8").splitlines()  # strict UTF-8
    documents: list[Any] = [json.loads(line) for line in lines]
    assert len(documents) == 3
    image = documents[1]["newImage"]
    if raw:
        assert [d["keys"]["pk"]["S"] for d in documents] == ["a", "b", "c"]
        assert sorted(image.pop("w")["SS"]) == ["ok", "\udfff"]
        assert image == {"pk": {"S": "b"}, "v": {"S": LONE}, "m": {"M": {"k": {"S": "\ud800z"}}}}
    else:
        assert [d["keys"]["pk"] for d in documents] == ["a", "b", "c"]
        assert image == {"pk": "b", "v": LONE, "w": ["ok", "\udfff"], "m": {"k": "\ud800z"}}
    assert "\\ud83d" in lines[1]


def test_tail_pretty_prints_every_record(
    ddb_local: DynamoDBLocal, env: dict[str, str], table: SourceTable
) -> None:
    text = tail(ddb_local, env, table.name, "--format", "pretty").decode("utf-8")

    assert [line.split()[1] for line in text.splitlines() if line.startswith("INSERT")] == [
        'pk="a"',
        'pk="b"',
        'pk="c"',
    ]
    assert '+ v: "x\\ud83dy"' in text
