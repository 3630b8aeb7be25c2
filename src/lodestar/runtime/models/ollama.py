"""`ollama/<model>`: Ollama's OpenAI-compatible endpoint, found the way Ollama's own client finds its server."""

from __future__ import annotations

import ipaddress
import logging
import os

from .openai import OpenAIModel

logger = logging.getLogger("lodestar.runtime")
DEFAULT_PORT = "11434"


def ollama_model(name: str) -> OpenAIModel:
    base_url = ollama_url(os.environ.get("OLLAMA_HOST")) + "/v1"
    return OpenAIModel(name, base_url=base_url, api_key="ollama", provider="ollama")


def ollama_url(value: str | None) -> str:
    """The server URL an `OLLAMA_HOST` value means, read as Ollama reads it (envconfig.Host and
    ConnectableHost in ollama/ollama): `host`, `host:port`, `:port`, `http://host` (port 80),
    `https://host` (port 443), an IPv6 address with or without brackets, a path after the host,
    quotes around the value. Unset or empty is 127.0.0.1:11434; a bind-all address (0.0.0.0, ::)
    means this machine; a port that is not a number falls back to the default, with a warning.
    """
    text = (value or "").strip().strip("\"'").strip()
    scheme, sep, rest = text.partition("://")
    default_port = {"http": "80", "https": "443"}.get(scheme, DEFAULT_PORT) if sep else DEFAULT_PORT
    if not sep:
        scheme, rest = "http", text
        if text == "ollama.com":
            scheme, rest = "https", "ollama.com:443"
    hostport, _, path = rest.partition("/")
    host, port = _split_host_port(hostport, default_port)
    if not (port.isdigit() and int(port) <= 65535):
        logger.warning("OLLAMA_HOST %r has an invalid port %r; using %s", value, port, default_port)
        port = default_port
    host = _connectable(host)
    netloc = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return f"{scheme}://{netloc}" + (f"/{path.rstrip('/')}" if path.strip("/") else "")


def _split_host_port(hostport: str, default_port: str) -> tuple[str, str]:
    """Like Go's net.SplitHostPort, falling back as Ollama does when there is no port."""
    if hostport.startswith("["):
        host, _, after = hostport[1:].partition("]")
        if after.startswith(":"):
            return host, after[1:]
        return host or "127.0.0.1", default_port
    if hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
        return host, port
    return hostport or "127.0.0.1", default_port  # no port, or a bare IPv6 address


def _connectable(host: str) -> str:
    """A server's bind address as a client can dial it: unspecified means the loopback."""
    if not host:
        return "127.0.0.1"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if address.is_unspecified:
        return "127.0.0.1" if address.version == 4 else "::1"
    return str(address)
