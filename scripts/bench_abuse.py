"""Benchmark hostile searches against a real HTTP server, with /health probed on another connection meanwhile.

    uv run python scripts/bench_abuse.py [--corpus SPEC] [--rounds 10] [--cache-dir DIR]

Starts `python -m lodestar --http --port 0 --corpus SPEC` (default: the Mastra docs package), waits for
its index, then for each kind of query runs `search_docs` through the real MCP client, `--rounds` times
with fresh random text each round (so no cache helps), while a second client calls /health in a loop.
Prints a markdown table: search latency and /health latency (median, p95, max) per kind of query.
Targets (issue 8): each hostile search <= 250 ms, /health <= 50 ms while they run.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import string
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import httpx
import httpx2
from bench_docs import med_p95
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

DEFAULT_CORPUS = "mastra=npm:@mastra/mcp-docs-server@1.2.27"
SERVING = re.compile(r"serving MCP at (http://\S+/mcp)")


def _words(rng: random.Random, count: int, size: int = 8) -> str:
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=size)) for _ in range(count))


QUERIES: dict[str, Callable[[random.Random], str]] = {
    "plain question": lambda rng: "how do I add memory to an agent",
    "20,000-character word": lambda rng: "".join(rng.choices(string.ascii_lowercase, k=20_000)),
    "1,000 random 8-letter words": lambda rng: _words(rng, 1_000),
    "500 KB query": lambda rng: _words(rng, 500_000 // 9),
}


def start(spec: str, cache_dir: Path) -> tuple[subprocess.Popen[str], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODESTAR_")} | {"LODESTAR_LOG_LEVEL": "WARNING"}
    command = [sys.executable, "-m", "lodestar", "--http", "--port", "0", "--cache-dir", str(cache_dir)]
    proc = subprocess.Popen(
        [*command, "--corpus", spec], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        text=True, env=env,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if match := SERVING.search(line):
            threading.Thread(target=lambda: [None for _ in proc.stderr or ()], daemon=True).start()
            return proc, match.group(1)
    raise SystemExit(f"bench_abuse: the server exited with {proc.wait()}")


async def measure(url: str, rounds: int) -> list[tuple[str, list[float], list[float]]]:
    rows = []
    http = httpx2.AsyncClient(timeout=httpx2.Timeout(120, read=600))
    async with http, Client(streamable_http_client(url, http_client=http)) as client:
        await client.call_tool("search_docs", {"query": "warm up"})  # waits for the index to open
        for kind, make in QUERIES.items():
            with HealthProbe(url.removesuffix("/mcp")) as probe:
                searches = await _rounds(client, make, rounds)
            rows.append((kind, searches, probe.latencies))
            print(f"  {kind}: {len(searches)} searches, {len(probe.latencies)} health probes", file=sys.stderr)
    return rows


class HealthProbe(threading.Thread):
    """Calls /health in a loop from a thread of its own, so the searching client's work does not delay it."""

    def __init__(self, base: str) -> None:
        super().__init__(daemon=True)
        self.base, self.latencies, self.done = base, list[float](), threading.Event()

    def __enter__(self) -> HealthProbe:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.done.set()
        self.join()

    def run(self) -> None:
        with httpx.Client(base_url=self.base, timeout=10) as http:
            http.get("/health").raise_for_status()  # connects: not timed
            while not self.done.is_set():
                started = time.perf_counter()
                http.get("/health").raise_for_status()
                self.latencies.append((time.perf_counter() - started) * 1000)


async def _rounds(client: Client, make: Callable[[random.Random], str], rounds: int) -> list[float]:
    rng = random.Random(8)
    searches: list[float] = []
    for _ in range(rounds):
        query = make(rng)
        started = time.perf_counter()
        result = await client.call_tool("search_docs", {"query": query})
        searches.append((time.perf_counter() - started) * 1000)
        if result.is_error:
            raise SystemExit(f"bench_abuse: search failed: {result.content}")
    return searches


def table(rows: list[tuple[str, list[float], list[float]]]) -> str:
    lines = [
        "| query | search median | search p95 | /health median | /health p95 | /health max | probes |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, searches, health in rows:
        s_med, s_p95 = med_p95(searches)
        h_med, h_p95 = med_p95(health)
        lines.append(
            f"| {kind} | {s_med:.1f} ms | {s_p95:.1f} ms | {h_med:.1f} ms | {h_p95:.1f} ms | {max(health):.1f} ms "
            f"| {len(health)} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--corpus", default=DEFAULT_CORPUS)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--cache-dir", type=Path, help="index cache (default: a fresh temporary folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-abuse-") as tmp:
        proc, url = start(args.corpus, args.cache_dir or Path(tmp))
        try:
            rows = anyio.run(measure, url, args.rounds)
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"corpus: {args.corpus}, {args.rounds} rounds per query, fresh random text each round\n")
    print(table(rows))


if __name__ == "__main__":
    main()
