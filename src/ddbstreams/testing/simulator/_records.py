"""Stream records: :class:`SimulatedChange` (a change as the test sees it) and the wire
record the stream stores for it (images by view type, ``SizeBytes``, TTL identity)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson

from ddbstreams.model._types import EventName

__all__ = [
    "VIEW_TYPES",
    "Image",
    "SimulatedChange",
    "StreamViewType",
    "encode_record",
    "visible_images",
]

StreamViewType = Literal["KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES"]
VIEW_TYPES: Final = ("KEYS_ONLY", "NEW_IMAGE", "OLD_IMAGE", "NEW_AND_OLD_IMAGES")
#: An item as written (plain Python values) and as DynamoDB encodes it.
Image = tuple[dict[str, Any], dict[str, Any]]

_TTL_IDENTITY: Final = {"Type": "Service", "PrincipalId": "dynamodb.amazonaws.com"}


@dataclass(frozen=True, slots=True)
class SimulatedChange:
    """One change written to the simulated stream, as the stream records it.

    ``keys``, ``new_image`` and ``old_image`` hold the Python values that were written (an
    image is ``None`` when the stream view type leaves it out, as the record does), so they
    compare equal to records decoded by the default parser as long as numbers were written
    as ``int``/``Decimal`` (floats decode to ``Decimal``). ``is_ttl_delete`` marks a REMOVE
    made by :meth:`StreamSimulator.ttl_delete`. ``approximate_creation_time`` is epoch
    seconds from the simulator's clock.
    """

    event_id: str
    event_name: EventName
    shard_id: str
    sequence_number: str
    keys: dict[str, Any]
    new_image: dict[str, Any] | None
    old_image: dict[str, Any] | None
    approximate_creation_time: float
    is_ttl_delete: bool = False

    @property
    def key(self) -> tuple[Any, ...]:
        """The item's key values, in the simulator's ``key_names`` order."""
        return tuple(self.keys.values())


def _attribute_size(value: Mapping[str, Any]) -> int:
    """Approximate DynamoDB storage size of one attribute value (for ``SizeBytes``)."""
    ((kind, payload),) = value.items()
    if kind == "S":
        return len(str(payload).encode())
    if kind == "N":
        return len(str(payload).lstrip("-").replace(".", "")) // 2 + 1
    if kind == "B":
        return len(payload) * 3 // 4
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode()) for s in payload)
    if kind == "NS":
        return sum(len(str(n)) // 2 + 1 for n in payload)
    if kind == "BS":
        return sum(len(b) * 3 // 4 for b in payload)
    if kind == "M":
        return 3 + sum(len(k.encode()) + _attribute_size(v) + 1 for k, v in payload.items())
    if kind == "L":
        return 3 + sum(_attribute_size(v) + 1 for v in payload)
    return 0  # pragma: no cover - encode_value produces nothing else


def _item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Approximate DynamoDB storage size of an item (0 for none)."""
    if not item:
        return 0
    return sum(len(name.encode()) + _attribute_size(v) for name, v in item.items())


def visible_images(
    view: str, new: Image | None, old: Image | None
) -> tuple[Image | None, Image | None]:
    """The new and old images a record of stream view type ``view`` carries."""
    if view not in ("NEW_IMAGE", "NEW_AND_OLD_IMAGES"):
        new = None
    if view not in ("OLD_IMAGE", "NEW_AND_OLD_IMAGES"):
        old = None
    return new, old


def encode_record(
    change: SimulatedChange,
    *,
    region: str,
    view: str,
    key_wire: Mapping[str, Mapping[str, Any]],
    new_wire: dict[str, Any] | None,
    old_wire: dict[str, Any] | None,
) -> bytes:
    """The serialized wire record of ``change``: the images given (already chosen by the
    stream view type ``view``) and ``SizeBytes`` counting them."""
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": float(int(change.approximate_creation_time)),
        "Keys": key_wire,
    }
    if new_wire is not None:
        body["NewImage"] = new_wire
    if old_wire is not None:
        body["OldImage"] = old_wire
    body["SequenceNumber"] = change.sequence_number
    body["SizeBytes"] = _item_size(key_wire) + _item_size(new_wire) + _item_size(old_wire)
    body["StreamViewType"] = view
    record: dict[str, Any] = {
        "eventID": change.event_id,
        "eventName": change.event_name,
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": region,
        "dynamodb": body,
    }
    if change.is_ttl_delete:
        record["userIdentity"] = dict(_TTL_IDENTITY)
    # An exact-size copy: orjson's result keeps a ~4 KB allocation whatever its length,
    # which made a backlog of a million records take ~5 GB instead of under 1 GB.
    return bytes(memoryview(orjson.dumps(record)))
