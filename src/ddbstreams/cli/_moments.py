"""The ``time:`` and ``ago:`` forms of a start position on the command line.

``time:2026-12-01T10:00:00Z`` is an ISO 8601 moment with its time zone (``Z`` or an offset:
a moment without one could be any of 24 hours, and a wrong guess would skip records or
print hours too many). ``ago:15m`` is that long before now: a whole or decimal number and
one unit of ``s``, ``m``, ``h``, ``d``. Both become :func:`~ddbstreams.at_time`.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Final

from ddbstreams.model._position import AtTime, at_time

__all__ = ["MOMENT_FORMS", "moment_text", "parse_ago", "parse_time"]

MOMENT_FORMS: Final = (
    "time:ISO-8601 with a time zone (e.g. time:2026-12-01T10:00:00Z) or ago:N[s|m|h|d]"
)

_DURATION: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNIT_SECONDS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86_400}
# Far beyond the 24 hours a stream keeps, yet small enough for datetime arithmetic.
_MAX_AGO: Final = timedelta(days=3650)


def parse_time(text: str) -> AtTime:
    """``time:`` value (after the colon) -> at_time; ValueError with a one-line reason."""
    value = text.strip()
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an ISO 8601 time (e.g. 2026-12-01T10:00:00Z)") from None
    if moment.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone: add Z for UTC or an offset such as +02:00")
    return at_time(moment)


def parse_ago(text: str, now: datetime | None = None) -> AtTime:
    """``ago:`` value (after the colon) -> at_time of that long before ``now`` (default:
    the current time); ValueError with a one-line reason."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError(
            f"{text!r} is not a duration: a number and one unit of s, m, h, d (e.g. 15m)"
        )
    delta = timedelta(seconds=float(match.group(1)) * _UNIT_SECONDS[match.group(2)])
    if delta > _MAX_AGO:
        raise ValueError(f"{text!r} is too long ago (streams keep records for 24 hours)")
    return at_time((now if now is not None else datetime.now(UTC)) - delta)


def moment_text(position: AtTime) -> str:
    """``position`` in the ``--from`` syntax: ``time:`` and the UTC moment."""
    return "time:" + position.moment.isoformat().replace("+00:00", "Z")
