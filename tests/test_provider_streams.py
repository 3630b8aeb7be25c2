"""Real provider streams, replayed byte for byte by the test servers: failures, retries, refusals, gateway quirks.

Each stream is written as the provider or gateway sends it (`data: ` and compact JSON, a blank line
after each event; Anthropic's events named). Where a gateway deviates from OpenAI's format, the test
names the issue that recorded the deviation.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import anyio
import pytest
from llm_servers import Fail, LLMServer, Turn, Wire
from pydantic import BaseModel, Field
from test_agent_runs import collect, model_for

from lodestar import Agent
from lodestar.runtime.messages import text_message
from lodestar.runtime.models import resolve_model
from lodestar.runtime.models.base import (
    CallContext,
    Finish,
    ModelEvent,
    ModelRequest,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
)
from lodestar.runtime.models.openai import OpenAIModel
from lodestar.runtime.usage import Usage

pytestmark = pytest.mark.anyio

HELLO = ModelRequest(messages=[text_message("user", "hi")])
OPENAI = {
    "id": "chatcmpl-BzX1Qe3",
    "object": "chat.completion.chunk",
    "created": 1754000000,
    "model": "gpt-4o-2024-08-06",
    "service_tier": "default",
    "system_fingerprint": "fp_07871e2ad8",
}
USAGE = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19}


def sse(*events: dict[str, Any] | str) -> str:
    """Events as OpenAI-style servers write them; a string is sent as is (`[DONE]`), or as a comment if it
    starts with ':'."""
    lines = [
        event if isinstance(event, str) and event.startswith(":") else f"data: {compact(event)}" for event in events
    ]
    return "".join(f"{line}\n\n" for line in lines)


def named_sse(*events: dict[str, Any]) -> str:
    """Events as Anthropic writes them: each named after its type."""
    return "".join(f"event: {event['type']}\ndata: {compact(event)}\n\n" for event in events)


def compact(event: dict[str, Any] | str) -> str:
    return event if isinstance(event, str) else json.dumps(event, separators=(",", ":"))


def delta(content: dict[str, Any], finish: str | None = None, head: dict[str, Any] = OPENAI) -> dict[str, Any]:
    return head | {"choices": [{"index": 0, "delta": content, "logprobs": None, "finish_reason": finish}]}


def usage(head: dict[str, Any] = OPENAI) -> dict[str, Any]:
    return head | {"choices": [], "usage": USAGE}


def ok_stream(text: str) -> str:
    return sse(delta({"role": "assistant", "content": ""}), delta({"content": text}), delta({}, "stop"), "[DONE]")


def anthropic_start() -> dict[str, Any]:
    message = {"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5", "content": []}
    usage = {"input_tokens": 25, "output_tokens": 1}
    return {"type": "message_start", "message": message | {"stop_reason": None, "usage": usage}}


def anthropic_text(index: int, *pieces: str) -> list[dict[str, Any]]:
    deltas = [
        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": p}} for p in pieces
    ]
    start = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
    return [start, *deltas, {"type": "content_block_stop", "index": index}]


def anthropic_end(reason: str) -> list[dict[str, Any]]:
    end = {"type": "message_delta", "delta": {"stop_reason": reason, "stop_sequence": None}}
    return [end | {"usage": {"output_tokens": 9}}, {"type": "message_stop"}]


def openai_model(server: LLMServer, **options: Any) -> OpenAIModel:
    return OpenAIModel("gpt-test", base_url=server.url, api_key="sk-test", backoff_s=0.01, **options)


async def events_of(model: Any, request: ModelRequest = HELLO) -> list[ModelEvent]:
    with anyio.fail_after(10):
        return [event async for event in model.stream(request, CallContext(run_id="run_test"))]


def text_of(events: list[ModelEvent], kind: type[TextDelta | ReasoningDelta] = TextDelta) -> str:
    return "".join(event.text for event in events if isinstance(event, kind))


def calls_of(events: list[ModelEvent]) -> list[tuple[str, Any]]:
    """(name, parsed arguments) of each tool call, in the order the calls started."""
    names = {event.id: event.name for event in events if isinstance(event, ToolCallStart)}
    args = {
        call_id: "".join(e.args_text for e in events if isinstance(e, ToolCallDelta) and e.id == call_id)
        for call_id in names
    }
    return [(name, json.loads(args[call_id] or "{}")) for call_id, name in names.items()]


def server_for(kind: str, request: pytest.FixtureRequest) -> LLMServer:
    return request.getfixturevalue("anthropic_server" if kind == "anthropic" else "openai_server")


# Errors in the stream before any content are retried like HTTP errors


ERROR_BEFORE_CONTENT = {
    # OpenAI reports a failure mid-stream as an error object under HTTP 200.
    "openai": sse(
        delta({"role": "assistant", "content": "", "refusal": None}),
        {"error": {"message": "The server had an error while processing your request.", "type": "server_error"}},
    ),
    # Anthropic: "during periods of high usage, you may receive an overloaded_error" as an event (its streaming docs).
    "anthropic": named_sse(
        anthropic_start(),
        {"type": "ping"},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
    ),
    # OpenRouter keeps the connection alive with comments, and reports a provider failure as an error
    # with an HTTP-like code inside a 200 stream (openrouter.ai/docs/api-reference/streaming, errors).
    "openrouter": sse(
        ": OPENROUTER PROCESSING",
        ": OPENROUTER PROCESSING",
        {"error": {"code": 502, "message": "Provider returned error", "metadata": {"provider_name": "Together"}}},
    ),
}


@pytest.mark.parametrize("gateway", ERROR_BEFORE_CONTENT)
async def test_an_error_event_before_any_content_is_retried_like_an_http_error(
    gateway: str, request: pytest.FixtureRequest
) -> None:
    server = server_for(gateway, request)
    server.script(Wire([ERROR_BEFORE_CONTENT[gateway]]), Turn(text="recovered"))

    result = await Agent("a", model=model_for(server)).generate("hi")

    assert result.error is None and result.text == "recovered"
    assert len(server.requests) == 2


async def test_http_and_stream_errors_share_one_retry_budget(openai_server: LLMServer) -> None:
    stream_error = Wire([ERROR_BEFORE_CONTENT["openai"]])
    openai_server.script(Fail(503), stream_error, Turn(text="third time"))
    assert text_of(await events_of(openai_model(openai_server, max_retries=2))) == "third time"

    openai_server.reset()
    openai_server.script(Fail(503), stream_error, Turn(text="never asked"))
    result = await Agent("a", model=openai_model(openai_server, max_retries=1)).generate("hi")

    assert result.error is not None and len(openai_server.requests) == 2
    assert "The server had an error" in result.error.message and "after 2 attempts" in result.error.message


async def test_an_error_event_that_no_retry_can_fix_is_not_retried(openai_server: LLMServer) -> None:
    invalid = {"message": "Invalid 'messages[0].content'", "type": "invalid_request_error", "param": "messages"}
    openai_server.script(Wire([sse(delta({"role": "assistant", "content": ""}), {"error": invalid})]))

    result = await Agent("a", model=openai_model(openai_server)).generate("hi")

    assert result.error is not None and "(invalid_request_error)" in result.error.message
    assert len(openai_server.requests) == 1


# Every failure ends as an error chunk and result.error


class Broken:
    """A model of the user's own whose stream raises something other than a ModelError."""

    provider, model_id, supports_json_schema = "homemade", "v0", False

    async def stream(self, request: ModelRequest, context: CallContext) -> AsyncIterator[ModelEvent]:
        yield TextDelta("Starting")
        raise RuntimeError("socket pool exhausted")


