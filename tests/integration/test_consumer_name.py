"""``Consumer(name=...)`` keys the consumer's checkpoint in its store.

The name is the application's: several applications reading one stream can share one
checkpoint store (a SQLite file, a DynamoDB state table) without touching each other's
position, whether they run one after the other or at the same time. The store is only a
place; it takes the name on every call.
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import ddbstreams
from ddbstreams import (
    BlockingConsumer,
    CheckpointStore,
    ConfigurationError,
    Consumer,
    DynamoDBCheckpointStore,
    MemoryCheckpointStore,
    Record,
    SQLiteCheckpointStore,
)
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.testing import StreamSimulator

FAST = ddbstreams.ReaderOptions(
    idle_poll_delay=0.01,
    idle_poll_max_delay=0.05,
    describe_interval=0.5,
    describe_rate=50.0,
    child_discovery_timeout=2.0,
)
OPTIONS = ddbstreams.ConsumerOptions(batch_size=10, retry_delay=0.001, retry_max_delay=0.01)
WITHIN = 30.0
"""Seconds an application may take to handle what it is waiting for."""


class Handled:
    """A handler noting the records it was given; ``enough`` is set once ``want`` distinct
    records have arrived. Safe to call from the consumer's thread."""

    def __init__(self, want: int) -> None:
        self.want = want
        self.records: list[Record] = []
        self.enough = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, records: list[Record]) -> None:
        with self._lock:
            self.records.extend(records)
            if len({r.sequence_number for r in self.records}) >= self.want:
                self.enough.set()

    @property
    def pks(self) -> list[str]:
        return [r.keys["pk"] for r in self.records]


# --------------------------------------------------------------------------- no engine


async def run_until_handled(*pairs: tuple[Consumer, Handled]) -> list[BaseException | None]:
    """Run the consumers at once until each has handled what it wants (or one of them
    fails), then stop them all; the outcome of each run (None or its error)."""
    tasks = [asyncio.create_task(consumer.run()) for consumer, _ in pairs]
    waits = [asyncio.create_task(asyncio.to_thread(h.enough.wait, WITHIN)) for _, h in pairs]
    try:
        pending = set(tasks) | set(waits)
        while pending & set(waits):
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            if done & set(tasks):
                break  # a consumer ended (an error): no point waiting for the others
    finally:
        for consumer, _ in pairs:
            await consumer.stop()
        for handled in (h for _, h in pairs):
            handled.enough.set()  # release the waiting threads
        await asyncio.gather(*waits)
    results = await asyncio.gather(*tasks, return_exceptions=True)
    return [r if isinstance(r, BaseException) else None for r in results]


def simulator_consumer(
    sim: StreamSimulator, handled: Handled, store: CheckpointStore, **kwargs: Any
) -> Consumer:
    return Consumer(
        sim.stream_arn,
        handled,
        store=store,
        client=sim.client(),
        reader_options=FAST,
        options=OPTIONS,
        **kwargs,
    )


async def test_two_names_share_a_memory_store() -> None:
    sim = StreamSimulator(partitions=2, seed=8)
    for i in range(50):
        sim.put_item({"pk": f"item-{i:02d}", "n": i})
    store = MemoryCheckpointStore()

    billing = Handled(50)
    [error] = await run_until_handled(
        (simulator_consumer(sim, billing, store, name="billing"), billing)
    )
    assert error is None
    search = Handled(50)
    [error] = await run_until_handled(
        (simulator_consumer(sim, search, store, name="search"), search)
    )
    assert error is None
    assert len({r.sequence_number for r in search.records}) == 50

    [billing_row, search_row] = store.list_sync()
    assert (billing_row.name, search_row.name) == ("billing", "search")
    assert billing_row.checkpoint == search_row.checkpoint


async def test_default_name_is_default() -> None:
    sim = StreamSimulator(seed=3)
    sim.put_item({"pk": "a"})
    store = MemoryCheckpointStore()
    handled = Handled(1)
    [error] = await run_until_handled((simulator_consumer(sim, handled, store), handled))
    assert error is None
    assert [(row.name, row.stream_arn) for row in store.list_sync()] == [
        ("default", sim.stream_arn)
    ]


@pytest.mark.parametrize("name", ["", None, 7])
def test_consumer_name_must_be_a_non_empty_string(name: Any) -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Consumer("Orders", print, store=MemoryCheckpointStore(), name=name)


