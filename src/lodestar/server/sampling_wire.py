"""Runtime model requests to MCP sampling requests and sampling results back to turns, for every transport."""

from __future__ import annotations

from typing import Any

from mcp.server.validation import validate_tool_use_result_messages
from mcp.types import (
    CreateMessageRequest,
    CreateMessageRequestParams,
    CreateMessageResult,
    CreateMessageResultWithTools,
    ModelHint,
    ModelPreferences,
    Role,
    SamplingMessage,
    TextContent,
    Tool,
    ToolChoice,
    ToolResultContent,
    ToolUseContent,
)

from ..runtime.messages import Message, call_as_text, result_text, tool_result_as_text
from ..runtime.models.base import ModelError, ModelRequest
from ..runtime.models.sampling import SampledCall, SampledTurn

SamplingResult = CreateMessageResult | CreateMessageResultWithTools


class ClientSampler:
    """The client's model for one MCP tool call. Without the client's `sampling.tools` the model gets no tools,
    and earlier tool calls and results in the conversation are shown to it as text. Subclasses say how the
    request reaches the client."""

    def __init__(self, *, with_tools: bool) -> None:
        self.with_tools = with_tools

    async def sample(self, request: ModelRequest, hint: str | None = None) -> SampledTurn:
        try:
            message = render(request, hint, self.with_tools)
        except ValueError as exc:  # MCP's rules for tool-use and tool-result turns
            raise ModelError("sampling", f"the conversation cannot be sent as a sampling request: {exc}") from exc
        try:
            result = await self.ask(message)
        except ModelError:
            raise
        except Exception as exc:  # MCPError from the client: a refusal, no model, ...
            raise ModelError("sampling", f"the MCP client refused or failed the sampling request: {exc}") from exc
        return to_turn(result)

    async def ask(self, message: CreateMessageRequest) -> SamplingResult:
        raise NotImplementedError


def render(request: ModelRequest, hint: str | None, with_tools: bool) -> CreateMessageRequest:
    use_tools = with_tools and bool(request.tools) and request.tool_choice != "none"
    settings = request.settings
    messages = to_sampling_messages(request.messages, use_tools)
    validate_tool_use_result_messages(messages)
    params = CreateMessageRequestParams(
        messages=messages,
        max_tokens=settings.max_tokens or 4096,
        system_prompt=request.system,
        temperature=settings.temperature,
        stop_sequences=settings.stop,
        model_preferences=ModelPreferences(hints=[ModelHint(name=hint)]) if hint else None,
    )
    if use_tools:
        params.tools = [
            Tool(name=t.name, description=t.description, input_schema=t.input_schema) for t in request.tools
        ]
        # MCP cannot force one named tool: "required" is the nearest
        params.tool_choice = ToolChoice(mode="auto" if request.tool_choice == "auto" else "required")
    return CreateMessageRequest(params=params)


def to_turn(result: SamplingResult) -> SampledTurn:
    blocks = result.content_as_list if isinstance(result, CreateMessageResultWithTools) else [result.content]
    text = "".join(b.text for b in blocks if isinstance(b, TextContent))
    calls = [SampledCall(id=b.id, name=b.name, args=dict(b.input)) for b in blocks if isinstance(b, ToolUseContent)]
    if not text and not calls and blocks:
        kinds = ", ".join(sorted({b.type for b in blocks}))
        raise ModelError("sampling", f"the client's model answered with {kinds} content only; agents read text")
    return SampledTurn(text=text, tool_calls=calls, stop_reason=result.stop_reason, model=result.model)


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
                blocks = [TextContent(text=tool_result_as_text(r)) for r in message.tool_results]
            out.append(SamplingMessage(role="user", content=blocks))
            continue
        role: Role = "assistant" if message.role == "assistant" else "user"
        blocks = [TextContent(text=message.text)] if message.text else []
        for call in message.tool_calls:
            if use_tools:
                blocks.append(ToolUseContent(id=call.tool_call_id, name=call.tool_name, input=call.args))
            else:
                blocks.append(TextContent(text=call_as_text(call)))
        if blocks:
            out.append(SamplingMessage(role=role, content=blocks if len(blocks) > 1 else blocks[0]))
    return out
