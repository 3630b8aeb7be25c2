"""Background tasks: long tool calls run as durable tasks, limited, retried and observable across processes."""

from __future__ import annotations

from ..runtime.background import AgentBackgroundConfig, ToolBackgroundConfig
from ..storage.tasks import BackgroundTask, TaskPage
from .config import BackgroundTasksConfig, CleanupConfig, RetryConfig
from .dispatcher import BackgroundDispatcher, BackgroundRejected
from .manager import BackgroundTaskManager

__all__ = [
    "AgentBackgroundConfig",
    "BackgroundDispatcher",
    "BackgroundRejected",
    "BackgroundTask",
    "BackgroundTaskManager",
    "BackgroundTasksConfig",
    "CleanupConfig",
    "RetryConfig",
    "TaskPage",
    "ToolBackgroundConfig",
]
