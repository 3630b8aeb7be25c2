"""One agent run: the step loop from input to final answer, emitting chunks as it goes.

A run follows its `RunPlan`, changes its `RunState` (and fills its `RunResult`), and each step ends in a
decision: `FinalAnswer`, `RunAgain` or `Stop`. Tool calls go through the plan's dispatcher.

Closed from outside (its stream closed, its caller cancelled), a run stops at once: it gives its tools
`CLOSE_GRACE_S` to stop, saves what was said before the close (whole steps: an answer with its tool results),
and from the close on nothing of it reaches the model, memory or the stream, even if a tool ignores the
cancellation and carries on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

import anyio
from pydantic_core import to_jsonable_python

from .answer import Answer, PendingCall
from .chunks import (
    Chunk,
    ErrorChunk,
    FinishChunk,
    ObjectResultChunk,
    ReasoningDeltaChunk,
    ReasoningEndChunk,
    StartChunk,
    StepFinishChunk,
    StepStartChunk,
    TextDeltaChunk,
    TextEndChunk,
    ToolErrorChunk,
    ToolResultChunk,
    TripwireChunk,
    discard,
)
from .context import ToolContext
from .dispatch import ToolOutcome
from .memory import Memory
from .messages import (
    Message,
    MessageInput,
    ToolCallPart,
    ToolResultPart,
    new_id,
    result_text,
    text_message,
    to_messages,
)
from .models import resolve_model
from .models.base import CallContext, Finish, Model, ModelError, ModelRequest, guarded_stream
from .plan import CUT_SHORT_HINTS, NextStep, RunAgain, RunPlan, RunState, Stop, decide
from .processors import ProcessorRunner, TripWire
from .result import RunError, RunResult, StepResult
from .structured import StructuredOutputError
from .tools import Tool, ToolArgumentsError, tool_map

logger = logging.getLogger("lodestar.runtime")
Sink = Callable[[Chunk], Awaitable[None]]
CLOSE_GRACE_S = 1.0  # how long a closed run waits for its tools to stop before it leaves them behind
RETRY_FEEDBACK = "[processor feedback] Your previous answer was not accepted: "  # + the processor's reason
_BLOCK_ENDS: dict[str, type[TextEndChunk] | type[ReasoningEndChunk]] = {
    "text-start": TextEndChunk,
    "reasoning-start": ReasoningEndChunk,
}
_TRACKED = frozenset({"text-delta", "reasoning-delta", "text-end", "reasoning-end", *_BLOCK_ENDS})


class Run:
    """`context`: messages the model sees before the input (and any thread history) that are not saved, as
    Mastra's `context` option; a subagent gets its supervisor's conversation this way."""

    def __init__(
        self, plan: RunPlan, messages: MessageInput, *, run_id: str | None = None, context: Sequence[Message] = ()
    ) -> None:
        self.plan = plan
        self.input = to_messages(messages)
        self.context = list(context)
        self.state = RunState(run_id=run_id or new_id("run"), agent_id=plan.agent_id, resource_id=plan.resource)
        self.result = RunResult(run_id=self.state.run_id, agent_id=plan.agent_id, resource_id=plan.resource)
        self.processors = ProcessorRunner(
            inputs=plan.input_processors,
            outputs=plan.output_processors,
            run_id=self.state.run_id,
            agent_id=plan.agent_id,
            request_context=plan.request_context,
        )
        self._processes_stream = self.processors.has("process_output_stream")
        self.sink: Sink = discard
        self.closed = False
        self._keep = True  # whether the run's messages are saved: not after a tripwire
        self._saving: asyncio.Future[None] | None = None
        self._running: dict[str, str] = {}  # tool call id -> tool name, while the call runs
        self._texts: dict[str | None, list[str]] = {}  # each text block's text after output processors
        self._reasoning: list[str] = []
        self._open_blocks: dict[str, type[TextEndChunk] | type[ReasoningEndChunk]] = {}  # as the consumer saw them

    @property
    def run_id(self) -> str:
        return self.state.run_id

    @property
    def heard(self) -> bool:
        """Whether chunks reach anyone. Under `generate()` with no stream processor they do not, and the step
        and tool-call chunks (which, unlike text chunks, the run itself does not read) are not built."""
        return self.sink is not discard or self._processes_stream

    async def emit(self, part: Chunk) -> None:
        if self._processes_stream:
            processed = await self.processors.stream(part)
            if processed is None:
                return
            part = processed
        if part.type in _TRACKED:
            self._track(part)
        await self.sink(part)

    def _track(self, part: Chunk) -> None:
        """The text and reasoning that reached the consumer, and the blocks it saw open."""
        if isinstance(part, TextDeltaChunk):
            self._texts.setdefault(part.payload.id, []).append(part.payload.text)
        elif isinstance(part, ReasoningDeltaChunk):
            self._reasoning.append(part.payload.text)
        elif part.type in _BLOCK_ENDS:
            self._open_blocks[part.payload.id] = _BLOCK_ENDS[part.type]  # type: ignore[union-attr]
        elif isinstance(part, TextEndChunk | ReasoningEndChunk):
            self._open_blocks.pop(part.payload.id, None)

    async def _end_open_blocks(self) -> None:
        """A tripwire mid-block still ends the text or reasoning block the consumer saw start. The ends go
        straight to the consumer: the processor that aborted has had its say on this step."""
        for block_id, end in self._open_blocks.items():
            await self.sink(end(run_id=self.run_id, payload={"id": block_id}))
        self._open_blocks.clear()

    async def execute(self, sink: Sink = discard) -> RunResult:
        """Run to the end, writing chunks to `sink`. Cancelled, it hands the cancellation back within
        CLOSE_GRACE_S and the time to save: the run itself goes on in a task of its own, which a tool that
        swallows the cancellation cannot hold up."""
        self.sink = sink
        body = asyncio.ensure_future(self._execute())
        try:
            return await asyncio.shield(body)
        except asyncio.CancelledError:
            await asyncio.shield(asyncio.ensure_future(self._close(body)))  # cancelled again, the close goes on
            raise

    async def _execute(self) -> RunResult:
        await self._open_memory()
        state = self.state
        ids = {"agent_id": state.agent_id, "thread_id": state.thread_id, "resource_id": state.resource_id}
        await self.emit(StartChunk(run_id=state.run_id, payload=ids))
        try:
            await self._prepare()
            decision = await self._loop()
            await self._parse_structured(decision)
            state.new_messages = await self.processors.output_result(state.new_messages, self.result)
        except TripWire as exc:
            self._keep = False
            self.result.tripwire, self.result.finish_reason = exc.info, "tripwire"
            await self._end_open_blocks()
            await self.sink(TripwireChunk(run_id=state.run_id, payload=exc.info.model_dump()))
        except (ModelError, StructuredOutputError) as exc:
            await self._fail(exc)
        finally:
            self.result.messages = state.new_messages
            saving = self._persist() if self._keep else None
            if saving is not None:  # a cancelled run still keeps its finished steps: the save runs to its end
                await asyncio.shield(saving)
        await self.plan.dispatcher.after_run(self.run_id)
        await self.sink(FinishChunk(run_id=state.run_id, payload=self._finish_payload()))
        return self.result

    async def _close(self, body: asyncio.Future[RunResult]) -> None:
        """Stop the run from outside. Saved: what was said before this moment; after it, nothing is sent on."""
        self.closed = True
        self.sink = discard
        saving = self._persist() if self._keep else None
        body.cancel()
        done, _ = await asyncio.wait({body}, timeout=CLOSE_GRACE_S)
        if not done:
            running = ", ".join(sorted(set(self._running.values()))) or "none"
            logger.warning(
                "run %s of agent %s did not stop within %.1f s of being closed (tools still running: %s): it is "
                "left behind, and nothing it does from now on reaches the model, memory or the stream",
                self.run_id,
                self.plan.agent_id,
                CLOSE_GRACE_S,
                running,
            )
        elif not body.cancelled():
            body.exception()  # retrieved: the caller is gone, and a failure was logged where it happened
        if saving is not None:
            await asyncio.wait({saving})  # a failed save was logged by _save
        await self.plan.dispatcher.after_run(self.run_id)  # tasks that ended before the save write their results now

    def _check_open(self) -> None:
        """Before anything that would reach the model or run tools: a closed run goes no further."""
        if self.closed:
            raise asyncio.CancelledError(f"run {self.run_id} was closed")

    async def _open_memory(self) -> None:
        """Caller mistakes (a thread of another resource) raise before the run starts."""
        plan = self.plan
        if plan.memory is None:
            return
        first_text = next((m.text for m in self.input if m.role == "user"), "")
        thread = await plan.memory.open_thread(plan.thread, plan.resource, first_text)
        self.state.thread_id = self.result.thread_id = thread.id
        self.state.resource_id = self.result.resource_id = thread.resource_id or plan.resource

    async def _prepare(self) -> None:
        state = self.state
        history: list[Message] = []
        if self.plan.memory is not None and state.thread_id:
            history = await self.plan.memory.history(state.thread_id, self.plan.last_messages)
        system = await self.plan.system_prompt()
        messages, state.system = await self.processors.input(history + self.context + self.input, system or None)
        known = {m.id for m in history} | {m.id for m in self.context}
        state.conversation = list(messages)
        # Saved: the (processed) input. System messages a processor adds are per-run context, not history.
        state.new_messages = [m for m in messages if m.id not in known and m.role != "system"]

    async def _loop(self) -> NextStep:
        while True:
            try:
                decision = await self._step()
            except TripWire as exc:
                if not exc.info.retry or self.processors.retry_count >= self.plan.max_processor_retries:
                    raise
                await self._retry_with_feedback(exc)
                continue
            self.processors.retry_count = 0  # only consecutive retries count, as in Mastra
            if not isinstance(decision, RunAgain) or self.state.step >= self.plan.max_steps:
                return decision

    async def _retry_with_feedback(self, exc: TripWire) -> None:
        """Run the step again, as Mastra does: the rejected answer never joined the conversation (a step adds
        its turn only once it passed), and the processor's reason joins it as a system message."""
        self.processors.retry_count += 1
        self.state.conversation.append(text_message("system", f"{RETRY_FEEDBACK}{exc.info.reason}"))
        await self._end_open_blocks()
        retry = {"step_result": {"reason": "retry", "is_continued": True}}
        await self.sink(StepFinishChunk(run_id=self.run_id, payload=retry))

    async def _step(self) -> NextStep:
        """One model call and, when the answer asks for them, its tool calls; the decision says what follows."""
        self._check_open()
        state, number = self.state, self.state.step
        self._texts, self._reasoning = {}, []
        changes = await self._step_changes(number)
        model = resolve_model(changes["model"]) if changes.get("model") else self.plan.model
        tools = tool_map(changes["tools"]) if "tools" in changes else self.plan.tools
        if "messages" in changes:
            state.conversation = list(changes["messages"])
        tool_choice = changes.get("tool_choice") or self.plan.tool_choice
        request = self._request(model, tools, tool_choice, changes.get("system"))
        message_id = new_id("msg")
        if self.heard:
            start = {"message_id": message_id, "request": _describe(model), "warnings": []}
            await self.emit(StepStartChunk(run_id=self.run_id, payload=start))
        answer, calls = await self._call_model(model, request)
        finish = answer.finish
        self.result.usage = state.usage = state.usage + finish.usage  # billed even if a processor rejects it
        text = self._text()
        call_parts = [c.part() for c in calls]
        if self.processors.has("process_output_step"):
            await self.processors.output_step(
                step_number=number,
                text=text,
                tool_calls=call_parts,
                finish_reason=finish.reason,
                messages=list(state.conversation),
            )
        decision = decide(finish.reason, text, bool(calls))
        results = await self._run_tools(calls, call_parts, tools) if isinstance(decision, RunAgain) else []
        self._add_turn(message_id, answer, results)
        step = self._step_result(number, text, calls, results, finish)
        if self.heard:
            continued = isinstance(decision, RunAgain) and state.step < self.plan.max_steps
            payload = _step_payload(step, message_id, finish, model, continued)
            await self.emit(StepFinishChunk(run_id=self.run_id, payload=payload))
        return decision

    def _add_turn(self, message_id: str, answer: Answer, results: list[ToolResultPart]) -> None:
        """The step's answer, and its tool results, join the conversation and the messages to save. Calls an
        answer cut short made are left out: they did not run, and calls without results break the next turn."""
        content = answer.content(self._texts)
        if answer.calls and not results:
            content = [part for part in content if not isinstance(part, ToolCallPart)]
        turn = [Message(id=message_id, role="assistant", content=content)] if content else []
        if results:
            turn.append(Message(role="tool", content=results))
        self.state.conversation.extend(turn)
        self.state.new_messages.extend(turn)
        self.state.step += 1

    def _step_result(
        self, number: int, text: str, calls: list[PendingCall], results: list[ToolResultPart], finish: Finish
    ) -> StepResult:
        """Records are given as dicts: pydantic-core builds the nested models in one pass."""
        step = StepResult(
            step_number=number,
            text=text,
            reasoning="".join(self._reasoning),
            tool_calls=[{"tool_call_id": c.id, "tool_name": c.name, "args": c.args} for c in calls],
            tool_results=[
                {"tool_call_id": c.id, "tool_name": c.name, "args": c.args, "result": r.result, "is_error": r.is_error}
                for r, c in zip(results, calls, strict=False)
            ],
            finish_reason=finish.reason,
            usage=finish.usage,
        )
        self.result.steps.append(step)
        self.result.text, self.result.finish_reason = text, finish.reason
        return step

    async def _step_changes(self, number: int) -> dict[str, Any]:
        """What input-step processors change for this step (nothing to copy when there are none)."""
        if not self.processors.has("process_input_step"):
            return {}
        return await self.processors.input_step(
            step_number=number,
            messages=list(self.state.conversation),
            system=self.state.system,
            model=self.plan.model,
            tools=dict(self.plan.tools),
            tool_choice=self.plan.tool_choice,
        )

    def _request(self, model: Model, tools: Mapping[str, Tool], tool_choice: str, system: str | None) -> ModelRequest:
        system = system if system is not None else self.state.system
        conversation = self.state.conversation
        messages = [m for m in conversation if m.role != "system"]
        hoisted = [m.text for m in conversation if m.role == "system"] if len(messages) < len(conversation) else []
        response_format = None
        structured = self.plan.structured
        if structured:
            if model.supports_json_schema:
                response_format = structured.response_format()
            else:
                hoisted.append(structured.instructions())
        prompt = "\n\n".join(p for p in [system or "", *hoisted] if p) or None
        return ModelRequest(
            system=prompt,
            messages=messages,
            tools=[self.plan.dispatcher.spec(t) for t in tools.values()],
            tool_choice=tool_choice if tools else "none",
            response_format=response_format,
            settings=self.plan.settings,
        )

    async def _call_model(self, model: Model, request: ModelRequest) -> tuple[Answer, list[PendingCall]]:
        answer = Answer(self.run_id, self.emit, heard=self.heard)
        context = CallContext(run_id=self.run_id, sampler=self.plan.sampler)
        try:
            async for event in guarded_stream(model, request, context):
                await answer.read(event)
        except ModelError:
            await answer.close_blocks()
            raise
        return answer, await answer.end()

    def _text(self) -> str:
        return "".join(text for pieces in self._texts.values() for text in pieces)

    async def _run_tools(
        self, calls: list[PendingCall], parts: list[ToolCallPart], tools: Mapping[str, Tool]
    ) -> list[ToolResultPart]:
        """Every call of a step runs at once; results keep the order of the calls."""
        self._check_open()
        if len(calls) == 1:
            return [await self._run_tool(calls[0], parts[0], tools)]
        results: list[ToolResultPart | None] = [None] * len(calls)
        fatal: list[BaseException] = []  # a tripwire or model error ends the step: the first one wins

        async def run_one(index: int) -> None:
            try:
                results[index] = await self._run_tool(calls[index], parts[index], tools)
            except (TripWire, ModelError) as exc:
                fatal.append(exc)
                group.cancel_scope.cancel()

        async with anyio.create_task_group() as group:
            for index in range(len(calls)):
                group.start_soon(run_one, index)
        if fatal:
            raise fatal[0]
        return [r for r in results if r is not None]

    async def _run_tool(self, call: PendingCall, part: ToolCallPart, tools: Mapping[str, Tool]) -> ToolResultPart:
        tool = tools.get(call.name)
        if call.error is not None:
            outcome = ToolOutcome(call.error, is_error=True)
        elif tool is None:
            known = ", ".join(sorted(tools)) or "none"
            outcome = ToolOutcome(f"unknown tool {call.name!r}; the tools you can call are: {known}", is_error=True)
        else:
            outcome = await self._dispatch(part, tool)
        if self.heard:
            await self._emit_outcome(call, outcome)
        result, is_error = outcome.result, outcome.is_error
        return ToolResultPart(tool_call_id=call.id, tool_name=call.name, result=result, is_error=is_error)

    async def _emit_outcome(self, call: PendingCall, outcome: ToolOutcome) -> None:
        base = {"tool_call_id": call.id, "tool_name": call.name, "args": call.args}
        if outcome.is_error:
            failed = {**base, "error": {"message": result_text(outcome.result)}}
            await self.emit(ToolErrorChunk(run_id=self.run_id, payload=failed))
        else:
            done = {**base, "result": outcome.result, "is_error": False}
            await self.emit(ToolResultChunk(run_id=self.run_id, payload=done))

    async def _dispatch(self, call: ToolCallPart, tool: Tool) -> ToolOutcome:
        """The dispatcher runs the call; whatever it raises (but a tripwire or a model error) is for the model."""
        self._running[call.tool_call_id] = call.tool_name
        try:
            return await self.plan.dispatcher.dispatch(call, tool, self._tool_context(call))
        except ToolArgumentsError as exc:
            return ToolOutcome(str(exc), is_error=True)
        except (TripWire, ModelError):
            raise
        except Exception as exc:
            logger.info("tool %s raised %s: %s", call.tool_name, type(exc).__name__, exc)
            return ToolOutcome(f"tool {call.tool_name} failed: {type(exc).__name__}: {exc}", is_error=True)
        finally:
            self._running.pop(call.tool_call_id, None)

    def _tool_context(self, call: ToolCallPart) -> ToolContext:
        return ToolContext(
            run_id=self.run_id,
            agent_id=self.plan.agent_id,
            tool_call_id=call.tool_call_id,
            tool_name=call.tool_name,
            thread_id=self.state.thread_id,
            resource_id=self.state.resource_id,
            request_context=self.plan.request_context,
            emit=self.emit,
            sampler=self.plan.sampler,
            messages=tuple(self.state.conversation),
            step_number=self.state.step,
        )

    async def _parse_structured(self, decision: NextStep) -> None:
        structured = self.plan.structured
        if structured is None:
            return
        if isinstance(decision, RunAgain):
            raise StructuredOutputError(
                f"the run stopped after {len(self.result.steps)} steps while still calling tools, so there is no "
                f"final answer to parse into {structured.name}; raise max_steps"
            )
        if isinstance(decision, Stop):
            hint = CUT_SHORT_HINTS[decision.reason]
            raise StructuredOutputError(
                f"the model's answer ended early (finish reason {decision.reason}: {hint}), so there is no "
                f"complete final answer to parse into {structured.name}"
            )
        self.result.object = structured.parse(decision.text)
        await self.emit(ObjectResultChunk(run_id=self.run_id, object=_jsonable(self.result.object)))

    async def _fail(self, exc: Exception) -> None:
        error = exc.payload() if isinstance(exc, ModelError) else {"message": str(exc)}
        self.result.error = RunError.model_validate(error)
        self.result.finish_reason = "error"
        logger.warning("run %s of agent %s failed: %s", self.run_id, self.plan.agent_id, exc)
        await self.sink(ErrorChunk(run_id=self.run_id, payload={"error": error}))

    def _persist(self) -> asyncio.Future[None] | None:
        """Start saving the run's new messages as they are now, once: a later call gets the same save.
        None when the run has no thread to save to."""
        memory, thread_id = self.plan.memory, self.state.thread_id
        if self._saving is None and memory is not None and thread_id is not None:
            self._saving = asyncio.ensure_future(self._save(memory, thread_id, list(self.state.new_messages)))
        return self._saving

    async def _save(self, memory: Memory, thread_id: str, messages: list[Message]) -> None:
        try:
            await memory.save(thread_id, messages)
        except Exception:
            logger.exception("run %s: could not save %d messages to thread %s", self.run_id, len(messages), thread_id)
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


def _describe(model: Model) -> dict[str, str]:
    return {"provider": model.provider, "model_id": model.model_id}


def _step_payload(step: StepResult, message_id: str, finish: Finish, model: Model, continued: bool) -> dict[str, Any]:
    """Payloads are given as dicts of Python names: pydantic-core builds the nested models in one pass."""
    outcome = {"reason": finish.reason, "raw_reason": finish.raw_reason, "is_continued": continued}
    return {
        "message_id": message_id,
        "step_result": outcome,
        "output": {"text": step.text, "usage": dict(step.usage)},
        "metadata": {"step_number": step.step_number, **_describe(model)},
    }


def _jsonable(value: Any) -> Any:
    return to_jsonable_python(value, fallback=str)
