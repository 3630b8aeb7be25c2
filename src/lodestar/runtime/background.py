"""How tools and agents opt in to background execution: Mastra's tool-level and agent-level `backgroundTasks`.

These are settings the runtime carries; only a background task manager (lodestar.background) acts on them, so
an agent outside an app with background tasks enabled runs every tool in the foreground whatever they say.
Names are snake_case (`timeout_ms`); Mastra's camelCase (`timeoutMs`) is accepted too. Unknown names are an
error when the tool or agent is defined, so a typo cannot silently leave a tool in the foreground.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic.alias_generators import to_camel

from ..arguments import argument_problems
from ..errors import InvalidTypeError, InvalidValueError
from ..storage.tasks import BackgroundTask

BACKGROUND_TASK_KEY = "lodestar.background_task_id"  # in a tool's request_context while it runs as a task
TaskCallback = Callable[[BackgroundTask], Awaitable[object] | object]
SETTINGS = ConfigDict(
    extra="forbid", frozen=True, alias_generator=to_camel, validate_by_name=True, validate_by_alias=True
)
M = TypeVar("M", bound=BaseModel)


class ToolBackgroundConfig(BaseModel):
    """`@tool(background=...)`; also the shape of an agent's per-tool entry and of the model's `_background`."""

    model_config = SETTINGS

    enabled: bool = Field(False, description="run this tool in the background when a task manager is enabled")
    timeout_ms: int | None = Field(
        None, gt=0, description="the task fails after this long; unset: the manager's default"
    )
    max_retries: int | None = Field(None, ge=0, description="attempts after a failure before the task is failed")
    wait_timeout_ms: int | None = Field(
        None, ge=0, description="how long the step waits for the task before going on without it; unset: no wait"
    )
    on_complete: TaskCallback | None = Field(None, description="called once when a task of this tool completes")
    on_failed: TaskCallback | None = Field(None, description="called once when a task of this tool fails for good")


class AgentBackgroundConfig(BaseModel):
    """`Agent(background_tasks=...)`: which of the agent's tools run in the background (`"all"`, or per tool a
    config or a bool), and `disabled` to run every call of this agent in the foreground."""

    model_config = SETTINGS

    tools: Literal["all"] | dict[str, ToolBackgroundConfig | bool] = Field(default_factory=dict)
    disabled: bool = False
    wait_timeout_ms: int | None = Field(None, ge=0)
    on_task_complete: TaskCallback | None = None
    on_task_failed: TaskCallback | None = None

    def has_background_tools(self, tools: Mapping[str, ToolBackgroundConfig | None]) -> bool:
        """Whether this agent runs any of these tools (name -> the tool's own setting) in the background."""
        if self.disabled:
            return False
        layers = ((self.entry(name) or own) for name, own in tools.items())
        return any(layer is not None and layer.enabled for layer in layers)

    def entry(self, tool_name: str) -> ToolBackgroundConfig | None:
        """This agent's say on one tool: None when it has none."""
        if self.tools == "all":
            return ToolBackgroundConfig(enabled=True)
        given = self.tools.get(tool_name)
        if isinstance(given, bool):
            return ToolBackgroundConfig(enabled=given)
        if given is not None and "enabled" not in given.model_fields_set:
            return given.model_copy(update={"enabled": True})  # listing a tool with settings opts it in
        return given


BackgroundArg = ToolBackgroundConfig | Mapping[str, Any] | bool | None
AgentBackgroundArg = AgentBackgroundConfig | Mapping[str, Any] | None


def checked(model: type[M], value: Mapping[str, Any], what: str) -> M:
    """`value` as `model`, or an InvalidValueError naming every field that is wrong."""
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        fields: dict[str, Any] = {name: {} for name in model.model_fields}
        raise InvalidValueError(f"{what}: {argument_problems(exc.errors(), fields)}") from None


def background_config(value: BackgroundArg, tool_name: str) -> ToolBackgroundConfig | None:
    """`True` is `{"enabled": True}`; a mapping is checked field by field, naming what is wrong."""
    if value is None or isinstance(value, ToolBackgroundConfig):
        return value
    if isinstance(value, bool):
        return ToolBackgroundConfig(enabled=value)
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"tool {tool_name}: background must be a dict, a ToolBackgroundConfig or a bool, got {value!r}"
        )
    return checked(ToolBackgroundConfig, value, f"tool {tool_name}: invalid background config")


def agent_background_config(value: AgentBackgroundArg, agent_id: str) -> AgentBackgroundConfig:
    if value is None:
        return AgentBackgroundConfig()
    if isinstance(value, AgentBackgroundConfig):
        return value
    if not isinstance(value, Mapping):
        raise InvalidTypeError(
            f"agent {agent_id}: background_tasks must be a dict or an AgentBackgroundConfig, got {value!r}"
        )
    return checked(AgentBackgroundConfig, value, f"agent {agent_id}: invalid background_tasks config")
