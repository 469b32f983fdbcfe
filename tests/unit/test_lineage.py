"""Unit tests of the pure shard lineage layer (ddbstreams.lineage._graph)."""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Iterable, Sequence

import pytest

from ddbstreams._errors import InvalidPositionError
from ddbstreams.lineage._graph import (
    LineageTracker,
    ReadPlan,
    ShardGraph,
    plan_reads,
    shard_order_key,
)
from ddbstreams.model._position import (
    LATEST,
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    Checkpoint,
    ShardIteratorType,
    ShardStart,
    after_sequence,
    at_sequence,
)
from ddbstreams.model._types import Shard, shard_created_ms

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
BASE_MS = 1_700_000_000_000
SEQ_BASE = 4_930_000_000_000_000_000_000  # 22 digits, like real sequence numbers


def sid(n: int, tag: int | None = None) -> str:
    """A realistic shard id created ``n`` seconds after BASE_MS."""
    suffix = (0x9E3779B1 * (n + 1) if tag is None else tag) & 0xFFFFFFFF
    return f"shardId-{BASE_MS + n * 1000:020d}-{suffix:08x}"


def seq(n: int) -> str:
    return str(SEQ_BASE + n)


def shard(
    shard_id: str, parent: str | None = None, start: int | None = 0, end: int | None = None
) -> Shard:
    return Shard(
        shard_id=shard_id,
        parent_shard_id=parent,
        starting_sequence_number=None if start is None else seq(start),
        ending_sequence_number=None if end is None else seq(end),
    )


def chain(length: int, first: int = 0, parent: str | None = None, step: int = 100) -> list[Shard]:
    """``length`` generations of rollovers; every shard closed except the last."""
    out: list[Shard] = []
    for i in range(length):
        shard_id = sid(first + i)
        last = i == length - 1
        start = (first + i) * step
        out.append(shard(shard_id, parent, start, None if last else start + step - 1))
        parent = shard_id
    return out


def split_forest() -> tuple[list[Shard], dict[str, str]]:
    """root -> (left, right); left -> left2 (open); right open; plus an unrelated partition.

    Returns the shards and a name -> id map.
    """
    names = {
        "root": sid(0),
        "left": sid(10, 0x0000_0002),
        "right": sid(10, 0x0000_0001),
        "left2": sid(20),
        "other": sid(1),
        "other2": sid(11),
    }
    shards = [
        shard(names["root"], None, 0, 99),
        shard(names["left"], names["root"], 100, 199),
        shard(names["right"], names["root"], 100, None),
        shard(names["left2"], names["left"], 200, None),
        shard(names["other"], None, 0, 149),
        shard(names["other2"], names["other"], 150, None),
    ]
    return shards, names


def checkpoint(
    positions: dict[str, str] | None = None,
    finished: Iterable[str] = (),
    pending: dict[str, ShardStart] | None = None,
) -> Checkpoint:
    return Checkpoint(ARN, positions or {}, frozenset(finished), pending or {})


# -- ShardGraph ----------------------------------------------------------------------------


def test_empty_graph() -> None:
    graph = ShardGraph.from_shards([])
    assert len(graph) == 0
    assert graph.roots() == ()
    assert graph.open_leaves() == ()
    assert graph.topological_order() == ()
    assert graph.shard_holding(seq(1)) is None
    assert plan_reads(graph, TRIM_HORIZON).starts == {}
    assert plan_reads(graph, LATEST).starts == {}


def test_deep_chain_of_fifty_generations() -> None:
    shards = chain(50)
    ids = [s.shard_id for s in shards]
    graph = ShardGraph.from_shards(reversed(shards))
    assert graph.roots() == (ids[0],)
    assert graph.open_leaves() == (ids[-1],)
    assert graph.topological_order() == tuple(ids)
    assert graph.parent(ids[0]) is None
    for i in range(1, 50):
        assert graph.parent(ids[i]) == ids[i - 1]
        assert graph.children(ids[i - 1]) == (ids[i],)
        assert graph.is_closed(ids[i - 1])
        assert not graph.is_root(ids[i])
    assert graph.children(ids[-1]) == ()
    assert not graph.is_closed(ids[-1])
    assert graph.ancestors(ids[-1]) == tuple(reversed(ids[:-1]))
    assert graph.ancestors(ids[25]) == tuple(reversed(ids[:25]))
    assert graph.descendants(ids[0]) == tuple(ids[1:])
    assert graph.descendants(ids[30]) == tuple(ids[31:])
    assert graph.descendants(ids[-1]) == ()


def test_split_children_in_stable_order() -> None:
    shards, n = split_forest()
    graph = ShardGraph.from_shards(shards)
    # Same creation hint: ordered by id ("...-00000001" before "...-00000002").
    assert graph.children(n["root"]) == (n["right"], n["left"])
    assert graph.parent(n["left"]) == n["root"]
    assert graph.parent(n["right"]) == n["root"]
    assert graph.descendants(n["root"]) == (n["right"], n["left"], n["left2"])
    assert graph.ancestors(n["left2"]) == (n["left"], n["root"])
    assert graph.roots() == (n["root"], n["other"])
    assert graph.open_leaves() == (n["right"], n["other2"], n["left2"])
    order = graph.topological_order()
    assert sorted(order) == sorted(s.shard_id for s in shards)
    # Parents first, and roots in stable order; otherwise creation hint order.
    assert order == (n["root"], n["other"], n["right"], n["left"], n["other2"], n["left2"])


def test_children_ordered_by_creation_hint_before_id() -> None:
    parent = sid(0)
    late = sid(50, 0x00000000)  # smaller hex, later creation
    early = sid(40, 0xFFFFFFFF)
    graph = ShardGraph.from_shards(
        [shard(parent, None, 0, 9), shard(late, parent, 10), shard(early, parent, 10)]
    )
    assert graph.children(parent) == (early, late)


