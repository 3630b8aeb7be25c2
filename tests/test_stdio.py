"""The MCP surface over stdio: the real `mcp.Client` talking to `python -m lodestar` in a subprocess."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream
from conftest import PAGES, write_corpus
from mcp import Client, MCPError, StdioServerParameters
from mcp.client.stdio import stdio_client

import lodestar

pytestmark = pytest.mark.anyio

TIMEOUT_S = 30
UNIQUE_WORD = "quokkaflange"  # appears only in LONG_PAGE, in no bundled page
LONG_PAGE = (
    "# Long page\n\nAn introduction mentioning "
    + UNIQUE_WORD
    + " once.\n\n"
    + "\n\n".join(
        f"## Part {i}\n\n" + f"Paragraph ünïcode words about lighthouse keeping, number {i}. " * 12 for i in range(12)
    )
)
SEARCH_FIELDS = {"query", "total", "hits", "suggestion", "unavailable", "notes"}
HIT_FIELDS = {"corpus", "version", "path", "title", "heading", "anchor", "score", "snippet", "also_in"}


@pytest.fixture
def corpus(corpus_dir: Path, tmp_path: Path) -> Path:
    """The conftest corpus plus a long page, and a symlink that points at a file outside the corpus."""
    (corpus_dir / "docs" / "long.md").write_text(LONG_PAGE, "utf-8")
    secret = tmp_path / "secret.md"
    secret.write_text("# Secret\n\nTOPSECRET credentials\n", "utf-8")
    (corpus_dir / "docs" / "escape.md").symlink_to(secret)
    return corpus_dir


@asynccontextmanager
async def connect(
    tmp_path: Path, cache_dir: Path, *args: str, mode: str = "auto", env: dict[str, str] | None = None
) -> AsyncIterator[Client]:
    """A Client over stdio to `python -m lodestar ARGS`; the server's stderr goes to tmp_path/server.err."""
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "lodestar", *args],
        env={"LODESTAR_CACHE_DIR": str(cache_dir), **(env or {})},
    )
    with anyio.fail_after(TIMEOUT_S), (tmp_path / "server.err").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog), mode=mode) as client:
            yield client


def example_args(corpus: Path) -> tuple[str, str]:
    return ("--corpus", f"example={corpus}")


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


async def test_tools_are_listed_with_input_and_output_schemas(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}

    assert {"search_docs", "read_doc", "list_docs", "list_corpora", "refresh_docs"} <= set(tools)
    search = tools["search_docs"].input_schema
    assert search["required"] == ["query"]
    assert search["properties"]["limit"]["minimum"] == 1
    assert search["properties"]["limit"]["maximum"] == 50
    assert search["properties"]["limit"]["default"] == 8
    assert {"query", "limit", "corpus", "path_prefix"} <= set(search["properties"])
    read = tools["read_doc"].input_schema
    assert read["required"] == ["path"]
    assert {"path", "corpus", "heading", "cursor", "max_tokens"} <= set(read["properties"])
    assert read["properties"]["max_tokens"]["default"] == 6000
    listing = tools["list_docs"].input_schema
    assert listing["properties"]["depth"]["default"] == 1
    assert listing["properties"]["path_prefix"]["default"] == ""
    assert tools["list_corpora"].input_schema["properties"] == {}

    outputs = {name: set(tools[name].output_schema["properties"]) for name in tools}
    assert outputs["search_docs"] == SEARCH_FIELDS
    read_fields = {"corpus", "version", "path", "title", "content", "headings", "headings_total", "next_cursor"}
    assert outputs["read_doc"] == read_fields
    assert outputs["list_docs"] == {"entries"}
    assert outputs["list_corpora"] == {"corpora"}
    assert outputs["refresh_docs"] == {"corpora"}
    hit_schema = tools["search_docs"].output_schema["$defs"]["SearchHit"]
    assert set(hit_schema["properties"]) == HIT_FIELDS
    assert tools["search_docs"].annotations.read_only_hint is True
    assert tools["refresh_docs"].annotations.read_only_hint is False


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_search_docs_structured_result_and_text(tmp_path: Path, cache_dir: Path, corpus: Path, mode: str) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus), mode=mode) as client:
        if mode == "legacy":
            assert client.protocol_version == "2025-11-25"
        result = await client.call_tool(
            "search_docs", {"query": "streamUntilIdle background tasks", "corpus": "example"}
        )
        corpora = (await client.call_tool("list_corpora", {})).structured_content

    assert result.is_error is False
    data = result.structured_content
    assert set(data) == SEARCH_FIELDS
    assert data["query"] == "streamUntilIdle background tasks"
    assert data["suggestion"] is None
    assert isinstance(data["total"], int) and data["total"] >= len(data["hits"]) >= 1
    top = data["hits"][0]
    assert set(top) == HIT_FIELDS
    example_version = next(c["version"] for c in corpora["corpora"] if c["name"] == "example")
    assert top == top | {
        "corpus": "example",
        "version": example_version,
        "path": "docs/overview.md",
        "title": "Overview",
        "heading": "Background tasks",
        "anchor": "background-tasks",
    }
    assert isinstance(top["score"], float) and top["score"] > 0
    assert "**background**" in top["snippet"].lower()
    text = text_of(result)
    assert "example:docs/overview.md#background-tasks" in text
    assert "Overview > Background tasks" in text
    assert not text.lstrip().startswith("{")  # a readable body, not the JSON again


