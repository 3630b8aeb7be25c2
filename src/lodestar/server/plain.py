"""The MCP server with plain protocol text: a model reads tool descriptions and argument errors, so they carry
no source indentation and no validator internals (pydantic's "type=int_parsing" and documentation links).

It is also the one place where an exception from a tool, resource or prompt becomes what the client reads: a
`LodestarError`'s message is written for the caller and goes to the client as it is; anything else is a bug, logged
here with its traceback, and the client is told only that the server's log has the details.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

from mcp import MCPError
from mcp.server.lowlevel.helper_types import ReadResourceContents
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import (
    ResourceError,
    ResourceNotFoundError,
    ToolError,
    UnexpectedResourceError,
    UnexpectedToolError,
)
from mcp.types import INVALID_PARAMS, CallToolResult, GetPromptResult, InputRequiredResult, TextContent
from pydantic import ValidationError

from lodestar.arguments import argument_problems, unknown_arguments
from lodestar.docs.errors import DocsError
from lodestar.errors import LodestarError

log = logging.getLogger(__name__)
SEE_LOG = "the server's log has the details"


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
            if isinstance(exc, UnexpectedToolError) or lodestar_error(exc):
                return tool_failure(name, exc)
            if not isinstance(exc.__cause__, ValidationError):
                raise
            problems = argument_problems(exc.__cause__.errors(), properties)
            raise ToolError(f"Invalid arguments for {name}: {problems}") from exc.__cause__

    async def read_resource(
        self, uri: Any, context: Context[Any, Any] | None = None
    ) -> Iterable[ReadResourceContents] | InputRequiredResult:
        """A docs request that cannot be served names a page that is not there; another LodestarError is a
        failed read with its message (-32603); a crash is logged by the SDK, with its traceback."""
        try:
            return await super().read_resource(uri, context)
        except ResourceError as exc:
            error = lodestar_error(exc)
            if error is None and isinstance(exc, UnexpectedResourceError):
                raise UnexpectedResourceError(f"reading {uri} failed unexpectedly; {SEE_LOG}") from exc.__cause__
            if error is None:
                raise
            raise (ResourceNotFoundError if isinstance(error, DocsError) else ResourceError)(str(error)) from error

    async def get_prompt(
        self, name: str, arguments: dict[str, Any] | None = None, context: Context[Any, Any] | None = None
    ) -> GetPromptResult | InputRequiredResult:
        """A prompt's only input is its arguments, so a LodestarError there is invalid params with its message."""
        try:
            return await super().get_prompt(name, arguments, context)
        except ValueError as exc:
            error = lodestar_error(exc)
            if error is None:
                raise
            raise MCPError(code=INVALID_PARAMS, message=str(error)) from error


def lodestar_error(exc: BaseException) -> LodestarError | None:
    """The LodestarError a handler raised, under the SDK's wrappers (each keeps what it wrapped as `__cause__`)."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, LodestarError):
        cause = cause.__cause__
    return cause


def tool_failure(name: str, exc: ToolError) -> CallToolResult:
    """A tool's failure as the client reads it: a LodestarError's own message, or, for anything else, a pointer
    to the server's log, which gets the traceback."""
    error = lodestar_error(exc)
    if error is not None:
        log.info("tool %s failed: %s", name, error)
        text = str(error)
    else:
        log.error("tool %s failed unexpectedly", name, exc_info=exc.__cause__ or exc)
        text = f"{name} failed unexpectedly; {SEE_LOG}"
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)
