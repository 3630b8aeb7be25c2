"""SQLiteStorage: threads and messages in a real SQLite file."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from lodestar.storage import SQLiteStorage, Storage, StoredMessage, Thread, ThreadStore, default_db_path
from lodestar.storage.schema import SCHEMA_VERSION

pytestmark = pytest.mark.anyio

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
async def storage(tmp_path: Path):
    store = SQLiteStorage(tmp_path / "lodestar.db")
    yield store
    await store.close()


def thread(id_: str, resource: str | None = "alice", minutes: int = 0, **fields: object) -> Thread:
    at = T0 + timedelta(minutes=minutes)
    return Thread(id=id_, resource_id=resource, created_at=at, updated_at=at, **fields)


def message(id_: str, role: str = "user", text: str | None = None) -> StoredMessage:
    return StoredMessage(id=id_, role=role, content=[{"type": "text", "text": text or id_}])


def ids(items: list[Thread] | list[StoredMessage]) -> list[str]:
    return [item.id for item in items]


async def test_is_a_storage(storage: SQLiteStorage) -> None:
    assert isinstance(storage, Storage) and isinstance(storage, ThreadStore)
    assert "lodestar.db" in repr(storage)


async def test_thread_round_trip(storage: SQLiteStorage) -> None:
    saved = thread("t1", title="Hello", metadata={"topic": "docs", "n": [1, 2]})
    assert await storage.save_thread(saved) == saved
    loaded = await storage.get_thread("t1")
    assert loaded == saved
    assert loaded is not None and loaded.created_at.tzinfo is not None
    assert await storage.get_thread("missing") is None


async def test_save_thread_updates_in_place(storage: SQLiteStorage) -> None:
    await storage.save_thread(thread("t1", title="old", minutes=0))
    updated = thread("t1", title="new", minutes=5, metadata={"k": "v"})
    updated.created_at = T0 + timedelta(days=9)  # created_at is kept from the first save
    await storage.save_thread(updated)
    loaded = await storage.get_thread("t1")
    assert loaded is not None
    assert loaded.title == "new"
    assert loaded.metadata == {"k": "v"}
    assert loaded.updated_at == T0 + timedelta(minutes=5)
    assert loaded.created_at == T0
    assert len(await storage.list_threads()) == 1


async def test_list_threads_by_resource_most_recent_first_with_paging(storage: SQLiteStorage) -> None:
    for minutes, id_ in [(1, "a1"), (3, "a3"), (2, "a2"), (4, "a4")]:
        await storage.save_thread(thread(id_, "alice", minutes))
    await storage.save_thread(thread("b1", "bob", 10))
    await storage.save_thread(thread("n1", None, 11))

    assert ids(await storage.list_threads("alice")) == ["a4", "a3", "a2", "a1"]
    assert ids(await storage.list_threads("bob")) == ["b1"]
    assert ids(await storage.list_threads("nobody")) == []
    assert ids(await storage.list_threads()) == ["n1", "b1", "a4", "a3", "a2", "a1"]
    assert ids(await storage.list_threads("alice", limit=2)) == ["a4", "a3"]
    assert ids(await storage.list_threads("alice", limit=2, offset=2)) == ["a2", "a1"]
    assert ids(await storage.list_threads("alice", limit=2, offset=4)) == []


async def test_messages_keep_order_and_last_n(storage: SQLiteStorage) -> None:
    await storage.save_thread(thread("t1"))
    await storage.add_messages("t1", [message("m1"), message("m2", "assistant")])
    await storage.add_messages("t1", [message("m3"), message("m4", "assistant"), message("m5")])

    listed = await storage.list_messages("t1")
    assert ids(listed) == ["m1", "m2", "m3", "m4", "m5"]
    assert [m.role for m in listed] == ["user", "assistant", "user", "assistant", "user"]
    assert listed[1].content == [{"type": "text", "text": "m2"}]
    assert ids(await storage.list_messages("t1", last=2)) == ["m4", "m5"]
    assert ids(await storage.list_messages("t1", last=99)) == ["m1", "m2", "m3", "m4", "m5"]
    assert await storage.list_messages("t1", last=0) == []
    assert await storage.list_messages("other") == []


async def test_message_round_trip_keeps_content_and_time(storage: SQLiteStorage) -> None:
    await storage.save_thread(thread("t1"))
    content = [
        {"type": "tool-call", "tool_call_id": "c1", "tool_name": "search", "args": {"q": "ü", "n": 2}},
        {"type": "text", "text": "line\nbreak"},
    ]
    original = StoredMessage(id="m1", role="assistant", content=content, created_at=T0)
    await storage.add_messages("t1", [original])
    assert await storage.list_messages("t1") == [original]


async def test_duplicate_message_ids_ignored(storage: SQLiteStorage) -> None:
    await storage.save_thread(thread("t1"))
    await storage.add_messages("t1", [message("m1", text="first"), message("m2")])
    await storage.add_messages("t1", [message("m1", text="second"), message("m3")])
    listed = await storage.list_messages("t1")
    assert ids(listed) == ["m1", "m2", "m3"]
    assert listed[0].content == [{"type": "text", "text": "first"}]


async def test_add_messages_bumps_updated_at_and_reorders_threads(storage: SQLiteStorage) -> None:
    await storage.save_thread(thread("old", minutes=0))
    await storage.save_thread(thread("new", minutes=1))
    assert ids(await storage.list_threads("alice")) == ["new", "old"]

    before = datetime.now(UTC)
    await storage.add_messages("old", [message("m1")])
    loaded = await storage.get_thread("old")
    assert loaded is not None
    assert loaded.updated_at >= before
    assert loaded.created_at == T0
    assert ids(await storage.list_threads("alice")) == ["old", "new"]


async def test_messages_need_an_existing_thread(storage: SQLiteStorage) -> None:
    with pytest.raises(sqlite3.IntegrityError):
        await storage.add_messages("ghost", [message("m1")])
    assert await storage.list_messages("ghost") == []


async def test_delete_thread_cascades_to_messages(storage: SQLiteStorage, tmp_path: Path) -> None:
    await storage.save_thread(thread("t1"))
    await storage.save_thread(thread("t2"))
    await storage.add_messages("t1", [message("m1"), message("m2")])
    await storage.add_messages("t2", [message("k1")])

    assert await storage.delete_thread("t1") is True
    assert await storage.delete_thread("t1") is False
    assert await storage.get_thread("t1") is None
    assert await storage.list_messages("t1") == []
    assert ids(await storage.list_messages("t2")) == ["k1"]
    with sqlite3.connect(tmp_path / "lodestar.db") as raw:
        rows = raw.execute("SELECT id FROM messages ORDER BY seq").fetchall()
    assert rows == [("k1",)]
    # a deleted message id can be used again
    await storage.add_messages("t2", [message("m1")])
    assert ids(await storage.list_messages("t2")) == ["k1", "m1"]


async def test_file_created_lazily(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "lodestar.db"
    store = SQLiteStorage(path)
    assert not path.parent.exists()
    assert await store.get_thread("x") is None
    assert path.exists()
    await store.close()


async def test_wal_mode_and_schema_version(tmp_path: Path) -> None:
    path = tmp_path / "lodestar.db"
    store = SQLiteStorage(path)
    await store.save_thread(thread("t1"))
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert raw.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    await store.close()


async def test_data_survives_close_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "lodestar.db"
    first = SQLiteStorage(path)
    await first.save_thread(thread("t1", title="kept"))
    await first.add_messages("t1", [message("m1"), message("m2")])
    await first.close()
    await first.close()  # closing twice is harmless

    second = SQLiteStorage(path)
    loaded = await second.get_thread("t1")
    assert loaded is not None and loaded.title == "kept"
    assert ids(await second.list_messages("t1")) == ["m1", "m2"]
    await second.close()
    # a closed storage reopens on its next use
    assert ids(await first.list_messages("t1")) == ["m1", "m2"]
    await first.close()


async def test_in_memory_storage() -> None:
    store = SQLiteStorage(":memory:")
    await store.save_thread(thread("t1"))
    await store.add_messages("t1", [message("m1")])
    assert ids(await store.list_messages("t1")) == ["m1"]
    await store.close()


async def test_concurrent_add_messages_all_land(tmp_path: Path) -> None:
    path = tmp_path / "lodestar.db"
    # Several connections to one file, as several processes would have; all but the first open
    # while the others write, which is when a schema set-up that is not BEGIN IMMEDIATE fails.
    stores = [SQLiteStorage(path) for _ in range(6)]
    await stores[0].save_thread(thread("t1"))

    async def writer(n: int) -> None:
        store = stores[n % len(stores)]
        await store.add_messages("t1", [message(f"m{n}-a"), message(f"m{n}-b", "assistant")])

    with anyio.fail_after(20):
        async with anyio.create_task_group() as group:
            for n in range(60):
                group.start_soon(writer, n)

    listed = ids(await stores[0].list_messages("t1"))
    assert len(listed) == 120
    assert set(listed) == {f"m{n}-{x}" for n in range(60) for x in "ab"}
    for index in range(0, 120, 2):  # each call's messages land together, in order
        first, second = listed[index], listed[index + 1]
        assert first.endswith("-a") and second == first[:-1] + "b"
    for store in stores:
        await store.close()


@pytest.mark.skipif(sys.platform in ("win32", "darwin"), reason="XDG_STATE_HOME is the Linux layout")
def test_default_db_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("LODESTAR_DB", str(tmp_path / "custom.db"))
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    assert default_db_path() == tmp_path / "custom.db"

    monkeypatch.delenv("LODESTAR_DB")
    assert default_db_path() == tmp_path / "state" / "lodestar" / "lodestar.db"

    monkeypatch.setenv("LODESTAR_DB", "")  # empty means unset
    monkeypatch.setenv("XDG_STATE_HOME", "")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / ".local" / "state" / "lodestar" / "lodestar.db"


@pytest.mark.parametrize("content", [b"not a database, just text\n" * 200, b"SQLite format 3\x00" + b"\xff" * 200])
async def test_a_file_that_is_not_a_database_is_refused_untouched(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "notes.db"
    path.write_bytes(content)
    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="is not a SQLite database") as info:
        await store.list_threads()
    assert str(path) in str(info.value)
    assert path.read_bytes() == content
    assert not (tmp_path / "notes.db-wal").exists()
    await store.close()


@pytest.mark.parametrize("app_id", [0, 0x12345678])
async def test_another_programs_database_is_refused_untouched(tmp_path: Path, app_id: int) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as raw:
        raw.execute("CREATE TABLE invoices (id INTEGER)")
        raw.execute(f"PRAGMA application_id={app_id}")
    before = path.read_bytes()
    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="belongs to another program") as info:
        await store.save_thread(thread("t1"))
    assert str(path) in str(info.value) and ("invoices" in str(info.value) or "0x12345678" in str(info.value))
    assert path.read_bytes() == before
    await store.close()


async def test_our_database_carries_our_application_id(tmp_path: Path) -> None:
    path = tmp_path / "lodestar.db"
    store = SQLiteStorage(path)
    await store.save_thread(thread("t1"))
    await store.close()
    with sqlite3.connect(path) as raw:
        assert raw.execute("PRAGMA application_id").fetchone()[0] == 0x4C4F4453
        raw.execute("PRAGMA application_id=0")  # as written before the id was set: still ours
    reopened = SQLiteStorage(path)
    assert (await reopened.get_thread("t1")) is not None
    await reopened.close()
