"""`@tool`: a Python function as a model-callable tool, its JSON schemas read from the signature."""

from __future__ import annotations

import functools
import inspect
import re
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Annotated, Any, get_args, get_origin, get_type_hints, overload

import anyio
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, create_model
from pydantic_core import to_jsonable_python

from .._loops import PerLoop
from ..arguments import argument_problems
from ..errors import InvalidTypeError, InvalidValueError, UsageError
from .background import BackgroundArg, background_config
from .context import ToolContext
from .models.base import ToolSpec

if TYPE_CHECKING:
    from .agent import Agent

NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}\Z")
_DOC_ARG = re.compile(r"^\s*(?::param\s+(?:[\w\[\].|]+\s+)?)?(\w+)(?:\s*\([^)]*\))?\s*:\s*(.+)$")


class ToolArgumentsError(UsageError, ValueError):
    """Arguments that do not fit a tool's input schema, raised by `Tool.validate` and `Tool.execute`. In a run the
    model reads the message as the tool's result and tries again; a direct caller fixes the arguments."""


class Tool:
    """A callable a model may ask for. Build one with `@tool`, or directly for a hand-written schema."""

    def __init__(
        self,
        fn: Callable[..., Any],
        *,
        name: str,
        description: str,
        input_schema: dict[str, Any],
        output_schema: dict[str, Any] | None = None,
        args_model: type[BaseModel] | None = None,
        context_param: str | None = None,
        background: BackgroundArg = None,
    ) -> None:
        if not NAME.match(name):
            raise InvalidValueError(f"tool name {name!r} must be 1-64 letters, digits, '_' or '-'")
        self.fn = fn
        self.name = name
        self.description = description
        self.input_schema = input_schema
        self.output_schema = output_schema
        self.args_model = args_model
        self.context_param = context_param
        self.background = background_config(background, name)
        self.delegates_to: Agent | None = None  # the subagent, for a tool that delegates to one
        self.is_async = inspect.iscoroutinefunction(inspect.unwrap(fn))

    def __repr__(self) -> str:
        return f"Tool({self.name!r})"

    @functools.cached_property
    def spec(self) -> ToolSpec:
        """Built once: every step of every run hands the same spec to the model."""
        return ToolSpec(name=self.name, description=self.description, input_schema=self.input_schema)

    def validate(self, args: Mapping[str, Any]) -> dict[str, Any]:
        """Check the model's arguments; the error names each bad field so the model can fix its call."""
        if self.args_model is None:
            return dict(args)
        try:
            parsed = self.args_model.model_validate(args)
        except ValidationError as exc:
            problems = argument_problems(exc.errors(), self.input_schema.get("properties", {}))
            raise ToolArgumentsError(f"invalid arguments for tool {self.name}: {problems}") from None
        return dict(parsed.__dict__)  # the fields, as parsed (extra names are refused, so there are no others)

    async def execute(self, args: Mapping[str, Any], context: ToolContext) -> Any:
        """Validate, call (sync functions in a worker thread), and return a JSON-ready result."""
        kwargs = self.validate(args)
        if self.context_param:
            kwargs[self.context_param] = context
        if self.is_async:
            result = await self.fn(**kwargs)
        else:
            try:
                result = await anyio.to_thread.run_sync(
                    lambda: self.fn(**kwargs), abandon_on_cancel=True, limiter=_tool_threads.get_current()
                )
            except anyio.get_cancelled_exc_class():
                context.cancel()
                raise
            if inspect.isawaitable(result):  # an async function behind a plain wrapper
                result = await result
        return to_jsonable_python(result, fallback=str)


@overload
def tool(fn: Callable[..., Any], /) -> Tool: ...
@overload
def tool(
    *, name: str | None = None, description: str | None = None, background: BackgroundArg = None
) -> Callable[[Callable[..., Any]], Tool]: ...


def tool(
    fn: Callable[..., Any] | None = None,
    /,
    *,
    name: str | None = None,
    description: str | None = None,
    background: BackgroundArg = None,
) -> Tool | Callable[[Callable[..., Any]], Tool]:
    """Make a tool of a function: `@tool` or `@tool(name=..., description=..., background={...})`."""

    def build(function: Callable[..., Any]) -> Tool:
        return tool_from_function(function, name=name, description=description, background=background)

    return build(fn) if fn is not None else build


