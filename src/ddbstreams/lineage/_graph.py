"""Shard lineage: which shards to read for a start position, in which order, which are ready.

Pure decision logic (layer 3): no I/O, no asyncio, no clock. The stream reader feeds it
DescribeStream listings and shard completions and performs the reads it asks for.

Three pieces:

- :class:`ShardGraph` — an immutable view of the listed shards and their parent links.
- :func:`plan_reads` — turns a stream-wide start position into a :class:`ReadPlan`: the
  shards to read and the :class:`~ddbstreams.ShardStart` of each.
- :class:`LineageTracker` — the mutable state of one read (waiting → running → ended),
  answering which shards may start now: a child never starts before its planned parent has
  been read to its end, because a child's records continue its parent's items.

Rules the whole module follows (see DESIGN.md, "Facts of the service"):

- A parent id that is not listed (trimmed) does not exist for lineage: the child is a root.
- A shard listed as open that already has listed children counts as closed.
- Sequence numbers are compared as integers and are ordered within one shard only.
- "Stable order" everywhere means: by the creation time encoded in the shard id
  (``shardId-<20-digit epoch ms>-<hex>``, a hint only), then by shard id; ids without that
  form sort after all ids that have it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Literal

from ddbstreams._errors import InvalidPositionError
from ddbstreams.model._position import (
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    AtTime,
    Checkpoint,
    Latest,
    ShardStart,
    StartPosition,
    TrimHorizon,
    creation_time_threshold,
    validate_sequence_number,
)
from ddbstreams.model._types import Shard, shard_created_ms

__all__ = [
    "LineageTracker",
    "ReadPlan",
    "ShardGraph",
    "ShardState",
    "plan_reads",
    "shard_order_key",
]

ShardState = Literal["waiting", "running", "ended", "forgotten", "excluded", "unplanned"]


def shard_order_key(shard_id: str) -> tuple[int, int, str]:
    """Sort key giving the module's stable order: creation-time hint, then id.

    Ids that do not carry the ``shardId-<20 digits>-<hex>`` creation time sort after every id
    that does, among themselves by id.
    """
    created_ms = shard_created_ms(shard_id)
    if created_ms is None:
        return (1, 0, shard_id)
    return (0, created_ms, shard_id)


def _merge_entry(old: Shard | None, new: Shard) -> Shard:
    # Two listings of one shard: the later wins, but a field the later one lacks keeps the
    # earlier value. The parent and the start never change and a closed shard never
    # reopens, so a stale "open" listing after a "closed" one must not reopen it.
    if old is None:
        return new
    parent = new.parent_shard_id if new.parent_shard_id is not None else old.parent_shard_id
    starting = (
        new.starting_sequence_number
        if new.starting_sequence_number is not None
        else old.starting_sequence_number
    )
    ending = (
        new.ending_sequence_number
        if new.ending_sequence_number is not None
        else old.ending_sequence_number
    )
    if (parent, starting, ending) == (
        new.parent_shard_id,
        new.starting_sequence_number,
        new.ending_sequence_number,
    ):
        return new
    return Shard(new.shard_id, parent, starting, ending)


class ShardGraph:
    """An immutable forest of listed shards, linked child → parent.

    Built from DescribeStream listings (possibly several pages, possibly overlapping). Only
    listed shards are nodes: a ``parent_shard_id`` naming an unlisted (trimmed) shard makes
    the child a root. Parent links that would form a cycle (malformed input; the service
    never produces one) are cut at the member that sorts first, so every query terminates
    and every shard is reachable from a root.

    Every method taking a ``shard_id`` raises ``KeyError`` for an id that is not listed,
    except ``in``. Sequences of ids are returned in stable order (creation hint, then id)
    unless said otherwise.
    """

    __slots__ = ("_children", "_keys", "_parents", "_shards", "_topo")

    _shards: dict[str, Shard]
    _parents: dict[str, str | None]
    _children: dict[str, tuple[str, ...]]
    _keys: dict[str, tuple[int, int, str]]
    _topo: tuple[str, ...] | None

    def __init__(self, shards: Iterable[Shard] = ()) -> None:
        """Build a graph from ``shards``; same as :meth:`from_shards`."""
        entries: dict[str, Shard] = {}
        for shard in shards:
            entries[shard.shard_id] = _merge_entry(entries.get(shard.shard_id), shard)
        self._build(entries)

    @classmethod
    def from_shards(cls, shards: Iterable[Shard]) -> ShardGraph:
        """Build a graph from listed shards.

        A shard id seen more than once is one node: the later entry wins (for example a
        shard listed open on one page and closed on a later refresh ends up closed), except
        that a field the later entry lacks keeps the earlier value — so a stale listing
        never reopens a closed shard or forgets its parent.
        """
        return cls(shards)

    def merged(self, shards: Iterable[Shard]) -> ShardGraph:
        """A new graph with ``shards`` added, and already listed ones refreshed.

        Entries are combined as in :meth:`from_shards`, the given ``shards`` coming later
        than those already in this graph.
        """
        entries = dict(self._shards)
        changed = False
        for shard in shards:
            old = entries.get(shard.shard_id)
            new = _merge_entry(old, shard)
            if new != old:
                entries[shard.shard_id] = new
                changed = True
        if not changed:
            return self
        graph = ShardGraph.__new__(ShardGraph)
        graph._build(entries)
        return graph

    def without(self, shard_ids: Iterable[str]) -> ShardGraph:
        """A new graph without the given shards; their listed children become roots.

        Ids that are not listed are ignored.
        """
        drop = {shard_id for shard_id in shard_ids if shard_id in self._shards}
        if not drop:
            return self
        graph = ShardGraph.__new__(ShardGraph)
        graph._build({k: v for k, v in self._shards.items() if k not in drop})
        return graph

    def _build(self, entries: dict[str, Shard]) -> None:
        keys = {shard_id: shard_order_key(shard_id) for shard_id in entries}
        ordered = sorted(entries, key=keys.__getitem__)
        parents: dict[str, str | None] = {}
        for shard_id in ordered:
            parent = entries[shard_id].parent_shard_id
            parents[shard_id] = parent if parent in entries and parent != shard_id else None
        _break_cycles(ordered, parents, keys)
        children: dict[str, list[str]] = {}
        for shard_id in ordered:
            parent = parents[shard_id]
            if parent is not None:
                # ``ordered`` is sorted, so each child list comes out in stable order.
                children.setdefault(parent, []).append(shard_id)
        self._shards = {shard_id: entries[shard_id] for shard_id in ordered}
        self._keys = keys
        self._parents = parents
        self._children = {parent: tuple(kids) for parent, kids in children.items()}
        self._topo = None

    # -- basic queries ---------------------------------------------------------------

    @property
    def shards(self) -> Mapping[str, Shard]:
        """Every listed shard by id (read-only), in stable order."""
        return MappingProxyType(self._shards)

    def __contains__(self, shard_id: object) -> bool:
        return shard_id in self._shards

    def __len__(self) -> int:
        return len(self._shards)

    def __iter__(self) -> Iterator[str]:
        """Listed shard ids in stable order."""
        return iter(self._shards)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ShardGraph):
            return NotImplemented
        return self._shards == other._shards

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"ShardGraph({len(self._shards)} shards, {len(self.roots())} roots)"

    def _require(self, shard_id: str) -> Shard:
        try:
            return self._shards[shard_id]
        except KeyError:
            raise KeyError(f"shard {shard_id!r} is not listed") from None

    def parent(self, shard_id: str) -> str | None:
        """The listed parent's id; ``None`` without a parent or when it is not listed."""
        self._require(shard_id)
        return self._parents[shard_id]

    def children(self, shard_id: str) -> tuple[str, ...]:
        """The listed children, in stable order (empty for a leaf)."""
        self._require(shard_id)
        return self._children.get(shard_id, ())

    def is_root(self, shard_id: str) -> bool:
        """Whether the shard has no listed parent (none at all, or trimmed)."""
        return self.parent(shard_id) is None

    def is_closed(self, shard_id: str) -> bool:
        """Whether the shard is closed: it has an ending sequence number or listed children.

        A shard listed as open that already has children is effectively closed.
        """
        shard = self._require(shard_id)
        return shard.ending_sequence_number is not None or shard_id in self._children

    def roots(self) -> tuple[str, ...]:
        """Shards without a listed parent."""
        return tuple(shard_id for shard_id, parent in self._parents.items() if parent is None)

    def open_leaves(self) -> tuple[str, ...]:
        """Shards that are not closed (open, and no listed children)."""
        return tuple(
            shard_id
            for shard_id, shard in self._shards.items()
            if shard.ending_sequence_number is None and shard_id not in self._children
        )

    def ancestors(self, shard_id: str) -> tuple[str, ...]:
        """Listed ancestors, nearest (the parent) first; stops at the first unlisted one."""
        out: list[str] = []
        parent = self.parent(shard_id)
        while parent is not None:
            out.append(parent)
            parent = self._parents[parent]
        return tuple(out)

    def descendants(self, shard_id: str) -> tuple[str, ...]:
        """Listed descendants, breadth first: every parent before its children."""
        self._require(shard_id)
        out: list[str] = []
        frontier = list(self._children.get(shard_id, ()))
        while frontier:
            out.extend(frontier)
            frontier = [kid for parent in frontier for kid in self._children.get(parent, ())]
        return tuple(out)

    def shard_holding(self, sequence_number: str) -> Shard | None:
        """The listed shard whose sequence number range holds ``sequence_number``.

        A range is ``[starting, ending]`` compared as integers; an open shard's range has no
        end and a missing starting number has no start. ``None`` when no listed shard holds
        it. Several holders should not happen within one lineage; when they do (an open
        parent that already has children, or overlapping ranges of unrelated shards), the
        holder whose starting sequence number is the largest wins, and among equal starts
        the first in stable order. Raises InvalidPositionError for a non-numeric
        ``sequence_number``.
        """
        holders = self.shards_holding(sequence_number)
        return holders[0] if holders else None

    def shards_holding(self, sequence_number: str) -> tuple[Shard, ...]:
        """Every listed shard whose range holds ``sequence_number``, most likely first.

        Ranges of shards open at the same time overlap (an open shard's range has no end),
        so with several partitions more than one shard can hold a number; only reading
        tells which one has the record. Order: largest starting sequence number first, then
        stable order. Raises InvalidPositionError for a non-numeric ``sequence_number``.
        """
        value = int(validate_sequence_number(sequence_number))
        found: list[tuple[int, Shard]] = []
        for shard in self._shards.values():
            start = -1
            if shard.starting_sequence_number is not None:
                start = int(shard.starting_sequence_number)
                if value < start:
                    continue
            end = shard.ending_sequence_number
            if end is not None and value > int(end):
                continue
            found.append((start, shard))
        # Stable sort: among equal starts the stable order of self._shards is kept.
        found.sort(key=lambda entry: -entry[0])
        return tuple(shard for _, shard in found)

    def topological_order(self) -> tuple[str, ...]:
        """Every listed shard once, each parent before its children.

        Among the shards whose parent has already been placed, the first in stable order
        goes next, so roots come out in stable order and the result approximates creation
        time across lineages.
        """
        if self._topo is None:
            keys = self._keys
            heap = [keys[shard_id] for shard_id, parent in self._parents.items() if parent is None]
            heapq.heapify(heap)
            out: list[str] = []
            while heap:
                shard_id = heapq.heappop(heap)[2]
                out.append(shard_id)
                for kid in self._children.get(shard_id, ()):
                    heapq.heappush(heap, keys[kid])
            self._topo = tuple(out)
        return self._topo


