"""`@tool`: schemas read from signatures and docstrings, execution, the ToolContext and its writer."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Annotated, Any, Literal

import anyio
import pytest
from pydantic import BaseModel, Field

from lodestar.runtime import Agent, Memory, Tool, ToolArgumentsError, ToolContext, tool
from lodestar.runtime.background import ToolBackgroundConfig
from lodestar.runtime.chunks import Chunk
from lodestar.runtime.models.scripted import ScriptedModel, call, calls, reply
from lodestar.runtime.tools import parse_docstring, tool_from_function
from lodestar.storage import SQLiteStorage

pytestmark = pytest.mark.anyio


class Filters(BaseModel):
    language: str
    min_stars: int = 0


class Hit(BaseModel):
    title: str
    score: float


def context(emit: Any = None, **overrides: Any) -> ToolContext:
    fields: dict[str, Any] = {"run_id": "run_1", "agent_id": "agent_1", "tool_call_id": "call_1", "tool_name": "t"}
    fields.update(overrides)
    if emit is not None:
        fields["emit"] = emit
    return ToolContext(**fields)


def collector() -> tuple[list[Chunk], Any]:
    seen: list[Chunk] = []

    async def emit(part: Chunk) -> None:
        seen.append(part)

    return seen, emit


# --- input schema ---------------------------------------------------------------------------------


def test_input_schema_types_defaults_required() -> None:
    @tool
    def search(
        query: str,
        limit: int = 10,
        exact: bool = False,
        ratio: float | None = None,
        mode: Literal["fast", "deep"] = "fast",
        tags: list[str] | None = None,
    ) -> str:
        """Search things."""
        return query

    schema = search.input_schema
    props = schema["properties"]
    assert schema["type"] == "object"
    assert schema["required"] == ["query"]
    assert schema["additionalProperties"] is False
    assert props["query"] == {"type": "string"}
    assert props["limit"] == {"type": "integer", "default": 10}
    assert props["exact"] == {"type": "boolean", "default": False}
    assert props["ratio"]["anyOf"] == [{"type": "number"}, {"type": "null"}]
    assert props["ratio"]["default"] is None
    assert props["mode"]["enum"] == ["fast", "deep"]
    assert props["mode"]["default"] == "fast"
    assert {"type": "array", "items": {"type": "string"}} in props["tags"]["anyOf"]
    assert all("title" not in prop for prop in props.values())
    assert "title" not in schema


def test_input_schema_pydantic_model_and_annotated_constraint() -> None:
    @tool
    def find(filters: Filters, count: Annotated[int, Field(ge=1, le=50)] = 5) -> list[Hit]:
        """Find repositories."""
        return []

    schema = find.input_schema
    assert schema["required"] == ["filters"]
    ref = schema["properties"]["filters"]["$ref"]
    name = ref.rsplit("/", 1)[-1]
    model_schema = schema["$defs"][name]
    assert model_schema["required"] == ["language"]
    assert set(model_schema["properties"]) == {"language", "min_stars"}
    count = schema["properties"]["count"]
    assert count["minimum"] == 1
    assert count["maximum"] == 50
    assert count["default"] == 5


async def test_pydantic_model_argument_arrives_as_model_and_constraint_enforced() -> None:
    got: list[Any] = []

    @tool
    def find(filters: Filters, count: Annotated[int, Field(ge=1)] = 5) -> int:
        """Find."""
        got.append((filters, count))
        return count

    assert await find.execute({"filters": {"language": "py"}, "count": 3}, context()) == 3
    filters, count = got[0]
    assert isinstance(filters, Filters)
    assert filters == Filters(language="py", min_stars=0)
    assert count == 3

    with pytest.raises(ToolArgumentsError) as info:
        await find.execute({"filters": {"language": "py"}, "count": 0}, context())
    assert "find" in str(info.value)
    assert "count" in str(info.value)
    with pytest.raises(ToolArgumentsError, match=r"filters\.language"):
        await find.execute({"filters": {}}, context())


# --- descriptions ---------------------------------------------------------------------------------


def test_google_docstring_descriptions_and_summary() -> None:
    @tool
    def search(query: str, limit: int = 10, verbose: bool = False) -> str:
        """Search the documentation index.

        Returns the best matches first.

        Args:
            query: What to look for,
                in plain words.
            limit (int): How many results to return.
            verbose: Include snippets.

        Returns:
            the matches, formatted
        """
        return query

    assert search.description == "Search the documentation index."
    props = search.input_schema["properties"]
    assert props["query"]["description"] == "What to look for, in plain words."
    assert props["limit"]["description"] == "How many results to return."
    assert props["verbose"]["description"] == "Include snippets."
    assert search.spec.description == "Search the documentation index."
    assert search.spec.input_schema == search.input_schema


def test_sphinx_docstring_descriptions() -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add two numbers.

        :param int a: The first number.
        :param b: The second number,
            may be negative.
        :returns: the sum
        """
        return a + b

    assert add.description == "Add two numbers."
    props = add.input_schema["properties"]
    assert props["a"]["description"] == "The first number."
    assert props["b"]["description"] == "The second number, may be negative."


