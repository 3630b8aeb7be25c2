"""Stream chunks: one pydantic model per chunk type, with Mastra's wire names and envelope.

`Chunk` is the union of them all, discriminated on `type`; `parse_chunk` reads a chunk back from its wire
JSON. In Python, fields are snake_case attributes (`chunk.payload.tool_call_id`); `chunk.model_dump()` and
`chunk.model_dump_json()` give the wire shape, camelCase (`{"type", "runId", "from", "payload"}`).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import ConfigDict, Discriminator, Tag, TypeAdapter

from .background import (
    BackgroundTaskCancelledChunk,
    BackgroundTaskCancelledPayload,
    BackgroundTaskCompletedChunk,
    BackgroundTaskCompletedPayload,
    BackgroundTaskFailedChunk,
    BackgroundTaskFailedPayload,
    BackgroundTaskOutputChunk,
    BackgroundTaskOutputPayload,
    BackgroundTaskPayload,
    BackgroundTaskProgressChunk,
    BackgroundTaskProgressPayload,
    BackgroundTaskRunningChunk,
    BackgroundTaskRunningPayload,
    BackgroundTaskStartedChunk,
    BackgroundTaskStartedPayload,
)
from .base import BaseChunk, ChunkFrom, ErrorInfo, TokenUsage, WireModel
from .run import (
    BlockPayload,
    DeltaPayload,
    ErrorChunk,
    ErrorPayload,
    FinishChunk,
    FinishMetadata,
    FinishPayload,
    ModelInfo,
    ObjectResultChunk,
    Output,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    ReasoningStartChunk,
    StartChunk,
    StartPayload,
    StepFinishChunk,
    StepFinishPayload,
    StepMetadata,
    StepOutcome,
    StepStartChunk,
    StepStartPayload,
    TextDeltaChunk,
    TextEndChunk,
    TextStartChunk,
    TripwireChunk,
    TripwirePayload,
)
from .tool import (
    DataChunk,
    NamedToolCallRef,
    ToolCallChunk,
    ToolCallDeltaChunk,
    ToolCallDeltaPayload,
    ToolCallInputStreamingEndChunk,
    ToolCallInputStreamingStartChunk,
    ToolCallPayload,
    ToolCallRef,
    ToolErrorChunk,
    ToolErrorPayload,
    ToolOutputChunk,
    ToolOutputPayload,
    ToolResultChunk,
    ToolResultPayload,
)

DATA = "data-*"  # the union's tag for every `data-<name>` type


def _tag(value: Any) -> str | None:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return DATA if isinstance(kind, str) and kind.startswith("data-") else kind


Chunk = Annotated[
    Annotated[StartChunk, Tag("start")]
    | Annotated[StepStartChunk, Tag("step-start")]
    | Annotated[TextStartChunk, Tag("text-start")]
    | Annotated[TextDeltaChunk, Tag("text-delta")]
    | Annotated[TextEndChunk, Tag("text-end")]
    | Annotated[ReasoningStartChunk, Tag("reasoning-start")]
    | Annotated[ReasoningDeltaChunk, Tag("reasoning-delta")]
    | Annotated[ReasoningEndChunk, Tag("reasoning-end")]
    | Annotated[ToolCallInputStreamingStartChunk, Tag("tool-call-input-streaming-start")]
    | Annotated[ToolCallDeltaChunk, Tag("tool-call-delta")]
    | Annotated[ToolCallInputStreamingEndChunk, Tag("tool-call-input-streaming-end")]
    | Annotated[ToolCallChunk, Tag("tool-call")]
    | Annotated[ToolResultChunk, Tag("tool-result")]
    | Annotated[ToolErrorChunk, Tag("tool-error")]
    | Annotated[ToolOutputChunk, Tag("tool-output")]
    | Annotated[DataChunk, Tag(DATA)]
    | Annotated[ObjectResultChunk, Tag("object-result")]
    | Annotated[StepFinishChunk, Tag("step-finish")]
    | Annotated[FinishChunk, Tag("finish")]
    | Annotated[ErrorChunk, Tag("error")]
    | Annotated[TripwireChunk, Tag("tripwire")]
    | Annotated[BackgroundTaskStartedChunk, Tag("background-task-started")]
    | Annotated[BackgroundTaskRunningChunk, Tag("background-task-running")]
    | Annotated[BackgroundTaskProgressChunk, Tag("background-task-progress")]
    | Annotated[BackgroundTaskOutputChunk, Tag("background-task-output")]
    | Annotated[BackgroundTaskCompletedChunk, Tag("background-task-completed")]
    | Annotated[BackgroundTaskFailedChunk, Tag("background-task-failed")]
    | Annotated[BackgroundTaskCancelledChunk, Tag("background-task-cancelled")],
    Discriminator(
        _tag,
        custom_error_type="unknown_chunk_type",
        custom_error_message="unknown chunk type: use one of the documented types or a 'data-' name",
    ),
]
CHUNK_ADAPTER: TypeAdapter[Chunk] = TypeAdapter(Chunk, config=ConfigDict(title="Chunk"))
# Chunks that mark the run's own lifecycle; output processors never see or drop them.
LIFECYCLE = frozenset({"start", "step-start", "step-finish", "finish", "error", "tripwire"})


def parse_chunk(wire: str | bytes | dict[str, Any]) -> Chunk:
    """A chunk from its wire JSON (text or a decoded dict): the model its `type` names, validated."""
    if isinstance(wire, dict):
        return CHUNK_ADAPTER.validate_python(wire)
    return CHUNK_ADAPTER.validate_json(wire)


async def discard(_: Chunk) -> None:
    """A sink for chunks nobody reads."""


__all__ = [
    "CHUNK_ADAPTER",
    "DATA",
    "LIFECYCLE",
    "BackgroundTaskCancelledChunk",
    "BackgroundTaskCancelledPayload",
    "BackgroundTaskCompletedChunk",
    "BackgroundTaskCompletedPayload",
    "BackgroundTaskFailedChunk",
    "BackgroundTaskFailedPayload",
    "BackgroundTaskOutputChunk",
    "BackgroundTaskOutputPayload",
    "BackgroundTaskPayload",
    "BackgroundTaskProgressChunk",
    "BackgroundTaskProgressPayload",
    "BackgroundTaskRunningChunk",
    "BackgroundTaskRunningPayload",
    "BackgroundTaskStartedChunk",
    "BackgroundTaskStartedPayload",
    "BaseChunk",
    "BlockPayload",
    "Chunk",
    "ChunkFrom",
    "DataChunk",
    "DeltaPayload",
    "ErrorChunk",
    "ErrorInfo",
    "ErrorPayload",
    "FinishChunk",
    "FinishMetadata",
    "FinishPayload",
    "ModelInfo",
    "NamedToolCallRef",
    "ObjectResultChunk",
    "Output",
    "ReasoningDeltaChunk",
    "ReasoningEndChunk",
    "ReasoningStartChunk",
    "StartChunk",
    "StartPayload",
    "StepFinishChunk",
    "StepFinishPayload",
    "StepMetadata",
    "StepOutcome",
    "StepStartChunk",
    "StepStartPayload",
    "TextDeltaChunk",
    "TextEndChunk",
    "TextStartChunk",
    "TokenUsage",
    "ToolCallChunk",
    "ToolCallDeltaChunk",
    "ToolCallDeltaPayload",
    "ToolCallInputStreamingEndChunk",
    "ToolCallInputStreamingStartChunk",
    "ToolCallPayload",
    "ToolCallRef",
    "ToolErrorChunk",
    "ToolErrorPayload",
    "ToolOutputChunk",
    "ToolOutputPayload",
    "ToolResultChunk",
    "ToolResultPayload",
    "TripwireChunk",
    "TripwirePayload",
    "WireModel",
    "discard",
    "parse_chunk",
]
