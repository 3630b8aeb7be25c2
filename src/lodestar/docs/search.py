"""Ranked search over one corpus index: query building, spelling correction, page collapsing, snippets.

No query parser: the query string is analysed like the indexed text and every term is OR-ed across the
fields with query-time boosts, so any input (quotes, `AND`, `*`, `a:b`) is plain words and never a
syntax error. One searcher lives as long as the index: opening one costs more than a search.
"""

from __future__ import annotations

import heapq
import re
import threading
from array import array
from bisect import bisect_left
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from whoosh.codec.base import Automata
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, W3LeafMatcher, _lenfield
from whoosh.columns import NumericColumn
from whoosh.scoring import BM25F
from whoosh.util.numeric import byte_to_length

from lodestar.docs.analysis import analyzer, query_identifiers, query_terms, query_words
from lodestar.docs.index import OpenedIndex
from lodestar.docs.limits import DocsLimits
from lodestar.docs.lru import LRU

K1, B = 1.2, 0.75
FIELD_BOOSTS = {"title": 3.0, "headings": 2.0, "pathtext": 1.5, "body": 1.0, "code": 0.5}
# Pages in these folders retell the reference for learners (Mastra's docs ship a 100-page course): their scores
# are scaled down, so they follow the page they copy instead of crowding it out.
COPY_FOLDERS = frozenset("course courses tutorial tutorials example examples cookbook cookbooks".split())
COPY_FACTOR = 0.5
# A query of only common words ("what is this") lists the corpus's entry pages: these names first, then by depth.
ENTRY_NAMES = ("index", "readme", "overview", "introduction", "intro", "getting-started")
_ORDER_PREFIX = re.compile(r"^\d+[-_.]")  # 01-overview.md
SNIPPET_CHARS = 240
SNIPPET_SCAN_CHARS = 32_000  # analysed for one snippet at most
SNIPPET_SPANS = 200  # matches weighed for the best window
SNIPPET_PROBES = 64  # candidate matches a long body's text search may check before giving up
_CHUNK = 65_536  # a long body is searched in lowercased chunks of this size
_PROBE = 256  # characters analysed to confirm a candidate
_BYTE_LENGTHS = [byte_to_length(b) for b in range(256)]  # Whoosh stores field lengths as one byte

TermScores = tuple[array, array]  # section numbers ("i"), scores ("d")


@dataclass(slots=True)
class Match:
    path: str
    ordinal: int
    score: float
    body: str


@dataclass(slots=True)
class Matches:
    matches: list[Match]
    total: int
    terms: list[str]


