"""The SQLite background task store over real files: each method's transitions and events, the limits under
concurrent admission in one process and across two, leases and recovery, the worker's group commit and close,
and rewriting a stored tool result."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from lodestar.errors import InvalidValueError, StorageError
from lodestar.runtime import Memory, Message, TextPart, ToolCallPart, ToolResultPart
from lodestar.storage import (
    BackgroundTask,
    RetryPolicy,
    SQLiteStorage,
    SQLiteTaskStore,
    TaskEvent,
    TaskFilter,
    TaskStore,
    Thread,
)
from lodestar.storage.schema import SCHEMA_VERSION
from lodestar.storage.sqlite_tasks import INTERRUPTED
from lodestar.storage.tasks import Admission, Claimant, Limits

pytestmark = pytest.mark.anyio

FIXTURES = Path(__file__).parent / "fixtures" / "storage"
AGENTS = ("a1", "a2", "a3", "a4")
EVERY_TOOL = frozenset(f"{agent}/work" for agent in AGENTS)
LIMITS = Limits(global_concurrency=10, per_agent_concurrency=5)


def claimant(owner: str = "p1", executors: frozenset[str] = EVERY_TOOL, limits: Limits = LIMITS) -> Claimant:
    return Claimant(owner=owner, executors=executors, limits=limits, lease_ms=30_000)


def make(task_id: str, agent: str = "a1", **fields: Any) -> BackgroundTask:
    fields = {"run_id": "run-1", **fields}
    return BackgroundTask(id=task_id, tool_name="work", tool_call_id=f"call-{task_id}", agent_id=agent, **fields)


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    tasks = SQLiteTaskStore(tmp_path / "lodestar.db")
    yield tasks
    await tasks.close()


async def kinds(store: SQLiteTaskStore, after: int = 0) -> list[tuple[str, str]]:
    return [(e.kind, e.task.id) for e in await store.events_after(after)]


def raw(path: Path, sql: str, *params: Any) -> list[Any]:
    """Another connection to the file, as another process has: commits at once."""
    with closing(sqlite3.connect(path)) as conn, conn:
        return conn.execute(sql, params).fetchall()


def expire_lease(path: Path, task_id: str) -> None:
    raw(path, "UPDATE background_tasks SET lease_until = 1 WHERE id = ?", task_id)


def test_the_sqlite_store_is_a_task_store(tmp_path: Path) -> None:
    assert isinstance(SQLiteTaskStore(tmp_path / "x.db"), TaskStore)


async def test_admit_queues_then_starts_the_task(store: SQLiteTaskStore) -> None:
    task = make("t1", args={"q": "ü"}, context={"k": [1]})
    admission = await store.admit(task, claimant(), require_slot=False)

    assert admission.admitted
    [running] = admission.claimed
    assert (running.id, running.status, running.owner, running.attempt) == ("t1", "running", "p1", 1)
    assert running.started_at is not None and running.lease_until is not None
    assert running.lease_until - running.started_at == timedelta(seconds=30)
    assert running.args == {"q": "ü"} and running.context == {"k": [1]} and running.created_at == task.created_at
    assert await store.get("t1") == running
    events = await store.events_after(0)
    assert [(e.kind, e.task.status, e.origin) for e in events] == [
        ("queued", "pending", "p1"),
        ("running", "running", "p1"),
    ]
    assert events[1].task == running


async def test_admit_without_a_free_slot_queues_or_refuses(store: SQLiteTaskStore) -> None:
    one = claimant(limits=Limits(1, 1))
    await store.admit(make("t1"), one, require_slot=False)
    before = await store.last_event_seq()

    assert await store.admit(make("t2"), one, require_slot=True) == Admission(False, [])
    assert await store.get("t2") is None
    assert await store.last_event_seq() == before  # nothing written, not even an event

    assert await store.admit(make("t3"), one, require_slot=False) == Admission(True, [])
    assert (await store.get("t3")).status == "pending"  # type: ignore[union-attr]
    assert await kinds(store, before) == [("queued", "t3")]


async def test_admit_of_a_task_another_process_cannot_run_yet_stays_queued(store: SQLiteTaskStore) -> None:
    other = claimant(executors=frozenset({"a2/work"}))
    assert await store.admit(make("t1"), other, require_slot=False) == Admission(True, [])
    later = make("t2", run_after=datetime.now(UTC) + timedelta(hours=1))
    assert await store.admit(later, claimant(), require_slot=True) == Admission(False, [])


async def test_claim_starts_the_oldest_due_tasks_within_the_limits(store: SQLiteTaskStore) -> None:
    nobody = claimant("nobody", frozenset())
    future = datetime.now(UTC) + timedelta(hours=1)
    for i, agent in enumerate(["a1"] * 6 + ["a2", "a3"]):
        await store.admit(make(f"t{i}", agent), nobody, require_slot=False)
    await store.admit(make("later", "a4", run_after=future), nobody, require_slot=False)
    await store.admit(make("elsewhere", "a9"), nobody, require_slot=False)
    before = await store.last_event_seq()

    assert [t.id for t in await store.claim(claimant(), max_tasks=2)] == ["t0", "t1"]
    # a1 reaches its limit of 5 with t4; t5 waits, the next agents' tasks go ahead
    assert [t.id for t in await store.claim(claimant())] == ["t2", "t3", "t4", "t6", "t7"]
    assert await store.claim(claimant()) == []
    assert await kinds(store, before) == [("running", f"t{i}") for i in (0, 1, 2, 3, 4, 6, 7)]
    assert (await store.get("t5")).status == "pending"  # type: ignore[union-attr]
    assert (await store.get("later")).status == "pending"  # type: ignore[union-attr]

    busy = claimant(limits=Limits(7, 5))
    assert await store.claim(busy) == []  # the global limit counts every owner's running tasks


async def test_a_claimant_of_some_runs_leaves_the_other_runs_tasks_queued(store: SQLiteTaskStore) -> None:
    """A one-shot process (`lodestar-mcp ask`) runs only what it dispatched: its admission does not start another
    run's queued task either, which it would only put back, its attempt spent, when it exits."""
    nobody = claimant("nobody", frozenset())
    await store.admit(make("theirs"), nobody, require_slot=False)
    own = Claimant("cli", EVERY_TOOL, LIMITS, 30_000, runs=frozenset({"run-2"}))
    admitted = await store.admit(make("mine", run_id="run-2"), own, require_slot=False)
    assert [t.id for t in admitted.claimed] == ["mine"]
    assert await store.claim(own) == []
    assert (await store.get("theirs")).status == "pending"  # type: ignore[union-attr]
    assert [t.id for t in await store.claim(claimant())] == ["theirs"]


