"""Huge and hostile pages: linear parsing, the parsed-page cache, bounded snippets and answers, any cursor."""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_corpus
from hypothesis import given, settings
from hypothesis import strategies as st

from lodestar.docs import pages
from lodestar.docs.errors import DocsError
from lodestar.docs.limits import DocsLimits
from lodestar.docs.models import DocPage
from lodestar.docs.pages import BIG_PAGE_BYTES, PageCache, ParsedPage
from lodestar.docs.paging import CHARS_PER_TOKEN, Cursor
from lodestar.docs.search import SNIPPET_SCAN_CHARS, snippet
from lodestar.docs.sections import parse_page
from lodestar.docs.service import DocsService

NAME = "huge"
KB = 1024


def headings_page(count: int) -> str:
    return "# Many headings\n\n" + "".join(f"## Heading {i}\n\nText of part {i}.\n\n" for i in range(count))


def prose_page(size: int) -> str:
    part = "## Part {i}\n\nWords about gardens, soil and compost in part {i}.\n\n" + "Filler line of prose.\n" * 40
    parts, total, i = ["# Big page\n\n"], 0, 0
    while total < size:
        parts.append(part.format(i=i))
        total += len(parts[-1])
        i += 1
    return "".join(parts)


PAGES = {
    "many.md": headings_page(20_000),
    "big.md": prose_page(256 * KB),
    "one-section.md": "# One long section\n\n" + "Filler prose line.\n" * 20_000 + "A quokka hides here.\n" + "End.\n",
    "small.md": "# Small\n\nA few words.\n\n## Only part\n\nMore words.\n",
}


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("pages") / NAME, PAGES)


@pytest.fixture(scope="module")
def service(root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsService]:
    svc = DocsService([str(root)], tmp_path_factory.mktemp("cache"), bundled=False)
    svc.load()
    assert svc.failures == {}
    yield svc
    svc.close()


def own_service(root: Path, cache: Path, **limits: int) -> DocsService:
    svc = DocsService([str(root)], cache, bundled=False, limits=DocsLimits(**limits))
    svc.load()
    return svc


def answer_chars(page: DocPage) -> int:
    """Characters of content plus the headings list as JSON: what max_tokens bounds."""
    return len(page.content) + sum(len(h.model_dump_json()) + 1 for h in page.headings)


# Parsing stays linear on hostile input (a bound, not a benchmark: the point is "does not blow up")

HOSTILE = {
    "brackets": "[" * 64 * KB,
    "brackets in a paragraph": "# T\n\nText " + "[" * 64 * KB,
    "backticks in a paragraph": "Text " + "`" * 64 * KB,
    "backtick runs of every length": "Text " + " ".join("`" * n for n in range(1, 360)),
    "alternating backticks": "Text " + "`a" * 32 * KB,
    "unclosed link targets": "Text " + "[a](" * 16 * KB,
    "unclosed images": "Text " + "![" * 32 * KB,
    "tag openers": "Text " + "<a " * 21 * KB,
    "front matter title of spaces": "---\ntitle: x" + " " * 64 * KB + "y\n---\n\n# H\n",
    "front matter lines of spaces": "---\ntitle:" + " \n" * 32 * KB + "x\n---\n",
    "front matter never closed": "---\n" + "title: a\n" * 8 * KB,
    "nested quotes": ">" * 64 * KB,
    "stars": "Text " + "*" * 64 * KB,
    "pipes": "|" * 64 * KB,
    "lt": "<" * 64 * KB,
    "mdx import of spaces": "import " + " " * 64 * KB + "x",
    "table of 30k rows": "| a | b |\n|---|---|\n" + "| x | y |\n" * 30_000,  # markdown-it: ~40 µs a row
}


