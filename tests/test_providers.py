"""The OpenAI and Anthropic providers against local servers that speak the real HTTP and SSE formats."""

from __future__ import annotations

import json
import socket
import time
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import anyio
import pytest
from llm_servers import Fail, LLMServer, Raw, Stall, Turn

from lodestar.runtime.messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart, text_message
from lodestar.runtime.models import resolve_model
from lodestar.runtime.models.anthropic import AnthropicModel
from lodestar.runtime.models.base import (
    CallContext,
    Finish,
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelSettings,
    ReasoningDelta,
    ReasoningEnd,
    ResponseFormat,
    TextDelta,
    ToolCallDelta,
    ToolCallStart,
    ToolSpec,
)
from lodestar.runtime.models.http import HttpOptions, parse_retry_after, retry_delay
from lodestar.runtime.models.openai import OpenAIModel
from lodestar.runtime.usage import Usage

pytestmark = pytest.mark.anyio

CONTEXT = CallContext(run_id="run_test")
HELLO = ModelRequest(messages=[text_message("user", "hi")])
SEARCH = ToolSpec(name="search", description="Search the docs", input_schema={"type": "object", "properties": {}})


def openai_model(server: LLMServer, **options: Any) -> OpenAIModel:
    return OpenAIModel("gpt-test", base_url=server.url, api_key="sk-test", backoff_s=0.01, **options)


def anthropic_model(server: LLMServer, **options: Any) -> AnthropicModel:
    return AnthropicModel("claude-test", base_url=server.url, api_key="sk-ant-test", backoff_s=0.01, **options)


async def collect(model: Model, request: ModelRequest = HELLO) -> list[ModelEvent]:
    with anyio.fail_after(10):
        return [event async for event in model.stream(request, CONTEXT)]


async def failure(model: Model, request: ModelRequest = HELLO) -> ModelError:
    with pytest.raises(ModelError) as info:
        await collect(model, request)
    return info.value


def texts(events: list[ModelEvent], kind: type[TextDelta | ReasoningDelta] = TextDelta) -> list[str]:
    return [event.text for event in events if isinstance(event, kind)]


def tool_calls(events: list[ModelEvent]) -> dict[str, tuple[str, list[str]]]:
    """Tool call id -> (name, argument fragments), checking every fragment follows its start."""
    names = {event.id: event.name for event in events if isinstance(event, ToolCallStart)}
    fragments: dict[str, list[str]] = defaultdict(list)
    for event in events:
        if isinstance(event, ToolCallDelta):
            assert event.id in names
            fragments[event.id].append(event.args_text)
    return {call_id: (name, fragments[call_id]) for call_id, name in names.items()}


def finish_of(events: list[ModelEvent]) -> Finish:
    assert [type(event) for event in events].count(Finish) == 1
    assert isinstance(events[-1], Finish)
    return events[-1]


def conversation() -> list[Message]:
    """A user question, an assistant tool-calling turn, and the tool turn answering both calls."""
    calls = [
        ToolCallPart(tool_call_id="call_1", tool_name="search", args={"query": "threads"}),
        ToolCallPart(tool_call_id="call_2", tool_name="read", args={"path": "a.md"}),
    ]
    results = [
        ToolResultPart(tool_call_id="call_1", tool_name="search", result={"hits": 2}),
        ToolResultPart(tool_call_id="call_2", tool_name="read", result="no such page", is_error=True),
    ]
    return [
        text_message("user", "What are threads?"),
        Message(role="assistant", content=[TextPart(text="Looking."), *calls]),
        Message(role="tool", content=results),
    ]


def closed_port_url() -> str:
    with socket.create_server(("127.0.0.1", 0)) as sock:
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


# OpenAI


async def test_openai_streams_reasoning_text_and_usage(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="Threads group messages.", reasoning="They asked about threads", usage=(12, 7)))

    events = await collect(openai_model(openai_server))

    assert len(texts(events)) >= 2 and "".join(texts(events)) == "Threads group messages."
    assert "".join(texts(events, ReasoningDelta)) == "They asked about threads"
    assert finish_of(events) == Finish("stop", "stop", Usage.of(12, 7))


async def test_openai_tool_call_arguments_reassemble_from_fragments(openai_server: LLMServer) -> None:
    args = {"query": "semantic recall", "limit": 3}
    openai_server.script(Turn(tool_calls=[("search", args)]))

    events = await collect(openai_model(openai_server))

    [(name, fragments)] = tool_calls(events).values()
    assert name == "search" and len(fragments) >= 2 and json.loads("".join(fragments)) == args
    assert (finish_of(events).reason, finish_of(events).raw_reason) == ("tool-calls", "tool_calls")