def test_ids_without_creation_hint_sort_after_hinted_ids() -> None:
    assert shard_order_key("odd-shard") > shard_order_key(sid(10**6))
    assert shard_order_key("a") < shard_order_key("b")
    graph = ShardGraph.from_shards(
        [shard("zz-custom"), shard("aa-custom"), shard(sid(5)), shard(sid(3))]
    )
    assert graph.roots() == (sid(3), sid(5), "aa-custom", "zz-custom")
    assert list(graph) == [sid(3), sid(5), "aa-custom", "zz-custom"]


def test_order_key_and_created_at_hint_read_the_shard_id_the_same_way() -> None:
    # One parser of the creation time in a shard id (ddbstreams.model._types.shard_created_ms),
    # used by both the lineage order and Shard.created_at_hint.
    hinted = sid(7)
    created_ms = shard_created_ms(hinted)
    assert created_ms == BASE_MS + 7_000
    assert shard_order_key(hinted) == (0, created_ms, hinted)
    hint = shard(hinted).created_at_hint
    assert hint is not None
    assert round(hint.timestamp() * 1000) == created_ms
    for odd in ("odd-shard", "shardId-123-abc", "shardId-00000001700000000000-xyz"):
        assert shard_created_ms(odd) is None
        assert shard(odd).created_at_hint is None
        assert shard_order_key(odd) == (1, 0, odd)


def test_several_independent_partitions() -> None:
    partitions = [chain(5, first=100 * p) for p in range(4)]
    graph = ShardGraph.from_shards(itertools.chain.from_iterable(partitions))
    assert graph.roots() == tuple(p[0].shard_id for p in partitions)
    assert graph.open_leaves() == tuple(p[-1].shard_id for p in partitions)
    order = graph.topological_order()
    for p in partitions:
        positions = [order.index(s.shard_id) for s in p]
        assert positions == sorted(positions)
        assert graph.descendants(p[0].shard_id) == tuple(s.shard_id for s in p[1:])


def test_trimmed_parent_makes_child_a_root() -> None:
    trimmed = sid(0)
    child = sid(10)
    grandchild = sid(20)
    graph = ShardGraph.from_shards([shard(grandchild, child, 200), shard(child, trimmed, 100, 199)])
    assert trimmed not in graph
    assert graph.parent(child) is None
    assert graph.is_root(child)
    assert graph.roots() == (child,)
    assert graph.ancestors(grandchild) == (child,)
    assert graph.shards[child].parent_shard_id == trimmed  # the raw link is kept
    assert graph.topological_order() == (child, grandchild)


def test_open_parent_with_children_counts_as_closed() -> None:
    parent, child = sid(0), sid(10)
    graph = ShardGraph.from_shards([shard(parent, None, 0, None), shard(child, parent, 100)])
    assert graph.shards[parent].is_open
    assert graph.is_closed(parent)
    assert not graph.is_closed(child)
    assert graph.open_leaves() == (child,)


def test_listing_order_does_not_matter() -> None:
    shards, _ = split_forest()
    reference = ShardGraph.from_shards(shards)
    for perm in itertools.permutations(shards):
        graph = ShardGraph.from_shards(perm)
        assert graph == reference
        assert graph.topological_order() == reference.topological_order()
        assert graph.roots() == reference.roots()
        assert graph.open_leaves() == reference.open_leaves()
        assert list(graph.shards) == list(reference.shards)
        for shard_id in graph:
            assert graph.children(shard_id) == reference.children(shard_id)
            assert graph.descendants(shard_id) == reference.descendants(shard_id)


def test_graph_from_describe_stream_pages_and_refresh() -> None:
    a, b, c, d = sid(0), sid(1), sid(10), sid(11)
    page1 = [shard(a, None, 0, None), shard(b, None, 0, None)]
    page2 = [shard(c, a, 100, None)]
    graph = ShardGraph.from_shards(page1).merged(page2)
    assert graph.is_closed(a)  # open with a child
    assert graph.shards[a].ending_sequence_number is None
    assert graph.open_leaves() == (b, c)
    # A later refresh: a is closed, b has rolled over into d.
    refresh = [shard(a, None, 0, 99), shard(b, None, 0, 120), shard(c, a, 100), shard(d, b, 121)]
    graph2 = graph.merged(refresh[:2]).merged(refresh[2:])
    assert graph2.shards[a].ending_sequence_number == seq(99)
    assert graph2.shards[b].ending_sequence_number == seq(120)
    assert graph2.open_leaves() == (c, d)
    assert graph2.parent(d) == b
    # The original graph is untouched (immutable).
    assert graph.shards[a].ending_sequence_number is None
    assert d not in graph
    # from_shards with duplicates: the later entry wins.
    assert ShardGraph.from_shards([*page1, *page2, *refresh]) == graph2


def test_stale_listing_does_not_reopen_or_orphan_a_shard() -> None:
    parent, child = sid(0), sid(10)
    closed = shard(child, parent, 100, 199)
    stale = Shard(child, None, None, None)
    graph = ShardGraph.from_shards([shard(parent, None, 0, 99), closed, stale])
    assert graph.shards[child] == closed
    assert graph.merged([stale]) is graph  # nothing changed
    assert graph.merged([closed]) is graph


def test_merged_adds_and_without_removes() -> None:
    shards = chain(3)
    ids = [s.shard_id for s in shards]
    graph = ShardGraph.from_shards(shards[:1])
    graph = graph.merged(shards[1:])
    assert graph.topological_order() == tuple(ids)
    smaller = graph.without([ids[0], "shardId-not-listed"])
    assert ids[0] not in smaller
    assert smaller.roots() == (ids[1],)
    assert smaller.without([]) is smaller
    assert graph.without(["shardId-not-listed"]) is graph


