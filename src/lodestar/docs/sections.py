"""Split a markdown page into sections at h1-h3, the unit that search ranks and `read_doc` slices.

Each section keeps character offsets into the raw page, so reading a section returns the author's exact
markdown while the indexed text is cleaned of front matter, MDX imports, JSX tags and code fences.
Pages come from untrusted packages: every regex here runs in linear time on any input (no pattern
where two starting points can rescan the same long run), so a page of 64 KB of `[` or backticks parses
as fast as prose.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache

from markdown_it import MarkdownIt
from markdown_it.token import Token

from lodestar.docs.analysis import identifier_key
from lodestar.docs.models import Heading

MAX_LEVEL = 3
_SECTION_TAGS = ("h1", "h2", "h3")
_FRONT_MATTER = re.compile(r"---[ \t]*\r?\n(.*?)\r?\n---[ \t]*(?:\r?\n|\Z)", re.S)
_LINE_END = re.compile(r"\r\n|\r|\n")  # what markdown-it counts as a line break
_TICKS = re.compile(r"`+")
_FM_FIELD = re.compile(r"^(title|description)[ \t]*:(.*)$", re.M)
_MDX_STATEMENT = re.compile(r"^\s*(?:import|export)\s[^\n]*(?:from\s+['\"]|['\"];?\s*$|=)")
_TAG = re.compile(r"</?[A-Za-z][^<>]*?/?>")
# Link text stops at any bracket and a target at any unpaired parenthesis, so each attempt ends where the next starts.
_TARGET = r"\((?:[^()]|\([^()]*\))*\)"  # one level of nesting: (https://en.wikipedia.org/wiki/A_(b))
_IMAGE = re.compile(r"!\[[^\[\]]*\]" + _TARGET)
_LINK = re.compile(r"\[([^\[\]]*)\]" + _TARGET)
_EMPHASIS = re.compile(r"(?<![\\\w])(\*\*?|__?|`+|~~)|(\*\*?|__?|`+|~~)(?!\w)")
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")
_ANCHOR_DROP = re.compile(r"[^\w\- ]", re.U)
_SPACES = re.compile(r"\s+")


@dataclass(slots=True)
class Section:
    heading: str
    level: int
    anchor: str
    path: list[str]
    start: int
    end: int
    body: list[str] = field(default_factory=list)
    code: list[str] = field(default_factory=list)
    names: list[str] = field(default_factory=list)  # identifier keys of its headings that are code names

    @property
    def text(self) -> str:
        return " ".join(self.body)

    @property
    def code_text(self) -> str:
        return "\n".join(self.code)


@dataclass(slots=True)
class Page:
    title: str
    description: str
    sections: list[Section]

    @property
    def headings(self) -> list[Heading]:
        return [Heading(level=s.level, text=s.heading, anchor=s.anchor) for s in self.sections if s.level]


@cache
def _parser() -> MarkdownIt:
    # Inline parsing is left out: it doubled the cost of indexing, and a few regexes clean the raw text.
    return MarkdownIt("commonmark").enable("table").disable(["inline", "text_join"])


def slugify(text: str) -> str:
    """GitHub's heading anchor: lowercase, punctuation dropped, spaces to hyphens."""
    return _ANCHOR_DROP.sub("", text.strip().lower()).replace(" ", "-")


def find_heading(wanted: str, headings: Sequence[tuple[str, str] | None]) -> int | None:
    """Which of the (anchor, text) headings `wanted` names (None entries are not headings): by anchor first, then
    by its text or the slug of its text, case aside; a leading '#' is ignored."""
    wanted = wanted.strip().lstrip("#").strip()
    index = next((i for i, h in enumerate(headings) if h is not None and h[0] == wanted), None)
    if index is None:
        lowered = wanted.lower()
        index = next((i for i, h in enumerate(headings) if h and lowered in (h[1].lower(), slugify(h[1]))), None)
    return index


def _front_matter(text: str) -> tuple[dict[str, str], int]:
    """Title and description from YAML-style front matter, and where the markdown starts (after a BOM)."""
    start = 1 if text.startswith("\ufeff") else 0
    match = _FRONT_MATTER.match(text, start)
    if not match:
        return {}, start
    fields = {key: value.strip().strip("'\"") for key, value in _FM_FIELD.findall(match.group(1))}
    return fields, match.end()


def _inline_text(token: Token) -> str:
    """Inline markdown as plain words; code spans keep their text (`Promise<void>` is not a tag)."""
    content, done = token.content, 0
    pieces: list[str] = []
    for start, code_start, code_end, end in _code_spans(content):
        pieces += (_plain(content[done:start]), content[code_start:code_end])
        done = end
    pieces.append(_plain(content[done:]))
    return _SPACES.sub(" ", "".join(pieces)).strip()