async def test_claim_with_more_executors_than_one_query_holds(store: SQLiteTaskStore) -> None:
    many = claimant(executors=frozenset(f"a1/tool{i:03}" for i in range(450)))
    nobody = claimant("p1", frozenset())
    for n, i in enumerate((420, 3, 250, 3)):  # spread over the three queries of 200 executors each
        task = make(f"t{n}").model_copy(update={"tool_name": f"tool{i:03}"})
        await store.admit(task, nobody, require_slot=False)
    assert [t.tool_name for t in await store.claim(many, max_tasks=3)] == ["tool420", "tool003", "tool250"]


async def test_finish_ends_only_the_attempt_its_owner_holds(store: SQLiteTaskStore) -> None:
    for task_id in ("t1", "t2", "t3"):
        await store.admit(make(task_id), claimant(), require_slot=False)
    before = await store.last_event_seq()

    assert await store.finish("t1", "p2", 1, "completed") is None
    assert await store.finish("t1", "p1", 2, "completed") is None
    done = await store.finish("t1", "p1", 1, "completed", result={"n": 1})
    assert done is not None and (done.status, done.result, done.lease_until) == ("completed", {"n": 1}, None)
    assert done.completed_at is not None
    assert await store.finish("t1", "p1", 1, "failed") is None  # once only
    timed_out = await store.finish("t2", "p1", 1, "timed_out", error={"message": "took too long"})
    assert timed_out is not None and timed_out.status == "timed_out"
    assert (await store.finish("t3", "p1", 1, "cancelled")).status == "cancelled"  # type: ignore[union-attr]
    assert await kinds(store, before) == [("completed", "t1"), ("failed", "t2"), ("cancelled", "t3")]
    with pytest.raises(InvalidValueError, match="finish needs a final status"):
        await store.finish("t1", "p1", 1, "running")


