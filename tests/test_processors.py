"""Processors against the test model servers: input, per-step, per-chunk and result hooks, state, tripwires, retries."""

from __future__ import annotations

from typing import Any

import pytest
from llm_servers import LLMServer, Turn
from test_agent_runs import collect, lookup, model_for

from lodestar import Agent
from lodestar.runtime import InputResult, Message, Processor, StepOverrides, TextPart
from lodestar.runtime.models.scripted import ScriptedModel
from lodestar.runtime.processors import InputArgs, InputStepArgs, OutputResultArgs, OutputStepArgs, OutputStreamArgs

pytestmark = pytest.mark.anyio


class Shout(Processor):
    def process_input(self, args: InputArgs) -> list[Message]:
        return [
            m.model_copy(update={"content": [TextPart(text=m.text.upper())]}) if m.role == "user" else m
            for m in args.messages
        ]


class Persona(Processor):
    async def process_input(self, args: InputArgs) -> InputResult:
        return InputResult(messages=args.messages, system=f"{args.system} Speak like a pirate.")


class NoToolsAfterFirstStep(Processor):
    def process_input_step(self, args: InputStepArgs) -> StepOverrides | None:
        return StepOverrides(tool_choice="none") if args.step_number >= 1 else None


class Redact(Processor):
    """Masks digits in text deltas and drops reasoning; counts characters in its per-request state."""

    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        part = args.part
        if part.type == "reasoning-delta":
            return None
        if part.type == "text-delta":
            text = part.payload.text
            args.state["chars"] = args.state.get("chars", 0) + len(text)
            return part.with_payload(text="".join("*" if c.isdigit() else c for c in text))
        return part

    def process_output_result(self, args: OutputResultArgs) -> None:
        seen.append(args.state.get("chars", 0))


seen: list[int] = []


async def test_process_input_rewrites_messages_and_system(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="Arr"))
    agent = Agent("p", instructions="Be brief.", model=model_for(openai_server), input_processors=[Shout(), Persona()])
    await agent.generate("hello there")
    messages = openai_server.requests[0].body["messages"]
    assert messages[0] == {"role": "system", "content": "Be brief. Speak like a pirate."}
    assert messages[1] == {"role": "user", "content": "HELLO THERE"}


async def test_process_input_step_changes_one_step(server_kind: str, request: pytest.FixtureRequest) -> None:
    server: LLMServer = request.getfixturevalue(f"{server_kind}_server")
    server.script(Turn(tool_calls=[("lookup", {"term": "x"})]), Turn(text="done"))
    agent = Agent("p", model=model_for(server), tools=[lookup], input_processors=[NoToolsAfterFirstStep()])
    await agent.generate("go")
    first, second = (r.body for r in server.requests)
    if server_kind == "openai":
        assert (first["tool_choice"], second["tool_choice"]) == ("auto", "none")
    else:
        assert (first["tool_choice"], second["tool_choice"]) == ({"type": "auto"}, {"type": "none"})


@pytest.fixture(params=["openai", "anthropic"])
def server_kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_output_stream_modifies_and_drops_chunks_with_per_request_state(openai_server: LLMServer) -> None:
    seen.clear()
    openai_server.script(Turn(text="your pin is 1234 ok", reasoning="the user wants the pin"), Turn(text="two words"))
    agent = Agent("p", model=model_for(openai_server), output_processors=[Redact()])
    chunks, result = await collect(agent, "pin?")
    assert result.text == "your pin is **** ok"
    assert not any(c.type.startswith("reasoning-delta") for c in chunks)
    assert "1234" not in "".join(c.model_dump_json() for c in chunks)
    await agent.generate("again")
    assert seen == [19, 9]  # a fresh state per request


class ReturnsWireDicts(Processor):
    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        return args.part.model_dump() if args.part.type == "text-delta" else args.part


class SwapsInADictPayload(Processor):
    def process_output_stream(self, args: OutputStreamArgs) -> Any:
        if args.part.type == "text-delta":
            return args.part.model_copy(update={"payload": {"id": "t", "text": "x"}})
        return args.part


@pytest.mark.parametrize(
    ("processor", "found"),
    [
        (ReturnsWireDicts(), "got a dict"),
        (SwapsInADictPayload(), "got a text-delta chunk whose payload is a dict"),
    ],
)
async def test_a_processor_returning_no_well_formed_chunk_is_named(processor: Processor, found: str) -> None:
    agent = Agent("p", model=ScriptedModel(["hello"]), output_processors=[processor])
    with pytest.raises(TypeError, match=f"processor {processor.id}: process_output_stream must return .*{found}"):
        await agent.generate("hi")


FEEDBACK = "[processor feedback] Your previous answer was not accepted: Ask politely: include the word please."


