"""SQLite storage: the embedded default. One connection, WAL, every write committed before it returns."""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from .._loops import PerLoop
from .models import StoredMessage, Thread, utcnow

T = TypeVar("T")
SCHEMA_VERSION = 1
APPLICATION_ID = 0x4C4F4453  # "LODS" in the file header: marks the file as Lodestar's
TABLES = frozenset({"threads", "messages", "sqlite_sequence"})
_OWN_PATH = "give Lodestar a database path of its own (LODESTAR_DB)"
SCHEMA = """
CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY,
    resource_id TEXT,
    title TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threads_by_resource ON threads(resource_id, updated_at);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (thread_id, id)
);
CREATE INDEX IF NOT EXISTS messages_by_thread ON messages(thread_id, seq);
"""


class SQLiteStorage:
    """Threads and messages in one SQLite file (`:memory:` for a throwaway store).

    The file is opened on first use, so building an app does no I/O. Calls run in a worker thread
    to keep fsyncs off the event loop, one at a time on the single connection, under a thread budget
    of their own so busy tools cannot starve them.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._conn: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._threads = PerLoop(lambda: anyio.CapacityLimiter(1))

    def __repr__(self) -> str:
        return f"SQLiteStorage({self.path!r})"

    def _connect(self) -> sqlite3.Connection:
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=5000")
        try:
            _check_ours(conn, self.path)
        except BaseException:
            conn.close()
            raise
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            conn.close()
            raise RuntimeError(
                f"{self.path} was written by a newer Lodestar (schema {version} > {SCHEMA_VERSION}); upgrade Lodestar"
            )
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.executescript(
            f"BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version={SCHEMA_VERSION}; "
            f"PRAGMA application_id={APPLICATION_ID}; COMMIT;"
        )
        return conn

    async def _run(self, work: Callable[[sqlite3.Connection], T]) -> T:
        def locked() -> T:
            with self._lock:
                if self._conn is None:
                    self._conn = self._connect()
                return work(self._conn)

        return await anyio.to_thread.run_sync(locked, limiter=self._threads.get_current())

    async def get_thread(self, thread_id: str) -> Thread | None:
        row = await self._run(lambda c: c.execute("SELECT * FROM threads WHERE id = ?", (thread_id,)).fetchone())
        return _thread(row) if row else None

    async def create_thread(self, thread: Thread) -> Thread:
        """Insert unless the id exists; either way return the stored thread, so two creators agree on its owner."""

        def create(conn: sqlite3.Connection) -> tuple[Any, ...]:
            conn.execute("INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO NOTHING", _row(thread))
            return conn.execute("SELECT * FROM threads WHERE id = ?", (thread.id,)).fetchone()

        return _thread(await self._run(create))

    async def save_thread(self, thread: Thread) -> Thread:
        sql = (
            "INSERT INTO threads VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(id) DO UPDATE SET "
            "resource_id = excluded.resource_id, title = excluded.title, metadata = excluded.metadata, "
            "updated_at = excluded.updated_at"
        )

        def save(conn: sqlite3.Connection) -> tuple[Any, ...]:
            conn.execute(sql, _row(thread))
            return conn.execute("SELECT * FROM threads WHERE id = ?", (thread.id,)).fetchone()

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
        rows = [(m.id, thread_id, m.role, json.dumps(m.content), m.created_at.isoformat()) for m in messages]
        now = utcnow().isoformat()

        def write(conn: sqlite3.Connection) -> None:
            with conn:
                conn.execute("BEGIN")
                conn.executemany(
                    "INSERT INTO messages (id, thread_id, role, content, created_at) VALUES (?, ?, ?, ?, ?) "
                    "ON CONFLICT(thread_id, id) DO NOTHING",
                    rows,
                )
                conn.execute("UPDATE threads SET updated_at = ? WHERE id = ?", (now, thread_id))

        await self._run(write)

    async def list_messages(self, thread_id: str, *, last: int | None = None) -> list[StoredMessage]:
        if last is None:
            sql, params = "SELECT * FROM messages WHERE thread_id = ? ORDER BY seq", (thread_id,)
        else:
            sql = "SELECT * FROM (SELECT * FROM messages WHERE thread_id = ? ORDER BY seq DESC LIMIT ?) ORDER BY seq"
            params = (thread_id, max(0, last))
        rows = await self._run(lambda c: c.execute(sql, params).fetchall())
        return [_message(row) for row in rows]

    async def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _check_ours(conn: sqlite3.Connection, path: str) -> None:
    """Refuses, before anything is written, a file that is not a database or is another program's:
    ours carry our application id, or (written before it was set) hold only our tables."""
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise RuntimeError(f"{path} is not a SQLite database ({exc}): {_OWN_PATH}") from None
    if app_id == APPLICATION_ID or (app_id == 0 and tables <= TABLES):
        return
    owner = f"application id {app_id:#x}" if app_id else "tables " + ", ".join(sorted(tables - TABLES))
    raise RuntimeError(f"{path} belongs to another program ({owner}); Lodestar will not write to it: {_OWN_PATH}")


def _row(thread: Thread) -> tuple[Any, ...]:
    return (
        thread.id,
        thread.resource_id,
        thread.title,
        json.dumps(thread.metadata),
        thread.created_at.isoformat(),
        thread.updated_at.isoformat(),
    )


def _thread(row: tuple[Any, ...]) -> Thread:
    id_, resource_id, title, metadata, created_at, updated_at = row
    return Thread(
        id=id_,
        resource_id=resource_id,
        title=title,
        metadata=json.loads(metadata),
        created_at=created_at,
        updated_at=updated_at,
    )


def _message(row: tuple[Any, ...]) -> StoredMessage:
    _, id_, _, role, content, created_at = row
    return StoredMessage(id=id_, role=role, content=json.loads(content), created_at=created_at)
