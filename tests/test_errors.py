"""The error tree: drawn in lodestar.errors and true to the classes, importable from `lodestar` without the
runtime, compatible with the built-in bases users catch; the retry rule; and how the MCP server shows errors."""

from __future__ import annotations

import builtins
import importlib
import json
import logging
import pkgutil
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client, MCPError
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import INTERNAL_ERROR, INVALID_PARAMS

import lodestar
from lodestar import errors
from lodestar.docs.errors import DocsError
from lodestar.errors import LodestarError, StorageError, is_retryable
from lodestar.runtime import Memory, ThreadError, ToolArgumentsError, tool
from lodestar.runtime.models.base import ModelError
from lodestar.runtime.models.http import HttpOptions, _transport_error, status_error, stream_error
from lodestar.runtime.structured import StructuredOutput, StructuredOutputError
from lodestar.server.plain import PlainServer
from lodestar.storage import SQLiteStorage

DRAWN = re.compile(r"^ {4}(?P<indent>[│├└─ ]*)(?P<name>[A-Z]\w+)\b.*?(?P<module>lodestar[\w.]*)?$")
BUILT_IN = re.compile(r"\((ValueError|RuntimeError)\)")


def drawn_tree() -> dict[str, tuple[str | None, str, str | None]]:
    """Each class in the docstring's drawing: (parent, module to import it from, built-in base it is too)."""
    tree: dict[str, tuple[str | None, str, str | None]] = {}
    path: list[str] = []
    for line in (errors.__doc__ or "").splitlines():
        if not (drawn := DRAWN.match(line)):
            continue
        depth = len(drawn["indent"]) // 4
        del path[depth:]
        parent = path[-1] if path else None
        module = drawn["module"] or (tree[parent][1] if parent else "lodestar.errors")
        built_in = BUILT_IN.search(line)
        tree[drawn["name"]] = (parent, module, built_in[1] if built_in else None)
        path.append(drawn["name"])
    return tree


