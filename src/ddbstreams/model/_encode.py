"""Python values to DynamoDB attribute values (the wire's DynamoDB JSON), the inverse of
the default decoding. Used by test helpers, the simulator and the demo to write items."""

from __future__ import annotations

import base64
from collections.abc import Mapping, Set
from decimal import Decimal
from typing import Any

__all__ = ["encode_item", "encode_value"]


def _number(value: int | Decimal | float) -> str:
    if isinstance(value, bool):  # pragma: no cover - guarded by caller
        raise TypeError("bool is not a number")
    if isinstance(value, float):
        # Floats are inexact; go through repr so 0.1 stays "0.1" rather than its binary expansion.
        value = Decimal(repr(value))
    text = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError(f"DynamoDB numbers must be finite, got {value}")
        text = format(value, "f") if "E" in text or "e" in text else text
    return text


def encode_value(value: Any) -> dict[str, Any]:
    """Encode one Python value as an attribute value.

    str→S, bool→BOOL, int/Decimal/float→N, bytes→B (base64 text, as on the wire), None→NULL,
    Mapping→M, list/tuple→L, set of str/number/bytes→SS/NS/BS (sets must be non-empty).
    """
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | Decimal | float):
        return {"N": _number(value)}
    if isinstance(value, bytes | bytearray | memoryview):
        return {"B": base64.b64encode(bytes(value)).decode("ascii")}
    if value is None:
        return {"NULL": True}
    if isinstance(value, Mapping):
        return {"M": {str(k): encode_value(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [encode_value(v) for v in value]}
    if isinstance(value, Set):
        if not value:
            raise ValueError("DynamoDB sets cannot be empty")
        members = list(value)
        if all(isinstance(m, str) for m in members):
            return {"SS": sorted(members)}
        if all(isinstance(m, bytes | bytearray) for m in members):
            return {"BS": sorted(base64.b64encode(bytes(m)).decode("ascii") for m in members)}
        if all(isinstance(m, int | Decimal | float) and not isinstance(m, bool) for m in members):
            return {"NS": sorted(_number(m) for m in members)}
        raise TypeError(f"set members must all be str, bytes or numbers: {value!r}")
    raise TypeError(f"cannot encode {type(value).__name__} as a DynamoDB attribute value")


def encode_item(item: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Encode a whole item (attribute name → Python value)."""
    return {str(name): encode_value(value) for name, value in item.items()}
