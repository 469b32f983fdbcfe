"""Layer 7, the blocking facade: the async core driven from a background event loop."""
