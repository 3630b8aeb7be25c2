"""The `sampling` model against a real MCP client with a sampling callback, on protocol 2025-11-25 (the server
asks mid-call) and 2026-07-28 (the tool call returns input-required rounds), in memory and over streamable HTTP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    ImageContent,
    InputRequiredResult,
    SamplingCapability,
    SamplingToolsCapability,
    TextContent,
    ToolResultContent,
    ToolUseContent,
)

from lodestar import Agent, Lodestar, tool
from lodestar.runtime.result import RunResult
from lodestar.server import sampling_rounds
from lodestar.server.sampling import run_with_sampling
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio

MODES = ["legacy", "auto"]  # auto negotiates 2026-07-28 with our server
TOOLS = SamplingCapability(tools=SamplingToolsCapability())
weather_calls: list[str] = []


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    weather_calls.append(city)
    return f"sunny in {city}"


class Served:
    """A test MCP server with one `ask` tool running an agent; it records each run's outcome."""

    def __init__(self, agent: Agent) -> None:
        self.memory: dict[str, str] = {}  # thread and resource, once the agent has storage
        self.server = MCPServer("sampling-test")
        self.agent = agent
        self.results: list[RunResult] = []
        self.versions: list[str | None] = []

        @self.server.tool()
        async def ask(message: str, ctx: Context) -> str | InputRequiredResult:
            self.versions.append(ctx.protocol_version)
            return await run_with_sampling(ctx, lambda sampler: self.run(agent, message, sampler))

    async def run(self, agent: Agent, message: str, sampler: Any) -> str:
        result = await agent.generate(message, sampler=sampler, **self.memory)
        self.results.append(result)
        return result.error.message if result.error else result.text


def helper(model: str = "sampling") -> Served:
    weather_calls.clear()
    return Served(Agent("helper", instructions="Answer briefly.", model=model, tools=[weather]))


hints_seen: list[list[str]] = []


@pytest.fixture(autouse=True)
async def no_parked_runs() -> AsyncIterator[None]:
    """Runs a test leaves waiting for the client are stopped, so none outlives its event loop."""
    yield
    runs = [sampling_rounds._parked.pop(key).task for key in list(sampling_rounds._parked)]
    for run in runs:
        run.cancel()
    if runs:
        await asyncio.wait(runs)


async def plain_callback(context: object, params: CreateMessageRequestParams) -> CreateMessageResult:
    assert params.system_prompt == "Answer briefly."
    prefs = params.model_preferences
    hints_seen.append([h.name for h in prefs.hints or []] if prefs else [])
    last = params.messages[-1].content
    return CreateMessageResult(
        role="assistant", model="client-model", stop_reason="endTurn", content=TextContent(text=f"echo: {last.text}")
    )


async def tools_callback(context: object, params: CreateMessageRequestParams) -> CreateMessageResultWithTools:
    last = params.messages[-1].content_as_list
    results = [block for block in last if isinstance(block, ToolResultContent)]
    if not results:
        assert [t.name for t in params.tools or []] == ["weather"]
        call = ToolUseContent(id="call_1", name="weather", input={"city": "Oslo"})
        return CreateMessageResultWithTools(role="assistant", model="m", stop_reason="toolUse", content=[call])
    answer = TextContent(text=f"The tool said: {results[0].content[0].text}")
    return CreateMessageResultWithTools(role="assistant", model="m", stop_reason="endTurn", content=[answer])


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("model", ["sampling", "sampling/claude"])
async def test_sampling_answers_with_the_clients_model(model: str, mode: str) -> None:
    served = helper(model)
    hints_seen.clear()
    async with Client(served.server, mode=mode, sampling_callback=plain_callback) as client:
        result = await client.call_tool("ask", {"message": "hello there"})
    assert result.content[0].text == "echo: hello there"
    assert [r.finish_reason for r in served.results] == ["stop"]
    assert hints_seen == [["claude"] if model == "sampling/claude" else []]
    expected_rounds = 1 if mode == "legacy" else 2  # one model turn: asked in round 1, answered in round 2
    assert served.versions == [("2025-11-25" if mode == "legacy" else "2026-07-28")] * expected_rounds


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_runs_tool_calls_once_and_saves_the_thread_once(mode: str, tmp_path: Path) -> None:
    served = helper()
    storage = SQLiteStorage(tmp_path / "memory.db")
    Lodestar(agents=[served.agent], storage=storage)
    served.memory = {"thread": "t1", "resource": "r1"}
    async with Client(served.server, mode=mode, sampling_callback=tools_callback, sampling_capabilities=TOOLS) as c:
        result = await c.call_tool("ask", {"message": "weather in Oslo?"})
    assert result.content[0].text == "The tool said: sunny in Oslo"
    assert weather_calls == ["Oslo"]
    assert len(served.results) == 1 and served.results[0].finish_reason == "stop"
    messages = await served.agent.get_memory().messages("t1")
    assert [m.role for m in messages] == ["user", "assistant", "tool", "assistant"]
    assert messages[-1].text == "The tool said: sunny in Oslo"


