"""The agent tools over stdio: the real `mcp.Client` talking to `python -m lodestar --app ...` in a subprocess, a
user app written into tmp_path, and the test OpenAI-compatible server as the agent's model."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import write_corpus
from llm_servers import LLMServer, Turn
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CreateMessageRequestParams, CreateMessageResult, TextContent

from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio

TIMEOUT_S = 60  # a bound that only fires on a hang
TASK_TOOLS = {"list_background_tasks", "get_background_task", "cancel_background_task", "watch_background_tasks"}
ASK_FIELDS = {"run_id", "agent_id", "thread_id", "resource_id", "text", "finish_reason", "steps", "tool_calls",
              "background_tasks", "usage", "tripwire", "cut"}  # fmt: skip
APP = '''
from lodestar import Agent, Lodestar, tool
from lodestar.storage import SQLiteStorage


@tool(background=True)
async def research(topic: str) -> str:
    """Research a topic at length."""
    return f"notes on {topic}"


@tool
def huge(size: int) -> str:
    """A very long result."""
    return "x" * size


researcher = Agent("re-searcher", description="Researches topics", instructions="Research.", tools=[research, huge])
app = Lodestar(agents=[researcher], storage=SQLiteStorage("agents.db"),
               background_tasks={"enabled": True, "poll_interval_ms": 5})
'''


def write_app(root: Path, text: str = APP, name: str = "myagents") -> Path:
    (root / f"{name}.py").write_text(text, "utf-8")
    return root


def serve_args(tmp_path: Path, *args: str, builtin: bool = False) -> list[str]:
    corpus = write_corpus(tmp_path / "docs")
    agents = [] if builtin else ["--no-builtin-agents"]
    return ["-m", "lodestar", "--no-bundled", "--corpus", f"example={corpus}", *agents, *args]


def model_env(server: LLMServer) -> dict[str, str]:
    return {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "test-key"}


@asynccontextmanager
async def connect(
    tmp_path: Path, *args: str, env: dict[str, str] | None = None, **options: Any
) -> AsyncIterator[Client]:
    """A Client over stdio to the server run in tmp_path (where the app module is); stderr to tmp_path/server.err."""
    params = StdioServerParameters(
        command=sys.executable,
        args=serve_args(tmp_path, *args),
        env={"LODESTAR_CACHE_DIR": str(tmp_path / "cache"), **(env or {})},
        cwd=tmp_path,
    )
    with anyio.fail_after(TIMEOUT_S), (tmp_path / "server.err").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), **options) as client:
            yield client


class Progress:
    """A progress callback that keeps every notification."""

    def __init__(self) -> None:
        self.events: list[tuple[float, float | None, str]] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.events.append((progress, total, message or ""))

    @property
    def lines(self) -> list[str]:
        return [message for _, _, message in self.events]

    def index(self, prefix: str, start: int = 0) -> int:
        return next(i for i, line in enumerate(self.lines) if i >= start and line.startswith(prefix))


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def research_turns(server: LLMServer) -> None:
    """Dispatch research, say it started, then answer from the result the continuation turn brings."""
    server.script(
        Turn(tool_calls=[("research", {"topic": "solana"})]),
        Turn(text="Research started."),
        Turn(text="Here is what I found."),
    )


async def test_tools_are_listed_with_output_schemas(tmp_path: Path, openai_server: LLMServer) -> None:
    write_app(tmp_path)
    async with connect(tmp_path, "--app", "myagents:app", "--model", "openai/gpt-test") as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        listed = await client.call_tool("list_agents", {})

    assert {"list_agents", "ask_re_searcher", "search_docs"} | TASK_TOOLS <= set(tools)
    assert not any(name.startswith("ask_") and name != "ask_re_searcher" for name in tools)
    assert all(tools[name].output_schema is not None for name in {"list_agents", "ask_re_searcher"} | TASK_TOOLS)
    ask = tools["ask_re_searcher"]
    assert set(ask.output_schema["properties"]) == ASK_FIELDS  # type: ignore[index]
    assert ask.input_schema["required"] == ["message"]
    assert {"message", "thread_id", "resource_id", "until_idle", "max_steps"} == set(ask.input_schema["properties"])
    assert ask.input_schema["properties"]["until_idle"]["default"] is True
    assert "Researches topics" in (ask.description or "") and "research (background), huge" in (ask.description or "")
    assert listed.structured_content == {
        "agents": [
            {
                "id": "re-searcher",
                "name": "re-searcher",
                "description": "Researches topics",
                "model": None,
                "tools": ["research", "huge"],
                "background_tools": ["research"],
            }
        ]
    }


async def test_ask_reports_progress_runs_the_continuation_and_the_task_tools_see_the_task(
    tmp_path: Path, openai_server: LLMServer
) -> None:
    write_app(tmp_path)
    research_turns(openai_server)
    progress = Progress()
    args = ("--app", "myagents:app", "--model", "openai/gpt-test")
    async with connect(tmp_path, *args, env=model_env(openai_server)) as client:
        result = await client.call_tool(
            "ask_re_searcher",
            {"message": "Research solana", "thread_id": "t1", "resource_id": "u1"},
            progress_callback=progress,
        )
        assert not result.is_error, text_of(result)
        answer = result.structured_content
        assert answer is not None
        task_id = answer["background_tasks"][0]["id"]
        listed = (await client.call_tool("list_background_tasks", {"thread_id": "t1"})).structured_content
        task = (await client.call_tool("get_background_task", {"task_id": task_id})).structured_content

    assert [value for value, _, _ in progress.events] == list(range(1, len(progress.events) + 1))
    lines = progress.lines
    call = progress.index('tool-call research {"topic": "solana"}')
    completed = progress.index("background-task-completed research")
    continuation = progress.index("start re-searcher", call)
    assert call < completed < continuation, lines
    assert any(line.startswith("text-delta Here is") for line in lines[continuation:]), lines
    assert lines[-1] == "finish stop"

    assert set(answer) == ASK_FIELDS
    assert answer["agent_id"] == "re-searcher" and answer["thread_id"] == "t1" and answer["resource_id"] == "u1"
    assert "Research started." in answer["text"] and "Here is what I found." in answer["text"]
    assert answer["finish_reason"] == "stop" and answer["steps"] == 3 and answer["cut"] == 0
    assert answer["background_tasks"] == [
        {
            "id": task_id,
            "status": "completed",
            "tool_name": "research",
            "tool_call_id": answer["tool_calls"][0]["tool_call_id"],
            "result": "notes on solana",
            "error": None,
        }
    ]
    assert answer["usage"]["total_tokens"] == 45
    assert f"[background task {task_id} research: completed]" in text_of(result)

    assert len(openai_server.requests) == 3
    assert "notes on solana" in json.dumps(openai_server.requests[-1].body["messages"])  # the continuation read it
    assert [t["id"] for t in listed["tasks"]] == [task_id] and listed["total"] == 1  # type: ignore[index]
    assert task is not None and (task["status"], task["result"], task["run_id"]) == (
        "completed",
        "notes on solana",
        answer["run_id"],
    )


async def test_a_small_result_budget_from_the_flag_is_honoured(tmp_path: Path, openai_server: LLMServer) -> None:
    write_app(tmp_path)
    openai_server.script(Turn(tool_calls=[("huge", {"size": 20_000})]), Turn(text="Done."))
    args = ("--app", "myagents:app", "--model", "openai/gpt-test", "--result-max-tokens", "1000")
    async with connect(tmp_path, *args, env=model_env(openai_server)) as client:
        result = await client.call_tool("ask_re_searcher", {"message": "go", "thread_id": "t1"})
    answer = result.structured_content
    assert answer is not None and answer["cut"] == 1 and answer["text"] == "Done."
    assert len(json.dumps(answer, ensure_ascii=False, separators=(",", ":"))) <= 1000 * 4
    cut = answer["tool_calls"][0]["result"]
    assert cut.startswith("xxx") and cut.endswith("more characters; the full result is in memory thread t1]")
    storage = SQLiteStorage(tmp_path / "agents.db")
    try:
        saved = await storage.list_messages("t1")
    finally:
        await storage.close()
    (tool_message,) = [m for m in saved if m.role == "tool"]
    assert tool_message.content[0]["result"] == "x" * 20_000  # the full record stays in memory


def start(tmp_path: Path, *args: str, builtin: bool = False) -> subprocess.CompletedProcess[str]:
    """The server run directly, without a client: for start-up errors."""
    return subprocess.run(
        [sys.executable, *serve_args(tmp_path, *args, builtin=builtin)],
        cwd=tmp_path,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env={"LODESTAR_CACHE_DIR": str(tmp_path / "cache"), "PATH": "/usr/bin:/bin"},
    )


COLLIDING = """
from lodestar import Agent, Lodestar

