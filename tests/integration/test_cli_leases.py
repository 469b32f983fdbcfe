"""``ddbstreams leases show|reset`` against DynamoDB Local.

The lease table holds items written directly, as the Java KCL's serializers write them
(``awslabs/amazon-kinesis-client``: ``KinesisClientLeaseSerializer.java`` in KCL 1.x,
``DynamoDBLeaseSerializer.java`` in KCL 2.x/3.x; see tests/unit/test_lease_format.py), plus
a KCL 3.x item that is not a lease; the workers table holds worker items in the layout
``LeaseTable.heartbeat`` writes. The commands run in process through ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from ddbstreams._clock import SystemClock
from ddbstreams.cli._main import main
from ddbstreams.client._streams import StreamsClient
from ddbstreams.coordination import LeaseTable
from ddbstreams.local import DynamoDBLocal
from ddbstreams.testing import SimulatorServer, StreamSimulator

pytestmark = pytest.mark.integration

PARENT = "shardId-00000001690000000000-0d0d0d0d"
SHARD = "shardId-00000001700000000000-aaaaaaaa"
CHILD = "shardId-00000001710000000000-cccccccc"
OTHER = "shardId-00000001700000000001-bbbbbbbb"
JAVA = "shardId-00000001700000000002-0e0e0e0e"
SEQ = "300000000000000499659"
ARN = "arn:aws:dynamodb:ddblocal:000000000000:table/Orders/stream/2024-05-01T00:00:00.000"


def kcl_items() -> list[dict[str, Any]]:
    """A group in the middle of its life, as the KCL's serializers write leases
    (``toDynamoRecord``: leaseKey S, leaseCounter N, leaseOwner S when owned,
    ownerSwitchesSinceCheckpoint N, checkpoint S, checkpointSubSequenceNumber N,
    parentShardId / childShardIds SS only when non-empty; KCL 3.x entityType)."""
    return [
        {  # read to its end; its child is known
            "leaseKey": {"S": PARENT},
            "leaseCounter": {"N": "9"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "checkpoint": {"S": "SHARD_END"},
            "checkpointSubSequenceNumber": {"N": "0"},
            "childShardIds": {"SS": [SHARD]},
        },
        {  # held by a ddbstreams worker listed in the workers table
            "leaseKey": {"S": SHARD},
            "leaseOwner": {"S": "worker-a"},
            "leaseCounter": {"N": "42"},
            "ownerSwitchesSinceCheckpoint": {"N": "1"},
            "checkpoint": {"S": SEQ},
            "checkpointSubSequenceNumber": {"N": "0"},
            "parentShardId": {"SS": [PARENT]},
            "ddbstreamsStreamArn": {"S": ARN},
        },
        {  # its parent is not finished yet
            "leaseKey": {"S": CHILD},
            "leaseCounter": {"N": "0"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "checkpoint": {"S": "TRIM_HORIZON"},
            "checkpointSubSequenceNumber": {"N": "0"},
            "parentShardId": {"SS": [SHARD]},
        },
        {  # free
            "leaseKey": {"S": OTHER},
            "leaseCounter": {"N": "3"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "checkpoint": {"S": "TRIM_HORIZON"},
            "checkpointSubSequenceNumber": {"N": "0"},
        },
        {  # held by a Java worker (KCL 3.x), which the workers table does not list
            "leaseKey": {"S": JAVA},
            "leaseOwner": {"S": "worker-java-1"},
            "leaseCounter": {"N": "17"},
            "ownerSwitchesSinceCheckpoint": {"N": "0"},
            "checkpoint": {"S": "LATEST"},
            "checkpointSubSequenceNumber": {"N": "0"},
            "throughputKBps": {"N": "12.5"},
            "entityType": {"S": "LEASE"},
        },
        {  # KCL 3.x keeps other entities in the lease table: not a lease
            "leaseKey": {"S": "Migration3.0"},
            "entityType": {"S": "MIGRATION_STATE"},
        },
    ]


def worker_item(worker_id: str, state: str, *, leases: int, heartbeat: int) -> dict[str, Any]:
    return {
        "workerId": {"S": worker_id},
        "heartbeat": {"N": str(heartbeat)},
        "state": {"S": state},
        "changes": {"N": "2"},
        "streamArn": {"S": ARN},
        "host": {"S": "host-1"},
        "pid": {"N": "4242"},
        "startedAt": {"S": "2026-01-02T03:04:05+00:00"},
        "leaseCount": {"N": str(leases)},
    }


@pytest.fixture
def engine_env(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's dummy credentials and no other AWS setting of this machine."""
    kwargs = ddb_local.client_kwargs()
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


