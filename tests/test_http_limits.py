"""HTTP under load: sessions expire and give way, half-sent requests are dropped, connections are capped.

Each test runs `python -m lodestar --http --port 0` with small limits set through LODESTAR_* variables and drives
it with raw sockets, httpx and the real mcp client.
"""

from __future__ import annotations

import inspect
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import anyio
import httpx
import pytest
from mcp.server.mcpserver import MCPServer
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from pydantic import ValidationError
from test_http import INITIALIZE, MCP_HEADERS, START_TIMEOUT_S, Server, child_env, mcp_client, start_server, stop

from lodestar.cli import main
from lodestar.server.http import (
    MIN_TOKEN_CHARS,
    ConfigError,
    ConnectionLimits,
    IdleEvictingSessionManager,
    build_http_app,
    check_token,
)
from lodestar.settings import Settings, load_settings

WAIT_S = 30  # a generous bound: these tests check that nothing hangs, not how fast
LEGACY = {"mcp-protocol-version": "2025-11-25"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 2, "method": "tools/list"}
STRONG_TOKEN = "0123456789abcdef-strong"


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        threading.Event().wait(0.02)


def open_session(server: Server) -> str:
    response = httpx.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
    assert response.status_code == 200, response.text
    return response.headers["mcp-session-id"]


def list_tools(server: Server, session_id: str) -> int:
    headers = MCP_HEADERS | LEGACY | {"mcp-session-id": session_id}
    return httpx.post(server.url, json=TOOLS_LIST, headers=headers).status_code


@contextmanager
def busy(server: Server, session_id: str) -> Iterator[None]:
    """Holds the session's GET event stream open: a request in flight, so the session is busy."""
    headers = {"Accept": "text/event-stream", "mcp-session-id": session_id} | LEGACY
    with httpx.Client(timeout=WAIT_S) as http, http.stream("GET", server.url, headers=headers) as response:
        assert response.status_code == 200
        yield