def test_parse_docstring_directly() -> None:
    summary, args = parse_docstring("Args:\n    x: the x value\n    y: the y value")
    assert summary == ""
    assert args == {"x": "the x value", "y": "the y value"}

    summary, args = parse_docstring("Do it.\n\nArguments:\n  name (str): who\n\nRaises:\n  ValueError: never")
    assert summary == "Do it."
    assert args == {"name": "who"}  # ValueError in Raises: is not an argument


def test_no_docstring_gives_default_description_and_no_field_descriptions() -> None:
    def bare(x: int) -> int:
        return x

    made = tool_from_function(bare)
    assert made.description == "Call bare."
    assert "description" not in made.input_schema["properties"]["x"]


def test_explicit_name_and_description_override() -> None:
    @tool(name="web-search", description="Search the web.")
    def search(query: str) -> str:
        """Docstring summary that loses."""
        return query

    assert isinstance(search, Tool)
    assert search.name == "web-search"
    assert search.description == "Search the web."
    assert search.spec.name == "web-search"
    assert repr(search) == "Tool('web-search')"


def test_invalid_tool_names_refused() -> None:
    def fn(x: int) -> int:
        return x

    for bad in ("has space", "dots.not.allowed", "x" * 65, "ünïcode", "trailing\n"):
        with pytest.raises(ValueError, match="tool name"):
            tool_from_function(fn, name=bad)
        with pytest.raises(ValueError, match="tool name"):
            Tool(fn, name=bad, description="d", input_schema={"type": "object"})
    assert tool_from_function(fn, name="x" * 64).name == "x" * 64
    assert tool_from_function(fn, name="").name == "fn"  # an empty name means "use the function's"


def test_invalid_agent_ids_refused() -> None:
    for bad in ("has space", "x" * 49, "trailing\n", ""):
        with pytest.raises(ValueError, match="agent id"):
            Agent(bad)
    assert Agent("a-b_1").id == "a-b_1"


def test_var_args_and_kwargs_refused() -> None:
    def star(*items: str) -> int:
        return len(items)

    def double_star(**options: str) -> int:
        return len(options)

    with pytest.raises(TypeError, match=r"star: \*args and \*\*kwargs"):
        tool(star)
    with pytest.raises(TypeError, match="double_star"):
        tool(double_star)


# --- output schema --------------------------------------------------------------------------------


def test_output_schema_from_return_annotation() -> None:
    @tool
    def count(text: str) -> int:
        """Count."""
        return len(text)

    @tool
    def best(query: str) -> Hit:
        """Best hit."""
        return Hit(title=query, score=1.0)

    @tool
    def nothing(query: str) -> None:
        """Nothing."""

    @tool
    def unannotated(query: str):  # type: ignore[no-untyped-def]
        """No return annotation."""
        return query

    assert count.output_schema == {"type": "integer"}
    assert best.output_schema is not None
    assert best.output_schema["type"] == "object"
    assert set(best.output_schema["properties"]) == {"title", "score"}
    assert best.output_schema["required"] == ["title", "score"]
    assert nothing.output_schema is None
    assert unannotated.output_schema is None


