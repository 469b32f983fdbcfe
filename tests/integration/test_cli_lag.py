"""``ddbstreams lag``: a SQLite checkpoint file, a DynamoDB checkpoint table and a worker
group, over the simulator (rollovers, trimmed parents, times under control) and DynamoDB
Local (a real stream and real state tables).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from ddbstreams._clock import SystemClock
from ddbstreams.cli._main import main
from ddbstreams.client._streams import StreamsClient
from ddbstreams.coordination import LeaseTable
from ddbstreams.coordination._lease import CHECKPOINT_TIME
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._position import Checkpoint
from ddbstreams.state._stores import DynamoDBCheckpointStore, SQLiteCheckpointStore
from ddbstreams.testing import SimulatedClock, SimulatorServer, StreamSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dummy credentials and no other AWS setting of this machine."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


def cli(endpoint: str, *argv: str) -> tuple[int, str, str]:
    """``main(argv + connection)`` with stdout and stderr captured."""
    stdout = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    stderr = io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        status = main([*argv, "--endpoint-url", endpoint, "--region", "us-east-1"])
    stdout.flush()
    assert isinstance(stdout.buffer, io.BytesIO)
    return status, stdout.buffer.getvalue().decode("utf-8"), stderr.getvalue()


def lag_json(endpoint: str, *argv: str) -> dict[str, Any]:
    status, out, err = cli(endpoint, "lag", *argv, "--json")
    assert status == 0, err
    document = orjson.loads(out)
    assert isinstance(document, dict)
    return document


def by_shard(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {shard["shardId"]: shard for shard in document["shards"]}


class Scenario:
    """A simulated stream of two partitions with known creation times: 4 records 60 s
    apart, a rollover, then 4 more; parents are read, children are new."""

    def __init__(self) -> None:
        self.clock = SimulatedClock()
        self.sim = StreamSimulator(partitions=1, seed=3, clock=self.clock)
        self.times: list[float] = []
        self.sequences: list[str] = []
        for i in range(4):
            self.write(i)
        self.parent = self.sim.open_shard_ids()[0]
        self.child = self.sim.roll_over()[0]
        for i in range(4, 8):
            self.write(i)

    def write(self, i: int) -> None:
        self.clock.advance(60)
        change = self.sim.put_item({"pk": f"k{i}", "n": i})
        assert change is not None
        self.times.append(self.clock.time())
        self.sequences.append(change.sequence_number)


@pytest.fixture
def scenario() -> Scenario:
    return Scenario()


@pytest.fixture
def served(scenario: Scenario, aws_env: None) -> Iterator[SimulatorServer]:
    with SimulatorServer(scenario.sim) as server:
        yield server


def save(path: Path, checkpoint: Checkpoint, name: str = "tail") -> None:
    with SQLiteCheckpointStore(path) as store:
        store.save_sync(checkpoint, name=name)


def test_file_checkpoint_in_a_parent_with_a_child_waiting(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "cp.db"
    arn = scenario.sim.stream_arn
    # Processed up to the 2nd record of the parent, time stored with it.
    save(
        path,
        Checkpoint(
            arn,
            {scenario.parent: scenario.sequences[1]},
            times={scenario.parent: scenario.times[1]},
        ),
    )
    document = lag_json(served.endpoint_url, "--checkpoint", str(path))
    shards = by_shard(document)
    parent, child = shards[scenario.parent], shards[scenario.child]
    assert parent["state"] == "reading"
    assert parent["checkpoint"] == scenario.sequences[1]
    assert parent["pendingRecords"] == 2
    assert parent["behindSeconds"] == pytest.approx(120)  # records 1 -> 3, 60 s apart
    assert parent["behindIsLowerBound"] is False
    assert child["state"] == "waiting-for-parent"
    assert child["pendingRecords"] == 4
    assert child["parentShardId"] == scenario.parent
    # Measured from where the consumer stands in the lineage: the parent's checkpoint.
    assert child["behindSeconds"] == pytest.approx(scenario.times[7] - scenario.times[1])
    assert child["behindIsLowerBound"] is False
    assert document["behindSeconds"] == pytest.approx(360)
    assert document["pendingRecords"] == 6
    assert document["read"] is True
    assert document["sourceKind"] == "file"
    assert document["streamArn"] == arn


def test_checkpoint_time_is_read_from_the_stream_when_not_stored(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "cp.db"
    save(path, Checkpoint(scenario.sim.stream_arn, {scenario.parent: scenario.sequences[0]}))
    parent = by_shard(lag_json(served.endpoint_url, "--checkpoint", str(path)))[scenario.parent]
    assert parent["checkpointTime"] is not None
    assert parent["behindSeconds"] == pytest.approx(180)
    assert parent["behindIsLowerBound"] is False


def test_caught_up_and_finished(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "cp.db"
    arn = scenario.sim.stream_arn
    checkpoint = Checkpoint(
        arn,
        {scenario.child: scenario.sequences[-1]},
        frozenset({scenario.parent}),
        times={scenario.child: scenario.times[-1]},
    )
    save(path, checkpoint)
    document = lag_json(served.endpoint_url, "--checkpoint", str(path))
    shards = by_shard(document)
    assert shards[scenario.parent]["state"] == "finished"
    assert shards[scenario.child]["state"] == "reading"
    assert shards[scenario.child]["pendingRecords"] == 0
    assert document["behindSeconds"] == 0
    assert document["pendingRecords"] == 0


def test_trimmed_parent_and_a_checkpoint_in_it(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    """The parent is trimmed away while the checkpoint was still in it: it is shown gone
    with records lost, and its child (now a root) is not started."""
    path = tmp_path / "cp.db"
    save(path, Checkpoint(scenario.sim.stream_arn, {scenario.parent: scenario.sequences[1]}))
    scenario.sim.trim(scenario.parent)
    document = lag_json(served.endpoint_url, "--checkpoint", str(path))
    shards = by_shard(document)
    assert shards[scenario.parent]["state"] == "gone"
    assert shards[scenario.parent]["recordsLost"] is True
    assert shards[scenario.child]["state"] == "not-started"
    assert shards[scenario.child]["pendingRecords"] == 4
    assert shards[scenario.child]["behindIsLowerBound"] is True
    assert shards[scenario.child]["behindSeconds"] == pytest.approx(180)


def test_text_output_and_no_read(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "cp.db"
    arn = scenario.sim.stream_arn
    save(
        path,
        Checkpoint(
            arn,
            {scenario.parent: scenario.sequences[1]},
            times={scenario.parent: scenario.times[1]},
        ),
    )
    status, out, err = cli(served.endpoint_url, "lag", "--checkpoint", str(path))
    assert status == 0, err
    assert err == ""
    assert f"stream   {arn}" in out
    assert "behind   6m 00s (the most behind shard)" in out
    assert "pending  6 records not processed yet" in out
    header = next(line for line in out.splitlines() if line.startswith("SHARD"))
    assert header.split() == [
        "SHARD",
        "STATE",
        "CHECKPOINT",
        "CHECKPOINTED",
        "AT",
        "AGE",
        "NEWEST",
        "PENDING",
        "BEHIND",
    ]
    status, out, err = cli(served.endpoint_url, "lag", "--checkpoint", str(path), "--no-read")
    assert status == 0, err
    assert "not measured (--no-read" in out
    document = lag_json(served.endpoint_url, "--checkpoint", str(path), "--no-read")
    parent = by_shard(document)[scenario.parent]
    assert document["read"] is False
    assert document["pendingRecords"] is None
    assert parent["pendingRecords"] is None
    assert parent["checkpointAgeSeconds"] > 0


def test_choosing_among_several_checkpoints(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    path = tmp_path / "cp.db"
    arn = scenario.sim.stream_arn
    save(path, Checkpoint(arn, {scenario.parent: scenario.sequences[0]}), name="a")
    save(path, Checkpoint(arn, {scenario.parent: scenario.sequences[2]}), name="b")
    status, _, err = cli(served.endpoint_url, "lag", "--checkpoint", str(path))
    assert status == 2
    assert "choose one with --name" in err
    document = lag_json(served.endpoint_url, "--checkpoint", str(path), "--name", "b")
    assert by_shard(document)[scenario.parent]["pendingRecords"] == 1
    status, _, err = cli(served.endpoint_url, "lag", "--checkpoint", str(path), "--name", "zz")
    assert status == 1
    assert "no checkpoint in" in err
    assert "name 'a'" in err
    status, _, err = cli(served.endpoint_url, "lag", "--checkpoint", str(tmp_path / "none.db"))
    assert status == 1
    assert "does not exist" in err


# -- worker groups: the simulated stream, the lease table in DynamoDB Local ---------------


@pytest.fixture
def group_server(
    scenario: Scenario, ddb_local: DynamoDBLocal, aws_env: None
) -> Iterator[SimulatorServer]:
    with SimulatorServer(scenario.sim, tables_endpoint=ddb_local.endpoint_url) as server:
        yield server


@pytest.fixture
def group(ddb_local: DynamoDBLocal) -> Iterator[str]:
    name = f"ddbstreams-lag-{uuid.uuid4().hex[:12]}"
    yield name
    ddb_local.delete_table(name)
    ddb_local.delete_table(name + "-ddbstreams-workers")


def write_leases(ddb_local: DynamoDBLocal, group: str, items: list[dict[str, Any]]) -> None:
    async def write() -> None:
        async with StreamsClient(**ddb_local.client_kwargs()) as client:
            table = LeaseTable(client.tables, group, clock=SystemClock())
            await table.ensure()
            for item in items:
                await client.tables.put_item(table.name, item)

    asyncio.run(write())


def lease(
    key: str,
    checkpoint: str,
    *,
    owner: str | None = None,
    parent: str | None = None,
    stream_arn: str | None = None,
    time: float | None = None,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "leaseKey": {"S": key},
        "leaseCounter": {"N": "3"},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
    }
    if owner is not None:
        item["leaseOwner"] = {"S": owner}
    if parent is not None:
        item["parentShardId"] = {"SS": [parent]}
    if stream_arn is not None:
        item["ddbstreamsStreamArn"] = {"S": stream_arn}
    if time is not None:
        item[CHECKPOINT_TIME] = {"N": repr(time)}
    return item


def test_group_lag_with_owners_and_times(
    scenario: Scenario, group_server: SimulatorServer, ddb_local: DynamoDBLocal, group: str
) -> None:
    arn = scenario.sim.stream_arn
    write_leases(
        ddb_local,
        group,
        [
            lease(
                scenario.parent,
                scenario.sequences[2],
                owner="w1",
                stream_arn=arn,
                time=scenario.times[2],
            ),
            lease(scenario.child, "TRIM_HORIZON", parent=scenario.parent, stream_arn=arn),
        ],
    )
    document = lag_json(group_server.endpoint_url, "--group", group)
    shards = by_shard(document)
    parent, child = shards[scenario.parent], shards[scenario.child]
    assert document["sourceKind"] == "group"
    assert parent["owner"] == "w1"
    assert parent["state"] == "reading"
    assert parent["checkpointTime"] is not None
    assert parent["behindSeconds"] == pytest.approx(60)
    assert parent["pendingRecords"] == 1
    assert child["owner"] is None
    assert child["state"] == "waiting-for-parent"
    status, out, err = cli(group_server.endpoint_url, "lag", "--group", group)
    assert status == 0, err
    assert "OWNER" in out.splitlines()[7]
    assert any(line.startswith(scenario.parent) and " w1 " in line for line in out.splitlines())


def test_group_of_kcl_leases_needs_stream(
    scenario: Scenario, group_server: SimulatorServer, ddb_local: DynamoDBLocal, group: str
) -> None:
    """KCL-written leases name no stream and carry no time; a missing child lease is
    ``no-lease``; a finished parent is finished."""
    write_leases(ddb_local, group, [lease(scenario.parent, "SHARD_END")])
    status, _, err = cli(group_server.endpoint_url, "lag", "--group", group)
    assert status == 2
    assert "--stream" in err
    document = lag_json(
        group_server.endpoint_url, "--group", group, "--stream", scenario.sim.stream_arn
    )
    shards = by_shard(document)
    assert shards[scenario.parent]["state"] == "finished"
    assert shards[scenario.child]["state"] == "no-lease"
    assert shards[scenario.child]["pendingRecords"] == 4


# -- DynamoDB Local: a real stream, a DynamoDB checkpoint table --------------------------


def test_dynamodb_checkpoint_table_on_dynamodb_local(
    source_table: SourceTable, ddb_local: DynamoDBLocal, aws_env: None
) -> None:
    for i in range(5):
        source_table.put({"pk": f"k{i}", "n": i})
    table = f"ddbstreams-lag-cp-{uuid.uuid4().hex[:8]}"

    async def store_checkpoint() -> None:
        async with StreamsClient(**ddb_local.client_kwargs()) as client:
            description = await client.describe_stream(source_table.stream_arn)
            shard = description.shards[0]
            iterator = await client.get_shard_iterator(
                source_table.stream_arn, shard.shard_id, _trim_horizon()
            )
            from ddbstreams.model._decode import DefaultParser

            page = await client.get_records(
                iterator, shard_id=shard.shard_id, parser=DefaultParser()
            )
            first = page.records[0]
            store = DynamoDBCheckpointStore(table, client=client)
            await store.save(
                Checkpoint(source_table.stream_arn, {shard.shard_id: first.sequence_number}),
                name="app",
            )

    asyncio.run(store_checkpoint())
    try:
        document = lag_json(ddb_local.endpoint_url, "--table", table, "--stream", source_table.name)
        assert document["sourceKind"] == "table"
        assert document["pendingRecords"] == 4
        (shard,) = [s for s in document["shards"] if s["state"] == "reading"]
        assert shard["pendingRecords"] == 4
        assert shard["checkpointTime"] is not None  # looked up in the stream
        assert shard["behindSeconds"] is not None
        status, _, err = cli(ddb_local.endpoint_url, "lag", "--table", "missing-table-xyz")
        assert status == 1
        assert "missing-table-xyz" in err
    finally:
        ddb_local.delete_table(table)


def _trim_horizon() -> Any:
    from ddbstreams.model._position import SHARD_TRIM_HORIZON

    return SHARD_TRIM_HORIZON


# -- progress of a single-pass tail: on a terminal's stderr only -------------------------


def _tail_process(endpoint: str, arn: str, out: Path, stderr: int) -> Any:
    import subprocess
    import sys

    env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
    with out.open("wb") as sink:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "ddbstreams",
                "tail",
                arn,
                "--endpoint-url",
                endpoint,
                "--region",
                "us-east-1",
            ],
            stdout=sink,
            stderr=stderr,
            env=env,
            timeout=60,
            check=False,
        )


def test_tail_to_a_file_shows_progress_on_a_terminal(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    master, slave = os.openpty()
    try:
        done = _tail_process(served.endpoint_url, scenario.sim.stream_arn, tmp_path / "o", slave)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the terminal's other end is closed and drained
                break
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    assert done.returncode == 0
    shown = b"".join(chunks).decode()
    assert "\x1b[K" in shown
    final = shown.rstrip().split("\r\x1b[K")[-1]
    assert final.startswith("8 records  ")
    assert "shards 2/2 done" in final
    assert "iterator age " in final
    assert len((tmp_path / "o").read_text().splitlines()) == 8  # records untouched


def test_tail_to_a_file_is_quiet_without_a_terminal(
    scenario: Scenario, served: SimulatorServer, tmp_path: Path
) -> None:
    import subprocess

    done = _tail_process(
        served.endpoint_url, scenario.sim.stream_arn, tmp_path / "o", subprocess.PIPE
    )
    assert done.returncode == 0
    assert done.stderr == b""
    assert len((tmp_path / "o").read_text().splitlines()) == 8
