"""An agent run's chunks as MCP progress notifications on the request that asked, and as debug log messages for a
client that asked for debug logs (log_levels.wants_debug)."""

from __future__ import annotations

import asyncio
import time
import warnings
from collections import deque
from typing import Any

from mcp.server.mcpserver import Context

from lodestar.runtime.chunks import (
    Chunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    TextDeltaChunk,
    TextEndChunk,
    ToolCallDeltaChunk,
    ToolCallInputStreamingEndChunk,
)
from lodestar.runtime.chunks.lines import chunk_line

TEXT_INTERVAL_S = 0.1
"""At most one notification per text block in this time: a model streams far more deltas than a client can show."""
HELD_MAX = 10_000
"""Notifications held while no request is open (between sampling rounds); beyond it the oldest go."""


class ChunkProgress:
    """Sends each chunk as one progress notification with a rising value and a short line, text deltas coalesced.

    The request it reports to can change: on 2026-07-28 a sampling run spans several requests (rounds), and
    between two of them nothing is open, so notifications wait for the next round rather than being lost.
    """

    def __init__(self, *, debug: bool = False) -> None:
        self.debug = debug
        self.sent = 0
        self.dropped = 0
        self._ctx: Context[Any, Any] | None = None
        self._held: deque[tuple[str | None, dict[str, Any] | None]] = deque()
        self._sending = asyncio.Lock()
        self._text: dict[str, tuple[str, str]] = {}  # block id -> (line label, text not yet sent)
        self._last: dict[str, float] = {}  # block id -> when its text was last sent

    async def attach(self, ctx: Context[Any, Any]) -> None:
        self._ctx = ctx
        await self._drain()

    def detach(self) -> None:
        self._ctx = None

    async def chunk(self, chunk: Chunk) -> None:
        record = chunk.model_dump(mode="json") if self.debug else None
        if isinstance(chunk, TextDeltaChunk | ReasoningDeltaChunk):
            await self._delta(chunk.payload.id, chunk.type, chunk.payload.text, record)
            return
        if isinstance(chunk, ToolCallDeltaChunk):  # a model streams a call's arguments in many small pieces too
            await self._delta(chunk.payload.tool_call_id, f"{chunk.type} {chunk.payload.tool_name}", "", record)
            return
        if isinstance(chunk, TextEndChunk | ReasoningEndChunk):
            await self._flush(chunk.payload.id)
        if isinstance(chunk, ToolCallInputStreamingEndChunk):
            await self._flush(chunk.payload.tool_call_id)
        await self._notify(chunk_line(chunk), record)

    async def flush(self) -> None:
        for block in list(self._text):
            await self._flush(block)

    async def _delta(self, block: str, label: str, text: str, record: dict[str, Any] | None) -> None:
        """Gathers a block's pieces; they go out together, at most once per TEXT_INTERVAL_S and when it ends."""
        self._text[block] = (label, self._text.get(block, (label, ""))[1] + text)
        if record is not None:
            await self._notify(None, record)
        if time.monotonic() - self._last.get(block, -TEXT_INTERVAL_S) >= TEXT_INTERVAL_S:
            await self._flush(block)

    async def _flush(self, block: str) -> None:
        if block in self._text:
            label, text = self._text.pop(block)
            self._last[block] = time.monotonic()
            await self._notify(f"{label} {text}".rstrip(), None)

    async def _notify(self, line: str | None, record: dict[str, Any] | None) -> None:
        """A progress line, or a debug log record, or both; held while no request is open. Sent in order: behind
        those held, which the next round's `attach` may still be sending as the run goes on."""
        if self._ctx is None and len(self._held) == HELD_MAX:
            self._held.popleft()
            self.dropped += 1
        self._held.append((line, record))
        await self._drain()

    async def _drain(self) -> None:
        """Sends what is held, one sender at a time: the caller waits until its own has gone (or none is open)."""
        async with self._sending:
            while self._held and self._ctx is not None:
                await self._send(*self._held.popleft())

    async def _send(self, line: str | None, record: dict[str, Any] | None) -> None:
        assert self._ctx is not None
        if record is not None:
            with warnings.catch_warnings():  # the logging capability is deprecated from 2026-07-28, still served
                warnings.simplefilter("ignore")
                await self._ctx.log("debug", record, logger_name="lodestar.chunks")
        if line is not None:
            self.sent += 1
            await self._ctx.report_progress(self.sent, None, line)
