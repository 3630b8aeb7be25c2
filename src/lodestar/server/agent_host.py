"""The agents a server offers: those of the `--app` apps, and the built-in `docs` agent.

Describing the built-in agent needs none of the runtime, so a server without apps imports the runtime only when an
agent or task tool is first called: serving the docs tools alone starts as fast as before agents existed.
"""

from __future__ import annotations

import asyncio
import os
import re
from contextlib import AsyncExitStack
from typing import TYPE_CHECKING

from pydantic import BaseModel, Field

from lodestar import builtin
from lodestar.errors import UnknownNameError, UsageError

if TYPE_CHECKING:
    from lodestar.app import Lodestar
    from lodestar.background.config import BackgroundTasksConfig
    from lodestar.background.manager import BackgroundTaskManager
    from lodestar.docs.service import DocsService
    from lodestar.runtime.agent import Agent
    from lodestar.settings import Settings


class AgentInfo(BaseModel):
    id: str
    name: str
    description: str
    model: str | None = Field(description="The agent's own model; null when the server supplies one")
    tools: list[str]
    background_tools: list[str] = Field(description="Tools that may run as background tasks")

    def tool_list(self) -> str:
        """`search_docs, research (background)`: the tools as a person or a model reads them."""
        return ", ".join(f"{t} (background)" if t in self.background_tools else t for t in self.tools) or "none"

    @classmethod
    def of(cls, agent: Agent, config: BackgroundTasksConfig) -> AgentInfo:
        """What the agent's tools are; those its app would run in the background, as the dispatcher decides."""
        from lodestar.background.resolution import resolve

        model = agent.model
        if model is not None and not isinstance(model, str):  # a model object: every one has these two
            model = f"{model.provider}/{model.model_id}"
        background = [
            name
            for name, tool in agent.tools.items()
            if config.enabled and resolve(tool, agent.background_tasks, config, None).enabled
        ]
        return cls(
            id=agent.id,
            name=agent.name,
            description=agent.description,
            model=model,
            tools=list(agent.tools),
            background_tools=background,
        )


BUILTIN_DOCS = AgentInfo(
    id=builtin.DOCS_AGENT_ID,
    name=builtin.DOCS_AGENT_NAME,
    description=builtin.DOCS_AGENT_DESCRIPTION,
    model=None,
    tools=list(builtin.DOCS_AGENT_TOOLS),
    background_tools=list(builtin.DOCS_BACKGROUND_TOOLS),
)


NO_MODEL = (
    "agent {agent!r} has no model of its own, none was given to the server, and the client does not offer "
    "sampling: give the agent one (Agent(model='openai/gpt-5-mini')), pass --model (or set LODESTAR_MODEL), "
    "or call it from an MCP client that supports sampling"
)


def model_for(agent: Agent, default: str | None, sampler: object | None, missing: str = NO_MODEL) -> str | None:
    """The agent's own model wins (None: the runtime uses it); else the server's default; else the client's; else
    the `missing` error, which says how to give one where the call came from."""
    if agent.model is not None:
        return None
    if default:
        return default
    if sampler is not None:
        return "sampling"
    raise UsageError(missing.format(agent=agent.id))


def ask_tool_name(agent_id: str) -> str:
    """`ask_<id>`, with characters some clients refuse in tool names ('-') written as '_'."""
    return "ask_" + re.sub(r"[^A-Za-z0-9_]", "_", agent_id)


