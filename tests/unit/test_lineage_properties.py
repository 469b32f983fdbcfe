"""Property tests of shard lineage over random stream histories (hypothesis)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from ddbstreams.lineage._graph import LineageTracker, ReadPlan, ShardGraph, plan_reads
from ddbstreams.model._position import (
    LATEST,
    SHARD_TRIM_HORIZON,
    TRIM_HORIZON,
    Checkpoint,
    ShardStart,
    at_sequence,
)
from ddbstreams.model._types import Shard

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/events/stream/2024-05-01T00:00:00.000"
BASE_MS = 1_714_521_600_000
SEQ_BASE = 10**20 * 3  # 21 digits
PROPERTY_SETTINGS = settings(max_examples=150, deadline=None)


def sid(step: int, index: int) -> str:
    """A realistic, unique shard id created at ``step`` (hex tag is a bijection of index)."""
    return f"shardId-{BASE_MS + step * 14_400_000:020d}-{(index * 0x9E3779B1) & 0xFFFFFFFF:08x}"


@dataclass
class Node:
    shard_id: str
    parent: str | None
    start: int
    created: int
    end: int | None = None
    closed: int | None = None
    children: list[str] = field(default_factory=list)

    def listed(self, at: int, *, stale: bool = False) -> Shard:
        closed = self.closed is not None and self.closed <= at and not stale
        return Shard(
            self.shard_id,
            self.parent,
            str(SEQ_BASE + self.start),
            str(SEQ_BASE + self.end) if closed and self.end is not None else None,
        )


@dataclass
class History:
    """Shards created and closed over ``steps`` steps (rollovers, splits, new partitions)."""

    nodes: dict[str, Node]
    steps: int

    def existing(self, at: int) -> list[Node]:
        return [n for n in self.nodes.values() if n.created <= at]

    def snapshot(self, at: int) -> list[Shard]:
        return [n.listed(at) for n in self.existing(at)]

    def is_closed_at(self, shard_id: str, at: int) -> bool:
        closed = self.nodes[shard_id].closed
        return closed is not None and closed <= at

    def descendants(self, shard_id: str) -> set[str]:
        out: set[str] = set()
        frontier = list(self.nodes[shard_id].children)
        while frontier:
            kid = frontier.pop()
            out.add(kid)
            frontier.extend(self.nodes[kid].children)
        return out


@st.composite
def histories(draw: st.DrawFn) -> History:
    nodes: dict[str, Node] = {}
    counter = 0

    def create(parent: str | None, step: int) -> None:
        nonlocal counter
        shard_id = sid(step, len(nodes))
        nodes[shard_id] = Node(shard_id, parent, counter, step)
        if parent is not None:
            nodes[parent].children.append(shard_id)
        # Every shard gets a few sequence numbers; lengths vary across the 21-digit range.
        counter += draw(st.integers(1, 10**6))

    def close(node: Node, step: int) -> None:
        nonlocal counter
        node.end, node.closed = counter, step
        counter += 1

    for _ in range(draw(st.integers(1, 3))):
        create(None, 0)
    steps = draw(st.integers(0, 12))
    for step in range(1, steps + 1):
        kind = draw(st.sampled_from(["rollover", "split", "new_root", "close", "late_children"]))
        leaves = [n for n in nodes.values() if n.closed is None]
        orphans = [n for n in nodes.values() if n.closed is not None and not n.children]
        if kind == "late_children" and orphans:
            node = draw(st.sampled_from(orphans))
            for _ in range(draw(st.integers(1, 2))):
                create(node.shard_id, step)
        elif kind == "new_root" or not leaves:
            create(None, step)
        else:
            node = draw(st.sampled_from(leaves))
            close(node, step)
            count = {"rollover": 1, "split": 2}.get(kind, 0)
            for _ in range(count):
                create(node.shard_id, step)
    return History(nodes, steps)


@dataclass
class Listing:
    history: History
    shards: list[Shard]  # as DescribeStream pages would give them (order, duplicates, stale)
    listed: dict[str, Shard]  # the truth: one entry per listed shard


@st.composite
def listings(draw: st.DrawFn) -> Listing:
    """A listing of a history's final state: random trimming of closed roots, random
    order, stale "open" duplicates, and parents listed open although they have children."""
    history = draw(histories())
    at = history.steps
    listed = {s.shard_id: s for s in history.snapshot(at)}
    for _ in range(draw(st.integers(0, 3))):
        roots = sorted(
            sid_
            for sid_, s in listed.items()
            if s.ending_sequence_number is not None and s.parent_shard_id not in listed
        )
        if roots:
            del listed[draw(st.sampled_from(roots))]
    entries: list[Shard] = []
    for shard_id, shard in listed.items():
        node = history.nodes[shard_id]
        has_children = any(kid in listed for kid in node.children)
        if shard.ending_sequence_number is not None and draw(st.booleans()):
            stale = node.listed(at, stale=True)
            if has_children and draw(st.booleans()):
                # Only ever listed open, though it has children: effectively closed.
                listed[shard_id] = stale
                entries.append(stale)
                continue
            entries.append(stale)
        entries.append(shard)
    return Listing(history, draw(st.permutations(entries)), listed)


def run_to_completion(
    tracker: LineageTracker, rng: random.Random, max_running: int
) -> tuple[list[str], dict[str, int], dict[str, int]]:
    """Random reader: random choice among ready shards, random finish order.

    Returns the start order and the step at which each shard started / finished, after
    checking that no shard starts before its planned parent finished.
    """
    graph = tracker.graph
    planned = set(tracker.waiting)
    started: list[str] = []
    started_at: dict[str, int] = {}
    finished_at: dict[str, int] = {}
    running: list[str] = []
    clock = 0
    while not tracker.is_done():
        clock += 1
        ready = tracker.ready()
        if ready and (len(running) < max_running) and (not running or rng.random() < 0.6):
            shard_id, _ = ready[rng.randrange(len(ready))]
            parent = graph.parent(shard_id)
            assert parent is None or parent not in planned or parent in finished_at
            tracker.start(shard_id)
            started.append(shard_id)
            started_at[shard_id] = clock
            running.append(shard_id)
        else:
            assert running, "deadlock: nothing running and nothing ready"
            shard_id = running.pop(rng.randrange(len(running)))
            tracker.end(shard_id)
            finished_at[shard_id] = clock
    assert len(started) == len(set(started))
    assert set(started) == planned
    return started, started_at, finished_at


# -- graph properties ------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(listings())
def test_graph_structure(listing: Listing) -> None:
    graph = ShardGraph.from_shards(listing.shards)
    listed = listing.listed
    assert set(graph.shards) == set(listed)
    order = graph.topological_order()
    assert sorted(order) == sorted(listed)
    position = {shard_id: i for i, shard_id in enumerate(order)}
    for shard_id, shard in listed.items():
        parent = shard.parent_shard_id if shard.parent_shard_id in listed else None
        assert graph.parent(shard_id) == parent
        assert graph.is_root(shard_id) == (parent is None)
        if parent is not None:
            assert position[parent] < position[shard_id]
            assert shard_id in graph.children(parent)
        kids = {k for k, s in listed.items() if s.parent_shard_id == shard_id}
        assert set(graph.children(shard_id)) == kids
        assert graph.is_closed(shard_id) == (shard.ending_sequence_number is not None or bool(kids))
        # Only roots are ever trimmed, so a listed shard keeps all its descendants.
        descendants = graph.descendants(shard_id)
        assert set(descendants) == listing.history.descendants(shard_id)
        assert len(descendants) == len(set(descendants))
        for d in descendants:
            assert shard_id in graph.ancestors(d)
            parent_of_d = graph.parent(d)
            assert parent_of_d is not None
            if parent_of_d != shard_id:
                assert descendants.index(parent_of_d) < descendants.index(d)
        ancestors = graph.ancestors(shard_id)
        assert ancestors[:1] == ((parent,) if parent is not None else ())
    roots = graph.roots()
    assert list(roots) == sorted(roots, key=order.index)
    assert set(roots) == {s for s in listed if graph.parent(s) is None}


@PROPERTY_SETTINGS
@given(listings(), st.randoms(use_true_random=False))
def test_listing_order_and_pages_do_not_matter(listing: Listing, rng: random.Random) -> None:
    reference = ShardGraph.from_shards(listing.listed.values())
    assert ShardGraph.from_shards(listing.shards) == reference
    # The same entries delivered as several pages merged one after another.
    graph = ShardGraph.from_shards([])
    entries = list(listing.shards)
    while entries:
        size = rng.randint(1, 5)
        graph = graph.merged(entries[:size])
        entries = entries[size:]
    assert graph == reference
    assert graph.topological_order() == reference.topological_order()
    assert graph.open_leaves() == reference.open_leaves()


# -- plan properties -------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(listings())
def test_trim_horizon_plans_every_shard(listing: Listing) -> None:
    graph = ShardGraph.from_shards(listing.shards)
    plan = plan_reads(graph, TRIM_HORIZON)
    assert set(plan.starts) == set(listing.listed)
    assert all(start == SHARD_TRIM_HORIZON for start in plan.starts.values())
    assert plan.shard_ids == graph.topological_order()


@PROPERTY_SETTINGS
@given(listings())
def test_latest_plans_exactly_the_open_leaves(listing: Listing) -> None:
    graph = ShardGraph.from_shards(listing.shards)
    parents = {s.parent_shard_id for s in listing.listed.values()}
    expected = {
        shard_id
        for shard_id, shard in listing.listed.items()
        if shard.ending_sequence_number is None and shard_id not in parents
    }
    plan = plan_reads(graph, LATEST)
    assert set(plan.starts) == expected
    assert set(graph.open_leaves()) == expected
    assert all(start.iterator_type == "LATEST" for start in plan.starts.values())


@PROPERTY_SETTINGS
@given(listings(), st.data())
def test_sequence_plans_hold_the_sequence_and_its_descendants(
    listing: Listing, data: st.DataObject
) -> None:
    assume(listing.listed)  # everything may have been trimmed
    graph = ShardGraph.from_shards(listing.shards)
    target = graph.shards[data.draw(st.sampled_from(sorted(listing.listed)))]
    low = int(target.starting_sequence_number or "0")
    high = int(target.ending_sequence_number or str(low + 10**6))
    seq = str(data.draw(st.integers(low, high)))
    holder = graph.shard_holding(seq)
    assert holder is not None
    assert holder.holds(seq)
    # No holder has a larger start (the tie rule).
    for shard in graph.shards.values():
        if shard.holds(seq):
            assert int(shard.starting_sequence_number or "0") <= int(
                holder.starting_sequence_number or "0"
            )
    plan = plan_reads(graph, at_sequence(seq))
    assert plan.starts[holder.shard_id] == ShardStart("AT_SEQUENCE_NUMBER", seq)
    assert set(plan.starts) == {holder.shard_id, *graph.descendants(holder.shard_id)}
    assert plan.excluded == set(graph.shards) - set(plan.starts)


# -- tracker properties ----------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(listings(), st.randoms(use_true_random=False), st.integers(1, 4))
def test_tracker_runs_every_plan_to_completion_in_lineage_order(
    listing: Listing, rng: random.Random, max_running: int
) -> None:
    graph = ShardGraph.from_shards(listing.shards)
    plans: list[ReadPlan] = [plan_reads(graph, TRIM_HORIZON), plan_reads(graph, LATEST)]
    if len(graph):
        some_seq = min((s.starting_sequence_number or "0") for s in graph.shards.values())
        plans.append(plan_reads(graph, at_sequence(some_seq)))
    for plan in plans:
        tracker = LineageTracker(graph, plan)
        started, started_at, finished_at = run_to_completion(tracker, rng, max_running)
        assert set(started) == set(plan.starts)
        for shard_id in started:
            parent = graph.parent(shard_id)
            if parent is not None and parent in plan.starts:
                assert finished_at[parent] < started_at[shard_id]


@PROPERTY_SETTINGS
@given(listings(), st.randoms(use_true_random=False), st.integers(0, 40))
def test_checkpoint_resume_reads_exactly_what_was_left(
    listing: Listing, rng: random.Random, steps: int
) -> None:
    graph = ShardGraph.from_shards(listing.shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    positions: dict[str, str] = {}
    for _ in range(steps):
        ready = tracker.ready()
        if ready and (not tracker.running or rng.random() < 0.5):
            shard_id = ready[rng.randrange(len(ready))][0]
            tracker.start(shard_id)
            if rng.random() < 0.5:
                positions[shard_id] = str(int(graph.shards[shard_id].starting_sequence_number or 0))
        elif tracker.running:
            done = sorted(tracker.running)[rng.randrange(len(tracker.running))]
            tracker.end(done)
            positions.pop(done, None)
        if rng.random() < 0.3:
            tracker.forget_ended()
    remaining = tracker.waiting | tracker.running
    pending = {s: tracker.start_of(s) for s in remaining if s not in positions}
    cp = Checkpoint(ARN, positions, tracker.ended, pending)
    cp = Checkpoint.from_json(cp.to_json())
    plan = plan_reads(graph, cp)
    assert set(plan.starts) == remaining
    assert plan.missing_checkpoint_shards == frozenset()
    run_to_completion(LineageTracker(graph, plan), rng, 3)


@PROPERTY_SETTINGS
@given(histories(), st.data())
def test_follow_mode_reads_every_new_shard_once_in_order(
    history: History, data: st.DataObject
) -> None:
    """Discover the history step by step, reading as a follow-mode reader would."""
    rng = data.draw(st.randoms(use_true_random=False))
    first = data.draw(st.integers(0, history.steps))
    graph = ShardGraph.from_shards(history.snapshot(first))
    kind = data.draw(st.sampled_from(["trim_horizon", "latest", "sequence"]))
    if kind == "trim_horizon":
        plan = plan_reads(graph, TRIM_HORIZON)
        expected = set(history.nodes)
    elif kind == "latest":
        plan = plan_reads(graph, LATEST)
        expected = set(graph.open_leaves()) | {
            n.shard_id for n in history.nodes.values() if n.created > first
        }
    else:
        held = data.draw(st.sampled_from(sorted(graph.shards)))
        seq = graph.shards[held].starting_sequence_number
        assert seq is not None
        plan = plan_reads(graph, at_sequence(seq))
        holder = next(iter(plan.starts))
        # Other lineages stay unread, but a partition root created after the start is
        # read with all its descendants: everything in it comes after the start.
        new_roots = [
            n.shard_id for n in history.nodes.values() if n.parent is None and n.created > first
        ]
        expected = {holder} | history.descendants(holder)
        for root in new_roots:
            expected |= {root} | history.descendants(root)
    tracker = LineageTracker(graph, plan)
    started: dict[str, int] = {}
    finished: dict[str, int] = {}
    clock = 0

    def work(now: int, *, drain: bool) -> None:
        nonlocal clock
        while True:
            ready = tracker.ready()
            closable = sorted(s for s in tracker.running if history.is_closed_at(s, now))
            if not ready and not closable:
                return
            if not drain and rng.random() < 0.2:
                return
            clock += 1
            if ready and (not closable or rng.random() < 0.5):
                shard_id = ready[rng.randrange(len(ready))][0]
                parent = history.nodes[shard_id].parent
                assert parent is None or parent not in started or parent in finished
                tracker.start(shard_id)
                assert shard_id not in started
                started[shard_id] = clock
            else:
                shard_id = closable[rng.randrange(len(closable))]
                tracker.end(shard_id)
                finished[shard_id] = clock
            if rng.random() < 0.3:
                tracker.forget_ended()

    work(first, drain=False)
    for now in range(first + 1, history.steps + 1):
        if now < history.steps and rng.random() < 0.3:
            continue  # this poll is skipped; the next one sees more at once
        snapshot = history.snapshot(now)
        snapshot = [
            history.nodes[s.shard_id].listed(now, stale=True) if rng.random() < 0.1 else s
            for s in snapshot
        ]
        if rng.random() < 0.5:
            tracker.add_shards(snapshot, complete=True)
        else:
            snapshot.sort(key=lambda s: s.shard_id)
            while snapshot:  # pages in shard id order
                size = rng.randint(1, 4)
                tracker.add_shards(snapshot[:size])
                snapshot = snapshot[size:]
        work(now, drain=False)
    work(history.steps, drain=True)

    assert set(started) == expected
    # Whatever still runs is open; nothing planned is left waiting.
    assert tracker.waiting == frozenset()
    assert all(not history.is_closed_at(s, history.steps) for s in tracker.running)
    for shard_id, at in started.items():
        parent = history.nodes[shard_id].parent
        if parent is not None and parent in started:
            assert finished[parent] < at