@pytest.fixture
def group(ddb_local: DynamoDBLocal) -> Iterator[str]:
    """A unique group name; its tables are deleted afterwards."""
    name = f"ddbstreams-cli-{uuid.uuid4().hex[:12]}"
    yield name
    ddb_local.delete_table(name)
    ddb_local.delete_table(name + "-ddbstreams-workers")


def setup_group(
    ddb_local: DynamoDBLocal,
    group: str,
    leases: Sequence[Mapping[str, Any]],
    workers: Sequence[Mapping[str, Any]] = (),
    *,
    workers_table: bool = True,
) -> None:
    """Create the group's tables and write ``leases`` and ``workers`` with
    ``StateTableClient.put_item``."""

    async def write() -> None:
        async with StreamsClient(**ddb_local.client_kwargs()) as client:
            table = LeaseTable(client.tables, group, clock=SystemClock())
            await table.ensure()
            for item in leases:
                await client.tables.put_item(table.name, item)
            for item in workers:
                await client.tables.put_item(table.workers_name, item)

    asyncio.run(write())
    if not workers_table:
        ddb_local.delete_table(group + "-ddbstreams-workers")


def lease_keys(ddb_local: DynamoDBLocal, group: str) -> list[str]:
    items = ddb_local.dynamodb_client().scan(TableName=group, ConsistentRead=True)["Items"]
    return sorted(item["leaseKey"]["S"] for item in items)


def cli(ddb_local: DynamoDBLocal, *argv: str) -> tuple[int, str, str]:
    """``main(argv + connection)`` with stdout and stderr captured."""
    connection = ["--endpoint-url", ddb_local.endpoint_url, "--region", ddb_local.region_name]
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([*argv, *connection])
    stdout.flush()
    assert isinstance(stdout.buffer, io.BytesIO)
    return status, stdout.buffer.getvalue().decode("utf-8"), stderr.getvalue()


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    assert "Traceback" not in err
    return lines[0]


def columns(line: str) -> list[str]:
    """The cells of an aligned table line (separated by two spaces or more)."""
    return [cell for cell in line.split("  ") if cell.strip()]


def cells(line: str) -> list[str]:
    return [cell.strip() for cell in columns(line)]


# -- leases show --------------------------------------------------------------------------


