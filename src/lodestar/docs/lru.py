"""A least-recently-used map bounded by the total weight of its entries, for every cache the docs side keeps."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

V = TypeVar("V")


class LRU(Generic[V]):
    """A map that forgets its least recently used entries once their total weight passes `budget`;
    the newest entry stays even when it alone weighs more."""

    def __init__(self, budget: int, weight: Callable[[V], int]) -> None:
        self.entries: OrderedDict[Hashable, V] = OrderedDict()
        self.budget, self.weight, self.total = budget, weight, 0

    def __len__(self) -> int:
        return len(self.entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self.entries

    def get(self, key: Hashable) -> V | None:
        if key not in self.entries:
            return None
        self.entries.move_to_end(key)
        return self.entries[key]

    def put(self, key: Hashable, value: V) -> None:
        self.discard(key)
        self.entries[key] = value
        self.total += self.weight(value)
        while self.total > self.budget and len(self.entries) > 1:
            self.total -= self.weight(self.entries.popitem(last=False)[1])

    def discard(self, key: Hashable) -> None:
        if key in self.entries:
            self.total -= self.weight(self.entries.pop(key))
