"""Start positions of a reader, and the checkpoint type that doubles as one.

Stream-wide positions (``TRIM_HORIZON``, ``LATEST``, ``at_sequence``, ``after_sequence``,
:class:`Checkpoint`) are what users pass as ``start=``. Lineage turns one into a
:class:`ShardStart` per shard to read.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from ddbstreams._errors import InvalidPositionError

__all__ = [
    "LATEST",
    "TRIM_HORIZON",
    "AfterSequence",
    "AtSequence",
    "Checkpoint",
    "Latest",
    "ShardStart",
    "StartPosition",
    "TrimHorizon",
    "after_sequence",
    "at_sequence",
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


TRIM_HORIZON: Final = TrimHorizon()
LATEST: Final = Latest()


def at_sequence(sequence_number: str) -> AtSequence:
    """Position AT_SEQUENCE_NUMBER ``sequence_number``."""
    return AtSequence(sequence_number)


def after_sequence(sequence_number: str) -> AfterSequence:
    """Position AFTER_SEQUENCE_NUMBER ``sequence_number``."""
    return AfterSequence(sequence_number)


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a reader got to: per shard, the last sequence number handed to the caller.

    ``positions`` maps shard id to the last delivered sequence number (resume *after* it).
    ``finished`` holds shards read to their end and fully delivered. ``pending`` maps shards
    that were selected but have delivered nothing yet to the ShardStart they would begin at,
    so a resume does not skip them. Shards not named at all are resolved by lineage: the
    descendants of named shards are read from their beginning; their ancestors are done.
    A Checkpoint is itself a start position.
    """

    stream_arn: str
    positions: Mapping[str, str] = field(default_factory=dict)
    finished: frozenset[str] = frozenset()
    pending: Mapping[str, ShardStart] = field(default_factory=dict)

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
            )
        except (KeyError, TypeError, ValueError, InvalidPositionError) as exc:
            raise CheckpointError(f"corrupt checkpoint: {exc}") from exc


StartPosition = TrimHorizon | Latest | AtSequence | AfterSequence | Checkpoint

ShardIteratorType = Literal["TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"]


@dataclass(frozen=True, slots=True)
class ShardStart:
    """Where to begin reading one shard: a GetShardIterator type and, for the sequence
    number types, the sequence number."""

    iterator_type: ShardIteratorType
    sequence_number: str | None = None

    def __post_init__(self) -> None:
        needs_sequence = self.iterator_type in ("AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER")
        if needs_sequence != (self.sequence_number is not None):
            raise InvalidPositionError(
                f"{self.iterator_type} {'needs' if needs_sequence else 'takes no'} sequence number"
            )
        if self.sequence_number is not None:
            validate_sequence_number(self.sequence_number)

    def to_json(self) -> dict[str, str]:
        out: dict[str, str] = {"type": self.iterator_type}
        if self.sequence_number is not None:
            out["sequence_number"] = self.sequence_number
        return out

    @classmethod
    def from_json(cls, data: object) -> ShardStart:
        if not isinstance(data, dict):
            raise ValueError("shard start must be an object")
        kind = data.get("type")
        if kind not in ("TRIM_HORIZON", "LATEST", "AT_SEQUENCE_NUMBER", "AFTER_SEQUENCE_NUMBER"):
            raise ValueError(f"unknown shard iterator type {kind!r}")
        return cls(kind, data.get("sequence_number"))


SHARD_TRIM_HORIZON: Final = ShardStart("TRIM_HORIZON")
SHARD_LATEST: Final = ShardStart("LATEST")
