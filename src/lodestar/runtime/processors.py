"""Processors: hooks that read, rewrite or stop a run's input and output.

A processor is any object with an `id` and some of these methods (sync or async), each taking
one argument object:

- `process_input(args)`: once, before the first step; return new messages or None.
- `process_input_step(args)`: before every step; return a `StepOverrides`/dict, a message list, or None.
- `process_output_stream(args)`: per chunk; return the chunk, a changed copy (`args.part.with_payload(...)`),
  or None to drop it.
- `process_output_step(args)`: after each model response, before its tools run.
- `process_output_result(args)`: once at the end; return new messages or None.

`args.abort(reason, retry=..., metadata=...)` stops the run with a tripwire; with `retry=True`
and retries left, the step runs again as Mastra runs it: the rejected answer is dropped and the reason
joins the conversation as a system message. Only consecutive retries count against
`max_processor_retries`: a step that passes resets the count.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from pydantic import BaseModel

from ..errors import InvalidTypeError
from .chunks import LIFECYCLE, BaseChunk, Chunk
from .messages import Message, ToolCallPart

HOOKS = (
    "process_input",
    "process_input_step",
    "process_output_stream",
    "process_output_step",
    "process_output_result",
)


class TripwireInfo(BaseModel):
    reason: str
    retry: bool = False
    metadata: Any = None
    processor_id: str | None = None


class TripWire(Exception):
    """Raised by `abort()`; the runtime turns it into a `tripwire` chunk and `result.tripwire`."""

    def __init__(self, reason: str, *, retry: bool = False, metadata: Any = None, processor_id: str | None = None):
        super().__init__(reason)
        self.info = TripwireInfo(reason=reason, retry=retry, metadata=metadata, processor_id=processor_id)


class Processor:
    """Optional base class: gives an `id` from the class name. Define only the hooks you need."""

    id: str = ""
    process_data_parts: bool = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.__dict__.get("id"):
            cls.id = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", cls.__name__).lower()


@dataclass(kw_only=True)
class ProcessorArgs:
    """What every hook receives: its own per-request `state`, the retry count (of the current step: it goes
    back to 0 once a step passes), and `abort`."""

    state: dict[str, Any]
    retry_count: int
    request_context: Mapping[str, Any]
    run_id: str
    agent_id: str

    def abort(self, reason: str = "Aborted by processor", *, retry: bool = False, metadata: Any = None) -> NoReturn:
        raise TripWire(reason, retry=retry, metadata=metadata)


@dataclass(kw_only=True)
class InputArgs(ProcessorArgs):
    messages: list[Message]
    system: str | None


@dataclass(kw_only=True)
class InputStepArgs(ProcessorArgs):
    step_number: int
    messages: list[Message]
    system: str | None
    model: Any
    tools: dict[str, Any]
    tool_choice: str


@dataclass(kw_only=True)
class OutputStreamArgs(ProcessorArgs):
    part: Chunk


@dataclass(kw_only=True)
class OutputStepArgs(ProcessorArgs):
    step_number: int
    text: str
    tool_calls: list[ToolCallPart]
    finish_reason: str
    messages: list[Message]


@dataclass(kw_only=True)
class OutputResultArgs(ProcessorArgs):
    messages: list[Message]
    result: Any


class InputResult(BaseModel):
    """What `process_input` may return instead of a plain message list, to change the system prompt too."""

    messages: list[Message]
    system: str | None = None


class StepOverrides(BaseModel):
    """What `process_input_step` may change for one step; unset fields stay as they were."""

    model_config = {"arbitrary_types_allowed": True, "extra": "forbid"}

    model: Any = None
    tools: Any = None
    tool_choice: str | None = None
    system: str | None = None
    messages: list[Message] | None = None


async def _call(processor: Any, hook: str, args: ProcessorArgs) -> Any:
    try:
        result = getattr(processor, hook)(args)
        if inspect.isawaitable(result):
            result = await result
    except TripWire as exc:
        exc.info.processor_id = exc.info.processor_id or _id(processor)
        raise
    return result


def _checked(part: Any, processor: Any) -> Chunk | None:
    """A processor's returned chunk, refused with its name when it is not a well-formed chunk."""
    if part is None or _well_formed(part):
        return part
    raise InvalidTypeError(
        f"processor {_id(processor)}: process_output_stream must return a chunk or None, got "
        f"{_describe(part)}; return args.part, None, or a copy such as args.part.with_payload(text=...)"
    )


