"""BackgroundTaskManager: runs tool calls as durable tasks, shared by every process on one database.

The store decides (admission, claims, leases, in one transaction each); this process runs what it claimed,
renews its leases, recovers the tasks of processes that died, and tells observers. A change is published only
after the store committed it: to observers in this process at once, to other processes through the store's
event log, which each process reads when the database changed (`poll_interval_ms`).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import secrets
import socket
from collections.abc import AsyncIterator, Callable, Coroutine
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any, TypeVar

from ..errors import InvalidValueError, UnknownNameError
from ..runtime.background import BACKGROUND_TASK_KEY, AgentBackgroundConfig, TaskCallback
from ..runtime.chunks import Chunk
from ..runtime.context import ToolContext
from ..runtime.memory import Memory
from ..runtime.messages import Message, new_id
from ..runtime.tools import Tool, ToolArgumentsError
from ..storage.models import utcnow
from ..storage.tasks import (
    Admission,
    BackgroundTask,
    Claimant,
    EventKind,
    Limits,
    TaskFilter,
    TaskPage,
    TaskStore,
    executor_key,
)
from .chunks import chunk_of, running_chunk
from .config import BackgroundTasksConfig
from .pubsub import PubSub, Subscription, Update
from .resolution import resolve

log = logging.getLogger("lodestar.background")
T = TypeVar("T")
EVENTS_PAGE = 1000
EVENTS_TTL_MS = 600_000  # other processes read events within a poll interval; ten minutes is ample
ANSWERED_KEPT = 10_000
DUE_SLACK_S = 0.005  # the event loop's clock and the wall clock a task's due time is in may differ slightly


@dataclass(frozen=True, slots=True)
class Executor:
    """What this process needs to run a task of one agent's tool, and whom to tell when it ends."""

    tool: Tool
    agent: AgentBackgroundConfig
    memory: Memory | None


@dataclass(slots=True)
class Attempt:
    """One run of a task here. `job` runs the tool, then records the outcome; a stop cancels only `work`, the
    tool's own execution, so an outcome already reached is always recorded and announced."""

    task: BackgroundTask
    job: asyncio.Task[None] | None = None
    work: asyncio.Future[Any] | None = None
    stop_reason: str | None = None  # "cancel": asked to cancel; "lost": another process took it over; "close"

    @property
    def working(self) -> bool:
        return self.work is None or not self.work.done()

    def stop(self, reason: str) -> None:
        if self.stop_reason is not None or not self.working:
            return
        self.stop_reason = reason
        if self.work is not None:
            self.work.cancel()
        elif self.job is not None:
            self.job.cancel()  # claimed, and not begun yet


class TaskTimedOut(Exception):
    """The task's own timeout fired (a TimeoutError the tool raises itself is an ordinary failure)."""


