"""Helpers the benchmarks share: forked scenarios, CPU time, percentiles, error reports."""

from __future__ import annotations

import json
import os
import resource
import statistics
import sys
import traceback
from collections.abc import Callable
from typing import Any


def in_child(function: Callable[..., dict[str, Any]], *args: Any) -> dict[str, Any]:
    """Run ``function(*args)`` in a forked process and return its (JSON) result.

    Each scenario gets a process of its own, so that its peak RSS (``ru_maxrss``) and
    memory growth are its own and scenarios cannot disturb each other.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never return into the caller's code
        os.close(read_end)
        status = 0
        try:
            outcome = function(*args)
        except BaseException:
            outcome = {"error": traceback.format_exc()}
            status = 1
        with os.fdopen(write_end, "wb") as pipe:
            pipe.write(json.dumps(outcome).encode())
        os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(pid, 0)
    if not data:
        raise RuntimeError(f"scenario process ended without a result (wait status {status})")
    result: dict[str, Any] = json.loads(data)
    if "error" in result:
        raise RuntimeError(f"scenario failed:\n{result['error']}")
    return result


def cpu_seconds() -> float:
    """User + system CPU seconds of this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def pct(values: list[float], q: int) -> float:
    """The ``q``-th percentile (inclusive method); the value itself for one value."""
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def report(problems: list[str]) -> int:
    """Print each problem on stderr; the exit status of a failed check (1)."""
    for problem in problems:
        print(f"ERROR: {problem}", file=sys.stderr)
    return 1
