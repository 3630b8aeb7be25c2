"""Argument errors in plain words, for the MCP tools and for an agent's tools alike: a model reads them, so
they say what is wrong and what is allowed, without the validator's internals ("type=int_parsing",
"Input should be", documentation links)."""

from __future__ import annotations

import difflib
import json
from typing import Any

from pydantic_core import ErrorDetails

SHOWN_VALUE_CHARS = 60  # of a rejected value repeated in the error
KINDS = {
    "int_type": "a whole number",
    "int_parsing": "a whole number",
    "int_from_float": "a whole number",
    "float_type": "a number",
    "float_parsing": "a number",
    "string_type": "a string",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
}
BOUNDS = {"greater_than_equal": "at least", "less_than_equal": "at most", "greater_than": "over", "less_than": "under"}


def argument_problems(errors: list[ErrorDetails], properties: dict[str, Any]) -> str:
    """Each problem once, `; `-separated; `properties` is the input schema's, for bounds and names."""
    unknown = [".".join(map(str, e["loc"])) for e in errors if e["type"] == "extra_forbidden"]
    problems = [_problem(e, properties) for e in errors if e["type"] != "extra_forbidden"]
    if unknown:
        problems.append(unknown_arguments(unknown, properties))
    return "; ".join(dict.fromkeys(problems))


def unknown_arguments(unknown: list[str], properties: dict[str, Any]) -> str:
    def one(key: str) -> str:
        close = difflib.get_close_matches(key, list(properties), n=1)
        return f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")

    takes = ", ".join(properties) or "no arguments"
    noun = "argument" if len(unknown) == 1 else "arguments"
    return f"unknown {noun} {', '.join(map(one, unknown))}; it takes {takes}"


def _problem(error: ErrorDetails, properties: dict[str, Any]) -> str:
    field = ".".join(map(str, error["loc"])) or "arguments"
    kind = error["type"]
    got = _shown(error.get("input"))
    if kind == "missing":
        return f"{field} is required"
    if kind == "value_error":  # a validator's own message, without pydantic's "Value error, " in front
        return str((error.get("ctx") or {}).get("error") or error["msg"])
    if kind in KINDS:
        return f"{field} must be {KINDS[kind]}, got {got}"
    if kind in BOUNDS:
        return f"{field} must be {_bounds(properties.get(field, {}), error)}, got {got}"
    return f"{field}: {error['msg']}, got {got}"


def _bounds(schema: dict[str, Any], error: ErrorDetails) -> str:
    """Both ends when the schema has them, as in "between 1 and 50", else the one that was crossed."""
    if "minimum" in schema and "maximum" in schema:
        return f"between {schema['minimum']} and {schema['maximum']}"
    limit = next(iter((error.get("ctx") or {}).values()), "?")
    return f"{BOUNDS[error['type']]} {limit}"


def _shown(value: Any) -> str:
    """The value as the client sent it (JSON), cut to a readable length."""
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."
