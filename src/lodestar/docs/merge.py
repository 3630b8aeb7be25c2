"""One result list from several corpora: a user's own corpora before Lodestar's bundled pages, and one
hit for a page that several corpora hold in near-identical form (two versions of one package, say)."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lodestar.docs.search import Match
    from lodestar.docs.service import Corpus

BUNDLED_SHARE = 4  # with a user's corpora searched too, a user's hit comes first and at most one in four is bundled
SAME_PAGE_RATIO = 0.9  # sections this similar (difflib ratio on their normalised text) count as one page
COMPARED_CHARS = 4000  # how much of two sections is compared


@dataclass(slots=True)
class Ranked:
    corpus: Corpus
    match: Match
    title: str
    also_in: list[str] = field(default_factory=list)


def merge(hits: Sequence[Ranked], bundled: str, wanted: int) -> list[Ranked]:
    """The first `wanted` hits, best first; the same prefix for any larger `wanted`, so offsets page evenly."""
    ordered = sorted(hits, key=lambda h: -h.match.score)
    if any(h.corpus.name != bundled for h in ordered):
        ordered = _bundled_last(ordered, bundled)
    return _collapse(ordered, wanted)


def _bundled_last(ordered: list[Ranked], bundled: str) -> list[Ranked]:
    """Keeps score order, except that a bundled hit waits while it would come first or make more than one in
    BUNDLED_SHARE: the user added their corpora to search them."""
    ours = deque(h for h in ordered if h.corpus.name == bundled)
    theirs = deque(h for h in ordered if h.corpus.name != bundled)
    out: list[Ranked] = []
    taken = 0
    while ours and theirs:
        allowed = taken < math.ceil(len(out) / BUNDLED_SHARE)
        if allowed and ours[0].match.score >= theirs[0].match.score:
            out.append(ours.popleft())
            taken += 1
        else:
            out.append(theirs.popleft())
    return [*out, *ours, *theirs]


def _collapse(ordered: list[Ranked], wanted: int) -> list[Ranked]:
    """A hit whose page a better hit of another corpus already shows is folded into it (named in also_in)."""
    kept: list[Ranked] = []
    for hit in ordered:
        same = next((k for k in kept if _same_page(k, hit)), None)
        if same is not None:
            same.also_in.append(hit.corpus.name)
        elif len(kept) < wanted:
            kept.append(hit)
    return kept


def _same_page(a: Ranked, b: Ranked) -> bool:
    if a.corpus.name == b.corpus.name or b.corpus.name in a.also_in:
        return False
    if (a.match.path, a.match.ordinal) != (b.match.path, b.match.ordinal) and a.title != b.title:
        return False
    x, y = _normalised(a.match.body), _normalised(b.match.body)
    if x == y:
        return True
    matcher = SequenceMatcher(None, x, y)
    return matcher.real_quick_ratio() >= SAME_PAGE_RATIO and matcher.ratio() >= SAME_PAGE_RATIO


def _normalised(text: str) -> str:
    return " ".join(text[:COMPARED_CHARS].split())
