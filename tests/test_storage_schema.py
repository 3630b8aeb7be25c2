"""The SQLite schema over time: every earlier version opens and upgrades, a newer one is refused untouched,
a failed upgrade changes nothing, and processes opening one file at once upgrade it once."""

from __future__ import annotations

import sqlite3
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_racers

from lodestar.storage import SQLiteStorage, StoredMessage, Thread
from lodestar.storage.schema import APPLICATION_ID, MIGRATIONS, SCHEMA_VERSION

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "storage"
EARLIER = sorted(FIXTURES.glob("v*.sql"))  # v<schema version>-<commit that wrote it>.sql
T0 = datetime(2024, 1, 1, tzinfo=UTC)

# What every fixture holds, as the public API must read it back.
THREADS = [
    Thread(
        id="t1",
        resource_id="alice",
        title="Säge & docs",
        metadata={"topic": "docs", "n": [1, 2]},
        created_at=T0,
        updated_at=T0 + timedelta(minutes=20),
    ),
    Thread(id="t2", created_at=T0 + timedelta(minutes=1), updated_at=T0 + timedelta(minutes=21)),
    Thread(
        id="t3",
        resource_id="bob",
        title="empty",
        created_at=T0 + timedelta(minutes=2),
        updated_at=T0 + timedelta(minutes=2),
    ),
]
TOOL_CALL = {"type": "tool-call", "tool_call_id": "c1", "tool_name": "search", "args": {"q": "ü", "n": 2}}
MESSAGES = {
    "t1": [
        StoredMessage(
            id="m1", role="user", content=[{"type": "text", "text": "hello"}], created_at=T0 + timedelta(minutes=10)
        ),
        StoredMessage(
            id="m2",
            role="assistant",
            content=[TOOL_CALL, {"type": "text", "text": "line\nbreak"}],
            created_at=T0 + timedelta(minutes=11),
        ),
        StoredMessage(
            id="m3",
            role="tool",
            content=[{"type": "tool-result", "tool_call_id": "c1", "result": None}],
            created_at=T0 + timedelta(minutes=13),
        ),
    ],
    "t2": [
        StoredMessage(
            id="k1", role="user", content=[{"type": "text", "text": "other"}], created_at=T0 + timedelta(minutes=12)
        )
    ],
    "t3": [],
}


def version_of(fixture: Path) -> int:
    return int(fixture.name[1:].split("-")[0])


def build(fixture: Path, path: Path) -> Path:
    with closing(sqlite3.connect(path)) as raw:
        raw.executescript(fixture.read_text("utf-8"))
    return path


def header(path: Path) -> tuple[int, int]:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("PRAGMA user_version").fetchone()[0], raw.execute("PRAGMA application_id").fetchone()[0]


def schema(path: Path) -> list[tuple[str, str, str]]:
    with closing(sqlite3.connect(path)) as raw:
        return raw.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()


def test_migrations_are_numbered_one_by_one() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
    assert MIGRATIONS[-1].version == SCHEMA_VERSION


def test_a_database_from_every_earlier_version_is_kept() -> None:
    """Adding a migration means adding a fixture written by the version before it."""
    assert {version_of(f) for f in EARLIER} == set(range(1, SCHEMA_VERSION))


@pytest.mark.parametrize("fixture", EARLIER, ids=[f.stem for f in EARLIER])
async def test_a_database_written_by_an_earlier_version_opens_and_upgrades(tmp_path: Path, fixture: Path) -> None:
    path = build(fixture, tmp_path / "old.db")
    assert header(path)[0] == version_of(fixture)
    store = SQLiteStorage(path)

    assert await store.list_threads() == sorted(THREADS, key=lambda t: t.updated_at, reverse=True)
    for thread in THREADS:
        assert await store.get_thread(thread.id) == thread
        assert await store.list_messages(thread.id) == MESSAGES[thread.id]
    assert [t.id for t in await store.list_threads("alice")] == ["t1"]

    # Writes work at once: a message id another thread already uses (the first shape of version 1 refused
    # it), and new messages come after the old ones.
    reply = StoredMessage(id="m1", role="assistant", content=[{"type": "text", "text": "again"}])
    await store.add_messages("t2", [reply])
    await store.add_messages("t1", [StoredMessage(id="m4", role="user", content=[])])
    assert [m.id for m in await store.list_messages("t2")] == ["k1", "m1"]
    assert [m.id for m in await store.list_messages("t1")] == ["m1", "m2", "m3", "m4"]
    await store.close()

    assert header(path) == (SCHEMA_VERSION, APPLICATION_ID)
    fresh = SQLiteStorage(tmp_path / "fresh.db")
    await fresh.list_threads()
    await fresh.close()
    assert schema(path) == schema(tmp_path / "fresh.db")  # upgraded and fresh files have one shape
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        assert raw.execute("PRAGMA foreign_key_check").fetchall() == []


