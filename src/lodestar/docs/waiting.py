"""Running docs calls from async code: on a worker thread, waiting for the corpora a call needs without
blocking the event loop, and saying every second what is being waited for."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import anyio

from lodestar.docs.errors import CorpusLoading

if TYPE_CHECKING:
    from lodestar.docs.service import DocsService

T = TypeVar("T")
OnWait = Callable[[float, str], Awaitable[None]]  # (seconds waited, what for)
WAIT_REPORT_S = 1.0


async def call_when_loaded(
    docs: DocsService,
    work: Callable[[], T],
    on_wait: OnWait | None = None,
    limiter: anyio.CapacityLimiter | None = None,
) -> T:
    """`work()` on a worker thread; when it needs corpora still being fetched or indexed, waits for them
    (calling `on_wait` each second) and runs it again. Loading always ends (npm has a time limit)."""
    started = time.monotonic()
    while True:
        try:
            return await anyio.to_thread.run_sync(work, limiter=limiter)
        except CorpusLoading as exc:
            await _wait(docs, exc, started, on_wait)


async def _wait(docs: DocsService, loading: CorpusLoading, started: float, on_wait: OnWait | None) -> None:
    while not await anyio.to_thread.run_sync(docs.wait_loaded, loading.names, WAIT_REPORT_S, abandon_on_cancel=True):
        if on_wait is not None:
            waited = time.monotonic() - started
            await on_wait(waited, f"waiting {waited:.0f} s for {docs.describe_loading(loading.names)}")
