"""Lodestar's exceptions form one tree: `except LodestarError` catches every error Lodestar raises on purpose.

    LodestarError
    ├── UsageError                  the caller's mistake: fix the call as the message says
    │   ├── AppLoadError            an --app that cannot be loaded or served                lodestar.app
    │   ├── ConfigError             server settings that cannot be served safely           lodestar.server.http
    │   ├── InvalidValueError       a value that is not valid: an id, a limit, an option (ValueError)
    │   ├── InvalidTypeError        an argument of the wrong kind: a tool, a schema (TypeError)
    │   ├── UnknownNameError        a name nothing answers to: an agent id (KeyError)
    │   ├── ThreadError             a thread or memory used as it cannot be (ValueError)    lodestar.runtime
    │   └── ToolArgumentsError      arguments that do not fit a tool's schema (ValueError)   lodestar.runtime
    ├── RunFailure                  a run could not finish; the run reports it, never raises it
    │   ├── ModelError              a model provider's call failed; see `retryable`         lodestar.runtime
    │   ├── StructuredOutputError   the final answer does not fit the schema (ValueError)    lodestar.runtime
    │   └── DelegationError         a subagent's run failed (RuntimeError)                  lodestar.runtime.subagents
    ├── DocsError                   a docs request that cannot be served                    lodestar.docs.errors
    │   ├── CorpusError             a corpus source that cannot be loaded
    │   └── CorpusLoading           corpora still being fetched or indexed (retryable)
    └── StorageError                a database file Lodestar will not use (RuntimeError)    lodestar.storage

Every class is importable from `lodestar` too. A class that was a `ValueError` or `RuntimeError` before the tree
existed still is, so `except ValueError` around a run keeps working. Every message names what went wrong and what
to do, and is written to be shown as it is, to a person or to a model: the MCP server sends it to the client.

`retryable` says whether the same call, made again unchanged, may succeed; `is_retryable` below is the one rule for
a provider's answer, and every retry loop reads `retryable` rather than deciding again.

Not in the tree: `TripWire` is control flow (a processor's `abort()` raises it and the runtime always catches it,
ending the run with `result.tripwire`), and `RunError` is the data model of `result.error`, not an exception.
"""

from __future__ import annotations

RETRY_STATUSES = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})
# Error kinds: Anthropic's `type` and OpenAI's `type` or `code` of an error event inside a stream, and the runtime's
# own names for a connection that failed or broke (`connection_error`) and for no answer in time (`timeout`).
RETRY_KINDS = frozenset(
    {
        "overloaded_error",
        "api_error",
        "server_error",
        "rate_limit_error",
        "rate_limit_exceeded",
        "timeout",
        "connection_error",
    }
)


def is_retryable(status: int | None = None, kind: str | None = None) -> bool:
    """The one rule for what may succeed on a second try: an HTTP status (a refusal's, or the code a gateway such as
    OpenRouter puts in an error event), or the kind of failure. Anything else (a bad request, a missing key, an
    answer that cannot be read) fails the same way again."""
    return status in RETRY_STATUSES or kind in RETRY_KINDS


class LodestarError(Exception):
    """The root: every error Lodestar raises on purpose. Its message is meant for whoever made the call."""

    retryable: bool = False


class UsageError(LodestarError):
    """The caller's mistake (an option, an argument, a thread, a setting); the message says what to change.
    Raised before any work is done, so nothing needs undoing."""


class InvalidValueError(UsageError, ValueError):
    """Raised when a value given to Lodestar is not valid (an agent or tool id, a limit, a run option, a model id,
    an empty message list); the message names the value and what is allowed."""


class InvalidTypeError(UsageError, TypeError):
    """Raised when an argument is of the wrong kind (a function that cannot be a tool, a structured output that is
    no type, background config that is no dict); the message says what to pass instead."""


class UnknownNameError(UsageError, KeyError):
    """Raised when a name nothing answers to is looked up (an agent id in an app); the message lists the known ones."""

    def __str__(self) -> str:  # KeyError's own would show the message in quotes
        return str(self.args[0]) if self.args else ""


class RunFailure(LodestarError):
    """A run could not finish (the model, its final answer, a subagent). Raised inside the run and reported by it,
    as `result.error` and an `error` chunk (or, for a subagent, as the failed tool result its supervisor's model
    reads), never raised out of `generate()` or `stream()`. Read `result.error.message`."""


class StorageError(LodestarError, RuntimeError):
    """Raised when a storage opens a database file that is not Lodestar's, was written by a newer Lodestar, or could
    not be upgraded. Nothing was written to it; point the storage at another file, or upgrade Lodestar."""