def _break_cycles(
    ordered: list[str], parents: dict[str, str | None], keys: dict[str, tuple[int, int, str]]
) -> None:
    # Colour walk up the parent links; a walk that meets its own path found a cycle.
    done: set[str] = set()
    for start in ordered:
        path: list[str] = []
        on_path: set[str] = set()
        node: str | None = start
        while node is not None and node not in done and node not in on_path:
            path.append(node)
            on_path.add(node)
            node = parents[node]
        if node is not None and node in on_path:
            cycle = path[path.index(node) :]
            parents[min(cycle, key=keys.__getitem__)] = None
        done.update(path)


@dataclass(frozen=True, slots=True)
class ReadPlan:
    """The shards one read covers and where each begins.

    ``starts`` maps each shard to read to its :class:`ShardStart`, in topological order
    (every parent before its children). ``missing_checkpoint_shards`` holds shards a
    :class:`Checkpoint` names that are no longer listed (trimmed, or of another stream): the
    reader applies its trimming policy to them. ``excluded`` holds listed shards deliberately
    left out whose descendants discovered later must stay unread too: the other lineages of
    an at/after-sequence start. Listed shards in none of these are simply not read (already
    consumed, before a LATEST start, or ended before an ``at_time`` moment) and do not stop
    new children from being read. ``new_shards`` is where a shard listed later begins (in
    follow mode): its start, keeping the time filter of an ``at_time`` read so that a
    moment still in the future holds for shards created before it too.
    """

    starts: Mapping[str, ShardStart]
    missing_checkpoint_shards: frozenset[str] = frozenset()
    excluded: frozenset[str] = frozenset()
    new_shards: ShardStart = SHARD_TRIM_HORIZON

    @property
    def shard_ids(self) -> tuple[str, ...]:
        """The shards to read, parents before children."""
        return tuple(self.starts)


