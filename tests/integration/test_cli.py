"""The ``ddbstreams`` command against DynamoDB Local, in process and as a real console script."""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import socket
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddbstreams.cli._main import main
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._encode import encode_item

pytestmark = pytest.mark.integration

JSONL_KEYS = [
    "eventID",
    "eventName",
    "shardId",
    "sequenceNumber",
    "approximateCreationDateTime",
    "keys",
    "newImage",
    "oldImage",
]
ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z$")
BIG = 12345678901234567890123456789012345678

EVERY_TYPE: dict[str, Any] = {
    "pk": "every-type",
    "s": "text with ünïcode",
    "empty_s": "",
    "n_int": 42,
    "n_neg": -7,
    "n_dec": Decimal("3.14159"),
    "n_38": BIG,
    "b": b"\x00\x01binary\xff",
    "ss": {"c", "a", "b"},
    "ns": {10, 2, Decimal("3.5")},
    "bs": {b"y", b"x"},
    "m": {"nested": {"deeper": [1, "two", {"three": True}]}, "n": 0},
    "l": [1, "x", None, False, [b"z"]],
    "null": None,
    "bool_t": True,
    "bool_f": False,
}
EVERY_TYPE_PLAIN: dict[str, Any] = {
    "pk": "every-type",
    "s": "text with ünïcode",
    "empty_s": "",
    "n_int": 42,
    "n_neg": -7,
    "n_dec": Decimal("3.14159"),
    "n_38": BIG,
    "b": "AAFiaW5hcnn/",
    "ss": ["a", "b", "c"],
    "ns": [2, Decimal("3.5"), 10],
    "bs": ["eA==", "eQ=="],
    "m": {"nested": {"deeper": [1, "two", {"three": True}]}, "n": 0},
    "l": [1, "x", None, False, ["eg=="]],
    "null": None,
    "bool_t": True,
    "bool_f": False,
}

Run = Callable[..., tuple[int, str, str]]


def exact_loads(line: str) -> Any:
    return json.loads(line, parse_float=Decimal)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured; returns (status, stdout, stderr)."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main(list(argv))
    stdout.flush()
    assert isinstance(stdout.buffer, io.BytesIO)
    return status, stdout.buffer.getvalue().decode("utf-8"), stderr.getvalue()


@pytest.fixture(scope="module")
def aws_env() -> Iterator[dict[str, str]]:
    """Dummy credentials in the environment (DynamoDB Local accepts any letters and digits),
    and no other AWS setting of the machine running the tests."""
    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("AWS_"):
                patch.delenv(name)
        patch.setenv("AWS_ACCESS_KEY_ID", "ddbstreamstest")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "ddbstreamstest")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")
        yield dict(os.environ)


@pytest.fixture(scope="module")
def connection(ddb_local: DynamoDBLocal) -> list[str]:
    return ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]


@pytest.fixture(scope="module")
def run(connection: list[str], aws_env: dict[str, str]) -> Run:
    """Run the command in process against ``ddb_local``; returns (status, stdout, stderr)."""

    def run_main(*argv: str) -> tuple[int, str, str]:
        return run_cli(*argv, *connection)

    return run_main


def console_script() -> Path:
    script = Path(sys.executable).with_name("ddbstreams")
    assert script.exists(), f"console script not installed next to {sys.executable}"
    return script


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def changes(ddb_local: DynamoDBLocal) -> Iterator[SourceTable]:
    """A table whose stream holds: INSERT a, MODIFY a, INSERT every-type, REMOVE a.

    Shared by the tests of this module, which only read it.
    """
    table = ddb_local.source_table(f"ddbstreams-cli-{uuid.uuid4().hex[:12]}")
    table.put({"pk": "a", "v": 1})
    table.update({"pk": "a"}, set={"v": 2, "w": "x"})
    table.put(EVERY_TYPE)
    table.delete({"pk": "a"})
    yield table
    if ddb_local.running:
        table.delete_table()


@pytest.fixture(scope="module")
def everything(run: Run, changes: SourceTable) -> list[str]:
    """The JSON Lines of ``tail`` over the whole stream of ``changes``."""
    status, out, err = run("tail", changes.stream_arn)
    assert (status, err) == (0, "")
    return out.splitlines()


