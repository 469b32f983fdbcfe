"""GroupOptions: how a worker of a group keeps, balances and gives up its leases."""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass

from ddbstreams._errors import ConfigurationError

__all__ = ["GroupOptions", "default_worker_id"]


@dataclass(frozen=True, slots=True)
class GroupOptions:
    """Timing of a worker group. Every worker of a group should use the same values.

    - ``failover_time`` (default 10 s, the KCL's ``failoverTimeMillis``): a worker whose
      heartbeat has not moved for this long, as seen on another worker's monotonic clock,
      has lost its leases, which any worker may then take. A worker itself stops starting
      batches of its shards once its last successful heartbeat is this old. Shorter fails
      over faster and costs more heartbeats.
    - ``heartbeat_interval`` (default ``failover_time / 3``): how often a worker renews its
      heartbeat, one write per worker whatever the number of leases it holds (the KCL
      renews every lease, every ``failover_time / 3``).
    - ``membership_interval`` (default 1 s): how often a worker reads the workers table (a
      few small items) to see workers join, stop, fail or free leases; a change makes it
      read the lease table at once. It bounds how soon released leases are taken.
    - ``lease_scan_interval`` (default 10 s): the lease table is read at least this often,
      besides on every change seen in the workers table.
    - ``discovery_interval`` (default 60 s): how often the group's leader lists the stream
      for shards without a lease (children are created by the worker that finished their
      parent; this catches what that missed) and deletes finished leases no longer needed.
    - ``max_leases`` (default none): most leases a worker takes (the KCL's
      ``maxLeasesForWorker``).
    - ``create_table`` (default True): create the lease and workers tables when missing
      (on-demand billing); otherwise a missing table is an error.
    """

    failover_time: float = 10.0
    heartbeat_interval: float | None = None
    membership_interval: float = 1.0
    lease_scan_interval: float = 10.0
    discovery_interval: float = 60.0
    max_leases: int | None = None
    create_table: bool = True

    def __post_init__(self) -> None:
        if self.failover_time <= 0:
            raise ConfigurationError("failover_time must be positive")
        heartbeat = self.heartbeat_interval
        if heartbeat is not None and not 0 < heartbeat < self.failover_time:
            raise ConfigurationError("heartbeat_interval must be positive and below failover_time")
        intervals = (self.membership_interval, self.lease_scan_interval, self.discovery_interval)
        if min(intervals) <= 0:
            raise ConfigurationError(
                "membership_interval, lease_scan_interval and discovery_interval must be positive"
            )
        if self.max_leases is not None and self.max_leases < 1:
            raise ConfigurationError("max_leases must be at least 1")

    @property
    def heartbeat_every(self) -> float:
        """The heartbeat interval in effect."""
        return self.heartbeat_interval or self.failover_time / 3


def default_worker_id() -> str:
    """A worker id unique per process: host, pid and a random part (host and pid repeat
    when a container restarts, and a restarted worker must not pass for its predecessor)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
