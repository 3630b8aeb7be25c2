"""A progress bar on stderr that stays silent for work that finishes within a second."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class Progress:
    def __init__(
        self,
        label: str,
        total: int,
        *,
        after_s: float = 1.0,
        stream: TextIO | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.label, self.total, self.after_s = label, total, after_s
        self.stream = stream or sys.stderr
        self.clock = clock
        self.started = clock()
        self.done = 0
        self.shown = False
        self.last_draw = float("-inf")
        self.tty = self.stream.isatty()

    def advance(self, step: int = 1) -> None:
        self.done += step
        now = self.clock()
        if now - self.started < self.after_s or now - self.last_draw < (0.1 if self.tty else 2.0):
            return
        self.last_draw = now
        self._draw(now)

    def close(self) -> None:
        if self.shown:
            self._draw(self.clock())
            if self.tty:
                self.stream.write("\n")
            self.stream.flush()

    def _draw(self, now: float) -> None:
        self.shown = True
        fraction = min(self.done / self.total, 1.0) if self.total else 1.0
        filled = int(fraction * 30)
        bar = "#" * filled + "-" * (30 - filled)
        line = f"{self.label} [{bar}] {self.done}/{self.total} {now - self.started:.1f}s"
        self.stream.write(f"\r{line}" if self.tty else f"{line}\n")
        self.stream.flush()
