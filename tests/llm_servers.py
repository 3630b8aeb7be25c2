"""OpenAI- and Anthropic-compatible servers for tests: real HTTP and real SSE on 127.0.0.1, scripted answers.

Each server runs uvicorn in a thread with its own event loop, once per session; the fixtures reset its
script and request log around every test. Queue answers with `server.script(Turn(...), Fail(500), ...)`:
each request takes the next one, and a callable gets the request body and returns the answer.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

START_TIMEOUT_S = 10.0


@dataclass
class Turn:
    """A successful streamed answer. Tool call args are a dict, or raw (maybe malformed) JSON text."""

    text: str = ""
    tool_calls: list[tuple[str, dict[str, Any] | str]] = field(default_factory=list)
    reasoning: str = ""
    usage: tuple[int, int] = (10, 5)
    finish: str | None = None  # the provider's raw finish reason; by default stop, or tool calls when there are any


@dataclass
class Fail:
    """An HTTP error answer: a JSON body, or a str body sent as text/html (a proxy's error page)."""

    status: int
    body: Any = None
    headers: dict[str, str] | None = None


@dataclass
class Stall:
    """Take the request and answer nothing until the test ends."""


@dataclass
class Raw:
    """SSE events sent as given: dicts as JSON (Anthropic events named after their `type`), strings verbatim."""

    payloads: list[dict[str, Any] | str]


@dataclass
class Wire:
    """A text/event-stream body sent exactly as given, piece by piece, as a provider's bytes were recorded.

    Each piece goes out as its own body chunk, so a piece may end inside an event, a line or a UTF-8
    character. With `cut`, the server drops the connection after the last piece instead of ending the body.
    """

    pieces: list[str | bytes]
    cut: bool = False


class ConnectionDropped(Exception):
    """Raised inside a response body: the server closes the connection without ending the body."""


Answer = Turn | Fail | Stall | Raw | Wire
Scripted = Answer | Callable[[dict[str, Any]], Answer]


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # lower-case names
    body: dict[str, Any]


@dataclass(frozen=True)
class Dialect:
    """What differs between the two APIs: the endpoint, the base URL suffix and the SSE rendering."""

    path: str
    url_suffix: str
    render: Callable[[Turn, dict[str, Any]], list[dict[str, Any] | str]]
    named_events: bool


def pieces(text: str, parts: int = 3) -> list[str]:
    """Split text into up to `parts` non-empty fragments, the way a model streams it."""
    size = max(1, -(-len(text) // parts))
    return [text[start : start + size] for start in range(0, len(text), size)]


def args_text(args: dict[str, Any] | str) -> str:
    return args if isinstance(args, str) else json.dumps(args)


def openai_events(turn: Turn, body: dict[str, Any]) -> list[dict[str, Any] | str]:
    head = {"id": "chatcmpl-test", "object": "chat.completion.chunk", "model": body.get("model")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return head | {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    events: list[dict[str, Any] | str] = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"reasoning_content": piece}) for piece in pieces(turn.reasoning)]
    events += [chunk({"content": piece}) for piece in pieces(turn.text)]
    for index, (name, args) in enumerate(turn.tool_calls):
        opening = {"index": index, "id": f"call_{uuid.uuid4().hex[:12]}", "type": "function"}
        events.append(chunk({"tool_calls": [opening | {"function": {"name": name, "arguments": ""}}]}))
        events += [
            chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
            for piece in pieces(args_text(args))
        ]
    events.append(chunk({}, turn.finish or ("tool_calls" if turn.tool_calls else "stop")))
    if (body.get("stream_options") or {}).get("include_usage"):
        prompt, completion = turn.usage
        usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
        events.append(head | {"choices": [], "usage": usage})
    return [*events, "[DONE]"]


def anthropic_events(turn: Turn, body: dict[str, Any]) -> list[dict[str, Any] | str]:
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if turn.reasoning:
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in pieces(turn.reasoning)]
        blocks.append(({"type": "thinking", "thinking": ""}, [*deltas, {"type": "signature_delta", "signature": "x"}]))
    if turn.text:
        deltas = [{"type": "text_delta", "text": piece} for piece in pieces(turn.text)]
        blocks.append(({"type": "text", "text": ""}, deltas))
    for name, args in turn.tool_calls:
        start = {"type": "tool_use", "id": f"toolu_{uuid.uuid4().hex[:12]}", "name": name, "input": {}}
        fragments = ["", *pieces(args_text(args))]  # the real API opens with an empty fragment
        blocks.append((start, [{"type": "input_json_delta", "partial_json": piece} for piece in fragments]))
    prompt, completion = turn.usage
    message = {"id": "msg_test", "type": "message", "role": "assistant", "model": body.get("model"), "content": []}
    events: list[dict[str, Any] | str] = [
        {"type": "message_start", "message": message | {"usage": {"input_tokens": prompt, "output_tokens": 1}}},
        {"type": "ping"},
    ]
    for index, (start, deltas) in enumerate(blocks):
        events.append({"type": "content_block_start", "index": index, "content_block": start})
        events += [{"type": "content_block_delta", "index": index, "delta": delta} for delta in deltas]
        events.append({"type": "content_block_stop", "index": index})
    reason = turn.finish or ("tool_use" if turn.tool_calls else "end_turn")
    events.append({"type": "message_delta", "delta": {"stop_reason": reason}, "usage": {"output_tokens": completion}})
    return [*events, {"type": "message_stop"}]


OPENAI = Dialect(path="/v1/chat/completions", url_suffix="/v1", render=openai_events, named_events=False)
ANTHROPIC = Dialect(path="/v1/messages", url_suffix="", render=anthropic_events, named_events=True)


class LLMServer:
    """A scripted provider server on an ephemeral port."""

    def __init__(self, dialect: Dialect) -> None:
        self.dialect = dialect
        self.requests: list[Received] = []
        self._queue: deque[Scripted] = deque()
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._release: asyncio.Event | None = None
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.root = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self.url = self.root + dialect.url_suffix
        app = Starlette(routes=[Route(dialect.path, self._handle, methods=["POST"])], lifespan=self._lifespan)
        config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False, timeout_graceful_shutdown=2)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True)

    def script(self, *answers: Scripted) -> None:
        self._queue.extend(answers)

    def reset(self) -> None:
        """Forget the script and the log, and let stalled requests go so nothing outlives its test."""
        self._queue.clear()
        self.requests.clear()
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._release_stalls)

    def start(self) -> LLMServer:
        # The socket already listens, so early connections wait in its backlog; the event only proves startup worked.
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT_S):
            raise RuntimeError(f"the test {self.dialect.path} server did not start within {START_TIMEOUT_S} s")
        return self

    def stop(self) -> None:
        self.reset()
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        self._socket.close()

    @asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        self._loop, self._release = asyncio.get_running_loop(), asyncio.Event()
        self._ready.set()
        yield

    def _release_stalls(self) -> None:
        assert self._release is not None
        self._release.set()
        self._release = asyncio.Event()

    async def _handle(self, request: Request) -> Response:
        body = await request.json()
        self.requests.append(Received(request.url.path, dict(request.headers), body))
        answer = self._next(body)
        if isinstance(answer, Fail) and isinstance(answer.body, str):
            return Response(answer.body, answer.status, answer.headers, media_type="text/html")
        if isinstance(answer, Fail):
            default = {"error": {"type": "api_error", "message": f"scripted failure: HTTP {answer.status}"}}
            return JSONResponse(answer.body or default, answer.status, answer.headers)
        if isinstance(answer, Stall):
            assert self._release is not None
            await self._release.wait()
            return JSONResponse({"error": {"message": "stalled request released"}}, 503)
        if isinstance(answer, Wire):
            return StreamingResponse(self._wire(answer), media_type="text/event-stream")
        payloads = answer.payloads if isinstance(answer, Raw) else self.dialect.render(answer, body)
        return StreamingResponse(self._sse(payloads), media_type="text/event-stream")

    def _next(self, body: dict[str, Any]) -> Answer:
        if not self._queue:
            message = f"the test server's script ran out at request {len(self.requests)}; queue more with script()"
            return Fail(500, {"error": {"type": "api_error", "message": message}})
        answer = self._queue.popleft()
        return answer(body) if callable(answer) else answer

    async def _wire(self, answer: Wire) -> AsyncIterator[bytes]:
        for piece in answer.pieces:
            yield piece.encode() if isinstance(piece, str) else piece
        if answer.cut:
            raise ConnectionDropped("the test server drops the connection mid-body, as scripted")

    async def _sse(self, payloads: list[dict[str, Any] | str]) -> AsyncIterator[str]:
        for payload in payloads:
            if isinstance(payload, str):
                yield f"data: {payload}\n\n"
            else:
                name = f"event: {payload.get('type')}\n" if self.dialect.named_events else ""
                yield f"{name}data: {json.dumps(payload)}\n\n"


def serve(dialect: Dialect) -> Iterator[LLMServer]:
    server = LLMServer(dialect).start()
    try:
        yield server
    finally:
        server.stop()


def fresh(server: LLMServer) -> Iterator[LLMServer]:
    server.reset()
    yield server
    server.reset()


@pytest.fixture(scope="session")
def openai_server_session() -> Iterator[LLMServer]:
    yield from serve(OPENAI)


@pytest.fixture(scope="session")
def anthropic_server_session() -> Iterator[LLMServer]:
    yield from serve(ANTHROPIC)


@pytest.fixture
def openai_server(openai_server_session: LLMServer) -> Iterator[LLMServer]:
    """An OpenAI-compatible server; `url` ends in /v1."""
    yield from fresh(openai_server_session)


@pytest.fixture
def anthropic_server(anthropic_server_session: LLMServer) -> Iterator[LLMServer]:
    """An Anthropic-compatible server; `url` is the root."""
    yield from fresh(anthropic_server_session)
