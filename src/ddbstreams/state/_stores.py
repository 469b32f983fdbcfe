"""Checkpoint stores: where a consumer keeps its :class:`~ddbstreams.Checkpoint` between runs.

A store is a *place* (a file, a state table, memory) that keeps one checkpoint per
``(name, stream_arn)``. The name is not the store's: it belongs to the consumer, whose name
is its application's (``Consumer(name=...)``, ``ddbstreams tail --name``), and every
:meth:`~CheckpointStore.load`, :meth:`~CheckpointStore.save` and
:meth:`~CheckpointStore.clear` takes it explicitly. So several applications reading one
stream share one store, each with its own checkpoint, and a store cannot be opened "as"
the wrong application: its constructor takes no name (passing ``name=`` raises
:class:`~ddbstreams.ConfigurationError`). Three stores implement :class:`CheckpointStore`:

- :class:`SQLiteCheckpointStore`: a SQLite file, the embedded default (no server needed);
- :class:`DynamoDBCheckpointStore`: a DynamoDB state table, created on demand;
- :class:`MemoryCheckpointStore`: a dict, for tests and short-lived programs.

Versions: every stored checkpoint carries a version that the store increments on each save.
A store instance remembers, per ``(name, stream_arn)``, the version it last loaded or saved,
and a save only succeeds if the stored version is still that one (or nothing is stored). So
an older checkpoint never overwrites a newer one written by another process: that save
raises :class:`~ddbstreams.CheckpointError` ("updated by another process; reload it") rather
than silently winning or losing. A store that never loaded a checkpoint cannot overwrite
it: call :meth:`~CheckpointStore.load` first. Names are independent: saving one name's
checkpoint never conflicts with another name's.

A checkpoint may carry, per shard in progress, the approximate creation time of its
checkpointed record (:attr:`Checkpoint.times <ddbstreams.Checkpoint.times>`): it is kept in
the stored JSON document, only when present, so checkpoints stored before it existed load
as they are (with no times) and older versions of ddbstreams read newer documents (they
ignore the key). ``ddbstreams lag`` reads it.

Corrupt data (a file that is not a SQLite database, an unexpected schema, a stored value
that does not parse, a checkpoint filed under another stream's key) raises CheckpointError
naming where the data is and what is wrong; nothing is ever silently reset. A SQLite file
that cannot be used at all (not a database, another application's database, a directory,
an unknown layout) raises :class:`CheckpointFileError`, a CheckpointError: nothing in such a
file can be read, reset or written, and only moving it away (or choosing another file)
gets past it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Protocol, Self, TypeVar, runtime_checkable

import orjson

from ddbstreams._clock import Clock, SystemClock
from ddbstreams._errors import (
    CheckpointConflictError,
    CheckpointError,
    CheckpointFileError,
    ConditionFailedError,
    ConfigurationError,
    TableNotFoundError,
    ValidationError,
)
from ddbstreams.client._streams import StreamsClient
from ddbstreams.model._arn import is_table_name
from ddbstreams.model._position import Checkpoint

__all__ = [
    "CheckpointStore",
    "DynamoDBCheckpointStore",
    "MemoryCheckpointStore",
    "SQLiteCheckpointStore",
    "StoredCheckpoint",
]

R = TypeVar("R")


@runtime_checkable
class CheckpointStore(Protocol):
    """A place that keeps checkpoints, one per ``(name, stream_arn)``.

    ``name`` is the consumer's (its application's) name, passed on every call
    (keyword-only): ``Consumer(name=...)``, ``ddbstreams tail --name``. Several
    applications share a store by their names; a store itself has no name.

    Implementations must make :meth:`save` atomic (a crash leaves the old or the new
    checkpoint, never a mix), must never let an older checkpoint overwrite a newer one
    (versions are tracked per name and stream), and raise ConfigurationError for an empty
    name or stream ARN.
    """

    async def load(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        """The checkpoint stored under ``name`` for ``stream_arn``, or None if there is none.

        CheckpointError if the stored data is corrupt or belongs to another stream.
        """
        ...

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        """Replace the checkpoint stored under ``name`` for ``checkpoint.stream_arn``,
        atomically.

        CheckpointError if another writer stored a newer checkpoint under that name since
        this store last loaded or saved it.
        """
        ...

    async def clear(self, stream_arn: str, *, name: str) -> None:
        """Forget the checkpoint stored under ``name`` for ``stream_arn`` (that consumer
        will start from scratch)."""
        ...

    async def close(self) -> None:
        """Release the store's resources. Idempotent."""
        ...


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as stored: its key, version and last update time (epoch seconds)."""

    name: str
    stream_arn: str
    version: int
    updated_at: float
    checkpoint: Checkpoint


# --------------------------------------------------------------------------- shared rules


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"a consumer name must be a non-empty string: {name!r}")
    return name


def _refuse_name(store: str, name: object) -> None:
    """Stores have no name of their own: the name is the consumer's, given on each call."""
    if name is not None:
        raise ConfigurationError(
            f"{store} takes no name: the name belongs to the consumer (Consumer(name=...), "
            "ddbstreams tail --name), which passes it on every load, save and clear; one "
            "store keeps the checkpoints of any number of names"
        )


