"""Every cache a long-lived corpus searcher fills per distinct word has a bound that evicts.

Real Whoosh indexes from small corpora; assertions are on cache sizes, never on RSS or time.
"""

from __future__ import annotations

import itertools
import string
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_corpus

from lodestar.docs import analysis
from lodestar.docs.analysis import WORD_CACHE_SIZE, analyzer, query_terms
from lodestar.docs.index import open_index
from lodestar.docs.limits import DocsLimits
from lodestar.docs.lru import LRU
from lodestar.docs.search import CorpusSearcher
from lodestar.docs.service import DocsService
from lodestar.docs.sources import CorpusSource

LIMITS = DocsLimits(term_cache_entries=1_000, spelling_cache_entries=64)
# 200 made-up words, each on every one of 20 one-section pages: 20 postings a term, so 1,000 postings hold ~47 terms.
WORDS = ["zq" + "".join(letters) for letters in itertools.product("bcdfgh", repeat=3)][:200]
PAGES = {f"docs/page{i}.md": f"# Page {i}\n\n{' '.join(WORDS)}\n" for i in range(20)}


def made_up_words(length: int = 9) -> Iterator[str]:
    """Distinct letter strings no corpus here contains."""
    for letters in itertools.product(string.ascii_lowercase, repeat=4):
        yield "x" + "".join(letters) + "y" * (length - 5)


@pytest.fixture
def searcher(tmp_path: Path, cache_dir: Path) -> Iterator[CorpusSearcher]:
    root = write_corpus(tmp_path / "words", PAGES)
    opened = open_index(CorpusSource(name="words", source=str(root), root=root), cache_dir)
    searcher = CorpusSearcher(opened, LIMITS)
    yield searcher
    searcher.close()


def test_term_cache_evicts_by_postings_held(searcher: CorpusSearcher) -> None:
    for word in WORDS:
        assert searcher.search(word, 5).total == 20
    cache = searcher.term_cache
    assert cache.total == sum(len(docs) + 1 for docs, _ in cache.entries.values())
    assert 1_000 - 21 < cache.total <= 1_000
    assert len(cache) == 1_000 // 21
    assert list(cache.entries) == [query_terms(w)[0] for w in WORDS[-len(cache) :]]  # the newest, oldest first


def test_unknown_words_leave_nothing_in_the_term_cache_or_whoosh(searcher: CorpusSearcher) -> None:
    for word in itertools.islice(made_up_words(), 2_000):
        assert searcher.search(word, 5).total == 0
    assert len(searcher.term_cache) == 0
    assert searcher.searcher._idf_cache == {}  # Whoosh's memo would hold five entries per word
    searcher.search(WORDS[0], 5)
    assert len(searcher.term_cache) == 1 and searcher.searcher._idf_cache == {}


def test_corrections_cache_keeps_the_newest_lookups(searcher: CorpusSearcher) -> None:
    words = list(itertools.islice(made_up_words(), 200))
    for word in words:
        searcher.closest(word)
    assert len(searcher.corrections) == 64
    assert words[0] not in searcher.corrections and words[-1] in searcher.corrections
    found = searcher.closest("zqbcdk")
    assert found is not None and found[2] in WORDS and found == searcher._closest("zqbcdk")
    assert "zqbcdk" in searcher.corrections


def test_spelling_walk_suggests_what_whoosh_does(searcher: CorpusSearcher) -> None:
    corrector = searcher.searcher.corrector("body")
    for word in ["zqbcx", "zqdcb", "qzbcd", "zqbbbb", "zqhhh", "abcdef", "zq"]:
        for prefix in (0, 1):
            assert searcher._suggest(word, prefix) == corrector.suggest(word, limit=8, maxdist=2, prefix=prefix)


def test_service_search_of_made_up_words_is_bounded(tmp_path: Path, cache_dir: Path) -> None:
    """Through DocsService.search, which also looks up spelling corrections."""
    root = write_corpus(tmp_path / "words", PAGES)
    service = DocsService([f"words={root}"], cache_dir, bundled=False, limits=LIMITS)
    service.load()
    searcher = service.corpora["words"].searcher
    try:
        words = made_up_words()
        for size in itertools.islice(itertools.cycle([1, 2, 3]), 150):
            service.search(" ".join(itertools.islice(words, size)))
        assert len(searcher.term_cache) == 0 and searcher.searcher._idf_cache == {}
        assert len(searcher.corrections) == 64
        assert service.search("zqbcdk").suggestion in WORDS
    finally:
        service.close()


def test_stemming_and_splitting_caches_are_lru_bounded() -> None:
    analysis._stem.cache_clear()
    analysis._parts.cache_clear()
    words = list(itertools.islice(made_up_words(), WORD_CACHE_SIZE + 100))
    for word in words:
        analysis._stem(word)
        assert analysis._parts(word) == ()
        assert len(analysis._parts(word.upper() + "Part")) == 2
    assert analysis._stem.cache_info().currsize == WORD_CACHE_SIZE
    assert analysis._parts.cache_info().currsize == WORD_CACHE_SIZE
    assert analysis._parts.cache_info().misses == 2 * len(words)
    analysis._stem(words[0])  # the oldest word was evicted: computed again
    assert analysis._stem.cache_info().misses == len(words) + 1
    assert [t.text for t in analyzer()("streamUntilIdle")] == ["streamuntilidl", "stream", "until", "idl"]


def test_query_words_do_not_enter_the_word_caches(searcher: CorpusSearcher) -> None:
    analysis._stem.cache_clear()
    analysis._parts.cache_clear()
    for word in itertools.islice(made_up_words(), 100):
        assert query_terms(f"{word} {word.upper()}Part")[::2] == [analysis.stem(word), "part"]
        assert not searcher.known(word)
        searcher.search(f"{word} zqbcd", 5)
    assert analysis._stem.cache_info().currsize == analysis._parts.cache_info().currsize == 0
    list(analyzer()("indexedWords"))  # index builds and snippets do use them
    assert analysis._stem.cache_info().currsize == 3 and analysis._parts.cache_info().currsize == 1


def test_lru_replacing_an_entry_reweighs_it_and_the_newest_always_stays() -> None:
    cache: LRU[list[int]] = LRU(10, len)
    cache.put("a", [1, 2, 3])
    cache.put("a", [1])
    assert cache.total == 1
    cache.put("b", list(range(50)))
    assert list(cache.entries) == ["b"] and cache.total == 50
    assert cache.get("a") is None and cache.get("b") == list(range(50))
