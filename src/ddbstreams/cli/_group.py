"""The ``ddbstreams run`` and ``ddbstreams leases show|reset`` commands (worker groups).

``run MODULE:FUNCTION --stream STREAM --group APP`` imports a handler and runs it as one
worker of the group ``APP`` (a :class:`~ddbstreams.Consumer` with ``group=APP``) until a
stop signal. MODULE is a dotted module name, looked up from the current directory first
(as ``python -m`` does) and then the Python path, or the path of a ``.py`` file; FUNCTION
may be dotted (``handlers.orders``). A function taking ``(event, context)`` is an unchanged
AWS Lambda handler and is wrapped with :func:`~ddbstreams.lambda_handler`; one taking a
single argument is a native handler receiving a ``list[Record]`` (plain or ``async``).
With ``--checkpoint FILE`` instead of ``--group`` the handler runs in a single process
with its checkpoint in a SQLite file (``--name``, default ``default``).

The first SIGINT, SIGTERM or SIGHUP stops the worker gracefully
(:meth:`~ddbstreams.Consumer.request_stop`: it starts no new batch, lets the batches in
flight finish, checkpoints them and releases its leases, which the other workers take at
once); the command then exits 0. A second signal exits at once with status 128 + the
signal's number (the leases still held expire after the failover time, as after a crash).
``--health-port PORT`` serves ``GET /healthz`` on 127.0.0.1: 200 while the consumer is
RUNNING (and, in a group, its heartbeat was renewed within the failover time), 503
otherwise, with a small JSON body either way.

``leases show APP`` lists the group's leases (lease table ``APP``, the KCL's format) and the
workers of its workers table; ``leases reset APP`` deletes leases so the group starts over
from its starting position, refusing while the workers table lists workers unless
``--force``.

Errors are reported by :func:`~ddbstreams.cli._main.main` (one line, status 2 for a usage
error, 1 for a runtime error).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import importlib.util
import inspect
import os
import signal
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
from aiohttp import web

from ddbstreams._clock import SystemClock
from ddbstreams._errors import ConfigurationError, DDBStreamsError, TableNotFoundError
from ddbstreams._events import (
    BatchFailed,
    ConsumerStarted,
    Event,
    ForeignWorkers,
    GetRecordsCalled,
    GroupError,
    LeaseLost,
    ReaderError,
    RecordsGivenUp,
    RequestRetried,
    Throttled,
)
from ddbstreams.cli import _render
from ddbstreams.cli._common import (
    Output,
    UsageError,
    add_connection_options,
    note,
    one_line,
    positive_int,
    positive_seconds,
    retry_event,
    stop_on_signals,
)
from ddbstreams.cli._metrics import add_metrics_port_option, both, serving_metrics
from ddbstreams.cli._moments import parse_ago, parse_time
from ddbstreams.client._streams import RetryNotice, StreamsClient
from ddbstreams.consuming._consumer import (
    Consumer,
    ConsumerLifecycle,
    ConsumerOptions,
    Handler,
    JsonLinesDestination,
    lambda_handler,
)
from ddbstreams.consuming._filter import RecordFilter
from ddbstreams.coordination import Lease, LeaseTable, WorkerRecord, WorkerState
from ddbstreams.coordination._options import GroupOptions
from ddbstreams.coordination._table import WORKERS_TABLE_SUFFIX
from ddbstreams.metrics._endpoint import LoopbackEndpoint
from ddbstreams.model._arn import is_table_name, parse_stream_arn
from ddbstreams.model._position import LATEST, TRIM_HORIZON, AtTime, Latest, TrimHorizon
from ddbstreams.state._stores import SQLiteCheckpointStore

__all__ = [
    "HandlerImportError",
    "HealthServer",
    "add_leases_command",
    "add_run_command",
    "import_function",
    "is_lambda_handler",
    "load_handler",
]

_DEFAULTS = ConsumerOptions()
_GROUP_DEFAULTS = GroupOptions()
_HANDLER_FORMS = "MODULE:FUNCTION (e.g. app.handlers:handle, or handlers.py:handle)"


class HandlerImportError(DDBStreamsError):
    """The handler's module was found but importing it failed (exit status 1)."""


class HealthCheckError(DDBStreamsError):
    """The health check cannot be served (the port is taken...)."""