def plan_reads(
    graph: ShardGraph,
    start: StartPosition,
    *,
    holder: str | None = None,
    time_resolution: int = 1,
) -> ReadPlan:
    """Decide which listed shards a read starting at ``start`` covers, and where each begins.

    - ``TRIM_HORIZON``: every listed shard, each from its own TRIM_HORIZON.
    - ``LATEST``: only the open leaves, each at LATEST; closed shards and their ancestors
      are not read.
    - ``at_sequence(seq)`` / ``after_sequence(seq)``: the shard whose range holds ``seq``
      (see :meth:`ShardGraph.shard_holding`), AT/AFTER that sequence number, then all its
      descendants from TRIM_HORIZON. Nothing else: sequence numbers are ordered within a
      shard only, so other lineages are excluded (``ReadPlan.excluded``). Raises
      InvalidPositionError when no listed shard's range holds ``seq``.
    - ``at_time(moment)``: every listed shard from TRIM_HORIZON with the time filter
      ``not_before=moment``, except the shards that ended before the moment. A shard's end
      is only hinted, by its children's creation time (in their ids): a shard is skipped
      when it has listed children and every one of them was created before the moment
      rounded down to ``time_resolution`` seconds (see
      :func:`~ddbstreams.model._position.creation_time_threshold`), so each of its records
      is older than anything the filter keeps. A child whose id carries no time keeps its
      parent read (never lose data).
    - a :class:`Checkpoint` (that it belongs to this stream is the caller's check): shards
      in ``finished`` are not read; shards in ``positions`` resume AFTER their sequence
      number; shards in ``pending`` begin at their recorded ShardStart (if a shard is named
      more than once, ``finished`` beats ``positions`` beats ``pending``). A listed shard
      the checkpoint does not name is not read when one of its descendants is named (the
      read had already moved past it); otherwise it is read from TRIM_HORIZON — whether a
      named ancestor makes it born after the checkpoint, or it is unrelated to every named
      shard (never lose data). Ancestors are followed through ``parent_shard_id``, so a
      named shard that is no longer listed still counts as the ancestor of its listed
      children. Named shards that are not listed go to ``missing_checkpoint_shards``. While
      a pending shard still has a time filter (an ``at_time`` read that had not reached its
      moment), the shards read from TRIM_HORIZON, and ``new_shards``, get that filter too.

    ``holder`` names the shard known (by reading) to hold an at/after sequence number,
    overriding the range-based choice when several shards' ranges hold it.

    Raises TypeError for anything that is not a start position.
    """
    if isinstance(start, TrimHorizon):
        return ReadPlan(_frozen({sid: SHARD_TRIM_HORIZON for sid in graph.topological_order()}))
    if isinstance(start, Latest):
        leaves = set(graph.open_leaves())
        return ReadPlan(
            _frozen({sid: SHARD_LATEST for sid in graph.topological_order() if sid in leaves})
        )
    if isinstance(start, AtSequence | AfterSequence):
        return _plan_sequence(graph, start, holder)
    if isinstance(start, AtTime):
        return _plan_time(graph, start.moment, time_resolution)
    if isinstance(start, Checkpoint):
        return _plan_checkpoint(graph, start)
    raise TypeError(f"not a start position: {start!r}")


