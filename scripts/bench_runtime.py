"""Benchmark the agent runtime with the `scripted` model: overhead per step, per tool call, and many runs at once.

    uv run python scripts/bench_runtime.py [--rounds 30] [--concurrent 1000]

The scripted model answers instantly (no network, no sleep), so the time measured is the runtime's own:
chunk building, the step loop, argument parsing and validation, tool dispatch, result bookkeeping.

What is measured:
- per step: runs of 1 and of 21 steps (20 tool-call steps + a final answer; one no-op tool call per step);
  overhead per step = (t21 - t1) / 20, per run, median and p95 over --rounds runs. The model's own time
  (ScriptedModel.stream alone on the same requests) is measured too and reported beside it.
- per tool call: a 2-step run with 1 and with 11 parallel no-op tool calls in its first step;
  overhead per call = (t11 - t1) / 10.
- stream vs generate: the same 21-step run consumed through `agent.stream()`.
- concurrency: --concurrent runs started at once (asyncio.gather), each 3 steps with a tool call whose
  model turn waits 50 ms (standing in for network latency): wall time, runs per second, peak RSS
  (VmHWM) before and after, and the same with SQLite memory (every run on its own thread).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from benchstats import p95, peak_rss_mb

from lodestar import Agent, tool
from lodestar.runtime import Memory
from lodestar.runtime.models.base import CallContext
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.storage import SQLiteStorage


@tool
def noop(value: int = 0) -> int:
    """Return the value."""
    return value


@tool
async def anoop(value: int = 0) -> int:
    """Return the value."""
    return value


def agent_with(turns: list, **kwargs) -> Agent:
    return Agent(
        "bench", instructions="Benchmark.", model=ScriptedModel(turns), tools=[noop, anoop], max_steps=100, **kwargs
    )


def tool_steps(steps: int, per_step: int = 1, name: str = "anoop") -> list:
    return [calls(*(call(name, {"value": i}) for i in range(per_step))) for _ in range(steps)] + ["done"]


async def timed(make: Callable[[], Awaitable[object]], rounds: int) -> list[float]:
    await make()  # warm-up
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        await make()
        samples.append(time.perf_counter() - start)
    return samples


def row(name: str, values: list[float], unit: float = 1e3, suffix: str = "ms") -> str:
    return f"| {name} | {statistics.median(values) * unit:.3f} {suffix} | {p95(values) * unit:.3f} {suffix} |"


async def stream_all(agent: Agent, text: str) -> None:
    async for _ in agent.stream(text):
        pass


async def model_only(turns: list, rounds: int) -> list[float]:
    """The scripted model's own time for one 21-step run, replaying the requests a real run made."""
    model = ScriptedModel(turns)
    model.record = True
    agent = Agent("bench", model=model, tools=[noop, anoop], max_steps=100)
    assert len((await agent.generate("go")).steps) == len(turns)
    requests = list(model.requests)
    model.record = False
    context = CallContext(run_id="bench")

    async def replay() -> None:
        for request in requests:
            async for _ in model.stream(request, context):
                pass

    return await timed(replay, rounds)


async def concurrent(count: int, memory: Memory | None) -> tuple[float, int]:
    turns = [calls(call("anoop", {"value": 1}), delay_s=0.05), calls(call("noop", {"value": 2})), "done"]
    agent = agent_with(turns, memory=memory)
    start = time.perf_counter()
    if memory is None:
        results = await asyncio.gather(*(agent.generate(f"run {i}") for i in range(count)))
    else:
        results = await asyncio.gather(
            *(agent.generate(f"run {i}", thread=f"t{i}", resource="bench") for i in range(count))
        )
    wall = time.perf_counter() - start
    ok = sum(r.finish_reason == "stop" and len(r.steps) == 3 for r in results)
    return wall, ok


async def main(rounds: int, count: int) -> None:
    one, many = agent_with(["done"]), agent_with(tool_steps(20))
    checked = await many.generate("go")
    assert len(checked.steps) == 21 and checked.text == "done", checked.steps
    t1 = await timed(lambda: one.generate("go"), rounds)
    t21 = await timed(lambda: many.generate("go"), rounds)
    per_step = [(b - a) / 20 for a, b in zip(t1, t21, strict=True)]
    s21 = await timed(lambda: stream_all(many, "go"), rounds)
    per_step_stream = [(b - a) / 20 for a, b in zip(t1, s21, strict=True)]
    model_time = [t / 21 for t in await model_only(tool_steps(20), rounds)]
    sync21 = await timed(lambda: agent_with(tool_steps(20, name="noop")).generate("go"), rounds)
    per_step_sync = [(b - a) / 20 for a, b in zip(t1, sync21, strict=True)]

    single, parallel = agent_with(tool_steps(1, 1)), agent_with(tool_steps(1, 11))
    c1 = await timed(lambda: single.generate("go"), rounds)
    c11 = await timed(lambda: parallel.generate("go"), rounds)
    per_call = [(b - a) / 10 for a, b in zip(c1, c11, strict=True)]

    print(f"Python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {rounds} rounds\n")
    print("| measurement | median | p95 |\n|---|---:|---:|")
    print(row("1-step run (generate)", t1))
    print(row("21-step run (generate)", t21))
    print(row("overhead per step, async tool (generate)", per_step))
    print(row("overhead per step, async tool (stream)", per_step_stream))
    print(row("overhead per step, sync tool in a thread (generate)", per_step_sync))
    print(row("scripted model's own time per step", model_time))
    print(row("overhead per parallel tool call", per_call))

    before = peak_rss_mb()
    wall, ok = await concurrent(count, None)
    after = peak_rss_mb()
    with tempfile.TemporaryDirectory() as folder:
        storage = SQLiteStorage(Path(folder) / "bench.db")
        mem_wall, mem_ok = await concurrent(count, Memory(storage))
        await storage.close()
    after_memory = peak_rss_mb()
    print(f"\n| {count} concurrent 3-step runs | value |\n|---|---:|")
    print(f"| wall time (50 ms model latency per run) | {wall:.2f} s ({ok}/{count} ok) |")
    print(f"| runs per second | {count / wall:.0f} |")
    print(f"| peak RSS before / after | {before:.0f} MB / {after:.0f} MB |")
    print(f"| wall time with SQLite memory (a thread per run) | {mem_wall:.2f} s ({mem_ok}/{count} ok) |")
    print(f"| peak RSS after the memory round | {after_memory:.0f} MB |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--concurrent", type=int, default=1000)
    args = parser.parse_args()
    asyncio.run(main(args.rounds, args.concurrent))
