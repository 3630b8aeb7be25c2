"""Text analysis shared by indexing and querying: identifiers split into words, English stemming.

Docs queries mix prose with code names. `streamUntilIdle`, `PIIDetector` and `max_tokens` are indexed
both whole and as their words, so "stream until idle" and the identifier itself find the same section.
One fused tokenizer does splitting, lowercasing, stop words and stemming: a chain of Whoosh filters
costs a generator hop per token per filter, which dominated index builds.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import cache, lru_cache
from typing import Any

from whoosh.analysis import STOP_WORDS, Analyzer, Token
from whoosh.lang.porter2 import stem

_WORD = re.compile(r"\w+", re.U)
# A query word keeps the dots and hyphens inside it (`Agent.generate`, `save-exact`): whole, it can match a heading
# that names a section (identifier_key); the analyzer still splits it into words.
_QUERY_WORD = re.compile(r"\w+(?:[.-]\w+)*", re.U)
_IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*(?:[.-][\w$]+)*", re.U)

# Words that carry no meaning in a question typed into a docs search box.
QUESTION_WORDS = frozenset(
    "how do does did i what which where why who whom my me can could should would shall there "
    "is are was were be been an the a to of in on for with about any some way ways".split()
)


# Distinct words whose stem and compound parts are kept for index builds and snippets: a corpus as large as
# Mastra's docs has 18,000. Queries do not use the caches: their words are few and may be made up.
WORD_CACHE_SIZE = 32_768


@lru_cache(maxsize=WORD_CACHE_SIZE)
def _stem(word: str) -> str:
    return stem(word)


@lru_cache(maxsize=WORD_CACHE_SIZE)
def _parts(word: str) -> tuple[tuple[int, str], ...]:
    """Offsets and lowercase words of a compound identifier; empty for a plain word."""
    if word.isalpha() and (word.islower() or word[1:].islower()):
        return ()
    parts: list[tuple[int, str]] = []
    start = -1
    for i, char in enumerate(word):
        if char == "_":
            if start >= 0:
                parts.append((start, word[start:i].lower()))
            start = -1
        elif start < 0:
            start = i
        elif _boundary(word, i):
            parts.append((start, word[start:i].lower()))
            start = i
    if start >= 0:
        parts.append((start, word[start:].lower()))
    return tuple(parts) if len(parts) > 1 else ()


def _boundary(word: str, i: int) -> bool:
    """A new part starts at word[i]: aB, a1, 1a, or the B of ABc (acronym then word), in any script."""
    before, char = word[i - 1], word[i]
    if before.isdigit() != char.isdigit():
        return True
    if before.islower() and char.isupper():
        return True
    return before.isupper() and char.isupper() and i + 1 < len(word) and word[i + 1].islower()


class DocsAnalyzer(Analyzer):
    """Words, each compound also split into its parts; lowercased, stop words dropped, stemmed."""

    def has_morph(self) -> bool:
        return True

    def __eq__(self, other: object) -> bool:
        return type(other) is type(self)

    def __hash__(self) -> int:
        return hash(type(self))

    def __call__(
        self,
        value: str,
        positions: bool = False,
        chars: bool = False,
        keeporiginal: bool = False,
        removestops: bool = True,
        start_pos: int = 0,
        start_char: int = 0,
        tokenize: bool = True,
        mode: str = "",
        no_morph: bool = False,
        **kwargs: Any,
    ) -> Iterator[Token]:
        token = Token(positions, chars, removestops=removestops, mode=mode, **kwargs)
        cached = mode != "query"
        stemmer = (lambda w: w) if no_morph else _stem if cached else stem
        split = _parts if cached else _parts.__wrapped__  # one C-level call per word when cached
        pos = start_pos
        for match in _WORD.finditer(value):
            word = match.group()
            start = match.start()
            pieces = ((0, word.lower()), *split(word))
            for index, (offset, piece) in enumerate(pieces):
                stopped = piece in STOP_WORDS
                if stopped and removestops:
                    continue
                token.text = stemmer(piece)
                token.stopped = stopped
                token.boost = 1.0
                if keeporiginal:
                    token.original = piece
                if positions:
                    token.pos = pos
                if chars:
                    token.startchar = start_char + start + offset
                    token.endchar = token.startchar + (len(piece) if index else len(word))
                yield token
            pos += 1


@cache
def analyzer() -> DocsAnalyzer:
    return DocsAnalyzer()


def query_words(text: str) -> list[str]:
    """The query's words, question and stop words dropped unless nothing else is left."""
    words = _QUERY_WORD.findall(text)
    kept = [w for w in words if not common(w)]
    return kept or words


def common(word: str) -> bool:
    """A word that says nothing about what a docs query looks for."""
    lowered = word.lower()
    return lowered in QUESTION_WORDS or lowered in STOP_WORDS


def query_terms(text: str) -> list[str]:
    """Distinct index terms of a query's words that are not common; none when every word is."""
    words = [w for w in query_words(text) if not common(w)]
    terms = [t.text for t in analyzer()(" ".join(words), mode="query")]
    return list(dict.fromkeys(terms))


def identifier_key(word: str) -> str | None:
    """How a code name is matched whole and exactly (case too: `WorkingMemory` is not `workingMemory`), by a query
    word and by a heading that names it: without the backticks, leading dashes or dots and trailing `()` around it.
    None for a plain word (`memory`, `RAG`, `v1`): only a name with a dot, hyphen or underscore inside, or in
    camel case, is precise enough for that."""
    name = word.strip("`*").lstrip("-.").removesuffix("()")
    if not _IDENTIFIER.fullmatch(name):
        return None
    camel = not name[1:].isupper() and any(c.isupper() for c in name[1:]) and any(c.islower() for c in name)
    if not (camel or set(name) & {".", "-", "_"}):
        return None
    return name


def query_identifiers(text: str) -> list[str]:
    """Distinct identifier keys among a query's words."""
    keys = (identifier_key(w) for w in _QUERY_WORD.findall(text))
    return list(dict.fromkeys(k for k in keys if k))


def correctable(word: str) -> bool:
    """Words worth a spelling lookup when the index lacks them: not numbers, codes or stop words."""
    return len(word) >= 4 and word.isalpha() and word not in STOP_WORDS
