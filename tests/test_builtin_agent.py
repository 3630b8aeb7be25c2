"""The built-in `docs` agent over a real DocsService and real SQLite: its tools, the errors the model reads, and
`research` as a background task whose notes reach the continuation turn."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from conftest import PAGES, make_tgz, npm_on_path, write_corpus
from llm_servers import LLMServer, Turn
from test_agent_runs import model_for
from test_loading import GATED_NPM, release

from lodestar.builtin import (
    DOCS_AGENT_DESCRIPTION,
    DOCS_AGENT_ID,
    DOCS_AGENT_NAME,
    DOCS_AGENT_TOOLS,
    DOCS_BACKGROUND_TOOLS,
)
from lodestar.builtin.docs_agent import (
    READ_MAX_TOKENS,
    RESEARCH_SEARCHES,
    builtin_app,
    docs_agent,
    search_variants,
)
from lodestar.docs.service import DocsService
from lodestar.runtime import Agent, Chunk, RunResult
from lodestar.runtime.models.base import ModelRequest
from lodestar.runtime.models.scripted import ScriptedModel, ScriptedTurn, call, calls

pytestmark = pytest.mark.anyio

EXAMPLE = "example-docs"
LONG_SECTION = "\n".join(f"Paragraph {i} about retention of old records and compaction." for i in range(700))
PAGES_HERE = {**PAGES, "docs/storage.md": f"# Storage\n\n## Retention\n\n{LONG_SECTION}\n\n## Backups\n\nCopy it.\n"}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsService]:
    root = write_corpus(tmp_path_factory.mktemp("builtin") / EXAMPLE, PAGES_HERE)
    service = DocsService([str(root)], tmp_path_factory.mktemp("cache"), bundled=False)
    service.load()
    yield service
    service.close()


def with_model(docs: DocsService, model: Any) -> Agent:
    agent = docs_agent(docs)
    agent.model = model
    return agent


async def run_calls(docs: DocsService, *tool_calls: Any) -> tuple[list[Chunk], RunResult, ScriptedModel]:
    """One step calling the tools, then an answer; returns the chunks, the result and the recording model."""
    model = ScriptedModel([calls(*tool_calls), "Answered."])
    model.record = True
    stream = with_model(docs, model).stream("question")
    chunks = [chunk async for chunk in stream]
    return chunks, await stream.result(), model


def results(chunks: list[Chunk], kind: str = "tool-result") -> list[Any]:
    return [c.payload.result if kind == "tool-result" else c.payload.error for c in chunks if c.type == kind]


def seen_by_model(model: ScriptedModel) -> list[Any]:
    """The tool results the model was shown in its last request: (result, is_error) pairs."""
    parts = [p for m in model.requests[-1].messages for p in m.content if p.type == "tool-result"]
    return [(p.result, p.is_error) for p in parts]


def test_the_constants_describe_the_built_agent(docs: DocsService) -> None:
    agent = docs_agent(docs)
    assert (agent.id, agent.name, agent.description) == (DOCS_AGENT_ID, DOCS_AGENT_NAME, DOCS_AGENT_DESCRIPTION)
    assert tuple(agent.tools) == DOCS_AGENT_TOOLS
    background = tuple(n for n, t in agent.tools.items() if t.background is not None and t.background.enabled)
    assert background == DOCS_BACKGROUND_TOOLS
    assert agent.model is None  # the server supplies one: --model, LODESTAR_MODEL or the client's sampling


def test_importing_lodestar_builtin_imports_nothing_heavy() -> None:
    code = "import sys, lodestar.builtin; print(' '.join(sorted(m for m in sys.modules if m.startswith('lodestar'))))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert "lodestar.builtin" in loaded
    heavy = ("lodestar.runtime", "lodestar.background", "lodestar.storage", "lodestar.docs", "lodestar.app")
    assert [m for m in loaded if m.startswith(heavy)] == []


async def test_search_docs_returns_hits_to_cite(docs: DocsService) -> None:
    chunks, result, model = await run_calls(docs, call("search_docs", {"query": "semantic recall"}))
    (found,) = results(chunks)
    first = found["hits"][0]
    assert (first["corpus"], first["path"], first["anchor"]) == (EXAMPLE, "docs/agents/memory.md", "semantic-recall")
    assert first["citation"] == f"{EXAMPLE}:docs/agents/memory.md#semantic-recall"
    assert first["heading"] == "Semantic recall" and "**recall**" in first["snippet"]
    assert set(first) == {"corpus", "version", "path", "title", "heading", "anchor", "citation", "snippet"}
    assert seen_by_model(model) == [(found, False)] and result.text == "Answered."


async def test_read_doc_returns_the_section_by_anchor_or_heading_text(docs: DocsService) -> None:
    _, result, _ = await run_calls(
        docs,
        call("read_doc", {"path": "docs/agents/memory.md", "heading": "semantic-recall"}),
        call("read_doc", {"path": "docs/agents/memory.md", "corpus": EXAMPLE, "heading": "Threads"}),
    )
    recall, threads = [r.result for r in result.tool_results]  # in the order of the calls, which run at once
    assert (
        recall["content"] == "## Semantic recall\n\nSemantic recall finds older messages similar to the new message.\n"
    )
    assert (recall["heading"], recall["anchor"], recall["next_cursor"]) == ("Semantic recall", "semantic-recall", None)
    assert recall["citation"] == f"{EXAMPLE}:docs/agents/memory.md#semantic-recall"
    assert threads["anchor"] == "threads" and "Use `resource_id` to group threads" in threads["content"]
    assert "Semantic recall" not in threads["content"]


async def test_read_doc_pages_a_long_section_and_the_cursor_keeps_its_citation(docs: DocsService) -> None:
    chunks, _, _ = await run_calls(docs, call("read_doc", {"path": "docs/storage.md", "heading": "Retention"}))
    (first,) = results(chunks)
    assert first["next_cursor"] and len(first["content"]) <= READ_MAX_TOKENS * 4
    assert "Paragraph 0 " in first["content"] and "Paragraph 699 " not in first["content"]
    chunks, _, _ = await run_calls(
        docs, call("read_doc", {"path": "docs/storage.md", "cursor": first["next_cursor"], "max_tokens": 12_000})
    )
    (rest,) = results(chunks)
    assert rest["citation"] == f"{EXAMPLE}:docs/storage.md#retention" and rest["heading"] == "Retention"
    assert "Paragraph 699 " in rest["content"] and "Backups" not in rest["content"] and rest["next_cursor"] is None


async def test_a_whole_page_is_cited_without_an_anchor(docs: DocsService) -> None:
    chunks, _, _ = await run_calls(docs, call("read_doc", {"path": "reference/config"}))
    (page,) = results(chunks)
    assert (page["path"], page["heading"], page["citation"]) == (
        "reference/config.md",
        "",
        f"{EXAMPLE}:reference/config.md",
    )
    assert [h["anchor"] for h in page["headings"]] == ["configuration-reference", "maxsteps", "piidetector"]


@pytest.mark.parametrize(
    ("tool_call", "message"),
    [
        (
            call("read_doc", {"path": "docs/agents/memroy.md"}),
            "no page 'docs/agents/memroy.md'. Closest: docs/agents/memory.md",
        ),
        (
            call("read_doc", {"path": "docs/overview.md", "heading": "Uninstall"}),
            "no heading 'Uninstall' in docs/overview.md",
        ),
        (
            call("search_docs", {"query": "threads", "corpus": "mastra"}),
            f"unknown corpus 'mastra'; loaded corpora: {EXAMPLE}",
        ),
        (call("research", {"question": "threads", "corpus": "mastra"}), "unknown corpus 'mastra'"),
        (call("read_doc", {"path": "docs/overview.md", "max_tokens": 50_000}), "max_tokens"),
    ],
)
async def test_a_bad_call_is_a_tool_error_the_model_reads(docs: DocsService, tool_call: Any, message: str) -> None:
    chunks, result, model = await run_calls(docs, tool_call)
    (error,) = results(chunks, "tool-error")
    assert message in error.message
    ((seen, is_error),) = seen_by_model(model)
    assert is_error and message in seen
    assert result.error is None and result.text == "Answered."  # the run went on


async def test_research_reads_the_best_sections_and_cites_them(docs: DocsService) -> None:
    question = "How do threads group messages by resource_id?"
    chunks, _, model = await run_calls(docs, call("research", {"question": question, "queries": ["semantic recall"]}))
    (notes,) = results(chunks)
    assert notes["found"] is True and notes["searched"][:3] == [question, "semantic recall", "resource_id"]
    citations = [n["citation"] for n in notes["notes"]]
    assert citations[0] == f"{EXAMPLE}:docs/agents/memory.md#threads"
    assert f"{EXAMPLE}:docs/agents/memory.md#semantic-recall" in citations
    assert len(set(citations)) == len(citations)
    assert "Use `resource_id` to group threads by user." in notes["notes"][0]["text"]
    assert notes["summary"].startswith(f"Found {len(citations)} sections.")
    progress = [c.payload.output for c in chunks if c.type == "tool-output"]
    assert progress[0] == {"type": "progress", "message": f"searching {question!r}", "progress": 0.0}
    assert f"reading {citations[0]}" in [p["message"] for p in progress]
    assert progress[-1]["progress"] == 1.0 and [p["progress"] for p in progress] == sorted(
        p["progress"] for p in progress
    )
    assert seen_by_model(model) == [(notes, False)]


async def test_research_bounds_its_notes(docs: DocsService) -> None:
    chunks, _, _ = await run_calls(docs, call("research", {"question": "retention compaction", "max_sources": 1}))
    ((note,),) = [r["notes"] for r in results(chunks)]
    assert note["citation"] == f"{EXAMPLE}:docs/storage.md#retention"
    assert note["next_cursor"] and len(note["text"]) <= 8_000 * 4


async def test_research_says_plainly_when_nothing_matches(docs: DocsService) -> None:
    chunks, _, _ = await run_calls(docs, call("research", {"question": "quokka xylophone"}))
    (notes,) = results(chunks)
    assert notes["found"] is False and notes["notes"] == []
    assert notes["summary"] == (
        "Nothing in the loaded documentation matches this question (searched: 'quokka xylophone'). "
        "Say that the docs do not cover it rather than guessing."
    )


async def test_a_search_waits_for_its_corpus_and_says_so_as_progress(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bin_dir = npm_on_path(tmp_path, monkeypatch, GATED_NPM.format(python=sys.executable))
    make_tgz(bin_dir / "package.tgz", "pkg", "1.2.3")
    os.mkfifo(bin_dir / "gate")
    slow = DocsService(["slow=npm:pkg@1.2.3"], cache_dir, bundled=False)
    slow.load_in_background()
    model = ScriptedModel([calls(call("search_docs", {"query": "semantic recall", "corpus": "slow"})), "Answered."])
    messages: list[str] = []
    found: list[Any] = []
    try:
        async with with_model(slow, model).stream("question") as stream:
            async for chunk in stream:
                if chunk.type == "tool-output":
                    messages.append(chunk.payload.output["message"])
                    if len(messages) == 1:  # the search is waiting: let the fetch finish
                        await anyio.to_thread.run_sync(release, bin_dir / "gate")
                elif chunk.type == "tool-result":
                    found.append(chunk.payload.result)
    finally:
        slow.close()
    assert messages[0].startswith("waiting 1 s for corpus slow (fetching npm:pkg@1.2.3)")
    assert found[0]["hits"][0]["citation"] == "slow:docs/agents/memory.md#semantic-recall"


def test_search_variants_add_identifiers_and_key_word_pairs_once_each() -> None:
    question = "How do I use streamUntilIdle with background tasks?"
    assert search_variants(question, ["Background tasks", "wait for tasks"]) == [
        question,
        "Background tasks",
        "wait for tasks",
        "streamUntilIdle",
        "use streamUntilIdle",
        "streamUntilIdle background",
    ]
    assert search_variants("maxSteps", []) == ["maxSteps"]
    assert len(search_variants("one two three four five six seven eight nine ten", [])) == RESEARCH_SEARCHES


def continuing(request: ModelRequest) -> ScriptedTurn:
    """Dispatch research first; after its task answers, say it runs; answer on the turn its end brings."""
    last = request.messages[-1]
    if last.role == "user" and last.text.startswith("[background tasks finished]"):
        return ScriptedTurn(text="Threads group messages by resource.")
    if last.role == "user":
        return calls(call("research", {"question": "How are threads grouped by resource_id?"}))
    return ScriptedTurn(text="Research is under way.")


async def test_builtin_app_runs_research_as_a_background_task_and_the_next_turn_reads_its_notes(
    docs: DocsService, tmp_path: Path
) -> None:
    model = ScriptedModel(continuing)
    model.record = True
    async with builtin_app(docs, tmp_path / "lodestar.db") as app:
        agent = app.get_agent(DOCS_AGENT_ID)
        agent.model = model
        stream = agent.stream_until_idle("How are threads grouped?", thread="t1", resource="u1")
        kinds = [chunk.type async for chunk in stream]
        result = await stream.result()
        assert app.tasks is not None
        (task,) = (await app.tasks.list_tasks()).tasks
    assert kinds.index("background-task-started") < kinds.index("background-task-completed")
    assert "background-task-progress" in kinds
    assert result.text == "Research is under way.\n\nThreads group messages by resource."
    assert (task.tool_name, task.status) == ("research", "completed")
    notes = [p.result for m in model.requests[-1].messages for p in m.content if p.type == "tool-result"]
    assert notes == [task.result]
    assert task.result["notes"][0]["citation"] == f"{EXAMPLE}:docs/agents/memory.md#threads"


def test_builtin_app_keeps_its_memory_in_lodestar_db_by_default(
    docs: DocsService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LODESTAR_DB", str(tmp_path / "from-env.db"))
    app = builtin_app(docs)
    assert app.storage.path == str(tmp_path / "from-env.db")  # type: ignore[attr-defined]
    assert app.background_tasks.enabled and list(app.agents) == [DOCS_AGENT_ID]


async def test_a_provider_model_searches_reads_and_answers_with_the_citation(
    docs: DocsService, openai_server: LLMServer
) -> None:
    openai_server.script(
        Turn(tool_calls=[("search_docs", {"query": "PIIDetector"})]),
        Turn(tool_calls=[("read_doc", {"path": "reference/config.md", "heading": "piidetector"})]),
        Turn(text=f"It redacts emails ({EXAMPLE}:reference/config.md#piidetector)."),
    )
    result = await with_model(docs, model_for(openai_server)).generate("What does PIIDetector do?")
    assert result.text == f"It redacts emails ({EXAMPLE}:reference/config.md#piidetector)."
    first = openai_server.requests[0].body
    assert "cite each claim as corpus:path#anchor" in json.dumps(first["messages"]).lower()
    assert [t["function"]["name"] for t in first["tools"]] == list(DOCS_AGENT_TOOLS)
    shown = json.dumps(openai_server.requests[-1].body["messages"])
    assert "redacts emails and phone numbers" in shown and "piidetector" in shown
