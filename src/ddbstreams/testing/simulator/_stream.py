"""The stream's data model: shards (hash ranges, records, sequence number ranges), the shard
graph and how it changes (roll-overs, splits, trims, disabling), sequence numbers, and
retention. Records are stored serialized, as GetRecords sends them."""

from __future__ import annotations

import bisect
import hashlib
import math
import random
from typing import Any, Final, Protocol

from ddbstreams._clock import Clock
from ddbstreams.model._types import Shard
from ddbstreams.testing.simulator._records import SimulatedChange

__all__ = ["HASH_SPACE", "ShardState", "StreamModel", "TopologySettings"]

#: Partition keys hash into [0, HASH_SPACE); each open shard owns a range of it.
HASH_SPACE: Final = 1 << 128
_MAX_GAP: Final = 50


class ShardState:
    """One shard, mutable, guarded by the simulator's lock (through :class:`StreamModel`).

    Records trimmed by retention leave the lists; positions (in iterators) stay absolute:
    ``base`` records were removed from the head, so position ``p`` is ``records[p - base]``.
    """

    __slots__ = (
        "base",
        "closed_at",
        "ending",
        "hash_high",
        "hash_low",
        "index",
        "last_trimmed",
        "order_key",
        "parent_shard_id",
        "records",
        "seqs",
        "shard_id",
        "stale_until",
        "starting",
        "times",
        "trimmed",
        "visible_at",
    )

    def __init__(
        self,
        shard_id: str,
        parent_shard_id: str | None,
        hash_low: int,
        hash_high: int,
        starting: int,
        index: int,
        order_key: tuple[bytes, int],
        visible_at: float,
    ) -> None:
        self.shard_id = shard_id
        self.parent_shard_id = parent_shard_id
        self.hash_low = hash_low  # inclusive
        self.hash_high = hash_high  # exclusive
        self.starting = starting
        self.ending: int | None = None
        self.records: list[bytes] = []  # serialized wire records, in sequence order
        self.seqs: list[int] = []
        self.times: list[float] = []  # creation time (clock.time()) of each record
        self.base = 0  # records trimmed from the head
        self.last_trimmed: int | None = None  # sequence number of the last trimmed record
        self.trimmed = False  # the whole shard is gone (retention or trim())
        self.index = index  # creation order
        self.order_key = order_key  # position in DescribeStream listings
        self.visible_at = visible_at  # listed from this clock.time() on
        self.closed_at: float | None = None
        self.stale_until = -math.inf  # listed as open until this clock.time()

    @property
    def is_open(self) -> bool:
        return self.ending is None

    @property
    def end(self) -> int:
        """The position after the last record."""
        return self.base + len(self.records)

    def wire(self, now: float) -> dict[str, Any]:
        seq_range: dict[str, str] = {"StartingSequenceNumber": str(self.starting)}
        if self.ending is not None and now >= self.stale_until:
            seq_range["EndingSequenceNumber"] = str(self.ending)
        out: dict[str, Any] = {"ShardId": self.shard_id, "SequenceNumberRange": seq_range}
        if self.parent_shard_id is not None:
            out["ParentShardId"] = self.parent_shard_id
        return out

    def model(self) -> Shard:
        return Shard(
            shard_id=self.shard_id,
            parent_shard_id=self.parent_shard_id,
            starting_sequence_number=str(self.starting),
            ending_sequence_number=None if self.ending is None else str(self.ending),
        )

    def drop_head(self, count: int) -> None:
        if count <= 0:
            return
        self.last_trimmed = self.seqs[count - 1]
        del self.records[:count]
        del self.seqs[:count]
        del self.times[:count]
        self.base += count


class TopologySettings(Protocol):
    """The simulator's options the stream model reads (those shaping new shards are read
    when a shard opens or closes, so they may change at any time)."""

    @property
    def clock(self) -> Clock: ...

    @property
    def seed(self) -> int: ...

    @property
    def retention(self) -> float | None: ...

    @property
    def shuffle_listing(self) -> bool: ...

    @property
    def children_visibility_delay(self) -> float: ...

    @property
    def stale_parent_duration(self) -> float: ...


