"""Benchmark background tasks through SQLite files, with the definitions of Mastra's bench, for side-by-side ratios.

    uv run python scripts/bench_background.py [--rounds 3] [--sizes 1000,5000] [--total 10000] [--latency 200]
        [--calls 10] [--pairs 30] [--poll-ms 25] [--synchronous full|normal] [--mastra JSON...] [--dir DIR]

Mastra's bench is ../shared/bench/mastra-background/bench.mjs. As there, every measurement runs in a fresh process
on a fresh database file (in DIR, default a temporary directory: put it on the disk the database will live on),
with `global_concurrency` 10 and `per_agent_concurrency` 10, and the task body is a no-op tool `noop(i)` of
agent "bench" that records when it started and how often it ran for `i`. Events are the chunks of
`app.tasks.stream()` (background-task-running / -completed), timed when that subscriber receives them; times are
CLOCK_MONOTONIC (`time.monotonic`), which every process on the machine shares. p95 is nearest-rank.

- throughput (--sizes): one warm-up task, excluded; the timer starts just before that many concurrent
  `app.tasks.enqueue()` calls (asyncio.gather) and stops when the subscriber has received that many terminal
  events. Reported: tasks/s, the enqueue phase, lost / duplicated executions (from the tool's counts; must be
  0/0), the most tasks running at once as the events tell it (running events minus terminal ones; limit 10).
- end to end (--total): the same with that many tasks, then the completed tasks counted in the store.
- latency (--latency tasks one after another, after 5 warm-ups): from just before `await enqueue(...)` to its
  return (enqueue call), to the `running` event received, to the tool body starting, to the `completed` event.
- an agent's background tool call: a ScriptedModel agent whose run makes --calls steps of one `noop` call each,
  then answers. In the background (`@tool(background=True)`) each step gets the task's acknowledgement, which is
  what the run waits for; in the foreground (a second agent of the same app with `background_tasks={"disabled":
  True}`, same tool) each step runs the tool inline. Cost per call = (t_bg - t_fg) / --calls for each of --pairs
  pairs of runs (one warm-up pair excluded); after each background run its tasks are left to finish, untimed.
  The tasks run in the same process while the run goes on, so part of their own cost is inside t_bg. No stream
  follows the tasks here (only a bare subscription waits for them to end), so t_bg holds no observer's cost.
- across two processes on one file: process A, an app without the agent (so it has no executor for `noop` and
  never claims its tasks), submits `app.tasks.submit(app.tasks.new_task("bench", "noop", ...))`; process B, the
  agent's app, claims and runs it. From just before A's `await submit` to B's subscriber receiving `running` and
  `completed`, --latency tasks one after another after 5 warm-ups. B learns of A's task through the database,
  which it checks every `poll_interval_ms` (--poll-ms, 25 by default as in the config), so this figure is mostly
  the wait for B's next look: A pauses a random 0 to --poll-ms ms before each dispatch (untimed), so that its
  dispatches do not keep the same phase with B's looks, as tasks dispatched one right after another would.
- peak RSS: VmHWM of the measuring processes; the largest is the end-to-end one.
- the disk's floor: a bare `BEGIN IMMEDIATE; INSERT; COMMIT` on a WAL file with the same `synchronous`, before
  each round. With `synchronous=FULL` (Lodestar's setting) every commit waits for an fsync, so every figure
  above moves with this one; on a disk shared with other busy processes it can go from 0.25 to 4 ms. The load
  average at the start of each round is shown too: on 2 cores, other busy processes delay every thread hop.

--synchronous normal opens the task store's file as Mastra's LibSQLStore opens a local file (WAL,
`synchronous=NORMAL`: a commit survives the process dying, not the machine losing power), for a like-for-like
comparison with its figures; Lodestar itself always uses FULL.

Each figure in the table is the median over --rounds of each round's value (its p50 or p95 for a distribution).
With --mastra, the results files bench.mjs wrote (WORKDIR/results-*.json) give a second table of ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from benchstats import commit_times, p50_p95, peak_rss_mb

from lodestar import Agent, Lodestar, tool
from lodestar.background import BackgroundTaskManager
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.storage import SQLiteStorage, sqlite_tasks
from lodestar.storage.schema import open_database

LIMITS = {"enabled": True, "global_concurrency": 10, "per_agent_concurrency": 10}
WARM_UPS = 5
TIMEOUT_S = 600  # a measurement still waiting after this long fails: a hang, not a slow run

started: dict[int, float] = {}
executions: Counter[int] = Counter()


@tool(background=True)
async def noop(i: int) -> int:
    """Record that the body started, and return `i`."""
    started[i] = time.monotonic()
    executions[i] += 1
    return i


def bench_agent(agent_id: str = "bench", script: list[Any] | None = None, **kwargs: Any) -> Agent:
    return Agent(agent_id, model=ScriptedModel(script or ["done"]), tools=[noop], max_steps=1000, **kwargs)


class Events:
    """What one subscriber of `app.tasks.stream()` received, timed on arrival."""

    def __init__(self) -> None:
        self.running: dict[str, float] = {}
        self.ended: dict[str, float] = {}
        self.duplicates = 0
        self.in_running = 0
        self.max_running = 0
        self.on_event: Callable[[str, str, float], None] | None = None
        self._target = 0
        self._reached = asyncio.Event()
        self._waiters: dict[str, asyncio.Future[float]] = {}

    async def follow(self, manager: BackgroundTaskManager) -> None:
        async for chunk in manager.stream():
            now = time.monotonic()
            task_id: str = chunk.payload.task_id  # type: ignore[union-attr]
            kind = chunk.type.removeprefix("background-task-")
            if kind == "running":
                self._count(self.running, task_id, now)
                self.in_running += 1
                self.max_running = max(self.max_running, self.in_running)
            elif kind in ("completed", "failed", "cancelled"):
                self._count(self.ended, task_id, now)
                self.in_running -= 1
                waiter = self._waiters.pop(task_id, None)
                if waiter is not None:
                    waiter.set_result(now)
                if len(self.ended) >= self._target:
                    self._reached.set()
            if self.on_event is not None:
                self.on_event(kind, task_id, now)

    def _count(self, seen: dict[str, float], task_id: str, now: float) -> None:
        if task_id in seen:
            self.duplicates += 1
        else:
            seen[task_id] = now

    async def ended_at(self, task_id: str) -> float:
        if task_id in self.ended:
            return self.ended[task_id]
        self._waiters[task_id] = asyncio.get_running_loop().create_future()
        async with asyncio.timeout(TIMEOUT_S):
            return await self._waiters[task_id]

    async def until_ended(self, count: int) -> None:
        """Until `count` tasks in all ended."""
        self._target = count
        self._reached.clear()
        if len(self.ended) < count:
            async with asyncio.timeout(TIMEOUT_S):
                await self._reached.wait()


@asynccontextmanager
async def bench_app(
    path: Path, agents: list[Agent], *, follow: bool = True
) -> AsyncIterator[tuple[Lodestar, BackgroundTaskManager, Events]]:
    """An app on a fresh file, with a subscriber of `app.tasks.stream()` already following its task events."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    async with Lodestar(agents, storage=SQLiteStorage(path), background_tasks=LIMITS) as app:
        assert app.tasks is not None
        events = Events()
        follower = asyncio.create_task(events.follow(app.tasks)) if follow else None
        await asyncio.sleep(0)  # the follower subscribes in its first step, before it awaits anything
        try:
            yield app, app.tasks, events
        finally:
            if follower is not None:
                follower.cancel()