async def test_retry_later_queues_the_task_until_it_is_due(store: SQLiteTaskStore) -> None:
    await store.admit(make("t1"), claimant(), require_slot=False)
    await store.admit(make("t2"), claimant(), require_slot=False)
    before = await store.last_event_seq()
    error = {"message": "flaky"}

    assert await store.retry_later("t1", "p2", 1, datetime.now(UTC), error) is None
    future = datetime.now(UTC) + timedelta(hours=1)
    queued = await store.retry_later("t1", "p1", 1, future, error)
    assert queued is not None and (queued.status, queued.owner, queued.error, queued.run_after) == (
        "pending",
        None,
        error,
        future,
    )
    await store.retry_later("t2", "p1", 1, datetime.now(UTC) - timedelta(seconds=1), error)
    [again] = await store.claim(claimant())
    assert (again.id, again.attempt, again.retry_count) == ("t2", 2, 1)
    assert await kinds(store, before) == [("queued", "t1"), ("queued", "t2"), ("running", "t2")]


async def test_request_cancel_by_state(store: SQLiteTaskStore) -> None:
    await store.admit(make("running"), claimant(), require_slot=False)
    await store.admit(make("pending", "a9"), claimant(), require_slot=False)  # nobody runs a9's tools
    await store.admit(make("done"), claimant(), require_slot=False)
    await store.finish("done", "p1", 1, "completed")
    before = await store.last_event_seq()

    cancelled = await store.request_cancel("pending", "p2")
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.completed_at is not None
    asked = await store.request_cancel("running", "p2")
    assert asked is not None and (asked.status, asked.cancel_requested) == ("running", True)
    finished = await store.request_cancel("done", "p2")
    assert finished == await store.get("done") and finished is not None and finished.status == "completed"
    assert await store.request_cancel("nope", "p2") is None
    events = await store.events_after(before)
    assert [(e.kind, e.task.id, e.origin) for e in events] == [
        ("cancelled", "pending", "p2"),
        ("cancel-requested", "running", "p2"),
    ]


async def test_finish_reports_a_cancel_asked_by_another_process_while_the_task_ran(
    tmp_path: Path, store: SQLiteTaskStore
) -> None:
    [started] = (await store.admit(make("t1"), claimant(), require_slot=False)).claimed
    other = SQLiteTaskStore(tmp_path / "lodestar.db")  # its own connection, as another process has
    assert (await other.request_cancel("t1", "p2")) is not None
    await other.close()
    ended = await store.finish("t1", "p1", started.attempt, "cancelled")
    assert ended is not None and ended.cancel_requested and ended == await store.get("t1")
    [event] = [e for e in await store.events_after(0) if e.kind == "cancelled"]
    assert event.task.cancel_requested


async def test_recover_takes_back_only_expired_leases(tmp_path: Path, store: SQLiteTaskStore) -> None:
    path = tmp_path / "lodestar.db"
    await store.admit(make("cancel"), claimant(), require_slot=False)
    await store.admit(make("retry", retry=RetryPolicy(max_retries=1)), claimant(), require_slot=False)
    await store.admit(make("fail"), claimant(), require_slot=False)
    await store.admit(make("alive"), claimant(), require_slot=False)
    await store.request_cancel("cancel", "p1")
    for task_id in ("cancel", "retry", "fail"):
        expire_lease(path, task_id)
    before = await store.last_event_seq()

    recovered = {t.id: t for t in await store.recover("p2")}
    assert set(recovered) == {"cancel", "retry", "fail"}
    assert recovered["cancel"].status == "cancelled"
    assert (recovered["retry"].status, recovered["retry"].owner, recovered["retry"].lease_until) == (
        "pending",
        None,
        None,
    )
    assert (recovered["fail"].status, recovered["fail"].error) == ("failed", {"message": INTERRUPTED})
    assert sorted(await kinds(store, before)) == [("cancelled", "cancel"), ("failed", "fail"), ("queued", "retry")]
    assert {e.origin for e in await store.events_after(before)} == {"p2"}
    assert await store.recover("p2") == []

    # The first owner lost them: it can neither renew nor finish them.
    assert await store.renew("p1", ["retry", "fail", "alive"], 30_000) == {"alive"}
    assert await store.finish("fail", "p1", 1, "completed") is None
    [again] = await store.claim(claimant("p2"))
    assert (again.id, again.attempt) == ("retry", 2)
    expire_lease(path, "retry")
    [failed] = await store.recover("p2")
    assert (failed.id, failed.status) == ("retry", "failed")  # its one retry is used up


