"""The SQLite `TaskStore`: one connection, one worker thread, group commit.

A commit with `synchronous=FULL` costs an fsync, so the store's worker thread runs every call that arrived while
the previous transaction was committing in one `BEGIN IMMEDIATE ... COMMIT`, each write call inside a SAVEPOINT of
its own (one failing call undoes only itself and gets its own exception). A call's answer is handed back only
after the commit, so what it returns is durable. Other processes on the file take turns through the write lock
(BEGIN IMMEDIATE waits up to the busy timeout), and the limits are counted inside that lock.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import queue
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from pydantic_core import to_json, to_jsonable_python

from ..errors import InvalidValueError, StorageError
from .schema import open_database
from .tasks import (
    TERMINAL,
    Admission,
    BackgroundTask,
    Claimant,
    EventKind,
    TaskEvent,
    TaskFilter,
    TaskPage,
    TaskStatus,
)

T = TypeVar("T")
STARTED_KEPT = 100_000
CLAIM_SCAN = 500  # pending rows one claim looks at: older ones of agents at their limit are skipped
MAX_ARMS = 200  # executors per claim query (SQLite allows 500 arms in a compound SELECT)
MAX_BATCH = 1000  # calls in one transaction
MAX_PER_PAGE = 500
INTERRUPTED = "interrupted: the process running this task stopped (lease expired)"
_COLUMNS = (
    "id, status, executor, tool_name, tool_call_id, agent_id, run_id, thread_id, resource_id, args, result, "
    "error, attempt, retry, timeout_ms, context, created_at, run_after, started_at, completed_at, owner, "
    "lease_until, cancel_requested"
).split(", ")
_INSERT = f"INSERT INTO background_tasks ({', '.join(_COLUMNS)}) VALUES ({', '.join(':' + c for c in _COLUMNS)})"
_INSERT_EVENT = "INSERT INTO background_task_events (task_id, kind, task, output, origin, at) VALUES (?, ?, ?, ?, ?, ?)"
# Event times follow their sequence, so the old ones are those before the first recent one: found by walking
# the table from its start, which costs what is deleted rather than an index on `at` paid at every insert.
_DELETE_EVENTS = (
    "DELETE FROM background_task_events WHERE seq < coalesce("
    "(SELECT seq FROM background_task_events WHERE at >= ? ORDER BY seq LIMIT 1), "
    "(SELECT max(seq) + 1 FROM background_task_events))"
)
_HELD = "SELECT * FROM background_tasks WHERE id = ? AND owner = ? AND status = 'running'"


class _Undo(Exception):
    """Raised by a call to roll back its own changes and still answer `value`."""

    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass(slots=True)
class _Call:
    name: str
    work: Callable[[sqlite3.Connection], Any]
    writes: bool
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


@dataclass(slots=True)
class _Stop:
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]


class SQLiteTaskStore:
    """A `TaskStore` in one SQLite file, shared with every process that opens it.

    The file is opened by the worker thread on the first call; `close()` stops the thread and fails the calls
    still queued."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._queue: queue.SimpleQueue[_Call | _Stop] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._start = threading.Lock()
        self._closed = False
        self._conn: sqlite3.Connection | None = None
        self._data_version = 0
        # The tasks this store started, as it wrote them, so that ending one reads no row back; worker thread only.
        self._started: dict[str, BackgroundTask] = {}

    def __repr__(self) -> str:
        return f"SQLiteTaskStore({self.path!r})"

    # --- the protocol -------------------------------------------------------------------------------------

    async def admit(self, task: BackgroundTask, claimant: Claimant, *, require_slot: bool) -> Admission:
        row = _row(task)
        queued = task.model_dump_json()

        def admit(conn: sqlite3.Connection) -> Admission:
            now = time.time()
            conn.execute(_INSERT, row)
            _event(conn, task.id, "queued", queued, claimant.owner, now)
            claimed = _claim(conn, claimant, None, now, task)
            if require_slot and all(t.id != task.id for t in claimed):
                raise _Undo(Admission(False, []))
            return Admission(True, self._keep(claimed))

        return await self._call("admit", admit, writes=True)

    async def claim(self, claimant: Claimant, *, max_tasks: int | None = None) -> list[BackgroundTask]:
        def claim(conn: sqlite3.Connection) -> list[BackgroundTask]:
            return self._keep(_claim(conn, claimant, max_tasks, time.time()))

        return await self._call("claim", claim, writes=True)

    async def renew(self, owner: str, task_ids: list[str], lease_ms: int) -> set[str]:
        if not task_ids:
            return set()

        def renew(conn: sqlite3.Connection) -> set[str]:
            sql = (
                f"UPDATE background_tasks SET lease_until = ? WHERE owner = ? AND status = 'running' "
                f"AND id IN ({_marks(task_ids)}) RETURNING id"
            )
            held = {r[0] for r in conn.execute(sql, (time.time() + lease_ms / 1000, owner, *task_ids))}
            for lost in set(task_ids) - held:
                self._started.pop(lost, None)
            return held

        return await self._call("renew", renew, writes=True)

    async def finish(
        self,
        task_id: str,
        owner: str,
        attempt: int,
        status: TaskStatus,
        *,
        result: Any = None,
        error: dict[str, Any] | None = None,
    ) -> BackgroundTask | None:
        if status not in TERMINAL:
            raise InvalidValueError(f"finish needs a final status ({', '.join(sorted(TERMINAL))}), got {status!r}")
        kind: EventKind = "failed" if status == "timed_out" else status  # type: ignore[assignment]

        def finish(conn: sqlite3.Connection) -> BackgroundTask | None:
            task = self._held(conn, task_id, owner, attempt)
            if task is None:
                return None
            now = time.time()
            update = {"result": result, "error": error, "completed_at": _dt(now), "lease_until": None}
            return _change(conn, task, kind, owner, now, status=status, **update)

        return await self._call("finish", finish, writes=True)

    async def retry_later(
        self, task_id: str, owner: str, attempt: int, run_after: datetime, error: dict[str, Any]
    ) -> BackgroundTask | None:
        def retry_later(conn: sqlite3.Connection) -> BackgroundTask | None:
            task = self._held(conn, task_id, owner, attempt)
            if task is None:
                return None
            now, released = time.time(), {"error": error, "owner": None, "lease_until": None}
            if task.cancel_requested:  # a cancel asked meanwhile wins over the retry
                return _change(
                    conn, task, "cancelled", owner, now, status="cancelled", completed_at=_dt(now), **released
                )
            return _change(conn, task, "queued", owner, now, status="pending", run_after=run_after, **released)

        return await self._call("retry_later", retry_later, writes=True)

    async def request_cancel(self, task_id: str, origin: str) -> BackgroundTask | None:
        def request_cancel(conn: sqlite3.Connection) -> BackgroundTask | None:
            row = conn.execute("SELECT * FROM background_tasks WHERE id = ?", (task_id,)).fetchone()
            if row is None:
                return None
            task, now = _task(row), time.time()
            if task.status == "pending":
                return _change(conn, task, "cancelled", origin, now, status="cancelled", completed_at=_dt(now))
            if task.status == "running" and not task.cancel_requested:
                return _change(conn, task, "cancel-requested", origin, now, cancel_requested=True)
            return task

        return await self._call("request_cancel", request_cancel, writes=True)

    async def recover(self, origin: str, max_tasks: int = 500) -> list[BackgroundTask]:
        def recover(conn: sqlite3.Connection) -> list[BackgroundTask]:
            now = time.time()
            sql = (
                "SELECT * FROM background_tasks WHERE status = 'running' AND lease_until < ? "
                "ORDER BY lease_until LIMIT ?"
            )
            return [_recover_one(conn, _task(row), origin, now) for row in conn.execute(sql, (now, max_tasks))]

        return await self._call("recover", recover, writes=True)

    async def add_output(self, task_id: str, owner: str, output: Any) -> None:
        encoded = json.dumps(to_jsonable_python(output, fallback=str))  # as a tool's result is made JSON-ready

        def add_output(conn: sqlite3.Connection) -> None:
            row = conn.execute(_HELD, (task_id, owner)).fetchone()
            if row is not None:
                task = _task(row)
                conn.execute(_INSERT_EVENT, (task_id, "output", task.model_dump_json(), encoded, owner, time.time()))

        await self._call("add_output", add_output, writes=True)

    async def get(self, task_id: str) -> BackgroundTask | None:
        row = await self._call(
            "get", lambda c: c.execute("SELECT * FROM background_tasks WHERE id = ?", (task_id,)).fetchone()
        )
        return None if row is None else _task(row)

    async def list_tasks(self, where: TaskFilter, *, page: int = 0, per_page: int = 50) -> TaskPage:
        if page < 0:
            raise InvalidValueError(f"page must be 0 or more, got {page}")
        if not 1 <= per_page <= MAX_PER_PAGE:
            raise InvalidValueError(f"per_page must be between 1 and {MAX_PER_PAGE}, got {per_page}")
        clause, params = _where(where)

        def list_tasks(conn: sqlite3.Connection) -> tuple[list[sqlite3.Row], int]:
            total = conn.execute(f"SELECT count(*) FROM background_tasks {clause}", params).fetchone()[0]
            sql = f"SELECT * FROM background_tasks {clause} ORDER BY seq DESC LIMIT ? OFFSET ?"
            return conn.execute(sql, (*params, per_page, page * per_page)).fetchall(), total

        rows, total = await self._call("list_tasks", list_tasks)
        return TaskPage(tasks=[_task(row) for row in rows], total=total)

    async def events_after(self, seq: int, *, limit: int = 1000) -> list[TaskEvent]:
        sql = "SELECT * FROM background_task_events WHERE seq > ? ORDER BY seq LIMIT ?"
        rows = await self._call("events_after", lambda c: c.execute(sql, (seq, limit)).fetchall())
        return [_task_event(row) for row in rows]

    async def last_event_seq(self) -> int:
        # The AUTOINCREMENT counter, not max(seq): it survives a cleanup that deleted every event.
        sql = "SELECT seq FROM sqlite_sequence WHERE name = 'background_task_events'"
        row = await self._call("last_event_seq", lambda c: c.execute(sql).fetchone())
        return 0 if row is None else int(row[0])

    async def changed(self) -> bool:
        def changed(conn: sqlite3.Connection) -> bool:
            # data_version moves when another connection (any process) commits; our own commits leave it.
            version: int = conn.execute("PRAGMA data_version").fetchone()[0]
            moved, self._data_version = version != self._data_version, version
            return moved

        return await self._call("changed", changed)

    async def cleanup(self, completed_ttl_ms: int, failed_ttl_ms: int, events_ttl_ms: int) -> int:
        def cleanup(conn: sqlite3.Connection) -> int:
            now = time.time()
            sql = "DELETE FROM background_tasks WHERE status IN (?, ?) AND completed_at < ?"
            gone = conn.execute(sql, ("completed", "cancelled", now - completed_ttl_ms / 1000)).rowcount
            gone += conn.execute(sql, ("failed", "timed_out", now - failed_ttl_ms / 1000)).rowcount
            conn.execute(_DELETE_EVENTS, (now - events_ttl_ms / 1000,))
            return gone

        return await self._call("cleanup", cleanup, writes=True)

    async def close(self) -> None:
        """Stops the worker after the transaction under way; calls still queued fail with a clear error."""
        with self._start:
            self._closed = True
            thread, self._thread = self._thread, None
        if thread is None:
            return
        loop = asyncio.get_running_loop()
        stopped: asyncio.Future[None] = loop.create_future()
        self._queue.put(_Stop(loop, stopped))
        await stopped

    def _keep(self, started: list[BackgroundTask]) -> list[BackgroundTask]:
        if len(self._started) > STARTED_KEPT:  # attempts that never ended here: forgetting costs a row read each
            self._started.clear()
        self._started.update((task.id, task) for task in started)
        return started

    def _held(self, conn: sqlite3.Connection, task_id: str, owner: str, attempt: int) -> BackgroundTask | None:
        """The running attempt `owner` holds, else None. A task this store started is taken as it was written, with
        the one column another process may change while it runs (`cancel_requested`; a renewed lease is about to
        be cleared) read again."""
        known = self._started.pop(task_id, None)
        if known is None or known.attempt != attempt:
            row = conn.execute(f"{_HELD} AND attempt = ?", (task_id, owner, attempt)).fetchone()
            return None if row is None else _task(row)
        sql = f"{_HELD.replace('*', 'cancel_requested', 1)} AND attempt = ?"
        row = conn.execute(sql, (task_id, owner, attempt)).fetchone()
        return None if row is None else known.model_copy(update={"cancel_requested": bool(row[0])})

    # --- the worker ---------------------------------------------------------------------------------------

    async def _call(self, name: str, work: Callable[[sqlite3.Connection], T], *, writes: bool = False) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._start:
            if self._closed:
                raise self._closed_error(name)
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name=f"lodestar-tasks {self.path}", daemon=True)
                self._thread.start()
            self._queue.put(_Call(name, work, writes, loop, future))
        return await future

    def _closed_error(self, name: str) -> StorageError:
        return StorageError(f"{self.path}: the background task store was closed, so {name} was not done")

    def _serve(self) -> None:
        """The worker: takes whatever is queued and runs it as one transaction, until told to stop."""
        stop: _Stop | None = None
        while stop is None:
            batch = [self._queue.get()]
            while len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            calls = [item for item in batch if isinstance(item, _Call)]
            stop = next((item for item in batch if isinstance(item, _Stop)), None)
            if stop is not None:  # close() was called: what did not start yet fails
                _answer(calls, [(None, self._closed_error(call.name)) for call in calls])
            elif calls:
                _answer(calls, self._run_batch(calls))
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        _answer([stop], [(None, None)])

    def _run_batch(self, calls: list[_Call]) -> list[tuple[Any, BaseException | None]]:
        try:
            conn = self._connection()
            conn.execute("BEGIN IMMEDIATE" if any(call.writes for call in calls) else "BEGIN")
            try:
                answers = [self._run_one(conn, call) for call in calls]
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except (sqlite3.Error, OSError) as exc:  # opening (or making its folder), locking or committing failed
            error = StorageError(f"{self.path}: background task store: {exc}")
            return [(None, error)] * len(calls)
        except StorageError as exc:
            return [(None, exc)] * len(calls)
        return answers

    def _run_one(self, conn: sqlite3.Connection, call: _Call) -> tuple[Any, BaseException | None]:
        if call.writes:
            conn.execute("SAVEPOINT call")
        try:
            value = call.work(conn)
        except Exception as exc:
            if call.writes:
                conn.execute("ROLLBACK TO call")
                conn.execute("RELEASE call")
            if isinstance(exc, _Undo):
                return exc.value, None
            if isinstance(exc, sqlite3.Error):
                return None, StorageError(f"{self.path}: background task {call.name} failed: {exc}")
            return None, exc
        if call.writes:
            conn.execute("RELEASE call")
        return value, None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = open_database(self.path)
            self._data_version = self._conn.execute("PRAGMA data_version").fetchone()[0]
        return self._conn