def test_unknown_shard_ids_raise_key_error() -> None:
    graph = ShardGraph.from_shards(chain(2))
    assert "nope" not in graph
    assert 42 not in graph
    for query in (
        graph.parent,
        graph.children,
        graph.is_root,
        graph.is_closed,
        graph.ancestors,
        graph.descendants,
    ):
        with pytest.raises(KeyError, match="nope"):
            query("nope")


def test_cycles_are_cut_so_everything_terminates() -> None:
    a, b, c = sid(0), sid(1), sid(2)
    graph = ShardGraph.from_shards([shard(a, c), shard(b, a), shard(c, b), shard(sid(3), sid(3))])
    assert graph.roots() == (a, sid(3))  # the cycle is cut at its first member
    assert graph.topological_order() == (a, b, c, sid(3))
    assert graph.ancestors(c) == (b, a)
    assert graph.descendants(a) == (b, c)
    assert plan_reads(graph, TRIM_HORIZON).shard_ids == (a, b, c, sid(3))


def test_graph_repr_and_hashability() -> None:
    graph = ShardGraph.from_shards(chain(3))
    assert repr(graph) == "ShardGraph(3 shards, 1 roots)"
    with pytest.raises(TypeError):
        hash(graph)
    assert graph != object()


def test_shard_holding_ranges_are_inclusive() -> None:
    shards = chain(5)
    graph = ShardGraph.from_shards(shards)
    assert graph.shard_holding(seq(0)) == shards[0]
    assert graph.shard_holding(seq(99)) == shards[0]
    assert graph.shard_holding(seq(100)) == shards[1]
    assert graph.shard_holding(seq(250)) == shards[2]
    assert graph.shard_holding(seq(10**9)) == shards[4]  # the open shard has no end
    assert graph.shard_holding(str(SEQ_BASE - 1)) is None  # before every start


def test_shard_holding_compares_as_integers() -> None:
    short = Shard(sid(0), None, "9", "99")
    long = Shard(sid(1), sid(0), "100", None)
    graph = ShardGraph.from_shards([short, long])
    # As strings "100" < "99" and "99" > "100"; as integers they are ordered.
    assert graph.shard_holding("99") == short
    assert graph.shard_holding("100") == long
    assert graph.shard_holding("1000") == long
    assert graph.shard_holding("8") is None
    # 21 vs 22 digits, realistic lengths.
    old = Shard(sid(0), None, str(10**20), str(10**21 - 1))
    new = Shard(sid(1), sid(0), str(10**21), None)
    graph = ShardGraph.from_shards([new, old])
    assert graph.shard_holding(str(10**21 - 1)) == old
    assert graph.shard_holding("9" * 21) == old
    assert graph.shard_holding(str(10**21)) == new
    assert graph.shard_holding("0" + str(10**21)) == new  # leading zeros do not matter


def test_shard_holding_tie_rules() -> None:
    parent, child = sid(0), sid(10)
    # An open parent with children overlaps its child's range: the largest start wins.
    graph = ShardGraph.from_shards([shard(parent, None, 0, None), shard(child, parent, 100)])
    assert graph.shard_holding(seq(50)) == graph.shards[parent]
    assert graph.shard_holding(seq(150)) == graph.shards[child]
    # Equal starts: the first in stable order wins.
    x, y = sid(5, 0xB), sid(5, 0xA)
    graph = ShardGraph.from_shards([shard(x, None, 0, 50), shard(y, None, 0, None)])
    assert graph.shard_holding(seq(10)) == graph.shards[y]
    # A missing starting sequence number has no lower bound but loses ties.
    graph = ShardGraph.from_shards([shard(x, None, None, 50), shard(y, None, 0, 50)])
    assert graph.shard_holding(seq(10)) == graph.shards[y]
    assert ShardGraph.from_shards([shard(x, None, None, 50)]).shard_holding("1") is not None


def test_shard_holding_rejects_non_numeric() -> None:
    graph = ShardGraph.from_shards(chain(1))
    with pytest.raises(InvalidPositionError):
        graph.shard_holding("12a")


# -- plan_reads ------------------------------------------------------------------------------


def test_plan_trim_horizon_reads_every_shard_parents_first() -> None:
    shards, _ = split_forest()
    graph = ShardGraph.from_shards(shards)
    plan = plan_reads(graph, TRIM_HORIZON)
    assert plan.shard_ids == graph.topological_order()
    assert set(plan.starts.values()) == {SHARD_TRIM_HORIZON}
    assert plan.missing_checkpoint_shards == frozenset()
    assert plan.excluded == frozenset()


def test_plan_latest_reads_only_open_leaves() -> None:
    shards, n = split_forest()
    closed_leaf = sid(30)
    open_parent, its_child = sid(2), sid(31)
    graph = ShardGraph.from_shards(
        [
            *shards,
            shard(closed_leaf, n["left2"], 300, 399),  # left2 now has a child
            shard(open_parent, None, 0, None),
            shard(its_child, open_parent, 500, None),
        ]
    )
    plan = plan_reads(graph, LATEST)
    assert plan.starts == {
        n["right"]: SHARD_LATEST,
        n["other2"]: SHARD_LATEST,
        its_child: SHARD_LATEST,
    }
    assert plan.excluded == frozenset()


@pytest.mark.parametrize("make", [at_sequence, after_sequence])
def test_plan_sequence_in_the_middle_of_a_chain(
    make: Callable[[str], AtSequence | AfterSequence],
) -> None:
    shards = chain(10)
    ids = [s.shard_id for s in shards]
    other = chain(3, first=1000)
    graph = ShardGraph.from_shards([*shards, *other])
    plan = plan_reads(graph, make(seq(450)))
    kind: ShardIteratorType = (
        "AT_SEQUENCE_NUMBER" if make is at_sequence else "AFTER_SEQUENCE_NUMBER"
    )
    expected = {ids[4]: ShardStart(kind, seq(450))} | {i: SHARD_TRIM_HORIZON for i in ids[5:]}
    assert plan.starts == expected
    assert list(plan.starts) == ids[4:]
    assert plan.excluded == frozenset(ids[:4]) | {s.shard_id for s in other}


