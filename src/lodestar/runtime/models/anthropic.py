"""Anthropic Messages API, streamed."""

from __future__ import annotations

from typing import Any, ClassVar

from ..messages import (
    Message,
    Part,
    ReasoningPart,
    TextPart,
    ToolCallPart,
    call_as_text,
    result_text,
    tool_result_as_text,
)
from ..usage import Usage
from .base import (
    Finish,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    ReasoningEnd,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
)
from .http import HttpModel, HttpOptions, parse_json, stream_error

DEFAULT_URL = "https://api.anthropic.com"
KEY_ENV = "ANTHROPIC_API_KEY"
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096  # the API requires max_tokens; this fits every current model
INPUT_USAGE_FIELDS = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class AnthropicModel(HttpModel):
    """A Claude model. No native JSON-schema output: the agent loop asks for JSON in the prompt instead."""

    provider_name = "anthropic"
    key_env = KEY_ENV
    url_env = "ANTHROPIC_BASE_URL"
    default_url = DEFAULT_URL
    path = "/v1/messages"
    supports_json_schema = False

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"anthropic-version": API_VERSION} | ({"x-api-key": api_key} if api_key else {})

    def reader(self) -> MessageReader:
        return MessageReader(self.options)

    def body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for one streamed call. `response_format` is left to the agent loop's prompt."""
        settings = request.settings
        body: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": settings.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": wire_messages(request.messages, with_tools=bool(request.tools)),
            "stream": True,
        }
        if system := wire_system(request):
            body["system"] = system
        if request.tools:
            body["tools"] = [
                {"name": tool.name, "description": tool.description, "input_schema": tool.input_schema}
                for tool in request.tools
            ]
            body["tool_choice"] = wire_tool_choice(request.tool_choice)
        chosen = {"temperature": settings.temperature, "top_p": settings.top_p, "stop_sequences": settings.stop}
        return body | {key: value for key, value in chosen.items() if value is not None} | settings.extra


def wire_system(request: ModelRequest) -> str:
    """The API takes one system prompt, so system messages in the conversation join the request's."""
    texts = [request.system or "", *(message.text for message in request.messages if message.role == "system")]
    return "\n\n".join(text for text in texts if text)


def wire_messages(messages: list[Message], *, with_tools: bool) -> list[dict[str, Any]]:
    """Strictly alternating user/assistant turns: tool results are user content, same-role neighbours merge.
    The API refuses tool blocks in a request without tools, so those turns are then told as text."""
    wire: list[dict[str, Any]] = []
    for message in messages:
        blocks = [block for part in message.content if (block := wire_block(part, with_tools))]
        if not blocks or message.role == "system":  # system text went to wire_system
            continue
        role = "assistant" if message.role == "assistant" else "user"
        if wire and wire[-1]["role"] == role:
            wire[-1]["content"].extend(blocks)
        else:
            wire.append({"role": role, "content": blocks})
    return wire


def wire_block(part: Part, with_tools: bool) -> dict[str, Any] | None:
    """A content block, or None for what the API would refuse: empty text, unsigned reasoning."""
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text} if part.text else None
    if isinstance(part, ReasoningPart):
        return wire_reasoning(part)
    if isinstance(part, ToolCallPart):
        if not with_tools:
            return {"type": "text", "text": call_as_text(part)}
        return {"type": "tool_use", "id": part.tool_call_id, "name": part.tool_name, "input": part.args}
    if not with_tools:
        return {"type": "text", "text": tool_result_as_text(part)}
    return {
        "type": "tool_result",
        "tool_use_id": part.tool_call_id,
        "content": result_text(part.result),
        "is_error": part.is_error,
    }


def wire_reasoning(part: ReasoningPart) -> dict[str, Any] | None:
    """Thinking goes back only as Claude signed it; other providers' reasoning stays out."""
    if part.redacted is not None:
        return {"type": "redacted_thinking", "data": part.redacted}
    if part.signature:
        return {"type": "thinking", "thinking": part.text, "signature": part.signature}
    return None


def wire_tool_choice(choice: ToolChoice) -> dict[str, str]:
    kinds = {"auto": "auto", "required": "any", "none": "none"}
    return {"type": kinds[choice]} if choice in kinds else {"type": "tool", "name": choice}


class MessageReader:
    """Messages stream events to model events, keyed by content block index."""

    reasons: ClassVar[dict[str, str]] = {
        "end_turn": "stop",
        "stop_sequence": "stop",
        "max_tokens": "length",
        "model_context_window_exceeded": "length",
        "tool_use": "tool-calls",
        "refusal": "content-filter",
    }

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self.ended = False
        self.raw_reason: str | None = None
        self.input_tokens = 0
        self.output_tokens = 0
        self.tool_ids: dict[int, str] = {}

    def finish(self) -> list[ModelEvent]:
        reason = self.reasons.get(self.raw_reason or "", "other")
        return [Finish(reason, self.raw_reason, Usage.of(self.input_tokens, self.output_tokens))]

    def read(self, data: str) -> list[ModelEvent]:
        event = parse_json(self.options, data)
        match event.get("type"):
            case "message_start":
                self._count(event["message"].get("usage") or {})
            case "content_block_start":
                return self._block_start(event["index"], event["content_block"])
            case "content_block_delta":
                return self._block_delta(event["index"], event["delta"])
            case "message_delta":
                self.raw_reason = event["delta"].get("stop_reason") or self.raw_reason
                self._count(event.get("usage") or {})
            case "message_stop":
                self.ended = True
            case "error":  # e.g. overloaded_error, which would be an HTTP 529 outside a stream
                raise stream_error(self.options, event.get("error"))
        return []  # ping, content_block_stop, and event types added after this was written

    def _count(self, usage: dict[str, Any]) -> None:
        """Usage counts are cumulative. Input includes cached tokens, which the API counts apart."""
        inputs = [usage.get(field) for field in INPUT_USAGE_FIELDS]
        if any(count is not None for count in inputs):
            self.input_tokens = sum(count or 0 for count in inputs)
        self.output_tokens = usage.get("output_tokens") or self.output_tokens

    def _block_start(self, index: int, block: dict[str, Any]) -> list[ModelEvent]:
        kind = block.get("type")
        if kind == "tool_use":
            self.tool_ids[index] = block["id"]
            return [ToolCallStart(block["id"], block["name"])]
        if kind == "text" and block.get("text"):
            return [TextDelta(block["text"])]
        if kind == "thinking":  # some gateways send the whole signed block here rather than as deltas
            events: list[ModelEvent] = [ReasoningDelta(block["thinking"])] if block.get("thinking") else []
            return events + ([ReasoningEnd(signature=block["signature"])] if block.get("signature") else [])
        if kind == "redacted_thinking":
            return [ReasoningEnd(redacted=block.get("data", ""))]
        return []

    def _block_delta(self, index: int, delta: dict[str, Any]) -> list[ModelEvent]:
        kind = delta.get("type")
        if kind == "text_delta":
            return [TextDelta(delta["text"])]
        if kind == "thinking_delta":
            return [ReasoningDelta(delta["thinking"])]
        if kind == "signature_delta":
            return [ReasoningEnd(signature=delta["signature"])]
        if kind == "input_json_delta" and delta.get("partial_json") and index in self.tool_ids:
            return [ToolCallDelta(self.tool_ids[index], delta["partial_json"])]
        return []
