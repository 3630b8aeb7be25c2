"""The shared analyzer: identifiers whole and split, exact character offsets, question words, stemming."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_corpus

from lodestar.docs.analysis import QUESTION_WORDS, analyzer, identifier_key, query_terms, query_words
from lodestar.docs.service import DocsService


def terms(text: str) -> list[str]:
    return [t.text for t in analyzer()(text)]


def stem(word: str) -> str:
    """The index term of a lowercase word (the whole-word term for `max_tokens`), whatever the stemmer."""
    return terms(word)[0]


@pytest.mark.parametrize(
    ("identifier", "parts"),
    [
        ("PIIDetector", ["pii", "detector"]),
        ("LibSQLStore", ["lib", "sql", "store"]),
        ("streamUntilIdle", ["stream", "until", "idle"]),
        ("max_tokens", ["max", "tokens"]),
        ("HTTPServer", ["http", "server"]),
        ("getURLForPath", ["get", "url", "for", "path"]),
    ],
)
def test_identifiers_are_indexed_whole_and_split(identifier: str, parts: list[str]) -> None:
    tokens = terms(identifier)
    assert tokens[0] == stem(identifier.lower())
    assert tokens[1:] == [stem(p) for p in parts if p != "for"]  # "for" is a stop word


def test_plain_words_are_not_split() -> None:
    assert terms("Memory threads Agents") == [stem("memory"), stem("thread"), stem("agent")]


def test_identifier_parts_share_the_position_of_the_whole_word() -> None:
    tokens = [(t.text, t.pos) for t in analyzer()("call streamUntilIdle now", positions=True)]
    assert tokens == [
        ("call", 0),
        (stem("streamuntilidle"), 1),
        ("stream", 1),
        ("until", 1),
        (stem("idle"), 1),
        ("now", 2),
    ]


@pytest.mark.parametrize(
    ("text", "originals"),
    [
        ("Use PIIDetector", ["Use", "PIIDetector", "PII", "Detector"]),
        ("a LibSQLStore!", ["LibSQLStore", "Lib", "SQL", "Store"]),
        ("set max_tokens", ["set", "max_tokens", "max", "tokens"]),
        ("x  streamUntilIdle", ["x", "streamUntilIdle", "stream", "Until", "Idle"]),
    ],
)
def test_char_offsets_point_at_the_original_text(text: str, originals: list[str]) -> None:
    tokens = [(t.startchar, t.endchar, t.text) for t in analyzer()(text, chars=True)]
    assert [text[start:end] for start, end, _ in tokens] == originals
    assert [term for _, _, term in tokens] == [stem(o.lower()) for o in originals]


def test_char_offsets_honour_start_char() -> None:
    text = "The streamUntilIdle method"
    for token in analyzer()(text, chars=True, start_char=100):
        original = text[token.startchar - 100 : token.endchar - 100]
        assert terms(original)[0] == token.text


def test_stop_words_are_dropped_or_flagged() -> None:
    assert terms("the agent and the tool") == ["agent", "tool"]
    flagged = [(t.text, t.stopped) for t in analyzer()("the agent", removestops=False)]
    assert flagged == [("the", True), ("agent", False)]


def test_question_words_are_dropped_from_queries() -> None:
    assert query_terms("How do I run a tool in the background?") == ["run", "tool", "background"]
    assert query_words("What is the maxSteps option?") == ["maxSteps", "option"]


def test_a_query_of_only_common_words_keeps_its_words_but_has_no_terms() -> None:
    """The searcher lists the corpus's entry pages for it (test_ranking)."""
    assert query_words("how do I") == ["how", "do", "I"]
    assert query_words("what is this") == ["what", "is", "this"]
    assert query_terms("How do I?") == query_terms("what is it") == query_terms("the and or") == []


def test_query_words_keep_dotted_and_hyphenated_names_whole() -> None:
    assert query_words("How do I set --save-exact or call run.resume()?") == ["set", "save-exact", "call", "run.resume"]
    assert query_terms("save-exact") == ["save", "exact"]


@pytest.mark.parametrize(
    ("word", "key"),
    [
        ("save-exact", "save-exact"),
        ("--save-exact", "save-exact"),
        ("`maxRetries`", "maxRetries"),
        ("Agent.generate()", "Agent.generate"),
        ("AI_RetryError", "AI_RetryError"),
        ("PIIDetector", "PIIDetector"),
        ("_auth", "_auth"),
        ("memory", None),
        ("RAG", None),
        ("v1", None),
        ("Working memory", None),
    ],
)
def test_identifier_keys_are_exact_code_names(word: str, key: str | None) -> None:
    assert identifier_key(word) == key


def test_question_words_are_lowercase_words() -> None:
    assert all(word == word.lower() and word.isalpha() for word in QUESTION_WORDS)
    assert {"how", "what", "where", "why", "i"} <= QUESTION_WORDS


def test_query_terms_are_distinct_and_match_the_indexed_identifier() -> None:
    assert query_terms("stream stream until idle") == ["stream", "until", stem("idle")]
    assert set(query_terms("stream until idle")) <= set(terms("streamUntilIdle"))
    assert query_terms("streamUntilIdle")[0] == terms("streamUntilIdle")[0]


@pytest.mark.parametrize(
    ("plural", "singular"),
    [("threads", "thread"), ("tasks", "task"), ("indexes", "index"), ("queries", "query"), ("Agents", "agent")],
)
def test_stemming_makes_plurals_match(plural: str, singular: str) -> None:
    assert query_terms(plural) == query_terms(singular)


@pytest.mark.parametrize(("inflected", "base"), [("running", "run"), ("stopped", "stop"), ("planned", "plan")])
def test_stemming_matches_doubled_consonant_forms(inflected: str, base: str) -> None:
    """Regression: whoosh.lang.porter (used until 6bf28e2) left 'running' as 'runn' and 'stopped' as 'stopp'."""
    assert query_terms(inflected) == query_terms(base)


def test_non_ascii_identifiers_split_at_case_changes() -> None:
    """Regression (fixed in b5bfea5): ASCII-only classes cut accented letters out of identifier parts."""
    assert terms("naïveCase")[1:] == [terms("naïve")[0], "case"]


def test_analysis_drives_real_search(tmp_path: Path) -> None:
    pages = {
        "a.md": "# Redaction\n\nThe `PIIDetector` processor redacts values.\n",
        "b.md": "# Storage\n\nUse `LibSQLStore` for local storage.\n",
        "c.md": "# Limits\n\nSet `max_tokens` to bound output.\n",
        "d.md": "# Running\n\nCall `streamUntilIdle` to wait for background threads.\n",
    }
    root = write_corpus(tmp_path / "ids", pages)
    service = DocsService([str(root)], tmp_path / "cache", bundled=False)
    service.load()
    try:
        for query, path in [
            ("PIIDetector", "a.md"),
            ("pii detector", "a.md"),
            ("libsql store", "b.md"),
            ("LibSQLStore", "b.md"),
            ("max tokens", "c.md"),
            ("max_tokens", "c.md"),
            ("stream until idle", "d.md"),
            ("thread", "d.md"),
            ("How do I redact a value?", "a.md"),
        ]:
            hits = service.search(query).hits
            assert hits, query
            assert hits[0].path == path, query
    finally:
        service.close()
