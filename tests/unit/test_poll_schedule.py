"""PollSchedule: GetRecords polls within a budget, by the square-root rule (pure)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ddbstreams import ConfigurationError
from ddbstreams.reading._schedule import PollBudget, PollSchedule


def test_without_a_budget_the_fixed_schedule_rules() -> None:
    schedule = PollSchedule(PollBudget())
    schedule.add("a", 0.0)
    waits = [schedule.interval("a", 0.0, empty_pages=n) for n in (1, 2, 3, 4, 50)]
    assert waits == [0.1, 0.2, 0.4, 0.4, 0.4]
    # A page with records is followed by another poll at once.
    assert schedule.after_records("a", 0.0, full_page=False, newest_age=0.0) == 0.0


def test_the_budget_goes_by_the_square_root_of_each_shards_rate() -> None:
    """DESIGN.md's mixed workload: 10 busy shards (10 writes/s), 990 quiet (1 a minute),
    at KCL's spend on it (10 x 1 + 990 x 0.5 calls/s)."""
    budget = 10 * 1.0 + 990 * 0.5
    schedule = PollSchedule(PollBudget(calls_per_second=budget, rate_half_life=60.0))
    busy = [f"busy-{n}" for n in range(10)]
    quiet = [f"quiet-{n}" for n in range(990)]
    for shard_id in busy + quiet:
        schedule.add(shard_id, 0.0)
    # Ten minutes of arrivals, polled every second (the estimate's input only).
    for second in range(1, 601):
        now = float(second)
        for shard_id in busy:
            schedule.polled(shard_id, now, records=10)
        for index, shard_id in enumerate(quiet):
            schedule.polled(shard_id, now, records=int((second + index) % 60 == 0))
    now = 600.0
    busy_wait = schedule.interval(busy[0], now, empty_pages=1)
    # A quiet shard's estimate depends on when its last write came: take the median.
    quiet_waits = sorted(schedule.interval(s, now, empty_pages=1) for s in quiet)
    quiet_wait = quiet_waits[len(quiet_waits) // 2]
    assert busy_wait == pytest.approx(0.1, rel=0.1)  # vs KCL's 1 s
    assert quiet_wait == pytest.approx(2.45, rel=0.1)  # vs KCL's 2 s
    spent = sum(1 / schedule.interval(s, now, empty_pages=1) for s in busy + quiet)
    assert spent == pytest.approx(budget, rel=0.05)
    # Square-root rule: the waits are in the ratio of the rates' square roots.
    for shard_id in quiet[:50]:
        ratio = schedule.rate(busy[0], now) / schedule.rate(shard_id, now)
        wait = schedule.interval(shard_id, now, empty_pages=1)
        assert wait / busy_wait == pytest.approx(math.sqrt(ratio), rel=0.01)


def test_small_streams_keep_the_fixed_schedule_under_a_budget() -> None:
    schedule = PollSchedule(PollBudget(calls_per_second=250.0))
    for n in range(20):
        schedule.add(f"s{n}", 0.0)
    assert [schedule.interval("s0", 0.0, empty_pages=n) for n in (1, 2, 3)] == [0.1, 0.2, 0.4]


def test_a_backlog_is_drained_at_once_and_fresh_records_wait_their_turn() -> None:
    schedule = PollSchedule(PollBudget(calls_per_second=10.0))
    for n in range(100):
        schedule.add(f"s{n}", 0.0)
    share = schedule.interval("s0", 0.0, empty_pages=1)
    assert share == pytest.approx(10.0)  # 100 equal shards, 10 calls/s
    assert schedule.after_records("s0", 0.0, full_page=True, newest_age=0.0) == 0.0
    assert schedule.after_records("s0", 0.0, full_page=False, newest_age=600.0) == 0.0
    assert schedule.after_records("s0", 0.0, full_page=False, newest_age=1.0) == share


def test_throttling_holds_a_shard_back_doubling() -> None:
    schedule = PollSchedule(PollBudget())
    schedule.add("a", 0.0)
    schedule.polled("a", 0.0, records=0, throttled=True)
    assert schedule.interval("a", 0.0, empty_pages=1) == 1.0
    schedule.polled("a", 1.0, records=0, throttled=True)
    assert schedule.interval("a", 1.0, empty_pages=1) == 2.0
    schedule.polled("a", 3.0, records=5)
    assert schedule.interval("a", 3.0, empty_pages=1) == 0.1


def test_a_budget_per_shard_grows_with_the_stream() -> None:
    schedule = PollSchedule(PollBudget(calls_per_second=100.0, calls_per_shard=0.5))
    for n in range(10):
        schedule.add(f"s{n}", 0.0)
    assert schedule.calls_per_second() == 5.0
    for n in range(10, 1000):
        schedule.add(f"s{n}", 0.0)
    assert schedule.calls_per_second() == 100.0


@pytest.mark.parametrize(
    "fields",
    [
        {"calls_per_second": 0.0},
        {"calls_per_shard": -1.0},
        {"min_interval": 1.0, "idle_max_interval": 0.5},
        {"rate_half_life": 0.0},
    ],
)
def test_nonsense_budgets_are_configuration_errors(fields: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        PollBudget(**fields)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=2**32 - 1), st.integers(min_value=1, max_value=200))
def test_the_sum_kept_incrementally_matches_a_recount(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    schedule = PollSchedule(PollBudget(calls_per_second=50.0))
    live: set[str] = set()
    now = 0.0
    for step in range(steps):
        now += rng.random() * 5
        action = rng.random()
        if action < 0.3 or not live:
            shard_id = f"s{step}"
            schedule.add(shard_id, now)
            live.add(shard_id)
        elif action < 0.4:
            schedule.remove(live.pop())
        else:
            schedule.polled(rng.choice(sorted(live)), now, records=rng.randrange(0, 50))
    waits = {s: schedule.interval(s, now, empty_pages=1) for s in live}
    if live:
        # Σ 1/T never exceeds the budget (the fixed schedule only lengthens waits).
        assert sum(1 / w for w in waits.values()) <= 50.0 * 1.0001 + len(live) / 30.0
