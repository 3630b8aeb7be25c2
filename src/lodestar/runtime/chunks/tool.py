"""Chunks of tool calls: the model streaming a call, the call's output while it runs, its result or error,
and the custom `data-*` chunks a tool writes."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import field_validator

from .base import BaseChunk, ErrorInfo, WireModel, optional


class ToolCallRef(WireModel):
    tool_call_id: str


class NamedToolCallRef(ToolCallRef):
    tool_name: str


class ToolCallDeltaPayload(NamedToolCallRef):
    args_text_delta: str


class ToolCallPayload(NamedToolCallRef):
    args: dict[str, Any]


class ToolResultPayload(ToolCallPayload):
    result: Any
    is_error: bool


class ToolErrorPayload(ToolCallPayload):
    error: ErrorInfo


class ToolOutputPayload(NamedToolCallRef):
    output: Any


class ToolCallInputStreamingStartChunk(BaseChunk):
    type: Literal["tool-call-input-streaming-start"] = "tool-call-input-streaming-start"
    payload: NamedToolCallRef


class ToolCallDeltaChunk(BaseChunk):
    type: Literal["tool-call-delta"] = "tool-call-delta"
    payload: ToolCallDeltaPayload


class ToolCallInputStreamingEndChunk(BaseChunk):
    type: Literal["tool-call-input-streaming-end"] = "tool-call-input-streaming-end"
    payload: ToolCallRef


class ToolCallChunk(BaseChunk):
    type: Literal["tool-call"] = "tool-call"
    payload: ToolCallPayload


class ToolResultChunk(BaseChunk):
    type: Literal["tool-result"] = "tool-result"
    payload: ToolResultPayload


class ToolErrorChunk(BaseChunk):
    type: Literal["tool-error"] = "tool-error"
    payload: ToolErrorPayload


class ToolOutputChunk(BaseChunk):
    type: Literal["tool-output"] = "tool-output"
    payload: ToolOutputPayload


class DataChunk(BaseChunk):
    """A custom chunk, `data-<name>`, shaped as Mastra's: `data` beside the envelope, no payload. A tool's
    chunks say which call wrote them in `metadata` (`toolCallId`, `toolName`)."""

    data: Any
    id: str | None = optional()

    @field_validator("type")
    @classmethod
    def _data_prefix(cls, value: str) -> str:
        if value.startswith("data-") and len(value) > 5:
            return value
        raise ValueError(f"custom chunk type {value!r} must start with 'data-', e.g. 'data-status'")