async def test_renew_extends_the_leases_the_owner_holds(tmp_path: Path, store: SQLiteTaskStore) -> None:
    first = (await store.admit(make("t1"), claimant(), require_slot=False)).claimed[0]
    await store.admit(make("t2"), claimant("p2"), require_slot=False)
    before = await store.last_event_seq()

    assert await store.renew("p1", ["t1", "t2", "missing"], 600_000) == {"t1"}
    assert await store.renew("p1", [], 600_000) == set()
    renewed = await store.get("t1")
    assert renewed is not None and renewed.lease_until is not None and first.lease_until is not None
    assert renewed.lease_until - first.lease_until > timedelta(seconds=500)
    assert await store.events_after(before) == []  # a renewal changes no state


async def test_add_output_records_an_event_for_the_owner_only(store: SQLiteTaskStore) -> None:
    await store.admit(make("t1"), claimant(), require_slot=False)
    before = await store.last_event_seq()

    await store.add_output("t1", "p1", {"progress": 0.5})
    await store.add_output("t1", "p2", {"progress": 0.9})
    [event] = await store.events_after(before)
    assert (event.kind, event.output, event.task.status) == ("output", {"progress": 0.5}, "running")


async def test_cleanup_deletes_old_finished_tasks_and_events(tmp_path: Path, store: SQLiteTaskStore) -> None:
    path = tmp_path / "lodestar.db"
    for task_id in ("old-done", "new-done", "old-failed", "running"):
        await store.admit(make(task_id), claimant(), require_slot=False)
    await store.finish("old-done", "p1", 1, "completed")
    await store.finish("new-done", "p1", 1, "cancelled")
    await store.finish("old-failed", "p1", 1, "timed_out")
    hour_ago = datetime.now(UTC).timestamp() - 3600
    raw(path, "UPDATE background_tasks SET completed_at = ? WHERE id LIKE 'old-%'", hour_ago)
    raw(path, "UPDATE background_task_events SET at = ? WHERE seq <= 3", hour_ago)
    last = await store.last_event_seq()

    assert await store.cleanup(60_000, 7_200_000, 60_000) == 1  # failed ones are kept longer
    assert await store.get("old-done") is None and await store.get("old-failed") is not None
    assert next(e.seq for e in await store.events_after(0)) == 4
    assert await store.cleanup(60_000, 60_000, 0) == 1
    assert {t.id for t in (await store.list_tasks(TaskFilter())).tasks} == {"new-done", "running"}
    assert await store.events_after(0) == []
    assert await store.last_event_seq() == last  # the sequence goes on after a cleanup


async def test_list_tasks_filters_newest_first_by_page(store: SQLiteTaskStore) -> None:
    nobody = claimant("p1", frozenset())
    for i in range(7):
        await store.admit(make(f"t{i}", "a1" if i % 2 else "a2", thread_id="th"), nobody, require_slot=False)
    await store.admit(
        make("x", "a3", thread_id="other"), claimant(executors=frozenset({"a3/work"})), require_slot=False
    )

    page = await store.list_tasks(TaskFilter(thread_id="th"), page=0, per_page=3)
    assert ([t.id for t in page.tasks], page.total) == (["t6", "t5", "t4"], 7)
    page = await store.list_tasks(TaskFilter(thread_id="th"), page=2, per_page=3)
    assert ([t.id for t in page.tasks], page.total) == (["t0"], 7)
    page = await store.list_tasks(TaskFilter(agent_id="a1", status="pending"))
    assert [t.id for t in page.tasks] == ["t5", "t3", "t1"]
    assert [t.id for t in (await store.list_tasks(TaskFilter(status="running"))).tasks] == ["x"]
    assert (await store.list_tasks(TaskFilter(task_id="t2", tool_name="work", run_id="run-1"))).total == 1
    assert (await store.list_tasks(TaskFilter(resource_id="nobody"))).total == 0


