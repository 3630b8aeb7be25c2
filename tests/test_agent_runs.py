"""Agent runs end to end against the OpenAI- and Anthropic-compatible test servers (real httpx, real SSE)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from llm_servers import Fail, LLMServer, Raw, Stall, Turn

from lodestar import Agent, Lodestar, ToolContext, tool
from lodestar.runtime import Chunk, RunResult
from lodestar.runtime.models.anthropic import AnthropicModel
from lodestar.runtime.models.openai import OpenAIModel
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio
PROVIDERS = ["openai", "anthropic"]


@pytest.fixture(params=PROVIDERS)
def server(request: pytest.FixtureRequest) -> LLMServer:
    return request.getfixturevalue(f"{request.param}_server")


def model_for(server: LLMServer, **options: Any) -> OpenAIModel | AnthropicModel:
    options = {"api_key": "test-key", "backoff_s": 0.01, **options}
    if server.url.endswith("/v1"):
        return OpenAIModel("gpt-test", base_url=server.url, **options)
    return AnthropicModel("claude-test", base_url=server.url, **options)


@tool
def lookup(term: str) -> dict[str, Any]:
    """Look a term up in the glossary.

    Args:
        term: The word to look up.
    """
    return {"term": term, "meaning": f"{term} means a guiding star"}


async def collect(agent: Agent, message: str, **options: Any) -> tuple[list[Chunk], RunResult]:
    stream = agent.stream(message, **options)
    chunks = [part async for part in stream]
    return chunks, await stream.result()


def kinds(chunks: list[Chunk]) -> list[str]:
    """Chunk types with repeats collapsed, so the test does not depend on how text was split."""
    return [kind for kind, _ in itertools.groupby(c.type for c in chunks)]


def last_tool_messages(server: LLMServer) -> str:
    """The tool results the model was shown in the last request, as text, whatever the wire format."""
    return repr(server.requests[-1].body["messages"])


async def test_multi_step_tool_calling_streams_chunks_in_order(server: LLMServer) -> None:
    server.script(
        Turn(tool_calls=[("lookup", {"term": "lodestar"})], usage=(20, 7)), Turn(text="It is a guiding star.")
    )
    agent = Agent("glossary", instructions="Use the glossary.", model=model_for(server), tools=[lookup])
    chunks, result = await collect(agent, "What is a lodestar?")

    assert kinds(chunks) == [
        "start",
        "step-start",
        "tool-call-input-streaming-start",
        "tool-call-delta",
        "tool-call-input-streaming-end",
        "tool-call",
        "tool-result",
        "step-finish",
        "step-start",
        "text-start",
        "text-delta",
        "text-end",
        "step-finish",
        "finish",
    ]
    assert {c.run_id for c in chunks} == {result.run_id}
    assert result.text == "It is a guiding star."
    assert result.finish_reason == "stop"
    assert [c.tool_name for c in result.tool_calls] == ["lookup"]
    assert result.tool_results[0].result == {"term": "lodestar", "meaning": "lodestar means a guiding star"}
    assert (result.usage.input_tokens, result.usage.output_tokens) == (30, 12)
    finish = chunks[-1].model_dump()["payload"]
    assert finish["output"]["usage"] == {"inputTokens": 30, "outputTokens": 12, "totalTokens": 42}
    assert "lodestar means a guiding star" in last_tool_messages(server)
    assert "Use the glossary." in repr(server.requests[0].body)


async def test_generate_matches_the_stream_aggregates(openai_server: LLMServer) -> None:
    openai_server.script(Turn(tool_calls=[("lookup", {"term": "a"})]), Turn(text="done"))
    agent = Agent("g", model=model_for(openai_server), tools=[lookup])
    result = await agent.generate("go")
    assert (result.text, result.finish_reason, len(result.steps)) == ("done", "stop", 2)
    assert result.steps[0].finish_reason == "tool-calls"


async def test_tool_calls_in_one_step_run_concurrently(server: LLMServer) -> None:
    first_started, second_started = anyio.Event(), anyio.Event()

    @tool
    async def first() -> str:
        """One half."""
        first_started.set()
        await second_started.wait()  # deadlocks unless both run at once
        return "one"

    @tool
    async def second() -> str:
        """The other half."""
        second_started.set()
        await first_started.wait()
        return "two"

    server.script(Turn(tool_calls=[("first", {}), ("second", {})]), Turn(text="both done"))
    agent = Agent("parallel", model=model_for(server), tools=[first, second])
    with anyio.fail_after(10):
        chunks, result = await collect(agent, "run both")
    assert result.text == "both done"
    assert sorted(r.result for r in result.tool_results) == ["one", "two"]
    assert [r.tool_name for r in result.tool_results] == ["first", "second"]  # the order of the calls
    assert sum(c.type == "tool-result" for c in chunks) == 2


async def test_tool_output_and_data_chunks_reach_the_stream(openai_server: LLMServer) -> None:
    @tool
    async def crawl(site: str, ctx: ToolContext) -> str:
        """Crawl a site."""
        await ctx.progress("fetching", 0.5)
        await ctx.writer.custom("data-page", {"url": site})
        return f"crawled {site} in run {ctx.run_id}"

    openai_server.script(Turn(tool_calls=[("crawl", {"site": "example.org"})]), Turn(text="ok"))
    agent = Agent("crawler", model=model_for(openai_server), tools=[crawl])
    chunks, result = await collect(agent, "crawl")
    output = next(c for c in chunks if c.type == "tool-output")
    assert output.payload.output == {"type": "progress", "message": "fetching", "progress": 0.5}
    data = next(c for c in chunks if c.type == "data-page")
    assert data.data == {"url": "example.org"}
    assert result.tool_results[0].result == f"crawled example.org in run {result.run_id}"
    assert kinds(chunks).index("tool-output") < kinds(chunks).index("tool-result")


async def test_malformed_arguments_become_a_tool_error_the_model_sees(server: LLMServer) -> None:
    server.script(Turn(tool_calls=[("lookup", '{"term": "lode')]), Turn(text="Sorry, let me retry."))
    agent = Agent("g", model=model_for(server), tools=[lookup])
    chunks, result = await collect(agent, "look up lodestar")
    error = next(c for c in chunks if c.type == "tool-error")
    assert "not valid JSON" in error.payload.error.message
    assert result.tool_results[0].is_error
    assert result.text == "Sorry, let me retry."
    assert "not valid JSON" in last_tool_messages(server)


async def test_arguments_that_break_the_schema_become_a_tool_error(openai_server: LLMServer) -> None:
    openai_server.script(Turn(tool_calls=[("lookup", {"word": "x"})]), Turn(text="fixed"))
    agent = Agent("g", model=model_for(openai_server), tools=[lookup])
    result = await agent.generate("go")
    message = result.tool_results[0].result
    assert "invalid arguments for tool lookup" in message and "term" in message and "word" in message
    assert result.finish_reason == "stop"


async def test_a_raising_tool_becomes_a_tool_error_and_the_run_goes_on(server: LLMServer) -> None:
    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(f"disk full: {reason}")

    server.script(Turn(tool_calls=[("explode", {"reason": "logs"})]), Turn(text="The tool failed."))
    agent = Agent("g", model=model_for(server), tools=[explode])
    chunks, result = await collect(agent, "go")
    assert any(c.type == "tool-error" for c in chunks)
    assert result.tool_results[0].result == "tool explode failed: RuntimeError: disk full: logs"
    assert "disk full: logs" in last_tool_messages(server)
    assert (result.text, result.finish_reason) == ("The tool failed.", "stop")


async def test_an_unknown_tool_name_is_reported_to_the_model(openai_server: LLMServer) -> None:
    openai_server.script(Turn(tool_calls=[("search_web", {"q": "x"})]), Turn(text="ok"))
    result = await Agent("g", model=model_for(openai_server), tools=[lookup]).generate("go")
    assert "unknown tool 'search_web'" in result.tool_results[0].result
    assert "lookup" in result.tool_results[0].result


async def test_max_steps_stops_a_model_that_keeps_calling_tools(openai_server: LLMServer) -> None:
    openai_server.script(*[Turn(tool_calls=[("lookup", {"term": str(i)})]) for i in range(3)])
    agent = Agent("g", model=model_for(openai_server), tools=[lookup], max_steps=5)
    result = await agent.generate("go", max_steps=3)
    assert len(result.steps) == 3
    assert result.finish_reason == "tool-calls"
    assert len(openai_server.requests) == 3


async def test_a_500_then_success_is_retried(server: LLMServer) -> None:
    server.script(Fail(500), Fail(503, headers={"Retry-After": "0"}), Turn(text="recovered"))
    result = await Agent("g", model=model_for(server)).generate("hi")
    assert (result.text, result.error) == ("recovered", None)
    assert len(server.requests) == 3


async def test_401_ends_the_run_with_an_error_chunk_naming_provider_and_status(server: LLMServer) -> None:
    server.script(Fail(401, {"error": {"message": "invalid api key"}}))
    chunks, result = await collect(Agent("g", model=model_for(server)), "hi")
    error = next(c for c in chunks if c.type == "error")
    provider = "openai" if server.url.endswith("/v1") else "anthropic"
    assert error.payload.error.provider == provider
    assert error.payload.error.status == 401
    assert "invalid api key" in error.payload.error.message
    assert chunks[-1].type == "finish" and chunks[-1].payload.step_result.reason == "error"
    assert result.finish_reason == "error" and result.error is not None and result.error.status == 401
    assert len(server.requests) == 1


async def test_retries_running_out_give_an_error_chunk(openai_server: LLMServer) -> None:
    openai_server.script(Fail(502), Fail(502), Fail(502))
    result = await Agent("g", model=model_for(openai_server, max_retries=2)).generate("hi")
    assert result.error is not None and result.error.status == 502
    assert "after 3 attempts" in result.error.message
    assert len(openai_server.requests) == 3


async def test_a_model_that_never_answers_times_out(server: LLMServer) -> None:
    server.script(Stall())
    agent = Agent("g", model=model_for(server, timeout_s=0.3, max_retries=0))
    with anyio.fail_after(10):
        result = await agent.generate("hi")
    assert result.finish_reason == "error"
    assert result.error is not None and "no response within 0.3 s" in result.error.message


async def test_signed_thinking_goes_back_before_the_tool_call_and_stays_in_memory(
    anthropic_server: LLMServer, tmp_path: Path
) -> None:
    """With extended thinking, Claude refuses a tool-use turn sent back without its signed thinking block."""
    thinking = {"thinking": {"type": "enabled", "budget_tokens": 1024}}
    agent = Agent("thinker", model=model_for(anthropic_server), tools=[lookup])
    Lodestar(agents=[agent], storage=SQLiteStorage(tmp_path / "memory.db"))
    anthropic_server.script(
        Turn(reasoning="I should look it up.", tool_calls=[("lookup", {"term": "x"})]), Turn(text="x")
    )

    result = await agent.generate("What is x?", thread="t1", resource="r1", model_settings={"extra": thinking})

    assert result.text == "x" and result.steps[0].reasoning == "I should look it up."
    second = anthropic_server.requests[1].body
    assert second["thinking"] == thinking["thinking"]
    turn = second["messages"][1]["content"]
    assert turn[0] == {"type": "thinking", "thinking": "I should look it up.", "signature": "x"}
    assert turn[1]["type"] == "tool_use"
    [stored] = [m for m in await agent.get_memory().messages("t1") if m.reasoning]
    assert [(p.text, p.signature) for p in stored.reasoning] == [("I should look it up.", "x")]


def interleaved_answer() -> Raw:
    """Claude with interleaved thinking: thinking, text and a tool call, twice over."""
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    for n, term in ((1, "a"), (2, "b")):
        thinking = [
            {"type": "thinking_delta", "thinking": f"Step {n}."},
            {"type": "signature_delta", "signature": f"s{n}"},
        ]
        blocks.append(({"type": "thinking", "thinking": ""}, thinking))
        blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": f"Looking up {term}."}]))
        call = {"type": "tool_use", "id": f"toolu_{term}", "name": "lookup", "input": {}}
        blocks.append((call, [{"type": "input_json_delta", "partial_json": f'{{"term": "{term}"}}'}]))
    events: list[dict[str, Any] | str] = [{"type": "message_start", "message": {"usage": {"input_tokens": 5}}}]
    for index, (start, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events += [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
        events.append({"type": "content_block_stop", "index": index})
    return Raw([*events, {"type": "message_delta", "delta": {"stop_reason": "tool_use"}}, {"type": "message_stop"}])


async def test_interleaved_thinking_goes_back_in_the_order_it_came(anthropic_server: LLMServer) -> None:
    agent = Agent("thinker", model=model_for(anthropic_server), tools=[lookup])
    anthropic_server.script(interleaved_answer(), Turn(text="Done."))

    chunks, result = await collect(agent, "Look up a and b.")

    assert result.text == "Done." and result.steps[0].text == "Looking up a.Looking up b."
    sent_back = anthropic_server.requests[1].body["messages"][1]["content"]
    assert [(b["type"], b.get("thinking") or b.get("text") or b.get("id")) for b in sent_back] == [
        ("thinking", "Step 1."),
        ("text", "Looking up a."),
        ("tool_use", "toolu_a"),
        ("thinking", "Step 2."),
        ("text", "Looking up b."),
        ("tool_use", "toolu_b"),
    ]
    assert [b.get("signature") for b in sent_back if b["type"] == "thinking"] == ["s1", "s2"]
    first_step = kinds(chunks)[kinds(chunks).index("step-start") : kinds(chunks).index("tool-call")]
    assert first_step == [
        "step-start",
        *["reasoning-start", "reasoning-delta", "reasoning-end", "text-start", "text-delta", "text-end"],
        *["tool-call-input-streaming-start", "tool-call-delta"],
        *["reasoning-start", "reasoning-delta", "reasoning-end", "text-start", "text-delta", "text-end"],
        *["tool-call-input-streaming-start", "tool-call-delta"],
        "tool-call-input-streaming-end",  # then tool-call: arguments are announced once the stream is complete
    ]


async def test_instructions_may_be_a_callable_of_the_request_context(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="hello Ada"))
    agent = Agent("g", instructions=lambda ctx: f"Greet {ctx['user']} by name.", model=model_for(openai_server))
    await agent.generate("hi", request_context={"user": "Ada"})
    assert openai_server.requests[0].body["messages"][0] == {"role": "system", "content": "Greet Ada by name."}


async def test_leaving_a_stream_early_cancels_the_run_and_its_tools(openai_server: LLMServer) -> None:
    started, cancelled = anyio.Event(), anyio.Event()

    @tool
    async def slow() -> str:
        """Takes forever."""
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return "never"

    openai_server.script(Turn(tool_calls=[("slow", {})]))
    agent = Agent("g", model=model_for(openai_server), tools=[slow])
    with anyio.fail_after(10):
        async with agent.stream("go") as stream:
            async for part in stream:
                if part.type == "tool-call":
                    await started.wait()
                    break
        await cancelled.wait()
    with pytest.raises(RuntimeError, match="left before its end"):
        await stream.result()


async def test_unknown_options_are_refused_by_name(openai_server: LLMServer) -> None:
    agent = Agent("g", model=model_for(openai_server))
    with pytest.raises(ValueError, match="max_step"):
        await agent.generate("hi", max_step=3)
    with pytest.raises(ValueError, match="max_steps"):
        Agent("g", default_options={"max_steps": 0})


RESTART_TURN = """
import sys