async def test_openai_parallel_tool_calls_keep_their_own_arguments(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="Two lookups.", tool_calls=[("search", {"query": "a"}), ("read", '{"path": "b.md')]))

    events = await collect(openai_model(openai_server))

    calls = list(tool_calls(events).values())
    assert [name for name, _ in calls] == ["search", "read"]
    assert json.loads("".join(calls[0][1])) == {"query": "a"}
    assert "".join(calls[1][1]) == '{"path": "b.md'  # malformed text passes through for the loop to report
    assert len(set(tool_calls(events))) == 2


async def test_openai_request_body_translation(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="{}"))
    request = ModelRequest(
        system="Be brief.",
        messages=conversation(),
        tools=[SEARCH],
        tool_choice="search",
        response_format=ResponseFormat(name="answer", schema={"type": "object"}),
        settings=ModelSettings(temperature=0.2, max_tokens=100, top_p=0.9, stop=["END"], extra={"seed": 7}),
    )

    await collect(openai_model(openai_server), request)

    [received] = openai_server.requests
    body = received.body
    search_args = '{"query": "threads"}'
    assert received.path == "/v1/chat/completions"
    assert received.headers["authorization"] == "Bearer sk-test"
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "What are threads?"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "search", "arguments": search_args}},
                {"id": "call_2", "type": "function", "function": {"name": "read", "arguments": '{"path": "a.md"}'}},
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"hits": 2}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "no such page"},
    ]
    function = {"name": "search", "description": "Search the docs", "parameters": SEARCH.input_schema}
    assert body["tools"] == [{"type": "function", "function": function}]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "search"}}
    json_schema = {"name": "answer", "schema": {"type": "object"}}
    assert body["response_format"] == {"type": "json_schema", "json_schema": json_schema}
    assert (body["model"], body["stream"], body["stream_options"]) == ("gpt-test", True, {"include_usage": True})
    settings = {key: body[key] for key in ("temperature", "max_completion_tokens", "top_p", "stop", "seed")}
    assert settings == {"temperature": 0.2, "max_completion_tokens": 100, "top_p": 0.9, "stop": ["END"], "seed": 7}


async def test_openai_omits_tools_and_unset_settings(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text="ok"), Turn(text="ok"))
    model = openai_model(openai_server)

    await collect(model, HELLO.model_copy(update={"tool_choice": "required"}))
    await collect(model, HELLO.model_copy(update={"tools": [SEARCH], "tool_choice": "required"}))

    bare, with_tools = (received.body for received in openai_server.requests)
    unset = {"tools", "tool_choice", "response_format", "temperature", "max_tokens", "max_completion_tokens", "stop"}
    assert not unset & bare.keys()
    assert with_tools["tool_choice"] == "required"


async def test_openai_error_inside_the_stream_after_content_is_final(openai_server: LLMServer) -> None:
    shown = {"choices": [{"index": 0, "delta": {"content": "Half an"}, "finish_reason": None}]}
    openai_server.script(Raw([shown, {"error": {"message": "the model is overloaded", "type": "server_error"}}]))

    error = await failure(openai_model(openai_server))

    assert error.provider == "openai" and "the model is overloaded" in str(error) and "(server_error)" in str(error)
    assert error.retryable and len(openai_server.requests) == 1  # not retried: the caller has seen "Half an"


async def test_openai_stream_cut_before_the_end(openai_server: LLMServer) -> None:
    openai_server.script(Raw([{"choices": [{"index": 0, "delta": {"content": "Half"}, "finish_reason": None}]}]))

    error = await failure(openai_model(openai_server))

    assert "stopped before the model finished" in str(error)


async def test_openai_retries_a_server_error(openai_server: LLMServer) -> None:
    openai_server.script(Fail(500), Turn(text="recovered"))

    events = await collect(openai_model(openai_server))

    assert "".join(texts(events)) == "recovered"
    assert len(openai_server.requests) == 2


async def test_openai_honours_retry_after(openai_server: LLMServer) -> None:
    openai_server.script(Fail(429, headers={"Retry-After": "0"}), Turn(text="ok"))
    model = openai_model(openai_server)
    patient = OpenAIModel(model.model_id, base_url=openai_server.url, api_key="sk-test", backoff_s=60)

    with anyio.fail_after(5):  # a 60 s backoff would blow this: the Retry-After of 0 was used instead
        events = await collect(patient)

    assert "".join(texts(events)) == "ok" and len(openai_server.requests) == 2