class GroupBusyError(DDBStreamsError):
    """``leases reset`` refused: the workers table lists workers."""


# -- argument types -----------------------------------------------------------------------


def _whole_number(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a whole number from {low} to {high}, got {text!r}"
            )
        return value

    return parse


def _starting_position(text: str) -> TrimHorizon | Latest | AtTime:
    """A ``--starting-position``: trim-horizon, latest, or (one process only: a group's
    leases hold sequence numbers) time:ISO-8601 / ago:DURATION as ``tail --from`` takes."""
    keyword, sep, rest = text.strip().partition(":")
    keyword = keyword.lower()
    try:
        if sep and keyword in ("time", "ago"):
            return parse_time(rest) if keyword == "time" else parse_ago(rest)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid starting position {text!r}: {exc}") from None
    if not sep and keyword in ("trim-horizon", "latest"):
        return LATEST if keyword == "latest" else TRIM_HORIZON
    raise argparse.ArgumentTypeError(
        f"invalid starting position {text!r}: expected trim-horizon, latest, "
        "time:ISO-8601 (e.g. time:2026-12-01T10:00:00Z) or ago:N[s|m|h|d]"
    )


def _seconds(low: float, high: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(
                f"expected a number of seconds from {low:g} to {high:g}, got {text!r}"
            )
        return value

    return parse


def _record_age(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0
    if value != -1 and not 0 < value <= 604_800:
        raise argparse.ArgumentTypeError(
            f"expected -1 (no limit) or seconds above 0 up to 604800, got {text!r}"
        )
    return value


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"expected a TCP port from 0 to 65535, got {text!r}")
    return value


# -- run: arguments -----------------------------------------------------------------------


def add_run_command(commands: Any) -> None:
    """Add ``run`` to the subcommands ``commands`` (an argparse subparsers action)."""
    run = commands.add_parser(
        "run",
        help="run a handler as a worker of a group (or a single consumer)",
        description=(
            "Run a batch handler over a stream as one worker of the group APP: the workers "
            "of a group share the stream's shards through leases in the DynamoDB table APP "
            "(the Java KCL's format, created on demand) and checkpoint per shard there. "
            "Start as many workers, on as many hosts, as needed. FUNCTION taking "
            "(event, context) is an unchanged AWS Lambda handler; FUNCTION taking one "
            "argument gets a list of ddbstreams Records (plain or async def)."
        ),
        epilog=(
            "MODULE is a dotted module name, found from the current directory first (as "
            "with python -m), or the path of a .py file. Stopping: the first SIGINT, SIGTERM "
            "or SIGHUP lets the batches in flight finish, checkpoints them and releases the "
            "worker's leases (other workers take them at once), then exits 0; a second "
            "signal exits at once (status 128 + signal number). Exit status: 1 on a runtime "
            "error, 2 on a usage error."
        ),
    )
    run.add_argument("function", metavar="MODULE:FUNCTION", help="the handler to run")
    run.add_argument(
        "--stream", required=True, metavar="STREAM", help="stream ARN or source table name"
    )
    _add_run_mode_options(run)
    _add_consumer_options(run)
    _add_group_options(run)
    add_metrics_port_option(run)
    run.add_argument(
        "--health-port",
        metavar="PORT",
        type=_port,
        help=(
            "serve GET /healthz on 127.0.0.1:PORT: 200 while the worker runs and its "
            "heartbeat is fresh, 503 otherwise (0: any free port, said on stderr)"
        ),
    )
    run.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help=(
            "log the worker's events on stderr, one line each (leases taken and released, "
            "batches handled, checkpoints, retried requests...)"
        ),
    )
    add_connection_options(run)
    run.set_defaults(handler=run_command)


def _add_run_mode_options(run: argparse.ArgumentParser) -> None:
    run.add_argument(
        "--group",
        metavar="APP",
        help="the group (application) name: also the name of its DynamoDB lease table",
    )
    run.add_argument(
        "--worker-id",
        metavar="ID",
        help="this worker's id in the group (default: host, pid and a random part)",
    )
    run.add_argument(
        "--checkpoint",
        metavar="FILE",
        help="instead of --group: run a single process with its checkpoint in a SQLite FILE",
    )
    run.add_argument(
        "--name", metavar="NAME", help="with --checkpoint: the checkpoint's name (default: default)"
    )