HALF = sse(delta({"role": "assistant", "content": ""}), delta({"content": "Half of the"}))
FAILURES: dict[str, tuple[Any, str]] = {
    "connection dropped mid-stream": (Wire([HALF], cut=True), "the connection to"),
    "invalid JSON in an event": (Wire([HALF, 'data: {"choices":[{"index":0,"delta":{"content":"x"\n\n']), "malformed"),
    "error page with HTTP 200": (Fail(200, "<html><body>Gateway login</body></html>"), "got text/html"),
    "event of an unexpected shape": (Wire([sse(delta({}), {"choices": ["not an object"]})]), "unexpected stream event"),
    "Anthropic event of an unexpected shape": (Wire([named_sse({"type": "message_start"})]), "unexpected stream"),
    "base URL without a scheme": (None, "must start with http:// or https://"),
    "a model's own exception": (None, "failed unexpectedly (RuntimeError: socket pool exhausted)"),
}


def failing_model(kind: str, answer: Any, request: pytest.FixtureRequest) -> Any:
    if kind == "a model's own exception":
        return Broken()
    if kind == "base URL without a scheme":
        return OpenAIModel("gpt-test", base_url="127.0.0.1:11434/v1", api_key="sk-test")
    server = server_for("anthropic" if kind.startswith("Anthropic") else "openai", request)
    server.script(answer, answer)  # once for generate(), once for stream()
    return model_for(server, max_retries=0)


