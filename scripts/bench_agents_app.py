"""The app scripts/bench_agents.py serves with `--app bench_agents_app:app` and runs in-process: agents on the
`scripted` model, which answers instantly, so what is timed is the runtime and the MCP layer around it.

BENCH_AGENTS_DB names the SQLite file of the app's storage (each process its own; the runs keep no thread).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from lodestar import Agent, Lodestar, tool
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.storage import SQLiteStorage

FANOUT_STEPS = 10
FANOUT_CALLS = 50
"""The fan-out agent's steps, each with this many parallel tool calls: every call is a few progress notifications."""


@tool
async def noop(value: int = 0) -> int:
    """Return the value."""
    return value


SCRIPTS = {
    "one": ["done"],
    "three": [calls(call("noop", {"value": 1})), calls(call("noop", {"value": 2})), "done"],
    "fanout": [calls(*(call("noop", {"value": i}) for i in range(FANOUT_CALLS))) for _ in range(FANOUT_STEPS)]
    + ["done"],
}
"""Agent id -> its turns: a one-step answer, two tool-call steps and an answer, and a run of many chunks."""


def _agent(agent_id: str) -> Agent:
    return Agent(
        agent_id,
        description=f"Benchmark agent {agent_id!r}.",
        instructions="Benchmark.",
        model=ScriptedModel(SCRIPTS[agent_id]),
        tools=[noop],
        max_steps=100,
    )


_db = os.environ.get("BENCH_AGENTS_DB") or str(Path(tempfile.mkdtemp(prefix="bench-agents-")) / "app.db")
app = Lodestar(agents=[_agent(agent_id) for agent_id in SCRIPTS], storage=SQLiteStorage(_db))