class StreamModel:
    """The simulated stream's shards (every one ever created) and where writes go.

    Keeps indexes so that streams with thousands of shards stay fast: open shards sorted by
    the start of their hash range, children by parent, and the sorted listing. Sequence
    numbers come from :meth:`allocate`, increasing with random gaps. Retention
    (:meth:`maintain`) trims records and closed shards as the clock moves.

    Not thread-safe: the simulator calls it under its lock.
    """

    __slots__ = (
        "_children",
        "_clock",
        "_hidden_until",
        "_listing",
        "_listing_key",
        "_next_seq",
        "_open",
        "_open_lows",
        "_retention_due",
        "_rng",
        "_settings",
        "deleted",
        "enabled",
        "last_seq",
        "retention",
        "shards",
    )

    def __init__(
        self, settings: TopologySettings, *, rng: random.Random, first_sequence_number: int
    ) -> None:
        self._settings = settings
        self._clock = settings.clock
        self._rng = rng  # shared with the simulator: one seeded sequence of draws
        self._listing_key = hashlib.sha256(repr(settings.seed).encode()).digest()
        #: Seconds a record is kept (None: forever).
        self.retention = settings.retention
        #: Whether the stream records changes (False once disabled).
        self.enabled = True
        #: True once the stream is gone altogether.
        self.deleted = False
        #: Every shard ever created, in creation order (trimmed ones included).
        self.shards: dict[str, ShardState] = {}
        #: The last sequence number handed out.
        self.last_seq = first_sequence_number - 1
        self._next_seq = first_sequence_number
        self._open_lows: list[int] = []
        self._open: list[ShardState] = []
        self._children: dict[str, list[ShardState]] = {}
        self._listing: list[ShardState] | None = None
        self._hidden_until = -math.inf  # some shard is not listed yet before this time
        self._retention_due = math.inf  # the earliest time something needs trimming

    # ------------------------------------------------------------------ reading

    def models(self, *, include_trimmed: bool) -> list[Shard]:
        """The shards as they really are, in creation order."""
        return [s.model() for s in self.shards.values() if include_trimmed or not s.trimmed]

    def open_ids(self) -> list[str]:
        """Ids of the open shards, in creation order."""
        return [s.shard_id for s in sorted(self._open, key=lambda s: s.index)]

    def retains(self, change: SimulatedChange) -> bool:
        """Whether ``change`` is still readable (not trimmed)."""
        shard = self.shards[change.shard_id]
        if shard.trimmed:
            return False
        return shard.last_trimmed is None or int(change.sequence_number) > shard.last_trimmed

    def route(self, point: int) -> ShardState:
        """The open shard owning ``point`` of the hash space."""
        shard = self._open[bisect.bisect_right(self._open_lows, point) - 1]
        assert shard.hash_low <= point < shard.hash_high, "open shards cover the hash space"
        return shard

    def listing(self) -> list[ShardState]:
        """The shards DescribeStream lists (not trimmed), in listing order."""
        if self._listing is None:
            self._listing = sorted(
                (s for s in self.shards.values() if not s.trimmed), key=lambda s: s.order_key
            )
        return self._listing

    def children_listing(self, shard_id: str) -> list[ShardState]:
        """The children of ``shard_id`` (not trimmed), in listing order."""
        children = self._children.get(shard_id, [])
        return sorted((s for s in children if not s.trimmed), key=lambda s: s.order_key)

    def visible(self, shards: list[ShardState], now: float) -> list[ShardState]:
        """``shards`` without those not listed yet at ``now`` (children_visibility_delay)."""
        if now >= self._hidden_until:
            return shards
        return [s for s in shards if s.visible_at <= now]

    # ------------------------------------------------------------------ writing

    def allocate(self) -> int:
        """The next sequence number (they increase with random gaps)."""
        value = self._next_seq
        self.last_seq = value
        self._next_seq = value + self._rng.randint(1, _MAX_GAP)
        return value

    def append(self, shard: ShardState, raw: bytes, seq: int, now: float) -> None:
        """Store the serialized record ``raw`` with sequence number ``seq`` in ``shard``."""
        shard.records.append(raw)
        shard.seqs.append(seq)
        shard.times.append(now)
        if self.retention is not None:
            self._retention_due = min(self._retention_due, now + self.retention)

    # ------------------------------------------------------------------ topology

    def add_roots(self, partitions: int, now: float) -> None:
        """Open ``partitions`` root shards, each owning an equal slice of the hash space."""
        step = HASH_SPACE // partitions
        for i in range(partitions):
            high = HASH_SPACE if i == partitions - 1 else (i + 1) * step
            self._add(None, i * step, high, now)

    def roll_over(self, shard_id: str | None) -> list[str]:
        """Close ``shard_id`` (or every open shard), one child each; the new ids."""
        self.maintain()
        now = self._clock.time()
        new: list[str] = []
        for shard in self._targets(shard_id):
            self._close(shard, now, has_children=True)
            new.append(self._add(shard.shard_id, shard.hash_low, shard.hash_high, now))
        return new

    def split(self, shard_id: str | None) -> list[str]:
        """Close ``shard_id`` (or every open shard), two children each; the new ids."""
        self.maintain()
        now = self._clock.time()
        targets = self._targets(shard_id)
        for shard in targets:
            if shard.hash_high - shard.hash_low < 2:
                raise ValueError(f"shard {shard.shard_id} is too small to split")
        new: list[str] = []
        for shard in targets:
            self._close(shard, now, has_children=True)
            middle = (shard.hash_low + shard.hash_high) // 2
            new.append(self._add(shard.shard_id, shard.hash_low, middle, now))
            new.append(self._add(shard.shard_id, middle, shard.hash_high, now))
        return new

    def trim(self, shard_id: str) -> None:
        """Remove a closed shard and its records now."""
        shard = self.shards.get(shard_id)
        if shard is None or shard.trimmed:
            raise ValueError(f"no listed shard {shard_id!r}")
        if shard.is_open:
            raise ValueError(f"shard {shard_id} is open; roll it over or split it first")
        self._remove(shard)

    def disable(self) -> None:
        """Close every open shard (no children); the stream records nothing more."""
        if not self.enabled:
            return
        now = self._clock.time()
        for shard in list(self._open):
            self._close(shard, now, has_children=False)
        self.enabled = False

    def maintain(self) -> None:
        """Apply retention if anything is due (cheap otherwise)."""
        retention = self.retention
        if retention is None:
            return
        now = self._clock.time()
        if not self._retention_due < now:
            return
        due = math.inf
        for shard in self.shards.values():
            if shard.trimmed:
                continue
            if shard.closed_at is not None and shard.closed_at + retention < now:
                self._remove(shard)
                continue
            times = shard.times
            if times and times[0] + retention < now:
                shard.drop_head(bisect.bisect_left(times, True, key=lambda t: t + retention >= now))
            if times:
                due = min(due, times[0] + retention)
            if shard.closed_at is not None:
                due = min(due, shard.closed_at + retention)
        self._retention_due = due

    # ------------------------------------------------------------------ internals

    def _add(self, parent: str | None, low: int, high: int, now: float) -> str:
        millis = int(now * 1000)
        while True:
            shard_id = f"shardId-{millis:020d}-{self._rng.getrandbits(32):08x}"
            if shard_id not in self.shards:
                break
        index = len(self.shards)
        if self._settings.shuffle_listing:
            # A keyed hash of the id: a fixed permutation for one seed, unaffected by shards
            # created between two pages, so ExclusiveStartShardId pagination stays consistent.
            digest = hashlib.blake2b(
                shard_id.encode(), digest_size=8, key=self._listing_key
            ).digest()
        else:
            digest = b""
        visible_at = now if parent is None else now + self._settings.children_visibility_delay
        # The shard starts at the next sequence number to be handed out, so a shard's first
        # record (if nothing else is written in between) carries its StartingSequenceNumber.
        shard = ShardState(
            shard_id, parent, low, high, self._next_seq, index, (digest, index), visible_at
        )
        self.shards[shard_id] = shard
        if parent is not None:
            self._children.setdefault(parent, []).append(shard)
        self._hidden_until = max(self._hidden_until, visible_at)
        at = bisect.bisect_left(self._open_lows, low)
        self._open_lows.insert(at, low)
        self._open.insert(at, shard)
        self._listing = None
        return shard_id

    def _close(self, shard: ShardState, now: float, *, has_children: bool) -> None:
        shard.ending = shard.seqs[-1] if shard.seqs else self.allocate()
        shard.closed_at = now
        if has_children:
            shard.stale_until = now + self._settings.stale_parent_duration
        if self.retention is not None:
            self._retention_due = min(self._retention_due, now + self.retention)
        at = self._open.index(shard, bisect.bisect_left(self._open_lows, shard.hash_low))
        del self._open_lows[at]
        del self._open[at]

    def _targets(self, shard_id: str | None) -> list[ShardState]:
        if not self.enabled:
            raise ValueError("the stream is disabled")
        if shard_id is None:
            return list(self._open)
        shard = self.shards.get(shard_id)
        if shard is None or not shard.is_open:
            raise ValueError(f"no open shard {shard_id!r}")
        return [shard]

    def _remove(self, shard: ShardState) -> None:
        shard.drop_head(len(shard.records))
        shard.trimmed = True
        self._listing = None
