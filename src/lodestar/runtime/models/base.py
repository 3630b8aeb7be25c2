"""What every model provider implements: one streamed call from a request to a sequence of events."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from ...errors import RunFailure, is_retryable
from ..messages import Message
from ..usage import Usage

ToolChoice = Literal["auto", "none", "required"] | str  # a tool name forces that tool


class ToolSpec(BaseModel):
    """A tool as a model sees it."""

    name: str
    description: str = ""
    input_schema: dict[str, Any] = Field(default_factory=lambda: {"type": "object", "properties": {}})


class ResponseFormat(BaseModel):
    """Structured output: the JSON schema the final answer must follow.

    `strict` says the schema already meets OpenAI's strict rules (an object root, every property
    required, no extra properties), so the provider may ask for exact conformance."""

    name: str
    schema_: dict[str, Any] = Field(alias="schema")
    strict: bool = False
    model_config = {"populate_by_name": True}


class ModelSettings(BaseModel):
    temperature: float | None = None
    max_tokens: int | None = None
    top_p: float | None = None
    stop: list[str] | None = None
    extra: dict[str, Any] = Field(default_factory=dict, description="provider-specific body fields")


class ModelRequest(BaseModel):
    system: str | None = None
    messages: list[Message]
    tools: list[ToolSpec] = Field(default_factory=list)
    tool_choice: ToolChoice = "auto"
    response_format: ResponseFormat | None = None
    settings: ModelSettings = Field(default_factory=ModelSettings)


# Events a provider yields, in order. Dataclasses: they are internal and created per token.
@dataclass(slots=True)
class TextDelta:
    text: str


@dataclass(slots=True)
class ReasoningDelta:
    text: str


@dataclass(slots=True)
class ReasoningEnd:
    """Closes a reasoning block with the provider's proof of it (Anthropic's `signature`), or stands for a block
    the provider sent only encrypted (`redacted`). Both must go back verbatim on the next call."""

    signature: str | None = None
    redacted: str | None = None


@dataclass(slots=True)
class ToolCallStart:
    id: str
    name: str


@dataclass(slots=True)
class ToolCallDelta:
    id: str
    args_text: str


@dataclass(slots=True)
class Finish:
    reason: str
    raw_reason: str | None = None
    usage: Usage = field(default_factory=Usage)


ModelEvent = TextDelta | ReasoningDelta | ReasoningEnd | ToolCallStart | ToolCallDelta | Finish


class ModelError(RunFailure):
    """A model call failed: names the provider, the HTTP status when there was one, and what to do.

    Raised by the model providers (and by a custom model's `stream`); the run turns it into an `error` chunk and
    `result.error`. `retryable` follows `lodestar.errors.is_retryable` from the HTTP `status` and the failure's
    `kind` (an error event's type or code, `connection_error`, `timeout`), unless `retryable=` says otherwise.
    `retry_after_s` is the wait the server asked for (HTTP Retry-After), when it asked."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        kind: str | None = None,
        retryable: bool | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(f"{provider}: {message}")
        self.provider = provider
        self.status = status
        self.kind = kind
        self.retryable = is_retryable(status, kind) if retryable is None else retryable
        self.retry_after_s = retry_after_s

    def payload(self) -> dict[str, Any]:
        return {"message": str(self), "provider": self.provider, "status": self.status}


async def guarded_stream(model: Model, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]:
    """`model.stream`, with any failure raised as a ModelError naming the provider.

    A provider's bug or a surprise in a stream then ends the run with an `error` chunk and
    `result.error`, like any provider failure, instead of escaping from `generate()` or `stream()`.
    """
    try:
        async for event in model.stream(request, context):
            yield event
    except ModelError:
        raise
    except Exception as exc:
        what = f"the model call failed unexpectedly ({type(exc).__name__}: {exc})"
        raise ModelError(model.provider, what) from exc


@runtime_checkable
class Model(Protocol):
    provider: str
    model_id: str
    supports_json_schema: ClassVar[bool]

    def stream(self, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]: ...


@dataclass(slots=True)
class CallContext:
    """What a provider may need from the run: the MCP sampler for `sampling`, the run id for logs."""

    run_id: str
    sampler: Any = None
