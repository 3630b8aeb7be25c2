"""The SQLite schema as an ordered list of migrations, and opening a file at the current version.

A file's `PRAGMA user_version` is the number of migrations applied to it. Each migration commits with
its version number in one transaction, taken with BEGIN IMMEDIATE and the version read again under
that write lock, so of several processes opening one file at once exactly one applies each migration.
A file written by a newer Lodestar is refused, never downgraded. A new table or column is a new
`Migration` at the end of `MIGRATIONS`, never an edit of an old one; tests/fixtures/storage/ keeps a
database written at every earlier version, and a test opens each.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ..errors import StorageError

log = logging.getLogger(__name__)

APPLICATION_ID = 0x4C4F4453  # "LODS" in the file header: marks the file as Lodestar's
# A file from before the application id was written is recognised by holding only our tables.
UNMARKED_TABLES = frozenset({"threads", "messages", "sqlite_sequence", "background_tasks", "background_task_events"})
BUSY_TIMEOUT_MS = 5000
_OWN_PATH = "give Lodestar a database path of its own (LODESTAR_DB)"


@dataclass(frozen=True)
class Migration:
    version: int
    about: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "threads and messages",
        (
            """CREATE TABLE IF NOT EXISTS threads (
    id TEXT PRIMARY KEY,
    resource_id TEXT,
    title TEXT,
    metadata TEXT NOT NULL DEFAULT '{}',
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS threads_by_resource ON threads(resource_id, updated_at)",
            """CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL
)""",
            "CREATE INDEX IF NOT EXISTS messages_by_thread ON messages(thread_id, seq)",
        ),
    ),
    Migration(
        2,
        # Files written at version 1 hold either shape (the constraint changed without a version bump),
        # so the table is rebuilt whichever it has.
        "a message id is unique within its thread, not across threads",
        (
            """CREATE TABLE messages_v2 (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    thread_id TEXT NOT NULL REFERENCES threads(id) ON DELETE CASCADE,
    role TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at TEXT NOT NULL,
    UNIQUE (thread_id, id)
)""",
            "INSERT INTO messages_v2 (seq, id, thread_id, role, content, created_at) "
            "SELECT seq, id, thread_id, role, content, created_at FROM messages ORDER BY seq",
            "DROP TABLE messages",
            "ALTER TABLE messages_v2 RENAME TO messages",
            "CREATE INDEX messages_by_thread ON messages(thread_id, seq)",
        ),
    ),
    Migration(
        3,
        "background tasks and their event log",
        (
            # Times are REAL unix seconds (cheap to compare); JSON columns hold the task's structured fields.
            """CREATE TABLE background_tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    executor TEXT NOT NULL,
    tool_name TEXT NOT NULL,
    tool_call_id TEXT NOT NULL,
    agent_id TEXT NOT NULL,
    run_id TEXT NOT NULL,
    thread_id TEXT,
    resource_id TEXT,
    args TEXT NOT NULL,
    result TEXT,
    error TEXT,
    attempt INTEGER NOT NULL,
    retry TEXT NOT NULL,
    timeout_ms INTEGER NOT NULL,
    context TEXT NOT NULL,
    created_at REAL NOT NULL,
    run_after REAL NOT NULL,
    started_at REAL,
    completed_at REAL,
    owner TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
)""",
            "CREATE INDEX background_tasks_to_claim ON background_tasks(status, executor, seq)",
            "CREATE INDEX background_tasks_by_agent ON background_tasks(status, agent_id)",
            "CREATE INDEX background_tasks_by_lease ON background_tasks(status, lease_until)",
            "CREATE INDEX background_tasks_by_completion ON background_tasks(status, completed_at)",
            "CREATE INDEX background_tasks_by_run ON background_tasks(run_id, seq)",
            "CREATE INDEX background_tasks_by_thread ON background_tasks(thread_id, seq)",
            """CREATE TABLE background_task_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    task_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT NOT NULL,
    output TEXT,
    origin TEXT NOT NULL,
    at REAL NOT NULL
)""",
        ),
    ),
)
SCHEMA_VERSION = MIGRATIONS[-1].version


def open_database(path: str) -> sqlite3.Connection:
    """A connection to `path` at `SCHEMA_VERSION`, rows read by column name. A file that is not a
    database, is another program's or is newer than this code is refused before anything is written."""
    if path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    conn.row_factory = sqlite3.Row
    try:
        conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        _check_ours(conn, path)
        _version(conn, path)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA foreign_keys=ON")
        for migration in MIGRATIONS:
            if _version(conn, path) < migration.version:
                _apply(conn, path, migration)
    except BaseException:
        conn.close()
        raise
    return conn


def _apply(conn: sqlite3.Connection, path: str, migration: Migration) -> None:
    """Applies one migration and records it, in one transaction, unless another process got there first."""
    before = migration.version - 1
    try:
        with conn:
            conn.execute("BEGIN IMMEDIATE")
            if _version(conn, path) >= migration.version:
                return
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version={migration.version}")
            conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
    except sqlite3.Error as exc:
        raise StorageError(
            f"{path}: upgrading the database schema from version {before} to {migration.version} "
            f"({migration.about}) failed: {exc}; the file is left at version {before}"
        ) from exc
    log.info("%s: schema upgraded from version %d to %d (%s)", path, before, migration.version, migration.about)


def _version(conn: sqlite3.Connection, path: str) -> int:
    """The file's schema version; a newer one than this code knows is refused."""
    version: int = conn.execute("PRAGMA user_version").fetchone()["user_version"]
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path} was written by a newer Lodestar (schema {version} > {SCHEMA_VERSION}); "
            f"upgrade Lodestar, or {_OWN_PATH} for this version"
        )
    return version


def _check_ours(conn: sqlite3.Connection, path: str) -> None:
    """Refuses, before anything is written, a file that is not a database or is another program's:
    ours carry our application id, or (written before it was set) hold only our tables."""
    try:
        app_id: int = conn.execute("PRAGMA application_id").fetchone()["application_id"]
        tables = {row["name"] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path} is not a SQLite database ({exc}): {_OWN_PATH}") from None
    if app_id == APPLICATION_ID or (app_id == 0 and tables <= UNMARKED_TABLES):
        return
    owner = f"application id {app_id:#x}" if app_id else "tables " + ", ".join(sorted(tables - UNMARKED_TABLES))
    raise StorageError(f"{path} belongs to another program ({owner}); Lodestar will not write to it: {_OWN_PATH}")