async def test_a_filter_refuses_an_unknown_status() -> None:
    with pytest.raises(
        InvalidValueError, match=r"^unknown task status 'done': use one of pending, running, completed, "
    ):
        TaskFilter(status="done")


@pytest.mark.parametrize(
    ("where", "page", "per_page", "message"),
    [
        (TaskFilter(), -1, 50, "page must be 0 or more, got -1"),
        (TaskFilter(), 0, 0, "per_page must be between 1 and 500, got 0"),
        (TaskFilter(), 0, 501, "per_page must be between 1 and 500, got 501"),
    ],
)
async def test_list_tasks_refuses_bad_input(
    store: SQLiteTaskStore, where: TaskFilter, page: int, per_page: int, message: str
) -> None:
    with pytest.raises(InvalidValueError) as info:
        await store.list_tasks(where, page=page, per_page=per_page)
    assert str(info.value).startswith(message)


async def test_events_after_reads_in_commit_order(store: SQLiteTaskStore) -> None:
    assert await store.last_event_seq() == 0
    await store.admit(make("t1"), claimant(), require_slot=False)
    await store.finish("t1", "p1", 1, "completed", result=[1, 2])
    events = await store.events_after(0)
    assert [(e.seq, e.kind) for e in events] == [(1, "queued"), (2, "running"), (3, "completed")]
    assert events[2].task.result == [1, 2] and events[0].at <= events[2].at
    assert [e.seq for e in await store.events_after(1, limit=1)] == [2]
    assert await store.last_event_seq() == 3


async def test_changed_sees_commits_of_other_connections_only(tmp_path: Path) -> None:
    path = tmp_path / "lodestar.db"
    watcher, writer = SQLiteTaskStore(path), SQLiteTaskStore(path)
    assert await watcher.changed() is False
    await watcher.admit(make("own"), claimant(), require_slot=False)
    assert await watcher.changed() is False
    await writer.admit(make("theirs"), claimant(), require_slot=False)
    assert await watcher.changed() is True
    assert await watcher.changed() is False
    await watcher.close()
    await writer.close()


async def test_one_failing_call_in_a_batch_undoes_only_itself(store: SQLiteTaskStore) -> None:
    async with HoldWorker(store):
        calls = [
            store.admit(make("t1"), claimant(), require_slot=False),
            store.admit(make("t1"), claimant(), require_slot=False),  # the same id again
            store.admit(make("t2"), claimant(), require_slot=False),
        ]
        pending = [asyncio.ensure_future(call) for call in calls]
        await wait_queued(store, 3)
    first, duplicate, second = await asyncio.gather(*pending, return_exceptions=True)
    assert isinstance(first, Admission) and isinstance(second, Admission)
    assert isinstance(duplicate, StorageError) and "UNIQUE constraint failed" in str(duplicate)
    assert [(e.kind, e.task.id) for e in await store.events_after(0)] == [
        ("queued", "t1"),
        ("running", "t1"),
        ("queued", "t2"),
        ("running", "t2"),
    ]


async def test_close_fails_what_is_queued_and_refuses_later_calls(store: SQLiteTaskStore) -> None:
    async with HoldWorker(store) as held:
        queued = asyncio.ensure_future(store.admit(make("t1"), claimant(), require_slot=False))
        await wait_queued(store, 1)
        closing_ = asyncio.ensure_future(store.close())
        await wait_queued(store, 2)
    assert await held == "held"  # what was under way when close was called finishes
    await closing_
    with pytest.raises(StorageError) as info:
        await queued
    assert str(info.value) == f"{store.path}: the background task store was closed, so admit was not done"
    with pytest.raises(StorageError, match="store was closed, so get was not done"):
        await store.get("t1")
    await store.close()  # twice is fine
    assert raw(Path(store.path), "SELECT count(*) FROM background_tasks") == [(0,)]


class HoldWorker:
    """Keeps the store's worker thread busy in a call of its own, so what is queued meanwhile runs as one batch."""

    def __init__(self, store: SQLiteTaskStore) -> None:
        self.store = store
        self.started, self.release = threading.Event(), threading.Event()

    def _hold(self, conn: sqlite3.Connection) -> str:
        self.started.set()
        self.release.wait()
        return "held"

    async def __aenter__(self) -> asyncio.Future[str]:
        self.held = asyncio.ensure_future(self.store._call("hold", self._hold))
        await anyio.to_thread.run_sync(self.started.wait)
        return self.held

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()


