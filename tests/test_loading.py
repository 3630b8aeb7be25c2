"""Corpora that take long to load: listed while loading, never holding up calls to the ready ones, waited
for with progress by the calls that need them; npm's own reason for a failure reaches the user."""

from __future__ import annotations

import json
import os
import sys
import threading
from pathlib import Path

import anyio
import pytest
from conftest import make_tgz, npm_on_path, write_corpus
from mcp.types import TextContent
from test_stdio import connect

from lodestar.docs.errors import CorpusLoading, DocsError
from lodestar.docs.service import DocsService

pytestmark = pytest.mark.anyio

# An npm that packs a local tarball once something is written to its gate (a FIFO): the test decides when
# the fetch ends.
GATED_NPM = """#!{python}
import json, shutil, sys
from pathlib import Path

here = Path(__file__).parent
with open(here / "gate") as gate:
    gate.read()
destination = sys.argv[sys.argv.index("--pack-destination") + 1]
shutil.copy(here / "package.tgz", Path(destination) / "pkg-1.2.3.tgz")
print(json.dumps([{{"name": "pkg", "version": "1.2.3", "filename": "pkg-1.2.3.tgz"}}]))
"""

NPM_404 = """#!/bin/sh
cat <<'JSON'
{
  "error": {
    "code": "E404",
    "summary": "Not Found - GET https://registry.example/nopkg",
    "detail": "The requested resource 'nopkg@*' could not be found or you do not have permission to access it.\\n\\n\
Note that you can also install from a\\ntarball, folder, http url, or git url."
  }
}
JSON
echo "npm error code E404" >&2
echo "npm error A complete log of this run can be found in: /tmp/x.log" >&2
exit 1
"""