@pytest.mark.parametrize("kind", FAILURES)
async def test_every_provider_failure_ends_as_an_error_chunk_and_result_error(
    kind: str, request: pytest.FixtureRequest
) -> None:
    answer, expected = FAILURES[kind]
    agent = Agent("a", model=failing_model(kind, answer, request))

    with anyio.fail_after(10):
        generated = await agent.generate("hi")
        chunks, streamed = await collect(agent, "hi")

    provider = agent.model.provider  # type: ignore[union-attr]
    for result in (generated, streamed):
        assert result.finish_reason == "error" and result.error is not None
        assert result.error.provider == provider and expected in result.error.message
        assert result.error.message.startswith(f"{provider}: ")
    [error] = [c for c in chunks if c.type == "error"]
    assert error.payload.error.provider == provider and expected in error.payload.error.message
    assert chunks[-1].type == "finish" and chunks[-1].payload.step_result.reason == "error"


# Refusals


REFUSALS = {
    # OpenAI streams a refusal in `refusal` deltas, not `content`, and ends with finish_reason "stop".
    "openai": sse(
        delta({"role": "assistant", "content": None, "refusal": ""}),
        delta({"refusal": "I'm sorry, "}),
        delta({"refusal": "I can't help with that."}),
        delta({}, "stop"),
        usage(),
        "[DONE]",
    ),
    # Claude ends a refused turn with stop_reason "refusal" (Anthropic's handling-stop-reasons docs).
    "anthropic": named_sse(
        anthropic_start(), *anthropic_text(0, "I'm sorry, ", "I can't help with that."), *anthropic_end("refusal")
    ),
}


@pytest.mark.parametrize("provider", REFUSALS)
async def test_a_refusal_is_the_visible_answer_and_ends_as_content_filter(
    provider: str, request: pytest.FixtureRequest
) -> None:
    server = server_for(provider, request)
    server.script(Wire([REFUSALS[provider]]))

    chunks, result = await collect(Agent("a", model=model_for(server)), "help me with something bad")

    assert result.text == "I'm sorry, I can't help with that." and result.error is None
    assert result.finish_reason == "content-filter"
    assert "".join(c.payload.text for c in chunks if c.type == "text-delta") == result.text
    step_finish = next(c for c in chunks if c.type == "step-finish")
    raw_reason = {"openai": "stop", "anthropic": "refusal"}[provider]
    assert step_finish.payload.step_result.reason == "content-filter"
    assert step_finish.payload.step_result.raw_reason == raw_reason


# Parallel tool calls, told apart by id whatever the gateway does with `index`


def tool_call(call_id: str | None, name: str | None, arguments: Any, index: int | None) -> dict[str, Any]:
    call: dict[str, Any] = {"type": "function", "function": {"name": name, "arguments": arguments}}
    return call | ({"id": call_id} if call_id else {}) | ({"index": index} if index is not None else {})


def fragment(index: int | None, arguments: str) -> dict[str, Any]:
    return {"function": {"arguments": arguments}} | ({"index": index} if index is not None else {})


