"""A value as text for people and models: strings as they are, anything else as JSON."""

from __future__ import annotations

import json
from typing import Any


def as_text(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
