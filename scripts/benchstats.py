"""What the benchmark scripts share: percentiles as Mastra's bench computes them, peak RSS, the disk's commit floor."""

from __future__ import annotations

import math
import sqlite3
import statistics
import time
from contextlib import closing
from pathlib import Path


def p95(values: list[float]) -> float:
    """Nearest-rank, as Mastra's bench computes it."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]


def p50_p95(values: list[float]) -> dict[str, float]:
    return {"p50": statistics.median(values), "p95": p95(values)}


def peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM), in MB; NaN where /proc is missing."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def commit_times(path: Path, synchronous: str = "FULL", count: int = 300) -> list[float]:
    """Milliseconds of bare one-row commits on a fresh WAL file: what the disk costs each state change."""
    times = []
    with closing(sqlite3.connect(path, isolation_level=None)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)")
        for _ in range(count):
            start = time.perf_counter()
            conn.execute("BEGIN IMMEDIATE")
            conn.execute("INSERT INTO t (v) VALUES ('x')")
            conn.execute("COMMIT")
            times.append((time.perf_counter() - start) * 1000)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    return times
