"""Lodestar: the app object a user's `--app module:attribute` points at."""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

from .background.config import BackgroundTasksConfig, background_tasks_config
from .background.dispatcher import BackgroundDispatcher
from .background.manager import BackgroundTaskManager
from .errors import InvalidValueError, UnknownNameError, UsageError
from .runtime.agent import Agent
from .storage import SQLiteStorage, Storage, default_db_path


class AppLoadError(UsageError):
    """`--app MODULE:ATTRIBUTE` names something that cannot be served: the message says what and what to do."""


class Lodestar:
    """Agents served together, sharing one storage for their memory and, when enabled, one background task
    manager (`app.tasks`) that every process on the same database shares."""

    def __init__(
        self,
        agents: Sequence[Agent] = (),
        *,
        storage: Storage | None = None,
        background_tasks: BackgroundTasksConfig | Mapping[str, Any] | bool | None = None,
    ) -> None:
        self.storage: Storage = storage if storage is not None else SQLiteStorage(default_db_path())
        self.background_tasks = background_tasks_config(background_tasks)
        self.tasks: BackgroundTaskManager | None = None
        if self.background_tasks.enabled:
            store = getattr(self.storage, "tasks", None)
            if store is None:
                raise InvalidValueError(
                    f"background tasks need a storage that keeps tasks, and {self.storage!r} has none: "
                    "use SQLiteStorage(path), or leave background_tasks off"
                )
            self.tasks = BackgroundTaskManager(self.background_tasks, store)
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            self.add_agent(agent)

    def add_agent(self, agent: Agent) -> None:
        if agent.id in self.agents:
            raise InvalidValueError(f"two agents have the id {agent.id!r}: agent ids must be unique in an app")
        agent.bind_storage(self.storage)
        if self.tasks is not None:
            self._attach(agent)
        self.agents[agent.id] = agent

    def _attach(self, agent: Agent) -> None:
        """The agent's calls go through the manager, and this process can run its tools' tasks."""
        assert self.tasks is not None
        agent.tool_dispatcher = BackgroundDispatcher(self.tasks, agent.id, agent.background_tasks)
        for tool in agent.tools.values():
            self.tasks.register(agent.id, tool, agent.background_tasks, agent.get_memory())

    def get_agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise UnknownNameError(f"no agent {agent_id!r}; the agents are: {known}") from None

    async def __aenter__(self) -> Lodestar:
        if self.tasks is not None:
            await self.tasks.start()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Stop the background workers (running tasks go back to the queue), then close the storage."""
        if self.tasks is not None:
            await self.tasks.aclose()
        await self.storage.close()


def load_app(spec: str) -> Lodestar:
    """The `Lodestar` app named by `--app MODULE:ATTRIBUTE`, the current directory importable; anything that
    stops it from loading is one AppLoadError line saying what and how to fix it."""
    module_name, _, attribute = spec.partition(":")
    if not module_name or not attribute:
        raise AppLoadError(f"--app {spec}: give MODULE:ATTRIBUTE, e.g. --app mypkg.agents:app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise AppLoadError(f"--app {spec}: importing {module_name} failed: {type(exc).__name__}: {exc}") from exc
    found: Any = module
    for part in attribute.split("."):
        if not hasattr(found, part):
            names = ", ".join(n for n in dir(module) if isinstance(getattr(module, n), Lodestar)) or "none"
            raise AppLoadError(f"--app {spec}: {module_name} has no {attribute!r}; its Lodestar apps: {names}")
        found = getattr(found, part)
    if not isinstance(found, Lodestar):
        raise AppLoadError(
            f"--app {spec}: {attribute} is of type {type(found).__name__}, not a Lodestar app; "
            "make it `app = Lodestar(agents=[...])`"
        )
    return found
