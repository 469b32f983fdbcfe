"""Progress of a single-pass ``ddbstreams tail`` on stderr, for a human waiting at a terminal.

A pass whose records go to a file or a pipe is otherwise silent until it ends, which over a
large stream looks like a hang. :class:`TailProgress` redraws one status line on stderr
(:func:`~ddbstreams.cli._render.progress_line`: records, records/s, shards done of total,
iterator age) a few times a second, and leaves the final figures on their own line when the
pass ends. The CLI only creates one when stderr is a terminal and stdout is not (records on
the terminal would be torn by the redraws), for a single pass without ``--verbose``: in
every other case stderr stays as it was.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Final, Protocol

from ddbstreams._clock import Clock, SystemClock
from ddbstreams.cli import _render
from ddbstreams.model._position import Checkpoint
from ddbstreams.model._types import Record

__all__ = ["TailProgress"]

_CLEAR_LINE: Final = "\r\x1b[K"
"""Back to the start of the line and erase it: each redraw replaces the previous one."""


class _Positioned(Protocol):
    """What progress needs of a reader: its checkpoint names every shard of the pass."""

    def checkpoint(self) -> Checkpoint: ...


class TailProgress:
    """One status line on stderr, redrawn at most every ``interval`` seconds.

    :meth:`start` when the reader has started, :meth:`add` after each batch written,
    :meth:`passed` when the pass read everything, :meth:`finish` at the end (however it
    ends). ``write`` receives the text to put on
    stderr (already flushed by :meth:`on_stderr`'s writer). Shards done of total come from
    the reader's checkpoint: every shard of the pass is named there, the finished ones in
    ``finished``.
    """

    __slots__ = (
        "_clock",
        "_complete",
        "_interval",
        "_last_created",
        "_last_drawn",
        "_reader",
        "_records",
        "_started",
        "_write",
    )

    def __init__(
        self, write: Callable[[str], None], *, clock: Clock | None = None, interval: float = 0.2
    ) -> None:
        self._write = write
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._interval = interval
        self._reader: _Positioned | None = None
        self._records = 0
        self._last_created: float | None = None
        self._started = 0.0
        self._last_drawn: float | None = None
        self._complete = False

    @classmethod
    def on_stderr(cls) -> TailProgress:
        """A progress line written to ``sys.stderr`` (flushed after every redraw)."""

        def write(text: str) -> None:
            sys.stderr.write(text)
            sys.stderr.flush()

        return cls(write)

    def start(self, reader: _Positioned) -> None:
        self._reader = reader
        self._started = self._clock.monotonic()
        self._draw(force=True)

    def add(self, batch: Sequence[Record]) -> None:
        """Count a batch that was written; redraw if the line is due."""
        self._records += len(batch)
        for record in reversed(batch):
            if getattr(record, "creation_time_known", True):
                self._last_created = record.approximate_creation_time.timestamp()
                break
        self._draw(force=False)

    def passed(self) -> None:
        """The pass read everything: every shard counts as done, open ones too (a single
        pass leaves an open shard once it has caught up, without finishing it)."""
        self._complete = True

    def finish(self) -> None:
        """Draw the final figures and end the line, so the shell prompt starts below it."""
        if self._reader is None:
            return
        self._draw(force=True)
        self._write("\n")
        self._reader = None

    def line(self) -> str:
        """The status line as it stands now."""
        done = total = 0
        if self._reader is not None:
            checkpoint = self._reader.checkpoint()
            done = len(checkpoint.finished)
            total = done + len(checkpoint.positions) + len(checkpoint.pending)
            if self._complete:
                done = total
        age = None
        if self._last_created is not None:
            age = max(0.0, self._clock.time() - self._last_created)
        elapsed = self._clock.monotonic() - self._started
        return _render.progress_line(self._records, elapsed, done, total, age)

    def _draw(self, *, force: bool) -> None:
        now = self._clock.monotonic()
        if not force and self._last_drawn is not None and now - self._last_drawn < self._interval:
            return
        self._last_drawn = now
        self._write(_CLEAR_LINE + self.line())