async def test_openai_bad_key_fails_at_once(openai_server: LLMServer) -> None:
    openai_server.script(Fail(401, {"error": {"message": "invalid api key"}}))

    error = await failure(openai_model(openai_server))

    assert error.status == 401 and error.provider == "openai"
    assert "openai" in str(error) and "invalid api key" in str(error) and "OPENAI_API_KEY" in str(error)
    assert len(openai_server.requests) == 1


async def test_openai_gives_up_after_the_retries(openai_server: LLMServer) -> None:
    openai_server.script(Fail(503), Fail(503), Fail(503))

    error = await failure(openai_model(openai_server, max_retries=2))

    assert error.status == 503 and "503" in str(error) and "after 3 attempts" in str(error)
    assert len(openai_server.requests) == 3


async def test_openai_times_out_on_a_stalled_server(openai_server: LLMServer) -> None:
    openai_server.script(Stall())

    started = time.monotonic()
    error = await failure(openai_model(openai_server, timeout_s=0.3, max_retries=0))

    assert "no response within 0.3 s" in str(error) and time.monotonic() - started < 5


async def test_openai_connection_refused() -> None:
    model = OpenAIModel("gpt-test", base_url=closed_port_url(), api_key="sk-test", max_retries=1, backoff_s=0.01)

    error = await failure(model)

    assert "cannot reach" in str(error) and "after 2 attempts" in str(error)


async def test_openai_missing_key_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)

    error = await failure(OpenAIModel("gpt-test"))

    assert "OPENAI_API_KEY is not set" in str(error) and "export OPENAI_API_KEY" in str(error)


async def test_openai_custom_base_url_needs_no_key(openai_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("OPENAI_BASE_URL", openai_server.url)
    openai_server.script(Turn(text="local"))

    events = await collect(OpenAIModel("local-model"))

    assert "".join(texts(events)) == "local"
    assert "authorization" not in openai_server.requests[0].headers


async def test_ollama_uses_ollama_host(openai_server: LLMServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OLLAMA_HOST", openai_server.url.removesuffix("/v1").removeprefix("http://"))
    openai_server.script(Turn(text="from ollama"))

    model = resolve_model("ollama/llama3")
    events = await collect(model)

    assert isinstance(model, OpenAIModel) and model.provider == "ollama" and model.model_id == "llama3"
    assert model.options.base_url == openai_server.url and model.options.base_url.endswith("/v1")
    assert "".join(texts(events)) == "from ollama"
    assert openai_server.requests[0].body["model"] == "llama3"


# Anthropic


async def test_anthropic_streams_thinking_text_and_usage(anthropic_server: LLMServer) -> None:
    anthropic_server.script(Turn(text="Threads group messages.", reasoning="They asked about threads", usage=(20, 8)))

    events = await collect(anthropic_model(anthropic_server))

    assert len(texts(events)) >= 2 and "".join(texts(events)) == "Threads group messages."
    assert "".join(texts(events, ReasoningDelta)) == "They asked about threads"
    assert finish_of(events) == Finish("stop", "end_turn", Usage.of(20, 8))


async def test_anthropic_tool_use_streams_partial_json(anthropic_server: LLMServer) -> None:
    args = {"query": "semantic recall", "limit": 3}
    anthropic_server.script(Turn(text="Let me look.", tool_calls=[("search", args), ("read", {"path": "b.md"})]))

    events = await collect(anthropic_model(anthropic_server))

    calls = list(tool_calls(events).values())
    assert [name for name, _ in calls] == ["search", "read"]
    assert len(calls[0][1]) >= 2 and json.loads("".join(calls[0][1])) == args
    assert json.loads("".join(calls[1][1])) == {"path": "b.md"}
    assert "".join(texts(events)) == "Let me look."
    assert (finish_of(events).reason, finish_of(events).raw_reason) == ("tool-calls", "tool_use")


async def test_anthropic_tool_without_input_and_cached_usage(anthropic_server: LLMServer) -> None:
    tool_block = {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}}
    anthropic_server.script(
        Raw(
            [
                {"type": "message_start", "message": {"usage": {"input_tokens": 5, "cache_read_input_tokens": 100}}},
                {"type": "content_block_start", "index": 0, "content_block": tool_block},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": ""}},
                {"type": "content_block_stop", "index": 0},
                {"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 3}},
                {"type": "message_stop"},
            ]
        )
    )

    events = await collect(anthropic_model(anthropic_server))

    assert events[0] == ToolCallStart("toolu_1", "now")
    assert not any(isinstance(event, ToolCallDelta) for event in events)  # empty args: the loop reads them as {}
    assert finish_of(events).usage == Usage.of(105, 3)  # cached input counts as input


async def test_anthropic_request_body_translation(anthropic_server: LLMServer) -> None:
    anthropic_server.script(Turn(text="ok"))
    messages = [
        Message(role="system", content=[TextPart(text="Cite pages.")]),
        *conversation(),
        text_message("user", "And memory?"),
        text_message("user", "Briefly."),
    ]
    request = ModelRequest(
        system="Be brief.",
        messages=messages,
        tools=[SEARCH],
        tool_choice="required",
        settings=ModelSettings(temperature=0.2, stop=["END"]),
    )

    await collect(anthropic_model(anthropic_server), request)

    [received] = anthropic_server.requests
    body = received.body
    assert received.path == "/v1/messages"
    assert received.headers["x-api-key"] == "sk-ant-test"
    assert received.headers["anthropic-version"] == "2023-06-01"
    assert body["system"] == "Be brief.\n\nCite pages."
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "What are threads?"}]},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "tool_use", "id": "call_1", "name": "search", "input": {"query": "threads"}},
                {"type": "tool_use", "id": "call_2", "name": "read", "input": {"path": "a.md"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": '{"hits": 2}', "is_error": False},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "no such page", "is_error": True},
                {"type": "text", "text": "And memory?"},
                {"type": "text", "text": "Briefly."},
            ],
        },
    ]
    assert body["tools"] == [{"name": "search", "description": "Search the docs", "input_schema": SEARCH.input_schema}]
    assert body["tool_choice"] == {"type": "any"}
    assert (body["model"], body["stream"], body["max_tokens"]) == ("claude-test", True, 4096)
    assert (body["temperature"], body["stop_sequences"]) == (0.2, ["END"])
    assert "top_p" not in body and "response_format" not in body


