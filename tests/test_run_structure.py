"""The run's structure: a frozen plan apart from a serialisable state, each step's decision as data, stopping on a
cut-short answer, `Agent.as_tool()`, the tool dispatcher seam, and chaining turns into one stream."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from llm_servers import LLMServer, Turn
from pydantic import BaseModel
from test_agent_runs import collect, lookup, model_for

from lodestar import Agent, ToolContext, tool
from lodestar.runtime import AgentStream, Memory, Processor, RunOptions, ToolCallPart
from lodestar.runtime.chunks import LIFECYCLE
from lodestar.runtime.dispatch import INLINE, InlineDispatcher, ToolDispatcher, ToolOutcome
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.runtime.plan import CUT_SHORT, FinalAnswer, RunAgain, RunState, Stop, decide
from lodestar.runtime.processors import OutputStreamArgs
from lodestar.runtime.run import Run
from lodestar.runtime.tools import Tool
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


class Tally:
    """A tool that counts its calls."""

    def __init__(self) -> None:
        self.calls = 0

        @tool
        async def count(n: int = 1) -> int:
            """Count."""
            self.calls += 1
            return n

        self.tool = count


async def test_the_plan_is_resolved_once_and_frozen() -> None:
    agent = Agent("a", model=ScriptedModel(["ok"]), tools=[lookup], max_steps=4, instructions="Be brief.")
    plan = agent.plan(RunOptions(max_steps=2, instructions="Be long.", tool_choice="required"))
    assert (plan.max_steps, plan.tool_choice, await plan.system_prompt()) == (2, "required", "Be long.")
    assert plan.dispatcher is INLINE and list(plan.tools) == ["lookup"] and plan.memory is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        plan.max_steps = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        plan.tools["other"] = lookup  # type: ignore[index]
    agent.tools.clear()
    assert list(plan.tools) == ["lookup"]  # a running plan does not see the agent change


async def test_the_state_round_trips_through_json(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "db")
    agent = Agent("a", model=ScriptedModel([calls(call("lookup", {"term": "star"})), "done"]), tools=[lookup])
    agent.memory = Memory(storage)
    run = Run(agent.plan(RunOptions(thread="t1", resource="u1")), "what is a star?")
    result = await run.execute()

    state = run.state
    assert (state.step, state.thread_id, state.resource_id) == (2, "t1", "u1")
    assert [m.role for m in state.new_messages] == ["user", "assistant", "tool", "assistant"]
    assert state.usage == result.usage and state.usage.total_tokens > 0
    again = RunState.model_validate_json(state.model_dump_json())
    assert again == state
    assert again.conversation[2].tool_results[0].result == {"term": "star", "meaning": "star means a guiding star"}
    await storage.close()


@pytest.mark.parametrize(
    ("reason", "text", "has_calls", "expected"),
    [
        ("stop", "hi", False, FinalAnswer("hi")),
        ("tool-calls", "", True, RunAgain()),
        ("other", "", True, RunAgain()),
        ("length", "cut", True, Stop("length")),
        ("content-filter", "", False, Stop("content-filter")),
        ("error", "", True, Stop("error")),
    ],
)
def test_each_step_ends_in_a_decision(reason: str, text: str, has_calls: bool, expected: object) -> None:
    assert decide(reason, text, has_calls) == expected


@pytest.mark.parametrize("reason", sorted(CUT_SHORT))
async def test_an_answer_cut_short_ends_the_run_without_running_its_tools(reason: str, tmp_path: Path) -> None:
    tally = Tally()
    model = ScriptedModel([calls(call("count"), text="Counting", finish_reason=reason), "never asked"])
    model.record = True
    agent = Agent("a", model=model, tools=[tally.tool], memory=Memory(SQLiteStorage(tmp_path / "db")))
    chunks, result = await collect(agent, "count", thread="t1")

    assert tally.calls == 0 and len(model.requests) == 1
    assert result.finish_reason == reason and result.text == "Counting"
    assert [c.tool_name for c in result.tool_calls] == ["count"] and result.tool_results == []
    step_finish = next(c for c in chunks if c.type == "step-finish")
    assert step_finish.payload.step_result.is_continued is False
    saved = await agent.get_memory().messages("t1")
    assert [m.role for m in saved] == ["user", "assistant"]
    assert saved[1].text == "Counting" and saved[1].tool_calls == []  # a call that never ran is not kept


@pytest.mark.parametrize("raw", ["length", "content_filter"])
async def test_a_provider_answer_cut_short_stops_with_calls_pending(raw: str, openai_server: LLMServer) -> None:
    tally = Tally()
    openai_server.script(Turn(text="Let me", tool_calls=[("count", '{"n": ')], finish=raw), Turn(text="never"))
    agent = Agent("a", model=model_for(openai_server), tools=[tally.tool])
    result = await agent.generate("count")
    assert tally.calls == 0 and len(openai_server.requests) == 1
    assert result.finish_reason == raw.replace("_", "-") and result.error is None


async def test_structured_output_of_an_answer_cut_short_says_why() -> None:
    class Answer(BaseModel):
        value: int

    agent = Agent("a", model=ScriptedModel([calls(text='{"val', finish_reason="length")]))
    result = await agent.generate("go", structured_output=Answer)
    assert result.error is not None and result.object is None
    assert "finish reason length" in result.error.message and "max_tokens" in result.error.message


async def test_max_steps_still_runs_the_last_steps_tools() -> None:
    tally = Tally()
    agent = Agent("a", model=ScriptedModel([calls(call("count"))] * 3), tools=[tally.tool], max_steps=2)
    chunks, result = await collect(agent, "go")
    assert tally.calls == 2 and len(result.steps) == 2 and result.finish_reason == "tool-calls"
    continued = [c.payload.step_result.is_continued for c in chunks if c.type == "step-finish"]
    assert continued == [True, False]


async def test_as_tool_names_and_describes_the_agent() -> None:
    researcher = Agent("researcher", description="Finds facts.", model=ScriptedModel(["a guiding star"]))
    default = researcher.as_tool()
    assert (default.name, default.description) == ("agent-researcher", "Finds facts.")
    assert list(default.input_schema["properties"]) == ["prompt"]
    named = researcher.as_tool(name="ask_researcher", description="Ask the researcher.")
    assert (named.name, named.description) == ("ask_researcher", "Ask the researcher.")
    assert Agent("plain").as_tool().description == "Delegate a task to the plain agent."

    boss = Agent(
        "boss",
        model=ScriptedModel([calls(call("ask_researcher", {"prompt": "lodestar?"})), "It is a guiding star."]),
        tools=[named],
    )
    result = await boss.generate("what is a lodestar?")
    assert result.tool_results[0].result == "a guiding star" and result.text == "It is a guiding star."


@pytest.mark.parametrize("module", ["subagents", "agent", "run", "plan", "dispatch", "tools"])
def test_each_runtime_module_imports_on_its_own(module: str) -> None:
    """No import cycle: each module imports first in a fresh interpreter."""
    code = f"import lodestar.runtime.{module}"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr


class Recording(InlineDispatcher):
    """A dispatcher that runs nothing: it records each call and answers from a table (specs as inline)."""

    def __init__(self, answers: dict[str, ToolOutcome]) -> None:
        self.answers = answers
        self.seen: list[tuple[ToolCallPart, str, ToolContext]] = []

    async def dispatch(self, call: ToolCallPart, tool: Tool, context: ToolContext) -> ToolOutcome:
        self.seen.append((call, tool.name, context))
        if call.tool_name == "boom":
            raise RuntimeError("the dispatcher broke")
        return self.answers[call.tool_name]


async def test_a_dispatcher_plugs_in_without_the_loop_changing() -> None:
    tally = Tally()

    @tool
    def boom() -> str:
        """Never runs here."""
        raise AssertionError("the dispatcher runs tools, not the loop")

    dispatcher = Recording({"count": ToolOutcome({"task_id": "task_1", "status": "started"})})
    assert isinstance(dispatcher, ToolDispatcher)
    script = [calls(call("count", {"n": 3}), call("boom"), call("missing")), "done"]
    agent = Agent("a", model=ScriptedModel(script), tools=[tally.tool, boom], tool_dispatcher=dispatcher)
    chunks, result = await collect(agent, "go", request_context={"user": "ada"})

    assert tally.calls == 0
    assert [(c.tool_name, c.args, name) for c, name, _ in dispatcher.seen] == [
        ("count", {"n": 3}, "count"),
        ("boom", {}, "boom"),
    ]
    context = dispatcher.seen[0][2]
    assert (context.run_id, context.tool_name, context.request_context) == (result.run_id, "count", {"user": "ada"})
    count, broken, missing = result.tool_results
    assert (count.result, count.is_error) == ({"task_id": "task_1", "status": "started"}, False)
    assert broken.is_error and "the dispatcher broke" in broken.result
    assert missing.is_error and "unknown tool 'missing'" in missing.result  # never reaches the dispatcher
    assert [c.type for c in chunks if c.type.startswith("tool-")].count("tool-error") == 2


async def test_a_dispatcher_may_answer_with_an_error() -> None:
    dispatcher = Recording({"count": ToolOutcome("queue full: try later", is_error=True)})
    agent = Agent(
        "a", model=ScriptedModel([calls(call("count")), "ok"]), tools=[Tally().tool], tool_dispatcher=dispatcher
    )
    chunks, result = await collect(agent, "go")
    assert result.tool_results[0].is_error and result.tool_results[0].result == "queue full: try later"
    [error] = [c for c in chunks if c.type == "tool-error"]
    assert error.payload.error.message == "queue full: try later"


def runs(*scripts: list[Any]) -> list[Run]:
    return [Run(Agent(f"a{i}", model=ScriptedModel(s)).plan(RunOptions()), "go") for i, s in enumerate(scripts)]


async def test_turns_chain_into_one_stream() -> None:
    first, second = runs(["first answer"], ["second answer"])
    stream = AgentStream(first.execute, run_id=first.run_id)
    stream.then(second.execute)
    chunks = [c async for c in stream]

    starts = [c.run_id for c in chunks if c.type == "start"]
    finishes = [c.run_id for c in chunks if c.type == "finish"]
    assert starts == finishes == [first.run_id, second.run_id]  # each turn brings its own start ... finish
    texts = "".join(c.payload.text for c in chunks if c.type == "text-delta")
    assert texts == "first answersecond answer"
    result = await stream.result()
    assert result.run_id == first.run_id and stream.text == "first answer"  # aggregates: the first turn's
    with pytest.raises(RuntimeError, match="has ended"):
        stream.then(second.execute)


async def test_a_running_turn_may_chain_the_next() -> None:
    first, second, third = runs(["one"], ["two"], ["three"])
    stream = AgentStream(first.execute, run_id=first.run_id)

    async def middle(sink: Any) -> object:
        stream.then(third.execute)  # decided while running, as a turn waiting for background tasks will
        return await second.execute(sink)

    stream.then(middle)
    chunks = [c async for c in stream]
    assert [c.run_id for c in chunks if c.type == "finish"] == [first.run_id, second.run_id, third.run_id]


@tool
def noop(value: int = 0) -> int:
    """Return the value."""
    return value


class ChunkTypes(Processor):
    """Records the type of every chunk it sees."""

    def __init__(self) -> None:
        self.types: list[str] = []

    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        self.types.append(args.part.type)
        return args.part


async def test_generate_without_readers_skips_step_chunks_yet_gives_the_same_result() -> None:
    """generate() builds no step or tool-call chunks when nobody reads them; a stream processor still sees
    every chunk the stream shows it, and the result is the same either way."""
    turns = [calls(call("noop", {"value": 3}, id="c1")), calls(call("nope", id="c2")), "done"]
    seer = ChunkTypes()
    plain = await Agent("a", model=ScriptedModel(turns), tools=[noop]).generate("go")
    watched = await Agent("a", model=ScriptedModel(turns), tools=[noop], output_processors=[seer]).generate("go")
    stream = Agent("a", model=ScriptedModel(turns), tools=[noop]).stream("go")
    streamed = [chunk.type async for chunk in stream]
    for result in (watched, await stream.result()):
        assert result.model_dump(exclude={"run_id", "messages"}) == plain.model_dump(exclude={"run_id", "messages"})
    expected = ["tool-call-input-streaming-start", "tool-call-delta", "tool-call-input-streaming-end", "tool-call"]
    assert seer.types[:5] == [*expected, "tool-result"] and "tool-error" in seer.types
    assert seer.types == [t for t in streamed if t not in LIFECYCLE] and streamed.count("step-finish") == 3
