"""Background tasks in one process: dispatch, the layers that opt a call in, limits and backpressure, timeouts,
retries, cancel, observation, callbacks and cleanup, against a real SQLite file."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from llm_servers import LLMServer, Turn
from test_agent_runs import model_for

from lodestar import Agent, Lodestar, ToolContext, tool
from lodestar.background import BackgroundTask, BackgroundTasksConfig
from lodestar.runtime import Chunk
from lodestar.runtime.models.base import ModelRequest
from lodestar.runtime.models.scripted import ScriptedModel, ScriptedTurn, call, calls
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


class Gate:
    """A tool body that reports each start and waits until the test opens it."""

    def __init__(self) -> None:
        self.started: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.opened = asyncio.Event()
        self.cancelled = asyncio.Event()

    async def __call__(self, **args: Any) -> str:
        await self.started.put(args)
        try:
            await self.opened.wait()
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return f"notes on {args.get('topic')}"


def app_with(tmp_path: Path, agent: Agent, **config: Any) -> Lodestar:
    settings = {"enabled": True, "poll_interval_ms": 5, **config}
    return Lodestar([agent], storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=settings)


def research_tool(gate: Gate, **background: Any) -> Any:
    @tool(background=background or {"enabled": True})
    async def research(topic: str) -> str:
        """Research a topic at length."""
        return await gate(topic=topic)

    return research


async def until(manager: Any, predicate: Callable[[Chunk], bool], **filters: Any) -> list[Chunk]:
    """The manager's chunks up to and including the first that satisfies `predicate`."""
    seen: list[Chunk] = []

    async def read() -> list[Chunk]:
        async for chunk in manager.stream(**filters):
            seen.append(chunk)
            if predicate(chunk):
                return seen
        raise AssertionError("the manager's stream ended")

    try:
        return await asyncio.wait_for(read(), 30)  # a bound that only fires on a hang
    except TimeoutError:
        raise AssertionError(f"no matching chunk within 30 s; saw {[c.type for c in seen]}") from None


async def test_a_background_call_answers_at_once_and_its_result_replaces_the_answer_in_memory(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent(
        "a",
        model=ScriptedModel([calls(call("research", {"topic": "solana"})), "Started."]),
        tools=[research_tool(gate)],
    )
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        chunks = [c async for c in agent.stream("Research solana", thread="t1", resource="u1")]
        (result,) = [c.payload.result for c in chunks if c.type == "tool-result"]
        assert result["status"] == "running" and result["task_id"].startswith("task_")
        kinds = [c.type for c in chunks]
        assert (
            kinds.index("background-task-started")
            < kinds.index("background-task-progress")
            < kinds.index("tool-result")
        )
        assert await gate.started.get() == {"topic": "solana"}
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-completed"))
        await asyncio.sleep(0)
        gate.opened.set()
        seen = await watching
        assert seen[-1].payload.result == "notes on solana" and seen[-1].payload.task_id == result["task_id"]
        task = await app.tasks.get_task(result["task_id"])
        assert task is not None and (task.status, task.result, task.attempt) == ("completed", "notes on solana", 1)
        saved = await app.storage.list_messages("t1")
        (tool_message,) = [m for m in saved if m.role == "tool"]
        assert tool_message.content[0]["result"] == "notes on solana"


async def test_the_model_sees_the_override_only_on_eligible_agents_and_it_is_stripped(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    @tool(background=True)
    def strict(topic: str) -> str:
        """Takes exactly one argument."""
        seen.append({"topic": topic})
        return topic

    model = ScriptedModel([calls(call("strict", {"topic": "x", "_background": {"enabled": False}})), "ok"])
    model.record = True
    on = Agent("on", model=model, tools=[strict])
    off = Agent("off", model=ScriptedModel(["ok"]), tools=[strict], background_tasks={"disabled": True})
    off.model.record = True  # type: ignore[union-attr]
    app = app_with(tmp_path, on)
    app.add_agent(off)
    async with app:
        result = await on.generate("go")
        await off.generate("go")
    assert seen == [{"topic": "x"}] and result.tool_results[0].result == "x"  # ran inline: the override said so
    schema_on = model.requests[0].tools[0].input_schema["properties"]
    schema_off = off.model.requests[0].tools[0].input_schema["properties"]  # type: ignore[union-attr]
    assert "_background" in schema_on and "_background" not in schema_off


@pytest.mark.parametrize(
    ("agent_config", "tool_config", "override", "expected"),
    [
        (None, {"enabled": True}, None, True),
        (None, {"enabled": True}, {"enabled": False}, False),
        (None, None, {"enabled": True}, True),
        ({"tools": {"t": False}}, {"enabled": True}, None, False),
        ({"tools": {"t": {"timeoutMs": 5000}}}, None, None, True),
        ({"tools": "all"}, None, None, True),
        ({"tools": "all", "disabled": True}, {"enabled": True}, {"enabled": True}, False),
        (None, {"timeout_ms": 100}, None, False),
    ],
)
async def test_layers_resolve_in_mastras_order(
    tmp_path: Path, agent_config: Any, tool_config: Any, override: Any, expected: bool
) -> None:
    @tool(name="t", background=tool_config)
    def t() -> str:
        """A tool."""
        return "done"

    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[t], background_tasks=agent_config)
    app = app_with(tmp_path, agent)
    from lodestar.background.dispatcher import _override

    resolved = agent.tool_dispatcher.resolve(t, _override(override, "t"))  # type: ignore[attr-defined]
    assert resolved.enabled is expected
    await app.aclose()


async def test_resolution_takes_each_field_from_the_first_layer_that_sets_it(tmp_path: Path) -> None:
    @tool(background={"enabled": True, "timeout_ms": 7000, "max_retries": 3})
    def t() -> str:
        """A tool."""
        return "done"

    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[t], background_tasks={"tools": {"t": {"timeoutMs": 9000}}})
    app = app_with(tmp_path, agent, default_timeout_ms=1000)
    from lodestar.background.dispatcher import _override

    dispatcher: Any = agent.tool_dispatcher
    plan = dispatcher.resolve(t, _override({"maxRetries": 1}, "t"))
    assert (plan.enabled, plan.timeout_ms, plan.max_retries) == (True, 9000, 1)
    plan = dispatcher.resolve(t, None)
    assert (plan.timeout_ms, plan.max_retries) == (9000, 3)
    await app.aclose()


