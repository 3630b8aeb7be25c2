"""`BackgroundTasksConfig`: the manager's settings (Mastra's `backgroundTasks` on the Mastra instance)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field

from ..errors import InvalidTypeError
from ..runtime.background import SETTINGS, TaskCallback, checked
from ..storage.tasks import RetryPolicy

Backpressure = Literal["queue", "reject", "fallback-sync"]


class RetryConfig(RetryPolicy):
    """The default retry policy; `retryable_errors` decides per exception (default: retry every error)."""

    model_config = SETTINGS

    retryable_errors: Callable[[BaseException], bool] | None = None

    def policy(self) -> RetryPolicy:
        """The part that is stored with each task."""
        return RetryPolicy.model_validate(self.model_dump(include=set(RetryPolicy.model_fields)))


class CleanupConfig(BaseModel):
    model_config = SETTINGS

    completed_ttl_ms: int = Field(3_600_000, ge=0, description="keep completed and cancelled tasks this long")
    failed_ttl_ms: int = Field(86_400_000, ge=0, description="keep failed and timed-out tasks this long")
    cleanup_interval_ms: int = Field(60_000, gt=0, description="how often old records are deleted")


class BackgroundTasksConfig(BaseModel):
    """What `Lodestar(background_tasks=...)` takes. `lease_ms` and `poll_interval_ms` are Lodestar's own: how long a
    process may go silent before another takes its running tasks over, and how often a process looks for what
    other processes on the same database did."""

    model_config = SETTINGS

    enabled: bool = False
    global_concurrency: int = Field(10, ge=1, le=10_000)
    per_agent_concurrency: int = Field(5, ge=1, le=10_000)
    backpressure: Backpressure = "queue"
    default_timeout_ms: int = Field(300_000, gt=0)
    default_retries: RetryConfig = Field(default_factory=RetryConfig)
    cleanup: CleanupConfig = Field(default_factory=CleanupConfig)
    wait_timeout_ms: int | None = Field(None, ge=0)
    on_task_complete: TaskCallback | None = None
    on_task_failed: TaskCallback | None = None
    lease_ms: int = Field(30_000, ge=100, description="a running task's lease; its process renews it")
    poll_interval_ms: int = Field(25, ge=1, le=10_000, description="how often other processes' changes are read")


def background_tasks_config(value: BackgroundTasksConfig | Mapping[str, Any] | bool | None) -> BackgroundTasksConfig:
    """`True` enables the defaults; a mapping is checked field by field, so a bad setting fails at start."""
    if value is None or value is False:
        return BackgroundTasksConfig()
    if value is True:
        return BackgroundTasksConfig(enabled=True)
    if isinstance(value, BackgroundTasksConfig):
        return value
    if not isinstance(value, Mapping):
        raise InvalidTypeError(f"background_tasks must be a dict, a BackgroundTasksConfig or a bool, got {value!r}")
    return checked(BackgroundTasksConfig, value, "invalid background_tasks config")