OLLAMA = {"id": "chatcmpl-607", "object": "chat.completion.chunk", "created": 1775700000, "model": "qwen2.5-coder:7b"}
OLLAMA |= {"system_fingerprint": "fp_ollama"}
GEMINI = {"id": "mC2VaN", "object": "chat.completion.chunk", "created": 1775700000, "model": "gemini-2.5-flash"}
LITELLM = {"id": "chatcmpl-ab2d6b3d", "object": "chat.completion.chunk", "created": 1749032296}
LITELLM |= {"model": "us.anthropic.claude-3-7-sonnet-20250219-v1:0"}
HELLO_ARGS, WORLD_ARGS = {"filePath": "hello.py", "content": "print('hello')"}, {"filePath": "world.py"}
BOTH = [("file_write", HELLO_ARGS), ("file_write", WORLD_ARGS)]


def whole_calls(head: dict[str, Any], index: int | None, finish: str) -> str:
    """Each call complete in a chunk of its own, as Ollama and Gemini's endpoint send them."""
    calls = [tool_call(f"call_{n}", "file_write", json.dumps(args), index) for n, (_, args) in enumerate(BOTH)]
    chunks = [delta({"role": "assistant", "content": "", "tool_calls": [call]}, head=head) for call in calls]
    return sse(*chunks, delta({"role": "assistant", "content": ""}, finish, head=head), "[DONE]")


def split_calls(head: dict[str, Any], indexes: tuple[int, int]) -> str:
    """Each call opened with its id and name, then its arguments in fragments that carry only an index."""
    events = [delta({"role": "assistant", "content": ""}, head=head)]
    for n, ((name, args), index) in enumerate(zip(BOTH, indexes, strict=True)):
        events.append(delta({"tool_calls": [tool_call(f"call_{n}", name, "", index)]}, head=head))
        text = json.dumps(args)
        events += [delta({"tool_calls": [fragment(index, text[i : i + 9])]}, head=head) for i in range(0, len(text), 9)]
    return sse(*events, delta({}, "tool_calls", head=head), "[DONE]")


def dict_arguments() -> str:
    """LiteLLM's ollama_chat route: arguments as a JSON object, every call at index 0, finish_reason stop."""
    calls = [tool_call(f"call_{n}", name, args, 0) for n, (name, args) in enumerate(BOTH)]
    chunks = [delta({"role": "assistant", "content": None, "tool_calls": [call]}, head=LITELLM) for call in calls]
    return sse(*chunks, delta({}, "stop", head=LITELLM), "[DONE]")


PARALLEL_CALLS = {
    "ollama: every call at index 0 (ollama/ollama#15457)": whole_calls(OLLAMA, 0, "tool_calls"),
    "gemini: no index at all (openai/openai-python#2806)": whole_calls(GEMINI, None, "tool_calls"),
    "vllm/dynamo: fragments of every call at index 0 (ai-dynamo/dynamo#4723)": split_calls(OPENAI, (0, 0)),
    "litellm/bedrock: the first call at index 1 (BerriAI/litellm#11407)": split_calls(LITELLM, (1, 2)),
    "litellm/ollama_chat: arguments as an object, finish stop (BerriAI/litellm#37792)": dict_arguments(),
}


@pytest.mark.parametrize("gateway", PARALLEL_CALLS)
async def test_parallel_tool_calls_are_told_apart_by_id(gateway: str, openai_server: LLMServer) -> None:
    openai_server.script(Wire([PARALLEL_CALLS[gateway]]))

    events = await events_of(openai_model(openai_server))

    assert calls_of(events) == BOTH
    assert isinstance(events[-1], Finish) and events[-1].reason == "tool-calls"


NAME_AFTER_ID = {
    # The first fragment has the id and arguments, the name comes later (vercel/ai#14722).
    "name in a later fragment": [
        {"index": 0, "id": "call_123", "type": "function", "function": {"arguments": '{"command": '}},
        {"index": 0, "function": {"name": "bash", "arguments": '"ls -la"}'}},
    ],
    # An opening fragment with an empty name, the real one in the next (jjang-ai/vmlx#244).
    "empty name first": [
        {"index": 0, "id": "call_123", "type": "function", "function": {"name": "", "arguments": ""}},
        {"index": 0, "id": "call_123", "type": "function", "function": {"name": "bash", "arguments": '{"command": '}},
        {"index": 0, "function": {"name": "bash", "arguments": '"ls -la"}'}},  # a name repeated stays one name
    ],
}


