"""Background task records and the narrow store they live in, shared by every process on one database.

The store is the only place where task state changes, and each change is one transaction that also appends
the matching event, so what an observer in any process sees was committed first. It knows nothing of tools or
agents: the manager (lodestar.background) runs the tasks; the store admits, claims, leases and records them.

Only SQLite is built (sqlite_tasks.py: WAL, BEGIN IMMEDIATE, busy timeout). A PostgreSQL store maps each
method onto one transaction too:
- `admit` and `claim`: `SELECT ... FROM background_tasks WHERE status = 'pending' AND executor = ANY(...)
  AND run_after <= now() ORDER BY seq FOR UPDATE SKIP LOCKED`, running counts read in the same
  transaction under an advisory lock on the limits, then `UPDATE ... SET status = 'running'`;
- `renew`, `finish`, `retry_later`, `request_cancel`: `UPDATE ... WHERE id = $1 AND owner = $2 AND attempt = $3`
  (the row is only changed by the process holding its lease);
- `recover`: `UPDATE ... WHERE status = 'running' AND lease_until < now()` with `FOR UPDATE SKIP LOCKED`;
- `events_after`: the events table read by sequence; a wake-up is `NOTIFY background_tasks` in each writing
  transaction and `LISTEN` in every process, where SQLite polls `PRAGMA data_version`;
- `get`, `list`, `cleanup`: plain SELECT and DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, get_args, runtime_checkable

from pydantic import BaseModel, Field

from ..errors import InvalidValueError
from .models import utcnow

TaskStatus = Literal["pending", "running", "completed", "failed", "timed_out", "cancelled"]
STATUSES: tuple[str, ...] = get_args(TaskStatus)
TERMINAL: frozenset[str] = frozenset({"completed", "failed", "timed_out", "cancelled"})
EventKind = Literal["queued", "running", "output", "completed", "failed", "cancelled", "cancel-requested"]


class RetryPolicy(BaseModel):
    """How a failed attempt is retried, kept with the task so that any process running it retries the same way."""

    max_retries: int = Field(0, ge=0)
    retry_delay_ms: int = Field(1000, ge=0)
    backoff_multiplier: float = Field(2.0, ge=1.0)
    max_retry_delay_ms: int = Field(30_000, ge=0)

    def delay_ms(self, retry_number: int) -> float:
        """The wait before retry `retry_number` (1 for the first): the delay grown by the multiplier, capped."""
        grown = self.retry_delay_ms * self.backoff_multiplier ** (retry_number - 1)
        return min(grown, self.max_retry_delay_ms)


class BackgroundTask(BaseModel):
    """One background tool call. `executor` names what can run it (`agent_id/tool_name`); `attempt` counts the
    attempts started, so `retry_count` is `attempt - 1` once it has run."""

    id: str
    status: TaskStatus = "pending"
    tool_name: str
    tool_call_id: str
    agent_id: str
    run_id: str
    thread_id: str | None = None
    resource_id: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    result: Any = None
    error: dict[str, Any] | None = None
    attempt: int = 0
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    timeout_ms: int = 300_000
    context: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    run_after: datetime = Field(default_factory=utcnow)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    owner: str | None = None
    lease_until: datetime | None = None
    cancel_requested: bool = False

    @property
    def executor(self) -> str:
        return executor_key(self.agent_id, self.tool_name)

    @property
    def retry_count(self) -> int:
        return max(0, self.attempt - 1)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


def executor_key(agent_id: str, tool_name: str) -> str:
    return f"{agent_id}/{tool_name}"


class TaskEvent(BaseModel):
    """A committed change, in commit order: `task` as it was after the change; `output` for an output event.
    `origin` is the process that wrote it, so a process skips its own when it reads the others'."""

    seq: int
    kind: EventKind
    task: BackgroundTask
    output: Any = None
    origin: str
    at: datetime


class TaskPage(BaseModel):
    tasks: list[BackgroundTask]
    total: int


@dataclass(frozen=True, slots=True)
class Limits:
    global_concurrency: int
    per_agent_concurrency: int


@dataclass(frozen=True, slots=True)
class Claimant:
    """A process asking for work: the executors it has, how long its leases last, and the limits to keep."""

    owner: str
    executors: frozenset[str]
    limits: Limits
    lease_ms: int
    runs: frozenset[str] | None = None  # only tasks these runs dispatched (a one-shot process); None: any task


