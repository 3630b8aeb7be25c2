"""BackgroundDispatcher: an agent's tool calls, each run inline or handed to the manager as a background task.

Whether a call goes to the background is resolved per call, in Mastra's order: the model's `_background` in the
call's arguments, the agent's `background_tasks.tools` entry, the tool's own `background`, then the manager's
defaults; an agent with `disabled` runs everything inline. The loop gets its tool result at once: the task's id.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError
from pydantic_core import to_jsonable_python

from ..arguments import argument_problems
from ..runtime.background import BACKGROUND_TASK_KEY, AgentBackgroundConfig, ToolBackgroundConfig
from ..runtime.chunks import BackgroundTaskProgressChunk, BackgroundTaskStartedChunk
from ..runtime.context import ToolContext
from ..runtime.dispatch import ToolOutcome
from ..runtime.messages import ToolCallPart
from ..runtime.models.base import ToolSpec
from ..runtime.tools import Tool, ToolArgumentsError
from ..storage.models import utcnow
from ..storage.tasks import BackgroundTask
from .idle import UntilIdle
from .manager import BackgroundTaskManager, tool_result_of
from .resolution import Resolved, resolve

if TYPE_CHECKING:
    from ..runtime.agent import Agent
    from ..runtime.run import Run
    from ..runtime.stream import Producer

log = logging.getLogger("lodestar.background")
OVERRIDE = "_background"
OVERRIDE_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": (
        "Optional. Run this call as a background task: you get a task id at once and the result arrives "
        "later. Give only what you want to change."
    ),
    "properties": {
        "enabled": {"type": "boolean", "description": "true: run in the background; false: wait for the result"},
        "timeoutMs": {"type": "integer", "minimum": 1, "description": "fail the task after this many ms"},
        "maxRetries": {"type": "integer", "minimum": 0, "description": "retries after a failure"},
        "waitTimeoutMs": {"type": "integer", "minimum": 0, "description": "wait this long for the result first"},
    },
    "additionalProperties": False,
}
RUNS_KEPT = 10_000


class BackgroundRejected(RuntimeError):
    """The limits are reached and backpressure is `reject`: the model reads this as the call's error."""


class BackgroundDispatcher:
    def __init__(self, manager: BackgroundTaskManager, agent_id: str, agent: AgentBackgroundConfig) -> None:
        self.manager = manager
        self.agent_id = agent_id
        self.agent = agent
        self._specs: dict[Tool, ToolSpec] = {}
        self._dispatched: dict[str, list[str]] = {}  # run id -> the tasks its calls started, until the run ends

    def spec(self, tool: Tool) -> ToolSpec:
        """Built once per tool: every step of every run hands the same spec to the model."""
        if self.agent.disabled or not self.manager.can_run(self.agent_id, tool):
            return tool.spec  # nothing this process cannot run is offered the override
        spec = self._specs.get(tool)
        if spec is None:
            schema = dict(tool.spec.input_schema)
            schema["properties"] = {**schema.get("properties", {}), OVERRIDE: OVERRIDE_SCHEMA}
            spec = self._specs[tool] = tool.spec.model_copy(update={"input_schema": schema})
        return spec

    async def after_run(self, run_id: str) -> None:
        """A task that ended before its run saved the call's first answer writes its result now (see
        BackgroundTaskManager.settle: whichever comes second of the save and the task's end writes it)."""
        task_ids = self._dispatched.pop(run_id, None)
        if not task_ids:
            return
        try:
            await self.manager.settle(task_ids)
        except Exception:  # the run has ended and saved: its outcome stands
            log.exception("run %s: writing its finished background tasks' results to its thread failed", run_id)

    def until_idle(self, agent: Agent, run: Run, options: Mapping[str, Any], max_idle_ms: int) -> Producer:
        return UntilIdle(self.manager, agent, run, options, max_idle_ms)

    def resolve(self, tool: Tool, override: ToolBackgroundConfig | None) -> Resolved:
        return resolve(tool, self.agent, self.manager.config, override)

    async def dispatch(self, call: ToolCallPart, tool: Tool, context: ToolContext) -> ToolOutcome:
        args = dict(call.args)
        plan = self.resolve(tool, _override(args.pop(OVERRIDE, None), tool.name))
        if not plan.enabled or not self._can_leave_the_step(tool, context):
            return ToolOutcome(await tool.execute(args, context))
        tool.validate(args)  # arguments that cannot work fail now, where the model can fix them
        task = self._task(call, tool, args, context, plan)
        waiting = self.manager.subscribe(lambda t: t.id == task.id and t.terminal) if plan.wait_timeout_ms else None
        try:
            backpressure = self.manager.config.backpressure
            admission = await self.manager.submit(task, require_slot=backpressure != "queue")
            if not admission.admitted:
                if backpressure == "fallback-sync":
                    return ToolOutcome(await tool.execute(args, context))
                raise BackgroundRejected(_full_message(self.manager, tool.name))
            started = any(t.id == task.id for t in admission.claimed)
            if context.thread_id is not None:  # only a thread keeps the first answer for a result to replace
                self._remember(context.run_id, task.id)
            await self._announce(task, context)
            if waiting is not None and plan.wait_timeout_ms is not None:
                ended = await _wait(waiting, plan.wait_timeout_ms)
                if ended is not None:
                    self.manager.mark_answered(task.id)
                    result, is_error = tool_result_of(ended)
                    return ToolOutcome(result, is_error=is_error)
            return ToolOutcome(_acknowledgement(task, started))
        finally:
            if waiting is not None:
                waiting.close()

    def _can_leave_the_step(self, tool: Tool, context: ToolContext) -> bool:
        """Not a call made inside a task (it runs in the task's foreground), nor one of a tool no process has, nor
        a subagent on the client's own model (reachable only during the call that asked)."""
        if BACKGROUND_TASK_KEY in context.request_context or not self.manager.can_run(self.agent_id, tool):
            return False
        return tool.delegates_to is None or tool.delegates_to.model_spec() != "sampling"

    def _task(
        self, call: ToolCallPart, tool: Tool, args: dict[str, Any], context: ToolContext, plan: Resolved
    ) -> BackgroundTask:
        return self.manager.new_task(
            self.agent_id,
            tool.name,
            args,
            tool_call_id=call.tool_call_id,
            run_id=context.run_id,
            thread_id=context.thread_id,
            resource_id=context.resource_id,
            timeout_ms=plan.timeout_ms,
            max_retries=plan.max_retries,
            context=_task_context(tool, context),
        )

    def _remember(self, run_id: str, task_id: str) -> None:
        self._dispatched.setdefault(run_id, []).append(task_id)
        while len(self._dispatched) > RUNS_KEPT:  # runs cancelled before they ended never claim theirs
            del self._dispatched[next(iter(self._dispatched))]

    async def _announce(self, task: BackgroundTask, context: ToolContext) -> None:
        started = {"task_id": task.id, "tool_name": task.tool_name, "tool_call_id": task.tool_call_id}
        await context.emit(BackgroundTaskStartedChunk(run_id=task.run_id, payload=started))
        running = self.manager.running(task.run_id)
        first = min((t.started_at or utcnow() for t in running), default=utcnow())
        progress = {
            "task_ids": [t.id for t in running],
            "running_count": len(running),
            "elapsed_ms": int((utcnow() - first).total_seconds() * 1000),
        }
        await context.emit(BackgroundTaskProgressChunk(run_id=task.run_id, payload=progress))


