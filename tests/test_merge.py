"""Results from several corpora: a user's corpora before the bundled pages, near-identical pages as one hit,
full pages of results and even paging."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PAGES, write_corpus

from lodestar.docs.render import render_search
from lodestar.docs.service import BUNDLED, DocsService

# Pages that mention the cache directory in passing: the bundled pages about it score higher.
PASSING = {
    f"notes/page-{i}.md": f"# Garden note {i}\n\n"
    + "Tomatoes, peppers and beans grow well in raised beds with compost. " * 20
    + f"Keep seed packets in a dry cache; the directory of varieties is on page {i}.\n"
    for i in range(8)
}


@pytest.fixture
def garden(tmp_path: Path) -> Iterator[DocsService]:
    docs = DocsService([f"garden={write_corpus(tmp_path / 'garden', PASSING)}"], tmp_path / "cache")
    docs.load()
    yield docs
    docs.close()


def test_bundled_pages_do_not_crowd_a_user_s_corpus(garden: DocsService) -> None:
    hits = garden.search("cache directory", limit=8).hits
    corpora = [h.corpus for h in hits]
    assert corpora.count(BUNDLED) == 2 and corpora[:4].count(BUNDLED) == 1  # one in four
    assert corpora[:2] == ["garden", BUNDLED]  # a user's hit first; the best bundled hit right after it
    assert set(corpora) == {BUNDLED, "garden"}


def test_bundled_pages_come_after_the_user_s_run_out(garden: DocsService) -> None:
    hits = garden.search("cache directory", limit=20).hits
    corpora = [h.corpus for h in hits]
    garden_hits = corpora.count("garden")
    assert garden_hits == len(PASSING)
    last_garden = max(i for i, c in enumerate(corpora) if c == "garden")
    assert corpora[last_garden + 1 :] == [BUNDLED] * (len(corpora) - last_garden - 1)
    assert len(hits) == 20


def test_offsets_page_the_merged_list_evenly(garden: DocsService) -> None:
    whole = [(h.corpus, h.path) for h in garden.search("cache directory garden", limit=15).hits]
    paged = [
        (h.corpus, h.path) for o in range(0, 15, 5) for h in garden.search("cache directory garden", 5, offset=o).hits
    ]
    assert paged == whole and len(whole) == 15


def test_the_bundled_corpus_alone_is_ranked_by_score(tmp_path: Path) -> None:
    docs = DocsService([], tmp_path / "cache")
    docs.load()
    scores = [h.score for h in docs.search("cache directory").hits]
    assert scores == sorted(scores, reverse=True) and len(scores) == 8


@pytest.fixture
def two_versions(tmp_path: Path) -> Iterator[DocsService]:
    """One package's docs in two versions: identical but for one changed page and one page only in v2."""
    v1 = write_corpus(tmp_path / "v1", PAGES)
    v2 = tmp_path / "v2"
    shutil.copytree(v1, v2)
    memory = v2 / "docs/agents/memory.md"
    memory.write_text(memory.read_text("utf-8").replace("older messages", "earlier messages"), "utf-8")
    (v2 / "docs/agents/tools.md").write_text("# Agent tools\n\nAgents call tools in threads of work.\n", "utf-8")
    docs = DocsService([f"pkg-v1={v1}", f"pkg-v2={v2}"], tmp_path / "cache", bundled=False)
    docs.load()
    yield docs
    docs.close()


def test_near_identical_pages_of_two_corpora_are_one_hit(two_versions: DocsService) -> None:
    result = two_versions.search("threads semantic recall", limit=5)
    memory = [h for h in result.hits if h.path == "docs/agents/memory.md"]
    assert len(memory) == 1
    assert {memory[0].corpus, *memory[0].also_in} == {"pkg-v1", "pkg-v2"}
    assert result.total == 3  # both copies match; the page only in v2 as well
    assert [h.path for h in result.hits] == ["docs/agents/memory.md", "docs/agents/tools.md"]
    other = ({"pkg-v1", "pkg-v2"} - {memory[0].corpus}).pop()
    assert f"docs/agents/memory.md#{memory[0].anchor} (score {memory[0].score:.2f}; also in {other})" in render_search(
        result
    )


def test_folded_pages_leave_no_gap_in_a_full_page(two_versions: DocsService) -> None:
    result = two_versions.search("agents threads configuration install example", limit=4)
    keys = [(h.corpus, h.path) for h in result.hits]
    assert len(keys) == 4 and len({path for _, path in keys}) == 4
    assert all(h.also_in for h in result.hits if h.path != "docs/agents/tools.md")


def test_different_pages_at_one_path_stay_apart(tmp_path: Path) -> None:
    one = write_corpus(tmp_path / "one", {"docs/intro.md": "# Intro\n\nThe lighthouse keeper trims the lamp.\n"})
    two = write_corpus(tmp_path / "two", {"docs/intro.md": "# Intro\n\nA lighthouse guide for sailors at night.\n"})
    docs = DocsService([f"one={one}", f"two={two}"], tmp_path / "cache", bundled=False)
    docs.load()
    hits = docs.search("lighthouse").hits
    assert sorted(h.corpus for h in hits) == ["one", "two"] and not any(h.also_in for h in hits)