@pytest.mark.parametrize("mode", MODES)
async def test_no_sampling_client_gives_a_clear_error(mode: str) -> None:
    served = helper()
    async with Client(served.server, mode=mode) as client:
        result = await client.call_tool("ask", {"message": "hello"})
    text = result.content[0].text
    assert "no connected client offers sampling" in text
    assert "LODESTAR_MODEL" in text
    assert [r.finish_reason for r in served.results] == ["error"]


async def test_parallel_subagents_sample_in_the_same_rounds() -> None:
    """Two subagents called in one step both wait on the client; their questions reach it together."""
    experts = [
        Agent(name, description=f"The {name} expert.", instructions=f"You are {name}.", model="sampling")
        for name in ("alpha", "beta")
    ]
    served = Served(Agent("lead", instructions="Delegate.", model="sampling", agents=experts))
    asked_by: list[str | None] = []

    async def callback(context: object, params: CreateMessageRequestParams) -> Any:
        asked_by.append(params.system_prompt)
        if params.system_prompt != "Delegate.":
            present = TextContent(text=f"{params.system_prompt} Present.")
            return CreateMessageResult(role="assistant", model="m", content=present)
        if len(params.messages) == 1:
            content: list[Any] = [
                ToolUseContent(id=f"c_{name}", name=f"agent-{name}", input={"prompt": "Roll call."})
                for name in ("alpha", "beta")
            ]
        else:
            results = params.messages[-1].content_as_list
            content = [TextContent(text=" | ".join(r.content[0].text for r in results))]
        return CreateMessageResultWithTools(role="assistant", model="m", content=content)

    async with Client(served.server, sampling_callback=callback, sampling_capabilities=TOOLS) as client:
        result = await client.call_tool("ask", {"message": "Who is here?"})
    assert result.content[0].text == "You are alpha. Present. | You are beta. Present."
    assert sorted(asked_by[1:3]) == ["You are alpha.", "You are beta."]
    assert len(served.versions) == 4  # lead asks, both experts ask in one round, lead answers, result


async def test_a_run_the_client_leaves_waiting_ends_and_the_next_round_gets_its_outcome(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sampling_rounds, "ANSWER_TIMEOUT_S", 0.05)
    served = helper()
    async with Client(served.server, sampling_callback=plain_callback) as client:
        first = await client.session.call_tool("ask", {"message": "hi"}, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        await asyncio.wait([parked.task for parked in sampling_rounds._parked.values()])
        answer = CreateMessageResult(role="assistant", model="m", content=TextContent(text="too late"))
        late = await client.session.call_tool(
            "ask", {"message": "hi"}, input_responses={"sample-1": answer}, request_state=first.request_state
        )
    expected = "sampling: the MCP client did not come back with the sampling answer within 0.05 s"
    assert late.content[0].text == expected
    assert served.results[0].error is not None and served.results[0].error.message == expected
    assert not sampling_rounds._parked  # the round that took the outcome let the run go


@pytest.mark.parametrize(
    ("how", "expected"),
    [
        ("restart", "no longer waiting for the client's sampling answer"),
        ("cancel", "the agent run was cancelled before it finished"),
    ],
)
async def test_a_round_whose_run_is_gone_says_to_call_again(how: str, expected: str) -> None:
    served = helper()

    async def forgetful(context: object, params: CreateMessageRequestParams) -> CreateMessageResult:
        for key in list(sampling_rounds._parked):
            parked = sampling_rounds._parked.pop(key) if how == "restart" else sampling_rounds._parked[key]
            parked.task.cancel()
        return await plain_callback(context, params)

    async with Client(served.server, sampling_callback=forgetful) as client:
        result = await client.call_tool("ask", {"message": "hello"})
    assert result.is_error
    assert expected in result.content[0].text
    assert "call the tool again" in result.content[0].text


async def test_cancelling_the_tool_call_stops_the_parked_run() -> None:
    started, stopped = asyncio.Event(), asyncio.Event()

    @tool
    async def slow() -> str:
        """Takes forever."""
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            stopped.set()
        return "never"

    served = Served(Agent("helper", instructions="Answer briefly.", model="sampling", tools=[slow]))

    async def callback(context: object, params: CreateMessageRequestParams) -> CreateMessageResultWithTools:
        call = ToolUseContent(id="call_1", name="slow", input={})
        return CreateMessageResultWithTools(role="assistant", model="m", stop_reason="toolUse", content=[call])

    async with Client(served.server, sampling_callback=callback, sampling_capabilities=TOOLS) as client:
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.call_tool, "ask", {"message": "go"})
            await started.wait()
            runs = [parked.task for parked in sampling_rounds._parked.values()]
            tg.cancel_scope.cancel()
        await asyncio.wait(runs)
    assert stopped.is_set() and runs[0].cancelled()
    assert served.results == []  # the run never finished on its own
    assert not sampling_rounds._parked


