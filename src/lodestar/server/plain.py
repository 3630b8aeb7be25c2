"""The MCP server with plain protocol text: a model reads tool descriptions and argument errors, so they carry
no source indentation and no validator internals (pydantic's "type=int_parsing" and documentation links)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError, UnexpectedToolError
from mcp.types import CallToolResult, InputRequiredResult
from pydantic import ValidationError

from lodestar.arguments import argument_problems, unknown_arguments


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
            raise ToolError(f"Invalid arguments for {name}: {unknown_arguments(unknown, properties)}")
        try:
            return await super().call_tool(name, arguments, context)
        except ToolError as exc:
            if isinstance(exc, UnexpectedToolError) or not isinstance(exc.__cause__, ValidationError):
                raise
            problems = argument_problems(exc.__cause__.errors(), properties)
            raise ToolError(f"Invalid arguments for {name}: {problems}") from exc.__cause__
