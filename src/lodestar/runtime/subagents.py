"""Subagents: an agent offered to its supervisor as a tool, run on a fresh thread for each delegation.

`Agent.as_tool()` builds the tool here; this module never imports the agent module, so either imports alone."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import RunFailure
from .context import ToolContext
from .messages import new_id
from .tools import Tool, tool_from_function

if TYPE_CHECKING:
    from .agent import Agent


class DelegationError(RunFailure, RuntimeError):
    """The subagent's run ended in an error or a tripwire; the supervisor's model reads the reason as the
    delegation's tool result and decides what to do next."""


def delegation_tool(sub: Agent, *, name: str, description: str) -> Tool:
    """A tool that hands the caller's `prompt` to `sub` and answers with its text, or its object."""

    async def delegate(prompt: str, ctx: ToolContext) -> Any:
        """Hand a task to the subagent and get its answer.

        Args:
            prompt: The complete task, with every detail the subagent needs; it does not see this conversation.
        """
        has_memory = sub.memory is not None or sub.storage is not None
        stream = sub.stream(
            prompt,
            thread=new_id("thread") if has_memory else None,
            resource=ctx.resource_id if has_memory else None,
            request_context=ctx.request_context,
            sampler=ctx.sampler,
        )
        async with stream:  # a cancelled supervisor stops its subagent too
            async for part in stream:
                await ctx.writer.write(part.model_dump(mode="json"))
        result = await stream.result()
        if result.error is not None:
            raise DelegationError(result.error.message)
        if result.tripwire is not None:
            raise DelegationError(f"stopped by processor {result.tripwire.processor_id}: {result.tripwire.reason}")
        return result.object if result.object is not None else result.text

    return tool_from_function(delegate, name=name, description=description)
