"""The parts of one run: the plan it follows, the state it changes, and the decision each step ends with.

The plan is resolved once, from the agent and the call's options, before the run starts, and never changes:
it holds live objects (a model, tools, processors, memory). The state is plain data that changes with every
step and round-trips through JSON. Keeping them apart (as pydantic-ai keeps graph deps apart from graph state)
says what a step may change, and lets a run's progress be looked at or stored without its machinery.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, Field

from .dispatch import ToolDispatcher
from .memory import Memory, ThreadArg
from .messages import Message
from .models.base import Model, ModelSettings
from .structured import StructuredOutput
from .tools import Tool
from .usage import Usage

Instructions = str | Callable[[Mapping[str, Any]], str | Awaitable[str]]


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a run does: the call's options over the agent's settings, resolved once."""

    agent_id: str
    model: Model
    tools: Mapping[str, Tool]
    tool_choice: str
    settings: ModelSettings
    instructions: Instructions  # a callable is called with `request_context` when the run starts
    input_processors: tuple[Any, ...]
    output_processors: tuple[Any, ...]
    memory: Memory | None  # set when the call names a thread or a resource
    thread: ThreadArg
    resource: str | None
    last_messages: int | None
    max_steps: int
    max_processor_retries: int
    structured: StructuredOutput | None
    request_context: Mapping[str, Any]
    sampler: Any
    dispatcher: ToolDispatcher

    async def system_prompt(self) -> str:
        if not callable(self.instructions):
            return self.instructions
        text = self.instructions(self.request_context)
        return await text if inspect.isawaitable(text) else text


class RunState(BaseModel):
    """What a run changes as it goes: its ids, the conversation the model sees, the messages the run adds
    (what memory saves), the steps done and the tokens used. Plain data: `model_dump_json()` and
    `RunState.model_validate_json()` round-trip it."""

    run_id: str
    agent_id: str
    thread_id: str | None = None
    resource_id: str | None = None
    system: str | None = Field(None, description="the system prompt after input processors")
    conversation: list[Message] = Field(default_factory=list)
    new_messages: list[Message] = Field(default_factory=list)
    step: int = Field(0, description="steps done; a step a processor rejected and retried is not counted")
    usage: Usage = Field(default_factory=Usage)


# What a step decides, as data (openai-agents' NextStepFinalOutput / NextStepRunAgain). The loop acts on it.
@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The model answered without calling tools: the run is done."""

    text: str


@dataclass(frozen=True, slots=True)
class RunAgain:
    """The step's tool calls ran: their results go back to the model in another step (within `max_steps`)."""


@dataclass(frozen=True, slots=True)
class Stop:
    """The model's answer ended early (`length`, `content-filter`, `error`): the run ends here, and tool calls
    in that answer are not run, since they may be cut off or unwanted."""

    reason: str


NextStep = FinalAnswer | RunAgain | Stop
# The finish reasons that end a run early, each with what it means for the caller.
CUT_SHORT_HINTS = {
    "length": "it reached the output token limit: raise model_settings.max_tokens",
    "content-filter": "the provider's content filter stopped it",
    "error": "the provider ended it with an error",
}
CUT_SHORT = frozenset(CUT_SHORT_HINTS)


def decide(finish_reason: str, text: str, has_tool_calls: bool) -> NextStep:
    """What follows a model answer, from why it ended and whether it called tools."""
    if finish_reason in CUT_SHORT:
        return Stop(finish_reason)
    return RunAgain() if has_tool_calls else FinalAnswer(text)