# --- execution ------------------------------------------------------------------------------------


async def test_sync_tool_runs_in_a_worker_thread() -> None:
    threads: list[int] = []

    @tool
    def where(x: int) -> int:
        """Where am I."""
        threads.append(threading.get_ident())
        return x * 2

    assert not where.is_async
    assert await where.execute({"x": 21}, context()) == 42
    assert threads and threads[0] != threading.get_ident()


async def test_async_tool_runs_on_the_event_loop() -> None:
    threads: list[int] = []

    @tool
    async def where(x: int) -> int:
        """Where am I."""
        await anyio.lowlevel.checkpoint()
        threads.append(threading.get_ident())
        return x + 1

    assert where.is_async
    assert await where.execute({"x": 1}, context()) == 2
    assert threads == [threading.get_ident()]


async def test_results_made_json_ready() -> None:
    @tool
    def best(query: str) -> Hit:
        """Best."""
        return Hit(title=query, score=0.5)

    @tool
    async def many(query: str) -> dict[str, Any]:
        """Many."""
        return {"hits": [Hit(title=query, score=1.0)], "path": Path("/tmp/x"), "tags": {"a"}}

    result = await best.execute({"query": "q"}, context())
    assert result == {"title": "q", "score": 0.5}
    assert type(result) is dict
    many_result = await many.execute({"query": "z"}, context())
    assert many_result == {"hits": [{"title": "z", "score": 1.0}], "path": "/tmp/x", "tags": ["a"]}


async def test_invalid_arguments_name_tool_and_field() -> None:
    @tool
    def search(query: str, limit: int = 10) -> str:
        """Search."""
        return query

    with pytest.raises(ToolArgumentsError) as info:
        await search.execute({"query": "x", "limit": "many"}, context())
    message = str(info.value)
    assert message.startswith("invalid arguments for tool search:")
    assert "limit" in message
    assert "query" not in message

    assert message == 'invalid arguments for tool search: limit must be a whole number, got "many"'
    with pytest.raises(ToolArgumentsError, match=r"^invalid arguments for tool search: query is required$"):
        await search.execute({}, context())
    assert isinstance(info.value, ValueError)


async def test_extra_arguments_refused() -> None:
    @tool
    def search(query: str) -> str:
        """Search."""
        return query

    with pytest.raises(ToolArgumentsError) as info:
        await search.execute({"query": "x", "querry": 1}, context())
    assert str(info.value) == (
        "invalid arguments for tool search: unknown argument 'querry' (did you mean 'query'?); it takes query"
    )


async def test_hand_written_tool_without_args_model_passes_arguments_through() -> None:
    async def echo(**kwargs: Any) -> dict[str, Any]:
        return kwargs

    made = Tool(echo, name="echo", description="Echo.", input_schema={"type": "object"})
    assert await made.execute({"a": 1, "b": [2]}, context()) == {"a": 1, "b": [2]}


# --- ToolContext ----------------------------------------------------------------------------------


async def test_context_parameter_excluded_from_schema_and_injected() -> None:
    seen: list[ToolContext] = []

    @tool
    def sync_tool(query: str, ctx: ToolContext) -> str:
        """Sync."""
        seen.append(ctx)
        return query

    @tool
    async def async_tool(ctx: Annotated[ToolContext, "injected"], n: int = 1) -> int:
        """Async."""
        seen.append(ctx)
        return n

    assert set(sync_tool.input_schema["properties"]) == {"query"}
    assert sync_tool.input_schema["required"] == ["query"]
    assert set(async_tool.input_schema["properties"]) == {"n"}
    assert "required" not in async_tool.input_schema
    assert sync_tool.context_param == "ctx"

    ctx = context(thread_id="th_1", resource_id="user_1")
    assert await sync_tool.execute({"query": "q"}, ctx) == "q"
    assert await async_tool.execute({}, ctx) == 1
    assert seen == [ctx, ctx]
    with pytest.raises(ToolArgumentsError, match="ctx"):
        await sync_tool.execute({"query": "q", "ctx": "forged"}, ctx)


