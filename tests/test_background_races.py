"""Background tasks at the edges: a cancel racing the tool's return, a dispatch cancelled mid-admission, a burst
of events read by another manager, a cancel racing a retry, a start that fails once, output that is not JSON."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from lodestar import Agent, Lodestar, ToolContext, tool
from lodestar.background import BackgroundTask
from lodestar.background.manager import BackgroundTaskManager
from lodestar.background.pubsub import Subscription
from lodestar.storage import SQLiteStorage
from lodestar.storage.tasks import Claimant, Limits

pytestmark = pytest.mark.anyio
BOUND_S = 30  # waits end on events; this bound only turns a hang into a failure


def app_of(path: Path, *tools: Any, **config: Any) -> Lodestar:
    settings = {"enabled": True, "poll_interval_ms": 5, **config}
    return Lodestar([Agent("a", tools=list(tools))], storage=SQLiteStorage(path), background_tasks=settings)


async def next_kind(subscription: Subscription, *kinds: str) -> BackgroundTask:
    async with asyncio.timeout(BOUND_S):
        while True:
            update = await subscription.get()
            if update.kind in kinds:
                return update.task


async def test_a_cancel_racing_the_tools_return_still_ends_the_task_in_view(tmp_path: Path) -> None:
    gate, fired = asyncio.Event(), asyncio.Event()

    @tool(background=True)
    async def slow() -> str:
        """Waits for the gate."""
        await gate.wait()
        return "done"

    async with app_of(tmp_path / "t.db", slow, on_task_complete=lambda t: fired.set()) as app:
        tasks = app.tasks
        assert tasks is not None
        watching = tasks.subscribe(lambda t: True)
        task = await tasks.enqueue("a", "slow")
        cancelling = asyncio.create_task(tasks.cancel(task.id))
        await asyncio.sleep(0)  # the cancel is on its way to the store
        gate.set()  # and the tool returns meanwhile
        await cancelling
        ended = await next_kind(watching, "completed", "cancelled")
        stored = await tasks.get_task(task.id)
    assert stored is not None and stored.status == ended.status
    if ended.status == "completed":
        assert fired.is_set()


async def test_a_dispatch_cancelled_mid_admission_still_runs_what_it_claimed(tmp_path: Path) -> None:
    ran = asyncio.Event()

    @tool(background=True)
    async def quick() -> str:
        """Quick."""
        ran.set()
        return "ok"

    async with app_of(tmp_path / "t.db", quick) as app:
        tasks = app.tasks
        assert tasks is not None
        watching = tasks.subscribe(lambda t: True)
        submitting = asyncio.ensure_future(tasks.submit(tasks.new_task("a", "quick", {})))
        await asyncio.sleep(0)
        submitting.cancel()  # the caller goes away while the admission is in the store's queue
        done = await next_kind(watching, "completed")
    assert done.result == "ok" and ran.is_set()


async def test_another_manager_reads_a_burst_of_events_whole(tmp_path: Path) -> None:
    @tool(background=True)
    def noop(i: int) -> int:
        """No-op."""
        return i

    count = 1_200  # more than one page of events
    async with app_of(tmp_path / "t.db", noop, global_concurrency=50, per_agent_concurrency=50) as runner:
        slow_reader = runner.background_tasks.model_copy(update={"poll_interval_ms": 1000})  # a burst between reads
        observer = BackgroundTaskManager(slow_reader, SQLiteStorage(tmp_path / "t.db").tasks)
        await observer.start()
        completed = 0
        seen = observer.subscribe(lambda t: t.status == "completed")
        assert runner.tasks is not None
        await asyncio.gather(*(runner.tasks.enqueue("a", "noop", {"i": i}) for i in range(count)))
        async with asyncio.timeout(BOUND_S):
            while completed < count:
                await seen.get()
                completed += 1
        await observer.aclose()
    assert completed == count


async def test_a_cancel_asked_while_an_attempt_fails_wins_over_the_retry(tmp_path: Path) -> None:
    store = SQLiteStorage(tmp_path / "t.db").tasks
    claimant = Claimant("me", frozenset({"a/t"}), Limits(10, 10), 30_000)
    task = BackgroundTask(id="task_1", tool_name="t", tool_call_id="c", agent_id="a", run_id="r")
    task.retry.max_retries = 3
    (running,) = (await store.admit(task, claimant, require_slot=False)).claimed
    asked = await store.request_cancel("task_1", "other")
    assert asked is not None and asked.cancel_requested
    later = datetime.now(UTC) + timedelta(seconds=1)
    ended = await store.retry_later("task_1", "me", running.attempt, later, {"message": "boom"})
    assert ended is not None and ended.status == "cancelled"
    await store.close()


async def test_a_start_that_failed_is_tried_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = asyncio.Event()

    @tool(background=True)
    async def held(i: int) -> int:
        """Waits for the gate."""
        await gate.wait()
        return i

    app = app_of(tmp_path / "t.db", held, global_concurrency=1)
    tasks = app.tasks
    assert tasks is not None
    real = tasks.store.last_event_seq
    failures = iter([RuntimeError("database is locked")])

    async def flaky() -> int:
        for error in failures:
            raise error
        return await real()

    monkeypatch.setattr(tasks.store, "last_event_seq", flaky)
    with pytest.raises(RuntimeError, match="database is locked"):
        await tasks.start()
    watching = tasks.subscribe(lambda t: t.status == "completed")
    await tasks.enqueue("a", "held", {"i": 1})  # starts the manager again, and takes the one slot
    queued = await tasks.enqueue("a", "held", {"i": 2})
    assert queued.status == "pending"
    gate.set()
    results = {(await next_kind(watching, "completed")).result for _ in range(2)}
    assert results == {1, 2}  # the queued one was claimed by the workers the second start began
    await app.aclose()


async def test_output_that_is_not_json_is_kept_as_text_in_the_background_too(tmp_path: Path) -> None:
    moment = datetime(2026, 11, 30, tzinfo=UTC)

    @tool(background=True)
    async def report(ctx: ToolContext) -> str:
        """Writes a timestamp."""
        await ctx.writer.write({"at": moment})
        return "ok"

    async with app_of(tmp_path / "t.db", report) as app:
        assert app.tasks is not None
        watching = app.tasks.subscribe(lambda t: True)
        await app.tasks.enqueue("a", "report")
        assert (await next_kind(watching, "completed", "failed")).status == "completed"


async def test_a_tool_this_process_cannot_run_runs_in_the_foreground(tmp_path: Path) -> None:
    from lodestar.runtime.models.scripted import ScriptedModel, call, calls

    @tool(background=True)
    def late() -> str:
        """Added after the agent joined the app, so no process has it as an executor."""
        return "ran inline"

    agent = Agent("a", model=ScriptedModel([calls(call("late")), "ok"]))
    async with Lodestar([agent], storage=SQLiteStorage(tmp_path / "t.db"), background_tasks=True) as app:
        agent.tools["late"] = late
        result = await agent.generate("go")
        assert app.tasks is not None and (await app.tasks.list_tasks()).total == 0
    assert result.tool_results[0].result == "ran inline"


async def test_an_observer_whose_filter_raises_is_closed_and_others_still_hear(tmp_path: Path) -> None:
    @tool(background=True)
    def quick() -> str:
        """Quick."""
        return "ok"

    def broken(task: BackgroundTask) -> bool:
        raise ValueError("a bad filter")

    async with app_of(tmp_path / "t.db", quick) as app:
        assert app.tasks is not None
        bad, good = app.tasks.subscribe(broken), app.tasks.subscribe(lambda t: True)
        await app.tasks.enqueue("a", "quick")
        assert (await next_kind(good, "completed")).result == "ok"
        with pytest.raises(StopAsyncIteration):
            await bad.get()


async def test_enqueue_takes_the_tools_own_timeout_and_retries(tmp_path: Path) -> None:
    @tool(background={"enabled": True, "timeout_ms": 1234, "max_retries": 2})
    def configured() -> str:
        """Configured."""
        return "ok"

    async with app_of(tmp_path / "t.db", configured) as app:
        assert app.tasks is not None
        task = await app.tasks.enqueue("a", "configured")
        given = await app.tasks.enqueue("a", "configured", timeout_ms=99)
    assert (task.timeout_ms, task.retry.max_retries) == (1234, 2)
    assert given.timeout_ms == 99


async def test_a_subagent_on_the_clients_model_stays_in_the_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from lodestar.runtime.models.scripted import ScriptedModel, call, calls

    monkeypatch.delenv("LODESTAR_MODEL", raising=False)
    sub = Agent("helper", description="Helps.")  # no model of its own: the MCP client's, through sampling
    boss = Agent(
        "boss",
        model=ScriptedModel([calls(call("agent-helper", {"prompt": "help"})), "ok"]),
        agents=[sub],
        background_tasks={"tools": "all"},
    )
    async with Lodestar([boss], storage=SQLiteStorage(tmp_path / "t.db"), background_tasks=True) as app:
        result = await boss.generate("go")
        assert app.tasks is not None and (await app.tasks.list_tasks()).total == 0
    assert "task_id" not in str(result.tool_results[0].result)