def _code_spans(text: str) -> list[tuple[int, int, int, int]]:
    """(start, code start, code end, end) of each code span. A run of backticks opens a span closed by the
    next run of the same length, else it is literal (CommonMark); one pass over the runs, where a
    backreference regex took cubic time on a long run of backticks."""
    runs = [(m.start(), m.end()) for m in _TICKS.finditer(text)]
    closer: list[int | None] = [None] * len(runs)
    later: dict[int, int] = {}  # run length -> index of the nearest such run to the right
    for i in range(len(runs) - 1, -1, -1):
        length = runs[i][1] - runs[i][0]
        closer[i], later[length] = later.get(length), i
    spans, i = [], 0
    while i < len(runs):
        j = closer[i]
        if j is None:
            i += 1
            continue
        spans.append((runs[i][0], runs[i][1], runs[j][0], runs[j][1]))
        i = j + 1
    return spans


def _plain(text: str) -> str:
    text = _IMAGE.sub("", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    return _ESCAPE.sub(r"\1", _EMPHASIS.sub("", text))


def _line_offsets(text: str) -> list[int]:
    offsets = [0]
    offsets.extend(match.end() for match in _LINE_END.finditer(text))
    return offsets


class _Anchors:
    """Deduplicates anchors the way GitHub does: `setup`, `setup-1`, `setup-2`, skipping taken ones."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.used: set[str] = set()

    def __call__(self, heading: str) -> str:
        base = slugify(heading)
        count = self.counts.get(base, 0)
        anchor = base if count == 0 else f"{base}-{count}"
        while anchor in self.used:
            count += 1
            anchor = f"{base}-{count}"
        self.counts[base] = count + 1
        self.used.add(anchor)
        return anchor


def parse_page(text: str, fallback_title: str) -> Page:
    fields, body_start = _front_matter(text)
    offsets = _line_offsets(text)
    first_line = len(_LINE_END.findall(text, 0, body_start))
    tokens = _parser().parse(text[body_start:])
    intro = Section(heading="", level=0, anchor="", path=[], start=0, end=len(text))
    sections = [intro]
    anchors = _Anchors()
    trail: list[str] = []
    for index, token in enumerate(tokens):
        current = sections[-1]
        if token.type == "heading_open" and int(token.tag[1]) <= MAX_LEVEL and token.map:
            level = int(token.tag[1])
            heading = _inline_text(tokens[index + 1])
            trail = [*trail[: level - 1], heading]
            start = offsets[first_line + token.map[0]]
            current.end = start
            sections.append(Section(heading, level, anchors(heading), list(trail), start, len(text)))
        elif token.type == "inline" and tokens[index - 1].type == "heading_open":
            _add_names(current.names, token.content.strip())
            if tokens[index - 1].tag not in _SECTION_TAGS:
                current.body.append(_inline_text(token))
        elif token.type == "inline":
            _add_inline(current, token)
        elif token.type in ("fence", "code_block"):
            current.code.append(token.content)
        elif token.type == "html_block":
            stripped = _SPACES.sub(" ", _TAG.sub(" ", token.content)).strip()
            if stripped:
                current.body.append(stripped)
    title = fields.get("title") or next((s.heading for s in sections if s.level == 1), "") or fallback_title
    if len(sections) > 1 and (sections[1].level == 1 or not (intro.body or intro.code)):
        first = sections[1]  # text before the page's h1 belongs to it
        first.start, first.body, first.code = 0, intro.body + first.body, intro.code + first.code
        sections.pop(0)
    else:
        intro.heading, intro.path = title, [title]
    description = fields.get("description", "")
    if description:
        sections[0].body.insert(0, description)
    return Page(title=title, description=description, sections=sections)


def _add_names(names: list[str], heading: str) -> None:
    """A heading (the section's, or an h4-h6 inside it) that is a code name, `maxRetries`, `save-exact`,
    `AI_RetryError`, `Agent.streamUntilIdle()`, names the section; a dotted one names it by its last part too.
    Names only in lists, tables or bold (`**options.maxSteps**`) were tried and left out: on the judged
    queries they lift the many pages that list an option above the one that explains it."""
    key = identifier_key(heading)
    if key:
        for part in dict.fromkeys((key, key.rsplit(".", 1)[-1])):
            if part not in names:
                names.append(part)


def _add_inline(section: Section, token: Token) -> None:
    text = _inline_text(token)
    if text and not _MDX_STATEMENT.match(token.content):
        section.body.append(text)
