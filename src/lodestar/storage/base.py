"""The storage protocol: narrow, so a PostgreSQL implementation can follow the SQLite one."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from .models import StoredMessage, Thread


@runtime_checkable
class Storage(Protocol):
    async def get_thread(self, thread_id: str) -> Thread | None: ...

    async def create_thread(self, thread: Thread) -> Thread:
        """Insert unless the id exists, atomically; returns the stored thread either way."""
        ...

    async def save_thread(self, thread: Thread) -> Thread:
        """Insert or update; returns the stored thread."""
        ...

    async def list_threads(self, resource_id: str | None = None, *, limit: int = 50, offset: int = 0) -> list[Thread]:
        """Most recently updated first."""
        ...

    async def delete_thread(self, thread_id: str) -> bool:
        """Deletes the thread and its messages; False if there was no such thread."""
        ...

    async def add_messages(self, thread_id: str, messages: list[StoredMessage]) -> None:
        """Appends in order and touches the thread's `updated_at`, in one transaction."""
        ...

    async def list_messages(self, thread_id: str, *, last: int | None = None) -> list[StoredMessage]:
        """Oldest first; `last` keeps only the newest N."""
        ...

    async def close(self) -> None: ...
