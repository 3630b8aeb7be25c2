"""The background task tools: list, read, cancel and watch an app's tasks over MCP, in any process on its database."""

from __future__ import annotations

import json
from collections import deque
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from lodestar.errors import UnknownNameError

if TYPE_CHECKING:  # the runtime and the task store load on the first call: a docs-only start-up stays as fast
    from lodestar.background.manager import BackgroundTaskManager
    from lodestar.runtime.chunks import Chunk
    from lodestar.storage.tasks import BackgroundTask

Managers = Callable[[], Awaitable[list["BackgroundTaskManager"]]]
"""The task managers to serve, one per database, opened on first use."""
STATUSES = ("pending", "running", "completed", "failed", "timed_out", "cancelled")

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WATCH_EVENTS_KEPT = 500  # a long watch still reports every event as progress; its result keeps the last ones
WATCH_TIMEOUT_MAX_S = 600.0
ACTIVE = ("pending", "running")

Status = Annotated[str | None, Field(description=f"Only tasks in this status: one of {', '.join(STATUSES)}")]
AgentId = Annotated[str | None, Field(description="Only tasks dispatched by this agent")]
RunId = Annotated[str | None, Field(description="Only tasks of this agent run")]
ThreadId = Annotated[str | None, Field(description="Only tasks of this memory thread")]
ResourceId = Annotated[str | None, Field(description="Only tasks of this resource (user)")]
ToolName = Annotated[str | None, Field(description="Only tasks running this tool")]
TaskId = Annotated[str, Field(description="A task id, as list_background_tasks shows it")]


class TaskInfo(BaseModel):
    id: str
    status: str
    tool_name: str
    tool_call_id: str
    agent_id: str
    run_id: str
    thread_id: str | None
    resource_id: str | None
    args: dict[str, Any]
    result: Any
    error: dict[str, Any] | None
    retry_count: int
    max_retries: int
    timeout_ms: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None

    @classmethod
    def of(cls, task: BackgroundTask) -> TaskInfo:
        fields = task.model_dump(include=set(cls.model_fields) - {"retry_count", "max_retries"})
        return cls(**fields, retry_count=task.retry_count, max_retries=task.retry.max_retries)

    def line(self) -> str:
        ended = f"; error: {self.error.get('message', '')}" if self.error else ""
        return f"{self.id} {self.status} {self.tool_name} (agent {self.agent_id}, run {self.run_id}){ended}"


class TaskList(BaseModel):
    tasks: list[TaskInfo]
    total: int


class CancelResult(BaseModel):
    task_id: str
    status: str


class WatchResult(BaseModel):
    events: list[dict[str, Any]] = Field(description=f"The chunks seen, the last {WATCH_EVENTS_KEPT} at most")
    idle: bool = Field(description="Every matching task had ended; false when the timeout passed first")
    dropped: int = Field(0, description=f"Earlier events left out of `events` (beyond the last {WATCH_EVENTS_KEPT})")


def _answer(result: BaseModel, text: str) -> CallToolResult:
    return CallToolResult(
        content=[TextContent(type="text", text=text)], structured_content=result.model_dump(mode="json")
    )


def task_filters(**given: str | None) -> dict[str, str]:
    """The filters given, checked: a status that is not one fails the call with a message listing the statuses
    (a LodestarError, which the server sends as the tool error's text)."""
    from lodestar.storage.tasks import TaskFilter

    filters = {name: value for name, value in given.items() if value is not None}
    TaskFilter(**filters)
    return filters


async def find_task(
    managers: list[BackgroundTaskManager], task_id: str
) -> tuple[BackgroundTaskManager, BackgroundTask]:
    for manager in managers:
        task = await manager.get_task(task_id)
        if task is not None:
            return manager, task
    raise UnknownNameError(f"no background task {task_id!r}; list_background_tasks lists them")


def cancel_text(task_id: str, before: BackgroundTask, after: BackgroundTask) -> str:
    """What a cancel did, from the task before and after it."""
    if before.terminal:
        return f"task {task_id} had already ended: {after.status}"
    if after.status == "running":
        return f"task {task_id} is being cancelled: it stops shortly"
    return f"task {task_id} {after.status}"


