"""The public data shapes of the docs service; the MCP tools return them as structured content."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class Heading(BaseModel):
    level: int = Field(description="1 to 3")
    text: str
    anchor: str = Field(description="GitHub-style anchor, usable as read_doc's `heading`")


class SearchHit(BaseModel):
    corpus: str
    version: str
    path: str = Field(description="Path relative to the corpus root, e.g. docs/agents/overview.md")
    title: str
    heading: str = Field(description="Heading of the matching section")
    anchor: str
    score: float
    snippet: str = Field(description="Markdown excerpt with the matched terms in **bold**")
    also_in: list[str] = Field(
        default_factory=list, description="Other corpora holding a near-identical page, folded into this hit"
    )


class SearchResult(BaseModel):
    query: str
    total: int = Field(description="Number of matching pages")
    hits: list[SearchHit]
    suggestion: str | None = Field(description="A spelling-corrected query, when a query word was unknown")
    unavailable: list[str] = Field(
        default_factory=list, description="Corpora this search should have covered but could not: list_corpora says why"
    )
    notes: list[str] = Field(
        default_factory=list, description="What limited this answer: a trimmed query, an unavailable corpus, an offset"
    )


class DocPage(BaseModel):
    corpus: str
    version: str
    path: str
    title: str
    content: str = Field(description="Raw markdown of the page (or of one section), at most max_tokens")
    headings: list[Heading] = Field(description="The page's outline (h1-h3), cut to fit max_tokens on long ones")
    headings_total: int | None = Field(
        None,
        description="Headings on the page when `headings` was cut to fit max_tokens (it then holds those from the"
        " part read onwards); null when `headings` is complete",
    )
    next_cursor: str | None = Field(description="Pass as `cursor` to read the next part; null at the end")


class ListEntry(BaseModel):
    corpus: str
    path: str
    title: str
    kind: Literal["dir", "doc"]


class ListResult(BaseModel):
    entries: list[ListEntry]


class CorpusInfo(BaseModel):
    name: str
    version: str
    source: str
    documents: int
    sections: int
    status: Literal["loading", "ready", "failed"] = "ready"
    stage: Literal["opening", "fetching", "unpacking", "indexing"] | None = Field(
        None, description="What a loading corpus is doing; only `opening` is quick enough for searches to wait on"
    )
    error: str | None = Field(None, description="Why a failed corpus could not be loaded, and what to do")


class CorporaResult(BaseModel):
    corpora: list[CorpusInfo]


class HealthReport(BaseModel):
    """What /health answers: `loading` until every corpus was tried, `degraded` when one failed."""

    status: Literal["loading", "ok", "degraded"]
    corpora: int = Field(description="Corpora loaded and searchable")
    loading: list[str] | None = Field(None, description="Names of the corpora still loading")
    reason: str | None = Field(None, description="Why the server is degraded: each failed corpus and its error")
    failed: list[str] | None = Field(None, description="Names of the corpora that failed to load")
