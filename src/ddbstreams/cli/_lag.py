"""The ``ddbstreams lag`` command: how far behind a consumer is, per shard.

``lag --checkpoint FILE``, ``lag --table TABLE`` (a :class:`~ddbstreams.DynamoDBCheckpointStore`
table) or ``lag --group APP`` (a worker group's lease table, in the KCL's format). For every
shard of the stream: the state of the consumer's checkpoint there, the owner (groups), the
approximate creation time of the checkpointed record, and how far behind it is.

What "behind" means. DynamoDB Streams gives no record counts and no way to seek to a
shard's end, so the newest record of a shard is found by reading: a single pass
(:class:`~ddbstreams.StreamReader`, ``follow=False``) starts at the checkpoint and reads to
the end of every shard the consumer still has to read, counting the records it has not
processed (``pending``) and noting the creation time of the newest. A shard's lag is
``newest record's time - checkpointed record's time`` (0 when nothing is pending), KCL's
MillisBehindLatest in seconds; a shard nothing of which was processed yet (waiting for its
parent, say) is measured from its parent's checkpointed record, where the consumer stands
in that lineage. The consumer's lag is the largest. When no such time is known (not
stored, the record trimmed, or a lineage not started at all) the shard's oldest pending
record stands in for it and the figure is a lower bound (shown ``>=``). Creation times
are rounded by DynamoDB (to the second; to the minute on DynamoDB Local). The
checkpointed record's time is read from the checkpoint when it is stored there
(``Checkpoint.times``, lease attribute ``ddbstreamsCheckpointTime``), else from the stream
(one GetShardIterator AT the checkpoint and one GetRecords of one record).

Cost: the pass reads every pending record once (GetRecords: up to 1,000 records or 1 MB
a call; each call is a billed streams read request outside Lambda), up to 24 hours of a
shard, plus a few empty calls per open shard to tell it has caught up. ``--no-read`` reads
nothing but the shard listing (DescribeStream) and reports the checkpoint's age instead
(now - checkpointed record's time), which is the lag when records keep arriving.
"""

from __future__ import annotations

import argparse
import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Final

from ddbstreams._clock import SystemClock
from ddbstreams._errors import (
    CheckpointError,
    InvalidStreamArnError,
    ShardNotFoundError,
    TableNotFoundError,
    TrimmedDataError,
)
from ddbstreams._events import Event, RecordsTrimmed
from ddbstreams.cli import _render
from ddbstreams.cli._common import Output, UsageError, add_connection_options
from ddbstreams.client._streams import StreamsClient
from ddbstreams.coordination import Lease, LeaseTable
from ddbstreams.coordination._lease import (
    LATEST_CHECKPOINT,
    SHARD_END_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
)
from ddbstreams.lineage._graph import ShardGraph, plan_reads
from ddbstreams.model._arn import is_table_name, parse_stream_arn
from ddbstreams.model._position import (
    SHARD_LATEST,
    SHARD_TRIM_HORIZON,
    Checkpoint,
    ShardStart,
)
from ddbstreams.reading import StreamReader
from ddbstreams.state._stores import (
    DynamoDBCheckpointStore,
    SQLiteCheckpointStore,
    StoredCheckpoint,
)

__all__ = [
    "STATES",
    "LagReport",
    "ShardLag",
    "add_lag_command",
    "lag_command",
    "measure",
    "measure_all",
    "shard_rows",
]

STATES: Final = _render.LAG_STATES
"""A shard's state in a lag report: ``reading`` (records processed, checkpoint in it),
``not-started`` (nothing of it processed yet, its parent is done), ``waiting-for-parent``
(nothing processed; its parent is not finished, so it cannot start), ``no-lease`` (a group
has no lease for it yet), ``finished`` (processed to its end, or before the checkpoint) and
``gone`` (the checkpoint names it but the stream no longer lists it: trimmed before it was
processed to its end; records were lost)."""

_CONCURRENT_LOOKUPS: Final = 8
"""At most this many checkpointed records are looked up at a time."""
_LOOKUP_EMPTY_PAGES: Final = 3
"""Empty pages tolerated while looking up a checkpointed record (empty pages are normal)."""