app = Lodestar(agents=[Agent("a-b"), Agent("a_b")])
docs = Lodestar(agents=[Agent("docs")])
"""


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("import nonexistent_module_xyz\n", ["--app", "myagents:app"], "--app myagents:app: importing myagents failed"),
        (APP, ["--app", "myagents:ap"], "--app myagents:ap: myagents has no 'ap'; its Lodestar apps: app"),
        (APP, ["--app", "myagents:researcher"], "researcher is of type Agent, not a Lodestar app"),
        (COLLIDING, ["--app", "myagents:app"], "two agents would both be served as the tool ask_a_b: 'a-b' and 'a_b'"),
        (COLLIDING, ["--app", "myagents:docs", "--builtin"], "two agents would both be served as the tool ask_docs"),
    ],
)
def test_a_bad_app_stops_start_up_with_one_line(tmp_path: Path, module: str, args: list[str], expected: str) -> None:
    write_app(tmp_path, module)
    builtin = "--builtin" in args  # the user's `docs` agent beside the built-in one
    proc = start(tmp_path, *(a for a in args if a != "--builtin"), builtin=builtin)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("lodestar-mcp: ") and expected in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_without_a_model_the_clients_own_answers_through_sampling(tmp_path: Path, mode: str) -> None:
    write_app(tmp_path)

    async def client_model(context: object, params: CreateMessageRequestParams) -> CreateMessageResult:
        return CreateMessageResult(role="assistant", model="m", content=TextContent(text="the client's answer"))

    progress = Progress()
    async with connect(tmp_path, "--app", "myagents:app", mode=mode) as bare:
        refused = await bare.call_tool("ask_re_searcher", {"message": "hello"})
    async with connect(tmp_path, "--app", "myagents:app", mode=mode, sampling_callback=client_model) as client:
        result = await client.call_tool("ask_re_searcher", {"message": "hello"}, progress_callback=progress)

    assert refused.is_error and "has no model of its own" in text_of(refused)
    assert not result.is_error, text_of(result)
    assert result.structured_content["text"] == "the client's answer"  # type: ignore[index]
    assert progress.lines[:2] == ["start re-searcher", "step-start sampling/client"]
    assert progress.lines[-1] == "finish stop"
