"""Chunks of background tasks, with Mastra's payload fields. Defined now; background tasks will emit them."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from .base import BaseChunk, ErrorInfo, WireModel, optional
from .tool import ToolOutputChunk


class BackgroundTaskStartedPayload(WireModel):
    task_id: str
    tool_name: str
    tool_call_id: str


class BackgroundTaskPayload(BackgroundTaskStartedPayload):
    """The fields every chunk about one task has once it was started: which run and agent dispatched it."""

    run_id: str
    agent_id: str


class BackgroundTaskRunningPayload(BackgroundTaskPayload):
    started_at: datetime
    args: dict[str, Any]


class BackgroundTaskProgressPayload(WireModel):
    task_ids: list[str]
    running_count: int
    elapsed_ms: int


class BackgroundTaskOutputPayload(BackgroundTaskPayload):
    payload: ToolOutputChunk


class BackgroundTaskCompletedPayload(BackgroundTaskPayload):
    result: Any
    completed_at: datetime
    is_error: bool | None = optional()


class BackgroundTaskFailedPayload(BackgroundTaskPayload):
    error: ErrorInfo
    completed_at: datetime


class BackgroundTaskCancelledPayload(BackgroundTaskPayload):
    completed_at: datetime


class BackgroundTaskStartedChunk(BaseChunk):
    type: Literal["background-task-started"] = "background-task-started"
    payload: BackgroundTaskStartedPayload


class BackgroundTaskRunningChunk(BaseChunk):
    type: Literal["background-task-running"] = "background-task-running"
    payload: BackgroundTaskRunningPayload


class BackgroundTaskProgressChunk(BaseChunk):
    type: Literal["background-task-progress"] = "background-task-progress"
    payload: BackgroundTaskProgressPayload


class BackgroundTaskOutputChunk(BaseChunk):
    type: Literal["background-task-output"] = "background-task-output"
    payload: BackgroundTaskOutputPayload


class BackgroundTaskCompletedChunk(BaseChunk):
    type: Literal["background-task-completed"] = "background-task-completed"
    payload: BackgroundTaskCompletedPayload


class BackgroundTaskFailedChunk(BaseChunk):
    type: Literal["background-task-failed"] = "background-task-failed"
    payload: BackgroundTaskFailedPayload


class BackgroundTaskCancelledChunk(BaseChunk):
    type: Literal["background-task-cancelled"] = "background-task-cancelled"
    payload: BackgroundTaskCancelledPayload