def _well_formed(part: Any) -> bool:
    if not isinstance(part, BaseChunk):
        return False
    field = type(part).model_fields.get("payload")
    expected = field.annotation if field is not None else None
    return not isinstance(expected, type) or isinstance(getattr(part, "payload", None), expected)


def _describe(part: Any) -> str:
    if isinstance(part, BaseChunk):
        return f"a {part.type} chunk whose payload is a {type(getattr(part, 'payload', None)).__name__}"
    return f"a {type(part).__name__}"


def _overrides(result: Any) -> StepOverrides:
    """What `process_input_step` returned, as overrides: a plain message list (as in Mastra) is the messages."""
    if isinstance(result, StepOverrides):
        return result
    if isinstance(result, list | tuple):
        return StepOverrides(messages=list(result))
    return StepOverrides.model_validate(result)


def _id(processor: Any) -> str:
    return getattr(processor, "id", "") or type(processor).__name__


@dataclass
class ProcessorRunner:
    """Runs one request's processors in order, keeping each one's state for the whole request."""

    inputs: Sequence[Any]
    outputs: Sequence[Any]
    run_id: str
    agent_id: str
    request_context: Mapping[str, Any]
    retry_count: int = 0
    states: dict[int, dict[str, Any]] = field(default_factory=dict)  # per processor instance

    def __post_init__(self) -> None:
        """Which processors implement which hook, worked out once rather than per step or chunk."""
        self.hooks = {
            name: [p for p in (self.inputs if name.startswith("process_input") else self.outputs) if hasattr(p, name)]
            for name in HOOKS
        }

    def has(self, hook: str) -> bool:
        return bool(self.hooks[hook])

    def _base(self, processor: Any) -> dict[str, Any]:
        return {
            "state": self.states.setdefault(id(processor), {}),
            "retry_count": self.retry_count,
            "request_context": self.request_context,
            "run_id": self.run_id,
            "agent_id": self.agent_id,
        }

    async def input(self, messages: list[Message], system: str | None) -> tuple[list[Message], str | None]:
        for processor in self.hooks["process_input"]:
            args = InputArgs(**self._base(processor), messages=messages, system=system)
            result = await _call(processor, "process_input", args)
            if isinstance(result, InputResult):
                messages, system = result.messages, result.system if result.system is not None else system
            elif result is not None:
                messages = list(result)
        return messages, system

    async def input_step(self, **fields: Any) -> dict[str, Any]:
        """Each processor sees the previous ones' changes; returns only what changed."""
        changes: dict[str, Any] = {}
        for processor in self.hooks["process_input_step"]:
            result = await _call(processor, "process_input_step", InputStepArgs(**self._base(processor), **fields))
            if result is not None:
                step = _overrides(result)
                change = {name: getattr(step, name) for name in step.model_fields_set}
                changes.update(change)
                fields.update(change)
        return changes

    async def stream(self, part: Chunk) -> Chunk | None:
        if part.type in LIFECYCLE:
            return part
        for processor in self.hooks["process_output_stream"]:
            if part.is_data and not getattr(processor, "process_data_parts", False):
                continue
            args = OutputStreamArgs(**self._base(processor), part=part)
            changed = _checked(await _call(processor, "process_output_stream", args), processor)
            if changed is None:
                return None
            part = changed
        return part

    async def output_step(self, **fields: Any) -> None:
        for processor in self.hooks["process_output_step"]:
            await _call(processor, "process_output_step", OutputStepArgs(**self._base(processor), **fields))

    async def output_result(self, messages: list[Message], result: Any) -> list[Message]:
        for processor in self.hooks["process_output_result"]:
            args = OutputResultArgs(**self._base(processor), messages=messages, result=result)
            changed = await _call(processor, "process_output_result", args)
            if changed is not None:
                messages = list(changed)
        return messages
