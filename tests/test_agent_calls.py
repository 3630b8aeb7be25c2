"""The ask tools with the real `mcp.Client` against the server in this process: the model chosen per call (the
client's through sampling, on both protocols), cancellation, debug logs, and the result budget."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import write_corpus
from llm_servers import LLMServer, Turn
from mcp import Client, InputRequiredRoundsExceededError, MCPDeprecationWarning
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResultWithTools,
    LoggingMessageNotificationParams,
    SamplingCapability,
    SamplingToolsCapability,
    TextContent,
    ToolResultContent,
    ToolUseContent,
)
from test_agent_runs import model_for
from test_agent_server import Progress, text_of
from test_background import Gate, research_tool

from lodestar import Agent, Lodestar, tool
from lodestar.docs.service import DocsService
from lodestar.server import sampling_rounds
from lodestar.server.agent_host import AgentHost
from lodestar.server.app import build_server
from lodestar.settings import Settings
from lodestar.storage import SQLiteStorage
from lodestar.storage.models import StoredMessage

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]  # auto negotiates 2026-07-28 with our server
TIMEOUT_S = 30  # a bound that only fires on a hang


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny in {city}"


class NotedStorage(SQLiteStorage):
    """A real SQLite storage that tells what it wrote to a thread: a cancelled run saves as it closes, after its
    client has gone, so a test waits for those writes before reading the thread."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes: asyncio.Queue[tuple[str, str]] = asyncio.Queue()

    async def add_messages(self, thread_id: str, messages: list[StoredMessage]) -> None:
        await super().add_messages(thread_id, messages)
        self.writes.put_nowait(("messages", thread_id))

    async def set_tool_result(self, thread_id: str, tool_call_id: str, result: Any, is_error: bool) -> bool:
        replaced = await super().set_tool_result(thread_id, tool_call_id, result, is_error)
        if replaced:
            self.writes.put_nowait(("result", thread_id))
        return replaced


@asynccontextmanager
async def serve(tmp_path: Path, *agents: Agent, **client_options: Any) -> AsyncIterator[Client]:
    """The server with an app of `agents` (background tasks on, a real SQLite file), and a Client on it."""
    settings = Settings(cache_dir=tmp_path / "cache", **client_options.pop("settings", {}))
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], settings.cache_dir)
    docs.load()
    app = Lodestar(
        agents,
        storage=NotedStorage(tmp_path / "agents.db"),
        background_tasks={"enabled": True, "poll_interval_ms": 5},
    )
    server = build_server(settings, docs, AgentHost(docs, [("test", app)], builtin_agent=False))
    with anyio.fail_after(TIMEOUT_S):
        async with Client(server, **client_options) as client:
            yield client


@pytest.fixture(autouse=True)
async def no_parked_runs() -> AsyncIterator[None]:
    """Sampling runs a test leaves waiting for the client are stopped, so none outlives its event loop."""
    yield
    runs = [sampling_rounds._parked.pop(key).task for key in list(sampling_rounds._parked)]
    for run in runs:
        run.cancel()
    if runs:
        await asyncio.wait(runs)


@pytest.mark.parametrize("mode", MODES)
async def test_no_model_anywhere_names_the_three_ways(tmp_path: Path, mode: str) -> None:
    async with serve(tmp_path, Agent("helper"), mode=mode) as client:
        result = await client.call_tool("ask_helper", {"message": "hello"})
    assert result.is_error
    text = text_of(result)
    assert "agent 'helper' has no model of its own" in text
    assert "Agent(model=" in text and "--model (or set LODESTAR_MODEL)" in text and "supports sampling" in text


async def sampled(context: object, params: CreateMessageRequestParams) -> CreateMessageResultWithTools:
    """The client's model: calls the weather tool, then answers from its result."""
    results = [b for b in params.messages[-1].content_as_list if isinstance(b, ToolResultContent)]
    if not results:
        call = ToolUseContent(id="call_1", name="weather", input={"city": "Oslo"})
        return CreateMessageResultWithTools(role="assistant", model="m", stop_reason="toolUse", content=[call])
    answer = TextContent(text=f"The tool said: {results[0].content[0].text}")
    return CreateMessageResultWithTools(role="assistant", model="m", stop_reason="endTurn", content=[answer])


