"""The manager's five public chunks, built from committed task updates (Mastra's payload fields)."""

from __future__ import annotations

from ..runtime.chunks import (
    BackgroundTaskCancelledChunk,
    BackgroundTaskCompletedChunk,
    BackgroundTaskFailedChunk,
    BackgroundTaskOutputChunk,
    BackgroundTaskRunningChunk,
    Chunk,
)
from ..storage.tasks import BackgroundTask
from .pubsub import Update


def _ids(task: BackgroundTask) -> dict[str, object]:
    return {
        "task_id": task.id,
        "tool_name": task.tool_name,
        "tool_call_id": task.tool_call_id,
        "run_id": task.run_id,
        "agent_id": task.agent_id,
    }


def running_chunk(task: BackgroundTask) -> Chunk:
    payload = {**_ids(task), "started_at": task.started_at, "args": task.args}
    return BackgroundTaskRunningChunk(run_id=task.run_id, payload=payload)


def chunk_of(update: Update) -> Chunk | None:
    """None for the updates that stay internal (`queued`, `cancel-requested`)."""
    task, kind = update.task, update.kind
    if kind == "running":
        return running_chunk(task)
    if kind == "output":
        call = {"tool_call_id": task.tool_call_id, "tool_name": task.tool_name, "output": update.output}
        inner = {"type": "tool-output", "run_id": task.run_id, "payload": call}
        return BackgroundTaskOutputChunk(run_id=task.run_id, payload={**_ids(task), "payload": inner})
    ended = {**_ids(task), "completed_at": task.completed_at}
    if kind == "completed":
        is_error = bool(task.error)
        return BackgroundTaskCompletedChunk(
            run_id=task.run_id, payload={**ended, "result": task.result, "is_error": is_error}
        )
    if kind == "failed":
        error = task.error or {"message": "the task failed"}
        return BackgroundTaskFailedChunk(
            run_id=task.run_id, payload={**ended, "error": {"message": error.get("message", "")}}
        )
    if kind == "cancelled":
        return BackgroundTaskCancelledChunk(run_id=task.run_id, payload=ended)
    return None
