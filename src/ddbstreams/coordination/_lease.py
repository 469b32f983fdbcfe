"""Leases as the Kinesis Client Library stores them (pure: no I/O).

A worker group shares a stream through a *lease table*: one item per shard, written and
read in the format of the Java KCL (``DynamoDBLeaseSerializer`` in KCL 2.x/3.x,
``KinesisClientLeaseSerializer`` in KCL 1.x, with the DynamoDB Streams Kinesis adapter), so
an application can move from the KCL to ddbstreams and back keeping its checkpoints.

Attributes (DynamoDB types): ``leaseKey`` S (the shard id), ``leaseOwner`` S (absent when
unassigned), ``leaseCounter`` N, ``checkpoint`` S (a sequence number or ``TRIM_HORIZON`` /
``LATEST`` / ``SHARD_END``), ``checkpointSubSequenceNumber`` N, ``ownerSwitchesSinceCheckpoint``
N, ``parentShardId`` SS, ``childShardIds`` SS, ``pendingCheckpoint`` S (with
``pendingCheckpointSubSequenceNumber`` N and ``pendingCheckpointState`` B), and from KCL 3.x
``throughputKBps`` N, ``checkpointOwner`` S and ``entityType`` S: an item whose entityType is
present and not ``LEASE`` (worker metrics, coordinator state) is not a lease. ddbstreams adds
``ddbstreamsStreamArn`` S, which the KCL ignores.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from ddbstreams._errors import InvalidPositionError, LeaseTableError
from ddbstreams.model._position import (
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    ShardStart,
    validate_sequence_number,
)

__all__ = [
    "CHECKPOINT",
    "CHECKPOINT_OWNER",
    "CHECKPOINT_SUB_SEQUENCE",
    "CHECKPOINT_TIME",
    "CHILD_SHARD_IDS",
    "ENTITY_TYPE",
    "LATEST_CHECKPOINT",
    "LEASE_COUNTER",
    "LEASE_ENTITY",
    "LEASE_KEY",
    "LEASE_OWNER",
    "OWNER_SWITCHES",
    "PARENT_SHARD_ID",
    "PENDING_CHECKPOINT",
    "PENDING_CHECKPOINT_ATTRIBUTES",
    "PENDING_CHECKPOINT_STATE",
    "PENDING_CHECKPOINT_SUB_SEQUENCE",
    "SHARD_END_CHECKPOINT",
    "STREAM_ARN",
    "TRIM_HORIZON_CHECKPOINT",
    "ItemReader",
    "Lease",
    "check_checkpoint",
    "lease_from_item",
    "new_lease_item",
]

TRIM_HORIZON_CHECKPOINT: Final = "TRIM_HORIZON"
LATEST_CHECKPOINT: Final = "LATEST"
SHARD_END_CHECKPOINT: Final = "SHARD_END"
_SENTINELS: Final = frozenset({TRIM_HORIZON_CHECKPOINT, LATEST_CHECKPOINT, SHARD_END_CHECKPOINT})

# Attribute names, as the KCL's serializers spell them.
LEASE_KEY: Final = "leaseKey"
LEASE_OWNER: Final = "leaseOwner"
LEASE_COUNTER: Final = "leaseCounter"
CHECKPOINT: Final = "checkpoint"
CHECKPOINT_SUB_SEQUENCE: Final = "checkpointSubSequenceNumber"
OWNER_SWITCHES: Final = "ownerSwitchesSinceCheckpoint"
PARENT_SHARD_ID: Final = "parentShardId"
CHILD_SHARD_IDS: Final = "childShardIds"
PENDING_CHECKPOINT: Final = "pendingCheckpoint"
PENDING_CHECKPOINT_SUB_SEQUENCE: Final = "pendingCheckpointSubSequenceNumber"
PENDING_CHECKPOINT_STATE: Final = "pendingCheckpointState"
PENDING_CHECKPOINT_ATTRIBUTES: Final = (
    PENDING_CHECKPOINT,
    PENDING_CHECKPOINT_SUB_SEQUENCE,
    PENDING_CHECKPOINT_STATE,
)
CHECKPOINT_OWNER: Final = "checkpointOwner"
ENTITY_TYPE: Final = "entityType"
LEASE_ENTITY: Final = "LEASE"
STREAM_ARN: Final = "ddbstreamsStreamArn"
CHECKPOINT_TIME: Final = "ddbstreamsCheckpointTime"
"""Ours too: the approximate creation time (epoch seconds) of the checkpointed record,
so that ``ddbstreams lag`` can tell how far behind a shard's checkpoint is."""
"""Our own attribute: the stream the shard belongs to (the KCL ignores it)."""


