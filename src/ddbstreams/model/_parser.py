"""Parsers turn the raw record dicts of a GetRecords body into the objects a reader yields.

Interface only here; the default and raw parsers live in ``ddbstreams.model._decode``.
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar

__all__ = ["Parser"]

T = TypeVar("T")


class Parser(Protocol[T]):
    """Turns wire records (as ``orjson.loads`` gives them) into user-facing objects.

    ``raw_records`` are the elements of the ``Records`` array of one GetRecords response, in
    order; ``shard_id`` is the shard they were read from. Return one object per record, in
    the same order. Called on the event loop for every page: keep it fast and pure. Build
    expensive state once in ``__init__``.
    """

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[T]: ...