def test_tail_jsonl_insert_modify_remove(everything: list[str]) -> None:
    objects = [exact_loads(line) for line in everything]
    assert all(list(obj) == JSONL_KEYS for obj in objects)
    assert [(o["eventName"], o["keys"]) for o in objects] == [
        ("INSERT", {"pk": "a"}),
        ("MODIFY", {"pk": "a"}),
        ("INSERT", {"pk": "every-type"}),
        ("REMOVE", {"pk": "a"}),
    ]
    insert, modify, every, remove = objects
    assert (insert["newImage"], insert["oldImage"]) == ({"pk": "a", "v": 1}, None)
    assert modify["oldImage"] == {"pk": "a", "v": 1}
    assert modify["newImage"] == {"pk": "a", "v": 2, "w": "x"}
    assert (remove["newImage"], remove["oldImage"]) == (None, {"pk": "a", "v": 2, "w": "x"})
    assert every["newImage"] == EVERY_TYPE_PLAIN
    assert every["oldImage"] is None
    assert f'"n_38":{BIG},' in everything[2]
    sequence_numbers = [int(o["sequenceNumber"]) for o in objects]
    assert sequence_numbers == sorted(sequence_numbers)
    assert len({o["eventID"] for o in objects}) == 4
    for obj in objects:
        assert obj["shardId"].startswith("shardId-")
        assert ISO_UTC.match(obj["approximateCreationDateTime"])


def test_tail_by_table_name_matches_tail_by_arn(
    run: Run, changes: SourceTable, everything: list[str]
) -> None:
    status, out, err = run("tail", changes.name)

    assert (status, err) == (0, "")
    assert out.splitlines() == everything
    assert len(everything) == 4


def test_tail_max_records(run: Run, changes: SourceTable, everything: list[str]) -> None:
    status, out, err = run("tail", changes.name, "--max-records", "2")

    assert (status, err) == (0, "")
    assert out.splitlines() == everything[:2]


def test_tail_raw_prints_dynamodb_json(run: Run, changes: SourceTable) -> None:
    status, out, _ = run("tail", changes.stream_arn, "--raw")

    assert status == 0
    objects = [json.loads(line) for line in out.splitlines()]
    assert all(list(obj) == JSONL_KEYS for obj in objects)
    assert objects[0]["keys"] == {"pk": {"S": "a"}}
    assert objects[1]["newImage"] == {"pk": {"S": "a"}, "v": {"N": "2"}, "w": {"S": "x"}}
    assert objects[3]["newImage"] is None
    every = objects[2]["newImage"]
    assert {k: v for k, v in every.items() if k not in ("ss", "ns", "bs")} == {
        "pk": {"S": "every-type"},
        "s": {"S": "text with ünïcode"},
        "empty_s": {"S": ""},
        "n_int": {"N": "42"},
        "n_neg": {"N": "-7"},
        "n_dec": {"N": "3.14159"},
        "n_38": {"N": str(BIG)},
        "b": {"B": "AAFiaW5hcnn/"},
        "m": {
            "M": {
                "nested": {
                    "M": {
                        "deeper": {
                            "L": [{"N": "1"}, {"S": "two"}, {"M": {"three": {"BOOL": True}}}]
                        }
                    }
                },
                "n": {"N": "0"},
            }
        },
        "l": {
            "L": [{"N": "1"}, {"S": "x"}, {"NULL": True}, {"BOOL": False}, {"L": [{"B": "eg=="}]}]
        },
        "null": {"NULL": True},
        "bool_t": {"BOOL": True},
        "bool_f": {"BOOL": False},
    }
    assert sorted(every["ss"]["SS"]) == ["a", "b", "c"]
    assert sorted(every["ns"]["NS"], key=Decimal) == ["2", "3.5", "10"]
    assert sorted(every["bs"]["BS"]) == ["eA==", "eQ=="]


def test_tail_pretty(run: Run, changes: SourceTable) -> None:
    status, out, _ = run("tail", changes.name, "--format", "pretty")

    assert status == 0
    heads = [line for line in out.splitlines() if not line.startswith(" ")]
    assert heads == [
        'INSERT pk="a"',
        'MODIFY pk="a"',
        'INSERT pk="every-type"',
        'REMOVE pk="a"',
    ]
    assert "       ~ v: 1 → 2\n" in out
    assert '       + w: "x"\n' in out
    assert f"       + n_38: {BIG}\n" in out


def test_tail_from_positions(run: Run, changes: SourceTable, everything: list[str]) -> None:
    second = json.loads(everything[1])["sequenceNumber"]

    assert run("tail", changes.name, "--from", f"after:{second}")[1].splitlines() == everything[2:]
    assert run("tail", changes.name, "--from", f"at:{second}")[1].splitlines() == everything[1:]
    assert run("tail", changes.name, "--from", "latest") == (0, "", "")


def test_tail_empty_stream_prints_nothing(run: Run, source_table: SourceTable) -> None:
    assert run("tail", source_table.name) == (0, "", "")


def test_describe_text(run: Run, changes: SourceTable) -> None:
    status, out, err = run("describe", changes.name)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"stream     {changes.stream_arn}"
    assert lines[1] == f"table      {changes.name}"
    assert "status     ENABLED" in lines
    assert "view type  NEW_AND_OLD_IMAGES" in lines
    assert f"label      {changes.stream_arn.rsplit('/', 1)[1]}" in lines
    assert "key        pk (HASH)" in lines
    assert "shards     1 (1 open, 0 closed)" in lines
    shard_line = lines[-1]
    assert re.match(r"^shardId-\d{20}-[0-9a-f]+  open  seq \d+…  created ~\S+Z$", shard_line)


