"""The ``ddbstreams`` command: ``tail``, ``describe`` and ``demo``.

``main(argv)`` returns the exit status; the console script exits with it. Exit statuses:
0 success (also when the reader of our output goes away, e.g. ``| head``, and when
``tail --follow`` is stopped by Ctrl-C/SIGINT or SIGTERM: a stop the user asked for is
success), 1 runtime error (unknown stream, unreachable endpoint, credentials...), 2 usage
error (bad option, bad ``--from``, malformed ARN), 130 a single-pass ``tail``, ``describe``
or ``demo`` interrupted by Ctrl-C before it finished.

``tail --follow`` runs until stopped. SIGINT and SIGTERM are handled on the event loop: the
first one stops the reader (every shard fetcher ends, the client is closed) after the batch
being written, if any, has been written and flushed, then the command exits 0 without a
traceback; the previous signal handlers are restored afterwards. Output is flushed after
every batch, so a pipe reader sees records as they arrive. ``--verbose`` logs the reader's
events (shards started and finished, throttling, trimmed records...) on stderr, one line
each; stdout only ever carries records.

Errors a user can cause are reported as exactly one line on stderr,
``ddbstreams: error: <message>``, never as a traceback. An unexpected internal error is
reported the same way (prefixed ``internal error``); set ``DDBSTREAMS_DEBUG=1`` to get its
traceback.

Output formats live in :mod:`ddbstreams._render` (pure). This module only parses
arguments, drives the reader and the client, and writes bytes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator, Sequence
from decimal import Decimal
from typing import IO, Any, NoReturn

from ddbstreams import _render
from ddbstreams._client import StreamsClient
from ddbstreams._clock import SystemClock
from ddbstreams._decode import DefaultParser, RawParser
from ddbstreams._encode import encode_item
from ddbstreams._errors import ConfigurationError, DDBStreamsError
from ddbstreams._events import ReaderError, ReaderEvent
from ddbstreams._model import Record
from ddbstreams._position import (
    LATEST,
    TRIM_HORIZON,
    StartPosition,
    after_sequence,
    at_sequence,
)
from ddbstreams._reader import StreamReader

__all__ = ["main", "parse_position"]

_PROG = "ddbstreams"
_POSITION_FORMS = "trim-horizon, latest, at:SEQ or after:SEQ (SEQ: a sequence number of digits)"
_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _UsageError(Exception):
    """A command line that cannot be run (exit status 2)."""


class _ArgumentParser(argparse.ArgumentParser):
    """An ArgumentParser that reports errors to :func:`main` instead of exiting.

    argparse prints the usage and exits from inside ``parse_args``; raising lets ``main``
    print one ``ddbstreams: error:`` line and return 2 like every other usage error.
    """

    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{message} (see '{self.prog} --help')")


def parse_position(text: str) -> StartPosition:
    """Turn a ``--from`` value into a start position.

    Accepted forms: ``trim-horizon``, ``latest``, ``at:SEQ``, ``after:SEQ`` (case-insensitive
    keywords; SEQ is a sequence number). Raises ``argparse.ArgumentTypeError`` otherwise,
    with a message naming the accepted forms.
    """
    value = text.strip()
    keyword, sep, sequence = value.partition(":")
    keyword = keyword.lower()
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


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive whole number, got {text!r}")
    return value


def _add_connection_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--endpoint-url",
        metavar="URL",
        help="endpoint of DynamoDB and DynamoDB Streams (e.g. DynamoDB Local); default: AWS",
    )
    parser.add_argument(
        "--region", metavar="REGION", help="AWS region; default: from the AWS configuration"
    )


def _build_parser() -> _ArgumentParser:
    parser = _ArgumentParser(
        prog=_PROG,
        description="Read Amazon DynamoDB Streams.",
        epilog="STREAM is a stream ARN or a source table name (its latest stream is used).",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

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
            "Exit status: 0 on success, including a --follow stopped by Ctrl-C (SIGINT) or "
            "SIGTERM, or by --max-records; 1 on a runtime error; 2 on a usage error; 130 "
            "when a run without --follow is interrupted."
        ),
    )
    tail.add_argument("stream", metavar="STREAM", help="stream ARN or source table name")
    tail.add_argument(
        "--from",
        dest="start",
        metavar="POSITION",
        type=parse_position,
        default=TRIM_HORIZON,
        help="where to start: trim-horizon (default, oldest record), latest, at:SEQ, after:SEQ",
    )
    tail.add_argument(
        "-f",
        "--follow",
        action="store_true",
        help=(
            "keep printing changes as they are written until interrupted; Ctrl-C (SIGINT) "
            "or SIGTERM stops cleanly with exit status 0"
        ),
    )
    tail.add_argument(
        "--max-records",
        metavar="N",
        type=_positive_int,
        help="stop after N records (also with --follow)",
    )
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
            "finished, throttled, retried, records trimmed...)"
        ),
    )
    _add_connection_options(tail)
    tail.set_defaults(handler=_cmd_tail)

    describe = commands.add_parser(
        "describe",
        help="show a stream and its shard lineage",
        description="Show a stream's fields and its shards as a lineage tree.",
    )
    describe.add_argument("stream", metavar="STREAM", help="stream ARN or source table name")
    describe.add_argument("--json", action="store_true", help="print a JSON document instead")
    _add_connection_options(describe)
    describe.set_defaults(handler=_cmd_describe)

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


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("ddbstreams")
    except PackageNotFoundError:  # pragma: no cover - running from a bare source tree
        return "unknown"


# -- output -------------------------------------------------------------------------------


class _Output:
    """Buffered binary output: many writes, one flush per batch of records.

    Writes go to the binary buffer of the text stream (no per-line encoding layer). A
    BrokenPipeError (the reader of our output went away) propagates to :func:`main`.
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
        if self._binary is not None:
            self._binary.write(data)
        else:
            self._text.write(data.decode("utf-8"))

    def write_text(self, text: str) -> None:
        self.write(text.encode("utf-8"))

    def flush(self) -> None:
        if self._binary is not None:
            self._binary.flush()
        self._text.flush()


