"""Closing never hangs: a run closed while a tool swallows its cancellation gives the tool a short grace, then
returns; memory keeps what was said before the close, and nothing after it reaches the model or memory."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from llm_servers import LLMServer, Turn
from test_agent_runs import lookup, model_for

from lodestar import Agent, tool
from lodestar.runtime import Memory, run
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio
BOUND_S = 10  # generous: the point is that closing returns at all


@pytest.fixture(autouse=True)
def short_grace(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(run, "CLOSE_GRACE_S", 0.2)
    yield


class Stubborn:
    """A tool that catches its cancellation and carries on until the test releases it."""

    def __init__(self) -> None:
        self.started, self.cancelled, self.release = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self.task: asyncio.Task[object] | None = None

        @tool
        async def stubborn() -> str:
            """Takes its time, whatever it is told."""
            self.task = asyncio.current_task()
            self.started.set()
            try:
                await self.release.wait()
            except asyncio.CancelledError:
                self.cancelled.set()
                await self.release.wait()
            return "finished late"

        self.tool = stubborn

    async def finish(self) -> None:
        """Let the tool end, and wait until the run it belongs to has gone as far as it will go."""
        assert self.task is not None
        self.release.set()
        await asyncio.wait({self.task})  # the tool runs in the run's own task: its end is the run's end


async def roles(storage: SQLiteStorage, thread: str) -> list[str]:
    return [m.role for m in await storage.list_messages(thread)]


async def test_closing_a_stream_leaves_a_stubborn_tool_behind(
    openai_server: LLMServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn = Stubborn()
    storage = SQLiteStorage(tmp_path / "db")
    openai_server.script(
        Turn(tool_calls=[("lookup", {"term": "star"})]), Turn(tool_calls=[("stubborn", {})]), Turn(text="never")
    )
    agent = Agent("a", model=model_for(openai_server), tools=[lookup, stubborn.tool], memory=Memory(storage))
    caplog.set_level(logging.WARNING, "lodestar.runtime")

    with anyio.fail_after(BOUND_S):
        async with agent.stream("look it up", thread="t1") as stream:
            async for part in stream:
                if part.type == "tool-call" and part.payload.tool_name == "stubborn":
                    await stubborn.started.wait()
                    break
    assert stubborn.cancelled.is_set() and stubborn.task is not None and not stubborn.task.done()
    assert "did not stop within 0.2 s of being closed (tools still running: stubborn)" in caplog.text
    assert await roles(storage, "t1") == ["user", "assistant", "tool"]  # the step finished before the close

    await stubborn.finish()
    assert len(openai_server.requests) == 2  # the late result never went to the model
    assert await roles(storage, "t1") == ["user", "assistant", "tool"]  # nor to memory
    await storage.close()


async def test_cancelling_generate_returns_past_a_stubborn_tool(tmp_path: Path) -> None:
    stubborn = Stubborn()
    storage = SQLiteStorage(tmp_path / "db")
    model = ScriptedModel([calls(call("stubborn")), "never"])
    model.record = True
    agent = Agent("a", model=model, tools=[stubborn.tool], memory=Memory(storage))

    task = asyncio.ensure_future(agent.generate("go", thread="t1"))
    await stubborn.started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError), anyio.fail_after(BOUND_S):
        await task
    assert await roles(storage, "t1") == ["user"]  # the step in progress is not kept: its call has no result

    await stubborn.finish()
    assert len(model.requests) == 1
    assert await roles(storage, "t1") == ["user"]
    await storage.close()
