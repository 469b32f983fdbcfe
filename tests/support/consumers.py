"""Consumers for tests over the simulator in virtual time."""

from __future__ import annotations

from typing import Any

from ddbstreams import Consumer, MemoryCheckpointStore
from ddbstreams.testing import SimulatedClock, StreamSimulator


def virtual_consumer(
    sim: StreamSimulator, clock: SimulatedClock, handler: Any, **options: Any
) -> Consumer:
    """A consumer of ``sim`` on ``clock`` with a fresh memory store (unless given)."""
    options.setdefault("store", MemoryCheckpointStore())
    return Consumer(sim.stream_arn, handler, client=sim.client(), clock=clock, **options)