async def warm_up(manager: BackgroundTaskManager, events: Events, count: int) -> None:
    for number in range(count):
        task = await manager.enqueue("bench", "noop", {"i": -1 - number}, run_id="warm-up")
        await events.ended_at(task.id)


# --- the measurements, each in its own process ------------------------------------------------------------------


async def throughput(path: Path, n: int) -> dict[str, Any]:
    async with bench_app(path, [bench_agent()]) as (_, manager, events):
        await warm_up(manager, events, 1)
        before = len(events.ended)
        start = time.monotonic()
        await asyncio.gather(*(manager.enqueue("bench", "noop", {"i": i}, run_id="bench") for i in range(n)))
        enqueued = time.monotonic()
        await events.until_ended(before + n)
        elapsed = time.monotonic() - start
        stored = await manager.list_tasks(status="completed", run_id="bench", per_page=1)
    return {
        "tasks_per_s": n / elapsed,
        "enqueue_ms": (enqueued - start) * 1000,
        "lost": sum(executions[i] == 0 for i in range(n)),
        "duplicated": sum(max(0, executions[i] - 1) for i in range(n)),
        "duplicate_events": events.duplicates,
        "max_running": events.max_running,
        "completed_in_store": stored.total,
        "rss_mb": peak_rss_mb(),
    }


