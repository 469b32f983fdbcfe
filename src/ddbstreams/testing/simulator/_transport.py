"""The in-memory transport: :class:`SimulatorTransport` reads a simulator without HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ddbstreams.transport._seam import TransportError

if TYPE_CHECKING:
    from ddbstreams.testing.simulator._simulator import StreamSimulator

__all__ = ["SimulatorTransport"]


class SimulatorTransport:
    """The :class:`~ddbstreams.transport._seam.Transport` of a :class:`StreamSimulator`.

    Answers with the service's wire shapes (timestamps as epoch seconds) and raises
    :class:`~ddbstreams.transport._seam.TransportError` with the service's error codes (and the
    transport-level ``ConnectionError``/``Timeout`` for injected resets and timeouts). Each
    call yields to the event loop once, as real I/O would. After :meth:`close` every call
    raises ``TransportError("ConnectionError", ...)`` so use-after-close bugs show.
    """

    __slots__ = ("_closed", "simulator")

    def __init__(self, simulator: StreamSimulator) -> None:
        self.simulator = simulator
        self._closed = False

    async def call(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Perform ``DescribeStream``, ``GetShardIterator``, ``ListStreams`` or
        ``DescribeTable``; ``UnknownOperationException`` for anything else."""
        await asyncio.sleep(0)
        return self.call_sync(operation, params)

    async def get_records_body(self, params: Mapping[str, Any]) -> bytes:
        """Perform GetRecords; return the response body exactly as the service sends it."""
        await asyncio.sleep(0)
        return self.get_records_sync(params)

    def call_sync(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """:meth:`call` without the event loop (used by the HTTP server)."""
        self._check_open()
        return self.simulator.call(operation, params)

    def get_records_sync(self, params: Mapping[str, Any]) -> bytes:
        """:meth:`get_records_body` without the event loop (used by the HTTP server)."""
        self._check_open()
        return self.simulator.get_records_body(params)

    async def close(self) -> None:
        """Mark this transport closed (the simulator itself stays usable). Idempotent."""
        self._closed = True

    def _check_open(self) -> None:
        if self._closed:
            raise TransportError("ConnectionError", "the simulator transport is closed")