@dataclass(frozen=True, slots=True)
class TaskFilter:
    status: str | None = None
    agent_id: str | None = None
    run_id: str | None = None
    thread_id: str | None = None
    resource_id: str | None = None
    tool_name: str | None = None
    task_id: str | None = None

    def __post_init__(self) -> None:
        if self.status is not None and self.status not in STATUSES:
            raise InvalidValueError(f"unknown task status {self.status!r}: use one of {', '.join(STATUSES)}")

    def matches(self, task: BackgroundTask) -> bool:
        wanted = (
            (self.status, task.status),
            (self.agent_id, task.agent_id),
            (self.run_id, task.run_id),
            (self.thread_id, task.thread_id),
            (self.resource_id, task.resource_id),
            (self.tool_name, task.tool_name),
            (self.task_id, task.id),
        )
        return all(want is None or want == value for want, value in wanted)


@dataclass(frozen=True, slots=True)
class Admission:
    """`admitted` is False only when a slot was required and none was free (nothing was written then).
    `claimed` holds every task the claimant must now run: the new one when it got a slot, and any older
    queued ones the same transaction could start."""

    admitted: bool
    claimed: list[BackgroundTask]


@runtime_checkable
class TaskStore(Protocol):
    """Background tasks, their leases and their event log. Every method is one transaction, committed before it
    returns; every state change appends its event (kind as named) in that transaction."""

    async def admit(self, task: BackgroundTask, claimant: Claimant, *, require_slot: bool) -> Admission:
        """Insert `task` as pending (event `queued`), then claim as `claim` does. With `require_slot`, a task
        that could not start at once is not inserted at all (`admitted` False)."""
        ...

    async def claim(self, claimant: Claimant, *, max_tasks: int | None = None) -> list[BackgroundTask]:
        """Start the oldest due pending tasks the claimant has executors for, as long as the running tasks stay
        within the global and per-agent limits (counted in this transaction, across every process): each becomes
        running, owned by the claimant with a lease, its attempt counted (event `running`)."""
        ...

    async def renew(self, owner: str, task_ids: list[str], lease_ms: int) -> set[str]:
        """Extend the leases the owner still holds; returns those ids. A task missing from the answer was
        recovered by another process: its owner must stop it and report nothing."""
        ...

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
        """End a running attempt (completed, failed, timed_out or cancelled; event of that kind, `timed_out` is
        announced as failed). None, and nothing changed, when the owner no longer holds that attempt."""
        ...

    async def retry_later(
        self, task_id: str, owner: str, attempt: int, run_after: datetime, error: dict[str, Any]
    ) -> BackgroundTask | None:
        """Put a failed attempt back in the queue, due at `run_after` (event `queued`); a task whose cancel was
        asked meanwhile is cancelled instead (event `cancelled`). None as in `finish`."""
        ...

    async def request_cancel(self, task_id: str, origin: str) -> BackgroundTask | None:
        """A pending task is cancelled at once (event `cancelled`); a running one is marked `cancel_requested`
        (event `cancel-requested`) for its owner to stop; a finished one is returned unchanged. None: no task."""
        ...

    async def recover(self, origin: str, max_tasks: int = 500) -> list[BackgroundTask]:
        """Tasks whose lease expired (their process died or hung): cancelled when a cancel was requested, queued
        again while retries remain, else failed as interrupted. Returns them as they are now."""
        ...

    async def add_output(self, task_id: str, owner: str, output: Any) -> None:
        """Record a running task's output (event `output`)."""
        ...

    async def get(self, task_id: str) -> BackgroundTask | None: ...

    async def list_tasks(self, where: TaskFilter, *, page: int = 0, per_page: int = 50) -> TaskPage:
        """Newest first, with the total count of matching tasks."""
        ...

    async def events_after(self, seq: int, *, limit: int = 1000) -> list[TaskEvent]:
        """Events with a sequence number above `seq`, oldest first."""
        ...

    async def last_event_seq(self) -> int: ...

    async def changed(self) -> bool:
        """Whether any process committed to the database since the last call: a cheap test before reading events."""
        ...

    async def cleanup(self, completed_ttl_ms: int, failed_ttl_ms: int, events_ttl_ms: int) -> int:
        """Delete completed and cancelled tasks older than the first TTL, failed and timed-out ones older than the
        second, and events older than the third; returns how many tasks went."""
        ...

    async def close(self) -> None: ...