async def test_a_bad_override_is_an_error_the_model_reads(tmp_path: Path) -> None:
    gate = Gate()
    bad = {"topic": "x", "_background": {"enabled": True, "timeoutMs": -5}}
    agent = Agent("a", model=ScriptedModel([calls(call("research", bad)), "ok"]), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent):
        result = await agent.generate("go")
    (outcome,) = result.tool_results
    assert outcome.is_error and "_background" in outcome.result and "timeoutMs" in outcome.result


def many_calls(count: int, name: str = "research") -> ScriptedModel:
    return ScriptedModel([calls(*(call(name, {"topic": str(i)}) for i in range(count))), "ok"])


async def test_the_queue_keeps_the_limit_and_drains_oldest_first(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=many_calls(6), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent, global_concurrency=2) as app:
        assert app.tasks is not None
        result = await agent.generate("go")
        statuses = [r.result["status"] for r in result.tool_results]
        assert statuses.count("running") == 2 and statuses.count("pending") == 4
        order = [r.result["task_id"] for r in result.tool_results]
        watching = asyncio.create_task(
            until(app.tasks, lambda c: c.type == "background-task-completed" and c.payload.task_id == order[-1])
        )
        await asyncio.sleep(0)
        gate.opened.set()
        seen = await watching
        started = [c.payload.task_id for c in seen if c.type == "background-task-running"]
        running = max_running(seen)
        assert running <= 2
        assert [t for t in started if t in order[2:]] == order[2:]  # queued ones started oldest first


def max_running(chunks: list[Chunk]) -> int:
    now = peak = 0
    for chunk in chunks:
        now += {"background-task-running": 1, "background-task-completed": -1, "background-task-failed": -1}.get(
            chunk.type, 0
        )
        peak = max(peak, now)
    return peak


@pytest.mark.parametrize("backpressure", ["reject", "fallback-sync"])
async def test_a_full_manager_rejects_or_runs_inline_as_configured(tmp_path: Path, backpressure: str) -> None:
    gate = Gate()

    @tool(background=True)
    def quick(x: int) -> int:
        """Quick."""
        return x + 1

    script = [calls(call("research", {"topic": "a"})), calls(call("quick", {"x": 1})), "ok"]
    agent = Agent("a", model=ScriptedModel(script), tools=[research_tool(gate), quick])
    async with app_with(tmp_path, agent, global_concurrency=1, backpressure=backpressure):
        result = await agent.generate("go")
        gate.opened.set()
    held, second = result.tool_results
    assert held.result["status"] == "running"
    if backpressure == "reject":
        assert second.is_error and "limits are reached" in second.result and "'reject'" in second.result
    else:
        assert (second.result, second.is_error) == (2, False)  # ran in the step itself


