"""Layer 1, wire & model: immutable record and shard types, positions, ARNs, and decoding
of GetRecords bodies and attribute values (pure, no I/O)."""
