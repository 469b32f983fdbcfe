"""System tests: crash (SIGKILL) and soak tests, hours of virtual stream life at scale."""
