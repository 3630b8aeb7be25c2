"""Builds the Lodestar MCP server and runs it over stdio or streamable HTTP."""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from mcp.server.mcpserver import MCPServer

from lodestar import __version__
from lodestar.docs.service import DocsService
from lodestar.server.docs_tools import register_docs_tools
from lodestar.server.plain import PlainServer
from lodestar.server.resources import register_resources
from lodestar.settings import Settings

INSTRUCTIONS = (
    "Lodestar searches and reads documentation. Use search_docs with a question or an identifier, "
    "then read_doc with a hit's path (and its anchor as heading) to read the section. "
    "list_corpora shows which documentation sets are loaded."
)


def build_server(settings: Settings, docs: DocsService) -> MCPServer:
    @asynccontextmanager
    async def lifespan(_: MCPServer) -> AsyncIterator[DocsService]:
        # Indexes open on a thread after the transport is up, so `initialize` is answered at once.
        # Once loaded, what is in memory (the SDK, indexes) is frozen out of the garbage collector's full
        # passes, which otherwise stall every request for tens of milliseconds.
        if not docs.started:
            docs.load_in_background(then=gc.freeze)
        try:
            yield docs
        finally:
            docs.close()

    server = PlainServer(
        "lodestar",
        version=__version__,
        instructions=INSTRUCTIONS,
        website_url="https://github.com/lodestar-mcp/lodestar",
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        # Nothing here announces a change, so 2026-07-28 clients are not offered subscriptions/listen (which would
        # advertise listChanged and resources.subscribe) only to hold a stream open that never carries an event.
        subscriptions=False,
    )
    register_docs_tools(server, docs)
    register_resources(server, docs)
    return server


def run(settings: Settings) -> None:
    docs = DocsService(settings.corpora, settings.cache_dir, bundled=not settings.no_bundled)
    server = build_server(settings, docs)
    if settings.http:
        from lodestar.server.http import serve_http

        anyio.run(serve_http, server, settings, docs)
    else:
        anyio.run(server.run_stdio_async)