def every_lodestar_error() -> set[type[LodestarError]]:
    for module in pkgutil.walk_packages(lodestar.__path__, "lodestar."):
        if module.name != "lodestar.__main__":
            importlib.import_module(module.name)
    found: set[type[LodestarError]] = set()
    todo = [LodestarError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo.extend(cls.__subclasses__())
    return found


def test_the_drawing_is_the_tree() -> None:
    tree = drawn_tree()
    assert len(tree) >= 13 and tree["LodestarError"][0] is None
    assert tree.keys() == {cls.__name__ for cls in every_lodestar_error()}
    for name, (parent, module, built_in) in tree.items():
        cls = getattr(importlib.import_module(module), name)
        assert getattr(lodestar, name) is cls, name
        if parent is not None:
            assert next(base for base in cls.__bases__ if issubclass(base, LodestarError)).__name__ == parent, name
        if built_in is not None:
            assert issubclass(cls, getattr(builtins, built_in)), name
        assert cls.__dict__.get("__doc__"), name  # its own: who raises it and what to do


def test_every_tree_name_is_exported_from_lodestar() -> None:
    assert set(drawn_tree()) <= set(lodestar.__all__)
    assert all(hasattr(lodestar, name) for name in lodestar.__all__)


def test_importing_the_tree_from_lodestar_stays_light() -> None:
    probe = (
        "import sys, json\nfrom lodestar import LodestarError, UsageError, RunFailure, StorageError\n"
        "roots = ('pydantic', 'mcp', 'httpx', 'lodestar')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in roots)))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert json.loads(done.stdout) == ["lodestar", "lodestar.errors"]


@pytest.mark.anyio
async def test_except_valueerror_and_runtimeerror_still_catch_what_they_caught(tmp_path: Path) -> None:
    @tool
    def add(a: int, b: int) -> int:
        """Add."""
        return a + b

    with pytest.raises(ValueError, match="has no storage") as thread:
        _ = Memory().storage
    with pytest.raises(ValueError, match="invalid arguments for tool add") as arguments:
        add.validate({"a": "one"})
    with pytest.raises(ValueError, match="is not JSON") as structured:
        StructuredOutput(list[int]).parse("no JSON here")
    path = tmp_path / "notes.db"
    path.write_text("not a database\n" * 100)
    store = SQLiteStorage(path)
    with pytest.raises(RuntimeError, match="is not a SQLite database") as storage:
        await store.list_threads()
    await store.close()

    assert isinstance(thread.value, ThreadError) and isinstance(arguments.value, ToolArgumentsError)
    assert isinstance(structured.value, StructuredOutputError) and isinstance(storage.value, StorageError)
    assert all(isinstance(e.value, LodestarError) for e in (thread, arguments, structured, storage))


@pytest.mark.parametrize(
    ("status", "kind", "retryable"),
    [
        (408, None, True),
        (409, None, True),
        (425, None, True),
        (429, None, True),
        (500, None, True),
        (502, None, True),
        (503, None, True),
        (504, None, True),
        (529, None, True),  # Anthropic's overloaded
        (400, None, False),
        (401, None, False),
        (403, None, False),
        (404, None, False),
        (413, None, False),
        (422, None, False),
        (501, None, False),
        (None, "overloaded_error", True),
        (None, "api_error", True),
        (None, "server_error", True),
        (None, "rate_limit_error", True),
        (None, "rate_limit_exceeded", True),
        (None, "timeout", True),
        (None, "connection_error", True),
        (None, "invalid_request_error", False),
        (None, "authentication_error", False),
        (None, "context_length_exceeded", False),
        (None, None, False),
    ],
)
def test_the_retry_rule(status: int | None, kind: str | None, retryable: bool) -> None:
    assert is_retryable(status, kind) is retryable
    assert ModelError("p", "failed", status=status, kind=kind).retryable is retryable


def test_a_custom_model_may_decide_for_itself() -> None:
    assert ModelError("mine", "busy", retryable=True).retryable
    assert not ModelError("mine", "quota gone for the month", status=429, retryable=False).retryable
    assert not DocsError("unknown corpus").retryable and lodestar.CorpusLoading(["a"], "loading").retryable


OPTIONS = HttpOptions(provider="gateway", base_url="http://127.0.0.1:9", headers={})


@pytest.mark.parametrize(
    ("event_error", "retryable", "status"),
    [
        ({"type": "overloaded_error", "message": "Overloaded"}, True, None),  # Anthropic
        ({"type": "server_error", "message": "boom"}, True, None),  # OpenAI
        ({"type": "invalid_request_error", "message": "bad"}, False, None),
        ({"code": 502, "message": "Provider returned error"}, True, 502),  # OpenRouter, a number
        ({"code": "429", "message": "Rate limit exceeded"}, True, 429),  # a gateway's code as a string
        ({"code": "server_error", "message": "upstream"}, True, None),
        ({"code": 400, "message": "bad"}, False, 400),
        ({"type": ["odd"], "message": "a list"}, False, None),
        ("a bare string", False, None),
    ],
)
def test_error_events_in_a_stream_are_classified_by_the_rule(event_error: Any, retryable: bool, status: Any) -> None:
    error = stream_error(OPTIONS, event_error)
    assert (error.retryable, error.status) == (retryable, status)


def test_refusals_and_transport_failures_are_classified_by_the_rule() -> None:
    request = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")
    refused = {code: status_error(OPTIONS, httpx.Response(code, request=request)) for code in (400, 429, 503)}
    assert {code: e.retryable for code, e in refused.items()} == {400: False, 429: True, 503: True}
    timeout = _transport_error(OPTIONS, httpx.ReadTimeout("slow"))
    broken = _transport_error(OPTIONS, httpx.RemoteProtocolError("peer closed"), streaming=True)
    assert (timeout.kind, timeout.retryable) == ("timeout", True)
    assert (broken.kind, broken.retryable) == ("connection_error", True)


SECRET = "sk-internal-detail"


def error_server() -> PlainServer:
    server = PlainServer("errors-test")

    @server.tool()
    async def thread_of_another() -> str:
        raise ThreadError("thread 't1' belongs to resource 'ada', not 'bob'")

    @server.tool()
    def unknown_corpus() -> str:  # a sync tool, run in a worker thread by the SDK
        raise DocsError("unknown corpus 'nope'; loaded corpora: example")

    @server.tool()
    async def crash() -> str:
        raise KeyError(SECRET)

    @server.tool()
    async def deliberate() -> str:
        raise ToolError("try again with a shorter query")

    @server.resource("test://{name}")
    async def page(name: str) -> str:
        if name == "missing":
            raise DocsError("no page 'missing'; closest: present")
        if name == "storage":
            raise StorageError("/tmp/x.db was written by a newer Lodestar")
        raise RuntimeError(SECRET)

    @server.prompt()
    async def ask(corpus: str) -> str:
        raise DocsError(f"unknown corpus {corpus!r}")

    return server


def text_of(result: Any) -> str:
    return "".join(part.text for part in result.content)


@pytest.mark.anyio
async def test_the_client_reads_a_lodestar_errors_message_and_only_that(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="lodestar.server.plain")
    async with Client(error_server()) as client:
        usage = await client.call_tool("thread_of_another", {})
        docs = await client.call_tool("unknown_corpus", {})
        crash = await client.call_tool("crash", {})
        deliberate = await client.call_tool("deliberate", {})
        resources = {}
        for name in ("missing", "storage", "crash"):
            with pytest.raises(MCPError) as caught:
                await client.read_resource(f"test://{name}")
            resources[name] = caught.value
        with pytest.raises(MCPError) as prompt:
            await client.get_prompt("ask", {"corpus": "nope"})

    assert usage.is_error and text_of(usage) == "thread 't1' belongs to resource 'ada', not 'bob'"
    assert docs.is_error and text_of(docs) == "unknown corpus 'nope'; loaded corpora: example"
    assert crash.is_error and text_of(crash) == "crash failed unexpectedly; the server's log has the details"
    assert deliberate.is_error and "try again with a shorter query" in text_of(deliberate)
    [logged] = [r for r in caplog.records if r.name == "lodestar.server.plain" and r.levelno == logging.ERROR]
    assert logged.exc_info is not None and isinstance(logged.exc_info[1], KeyError) and "crash" in logged.message

    assert (resources["missing"].code, resources["missing"].message) == (
        INVALID_PARAMS,
        "no page 'missing'; closest: present",
    )
    assert (resources["storage"].code, resources["storage"].message) == (
        INTERNAL_ERROR,
        "/tmp/x.db was written by a newer Lodestar",
    )
    assert "the server's log has the details" in resources["crash"].message and SECRET not in resources["crash"].message
    assert (prompt.value.code, prompt.value.message) == (INVALID_PARAMS, "unknown corpus 'nope'")
