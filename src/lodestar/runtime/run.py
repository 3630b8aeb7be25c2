"""One agent run: the step loop from input to final answer, emitting chunks as it goes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import anyio
from pydantic_core import to_jsonable_python

from .answer import Answer, PendingCall
from .chunks import (
    Chunk,
    ErrorChunk,
    FinishChunk,
    ObjectResultChunk,
    ReasoningDeltaChunk,
    StartChunk,
    StepFinishChunk,
    StepStartChunk,
    TextDeltaChunk,
    ToolErrorChunk,
    ToolResultChunk,
    TripwireChunk,
    discard,
)
from .context import ToolContext
from .memory import Memory
from .messages import Message, ToolResultPart, new_id, text_message, to_messages
from .models import resolve_model
from .models.base import (
    CallContext,
    Finish,
    Model,
    ModelError,
    ModelRequest,
    ModelSettings,
    guarded_stream,
)
from .options import RunOptions
from .processors import ProcessorRunner, TripWire
from .result import RunError, RunResult, StepResult, ToolCallRecord, ToolResultRecord
from .structured import StructuredOutput, StructuredOutputError
from .tools import Tool, ToolArgumentsError, tool_map

if TYPE_CHECKING:
    from .agent import Agent

logger = logging.getLogger("lodestar.runtime")
Sink = Callable[[Chunk], Awaitable[None]]


class _Retry(Exception):
    pass


class Run:
    def __init__(self, agent: Agent, messages: Any, options: RunOptions, sink: Sink = discard) -> None:
        self.agent = agent
        self.options = options
        self.sink = sink
        self.input = to_messages(messages)
        self.run_id = options.run_id or new_id("run")
        self.model: Model = resolve_model(options.model or agent.model_spec())
        self.tools: dict[str, Tool] = agent.tool_map()
        self.tool_choice = options.tool_choice or "auto"
        self.settings = options.model_settings or ModelSettings()
        self.max_steps = options.max_steps or agent.max_steps
        self.max_retries = _first(options.max_processor_retries, agent.max_processor_retries, 0)
        self.structured = StructuredOutput(options.structured_output) if options.structured_output else None
        self.memory: Memory | None = None
        self.result = RunResult(run_id=self.run_id, agent_id=agent.id, resource_id=options.resource)
        self.processors = ProcessorRunner(
            inputs=_first(options.input_processors, agent.input_processors),
            outputs=_first(options.output_processors, agent.output_processors),
            run_id=self.run_id,
            agent_id=agent.id,
            request_context=options.request_context,
        )
        self.system: str | None = None
        self.conversation: list[Message] = []
        self.new_messages: list[Message] = []
        self._texts: dict[str | None, list[str]] = {}  # each text block's text after output processors
        self._reasoning: list[str] = []

    async def emit(self, part: Chunk) -> None:
        if self.processors.has("process_output_stream"):
            processed = await self.processors.stream(part)
            if processed is None:
                return
            part = processed
        if isinstance(part, TextDeltaChunk):
            self._texts.setdefault(part.payload.id, []).append(part.payload.text)
        elif isinstance(part, ReasoningDeltaChunk):
            self._reasoning.append(part.payload.text)
        await self.sink(part)

    async def execute(self) -> RunResult:
        await self._open_memory()
        ids = {"agent_id": self.agent.id, "thread_id": self.result.thread_id, "resource_id": self.result.resource_id}
        await self.emit(StartChunk(run_id=self.run_id, payload=ids))
        save = True
        try:
            await self._prepare()
            await self._loop()
            await self._parse_structured()
            self.new_messages = await self.processors.output_result(self.new_messages, self.result)
        except TripWire as exc:
            save = False
            self.result.tripwire, self.result.finish_reason = exc.info, "tripwire"
            await self.sink(TripwireChunk(run_id=self.run_id, payload=exc.info.model_dump()))
        except (ModelError, StructuredOutputError) as exc:
            await self._fail(exc)
        finally:
            self.result.messages = self.new_messages
            if save:  # a cancelled run still keeps its finished steps: the save runs to its end regardless
                await asyncio.shield(asyncio.ensure_future(self._save()))
        await self.sink(FinishChunk(run_id=self.run_id, payload=self._finish_payload()))
        return self.result

    async def _open_memory(self) -> None:
        """Caller mistakes (no memory, a thread of another resource) raise before the run starts."""
        opts = self.options
        if opts.thread is None and opts.resource is None:
            return
        self.memory = self.agent.get_memory()
        first_text = next((m.text for m in self.input if m.role == "user"), "")
        thread = await self.memory.open_thread(opts.thread, opts.resource, first_text)
        self.result.thread_id, self.result.resource_id = thread.id, thread.resource_id or opts.resource

    async def _prepare(self) -> None:
        history: list[Message] = []
        if self.memory and self.result.thread_id:
            history = await self.memory.history(self.result.thread_id, self.options.last_messages)
        system = await self.agent.resolve_instructions(self.options)
        messages, self.system = await self.processors.input(history + self.input, system or None)
        known = {m.id for m in history}
        self.conversation = list(messages)
        # Saved: the (processed) input. System messages a processor adds are per-run context, not history.
        self.new_messages = [m for m in messages if m.id not in known and m.role != "system"]

    async def _loop(self) -> None:
        step_number = 0
        while True:
            try:
                step = await self._step(step_number)
            except TripWire as exc:
                if not exc.info.retry or self.processors.retry_count >= self.max_retries:
                    raise
                await self._retry_with_feedback(exc)
                continue
            step_number += 1
            if not step.tool_calls or step_number >= self.max_steps:
                return

    async def _retry_with_feedback(self, exc: TripWire) -> None:
        """Show the model its rejected answer and the processor's reason, then run the step again."""
        self.processors.retry_count += 1
        rejected = self._text()
        if rejected:
            self.conversation.append(text_message("assistant", rejected))
        self.conversation.append(
            text_message("user", f"[feedback] Your previous answer was rejected: {exc.info.reason}")
        )
        retry = {"step_result": {"reason": "retry", "is_continued": True}}
        await self.sink(StepFinishChunk(run_id=self.run_id, payload=retry))

    async def _step(self, number: int) -> StepResult:
        self._texts, self._reasoning = {}, []
        changes = await self._step_changes(number)
        model = resolve_model(changes["model"]) if changes.get("model") else self.model
        tools = tool_map(changes["tools"]) if "tools" in changes else self.tools
        if "messages" in changes:
            self.conversation = list(changes["messages"])
        request = self._request(model, tools, changes.get("tool_choice") or self.tool_choice, changes.get("system"))
        message_id = new_id("msg")
        start = {"message_id": message_id, "request": _describe(model), "warnings": []}
        await self.emit(StepStartChunk(run_id=self.run_id, payload=start))
        answer, calls = await self._call_model(model, request)
        finish = answer.finish
        self.result.usage += finish.usage  # billed even if a processor rejects the answer
        text, reasoning = self._text(), "".join(self._reasoning)
        call_parts = [c.part() for c in calls]
        if self.processors.has("process_output_step"):
            await self.processors.output_step(
                step_number=number,
                text=text,
                tool_calls=call_parts,
                finish_reason=finish.reason,
                messages=list(self.conversation),
            )
        assistant = Message(id=message_id, role="assistant", content=answer.content(self._texts))
        results = await self._run_tools(calls, tools) if calls else []
        turn = [assistant] + ([Message(role="tool", content=results)] if results else [])
        self.conversation += turn
        self.new_messages += turn
        step = StepResult(
            step_number=number,
            text=text,
            reasoning=reasoning,
            tool_calls=[ToolCallRecord(tool_call_id=c.id, tool_name=c.name, args=c.args) for c in calls],
            tool_results=[_record(r, c) for r, c in zip(results, calls, strict=True)],
            finish_reason=finish.reason,
            usage=finish.usage,
        )
        self.result.steps.append(step)
        self.result.text, self.result.finish_reason = text, finish.reason
        await self.emit(StepFinishChunk(run_id=self.run_id, payload=_step_payload(step, message_id, finish, model)))
        return step

    async def _step_changes(self, number: int) -> dict[str, Any]:
        """What input-step processors change for this step (nothing to copy when there are none)."""
        if not self.processors.has("process_input_step"):
            return {}
        return await self.processors.input_step(
            step_number=number,
            messages=list(self.conversation),
            system=self.system,
            model=self.model,
            tools=dict(self.tools),
            tool_choice=self.tool_choice,
        )

    def _request(self, model: Model, tools: dict[str, Tool], tool_choice: str, system: str | None) -> ModelRequest:
        system = system if system is not None else self.system
        hoisted = [m.text for m in self.conversation if m.role == "system"]
        response_format = None
        if self.structured:
            if model.supports_json_schema:
                response_format = self.structured.response_format()
            else:
                hoisted.append(self.structured.instructions())
        prompt = "\n\n".join(p for p in [system or "", *hoisted] if p) or None
        return ModelRequest(
            system=prompt,
            messages=[m for m in self.conversation if m.role != "system"],
            tools=[t.spec for t in tools.values()],
            tool_choice=tool_choice if tools else "none",
            response_format=response_format,
            settings=self.settings,
        )

    async def _call_model(self, model: Model, request: ModelRequest) -> tuple[Answer, list[PendingCall]]:
        answer = Answer(self.run_id, self.emit)
        context = CallContext(run_id=self.run_id, sampler=self.options.sampler)
        try:
            async for event in guarded_stream(model, request, context):
                await answer.read(event)
        except ModelError:
            await answer.close_blocks()
            raise
        return answer, await answer.end()

    def _text(self) -> str:
        return "".join(text for pieces in self._texts.values() for text in pieces)

    async def _run_tools(self, calls: list[PendingCall], tools: dict[str, Tool]) -> list[ToolResultPart]:
        """Every call of a step runs at once; results keep the order of the calls."""
        if len(calls) == 1:
            return [await self._run_tool(calls[0], tools.get(calls[0].name), tools)]
        results: list[ToolResultPart | None] = [None] * len(calls)
        fatal: list[BaseException] = []  # a tripwire or model error ends the step: the first one wins

        async def run_one(index: int, call: PendingCall) -> None:
            try:
                results[index] = await self._run_tool(call, tools.get(call.name), tools)
            except (TripWire, ModelError) as exc:
                fatal.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for index, call in enumerate(calls):
                group.start_soon(run_one, index, call)
        if fatal:
            raise fatal[0]
        return [r for r in results if r is not None]

    async def _run_tool(self, call: PendingCall, tool: Tool | None, tools: dict[str, Tool]) -> ToolResultPart:
        error = call.error
        value: Any = None
        if error is None and tool is None:
            known = ", ".join(sorted(tools)) or "none"
            error = f"unknown tool {call.name!r}; the tools you can call are: {known}"
        elif error is None and tool is not None:
            try:
                value = await tool.execute(call.args, self._tool_context(call))
            except ToolArgumentsError as exc:
                error = str(exc)
            except (TripWire, ModelError):
                raise
            except Exception as exc:
                logger.info("tool %s raised %s: %s", call.name, type(exc).__name__, exc)
                error = f"tool {call.name} failed: {type(exc).__name__}: {exc}"
        base = {"tool_call_id": call.id, "tool_name": call.name, "args": call.args}
        if error is not None:
            failed = {**base, "error": {"message": error}}
            await self.emit(ToolErrorChunk(run_id=self.run_id, payload=failed))
            return ToolResultPart(tool_call_id=call.id, tool_name=call.name, result=error, is_error=True)
        done = {**base, "result": value, "is_error": False}
        await self.emit(ToolResultChunk(run_id=self.run_id, payload=done))
        return ToolResultPart(tool_call_id=call.id, tool_name=call.name, result=value)

    def _tool_context(self, call: PendingCall) -> ToolContext:
        return ToolContext(
            run_id=self.run_id,
            agent_id=self.agent.id,
            tool_call_id=call.id,
            tool_name=call.name,
            thread_id=self.result.thread_id,
            resource_id=self.result.resource_id,
            request_context=self.options.request_context,
            emit=self.emit,
            sampler=self.options.sampler,
        )

    async def _parse_structured(self) -> None:
        if self.structured is None:
            return
        if self.result.steps and self.result.steps[-1].tool_calls:
            raise StructuredOutputError(
                f"the run stopped after {len(self.result.steps)} steps while still calling tools, so there is no "
                f"final answer to parse into {self.structured.name}; raise max_steps"
            )
        self.result.object = self.structured.parse(self.result.text)
        await self.emit(ObjectResultChunk(run_id=self.run_id, object=_jsonable(self.result.object)))

    async def _fail(self, exc: Exception) -> None:
        error = exc.payload() if isinstance(exc, ModelError) else {"message": str(exc)}
        self.result.error = RunError.model_validate(error)
        self.result.finish_reason = "error"
        logger.warning("run %s of agent %s failed: %s", self.run_id, self.agent.id, exc)
        await self.sink(ErrorChunk(run_id=self.run_id, payload={"error": error}))

    async def _save(self) -> None:
        if self.memory is None or self.result.thread_id is None:
            return
        try:
            await self.memory.save(self.result.thread_id, self.new_messages)
        except Exception:
            logger.exception(
                "run %s: could not save %d messages to thread %s",
                self.run_id,
                len(self.new_messages),
                self.result.thread_id,
            )
            raise

    def _finish_payload(self) -> dict[str, Any]:
        result = self.result
        return {
            "step_result": {"reason": result.finish_reason},
            "output": {"text": result.text, "usage": result.usage.model_dump(), "object": _jsonable(result.object)},
            "metadata": {
                "agent_id": result.agent_id,
                "thread_id": result.thread_id,
                "resource_id": result.resource_id,
                "steps": len(result.steps),
            },
        }


def _first(*values: Any) -> Any:
    return next((v for v in values if v is not None), None)


def _record(result: ToolResultPart, call: PendingCall) -> ToolResultRecord:
    return ToolResultRecord(
        tool_call_id=result.tool_call_id,
        tool_name=result.tool_name,
        args=call.args,
        result=result.result,
        is_error=result.is_error,
    )


def _describe(model: Model) -> dict[str, str]:
    return {"provider": model.provider, "model_id": model.model_id}


def _step_payload(step: StepResult, message_id: str, finish: Finish, model: Model) -> dict[str, Any]:
    """Payloads are given as dicts of Python names: pydantic-core builds the nested models in one pass."""
    outcome = {"reason": finish.reason, "raw_reason": finish.raw_reason, "is_continued": bool(step.tool_calls)}
    return {
        "message_id": message_id,
        "step_result": outcome,
        "output": {"text": step.text, "usage": step.usage.model_dump()},
        "metadata": {"step_number": step.step_number, **_describe(model)},
    }


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, fallback=str)
