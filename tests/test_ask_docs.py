"""The built-in docs agent served as `ask_docs` over a real stdio subprocess, driven by the OpenAI-compatible test
server: it searches the real index, research runs as a background task, and the task tools see it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from llm_servers import Fail, LLMServer, Turn
from test_stdio import connect, text_of

pytestmark = pytest.mark.anyio


def served(corpus: Path, server: LLMServer, db: Path, *extra: str) -> tuple[list[str], dict[str, str]]:
    args = ["--corpus", f"example={corpus}", "--no-bundled", "--model", "openai/gpt-test", *extra]
    env = {"OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "test-key", "LODESTAR_DB": str(db)}
    return args, env


class Progress:
    def __init__(self) -> None:
        self.values: list[float] = []
        self.lines: list[str] = []

    async def __call__(self, progress: float, total: float | None, message: str | None) -> None:
        self.values.append(progress)
        self.lines.append(message or "")


def tool_messages(body: dict[str, Any]) -> list[str]:
    return [m["content"] for m in body["messages"] if m["role"] == "tool"]


async def test_ask_docs_searches_the_index_and_cites(
    tmp_path: Path, cache_dir: Path, corpus_dir: Path, openai_server: LLMServer
) -> None:
    openai_server.script(
        Turn(tool_calls=[("search_docs", {"query": "threads"})]),
        Turn(text="Threads keep conversations (example:docs/agents/memory.md#threads)."),
    )
    args, env = served(corpus_dir, openai_server, tmp_path / "agents.db")
    progress = Progress()
    async with connect(tmp_path, cache_dir, *args, env=env) as client:
        result = await client.call_tool("ask_docs", {"message": "What is a thread?"}, progress_callback=progress)

    assert not result.is_error, text_of(result)
    answer = result.structured_content
    assert answer is not None and answer["agent_id"] == "docs"
    assert answer["text"] == "Threads keep conversations (example:docs/agents/memory.md#threads)."
    assert [call["tool_name"] for call in answer["tool_calls"]] == ["search_docs"]
    hits = json.loads(tool_messages(openai_server.requests[1].body)[0])["hits"]
    assert hits[0]["citation"] == "example:docs/agents/memory.md#threads"
    assert 'tool-call search_docs {"query": "threads"}' in progress.lines
    assert progress.values == sorted(progress.values) and len(set(progress.values)) == len(progress.values)
    assert progress.lines[0] == "start docs" and progress.lines[-1] == "finish stop"


async def test_research_runs_in_the_background_and_the_task_tools_see_it(
    tmp_path: Path, cache_dir: Path, corpus_dir: Path, openai_server: LLMServer
) -> None:
    openai_server.script(
        Turn(tool_calls=[("research", {"question": "How do background tasks finish?"})]),
        Turn(text="Research is under way."),
        Turn(text="streamUntilIdle waits for every task (example:docs/overview.md#background-tasks)."),
    )
    args, env = served(corpus_dir, openai_server, tmp_path / "agents.db")
    progress = Progress()
    async with connect(tmp_path, cache_dir, *args, env=env) as client:
        result = await client.call_tool(
            "ask_docs", {"message": "How do background tasks finish?"}, progress_callback=progress
        )
        listed = await client.call_tool("list_background_tasks", {"agent_id": "docs"})

    answer = result.structured_content
    assert answer is not None, text_of(result)
    assert answer["text"].endswith("(example:docs/overview.md#background-tasks).")
    assert [(t["tool_name"], t["status"]) for t in answer["background_tasks"]] == [("research", "completed")]
    assert progress.lines.index("background-task-started research") < progress.lines.index(
        "background-task-completed research"
    )
    notes = json.loads(tool_messages(openai_server.requests[2].body)[0])  # the continuation reads the real notes
    assert "example:docs/overview.md#background-tasks" in [note["citation"] for note in notes["notes"]]
    tasks = listed.structured_content
    assert tasks is not None and tasks["total"] == 1 and tasks["tasks"][0]["id"] == answer["background_tasks"][0]["id"]


async def test_without_a_model_the_call_names_the_ways_to_give_one(
    tmp_path: Path, cache_dir: Path, corpus_dir: Path
) -> None:
    env = {"LODESTAR_DB": str(tmp_path / "agents.db")}
    async with connect(tmp_path, cache_dir, "--corpus", f"example={corpus_dir}", env=env) as client:
        result = await client.call_tool("ask_docs", {"message": "What is a thread?"})
    assert result.is_error
    assert "agent 'docs' has no model of its own" in text_of(result)
    assert "--model (or set LODESTAR_MODEL)" in text_of(result) and "supports sampling" in text_of(result)


async def test_the_docs_agent_costs_nothing_until_asked(tmp_path: Path, cache_dir: Path, corpus_dir: Path) -> None:
    db = tmp_path / "agents.db"
    async with connect(tmp_path, cache_dir, "--corpus", f"example={corpus_dir}", env={"LODESTAR_DB": str(db)}) as c:
        names = {tool.name for tool in (await c.list_tools()).tools}
        await c.call_tool("search_docs", {"query": "threads"})
    assert {"ask_docs", "list_agents", "list_background_tasks", "watch_background_tasks"} <= names
    assert not db.exists()  # the built-in agent's app, and its database, open on the first agent or task call


async def test_no_builtin_agents_serves_the_docs_tools_alone(tmp_path: Path, cache_dir: Path, corpus_dir: Path) -> None:
    async with connect(tmp_path, cache_dir, "--corpus", f"example={corpus_dir}", "--no-builtin-agents") as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert names == {"search_docs", "read_doc", "list_docs", "list_corpora", "refresh_docs"}


async def test_a_failed_run_is_a_tool_error_that_keeps_what_it_did(
    tmp_path: Path, cache_dir: Path, corpus_dir: Path, openai_server: LLMServer
) -> None:
    openai_server.script(Turn(tool_calls=[("search_docs", {"query": "threads"})]), Fail(400))
    args, env = served(corpus_dir, openai_server, tmp_path / "agents.db")
    async with connect(tmp_path, cache_dir, *args, env=env) as client:
        result = await client.call_tool("ask_docs", {"message": "What is a thread?"})
    assert result.is_error
    assert text_of(result).startswith("agent docs failed: ") and "HTTP 400" in text_of(result)
    assert result.structured_content is not None
    assert [call["tool_name"] for call in result.structured_content["tool_calls"]] == ["search_docs"]