@dataclass(frozen=True, slots=True)
class ShardLag:
    """One shard's line of a lag report (times in epoch seconds, durations in seconds).

    ``checkpoint``: the sequence number of the last record processed (None when nothing
    was). ``pending`` and ``newest_time`` are known only when the stream was read:
    ``pending`` counts the records after the checkpoint, ``newest_time`` is the creation
    time of the newest record read (or of the checkpointed record when nothing is pending).
    ``behind`` is ``newest_time - checkpoint_time`` (see the module docstring);
    ``lower_bound`` when the checkpointed record's time was not known and the oldest pending
    record stood in for it. ``records_lost``: records were trimmed before being processed.
    """

    shard_id: str
    parent_shard_id: str | None
    state: str
    checkpoint: str | None = None
    checkpoint_time: float | None = None
    owner: str | None = None
    newest_time: float | None = None
    pending: int | None = None
    behind: float | None = None
    lower_bound: bool = False
    records_lost: bool = False


@dataclass(frozen=True, slots=True)
class LagReport:
    """A consumer's lag on one stream: where it was read from, when, and each shard."""

    stream_arn: str
    source: str
    source_kind: str  # "file", "table" or "group"
    now: float
    read: bool
    shards: tuple[ShardLag, ...]
    group: bool = False

    @property
    def behind(self) -> tuple[float | None, bool]:
        """The largest ``behind`` of a shard and whether it is a lower bound; (None, False)
        when none is known."""
        known = [s for s in self.shards if s.behind is not None]
        if not known:
            return None, False
        worst = max(known, key=lambda s: (s.behind, not s.lower_bound))
        return worst.behind, worst.lower_bound

    @property
    def pending(self) -> int | None:
        """Records not processed yet, over every shard; None when the stream was not read."""
        if not self.read:
            return None
        return sum(s.pending or 0 for s in self.shards)


# -- pure: which state each shard is in, and its lag ---------------------------------------


def shard_rows(
    graph: ShardGraph,
    checkpoint: Checkpoint,
    *,
    owners: Mapping[str, str] | None = None,
    leased: frozenset[str] | None = None,
) -> list[ShardLag]:
    """A row per listed shard (parents before children), then one per shard the checkpoint
    names that is gone, with its state (:data:`STATES`) and checkpoint; nothing measured yet.

    The checkpoint is resolved by lineage as a reader resuming from it would
    (:func:`~ddbstreams.lineage._graph.plan_reads`). ``leased`` (groups): the shards that
    have a lease; a shard to read without one is ``no-lease``.
    """
    owners = owners or {}
    starts = plan_reads(graph, checkpoint).starts
    rows: list[ShardLag] = []
    for shard_id in graph.topological_order():
        parent = graph.shards[shard_id].parent_shard_id
        position = checkpoint.positions.get(shard_id)
        if shard_id not in starts:
            state = "finished"
        elif position is not None:
            state = "reading"
        elif leased is not None and shard_id not in leased:
            state = "no-lease"
        elif graph.parent(shard_id) in starts:
            state = "waiting-for-parent"
        else:
            state = "not-started"
        rows.append(
            ShardLag(
                shard_id,
                parent,
                state,
                checkpoint=position if state == "reading" else None,
                checkpoint_time=checkpoint.times.get(shard_id) if state == "reading" else None,
                owner=owners.get(shard_id),
            )
        )
    unfinished = set(checkpoint.positions) | set(checkpoint.pending)
    for shard_id in sorted(unfinished - set(graph.shards) - checkpoint.finished):
        rows.append(
            ShardLag(
                shard_id,
                None,
                "gone",
                checkpoint=checkpoint.positions.get(shard_id),
                checkpoint_time=checkpoint.times.get(shard_id),
                owner=owners.get(shard_id),
                records_lost=True,
            )
        )
    return rows  # parents before children, then the shards that are gone


