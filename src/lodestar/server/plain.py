"""The MCP server with plain protocol text: a model reads tool descriptions and argument errors, so they carry
no source indentation and no validator internals (pydantic's "type=int_parsing" and documentation links)."""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError
from pydantic_core import ErrorDetails

SHOWN_VALUE_CHARS = 60  # of a rejected value repeated in the error
KINDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
BOUNDS = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "over", "less_than": "under"}


class PlainServer(MCPServer[Any]):
    """Also refuses unknown arguments, which would otherwise be dropped without a word (a misspelt `corpora`
    would search every corpus); the input schemas say so with additionalProperties: false."""

    def add_tool(self, fn: Callable[..., Any], name: str | None = None, *args: Any, **kwargs: Any) -> None:
        kwargs["description"] = inspect.cleandoc(kwargs.get("description") or fn.__doc__ or "")
        super().add_tool(fn, name, *args, **kwargs)
        tool = self._tool_manager.get_tool(name or fn.__name__)
        if tool is not None:
            tool.parameters["additionalProperties"] = False

    async def call_tool(
        self, name: str, arguments: dict[str, Any], context: Context[Any, Any] | None = None
    ) -> CallToolResult | InputRequiredResult:
        tool = self._tool_manager.get_tool(name)
        if tool is None:
            return await super().call_tool(name, arguments, context)
        properties: dict[str, Any] = tool.parameters.get("properties", {})
        if unknown := [key for key in arguments if key not in properties]:
            raise ToolError(f"Invalid arguments for {name}: {_unknown(unknown, properties)}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError) or not isinstance(exc.__cause__, ValidationError):
                raise
            problems = dict.fromkeys(_problem(error, properties) for error in exc.__cause__.errors())
            raise ToolError(f"Invalid arguments for {name}: {'; '.join(problems)}") from exc.__cause__


def _unknown(unknown: list[str], properties: dict[str, Any]) -> str:
    def one(key: str) -> str:
        close = difflib.get_close_matches(key, list(properties), n=1)
        return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

    takes = ", ".join(properties) or "no arguments"
    noun = "argument" if len(unknown) == 1 else "arguments"
    return f"unknown {noun} {', '.join(map(one, unknown))}; it takes {takes}"


def _problem(error: ErrorDetails, properties: dict[str, Any]) -> str:
    field = ".".join(map(str, error["loc"])) or "arguments"
    kind = error["type"]
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{field} is required"
    if kind in KINDS:
        return f"{field} must be {KINDS[kind]}, got {got}"
    if kind in BOUNDS:
        return f"{field} must be {_bounds(properties.get(field, {}), error)}, got {got}"
    return f"{field}: {error['msg']}, got {got}"


def _bounds(schema: dict[str, Any], error: ErrorDetails) -> str:
    """Both ends when the schema has them, as in "between 1 and 50", else the one that was crossed."""
    if "minimum" in schema and "maximum" in schema:
        return f"between {schema['minimum']} and {schema['maximum']}"
    limit = next(iter((error.get("ctx") or {}).values()), "?")
    return f"{BOUNDS[error['type']]} {limit}"


def _shown(value: Any) -> str:
    """The value as the client sent it (JSON), cut to a readable length."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