def connect(server: Server) -> socket.socket:
    return socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset counts as closed)."""
    sock.settimeout(WAIT_S)
    received = b""
    try:
        while chunk := sock.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def wait_for_answers(socks: list[socket.socket], count: int) -> list[bytes]:
    """Reads whichever sockets the server answers and closes until `count` have been; the rest stay open."""
    answers: list[bytes] = []
    deadline = time.monotonic() + WAIT_S
    with selectors.DefaultSelector() as selector:
        for sock in socks:
            selector.register(sock, selectors.EVENT_READ)
        while len(answers) < count:
            assert time.monotonic() < deadline, f"{len(answers)} of {count} connections answered"
            for key, _ in selector.select(0.2):
                answers.append(read_until_closed(key.fileobj))  # type: ignore[arg-type]
                selector.unregister(key.fileobj)
        assert selector.select(0) == [], "more connections were closed than expected"
    return answers


def health(server: Server) -> int:
    return httpx.get(f"{server.base}/health", timeout=WAIT_S).status_code


@pytest.fixture
def serve(tmp_path: Path, corpus_dir: Path) -> Iterator[Callable[[dict[str, str]], Server]]:
    servers: list[Server] = []

    def start(env: dict[str, str]) -> Server:
        args = ["--http", "--port", "0", "--corpus", f"example={corpus_dir}"]
        servers.append(start_server(args, tmp_path / "cache", env))
        return servers[-1]

    yield start
    for server in servers:
        stop(server.proc)


# Sessions


def test_idle_session_expires_while_a_busy_one_lives_on(serve: Callable[[dict[str, str]], Server]) -> None:
    server = serve({"LODESTAR_SESSION_IDLE_TIMEOUT": "0.5"})
    kept = open_session(server)
    with busy(server, kept):
        abandoned = open_session(server)
        wait_until(lambda: f"HTTP session {abandoned} expired" in "".join(server.stderr), "the idle session to expire")
        assert list_tools(server, abandoned) == 404
        assert list_tools(server, kept) == 200  # held busy for longer than the idle timeout
    assert f"HTTP session {kept} expired" not in "".join(server.stderr)


@pytest.mark.anyio
async def test_idlest_session_gives_way_to_a_new_client(serve: Callable[[dict[str, str]], Server]) -> None:
    server = serve({"LODESTAR_MAX_SESSIONS": "2"})
    kept = open_session(server)
    with busy(server, kept):
        oldest, newer = open_session(server), open_session(server)  # the second pushes out the first
        http, client = mcp_client(server.url, "legacy")
        with anyio.fail_after(START_TIMEOUT_S):
            async with http, client:  # a real client gets in at the limit: `newer` gives way
                corpora = await client.call_tool("list_corpora", {})
        assert [c["name"] for c in corpora.structured_content["corpora"]] == ["lodestar", "example"]
        assert (list_tools(server, oldest), list_tools(server, newer), list_tools(server, kept)) == (404, 404, 200)
    assert f"HTTP session {oldest} closed to make room for a new one" in "".join(server.stderr)


def test_new_session_gets_503_only_while_every_session_is_busy(serve: Callable[[dict[str, str]], Server]) -> None:
    server = serve({"LODESTAR_MAX_SESSIONS": "2"})
    first, second = open_session(server), open_session(server)
    with busy(server, first):
        with busy(server, second):
            refused = httpx.post(server.url, json=INITIALIZE, headers=MCP_HEADERS)
        admitted = open_session(server)  # `second` is idle again and gives way
    assert refused.status_code == 503
    assert refused.json()["error"]["message"] == "Too many open sessions"
    assert (list_tools(server, first), list_tools(server, second), list_tools(server, admitted)) == (200, 404, 200)


def test_session_manager_relies_on_sdk_internals_that_still_exist() -> None:
    """IdleEvictingSessionManager overrides and reads these SDK internals; an SDK upgrade that renames or reshapes
    them must fail here, not silently stop evicting sessions."""
    assert list(inspect.signature(StreamableHTTPSessionManager._admit_session).parameters) == ["self", "requestor"]
    discard = StreamableHTTPSessionManager._discard_session
    assert list(inspect.signature(discard).parameters) == ["self", "session_id", "transport"]
    server = MCPServer("pin")
    build_http_app(server, Settings())
    manager = server.session_manager
    assert type(manager) is IdleEvictingSessionManager
    assert manager._server_instances == {} and manager._session_owners == {}
    assert (manager.max_sessions, manager.session_idle_timeout) == (100, 600)
    transport = StreamableHTTPServerTransport(mcp_session_id="pin", idle_timeout=1)
    assert transport.idle_scope is None  # created by connect(); the eviction skips sessions without one


# Half-sent requests


def read_response(sock: socket.socket) -> bytes:
    """One whole response with a Content-Length, leaving the connection open."""
    data = b""
    while b"\r\n\r\n" not in data or len(data.partition(b"\r\n\r\n")[2]) < _content_length(data):
        chunk = sock.recv(4096)
        assert chunk, f"the server closed the connection mid-response: {data!r}"
        data += chunk
    return data


def _content_length(data: bytes) -> int:
    match = re.search(rb"(?i)content-length: *(\d+)", data)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize("reused", [False, True], ids=["first request", "after a request"])
def test_trickled_headers_are_cut_off_while_health_answers(
    serve: Callable[[dict[str, str]], Server], reused: bool
) -> None:
    server = serve({"LODESTAR_HEADER_TIMEOUT": "0.5"})
    sock = connect(server)
    if reused:  # a kept-alive connection owes the next request's headers in time too
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock).startswith(b"HTTP/1.1 200 ")
    sock.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    health_meanwhile = None
    with sock, selectors.DefaultSelector() as selector:
        selector.register(sock, selectors.EVENT_READ)
        deadline = time.monotonic() + WAIT_S
        while not selector.select(0.1):  # a slowloris: one more header line every tenth of a second
            assert time.monotonic() < deadline, "the server kept a trickling connection open"
            health_meanwhile = health_meanwhile or health(server)
            sock.sendall(b"X-Slow: 1\r\n")
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request headers not received within 0.5 s\n")
    assert health_meanwhile == 200
    with connect(server) as idle:  # a connection that sends nothing is closed without an answer
        assert read_until_closed(idle) == b""
    assert health(server) == 200


@pytest.mark.parametrize("protocol", ["2025-11-25", "2026-07-28"])
def test_stalled_body_is_cut_off(serve: Callable[[dict[str, str]], Server], protocol: str) -> None:
    server = serve({"LODESTAR_BODY_TIMEOUT": "0.5"})
    head = (
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        f"Accept: application/json, text/event-stream\r\nMcp-Protocol-Version: {protocol}\r\n"
        "Content-Length: 1000\r\n\r\n"
    )
    with connect(server) as sock:
        sock.sendall(head.encode() + b'{"jsonrpc": "2.0", ')
        answer = read_until_closed(sock)
    assert answer.startswith(b"HTTP/1.1 408 ")
    assert answer.endswith(b"request body not received within 0.5 s\n")
    assert open_session(server)
    assert health(server) == 200
    assert "Traceback" not in "".join(server.stderr)  # the cut-off is the client's doing, not a server error


# Connections


def test_connections_beyond_the_cap_get_503_and_the_server_recovers(
    serve: Callable[[dict[str, str]], Server],
) -> None:
    server = serve({"LODESTAR_MAX_CONNECTIONS": "4", "LODESTAR_HEADER_TIMEOUT": "120"})
    socks = [connect(server) for _ in range(7)]
    try:
        answers = wait_for_answers(socks, 3)
        assert all(
            a.startswith(b"HTTP/1.1 503 ") and a.endswith(b"too many open connections; retry shortly\n")
            for a in answers
        )
        assert health(server) == 503
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: health(server) == 200, "/health to answer once the connections closed")
    assert open_session(server)
    assert "".join(server.stderr).count("connections are open, the limit (--max-connections)") == 1


@pytest.mark.skipif(resource.getrlimit(resource.RLIMIT_NOFILE)[0] < 2048, reason="needs 2048 open files here")
def test_default_cap_keeps_a_flood_below_the_open_file_limit(serve: Callable[[dict[str, str]], Server]) -> None:
    """The child inherits an open-file limit of 512, so its default cap is 256; 320 connections do not make it
    run out of file descriptors."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (512, hard))
    try:
        server = serve({"LODESTAR_HEADER_TIMEOUT": "120"})
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    socks = [connect(server) for _ in range(320)]
    try:
        answers = wait_for_answers(socks, 320 - 256)
        assert all(answer.startswith(b"HTTP/1.1 503 ") for answer in answers)
    finally:
        for sock in socks:
            sock.close()
    wait_until(lambda: health(server) == 200, "/health to answer once the flood ended")
    assert server.proc.poll() is None
    log = "".join(server.stderr)
    assert "Too many open files" not in log and "out of system resource" not in log