@dataclass(slots=True)
class Seen:
    """What the pass read of one shard: how many records, the creation time of the first
    and of the last, and whether records were trimmed before they could be read."""

    count: int = 0
    first: float | None = None
    last: float | None = None
    trimmed: bool = False

    def add(self, times: Sequence[float]) -> None:
        self.count += len(times)
        known = [t for t in times if not math.isnan(t)]
        if known:
            if self.first is None:
                self.first = known[0]
            self.last = known[-1] if self.last is None else max(self.last, known[-1])


def measure(
    row: ShardLag,
    seen: Seen | None,
    *,
    read: bool,
    inherited: tuple[float, bool] | None = None,
) -> ShardLag:
    """``row`` with what the pass read of its shard (``seen``: None when nothing was).

    The reference a shard's newest record is measured from is its checkpointed record's
    time; for a shard nothing of which was processed, the reference of its parent's lineage
    (``inherited``: the time and whether it is a lower bound), since the consumer's position
    there is its ancestor's checkpoint; failing both, its oldest pending record (a lower
    bound). Without ``read`` (``--no-read``) only finished shards are known.
    """
    if row.state == "finished":
        return replace(row, pending=0, behind=0.0)
    if row.state == "gone" or not read:
        return row
    lost = row.records_lost or (seen is not None and seen.trimmed)
    if seen is None or seen.count == 0:
        newest = row.checkpoint_time
        return replace(row, pending=0, behind=0.0, newest_time=newest, records_lost=lost)
    reference = _reference(row, seen, inherited)
    behind = None
    if reference is not None and seen.last is not None:
        behind = max(0.0, seen.last - reference[0])
    return replace(
        row,
        pending=seen.count,
        newest_time=seen.last,
        behind=behind,
        lower_bound=reference is not None and reference[1],
        records_lost=lost,
    )


def _reference(
    row: ShardLag, seen: Seen | None, inherited: tuple[float, bool] | None
) -> tuple[float, bool] | None:
    """Where ``row``'s lag is measured from (see :func:`measure`); also what its children
    inherit."""
    if row.state == "reading" and row.checkpoint_time is not None:
        return row.checkpoint_time, False
    if row.state != "reading" and inherited is not None:
        return inherited
    if seen is not None and seen.first is not None:
        return seen.first, True
    return inherited


def measure_all(
    rows: Sequence[ShardLag], seen: Mapping[str, Seen], *, read: bool
) -> tuple[ShardLag, ...]:
    """:func:`measure` of every row (parents before children, as :func:`shard_rows` gives
    them), each shard inheriting its parent's reference."""
    references: dict[str, tuple[float, bool] | None] = {}
    out = []
    for row in rows:
        parent = row.parent_shard_id
        inherited = references.get(parent) if parent is not None else None
        shard_seen = seen.get(row.shard_id)
        out.append(measure(row, shard_seen, read=read, inherited=inherited))
        if row.state != "finished":
            references[row.shard_id] = _reference(row, shard_seen, inherited)
    return tuple(out)


# -- reading the stream ---------------------------------------------------------------------


class _Stamps:
    """A parser keeping only each record's ApproximateCreationDateTime (epoch seconds;
    NaN when a record has none): the pass counts and times records, nothing more."""

    def parse_records(self, raw_records: list[dict[str, Any]], shard_id: str) -> list[float]:
        out = []
        for raw in raw_records:
            try:
                out.append(float(raw["dynamodb"]["ApproximateCreationDateTime"]))
            except (KeyError, TypeError, ValueError):
                out.append(math.nan)
        return out


async def read_pending(
    client: StreamsClient, stream_arn: str, checkpoint: Checkpoint
) -> dict[str, Seen]:
    """A single pass from ``checkpoint`` to the end of what the stream holds now: per shard
    read, what was seen (see :class:`Seen`)."""
    seen: dict[str, Seen] = {}

    def on_event(event: Event) -> None:
        if isinstance(event, RecordsTrimmed):
            seen.setdefault(event.shard_id, Seen()).trimmed = True

    reader = StreamReader(
        stream_arn,
        start=checkpoint,
        follow=False,
        client=client,
        parser=_Stamps(),
        on_event=on_event,
    )
    async with reader:
        async for batch in reader.shard_batches():
            seen.setdefault(batch.shard_id, Seen()).add(batch.records)
    return seen


