"""stream_until_idle: a run, then a turn for each batch of its background tasks that ended, until none is left.

One stream carries every turn and, live, the manager's chunks for the tasks those turns dispatched. After a turn,
the tasks that ended meanwhile have their outcomes written where the next turn reads them (the thread's memory,
or the conversation kept here when there is no thread), and the agent runs again with a note naming them. The
stream closes once nothing runs and nothing is queued for its turns, or after `max_idle_ms` between turns with
tasks still running (they go on; their results reach the thread when they end). One turn runs at a time.

Beyond Mastra's, the aggregates (`await stream.result()`: text, steps, tool calls, usage, background_tasks) cover
every turn, not only the first.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from ..runtime.chunks import BackgroundTaskStartedChunk, Chunk
from ..runtime.messages import Message, ToolResultPart
from ..runtime.result import RunResult
from ..runtime.run import Run, Sink
from ..storage.tasks import BackgroundTask
from .chunks import chunk_of
from .manager import BackgroundTaskManager, tool_result_of
from .pubsub import Update

if TYPE_CHECKING:
    from ..runtime.agent import Agent

CONTINUE_NOTE = "[background tasks finished] "  # + what ended; the model reads the results in the conversation


class UntilIdle:
    """The producer of a stream_until_idle stream (see the module docstring)."""

    def __init__(
        self, manager: BackgroundTaskManager, agent: Agent, first: Run, options: Mapping[str, Any], max_idle_ms: int
    ) -> None:
        self.manager = manager
        self.agent = agent
        self.first = first
        self.options = {k: v for k, v in options.items() if k not in ("run_id", "max_idle_ms")}
        self.max_idle_s = max_idle_ms / 1000
        self.runs = {first.run_id}
        self.outstanding: dict[str, BackgroundTask] = {}
        self.ended: list[BackgroundTask] = []
        self.tasks: dict[str, BackgroundTask] = {}
        self.conversation: list[Message] = []  # what a turn without a thread sees: every turn's messages
        self._changed = asyncio.Event()
        self._busy = False
        self._started: set[str] = set()  # tasks whose `background-task-started` the stream has carried
        self._held: dict[str, list[Chunk]] = {}  # the manager's chunks of a task, until then

    async def __call__(self, sink: Sink) -> RunResult:
        self.subscription = self.manager.subscribe(lambda task: task.run_id in self.runs)  # before any dispatch
        pump = asyncio.create_task(self._pump(sink))
        try:
            results = [await self._turn(self.first, sink)]
            while ended := await self._wait_for_ends():
                results.append(await self._turn(await self._next_run(ended), sink))
            return self._combined(results)
        finally:
            self.subscription.close()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    async def _turn(self, run: Run, sink: Sink) -> RunResult:
        async def forward(chunk: Chunk) -> None:
            await sink(chunk)
            if isinstance(chunk, BackgroundTaskStartedChunk):
                await self._release(chunk.payload.task_id, sink)

        result = await run.execute(forward)
        for task_id in list(self._held):  # a processor kept its start from the stream: its chunks go anyway
            await self._release(task_id, sink)
        self.conversation += result.messages
        return result

    async def _release(self, task_id: str, sink: Sink) -> None:
        self._started.add(task_id)
        for chunk in self._held.pop(task_id, []):
            await sink(chunk)

    async def _pump(self, sink: Sink) -> None:
        """Forwards the manager's chunks for this stream's tasks as they are committed, and keeps count."""
        async for update in self.subscription:
            self._busy = True
            self._note(update)
            chunk = chunk_of(update)
            if chunk is not None and update.task.id not in self._started:
                self._held.setdefault(update.task.id, []).append(chunk)  # the agent stream says it started first
            elif chunk is not None:
                await sink(chunk)
            self._busy = False
            self._changed.set()

    def _note(self, update: Update) -> None:
        task = update.task
        self.tasks[task.id] = task
        if task.terminal:
            if self.outstanding.pop(task.id, None) is not None:
                self.ended.append(task)
        elif update.kind in ("queued", "running"):
            self.outstanding[task.id] = task

    async def _wait_for_ends(self) -> list[BackgroundTask]:
        """The tasks that ended since the last turn, once there are any; empty when the stream is idle."""
        while True:
            while self._busy or not self.subscription.empty():
                await self._wait_changed(None)
            ended = [t for t in self.ended if not self.manager.answered(t.id)]  # not those a turn already read
            self.ended = []
            if ended:
                return ended
            if not self.outstanding:
                return []
            if not await self._wait_changed(self.max_idle_s):
                return []

    async def _wait_changed(self, timeout_s: float | None) -> bool:
        self._changed.clear()
        try:
            async with asyncio.timeout(timeout_s):
                await self._changed.wait()
        except TimeoutError:
            return False
        return True

    async def _next_run(self, ended: list[BackgroundTask]) -> Run:
        """The next turn: the outcomes are written where it reads them, and a note says what ended."""
        thread = self.first.state.thread_id
        if thread is not None:
            memory = self.agent.get_memory()
            for task in ended:
                await self.manager.record_result(memory, task)
        else:
            for task in ended:
                _replace_result(self.conversation, task)
        note = CONTINUE_NOTE + "; ".join(
            f"{t.tool_name} (task {t.id}, call {t.tool_call_id}): {t.status}" for t in ended
        )
        options = {**self.options, "thread": thread} if thread else self.options
        run = self.agent.run_of(note, options, context=() if thread else self.conversation)
        self.runs.add(run.run_id)
        return run

    def _combined(self, results: list[RunResult]) -> RunResult:
        """One result for every turn: its texts, steps, usage and messages, and the tasks they dispatched."""
        first, last = results[0], results[-1]
        usage = first.usage
        for result in results[1:]:
            usage = usage + result.usage
        return first.model_copy(
            update={
                "text": "\n\n".join(r.text for r in results if r.text),
                "steps": [step for r in results for step in r.steps],
                "usage": usage,
                "finish_reason": last.finish_reason,
                "tripwire": last.tripwire,
                "error": next((r.error for r in results if r.error is not None), None),
                "messages": [m for r in results for m in r.messages],
                "background_tasks": list(self.tasks.values()),
            }
        )


def _replace_result(conversation: list[Message], task: BackgroundTask) -> None:
    result, is_error = tool_result_of(task)
    for index in range(len(conversation) - 1, -1, -1):
        message = conversation[index]
        parts = [
            part.model_copy(update={"result": result, "is_error": is_error})
            if isinstance(part, ToolResultPart) and part.tool_call_id == task.tool_call_id
            else part
            for part in message.content
        ]
        if parts != message.content:
            conversation[index] = message.model_copy(update={"content": parts})
            return
