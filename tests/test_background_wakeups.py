"""A queued task starts as soon as a slot frees, even when a concurrent dispatch took the slot the manager's
own claim was looking for (the periodic wake-up, every lease_ms / 3, must not be what starts it)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from lodestar import Agent, Lodestar, tool
from lodestar.runtime.models.scripted import ScriptedModel
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


async def test_a_task_queued_behind_a_dispatch_that_took_the_freed_slot_still_starts(tmp_path: Path) -> None:
    gates = {name: asyncio.Event() for name in "abc"}
    gates["b"].set()
    gates["c"].set()

    @tool
    async def wait_for(name: str) -> str:
        """Wait until the test opens this gate."""
        await gates[name].wait()
        return name

    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[wait_for])
    config = {"enabled": True, "global_concurrency": 1, "lease_ms": 600_000}  # no periodic wake-up within the test
    async with Lodestar([agent], storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=config) as app:
        manager = app.tasks
        assert manager is not None
        first = await manager.enqueue("a", "wait_for", {"name": "a"})
        await manager.enqueue("a", "wait_for", {"name": "b"})  # queued behind the first
        ended = manager.subscribe(lambda task: task.terminal)
        gates["a"].set()
        assert (await ended.get()).task.id == first.id
        # Dispatched in the same turn of the event loop as the claim that the freed slot asks for: its admission
        # starts the oldest queued task ("b") and queues this one, so the manager's own claim finds no slot.
        last = await manager.enqueue("a", "wait_for", {"name": "c"})
        async with asyncio.timeout(30):  # a bound that only fires on a hang
            while (update := await ended.get()).task.id != last.id:
                pass
        assert update.task.status == "completed"
