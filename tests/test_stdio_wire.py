"""The stdio wire written by lodestar.server.stdio: a tool's stray prints never reach it, a burst of progress
arrives whole and in order, and a stdout that is a file keeps the SDK's own writer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.stdio import stdio_client
from test_agent_server import TIMEOUT_S, Progress, connect, serve_args, write_app

pytestmark = pytest.mark.anyio

NOISY_APP = '''
import os

from lodestar import Agent, Lodestar, tool
from lodestar.runtime.models.scripted import ScriptedModel, call, calls
from lodestar.storage import SQLiteStorage


@tool
def shout(n: int) -> str:
    """Print to stdout, as careless code does."""
    print("stray print")
    os.write(1, b"stray write\\n")
    return f"shouted {n}"


script = [calls(*(call("shout", {"n": i}) for i in range(200))), "done"]
app = Lodestar(agents=[Agent("noisy", model=ScriptedModel(script), tools=[shout])], storage=SQLiteStorage("a.db"))
'''


async def test_stray_output_misses_the_wire_and_every_notification_arrives(tmp_path: Path) -> None:
    write_app(tmp_path, NOISY_APP)
    progress: list[float] = []

    async def seen(value: float, total: float | None, message: str | None) -> None:
        progress.append(value)

    async with connect(tmp_path, "--app", "myagents:app") as client:
        result = await client.call_tool("ask_noisy", {"message": "go"}, progress_callback=seen)
    assert not result.is_error and result.structured_content is not None
    assert result.structured_content["text"] == "done" and len(result.structured_content["tool_calls"]) == 200
    assert progress == list(range(1, len(progress) + 1)) and len(progress) > 1000
    assert (tmp_path / "server.err").read_text().count("stray write") == 200


def test_a_stdout_that_is_a_file_is_served_too(tmp_path: Path) -> None:
    """Not a pipe: the SDK's writer serves it (asyncio's pipe transport takes pipes, sockets and terminals)."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]  # fmt: skip
    out = tmp_path / "out.jsonl"
    env = {"LODESTAR_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    with out.open("wb") as stdout:
        server = subprocess.Popen(
            [sys.executable, *serve_args(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=stdout,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert server.stdin is not None
        server.stdin.write("".join(json.dumps(r) + "\n" for r in requests).encode())
        server.stdin.flush()
        deadline = time.monotonic() + 60  # stdin stays open until both answers are written: EOF would end the session
        while out.read_text().count("\n") < 2 and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.01)
        server.stdin.close()
        server.wait(timeout=60)
    answers = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["id"] for a in answers] == [1, 2]
    assert "search_docs" in {tool["name"] for tool in answers[1]["result"]["tools"]}


HELD_SERVER = """
import anyio
from mcp.server.mcpserver import Context, MCPServer

from lodestar.runtime.chunks.base import ErrorInfo
from lodestar.runtime.chunks.run import ErrorChunk, ErrorPayload
from lodestar.server.progress import ChunkProgress
from lodestar.server.stdio import serve_stdio

server = MCPServer("held")


def chunk(message: str) -> ErrorChunk:
    return ErrorChunk(run_id="r", payload=ErrorPayload(error=ErrorInfo(message=message)))


@server.tool()
async def rounds(ctx: Context) -> str:
    progress = ChunkProgress()
    for n in range(3):  # while no round is open
        await progress.chunk(chunk(f"held {n}"))

    async def run_goes_on() -> None:  # the model answered: the run goes on as the next round opens
        for n in range(3):
            await progress.chunk(chunk(f"new {n}"))

    async with anyio.create_task_group() as group:
        group.start_soon(progress.attach, ctx)
        group.start_soon(run_goes_on)
    return "ok"


anyio.run(serve_stdio, server)
"""


async def test_notifications_held_between_rounds_go_out_before_the_next_rounds_own(tmp_path: Path) -> None:
    """A sampling run's chunks while no round is open are held (ChunkProgress.attach sends them as the next round
    opens); the run's new chunks, sent meanwhile, must come after them, not between them."""
    (tmp_path / "held_server.py").write_text(HELD_SERVER, "utf-8")
    progress = Progress()
    params = StdioServerParameters(command=sys.executable, args=[str(tmp_path / "held_server.py")])
    with anyio.fail_after(TIMEOUT_S), (tmp_path / "server.err").open("a") as errlog:
        async with Client(stdio_client(params, errlog=errlog)) as client:
            result = await client.call_tool("rounds", {}, progress_callback=progress)
    assert not result.is_error
    assert progress.lines == [f"error {kind} {n}" for kind in ("held", "new") for n in range(3)]


def _exchange(tmp_path: Path, ours: int, theirs: int) -> list[int]:
    """The ids answered to initialize and two tools/list, with the server's stdin and stdout on `theirs`, one
    descriptor as a terminal or a socketpair gives it (our end: `ours`)."""
    import os
    import select

    env = {"LODESTAR_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    with (tmp_path / "server.err").open("wb") as errlog:
        server = subprocess.Popen(
            [sys.executable, *serve_args(tmp_path)], stdin=theirs, stdout=theirs, stderr=errlog, env=env
        )
    os.close(theirs)
    answered: list[int] = []
    buffer = b""
    deadline = time.monotonic() + 60  # a bound that only fires on a hang
    requests = [
        {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
        {"jsonrpc": "2.0", "method": "notifications/initialized"},
        {"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
    ]  # fmt: skip
    try:
        for request in requests:
            os.write(ours, (json.dumps(request) + "\n").encode())
            while "id" in request and request["id"] not in answered and time.monotonic() < deadline:
                if server.poll() is not None:
                    return answered  # it quit
                if select.select([ours], [], [], 0.1)[0]:
                    try:
                        buffer += os.read(ours, 1 << 16)
                    except OSError:  # a terminal whose other side is closed
                        return answered
                    *lines, buffer = buffer.split(b"\n")
                    answered += [json.loads(line)["id"] for line in lines if line.startswith(b"{")]
        return answered
    finally:
        server.kill()
        server.wait()
        os.close(ours)


def test_a_terminal_for_stdin_and_stdout_is_served_past_the_first_answer(tmp_path: Path) -> None:
    """A terminal is one open file for stdin and stdout: making stdout non-blocking made stdin read EOF."""
    import pty
    import termios

    ours, theirs = pty.openpty()
    attrs = termios.tcgetattr(theirs)
    attrs[3] &= ~(termios.ECHO | termios.ICANON)  # what we type is not echoed back onto the wire we read
    termios.tcsetattr(theirs, termios.TCSANOW, attrs)
    assert _exchange(tmp_path, ours, theirs) == [0, 1, 2]


def test_one_socket_for_stdin_and_stdout_is_served_past_the_first_answer(tmp_path: Path) -> None:
    """As socat's EXEC or a socket-activated service starts a server: one socket on both descriptors."""
    import socket

    ours, theirs = socket.socketpair()
    assert _exchange(tmp_path, ours.detach(), theirs.detach()) == [0, 1, 2]


def test_the_stdout_pipe_is_left_blocking_as_it_came(tmp_path: Path) -> None:
    """The pipe transport makes the pipe's file non-blocking; whatever writes to it after the server (a wrapper
    script, the next command of a shell) must not meet EAGAIN."""
    requests = [
        {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}},
    ]  # fmt: skip
    ours, theirs = os.pipe()
    env = {"LODESTAR_CACHE_DIR": str(tmp_path / "cache"), "PATH": ""}
    server = subprocess.Popen(
        [sys.executable, *serve_args(tmp_path)],
        stdin=subprocess.PIPE,
        stdout=theirs,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        assert server.stdin is not None
        server.stdin.write("".join(json.dumps(r) + "\n" for r in requests).encode())
        server.stdin.flush()
        with os.fdopen(ours, "rb", closefd=False) as wire:
            assert json.loads(wire.readline())["id"] == 1  # served through the pipe transport
        server.stdin.close()
        assert server.wait(timeout=60) == 0
        assert os.get_blocking(theirs)  # the same open file as the server's stdout
    finally:
        server.kill()
        os.close(ours)
        os.close(theirs)
