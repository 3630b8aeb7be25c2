"""OpenAI Chat Completions, streamed. Also serves any compatible server (Ollama, vLLM, LM Studio, proxies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any, ClassVar

from ..messages import Message, ToolCallPart, new_id, result_text
from ..usage import Usage
from .base import (
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolChoice,
    ToolSpec,
)
from .http import HttpModel, HttpOptions, parse_json, stream_error

DEFAULT_URL = "https://api.openai.com/v1"
KEY_ENV = "OPENAI_API_KEY"
AUTH_HINTS = {
    "openai": f"Check {KEY_ENV}: export {KEY_ENV}=<a valid key for this base URL>",
    "ollama": "Ollama itself needs no key; check that OLLAMA_HOST points at Ollama, not at a proxy wanting credentials",
}


class OpenAIModel(HttpModel):
    """A chat model behind an OpenAI-compatible `/chat/completions` endpoint."""

    provider_name = "openai"
    key_env = KEY_ENV
    url_env = "OPENAI_BASE_URL"
    default_url = DEFAULT_URL
    path = "/chat/completions"
    supports_json_schema = True

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def auth_hint(self) -> str:
        return AUTH_HINTS.get(self.provider, f"Check the api_key given to the {self.provider} model")

    def reader(self) -> ChunkReader:
        return ChunkReader(self.options)

    def body(self, request: ModelRequest) -> dict[str, Any]:
        """The JSON body for one streamed call."""
        body: dict[str, Any] = {
            "model": self.model_id,
            "messages": wire_messages(request),
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.tools:
            body["tools"] = [wire_tool(tool) for tool in request.tools]
            body["tool_choice"] = wire_tool_choice(request.tool_choice)
        if request.response_format:
            schema = {"name": request.response_format.name, "schema": request.response_format.schema_}
            body["response_format"] = {"type": "json_schema", "json_schema": schema}
        settings = request.settings
        # OpenAI's own API wants max_completion_tokens (reasoning models refuse max_tokens); compatible servers vary.
        limit_key = "max_completion_tokens" if self.provider == "openai" else "max_tokens"
        chosen = {
            "temperature": settings.temperature,
            limit_key: settings.max_tokens,
            "top_p": settings.top_p,
            "stop": settings.stop,
        }
        return body | {key: value for key, value in chosen.items() if value is not None} | settings.extra


def wire_messages(request: ModelRequest) -> list[dict[str, Any]]:
    system = [{"role": "system", "content": request.system}] if request.system else []
    return system + [wire for message in request.messages for wire in wire_message(message)]


def wire_message(message: Message) -> list[dict[str, Any]]:
    """One message, except a `tool` turn: each of its results is a message of its own."""
    if message.role == "tool":
        return [
            {"role": "tool", "tool_call_id": result.tool_call_id, "content": result_text(result.result)}
            for result in message.tool_results
        ]
    if message.role == "assistant" and message.tool_calls:
        calls = [wire_call(call) for call in message.tool_calls]
        return [{"role": "assistant", "content": message.text or None, "tool_calls": calls}]
    return [{"role": message.role, "content": message.text}]


def wire_call(call: ToolCallPart) -> dict[str, Any]:
    function = {"name": call.tool_name, "arguments": json.dumps(call.args, ensure_ascii=False)}
    return {"id": call.tool_call_id, "type": "function", "function": function}


def wire_tool(tool: ToolSpec) -> dict[str, Any]:
    function = {"name": tool.name, "description": tool.description, "parameters": tool.input_schema}
    return {"type": "function", "function": function}


def wire_tool_choice(choice: ToolChoice) -> str | dict[str, Any]:
    if choice in ("auto", "none", "required"):
        return choice
    return {"type": "function", "function": {"name": choice}}


class ChunkReader:
    """Chat-completion chunks to events. Tool calls arrive as fragments keyed by `index`; the first names the call."""

    reasons: ClassVar[dict[str, str]] = {
        "stop": "stop",
        "length": "length",
        "tool_calls": "tool-calls",
        "function_call": "tool-calls",
        "content_filter": "content-filter",
    }

    def __init__(self, options: HttpOptions) -> None:
        self.options = options
        self.ended = False
        self.raw_reason: str | None = None
        self.usage = Usage()
        self.call_ids: dict[int, str] = {}

    def read(self, data: str) -> Iterator[ModelEvent]:
        if data.strip() == "[DONE]":
            self.ended = True
            return
        chunk = parse_json(self.options, data)
        if chunk.get("error"):
            raise stream_error(self.options, chunk["error"])
        if usage := chunk.get("usage"):
            self.usage = Usage.of(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if choices := chunk.get("choices"):
            yield from self._choice(choices[0])

    def _choice(self, choice: dict[str, Any]) -> Iterator[ModelEvent]:
        delta = choice.get("delta") or {}
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            yield ReasoningDelta(reasoning)
        if content := delta.get("content"):
            yield TextDelta(content)
        for position, fragment in enumerate(delta.get("tool_calls") or []):
            yield from self._tool_fragment(fragment.get("index", position), fragment)
        self.raw_reason = choice.get("finish_reason") or self.raw_reason

    def _tool_fragment(self, index: int, fragment: dict[str, Any]) -> Iterator[ModelEvent]:
        function = fragment.get("function") or {}
        if index not in self.call_ids:
            self.call_ids[index] = fragment.get("id") or new_id("call")
            yield ToolCallStart(self.call_ids[index], function.get("name") or "")
        if arguments := function.get("arguments"):
            yield ToolCallDelta(self.call_ids[index], arguments)