@pytest.mark.parametrize("shape", NAME_AFTER_ID)
async def test_a_tool_name_that_arrives_after_its_id_is_kept(shape: str, openai_server: LLMServer) -> None:
    fragments = [delta({"tool_calls": [piece]}) for piece in NAME_AFTER_ID[shape]]
    openai_server.script(Wire([sse(delta({"role": "assistant", "content": ""}), *fragments, delta({}, "tool_calls"))]))

    events = await events_of(openai_model(openai_server))

    assert [e for e in events if isinstance(e, ToolCallStart)] == [ToolCallStart("call_123", "bash")]
    assert calls_of(events) == [("bash", {"command": "ls -la"})]


async def test_a_call_whose_name_never_comes_reaches_the_loop_as_an_unknown_tool(openai_server: LLMServer) -> None:
    nameless = {"index": 0, "id": "call_9", "type": "function", "function": {"arguments": "{}"}}
    answer = sse(delta({"tool_calls": [nameless]}), delta({}, "tool_calls"), "[DONE]")
    openai_server.script(Wire([answer]), Turn(text="I could not call it."))

    chunks, result = await collect(Agent("a", model=model_for(openai_server), tools=[]), "hi")

    [error] = [c for c in chunks if c.type == "tool-error"]
    assert error.payload.tool_name == "" and "unknown tool ''" in error.payload.error.message
    assert result.text == "I could not call it."


# Text sent as a list of content parts


MISTRAL = {"id": "c3c77283", "object": "chat.completion.chunk", "created": 1762355135, "model": "magistral-medium-2509"}


def mistral(content: Any, finish: str | None = None) -> dict[str, Any]:
    """Mistral's chunks carry no logprobs (BerriAI/litellm#16272)."""
    return MISTRAL | {"choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}


async def test_text_sent_as_a_list_of_content_parts_is_read(openai_server: LLMServer) -> None:
    thinking = [{"type": "thinking", "thinking": [{"type": "text", "text": "The user greets me."}]}]
    stream = sse(
        MISTRAL | {"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}]},
        mistral(thinking),
        mistral([{"type": "text", "text": "Bonjour"}]),
        mistral([{"type": "text", "text": " !"}]),
        mistral("", "stop") | {"usage": USAGE},
        "[DONE]",
    )
    openai_server.script(Wire([stream]))

    events = await events_of(openai_model(openai_server))

    assert text_of(events) == "Bonjour !" and text_of(events, ReasoningDelta) == "The user greets me."
    assert events[-1] == Finish("stop", "stop", Usage.of(12, 7))


# Other gateway details


async def test_azure_filter_annotations_are_skipped_and_a_filtered_answer_ends_as_content_filter(
    openai_server: LLMServer,
) -> None:
    """Azure opens with prompt filter results and no choices (AbanteAI/archive-old-cli-mentat#429) and may
    annotate without a delta (microsoft/autogen#6465); a filtered answer ends with content_filter."""
    safe = {"hate": {"filtered": False, "severity": "safe"}, "violence": {"filtered": False, "severity": "safe"}}
    azure = {"id": "", "object": "", "created": 0, "model": ""}
    annotation = azure | {"choices": [{"index": 0, "finish_reason": None, "content_filter_results": safe}]}
    stream = sse(
        azure | {"choices": [], "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": safe}]},
        delta({"role": "assistant", "content": ""}),
        delta({"content": "The battle"}),
        annotation | {"choices": [annotation["choices"][0] | {"content_filter_offsets": {"check_offset": 10}}]},
        delta({}, "content_filter"),
        "[DONE]",
    )
    openai_server.script(Wire([stream]))

    events = await events_of(openai_model(openai_server))

    assert text_of(events) == "The battle" and events[-1].reason == "content-filter"  # type: ignore[union-attr]


