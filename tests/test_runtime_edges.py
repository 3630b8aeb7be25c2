"""Edge cases of the run loop with the scripted model: cancellation, saving, parallel failures, bookkeeping."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import anyio
import pytest

from lodestar import Agent, ToolContext, tool
from lodestar.runtime import Memory, Message, Processor, TextPart
from lodestar.runtime.models.scripted import ScriptedModel, ScriptedTurn, call, calls
from lodestar.runtime.processors import InputArgs, OutputStepArgs, OutputStreamArgs
from lodestar.storage import SQLiteStorage, StoredMessage

pytestmark = pytest.mark.anyio


@tool
async def chatty(ctx: ToolContext) -> str:
    """Writes far more output than any stream buffers."""
    for i in range(2000):
        await ctx.writer.write(i)
    return "done"


async def test_closing_a_stream_whose_buffer_is_full_returns_promptly() -> None:
    agent = Agent("a", model=ScriptedModel([calls(call("chatty")), "end"]), tools=[chatty])
    with anyio.fail_after(5):
        async with agent.stream("go") as stream:
            async for part in stream:
                if part.type == "tool-output":
                    break


async def test_the_consumers_own_cancellation_is_not_swallowed() -> None:
    started, stopped = anyio.Event(), anyio.Event()

    @tool
    async def wait_forever() -> str:
        """Never returns."""
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            stopped.set()
        return ""

    agent = Agent("a", model=ScriptedModel([calls(call("wait_forever"))]), tools=[wait_forever])
    reached_after_block = False
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with agent.stream("go") as stream:
                async for part in stream:
                    if part.type == "tool-call":
                        await started.wait()
                        scope.cancel()
            reached_after_block = True
        await stopped.wait()
    assert scope.cancelled_caught and not reached_after_block


class SlowStorage(SQLiteStorage):
    """Holds add_messages until the test lets it finish."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.saving, self.release = asyncio.Event(), asyncio.Event()

    async def add_messages(self, thread_id: str, messages: list[StoredMessage]) -> None:
        self.saving.set()
        await self.release.wait()
        await super().add_messages(thread_id, messages)


async def test_a_run_cancelled_while_saving_still_saves(tmp_path: Path) -> None:
    storage = SlowStorage(tmp_path / "db")
    agent = Agent("a", model=ScriptedModel(["answer"]), memory=Memory(storage))
    task = asyncio.ensure_future(agent.generate("question", thread="t1"))
    await storage.saving.wait()
    task.cancel()
    storage.release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    with anyio.fail_after(5):
        while len(await storage.list_messages("t1")) < 2:
            await asyncio.sleep(0)  # yields to the shielded save, no timing assumption
    assert [m.role for m in await storage.list_messages("t1")] == ["user", "assistant"]


class StopOnResult(Processor):
    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        if args.part.type == "tool-result":
            args.abort("no results allowed")
        return args.part


@tool
async def one() -> str:
    """One."""
    return "1"


@tool
async def two() -> str:
    """Two."""
    return "2"


async def test_a_tripwire_during_parallel_tool_calls_ends_the_run_cleanly() -> None:
    model = ScriptedModel([calls(call("one"), call("two")), "end"])
    agent = Agent("a", model=model, tools=[one, two], output_processors=[StopOnResult()])
    chunks = [part async for part in agent.stream("go")]
    assert [c.type for c in chunks][-2:] == ["tripwire", "finish"]
    assert chunks[-2].payload.reason == "no results allowed"


async def test_an_async_function_behind_a_plain_wrapper_is_awaited() -> None:
    async def weather(city: str) -> str:
        return f"sunny in {city}"

    def wrapper(city: str) -> Any:
        return weather(city)

    agent = Agent("a", model=ScriptedModel([calls(call("wrapper", {"city": "Oslo"})), "ok"]), tools=[wrapper])
    result = await agent.generate("go")
    assert result.tool_results[0].result == "sunny in Oslo"


class Counter(Processor):
    def __init__(self, word: str) -> None:
        self.word, self.counts = word, []

    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        if args.part.type == "text-delta" and self.word in args.part.payload.text:
            args.state["n"] = args.state.get("n", 0) + 1
        return args.part

    def process_output_step(self, args: OutputStepArgs) -> None:
        self.counts.append(args.state.get("n", 0))


async def test_two_instances_of_one_processor_keep_separate_state() -> None:
    cat, dog = Counter("cat"), Counter("dog")
    agent = Agent("a", model=ScriptedModel(["cat cat cat dog"]), output_processors=[cat, dog])
    await agent.generate("go")
    assert (cat.counts, dog.counts) == ([3], [1])


class RejectOnce(Processor):
    def process_output_step(self, args: OutputStepArgs) -> None:
        if args.retry_count == 0:
            args.abort("again", retry=True)


async def test_usage_counts_rejected_attempts_too() -> None:
    turn = ScriptedTurn(text="hi", usage={"input_tokens": 100, "output_tokens": 10, "total_tokens": 110})
    model = ScriptedModel(lambda request: turn)
    agent = Agent("a", model=model, output_processors=[RejectOnce()], max_processor_retries=1)
    result = await agent.generate("go")
    assert (result.usage.input_tokens, result.usage.output_tokens) == (200, 20)
    assert len(result.steps) == 1


class DropReasoning(Processor):
    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        return None if args.part.type == "reasoning-delta" else args.part


async def test_reasoning_a_processor_drops_is_not_in_the_result() -> None:
    model = ScriptedModel([ScriptedTurn(text="answer", reasoning="secret thoughts")])
    kept = await Agent("a", model=model).generate("go")
    dropped = await Agent("b", model=model, output_processors=[DropReasoning()]).generate("go")
    assert (kept.steps[0].reasoning, dropped.steps[0].reasoning) == ("secret thoughts", "")


async def test_structured_output_without_a_final_answer_is_an_error() -> None:
    from pydantic import BaseModel

    class Answer(BaseModel):
        value: int

    agent = Agent("a", model=ScriptedModel([calls(call("one"))] * 3), tools=[one], max_steps=2)
    result = await agent.generate("go", structured_output=Answer)
    assert result.finish_reason == "error" and result.error is not None
    assert "raise max_steps" in result.error.message


class AddDate(Processor):
    def process_input(self, args: InputArgs) -> list[Message]:
        return [Message(role="system", content=[TextPart(text="Today is Monday.")]), *args.messages]


async def test_system_messages_added_by_processors_are_not_saved(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    model = ScriptedModel(["ok"])
    model.record = True
    agent = Agent("a", model=model, memory=Memory(storage), input_processors=[AddDate()])
    for text in ("one", "two", "three"):
        await agent.generate(text, thread="t1")
    assert [m.role for m in await storage.list_messages("t1")] == ["user", "assistant"] * 3
    assert model.requests[-1].system == "Today is Monday."


async def test_one_message_may_be_saved_in_two_threads(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    example = Message(role="user", content=[TextPart(text="Example: say hi")])
    agent = Agent("a", model=ScriptedModel(["hi"]), memory=Memory(storage))
    for thread in ("alice", "bob"):
        await agent.generate([example, {"role": "user", "content": "hello"}], thread=thread)
    for thread in ("alice", "bob"):
        assert [m.content[0]["text"] for m in await storage.list_messages(thread)] == ["Example: say hi", "hello", "hi"]


def test_a_tool_mapping_names_its_tools() -> None:
    def search(query: str) -> str:
        """Search."""
        return query

    assert list(Agent("a", tools={"web_search": search}).tools) == ["web_search"]
    with pytest.raises(ValueError, match="listed under the name"):
        Agent("a", tools={"web_search": tool(search)})
