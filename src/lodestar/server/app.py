"""Builds the Lodestar MCP server and runs it over stdio or streamable HTTP.

The MCP SDK is imported when a server is built, not with this module, so that `run` can pause the garbage
collector for that import: start-up is measured (scripts/bench_docs.py, against Mastra's own docs server).
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import TYPE_CHECKING

from lodestar import __version__

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from lodestar.background.manager import BackgroundTaskManager
    from lodestar.docs.service import DocsService
    from lodestar.settings import Settings

INSTRUCTIONS = (
    "Lodestar searches and reads documentation. Use search_docs with a question or an identifier, "
    "then read_doc with a hit's path (and its anchor as heading) to read the section. "
    "list_corpora shows which documentation sets are loaded."
)


def build_server(settings: Settings, docs: DocsService, tasks: BackgroundTaskManager | None = None) -> MCPServer:
    """The docs tools and resources; the background task tools too when an app's task manager is given."""
    from lodestar.server.docs_tools import register_docs_tools
    from lodestar.server.plain import PlainServer
    from lodestar.server.resources import register_resources

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
    if tasks is not None:
        from lodestar.server.task_tools import register_task_tools

        register_task_tools(server, tasks)
    return server


@contextmanager
def collector_paused() -> Iterator[None]:
    """Importing the SDK and building the server make some 100,000 objects that live as long as the process:
    the collector's passes over them cost an eighth of that time and free nothing. After it, they are frozen
    out of later full passes, which would otherwise walk them again while the indexes open."""
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        gc.enable()


def run(settings: Settings) -> None:
    with collector_paused():
        import anyio

        from lodestar.docs.service import DocsService

        docs = DocsService(settings.corpora, settings.cache_dir, bundled=not settings.no_bundled)
        server = build_server(settings, docs)
    if settings.http:
        from lodestar.server.http import serve_http

        anyio.run(serve_http, server, settings, docs)
    else:
        anyio.run(server.run_stdio_async)
