"""Worker groups in tests: workers in this process over a simulator served over HTTP, with
the lease and workers tables in DynamoDB Local (the server forwards table calls there)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from ddbstreams import Consumer, Event, GroupOptions, Record, StreamsClient

#: Short enough for tests to fail over in seconds; every worker of a test uses it.
FAST = GroupOptions(
    failover_time=3.0,
    membership_interval=0.25,
    lease_scan_interval=2.0,
    discovery_interval=5.0,
)


def local_client(endpoint_url: str) -> StreamsClient:
    """A client of ``endpoint_url`` with the dummy credentials DynamoDB Local accepts."""
    return StreamsClient(
        endpoint_url=endpoint_url,
        region_name="ddblocal",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


def group_name() -> str:
    return f"ddbstreams-group-{uuid.uuid4().hex[:12]}"


@dataclass
class Handled:
    """What the workers of a test handled: (worker, record) in order of handling."""

    calls: list[tuple[str, Record]] = field(default_factory=list)
    events: list[tuple[str, Event]] = field(default_factory=list)

    def handler(self, worker: str, delay: float = 0.0) -> Callable[[list[Record]], Any]:
        async def handle(records: list[Record]) -> None:
            if delay:
                await asyncio.sleep(delay)
            self.calls.extend((worker, record) for record in records)

        return handle

    def records(self) -> list[Record]:
        return [record for _, record in self.calls]

    def by_worker(self) -> dict[str, set[str]]:
        shards: dict[str, set[str]] = {}
        for worker, record in self.calls:
            shards.setdefault(worker, set()).add(record.shard_id)
        return shards


class Worker:
    """A group consumer running as a task, with its own client (as a process would)."""

    def __init__(
        self,
        endpoint_url: str,
        stream: str,
        group: str,
        handled: Handled,
        worker_id: str,
        *,
        options: GroupOptions = FAST,
        delay: float = 0.0,
        client: StreamsClient | None = None,
        **consumer_options: Any,
    ) -> None:
        self.worker_id = worker_id
        self.client = client or local_client(endpoint_url)
        self.consumer = Consumer(
            stream,
            handled.handler(worker_id, delay),
            group=group,
            worker_id=worker_id,
            group_options=options,
            client=self.client,
            on_event=lambda event: handled.events.append((worker_id, event)),
            **consumer_options,
        )
        self.task: asyncio.Task[None] | None = None

    def start(self) -> Worker:
        self.task = asyncio.get_running_loop().create_task(self.consumer.run())
        return self

    async def stop(self) -> None:
        await self.consumer.stop()
        assert self.task is not None
        await self.task
        await self.client.close()

    async def kill(self) -> None:
        """Cancel without a graceful stop: what a crash leaves in the tables (the
        cancelled run still hands leases off, so a crash is simulated by cancelling the
        worker's tasks only after its leases are abandoned: see ``abandon``)."""
        assert self.task is not None
        self.task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self.task
        await self.client.close()


async def wait_for(condition: Callable[[], bool], *, within: float, step: float = 0.05) -> float:
    """Wait until ``condition()`` holds; returns the seconds it took (AssertionError on
    timeout)."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > within:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(step)
    return time.monotonic() - start


@contextlib.asynccontextmanager
async def running(*workers: Worker) -> AsyncIterator[tuple[Worker, ...]]:
    for worker in workers:
        worker.start()
    try:
        yield workers
    finally:
        for worker in workers:
            if worker.task is not None and not worker.task.done():
                await worker.stop()