def _frozen(starts: dict[str, ShardStart]) -> Mapping[str, ShardStart]:
    return MappingProxyType(starts)


def _plan_sequence(
    graph: ShardGraph, start: AtSequence | AfterSequence, holder_id: str | None
) -> ReadPlan:
    seq = start.sequence_number
    holder = graph.shards.get(holder_id) if holder_id is not None else graph.shard_holding(seq)
    if holder is None or not holder.holds(seq):
        raise InvalidPositionError(
            f"no listed shard's sequence number range holds {seq}: it may have been trimmed "
            "(records are kept for 24 hours) or belong to another stream"
        )
    kind: Literal["AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"] = (
        "AT_SEQUENCE_NUMBER" if isinstance(start, AtSequence) else "AFTER_SEQUENCE_NUMBER"
    )
    starts: dict[str, ShardStart] = {holder.shard_id: ShardStart(kind, seq)}
    for shard_id in graph.descendants(holder.shard_id):
        starts[shard_id] = SHARD_TRIM_HORIZON
    excluded = frozenset(sid for sid in graph.shards if sid not in starts)
    return ReadPlan(_frozen(starts), excluded=excluded)


def _plan_time(graph: ShardGraph, moment: datetime, resolution: int) -> ReadPlan:
    threshold_ms = int(creation_time_threshold(moment, resolution) * 1000)
    start = ShardStart("TRIM_HORIZON", not_before=moment)
    starts = {
        shard_id: start
        for shard_id in graph.topological_order()
        if not _ended_before(graph, shard_id, threshold_ms)
    }
    return ReadPlan(_frozen(starts), new_shards=start)


