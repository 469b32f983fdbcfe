"""Tuning of a stream reader: every knob in one frozen value."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Literal

from ddbstreams._errors import ConfigurationError
from ddbstreams.reading._schedule import PollBudget

__all__ = ["ReaderOptions", "TrimmedPolicy"]

TrimmedPolicy = Literal["skip", "raise"]


@dataclass(frozen=True, slots=True)
class ReaderOptions:
    """Tuning of a :class:`StreamReader` (all durations in seconds).

    - ``max_concurrent_requests``: GetRecords / GetShardIterator calls in flight at once
      (and pages fetched but not yet in the buffer). It bounds load and memory, never which
      shards are read: every shard that may be read has its own fetcher, and fetchers take
      turns first come, first served. ``max_concurrent_shards`` is its deprecated former
      name (it used to cap the shards read at once, which left every shard past that
      number unread in follow mode).
    - ``buffer_pages``: pages waiting for the caller; when full, fetching pauses.
    - ``page_limit``: GetRecords Limit (1 to 1000; ``None``: the service's maximum).
    - ``catch_up_empty_pages``: in a single pass an open shard counts as caught up after
      this many consecutive empty pages (GetRecords may return an empty page mid-shard, so
      one is not enough). ``creation_time_slack``: a single pass also stops reading an open
      shard after a page whose last record was created this long after the pass began
      (clock skew allowance between this host and the service).
    - ``empty_page_delay``: wait between empty pages of an open shard in a single pass.
    - ``idle_poll_delay`` / ``idle_poll_max_delay``: in follow mode, the fixed schedule: the
      wait after an empty page doubles from the first to the second for a shard that stays
      idle; after a page with records the next poll is immediate.
    - ``poll_budget`` (default 250) / ``poll_budget_per_shard``: GetRecords calls per
      second the reader may spend in follow mode, in all or per shard read (the smaller
      applies; ``None`` for no limit). When the fixed schedule would spend more, each
      shard's wait grows to its share of the budget, in proportion to the square root of
      its recent arrival rate (busy shards are polled more often than quiet ones; see
      ``reading/_schedule.py``), up to ``poll_max_interval``. A backlog is read at once.
    - ``describe_interval``: in follow mode, how often a full DescribeStream looks for
      shards that were missed. ``describe_rate``: DescribeStream calls allowed per second
      (the service allows 10 per stream).
    - ``child_discovery_timeout``: how long to keep asking for a finished shard's children
      (they can take a moment to appear) before leaving it to the periodic DescribeStream.
    - ``on_trimmed``: ``"skip"`` continues at the oldest remaining record and reports a
      :class:`~ddbstreams.RecordsTrimmed` event; ``"raise"`` ends the read with
      :class:`~ddbstreams.TrimmedDataError`.
    - ``retry_max_delay``: in follow mode, the longest wait between attempts at a shard
      whose calls keep failing after the client's own retries (throttling, 5xx, network).
    - ``event_buffer``: events kept for :meth:`StreamReader.events` before the oldest drop.
    """

    max_concurrent_requests: int = 8
    buffer_pages: int = 8
    page_limit: int | None = None
    catch_up_empty_pages: int = 3
    empty_page_delay: float = 0.1
    creation_time_slack: float = 5.0
    idle_poll_delay: float = 0.1
    idle_poll_max_delay: float = 0.4
    describe_interval: float = 60.0
    describe_rate: float = 5.0
    child_discovery_timeout: float = 30.0
    on_trimmed: TrimmedPolicy = "skip"
    retry_max_delay: float = 30.0
    event_buffer: int = 1000
    poll_budget: float | None = 250.0
    poll_budget_per_shard: float | None = None
    poll_max_interval: float = 30.0
    max_concurrent_shards: int | None = None

    def __post_init__(self) -> None:
        if self.max_concurrent_shards is not None:
            warnings.warn(
                "max_concurrent_shards is deprecated: use max_concurrent_requests (it bounds "
                "requests in flight; every shard is always read)",
                DeprecationWarning,
                stacklevel=3,
            )
            object.__setattr__(self, "max_concurrent_requests", self.max_concurrent_shards)
            object.__setattr__(self, "max_concurrent_shards", None)
        if self.max_concurrent_requests < 1:
            raise ConfigurationError("max_concurrent_requests must be at least 1")
        if self.buffer_pages < 1:
            raise ConfigurationError("buffer_pages must be at least 1")
        if self.page_limit is not None and not 1 <= self.page_limit <= 1000:
            raise ConfigurationError("page_limit must be between 1 and 1000")
        if self.catch_up_empty_pages < 1:
            raise ConfigurationError("catch_up_empty_pages must be at least 1")
        durations = (
            self.empty_page_delay,
            self.creation_time_slack,
            self.idle_poll_delay,
            self.idle_poll_max_delay,
            self.child_discovery_timeout,
            self.retry_max_delay,
        )
        if any(value < 0 for value in durations):
            raise ConfigurationError("durations must not be negative")
        if self.describe_interval <= 0 or self.describe_rate <= 0:
            raise ConfigurationError("describe_interval and describe_rate must be positive")
        if self.on_trimmed not in ("skip", "raise"):
            raise ConfigurationError("on_trimmed must be 'skip' or 'raise'")
        if self.event_buffer < 1:
            raise ConfigurationError("event_buffer must be at least 1")
        self.poll_schedule_budget()  # validates the poll budget

    def poll_schedule_budget(self) -> PollBudget:
        """The poll budget these options describe (ConfigurationError if it is nonsense)."""
        return PollBudget(
            calls_per_second=self.poll_budget,
            calls_per_shard=self.poll_budget_per_shard,
            min_interval=self.idle_poll_delay,
            idle_max_interval=self.idle_poll_max_delay,
            max_interval=max(self.poll_max_interval, self.idle_poll_max_delay),
        )
