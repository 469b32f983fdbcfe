"""Lease items in the Java KCL's format: reading what the KCL writes, writing what it reads.

Every fixture item is built attribute by attribute as the KCL's serializer writes it; each
docstring names the source (repository and path) it follows. Sources:

- KCL 1.x (DynamoDB Streams Kinesis adapter 1.x): ``awslabs/amazon-kinesis-client`` at tag
  v1.14.10, ``src/main/java/com/amazonaws/services/kinesis/leases/impl/LeaseSerializer.java``
  and ``.../leases/impl/KinesisClientLeaseSerializer.java``;
- KCL 2.x/3.x (adapter 2.x): ``awslabs/amazon-kinesis-client``,
  ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/leases/dynamodb/DynamoDBLeaseSerializer.java``
  (numbers through ``.../leases/DynamoUtils.java``: Long and Double ``toString``);
- the adapter, which keys leases by shard id: ``awslabs/dynamodb-streams-kinesis-adapter``,
  ``src/main/java/com/amazonaws/services/dynamodbv2/streamsadapter/DynamoDBStreamsShardSyncer.java``
  (``newKCLLease``: ``leaseKey`` = shard id, ``parentShardIds`` from the shard).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from ddbstreams import LeaseTableError
from ddbstreams.coordination import (
    LATEST_CHECKPOINT,
    SHARD_END_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
    Lease,
    lease_from_item,
    new_lease_item,
)
from ddbstreams.model._position import ShardStart

SHARD = "shardId-00000001700000000000-aaaaaaaa"
PARENT = "shardId-00000001690000000000-pppppppp"
CHILD_A = "shardId-00000001710000000000-cccccccc"
CHILD_B = "shardId-00000001710000000001-dddddddd"
SEQ = "300000000000000499659"
ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/Orders/stream/2024-05-01T00:00:00.000"


# --------------------------------------------------------------------------- fixtures


def kcl1_lease_with_checkpoint() -> dict[str, Any]:
    """A KCL 1.x lease held by a worker, checkpointed at a sequence number.

    ``awslabs/amazon-kinesis-client`` (v1.14.10)
    ``src/main/java/com/amazonaws/services/kinesis/leases/impl/LeaseSerializer.java``
    ``toDynamoRecord`` (leaseKey S, leaseCounter N, leaseOwner S when owned) then
    ``.../leases/impl/KinesisClientLeaseSerializer.java`` ``toDynamoRecord``
    (ownerSwitchesSinceCheckpoint N, checkpoint S, checkpointSubSequenceNumber N,
    parentShardId SS only when non-empty).
    """
    return {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "42"},
        "leaseOwner": {"S": "worker-java-1"},
        "ownerSwitchesSinceCheckpoint": {"N": "1"},
        "checkpoint": {"S": SEQ},
        "checkpointSubSequenceNumber": {"N": "0"},
    }


def kcl1_shard_end_lease() -> dict[str, Any]:
    """A KCL 1.x lease whose shard was read to its end: checkpoint ``SHARD_END``
    (``ExtendedSequenceNumber.SHARD_END``), no owner, its children recorded.

    ``awslabs/amazon-kinesis-client`` (v1.14.10)
    ``src/main/java/com/amazonaws/services/kinesis/leases/impl/KinesisClientLeaseSerializer.java``
    ``toDynamoRecord`` (childShardIds SS when non-empty).
    """
    return {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "7"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": "SHARD_END"},
        "checkpointSubSequenceNumber": {"N": "0"},
        "childShardIds": {"SS": [CHILD_A, CHILD_B]},
    }


def kcl2_lease_with_parent_and_children() -> dict[str, Any]:
    """A KCL 2.x lease (adapter 2.x) created for a child shard, with its parent and,
    once read to its end, its children.

    ``awslabs/amazon-kinesis-client``
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/leases/dynamodb/DynamoDBLeaseSerializer.java``
    ``toDynamoRecord``: parentShardId SS (singular name), childShardIds SS,
    startingHashKey / endingHashKey S (the adapter's ``setupLeaseProperties`` in
    ``awslabs/dynamodb-streams-kinesis-adapter``
    ``src/main/java/com/amazonaws/services/dynamodbv2/streamsadapter/DynamoDBStreamsShardSyncer.java``
    sets a hash key range).
    """
    return {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "3"},
        "leaseOwner": {"S": "worker-java-2"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": "TRIM_HORIZON"},
        "checkpointSubSequenceNumber": {"N": "0"},
        "parentShardId": {"SS": [PARENT]},
        "childShardIds": {"SS": [CHILD_A]},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "340282366920938463463374607431768211455"},
    }


def kcl3_lease() -> dict[str, Any]:
    """A KCL 3.x lease during a graceful handoff, with the 3.x attributes.

    ``awslabs/amazon-kinesis-client``
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/leases/dynamodb/DynamoDBLeaseSerializer.java``
    ``toDynamoRecord``: throughputKBps N (``Double.toString``), checkpointOwner S, and
    entityType S ``LEASE`` (``EntityType.LEASE.getDdbValue()``, KCL 3.5+).
    """
    return {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "1093"},
        "leaseOwner": {"S": "worker-java-new"},
        "checkpointOwner": {"S": "worker-java-old"},
        "ownerSwitchesSinceCheckpoint": {"N": "2"},
        "checkpoint": {"S": SEQ},
        "checkpointSubSequenceNumber": {"N": "0"},
        "parentShardId": {"SS": [PARENT]},
        "throughputKBps": {"N": "12.5"},
        "startingHashKey": {"S": "0"},
        "endingHashKey": {"S": "340282366920938463463374607431768211455"},
        "entityType": {"S": "LEASE"},
    }


def kcl3_worker_metric_stats() -> dict[str, Any]:
    """A KCL 3.x worker-metrics item kept in the lease table: not a lease.

    ``awslabs/amazon-kinesis-client``
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/worker/metricstats/WorkerMetricStats.java``
    (``LeaseTableWorkerMetricStats``: partition key ``leaseKey`` = worker id, entityType
    ``WORKER_METRIC_STATS``, lut N, sts M, opr M); ``DynamoDBLeaseSerializer.fromDynamoRecord``
    returns null for it.
    """
    return {
        "leaseKey": {"S": "worker-java-1"},
        "entityType": {"S": "WORKER_METRIC_STATS"},
        "lut": {"N": "1717171717"},
        "sts": {"M": {"CPU": {"L": [{"N": "41.5"}, {"N": "43.0"}]}}},
        "opr": {"M": {"CPU": {"L": [{"N": "100"}]}}},
    }


def kcl3_migration_state() -> dict[str, Any]:
    """A KCL 3.x client-version migration item kept in the lease table: not a lease (and
    it has neither leaseCounter nor checkpoint).

    ``awslabs/amazon-kinesis-client``
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/coordinator/migration/MigrationState.java``
    ``serialize`` (key ``Migration3.0``, cv S, mb S, mts N, h L) with
    ``.../coordinator/CoordinatorState.java`` adding entityType ``CLIENT_VERSION_MIGRATION``.
    """
    return {
        "leaseKey": {"S": "Migration3.0"},
        "entityType": {"S": "CLIENT_VERSION_MIGRATION"},
        "cv": {"S": "CLIENT_VERSION_3X"},
        "mb": {"S": "worker-java-1"},
        "mts": {"N": "1717171717"},
        "h": {"L": []},
    }


def kcl2_pending_checkpoint() -> dict[str, Any]:
    """A KCL 2.x lease with a prepared, uncommitted two-phase checkpoint.

    ``awslabs/amazon-kinesis-client``
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/leases/dynamodb/DynamoDBLeaseSerializer.java``
    ``getDynamoUpdateLeaseUpdate``: pendingCheckpoint S, pendingCheckpointSubSequenceNumber N,
    pendingCheckpointState B.
    """
    return {
        "leaseKey": {"S": SHARD},
        "leaseCounter": {"N": "9"},
        "leaseOwner": {"S": "worker-java-1"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": SEQ},
        "checkpointSubSequenceNumber": {"N": "0"},
        "pendingCheckpoint": {"S": "300000000000000499700"},
        "pendingCheckpointSubSequenceNumber": {"N": "0"},
        "pendingCheckpointState": {"B": b"app state"},
    }


# --------------------------------------------------------------------------- reading


def test_kcl1_lease_with_a_sequence_checkpoint() -> None:
    lease = lease_from_item(kcl1_lease_with_checkpoint())
    assert lease == Lease(
        key=SHARD, owner="worker-java-1", counter=42, checkpoint=SEQ, owner_switches=1
    )
    assert not lease.finished
    assert lease.start() == ShardStart("AFTER_SEQUENCE_NUMBER", SEQ)


def test_shard_end_lease() -> None:
    lease = lease_from_item(kcl1_shard_end_lease())
    assert lease is not None
    assert lease.owner is None
    assert lease.checkpoint == SHARD_END_CHECKPOINT
    assert lease.finished
    assert lease.child_shard_ids == {CHILD_A, CHILD_B}
    with pytest.raises(ValueError, match="finished"):
        lease.start()


def test_lease_with_parent_and_children() -> None:
    lease = lease_from_item(kcl2_lease_with_parent_and_children())
    assert lease == Lease(
        key=SHARD,
        owner="worker-java-2",
        counter=3,
        checkpoint=TRIM_HORIZON_CHECKPOINT,
        parent_shard_ids=frozenset({PARENT}),
        child_shard_ids=frozenset({CHILD_A}),
    )
    assert lease.start() == ShardStart("TRIM_HORIZON")


def test_kcl3_lease() -> None:
    lease = lease_from_item(kcl3_lease())
    assert lease == Lease(
        key=SHARD,
        owner="worker-java-new",
        counter=1093,
        checkpoint=SEQ,
        parent_shard_ids=frozenset({PARENT}),
        owner_switches=2,
        checkpoint_owner="worker-java-old",
    )


@pytest.mark.parametrize("item", [kcl3_worker_metric_stats(), kcl3_migration_state()])
def test_kcl3_items_that_are_not_leases_are_skipped(item: dict[str, Any]) -> None:
    assert lease_from_item(item) is None


def test_pending_checkpoint() -> None:
    lease = lease_from_item(kcl2_pending_checkpoint())
    assert lease is not None
    assert lease.pending_checkpoint == "300000000000000499700"
    # A pending checkpoint is not committed: reading resumes after the checkpoint.
    assert lease.start() == ShardStart("AFTER_SEQUENCE_NUMBER", SEQ)


def test_latest_checkpoint_and_our_stream_attribute() -> None:
    item = {**kcl1_shard_end_lease(), "checkpoint": {"S": "LATEST"}}
    item["ddbstreamsStreamArn"] = {"S": ARN}
    lease = lease_from_item(item)
    assert lease is not None
    assert lease.stream_arn == ARN
    assert lease.start() == ShardStart("LATEST")


# --------------------------------------------------------------------------- malformed


def _malformed(item: Mapping[str, Any], *, table: str | None = "app") -> str:
    with pytest.raises(LeaseTableError) as info:
        lease_from_item(item, table=table)
    return str(info.value)


def test_counter_that_is_not_a_number() -> None:
    item = {**kcl1_lease_with_checkpoint(), "leaseCounter": {"S": "42"}}
    message = _malformed(item)
    assert "'app'" in message
    assert repr(SHARD) in message
    assert "'leaseCounter'" in message
    item = {**kcl1_lease_with_checkpoint(), "leaseCounter": {"N": "4.2"}}
    assert "'leaseCounter' is not an integer: '4.2'" in _malformed(item)


def test_missing_checkpoint() -> None:
    item = kcl1_lease_with_checkpoint()
    del item["checkpoint"]
    message = _malformed(item)
    assert f"lease table 'app': item {SHARD!r}: attribute 'checkpoint' is missing" in message


@pytest.mark.parametrize(
    ("attribute", "value"),
    [
        ("leaseCounter", None),
        ("checkpoint", {"S": "AT_TIMESTAMP"}),
        ("checkpoint", {"S": "12ab"}),
        ("leaseOwner", {"N": "1"}),
        ("parentShardId", {"S": PARENT}),
        ("childShardIds", {"L": []}),
        ("ownerSwitchesSinceCheckpoint", {"N": "x"}),
    ],
)
def test_malformed_attributes(attribute: str, value: dict[str, Any] | None) -> None:
    item = kcl2_lease_with_parent_and_children()
    if value is None:
        del item[attribute]
    else:
        item[attribute] = value
    message = _malformed(item)
    assert repr(SHARD) in message
    assert repr(attribute) in message


def test_missing_key_names_the_attribute() -> None:
    item = kcl1_lease_with_checkpoint()
    del item["leaseKey"]
    assert "'leaseKey' is missing" in _malformed(item, table=None)


def test_an_item_that_claims_to_be_a_lease_must_be_one() -> None:
    item = kcl3_migration_state()
    item["entityType"] = {"S": "LEASE"}
    assert "'checkpoint' is missing" in _malformed(item)


# --------------------------------------------------------------------------- writing


def kcl3_to_dynamo_record(
    key: str, checkpoint: str, parents: list[str], *, entity_type: bool = True
) -> dict[str, Any]:
    """What ``DynamoDBLeaseSerializer.toDynamoRecord`` writes for a new lease
    (``awslabs/amazon-kinesis-client``,
    ``amazon-kinesis-client/src/main/java/software/amazon/kinesis/leases/dynamodb/DynamoDBLeaseSerializer.java``):
    ``new Lease()`` has leaseCounter 0L and the adapter's ``setupLeaseProperties`` sets
    ownerSwitchesSinceCheckpoint 0L; a sentinel checkpoint has subSequenceNumber 0; no
    owner; parentShardId only when non-empty. ``entity_type=False`` gives the KCL 1.x record
    (``KinesisClientLeaseSerializer.toDynamoRecord``, v1.14.10), the same without it."""
    record: dict[str, Any] = {
        "leaseKey": {"S": key},
        "leaseCounter": {"N": "0"},
        "ownerSwitchesSinceCheckpoint": {"N": "0"},
        "checkpoint": {"S": checkpoint},
        "checkpointSubSequenceNumber": {"N": "0"},
    }
    if parents:
        record["parentShardId"] = {"SS": parents}
    if entity_type:
        record["entityType"] = {"S": "LEASE"}
    return record


def kcl_from_dynamo_record(record: Mapping[str, Any]) -> dict[str, Any] | None:
    """``DynamoDBLeaseSerializer.fromDynamoRecord`` over ``DynamoUtils``, transliterated:
    safeGetString reads ``.s()``, safeGetLong ``new Long(.n())``, safeGetSS ``.ss()``;
    a missing attribute is null (an empty list for sets). Fails as Java would on a wrong
    type (null where a value is needed, NumberFormatException)."""

    def string(name: str) -> str | None:
        value = record.get(name)
        return None if value is None else value["S"]

    def long(name: str) -> int | None:
        value = record.get(name)
        return None if value is None else int(value["N"])

    def string_set(name: str) -> list[str]:
        value = record.get(name)
        return [] if value is None else list(value["SS"])

    entity_type = string("entityType")
    if entity_type not in (None, "LEASE"):
        return None
    return {
        "leaseKey": string("leaseKey"),
        "leaseOwner": string("leaseOwner"),
        "leaseCounter": long("leaseCounter"),
        "ownerSwitchesSinceCheckpoint": long("ownerSwitchesSinceCheckpoint"),
        "checkpoint": (string("checkpoint"), long("checkpointSubSequenceNumber")),
        "parentShardIds": string_set("parentShardId"),
        "childShardIds": string_set("childShardIds"),
        "pendingCheckpoint": string("pendingCheckpoint"),
        "checkpointOwner": string("checkpointOwner"),
    }


@pytest.mark.parametrize(
    ("checkpoint", "parents"),
    [(TRIM_HORIZON_CHECKPOINT, [PARENT]), (LATEST_CHECKPOINT, []), (SEQ, [])],
)
def test_new_lease_item_is_what_the_kcl_writes(checkpoint: str, parents: list[str]) -> None:
    item = new_lease_item(SHARD, checkpoint, parent_shard_ids=parents)
    assert item == kcl3_to_dynamo_record(SHARD, checkpoint, parents)
    # KCL 1.x writes the same attributes but entityType, which it ignores.
    del item["entityType"]
    assert item == kcl3_to_dynamo_record(SHARD, checkpoint, parents, entity_type=False)


def test_a_kcl_reads_our_new_lease() -> None:
    item = new_lease_item(SHARD, TRIM_HORIZON_CHECKPOINT, parent_shard_ids=[PARENT], stream_arn=ARN)
    assert item["ddbstreamsStreamArn"] == {"S": ARN}
    assert kcl_from_dynamo_record(item) == {
        "leaseKey": SHARD,
        "leaseOwner": None,
        "leaseCounter": 0,
        "ownerSwitchesSinceCheckpoint": 0,
        "checkpoint": ("TRIM_HORIZON", 0),
        "parentShardIds": [PARENT],
        "childShardIds": [],
        "pendingCheckpoint": None,
        "checkpointOwner": None,
    }
    # And ddbstreams reads it back.
    assert lease_from_item(item) == Lease(
        key=SHARD,
        owner=None,
        counter=0,
        checkpoint=TRIM_HORIZON_CHECKPOINT,
        parent_shard_ids=frozenset({PARENT}),
        stream_arn=ARN,
    )


def test_the_fixtures_read_the_same_in_the_kcl_and_here() -> None:
    for make in (
        kcl1_lease_with_checkpoint,
        kcl1_shard_end_lease,
        kcl2_lease_with_parent_and_children,
        kcl3_lease,
        kcl2_pending_checkpoint,
    ):
        item = make()
        kcl, ours = kcl_from_dynamo_record(item), lease_from_item(item)
        assert kcl is not None
        assert ours is not None
        assert (ours.key, ours.owner, ours.counter) == (
            kcl["leaseKey"],
            kcl["leaseOwner"],
            kcl["leaseCounter"],
        )
        assert ours.checkpoint == kcl["checkpoint"][0]
        assert ours.parent_shard_ids == set(kcl["parentShardIds"])
        assert ours.child_shard_ids == set(kcl["childShardIds"])
        assert ours.pending_checkpoint == kcl["pendingCheckpoint"]
        assert ours.checkpoint_owner == kcl["checkpointOwner"]
    for make in (kcl3_worker_metric_stats, kcl3_migration_state):
        assert kcl_from_dynamo_record(make()) is None


def test_new_lease_item_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="checkpoint"):
        new_lease_item(SHARD, "AT_TIMESTAMP")
    with pytest.raises(ValueError, match="lease key"):
        new_lease_item("", TRIM_HORIZON_CHECKPOINT)
