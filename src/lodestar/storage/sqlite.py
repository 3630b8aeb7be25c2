"""SQLite storage: the embedded default. One connection, WAL, every write committed before it returns.

Rows are read by column name and written with named columns, so a migration that adds a column breaks
no query (schema.py holds the migrations).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio
from pydantic_core import to_jsonable_python

from .._loops import PerLoop
from .models import StoredMessage, Thread, utcnow
from .schema import open_database
from .sqlite_tasks import SQLiteTaskStore

T = TypeVar("T")
_INSERT_THREAD = (
    "INSERT INTO threads (id, resource_id, title, metadata, created_at, updated_at) "
    "VALUES (:id, :resource_id, :title, :metadata, :created_at, :updated_at)"
)


class SQLiteStorage:
    """A `Storage` in one SQLite file (`:memory:` for a throwaway store): threads and their messages.

    The file is opened on first use, so building an app does no I/O. Calls run in a worker thread
    to keep fsyncs off the event loop, one at a time on the single connection, under a thread budget
    of their own so busy tools cannot starve them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._threads = PerLoop(lambda: anyio.CapacityLimiter(1))
        self._tasks: SQLiteTaskStore | None = None

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r})"

    @property
    def tasks(self) -> SQLiteTaskStore:
        """The background task store on the same file, with a connection and worker thread of its own."""
        if self._tasks is None:
            self._tasks = SQLiteTaskStore(self.path)
        return self._tasks

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._conn is None:
                    self._conn = open_database(self.path)
                return work(self._conn)

        return await anyio.to_thread.run_sync(locked, limiter=self._threads.get_current())

    async def get_thread(self, thread_id: str) -> Thread | None:
        row = await self._run(lambda c: _select_thread(c, thread_id))
        return _thread(row) if row is not None else None

    async def create_thread(self, thread: Thread) -> Thread:
        """Insert unless the id exists; either way return the stored thread, so two creators agree on its owner."""

        def create(conn: sqlite3.Connection) -> Any:
            conn.execute(f"{_INSERT_THREAD} ON CONFLICT(id) DO NOTHING", _thread_params(thread))
            return _select_thread(conn, thread.id)

        return _thread(await self._run(create))

    async def save_thread(self, thread: Thread) -> Thread:
        sql = (
            f"{_INSERT_THREAD} ON CONFLICT(id) DO UPDATE SET resource_id = excluded.resource_id, "
            "title = excluded.title, metadata = excluded.metadata, updated_at = excluded.updated_at"
        )

        def save(conn: sqlite3.Connection) -> Any:
            conn.execute(sql, _thread_params(thread))
            return _select_thread(conn, thread.id)

        return _thread(await self._run(save))

    async def list_threads(self, resource_id: str | None = None, *, limit: int = 50, offset: int = 0) -> list[Thread]:
        where, params = ("WHERE resource_id = ?", [resource_id]) if resource_id is not None else ("", [])
        sql = f"SELECT * FROM threads {where} ORDER BY updated_at DESC, id LIMIT ? OFFSET ?"
        rows = await self._run(lambda c: c.execute(sql, (*params, limit, offset)).fetchall())
        return [_thread(row) for row in rows]

    async def delete_thread(self, thread_id: str) -> bool:
        cursor = await self._run(lambda c: c.execute("DELETE FROM threads WHERE id = ?", (thread_id,)))
        return cursor.rowcount > 0

    async def add_messages(self, thread_id: str, messages: list[StoredMessage]) -> None:
        rows = [
            {
                "id": m.id,
                "thread_id": thread_id,
                "role": m.role,
                "content": json.dumps(m.content),
                "created_at": m.created_at.isoformat(),
            }
            for m in messages
        ]
        now = utcnow().isoformat()

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO messages (id, thread_id, role, content, created_at) "
                    "VALUES (:id, :thread_id, :role, :content, :created_at) ON CONFLICT(thread_id, id) DO NOTHING",
                    rows,
                )
                conn.execute("UPDATE threads SET updated_at = ? WHERE id = ?", (now, thread_id))

        await self._run(write)

    async def list_messages(self, thread_id: str, *, last: int | None = None) -> list[StoredMessage]:
        params: tuple[object, ...]
        if last is None:
            sql, params = "SELECT * FROM messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
        else:
            sql = "SELECT * FROM (SELECT * FROM messages WHERE thread_id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params = (thread_id, max(0, last))
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [_message(row) for row in rows]

    async def set_tool_result(self, thread_id: str, tool_call_id: str, result: Any, is_error: bool) -> bool:
        stored = to_jsonable_python(result)
        sql = (
            "SELECT m.seq, m.content FROM messages AS m, json_each(m.content) AS part "
            "WHERE m.thread_id = ? AND json_extract(part.value, '$.type') = 'tool-result' "
            "AND json_extract(part.value, '$.tool_call_id') = ? ORDER BY m.seq DESC LIMIT 1"
        )

        def rewrite(conn: sqlite3.Connection) -> bool:
            with conn:
                conn.execute("BEGIN IMMEDIATE")
                row = conn.execute(sql, (thread_id, tool_call_id)).fetchone()
                if row is None:
                    return False
                content = json.loads(row["content"])
                for part in content:
                    if part.get("type") == "tool-result" and part.get("tool_call_id") == tool_call_id:
                        part.update(result=stored, is_error=is_error)
                conn.execute("UPDATE messages SET content = ? WHERE seq = ?", (json.dumps(content), row["seq"]))
                return True

        return await self._run(rewrite)

    async def close(self) -> None:
        if self._tasks is not None:
            tasks, self._tasks = self._tasks, None
            await tasks.close()
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _select_thread(conn: sqlite3.Connection, thread_id: str) -> Any:
    return conn.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone()


def _thread_params(thread: Thread) -> dict[str, Any]:
    return {
        "id": thread.id,
        "resource_id": thread.resource_id,
        "title": thread.title,
        "metadata": json.dumps(thread.metadata),
        "created_at": thread.created_at.isoformat(),
        "updated_at": thread.updated_at.isoformat(),
    }


def _thread(row: sqlite3.Row) -> Thread:
    return Thread(
        id=row["id"],
        resource_id=row["resource_id"],
        title=row["title"],
        metadata=json.loads(row["metadata"]),
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _message(row: sqlite3.Row) -> StoredMessage:
    return StoredMessage(
        id=row["id"], role=row["role"], content=json.loads(row["content"]), created_at=row["created_at"]
    )
