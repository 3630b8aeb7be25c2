"""Structured output: native JSON schema on OpenAI, schema instructions on Anthropic, validation either way."""

from __future__ import annotations

import pytest
from llm_servers import LLMServer, Turn
from pydantic import BaseModel, Field
from test_agent_runs import collect, lookup, model_for

from lodestar import Agent
from lodestar.runtime.structured import StructuredOutput, StructuredOutputError

pytestmark = pytest.mark.anyio


class Weather(BaseModel):
    city: str
    celsius: float = Field(description="temperature in degrees Celsius")


async def test_openai_gets_the_json_schema_and_the_answer_is_validated(openai_server: LLMServer) -> None:
    openai_server.script(Turn(tool_calls=[("lookup", {"term": "Oslo"})]), Turn(text='{"city": "Oslo", "celsius": 3.5}'))
    agent = Agent("w", model=model_for(openai_server), tools=[lookup])
    chunks, result = await collect(agent, "weather in Oslo?", structured_output=Weather)
    assert result.object == Weather(city="Oslo", celsius=3.5)
    object_result = next(c for c in chunks if c.type == "object-result")
    assert object_result.model_dump()["object"] == {"city": "Oslo", "celsius": 3.5}  # beside the envelope, as Mastra's
    assert chunks[-1].payload.output.object == {"city": "Oslo", "celsius": 3.5}
    response_format = openai_server.requests[0].body["response_format"]
    assert response_format["type"] == "json_schema"
    assert response_format["json_schema"]["name"] == "Weather"
    assert response_format["json_schema"]["schema"]["required"] == ["city", "celsius"]


async def test_anthropic_gets_schema_instructions_and_fenced_json_is_accepted(anthropic_server: LLMServer) -> None:
    anthropic_server.script(Turn(text='```json\n{"city": "Rome", "celsius": 21}\n```'))
    agent = Agent("w", instructions="Report weather.", model=model_for(anthropic_server))
    result = await agent.generate("weather in Rome?", structured_output=Weather)
    assert result.object == Weather(city="Rome", celsius=21)
    body = anthropic_server.requests[0].body
    assert "response_format" not in body
    assert body["system"].startswith("Report weather.")
    assert '"celsius"' in body["system"] and "JSON schema" in body["system"]


async def test_invalid_structured_output_is_a_clear_error(server_kind: str, request: pytest.FixtureRequest) -> None:
    server: LLMServer = request.getfixturevalue(f"{server_kind}_server")
    server.script(Turn(text='{"city": "Oslo", "celsius": "cold"}'))
    chunks, result = await collect(Agent("w", model=model_for(server)), "weather?", structured_output=Weather)
    assert result.finish_reason == "error" and result.object is None
    assert result.error is not None
    assert "does not match Weather" in result.error.message and "celsius" in result.error.message
    assert any(c.type == "error" for c in chunks)
    assert result.text == '{"city": "Oslo", "celsius": "cold"}'


@pytest.fixture(params=["openai", "anthropic"])
def server_kind(request: pytest.FixtureRequest) -> str:
    return request.param


async def test_default_options_carry_structured_output(openai_server: LLMServer) -> None:
    openai_server.script(Turn(text='{"city": "Lima", "celsius": 18}'))
    agent = Agent("w", model=model_for(openai_server), default_options={"structured_output": Weather})
    assert (await agent.generate("weather?")).object == Weather(city="Lima", celsius=18)


def test_parse_finds_json_in_prose_and_refuses_non_json() -> None:
    out = StructuredOutput(Weather)
    assert out.parse('Here you go: {"city": "Oslo", "celsius": 1} hope it helps') == Weather(city="Oslo", celsius=1)
    assert StructuredOutput(list[int]).parse("[1, 2, 3]") == [1, 2, 3]
    with pytest.raises(StructuredOutputError, match="not JSON"):
        out.parse("It is sunny.")
    with pytest.raises(TypeError, match="structured_output"):
        StructuredOutput(object())