async def test_a_column_added_later_breaks_no_query(tmp_path: Path) -> None:
    """Rows are read by column name and written with named columns, so a later migration may add columns."""
    path = tmp_path / "lodestar.db"
    store = SQLiteStorage(path)
    await store.list_threads()
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("ALTER TABLE threads ADD COLUMN archived INTEGER NOT NULL DEFAULT 0")
        raw.execute("ALTER TABLE messages ADD COLUMN tokens INTEGER")
        raw.commit()
    await store.close()

    thread = THREADS[0]
    assert await store.create_thread(thread) == thread
    assert await store.save_thread(thread) == thread
    assert await store.list_threads() == [thread]
    await store.add_messages("t1", MESSAGES["t1"])
    assert await store.list_messages("t1") == MESSAGES["t1"]
    assert await store.list_messages("t1", last=1) == MESSAGES["t1"][-1:]
    await store.close()


async def test_opening_an_up_to_date_file_takes_no_write_lock(tmp_path: Path) -> None:
    """Several processes share the file: opening it must not wait for, or block, another's write."""
    path = tmp_path / "lodestar.db"
    first = SQLiteStorage(path)
    await first.save_thread(THREADS[0])
    with closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("BEGIN IMMEDIATE")  # another process mid-write holds the write lock
        second = SQLiteStorage(path)
        assert await second.list_threads() == [THREADS[0]]
        writer.execute("ROLLBACK")
    await second.close()
    await first.close()


@pytest.mark.parametrize("newer", [SCHEMA_VERSION + 1, 99])
async def test_a_database_from_a_newer_version_is_refused_untouched(tmp_path: Path, newer: int) -> None:
    path = tmp_path / "future.db"
    store = SQLiteStorage(path)
    await store.save_thread(THREADS[0])
    await store.close()
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("CREATE TABLE tasks (id TEXT PRIMARY KEY)")  # what a newer version might add
        raw.execute(f"PRAGMA user_version={newer}")
        raw.commit()
    before = path.read_bytes()

    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError) as info:
        await store.list_threads()
    assert str(info.value) == (
        f"{path} was written by a newer Lodestar (schema {newer} > {SCHEMA_VERSION}); upgrade Lodestar, "
        "or give Lodestar a database path of its own (LODESTAR_DB) for this version"
    )
    with pytest.raises(RuntimeError, match="newer Lodestar"):  # it stays refused, no half-open connection
        await store.get_thread("t1")
    await store.close()
    assert path.read_bytes() == before
    assert header(path)[0] == newer


async def test_an_empty_file_with_a_newer_version_gets_no_tables(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("PRAGMA user_version=99")
    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="newer Lodestar"):
        await store.list_threads()
    await store.close()
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT name FROM sqlite_master").fetchall() == []


async def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    # A message whose thread is gone (as a tool run with foreign keys off could leave) stops the rebuild of
    # the messages table at version 2; the transaction rolls back whole.
    path = build(FIXTURES / "v1-a00b755.sql", tmp_path / "old.db")
    with closing(sqlite3.connect(path)) as raw:
        raw.execute("DELETE FROM threads WHERE id = 't2'")
        raw.commit()
    before = schema(path)

    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError) as info:
        await store.list_threads()
    assert str(info.value) == (
        f"{path}: upgrading the database schema from version 1 to 2 ({MIGRATIONS[1].about}) failed: "
        "FOREIGN KEY constraint failed; the file is left at version 1"
    )
    await store.close()
    assert header(path) == (1, 0)
    assert schema(path) == before
    with closing(sqlite3.connect(path)) as raw:
        assert raw.execute("SELECT count(*) FROM messages").fetchone()[0] == 4


RACER = """
import logging, os, sys
import anyio
from lodestar.storage import SQLiteStorage, Thread

logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(name)s %(message)s")
print("ready", flush=True)
sys.stdin.readline()


async def main() -> None:
    store = SQLiteStorage(sys.argv[1])
    await store.save_thread(Thread(id=f"racer-{os.getpid()}"))
    await store.close()


anyio.run(main)
"""


@pytest.mark.parametrize("start", [None, FIXTURES / "v1-a00b755.sql"], ids=["fresh", "v1"])
async def test_processes_opening_one_file_at_once_migrate_it_once(tmp_path: Path, start: Path | None) -> None:
    path = tmp_path / "shared.db"
    if start is not None:
        build(start, path)
    first = header(path)[0]
    results = run_racers(tmp_path, RACER, [str(path)], count=3)

    assert [code for code, _, _ in results] == [0, 0, 0], [err for _, _, err in results]
    logs = "".join(err for _, _, err in results)
    for migration in MIGRATIONS[first:]:
        upgrade = f"from version {migration.version - 1} to {migration.version} ({migration.about})"
        assert logs.count(upgrade) == 1, logs
    assert "lodestar.storage.schema" in logs
    assert header(path) == (SCHEMA_VERSION, APPLICATION_ID)
    store = SQLiteStorage(path)
    racers = [t for t in await store.list_threads() if t.id.startswith("racer-")]
    assert len(racers) == 3
    await store.close()
