"""`sampling`: the connected MCP client's own model, reached through a sampler the MCP layer supplies."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any, ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ..messages import new_id
from ..usage import Usage
from .base import CallContext, Finish, ModelError, ModelEvent, ModelRequest, TextDelta, ToolCallDelta, ToolCallStart

NO_SAMPLER = (
    "the 'sampling' model asks the connected MCP client's model, and no connected client offers sampling "
    "(or the agent runs outside an MCP request, or over stateless HTTP with a client older than protocol "
    "2026-07-28). Set LODESTAR_MODEL (e.g. openai/gpt-5-mini) or pass "
    "model= to the agent, or connect a client that supports sampling"
)


class SampledCall(BaseModel):
    id: str = Field(default_factory=lambda: new_id("call"))
    name: str
    args: dict[str, Any] = Field(default_factory=dict)


class SampledTurn(BaseModel):
    """One answer from the client's model."""

    text: str = ""
    tool_calls: list[SampledCall] = Field(default_factory=list)
    stop_reason: str | None = None
    model: str | None = None


@runtime_checkable
class Sampler(Protocol):
    """Implemented by the MCP layer for one request; the runtime never imports MCP itself."""

    async def sample(self, request: ModelRequest, hint: str | None = None) -> SampledTurn:
        """`hint` names a preferred model (from `sampling/<hint>`); the client may ignore it."""
        ...


_REASONS = {"endTurn": "stop", "stopSequence": "stop", "maxTokens": "length", "toolUse": "tool-calls"}


class SamplingModel:
    provider = "sampling"
    supports_json_schema: ClassVar[bool] = False

    def __init__(self, hint: str | None = None) -> None:
        self.model_id = hint or "client"
        self.hint = hint

    async def stream(self, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]:
        sampler = context.sampler
        if sampler is None:
            raise ModelError("sampling", NO_SAMPLER)
        turn = await sampler.sample(request, self.hint)
        if turn.text:
            yield TextDelta(turn.text)
        for call in turn.tool_calls:
            yield ToolCallStart(call.id, call.name)
            yield ToolCallDelta(call.id, json.dumps(call.args))
        default = "tool-calls" if turn.tool_calls else "stop"
        reason = _REASONS.get(turn.stop_reason or "", default)
        yield Finish(reason, turn.stop_reason, Usage())
