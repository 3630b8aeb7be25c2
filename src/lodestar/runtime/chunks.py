"""Stream chunks: Mastra's wire names and payload fields, one pydantic model for all of them.

Payloads stay plain dicts keyed by the wire field names (`toolCallId`, `isError`, ...), so a chunk
serialises as it arrives and a processor edits a payload like any dict.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator

RUN_CHUNKS = frozenset(
    {
        "start",
        "step-start",
        "text-start",
        "text-delta",
        "text-end",
        "reasoning-start",
        "reasoning-delta",
        "reasoning-end",
        "tool-call-input-streaming-start",
        "tool-call-delta",
        "tool-call-input-streaming-end",
        "tool-call",
        "tool-result",
        "tool-error",
        "tool-output",
        "object-result",
        "step-finish",
        "finish",
        "error",
        "tripwire",
    }
)
BACKGROUND_CHUNKS = frozenset(
    f"background-task-{event}"
    for event in ("started", "running", "progress", "output", "completed", "failed", "cancelled")
)
CHUNK_TYPES = RUN_CHUNKS | BACKGROUND_CHUNKS
# Chunks that mark the run's own lifecycle; output processors never see or drop them.
LIFECYCLE = frozenset({"start", "step-start", "step-finish", "finish", "error", "tripwire"})


class Chunk(BaseModel):
    type: str
    run_id: str
    payload: dict[str, Any] = Field(default_factory=dict)

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        if value in CHUNK_TYPES or (value.startswith("data-") and len(value) > 5):
            return value
        raise ValueError(f"unknown chunk type {value!r}: use one of the documented types or a 'data-' name")

    @property
    def is_data(self) -> bool:
        return self.type.startswith("data-")


def chunk(type_: str, run_id: str, **payload: Any) -> Chunk:
    """Build a chunk the runtime itself emits, skipping validation (the type is one of ours)."""
    return Chunk.model_construct(type=type_, run_id=run_id, payload=payload)


async def discard(_: Chunk) -> None:
    """A sink for chunks nobody reads."""