async def test_groq_usage_under_x_groq_is_counted(openai_server: LLMServer) -> None:
    """Groq sends the usage in the last chunk under `x_groq` (vercel/ai#1651)."""
    groq = {
        "id": "chatcmpl-8566e76f",
        "object": "chat.completion.chunk",
        "created": 1716131679,
        "model": "llama3-8b-8192",
    }
    x_groq = {"id": "req_01hy8ppkaj", "usage": {"queue_time": 0.07, "prompt_tokens": 23, "completion_tokens": 19}}
    stream = sse(
        delta({"role": "assistant", "content": ""}, head=groq),
        delta({"content": "Hi"}, head=groq),
        delta({}, "stop", head=groq) | {"x_groq": x_groq},
        "[DONE]",
    )
    openai_server.script(Wire([stream]))

    events = await events_of(openai_model(openai_server))

    assert events[-1] == Finish("stop", "stop", Usage.of(23, 19))


# OLLAMA_HOST in every form Ollama accepts (ollama/ollama envconfig Host and ConnectableHost)


OLLAMA_HOSTS = {
    None: "http://127.0.0.1:11434",
    "": "http://127.0.0.1:11434",
    "example.com": "http://example.com:11434",
    "example.com:8080": "http://example.com:8080",
    ":8080": "http://127.0.0.1:8080",
    "0.0.0.0": "http://127.0.0.1:11434",
    "0.0.0.0:8080": "http://127.0.0.1:8080",
    "http://example.com": "http://example.com:80",
    "https://example.com": "https://example.com:443",
    "https://example.com:8443/": "https://example.com:8443",
    "http://example.com/ollama/": "http://example.com:80/ollama",
    "example.com:8080/proxy": "http://example.com:8080/proxy",
    "10.0.0.5": "http://10.0.0.5:11434",
    "[::1]:8080": "http://[::1]:8080",
    "::1": "http://[::1]:11434",
    "[::]:8080": "http://[::1]:8080",
    '"example.com:8080"': "http://example.com:8080",
    "  example.com  ": "http://example.com:11434",
    "ollama.com": "https://ollama.com:443",
}