async def test_anthropic_thinking_blocks_come_with_their_signature_and_go_back_as_sent(
    anthropic_server: LLMServer,
) -> None:
    secret = {"type": "redacted_thinking", "data": "ENCRYPTED"}
    whole = {"type": "thinking", "thinking": "All at once.", "signature": "sig2"}  # as some gateways send it
    anthropic_server.script(
        Raw(
            [
                {"type": "message_start", "message": {"usage": {"input_tokens": 5}}},
                {"type": "content_block_start", "index": 0, "content_block": {"type": "thinking", "thinking": ""}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "thinking_delta", "thinking": "Hm."}},
                {"type": "content_block_delta", "index": 0, "delta": {"type": "signature_delta", "signature": "sig1"}},
                {"type": "content_block_stop", "index": 0},
                {"type": "content_block_start", "index": 1, "content_block": secret},
                {"type": "content_block_stop", "index": 1},
                {"type": "content_block_start", "index": 2, "content_block": whole},
                {"type": "content_block_stop", "index": 2},
                {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 3}},
                {"type": "message_stop"},
            ]
        ),
        Turn(text="ok"),
    )
    model = anthropic_model(anthropic_server)

    events = await collect(model)
    assert events[:5] == [
        ReasoningDelta("Hm."),
        ReasoningEnd(signature="sig1"),
        ReasoningEnd(redacted="ENCRYPTED"),
        ReasoningDelta("All at once."),
        ReasoningEnd(signature="sig2"),
    ]

    reasoning = [
        ReasoningPart(text="Hm.", signature="sig1"),
        ReasoningPart(redacted="ENCRYPTED"),
        ReasoningPart(text="another provider's reasoning, unsigned"),
    ]
    history = [*HELLO.messages, Message(role="assistant", content=[*reasoning, TextPart(text="Hi.")])]
    await collect(model, ModelRequest(messages=[*history, text_message("user", "and?")]))
    assert anthropic_server.requests[1].body["messages"][1]["content"] == [
        {"type": "thinking", "thinking": "Hm.", "signature": "sig1"},
        secret,
        {"type": "text", "text": "Hi."},
    ]