class AgentHost:
    """Every served agent by id, each with the app that runs it. The built-in agent joins the first app (one
    database, one task manager) or, without apps, an app of its own, made when it is first needed."""

    def __init__(self, docs: DocsService, apps: list[tuple[str, Lodestar]], *, builtin_agent: bool) -> None:
        self.docs = docs
        self.apps = apps
        self.builtin_agent = builtin_agent
        self._owner: dict[str, Lodestar] = {}
        self.infos: list[AgentInfo] = []
        self.tool_names: dict[str, str] = {}  # ask tool name -> agent id
        for spec, app in apps:
            for agent in app.agents.values():
                self._add(AgentInfo.of(agent, app.background_tasks), f"--app {spec}")
                self._owner[agent.id] = app
        if builtin_agent:
            self._add(BUILTIN_DOCS, "the built-in docs agent (leave it out with --no-builtin-agents)")  # name first
            if apps:
                self.infos[-1] = self._join_builtin(apps[0][1])
        self._stack = AsyncExitStack()
        self._opening = asyncio.Lock()
        self._open = False

    def _add(self, info: AgentInfo, origin: str) -> None:
        name = ask_tool_name(info.id)
        if name in self.tool_names:
            raise UsageError(
                f"two agents would both be served as the tool {name}: {self.tool_names[name]!r} and {info.id!r} "
                f"(from {origin}); give one of them another id"
            )
        self.tool_names[name] = info.id
        self.infos.append(info)

    def _join_builtin(self, app: Lodestar) -> AgentInfo:
        """Into the first app, whose background task settings then decide where `research` runs."""
        from lodestar.builtin.docs_agent import docs_agent

        agent = docs_agent(self.docs)
        app.add_agent(agent)
        self._owner[builtin.DOCS_AGENT_ID] = app
        return AgentInfo.of(agent, app.background_tasks)

    @property
    def has_tasks(self) -> bool:
        """Whether any served app runs background tasks, so the task tools have something to show."""
        own_builtin = self.builtin_agent and not self.apps
        return own_builtin or any(app.background_tasks.enabled for _, app in self.apps)

    async def open(self, *, own_runs_only: bool = False) -> None:
        """Opens the apps (their task workers start, and tasks left by a killed process are recovered); the
        built-in agent's own app too when it is the only one, so its tasks have a home. A one-shot process
        passes `own_runs_only`: it runs only the tasks it dispatches, leaving the queue to the servers."""
        async with self._opening:
            if self._open:
                return
            self._builtin_alone()
            for _, app in self.apps:
                if own_runs_only and app.tasks is not None:
                    app.tasks.claim_own_runs_only()
                await self._stack.enter_async_context(app)
            self._open = True

    def _builtin_alone(self) -> None:
        """The built-in agent's own app, when there is no other to join."""
        if self.builtin_agent and not self.apps:
            from lodestar.builtin.docs_agent import builtin_app

            app = builtin_app(self.docs)
            self.apps = [("builtin", app)]
            self._owner[builtin.DOCS_AGENT_ID] = app

    async def aclose(self) -> None:
        await self._stack.aclose()

    async def agent(self, agent_id: str) -> Agent:
        await self.open()
        app = self._owner.get(agent_id)
        if app is None:
            known = ", ".join(info.id for info in self.infos) or "none"
            raise UnknownNameError(f"no agent {agent_id!r}; the agents are: {known}")
        return app.agents[agent_id]

    async def managers(self) -> list[BackgroundTaskManager]:
        """One task manager per database, started: two apps on one file share their tasks, which must be listed
        once."""
        await self.open()
        return self.task_managers()

    def task_managers(self) -> list[BackgroundTaskManager]:
        """The managers of `managers()`, not started: enough to read or cancel tasks, and no worker here claims a
        queued task only to put it back when a one-shot command (`lodestar-mcp tasks list`) exits."""
        self._builtin_alone()
        found: dict[str, BackgroundTaskManager] = {}
        for _, app in self.apps:
            if app.tasks is not None:
                found.setdefault(_database(app.tasks.store), app.tasks)
        return list(found.values())


def _database(store: object) -> str:
    """Which database a task store is in: a file however its path is written; each `:memory:` store its own."""
    path = getattr(store, "path", None)
    if not isinstance(path, str) or path in ("", ":memory:"):
        return f"store {id(store)}"
    return os.path.realpath(path)


def host_for(settings: Settings, docs: DocsService) -> AgentHost:
    """The apps of `--app` (each import error stops start-up with one line) and the built-in agent."""
    apps: list[tuple[str, Lodestar]] = []
    if settings.apps:
        from lodestar.app import load_app

        apps = [(spec, load_app(spec)) for spec in settings.apps]
    return AgentHost(docs, apps, builtin_agent=not settings.no_builtin_agents)
