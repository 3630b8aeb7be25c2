"""The agent tools: `list_agents`, and one `ask_<agent_id>` per agent that runs it with live progress."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated, Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, InputRequiredResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from lodestar._text import as_text
from lodestar.server.agent_host import AgentHost, AgentInfo, model_for
from lodestar.server.log_levels import wants_debug

if TYPE_CHECKING:
    from lodestar.runtime.models.sampling import Sampler
    from lodestar.runtime.result import RunResult

CUT_FLOOR = 200
"""Characters a cut value keeps at least, however many share the budget."""
CHARS_PER_TOKEN = 4


class AgentList(BaseModel):
    agents: list[AgentInfo]


class CallInfo(BaseModel):
    tool_call_id: str
    tool_name: str
    args: dict[str, Any]
    result: Any = Field(None, description="The tool's result; a long one is cut, with a marker saying where it is")
    is_error: bool = False


class TaskSummary(BaseModel):
    id: str
    status: str
    tool_name: str
    tool_call_id: str
    result: Any = Field(None, description="A long one is cut; get_background_task(id) has it whole")
    error: dict[str, Any] | None = None


class UsageInfo(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0


class AskResult(BaseModel):
    run_id: str
    agent_id: str
    thread_id: str | None
    resource_id: str | None
    text: str = Field(description="The agent's answer, always whole")
    finish_reason: str
    steps: int = Field(description="Model steps over every turn")
    tool_calls: list[CallInfo]
    background_tasks: list[TaskSummary] = Field(description="The background tasks the run dispatched, as they ended")
    usage: UsageInfo
    tripwire: dict[str, Any] | None = Field(None, description="Set when a processor stopped the run: its reason")
    cut: int = Field(0, description="How many tool or task results were cut to fit the result budget")


def answer_of(result: RunResult, budget_tokens: int) -> AskResult:
    """The run's answer, with long tool and task results cut so that the whole fits `budget_tokens`."""
    where = (
        f"memory thread {result.thread_id}"
        if result.thread_id
        else "not kept: ask again with a thread_id to keep whole results in memory"
    )
    calls = [
        CallInfo(tool_call_id=r.tool_call_id, tool_name=r.tool_name, args=r.args, result=r.result, is_error=r.is_error)
        for r in result.tool_results
    ]
    tasks = [
        TaskSummary(
            id=t.id,
            status=t.status,
            tool_name=t.tool_name,
            tool_call_id=t.tool_call_id,
            result=t.result,
            error=t.error,
        )
        for t in result.background_tasks
    ]
    answer = AskResult(
        run_id=result.run_id,
        agent_id=result.agent_id,
        thread_id=result.thread_id,
        resource_id=result.resource_id,
        text=result.text,
        finish_reason=result.finish_reason,
        steps=len(result.steps),
        tool_calls=calls,
        background_tasks=tasks,
        usage=UsageInfo(**result.usage.model_dump()),
        tripwire=result.tripwire.model_dump(mode="json") if result.tripwire is not None else None,
    )
    holders: list[tuple[Any, str]] = [
        (c, f"the full result is in {where}" if result.thread_id else f"the full result is {where}") for c in calls
    ]
    holders += [(t, f"get_background_task({t.id!r}) has it whole") for t in tasks]
    _fit(answer, holders, budget_tokens * CHARS_PER_TOKEN)
    return answer


def _fit(answer: AskResult, holders: list[tuple[Any, str]], budget: int) -> None:
    """Cuts the longest results to one equal share of what the rest of the answer leaves. Sizes are as written in
    the answer's JSON (quotes and escapes count), and a cut result's share holds its marker too."""
    sizes = [_encoded(holder.result) for holder, _ in holders]
    room = budget - (len(answer.model_dump_json()) - sum(sizes))
    cap = _share(sizes, room)
    if cap is None:
        return
    for (holder, where), size in zip(holders, sizes, strict=True):
        if size > cap:
            holder.result = _cut(as_text(holder.result), cap, where)
            answer.cut += 1


def _cut(text: str, cap: int, where: str) -> str:
    """The start of `text` and a marker saying where the rest is, together at most `cap` characters of JSON."""
    keep = cap
    while True:
        cut = f"{text[:keep]}… [cut: {len(text) - keep} more characters; {where}]"
        over = _encoded(cut) - cap
        if over <= 0 or keep == 0:
            return cut
        keep = max(keep - over, 0)  # each character dropped takes at least one character of JSON with it


