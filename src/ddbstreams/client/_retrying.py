"""The retry executor every client call runs on: streams and state tables alike.

:class:`RetryExecutor` sends a request through a :class:`~ddbstreams.transport._seam.Transport`,
retries retryable failures with capped exponential backoff and full jitter (the schedule
and the decision come from :mod:`ddbstreams.client._backoff`; the waits go through an injectable
clock), tells its listeners about every retry and every successful response, and maps the
final failure with :func:`~ddbstreams.client._errormap.map_transport_error`. When the transport
knows no region yet, the first stream ARN a call is about names it.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from ddbstreams._clock import Clock
from ddbstreams._errors import DDBStreamsError, InvalidStreamArnError
from ddbstreams.client._backoff import THROTTLING_CODES, RetryPolicy, backoff_delay, classify
from ddbstreams.client._errormap import CallTarget, malformed_response_error, map_transport_error
from ddbstreams.model._arn import parse_stream_arn
from ddbstreams.transport._seam import Transport, TransportError

__all__ = [
    "Listeners",
    "ResponseListener",
    "RetryExecutor",
    "RetryListener",
    "RetryNotice",
]

R = TypeVar("R")
V = TypeVar("V")

log = logging.getLogger("ddbstreams.client")


@dataclass(frozen=True, slots=True)
class RetryNotice:
    """A failed call about to be retried: what failed, why, and how long the client waits.

    ``throttled`` tells throttling (LimitExceeded/Throttling) apart from 5xx and connection
    failures. Given to the listeners of :meth:`StreamsClient.add_retry_listener`.
    """

    operation: str
    code: str
    attempt: int
    delay: float
    throttled: bool
    stream_arn: str | None
    shard_id: str | None


RetryListener = Callable[[RetryNotice], None]

ResponseListener = Callable[[str], None]
"""Called with the operation name after each call that got a successful response."""


class Listeners(Generic[V]):
    """Callbacks of one kind. A failing callback is logged and otherwise ignored."""

    __slots__ = ("_kind", "_listeners")

    def __init__(self, kind: str) -> None:
        self._kind = kind
        self._listeners: list[Callable[[V], None]] = []

    def add(self, listener: Callable[[V], None]) -> Callable[[], None]:
        """Add ``listener``; returns a function that removes it."""
        self._listeners.append(listener)

        def remove() -> None:
            if listener in self._listeners:
                self._listeners.remove(listener)

        return remove

    def __bool__(self) -> bool:
        return bool(self._listeners)

    def notify(self, value: V) -> None:
        for listener in list(self._listeners):
            try:
                listener(value)
            except Exception:
                log.exception("%s listener %r failed", self._kind, listener)


class RetryExecutor:
    """Runs calls through one transport with retries, listeners and error mapping.

    Shared by the streams operations (:class:`~ddbstreams.client._streams.StreamsClient`) and the
    state-table operations (:class:`~ddbstreams.client._tables.StateTableClient`), so both wait
    through the same clock, follow the same :class:`RetryPolicy` and report to the same
    listeners. Owns the transport: :meth:`close` closes it, and calls after that raise
    RuntimeError.
    """

    def __init__(
        self, transport: Transport, *, policy: RetryPolicy, clock: Clock, rng: random.Random
    ) -> None:
        self._transport = transport
        self._policy = policy
        self._clock = clock
        self._rng = rng
        self._closed = False
        self.retry_listeners: Listeners[RetryNotice] = Listeners("retry")
        self.response_listeners: Listeners[str] = Listeners("response")
        # Only a transport that knows no region yet can take the one of a stream ARN.
        self._needs_region = getattr(transport, "region_name", "") is None

    @property
    def transport(self) -> Transport:
        return self._transport

    @property
    def clock(self) -> Clock:
        return self._clock

    @property
    def policy(self) -> RetryPolicy:
        return self._policy

    @property
    def endpoint_url(self) -> str | None:
        """The endpoint in use, when the transport knows it (for messages and display)."""
        value = getattr(self._transport, "endpoint_url", None)
        return value if isinstance(value, str) else None

    def adopt_region(self, stream_arn: str) -> None:
        """Let a transport that knows no region yet use the one ``stream_arn`` names.

        Called for every call about a stream; only the first valid ARN counts.
        """
        if not self._needs_region:
            return
        try:
            region = parse_stream_arn(stream_arn).region
        except InvalidStreamArnError:
            return  # the call itself reports the ARN
        adopt = getattr(self._transport, "adopt_region", None)
        if adopt is not None:
            adopt(region)
        self._needs_region = False

    async def close(self) -> None:
        """Close the transport (and its connections). Idempotent."""
        if self._closed:
            return
        self._closed = True
        await self._transport.close()

    async def call(
        self, operation: str, params: dict[str, Any], target: CallTarget
    ) -> dict[str, Any]:
        """``operation`` with ``params`` through the transport, retried."""
        return await self.run(operation, lambda: self._transport.call(operation, params), target)

    async def run(
        self, operation: str, attempt: Callable[[], Awaitable[R]], target: CallTarget
    ) -> R:
        """Run ``attempt`` until it succeeds, a failure is not retryable, or retries run out.

        ``attempt`` raises :class:`TransportError` on failure; the last one is raised
        mapped to the library's exception tree, the TransportError chained as its cause.
        """
        if self._closed:
            raise RuntimeError("StreamsClient is closed")
        if target.stream_arn is not None:
            self.adopt_region(target.stream_arn)
        attempts = 0
        connection_failures = 0
        while True:
            attempts += 1
            try:
                result = await attempt()
            except TransportError as error:
                decision = classify(error.code, error.status)
                if decision == "retry_connection":
                    connection_failures += 1
                    exhausted = connection_failures >= self._policy.connect_max_attempts
                else:
                    exhausted = attempts >= self._policy.max_attempts
                if decision == "fail" or exhausted:
                    raise map_transport_error(
                        operation, error, target, endpoint=self.endpoint_url, attempts=attempts
                    ) from error
                await self._wait(operation, error.code, attempts, target)
                continue
            if self.response_listeners:
                self.response_listeners.notify(operation)
            return result

    async def _wait(self, operation: str, code: str, attempt: int, target: CallTarget) -> None:
        delay = backoff_delay(self._policy, attempt, self._rng.random())
        if self.retry_listeners:
            self.retry_listeners.notify(
                RetryNotice(
                    operation,
                    code,
                    attempt,
                    delay,
                    code in THROTTLING_CODES,
                    target.stream_arn,
                    target.shard_id,
                )
            )
        log.debug(
            "%s on %s failed (%s), attempt %d; retrying in %.3fs",
            operation,
            target.describe(),
            code,
            attempt,
            delay,
        )
        await self._clock.sleep(delay)

    def malformed(self, operation: str, target: CallTarget, exc: Exception) -> DDBStreamsError:
        """The error for a response the transport parsed but whose content is unusable."""
        return malformed_response_error(operation, target, exc, endpoint=self.endpoint_url)