async def list_page(manager: BackgroundTaskManager, filters: dict[str, str], limit: int, offset: int) -> TaskList:
    """Tasks `offset` to `offset + limit`, newest first, from the manager's pages of `limit`: the two that hold
    them when `offset` is not a multiple of `limit`."""
    first = offset // limit
    page = await manager.list_tasks(page=first, per_page=limit, **filters)
    tasks = page.tasks
    skip = offset - first * limit
    if skip and len(tasks) == limit:
        tasks = tasks + (await manager.list_tasks(page=first + 1, per_page=limit, **filters)).tasks
    return TaskList(tasks=[TaskInfo.of(task) for task in tasks[skip : skip + limit]], total=page.total)


async def list_all(managers: list[BackgroundTaskManager], filters: dict[str, str], limit: int, offset: int) -> TaskList:
    """One page over every database, newest first: their lists merged as they are read, a page of each at a time,
    so a page far on holds no more than a page of each database."""
    from lodestar.storage.sqlite_tasks import MAX_PER_PAGE

    if len(managers) == 1:
        return await list_page(managers[0], filters, limit, offset)
    readers = [_Newest(manager, filters, min(offset + limit, MAX_PER_PAGE)) for manager in managers]
    tasks: list[TaskInfo] = []
    for index in range(offset + limit):
        heads = [(task, reader) for reader in readers if (task := await reader.head()) is not None]
        if not heads:
            break
        task, reader = max(heads, key=lambda head: head[0].created_at)
        reader.page.popleft()
        if index >= offset:
            tasks.append(task)
    return TaskList(tasks=tasks, total=sum(reader.total for reader in readers))  # each was read: limit >= 1


class _Newest:
    """One database's matching tasks, newest first, read a page at a time."""

    def __init__(self, manager: BackgroundTaskManager, filters: dict[str, str], per_page: int) -> None:
        self.manager = manager
        self.filters = filters
        self.per_page = per_page
        self.page: deque[TaskInfo] = deque()
        self.read = 0
        self.total = 0
        self.ended = False

    async def head(self) -> TaskInfo | None:
        if not self.page and not self.ended:
            listed = await list_page(self.manager, self.filters, self.per_page, self.read)
            self.total = listed.total if self.read == 0 else self.total
            self.page.extend(listed.tasks)
            self.read += len(listed.tasks)
            self.ended = len(listed.tasks) < self.per_page
        return self.page[0] if self.page else None


async def _active(manager: BackgroundTaskManager, filters: dict[str, str]) -> int:
    """How many matching tasks are pending or running."""
    wanted = [status for status in ACTIVE if filters.get("status") in (None, status)]
    pages = [await manager.list_tasks(page=0, per_page=1, **{**filters, "status": status}) for status in wanted]
    return sum(page.total for page in pages)


Report = Callable[[float, float | None, str], Awaitable[None]]
"""Where a watch sends each event as it happens: (events so far, total (None), the event's line)."""


class _Watch:
    """The events of one watch over every database, each also reported as it happens."""

    def __init__(self, report: Report) -> None:
        self.report = report
        self.events: deque[dict[str, Any]] = deque(maxlen=WATCH_EVENTS_KEPT)
        self.seen = 0

    async def emit(self, chunk: Chunk) -> None:
        from lodestar.runtime.chunks.lines import chunk_line

        self.seen += 1
        self.events.append(chunk.model_dump(mode="json"))
        await self.report(self.seen, None, chunk_line(chunk))


async def watch(
    managers: list[BackgroundTaskManager], filters: dict[str, str], timeout_s: float | None, report: Report
) -> WatchResult:
    """The chunks of matching tasks until none is pending or running (idle) or the timeout (None: none) passes;
    `report` gets each as it happens (the MCP tool's progress, `lodestar-mcp tasks watch`'s lines)."""
    seen = _Watch(report)
    idle: list[bool] = []
    with anyio.move_on_after(timeout_s):
        async with anyio.create_task_group() as group:
            for manager in managers:
                group.start_soon(_watch_one, manager, filters, seen, idle)
    return WatchResult(events=list(seen.events), idle=len(idle) == len(managers), dropped=seen.seen - len(seen.events))


