"""The storage protocols: narrow, so a PostgreSQL implementation can follow the SQLite one.

Each kind of record has a store protocol of its own (threads and their messages here; background
tasks in tasks.py), and `Storage` is what an app holds: every store in one object, closed once.
Every write is committed before its method returns.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from .models import StoredMessage, Thread


@runtime_checkable
class ThreadStore(Protocol):
    """Threads and their messages: all that memory needs."""

    async def get_thread(self, thread_id: str) -> Thread | None: ...

    async def create_thread(self, thread: Thread) -> Thread:
        """Insert unless the id exists, atomically; returns the stored thread either way."""
        ...

    async def save_thread(self, thread: Thread) -> Thread:
        """Insert or update, keeping the first `created_at`; returns the stored thread."""
        ...

    async def list_threads(self, resource_id: str | None = None, *, limit: int = 50, offset: int = 0) -> list[Thread]:
        """Most recently updated first."""
        ...

    async def delete_thread(self, thread_id: str) -> bool:
        """Deletes the thread and its messages; False if there was no such thread."""
        ...

    async def add_messages(self, thread_id: str, messages: list[StoredMessage]) -> None:
        """Appends to an existing thread in order and touches its `updated_at`, in one transaction.
        A message whose id the thread already holds is skipped, so a retried save adds nothing twice."""
        ...

    async def list_messages(self, thread_id: str, *, last: int | None = None) -> list[StoredMessage]:
        """Oldest first; `last` keeps only the newest N."""
        ...

    async def set_tool_result(self, thread_id: str, tool_call_id: str, result: Any, is_error: bool) -> bool:
        """Rewrites the stored result of a tool call (the `tool-result` part with that `tool_call_id`, in the
        newest message holding one), so a background task's outcome replaces the placeholder the model saw.
        False when the thread holds no such part."""
        ...


@runtime_checkable
class Storage(ThreadStore, Protocol):
    """What a `Lodestar` app holds and closes: the stores of every kind, over one database."""

    async def close(self) -> None: ...