def test_plan_sequence_in_a_split_child() -> None:
    shards, n = split_forest()
    graph = ShardGraph.from_shards(shards)
    plan = plan_reads(graph, after_sequence(seq(120)))
    # seq 120 is in left [100, 199], right [100, open] and other [0, 149]: the largest
    # start wins, and of the equal starts the first in stable order.
    assert plan.starts == {n["right"]: ShardStart("AFTER_SEQUENCE_NUMBER", seq(120))}
    plan = plan_reads(graph, at_sequence(seq(250)))
    # right is open, left2 starts at 200: the larger start wins.
    assert plan.starts == {n["left2"]: ShardStart("AT_SEQUENCE_NUMBER", seq(250))}
    only_left = ShardGraph.from_shards(s for s in shards if s.shard_id != n["right"])
    plan = plan_reads(only_left, at_sequence(seq(120)))
    assert plan.starts == {
        n["left"]: ShardStart("AT_SEQUENCE_NUMBER", seq(120)),
        n["left2"]: SHARD_TRIM_HORIZON,
    }
    assert n["root"] in plan.excluded


def test_plan_sequence_compares_lengths_as_integers() -> None:
    a = Shard(sid(0), None, "90", "99")
    b = Shard(sid(1), sid(0), "100", "999")
    c = Shard(sid(2), sid(1), "1000", None)
    graph = ShardGraph.from_shards([a, b, c])
    assert plan_reads(graph, at_sequence("99")).shard_ids == (a.shard_id, b.shard_id, c.shard_id)
    assert plan_reads(graph, at_sequence("100")).shard_ids == (b.shard_id, c.shard_id)
    assert plan_reads(graph, at_sequence("1000")).shard_ids == (c.shard_id,)


def test_plan_sequence_not_held_anywhere() -> None:
    graph = ShardGraph.from_shards([shard(sid(0), None, 100, 199), shard(sid(1), sid(0), 200, 299)])
    missing = seq(50)
    with pytest.raises(InvalidPositionError, match=missing) as info:
        plan_reads(graph, at_sequence(missing))
    assert "no listed shard" in str(info.value)
    with pytest.raises(InvalidPositionError, match="trimmed"):
        plan_reads(graph, after_sequence(seq(300)))
    with pytest.raises(InvalidPositionError):
        plan_reads(ShardGraph.from_shards([]), at_sequence(seq(1)))


def test_plan_rejects_non_positions() -> None:
    with pytest.raises(TypeError):
        plan_reads(ShardGraph.from_shards([]), "TRIM_HORIZON")  # type: ignore[arg-type]


def checkpoint_forest() -> tuple[ShardGraph, dict[str, str]]:
    """Two partitions.

    A: a0 -> a1 -> (a2, a3); a2 -> a4 (open); a3 open.
    B: b0 -> b1 (open).    C: c0 (open, unrelated).
    """
    n = {
        "a0": sid(0),
        "a1": sid(10),
        "a2": sid(20, 1),
        "a3": sid(20, 2),
        "a4": sid(30),
        "b0": sid(1),
        "b1": sid(11),
        "c0": sid(2),
    }
    graph = ShardGraph.from_shards(
        [
            shard(n["a0"], None, 0, 99),
            shard(n["a1"], n["a0"], 100, 199),
            shard(n["a2"], n["a1"], 200, 299),
            shard(n["a3"], n["a1"], 200, None),
            shard(n["a4"], n["a2"], 300, None),
            shard(n["b0"], None, 0, 149),
            shard(n["b1"], n["b0"], 150, None),
            shard(n["c0"], None, 0, None),
        ]
    )
    return graph, n


def test_plan_checkpoint_positions_finished_pending() -> None:
    graph, n = checkpoint_forest()
    cp = checkpoint(
        positions={n["a2"]: seq(250), n["b1"]: seq(170)},
        finished=[n["a1"]],
        pending={n["a3"]: SHARD_LATEST},
    )
    plan = plan_reads(graph, cp)
    assert plan.starts == {
        n["a2"]: ShardStart("AFTER_SEQUENCE_NUMBER", seq(250)),
        n["a3"]: SHARD_LATEST,
        n["b1"]: ShardStart("AFTER_SEQUENCE_NUMBER", seq(170)),
        n["a4"]: SHARD_TRIM_HORIZON,  # born after the checkpoint
        n["c0"]: SHARD_TRIM_HORIZON,  # unrelated: never lose data
    }
    # a0 is an ancestor of named shards, b0 of b1: already consumed.
    assert n["a0"] not in plan.starts
    assert n["b0"] not in plan.starts
    assert plan.missing_checkpoint_shards == frozenset()
    assert plan.excluded == frozenset()
    assert list(plan.starts) == [s for s in graph.topological_order() if s in plan.starts]


def test_plan_checkpoint_descendants_born_after_a_finished_shard() -> None:
    graph, n = checkpoint_forest()
    plan = plan_reads(graph, checkpoint(finished=[n["a0"], n["b0"]]))
    assert plan.starts == {
        sid_: SHARD_TRIM_HORIZON for sid_ in (n["a1"], n["a2"], n["a3"], n["a4"], n["b1"], n["c0"])
    }


def test_plan_checkpoint_named_ancestor_and_named_descendant() -> None:
    graph, n = checkpoint_forest()
    # a0 finished and a2 in progress: a1 lies between them and was read to its end.
    plan = plan_reads(graph, checkpoint(positions={n["a2"]: seq(201)}, finished=[n["a0"]]))
    assert n["a1"] not in plan.starts
    assert plan.starts[n["a2"]] == ShardStart("AFTER_SEQUENCE_NUMBER", seq(201))
    assert plan.starts[n["a3"]] == SHARD_TRIM_HORIZON
    assert plan.starts[n["a4"]] == SHARD_TRIM_HORIZON