def check_checkpoint(checkpoint: str) -> str:
    """``checkpoint`` if it is a sequence number or a sentinel the KCL writes; ValueError
    (an :class:`~ddbstreams.InvalidPositionError`) otherwise."""
    if checkpoint in _SENTINELS:
        return checkpoint
    try:
        return validate_sequence_number(checkpoint)
    except InvalidPositionError as exc:
        raise InvalidPositionError(
            f"invalid lease checkpoint {checkpoint!r}: expected a sequence number, "
            f"{TRIM_HORIZON_CHECKPOINT}, {LATEST_CHECKPOINT} or {SHARD_END_CHECKPOINT}"
        ) from exc


@dataclass(frozen=True, slots=True)
class Lease:
    """One shard's lease as the lease table holds it.

    ``owner`` is None when the lease is unassigned. ``counter`` (``leaseCounter``) moves on
    with every write of an owner; conditional writes compare it (fencing). ``checkpoint`` is
    the last sequence number processed, or ``TRIM_HORIZON`` / ``LATEST`` (nothing processed
    yet) or ``SHARD_END`` (the shard was read to its end). ``checkpoint_owner`` is set by a
    KCL 3.x worker during a graceful handoff; ``pending_checkpoint`` by a KCL two-phase
    checkpoint that was prepared but not committed.
    """

    key: str
    owner: str | None
    counter: int
    checkpoint: str
    parent_shard_ids: frozenset[str] = frozenset()
    child_shard_ids: frozenset[str] = frozenset()
    owner_switches: int = 0
    stream_arn: str | None = None
    checkpoint_time: float | None = None
    checkpoint_owner: str | None = None
    pending_checkpoint: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the shard was read to its end (checkpoint ``SHARD_END``)."""
        return self.checkpoint == SHARD_END_CHECKPOINT

    def start(self) -> ShardStart:
        """Where to resume reading the shard: TRIM_HORIZON, LATEST, or just after the
        checkpointed sequence number. ValueError for a finished lease (SHARD_END).

        A ``LATEST`` lease that was held before and changed hands before anything of it was
        processed (a counter past the first take's 1: a take, then a release or expiry and
        another take) is read from ``checkpoint_time``, the moment the group created it,
        when known (from TRIM_HORIZON, older records dropped): LATEST again would skip what
        was written while it changed hands. Call it on the lease as taken.
        """
        if self.checkpoint == TRIM_HORIZON_CHECKPOINT:
            return SHARD_TRIM_HORIZON
        if self.checkpoint == LATEST_CHECKPOINT:
            if self.counter > 1 and self.checkpoint_time is not None:
                moment = datetime.fromtimestamp(self.checkpoint_time, UTC)
                return ShardStart("TRIM_HORIZON", not_before=moment)
            return SHARD_LATEST
        if self.finished:
            raise ValueError(f"lease {self.key!r} is finished ({SHARD_END_CHECKPOINT}): no start")
        return ShardStart("AFTER_SEQUENCE_NUMBER", self.checkpoint)


class ItemReader:
    """Typed access to the attributes of one item (DynamoDB wire shape).

    Every problem raises :class:`~ddbstreams.LeaseTableError` naming ``where`` (the table),
    the item's key and the attribute.
    """

    __slots__ = ("_item", "_where")

    def __init__(self, item: Mapping[str, Any], where: str, key_attribute: str) -> None:
        self._item = item
        key = item.get(key_attribute)
        shown = key.get("S") if isinstance(key, Mapping) else None
        self._where = f"{where}: item {shown!r}" if isinstance(shown, str) else where

    def error(self, attribute: str, problem: str) -> LeaseTableError:
        return LeaseTableError(f"{self._where}: attribute {attribute!r} {problem}")

    def _typed(self, attribute: str, kind: str) -> Any:
        value = self._item.get(attribute)
        if value is None:
            return None
        if not isinstance(value, Mapping) or kind not in value:
            raise self.error(attribute, f"is not of type {kind}: {value!r}")
        return value[kind]

    def optional_string(self, attribute: str) -> str | None:
        value = self._typed(attribute, "S")
        if value is not None and not isinstance(value, str):
            raise self.error(attribute, f"is not a string: {value!r}")
        return value

    def string(self, attribute: str) -> str:
        value = self.optional_string(attribute)
        if value is None:
            raise self.error(attribute, "is missing (type S)")
        return value

    def optional_integer(self, attribute: str, default: int) -> int:
        text = self._typed(attribute, "N")
        if text is None:
            return default
        try:
            return int(text)
        except (TypeError, ValueError):
            raise self.error(attribute, f"is not an integer: {text!r}") from None

    def optional_number(self, attribute: str) -> float | None:
        text = self._typed(attribute, "N")
        if text is None:
            return None
        try:
            return float(text)
        except (TypeError, ValueError):
            raise self.error(attribute, f"is not a number: {text!r}") from None

    def integer(self, attribute: str) -> int:
        if self._item.get(attribute) is None:
            raise self.error(attribute, "is missing (type N)")
        return self.optional_integer(attribute, 0)

    def string_set(self, attribute: str) -> frozenset[str]:
        values = self._typed(attribute, "SS")
        if values is None:
            return frozenset()
        if not isinstance(values, Iterable) or isinstance(values, str | bytes):
            raise self.error(attribute, f"is not a string set: {values!r}")
        result = frozenset(values)
        if not all(isinstance(v, str) for v in result):
            raise self.error(attribute, f"is not a string set: {values!r}")
        return result


def lease_from_item(item: Mapping[str, Any], *, table: str | None = None) -> Lease | None:
    """The lease an item of a lease table holds; None if the item is not a lease.

    An item whose ``entityType`` is present and not ``LEASE`` (KCL 3.x keeps worker metrics
    and coordinator state in the lease table) is not a lease. Attributes this library does
    not model are ignored. :class:`~ddbstreams.LeaseTableError` for a malformed item,
    naming ``table`` (when given), the item's key and the attribute: ``leaseKey``,
    ``leaseCounter`` and ``checkpoint`` are required; every attribute must have the
    KCL's type.
    """
    entity = item.get(ENTITY_TYPE)
    if entity is not None and entity != {"S": LEASE_ENTITY}:
        return None
    reader = ItemReader(
        item, f"lease table {table!r}" if table is not None else "lease table", LEASE_KEY
    )
    key = reader.string(LEASE_KEY)
    checkpoint = reader.string(CHECKPOINT)
    try:
        check_checkpoint(checkpoint)
    except InvalidPositionError as exc:
        raise reader.error(CHECKPOINT, f"is not a checkpoint: {exc}") from None
    return Lease(
        key=key,
        owner=reader.optional_string(LEASE_OWNER),
        counter=reader.integer(LEASE_COUNTER),
        checkpoint=checkpoint,
        parent_shard_ids=reader.string_set(PARENT_SHARD_ID),
        child_shard_ids=reader.string_set(CHILD_SHARD_IDS),
        owner_switches=reader.optional_integer(OWNER_SWITCHES, 0),
        stream_arn=reader.optional_string(STREAM_ARN),
        checkpoint_time=reader.optional_number(CHECKPOINT_TIME),
        checkpoint_owner=reader.optional_string(CHECKPOINT_OWNER),
        pending_checkpoint=reader.optional_string(PENDING_CHECKPOINT),
    )


def new_lease_item(
    key: str,
    checkpoint: str,
    *,
    parent_shard_ids: Iterable[str] = (),
    stream_arn: str | None = None,
    checkpoint_time: float | None = None,
) -> dict[str, Any]:
    """A new, unassigned lease item, as the KCL's ``DynamoDBLeaseSerializer.toDynamoRecord``
    writes one: ``leaseCounter`` 0, ``ownerSwitchesSinceCheckpoint`` 0,
    ``checkpointSubSequenceNumber`` 0, no ``leaseOwner``, ``parentShardId`` only when there
    are parents (a string set cannot be empty) and ``entityType`` ``LEASE`` (KCL 3.5+ writes
    it; older KCLs ignore it), plus ``ddbstreamsStreamArn`` when ``stream_arn`` is given and
    ``ddbstreamsCheckpointTime`` when ``checkpoint_time`` is (for a ``LATEST`` lease: when
    the group created it, see :meth:`Lease.start`).

    ValueError for an empty key or a checkpoint that is neither a sequence number nor a
    sentinel.
    """
    if not isinstance(key, str) or not key:
        raise ValueError(f"a lease key must be a non-empty string: {key!r}")
    item: dict[str, Any] = {
        LEASE_KEY: {"S": key},
        LEASE_COUNTER: {"N": "0"},
        OWNER_SWITCHES: {"N": "0"},
        CHECKPOINT: {"S": check_checkpoint(checkpoint)},
        CHECKPOINT_SUB_SEQUENCE: {"N": "0"},
        ENTITY_TYPE: {"S": LEASE_ENTITY},
    }
    parents = sorted(set(parent_shard_ids))
    if parents:
        item[PARENT_SHARD_ID] = {"SS": parents}
    if stream_arn is not None:
        item[STREAM_ARN] = {"S": stream_arn}
    if checkpoint_time is not None:
        item[CHECKPOINT_TIME] = {"N": repr(checkpoint_time)}
    return item
