"""Markdown sectioning: h1-h3 sections, heading paths, anchors, cleaned body text and exact offsets."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import PAGES, write_corpus
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lodestar.docs.index import open_index
from lodestar.docs.sections import Page, parse_page, slugify
from lodestar.docs.sources import CorpusSource


def concat(text: str, page: Page) -> str:
    return "".join(text[s.start : s.end] for s in page.sections)


def slice_of(text: str, page: Page, heading: str) -> str:
    section = next(s for s in page.sections if s.heading == heading)
    return text[section.start : section.end]


NESTED = """# Guide

Intro paragraph of the guide.

## Install

Install words here.

### From source

Build words here.

#### Deep detail

Deep words stay in the h3.

##### Deeper still

Deeper words stay too.

## Usage

Usage words here.

### Options

Option words here.
"""


def test_h1_to_h3_become_sections_with_heading_paths() -> None:
    page = parse_page(NESTED, "fallback")
    assert [(s.level, s.heading) for s in page.sections] == [
        (1, "Guide"),
        (2, "Install"),
        (3, "From source"),
        (2, "Usage"),
        (3, "Options"),
    ]
    assert [s.path for s in page.sections] == [
        ["Guide"],
        ["Guide", "Install"],
        ["Guide", "Install", "From source"],
        ["Guide", "Usage"],
        ["Guide", "Usage", "Options"],
    ]
    assert page.title == "Guide"
    assert [h.anchor for h in page.headings] == ["guide", "install", "from-source", "usage", "options"]


def test_h4_and_deeper_stay_inside_the_enclosing_section() -> None:
    page = parse_page(NESTED, "fallback")
    assert "Deep detail" not in [s.heading for s in page.sections]
    assert "Deeper still" not in [h.text for h in page.headings]
    source = next(s for s in page.sections if s.heading == "From source")
    assert "Deep detail" in source.text
    assert "Deep words stay in the h3." in source.text
    assert "Deeper words stay too." in source.text
    raw = slice_of(NESTED, page, "From source")
    assert raw.startswith("### From source\n")
    assert "#### Deep detail" in raw
    assert "##### Deeper still" in raw
    assert "## Usage" not in raw


def test_each_section_body_holds_only_its_own_text() -> None:
    page = parse_page(NESTED, "fallback")
    install = next(s for s in page.sections if s.heading == "Install")
    assert install.text == "Install words here."
    usage = next(s for s in page.sections if s.heading == "Usage")
    assert "Option words" not in usage.text
    assert "Usage words here." in usage.text


def test_heading_markup_is_dropped_from_heading_text() -> None:
    page = parse_page("# The `max_tokens` *option*\n\n## A [linked](https://x.example) title\n", "f")
    assert [s.heading for s in page.sections] == ["The max_tokens option", "A linked title"]
    assert [s.anchor for s in page.sections] == ["the-max_tokens-option", "a-linked-title"]


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("Installation", "installation"),
        ("Background tasks", "background-tasks"),
        ("What's new? (v2.0)", "whats-new-v20"),
        ("snake_case_name", "snake_case_name"),
        ("Step 1: install", "step-1-install"),
        ("pre-built binaries", "pre-built-binaries"),
        ("Café crème", "café-crème"),
        ("  padded  ", "padded"),
    ],
)
def test_slugify_follows_github_rules(heading: str, anchor: str) -> None:
    assert slugify(heading) == anchor


def test_duplicate_headings_get_numbered_anchors() -> None:
    text = "# Setup\n\none\n\n## Setup\n\ntwo\n\n## Other\n\n### Setup\n\nthree\n"
    page = parse_page(text, "f")
    assert [s.anchor for s in page.sections] == ["setup", "setup-1", "other", "setup-2"]
    assert [h.anchor for h in page.headings] == ["setup", "setup-1", "other", "setup-2"]


def test_anchors_are_unique_even_when_a_heading_looks_like_a_numbered_duplicate() -> None:
    """Regression (fixed in b5bfea5): a numbered duplicate could collide with a heading that slugs the same."""
    page = parse_page("# Example\n\n## Example\n\n## Example 1\n\n## Example\n", "f")
    assert [s.anchor for s in page.sections] == ["example", "example-1", "example-1-1", "example-2"]


def test_code_fences_go_to_the_code_field_not_the_body() -> None:
    text = (
        "# Config\n\nSet the option.\n\n```ts\nconst zebraUnique = new Widget();\n```\n\n"
        "Then more prose.\n\n    indentedCodeWord = 1\n"
    )
    page = parse_page(text, "f")
    (section,) = page.sections
    assert "zebraUnique" not in section.text
    assert "indentedCodeWord" not in section.text
    assert "const zebraUnique = new Widget();" in section.code_text
    assert "indentedCodeWord = 1" in section.code_text
    assert section.text == "Set the option. Then more prose."


def test_hash_lines_inside_a_fence_are_not_headings() -> None:
    text = "# Real\n\n```bash\n# not a heading\n## nor this\n```\n"
    page = parse_page(text, "f")
    assert [s.heading for s in page.sections] == ["Real"]
    assert "# not a heading" in page.sections[0].code_text


def test_front_matter_gives_title_and_description_and_stays_out_of_the_body() -> None:
    text = PAGES["docs/overview.md"]
    page = parse_page(text, "fallback")
    assert page.title == "Overview"
    assert page.description == "What the example product does."
    bodies = " ".join(s.text for s in page.sections)
    assert "title:" not in bodies
    assert "description:" not in bodies
    assert "---" not in bodies
    # the description is indexed once, with the first section
    assert bodies.count("What the example product does.") == 1
    assert page.sections[0].body[0] == "What the example product does."
    # the raw front matter is part of the first section's slice: nothing of the page is lost
    assert text[page.sections[0].start : page.sections[0].end].startswith("---\ntitle: Overview\n")


def test_front_matter_title_wins_over_the_h1() -> None:
    text = "---\ntitle: 'Quoted Title'\n---\n\n# Different h1\n\nBody.\n"
    page = parse_page(text, "fallback")
    assert page.title == "Quoted Title"
    assert page.sections[0].heading == "Different h1"


def test_front_matter_after_a_byte_order_mark(tmp_path: Path) -> None:
    """Regression (fixed in b5bfea5): a BOM hid the front matter and made 'title: X' a heading."""
    root = tmp_path / "bom-docs"
    root.mkdir()
    (root / "page.md").write_bytes("---\ntitle: Real Title\n---\n\n# Heading\n\nBody.\n".encode("utf-8-sig"))
    opened = open_index(CorpusSource(name="bom", source=str(root), root=root), tmp_path / "cache")
    record = opened.manifest.files["page.md"]
    assert record.title == "Real Title"
    assert [s.heading for s in record.sections] == ["Heading"]


def test_mdx_imports_and_jsx_tags_do_not_pollute_the_body() -> None:
    text = PAGES["guides/quickstart.mdx"]
    page = parse_page(text, "fallback")
    (section,) = page.sections
    assert section.heading == "Quickstart"
    assert section.text == "Run the quickstart wizard."
    for noise in ("import", "@theme", "Tabs", "TabItem", "value", "npm", "<", ">"):
        assert noise not in section.text


def test_mdx_exports_and_inline_jsx_are_dropped() -> None:
    text = (
        "export const meta = { sidebar: 'left' };\n\n# Page\n\n"
        'Use <Badge text="beta" /> the <Kbd>Enter</Kbd> key.\n\n'
        '<Callout type="warning">\n\nCareful now.\n\n</Callout>\n'
    )
    page = parse_page(text, "fallback")
    (section,) = page.sections
    assert "meta" not in section.text
    assert "sidebar" not in section.text
    assert "Badge" not in section.text
    assert "beta" not in section.text
    assert "Callout" not in section.text
    assert "Careful now." in section.text
    assert "Enter" in section.text


def test_generics_in_inline_code_keep_their_words() -> None:
    """Regression (fixed in b5bfea5): tag stripping ate TypeScript generics inside code spans."""
    page = parse_page("# T\n\nReturns `Promise<void>` or `Map<string, number>`.\n", "f")
    for word in ("void", "string", "number"):
        assert word in page.sections[0].text


@pytest.mark.parametrize(
    ("line", "text"),
    [
        ("Use ``a ` b`` here.", "Use a ` b here."),  # a run closes only at a run of the same length
        ("A ``` run and a `span<T>`.", "A run and a span<T>."),  # an unclosed run is no span
        ("Ticks `` ` `` inside.", "Ticks ` inside."),
        ("See [Foo](https://en.wikipedia.org/wiki/Foo_(bar)) now.", "See Foo now."),
        ("An ![logo](img/a.png) and a [link](x).", "An and a link."),
        ("Text [a](", "Text [a]("),
    ],
)
def test_inline_markup_is_cleaned(line: str, text: str) -> None:
    assert parse_page(f"# T\n\n{line}\n", "f").sections[0].text == text


def test_front_matter_fields_end_at_their_line() -> None:
    page = parse_page("---\ntitle:\ndescription:   Spaced out.  \r\n---\n\nBody.\n", "Fallback")
    assert page.title == "Fallback"  # an empty title does not swallow the next line
    assert page.description == "Spaced out."


def test_prose_that_starts_with_the_word_import_is_kept() -> None:
    page = parse_page("# Notes\n\nimport statements are resolved at build time.\n", "f")
    assert "import statements are resolved at build time." in page.sections[0].text


def test_text_before_the_first_h1_joins_the_h1_section() -> None:
    text = "A lead paragraph before the title.\n\n```sh\nlead-code\n```\n\n# Title\n\nBody.\n\n## Next\n\nMore.\n"
    page = parse_page(text, "fallback")
    assert [s.heading for s in page.sections] == ["Title", "Next"]
    first = page.sections[0]
    assert first.start == 0
    assert first.body[0] == "A lead paragraph before the title."
    assert "Body." in first.text
    assert "lead-code" in first.code_text


def test_text_before_a_first_h2_is_its_own_section_titled_like_the_page() -> None:
    text = "---\ntitle: Page Title\n---\n\nIntro words.\n\n## Part\n\nPart words.\n"
    page = parse_page(text, "fallback")
    assert [(s.level, s.heading) for s in page.sections] == [(0, "Page Title"), (2, "Part")]
    assert "Intro words." in page.sections[0].text
    assert [h.text for h in page.headings] == ["Part"]


def test_a_page_without_headings_is_one_section_titled_from_the_file_name() -> None:
    text = "Just some words.\n\nAnd another paragraph.\n"
    page = parse_page(text, "Getting started")
    assert page.title == "Getting started"
    (section,) = page.sections
    assert section.heading == "Getting started"
    assert section.level == 0
    assert (section.start, section.end) == (0, len(text))
    assert section.text == "Just some words. And another paragraph."
    assert page.headings == []


def test_an_indexed_page_without_headings_takes_its_title_from_the_file_name(tmp_path: Path) -> None:
    root = write_corpus(tmp_path / "plain", {"guides/getting-started.md": "No headings at all, only text.\n"})
    opened = open_index(CorpusSource(name="plain", source=str(root), root=root), tmp_path / "cache")
    record = opened.manifest.files["guides/getting-started.md"]
    assert record.title == "Getting started"
    assert [(s.heading, s.level, s.anchor) for s in record.sections] == [("Getting started", 0, "")]


@pytest.mark.parametrize("path", sorted(PAGES))
def test_section_slices_concatenate_to_the_page(path: str) -> None:
    text = PAGES[path]
    page = parse_page(text, "fallback")
    assert concat(text, page) == text
    assert page.sections[0].start == 0
    assert page.sections[-1].end == len(text)
    first, *rest = page.sections
    assert "#" * first.level + " " + first.heading in text[first.start : first.end]
    for section in rest:
        assert text[section.start : section.end].startswith("#" * section.level + " " + section.heading)


def test_offsets_with_crlf_line_endings() -> None:
    text = "# A\r\n\r\nalpha\r\n\r\n## B\r\n\r\nbeta\r\n"
    page = parse_page(text, "f")
    assert concat(text, page) == text
    assert slice_of(text, page, "B") == "## B\r\n\r\nbeta\r\n"


def test_offsets_with_setext_headings() -> None:
    text = "Title\n=====\n\ntext\n\nSub\n---\n\nmore\n"
    page = parse_page(text, "f")
    assert [(s.level, s.heading) for s in page.sections] == [(1, "Title"), (2, "Sub")]
    assert slice_of(text, page, "Sub") == "Sub\n---\n\nmore\n"


@pytest.mark.parametrize("text", ["# A\nfoo\rbar\n## B\nx\n", "# A\rtext\r## B\rmore\r"])
def test_offsets_survive_carriage_returns(text: str) -> None:
    """Regression (fixed in b5bfea5): offsets counted only LF while markdown-it also breaks at a lone CR."""
    page = parse_page(text, "f")
    assert concat(text, page) == text
    assert text[page.sections[-1].start :].startswith("## B")


_LINES = st.one_of(
    st.sampled_from(
        [
            "# Title",
            "## Part",
            "### Sub part",
            "#### Deep",
            "",
            "```",
            "```py",
            "---",
            "title: x",
            "import X from 'y';",
            "<Tabs>",
            "</Tabs>",
            "- item",
            "> quote",
            "    indented",
            "Setext",
            "===",
            "| a | b |",
            "|---|---|",
        ]
    ),
    st.text(alphabet=st.characters(blacklist_characters="\r\n", blacklist_categories=("Cs",)), max_size=30),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINES, max_size=25), newline=st.sampled_from(["\n", "\r\n", "\r"]), trailing=st.booleans())
def test_any_markdown_slices_back_to_itself(lines: list[str], newline: str, trailing: bool) -> None:
    text = newline.join(lines) + (newline if trailing else "")
    page = parse_page(text, "fallback")
    assert page.sections
    assert concat(text, page) == text
    starts = [s.start for s in page.sections]
    assert starts == sorted(starts)
    assert all(s.start <= s.end for s in page.sections)
