"""Small task helpers shared by the reader, the consumer and the CLI.

:func:`until_stopped` is *the* way to race work against a stop signal (a retry delay, a
wait for a parent shard, a whole command): every task it makes belongs to a task group that
does not outlive the call.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from ddbstreams._clock import Clock

__all__ = ["TaskSet", "first_error", "run_in_daemon_thread", "until_stopped", "wait_tasks"]

R = TypeVar("R")


def first_error(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of an exception group: a task's error surfaces as itself."""
    leaf: BaseException = group
    while isinstance(leaf, BaseExceptionGroup):
        leaf = leaf.exceptions[0]
    return leaf


async def until_stopped(work: Coroutine[Any, Any, Any], stop: asyncio.Event) -> bool:
    """Run ``work`` until it returns or ``stop`` is set, whichever comes first.

    Returns True if ``work`` ran to its end (its result is dropped), False if ``stop`` came
    first: ``work`` is then cancelled and awaited, so its cleanup (``finally``, ``async
    with``) has run when this returns. If ``stop`` is set already, ``work`` never starts.
    When both happen at once, ``work``'s outcome wins. An error of ``work`` is raised as
    itself (not wrapped in an exception group); a stop is not an error.

    Cancellation: cancelling the caller cancels ``work`` too and waits for it, then raises
    CancelledError. Nothing outlives the call: both waits run as tasks of a task group.
    Typical uses: ``until_stopped(clock.sleep(delay), stopping)`` (a delay cut short by a
    stop), ``until_stopped(parent_done.wait(), stopping)``, a whole command until a signal.
    """
    if stop.is_set():
        work.close()
        return False
    failure: BaseException | None = None
    try:
        async with asyncio.TaskGroup() as group:
            task = group.create_task(work)
            waiter = group.create_task(stop.wait())
            await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            task.cancel()  # no effect when it is done
    except BaseExceptionGroup as errors:
        # Only ``work`` can fail (the waiter is cancelled, never failing): its error is the
        # group's only one. Raised outside the handler, so that its context stays its own.
        failure = errors.exceptions[0]
    if failure is not None:
        raise failure
    return not task.cancelled()


async def wait_tasks(
    tasks: Iterable[asyncio.Task[Any]], *, within: float, clock: Clock
) -> set[asyncio.Task[Any]]:
    """Wait until every task is done, or ``within`` seconds of ``clock`` have passed.

    Returns the tasks still running then (neither cancelled nor awaited: the caller decides).
    The time is measured on ``clock``, so a test clock makes it virtual time.
    """
    pending = {task for task in tasks if not task.done()}
    if not pending:
        return set()
    all_done = asyncio.Event()

    def done(task: asyncio.Task[Any]) -> None:
        pending.discard(task)
        if not pending:
            all_done.set()

    watched = list(pending)
    for task in watched:
        task.add_done_callback(done)
    try:
        await until_stopped(clock.sleep(within), all_done)
    finally:
        for task in watched:
            task.remove_done_callback(done)
    return {task for task in watched if not task.done()}


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


class TaskSet:
    """Owns tasks started on their own (not awaited by whoever starts them): keeps them
    referenced until they end, and :meth:`aclose` cancels those still running and waits
    for them. For work a component starts from a callback or a loop that must not wait
    for it; the component closes its set when it stops."""

    __slots__ = ("_tasks",)

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, Any], *, name: str | None = None) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def aclose(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks)
