"""Streamable HTTP: `python -m lodestar --http --port 0` in a subprocess, driven by httpx and the real mcp.Client."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from conftest import write_corpus
from mcp import Client, MCPError
from mcp.client.streamable_http import streamable_http_client

pytestmark = pytest.mark.anyio

TOKEN = "s3cret-token-for-tests"  # 16 characters at least: test_public_host_with_token binds 0.0.0.0
START_TIMEOUT_S = 30
SERVING = re.compile(r"serving MCP at (http://\S+/mcp)")
INITIALIZE = {
    "jsonrpc": "2.0",
    "id": 1,
    "method": "initialize",
    "params": {"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}},
}
MCP_HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}


@dataclass
class Server:
    proc: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT/mcp
    stderr: list[str] = field(default_factory=list)

    @property
    def base(self) -> str:
        return self.url.removesuffix("/mcp")

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])


def child_env(cache_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODESTAR_")}
    return env | {"LODESTAR_CACHE_DIR": str(cache_dir)}


def start_server(args: list[str], cache_dir: Path, env: dict[str, str] | None = None) -> Server:
    """Starts the server, waits for its `serving MCP at URL` line on stderr, then for /health to answer.
    A thread keeps draining stderr so the child never blocks on a full pipe."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "lodestar", *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(cache_dir) | (env or {}),
    )
    lines: queue.Queue[str | None] = queue.Queue()
    server = Server(proc, "")

    def drain() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            server.stderr.append(line)
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while not server.url:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            if line is None:
                raise RuntimeError(f"server exited with {proc.wait()}: {''.join(server.stderr)}")
            if match := SERVING.search(line):
                server.url = match.group(1)
        while True:  # bounded poll: the socket is bound before uvicorn starts listening on it
            try:
                if httpx.get(f"{server.base}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                threading.Event().wait(0.02)
    except BaseException:
        stop(proc)
        raise
    return server


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def module_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("http") / "example-docs")


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("http-cache")


@pytest.fixture(scope="module")
def open_server(module_corpus: Path, module_cache: Path) -> Iterator[Server]:
    args = ["--http", "--port", "0", "--allowed-host", "docs.internal", "--corpus", f"example={module_corpus}"]
    server = start_server(args, module_cache)
    yield server
    stop(server.proc)


@pytest.fixture(scope="module")
def token_server(module_corpus: Path, module_cache: Path) -> Iterator[Server]:
    args = ["--http", "--port", "0", "--auth-token", TOKEN, "--corpus", f"example={module_corpus}"]
    server = start_server(args, module_cache)
    yield server
    stop(server.proc)


def mcp_client(url: str, mode: str = "auto", headers: dict[str, str] | None = None) -> tuple[Any, Client]:
    http = httpx2.AsyncClient(headers=headers or {}, timeout=httpx2.Timeout(30, read=60))
    return http, Client(streamable_http_client(url, http_client=http), mode=mode)


def text_of(result: Any) -> str:
    return "\n".join(block.text for block in result.content if block.type == "text")


def health_once_loaded(base: str) -> dict[str, Any]:
    """/health after the corpora were tried: a bounded poll, since loading runs on a thread of the server."""
    for _ in range(600):
        response = httpx.get(f"{base}/health", timeout=5)
        assert response.status_code == 200
        report: dict[str, Any] = response.json()
        if report["status"] != "loading":
            return report
        threading.Event().wait(0.05)
    raise AssertionError("the server kept loading its corpora")


def test_health_answers_ok(open_server: Server) -> None:
    assert health_once_loaded(open_server.base) == {"status": "ok", "corpora": 2}
    assert open_server.url == f"http://127.0.0.1:{open_server.port}/mcp"
    assert open_server.port != 8765  # --port 0 picked a free port


