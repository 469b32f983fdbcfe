"""The one owner of a reader's positions: per shard, what has been handed to the caller.

Words used with one meaning each in the reading layer:

- a shard has **ended** when its fetcher has read it to its end (GetRecords returned no
  NextShardIterator); lineage may then start its children;
- a shard is **consumed** when all of it, its end included, has been handed to the caller;
  a :class:`~ddbstreams.Checkpoint` lists it in ``finished`` (the public name);
- a consumer **processes** what was handed (its handler returned): the consumer's
  business, not the reader's;
- a record is **dropped** when an ``at_time`` start's filter finds it older than the
  moment: it is never handed, but the fetcher moves the shard's start past it (keeping
  the filter), so a checkpoint of a shard that has handed nothing yet resumes there.

Per shard, :class:`ReadState` keeps a :class:`ShardProgress`. Its states, the transitions
and who makes them::

    PLANNED --started (coordinator)--> FETCHING --ended (coordinator)--> ENDED
    FETCHING or ENDED --consumed (delivery: the end was handed out)--> CONSUMED
    any --released (reader, for whoever assigns shards)--> gone, its position returned
    CONSUMED --forget (coordinator: descendants are named)--> gone

``handed`` (delivery) records the last sequence number handed out; it never moves back.
The whole-stream :class:`Checkpoint` is a view built from the entries
(:meth:`ReadState.checkpoint`), and :meth:`ReadState.position` one shard's entry of it.
Pure bookkeeping: no I/O, no asyncio.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from ddbstreams.model._position import Checkpoint, ShardStart

__all__ = [
    "SHARD_END",
    "ReadState",
    "ShardEnd",
    "ShardPosition",
    "ShardProgress",
    "ShardStatus",
]


@dataclass(frozen=True, slots=True)
class ShardEnd:
    """The position of a shard consumed to its end (the KCL's ``SHARD_END`` checkpoint)."""

    def __repr__(self) -> str:
        return "SHARD_END"


SHARD_END: Final = ShardEnd()

ShardPosition = ShardStart | ShardEnd
"""How far a shard has been handed out: AFTER a sequence number, where its reading starts
(TRIM_HORIZON, LATEST, AT/AFTER a sequence number) when nothing was handed yet, or
:data:`SHARD_END`."""


class ShardStatus(enum.Enum):
    """Where a shard is in a read (see the module docstring for the transitions)."""

    PLANNED = "planned"
    FETCHING = "fetching"
    ENDED = "ended"
    CONSUMED = "consumed"


class ShardProgress:
    """One shard's entry: its status, where its reading starts, the last record handed.

    ``token`` identifies the current fetch of the shard: pages carry the token of the
    fetch that produced them, so pages of a released fetch still in the buffer are known
    as stale and dropped.
    """

    __slots__ = ("forget_when_consumed", "handed", "start", "status", "token")

    def __init__(self, start: ShardStart, handed: str | None = None) -> None:
        self.status = ShardStatus.PLANNED
        self.start = start
        self.handed = handed
        self.token: object | None = None
        self.forget_when_consumed = False

    @property
    def position(self) -> ShardPosition:
        if self.status is ShardStatus.CONSUMED:
            return SHARD_END
        if self.handed is not None:
            return ShardStart("AFTER_SEQUENCE_NUMBER", self.handed)
        return self.start


class ReadState:
    """Per-shard positions of one reader, and the checkpoint built from them.

    Each method names its caller; no other code changes the entries. Unknown shard ids
    raise KeyError (a caller's bug), except where a method says otherwise.
    """

    __slots__ = ("_shards", "stream_arn")

    def __init__(
        self,
        stream_arn: str,
        plan: Mapping[str, ShardStart],
        initial: Checkpoint | None = None,
    ) -> None:
        """Entries for the ``plan`` (PLANNED), and for what ``initial`` names: its handed
        positions, and its finished shards (CONSUMED)."""
        self.stream_arn = stream_arn
        self._shards: dict[str, ShardProgress] = {}
        for shard_id, start in plan.items():
            self._shards[shard_id] = ShardProgress(start)
        if initial is not None:
            for shard_id, sequence_number in initial.positions.items():
                entry = self._shards.get(shard_id)
                if entry is None:
                    entry = self._shards[shard_id] = ShardProgress(
                        ShardStart("AFTER_SEQUENCE_NUMBER", sequence_number)
                    )
                entry.handed = sequence_number
            for shard_id in initial.finished:
                entry = self._shards.setdefault(shard_id, ShardProgress(ShardStart("LATEST")))
                entry.status = ShardStatus.CONSUMED

    # -- the coordinator ----------------------------------------------------------------

    def planned(self, shard_id: str, start: ShardStart) -> None:
        """Coordinator: a shard newly added to the read, to start at ``start``."""
        self._shards.setdefault(shard_id, ShardProgress(start))

    def started(self, shard_id: str, start: ShardStart, token: object) -> None:
        """Coordinator: a fetcher (identified by ``token``) now reads the shard from
        ``start``; a shard not planned before (assigned) gets its entry here."""
        entry = self._shards.get(shard_id)
        if entry is None:
            entry = self._shards[shard_id] = ShardProgress(start)
        entry.start = start
        entry.status = ShardStatus.FETCHING
        entry.token = token

    def restarted(self, shard_id: str, start: ShardStart) -> None:
        """Fetcher (trimming policy, records dropped by a time filter): the shard is read
        on from ``start`` now. Matters only while nothing of it was handed out."""
        entry = self._shards.get(shard_id)
        if entry is not None:
            entry.start = start

    def ended(self, shard_id: str) -> None:
        """Coordinator: the shard's fetcher read it to its end (ignored once consumed)."""
        entry = self._shards.get(shard_id)
        if entry is not None and entry.status is ShardStatus.FETCHING:
            entry.status = ShardStatus.ENDED

    def forget(self, shard_ids: Iterable[str]) -> None:
        """Coordinator: these shards' descendants are named, so a checkpoint need not name
        them once consumed (lineage infers them). Unknown ids are ignored."""
        for shard_id in shard_ids:
            entry = self._shards.get(shard_id)
            if entry is None:
                continue
            if entry.status is ShardStatus.CONSUMED:
                del self._shards[shard_id]
            else:
                entry.forget_when_consumed = True

    def drop(self, shard_ids: Iterable[str]) -> None:
        """Coordinator: shards the service no longer lists (trimmed) leave the state,
        unless pages of them may still wait to be handed out."""
        for shard_id in shard_ids:
            entry = self._shards.get(shard_id)
            if entry is not None and entry.status not in (ShardStatus.FETCHING, ShardStatus.ENDED):
                del self._shards[shard_id]

    # -- delivery ---------------------------------------------------------------------------

    def is_current(self, shard_id: str, token: object) -> bool:
        """Delivery: whether a page fetched under ``token`` may still be handed out (False
        once the shard was released, even if it was assigned again since)."""
        entry = self._shards.get(shard_id)
        return entry is not None and entry.token is token

    def handed(self, shard_id: str, sequence_number: str) -> None:
        """Delivery: the record ``sequence_number`` of the shard was handed out."""
        self._shards[shard_id].handed = sequence_number

    def consumed(self, shard_id: str) -> None:
        """Delivery: the shard's end was handed out; nothing of it is left."""
        entry = self._shards[shard_id]
        if entry.forget_when_consumed:
            del self._shards[shard_id]
        else:
            entry.status = ShardStatus.CONSUMED

    # -- assignment -------------------------------------------------------------------------

    def release(self, shard_id: str) -> ShardPosition | None:
        """Reader: the shard leaves this reader; its position (None if unknown)."""
        entry = self._shards.pop(shard_id, None)
        return None if entry is None else entry.position

    # -- views ----------------------------------------------------------------------------

    def status(self, shard_id: str) -> ShardStatus | None:
        entry = self._shards.get(shard_id)
        return None if entry is None else entry.status

    def position(self, shard_id: str) -> ShardPosition | None:
        """The shard's position, or None for a shard this state does not know."""
        entry = self._shards.get(shard_id)
        return None if entry is None else entry.position

    def shard_ids(self) -> frozenset[str]:
        return frozenset(self._shards)

    def checkpoint(self) -> Checkpoint:
        """The whole-stream view: consumed shards as ``finished``, handed positions as
        ``positions``, shards that handed nothing yet as ``pending`` at their start (with
        its time filter, if the shard has not reached an ``at_time`` moment)."""
        positions: dict[str, str] = {}
        finished: set[str] = set()
        pending: dict[str, ShardStart] = {}
        for shard_id, entry in self._shards.items():
            if entry.status is ShardStatus.CONSUMED:
                finished.add(shard_id)
            elif entry.handed is not None:
                positions[shard_id] = entry.handed
            else:
                pending[shard_id] = entry.start
        return Checkpoint(self.stream_arn, positions, frozenset(finished), pending)
