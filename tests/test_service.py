"""DocsService over an example corpus plus the bundled one: search, read_doc, list_docs, list_corpora, refresh."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PAGES, write_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from lodestar import __version__
from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.models import SearchResult
from lodestar.docs.search import SNIPPET_CHARS
from lodestar.docs.sections import parse_page
from lodestar.docs.service import DocsService, bundled_root

EXAMPLE = "example-docs"


def _long_page() -> str:
    parts = ["# Gardening handbook\n\nA handbook about growing vegetables at home.\n"]
    for name in ("Soil", "Compost", "Watering", "Harvest"):
        parts.append(f"\n## {name}\n\n")
        parts.append("".join(f"Line {j} about {name.lower()} care, with tomatoes and peppers.\n" for j in range(25)))
        parts.append(f"\n### {name} tips\n\n")
        parts.append(("Tip: " + "mulch ünïcode 🌱 " * 40).strip() + "\n")  # one long line: cuts fall inside it
    return "".join(parts)


LONG = _long_page()
LINES = "# Changelog\n\n" + "".join(f"- Release {i}: fixed item {i * 7} in the parser.\n" for i in range(120))
EXTRA = {"guides/long.md": LONG, "guides/lines.md": LINES}
ALL_PAGES = {**PAGES, **EXTRA}


def section_text(text: str, heading_line: str, next_line: str | None) -> str:
    start = text.index("\n" + heading_line + "\n") + 1
    end = text.index("\n" + next_line + "\n") + 1 if next_line else len(text)
    return text[start:end]


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("svc") / EXAMPLE, ALL_PAGES)


@pytest.fixture(scope="module")
def service(corpus_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsService]:
    svc = DocsService([str(corpus_root)], tmp_path_factory.mktemp("cache"))
    svc.load()
    yield svc
    svc.close()


@pytest.fixture
def own_service(corpus_dir: Path, cache_dir: Path) -> Iterator[DocsService]:
    """A service of its own, for tests that change the corpus files."""
    svc = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    svc.load()
    yield svc
    svc.close()


def read_all_parts(service: DocsService, path: str, max_tokens: int, heading: str | None = None) -> list[str]:
    parts: list[str] = []
    cursor = None
    while True:
        page = service.read(path, corpus=EXAMPLE, heading=heading, cursor=cursor, max_tokens=max_tokens)
        assert len(page.content) <= max_tokens * 4
        assert page.content
        parts.append(page.content)
        cursor = page.next_cursor
        if cursor is None:
            return parts
        assert len(parts) < 500, "paging does not advance"


# Loading


def test_both_corpora_load(service: DocsService) -> None:
    assert service.failures == {}
    assert list(service.corpora) == ["lodestar", EXAMPLE]
    assert service.load_notes == ["lodestar: built", f"{EXAMPLE}: built"]


# Search: ranking


@pytest.mark.parametrize(
    ("query", "corpus", "path", "anchor"),
    [
        ("how does an agent remember previous conversations", None, "docs/agents/memory.md", "agent-memory"),
        ("redact phone numbers", None, "reference/config.md", "piidetector"),
        ("stream until idle", EXAMPLE, "docs/overview.md", "background-tasks"),
        ("streamUntilIdle", EXAMPLE, "docs/overview.md", "background-tasks"),
        ("How do I run a tool in the background?", None, "docs/overview.md", "background-tasks"),
        ("semantic recall of older messages", None, "docs/agents/memory.md", "semantic-recall"),
        ("group threads by user", EXAMPLE, "docs/agents/memory.md", "threads"),
        ("PIIDetector", None, "reference/config.md", "piidetector"),
        ("limit how many model calls a run makes", EXAMPLE, "reference/config.md", "maxsteps"),
        ("how to install the package", EXAMPLE, "docs/overview.md", "installation"),
        ("quickstart wizard", None, "guides/quickstart.mdx", "quickstart"),
    ],
)
def test_questions_find_the_right_section_first(
    service: DocsService, query: str, corpus: str | None, path: str, anchor: str
) -> None:
    hits = service.search(query, corpus=corpus).hits
    assert hits, query
    assert (hits[0].corpus, hits[0].path, hits[0].anchor) == (EXAMPLE, path, anchor)


def test_bundled_corpus_is_searchable(service: DocsService) -> None:
    hits = service.search("search_docs", corpus="lodestar").hits
    assert hits[0].path == "reference/tools/search_docs.md"
    assert hits[0].version == __version__


BACKGROUND_GUIDE = "docs/agents/background-tasks.md"


@pytest.mark.parametrize(
    ("query", "anchor"),
    [
        ("How do I run a tool in the background?", "run-a-tool-in-the-background"),
        ("stream until idle", "stream_until_idle-keep-the-stream-open-until-idle"),
        ("background task limits", "limits-and-backpressure"),
        ("retry a failed background task", "timeouts-retries-and-cancelling"),
    ],
)
def test_background_task_questions_find_the_guide(service: DocsService, query: str, anchor: str) -> None:
    hits = service.search(query, corpus="lodestar").hits
    assert (hits[0].path, hits[0].anchor) == (BACKGROUND_GUIDE, anchor), [(h.path, h.anchor) for h in hits[:3]]


def test_running_a_tool_in_the_background_finds_the_guide_by_a_clear_margin(service: DocsService) -> None:
    first, second = service.search("How do I run a tool in the background?", corpus="lodestar").hits[:2]
    assert first.path == BACKGROUND_GUIDE
    assert first.score >= 1.5 * second.score, (second.path, first.score / second.score)  # measured: 1.71


@pytest.mark.parametrize("query", ["agent", "tool background tasks", "how do I read a page", "the example"])
def test_at_most_one_hit_per_page(service: DocsService, query: str) -> None:
    result = service.search(query, limit=50)
    assert result.hits
    keys = [(h.corpus, h.path) for h in result.hits]
    assert len(keys) == len(set(keys))
    assert result.total == len(keys)  # total counts matching pages, and all of them fit in 50


def test_hits_of_one_corpus_are_sorted_by_score(service: DocsService) -> None:
    hits = service.search("agent tool memory", limit=20, corpus="lodestar").hits
    assert len(hits) > 3
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(s > 0 for s in scores)


def test_hit_fields(service: DocsService) -> None:
    result = service.search("redact phone numbers")
    assert result.query == "redact phone numbers"
    hit = result.hits[0]
    versions = {c.name: c.version for c in service.list_corpora().corpora}
    assert hit.corpus == EXAMPLE
    assert hit.version == versions[EXAMPLE]
    assert re.fullmatch(r"[0-9a-f]{12}", hit.version)
    assert hit.path == "reference/config.md"
    assert hit.title == "Configuration reference"
    assert hit.heading == "PIIDetector"
    assert hit.anchor == "piidetector"
    assert isinstance(hit.score, float) and hit.score > 0
    assert "**redacts**" in hit.snippet
    assert "**phone**" in hit.snippet
    assert "**numbers**" in hit.snippet
    assert "**The**" not in hit.snippet
    assert hit.snippet.replace("**", "") == "The PIIDetector processor redacts emails and phone numbers."


def test_identifier_is_bold_in_the_snippet(service: DocsService) -> None:
    hit = service.search("PIIDetector", corpus=EXAMPLE).hits[0]
    assert "**PIIDetector**" in hit.snippet


def test_snippet_of_a_long_section_is_a_bounded_window(service: DocsService) -> None:
    hit = service.search("compost tomatoes peppers", corpus=EXAMPLE).hits[0]
    assert hit.path == "guides/long.md"
    assert hit.anchor == "compost"
    plain = hit.snippet.replace("**", "")
    assert len(plain) <= SNIPPET_CHARS + 6
    assert plain.endswith("...")
    assert "**tomatoes**" in hit.snippet


def test_hit_anchor_reads_the_hit_section(service: DocsService) -> None:
    hit = service.search("semantic recall", corpus=EXAMPLE).hits[0]
    page = service.read(hit.path, corpus=hit.corpus, heading=hit.anchor)
    assert page.content == "## Semantic recall\n\nSemantic recall finds older messages similar to the new message.\n"


# Search: filters and paging


def test_corpus_filter(service: DocsService) -> None:
    for name in ("lodestar", EXAMPLE):
        result = service.search("agent", corpus=name, limit=50)
        assert result.hits
        assert {h.corpus for h in result.hits} == {name}
    both = service.search("agent", limit=50)
    assert {h.corpus for h in both.hits} == {"lodestar", EXAMPLE}


def test_path_prefix_filter(service: DocsService) -> None:
    result = service.search("agent memory configuration", path_prefix="reference/", limit=50)
    assert result.hits
    assert all(h.path.startswith("reference/") for h in result.hits)
    assert result.total == len(result.hits)
    assert service.search("PIIDetector", path_prefix="docs/", corpus=EXAMPLE).hits == []
    only = service.search("PIIDetector", path_prefix="reference/", corpus=EXAMPLE)
    assert [h.path for h in only.hits] == ["reference/config.md"]
    assert only.total == 1


def test_path_prefix_that_escapes_is_refused(service: DocsService) -> None:
    with pytest.raises(DocsError, match="refused path prefix"):
        service.search("agent", path_prefix="../")
    with pytest.raises(DocsError, match="refused path prefix"):
        service.search("agent", path_prefix="/etc")


def test_offset_pages_through_the_ranked_hits(service: DocsService) -> None:
    query = "agent tool memory search"
    full = service.search(query, limit=50)
    assert 6 < len(full.hits) < 50
    paged = []
    for offset in range(0, len(full.hits) + 3, 3):
        part = service.search(query, limit=3, offset=offset)
        assert part.total == full.total
        paged.extend((h.corpus, h.path, h.anchor) for h in part.hits)
    assert paged == [(h.corpus, h.path, h.anchor) for h in full.hits]
    beyond = service.search(query, limit=3, offset=full.total + 10)
    assert beyond.hits == []
    assert beyond.total == full.total


def test_typo_query_gives_a_suggestion(service: DocsService) -> None:
    result = service.search("semantc recal")
    assert result.suggestion is not None
    assert "semantic" in result.suggestion
    assert result.hits[0].path == "docs/agents/memory.md"
    assert result.hits[0].anchor == "semantic-recall"


def test_correct_query_has_no_suggestion(service: DocsService) -> None:
    assert service.search("semantic recall", corpus=EXAMPLE).suggestion is None
    assert service.search("search_docs", corpus="lodestar").suggestion is None


@pytest.mark.parametrize("query", ["semantic recall", "redact phone numbers"])
def test_no_suggestion_for_words_another_corpus_knows(service: DocsService, query: str) -> None:
    """Regression: at fd08d90 each corpus corrected the words it lacked and the corrections were merged,
    so 'semantic recall' got the suggestion 'semantic call' although the example corpus has both words."""
    assert service.search(query).suggestion is None


def test_suggestion_uses_the_closest_word_of_any_corpus(service: DocsService) -> None:
    assert service.search("semantc recal").suggestion == "semantic recal"  # 'recal' is the stem of 'recall'
    assert service.search("seerch the indx", corpus="lodestar").suggestion == "search the index"


def test_query_without_hits_is_empty_not_an_error(service: DocsService) -> None:
    result = service.search("qqxqzzv")
    assert result.hits == []
    assert result.total == 0
    assert result.suggestion is None
    assert service.search("").hits == []  # a query of only common words lists entry pages (test_ranking)


NASTY = [
    '"unterminated',
    "agent AND OR NOT",
    "tool*",
    "*",
    "path:docs",
    "title:^2 boost^",
    "(((",
    "a AND (b OR",
    "~fuzzy~2",
    "[1 TO 5]",
    "ünïcode 文档 🌱",
    "\x00\x01",
    "   ",
    "-not +must",
    "\\",
    "'single'",
]


@settings(max_examples=200, deadline=None)
@given(query=st.one_of(st.text(), st.sampled_from(NASTY), st.lists(st.sampled_from(NASTY), max_size=4).map(" ".join)))
def test_any_query_string_is_valid(service: DocsService, query: str) -> None:
    result = service.search(query, limit=5)
    assert isinstance(result, SearchResult)
    assert result.query == query
    assert len(result.hits) <= 5
    assert result.total >= len(result.hits)
    assert len({(h.corpus, h.path) for h in result.hits}) == len(result.hits)


# read_doc


def test_read_whole_page(service: DocsService) -> None:
    page = service.read("docs/overview.md", corpus=EXAMPLE)
    assert page.content == PAGES["docs/overview.md"]
    assert page.next_cursor is None
    assert (page.corpus, page.path, page.title) == (EXAMPLE, "docs/overview.md", "Overview")
    assert page.version == {c.name: c.version for c in service.list_corpora().corpora}[EXAMPLE]
    assert [(h.level, h.text, h.anchor) for h in page.headings] == [
        (1, "Overview", "overview"),
        (2, "Installation", "installation"),
        (2, "Background tasks", "background-tasks"),
    ]


def test_read_picks_the_named_corpus(service: DocsService) -> None:
    mine = service.read("docs/overview.md", corpus=EXAMPLE)
    bundled = service.read("docs/overview.md", corpus="lodestar")
    assert bundled.corpus == "lodestar"
    assert bundled.content == (bundled_root() / "docs/overview.md").read_text("utf-8")
    assert bundled.content != mine.content


@pytest.mark.parametrize("heading", ["Background tasks", "background TASKS", "background-tasks", "## Background tasks"])
def test_read_one_section_by_text_or_anchor(service: DocsService, heading: str) -> None:
    page = service.read("docs/overview.md", corpus=EXAMPLE, heading=heading)
    assert page.content == (
        "## Background tasks\n\n"
        "Long tool calls run as background tasks. The `streamUntilIdle` method waits until every task finishes.\n"
    )
    assert page.next_cursor is None
    assert len(page.headings) == 3  # the outline of the whole page


def test_section_includes_its_subsections(service: DocsService) -> None:
    compost = service.read("guides/long.md", corpus=EXAMPLE, heading="Compost", max_tokens=100_000)
    assert compost.content == section_text(LONG, "## Compost", "## Watering")
    assert "### Compost tips" in compost.content
    tips = service.read("guides/long.md", corpus=EXAMPLE, heading="compost-tips", max_tokens=100_000)
    assert tips.content == section_text(LONG, "### Compost tips", "## Watering")
    last = service.read("guides/long.md", corpus=EXAMPLE, heading="Harvest", max_tokens=100_000)
    assert last.content == section_text(LONG, "## Harvest", None)
    whole = service.read("guides/long.md", corpus=EXAMPLE, heading="gardening-handbook", max_tokens=100_000)
    assert whole.content == LONG


def test_unknown_heading_lists_the_anchors(service: DocsService) -> None:
    with pytest.raises(DocsError, match="no heading 'Deployment'") as info:
        service.read("docs/overview.md", corpus=EXAMPLE, heading="Deployment")
    assert "overview, installation, background-tasks" in str(info.value)


@pytest.mark.parametrize("max_tokens", [100, 137, 500, 1000, 6000])
def test_paging_concatenates_to_the_file(service: DocsService, corpus_root: Path, max_tokens: int) -> None:
    parts = read_all_parts(service, "guides/long.md", max_tokens)
    on_disk = (corpus_root / "guides/long.md").read_text("utf-8")
    assert "".join(parts) == on_disk
    if max_tokens * 4 < len(on_disk):
        assert len(parts) >= len(on_disk) // (max_tokens * 4)
    else:
        assert len(parts) == 1


@pytest.mark.parametrize("max_tokens", [100, 250])
def test_paging_one_section(service: DocsService, max_tokens: int) -> None:
    parts = read_all_parts(service, "guides/long.md", max_tokens, heading="Watering")
    assert len(parts) > 1
    assert "".join(parts) == section_text(LONG, "## Watering", "## Harvest")


def test_parts_end_at_line_ends_when_lines_are_short(service: DocsService) -> None:
    parts = read_all_parts(service, "guides/lines.md", 100)
    assert len(parts) > 5
    assert "".join(parts) == LINES
    assert all(part.endswith("\n") for part in parts)


def test_budget_may_change_between_parts(service: DocsService) -> None:
    first = service.read("guides/long.md", corpus=EXAMPLE, max_tokens=100)
    assert first.next_cursor
    rest = service.read("guides/long.md", corpus=EXAMPLE, cursor=first.next_cursor, max_tokens=100_000)
    assert rest.next_cursor is None
    assert first.content + rest.content == LONG


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _digest(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:12]


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        "Zm9v",  # base64 of "foo"
        _token({"corpus": EXAMPLE}),
        _token([EXAMPLE, "guides/long.md", "", 10]),
        _token([EXAMPLE, "guides/long.md", "", -5, _digest(LONG)]),
        _token([EXAMPLE, "guides/long.md", "", "ten", _digest(LONG)]),
        _token([EXAMPLE, "guides/long.md", "", 10**9, _digest(LONG)]),
        _token([EXAMPLE, "guides/long.md", "no-such-heading", 10, _digest(LONG)]),
        _token([EXAMPLE, "../outside.md", "", 10, _digest(LONG)]),
        _token(["nope", "guides/long.md", "", 10, _digest(LONG)]),
        _token([EXAMPLE, "guides/long.md", "", 10, "0" * 12]),
    ],
)
def test_malformed_cursor_is_a_docs_error(service: DocsService, cursor: str) -> None:
    with pytest.raises(DocsError):
        service.read("guides/long.md", corpus=EXAMPLE, cursor=cursor)


def test_a_well_formed_forged_cursor_reads_from_its_offset(service: DocsService) -> None:
    page = service.read(
        "guides/long.md", corpus=EXAMPLE, cursor=_token([EXAMPLE, "guides/long.md", "", 10, _digest(LONG)])
    )
    assert LONG.startswith(page.content, 10)


def test_cursor_with_an_infinite_offset_is_a_docs_error(service: DocsService) -> None:
    """Regression (fixed in b5bfea5): int(float('inf')) raised OverflowError, not DocsError."""
    forged = base64.urlsafe_b64encode(f'["{EXAMPLE}","guides/long.md","",1e400,"x"]'.encode()).decode()
    with pytest.raises(DocsError):
        service.read("guides/long.md", corpus=EXAMPLE, cursor=forged)


def test_stale_cursor_after_the_file_changed(own_service: DocsService, corpus_dir: Path) -> None:
    path = corpus_dir / "docs/overview.md"
    path.write_text(PAGES["docs/overview.md"] * 10, "utf-8")
    first = own_service.read("docs/overview.md", max_tokens=100)
    assert first.next_cursor
    path.write_text(PAGES["docs/overview.md"] * 9, "utf-8")
    with pytest.raises(DocsError, match="changed since this cursor was issued"):
        own_service.read("docs/overview.md", cursor=first.next_cursor, max_tokens=100)


@pytest.mark.parametrize(
    ("given_path", "actual"),
    [
        ("docs/overview", "docs/overview.md"),
        ("guides/quickstart", "guides/quickstart.mdx"),
        ("./docs/overview.md", "docs/overview.md"),
        ("docs\\agents\\memory.md", "docs/agents/memory.md"),
        (" docs/agents/memory ", "docs/agents/memory.md"),
    ],
)
def test_path_spellings(service: DocsService, given_path: str, actual: str) -> None:
    page = service.read(given_path, corpus=EXAMPLE)
    assert page.path == actual
    assert page.content == ALL_PAGES[actual]


def test_unknown_path_names_the_closest_paths(service: DocsService) -> None:
    with pytest.raises(DocsError, match=r"no page 'docs/agents/memroy\.md'") as info:
        service.read("docs/agents/memroy.md", corpus=EXAMPLE)
    assert "docs/agents/memory.md" in str(info.value)
    with pytest.raises(DocsError, match=r"Closest: .*reference/config\.md"):
        service.read("reference/configs", corpus=EXAMPLE)


@pytest.mark.parametrize(
    "path",
    [
        "../x",
        "../example-docs/docs/overview.md",
        "/etc/passwd",
        "C:\\x",
        "c:/x",
        "docs/../../x",
        "docs/..",
        "\\\\server\\share",
    ],
)
@pytest.mark.parametrize("corpus", [EXAMPLE, None])
def test_traversal_is_refused(service: DocsService, path: str, corpus: str | None) -> None:
    with pytest.raises(DocsError, match="refused path"):
        service.read(path, corpus=corpus)


def test_docs_uri_is_accepted(service: DocsService) -> None:
    page = service.read(f"docs://{EXAMPLE}/docs/agents/memory.md")
    assert (page.corpus, page.path) == (EXAMPLE, "docs/agents/memory.md")
    assert page.content == PAGES["docs/agents/memory.md"]
    assert service.read("docs://lodestar/docs/overview.md").corpus == "lodestar"
    assert service.read_all(EXAMPLE, "reference/config.md") == PAGES["reference/config.md"]
    with pytest.raises(DocsError, match="refused path"):
        service.read(f"docs://{EXAMPLE}/../secrets.md")
    with pytest.raises(DocsError, match="unknown corpus 'nope'"):
        service.read("docs://nope/docs/overview.md")
    with pytest.raises(CorpusError, match="invalid corpus name"):
        service.read("docs://bad name/docs/overview.md")


def test_empty_path_is_an_error(service: DocsService) -> None:
    with pytest.raises(DocsError, match="path is empty"):
        service.read("  ", corpus=EXAMPLE)


# list_docs and list_corpora


def test_list_top_level(service: DocsService) -> None:
    entries = service.list(corpus=EXAMPLE).entries
    assert [(e.path, e.kind, e.title) for e in entries] == [
        ("docs/", "dir", "docs"),
        ("guides/", "dir", "guides"),
        ("reference/", "dir", "reference"),
    ]
    assert {e.corpus for e in entries} == {EXAMPLE}


def test_list_with_depth(service: DocsService) -> None:
    entries = service.list(corpus=EXAMPLE, depth=3).entries
    assert [(e.path, e.kind) for e in entries] == [
        ("docs/", "dir"),
        ("docs/agents/", "dir"),
        ("docs/agents/memory.md", "doc"),
        ("docs/overview.md", "doc"),
        ("guides/", "dir"),
        ("guides/lines.md", "doc"),
        ("guides/long.md", "doc"),
        ("guides/quickstart.mdx", "doc"),
        ("reference/", "dir"),
        ("reference/config.md", "doc"),
    ]
    for entry in entries:
        assert entry.path.endswith("/") == (entry.kind == "dir")
    titles = {e.path: e.title for e in entries}
    assert titles["docs/agents/memory.md"] == "Agent memory"
    assert titles["docs/agents/"] == "agents"


@pytest.mark.parametrize("prefix", ["docs", "docs/", "./docs/"])
def test_list_under_a_prefix(service: DocsService, prefix: str) -> None:
    entries = service.list(prefix, corpus=EXAMPLE).entries
    assert [(e.path, e.kind) for e in entries] == [("docs/agents/", "dir"), ("docs/overview.md", "doc")]
    deeper = service.list(prefix, corpus=EXAMPLE, depth=2).entries
    assert [e.path for e in deeper] == ["docs/agents/", "docs/agents/memory.md", "docs/overview.md"]


def test_list_a_page_path(service: DocsService) -> None:
    entries = service.list("reference/config.md", corpus=EXAMPLE).entries
    assert [(e.path, e.kind, e.title) for e in entries] == [("reference/config.md", "doc", "Configuration reference")]


def test_list_all_corpora(service: DocsService) -> None:
    entries = service.list().entries
    corpora = [e.corpus for e in entries]
    assert corpora == sorted(corpora, key=["lodestar", EXAMPLE].index)
    assert (EXAMPLE, "guides/") in {(e.corpus, e.path) for e in entries}
    assert ("lodestar", "reference/") in {(e.corpus, e.path) for e in entries}


def test_unknown_prefix_is_an_error_naming_close_paths(service: DocsService) -> None:
    with pytest.raises(DocsError, match="nothing under 'docs/agent'") as info:
        service.list("docs/agent", corpus=EXAMPLE)
    assert "docs/agents/" in str(info.value)
    with pytest.raises(DocsError, match="refused path prefix"):
        service.list("../", corpus=EXAMPLE)


def test_list_corpora_fields(service: DocsService, corpus_root: Path) -> None:
    corpora = {c.name: c for c in service.list_corpora().corpora}
    assert list(corpora) == ["lodestar", EXAMPLE]
    mine = corpora[EXAMPLE]
    assert mine.source == str(corpus_root)
    assert mine.documents == len(ALL_PAGES)
    assert mine.sections == sum(len(parse_page(t, "x").sections) for t in ALL_PAGES.values())
    assert re.fullmatch(r"[0-9a-f]{12}", mine.version)
    bundled = corpora["lodestar"]
    assert (bundled.source, bundled.version) == ("bundled", __version__)
    on_disk = [p for p in bundled_root().rglob("*") if p.suffix in (".md", ".mdx")]
    assert bundled.documents == len(on_disk)
    assert bundled.sections >= bundled.documents


# Errors


def test_unknown_corpus_lists_the_loaded_names(service: DocsService) -> None:
    for call in (
        lambda: service.search("agent", corpus="nope"),
        lambda: service.read("docs/overview.md", corpus="nope"),
        lambda: service.list(corpus="nope"),
    ):
        with pytest.raises(DocsError, match=f"unknown corpus 'nope'; loaded corpora: lodestar, {EXAMPLE}"):
            call()


@pytest.mark.parametrize(
    ("call", "name"),
    [
        (lambda s: s.search("agent", limit=0), "limit"),
        (lambda s: s.search("agent", limit=51), "limit"),
        (lambda s: s.search("agent", offset=-1), "offset"),
        (lambda s: s.search("agent", offset=1001), "offset"),
        (lambda s: s.list(depth=0), "depth"),
        (lambda s: s.list(depth=11), "depth"),
        (lambda s: s.read("docs/overview.md", corpus=EXAMPLE, max_tokens=99), "max_tokens"),
        (lambda s: s.read("docs/overview.md", corpus=EXAMPLE, max_tokens=100_001), "max_tokens"),
    ],
)
def test_out_of_range_arguments(service: DocsService, call, name: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(DocsError, match=f"{name} must be between"):
        call(service)


def test_range_bounds_are_inclusive(service: DocsService) -> None:
    assert len(service.search("agent", limit=1).hits) == 1
    assert service.search("agent", limit=50, offset=1000).hits == []
    assert service.list(depth=10).entries
    assert service.read("docs/overview.md", corpus=EXAMPLE, max_tokens=100).content
    assert service.read("docs/overview.md", corpus=EXAMPLE, max_tokens=100_000).next_cursor is None


def test_a_named_corpus_that_failed_to_resolve_says_why(tmp_path: Path, cache_dir: Path) -> None:
    """Regression (fixed in b5bfea5): the failure was recorded under the whole spec, not the corpus name."""
    service = DocsService([f"mydocs={tmp_path / 'missing'}"], cache_dir, bundled=False)
    service.load()
    with pytest.raises(DocsError, match="does not exist"):
        service.search("anything", corpus="mydocs")


# refresh


def test_refresh_picks_up_a_changed_file(own_service: DocsService, corpus_dir: Path) -> None:
    before = own_service.list_corpora().corpora[0].version
    assert own_service.search("wombat").hits == []
    (corpus_dir / "docs/agents/memory.md").write_text("# Agent memory\n\nThe wombat remembers.\n", "utf-8")

    note = own_service.refresh(EXAMPLE)

    assert note == f"{EXAMPLE}: updated 1"
    hits = own_service.search("wombat").hits
    assert [(h.path, h.anchor) for h in hits] == [("docs/agents/memory.md", "agent-memory")]
    assert own_service.search("semantic recall").hits == []
    after = own_service.list_corpora().corpora[0]
    assert after.version != before
    assert after.sections == sum(len(parse_page(t, "x").sections) for t in PAGES.values()) - 2  # 3 became 1
    assert own_service.refresh(EXAMPLE) == f"{EXAMPLE}: cached"


def test_refresh_unknown_corpus(own_service: DocsService) -> None:
    with pytest.raises(DocsError, match="unknown corpus"):
        own_service.refresh("nope")


def test_failed_refresh_keeps_the_previous_index(own_service: DocsService, corpus_dir: Path) -> None:
    shutil.rmtree(corpus_dir)
    with pytest.raises(DocsError, match=f"refreshing {EXAMPLE} failed"):
        own_service.refresh(EXAMPLE)
    assert own_service.search("semantic recall").hits[0].path == "docs/agents/memory.md"
    assert own_service.failures == {}
