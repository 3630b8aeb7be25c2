"""The built-in `docs` agent: answers from the loaded corpora with citations, through tools that call the
server's own DocsService (no MCP round trip), plus `research`, a background-eligible search-and-read pass."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Annotated, TypeVar

import anyio
from pydantic import BaseModel, Field

from lodestar._loops import PerLoop
from lodestar.app import Lodestar
from lodestar.docs.analysis import common, query_identifiers, query_words
from lodestar.docs.errors import DocsError
from lodestar.docs.models import DocPage, Heading, SearchHit
from lodestar.docs.paging import Cursor
from lodestar.docs.sections import find_heading
from lodestar.docs.service import DocsService
from lodestar.docs.waiting import call_when_loaded
from lodestar.runtime import Agent, Tool, ToolContext, tool
from lodestar.storage import SQLiteStorage, default_db_path

from . import DOCS_AGENT_DESCRIPTION, DOCS_AGENT_ID, DOCS_AGENT_NAME

T = TypeVar("T")

DOCS_MAX_STEPS = 10  # model calls per run: a few searches, reads and the answer
READ_MAX_TOKENS = 4_000  # read_doc's default part size, within a model's context beside the conversation
READ_MAX_TOKENS_LIMIT = 12_000
SEARCH_LIMIT = 20  # most hits one search_docs call may ask for
RESEARCH_TIMEOUT_MS = 180_000  # as a background task; covers waiting for a corpus fetched from npm (120 s)
RESEARCH_SEARCHES = 8  # searches one research call makes at most: the question and its variants
RESEARCH_EXTRA_QUERIES = 5  # phrasings the model may add
RESEARCH_HITS = 5  # hits taken from each search
RESEARCH_SOURCES = 5  # sections read by default
RESEARCH_SOURCES_LIMIT = 8
RESEARCH_TOKENS = 8_000  # the notes' text in all, shared among the sections read
FUSION_K = 60  # reciprocal rank fusion: a section found by several searches beats one ranked first by one

DOCS_INSTRUCTIONS = """\
You answer questions about the documentation loaded into this server, using only what your tools return.