async def wait_queued(store: SQLiteTaskStore, count: int) -> None:
    """Lets the event loop queue the calls just scheduled (each queues itself at its first step)."""
    for _ in range(100):
        if store._queue.qsize() >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{count} calls were not queued")


# --- the limits ------------------------------------------------------------------------------------------------


def running_counts(path: Path) -> Counter[str]:
    rows = raw(path, "SELECT agent_id, count(*) FROM background_tasks WHERE status = 'running' GROUP BY agent_id")
    return Counter(dict(rows))


def peaks(events: list[TaskEvent]) -> tuple[int, dict[str, int]]:
    """The most tasks running at once, overall and per agent, replayed from the event log."""
    running: Counter[str] = Counter()
    top, per_agent = 0, Counter[str]()
    for event in events:
        agent = event.task.agent_id
        if event.kind == "running":
            running[agent] += 1
        elif event.kind in ("completed", "failed", "cancelled") and event.task.started_at is not None:
            running[agent] -= 1
        top = max(top, sum(running.values()))
        per_agent[agent] = max(per_agent[agent], running[agent])
    return top, dict(per_agent)


async def run_claimed(store: SQLiteTaskStore, who: Claimant, claimed: list[BackgroundTask], check: Any) -> None:
    """What a manager does with what it claimed: run each (here: nothing), finish it, claim more."""
    while claimed:
        for task in claimed:
            check()
            assert await store.finish(task.id, who.owner, task.attempt, "completed", result=task.id) is not None
        claimed = await store.claim(who, max_tasks=len(claimed))


async def test_concurrent_admits_never_exceed_the_limits(tmp_path: Path, store: SQLiteTaskStore) -> None:
    path = tmp_path / "lodestar.db"
    who = claimant()
    worst: Counter[str] = Counter()

    def check() -> None:
        counts = running_counts(path)
        assert sum(counts.values()) <= 10 and max(counts.values(), default=0) <= 5, counts
        worst.update({agent: 0 for agent in counts})
        for agent, count in counts.items():
            worst[agent] = max(worst[agent], count)

    async def dispatch(i: int) -> None:
        agent = AGENTS[0] if i % 3 else AGENTS[i % 4]  # a1 has most of the work, so it reaches its own limit
        admission = await store.admit(make(f"t{i}", agent), who, require_slot=False)
        check()
        await run_claimed(store, who, admission.claimed, check)

    await asyncio.gather(*(dispatch(i) for i in range(200)))
    await run_claimed(store, who, await store.claim(who), check)

    assert (await store.list_tasks(TaskFilter(status="completed"))).total == 200
    events = await store.events_after(0, limit=10_000)
    top, per_agent = peaks(events)
    assert top == 10 and max(per_agent.values()) == 5  # reached, never passed
    assert Counter(e.kind for e in events) == {"queued": 200, "running": 200, "completed": 200}


PEER = """
import asyncio, sys
sys.path.insert(0, sys.argv[2])
from test_task_store import AGENTS, claimant, make, share_work
from lodestar.storage import SQLiteTaskStore


async def main() -> None:
    store = SQLiteTaskStore(sys.argv[1])
    await store.get("warm-up")
    print("ready", flush=True)
    await asyncio.to_thread(sys.stdin.readline)
    await share_work(store, "peer", int(sys.argv[3]))
    await store.close()


asyncio.run(main())
"""


async def share_work(store: SQLiteTaskStore, owner: str, count: int) -> None:
    """One process's part: admit `count` tasks at once, run whatever this process claims (its own tasks or the
    other's), and keep claiming until every task of both processes is completed."""
    who = claimant(owner)

    async def dispatch(i: int) -> None:
        admission = await store.admit(make(f"{owner}-{i}", AGENTS[i % 4]), who, require_slot=False)
        await run_claimed(store, who, admission.claimed, lambda: None)

    await asyncio.gather(*(dispatch(i) for i in range(count)))
    while (await store.list_tasks(TaskFilter(status="completed"), per_page=1)).total < count * 2:
        claimed = await store.claim(who)
        if claimed:
            await run_claimed(store, who, claimed, lambda: None)
        else:  # the other process holds the free slots: wait for its next commit
            while not await store.changed():
                await asyncio.sleep(0.001)