def test_connection_limits_follow_the_open_file_limit() -> None:
    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    derived = ConnectionLimits.from_settings(Settings())
    assert derived.max_connections == min(1000, soft // 2)
    assert 8 <= derived.backlog <= 128
    assert derived.max_connections + 2 * derived.backlog < soft
    assert ConnectionLimits.from_settings(Settings(max_connections=5)).max_connections == 5


# Settings and the token


def test_limits_come_from_variables_and_flags() -> None:
    env = {
        "LODESTAR_SESSION_IDLE_TIMEOUT": "60",
        "LODESTAR_MAX_SESSIONS": "7",
        "LODESTAR_HEADER_TIMEOUT": "2.5",
        "LODESTAR_BODY_TIMEOUT": "5",
        "LODESTAR_MAX_CONNECTIONS": "50",
    }
    settings = load_settings({"max_sessions": 9}, env)
    assert (settings.session_idle_timeout, settings.max_sessions, settings.header_timeout) == (60, 9, 2.5)
    assert (settings.body_timeout, settings.max_connections) == (5, 50)
    defaults = load_settings({}, {})
    assert (defaults.session_idle_timeout, defaults.max_sessions, defaults.max_connections) == (600, 100, None)
    assert (defaults.header_timeout, defaults.body_timeout) == (10, 30)
    with pytest.raises(ValidationError):
        load_settings({}, {"LODESTAR_HEADER_TIMEOUT": "inf"})


def test_bad_limit_flag_names_flag_and_variable() -> None:
    with pytest.raises(SystemExit) as info:
        main(["--http", "--max-sessions", "0"])
    assert "invalid max_sessions (--max-sessions or LODESTAR_MAX_SESSIONS)" in str(info.value)


@pytest.mark.parametrize(
    ("host", "token", "problem"),
    [
        ("0.0.0.0", "short-token", f"at least {MIN_TOKEN_CHARS} characters"),
        ("0.0.0.0", f" {STRONG_TOKEN}", "whitespace"),
        ("127.0.0.1", f"{STRONG_TOKEN}\n", "whitespace"),
        ("0.0.0.0", None, "without a token"),
    ],
)
def test_weak_or_padded_token_is_refused(host: str, token: str | None, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        check_token(Settings(host=host, auth_token=token))
    assert problem in str(info.value) and "--auth-token" in str(info.value)


@pytest.mark.parametrize(("host", "token"), [("127.0.0.1", "short"), ("0.0.0.0", STRONG_TOKEN), ("::1", None)])
def test_acceptable_token(host: str, token: str | None) -> None:
    check_token(Settings(host=host, auth_token=token))


@pytest.mark.parametrize(
    ("args", "env", "expected"),
    [
        (["--auth-token", "s3cret"], {}, "with a 6-character token"),
        ([], {"LODESTAR_AUTH_TOKEN": f"{STRONG_TOKEN} "}, "starts or ends with whitespace"),
    ],
)
def test_public_server_with_weak_token_does_not_start(
    tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "lodestar", "--http", "--host", "0.0.0.0", "--port", "0", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT_S,
        env=child_env(tmp_path / "cache") | env,
    )
    assert proc.returncode != 0
    assert expected in proc.stderr
    assert "--auth-token or LODESTAR_AUTH_TOKEN" in proc.stderr
    assert "serving MCP" not in proc.stderr