class CorpusSearcher:
    """Scores queries term by term from a cache of per-term score maps.

    Whoosh scores postings in Python, about 4 microseconds each; a query over common words touches
    thousands. Docs queries reuse a small vocabulary, so each term's BM25F scores (all fields, boosts
    applied) are computed once and summed per query: the same ranking as an OR query, a tenth of the time.

    Memory per corpus is what the index holds (paths, field lengths, the spelling words) plus two bounded
    caches: term scores by postings held, spelling lookups by words. Stored fields are read per hit
    (8 microseconds each), and Whoosh's own per-term memo (`Searcher.idf`) is bypassed, so made-up words
    leave nothing behind.
    """

    def __init__(self, opened: OpenedIndex, limits: DocsLimits | None = None) -> None:
        limits = limits or DocsLimits()
        self.weighting = BM25F(B=B, K1=K1)
        self.searcher = opened.index.searcher(weighting=self.weighting)
        self.reader = self.searcher.reader()
        self.lock = threading.Lock()  # Whoosh searchers are not thread-safe
        # An entry weighs its postings plus one for itself.
        self.term_cache: LRU[TermScores] = LRU(limits.term_cache_entries, lambda scores: len(scores[0]) + 1)
        self.corrections: LRU[tuple[int, int, str] | None] = LRU(limits.spelling_cache_entries, lambda _: 1)
        self.spelling_words: list[str] | None = None  # read at the first lookup
        self.doc_paths: list[str] = list(self.reader.column_reader("path"))
        copies = {p for p in set(self.doc_paths) if COPY_FOLDERS.intersection(p.split("/")[:-1])}
        self.copies = {doc for doc, path in enumerate(self.doc_paths) if path in copies}
        self.entry_scores: dict[int, float] | None = None  # made at the first query of only common words
        self.field_lengths: dict[tuple[int, str], list[int]] = {}
        for leaf, _ in self.reader.leaf_readers():  # loaded now, on the loading thread, not by the first query
            for field in FIELD_BOOSTS:
                self._lengths(leaf, field)

    def close(self) -> None:
        self.searcher.close()

    def search(self, text: str, pages: int, path_prefix: str | None = None) -> Matches:
        """Best section per page for the top `pages` pages."""
        with self.lock:
            terms = query_terms(text)
            if terms:
                scores = self._score(terms)
                self._favour_definitions(scores, query_identifiers(text))
            else:
                scores = self._entry_pages() if query_words(text) else {}
            if path_prefix:
                paths = self.doc_paths
                scores = {d: s for d, s in scores.items() if paths[d].startswith(path_prefix)}
            return Matches(self._best_per_page(scores, pages), self._page_count(scores), terms)

    def _score(self, terms: list[str]) -> dict[int, float]:
        """Summed term scores times the squared share of query terms a section matches (coordination):
        on judged queries it lifts hit@5 from 0.80 to 0.93, since long questions otherwise rank sections
        that repeat one common word above those that match the question."""
        maps = sorted((self._term_scores(t) for t in terms), key=lambda m: len(m[0]), reverse=True)
        total = dict(zip(*maps[0], strict=True))
        if len(maps) == 1:
            return total
        matched = dict.fromkeys(total, 1)
        for docs, scores in maps[1:]:
            get, count = total.get, matched.get
            for doc, score in zip(docs, scores, strict=True):
                total[doc] = get(doc, 0.0) + score
                matched[doc] = count(doc, 0) + 1
        share = 1 / len(terms)
        return {doc: score * (matched[doc] * share) ** 2 for doc, score in total.items()}

    def _favour_definitions(self, scores: dict[int, float], keys: list[str]) -> None:
        """Lift the sections named by a code name of the query (`maxRetries`, `save-exact`, `AI_RetryError`)
        above the pages that only mention it, however long the section or often the others repeat the name:
        each name adds the top score over the query's names to a named section, which first takes its page's
        best score (a long options list scores low on its own)."""
        if not keys or not scores:
            return
        bonus = max(scores.values()) / len(keys)
        extra: dict[int, float] = {}
        for key in keys:
            for doc in self._postings("names", key):
                if doc in scores:
                    extra[doc] = extra.get(doc, 0.0) + bonus
        for doc, added in extra.items():
            scores[doc] = self._page_best(scores, doc) + added

    def _page_best(self, scores: dict[int, float], doc: int) -> float:
        """The best score among the sections of doc's page (they are stored next to each other)."""
        paths, path = self.doc_paths, self.doc_paths[doc]
        best, last = scores[doc], len(paths) - 1
        for step in (-1, 1):
            near = doc + step
            while 0 <= near <= last and paths[near] == path:
                best = max(best, scores.get(near, 0.0))
                near += step
        return best

    def _postings(self, field: str, term: str) -> Iterator[int]:
        """Live sections holding a term."""
        for leaf, offset in self.reader.leaf_readers():
            if (field, term) in leaf:
                deleted = leaf.deleted_docs_set
                for ids, _ in _posting_blocks(leaf, field, term):
                    yield from (doc + offset for doc in ids if not (deleted and doc in deleted))

    def _entry_pages(self) -> dict[int, float]:
        """First sections of every page, scored by how much each looks like a way into the corpus."""
        if self.entry_scores is None:
            first: dict[str, int] = {}
            for doc, path in enumerate(self.doc_paths):
                if path not in first and not self.reader.is_deleted(doc):
                    first[path] = doc
            ranked = _entry_order(list(first))
            self.entry_scores = {first[path]: 1 / (rank + 1) for rank, path in enumerate(ranked)}
        return dict(self.entry_scores)

    def _term_scores(self, term: str) -> TermScores:
        """(sections, scores) of one term in two arrays: 12 bytes a posting, where a dict takes 130."""
        cached = self.term_cache.get(term)
        if cached is not None:
            return cached
        scores: dict[int, float] = {}
        for field, boost in FIELD_BOOSTS.items():
            self._add_field_scores(scores, field, term, boost)
        for doc in self.copies.intersection(scores):
            scores[doc] *= COPY_FACTOR
        found = (array("i", scores), array("d", scores.values()))
        if scores:  # a word the index lacks costs a few term lookups to score again: not worth memory
            self.term_cache.put(term, found)
        return found

    def _add_field_scores(self, scores: dict[int, float], field: str, term: str, boost: float) -> None:
        """BM25F (Whoosh's formula and statistics) over raw posting blocks, skipping deleted sections."""
        leaves = [(leaf, offset) for leaf, offset in self.reader.leaf_readers() if (field, term) in leaf]
        if not leaves:
            return
        idf = self.weighting.idf(self.searcher, field, term) * boost  # not Searcher.idf: it memoises forever
        norm = K1 * B / (self.searcher.avg_field_length(field) or 1)
        base = K1 * (1 - B)
        get = scores.get
        for leaf, offset in leaves:
            lengths = self._lengths(leaf, field)
            deleted = leaf.deleted_docs_set
            for ids, weights in _posting_blocks(leaf, field, term):
                for doc, tf in zip(ids, weights, strict=True):
                    if deleted and doc in deleted:
                        continue
                    score = idf * tf * (K1 + 1) / (tf + base + norm * lengths[doc])
                    doc += offset
                    scores[doc] = get(doc, 0.0) + score

    def _lengths(self, leaf: Any, field: str) -> list[int]:
        key = (id(leaf), field)
        lengths = self.field_lengths.get(key)
        if lengths is None:
            # The whole length column at once: per-document lookups cost 60 ms on a 9,000-section corpus.
            column = leaf._perdoc._cached_reader(_lenfield(field), LENGTHS_COLUMN)
            lengths = [_BYTE_LENGTHS[b] for b in _length_bytes(column)] if column else [0] * leaf.doc_count_all()
            self.field_lengths[key] = lengths
        return lengths

    def _page_count(self, scores: dict[int, float]) -> int:
        paths = self.doc_paths
        return len({paths[doc] for doc in scores})

    def _best_per_page(self, scores: dict[int, float], pages: int) -> list[Match]:
        matches: list[Match] = []
        seen: set[str] = set()
        paths = self.doc_paths
        fetch = pages * 4
        ranked = heapq.nlargest(fetch, scores.items(), key=itemgetter(1))
        while True:
            for doc, score in ranked:
                if paths[doc] in seen:
                    continue
                seen.add(paths[doc])
                fields = self.searcher.stored_fields(doc)
                matches.append(Match(fields["path"], fields["ordinal"], score, fields.get("body", "")))
                if len(matches) >= pages:
                    return matches
            if fetch >= len(scores):
                return matches
            fetch *= 4  # one page filled the candidates: widen, skipping what was seen
            ranked = heapq.nlargest(fetch, scores.items(), key=itemgetter(1))[fetch // 4 :]

    def known(self, word: str) -> bool:
        with self.lock:
            return self._freq(word) > 0

    def closest(self, word: str) -> tuple[int, int, str] | None:
        """(edit distance, -frequency, word) of the indexed word nearest to an unknown one, from the words of
        the body field; tuples from several corpora compare to pick the best."""
        with self.lock:
            if word not in self.corrections:
                self.corrections.put(word, self._closest(word))
            return self.corrections.get(word)

    def _closest(self, word: str) -> tuple[int, int, str] | None:
        # Typos rarely touch the first letter; keeping it makes the lookup 5x cheaper.
        candidates = self._suggest(word, prefix=1) or self._suggest(word, prefix=0)
        return min(((edit_distance(word, c), -self._freq(c), c) for c in candidates), default=None)

    def _suggest(self, word: str, prefix: int) -> list[str]:
        """Whoosh's `Corrector.suggest(word, limit=8, maxdist=2, prefix)`: the 8 most frequent body words
        within 2 edits, found by walking its Levenshtein automaton over the spelling words held in memory.
        Whoosh walks them on disk, a binary search of the term file per step: 30 ms a word on Mastra's
        docs, 2.5 times this."""
        if self.spelling_words is None:
            self.spelling_words = list(self.reader.field_terms(self.reader.schema["body"].spelling_fieldname("body")))
        dfa = Automata.levenshtein_dfa(word, 2, prefix)
        found = Automata.find_matches(dfa, _WordCursor(self.spelling_words))
        freq = self.reader.frequency
        # Whoosh's ranking, ties to the later word: a higher body frequency is a higher score.
        ranked = heapq.nlargest(8, ((-(2 + 0.5 / (freq("body", w) or 1)), w) for w in found))
        return [w for _, w in sorted(ranked, key=lambda item: (-item[0], item[1]))]

    def _freq(self, word: str) -> int:
        term = next((t.text for t in analyzer()(word, mode="query")), word)
        return sum(self.reader.doc_frequency(field, term) for field in FIELD_BOOSTS)


def _entry_order(paths: list[str]) -> list[str]:
    """Pages named like an entry (index, overview...) first, then the shallower, then those heading a family of
    pages (`npm.md` before `npm-install.md` and its siblings), then by path."""
    stems = {path: _ORDER_PREFIX.sub("", path.rsplit("/", 1)[-1].rsplit(".", 1)[0].lower()) for path in paths}
    families = Counter(stem.split("-", 1)[0] for stem in stems.values() if "-" in stem)
    return sorted(paths, key=lambda p: (stems[p] not in ENTRY_NAMES, p.count("/"), -families[stems[p]], p))


class _WordCursor:
    """The part of Whoosh's term cursor that `Automata.find_matches` uses, over a sorted word list."""

    def __init__(self, words: list[str]) -> None:
        self.words, self.at = words, 0

    def text(self) -> str | None:
        return self.words[self.at] if self.at < len(self.words) else None

    def find(self, word: str) -> None:
        self.at = bisect_left(self.words, word, self.at)


def _length_bytes(column: Any) -> Sequence[int]:
    """A length column in one read: Whoosh's `load` unpacks it byte by byte, which took 40 ms of opening the
    Mastra docs (on the way to a server's first answer). Sections past the column's end have length 0, as in `load`."""
    if isinstance(column, NumericColumn.Reader) and column._typecode == "B":
        return column._dbfile.get(column._basepos, column._count) + bytes(column._doccount - column._count)
    return column.load()


def _posting_blocks(leaf: Any, field: str, term: str) -> Iterator[tuple[Sequence[int], Sequence[float]]]:
    """(doc ids, term frequencies) a block at a time: a matcher's per-posting calls cost 8x more."""
    matcher = leaf._terms.matcher(field, leaf._text_to_bytes(field, term), leaf.schema[field].format)
    if isinstance(matcher, W3LeafMatcher):
        while matcher.is_active():
            matcher._read_ids()
            matcher._read_weights()
            yield matcher._ids, matcher._weights
            matcher._next_block()
        return
    ids, weights = [], []
    while matcher.is_active():  # a term in one document is stored inline, not in blocks
        ids.append(matcher.id())
        weights.append(matcher.weight())
        matcher.next()
    yield ids, weights


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein (optimal string alignment): a swapped pair of letters is one typo."""
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i]
        for j, cb in enumerate(b, 1):
            cost = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (ca != cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                cost = min(cost, prev2[j - 2] + 1)
            row.append(cost)
        prev2, prev = prev, row
    return prev[-1]


def snippet(body: str, terms: list[str], fallback: str = "") -> str:
    """The window of the body with the most distinct query terms, matches in **bold**.

    The analyzer (a few microseconds a word) runs over at most SNIPPET_SCAN_CHARS: a whole ordinary section,
    or in a longer one the text from the first match, found by a plain text search for the terms' stems."""
    wanted = set(terms)
    begin = 0 if len(body) <= SNIPPET_SCAN_CHARS else _first_match(body, wanted)
    spans = [] if begin is None else _spans(body, wanted, begin)
    if not spans:
        return _shorten(body[: SNIPPET_CHARS * 4] or fallback)
    start = _best_window(body, spans[:SNIPPET_SPANS])
    end = _word_end(body, start + SNIPPET_CHARS)
    window = _merge([(s, e) for s, e, _ in spans if s >= start and e <= end])
    out, cursor = [], start
    for s, e in window:
        out.append(body[cursor:s] + "**" + body[s:e] + "**")
        cursor = e
    out.append(body[cursor:end])
    text = "".join(out).strip()
    return ("..." if start > 0 else "") + text + ("..." if end < len(body) else "")


def _spans(body: str, wanted: set[str], begin: int) -> list[tuple[int, int, str]]:
    """(start, end, term) of the matches from `begin` on: the first SNIPPET_SPANS and any within a window of
    the last of them, all a snippet can show."""
    spans: list[tuple[int, int, str]] = []
    stop = len(body)
    for token in analyzer()(body[begin : begin + SNIPPET_SCAN_CHARS], chars=True, start_char=begin):
        if token.startchar >= stop:
            break
        if token.text in wanted:
            spans.append((token.startchar, token.endchar, token.text))
            if len(spans) == SNIPPET_SPANS:
                stop = token.startchar + SNIPPET_CHARS
    return spans


def _first_match(body: str, wanted: set[str]) -> int | None:
    """Where a long body's first match begins (a little before, at a space), or None. Candidates are places
    where a term's stem, less its last letter (happi from happy, hope from hoping), occurs in the lowercased
    text; the analyzer confirms each on a short stretch, for at most SNIPPET_PROBES of them."""
    stems = [term if len(term) <= 2 else term[:-1] for term in wanted]
    probes = 0
    for base in range(0, len(body), _CHUNK):
        chunk = body[base : base + _CHUNK + _PROBE]
        lowered = chunk.lower()  # one lowercased copy per chunk, not of the body
        if len(lowered) != len(chunk):  # a letter such as İ lowercases to two: offsets would drift
            lowered = "".join(low if len(low := char.lower()) == 1 else char for char in chunk)
        pos = 0
        while found := [i for stem in stems if (i := lowered.find(stem, pos, _CHUNK + len(stem))) != -1]:
            if probes == SNIPPET_PROBES:
                return None
            hit = base + min(found)
            space = body.rfind(" ", max(0, hit - 40), hit)
            begin = space + 1 if space != -1 else max(0, hit - 40)
            if any(t.text in wanted for t in analyzer()(body[begin : begin + _PROBE])):
                return begin
            probes += 1
            pos = begin + _PROBE - 40 - base  # the next stretch overlaps this one by a word
    return None


def _best_window(body: str, spans: list[tuple[int, int, str]]) -> int:
    """Start of the window holding the most distinct terms, a little before its first match, at a word."""
    best_start, best_count = spans[0][0], 0
    starts = [s for s, _, _ in spans]  # in order: the analyzer reads left to right
    for i, start in enumerate(starts):
        distinct = {text for _, _, text in spans[i : bisect_left(starts, start + SNIPPET_CHARS - 20, i)]}
        if len(distinct) > best_count:
            best_start, best_count = start, len(distinct)
    start = max(0, best_start - 40)
    space = body.find(" ", start, best_start) if start else -1
    return space + 1 if space != -1 else start


def _word_end(body: str, end: int) -> int:
    if end >= len(body):
        return len(body)
    space = body.rfind(" ", end - 40, end)
    return space if space != -1 else end


def _merge(spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[tuple[int, int]] = []
    for s, e in sorted(spans):
        if merged and s <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(e, merged[-1][1]))
        else:
            merged.append((s, e))
    return merged


def _shorten(text: str) -> str:
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= SNIPPET_CHARS else text[:SNIPPET_CHARS].rsplit(" ", 1)[0] + "..."
