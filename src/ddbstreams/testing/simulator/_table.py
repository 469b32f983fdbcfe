"""The source table: its key schema, its items, and how keys are encoded and hashed."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson

from ddbstreams.model._encode import encode_value
from ddbstreams.testing.simulator._records import Image

__all__ = ["KeyWire", "SourceTable"]

#: A key as DynamoDB encodes it: attribute name -> ``{"S" | "N" | "B": value}``.
KeyWire = dict[str, dict[str, Any]]


class SourceTable:
    """The simulated source table's items by key (each as written and as encoded).

    The item methods are guarded by the simulator's lock; the key helpers need none.
    """

    __slots__ = ("_items", "deleted", "key_names", "name")

    def __init__(self, name: str, key_names: Sequence[str]) -> None:
        self.name = name
        #: The partition key, then the optional sort key.
        self.key_names = tuple(key_names)
        #: True once the table was deleted (see :meth:`delete`).
        self.deleted = False
        self._items: dict[tuple[tuple[str, str], ...], Image] = {}

    def __len__(self) -> int:
        return len(self._items)

    def key_schema(self) -> list[dict[str, str]]:
        """The ``KeySchema`` of DescribeStream and DescribeTable answers."""
        return [
            {"AttributeName": name, "KeyType": "HASH" if i == 0 else "RANGE"}
            for i, name in enumerate(self.key_names)
        ]

    # ------------------------------------------------------------------ keys

    def key_wire(self, item_wire: Mapping[str, dict[str, Any]]) -> KeyWire:
        """The key of an encoded item (ValueError if an attribute is missing, TypeError if
        one is not a string, number or bytes)."""
        missing = [k for k in self.key_names if k not in item_wire]
        if missing:
            raise ValueError(f"item lacks key attribute(s) {', '.join(missing)}")
        for name in self.key_names:
            kind = next(iter(item_wire[name]))
            if kind not in ("S", "N", "B"):
                raise TypeError(f"key attribute {name} must be a string, number or bytes")
        return {k: item_wire[k] for k in self.key_names}

    def encode_key(self, key: Mapping[str, Any]) -> KeyWire:
        """Encode the key attributes of ``key`` (plain values; other attributes ignored)."""
        missing = [k for k in self.key_names if k not in key]
        if missing:
            raise ValueError(f"key lacks attribute(s) {', '.join(missing)}")
        return self.key_wire({k: encode_value(key[k]) for k in self.key_names})

    def plain_key(self, item: Mapping[str, Any]) -> dict[str, Any]:
        """The key attributes of ``item`` (plain values), as a :class:`SimulatedChange`
        holds them (``bytearray``/``memoryview`` as ``bytes``)."""
        return {k: _plain_key_value(item[k]) for k in self.key_names}

    def hash_point(self, key_wire: Mapping[str, dict[str, Any]]) -> int:
        """Where the item's partition key falls in the 128-bit hash space."""
        # Like DynamoDB: the partition key alone decides the partition, so items sharing a
        # partition key share a lineage. md5 keeps routing stable across processes.
        digest = hashlib.md5(
            orjson.dumps(_key_part(key_wire[self.key_names[0]])), usedforsecurity=False
        ).digest()
        return int.from_bytes(digest, "big")

    # ------------------------------------------------------------------ items (locked)

    def check_exists(self) -> None:
        """ValueError once the table was deleted."""
        if self.deleted:
            raise ValueError(f"table {self.name} has been deleted")

    def put(
        self, key_wire: Mapping[str, dict[str, Any]], image: Image
    ) -> tuple[Image | None, bool]:
        """Store ``image`` unless the stored item encodes the same (DynamoDB records no
        change then); return the previous image and whether anything changed."""
        internal = self._internal_key(key_wire)
        old = self._items.get(internal)
        if old is not None and old[1] == image[1]:
            return old, False
        self._items[internal] = image
        return old, True

    def pop(self, key_wire: Mapping[str, dict[str, Any]]) -> Image | None:
        """Remove the item with this key; return it (None if there was none)."""
        return self._items.pop(self._internal_key(key_wire), None)

    def images(self) -> list[dict[str, Any]]:
        """The current items as written (copies), in first-write order."""
        return [dict(item) for item, _ in self._items.values()]

    def delete(self) -> None:
        """The table is gone: no more items, writes raise (:meth:`check_exists`)."""
        self.deleted = True
        self._items.clear()

    def _internal_key(self, key_wire: Mapping[str, dict[str, Any]]) -> tuple[tuple[str, str], ...]:
        return tuple(_key_part(key_wire[k]) for k in self.key_names)


def _key_part(value: Mapping[str, Any]) -> tuple[str, str]:
    """A hashable, canonical form of a key attribute value (numbers normalised)."""
    ((kind, payload),) = value.items()
    if kind == "N":
        try:
            return kind, str(Decimal(payload).normalize())
        except InvalidOperation:  # pragma: no cover - encode_value emits valid numbers
            return kind, str(payload)
    return kind, str(payload)


def _plain_key_value(value: Any) -> Any:
    return bytes(value) if isinstance(value, bytearray | memoryview) else value