async def _watch_one(manager: BackgroundTaskManager, filters: dict[str, str], seen: _Watch, idle: list[bool]) -> None:
    """The subscription opens before the first look at the tasks, so an end in between is seen. It takes every
    status: a watched pending task leaves the filter by starting, and the count is read again. A task reported
    running is watched to its end even when the count, read after the end was committed, is already 0: its end's
    update is on its way."""
    from lodestar.background.chunks import chunk_of, running_chunk
    from lodestar.storage.tasks import TaskFilter

    where = TaskFilter(**filters)
    await manager.start()
    subscription = manager.subscribe(TaskFilter(**{**filters, "status": None}).matches)
    unended: set[str] = set()  # reported running, their end not yet
    try:
        if where.status in (None, "running"):
            running = await manager.list_tasks(page=0, per_page=WATCH_EVENTS_KEPT, **{**filters, "status": "running"})
            for task in reversed(running.tasks):
                unended.add(task.id)
                await seen.emit(running_chunk(task))
        done = await _active(manager, filters) == 0
        while not done or unended:
            update = await subscription.get()
            chunk = chunk_of(update) if where.matches(update.task) or update.task.terminal else None
            if chunk is not None:
                await seen.emit(chunk)
            if update.kind == "running" and chunk is not None:
                unended.add(update.task.id)
            elif update.task.terminal:
                unended.discard(update.task.id)
            if update.kind != "output":  # output changes no count
                done = await _active(manager, filters) == 0
        idle.append(True)
    finally:
        subscription.close()


def _watch_text(result: WatchResult, timeout_s: float) -> str:
    ended = "every matching task has ended" if result.idle else f"tasks still pending or running after {timeout_s:g} s"
    kept = f" (the last {len(result.events)} are in events)" if result.dropped else ""
    lines = [f"{len(result.events) + result.dropped} events{kept}; {ended}"]
    lines += [f"{event['type']} {json.dumps(event.get('payload', {}), default=str)[:200]}" for event in result.events]
    return "\n".join(lines)


def register_task_tools(server: MCPServer, managers: Managers) -> None:
    @server.tool(annotations=READ_ONLY)
    async def list_background_tasks(
        status: Status = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        thread_id: ThreadId = None,
        resource_id: ResourceId = None,
        tool_name: ToolName = None,
        limit: Annotated[int, Field(ge=1, le=100, description="Number of tasks")] = 20,
        offset: Annotated[int, Field(ge=0, description="Skip this many tasks, to page results")] = 0,
    ) -> Annotated[CallToolResult, TaskList]:
        """List background tasks, newest first, with their status, arguments and results; total counts every
        match. Read one with get_background_task(task_id)."""
        filters = task_filters(
            status=status,
            agent_id=agent_id,
            run_id=run_id,
            thread_id=thread_id,
            resource_id=resource_id,
            tool_name=tool_name,
        )
        result = await list_all(await managers(), filters, limit, offset)
        shown = f"tasks {offset + 1}-{offset + len(result.tasks)} of {result.total}" if result.tasks else "no tasks"
        return _answer(result, "\n".join([shown, *(task.line() for task in result.tasks)]))

    @server.tool(annotations=READ_ONLY)
    async def get_background_task(task_id: TaskId) -> Annotated[CallToolResult, TaskInfo]:
        """Read one background task: its status, arguments, result or error, retries and times."""
        _, task = await find_task(await managers(), task_id)
        info = TaskInfo.of(task)
        return _answer(info, f"{info.line()}\nresult: {json.dumps(info.result, default=str)}")

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True, open_world_hint=False))
    async def cancel_background_task(task_id: TaskId) -> Annotated[CallToolResult, CancelResult]:
        """Cancel a pending or running background task. A running one stops shortly after: its status is running
        until then (get_background_task or watch_background_tasks shows the end)."""
        manager, before = await find_task(await managers(), task_id)
        task = await manager.cancel(task_id) or before
        return _answer(CancelResult(task_id=task_id, status=task.status), cancel_text(task_id, before, task))

    @server.tool(annotations=READ_ONLY)
    async def watch_background_tasks(
        ctx: Context,
        status: Status = None,
        agent_id: AgentId = None,
        run_id: RunId = None,
        thread_id: ThreadId = None,
        resource_id: ResourceId = None,
        tool_name: ToolName = None,
        timeout_s: Annotated[
            float, Field(gt=0, le=WATCH_TIMEOUT_MAX_S, description="Return after this many seconds at most")
        ] = 60,
    ) -> Annotated[CallToolResult, WatchResult]:
        """Wait for matching background tasks to end, sending each of their events (running, output, completed,
        failed, cancelled) as a progress notification. Returns when none is pending or running (idle) or when
        timeout_s passes; the result holds the events, the last 500 at most."""
        filters = task_filters(
            status=status,
            agent_id=agent_id,
            run_id=run_id,
            thread_id=thread_id,
            resource_id=resource_id,
            tool_name=tool_name,
        )
        result = await watch(await managers(), filters, timeout_s, ctx.report_progress)
        return _answer(result, _watch_text(result, timeout_s))
