"""What a finished run reports: `generate()` returns it, `stream()` offers it once the stream ends."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..storage.tasks import BackgroundTask
from .messages import Message
from .processors import TripwireInfo
from .usage import Usage


class ToolCallRecord(BaseModel):
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)


class ToolResultRecord(BaseModel):
    tool_call_id: str
    tool_name: str
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    is_error: bool = False


class StepResult(BaseModel):
    step_number: int
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCallRecord] = Field(default_factory=list)
    tool_results: list[ToolResultRecord] = Field(default_factory=list)
    finish_reason: str = "stop"
    usage: Usage = Field(default_factory=Usage)


class RunError(BaseModel):
    message: str
    provider: str | None = None
    status: int | None = None


class RunResult(BaseModel):
    """`text` is the last step's text; `steps` keeps every step's text, calls and results."""

    run_id: str
    agent_id: str
    thread_id: str | None = None
    resource_id: str | None = None
    text: str = ""
    object: Any = None
    steps: list[StepResult] = Field(default_factory=list)
    usage: Usage = Field(default_factory=Usage)
    finish_reason: str = "stop"
    tripwire: TripwireInfo | None = None
    error: RunError | None = None
    messages: list[Message] = Field(default_factory=list, description="the messages this run added")
    background_tasks: list[BackgroundTask] = Field(
        default_factory=list, description="stream_until_idle: the background tasks its turns dispatched, as they ended"
    )

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [call for step in self.steps for call in step.tool_calls]

    @property
    def tool_results(self) -> list[ToolResultRecord]:
        return [result for step in self.steps for result in step.tool_results]
