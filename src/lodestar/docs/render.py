"""Readable text bodies for docs results: what a model or a person reads beside the structured data."""

from __future__ import annotations

import re

from lodestar.docs.models import CorporaResult, CorpusInfo, DocPage, ListResult, SearchResult

QUERY_SHOWN = 120  # characters of the query repeated in the text; the structured result keeps it whole
_BOLD = re.compile(r"\*\*([^\s*](?:[^*]*[^\s*])?)\*\*")  # a highlighted match; a literal **kwargs is left alone


def plural(count: int, noun: str) -> str:
    """ "1 page", "2 pages": every count the text shows goes through here."""
    return f"{count} {noun if count == 1 else noun + 's'}"


def render_search(result: SearchResult, shell: bool = False) -> str:
    """`shell`: for a person at a terminal, where markdown bold is noise and the browse command is `list`."""
    lines = []
    query = repr(result.query if len(result.query) <= QUERY_SHOWN else result.query[:QUERY_SHOWN] + "...")
    if result.suggestion:
        lines.append(f"Searched for: {result.suggestion} (corrected from: {result.query})")
    lines.extend(f"Note: {note}" for note in result.notes)
    if not result.hits:
        where = " in the corpora that are loaded" if result.unavailable else ""
        browse = "lodestar-mcp list" if shell else "list_docs"
        lines.append(f"No results for {query}{where}. Try other words, or {browse} to browse.")
        return "\n".join(lines)
    lines.append(f"{plural(len(result.hits), 'result')} for {query} ({plural(result.total, 'matching page')}):")
    for rank, hit in enumerate(result.hits, 1):
        where = f"{hit.title} > {hit.heading}" if hit.heading and hit.heading != hit.title else hit.title
        lines.append("")
        lines.append(f"{rank}. {where}")
        also = f"; also in {', '.join(hit.also_in)}" if hit.also_in else ""
        lines.append(f"   {hit.corpus}:{hit.path}#{hit.anchor} (score {hit.score:.2f}{also})")
        lines.append("   " + (_BOLD.sub(r"\1", hit.snippet) if shell else hit.snippet))
    return "\n".join(lines)


def render_page(page: DocPage) -> str:
    if page.next_cursor is None:
        return page.content
    return f'{page.content}\n\n[continues: call read_doc with cursor="{page.next_cursor}"]'


def render_list(result: ListResult) -> str:
    if not result.entries:
        return "No pages."
    return "\n".join(f"{e.kind:3}  {e.corpus}:{e.path}  {e.title}" for e in result.entries)


def render_corpora(result: CorporaResult) -> str:
    if not result.corpora:
        return "No corpora loaded."
    return "\n".join(_corpus_line(c) for c in result.corpora)


def _corpus_line(c: CorpusInfo) -> str:
    if c.status == "failed":
        return f"{c.name}: FAILED: {c.error} ({c.source})"
    if c.status == "loading":
        return f"{c.name}: loading, {c.stage} ({c.source})"
    return f"{c.name} {c.version}: {plural(c.documents, 'page')}, {plural(c.sections, 'section')} ({c.source})"
