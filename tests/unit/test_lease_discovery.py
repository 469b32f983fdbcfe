"""Which leases a group's leader creates and deletes (coordination/_discovery.py)."""

from __future__ import annotations

from ddbstreams.coordination._discovery import NewLease, deletable_leases, leases_to_create
from ddbstreams.coordination._lease import Lease
from ddbstreams.model._position import ShardStart
from ddbstreams.model._types import Shard


def shard(shard_id: str, parent: str | None = None, *, closed: bool = True) -> Shard:
    return Shard(shard_id, parent, "1", "9" if closed else None)


def lease(key: str, checkpoint: str = "TRIM_HORIZON", *, children: tuple[str, ...] = ()) -> Lease:
    return Lease(key, None, 1, checkpoint, child_shard_ids=frozenset(children))


# a -> b -> d (open); a -> c (open, a split); r (open, a root of its own)
SHARDS = [
    shard("a"),
    shard("b", "a"),
    shard("c", "a", closed=False),
    shard("d", "b", closed=False),
    shard("r", "gone", closed=False),  # its parent was trimmed
]


def test_a_new_group_from_trim_horizon_starts_at_the_roots() -> None:
    assert leases_to_create(SHARDS, {}, from_latest=False) == [
        NewLease("a", "TRIM_HORIZON", None),
        NewLease("r", "TRIM_HORIZON", "gone"),
    ]


def test_a_new_group_from_latest_starts_at_the_open_shards() -> None:
    assert [new.shard_id for new in leases_to_create(SHARDS, {}, from_latest=True)] == [
        "c",
        "d",
        "r",
    ]
    assert all(new.checkpoint == "LATEST" for new in leases_to_create(SHARDS, {}, from_latest=True))


def test_shards_covered_by_a_descendant_lease_are_never_created_again() -> None:
    # a and b were read and their leases deleted; d and c and r are being read.
    leases = {key: lease(key, "5") for key in ("c", "d", "r")}
    assert leases_to_create(SHARDS, leases, from_latest=False) == []


def test_children_are_left_to_the_owner_of_an_unfinished_parent() -> None:
    leases = {"a": lease("a", "3"), "r": lease("r")}
    assert leases_to_create(SHARDS, leases, from_latest=False) == []


def test_children_of_a_finished_parent_that_were_missed_are_created() -> None:
    leases = {"a": lease("a", "SHARD_END"), "r": lease("r")}
    assert leases_to_create(SHARDS, leases, from_latest=False) == [
        NewLease("b", "TRIM_HORIZON", "a"),
        NewLease("c", "TRIM_HORIZON", "a"),
    ]


def test_a_new_root_is_created_beside_existing_leases() -> None:
    leases = {"d": lease("d", "5"), "c": lease("c", "5")}
    assert leases_to_create(SHARDS, leases, from_latest=False) == [
        NewLease("r", "TRIM_HORIZON", "gone")
    ]


def test_finished_leases_are_deleted_once_every_child_has_moved_on() -> None:
    leases = {
        "a": lease("a", "SHARD_END", children=("b", "c")),
        "b": lease("b", "SHARD_END", children=("d",)),
        "c": lease("c", "7"),
        "d": lease("d", "TRIM_HORIZON"),
        "z": lease("z", "SHARD_END"),  # children unknown (a disabled stream): kept
    }
    assert deletable_leases(leases) == ["a"]
    leases["d"] = lease("d", "8")
    assert deletable_leases(leases) == ["a", "b"]
    del leases["b"]  # deleted already: a child that is gone has moved on
    assert deletable_leases(leases) == ["a"]


def test_a_latest_lease_that_changed_hands_unprocessed_is_read_from_its_creation() -> None:
    from datetime import UTC, datetime

    made = 1_796_000_000.0
    first = Lease("s", "w1", 1, "LATEST", checkpoint_time=made)
    assert first.start() == ShardStart("LATEST")  # the first owner: LATEST
    again = Lease("s", "w2", 3, "LATEST", checkpoint_time=made)  # taken, released, taken
    assert again.start() == ShardStart("TRIM_HORIZON", not_before=datetime.fromtimestamp(made, UTC))
    kcl = Lease("s", "w2", 3, "LATEST")  # written by the KCL: no time known
    assert kcl.start() == ShardStart("LATEST")
