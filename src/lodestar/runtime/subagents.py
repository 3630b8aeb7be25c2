"""Subagents: an agent offered to its supervisor as a tool, in Mastra's supervisor pattern.

Each delegation runs the subagent on a fresh thread of the supervisor's resource. The subagent sees the
supervisor's conversation so far (what `message_filter` lets through) and then the prompt, but its thread keeps
only the prompt and its own answer: the supervisor's conversation is context, not the subagent's history. The
supervisor's `on_delegation_start` hook may rewrite the prompt, cap the subagent's steps or refuse the
delegation; `on_delegation_complete` sees how it went.

`Agent.as_tool()` builds the tool here; this module never imports the agent module, so either imports alone."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, Field

from ..errors import RunFailure
from .context import ToolContext
from .messages import Message, new_id
from .options import RunOptions
from .result import RunResult
from .run import Run
from .tools import Tool, tool_from_function

if TYPE_CHECKING:
    from .agent import Agent

T = TypeVar("T")
R = TypeVar("R")
Hook = Callable[[T], R | Awaitable[R]]


class DelegationError(RunFailure, RuntimeError):
    """The subagent's run ended in an error or a tripwire, or the supervisor's `on_delegation_start` refused the
    delegation; the supervisor's model reads the reason as the delegation's tool result and decides what next."""


@dataclass(frozen=True, kw_only=True)
class DelegationStart:
    """What `on_delegation_start` and `message_filter` are told about a delegation about to run."""

    agent_id: str  # the subagent (Mastra's primitiveId)
    prompt: str
    messages: list[Message]  # the supervisor's conversation when its model delegated, without system messages
    step_number: int  # the supervisor's step (Mastra's iteration)
    run_id: str  # the supervisor's run
    supervisor_id: str
    tool_call_id: str


@dataclass(frozen=True, kw_only=True)
class DelegationComplete(DelegationStart):
    """What `on_delegation_complete` is told: the delegation as it ran (its final prompt) and its outcome."""

    result: RunResult  # the subagent's run: text, object, usage, thread_id, ...
    error: str | None  # why it failed (an error or a tripwire); None when it succeeded


class DelegationDecision(BaseModel):
    """What `on_delegation_start` may return, besides None (go ahead) or a string (the prompt to send instead)."""

    proceed: bool = True
    rejection_reason: str | None = None
    modified_prompt: str | None = None
    modified_max_steps: int | None = Field(None, ge=1, le=1000)


@dataclass(frozen=True, kw_only=True)
class Delegation:
    """How a supervisor delegates: `Agent(..., delegation=Delegation(...))`. Each callable may be sync or async.

    - `message_filter(start) -> messages`: which of `start.messages` the subagent sees; by default all of them.
    - `on_delegation_start(start)`: None, a new prompt, or a `DelegationDecision` (or a dict of its fields).
    - `on_delegation_complete(complete)`: sees the outcome; returns None.
    """

    message_filter: Hook[DelegationStart, Sequence[Message]] | None = None
    on_delegation_start: Hook[DelegationStart, DelegationDecision | Mapping[str, Any] | str | None] | None = None
    on_delegation_complete: Hook[DelegationComplete, object] | None = None


NO_DELEGATION_HOOKS = Delegation()


def delegation_tool(sub: Agent, *, name: str, description: str, delegation: Delegation = NO_DELEGATION_HOOKS) -> Tool:
    """A tool that hands the caller's `prompt` to `sub` and answers with its text, or its object."""

    async def delegate(prompt: str, ctx: ToolContext) -> Any:
        """Hand a task to the subagent and get its answer.

        Args:
            prompt: The complete task, with every detail the subagent needs; it may see only part of this
                conversation.
        """
        start = DelegationStart(
            agent_id=sub.id,
            prompt=prompt,
            messages=[m for m in ctx.messages if m.role != "system"],
            step_number=ctx.step_number,
            run_id=ctx.run_id,
            supervisor_id=ctx.agent_id,
            tool_call_id=ctx.tool_call_id,
        )
        decision = await _decide(delegation, start)
        if not decision.proceed:
            reason = decision.rejection_reason or "no reason given"
            raise DelegationError(f"the delegation to {sub.id} was refused: {reason}")
        if decision.modified_prompt is not None:
            start = replace(start, prompt=decision.modified_prompt)
        shared = start.messages
        if delegation.message_filter is not None:
            shared = list(await _call(delegation.message_filter, start))
        result = await _run(sub, start.prompt, shared, ctx, decision.modified_max_steps)
        error = _failure(result)
        if delegation.on_delegation_complete is not None:
            complete = DelegationComplete(**_fields(start), result=result, error=error)
            if await _call(delegation.on_delegation_complete, complete) is not None:
                raise TypeError(
                    "on_delegation_complete must return None: feedback and bail (Mastra's return values) are not "
                    "supported yet"
                )
        if error is not None:
            raise DelegationError(error)
        return result.object if result.object is not None else result.text

    delegating = tool_from_function(delegate, name=name, description=description)
    delegating.delegates_to = sub
    return delegating


async def _run(sub: Agent, prompt: str, shared: list[Message], ctx: ToolContext, max_steps: int | None) -> RunResult:
    """The subagent's run, its chunks written into the supervisor's stream as tool output. A cancelled
    supervisor cancels this call, and the run stops with it."""
    has_memory = sub.memory is not None or sub.storage is not None
    given = {
        "thread": new_id("thread") if has_memory else None,
        "resource": ctx.resource_id if has_memory else None,
        "request_context": ctx.request_context,
        "sampler": ctx.sampler,
        "max_steps": max_steps,
    }
    run = Run(sub.plan(RunOptions.merge(sub.default_options, given)), prompt, context=shared)

    async def forward(part: Any) -> None:
        await ctx.writer.write(part.model_dump(mode="json"))

    return await run.execute(forward)


async def _decide(delegation: Delegation, start: DelegationStart) -> DelegationDecision:
    if delegation.on_delegation_start is None:
        return DelegationDecision()
    returned = await _call(delegation.on_delegation_start, start)
    if returned is None:
        return DelegationDecision()
    if isinstance(returned, str):
        return DelegationDecision(modified_prompt=returned)
    return returned if isinstance(returned, DelegationDecision) else DelegationDecision.model_validate(returned)


def _failure(result: RunResult) -> str | None:
    if result.error is not None:
        return result.error.message
    if result.tripwire is not None:
        return f"stopped by processor {result.tripwire.processor_id}: {result.tripwire.reason}"
    return None


def _fields(start: DelegationStart) -> dict[str, Any]:
    """The start's fields as they are (`asdict` would turn the messages into dicts)."""
    return {field.name: getattr(start, field.name) for field in fields(start)}


async def _call(hook: Hook[T, R], argument: T) -> R:
    returned = hook(argument)
    return await returned if inspect.isawaitable(returned) else returned
