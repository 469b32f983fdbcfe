"""Small task-group helpers shared by the reader and the consumer."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

__all__ = ["first_error", "first_of", "run_in_daemon_thread"]

R = TypeVar("R")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of an exception group: a task's error surfaces as itself."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


async def first_of(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` is done; cancel and await the others."""
    tasks = [asyncio.ensure_future(w) for w in waits]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run_in_daemon_thread(function: Callable[..., R], *args: Any, name: str) -> R:
    """Run blocking ``function(*args)`` in a new daemon thread and await its result.

    Unlike :func:`asyncio.to_thread`, nothing waits for the thread: not ``asyncio.run()``
    (which joins the default executor) and not interpreter exit. Python threads cannot be
    stopped, so a call whose awaiting task is cancelled keeps running in the background
    until the function returns by itself; its result or error is then dropped, and if the
    process exits first the function simply stops wherever it was. Context variables are
    copied into the thread, as ``to_thread`` does.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[R] = loop.create_future()
    context = contextvars.copy_context()

    def settle(outcome: Callable[[Any], None], value: Any) -> None:
        if not future.done():  # the awaiting task may have been cancelled
            outcome(value)

    def target() -> None:
        try:
            report: tuple[Callable[[Any], None], Any] = (
                future.set_result,
                context.run(function, *args),
            )
        except BaseException as exc:
            report = (future.set_exception, exc)
        # The loop may be closed by now: then nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            loop.call_soon_threadsafe(settle, *report)

    threading.Thread(target=target, name=name, daemon=True).start()
    return await future