def test_store_constructors_refuse_a_name(tmp_path: Path) -> None:
    for make in (
        lambda: SQLiteCheckpointStore(tmp_path / "x.sqlite", name="billing"),  # type: ignore[arg-type]
        lambda: MemoryCheckpointStore(name="billing"),  # type: ignore[arg-type]
        lambda: DynamoDBCheckpointStore("state", name="billing", region_name="us-east-1"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigurationError, match=r"Consumer\(name=\.\.\.\)") as info:
            make()
        assert "tail --name" in str(info.value)
    assert not (tmp_path / "x.sqlite").exists()


# --------------------------------------------------------------------------- DynamoDB Local


@pytest.fixture
def engine_env(ddb_local: DynamoDBLocal, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Connection arguments for consumers and stores; the engine's dummy credentials in the
    environment (and no other AWS setting of the machine)."""
    kwargs = ddb_local.client_kwargs()
    for variable in list(os.environ):
        if variable.startswith("AWS_"):
            monkeypatch.delenv(variable)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", kwargs["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", kwargs["aws_secret_access_key"])
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return {"endpoint_url": kwargs["endpoint_url"], "region_name": kwargs["region_name"]}


@pytest.fixture
def state_table(ddb_local: DynamoDBLocal) -> Iterator[str]:
    name = f"ddbstreams-state-{uuid.uuid4().hex[:12]}"
    yield name
    ddb_local.delete_table(name)


def put_items(table: SourceTable, first: int, count: int) -> None:
    for i in range(first, first + count):
        table.put({"pk": f"item-{i:02d}", "n": i})


def run_blocking(
    stream: str, name: str, store: CheckpointStore, want: int, connection: dict[str, Any]
) -> Handled:
    """Run a BlockingConsumer in a thread until it handled ``want`` records, then stop it."""
    handled = Handled(want)
    consumer = BlockingConsumer(
        stream,
        handled,
        name=name,
        store=store,
        reader_options=FAST,
        options=OPTIONS,
        **connection,
    )
    errors: list[BaseException] = []

    def run() -> None:
        try:
            consumer.run()
        except BaseException as exc:
            errors.append(exc)
            handled.enough.set()

    thread = threading.Thread(target=run, name=f"consumer {name}")
    thread.start()
    try:
        handled.enough.wait(WITHIN)
    finally:
        consumer.stop()
        thread.join(WITHIN)
    assert not thread.is_alive()
    assert errors == []
    return handled


@pytest.mark.integration
def test_two_applications_share_a_sqlite_file_one_after_the_other(
    engine_env: dict[str, Any], source_table: SourceTable, tmp_path: Path
) -> None:
    path = tmp_path / "x.sqlite"
    put_items(source_table, 0, 50)

    billing = run_blocking(
        source_table.name, "billing", SQLiteCheckpointStore(path), 50, engine_env
    )
    assert sorted(set(billing.pks)) == [f"item-{i:02d}" for i in range(50)]
    search = run_blocking(source_table.name, "search", SQLiteCheckpointStore(path), 50, engine_env)
    assert sorted(set(search.pks)) == [f"item-{i:02d}" for i in range(50)]

    # Each resumes from its own checkpoint: only the new record.
    put_items(source_table, 50, 1)
    for name in ("billing", "search"):
        again = run_blocking(source_table.name, name, SQLiteCheckpointStore(path), 1, engine_env)
        assert again.pks == ["item-50"]
    with SQLiteCheckpointStore(path) as store:
        assert [(row.name, row.version > 0) for row in store.list_sync()] == [
            ("billing", True),
            ("search", True),
        ]


async def run_two_at_once(
    stream: str, stores: list[CheckpointStore], want: int, connection: dict[str, Any]
) -> list[Handled]:
    billing, search = Handled(want), Handled(want)
    consumers = [
        Consumer(
            stream,
            handled,
            name=name,
            store=store,
            reader_options=FAST,
            options=OPTIONS,
            **connection,
        )
        for name, handled, store in zip(
            ("billing", "search"), (billing, search), stores, strict=True
        )
    ]
    try:
        errors = await run_until_handled(*zip(consumers, (billing, search), strict=True))
    finally:
        for consumer in consumers:
            await consumer.close()
    assert errors == [None, None]
    return [billing, search]


@pytest.mark.integration
async def test_two_applications_share_a_sqlite_file_at_once(
    engine_env: dict[str, Any], source_table: SourceTable, tmp_path: Path
) -> None:
    path = tmp_path / "x.sqlite"
    put_items(source_table, 0, 50)

    for handled in await run_two_at_once(
        source_table.stream_arn,
        [SQLiteCheckpointStore(path), SQLiteCheckpointStore(path)],
        50,
        engine_env,
    ):
        assert sorted(set(handled.pks)) == [f"item-{i:02d}" for i in range(50)]
    with SQLiteCheckpointStore(path) as store:
        assert [row.name for row in store.list_sync()] == ["billing", "search"]


@pytest.mark.integration
async def test_two_applications_share_a_dynamodb_state_table(
    ddb_local: DynamoDBLocal,
    engine_env: dict[str, Any],
    source_table: SourceTable,
    state_table: str,
) -> None:
    put_items(source_table, 0, 50)

    def store() -> DynamoDBCheckpointStore:
        return DynamoDBCheckpointStore(state_table, **engine_env)

    # One after the other: the second application handles everything too.
    billing, search = Handled(50), Handled(50)
    for name, handled in (("billing", billing), ("search", search)):
        consumer = Consumer(
            source_table.stream_arn,
            handled,
            name=name,
            store=store(),
            reader_options=FAST,
            options=OPTIONS,
            **engine_env,
        )
        try:
            assert await run_until_handled((consumer, handled)) == [None]
        finally:
            await consumer.close()
        assert sorted(set(handled.pks)) == [f"item-{i:02d}" for i in range(50)]

    # At once, after 20 more records: each carries on from its own checkpoint.
    put_items(source_table, 50, 20)
    for handled in await run_two_at_once(
        source_table.stream_arn, [store(), store()], 20, engine_env
    ):
        assert sorted(set(handled.pks)) == [f"item-{i:02d}" for i in range(50, 70)]

    items = ddb_local.dynamodb_client().scan(TableName=state_table, ConsistentRead=True)["Items"]
    assert sorted(item["name"]["S"] for item in items) == ["billing", "search"]
