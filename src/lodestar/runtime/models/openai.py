"""OpenAI Chat Completions, streamed. Also serves any compatible server (Ollama, vLLM, LM Studio, proxies)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..messages import Message, ToolCallPart, new_id, result_text
from ..usage import Usage
from .base import (
    Finish,
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
        if response_format := request.response_format:
            schema = {"name": response_format.name, "schema": response_format.schema_}
            strict = {"strict": True} if response_format.strict else {}
            body["response_format"] = {"type": "json_schema", "json_schema": schema | strict}
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


@dataclass(slots=True)
class _Call:
    """A tool call being streamed: it is announced once its name is known, its arguments held until then."""

    id: str
    name: str = ""
    started: bool = False
    held: list[str] = field(default_factory=list)


class ChunkReader:
    """Chat-completion chunks to events.

    Tool call fragments are matched to their call by `id` first and by `index` second, because
    gateways differ: OpenAI names a call's id once and then only its index; Ollama gives every
    parallel call index 0 (ollama/ollama#15457); Gemini's endpoint sends no index at all
    (openai/openai-python#2806). A fragment with neither continues the latest call.
    """

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
        self.refused = False
        self.calls: dict[str, _Call] = {}
        self.call_at: dict[int, _Call] = {}  # the latest call seen at each index
        self.latest: _Call | None = None

    def read(self, data: str) -> Iterator[ModelEvent]:
        if data.strip() == "[DONE]":
            self.ended = True
            return
        chunk = parse_json(self.options, data)
        if chunk.get("error"):  # OpenAI and OpenRouter report failures mid-stream this way, under HTTP 200
            raise stream_error(self.options, chunk["error"])
        # Groq puts the usage under x_groq (vercel/ai#1651).
        if usage := chunk.get("usage") or (chunk.get("x_groq") or {}).get("usage"):
            self.usage = Usage.of(usage.get("prompt_tokens"), usage.get("completion_tokens"))
        if choices := chunk.get("choices"):  # Azure opens with a chunk of prompt filter results and no choices
            yield from self._choice(choices[0])

    def finish(self) -> Iterator[ModelEvent]:
        """Calls whose name never came are announced nameless, so the loop reports them as unknown tools."""
        for call in self.calls.values():
            yield from self._flush(call, force=True)
        reason = self.reasons.get(self.raw_reason or "", "other")
        if self.refused:
            reason = "content-filter"
        elif self.calls and self.raw_reason in (None, "stop"):  # Ollama and others say stop after tool calls
            reason = "tool-calls"
        yield Finish(reason, self.raw_reason, self.usage)

    def _choice(self, choice: dict[str, Any]) -> Iterator[ModelEvent]:
        delta = choice.get("delta") or {}  # Azure's content filter annotations come without a delta
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if reasoning and isinstance(reasoning, str):
            yield ReasoningDelta(reasoning)
        for is_reasoning, text in content_texts(delta.get("content")):
            yield ReasoningDelta(text) if is_reasoning else TextDelta(text)
        if refusal := delta.get("refusal"):  # shown as the answer's text, and the step ends as content-filter
            self.refused = True
            yield TextDelta(refusal)
        for fragment in delta.get("tool_calls") or []:
            yield from self._tool_fragment(fragment)
        self.raw_reason = choice.get("finish_reason") or self.raw_reason

    def _tool_fragment(self, fragment: dict[str, Any]) -> Iterator[ModelEvent]:
        call = self._call_of(fragment)
        function = fragment.get("function") or {}
        call.name = call.name or function.get("name") or ""  # some servers repeat the name on every fragment
        arguments = function.get("arguments")
        if isinstance(arguments, dict):  # LiteLLM's ollama_chat sends the arguments parsed (BerriAI/litellm#37792)
            arguments = json.dumps(arguments, ensure_ascii=False)
        if arguments:
            call.held.append(arguments)
        yield from self._flush(call)

    def _call_of(self, fragment: dict[str, Any]) -> _Call:
        call_id, index = fragment.get("id") or None, fragment.get("index")
        if call_id in self.calls:
            call = self.calls[call_id]
        elif call_id is None and index in self.call_at:
            call = self.call_at[index]
        elif call_id is None and index is None and self.latest is not None:
            call = self.latest
        else:
            call = _Call(call_id or new_id("call"))
            self.calls[call.id] = call
        if isinstance(index, int):
            self.call_at[index] = call
        self.latest = call
        return call

    def _flush(self, call: _Call, *, force: bool = False) -> Iterator[ModelEvent]:
        """Announce the call once it has a name (a name may come after the id: vercel/ai#14722), then its arguments."""
        if not (call.name or force):
            return
        if not call.started:
            call.started = True
            yield ToolCallStart(call.id, call.name)
        yield from (ToolCallDelta(call.id, text) for text in call.held)
        call.held.clear()


def content_texts(content: Any) -> Iterator[tuple[bool, str]]:
    """A delta's content as (is reasoning, text) pieces. Content is a string, or a list of parts:
    Mistral sends `[{"type": "text", "text": ...}]`, and its reasoning models
    `[{"type": "thinking", "thinking": [{"type": "text", "text": ...}]}]` (BerriAI/litellm#16272)."""
    if isinstance(content, str):
        if content:
            yield False, content
        return
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        if part.get("type") == "thinking":
            yield from ((True, text) for _, text in content_texts(part.get("thinking")))
        elif isinstance(text := part.get("text"), str) and text:
            yield False, text
