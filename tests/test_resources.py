"""Resources people can pick: resources/list pages through every page with cursors, the docs:// template completes
corpus and path, ask_docs is a prompt, and a missing resource gets the error code of the negotiated protocol."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import PAGES, write_corpus
from mcp import MCPError
from mcp.types import PromptReference, ResourceTemplateReference
from test_stdio import connect

from lodestar.docs.service import DocsService
from lodestar.server.app import build_server
from lodestar.server.resources import PAGE_SIZE, TEMPLATE
from lodestar.settings import Settings

pytestmark = pytest.mark.anyio

MANY = 230  # pages under many/, so the example corpus alone fills more than two resources/list answers
ODD_PATH = "many/café notes?.md"  # a space, a non-ASCII letter and a `?`, which a URI must encode
ODD_URI = "docs://example/many/caf%C3%A9%20notes%3F.md"
TEMPLATE_REF = ResourceTemplateReference(uri=TEMPLATE)
MODES = [("legacy", "2025-11-25"), ("auto", "2026-07-28")]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pages = dict(PAGES)
    pages.update({f"many/page-{i:03}.md": f"# Page number {i}\n\nText {i}.\n" for i in range(MANY)})
    pages[ODD_PATH] = "# Odd name\n\nA page whose file name needs encoding.\n"
    return write_corpus(tmp_path_factory.mktemp("resources") / "example-docs", pages)


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("resources-cache")


def example(corpus: Path) -> tuple[str, str]:
    return ("--corpus", f"example={corpus}")


async def every_page(client: Any) -> list[list[Any]]:
    """The resources of each resources/list answer, following nextCursor until it is absent."""
    answers, cursor = [], None
    while True:
        result = await client.list_resources(cursor=cursor)
        answers.append(result.resources)
        cursor = result.next_cursor
        if cursor is None:
            return answers
        assert len(answers) < 20, "the cursors never ended"


@pytest.mark.parametrize(("mode", "version"), MODES)
async def test_resources_list_pages_through_every_page_once(
    tmp_path: Path, module_cache: Path, corpus: Path, mode: str, version: str
) -> None:
    async with connect(tmp_path, module_cache, *example(corpus), mode=mode) as client:
        assert client.protocol_version == version
        answers = await every_page(client)
        odd = await client.read_resource(ODD_URI)
        with pytest.raises(MCPError) as bad_cursor:
            await client.list_resources(cursor="not-a-cursor")
        corpora = (await client.call_tool("list_corpora", {})).structured_content["corpora"]

    bundled = next(c["documents"] for c in corpora if c["name"] == "lodestar")
    example_count = len(PAGES) + MANY + 1
    assert [len(a) for a in answers[:-1]] == [PAGE_SIZE] * (len(answers) - 1)
    assert 0 < len(answers[-1]) <= PAGE_SIZE and len(answers) >= 3
    uris = [r.uri for answer in answers for r in answer]
    assert len(uris) == len(set(uris)) == example_count + bundled
    assert all(u.startswith("docs://example/") for u in uris[:example_count])  # a user's corpora before ours
    assert all(u.startswith("docs://lodestar/") for u in uris[example_count:])

    by_uri = {r.uri: r for answer in answers for r in answer}
    overview = by_uri["docs://example/docs/overview.md"]
    assert (overview.name, overview.title) == ("example:docs/overview.md", "Overview")
    assert overview.mime_type == "text/markdown"
    assert overview.size == len((corpus / "docs" / "overview.md").read_bytes())
    assert by_uri[ODD_URI].name == f"example:{ODD_PATH}"
    assert odd.contents[0].text == (corpus / ODD_PATH).read_text("utf-8")
    assert bad_cursor.value.code == -32602
    assert "nextCursor" in bad_cursor.value.message and "omit the cursor" in bad_cursor.value.message


@pytest.mark.parametrize(("mode", "version"), MODES)
async def test_missing_resource_gets_the_code_of_its_protocol_version(
    tmp_path: Path, module_cache: Path, corpus: Path, mode: str, version: str
) -> None:
    expected = -32002 if version == "2025-11-25" else -32602
    uris = ["docs://example/docs/overveiw.md", "docs://nope/docs/overview.md", "docs://example/../x.md", "file:///x"]
    errors: dict[str, MCPError] = {}
    async with connect(tmp_path, module_cache, *example(corpus), mode=mode) as client:
        await client.read_resource("docs://lodestar/docs/overview.md")  # both corpora loaded, as the message lists
        for uri in uris:
            with pytest.raises(MCPError) as caught:
                await client.read_resource(uri)
            errors[uri] = caught.value

    assert {uri: e.code for uri, e in errors.items()} == dict.fromkeys(uris, expected)
    assert {uri: e.data["uri"] for uri, e in errors.items()} == {uri: uri for uri in uris}
    assert "Closest: docs/overview.md" in errors["docs://example/docs/overveiw.md"].message
    assert "unknown corpus 'nope'; loaded corpora: lodestar, example" in errors["docs://nope/docs/overview.md"].message


async def test_completion_of_corpus_and_path(tmp_path: Path, module_cache: Path, corpus: Path) -> None:
    async with connect(tmp_path, module_cache, *example(corpus)) as client:

        async def complete(name: str, value: str, given: dict[str, str] | None = None, ref: Any = TEMPLATE_REF) -> Any:
            return (await client.complete(ref, {"name": name, "value": value}, given)).completion

        corpora = await complete("corpus", "")
        ex = await complete("corpus", "EX")
        docs_prefix = await complete("path", "docs/", {"corpus": "example"})
        by_substring = await complete("path", "memory", {"corpus": "example"})
        many = await complete("path", "many/", {"corpus": "example"})
        everywhere = await complete("path", "docs/overview")
        unknown_corpus = await complete("path", "docs/", {"corpus": "nope"})
        prompt_corpus = await complete("corpus", "lo", ref=PromptReference(name="ask_docs"))
        other_argument = await complete("question", "how", ref=PromptReference(name="ask_docs"))

    assert (corpora.values, corpora.total, corpora.has_more) == (["example", "lodestar"], 2, False)
    assert ex.values == ["example"]
    assert docs_prefix.values == ["docs/agents/memory.md", "docs/overview.md"]
    assert by_substring.values == ["docs/agents/memory.md"] and by_substring.total == 1
    assert len(many.values) == 100 and many.total == MANY + 1 and many.has_more is True
    assert many.values[:2] == ["many/café notes?.md", "many/page-000.md"]
    assert everywhere.values == ["docs/overview.md"]  # in both corpora, offered once
    assert (unknown_corpus.values, unknown_corpus.total) == ([], 0)
    assert prompt_corpus.values == ["lodestar"]
    assert other_argument.values == []


async def test_prefix_matches_come_before_substring_matches(tmp_path: Path, cache_dir: Path) -> None:
    pages = {"guides/agents.md": "# A\n", "agents/overview.md": "# B\n", "zeta/agents-faq.md": "# C\n"}
    corpus = write_corpus(tmp_path / "small", pages)
    async with connect(tmp_path, cache_dir, "--corpus", f"small={corpus}") as client:
        result = await client.complete(TEMPLATE_REF, {"name": "path", "value": "agents"}, {"corpus": "small"})

    assert result.completion.values == ["agents/overview.md", "guides/agents.md", "zeta/agents-faq.md"]
    assert result.completion.total == 3


@pytest.mark.parametrize(("mode", "version"), MODES)
async def test_capabilities_name_only_what_is_served(
    tmp_path: Path, module_cache: Path, corpus: Path, mode: str, version: str
) -> None:
    async with connect(tmp_path, module_cache, *example(corpus), mode=mode) as client:
        assert client.protocol_version == version
        capabilities = client.server_capabilities.model_dump(by_alias=True, exclude_none=True)
        prompts = (await client.list_prompts()).prompts
        templates = (await client.list_resource_templates()).resource_templates

    assert capabilities == {
        "logging": {},  # an agent run's chunks go to a client that asks for debug logs
        "tools": {"listChanged": False},
        "resources": {"subscribe": False, "listChanged": False},
        "prompts": {"listChanged": False},
        "completions": {},
    }
    assert [p.name for p in prompts] == ["ask_docs"]
    assert [(a.name, a.required) for a in prompts[0].arguments] == [("question", True), ("corpus", False)]
    [template] = templates
    assert (template.uri_template, template.mime_type) == (TEMPLATE, "text/markdown")
    assert template.title == "Documentation page"


async def test_ask_docs_prompt(tmp_path: Path, module_cache: Path, corpus: Path) -> None:
    async with connect(tmp_path, module_cache, *example(corpus)) as client:
        prompt = await client.get_prompt("ask_docs", {"question": "How do threads work?", "corpus": "example"})
        everywhere = await client.get_prompt("ask_docs", {"question": "How do threads work?"})
        with pytest.raises(MCPError) as unknown:
            await client.get_prompt("ask_docs", {"question": "x", "corpus": "nope"})

    [message] = prompt.messages
    assert message.role == "user"
    assert "How do threads work?" in message.content.text
    assert 'search_docs with the question and corpus="example"' in message.content.text
    assert "cite every page you used as corpus:path#anchor" in message.content.text
    assert "to search all corpora" in everywhere.messages[0].content.text
    assert unknown.value.code == -32602
    assert "unknown corpus 'nope'; loaded corpora: lodestar, example" in unknown.value.message


def test_sdk_internals_the_resources_rely_on(tmp_path: Path) -> None:
    """register_resources replaces MCPServer's resources/list and resources/read handlers on its private low-level
    server; if an SDK upgrade renames it or stops reading handlers from it, this fails before any client does."""
    server = build_server(Settings(), DocsService([], tmp_path))
    lowlevel = server._lowlevel_server
    for method, name in [("resources/list", "list_pages"), ("resources/read", "_not_found_code")]:
        entry = lowlevel.get_request_handler(method)
        assert entry is not None and name in entry.handler.__qualname__
