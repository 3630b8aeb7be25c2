"""The docs tools and the docs:// resource: thin adapters from MCP calls to DocsService."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceNotFoundError
from mcp.types import CallToolResult, TextContent, ToolAnnotations
from pydantic import BaseModel, Field

from lodestar._loops import PerLoop
from lodestar.docs import render
from lodestar.docs.errors import DocsError
from lodestar.docs.models import CorporaResult, DocPage, ListResult, SearchResult
from lodestar.docs.service import DocsService

READ_ONLY = ToolAnnotations(readOnlyHint=True, openWorldHint=False)
CorpusArg = Annotated[str | None, Field(description="Corpus name (list_corpora shows them); all corpora if omitted")]


M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")
DOCS_THREADS = 8  # docs calls at once; more wait their turn, and neither blocks the event loop
_threads = PerLoop(lambda: anyio.CapacityLimiter(DOCS_THREADS))


async def _off_loop(work: Callable[[], T]) -> T:
    """Runs a docs call on a worker thread: a slow search must never delay other clients or /health."""
    return await anyio.to_thread.run_sync(work, limiter=_threads.get_current())


async def _call(docs: DocsService, operation: Callable[[], M], text: Callable[[M], str]) -> CallToolResult:
    """Answers with text and structured content; service errors become tool errors with their message."""
    await _loaded(docs)
    try:
        result = await _off_loop(operation)
    except DocsError as exc:
        return _error(str(exc))
    return CallToolResult(
        content=[TextContent(type="text", text=text(result))], structured_content=result.model_dump(mode="json")
    )


async def _loaded(docs: DocsService) -> None:
    """Waits, off the event loop, for the corpora still loading on the background thread."""
    if not docs.ready.is_set():
        await anyio.to_thread.run_sync(docs.ready.wait)


def _error(message: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=message)], is_error=True)


def register_docs_tools(server: MCPServer, docs: DocsService) -> None:
    @server.tool(annotations=READ_ONLY)
    async def search_docs(
        query: Annotated[str, Field(description="Words, a question or an identifier; any text is valid")],
        limit: Annotated[int, Field(ge=1, le=50, description="Number of hits (one per page)")] = 8,
        corpus: CorpusArg = None,
        path_prefix: Annotated[str | None, Field(description="Only pages under this path, e.g. reference/")] = None,
        offset: Annotated[int, Field(ge=0, le=1000, description="Skip this many hits, to page results")] = 0,
    ) -> Annotated[CallToolResult, SearchResult]:
        """Search the documentation. Returns the best section of each matching page with a snippet;
        read a hit with read_doc(path, heading=anchor)."""
        return await _call(docs, lambda: docs.search(query, limit, corpus, path_prefix, offset), render.render_search)

    @server.tool(annotations=READ_ONLY)
    async def read_doc(
        path: Annotated[str, Field(description="Page path from search_docs or list_docs, e.g. docs/overview.md")],
        corpus: CorpusArg = None,
        heading: Annotated[str | None, Field(description="Read one section: heading text or anchor")] = None,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous read_doc call")] = None,
        max_tokens: Annotated[int, Field(ge=100, le=100_000, description="Upper bound on the content size")] = 6000,
    ) -> Annotated[CallToolResult, DocPage]:
        """Read a documentation page (or one section) as markdown, in parts of at most max_tokens;
        to read the next part, call again with cursor set to the next_cursor it returned."""
        return await _call(docs, lambda: docs.read(path, corpus, heading, cursor, max_tokens), render.render_page)

    @server.tool(annotations=READ_ONLY)
    async def list_docs(
        path_prefix: Annotated[str, Field(description="Folder to list, e.g. docs/ or reference/tools")] = "",
        corpus: CorpusArg = None,
        depth: Annotated[int, Field(ge=1, le=10, description="How many folder levels to expand")] = 1,
    ) -> Annotated[CallToolResult, ListResult]:
        """List documentation folders and pages under a path."""
        return await _call(docs, lambda: docs.list(path_prefix, corpus, depth), render.render_list)

    @server.tool(annotations=READ_ONLY)
    async def list_corpora() -> Annotated[CallToolResult, CorporaResult]:
        """List the documentation corpora this server searches, with their versions and sizes."""
        return await _call(docs, docs.list_corpora, render.render_corpora)

    @server.tool(annotations=ToolAnnotations(readOnlyHint=False, idempotentHint=True, openWorldHint=False))
    async def refresh_docs(ctx: Context, corpus: CorpusArg = None) -> Annotated[CallToolResult, CorporaResult]:
        """Re-index documentation files changed since the server started (only the changed files are
        re-read), reporting progress per corpus."""
        await _loaded(docs)
        try:
            names = [c.name for c in docs.select(corpus)]
        except DocsError as exc:
            return _error(str(exc))
        for done, name in enumerate(names, 1):
            try:
                note = await _off_loop(lambda name=name: docs.refresh(name))
            except DocsError as exc:
                return _error(str(exc))
            await ctx.report_progress(done, len(names), note)
        return await _call(docs, docs.list_corpora, render.render_corpora)

    @server.resource("docs://{corpus}/{+path}", name="docs", mime_type="text/markdown")
    async def doc_page(corpus: str, path: str) -> str:
        """A documentation page as markdown."""
        return await _read_resource(docs, corpus, path)


async def _read_resource(docs: DocsService, corpus: str, path: str) -> str:
    await _loaded(docs)
    try:
        return await _off_loop(lambda: docs.read_all(corpus, path))
    except DocsError as exc:
        raise ResourceNotFoundError(str(exc)) from exc
