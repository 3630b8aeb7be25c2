"""Ranking on corpora shaped like real ones: the page that defines a code name, reference pages over course
copies, and queries made only of common words."""

from __future__ import annotations

from pathlib import Path

from conftest import PAGES, write_corpus

from lodestar.docs.sections import parse_page
from lodestar.docs.service import DocsService

FILLER = "Each option is read when the client starts and can be changed later. "


def ranked(tmp_path: Path, pages: dict[str, str], query: str) -> list[str]:
    service = DocsService([str(write_corpus(tmp_path / "corpus", pages))], tmp_path / "cache", bundled=False)
    service.load()
    try:
        return [hit.path for hit in service.search(query, limit=5).hits]
    finally:
        service.close()


def test_the_page_whose_heading_is_the_name_ranks_first(tmp_path: Path) -> None:
    options = "".join(f"#### `option-{i}`\n\nSets the {i}th thing. {FILLER * 3}\n\n" for i in range(40))
    pages = {
        "reference/config.md": f"# Config\n\n## Settings\n\n{options}#### `fetch-retries`\n\nHow many times a "
        f"failed fetch is tried again.\n\n{options}",
        "guides/flaky-network.md": "# Flaky network: fetch retries\n\nRaise `fetch-retries` and `fetch-retries` "
        "again when the network drops; fetch retries help on trains. See fetch-retries.\n",
        "guides/ci.md": "# Fetching in CI\n\nIn CI, set fetch-retries to 5: fetch retries cost little.\n",
    }
    assert ranked(tmp_path, pages, "fetch-retries")[0] == "reference/config.md"
    assert ranked(tmp_path, pages, "--fetch-retries")[0] == "reference/config.md"


def test_a_camel_case_name_matches_its_heading_exactly(tmp_path: Path) -> None:
    pages = {
        "reference/settings.md": "# Settings\n\n### `maxRetries`\n\nHow many times a call is tried again.\n\n"
        f"### `timeout`\n\nHow long a call may take. {FILLER * 20}\n",
        "guides/retries.md": "# Retries and maxRetries\n\nSet maxRetries to retry; maxRetries defaults to 2, and "
        "a maxRetries of 0 turns retries off.\n",
        "reference/max-retries-class.md": "# MaxRetries\n\nThe `MaxRetries` class counts retries.\n",
    }
    assert ranked(tmp_path, pages, "maxRetries")[0] == "reference/settings.md"
    assert ranked(tmp_path, pages, "MaxRetries")[0] == "reference/max-retries-class.md"


def test_a_course_copy_follows_the_reference_page(tmp_path: Path) -> None:
    pages = {
        "docs/memory/working-memory.md": "# Working memory\n\nWorking memory keeps facts about the user across "
        f"threads. {FILLER * 4}\n\n## Templates\n\nA template shapes what working memory stores.\n",
        "course/03-memory/22-working-memory-templates.md": "# Custom working memory templates\n\nIn this step you "
        "write a working memory template: the working memory template lists the facts working memory keeps.\n",
    }
    hits = ranked(tmp_path, pages, "working memory template")
    assert hits == ["docs/memory/working-memory.md", "course/03-memory/22-working-memory-templates.md"]


def test_a_course_page_still_answers_when_it_alone_matches(tmp_path: Path) -> None:
    pages = {
        "docs/index.md": "# Overview\n\nAgents and tools.\n",
        "course/01-first-agent/03-hackernews.md": "# Hacker News tool\n\nFetch stories from Hacker News.\n",
    }
    assert ranked(tmp_path, pages, "hacker news") == ["course/01-first-agent/03-hackernews.md"]


def test_a_query_of_only_common_words_lists_the_entry_pages(tmp_path: Path) -> None:
    pages = {
        "docs/agents/tools.md": "# Tools\n\nWhat is this tool for? How do I call it?\n",
        "docs/index.md": "# Welcome\n\nStart here.\n",
        "docs/memory/overview.md": "# Memory overview\n\nThreads and recall.\n",
        "reference/cli.md": "# CLI\n\nCommands.\n",
    }
    for query in ("what is this", "how do I do it", "the and or"):
        assert ranked(tmp_path, pages, query)[:2] == ["docs/index.md", "docs/memory/overview.md"], query
    assert ranked(tmp_path, pages, "???") == []


def test_a_family_head_page_leads_the_entry_pages(tmp_path: Path) -> None:
    pages = {f"commands/tool-{name}.md": f"# tool {name}\n\nRuns {name}.\n" for name in ("add", "build", "clean")}
    pages["commands/tool.md"] = "# tool\n\nThe package manager.\n"
    assert ranked(tmp_path, pages, "what is this")[0] == "commands/tool.md"


def test_headings_that_are_code_names_name_their_section() -> None:
    page = parse_page(
        "# `generateText()`\n\nText.\n\n## Parameters\n\n#### `save-exact`\n\nSaves.\n\n#### global\n\nAll.\n\n"
        "## Agent.streamUntilIdle()\n\nWaits.\n\n## AI_RetryError\n\nFails.\n\n## Use `maxSteps` wisely\n\n",
        fallback_title="x",
    )
    assert [s.names for s in page.sections] == [
        ["generateText"],
        ["save-exact"],
        ["Agent.streamUntilIdle", "streamUntilIdle"],
        ["AI_RetryError"],
        [],
    ]


def test_entry_pages_for_common_words_say_why(tmp_path: Path) -> None:
    service = DocsService([str(write_corpus(tmp_path / "corpus", PAGES))], tmp_path / "cache", bundled=False)
    service.load()
    common, plain = service.search("what is this"), service.search("memory threads")
    service.close()
    assert common.hits and any(note.startswith("the query has only common words") for note in common.notes)
    assert plain.hits and plain.notes == []
