"""Failures the simulator injects: :class:`Faults` drawn at random rates, and failures queued
one by one (``fail_next``), both fired by a :class:`FaultInjector` before a call does anything.
"""

from __future__ import annotations

import hashlib
from collections import Counter, deque
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final

from ddbstreams.transport._seam import TransportError

__all__ = [
    "NO_RESPONSE_CODES",
    "OPERATIONS",
    "Failure",
    "FaultInjector",
    "Faults",
    "default_status",
]

#: The operations the simulator answers (``GetRecords`` included).
OPERATIONS: Final = frozenset(
    {"DescribeStream", "GetShardIterator", "GetRecords", "ListStreams", "DescribeTable"}
)
#: Transport-level failures: no response at all (the HTTP server drops the connection).
NO_RESPONSE_CODES: Final = frozenset({"ConnectionError", "Timeout"})


@dataclass(frozen=True, slots=True)
class Faults:
    """Failures injected at random, at chosen rates, into the simulator's operations.

    Each rate is a probability per call; their sum must not exceed 1. A call that draws a
    fault fails before doing anything:

    * ``throttle_rate``: ``LimitExceededException`` or ``ThrottlingException`` (status
      400; the code drawn among ``throttle_codes``);
    * ``server_error_rate``: ``InternalServerError`` (status 500);
    * ``connection_reset_rate``: in memory ``TransportError("ConnectionError")`` without a
      status; over HTTP the server resets the connection without answering;
    * ``timeout_rate``: in memory ``TransportError("Timeout")``; over HTTP the server stalls
      (``timeout_delay`` of :func:`~ddbstreams.testing.serve_simulator`) and then drops the
      connection, so a client with a shorter read timeout sees a timeout.

    ``operations`` limits injection to some of ``DescribeStream``, ``GetShardIterator``,
    ``GetRecords``, ``ListStreams``, ``DescribeTable`` (None: all of them).

    Draws are deterministic: whether the n-th call of an operation fails (counting every
    call since the simulator was made) depends only on the simulator's ``seed``, the
    operation, n and these rates, not on how calls of different operations interleave.
    """

    throttle_rate: float = 0.0
    server_error_rate: float = 0.0
    connection_reset_rate: float = 0.0
    timeout_rate: float = 0.0
    operations: Collection[str] | None = None
    throttle_codes: tuple[str, ...] = ("LimitExceededException", "ThrottlingException")

    def __post_init__(self) -> None:
        rates = (
            self.throttle_rate,
            self.server_error_rate,
            self.connection_reset_rate,
            self.timeout_rate,
        )
        if not all(0.0 <= rate <= 1.0 for rate in rates):
            raise ValueError("fault rates must be between 0 and 1")
        if sum(rates) > 1.0 + 1e-12:
            raise ValueError("fault rates must add up to at most 1")
        if self.operations is not None:
            operations = frozenset(self.operations)
            unknown = operations - OPERATIONS
            if unknown:
                raise ValueError(f"unknown operation(s) {', '.join(sorted(unknown))}")
            object.__setattr__(self, "operations", operations)
        if not self.throttle_codes:
            raise ValueError("throttle_codes must not be empty")

    @property
    def total_rate(self) -> float:
        """The probability that a call (of a selected operation) fails."""
        return (
            self.throttle_rate
            + self.server_error_rate
            + self.connection_reset_rate
            + self.timeout_rate
        )

    def applies_to(self, operation: str) -> bool:
        """Whether calls of ``operation`` may draw a fault."""
        return self.operations is None or operation in self.operations


@dataclass(frozen=True, slots=True)
class Failure:
    """One failure to raise instead of answering: an error code, its message and status
    (None: no response at all)."""

    code: str
    message: str
    status: int | None


def default_status(code: str) -> int | None:
    """The HTTP status the service answers ``code`` with (None: no response)."""
    if code in NO_RESPONSE_CODES:
        return None
    return 500 if code == "InternalServerError" else 400


def _unit(key: bytes, *parts: object) -> float:
    """A deterministic number in [0, 1) for ``parts`` under ``key``."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8, key=key).digest()
    return int.from_bytes(digest, "big") / 2.0**64


def _draw_fault(faults: Faults, key: bytes, operation: str, call: int) -> Failure | None:
    """The failure (if any) that the ``call``-th call of ``operation`` draws."""
    if not faults.applies_to(operation):
        return None
    u = _unit(key, operation, call)
    bands: tuple[tuple[float, str], ...] = (
        (faults.throttle_rate, "throttle"),
        (faults.server_error_rate, "InternalServerError"),
        (faults.connection_reset_rate, "ConnectionError"),
        (faults.timeout_rate, "Timeout"),
    )
    kind: str | None = None
    for rate, name in bands:
        if u < rate:
            kind = name
            break
        u -= rate
    if kind is None:
        return None
    if kind == "throttle":
        codes = faults.throttle_codes
        code = codes[int(_unit(key, operation, call, "code") * len(codes))]
        return Failure(code, f"Rate exceeded for {operation} (simulated fault)", 400)
    if kind == "InternalServerError":
        return Failure(kind, "Internal server error (simulated fault)", 500)
    if kind == "ConnectionError":
        return Failure(kind, "Connection reset by peer (simulated fault)", None)
    return Failure(kind, "Timed out waiting for the response (simulated fault)", None)


class FaultInjector:
    """The failures waiting for the simulator's operations: queued ones first (in the order
    :meth:`fail_next` queued them), then random draws from :attr:`faults`.

    Not thread-safe: the simulator calls it under its lock.
    """

    __slots__ = ("_key", "_queues", "faults", "injected")

    def __init__(self, seed: int, faults: Faults | None) -> None:
        #: The random failures injected from now on (None: none).
        self.faults = faults
        #: Failures injected so far, by error code.
        self.injected: Counter[str] = Counter()
        self._key = hashlib.sha256(f"faults:{seed!r}".encode()).digest()[:32]
        self._queues: dict[str, deque[Failure]] = {}

    def fail_next(
        self, operation: str, code: str, *, times: int, message: str | None, status: int | None
    ) -> None:
        """Queue ``times`` failures with ``code`` for the next calls of ``operation``
        (ValueError for an unknown operation or ``times < 1``)."""
        if operation not in OPERATIONS:
            raise ValueError(f"unknown operation {operation!r}")
        if times < 1:
            raise ValueError("times must be at least 1")
        failure = Failure(
            code,
            message or f"simulated {code}",
            status if status is not None else default_status(code),
        )
        self._queues.setdefault(operation, deque()).extend([failure] * times)

    def fire(self, operation: str, call: int) -> None:
        """Raise the failure due for the ``call``-th call of ``operation``, if any."""
        queue = self._queues.get(operation)
        failure = queue.popleft() if queue else None
        if failure is None and self.faults is not None:
            failure = _draw_fault(self.faults, self._key, operation, call)
        if failure is not None:
            self.injected[failure.code] += 1
            raise TransportError(failure.code, failure.message, failure.status)
