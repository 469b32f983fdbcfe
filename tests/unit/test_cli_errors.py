"""Errors and notices of the ``ddbstreams`` command (issue 8), in this process.

Each failure a user can meet is one line on stderr and a non-zero status: bad endpoint
URLs, closed or full stdout, endpoints that never answer, library warnings. Retries are
visible with ``-v``; a follow that loses the stream says so without ``-v``.
tests/sim/test_cli_errors.py runs the same command as a process against the simulator.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbstreams._errors import EndpointConnectionError, ServiceError
from ddbstreams._events import ReaderError
from ddbstreams.cli import _main as _cli
from ddbstreams.cli._main import main

ARN = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    return lines[0]


@pytest.fixture
def aws_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Dummy credentials and no AWS configuration from this machine."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "x")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "x")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never answers (a hung endpoint)."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._held: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            self._held.append(connection)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)
        for connection in self._held:
            connection.close()


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    server = SilentServer()
    yield server
    server.close()


# -- 9: errors that escaped the typed tree ------------------------------------------------


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("command", ["tail", "describe"])
def test_endpoint_url_with_a_bad_port_is_a_usage_error(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main([command, "orders", "--endpoint-url", "http://127.0.0.1:99999"])

    out, err = capsys.readouterr()
    assert (status, out) == (2, "")
    line = one_error_line(err)
    assert "invalid endpoint URL 'http://127.0.0.1:99999'" in line
    assert "internal error" not in line


def test_closed_stdout_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # What Python gives a process started with `>&-`.
    monkeypatch.setattr(sys, "stdout", None)

    status = main(["describe", "orders", "--endpoint-url", "http://127.0.0.1:9"])

    assert status == 1
    assert one_error_line(capsys.readouterr().err) == (
        "ddbstreams: error: cannot write output: stdout is closed"
    )


# -- 6: timeouts, retries under -v --------------------------------------------------------


def test_timeouts_are_float_seconds_given_to_the_client(
    aws_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    args = _cli._build_parser().parse_args(
        ["tail", "orders", "--connect-timeout", "0.25", "--read-timeout", "1.5"]
    )
    client = _cli._streams_client(args)
    transport: Any = client.transport
    assert (transport.connect_timeout, transport.read_timeout) == (0.25, 1.5)
    defaults = _cli._build_parser().parse_args(["describe", "orders"])
    transport = _cli._streams_client(defaults).transport
    assert (transport.connect_timeout, transport.read_timeout) == (5.0, 30.0)


@pytest.mark.parametrize("value", ["0", "-1", "x", "nan", "inf"])
@pytest.mark.parametrize("option", ["--connect-timeout", "--read-timeout", "--credentials-timeout"])
def test_bad_timeouts_are_usage_errors(
    option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tail", "orders", f"{option}={value}"]) == 2

    assert "positive number of seconds" in one_error_line(capsys.readouterr().err)


@pytest.mark.usefixtures("aws_env")
@pytest.mark.parametrize("verbose", [True, False])
def test_unanswered_requests_are_retried_visibly_under_verbose(
    silent_server: SilentServer, capsys: pytest.CaptureFixture[str], verbose: bool
) -> None:
    argv = ["tail", ARN, "--endpoint-url", silent_server.endpoint_url, "--region", "us-east-1"]
    argv += ["--connect-timeout", "0.2", "--read-timeout", "0.2"]

    status = main([*argv, "-v"] if verbose else argv)

    out, err = capsys.readouterr()
    assert (status, out) == (1, "")
    lines = err.splitlines()
    error = f"ddbstreams: error: no response from {silent_server.endpoint_url} after 3 attempts"
    assert lines[-1].startswith(error)
    if not verbose:
        assert len(lines) == 1
        return
    retries = [line for line in lines if "request failed" in line]
    assert [line.split(", retrying in")[0] for line in retries] == [
        "ddbstreams: request failed: DescribeStream (Timeout, attempt 1)",
        "ddbstreams: request failed: DescribeStream (Timeout, attempt 2)",
    ]
    assert all(line.endswith(" s") for line in retries)


# -- 6: outage notices in follow mode -----------------------------------------------------


class StepClock:
    """A clock moved by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def monotonic(self) -> float:
        return self.now

    def time(self) -> float:
        return 1_764_397_880.0 + self.now  # 2025-11-29T06:31:20Z at now == 0

    async def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_outage_notices_are_rate_limited() -> None:
    clock = StepClock()
    said: list[str] = []
    notices = _cli._OutageNotices(clock, said.append, quiet_for=30.0, remind_every=300.0)
    down = EndpointConnectionError("no response from http://x after 3 attempts")

    notices.failed()  # a first failed attempt: the outage starts here, nothing said yet
    notices.succeeded()  # ...but it was a blip
    assert said == []
    notices.failed()
    clock.now += 4.0
    notices.gave_up(down)  # the client's retries are spent: say so at once
    for _ in range(10):  # every shard, every retry: no repetition
        clock.now += 1.0
        notices.gave_up(down)
    assert said == [
        "stream unreachable since 06:33:00 UTC, still trying: no response from http://x "
        "after 3 attempts"
    ]
    clock.now += 300.0
    notices.gave_up(down)
    assert said[1] == (
        "stream still unreachable (since 06:33:00 UTC, 314 s ago), still trying: "
        "no response from http://x after 3 attempts"
    )
    clock.now += 6.0
    notices.succeeded()
    notices.succeeded()
    assert said[2:] == ["stream reachable again (unreachable for 320 s)"]
    # A new outage soon after a notice waits for the quiet time, then is said.
    notices.failed()
    notices.gave_up(ServiceError("InternalServerError"))
    assert len(said) == 3
    clock.now += 30.0
    notices.gave_up(ServiceError("InternalServerError"))
    assert said[3] == ("stream reads failing since 06:38:20 UTC, still trying: InternalServerError")


def test_follow_watch_feeds_outage_notices_without_verbose(
    capsys: pytest.CaptureFixture[str],
) -> None:
    clock = StepClock()
    watch = _cli._Watch(verbose=False, follow=True, clock=clock)
    watch.on_event(ReaderError(EndpointConnectionError("down"), "shardId-1", retrying=True))
    watch.on_response("GetRecords")
    assert capsys.readouterr().err.splitlines() == [
        "ddbstreams: stream unreachable since 06:33:00 UTC, still trying: down",
        "ddbstreams: stream reachable again (unreachable for 0 s)",
    ]


# -- 5: library warnings are one line -----------------------------------------------------


def _warning_with_traceback(logger: logging.Logger) -> None:
    try:
        raise KeyError("token")
    except KeyError:
        logger.warning("Refreshing temporary credentials failed.", exc_info=True)


@pytest.mark.parametrize("verbose", [False, True])
def test_logged_library_warnings_are_one_line_unless_verbose(
    verbose: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    with _cli._logging_to_stderr(verbose=verbose):
        _warning_with_traceback(logging.getLogger("botocore.credentials"))
        logging.getLogger("botocore.credentials").info("not shown")
    _warning_with_traceback(logging.getLogger("botocore.credentials.after"))

    err = capsys.readouterr().err
    first = err.splitlines()[0]
    assert first == (
        "ddbstreams: warning: Refreshing temporary credentials failed. (KeyError: 'token')"
    )
    if verbose:
        assert "Traceback (most recent call last)" in err
    else:
        assert err == first + "\n"
    assert not any(isinstance(h, _cli._StderrLogHandler) for h in logging.getLogger().handlers)