async def checkpointed_record_time(
    client: StreamsClient, stream_arn: str, shard_id: str, sequence_number: str
) -> float | None:
    """The creation time of the record ``sequence_number`` of ``shard_id``, read from the
    stream (GetShardIterator AT it, GetRecords of one record); None when it is trimmed or
    cannot be found."""
    start = ShardStart("AT_SEQUENCE_NUMBER", sequence_number)
    try:
        iterator: str | None = await client.get_shard_iterator(stream_arn, shard_id, start)
        for _ in range(_LOOKUP_EMPTY_PAGES):
            if iterator is None:
                return None
            page = await client.get_records(iterator, shard_id=shard_id, parser=_Stamps(), limit=1)
            if page.records:
                found = page.records[0]
                return None if math.isnan(found) else found
            iterator = page.next_shard_iterator
    except (TrimmedDataError, ShardNotFoundError):
        return None
    return None


async def _fill_checkpoint_times(
    client: StreamsClient, stream_arn: str, rows: list[ShardLag]
) -> list[ShardLag]:
    """``rows`` with the checkpointed record's time looked up in the stream where the
    checkpoint did not carry it."""
    limit = asyncio.Semaphore(_CONCURRENT_LOOKUPS)

    async def fill(row: ShardLag) -> ShardLag:
        if row.state != "reading" or row.checkpoint is None or row.checkpoint_time is not None:
            return row
        async with limit:
            found = await checkpointed_record_time(client, stream_arn, row.shard_id, row.checkpoint)
        return replace(row, checkpoint_time=found)

    return list(await asyncio.gather(*(fill(row) for row in rows)))


# -- where the checkpoint comes from ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Source:
    """A consumer's position on a stream, whichever place it was read from."""

    description: str
    kind: str
    stream_arn: str
    checkpoint: Checkpoint
    owners: Mapping[str, str] = field(default_factory=dict)
    leased: frozenset[str] | None = None


def _matches(stream: str | None, arn: str) -> bool:
    """Whether a stored checkpoint's stream ``arn`` is the ``--stream`` given (an ARN, or
    a table name that matches every stream of the table); no ``--stream`` matches all."""
    if stream is None:
        return True
    if stream.startswith("arn:"):
        return arn == stream
    try:
        return parse_stream_arn(arn).table_name == stream
    except InvalidStreamArnError:
        return False


def _pick(
    stored: Sequence[StoredCheckpoint], args: argparse.Namespace, where: str
) -> StoredCheckpoint:
    """The one stored checkpoint that ``--name`` and ``--stream`` select in ``where``;
    a UsageError (naming the candidates) when none or several do."""
    stream = args.stream
    if stream is not None and not stream.startswith("arn:") and not is_table_name(stream):
        raise UsageError(f"--stream {stream!r} is neither a stream ARN nor a table name")
    chosen = [
        s
        for s in stored
        if (args.name is None or s.name == args.name) and _matches(args.stream, s.stream_arn)
    ]
    if len(chosen) == 1:
        return chosen[0]
    wanted = ", ".join(
        part
        for part in (
            f"name {args.name!r}" if args.name is not None else "",
            f"stream {args.stream}" if args.stream is not None else "",
        )
        if part
    )
    if not chosen:
        raise CheckpointError(
            f"no checkpoint in {where}{f' for {wanted}' if wanted else ''}"
            + (f" (it holds: {_listing(stored)})" if stored else " (it holds none)")
        )
    raise UsageError(
        f"{where} holds {len(chosen)} checkpoints{f' for {wanted}' if wanted else ''}: "
        f"{_listing(chosen)}; choose one with --name and --stream"
    )


def _listing(stored: Sequence[StoredCheckpoint]) -> str:
    return "; ".join(f"name {s.name!r} stream {s.stream_arn}" for s in stored)


