"""When to poll each shard, within a budget of GetRecords calls (pure, no I/O).

Every GetRecords call is billed (outside Lambda triggers), empty ones included, and costs
CPU. Under a budget of ``B`` calls per second, the allocation that minimises the expected
write-to-delivery delay summed over records polls shard ``i`` at a rate proportional to
the square root of its arrival rate ``λᵢ``: a record waits on average half the poll
interval ``Tᵢ``, and minimising ``Σ λᵢ Tᵢ / 2`` subject to ``Σ 1 / Tᵢ = B`` gives
``Tᵢ = S / (B √λᵢ)`` with ``S = Σ √λⱼ``. A fixed schedule spends as much on a shard that
never changes as on the busiest one.

:class:`PollSchedule` keeps, per shard, an estimate of ``λᵢ`` (records seen, decayed with a
half-life, plus a small prior so that a new or quiet shard is never starved). A shard's
wait after an empty page is the larger of the **fixed schedule** (``min_interval``,
doubling to ``idle_max_interval`` while the shard stays idle: fast for small streams) and
its **share of the budget** (``Tᵢ`` above, at most ``max_interval``). With few shards the
budget does not bind and the fixed schedule rules; with many, the budget does. After a
page that shows a backlog (a full page, or records older than the shard's wait) the next
poll is immediate. Throttling holds the shard back for a while. Every method is O(1): the
sum ``S`` is kept up to date incrementally, so no work grows with the number of shards.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ddbstreams._errors import ConfigurationError
from ddbstreams.client._backoff import exponential_delay

__all__ = ["PollBudget", "PollSchedule"]

_LN2 = math.log(2.0)
_CREATION_ROUNDING = 60.0
"""ApproximateCreationDateTime is rounded down: to the second on AWS, to the minute on
DynamoDB Local. A record's age tells a backlog only beyond that."""


