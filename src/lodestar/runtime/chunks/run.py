"""Chunks of a run's lifecycle and of the model's answer: start, steps, text, reasoning, the end."""

from __future__ import annotations

from typing import Any, Literal

from .base import BaseChunk, ErrorInfo, TokenUsage, WireModel, optional


class StartPayload(WireModel):
    agent_id: str
    thread_id: str | None
    resource_id: str | None


class ModelInfo(WireModel):
    provider: str
    model_id: str


class StepStartPayload(WireModel):
    message_id: str
    request: ModelInfo
    warnings: list[Any]


class StepOutcome(WireModel):
    """Why a step or run ended; `is_continued` when another step may follow, `raw_reason` as the provider put it."""

    reason: str
    raw_reason: str | None = optional()
    is_continued: bool | None = optional()


class Output(WireModel):
    text: str
    usage: TokenUsage
    object: Any = optional()


class StepMetadata(ModelInfo):
    step_number: int


class StepFinishPayload(WireModel):
    """A retried step's `step-finish` has only `step_result`; a finished step has every field."""

    message_id: str | None = optional()
    step_result: StepOutcome
    output: Output | None = optional()
    metadata: StepMetadata | None = optional()


class FinishMetadata(StartPayload):
    steps: int


class FinishPayload(WireModel):
    step_result: StepOutcome
    output: Output
    metadata: FinishMetadata


class ErrorPayload(WireModel):
    error: ErrorInfo


class TripwirePayload(WireModel):
    reason: str
    retry: bool
    metadata: Any
    processor_id: str | None


class BlockPayload(WireModel):
    """Opens or closes a text or reasoning block; its deltas carry the same `id`."""

    id: str


class DeltaPayload(BlockPayload):
    text: str


class StartChunk(BaseChunk):
    type: Literal["start"] = "start"
    payload: StartPayload


class StepStartChunk(BaseChunk):
    type: Literal["step-start"] = "step-start"
    payload: StepStartPayload


class StepFinishChunk(BaseChunk):
    type: Literal["step-finish"] = "step-finish"
    payload: StepFinishPayload


class FinishChunk(BaseChunk):
    type: Literal["finish"] = "finish"
    payload: FinishPayload


class ErrorChunk(BaseChunk):
    type: Literal["error"] = "error"
    payload: ErrorPayload


class TripwireChunk(BaseChunk):
    type: Literal["tripwire"] = "tripwire"
    payload: TripwirePayload


class TextStartChunk(BaseChunk):
    type: Literal["text-start"] = "text-start"
    payload: BlockPayload


class TextDeltaChunk(BaseChunk):
    type: Literal["text-delta"] = "text-delta"
    payload: DeltaPayload


class TextEndChunk(BaseChunk):
    type: Literal["text-end"] = "text-end"
    payload: BlockPayload


class ReasoningStartChunk(BaseChunk):
    type: Literal["reasoning-start"] = "reasoning-start"
    payload: BlockPayload


class ReasoningDeltaChunk(BaseChunk):
    type: Literal["reasoning-delta"] = "reasoning-delta"
    payload: DeltaPayload


class ReasoningEndChunk(BaseChunk):
    type: Literal["reasoning-end"] = "reasoning-end"
    payload: BlockPayload


class ObjectResultChunk(BaseChunk):
    """As in Mastra, the parsed object sits beside the envelope, not in a payload."""

    type: Literal["object-result"] = "object-result"
    object: Any
