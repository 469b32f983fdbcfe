"""Checkpoint stores: memory and SQLite (tmp_path), and the DynamoDB store over a fake
state table (no network). The DynamoDB store against DynamoDB Local is in
tests/integration/test_store.py."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from ddbstreams._errors import (
    CheckpointError,
    ConditionFailedError,
    ConfigurationError,
    TableNotFoundError,
    ThrottledError,
)
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._position import (
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    Checkpoint,
    ShardStart,
)
from ddbstreams.state._stores import (
    CheckpointStore,
    DynamoDBCheckpointStore,
    MemoryCheckpointStore,
    SQLiteCheckpointStore,
    StoredCheckpoint,
)
from ddbstreams.transport._seam import TransportError

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"
ARN2 = "arn:aws:dynamodb:us-east-1:123456789012:table/Users/stream/2024-06-01T00:00:00.000"
SEQ = "4930000000000000000000000000000000001"


def checkpoint(arn: str = ARN, n: int = 1) -> Checkpoint:
    """A checkpoint using every field: positions, finished, and each kind of pending start."""
    return Checkpoint(
        stream_arn=arn,
        positions={
            "shardId-00000001700000000000-aaaaaaaa": str(10**21 + n),
            "shardId-00000001700000000001-bbbbbbbb": str(10**21 + 2 * n),
        },
        finished=frozenset({"shardId-00000001600000000000-cccccccc"}),
        pending={
            "shardId-00000001700000000002-dddddddd": SHARD_TRIM_HORIZON,
            "shardId-00000001700000000003-eeeeeeee": SHARD_LATEST,
            "shardId-00000001700000000004-ffffffff": ShardStart("AT_SEQUENCE_NUMBER", SEQ),
            "shardId-00000001700000000005-00000000": ShardStart("AFTER_SEQUENCE_NUMBER", SEQ),
        },
    )


class FixedClock:
    def __init__(self, now: float = 1_700_000_000.5) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --------------------------------------------------------------------------- memory + SQLite

StoreFactory = Callable[..., Any]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """``make_store()``: a new store instance over the same data each call, as a second
    process would open it."""
    first: list[MemoryCheckpointStore] = []
    path = tmp_path / "checkpoints.db"

    def make(clock: Any = None) -> Any:
        if request.param == "memory":
            store = MemoryCheckpointStore(shared_with=first[0] if first else None, clock=clock)
            first.append(store)
            return store
        return SQLiteCheckpointStore(path, clock=clock)

    return make


NAME = "app"


async def test_stores_implement_the_protocol(tmp_path: Path) -> None:
    client = StreamsClient(transport=FakeStateTable())
    async with DynamoDBCheckpointStore("checkpoints", client=client) as dynamo:
        for store in (MemoryCheckpointStore(), SQLiteCheckpointStore(tmp_path / "x"), dynamo):
            assert isinstance(store, CheckpointStore)


async def test_store_constructors_refuse_a_name(tmp_path: Path) -> None:
    client = StreamsClient(transport=FakeStateTable())
    for make in (
        lambda: MemoryCheckpointStore(name="app"),  # type: ignore[arg-type]
        lambda: SQLiteCheckpointStore(tmp_path / "x", name="app"),  # type: ignore[arg-type]
        lambda: DynamoDBCheckpointStore("checkpoints", client=client, name="app"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError, match="takes no name") as info:
            make()
        assert "Consumer(name=...)" in str(info.value)
        assert "tail --name" in str(info.value)


async def test_calls_need_a_name(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(TypeError, match="name"):
        await store.load(ARN)
    with pytest.raises(TypeError, match="name"):
        await store.save(checkpoint())
    with pytest.raises(TypeError, match="name"):
        await store.clear(ARN)
    with pytest.raises(TypeError):
        await store.load(ARN, NAME)  # keyword-only
    for bad in ("", None, 5):
        with pytest.raises(ConfigurationError, match="consumer name"):
            await store.load(ARN, name=bad)
        with pytest.raises(ConfigurationError, match="consumer name"):
            await store.save(checkpoint(), name=bad)
        with pytest.raises(ConfigurationError, match="consumer name"):
            await store.clear(ARN, name=bad)
    assert store.list_sync() == []


async def test_round_trip(make_store: StoreFactory) -> None:
    store = make_store()
    original = checkpoint()
    await store.save(original, name=NAME)
    loaded = await store.load(ARN, name=NAME)
    assert loaded == original
    assert loaded is not original
    assert loaded.pending["shardId-00000001700000000004-ffffffff"] == ShardStart(
        "AT_SEQUENCE_NUMBER", SEQ
    )
    # A fresh instance (another process) sees the same.
    assert await make_store().load(ARN, name=NAME) == original
    await store.close()


async def test_empty_checkpoint_round_trip(make_store: StoreFactory) -> None:
    store = make_store()
    await store.save(Checkpoint(ARN), name=NAME)
    assert await make_store().load(ARN, name=NAME) == Checkpoint(ARN)


async def test_load_of_missing_is_none(make_store: StoreFactory) -> None:
    store = make_store()
    assert await store.load(ARN, name=NAME) is None
    await store.save(checkpoint(ARN), name=NAME)
    assert await store.load(ARN2, name=NAME) is None
    assert await store.load(ARN, name="other") is None
    assert await make_store().load(ARN, name="other") is None


async def test_later_save_replaces_and_bumps_version(make_store: StoreFactory) -> None:
    store = make_store()
    for n in range(1, 4):
        await store.save(checkpoint(ARN, n), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 3)
    [row] = store.list_sync()
    assert row.version == 3


async def test_names_and_streams_are_separate(make_store: StoreFactory) -> None:
    store = make_store()
    await store.save(checkpoint(ARN, 1), name="app1")
    await store.save(checkpoint(ARN2, 2), name="app1")
    await store.save(checkpoint(ARN, 3), name="app2")
    await store.save(checkpoint(ARN2, 4), name="app2")
    fresh = make_store()
    assert await fresh.load(ARN, name="app1") == checkpoint(ARN, 1)
    assert await fresh.load(ARN2, name="app1") == checkpoint(ARN2, 2)
    assert await fresh.load(ARN, name="app2") == checkpoint(ARN, 3)
    assert await fresh.load(ARN2, name="app2") == checkpoint(ARN2, 4)
    rows = store.list_sync()
    assert [(r.name, r.stream_arn) for r in rows] == [
        ("app1", ARN),
        ("app1", ARN2),
        ("app2", ARN),
        ("app2", ARN2),
    ]
    assert all(isinstance(r, StoredCheckpoint) and r.version == 1 for r in rows)
    assert rows[3].checkpoint == checkpoint(ARN2, 4)


async def test_clear(make_store: StoreFactory) -> None:
    store = make_store()
    await store.save(checkpoint(ARN), name=NAME)
    await store.save(checkpoint(ARN2), name=NAME)
    await store.save(checkpoint(ARN), name="other")
    await store.clear(ARN, name=NAME)
    assert await store.load(ARN, name=NAME) is None
    assert await make_store().load(ARN, name=NAME) is None
    assert await store.load(ARN2, name=NAME) == checkpoint(ARN2)
    assert await make_store().load(ARN, name="other") == checkpoint(ARN)
    await store.clear(ARN, name=NAME)  # clearing nothing is fine
    await store.save(checkpoint(ARN, 7), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 7)


async def test_stale_writer_is_refused(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    await a.save(checkpoint(ARN, 1), name=NAME)
    # b never loaded: it must not overwrite what a stored.
    with pytest.raises(CheckpointError, match=r"updated by another process \(version 1\)"):
        await b.save(checkpoint(ARN, 99), name=NAME)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 1)

    assert await b.load(ARN, name=NAME) == checkpoint(ARN, 1)
    await b.save(checkpoint(ARN, 2), name=NAME)
    # Now a is the stale one.
    with pytest.raises(CheckpointError, match="reload it") as info:
        await a.save(checkpoint(ARN, 3), name=NAME)
    assert ARN in str(info.value)
    assert f"{NAME!r}" in str(info.value)
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 2)
    assert await a.load(ARN, name=NAME) == checkpoint(ARN, 2)
    await a.save(checkpoint(ARN, 3), name=NAME)
    assert a.list_sync()[0].version == 3


async def test_conflict_is_per_name_and_stream(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    await a.save(checkpoint(ARN, 1), name="a")
    await b.save(checkpoint(ARN, 2), name="b")  # another name: no conflict
    await make_store().save(checkpoint(ARN2, 3), name="a")  # another stream: no conflict
    await a.save(checkpoint(ARN, 4), name="a")
    # b knows nothing of name "a" (it never loaded it): it cannot overwrite it...
    with pytest.raises(CheckpointError, match=r"under 'a'.*\(version 2\)"):
        await b.save(checkpoint(ARN, 5), name="a")
    # ...while its own name's version is in step; versions are kept per name and stream.
    await b.save(checkpoint(ARN, 6), name="b")
    assert await b.load(ARN, name="a") == checkpoint(ARN, 4)
    await b.save(checkpoint(ARN, 7), name="a")
    with pytest.raises(CheckpointError, match=r"under 'a'.*\(version 3\)"):
        await a.save(checkpoint(ARN, 8), name="a")
    assert await a.load(ARN2, name="a") == checkpoint(ARN2, 3)
    await a.save(checkpoint(ARN2, 9), name="a")
    versions = {(r.name, r.stream_arn): r.version for r in a.list_sync()}
    assert versions == {("a", ARN): 3, ("a", ARN2): 2, ("b", ARN): 2}


async def test_save_after_another_process_cleared(make_store: StoreFactory) -> None:
    a, b = make_store(), make_store()
    await a.save(checkpoint(ARN, 1), name=NAME)
    assert await b.load(ARN, name=NAME) is not None
    await b.clear(ARN, name=NAME)
    # Nothing newer is stored, so a may write; versions keep rising.
    await a.save(checkpoint(ARN, 2), name=NAME)
    assert a.list_sync()[0].version == 2
    # b knows the stream as cleared; a's save is newer than that.
    with pytest.raises(CheckpointError, match="version 2"):
        await b.save(checkpoint(ARN, 3), name=NAME)


async def test_concurrent_saves_from_tasks(make_store: StoreFactory) -> None:
    store = make_store()
    await asyncio.gather(*(store.save(checkpoint(ARN, n), name=NAME) for n in range(1, 21)))
    # Saves run in call order, so the last call is what stays.
    assert await make_store().load(ARN, name=NAME) == checkpoint(ARN, 20)
    assert store.list_sync()[0].version == 20


async def test_concurrent_load_save_clear_of_many_streams_and_names(
    make_store: StoreFactory,
) -> None:
    store = make_store()
    arns = [ARN.replace("Orders", f"T{i:03d}") for i in range(10)]
    names = ["billing", "search"]

    async def work(arn: str, name: str) -> None:
        for n in range(1, 4):
            await store.save(checkpoint(arn, n), name=name)
            assert await store.load(arn, name=name) == checkpoint(arn, n)
        await store.clear(arn, name=name)
        await store.save(checkpoint(arn, 9 + len(name)), name=name)

    await asyncio.gather(*(work(arn, name) for arn in arns for name in names))
    fresh = make_store()
    for arn in arns:
        for name in names:
            assert await fresh.load(arn, name=name) == checkpoint(arn, 9 + len(name))


async def test_updated_at_comes_from_the_clock(make_store: StoreFactory) -> None:
    store = make_store(clock=FixedClock(1234.5))
    await store.save(checkpoint(), name=NAME)
    assert store.list_sync()[0].updated_at == 1234.5


async def test_invalid_checkpoint_is_refused(make_store: StoreFactory) -> None:
    store = make_store()
    with pytest.raises(CheckpointError, match="refusing to store an invalid checkpoint"):
        await store.save(Checkpoint(ARN, {"shardId-1": "not-a-number"}), name=NAME)
    assert await store.load(ARN, name=NAME) is None
    with pytest.raises(TypeError):
        await store.save({"stream_arn": ARN}, name=NAME)
    with pytest.raises(ConfigurationError):
        await store.load("", name=NAME)


async def test_memory_stores_are_independent_unless_shared() -> None:
    a, b = MemoryCheckpointStore(), MemoryCheckpointStore()
    await a.save(checkpoint(), name=NAME)
    assert await b.load(ARN, name=NAME) is None
    await a.close()
    with pytest.raises(RuntimeError, match="closed"):
        await a.load(ARN, name=NAME)


# --------------------------------------------------------------------------- SQLite only


async def test_sqlite_file_layout(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "dir" / "cp.db"
    async with SQLiteCheckpointStore(path) as store:
        await store.save(checkpoint(), name=NAME)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1
        rows = conn.execute(
            "SELECT name, stream_arn, version, checkpoint, updated_at FROM checkpoints"
        ).fetchall()
    finally:
        conn.close()
    [(name, arn, version, text, updated_at)] = rows
    assert (name, arn, version) == (NAME, ARN, 1)
    assert orjson.loads(text) == checkpoint().to_json()
    assert isinstance(updated_at, float)


def test_sqlite_sync_helpers(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    with SQLiteCheckpointStore(path) as store:
        # Reading a missing file neither fails nor creates it.
        assert store.load_sync(ARN, name=NAME) is None
        assert store.list_sync() == []
        store.clear_sync(ARN, name=NAME)
        assert not path.exists()
        store.save_sync(checkpoint(ARN, 1), name=NAME)
        store.save_sync(checkpoint(ARN, 2), name=NAME)
        assert store.load_sync(ARN, name=NAME) == checkpoint(ARN, 2)
        [row] = store.list_sync()
        assert (row.name, row.stream_arn, row.version) == (NAME, ARN, 2)
        store.clear_sync(ARN, name=NAME)
        assert store.load_sync(ARN, name=NAME) is None
        assert store.list_sync() == []
    with pytest.raises(RuntimeError, match="closed"):
        store.load_sync(ARN, name=NAME)


async def test_sqlite_async_and_sync_share_versions(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    store = SQLiteCheckpointStore(path)
    await store.save(checkpoint(ARN, 1), name=NAME)
    store.save_sync(checkpoint(ARN, 2), name=NAME)
    await store.save(checkpoint(ARN, 3), name=NAME)
    assert store.load_sync(ARN, name=NAME) == checkpoint(ARN, 3)
    await store.close()
    await store.close()  # idempotent


async def test_sqlite_random_bytes_file(tmp_path: Path) -> None:
    path = tmp_path / "garbage.db"
    garbage = os.urandom(8192)
    path.write_bytes(garbage)
    store = SQLiteCheckpointStore(path)
    with pytest.raises(CheckpointError, match="not a SQLite database") as info:
        await store.load(ARN, name=NAME)
    assert str(path) in str(info.value)
    with pytest.raises(CheckpointError, match="not a SQLite database"):
        await store.save(checkpoint(), name=NAME)
    with pytest.raises(CheckpointError, match="not a SQLite database"):
        store.list_sync()
    assert path.read_bytes() == garbage  # never "repaired" by overwriting


async def test_sqlite_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)")
    conn.commit()
    conn.close()
    store = SQLiteCheckpointStore(path)
    with pytest.raises(CheckpointError, match="not a ddbstreams checkpoint file") as info:
        await store.save(checkpoint(), name=NAME)
    assert str(path) in str(info.value)
    assert "users" in str(info.value)
    conn = sqlite3.connect(path)
    tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    conn.close()
    assert tables == ["users"]


def _tamper(path: Path, *statements: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        for statement in statements:
            conn.execute(statement)
    finally:
        conn.close()


@pytest.mark.parametrize(
    ("statements", "message"),
    [
        (["PRAGMA user_version = 7"], "schema version 7, written by a newer ddbstreams"),
        (["PRAGMA user_version = 0"], "unknown schema version 0"),
        (
            ["ALTER TABLE checkpoints RENAME TO old_checkpoints"],
            "unexpected schema.*found: no checkpoints table",
        ),
        (
            ["ALTER TABLE checkpoints ADD COLUMN extra TEXT"],
            "unexpected schema.*found: name, stream_arn, version, checkpoint, updated_at, extra",
        ),
    ],
)
async def test_sqlite_wrong_schema(tmp_path: Path, statements: list[str], message: str) -> None:
    path = tmp_path / "cp.db"
    SQLiteCheckpointStore(path).save_sync(checkpoint(), name=NAME)
    _tamper(path, *statements)
    with pytest.raises(CheckpointError, match=message) as info:
        await SQLiteCheckpointStore(path).load(ARN, name=NAME)
    assert str(path) in str(info.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("{not json", "invalid JSON"),
        ('{"version": 1, "stream_arn": 5}', "corrupt checkpoint"),
        ('{"version": 2}', "unknown checkpoint format"),
        (
            orjson.dumps(checkpoint(ARN2).to_json()).decode(),
            f"filed under stream {ARN} but names stream {ARN2}",
        ),
    ],
)
async def test_sqlite_corrupt_row(tmp_path: Path, value: str, message: str) -> None:
    path = tmp_path / "cp.db"
    SQLiteCheckpointStore(path).save_sync(checkpoint(), name=NAME)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE checkpoints SET checkpoint = ?", (value,))
    conn.commit()
    conn.close()
    store = SQLiteCheckpointStore(path)
    with pytest.raises(CheckpointError, match=message) as info:
        await store.load(ARN, name=NAME)
    text = str(info.value)
    assert str(path) in text
    assert "'app'" in text
    assert ARN in text
    with pytest.raises(CheckpointError, match=message):
        store.list_sync()
    # A corrupt row is not silently replaced: the store never learnt its version.
    with pytest.raises(CheckpointError, match="updated by another process"):
        await store.save(checkpoint(), name=NAME)


async def test_sqlite_corrupt_version(tmp_path: Path) -> None:
    path = tmp_path / "cp.db"
    SQLiteCheckpointStore(path).save_sync(checkpoint(), name=NAME)
    _tamper(path, "UPDATE checkpoints SET version = 'x'")
    with pytest.raises(CheckpointError, match="bad version 'x'"):
        await SQLiteCheckpointStore(path).load(ARN, name=NAME)


async def test_sqlite_directory_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="is a directory"):
        await SQLiteCheckpointStore(tmp_path).save(checkpoint(), name=NAME)


async def test_sqlite_cancelled_save_does_not_break_the_next(tmp_path: Path) -> None:
    store = SQLiteCheckpointStore(tmp_path / "cp.db")
    await store.save(checkpoint(ARN, 1), name=NAME)
    for n in range(2, 12):
        task = asyncio.create_task(store.save(checkpoint(ARN, n), name=NAME))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        # Whether or not the cancelled write landed, this store's view stays in step.
        await store.save(checkpoint(ARN, 100 + n), name=NAME)
        assert await SQLiteCheckpointStore(tmp_path / "cp.db").load(ARN, name=NAME) == checkpoint(
            ARN, 100 + n
        )
    await store.close()


async def test_sqlite_second_process_conflict_is_atomic(tmp_path: Path) -> None:
    """Two stores racing on one file: exactly one of each conflicting pair wins."""
    path = tmp_path / "cp.db"
    a, b = SQLiteCheckpointStore(path), SQLiteCheckpointStore(path)
    await a.save(checkpoint(ARN, 1), name=NAME)
    assert await b.load(ARN, name=NAME) is not None
    results = await asyncio.gather(
        a.save(checkpoint(ARN, 2), name=NAME),
        b.save(checkpoint(ARN, 3), name=NAME),
        return_exceptions=True,
    )
    errors = [r for r in results if isinstance(r, CheckpointError)]
    assert len(errors) == 1
    winner = 2 if results[0] is None else 3
    assert await SQLiteCheckpointStore(path).load(ARN, name=NAME) == checkpoint(ARN, winner)
    await a.close()
    await b.close()


_CHILD = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from ddbstreams.model._position import Checkpoint
    from ddbstreams.state._stores import SQLiteCheckpointStore

    async def main():
        store = SQLiteCheckpointStore(sys.argv[1])
        await store.load(sys.argv[2], name="durable")
        for n in range(1, 6):
            await store.save(Checkpoint(sys.argv[2], {"shardId-1": str(1000 + n)}), name="durable")
        # No close, no exit handlers: the process dies the moment save() returns.
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


def test_sqlite_save_survives_sigkill(tmp_path: Path) -> None:
    path = tmp_path / "durable.db"
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), ARN],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr.decode()
    store = SQLiteCheckpointStore(path)
    assert store.load_sync(ARN, name="durable") == Checkpoint(ARN, {"shardId-1": "1005"})
    assert store.list_sync()[0].version == 5
    store.close_sync()


# --------------------------------------------------------------------------- DynamoDB (fake)

TABLE = "ddbstreams-checkpoints"


class FakeStateTable:
    """A Transport holding DynamoDB tables in memory, for the item operations the
    checkpoint store uses (and only the condition expressions it writes).

    ``creating_polls``: how many DescribeTable answers say CREATING after CreateTable.
    ``faults``: per operation, a queue of ``(when, TransportError)`` with ``when`` "before"
    (the call fails without effect) or "after" (it takes effect, then the answer is lost).
    ``block_puts``: PutItem takes effect, sets ``put_landed``, then waits for the event.
    """

    def __init__(self, *, creating_polls: int = 0) -> None:
        self.tables: dict[str, dict[str, Any]] = {}
        self.items: dict[str, dict[tuple[str, str], dict[str, Any]]] = {}
        self.creating_polls = creating_polls
        self.faults: dict[str, list[tuple[str, TransportError]]] = {}
        self.calls: list[str] = []
        self.block_puts: asyncio.Event | None = None
        self.put_landed = asyncio.Event()

    def add_table(
        self, name: str, key_schema: list[dict[str, str]], status: str = "ACTIVE"
    ) -> None:
        self.tables[name] = {
            "TableName": name,
            "TableStatus": status,
            "KeySchema": key_schema,
            "AttributeDefinitions": [
                {"AttributeName": k["AttributeName"], "AttributeType": "S"} for k in key_schema
            ],
        }
        self.items[name] = {}

    def fail(self, operation: str, when: str, error: TransportError) -> None:
        self.faults.setdefault(operation, []).append((when, error))

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(operation)
        await asyncio.sleep(0)
        fault = self.faults.get(operation)
        when, error = fault.pop(0) if fault else ("", None)
        if error is not None and when == "before":
            raise error
        result = getattr(self, "_" + operation)(params)
        if operation == "PutItem" and self.block_puts is not None:
            self.put_landed.set()
            await self.block_puts.wait()
        if error is not None:
            raise error
        return result

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        raise AssertionError("not used")

    async def close(self) -> None:
        pass

    def _table(self, params: Mapping[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
        name = params["TableName"]
        if name not in self.items:
            raise TransportError("ResourceNotFoundException", "Requested resource not found", 400)
        return self.items[name]

    @staticmethod
    def _key(key: Mapping[str, Any]) -> tuple[str, str]:
        return key["name"]["S"], key["stream_arn"]["S"]

    def _DescribeTable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._table(params)
        table = self.tables[params["TableName"]]
        if table["TableStatus"] == "CREATING":
            if self.creating_polls == 0:
                table["TableStatus"] = "ACTIVE"
            else:
                self.creating_polls -= 1
        return {"Table": dict(table)}

    def _CreateTable(self, params: Mapping[str, Any]) -> dict[str, Any]:
        name = params["TableName"]
        if name in self.tables:
            raise TransportError("ResourceInUseException", f"Table already exists: {name}", 400)
        assert params["BillingMode"] == "PAY_PER_REQUEST"
        self.add_table(name, params["KeySchema"], status="CREATING")
        self.tables[name]["AttributeDefinitions"] = params["AttributeDefinitions"]
        return {"TableDescription": dict(self.tables[name])}

    def _GetItem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        assert params["ConsistentRead"] is True
        item = self._table(params).get(self._key(params["Key"]))
        return {} if item is None else {"Item": dict(item)}

    def _PutItem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        items = self._table(params)
        key = self._key(params["Item"])
        current = items.get(key)
        condition = params.get("ConditionExpression")
        names = params.get("ExpressionAttributeNames", {})
        values = params.get("ExpressionAttributeValues", {})
        if condition == "attribute_not_exists(#n)":
            assert names == {"#n": "name"}
            ok = current is None
        elif condition == "attribute_not_exists(#n) OR #v = :expected":
            assert names == {"#n": "name", "#v": "version"}
            ok = current is None or current["version"] == values[":expected"]
        else:
            raise AssertionError(f"unexpected condition {condition!r}")
        if not ok:
            raise TransportError(
                "ConditionalCheckFailedException", "The conditional request failed", 400
            )
        items[key] = dict(params["Item"])
        return {}

    def _DeleteItem(self, params: Mapping[str, Any]) -> dict[str, Any]:
        self._table(params).pop(self._key(params["Key"]), None)
        return {}


CHECKPOINT_KEYS = [
    {"AttributeName": "name", "KeyType": "HASH"},
    {"AttributeName": "stream_arn", "KeyType": "RANGE"},
]


@pytest.fixture
def fake() -> FakeStateTable:
    return FakeStateTable()


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
async def client(fake: FakeStateTable, clock: FixedClock) -> AsyncIterator[StreamsClient]:
    async with StreamsClient(transport=fake, clock=clock) as streams:
        yield streams


def dynamo(client: StreamsClient, **kwargs: Any) -> DynamoDBCheckpointStore:
    return DynamoDBCheckpointStore(TABLE, client=client, **kwargs)


async def test_dynamodb_creates_the_table_and_waits(
    fake: FakeStateTable, client: StreamsClient, clock: FixedClock
) -> None:
    fake.creating_polls = 2
    store = dynamo(client, clock=clock)
    assert await store.load(ARN, name=NAME) is None
    assert fake.calls[:2] == ["DescribeTable", "CreateTable"]
    assert fake.tables[TABLE]["TableStatus"] == "ACTIVE"
    assert fake.tables[TABLE]["KeySchema"] == CHECKPOINT_KEYS
    assert clock.sleeps == [1.0, 1.0]
    await store.save(checkpoint(), name=NAME)
    assert await dynamo(client).load(ARN, name=NAME) == checkpoint()
    # The table is checked once per store.
    assert fake.calls.count("DescribeTable") == 4 + 1


async def test_dynamodb_table_created_concurrently(
    fake: FakeStateTable, client: StreamsClient
) -> None:
    # DescribeTable says "not found", then another process creates it before CreateTable.
    fake.fail(
        "DescribeTable",
        "before",
        TransportError("ResourceNotFoundException", "Requested resource not found", 400),
    )
    fake.add_table(TABLE, CHECKPOINT_KEYS)
    store = dynamo(client)
    await store.save(checkpoint(), name=NAME)
    assert await store.load(ARN, name=NAME) == checkpoint()


async def test_dynamodb_missing_table_without_create(client: StreamsClient) -> None:
    store = dynamo(client, create_table=False)
    with pytest.raises(TableNotFoundError, match="create_table=True"):
        await store.load(ARN, name=NAME)


async def test_dynamodb_wrong_key_schema(fake: FakeStateTable, client: StreamsClient) -> None:
    fake.add_table(TABLE, [{"AttributeName": "pk", "KeyType": "HASH"}])
    with pytest.raises(CheckpointError, match=r"not a ddbstreams checkpoint table.*pk HASH S"):
        await dynamo(client).load(ARN, name=NAME)


async def test_dynamodb_table_being_deleted(fake: FakeStateTable, client: StreamsClient) -> None:
    fake.add_table(TABLE, CHECKPOINT_KEYS, status="DELETING")
    with pytest.raises(CheckpointError, match="is DELETING"):
        await dynamo(client).save(checkpoint(), name=NAME)


async def test_dynamodb_item_layout(fake: FakeStateTable, client: StreamsClient) -> None:
    await dynamo(client).save(checkpoint(), name=NAME)
    [(key, item)] = fake.items[TABLE].items()
    assert key == ("app", ARN)
    assert item["version"] == {"N": "1"}
    assert item["updated_at"] == {"N": "1700000000.5"}
    assert orjson.loads(item["checkpoint"]["S"]) == checkpoint().to_json()


async def test_dynamodb_versions_and_conflicts(client: StreamsClient) -> None:
    a, b = dynamo(client), dynamo(client)
    await a.save(checkpoint(ARN, 1), name=NAME)
    with pytest.raises(CheckpointError, match=r"updated by another process \(version 1\)"):
        await b.save(checkpoint(ARN, 2), name=NAME)
    assert await b.load(ARN, name=NAME) == checkpoint(ARN, 1)
    await b.save(checkpoint(ARN, 2), name=NAME)
    with pytest.raises(CheckpointError, match=r"version 2.*reload it"):
        await a.save(checkpoint(ARN, 3), name=NAME)
    await a.load(ARN, name=NAME)
    await a.save(checkpoint(ARN, 3), name=NAME)
    await dynamo(client).save(checkpoint(ARN, 9), name="other")
    assert await dynamo(client).load(ARN, name=NAME) == checkpoint(ARN, 3)
    assert await dynamo(client).load(ARN, name="other") == checkpoint(ARN, 9)
    # Versions are per name: b never saw "other", yet saves its own name's checkpoint.
    await b.load(ARN, name=NAME)
    await b.save(checkpoint(ARN, 4), name=NAME)
    with pytest.raises(CheckpointError, match=r"under 'other'.*\(version 1\)"):
        await b.save(checkpoint(ARN, 10), name="other")


async def test_dynamodb_clear(fake: FakeStateTable, client: StreamsClient) -> None:
    store = dynamo(client)
    await store.save(checkpoint(ARN), name=NAME)
    await store.save(checkpoint(ARN2), name=NAME)
    await store.clear(ARN, name=NAME)
    assert await dynamo(client).load(ARN, name=NAME) is None
    assert await dynamo(client).load(ARN2, name=NAME) == checkpoint(ARN2)
    await store.save(checkpoint(ARN, 5), name=NAME)
    assert fake.items[TABLE][(NAME, ARN)]["version"] == {"N": "1"}


async def test_dynamodb_lost_response_is_not_a_conflict(
    fake: FakeStateTable, client: StreamsClient
) -> None:
    store = dynamo(client)
    await store.save(checkpoint(ARN, 1), name=NAME)
    # The write lands, the answer is lost; the client's retry then fails the condition.
    fake.fail("PutItem", "after", TransportError("Timeout", "read timeout"))
    await store.save(checkpoint(ARN, 2), name=NAME)
    assert fake.calls.count("PutItem") == 3
    assert fake.items[TABLE][(NAME, ARN)]["version"] == {"N": "2"}
    await store.save(checkpoint(ARN, 3), name=NAME)
    assert await dynamo(client).load(ARN, name=NAME) == checkpoint(ARN, 3)


async def test_dynamodb_cancelled_save_that_landed(
    fake: FakeStateTable, client: StreamsClient
) -> None:
    store = dynamo(client)
    await store.save(checkpoint(ARN, 1), name=NAME)
    fake.block_puts = asyncio.Event()
    task = asyncio.create_task(store.save(checkpoint(ARN, 2), name=NAME))
    await fake.put_landed.wait()
    assert fake.items[TABLE][(NAME, ARN)]["version"] == {"N": "2"}
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    fake.block_puts = None
    # The cancelled write landed; the store did not hear of it, yet the next save works.
    await store.save(checkpoint(ARN, 3), name=NAME)
    assert fake.items[TABLE][(NAME, ARN)]["version"] == {"N": "3"}
    assert await dynamo(client).load(ARN, name=NAME) == checkpoint(ARN, 3)


async def test_dynamodb_throttled_put_is_retried(
    fake: FakeStateTable, client: StreamsClient
) -> None:
    store = dynamo(client)
    throttled = TransportError("ThrottlingException", "slow down", 400)
    fake.fail("PutItem", "before", throttled)
    fake.fail("PutItem", "before", throttled)
    await store.save(checkpoint(), name=NAME)
    assert fake.calls.count("PutItem") == 3
    assert await store.load(ARN, name=NAME) == checkpoint()


async def test_dynamodb_throttling_exhausted(fake: FakeStateTable, clock: FixedClock) -> None:
    from ddbstreams.client._backoff import RetryPolicy

    async with StreamsClient(
        transport=fake, clock=clock, retry=RetryPolicy(max_attempts=2)
    ) as streams:
        store = dynamo(streams)
        await store.load(ARN, name=NAME)
        for _ in range(2):
            fake.fail("PutItem", "before", TransportError("ThrottlingException", "slow", 400))
        with pytest.raises(ThrottledError, match=TABLE):
            await store.save(checkpoint(), name=NAME)


@pytest.mark.parametrize(
    ("attribute", "value", "message"),
    [
        ("checkpoint", {"S": "nonsense"}, "invalid JSON"),
        ("checkpoint", {"S": '{"version": 1}'}, "corrupt checkpoint"),
        ("version", {"S": "one"}, "missing or malformed attribute"),
        ("checkpoint", None, "missing or malformed attribute"),
    ],
)
async def test_dynamodb_corrupt_item(
    fake: FakeStateTable,
    client: StreamsClient,
    attribute: str,
    value: dict[str, str] | None,
    message: str,
) -> None:
    await dynamo(client).save(checkpoint(), name=NAME)
    item = fake.items[TABLE][("app", ARN)]
    if value is None:
        del item[attribute]
    else:
        item[attribute] = value
    with pytest.raises(CheckpointError, match=message) as info:
        await dynamo(client).load(ARN, name=NAME)
    assert TABLE in str(info.value)
    assert "'app'" in str(info.value)


async def test_dynamodb_misfiled_checkpoint(fake: FakeStateTable, client: StreamsClient) -> None:
    await dynamo(client).save(checkpoint(ARN), name=NAME)
    fake.items[TABLE][(NAME, ARN)]["checkpoint"] = {
        "S": orjson.dumps(checkpoint(ARN2).to_json()).decode()
    }
    with pytest.raises(CheckpointError, match=f"names stream {ARN2}"):
        await dynamo(client).load(ARN, name=NAME)


async def test_dynamodb_store_arguments(client: StreamsClient) -> None:
    with pytest.raises(ConfigurationError, match="invalid checkpoint table name"):
        DynamoDBCheckpointStore("x", client=client)
    with pytest.raises(ConfigurationError, match="not both"):
        DynamoDBCheckpointStore(TABLE, client=client, endpoint_url="http://127.0.0.1:1")
    store = dynamo(client)
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.load(ARN, name=NAME)
    # A given client is left open.
    assert await dynamo(client).load(ARN, name=NAME) is None


async def test_dynamodb_owned_client_is_closed() -> None:
    store = DynamoDBCheckpointStore(TABLE, endpoint_url="http://127.0.0.1:1", region_name="x")
    await store.close()
    with pytest.raises(RuntimeError, match="closed"):
        await store.client.tables.describe_table(TABLE)


# --------------------------------------------------------------------------- client plumbing


async def test_client_maps_state_table_errors(fake: FakeStateTable, client: StreamsClient) -> None:
    tables = client.tables  # the state-table operations of the client
    with pytest.raises(TableNotFoundError, match=TABLE):
        await tables.get_item(TABLE, {"name": {"S": "a"}, "stream_arn": {"S": ARN}})
    with pytest.raises(TableNotFoundError):
        await tables.put_item(TABLE, {"name": {"S": "a"}, "stream_arn": {"S": ARN}})
    with pytest.raises(TableNotFoundError):
        await tables.delete_item(TABLE, {"name": {"S": "a"}, "stream_arn": {"S": ARN}})
    fake.add_table(TABLE, CHECKPOINT_KEYS)
    item = {"name": {"S": "a"}, "stream_arn": {"S": ARN}, "version": {"N": "1"}}
    await tables.put_item(
        TABLE, item, condition_expression="attribute_not_exists(#n)", names={"#n": "name"}
    )
    with pytest.raises(ConditionFailedError, match="ConditionalCheckFailedException"):
        await tables.put_item(
            TABLE, item, condition_expression="attribute_not_exists(#n)", names={"#n": "name"}
        )
    assert fake.calls.count("PutItem") == 3  # condition failures are not retried
    assert await tables.get_item(TABLE, {"name": {"S": "a"}, "stream_arn": {"S": ARN}}) == item
    assert await tables.get_item(TABLE, {"name": {"S": "b"}, "stream_arn": {"S": ARN}}) is None
    created = await tables.create_table(TABLE, attribute_definitions=[], key_schema=CHECKPOINT_KEYS)
    assert created is False  # ResourceInUseException: it exists
    assert (await tables.describe_table(TABLE))["TableName"] == TABLE