@pytest.mark.parametrize("value", OLLAMA_HOSTS)
def test_ollama_host_accepts_every_form_ollama_accepts(value: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    if value is None:
        monkeypatch.delenv("OLLAMA_HOST", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_HOST", value)

    model = resolve_model("ollama/llama3")

    assert model.options.base_url == OLLAMA_HOSTS[value] + "/v1"  # type: ignore[attr-defined]


def test_an_ollama_host_with_a_bad_port_uses_the_default_port(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", "example.com:http")

    with caplog.at_level(logging.WARNING, "lodestar.runtime"):
        model = resolve_model("ollama/llama3")

    assert model.options.base_url == "http://example.com:11434/v1"  # type: ignore[attr-defined]
    assert "invalid port 'http'" in caplog.text


@pytest.mark.parametrize("form", [":{port}", "0.0.0.0:{port}", "http://localhost:{port}/"])
async def test_ollama_reaches_the_server_ollama_host_names(
    form: str, openai_server: LLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OLLAMA_HOST", form.format(port=openai_server.root.rsplit(":", 1)[1]))
    openai_server.script(Turn(text="from ollama"))

    assert text_of(await events_of(resolve_model("ollama/llama3"))) == "from ollama"


# Structured output with a root that is not an object


class Book(BaseModel):
    title: str
    year: int | None = None


ROOTS: list[tuple[Any, str, str, Any]] = [
    (list[Book], "elements", '{"elements": [{"title": "Dune", "year": 1965}]}', [Book(title="Dune", year=1965)]),
    (Literal["yes", "no"], "result", '{"result": "yes"}', "yes"),
    (int, "result", '{"result": 42}', 42),
]


@pytest.mark.parametrize(("schema", "key", "answer", "expected"), ROOTS)
async def test_structured_output_with_a_non_object_root_works_under_openai_strict_rules(
    schema: Any, key: str, answer: str, expected: Any, openai_server: LLMServer
) -> None:
    openai_server.script(Turn(text=answer))

    result = await Agent("a", model=model_for(openai_server)).generate("list it", structured_output=schema)

    assert result.error is None and result.object == expected
    sent = openai_server.requests[0].body["response_format"]["json_schema"]
    assert sent["strict"] is True
    root = sent["schema"]
    assert root["type"] == "object" and root["required"] == [key] and root["additionalProperties"] is False
    for definition in root.get("$defs", {}).values():  # every object closed and fully required, as strict demands
        assert definition["additionalProperties"] is False and definition["required"] == ["title", "year"]


class Tagged(BaseModel):
    tags: set[str]
    code: str = Field(min_length=2)


NOT_STRICT: list[tuple[Any, str, Any]] = [
    (dict[str, int], '{"dune": 1965}', {"dune": 1965}),  # free keys: additionalProperties is a schema
    (Tagged, '{"tags": ["a"], "code": "xy"}', Tagged(tags={"a"}, code="xy")),  # uniqueItems, minLength
]


@pytest.mark.parametrize(("schema", "answer", "expected"), NOT_STRICT)
async def test_a_schema_strict_mode_cannot_express_is_sent_without_strict(
    schema: Any, answer: str, expected: Any, openai_server: LLMServer
) -> None:
    openai_server.script(Turn(text=answer))

    result = await Agent("a", model=model_for(openai_server)).generate("say it", structured_output=schema)

    assert result.object == expected
    assert "strict" not in openai_server.requests[0].body["response_format"]["json_schema"]


# Characters split across deltas come out whole


def content_event(text: str) -> str:
    """A content chunk with the text spliced in as it is on the wire, JSON escapes and all."""
    return "data: " + compact(delta({"content": "TEXT"})).replace("TEXT", text) + "\n\n"


async def test_json_escaped_surrogate_halves_split_across_deltas_come_out_whole(openai_server: LLMServer) -> None:
    call = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "react", "arguments": ""}}
    args = ['{\\"face\\": \\"\\ud83d', '\\ude00\\"}']
    arg_events = [compact(delta({"tool_calls": [{"index": 0, "function": {"arguments": "ARGS"}}]})) for _ in args]
    stream = [
        content_event("Smile \\ud83d"),
        content_event("\\ude00 and a lone \\ud83d"),
        content_event("!"),
        sse(delta({"tool_calls": [call]})),
        *(f"data: {event.replace('ARGS', piece)}\n\n" for event, piece in zip(arg_events, args, strict=True)),
        sse(delta({}, "tool_calls"), "[DONE]"),
    ]
    openai_server.script(Wire(stream))

    events = await events_of(openai_model(openai_server))

    assert text_of(events) == "Smile \U0001f600 and a lone \ufffd!"
    assert calls_of(events) == [("react", {"face": "\U0001f600"})]
    for event in events:  # every piece can be written out as UTF-8 on its own
        if isinstance(event, TextDelta | ToolCallDelta):
            (event.text if isinstance(event, TextDelta) else event.args_text).encode()


async def test_anthropic_surrogate_halves_split_across_deltas_come_out_whole(anthropic_server: LLMServer) -> None:
    pieces = anthropic_text(0, "Smile TEXT1", "TEXT2!")
    stream = named_sse(anthropic_start(), *pieces, *anthropic_end("end_turn"))
    anthropic_server.script(Wire([stream.replace("TEXT1", "\\ud83d").replace("TEXT2", "\\ude00")]))

    events = await events_of(model_for(anthropic_server))

    assert text_of(events) == "Smile \U0001f600!"


async def test_utf8_bytes_split_across_network_reads_come_out_whole(openai_server: LLMServer) -> None:
    event = content_event("café \U0001f600").encode()
    cut_e, cut_emoji = event.index("é".encode()) + 1, event.index("\U0001f600".encode()) + 2
    pieces = [event[:cut_e], event[cut_e:cut_emoji], event[cut_emoji:], sse(delta({}, "stop"), "[DONE]").encode()]
    openai_server.script(Wire(pieces))

    assert text_of(await events_of(openai_model(openai_server))) == "café \U0001f600"
