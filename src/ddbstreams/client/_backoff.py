"""Retry decisions: which failures to retry, and how long to wait (pure, no I/O).

:class:`ddbstreams.client._retrying.RetryExecutor` (the loop every client call runs on) performs
the waits through its clock; this module only decides. Delays are capped exponential with
full jitter: the n-th wait is uniform in ``[0, min(max_delay, base_delay * 2 ** (n - 1))]``,
which spreads concurrent shard readers apart after a burst of throttling.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from ddbstreams._clock import Clock
from ddbstreams._errors import ConfigurationError

__all__ = [
    "CONNECTION_CODES",
    "CREDENTIALS_CODES",
    "RETRYABLE_CODES",
    "THROTTLING_CODES",
    "CallPacer",
    "Decision",
    "RetryPolicy",
    "backoff_cap",
    "backoff_delay",
    "classify",
    "exponential_delay",
    "idle_poll_delay",
    "next_call_slot",
]

Decision = Literal["retry", "retry_connection", "fail"]

THROTTLING_CODES: Final = frozenset(
    {
        "LimitExceededException",
        "ThrottlingException",
        "Throttling",
        "ProvisionedThroughputExceededException",
        "RequestLimitExceeded",
        "RequestThrottled",
        "RequestThrottledException",
        "TooManyRequestsException",
    }
)
"""Codes that mean "slow down"; after the last retry they become ThrottledError."""

_TRANSIENT_SERVICE_CODES: Final = frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "RequestTimeout",
        "RequestTimeoutException",
        # A response whose body does not match its x-amz-crc32 header was damaged in flight.
        "ChecksumError",
    }
)

RETRYABLE_CODES: Final = THROTTLING_CODES | _TRANSIENT_SERVICE_CODES

CONNECTION_CODES: Final = frozenset({"ConnectionError", "Timeout"})
"""Transport-level codes: no response arrived."""

CREDENTIALS_CODES: Final = frozenset(
    {
        "NoCredentials",
        "UnrecognizedClientException",
        "InvalidSignatureException",
        "MissingAuthenticationToken",
        "MissingAuthenticationTokenException",
        "InvalidClientTokenId",
        "ExpiredTokenException",
        "ExpiredToken",
        "IncompleteSignature",
        "IncompleteSignatureException",
    }
)

# Named so that a 5xx status on one of these (unusual, but seen behind proxies) still fails
# at once: none of them gets better by asking again.
_NEVER_RETRY: Final = CREDENTIALS_CODES | frozenset(
    {
        "ResourceNotFoundException",
        "ValidationException",
        "ExpiredIteratorException",
        "TrimmedDataAccessException",
        "AccessDeniedException",
        "AccessDenied",
    }
)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently the client retries retryable failures.

    ``max_attempts`` counts every attempt including the first. ``connect_max_attempts`` is
    the (smaller) limit for failures where no response arrived, so that an unreachable
    endpoint fails within a few seconds rather than after a long backoff. Delays are in
    seconds. Raises :class:`ConfigurationError` for nonsensical values.
    """

    max_attempts: int = 8
    base_delay: float = 0.05
    max_delay: float = 5.0
    connect_max_attempts: int = 3

    def __post_init__(self) -> None:
        if self.max_attempts < 1 or self.connect_max_attempts < 1:
            raise ConfigurationError("RetryPolicy attempts must be at least 1")
        if not (self.base_delay >= 0 and self.max_delay >= 0):
            raise ConfigurationError("RetryPolicy delays must be non-negative numbers")
        if self.base_delay > self.max_delay:
            raise ConfigurationError("RetryPolicy base_delay must not exceed max_delay")