def _add_consumer_options(run: argparse.ArgumentParser) -> None:
    """How the consumer batches (Lambda's event source mapping options)."""
    run.add_argument(
        "--batch-size",
        metavar="N",
        type=_whole_number(1, 10_000),
        help=f"most records per handler call, 1-10000 (default: {_DEFAULTS.batch_size})",
    )
    run.add_argument(
        "--maximum-batching-window",
        metavar="SECONDS",
        type=_seconds(0, 300),
        help="how long to gather records before a call with fewer than --batch-size, 0-300 "
        f"(default: {_DEFAULTS.maximum_batching_window:g})",
    )
    run.add_argument(
        "--starting-position",
        metavar="POSITION",
        type=_starting_position,
        help="where a shard without a checkpoint starts: trim-horizon (default), latest, or "
        "with --checkpoint time:2026-12-01T10:00:00Z or ago:15m (records created since then)",
    )
    run.add_argument(
        "--parallelization-factor",
        metavar="N",
        type=_whole_number(1, 10),
        help="batches of one shard in flight at once, 1-10 (default: 1)",
    )
    run.add_argument(
        "--max-concurrent-handlers",
        metavar="N",
        type=positive_int,
        help=f"handler calls running at once (default: {_DEFAULTS.max_concurrent_handlers})",
    )
    run.add_argument(
        "--stop-timeout",
        metavar="SECONDS",
        type=_seconds(0, 86_400),
        help="how long a stop lets the batches in flight finish "
        f"(default: {_DEFAULTS.stop_timeout:g})",
    )
    _add_failure_options(run)


def _add_failure_options(run: argparse.ArgumentParser) -> None:
    """What the consumer does with failing or unwanted records."""
    run.add_argument(
        "--maximum-retry-attempts",
        metavar="N",
        type=_whole_number(-1, 10_000),
        help="retries of a failed batch; -1: until its records expire (default: -1)",
    )
    run.add_argument(
        "--maximum-record-age",
        metavar="SECONDS",
        type=_record_age,
        help="older records are not handled but sent to --on-failure; -1: no limit (default: -1)",
    )
    run.add_argument(
        "--bisect-batch-on-error",
        action="store_true",
        help="split a failed batch in two and retry each half, until the failing record is alone",
    )
    run.add_argument(
        "--report-batch-item-failures",
        action="store_true",
        help='honour the handler\'s partial batch response ({"batchItemFailures": [...]})',
    )
    run.add_argument(
        "--filter",
        metavar="PATTERN",
        action="append",
        dest="filters",
        help="a Lambda filter pattern (JSON); repeatable: a record passes if one matches",
    )
    run.add_argument(
        "--on-failure",
        metavar="FILE",
        help="append the records given up on to FILE (one JSON document per batch)",
    )


def _add_group_options(run: argparse.ArgumentParser) -> None:
    g = _GROUP_DEFAULTS
    run.add_argument(
        "--failover-time",
        metavar="SECONDS",
        type=positive_seconds,
        help=(
            "a worker whose heartbeat has not moved for this long loses its leases; use "
            f"the same value on every worker (default: {g.failover_time:g})"
        ),
    )
    run.add_argument(
        "--heartbeat-interval",
        metavar="SECONDS",
        type=positive_seconds,
        help="how often the worker renews its heartbeat (default: a third of --failover-time)",
    )
    run.add_argument(
        "--max-leases",
        metavar="N",
        type=positive_int,
        help="most leases this worker takes (default: no limit)",
    )


# -- run: checks --------------------------------------------------------------------------