def _check_arn(stream_arn: str) -> str:
    if not isinstance(stream_arn, str) or not stream_arn:
        raise ConfigurationError(f"a stream ARN must be a non-empty string: {stream_arn!r}")
    return stream_arn


def _encode(checkpoint: Checkpoint) -> str:
    """The JSON text stored for ``checkpoint``; CheckpointError if it would not load back."""
    if not isinstance(checkpoint, Checkpoint):
        raise TypeError(f"expected a Checkpoint, not {type(checkpoint).__name__}")
    _check_arn(checkpoint.stream_arn)
    data = checkpoint.to_json()
    try:
        # Refuse what load() would reject, so a bad checkpoint fails now and not at restart.
        Checkpoint.from_json(data)
    except CheckpointError as exc:
        raise CheckpointError(f"refusing to store an invalid checkpoint: {exc}") from exc
    return orjson.dumps(data).decode()


def _decode(text: object, stream_arn: str, where: str) -> Checkpoint:
    """Parse stored JSON text; CheckpointError naming ``where`` if corrupt or misfiled."""
    if not isinstance(text, str | bytes):
        raise CheckpointError(f"corrupt checkpoint in {where}: stored value is not text")
    try:
        data = orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"corrupt checkpoint in {where}: invalid JSON ({exc})") from exc
    try:
        checkpoint = Checkpoint.from_json(data)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc} (in {where})") from exc
    if checkpoint.stream_arn != stream_arn:
        raise CheckpointError(
            f"corrupt checkpoint in {where}: it is filed under stream {stream_arn} but names "
            f"stream {checkpoint.stream_arn}"
        )
    return checkpoint


def _conflict(
    stream_arn: str, name: str, stored: int | None, where: str
) -> CheckpointConflictError:
    state = f"version {stored}" if stored is not None else "now deleted"
    return CheckpointConflictError(
        f"checkpoint of {stream_arn} under {name!r} in {where} was updated by another "
        f"process ({state}); reload it"
    )


def _check_version(
    stored: int | None, known: int | None, stream_arn: str, name: str, where: str
) -> int:
    """The version to write, given the stored version and the one this store last saw.

    Writing is allowed when nothing is stored or the stored version is the one last seen;
    the new version continues from the highest version known, so it never repeats.
    """
    if stored is not None and stored != known:
        raise _conflict(stream_arn, name, stored, where)
    return (known or 0) + 1


class _Ordered:
    """Runs a store's operations one at a time, in call order, on the event loop.

    Cancelling a caller does not cancel work already handed to a thread (threads cannot be
    interrupted): the caller waits for it to finish before the cancellation goes through,
    so the next operation never overlaps it.
    """

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = asyncio.Lock()

    async def run(self, fn: Callable[[], R]) -> R:
        async with self._lock:
            task = asyncio.ensure_future(asyncio.to_thread(fn))
            try:
                return await asyncio.shield(task)
            except asyncio.CancelledError:
                while not task.done():
                    with contextlib.suppress(asyncio.CancelledError):
                        await asyncio.wait([task])
                if not task.cancelled():
                    task.exception()  # retrieved: the caller was cancelled, not failed
                raise

    async def run_async(self, fn: Callable[[], Awaitable[R]]) -> R:
        async with self._lock:
            return await fn()


# --------------------------------------------------------------------------- memory


class _MemoryData:
    __slots__ = ("rows",)

    def __init__(self) -> None:
        # (name, stream_arn) -> (version, JSON text, updated_at)
        self.rows: dict[tuple[str, str], tuple[int, str, float]] = {}


class _ClosesOnExit:
    """``async with store:`` closes the store on the way out."""

    async def close(self) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()


