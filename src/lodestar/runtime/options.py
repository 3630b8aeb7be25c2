"""The keyword options shared by generate(), stream() and stream_until_idle()."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ..arguments import argument_problems
from ..errors import InvalidValueError
from .memory import ThreadArg
from .models.base import ModelSettings


class RunOptions(BaseModel):
    """Agent `default_options` fill in what a call leaves out; unknown names are an error, not ignored."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    thread: ThreadArg = Field(None, description="thread id, or {id, title, metadata}; needs memory")
    resource: str | None = Field(None, description="who the thread belongs to (a user, a tenant)")
    max_steps: int | None = Field(None, ge=1, le=1000)
    structured_output: Any = Field(None, description="a pydantic model (or type) the final answer must parse into")
    tool_choice: str | None = Field(None, description="auto, none, required, or a tool name")
    model: Any = Field(None, description="a model id or object replacing the agent's for this call")
    model_settings: ModelSettings | None = None
    instructions: str | None = None
    request_context: Mapping[str, Any] = Field(default_factory=dict)
    max_processor_retries: int | None = Field(None, ge=0, le=100)
    input_processors: Sequence[Any] | None = None
    output_processors: Sequence[Any] | None = None
    last_messages: int | None = Field(None, ge=0)
    run_id: str | None = None
    sampler: Any = Field(None, description="the MCP client's sampler, for the `sampling` model")
    max_idle_ms: int = Field(300_000, ge=0, description="stream_until_idle: longest wait for background tasks")

    @classmethod
    def merge(cls, defaults: Mapping[str, Any], given: Mapping[str, Any]) -> RunOptions:
        try:
            return cls.model_validate({**defaults, **{k: v for k, v in given.items() if v is not None}})
        except ValidationError as exc:
            properties: dict[str, Any] = {key: {} for key in cls.model_fields}  # names for "did you mean"
            raise InvalidValueError(f"invalid run options: {argument_problems(exc.errors(), properties)}") from None
