"""The stream simulator: an in-memory DynamoDB Streams for tests, with the stream behaviours
DynamoDB Local never shows.

:class:`StreamSimulator` keeps a source table and its stream in memory. Writes
(:meth:`~StreamSimulator.put_item`, :meth:`~StreamSimulator.delete_item`,
:meth:`~StreamSimulator.ttl_delete`) append stream records to the shard that owns the item's
partition key; topology changes (:meth:`~StreamSimulator.roll_over`,
:meth:`~StreamSimulator.split`, :meth:`~StreamSimulator.trim`) reshape the shard graph the
way the service does over hours, and :meth:`~StreamSimulator.live` does all of that
continuously while a reader runs. Readers reach it through
:meth:`~StreamSimulator.transport` (the library's :class:`~ddbstreams.transport._seam.Transport`
seam, no HTTP) or over loopback HTTP with :func:`ddbstreams.testing.serve_simulator` so
botocore runs end to end.

What it reproduces from the real service, on purpose:

* several root shards (``partitions``), each owning a range of the partition-key hash space;
  every change of one item lands in one lineage (a shard and its descendants), in order;
* roll-overs (one child, same range), splits (two children, halved ranges) and trimmed
  parents (a child whose ``ParentShardId`` is no longer listed);
* sequence numbers that are strictly increasing integers with gaps, written as 21+ digit
  strings that cross a digit-length boundary early (``"999...9xx"`` then ``"1000...0yy"``),
  so comparing them as text is caught;
* GetRecords pages capped at ``Limit``/1000 records and ~1 MB; empty pages while records
  follow (``empty_page_rate``); closed shards that end with a page without
  ``NextShardIterator`` (possibly after one or two empty pages);
* DescribeStream pages of at most ``describe_page_limit`` shards in a shuffled (but stable)
  order, with ``LastEvaluatedShardId`` also set on a full last page (the documented
  "not empty does not mean more data" case), and the ``CHILD_SHARDS`` shard filter;
  optionally the service's eventual consistency: children listed late
  (``children_visibility_delay``) and closed parents listed as open
  (``stale_parent_duration``);
* iterators that expire after 15 minutes of the simulator's clock
  (``ExpiredIteratorException``); 24-hour retention (``retention``): records older than that
  are trimmed (``TrimmedDataAccessException``) and old closed shards vanish from listings;
* throttling, 5xx errors, connection resets and timeouts injected at chosen rates
  (:class:`Faults`), or one by one (:meth:`~StreamSimulator.fail_next`);
* disabling the stream, deleting the table, and the stream disappearing altogether.

The simulator is deterministic for a given ``seed`` and sequence of calls. Writes are plain
synchronous methods, safe to call from another thread while readers (or the HTTP server)
run: state is guarded by one lock.

Layout, one concern per module:

* :mod:`._simulator` -- :class:`StreamSimulator`, the facade: options, the lock, writes,
  topology changes, inspection, and :meth:`~StreamSimulator.call` /
  :meth:`~StreamSimulator.get_records_body` answering calls;
* :mod:`._table` -- the source table: items, key schema, key encoding and hashing;
* :mod:`._writes` -- puts and deletes, and the stream records they produce;
* :mod:`._stream` -- the stream's data model: shards, records, sequence numbers, the shard
  graph (roll-overs, splits, trims) and retention;
* :mod:`._records` -- :class:`SimulatedChange` and the wire record of a change;
* :mod:`._service` -- the API's behaviour: DescribeStream, GetShardIterator, GetRecords,
  ListStreams and DescribeTable answers, pagination, listing delays, iterators, errors;
* :mod:`._faults` -- :class:`Faults` and the failures injected before a call;
* :mod:`._clock` -- :class:`SimulatedClock`, virtual time;
* :mod:`._live` -- :class:`LiveWriter`, live mode;
* :mod:`._transport` -- :class:`SimulatorTransport`, the in-memory transport (the HTTP
  server is :mod:`ddbstreams.testing._server`).
"""

from __future__ import annotations

from ddbstreams.testing.simulator._clock import SimulatedClock
from ddbstreams.testing.simulator._faults import OPERATIONS, Faults
from ddbstreams.testing.simulator._live import LiveWriter
from ddbstreams.testing.simulator._records import SimulatedChange
from ddbstreams.testing.simulator._simulator import StreamSimulator
from ddbstreams.testing.simulator._transport import SimulatorTransport

__all__ = [
    "OPERATIONS",
    "Faults",
    "LiveWriter",
    "SimulatedChange",
    "SimulatedClock",
    "SimulatorTransport",
    "StreamSimulator",
]
