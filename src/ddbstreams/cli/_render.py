"""Text and JSON renderings of records and stream descriptions for the ``ddbstreams`` CLI.

Pure: every function takes values and returns ``bytes`` or ``str``; nothing here writes to
a stream or reads the environment, so the CLI's output formats are testable without I/O.

Record formats:

- JSON Lines (:func:`record_to_jsonl`): one object per record with exactly the keys
  ``eventID, eventName, shardId, sequenceNumber, approximateCreationDateTime, keys,
  newImage, oldImage``. Values are plain JSON (numbers exact, bytes base64, sets as sorted
  lists) for records from the default parser, and DynamoDB JSON for records from
  :class:`~ddbstreams.model._decode.RawParser` (the maps are passed through untouched).
- Pretty (:func:`record_to_pretty`): a few human lines per record: the event and its keys,
  the time, shard and sequence number, then what changed (attributes added, changed,
  removed; a MODIFY with both images shows a compact diff).

In both, a string holding a lone UTF-16 surrogate (which DynamoDB accepts) is written with
the surrogate as a ``\\uXXXX`` escape, so the output is always valid UTF-8 (and a JSON
Lines line reads back, with ``json.loads``, to the same string).

Description formats: :func:`description_to_text` (fields and the shard lineage as a tree)
and :func:`description_to_json`.

Events (:func:`event_to_text`): one line per :mod:`ddbstreams._events` event, a reader's or a
consumer's, for the ``--verbose`` progress log on stderr.

Stored checkpoints (``ddbstreams checkpoints show``): :func:`checkpoints_to_text` (one block
per checkpoint: name, stream, version, update time, shard counts and, when there are not too
many, each shard's position) and :func:`checkpoints_to_json` (the full stored documents).

Consumer lag (``ddbstreams lag``): :func:`lag_to_text` and :func:`lag_to_json`. Progress of
a single-pass ``tail`` on a terminal's stderr: :func:`progress_line`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson

from ddbstreams._events import (
    BatchFailed,
    BatchHandled,
    CheckpointSaved,
    ConsumerStarted,
    Event,
    ForeignWorkers,
    GroupChanged,
    GroupError,
    IteratorRefreshed,
    LeaseLost,
    LeaseReleased,
    LeasesCreated,
    LeaseTaken,
    ReaderError,
    RecordsGivenUp,
    RecordsSkipped,
    RecordsTrimmed,
    RequestRetried,
    ShardFinished,
    ShardsDiscovered,
    ShardStarted,
    StreamDisabled,
    StreamReplaced,
    Throttled,
    WorkerJoined,
)
from ddbstreams.coordination import Lease, WorkerRecord
from ddbstreams.lineage._graph import ShardGraph, shard_order_key
from ddbstreams.model._decode import dumps_plain_json, escape_lone_surrogates
from ddbstreams.model._position import (
    AfterSequence,
    AtSequence,
    AtTime,
    Checkpoint,
    Latest,
    ShardStart,
    StartPosition,
)
from ddbstreams.model._types import Record, Shard, StreamDescription

if TYPE_CHECKING:
    from ddbstreams.cli._lag import LagReport, ShardLag
    from ddbstreams.state._stores import StoredCheckpoint

__all__ = [
    "ASCII",
    "LAG_STATES",
    "UNICODE",
    "Glyphs",
    "checkpoints_to_json",
    "checkpoints_to_text",
    "description_to_json",
    "description_to_text",
    "event_to_text",
    "format_duration",
    "format_epoch",
    "format_time",
    "lag_to_json",
    "lag_to_text",
    "lease_state",
    "leases_to_json",
    "leases_to_text",
    "progress_line",
    "record_to_jsonl",
    "record_to_pretty",
]


@dataclass(frozen=True, slots=True)
class Glyphs:
    """The characters used for trees and arrows, so output can fall back to plain ASCII."""

    branch: str
    last: str
    pipe: str
    space: str
    arrow: str
    ellipsis: str
    range: str


UNICODE: Final = Glyphs("├── ", "└── ", "│   ", "    ", "→", "…", "…")
ASCII: Final = Glyphs("|-- ", "`-- ", "|   ", "    ", "->", "...", "..")

# ANSI SGR codes; only used when the caller asks for colour (a terminal without NO_COLOR).
_RESET: Final = "\x1b[0m"
_BOLD: Final = "\x1b[1m"
_DIM: Final = "\x1b[2m"
_RED: Final = "\x1b[31m"
_GREEN: Final = "\x1b[32m"
_YELLOW: Final = "\x1b[33m"
_EVENT_COLOURS: Final = {"INSERT": _GREEN, "MODIFY": _YELLOW, "REMOVE": _RED}
LAG_STATES: Final = (
    "reading",
    "not-started",
    "waiting-for-parent",
    "no-lease",
    "finished",
    "gone",
)
"""A shard's states in a lag report (see :data:`ddbstreams.cli._lag.STATES`), in the order
a summary counts them."""


def format_time(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``: ``2026-11-29T06:31:20Z``.

    A fraction is shown only when present: milliseconds when the time has millisecond
    precision (``...20.250Z``), microseconds otherwise. Naive datetimes are taken as UTC.
    """
    moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    micro = moment.microsecond
    if micro == 0:
        return text + "Z"
    if micro % 1000 == 0:
        return f"{text}.{micro // 1000:03d}Z"
    return f"{text}.{micro:06d}Z"