async def ask_with_sampling(tmp_path: Path, mode: str) -> tuple[Any, Progress]:
    progress = Progress()
    tools = SamplingCapability(tools=SamplingToolsCapability())
    options = {"sampling_callback": sampled, "sampling_capabilities": tools}
    async with serve(tmp_path, Agent("helper", tools=[weather]), mode=mode, **options) as client:
        result = await client.call_tool("ask_helper", {"message": "weather in Oslo?"}, progress_callback=progress)
    assert not result.is_error, text_of(result)
    return result, progress


async def test_sampling_answers_on_both_protocols_with_the_same_progress(tmp_path: Path) -> None:
    legacy, legacy_progress = await ask_with_sampling(tmp_path / "legacy", "legacy")
    rounds, rounds_progress = await ask_with_sampling(tmp_path / "rounds", "auto")

    for result in (legacy, rounds):
        answer = result.structured_content
        assert answer["text"] == "The tool said: sunny in Oslo" and answer["steps"] == 2
        assert answer["tool_calls"][0]["result"] == "sunny in Oslo"
    for progress in (legacy_progress, rounds_progress):
        assert [value for value, _, _ in progress.events] == list(range(1, len(progress.events) + 1))
    # Across the rounds of 2026-07-28 (one per model turn) none is lost and they keep their order.
    assert rounds_progress.lines == legacy_progress.lines
    assert legacy_progress.lines[0] == "start helper" and legacy_progress.lines[-1] == "finish stop"
    assert 'tool-call weather {"city": "Oslo"}' in legacy_progress.lines
    assert "tool-result weather sunny in Oslo" in legacy_progress.lines


@pytest.mark.parametrize("mode", MODES)
async def test_cancelling_an_ask_stops_the_run_and_leaves_tasks_thread_and_server_going(
    tmp_path: Path, openai_server: LLMServer, mode: str
) -> None:
    gate, started, stopped = Gate(), asyncio.Event(), asyncio.Event()

    @tool
    async def wait() -> str:
        """Waits until cancelled."""
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.set()
            raise
        return "never"

    openai_server.script(
        Turn(tool_calls=[("research", {"topic": "solana"}), ("wait", {})]), Turn(text="You asked about solana.")
    )
    agent = Agent("a", model=model_for(openai_server), tools=[research_tool(gate), wait])
    async with serve(tmp_path, agent, mode=mode) as client:
        async with anyio.create_task_group() as group:
            group.start_soon(client.call_tool, "ask_a", {"message": "Research solana", "thread_id": "t1"})
            await started.wait()
            await gate.started.get()
            group.cancel_scope.cancel()
        await stopped.wait()  # the tool saw the cancellation
        assert await written(agent) == ("messages", "t1")  # the run saved what was said as it closed

        found = await client.call_tool("search_docs", {"query": "threads"})
        running = (await client.call_tool("list_background_tasks", {"thread_id": "t1"})).structured_content
        gate.opened.set()
        watched = (await client.call_tool("watch_background_tasks", {"thread_id": "t1"})).structured_content
        task_id = running["tasks"][0]["id"]
        task = (await client.call_tool("get_background_task", {"task_id": task_id})).structured_content
        saved = [m.role for m in await agent.get_memory().messages("t1")]
        again = await client.call_tool("ask_a", {"message": "What did I ask?", "thread_id": "t1"})

    assert found.structured_content["hits"], text_of(found)
    assert [(t["tool_name"], t["status"]) for t in running["tasks"]] == [("research", "running")]
    assert watched["idle"] is True and task["status"] == "completed" and task["result"] == "notes on solana"
    assert saved == ["user"]  # what was said before the cancel: the question (the step never finished)
    assert not again.is_error and again.structured_content["text"] == "You asked about solana."
    second = json.dumps(openai_server.requests[-1].body["messages"])
    assert "Research solana" in second and "What did I ask?" in second