def _use_color(out: _Output) -> bool:
    return out.is_terminal and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"


def _glyphs(out: _Output) -> _render.Glyphs:
    return _render.UNICODE if out.unicode else _render.ASCII


# -- commands -----------------------------------------------------------------------------


def _cmd_tail(args: argparse.Namespace, out: _Output) -> int:
    try:
        return asyncio.run(_tail(args, out))
    except KeyboardInterrupt:
        # Only reached when the loop could not take over SIGINT (no signal support on this
        # platform, or not the main thread): a follow still ends at the user's request.
        if args.follow:
            return 0
        raise


def _note(message: str) -> None:
    """An informational line on stderr (never stdout, which carries only records)."""
    sys.stderr.write(f"{_PROG}: {message}\n")
    sys.stderr.flush()


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _print_event(event: ReaderEvent) -> None:
    # An error that ends the read is reported once, as the command's error line.
    if isinstance(event, ReaderError) and not event.retrying:
        return
    _note(_render.event_to_text(event))


@contextlib.contextmanager
def _stop_on_signals(
    loop: asyncio.AbstractEventLoop, on_signal: Callable[[signal.Signals], None]
) -> Iterator[None]:
    """Call ``on_signal`` on ``loop`` for SIGINT and SIGTERM, then restore the old handlers.

    Where the loop cannot handle signals (Windows, a thread other than the main one), the
    old handlers stay: Ctrl-C then surfaces as KeyboardInterrupt (see :func:`_cmd_tail`).
    """
    installed: list[tuple[signal.Signals, Any]] = []
    try:
        for signum in _STOP_SIGNALS:
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


async def _until_stopped(work: Coroutine[Any, Any, None], stop: asyncio.Event) -> None:
    """Run ``work`` until it ends or ``stop`` is set; then cancel it and wait for it.

    Raises what ``work`` raised. A stop is not an error: it returns normally. Cancelling
    ``work`` runs its cleanup (``async with reader`` stops the reader) before this returns.
    """
    task = asyncio.create_task(work)
    waiter = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        waiter.cancel()
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    if not task.cancelled():
        task.result()