@pytest.fixture
def gated_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The gate of an npm that waits on it; open it for writing to let the fetch finish."""
    bin_dir = npm_on_path(tmp_path, monkeypatch, GATED_NPM.format(python=sys.executable))
    make_tgz(bin_dir / "package.tgz", "pkg", "1.2.3")
    os.mkfifo(bin_dir / "gate")
    return bin_dir / "gate"


def release(gate: Path) -> None:
    with open(gate, "w") as fifo:
        fifo.write("go")


def test_a_fetching_corpus_is_listed_and_searches_go_on_without_it(gated_npm: Path, cache_dir: Path) -> None:
    docs = DocsService(["slow=npm:pkg@1.2.3"], cache_dir)
    docs.load_in_background()
    with docs.changed:
        assert docs.changed.wait_for(lambda: "slow" in docs.loading and docs.loading["slow"].stage == "fetching", 30)

    listed = {c.name: c for c in docs.list_corpora().corpora}
    assert (listed["lodestar"].status, listed["slow"].status, listed["slow"].stage) == ("ready", "loading", "fetching")
    result = docs.search("corpus")
    assert result.hits and {h.corpus for h in result.hits} == {"lodestar"}
    assert result.unavailable == ["slow"]
    assert any("slow was not searched: it is still loading (fetching)" in note for note in result.notes)
    with pytest.raises(CorpusLoading, match=r"corpus slow \(fetching npm:pkg@1.2.3\) is still loading") as info:
        docs.search("memory", corpus="slow")
    assert info.value.names == ["slow"]
    health = docs.health()
    assert (health.status, health.loading) == ("loading", ["slow"])

    release(gated_npm)
    assert docs.wait_loaded(["slow"], 30)
    assert docs.search("threads", corpus="slow").hits[0].path == "docs/agents/memory.md"
    assert docs.ready.wait(30) and docs.health().status == "ok"


def test_a_page_of_a_loading_corpus_is_waited_for_not_called_missing(gated_npm: Path, cache_dir: Path) -> None:
    docs = DocsService(["slow=npm:pkg@1.2.3"], cache_dir)
    docs.load_in_background()
    with docs.changed:
        assert docs.changed.wait_for(lambda: docs.loading.get("slow") and docs.loading["slow"].stage == "fetching", 30)
    assert docs.read("docs/overview.md").corpus == "lodestar"  # a ready corpus has it: no waiting
    with pytest.raises(CorpusLoading):
        docs.read("reference/config.md")
    release(gated_npm)

    async def read_async() -> str:
        return (await docs.aread("reference/config.md")).corpus

    assert anyio.run(read_async) == "slow"


async def test_a_call_waiting_for_its_corpus_gets_progress(gated_npm: Path, tmp_path: Path, cache_dir: Path) -> None:
    env = {"PATH": os.environ["PATH"]}
    messages: list[str] = []
    async with connect(tmp_path, cache_dir, "--corpus", "slow=npm:pkg@1.2.3", env=env) as client:
        corpora = (await client.call_tool("list_corpora", {})).structured_content
        assert corpora is not None
        slow = next(c for c in corpora["corpora"] if c["name"] == "slow")
        assert (slow["status"], slow["stage"]) == ("loading", "fetching")
        listed = await client.call_tool("list_corpora", {})
        assert "slow: loading, fetching (npm:pkg@1.2.3)" in listed.content[0].text  # type: ignore[union-attr]
        everywhere = (await client.call_tool("search_docs", {"query": "corpus"})).structured_content
        assert everywhere is not None and everywhere["unavailable"] == ["slow"] and everywhere["hits"]

        async def progress(value: float, total: float | None, message: str | None) -> None:
            messages.append(message or "")
            if len(messages) == 1:
                await anyio.to_thread.run_sync(release, gated_npm)

        result = await client.call_tool(
            "search_docs", {"query": "threads", "corpus": "slow"}, progress_callback=progress
        )
    assert not result.is_error, result.content
    assert result.structured_content is not None
    assert result.structured_content["hits"][0]["path"] == "docs/agents/memory.md"
    assert messages[0].startswith("waiting 1 s for corpus slow (fetching npm:pkg@1.2.3)")


async def test_npm_s_own_reason_reaches_the_user_whole(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    npm_on_path(tmp_path, monkeypatch, NPM_404)
    async with connect(tmp_path, cache_dir, "--corpus", "npm:nopkg", env={"PATH": os.environ["PATH"]}) as client:
        result = await client.call_tool("search_docs", {"query": "x", "corpus": "nopkg"})
        corpora = (await client.call_tool("list_corpora", {})).structured_content
    assert result.is_error
    block = result.content[0]
    assert isinstance(block, TextContent)
    reason = (
        "npm pack nopkg@latest failed: E404 Not Found - GET https://registry.example/nopkg: The requested resource"
        " 'nopkg@*' could not be found or you do not have permission to access it."
    )
    assert block.text == f"corpus 'nopkg' failed to load: {reason}"
    assert corpora is not None
    failed = next(c for c in corpora["corpora"] if c["name"] == "nopkg")
    assert (failed["status"], failed["error"]) == ("failed", reason)
    assert json.dumps(corpora).count("complete log") == 0


async def test_refresh_docs_loads_a_failed_corpus_again(tmp_path: Path, cache_dir: Path) -> None:
    late = tmp_path / "late"
    async with connect(tmp_path, cache_dir, "--corpus", f"late={late}") as client:
        first = await client.call_tool("search_docs", {"query": "threads", "corpus": "late"})
        assert first.is_error and "does not exist" in str(first.content)
        again = await client.call_tool("refresh_docs", {"corpus": "late"})
        assert again.is_error and "loading late failed again" in str(again.content)
        write_corpus(late)
        progress: list[str] = []

        async def note(value: float, total: float | None, message: str | None) -> None:
            progress.append(message or "")

        fixed = await client.call_tool("refresh_docs", {}, progress_callback=note)
        assert not fixed.is_error, fixed.content
        assert fixed.structured_content is not None
        assert {c["name"]: c["status"] for c in fixed.structured_content["corpora"]} == {
            "lodestar": "ready",
            "late": "ready",
        }
        assert "late: built" in progress
        found = await client.call_tool("search_docs", {"query": "threads", "corpus": "late"})
    assert not found.is_error and found.structured_content is not None
    assert found.structured_content["hits"][0]["path"] == "docs/agents/memory.md"


def test_requests_before_loading_are_an_error_and_loading_twice_is_refused(cache_dir: Path) -> None:
    docs = DocsService([], cache_dir)
    with pytest.raises(DocsError, match=r"not loaded: call load\(\) or load_in_background\(\) first"):
        docs.search("corpus")
    frozen = threading.Event()
    docs.load_in_background(then=frozen.set)
    assert docs.started and "lodestar" in (docs.loading.keys() | docs.corpora.keys())  # listed before it returns
    assert docs.search("corpus").hits  # waits for the opening corpus instead of finding none
    assert frozen.wait(30)
    with pytest.raises(RuntimeError, match="already loaded or loading"):
        docs.load()
