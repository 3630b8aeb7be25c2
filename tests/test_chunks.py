"""Typed chunks: the models against the chunks reference page, Mastra's wire shape, and parsing the wire back.

The page's convention: each chunk type has a level-3 heading that is only its type in backticks
(### `text-delta`), followed by a table whose first column lists the type's fields in backticks, by
their path in the chunk's JSON without the `payload.` prefix; a Type cell ending in `?` marks a field
left out of the JSON while unset. The envelope's fields are in the table under "## The envelope".
"""

from __future__ import annotations

import json
import re
import types
import typing
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from lodestar import Agent, ToolContext, tool
from lodestar.runtime import BaseChunk, Chunk, DataChunk, parse_chunk
from lodestar.runtime.chunks import (
    DATA,
    DeltaPayload,
    ErrorInfo,
    ObjectResultChunk,
    StepFinishChunk,
    StepFinishPayload,
    StepOutcome,
    TextDeltaChunk,
    ToolResultChunk,
    WireModel,
)
from lodestar.runtime.models.scripted import ScriptedModel, call, calls, reply

PAGE = Path(__file__).resolve().parents[1] / "docs_corpus" / "reference" / "chunks.md"
ENVELOPE = set(BaseChunk.model_fields)


def chunk_classes() -> dict[str, type[BaseChunk]]:
    """The union's members by their tag: every chunk type the runtime defines."""
    union = typing.get_args(Chunk)[0]
    return {member.__metadata__[0].tag: typing.get_args(member)[0] for member in typing.get_args(union)}


def nested_model(annotation: Any) -> type[WireModel] | None:
    """The wire model a field holds (`Output | None` holds Output); chunks held whole are leaves."""
    for candidate in (annotation, *typing.get_args(annotation)):
        if isinstance(candidate, type) and issubclass(candidate, WireModel):
            return None if issubclass(candidate, BaseChunk) else candidate
    return None


def model_paths(model: type[BaseModel], prefix: str = "") -> dict[str, bool]:
    """Each field's path in the JSON, mapped to whether it is left out while unset."""
    found: dict[str, bool] = {}
    for name, field in model.model_fields.items():
        path = prefix + (field.alias or name)
        found[path] = field.exclude_if is not None
        if inner := nested_model(field.annotation):
            found |= model_paths(inner, path + ".")
    return found


def chunk_paths(cls: type[BaseChunk]) -> dict[str, bool]:
    found: dict[str, bool] = {}
    for name, field in cls.model_fields.items():
        if name == "payload":
            found |= model_paths(field.annotation)
        elif name not in ENVELOPE:
            found[field.alias or name] = field.exclude_if is not None
    return found


def table(section: str) -> dict[str, bool]:
    """The first table of a page section: field path -> whether its Type cell ends in `?`."""
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+?) \|", section, re.M)
    return {field: kind.endswith("?") for field, kind in rows}


def page_sections() -> dict[str, str]:
    text = PAGE.read_text("utf-8")
    parts = re.split(r"^(#{2,3} .+)$", text, flags=re.M)
    return {heading: body for heading, body in zip(parts[1::2], parts[2::2], strict=True)}


def documented_chunks() -> dict[str, dict[str, bool]]:
    found = {}
    for heading, body in page_sections().items():
        if match := re.fullmatch(r"### `([^`]+)`", heading):
            assert match.group(1) not in found, f"{match.group(1)} is documented twice"
            found[match.group(1)] = table(body)
    return found


def test_the_reference_page_lists_exactly_the_chunk_types_and_fields_of_the_models() -> None:
    documented = documented_chunks()
    defined = {tag: chunk_paths(cls) for tag, cls in chunk_classes().items()}
    assert sorted(documented) == sorted(defined)
    for kind, fields in defined.items():
        assert documented[kind] == fields, f"### `{kind}`: the page's fields and '?' marks differ from the model"


def test_the_reference_page_lists_the_envelope() -> None:
    envelope = table(page_sections()["## The envelope"])
    fields = {field.alias or name: field.exclude_if is not None for name, field in BaseChunk.model_fields.items()}
    assert envelope == fields


def test_the_seven_background_types_are_defined() -> None:
    events = ("started", "running", "progress", "output", "completed", "failed", "cancelled")
    assert {f"background-task-{event}" for event in events} <= set(chunk_classes())


def sample(model: type[BaseModel]) -> dict[str, Any]:
    """Wire JSON for a model with every field set, optional ones included."""
    return {field.alias or name: sample_value(field.annotation) for name, field in model.model_fields.items()}


def sample_value(annotation: Any) -> Any:
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return sample_value(args[0])
    if typing.get_origin(annotation) is typing.Literal:
        return args[0]
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return sample(annotation)
    simple = {str: "s", int: 3, bool: True, datetime: "2026-01-02T03:04:05Z", dict: {"k": [1, None]}}
    if annotation in simple or typing.get_origin(annotation) in simple:
        return simple.get(annotation) or simple[typing.get_origin(annotation)]
    if typing.get_origin(annotation) is list:
        return [sample_value(args[0])]
    return {"any": ["json", 1.5, None]}


