"""Start positions of a reader, and the checkpoint type that doubles as one.

Stream-wide positions (``TRIM_HORIZON``, ``LATEST``, ``at_sequence``, ``after_sequence``,
``at_time``, :class:`Checkpoint`) are what users pass as ``start=``. Lineage turns one into a
:class:`ShardStart` per shard to read.

The service has no AT_TIMESTAMP iterator, so ``at_time`` is built from parts: lineage skips
the shards that ended before the moment, and every other shard is read from its start with
a time filter (``ShardStart.not_before``) that drops the records older than the moment, up
to the first one that is not (see :func:`creation_time_threshold` for the rounding).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final, Literal

from ddbstreams._errors import InvalidPositionError

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "AfterSequence",
    "AtSequence",
    "AtTime",
    "Checkpoint",
    "Latest",
    "ShardStart",
    "StartPosition",
    "TrimHorizon",
    "after_sequence",
    "at_sequence",
    "at_time",
    "creation_time_resolution",
    "creation_time_threshold",
    "validate_moment",
    "validate_sequence_number",
]

_SEQUENCE = re.compile(r"^\d{1,40}$")


def validate_sequence_number(sequence_number: str) -> str:
    """Return ``sequence_number`` if it is a numeric string, else raise InvalidPositionError."""
    if not isinstance(sequence_number, str) or _SEQUENCE.fullmatch(sequence_number) is None:
        raise InvalidPositionError(
            f"invalid sequence number {sequence_number!r}: expected a string of 1 to 40 digits"
        )
    return sequence_number


@dataclass(frozen=True, slots=True)
class TrimHorizon:
    """Start at the oldest record still in the stream."""

    def __repr__(self) -> str:
        return "TRIM_HORIZON"


@dataclass(frozen=True, slots=True)
class Latest:
    """Start just after the newest record: only changes made from now on."""

    def __repr__(self) -> str:
        return "LATEST"


@dataclass(frozen=True, slots=True)
class AtSequence:
    """Start at the record with this sequence number (in the shard whose range holds it)."""

    sequence_number: str

    def __post_init__(self) -> None:
        validate_sequence_number(self.sequence_number)


@dataclass(frozen=True, slots=True)
class AfterSequence:
    """Start just after the record with this sequence number."""

    sequence_number: str

    def __post_init__(self) -> None:
        validate_sequence_number(self.sequence_number)


def validate_moment(moment: object) -> datetime:
    """``moment`` as a UTC datetime; InvalidPositionError unless it is a timezone-aware
    ``datetime`` (a naive one could mean any time zone, and a guess could skip hours)."""
    if not isinstance(moment, datetime):
        raise InvalidPositionError(f"invalid moment {moment!r}: expected a datetime")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidPositionError(
            f"invalid moment {moment.isoformat()}: a naive datetime is ambiguous; pass a "
            "timezone-aware one, e.g. datetime(2026, 12, 1, 10, 0, tzinfo=UTC)"
        )
    return moment.astimezone(UTC)


@dataclass(frozen=True, slots=True)
class AtTime:
    """Start at ``moment``: in each shard, at the first record created at or after it.

    ``moment`` is a timezone-aware datetime (kept in UTC). Shards whose children were
    created before the moment are skipped; the others are read from their start and their
    records older than the moment are dropped (the service has no AT_TIMESTAMP iterator).
    """

    moment: datetime

    def __post_init__(self) -> None:
        # Frozen: normalising to UTC must go around the generated __setattr__.
        object.__setattr__(self, "moment", validate_moment(self.moment))

    def __repr__(self) -> str:
        return f"at_time({self.moment.isoformat()})"


TRIM_HORIZON: Final = TrimHorizon()
LATEST: Final = Latest()


def at_sequence(sequence_number: str) -> AtSequence:
    """Position AT_SEQUENCE_NUMBER ``sequence_number``."""
    return AtSequence(sequence_number)


def after_sequence(sequence_number: str) -> AfterSequence:
    """Position AFTER_SEQUENCE_NUMBER ``sequence_number``."""
    return AfterSequence(sequence_number)


def at_time(moment: datetime) -> AtTime:
    """Position "records created at or after ``moment``" (a timezone-aware datetime).

    Raises InvalidPositionError for a naive datetime or anything that is not a datetime.
    """
    return AtTime(moment)


def creation_time_resolution(stream_arn: str) -> int:
    """Seconds to which the stream rounds ApproximateCreationDateTime down: 60 on
    DynamoDB Local (its ARNs say region ``ddblocal``), 1 on AWS."""
    parts = stream_arn.split(":", 5)
    return 60 if len(parts) > 3 and parts[3] == "ddblocal" else 1


def creation_time_threshold(moment: datetime, resolution: int = 1) -> float:
    """The oldest ApproximateCreationDateTime (epoch seconds) a read from ``moment`` keeps.

    The stream rounds creation times down (to ``resolution`` seconds), so a record made
    just after the moment may carry a time just before it. Comparing with the moment
    rounded down the same way keeps every record whose rounded time equals the moment's:
    inclusive, never losing a record of the moment itself (a few made shortly before it
    may come along).
    """
    return float(math.floor(moment.timestamp() / resolution) * resolution)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a reader got to: per shard, the last sequence number handed to the caller.

    ``positions`` maps shard id to the last delivered sequence number (resume *after* it).
    ``finished`` holds shards read to their end and fully delivered. ``pending`` maps shards
    that were selected but have delivered nothing yet to the ShardStart they would begin at,
    so a resume does not skip them; a shard of an ``at_time`` read that has not reached the
    moment yet keeps its time filter there (``ShardStart.not_before``). Shards not named at
    all are resolved by lineage: the descendants of named shards are read from their
    beginning; their ancestors are done. A Checkpoint is itself a start position.

    ``times`` (optional) maps shards of ``positions`` to the approximate creation time
    (epoch seconds) of their checkpointed record, so that ``ddbstreams lag`` can tell how far
    behind a stored checkpoint is without reading it back. Advisory: it plays no part in
    where a read resumes, nor in comparing checkpoints, and is stored only when not empty.
    """

    stream_arn: str
    positions: Mapping[str, str] = field(default_factory=dict)
    finished: frozenset[str] = frozenset()
    pending: Mapping[str, ShardStart] = field(default_factory=dict)
    times: Mapping[str, float] = field(default_factory=dict, compare=False)

    def to_json(self) -> dict[str, object]:
        """A JSON-serialisable form (see :meth:`from_json`)."""
        return {
            "version": 1,
            "stream_arn": self.stream_arn,
            "positions": dict(sorted(self.positions.items())),
            "finished": sorted(self.finished),
            "pending": {
                shard_id: start.to_json() for shard_id, start in sorted(self.pending.items())
            },
            # Only when known: a checkpoint without times is stored exactly as before.
            **({"times": dict(sorted(self.times.items()))} if self.times else {}),
        }

    @classmethod
    def from_json(cls, data: object) -> Checkpoint:
        """Rebuild a checkpoint from :meth:`to_json` output, as the dict or as JSON text
        (``str`` or ``bytes``, e.g. after ``json.dumps``); CheckpointError if malformed."""
        from ddbstreams._errors import CheckpointError

        try:
            if isinstance(data, str | bytes | bytearray):
                data = json.loads(data)
            if not isinstance(data, dict) or data.get("version") != 1:
                raise ValueError("unknown checkpoint format or version")
            stream_arn = data["stream_arn"]
            positions = data["positions"]
            finished = data["finished"]
            pending = data.get("pending", {})
            if not isinstance(stream_arn, str) or not isinstance(positions, dict):
                raise ValueError("stream_arn must be a string and positions an object")
            if not isinstance(finished, list) or not isinstance(pending, dict):
                raise ValueError("finished must be a list and pending an object")
            for shard_id, seq in positions.items():
                if not isinstance(shard_id, str):
                    raise ValueError("shard ids must be strings")
                validate_sequence_number(seq)
            if not all(isinstance(s, str) for s in finished):
                raise ValueError("finished shard ids must be strings")
            return cls(
                stream_arn=stream_arn,
                positions=dict(positions),
                finished=frozenset(finished),
                pending={k: ShardStart.from_json(v) for k, v in pending.items()},
                times=_times_from_json(data.get("times", {})),
            )
        except (KeyError, TypeError, ValueError, InvalidPositionError) as exc:
            raise CheckpointError(f"corrupt checkpoint: {exc}") from exc


