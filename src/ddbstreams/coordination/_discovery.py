"""Which leases a group's leader creates and deletes (pure: no I/O).

A group's lease table covers the stream with a *frontier*: every shard still to be read
has a lease, and a shard read to its end keeps its lease (checkpoint ``SHARD_END``) until
its children's leases exist and have moved past their start. So, given the stream's listing
and the table:

- a shard is **covered** when it or one of its descendants has a lease: it was read, or is
  being read, and must not get a lease again (that would read it twice);
- a shard without a lease is **due** a lease when it is not covered and either has no
  parent in the listing (a root: a new stream's first shards, or one whose parent was
  trimmed) or its parent's lease is finished (a child that the parent's owner did not
  create, because it crashed or its children were not visible yet);
- a child of a parent whose lease is not finished is left to that parent's owner, which
  creates it when the parent ends (conditional puts make a second creation harmless);
- a finished lease is **deletable** once its children are known and every child lease has
  moved past its start (or is gone, deleted the same way): the children no longer need the
  parent's lease to know that it ended.

For a group starting from ``LATEST``, the first leases are the open shards, at ``LATEST``;
from ``TRIM_HORIZON``, the roots, at ``TRIM_HORIZON`` (their descendants follow as they end).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ddbstreams.coordination._lease import (
    LATEST_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
    Lease,
)
from ddbstreams.model._types import Shard

__all__ = ["NewLease", "deletable_leases", "leases_to_create"]

_AT_START = frozenset({TRIM_HORIZON_CHECKPOINT, LATEST_CHECKPOINT})


@dataclass(frozen=True, slots=True)
class NewLease:
    """A lease to create: unowned, at ``checkpoint``."""

    shard_id: str
    checkpoint: str
    parent_shard_id: str | None


def leases_to_create(
    shards: Sequence[Shard], leases: Mapping[str, Lease], *, from_latest: bool
) -> list[NewLease]:
    """The leases the leader creates for ``shards`` (a full listing) given the table's
    ``leases`` (by key). With no lease at all, the group's first leases (``from_latest``:
    the open shards at ``LATEST``); otherwise the due shards (module docstring), at
    ``TRIM_HORIZON``. Parents before children; creation order by shard id time."""
    listed = {shard.shard_id: shard for shard in shards}
    if not leases:
        if from_latest:
            return [
                NewLease(shard.shard_id, LATEST_CHECKPOINT, shard.parent_shard_id)
                for shard in shards
                if shard.is_open
            ]
        return [
            NewLease(shard.shard_id, TRIM_HORIZON_CHECKPOINT, shard.parent_shard_id)
            for shard in shards
            if shard.parent_shard_id not in listed
        ]
    covered = _covered(listed, leases)
    due: list[NewLease] = []
    for shard in shards:
        if shard.shard_id in covered:
            continue
        parent = shard.parent_shard_id
        parent_lease = leases.get(parent) if parent is not None else None
        if parent not in listed or (parent_lease is not None and parent_lease.finished):
            due.append(NewLease(shard.shard_id, TRIM_HORIZON_CHECKPOINT, parent))
    return due


def deletable_leases(leases: Mapping[str, Lease]) -> list[str]:
    """Keys of finished leases that nothing needs any more (module docstring)."""
    deletable = []
    for key, lease in leases.items():
        if not lease.finished or not lease.child_shard_ids:
            continue
        children = (leases.get(child) for child in lease.child_shard_ids)
        if all(child is None or child.checkpoint not in _AT_START for child in children):
            deletable.append(key)
    return sorted(deletable)


def _covered(listed: Mapping[str, Shard], leases: Iterable[str]) -> set[str]:
    """Shards of ``listed`` that have a lease or a descendant with one."""
    covered: set[str] = set()
    for key in leases:
        shard_id: str | None = key
        while shard_id is not None and shard_id not in covered:
            covered.add(shard_id)
            shard = listed.get(shard_id)
            shard_id = shard.parent_shard_id if shard is not None else None
    return covered
