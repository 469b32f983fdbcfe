"""``ddbstreams run`` without a service: arguments, handler import, Lambda or native, signals,
the health check.

Bad input is one ``ddbstreams: error:`` line on stderr, never a traceback, with status 2
(usage: flags, names, a module or function that does not exist) or 1 (runtime: a module
that fails while it is imported). The consumer is replaced by :class:`FakeConsumer`, which
records what it was given and runs until asked to stop, so the mapping of flags to
``Consumer`` arguments and the stop signals are checked without a stream.
tests/integration/test_cli_leases.py covers ``leases show|reset`` against DynamoDB Local.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from ddbstreams._errors import ConfigurationError
from ddbstreams._events import (
    BatchHandled,
    ConsumerStarted,
    Event,
    ForeignWorkers,
    GroupChanged,
    GroupError,
    LeaseLost,
    LeaseReleased,
    LeasesCreated,
    LeaseTaken,
    StreamReplaced,
    WorkerJoined,
)
from ddbstreams.cli import _group
from ddbstreams.cli._common import UsageError
from ddbstreams.cli._main import main
from ddbstreams.cli._render import event_to_text
from ddbstreams.consuming._consumer import ConsumerLifecycle, JsonLinesDestination
from ddbstreams.consuming._filter import RecordFilter
from ddbstreams.coordination._options import GroupOptions
from ddbstreams.model._decode import DefaultParser
from ddbstreams.model._position import LATEST, TRIM_HORIZON
from ddbstreams.state._stores import SQLiteCheckpointStore

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"
SHARD = "shardId-00000001764397880000-0a1b2c3d"

HANDLERS = """
import json

CALLS = []

def native(records):
    CALLS.append(records)

async def native_async(records):
    CALLS.append(records)

def on_lambda(event, context):
    CALLS.append((event, context.get_remaining_time_in_millis()))
    return {"batchItemFailures": []}

def lambda_optional_context(event, context=None):
    pass

def native_with_option(records, verbose=False):
    pass

async def async_lambda(event, context):
    pass

def too_many(a, b, c):
    pass

def only_varargs(*args):
    pass

def keyword_only(records, *, needed):
    pass

class Callable:
    def __call__(self, records):
        CALLS.append(records)

instance = Callable()

class Nested:
    @staticmethod
    def handle(event, context):
        pass