def _share(sizes: list[int], room: int) -> int | None:
    """The largest size cap under which every value fits in `room` (None when all fit as they are)."""
    if sum(sizes) <= room:
        return None
    left = room
    for index, size in enumerate(sorted(sizes)):
        share = left // (len(sizes) - index)
        if size > share:
            return max(share, CUT_FLOOR)
        left -= size
    return CUT_FLOOR


def _encoded(value: Any) -> int:
    return len(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def _text(answer: AskResult) -> str:
    tasks = "".join(f"\n[background task {t.id} {t.tool_name}: {t.status}]" for t in answer.background_tasks)
    trip = f"\n[stopped by a processor: {answer.tripwire.get('reason')}]" if answer.tripwire else ""
    return f"{answer.text}{tasks}{trip}" or f"(no text; the run ended: {answer.finish_reason})"


def _ask_tool(host: AgentHost, agent_id: str, default_model: str | None, budget_tokens: int) -> Any:
    async def ask(
        ctx: Context,
        message: Annotated[str, Field(min_length=1, description="What to ask the agent")],
        thread_id: Annotated[
            str | None, Field(description="Memory thread to continue (and to save to); omit for a one-off question")
        ] = None,
        resource_id: Annotated[str | None, Field(description="Who the thread belongs to, e.g. a user id")] = None,
        until_idle: Annotated[
            bool, Field(description="Stay open while background tasks run and let the agent read their results")
        ] = True,
        max_steps: Annotated[int | None, Field(ge=1, le=100, description="At most this many model steps")] = None,
    ) -> Annotated[CallToolResult, AskResult] | InputRequiredResult:
        from lodestar.server.progress import ChunkProgress  # the runtime loads on the first ask, not at start-up
        from lodestar.server.sampling import run_with_sampling

        agent = await host.agent(agent_id)
        progress = ChunkProgress(debug=wants_debug(ctx))

        async def work(sampler: Sampler | None) -> CallToolResult:
            options = {
                "thread": thread_id,
                "resource": resource_id,
                "max_steps": max_steps,
                "model": model_for(agent, default_model, sampler),
                "sampler": sampler,
            }
            run = agent.stream_until_idle if until_idle else agent.stream
            async with run(message, **options) as stream:
                async for chunk in stream:
                    await progress.chunk(chunk)
                await progress.flush()
                result = await stream.result()
            answer = answer_of(result, budget_tokens)
            failed = f"agent {agent_id} failed: {result.error.message}" if result.error is not None else None
            return CallToolResult(  # a failed run still shows what it did before the failure
                content=[TextContent(type="text", text=failed or _text(answer))],
                structured_content=answer.model_dump(mode="json"),
                is_error=failed is not None,
            )

        return await run_with_sampling(ctx, work, progress)

    return ask


def _description(info: AgentInfo) -> str:
    about = info.description or f"The {info.name} agent."
    return (
        f"{about}\n\nAsk the {info.id} agent; it answers in its own words. Its tools: {info.tool_list()}. Progress "
        "notifications report each step; pass thread_id to continue a conversation."
    )


def register_agent_tools(server: MCPServer, host: AgentHost, default_model: str | None, budget_tokens: int) -> None:
    @server.tool(annotations=ToolAnnotations(read_only_hint=True, open_world_hint=False))
    async def list_agents() -> Annotated[CallToolResult, AgentList]:
        """List the agents this server runs, each with its model, tools and background tools; call one with
        ask_<agent_id>."""
        listing = AgentList(agents=host.infos)
        lines = [f"{a.id}: {a.description} (tools: {', '.join(a.tools) or 'none'})" for a in listing.agents]
        return CallToolResult(
            content=[TextContent(type="text", text="\n".join(lines) or "no agents")],
            structured_content=listing.model_dump(mode="json"),
        )

    for name, agent_id in host.tool_names.items():
        info = next(i for i in host.infos if i.id == agent_id)
        server.add_tool(
            _ask_tool(host, agent_id, default_model, budget_tokens),
            name=name,
            title=f"Ask {info.name}",
            description=_description(info),
            annotations=ToolAnnotations(read_only_hint=False, open_world_hint=True),
        )
