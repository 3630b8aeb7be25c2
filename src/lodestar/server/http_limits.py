"""Keeping a shared HTTP server usable under abuse: idle sessions expire and, at the session limit, the idlest
gives way to a newcomer; a connection must send its headers and body in time; open connections are capped well
below the open-file limit, and connections beyond the cap are answered 503 and closed at once.
"""

from __future__ import annotations

import asyncio
import http
import logging
import math
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import h11
from mcp.server.auth.middleware.bearer_auth import AuthorizationContext
from mcp.server.streamable_http import StreamableHTTPServerTransport
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from starlette.requests import ClientDisconnect
from uvicorn.protocols.http.h11_impl import H11Protocol

from lodestar.settings import Settings

log = logging.getLogger(__name__)

MAX_CONNECTIONS_CEILING = 1000
MIN_BACKLOG, MAX_BACKLOG = 8, 128
CAP_WARNING_INTERVAL_S = 60.0

Phase = Literal["headers", "body"]
PHASES: dict[type, Phase] = {h11.IDLE: "headers", h11.SEND_BODY: "body"}


class IdleEvictingSessionManager(StreamableHTTPSessionManager):
    """The SDK's session manager, except that at the session limit the session idle longest makes room.

    The SDK refuses every new session at the limit, so abandoned sessions would lock new clients out until
    they expire. This class is the one place that relies on SDK internals: the private `_admit_session` and
    `_discard_session` hooks and `_server_instances` / `_session_owners` maps, and a transport's
    `idle_scope.deadline` being infinite while a request (or GET stream) is in flight, else the time it expires.
    tests/test_http_limits.py pins them, so an SDK upgrade that changes them fails there.
    """

    def _admit_session(self, requestor: AuthorizationContext | None) -> StreamableHTTPServerTransport | None:
        if self.max_sessions is not None and len(self._server_instances) >= self.max_sessions:
            self._evict_idlest()
        return super()._admit_session(requestor)  # None, so the SDK answers 503, when every session is busy

    def _evict_idlest(self) -> None:
        idle = {
            session_id: transport.idle_scope
            for session_id, transport in self._server_instances.items()
            if transport.idle_scope is not None and transport.idle_scope.deadline < math.inf
        }
        if not idle:
            return
        session_id = min(idle, key=lambda key: idle[key].deadline)
        del self._server_instances[session_id]
        self._session_owners.pop(session_id, None)
        idle[session_id].cancel()  # its server task ends and terminates the transport
        log.info(
            "HTTP session %s closed to make room for a new one: it was the idlest of %d (--max-sessions)",
            session_id,
            self.max_sessions,
        )

    async def _discard_session(self, session_id: str, transport: StreamableHTTPServerTransport) -> None:
        scope = transport.idle_scope
        if session_id in self._server_instances and scope is not None and scope.cancel_called:
            log.info("HTTP session %s expired after %g s idle", session_id, self.session_idle_timeout)
        await super()._discard_session(session_id, transport)


def open_file_limit() -> int | None:
    """The soft RLIMIT_NOFILE, or None where there is none (Windows, or unlimited)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else soft


@dataclass
class ConnectionLimits:
    """What every connection of one server must respect, and when the cap was last reported."""

    max_connections: int
    backlog: int  # also the most sockets one wake-up of the accept loop takes before any can be refused
    header_timeout: float
    body_timeout: float
    warned_at: float = field(default=-math.inf)

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        """The cap defaults to min(1000, half the open-file limit); the rest is for index files and for the
        batches of sockets accepted during a flood, each at most a quarter of that headroom."""
        limit = open_file_limit()
        cap = settings.max_connections
        if cap is None:
            cap = MAX_CONNECTIONS_CEILING if limit is None else max(1, min(MAX_CONNECTIONS_CEILING, limit // 2))
        elif limit is not None and cap > limit * 3 // 4:
            log.warning(
                "--max-connections %d leaves under a quarter of the open-file limit (%d) for index files and bursts: "
                "a flood of connections can make files fail to open; raise the limit (ulimit -n) or lower the cap",
                cap,
                limit,
            )
        backlog = MAX_BACKLOG if limit is None else max(MIN_BACKLOG, min(MAX_BACKLOG, (limit - cap) // 4))
        return cls(cap, backlog, settings.header_timeout, settings.body_timeout)

    def admit(self, open_connections: int) -> bool:
        if open_connections <= self.max_connections:
            return True
        now = time.monotonic()
        if now - self.warned_at >= CAP_WARNING_INTERVAL_S:
            self.warned_at = now
            log.warning(
                "%d connections are open, the limit (--max-connections): new ones get 503 until some close",
                self.max_connections,
            )
        return False


class BoundedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol with a deadline for a request's headers and one for its body, and a cap on
    open connections. uvicorn has neither: a client that sends half a request holds its connection for ever.

    Each deadline counts from the moment its phase starts, so trickling bytes does not extend it. The phase is
    read from the h11 connection (`conn.their_state`) after each event; this and `cycle`, `connections`, `loop`
    and the `on_response_complete` hook are H11Protocol internals, which tests/test_http_limits.py exercises.
    """

    limits: ClassVar[ConnectionLimits]

    @classmethod
    def bound(cls, limits: ConnectionLimits) -> type[BoundedH11Protocol]:
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.phase: Phase | None = None  # while the client owes us one
        self.deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)  # type: ignore[arg-type]
        if not self.limits.admit(len(self.connections)):
            self.refuse(503, "too many open connections; retry shortly")
            return
        self.watch()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        self.watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch()

    def connection_lost(self, exc: Exception | None) -> None:
        self.set_phase(None)
        super().connection_lost(exc)

    def watch(self) -> None:
        if not self.transport.is_closing():
            self.set_phase(PHASES.get(self.conn.their_state))

    def set_phase(self, phase: Phase | None) -> None:
        if phase == self.phase:
            return
        if self.deadline is not None:
            self.deadline.cancel()
            self.deadline = None
        self.phase = phase
        if phase is not None:
            timeout = self.limits.header_timeout if phase == "headers" else self.limits.body_timeout
            self.deadline = self.loop.call_later(timeout, self.timed_out, phase, timeout)

    def timed_out(self, phase: Phase, timeout: float) -> None:
        self.deadline = None
        log.debug("closing connection from %s: request %s not received within %g s", self.client, phase, timeout)
        # In the headers phase part of a request came, or the connection was idle and is just closed.
        owed = bool(self.conn.trailing_data[0]) if phase == "headers" else not self.cycle.response_started
        if owed:
            self.refuse(408, f"request {phase} not received within {timeout:g} s")
        else:
            self.transport.close()

    def refuse(self, status: int, message: str) -> None:
        body = f"{message}\n".encode()
        head = (
            f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}\r\ncontent-type: text/plain; charset=utf-8\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n\r\n"
        )
        self.transport.write(head.encode() + body)
        self.transport.close()


def not_a_disconnect(record: logging.LogRecord) -> bool:
    """The SDK (or uvicorn, for the SDK's newer protocol) logs a client that hangs up mid-body, or whose stalled
    body is cut off, as an error with a traceback: under a slowloris flood, a flood of tracebacks for the client's
    doing. Those records are dropped."""
    return not (record.exc_info and isinstance(record.exc_info[1], ClientDisconnect))
