"""Lodestar: an MCP server for documentation search and agents."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["Agent", "Lodestar", "ToolContext", "tool"]

if TYPE_CHECKING:
    from .runtime import Agent, Lodestar, ToolContext, tool


def __getattr__(name: str) -> Any:
    """Import the runtime only when asked: the server's start-up time is measured."""
    if name in __all__:
        from . import runtime

        return getattr(runtime, name)
    raise AttributeError(f"module 'lodestar' has no attribute {name!r}")
