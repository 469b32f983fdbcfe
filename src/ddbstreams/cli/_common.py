"""Building blocks shared by the commands of the ``ddbstreams`` CLI.

Argument types and connection options, the usage error that :func:`~ddbstreams.cli._main.main`
reports with exit status 2, buffered output (:class:`Output`), notes on stderr and the
handling of stop signals on the event loop. Nothing here parses a whole command line or
runs a command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import signal
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from ddbstreams._errors import DDBStreamsError
from ddbstreams._events import RequestRetried, Throttled
from ddbstreams.client._streams import RetryNotice

__all__ = [
    "PROG",
    "STOP_SIGNALS",
    "Output",
    "OutputError",
    "UsageError",
    "add_connection_options",
    "note",
    "one_line",
    "positive_int",
    "positive_seconds",
    "retry_event",
    "stop_on_signals",
]

PROG = "ddbstreams"

# SIGHUP: the terminal or SSH session of a follow went away, which is a stop like Ctrl-C.
STOP_SIGNALS = tuple(
    s for s in (signal.SIGINT, signal.SIGTERM, getattr(signal, "SIGHUP", None)) if s is not None
)


class UsageError(Exception):
    """A command line that cannot be run (exit status 2)."""


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def positive_seconds(text: str) -> float:
    """An argparse type: a finite number of seconds above 0."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def add_connection_options(parser: argparse.ArgumentParser) -> None:
    """``--endpoint-url``, ``--region`` and the timeouts of the client (seconds)."""
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="endpoint of DynamoDB and DynamoDB Streams (e.g. DynamoDB Local); default: AWS",
    )
    parser.add_argument(
        "--region",
        metavar="REGION",
        help=(
            "AWS region; default: from the AWS configuration, else the region of a STREAM "
            "given as an ARN"
        ),
    )
    parser.add_argument(
        "--connect-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=5.0,
        help="how long to wait for a connection to the endpoint (default: %(default)g)",
    )
    parser.add_argument(
        "--read-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=30.0,
        help=(
            "how long to wait for a response; each request is tried up to 3 times when "
            "none comes (default: %(default)g)"
        ),
    )
    parser.add_argument(
        "--credentials-timeout",
        metavar="SECONDS",
        type=positive_seconds,
        default=60.0,
        help=(
            "how long resolving AWS credentials may take, e.g. a credential_process or SSO "
            "(default: %(default)g)"
        ),
    )


class OutputError(DDBStreamsError):
    """stdout cannot be written: closed, full disk, I/O error (exit status 1)."""


class Output:
    """Buffered binary output: many writes, one flush per batch of records.

    Writes go to the binary buffer of the text stream (no per-line encoding layer). A
    BrokenPipeError (the reader of our output went away) propagates to :func:`main`; any
    other failure to write is an :class:`OutputError`.
    """

    __slots__ = ("_binary", "_text")

    def __init__(self, text: IO[str]) -> None:
        self._text = text
        binary = getattr(text, "buffer", None)
        self._binary: IO[bytes] | None = binary

    @property
    def is_terminal(self) -> bool:
        try:
            return self._text.isatty()
        except (AttributeError, ValueError):
            return False

    @property
    def unicode(self) -> bool:
        encoding = (getattr(self._text, "encoding", None) or "").lower().replace("-", "")
        return encoding.startswith("utf8")

    def write(self, data: bytes) -> None:
        with self._errors():
            if self._binary is not None:
                self._binary.write(data)
            else:
                self._text.write(data.decode("utf-8"))

    def write_text(self, text: str) -> None:
        self.write(text.encode("utf-8"))

    def flush(self) -> None:
        with self._errors():
            if self._binary is not None:
                self._binary.flush()
            self._text.flush()

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except BrokenPipeError:
            raise  # the reader went away: a normal end (see main)
        except OSError as exc:
            raise OutputError(f"cannot write output: {exc.strerror or exc}") from exc
        except ValueError as exc:
            if not getattr(self._text, "closed", False):
                raise
            raise OutputError("cannot write output: stdout is closed") from exc


def note(message: str) -> None:
    """An informational line on stderr (never stdout, which carries only records)."""
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


def retry_event(notice: RetryNotice) -> Throttled | RequestRetried:
    """The event telling of a request the client retried (for ``--verbose``)."""
    if notice.throttled:
        return Throttled(notice.operation, notice.shard_id, notice.attempt, notice.delay)
    return RequestRetried(
        notice.operation, notice.shard_id, notice.code, notice.attempt, notice.delay
    )


def one_line(error: BaseException) -> str:
    """``error``'s message on one line (its type's name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


@contextlib.contextmanager
def stop_on_signals(
    loop: asyncio.AbstractEventLoop, on_signal: Callable[[signal.Signals], None]
) -> Iterator[None]:
    """Call ``on_signal`` on ``loop`` for SIGINT and SIGTERM, then restore the old handlers.

    Where the loop cannot handle signals (Windows, a thread other than the main one), the
    old handlers stay: Ctrl-C then surfaces as KeyboardInterrupt (the command then handles it).
    """
    installed: list[tuple[signal.Signals, Any]] = []
    try:
        for signum in STOP_SIGNALS:
            previous = signal.getsignal(signum)
            try:
                loop.add_signal_handler(signum, on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue
            installed.append((signum, previous))
        yield
    finally:
        for signum, previous in reversed(installed):
            loop.remove_signal_handler(signum)
            # remove_signal_handler resets to the default; put back what was there (e.g.
            # asyncio.run's own SIGINT handler, which it then removes itself).
            if previous is not None:
                with contextlib.suppress(ValueError, TypeError, OSError):
                    signal.signal(signum, previous)