def test_plan_checkpoint_missing_shards() -> None:
    graph, n = checkpoint_forest()
    trimmed_root = sid(0, 0xDEAD)  # named, no longer listed, and no listed child
    cp = checkpoint(
        positions={n["b1"]: seq(151), trimmed_root: seq(5)},
        finished=[n["a1"], "shardId-00000000000000000000-gone"],
    )
    plan = plan_reads(graph, cp)
    assert plan.missing_checkpoint_shards == {trimmed_root, "shardId-00000000000000000000-gone"}
    assert plan.starts[n["b1"]] == ShardStart("AFTER_SEQUENCE_NUMBER", seq(151))


def test_plan_checkpoint_follows_unlisted_named_parent() -> None:
    gone, child, grandchild, stranger = sid(0), sid(10), sid(20), sid(11)
    graph = ShardGraph.from_shards(
        [
            shard(child, gone, 100, 199),
            shard(grandchild, child, 200, None),
            shard(stranger, sid(1), 100, None),  # trimmed parent, not named
        ]
    )
    # The checkpoint finished ``gone`` (now trimmed): its listed child was born after it.
    plan = plan_reads(graph, checkpoint(finished=[gone], positions={sid(1, 7): seq(1)}))
    assert plan.starts == {
        child: SHARD_TRIM_HORIZON,
        stranger: SHARD_TRIM_HORIZON,
        grandchild: SHARD_TRIM_HORIZON,
    }
    assert plan.missing_checkpoint_shards == {gone, sid(1, 7)}
    # Named and in progress at the time: the child comes after it as well.
    plan = plan_reads(graph, checkpoint(positions={gone: seq(50)}))
    assert plan.starts[child] == SHARD_TRIM_HORIZON
    assert plan.missing_checkpoint_shards == {gone}


def test_plan_checkpoint_precedence_when_named_twice() -> None:
    graph, n = checkpoint_forest()
    cp = checkpoint(
        positions={n["a0"]: seq(10), n["b0"]: seq(20)},
        finished=[n["a0"]],
        pending={n["b0"]: SHARD_TRIM_HORIZON, n["c0"]: SHARD_TRIM_HORIZON},
    )
    plan = plan_reads(graph, cp)
    assert n["a0"] not in plan.starts
    assert plan.starts[n["b0"]] == ShardStart("AFTER_SEQUENCE_NUMBER", seq(20))
    assert plan.starts[n["c0"]] == SHARD_TRIM_HORIZON


def test_plan_empty_checkpoint_reads_everything() -> None:
    graph, _ = checkpoint_forest()
    assert plan_reads(graph, checkpoint()).starts == plan_reads(graph, TRIM_HORIZON).starts


# -- LineageTracker --------------------------------------------------------------------------


Chooser = Callable[[list[tuple[str, ShardStart]]], int]


def run(
    tracker: LineageTracker,
    choose: Chooser = lambda ready: 0,
    finish_pick: Callable[[list[str]], int] = lambda running: 0,
    max_running: int = 3,
) -> list[str]:
    """Drive the tracker to completion like a reader would; check invariants on the way.

    Returns the order in which shards were started.
    """
    graph = tracker.graph
    planned = set(tracker.waiting)
    finished_before = tracker.ended
    started: list[str] = []
    running: list[str] = []
    finished: set[str] = set()
    while not tracker.is_done():
        ready = tracker.ready()
        assert ready == tracker.ready()  # ready() does not change state
        if ready and len(running) < max_running:
            shard_id, start = ready[choose(ready)]
            assert start == tracker.start_of(shard_id)
            parent = graph.parent(shard_id)
            if parent is not None and parent in planned:
                assert parent in finished, f"{shard_id} started before its parent {parent}"
            tracker.start(shard_id)
            assert shard_id in tracker.running
            started.append(shard_id)
            running.append(shard_id)
        else:
            assert running, "deadlock: nothing running and nothing ready"
            shard_id = running.pop(finish_pick(running))
            tracker.end(shard_id)
            finished.add(shard_id)
    assert sorted(started) == sorted(planned)
    assert len(started) == len(set(started))
    assert tracker.ended == planned | finished_before
    assert tracker.waiting == tracker.running == frozenset()
    assert tracker.ready() == []
    return started


def test_tracker_runs_a_chain_strictly_in_order() -> None:
    shards = chain(50)
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    assert run(tracker) == [s.shard_id for s in shards]


def test_tracker_split_children_ready_after_parent() -> None:
    shards, n = split_forest()
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    assert [s for s, _ in tracker.ready()] == [n["root"], n["other"]]
    tracker.start(n["root"])
    assert [s for s, _ in tracker.ready()] == [n["other"]]
    tracker.end(n["root"])
    assert [s for s, _ in tracker.ready()] == [n["other"], n["right"], n["left"]]
    assert all(start == SHARD_TRIM_HORIZON for _, start in tracker.ready())


def test_tracker_open_parent_with_children_blocks_them() -> None:
    parent, left, right = sid(0), sid(10, 1), sid(10, 2)
    graph = ShardGraph.from_shards(
        [shard(parent, None, 0, None), shard(left, parent, 100), shard(right, parent, 100)]
    )
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    assert [s for s, _ in tracker.ready()] == [parent]
    tracker.start(parent)
    assert tracker.ready() == []
    with pytest.raises(ValueError, match="before its parent"):
        tracker.start(left)
    tracker.end(parent)
    assert [s for s, _ in tracker.ready()] == [left, right]