async def latency(path: Path, n: int) -> dict[str, Any]:
    samples: dict[str, list[float]] = {"enqueue": [], "running": [], "body": [], "completed": []}
    async with bench_app(path, [bench_agent()]) as (_, manager, events):
        for i in range(-WARM_UPS, n):
            start = time.monotonic()
            task = await manager.enqueue("bench", "noop", {"i": i})
            returned = time.monotonic()
            ended = await events.ended_at(task.id)
            if i >= 0:
                for name, at in (
                    ("enqueue", returned),
                    ("running", events.running[task.id]),
                    ("body", started[i]),
                    ("completed", ended),
                ):
                    samples[name].append((at - start) * 1000)
    return {name: p50_p95(values) for name, values in samples.items()} | {"rss_mb": peak_rss_mb()}


async def agent_call(path: Path, count: int, pairs: int) -> dict[str, Any]:
    script = [calls(call("noop", {"i": k})) for k in range(count)] + ["done"]
    background, foreground = bench_agent("bg", script), bench_agent("fg", script, background_tasks={"disabled": True})
    costs, fg_runs, bg_runs = [], [], []
    async with bench_app(path, [background, foreground], follow=False) as (_, manager, _):
        ended = manager.subscribe(lambda task: task.terminal)  # lighter than a stream: the run should not pay for it
        for pair in range(pairs + 1):
            start = time.monotonic()
            await foreground.generate("go")
            t_fg = time.monotonic() - start
            start = time.monotonic()
            await background.generate("go")
            t_bg = time.monotonic() - start
            async with asyncio.timeout(TIMEOUT_S):
                for _ in range(count):  # its calls went to the background, and every task ended
                    await ended.get()
            if pair:
                costs.append((t_bg - t_fg) / count * 1000)
                fg_runs.append(t_fg * 1000)
                bg_runs.append(t_bg * 1000)
    return {"cost": p50_p95(costs), "fg_run": p50_p95(fg_runs), "bg_run": p50_p95(bg_runs), "rss_mb": peak_rss_mb()}


async def cross_process(path: Path, n: int, poll_ms: int, synchronous: str) -> dict[str, Any]:
    """Process A: dispatches the tasks that process B (`worker`) runs, and reads B's event times from its stdout."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    worker = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--synchronous", synchronous, "--child", "worker",
        json.dumps({"path": str(path), "poll_ms": poll_ms}), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    seen: dict[tuple[str, str], float] = {}

    async def seen_at(kind: str, task_id: str) -> float:
        while (kind, task_id) not in seen:
            line = (await worker.stdout.readline()).decode().split()  # type: ignore[union-attr]
            if not line:
                raise RuntimeError("the worker process stopped before reporting every task")
            if len(line) == 3:
                seen[line[0], line[1]] = float(line[2])
        return seen[kind, task_id]

    running, completed = [], []
    phases = random.Random(11)
    async with asyncio.timeout(TIMEOUT_S):
        await seen_at("ready", "-")
        async with Lodestar([], storage=SQLiteStorage(path), background_tasks=LIMITS) as app:
            assert app.tasks is not None
            for i in range(-WARM_UPS, n):
                await asyncio.sleep(phases.uniform(0, poll_ms / 1000))
                task = app.tasks.new_task("bench", "noop", {"i": i})
                start = time.monotonic()
                await app.tasks.submit(task)
                ran, ended = await seen_at("running", task.id), await seen_at("completed", task.id)
                if i >= 0:
                    running.append((ran - start) * 1000)
                    completed.append((ended - start) * 1000)
        worker.stdin.close()
        report = json.loads((await worker.stdout.read()).decode().split("RESULT ", 1)[1])
        await worker.wait()
    return {
        "running": p50_p95(running),
        "completed": p50_p95(completed),
        "rss_mb": max(peak_rss_mb(), report["rss_mb"]),
    }


async def worker(path: Path, poll_ms: int) -> dict[str, Any]:
    """Process B: runs the agent's tasks, printing `<event> <task id> <monotonic time>` for each event received."""

    def report(kind: str, task_id: str, at: float) -> None:
        sys.stdout.write(f"{kind} {task_id} {at}\n")
        sys.stdout.flush()

    config = LIMITS | {"poll_interval_ms": poll_ms}
    async with Lodestar([bench_agent()], storage=SQLiteStorage(path), background_tasks=config) as app:
        assert app.tasks is not None
        events = Events()
        follower = asyncio.create_task(events.follow(app.tasks))
        await asyncio.sleep(0)
        await warm_up(app.tasks, events, 1)
        events.on_event = report
        report("ready", "-", time.monotonic())
        await asyncio.to_thread(sys.stdin.read)  # until process A closes our stdin
        follower.cancel()
    return {"rss_mb": peak_rss_mb()}


