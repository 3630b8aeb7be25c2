"""Subagents: a supervisor delegates through `agent-<id>` tools; each delegation gets a fresh thread."""

from __future__ import annotations

from pathlib import Path

import pytest
from llm_servers import Fail, LLMServer, Turn
from test_agent_runs import collect, lookup, model_for

from lodestar import Agent, Lodestar
from lodestar.runtime import parse_chunk
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


def team(openai_server: LLMServer, anthropic_server: LLMServer) -> tuple[Agent, Agent]:
    researcher = Agent(
        "researcher",
        description="Finds facts in the glossary.",
        instructions="Research carefully.",
        model=model_for(anthropic_server),
        tools=[lookup],
    )
    supervisor = Agent("supervisor", model=model_for(openai_server), agents=[researcher])
    return supervisor, researcher


async def test_subagent_runs_as_a_tool_and_its_chunks_reach_the_supervisor(
    openai_server: LLMServer, anthropic_server: LLMServer
) -> None:
    supervisor, _ = team(openai_server, anthropic_server)
    assert "agent-researcher" in supervisor.tools
    assert supervisor.tools["agent-researcher"].description == "Finds facts in the glossary."
    openai_server.script(
        Turn(tool_calls=[("agent-researcher", {"prompt": "What does lodestar mean?"})]),
        Turn(text="The researcher says: a guiding star."),
    )
    anthropic_server.script(Turn(tool_calls=[("lookup", {"term": "lodestar"})]), Turn(text="A guiding star."))
    chunks, result = await collect(supervisor, "Ask the researcher about lodestar.")

    assert result.text == "The researcher says: a guiding star."
    assert result.tool_results[0].result == "A guiding star."
    inner = [c.payload.output for c in chunks if c.type == "tool-output"]
    inner_types = [c["type"] for c in inner]
    assert inner_types[0] == "start" and inner_types[-1] == "finish"
    assert "tool-result" in inner_types and "text-delta" in inner_types
    assert {c["runId"] for c in inner} != {result.run_id}
    assert [parse_chunk(c).model_dump(mode="json") for c in inner] == inner  # each is a subagent chunk's wire JSON
    first_prompt = anthropic_server.requests[0].body["messages"][0]
    assert "What does lodestar mean?" in repr(first_prompt)
    assert anthropic_server.requests[0].body["system"] == "Research carefully."


async def test_each_delegation_runs_on_a_fresh_thread_of_the_same_resource(
    openai_server: LLMServer, anthropic_server: LLMServer, tmp_path: Path
) -> None:
    supervisor, _ = team(openai_server, anthropic_server)
    storage = SQLiteStorage(tmp_path / "team.db")
    Lodestar(agents=[supervisor], storage=storage)
    openai_server.script(
        Turn(tool_calls=[("agent-researcher", {"prompt": "first task"})]),
        Turn(tool_calls=[("agent-researcher", {"prompt": "second task"})]),
        Turn(text="all done"),
    )
    anthropic_server.script(Turn(text="first answer"), Turn(text="second answer"))
    result = await supervisor.generate("delegate twice", thread="main", resource="user-1")

    assert result.text == "all done"
    threads = await storage.list_threads("user-1")
    assert len(threads) == 3
    sub_threads = [t for t in threads if t.id != "main"]
    for thread in sub_threads:
        messages = await storage.list_messages(thread.id)
        assert len(messages) == 2  # the task and the answer, nothing from the supervisor's conversation
    second_request = repr(anthropic_server.requests[1].body["messages"])
    assert "delegate twice" in second_request and "first answer" in second_request  # it sees the supervisor's


async def test_a_failing_subagent_is_a_tool_error_for_the_supervisor(
    openai_server: LLMServer, anthropic_server: LLMServer
) -> None:
    supervisor, _ = team(openai_server, anthropic_server)
    openai_server.script(Turn(tool_calls=[("agent-researcher", {"prompt": "task"})]), Turn(text="it failed"))
    anthropic_server.script(Fail(401, {"error": {"message": "bad key"}}))
    result = await supervisor.generate("delegate")
    assert result.tool_results[0].is_error
    assert "anthropic" in result.tool_results[0].result and "401" in result.tool_results[0].result
    assert result.text == "it failed"


def test_a_subagent_name_that_clashes_with_a_tool_is_refused() -> None:
    sub = Agent("lookup")
    with pytest.raises(ValueError, match="clashes"):
        Agent(
            "boss",
            tools=[lookup.__class__(lookup.fn, name="agent-lookup", description="x", input_schema={})],
            agents=[sub],
        )
