"""Lodestar: an MCP server for documentation search and agents."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from .errors import (
    InvalidTypeError,
    InvalidValueError,
    LodestarError,
    RunFailure,
    StorageError,
    UnknownNameError,
    UsageError,
)

__version__ = "0.1.0"

# Where each lazily imported name lives (see __getattr__); the error tree is drawn in lodestar.errors.
_LAZY = {
    "Agent": "runtime",
    "Lodestar": "app",
    "ToolContext": "runtime",
    "tool": "runtime",
    "AppLoadError": "app",
    "ConfigError": "server.http",
    "CorpusError": "docs.errors",
    "CorpusLoading": "docs.errors",
    "DelegationError": "runtime.subagents",
    "DocsError": "docs.errors",
    "ModelError": "runtime.models.base",
    "StructuredOutputError": "runtime.structured",
    "ThreadError": "runtime.memory",
    "ToolArgumentsError": "runtime.tools",
}
__all__ = [
    "Agent",
    "AppLoadError",
    "ConfigError",
    "CorpusError",
    "CorpusLoading",
    "DelegationError",
    "DocsError",
    "InvalidTypeError",
    "InvalidValueError",
    "Lodestar",
    "LodestarError",
    "ModelError",
    "RunFailure",
    "StorageError",
    "StructuredOutputError",
    "ThreadError",
    "ToolArgumentsError",
    "ToolContext",
    "UnknownNameError",
    "UsageError",
    "tool",
]

if TYPE_CHECKING:
    from .app import AppLoadError, Lodestar
    from .docs.errors import CorpusError, CorpusLoading, DocsError
    from .runtime import (
        Agent,
        ModelError,
        StructuredOutputError,
        ThreadError,
        ToolArgumentsError,
        ToolContext,
        tool,
    )
    from .runtime.subagents import DelegationError
    from .server.http import ConfigError


def __getattr__(name: str) -> Any:
    """Import the runtime (and the rest) only when asked: the server's start-up time is measured."""
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module 'lodestar' has no attribute {name!r}")
