"""Benchmark the agent tools over MCP with the `scripted` model: the cost of `ask_<agent>` beside the runtime's own
time, progress notifications per second, and docs-only start-up with the built-in agent on and off.

    uv run python scripts/bench_agents.py [--calls 200] [--rounds 3] [--spawns 10] [--fanouts 5]
        [--mode legacy|auto] [--json PATH]

The server is `python -m lodestar --app bench_agents_app:app --no-builtin-agents` (bench_agents_app.py, beside this
script, is the current directory's module), driven by the real `mcp.Client` over stdio; each round is a fresh
server process, warmed up first (a search that waits for the index to open, then a tenth of --calls of every
call, at least 10). The scripted model answers instantly, so the runtime's time is all chunk building and step
bookkeeping. p95 is nearest-rank; each row pools every round's samples, and "rounds" gives the spread of the
per-round medians.

- MCP overhead per ask: `call_tool("ask_X", {"message": "go"})` timed at the client, minus the same run in this
  process (`agent.stream_until_idle(...)` consumed, then `await stream.result()`: what the tool does, without the
  progress lines and the result's JSON), on the same app module; each call is paired with one local run and the
  row is over the paired differences. Agents: `one` (a one-step answer) and `three` (two steps of one tool call
  each, then an answer), each without a progress token and with one (then the server sends a notification per
  chunk, which the client's progress_callback receives). `list_agents` over the same connection is the floor:
  a stdio round trip that runs no agent.
- progress notifications per second: `ask_fanout` (FANOUT_STEPS steps of FANOUT_CALLS parallel tool calls, then an
  answer; no text, whose deltas are coalesced) with a progress_callback: notifications received / the call's
  wall time, --fanouts calls per round. Its local run's chunks per second is shown beside it: the ceiling.
- docs-only start-up: `python -m lodestar` (no app) with the built-in docs agent (default) and with
  --no-builtin-agents, spawns alternating, on a warm index cache: spawn to `initialize` answered and to the
  first `tools/list` answered, and the paired difference. One more spawn of each with `-X importtime` shows
  which lodestar modules load by then (after `list_agents` too): none of lodestar.runtime may.
- peak RSS (VmHWM) of the agent server after its calls, and of a docs-only server after `tools/list`.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench_docs import child_pids, server_pid, vm_hwm_mb, warm_cache
from benchstats import p95
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client

HERE = Path(__file__).resolve().parent
APP = "bench_agents_app:app"
ASKS = [("one", False), ("one", True), ("three", False), ("three", True)]  # (agent, with a progress callback)
TARGETS = {
    "overhead": ("<= 5 ms", lambda median: median <= 5),
    "throughput": (">= 2000/s", lambda median: median >= 2000),
}


@dataclass
class Row:
    name: str
    unit: str
    samples: list[float] = field(default_factory=list)
    rounds: list[float] = field(default_factory=list)  # each round's median
    target: str | None = None

    def add_round(self, values: list[float]) -> None:
        self.samples += values
        self.rounds.append(statistics.median(values))

    def summary(self) -> dict[str, Any]:
        median = statistics.median(self.samples)
        ok = None if self.target is None else TARGETS[self.target][1](median)
        return {
            "name": self.name,
            "unit": self.unit,
            "n": len(self.samples),
            "median": median,
            "p95": p95(self.samples),
            "round_medians": self.rounds,
            "target": None if self.target is None else TARGETS[self.target][0],
            "ok": ok,
        }


class Report:
    def __init__(self) -> None:
        self.rows: dict[str, Row] = {}
        self.notes: dict[str, Any] = {}

    def row(self, name: str, unit: str = "ms", target: str | None = None) -> Row:
        return self.rows.setdefault(name, Row(name, unit, target=target))

    def markdown(self) -> str:
        lines = ["| measurement | median | p95 | round medians | n | target | ok |", "|---|---:|---:|---|---:|---|---|"]
        for row in self.rows.values():
            s = row.summary()
            spread = " / ".join(fmt(v, row.unit) for v in row.rounds)
            ok = "" if s["ok"] is None else "yes" if s["ok"] else "**no**"
            lines.append(
                f"| {row.name} | {fmt(s['median'], row.unit)} | {fmt(s['p95'], row.unit)} | {spread} | {s['n']} "
                f"| {s['target'] or ''} | {ok} |"
            )
        return "\n".join(lines)

    def json(self) -> dict[str, Any]:
        return {"notes": self.notes, "rows": [row.summary() for row in self.rows.values()]}


def fmt(value: float, unit: str) -> str:
    if unit == "/s":
        return f"{value:,.0f}/s"
    if unit == "MB":
        return f"{value:.0f} MB"
    return f"{value:.2f} {unit}" if abs(value) < 100 else f"{value:.0f} {unit}"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# Over stdio


@asynccontextmanager
async def serving(
    work: Path, args: list[str], mode: str, python: tuple[str, ...] = (), err: str = "server.err"
) -> AsyncIterator[Client]:
    """A client of `python -m lodestar ARGS` run in this script's folder, its stderr appended to work/ERR."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*python, "-m", "lodestar", "--cache-dir", str(work / "cache"), *args],
        cwd=str(HERE),
        env={"BENCH_AGENTS_DB": str(work / "server.db")},
    )
    with (work / err).open("a", encoding="utf-8") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


