"""ReadState: the one owner of a reader's per-shard positions (pure, no I/O)."""

from __future__ import annotations

import asyncio
import gc
import warnings

import pytest

import ddbstreams
from ddbstreams import SHARD_END, Checkpoint, ShardStart
from ddbstreams.reading._state import ReadState, ShardStatus
from ddbstreams.testing import StreamSimulator

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-01-01T00:00:00.000"
HORIZON = ShardStart("TRIM_HORIZON")
SEQ = [str(10**21 + n) for n in range(10)]


def test_the_checkpoint_is_a_view_of_the_shard_positions() -> None:
    state = ReadState(ARN, {"a": HORIZON, "b": HORIZON, "c": ShardStart("LATEST")})
    token = object()
    state.started("a", HORIZON, token)
    state.handed("a", SEQ[1])
    state.started("b", HORIZON, object())
    state.ended("b")
    state.consumed("b")
    assert state.checkpoint() == Checkpoint(
        ARN, {"a": SEQ[1]}, frozenset({"b"}), {"c": ShardStart("LATEST")}
    )
    assert state.position("a") == ShardStart("AFTER_SEQUENCE_NUMBER", SEQ[1])
    assert state.position("b") == SHARD_END
    assert state.position("c") == ShardStart("LATEST")
    assert state.position("zzz") is None


def test_an_initial_checkpoint_is_kept_until_superseded() -> None:
    initial = Checkpoint(ARN, {"a": SEQ[2]}, frozenset({"old"}), {"b": HORIZON})
    state = ReadState(
        ARN, {"a": ShardStart("AFTER_SEQUENCE_NUMBER", SEQ[2]), "b": HORIZON}, initial
    )
    assert state.checkpoint() == initial
    assert state.status("old") is ShardStatus.CONSUMED


def test_forgotten_shards_leave_the_checkpoint_once_consumed() -> None:
    state = ReadState(ARN, {"parent": HORIZON})
    state.started("parent", HORIZON, object())
    state.handed("parent", SEQ[0])
    state.ended("parent")
    state.forget(["parent"])  # its child started, but its last page waits in the buffer
    assert state.checkpoint().positions == {"parent": SEQ[0]}
    state.consumed("parent")
    assert state.shard_ids() == frozenset()


def test_release_returns_the_position_and_stale_pages_are_known() -> None:
    state = ReadState(ARN, {})
    first = object()
    state.started("a", HORIZON, first)
    state.handed("a", SEQ[3])
    assert state.is_current("a", first)
    assert state.release("a") == ShardStart("AFTER_SEQUENCE_NUMBER", SEQ[3])
    assert not state.is_current("a", first)
    second = object()
    state.started("a", ShardStart("AFTER_SEQUENCE_NUMBER", SEQ[3]), second)
    assert not state.is_current("a", first)  # a page of the first fetch is stale
    assert state.is_current("a", second)
    assert state.release("unknown") is None


async def test_a_reader_started_and_never_stopped_warns() -> None:
    sim = StreamSimulator()
    reader = ddbstreams.StreamReader(sim.stream_arn, follow=True, client=sim.client())
    await reader.start()
    assert reader.lifecycle is ddbstreams.ReaderLifecycle.RUNNING
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        del reader
        gc.collect()
    assert any(issubclass(w.category, ResourceWarning) for w in caught)
    await asyncio.sleep(0)  # the abandoned task was cancelled


async def test_a_stopped_reader_cannot_start_again() -> None:
    sim = StreamSimulator()
    reader = ddbstreams.StreamReader(sim.stream_arn, client=sim.client())
    async with reader:
        pass
    assert reader.lifecycle is ddbstreams.ReaderLifecycle.STOPPED
    with pytest.raises(RuntimeError, match="stopped"):
        await reader.start()
