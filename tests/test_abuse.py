"""Hostile or unlucky input to the docs service: calls off the event loop, bounded queries, visible failures."""

from __future__ import annotations

import random
import shutil
import string
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from conftest import write_corpus
from mcp import Client
from test_http import health_once_loaded, mcp_client, start_server, stop

from lodestar.docs import render
from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.limits import DocsLimits, env_var
from lodestar.docs.models import SearchResult
from lodestar.docs.search import CorpusSearcher
from lodestar.docs.service import DocsService, bundled_root
from lodestar.docs.sources import resolve
from lodestar.server.app import build_server
from lodestar.settings import Settings

pytestmark = pytest.mark.anyio

WORDS = " ".join("".join(random.Random(i).choices(string.ascii_lowercase, k=8)) for i in range(1_000))
HOSTILE = {"long word": "x" * 20_000, "1,000 words": WORDS, "500 KB": "background tasks " * 30_000}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("abuse") / "example-docs")


@pytest.fixture
def service(corpus: Path, cache_dir: Path) -> Iterator[DocsService]:
    svc = DocsService([f"example={corpus}"], cache_dir, bundled=False)
    svc.load()
    yield svc
    svc.close()


class BlockingSearch(DocsService):
    """A search that holds its worker thread until released, as a slow search on a big corpus would."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.entered, self.release = threading.Event(), threading.Event()

    def search(self, *args: Any, **kwargs: Any) -> SearchResult:
        self.entered.set()
        self.release.wait(timeout=10)  # on the event loop, this would hold every call for 10 s
        return super().search(*args, **kwargs)


async def test_a_slow_search_does_not_hold_up_other_calls(corpus: Path, cache_dir: Path) -> None:
    docs = BlockingSearch([f"example={corpus}"], cache_dir, bundled=False)
    docs.load()
    server = build_server(Settings(cache_dir=cache_dir), docs)
    async with Client(server) as client, anyio.create_task_group() as group:
        searched: list[Any] = []

        async def slow_search() -> None:
            searched.append(await client.call_tool("search_docs", {"query": "threads"}))

        group.start_soon(slow_search)
        await anyio.to_thread.run_sync(docs.entered.wait)
        corpora = await client.call_tool("list_corpora", {})  # answered while the search holds its thread
        assert corpora.structured_content["corpora"][0]["name"] == "example"
        assert not searched
        docs.release.set()
    assert searched[0].structured_content["hits"][0]["path"] == "docs/agents/memory.md"


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_queries_are_bounded_and_said_so(service: DocsService, name: str) -> None:
    result = service.search(HOSTILE[name])
    limits = service.limits
    assert len(result.query) <= limits.max_query_chars
    assert result.notes, result
    assert "LODESTAR_MAX_QUERY" in result.notes[0]
    assert "Note: " in render.render_search(result)


def test_a_cut_query_ends_at_a_word(service: DocsService) -> None:
    result = service.search("background tasks " * 100)
    assert set(result.query.split()) == {"background", "tasks"}  # no word cut in half
    assert result.hits[0].path == "docs/overview.md"


def test_words_past_the_bound_are_not_searched(corpus: Path, cache_dir: Path) -> None:
    docs = DocsService([f"example={corpus}"], cache_dir, bundled=False, limits=DocsLimits(max_query_words=2))
    docs.load()
    result = docs.search("quickstart wizard threads")
    assert result.notes == ["only the first 2 of 3 words were searched (LODESTAR_MAX_QUERY_WORDS)"]
    assert {hit.path for hit in result.hits} == {"guides/quickstart.mdx"}


def test_spelling_lookups_per_query_are_bounded(service: DocsService, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    closest = CorpusSearcher.closest

    def counting(self: CorpusSearcher, word: str) -> tuple[int, int, str] | None:
        looked_up.append(word)
        return closest(self, word)

    monkeypatch.setattr(CorpusSearcher, "closest", counting)
    service.search(WORDS)
    assert len(looked_up) == service.limits.max_spelling_lookups
    looked_up.clear()
    result = service.search("y" * 200 + " threds")
    assert looked_up == ["threds"]  # the long word is not spell-checked
    assert result.suggestion is not None and result.suggestion.endswith(" threads")


def test_limits_come_from_the_environment() -> None:
    assert DocsLimits.from_env({"LODESTAR_MAX_QUERY_WORDS": "5"}).max_query_words == 5
    with pytest.raises(Exception, match="LODESTAR_MAX_QUERY_WORDS='many'"):
        DocsLimits.from_env({"LODESTAR_MAX_QUERY_WORDS": "many"})


def test_a_failed_corpus_is_listed_and_named_by_searches(corpus: Path, cache_dir: Path, tmp_path: Path) -> None:
    docs = DocsService([f"example={corpus}", f"gone={tmp_path / 'missing'}"], cache_dir, bundled=False)
    docs.load()
    listed = {c.name: c for c in docs.list_corpora().corpora}
    assert listed["example"].status == "ready" and listed["example"].error is None
    assert listed["gone"].status == "failed" and "does not exist" in (listed["gone"].error or "")
    assert "gone: FAILED: " in render.render_corpora(docs.list_corpora())
    result = docs.search("zzzz unmatched")
    assert result.unavailable == ["gone"]
    assert "corpus gone was not searched" in result.notes[0]
    assert "No results for 'zzzz unmatched' in the corpora that are loaded" in render.render_search(result)
    assert docs.search("threads", corpus="example").unavailable == []


def test_paging_past_the_last_hit_says_so(service: DocsService) -> None:
    result = service.search("threads", offset=40)
    assert result.hits == [] and result.total == 1
    assert result.notes == ["offset 40 is past the last hit: 1 page matches; use a smaller offset"]
    assert service.search("threads", offset=1).notes == [
        "offset 1 is past the last hit: 1 page matches; use a smaller offset"
    ]
    assert service.search("zzzz", offset=1).notes == []  # nothing matches: no hits is the whole answer


@pytest.fixture(scope="module")
def http_server(corpus: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    server = start_server(["--http", "--port", "0", "--corpus", f"example={corpus}"], tmp_path_factory.mktemp("c"))
    yield server
    stop(server.proc)


async def test_hostile_queries_over_http_leave_health_answering(http_server: Any) -> None:
    """Each hostile search answers, and /health keeps answering on another connection meanwhile."""
    http, client = mcp_client(http_server.url)
    probes: list[int] = []
    async with http, client, httpx.AsyncClient(base_url=http_server.base) as probe:
        done = anyio.Event()

        async def probe_health() -> None:
            while not done.is_set():
                probes.append((await probe.get("/health", timeout=5)).status_code)

        async with anyio.create_task_group() as group:
            group.start_soon(probe_health)
            for query in HOSTILE.values():
                with anyio.fail_after(30):  # a guard against a hang, not a speed target (bench_abuse.py)
                    result = await client.call_tool("search_docs", {"query": query})
                assert not result.is_error and result.structured_content["notes"]
            done.set()
    assert probes and set(probes) == {200}


def test_health_is_ok_when_every_corpus_loaded(http_server: Any) -> None:
    assert health_once_loaded(http_server.base) == {"status": "ok", "corpora": 2}  # the bundled one too


def test_health_is_degraded_naming_a_failed_corpus(corpus: Path, tmp_path: Path) -> None:
    args = ["--http", "--port", "0", "--corpus", f"example={corpus}", "--corpus", f"gone={tmp_path / 'missing'}"]
    server = start_server(args, tmp_path / "cache")
    try:
        report = health_once_loaded(server.base)
    finally:
        stop(server.proc)
    assert report["status"] == "degraded" and report["failed"] == ["gone"]
    assert report["reason"].startswith("corpus gone failed to load: ") and "does not exist" in report["reason"]


def test_the_text_body_repeats_a_long_query_shortened(service: DocsService) -> None:
    result = service.search("background " * 90)
    text = render.render_search(result)
    assert result.query in result.model_dump_json() and len(result.query) > 500
    assert " for 'background background" in text and result.query not in text


def test_every_limit_is_documented() -> None:
    page = (bundled_root() / "reference" / "configuration.md").read_text("utf-8")
    missing = [env_var(name) for name in DocsLimits.model_fields if f"`{env_var(name)}`" not in page]
    assert missing == []


def test_a_failed_refresh_keeps_the_corpus_in_service(corpus: Path, cache_dir: Path, tmp_path: Path) -> None:
    root = shutil.copytree(corpus, tmp_path / "docs")
    docs = DocsService([f"example={root}"], cache_dir, bundled=False)
    docs.load()
    for page in root.rglob("*.md*"):
        page.rename(page.with_suffix(".txt"))
    with pytest.raises(DocsError, match=r"refreshing example failed: .*no \.md or \.mdx files"):
        docs.refresh("example")
    assert docs.failures == {} and docs.health().status == "ok"  # a failed refresh is not a failed corpus
    assert [c.status for c in docs.list_corpora().corpora] == ["ready"]
    result = docs.search("threads")
    assert result.unavailable == [] and result.hits[0].path == "docs/agents/memory.md"


def test_an_unexpected_error_in_one_spec_fails_that_corpus_only(corpus: Path, cache_dir: Path) -> None:
    docs = DocsService([f"example={corpus}", "bad=~no-such-user-here/docs"], cache_dir, bundled=False)
    docs.load()
    assert list(docs.corpora) == ["example"]
    assert docs.failures["bad"].startswith("unexpected RuntimeError: ")
    assert docs.health().status == "degraded"


def test_a_page_holding_many_matching_sections_does_not_shorten_the_page_of_hits(
    cache_dir: Path, tmp_path: Path
) -> None:
    big = "# Zeta handbook\n\n" + "".join(f"## Zeta part {i}\n\nZeta zeta zeta details {i}.\n\n" for i in range(60))
    pages = {"big.md": big} | {f"small{i}.md": f"# Small {i}\n\nMentions zeta once.\n" for i in range(5)}
    docs = DocsService([f"many={write_corpus(tmp_path / 'many', pages)}"], cache_dir, bundled=False)
    docs.load()
    for limit in (1, 2, 3, 6):
        result = docs.search("zeta", limit=limit)
        assert len(result.hits) == limit and result.total == 6
        assert len({hit.path for hit in result.hits}) == limit
    assert [h.path for h in docs.search("zeta", limit=1, offset=1).hits] == [docs.search("zeta", limit=2).hits[1].path]


def test_a_version_spec_built_to_backtrack_is_refused_at_once(cache_dir: Path) -> None:
    spec = "npm:pkg@1" + "      1" * 40 + "!"
    with pytest.raises(CorpusError, match="invalid npm package spec"):
        resolve(spec, cache_dir)  # exponential before: 22 s at 10 repeats
