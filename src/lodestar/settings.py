"""One settings model for every entry point: a CLI flag beats a LODESTAR_* variable beats the default."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


def default_cache_dir() -> Path:
    if sys.platform == "win32":
        return Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local")) / "lodestar" / "Cache"
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Caches" / "lodestar"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "lodestar"


class Settings(BaseModel):
    corpora: list[str] = Field(default_factory=list, description="--corpus [NAME=]SOURCE, repeatable")
    apps: list[str] = Field(default_factory=list, description="--app MODULE:ATTRIBUTE, repeatable")
    model: str | None = None
    http: bool = False
    host: str = "127.0.0.1"
    port: int = Field(8765, ge=0, le=65535)
    auth_token: str | None = None
    allowed_hosts: list[str] = Field(default_factory=list)
    # HTTP limits: abandoned sessions and half-sent requests must not pile up (seconds, counts)
    session_idle_timeout: float = Field(600.0, gt=0, allow_inf_nan=False, description="an idle session then closes")
    max_sessions: int = Field(100, ge=1, description="at the limit the session idle longest closes for a new one")
    header_timeout: float = Field(10.0, gt=0, allow_inf_nan=False, description="time to send a request's headers")
    body_timeout: float = Field(30.0, gt=0, allow_inf_nan=False, description="time to send a request's body")
    max_connections: int | None = Field(None, ge=1, description="None: min(1000, half the open-file limit)")
    no_builtin_agents: bool = False
    result_max_tokens: int = Field(
        20_000, ge=1_000, le=1_000_000, description="an ask tool's result budget; long tool results are cut to fit"
    )
    no_bundled: bool = Field(False, description="leave out Lodestar's own documentation corpus")
    cache_dir: Path = Field(default_factory=default_cache_dir)
    log_level: str = "INFO"

    @field_validator("log_level")
    @classmethod
    def _level(cls, value: str) -> str:
        upper = value.upper()
        if upper not in LOG_LEVELS:
            raise ValueError(f"log level must be one of {', '.join(LOG_LEVELS)}")
        return upper


_LISTS = {"corpora": "LODESTAR_CORPORA", "apps": "LODESTAR_APPS", "allowed_hosts": "LODESTAR_ALLOWED_HOSTS"}
_SCALARS = {
    "model": "LODESTAR_MODEL",
    "http": "LODESTAR_HTTP",
    "host": "LODESTAR_HOST",
    "port": "LODESTAR_PORT",
    "auth_token": "LODESTAR_AUTH_TOKEN",
    "session_idle_timeout": "LODESTAR_SESSION_IDLE_TIMEOUT",
    "max_sessions": "LODESTAR_MAX_SESSIONS",
    "header_timeout": "LODESTAR_HEADER_TIMEOUT",
    "body_timeout": "LODESTAR_BODY_TIMEOUT",
    "max_connections": "LODESTAR_MAX_CONNECTIONS",
    "no_builtin_agents": "LODESTAR_NO_BUILTIN_AGENTS",
    "result_max_tokens": "LODESTAR_RESULT_MAX_TOKENS",
    "no_bundled": "LODESTAR_NO_BUNDLED",
    "cache_dir": "LODESTAR_CACHE_DIR",
    "log_level": "LODESTAR_LOG_LEVEL",
}


def env_var(field: str) -> str:
    return {**_LISTS, **_SCALARS}.get(field, f"LODESTAR_{field.upper()}")


def _given(value: Any) -> bool:
    return value is not None and value is not False and value != []


def load_settings(flags: Mapping[str, Any], env: Mapping[str, str] | None = None) -> Settings:
    """Flags left unset (None, or an empty list) fall back to the environment, then to the defaults."""
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    for field, var in _LISTS.items():
        if env.get(var):
            values[field] = [item.strip() for item in env[var].split(",") if item.strip()]
    for field, var in _SCALARS.items():
        if env.get(var, "").strip():  # a token is kept as given, so that padding is reported, not silently changed
            values[field] = env[var] if field == "auth_token" else env[var].strip()
    values.update(
        {key: value for key, value in flags.items() if value is not None and value is not False and value != []}
    )
    return Settings.model_validate(values)
