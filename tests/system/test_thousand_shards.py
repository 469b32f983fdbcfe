"""A thousand shards per process, in virtual time (issue 10).

- **No work per poll grows with the shards.** A follow reader over 20 and over 1,000 open
  shards, each polled once a second (a per-shard poll budget, so that the mix of empty
  pages and pages with records is the same at both sizes) with a write on every shard
  every 10 s, records handed to the caller: a line tracer counts the lines of the library
  (``src/ddbstreams`` but its ``testing`` package) executed per GetRecords call. Any
  per-poll loop over the shards adds hundreds of lines per poll at 1,000 shards, so the
  counts must match within a few percent. The same tracer checks that nothing on the poll
  path calls the whole-stream operations (lineage, the checkpoint view, the lag view).
- **A consumer bounds its concurrent handler calls without starving a shard.** 1,000 open
  shards with writes on all of them and a handler that takes a second, under
  ``max_concurrent_handlers``: the bound is reached and never exceeded, every record is
  handled once, in item order, and no shard waits much longer than the others (the
  slots are handed out first come, first served).

The reader's memory per open shard is measured by ``bench/shards.py``.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

import ddbstreams
from ddbstreams import LATEST, Record
from ddbstreams.testing import SimulatedClock, StreamSimulator
from tests.support.consumers import virtual_consumer
from tests.support.shards import assert_complete_in_item_order, key_per_shard

LIBRARY = str(Path(ddbstreams.__file__).resolve().parent)
SIMULATOR = str(Path(LIBRARY, "testing"))
WRITE_EVERY = 10.0  # seconds between two writes to the same shard

# Operations over every shard: none of them may run for a poll.
WHOLE_STREAM = (
    "lineage/_graph.py:",
    "reading/_state.py:ReadState.checkpoint",
    "reading/_state.py:ReadState.shard_ids",
    "reading/_state.py:ReadState.__init__",
    "reading/_fetcher.py:LagBoard.seconds_behind",
    "reading/_fetcher.py:Pauses.paused",
    "reading/_coordinator.py:StreamCoordinator._done",
    "reading/_coordinator.py:StreamCoordinator._discovered",
)


class LineTracer:
    """Counts the lines of the library executed while installed, and its functions called
    (a coroutine resumed counts as a call)."""

    def __init__(self) -> None:
        self.lines = 0
        self.calls: Counter[str] = Counter()

    def __enter__(self) -> LineTracer:
        self._previous = sys.gettrace()
        sys.settrace(self._call)
        return self

    def __exit__(self, *exc: object) -> None:
        sys.settrace(self._previous)

    def _call(self, frame: FrameType, event: str, arg: Any) -> Any:
        filename = frame.f_code.co_filename
        if not filename.startswith(LIBRARY) or filename.startswith(SIMULATOR):
            return None
        where = filename[len(LIBRARY) + 1 :]
        self.calls[f"{where}:{frame.f_code.co_qualname}"] += 1
        return self._line

    def _line(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "line":
            self.lines += 1
        return self._line


async def _trace_polls(shards: int, window: float) -> tuple[float, int, LineTracer]:
    """Library lines per GetRecords over ``window`` virtual seconds of steady polling."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=shards, seed=29, retention=None)
    keys = list(key_per_shard(sim).values())
    options = ddbstreams.ReaderOptions(
        poll_budget=None, poll_budget_per_shard=1.0, describe_interval=3600.0
    )
    reader = ddbstreams.StreamReader(
        sim.stream_arn, follow=True, start=LATEST, client=sim.client(), clock=clock, options=options
    )
    handed = 0

    async def read() -> None:
        nonlocal handed
        async for _ in reader:
            handed += 1

    async def write() -> None:
        while True:
            for key in keys:
                sim.put_item({"pk": key, "at": clock.monotonic()})
                await clock.sleep(WRITE_EVERY / len(keys))

    async with reader, asyncio.timeout(60), asyncio.TaskGroup() as group:
        tasks = [group.create_task(read()), group.create_task(write())]
        await clock.sleep(3 * WRITE_EVERY)  # every iterator taken, every shard's rate learned
        polls_before, handed_before = sum(sim.get_records_calls.values()), handed
        with LineTracer() as tracer:
            await clock.sleep(window)
        polls = sum(sim.get_records_calls.values()) - polls_before
        for task in tasks:
            task.cancel()
    assert handed - handed_before >= shards * window / WRITE_EVERY / 2  # records flowed
    return tracer.lines / polls, polls, tracer