@pytest.mark.parametrize("mode", ["legacy", "auto"])
async def test_mcp_session_over_streamable_http(open_server: Server, module_corpus: Path, mode: str) -> None:
    http, client = mcp_client(open_server.url, mode)
    with anyio.fail_after(START_TIMEOUT_S):
        async with http, client:
            protocol = client.protocol_version
            found = await client.call_tool("search_docs", {"query": "semantic recall", "corpus": "example"})
            page = await client.call_tool(
                "read_doc", {"path": "docs/agents/memory.md", "corpus": "example", "heading": "semantic-recall"}
            )
            resource = await client.read_resource("docs://example/docs/overview.md")
            missing = await client.call_tool("read_doc", {"path": "docs/nope.md", "corpus": "example"})

    assert protocol == ("2025-11-25" if mode == "legacy" else "2026-07-28")
    hit = found.structured_content["hits"][0]
    assert (hit["corpus"], hit["path"], hit["anchor"]) == ("example", "docs/agents/memory.md", "semantic-recall")
    assert "example:docs/agents/memory.md#semantic-recall" in text_of(found)
    content = page.structured_content["content"]
    assert content.startswith("## Semantic recall") and "Threads" not in content
    assert resource.contents[0].mime_type == "text/markdown"
    assert resource.contents[0].text == (module_corpus / "docs" / "overview.md").read_text("utf-8")
    assert missing.is_error is True and "docs/overview.md" in text_of(missing)


async def test_refresh_progress_arrives_over_sse(tmp_path: Path, corpus_dir: Path) -> None:
    server = start_server(["--http", "--port", "0", "--corpus", f"example={corpus_dir}"], tmp_path / "cache")
    events: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        events.append((progress, total, message))

    try:
        http, client = mcp_client(server.url)
        with anyio.fail_after(START_TIMEOUT_S):
            async with http, client:
                before = await client.call_tool("search_docs", {"query": "flibbertigibbet", "corpus": "example"})
                page = corpus_dir / "reference" / "config.md"
                page.write_text(page.read_text("utf-8") + "\n## Flibbertigibbet\n\nA flibbertigibbet knob.\n", "utf-8")
                refreshed = await client.call_tool("refresh_docs", {}, progress_callback=on_progress)
                after = await client.call_tool("search_docs", {"query": "flibbertigibbet", "corpus": "example"})
    finally:
        stop(server.proc)

    assert before.structured_content["hits"] == []
    assert refreshed.is_error is False
    assert [(progress, total) for progress, total, _ in events] == [(1, 2), (2, 2)]
    assert [(message or "").split(":")[0] for _, _, message in events] == ["lodestar", "example"]
    assert [(h["path"], h["anchor"]) for h in after.structured_content["hits"]] == [
        ("reference/config.md", "flibbertigibbet")
    ]


