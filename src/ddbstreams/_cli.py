"""The ``ddbstreams`` command: ``tail``, ``describe`` and ``demo``.

``main(argv)`` returns the exit status; the console script exits with it. Exit statuses:
0 success (also when the reader of our output goes away, e.g. ``| head``), 1 runtime
error (unknown stream, unreachable endpoint, credentials...), 2 usage error (bad option,
bad ``--from``, malformed ARN, ``--follow`` in this version), 130 interrupted (Ctrl-C).

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
import os
import sys
import traceback
from collections import Counter
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import IO, Any, NoReturn

from ddbstreams import _render
from ddbstreams._client import StreamsClient
from ddbstreams._clock import SystemClock
from ddbstreams._decode import DefaultParser, RawParser
from ddbstreams._encode import encode_item
from ddbstreams._errors import ConfigurationError, DDBStreamsError
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
_FOLLOW_UNAVAILABLE = (
    "--follow is not available in this version of ddbstreams: it arrives with follow mode; "
    "run without --follow to read what the stream holds now"
)


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
            "Print the records of a stream. Without --follow: everything the stream holds "
            "now (a single pass over every shard, parents before children), then exit."
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
    tail.add_argument("-f", "--follow", action="store_true", help="keep reading until interrupted")
    tail.add_argument(
        "--max-records",
        metavar="N",
        type=_positive_int,
        help="stop after N records",
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
    return asyncio.run(_tail(args, out))


async def _tail(args: argparse.Namespace, out: _Output) -> int:
    parser = RawParser() if args.raw else DefaultParser()
    render: Callable[[Record], bytes]
    if args.format == "pretty":
        color, glyphs = _use_color(out), _glyphs(out)

        def render(record: Record) -> bytes:
            return _render.record_to_pretty(record, color=color, glyphs=glyphs).encode("utf-8")

    else:
        render = _render.record_to_jsonl
    try:
        reader = StreamReader(
            args.stream,
            start=args.start,
            follow=args.follow,
            endpoint_url=args.endpoint_url,
            region_name=args.region,
            parser=parser,
        )
    except ConfigurationError as exc:
        if args.follow and "follow" in str(exc):
            raise _UsageError(_FOLLOW_UNAVAILABLE) from exc
        raise
    remaining: int | None = args.max_records
    async with reader:
        async for batch in reader.batches():
            if remaining is not None:
                batch = batch[:remaining]
                remaining -= len(batch)
            out.write(b"".join([render(record) for record in batch]))
            # One flush per batch (a GetRecords page at most): prompt for a human watching,
            # cheap for a pipe.
            out.flush()
            if remaining == 0:
                break
    return 0


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
