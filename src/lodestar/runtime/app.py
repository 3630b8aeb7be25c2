"""Lodestar: the app object a user's `--app module:attribute` points at."""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import InvalidValueError, UnknownNameError
from ..storage import SQLiteStorage, Storage, default_db_path
from .agent import Agent


class Lodestar:
    """Agents served together, sharing one storage for their memory."""

    def __init__(self, agents: Sequence[Agent] = (), *, storage: Storage | None = None) -> None:
        self.storage: Storage = storage if storage is not None else SQLiteStorage(default_db_path())
        self.agents: dict[str, Agent] = {}
        for agent in agents:
            self.add_agent(agent)

    def add_agent(self, agent: Agent) -> None:
        if agent.id in self.agents:
            raise InvalidValueError(f"two agents have the id {agent.id!r}: agent ids must be unique in an app")
        agent.bind_storage(self.storage)
        self.agents[agent.id] = agent

    def get_agent(self, agent_id: str) -> Agent:
        try:
            return self.agents[agent_id]
        except KeyError:
            known = ", ".join(sorted(self.agents)) or "none"
            raise UnknownNameError(f"no agent {agent_id!r}; the agents are: {known}") from None