def _file_source(args: argparse.Namespace) -> _Source:
    from pathlib import Path

    path = Path(args.checkpoint)
    if not path.exists():
        raise CheckpointError(f"checkpoint file {path} does not exist")
    with SQLiteCheckpointStore(path) as store:
        stored = store.list_sync()
    entry = _pick(stored, args, f"checkpoint file {path}")
    return _Source(
        f"checkpoint file {path}, name {entry.name!r}", "file", entry.stream_arn, entry.checkpoint
    )


async def _table_source(args: argparse.Namespace, client: StreamsClient) -> _Source:
    store = DynamoDBCheckpointStore(args.table, client=client, create_table=False)
    try:
        stored = await store.list_stored()
    except TableNotFoundError as exc:
        raise TableNotFoundError(f"checkpoint table {args.table!r} not found ({exc})") from exc
    where = f"checkpoint table {args.table!r}"
    entry = _pick(stored, args, where)
    return _Source(f"{where}, name {entry.name!r}", "table", entry.stream_arn, entry.checkpoint)


def _lease_checkpoint(stream_arn: str, leases: Sequence[Lease]) -> Checkpoint:
    """The group's position as a :class:`Checkpoint`: sequence-number checkpoints as
    positions (with ``ddbstreamsCheckpointTime`` as times), SHARD_END as finished, and
    TRIM_HORIZON / LATEST as where an unprocessed shard begins."""
    positions: dict[str, str] = {}
    times: dict[str, float] = {}
    pending: dict[str, ShardStart] = {}
    finished: set[str] = set()
    for lease in leases:
        if lease.checkpoint == SHARD_END_CHECKPOINT:
            finished.add(lease.key)
        elif lease.checkpoint == TRIM_HORIZON_CHECKPOINT:
            pending[lease.key] = SHARD_TRIM_HORIZON
        elif lease.checkpoint == LATEST_CHECKPOINT:
            pending[lease.key] = SHARD_LATEST
        else:
            positions[lease.key] = lease.checkpoint
            if lease.checkpoint_time is not None:
                times[lease.key] = lease.checkpoint_time
    return Checkpoint(stream_arn, positions, frozenset(finished), pending, times=times)


async def _group_stream(
    args: argparse.Namespace, client: StreamsClient, leases: Sequence[Lease]
) -> str:
    """The group's stream: ``--stream`` resolved, else the one its leases name."""
    if args.stream is not None:
        return await client.resolve_stream(args.stream)
    named = sorted({lease.stream_arn for lease in leases if lease.stream_arn is not None})
    if len(named) == 1:
        return named[0]
    if not named:
        raise UsageError(
            f"the leases of group {args.group!r} do not name their stream (leases written "
            "by the Java KCL, or no leases yet): give it with --stream"
        )
    raise UsageError(
        f"the leases of group {args.group!r} name {len(named)} streams ({', '.join(named)}): "
        "choose one with --stream"
    )


async def _group_source(args: argparse.Namespace, client: StreamsClient) -> _Source:
    table = LeaseTable(client.tables, args.group, clock=SystemClock())
    try:
        leases = await table.scan_leases()
    except TableNotFoundError as exc:
        raise TableNotFoundError(
            f"lease table {args.group!r} not found: no group {args.group!r} here (check "
            "--group, --endpoint-url and --region)"
        ) from exc
    stream_arn = await _group_stream(args, client, leases)
    # A lease of another stream (the group moved to a new stream) is not this one's.
    mine = [lease for lease in leases if lease.stream_arn in (None, stream_arn)]
    return _Source(
        f"group {args.group!r} (lease table {args.group!r})",
        "group",
        stream_arn,
        _lease_checkpoint(stream_arn, mine),
        owners={lease.key: lease.owner for lease in mine if lease.owner is not None},
        leased=frozenset(lease.key for lease in mine),
    )


# -- the command --------------------------------------------------------------------------