def test_foreign_host_header_is_rejected(open_server: Server) -> None:
    good = httpx.post(open_server.url, json=INITIALIZE, headers=MCP_HEADERS)
    bad = httpx.post(open_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Host": "evil.example"})
    assert good.status_code == 200
    assert bad.status_code == 421
    assert "start the server with --allowed-host evil.example" in bad.json()["error"]


def test_allowed_host_flag_extends_the_allow_list(open_server: Server) -> None:
    named = {"Host": f"docs.internal:{open_server.port}", "Origin": f"https://docs.internal:{open_server.port}"}
    response = httpx.post(open_server.url, json=INITIALIZE, headers=MCP_HEADERS | named)
    other = httpx.post(open_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Host": "docs.external"})
    assert response.status_code == 200
    assert other.status_code == 421


def test_foreign_origin_is_rejected(open_server: Server) -> None:
    local = httpx.post(
        open_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Origin": f"http://localhost:{open_server.port}"}
    )
    foreign = httpx.post(open_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Origin": "http://evil.example"})
    assert local.status_code == 200
    assert foreign.status_code == 403


def test_token_is_required_for_mcp_but_not_health(token_server: Server) -> None:
    missing = httpx.post(token_server.url, json=INITIALIZE, headers=MCP_HEADERS)
    wrong = httpx.post(token_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": "Bearer nope"})
    bare = httpx.post(token_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": TOKEN})
    good = httpx.post(token_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": f"Bearer {TOKEN}"})
    health = httpx.get(f"{token_server.base}/health")

    assert missing.status_code == 401
    assert missing.headers["www-authenticate"] == "Bearer"
    assert missing.json()["error"].startswith("unauthorized: a bearer token is missing; send the header Authorization")
    assert "--auth-token or LODESTAR_AUTH_TOKEN" in missing.json()["error"]
    assert wrong.status_code == 401
    assert wrong.json()["error"].startswith("unauthorized: the bearer token is wrong; ")
    assert bare.status_code == 401
    assert good.status_code == 200
    assert health.status_code == 200 and health.json()["status"] in ("ok", "loading")


@pytest.mark.parametrize("path", ["/.well-known/oauth-protected-resource", "/.well-known/oauth-authorization-server"])
def test_well_known_paths_are_not_found_without_a_token_so_clients_skip_oauth(
    token_server: Server, open_server: Server, path: str
) -> None:
    guarded = httpx.get(f"{token_server.base}{path}")
    assert guarded.status_code == 404 and "Authorization: Bearer" in guarded.json()["error"]
    assert httpx.get(f"{open_server.base}{path}").status_code == 404


async def test_mcp_client_with_bearer_token(token_server: Server) -> None:
    http, client = mcp_client(token_server.url, headers={"Authorization": f"Bearer {TOKEN}"})
    with anyio.fail_after(START_TIMEOUT_S):
        async with http, client:
            corpora = await client.call_tool("list_corpora", {})
    assert [c["name"] for c in corpora.structured_content["corpora"]] == ["lodestar", "example"]


async def test_mcp_client_without_token_fails(token_server: Server) -> None:
    http, client = mcp_client(token_server.url)
    with anyio.fail_after(START_TIMEOUT_S), pytest.raises(BaseException) as info:
        async with http, client:
            await client.list_tools()
    assert isinstance(info.value, BaseExceptionGroup)
    assert info.group_contains(MCPError, depth=None)


def test_public_host_without_token_is_refused(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lodestar", "--http", "--host", "0.0.0.0", "--port", "0"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env=child_env(tmp_path / "cache"),
    )
    assert proc.returncode != 0
    assert "--auth-token" in proc.stderr
    assert "serving MCP" not in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize("token_from", ["flag", "env"])
def test_public_host_with_token(tmp_path: Path, corpus_dir: Path, token_from: str) -> None:
    args = ["--http", "--host", "0.0.0.0", "--port", "0", "--corpus", f"example={corpus_dir}"]
    if token_from == "flag":
        args += ["--auth-token", TOKEN]
    env = {"LODESTAR_AUTH_TOKEN": TOKEN} if token_from == "env" else {}
    try:
        server = start_server(args, tmp_path / "cache", env)
    except RuntimeError as exc:
        if "cannot listen" in str(exc):
            pytest.skip(f"cannot bind 0.0.0.0 here: {exc}")
        raise
    try:
        local = f"http://127.0.0.1:{server.port}"
        without = httpx.post(f"{local}/mcp", json=INITIALIZE, headers=MCP_HEADERS)
        with_token = httpx.post(
            f"{local}/mcp", json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": f"Bearer {TOKEN}"}
        )
        health = httpx.get(f"{local}/health")
    finally:
        stop(server.proc)
    assert server.url.startswith("http://0.0.0.0:")
    assert without.status_code == 401
    assert with_token.status_code == 200
    assert health.status_code == 200


def test_bearer_scheme_is_case_insensitive(token_server: Server) -> None:
    response = httpx.post(token_server.url, json=INITIALIZE, headers=MCP_HEADERS | {"Authorization": f"bearer {TOKEN}"})
    assert response.status_code == 200