def exponential_delay(base_delay: float, max_delay: float, attempt: int) -> float:
    """``base_delay * 2 ** (attempt - 1)``, capped at ``max_delay``: the wait after the
    ``attempt``-th consecutive failure (1-based). The schedule every retry loop uses."""
    if attempt < 1:
        raise ValueError(f"attempt must be >= 1, got {attempt}")
    # Bound the exponent so huge attempt numbers cannot overflow a float.
    return float(min(max_delay, base_delay * 2.0 ** min(attempt - 1, 64)))


def backoff_cap(policy: RetryPolicy, attempt: int) -> float:
    """Upper bound of the wait after failed attempt number ``attempt`` (1-based)."""
    return exponential_delay(policy.base_delay, policy.max_delay, attempt)


def backoff_delay(policy: RetryPolicy, attempt: int, random_fraction: float) -> float:
    """Seconds to wait after failed attempt ``attempt`` (1-based): full jitter.

    ``random_fraction`` is a uniform draw from ``[0, 1)`` (``random.random()``); the delay is
    that fraction of :func:`backoff_cap`. Raises ValueError for out-of-range inputs.
    """
    if not 0.0 <= random_fraction <= 1.0:
        raise ValueError(f"random_fraction must be in [0, 1], got {random_fraction}")
    return backoff_cap(policy, attempt) * random_fraction


def classify(code: str, status: int | None) -> Decision:
    """Whether a failed call with AWS error ``code`` and HTTP ``status`` is worth retrying.

    ``"retry_connection"`` is for failures where no response arrived (``ConnectionError``,
    ``Timeout``): they are retried fewer times. Throttling and server-side failures (any
    5xx) are ``"retry"``. Everything else (not found, validation, expired iterator, trimmed
    data, access denied, credentials, other 4xx, unknown codes) is ``"fail"``.
    """
    if code in CONNECTION_CODES:
        return "retry_connection"
    if code in RETRYABLE_CODES:
        return "retry"
    if code in _NEVER_RETRY:
        return "fail"
    if status is not None and 500 <= status <= 599:
        return "retry"
    return "fail"


def idle_poll_delay(base_delay: float, max_delay: float, empty_pages: int) -> float:
    """How long a follow reader waits before polling an open shard again.

    After a page with records there is no wait (``empty_pages == 0``); after the n-th
    consecutive empty page the wait is ``base_delay * 2 ** (n - 1)``, capped at
    ``max_delay``. The cap bounds the delivery latency of a long-idle shard, the base
    keeps a busy shard's latency low, and the doubling keeps idle shards cheap.
    """
    if empty_pages <= 0:
        return 0.0
    return exponential_delay(base_delay, max_delay, empty_pages)


def next_call_slot(previous_slots: list[float], now: float, rate: float, window: float) -> float:
    """Earliest time at or after ``now`` a call may start so at most ``rate * window`` calls
    start in any ``window`` seconds, given the start times of earlier calls (ascending).

    Used to keep DescribeStream within its 10 calls/s limit across every task of a reader.
    """
    allowed = max(1, int(rate * window))
    recent = [slot for slot in previous_slots if slot > now - window]
    if len(recent) < allowed:
        return now
    return recent[-allowed] + window


class CallPacer:
    """Keeps calls within ``rate`` per second (any one-second window) on ``clock``: await
    :meth:`wait` before each call. Shared by every task that makes such calls (a reader's
    DescribeStream calls; a worker's child-shard queries)."""

    __slots__ = ("_clock", "_rate", "_slots")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._rate = rate
        self._clock = clock
        self._slots: list[float] = []

    @property
    def rate(self) -> float:
        return self._rate

    @rate.setter
    def rate(self, rate: float) -> None:
        """Change the rate (for calls not yet paced): a limit shared with others changes
        as they come and go."""
        self._rate = rate

    async def wait(self) -> None:
        """Return when the next call may start (at once while under the rate)."""
        now = self._clock.monotonic()
        slot = next_call_slot(self._slots, now, self._rate, 1.0)
        self._slots = [t for t in self._slots if t > now - 1.0] + [slot]
        if slot > now:
            await self._clock.sleep(slot - now)
