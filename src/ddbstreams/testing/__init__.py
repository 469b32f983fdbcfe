"""Test helpers for code that reads DynamoDB Streams.

* :class:`StreamSimulator` — an in-memory DynamoDB Streams with rollovers, splits, trimmed
  parents, sparse empty pages and paginated DescribeStream; use ``sim.client()`` in place of
  a real :class:`ddbstreams.StreamsClient`, or serve it over HTTP on loopback with
  :func:`serve_simulator` (async) or :class:`SimulatorServer` (a background thread).
* pytest fixtures (registered automatically when ddbstreams is installed): ``ddb_local``,
  ``source_table`` and ``make_source_table`` run DynamoDB Local (see ``ddbstreams.local``);
  ``stream_simulator``, ``make_stream_simulator``, ``simulator_server`` and
  ``simulated_clock`` give simulators and virtual time; ``simulator_server_with_tables``
  serves a simulator whose other DynamoDB requests (state tables) go to DynamoDB Local.

Either server takes ``tables_endpoint=`` (any DynamoDB endpoint URL) to forward the DynamoDB
requests the simulator does not answer itself, so one ``endpoint_url`` serves both a
simulated stream and real state tables.

Names are imported on first use: the pytest plugin lives in this package and is loaded by
every pytest run, which should not pay for the HTTP server's imports.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ddbstreams.testing._server import SimulatorServer, serve_simulator
    from ddbstreams.testing.simulator import (
        Faults,
        LiveWriter,
        SimulatedChange,
        SimulatedClock,
        SimulatorTransport,
        StreamSimulator,
    )

__all__ = [
    "Faults",
    "LiveWriter",
    "SimulatedChange",
    "SimulatedClock",
    "SimulatorServer",
    "SimulatorTransport",
    "StreamSimulator",
    "serve_simulator",
]

_HOMES = {
    "Faults": "ddbstreams.testing.simulator",
    "LiveWriter": "ddbstreams.testing.simulator",
    "SimulatedChange": "ddbstreams.testing.simulator",
    "SimulatedClock": "ddbstreams.testing.simulator",
    "SimulatorTransport": "ddbstreams.testing.simulator",
    "StreamSimulator": "ddbstreams.testing.simulator",
    "SimulatorServer": "ddbstreams.testing._server",
    "serve_simulator": "ddbstreams.testing._server",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(home), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
