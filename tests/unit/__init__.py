"""Unit tests: pure code, fakes and files on disk; no engine, no simulator."""
