"""Conversation messages: the one shape that memory stores, processors edit and providers translate."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from ..errors import InvalidValueError
from ..storage.models import StoredMessage, utcnow

Role = Literal["system", "user", "assistant", "tool"]


def new_id(prefix: str) -> str:
    """96 random bits, as 24 hex digits: a run makes several ids a step, and uuid4() costs four times as much."""
    return f"{prefix}_{os.urandom(12).hex()}"


class TextPart(BaseModel):
    type: Literal["text"] = "text"
    text: str


class ReasoningPart(BaseModel):
    """The model's reasoning as the provider sent it: a signed block is checked against its text when sent back."""

    type: Literal["reasoning"] = "reasoning"
    text: str = ""
    signature: str | None = None
    redacted: str | None = None


class ToolCallPart(BaseModel):
    type: Literal["tool-call"] = "tool-call"
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResultPart(BaseModel):
    type: Literal["tool-result"] = "tool-result"
    tool_call_id: str
    tool_name: str
    result: Any = None
    is_error: bool = False


Part = Annotated[TextPart | ReasoningPart | ToolCallPart | ToolResultPart, Field(discriminator="type")]


class Message(BaseModel):
    """One turn. Assistant turns hold text and tool calls; `tool` turns hold tool results."""

    id: str = Field(default_factory=lambda: new_id("msg"))
    role: Role
    content: list[Part] = Field(default_factory=list)
    created_at: datetime = Field(default_factory=utcnow)

    @property
    def text(self) -> str:
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    @property
    def reasoning(self) -> list[ReasoningPart]:
        return [part for part in self.content if isinstance(part, ReasoningPart)]

    @property
    def tool_calls(self) -> list[ToolCallPart]:
        return [part for part in self.content if isinstance(part, ToolCallPart)]

    @property
    def tool_results(self) -> list[ToolResultPart]:
        return [part for part in self.content if isinstance(part, ToolResultPart)]


def text_message(role: Role, text: str) -> Message:
    return Message(role=role, content=[TextPart(text=text)])


MessageInput = str | Message | Mapping[str, Any] | Iterable[Message | Mapping[str, Any] | str]


def to_messages(value: MessageInput) -> list[Message]:
    """Accept a string, a message, a dict like {"role": "user", "content": "hi"}, or a list of those."""
    if isinstance(value, str):
        return [text_message("user", value)]
    if isinstance(value, Message | Mapping):
        return [_one_message(value)]
    messages = [text_message("user", item) if isinstance(item, str) else _one_message(item) for item in value]
    if not messages:
        raise InvalidValueError("messages is empty: pass a string or at least one message")
    return messages


def _one_message(value: Message | Mapping[str, Any]) -> Message:
    if isinstance(value, Message):
        return value
    data = dict(value)
    if isinstance(data.get("content"), str):
        data["content"] = [{"type": "text", "text": data["content"]}]
    return Message.model_validate(data)


def result_text(result: Any) -> str:
    """How a tool result reads to a model: strings as they are, anything else as JSON."""
    if isinstance(result, str):
        return result
    if isinstance(result, BaseModel):
        return result.model_dump_json()
    return json.dumps(result, default=str, ensure_ascii=False)


def call_as_text(call: ToolCallPart) -> str:
    """A tool call told to a model that has no tools to call: some APIs refuse tool blocks then."""
    return f"[called {call.tool_name} with {json.dumps(call.args, ensure_ascii=False)}]"


def tool_result_as_text(result: ToolResultPart) -> str:
    return f"[{result.tool_name} returned] {result_text(result.result)}"


def to_stored(message: Message) -> StoredMessage:
    content = [part.model_dump(mode="json") for part in message.content]
    return StoredMessage(id=message.id, role=message.role, content=content, created_at=message.created_at)


def from_stored(stored: StoredMessage) -> Message:
    return Message.model_validate(stored.model_dump())