async def test_a_timeout_cancels_the_tool_and_fails_the_task(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=many_calls(1), tools=[research_tool(gate, enabled=True, timeout_ms=50)])
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-failed"))
        await asyncio.sleep(0)
        result = await agent.generate("go")
        seen = await watching
        await asyncio.wait_for(gate.cancelled.wait(), 5)
        task = await app.tasks.get_task(result.tool_results[0].result["task_id"])
    assert task is not None and task.status == "timed_out"
    assert "timed out after 50 ms" in seen[-1].payload.error.message


async def test_retries_wait_with_backoff_capped_and_respect_retryable_errors(tmp_path: Path) -> None:
    attempts: list[float] = []

    @tool(background={"enabled": True, "max_retries": 3})
    async def flaky(kind: str) -> str:
        """Fails twice."""
        attempts.append(asyncio.get_running_loop().time())
        if kind == "fatal":
            raise ValueError("bad input")
        if len(attempts) < 3:
            raise ConnectionError("try again")
        return "finally"

    retries = {
        "retry_delay_ms": 40,
        "backoff_multiplier": 3,
        "max_retry_delay_ms": 70,
        "retryable_errors": lambda exc: isinstance(exc, ConnectionError),
    }
    agent = Agent("a", model=ScriptedModel([calls(call("flaky", {"kind": "net"})), "ok"]), tools=[flaky])
    async with app_with(tmp_path, agent, default_retries=retries) as app:
        assert app.tasks is not None
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-completed"))
        await asyncio.sleep(0)
        await agent.generate("go")
        await watching
        first_gap, second_gap = attempts[1] - attempts[0], attempts[2] - attempts[1]
        assert first_gap >= 0.040 and second_gap >= 0.070  # 40 ms, then 120 ms capped at 70 ms
        assert second_gap < 0.120 + 0.5  # the cap held (with room for a loaded machine)

        attempts.clear()
        agent.model = ScriptedModel([calls(call("flaky", {"kind": "fatal"})), "ok"])
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-failed"))
        await asyncio.sleep(0)
        await agent.generate("go")
        await watching
        assert len(attempts) == 1  # ValueError is not retryable here


async def test_cancel_pending_running_and_finished(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=many_calls(2), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent, global_concurrency=1) as app:
        assert app.tasks is not None
        result = await agent.generate("go")
        running_id, pending_id = (r.result["task_id"] for r in result.tool_results)
        pending = await app.tasks.cancel(pending_id)
        assert pending is not None and pending.status == "cancelled"
        await gate.started.get()
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-cancelled"))
        await asyncio.sleep(0)
        asked = await app.tasks.cancel(running_id)
        assert asked is not None and asked.cancel_requested
        seen = await watching
        assert seen[-1].payload.task_id == running_id and gate.cancelled.is_set()
        again = await app.tasks.cancel(running_id)
        assert again is not None and again.status == "cancelled"  # finished: unchanged
        assert await app.tasks.cancel("task_nope") is None


