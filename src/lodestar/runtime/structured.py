"""Structured output: a pydantic type the final answer must parse into."""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import InvalidTypeError, RunFailure
from .models.base import ResponseFormat

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class StructuredOutputError(RunFailure, ValueError):
    """The model's final answer is not valid JSON for the requested schema; the run reports it as `result.error`.
    A clearer schema or instructions, or a model with native JSON-schema output, fix it."""


class StructuredOutput:
    def __init__(self, schema: Any) -> None:
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(schema)
            self.json_schema = self.adapter.json_schema()
        except Exception as exc:
            raise InvalidTypeError(
                f"structured_output must be a pydantic model or type, got {schema!r}: {exc}"
            ) from exc
        self.name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(schema, "__name__", "output"))[:64]
        self.root = _object_root(self.json_schema)
        # A root that is not an object (a list, a string, a union) goes out wrapped in one property, as the AI SDK
        # does (`elements` for arrays, `result` otherwise): OpenAI's json_schema output needs an object root.
        self.wrapper = None if self.root.get("type") == "object" else "elements" if _is_array(self.root) else "result"

    def response_format(self) -> ResponseFormat:
        """The schema for native JSON-schema output, strict when it can follow OpenAI's strict rules."""
        return self._response_format

    @functools.cached_property
    def _response_format(self) -> ResponseFormat:
        """Built once: every step of a run asks for it, and the strict form copies the whole schema."""
        schema = self.root if self.wrapper is None else _wrap(self.root, self.wrapper)
        strict = strict_schema(schema)
        return ResponseFormat(name=self.name, schema_=strict or schema, strict=strict is not None)

    def instructions(self) -> str:
        """For providers without native JSON schema support: the schema goes into the system prompt."""
        return (
            "Your final answer must be a single JSON value, with no prose and no code fences, that follows "
            f"this JSON schema:\n{json.dumps(self.json_schema, separators=(',', ':'))}"
        )

    def parse(self, text: str) -> Any:
        data = _extract_json(text)
        if self.wrapper and isinstance(data, dict) and data.keys() == {self.wrapper}:
            data = data[self.wrapper]  # the answer to a wrapped schema; a model told the bare schema answers bare
        try:
            return self.adapter.validate_python(data)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'value'}: {e['msg']}" for e in exc.errors())
            raise StructuredOutputError(f"the final answer does not match {self.name}: {problems}") from None


def _extract_json(text: str) -> Any:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    if fenced:
        stripped = fenced.group(1).strip()
    try:
        return json.loads(stripped)
    except json.JSONDecodeError:
        pass
    starts = [i for i in (stripped.find("{"), stripped.find("[")) if i >= 0]
    if starts:
        start = min(starts)
        end = stripped.rfind("}" if stripped[start] == "{" else "]")
        try:
            return json.loads(stripped[start : end + 1])
        except json.JSONDecodeError:
            pass
    excerpt = text.strip()[:120] or "(empty)"
    raise StructuredOutputError(f"the final answer is not JSON: {excerpt!r}")


def _object_root(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with a root `$ref` (pydantic's form for a recursive model) replaced by what it names."""
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    target = schema.get("$defs", {}).get(ref.removeprefix("#/$defs/"), {})
    return {key: value for key, value in schema.items() if key != "$ref"} | target


def _is_array(schema: dict[str, Any]) -> bool:
    return schema.get("type") == "array"


def _wrap(schema: dict[str, Any], key: str) -> dict[str, Any]:
    """An object with the schema as its one property; `$defs` stay at the root, where `$ref`s point."""
    inner = {name: value for name, value in schema.items() if name != "$defs"}
    wrapped = {"type": "object", "properties": {key: inner}, "required": [key], "additionalProperties": False}
    return wrapped | ({"$defs": schema["$defs"]} if "$defs" in schema else {})


def strict_schema(schema: dict[str, Any]) -> dict[str, Any] | None:
    """The schema under OpenAI's strict rules (as openai-python's to_strict_json_schema makes them): an object
    root, every object closed to extra properties and requiring all of its properties, no siblings beside
    a `$ref`. None when the schema cannot follow them: a dict with free keys, a keyword strict mode refuses,
    a recursive `$ref` with siblings."""
    if schema.get("type") != "object":
        return None
    try:
        return _strict(copy.deepcopy(schema), schema, frozenset())
    except _NotStrict:
        return None


class _NotStrict(Exception):
    pass


# Keywords strict mode refuses (pydantic writes some: min_length, set[...], tuples, discriminated unions).
_NOT_IN_STRICT = frozenset(
    {
        "patternProperties",
        "propertyNames",
        "minProperties",
        "maxProperties",
        "unevaluatedProperties",
        "minLength",
        "maxLength",
        "uniqueItems",
        "prefixItems",
        "contains",
        "oneOf",
        "not",
        "if",
    }
)


def _strict(node: dict[str, Any], root: dict[str, Any], inlining: frozenset[str]) -> dict[str, Any]:
    if _NOT_IN_STRICT & node.keys() or node.get("additionalProperties") not in (None, False):
        raise _NotStrict
    ref = node.get("$ref")
    if isinstance(ref, str) and len(node) > 1:  # inline what the $ref names; the node's own keys win
        target = root.get("$defs", {}).get(ref.removeprefix("#/$defs/"))
        if ref in inlining or not isinstance(target, dict):
            raise _NotStrict
        node = copy.deepcopy(target) | {key: value for key, value in node.items() if key != "$ref"}
        return _strict(node, root, inlining | {ref})
    all_of = node.get("allOf")
    if isinstance(all_of, list) and len(all_of) == 1:
        node = {key: value for key, value in node.items() if key != "allOf"} | all_of[0]
        return _strict(node, root, inlining)
    if node.get("type") == "object":
        node["additionalProperties"] = False
        node["required"] = list(node.get("properties", {}))
    if "default" in node and node["default"] is None:
        del node["default"]
    for key in ("properties", "$defs"):
        if isinstance(node.get(key), dict):
            node[key] = {name: _strict(value, root, inlining) for name, value in node[key].items()}
    for key in ("anyOf", "allOf"):
        if isinstance(node.get(key), list):
            node[key] = [_strict(value, root, inlining) for value in node[key]]
    if isinstance(node.get("items"), dict):
        node["items"] = _strict(node["items"], root, inlining)
    return node
