"""Unit tests of lease planning (ddbstreams.coordination._planning), in virtual time.

``now`` values are plain floats on the observer's monotonic clock; ``FAILOVER`` is 10 s.
:class:`Table` models the lease table's conditional writes and :func:`play_round` lets every
worker plan on one snapshot and applies the plans; the property tests reuse both.
"""

from __future__ import annotations

import enum
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import pytest

from ddbstreams.coordination._lease import Lease
from ddbstreams.coordination._planning import (
    LeasePlan,
    Liveness,
    active_leases,
    is_ready,
    lease_order_key,
    plan_leases,
)

FAILOVER = 10.0
BASE_MS = 1_700_000_000_000
JAVA = "java-kcl-worker"


def sid(n: int) -> str:
    """A realistic shard id created ``n`` seconds after BASE_MS (so ``sid`` order = age)."""
    return f"shardId-{BASE_MS + n * 1000:020d}-{(n * 0x9E3779B1) & 0xFFFFFFFF:08x}"


def lease(
    key: str,
    owner: str | None = None,
    counter: int = 1,
    *,
    checkpoint: str = "TRIM_HORIZON",
    parents: Iterable[str] = (),
) -> Lease:
    return Lease(key, owner, counter, checkpoint, parent_shard_ids=frozenset(parents))


class State(enum.Enum):
    RUNNING = "RUNNING"
    STOPPING = "STOPPING"


@dataclass(frozen=True, slots=True)
class Worker:
    """A workers-table item as far as Liveness reads it (a WorkerView)."""

    worker_id: str
    heartbeat: int
    state: State = State.RUNNING


class Table:
    """The lease table: takes conditional on the counter, releases on owner and counter."""

    def __init__(self, leases: Iterable[Lease] = ()) -> None:
        self.leases = {item.key: item for item in leases}

    def __repr__(self) -> str:
        rows = (
            f"{item.key[-8:]}:{item.owner}/{item.counter}/{item.checkpoint[:5]}"
            + "".join(f"<{parent[-8:]}" for parent in sorted(item.parent_shard_ids))
            for item in self.snapshot()
        )
        return f"Table({', '.join(rows)})"

    def snapshot(self) -> list[Lease]:
        return sorted(self.leases.values(), key=lambda item: item.key)

    def take(self, seen: Lease, owner: str) -> Lease | None:
        current = self.leases.get(seen.key)
        if current is None or current.counter != seen.counter:
            return None  # LeaseLostError
        taken = replace(current, owner=owner, counter=current.counter + 1)
        self.leases[seen.key] = taken
        return taken

    def release(self, key: str, owner: str, counter: int) -> bool:
        current = self.leases.get(key)
        if current is None or current.owner != owner or current.counter != counter:
            return False
        self.leases[key] = replace(current, owner=None, counter=counter + 1)
        return True

    def bump(self, key: str) -> None:
        """A renewal or checkpoint by the current owner."""
        current = self.leases[key]
        self.leases[key] = replace(current, counter=current.counter + 1)

    def counts(self, workers: Iterable[str]) -> dict[str, int]:
        owners = Counter(item.owner for item in active_leases(self.leases.values()))
        return {worker: owners[worker] for worker in workers}


def held_of(table: Table, worker: str) -> dict[str, int]:
    return {item.key: item.counter for item in table.leases.values() if item.owner == worker}


def play_round(
    table: Table,
    held: Mapping[str, dict[str, int]],
    *,
    alive: frozenset[str],
    expired: frozenset[str] = frozenset(),
    foreign: frozenset[str] = frozenset(),
    max_leases: int | None = None,
) -> dict[str, LeasePlan]:
    """Every worker of ``held`` plans on one snapshot; then the plans are applied."""
    snapshot = table.snapshot()
    plans = {
        worker: plan_leases(
            snapshot,
            me=worker,
            held=mine,
            alive=alive,
            expired=expired,
            foreign=foreign,
            max_leases=max_leases,
        )
        for worker, mine in held.items()
    }
    for worker, plan in plans.items():
        mine = held[worker]
        for key in plan.lost:
            del mine[key]
        for seen in plan.take:
            taken = table.take(seen, worker)
            if taken is not None:
                mine[taken.key] = taken.counter
        for key in plan.release:
            if table.release(key, worker, mine[key]):
                del mine[key]
    return plans


def quiet(plans: Mapping[str, LeasePlan]) -> bool:
    return all(not (p.take or p.release or p.lost) for p in plans.values())


def keys(n: int, start: int = 0) -> list[str]:
    return [sid(i) for i in range(start, start + n)]