async def test_stream_gives_a_snapshot_then_live_events_and_filters_both(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=many_calls(2), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        result = await agent.generate("go")
        second = result.tool_results[1].result["task_id"]
        await gate.started.get()
        await gate.started.get()
        stream = app.tasks.stream(task_id=second)
        snapshot = await stream.__anext__()
        assert (snapshot.type, snapshot.payload.task_id) == ("background-task-running", second)
        gate.opened.set()
        done = await stream.__anext__()
        assert (done.type, done.payload.task_id) == ("background-task-completed", second)
        await stream.aclose()
        page = await app.tasks.list_tasks(run_id=result.run_id, per_page=1)
        assert page.total == 2 and len(page.tasks) == 1
        with pytest.raises(ValueError, match="unknown task status 'done'"):
            await app.tasks.list_tasks(status="done")
        with pytest.raises(ValueError, match="unknown task filter colour"):
            await app.tasks.list_tasks(colour="red")


async def test_callbacks_fire_once_at_each_layer_and_a_failing_one_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fired: list[str] = []

    last_fired = asyncio.Event()

    def boom(task: BackgroundTask) -> None:
        fired.append("manager")
        last_fired.set()
        raise RuntimeError("callback broke")

    @tool(background={"enabled": True, "on_complete": lambda task: fired.append("tool")})
    async def quick(x: int) -> int:
        """Quick."""
        return x * 2

    async def agent_level(task: BackgroundTask) -> None:
        fired.append(f"agent:{task.result}")

    def entry_level(task: BackgroundTask) -> None:
        fired.append("entry")

    agent = Agent(
        "a",
        model=ScriptedModel([calls(call("quick", {"x": 21})), "ok"]),
        tools=[quick],
        background_tasks={"on_task_complete": agent_level, "tools": {"quick": {"on_complete": entry_level}}},
    )
    async with app_with(tmp_path, agent, on_task_complete=boom) as app:
        assert app.tasks is not None
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-completed"))
        await asyncio.sleep(0)
        with caplog.at_level(logging.ERROR, logger="lodestar.background"):
            result = await agent.generate("go")
            await watching
            await asyncio.wait_for(last_fired.wait(), 30)
            await asyncio.sleep(0)  # the manager logs the callback's exception as it returns
        task = await app.tasks.get_task(result.tool_results[0].result["task_id"])
    assert fired == ["tool", "entry", "agent:42", "manager"]
    assert task is not None and task.status == "completed"
    assert "callback broke" in caplog.text or "raised" in caplog.text


async def test_bad_config_fails_at_start_with_the_field_named(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="global_concurrency"):
        Lodestar(
            [], storage=SQLiteStorage(tmp_path / "x.db"), background_tasks={"enabled": True, "global_concurrency": 0}
        )
    with pytest.raises(ValueError, match=r"backpressure"):
        BackgroundTasksConfig.model_validate({"backpressure": "drop"})
    with pytest.raises(ValueError, match=r"unknown argument 'globalConcurency'"):
        Lodestar([], storage=SQLiteStorage(tmp_path / "y.db"), background_tasks={"globalConcurency": 3})


def idle_script(request: ModelRequest) -> ScriptedTurn:
    """Dispatch research on the first turn; answer from the result on the turn a finished task brings."""
    last = request.messages[-1]
    if last.role == "user" and last.text.startswith("[background tasks finished]"):
        return ScriptedTurn(text="Here is what I found.")
    if last.role == "user":
        return calls(call("research", {"topic": "solana"}))
    return ScriptedTurn(text="Research started.")


async def test_stream_until_idle_runs_a_turn_for_finished_tasks_and_aggregates_every_turn(tmp_path: Path) -> None:
    gate = Gate()

    @tool(background=True)
    async def research(topic: str, ctx: ToolContext) -> str:
        """Research at length."""
        await ctx.progress("searching", 0.5)
        return await gate(topic=topic)

    agent = Agent("a", model=ScriptedModel(idle_script), tools=[research])
    async with app_with(tmp_path, agent):
        stream = agent.stream_until_idle("Research solana", thread="t1", resource="u1")
        kinds: list[str] = []
        async for chunk in stream:
            kinds.append(chunk.type)
            if chunk.type == "background-task-output":
                gate.opened.set()
        result = await stream.result()
    for kind in ("started", "progress", "running", "output", "completed"):
        assert f"background-task-{kind}" in kinds
    assert kinds.index("background-task-started") < kinds.index("background-task-running")  # as it happened
    assert kinds.count("start") == 2 and kinds.count("finish") == 2
    assert result.text == "Research started.\n\nHere is what I found."
    assert len(result.steps) == 3 and [t.status for t in result.background_tasks] == ["completed"]


async def test_stream_until_idle_without_a_thread_keeps_the_conversation(tmp_path: Path) -> None:
    gate = Gate()
    gate.opened.set()
    model = ScriptedModel(idle_script)
    model.record = True
    agent = Agent("a", model=model, tools=[research_tool(gate)])
    async with app_with(tmp_path, agent):
        stream = agent.stream_until_idle("Research solana")
        result = await stream.result()
    last_request = model.requests[-1]
    tool_results = [p for m in last_request.messages for p in m.content if p.type == "tool-result"]
    assert [p.result for p in tool_results] == ["notes on solana"]
    assert result.text.endswith("Here is what I found.")


async def test_stream_until_idle_closes_after_max_idle_ms_with_tasks_still_running(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=ScriptedModel(idle_script), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        result = await agent.stream_until_idle("Research solana", thread="t1", max_idle_ms=50).result()
        assert result.text == "Research started." and [t.status for t in result.background_tasks] == ["running"]
        gate.opened.set()


def delegating(request: ModelRequest) -> ScriptedTurn:
    """A supervisor that delegates on the user's turn and then says it did."""
    last = request.messages[-1]
    if last.role == "user" and not last.text.startswith("[background tasks finished]"):
        return calls(call("agent-researcher", {"prompt": "Find facts on solana."}))
    return ScriptedTurn(text="Delegated." if last.role != "user" else "The researcher is done.")


def researcher(background_tasks: Any = None, inner_background: Any = None) -> tuple[Agent, list[str]]:
    ran: list[str] = []

    @tool(background=inner_background)
    def lookup(topic: str) -> str:
        """Look a topic up."""
        ran.append(topic)
        return f"facts on {topic}"

    script = [calls(call("lookup", {"topic": "solana"})), "Solana is fast."]
    sub = Agent(
        "researcher",
        description="Finds facts.",
        model=ScriptedModel(script),
        tools=[lookup],
        background_tasks=background_tasks,
    )
    return sub, ran


async def test_a_supervisor_opts_a_subagent_in_by_its_name(tmp_path: Path) -> None:
    sub, ran = researcher()
    boss = Agent(
        "boss",
        model=ScriptedModel(delegating),
        agents=[sub],
        background_tasks={"tools": {"researcher": {"enabled": True}}},
    )
    async with app_with(tmp_path, boss) as app:
        assert app.tasks is not None
        stream = boss.stream_until_idle("Research solana", thread="t1", resource="u1")
        result = await stream.result()
    (task,) = result.background_tasks
    assert (task.tool_name, task.status, task.result) == ("agent-researcher", "completed", "Solana is fast.")
    assert ran == ["solana"] and result.text == "Delegated.\n\nThe researcher is done."


async def test_a_subagent_with_background_tools_is_dispatched_whole_and_its_tools_run_inside(tmp_path: Path) -> None:
    sub, ran = researcher(inner_background={"enabled": True})
    boss = Agent("boss", model=ScriptedModel(delegating), agents=[sub])
    app = app_with(tmp_path, boss)
    app.add_agent(sub)  # on its own the subagent would send `lookup` to the background
    async with app:
        assert app.tasks is not None
        result = await boss.stream_until_idle("Research solana", thread="t1", resource="u1").result()
        every = await app.tasks.list_tasks(per_page=50)
    assert [t.tool_name for t in every.tasks] == ["agent-researcher"]  # one task: the delegation, not lookup
    assert every.tasks[0].result == "Solana is fast." and ran == ["solana"]
    assert result.text.endswith("The researcher is done.")


async def test_an_inherited_dispatch_waits_as_the_subagent_says(tmp_path: Path) -> None:
    sub, _ = researcher(background_tasks={"wait_timeout_ms": 10_000}, inner_background=True)
    boss = Agent("boss", model=ScriptedModel(delegating), agents=[sub])
    async with app_with(tmp_path, boss):
        result = await boss.generate("Research solana")
    (delegation,) = result.tool_results
    assert delegation.result == "Solana is fast."  # it ended within the wait, so the step read its answer


async def test_cleanup_deletes_finished_tasks_past_their_ttl(tmp_path: Path) -> None:
    @tool(background=True)
    def quick() -> str:
        """Quick."""
        return "ok"

    agent = Agent("a", model=ScriptedModel([calls(call("quick")), "ok"]), tools=[quick])
    async with app_with(tmp_path, agent, cleanup={"completed_ttl_ms": 3_600_000}) as app:
        assert app.tasks is not None
        watching = asyncio.create_task(until(app.tasks, lambda c: c.type == "background-task-completed"))
        await asyncio.sleep(0)
        result = await agent.generate("go")
        await watching
        task_id = result.tool_results[0].result["task_id"]
        assert await app.tasks.cleanup() == 0 and await app.tasks.get_task(task_id) is not None  # within its TTL
    async with app_with(tmp_path, Agent("b", model=ScriptedModel(["ok"])), cleanup={"completed_ttl_ms": 0}) as later:
        assert later.tasks is not None
        assert await later.tasks.cleanup() == 1 and await later.tasks.get_task(task_id) is None


async def test_a_task_that_ends_before_its_run_saves_still_reaches_the_thread(tmp_path: Path) -> None:
    ended = asyncio.Event()

    @tool(background={"enabled": True, "on_complete": lambda task: ended.set()})
    def quick() -> str:
        """Quick."""
        return "the real result"

    async def script(request: ModelRequest) -> ScriptedTurn:
        if request.messages[-1].role == "user":
            return calls(call("quick"))
        await asyncio.wait_for(ended.wait(), 30)  # the task ends, and writes nothing, before the run saves
        return ScriptedTurn(text="ok")

    agent = Agent("a", model=ScriptedModel(script), tools=[quick])
    async with app_with(tmp_path, agent) as app:
        result = await agent.generate("go", thread="t1")
        assert result.tool_results[0].result["status"] == "running"  # the step read the first answer
        saved = await app.storage.list_messages("t1")
    (tool_message,) = [m for m in saved if m.role == "tool"]
    assert tool_message.content[0]["result"] == "the real result"


async def test_an_observer_that_stops_reading_is_cut_off_not_left_to_grow(monkeypatch: pytest.MonkeyPatch) -> None:
    from lodestar.background import pubsub

    monkeypatch.setattr(pubsub, "QUEUE_LIMIT", 3)
    hub = pubsub.PubSub()
    slow = hub.subscribe(lambda task: True)
    task = BackgroundTask(id="task_1", tool_name="t", tool_call_id="c", agent_id="a", run_id="r")
    for _ in range(5):
        hub.publish(pubsub.Update("running", task))
    received = [await slow.get() for _ in range(3)]  # what fitted is still read
    assert len(received) == 3
    with pytest.raises(pubsub.ObserverTooSlow, match="fell 3 task updates behind"):
        await slow.get()
    hub.publish(pubsub.Update("running", task))  # nothing more is kept for it


@pytest.mark.parametrize("provider", ["openai_server", "anthropic_server"])
async def test_the_next_turn_sends_the_provider_the_tasks_result_in_place_of_its_first_answer(
    tmp_path: Path, provider: str, request: pytest.FixtureRequest
) -> None:
    server: LLMServer = request.getfixturevalue(provider)
    gate = Gate()
    gate.opened.set()
    server.script(
        Turn(tool_calls=[("research", {"topic": "solana"})]),
        Turn(text="Research started."),
        Turn(text="Solana is fast."),
    )
    agent = Agent("a", model=model_for(server), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent):
        result = await agent.stream_until_idle("Research solana", thread="t1", resource="u1").result()
    assert result.text == "Research started.\n\nSolana is fast."
    last = json.dumps(server.requests[-1].body)
    assert "notes on solana" in last and "is running in the background" not in last
    assert "[background tasks finished] research" in last


async def test_enqueue_outside_a_run_returns_the_task_as_it_started_and_refuses_unknown_pairs(tmp_path: Path) -> None:
    gate = Gate()
    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[research_tool(gate)])
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        task = await app.tasks.enqueue("a", "research", {"topic": "x"})
        assert task.status == "running" and task.attempt == 1
        with pytest.raises(KeyError, match="no tool 'nope' of agent 'a' here; agent/tool pairs: a/research"):
            await app.tasks.enqueue("a", "nope")
        with pytest.raises(ValueError, match="unknown task status 'done'"):
            app.tasks.stream(status="done").__aiter__()
            await app.tasks.stream(status="done").__anext__()
        gate.opened.set()


async def test_stream_until_idle_carries_failed_and_cancelled_tasks_and_continues_for_them(tmp_path: Path) -> None:
    gate = Gate()

    @tool(background=True)
    def broken(topic: str) -> str:
        """Always fails."""
        raise RuntimeError(f"no source for {topic}")

    def script(request: ModelRequest) -> ScriptedTurn:
        last = request.messages[-1]
        if last.role == "user" and last.text.startswith("[background tasks finished]"):
            return ScriptedTurn(text=f"Noted: {last.text}")
        if last.role == "user":
            return calls(call("broken", {"topic": "a"}), call("research", {"topic": "b"}))
        return ScriptedTurn(text="Both started.")

    agent = Agent("a", model=ScriptedModel(script), tools=[broken, research_tool(gate)])
    async with app_with(tmp_path, agent) as app:
        assert app.tasks is not None
        kinds: list[str] = []
        async for chunk in agent.stream_until_idle("go", thread="t1"):
            kinds.append(chunk.type)
            if chunk.type == "background-task-running" and chunk.payload.tool_name == "research":
                await gate.started.get()
                await app.tasks.cancel(chunk.payload.task_id)
    assert "background-task-failed" in kinds and "background-task-cancelled" in kinds
    assert kinds.count("start") >= 2  # a turn followed for what ended