def use_synchronous(mode: str) -> None:
    """Open the task store's connections with this `synchronous` setting (see --synchronous)."""

    def opened(path: str) -> sqlite3.Connection:
        conn = open_database(path)
        conn.execute(f"PRAGMA synchronous={mode}")
        return conn

    sqlite_tasks.open_database = opened  # type: ignore[attr-defined]


def commit_floor(path: Path, mode: str, count: int = 300) -> dict[str, float]:
    """A bare one-row commit on a WAL file: what the disk costs each state change."""
    return p50_p95(commit_times(path, mode, count))


CHILDREN = {
    "throughput": lambda a: throughput(Path(a["path"]), a["n"]),
    "latency": lambda a: latency(Path(a["path"]), a["n"]),
    "agent": lambda a: agent_call(Path(a["path"]), a["calls"], a["pairs"]),
    "cross": lambda a: cross_process(Path(a["path"]), a["n"], a["poll_ms"], a["synchronous"]),
    "worker": lambda a: worker(Path(a["path"]), a["poll_ms"]),
}


# --- figures and the table --------------------------------------------------------------------------------------


def run_child(kind: str, mode: str, **args: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--synchronous", mode, "--child", kind, json.dumps(args)]
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True, timeout=TIMEOUT_S + 60, check=True)
    result: dict[str, Any] = json.loads(done.stdout.split("RESULT ", 1)[1])
    print(f"  {kind} {args.get('n', '')}: {json.dumps(result)}", file=sys.stderr)
    return result


def fmt(value: float) -> str:
    return f"{value:,.0f}" if value >= 100 else f"{value:.2f}"


def table(results: dict[str, list[dict[str, Any]]], args: argparse.Namespace) -> list[str]:
    lines = ["| measurement | median | p95 | rounds |", "|---|---:|---:|---|"]

    def add(name: str, key: str, pick: Callable[[dict[str, Any]], Any], spread: bool = False) -> None:
        values = [pick(result) for result in results[key]]
        if spread:  # each round's p50 and p95
            p50s, p95s = [v["p50"] for v in values], [v["p95"] for v in values]
            rounds = ", ".join(f"{fmt(a)}/{fmt(b)}" for a, b in zip(p50s, p95s, strict=True))
            lines.append(f"| {name} | {fmt(statistics.median(p50s))} | {fmt(statistics.median(p95s))} | {rounds} |")
        elif isinstance(values[0], str):
            lines.append(f"| {name} | | | {', '.join(values)} |")
        else:
            lines.append(f"| {name} | {fmt(statistics.median(values))} | | {', '.join(fmt(v) for v in values)} |")

    for n in [*args.sizes, args.total]:
        key = f"throughput {n}"
        add(f"throughput, {n:,} no-op tasks (tasks/s)", key, lambda r: r["tasks_per_s"])
        add(f"enqueue phase, {n:,} tasks (ms)", key, lambda r: r["enqueue_ms"])
        add(f"lost / duplicated executions, {n:,}", key, lambda r: f"{r['lost']}/{r['duplicated']}")
        add(f"max running observed (limit 10), {n:,}", key, lambda r: str(r["max_running"]))
    add(f"completed in the store / executions, {args.total:,}", f"throughput {args.total}",
        lambda r: f"{r['completed_in_store']}/{args.total - r['lost']}")  # fmt: skip
    for name, field in (
        ("enqueue call", "enqueue"),
        ("dispatch -> running event", "running"),
        ("dispatch -> body start", "body"),
        ("dispatch -> completed event", "completed"),
    ):
        add(f"{name} (ms, {args.latency} sequential)", "latency", lambda r, f=field: r[f], spread=True)
    add(f"agent: background call over foreground, per call (ms, {args.calls} calls)", "agent",
        lambda r: r["cost"], spread=True)  # fmt: skip
    add(f"agent: run of {args.calls} foreground calls (ms)", "agent", lambda r: r["fg_run"], spread=True)
    add(f"agent: run of {args.calls} background calls (ms)", "agent", lambda r: r["bg_run"], spread=True)
    add(
        f"two processes: dispatch in A -> running in B (ms, poll {args.poll_ms} ms)",
        "cross",
        lambda r: r["running"],
        spread=True,
    )
    add(
        f"two processes: dispatch in A -> completed in B (ms, poll {args.poll_ms} ms)",
        "cross",
        lambda r: r["completed"],
        spread=True,
    )
    add("bare SQLite commit on this disk, before each round (ms)", "floor", lambda r: r, spread=True)
    add(f"load average (1 min) at the start of each round, {os.cpu_count()} CPUs", "load", lambda r: r)
    every = [result for key, group in results.items() if key not in ("floor", "load") for result in group]
    add(f"peak RSS, {args.total:,} tasks (MB)", f"throughput {args.total}", lambda r: r["rss_mb"])
    lines.append(f"| peak RSS, largest process (MB) | {fmt(max(r['rss_mb'] for r in every))} | | |")
    return lines


