"""The docs:// resources: every page listed with cursors, the page template with completion of corpus and path,
and the ask_docs prompt. Clients that let people pick resources (an @-mention, an attach menu) show these."""

from __future__ import annotations

import base64
import binascii
import json
from bisect import bisect_right
from collections.abc import Iterator
from itertools import islice
from typing import Annotated, Any
from urllib.parse import quote

from mcp import MCPError
from mcp.server.context import ServerRequestContext
from mcp.server.extension import RequestHandler
from mcp.server.mcpserver import MCPServer
from mcp.types import (
    INVALID_PARAMS,
    Completion,
    CompletionArgument,
    CompletionContext,
    ListResourcesResult,
    PaginatedRequestParams,
    PromptReference,
    Resource,
    ResourceTemplateReference,
)
from mcp_types.version import is_version_at_least
from pydantic import Field

from lodestar.docs.service import BUNDLED, Corpus, DocsService
from lodestar.server.docs_tools import when_loaded

TEMPLATE = "docs://{corpus}/{+path}"
MIME_TYPE = "text/markdown"
PAGE_SIZE = 100  # resources per resources/list answer
COMPLETION_VALUES = 100  # the most values one completion answer may carry (the MCP spec's cap)
RESOURCE_NOT_FOUND = -32002  # a missing resource up to protocol 2025-11-25; from 2026-07-28 it is -32602 (SEP-2164)
INVALID_PARAMS_SINCE = "2026-07-28"
ASK_DOCS = "ask_docs"


def page_uri(corpus: str, path: str) -> str:
    """Percent-encodes all but `/`, so a path with spaces, `?`, `#` or non-ASCII letters reads back as itself."""
    return f"docs://{corpus}/{quote(path, safe='/')}"


def _order(corpus: str) -> tuple[bool, str]:
    """A user's corpora by name, then the bundled one."""
    return corpus == BUNDLED, corpus


class PageCatalog:
    """The pages of the loaded corpora in a stable order (see _order, then by path). Each corpus's paths are
    sorted once per index version: a refresh replaces the manifest, and with it the sorted copy. Listing and path
    completion run on worker threads (tens of milliseconds for 20,000 pages); two sorting one corpus at once
    only sort it twice."""

    def __init__(self, docs: DocsService) -> None:
        self.docs = docs
        self._sorted: dict[str, tuple[object, list[str]]] = {}

    def corpora(self) -> list[Corpus]:
        return sorted(self.docs.select(None), key=lambda c: _order(c.name))

    def paths(self, corpus: Corpus) -> list[str]:
        cached = self._sorted.get(corpus.name)
        if cached is None or cached[0] is not corpus.manifest:
            cached = (corpus.manifest, sorted(corpus.manifest.files))
            self._sorted[corpus.name] = cached
        return cached[1]

    def page(self, cursor: str | None, size: int = PAGE_SIZE) -> ListResourcesResult:
        """The `size` pages after the one the cursor names. A cursor names the last page sent, not an offset,
        so a corpus that finishes loading between two calls makes no other page repeat or go missing."""
        items = list(islice(self._after(_decode_cursor(cursor) if cursor else None), size + 1))
        last = items[size - 1] if len(items) > size else None
        return ListResourcesResult(
            resources=[_resource(corpus, path) for corpus, path in items[:size]],
            next_cursor=_encode_cursor(last[0].name, last[1]) if last else None,
        )

    def _after(self, after: tuple[str, str] | None) -> Iterator[tuple[Corpus, str]]:
        for corpus in self.corpora():
            if after and _order(corpus.name) < _order(after[0]):
                continue
            paths = self.paths(corpus)
            start = bisect_right(paths, after[1]) if after and corpus.name == after[0] else 0
            yield from ((corpus, path) for path in islice(paths, start, None))

    def complete_corpus(self, value: str) -> Completion:
        return _completion([c.name for c in self.corpora()], value)

    def complete_path(self, value: str, corpus: str | None) -> Completion:
        """Paths of the corpus named so far, or of every corpus (each path once) when none is."""
        chosen = [c for c in self.corpora() if c.name == corpus] if corpus else self.corpora()
        paths = self.paths(chosen[0]) if len(chosen) == 1 else sorted({p for c in chosen for p in self.paths(c)})
        return _completion(paths, value)


def _completion(candidates: list[str], value: str) -> Completion:
    """Those starting with `value`, then those holding it elsewhere, ignoring case; `total` counts both."""
    wanted = value.lower()
    lowered = [(candidate, candidate.lower()) for candidate in candidates]
    found = [c for c, low in lowered if low.startswith(wanted)]
    found += [c for c, low in lowered if wanted in low and not low.startswith(wanted)]
    values = found[:COMPLETION_VALUES]
    return Completion(values=values, total=len(found), has_more=len(found) > len(values))