def _ended_before(graph: ShardGraph, shard_id: str, threshold_ms: int) -> bool:
    """Whether every listed child of the shard was created before ``threshold_ms``: the
    shard closed when they were made, so all its records are older (a hint, as the ids)."""
    kids = graph.children(shard_id)
    if not kids:
        return False
    for kid in kids:
        created_ms = shard_created_ms(kid)
        if created_ms is None or created_ms >= threshold_ms:
            return False
    return True


def _checkpoint_filter(checkpoint: Checkpoint) -> ShardStart:
    """Where unnamed shards of a checkpoint's read begin: TRIM_HORIZON, with the time filter
    of its pending shards while any has one (the latest moment if they differ)."""
    moments = [s.not_before for s in checkpoint.pending.values() if s.not_before is not None]
    if not moments:
        return SHARD_TRIM_HORIZON
    return ShardStart("TRIM_HORIZON", not_before=max(moments))


def _plan_checkpoint(graph: ShardGraph, checkpoint: Checkpoint) -> ReadPlan:
    named = set(checkpoint.finished) | set(checkpoint.positions) | set(checkpoint.pending)
    order = graph.topological_order()
    shards = graph.shards

    # Memoised in topological order: a listed parent is decided before its child. The raw
    # parent id is checked too, so an unlisted (trimmed) but named parent still counts.
    named_ancestor: dict[str, bool] = {}
    for shard_id in order:
        raw_parent = shards[shard_id].parent_shard_id
        listed_parent = graph.parent(shard_id)
        named_ancestor[shard_id] = (raw_parent is not None and raw_parent in named) or (
            listed_parent is not None and (listed_parent in named or named_ancestor[listed_parent])
        )
    named_descendant: dict[str, bool] = {}
    for shard_id in reversed(order):
        named_descendant[shard_id] = any(
            kid in named or named_descendant[kid] for kid in graph.children(shard_id)
        )

    unnamed = _checkpoint_filter(checkpoint)
    starts: dict[str, ShardStart] = {}
    for shard_id in order:
        if shard_id in checkpoint.finished:
            continue
        if shard_id in checkpoint.positions:
            starts[shard_id] = ShardStart("AFTER_SEQUENCE_NUMBER", checkpoint.positions[shard_id])
        elif shard_id in checkpoint.pending:
            starts[shard_id] = checkpoint.pending[shard_id]
        elif named_descendant[shard_id]:
            # A descendant was being read, so this shard had been read to its end (or lay
            # before the original start); checked before ancestors because it is decisive.
            continue
        else:
            # Born after the checkpoint (named ancestor) or unrelated to it: read it all.
            starts[shard_id] = unnamed
    missing = frozenset(shard_id for shard_id in named if shard_id not in graph)
    return ReadPlan(_frozen(starts), missing_checkpoint_shards=missing, new_shards=unnamed)