def checked(result: Any, what: str) -> Any:
    if result.is_error:
        raise SystemExit(f"bench_agents: {what} failed: {result.content[0].text if result.content else result}")
    return result


class Progress:
    """A progress_callback that counts what arrives and notes whether the values always rose."""

    def __init__(self) -> None:
        self.count = 0
        self.last = 0.0
        self.fell: str | None = None

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        if progress <= self.last and self.fell is None:
            self.fell = f"progress went from {self.last} to {progress} ({message})"
        self.count += 1
        self.last = progress


async def ask(client: Client, agent: str, with_progress: bool) -> tuple[float, int]:
    """Seconds of one ask over MCP, and the progress notifications it brought."""
    progress = Progress() if with_progress else None
    start = time.perf_counter()
    result = await client.call_tool(f"ask_{agent}", {"message": "go"}, progress_callback=progress)
    elapsed = time.perf_counter() - start
    checked(result, f"ask_{agent}")
    if progress is None:
        return elapsed, 0
    if progress.fell:
        raise SystemExit(f"bench_agents: ask_{agent}: {progress.fell}")
    return elapsed, progress.count


async def list_agents(client: Client) -> float:
    start = time.perf_counter()
    checked(await client.call_tool("list_agents", {}), "list_agents")
    return time.perf_counter() - start


# In this process


async def local_run(agent: Any) -> tuple[float, int]:
    """Seconds of the run the ask tool makes, consumed here with no MCP around it, and its chunks."""
    chunks = 0
    start = time.perf_counter()
    async with agent.stream_until_idle("go") as stream:
        async for _ in stream:
            chunks += 1
        result = await stream.result()
    elapsed = time.perf_counter() - start
    if result.error is not None:
        raise SystemExit(f"bench_agents: the local run of {agent.id} failed: {result.error.message}")
    return elapsed, chunks


# Rounds


async def repeat(times: int, make: Callable[[], Awaitable[Any]]) -> None:
    for _ in range(times):
        await make()


