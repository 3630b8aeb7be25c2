"""Rows the storage keeps, as pydantic models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, Field


def utcnow() -> datetime:
    return datetime.now(UTC)


class Thread(BaseModel):
    """One conversation; `resource_id` groups threads by user or tenant."""

    id: str
    resource_id: str | None = None
    title: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class StoredMessage(BaseModel):
    """A message as stored: its parts stay JSON, so storage needs no knowledge of the runtime's types."""

    id: str
    role: str
    content: list[dict[str, Any]]
    created_at: datetime = Field(default_factory=utcnow)