class LineageTracker:
    """The mutable, pure state of one read: which planned shards wait, run, have ended
    (been read to their end; "consumed" — handed out in full — is the reader's ReadState's word,
    and a checkpoint's ``finished`` means consumed).

    State machine of a planned shard::

        waiting --start()--> running --end()--> ended --forget_ended()--> forgotten

    A waiting shard is *ready* when its listed parent is not waiting or running: ended,
    forgotten, not planned at all, or not listed (trimmed). So a planned parent blocks its
    children until it has been read to its end; a listed but unplanned parent (the closed
    shards of a LATEST start, the ancestors excluded by a sequence-number start, shards a
    checkpoint marks finished) does not block.

    Two more states are not part of the read: ``excluded`` shards (``ReadPlan.excluded``;
    their later-discovered descendants are excluded too) and ``unplanned`` listed shards.

    In follow mode :meth:`add_shards` brings in newly listed shards and
    :meth:`forget_ended` keeps memory from growing with the stream's age. Not
    thread-safe; meant to be driven by one task.
    """

    __slots__ = (
        "_ended",
        "_excluded",
        "_forgotten",
        "_graph",
        "_new_start",
        "_running",
        "_starts",
        "_waiting",
    )

    def __init__(self, graph: ShardGraph, plan: ReadPlan | Mapping[str, ShardStart]) -> None:
        """Track a read of ``plan`` over ``graph``: every planned shard starts waiting.

        ``plan`` is a :class:`ReadPlan` or a plain mapping of shard id to ShardStart (then
        nothing is excluded, and shards added later begin at TRIM_HORIZON). Raises
        ValueError when a planned shard is not in ``graph``.
        """
        if isinstance(plan, ReadPlan):
            starts: Mapping[str, ShardStart] = plan.starts
            excluded: Iterable[str] = plan.excluded
            self._new_start = plan.new_shards
        else:
            starts, excluded = plan, ()
            self._new_start = SHARD_TRIM_HORIZON
        unlisted = sorted(shard_id for shard_id in starts if shard_id not in graph)
        if unlisted:
            raise ValueError(f"planned shards are not in the graph: {', '.join(unlisted)}")
        self._graph = graph
        self._starts: dict[str, ShardStart] = dict(starts)
        self._waiting: set[str] = set(starts)
        self._running: set[str] = set()
        self._ended: set[str] = set()
        self._forgotten: set[str] = set()
        self._excluded: set[str] = set(excluded) - self._waiting

    # -- state -----------------------------------------------------------------------

    @property
    def graph(self) -> ShardGraph:
        """The current shard graph (replaced by add_shards and forget_ended)."""
        return self._graph

    @property
    def waiting(self) -> frozenset[str]:
        return frozenset(self._waiting)

    @property
    def running(self) -> frozenset[str]:
        return frozenset(self._running)

    @property
    def ended(self) -> frozenset[str]:
        """Ended shards not yet forgotten."""
        return frozenset(self._ended)

    @property
    def forgotten(self) -> frozenset[str]:
        """Ids of ended shards dropped by forget_ended that may still be listed."""
        return frozenset(self._forgotten)

    @property
    def excluded(self) -> frozenset[str]:
        """Shards deliberately not read, whose descendants are not read either."""
        return frozenset(self._excluded)

    def state_of(self, shard_id: str) -> ShardState | None:
        """The shard's state; ``"unplanned"`` for a listed shard outside the read, ``None``
        for an id this tracker does not know."""
        states: tuple[tuple[ShardState, set[str]], ...] = (
            ("waiting", self._waiting),
            ("running", self._running),
            ("ended", self._ended),
            ("forgotten", self._forgotten),
            ("excluded", self._excluded),
        )
        for state, members in states:
            if shard_id in members:
                return state
        return "unplanned" if shard_id in self._graph else None

    def start_of(self, shard_id: str) -> ShardStart:
        """Where a waiting or running shard begins; KeyError otherwise."""
        try:
            return self._starts[shard_id]
        except KeyError:
            raise KeyError(f"shard {shard_id!r} is not waiting or running") from None

    def is_done(self) -> bool:
        """Whether nothing is waiting or running (in follow mode more may be added)."""
        return not self._waiting and not self._running

    def _blocker(self, shard_id: str) -> str | None:
        parent = self._graph.parent(shard_id)
        if parent is not None and (parent in self._waiting or parent in self._running):
            return parent
        return None

    def ready(self) -> list[tuple[str, ShardStart]]:
        """Waiting shards that may start now, with their starts, in stable order.

        Ready means the listed parent has ended, is forgotten, not planned, or not listed.
        Does not change any state.
        """
        return [
            (shard_id, self._starts[shard_id])
            for shard_id in sorted(self._waiting, key=shard_order_key)
            if self._blocker(shard_id) is None
        ]

    # -- transitions -----------------------------------------------------------------

    def start(self, shard_id: str) -> None:
        """Move a ready shard from waiting to running.

        Raises ValueError when it is not waiting, or when its planned parent has not
        ended (starting it would break per-item order).
        """
        if shard_id not in self._waiting:
            raise ValueError(
                f"cannot start shard {shard_id!r}: it is {self.state_of(shard_id) or 'unknown'}"
                ", not waiting"
            )
        blocker = self._blocker(shard_id)
        if blocker is not None:
            raise ValueError(
                f"cannot start shard {shard_id!r} before its parent {blocker!r} has ended"
            )
        self._waiting.remove(shard_id)
        self._running.add(shard_id)

    def end(self, shard_id: str) -> None:
        """Move a shard from running to ended (its fetcher read it to its end).

        Raises ValueError when it is not running.
        """
        if shard_id not in self._running:
            raise ValueError(
                f"cannot end shard {shard_id!r}: it is "
                f"{self.state_of(shard_id) or 'unknown'}, not running"
            )
        self._running.remove(shard_id)
        self._ended.add(shard_id)
        del self._starts[shard_id]

    def add_shards(self, shards: Iterable[Shard], *, complete: bool = False) -> list[str]:
        """Merge a (follow-mode) listing into the graph; return the newly waiting ids.

        Shards already known (listed in the graph, forgotten, or excluded) are refreshed,
        e.g. now closed, never added twice. Each newly seen shard, parents before children:

        - if it has a listed child that was already known, it predates shards this read
          has placed and is not read (``unplanned``);
        - else if its parent (by ``parent_shard_id``, listed or not) is excluded, it is
          excluded too;
        - else it becomes waiting at TRIM_HORIZON (``ReadPlan.new_shards``, which may add
          a time filter): it was created after the read began (or
          missed by an earlier listing), so all of it is new. This holds whether its parent
          is waiting, running, ended, forgotten, unplanned (a split after a LATEST start,
          a child of a shard a checkpoint had finished) or not listed (a new partition root:
          read even after a sequence-number start, as all of it follows the start). A
          waiting or running parent blocks it as usual.

        With ``complete=True`` the listing is the whole stream (every page of one
        DescribeStream): known shards absent from it have been trimmed and are dropped from
        the graph and from the ended, forgotten and excluded sets — waiting and running
        shards are kept, their reader will meet the trimming. This is what bounds memory
        by the service's 24-hour retention in follow mode.
        """
        old = self._graph
        listing = list(shards)
        fresh = [
            shard
            for shard in listing
            if shard.shard_id not in self._forgotten
            and not (shard.shard_id in self._excluded and shard.shard_id not in old)
        ]
        graph = old.merged(fresh)
        added: list[str] = []
        # ``merged`` returns the same graph when the listing brought nothing new.
        for shard_id in graph.topological_order() if graph is not old else ():
            if shard_id in old:
                continue
            if any(kid in old for kid in graph.children(shard_id)):
                continue
            parent = graph.shards[shard_id].parent_shard_id
            if parent is not None and parent in self._excluded:
                self._excluded.add(shard_id)
                continue
            self._waiting.add(shard_id)
            self._starts[shard_id] = self._new_start
            added.append(shard_id)
        if complete:
            listed = {shard.shard_id for shard in listing}
            active = self._waiting | self._running
            graph = graph.without(
                shard_id for shard_id in graph if shard_id not in listed and shard_id not in active
            )
            self._ended &= listed
            self._forgotten &= listed
            self._excluded &= listed
        self._graph = graph
        return added

    def forget_ended(self) -> None:
        """Drop ended shards that no longer matter, keeping only their ids.

        An ended shard is forgotten once it has at least one listed child and none of its
        listed children is waiting: its Shard leaves the graph and its id moves from
        ``ended`` to the compact ``forgotten`` set, which only serves to recognise it
        when a later listing shows it again (it is then ignored, not re-read). A child
        appearing later still becomes waiting (its parent id is unknown, so nothing blocks
        it). Requiring started children keeps a checkpoint built from this tracker
        covering the shard: a listed shard with a named descendant is not re-read.
        Excluded shards leave the graph too, their ids stay in ``excluded``.

        The id sets shrink only through ``add_shards(..., complete=True)``, which drops
        ids the service no longer lists; with it memory is bounded by the service's
        retention rather than by the stream's age.
        """
        graph = self._graph
        drop: list[str] = []
        for shard_id in self._ended:
            kids = graph.children(shard_id)
            if kids and not any(kid in self._waiting for kid in kids):
                drop.append(shard_id)
        self._ended.difference_update(drop)
        self._forgotten.update(drop)
        drop.extend(shard_id for shard_id in self._excluded if shard_id in graph)
        self._graph = graph.without(drop)

    def __repr__(self) -> str:
        return (
            f"LineageTracker(waiting={len(self._waiting)}, running={len(self._running)}, "
            f"ended={len(self._ended)}, forgotten={len(self._forgotten)})"
        )