# -- Liveness: known workers -----------------------------------------------------------------


def test_known_worker_expires_only_after_its_heartbeat_is_unchanged_for_failover() -> None:
    live = Liveness(FAILOVER)
    held = lease(sid(1), "a", counter=5)
    live.observe_workers([Worker("a", 1)], now=0.0)
    live.observe_leases([held], now=0.0)
    assert not live.expired(held, 9.99)
    live.observe_workers([Worker("a", 2)], now=6.0)  # heartbeat moved: timed from 6 s
    assert not live.expired(held, 15.99)
    assert live.alive(15.99) == {"a"}
    live.observe_workers([Worker("a", 2)], now=15.0)  # unchanged: still timed from 6 s
    assert live.expired(held, 16.0)
    assert live.alive(16.0) == frozenset()
    # The lease counter does not matter for a known worker: our workers never renew it.
    live.observe_leases([held], now=16.0)
    assert live.expired(held, 16.0)
    assert live.expired_keys([held, lease(sid(2))], 16.0) == {sid(1)}


def test_a_worker_seen_first_counts_as_alive_until_failover_passes_without_change() -> None:
    live = Liveness(FAILOVER)
    live.observe_workers([Worker("a", 41)], now=100.0)  # heartbeat 41 may be hours old
    held = lease(sid(1), "a")
    assert live.alive(100.0) == {"a"}
    assert live.alive(109.9) == {"a"}
    assert not live.expired(held, 109.9)
    assert live.alive(110.0) == frozenset()
    assert live.expired(held, 110.0)


def test_stopping_worker_is_not_alive_but_keeps_its_leases_while_its_heartbeat_moves() -> None:
    live = Liveness(FAILOVER)
    held = lease(sid(1), "b")
    live.observe_workers([Worker("a", 1), Worker("b", 1, State.STOPPING)], now=0.0)
    assert live.alive(0.0) == {"a"}
    live.observe_workers([Worker("a", 2), Worker("b", 2, State.STOPPING)], now=8.0)
    assert live.alive(17.0) == {"a"}
    assert not live.expired(held, 17.0)
    assert live.expired(held, 18.0)  # stopping and silent: like any dead worker
    assert live.known_workers == {"a", "b"}
    assert live.foreign_owners() == frozenset()


def test_unowned_lease_is_free_never_expired() -> None:
    live = Liveness(FAILOVER)
    free = lease(sid(1))
    live.observe_leases([free], now=0.0)
    assert not live.expired(free, 1000.0)


@pytest.mark.parametrize("failover", [0.0, -1.0, float("nan")])
def test_failover_time_must_be_positive(failover: float) -> None:
    with pytest.raises(ValueError, match="failover_time"):
        Liveness(failover)


# -- Liveness: unknown and foreign owners ----------------------------------------------------


def test_unknown_owner_expires_when_the_lease_counter_is_unchanged_for_failover() -> None:
    # A stopped Java KCL worker: not in the workers table, its counters no longer move.
    live = Liveness(FAILOVER)
    stale = lease(sid(1), JAVA, counter=7)
    assert not live.expired(stale, 0.0)  # never observed: cannot tell yet
    live.observe_workers([Worker("a", 1)], now=0.0)
    live.observe_leases([stale], now=0.0)
    assert not live.expired(stale, 9.99)
    live.observe_leases([stale], now=5.0)
    assert live.expired(stale, 10.0)
    assert live.foreign_owners() == frozenset()  # never seen moving
    # Another counter than observed: not expired (it just changed as far as we know).
    assert not live.expired(replace(stale, counter=8), 10.0)


def test_a_counter_change_restarts_the_unknown_owners_clock() -> None:
    live = Liveness(FAILOVER)
    live.observe_leases([lease(sid(1), JAVA, counter=7)], now=0.0)
    moved = lease(sid(1), JAVA, counter=8)
    live.observe_leases([moved], now=4.0)
    assert not live.expired(moved, 13.99)
    live.observe_leases([moved], now=14.0)
    assert live.expired(moved, 14.0)