@dataclass(frozen=True, slots=True)
class PollBudget:
    """How many GetRecords calls a reader may spend (durations in seconds).

    - ``calls_per_second``: for the whole reader; ``calls_per_shard``: per shard being
      read (the budget grows with the stream). With both, the smaller applies; with
      neither, only the fixed schedule.
    - ``min_interval`` / ``idle_max_interval``: the fixed schedule, the wait after the
      first empty page doubling up to the second while a shard stays idle.
    - ``max_interval``: the longest wait the budget may impose on a shard (it bounds the
      latency of the quietest shard, and so its floor cost).
    - ``rate_half_life``: how fast a shard's arrival-rate estimate forgets the past.
    - ``prior_rate``: records per second assumed of a shard before it shows any.
    """

    calls_per_second: float | None = None
    calls_per_shard: float | None = None
    min_interval: float = 0.1
    idle_max_interval: float = 0.4
    max_interval: float = 30.0
    rate_half_life: float = 120.0
    prior_rate: float = 1.0 / 600.0

    def __post_init__(self) -> None:
        for name in ("calls_per_second", "calls_per_shard"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigurationError(f"{name} must be positive (or None)")
        if not 0 <= self.min_interval <= self.idle_max_interval <= self.max_interval:
            raise ConfigurationError("need 0 <= min_interval <= idle_max_interval <= max_interval")
        if not (self.rate_half_life > 0 and self.prior_rate > 0):
            raise ConfigurationError("rate_half_life and prior_rate must be positive")


class _Shard:
    __slots__ = ("count", "root", "seen_at", "throttled_until", "throttles")

    def __init__(self, count: float, now: float, root: float) -> None:
        self.count = count  # decayed number of records seen
        self.seen_at = now
        self.root = root  # √λ as last counted in the schedule's sum
        self.throttled_until = 0.0
        self.throttles = 0  # consecutive throttled calls


class PollSchedule:
    """Poll intervals of a reader's shards under a :class:`PollBudget`.

    Called by the shards' fetchers (one reader, one event loop): :meth:`add` when a shard
    starts, :meth:`polled` after each GetRecords, :meth:`interval` for the wait before the
    next poll, :meth:`remove` when the shard is done. Times are the reader's monotonic
    clock, in seconds.
    """

    __slots__ = ("_budget", "_root_sum", "_shards", "_tau")

    def __init__(self, budget: PollBudget) -> None:
        self._budget = budget
        self._tau = budget.rate_half_life / _LN2
        self._shards: dict[str, _Shard] = {}
        self._root_sum = 0.0

    @property
    def budget(self) -> PollBudget:
        return self._budget

    def add(self, shard_id: str, now: float) -> None:
        if shard_id in self._shards:
            return
        count = self._budget.prior_rate * self._tau
        root = math.sqrt(self._budget.prior_rate)
        self._shards[shard_id] = _Shard(count, now, root)
        self._root_sum += root

    def remove(self, shard_id: str) -> None:
        shard = self._shards.pop(shard_id, None)
        if shard is not None:
            self._root_sum -= shard.root
        if not self._shards:
            self._root_sum = 0.0  # no rounding residue outlives the shards

    def rate(self, shard_id: str, now: float) -> float:
        """Estimated arrival rate of the shard, records per second."""
        shard = self._shards[shard_id]
        return self._decayed(shard, now) / self._tau

    def polled(self, shard_id: str, now: float, *, records: int, throttled: bool = False) -> None:
        """A GetRecords of the shard returned ``records`` records, or was throttled (the
        shard is then held back 1 s, doubling while throttling goes on)."""
        shard = self._shards.get(shard_id)
        if shard is None:
            return
        shard.count = self._decayed(shard, now) + records
        shard.seen_at = now
        prior = self._budget.prior_rate
        root = math.sqrt(max(shard.count / self._tau, prior))
        self._root_sum += root - shard.root
        shard.root = root
        if throttled:
            shard.throttles += 1
            hold = exponential_delay(1.0, self._budget.max_interval, shard.throttles)
            shard.throttled_until = now + hold
        else:
            shard.throttles = 0

    def calls_per_second(self) -> float | None:
        """The budget now (it grows with the shards under ``calls_per_shard``)."""
        budget = self._budget
        limits = [
            limit
            for limit in (
                budget.calls_per_second,
                None
                if budget.calls_per_shard is None
                else budget.calls_per_shard * len(self._shards),
            )
            if limit is not None
        ]
        return min(limits) if limits else None

    def interval(self, shard_id: str, now: float, *, empty_pages: int) -> float:
        """Seconds to wait before polling the shard again after ``empty_pages`` (≥ 1)
        consecutive empty pages: the fixed schedule or the shard's share of the budget,
        whichever is longer, and no less than a throttled shard's hold."""
        budget = self._budget
        shard = self._shards[shard_id]
        exponent = min(max(empty_pages, 1) - 1, 60)
        wait = min(budget.idle_max_interval, budget.min_interval * 2.0**exponent)
        wait = max(wait, self._share(shard))
        return max(wait, shard.throttled_until - now)

    def after_records(
        self, shard_id: str, now: float, *, full_page: bool, newest_age: float | None
    ) -> float:
        """Seconds to wait after a page with records: none when it shows a backlog (a
        full page, or a newest record older than the shard's wait by more than creation
        times are rounded: it is behind), else the shard's share of the budget (nothing
        without one: the next poll is at once)."""
        shard = self._shards[shard_id]
        hold = max(0.0, shard.throttled_until - now)
        share = self._share(shard)
        behind = newest_age is not None and newest_age > max(share, hold) + _CREATION_ROUNDING
        if full_page or behind:
            return hold
        return max(share, hold)

    def _share(self, shard: _Shard) -> float:
        """``S / (B √λᵢ)``, at most ``max_interval``; 0 without a budget."""
        calls = self.calls_per_second()
        if calls is None:
            return 0.0
        return min(self._budget.max_interval, self._root_sum / (calls * shard.root))

    def _decayed(self, shard: _Shard, now: float) -> float:
        elapsed = max(0.0, now - shard.seen_at)
        return shard.count * math.exp(-elapsed / self._tau)
