"""Errors and notices of ``ddbstreams tail`` as a process, against the simulator over HTTP.

Issue 8: an expired SSO login, a full or closed stdout, an endpoint that stops answering
during a follow, a table deleted under a follow, a region known only from the ARN, SIGHUP,
a hanging ``credential_process`` and two tails sharing one checkpoint name. Every wait is
for a line that must come, with a deadline that only turns a hang into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ddbstreams.testing import SimulatorServer, StreamSimulator
from tests.integration.test_cli_follow import FollowingTail

DEADLINE = 30.0


def cli_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a command: dummy credentials, no AWS configuration of this host."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith("AWS_") and name not in ("PYTHONUNBUFFERED", "DDBSTREAMS_DEBUG")
    }
    empty = tmp_path / "empty-aws-file"
    empty.write_text("")
    env.update(
        AWS_ACCESS_KEY_ID="x",
        AWS_SECRET_ACCESS_KEY="x",
        AWS_EC2_METADATA_DISABLED="true",
        AWS_CONFIG_FILE=str(empty),
        AWS_SHARED_CREDENTIALS_FILE=str(empty),
    )
    env.update(extra)
    return env


def run_cli(*argv: str, env: dict[str, str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ddbstreams", *argv],
        env=env,
        capture_output="stdout" not in kwargs,
        text=True,
        timeout=60,
        check=False,
        **kwargs,
    )


def one_error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("ddbstreams: error: ")
    return lines[0]


@pytest.fixture
def sim() -> StreamSimulator:
    simulator = StreamSimulator()
    simulator.put_item({"pk": "a", "v": 1})
    simulator.put_item({"pk": "b", "v": 1})
    return simulator


@pytest.fixture
def server(sim: StreamSimulator) -> Iterator[SimulatorServer]:
    with SimulatorServer(sim) as running:
        yield running


def connection(endpoint_url: str) -> list[str]:
    return ["--endpoint-url", endpoint_url, "--region", "us-east-1"]


@pytest.fixture
def tails() -> Iterator[list[FollowingTail]]:
    started: list[FollowingTail] = []
    yield started
    for tail in started:
        tail.kill()


def follow(started: list[FollowingTail], env: dict[str, str], *argv: str) -> FollowingTail:
    tail = FollowingTail(list(argv), env)
    started.append(tail)
    return tail


# -- 5: an expired SSO login --------------------------------------------------------------


@pytest.mark.parametrize("verbose", [False, True])
def test_expired_sso_login_is_one_warning_line_then_the_error(
    tmp_path: Path, verbose: bool
) -> None:
    config = tmp_path / "config"
    config.write_text(
        "[profile sso]\n"
        "sso_start_url = https://example.awsapps.com/start\n"
        "sso_region = us-east-1\n"
        "sso_account_id = 123456789012\n"
        "sso_role_name = Reader\n"
        "region = us-east-1\n"
    )
    env = cli_env(tmp_path, AWS_CONFIG_FILE=str(config), AWS_PROFILE="sso", HOME=str(tmp_path))
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/orders/stream/2024-01-01T00:00:00.000"

    result = run_cli(
        "tail", arn, *connection("http://127.0.0.1:9"), *(["-v"] if verbose else []), env=env
    )

    assert (result.returncode, result.stdout) == (1, "")
    lines = result.stderr.splitlines()
    assert lines[-1].startswith("ddbstreams: error: no usable AWS credentials found")
    warning = "ddbstreams: warning: Refreshing temporary credentials failed"
    if verbose:
        assert "Traceback (most recent call last)" in result.stderr
        assert any(line.startswith(warning) for line in lines)
    else:
        assert len(lines) == 2, result.stderr
        assert lines[0].startswith(warning)
        assert "SSOTokenLoadError" in lines[0]


# -- 9: output that cannot be written -----------------------------------------------------


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
def test_full_stdout_is_one_line(
    tmp_path: Path, sim: StreamSimulator, server: SimulatorServer
) -> None:
    with open("/dev/full", "wb") as full:
        result = run_cli(
            "tail",
            sim.stream_arn,
            *connection(server.endpoint_url),
            env=cli_env(tmp_path),
            stdout=full,
            stderr=subprocess.PIPE,
        )

    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        "ddbstreams: error: cannot write output: No space left on device"
    )


def test_closed_stdout_is_one_line(
    tmp_path: Path, sim: StreamSimulator, server: SimulatorServer
) -> None:
    result = run_cli(
        "tail",
        sim.stream_arn,
        *connection(server.endpoint_url),
        env=cli_env(tmp_path),
        stdout=None,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: os.close(1),  # `ddbstreams tail ... >&-`
    )

    assert result.returncode == 1
    assert one_error_line(result.stderr) == (
        "ddbstreams: error: cannot write output: stdout is closed"
    )


# -- 6: a follow whose endpoint stops answering -------------------------------------------


class SwitchableProxy:
    """Forwards TCP connections to a local port; while holding, it accepts connections and
    swallows requests without ever answering, like an endpoint that hangs."""

    def __init__(self, upstream_port: int) -> None:
        self._upstream_port = upstream_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.holding = threading.Event()
        self._sockets: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            self._sockets.append(client)
            if self.holding.is_set():
                continue
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._sockets.append(upstream)
            for source, target, request in ((client, upstream, True), (upstream, client, False)):
                threading.Thread(
                    target=self._pump, args=(source, target, request), daemon=True
                ).start()

    def _pump(self, source: socket.socket, target: socket.socket, request: bool) -> None:
        try:
            while data := source.recv(65536):
                if request and self.holding.is_set():
                    continue
                target.sendall(data)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                target.shutdown(socket.SHUT_WR)

    def close(self) -> None:
        self._listener.close()
        self._thread.join(timeout=5)
        for sock in self._sockets:
            sock.close()


def test_follow_says_when_the_stream_is_unreachable_and_when_it_is_back(
    tmp_path: Path, sim: StreamSimulator, server: SimulatorServer, tails: list[FollowingTail]
) -> None:
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    proxy = SwitchableProxy(port)
    try:
        timeouts = ["--connect-timeout", "0.3", "--read-timeout", "0.3"]
        tail = follow(
            tails,
            cli_env(tmp_path),
            sim.stream_arn,
            "-f",
            *connection(proxy.endpoint_url),
            *timeouts,
        )
        assert tail.next_record()["keys"] == {"pk": "a"}
        assert tail.next_record()["keys"] == {"pk": "b"}

        proxy.holding.set()
        down = tail.wait_stderr("stream unreachable since ")
        proxy.holding.clear()
        back = tail.wait_stderr("stream reachable again")
        sim.put_item({"pk": "c"})
        assert tail.next_record()["keys"] == {"pk": "c"}
        status, rest, stderr = tail.stop(signal.SIGTERM)
    finally:
        proxy.close()

    assert (status, rest) == (0, [])
    assert stderr.splitlines() == [down, back]
    assert down.startswith("ddbstreams: stream unreachable since ")
    assert f"no response from {proxy.endpoint_url}" in down
    assert back.startswith("ddbstreams: stream reachable again (unreachable for ")


# -- 10: the table is deleted under a follow ----------------------------------------------


@pytest.mark.parametrize("how", ["delete_table", "disable_stream"])
def test_follow_says_why_it_ends_when_the_stream_is_disabled(
    tmp_path: Path,
    sim: StreamSimulator,
    server: SimulatorServer,
    tails: list[FollowingTail],
    how: str,
) -> None:
    tail = follow(tails, cli_env(tmp_path), sim.stream_arn, "-f", *connection(server.endpoint_url))
    assert tail.next_record()["keys"] == {"pk": "a"}
    assert tail.next_record()["keys"] == {"pk": "b"}

    getattr(sim, how)()
    status, rest, stderr = tail.wait()

    assert (status, rest) == (0, [])
    assert stderr == (
        f"ddbstreams: stream {sim.stream_arn} was disabled (table deleted or stream turned "
        "off); every record it holds was read\n"
    )


# -- 11a: the region of the ARN -----------------------------------------------------------


def test_the_arn_region_is_used_when_none_is_configured(tmp_path: Path) -> None:
    sim = StreamSimulator(region="eu-west-3")
    sim.put_item({"pk": "a"})
    with SimulatorServer(sim) as running:
        # A service endpoint from the environment, as with AWS itself: no region implied.
        env = cli_env(tmp_path, AWS_ENDPOINT_URL_DYNAMODB_STREAMS=running.endpoint_url)
        result = run_cli("tail", sim.stream_arn, env=env)

    assert (result.returncode, result.stderr) == (0, "")
    assert [json.loads(line)["keys"] for line in result.stdout.splitlines()] == [{"pk": "a"}]


# -- 11c: SIGHUP --------------------------------------------------------------------------


def test_sighup_stops_a_follow_like_sigterm_and_saves_the_checkpoint(
    tmp_path: Path, sim: StreamSimulator, server: SimulatorServer, tails: list[FollowingTail]
) -> None:
    env = cli_env(tmp_path)
    checkpoint = tmp_path / "tail.db"
    tail = follow(
        tails,
        env,
        sim.stream_arn,
        "-f",
        "--checkpoint",
        str(checkpoint),
        *connection(server.endpoint_url),
    )
    assert tail.next_record()["keys"] == {"pk": "a"}
    last = tail.next_record()

    status, rest, stderr = tail.stop(signal.SIGHUP)

    assert (status, rest, stderr) == (0, [], "")
    shown = run_cli("checkpoints", "show", str(checkpoint), "--json", env=env)
    (stored,) = json.loads(shown.stdout)
    assert last["sequenceNumber"] in json.dumps(stored)


# -- 11d: a credential_process that hangs -------------------------------------------------


def test_a_hanging_credential_process_times_out(
    tmp_path: Path, sim: StreamSimulator, server: SimulatorServer
) -> None:
    config = tmp_path / "config"
    # It would hang ten minutes: run_cli's 60 s limit turns a hang into a failure.
    config.write_text("[profile slow]\ncredential_process = sleep 600\n")
    env = cli_env(tmp_path, AWS_CONFIG_FILE=str(config), AWS_PROFILE="slow")
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]

    result = run_cli(
        "tail",
        sim.stream_arn,
        *connection(server.endpoint_url),
        "--credentials-timeout",
        "1",
        env=env,
    )

    assert (result.returncode, result.stdout) == (1, "")
    line = one_error_line(result.stderr)
    assert "credential_process" in line
    assert "profile 'slow'" in line
    assert "sleep 600" in line
    assert "1 s" in line


# -- 11e: two tails, one checkpoint name --------------------------------------------------


def test_two_tails_on_one_checkpoint_name_say_so(
    tmp_path: Path, tails: list[FollowingTail]
) -> None:
    empty = StreamSimulator()
    with SimulatorServer(empty) as running:
        env = cli_env(tmp_path)
        checkpoint = tmp_path / "shared.db"
        argv = ["-f", "-v", "--checkpoint", str(checkpoint), *connection(running.endpoint_url)]
        first = follow(tails, env, empty.stream_arn, *argv)
        second = follow(tails, env, empty.stream_arn, *argv)
        for tail in (first, second):
            tail.wait_stderr(f"following {empty.stream_arn}")

        empty.put_item({"pk": "a"})
        # Both print it; whichever saves second finds the other's save.
        for tail in (first, second):
            assert tail.next_record()["keys"] == {"pk": "a"}
        deadline = time.monotonic() + DEADLINE
        while first.process.poll() is None and second.process.poll() is None:
            assert time.monotonic() < deadline, "neither tail stopped"
            time.sleep(0.05)
        failed, other = (first, second) if first.process.poll() is not None else (second, first)
        status, _, stderr = failed.wait()
        other_status, _, _ = other.stop(signal.SIGTERM)

    assert (status, other_status) == (1, 0)
    error = stderr.splitlines()[-1]
    assert error == (
        f"ddbstreams: error: another process uses the same checkpoint name 'tail' in "
        f"{checkpoint}: give each tail its own --name"
    )
