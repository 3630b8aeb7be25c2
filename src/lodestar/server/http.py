"""Streamable HTTP at /mcp, with /health, a bearer token and Host/Origin allow-lists.

Binding anything but loopback without a strong token is refused: the docs tools are harmless, but agents
added later run code and spend model credit on the caller's behalf. The defences against abusive clients
are in `http_limits`.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import sys
from typing import TYPE_CHECKING

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lodestar.errors import UsageError
from lodestar.server.http_limits import (
    BoundedH11Protocol,
    ConnectionLimits,
    IdleEvictingSessionManager,
    not_a_disconnect,
)
from lodestar.settings import Settings

if TYPE_CHECKING:
    from lodestar.docs.service import DocsService

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
OPEN_PATHS = frozenset({"/health"})
MIN_TOKEN_CHARS = 16
HOW_TO_AUTHENTICATE = (
    "send the header Authorization: Bearer <token>, with the token the server was started with "
    "(--auth-token or LODESTAR_AUTH_TOKEN)"
)


class ConfigError(UsageError):
    """Raised when the HTTP server is started with settings it cannot serve safely (a token that is padded, missing
    or short for a non-loopback host); the message says which flag or variable to change."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every HTTP request except /health. `/.well-known/` paths
    answer 404 without one: a 401 there makes clients start an OAuth flow this server does not offer."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            refusal = self._refusal(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _refusal(self, scope: Scope) -> Response | None:
        if scope["path"].startswith("/.well-known/"):
            return JSONResponse({"error": f"not found: {HOW_TO_AUTHENTICATE}, not OAuth"}, status_code=404)
        scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.token):
            return None
        problem = "the bearer token is wrong" if scheme.lower() == b"bearer" else "a bearer token is missing"
        return JSONResponse(
            {"error": f"unauthorized: {problem}; {HOW_TO_AUTHENTICATE}"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )


class HostCheck:
    """Refuses a Host header that is not on the allow-list, naming the flag that allows it. The SDK checks
    the same list afterwards; its answer ("Invalid Host header") does not say what to do."""

    def __init__(self, app: ASGIApp, names: list[str]) -> None:
        self.app = app
        self.names = frozenset(name.lower() for name in names)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            name = host if host.endswith("]") else host.rsplit(":", 1)[0]
            if name.lower() not in self.names:
                message = (
                    f"Host {host!r} is not allowed: start the server with --allowed-host {name or 'NAME'} "
                    "(or LODESTAR_ALLOWED_HOSTS), or connect through an allowed name"
                )
                await JSONResponse({"error": message}, status_code=421)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def security_settings(settings: Settings) -> TransportSecuritySettings:
    """Host names (any port, or none) and the matching http(s) origins that requests may carry."""
    names = _names(settings)
    hosts = sorted({form for name in names for form in (name, f"{name}:*")})
    origins = sorted({f"{scheme}://{host}" for host in hosts for scheme in ("http", "https")})
    return TransportSecuritySettings(enable_dns_rebinding_protection=True, allowed_hosts=hosts, allowed_origins=origins)


def _names(settings: Settings) -> list[str]:
    names = {*LOOPBACK_NAMES, *settings.allowed_hosts}
    if settings.host in ("0.0.0.0", "::"):
        names.add(socket.gethostname())
    else:
        names.add(f"[{settings.host}]" if ":" in settings.host else settings.host)
    return sorted(names)


def check_token(settings: Settings) -> None:
    """A public server needs a token worth guessing; a padded token could never be presented (HTTP strips it)."""
    token = settings.auth_token
    if token and token != token.strip():
        raise ConfigError(
            "the bearer token (--auth-token or LODESTAR_AUTH_TOKEN) starts or ends with whitespace, "
            "which no HTTP client can send: remove it"
        )
    if is_loopback(settings.host):
        return
    if not token:
        raise ConfigError(
            f"refusing to serve on {settings.host} without a token: pass --auth-token TOKEN "
            "(or set LODESTAR_AUTH_TOKEN), or bind 127.0.0.1"
        )
    if len(token) < MIN_TOKEN_CHARS:
        raise ConfigError(
            f"refusing to serve on {settings.host} with a {len(token)}-character token: beyond loopback the bearer "
            f"token (--auth-token or LODESTAR_AUTH_TOKEN) must be at least {MIN_TOKEN_CHARS} characters; make one "
            "with: python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )


def build_http_app(server: MCPServer, settings: Settings, docs: DocsService | None = None) -> ASGIApp:
    check_token(settings)

    @server.custom_route("/health", methods=["GET"])
    async def health(_: Request) -> Response:
        """Always 200 while the server answers: a failed corpus is not fixed by a restart, so `degraded`
        tells the operator (with the reason) without making a load balancer drop the server."""
        report = docs.health().model_dump(mode="json", exclude_none=True) if docs else {"status": "ok"}
        return JSONResponse(report)

    app: ASGIApp = server.streamable_http_app(
        streamable_http_path="/mcp",
        transport_security=security_settings(settings),
        host=settings.host,
        session_idle_timeout=settings.session_idle_timeout,
        max_sessions=settings.max_sessions,
    )
    # The app and its lifespan hold this very manager, so it is re-classed rather than replaced.
    server.session_manager.__class__ = IdleEvictingSessionManager
    if settings.auth_token:
        app = BearerAuth(app, settings.auth_token)
    return HostCheck(app, _names(settings))


async def serve_http(server: MCPServer, settings: Settings, docs: DocsService | None = None) -> None:
    try:
        app = build_http_app(server, settings, docs)
    except ConfigError as exc:
        sys.exit(f"lodestar-mcp: {exc}")
    for name in ("mcp.server.streamable_http", "uvicorn.error"):
        logging.getLogger(name).addFilter(not_a_disconnect)
    limits = ConnectionLimits.from_settings(settings)
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sys.exit(f"lodestar-mcp: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; try another --port")
    sock.listen(limits.backlog)  # connections queue from now on, so the address printed below is usable at once
    port = sock.getsockname()[1]
    shown = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    if not is_loopback(settings.host):
        log.warning("accepting Host headers %s; add --allowed-host NAME for others", ", ".join(_names(settings)))
    sys.stderr.write(f"lodestar-mcp: serving MCP at http://{shown}:{port}/mcp (health: /health)\n")
    sys.stderr.flush()
    config = uvicorn.Config(
        app,
        http=BoundedH11Protocol.bound(limits),
        ws="none",
        lifespan="on",
        log_level="warning",
        access_log=False,
        backlog=limits.backlog,
    )
    await uvicorn.Server(config).serve(sockets=[sock])
