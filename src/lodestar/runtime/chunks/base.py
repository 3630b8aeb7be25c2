"""The envelope every chunk shares, and the naming rules that make a model serialise as Mastra's JSON."""

from __future__ import annotations

from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from ...errors import InvalidTypeError

ChunkFrom = Literal["AGENT", "USER", "SYSTEM", "WORKFLOW"]


def _is_none(value: Any) -> bool:
    return value is None


def optional() -> Any:
    """A field the wire leaves out while it is None (Mastra's `field?`), rather than sending null."""
    return Field(default=None, exclude_if=_is_none)


class WireModel(BaseModel):
    """snake_case attributes in Python, camelCase names on the wire and when parsing (either name is accepted)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
    )


class BaseChunk(WireModel):
    """Mastra's envelope: `{type, runId, from, payload, metadata?}`; each chunk type adds its own fields."""

    type: str
    run_id: str
    from_: ChunkFrom = Field(default="AGENT", alias="from")
    metadata: dict[str, Any] | None = optional()

    @property
    def is_data(self) -> bool:
        return self.type.startswith("data-")

    def with_payload(self, **changes: Any) -> Self:
        """A copy with some payload fields changed, by their Python names and validated: how a processor
        edits a chunk (`part.with_payload(text=masked)`)."""
        payload = getattr(self, "payload", None)
        if not isinstance(payload, WireModel):
            raise InvalidTypeError(f"a {self.type} chunk has no payload: use chunk.model_copy(update={{...}})")
        changed = type(payload).model_validate({**dict(payload), **changes})
        return self.model_copy(update={"payload": changed})


class ErrorInfo(WireModel):
    """What went wrong; `provider` and `status` come with model errors (`status` only with an HTTP answer)."""

    message: str
    provider: str | None = optional()
    status: int | None = optional()


class TokenUsage(WireModel):
    input_tokens: int
    output_tokens: int
    total_tokens: int
