"""The seam between the run loop and tool execution: the loop hands every tool call to a dispatcher.

Today calls run inline, awaited within their step. A background task manager implements the same protocol
and answers at once with a "task started" result, so moving work to the background never touches the loop.
What a dispatcher raises becomes a tool error the model sees, exactly as if the tool itself had raised.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from .context import ToolContext
from .messages import ToolCallPart
from .models.base import ToolSpec
from .tools import Tool

if TYPE_CHECKING:
    from .agent import Agent
    from .run import Run
    from .stream import Producer


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What the model is told about one call: the JSON-ready result, or the error message when `is_error`."""

    result: Any
    is_error: bool = False


@runtime_checkable
class ToolDispatcher(Protocol):
    """Runs (or starts) one tool call. `call.args` are the model's arguments, not yet validated."""

    async def dispatch(self, call: ToolCallPart, tool: Tool, context: ToolContext) -> ToolOutcome: ...

    def spec(self, tool: Tool) -> ToolSpec:
        """The tool as the model sees it: a background dispatcher adds the `_background` override it reads."""
        ...

    def until_idle(self, agent: Agent, run: Run, options: Mapping[str, Any], max_idle_ms: int) -> Producer:
        """What `stream_until_idle` streams: the run alone, or with the turns its background tasks call for."""
        ...

    async def after_run(self, run_id: str) -> None:
        """Called once a run has ended and its messages are saved: a background task that finished meanwhile
        can now put its result where the run saved the call's first answer."""
        ...


class InlineDispatcher:
    """Runs the tool now, in the step that called it: the default."""

    def spec(self, tool: Tool) -> ToolSpec:
        return tool.spec

    def until_idle(self, agent: Agent, run: Run, options: Mapping[str, Any], max_idle_ms: int) -> Producer:
        return run.execute  # nothing runs in the background, so the stream is idle when the run ends

    async def after_run(self, run_id: str) -> None:
        return None

    async def dispatch(self, call: ToolCallPart, tool: Tool, context: ToolContext) -> ToolOutcome:
        return ToolOutcome(await tool.execute(call.args, context))


INLINE = InlineDispatcher()