class Reject(Processor):
    """Refuses answers without 'please'; with retry=True the model gets another go."""

    def __init__(self, retry: bool = True) -> None:
        self.retry = retry
        self.retry_counts: list[int] = []

    def process_output_step(self, args: OutputStepArgs) -> None:
        self.retry_counts.append(args.retry_count)
        if "please" not in args.text:
            args.abort("Ask politely: include the word please.", retry=self.retry, metadata={"score": 0.1})


async def test_output_step_abort_with_retry_feeds_back_and_succeeds(
    server_kind: str, request: pytest.FixtureRequest
) -> None:
    server: LLMServer = request.getfixturevalue(f"{server_kind}_server")
    server.script(Turn(text="give it"), Turn(text="please give it"))
    reject = Reject()
    agent = Agent("p", model=model_for(server), output_processors=[reject], max_processor_retries=2)
    chunks, result = await collect(agent, "ask for it")
    assert result.text == "please give it"
    assert result.tripwire is None and result.finish_reason == "stop"
    assert reject.retry_counts == [0, 1]
    retried = server.requests[1].body
    assert "give it" not in repr(retried["messages"])  # the rejected answer is dropped, as in Mastra
    system = retried["messages"][0]["content"] if server_kind == "openai" else retried["system"]
    assert FEEDBACK in repr(system)  # the feedback is a system message
    assert not any(c.type == "tripwire" for c in chunks)
    assert [m.role for m in result.messages] == ["user", "assistant"]  # the rejected answer and feedback are not kept


async def test_retries_running_out_end_in_a_tripwire(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="no"), Turn(text="still no"))
    agent = Agent("p", model=model_for(openai_server), output_processors=[Reject()])
    chunks, result = await collect(agent, "ask", max_processor_retries=1)
    tripwire = next(c for c in chunks if c.type == "tripwire")
    assert tripwire.model_dump()["payload"] == {
        "reason": "Ask politely: include the word please.",
        "retry": True,
        "metadata": {"score": 0.1},
        "processorId": "reject",
    }
    assert result.finish_reason == "tripwire"
    assert result.tripwire is not None and result.tripwire.processor_id == "reject"
    assert chunks[-1].type == "finish"
    assert len(openai_server.requests) == 2


async def test_without_max_processor_retries_a_retry_request_ends_the_run(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="no"))
    result = await Agent("p", model=model_for(openai_server), output_processors=[Reject()]).generate("ask")
    assert result.tripwire is not None and result.tripwire.retry
    assert len(openai_server.requests) == 1


class Guard(Processor):
    id = "guard"

    def process_input(self, args: InputArgs) -> None:
        if "password" in args.messages[-1].text:
            args.abort("Never ask for passwords.", metadata={"category": "secrets"})


async def test_input_abort_stops_before_the_model_is_called(openai_server: LLMServer) -> None:
    chunks, result = await collect(
        Agent("p", model=model_for(openai_server), input_processors=[Guard()]), "my password?"
    )
    assert [c.type for c in chunks] == ["start", "tripwire", "finish"]
    assert result.tripwire is not None
    assert (result.tripwire.reason, result.tripwire.processor_id) == ("Never ask for passwords.", "guard")
    assert result.tripwire.metadata == {"category": "secrets"}
    assert openai_server.requests == []


class Stamp(Processor):
    def process_output_result(self, args: OutputResultArgs) -> list[Message]:
        assert args.result.text == "hi"
        return [*args.messages, Message(role="assistant", content=[TextPart(text="(stamped)")])]


async def test_process_output_result_replaces_the_new_messages(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="hi"))
    result = await Agent("p", model=model_for(openai_server), output_processors=[Stamp()]).generate("hello")
    assert [m.text for m in result.messages] == ["hello", "hi", "(stamped)"]


async def test_per_call_processors_replace_the_agents(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="ok"))
    agent = Agent("p", model=model_for(openai_server), input_processors=[Guard()])
    result = await agent.generate("my password?", input_processors=[])
    assert result.tripwire is None and result.text == "ok"


class Gate(Processor):
    def process_input_step(self, args: InputStepArgs) -> None:
        if args.retry_count == 0:
            args.abort("Think step by step first.", retry=True)


async def test_input_step_abort_with_retry_runs_the_step_with_feedback(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="thinking... done"))
    agent = Agent("p", model=model_for(openai_server), input_processors=[Gate()], max_processor_retries=1)
    result = await agent.generate("solve it")
    assert result.text == "thinking... done" and result.tripwire is None
    messages = openai_server.requests[0].body["messages"]
    assert messages == [
        {
            "role": "system",
            "content": "[processor feedback] Your previous answer was not accepted: Think step by step first.",
        },
        {"role": "user", "content": "solve it"},
    ]


def test_processor_ids_are_kebab_case_class_names() -> None:
    class PIIFilter(Processor):
        pass

    class QualityChecker(Processor):
        pass

    class Named(Processor):
        id = "custom"

    assert (PIIFilter.id, QualityChecker.id, Named.id) == ("pii-filter", "quality-checker", "custom")
