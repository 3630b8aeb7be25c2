"""One short human line per chunk: what an MCP client shows as a progress message, and what `lodestar-mcp ask`
prints. The chunk's JSON stays the full record; a line only says what happened."""

from __future__ import annotations

from typing import Any

from ..._text import as_text
from .base import BaseChunk

LINE_MAX = 200
"""Characters of arguments or results a line shows; text deltas are shown whole."""


def _clip(text: str, limit: int = LINE_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def chunk_line(chunk: BaseChunk) -> str:
    """`tool-call search_docs {"query": "memory"}`, `background-task-completed research`, `text-delta Hello`."""
    kind = chunk.type
    payload: Any = getattr(chunk, "payload", None)
    if kind in ("text-delta", "reasoning-delta"):
        return f"{kind} {payload.text}"
    detail = _detail(kind, payload)
    return _clip(f"{kind} {detail}".rstrip())


def _detail(kind: str, payload: Any) -> str:
    """What a line adds to the chunk's type: the tool and its arguments, a reason, an error's message."""
    if payload is None:
        return ""
    if kind == "start":
        return payload.agent_id
    if kind == "step-start":
        return f"{payload.request.provider}/{payload.request.model_id}"
    if kind in ("step-finish", "finish"):
        return payload.step_result.reason
    if kind in ("error", "tool-error", "background-task-failed"):
        name = getattr(payload, "tool_name", "")
        return f"{name}: {payload.error.message}" if name else payload.error.message
    if kind == "tripwire":
        return payload.reason
    if kind == "background-task-progress":
        return f"{payload.running_count} running"
    if kind.startswith("background-task-"):
        return payload.tool_name
    if kind == "tool-call":
        return f"{payload.tool_name} {as_text(payload.args)}"
    if kind == "tool-result":
        return f"{payload.tool_name} {as_text(payload.result)}"
    if kind == "tool-output":
        return f"{payload.tool_name} {as_text(payload.output)}"
    return getattr(payload, "tool_name", "")
