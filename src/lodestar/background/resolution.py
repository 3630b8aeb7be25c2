"""Which layer decides how a call runs: Mastra's order, one field at a time.

The call's `_background` override, the agent's entry for the tool (by tool name, or for a subagent by its id),
the tool's own `background`, what a subagent with background tools of its own implies, then the manager's
defaults; an agent with `disabled` runs everything in the foreground.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..runtime.background import AgentBackgroundConfig, ToolBackgroundConfig
from ..runtime.tools import Tool
from .config import BackgroundTasksConfig

if TYPE_CHECKING:
    from ..runtime.agent import Agent


@dataclass(frozen=True, slots=True)
class Resolved:
    enabled: bool
    timeout_ms: int
    max_retries: int
    wait_timeout_ms: int | None


def resolve(
    tool: Tool, agent: AgentBackgroundConfig, config: BackgroundTasksConfig, override: ToolBackgroundConfig | None
) -> Resolved:
    """The first layer that sets a field wins."""
    sub = tool.delegates_to
    entry = agent.entry(tool.name) or (agent.entry(sub.id) if sub is not None else None)
    layers = [layer for layer in (override, entry, tool.background, _inherited(sub)) if layer is not None]

    def first(field: str, default: Any) -> Any:
        return next((getattr(layer, field) for layer in layers if field in layer.model_fields_set), default)

    retries = first("max_retries", None)
    return Resolved(
        enabled=not agent.disabled and bool(first("enabled", False)),
        timeout_ms=first("timeout_ms", None) or config.default_timeout_ms,
        max_retries=config.default_retries.max_retries if retries is None else retries,
        wait_timeout_ms=first("wait_timeout_ms", _first_not_none(agent.wait_timeout_ms, config.wait_timeout_ms)),
    )


def _inherited(sub: Agent | None) -> ToolBackgroundConfig | None:
    """A subagent with background tools of its own is dispatched whole, with its own `wait_timeout_ms`."""
    if sub is None:
        return None
    own = {name: t.background for name, t in sub.tools.items()}
    if not sub.background_tasks.has_background_tools(own):
        return None
    return ToolBackgroundConfig(enabled=True, wait_timeout_ms=sub.background_tasks.wait_timeout_ms)


def _first_not_none(*values: int | None) -> int | None:
    return next((v for v in values if v is not None), None)