class BackgroundTaskManager:
    def __init__(self, config: BackgroundTasksConfig, store: TaskStore) -> None:
        self.config = config
        self.store = store
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._executors: dict[str, Executor] = {}
        self._attempts: dict[str, Attempt] = {}
        self._hub = PubSub()
        self._loops: list[asyncio.Task[None]] = []
        self._busy: set[asyncio.Future[Any]] = set()  # admissions, claims and settlements under way
        self._loop: asyncio.AbstractEventLoop | None = None
        self._claim_wanted = asyncio.Event()
        self._maybe_pending = True
        self.own_runs: set[str] | None = None
        self._seen_seq = 0
        self._answered: dict[str, None] = {}  # tasks whose result a step waited for (wait_timeout_ms), newest last

    # --- set-up -------------------------------------------------------------------------------------------------

    def register(self, agent_id: str, tool: Tool, agent: AgentBackgroundConfig, memory: Memory | None) -> None:
        """This process can run `tool` for `agent_id`: it claims such tasks, whoever dispatched them."""
        self._executors[executor_key(agent_id, tool.name)] = Executor(tool, agent, memory)

    @property
    def claimant(self) -> Claimant:
        limits = Limits(self.config.global_concurrency, self.config.per_agent_concurrency)
        runs = frozenset(self.own_runs) if self.own_runs is not None else None
        return Claimant(self.owner, frozenset(self._executors), limits, self.config.lease_ms, runs)

    def claim_own_runs_only(self) -> None:
        """For a short-lived process (`lodestar-mcp ask`): run only the tasks this process dispatches. Claiming
        another process's queued tasks would start them only to put them back, their attempt spent, on exit."""
        self.own_runs = set()

    async def start(self) -> None:
        """Start the workers (once per event loop): first recover what dead processes left, then claim. State of
        an earlier event loop, which is gone, is dropped."""
        loop = asyncio.get_running_loop()
        if self._loop is loop:
            return
        self._loops, self._attempts, self._busy = [], {}, set()
        self._claim_wanted = asyncio.Event()
        self._seen_seq = await self.store.last_event_seq()
        await self._recover()
        self._loop = loop  # only now: a start that failed is tried again
        for body in (self._claimer, self._watcher, self._keeper, self._cleaner):
            self._loops.append(asyncio.create_task(body(), name=f"lodestar-background-{body.__name__}"))
        self._want_claim()

    async def aclose(self) -> None:
        """Stop the workers; running attempts go back to the queue for this or another process to run again."""
        for task in self._loops:
            task.cancel()
        await asyncio.gather(*self._loops, return_exceptions=True)
        await asyncio.gather(*self._busy, return_exceptions=True)  # what they claimed is among the attempts now
        for attempt in self._attempts.values():
            attempt.stop("close")
        await asyncio.gather(*(a.job for a in self._attempts.values() if a.job), return_exceptions=True)
        for attempt in list(self._attempts.values()):  # claimed, then cancelled before its job began
            await self._stopped(attempt)
        self._attempts.clear()
        self._loops.clear()
        self._loop = None

    # --- dispatch -----------------------------------------------------------------------------------------------

    async def enqueue(
        self, agent_id: str, tool_name: str, args: dict[str, Any] | None = None, **fields: Any
    ) -> BackgroundTask:
        """Run one of an agent's tools as a background task outside any run (a scheduled job, a script); `fields`
        as `new_task` takes them."""
        executor = self._executors.get(executor_key(agent_id, tool_name))
        if executor is None:
            known = ", ".join(sorted(self._executors)) or "none"
            raise UnknownNameError(f"no tool {tool_name!r} of agent {agent_id!r} here; agent/tool pairs: {known}")
        executor.tool.validate(args or {})
        plan = resolve(executor.tool, executor.agent, self.config, None)  # the tool's and agent's settings count
        fields = {"timeout_ms": plan.timeout_ms, "max_retries": plan.max_retries, **fields}
        task = self.new_task(agent_id, tool_name, dict(args or {}), **fields)
        admission = await self.submit(task)
        return next((t for t in admission.claimed if t.id == task.id), task)  # running, if it started at once

    def new_task(
        self,
        agent_id: str,
        tool_name: str,
        args: dict[str, Any],
        *,
        tool_call_id: str | None = None,
        run_id: str | None = None,
        thread_id: str | None = None,
        resource_id: str | None = None,
        timeout_ms: int | None = None,
        max_retries: int | None = None,
        context: dict[str, Any] | None = None,
    ) -> BackgroundTask:
        """A task record with this manager's defaults for what is not given."""
        retry = self.config.default_retries.policy()
        return BackgroundTask(
            id=new_id("task"),
            tool_name=tool_name,
            tool_call_id=tool_call_id or new_id("call"),
            agent_id=agent_id,
            run_id=run_id or new_id("run"),
            thread_id=thread_id,
            resource_id=resource_id,
            args=args,
            retry=retry if max_retries is None else retry.model_copy(update={"max_retries": max_retries}),
            timeout_ms=timeout_ms or self.config.default_timeout_ms,
            context=context or {},
        )

    async def submit(self, task: BackgroundTask, *, require_slot: bool = False) -> Admission:
        """Admit a task; it starts here at once when a slot is free, else waits in the queue (or, with
        `require_slot`, is not admitted)."""
        await self.start()
        return await self._guarded(self._admit(task, require_slot))

    async def _admit(self, task: BackgroundTask, require_slot: bool) -> Admission:
        if self.own_runs is not None:
            self.own_runs.add(task.run_id)
        admission = await self.store.admit(task, self.claimant, require_slot=require_slot)
        if admission.admitted and task.id not in {t.id for t in admission.claimed}:
            self._maybe_pending = True
            self._publish(Update("queued", task))
        self._run_claimed(admission.claimed)
        return admission

    async def _guarded(self, work: Coroutine[Any, Any, T]) -> T:
        """Runs `work` to its end even if the caller is cancelled meanwhile: what a transaction claimed must be
        started here, or it would sit `running` until its lease expired."""
        return await asyncio.shield(self._spawn(work))

    def _spawn(self, work: Coroutine[Any, Any, T]) -> asyncio.Future[T]:
        """`work` in a task of its own, which `aclose` waits for."""
        future = asyncio.ensure_future(work)
        self._busy.add(future)
        future.add_done_callback(self._busy.discard)
        return future

    def _run_claimed(self, tasks: list[BackgroundTask]) -> None:
        for task in tasks:
            self._publish(Update("running", task))
            attempt = self._attempts[task.id] = Attempt(task)
            attempt.job = asyncio.create_task(self._run_attempt(attempt), name=f"lodestar-task-{task.id}")

    async def _run_attempt(self, attempt: Attempt) -> None:
        task = attempt.task
        try:
            try:
                result = await self._work(attempt)
            except asyncio.CancelledError:
                if _cancelling():  # the job itself, not the tool: the event loop is closing
                    attempt.stop_reason = attempt.stop_reason or "close"
                    await self._stopped(attempt)
                    raise
                await self._stopped(attempt)
            except TaskTimedOut as exc:
                await self._failed(task, exc, timed_out=True)
            except Exception as exc:
                await self._failed(task, exc)
            else:
                await self._end(task, "completed", result=result)
        except Exception:
            log.exception(
                "background task %s: its outcome could not be recorded; it is recovered once its lease expires", task.id
            )
        finally:
            self._attempts.pop(task.id, None)
            self._want_claim()

    async def _work(self, attempt: Attempt) -> Any:
        """The tool's execution, under the task's timeout; what a stop cancels."""
        task = attempt.task
        executor = self._executors[task.executor]
        attempt.work = asyncio.ensure_future(executor.tool.execute(task.args, self._context(task)))
        deadline = asyncio.timeout(task.timeout_ms / 1000)
        try:
            async with deadline:
                return await asyncio.shield(attempt.work)
        except TimeoutError:
            if not deadline.expired():
                raise
            attempt.work.cancel()
            with contextlib.suppress(BaseException):
                await attempt.work  # the tool has stopped before the task is failed
            raise TaskTimedOut(f"timed out after {task.timeout_ms} ms") from None

    def _context(self, task: BackgroundTask) -> ToolContext:
        async def output(chunk: Chunk) -> None:
            value = getattr(getattr(chunk, "payload", None), "output", None)
            if value is not None:
                await self.store.add_output(task.id, self.owner, value)
                self._publish(Update("output", task, value))

        return ToolContext(
            run_id=task.run_id,
            agent_id=task.agent_id,
            tool_call_id=task.tool_call_id,
            tool_name=task.tool_name,
            thread_id=task.thread_id,
            resource_id=task.resource_id,
            request_context={**(task.context.get("request_context") or {}), BACKGROUND_TASK_KEY: task.id},
            emit=output,
            messages=[Message.model_validate(m) for m in task.context.get("messages", [])],
            step_number=task.context.get("step_number", 0),
        )

    async def _failed(self, task: BackgroundTask, exc: BaseException, *, timed_out: bool = False) -> None:
        error = {"message": f"{type(exc).__name__}: {exc}" if not timed_out else str(exc)}
        if task.attempt <= task.retry.max_retries and self._retryable(exc):
            delay_ms = task.retry.delay_ms(task.attempt)
            due = utcnow() + timedelta(milliseconds=delay_ms)
            requeued = await self.store.retry_later(task.id, self.owner, task.attempt, due, error)
            if requeued is not None and requeued.status == "cancelled":  # a cancel came meanwhile
                self._publish(Update("cancelled", requeued))
                await self._settled(requeued)
            elif requeued is not None:
                self._publish(Update("queued", requeued))
                asyncio.get_running_loop().call_later(delay_ms / 1000 + DUE_SLACK_S, self._wake)
            return
        await self._end(task, "timed_out" if timed_out else "failed", error=error)

    def _retryable(self, exc: BaseException) -> bool:
        if isinstance(exc, ToolArgumentsError):
            return False  # the same arguments fail the same way
        decide = self.config.default_retries.retryable_errors
        if decide is None:
            return True
        try:
            return bool(decide(exc))
        except Exception:
            log.exception("retryable_errors raised; the task is not retried")
            return False

    async def _stopped(self, attempt: Attempt) -> None:
        """A stopped attempt: cancelled as asked, back in the queue when this process closes, and nothing when
        another process took it over (that one reports it)."""
        task = attempt.task
        if attempt.stop_reason == "cancel":
            await self._end(task, "cancelled")
        elif attempt.stop_reason in ("close", None):
            with contextlib.suppress(Exception):
                interrupted = {"message": "interrupted: the process running it closed"}
                await self.store.retry_later(task.id, self.owner, task.attempt, utcnow(), interrupted)

    async def _end(
        self, task: BackgroundTask, status: Any, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        ended = await self.store.finish(task.id, self.owner, task.attempt, status, result=result, error=error)
        if ended is None:
            return  # the lease was lost: the process that took the task over reports it
        self._publish(Update(_announced(ended), ended))
        await self._settled(ended)

    async def _settled(self, task: BackgroundTask) -> None:
        """The result joins the dispatching thread's memory; then, for a completed or failed task, the callbacks
        of each layer fire once: the tool's, the agent's entry for it, the agent's, the manager's."""
        executor = self._executors.get(task.executor)
        if executor is not None and executor.memory is not None and task.thread_id:
            await self.record_result(executor.memory, task)
        if task.status == "cancelled":
            return
        ok = task.status == "completed"
        callbacks: list[TaskCallback | None] = []
        if executor is not None:
            for layer in (executor.tool.background, executor.agent.entry(task.tool_name)):
                callbacks.append((layer.on_complete if ok else layer.on_failed) if layer else None)
            callbacks.append(executor.agent.on_task_complete if ok else executor.agent.on_task_failed)
        callbacks.append(self.config.on_task_complete if ok else self.config.on_task_failed)
        for callback in callbacks:
            if callback is not None:
                await _call_safely(callback, task)

    async def settle(self, task_ids: list[str]) -> None:
        """Write the results of those of these tasks that have ended into their threads. Called after a run saved
        its messages: a task's own end writes its result too, so whichever comes second finds the message."""
        for task_id in task_ids:
            task = await self.store.get(task_id)
            executor = self._executors.get(task.executor) if task is not None else None
            if task is not None and task.terminal and task.thread_id and executor and executor.memory:
                await self.record_result(executor.memory, task)

    async def record_result(self, memory: Memory, task: BackgroundTask) -> None:
        """Replace the call's "started" result in its thread by the task's outcome, when the thread holds it."""
        result, is_error = tool_result_of(task)
        try:
            await memory.set_tool_result(task.thread_id or "", task.tool_call_id, result, is_error)
        except Exception:
            log.exception("task %s: could not write its result to thread %s", task.id, task.thread_id)

    # --- observation --------------------------------------------------------------------------------------------

    def can_run(self, agent_id: str, tool: Tool) -> bool:
        """Whether this tool is the one registered for its name: a tool a processor supplies mid-run (even under a
        registered name) has no executor, so its calls run in the foreground, as the tool the model was shown."""
        executor = self._executors.get(executor_key(agent_id, tool.name))
        return executor is not None and executor.tool is tool

    def mark_answered(self, task_id: str) -> None:
        """The call's own step read this task's result, so nothing needs to continue for it."""
        self._answered[task_id] = None
        while len(self._answered) > ANSWERED_KEPT:
            del self._answered[next(iter(self._answered))]

    def answered(self, task_id: str) -> bool:
        return task_id in self._answered

    def running(self, run_id: str) -> list[BackgroundTask]:
        """The tasks of one run that this process is running now."""
        return [a.task for a in self._attempts.values() if a.task.run_id == run_id]

    def subscribe(self, wants: Callable[[BackgroundTask], bool]) -> Subscription:
        return self._hub.subscribe(wants)

    async def get_task(self, task_id: str) -> BackgroundTask | None:
        return await self.store.get(task_id)

    async def list_tasks(self, *, page: int = 0, per_page: int = 50, **filters: str | None) -> TaskPage:
        return await self.store.list_tasks(_filter(filters), page=page, per_page=per_page)

    async def stream(self, **filters: str | None) -> AsyncIterator[Chunk]:
        """The running tasks that match, then every change to matching tasks as it is committed, in any process."""
        await self.start()
        where = _filter(filters)
        subscription = self.subscribe(where.matches)
        try:
            if where.status in (None, "running"):
                running = await self.store.list_tasks(replace(where, status="running"), per_page=500)
                for task in reversed(running.tasks):
                    yield running_chunk(task)
            async for update in subscription:
                chunk = chunk_of(update)
                if chunk is not None:
                    yield chunk
        finally:
            subscription.close()

    async def cancel(self, task_id: str) -> BackgroundTask | None:
        """Cancel a pending or running task, here or in another process; a finished one is returned unchanged."""
        await self.start()
        task = await self.store.request_cancel(task_id, self.owner)
        if task is None:
            return None
        if task.status == "cancelled":
            self._publish(Update("cancelled", task))
        elif task.status == "running" and task.cancel_requested:
            self._publish(Update("cancel-requested", task))
        return task

    # --- workers ------------------------------------------------------------------------------------------------

    def _publish(self, update: Update) -> None:
        if update.kind == "cancel-requested" and (attempt := self._attempts.get(update.task.id)) is not None:
            attempt.stop("cancel")
        self._hub.publish(update)

    def _wake(self) -> None:
        """Look for work even if the last claim found none: a retry fell due, or a periodic check."""
        self._maybe_pending = True
        self._claim_wanted.set()

    def _want_claim(self) -> None:
        if self._maybe_pending:
            self._claim_wanted.set()

    async def _claimer(self) -> None:
        while True:
            await self._claim_wanted.wait()
            self._claim_wanted.clear()
            try:
                await self._guarded(self._claim())
            except Exception:
                log.exception("claiming background tasks failed; trying again on the next change")

    async def _claim(self) -> None:
        claimed = await self.store.claim(self.claimant)
        self._run_claimed(claimed)
        if not claimed:
            # Nothing claimed may only mean that every slot was taken: then the next task to end, here or in
            # another process, must claim again, so the flag stays up while anything is queued.
            self._maybe_pending = await self._anything_queued()

    async def _anything_queued(self) -> bool:
        try:
            return (await self.store.list_tasks(TaskFilter(status="pending"), per_page=1)).total > 0
        except Exception:
            log.exception("counting queued background tasks failed; looking again on the next change")
            return True

    async def _watcher(self) -> None:
        """Other processes' changes: published here, and a queued task or a freed slot may be ours to run."""
        while True:
            await asyncio.sleep(self.config.poll_interval_ms / 1000)
            try:
                if await self.store.changed():
                    await self._read_events()
            except Exception:
                log.exception("reading other processes' task events failed")

    async def _read_events(self) -> None:
        """Every event since the last one seen, page after page: a burst is read whole, not a page per change."""
        while True:
            events = await self.store.events_after(self._seen_seq, limit=EVENTS_PAGE)
            for event in events:
                self._seen_seq = event.seq
                if event.origin == self.owner:
                    continue
                if event.kind == "queued" or event.task.terminal:
                    self._maybe_pending = self._maybe_pending or event.kind == "queued"
                    self._want_claim()
                self._publish(Update(event.kind, event.task, event.output))
            if len(events) < EVENTS_PAGE:
                return

    async def _keeper(self) -> None:
        """Renew this process's leases, and take over the tasks of processes whose leases expired."""
        while True:
            await asyncio.sleep(self.config.lease_ms / 3000)
            try:
                working = [task_id for task_id, attempt in self._attempts.items() if attempt.working]
                held = await self.store.renew(self.owner, working, self.config.lease_ms)
                for task_id in set(working) - held:
                    if (attempt := self._attempts.get(task_id)) is not None:
                        attempt.stop("lost")
                await self._recover()
            except Exception:
                log.exception("renewing leases or recovering tasks failed")
            self._wake()  # a retry another process scheduled, then died, falls due without an event

    async def _recover(self) -> None:
        for task in await self.store.recover(self.owner):
            if task.status == "pending":
                self._maybe_pending = True
                self._publish(Update("queued", task))
                self._want_claim()
            else:
                self._publish(Update(_announced(task), task))
                self._spawn(self._settled(task))  # the keeper never waits on a user's callback

    async def cleanup(self) -> int:
        """Delete the records past their TTL now (the workers do it every `cleanup_interval_ms`); how many went."""
        cleanup = self.config.cleanup
        return await self.store.cleanup(cleanup.completed_ttl_ms, cleanup.failed_ttl_ms, EVENTS_TTL_MS)

    async def _cleaner(self) -> None:
        while True:
            await asyncio.sleep(self.config.cleanup.cleanup_interval_ms / 1000)
            try:
                await self.cleanup()
            except Exception:
                log.exception("deleting old background task records failed")


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _announced(task: BackgroundTask) -> EventKind:
    """The event a finished task is announced with: a timeout is a failure, as in Mastra's chunks."""
    return "cancelled" if task.status == "cancelled" else "completed" if task.status == "completed" else "failed"


def tool_result_of(task: BackgroundTask) -> tuple[Any, bool]:
    """What the model reads as the call's result once the task ended."""
    if task.status == "completed":
        return task.result, False
    message = (task.error or {}).get("message", "")
    if task.status == "cancelled":
        return f"background task {task.id} ({task.tool_name}) was cancelled", True
    return f"background task {task.id} ({task.tool_name}) {task.status.replace('_', ' ')}: {message}", True


def _filter(filters: dict[str, str | None]) -> TaskFilter:
    unknown = set(filters) - set(TaskFilter.__dataclass_fields__)
    if unknown:
        known = ", ".join(TaskFilter.__dataclass_fields__)
        raise InvalidValueError(f"unknown task filter {', '.join(sorted(unknown))}; the filters are: {known}")
    return TaskFilter(**filters)


async def _call_safely(callback: TaskCallback, task: BackgroundTask) -> None:
    """A callback's failure is logged; it never changes the task's outcome."""
    try:
        outcome = callback(task)
        if inspect.isawaitable(outcome):
            await outcome
    except Exception:
        log.exception("a callback for background task %s raised; the task's outcome stands", task.id)