async def test_two_processes_share_the_limits_and_run_each_task_once(tmp_path: Path, store: SQLiteTaskStore) -> None:
    path, count = tmp_path / "lodestar.db", 150
    await store.get("warm-up")  # the schema exists before either side writes
    command = [sys.executable, "-c", PEER, str(path), str(Path(__file__).parent), str(count)]
    peer = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert peer.stdout is not None and peer.stdin is not None
        assert await anyio.to_thread.run_sync(peer.stdout.readline) == "ready\n"
        peer.stdin.write("go\n")
        peer.stdin.flush()
        await share_work(store, "test", count)
        _, err = await anyio.to_thread.run_sync(lambda: peer.communicate(timeout=120))
        assert peer.returncode == 0, err
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()

    events = await store.events_after(0, limit=10_000)
    top, per_agent = peaks(events)
    assert top <= 10 and max(per_agent.values()) <= 5, (top, per_agent)
    completed = Counter(e.task.id for e in events if e.kind == "completed")
    assert len(completed) == 2 * count and set(completed.values()) == {1}
    assert Counter(e.kind for e in events) == {"queued": 2 * count, "running": 2 * count, "completed": 2 * count}
    # Both admitted at once; which one ran what depends on who found the free slots first.
    assert Counter(e.origin for e in events if e.kind == "queued") == {"test": count, "peer": count}


# --- beside the thread store -----------------------------------------------------------------------------------


async def test_storage_holds_one_task_store_and_closes_it(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "lodestar.db")
    tasks = storage.tasks
    assert storage.tasks is tasks and tasks.path == storage.path
    await tasks.admit(make("t1"), claimant(), require_slot=False)
    await storage.close()
    with pytest.raises(StorageError, match="closed"):
        await tasks.get("t1")
    assert (await storage.tasks.get("t1")) is not None  # a storage used after close opens a fresh one
    await storage.close()


async def test_migration_3_upgrades_a_version_2_file(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with closing(sqlite3.connect(path)) as conn:
        conn.executescript((FIXTURES / "v2-ba59634.sql").read_text("utf-8"))
    storage = SQLiteStorage(path)
    assert [m.id for m in await storage.list_messages("t1")] == ["m1", "m2", "m3"]
    assert (await storage.tasks.admit(make("t1"), claimant(), require_slot=False)).admitted
    await storage.close()
    assert raw(path, "PRAGMA user_version") == [(SCHEMA_VERSION,)]
    assert SCHEMA_VERSION == 3


async def test_set_tool_result_rewrites_the_stored_result(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "lodestar.db")
    memory = Memory(storage)
    await storage.create_thread(Thread(id="th"))
    call = ToolCallPart(tool_call_id="c1", tool_name="slow", args={"n": 1})
    placeholder = ToolResultPart(tool_call_id="c1", tool_name="slow", result={"task_id": "t1", "status": "running"})
    await memory.save(
        "th",
        [
            Message(role="assistant", content=[call]),
            Message(role="tool", content=[placeholder, ToolResultPart(tool_call_id="c2", tool_name="other")]),
            Message(role="assistant", content=[TextPart(text="started it")]),
        ],
    )

    assert await storage.set_tool_result("th", "c1", {"answer": 42}, False) is True
    assert await storage.set_tool_result("th", "c9", "x", True) is False
    assert await storage.set_tool_result("nothread", "c1", "x", True) is False
    messages = await memory.messages("th")
    first, other = messages[1].tool_results
    assert (first.result, first.is_error, first.tool_name) == ({"answer": 42}, False, "slow")
    assert (other.result, other.is_error) == (None, False)
    assert messages[0] == (await memory.messages("th"))[0] and messages[2].text == "started it"

    await storage.set_tool_result("th", "c1", "boom", True)
    [row] = raw(tmp_path / "lodestar.db", "SELECT content FROM messages WHERE role = 'tool'")
    assert json.loads(row[0])[0] == {
        "type": "tool-result",
        "tool_call_id": "c1",
        "tool_name": "slow",
        "result": "boom",
        "is_error": True,
    }
    await storage.close()
