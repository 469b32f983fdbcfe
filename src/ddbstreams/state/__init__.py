"""Layer 6, state tables: where consumers keep checkpoints (SQLite, DynamoDB, memory)."""
