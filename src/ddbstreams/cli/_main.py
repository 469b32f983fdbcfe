"""The ``ddbstreams`` command: ``tail``, ``describe``, ``checkpoints``, ``run``, ``leases``
and ``demo``.

``main(argv)`` returns the exit status; the console script exits with it. Exit statuses:
0 success (also when the reader of our output goes away, e.g. ``| head``, and when
``tail --follow`` is stopped by Ctrl-C/SIGINT, SIGTERM or SIGHUP: a stop the user asked
for is success), 1 runtime error (unknown stream, unreachable endpoint, credentials, unusable
checkpoint file...; also a declined ``checkpoints reset`` confirmation), 2 usage error (bad
option, bad ``--from``, malformed ARN, ``checkpoints reset`` without ``--yes`` and without a
terminal to confirm on), 130 a single-pass ``tail``, ``describe`` or ``demo`` interrupted by
Ctrl-C before it finished.

``tail --follow`` runs until stopped. SIGINT, SIGTERM and SIGHUP (a closed terminal or SSH
session) are handled on the event loop: the first one stops the reader (every shard fetcher
ends, the client is closed) after the batch being written, if any, has been written and
flushed, then the command exits 0 without a traceback; the previous signal handlers are
restored afterwards. Output is flushed after every batch, so a pipe reader sees records as
they arrive. ``--verbose`` logs the reader's events (shards started and finished,
throttling, trimmed records...) and every retried request (timeouts included) on stderr,
one line each; stdout only ever carries records. Without ``--verbose`` a follow still says
on stderr when the stream has been unreachable (the client's retries spent; rate-limited)
and when it is reachable again, so that an outage does not pass for a quiet stream, and why
it ended when the stream was disabled (table deleted, stream turned off) and every record
had been read. ``--connect-timeout``, ``--read-timeout`` and ``--credentials-timeout``
(seconds) bound each connection, each response and the resolving of credentials (a hung
``credential_process``).

``tail --checkpoint FILE [--name NAME]`` runs a :class:`~ddbstreams.Consumer` (a single
pass, or following with ``--follow``) whose handler prints, with its checkpoint in a SQLite
file (:class:`~ddbstreams.SQLiteCheckpointStore`, one checkpoint per name and stream; the
name defaults to ``tail`` so that a tail never moves the checkpoint of a consumer, whose
default name is ``default``). At start the stream's stored checkpoint is the start
position, as with Lambda and the KCL: ``--from`` only applies when none is stored (if both
are present, one line on stderr says that the checkpoint wins). The consumer checkpoints
what was printed: after every batch, once it has been written and flushed (and before the
next batch is printed), so a saved checkpoint never covers a record that was not printed;
and once more at exit, however the run ends (end of the single pass, ``--max-records``,
SIGINT/SIGTERM/SIGHUP, an error). A batch that could not be written is not checkpointed;
with ``--max-records`` the records of a batch past the limit are reported to the consumer
as not done, so the checkpoint names exactly the records printed and the next run starts
at the next record. A checkpoint that cannot be used (corrupt file or entry, positions
trimmed from the stream) is an error with a hint on how to start over; records are never
skipped silently. ``--verbose`` shows the consumer's events too (batches handled,
checkpoints saved).

``checkpoints show FILE`` lists the checkpoints a file holds (``--json``: the stored
documents); ``checkpoints reset FILE (--stream STREAM | --all)`` deletes them, after a
confirmation on a terminal or with ``--yes``. Both filter by ``--name`` and ``--stream``
(a stream ARN, or a table name that matches every stream of that table; nothing is asked of
AWS), and reset deletes exactly what show lists with the same filters.

Errors a user can cause are reported as exactly one line on stderr,
``ddbstreams: error: <message>``, never as a traceback; so is output that cannot be written
(stdout closed, disk full). An unexpected internal error is reported the same way (prefixed
``internal error``); set ``DDBSTREAMS_DEBUG=1`` to get its traceback. Warnings that
libraries log (botocore's about credentials, say) are one line too,
``ddbstreams: warning: <message>``; with ``--verbose`` they keep their traceback.

``run`` (a handler as a worker of a group) and ``leases show|reset`` are in
:mod:`ddbstreams.cli._group`; what the commands share is in :mod:`ddbstreams.cli._common`.

Output formats live in :mod:`ddbstreams.cli._render` (pure). This module only parses
arguments, drives the reader, the client and the checkpoint store, and writes bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import sys
import traceback
from collections import Counter
from collections.abc import (
    AsyncGenerator,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Iterator,
    Sequence,
)
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

from ddbstreams._clock import Clock, SystemClock
from ddbstreams._errors import (
    CheckpointConflictError,
    CheckpointError,
    CheckpointFileError,
    ConfigurationError,
    DDBStreamsError,
    EndpointConnectionError,
    InvalidStreamArnError,
    TrimmedDataError,
)
from ddbstreams._events import (
    ConsumerStarted,
    Event,
    GetRecordsCalled,
    ReaderError,
    RequestRetried,
    StreamDisabled,
    Throttled,
)
from ddbstreams._tasks import until_stopped
from ddbstreams.cli import _render
from ddbstreams.cli._common import (
    PROG,
    Output,
    OutputError,
    UsageError,
    add_connection_options,
    note,
    one_line,
    positive_int,
    retry_event,
    stop_on_signals,
)
from ddbstreams.cli._group import add_leases_command, add_run_command
from ddbstreams.cli._lag import add_lag_command
from ddbstreams.cli._metrics import add_metrics_port_option, serving_metrics
from ddbstreams.cli._moments import MOMENT_FORMS, moment_text, parse_ago, parse_time
from ddbstreams.cli._progress import TailProgress
from ddbstreams.client._streams import RetryNotice, StreamsClient
from ddbstreams.consuming._consumer import Consumer
from ddbstreams.model._arn import is_table_name, parse_stream_arn
from ddbstreams.model._decode import DefaultParser, RawParser
from ddbstreams.model._encode import encode_item
from ddbstreams.model._position import (
    LATEST,
    TRIM_HORIZON,
    AfterSequence,
    AtSequence,
    AtTime,
    Checkpoint,
    StartPosition,
    after_sequence,
    at_sequence,
)
from ddbstreams.model._types import Record
from ddbstreams.reading import ReaderOptions, StreamReader
from ddbstreams.state._stores import SQLiteCheckpointStore, StoredCheckpoint

if TYPE_CHECKING:
    from ddbstreams.metrics import PrometheusMetrics

__all__ = ["main", "parse_position"]

_POSITION_FORMS = (
    "trim-horizon, latest, at:SEQ or after:SEQ (SEQ: a sequence number of digits), or a time: "
    + MOMENT_FORMS
)
_TAIL_CHECKPOINT_NAME = "tail"
"""Default ``--name`` of ``tail --checkpoint``: not the stores' ``default``, which consumers
use, so that tailing a stream never moves a consumer's checkpoint."""
_BATCH_SIZE = 1000


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors to :func:`main` instead of exiting.

    argparse prints the usage and exits from inside ``parse_args``; raising lets ``main``
    print one ``ddbstreams: error:`` line and return 2 like every other usage error.
    """

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


def parse_position(text: str) -> StartPosition:
    """Turn a ``--from`` value into a start position.

    Accepted forms: ``trim-horizon``, ``latest``, ``at:SEQ``, ``after:SEQ`` (case-insensitive
    keywords; SEQ is a sequence number), ``time:ISO-8601`` and ``ago:DURATION`` (see
    :mod:`ddbstreams.cli._moments`). Raises ``argparse.ArgumentTypeError`` otherwise,
    with a message naming the accepted forms (or, for a time, what is wrong with it).
    """
    value = text.strip()
    keyword, sep, sequence = value.partition(":")
    keyword = keyword.lower()
    if sep and keyword in ("time", "ago"):
        try:
            return parse_time(sequence) if keyword == "time" else parse_ago(sequence)
        except ValueError as exc:  # InvalidPositionError is one too
            raise argparse.ArgumentTypeError(f"invalid position {text!r}: {exc}") from None
    try:
        if not sep and keyword in ("trim-horizon", "trim_horizon"):
            return TRIM_HORIZON
        if not sep and keyword == "latest":
            return LATEST
        if sep and keyword == "at":
            return at_sequence(sequence)
        if sep and keyword == "after":
            return after_sequence(sequence)
    except ConfigurationError:
        pass
    raise argparse.ArgumentTypeError(f"invalid position {text!r}: expected {_POSITION_FORMS}")


def _position_text(position: StartPosition) -> str:
    """``position`` in the ``--from`` syntax (a checkpoint is just named)."""
    if isinstance(position, AtSequence):
        return f"at:{position.sequence_number}"
    if isinstance(position, AfterSequence):
        return f"after:{position.sequence_number}"
    if isinstance(position, Checkpoint):
        return "a checkpoint"
    if isinstance(position, AtTime):
        return moment_text(position)
    return "latest" if position == LATEST else "trim-horizon"


def _build_parser() -> _ArgumentParser:
    parser = _ArgumentParser(
        prog=PROG,
        description="Read Amazon DynamoDB Streams.",
        epilog="STREAM is a stream ARN or a source table name (its latest stream is used).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    _add_tail_command(commands)
    describe = commands.add_parser(
        "describe",
        help="show a stream and its shard lineage",
        description="Show a stream's fields and its shards as a lineage tree.",
    )
    describe.add_argument("stream", metavar="STREAM", help="stream ARN or source table name")
    describe.add_argument("--json", action="store_true", help="print a JSON document instead")
    add_connection_options(describe)
    describe.set_defaults(handler=_cmd_describe)

    _add_checkpoints_command(commands)
    add_run_command(commands)
    add_leases_command(commands)
    add_lag_command(commands)

    demo = commands.add_parser(
        "demo",
        help="start DynamoDB Local, write changes and read them back",
        description=(
            "Start DynamoDB Local, create a table with a NEW_AND_OLD_IMAGES stream, write a "
            "burst of inserts, updates and deletes using every attribute type, and read them "
            "back with a single-pass StreamReader. Needs Java 17+ and the engine "
            "(python -m ddbstreams.local install)."
        ),
    )
    demo.set_defaults(handler=_cmd_demo)
    return parser


def _add_tail_command(commands: Any) -> None:
    tail = commands.add_parser(
        "tail",
        help="print the records of a stream",
        description=(
            "Print the records of a stream, one per line (or block) on stdout. Without "
            "--follow: everything the stream holds now (a single pass over every shard, "
            "parents before children), then exit. With --follow: keep printing changes as "
            "they are written, following shard splits, until interrupted."
        ),
        epilog=(
            "Checkpoints: with --checkpoint FILE, the stream's checkpoint stored in FILE under "
            "NAME is where reading starts (it wins over --from, which only applies when none "
            "is stored). The position is saved after every batch, once it has been printed, "
            "and at exit (end of the pass, --max-records, Ctrl-C, SIGTERM), so the next run "
            "prints what this one did not. A checkpoint that cannot be used (corrupt, or its "
            "records trimmed from the stream) is an error, never skipped silently; the error "
            "says how to start over ('ddbstreams checkpoints reset' for a checkpoint). "
            "Exit status: 0 on success, including a --follow stopped by Ctrl-C (SIGINT), "
            "SIGTERM or SIGHUP, or by --max-records; 1 on a runtime error; 2 on a usage error; "
            "130 when a run without --follow is interrupted."
        ),
    )
    _add_tail_options(tail)
    add_metrics_port_option(tail)
    add_connection_options(tail)
    tail.set_defaults(handler=_cmd_tail)


def _add_tail_options(tail: argparse.ArgumentParser) -> None:
    """Where tail starts, what it keeps, when it stops."""
    tail.add_argument("stream", metavar="STREAM", help="stream ARN or source table name")
    tail.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        type=parse_position,
        default=None,
        help=(
            "where to start: trim-horizon (default, oldest record), latest, at:SEQ, after:SEQ, "
            "time:2026-12-01T10:00:00Z or ago:15m (s, m, h, d: records created since then; "
            "reads shards from their start and drops older records); with --checkpoint only "
            "when no checkpoint is stored"
        ),
    )
    tail.add_argument(
        "--checkpoint",
        metavar="FILE",
        help=(
            "resume from the checkpoint stored in the SQLite file FILE and save the position "
            "there after every batch printed and at exit (FILE is created if missing)"
        ),
    )
    tail.add_argument(
        "--name",
        metavar="NAME",
        help=(
            f"name of the checkpoint in FILE (default: {_TAIL_CHECKPOINT_NAME}); each name "
            "keeps its own position"
        ),
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help=(
            "keep printing changes as they are written until interrupted; Ctrl-C (SIGINT), "
            "SIGTERM or SIGHUP stops cleanly with exit status 0; says on stderr when the "
            "stream is unreachable and when it is back, or when it was disabled"
        ),
    )
    tail.add_argument(
        "--max-records",
        metavar="N",
        type=positive_int,
        help="stop after N records (also with --follow)",
    )
    _add_output_options(tail)


def _add_output_options(tail: argparse.ArgumentParser) -> None:
    """How tail prints records and progress."""
    tail.add_argument(
        "--format",
        choices=("jsonl", "pretty"),
        default="jsonl",
        help=(
            "jsonl (default, also when writing to a terminal): one JSON object per record "
            "with eventID, eventName, shardId, sequenceNumber, approximateCreationDateTime, "
            "keys, newImage, oldImage; pretty: a readable multi-line form with a diff of "
            "MODIFY images"
        ),
    )
    tail.add_argument(
        "--raw",
        action="store_true",
        help='attribute values as DynamoDB JSON ({"S": ...}) instead of plain JSON',
    )
    tail.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=(
            "log the reader's progress on stderr, one line per event (shard started or "
            "finished, each request retried or throttled, records trimmed...); library "
            "warnings with their traceback"
        ),
    )


def _add_checkpoints_command(commands: Any) -> None:
    checkpoints = commands.add_parser(
        "checkpoints",
        help="show or reset the checkpoints in a SQLite checkpoint file",
        description=(
            "Show or reset the checkpoints kept in a SQLite checkpoint file (written by "
            "'ddbstreams tail --checkpoint FILE' or a consumer using SQLiteCheckpointStore). "
            "Nothing is asked of AWS."
        ),
        epilog=(
            "STREAM is a stream ARN, or a table name, which matches the checkpoints of every "
            "stream of that table. Exit status: 0 on success; 1 on a runtime error (missing or "
            "unusable file) or a declined confirmation; 2 on a usage error."
        ),
    )
    actions = checkpoints.add_subparsers(dest="action", metavar="ACTION", required=True)
    stream_help = "only the checkpoints of this stream (ARN or table name)"

    show = actions.add_parser(
        "show",
        help="list the checkpoints in FILE",
        description=(
            "List the checkpoints in FILE: name, stream, version, last update and, per shard, "
            "the position reached (after SEQ: resume just after that record; finished: read to "
            "its end; pending: nothing read yet)."
        ),
    )
    show.add_argument("file", metavar="FILE", help="the SQLite checkpoint file")
    show.add_argument("--name", metavar="NAME", help="only the checkpoints with this name")
    show.add_argument("--stream", metavar="STREAM", help=stream_help)
    show.add_argument(
        "--json", action="store_true", help="print the stored documents as a JSON array"
    )
    show.set_defaults(handler=_cmd_checkpoints_show)

    reset = actions.add_parser(
        "reset",
        help="delete checkpoints from FILE",
        description=(
            "Delete checkpoints from FILE, so that the next reader starts over (from its "
            "--from position). Deletes exactly what 'checkpoints show' lists with the same "
            "--name and --stream; --all instead of --stream means every stream. Asks for "
            "confirmation when stdin is a terminal, unless --yes is given; without a terminal "
            "--yes is required. Stop the readers that use these checkpoints first: a running "
            "reader saves its position again."
        ),
    )
    reset.add_argument("file", metavar="FILE", help="the SQLite checkpoint file")
    reset.add_argument("--name", metavar="NAME", help="only the checkpoints with this name")
    which = reset.add_mutually_exclusive_group(required=True)
    which.add_argument("--stream", metavar="STREAM", help=stream_help)
    which.add_argument("--all", action="store_true", help="the checkpoints of every stream")
    reset.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    reset.set_defaults(handler=_cmd_checkpoints_reset)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ddbstreams")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "unknown"


# -- output -------------------------------------------------------------------------------


def _use_color(out: Output) -> bool:
    return out.is_terminal and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _glyphs(out: Output) -> _render.Glyphs:
    return _render.UNICODE if out.unicode else _render.ASCII


# -- commands -----------------------------------------------------------------------------


def _cmd_tail(args: argparse.Namespace, out: Output) -> int:
    if args.name is not None and args.checkpoint is None:
        raise UsageError("--name needs --checkpoint FILE")
    try:
        return asyncio.run(_tail(args, out))
    except KeyboardInterrupt:
        # Only reached when the loop could not take over SIGINT (no signal support on this
        # platform, or not the main thread): a follow still ends at the user's request.
        if args.follow:
            return 0
        raise


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _print_event(event: Event) -> None:
    # An error that ends the read is reported once, as the command's error line.
    if isinstance(event, ReaderError) and not event.retrying:
        return
    # Told as the notes of where a tail --checkpoint starts (see _StartNotes).
    if isinstance(event, ConsumerStarted):
        return
    # The client's retry listener reports every retry (see _Watch.on_retry), also those
    # made before the reader has started and subscribed to the client.
    if isinstance(event, Throttled | RequestRetried):
        return
    # One per poll of every shard: counted by --metrics-port, too many lines for -v.
    if isinstance(event, GetRecordsCalled):
        return
    note(_render.event_to_text(event))


class _OutageNotices:
    """Tells on stderr when a follow cannot read the stream, and when it can again.

    A follow retries through an outage for as long as it lasts, so without a word an outage
    would pass for a quiet stream. An outage starts at the first failed call after a
    success (:meth:`failed`) and is told once the client has spent its retries on a call
    (:meth:`gave_up`, from the reader's retrying ReaderError): at once, then again every
    ``remind_every`` seconds while it lasts. The next successful call (:meth:`succeeded`)
    ends it and is told when the outage was. An outage is not told sooner than
    ``quiet_for`` seconds after the previous notice, so that a flapping endpoint cannot
    flood stderr. Time comes from ``clock`` (seconds).
    """

    __slots__ = (
        "_clock",
        "_last_notice",
        "_quiet_for",
        "_remind_every",
        "_say",
        "_since",
        "_told_at",
        "_unreachable",
    )

    def __init__(
        self,
        clock: Clock,
        say: Callable[[str], None],
        *,
        quiet_for: float = 30.0,
        remind_every: float = 300.0,
    ) -> None:
        self._clock = clock
        self._say = say
        self._quiet_for = quiet_for
        self._remind_every = remind_every
        self._since: tuple[float, float] | None = None  # (monotonic, epoch) of the first failure
        self._told_at: float | None = None
        self._last_notice: float | None = None
        self._unreachable = True

    def failed(self) -> None:
        if self._since is None:
            self._since = (self._clock.monotonic(), self._clock.time())

    def gave_up(self, error: BaseException) -> None:
        self.failed()
        assert self._since is not None
        now = self._clock.monotonic()
        started, epoch = self._since
        since = datetime.fromtimestamp(epoch, UTC).strftime("%H:%M:%S UTC")
        if self._told_at is None:
            if self._last_notice is not None and now - self._last_notice < self._quiet_for:
                return
            self._unreachable = isinstance(error, EndpointConnectionError)
            what = "stream unreachable" if self._unreachable else "stream reads failing"
            self._say(f"{what} since {since}, still trying: {one_line(error)}")
        elif now - self._told_at >= self._remind_every:
            what = "stream still unreachable" if self._unreachable else "stream reads still failing"
            self._say(
                f"{what} (since {since}, {now - started:.0f} s ago), still trying: "
                f"{one_line(error)}"
            )
        else:
            return
        self._told_at = self._last_notice = now

    def succeeded(self) -> None:
        if self._since is None:
            return
        if self._told_at is not None:
            now = self._clock.monotonic()
            lasted = f"{now - self._since[0]:.0f} s"
            if self._unreachable:
                self._say(f"stream reachable again (unreachable for {lasted})")
            else:
                self._say(f"stream reads succeed again (failing for {lasted})")
            self._last_notice = now
        self._since = self._told_at = None


class _Watch:
    """What a tail learns from its reader's events and its client's calls, said on stderr.

    With ``verbose`` every event and every retried request is a line. In follow mode,
    outages are told without ``verbose`` too (:class:`_OutageNotices`), and
    ``stream_disabled`` records that the reader saw the stream being disabled.
    """

    __slots__ = ("_outage", "_verbose", "metrics", "progress", "stream_disabled")

    def __init__(self, *, verbose: bool, follow: bool, clock: Clock | None = None) -> None:
        self._verbose = verbose
        self.stream_disabled = False
        self.metrics: PrometheusMetrics | None = None  # fed every event (--metrics-port)
        self.progress: TailProgress | None = None  # a single pass's status line on stderr
        self._outage = (
            _OutageNotices(clock if clock is not None else SystemClock(), note) if follow else None
        )

    def attach(self, client: StreamsClient) -> None:
        client.add_retry_listener(self.on_retry)
        client.add_response_listener(self.on_response)

    def on_event(self, event: Event) -> None:
        if self.metrics is not None:
            self.metrics(event)
        if isinstance(event, StreamDisabled):
            self.stream_disabled = True
        elif isinstance(event, ReaderError) and event.retrying and self._outage is not None:
            self._outage.gave_up(event.error)
        if self._verbose:
            _print_event(event)

    def on_retry(self, notice: RetryNotice) -> None:
        if self._outage is not None:
            self._outage.failed()
        if self._verbose:
            note(_render.event_to_text(retry_event(notice)))

    def on_response(self, operation: str) -> None:
        if self._outage is not None:
            self._outage.succeeded()


def _streams_client(args: argparse.Namespace, watch: _Watch | None = None) -> StreamsClient:
    client = StreamsClient(
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        credentials_timeout=args.credentials_timeout,
    )
    if watch is not None:
        watch.attach(client)
    return client


async def _tail(args: argparse.Namespace, out: Output) -> int:
    parser = RawParser() if args.raw else DefaultParser()
    render: Callable[[Record], bytes]
    if args.format == "pretty":
        color, glyphs = _use_color(out), _glyphs(out)

        def render(record: Record) -> bytes:
            return _render.record_to_pretty(record, color=color, glyphs=glyphs).encode("utf-8")

    else:
        render = _render.record_to_jsonl
    watch = _Watch(verbose=args.verbose, follow=args.follow)
    if not args.follow and not args.verbose and not out.is_terminal and _stderr_is_terminal():
        # Records go to a file or a pipe and a human waits at the terminal: show progress.
        watch.progress = TailProgress.on_stderr()
    announce = args.verbose or (args.follow and _stderr_is_terminal())
    work: Coroutine[Any, Any, None]
    if args.checkpoint is None:
        work = _tail_plain(args, parser, render, out, watch, announce=announce)
    else:
        work = _tail_checkpointed(args, parser, render, out, watch, announce=announce)
    work = _with_metrics(args.metrics_port, watch, work)
    if not args.follow:
        # Ctrl-C: asyncio.run cancels this task (the reader stops, the checkpoint is saved)
        # and raises KeyboardInterrupt, reported by main() as status 130.
        await work
        return 0
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if args.verbose and not stop.is_set():
            note(f"{signum.name} received, stopping")
        stop.set()

    with stop_on_signals(asyncio.get_running_loop(), on_signal):
        # The signal handlers are in place before the reader starts, so a stop requested
        # while the stream is being resolved is honoured too.
        await until_stopped(work, stop)
    return 0


async def _with_metrics(port: int | None, watch: _Watch, work: Awaitable[None]) -> None:
    """Run ``work`` with ``--metrics-port``'s metrics fed by ``watch`` and served."""
    async with serving_metrics(port) as metrics:
        watch.metrics = metrics
        await work


async def _tail_plain(
    args: argparse.Namespace,
    parser: RawParser | DefaultParser,
    render: Callable[[Record], bytes],
    out: Output,
    watch: _Watch,
    *,
    announce: bool,
) -> None:
    """``tail`` without a checkpoint file: a reader, its records copied to the output."""
    async with _streams_client(args, watch) as client:
        reader = StreamReader(
            args.stream,
            start=args.start if args.start is not None else TRIM_HORIZON,
            follow=args.follow,
            client=client,
            parser=parser,
            on_event=watch.on_event,
        )
        if watch.metrics is not None:
            watch.metrics.track(reader)
        await _copy(
            reader,
            render,
            out,
            args.max_records,
            verbose=args.verbose,
            announce=announce,
            watch=watch,
        )


class _TailStore(SQLiteCheckpointStore):
    """The checkpoint file of ``tail --checkpoint``, noting whether a save failed: the
    error is then the store's own (a second tail on the same name...), reported as it is
    rather than as a problem of the stored checkpoint."""

    save_failed = False

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        try:
            await super().save(checkpoint, name=name)
        except Exception:
            self.save_failed = True
            raise


class _Printer:
    """The handler of ``tail --checkpoint``: prints (and flushes) each batch it is given,
    ``limit`` records at most in all.

    Before printing a batch it has the consumer save the checkpoint of what was printed
    before, so that a saved checkpoint never covers a record that was not printed and every
    printed batch is saved before the next one is printed. Records it does not print (past
    the limit, or once output or a save failed) are reported as failed in a partial batch
    response, so the consumer does not checkpoint them; it then asks the consumer to stop.
    Such an error is kept in ``error``, for the command to raise once the consumer stopped.
    Printing does not await: a stop (cancellation) never cuts a batch in half.
    """

    __slots__ = ("_limit", "_out", "_render", "consumer", "error", "printed")

    def __init__(self, render: Callable[[Record], bytes], out: Output, limit: int | None) -> None:
        self._render = render
        self._out = out
        self._limit = limit
        self.consumer: Consumer | None = None
        self.error: Exception | None = None
        self.printed = 0

    @property
    def reached_limit(self) -> bool:
        return self._limit is not None and self.printed >= self._limit

    async def __call__(self, records: list[Record]) -> dict[str, Any] | None:
        consumer = self.consumer
        assert consumer is not None
        room = len(records) if self._limit is None else self._limit - self.printed
        shown = records[: max(0, room)] if self.error is None else []
        if shown:
            try:
                if self.printed:
                    await consumer.save_checkpoint()
                self._out.write(b"".join([self._render(record) for record in shown]))
                # One flush per batch (a GetRecords page at most): prompt for a human
                # watching or a pipe reader, cheap for a pipe.
                self._out.flush()
            except Exception as exc:
                self.error, shown = exc, []
            self.printed += len(shown)
        if self.error is not None or self.reached_limit:
            consumer.request_stop()
        if len(shown) == len(records):
            return None
        return {"batchItemFailures": [{"itemIdentifier": records[len(shown)].sequence_number}]}


class _StartNotes:
    """The lines a ``tail --checkpoint`` says on stderr when its consumer starts: where it
    resumes (said even without ``announce`` when a stored checkpoint overrules ``--from``)
    and what it reads. ``started`` tells whether the consumer got that far."""

    __slots__ = ("_announce", "_follow", "_from_given", "_where", "started")

    def __init__(self, where: str, *, from_given: bool, follow: bool, announce: bool) -> None:
        self._where = where
        self._from_given = from_given
        self._follow = follow
        self._announce = announce
        self.started = False

    def on_event(self, event: Event) -> None:
        if not isinstance(event, ConsumerStarted):
            return
        self.started = True
        where = self._where
        if isinstance(event.start, Checkpoint):
            if self._from_given:
                note(
                    f"resuming from the checkpoint in {where}; --from only applies when "
                    "no checkpoint is stored"
                )
            elif self._announce:
                note(f"resuming from the checkpoint in {where}")
        elif self._announce:
            note(
                f"no checkpoint in {where} for this stream yet: starting at "
                f"{_position_text(event.start)}"
            )
        if self._announce:
            note(_reading_text(event.stream_arn, follow=self._follow))


def _reading_text(stream_arn: str, *, follow: bool) -> str:
    if follow:
        return f"following {stream_arn}, Ctrl-C to stop"
    return f"reading {stream_arn}"


async def _tail_checkpointed(
    args: argparse.Namespace,
    parser: RawParser | DefaultParser,
    render: Callable[[Record], bytes],
    out: Output,
    watch: _Watch,
    *,
    announce: bool,
) -> None:
    """``tail --checkpoint``: a :class:`Consumer` with the checkpoint file as its store, the
    name ``tail`` (or ``--name``), and a handler that prints (:class:`_Printer`).

    Trimmed records are an error (``on_trimmed="raise"``): skipping them would silently
    move the checkpoint past records that were never printed.
    """
    name = args.name if args.name is not None else _TAIL_CHECKPOINT_NAME
    store = _TailStore(args.checkpoint)
    where = f"{store.path} (name {name!r})"
    printer = _Printer(render, out, args.max_records)
    notes = _StartNotes(
        where, from_given=args.start is not None, follow=args.follow, announce=announce
    )

    def on_event(event: Event) -> None:
        notes.on_event(event)
        watch.on_event(event)

    try:
        async with _streams_client(args, watch) as client:
            consumer = Consumer(
                args.stream,
                printer,
                store=store,
                name=name,
                follow=args.follow,
                client=client,
                parser=parser,
                reader_options=ReaderOptions(on_trimmed="raise"),
                on_event=on_event,
                starting_position=args.start if args.start is not None else TRIM_HORIZON,
                batch_size=min(args.max_records or _BATCH_SIZE, _BATCH_SIZE),
                report_batch_item_failures=True,
            )
            printer.consumer = consumer
            if watch.metrics is not None:
                watch.metrics.track(consumer)
            try:
                await _run_printing(consumer, printer, notes, watch, verbose=args.verbose)
            except DDBStreamsError as exc:
                told = _tail_error(exc, store, name, consumer)
                if told is None:
                    raise
                raise told from exc
    finally:
        await store.close()
    if args.verbose:
        note(f"checkpoint saved in {where}")


async def _run_printing(
    consumer: Consumer, printer: _Printer, notes: _StartNotes, watch: _Watch, *, verbose: bool
) -> None:
    """Run the consumer of a ``tail --checkpoint`` and say how it ended."""
    try:
        await consumer.run()
        if printer.error is not None:
            raise printer.error
        if consumer.follow and not printer.reached_limit and watch.stream_disabled:
            # Otherwise a follow that stops with status 0 and no word looks like a crash.
            note(
                f"stream {consumer.stream_arn} was disabled (table deleted or stream turned "
                "off); every record it holds was read"
            )
    finally:
        if verbose and notes.started:
            note("reader stopped")


def _tail_error(
    error: DDBStreamsError, store: _TailStore, name: str, consumer: Consumer
) -> DDBStreamsError | None:
    """The error a ``tail --checkpoint`` reports for ``error``, with a hint on how to start
    over; None to report ``error`` as it is."""
    if store.save_failed and isinstance(error, CheckpointConflictError):
        # The store's "reload it" is advice for a program; on a command line the cause is a
        # second tail (or consumer) using the same name.
        return CheckpointConflictError(
            f"another process uses the same checkpoint name {name!r} in {store.path}: "
            "give each tail its own --name"
        )
    if store.save_failed or not isinstance(error, CheckpointError | TrimmedDataError):
        return None
    if isinstance(error, CheckpointFileError):
        # Nothing in the file can be reset: it has to go (or another file be used).
        moving = _move_away_hint(error.path)
        return CheckpointError(f"{error}; {moving} (or use another --checkpoint FILE)")
    hint = (
        f"to start over: {PROG} checkpoints reset {shlex.quote(str(store.path))} "
        f"--name {shlex.quote(name)} --stream {consumer.stream_arn} --yes"
    )
    if isinstance(error, TrimmedDataError):
        return TrimmedDataError(f"{error}; {hint}")
    return CheckpointError(f"{error}; {hint}")


async def _aclose(iterator: AsyncIterator[Any]) -> None:
    aclose = getattr(iterator, "aclose", None)
    if aclose is not None:
        await aclose()


async def _sized_batches(
    reader: StreamReader[Record], limit: int | None
) -> AsyncGenerator[list[Record], None]:
    """The reader's batches, taking at most ``limit`` records from it in all.

    The reader's checkpoint covers every record it handed out, so a limit must be applied
    by asking for smaller batches, never by dropping records already taken.
    """
    remaining = limit
    while remaining is None or remaining > 0:
        size = _BATCH_SIZE if remaining is None else min(remaining, _BATCH_SIZE)
        batches = reader.batches(size)
        try:
            if remaining is None:
                async for batch in batches:
                    yield batch
                return
            try:
                batch = await anext(batches)
            except StopAsyncIteration:
                return
        finally:
            await _aclose(batches)
        batch = batch[:remaining]
        remaining -= len(batch)
        yield batch


async def _copy(
    reader: StreamReader[Record],
    render: Callable[[Record], bytes],
    out: Output,
    limit: int | None,
    *,
    verbose: bool,
    announce: bool | None = None,
    watch: _Watch | None = None,
) -> None:
    """Start ``reader``, write its records (at most ``limit``) and stop it, however this ends.

    ``announce`` (default: ``verbose``) says on stderr which stream is read. Cancellation
    only happens while waiting for the next batch, never halfway through writing a batch:
    writing and flushing do not await. A follow that ends by itself because ``watch`` saw
    the stream disabled says so.
    """
    started = False
    progress = watch.progress if watch is not None else None
    try:
        async with reader:
            started = True
            if progress is not None:
                progress.start(reader)
            if verbose if announce is None else announce:
                note(_reading_text(reader.stream_arn, follow=reader.follow))
            printed = 0
            async with contextlib.aclosing(_sized_batches(reader, limit)) as batches:
                async for batch in batches:
                    out.write(b"".join([render(record) for record in batch]))
                    # One flush per batch (a GetRecords page at most): prompt for a human
                    # watching or a pipe reader, cheap for a pipe.
                    out.flush()
                    printed += len(batch)
                    if progress is not None:
                        progress.add(batch)
            ended_by_itself = limit is None or printed < limit
            if progress is not None and ended_by_itself:
                progress.passed()  # open shards caught up count as done
            if reader.follow and ended_by_itself and watch is not None and watch.stream_disabled:
                # Otherwise a follow that stops with status 0 and no word looks like a crash.
                note(
                    f"stream {reader.stream_arn} was disabled (table deleted or stream turned "
                    "off); every record it holds was read"
                )
    finally:
        if progress is not None:
            progress.finish()
        if verbose and started:
            note("reader stopped")


def _cmd_describe(args: argparse.Namespace, out: Output) -> int:
    return asyncio.run(_describe(args, out))


async def _describe(args: argparse.Namespace, out: Output) -> int:
    async with _streams_client(args) as client:
        stream_arn = await client.resolve_stream(args.stream)
        description = await client.describe_stream(stream_arn)
    if args.json:
        out.write(_render.description_to_json(description))
    else:
        out.write_text(_render.description_to_text(description, glyphs=_glyphs(out)))
    out.flush()
    return 0


# -- checkpoints --------------------------------------------------------------------------


def _stream_filter(stream: str | None) -> Callable[[str], bool]:
    """A test of stored stream ARNs for ``--stream``: an exact ARN, or a table name that
    matches the ARNs of every stream of that table (no AWS call); None matches all."""
    if stream is None:
        return lambda arn: True
    if stream.startswith("arn:"):
        wanted = parse_stream_arn(stream).text
        return lambda arn: arn == wanted
    if not is_table_name(stream):
        raise UsageError(
            f"--stream {stream!r} is neither a stream ARN nor a table name (3-255 characters "
            "of a-z, A-Z, 0-9, '_', '-' and '.')"
        )

    def same_table(arn: str) -> bool:
        try:
            return parse_stream_arn(arn).table_name == stream
        except InvalidStreamArnError:
            return False

    return same_table


def _move_away_hint(path: Path) -> str:
    """How to start over from an unusable checkpoint file (see CheckpointFileError): move it
    to a name that is free, so that nothing else is overwritten."""
    backup = path.with_name(f"{path.name}.bak")
    number = 1
    while backup.exists() or backup.is_symlink():
        number += 1
        backup = path.with_name(f"{path.name}.bak{number}")
    return (
        f"to start over, move it out of the way: mv {shlex.quote(str(path))} "
        f"{shlex.quote(str(backup))}"
    )


def _checkpoint_file(text: str) -> Path:
    path = Path(text)
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    return path


def _selection(args: argparse.Namespace) -> str:
    """The filters of a checkpoints command, for messages: ``name 'x', stream y``."""
    parts = []
    if args.name is not None:
        parts.append(f"name {args.name!r}")
    if args.stream is not None:
        parts.append(f"stream {args.stream}")
    return ", ".join(parts)


def _select(
    stored: Sequence[StoredCheckpoint], name: str | None, matches: Callable[[str], bool]
) -> list[StoredCheckpoint]:
    return [s for s in stored if (name is None or s.name == name) and matches(s.stream_arn)]


def _cmd_checkpoints_show(args: argparse.Namespace, out: Output) -> int:
    matches = _stream_filter(args.stream)
    path = _checkpoint_file(args.file)
    with SQLiteCheckpointStore(path) as store:
        stored = _select(store.list_sync(), args.name, matches)
    if args.json:
        out.write(_render.checkpoints_to_json(stored))
    elif stored:
        out.write_text(_render.checkpoints_to_text(stored, glyphs=_glyphs(out)))
    else:
        selection = _selection(args)
        out.write_text(f"no checkpoints in {path}{f' for {selection}' if selection else ''}\n")
    out.flush()
    return 0


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (AttributeError, ValueError):
        return False


def _confirm(question: str) -> bool:
    """Ask ``question`` on stderr and read the answer from stdin (a terminal); yes or no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline()
    return answer.strip().lower() in ("y", "yes")


def _cmd_checkpoints_reset(args: argparse.Namespace, out: Output) -> int:
    matches = _stream_filter(args.stream)
    if not args.yes and not _stdin_is_terminal():
        raise UsageError(
            "refusing to reset without --yes (stdin is not a terminal to ask for confirmation)"
        )
    path = _checkpoint_file(args.file)
    # (name, stream ARN, stored version or None when the entry cannot be read)
    targets: list[tuple[str, str, int | None]]
    try:
        with SQLiteCheckpointStore(path) as store:
            listed = store.list_sync()
    except CheckpointFileError as exc:
        raise CheckpointError(
            f"{exc}; nothing in it can be reset; {_move_away_hint(exc.path)} (a missing file "
            "holds no checkpoints)"
        ) from exc
    except CheckpointError as exc:
        if "corrupt checkpoint" not in str(exc):
            raise  # the file itself is unusable: nothing can be reset in it
        exact = args.name is not None and args.stream is not None and args.stream.startswith("arn:")
        if not exact:
            raise CheckpointError(
                f"{exc}; a checkpoint that cannot be read is reset by naming it exactly: "
                "--name NAME --stream STREAM_ARN"
            ) from exc
        # Deleting needs only the key, not a readable entry.
        targets = [(args.name, parse_stream_arn(args.stream).text, None)]
    else:
        targets = [(s.name, s.stream_arn, s.version) for s in _select(listed, args.name, matches)]
    if not targets:
        selection = _selection(args)
        out.write_text(
            f"nothing to reset: no checkpoints in {path}"
            f"{f' for {selection}' if selection else ''}\n"
        )
        out.flush()
        return 0
    lines = [
        f"name {name!r}, stream {arn}, "
        + (f"version {version}" if version is not None else "unreadable")
        for name, arn, version in targets
    ]
    if not args.yes:
        sys.stderr.write("".join(f"  {line}\n" for line in lines))
        count = f"{len(targets)} checkpoint{'s' if len(targets) != 1 else ''}"
        if not _confirm(f"reset {count} in {path}?"):
            note("nothing reset")
            return 1
    with SQLiteCheckpointStore(path) as store:
        for name, arn, _ in targets:
            store.clear_sync(arn, name=name)
    out.write_text("".join(f"reset {line}\n" for line in lines))
    out.flush()
    return 0


# -- demo ---------------------------------------------------------------------------------

_DEMO_TABLE = "ddbstreams-demo"
_DEMO_BULK = 500
_BIG = Decimal("12345678901234567890123456789012345678")  # 38 digits: DynamoDB's maximum


def _demo_items() -> list[dict[str, Any]]:
    """Items that use every attribute type between them (S, N, B, SS, NS, BS, M, L, NULL,
    BOOL, the empty string, a 38-digit number and a decimal)."""
    return [
        {
            "pk": "order#1001",
            "sk": "v0",
            "customer": "Ada Lovelace",
            "note": "",
            "total": Decimal("149.95"),
            "quantity": 3,
            "serial": _BIG,
            "signature": b"\x00\x01\x02 ddbstreams \xff",
            "tags": {"gift", "express"},
            "lots": {7, 11, Decimal("2.5")},
            "checksums": {b"\xde\xad", b"\xbe\xef"},
            "shipping": {
                "address": {"city": "Lisbon", "zip": "1100-148"},
                "eta_days": 2,
                "insured": True,
            },
            "history": ["created", 1, None, False, {"by": "web"}],
            "coupon": None,
            "paid": False,
        },
        {
            "pk": "order#1002",
            "sk": "v0",
            "customer": "Grace Hopper",
            "total": Decimal("0.01"),
            "quantity": -1,
            "tags": {"sample"},
            "paid": True,
        },
        {
            "pk": "user#ada",
            "sk": "profile",
            "name": "Ada",
            "avatar": b"\x89PNG\r\n\x1a\n",
            "followers": 1815,
            "ratio": Decimal("0.333333333333333333333333333333333333"),
            "settings": {"theme": "dark", "langs": ["en", "pt"]},
        },
        {"pk": "counter#visits", "sk": "total", "count": 0},
        {"pk": "temp#1", "sk": "scratch", "payload": "to be deleted"},
        {"pk": "temp#2", "sk": "scratch", "payload": b"bytes to be deleted"},
    ]


def _write_bulk(client: Any, table_name: str, count: int) -> None:
    """Insert ``count`` small items with BatchWriteItem (25 per call, as the API allows)."""
    items = [
        encode_item({"pk": f"bulk#{n:04d}", "sk": "item", "n": n, "even": n % 2 == 0})
        for n in range(count)
    ]
    for offset in range(0, len(items), 25):
        requests = [{"PutRequest": {"Item": item}} for item in items[offset : offset + 25]]
        while requests:
            response = client.batch_write_item(RequestItems={table_name: requests})
            requests = response.get("UnprocessedItems", {}).get(table_name, [])


async def _read_back(
    stream_arn: str, client_kwargs: dict[str, Any], out: Output, shown: int
) -> tuple[Counter[str], int, float]:
    """Read the whole stream once, printing the first ``shown`` records as they arrive.

    Returns the count per event name, the number of shards records came from and the
    seconds the pass took (connecting included).
    """
    clock = SystemClock()
    color, glyphs = _use_color(out), _glyphs(out)
    counts: Counter[str] = Counter()
    shards: set[str] = set()
    started = clock.monotonic()
    async with (
        StreamsClient(**client_kwargs) as client,
        StreamReader(stream_arn, client=client) as reader,
    ):
        async for batch in reader.batches():
            chunks = []
            for record in batch:
                if counts.total() < shown:
                    chunks.append(_render.record_to_pretty(record, color=color, glyphs=glyphs))
                counts[record.event_name] += 1
                shards.add(record.shard_id)
            if chunks:
                out.write_text("".join(chunks))
                out.flush()
    return counts, len(shards), clock.monotonic() - started


def _write_showcase(table: Any) -> int:
    """Write the showcase items, updates and deletes; return how many changes were made."""
    items = _demo_items()
    for item in items:
        table.put(item)
    order = {"pk": "order#1001", "sk": "v0"}
    table.update(order, set={"paid": True, "quantity": 4})
    table.update(
        order,
        set={"tags": {"gift", "express", "priority"}, "total": Decimal("199.93")},
        remove=["coupon", "note"],
    )
    table.update({"pk": "user#ada", "sk": "profile"}, set={"followers": _BIG})
    for count in range(1, 4):
        table.update({"pk": "counter#visits", "sk": "total"}, set={"count": count})
    for key in (("temp#1", "scratch"), ("temp#2", "scratch"), ("order#1002", "v0")):
        table.delete({"pk": key[0], "sk": key[1]})
    return len(items) + 6 + 3


def _cmd_demo(args: argparse.Namespace, out: Output) -> int:
    from ddbstreams.local import DynamoDBLocal

    clock = SystemClock()
    say = out.write_text
    say("ddbstreams demo: DynamoDB Local, a NEW_AND_OLD_IMAGES stream, read back in one pass\n")
    started = clock.monotonic()
    say("starting DynamoDB Local ... ")
    out.flush()
    with DynamoDBLocal() as engine:
        say(f"ready at {engine.endpoint_url} ({clock.monotonic() - started:.1f} s)\n")
        table = engine.source_table(
            _DEMO_TABLE, sort_key=("sk", "S"), stream_view_type="NEW_AND_OLD_IMAGES"
        )
        say(f"table {table.name}, stream {table.stream_arn}\n")
        out.flush()
        written = clock.monotonic()
        showcase = _write_showcase(table)
        _write_bulk(table.client, table.name, _DEMO_BULK)
        say(
            f"wrote {showcase} changes using every attribute type, then {_DEMO_BULK} "
            f"inserts in batches ({clock.monotonic() - written:.1f} s)\n"
            "reading the stream from trim-horizon in a single pass:\n\n"
        )
        out.flush()
        counts, shard_count, elapsed = asyncio.run(
            _read_back(table.stream_arn, engine.client_kwargs(), out, showcase)
        )
    total = counts.total()
    if total > showcase:
        say(f"... and {total - showcase} more records (the batch inserts, not shown)\n")
    per_type = ", ".join(f"{name} {counts[name]}" for name in ("INSERT", "MODIFY", "REMOVE"))
    rate = f"{total / elapsed:,.0f} records/s" if elapsed > 0 else "instant"
    say(
        "\nsummary\n"
        f"  records  {total} ({per_type})\n"
        f"  shards   {shard_count}\n"
        f"  reading  {elapsed:.2f} s including connecting ({rate})\n"
        f"  demo     {clock.monotonic() - started:.1f} s in all, engine stopped\n"
    )
    out.flush()
    return 0


# -- entry point --------------------------------------------------------------------------


def _error(message: str) -> None:
    line = " ".join(message.split()) or "unknown error"
    if sys.stderr is not None:  # closed too: the exit status is all there is
        sys.stderr.write(f"{PROG}: error: {line}\n")
        sys.stderr.flush()


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


class _StderrLogHandler(logging.Handler):
    """Log records of libraries (WARNING and above) as ``ddbstreams: warning: ...`` lines.

    One line each, the exception named in brackets, unless ``verbose`` keeps the
    traceback: botocore logs some credential failures with a traceback that Python's
    last-resort handler would print in full before the command's one-line error.
    """

    def __init__(self, *, verbose: bool) -> None:
        super().__init__(logging.WARNING)
        self._verbose = verbose

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = " ".join(record.getMessage().split())
            error = record.exc_info[1] if record.exc_info else None
            if error is not None:
                line += f" ({type(error).__name__}: {one_line(error)})"
            text = f"{PROG}: warning: {line}\n"
            if self._verbose and record.exc_info:
                text += "".join(traceback.format_exception(*record.exc_info))
            if sys.stderr is not None:
                sys.stderr.write(text)
                sys.stderr.flush()
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def _logging_to_stderr(*, verbose: bool) -> Iterator[None]:
    """Send library log records through :class:`_StderrLogHandler` while a command runs."""
    root = logging.getLogger()
    handler = _StderrLogHandler(verbose=verbose)
    root.addHandler(handler)
    try:
        yield
    finally:
        root.removeHandler(handler)


def _silence_stdout() -> None:
    """After EPIPE, point stdout at /dev/null so the interpreter's final flush is quiet."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):
        pass  # not a real file (e.g. captured by a test): nothing will flush to a pipe


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``ddbstreams`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status (see the module docstring); never raises for user errors.
    """
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        _error(str(exc))
        return 2
    except SystemExit as exc:  # --help and --version print and "exit" successfully
        return exc.code if isinstance(exc.code, int) else 0
    if sys.stdout is None:  # started with stdout closed (`>&-`)
        _error("cannot write output: stdout is closed")
        return 1
    out = Output(sys.stdout)
    try:
        with _logging_to_stderr(verbose=getattr(args, "verbose", False)):
            status: int = args.handler(args, out)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except OutputError as exc:
        # What could not be written is still buffered: the interpreter's final flush would
        # fail again and print a traceback.
        _silence_stdout()
        _error(str(exc))
        return 1
    except UsageError as exc:
        _error(str(exc))
        return 2
    except ConfigurationError as exc:
        _error(_describe_error(exc))
        return 2
    except DDBStreamsError as exc:
        _error(_describe_error(exc))
        return 1
    except Exception as exc:
        if os.environ.get("DDBSTREAMS_DEBUG"):
            traceback.print_exc()
        _error(f"internal error: {type(exc).__name__}: {_describe_error(exc)}")
        return 1