async def test_context_carries_run_ids_inside_an_agent_run(tmp_path: Path) -> None:
    seen: list[ToolContext] = []

    @tool
    def whoami(ctx: ToolContext) -> dict[str, Any]:
        """Who am I."""
        seen.append(ctx)
        return {"run": ctx.run_id}

    model = ScriptedModel([calls(call("whoami", {}, id="call_who")), reply("done")])
    agent = Agent("ids", model=model, tools=[whoami], memory=Memory(SQLiteStorage(tmp_path / "db")))
    result = await agent.generate("hi", thread="th_ids", resource="user_9", request_context={"tenant": "acme"})

    assert result.text == "done"
    assert len(seen) == 1
    ctx = seen[0]
    assert ctx.run_id == result.run_id
    assert ctx.agent_id == "ids"
    assert ctx.tool_call_id == "call_who"
    assert ctx.tool_name == "whoami"
    assert ctx.thread_id == "th_ids"
    assert ctx.resource_id == "user_9"
    assert ctx.request_context == {"tenant": "acme"}
    assert result.tool_results[0].result == {"run": result.run_id}


async def test_writer_write_and_custom_emit_chunks() -> None:
    seen, emit = collector()

    @tool
    async def busy(n: int, ctx: ToolContext) -> str:
        """Busy."""
        await ctx.writer.write({"step": n})
        await ctx.writer.custom("data-status", {"state": "halfway"})
        await ctx.progress("almost", 0.75)
        return "ok"

    ctx = context(emit, tool_name="busy", tool_call_id="call_7", run_id="run_7")
    assert await busy.execute({"n": 3}, ctx) == "ok"

    assert [c.type for c in seen] == ["tool-output", "data-status", "tool-output"]
    assert all(c.run_id == "run_7" for c in seen)
    assert seen[0].model_dump()["payload"] == {"toolCallId": "call_7", "toolName": "busy", "output": {"step": 3}}
    assert seen[1].model_dump() == {
        "type": "data-status",
        "runId": "run_7",
        "from": "AGENT",
        "metadata": {"toolCallId": "call_7", "toolName": "busy"},
        "data": {"state": "halfway"},
    }
    assert seen[1].is_data
    assert seen[2].payload.output == {"type": "progress", "message": "almost", "progress": 0.75}


async def test_writer_chunks_reach_the_run_stream() -> None:
    @tool
    async def busy(ctx: ToolContext) -> str:
        """Busy."""
        await ctx.writer.custom("data-status", {"state": "working"})
        return "ok"

    model = ScriptedModel([calls(call("busy", id="call_b")), reply("finished")])
    stream = Agent("streamer", model=model, tools=[busy]).stream("go")
    chunks = [c async for c in stream]
    types = [c.type for c in chunks]
    assert "data-status" in types
    assert types.index("data-status") < types.index("tool-result")
    data = chunks[types.index("data-status")]
    assert data.run_id == stream.run_id
    assert data.metadata == {"toolCallId": "call_b", "toolName": "busy"}
    assert (await stream.result()).text == "finished"


async def test_custom_refuses_non_data_types() -> None:
    seen, emit = collector()
    ctx = context(emit)
    for bad in ("status", "data-", "tool-output", "Data-x"):
        with pytest.raises(ValueError, match="must start with 'data-'"):
            await ctx.writer.custom(bad, {})
    assert seen == []


async def test_progress_range_checked() -> None:
    seen, emit = collector()
    ctx = context(emit)
    for bad in (-0.01, 1.01, 2):
        with pytest.raises(ValueError, match="between 0 and 1"):
            await ctx.progress("x", bad)
    assert seen == []
    await ctx.progress("start", 0.0)
    await ctx.progress("end", 1.0)
    await ctx.progress("unknown")
    assert [c.payload.output["progress"] for c in seen] == [0.0, 1.0, None]


