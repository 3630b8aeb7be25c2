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

    from lodestar.docs.service import DocsService
    from lodestar.server.agent_host import AgentHost
    from lodestar.settings import Settings

INSTRUCTIONS = (
    "Lodestar searches and reads documentation. Use search_docs with a question or an identifier, "
    "then read_doc with a hit's path (and its anchor as heading) to read the section. "
    "list_corpora shows which documentation sets are loaded."
)
AGENT_INSTRUCTIONS = (
    " Agents run as ask_<agent_id> tools (list_agents describes them), reporting each step as progress."
)
TASK_INSTRUCTIONS = " Background tasks they start are followed with list_background_tasks and watch_background_tasks."


def instructions(host: AgentHost | None) -> str:
    """What the client's model reads about this server: the agent and task tools only when they are served."""
    agents = AGENT_INSTRUCTIONS if host is not None and host.infos else ""
    tasks = TASK_INSTRUCTIONS if host is not None and host.has_tasks else ""
    return INSTRUCTIONS + agents + tasks


def build_server(settings: Settings, docs: DocsService, host: AgentHost | None = None) -> MCPServer:
    """The docs tools and resources; with a host, its agents as tools, and the task tools when it runs tasks."""
    from lodestar.server.docs_tools import register_docs_tools
    from lodestar.server.log_levels import register_log_levels
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
            if host is not None and host.apps:
                await host.open()  # an app's task workers start, and recover what a killed process left
            yield docs
        finally:
            if host is not None:
                await host.aclose()
            docs.close()

    server = PlainServer(
        "lodestar",
        version=__version__,
        instructions=instructions(host),
        website_url="https://github.com/lodestar-mcp/lodestar",
        lifespan=lifespan,
        log_level=settings.log_level,  # type: ignore[arg-type]
        # Nothing here announces a change, so 2026-07-28 clients are not offered subscriptions/listen (which would
        # advertise listChanged and resources.subscribe) only to hold a stream open that never carries an event.
        subscriptions=False,
    )
    register_docs_tools(server, docs)
    register_resources(server, docs)
    register_log_levels(server)
    if host is not None and host.infos:
        from lodestar.server.agent_tools import register_agent_tools

        register_agent_tools(server, host, settings.model, settings.result_max_tokens)
    if host is not None and host.has_tasks:
        from lodestar.server.task_tools import register_task_tools

        register_task_tools(server, host.managers)
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
        from lodestar.server.agent_host import host_for

        docs = DocsService(settings.corpora, settings.cache_dir, bundled=not settings.no_bundled)
        server = build_server(settings, docs, host_for(settings, docs))
    if settings.http:
        from lodestar.server.http import serve_http

        anyio.run(serve_http, server, settings, docs)
    else:
        from lodestar.server.stdio import serve_stdio

        anyio.run(serve_stdio, server)