async def written(agent: Agent) -> tuple[str, str]:
    """The next write to a thread; waits for it."""
    assert isinstance(agent.storage, NotedStorage)
    return await agent.storage.writes.get()


async def test_a_task_that_ended_before_the_ask_was_cancelled_leaves_its_result_in_the_thread(
    tmp_path: Path, openai_server: LLMServer
) -> None:
    """The call's "started" answer is saved when the run closes; the task had ended, so its result replaces it then."""
    gate, started, completed = Gate(), asyncio.Event(), asyncio.Event()
    gate.opened.set()

    @tool
    async def wait() -> str:
        """Waits until cancelled."""
        started.set()
        await asyncio.Event().wait()
        return "never"

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message == "background-task-completed research":
            completed.set()

    openai_server.script(Turn(tool_calls=[("research", {"topic": "solana"})]), Turn(tool_calls=[("wait", {})]))
    agent = Agent("a", model=model_for(openai_server), tools=[research_tool(gate), wait])
    async with serve(tmp_path, agent) as client:
        async with anyio.create_task_group() as group:
            arguments = {"message": "Research solana", "thread_id": "t1"}
            group.start_soon(partial(client.call_tool, "ask_a", arguments, progress_callback=on_progress))
            await started.wait()  # the second step runs: the first one's call and its answer are in the run
            await completed.wait()
            group.cancel_scope.cancel()
        assert await written(agent) == ("messages", "t1")
        assert await written(agent) == ("result", "t1")  # never comes while the closed run leaves it unsettled
        messages = await agent.get_memory().messages("t1")
    assert [m.role for m in messages] == ["user", "assistant", "tool"]
    assert messages[-1].content[0].result == "notes on solana"


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("debug", [True, False])
async def test_debug_logs_carry_each_chunk_only_when_asked(
    tmp_path: Path, openai_server: LLMServer, mode: str, debug: bool
) -> None:
    logs: list[LoggingMessageNotificationParams] = []

    async def on_log(params: LoggingMessageNotificationParams) -> None:
        logs.append(params)

    openai_server.script(Turn(tool_calls=[("weather", {"city": "Oslo"})]), Turn(text="It is sunny in Oslo today."))
    agent = Agent("a", model=model_for(openai_server), tools=[weather])
    per_request = {"log_level": "debug"} if debug and mode == "auto" else {}  # 2026-07-28: in each request's _meta
    async with serve(tmp_path, agent, mode=mode, logging_callback=on_log, **per_request) as client:
        if debug and mode == "legacy":
            with pytest.warns(MCPDeprecationWarning):  # 2025-11-25: for the connection (deprecated from 2026-07-28)
                await client.set_logging_level("debug")
        progress = Progress()
        result = await client.call_tool("ask_a", {"message": "weather?"}, progress_callback=progress)
    assert not result.is_error, text_of(result)
    chunks = [log for log in logs if log.logger == "lodestar.chunks"]
    if not debug:
        assert chunks == []
        return
    assert {log.level for log in chunks} == {"debug"}
    kinds = [log.data["type"] for log in chunks]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("tool-call-delta") >= 2
    text = "".join(log.data["payload"]["text"] for log in chunks if log.data["type"] == "text-delta")
    assert text == "It is sunny in Oslo today."
    shown = [line.split()[0] for line in progress.lines]
    assert [k for k in shown if not k.endswith("-delta")] == [k for k in kinds if not k.endswith("-delta")]


def wire_size(structured: dict[str, Any]) -> int:
    return len(json.dumps(structured, ensure_ascii=False, separators=(",", ":")))