- Find sources with search_docs, then read the sections that matter with read_doc (a hit's path, corpus, and \
its anchor as heading). For a broad question, or one that spans several pages, call research.
- Answer only from the text the tools returned. Cite each claim as corpus:path#anchor (the citation field \
of a hit, section or note), e.g. (example:guides/setup.md#install).
- When the docs do not cover the question, say so plainly and name what you searched for; never guess or \
fill gaps from general knowledge.
- If research answers with a task id instead of notes, it is running in the background: say in one line that \
research is under way and stop; its notes reach you in a later turn, so answer then.
- A tool error says what to fix (the closest paths, the loaded corpora): fix the call and try again.
- Keep answers concise: the answer first, then only the details and code the question needs."""

_threads = PerLoop(lambda: anyio.CapacityLimiter(8))  # docs calls of agents at once, apart from storage's threads

CorpusArg = Annotated[str | None, Field(description="Corpus name; all corpora if omitted")]


class DocHit(BaseModel):
    corpus: str
    version: str
    path: str
    title: str
    heading: str
    anchor: str = Field(description="Pass as read_doc's heading to read this section")
    citation: str = Field(description="corpus:path#anchor, to cite this section")
    snippet: str


class DocHits(BaseModel):
    query: str
    total: int = Field(description="Number of matching pages")
    hits: list[DocHit]
    suggestion: str | None = Field(None, description="A spelling-corrected query, when a query word was unknown")
    notes: list[str] = Field(default_factory=list, description="What limited the search: a corpus still loading")


class DocSection(BaseModel):
    corpus: str
    version: str
    path: str
    title: str
    heading: str = Field(description="The heading of the section read; empty for a whole page")
    anchor: str
    citation: str
    content: str
    headings: list[Heading] = Field(description="The page's outline: other sections to read")
    next_cursor: str | None = Field(description="Pass as cursor to read the next part; null at the end")


class ResearchNote(BaseModel):
    citation: str
    corpus: str
    path: str
    title: str
    heading: str
    anchor: str
    text: str = Field(description="The section's markdown, cut to the notes' budget")
    next_cursor: str | None = Field(None, description="When the text was cut: read_doc's cursor for the rest")


class ResearchNotes(BaseModel):
    question: str
    searched: list[str] = Field(description="The searches made")
    found: bool
    summary: str
    notes: list[ResearchNote]
    warnings: list[str] = Field(default_factory=list, description="What limited the research")


def docs_agent(docs: DocsService) -> Agent:
    """The `docs` agent over `docs`. It has no model of its own: the server supplies one (--model,
    LODESTAR_MODEL, or the client's through sampling)."""
    return Agent(
        DOCS_AGENT_ID,
        name=DOCS_AGENT_NAME,
        description=DOCS_AGENT_DESCRIPTION,
        instructions=DOCS_INSTRUCTIONS,
        tools=docs_tools(docs),
        max_steps=DOCS_MAX_STEPS,
    )


def builtin_app(docs: DocsService, db_path: str | Path | None = None) -> Lodestar:
    """The built-in agents as an app: memory in SQLite (LODESTAR_DB by default) and background tasks on, so
    `research` runs as a task the caller can follow."""
    return Lodestar(
        [docs_agent(docs)],
        storage=SQLiteStorage(db_path or default_db_path()),
        background_tasks={"enabled": True, "global_concurrency": 4, "per_agent_concurrency": 2},
    )


def docs_tools(docs: DocsService) -> list[Tool]:
    @tool
    async def search_docs(
        ctx: ToolContext,
        query: Annotated[str, Field(description="Words, a question or an identifier")],
        limit: Annotated[int, Field(ge=1, le=SEARCH_LIMIT, description="Number of hits (one per page)")] = 8,
        corpus: CorpusArg = None,
        path_prefix: Annotated[str | None, Field(description="Only pages under this path, e.g. reference/")] = None,
    ) -> DocHits:
        """Search the documentation: the best section of each matching page, with a snippet and its citation."""
        found = await _docs_call(docs, ctx, lambda: docs.search(query, limit, corpus, path_prefix))
        hits = [_hit(h) for h in found.hits]
        return DocHits(query=found.query, total=found.total, hits=hits, suggestion=found.suggestion, notes=found.notes)

    @tool
    async def read_doc(
        ctx: ToolContext,
        path: Annotated[str, Field(description="Page path from search_docs, e.g. docs/overview.md")],
        corpus: CorpusArg = None,
        heading: Annotated[str | None, Field(description="Read one section: a hit's anchor, or heading text")] = None,
        cursor: Annotated[str | None, Field(description="next_cursor from the previous read_doc call")] = None,
        max_tokens: Annotated[
            int, Field(ge=100, le=READ_MAX_TOKENS_LIMIT, description="Upper bound on the content size")
        ] = READ_MAX_TOKENS,
    ) -> DocSection:
        """Read a documentation page, or one section of it, as markdown in parts of at most max_tokens."""
        page = await _docs_call(docs, ctx, lambda: docs.read(path, corpus, heading, cursor, max_tokens))
        wanted = Cursor.decode(cursor).heading if cursor else heading
        return _section(page, _heading(page.headings, wanted))

    @tool(background={"enabled": True, "timeout_ms": RESEARCH_TIMEOUT_MS})
    async def research(
        ctx: ToolContext,
        question: Annotated[str, Field(description="The question, in full")],
        queries: Annotated[
            tuple[str, ...],
            Field(max_length=RESEARCH_EXTRA_QUERIES, description="Other phrasings, synonyms or identifiers to search"),
        ] = (),
        corpus: CorpusArg = None,
        path_prefix: Annotated[str | None, Field(description="Only pages under this path")] = None,
        max_sources: Annotated[
            int, Field(ge=1, le=RESEARCH_SOURCES_LIMIT, description="Sections to read")
        ] = RESEARCH_SOURCES,
    ) -> ResearchNotes:
        """Research a broad question: several searches (the question, its identifiers and key terms, your
        phrasings), then the best distinct sections read. Returns notes with citations."""
        return await _research(docs, ctx, question, queries, corpus, path_prefix, max_sources)

    return [search_docs, read_doc, research]


async def _docs_call(docs: DocsService, ctx: ToolContext, work: Callable[[], T]) -> T:
    """`work` on a worker thread; a wait for a corpus still loading is reported as the tool's progress.
    A DocsError goes up: the run hands its message to the model as the tool's error."""

    async def waiting(_waited: float, message: str) -> None:
        await ctx.progress(message)

    return await call_when_loaded(docs, work, waiting, _threads.get_current())


def _citation(corpus: str, path: str, anchor: str) -> str:
    return f"{corpus}:{path}#{anchor}" if anchor else f"{corpus}:{path}"


def _hit(hit: SearchHit) -> DocHit:
    return DocHit(
        corpus=hit.corpus,
        version=hit.version,
        path=hit.path,
        title=hit.title,
        heading=hit.heading,
        anchor=hit.anchor,
        citation=_citation(hit.corpus, hit.path, hit.anchor),
        snippet=hit.snippet,
    )


def _heading(headings: list[Heading], wanted: str | None) -> Heading | None:
    """The heading read_doc read, found in the page's outline as DocsService finds it. None for a whole page (or
    a heading the outline, cut to fit, leaves out)."""
    index = find_heading(wanted, [(h.anchor, h.text) for h in headings]) if wanted else None
    return headings[index] if index is not None else None


def _section(page: DocPage, heading: Heading | None) -> DocSection:
    anchor = heading.anchor if heading else ""
    return DocSection(
        corpus=page.corpus,
        version=page.version,
        path=page.path,
        title=page.title,
        heading=heading.text if heading else "",
        anchor=anchor,
        citation=_citation(page.corpus, page.path, anchor),
        content=page.content,
        headings=page.headings,
        next_cursor=page.next_cursor,
    )


def search_variants(question: str, queries: Sequence[str]) -> list[str]:
    """What research searches for: the question, the caller's phrasings, each identifier alone, then adjacent
    pairs of the key words (sections that match part of a long question), distinct and at most RESEARCH_SEARCHES."""
    keys = [w for w in query_words(question) if not common(w)]
    pairs = [f"{a} {b}" for a, b in itertools.pairwise(keys)] if len(keys) > 2 else []
    distinct: dict[str, str] = {}
    for variant in (v.strip() for v in (question, *queries, *query_identifiers(question), *pairs)):
        if variant:
            distinct.setdefault(variant.lower(), variant)
    return list(distinct.values())[:RESEARCH_SEARCHES]


async def _research(
    docs: DocsService,
    ctx: ToolContext,
    question: str,
    queries: Sequence[str],
    corpus: str | None,
    path_prefix: str | None,
    max_sources: int,
) -> ResearchNotes:
    searches = search_variants(question, queries)
    steps = len(searches) + max_sources
    fused: dict[tuple[str, str, str], float] = {}
    hits: dict[tuple[str, str, str], SearchHit] = {}
    warnings: list[str] = []
    for done, query in enumerate(searches):
        await ctx.progress(f"searching {query!r}", done / steps)
        found = await _docs_call(docs, ctx, partial(docs.search, query, RESEARCH_HITS, corpus, path_prefix))
        warnings += [n for n in found.notes if n not in warnings]
        if found.suggestion and found.hits:
            warnings.append(f"{query!r} was searched as {found.suggestion!r}: a word of it is in no corpus")
        for rank, hit in enumerate(found.hits):
            key = (hit.corpus, hit.path, hit.anchor)
            hits.setdefault(key, hit)
            fused[key] = fused.get(key, 0.0) + 1 / (FUSION_K + rank)
    best = sorted(fused, key=fused.__getitem__, reverse=True)[:max_sources]  # stable: ties keep the order found
    notes: list[ResearchNote] = []
    for done, key in enumerate(best, len(searches)):
        await ctx.progress(f"reading {_citation(*key)}", done / steps)
        try:
            notes.append(await _note(docs, ctx, hits[key], RESEARCH_TOKENS // len(best)))
        except DocsError as exc:  # a page changed or removed since it was indexed: the others still count
            warnings.append(f"{_citation(*key)} could not be read: {exc}")
    await ctx.progress(f"research done: {_sections(len(notes))}", 1.0)
    return ResearchNotes(
        question=question,
        searched=searches,
        found=bool(notes),
        summary=_summary(notes, searches),
        notes=notes,
        warnings=warnings,
    )


async def _note(docs: DocsService, ctx: ToolContext, hit: SearchHit, max_tokens: int) -> ResearchNote:
    page = await _docs_call(docs, ctx, lambda: docs.read(hit.path, hit.corpus, hit.anchor or None, None, max_tokens))
    return ResearchNote(
        citation=_citation(hit.corpus, hit.path, hit.anchor),
        corpus=hit.corpus,
        path=hit.path,
        title=hit.title,
        heading=hit.heading,
        anchor=hit.anchor,
        text=page.content,
        next_cursor=page.next_cursor,
    )


def _summary(notes: list[ResearchNote], searches: list[str]) -> str:
    if not notes:
        searched = "; ".join(repr(s) for s in searches)
        return (
            f"Nothing in the loaded documentation matches this question (searched: {searched}). "
            "Say that the docs do not cover it rather than guessing."
        )
    return (
        f"Found {_sections(len(notes))}. Answer only from their text and cite each claim with its note's "
        "citation; if they do not answer the question, say so."
    )


def _sections(count: int) -> str:
    return "1 section" if count == 1 else f"{count} sections"
