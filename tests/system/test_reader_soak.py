"""Follow mode for hours of virtual time: live shard churn, faults, service inconsistencies.

Everything runs on one SimulatedClock, so polling, backoff, rollovers and iterator expiry
happen in virtual time and each test takes a second or two of real time.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict

import ddbstreams
from ddbstreams.testing import Faults, SimulatedClock, StreamSimulator


def assert_exactly_once_in_item_order(
    sim: StreamSimulator, records: list[ddbstreams.Record]
) -> None:
    delivered = [r.sequence_number for r in records]
    assert len(delivered) == len(set(delivered)), "a record was delivered twice"
    written = {change.sequence_number for change in sim.history}
    missing = written - set(delivered)
    assert not missing, f"missing {len(missing)} of {len(written)}"
    assert set(delivered) <= written
    per_item: dict[str, list[int]] = defaultdict(list)
    for record in records:
        per_item[record.keys["pk"]].append(int(record.sequence_number))
    for key, sequence_numbers in per_item.items():
        assert sequence_numbers == sorted(sequence_numbers), f"{key} out of order"


async def follow_while_live(
    sim: StreamSimulator,
    clock: SimulatedClock,
    *,
    start: ddbstreams.StartPosition = ddbstreams.TRIM_HORIZON,
    duration: float,
    stop_after: int | None = None,
    slow_consumer: float = 0.0,
    events: list[ddbstreams.ReaderEvent] | None = None,
    already: int = 0,
) -> tuple[list[ddbstreams.Record], ddbstreams.Checkpoint]:
    """Follow ``sim`` while a live writer runs for ``duration`` virtual seconds; read until
    every change but the ``already`` delivered ones is delivered (or ``stop_after`` records),
    then stop."""
    got: list[ddbstreams.Record] = []
    enough = asyncio.Event()
    reader = ddbstreams.StreamReader(
        sim.stream_arn,
        client=sim.client(),
        follow=True,
        start=start,
        clock=clock,
        on_event=events.append if events is not None else None,
        options=ddbstreams.ReaderOptions(describe_interval=10.0, child_discovery_timeout=30.0),
    )

    async def consume() -> None:
        async for record in reader:
            got.append(record)
            if slow_consumer:
                await clock.sleep(slow_consumer)
            if stop_after is not None and len(got) >= stop_after:
                enough.set()
                return

    async with reader:
        consuming = asyncio.create_task(consume())
        async with sim.live(
            writes_per_second=50.0,
            rollover_every=3.0,
            split_every=7.0,
            max_open_shards=6,
            keys=40,
            duration=duration,
            seed=sim.seed,
        ) as live:
            await live.wait()
        if stop_after is None:
            while len({r.sequence_number for r in got}) < len(sim.history) - already:
                await clock.sleep(1.0)
                assert not consuming.done() or consuming.exception() is None
        else:
            await enough.wait()
        consuming.cancel()
        await asyncio.gather(consuming, return_exceptions=True)
    return got, reader.checkpoint()


async def test_hours_of_churn_with_faults_and_an_inconsistent_listing() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(
        clock=clock,
        partitions=2,
        seed=101,
        empty_page_rate=0.2,
        describe_page_limit=5,
        children_visibility_delay=4.0,
        stale_parent_duration=6.0,
        faults=Faults(throttle_rate=0.05, server_error_rate=0.03, connection_reset_rate=0.02),
    )
    events: list[ddbstreams.ReaderEvent] = []

    records, _ = await follow_while_live(sim, clock, duration=180.0, events=events)

    assert len(sim.shards(include_trimmed=True)) > 50
    assert_exactly_once_in_item_order(sim, records)
    kinds = {type(e) for e in events}
    assert {ddbstreams.Throttled, ddbstreams.RequestRetried, ddbstreams.ShardsDiscovered} <= kinds


async def test_stop_midway_and_resume_while_the_stream_keeps_changing() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=2, seed=102, faults=Faults(throttle_rate=0.05))
    first, checkpoint = await follow_while_live(sim, clock, duration=60.0, stop_after=1200)
    # The stream moves on while nobody reads: rollovers and splits in the meantime.
    async with sim.live(
        writes_per_second=50.0,
        rollover_every=2.0,
        split_every=5.0,
        max_open_shards=6,
        keys=40,
        duration=60.0,
        seed=7,
    ) as live:
        await live.wait()

    rest, _ = await follow_while_live(
        sim,
        clock,
        start=ddbstreams.Checkpoint.from_json(checkpoint.to_json()),
        duration=10.0,
        already=len(first),
    )

    assert len(first) == 1200
    assert_exactly_once_in_item_order(sim, first + rest)


async def test_a_consumer_slower_than_iterator_expiry_loses_nothing() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=1, seed=103)
    for i in range(20):
        sim.put_item({"pk": f"item-{i}"})
    events: list[ddbstreams.ReaderEvent] = []
    got: list[ddbstreams.Record] = []

    # One record per page and one page of buffer: while the caller spends 1000 virtual
    # seconds on a record, the fetcher holds its next iterator longer than its 15 minutes.
    async with ddbstreams.StreamReader(
        sim.stream_arn,
        client=sim.client(),
        follow=True,
        clock=clock,
        page_limit=1,
        buffer_pages=1,
        on_event=events.append,
    ) as reader:
        async for record in reader:
            got.append(record)
            await clock.sleep(1000.0)
            if len(got) == 20:
                break

    assert_exactly_once_in_item_order(sim, got)
    assert any(isinstance(e, ddbstreams.IteratorRefreshed) for e in events)


async def test_retention_trims_records_a_stopped_reader_had_not_read() -> None:
    clock = SimulatedClock()
    sim = StreamSimulator(clock=clock, partitions=1, seed=104)
    first, checkpoint = await follow_while_live(sim, clock, duration=10.0, stop_after=100)
    clock.advance(25 * 3600.0)  # the reader was down for longer than the 24-hour retention
    events: list[ddbstreams.ReaderEvent] = []

    rest, _ = await follow_while_live(
        sim,
        clock,
        start=checkpoint,
        duration=5.0,
        events=events,
        already=len(sim.history) - len(sim.retained_history()),
    )

    trimmed = [e for e in events if isinstance(e, ddbstreams.RecordsTrimmed)]
    assert trimmed, "the gap must be reported"
    retained = {c.sequence_number for c in sim.retained_history()}
    assert {r.sequence_number for r in rest} >= retained
    assert not {r.sequence_number for r in first} & {r.sequence_number for r in rest}
