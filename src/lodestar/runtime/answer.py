"""One model call's answer: streamed out as chunks, kept in the order its blocks came.

Claude refuses a turn sent back with its thinking blocks moved, so the assistant message is rebuilt from
the blocks in stream order, not from text, reasoning and tool calls gathered apart.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from .chunks import (
    Chunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    ToolCallChunk,
    ToolCallDeltaChunk,
    ToolCallInputStreamingEndChunk,
    ToolCallInputStreamingStartChunk,
)
from .messages import ReasoningPart, TextPart, ToolCallPart, new_id
from .models.base import Finish, ModelEvent, ReasoningDelta, ReasoningEnd, TextDelta, ToolCallDelta, ToolCallStart


@dataclass(slots=True)
class PendingCall:
    id: str
    name: str
    args_text: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def parse_args(self) -> None:
        text = "".join(self.args_text).strip() or "{}"
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            self.error = (
                f"the arguments for tool {self.name} are not valid JSON ({exc.msg} at char {exc.pos}): {text[:200]}"
            )
            return
        if not isinstance(parsed, dict):
            self.error = f"the arguments for tool {self.name} must be a JSON object, got {type(parsed).__name__}"
            return
        self.args = parsed

    def part(self) -> ToolCallPart:
        return ToolCallPart(tool_call_id=self.id, tool_name=self.name, args=self.args)


Block = str | ReasoningPart | PendingCall  # a text block is named by its chunk id: its text comes after processors


class Answer:
    """Reads a model's events, emits the matching chunks, and remembers the blocks in order."""

    def __init__(self, run_id: str, emit: Callable[[Chunk], Awaitable[None]], *, heard: bool = True) -> None:
        self.run_id = run_id
        self.emit = emit
        self.heard = heard  # False: nobody reads the chunks, so the tool-call ones are not built
        self.blocks: list[Block] = []
        self.calls: dict[str, PendingCall] = {}
        self.finish = Finish("stop")
        self._text_id: str | None = None
        self._reasoning_id: str | None = None
        self._reasoning: list[str] = []  # as the model sent it: a signature covers exactly this text

    async def read(self, event: ModelEvent) -> None:
        if isinstance(event, TextDelta):
            await self._open_text()
            await self.emit(TextDeltaChunk(run_id=self.run_id, payload={"id": self._text_id, "text": event.text}))
        elif isinstance(event, ToolCallDelta):
            call = self.calls[event.id]
            call.args_text.append(event.args_text)
            if self.heard:
                delta = {"tool_call_id": call.id, "tool_name": call.name, "args_text_delta": event.args_text}
                await self.emit(ToolCallDeltaChunk(run_id=self.run_id, payload=delta))
        elif isinstance(event, ToolCallStart):
            await self.close_blocks()
            self.calls[event.id] = call = PendingCall(event.id, event.name)
            self.blocks.append(call)
            if self.heard:
                start = {"tool_call_id": event.id, "tool_name": event.name}
                await self.emit(ToolCallInputStreamingStartChunk(run_id=self.run_id, payload=start))
        elif isinstance(event, ReasoningDelta):
            await self._open_reasoning()
            self._reasoning.append(event.text)
            thought: dict[str, Any] = {"id": self._reasoning_id, "text": event.text}
            await self.emit(ReasoningDeltaChunk(run_id=self.run_id, payload=thought))
        elif isinstance(event, ReasoningEnd):
            await self._end_reasoning(event)
        elif isinstance(event, Finish):
            self.finish = event

    async def close_blocks(self) -> None:
        """Ends the open text or reasoning block; a block opened before a failure still gets its *-end chunk."""
        await self._end_reasoning()
        await self._end_text()

    async def end(self) -> list[PendingCall]:
        """The tool calls, their arguments parsed and announced once the stream is complete."""
        await self.close_blocks()
        for call in self.calls.values():
            call.parse_args()
            if not self.heard:
                continue
            await self.emit(ToolCallInputStreamingEndChunk(run_id=self.run_id, payload={"tool_call_id": call.id}))
            parsed = {"tool_call_id": call.id, "tool_name": call.name, "args": call.args}
            await self.emit(ToolCallChunk(run_id=self.run_id, payload=parsed))
        return list(self.calls.values())

    def content(self, texts: dict[str | None, list[str]]) -> list[TextPart | ReasoningPart | ToolCallPart]:
        """The assistant message in stream order, with each text block as output processors left it."""
        texts = dict(texts)
        parts: list[TextPart | ReasoningPart | ToolCallPart] = []
        for block in self.blocks:
            if isinstance(block, str):
                text = "".join(texts.pop(block, []))
                parts += [TextPart(text=text)] if text else []
            else:
                parts.append(block.part() if isinstance(block, PendingCall) else block)
        added = "".join(text for pieces in texts.values() for text in pieces)  # text a processor put elsewhere
        return [*parts, TextPart(text=added)] if added else parts

    async def _open_text(self) -> None:
        if self._text_id is None:
            await self._end_reasoning()
            self._text_id = new_id("text")
            self.blocks.append(self._text_id)
            await self.emit(TextStartChunk(run_id=self.run_id, payload={"id": self._text_id}))

    async def _open_reasoning(self) -> None:
        if self._reasoning_id is None:
            await self._end_text()
            self._reasoning_id = new_id("reasoning")
            await self.emit(ReasoningStartChunk(run_id=self.run_id, payload={"id": self._reasoning_id}))

    async def _end_text(self) -> None:
        if self._text_id:
            await self.emit(TextEndChunk(run_id=self.run_id, payload={"id": self._text_id}))
            self._text_id = None

    async def _end_reasoning(self, end: ReasoningEnd | None = None) -> None:
        signature = end.signature if end else None
        if self._reasoning or signature:
            self.blocks.append(ReasoningPart(text="".join(self._reasoning), signature=signature))
            self._reasoning = []
        if self._reasoning_id:
            await self.emit(ReasoningEndChunk(run_id=self.run_id, payload={"id": self._reasoning_id}))
            self._reasoning_id = None
        if end and end.redacted is not None:
            self.blocks.append(ReasoningPart(redacted=end.redacted))
