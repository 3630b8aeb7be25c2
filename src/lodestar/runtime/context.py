"""What a running tool can see and do: its run's ids, a writer for stream chunks, progress, cancellation."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValueError
from .chunks import Chunk, DataChunk, ToolOutputChunk, discard

if TYPE_CHECKING:
    from .messages import Message

Emit = Callable[[Chunk], Awaitable[None]]


class ToolWriter:
    """Streams a tool's intermediate output into its run: `tool-output` and custom `data-*` chunks."""

    def __init__(self, context: ToolContext) -> None:
        self._context = context

    async def write(self, output: Any) -> None:
        ctx = self._context
        payload = {"tool_call_id": ctx.tool_call_id, "tool_name": ctx.tool_name, "output": output}
        await ctx.emit(ToolOutputChunk(run_id=ctx.run_id, payload=payload))

    async def custom(self, type_: str, data: Any) -> None:
        """Emit a `data-<name>` chunk; `metadata` names the tool call that wrote it."""
        ctx = self._context
        source = {"toolCallId": ctx.tool_call_id, "toolName": ctx.tool_name}
        await ctx.emit(DataChunk(type=type_, run_id=ctx.run_id, data=data, metadata=source))


class ToolContext:
    """Handed to a tool that declares a parameter annotated `ToolContext`."""

    def __init__(
        self,
        *,
        run_id: str,
        agent_id: str,
        tool_call_id: str,
        tool_name: str,
        thread_id: str | None = None,
        resource_id: str | None = None,
        request_context: Mapping[str, Any] | None = None,
        emit: Emit = discard,
        sampler: Any = None,
        messages: Sequence[Message] = (),
        step_number: int = 0,
    ) -> None:
        self.run_id = run_id
        self.agent_id = agent_id
        self.tool_call_id = tool_call_id
        self.tool_name = tool_name
        self.thread_id = thread_id
        self.resource_id = resource_id
        self.request_context: Mapping[str, Any] = request_context or {}
        self.emit = emit
        self.sampler = sampler  # the MCP client's sampler, passed on to subagents
        self.messages = messages  # the conversation the model saw when it made this call (subagents share it)
        self.step_number = step_number
        self.writer = ToolWriter(self)
        self._cancelled = False  # a bool is safe to read from a tool's thread, and cheaper than an Event per call

    async def progress(self, message: str, fraction: float | None = None) -> None:
        """Report how far the tool has got; `fraction` is between 0 and 1 when known."""
        if fraction is not None and not 0.0 <= fraction <= 1.0:
            raise InvalidValueError(f"progress fraction must be between 0 and 1, got {fraction}")
        await self.writer.write({"type": "progress", "message": message, "progress": fraction})

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled; synchronous tools running in a thread poll it to stop early."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True
