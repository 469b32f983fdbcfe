"""Helpers for tests over many shards: a key on each shard, writes on all, complete delivery."""

from __future__ import annotations

from collections import defaultdict

from ddbstreams import Record
from ddbstreams.testing import SimulatedClock, StreamSimulator


def key_per_shard(sim: StreamSimulator) -> dict[str, str]:
    """One partition key that lands on each open shard."""
    return {shard_id: keys[0] for shard_id, keys in keys_per_shard(sim, 1).items()}


def keys_per_shard(sim: StreamSimulator, count: int) -> dict[str, list[str]]:
    """``count`` partition keys that land on each open shard."""
    keys: dict[str, list[str]] = {shard_id: [] for shard_id in sim.open_shard_ids()}
    missing = len(keys) * count
    n = 0
    while missing:
        key = f"item-{n}"
        on_shard = keys[sim.shard_for({"pk": key})]
        if len(on_shard) < count:
            on_shard.append(key)
            missing -= 1
        n += 1
    return keys


async def write_on_every_shard(
    sim: StreamSimulator, clock: SimulatedClock, *, duration: float, every: float
) -> int:
    """Every ``every`` virtual seconds, one change on each open shard (spread over the
    interval), for ``duration`` seconds. Returns the number of changes written."""
    keys = list(key_per_shard(sim).values())
    step = every / len(keys)
    written = 0
    rounds = int(duration / every)
    for round_number in range(rounds):
        for key in keys:
            sim.put_item({"pk": key, "round": round_number})
            written += 1
            await clock.sleep(step)
    return written


def assert_complete_in_item_order(
    sim: StreamSimulator, records: list[Record], *, exactly_once: bool
) -> None:
    delivered = [r.sequence_number for r in records]
    written = {c.sequence_number for c in sim.history}
    missing = written - set(delivered)
    shards_missing = {c.shard_id for c in sim.history if c.sequence_number in missing}
    assert not missing, (
        f"{len(missing)} of {len(written)} records never delivered, "
        f"from {len(shards_missing)} of {len(sim.open_shard_ids())} shards"
    )
    if exactly_once:
        assert len(delivered) == len(set(delivered)), "a record was delivered twice"
    first_seen: dict[str, list[int]] = defaultdict(list)
    seen: set[str] = set()
    for record in records:
        if record.sequence_number in seen:
            continue
        seen.add(record.sequence_number)
        first_seen[record.keys["pk"]].append(int(record.sequence_number))
    for key, numbers in first_seen.items():
        assert numbers == sorted(numbers), f"{key} out of order"