async def test_anthropic_tells_tool_turns_as_text_when_the_request_has_no_tools(anthropic_server: LLMServer) -> None:
    anthropic_server.script(Turn(text="ok"))

    await collect(anthropic_model(anthropic_server), ModelRequest(messages=conversation()))

    body = anthropic_server.requests[0].body
    assert "tools" not in body
    assert body["messages"][1:] == [
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Looking."},
                {"type": "text", "text": '[called search with {"query": "threads"}]'},
                {"type": "text", "text": '[called read with {"path": "a.md"}]'},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": '[search returned] {"hits": 2}'},
                {"type": "text", "text": "[read returned] no such page"},
            ],
        },
    ]


async def test_anthropic_error_event_after_content_is_final(anthropic_server: LLMServer) -> None:
    error_event = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    text_block = {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    delta = {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hal"}}
    start = {"type": "message_start", "message": {"usage": {"input_tokens": 1}}}
    anthropic_server.script(Raw([start, text_block, delta, error_event]))

    error = await failure(anthropic_model(anthropic_server))

    assert error.provider == "anthropic" and "Overloaded" in str(error) and error.retryable
    assert len(anthropic_server.requests) == 1


async def test_anthropic_bad_key_fails_at_once(anthropic_server: LLMServer) -> None:
    error_body = {"type": "error", "error": {"type": "authentication_error", "message": "bad key"}}
    anthropic_server.script(Fail(401, error_body))

    error = await failure(anthropic_model(anthropic_server))

    assert error.status == 401 and "anthropic" in str(error) and "ANTHROPIC_API_KEY" in str(error)
    assert "bad key" in str(error) and len(anthropic_server.requests) == 1


async def test_anthropic_retries_a_server_error(anthropic_server: LLMServer) -> None:
    anthropic_server.script(Fail(529), Turn(text="recovered"))

    events = await collect(anthropic_model(anthropic_server))

    assert "".join(texts(events)) == "recovered" and len(anthropic_server.requests) == 2


async def test_anthropic_missing_key_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_BASE_URL", raising=False)

    error = await failure(AnthropicModel("claude-test"))

    assert "ANTHROPIC_API_KEY is not set" in str(error)


# Shared plumbing


def test_retry_delay_follows_retry_after_then_jittered_backoff() -> None:
    options = HttpOptions(provider="test", base_url="http://x", headers={}, backoff_s=0.5, max_backoff_s=30)
    in_ten_s = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    long_ago = format_datetime(datetime.now(UTC) - timedelta(days=1), usegmt=True)

    assert retry_delay(0, parse_retry_after("3"), options) == 3.0
    assert 8.0 <= retry_delay(0, parse_retry_after(in_ten_s), options) <= 10.0
    assert retry_delay(0, parse_retry_after(long_ago), options) == 0.0
    assert retry_delay(0, parse_retry_after("3600"), options) == 3600.0  # stream_model refuses waits this long
    for attempt in range(8):
        ceiling = min(30, 0.5 * 2**attempt)
        delays = [retry_delay(attempt, None, options) for _ in range(50)]
        assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
        assert len(set(delays)) > 1  # jittered, so concurrent clients do not retry in lockstep
    assert parse_retry_after("soon") is None  # an unreadable Retry-After falls back to backoff


async def test_a_retry_after_longer_than_allowed_fails_at_once(openai_server: LLMServer) -> None:
    openai_server.script(Fail(429, headers={"Retry-After": "3600"}), Turn(text="never reached"))
    error = await failure(openai_model(openai_server))
    assert error.status == 429 and "asked to wait 3600 s" in str(error)
    assert len(openai_server.requests) == 1


async def test_a_plain_json_answer_is_explained_not_parsed(openai_server: LLMServer) -> None:
    openai_server.script(Fail(200, {"choices": [{"message": {"content": "hi"}}]}))
    error = await failure(openai_model(openai_server))
    assert "expected a text/event-stream answer" in str(error) and "application/json" in str(error)


async def test_a_redirect_names_where_to_point_the_base_url(openai_server: LLMServer) -> None:
    openai_server.script(Fail(307, {}, headers={"Location": "https://elsewhere.example/v1/chat/completions"}))
    error = await failure(openai_model(openai_server))
    assert "redirects to https://elsewhere.example/v1/chat/completions" in str(error)


async def test_a_stream_event_that_is_not_an_object_is_a_model_error(openai_server: LLMServer) -> None:
    openai_server.script(Raw(["42"]))
    assert "expected a JSON object" in str(await failure(openai_model(openai_server)))
