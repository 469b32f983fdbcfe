"""Layer 6, consumers: Lambda-grade batch processing over a reader, and record filters."""
