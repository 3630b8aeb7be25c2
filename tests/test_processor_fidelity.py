"""Processors as Mastra runs them: consecutive retries, plain message lists from process_input_step, and a
tripwire mid-block that still ends the block the consumer saw start."""

from __future__ import annotations

from typing import Any

import pytest
from test_agent_runs import collect, lookup

from lodestar import Agent
from lodestar.runtime import Message
from lodestar.runtime.models.base import ModelRequest
from lodestar.runtime.models.scripted import ScriptedModel, ScriptedTurn, call, calls
from lodestar.runtime.processors import InputStepArgs, OutputStepArgs, OutputStreamArgs, Processor

pytestmark = pytest.mark.anyio


class RejectFirstTry(Processor):
    """Rejects every step's first attempt: each step needs one retry."""

    def __init__(self) -> None:
        self.retry_counts: list[int] = []

    def process_output_step(self, args: OutputStepArgs) -> None:
        self.retry_counts.append(args.retry_count)
        if args.retry_count == 0:
            args.abort(f"step {args.step_number}: try again", retry=True)


def by_step(request: ModelRequest) -> ScriptedTurn:
    """A lookup call first, then an answer: chosen by whether a tool result is in the conversation."""
    if any(m.role == "tool" for m in request.messages):
        return ScriptedTurn(text="done")
    return calls(call("lookup", {"term": "x"}))


async def test_only_consecutive_retries_count_against_max_processor_retries() -> None:
    reject = RejectFirstTry()
    model = ScriptedModel(by_step)
    agent = Agent("p", model=model, tools=[lookup], output_processors=[reject], max_processor_retries=1)
    result = await agent.generate("go")
    assert result.tripwire is None and result.text == "done"
    assert reject.retry_counts == [0, 1, 0, 1]  # a step that passed set the count back to 0
    assert len(result.steps) == 2


async def test_feedback_of_earlier_retries_stays_as_system_messages_and_no_answer_is_kept() -> None:
    model = ScriptedModel(by_step)
    model.record = True
    agent = Agent("p", model=model, tools=[lookup], output_processors=[RejectFirstTry()], max_processor_retries=1)
    result = await agent.generate("go")
    last = model.requests[-1]
    assert last.system is not None and "step 0: try again" in last.system and "step 1: try again" in last.system
    assert [m.role for m in last.messages] == ["user", "assistant", "tool"]  # the rejected answers are gone
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "assistant"]


class LastMessageOnly(Processor):
    def process_input_step(self, args: InputStepArgs) -> list[Message]:
        return args.messages[-1:]


async def test_process_input_step_may_return_a_plain_message_list() -> None:
    model = ScriptedModel(["ok"])
    model.record = True
    agent = Agent("p", model=model, input_processors=[LastMessageOnly()])
    result = await agent.generate([{"role": "user", "content": "old"}, {"role": "user", "content": "new"}])
    assert result.text == "ok"
    assert [m.text for m in model.requests[0].messages] == ["new"]


class StopAt(Processor):
    """Aborts on the first delta of the given type that contains `word`."""

    def __init__(self, kind: str, word: str, retry: bool = False) -> None:
        self.kind, self.word, self.retry = kind, word, retry

    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        part = args.part
        if part.type == self.kind and self.word in part.payload.text and args.retry_count == 0:
            args.abort("no secrets", retry=self.retry)
        return part


async def test_a_tripwire_mid_text_ends_the_open_text_block_first() -> None:
    agent = Agent("p", model=ScriptedModel(["the secret is out"]), output_processors=[StopAt("text-delta", "secret")])
    chunks, result = await collect(agent, "go")
    types = [c.type for c in chunks]
    assert types[types.index("text-start") :] == ["text-start", "text-delta", "text-end", "tripwire", "finish"]
    start = next(c for c in chunks if c.type == "text-start")
    end = next(c for c in chunks if c.type == "text-end")
    assert end.payload.id == start.payload.id
    assert result.finish_reason == "tripwire"


async def test_a_tripwire_mid_reasoning_ends_the_open_reasoning_block_first() -> None:
    model = ScriptedModel([ScriptedTurn(reasoning="a secret plan", text="hi")])
    chunks, _ = await collect(Agent("p", model=model, output_processors=[StopAt("reasoning-delta", "secret")]), "go")
    types = [c.type for c in chunks]
    assert types[types.index("reasoning-start") :] == ["reasoning-start", "reasoning-end", "tripwire", "finish"]


async def test_a_retry_mid_text_ends_the_open_text_block_before_the_retry() -> None:
    model = ScriptedModel(lambda request: "the secret is out")
    agent = Agent("p", model=model, output_processors=[StopAt("text-delta", "secret", retry=True)])
    chunks, result = await collect(agent, "go", max_processor_retries=1)
    types = [c.type for c in chunks]
    first_try = types[types.index("text-start") : types.index("step-finish") + 1]
    assert first_try == ["text-start", "text-delta", "text-end", "step-finish"]
    assert types.count("text-start") == types.count("text-end") == 2
    assert result.text == "the secret is out"
