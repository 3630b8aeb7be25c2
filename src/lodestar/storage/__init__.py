"""Where threads, messages and background tasks live."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from ..errors import StorageError
from .base import Storage, ThreadStore
from .models import StoredMessage, Thread
from .sqlite import SQLiteStorage
from .sqlite_tasks import SQLiteTaskStore
from .tasks import BackgroundTask, RetryPolicy, TaskEvent, TaskFilter, TaskPage, TaskStore

__all__ = [
    "BackgroundTask",
    "RetryPolicy",
    "SQLiteStorage",
    "SQLiteTaskStore",
    "Storage",
    "StorageError",
    "StoredMessage",
    "TaskEvent",
    "TaskFilter",
    "TaskPage",
    "TaskStore",
    "Thread",
    "ThreadStore",
    "default_db_path",
]


def default_db_path() -> Path:
    """`LODESTAR_DB`, else the user's state directory."""
    if os.environ.get("LODESTAR_DB"):
        return Path(os.environ["LODESTAR_DB"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    else:
        base = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
    return base / "lodestar" / "lodestar.db"