async def _tail(args: argparse.Namespace, out: _Output) -> int:
    parser = RawParser() if args.raw else DefaultParser()
    render: Callable[[Record], bytes]
    if args.format == "pretty":
        color, glyphs = _use_color(out), _glyphs(out)

        def render(record: Record) -> bytes:
            return _render.record_to_pretty(record, color=color, glyphs=glyphs).encode("utf-8")

    else:
        render = _render.record_to_jsonl
    reader = StreamReader(
        args.stream,
        start=args.start,
        follow=args.follow,
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        parser=parser,
        on_event=_print_event if args.verbose else None,
    )
    if not args.follow:
        # Ctrl-C: asyncio.run cancels this task (the reader stops) and raises
        # KeyboardInterrupt, reported by main() as status 130.
        await _copy(reader, render, out, args.max_records, verbose=args.verbose)
        return 0
    stop = asyncio.Event()

    def on_signal(signum: signal.Signals) -> None:
        if args.verbose and not stop.is_set():
            _note(f"{signum.name} received, stopping")
        stop.set()

    with _stop_on_signals(asyncio.get_running_loop(), on_signal):
        # The signal handlers are in place before the reader starts, so a stop requested
        # while the stream is being resolved is honoured too.
        await _until_stopped(
            _copy(
                reader,
                render,
                out,
                args.max_records,
                verbose=args.verbose,
                announce=args.verbose or _stderr_is_terminal(),
            ),
            stop,
        )
    return 0


async def _copy(
    reader: StreamReader[Record],
    render: Callable[[Record], bytes],
    out: _Output,
    limit: int | None,
    *,
    verbose: bool,
    announce: bool | None = None,
) -> None:
    """Start ``reader``, write its records (at most ``limit``) and stop it, however this ends.

    ``announce`` (default: ``verbose``) says on stderr which stream is read. Cancellation
    only happens while waiting for the next batch, never halfway through writing one:
    writing and flushing do not await.
    """
    remaining = limit
    started = False
    try:
        async with reader:
            started = True
            if verbose if announce is None else announce:
                mode = "following" if reader.follow else "reading"
                hint = ", Ctrl-C to stop" if reader.follow else ""
                _note(f"{mode} {reader.stream_arn}{hint}")
            async for batch in reader.batches():
                if remaining is not None:
                    batch = batch[:remaining]
                    remaining -= len(batch)
                out.write(b"".join([render(record) for record in batch]))
                # One flush per batch (a GetRecords page at most): prompt for a human
                # watching or a pipe reader, cheap for a pipe.
                out.flush()
                if remaining == 0:
                    break
    finally:
        if verbose and started:
            _note("reader stopped")


def _cmd_describe(args: argparse.Namespace, out: _Output) -> int:
    return asyncio.run(_describe(args, out))


async def _describe(args: argparse.Namespace, out: _Output) -> int:
    async with StreamsClient(endpoint_url=args.endpoint_url, region_name=args.region) as client:
        stream_arn = await client.resolve_stream(args.stream)
        description = await client.describe_stream(stream_arn)
    if args.json:
        out.write(_render.description_to_json(description))
    else:
        out.write_text(_render.description_to_text(description, glyphs=_glyphs(out)))
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
    stream_arn: str, client_kwargs: dict[str, Any], out: _Output, shown: int
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


def _cmd_demo(args: argparse.Namespace, out: _Output) -> int:
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
    sys.stderr.write(f"{_PROG}: error: {line}\n")
    sys.stderr.flush()


def _describe_error(exc: BaseException) -> str:
    text = str(exc).strip()
    return text or type(exc).__name__


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
    except _UsageError as exc:
        _error(str(exc))
        return 2
    except SystemExit as exc:  # --help and --version print and "exit" successfully
        return exc.code if isinstance(exc.code, int) else 0
    out = _Output(sys.stdout)
    try:
        status: int = args.handler(args, out)
        return status
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _silence_stdout()
        return 0
    except _UsageError as exc:
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
