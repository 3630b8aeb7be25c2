"""Agent: instructions, a model, tools and memory, run by generate(), stream() or stream_until_idle()."""

from __future__ import annotations

import asyncio
import inspect
import os
import re
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .chunks import Chunk
from .memory import Memory, ThreadError
from .messages import MessageInput
from .models.base import Model
from .options import RunOptions
from .result import RunResult
from .run import Run
from .tools import Tool, tool_map

if TYPE_CHECKING:
    from ..storage import Storage

AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}\Z")
Instructions = str | Callable[[Mapping[str, Any]], str | Awaitable[str]]
_END = object()


class Agent:
    def __init__(
        self,
        id: str,
        *,
        name: str | None = None,
        description: str = "",
        instructions: Instructions = "",
        model: str | Model | None = None,
        tools: Sequence[Tool | Callable[..., Any]] | Mapping[str, Tool | Callable[..., Any]] = (),
        agents: Sequence[Agent] = (),
        memory: Memory | None = None,
        input_processors: Sequence[Any] = (),
        output_processors: Sequence[Any] = (),
        max_steps: int = 5,
        max_processor_retries: int | None = None,
        default_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not AGENT_ID.match(id):
            raise ValueError(f"agent id {id!r} must be 1-48 letters, digits, '_' or '-' (it names MCP tools)")
        if max_steps < 1:
            raise ValueError(f"max_steps must be at least 1, got {max_steps}")
        self.id = id
        self.name = name or id
        self.description = description
        self.instructions = instructions
        self.model = model
        self.memory = memory
        self.input_processors = list(input_processors)
        self.output_processors = list(output_processors)
        self.max_steps = max_steps
        self.max_processor_retries = max_processor_retries
        self.default_options = dict(default_options or {})
        RunOptions.merge(self.default_options, {})  # a typo in default_options fails here, not on the first call
        self.storage: Storage | None = None
        self.tools = tool_map(tools)
        self.agents = list(agents)
        for sub in self.agents:
            from .subagents import agent_tool

            delegate = agent_tool(sub)
            if delegate.name in self.tools:
                raise ValueError(f"agent {id}: subagent tool {delegate.name!r} clashes with a tool of the same name")
            self.tools[delegate.name] = delegate

    def __repr__(self) -> str:
        return f"Agent({self.id!r})"

    def model_spec(self) -> str | Model:
        """The agent's model, else LODESTAR_MODEL, else the MCP client's model through sampling."""
        return self.model or os.environ.get("LODESTAR_MODEL") or "sampling"

    def tool_map(self) -> dict[str, Tool]:
        return dict(self.tools)

    def bind_storage(self, storage: Storage) -> None:
        """Called by the app: memory without a storage of its own uses the app's."""
        self.storage = storage
        if self.memory is not None:
            self.memory.bind(storage)
        for sub in self.agents:
            if sub.storage is None:
                sub.bind_storage(storage)

    def get_memory(self) -> Memory:
        if self.memory is None and self.storage is not None:
            self.memory = Memory(self.storage)
        if self.memory is None:
            raise ThreadError(
                f"agent {self.id} has no memory, so thread and resource cannot be used: pass "
                "memory=Memory(SQLiteStorage('lodestar.db')) to Agent, or add the agent to a Lodestar app"
            )
        return self.memory

    async def resolve_instructions(self, options: RunOptions) -> str:
        if options.instructions is not None:
            return options.instructions
        if callable(self.instructions):
            text = self.instructions(options.request_context)
            return await text if inspect.isawaitable(text) else text
        return self.instructions

    def _options(self, given: Mapping[str, Any]) -> RunOptions:
        return RunOptions.merge(self.default_options, given)

    async def generate(self, messages: MessageInput, **options: Any) -> RunResult:
        """Run to the end and return the result; provider failures land in `result.error`, not raised."""
        return await Run(self, messages, self._options(options)).execute()

    def stream(self, messages: MessageInput, **options: Any) -> AgentStream:
        """Chunks as they happen: `async for chunk in agent.stream(...)`, then `await stream.result()`.

        Use `async with agent.stream(...) as stream:` to stop the run as soon as you leave the block early.
        """
        return AgentStream(self, messages, self._options(options))

    def stream_until_idle(self, messages: MessageInput, **options: Any) -> AgentStream:
        """Like stream(); with background tasks it also waits for them (up to `max_idle_ms`)."""
        return self.stream(messages, **options)


class AgentStream:
    """An async iterator of one run's chunks; the run starts on first iteration and stops when the stream closes."""

    def __init__(self, agent: Agent, messages: MessageInput, options: RunOptions, *, buffer: int = 256) -> None:
        self._run = Run(agent, messages, options)
        self._buffer = buffer
        self._started = False
        self._chunks: AsyncGenerator[Chunk, None] | None = None
        self._result: RunResult | None = None
        self._error: Exception | None = None

    @property
    def run_id(self) -> str:
        return self._run.run_id

    def __aiter__(self) -> AsyncIterator[Chunk]:
        if self._started:
            raise RuntimeError("this stream was already iterated: call agent.stream() again for a new run")
        self._started = True
        self._chunks = self._iterate()
        return self._chunks

    async def __aenter__(self) -> AgentStream:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the run now if it is still going. Leaving an `async for` early does not stop it by itself:
        the run goes on until the stream is closed or collected, so prefer `async with`."""
        if self._chunks is not None:
            await self._chunks.aclose()

    async def _iterate(self) -> AsyncGenerator[Chunk, None]:
        queue: asyncio.Queue[Any] = asyncio.Queue(self._buffer)
        self._run.sink = queue.put
        task = asyncio.create_task(self._produce(queue))
        try:
            while (item := await queue.get()) is not _END:
                yield item
            try:
                self._result = await task
            except Exception as exc:
                self._error = exc
                raise
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})  # never swallows the consumer's own cancellation
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: the consumer has seen it, or has gone

    async def _produce(self, queue: asyncio.Queue[Any]) -> RunResult:
        """Runs the agent; the end marker goes in only when the run ended by itself (a cancelled run has
        no reader left, and waiting to put into a full queue would never end)."""
        try:
            result = await self._run.execute()
        except asyncio.CancelledError:
            raise
        except BaseException:
            await queue.put(_END)
            raise
        await queue.put(_END)
        return result

    async def result(self) -> RunResult:
        """The run's result, reading whatever of the stream is left; re-raises what ended the run."""
        if self._error is not None:
            raise self._error
        if self._result is None:
            if self._started:
                raise RuntimeError("the stream was left before its end: iterate it to the end first")
            async for _ in self:
                pass
        assert self._result is not None
        return self._result

    def __getattr__(self, name: str) -> Any:
        """`stream.text`, `stream.usage`, ... once the stream has ended."""
        if name.startswith("_") or (name not in RunResult.model_fields and name not in ("tool_calls", "tool_results")):
            raise AttributeError(name)
        if self._result is None:
            raise RuntimeError(
                f"stream.{name} is known once the stream has ended: iterate it, or await stream.result()"
            )
        return getattr(self._result, name)
