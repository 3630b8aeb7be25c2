"""The names DESIGN.md fixes, which users, client configurations and outside checks call: the public Python
API, the MCP tools with their arguments and result fields, and the CLI. Extending them is free; renaming or
dropping one fails here. Names DESIGN.md fixes that are not built yet are listed as strict expected failures,
so building one makes its test pass and the marker must go."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import write_corpus
from mcp import Client

from lodestar import Agent, Lodestar
from lodestar.docs.service import DocsService
from lodestar.runtime.options import RunOptions
from lodestar.server.agent_host import AgentHost
from lodestar.server.app import build_server
from lodestar.settings import Settings
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio

NOT_YET = "DESIGN.md fixes it; built by a later issue"

PYTHON_NAMES = [
    ("lodestar", "Agent"),
    ("lodestar", "Lodestar"),
    ("lodestar", "tool"),
    ("lodestar", "ToolContext"),
    ("lodestar.storage", "SQLiteStorage"),
    ("lodestar", "LodestarError"),
    ("lodestar.errors", "is_retryable"),
    ("lodestar.background", "BackgroundTasksConfig"),
]

DOCS_TOOLS: dict[str, tuple[set[str], set[str]]] = {  # tool -> (arguments, result fields)
    "search_docs": (
        {"query", "limit", "corpus", "path_prefix"},
        {"query", "total", "hits", "suggestion"},
    ),
    "read_doc": (
        {"path", "corpus", "heading", "cursor", "max_tokens"},
        {"corpus", "version", "path", "title", "content", "headings", "next_cursor"},
    ),
    "list_docs": ({"path_prefix", "corpus", "depth"}, {"entries"}),
    "list_corpora": (set(), {"corpora"}),
}
NESTED = {  # tool -> (result field holding a list, fields of each item)
    "search_docs": ("hits", {"corpus", "version", "path", "title", "heading", "anchor", "score", "snippet"}),
    "list_docs": ("entries", {"corpus", "path", "title", "kind"}),
    "list_corpora": ("corpora", {"name", "version", "source", "documents", "sections"}),
}
AGENT_TOOLS = ["list_agents", "list_background_tasks", "get_background_task", "cancel_background_task",
               "watch_background_tasks"]  # fmt: skip
TASK_FILTERS = {"status", "agent_id", "run_id", "thread_id", "resource_id", "tool_name"}
TASK_FIELDS = {"id", "status", "tool_name", "tool_call_id", "agent_id", "run_id", "thread_id", "resource_id", "args",
               "result", "error", "retry_count", "max_retries", "timeout_ms", "created_at", "started_at",
               "completed_at"}  # fmt: skip
TASK_TOOLS: dict[str, tuple[set[str], set[str]]] = {  # tool -> (arguments, result fields), with an app's tasks
    "list_background_tasks": (TASK_FILTERS | {"limit", "offset"}, {"tasks", "total"}),
    "get_background_task": ({"task_id"}, TASK_FIELDS),
    "cancel_background_task": ({"task_id"}, {"task_id", "status"}),
    "watch_background_tasks": (TASK_FILTERS | {"timeout_s"}, {"events", "idle"}),
}
SERVE_FLAGS = ["--corpus", "--app", "--model", "--http", "--host", "--port", "--auth-token", "--no-builtin-agents"]
COMMANDS = ["search", "read", "corpora", "index"]
COMMANDS_NOT_YET = ["agents", "ask", "tasks"]


@pytest.mark.parametrize(("module", "name"), PYTHON_NAMES)
def test_public_python_names(module: str, name: str) -> None:
    assert hasattr(importlib.import_module(module), name)


@pytest.mark.parametrize("method", ["generate", "stream", "stream_until_idle"])
def test_the_three_ways_to_run_an_agent_share_their_keywords(method: str) -> None:
    parameters = inspect.signature(getattr(Agent, method)).parameters
    assert "messages" in parameters
    keywords = next(p for p in parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD)
    assert keywords.name == "options"
    assert {"thread", "resource", "max_steps", "structured_output"} <= set(RunOptions.model_fields)


def test_an_app_takes_agents_and_storage() -> None:
    assert {"agents", "storage"} <= set(inspect.signature(Lodestar).parameters)


def test_an_app_takes_background_tasks() -> None:
    assert "background_tasks" in inspect.signature(Lodestar).parameters


@pytest.fixture
async def client(tmp_path: Path) -> Any:
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs)) as connected:
        yield connected


async def test_docs_tools_arguments_and_result_fields(client: Client) -> None:
    tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, (arguments, fields) in DOCS_TOOLS.items():
        assert arguments <= set(tools[name].input_schema.get("properties", {})), name
        assert tools[name].output_schema is not None, name
        assert fields <= set(tools[name].output_schema["properties"]), name


async def test_docs_tools_answer_with_the_fields(client: Client) -> None:
    answers = {
        "search_docs": {"query": "threads"},
        "read_doc": {"path": "docs/agents/memory.md"},
        "list_docs": {"depth": 3},
        "list_corpora": {},
    }
    for name, arguments in answers.items():
        result = (await client.call_tool(name, arguments)).structured_content
        assert result is not None and DOCS_TOOLS[name][1] <= set(result), name
        if name in NESTED:
            field, item_fields = NESTED[name]
            assert result[field] and all(item_fields <= set(item) for item in result[field]), name


async def test_the_docs_resource_template(client: Client) -> None:
    templates = (await client.list_resource_templates()).resource_templates
    assert [t.uri_template.replace("{+path}", "{path}") for t in templates] == ["docs://{corpus}/{path}"]


async def test_agent_and_task_tools(tmp_path: Path) -> None:
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    app = Lodestar([Agent("helper")], storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=True)
    host = AgentHost(docs, [("test", app)], builtin_agent=False)
    async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs, host)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert set(AGENT_TOOLS) | {"ask_helper"} <= names


async def test_task_tools_arguments_and_result_fields(tmp_path: Path) -> None:
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    app = Lodestar(storage=SQLiteStorage(tmp_path / "tasks.db"), background_tasks=True)
    async with (
        app,
        Client(
            build_server(
                Settings(cache_dir=tmp_path / "cache"), docs, AgentHost(docs, [("test", app)], builtin_agent=False)
            )
        ) as client,
    ):
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    for name, (arguments, fields) in TASK_TOOLS.items():
        assert arguments <= set(tools[name].input_schema.get("properties", {})), name
        assert tools[name].output_schema is not None, name
        assert fields <= set(tools[name].output_schema["properties"]), name
    task = tools["list_background_tasks"].output_schema["$defs"]["TaskInfo"]  # type: ignore[index]
    assert set(task["properties"]) >= TASK_FIELDS


def _help(*args: str) -> str:
    return subprocess.run([sys.executable, "-m", "lodestar", *args, "--help"], capture_output=True, text=True).stdout


def test_serve_flags_and_commands() -> None:
    serve = _help("serve")
    assert [flag for flag in SERVE_FLAGS if flag not in serve] == []
    top = _help()
    assert [command for command in COMMANDS if command not in top] == []


def test_agent_commands() -> None:
    top = _help()
    assert [command for command in COMMANDS_NOT_YET if command not in top] == []