async def test_search_without_corpus_searches_every_corpus(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        unique = await client.call_tool("search_docs", {"query": UNIQUE_WORD})
        broad = await client.call_tool("search_docs", {"query": "corpus search index", "limit": 50})

    assert [(h["corpus"], h["path"]) for h in unique.structured_content["hits"]] == [("example", "docs/long.md")]
    assert {h["corpus"] for h in broad.structured_content["hits"]} >= {"lodestar"}


async def test_corpus_filter_selects_one_corpus(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        bundled = await client.call_tool("search_docs", {"query": "search documentation", "corpus": "lodestar"})
        example = await client.call_tool("search_docs", {"query": "search documentation", "corpus": "example"})
        unknown = await client.call_tool("search_docs", {"query": "search", "corpus": "nope"})

    assert bundled.structured_content["hits"]
    assert {h["corpus"] for h in bundled.structured_content["hits"]} == {"lodestar"}
    assert example.structured_content["hits"]
    assert {h["corpus"] for h in example.structured_content["hits"]} == {"example"}
    assert unknown.is_error is True
    assert "nope" in text_of(unknown) and "example" in text_of(unknown)


async def test_any_query_text_is_valid(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    queries = ['"unbalanced quote', "AND OR NOT", "*", "path:docs/overview.md", "ünïcødé 🚀", "(((", "maxSteps?"]
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        results = [await client.call_tool("search_docs", {"query": q, "corpus": "example"}) for q in queries]

    for query, result in zip(queries, results, strict=True):
        assert result.is_error is False, (query, text_of(result))
        assert result.structured_content["query"] == query
    assert results[-1].structured_content["hits"][0]["anchor"] == "maxsteps"


async def test_read_doc_pages_with_next_cursor_round_trip(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    max_tokens = 500
    parts: list[dict[str, Any]] = []
    texts: list[str] = []
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        args: dict[str, Any] = {"path": "docs/long.md", "corpus": "example", "max_tokens": max_tokens}
        for _ in range(100):
            result = await client.call_tool("read_doc", args)
            assert result.is_error is False, text_of(result)
            parts.append(result.structured_content)
            texts.append(text_of(result))
            cursor = result.structured_content["next_cursor"]
            if cursor is None:
                break
            args = {"path": "docs/long.md", "cursor": cursor, "max_tokens": max_tokens}

    assert parts[-1]["next_cursor"] is None
    assert len(parts) >= 3
    assert "".join(p["content"] for p in parts) == (corpus / "docs" / "long.md").read_text("utf-8")
    assert all(len(p["content"]) <= max_tokens * 4 for p in parts)
    assert all(p["corpus"] == "example" and p["path"] == "docs/long.md" and p["title"] == "Long page" for p in parts)
    # A partial read's text body says how to continue; the last one is just the markdown.
    assert parts[0]["next_cursor"] in texts[0]
    assert texts[-1] == parts[-1]["content"]


async def test_read_doc_whole_page_and_one_heading(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        page = await client.call_tool("read_doc", {"path": "docs/overview.md", "corpus": "example"})
        by_text = await client.call_tool(
            "read_doc", {"path": "docs/overview.md", "corpus": "example", "heading": "Installation"}
        )
        by_anchor = await client.call_tool(
            "read_doc", {"path": "docs/overview.md", "corpus": "example", "heading": "background-tasks"}
        )
        missing = await client.call_tool(
            "read_doc", {"path": "docs/overview.md", "corpus": "example", "heading": "Nonexistent heading"}
        )

    assert page.structured_content["content"] == PAGES["docs/overview.md"]
    assert page.structured_content["next_cursor"] is None
    assert {"level": 2, "text": "Installation", "anchor": "installation"} in page.structured_content["headings"]
    section = by_text.structured_content["content"]
    assert section.startswith("## Installation")
    assert "pip install example" in section
    assert "Background tasks" not in section
    other = by_anchor.structured_content["content"]
    assert other.startswith("## Background tasks")
    assert "streamUntilIdle" in other and "pip install" not in other
    assert missing.is_error is True
    assert "installation" in text_of(missing) and "background-tasks" in text_of(missing)


async def test_unknown_path_is_a_tool_error_naming_closest_paths(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        result = await client.call_tool("read_doc", {"path": "docs/overveiw.md", "corpus": "example"})
        nested = await client.call_tool("read_doc", {"path": "docs/agents/memroy.md", "corpus": "example"})

    assert result.is_error is True
    assert result.structured_content is None
    assert "docs/overveiw.md" in text_of(result)
    assert "docs/overview.md" in text_of(result)
    assert nested.is_error is True
    assert "docs/agents/memory.md" in text_of(nested)


async def test_paths_escaping_the_corpus_root_are_refused(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    secret = tmp_path / "secret.md"
    paths = [
        "../secret.md",
        "..\\secret.md",
        "docs/../../secret.md",
        str(secret),
        "/etc/passwd",
        "docs/escape.md",  # a symlink to a file outside the corpus
        "docs://example/../secret.md",
    ]
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        results = [await client.call_tool("read_doc", {"path": p, "corpus": "example"}) for p in paths]
        listed = await client.call_tool("list_docs", {"path_prefix": "docs", "corpus": "example"})
        with pytest.raises(MCPError):
            await client.read_resource("docs://example/docs/escape.md")

    for path, result in zip(paths, results, strict=True):
        assert result.is_error is True, path
        assert "TOPSECRET" not in text_of(result), path
    assert "docs/escape.md" not in [e["path"] for e in listed.structured_content["entries"]]


async def test_invalid_arguments_are_tool_errors(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    calls = [
        ("search_docs", {"query": "tasks", "limit": 0}, "limit"),
        ("search_docs", {"query": "tasks", "limit": 51}, "limit"),
        ("search_docs", {"query": "tasks", "limit": "many"}, "limit"),
        ("search_docs", {"limit": 3}, "query"),
        ("read_doc", {"path": "docs/overview.md", "max_tokens": 10}, "max_tokens"),
        ("list_docs", {"depth": 0}, "depth"),
    ]
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        results = [await client.call_tool(name, args) for name, args, _ in calls]
        valid = await client.call_tool("search_docs", {"query": "tasks", "limit": 50})

    for (name, args, field), result in zip(calls, results, strict=True):
        assert result.is_error is True, (name, args)
        assert field in text_of(result), (name, args)
    assert valid.is_error is False


async def test_list_docs(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        top = await client.call_tool("list_docs", {"corpus": "example"})
        deep = await client.call_tool("list_docs", {"corpus": "example", "depth": 2})
        agents = await client.call_tool("list_docs", {"corpus": "example", "path_prefix": "docs/agents"})
        nothing = await client.call_tool("list_docs", {"corpus": "example", "path_prefix": "no/such/folder"})

    def entries(result: Any) -> set[tuple[str, str]]:
        return {(e["path"], e["kind"]) for e in result.structured_content["entries"]}

    assert entries(top) == {("docs/", "dir"), ("guides/", "dir"), ("reference/", "dir")}
    assert {("docs/agents/", "dir"), ("docs/overview.md", "doc"), ("reference/config.md", "doc")} <= entries(deep)
    assert ("docs/agents/memory.md", "doc") not in entries(deep)
    assert agents.structured_content["entries"] == [
        {"corpus": "example", "path": "docs/agents/memory.md", "title": "Agent memory", "kind": "doc"}
    ]
    assert "example:docs/overview.md" in text_of(deep)
    assert nothing.is_error is True


async def test_list_corpora(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        result = await client.call_tool("list_corpora", {})

    by_name = {c["name"]: c for c in result.structured_content["corpora"]}
    assert set(by_name) == {"lodestar", "example"}
    assert by_name["lodestar"]["source"] == "bundled"
    assert by_name["lodestar"]["version"] == lodestar.__version__
    assert by_name["lodestar"]["documents"] > 0
    example = by_name["example"]
    assert example["source"] == str(corpus)
    assert example["documents"] == len(PAGES) + 1  # the long page; the outside symlink is not indexed
    assert example["sections"] >= 12
    assert set(example) == {"name", "version", "source", "documents", "sections", "status", "stage", "error"}
    assert example["status"] == "ready"
    assert f"example {example['version']}" in text_of(result)


async def test_resource_template_serves_pages_as_markdown(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        templates = (await client.list_resource_templates()).resource_templates
        page = await client.read_resource("docs://example/docs/overview.md")
        nested = await client.read_resource("docs://example/docs/agents/memory.md")

    template = next(t for t in templates if t.uri_template.startswith("docs://"))
    assert template.uri_template == "docs://{corpus}/{+path}"
    assert template.mime_type == "text/markdown"
    [content] = page.contents
    assert content.mime_type == "text/markdown"
    assert str(content.uri) == "docs://example/docs/overview.md"
    assert content.text == (corpus / "docs" / "overview.md").read_text("utf-8")
    assert nested.contents[0].text == PAGES["docs/agents/memory.md"]


async def test_unknown_page_resource_is_an_mcp_error(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        with pytest.raises(MCPError) as page_error:
            await client.read_resource("docs://example/docs/overveiw.md")
        with pytest.raises(MCPError) as corpus_error:
            await client.read_resource("docs://nope/docs/overview.md")

    assert page_error.value.code == -32602
    assert "docs/overview.md" in page_error.value.error.message
    assert "example" in corpus_error.value.error.message


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_refresh_docs_reports_progress_and_finds_new_words(
    tmp_path: Path, cache_dir: Path, corpus: Path, mode: str
) -> None:
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    async with connect(tmp_path, cache_dir, *example_args(corpus), mode=mode) as client:
        before = await client.call_tool("search_docs", {"query": "zanzibarquux", "corpus": "example"})
        sections_before = await client.call_tool("list_corpora", {})
        page = corpus / "docs" / "overview.md"
        page.write_text(page.read_text("utf-8") + "\n## Zanzibar\n\nThe zanzibarquux option is new.\n", "utf-8")
        refreshed = await client.call_tool("refresh_docs", {}, progress_callback=on_progress)
        after = await client.call_tool("search_docs", {"query": "zanzibarquux", "corpus": "example"})
        reread = await client.call_tool("read_doc", {"path": "docs/overview.md", "corpus": "example"})

    assert before.structured_content["hits"] == []
    assert refreshed.is_error is False
    assert [progress for progress, _, _ in events] == [1, 2]
    assert {total for _, total, _ in events} == {2}
    messages = [message or "" for _, _, message in events]
    assert any(m.startswith("lodestar:") for m in messages)
    assert any(m.startswith("example:") and "cached" not in m for m in messages), messages
    old = {c["name"]: c["sections"] for c in sections_before.structured_content["corpora"]}
    new = {c["name"]: c["sections"] for c in refreshed.structured_content["corpora"]}
    assert new == old | {"example": old["example"] + 1}
    [hit] = after.structured_content["hits"]
    assert (hit["path"], hit["heading"], hit["anchor"]) == ("docs/overview.md", "Zanzibar", "zanzibar")
    assert reread.structured_content["content"] == page.read_text("utf-8")


async def test_refresh_docs_of_one_corpus(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    events: list[str | None] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append(message)

    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        result = await client.call_tool("refresh_docs", {"corpus": "example"}, progress_callback=on_progress)
        unknown = await client.call_tool("refresh_docs", {"corpus": "nope"})

    assert result.is_error is False
    assert len(events) == 1 and (events[0] or "").startswith("example:")
    assert unknown.is_error is True and "nope" in text_of(unknown)


async def test_serve_corpus_flags_replace_the_environment_list(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    other = write_corpus(tmp_path / "other", {"notes.md": "# Notes\n\nSome notes.\n"})
    env = {"LODESTAR_CORPORA": f"envdocs={other}"}
    async with connect(tmp_path, cache_dir, env=env) as client:
        from_env = await client.call_tool("list_corpora", {})
    async with connect(tmp_path, cache_dir, *example_args(corpus), env=env) as client:
        from_flag = await client.call_tool("list_corpora", {})

    assert [c["name"] for c in from_env.structured_content["corpora"]] == ["lodestar", "envdocs"]
    assert [c["name"] for c in from_flag.structured_content["corpora"]] == ["lodestar", "example"]


async def test_stdout_carries_only_json_rpc(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    """Drive the server by hand: every line it writes on stdout must be a JSON-RPC message, while its log
    lines (here the warning about the symlink that leads outside the corpus) go to stderr."""
    requests = [
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {
                "protocolVersion": "2025-11-25",
                "capabilities": {},
                "clientInfo": {"name": "raw-test", "version": "0"},
            },
        },
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "search_docs", "arguments": {"query": "x"}},
        },
        {
            "jsonrpc": "2.0",
            "id": 3,
            "method": "tools/call",
            "params": {"name": "read_doc", "arguments": {"path": "no"}},
        },
    ]
    env = {"LODESTAR_CACHE_DIR": str(cache_dir), "PATH": "/usr/bin:/bin"}
    err_path = tmp_path / "raw.err"
    lines: list[bytes] = []
    with anyio.fail_after(TIMEOUT_S), err_path.open("w") as errlog:
        async with await anyio.open_process(
            [sys.executable, "-m", "lodestar", *example_args(corpus)], env=env, stderr=errlog
        ) as process:
            assert process.stdin is not None and process.stdout is not None
            reader = BufferedByteReceiveStream(process.stdout)
            answered: set[int] = set()
            for request in requests:
                await process.stdin.send(json.dumps(request).encode() + b"\n")
                while "id" in request and request["id"] not in answered:
                    line = await reader.receive_until(b"\n", 1 << 20)
                    lines.append(line)
                    answered.add(json.loads(line).get("id"))
            await process.stdin.aclose()
            while True:
                try:
                    lines.append(await reader.receive_until(b"\n", 1 << 20))
                except (anyio.EndOfStream, anyio.IncompleteRead):
                    break
            code = await process.wait()

    assert code == 0
    messages = [json.loads(line) for line in lines if line.strip()]
    assert len(messages) == len(lines) >= 3
    assert all(m.get("jsonrpc") == "2.0" for m in messages)
    by_id = {m["id"]: m for m in messages if "id" in m}
    assert by_id[1]["result"]["serverInfo"]["name"] == "lodestar"
    assert by_id[2]["result"]["isError"] is False
    assert by_id[3]["result"]["isError"] is True
    assert "links outside the corpus root" in err_path.read_text("utf-8")


# Defects found while writing these tests.


async def test_no_suggestion_for_a_word_another_corpus_knows(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    other = write_corpus(tmp_path / "other", {"notes.md": "# Notes\n\nThe quaxol setting.\n"})
    write_corpus(corpus, {"docs/quaxel.md": "# Quaxel\n\nThe quaxel setting.\n"})
    async with connect(tmp_path, cache_dir, *example_args(corpus), "--corpus", f"other={other}") as client:
        result = await client.call_tool("search_docs", {"query": "quaxel"})

    assert result.structured_content["hits"][0]["path"] == "docs/quaxel.md"
    assert result.structured_content["suggestion"] is None
    assert "Searched for: quaxol" not in text_of(result)


async def test_closest_paths_hint_has_no_duplicates(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    twin = write_corpus(tmp_path / "twin")
    async with connect(tmp_path, cache_dir, *example_args(corpus), "--corpus", f"twin={twin}") as client:
        result = await client.call_tool("read_doc", {"path": "docs/overveiw.md"})

    assert result.is_error is True
    closest = text_of(result).split("Closest: ", 1)[1].split(", ")
    assert len(closest) == len(set(closest)), closest


async def test_search_text_body_describes_total_as_pages(tmp_path: Path, cache_dir: Path, corpus: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus)) as client:
        result = await client.call_tool("search_docs", {"query": "threads messages", "corpus": "example"})

    total = result.structured_content["total"]
    assert total >= 1
    assert f"{total} matching sections" not in text_of(result)