def test_show_lists_leases_and_workers(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(
        ddb_local,
        group,
        kcl_items(),
        [
            worker_item("worker-a", "RUNNING", leases=1, heartbeat=42),
            worker_item("worker-b", "STOPPING", leases=0, heartbeat=7),
        ],
    )

    status, out, err = cli(ddb_local, "leases", "show", group)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == (
        f"lease table {group}: 5 leases (2 owned, 1 free, 1 waiting-for-parent, 1 finished)"
    )
    assert cells(lines[1]) == ["SHARD", "OWNER", "CHECKPOINT", "PARENT", "STATE", "OWNER WORKER"]
    # In shard order (creation time, then id); the non-lease item is not listed.
    assert [cells(line) for line in lines[2:7]] == [
        [PARENT, "-", "SHARD_END", "-", "finished", "-"],
        [SHARD, "worker-a", SEQ, PARENT, "owned", "RUNNING, heartbeat 42, 1 lease"],
        [OTHER, "-", "TRIM_HORIZON", "-", "free", "-"],
        [
            JAVA,
            "worker-java-1",
            "LATEST",
            "-",
            "owned",
            "unknown (not in the workers table)",
        ],
        [CHILD, "-", "TRIM_HORIZON", SHARD, "waiting-for-parent", "-"],
    ]
    assert lines[7] == ""
    assert lines[8] == f"workers table {group}-ddbstreams-workers: 2 workers"
    assert cells(lines[9]) == [
        "WORKER",
        "STATE",
        "HOST",
        "PID",
        "STARTED",
        "LEASES",
        "HEARTBEAT",
    ]
    assert [cells(line) for line in lines[10:]] == [
        ["worker-a", "RUNNING", "host-1", "4242", "2026-01-02T03:04:05+00:00", "1", "42"],
        ["worker-b", "STOPPING", "host-1", "4242", "2026-01-02T03:04:05+00:00", "0", "7"],
    ]
    # Columns are aligned: every row's cells start where the header's do.
    starts = [lines[1].index(title) for title in ("OWNER", "CHECKPOINT", "STATE")]
    for line in lines[2:7]:
        assert all(line[start - 2 : start] == "  " for start in starts)


def test_show_json(ddb_local: DynamoDBLocal, engine_env: None, group: str) -> None:
    setup_group(
        ddb_local, group, kcl_items(), [worker_item("worker-a", "RUNNING", leases=1, heartbeat=42)]
    )

    status, out, err = cli(ddb_local, "leases", "show", group, "--json")

    assert (status, err) == (0, "")
    document = json.loads(out)
    assert document["leaseTable"] == group
    assert document["workersTable"] == f"{group}-ddbstreams-workers"
    leases = {lease["shardId"]: lease for lease in document["leases"]}
    assert [lease["shardId"] for lease in document["leases"]] == [
        PARENT,
        SHARD,
        OTHER,
        JAVA,
        CHILD,
    ]
    assert {key: lease["state"] for key, lease in leases.items()} == {
        PARENT: "finished",
        SHARD: "owned",
        OTHER: "free",
        JAVA: "owned",
        CHILD: "waiting-for-parent",
    }
    assert leases[SHARD] == {
        "shardId": SHARD,
        "state": "owned",
        "owner": "worker-a",
        "ownerWorker": {"known": True, "state": "RUNNING", "heartbeat": 42, "leaseCount": 1},
        "counter": 42,
        "checkpoint": SEQ,
        "parentShardIds": [PARENT],
        "childShardIds": [],
        "ownerSwitchesSinceCheckpoint": 1,
        "streamArn": ARN,
        "checkpointOwner": None,
        "pendingCheckpoint": None,
    }
    assert leases[JAVA]["ownerWorker"] == {"known": False}
    assert leases[OTHER]["ownerWorker"] is None
    assert leases[PARENT]["childShardIds"] == [SHARD]
    assert document["workers"] == [
        {
            "workerId": "worker-a",
            "state": "RUNNING",
            "host": "host-1",
            "pid": 4242,
            "startedAt": "2026-01-02T03:04:05+00:00",
            "leaseCount": 1,
            "heartbeat": 42,
            "changes": 2,
            "streamArn": ARN,
        }
    ]


def test_show_a_kcl_table_without_workers_table(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(ddb_local, group, kcl_items(), workers_table=False)

    status, out, err = cli(ddb_local, "leases", "show", group)

    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert cells(lines[3])[-1] == "unknown (no workers table)"
    assert lines[-1] == (
        f"workers table {group}-ddbstreams-workers: not found (no ddbstreams worker ran here)"
    )
    status, out, err = cli(ddb_local, "leases", "show", group, "--json")
    assert (status, err) == (0, "")
    assert json.loads(out)["workers"] is None


def test_show_an_empty_group(ddb_local: DynamoDBLocal, engine_env: None, group: str) -> None:
    setup_group(ddb_local, group, [])

    status, out, err = cli(ddb_local, "leases", "show", group)

    assert (status, err) == (0, "")
    assert out == (
        f"lease table {group}: 0 leases (0 owned, 0 free, 0 waiting-for-parent, 0 finished)\n"
        "\n"
        f"workers table {group}-ddbstreams-workers: 0 workers\n"
    )


@pytest.mark.parametrize("action", [["show"], ["show", "--json"], ["reset", "--force"]])
def test_missing_lease_table_is_one_line(
    ddb_local: DynamoDBLocal, engine_env: None, group: str, action: list[str]
) -> None:
    status, out, err = cli(ddb_local, "leases", action[0], group, *action[1:])

    assert (status, out) == (1, "")
    assert f"lease table {group!r} not found" in one_error_line(err)


# -- leases reset -------------------------------------------------------------------------


def test_reset_refuses_while_workers_are_listed(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(
        ddb_local,
        group,
        kcl_items(),
        [
            worker_item("worker-a", "RUNNING", leases=1, heartbeat=42),
            worker_item("worker-b", "STOPPING", leases=0, heartbeat=7),
        ],
    )
    before = lease_keys(ddb_local, group)

    status, out, err = cli(ddb_local, "leases", "reset", group)

    assert (status, out) == (1, "")
    line = one_error_line(err)
    assert f"refusing to reset the leases of {group!r}" in line
    assert "worker-a (RUNNING, pid 4242 on host-1)" in line
    assert "worker-b (STOPPING" in line
    assert "--force" in line
    assert lease_keys(ddb_local, group) == before


def test_reset_with_force_deletes_every_lease_and_nothing_else(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(
        ddb_local, group, kcl_items(), [worker_item("worker-a", "RUNNING", leases=1, heartbeat=1)]
    )

    status, out, err = cli(ddb_local, "leases", "reset", group, "--force")

    assert status == 0
    assert out == (
        f"reset {group!r}: deleted all 5 leases; the group starts over from its starting position\n"
    )
    assert err == (
        "ddbstreams: --force: the workers table lists 1 worker; a live worker loses the "
        "leases it holds\n"
    )
    assert lease_keys(ddb_local, group) == ["Migration3.0"]  # not a lease: kept
    status, out, err = cli(ddb_local, "leases", "reset", group)
    assert (status, out, err) == (
        0,
        f"nothing to reset: lease table {group!r} holds no leases\n",
        "",
    )


def test_reset_shards_without_workers(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(ddb_local, group, kcl_items())

    status, out, err = cli(ddb_local, "leases", "reset", group, "--shard", CHILD, "--shard", OTHER)

    assert (status, err) == (0, "")
    assert out == (
        f"reset {group!r}: deleted the leases of {CHILD}, {OTHER}; the group starts over "
        "from its starting position\n"
    )
    assert lease_keys(ddb_local, group) == sorted([PARENT, SHARD, JAVA, "Migration3.0"])


def test_reset_unknown_shard_deletes_nothing(
    ddb_local: DynamoDBLocal, engine_env: None, group: str
) -> None:
    setup_group(ddb_local, group, kcl_items(), workers_table=False)
    before = lease_keys(ddb_local, group)
    missing = "shardId-00000001999999999999-ffffffff"

    status, out, err = cli(
        ddb_local, "leases", "reset", group, "--shard", OTHER, "--shard", missing
    )

    assert (status, out) == (1, "")
    assert f"no lease for {missing} in lease table {group!r}: nothing reset" in one_error_line(err)
    assert lease_keys(ddb_local, group) == before


# -- run, end to end: a worker process, then leases show and reset -------------------------

LAMBDA_HANDLER = """
import json
import os

def handler(event, context):
    with open(os.environ["HANDLED_FILE"], "a") as out:
        for record in event["Records"]:
            pk = record["dynamodb"]["Keys"]["pk"]["S"]
            out.write(json.dumps({"pk": pk, "arn": record["eventSourceARN"]}) + "\\n")
    return {"batchItemFailures": []}
"""


class StderrLines:
    """The lines a process writes on stderr, read by a thread as they come."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        assert process.stderr is not None
        stream = process.stderr
        self._thread = threading.Thread(
            target=lambda: [self.lines.put(line) for line in stream], daemon=True
        )
        self._thread.start()

    def wait_for(self, text: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.seen:
            if text in line:
                return line
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} on stderr in {timeout} s: {self.seen}")

    def rest(self) -> list[str]:
        self._thread.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen


def wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def health(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_run_a_lambda_handler_as_a_worker_then_stop_it_with_sigterm(
    ddb_local: DynamoDBLocal, engine_env: None, group: str, tmp_path: Path
) -> None:
    sim = StreamSimulator(partitions=2, seed=11, retention=None)
    for i in range(6):
        sim.put_item({"pk": f"k{i}"})
    (tmp_path / "lambda_app.py").write_text(LAMBDA_HANDLER)
    handled = tmp_path / "handled.jsonl"
    env = {**os.environ, "HANDLED_FILE": str(handled), "PYTHONUNBUFFERED": "1"}
    with SimulatorServer(sim, tables_endpoint=ddb_local.endpoint_url) as server:
        argv = ["run", "lambda_app:handler", "--stream", sim.table_name, "--group", group]
        argv += ["--worker-id", "cli-worker", "--failover-time", "3", "--health-port", "0"]
        argv += ["--endpoint-url", server.endpoint_url, "--region", ddb_local.region_name]
        process = subprocess.Popen(
            [sys.executable, "-m", "ddbstreams", *argv],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            err = StderrLines(process)
            url = err.wait_for("health check on").split(" on ", 1)[1].strip()
            err.wait_for(f"worker cli-worker of group {group!r} started on {sim.stream_arn}")

            def lines() -> list[dict[str, str]]:
                text = handled.read_text() if handled.exists() else ""
                return [json.loads(line) for line in text.splitlines()]

            wait_until(lambda: len(lines()) >= 6)
            assert sorted(line["pk"] for line in lines()) == [f"k{i}" for i in range(6)]
            assert {line["arn"] for line in lines()} == {sim.stream_arn}
            wait_until(lambda: health(url)[0] == 200)
            assert health(url)[1] == {
                "worker_id": "cli-worker",
                "group": group,
                "leases": 2,
                "lifecycle": "RUNNING",
            }
            status, out, _ = cli(ddb_local, "leases", "show", group, "--json")
            shown = json.loads(out)
            assert {lease["owner"] for lease in shown["leases"]} == {"cli-worker"}
            assert [w["workerId"] for w in shown["workers"]] == ["cli-worker"]
            status, out, reset_err = cli(ddb_local, "leases", "reset", group)
            assert status == 1
            assert "cli-worker (RUNNING" in one_error_line(reset_err)

            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=30) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    stderr = err.rest()
    assert any("SIGTERM received: stopping" in line for line in stderr)
    assert stderr[-1] == "ddbstreams: stopped\n"
    assert not any("Traceback" in line for line in stderr)
    # The worker released every lease, checkpointed, and left the workers table.
    status, out, _ = cli(ddb_local, "leases", "show", group, "--json")
    shown = json.loads(out)
    assert {lease["owner"] for lease in shown["leases"]} == {None}
    last = {change.shard_id: change.sequence_number for change in sim.history}
    assert {lease["shardId"]: lease["checkpoint"] for lease in shown["leases"]} == last
    # The worker removes its item when it leaves. A heartbeat in flight at that moment may
    # write it back (GroupWorker.leave races its heartbeat loop): tolerated here, see the
    # report of issue 11; the item then says STOPPING.
    assert [(w["workerId"], w["state"]) for w in shown["workers"]] in (
        [],
        [("cli-worker", "STOPPING")],
    )
    force = ["--force"] if shown["workers"] else []
    status, out, _ = cli(ddb_local, "leases", "reset", group, *force)
    assert (status, out) == (
        0,
        f"reset {group!r}: deleted all 2 leases; the group starts over from its starting "
        "position\n",
    )