def beside_mastra(results: dict[str, list[dict[str, Any]]], files: list[str], sizes: list[int]) -> list[str]:
    """Ratios to the figures in bench.mjs's results files (its `affine` path: enqueue with an executor, as an
    agent's tool call does), medians over its repetitions as its own table shows them."""
    runs = [json.loads(Path(file).read_text()) for file in files]
    throughput = [r for run in runs for r in run["throughput"] if r["path"] == "affine"]
    latency = [r for run in runs for r in run["latency"] if r["path"] == "affine"]
    lines = ["| measurement | Lodestar | Mastra | ratio (above 1: Lodestar better) |", "|---|---:|---:|---:|"]
    for n in sizes:
        ours = statistics.median(r["tasks_per_s"] for r in results[f"throughput {n}"])
        theirs = statistics.median(r["tasks_per_s"] for r in throughput if r["n"] == n)
        lines.append(f"| throughput, {n:,} tasks (tasks/s) | {fmt(ours)} | {fmt(theirs)} | {ours / theirs:.2f} |")
    for name, field, their_field in (
        ("dispatch -> running event", "running", "dispatch_to_running"),
        ("dispatch -> body start", "body", "dispatch_to_exec"),
        ("dispatch -> completed event", "completed", "dispatch_to_completed_event"),
        ("enqueue call", "enqueue", "enqueue_call"),
    ):
        for stat in ("p50", "p95"):
            ours = statistics.median(r[field][stat] for r in results["latency"])
            theirs = statistics.median(r[their_field][stat] for r in latency)
            lines.append(f"| {name} {stat} (ms) | {fmt(ours)} | {fmt(theirs)} | {theirs / ours:.2f} |")
    return lines


def main(args: argparse.Namespace) -> None:
    results: dict[str, list[dict[str, Any]]] = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as directory:
        db = str(Path(directory) / "bench.db")
        for round_ in range(1, args.rounds + 1):
            print(f"round {round_} of {args.rounds}", file=sys.stderr)
            results.setdefault("load", []).append(os.getloadavg()[0])
            results.setdefault("floor", []).append(commit_floor(Path(directory) / "floor.db", args.synchronous))
            sync = args.synchronous
            for n in [*args.sizes, args.total]:
                results.setdefault(f"throughput {n}", []).append(run_child("throughput", sync, path=db, n=n))
            results.setdefault("latency", []).append(run_child("latency", sync, path=db, n=args.latency))
            agent = run_child("agent", sync, path=db, calls=args.calls, pairs=args.pairs)
            results.setdefault("agent", []).append(agent)
            cross = run_child("cross", sync, path=db, n=args.latency, poll_ms=args.poll_ms, synchronous=sync)
            results.setdefault("cross", []).append(cross)
    print(
        f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {args.rounds} rounds, "
        f"SQLite files with synchronous={args.synchronous.upper()}\n"
    )
    print("\n".join(table(results, args)))
    if args.mastra:
        print(f"\nBeside Mastra ({', '.join(args.mastra)}):\n")
        print("\n".join(beside_mastra(results, args.mastra, args.sizes)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=lambda s: [int(n) for n in s.split(",")], default=[1000, 5000])
    parser.add_argument("--total", type=int, default=10_000, help="tasks of the end-to-end run")
    parser.add_argument("--latency", type=int, default=200, help="sequential tasks of the latency measurements")
    parser.add_argument("--calls", type=int, default=10, help="tool calls per agent run")
    parser.add_argument("--pairs", type=int, default=30, help="pairs of agent runs (foreground, background)")
    parser.add_argument("--poll-ms", type=int, default=25, help="poll_interval_ms of the process that runs the tasks")
    parser.add_argument("--dir", default=None, help="where the database files go (default: a temporary directory)")
    parser.add_argument("--mastra", nargs="+", metavar="JSON", help="bench.mjs results files: adds ratios to them")
    parser.add_argument("--synchronous", choices=["full", "normal"], default="full", help="see above")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "ARGS"), help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child:
        use_synchronous(parsed.synchronous)
        kind, child_args = parsed.child
        outcome = asyncio.run(CHILDREN[kind](json.loads(child_args)))
        sys.stdout.write(f"RESULT {json.dumps(outcome)}\n")
    else:
        main(parsed)