def test_tracker_unplanned_or_trimmed_parents_do_not_block() -> None:
    shards, n = split_forest()
    graph = ShardGraph.from_shards(shards)
    # LATEST: closed parents are not planned, the open leaves are ready at once.
    tracker = LineageTracker(graph, plan_reads(graph, LATEST))
    assert tracker.ready() == [
        (n["right"], SHARD_LATEST),
        (n["other2"], SHARD_LATEST),
        (n["left2"], SHARD_LATEST),
    ]
    # Checkpoint: a finished parent is not planned and does not block.
    tracker = LineageTracker(graph, plan_reads(graph, checkpoint(finished=[n["root"]])))
    assert {s for s, _ in tracker.ready()} == {n["right"], n["left"], n["other"]}
    # Trimmed: the child of an unlisted parent is ready at once.
    trimmed = ShardGraph.from_shards(s for s in shards if s.shard_id != n["root"])
    tracker = LineageTracker(trimmed, plan_reads(trimmed, TRIM_HORIZON))
    assert {s for s, _ in tracker.ready()} == {n["right"], n["left"], n["other"]}
    run(tracker)


def test_tracker_accepts_a_plain_mapping_plan() -> None:
    shards = chain(3)
    ids = [s.shard_id for s in shards]
    graph = ShardGraph.from_shards(shards)
    # Plan only the middle and last shard: the first (unplanned) does not block the middle.
    tracker = LineageTracker(
        graph, {ids[2]: SHARD_TRIM_HORIZON, ids[1]: ShardStart("AT_SEQUENCE_NUMBER", seq(150))}
    )
    assert tracker.ready() == [(ids[1], ShardStart("AT_SEQUENCE_NUMBER", seq(150)))]
    assert run(tracker) == [ids[1], ids[2]]
    with pytest.raises(ValueError, match="not in the graph"):
        LineageTracker(graph, {"shardId-unlisted": SHARD_TRIM_HORIZON})


def test_tracker_transition_errors() -> None:
    shards = chain(2)
    a, b = (s.shard_id for s in shards)
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    with pytest.raises(ValueError, match="not running"):
        tracker.end(a)
    with pytest.raises(ValueError, match="unknown, not waiting"):
        tracker.start("shardId-unknown")
    tracker.start(a)
    with pytest.raises(ValueError, match="running, not waiting"):
        tracker.start(a)
    tracker.end(a)
    with pytest.raises(ValueError, match="ended, not running"):
        tracker.end(a)
    with pytest.raises(KeyError):
        tracker.start_of(a)
    assert not tracker.is_done()
    tracker.start(b)
    assert not tracker.is_done()
    tracker.end(b)
    assert tracker.is_done()
    assert repr(tracker) == "LineageTracker(waiting=0, running=0, ended=2, forgotten=0)"


def test_tracker_state_of() -> None:
    shards = chain(3)
    a, b, c = (s.shard_id for s in shards)
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, after_sequence(seq(150))))
    assert tracker.state_of(a) == "excluded"
    assert tracker.state_of(b) == "waiting"
    assert tracker.state_of("shardId-x") is None
    tracker.start(b)
    assert tracker.state_of(b) == "running"
    tracker.end(b)
    assert tracker.state_of(b) == "ended"
    tracker = LineageTracker(graph, plan_reads(graph, LATEST))
    assert tracker.state_of(a) == "unplanned"
    assert tracker.state_of(c) == "waiting"


def _forest_for_orders() -> list[Shard]:
    shards, n = split_forest()
    extra = [
        shard(sid(30, 1), n["left2"], 300, 399),
        shard(sid(30, 2), n["left2"], 300, None),
        shard(sid(40), sid(30, 1), 400, None),
        shard(sid(5), sid(4), 50, None),  # trimmed parent
        shard(sid(6), None, 0, None),
    ]
    for s in shards:
        if s.shard_id == n["left2"]:
            shards.remove(s)
            shards.append(shard(n["left2"], n["left"], 200, 299))
            break
    return [*shards, *extra, *chain(8, first=200)]