def _times_from_json(times: object) -> dict[str, float]:
    """The ``times`` of a stored checkpoint (absent in older ones); ValueError if malformed."""
    if not isinstance(times, dict):
        raise ValueError("times must be an object")
    out: dict[str, float] = {}
    for shard_id, seconds in times.items():
        if not isinstance(seconds, int | float) or isinstance(seconds, bool):
            raise ValueError(f"the time of shard {shard_id!r} is not a number: {seconds!r}")
        if not math.isfinite(seconds):
            raise ValueError(f"the time of shard {shard_id!r} is not finite")
        out[shard_id] = float(seconds)
    return out


StartPosition = TrimHorizon | Latest | AtSequence | AfterSequence | AtTime | Checkpoint

ShardIteratorType = Literal["TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]


@dataclass(frozen=True, slots=True)
class ShardStart:
    """Where to begin reading one shard: a GetShardIterator type and, for the sequence
    number types, the sequence number.

    ``not_before`` (a UTC datetime, from an ``at_time`` start) is a time filter: the
    shard's records created before it are dropped, up to the first one that is not; from
    there on everything is kept. Not with ``LATEST`` (nothing older follows it).
    """

    iterator_type: ShardIteratorType
    sequence_number: str | None = None
    not_before: datetime | None = None

    def __post_init__(self) -> None:
        needs_sequence = self.iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
        if needs_sequence != (self.sequence_number is not None):
            raise InvalidPositionError(
                f"{self.iterator_type} {'needs' if needs_sequence else 'takes no'} sequence number"
            )
        if self.sequence_number is not None:
            validate_sequence_number(self.sequence_number)
        if self.not_before is not None:
            if self.iterator_type == "LATEST":
                raise InvalidPositionError("LATEST takes no time filter")
            object.__setattr__(self, "not_before", validate_moment(self.not_before))

    def without_filter(self) -> ShardStart:
        """The same start without its time filter."""
        if self.not_before is None:
            return self
        return ShardStart(self.iterator_type, self.sequence_number)

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {"type": self.iterator_type}
        if self.sequence_number is not None:
            out["sequence_number"] = self.sequence_number
        if self.not_before is not None:
            # Only written when set: a checkpoint without time filters reads as before.
            out["not_before"] = self.not_before.isoformat()
        return out

    @classmethod
    def from_json(cls, data: object) -> ShardStart:
        if not isinstance(data, dict):
            raise ValueError("shard start must be an object")
        kind = data.get("type")
        if kind not in ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            raise ValueError(f"unknown shard iterator type {kind!r}")
        not_before = data.get("not_before")
        if not_before is not None:
            if not isinstance(not_before, str):
                raise ValueError("not_before must be an ISO 8601 string")
            not_before = datetime.fromisoformat(not_before)
        return cls(kind, data.get("sequence_number"), not_before)


SHARD_TRIM_HORIZON: Final = ShardStart("TRIM_HORIZON")
SHARD_LATEST: Final = ShardStart("LATEST")
