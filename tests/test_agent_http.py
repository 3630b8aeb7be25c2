"""The agent and task tools over streamable HTTP: `python -m lodestar --http --port 0 --auth-token ... --app ...` in
a subprocess, the real `mcp.Client` with progress over SSE, and the test OpenAI-compatible server as the model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import httpx
import pytest
from llm_servers import LLMServer, Turn
from test_agent_server import APP, Progress, research_turns, serve_args, text_of
from test_http import MCP_HEADERS, START_TIMEOUT_S, TOKEN, Server, mcp_client, start_server, stop

pytestmark = pytest.mark.anyio

TOOLS = '''
import asyncio
from collections import defaultdict

from lodestar import tool

arrived: list[str] = []
everyone = asyncio.Event()
cancelled: defaultdict[str, asyncio.Event] = defaultdict(asyncio.Event)


@tool
async def meet(who: str) -> str:
    """Wait until two callers are here at once."""
    arrived.append(who)
    if len(arrived) == 2:
        everyone.set()
    await everyone.wait()
    return f"met {who}"


@tool
async def hold(key: str) -> str:
    """Wait until cancelled."""
    try:
        await asyncio.Event().wait()
    except asyncio.CancelledError:
        cancelled[key].set()
        raise
    return "never"


@tool
async def was_held_cancelled(key: str) -> str:
    """Return once hold was cancelled."""
    await cancelled[key].wait()
    return "hold was cancelled"


researcher.tools.update(meet=meet, hold=hold, was_held_cancelled=was_held_cancelled)
'''
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def agent_server(tmp_path_factory: pytest.TempPathFactory, openai_server_session: LLMServer) -> Iterator[Server]:
    root = tmp_path_factory.mktemp("agent-http")
    app = APP.replace('"agents.db"', repr(str(root / "agents.db")))  # the server runs in the tests' directory
    app = app.replace("app = Lodestar", TOOLS + "\napp = Lodestar")
    (root / "myagents.py").write_text(app, "utf-8")
    args = [*serve_args(root, "--app", "myagents:app", "--model", "openai/gpt-test"), "--http", "--port", "0"]
    env = {"PYTHONPATH": str(root), "OPENAI_BASE_URL": openai_server_session.url, "OPENAI_API_KEY": "test-key"}
    server = start_server([*args[2:], "--auth-token", TOKEN], root / "cache", env)
    yield server
    stop(server.proc)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_ask_and_the_task_tools_with_progress_over_sse(
    agent_server: Server, openai_server: LLMServer, mode: str
) -> None:
    research_turns(openai_server)
    progress = Progress()
    thread = f"http-{mode}"
    http, client = mcp_client(agent_server.url, mode, headers=AUTH)
    with anyio.fail_after(START_TIMEOUT_S):
        async with http, client:
            arguments = {"message": "Research solana", "thread_id": thread}
            result = await client.call_tool("ask_re_searcher", arguments, progress_callback=progress)
            listed = await client.call_tool("list_background_tasks", {"thread_id": thread})
            watched = await client.call_tool("watch_background_tasks", {"thread_id": thread})

    assert not result.is_error, text_of(result)
    answer = result.structured_content
    assert answer is not None and answer["text"] == "Research started.\n\nHere is what I found."
    assert [(t["tool_name"], t["status"], t["result"]) for t in answer["background_tasks"]] == [
        ("research", "completed", "notes on solana")
    ]
    assert [value for value, _, _ in progress.events] == list(range(1, len(progress.events) + 1))
    call = progress.index('tool-call research {"topic": "solana"}')
    assert call < progress.index("background-task-completed research") < progress.index("start re-searcher", call)
    assert "notes on solana" in json.dumps(openai_server.requests[-1].body["messages"])
    tasks = listed.structured_content["tasks"]  # type: ignore[index]
    assert [(t["id"], t["status"]) for t in tasks] == [(answer["background_tasks"][0]["id"], "completed")]
    assert watched.structured_content["idle"] is True  # type: ignore[index]


def test_an_ask_without_the_token_is_refused_before_the_agent_runs(
    agent_server: Server, openai_server: LLMServer
) -> None:
    call = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "tools/call",
        "params": {"name": "ask_re_searcher", "arguments": {"message": "Research solana"}},
    }
    missing = httpx.post(agent_server.url, json=call, headers=MCP_HEADERS)
    wrong = httpx.post(agent_server.url, json=call, headers=MCP_HEADERS | {"Authorization": "Bearer nope"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert "a bearer token is missing" in missing.json()["error"]
    assert openai_server.requests == []  # the model was never asked


def meeting(body: dict[str, Any]) -> Turn:
    """Each caller's model: call meet with the caller's name, then say goodbye to that name."""
    last = body["messages"][-1]
    if last["role"] == "user":
        name = last["content"].removeprefix("I am ")
        return Turn(tool_calls=[("meet", {"who": name})])
    return Turn(text=f"Goodbye {last['content'].removeprefix('met ')}.")


async def test_two_clients_asking_at_once_each_see_only_their_own_progress(
    agent_server: Server, openai_server: LLMServer
) -> None:
    openai_server.script(*[meeting] * 4)
    seen: dict[str, Progress] = {"alice": Progress(), "bob": Progress()}
    answers: dict[str, Any] = {}

    async def ask(name: str) -> None:
        http, client = mcp_client(agent_server.url, headers=AUTH)
        async with http, client:
            arguments = {"message": f"I am {name}", "until_idle": False}
            answers[name] = await client.call_tool("ask_re_searcher", arguments, progress_callback=seen[name])

    with anyio.fail_after(START_TIMEOUT_S):
        async with anyio.create_task_group() as group:  # `meet` returns only once both calls are in it
            group.start_soon(ask, "alice")
            group.start_soon(ask, "bob")

    for name, other in (("alice", "bob"), ("bob", "alice")):
        assert answers[name].structured_content["text"] == f"Goodbye {name}."
        lines = seen[name].lines
        assert f'tool-call meet {{"who": "{name}"}}' in lines and f"tool-result meet met {name}" in lines
        assert not [line for line in lines if other in line]
        assert [value for value, _, _ in seen[name].events] == list(range(1, len(lines) + 1))


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_a_cancelled_ask_stops_its_tool_and_the_server_goes_on(
    agent_server: Server, openai_server: LLMServer, mode: str
) -> None:
    """On 2026-07-28 over HTTP the client cancels by closing the request's own stream."""
    held = {"key": mode}
    openai_server.script(Turn(tool_calls=[("hold", held)]), Turn(tool_calls=[("was_held_cancelled", held)]), Turn())
    holding = anyio.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        if message == f'tool-call hold {{"key": "{mode}"}}':
            holding.set()

    http, client = mcp_client(agent_server.url, mode, headers=AUTH)
    with anyio.fail_after(START_TIMEOUT_S):
        async with http, client:
            async with anyio.create_task_group() as group:
                arguments = {"message": "hold on"}
                group.start_soon(partial(client.call_tool, "ask_re_searcher", arguments, progress_callback=on_progress))
                await holding.wait()
                group.cancel_scope.cancel()
            after = await client.call_tool("ask_re_searcher", {"message": "was it cancelled?"})  # waits until it was
    assert after.structured_content["tool_calls"][0]["result"] == "hold was cancelled"  # type: ignore[index]