def test_foreign_owner_is_detected_and_its_leases_are_never_taken() -> None:
    live = Liveness(FAILOVER)
    table = Table([lease(sid(1), JAVA, counter=3), lease(sid(2), JAVA, counter=9), lease(sid(3))])
    held: dict[str, dict[str, int]] = {"a": {}}
    for step in range(40):  # the Java worker renews every 3 s, we scan every second
        now = float(step)
        if step % 3 == 0:
            table.bump(sid(1))
            table.bump(sid(2))
        live.observe_workers([Worker("a", step)], now)
        live.observe_leases(table.snapshot(), now)
        if step >= 3:
            assert live.foreign_owners() == {JAVA}
        plans = play_round(
            table,
            held,
            alive=live.alive(now),
            expired=live.expired_keys(table.snapshot(), now),
            foreign=live.foreign_owners(),
        )
        assert all(lease.key == sid(3) for lease in plans["a"].take)
    assert held["a"] == {sid(3): 2}
    assert table.leases[sid(1)].owner == table.leases[sid(2)].owner == JAVA


def test_foreign_owner_that_stops_renewing_expires_and_is_taken_over() -> None:
    live = Liveness(FAILOVER)
    live.observe_workers([Worker("a", 1)], now=0.0)
    live.observe_leases([lease(sid(1), JAVA, counter=3)], now=0.0)
    last = lease(sid(1), JAVA, counter=4)
    live.observe_leases([last], now=2.0)
    assert live.foreign_owners() == {JAVA}
    live.observe_leases([last], now=11.9)
    assert live.foreign_owners() == {JAVA}
    assert not live.expired(last, 11.9)
    live.observe_leases([last], now=12.0)
    assert live.foreign_owners() == frozenset()
    assert live.expired(last, 12.0)
    plan = plan_leases([last], me="a", held={}, alive=frozenset({"a"}), expired=frozenset({sid(1)}))
    assert plan.take == (last,)


def test_an_owner_in_the_workers_table_is_never_foreign() -> None:
    live = Liveness(FAILOVER)
    live.observe_workers([Worker("a", 1), Worker("b", 1)], now=0.0)
    live.observe_leases([lease(sid(1), "a", counter=1)], now=0.0)
    live.observe_leases([lease(sid(1), "b", counter=2)], now=1.0)  # b took it
    assert live.foreign_owners() == frozenset()
    live.observe_workers([Worker("a", 1)], now=2.0)  # b's item is gone: b is unknown now
    assert live.foreign_owners() == {"b"}  # it moved 1 s ago and is not a known worker


def test_expired_lease_of_a_foreign_owner_is_not_free() -> None:
    leases = [lease(sid(1), JAVA), lease(sid(2))]
    plan = plan_leases(
        leases,
        me="a",
        held={},
        alive=frozenset({"a"}),
        expired=frozenset({sid(1)}),
        foreign=frozenset({JAVA}),
    )
    assert [item.key for item in plan.take] == [sid(2)]


# -- readiness -------------------------------------------------------------------------------


def test_readiness_follows_parent_leases() -> None:
    parent = lease(sid(1), "a")
    child = lease(sid(2), parents=[sid(1)])
    orphan = lease(sid(3), parents=[sid(0)])  # parent lease deleted or never created
    done = lease(sid(4), checkpoint="SHARD_END")
    by_key = {item.key: item for item in (parent, child, orphan, done)}
    assert not is_ready(child, by_key)
    assert is_ready(orphan, by_key)
    assert is_ready(child, {**by_key, sid(1): replace(parent, checkpoint="SHARD_END")})
    assert active_leases(by_key.values()) == (parent, orphan)


def test_child_is_not_taken_while_its_parent_lease_is_unfinished() -> None:
    parent = lease(sid(1), "b", checkpoint="49000000000000000000001")
    child = lease(sid(2), parents=[sid(1)])
    alive = frozenset({"a", "b"})
    plan = plan_leases([parent, child], me="a", held={}, alive=alive, expired=frozenset())
    assert plan.take == ()
    finished = replace(parent, owner=None, checkpoint="SHARD_END")
    plan = plan_leases([finished, child], me="a", held={}, alive=alive, expired=frozenset())
    assert plan.take == (child,)


def test_finished_leases_are_neither_taken_nor_counted() -> None:
    done = [lease(key, checkpoint="SHARD_END") for key in keys(5)]
    b_done = [lease(key, "b", checkpoint="SHARD_END") for key in keys(5, start=5)]
    live = [lease(key) for key in keys(2, start=10)]
    plan = plan_leases(
        done + b_done + live, me="a", held={}, alive=frozenset({"a", "b"}), expired=frozenset()
    )
    assert [item.key for item in plan.take] == [sid(10)]  # 2 active over 2 workers: 1 each


# -- water-fill and release ------------------------------------------------------------------


