"""Structured output: a pydantic type the final answer must parse into."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import TypeAdapter, ValidationError

from .models.base import ResponseFormat

_FENCE = re.compile(r"^```(?:json)?\s*\n?(.*?)\n?```$", re.DOTALL)


class StructuredOutputError(ValueError):
    """The model's final answer is not valid JSON for the requested schema."""


class StructuredOutput:
    def __init__(self, schema: Any) -> None:
        try:
            self.adapter: TypeAdapter[Any] = TypeAdapter(schema)
            self.json_schema = self.adapter.json_schema()
        except Exception as exc:
            raise TypeError(f"structured_output must be a pydantic model or type, got {schema!r}: {exc}") from exc
        self.name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(schema, "__name__", "output"))[:64]

    def response_format(self) -> ResponseFormat:
        return ResponseFormat(name=self.name, schema=self.json_schema)

    def instructions(self) -> str:
        """For providers without native JSON schema support: the schema goes into the system prompt."""
        return (
            "Your final answer must be a single JSON value, with no prose and no code fences, that follows "
            f"this JSON schema:\n{json.dumps(self.json_schema, separators=(',', ':'))}"
        )

    def parse(self, text: str) -> Any:
        data = _extract_json(text)
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