async def agent_round(work: Path, app: Any, args: argparse.Namespace, report: Report) -> None:
    """One fresh server: the asks beside their local runs, the list_agents floor, the fan-out's notification rate."""
    agents = app.agents
    before = set(child_pids())
    async with serving(work, ["--app", APP, "--no-builtin-agents"], args.mode) as client:
        pid = server_pid(before)
        checked(await client.call_tool("search_docs", {"query": "agent"}), "search_docs")  # waits for the index
        for agent, with_progress in ASKS:
            await repeat(args.warmup, lambda a=agent, p=with_progress: ask(client, a, p))
            await repeat(args.warmup, lambda a=agent: local_run(agents[a]))
        await repeat(args.warmup, lambda: list_agents(client))

        overheads: dict[tuple[str, bool], list[float]] = {key: [] for key in ASKS}
        totals: dict[tuple[str, bool], list[float]] = {key: [] for key in ASKS}
        locals_: dict[str, list[float]] = {agent: [] for agent, _ in ASKS}
        floor, notes = [], {}
        for _ in range(args.calls):  # interleaved, so that load from other processes falls on each alike
            for key in ASKS:
                remote, notified = await ask(client, *key)
                local, chunks = await local_run(agents[key[0]])
                totals[key].append(remote * 1e3)
                overheads[key].append((remote - local) * 1e3)
                locals_[key[0]].append(local * 1e3)
                notes[f"{key[0]}: chunks, notifications"] = (chunks, notified if key[1] else None)
            floor.append(await list_agents(client) * 1e3)

        for agent in dict.fromkeys(a for a, _ in ASKS):
            report.row(f"ask_{agent}: the runtime's own time (local run)").add_round(locals_[agent])
            for with_progress in (False, True):
                how = "with progress" if with_progress else "no progress"
                report.row(f"ask_{agent} over stdio, {how}").add_round(totals[(agent, with_progress)])
                row = report.row(f"ask_{agent}: MCP overhead, {how}", target="overhead")
                row.add_round(overheads[(agent, with_progress)])
        report.row("list_agents over stdio (a round trip that runs no agent)").add_round(floor)
        report.notes.update({k: list(v) for k, v in notes.items()})

        await fanout(client, agents["fanout"], args.fanouts, report)
        if pid is not None:
            report.row("peak RSS of the agent server", "MB").add_round([vm_hwm_mb(pid) or float("nan")])


async def fanout(client: Client, agent: Any, calls: int, report: Report) -> None:
    await ask(client, "fanout", True)  # warm-up
    rates, ceilings = [], []
    for _ in range(calls):
        elapsed, notified = await ask(client, "fanout", True)
        local, chunks = await local_run(agent)
        rates.append(notified / elapsed)
        ceilings.append(chunks / local)
        report.notes["fanout: chunks, notifications"] = (chunks, notified)
    report.row("ask_fanout: progress notifications delivered per second", "/s", "throughput").add_round(rates)
    report.row("ask_fanout: chunks per second of its local run (the ceiling)", "/s").add_round(ceilings)


async def spawn(work: Path, args: list[str], mode: str) -> tuple[float, float, set[str], float | None]:
    """Seconds from spawn to `initialize` answered and to `tools/list` answered, the tools, the server's VmHWM."""
    before = set(child_pids())
    start = time.perf_counter()
    async with serving(work, args, mode) as client:
        initialized = time.perf_counter() - start
        tools = {tool.name for tool in (await client.list_tools()).tools}
        listed = time.perf_counter() - start
        pid = server_pid(before)
        rss = vm_hwm_mb(pid) if pid is not None else None
    return initialized, listed, tools, rss


async def startup_round(work: Path, args: argparse.Namespace, report: Report) -> None:
    variants = {"built-in agent on": [], "--no-builtin-agents": ["--no-builtin-agents"]}
    times: dict[str, list[tuple[float, float]]] = {label: [] for label in variants}
    rss = []
    for _ in range(args.spawns):
        for label, extra in variants.items():
            initialized, listed, tools, peak = await spawn(work, extra, args.mode)
            if ("ask_docs" in tools) == bool(extra):
                raise SystemExit(f"bench_agents: {label}: ask_docs should {'not ' * bool(extra)}be listed: {tools}")
            times[label].append((initialized * 1e3, listed * 1e3))
            if peak is not None and not extra:
                rss.append(peak)
    for index, what in ((0, "initialize"), (1, "first tools/list")):
        for label in variants:
            report.row(f"docs-only start-up, spawn to {what}, {label}").add_round([t[index] for t in times[label]])
        on, off = ([t[index] for t in times[label]] for label in variants)
        row = report.row(f"docs-only start-up to {what}: built-in agent on minus off (paired)")
        row.add_round([a - b for a, b in zip(on, off, strict=True)])
    if rss:
        report.row("peak RSS of a docs-only server after tools/list", "MB").add_round(rss)


