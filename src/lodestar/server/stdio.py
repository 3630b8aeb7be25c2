"""The stdio transport with a faster stdout: the SDK writes each message through a worker thread (a write and a
flush, two thread hops), which caps an agent run at about 2,000 progress notifications a second and makes each one
cost the run 0.4 ms. Here stdout is asyncio's non-blocking pipe transport: a write goes straight to the pipe, and
`drain()` waits only when the client stops reading (scripts/bench_agents.py measures both)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from typing import Any, BinaryIO

from mcp.server.mcpserver import MCPServer


class PipeWriter:
    """The write/flush pair the SDK's stdio loop calls, over a non-blocking pipe transport."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> asyncio.StreamWriter:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_write_pipe(lambda: asyncio.streams.FlowControlMixin(loop), self._file)
        return asyncio.StreamWriter(transport, protocol, None, loop)

    async def write(self, text: str) -> None:
        if self._writer is None:
            self._writer = await self._open()
        self._writer.write(text.encode())

    async def flush(self) -> None:
        if self._writer is not None:
            await self._writer.drain()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _pipe_like(fd: int) -> bool:
    """A pipe or a socket that is stdout's alone. asyncio's pipe transport makes its file non-blocking for every
    descriptor on it: a terminal (stdin and stderr too) or one socket on stdin and stdout (socat, socket
    activation) would then read EOF on stdin, and a stderr on the same pipe (`2>&1`) could refuse a log line when
    the pipe is full, so those and a file on disk are written as before."""
    try:
        mode = os.fstat(fd).st_mode
        shared = any(os.path.sameopenfile(fd, other) for other in (0, 2))
    except OSError:
        return False
    return (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode)) and not shared


async def serve_stdio(server: MCPServer[Any]) -> None:
    """Serves `server` on stdin/stdout. The SDK still claims fd 1 (stray prints go to stderr, never the wire); only
    the writing changes. Windows, and a stdout that is a file, a terminal or stdin's socket, keep the SDK's own
    writer."""
    from mcp.server import stdio

    if sys.platform == "win32" or not _pipe_like(1):
        await server.run_stdio_async()
        return
    wire, release = stdio._claim_fd(1, sys.stdout, "wb", stdio._open_stdout_diversion)  # SDK internals, see tests
    writer = PipeWriter(wire)
    try:
        async with stdio.stdio_server(stdout=writer) as (read_stream, write_stream):  # type: ignore[arg-type]
            lowlevel = server._lowlevel_server
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
    finally:
        writer.close()
        with contextlib.suppress(OSError):  # the pipe goes back as it came, for whatever writes to it next
            os.set_blocking(wire.fileno(), True)
        if release is not None:
            release()