async def test_long_tool_results_are_cut_to_the_budget_and_the_text_stays_whole(
    tmp_path: Path, openai_server: LLMServer
) -> None:
    answer_text = "A long answer. " * 400  # 6,000 characters, kept whole
    openai_server.script(
        Turn(tool_calls=[("huge", {"size": 200_000}), ("quotes", {"count": 5_000}), ("weather", {"city": "Oslo"})]),
        Turn(text=answer_text),
    )

    @tool
    def huge(size: int) -> str:
        """A very long result."""
        return "x" * size

    @tool
    def quotes(count: int) -> dict[str, list[str]]:
        """A long result whose JSON is mostly quotes, each written escaped inside a cut string."""
        return {"lines": ['say "hi"'] * count}

    quoted = {"lines": ['say "hi"'] * 5_000}

    agent = Agent("a", model=model_for(openai_server), tools=[huge, quotes, weather])
    async with serve(tmp_path, agent) as client:
        result = await client.call_tool("ask_a", {"message": "go", "thread_id": "t1"})
        saved = await agent.get_memory().messages("t1")
    answer = result.structured_content
    assert answer is not None and answer["text"] == answer_text and answer["cut"] == 2
    assert wire_size(answer) <= 20_000 * 4  # the default budget, 20,000 tokens of 4 characters
    big, other, small = (call["result"] for call in answer["tool_calls"])
    for cut, whole in ((big, "x" * 200_000), (other, json.dumps(quoted))):
        kept = cut.index("… [cut: ")
        assert cut[:kept] == whole[:kept] and kept > 1_000
        rest = len(whole) - kept
        assert cut[kept:] == f"… [cut: {rest} more characters; the full result is in memory thread t1]"
    assert small == "sunny in Oslo"
    (tool_message,) = [m for m in saved if m.role == "tool"]
    assert [part.result for part in tool_message.content[:2]] == ["x" * 200_000, quoted]  # kept whole


async def test_the_clients_round_limit_ends_a_sampling_run_saying_how_to_raise_it(tmp_path: Path) -> None:
    """On 2026-07-28 each model turn is one round: a tool call and its answer take two, over a limit of one."""
    tools = SamplingCapability(tools=SamplingToolsCapability())
    options = {"sampling_callback": sampled, "sampling_capabilities": tools, "input_required_max_rounds": 1}
    async with serve(tmp_path, Agent("helper", tools=[weather]), mode="auto", **options) as client:
        with pytest.raises(InputRequiredRoundsExceededError, match="raise input_required_max_rounds on the Client"):
            await client.call_tool("ask_helper", {"message": "weather in Oslo?"})
        answered = await client.call_tool("search_docs", {"query": "threads"})  # the server goes on serving
    assert not answered.is_error


async def test_the_instructions_name_the_agent_and_task_tools_only_when_served(tmp_path: Path) -> None:
    from lodestar.server.app import instructions

    docs = DocsService([], tmp_path / "cache")
    plain = Lodestar([Agent("helper")], storage=SQLiteStorage(tmp_path / "plain.db"))
    tasking = Lodestar([Agent("helper")], storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=True)
    docs_only = instructions(None)
    agents_only = instructions(AgentHost(docs, [("plain", plain)], builtin_agent=False))
    with_tasks = instructions(AgentHost(docs, [("tasks", tasking)], builtin_agent=False))
    assert "ask_" not in docs_only and "background" not in docs_only
    assert "ask_<agent_id>" in agents_only and "list_background_tasks" not in agents_only
    assert "ask_<agent_id>" in with_tasks and "list_background_tasks" in with_tasks


async def test_background_tools_are_those_the_app_would_run_in_the_background(tmp_path: Path) -> None:
    """The agent's own settings count (all its tools, or none), and an app without background tasks runs none."""
    docs = DocsService([], tmp_path / "cache")
    every = Agent("every", tools=[weather], background_tasks={"tools": "all"})
    never = Agent("never", tools=[weather, research_tool(Gate())], background_tasks={"disabled": True})
    tasking = Lodestar([every, never], storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=True)
    inline = Lodestar([Agent("inline", tools=[research_tool(Gate())])], storage=SQLiteStorage(tmp_path / "p.db"))
    host = AgentHost(docs, [("tasks", tasking), ("inline", inline)], builtin_agent=True)
    listed = {info.id: info.background_tools for info in host.infos}
    assert listed == {"every": ["weather"], "never": [], "inline": [], "docs": ["research"]}
    alone = AgentHost(docs, [("inline", Lodestar([], storage=SQLiteStorage(tmp_path / "q.db")))], builtin_agent=True)
    assert [(info.id, info.background_tools) for info in alone.infos] == [("docs", [])]  # joined an app without
