"""Retry policy, backoff schedule and error classification (pure)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ddbstreams._errors import ConfigurationError
from ddbstreams.client._backoff import RetryPolicy, backoff_cap, backoff_delay, classify


def test_default_policy() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.max_delay) == (8, 0.05, 5.0)
    assert policy.connect_max_attempts == 3
    assert policy.connect_max_attempts < policy.max_attempts


def test_cap_doubles_from_base_until_max() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    caps = [backoff_cap(policy, n) for n in range(1, 8)]
    assert caps == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0])


def test_cap_is_monotone_and_bounded_for_huge_attempts() -> None:
    policy = RetryPolicy()
    caps = [backoff_cap(policy, n) for n in range(1, 2000)]
    assert all(a <= b for a, b in itertools.pairwise(caps))
    assert caps[0] == policy.base_delay
    assert caps[-1] == policy.max_delay


@given(
    attempt=st.integers(min_value=1, max_value=10_000),
    fraction=st.floats(min_value=0.0, max_value=1.0, exclude_max=True),
)
def test_delay_is_full_jitter_within_cap(attempt: int, fraction: float) -> None:
    policy = RetryPolicy()
    delay = backoff_delay(policy, attempt, fraction)
    cap = backoff_cap(policy, attempt)
    assert 0.0 <= delay <= cap <= policy.max_delay
    assert delay == pytest.approx(cap * fraction)


def test_delay_endpoints() -> None:
    policy = RetryPolicy(base_delay=0.5, max_delay=4.0)
    assert backoff_delay(policy, 3, 0.0) == 0.0
    assert backoff_delay(policy, 3, 0.5) == pytest.approx(1.0)
    assert backoff_delay(policy, 3, 1.0) == pytest.approx(2.0)


@pytest.mark.parametrize(("attempt", "fraction"), [(0, 0.5), (-1, 0.5), (1, -0.1), (1, 1.5)])
def test_delay_rejects_out_of_range(attempt: int, fraction: float) -> None:
    with pytest.raises(ValueError, match="must be"):
        backoff_delay(RetryPolicy(), attempt, fraction)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_attempts": 0},
        {"connect_max_attempts": 0},
        {"base_delay": -1.0},
        {"max_delay": -1.0, "base_delay": 0.0},
        {"base_delay": 2.0, "max_delay": 1.0},
        {"base_delay": float("nan")},
    ],
)
def test_policy_rejects_nonsense(kwargs: dict[str, float]) -> None:
    with pytest.raises(ConfigurationError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("LimitExceededException", 400),
        ("ThrottlingException", 400),
        ("ProvisionedThroughputExceededException", 400),
        ("RequestLimitExceeded", 400),
        ("InternalServerError", 500),
        ("InternalFailure", 500),
        ("ServiceUnavailable", 503),
        ("ChecksumError", 200),
        ("SomethingNew", 500),
        ("SomethingNew", 502),
        ("SomethingNew", 599),
        ("LimitExceededException", None),
    ],
)
def test_retryable(code: str, status: int | None) -> None:
    assert classify(code, status) == "retry"


@pytest.mark.parametrize("code", ["ConnectionError", "Timeout"])
def test_connection_failures_retry_separately(code: str) -> None:
    assert classify(code, None) == "retry_connection"


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ResourceNotFoundException", 400),
        ("ValidationException", 400),
        ("ExpiredIteratorException", 400),
        ("TrimmedDataAccessException", 400),
        ("AccessDeniedException", 400),
        ("AccessDenied", 403),
        ("UnrecognizedClientException", 400),
        ("InvalidSignatureException", 400),
        ("MissingAuthenticationToken", 403),
        ("NoCredentials", None),
        ("ParamValidationError", None),
        ("SerializationException", 400),
        ("SomethingNew", 400),
        ("SomethingNew", 404),
        ("SomethingNew", None),
        # A non-retryable code stays so even when a proxy reports it with a 5xx status.
        ("ResourceNotFoundException", 500),
        ("ExpiredIteratorException", 503),
    ],
)
def test_not_retryable(code: str, status: int | None) -> None:
    assert classify(code, status) == "fail"