import anyio

from lodestar import Agent, Lodestar, tool
from lodestar.storage import SQLiteStorage


@tool
def remember(word: str) -> str:
    \"\"\"Note a word.\"\"\"
    return f"noted {word}"


agent = Agent("keeper", model="openai/gpt-test", tools=[remember])
Lodestar(agents=[agent], storage=SQLiteStorage(sys.argv[1]))
result = anyio.run(lambda: agent.generate(sys.argv[2], thread="t1", resource="alice"))
print(result.text)
"""


def test_a_thread_survives_a_process_restart_with_tool_turns(openai_server: LLMServer, tmp_path: Path) -> None:
    script, db = tmp_path / "turn.py", tmp_path / "state.db"
    script.write_text(RESTART_TURN, "utf-8")
    env = {**os.environ, "OPENAI_BASE_URL": openai_server.url, "OPENAI_API_KEY": "test-key"}

    def turn(message: str) -> str:
        done = subprocess.run(
            [sys.executable, str(script), str(db), message], env=env, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    openai_server.script(Turn(tool_calls=[("remember", {"word": "heron"})]), Turn(text="I noted heron."))
    assert turn("Remember the word heron.") == "I noted heron."
    openai_server.script(Turn(text="heron"))
    assert turn("Which word?") == "heron"

    messages = openai_server.requests[-1].body["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant", "tool", "assistant", "user"]
    assert messages[1]["tool_calls"][0]["function"] == {"name": "remember", "arguments": '{"word": "heron"}'}
    assert messages[2]["content"] == "noted heron"
    assert messages[3]["content"] == "I noted heron."


async def test_options_that_do_nothing_here_are_refused(openai_server: LLMServer) -> None:
    agent = Agent("g", model=model_for(openai_server))
    with pytest.raises(ValueError, match=r"^max_idle_ms applies only to stream_until_idle\(\)"):
        await agent.generate("hi", max_idle_ms=1000)
    with pytest.raises(ValueError, match=r"^max_idle_ms applies only to stream_until_idle\(\)"):
        agent.stream("hi", max_idle_ms=1000)
    with pytest.raises(ValueError, match=r"unknown argument 'max_step' \(did you mean 'max_steps'\?\)"):
        await agent.generate("hi", max_step=3)
