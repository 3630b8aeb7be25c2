"""The `sampling` model's MCP side: asks the connected client's model through sampling/createMessage."""

from __future__ import annotations

import json
import warnings
from typing import Any

from mcp import MCPDeprecationWarning
from mcp.server.mcpserver import Context
from mcp.types import (
    CreateMessageResult,
    ModelHint,
    ModelPreferences,
    SamplingMessage,
    TextContent,
    Tool,
    ToolChoice,
    ToolResultContent,
    ToolUseContent,
)

from ..runtime.messages import Message, result_text
from ..runtime.models.base import ModelError, ModelRequest
from ..runtime.models.sampling import SampledCall, SampledTurn


def sampler_for(ctx: Context[Any, Any]) -> McpSampler | None:
    """A sampler when the client declared sampling and this connection can carry server requests."""
    caps = ctx.session.client_capabilities
    if caps is None or caps.sampling is None or not ctx.session.can_send_request:
        return None
    return McpSampler(ctx, with_tools=caps.sampling.tools is not None)


class McpSampler:
    """One MCP request's sampler. Without the client's `sampling.tools` the model gets no tools, and earlier
    tool calls and results in the conversation are shown to it as text."""

    def __init__(self, ctx: Context[Any, Any], *, with_tools: bool) -> None:
        self.ctx = ctx
        self.with_tools = with_tools

    async def sample(self, request: ModelRequest, hint: str | None = None) -> SampledTurn:
        use_tools = self.with_tools and bool(request.tools) and request.tool_choice != "none"
        kwargs: dict[str, Any] = {}
        if use_tools:
            kwargs["tools"] = [
                Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in request.tools
            ]
            # MCP cannot force one named tool: "required" is the nearest
            kwargs["tool_choice"] = ToolChoice(mode="auto" if request.tool_choice == "auto" else "required")
        if hint:
            kwargs["model_preferences"] = ModelPreferences(hints=[ModelHint(name=hint)])
        settings = request.settings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)  # sampling is deprecated in 2026-07-28, not gone
            try:
                result = await self.ctx.session.create_message(
                    to_sampling_messages(request.messages, use_tools),
                    max_tokens=settings.max_tokens or 4096,
                    system_prompt=request.system,
                    temperature=settings.temperature,
                    stop_sequences=settings.stop,
                    related_request_id=self.ctx.request_id,
                    **kwargs,
                )
            except Exception as exc:  # MCPError from the client: a refusal, no model, ...
                raise ModelError("sampling", f"the MCP client refused or failed the sampling request: {exc}") from exc
        return to_turn(result)


def to_turn(result: Any) -> SampledTurn:
    blocks = result.content_as_list if hasattr(result, "content_as_list") else [result.content]
    text = "".join(b.text for b in blocks if isinstance(b, TextContent))
    calls = [SampledCall(id=b.id, name=b.name, args=dict(b.input)) for b in blocks if isinstance(b, ToolUseContent)]
    model = result.model if isinstance(result, CreateMessageResult) else getattr(result, "model", None)
    return SampledTurn(text=text, tool_calls=calls, stop_reason=result.stop_reason, model=model)


def to_sampling_messages(messages: list[Message], use_tools: bool) -> list[SamplingMessage]:
    """Runtime messages to sampling messages: tool results travel alone in a user message, as MCP requires."""
    out: list[SamplingMessage] = []
    for message in messages:
        if message.role == "tool":
            if use_tools:
                blocks: list[Any] = [
                    ToolResultContent(
                        tool_use_id=r.tool_call_id,
                        content=[TextContent(text=result_text(r.result))],
                        is_error=r.is_error or None,
                    )
                    for r in message.tool_results
                ]
            else:
                blocks = [
                    TextContent(text=f"[{r.tool_name} returned] {result_text(r.result)}") for r in message.tool_results
                ]
            out.append(SamplingMessage(role="user", content=blocks))
            continue
        role = "assistant" if message.role == "assistant" else "user"
        blocks = [TextContent(text=message.text)] if message.text else []
        for call in message.tool_calls:
            if use_tools:
                blocks.append(ToolUseContent(id=call.tool_call_id, name=call.tool_name, input=call.args))
            else:
                blocks.append(TextContent(text=f"[called {call.tool_name} with {json.dumps(call.args)}]"))
        if blocks:
            out.append(SamplingMessage(role=role, content=blocks if len(blocks) > 1 else blocks[0]))
    return out
