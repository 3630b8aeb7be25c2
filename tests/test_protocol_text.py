"""What a model reads over MCP: tool descriptions, argument errors and counts, through the real client over stdio."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_corpus
from test_stdio import connect, example_args, text_of

pytestmark = pytest.mark.anyio

VALIDATOR_WORDS = ("validation error", "Input should", "type=", "pydantic", "For further information")


async def test_tool_descriptions_carry_no_source_indentation(tmp_path: Path, cache_dir: Path, corpus_dir: Path) -> None:
    async with connect(tmp_path, cache_dir, *example_args(corpus_dir)) as client:
        tools = (await client.list_tools()).tools

    assert len(tools) >= 5
    multi_line = [tool.name for tool in tools if tool.description and "\n" in tool.description]
    assert multi_line, "the check below needs a description of several lines"
    for tool in tools:
        assert tool.description and tool.description == tool.description.strip(), tool.name
        assert not [line for line in tool.description.splitlines() if line[:1].isspace()], tool.description
        assert tool.input_schema["additionalProperties"] is False, tool.name  # unknown arguments are refused


async def test_argument_errors_are_plain_words(tmp_path: Path, cache_dir: Path, corpus_dir: Path) -> None:
    calls = [
        ("search_docs", {"query": "tasks", "limit": 0}, "limit must be between 1 and 50, got 0"),
        ("search_docs", {"query": "tasks", "limit": "x"}, 'limit must be a whole number, got "x"'),
        ("search_docs", {"query": "tasks", "limit": 2.5}, "limit must be a whole number, got 2.5"),
        ("search_docs", {"limit": 3}, "query is required"),
        ("search_docs", {"query": None}, "query must be a string, got null"),
        (
            "search_docs",
            {"query": "tasks", "limit": 0, "offset": -1},
            "limit must be between 1 and 50, got 0; offset must be between 0 and 1000, got -1",
        ),
        (
            "search_docs",
            {"query": "tasks", "corpora": "example"},
            "unknown argument 'corpora' (did you mean 'corpus'?); it takes query, limit, corpus, path_prefix, offset",
        ),
        ("read_doc", {"path": "docs/overview.md", "max_tokens": 5}, "max_tokens must be between 100 and 100000, got 5"),
        ("list_corpora", {"verbose": True}, "unknown argument 'verbose'; it takes no arguments"),
        ("refresh_docs", {"corpus": 5}, "corpus must be a string, got 5"),
    ]
    async with connect(tmp_path, cache_dir, *example_args(corpus_dir)) as client:
        results = [await client.call_tool(name, args) for name, args, _ in calls]

    for (name, args, expected), result in zip(calls, results, strict=True):
        text = text_of(result)
        assert result.is_error is True, (name, args)
        assert text == f"Invalid arguments for {name}: {expected}", (name, args)
        assert not [word for word in VALIDATOR_WORDS if word in text], text


async def test_counts_of_one_are_singular(tmp_path: Path, cache_dir: Path) -> None:
    single = write_corpus(tmp_path / "single", {"one.md": "# Only page\n\nA lone quokka lives here.\n"})
    async with connect(tmp_path, cache_dir, "--corpus", f"single={single}", "--no-bundled") as client:
        search = text_of(await client.call_tool("search_docs", {"query": "quokka"}))
        corpora = await client.call_tool("list_corpora", {})

    assert search.startswith("1 result for 'quokka' (1 matching page):"), search
    assert [c["name"] for c in corpora.structured_content["corpora"]] == ["single"]  # --no-bundled reaches the server
    assert text_of(corpora).startswith("single ") and ": 1 page, 1 section (" in text_of(corpora)
