"""Memory: threads loaded before a run and extended after it, over a real SQLite file."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from lodestar import Lodestar
from lodestar.runtime import Agent, Memory, Message, ThreadError, tool
from lodestar.runtime.models.base import ModelError, ModelRequest
from lodestar.runtime.models.scripted import ScriptedModel, call, calls, reply
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


@tool
def lookup(term: str) -> dict[str, str]:
    """Look a term up."""
    return {"term": term, "meaning": f"{term} means something"}


def recording(script: Any = None) -> ScriptedModel:
    model = ScriptedModel(script)
    model.record = True
    return model


def seen(request: ModelRequest) -> list[tuple[str, str]]:
    return [(m.role, m.text) for m in request.messages]


def texts(stored: list[Any]) -> list[str]:
    return [m.content[0]["text"] for m in stored]


def roles(messages: list[Message]) -> list[str]:
    return [m.role for m in messages]


@pytest.fixture
def storage(tmp_path: Path) -> SQLiteStorage:
    return SQLiteStorage(tmp_path / "lodestar.db")


async def test_run_creates_thread_and_saves_messages(storage: SQLiteStorage) -> None:
    model = recording([calls(call("lookup", {"term": "wal"}, id="call_1")), reply("WAL is a journal mode.")])
    agent = Agent("helper", model=model, tools=[lookup], memory=Memory(storage))

    result = await agent.generate("  What is\n WAL?  ", thread="t1", resource="alice")

    assert result.thread_id == "t1"
    assert result.resource_id == "alice"
    assert result.text == "WAL is a journal mode."
    thread = await storage.get_thread("t1")
    assert thread is not None
    assert thread.resource_id == "alice"
    assert thread.title == "What is WAL?"

    stored = await agent.memory.messages("t1")  # type: ignore[union-attr]
    assert roles(stored) == ["user", "assistant", "tool", "assistant"]
    assert stored[0].text == "  What is\n WAL?  "
    assert stored[1].tool_calls[0].tool_call_id == "call_1"
    assert stored[1].tool_calls[0].args == {"term": "wal"}
    assert stored[2].tool_results[0].result == {"term": "wal", "meaning": "wal means something"}
    assert stored[2].tool_results[0].tool_call_id == "call_1"
    assert stored[3].text == "WAL is a journal mode."
    assert [m.id for m in stored] == [m.id for m in result.messages]


async def test_second_run_sees_the_earlier_turns(storage: SQLiteStorage) -> None:
    model = recording([calls(call("lookup", {"term": "x"}, id="call_1")), reply("first answer")])
    agent = Agent("helper", model=model, tools=[lookup], memory=Memory(storage))
    await agent.generate("first question", thread="t1", resource="alice")

    model.script = ["second answer"]
    result = await agent.generate("second question", thread="t1", resource="alice")

    assert result.text == "second answer"
    history = model.requests[-1].messages
    assert roles(history) == ["user", "assistant", "tool", "assistant", "user"]
    assert seen(model.requests[-1])[0] == ("user", "first question")
    assert history[2].tool_results[0].result["term"] == "x"
    assert seen(model.requests[-1])[-2:] == [("assistant", "first answer"), ("user", "second question")]
    assert [m.text for m in result.messages] == ["second question", "second answer"]
    assert len(await storage.list_messages("t1")) == 6


async def test_thread_continues_through_stream(storage: SQLiteStorage) -> None:
    model = recording(["one"])
    agent = Agent("helper", model=model, memory=Memory(storage))
    await agent.generate("a", thread="t1")
    stream = agent.stream("b", thread="t1")
    chunks = [c async for c in stream]
    assert chunks[0].type == "start"
    assert chunks[0].payload.thread_id == "t1"
    assert chunks[-1].payload.metadata.thread_id == "t1"
    assert seen(model.requests[-1]) == [("user", "a"), ("assistant", "one"), ("user", "b")]
    assert [m.text for m in await agent.memory.messages("t1")] == ["a", "one", "b", "one"]  # type: ignore[union-attr]


async def test_last_messages_limits_history(storage: SQLiteStorage) -> None:
    model = recording(["ok"])
    agent = Agent("helper", model=model, memory=Memory(storage, last_messages=2))
    for text in ("q1", "q2", "q3"):
        await agent.generate(text, thread="t1")
    assert seen(model.requests[-1]) == [("user", "q2"), ("assistant", "ok"), ("user", "q3")]

    await agent.generate("q4", thread="t1", last_messages=1)
    # a window never starts mid-turn; rather than holding no turn at all, it reaches back to the turn's start
    assert seen(model.requests[-1]) == [("user", "q3"), ("assistant", "ok"), ("user", "q4")]

    await agent.generate("q5", thread="t1", last_messages=0)
    assert seen(model.requests[-1]) == [("user", "q5")]

    await agent.generate("q6", thread="t1", last_messages=100)
    assert len(model.requests[-1].messages) == 11
    assert len(await storage.list_messages("t1")) == 12  # everything is saved whatever the window


async def test_a_window_never_starts_inside_a_tool_turn(storage: SQLiteStorage) -> None:
    model = recording([calls(call("lookup", {"term": "x"})), "done"])
    agent = Agent("helper", model=model, tools=[lookup], memory=Memory(storage, last_messages=2))
    await agent.generate("first", thread="t1")  # user, assistant(call), tool, assistant
    await agent.generate("second", thread="t1")
    # the last 2 messages (tool, assistant) hold no user turn: the window reaches back to the turn's start
    assert roles(model.requests[2].messages) == ["user", "assistant", "tool", "assistant", "user"]
    agent.memory.last_messages = 6
    await agent.generate("third", thread="t1")
    assert roles(model.requests[4].messages) == ["user", "assistant", "tool", "assistant", "user"]


async def test_an_empty_thread_id_is_refused(storage: SQLiteStorage) -> None:
    agent = Agent("helper", model=recording(["ok"]), memory=Memory(storage))
    with pytest.raises(ThreadError, match="non-empty"):
        await agent.generate("hi", thread="")


async def test_last_messages_from_default_options(storage: SQLiteStorage) -> None:
    model = recording(["ok"])
    agent = Agent("helper", model=model, memory=Memory(storage), default_options={"last_messages": 1})
    await agent.generate("q1", thread="t1")
    await agent.generate("q2", thread="t1")
    assert seen(model.requests[-1]) == [("user", "q1"), ("assistant", "ok"), ("user", "q2")]


def test_memory_refuses_negative_window(storage: SQLiteStorage) -> None:
    with pytest.raises(ValueError, match="last_messages"):
        Memory(storage, last_messages=-1)


async def test_thread_of_another_resource_refused(storage: SQLiteStorage) -> None:
    model = recording(["ok"])
    agent = Agent("helper", model=model, memory=Memory(storage))
    await agent.generate("mine", thread="t1", resource="alice")
    calls_before = len(model.requests)

    with pytest.raises(ThreadError) as info:
        await agent.generate("let me in", thread="t1", resource="bob")
    message = str(info.value)
    assert "'t1'" in message and "'alice'" in message and "'bob'" in message
    assert len(model.requests) == calls_before  # refused before the model was called
    assert texts(await storage.list_messages("t1")) == ["mine", "ok"]

    with pytest.raises(ThreadError, match="bob"):
        async for _ in agent.stream("again", thread="t1", resource="bob"):
            pass
    assert len(await storage.list_messages("t1")) == 2


async def test_thread_or_resource_without_memory_is_a_helpful_error() -> None:
    agent = Agent("forgetful", model=ScriptedModel(["ok"]))
    for options in ({"thread": "t1"}, {"resource": "alice"}):
        with pytest.raises(ThreadError) as info:
            await agent.generate("hi", **options)
        message = str(info.value)
        assert "forgetful" in message
        assert "Memory(SQLiteStorage(" in message
        assert "Lodestar app" in message
    assert (await agent.generate("hi")).text == "ok"  # without thread/resource no memory is needed


async def test_memory_without_storage_is_a_helpful_error() -> None:
    agent = Agent("helper", model=ScriptedModel(["ok"]), memory=Memory())
    with pytest.raises(ThreadError, match="no storage"):
        await agent.generate("hi", thread="t1")


async def test_agent_in_app_gets_memory_from_app_storage(storage: SQLiteStorage, tmp_path: Path) -> None:
    sub = Agent("sub", model=ScriptedModel(["sub"]))
    plain = Agent("plain", model=ScriptedModel(["plain answer"]), agents=[sub])
    bound = Agent("bound", model=ScriptedModel(["bound answer"]), memory=Memory(last_messages=3))
    own_storage = SQLiteStorage(tmp_path / "own.db")
    own = Agent("own", model=ScriptedModel(["own answer"]), memory=Memory(own_storage))
    app = Lodestar(agents=[plain, bound, own], storage=storage)

    assert app.get_agent("plain") is plain
    assert plain.get_memory().storage is storage
    assert sub.storage is storage
    assert bound.memory is not None and bound.memory.storage is storage
    assert bound.memory.last_messages == 3
    assert own.get_memory().storage is own_storage

    await plain.generate("hello", thread="p1", resource="alice")
    await bound.generate("hello", thread="b1", resource="alice")
    await own.generate("hello", thread="o1", resource="alice")
    assert sorted(t.id for t in await storage.list_threads("alice")) == ["b1", "p1"]
    assert [t.id for t in await own_storage.list_threads("alice")] == ["o1"]
    assert texts(await storage.list_messages("p1")) == ["hello", "plain answer"]
    with pytest.raises(KeyError, match="plain"):
        app.get_agent("nope")


async def test_list_read_delete_threads_through_memory(storage: SQLiteStorage) -> None:
    memory = Memory(storage)
    agent = Agent("helper", model=ScriptedModel(["ok"]), memory=memory)
    await agent.generate("first", thread="a1", resource="alice")
    await agent.generate("second", thread="a2", resource="alice")
    await agent.generate("other", thread="b1", resource="bob")
    await agent.generate("more", thread="a1", resource="alice")  # a1 is now the most recent of alice's

    assert [t.id for t in await memory.list_threads("alice")] == ["a1", "a2"]
    assert [t.id for t in await memory.list_threads("alice", limit=1, offset=1)] == ["a2"]
    assert {t.id for t in await memory.list_threads()} == {"a1", "a2", "b1"}
    thread = await memory.get_thread("a1")
    assert thread is not None and thread.title == "first"
    assert [m.text for m in await memory.messages("a1")] == ["first", "ok", "more", "ok"]
    assert [m.text for m in await memory.messages("a1", last=2)] == ["more", "ok"]
    assert all(isinstance(m, Message) for m in await memory.messages("a1"))

    assert await memory.delete_thread("a1") is True
    assert await memory.delete_thread("a1") is False
    assert await memory.get_thread("a1") is None
    assert await memory.messages("a1") == []
    assert [t.id for t in await memory.list_threads("alice")] == ["a2"]


async def test_resource_without_thread_makes_a_fresh_thread(storage: SQLiteStorage) -> None:
    model = recording(["ok"])
    agent = Agent("helper", model=model, memory=Memory(storage))
    first = await agent.generate("x" * 200, resource="alice")
    second = await agent.generate("again", resource="alice")

    assert first.thread_id and first.thread_id.startswith("thread_")
    assert second.thread_id and second.thread_id != first.thread_id
    assert seen(model.requests[-1]) == [("user", "again")]  # a fresh thread has no history
    thread = await storage.get_thread(first.thread_id)
    assert thread is not None and thread.resource_id == "alice"
    assert thread.title == "x" * 77 + "..."
    assert len(thread.title) == 80
    assert {t.id for t in await storage.list_threads("alice")} == {first.thread_id, second.thread_id}
    assert [m.role for m in await storage.list_messages(first.thread_id)] == ["user", "assistant"]


async def test_thread_given_as_mapping(storage: SQLiteStorage) -> None:
    agent = Agent("helper", model=ScriptedModel(["ok"]), memory=Memory(storage))
    result = await agent.generate(
        "hi", thread={"id": "t9", "title": "Chosen title", "metadata": {"source": "test"}}, resource="alice"
    )
    assert result.thread_id == "t9"
    thread = await storage.get_thread("t9")
    assert thread is not None
    assert thread.title == "Chosen title"
    assert thread.metadata == {"source": "test"}

    with pytest.raises(ThreadError, match="non-empty string"):
        await agent.generate("hi", thread={"id": 5})
    with pytest.raises(ThreadError, match="non-empty string"):
        await agent.generate("hi", thread="   ")


async def test_model_failure_still_saves_the_user_message(storage: SQLiteStorage) -> None:
    def broken(request: ModelRequest) -> str:
        raise ModelError("scripted", "the provider is down", status=503)

    agent = Agent("helper", model=ScriptedModel(broken), memory=Memory(storage))
    result = await agent.generate("are you there?", thread="t1", resource="alice")

    assert result.finish_reason == "error"
    assert result.error is not None
    assert result.error.status == 503
    assert "the provider is down" in result.error.message
    stored = await storage.list_messages("t1")
    assert [m.role for m in stored] == ["user"]
    assert texts(stored) == ["are you there?"]
    thread = await storage.get_thread("t1")
    assert thread is not None and thread.title == "are you there?"


RUN_TURN = textwrap.dedent(
    """
    import json, sys

    import anyio

    from lodestar.runtime import Agent, Memory
    from lodestar.runtime.models.scripted import ScriptedModel
    from lodestar.storage import SQLiteStorage

    db, question, answer = sys.argv[1:4]
    model = ScriptedModel([answer])
    model.record = True
    agent = Agent("helper", model=model, memory=Memory(SQLiteStorage(db)))

    async def main() -> None:
        result = await agent.generate(question, thread="t-restart", resource="alice")
        seen = [[m.role, m.text] for m in model.requests[-1].messages]
        print(json.dumps({"text": result.text, "thread": result.thread_id, "seen": seen}))

    anyio.run(main)
    """
)


def run_turn(script: Path, db: Path, question: str, answer: str) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, str(script), str(db), question, answer],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_thread_survives_a_process_restart(tmp_path: Path) -> None:
    script = tmp_path / "turn.py"
    script.write_text(RUN_TURN, "utf-8")
    db = tmp_path / "state" / "lodestar.db"

    first = run_turn(script, db, "remember the word heron", "noted: heron")
    assert first == {"text": "noted: heron", "thread": "t-restart", "seen": [["user", "remember the word heron"]]}

    second = run_turn(script, db, "which word?", "heron")
    assert second["thread"] == "t-restart"
    assert second["seen"] == [
        ["user", "remember the word heron"],
        ["assistant", "noted: heron"],
        ["user", "which word?"],
    ]