async def imports_at_start(work: Path, mode: str, extra: list[str]) -> list[str]:
    """The lodestar modules a docs-only server has imported once it answered initialize, tools/list and
    list_agents (from its -X importtime lines)."""
    err = f"importtime{len(extra)}.err"
    async with serving(work, extra, mode, ("-X", "importtime"), err) as client:
        await client.list_tools()
        if not extra:
            checked(await client.call_tool("list_agents", {}), "list_agents")
    lines = (work / err).read_text("utf-8").splitlines()
    modules = (line.rsplit("|", 1)[-1].strip() for line in lines if line.startswith("import time:"))
    return sorted({m for m in modules if m.startswith("lodestar")})


async def main(args: argparse.Namespace) -> Report:
    report = Report()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-agents-") as folder:
        work = Path(folder)
        os.environ["BENCH_AGENTS_DB"] = str(work / "local.db")
        sys.path.insert(0, str(HERE))
        from bench_agents_app import FANOUT_CALLS, FANOUT_STEPS, app

        warm_cache(None, work / "cache")
        report.notes.update(
            {
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "load average at start": os.getloadavg(),
                "mode": args.mode,
                "calls": args.calls,
                "rounds": args.rounds,
                "spawns per round": args.spawns,
                "fanout": f"{FANOUT_STEPS} steps x {FANOUT_CALLS} tool calls",
                "lodestar.builtin.docs_agent on this tree": importlib.util.find_spec("lodestar.builtin.docs_agent")
                is not None,
            }
        )
        for index in range(args.rounds):
            log(f"round {index + 1}/{args.rounds}: asks ({time.perf_counter() - started:.0f} s)")
            await agent_round(work, app, args, report)
            log(f"round {index + 1}/{args.rounds}: start-up ({time.perf_counter() - started:.0f} s)")
            await startup_round(work, args, report)
        on = await imports_at_start(work, args.mode, [])
        off = await imports_at_start(work, args.mode, ["--no-builtin-agents"])
        report.notes["lodestar modules imported at start, built-in agent on / off"] = (len(on), len(off))
        report.notes["imported only with the built-in agent on"] = sorted(set(on) - set(off))
        report.notes["runtime modules imported at start (must be none)"] = [
            m for m in on if m.startswith(("lodestar.runtime", "lodestar.builtin.docs_agent"))
        ]
        report.notes["load average at end"] = os.getloadavg()
        report.notes["seconds"] = round(time.perf_counter() - started)
    return report


def parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=200, help="calls of each ask per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, each a fresh server (default 3)")
    parser.add_argument("--spawns", type=int, default=10, help="docs-only spawns of each kind per round (default 10)")
    parser.add_argument("--fanouts", type=int, default=5, help="ask_fanout calls per round (default 5)")
    parser.add_argument(
        "--mode", default="legacy", help="the client's protocol: legacy (2025-11-25, the default) or auto (newest)"
    )
    parser.add_argument("--json", type=Path, metavar="PATH", help="also save the results here as JSON")
    args = parser.parse_args()
    args.warmup = max(10, args.calls // 10)
    return args


if __name__ == "__main__":
    arguments = parse()
    results = asyncio.run(main(arguments))
    print(
        f"Python {results.notes['python']}, {results.notes['cpus']} CPUs, protocol mode {arguments.mode}, "
        f"{arguments.rounds} rounds of {arguments.calls} calls\n"
    )
    print(results.markdown())
    print()
    for key, value in results.notes.items():
        print(f"- {key}: {value}")
    if arguments.json:
        arguments.json.write_text(json.dumps(results.json(), indent=2), "utf-8")
