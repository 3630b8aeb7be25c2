"""Which clients asked for debug logs: an agent run sends them each chunk's JSON as a log message."""

from __future__ import annotations

from typing import Any
from weakref import WeakKeyDictionary

from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import EmptyResult, SetLevelRequestParams
from mcp_types.version import is_version_at_least

LOG_LEVEL_META = "io.modelcontextprotocol/logLevel"
REQUEST_LOGS_VERSION = "2026-07-28"
"""From this protocol on, a request carries its own log level in `_meta`; before it, `logging/setLevel` sets one
for the connection."""

_levels: WeakKeyDictionary[Any, str] = WeakKeyDictionary()


def register_log_levels(server: MCPServer) -> None:
    async def set_level(ctx: ServerRequestContext[Any, Any], params: SetLevelRequestParams) -> EmptyResult:
        _levels[ctx.session._connection] = params.level  # the per-request session's connection, an SDK internal
        return EmptyResult()

    server._lowlevel_server.add_request_handler("logging/setLevel", SetLevelRequestParams, set_level)


def wants_debug(ctx: Context[Any, Any]) -> bool:
    version = ctx.protocol_version
    if version is not None and is_version_at_least(version, REQUEST_LOGS_VERSION):
        return (ctx.request_context.meta or {}).get(LOG_LEVEL_META) == "debug"
    return _levels.get(ctx.session._connection) == "debug"