def _answer(calls: Sequence[_Call | _Stop], answers: list[tuple[Any, BaseException | None]]) -> None:
    """Settles each call's future on its own loop: one wake-up per loop for the whole batch."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[asyncio.Future[Any], Any, BaseException | None]]]
    by_loop = defaultdict(list)
    for call, (value, error) in zip(calls, answers, strict=True):
        by_loop[call.loop].append((call.future, value, error))
    for loop, settled in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody awaits these any more
            loop.call_soon_threadsafe(_settle, settled)


def _settle(settled: list[tuple[asyncio.Future[Any], Any, BaseException | None]]) -> None:
    for future, value, error in settled:
        if future.done():  # the caller was cancelled; the change is committed all the same
            continue
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(value)


# --- the SQL work, run in the worker thread inside a transaction -----------------------------------------------


def _claim(
    conn: sqlite3.Connection, claimant: Claimant, max_tasks: int | None, now: float, new: BackgroundTask | None = None
) -> list[BackgroundTask]:
    """Starts the oldest due pending tasks the claimant can run, within the limits counted here, under the lock.
    `new` is a task this transaction inserted, used as is rather than read back.

    Pending tasks are read in rounds of at most the free slots, leaving out agents already at their limit, so a
    queue held up by one busy agent costs little; at most `CLAIM_SCAN` rows are looked at."""
    limits = claimant.limits
    sql = "SELECT agent_id, count(*) FROM background_tasks WHERE status = 'running' GROUP BY agent_id"
    running: dict[str, int] = {agent: count for agent, count in conn.execute(sql)}
    free = limits.global_concurrency - sum(running.values())
    if max_tasks is not None:
        free = min(free, max_tasks)
    executors = sorted(claimant.executors)
    claimed: list[BackgroundTask] = []
    after, scanned = 0, 0
    while len(claimed) < free and executors and scanned < CLAIM_SCAN:
        full = [agent for agent, count in running.items() if count >= limits.per_agent_concurrency]
        wanted = free - len(claimed)
        rows = _pending(conn, executors, full, after, now, wanted, claimant.runs)
        for row in rows:
            scanned, after, agent = scanned + 1, row["seq"], row["agent_id"]
            if running.get(agent, 0) < limits.per_agent_concurrency:
                running[agent] = running.get(agent, 0) + 1
                task = new if new is not None and new.id == row["id"] else _task(row)
                claimed.append(_start(conn, task, claimant, now))
        if len(rows) < wanted:
            break  # every due task was read: a later round, with a later `after` and more agents full, finds none
    return claimed


def _pending(
    conn: sqlite3.Connection,
    executors: list[str],
    full: list[str],
    after: int,
    now: float,
    count: int,
    runs: frozenset[str] | None,
) -> list[sqlite3.Row]:
    """The `count` oldest due pending tasks after `after` of these executors, of agents not in `full`, and of
    these `runs` when given.

    One ordered index range per executor, merged: `executor IN (...) ORDER BY seq` would read and sort every
    pending task of the executors instead (0.3 ms at 2,000 queued, against 0.03 ms)."""
    only = sorted(runs) if runs is not None else []
    of_runs = f"AND run_id IN ({_marks(only)}) " if runs is not None else ""
    arm = (
        "SELECT * FROM (SELECT * FROM background_tasks WHERE status = 'pending' AND executor = ? AND seq > ? "
        f"AND run_after <= ? AND agent_id NOT IN ({_marks(full)}) {of_runs}ORDER BY seq LIMIT ?)"
    )
    rows: list[sqlite3.Row] = []
    for start in range(0, len(executors), MAX_ARMS):
        group = executors[start : start + MAX_ARMS]
        sql = " UNION ALL ".join([arm] * len(group)) + " ORDER BY seq LIMIT ?"
        params = [value for executor in group for value in (executor, after, now, *full, *only, count)]
        rows += conn.execute(sql, (*params, count)).fetchall()
    return sorted(rows, key=lambda row: row["seq"])[:count]


def _start(conn: sqlite3.Connection, task: BackgroundTask, claimant: Claimant, now: float) -> BackgroundTask:
    lease = {"owner": claimant.owner, "lease_until": _dt(now + claimant.lease_ms / 1000), "started_at": _dt(now)}
    return _change(conn, task, "running", claimant.owner, now, status="running", attempt=task.attempt + 1, **lease)


def _marks(values: list[str]) -> str:
    return ", ".join("?" * len(values))


def _recover_one(conn: sqlite3.Connection, task: BackgroundTask, origin: str, now: float) -> BackgroundTask:
    cleared: dict[str, Any] = {"owner": None, "lease_until": None}
    if task.cancel_requested:
        return _change(conn, task, "cancelled", origin, now, status="cancelled", completed_at=_dt(now), **cleared)
    if task.attempt <= task.retry.max_retries:
        return _change(conn, task, "queued", origin, now, status="pending", run_after=_dt(now), **cleared)
    error = {"message": INTERRUPTED}
    return _change(conn, task, "failed", origin, now, status="failed", error=error, completed_at=_dt(now), **cleared)


def _change(
    conn: sqlite3.Connection, task: BackgroundTask, kind: EventKind, origin: str, now: float, **update: Any
) -> BackgroundTask:
    """Writes the task with `update` applied and appends its event, in the caller's transaction."""
    changed = task.model_copy(update=update)
    sets = ", ".join(f"{column} = :{column}" for column in update)  # only the indexes of these are rewritten
    conn.execute(f"UPDATE background_tasks SET {sets} WHERE id = :id", _row(changed, ["id", *update]))
    _event(conn, changed.id, kind, changed.model_dump_json(), origin, now)
    return changed