@pytest.mark.parametrize("text", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_markdown_parses_in_linear_time(text: str) -> None:
    started = time.perf_counter()
    page = parse_page(text, "f")
    assert time.perf_counter() - started < 5
    assert "".join(text[s.start : s.end] for s in page.sections) == text


# The page cache


def test_paging_a_big_page_parses_it_once(service: DocsService) -> None:
    first = service.read("big.md", corpus=NAME, max_tokens=1000)
    kept = service._page("big.md", NAME).parsed
    parts = [first.content]
    cursor = first.next_cursor
    for _ in range(20):
        assert cursor
        page = service.read("big.md", cursor=cursor, max_tokens=1000)
        parts.append(page.content)
        cursor = page.next_cursor
    assert service._page("big.md", NAME).parsed is kept
    assert PAGES["big.md"].startswith("".join(parts))


def test_a_changed_file_is_parsed_again_even_at_the_same_size_and_mtime(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / NAME, {"page.md": "# Alpha\n\nfirst version\n"})
    svc = own_service(root, tmp_path / "cache")
    assert "first version" in svc.read("page.md").content
    path = root / "page.md"
    mtime = path.stat().st_mtime_ns
    replacement = root / "new.tmp"
    replacement.write_text("# Omega\n\nother version\n", "utf-8")
    os.utime(replacement, ns=(mtime, mtime))
    os.replace(replacement, path)  # same size and mtime, as npm tarballs give; another inode
    page = svc.read("page.md")
    assert "other version" in page.content
    assert [h.text for h in page.headings] == ["Omega"]


def test_cache_evicts_least_recently_read_pages_to_stay_under_its_bound(tmp_path: Path) -> None:
    pages = {f"p{i}.md": f"# Page {i}\n\n" + "words " * 20_000 for i in range(4)}
    root = write_corpus(tmp_path / NAME, pages)
    bound = 300 * KB  # each page holds about 120 KB
    svc = own_service(root, tmp_path / "cache", page_cache_bytes=bound)
    for name in ("p0.md", "p1.md", "p0.md", "p2.md", "p3.md"):
        svc.read(name)
        assert svc.pages.held <= bound
    kept = [path.name for path in svc.pages.entries]
    assert kept == ["p2.md", "p3.md"]
    assert svc.pages.held == sum(page.size for _, page in svc.pages.entries.values())


def test_a_page_bigger_than_the_cache_is_read_but_not_kept(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / NAME, {"page.md": "# Big\n\n" + "words " * 10_000})
    svc = own_service(root, tmp_path / "cache", page_cache_bytes=KB)
    assert svc.read("page.md", max_tokens=100_000).content.endswith("words ")
    assert not svc.pages.entries
    assert svc.pages.held == 0


def test_concurrent_reads_of_one_page_share_one_parse() -> None:
    cache = PageCache(KB * KB)
    release = threading.Event()
    calls: list[int] = []

    def load() -> ParsedPage:
        calls.append(1)
        release.wait()
        return ParsedPage.parse("# Title\n\ntext\n", "f")

    results: list[ParsedPage] = []
    started = [threading.Event() for _ in range(8)]

    def reader(ready: threading.Event) -> None:
        ready.set()
        results.append(cache.get(Path("/x.md"), (1, 2, 3, 4), load))

    threads = [threading.Thread(target=reader, args=(event,)) for event in started]
    for thread in threads:
        thread.start()
    for event in started:
        event.wait()
    release.set()
    for thread in threads:
        thread.join()
    assert len(calls) == 1
    assert len(results) == 8
    assert all(result is results[0] for result in results)
    assert not cache.loading


def test_big_pages_are_parsed_one_at_a_time_and_small_ones_do_not_wait(tmp_path: Path) -> None:
    big = "# Big\n\n" + "a line of words\n" * (BIG_PAGE_BYTES // 15)
    root = write_corpus(tmp_path / NAME, {"big.md": big, "small.md": "# Small\n\nwords\n"})
    svc = own_service(root, tmp_path / "cache")
    results: list[DocPage] = []
    with pages._big_page:  # another big page is being parsed
        reader = threading.Thread(target=lambda: results.append(svc.read("big.md", max_tokens=100)))
        reader.start()
        assert svc.read("small.md").content.startswith("# Small")
        reader.join(timeout=0.2)
        assert reader.is_alive()
    reader.join()
    assert results[0].content.startswith("# Big")


def test_a_failed_parse_reaches_every_waiter_and_is_retried_next_time() -> None:
    cache = PageCache(KB * KB)

    def broken() -> ParsedPage:
        raise OSError("disk gone")

    with pytest.raises(OSError, match="disk gone"):
        cache.get(Path("/x.md"), (1, 2, 3, 4), broken)
    assert not cache.loading
    page = cache.get(Path("/x.md"), (1, 2, 3, 4), lambda: ParsedPage.parse("# T\n", "f"))
    assert page.title == "T"


def test_a_page_grown_past_the_page_limit_is_refused(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / NAME, {"page.md": "# Small\n\ntext\n"})
    svc = own_service(root, tmp_path / "cache", max_page_bytes=4 * KB)
    (root / "page.md").write_text("# Grown\n\n" + "x" * 8 * KB, "utf-8")
    with pytest.raises(DocsError, match="LODESTAR_MAX_PAGE_BYTES"):
        svc.read("page.md")


# max_tokens bounds the answer, headings included


@pytest.mark.parametrize("max_tokens", [100, 1000, 6000])
def test_a_page_of_20000_headings_answers_within_max_tokens(service: DocsService, max_tokens: int) -> None:
    page = service.read("many.md", corpus=NAME, max_tokens=max_tokens)
    assert answer_chars(page) <= max_tokens * CHARS_PER_TOKEN
    assert page.headings_total == 20_001
    assert 0 < len(page.headings) < 20_001
    assert page.headings[0].anchor == "many-headings"  # the part read starts at the top
    assert page.next_cursor


def test_cut_headings_follow_the_part_being_read(service: DocsService) -> None:
    page = service.read("many.md", corpus=NAME, heading="heading-12345", max_tokens=1000)
    assert page.content.startswith("## Heading 12345\n")
    assert page.headings[0].anchor == "heading-12345"
    anchors = [h.anchor for h in page.headings]
    assert anchors == [f"heading-{i}" for i in range(12345, 12345 + len(anchors))]

    text, offset, cursor = PAGES["many.md"], 0, None
    for _ in range(30):
        part = service.read("many.md", corpus=NAME, cursor=cursor, max_tokens=200)
        cursor, read_from = part.next_cursor, offset
        offset += len(part.content)
    holding = text.rfind("\n## ", 0, read_from + 3)  # the last heading at or before the part's start
    assert part.headings_total == 20_001
    assert part.headings[0].text == text[holding + 4 : text.index("\n", holding + 1)]


def test_the_last_part_lists_the_headings_before_it(service: DocsService) -> None:
    page = service.read("many.md", corpus=NAME, heading="heading-19999", max_tokens=1000)
    assert page.next_cursor is None
    anchors = [h.anchor for h in page.headings]
    assert anchors[-1] == "heading-19999"
    assert len(anchors) > 5
    assert answer_chars(page) <= 1000 * CHARS_PER_TOKEN


def test_an_unknown_heading_on_a_huge_page_names_a_bounded_list(service: DocsService) -> None:
    with pytest.raises(DocsError, match="and 19951 more") as info:
        service.read("many.md", corpus=NAME, heading="nope")
    assert len(str(info.value)) < 2000


def test_a_small_page_lists_all_its_headings(service: DocsService) -> None:
    page = service.read("small.md", corpus=NAME, max_tokens=100)
    assert [h.anchor for h in page.headings] == ["small", "only-part"]
    assert page.headings_total is None


# Snippets from huge sections


def test_snippet_of_a_huge_section_finds_a_match_deep_inside_quickly() -> None:
    filler = "plain words without the needle; " * 200_000  # 6 MB
    body = filler + "here the zebrafish and then the zebra crossing appear. " + filler
    started = time.perf_counter()
    text = snippet(body, ["zebra", "cross"])
    assert time.perf_counter() - started < 5
    assert "**zebra** **crossing**" in text
    assert "zebrafish" in text
    assert "**zebrafish**" not in text
    assert text.startswith("...") and text.endswith("...")


def test_snippet_of_a_huge_section_without_a_match_is_its_start() -> None:
    body = "plain words without the needle; " * 200_000
    assert snippet(body, ["zebra"]).startswith("plain words without the needle;")


def test_snippet_of_an_ordinary_section_analyses_all_of_it() -> None:
    body = "words " * (SNIPPET_SCAN_CHARS // 6 - 10) + "the secret word"
    assert "**secret**" in snippet(body, ["secret"])


def test_search_hit_deep_in_a_long_section_has_its_snippet(service: DocsService) -> None:
    (hit,) = service.search("quokka", corpus=NAME).hits
    assert hit.path == "one-section.md"
    assert "A **quokka** hides here." in hit.snippet


# Cursors: anything that is not one read_doc issued is an "invalid cursor" error


def _token(payload: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


def _raw(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "%%%",
        "é",
        base64.urlsafe_b64encode(b"\xff\xfe\x00").decode(),
        _raw("[" * 100_000),
        _raw("[" + "9" * 5000 + "]"),
        _raw(f'["{NAME}","big.md","",{"9" * 5000},"x"]'),
        _token({"corpus": NAME, "path": "big.md"}),
        _token([NAME, "big.md", "", 1.5, "x"]),
        _token([NAME, "big.md", "", True, "x"]),
        _token([NAME, "big.md", "", None, "x"]),
        _token([NAME, ["big.md"], "", 0, "x"]),
        _token([[[[NAME]]], "big.md", "", 0, "x"]),
        _token([NAME, "big.md", "", 0, "x", "extra"]),
        _token([NAME, "big.md", "", -1, "x"]),
        _token("just a string"),
        _token(12),
    ],
)
def test_malformed_cursor_is_an_invalid_cursor_error(service: DocsService, cursor: str) -> None:
    with pytest.raises(DocsError, match="invalid cursor"):
        service.read("big.md", corpus=NAME, cursor=cursor)


def test_cursor_for_a_missing_corpus_page_heading_or_offset(service: DocsService) -> None:
    digest = service._page("big.md", NAME).parsed.digest
    for fields, why in [
        (["gone", "big.md", "", 0, digest], "unknown corpus 'gone'"),
        ([NAME, "gone.md", "", 0, digest], "no page 'gone.md'"),
        ([NAME, "big.md", "gone", 0, digest], "no heading 'gone'"),
        ([NAME, "big.md", "", len(PAGES["big.md"]) + 1, digest], "past the end"),
        ([NAME, "big.md", "part-3", 10**6, digest], "past the end"),
    ]:
        with pytest.raises(DocsError, match=f"invalid cursor: .*{why}"):
            service.read("big.md", cursor=Cursor(*fields).encode())  # type: ignore[arg-type]


def test_cursor_for_a_deleted_page(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / NAME, {"page.md": "# Page\n\n" + "line of words\n" * 500})
    svc = own_service(root, tmp_path / "cache")
    first = svc.read("page.md", max_tokens=100)
    (root / "page.md").unlink()
    with pytest.raises(DocsError, match=r"invalid cursor: cannot read page\.md"):
        svc.read("page.md", cursor=first.next_cursor)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(cursor=st.one_of(st.text(max_size=200), _JSON.map(_token), st.binary(max_size=100).map(base64.b64encode)))
def test_any_cursor_reads_or_is_a_docs_error(service: DocsService, cursor: str | bytes) -> None:
    text = cursor.decode() if isinstance(cursor, bytes) else cursor
    try:
        page = service.read("big.md", corpus=NAME, cursor=text)
    except DocsError:
        return
    assert page.content or page.next_cursor is None


@settings(max_examples=100, deadline=None)
@given(
    corpus=st.sampled_from([NAME, "other", ""]),
    path=st.sampled_from(["big.md", "small.md", "../x.md", "", "big"]),
    heading=st.sampled_from(["", "part-3", "only-part", "nope"]),
    offset=st.integers(min_value=-(2**70), max_value=2**70),
    digest=st.sampled_from(["", "x" * 12]),
)
def test_any_well_shaped_cursor_reads_or_is_a_docs_error(
    service: DocsService, corpus: str, path: str, heading: str, offset: int, digest: str
) -> None:
    if digest:
        digest = service._page(path, NAME).parsed.digest if path in ("big.md", "small.md") else digest
    try:
        page = service.read("big.md", cursor=Cursor(corpus, path, heading, offset, digest).encode())
    except DocsError:
        return
    assert page.path == path


def test_a_long_body_with_letters_that_lengthen_when_lowercased_still_gets_its_match() -> None:
    body = "İ " * 20_000 + " the target is found here " + "filler " * 10
    text = snippet(body, ["target"])
    assert "**target**" in text