def _resource(corpus: Corpus, path: str) -> Resource:
    record = corpus.manifest.files[path]
    return Resource(
        uri=page_uri(corpus.name, path),
        name=f"{corpus.name}:{path}",
        title=record.title or None,
        mime_type=MIME_TYPE,
        size=record.size,
    )


def _encode_cursor(corpus: str, path: str) -> str:
    return base64.urlsafe_b64encode(json.dumps([corpus, path]).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        corpus, path = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        if isinstance(corpus, str) and isinstance(path, str):
            return corpus, path
    except (ValueError, TypeError, binascii.Error):
        pass
    raise MCPError(
        code=INVALID_PARAMS,
        message="invalid cursor: pass the nextCursor of the previous resources/list answer unchanged, "
        "or omit the cursor to start from the first page",
    )


def _not_found_code(read: RequestHandler) -> RequestHandler:
    """The SDK answers a missing resource with -32602, as protocol 2026-07-28 asks (SEP-2164); a client that
    negotiated an older version is owed -32002. The SDK raises -32602 on resources/read only for a missing
    resource (a malformed request fails validation before this handler), and its data names the uri."""

    async def handler(ctx: ServerRequestContext[Any, Any], params: Any) -> Any:
        try:
            return await read(ctx, params)
        except MCPError as exc:
            if exc.code != INVALID_PARAMS or is_version_at_least(ctx.protocol_version, INVALID_PARAMS_SINCE):
                raise
            raise MCPError(code=RESOURCE_NOT_FOUND, message=exc.message, data=exc.data) from exc

    return handler


def register_resources(server: MCPServer, docs: DocsService) -> None:
    catalog = PageCatalog(docs)

    @server.resource(
        TEMPLATE,
        name="docs",
        title="Documentation page",
        description="A page of a loaded documentation corpus, whole, as markdown. resources/list lists every page; "
        "completion suggests corpus names and page paths.",
        mime_type=MIME_TYPE,
    )
    async def doc_page(corpus: str, path: str) -> str:
        return await when_loaded(docs, None, lambda: docs.read_all(corpus, path))  # plain.PlainServer maps errors

    async def list_pages(_: ServerRequestContext[Any, Any], params: PaginatedRequestParams) -> ListResourcesResult:
        return await when_loaded(docs, None, lambda: catalog.page(params.cursor))

    # MCPServer lists only resources registered one by one, without cursors; these two handlers replace its own.
    lowlevel = server._lowlevel_server  # tests/test_resources.py pins this SDK internal
    lowlevel.add_request_handler("resources/list", PaginatedRequestParams, list_pages)
    read = lowlevel.get_request_handler("resources/read")
    assert read is not None, "MCPServer serves resources/read"
    lowlevel.add_request_handler("resources/read", read.params_type, _not_found_code(read.handler))

    @server.completion()
    async def complete(
        ref: ResourceTemplateReference | PromptReference, argument: CompletionArgument, given: CompletionContext | None
    ) -> Completion | None:
        template = isinstance(ref, ResourceTemplateReference) and ref.uri == TEMPLATE
        if not template and not (isinstance(ref, PromptReference) and ref.name == ASK_DOCS):
            return None
        if argument.name == "corpus":
            return await when_loaded(docs, None, lambda: catalog.complete_corpus(argument.value))
        if argument.name == "path" and template:
            corpus = given.arguments.get("corpus") if given and given.arguments else None
            return await when_loaded(docs, None, lambda: catalog.complete_path(argument.value, corpus))
        return None

    @server.prompt(name=ASK_DOCS, title="Answer from the docs")
    async def ask_docs(
        question: Annotated[str, Field(description="What you want to know")],
        corpus: Annotated[str | None, Field(description="Corpus to search; all corpora if omitted")] = None,
    ) -> str:
        """Answer a question from the documentation: search, read the best sections, cite corpus:path#anchor."""
        await when_loaded(docs, None, lambda: docs.select(corpus))  # an unknown corpus: invalid params (plain.py)
        where = f'corpus="{corpus}"' if corpus else "no corpus (to search all corpora)"
        return (
            f"Answer this question from the documentation Lodestar serves:\n\n{question}\n\n"
            f"Call search_docs with the question and {where}; read the most relevant hits with "
            "read_doc(path, corpus, heading=anchor), and search again with other words when they do not answer it. "
            "Answer only from what you read, cite every page you used as corpus:path#anchor, "
            "and say so if the documentation does not cover the question."
        )
