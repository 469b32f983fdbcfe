"""The blocking facade: the async core driven from a background event loop.

No reading logic lives here. A :class:`_LoopThread` runs an event loop in a daemon thread;
:class:`BlockingStreamReader` forwards each call to the async :class:`StreamReader` on that
loop and waits for the result, fetching a whole batch per crossing so the thread hop is
paid once per page rather than once per record.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from types import TracebackType
from typing import Any, Generic, Self, TypeVar, overload

from ddbstreams._clock import Clock
from ddbstreams.client._streams import StreamsClient
from ddbstreams.consuming._consumer import Consumer, ConsumerLifecycle, Handler
from ddbstreams.model._parser import Parser
from ddbstreams.model._position import TRIM_HORIZON, Checkpoint, StartPosition
from ddbstreams.model._types import Record
from ddbstreams.reading import ReaderOptions, StreamReader

__all__ = ["BlockingConsumer", "BlockingStreamReader", "read"]

T = TypeVar("T")
R = TypeVar("R")


class _LoopThread:
    """An event loop running in a daemon thread, owned by one blocking reader."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="ddbstreams-loop", daemon=True
        )
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, R]) -> R:
        """Run ``coroutine`` on the loop and wait for it; Ctrl-C cancels it there too."""
        future: Future[R] = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result()
        except BaseException:
            if not future.done():
                future.cancel()
                # Wait for the cancellation to finish so no task is left running.
                with contextlib.suppress(BaseException):
                    future.exception(timeout=30)
            raise

    @property
    def closed(self) -> bool:
        return self._loop.is_closed()

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


class BlockingStreamReader(Generic[T]):
    """Blocking counterpart of :class:`StreamReader`, with the same arguments and semantics.

    Use as a context manager and iterate it; :meth:`checkpoint` names exactly the records
    the iterator returned. A client passed as ``client=`` is used from the reader's own
    background loop, so it must not be in use by another event loop at the same time.
    """

    def __init__(self, stream: str, **kwargs: Any) -> None:
        self._portal = _LoopThread()
        try:
            self._reader: StreamReader[T] = self._portal.run(_make_reader(stream, kwargs))
        except BaseException:
            self._portal.close()
            raise
        self._closed = False

    def start(self) -> None:
        """Resolve the stream and start fetching (see :meth:`StreamReader.start`)."""
        self._portal.run(self._reader.start())

    def stop(self) -> None:
        """Stop fetching, wait for every fetcher and stop the background loop. Idempotent."""
        if self._closed:
            return
        self._closed = True
        try:
            self._portal.run(self._reader.stop())
        finally:
            self._portal.close()

    close = stop

    @property
    def stream_arn(self) -> str:
        return self._reader.stream_arn

    def checkpoint(self) -> Checkpoint:
        """See :meth:`StreamReader.checkpoint`: exactly what this iterator returned."""
        if self._closed:
            return self._reader.checkpoint()
        # Read on the loop thread: the lineage state it consults changes there.
        return self._portal.run(_call(self._reader.checkpoint))

    def __enter__(self) -> Self:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def batches(self, max_size: int = 1000) -> Iterator[list[T]]:
        """Iterate lists of at most ``max_size`` records from one shard each, in order."""
        while True:
            batch = self._portal.run(self._reader.next_batch(max_size))
            if batch is None:
                return
            yield batch

    def __iter__(self) -> Iterator[T]:
        # One loop crossing per page; records are handed out one by one on this side so
        # checkpoint() names exactly the records this iterator returned.
        delivery = self._reader.delivery
        while self._portal.run(delivery.fill()):
            while delivery.current is not None:
                yield delivery.take_one()


async def _call(function: Callable[[], R]) -> R:
    return function()


async def _make_reader(stream: str, kwargs: dict[str, Any]) -> StreamReader[Any]:
    # Built on the background loop so its queues belong to that loop.
    return StreamReader(stream, **kwargs)


@overload
def read(
    stream: str,
    *,
    start: StartPosition = ...,
    follow: bool = ...,
    endpoint_url: str | None = ...,
    region_name: str | None = ...,
    client: StreamsClient | None = ...,
    parser: None = ...,
    options: ReaderOptions | None = ...,
    clock: Clock | None = ...,
    **tuning: Any,
) -> Iterator[Record]: ...


@overload
def read(
    stream: str,
    *,
    start: StartPosition = ...,
    follow: bool = ...,
    endpoint_url: str | None = ...,
    region_name: str | None = ...,
    client: StreamsClient | None = ...,
    parser: Parser[T],
    options: ReaderOptions | None = ...,
    clock: Clock | None = ...,
    **tuning: Any,
) -> Iterator[T]: ...


def read(
    stream: str,
    *,
    start: StartPosition = TRIM_HORIZON,
    follow: bool = False,
    endpoint_url: str | None = None,
    region_name: str | None = None,
    client: StreamsClient | None = None,
    parser: Parser[Any] | None = None,
    options: ReaderOptions | None = None,
    clock: Clock | None = None,
    **tuning: Any,
) -> Iterator[Any]:
    """Read a stream without asyncio: ``for record in ddbstreams.read(stream): ...``.

    Same arguments and semantics as :class:`StreamReader` (``tuning`` takes its keyword
    options such as ``max_concurrent_shards``). Errors are raised when the generator is first
    advanced. Breaking out of the loop (or closing the generator) stops the reader.
    """
    return _iterate(
        stream,
        start=start,
        follow=follow,
        endpoint_url=endpoint_url,
        region_name=region_name,
        client=client,
        parser=parser,
        options=options,
        clock=clock,
        **tuning,
    )


def _iterate(stream: str, **kwargs: Any) -> Iterator[Any]:
    # A generator all the way: no thread or connection exists until the first next().
    with BlockingStreamReader[Any](stream, **kwargs) as reader:
        yield from reader


class BlockingConsumer:
    """Blocking counterpart of :class:`~ddbstreams.Consumer`, with the same arguments.

    :meth:`run` blocks until :meth:`stop` is called from another thread, Ctrl-C, or the
    read is over (a single pass with ``follow=False`` done, a disabled stream fully
    processed). Ctrl-C stops gracefully (in-flight batches finish, the checkpoint is saved)
    and then raises KeyboardInterrupt. ``on_event`` is called on the consumer's background
    loop thread.
    """

    def __init__(self, stream: str, handler: Handler, **kwargs: Any) -> None:
        self._portal = _LoopThread()
        try:
            self._consumer: Consumer = self._portal.run(_make_consumer(stream, handler, kwargs))
        except BaseException:
            self._portal.close()
            raise

    @property
    def consumer(self) -> Consumer:
        return self._consumer

    @property
    def lifecycle(self) -> ConsumerLifecycle:
        return self._consumer.lifecycle

    def run(self) -> None:
        """Consume until stopped (see the class docstring)."""
        try:
            self._portal.run(self._consumer.run())
        except KeyboardInterrupt:
            self.stop()
            raise
        finally:
            self._portal.run(self._consumer.close())
            self._portal.close()

    def stop(self) -> None:
        """Ask the consumer to stop; safe from any thread. Returns once it has stopped."""
        if self._portal.closed:
            return
        self._portal.run(self._consumer.stop())

    def checkpoint(self) -> Checkpoint:
        return self._consumer.checkpoint()


async def _make_consumer(stream: str, handler: Handler, kwargs: dict[str, Any]) -> Consumer:
    # Built on the background loop so its events and queues belong to that loop.
    return Consumer(stream, handler, **kwargs)