def test_water_fill_goes_to_the_smallest_count_oldest_lease_first() -> None:
    # 8 active leases, 3 workers: hi 3, lo 2. Counts a=2, b=0, c=1; five free leases.
    owned = [lease(sid(10), "a"), lease(sid(11), "a"), lease(sid(12), "c")]
    free = [lease(key) for key in reversed(keys(5))]  # order of the scan does not matter
    alive = frozenset({"a", "b", "c"})
    takes = {
        me: [
            item.key
            for item in plan_leases(
                owned + free,
                me=me,
                held={item.key: 1 for item in owned if item.owner == me},
                alive=alive,
                expired=frozenset(),
            ).take
        ]
        for me in sorted(alive)
    }
    # sid(0) -> b (0); sid(1) -> b (1, tie with c, smaller id); sid(2) -> c (1);
    # sid(3) -> a (2, tie of all, smallest id); sid(4) -> b (2, a is full).
    assert takes == {"a": [sid(3)], "b": [sid(0), sid(1), sid(4)], "c": [sid(2)]}


def test_scale_out_1_to_4_with_32_leases_ends_with_8_each() -> None:
    table = Table(lease(key, "a") for key in keys(32))
    held = {"a": held_of(table, "a"), "b": {}, "c": {}, "d": {}}
    alive = frozenset(held)
    first = play_round(table, held, alive=alive)
    # hi = lo = 8: a hands off the 24 newest; nobody else has anything to take yet.
    assert first["a"].release == tuple(reversed(keys(24, start=8)))
    assert all(first[w].take == () for w in "bcd")
    second = play_round(table, held, alive=alive)
    assert [item.key for item in second["b"].take] == keys(24, start=8)[0::3]
    assert table.counts(alive) == {"a": 8, "b": 8, "c": 8, "d": 8}
    assert quiet(play_round(table, held, alive=alive))


def test_scale_out_1_to_4_with_33_leases_ends_with_9_8_8_8() -> None:
    table = Table(lease(key, "a") for key in keys(33))
    held = {"a": held_of(table, "a"), "b": {}, "c": {}, "d": {}}
    alive = frozenset(held)
    play_round(table, held, alive=alive)
    play_round(table, held, alive=alive)
    assert sorted(table.counts(alive).values()) == [8, 8, 8, 9]
    assert table.counts(alive)["a"] == 9
    assert quiet(play_round(table, held, alive=alive))


def test_scale_in_4_to_1_gracefully_the_last_worker_takes_everything() -> None:
    table = Table(lease(key, "abcd"[i % 4]) for i, key in enumerate(keys(32)))
    held = {w: held_of(table, w) for w in "abcd"}
    for worker in "bcd":  # each stops: hands off everything it holds
        for key, counter in held.pop(worker).items():
            assert table.release(key, worker, counter)
    plans = play_round(table, held, alive=frozenset({"a"}))
    assert len(plans["a"].take) == 24
    assert table.counts("a") == {"a": 32}
    assert quiet(play_round(table, held, alive=frozenset({"a"})))


def test_scale_in_4_to_1_by_crashes_the_leases_expire_after_failover() -> None:
    table = Table(lease(key, "abcd"[i % 4]) for i, key in enumerate(keys(32)))
    held = {"a": held_of(table, "a")}
    live = Liveness(FAILOVER)
    for step in range(12):  # b, c and d crashed at 0 s; a heartbeats every second
        now = float(step)
        live.observe_workers([Worker("a", step)] + [Worker(w, 1) for w in "bcd"], now)
        live.observe_leases(table.snapshot(), now)
        plans = play_round(
            table,
            held,
            alive=live.alive(now),
            expired=live.expired_keys(table.snapshot(), now),
            foreign=live.foreign_owners(),
        )
        assert (len(plans["a"].take) == 24) == (now == FAILOVER), now
    assert table.counts("a") == {"a": 32}


def test_a_worker_far_above_hi_comes_down_to_hi() -> None:
    # 10 leases, 4 workers: hi 3, lo 2. Releasing only the deficit (6) would leave a at 4
    # for ever; a releases down to hi instead, and the others fill up from the bottom.
    table = Table(lease(key, "a") for key in keys(10))
    held = {"a": held_of(table, "a"), "b": {}, "c": {}, "d": {}}
    alive = frozenset(held)
    first = play_round(table, held, alive=alive)
    assert len(first["a"].release) == 7
    play_round(table, held, alive=alive)
    assert table.counts(alive) == {"a": 3, "b": 3, "c": 2, "d": 2}
    assert quiet(play_round(table, held, alive=alive))