def add_lag_command(commands: Any) -> None:
    """Add ``lag`` to the subcommands ``commands``."""
    lag = commands.add_parser(
        "lag",
        help="show how far behind a consumer is, per shard",
        description=(
            "Show how far behind a consumer is on its stream: per shard, the checkpoint, the "
            "owner (groups), the records not processed yet and how far behind the shard's "
            "newest record the checkpoint is in time (newest record's creation time minus "
            "the checkpointed record's; '>=' marks a lower bound). The consumer's position "
            "comes from a SQLite checkpoint file, a DynamoDB checkpoint table or a worker "
            "group's lease table."
        ),
        epilog=(
            "Cost: the stream has no record counts and no way to seek to a shard's end, so "
            "lag reads every record after the checkpoint, once (a single pass, as 'tail' "
            "does: GetRecords returns up to 1,000 records or 1 MB a call, and each call is a "
            "billed streams read request), up to 24 hours of each shard the consumer is "
            "behind on, plus a few empty calls per open shard. --no-read only lists the "
            "shards and shows how old each checkpoint is (now minus the checkpointed "
            "record's creation time). Exit status: 0 on success; 1 on a runtime error; 2 on "
            "a usage error."
        ),
    )
    where = lag.add_mutually_exclusive_group(required=True)
    where.add_argument("--checkpoint", metavar="FILE", help="a SQLite checkpoint file")
    where.add_argument(
        "--table", metavar="TABLE", help="a DynamoDB checkpoint table (DynamoDBCheckpointStore)"
    )
    where.add_argument(
        "--group", metavar="APP", help="a worker group (its lease table, KCL format)"
    )
    lag.add_argument(
        "--name",
        metavar="NAME",
        help="the consumer's name in FILE or TABLE (needed when it holds several)",
    )
    lag.add_argument(
        "--stream",
        metavar="STREAM",
        help=(
            "stream ARN or source table name (needed when the checkpoints, or the group's "
            "leases, are of several streams or do not name it)"
        ),
    )
    lag.add_argument(
        "--no-read",
        action="store_true",
        help="read no records: show only each checkpoint's age (see the cost below)",
    )
    lag.add_argument("--json", action="store_true", help="print one JSON document instead")
    add_connection_options(lag)
    lag.set_defaults(handler=lag_command)


def lag_command(args: argparse.Namespace, out: Output) -> int:
    """``ddbstreams lag (--checkpoint FILE | --table TABLE | --group APP) ...``."""
    if args.group is not None and args.name is not None:
        raise UsageError("--name is for --checkpoint and --table; a group is named by --group")
    report = asyncio.run(_lag(args))
    if args.json:
        out.write(_render.lag_to_json(report))
    else:
        out.write_text(_render.lag_to_text(report))
    out.flush()
    return 0


def _client(args: argparse.Namespace) -> StreamsClient:
    return StreamsClient(
        endpoint_url=args.endpoint_url,
        region_name=args.region,
        connect_timeout=args.connect_timeout,
        read_timeout=args.read_timeout,
        credentials_timeout=args.credentials_timeout,
    )


async def _lag(args: argparse.Namespace) -> LagReport:
    async with _client(args) as client:
        if args.checkpoint is not None:
            source = _file_source(args)
        elif args.table is not None:
            source = await _table_source(args, client)
        else:
            source = await _group_source(args, client)
        return await measure_source(client, source, read=not args.no_read)


async def measure_source(client: StreamsClient, source: _Source, *, read: bool) -> LagReport:
    """The lag report of ``source``: the shard listing, then (with ``read``) the
    checkpointed records' times missing from the checkpoint and the single pass."""
    description = await client.describe_stream(source.stream_arn)
    graph = ShardGraph.from_shards(description.shards)
    rows = shard_rows(graph, source.checkpoint, owners=source.owners, leased=source.leased)
    seen: dict[str, Seen] = {}
    if read:
        rows = await _fill_checkpoint_times(client, source.stream_arn, rows)
        seen = await read_pending(client, source.stream_arn, source.checkpoint)
    measured = measure_all(rows, seen, read=read)
    return LagReport(
        stream_arn=source.stream_arn,
        source=source.description,
        source_kind=source.kind,
        now=client.clock.time(),
        read=read,
        shards=measured,
        group=source.kind == "group",
    )
