"""Sampling on MCP 2026-07-28, which has no server-to-client requests.

The server can only ask between rounds: a tool call answers `InputRequiredResult` with the sampling
requests, and the client calls again carrying its answers. The run itself stays parked in this process
between rounds, so tools run once, memory is saved once, and nothing is replayed. The SDK seals
`request_state` with a per-process key anyway, so a round can never resume elsewhere.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CreateMessageRequest, CreateMessageResultWithTools, InputRequiredResult, InputResponses
from pydantic import ValidationError

from ..runtime.models.base import ModelError
from ..runtime.models.sampling import Sampler
from .progress import ChunkProgress
from .sampling_wire import ClientSampler, SamplingResult

T = TypeVar("T")
ANSWER_TIMEOUT_S = 600.0
"""How long a parked run waits for the client's next round: the lifetime of the SDK's sealed request state."""
OUTCOME_KEPT_S = 600.0
"""How long a run that ended between rounds keeps its outcome for the client's next round."""
QUIET_S = 0.05
"""After a first question, how long the run may stay silent before the round closes: concurrent subagents then
ask in one round, and each round counts against the client's limit (10 by default in the Python SDK)."""


@dataclass
class _Question:
    key: str
    request: CreateMessageRequest
    answer: asyncio.Future[SamplingResult]


class RoundSampler(ClientSampler):
    """Queues each sampling request for the round in progress and waits for the client's next round."""

    def __init__(self, *, with_tools: bool) -> None:
        super().__init__(with_tools=with_tools)
        self.questions: asyncio.Queue[_Question] = asyncio.Queue()
        self._asked = 0

    async def ask(self, message: CreateMessageRequest) -> SamplingResult:
        self._asked += 1
        answer: asyncio.Future[SamplingResult] = asyncio.get_running_loop().create_future()
        self.questions.put_nowait(_Question(f"sample-{self._asked}", message, answer))
        try:
            async with asyncio.timeout(ANSWER_TIMEOUT_S):
                return await answer
        except TimeoutError:
            raise ModelError(
                "sampling", f"the MCP client did not come back with the sampling answer within {ANSWER_TIMEOUT_S:g} s"
            ) from None


@dataclass
class _Parked:
    task: asyncio.Task[Any]
    sampler: RoundSampler
    progress: ChunkProgress | None
    asked: dict[str, _Question] = field(default_factory=dict)
    in_round: bool = False  # a client that replays a round's state must not drive the run twice

    def take_answers(self, responses: InputResponses) -> None:
        for key, answer in responses.items():
            question = self.asked.pop(key, None)
            if question is None or question.answer.done():
                continue
            _settle(question.answer, answer)


def _settle(future: asyncio.Future[SamplingResult], answer: Any) -> None:
    """The array-capable result shape reads both forms a client may send, with or without tool use."""
    try:
        future.set_result(CreateMessageResultWithTools.model_validate(answer.model_dump(mode="json", by_alias=True)))
    except ValidationError as exc:
        message = f"the MCP client answered a sampling request with a {type(answer).__name__}: {exc.errors()[0]['msg']}"
        future.set_exception(ModelError("sampling", message))


_parked: dict[str, _Parked] = {}


async def run_in_rounds(
    ctx: Context[Any, Any],
    work: Callable[[Sampler], Coroutine[Any, Any, T]],
    *,
    with_tools: bool,
    progress: ChunkProgress | None = None,
) -> T | InputRequiredResult:
    """One round of a parked run: starts it on the first round, hands it the client's answers on later ones.
    The run's `progress` goes to the request of the round in progress, and waits between rounds."""
    if ctx.request_state is None:
        run_key, parked = _park(work, with_tools, progress)
    else:
        run_key = _run_key(ctx.request_state)
        found = _parked.get(run_key)
        if found is None:
            raise ToolError(
                "this tool call's agent run is no longer waiting for the client's sampling answer (the server "
                f"restarted, or more than {ANSWER_TIMEOUT_S:g} s passed); call the tool again"
            )
        if found.in_round:
            raise ToolError("this tool call's agent run is already in a round; send each round once")
        parked = found
        parked.take_answers(ctx.input_responses or {})
    parked.in_round = True
    try:
        if parked.progress is not None:
            await parked.progress.attach(ctx)
        outcome = await _next_round(run_key, parked)
    except BaseException:  # the client cancelled or went away, or the run failed: either way it is over
        parked.task.cancel()
        _parked.pop(run_key, None)
        raise
    finally:
        parked.in_round = False
        if parked.progress is not None:
            parked.progress.detach()
    if parked.task.done():
        _parked.pop(run_key, None)
    return outcome


def _park(
    work: Callable[[Sampler], Coroutine[Any, Any, T]], with_tools: bool, progress: ChunkProgress | None
) -> tuple[str, _Parked]:
    sampler = RoundSampler(with_tools=with_tools)
    run_key = secrets.token_urlsafe(16)
    parked = _Parked(asyncio.create_task(work(sampler)), sampler, progress)
    _parked[run_key] = parked
    parked.task.add_done_callback(lambda task: _keep_outcome(run_key, task))
    return run_key, parked


def _keep_outcome(run_key: str, task: asyncio.Task[Any]) -> None:
    """A run that ends between rounds keeps its outcome for the client's next round, for a while."""
    asyncio.get_running_loop().call_later(OUTCOME_KEPT_S, _parked.pop, run_key, None)
    if not task.cancelled():
        task.exception()  # marks it retrieved: an abandoned run's failure is not an unhandled error


async def _next_round(run_key: str, parked: _Parked) -> Any:
    """The run's result, or the sampling requests it waits on (unanswered ones are asked again)."""
    parked.asked = {key: q for key, q in parked.asked.items() if not q.answer.done()}
    if not parked.asked:
        await _collect_questions(parked)
    if parked.task.cancelled():
        raise ToolError("the agent run was cancelled before it finished; call the tool again")
    if parked.task.done():
        return parked.task.result()
    return InputRequiredResult(
        input_requests={key: q.request for key, q in parked.asked.items()},
        request_state=json.dumps({"run": run_key}),
    )


async def _collect_questions(parked: _Parked) -> None:
    """Waits until the run ends, or asks and then stays quiet for QUIET_S."""
    quiet: float | None = None
    while not parked.task.done():
        waiting = asyncio.ensure_future(parked.sampler.questions.get())
        try:
            await asyncio.wait({parked.task, waiting}, timeout=quiet, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiting.cancel()
        if not waiting.done() or waiting.cancelled():
            return
        question = waiting.result()
        if not question.answer.done():  # its asker may have been cancelled meanwhile
            parked.asked[question.key] = question
            quiet = QUIET_S


def _run_key(request_state: str) -> str:
    try:
        return str(json.loads(request_state)["run"])
    except (ValueError, KeyError, TypeError):
        raise ToolError("the request state sent back is not one this server made; call the tool again") from None