NOT_CALLABLE = {"a": 1}
"""


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The current directory, holding handler modules; the Python path and the modules
    imported from it are restored afterwards."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(getattr(module, "__file__", "") or "").startswith(str(tmp_path)):
            del sys.modules[name]


@pytest.fixture
def module(workdir: Path) -> str:
    """A uniquely named module in the current directory with the handlers of HANDLERS."""
    name = f"handlers_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(HANDLERS)
    return name


class FakeConsumer:
    """Stands in for ``Consumer``: records its arguments; ``run`` returns once
    ``request_stop`` was called (or at once with ``stop_at_once``)."""

    instances: list[FakeConsumer] = []
    stop_at_once = True

    def __init__(self, stream: str, handler: Any, **kwargs: Any) -> None:
        self.stream = stream
        self.handler = handler
        self.kwargs = kwargs
        self.group: str | None = kwargs.get("group")
        self.worker_id = kwargs.get("worker_id") or "host:1:abcd"
        self.lifecycle = ConsumerLifecycle.IDLE
        self.heartbeat_fresh = False
        self.stopped = asyncio.Event()
        self.closed = False
        FakeConsumer.instances.append(self)

    def leases(self) -> frozenset[str]:
        return frozenset({SHARD}) if self.group else frozenset()

    def request_stop(self) -> None:
        self.stopped.set()

    async def run(self) -> None:
        self.lifecycle = ConsumerLifecycle.RUNNING
        self.heartbeat_fresh = True
        if not self.stop_at_once:
            await self.stopped.wait()
        self.lifecycle = ConsumerLifecycle.IDLE

    async def close(self) -> None:
        self.closed = True


@pytest.fixture
def fake_consumer(monkeypatch: pytest.MonkeyPatch) -> type[FakeConsumer]:
    FakeConsumer.instances = []
    FakeConsumer.stop_at_once = True
    monkeypatch.setattr(_group, "Consumer", FakeConsumer)
    return FakeConsumer


# -- usage errors: status 2, one line, before anything is imported ------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        ([], "run needs --group APP"),
        (["--group", "app", "--checkpoint", "cp.sqlite"], "exclude each other"),
        (["--checkpoint", "cp.sqlite", "--worker-id", "w"], "--worker-id needs --group"),
        (["--checkpoint", "cp.sqlite", "--failover-time", "5"], "--failover-time needs --group"),
        (["--checkpoint", "cp.sqlite", "--max-leases", "5"], "--max-leases needs --group"),
        (["--group", "app", "--name", "x"], "--name needs --checkpoint"),
        (["--group", "a"], "invalid group name 'a'"),
        (["--group", "bad name"], "invalid group name"),
        (["--group", "app", "--batch-size", "0"], "--batch-size: expected a whole number"),
        (["--group", "app", "--batch-size", "10001"], "from 1 to 10000"),
        (["--group", "app", "--batch-size", "x"], "--batch-size"),
        (["--group", "app", "--maximum-batching-window", "301"], "from 0 to 300"),
        (["--group", "app", "--starting-position", "at:1"], "--starting-position"),
        (["--group", "app", "--maximum-retry-attempts", "-2"], "--maximum-retry-attempts"),
        (["--group", "app", "--maximum-record-age", "0"], "--maximum-record-age"),
        (["--group", "app", "--parallelization-factor", "11"], "from 1 to 10"),
        (["--group", "app", "--max-concurrent-handlers", "0"], "--max-concurrent-handlers"),
        (["--group", "app", "--stop-timeout", "-1"], "--stop-timeout"),
        (["--group", "app", "--failover-time", "0"], "--failover-time"),
        (["--group", "app", "--heartbeat-interval", "10"], "must be below --failover-time (10)"),
        (
            ["--group", "app", "--failover-time", "3", "--heartbeat-interval", "4"],
            "--heartbeat-interval (4) must be below --failover-time (3)",
        ),
        (["--group", "app", "--max-leases", "0"], "--max-leases"),
        (["--group", "app", "--health-port", "70000"], "--health-port"),
        (["--group", "app", "--filter", "{not json"], "--filter: invalid filter pattern"),
        (["--group", "app", "--filter", '{"eventName": "INSERT"}'], "--filter"),
        (["--group", "app", "--on-failure", "missing/failed.jsonl"], "does not exist"),
        (["--group", "app", "--on-failure", "."], "is a directory"),
        (["--group", "app", "--unknown-flag"], "unrecognized arguments"),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(
    argv: list[str],
    expected: str,
    workdir: Path,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The handler module would fail if imported: arguments are checked first.
    (workdir / "loud.py").write_text("raise RuntimeError('imported')\n")

    assert main(["run", "loud:handle", "--stream", "orders", *argv]) == 2

    captured = capsys.readouterr()
    assert captured.out == ""
    assert expected in one_error_line(captured.err)
    assert fake_consumer.instances == []


@pytest.mark.parametrize(
    ("stream", "expected"),
    [
        ("bad name!", "neither a stream ARN nor a table name"),
        ("arn:aws:dynamodb:us-east-1:1:table/x", "stream ARN"),
    ],
)
def test_bad_stream_is_a_usage_error(
    stream: str, expected: str, module: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{module}:native", "--stream", stream, "--group", "app"]) == 2
    assert expected in one_error_line(capsys.readouterr().err)


# -- the handler: import errors -----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "status", "expected"),
    [
        ("no_colon", 2, "expected MODULE:FUNCTION"),
        (":native", 2, "expected MODULE:FUNCTION"),
        ("{module}:", 2, "expected MODULE:FUNCTION"),
        ("not-a-module:f", 2, "invalid module name 'not-a-module'"),
        ("no_such_module_xyz:f", 2, "no module named 'no_such_module_xyz'"),
        ("no_such_package_xyz.sub:f", 2, "no module named 'no_such_package_xyz'"),
        ("{module}:missing", 2, "has no 'missing'"),
        ("{module}:Nested.missing", 2, "has no 'Nested.missing'"),
        ("{module}:NOT_CALLABLE", 2, "'NOT_CALLABLE' in '{module}' is not callable"),
        ("{module}:async_lambda", 2, "is an async Lambda handler"),
        ("{module}:too_many", 2, "is not a handler: expected a function taking (records)"),
        ("{module}:only_varargs", 2, "is not a handler"),
        ("{module}:keyword_only", 2, "is not a handler"),
        ("missing_dir/handler.py:f", 2, "no such file: 'missing_dir/handler.py'"),
        ("fails.py:f", 1, "importing 'fails.py' failed: ZeroDivisionError: division by zero"),
        ("fails:f", 1, "importing 'fails' failed: ZeroDivisionError"),
        ("needs_dep:f", 1, "ModuleNotFoundError: No module named 'dependency_not_installed'"),
        ("bad_syntax:f", 1, "importing 'bad_syntax' failed: SyntaxError"),
        ("exits:f", 1, "importing 'exits' failed: SystemExit(3)"),
    ],
)
def test_handler_errors_are_one_line(
    spec: str,
    status: int,
    expected: str,
    module: str,
    workdir: Path,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DDBSTREAMS_DEBUG", raising=False)
    (workdir / "fails.py").write_text("x = 1 / 0\n")
    (workdir / "needs_dep.py").write_text("import dependency_not_installed\n")
    (workdir / "bad_syntax.py").write_text("def f(:\n")
    (workdir / "exits.py").write_text("import sys\nsys.exit(3)\n")

    code = main(["run", spec.format(module=module), "--stream", "orders", "--group", "app"])

    captured = capsys.readouterr()
    assert (code, captured.out) == (status, "")
    assert expected.format(module=module) in one_error_line(captured.err)
    assert fake_consumer.instances == []


def test_handler_import_traceback_with_debug(
    workdir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DDBSTREAMS_DEBUG", "1")
    (workdir / "fails_debug.py").write_text("x = 1 / 0\n")

    assert main(["run", "fails_debug:f", "--stream", "orders", "--group", "app"]) == 1

    err = capsys.readouterr().err
    assert "Traceback" in err
    assert err.splitlines()[-1].startswith("ddbstreams: error: importing 'fails_debug' failed")


def test_module_is_found_from_the_current_directory(module: str, workdir: Path) -> None:
    assert str(workdir) not in sys.path

    function = _group.import_function(f"{module}:native")

    assert function.__module__ == module
    assert sys.path[0] == str(workdir)


def test_a_py_file_anywhere_is_imported_with_its_directory_on_the_path(
    tmp_path: Path, workdir: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "helper_mod_x1.py").write_text("VALUE = 41\n")
    (elsewhere / "app_x1.py").write_text(
        "import helper_mod_x1\n\ndef handle(records):\n    return helper_mod_x1.VALUE + 1\n"
    )

    function = _group.import_function(f"{elsewhere / 'app_x1.py'}:handle")

    assert function([]) == 42


def test_dotted_function_names(module: str) -> None:
    function = _group.import_function(f"{module}:Nested.handle")
    assert _group.is_lambda_handler(function)


# -- the handler: Lambda or native --------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "is_lambda"),
    [
        ("native", False),
        ("native_async", False),
        ("native_with_option", False),
        ("instance", False),
        ("on_lambda", True),
        ("lambda_optional_context", True),
    ],
)
def test_lambda_or_native_from_the_signature(module: str, name: str, is_lambda: bool) -> None:
    function = _group.import_function(f"{module}:{name}")
    assert _group.is_lambda_handler(function) is is_lambda


def test_lambdas_and_builtins() -> None:
    assert _group.is_lambda_handler(lambda event, context: None)
    assert not _group.is_lambda_handler(lambda records: None)
    with pytest.raises(UsageError, match="is not a handler"):
        _group.is_lambda_handler(lambda: None)


def _records() -> list[Any]:
    wire = {
        "eventID": "e1",
        "eventName": "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": {
            "ApproximateCreationDateTime": 1764397880,
            "Keys": {"pk": {"S": "a"}},
            "NewImage": {"pk": {"S": "a"}},
            "SequenceNumber": "000000000000000000001",
            "SizeBytes": 10,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        },
    }
    return DefaultParser().parse_records([wire], SHARD)


def test_a_lambda_handler_is_wrapped_and_gets_lambda_events(module: str) -> None:
    handler = _group.load_handler(f"{module}:on_lambda")
    calls = sys.modules[module].CALLS
    records = _records()

    assert handler(records) == {"batchItemFailures": []}

    ((event, remaining),) = calls
    assert event["Records"][0]["eventID"] == "e1"
    assert event["Records"][0]["dynamodb"]["Keys"] == {"pk": {"S": "a"}}
    assert remaining > 0


def test_a_native_handler_is_used_as_it_is(module: str) -> None:
    handler = _group.load_handler(f"{module}:native")
    imported = sys.modules[module]
    assert handler is imported.native
    assert _group.load_handler(f"{module}:native_async") is imported.native_async


# -- flags to the consumer ----------------------------------------------------------------


def test_group_flags_reach_the_consumer(
    module: str,
    workdir: Path,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", f"{module}:native", "--stream", ARN, "--group", "orders-app"]
    argv += ["--worker-id", "w-1", "--batch-size", "25", "--maximum-batching-window", "1.5"]
    argv += ["--starting-position", "LATEST", "--maximum-retry-attempts", "3"]
    argv += ["--maximum-record-age", "3600", "--bisect-batch-on-error"]
    argv += ["--report-batch-item-failures", "--parallelization-factor", "4"]
    argv += ["--max-concurrent-handlers", "8", "--stop-timeout", "5"]
    argv += ["--filter", '{"eventName": ["INSERT"]}', "--filter", '{"eventName": ["REMOVE"]}']
    argv += ["--on-failure", "failed.jsonl", "--failover-time", "6"]
    argv += ["--heartbeat-interval", "1", "--max-leases", "3"]

    assert main(argv) == 0

    (consumer,) = fake_consumer.instances
    kwargs = dict(consumer.kwargs)
    assert consumer.stream == ARN
    assert consumer.handler is sys.modules[module].native
    assert isinstance(kwargs.pop("filters"), RecordFilter)
    on_failure = kwargs.pop("on_failure")
    assert isinstance(on_failure, JsonLinesDestination)
    assert on_failure.path == Path("failed.jsonl")
    kwargs.pop("client")
    kwargs.pop("on_event")
    assert kwargs == {
        "group": "orders-app",
        "worker_id": "w-1",
        "group_options": GroupOptions(failover_time=6, heartbeat_interval=1, max_leases=3),
        "batch_size": 25,
        "maximum_batching_window": 1.5,
        "starting_position": LATEST,
        "maximum_retry_attempts": 3,
        "maximum_record_age": 3600,
        "bisect_batch_on_error": True,
        "report_batch_item_failures": True,
        "parallelization_factor": 4,
        "max_concurrent_handlers": 8,
        "stop_timeout": 5,
    }
    assert consumer.closed
    assert capsys.readouterr().out == ""


def test_defaults_are_the_consumers(
    module: str, fake_consumer: type[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["run", f"{module}:on_lambda", "--stream", "orders", "--group", "app"]) == 0

    (consumer,) = fake_consumer.instances
    assert consumer.handler is not sys.modules[module].on_lambda  # wrapped
    assert callable(consumer.handler)
    options = {k: v for k, v in consumer.kwargs.items() if k not in ("client", "on_event")}
    assert options == {
        "group": "app",
        "worker_id": None,
        "group_options": GroupOptions(),
        "filters": None,
        "on_failure": None,
    }


def test_checkpoint_runs_a_single_process(
    module: str,
    workdir: Path,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["run", f"{module}:native", "--stream", "orders", "--checkpoint", "cp.sqlite"]
    argv += ["--name", "billing", "--starting-position", "trim-horizon"]

    assert main(argv) == 0

    (consumer,) = fake_consumer.instances
    store = consumer.kwargs["store"]
    assert isinstance(store, SQLiteCheckpointStore)
    assert store.path == Path("cp.sqlite")
    assert consumer.kwargs["name"] == "billing"
    assert consumer.kwargs["starting_position"] == TRIM_HORIZON
    assert "group" not in consumer.kwargs


def test_consumer_configuration_error_is_a_usage_error(
    module: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise ConfigurationError("not like this")

    monkeypatch.setattr(_group, "Consumer", refuse)

    assert main(["run", f"{module}:native", "--stream", "orders", "--group", "app"]) == 2
    assert one_error_line(capsys.readouterr().err) == "ddbstreams: error: not like this"


# -- signals ------------------------------------------------------------------------------


def test_first_signal_stops_gracefully_second_exits_at_once(
    capsys: pytest.CaptureFixture[str],
) -> None:
    consumer = FakeConsumer("orders", print, group="app")
    exits: list[int] = []
    stopper = _group._Stopper(consumer, exit_now=exits.append)  # type: ignore[arg-type]

    stopper(signal.SIGTERM)

    assert consumer.stopped.is_set()
    assert exits == []
    err = capsys.readouterr().err
    assert "SIGTERM received: stopping" in err
    assert "releasing leases" in err

    stopper(signal.SIGINT)

    assert exits == [128 + signal.SIGINT.value]
    assert "SIGINT received again: exiting now" in capsys.readouterr().err


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_stops_the_run_with_status_0(
    signum: signal.Signals,
    module: str,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
) -> None:
    fake_consumer.stop_at_once = False
    original = signal.getsignal(signum)

    async def send_later() -> None:
        await asyncio.sleep(0.05)
        os.kill(os.getpid(), signum)

    real_run = FakeConsumer.run

    async def run_and_signal(self: FakeConsumer) -> None:
        sender = asyncio.get_running_loop().create_task(send_later())
        await real_run(self)
        await sender

    FakeConsumer.run = run_and_signal  # type: ignore[method-assign]
    try:
        assert main(["run", f"{module}:native", "--stream", "orders", "--group", "app"]) == 0
    finally:
        FakeConsumer.run = real_run  # type: ignore[method-assign]

    (consumer,) = fake_consumer.instances
    assert consumer.stopped.is_set()
    assert consumer.closed
    err = capsys.readouterr().err
    assert f"{signum.name} received: stopping" in err
    assert err.splitlines()[-1] == "ddbstreams: stopped"
    assert signal.getsignal(signum) == original


# -- health check -------------------------------------------------------------------------


def test_health_status_follows_lifecycle_and_heartbeat() -> None:
    consumer = FakeConsumer("orders", print, group="app", worker_id="w-1")
    health = _group.HealthServer(consumer, 0)  # type: ignore[arg-type]

    consumer.lifecycle = ConsumerLifecycle.STARTING
    assert health.status() == (
        503,
        {"worker_id": "w-1", "group": "app", "leases": 1, "lifecycle": "STARTING"},
    )
    consumer.lifecycle = ConsumerLifecycle.RUNNING
    assert health.status()[0] == 503  # no fresh heartbeat
    consumer.heartbeat_fresh = True
    assert health.status()[0] == 200
    consumer.lifecycle = ConsumerLifecycle.STOPPING
    assert health.status()[0] == 503

    single = FakeConsumer("orders", print)
    single.lifecycle = ConsumerLifecycle.RUNNING
    assert _group.HealthServer(single, 0).status() == (  # type: ignore[arg-type]
        200,
        {"worker_id": None, "group": None, "leases": 0, "lifecycle": "RUNNING"},
    )


async def test_health_check_over_http() -> None:
    consumer = FakeConsumer("orders", print, group="app", worker_id="w-1")
    health = _group.HealthServer(consumer, 0)  # type: ignore[arg-type]
    await health.start()
    try:
        assert health.port > 0
        async with aiohttp.ClientSession() as session:
            async with session.get(health.url) as response:
                assert response.status == 503
                assert (await response.json())["lifecycle"] == "IDLE"
            consumer.lifecycle = ConsumerLifecycle.RUNNING
            consumer.heartbeat_fresh = True
            async with session.get(health.url) as response:
                assert response.status == 200
                assert await response.json() == {
                    "worker_id": "w-1",
                    "group": "app",
                    "leases": 1,
                    "lifecycle": "RUNNING",
                }
            async with session.get(health.url.replace("/healthz", "/other")) as response:
                assert response.status == 404
    finally:
        await health.close()


def test_health_port_in_use_is_one_line(
    module: str, fake_consumer: type[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        argv = ["run", f"{module}:native", "--stream", "orders", "--group", "app"]
        assert main([*argv, "--health-port", str(port)]) == 1

    line = one_error_line(capsys.readouterr().err)
    assert f"cannot serve the health check on 127.0.0.1:{port}" in line
    assert fake_consumer.instances[0].closed


def test_health_port_announced(
    module: str, fake_consumer: type[FakeConsumer], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", f"{module}:native", "--stream", "orders", "--group", "app"]
    assert main([*argv, "--health-port", "0"]) == 0
    err = capsys.readouterr().err
    assert "ddbstreams: health check on http://127.0.0.1:" in err


# -- what run says on stderr --------------------------------------------------------------

EVENTS: list[Event] = [
    ConsumerStarted(ARN, "app", TRIM_HORIZON),
    WorkerJoined("app", "w-1"),
    LeaseTaken("app", SHARD, "w-1", None, expired=False),
    BatchHandled(SHARD, 3, 0.25),
    GroupError("app", "heartbeat", "throttled"),  # a warning of the ddbstreams logger
    LeaseReleased("app", SHARD, "w-1", "stopping"),
]


@pytest.mark.parametrize("verbose", [False, True])
def test_start_line_and_verbose_events(
    verbose: bool,
    module: str,
    fake_consumer: type[FakeConsumer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def publishing_run(self: FakeConsumer) -> None:
        for event in EVENTS:
            self.kwargs["on_event"](event)

    monkeypatch.setattr(FakeConsumer, "run", publishing_run)
    argv = ["run", f"{module}:native", "--stream", "orders", "--group", "app"]

    assert main([*argv, "--worker-id", "w-1", *(["-v"] if verbose else [])]) == 0

    lines = capsys.readouterr().err.splitlines()
    started = f"ddbstreams: worker w-1 of group 'app' started on {ARN}; SIGTERM or Ctrl-C stops it"
    if not verbose:
        assert lines[0] == started
        assert len(lines) == 2
        return
    assert lines[:-1] == [
        started,
        "ddbstreams: joined group 'app' as worker w-1",
        f"ddbstreams: lease taken: {SHARD} (free)",
        f"ddbstreams: batch handled: 3 records of {SHARD} in 0.250 s",
        f"ddbstreams: lease released: {SHARD} (stopping)",
    ]


@pytest.mark.parametrize(
    ("event", "text"),
    [
        (GroupChanged("app", ("w-1", "w-2")), "group 'app': 2 live workers: w-1, w-2"),
        (
            LeaseTaken("app", SHARD, "w-2", "w-1", expired=True),
            f"lease taken: {SHARD} (expired, was w-1's)",
        ),
        (
            LeaseTaken("app", SHARD, "w-2", "w-1", expired=False),
            f"lease taken: {SHARD} (released, was w-1's)",
        ),
        (
            LeaseReleased("app", SHARD, "w-1", "balance"),
            f"lease released: {SHARD} (to balance the group)",
        ),
        (
            LeaseReleased("app", SHARD, "w-1", "shard_end"),
            f"lease released: {SHARD} (shard ended)",
        ),
        (LeaseLost("app", SHARD, "w-1", "taken by\nw-2"), f"lease lost: {SHARD}: taken by w-2"),
        (LeasesCreated("app", (SHARD,)), f"leases created: {SHARD}"),
        (
            ForeignWorkers("app", ("java-1",)),
            "group 'app': leases renewed by workers outside it: java-1",
        ),
        (
            StreamReplaced("app", "old", "new"),
            "stream replaced: old was read to its end, going on with new",
        ),
        (
            GroupError("app", "heartbeat", "boom"),
            "group call failed: heartbeat: boom; trying again",
        ),
    ],
)
def test_group_event_texts(event: Event, text: str) -> None:
    assert event_to_text(event) == text
