"""Objects that must not cross event loops (HTTP pools, thread limiters), one per running loop."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class PerLoop(weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, T]):
    def __init__(self, factory: Callable[[], T]) -> None:
        super().__init__()
        self.factory = factory

    def get_current(self) -> T:
        loop = asyncio.get_running_loop()
        value = self.get(loop)
        if value is None:
            value = self[loop] = self.factory()
        return value
