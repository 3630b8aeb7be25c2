"""Benchmark the SQLite background task store alone (no manager, no tools), beside a bare SQLite commit.

    uv run python scripts/bench_task_store.py [--tasks 2000] [--rounds 3] [--dir DIR]

Prints, on a fresh file in DIR (default: a temporary directory, which should be on the disk the
database will live on):
- a bare `BEGIN IMMEDIATE; INSERT; COMMIT` with WAL and synchronous=FULL (the fsync floor of this disk);
- `admit` of one task that starts at once (dispatch to running), median and p95, one at a time;
- throughput of no-op tasks: `--tasks` admits issued at once with asyncio.gather, each claimed task finished
  and its slot refilled with `claim`, as a manager does (global limit 10, per agent 10, two agents).
Targets (issue 11): >= 1,000 tasks/s; dispatch to running median <= 0.48 ms (Mastra's, measured here).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from benchstats import commit_times, p95

from lodestar.storage import BackgroundTask, SQLiteTaskStore
from lodestar.storage.tasks import Claimant, Limits

CLAIMANT = Claimant("bench", frozenset({"a1/noop", "a2/noop"}), Limits(10, 10), lease_ms=30_000)


def task(number: int) -> BackgroundTask:
    agent = f"a{number % 2 + 1}"
    return BackgroundTask(id=f"t{number}", tool_name="noop", tool_call_id=f"c{number}", agent_id=agent, run_id="r")


def med_p95(values: list[float]) -> str:
    return f"median {statistics.median(values):.3f} ms, p95 {p95(values):.3f} ms"


async def admit_latency(store: SQLiteTaskStore, first: int, count: int = 500) -> list[float]:
    times = []
    for number in range(first, first + count):
        start = time.perf_counter()
        admission = await store.admit(task(number), CLAIMANT, require_slot=False)
        times.append((time.perf_counter() - start) * 1000)
        [running] = admission.claimed
        await store.finish(running.id, CLAIMANT.owner, running.attempt, "completed")
    return times


async def throughput(store: SQLiteTaskStore, first: int, count: int) -> float:
    finished = 0

    async def run(claimed: list[BackgroundTask]) -> None:
        nonlocal finished
        while claimed:
            for running in claimed:
                await store.finish(running.id, CLAIMANT.owner, running.attempt, "completed")
                finished += 1
            claimed = await store.claim(CLAIMANT, max_tasks=len(claimed))

    async def dispatch(number: int) -> None:
        await run((await store.admit(task(number), CLAIMANT, require_slot=False)).claimed)

    start = time.perf_counter()
    await asyncio.gather(*(dispatch(number) for number in range(first, first + count)))
    await run(await store.claim(CLAIMANT))
    elapsed = time.perf_counter() - start
    assert finished == count, f"{finished} of {count} tasks finished"
    return count / elapsed


async def main(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        print(
            f"bare SQLite commit (synchronous=FULL): {med_p95(commit_times(Path(directory) / 'bare.db', count=1000))}"
        )
        store = SQLiteTaskStore(Path(directory) / "tasks.db")
        await store.get("warm-up")
        print(f"admit, task running at once: {med_p95(await admit_latency(store, 0))}")
        for round_ in range(1, args.rounds + 1):
            rate = await throughput(store, round_ * 1_000_000, args.tasks)
            print(f"admit + finish, {args.tasks} at once: {rate:,.0f} tasks/s")
        await store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dir", default=None, help="where the database files go (default: a temporary directory)")
    asyncio.run(main(parser.parse_args()))