def _check_run_arguments(args: argparse.Namespace) -> None:
    """Usage errors of ``run`` that argparse cannot tell (combinations, names)."""
    if args.group is None and args.checkpoint is None:
        raise UsageError(
            "run needs --group APP (a worker of a group) or --checkpoint FILE (a single process)"
        )
    if args.group is not None and args.checkpoint is not None:
        raise UsageError(
            "--group and --checkpoint exclude each other: a group keeps its checkpoints in "
            "its lease table"
        )
    if args.group is None:
        for flag in ("worker_id", "failover_time", "heartbeat_interval", "max_leases"):
            if getattr(args, flag) is not None:
                raise UsageError(f"--{flag.replace('_', '-')} needs --group APP")
    else:
        _check_group_name(args.group)
        if args.name is not None:
            raise UsageError("--name needs --checkpoint FILE (a group's name is APP)")
        failover = args.failover_time or _GROUP_DEFAULTS.failover_time
        if args.heartbeat_interval is not None and args.heartbeat_interval >= failover:
            raise UsageError(
                f"--heartbeat-interval ({args.heartbeat_interval:g}) must be below "
                f"--failover-time ({failover:g})"
            )
    _check_stream(args.stream)
    if args.on_failure is not None:
        _check_output_file(args.on_failure, "--on-failure")


def _check_group_name(group: str) -> None:
    if not is_table_name(group) or len(group) + len(WORKERS_TABLE_SUFFIX) > 255:
        raise UsageError(
            f"invalid group name {group!r}: it names the lease table, so it must be 3-"
            f"{255 - len(WORKERS_TABLE_SUFFIX)} characters of a-z, A-Z, 0-9, '_', '-', '.'"
        )


def _check_stream(stream: str) -> None:
    if stream.startswith("arn:"):
        parse_stream_arn(stream)  # InvalidStreamArnError: a usage error
    elif not is_table_name(stream):
        raise UsageError(
            f"--stream {stream!r} is neither a stream ARN nor a table name (3-255 characters "
            "of a-z, A-Z, 0-9, '_', '-' and '.')"
        )


def _check_output_file(text: str, flag: str) -> None:
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"{flag} {text!r} is a directory, not a file")
    if not path.parent.is_dir():
        raise UsageError(f"{flag} {text!r}: directory {str(path.parent)!r} does not exist")


def _filters(patterns: Sequence[str] | None) -> RecordFilter | None:
    if not patterns:
        return None
    try:
        return RecordFilter.from_patterns(patterns)
    except ConfigurationError as exc:
        raise UsageError(f"--filter: {one_line(exc)}") from exc


