"""The `sampling` model against a real MCP client with a sampling callback."""

from __future__ import annotations

import pytest
from mcp import Client
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import (
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    SamplingCapability,
    SamplingToolsCapability,
    TextContent,
    ToolResultContent,
    ToolUseContent,
)

from lodestar import Agent, tool
from lodestar.server.sampling import sampler_for

pytestmark = pytest.mark.anyio


@tool
def weather(city: str) -> str:
    """Today's weather in a city."""
    return f"sunny in {city}"


def build_server(model: str = "sampling") -> tuple[MCPServer, list[str]]:
    server = MCPServer("sampling-test")
    agent = Agent("helper", instructions="Answer briefly.", model=model, tools=[weather])
    finishes: list[str] = []

    @server.tool()
    async def ask(message: str, ctx: Context) -> str:
        result = await agent.generate(message, sampler=sampler_for(ctx))
        finishes.append(result.finish_reason)
        return result.error.message if result.error else result.text

    return server, finishes


hints_seen: list[list[str]] = []


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


@pytest.mark.parametrize("model", ["sampling", "sampling/claude"])
async def test_sampling_answers_with_the_clients_model(model: str) -> None:
    server, finishes = build_server(model)
    hints_seen.clear()
    async with Client(server, mode="legacy", sampling_callback=plain_callback) as client:
        result = await client.call_tool("ask", {"message": "hello there"})
    assert result.content[0].text == "echo: hello there"
    assert finishes == ["stop"]
    assert hints_seen == [["claude"] if model == "sampling/claude" else []]


async def test_sampling_runs_tool_calls_when_the_client_supports_them() -> None:
    server, finishes = build_server()
    caps = SamplingCapability(tools=SamplingToolsCapability())
    async with Client(server, mode="legacy", sampling_callback=tools_callback, sampling_capabilities=caps) as client:
        result = await client.call_tool("ask", {"message": "weather in Oslo?"})
    assert result.content[0].text == "The tool said: sunny in Oslo"
    assert finishes == ["stop"]


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_no_sampling_client_gives_a_clear_error(mode: str) -> None:
    server, finishes = build_server()
    async with Client(server, mode=mode) as client:
        result = await client.call_tool("ask", {"message": "hello"})
    text = result.content[0].text
    assert "no connected client offers sampling" in text
    assert "LODESTAR_MODEL" in text
    assert finishes == ["error"]