def test_describe_json(run: Run, changes: SourceTable) -> None:
    status, out, _ = run("describe", changes.stream_arn, "--json")

    assert status == 0
    doc = json.loads(out)
    assert doc["streamArn"] == changes.stream_arn
    assert doc["tableName"] == changes.name
    assert doc["streamStatus"] == "ENABLED"
    assert doc["streamViewType"] == "NEW_AND_OLD_IMAGES"
    assert doc["keySchema"] == [{"attributeName": "pk", "keyType": "HASH"}]
    assert (doc["shardCount"], doc["openShardCount"], doc["closedShardCount"]) == (1, 1, 0)
    (shard,) = doc["shards"]
    assert shard["shardId"].startswith("shardId-")
    assert shard["parentShardId"] is None
    assert shard["parentTrimmed"] is False
    assert shard["open"] is True
    assert shard["endingSequenceNumber"] is None
    assert shard["children"] == []
    assert int(shard["startingSequenceNumber"]) >= 0


# -- errors -------------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_malformed_arn_is_a_usage_error(run: Run) -> None:
    status, out, err = run("tail", "arn:aws:dynamodb:us-east-1:123:table/orders")

    assert (status, out) == (2, "")
    assert "invalid stream ARN" in one_error_line(err)


def test_unknown_stream_and_table(run: Run, changes: SourceTable) -> None:
    unknown_arn = changes.stream_arn.replace(changes.name, "no-such-table")

    status, _, err = run("tail", unknown_arn)
    assert status == 1
    assert "stream not found" in one_error_line(err)

    status, _, err = run("describe", "no-such-table")
    assert status == 1
    assert "'no-such-table' not found" in one_error_line(err)


def test_unreachable_endpoint(aws_env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"

    status, out, err = run_cli("tail", "orders", "--endpoint-url", endpoint, "--region", "x-1")

    assert (status, out) == (1, "")
    assert f"cannot connect to {endpoint}" in one_error_line(err)


def test_missing_credentials(
    run: Run, changes: SourceTable, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))

    status, out, err = run("tail", changes.name)

    assert (status, out) == (1, "")
    assert "no usable AWS credentials" in one_error_line(err)


# -- the installed command ----------------------------------------------------------------


def test_console_script_and_python_m(
    connection: list[str], aws_env: dict[str, str], changes: SourceTable, everything: list[str]
) -> None:
    tail = subprocess.run(
        [str(console_script()), "tail", changes.name, *connection],
        env=aws_env,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=60,
        check=False,
    )
    describe = subprocess.run(
        [sys.executable, "-m", "ddbstreams", "describe", changes.stream_arn, "--json", *connection],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (tail.returncode, tail.stderr) == (0, "")
    assert tail.stdout.splitlines() == everything
    assert [json.loads(line)["eventName"] for line in tail.stdout.splitlines()] == [
        "INSERT",
        "MODIFY",
        "INSERT",
        "REMOVE",
    ]
    assert (describe.returncode, describe.stderr) == (0, "")
    assert json.loads(describe.stdout)["streamArn"] == changes.stream_arn


def test_console_script_error_is_one_line(aws_env: dict[str, str]) -> None:
    endpoint = f"http://127.0.0.1:{closed_port()}"

    result = subprocess.run(
        [
            str(console_script()),
            "describe",
            "orders",
            "--endpoint-url",
            endpoint,
            "--region",
            "x-1",
        ],
        env=aws_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert (result.returncode, result.stdout) == (1, "")
    assert f"cannot connect to {endpoint}" in one_error_line(result.stderr)


def write_padded_items(table: SourceTable, count: int) -> None:
    items = [encode_item({"pk": f"item-{n:05d}", "pad": "x" * 300}) for n in range(count)]
    for offset in range(0, count, 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]
        while requests:
            response = table.client.batch_write_item(RequestItems={table.name: requests})
            requests = response.get("UnprocessedItems", {}).get(table.name, [])


@pytest.fixture
def big_stream(source_table: SourceTable) -> SourceTable:
    # About 400 KB of JSON Lines: far more than a pipe buffer, so writes hit the closed pipe.
    write_padded_items(source_table, 1000)
    return source_table


def test_broken_pipe_is_quiet(
    connection: list[str], aws_env: dict[str, str], big_stream: SourceTable
) -> None:
    with subprocess.Popen(
        [str(console_script()), "tail", big_stream.name, *connection],
        env=aws_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        first = process.stdout.readline()
        process.stdout.close()  # like `| head -1`
        stderr = process.stderr.read()
        status = process.wait(timeout=60)

    assert json.loads(first)["keys"]["pk"].startswith("item-")
    assert (status, stderr) == (0, b"")
