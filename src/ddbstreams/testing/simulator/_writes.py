"""Writes: items put into and deleted from the source table, and the stream records (and
:class:`SimulatedChange` entries) those changes produce."""

from __future__ import annotations

import copy
import random
import threading
from collections.abc import Mapping
from typing import Any, Protocol

from ddbstreams._clock import Clock
from ddbstreams.model._encode import encode_item
from ddbstreams.model._types import EventName
from ddbstreams.testing.simulator._records import (
    Image,
    SimulatedChange,
    encode_record,
    visible_images,
)
from ddbstreams.testing.simulator._stream import StreamModel
from ddbstreams.testing.simulator._table import KeyWire, SourceTable

__all__ = ["ChangeWriter", "WriterSettings"]


class WriterSettings(Protocol):
    """What the writer reads from the simulator, and the history it appends to."""

    @property
    def clock(self) -> Clock: ...

    @property
    def region(self) -> str: ...

    @property
    def stream_view_type(self) -> str: ...

    @property
    def history(self) -> list[SimulatedChange]: ...


class ChangeWriter:
    """Applies writes to a :class:`SourceTable` and records each change in the
    :class:`StreamModel`, in the shard owning the item's partition key, and in ``history``.

    Values are encoded before the simulator's ``lock`` is taken; the rest happens under it.
    """

    __slots__ = ("_lock", "_rng", "_settings", "_stream", "_table")

    def __init__(
        self,
        settings: WriterSettings,
        table: SourceTable,
        stream: StreamModel,
        *,
        lock: threading.Lock,
        rng: random.Random,
    ) -> None:
        self._settings = settings
        self._table = table
        self._stream = stream
        self._lock = lock
        self._rng = rng  # shared with the simulator: one seeded sequence of draws

    def put(self, item: Mapping[str, Any]) -> SimulatedChange | None:
        """INSERT or MODIFY ``item``; None if unchanged or the stream is disabled."""
        new_wire = encode_item(item)
        key_wire = self._table.key_wire(new_wire)
        # A deep copy: the caller may mutate nested values later; history must not change.
        new_plain = copy.deepcopy(dict(item))
        with self._lock:
            self._table.check_exists()
            old, changed = self._table.put(key_wire, (new_plain, new_wire))
            if not changed:
                return None
            event_name: EventName = "MODIFY" if old is not None else "INSERT"
            return self._record(event_name, key_wire, new_plain, new=(new_plain, new_wire), old=old)

    def delete(self, key: Mapping[str, Any], *, ttl: bool) -> SimulatedChange | None:
        """REMOVE the item with ``key`` (by time-to-live if ``ttl``); None if none."""
        key_wire = self._table.encode_key(key)
        with self._lock:
            self._table.check_exists()
            old = self._table.pop(key_wire)
            if old is None:
                return None
            return self._record("REMOVE", key_wire, old[0], new=None, old=old, ttl=ttl)

    def _record(
        self,
        event_name: EventName,
        key_wire: KeyWire,
        item: Mapping[str, Any],
        *,
        new: Image | None,
        old: Image | None,
        ttl: bool = False,
    ) -> SimulatedChange | None:
        """Record the change of ``item`` (plain values) in the shard owning its key."""
        stream, settings = self._stream, self._settings
        if not stream.enabled:
            return None
        stream.maintain()
        view = settings.stream_view_type
        new, old = visible_images(view, new, old)
        shard = stream.route(self._table.hash_point(key_wire))
        seq = stream.allocate()
        now = settings.clock.time()
        change = SimulatedChange(
            event_id=f"{self._rng.getrandbits(128):032x}",
            event_name=event_name,
            shard_id=shard.shard_id,
            sequence_number=str(seq),
            keys=self._table.plain_key(item),
            new_image=None if new is None else dict(new[0]),
            old_image=None if old is None else dict(old[0]),
            approximate_creation_time=now,
            is_ttl_delete=ttl,
        )
        raw = encode_record(
            change,
            region=settings.region,
            view=view,
            key_wire=key_wire,
            new_wire=None if new is None else new[1],
            old_wire=None if old is None else old[1],
        )
        stream.append(shard, raw, seq, now)
        settings.history.append(change)
        return change