def _override(value: Any, tool_name: str) -> ToolBackgroundConfig | None:
    """The model's `_background`, checked: a mistake in it is the model's to fix, named like any argument."""
    if value is None:
        return None
    if not isinstance(value, Mapping):  # unknown names are the model's extra="forbid" error, with a "did you mean"
        allowed = ", ".join(OVERRIDE_SCHEMA["properties"])
        raise ToolArgumentsError(f"invalid arguments for tool {tool_name}: {OVERRIDE} takes an object of {allowed}")
    try:
        return ToolBackgroundConfig.model_validate(value)
    except ValidationError as exc:
        problems = argument_problems(exc.errors(), OVERRIDE_SCHEMA["properties"])
        raise ToolArgumentsError(f"invalid arguments for tool {tool_name}: {OVERRIDE}: {problems}") from None


def _task_context(tool: Tool, context: ToolContext) -> dict[str, Any]:
    """What the task needs of the call's context: the request context, and for a subagent the conversation."""
    kept: dict[str, Any] = {"request_context": to_jsonable_python(dict(context.request_context), fallback=str)}
    if tool.delegates_to is not None:
        kept["messages"] = [m.model_dump(mode="json") for m in context.messages]
        kept["step_number"] = context.step_number
    return kept


def _acknowledgement(task: BackgroundTask, started: bool) -> dict[str, Any]:
    state = "is running" if started else "is queued (the background task limits are reached)"
    return {
        "task_id": task.id,
        "status": "running" if started else "pending",
        "message": (
            f"{task.tool_name} {state} in the background as task {task.id}. Its result will replace this one when "
            "it finishes; do not call the tool again for the same input."
        ),
    }


def _full_message(manager: BackgroundTaskManager, tool_name: str) -> str:
    config = manager.config
    return (
        f"{tool_name} was not started: the background task limits are reached ({config.global_concurrency} at once, "
        f"{config.per_agent_concurrency} per agent) and backpressure is 'reject'. Try again once a task ends."
    )


async def _wait(subscription: Any, wait_ms: int) -> BackgroundTask | None:
    try:
        async with asyncio.timeout(wait_ms / 1000):
            update = await subscription.get()
    except TimeoutError:
        return None
    task: BackgroundTask = update.task
    return task
