"""The supervisor pattern as Mastra has it: a subagent sees the supervisor's conversation (narrowed by
`message_filter`), its thread keeps only the prompt and its answer, and delegation hooks see and steer each
delegation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from llm_servers import LLMServer, Turn
from test_agent_runs import lookup, model_for

from lodestar import Agent, Lodestar
from lodestar.runtime import Message
from lodestar.runtime.models.base import ModelRequest
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.runtime.subagents import Delegation, DelegationComplete, DelegationDecision, DelegationStart
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


def supervisor_model(prompt: str = "Summarise the plan.") -> ScriptedModel:
    return ScriptedModel([calls(call("agent-writer", {"prompt": prompt})), "The writer is done."])


def writer(model: Any) -> Agent:
    return Agent("writer", description="Writes summaries.", instructions="Write tersely.", model=model)


async def test_the_subagent_sees_the_supervisors_conversation_and_its_thread_keeps_prompt_and_answer(
    openai_server: LLMServer, tmp_path: Path
) -> None:
    storage = SQLiteStorage(tmp_path / "team.db")
    sub = writer(model_for(openai_server))
    supervisor = Agent("boss", instructions="Delegate.", model=supervisor_model(), agents=[sub])
    Lodestar(agents=[supervisor], storage=storage)
    openai_server.script(Turn(text="A short plan."))
    result = await supervisor.generate("Our plan: ship on Friday.", thread="main", resource="u1")

    assert result.tool_results[0].result == "A short plan."
    assert openai_server.requests[0].body["messages"] == [
        {"role": "system", "content": "Write tersely."},
        {"role": "user", "content": "Our plan: ship on Friday."},
        {"role": "user", "content": "Summarise the plan."},
    ]
    (thread,) = [t for t in await storage.list_threads("u1") if t.id != "main"]
    saved = await storage.list_messages(thread.id)
    assert [(m.role, m.content[0]["text"]) for m in saved] == [
        ("user", "Summarise the plan."),
        ("assistant", "A short plan."),
    ]


def recording(script: Any = None) -> ScriptedModel:
    model = ScriptedModel(script)
    model.record = True
    return model


async def test_message_filter_narrows_what_the_subagent_sees() -> None:
    seen: list[DelegationStart] = []

    def no_secrets(start: DelegationStart) -> list[Message]:
        seen.append(start)
        return [m for m in start.messages if "secret" not in m.text]

    sub_model = recording(["ok"])
    supervisor = Agent(
        "boss",
        model=supervisor_model(),
        agents=[writer(sub_model)],
        delegation=Delegation(message_filter=no_secrets),
    )
    await supervisor.generate(["the secret is 42", "the plan is simple"])
    assert [m.text for m in sub_model.requests[0].messages] == ["the plan is simple", "Summarise the plan."]
    assert (seen[0].agent_id, seen[0].supervisor_id, seen[0].prompt, seen[0].step_number) == (
        "writer",
        "boss",
        "Summarise the plan.",
        0,
    )


async def test_an_empty_filter_leaves_the_subagent_only_the_prompt() -> None:
    sub_model = recording(["ok"])
    delegation = Delegation(message_filter=lambda start: [])
    supervisor = Agent("boss", model=supervisor_model(), agents=[writer(sub_model)], delegation=delegation)
    await supervisor.generate("private context")
    assert [m.text for m in sub_model.requests[0].messages] == ["Summarise the plan."]


async def test_on_delegation_start_may_rewrite_the_prompt() -> None:
    async def focus(start: DelegationStart) -> str:
        return f"{start.prompt} Focus on dates."

    sub_model = recording(["ok"])
    supervisor = Agent(
        "boss", model=supervisor_model(), agents=[writer(sub_model)], delegation=Delegation(on_delegation_start=focus)
    )
    await supervisor.generate("go")
    assert sub_model.requests[0].messages[-1].text == "Summarise the plan. Focus on dates."


async def test_on_delegation_start_may_refuse_and_the_supervisor_reads_why() -> None:
    sub_model = recording(["never"])
    refuse = Delegation(on_delegation_start=lambda start: {"proceed": False, "rejection_reason": "over budget"})
    supervisor = Agent("boss", model=supervisor_model(), agents=[writer(sub_model)], delegation=refuse)
    result = await supervisor.generate("go")
    assert sub_model.requests == []
    assert result.tool_results[0].is_error
    assert "the delegation to writer was refused: over budget" in result.tool_results[0].result


async def test_on_delegation_start_may_cap_the_subagents_steps() -> None:
    def always_look_up(request: ModelRequest) -> Any:
        return calls(call("lookup", {"term": "x"}))

    sub_model = recording(always_look_up)
    sub = Agent("writer", model=sub_model, tools=[lookup], max_steps=5)
    cap = Delegation(on_delegation_start=lambda start: DelegationDecision(modified_max_steps=2))
    await Agent("boss", model=supervisor_model(), agents=[sub], delegation=cap).generate("go")
    assert len(sub_model.requests) == 2


async def test_on_delegation_complete_sees_the_outcome() -> None:
    done: list[DelegationComplete] = []

    async def record(complete: DelegationComplete) -> None:
        done.append(complete)

    failing = Agent("failing", model=ScriptedModel([]))  # a script with no turns: the model call fails
    supervisor = Agent(
        "boss",
        model=ScriptedModel(
            [
                calls(call("agent-writer", {"prompt": "a"}), call("agent-failing", {"prompt": "b"})),
                "both ran",
            ]
        ),
        agents=[writer(ScriptedModel(["written"])), failing],
        delegation=Delegation(on_delegation_complete=record),
    )
    await supervisor.generate("go")
    outcomes = {c.agent_id: (c.prompt, c.result.text, c.error) for c in done}
    assert outcomes["writer"] == ("a", "written", None)
    prompt, _, error = outcomes["failing"]
    assert prompt == "b" and error is not None and "script has 0 turns" in error


async def test_on_delegation_complete_returning_a_value_is_refused() -> None:
    hooks = Delegation(on_delegation_complete=lambda complete: {"feedback": "more"})
    supervisor = Agent("boss", model=supervisor_model(), agents=[writer(ScriptedModel(["ok"]))], delegation=hooks)
    result = await supervisor.generate("go")
    assert result.tool_results[0].is_error
    assert "on_delegation_complete must return None" in result.tool_results[0].result
