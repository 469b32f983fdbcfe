"""Layer 6, coordination: worker groups sharing a stream through leases.

The lease table is the Java KCL's (:mod:`ddbstreams.coordination._lease` for its items,
:mod:`ddbstreams.coordination._table` for the reads and conditional writes).
"""

from ddbstreams.coordination._lease import (
    LATEST_CHECKPOINT,
    SHARD_END_CHECKPOINT,
    TRIM_HORIZON_CHECKPOINT,
    Lease,
    lease_from_item,
    new_lease_item,
)
from ddbstreams.coordination._table import LeaseTable, WorkerRecord, WorkerState

__all__ = [
    "LATEST_CHECKPOINT",
    "SHARD_END_CHECKPOINT",
    "TRIM_HORIZON_CHECKPOINT",
    "Lease",
    "LeaseTable",
    "WorkerRecord",
    "WorkerState",
    "lease_from_item",
    "new_lease_item",
]
