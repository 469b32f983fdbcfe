"""The reader's calls to the service for one stream, with its policies for failures.

:class:`StreamCalls` wraps the :class:`~ddbstreams.StreamsClient` for the fetchers and the
coordinator of one reader: in follow mode, transient failures that outlived the client's
own retries (throttling, 5xx, network) are retried again later, reported as events, with
the schedule of :func:`~ddbstreams.client._backoff.exponential_delay`; every DescribeStream is
paced within ``describe_rate`` (the service allows 10 per second per stream); GetRecords
and GetShardIterator take a request slot (``max_concurrent_requests``, first come, first
served).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from ddbstreams._clock import Clock
from ddbstreams._errors import EndpointConnectionError, ServiceError, ThrottledError
from ddbstreams._events import EventHub, ReaderError
from ddbstreams.client._backoff import CallPacer, exponential_delay
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._types import Shard, StreamDescription
from ddbstreams.reading._options import ReaderOptions

__all__ = ["TRANSIENT_ERRORS", "StreamCalls"]

R = TypeVar("R")

TRANSIENT_ERRORS = (ThrottledError, ServiceError, EndpointConnectionError)
"""Errors a follow reader outlives: it waits and tries again rather than ending."""


class StreamCalls:
    """Calls about one stream, shared by a reader's fetchers and coordinator."""

    __slots__ = (
        "_describe_pacer",
        "client",
        "clock",
        "events",
        "follow",
        "options",
        "request_slots",
        "stream_arn",
    )

    def __init__(
        self,
        client: StreamsClient,
        stream_arn: str,
        *,
        options: ReaderOptions,
        clock: Clock,
        events: EventHub,
        follow: bool,
    ) -> None:
        self.client = client
        self.stream_arn = stream_arn
        self.options = options
        self.clock = clock
        self.events = events
        self.follow = follow
        self.request_slots = asyncio.Semaphore(options.max_concurrent_requests)
        self._describe_pacer = CallPacer(options.describe_rate, clock)

    async def retry_transient(self, call: Callable[[], Awaitable[R]], shard_id: str | None) -> R:
        """Run ``call``; in follow mode, keep retrying the errors a long-running reader
        outlives (after the client's own retries were spent), reporting each one.
        Cancellable while waiting."""
        attempt = 0
        while True:
            try:
                return await call()
            except TRANSIENT_ERRORS as exc:
                if not self.follow:
                    raise
                attempt += 1
                self.events.publish(ReaderError(exc, shard_id, retrying=True))
                await self.clock.sleep(
                    exponential_delay(1.0, self.options.retry_max_delay, attempt)
                )

    async def paced(self, call: Callable[[], Awaitable[R]]) -> R:
        """Run a DescribeStream ``call`` once the reader is within ``describe_rate``."""
        await self._describe_pacer.wait()
        return await call()

    async def describe(self) -> StreamDescription:
        """A full DescribeStream (every page), paced."""
        return await self.paced(lambda: self.client.describe_stream(self.stream_arn))

    async def child_shards(self, shard_id: str) -> tuple[Shard, ...]:
        """The listed children of ``shard_id`` (DescribeStream with a CHILD_SHARDS filter),
        paced, transient failures retried in follow mode."""
        return await self.retry_transient(
            lambda: self.paced(lambda: self.client.child_shards(self.stream_arn, shard_id)),
            shard_id,
        )

    async def check_stream_exists(self) -> None:
        """Raise StreamNotFoundError if the stream itself is gone (table deleted, engine
        restarted): a shard that vanished with its stream was not trimmed."""
        await self.retry_transient(
            lambda: self.paced(lambda: self.client.describe_stream_page(self.stream_arn, limit=1)),
            None,
        )
