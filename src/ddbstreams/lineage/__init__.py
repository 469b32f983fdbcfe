"""Layer 3, lineage: the pure shard graph, read plans and the lineage state machine."""
