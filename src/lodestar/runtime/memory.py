"""Memory: threads of messages kept in storage, loaded before a run and extended after it."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidValueError, UsageError
from ..storage import Thread, ThreadStore
from .messages import Message, from_stored, new_id, to_stored


class ThreadError(UsageError, ValueError):
    """A thread or memory cannot be used as asked: a thread of another resource, an empty thread id, a memory
    without storage. Raised before the model is called; pass the right thread, resource or storage."""


ThreadArg = str | Mapping[str, Any] | None


class Memory:
    """Conversation memory over a `ThreadStore`.

    `last_messages` is how many earlier messages of a thread a run sees. Without a storage of its own,
    a memory uses its app's storage once the agent joins a `Lodestar` app.
    """

    def __init__(self, storage: ThreadStore | None = None, *, last_messages: int = 20) -> None:
        if last_messages < 0:
            raise InvalidValueError(f"last_messages must be 0 or more, got {last_messages}")
        self._storage = storage
        self.last_messages = last_messages

    def bind(self, storage: ThreadStore) -> None:
        """Give a storage-less memory the app's storage."""
        if self._storage is None:
            self._storage = storage

    @property
    def storage(self) -> ThreadStore:
        if self._storage is None:
            raise ThreadError("this memory has no storage: pass Memory(SQLiteStorage(path)) or add the agent to an app")
        return self._storage

    async def open_thread(self, thread: ThreadArg, resource_id: str | None, first_text: str = "") -> Thread:
        """The thread a run continues, created on first use; refuses a thread owned by another resource."""
        fields: dict[str, Any] = {"id": thread} if isinstance(thread, str) else dict(thread or {})
        thread_id = fields["id"] if "id" in fields else new_id("thread")
        if not isinstance(thread_id, str) or not thread_id.strip():
            raise ThreadError(f"thread id must be a non-empty string, got {thread_id!r}")
        stored = await self.storage.get_thread(thread_id)
        if stored is None:
            title = fields.get("title") or _title(first_text)
            metadata = dict(fields.get("metadata", {}))
            new = Thread(id=thread_id, resource_id=resource_id, title=title, metadata=metadata)
            stored = await self.storage.create_thread(new)  # another run may have created it meanwhile
        if resource_id is not None and stored.resource_id not in (None, resource_id):
            raise ThreadError(
                f"thread {thread_id!r} belongs to resource {stored.resource_id!r}, not {resource_id!r}: "
                f"pass resource {stored.resource_id!r} to continue it, or use another thread id"
            )
        return stored

    async def history(self, thread_id: str, last: int | None = None) -> list[Message]:
        count = self.last_messages if last is None else last
        if count == 0:
            return []
        messages = [from_stored(m) for m in await self.storage.list_messages(thread_id, last=count)]
        if len(messages) == count and not any(m.role == "user" for m in messages):
            # one long tool loop filled the window: reach back to that turn's user message
            messages = [from_stored(m) for m in await self.storage.list_messages(thread_id)]
            last_user = max((i for i, m in enumerate(messages) if m.role == "user"), default=len(messages))
            return messages[last_user:]
        return _from_first_user_turn(messages)

    async def save(self, thread_id: str, messages: list[Message]) -> None:
        if messages:
            await self.storage.add_messages(thread_id, [to_stored(m) for m in messages])

    async def set_tool_result(self, thread_id: str, tool_call_id: str, result: Any, is_error: bool) -> bool:
        """Replace a stored call's result (a background task's outcome replacing its "started" answer); False
        when the thread holds no result for that call yet."""
        return await self.storage.set_tool_result(thread_id, tool_call_id, result, is_error)

    async def get_thread(self, thread_id: str) -> Thread | None:
        return await self.storage.get_thread(thread_id)

    async def list_threads(self, resource_id: str | None = None, *, limit: int = 50, offset: int = 0) -> list[Thread]:
        return await self.storage.list_threads(resource_id, limit=limit, offset=offset)

    async def messages(self, thread_id: str, *, last: int | None = None) -> list[Message]:
        return [from_stored(m) for m in await self.storage.list_messages(thread_id, last=last)]

    async def delete_thread(self, thread_id: str) -> bool:
        return await self.storage.delete_thread(thread_id)


def _title(text: str) -> str | None:
    line = " ".join(text.split())
    return (line[:77] + "...") if len(line) > 80 else (line or None)


def _from_first_user_turn(messages: list[Message]) -> list[Message]:
    """A window cut mid-turn would start with a tool result or an answer to nothing; providers refuse those."""
    start = next((i for i, m in enumerate(messages) if m.role == "user"), len(messages))
    return messages[start:]
