"""Agent: instructions, a model, tools and memory, run by generate(), stream() or stream_until_idle()."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import InvalidValueError
from .background import AgentBackgroundArg, agent_background_config
from .dispatch import INLINE, ToolDispatcher
from .memory import Memory, ThreadError
from .messages import Message, MessageInput
from .models import resolve_model
from .models.base import Model, ModelSettings
from .options import RunOptions
from .plan import Instructions, RunPlan
from .result import RunResult
from .run import Run
from .stream import AgentStream
from .structured import StructuredOutput
from .subagents import NO_DELEGATION_HOOKS, Delegation, delegation_tool
from .tools import Tool, tool_map

if TYPE_CHECKING:
    from ..storage import Storage

AGENT_ID = re.compile(r"^[A-Za-z0-9_-]{1,48}\Z")


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
        tool_dispatcher: ToolDispatcher | None = None,
        delegation: Delegation | None = None,
        background_tasks: AgentBackgroundArg = None,
    ) -> None:
        if not AGENT_ID.match(id):
            raise InvalidValueError(f"agent id {id!r} must be 1-48 letters, digits, '_' or '-' (it names MCP tools)")
        if max_steps < 1:
            raise InvalidValueError(f"max_steps must be at least 1, got {max_steps}")
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
        self.tool_dispatcher: ToolDispatcher = tool_dispatcher or INLINE
        self.background_tasks = agent_background_config(background_tasks, id)
        self.storage: Storage | None = None
        self.tools = tool_map(tools)
        self.agents = list(agents)
        self.delegation = delegation or NO_DELEGATION_HOOKS
        for sub in self.agents:
            delegate = sub.as_tool(delegation=self.delegation)
            if delegate.name in self.tools:
                raise InvalidValueError(
                    f"agent {id}: subagent tool {delegate.name!r} clashes with a tool of the same name"
                )
            self.tools[delegate.name] = delegate

    def __repr__(self) -> str:
        return f"Agent({self.id!r})"

    def as_tool(
        self, name: str | None = None, description: str | None = None, *, delegation: Delegation | None = None
    ) -> Tool:
        """This agent as a tool for another agent: named `agent-<id>` and described by the agent's description
        unless told otherwise. The caller's model writes a `prompt`; the answer is this agent's text (or object).
        `delegation` is the caller's filter and hooks (a supervisor passes its own for its `agents`)."""
        return delegation_tool(
            self,
            name=name or f"agent-{self.id}",
            description=description or self.description or f"Delegate a task to the {self.name} agent.",
            delegation=delegation or NO_DELEGATION_HOOKS,
        )

    def model_spec(self) -> str | Model:
        """The agent's model, else LODESTAR_MODEL, else the MCP client's model through sampling."""
        return self.model or os.environ.get("LODESTAR_MODEL") or "sampling"

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

    def plan(self, options: RunOptions) -> RunPlan:
        """What a run with these options does: the call's options over the agent's settings. Caller mistakes
        (an unknown model, a thread without memory) raise here, before anything runs."""
        uses_memory = options.thread is not None or options.resource is not None
        return RunPlan(
            agent_id=self.id,
            model=resolve_model(options.model or self.model_spec()),
            tools=MappingProxyType(dict(self.tools)),
            tool_choice=options.tool_choice or "auto",
            settings=options.model_settings or ModelSettings(),
            instructions=options.instructions if options.instructions is not None else self.instructions,
            input_processors=tuple(_first(options.input_processors, self.input_processors)),
            output_processors=tuple(_first(options.output_processors, self.output_processors)),
            memory=self.get_memory() if uses_memory else None,
            thread=options.thread,
            resource=options.resource,
            last_messages=options.last_messages,
            max_steps=options.max_steps or self.max_steps,
            max_processor_retries=_first(options.max_processor_retries, self.max_processor_retries, 0),
            structured=StructuredOutput(options.structured_output) if options.structured_output else None,
            request_context=options.request_context,
            sampler=options.sampler,
            dispatcher=self.tool_dispatcher,
        )

    def run_of(self, messages: MessageInput, given: Mapping[str, Any], *, context: Sequence[Message] = ()) -> Run:
        """The run a call makes, not started; `context` is seen by the model before the input and not saved."""
        return self._run_with(messages, RunOptions.merge(self.default_options, given), context)

    def _run_with(self, messages: MessageInput, options: RunOptions, context: Sequence[Message] = ()) -> Run:
        return Run(self.plan(options), messages, run_id=options.run_id, context=context)

    async def generate(self, messages: MessageInput, **options: Any) -> RunResult:
        """Run to the end and return the result; provider failures land in `result.error`, not raised."""
        return await self._run_once(messages, options).execute()

    def _run_once(self, messages: MessageInput, options: Mapping[str, Any]) -> Run:
        if "max_idle_ms" in options:
            raise InvalidValueError(
                "max_idle_ms applies only to stream_until_idle(): generate() and stream() end with their run"
            )
        return self.run_of(messages, options)

    def stream(self, messages: MessageInput, **options: Any) -> AgentStream:
        """Chunks as they happen: `async for chunk in agent.stream(...)`, then `await stream.result()`.

        Use `async with agent.stream(...) as stream:` to stop the run as soon as you leave the block early.
        """
        run = self._run_once(messages, options)
        return AgentStream(run.execute, run_id=run.run_id)

    def stream_until_idle(self, messages: MessageInput, **options: Any) -> AgentStream:
        """Like stream(), and then, in an app with background tasks, the stream stays open while the tasks its
        turns dispatched run: each time some end, the agent runs again to read their results, until none is left
        or `max_idle_ms` (default 5 minutes) passes between turns. Without background tasks it is stream()."""
        merged = RunOptions.merge(self.default_options, options)
        run = self._run_with(messages, merged)
        producer = self.tool_dispatcher.until_idle(self, run, options, merged.max_idle_ms)
        return AgentStream(producer, run_id=run.run_id)


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)