class MemoryCheckpointStore(_ClosesOnExit):
    """Checkpoints in a dict, lost when the process ends.

    Checkpoints are stored as JSON text, as the other stores do, so what loads back is an
    independent copy validated the same way. ``shared_with`` makes this store use another
    memory store's data (with its own view of versions), to play two processes in a test.
    ``name`` is refused (ConfigurationError): names are given to each call.
    """

    def __init__(
        self,
        *,
        shared_with: MemoryCheckpointStore | None = None,
        clock: Clock | None = None,
        name: None = None,
    ) -> None:
        _refuse_name("MemoryCheckpointStore", name)
        self._data: _MemoryData = shared_with._data if shared_with is not None else _MemoryData()
        self._known: dict[tuple[str, str], int | None] = {}
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._closed = False

    def __repr__(self) -> str:
        return "MemoryCheckpointStore()"

    @staticmethod
    def _where(name: str, stream_arn: str) -> str:
        return f"memory (name {name!r}, stream {stream_arn})"

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")

    async def load(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        """The checkpoint stored under ``name`` for ``stream_arn``, or None."""
        self._check_open()
        key = (_check_name(name), _check_arn(stream_arn))
        row = self._data.rows.get(key)
        if row is None:
            self._known[key] = None
            return None
        version, text, _ = row
        checkpoint = _decode(text, stream_arn, self._where(name, stream_arn))
        self._known[key] = version
        return checkpoint

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        """Store ``checkpoint`` under ``name``; CheckpointError if another store saved a
        newer one under that name."""
        self._check_open()
        _check_name(name)
        text = _encode(checkpoint)
        arn = checkpoint.stream_arn
        key = (name, arn)
        row = self._data.rows.get(key)
        version = _check_version(
            None if row is None else row[0], self._known.get(key), arn, name, "memory"
        )
        self._data.rows[key] = (version, text, self._clock.time())
        self._known[key] = version

    async def clear(self, stream_arn: str, *, name: str) -> None:
        """Forget the checkpoint stored under ``name`` for ``stream_arn``."""
        self._check_open()
        key = (_check_name(name), _check_arn(stream_arn))
        self._data.rows.pop(key, None)
        self._known[key] = None

    async def close(self) -> None:
        """Mark the store closed (the data stays with any store sharing it). Idempotent."""
        self._closed = True

    def list_sync(self) -> list[StoredCheckpoint]:
        """Every checkpoint in this store's data, of every name, sorted by name and stream."""
        return [
            StoredCheckpoint(
                name, arn, version, updated_at, _decode(text, arn, self._where(name, arn))
            )
            for (name, arn), (version, text, updated_at) in sorted(self._data.rows.items())
        ]


# --------------------------------------------------------------------------- SQLite

_APPLICATION_ID: Final = int.from_bytes(b"ddbs", "big")
"""``PRAGMA application_id`` of a ddbstreams checkpoint file."""
_SCHEMA_VERSION: Final = 1
"""``PRAGMA user_version`` of the current file layout."""
_COLUMNS: Final = ("name", "stream_arn", "version", "checkpoint", "updated_at")
_CREATE_TABLE: Final = """
CREATE TABLE checkpoints (
    name TEXT NOT NULL,
    stream_arn TEXT NOT NULL,
    version INTEGER NOT NULL,
    checkpoint TEXT NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (name, stream_arn)
)
"""
_BUSY_TIMEOUT: Final = 30.0
"""Seconds to wait for another process's write lock before giving up."""


class SQLiteCheckpointStore(_ClosesOnExit):
    """Checkpoints in a SQLite file: the embedded default, no server needed.

    The file is created on first write (parent directories included) with one table
    ``checkpoints(name, stream_arn, version, checkpoint, updated_at)``, marked with its own
    ``application_id`` and schema version. Several processes may share a file: writes are
    transactions (``BEGIN IMMEDIATE``), and a save whose stored version moved on since this
    store last loaded or saved raises CheckpointError.

    Durability: WAL journal with ``synchronous=FULL``, so a checkpoint is on disk when
    :meth:`save` returns; it survives the process being killed and a power loss.

    Blocking SQLite work runs in a worker thread, one operation at a time and in call
    order, so the event loop never waits on the disk. The ``*_sync`` methods do the same
    work in the calling thread (for the command line); do not mix them with the async
    methods from different threads at the same time.

    One file keeps the checkpoints of any number of consumer names (the ``name`` given to
    each call); ``name=`` in the constructor is refused (ConfigurationError).

    CheckpointFileError (a CheckpointError), naming the file: not a SQLite database, a
    SQLite database that is not a checkpoint file or has an unexpected schema, a directory.
    CheckpointError: a corrupt stored checkpoint, or a file that cannot be opened or stays
    locked by another process.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        clock: Clock | None = None,
        name: None = None,
    ) -> None:
        _refuse_name("SQLiteCheckpointStore", name)
        self.path = Path(path)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._known: dict[tuple[str, str], int | None] = {}
        self._conn: sqlite3.Connection | None = None
        # One connection, used by one thread at a time.
        self._db_lock = threading.Lock()
        self._ordered: _Ordered | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SQLiteCheckpointStore({str(self.path)!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close_sync()

    # ------------------------------------------------------------------ async API

    async def _run(self, fn: Callable[[], R]) -> R:
        if self._ordered is None:
            self._ordered = _Ordered()
        return await self._ordered.run(fn)

    async def load(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        """The checkpoint stored under ``name`` for ``stream_arn``, or None."""
        _check_name(name)
        _check_arn(stream_arn)
        return await self._run(lambda: self.load_sync(stream_arn, name=name))

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        """Store ``checkpoint`` under ``name`` durably; CheckpointError if another process
        saved a newer one under that name."""
        _check_name(name)
        text = _encode(checkpoint)
        await self._run(lambda: self._save_text(name, checkpoint.stream_arn, text))

    async def clear(self, stream_arn: str, *, name: str) -> None:
        """Forget the checkpoint stored under ``name`` for ``stream_arn``."""
        _check_name(name)
        _check_arn(stream_arn)
        await self._run(lambda: self.clear_sync(stream_arn, name=name))

    async def close(self) -> None:
        """Close the database connection. Idempotent."""
        if self._closed:
            return
        await self._run(self.close_sync)

    # ------------------------------------------------------------------ blocking API

    def load_sync(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        """:meth:`load`, blocking the calling thread. A missing file is not created."""
        key = (_check_name(name), _check_arn(stream_arn))
        with self._db_lock:
            conn = self._connection(create=False)
            if conn is None:
                self._known[key] = None
                return None
            row = self._execute(
                conn,
                "SELECT version, checkpoint FROM checkpoints WHERE name = ? AND stream_arn = ?",
                key,
            ).fetchone()
            if row is None:
                self._known[key] = None
                return None
            version = self._version(row[0], name, stream_arn)
            checkpoint = _decode(row[1], stream_arn, self._row_where(name, stream_arn))
            self._known[key] = version
            return checkpoint

    def save_sync(self, checkpoint: Checkpoint, *, name: str) -> None:
        """:meth:`save`, blocking the calling thread."""
        _check_name(name)
        self._save_text(name, checkpoint.stream_arn, _encode(checkpoint))

    def clear_sync(self, stream_arn: str, *, name: str) -> None:
        """:meth:`clear`, blocking the calling thread. A missing file is not created."""
        key = (_check_name(name), _check_arn(stream_arn))
        with self._db_lock:
            conn = self._connection(create=False)
            if conn is not None:
                self._execute(
                    conn, "DELETE FROM checkpoints WHERE name = ? AND stream_arn = ?", key
                )
            self._known[key] = None

    def list_sync(self) -> list[StoredCheckpoint]:
        """Every checkpoint in the file, of every name, sorted by name and stream ARN.

        An empty list for a missing file (which is not created). CheckpointError if any
        stored checkpoint is corrupt.
        """
        with self._db_lock:
            conn = self._connection(create=False)
            if conn is None:
                return []
            rows = self._execute(
                conn,
                "SELECT name, stream_arn, version, updated_at, checkpoint FROM checkpoints "
                "ORDER BY name, stream_arn",
                (),
            ).fetchall()
        out: list[StoredCheckpoint] = []
        for name, arn, version, updated_at, text in rows:
            where = self._row_where(name, arn)
            if not isinstance(updated_at, int | float):
                raise CheckpointError(f"corrupt checkpoint in {where}: bad updated_at")
            out.append(
                StoredCheckpoint(
                    name=name,
                    stream_arn=arn,
                    version=self._version(version, name, arn),
                    updated_at=float(updated_at),
                    checkpoint=_decode(text, arn, where),
                )
            )
        return out

    def close_sync(self) -> None:
        """:meth:`close`, blocking the calling thread. Idempotent."""
        with self._db_lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None:
                conn.close()

    # ------------------------------------------------------------------ internals

    def _row_where(self, name: str, stream_arn: str) -> str:
        return f"{self.path} (name {name!r}, stream {stream_arn})"

    def _version(self, value: object, name: str, stream_arn: str) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise CheckpointError(
                f"corrupt checkpoint in {self._row_where(name, stream_arn)}: bad version {value!r}"
            )
        return value

    def _save_text(self, name: str, stream_arn: str, text: str) -> None:
        key = (name, stream_arn)
        with self._db_lock:
            conn = self._connection(create=True)
            assert conn is not None
            try:
                self._execute(conn, "BEGIN IMMEDIATE", ())
                row = self._execute(
                    conn,
                    "SELECT version FROM checkpoints WHERE name = ? AND stream_arn = ?",
                    key,
                ).fetchone()
                stored = None if row is None else self._version(row[0], name, stream_arn)
                version = _check_version(
                    stored, self._known.get(key), stream_arn, name, str(self.path)
                )
                self._execute(
                    conn,
                    "INSERT INTO checkpoints (name, stream_arn, version, checkpoint, updated_at) "
                    "VALUES (?, ?, ?, ?, ?) ON CONFLICT (name, stream_arn) DO UPDATE SET "
                    "version = excluded.version, checkpoint = excluded.checkpoint, "
                    "updated_at = excluded.updated_at",
                    (name, stream_arn, version, text, self._clock.time()),
                )
                self._execute(conn, "COMMIT", ())
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise
            self._known[key] = version

    def _execute(
        self, conn: sqlite3.Connection, sql: str, params: tuple[object, ...]
    ) -> sqlite3.Cursor:
        try:
            return conn.execute(sql, params)
        except sqlite3.Error as exc:
            raise self._error(exc) from exc

    def _error(self, exc: sqlite3.Error) -> CheckpointError:
        text = str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in text:
            return CheckpointError(
                f"checkpoint file {self.path} stayed locked by another process for "
                f"{_BUSY_TIMEOUT:g}s ({text})"
            )
        if isinstance(exc, sqlite3.DatabaseError) and (
            "not a database" in text or "malformed" in text
        ):
            what = "a damaged SQLite database" if "malformed" in text else "not a SQLite database"
            return CheckpointFileError(f"checkpoint file {self.path} is {what}", self.path)
        return CheckpointError(f"checkpoint file {self.path}: {text}")

    def _connection(self, *, create: bool) -> sqlite3.Connection | None:
        """The open connection; on first use open and check (or initialise) the file.

        None when ``create`` is false and there is no file yet. Caller holds ``_db_lock``.
        """
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._conn is not None:
            return self._conn
        in_memory = str(self.path) == ":memory:"
        if not in_memory:
            if not create and not self.path.exists():
                return None
            if self.path.is_dir():
                raise CheckpointFileError(f"checkpoint file {self.path} is a directory", self.path)
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise CheckpointError(
                    f"cannot create the directory of checkpoint file {self.path}: {exc}"
                ) from exc
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=_BUSY_TIMEOUT,
                isolation_level=None,  # transactions are explicit
                check_same_thread=False,  # used from worker threads, one at a time
            )
        except sqlite3.Error as exc:
            raise self._error(exc) from exc
        try:
            self._prepare(conn)
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def _prepare(self, conn: sqlite3.Connection) -> None:
        """Check that the file is a checkpoint file of the expected schema; initialise an
        empty one. Nothing is written to a file that fails the check."""
        if not self._layout_matches(conn):
            self._execute(conn, "BEGIN IMMEDIATE", ())
            try:
                # Another process may have initialised the file since the first look.
                if not self._layout_matches(conn):
                    self._execute(conn, f"PRAGMA application_id = {_APPLICATION_ID}", ())
                    self._execute(conn, _CREATE_TABLE, ())
                    self._execute(conn, f"PRAGMA user_version = {_SCHEMA_VERSION}", ())
                self._execute(conn, "COMMIT", ())
            except BaseException:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.rollback()
                raise
        # WAL: readers do not block the writer; FULL: a commit is on disk when it returns.
        self._execute(conn, "PRAGMA journal_mode = WAL", ())
        self._execute(conn, "PRAGMA synchronous = FULL", ())

    def _layout_matches(self, conn: sqlite3.Connection) -> bool:
        """True if the file is a checkpoint file of the current schema; False if it is an
        empty database (to be initialised); CheckpointError for anything else."""
        application_id = self._execute(conn, "PRAGMA application_id", ()).fetchone()[0]
        user_version = self._execute(conn, "PRAGMA user_version", ()).fetchone()[0]
        tables = [
            row[0]
            for row in self._execute(
                conn, "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", ()
            )
        ]
        if application_id == 0 and user_version == 0 and not tables:
            return False
        if application_id != _APPLICATION_ID:
            listed = ", ".join(tables) if tables else "none"
            raise CheckpointFileError(
                f"{self.path} is a SQLite database but not a ddbstreams checkpoint file "
                f"(application_id {application_id}, tables: {listed}); refusing to use it",
                self.path,
            )
        if user_version > _SCHEMA_VERSION:
            raise CheckpointFileError(
                f"checkpoint file {self.path} has schema version {user_version}, written by a "
                f"newer ddbstreams (this one reads version {_SCHEMA_VERSION})",
                self.path,
            )
        if user_version != _SCHEMA_VERSION:
            raise CheckpointFileError(
                f"checkpoint file {self.path} has unknown schema version {user_version}",
                self.path,
            )
        columns = tuple(row[1] for row in self._execute(conn, "PRAGMA table_info(checkpoints)", ()))
        if columns != _COLUMNS:
            found = ", ".join(columns) if columns else "no checkpoints table"
            raise CheckpointFileError(
                f"checkpoint file {self.path} has an unexpected schema: table checkpoints "
                f"should have columns {', '.join(_COLUMNS)} (found: {found})",
                self.path,
            )
        return True


# --------------------------------------------------------------------------- DynamoDB

_KEY_SCHEMA: Final = (
    {"AttributeName": "name", "KeyType": "HASH"},
    {"AttributeName": "stream_arn", "KeyType": "RANGE"},
)
_ATTRIBUTE_DEFINITIONS: Final = (
    {"AttributeName": "name", "AttributeType": "S"},
    {"AttributeName": "stream_arn", "AttributeType": "S"},
)
_MAX_UNCONFIRMED: Final = 8


@dataclass(frozen=True, slots=True)
class _Attempt:
    """A write that may have landed without this store learning of it (cancelled or
    answered by a lost response)."""

    version: int
    text: str


class DynamoDBCheckpointStore(_ClosesOnExit):
    """Checkpoints in a DynamoDB state table, shared by every process that can reach it.

    Items: ``name`` (partition key, S), ``stream_arn`` (sort key, S), ``version`` (N),
    ``checkpoint`` (S, JSON), ``updated_at`` (N, epoch seconds). With ``create_table`` the
    table is created on first use if missing (on-demand capacity) and the store waits
    until it is ACTIVE; without it a missing table raises TableNotFoundError. A table whose
    key schema is not the one above raises CheckpointError.

    Saves are conditional writes (``attribute_not_exists(name) OR version = :expected``):
    when another process stored a newer checkpoint, :meth:`save` raises CheckpointError.
    Reads are strongly consistent. All calls go through a :class:`StreamsClient` (its
    state-table operations, ``client.tables``, on the client's retries): the given
    ``client`` (left open by :meth:`close`), or one built from ``endpoint_url`` and
    ``region_name`` (closed by :meth:`close`). Service errors are the client's
    (EndpointConnectionError, AccessDeniedError, ...), after its retries. Time (``updated_at``,
    waiting for a new table) comes from ``clock``, by default the client's.

    One table keeps the checkpoints of any number of consumer names (the ``name`` given to
    each call, the items' partition key); ``name=`` in the constructor is refused
    (ConfigurationError).
    """

    def __init__(
        self,
        table_name: str,
        *,
        client: StreamsClient | None = None,
        endpoint_url: str | None = None,
        region_name: str | None = None,
        create_table: bool = True,
        clock: Clock | None = None,
        name: None = None,
    ) -> None:
        _refuse_name("DynamoDBCheckpointStore", name)
        if not is_table_name(table_name):
            raise ConfigurationError(
                f"invalid checkpoint table name {table_name!r}: 3-255 characters of a-z, "
                "A-Z, 0-9, '_', '-' and '.'"
            )
        self.table_name = table_name
        if client is not None and (endpoint_url is not None or region_name is not None):
            raise ConfigurationError("pass either client= or endpoint_url/region_name, not both")
        if client is None:
            client = StreamsClient(endpoint_url=endpoint_url, region_name=region_name)
            self._owns_client = True
        else:
            self._owns_client = False
        self._client = client
        self._tables = client.tables
        self._create_table = create_table
        self._clock: Clock = clock if clock is not None else client.clock
        # Per (name, stream ARN): the version last seen, and writes that may have landed.
        self._known: dict[tuple[str, str], int | None] = {}
        self._unconfirmed: dict[tuple[str, str], list[_Attempt]] = {}
        self._ready = False
        self._ordered: _Ordered | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"DynamoDBCheckpointStore({self.table_name!r})"

    @property
    def client(self) -> StreamsClient:
        return self._client

    async def _run(self, fn: Callable[[], Awaitable[R]]) -> R:
        if self._closed:
            raise RuntimeError(f"{self!r} is closed")
        if self._ordered is None:
            self._ordered = _Ordered()
        return await self._ordered.run_async(fn)

    def _where(self, key: tuple[str, str] | None = None) -> str:
        where = f"DynamoDB table {self.table_name!r}"
        if key is not None:
            where += f" (name {key[0]!r}, stream {key[1]})"
        return where

    @staticmethod
    def _item_key(key: tuple[str, str]) -> dict[str, Any]:
        return {"name": {"S": key[0]}, "stream_arn": {"S": key[1]}}

    # ------------------------------------------------------------------ table

    async def _ensure_table(self) -> None:
        if self._ready:
            return
        try:
            table = await self._tables.ensure_table(
                self.table_name,
                attribute_definitions=_ATTRIBUTE_DEFINITIONS,
                key_schema=_KEY_SCHEMA,
                create=self._create_table,
                clock=self._clock,
                unusable=CheckpointError,
                kind="checkpoint table",
            )
        except TableNotFoundError as exc:
            if self._create_table:
                raise
            raise TableNotFoundError(
                f"checkpoint table {self.table_name!r} does not exist; create it or pass "
                f"create_table=True ({exc})"
            ) from exc
        self._check_key_schema(table)
        self._ready = True

    def _check_key_schema(self, table: Mapping[str, Any]) -> None:
        found = [
            (key.get("AttributeName"), key.get("KeyType")) for key in table.get("KeySchema") or ()
        ]
        types = {
            d.get("AttributeName"): d.get("AttributeType")
            for d in table.get("AttributeDefinitions") or ()
        }
        if found != [("name", "HASH"), ("stream_arn", "RANGE")] or any(
            types.get(attr) != "S" for attr in ("name", "stream_arn")
        ):
            shown = ", ".join(f"{n} {t} {types.get(n, '?')}" for n, t in found) or "none"
            raise CheckpointError(
                f"table {self.table_name!r} is not a ddbstreams checkpoint table: its key "
                f"schema is {shown}; a checkpoint table has the partition key 'name' (S) and "
                "the sort key 'stream_arn' (S)"
            )

    # ------------------------------------------------------------------ items

    async def _read(self, key: tuple[str, str]) -> tuple[int, str] | None:
        """The stored (version, JSON text) under ``key`` (name, stream ARN), or None;
        strongly consistent."""
        item = await self._tables.get_item(self.table_name, self._item_key(key))
        if item is None:
            return None
        where = self._where(key)
        try:
            version = int(item["version"]["N"])
            text = item["checkpoint"]["S"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"corrupt checkpoint in {where}: missing or malformed attribute {exc}"
            ) from exc
        if version < 1 or not isinstance(text, str):
            raise CheckpointError(f"corrupt checkpoint in {where}: bad version or checkpoint")
        return version, text

    async def load(self, stream_arn: str, *, name: str) -> Checkpoint | None:
        """The checkpoint stored under ``name`` for ``stream_arn``, or None."""
        key = (_check_name(name), _check_arn(stream_arn))

        async def load() -> Checkpoint | None:
            await self._ensure_table()
            stored = await self._read(key)
            if stored is None:
                self._known[key] = None
                return None
            version, text = stored
            checkpoint = _decode(text, stream_arn, self._where(key))
            self._known[key] = version
            self._unconfirmed.pop(key, None)
            return checkpoint

        return await self._run(load)

    async def save(self, checkpoint: Checkpoint, *, name: str) -> None:
        """Store ``checkpoint`` under ``name`` with a conditional write; CheckpointError if
        another process stored a newer one under that name since this store last loaded or
        saved it."""
        _check_name(name)
        text = _encode(checkpoint)
        stream_arn = checkpoint.stream_arn
        key = (name, stream_arn)

        async def save() -> None:
            await self._ensure_table()
            expected = self._known.get(key)
            # Two rounds: the second only after finding that one of this store's own
            # unconfirmed writes is what blocked the first.
            for _ in range(2):
                try:
                    await self._put(key, text, expected)
                    return
                except ConditionFailedError:
                    stored = await self._read(key)
                ours = self._unconfirmed.get(key, ())
                if stored is None or _Attempt(*stored) not in ours:
                    break
                # A write of ours landed without us learning of it: a retry after a lost
                # response found its own write, or an earlier save was cancelled late.
                self._confirm(key, stored[0])
                if stored[1] == text:
                    return
                expected = stored[0]
            raise _conflict(stream_arn, name, None if stored is None else stored[0], self._where())

        await self._run(save)

    async def _put(self, key: tuple[str, str], text: str, expected: int | None) -> None:
        version = (expected or 0) + 1
        item = {
            **self._item_key(key),
            "version": {"N": str(version)},
            "checkpoint": {"S": text},
            "updated_at": {"N": repr(float(self._clock.time()))},
        }
        names = {"#n": "name"}
        values: dict[str, Any] | None = None
        if expected is None:
            condition = "attribute_not_exists(#n)"
        else:
            names["#v"] = "version"
            condition = "attribute_not_exists(#n) OR #v = :expected"
            values = {":expected": {"N": str(expected)}}
        # Until an answer arrives the write may or may not land (cancellation, lost reply).
        attempt = _Attempt(version, text)
        pending = self._unconfirmed.setdefault(key, [])
        pending.append(attempt)
        del pending[:-_MAX_UNCONFIRMED]
        try:
            await self._tables.put_item(
                self.table_name,
                item,
                condition_expression=condition,
                names=names,
                values=values,
            )
        except ValidationError as exc:
            pending.remove(attempt)  # refused outright: it did not land
            raise CheckpointError(
                f"the checkpoint of {key[1]} under {key[0]!r} could not be stored in "
                f"{self._where()}: {exc}"
            ) from exc
        self._confirm(key, version)

    def _confirm(self, key: tuple[str, str], version: int) -> None:
        self._known[key] = version
        self._unconfirmed.pop(key, None)

    async def list_stored(self) -> list[StoredCheckpoint]:
        """Every checkpoint in the table, of every name, sorted by name and stream ARN.

        A consistent Scan of the whole table (all pages): meant for tools
        (``ddbstreams lag --table``), not for a consumer's hot path. CheckpointError if an
        item is corrupt; the versions seen are not remembered (listing is not loading).
        """

        async def scan() -> list[StoredCheckpoint]:
            await self._ensure_table()
            items = await self._tables.scan(self.table_name)
            return sorted(
                (self._stored(item) for item in items), key=lambda s: (s.name, s.stream_arn)
            )

        return await self._run(scan)

    def _stored(self, item: Mapping[str, Any]) -> StoredCheckpoint:
        try:
            key = (item["name"]["S"], item["stream_arn"]["S"])
        except (KeyError, TypeError) as exc:
            raise CheckpointError(f"corrupt item in {self._where()}: no key {exc}") from exc
        where = self._where(key)
        try:
            version = int(item["version"]["N"])
            updated_at = float(item["updated_at"]["N"])
            text = item["checkpoint"]["S"]
        except (KeyError, TypeError, ValueError) as exc:
            raise CheckpointError(
                f"corrupt checkpoint in {where}: missing or malformed attribute {exc}"
            ) from exc
        return StoredCheckpoint(key[0], key[1], version, updated_at, _decode(text, key[1], where))

    async def clear(self, stream_arn: str, *, name: str) -> None:
        """Delete the checkpoint stored under ``name`` for ``stream_arn``."""
        key = (_check_name(name), _check_arn(stream_arn))

        async def clear() -> None:
            await self._ensure_table()
            await self._tables.delete_item(self.table_name, self._item_key(key))
            self._known[key] = None
            self._unconfirmed.pop(key, None)

        await self._run(clear)

    async def close(self) -> None:
        """Close the client if this store created it. Idempotent."""
        if self._closed:
            return
        self._closed = True
        if self._owns_client:
            await self._client.close()


if TYPE_CHECKING:  # mypy checks that every store satisfies the protocol

    def _conforms(
        memory: MemoryCheckpointStore,
        sqlite: SQLiteCheckpointStore,
        dynamo: DynamoDBCheckpointStore,
    ) -> tuple[CheckpointStore, ...]:
        return (memory, sqlite, dynamo)