@pytest.mark.parametrize(
    ("choose", "finish_pick", "max_running"),
    [
        (lambda r: 0, lambda r: 0, 1),
        (lambda r: 0, lambda r: 0, 3),
        (lambda r: -1, lambda r: -1, 3),
        (lambda r: len(r) // 2, lambda r: len(r) - 1, 2),
        (lambda r: -1, lambda r: 0, 100),
    ],
)
def test_tracker_orders(
    choose: Chooser, finish_pick: Callable[[list[str]], int], max_running: int
) -> None:
    graph = ShardGraph.from_shards(_forest_for_orders())
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    started = run(tracker, choose, finish_pick, max_running)
    for child in started:
        parent = graph.parent(child)
        if parent is not None:
            assert started.index(parent) < started.index(child)


@pytest.mark.parametrize("seed", range(20))
def test_tracker_random_orders(seed: int) -> None:
    rng = random.Random(seed)
    shards = _forest_for_orders()
    rng.shuffle(shards)
    graph = ShardGraph.from_shards(shards)
    plans = [
        plan_reads(graph, TRIM_HORIZON),
        plan_reads(graph, LATEST),
        plan_reads(graph, at_sequence(seq(150))),
    ]
    for plan in plans:
        tracker = LineageTracker(graph, plan)
        run(
            tracker,
            lambda r: rng.randrange(len(r)),
            lambda r: rng.randrange(len(r)),
            rng.randint(1, 4),
        )


def test_tracker_single_run_reading_a_latest_plan() -> None:
    graph = ShardGraph.from_shards(_forest_for_orders())
    started = run(LineageTracker(graph, plan_reads(graph, LATEST)))
    assert started == list(graph.open_leaves())


# -- follow mode: add_shards and forget_ended ---------------------------------------------


def test_add_shards_child_of_running_parent_waits_for_it() -> None:
    a = sid(0)
    graph = ShardGraph.from_shards([shard(a, None, 0, None)])
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    tracker.start(a)
    b, c = sid(10, 1), sid(10, 2)
    added = tracker.add_shards([shard(a, None, 0, 99), shard(c, a, 100), shard(b, a, 100)])
    assert added == [b, c]
    assert tracker.graph.is_closed(a)
    assert tracker.graph.shards[a].ending_sequence_number == seq(99)
    assert tracker.waiting == {b, c}
    assert tracker.ready() == []
    tracker.end(a)
    assert tracker.ready() == [(b, SHARD_TRIM_HORIZON), (c, SHARD_TRIM_HORIZON)]
    # Listing the same shards again adds nothing.
    assert tracker.add_shards([shard(a, None, 0, 99), shard(b, a, 100), shard(c, a, 100)]) == []
    assert tracker.waiting == {b, c}


def test_add_shards_parent_and_child_in_one_batch() -> None:
    a = sid(0)
    graph = ShardGraph.from_shards([shard(a, None, 0, None)])
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    tracker.start(a)
    tracker.end(a)
    b, c = sid(10), sid(20)
    assert tracker.add_shards([shard(c, b, 200), shard(b, a, 100, 199)]) == [b, c]
    assert tracker.ready() == [(b, SHARD_TRIM_HORIZON)]
    assert run(tracker) == [b, c]


def test_add_shards_new_roots_and_trimmed_parents() -> None:
    graph = ShardGraph.from_shards(chain(1))
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    orphan, new_root = sid(10), sid(11)
    added = tracker.add_shards([shard(orphan, sid(9), 100), shard(new_root, None, 0)])
    assert added == [orphan, new_root]
    assert {s for s, _ in tracker.ready()} == {sid(0), orphan, new_root}


def test_add_shards_after_latest_start_reads_new_children_of_unplanned_shards() -> None:
    # At the LATEST start ``closed`` was already closed with no listed child: not read.
    closed, leaf = sid(0), sid(1)
    graph = ShardGraph.from_shards([shard(closed, None, 0, 99), shard(leaf, None, 0)])
    tracker = LineageTracker(graph, plan_reads(graph, LATEST))
    assert tracker.waiting == {leaf}
    # Its child appears later: all of it is after the start, read it from TRIM_HORIZON.
    child = sid(10)
    assert tracker.add_shards([shard(child, closed, 100)]) == [child]
    assert (child, SHARD_TRIM_HORIZON) in tracker.ready()


def test_add_shards_after_checkpoint_reads_children_of_finished_shards() -> None:
    a, b = sid(0), sid(10)
    graph = ShardGraph.from_shards([shard(a, None, 0, 99)])
    tracker = LineageTracker(graph, plan_reads(graph, checkpoint(finished=[a])))
    assert tracker.is_done()
    assert tracker.add_shards([shard(b, a, 100)]) == [b]
    assert tracker.ready() == [(b, SHARD_TRIM_HORIZON)]


def test_add_shards_keeps_other_lineages_of_a_sequence_start_excluded() -> None:
    mine = chain(2)
    other = chain(2, first=50)
    graph = ShardGraph.from_shards([*mine, *other])
    tracker = LineageTracker(graph, plan_reads(graph, at_sequence(seq(150))))
    assert tracker.waiting == {mine[1].shard_id}
    other_child, other_grandchild = sid(60), sid(70)
    my_child = sid(61)
    added = tracker.add_shards(
        [
            shard(other_child, other[1].shard_id, 6000),
            shard(other_grandchild, other_child, 7000),
            shard(my_child, mine[1].shard_id, 6100),
        ]
    )
    assert added == [my_child]
    assert {other_child, other_grandchild} <= tracker.excluded
    # Sibling of the held shard (split seen late): another lineage, excluded as well.
    sibling = sid(1, 0xABC)
    assert tracker.add_shards([shard(sibling, mine[0].shard_id, 100)]) == []
    assert sibling in tracker.excluded


def test_add_shards_ignores_a_late_parent_of_known_shards() -> None:
    late_parent, child = sid(0), sid(10)
    graph = ShardGraph.from_shards([shard(child, late_parent, 100)])
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    tracker.start(child)
    assert tracker.add_shards([shard(late_parent, None, 0, 99)]) == []
    assert tracker.state_of(late_parent) == "unplanned"
    assert tracker.graph.parent(child) == late_parent
    # A new sibling under that late parent is still read.
    sibling = sid(10, 5)
    assert tracker.add_shards([shard(sibling, late_parent, 100)]) == [sibling]
    assert (sibling, SHARD_TRIM_HORIZON) in tracker.ready()


def test_add_shards_complete_listing_drops_trimmed_shards() -> None:
    shards = chain(4)
    ids = [s.shard_id for s in shards]
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    tracker.start(ids[0])
    tracker.end(ids[0])
    tracker.start(ids[1])
    # ids[0] (finished) and ids[1] (running) are no longer listed.
    assert tracker.add_shards(shards[2:], complete=True) == []
    assert ids[0] not in tracker.graph
    assert ids[0] not in tracker.ended
    assert ids[1] in tracker.graph  # running shards stay
    assert tracker.graph.parent(ids[2]) == ids[1]
    tracker.end(ids[1])
    assert run(tracker) == ids[2:]
    # A partial listing (complete=False) drops nothing.
    assert tracker.add_shards(shards[3:]) == []
    assert set(tracker.graph) == set(ids[1:])


def test_forget_ended_keeps_what_later_listings_need() -> None:
    root, left, right = sid(0), sid(10, 1), sid(10, 2)
    shards = [shard(root, None, 0, 99), shard(left, root, 100), shard(right, root, 100)]
    graph = ShardGraph.from_shards(shards)
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    tracker.start(root)
    tracker.end(root)
    tracker.forget_ended()  # children still waiting: root is kept
    assert tracker.ended == {root}
    tracker.start(left)
    tracker.forget_ended()  # right still waiting
    assert tracker.ended == {root}
    tracker.start(right)
    tracker.forget_ended()
    assert tracker.ended == frozenset()
    assert tracker.forgotten == {root}
    assert root not in tracker.graph
    assert tracker.state_of(root) == "forgotten"
    # Listed again: recognised, not re-read, not put back into the graph.
    assert tracker.add_shards(shards) == []
    assert root not in tracker.graph
    # A late sibling of left/right still becomes waiting and is ready (no blocker).
    late = sid(10, 3)
    assert tracker.add_shards([shard(late, root, 100)]) == [late]
    assert (late, SHARD_TRIM_HORIZON) in tracker.ready()
    # Finished leaves without children are kept (a checkpoint must still name them).
    tracker.end(left)
    tracker.forget_ended()
    assert left in tracker.ended
    # Complete listing without root: its id can go.
    tracker.add_shards(
        [shard(left, root, 100, 150), shard(right, root, 100), shard(late, root, 100)],
        complete=True,
    )
    assert tracker.forgotten == frozenset()


def test_forget_ended_compacts_excluded_shards() -> None:
    mine, other = chain(2), chain(3, first=50)
    graph = ShardGraph.from_shards([*mine, *other])
    tracker = LineageTracker(graph, plan_reads(graph, at_sequence(seq(150))))
    tracker.forget_ended()
    assert set(tracker.graph) == {mine[1].shard_id}
    assert tracker.excluded == {mine[0].shard_id} | {s.shard_id for s in other}
    # Still recognised as excluded when listed again, and their children stay excluded.
    child = sid(80)
    assert tracker.add_shards([*mine, *other, shard(child, other[2].shard_id, 8000)]) == []
    assert child in tracker.excluded
    assert set(tracker.graph) == {mine[1].shard_id, child}


def test_follow_mode_memory_stays_bounded() -> None:
    """Simulate days of rollovers in two partitions, listing only the retained window."""
    window = 12  # shards per partition the service still lists (about 2 days of rollovers)
    partitions: list[list[Shard]] = [[shard(sid(0, p), None, 0)] for p in range(2)]

    def listing() -> list[Shard]:
        return [s for p in partitions for s in p[-window:]]

    graph = ShardGraph.from_shards(listing())
    tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
    started: list[str] = []
    for generation in range(1, 400):
        for p, lineage in enumerate(partitions):
            last = lineage[-1]
            start = int(last.starting_sequence_number or 0) - SEQ_BASE
            lineage[-1] = shard(last.shard_id, last.parent_shard_id, start, start + 9)
            lineage.append(shard(sid(generation * 10, p), last.shard_id, start + 10))
        tracker.add_shards(listing(), complete=True)
        for shard_id, _ in tracker.ready():
            tracker.start(shard_id)
            started.append(shard_id)
        for shard_id in sorted(tracker.running):
            if tracker.graph.is_closed(shard_id):
                tracker.end(shard_id)
        tracker.forget_ended()
        # Memory is bounded by what the service lists, not by the stream's age.
        assert len(tracker.graph) <= 2 * window
        assert len(tracker.forgotten) + len(tracker.ended) <= 2 * window
        assert len(tracker.waiting) + len(tracker.running) <= 4
    for shard_id, _ in tracker.ready():  # the newest shards, never closed
        tracker.start(shard_id)
        started.append(shard_id)
    everything = [s.shard_id for p in partitions for s in p]
    assert sorted(started) == sorted(everything)  # every shard read exactly once


def test_checkpoint_resume_covers_exactly_the_remaining_work() -> None:
    shards = _forest_for_orders()
    graph = ShardGraph.from_shards(shards)
    rng = random.Random(7)
    for _ in range(30):
        tracker = LineageTracker(graph, plan_reads(graph, TRIM_HORIZON))
        positions: dict[str, str] = {}
        for _step in range(rng.randrange(30)):
            ready = tracker.ready()
            if ready and rng.random() < 0.6:
                shard_id = ready[rng.randrange(len(ready))][0]
                tracker.start(shard_id)
                if rng.random() < 0.5:
                    start = graph.shards[shard_id].starting_sequence_number
                    positions[shard_id] = str(int(start or "0") + 1)
            elif tracker.running:
                done = sorted(tracker.running)[rng.randrange(len(tracker.running))]
                tracker.end(done)
                positions.pop(done, None)
            if rng.random() < 0.3:
                tracker.forget_ended()
        pending = {s: tracker.start_of(s) for s in tracker.waiting | tracker.running}
        for shard_id in positions:
            pending.pop(shard_id)
        cp = checkpoint(positions=positions, finished=tracker.ended, pending=pending)
        plan = plan_reads(graph, cp)
        assert set(plan.starts) == set(tracker.waiting | tracker.running)
        for shard_id, seq_ in positions.items():
            assert plan.starts[shard_id] == ShardStart("AFTER_SEQUENCE_NUMBER", seq_)
        resumed = LineageTracker(graph, plan)
        run(resumed, lambda r: rng.randrange(len(r)), lambda r: rng.randrange(len(r)))


def test_read_plan_defaults() -> None:
    plan = ReadPlan({sid(0): SHARD_TRIM_HORIZON})
    assert plan.missing_checkpoint_shards == frozenset()
    assert plan.excluded == frozenset()
    assert plan.shard_ids == (sid(0),)


def _ids(shards: Sequence[Shard]) -> list[str]:
    return [s.shard_id for s in shards]


def test_helpers_make_realistic_ids_and_sequence_numbers() -> None:
    assert sid(0) == f"shardId-{BASE_MS:020d}-{0x9E3779B1:08x}"
    assert len(sid(0).split("-")[1]) == 20
    assert len(seq(0)) >= 21
    assert len(set(_ids(_forest_for_orders()))) == len(_forest_for_orders())