async def test_sync_tool_sees_cancellation() -> None:
    started, proceed, finished = threading.Event(), threading.Event(), threading.Event()
    observed: list[bool] = []

    @tool
    def slow(ctx: ToolContext) -> str:
        """Slow."""
        observed.append(ctx.cancelled)
        started.set()
        proceed.wait(5)
        observed.append(ctx.cancelled)
        finished.set()
        return "late"

    ctx = context(tool_name="slow")
    with anyio.fail_after(5):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as group:
                group.start_soon(slow.execute, {}, ctx)
                await anyio.to_thread.run_sync(started.wait, 5)
                scope.cancel()
        assert scope.cancelled_caught
        # The worker thread was abandoned, not stopped: it is still blocked on `proceed`.
        assert not finished.is_set()
        assert ctx.cancelled
        proceed.set()
        assert await anyio.to_thread.run_sync(finished.wait, 5)
    assert observed == [False, True]


async def test_uncancelled_context_stays_clear() -> None:
    ctx = context()

    @tool
    def quick(ctx: ToolContext) -> bool:
        """Quick."""
        return ctx.cancelled

    assert await quick.execute({}, ctx) is False
    assert not ctx.cancelled
    ctx.cancel()
    assert ctx.cancelled


def test_annotated_field_descriptions_are_kept_unless_the_docstring_gives_one() -> None:
    @tool
    def pick(
        a: Annotated[int, Field(ge=1, description="from Field")], b: Annotated[int, Field(description="x")] = 2
    ) -> int:
        """Pick.

        Args:
            b: from the docstring
        """
        return a + b

    props = pick.input_schema["properties"]
    assert props["a"] == {"description": "from Field", "minimum": 1, "type": "integer"}
    assert props["b"]["description"] == "from the docstring"


async def test_argument_errors_are_plain_words() -> None:
    @tool
    def search(query: str, limit: Annotated[int, Field(ge=1, le=20)] = 10) -> str:
        """Search."""
        return query

    with pytest.raises(ToolArgumentsError) as info:
        await search.execute({"limit": 50, "qeury": "x"}, context())
    assert str(info.value) == (
        "invalid arguments for tool search: query is required; limit must be between 1 and 20, got 50; "
        "unknown argument 'qeury' (did you mean 'query'?); it takes query, limit"
    )


def test_background_config_is_typed_and_accepts_a_dict_a_model_or_a_bool() -> None:
    @tool(background={"enabled": True, "timeout_ms": 600_000, "max_retries": 1})
    async def research(topic: str) -> str:
        """Research."""
        return topic

    assert research.background == ToolBackgroundConfig(enabled=True, timeout_ms=600_000, max_retries=1)
    assert research.background.wait_timeout_ms is None
    mastra_names = tool_from_function(research.fn, background={"enabled": True, "timeoutMs": 5, "waitTimeoutMs": 0})
    assert mastra_names.background == ToolBackgroundConfig(enabled=True, timeout_ms=5, wait_timeout_ms=0)
    assert tool_from_function(research.fn, background=True).background == ToolBackgroundConfig(enabled=True)
    given = ToolBackgroundConfig(max_retries=2)
    assert tool_from_function(research.fn, background=given).background is given
    assert tool_from_function(research.fn).background is None


@pytest.mark.parametrize(
    ("background", "message"),
    [
        ({"enabled": True, "timeout": 5}, "unknown argument 'timeout' (did you mean 'timeout_ms'?)"),
        ({"timeout_ms": 0}, "timeout_ms must be over 0, got 0"),
        ({"max_retries": "many"}, "max_retries must be a whole number"),
    ],
)
def test_a_bad_background_config_fails_when_the_tool_is_defined(background: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="tool research: invalid background config") as info:

        @tool(background=background)
        async def research(topic: str) -> str:
            """Research."""
            return topic

    assert message in str(info.value)


def test_background_must_be_a_mapping_a_model_or_a_bool() -> None:
    with pytest.raises(TypeError, match="background must be a dict"):
        tool_from_function(parse_docstring, background="yes")  # type: ignore[arg-type]