def _event(conn: sqlite3.Connection, task_id: str, kind: EventKind, task: str, origin: str, now: float) -> None:
    conn.execute(_INSERT_EVENT, (task_id, kind, task, None, origin, now))


def _where(where: TaskFilter) -> tuple[str, tuple[Any, ...]]:
    pairs = [
        ("status", where.status),
        ("agent_id", where.agent_id),
        ("run_id", where.run_id),
        ("thread_id", where.thread_id),
        ("resource_id", where.resource_id),
        ("tool_name", where.tool_name),
        ("id", where.task_id),
    ]
    wanted = [(column, value) for column, value in pairs if value is not None]
    if not wanted:
        return "", ()
    return "WHERE " + " AND ".join(f"{column} = ?" for column, _ in wanted), tuple(value for _, value in wanted)


# --- rows and records ------------------------------------------------------------------------------------------

_JSON = ("args", "result", "error", "context")
_TIMES = ("created_at", "run_after", "started_at", "completed_at", "lease_until")


def _row(task: BackgroundTask, columns: Iterable[str] = _COLUMNS) -> dict[str, Any]:
    return {column: _value(task, column) for column in columns}


def _value(task: BackgroundTask, column: str) -> Any:
    if column in _JSON:
        return to_json(getattr(task, column)).decode()
    if column in _TIMES:
        return _ts(getattr(task, column))
    if column == "retry":
        return task.retry.model_dump_json()
    return int(task.cancel_requested) if column == "cancel_requested" else getattr(task, column)


def _task(row: sqlite3.Row) -> BackgroundTask:
    data = {column: row[column] for column in _COLUMNS if column != "executor"}
    for column in _JSON:
        data[column] = json.loads(data[column]) if data[column] is not None else None
    for column in _TIMES:
        data[column] = _dt(data[column])
    data["retry"] = json.loads(data["retry"])
    data["cancel_requested"] = bool(data["cancel_requested"])
    return BackgroundTask.model_validate(data)


def _task_event(row: sqlite3.Row) -> TaskEvent:
    output = None if row["output"] is None else json.loads(row["output"])
    task = BackgroundTask.model_validate_json(row["task"])
    return TaskEvent(
        seq=row["seq"], kind=row["kind"], task=task, output=output, origin=row["origin"], at=_dt(row["at"])
    )


def _ts(value: datetime | None) -> float | None:
    if value is None:
        return None
    return (value if value.tzinfo is not None else value.replace(tzinfo=UTC)).timestamp()


def _dt(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(value, UTC)