@asynccontextmanager
async def over_http(server: MCPServer, *, stateless: bool = False) -> AsyncIterator[str]:
    """Serves the MCP server over streamable HTTP from uvicorn on its own thread and loop."""
    sock = socket.create_server(("127.0.0.1", 0))
    app = server.streamable_http_app(stateless_http=stateless)
    config = uvicorn.Config(app, lifespan="on", log_level="warning")
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/mcp"
    finally:
        uv.should_exit = True
        await asyncio.to_thread(thread.join, 10)
        sock.close()


@pytest.mark.parametrize("mode", MODES)
async def test_sampling_with_tools_over_streamable_http(mode: str) -> None:
    served = helper()
    async with over_http(served.server) as url, httpx2.AsyncClient(timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode=mode, sampling_callback=tools_callback, sampling_capabilities=TOOLS) as c:
            result = await c.call_tool("ask", {"message": "weather in Oslo?"})
    assert result.content[0].text == "The tool said: sunny in Oslo"
    assert weather_calls == ["Oslo"]
    assert served.versions[0] == ("2025-11-25" if mode == "legacy" else "2026-07-28")


async def test_a_replayed_round_cannot_drive_the_run_twice() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    @tool
    async def gate() -> str:
        """Waits for the test."""
        started.set()
        await release.wait()
        return "open"

    served = Served(Agent("helper", instructions="Answer briefly.", model="sampling", tools=[gate]))
    async with Client(served.server, sampling_capabilities=TOOLS, sampling_callback=tools_callback) as client:
        first = await client.session.call_tool("ask", {"message": "go"}, allow_input_required=True)
        assert isinstance(first, InputRequiredResult)
        call = ToolUseContent(id="call_1", name="gate", input={})
        answer = CreateMessageResultWithTools(role="assistant", model="m", stop_reason="toolUse", content=[call])
        second_round = {"input_responses": {"sample-1": answer}, "request_state": first.request_state}
        async with anyio.create_task_group() as tg:
            rounds: list[Any] = []

            async def send() -> None:
                rounds.append(
                    await client.session.call_tool("ask", {"message": "go"}, allow_input_required=True, **second_round)
                )

            tg.start_soon(send)
            await started.wait()
            replay = await client.session.call_tool("ask", {"message": "go"}, allow_input_required=True, **second_round)
            release.set()
    assert replay.is_error and "already in a round" in replay.content[0].text
    assert isinstance(rounds[0], InputRequiredResult)  # the real round goes on: the model's next turn
    assert rounds[0].input_requests is not None and list(rounds[0].input_requests) == ["sample-2"]


async def test_an_older_client_on_stateless_http_is_told_why_sampling_cannot_work() -> None:
    """Stateless HTTP keeps no handshake, so the server cannot even see that a 2025-11-25 client offers sampling."""
    served = helper()
    async with over_http(served.server, stateless=True) as url, httpx2.AsyncClient(timeout=30) as http:
        transport = streamable_http_client(url, http_client=http)
        async with Client(transport, mode="legacy", sampling_callback=plain_callback) as client:
            result = await client.call_tool("ask", {"message": "hello"})
    text = result.content[0].text
    assert "or over stateless HTTP with a client older than protocol 2026-07-28" in text


@pytest.mark.parametrize("mode", MODES)
async def test_an_answer_without_text_is_an_error_not_an_empty_reply(mode: str) -> None:
    served = helper()

    async def picture(context: object, params: CreateMessageRequestParams) -> CreateMessageResult:
        image = ImageContent(data="aGk=", mime_type="image/png")
        return CreateMessageResult(role="assistant", model="m", content=image)

    async with Client(served.server, mode=mode, sampling_callback=picture) as client:
        result = await client.call_tool("ask", {"message": "draw"})
    assert result.content[0].text == "sampling: the client's model answered with image content only; agents read text"