async def test_the_work_of_one_poll_does_not_grow_with_the_shards() -> None:
    small, small_polls, _ = await _trace_polls(20, window=100.0)
    large, large_polls, tracer = await _trace_polls(1000, window=3.0)
    assert small_polls >= 1500
    assert large_polls >= 2500
    # A loop over the shards once per poll would add >= 1,000 lines per poll here.
    assert large <= small * 1.1 + 5, f"{large:.0f} lines per poll at 1,000 shards vs {small:.0f}"
    whole_stream = {name: n for name, n in tracer.calls.items() if name.startswith(WHOLE_STREAM)}
    assert not whole_stream, f"whole-stream operations called while polling: {whole_stream}"


SHARDS = 1000
HANDLERS = 16
HANDLER_SECONDS = 1.0
WRITES_PER_SHARD = 8
EVERY = 30.0  # seconds between two writes to the same shard


async def test_a_consumer_bounds_its_handler_calls_over_a_thousand_shards_fairly() -> None:
    """Handlers take a second and 16 may run: one round of every shard takes about a
    minute of virtual time, with writes on every shard every 30 s."""
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=SHARDS, seed=31, retention=None)
    keys = list(key_per_shard(sim).values())
    written: dict[str, float] = {}
    waited: dict[str, float] = {}
    handled: list[Record] = []
    running = peak = 0

    async def handler(records: list[Record]) -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        now = clock.monotonic()
        for record in records:
            waited.setdefault(record.sequence_number, now - written[record.sequence_number])
        handled.extend(records)
        await clock.sleep(HANDLER_SECONDS)
        running -= 1

    consumer = virtual_consumer(
        sim,
        clock,
        handler,
        starting_position=LATEST,
        max_concurrent_handlers=HANDLERS,
        reader_options=ddbstreams.ReaderOptions(describe_interval=600.0),
    )
    async with asyncio.timeout(60), asyncio.TaskGroup() as group:
        run = group.create_task(consumer.run())
        await clock.sleep(10.0)  # every LATEST iterator is taken
        for round_number in range(WRITES_PER_SHARD):
            for key in keys:
                change = sim.put_item({"pk": key, "round": round_number})
                assert change is not None
                written[change.sequence_number] = clock.monotonic()
                await clock.sleep(EVERY / SHARDS)
        while len(waited) < len(written) and clock.monotonic() < 3600:
            await clock.sleep(5.0)
        await consumer.stop()
        await run

    assert peak == HANDLERS, f"{peak} handler calls at once"
    assert_complete_in_item_order(sim, handled, exactly_once=True)
    assert {r.shard_id for r in handled} == set(sim.open_shard_ids())
    by_shard: dict[str, list[float]] = defaultdict(list)
    for record in handled:
        by_shard[record.shard_id].append(waited[record.sequence_number])
    mean = statistics.fmean(waited.values())
    worst_shard = max(statistics.fmean(times) for times in by_shard.values())
    # Measured: max 1.9x and worst shard 1.2x the mean; slots handed out last come first
    # served, or at random, give 3.1-3.7x and 2.4-2.7x.
    longest = max(waited.values())
    summary = f"mean {mean:.0f} s, max {longest:.0f} s, worst shard {worst_shard:.0f} s"
    assert longest <= 2.5 * mean, summary
    assert worst_shard <= 1.5 * mean, summary
