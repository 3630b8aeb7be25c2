"""Model ids (`provider/model`) to provider objects."""

from __future__ import annotations

from ...errors import InvalidValueError
from .base import CallContext, Finish, Model, ModelError, ModelEvent, ModelRequest, ModelSettings, ToolSpec

PROVIDERS = ("openai", "anthropic", "ollama", "sampling", "scripted")

__all__ = [
    "PROVIDERS",
    "CallContext",
    "Finish",
    "Model",
    "ModelError",
    "ModelEvent",
    "ModelRequest",
    "ModelSettings",
    "ToolSpec",
    "resolve_model",
]


def resolve_model(spec: str | Model) -> Model:
    """Turn `openai/gpt-5-mini`, `anthropic/...`, `ollama/...`, `sampling` or `scripted` into a model."""
    if not isinstance(spec, str):
        return spec
    provider, _, name = spec.partition("/")
    if provider == "scripted":
        from .scripted import ScriptedModel

        return ScriptedModel(model_id=name or "scripted")
    if provider == "sampling":
        from .sampling import SamplingModel

        return SamplingModel(hint=name or None)
    if not name:
        raise InvalidValueError(
            f"model id {spec!r} has no model name: write it as provider/model, e.g. openai/gpt-5-mini"
        )
    if provider == "openai":
        from .openai import OpenAIModel

        return OpenAIModel(name)
    if provider == "ollama":
        from .ollama import ollama_model

        return ollama_model(name)
    if provider == "anthropic":
        from .anthropic import AnthropicModel

        return AnthropicModel(name)
    raise InvalidValueError(f"unknown model provider {provider!r} in {spec!r}: use one of {', '.join(PROVIDERS)}")
