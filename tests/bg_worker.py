"""A Lodestar app in a process of its own, on a database other processes share: the peer that
tests/test_background_processes.py starts, kills and talks to, and the same app built inside the test process.

`python bg_worker.py DB JOURNAL SETUP` builds the app that SETUP (JSON, see `build`) describes, starts it, prints
`ready`, then runs the commands it reads on stdin, one a line, answering each on stdout:

    enqueue AGENT FIRST COUNT   enqueue COUNT tasks of AGENT's `work` (n = FIRST, FIRST+1, ...)  -> queued ID...
    share COUNT                 enqueue COUNT tasks at once, two of three for agent a1, the rest a2 -> shared
    generate                    every agent's model makes its calls to `work` in one step, all at once -> dispatched
    settle TOTAL                wait until this process has seen TOTAL tasks end (in any process) -> settled
    finish TASK_ID              let that held task's tool return, and wait until it ended -> finished
    release                     let every held tool return, now and later -> released

End of input closes the app (its running tasks go back to the queue) and exits. Each tool body appends what it did
to JOURNAL (`start CALL_ID`, `cancelled CALL_ID`), a file of this process's own; the subprocess also echoes each
journal line on stdout as `journal KIND CALL_ID`.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lodestar import Agent, Lodestar, ToolContext, tool
from lodestar.background import BackgroundTaskManager
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.runtime.tools import Tool
from lodestar.storage import SQLiteStorage

BOUND_S = 30  # every wait in a worker ends by then, so a hang fails the test instead of stalling it


class Journal:
    """What this process's tool bodies did, one line each, flushed at once so that it survives a SIGKILL."""

    def __init__(self, path: Path, echo: bool) -> None:
        self.path = path
        self.echo = echo
        path.touch()

    def write(self, kind: str, call_id: str) -> None:
        with self.path.open("a", encoding="utf-8") as out:
            out.write(f"{kind} {call_id}\n")
        if self.echo:
            print(f"journal {kind} {call_id}", flush=True)


def read_journal(path: Path) -> list[tuple[str, str]]:
    return [(kind, call_id) for kind, call_id in (line.split() for line in path.read_text("utf-8").splitlines())]


class Gates:
    """Held tools wait here until the test lets them go: each task by its `n`, or all at once."""

    def __init__(self) -> None:
        self._gates: dict[int, asyncio.Event] = {}
        self._all = asyncio.Event()

    async def wait(self, n: int) -> None:
        gate = self._gates.setdefault(n, asyncio.Event())
        opened = asyncio.create_task(gate.wait())
        everything = asyncio.create_task(self._all.wait())
        try:
            await asyncio.wait([opened, everything], return_when=asyncio.FIRST_COMPLETED)
        finally:
            opened.cancel()
            everything.cancel()

    def open(self, n: int | None = None) -> None:
        (self._all if n is None else self._gates.setdefault(n, asyncio.Event())).set()


class Ended:
    """The tasks this process has seen end, in any process (its own at once, the others' through the event log)."""

    def __init__(self, manager: BackgroundTaskManager) -> None:
        self.ids: set[str] = set()
        self._updates = manager.subscribe(lambda task: task.terminal)

    async def until(self, done: Callable[[set[str]], bool]) -> None:
        async with asyncio.timeout(BOUND_S):
            while not done(self.ids):
                update = await self._updates.get()
                self.ids.add(update.task.id)


def work_tool(journal: Journal, gates: Gates, hold: bool) -> Tool:
    @tool(background=True)
    async def work(n: int, ctx: ToolContext) -> int:
        """Work on item n (held until released when the process holds its tools)."""
        journal.write("start", ctx.tool_call_id)
        if hold:
            await ctx.progress(f"working on {n}", 0.5)
            try:
                await gates.wait(n)
            except asyncio.CancelledError:
                journal.write("cancelled", ctx.tool_call_id)
                raise
        return n

    return work


def many_calls(count: int) -> ScriptedModel:
    return ScriptedModel([calls(*(call("work", {"n": i}) for i in range(count))), "ok"])


@dataclass
class Peer:
    app: Lodestar
    journal: Journal
    gates: Gates = field(default_factory=Gates)

    def __post_init__(self) -> None:
        assert self.app.tasks is not None
        self.tasks: BackgroundTaskManager = self.app.tasks
        self.ended = Ended(self.tasks)

    async def share(self, count: int) -> None:
        async def one(i: int) -> None:
            await self.tasks.enqueue("a1" if i % 3 else "a2", "work", {"n": i})

        await asyncio.gather(*(one(i) for i in range(count)))

    async def generate(self) -> None:
        await asyncio.gather(*(agent.generate("go") for agent in self.app.agents.values()))

    async def finish(self, task_id: str) -> None:
        task = await self.tasks.get_task(task_id)
        assert task is not None, task_id
        self.gates.open(task.args["n"])
        await self.ended.until(lambda ids: task_id in ids)


def build(db: Path, journal: Path, setup: dict[str, Any], *, echo: bool = False) -> Peer:
    """`setup`: `agents` maps each agent id to how many calls its model makes in one step (each agent has the tool
    `work`); `hold`: the tool waits to be released (reporting progress first) instead of returning at once;
    `background`: the app's background task settings."""
    peer_journal = Journal(journal, echo)
    gates = Gates()
    work = work_tool(peer_journal, gates, bool(setup.get("hold")))
    agents = [Agent(name, model=many_calls(n) if n else None, tools=[work]) for name, n in setup["agents"].items()]
    settings = {"enabled": True, **setup.get("background", {})}
    app = Lodestar(agents, storage=SQLiteStorage(db), background_tasks=settings)
    return Peer(app, peer_journal, gates)


async def command(peer: Peer, words: list[str]) -> str:
    name, args = words[0], words[1:]
    if name == "enqueue":
        agent, first, count = args[0], int(args[1]), int(args[2])
        tasks = [await peer.tasks.enqueue(agent, "work", {"n": n}) for n in range(first, first + count)]
        return " ".join(["queued", *(t.id for t in tasks)])
    if name == "share":
        await peer.share(int(args[0]))
        return "shared"
    if name == "generate":
        await peer.generate()
        return "dispatched"
    if name == "settle":
        total = int(args[0])
        await peer.ended.until(lambda ids: len(ids) >= total)
        return "settled"
    if name == "finish":
        await peer.finish(args[0])
        return "finished"
    if name == "release":
        peer.gates.open()
        return "released"
    raise ValueError(f"unknown command {name!r}")


async def main(db: str, journal: str, setup: str) -> None:
    peer = build(Path(db), Path(journal), json.loads(setup), echo=True)
    async with peer.app:
        print("ready", flush=True)
        while line := await asyncio.to_thread(sys.stdin.readline):
            print(await command(peer, line.split()), flush=True)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
