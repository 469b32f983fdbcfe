"""Test helpers for code that reads DynamoDB Streams.

* :class:`StreamSimulator` — an in-memory DynamoDB Streams with rollovers, splits, trimmed
  parents, sparse empty pages and paginated DescribeStream; use ``sim.client()`` in place of
  a real :class:`ddbstreams.StreamsClient`, or serve it over HTTP on loopback with
  :func:`serve_simulator` (async) or :class:`SimulatorServer` (a background thread).
* pytest fixtures (registered automatically when ddbstreams is installed): ``ddb_local``,
  ``source_table`` and ``make_source_table`` run DynamoDB Local (see ``ddbstreams.local``).
"""

from ddbstreams.testing._server import SimulatorServer, serve_simulator
from ddbstreams.testing._simulator import (
    SimulatedChange,
    SimulatedClock,
    SimulatorTransport,
    StreamSimulator,
)

__all__ = [
    "SimulatedChange",
    "SimulatedClock",
    "SimulatorServer",
    "SimulatorTransport",
    "StreamSimulator",
    "serve_simulator",
]