def _option_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The consumer options given on the command line (the others keep their defaults)."""
    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in (
            "batch_size",
            "maximum_batching_window",
            "maximum_retry_attempts",
            "maximum_record_age",
            "parallelization_factor",
            "max_concurrent_handlers",
            "stop_timeout",
        )
        if getattr(args, name) is not None
    }
    if args.starting_position is not None:
        fields["starting_position"] = args.starting_position
    for flag in ("bisect_batch_on_error", "report_batch_item_failures"):
        if getattr(args, flag):
            fields[flag] = True
    return fields


def _group_options(args: argparse.Namespace) -> GroupOptions:
    fields: dict[str, Any] = {
        name: getattr(args, name)
        for name in ("failover_time", "heartbeat_interval", "max_leases")
        if getattr(args, name) is not None
    }
    return GroupOptions(**fields)


# -- run: the handler ---------------------------------------------------------------------


def _import_file(path: Path) -> ModuleType:
    """Import the ``.py`` file ``path`` as a module named after it (its directory is put
    on the Python path first, as ``python path/to/file.py`` does)."""
    if not path.is_file():
        raise UsageError(f"no such file: {str(path)!r} (the MODULE of MODULE:FUNCTION)")
    name = path.stem
    if not name.isidentifier() or name in sys.modules:  # never shadow a module (json.py)
        name = "ddbstreams_handler"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"cannot import {str(path)!r}: not a Python source file")
    module = importlib.util.module_from_spec(spec)
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


def _import_module(name: str) -> ModuleType:
    """Import the dotted module ``name``, from the current directory first."""
    if not all(part.isidentifier() for part in name.split(".")):
        raise UsageError(f"invalid module name {name!r}: expected {_HANDLER_FORMS}")
    cwd = os.getcwd()
    if "" not in sys.path and cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise UsageError(
                f"no module named {missing!r} (looked up from the current directory {cwd} "
                "and the Python path; MODULE may also be the path of a .py file)"
            ) from exc
        raise


def import_function(spec: str) -> Callable[..., Any]:
    """The callable named by ``spec``, ``MODULE:FUNCTION`` (see the module).

    :class:`UsageError` for a malformed spec, a module or file that does not exist, a name
    the module does not have or that is not callable; :class:`HandlerImportError` when
    importing the module raises (its message names the module and the error; the traceback
    is printed only with ``DDBSTREAMS_DEBUG=1``).
    """
    module_text, _, attribute = spec.rpartition(":")
    if not module_text or not attribute:
        raise UsageError(f"invalid handler {spec!r}: expected {_HANDLER_FORMS}")
    is_file = module_text.endswith(".py") or "/" in module_text or os.sep in module_text
    try:
        module = _import_file(Path(module_text)) if is_file else _import_module(module_text)
    except UsageError:
        raise
    except (Exception, SystemExit) as exc:
        if os.environ.get("DDBSTREAMS_DEBUG"):
            traceback.print_exception(exc)
        what = f"SystemExit({exc.code!r})" if isinstance(exc, SystemExit) else None
        raise HandlerImportError(
            f"importing {module_text!r} failed: {what or f'{type(exc).__name__}: {one_line(exc)}'}"
        ) from None
    target: Any = module
    for part in attribute.split("."):
        if not part.isidentifier() or not hasattr(target, part):
            raise UsageError(f"{module_text!r} has no {attribute!r} (handler {spec!r})")
        target = getattr(target, part)
    if not callable(target):
        kind = type(target).__name__
        raise UsageError(f"{attribute!r} in {module_text!r} is not callable: it is of type {kind}")
    return target  # type: ignore[no-any-return]


_CONTEXT_NAMES = frozenset({"context", "ctx", "lambda_context"})


def is_lambda_handler(function: Callable[..., Any]) -> bool:
    """Whether ``function`` is a Lambda handler ``(event, context)`` rather than a native
    handler ``(records)``, from its signature.

    Lambda: two required positional parameters, or a second positional one named
    ``context`` (``def handler(event, context=None)``). Native: one required positional
    parameter (or one positional parameter with a default). UsageError for anything else
    (no positional parameter, more than two required, required keyword-only ones), and
    for an ``async`` Lambda handler (Lambda's Python runtime calls handlers plainly).
    """
    name = getattr(function, "__qualname__", None) or repr(function)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"cannot read the parameters of {name}: {one_line(exc)}") from exc
    parameters = list(signature.parameters.values())
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    positional = [p for p in parameters if p.kind in kinds]
    required = [p for p in positional if p.default is inspect.Parameter.empty]
    keyword_only = [
        p
        for p in parameters
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.default is inspect.Parameter.empty
    ]
    second = positional[1].name.lstrip("_") if len(positional) >= 2 else None
    if keyword_only or len(required) > 2 or not positional:
        raise UsageError(
            f"{name}{signature} is not a handler: expected a function taking (records), a "
            "native handler, or (event, context), a Lambda handler"
        )
    lambda_like = len(required) == 2 or second in _CONTEXT_NAMES
    if lambda_like and inspect.iscoroutinefunction(function):
        raise UsageError(
            f"{name}{signature} is an async Lambda handler: Lambda handlers are plain "
            "functions; make it plain, or an async native handler taking (records)"
        )
    return lambda_like


def load_handler(spec: str) -> Handler:
    """The consumer handler for ``spec`` (``MODULE:FUNCTION``): the function itself for a
    native handler, :func:`~ddbstreams.lambda_handler` of it for a Lambda handler."""
    function = import_function(spec)
    if is_lambda_handler(function):
        return lambda_handler(function)
    return function


# -- run: the worker ----------------------------------------------------------------------


def run_command(args: argparse.Namespace, out: Output) -> int:
    """``ddbstreams run``: check the arguments, import the handler, run until stopped."""
    _check_run_arguments(args)
    filters = _filters(args.filters)
    handler = load_handler(args.function)
    return asyncio.run(_run(args, handler, filters))


def _client(args: argparse.Namespace) -> StreamsClient:
    client = StreamsClient(
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        credentials_timeout=args.credentials_timeout,
    )
    if getattr(args, "verbose", False):
        client.add_retry_listener(_say_retry)
    return client


def _say_retry(notice: RetryNotice) -> None:
    note(_render.event_to_text(retry_event(notice)))


def _make_consumer(
    args: argparse.Namespace,
    handler: Handler,
    filters: RecordFilter | None,
    client: StreamsClient,
    on_event: Callable[[Event], None],
) -> Consumer:
    """The consumer ``run`` runs: a worker of ``--group``, or a single process with its
    checkpoint in ``--checkpoint FILE``."""
    on_failure = JsonLinesDestination(args.on_failure) if args.on_failure is not None else None
    common: dict[str, Any] = {
        "filters": filters,
        "on_failure": on_failure,
        "client": client,
        "on_event": on_event,
        **_option_fields(args),
    }
    if args.group is not None:
        return Consumer(
            args.stream,
            handler,
            group=args.group,
            worker_id=args.worker_id,
            group_options=_group_options(args),
            **common,
        )
    store = SQLiteCheckpointStore(args.checkpoint)
    return Consumer(args.stream, handler, store=store, name=args.name or "default", **common)


class _Stopper:
    """The stop signals of ``run``: the first asks the consumer to stop gracefully, a
    second one exits the process at once (``exit_now``, :func:`os._exit` by default, with
    status 128 + the signal's number)."""

    __slots__ = ("_consumer", "_exit_now", "requested")

    def __init__(self, consumer: Consumer, *, exit_now: Callable[[int], object] = os._exit) -> None:
        self._consumer = consumer
        self._exit_now = exit_now
        self.requested = False

    def __call__(self, signum: signal.Signals) -> None:
        if not self.requested:
            self.requested = True
            leases = ", releasing leases" if self._consumer.group is not None else ""
            note(
                f"{signum.name} received: stopping (finishing the batches in flight, "
                f"checkpointing{leases}); {signum.name} again exits at once"
            )
            self._consumer.request_stop()
            return
        lapse = " (leases still held expire after the failover time)"
        note(f"{signum.name} received again: exiting now{lapse if self._consumer.group else ''}")
        with contextlib.suppress(Exception):
            sys.stdout.flush()  # what the handler printed
        self._exit_now(128 + signum.value)


class _EventLines:
    """What ``run`` says on stderr of its consumer's events: that it started (always) and,
    with ``verbose``, every event but those the ``ddbstreams`` logger already reports as
    warnings, retries (told by the client's listener) and a final read error (the
    command's error line)."""

    __slots__ = ("_verbose", "consumer", "where")

    def __init__(self, *, verbose: bool, where: str) -> None:
        self._verbose = verbose
        self.where = where
        self.consumer: Consumer | None = None

    def __call__(self, event: Event) -> None:
        if isinstance(event, ConsumerStarted):
            self._started(event)
            return
        if not self._verbose or _told_elsewhere(event):
            return
        note(_render.event_to_text(event))

    def _started(self, event: ConsumerStarted) -> None:
        consumer = self.consumer
        if consumer is not None and consumer.group is not None:
            note(
                f"worker {consumer.worker_id} of group {consumer.group!r} started on "
                f"{event.stream_arn}; SIGTERM or Ctrl-C stops it"
            )
        else:
            note(
                f"consumer {event.name!r} started on {event.stream_arn}, checkpoints in "
                f"{self.where}; SIGTERM or Ctrl-C stops it"
            )


def _told_elsewhere(event: Event) -> bool:
    # GetRecordsCalled: one per poll of every shard, for --metrics-port rather than -v.
    if isinstance(event, Throttled | RequestRetried | GetRecordsCalled):
        return True
    if isinstance(event, ReaderError):
        return not event.retrying
    if isinstance(event, BatchFailed):
        return event.cause != "reported"
    return isinstance(event, RecordsGivenUp | LeaseLost | ForeignWorkers | GroupError)


async def _run(args: argparse.Namespace, handler: Handler, filters: RecordFilter | None) -> int:
    lines = _EventLines(verbose=args.verbose, where=str(args.checkpoint))
    async with _client(args) as client, serving_metrics(args.metrics_port) as metrics:
        consumer = _make_consumer(args, handler, filters, client, both(lines, metrics))
        if metrics is not None:
            metrics.track(consumer)
        lines.consumer = consumer
        stopper = _Stopper(consumer)
        health = HealthServer(consumer, args.health_port) if args.health_port is not None else None
        try:
            with stop_on_signals(asyncio.get_running_loop(), stopper):
                if health is not None:
                    await health.start()
                    note(f"health check on {health.url}")
                await consumer.run()
        finally:
            try:
                if health is not None:
                    await health.close()
            finally:
                await consumer.close()
    if stopper.requested:
        note("stopped")
    else:
        note("stopped: the read is over (the stream was disabled and read to its end)")
    return 0


# -- run: health check --------------------------------------------------------------------


class HealthServer:
    """``GET /healthz`` on ``host:port`` for an orchestrator's probe of a consumer.

    200 while the consumer is RUNNING and, in a group, its heartbeat was renewed within the
    failover time; 503 otherwise. The body is JSON either way: ``worker_id``, ``group``,
    ``leases`` (how many it holds) and ``lifecycle``. Port 0 binds any free port
    (:attr:`port` tells which once started).
    """

    __slots__ = ("_consumer", "_endpoint")

    def __init__(self, consumer: Consumer, port: int, *, host: str = "127.0.0.1") -> None:
        self._consumer = consumer
        self._endpoint = LoopbackEndpoint(
            "/healthz", self._handle, port, what="the health check", host=host
        )

    @property
    def port(self) -> int:
        return self._endpoint.port

    @property
    def url(self) -> str:
        return self._endpoint.url

    def status(self) -> tuple[int, dict[str, Any]]:
        """The HTTP status and the JSON body the probe gets now."""
        consumer = self._consumer
        lifecycle = consumer.lifecycle
        healthy = lifecycle is ConsumerLifecycle.RUNNING and (
            consumer.group is None or consumer.heartbeat_fresh
        )
        body = {
            "worker_id": consumer.worker_id if consumer.group is not None else None,
            "group": consumer.group,
            "leases": len(consumer.leases()),
            "lifecycle": lifecycle.name,
        }
        return (200 if healthy else 503), body

    async def _handle(self, request: web.Request) -> web.Response:
        status, body = self.status()
        return web.Response(
            status=status, body=orjson.dumps(body) + b"\n", content_type="application/json"
        )

    async def start(self) -> None:
        """Start serving; :class:`HealthCheckError` when the port cannot be bound."""
        try:
            await self._endpoint.start()
        except ConfigurationError as exc:
            raise HealthCheckError(str(exc)) from exc.__cause__

    async def close(self) -> None:
        """Stop serving (idempotent)."""
        await self._endpoint.close()


# -- leases -------------------------------------------------------------------------------


def add_leases_command(commands: Any) -> None:
    """Add ``leases show|reset`` to the subcommands ``commands``."""
    leases = commands.add_parser(
        "leases",
        help="show or reset the leases of a worker group",
        description=(
            "Show or reset the leases of the worker group APP: its lease table APP (the "
            "Java KCL's format) and its workers table APP-ddbstreams-workers."
        ),
        epilog="Exit status: 0 on success; 1 on a runtime error or a refused reset; 2 on a "
        "usage error.",
    )
    actions = leases.add_subparsers(dest="action", metavar="ACTION", required=True)
    show = actions.add_parser(
        "show",
        help="list the leases and workers of group APP",
        description=(
            "List the leases of group APP, one line per shard: owner, checkpoint, parent, "
            "state (owned, free, waiting-for-parent: unowned until its parent is finished, "
            "finished: read to its end) and what the workers table says of the owner (its "
            "state, heartbeat counter and leases; 'unknown' for an owner it does not list: "
            "a stopped or crashed worker, or a Java KCL worker). Then the workers."
        ),
    )
    show.add_argument("group", metavar="APP", help="the group (its lease table's name)")
    show.add_argument("--json", action="store_true", help="print one JSON document instead")
    _add_leases_common(show)
    show.set_defaults(handler=leases_show_command)
    reset = actions.add_parser(
        "reset",
        help="delete leases, so the group starts over from its starting position",
        description=(
            "Delete the leases of group APP (all of them, or those of the shards given with "
            "--shard), so that the group's workers start those shards over from their "
            "starting position. Refused while the workers table lists workers (running or "
            "stopping), unless --force: stop the workers first. A worker that crashed stays "
            "listed; --force then."
        ),
    )
    reset.add_argument("group", metavar="APP", help="the group (its lease table's name)")
    reset.add_argument(
        "--shard",
        metavar="SHARD",
        action="append",
        dest="shards",
        help="only the lease of this shard (repeatable); default: every lease",
    )
    reset.add_argument(
        "--force", action="store_true", help="reset even while the workers table lists workers"
    )
    _add_leases_common(reset)
    reset.set_defaults(handler=leases_reset_command)


def _add_leases_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log every retried request on stderr"
    )
    add_connection_options(parser)


def _lease_table(args: argparse.Namespace, client: StreamsClient) -> LeaseTable:
    _check_group_name(args.group)
    return LeaseTable(client.tables, args.group, clock=SystemClock())


async def _read_group(table: LeaseTable) -> tuple[list[Lease], list[WorkerRecord] | None]:
    """The group's leases and workers (None: no workers table). TableNotFoundError naming
    the lease table when it does not exist."""
    try:
        leases = await table.scan_leases()
    except TableNotFoundError as exc:
        raise TableNotFoundError(
            f"lease table {table.name!r} not found: no group {table.name!r} here (check APP, "
            "--endpoint-url and --region)"
        ) from exc
    try:
        workers: list[WorkerRecord] | None = await table.scan_workers()
    except TableNotFoundError:
        workers = None
    return leases, workers


def leases_show_command(args: argparse.Namespace, out: Output) -> int:
    """``ddbstreams leases show APP [--json]``."""
    return asyncio.run(_leases_show(args, out))


async def _leases_show(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as client:
        table = _lease_table(args, client)
        leases, workers = await _read_group(table)
    if args.json:
        out.write(_render.leases_to_json(table.name, leases, table.workers_name, workers))
    else:
        out.write_text(_render.leases_to_text(table.name, leases, table.workers_name, workers))
    out.flush()
    return 0


def leases_reset_command(args: argparse.Namespace, out: Output) -> int:
    """``ddbstreams leases reset APP [--shard SHARD ...] [--force]``."""
    return asyncio.run(_leases_reset(args, out))


def _workers_text(workers: Sequence[WorkerRecord]) -> str:
    return ", ".join(f"{w.worker_id} ({w.state.value}, pid {w.pid} on {w.host})" for w in workers)


def _reset_targets(args: argparse.Namespace, leases: Sequence[Lease]) -> list[Lease]:
    if not args.shards:
        return list(leases)
    by_key = {lease.key: lease for lease in leases}
    unknown = [shard for shard in dict.fromkeys(args.shards) if shard not in by_key]
    if unknown:
        raise DDBStreamsError(
            f"no lease for {', '.join(unknown)} in lease table {args.group!r}: nothing reset"
        )
    return [by_key[shard] for shard in dict.fromkeys(args.shards)]


async def _leases_reset(args: argparse.Namespace, out: Output) -> int:
    async with _client(args) as client:
        table = _lease_table(args, client)
        leases, workers = await _read_group(table)
        targets = _reset_targets(args, leases)
        if not targets:
            out.write_text(f"nothing to reset: lease table {table.name!r} holds no leases\n")
            out.flush()
            return 0
        live = [w for w in workers or () if w.state in (WorkerState.RUNNING, WorkerState.STOPPING)]
        if live and not args.force:
            raise GroupBusyError(
                f"refusing to reset the leases of {table.name!r}: the workers table lists "
                f"{_render_count(len(live), 'worker')}: {_workers_text(live)}; stop them "
                "first, or pass --force (a worker that crashed stays listed)"
            )
        if live:
            note(
                f"--force: the workers table lists {_render_count(len(live), 'worker')}; "
                "a live worker loses the leases it holds"
            )
        for lease in targets:
            await table.delete_lease(lease.key)
    out.write_text(f"reset {table.name!r}: {_reset_text(args, targets)}\n")
    out.flush()
    return 0


def _reset_text(args: argparse.Namespace, targets: Sequence[Lease]) -> str:
    keys = ", ".join(lease.key for lease in targets)
    if args.shards:
        noun = "leases" if len(targets) != 1 else "lease"
        return f"deleted the {noun} of {keys}; the group starts over from its starting position"
    what = f"its only lease ({keys})" if len(targets) == 1 else f"all {len(targets)} leases"
    return f"deleted {what}; the group starts over from its starting position"


def _render_count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"
