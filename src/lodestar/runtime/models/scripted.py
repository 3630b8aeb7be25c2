"""A deterministic model for tests, demos and benchmarks: it plays back scripted turns."""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, ClassVar

import anyio
from pydantic import BaseModel, Field

from ..messages import Message, new_id
from ..usage import Usage
from .base import (
    CallContext,
    Finish,
    ModelError,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)

_COUNTS_KEPT = 10_000  # messages whose word counts a model remembers before it starts afresh


class ScriptedCall(BaseModel):
    name: str
    args: dict[str, Any] | str = Field(default_factory=dict, description="a dict, or raw (maybe malformed) JSON text")
    id: str | None = None


class ScriptedTurn(BaseModel):
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ScriptedCall] = Field(default_factory=list)
    usage: Usage | None = None
    delay_s: float = 0.0
    finish_reason: str | None = None


Script = Sequence[ScriptedTurn | str] | Callable[[ModelRequest], ScriptedTurn | str | Awaitable[ScriptedTurn | str]]


def reply(text: str, **fields: Any) -> ScriptedTurn:
    return ScriptedTurn(text=text, **fields)


def call(name: str, args: dict[str, Any] | str | None = None, *, id: str | None = None) -> ScriptedCall:
    return ScriptedCall(name=name, args=args if args is not None else {}, id=id)


def calls(*tool_calls: ScriptedCall, text: str = "", **fields: Any) -> ScriptedTurn:
    return ScriptedTurn(text=text, tool_calls=list(tool_calls), **fields)


class ScriptedModel:
    """Plays `script` back turn by turn.

    With a list, the turn is chosen by how many assistant turns follow the last user message, so
    one model serves any number of concurrent runs. Without a script it echoes the last user message.
    """

    provider = "scripted"
    supports_json_schema: ClassVar[bool] = True

    def __init__(self, script: Script | None = None, *, model_id: str = "scripted") -> None:
        self.model_id = model_id
        self.script = script
        self.requests: list[ModelRequest] = []
        self.record = False
        self._counts: dict[int, tuple[Message, list[Any], int]] = {}  # id(message) -> (message, its content, words)

    async def stream(self, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]:
        if self.record:
            self.requests.append(request)
        turn = await self._turn(request)
        if turn.delay_s:
            await anyio.sleep(turn.delay_s)
        if turn.reasoning:
            yield ReasoningDelta(turn.reasoning)
        for piece in _pieces(turn.text):
            yield TextDelta(piece)
        for tool_call in turn.tool_calls:
            call_id = tool_call.id or new_id("call")
            yield ToolCallStart(call_id, tool_call.name)
            args = tool_call.args if isinstance(tool_call.args, str) else json.dumps(tool_call.args)
            yield ToolCallDelta(call_id, args)
        reason = turn.finish_reason or ("tool-calls" if turn.tool_calls else "stop")
        usage = turn.usage or Usage.of(self._words(request), len(turn.text.split()) + len(turn.tool_calls))
        yield Finish(reason, reason, usage)

    async def _turn(self, request: ModelRequest) -> ScriptedTurn:
        if self.script is None:
            last_user = next((m.text for m in reversed(request.messages) if m.role == "user"), "")
            return ScriptedTurn(text=last_user)
        if callable(self.script):
            turn = self.script(request)
            if inspect.isawaitable(turn):
                turn = await turn
        else:
            index = _turns_since_user(request)
            if index >= len(self.script):
                raise ModelError("scripted", f"the script has {len(self.script)} turns and turn {index + 1} was asked")
            turn = self.script[index]
        return ScriptedTurn(text=turn) if isinstance(turn, str) else turn

    def _words(self, request: ModelRequest) -> int:
        """The request's words, as input tokens. A run resends its whole conversation every step, so each message
        is counted once and remembered, kept so that its id stays its own; one given a new content list is
        counted again."""
        if len(self._counts) > _COUNTS_KEPT:
            self._counts.clear()
        total = len((request.system or "").split())
        for message in request.messages:
            known = self._counts.get(id(message))
            if known is None or known[0] is not message or known[1] is not message.content:
                known = (message, message.content, len(message.text.split()))
                self._counts[id(message)] = known
            total += known[2]
        return total


def _turns_since_user(request: ModelRequest) -> int:
    count = 0
    for message in reversed(request.messages):
        if message.role == "user":
            break
        count += message.role == "assistant"
    return count


def _pieces(text: str) -> list[str]:
    """Split text the way a model streams it: a word and its following space per delta."""
    words = text.split(" ")
    pieces = [word + " " for word in words[:-1]] + [words[-1]]
    return [piece for piece in pieces if piece]
