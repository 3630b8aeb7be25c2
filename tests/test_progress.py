"""The stderr progress bar: silent for quick work, a redrawn line on a TTY, plain lines otherwise."""

from __future__ import annotations

import io

from lodestar.docs.progress import Progress


class FakeClock:
    def __init__(self, now: float = 100.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class TTYStream(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_silent_under_after_s() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("indexing docs", 10, after_s=1.0, stream=stream, clock=clock)
    for _ in range(10):
        clock.now += 0.09  # 0.9 s in all
        progress.advance()
    progress.close()
    assert stream.getvalue() == ""
    assert not progress.shown


def test_draws_after_after_s_on_a_non_tty() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("indexing docs", 4, after_s=1.0, stream=stream, clock=clock)
    progress.advance()
    assert stream.getvalue() == ""
    clock.now += 1.5
    progress.advance()
    assert stream.getvalue() == "indexing docs [###############---------------] 2/4 1.5s\n"
    assert progress.shown


def test_non_tty_lines_are_throttled_to_one_per_two_seconds() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("job", 100, after_s=1.0, stream=stream, clock=clock)
    clock.now += 1.0
    for _ in range(10):
        progress.advance()
        clock.now += 0.5  # 10 steps over 5 s
    lines = stream.getvalue().splitlines()
    assert [line.split("] ")[1] for line in lines] == ["1/100 1.0s", "5/100 3.0s", "9/100 5.0s"]
    assert "\r" not in stream.getvalue()


def test_non_tty_close_writes_a_final_line() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("job", 3, after_s=0.5, stream=stream, clock=clock)
    clock.now += 1.0
    progress.advance()
    progress.advance()
    progress.advance()
    clock.now += 0.25
    progress.close()
    lines = stream.getvalue().splitlines()
    assert lines == [
        "job [##########--------------------] 1/3 1.0s",
        "job [##############################] 3/3 1.2s",
    ]
    assert stream.getvalue().endswith("\n")


def test_tty_redraws_one_line_with_carriage_returns() -> None:
    clock, stream = FakeClock(), TTYStream()
    progress = Progress("indexing", 2, after_s=1.0, stream=stream, clock=clock)
    clock.now += 2.0
    progress.advance()
    clock.now += 0.05  # within the 0.1 s redraw interval: skipped
    progress.advance()
    assert stream.getvalue() == "\rindexing [###############---------------] 1/2 2.0s"
    clock.now += 0.2
    progress.close()
    assert stream.getvalue() == (
        "\rindexing [###############---------------] 1/2 2.0s\rindexing [##############################] 2/2 2.2s\n"
    )


def test_tty_stays_silent_when_quick() -> None:
    clock, stream = FakeClock(), TTYStream()
    progress = Progress("indexing", 2, stream=stream, clock=clock)
    progress.advance()
    progress.advance()
    clock.now += 0.5
    progress.close()
    assert stream.getvalue() == ""


def test_zero_total_and_overshoot_do_not_break_the_bar() -> None:
    clock, stream = FakeClock(), io.StringIO()
    progress = Progress("empty", 0, after_s=0.0, stream=stream, clock=clock)
    progress.advance(3)
    assert stream.getvalue().startswith("empty [" + "#" * 30 + "] 3/")
