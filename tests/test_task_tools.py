"""The background task tools over the real MCP client in memory, against an app's manager on a real SQLite file."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import write_corpus
from mcp import Client
from test_background import Gate, app_with, research_tool

from lodestar import Agent, Lodestar, tool
from lodestar.docs.service import DocsService
from lodestar.runtime.models.scripted import ScriptedModel
from lodestar.server.agent_host import AgentHost
from lodestar.server.app import build_server
from lodestar.settings import Settings
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


@tool(background=True)
async def quick(topic: str) -> str:
    """Answer at once."""
    return f"quick {topic}"


@pytest.fixture
def gate() -> Gate:
    return Gate()


@pytest.fixture
async def app(tmp_path: Path, gate: Gate) -> AsyncIterator[Lodestar]:
    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[research_tool(gate), quick])
    async with app_with(tmp_path, agent, global_concurrency=1) as opened:
        yield opened
        gate.opened.set()


@pytest.fixture
async def client(tmp_path: Path, app: Lodestar) -> AsyncIterator[Client]:
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    async with Client(
        build_server(
            Settings(cache_dir=tmp_path / "cache"), docs, AgentHost(docs, [("test", app)], builtin_agent=False)
        )
    ) as connected:
        yield connected


async def call(client: Client, name: str, **arguments: Any) -> Any:
    result = await client.call_tool(name, arguments)
    assert not result.is_error, result.content
    return result.structured_content


async def error(client: Client, name: str, **arguments: Any) -> str:
    result = await client.call_tool(name, arguments)
    assert result.is_error
    return result.content[0].text  # type: ignore[union-attr]


async def enqueue(app: Lodestar, gate: Gate, topic: str, **fields: Any) -> str:
    assert app.tasks is not None
    return (await app.tasks.enqueue("a", "research", {"topic": topic}, **fields)).id


async def test_list_filters_pages_and_counts(app: Lodestar, gate: Gate, client: Client) -> None:
    ids = [await enqueue(app, gate, f"t{n}", thread_id="t2" if n >= 3 else "t1") for n in range(5)]
    await gate.started.get()  # one slot: t0 runs, the rest wait
    newest_first = ids[::-1]

    def topics(listed: dict[str, Any]) -> list[str]:
        return [task["args"]["topic"] for task in listed["tasks"]]

    everything = await call(client, "list_background_tasks")
    assert everything["total"] == 5 and [t["id"] for t in everything["tasks"]] == newest_first
    assert topics(await call(client, "list_background_tasks", limit=2, offset=1)) == ["t3", "t2"]
    across = await call(client, "list_background_tasks", limit=2, offset=3)
    assert topics(across) == ["t1", "t0"] and across["total"] == 5
    assert (await call(client, "list_background_tasks", limit=2, offset=5))["tasks"] == []
    running = await call(client, "list_background_tasks", status="running")
    assert topics(running) == ["t0"] and running["total"] == 1
    assert (await call(client, "list_background_tasks", status="pending", thread_id="t2"))["total"] == 2
    assert (await call(client, "list_background_tasks", tool_name="quick"))["total"] == 0

    text = await error(client, "list_background_tasks", status="done")
    assert "unknown task status 'done'" in text and "pending, running, completed, failed, timed_out, cancelled" in text
    assert "limit" in await error(client, "list_background_tasks", limit=101)
    assert "offset" in await error(client, "list_background_tasks", offset=-1)


async def test_get_answers_every_field_and_names_an_unknown_id(app: Lodestar, gate: Gate, client: Client) -> None:
    task_id = await enqueue(app, gate, "solana", resource_id="u1")
    task = await call(client, "get_background_task", task_id=task_id)
    assert task["id"] == task_id and task["status"] == "running" and task["tool_name"] == "research"
    assert task["args"] == {"topic": "solana"} and task["resource_id"] == "u1" and task["thread_id"] is None
    assert task["retry_count"] == 0 and task["max_retries"] == 0 and task["result"] is None
    assert isinstance(datetime.fromisoformat(task["created_at"]), datetime) and task["completed_at"] is None
    assert task["timeout_ms"] > 0 and task["tool_call_id"] and task["run_id"] and task["agent_id"] == "a"

    text = await error(client, "get_background_task", task_id="task_nope")
    assert text == "no background task 'task_nope'; list_background_tasks lists them"


async def test_cancel_pending_running_and_finished(app: Lodestar, gate: Gate, client: Client) -> None:
    running_id = await enqueue(app, gate, "first")
    pending_id = await enqueue(app, gate, "second")
    await gate.started.get()

    pending = await client.call_tool("cancel_background_task", {"task_id": pending_id})
    assert pending.structured_content == {"task_id": pending_id, "status": "cancelled"}
    running = await client.call_tool("cancel_background_task", {"task_id": running_id})
    assert running.structured_content == {"task_id": running_id, "status": "running"}
    assert "being cancelled" in running.content[0].text  # type: ignore[union-attr]
    await asyncio.wait_for(gate.cancelled.wait(), 30)  # a bound that only fires on a hang

    watched = await call(client, "watch_background_tasks", run_id=(await app.tasks.get_task(running_id)).run_id)  # type: ignore[union-attr]
    assert watched["idle"] is True
    assert (await call(client, "get_background_task", task_id=running_id))["status"] == "cancelled"
    again = await client.call_tool("cancel_background_task", {"task_id": pending_id})
    assert again.structured_content == {"task_id": pending_id, "status": "cancelled"}
    assert again.content[0].text == f"task {pending_id} had already ended: cancelled"  # type: ignore[union-attr]
    assert "list_background_tasks lists them" in await error(client, "cancel_background_task", task_id="task_nope")


async def test_watch_reports_each_chunk_as_progress_and_returns_idle(app: Lodestar, gate: Gate, client: Client) -> None:
    task_id = await enqueue(app, gate, "solana")
    run_id = (await app.tasks.get_task(task_id)).run_id  # type: ignore[union-attr]
    notes: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        notes.append((progress, total, message))
        gate.opened.set()  # the running task ends only once the watch has reported it

    result = await client.call_tool("watch_background_tasks", {"run_id": run_id}, progress_callback=on_progress)
    watched = result.structured_content
    assert watched is not None and watched["idle"] is True and watched["dropped"] == 0
    assert [event["type"] for event in watched["events"]] == ["background-task-running", "background-task-completed"]
    assert watched["events"][1]["payload"]["result"] == "notes on solana"
    assert notes == [(1, None, "background-task-running research"), (2, None, "background-task-completed research")]
    assert "every matching task has ended" in result.content[0].text  # type: ignore[union-attr]


async def test_watch_returns_at_the_timeout_while_a_task_runs(app: Lodestar, gate: Gate, client: Client) -> None:
    task_id = await enqueue(app, gate, "slow")
    result = await client.call_tool("watch_background_tasks", {"tool_name": "research", "timeout_s": 0.2})
    watched = result.structured_content
    assert watched is not None and watched["idle"] is False
    assert [e["payload"]["taskId"] for e in watched["events"]] == [task_id]
    assert "tasks still pending or running after 0.2 s" in result.content[0].text  # type: ignore[union-attr]
    assert "timeout_s" in await error(client, "watch_background_tasks", timeout_s=601)
    assert "timeout_s" in await error(client, "watch_background_tasks", timeout_s=0)


async def test_watch_with_nothing_to_wait_for_is_idle_at_once(app: Lodestar, client: Client) -> None:
    assert app.tasks is not None
    done = await app.tasks.enqueue("a", "quick", {"topic": "x"})
    watched = await call(client, "watch_background_tasks", run_id=done.run_id, status="completed")
    assert watched == {"events": [], "idle": True, "dropped": 0}
    watched = await call(client, "watch_background_tasks", tool_name="nothing")
    assert watched == {"events": [], "idle": True, "dropped": 0}
    assert "unknown task status" in await error(client, "watch_background_tasks", status="done")


async def test_a_server_without_an_app_has_no_task_tools(tmp_path: Path) -> None:
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs)) as client:
        names = {tool.name for tool in (await client.list_tools()).tools}
    assert "search_docs" in names and not {name for name in names if "background" in name}


async def test_list_pages_past_the_stores_page_size_over_two_databases(tmp_path: Path) -> None:
    """Two apps on two files: each store answers at most MAX_PER_PAGE tasks a page, and a page far into the merged
    list still comes back (it asked each store for offset + limit tasks in one page)."""
    from lodestar.storage.sqlite_tasks import MAX_PER_PAGE

    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    apps = []
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        agent = Agent(f"agent_{name}", model=ScriptedModel(["ok"]), tools=[quick])
        apps.append((name, app_with(tmp_path / name, agent)))
    host = AgentHost(docs, apps, builtin_agent=False)
    each = MAX_PER_PAGE // 2 + 10
    async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs, host)) as client:
        for name, app in apps:
            assert app.tasks is not None
            for n in range(each):
                await app.tasks.enqueue(f"agent_{name}", "quick", {"topic": str(n)})
        listed = await call(client, "list_background_tasks", limit=20, offset=MAX_PER_PAGE)
        assert listed["total"] == 2 * each and len(listed["tasks"]) == 2 * each - MAX_PER_PAGE
        pages = [await call(client, "list_background_tasks", limit=100, offset=n) for n in range(0, 2 * each, 100)]
    listed_all = [task for page in pages for task in page["tasks"]]
    assert len({task["id"] for task in listed_all}) == len(listed_all) == 2 * each
    assert [t["created_at"] for t in listed_all] == sorted((t["created_at"] for t in listed_all), reverse=True)


async def listed_total(tmp_path: Path, paths: list[str | Path]) -> int:
    """How many tasks list_background_tasks counts with one app per storage path, each having enqueued one task."""
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    apps = []
    for n, path in enumerate(paths):
        agent = Agent(f"agent_{n}", model=ScriptedModel(["ok"]), tools=[quick])
        apps.append((f"app{n}", Lodestar([agent], storage=SQLiteStorage(path), background_tasks={"enabled": True})))
    host = AgentHost(docs, apps, builtin_agent=False)
    async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs, host)) as client:
        for n, (_, app) in enumerate(apps):
            assert app.tasks is not None
            await app.tasks.enqueue(f"agent_{n}", "quick", {"topic": str(n)})
        listed = await call(client, "list_background_tasks")
    assert len(listed["tasks"]) == listed["total"]
    return listed["total"]


async def test_two_apps_on_one_file_named_two_ways_list_each_task_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert await listed_total(tmp_path, ["tasks.db", tmp_path / "tasks.db"]) == 2


async def test_two_apps_in_memory_list_the_tasks_of_both(tmp_path: Path) -> None:
    assert await listed_total(tmp_path, [":memory:", ":memory:"]) == 2


async def test_a_database_that_cannot_be_opened_is_an_error_not_a_hang(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The built-in agent's own database opens on the first call: a path it cannot open (here under a file) fails
    that call, and the next, with the path; it used to kill the store's thread and leave every call waiting."""
    (tmp_path / "a-file").write_text("not a directory", "utf-8")
    monkeypatch.setenv("LODESTAR_DB", str(tmp_path / "a-file" / "agents.db"))
    docs = DocsService([str(write_corpus(tmp_path / "docs"))], tmp_path / "cache")
    docs.load()
    host = AgentHost(docs, [], builtin_agent=True)
    with anyio.fail_after(30):  # a bound that only fires on a hang
        async with Client(build_server(Settings(cache_dir=tmp_path / "cache"), docs, host)) as client:
            for _ in range(2):
                text = await error(client, "list_background_tasks")
                assert str(tmp_path / "a-file" / "agents.db") in text and "File exists" in text
