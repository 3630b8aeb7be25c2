"""Task updates fanned out to the observers in this process, the moment they are committed: no polling."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from ..storage.tasks import BackgroundTask, EventKind

log = logging.getLogger("lodestar.background")
QUEUE_LIMIT = 10_000  # an observer this far behind is cut off rather than let memory grow


@dataclass(frozen=True, slots=True)
class Update:
    """One committed change, as observers see it: the task after the change; `output` for an output."""

    kind: EventKind
    task: BackgroundTask
    output: Any = None


class ObserverTooSlow(RuntimeError):
    """An observer stopped reading while updates kept coming."""


class Subscription:
    def __init__(self, wants: Callable[[BackgroundTask], bool], hub: PubSub) -> None:
        self.wants = wants
        self._hub = hub
        self._queue: asyncio.Queue[Update | None] = asyncio.Queue(QUEUE_LIMIT)
        self._overflowed = False
        self._closed = False

    def offer(self, update: Update) -> None:
        try:
            wanted = not self._overflowed and self.wants(update.task)
        except Exception:  # an observer's broken filter ends its subscription, not the publisher
            log.exception("a background task observer's filter raised; its subscription is closed")
            self.close()
            return
        if not wanted:
            return
        try:
            self._queue.put_nowait(update)
        except asyncio.QueueFull:
            self._overflowed = True
            self.close()

    def close(self) -> None:
        """Ends the iteration once what is queued has been read. A reader waits only on an empty queue, so the end
        marker always fits when one is waiting; a full queue is read to its end, then the flag ends it."""
        self._hub.unsubscribe(self)
        self._closed = True
        if not self._queue.full():
            self._queue.put_nowait(None)

    def empty(self) -> bool:
        return self._queue.empty()

    async def get(self) -> Update:
        update = None if self._closed and self._queue.empty() else await self._queue.get()
        if update is None:
            if self._overflowed:
                raise ObserverTooSlow(f"this observer fell {QUEUE_LIMIT} task updates behind and was cut off")
            raise StopAsyncIteration
        return update

    def __aiter__(self) -> AsyncIterator[Update]:
        return self

    async def __anext__(self) -> Update:
        return await self.get()


class PubSub:
    def __init__(self) -> None:
        self._subscriptions: list[Subscription] = []

    def subscribe(self, wants: Callable[[BackgroundTask], bool]) -> Subscription:
        subscription = Subscription(wants, self)
        self._subscriptions.append(subscription)
        return subscription

    def unsubscribe(self, subscription: Subscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def publish(self, update: Update) -> None:
        for subscription in list(self._subscriptions):
            subscription.offer(update)