def samples() -> list[dict[str, Any]]:
    found = []
    for tag, cls in chunk_classes().items():
        wire = sample(cls)
        wire["type"] = "data-custom" if tag == DATA else tag
        found.append(wire)
    return found


@pytest.mark.parametrize("wire", samples(), ids=lambda wire: wire["type"])
def test_every_chunk_type_round_trips_through_its_wire_json(wire: dict[str, Any]) -> None:
    chunk = parse_chunk(json.dumps(wire))
    assert chunk.type == wire["type"]
    assert chunk.model_dump(mode="json") == wire
    assert parse_chunk(chunk.model_dump_json()) == chunk
    assert parse_chunk(chunk.model_dump()) == chunk
    assert isinstance(chunk, BaseChunk)


def test_the_wire_is_mastras_envelope_in_camel_case() -> None:
    chunk = ToolResultChunk(
        run_id="run_1",
        payload={"tool_call_id": "call_1", "tool_name": "t", "args": {}, "result": None, "is_error": False},
    )
    assert chunk.model_dump() == {
        "type": "tool-result",
        "runId": "run_1",
        "from": "AGENT",
        "payload": {"toolCallId": "call_1", "toolName": "t", "args": {}, "result": None, "isError": False},
    }
    assert chunk.payload.tool_call_id == "call_1" and chunk.from_ == "AGENT" and chunk.metadata is None


def test_unset_optional_fields_are_absent_and_set_ones_present() -> None:
    retry = StepFinishChunk(run_id="r", payload=StepFinishPayload(step_result=StepOutcome(reason="retry")))
    assert retry.model_dump()["payload"] == {"stepResult": {"reason": "retry"}}
    tagged = retry.model_copy(update={"metadata": {"source": "test"}})
    assert tagged.model_dump()["metadata"] == {"source": "test"}
    assert ErrorInfo(message="m", status=None).model_dump() == {"message": "m"}


def test_object_result_and_data_chunks_carry_their_values_beside_the_envelope() -> None:
    result = ObjectResultChunk(run_id="r", object={"city": "Oslo"})
    assert result.model_dump() == {"type": "object-result", "runId": "r", "from": "AGENT", "object": {"city": "Oslo"}}
    data = DataChunk(type="data-status", run_id="r", data=[1])
    assert data.model_dump() == {"type": "data-status", "runId": "r", "from": "AGENT", "data": [1]}
    assert data.is_data and not result.is_data


def test_models_take_python_or_wire_names() -> None:
    assert StepOutcome(reason="stop", is_continued=False) == StepOutcome(reason="stop", isContinued=False)


@pytest.mark.parametrize(
    ("wire", "problem"),
    [
        ({"type": "text-deltas", "runId": "r", "payload": {"id": "t", "text": "x"}}, "unknown chunk type"),
        ({"type": "data-", "runId": "r", "data": 1}, "must start with 'data-'"),
        ({"type": "text-delta", "runId": "r", "payload": {"id": "t"}}, "payload.text"),
        ({"type": "text-delta", "runId": "r", "payload": {"id": "t", "text": "x", "providerMetadata": {}}}, "extra"),
        ({"type": "text-delta", "runId": "r", "from": "MODEL", "payload": {"id": "t", "text": "x"}}, "from"),
    ],
)
def test_parse_chunk_refuses_what_the_reference_does_not_list(wire: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValidationError, match=re.escape(problem)):
        parse_chunk(wire)


def test_with_payload_returns_a_validated_copy() -> None:
    chunk = TextDeltaChunk(run_id="r", payload=DeltaPayload(id="t", text="secret"))
    masked = chunk.with_payload(text="******")
    assert (masked.payload.text, chunk.payload.text) == ("******", "secret")
    assert masked.run_id == "r" and masked.payload.id == "t"
    with pytest.raises(ValidationError, match="txt"):
        chunk.with_payload(txt="typo")
    with pytest.raises(ValidationError, match="text"):
        chunk.with_payload(text=None)
    with pytest.raises(TypeError, match="no payload"):
        ObjectResultChunk(run_id="r", object=1).with_payload(object=2)


@tool
async def report(city: str, ctx: ToolContext) -> dict:
    """Report.

    Args:
        city: The city.
    """
    await ctx.progress("halfway", 0.5)
    await ctx.writer.custom("data-source", {"city": city})
    return {"city": city, "at": datetime(2026, 1, 2, tzinfo=UTC)}


@pytest.mark.anyio
async def test_every_chunk_of_a_real_run_parses_back_from_its_json() -> None:
    model = ScriptedModel([calls(call("report", {"city": "Oslo"})), reply("Sunny.")])
    agent = Agent("reporter", model=model, tools=[report])
    chunks = [chunk async for chunk in agent.stream("go")]
    assert {"tool-output", "data-source", "tool-result", "text-delta", "finish"} <= {c.type for c in chunks}
    for chunk in chunks:
        assert type(parse_chunk(chunk.model_dump_json())) is type(chunk)
        assert parse_chunk(chunk.model_dump_json()).model_dump(mode="json") == chunk.model_dump(mode="json")
