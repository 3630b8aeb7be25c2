"""The docs tools: thin adapters from MCP calls to DocsService."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Annotated, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from lodestar._loops import PerLoop
from lodestar.docs import render
from lodestar.docs.models import CorporaResult, DocPage, ListResult, SearchResult
from lodestar.docs.service import DocsService
from lodestar.docs.waiting import call_when_loaded

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
CorpusArg = Annotated[str | None, Field(description="Corpus name (list_corpora shows them); all corpora if omitted")]


M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
DOCS_THREADS = 8  # docs calls at once; more wait their turn, and neither blocks the event loop
_threads = PerLoop(lambda: anyio.CapacityLimiter(DOCS_THREADS))


async def _call(
    docs: DocsService, ctx: Context, operation: Callable[[], M], text: Callable[[M], str]
) -> CallToolResult:
    """Answers with text and structured content. A DocsError goes up: the server turns it into a tool error
    with its message (plain.tool_failure), as it does for every tool."""
    result = await when_loaded(docs, ctx, operation)
    return CallToolResult(
        content=[TextContent(type="text", text=text(result))], structured_content=result.model_dump(mode="json")
    )


async def when_loaded(docs: DocsService, ctx: Context | None, work: Callable[[], T]) -> T:
    """Runs a docs call on a worker thread (a slow search must never delay other clients or /health); when
    its corpus is still fetched or indexed, the wait is reported as progress, so the client sees why."""

    async def report(waited: float, message: str) -> None:
        if ctx is not None:
            await ctx.report_progress(waited, None, message)

    return await call_when_loaded(docs, work, report, _threads.get_current())


def register_docs_tools(server: MCPServer, docs: DocsService) -> None:
    @server.tool(annotations=READ_ONLY)
    async def search_docs(
        ctx: Context,
        query: Annotated[str, Field(description="Words, a question or an identifier; any text is valid")],
        limit: Annotated[int, Field(ge=1, le=50, description="Number of hits (one per page)")] = 8,
        corpus: CorpusArg = None,
        path_prefix: Annotated[str | None, Field(description="Only pages under this path, e.g. reference/")] = None,
        offset: Annotated[int, Field(ge=0, le=1000, description="Skip this many hits, to page results")] = 0,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Search the documentation. Returns the best section of each matching page with a snippet;
        read a hit with read_doc(path, heading=anchor)."""
        return await _call(
            docs, ctx, lambda: docs.search(query, limit, corpus, path_prefix, offset), render.render_search
        )

    @server.tool(annotations=READ_ONLY)
    async def read_doc(
        ctx: Context,
        path: Annotated[str, Field(description="Page path from search_docs or list_docs, e.g. docs/overview.md")],
        corpus: CorpusArg = None,
        heading: Annotated[str | None, Field(description="Read one section: heading text or anchor")] = None,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous read_doc call")] = None,
        max_tokens: Annotated[int, Field(ge=100, le=100_000, description="Upper bound on the content size")] = 6000,
    ) -> Annotated[CallToolResult, DocPage]:
        """Read a documentation page (or one section) as markdown, in parts of at most max_tokens;
        to read the next part, call again with cursor set to the next_cursor it returned."""
        return await _call(docs, ctx, lambda: docs.read(path, corpus, heading, cursor, max_tokens), render.render_page)

    @server.tool(annotations=READ_ONLY)
    async def list_docs(
        ctx: Context,
        path_prefix: Annotated[str, Field(description="Folder to list, e.g. docs/ or reference/tools")] = "",
        corpus: CorpusArg = None,
        depth: Annotated[int, Field(ge=1, le=10, description="How many folder levels to expand")] = 1,
    ) -> Annotated[CallToolResult, ListResult]:
        """List documentation folders and pages under a path."""
        return await _call(docs, ctx, lambda: docs.list(path_prefix, corpus, depth), render.render_list)

    @server.tool(annotations=READ_ONLY)
    async def list_corpora(ctx: Context) -> Annotated[CallToolResult, CorporaResult]:
        """List the documentation corpora this server searches, with their versions and sizes."""
        return await _call(docs, ctx, docs.list_corpora, render.render_corpora)

    @server.tool(annotations=ToolAnnotations(read_only_hint=False, idempotent_hint=True, open_world_hint=False))
    async def refresh_docs(ctx: Context, corpus: CorpusArg = None) -> Annotated[CallToolResult, CorporaResult]:
        """Re-index documentation files changed since the server started (only the changed files are
        re-read) and load again the corpora that failed to load, reporting progress per corpus."""
        names = await when_loaded(docs, ctx, lambda: docs.refreshable(corpus))
        for done, name in enumerate(names, 1):
            note = await when_loaded(docs, None, partial(docs.refresh, name))
            await ctx.report_progress(done, len(names), note)
        return await _call(docs, ctx, docs.list_corpora, render.render_corpora)