def test_max_leases_caps_every_worker_and_leaves_the_rest_free() -> None:
    table = Table([lease(key, "a") for key in keys(8)] + [lease(key) for key in keys(4, start=8)])
    held = {"a": held_of(table, "a"), "b": {}}
    alive = frozenset(held)
    first = play_round(table, held, alive=alive, max_leases=3)
    assert first["a"].release == tuple(reversed(keys(5, start=3)))
    assert [item.key for item in first["b"].take] == keys(3, start=8)
    assert quiet(play_round(table, held, alive=alive, max_leases=3))
    assert table.counts(alive) == {"a": 3, "b": 3}
    assert sum(item.owner is None for item in table.leases.values()) == 6
    with pytest.raises(ValueError, match="max_leases"):
        plan_leases([], me="a", held={}, alive=alive, expired=frozenset(), max_leases=-1)


def test_release_gives_up_the_newest_held_leases_and_never_lost_ones() -> None:
    owned = [lease(key, "a", counter=2) for key in keys(4)]
    held = {key: 2 for key in keys(4)}
    held[sid(3)] = 1  # the table's counter moved on: lost, not releasable
    plan = plan_leases(owned, me="a", held=held, alive=frozenset("ab"), expired=frozenset())
    assert plan.lost == (sid(3),)
    assert plan.release == (sid(2), sid(1))


def test_stopping_workers_do_not_count_for_balance_and_keep_their_leases() -> None:
    # b is STOPPING (not alive) with 4 leases whose heartbeat still moves (not expired).
    leases = [lease(key, "b") for key in keys(4)] + [lease(key) for key in keys(4, start=4)]
    plans = {
        me: plan_leases(leases, me=me, held={}, alive=frozenset("ac"), expired=frozenset())
        for me in "ac"
    }
    # Only the 4 free leases are balanced, over a and c.
    assert [item.key for item in plans["a"].take] == [sid(4), sid(6)]
    assert [item.key for item in plans["c"].take] == [sid(5), sid(7)]


def test_plans_of_workers_with_the_same_inputs_are_disjoint() -> None:
    leases = [lease(key) for key in keys(7)] + [lease(key, "dead") for key in keys(3, start=7)]
    alive = frozenset({"w1", "w2", "w3"})
    expired = frozenset(keys(3, start=7))
    taken = [
        item.key
        for me in alive
        for item in plan_leases(leases, me=me, held={}, alive=alive, expired=expired).take
    ]
    assert sorted(taken) == sorted(item.key for item in leases)


# -- lost, reclaim, leader -------------------------------------------------------------------


def test_lost_names_held_leases_with_another_owner_another_counter_or_gone() -> None:
    leases = [lease(sid(1), "a", 3), lease(sid(2), "b", 4), lease(sid(3), "a", 6)]
    held = {sid(1): 3, sid(2): 3, sid(3): 5, sid(4): 1}
    plan = plan_leases(leases, me="a", held=held, alive=frozenset("ab"), expired=frozenset())
    assert plan.lost == (sid(2), sid(3), sid(4))


def test_a_lease_the_table_gives_me_but_i_do_not_hold_is_taken_back() -> None:
    leases = [lease(sid(1), "a", 3), lease(sid(2), "a", 3)]
    plan = plan_leases(leases, me="a", held={sid(1): 3}, alive=frozenset("a"), expired=frozenset())
    assert plan.take == (leases[1],)
    assert plan.release == plan.lost == ()


def test_my_own_held_lease_is_not_taken_again_even_when_expired() -> None:
    mine = lease(sid(1), "a", 3)
    plan = plan_leases(
        [mine], me="a", held={sid(1): 3}, alive=frozenset("a"), expired=frozenset({sid(1)})
    )
    assert plan == LeasePlan(take=(), release=(), lost=(), leader=True)


@pytest.mark.parametrize(
    ("me", "alive", "leader"),
    [
        ("a", frozenset(), True),
        ("b", frozenset({"a", "c"}), False),
        ("b", frozenset({"c"}), True),  # "a" is dead: not in alive
        ("a", frozenset({"b"}), True),  # me counts even if not (yet) alive itself
    ],
)
def test_leader_is_the_smallest_live_worker_id(
    me: str, alive: frozenset[str], leader: bool
) -> None:
    assert plan_leases([], me=me, held={}, alive=alive, expired=frozenset()).leader is leader


def test_lease_order_key_uses_creation_time_then_key() -> None:
    ordered: Sequence[str] = ["other-b", sid(1), sid(2)]  # no time: 0, first
    assert sorted([sid(2), "other-b", sid(1)], key=lease_order_key) == ordered