def tool_map(tools: Sequence[Tool | Callable[..., Any]] | Mapping[str, Tool | Callable[..., Any]]) -> dict[str, Tool]:
    """Tools from a list, or from a mapping whose keys name them."""
    named = tools.items() if isinstance(tools, Mapping) else ((None, item) for item in tools)
    built: dict[str, Tool] = {}
    for name, item in named:
        made = item if isinstance(item, Tool) else tool_from_function(item, name=name)
        if name is not None and made.name != name:
            raise InvalidValueError(f"tool {made.name!r} is listed under the name {name!r}: use the same name for both")
        if made.name in built:
            raise InvalidValueError(f"two tools are named {made.name!r}: tool names must be unique within an agent")
        built[made.name] = made
    return built


def tool_from_function(
    fn: Callable[..., Any],
    *,
    name: str | None = None,
    description: str | None = None,
    background: BackgroundArg = None,
) -> Tool:
    summary, arg_docs = parse_docstring(inspect.getdoc(fn) or "")
    hints = get_type_hints(fn, include_extras=True)
    fields: dict[str, Any] = {}
    context_param = None
    for param in inspect.signature(fn).parameters.values():
        annotation = hints.get(param.name, Any)
        if _is_context(annotation):
            context_param = param.name
            continue
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise InvalidTypeError(f"tool {fn.__name__}: *args and **kwargs cannot be described to a model")
        default = ... if param.default is param.empty else param.default
        # Field(description=None) would erase a description the annotation's own Field gives.
        documented = Field(default, description=arg_docs[param.name]) if param.name in arg_docs else Field(default)
        fields[param.name] = (annotation, documented)
    tool_name = name or fn.__name__
    args_model = create_model(f"{tool_name}_args", __config__=ConfigDict(extra="forbid"), **fields)
    return Tool(
        fn,
        name=tool_name,
        description=description or summary or f"Call {tool_name}.",
        input_schema=_clean_schema(args_model.model_json_schema()),
        output_schema=_output_schema(hints.get("return", inspect.Signature.empty)),
        args_model=args_model,
        context_param=context_param,
        background=background,
    )


def _is_context(annotation: Any) -> bool:
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    return isinstance(annotation, type) and issubclass(annotation, ToolContext)


def _output_schema(annotation: Any) -> dict[str, Any] | None:
    """Informative only: a return type pydantic cannot describe gets no schema rather than an error."""
    if annotation in (inspect.Signature.empty, None, type(None), Any):
        return None
    try:
        return _clean_schema(TypeAdapter(annotation).json_schema())
    except Exception:
        return None


# Sync tools get their own thread budget, so a crowd of blocking tools never starves storage's threads.
_tool_threads = PerLoop(lambda: anyio.CapacityLimiter(64))


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """Drop pydantic's generated titles: they cost the model tokens and say nothing new."""
    schema.pop("title", None)
    for prop in schema.get("properties", {}).values():
        prop.pop("title", None)
    return schema


def parse_docstring(doc: str) -> tuple[str, dict[str, str]]:
    """The summary paragraph and per-argument descriptions (Google `Args:` or Sphinx `:param x:` style)."""
    summary = doc.split("\n\n", 1)[0].strip()
    if summary.lower().startswith(("args:", "arguments:", "parameters:", ":param")):
        summary = ""
    args: dict[str, str] = {}
    section_indent: int | None = None  # indentation of argument lines inside an Args: section
    current = None
    for line in doc.splitlines():
        stripped = line.strip()
        indent = len(line) - len(line.lstrip())
        if stripped.lower() in ("args:", "arguments:", "parameters:"):
            section_indent, current = -1, None
            continue
        in_section = section_indent is not None and indent > 0
        is_arg_line = stripped.startswith(":param") or (in_section and section_indent in (-1, indent))
        match = _DOC_ARG.match(line) if is_arg_line else None
        if match:
            current = match.group(1)
            args[current] = match.group(2).strip()
            if section_indent == -1:
                section_indent = indent
        elif current and stripped and indent > 0 and (section_indent is None or indent > section_indent):
            args[current] += " " + stripped
        elif stripped and indent == 0:
            section_indent, current = None, None
    return summary, args