def format_epoch(seconds: float) -> str:
    """:func:`format_time` of epoch ``seconds``, rounded to the millisecond."""
    millis = round(seconds * 1000)
    moment = datetime.fromtimestamp(millis // 1000, UTC)
    return format_time(moment.replace(microsecond=(millis % 1000) * 1000))


def _record_object(record: Record) -> dict[str, Any]:
    return {
        "eventID": record.event_id,
        "eventName": record.event_name,
        "shardId": record.shard_id,
        "sequenceNumber": record.sequence_number,
        "approximateCreationDateTime": format_time(record.approximate_creation_time),
        "keys": record.keys,
        "newImage": record.new_image,
        "oldImage": record.old_image,
    }


def record_to_jsonl(record: Record) -> bytes:
    """One JSON Lines line (ending in ``\\n``) for ``record``; see the module docstring."""
    return dumps_plain_json(_record_object(record)) + b"\n"


def _value_text(value: Any, width: int, glyphs: Glyphs) -> str:
    text = dumps_plain_json(value).decode("utf-8")
    if width > 0 and len(text) > width:
        return text[: max(width - len(glyphs.ellipsis), 1)] + glyphs.ellipsis
    return text


def _paint(text: str, code: str, color: bool) -> str:
    return f"{code}{text}{_RESET}" if color else text


def record_to_pretty(
    record: Record,
    *,
    color: bool = False,
    glyphs: Glyphs = UNICODE,
    width: int = 160,
) -> str:
    """A readable multi-line rendering of ``record``, ending in a newline.

    First line: event name and keys (``pk="user#1" sk=7``). Second line: time, shard and
    sequence number. Then one line per attribute, by name (images have no order):
    ``+ name: value`` for an INSERT's new image, ``- name: value`` for a REMOVE's old image,
    and for a MODIFY with both images only what changed (``~ name: old → new``, ``+`` added,
    ``-`` removed) plus a count of unchanged attributes. Key attributes are not repeated.
    Values are compact JSON (plain or DynamoDB JSON, whatever the record holds), cut to
    ``width`` characters.
    """
    name = record.event_name
    head = _paint(f"{name:<6}", _BOLD + _EVENT_COLOURS.get(name, ""), color)
    keys = " ".join(f"{k}={_value_text(v, width, glyphs)}" for k, v in sorted(record.keys.items()))
    meta = (
        f"{format_time(record.approximate_creation_time)}  {record.shard_id}"
        f"  seq {record.sequence_number}"
    )
    lines = [f"{head} {keys}".rstrip(), "       " + _paint(meta, _DIM, color)]
    key_names = record.keys.keys()
    new, old = record.new_image, record.old_image

    def attr(mark: str, colour: str, attr_name: str, text: str) -> None:
        lines.append("       " + _paint(f"{mark} {attr_name}: {text}", colour, color))

    if name == "MODIFY" and new is not None and old is not None:
        unchanged = _diff(old, new, key_names, attr, width, glyphs)
        if unchanged:
            lines.append("       " + _paint(f"({unchanged} unchanged)", _DIM, color))
    elif name == "REMOVE" or (new is None and old is not None):
        if old is None:
            lines.append("       " + _paint("(old image not in stream)", _DIM, color))
        else:
            for attr_name, value in sorted(old.items()):
                if attr_name not in key_names:
                    attr("-", _RED, attr_name, _value_text(value, width, glyphs))
    elif new is not None:
        # INSERT, or a MODIFY on a NEW_IMAGE stream: no old image to diff against.
        mark, colour = ("+", _GREEN) if name == "INSERT" else ("=", _YELLOW)
        for attr_name, value in sorted(new.items()):
            if attr_name not in key_names:
                attr(mark, colour, attr_name, _value_text(value, width, glyphs))
    else:
        lines.append("       " + _paint("(keys only)", _DIM, color))
    # Values are escaped already; names and keys may still hold a lone surrogate.
    return escape_lone_surrogates("\n".join(lines) + "\n")


def _diff(
    old: Mapping[str, Any],
    new: Mapping[str, Any],
    key_names: Collection[str],
    attr: Callable[[str, str, str, str], None],
    width: int,
    glyphs: Glyphs,
) -> int:
    """Report a MODIFY's changed, added and removed attributes through ``attr``; return
    how many (other than keys) are unchanged."""
    unchanged = 0
    for attr_name in sorted(old.keys() | new.keys()):
        if attr_name in key_names:
            continue
        if attr_name not in old:
            attr("+", _GREEN, attr_name, _value_text(new[attr_name], width, glyphs))
        elif attr_name not in new:
            attr("-", _RED, attr_name, _value_text(old[attr_name], width, glyphs))
        elif old[attr_name] != new[attr_name] or _type_changed(old[attr_name], new[attr_name]):
            before = _value_text(old[attr_name], width // 2, glyphs)
            after = _value_text(new[attr_name], width // 2, glyphs)
            attr("~", _YELLOW, attr_name, f"{before} {glyphs.arrow} {after}")
        else:
            unchanged += 1
    return unchanged


def _type_changed(before: Any, after: Any) -> bool:
    # 1 == True and 1 == Decimal("1") in Python; a change of type is still a change.
    return type(before) is not type(after)


# -- stream descriptions ---------------------------------------------------------------


def _shard_state(graph: ShardGraph, shard: Shard) -> str:
    if shard.is_open and graph.is_closed(shard.shard_id):
        return "closed (has children)"
    return "closed" if graph.is_closed(shard.shard_id) else "open"


def _sequence_range(shard: Shard, glyphs: Glyphs) -> str:
    start = shard.starting_sequence_number or "?"
    end = shard.ending_sequence_number or ""
    return f"seq {start}{glyphs.range}{end}"


def _shard_line(shard: Shard, graph: ShardGraph, listed: set[str], glyphs: Glyphs) -> str:
    parts = [shard.shard_id, _shard_state(graph, shard), _sequence_range(shard, glyphs)]
    hint = shard.created_at_hint
    if hint is not None:
        parts.append(f"created ~{format_time(hint)}")
    if shard.parent_shard_id is not None and shard.parent_shard_id not in listed:
        parts.append(f"parent {shard.parent_shard_id} (trimmed)")
    return "  ".join(parts)


def _sorted_ids(ids: Iterable[str]) -> list[str]:
    return sorted(ids, key=shard_order_key)


def description_to_text(description: StreamDescription, *, glyphs: Glyphs = UNICODE) -> str:
    """The stream's fields, then its shard lineage as a tree; ends in a newline.

    Roots (shards without a parent, or whose parent was trimmed: shown as ``parent <id>
    (trimmed)``) start at the left margin; each child is indented under its parent. Every
    shard line has the shard id, open/closed, the sequence number range and the creation
    time encoded in the shard id (a hint). A shard listed as open that already has children
    is shown as ``closed (has children)``.
    """
    shards = {shard.shard_id: shard for shard in description.shards}
    graph = ShardGraph.from_shards(description.shards)
    open_count = sum(1 for shard_id in shards if not graph.is_closed(shard_id))
    fields = [
        ("stream", description.stream_arn),
        ("table", description.table_name),
        ("status", description.stream_status),
        ("view type", description.stream_view_type),
        ("label", description.stream_label),
    ]
    if description.creation_time is not None:
        fields.append(("created", format_time(description.creation_time)))
    if description.key_schema:
        fields.append(("key", ", ".join(f"{n} ({t})" for n, t in description.key_schema)))
    fields.append(
        ("shards", f"{len(shards)} ({open_count} open, {len(shards) - open_count} closed)")
    )
    label_width = max(len(label) for label, _ in fields)
    lines = [f"{label:<{label_width}}  {value}" for label, value in fields]
    if shards:
        lines.append("")
    listed = set(shards)
    seen: set[str] = set()

    def walk(shard_id: str, prefix: str, connector: str) -> None:
        if shard_id in seen or shard_id not in shards:
            return
        seen.add(shard_id)
        lines.append(prefix + connector + _shard_line(shards[shard_id], graph, listed, glyphs))
        if connector == glyphs.branch:
            child_prefix = prefix + glyphs.pipe
        elif connector == glyphs.last:
            child_prefix = prefix + glyphs.space
        else:
            child_prefix = prefix
        children = [c for c in _sorted_ids(graph.children(shard_id)) if c in shards]
        for index, child in enumerate(children):
            last = index == len(children) - 1
            walk(child, child_prefix, glyphs.last if last else glyphs.branch)

    for root in _sorted_ids(graph.roots()):
        walk(root, "", "")
    # Defensive: anything the walk could not reach (a malformed listing) is still shown.
    for shard_id in _sorted_ids(set(shards) - seen):
        walk(shard_id, "", "")
    return "\n".join(lines) + "\n"


def description_to_json(description: StreamDescription) -> bytes:
    """A JSON document (indented, ending in a newline) describing the stream and its shards.

    Keys: ``streamArn, tableName, streamStatus, streamViewType, streamLabel, creationTime``
    (ISO 8601 or null), ``keySchema`` (list of ``{attributeName, keyType}``), ``shardCount,
    openShardCount, closedShardCount`` and ``shards``: parents before children, each with
    ``shardId, parentShardId, parentTrimmed, startingSequenceNumber, endingSequenceNumber,
    open, createdHint, children`` (ids of listed child shards). ``open`` is false for a
    shard listed as open that already has children (it is effectively closed).
    """
    graph = ShardGraph.from_shards(description.shards)
    shards = {shard.shard_id: shard for shard in description.shards}
    order = [s for s in graph.topological_order() if s in shards]
    order.extend(s for s in shards if s not in set(order))
    shard_objects = []
    for shard_id in order:
        shard = shards[shard_id]
        hint = shard.created_at_hint
        shard_objects.append(
            {
                "shardId": shard_id,
                "parentShardId": shard.parent_shard_id,
                "parentTrimmed": shard.parent_shard_id is not None
                and shard.parent_shard_id not in shards,
                "startingSequenceNumber": shard.starting_sequence_number,
                "endingSequenceNumber": shard.ending_sequence_number,
                "open": not graph.is_closed(shard_id),
                "createdHint": format_time(hint) if hint is not None else None,
                "children": [c for c in _sorted_ids(graph.children(shard_id)) if c in shards],
            }
        )
    open_count = sum(1 for obj in shard_objects if obj["open"])
    document = {
        "streamArn": description.stream_arn,
        "tableName": description.table_name,
        "streamStatus": description.stream_status,
        "streamViewType": description.stream_view_type,
        "streamLabel": description.stream_label,
        "creationTime": (
            format_time(description.creation_time)
            if description.creation_time is not None
            else None
        ),
        "keySchema": [
            {"attributeName": name, "keyType": key_type}
            for name, key_type in description.key_schema
        ],
        "shardCount": len(shard_objects),
        "openShardCount": open_count,
        "closedShardCount": len(shard_objects) - open_count,
        "shards": shard_objects,
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


# -- events ------------------------------------------------------------------------------


def _shard_start_text(start: ShardStart) -> str:
    if start.not_before is not None:
        # A time filter still to pass: say so, or a resume would look like a full re-read.
        where = _shard_start_text(start.without_filter())
        return f"{where}, records from {_moment(start.not_before)}"
    if start.iterator_type == "TRIM_HORIZON":
        return "at trim horizon"
    if start.iterator_type == "LATEST":
        return "at latest"
    where = "at" if start.iterator_type == "AT_SEQUENCE_NUMBER" else "after"
    return f"{where} {start.sequence_number}"


def _start_text(start: StartPosition) -> str:
    """Where a read starts that no checkpoint names: ``at trim horizon``, ``after 42``..."""
    if isinstance(start, AtSequence):
        return f"at {start.sequence_number}"
    if isinstance(start, AfterSequence):
        return f"after {start.sequence_number}"
    if isinstance(start, Checkpoint):
        return "from a checkpoint"
    if isinstance(start, AtTime):
        return f"at records from {_moment(start.moment)}"
    return "at latest" if isinstance(start, Latest) else "at trim horizon"


def _moment(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def _on_shard(shard_id: str | None) -> str:
    return f" on {shard_id}" if shard_id is not None else ""


def _error_text(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def event_to_text(event: Event) -> str:
    """One line (no newline, no control characters from messages) describing ``event``.

    For example ``shard started: shardId-... at trim horizon``, ``throttled: GetRecords on
    shardId-... (attempt 2), retrying in 0.40 s``, ``batch handled: 3 records of shardId-...
    in 0.012 s``. Durations are seconds.
    """
    consumer_text = _consumer_event_text(event) or _group_event_text(event)
    if consumer_text is not None:
        return consumer_text
    match event:
        case ShardStarted(shard_id, start):
            return f"shard started: {shard_id} {_shard_start_text(start)}"
        case ShardFinished(shard_id):
            return f"shard finished: {shard_id} (read to its end)"
        case ShardsDiscovered(shard_ids):
            return f"shards discovered: {', '.join(_sorted_ids(shard_ids))}"
        case Throttled(operation, shard_id, attempt, delay):
            return (
                f"throttled: {operation}{_on_shard(shard_id)} (attempt {attempt}), "
                f"retrying in {delay:.2f} s"
            )
        case RequestRetried(operation, shard_id, code, attempt, delay):
            return (
                f"request failed: {operation}{_on_shard(shard_id)} ({code}, attempt {attempt}), "
                f"retrying in {delay:.2f} s"
            )
        case IteratorRefreshed(shard_id, after):
            where = f"after {after}" if after is not None else "at its start position"
            return f"iterator expired: {shard_id}, continuing {where}"
        case RecordsTrimmed(shard_id, after, shard_gone):
            lost = f"after {after}" if after is not None else "from its start position"
            if shard_gone:
                return f"records trimmed: {shard_id} is gone (records {lost} were lost)"
            return (
                f"records trimmed: {shard_id}, records {lost} were lost; "
                "continuing at the oldest remaining record"
            )
        case RecordsSkipped(shard_id, records, not_before, after):
            return (
                f"records skipped: {_records(records)} of {shard_id} older than "
                f"{_moment(not_before)} (through {after})"
            )
        case StreamDisabled(stream_arn):
            return f"stream disabled: {stream_arn}; reading what remains, then stopping"
        case ReaderError(error, shard_id, retrying):
            state = "retrying" if retrying else "giving up"
            return f"error{_on_shard(shard_id)} ({state}): {_error_text(error)}"
    return repr(event)  # pragma: no cover - an event type added later


def _consumer_event_text(event: Event) -> str | None:
    """:func:`event_to_text` of a consumer's event; None for a reader's."""
    match event:
        case ConsumerStarted(stream_arn, name, start):
            where = "from its checkpoint" if isinstance(start, Checkpoint) else _start_text(start)
            return f"consumer started: {name!r} on {stream_arn}, {where}"
        case BatchHandled(shard_id, records, duration):
            return f"batch handled: {_records(records)} of {shard_id} in {duration:.3f} s"
        case BatchFailed(shard_id, records, attempt, error, will_retry, cause):
            then = "retrying" if will_retry else "not retried"
            if cause == "reported":
                return (
                    f"records not done: {_records(records)} of {shard_id} (the handler said so, "
                    f"attempt {attempt}); {then}"
                )
            return (
                f"batch failed: {_records(records)} of {shard_id} (attempt {attempt}): "
                f"{' '.join(error.split())}; {then}"
            )
        case RecordsGivenUp(shard_id, count, condition):
            return f"records given up: {_records(count)} of {shard_id} ({condition})"
        case CheckpointSaved(stream_arn, name, None):
            return f"checkpoint saved: {name!r}, stream {stream_arn}"
        case CheckpointSaved(_, name, shard_id, position):
            return f"checkpoint saved: {name!r}, {shard_id} at {position}"
    return None


def _group_event_text(event: Event) -> str | None:
    """:func:`event_to_text` of a worker group's event; None for another event."""
    match event:
        case WorkerJoined(group, worker_id):
            return f"joined group {group!r} as worker {worker_id}"
        case GroupChanged(group, workers):
            return f"group {group!r}: {len(workers)} live workers: {', '.join(workers)}"
        case LeaseTaken(_, shard_id, _, previous, expired):
            if previous is None:
                return f"lease taken: {shard_id} (free)"
            how = "expired" if expired else "released"
            return f"lease taken: {shard_id} ({how}, was {previous}'s)"
        case LeaseReleased(_, shard_id, _, reason):
            why = {"balance": "to balance the group", "shard_end": "shard ended"}
            return f"lease released: {shard_id} ({why.get(reason, reason)})"
        case LeaseLost(_, shard_id, _, reason):
            return f"lease lost: {shard_id}: {' '.join(reason.split())}"
        case LeasesCreated(_, shard_ids):
            return f"leases created: {', '.join(_sorted_ids(shard_ids))}"
        case ForeignWorkers(group, owners):
            return f"group {group!r}: leases renewed by workers outside it: {', '.join(owners)}"
        case StreamReplaced(_, old, new):
            return f"stream replaced: {old} was read to its end, going on with {new}"
        case GroupError(_, operation, error):
            return f"group call failed: {operation}: {' '.join(error.split())}; trying again"
    return None


def _records(count: int) -> str:
    return f"{count} record" if count == 1 else f"{count} records"


# -- stored checkpoints ------------------------------------------------------------------


def _shard_positions(checkpoint: Checkpoint) -> list[tuple[str, str]]:
    """(shard id, what the checkpoint says of it) for every shard it names, in shard order."""
    states: dict[str, str] = {}
    for shard_id, start in checkpoint.pending.items():
        states[shard_id] = f"pending, starts {_shard_start_text(start)}"
    for shard_id in checkpoint.finished:
        states[shard_id] = "finished"
    for shard_id, sequence_number in checkpoint.positions.items():
        states[shard_id] = f"after {sequence_number}"
    return [(shard_id, states[shard_id]) for shard_id in _sorted_ids(states)]


def checkpoints_to_text(
    stored: Sequence[StoredCheckpoint], *, glyphs: Glyphs = UNICODE, max_shards: int = 20
) -> str:
    """One block per stored checkpoint, separated by blank lines; ends in a newline.

    Each block: ``name``, ``stream``, ``version``, ``updated`` (ISO 8601 UTC), ``shards``
    (how many are in progress, finished and pending), then one indented line per shard the
    checkpoint names: ``after SEQ`` (resume just after that record), ``finished`` (read to
    its end) or ``pending, starts at ...`` (nothing read yet). Beyond ``max_shards`` shards
    the rest is counted, not listed. An empty ``stored`` gives an empty string.
    """
    blocks = []
    for entry in stored:
        checkpoint = entry.checkpoint
        counts = (
            f"{len(checkpoint.positions)} in progress, {len(checkpoint.finished)} finished, "
            f"{len(checkpoint.pending)} pending"
        )
        fields = [
            ("name", entry.name),
            ("stream", entry.stream_arn),
            ("version", str(entry.version)),
            ("updated", format_epoch(entry.updated_at)),
            ("shards", counts),
        ]
        lines = [f"{label:<8} {value}" for label, value in fields]
        shards = _shard_positions(checkpoint)
        width = max((len(shard_id) for shard_id, _ in shards[:max_shards]), default=0)
        for shard_id, state in shards[:max_shards]:
            lines.append(f"  {shard_id:<{width}}  {state}")
        if len(shards) > max_shards:
            lines.append(
                f"  {glyphs.ellipsis} and {len(shards) - max_shards} more shards "
                "(--json lists every one)"
            )
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def checkpoints_to_json(stored: Sequence[StoredCheckpoint]) -> bytes:
    """A JSON array (indented, ending in a newline) of the stored checkpoints.

    Each element: ``name, streamArn, version, updatedAt`` (ISO 8601 UTC) and ``checkpoint``,
    the stored document itself (``version, stream_arn, positions, finished, pending``: see
    :meth:`~ddbstreams.Checkpoint.to_json`).
    """
    document = [
        {
            "name": entry.name,
            "streamArn": entry.stream_arn,
            "version": entry.version,
            "updatedAt": format_epoch(entry.updated_at),
            "checkpoint": entry.checkpoint.to_json(),
        }
        for entry in stored
    ]
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


# -- leases (ddbstreams leases show) ------------------------------------------------------


def lease_state(lease: Lease, leases: Mapping[str, Lease]) -> str:
    """``finished`` (checkpoint SHARD_END), ``owned``, ``waiting-for-parent`` (unowned, and a
    parent's lease in ``leases`` is not finished: no worker takes it yet) or ``free``."""
    if lease.finished:
        return "finished"
    if lease.owner is not None:
        return "owned"
    for parent in lease.parent_shard_ids:
        parent_lease = leases.get(parent)
        if parent_lease is not None and not parent_lease.finished:
            return "waiting-for-parent"
    return "free"


def _owner_worker_text(lease: Lease, workers: Mapping[str, WorkerRecord] | None) -> str:
    if lease.owner is None:
        return "-"
    if workers is None:
        return "unknown (no workers table)"
    worker = workers.get(lease.owner)
    if worker is None:
        return "unknown (not in the workers table)"
    count = "1 lease" if worker.lease_count == 1 else f"{worker.lease_count} leases"
    return f"{worker.state.value}, heartbeat {worker.heartbeat}, {count}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    """Left-aligned columns, two spaces apart, no trailing spaces."""
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in (header, *rows)
    ]


def _sorted_leases(leases: Iterable[Lease]) -> list[Lease]:
    return sorted(leases, key=lambda lease: shard_order_key(lease.key))


def _lease_lines(leases: Sequence[Lease], workers: Mapping[str, WorkerRecord] | None) -> list[str]:
    by_key = {lease.key: lease for lease in leases}
    states = {lease.key: lease_state(lease, by_key) for lease in leases}
    order = ("owned", "free", "waiting-for-parent", "finished")
    counts = ", ".join(
        f"{sum(1 for s in states.values() if s == state)} {state}" for state in order
    )
    lines = [f"{_count(len(leases), 'lease')} ({counts})"]
    if leases:
        header = ("SHARD", "OWNER", "CHECKPOINT", "PARENT", "STATE", "OWNER WORKER")
        rows = [
            (
                lease.key,
                lease.owner or "-",
                lease.checkpoint,
                ", ".join(_sorted_ids(lease.parent_shard_ids)) or "-",
                states[lease.key],
                _owner_worker_text(lease, workers),
            )
            for lease in _sorted_leases(leases)
        ]
        lines.extend(_table(header, rows))
    return lines


def _worker_lines(workers: Sequence[WorkerRecord]) -> list[str]:
    header = ("WORKER", "STATE", "HOST", "PID", "STARTED", "LEASES", "HEARTBEAT")
    rows = [
        (
            w.worker_id,
            w.state.value,
            w.host,
            str(w.pid),
            w.started_at,
            str(w.lease_count),
            str(w.heartbeat),
        )
        for w in workers
    ]
    return _table(header, rows)


def leases_to_text(
    table: str,
    leases: Sequence[Lease],
    workers_table: str,
    workers: Sequence[WorkerRecord] | None,
) -> str:
    """The leases of a group's lease table and the workers of its workers table, as two
    aligned tables (``workers`` None: the workers table does not exist); ends in a newline.

    Leases, in shard order: ``SHARD, OWNER`` (``-`` when unassigned), ``CHECKPOINT``,
    ``PARENT`` (``-`` when none), ``STATE`` (:func:`lease_state`) and ``OWNER WORKER``: what
    the workers table says of the owner (its state, heartbeat counter and lease count, or
    that it is unknown there: a stopped or crashed worker, or a Java KCL worker). Workers:
    ``WORKER, STATE, HOST, PID, STARTED, LEASES, HEARTBEAT``.
    """
    known = None if workers is None else {worker.worker_id: worker for worker in workers}
    lease_lines = _lease_lines(leases, known)
    lines = [f"lease table {table}: {lease_lines[0]}", *lease_lines[1:], ""]
    if workers is None:
        lines.append(f"workers table {workers_table}: not found (no ddbstreams worker ran here)")
    else:
        lines.append(f"workers table {workers_table}: {_count(len(workers), 'worker')}")
        if workers:
            lines.extend(_worker_lines(workers))
    return "\n".join(lines) + "\n"


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def _worker_object(worker: WorkerRecord) -> dict[str, Any]:
    return {
        "workerId": worker.worker_id,
        "state": worker.state.value,
        "host": worker.host,
        "pid": worker.pid,
        "startedAt": worker.started_at,
        "leaseCount": worker.lease_count,
        "heartbeat": worker.heartbeat,
        "changes": worker.changes,
        "streamArn": worker.stream_arn,
    }


def _lease_object(
    lease: Lease, state: str, workers: Mapping[str, WorkerRecord] | None
) -> dict[str, Any]:
    owner_worker: dict[str, Any] | None = None
    if lease.owner is not None:
        worker = None if workers is None else workers.get(lease.owner)
        owner_worker = {"known": worker is not None}
        if worker is not None:
            owner_worker.update(
                state=worker.state.value,
                heartbeat=worker.heartbeat,
                leaseCount=worker.lease_count,
            )
    return {
        "shardId": lease.key,
        "state": state,
        "owner": lease.owner,
        "ownerWorker": owner_worker,
        "counter": lease.counter,
        "checkpoint": lease.checkpoint,
        "parentShardIds": _sorted_ids(lease.parent_shard_ids),
        "childShardIds": _sorted_ids(lease.child_shard_ids),
        "ownerSwitchesSinceCheckpoint": lease.owner_switches,
        "streamArn": lease.stream_arn,
        "checkpointOwner": lease.checkpoint_owner,
        "pendingCheckpoint": lease.pending_checkpoint,
    }


def leases_to_json(
    table: str,
    leases: Sequence[Lease],
    workers_table: str,
    workers: Sequence[WorkerRecord] | None,
) -> bytes:
    """One JSON document (indented, ending in a newline): ``leaseTable``, ``workersTable``,
    ``leases`` (in shard order: ``shardId, state, owner, ownerWorker`` (null when
    unassigned, else ``known`` and, when known, the owner's ``state, heartbeat,
    leaseCount``), ``counter, checkpoint, parentShardIds, childShardIds,
    ownerSwitchesSinceCheckpoint, streamArn, checkpointOwner, pendingCheckpoint``) and
    ``workers`` (``workerId, state, host, pid, startedAt, leaseCount, heartbeat, changes,
    streamArn``; null when the workers table does not exist)."""
    by_key = {lease.key: lease for lease in leases}
    known = None if workers is None else {worker.worker_id: worker for worker in workers}
    document = {
        "leaseTable": table,
        "workersTable": workers_table,
        "leases": [
            _lease_object(lease, lease_state(lease, by_key), known)
            for lease in _sorted_leases(leases)
        ],
        "workers": None if workers is None else [_worker_object(w) for w in workers],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


# -- consumer lag (ddbstreams lag) --------------------------------------------------------


def format_duration(seconds: float) -> str:
    """A short human duration, rounded down to its last unit: ``0s``, ``45s``, ``12m 05s``,
    ``3h 07m``, ``2d 04h``. Negative durations (clocks apart) are shown as ``0s``."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    if total < 3600:
        return f"{total // 60}m {total % 60:02d}s"
    if total < 86400:
        return f"{total // 3600}h {total % 3600 // 60:02d}m"
    return f"{total // 86400}d {total % 86400 // 3600:02d}h"


def _behind_text(behind: float | None, lower_bound: bool) -> str:
    if behind is None:
        return "-"
    return (">= " if lower_bound else "") + format_duration(behind)


def _lag_summary(report: LagReport) -> list[str]:
    behind, lower = report.behind
    if not report.read:
        behind_text = "not measured (--no-read: see each checkpoint's AGE)"
        pending_text = "not counted (--no-read)"
    else:
        behind_text = _behind_text(behind, lower) + " (the most behind shard)"
        pending_text = _count(report.pending or 0, "record") + " not processed yet"
    states = Counter(shard.state for shard in report.shards)
    counts = ", ".join(f"{states[state]} {state}" for state in LAG_STATES if states[state])
    fields = [
        ("stream", report.stream_arn),
        ("source", report.source),
        ("at", format_epoch(report.now)),
        ("behind", behind_text),
        ("pending", pending_text),
        ("shards", f"{len(report.shards)}" + (f" ({counts})" if counts else "")),
    ]
    lost = [shard.shard_id for shard in report.shards if shard.records_lost]
    if lost:
        fields.append(("lost", f"records trimmed before being processed in {', '.join(lost)}"))
    return [f"{label:<8} {value}" for label, value in fields]


def lag_to_text(report: LagReport) -> str:
    """A lag report: a summary (stream, source, time, how far behind the most behind shard
    is, records pending, shard states), then one line per shard; ends in a newline.

    Columns: ``SHARD, STATE`` (see :data:`ddbstreams.cli._lag.STATES`), ``OWNER`` (groups
    only), ``CHECKPOINT`` (sequence number of the last record processed, ``-`` when none),
    ``CHECKPOINTED AT`` (its approximate creation time), ``AGE`` (now minus that),
    ``NEWEST`` (creation time of the shard's newest record, when read), ``PENDING``
    (records after the checkpoint) and ``BEHIND`` (newest minus checkpointed; ``>=`` marks
    a lower bound). ``-`` where a value is not known or not measured.
    """
    lines = _lag_summary(report)
    header = ["SHARD", "STATE", "OWNER", "CHECKPOINT", "CHECKPOINTED AT", "AGE", "NEWEST"]
    header += ["PENDING", "BEHIND"]
    rows = []
    for shard in report.shards:
        checkpointed = shard.checkpoint_time
        rows.append(
            [
                shard.shard_id,
                shard.state,
                shard.owner or "-",
                shard.checkpoint or "-",
                format_epoch(checkpointed) if checkpointed is not None else "-",
                format_duration(report.now - checkpointed) if checkpointed is not None else "-",
                format_epoch(shard.newest_time) if shard.newest_time is not None else "-",
                str(shard.pending) if shard.pending is not None else "-",
                _behind_text(shard.behind, shard.lower_bound),
            ]
        )
    if not report.group:
        header.pop(2)
        for row in rows:
            row.pop(2)
    if rows:
        lines.append("")
        lines.extend(_table(header, rows))
    return "\n".join(lines) + "\n"


def _lag_shard_object(shard: ShardLag, now: float) -> dict[str, Any]:
    checkpointed = shard.checkpoint_time
    newest = shard.newest_time
    return {
        "shardId": shard.shard_id,
        "parentShardId": shard.parent_shard_id,
        "state": shard.state,
        "owner": shard.owner,
        "checkpoint": shard.checkpoint,
        "checkpointTime": format_epoch(checkpointed) if checkpointed is not None else None,
        "checkpointAgeSeconds": None if checkpointed is None else max(0.0, now - checkpointed),
        "newestRecordTime": format_epoch(newest) if newest is not None else None,
        "pendingRecords": shard.pending,
        "behindSeconds": shard.behind,
        "behindIsLowerBound": shard.lower_bound,
        "recordsLost": shard.records_lost,
    }


def lag_to_json(report: LagReport) -> bytes:
    """One JSON document (indented, ending in a newline): ``streamArn``, ``source`` (its
    description) and ``sourceKind`` (``file``, ``table`` or ``group``), ``at`` (ISO 8601),
    ``read`` (false with ``--no-read``), ``behindSeconds`` and ``behindIsLowerBound`` (of
    the most behind shard; null when not measured), ``pendingRecords`` (null when not
    read) and ``shards``: per shard in shard order ``shardId, parentShardId, state, owner,
    checkpoint, checkpointTime, checkpointAgeSeconds, newestRecordTime, pendingRecords,
    behindSeconds, behindIsLowerBound, recordsLost`` (see :func:`lag_to_text`)."""
    behind, lower = report.behind
    document = {
        "streamArn": report.stream_arn,
        "source": report.source,
        "sourceKind": report.source_kind,
        "at": format_epoch(report.now),
        "read": report.read,
        "behindSeconds": behind,
        "behindIsLowerBound": lower,
        "pendingRecords": report.pending,
        "shards": [_lag_shard_object(shard, report.now) for shard in report.shards],
    }
    return orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n"


# -- progress of a single-pass tail (stderr on a terminal) --------------------------------


def progress_line(
    records: int,
    elapsed: float,
    shards_done: int,
    shards_total: int,
    iterator_age: float | None,
) -> str:
    """One status line for a single pass that writes to a file or a pipe, without a newline:
    ``12,345 records  2,469/s  shards 3/7 done  iterator age 4m 10s``.

    ``elapsed`` (seconds since the pass started) gives the rate (``-`` before any time has
    passed). ``iterator_age`` is now minus the creation time of the last record written,
    Lambda's IteratorAge (``-`` before the first record).
    """
    rate = f"{records / elapsed:,.0f}/s" if elapsed > 0 else "-/s"
    age = format_duration(iterator_age) if iterator_age is not None else "-"
    return (
        f"{records:,} record{'' if records == 1 else 's'}  {rate}  "
        f"shards {shards_done}/{shards_total} done  iterator age {age}"
    )
