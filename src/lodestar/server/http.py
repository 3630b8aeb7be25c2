"""Streamable HTTP at /mcp, with /health, a bearer token and Host/Origin allow-lists.

Binding anything but loopback without a token is refused: the docs tools are harmless, but agents
added later run code and spend model credit on the caller's behalf.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import socket
import sys

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Receive, Scope, Send

from lodestar.settings import Settings

log = logging.getLogger(__name__)

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
OPEN_PATHS = frozenset({"/health"})


class ConfigError(Exception):
    """Settings that cannot be served safely; the message says how to fix them."""


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class BearerAuth:
    """Requires `Authorization: Bearer <token>` on every HTTP request except /health."""

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self.token = token.encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] not in OPEN_PATHS:
            scheme, _, given = dict(scope["headers"]).get(b"authorization", b"").partition(b" ")
            if scheme.lower() != b"bearer" or not hmac.compare_digest(given.strip(), self.token):
                response = JSONResponse(
                    {"error": "unauthorized: send the header Authorization: Bearer <token>"},
                    status_code=401,
                    headers={"WWW-Authenticate": "Bearer"},
                )
                await response(scope, receive, send)
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


def build_http_app(server: MCPServer, settings: Settings) -> ASGIApp:
    if not is_loopback(settings.host) and not settings.auth_token:
        raise ConfigError(
            f"refusing to serve on {settings.host} without a token: pass --auth-token TOKEN "
            "(or set LODESTAR_AUTH_TOKEN), or bind 127.0.0.1"
        )

    @server.custom_route("/health", methods=["GET"])
    async def health(_: Request) -> Response:
        return JSONResponse({"status": "ok"})

    app: ASGIApp = server.streamable_http_app(
        streamable_http_path="/mcp", transport_security=security_settings(settings), host=settings.host
    )
    return BearerAuth(app, settings.auth_token) if settings.auth_token else app


async def serve_http(server: MCPServer, settings: Settings) -> None:
    try:
        app = build_http_app(server, settings)
    except ConfigError as exc:
        sys.exit(f"lodestar-mcp: {exc}")
    family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # asyncio sets TCP_NODELAY only then
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((settings.host, settings.port))
    except OSError as exc:
        sys.exit(f"lodestar-mcp: cannot listen on {settings.host}:{settings.port}: {exc.strerror}; try another --port")
    sock.listen(128)  # connections queue from now on, so the address printed below is usable at once
    port = sock.getsockname()[1]
    shown = f"[{settings.host}]" if family == socket.AF_INET6 else settings.host
    if not is_loopback(settings.host):
        log.warning("accepting Host headers %s; add --allowed-host NAME for others", ", ".join(_names(settings)))
    sys.stderr.write(f"lodestar-mcp: serving MCP at http://{shown}:{port}/mcp (health: /health)\n")
    sys.stderr.flush()
    config = uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False)
    await uvicorn.Server(config).serve(sockets=[sock])
