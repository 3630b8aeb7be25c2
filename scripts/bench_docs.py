"""Benchmark the docs side of Lodestar: index build, cached open, stdio start-up, search latency, memory.

    uv run python scripts/bench_docs.py [--corpus SPEC ...] [--rounds 5] [--quick]
    uv run python scripts/bench_docs.py --startup-only --no-bundled --cache-dir /tmp/benchcache --spawns 20 \
        [--baseline /path/to/a/checkout/of/main]

Runs for the bundled corpus and for each `--corpus` spec (default: the Mastra docs package), each in a
fresh temporary cache folder, so the first load of an npm corpus fetches the package with our own `npm:`
source. Progress goes to stderr; the markdown table of results goes to stdout.

What is measured, per corpus:
- fetch + first build: `DocsService.load()` into an empty cache (for npm: includes `npm pack`).
- full build: `open_index()` of the resolved corpus into an empty index folder (median of --builds).
- cached open: `DocsService.load()` with a warm cache (resolve, scan, manifest, open, searcher); Whoosh is
  already imported in this process, so this excludes import time (the stdio rows include it).
- start-up over stdio with the real `mcp.Client(mode="legacy")`: spawn to `initialize` answered and to the
  first `tools/list` answered, for `python -m lodestar` (warm cache) and for a bare MCPServer with one
  trivial tool; spawns alternate between the two. Overhead = the median (and p95) of the paired differences.
- first answer against Mastra's own server (Mastra corpus only): spawn to the first `search_docs` answer for
  lodestar and spawn to the first `mastraDocs` answer (a folder without an index page plus query keywords, which
  makes it scan every page for the keywords) for `node <@mastra/mcp-docs-server>/dist/stdio.js`, the version of
  the corpus, installed once with `npm install` into the work folder so npx's resolution is not measured. Spawns
  alternate with the other two servers; the ratio row is lodestar's median (p95) over Mastra's. With --baseline,
  another source tree's server joins the alternation, for a before/after within one run.
- search in-process: `DocsService.search(q, limit=8, corpus=NAME)` (snippets included) over every query;
  the first pass runs on a freshly opened service (cold term cache), the steady state is the median over
  the following rounds of each round's median and p95.
- search over stdio: `call_tool("search_docs", ...)` through the real client against a server with a warm
  cache, after one warm-up search (which waits for the index to open): a first pass and a second pass.
- read_doc on a 20 MB page: the first part (parse and digest) and the median and p95 of the next 200 parts.
- peak RSS: VmHWM from /proc/<pid>/status of the server subprocess, (a) after it built the index itself and
  answered every query once, (b) after it opened the cached index and answered two passes; plus the
  ru_maxrss of this benchmark process (which built every index several times: an upper bound only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import multiprocessing
import os
import random
import resource
import shutil
import statistics
import string
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lodestar.docs.index import index_dir, open_index
from lodestar.docs.service import BUNDLED, DocsService
from lodestar.docs.sources import split_spec

log = logging.getLogger("bench_docs")

HERE = Path(__file__).resolve().parent
DEFAULT_CORPUS = "mastra=npm:@mastra/mcp-docs-server@1.2.27"
DEFAULT_QUERIES = HERE / "bench_queries.txt"
MASTRA_PACKAGE = "@mastra/mcp-docs-server"
PROBE_QUERY = "agent memory"
# Mastra's equivalent of a search: keywords over a folder without an index page scan every page's lines
MASTRA_PROBE = ("mastraDocs", {"paths": ["docs/memory"], "queryKeywords": PROBE_QUERY.split()})

BARE_SERVER = textwrap.dedent(
    """
    from mcp.server.mcpserver import MCPServer

    server = MCPServer("bare")


    @server.tool()
    def ping() -> str:
        \"\"\"Answer pong.\"\"\"
        return "pong"


    if __name__ == "__main__":
        server.run()
    """
)

# Targets apply to the large (Mastra) corpus; the bundled corpus is shown against the same numbers.
TARGETS = {
    "full build": ("<= 10 s", lambda med, p95: med <= 10),
    "start-up overhead": ("<= 100 ms", lambda med, p95: med <= 100),
    "first answer vs Mastra": ("<= 1.00x", lambda med, p95: med <= 1),
    "search in-process, steady": ("med <= 5 ms, p95 <= 25 ms", lambda med, p95: med <= 5 and p95 <= 25),
    "peak RSS": ("<= 150 MB", lambda med, p95: med <= 150),
}


# Statistics


def percentile(values: Iterable[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    data = sorted(values)
    if not data:
        return float("nan")
    pos = (len(data) - 1) * q / 100
    low = int(pos)
    high = min(low + 1, len(data) - 1)
    return data[low] + (data[high] - data[low]) * (pos - low)


def med_p95(values: list[float]) -> tuple[float, float]:
    return statistics.median(values), percentile(values, 95)


@dataclass
class Row:
    corpus: str
    metric: str
    median: float
    p95: float | None
    unit: str
    n: str
    target_key: str | None = None
    note: str = ""


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)

    def add(self, *args: Any, **kwargs: Any) -> None:
        row = Row(*args, **kwargs)
        self.rows.append(row)
        p95 = "" if row.p95 is None else f", p95 {fmt(row.p95, row.unit)}"
        log.info("  %s / %s: median %s%s (%s)", row.corpus, row.metric, fmt(row.median, row.unit), p95, row.n)

    def markdown(self) -> str:
        lines = [
            "| corpus | measurement | median | p95 | n | target | ok |",
            "|---|---|---:|---:|---:|---|---|",
        ]
        for r in self.rows:
            target, ok = "", ""
            if r.target_key:
                text, check = TARGETS[r.target_key]
                target = text
                ok = "yes" if check(r.median, r.p95 if r.p95 is not None else r.median) else "**no**"
            metric = r.metric + (f" ({r.note})" if r.note else "")
            p95 = "" if r.p95 is None else fmt(r.p95, r.unit)
            lines.append(f"| {r.corpus} | {metric} | {fmt(r.median, r.unit)} | {p95} | {r.n} | {target} | {ok} |")
        return "\n".join(lines)


def fmt(value: float, unit: str) -> str:
    if unit == "ms":
        return f"{value:.2f} ms" if abs(value) < 10 else f"{value:.0f} ms" if abs(value) >= 100 else f"{value:.1f} ms"
    if unit == "s":
        return f"{value:.2f} s"
    if unit == "MB":
        return f"{value:.0f} MB"
    if unit == "x":
        return f"{value:.2f}x"
    return f"{value:g} {unit}"


def ms(seconds: float) -> float:
    return seconds * 1000


# In-process measurements


def make_service(spec: str | None, cache: Path) -> DocsService:
    service = DocsService([spec] if spec else [], cache, bundled=spec is None)
    service.load()
    if service.failures:
        raise SystemExit(f"bench_docs: corpus failed to load: {service.failures}")
    return service


def corpus_name(service: DocsService, spec: str | None) -> str:
    return BUNDLED if spec is None else service.spec_names[spec]


def bench_build(spec: str | None, work: Path, builds: int, report: Report) -> tuple[Path, str]:
    """Cold load (fetch + build), then `builds` full builds of the resolved source into empty index folders.
    Returns the warm cache folder and the corpus name."""
    cache = work / "cache"
    started = time.perf_counter()
    service = make_service(spec, cache)
    cold = time.perf_counter() - started
    name = corpus_name(service, spec)
    corpus = service.corpora[name]
    info = corpus.info()
    log.info(
        "%s: %s documents, %s sections, version %s, loaded cold in %.2f s (%s)",
        name,
        info.documents,
        info.sections,
        info.version,
        cold,
        "; ".join(service.load_notes),
    )
    service.close()
    report.add(
        name,
        "fetch + first build, empty cache",
        cold,
        None,
        "s",
        "1",
        note="includes npm pack" if spec and "npm:" in spec else "",
    )

    source = corpus.source
    times = []
    for i in range(builds):
        scratch = work / f"build-{i}"
        t0 = time.perf_counter()
        opened = open_index(source, scratch)
        times.append(time.perf_counter() - t0)
        if opened.built != "built":
            raise SystemExit(f"bench_docs: expected a full build in {scratch}, got {opened.built!r}")
        size = sum(f.stat().st_size for f in index_dir(scratch, source).rglob("*") if f.is_file())
        log.info("%s: build %d/%d %.2f s, index %.1f MB", name, i + 1, builds, times[-1], size / 1e6)
        del opened
        shutil.rmtree(scratch, ignore_errors=True)
    report.add(
        name,
        "full build",
        statistics.median(times),
        None if builds < 3 else max(times),
        "s",
        str(builds),
        "full build",
        note="p95 column: slowest",
    )
    return cache, name


def bench_cached_open(spec: str | None, cache: Path, name: str, opens: int, report: Report) -> None:
    times = []
    for _ in range(opens):
        t0 = time.perf_counter()
        service = make_service(spec, cache)
        times.append(ms(time.perf_counter() - t0))
        notes = "; ".join(service.load_notes)
        service.close()
        if "cached" not in notes:
            log.warning("%s: cached open did not hit the cache: %s", name, notes)
    med, p95 = med_p95(times)
    report.add(name, "cached open, in-process (DocsService.load)", med, p95, "ms", str(opens))


def bench_search_inprocess(
    spec: str | None, cache: Path, name: str, queries: list[str], rounds: int, report: Report
) -> None:
    service = make_service(spec, cache)  # fresh term cache
    empty: list[str] = []
    passes: list[list[float]] = []
    for round_no in range(rounds):
        times = []
        for query in queries:
            t0 = time.perf_counter()
            result = service.search(query, 8, name)
            times.append(ms(time.perf_counter() - t0))
            if round_no == 0 and not result.hits:
                empty.append(query)
        passes.append(times)
        log.info(
            "%s: in-process pass %d/%d median %.2f ms, p95 %.2f ms, max %.1f ms",
            name,
            round_no + 1,
            rounds,
            statistics.median(times),
            percentile(times, 95),
            max(times),
        )
    if empty:
        log.info("%s: %d queries found nothing: %s", name, len(empty), empty[:20])
    slow = sorted(zip(passes[0], queries, strict=True), reverse=True)[:5]
    log.info("%s: slowest first-pass queries: %s", name, ", ".join(f"{q!r} {t:.1f} ms" for t, q in slow))
    service.close()
    n = len(queries)
    report.add(name, "search in-process, first pass (cold term cache)", *med_p95(passes[0]), "ms", str(n))
    if rounds > 1:
        steady = [med_p95(p) for p in passes[1:]]
        report.add(
            name,
            "search in-process, steady",
            statistics.median(s[0] for s in steady),
            statistics.median(s[1] for s in steady),
            "ms",
            f"{n} x {rounds - 1}",
            "search in-process, steady",
            note="median of rounds",
        )


def bench_read(report: Report, megabytes: int = 20, parts: int = 200) -> None:
    """read_doc paging through one huge page (20 MB of short sections): the first call parses and hashes it,
    later calls slice the cached parse. Indexing the page first takes about half a minute."""
    section = "## Part {i}\n\nProse about widgets and `code_{i}`, with a [link](https://x.example/{i}).\n\n"
    section += "A line of ordinary words in this part.\n" * 20 + "\n"
    text = "# Huge page\n\n" + "".join(section.format(i=i) for i in range(megabytes * 1024 * 1024 // len(section)))
    with tempfile.TemporaryDirectory(prefix="lodestar-bench-read-") as tmp:
        root = Path(tmp) / "huge"
        root.mkdir()
        (root / "huge.md").write_text(text, "utf-8")
        service = timed("huge page index", lambda: make_service(str(root), Path(tmp) / "cache"))
        t0 = time.perf_counter()
        page = service.read("huge.md", corpus="huge")
        first = time.perf_counter() - t0
        times = []
        while page.next_cursor and len(times) < parts:
            t0 = time.perf_counter()
            page = service.read("huge.md", cursor=page.next_cursor)
            times.append(ms(time.perf_counter() - t0))
        service.close()
    label = f"read_doc, {megabytes} MiB page"
    report.add("huge page", f"{label}: first part (parse + digest)", first, None, "s", "1")
    report.add("huge page", f"{label}: later parts (cached)", *med_p95(times), "ms", str(len(times)))


# Over stdio


def child_pids() -> list[int]:
    """Direct children of this process (Linux /proc)."""
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[1]) == me:
            found.append(int(entry))
    return found


def vm_hwm_mb(pid: int) -> float | None:
    """Peak resident set (VmHWM) of a live process, in MB; the current one (VmRSS) is logged."""
    try:
        status = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    except (OSError, ValueError):
        return None
    if "VmHWM" not in status:
        return None
    hwm, rss = (int(status[key].split()[0]) / 1024 for key in ("VmHWM", "VmRSS"))
    log.info("server pid %d: VmHWM %.0f MB, VmRSS now %.0f MB", pid, hwm, rss)
    return hwm


def server_pid(before: set[int]) -> int | None:
    new = [p for p in child_pids() if p not in before]
    for pid in new:
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"lodestar" in cmdline:
            return pid
    return new[0] if len(new) == 1 else None


def our_args(spec: str | None, cache: Path) -> list[str]:
    args = ["-m", "lodestar"]
    if spec:
        args += ["--corpus", spec]
    return [*args, "--cache-dir", str(cache)]


Probe = tuple[str, dict[str, Any]]  # a tool and its arguments


class Stdio:
    def __init__(self, work: Path) -> None:
        self.work = work
        self.errlog = open(work / "server-stderr.log", "a", encoding="utf-8")  # noqa: SIM115

    def client(self, args: list[str], command: str = sys.executable, env: dict[str, str] | None = None) -> Any:
        from mcp import Client, StdioServerParameters
        from mcp.client.stdio import stdio_client

        params = StdioServerParameters(command=command, args=args, cwd=str(self.work), env=env)
        return Client(stdio_client(params, errlog=self.errlog), mode="legacy")

    async def spawn_once(self, server: Server) -> tuple[float, float, float | None]:
        """Seconds from spawn to `initialize` answered, to the first `tools/list` answered and to the answer
        of the probe tool call that follows it (as a client would: initialize, list the tools, call one)."""
        t0 = time.perf_counter()
        async with self.client(server.args, server.command, server.env) as client:
            t_init = time.perf_counter() - t0
            await client.list_tools()
            t_list = time.perf_counter() - t0
            t_search = None
            if server.probe is not None:
                tool, arguments = server.probe
                result = await client.call_tool(tool, arguments)
                t_search = time.perf_counter() - t0
                check(result, f"{tool}({arguments})")
        return t_init, t_list, t_search

    def close(self) -> None:
        self.errlog.close()


def check(result: Any, call: str) -> None:
    if result.is_error or not result.content:
        text = result.content[0].text if result.content else "no content"
        raise SystemExit(f"bench_docs: {call} failed: {text}")


def install_mastra(spec: str | None, work: Path) -> Path | None:
    """For the Mastra corpus: Mastra's own docs server of the same version, installed with npm into `work` (so
    its start-up is measured without npx resolving the package), as the path of its stdio script."""
    source = split_spec(spec)[1] if spec else ""
    if not source.startswith(f"npm:{MASTRA_PACKAGE}"):
        return None
    package = source.removeprefix("npm:")
    folder = work / "mastra-server"
    log.info("installing %s into %s with npm", package, folder)
    try:
        subprocess.run(
            ["npm", "install", "--prefix", str(folder), "--no-audit", "--no-fund", "--loglevel=error", package],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        node = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        log.warning("no comparison with Mastra's server: installing or running it failed (%s)", exc)
        return None
    root = folder / "node_modules" / MASTRA_PACKAGE
    manifest = json.loads((root / "package.json").read_text("utf-8"))
    log.info("%s %s installed; node %s", MASTRA_PACKAGE, manifest["version"], node)
    return root / next(iter(manifest["bin"].values()))


@dataclass
class Server:
    label: str
    command: str
    args: list[str]
    probe: Probe | None
    env: dict[str, str] | None = None  # added to the few variables the SDK's stdio client passes on
    times: list[tuple[float, float, float | None]] = field(default_factory=list)

    def column(self, idx: int) -> list[float]:
        return [ms(t[idx] or 0) for t in self.times]


async def bench_startup(
    stdio: Stdio, spec: str | None, cache: Path, name: str, args: argparse.Namespace, report: Report
) -> None:
    bare = stdio.work / "bare_server.py"
    bare.write_text(BARE_SERVER, "utf-8")
    probe = ("search_docs", {"query": PROBE_QUERY, "corpus": name})
    ours = Server("lodestar", sys.executable, our_args(spec, cache), probe)
    base = Server("bare MCPServer", sys.executable, [str(bare)], None)
    others: list[tuple[Server, str | None]] = []  # compared with ours: (server, target key of the answer ratio)
    if args.baseline:
        env = {"PYTHONPATH": str(args.baseline.resolve() / "src")}
        others.append((Server(f"lodestar at {args.baseline}", sys.executable, ours.args, probe, env), None))
    mastra = install_mastra(spec, stdio.work)
    if mastra is not None:
        others.append((Server("Mastra's server", "node", [str(mastra)], MASTRA_PROBE), "first answer vs Mastra"))
    servers = [ours, base, *(server for server, _ in others)]
    for server in servers:  # one unmeasured spawn each: page cache, .pyc files
        await stdio.spawn_once(server)
    for i in range(args.spawns):  # alternating, so that load from other processes falls on each alike
        for server in servers:
            server.times.append(await stdio.spawn_once(server))
        log.info(
            "%s: spawn %d/%d: %s",
            name,
            i + 1,
            args.spawns,
            "; ".join(
                f"{s.label} init {ms(s.times[-1][0]):.0f} / list {ms(s.times[-1][1]):.0f}"
                + (f" / first answer {ms(s.times[-1][2] or 0):.0f} ms" if s.probe else " ms")
                for s in servers
            ),
        )
    n = str(args.spawns)
    for label, idx in (("initialize", 0), ("first tools/list", 1)):
        o, b = ours.column(idx), base.column(idx)
        report.add(name, f"spawn to {label}, lodestar", *med_p95(o), "ms", n)
        report.add(name, f"spawn to {label}, bare MCPServer", *med_p95(b), "ms", n)
        diffs = [a - c for a, c in zip(o, b, strict=True)]
        report.add(
            name,
            f"start-up overhead to {label}",
            *med_p95(diffs),
            "ms",
            n,
            "start-up overhead",
            note="paired differences",
        )
    report.add(name, "spawn to first search_docs answer, lodestar (cached index)", *med_p95(ours.column(2)), "ms", n)
    for other, target in others:
        compare(ours, other, name, report, target)


def compare(ours: Server, other: Server, name: str, report: Report, target: str | None) -> None:
    """Another server's times beside ours; the ratio rows divide our median (p95) by its."""
    n = str(len(ours.times))
    for label, idx in (("initialize", 0), ("first answer", 2)):
        mine, theirs = med_p95(ours.column(idx)), med_p95(other.column(idx))
        what = f"first {other.probe[0]} answer" if idx == 2 and other.probe else label
        report.add(name, f"spawn to {what}, {other.label}", *theirs, "ms", n)
        report.add(
            name,
            f"spawn to {label}: lodestar / {other.label}",
            mine[0] / theirs[0],
            mine[1] / theirs[1],
            "x",
            n,
            target if idx == 2 else None,
            note="ratio of medians (p95s)",
        )


async def search_pass(client: Any, name: str, queries: list[str]) -> list[float]:
    times = []
    for query in queries:
        t0 = time.perf_counter()
        result = await client.call_tool("search_docs", {"query": query, "corpus": name})
        times.append(ms(time.perf_counter() - t0))
        check(result, f"search_docs({query!r})")
    return times


async def bench_stdio_search(
    stdio: Stdio, spec: str | None, warm_cache: Path, name: str, queries: list[str], report: Report
) -> None:
    n = str(len(queries))
    # (a) the server builds the index itself: a cache holding the fetched package but no index
    build_cache = stdio.work / "server-build-cache"
    if (warm_cache / "packages").is_dir():
        shutil.copytree(warm_cache / "packages", build_cache / "packages", symlinks=True)
    before = set(child_pids())
    t0 = time.perf_counter()
    async with stdio.client(our_args(spec, build_cache)) as client:
        pid = server_pid(before)
        result = await client.call_tool("search_docs", {"query": PROBE_QUERY, "corpus": name})
        first = time.perf_counter() - t0
        check(result, f"search_docs({PROBE_QUERY!r})")
        await search_pass(client, name, queries)
        hwm = vm_hwm_mb(pid) if pid else None
    report.add(name, "server: spawn to first search, index built in the server", first, None, "s", "1")
    if hwm is not None:
        report.add(
            name, "peak RSS", hwm, None, "MB", n, "peak RSS", note="server VmHWM: built index + 1 pass of queries"
        )
    else:
        log.warning("%s: could not find the server process to read VmHWM", name)

    # (b) warm cache: the realistic case
    before = set(child_pids())
    async with stdio.client(our_args(spec, warm_cache)) as client:
        pid = server_pid(before)
        await client.call_tool("search_docs", {"query": PROBE_QUERY, "corpus": name})
        cold = await search_pass(client, name, queries)
        warm = await search_pass(client, name, queries)
        hwm = vm_hwm_mb(pid) if pid else None
    report.add(name, "search over stdio, first pass", *med_p95(cold), "ms", n)
    report.add(name, "search over stdio, second pass", *med_p95(warm), "ms", n)
    if hwm is not None:
        report.add(
            name, "peak RSS", hwm, None, "MB", n, "peak RSS", note="server VmHWM: cached index + 2 passes of queries"
        )


# Soak: memory under a stream of made-up words

SOAK_MARKS = (1_000, 5_000, 10_000, 25_000, 50_000, 100_000)
SOAK_GROWTH = 15.0  # percent over the resident set after the first 1,000 searches


@dataclass
class SoakMark:
    searches: int
    rss_mb: float
    median_ms: float
    p95_ms: float
    caches: str


def rss_mb() -> float:
    """Resident set (VmRSS) of this process, in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("bench_docs: no VmRSS in /proc/self/status (the soak needs Linux)")


def made_up_query(rng: random.Random) -> str:
    """One to three random 6-12 letter words: each unknown to the index, each a spelling lookup."""
    words = ("".join(rng.choices(string.ascii_lowercase, k=rng.randint(6, 12))) for _ in range(rng.randint(1, 3)))
    return " ".join(words)


def cache_sizes(service: DocsService, name: str) -> str:
    from lodestar.docs import analysis

    searcher = service.corpora[name].searcher
    return (
        f"term cache {len(searcher.term_cache)} terms / {searcher.term_cache.total} postings, "
        f"spelling {len(searcher.corrections)}, stems {analysis._stem.cache_info().currsize}, "
        f"Whoosh idf {len(searcher.searcher._idf_cache)}"
    )


def soak_marks(spec: str | None, cache: Path, searches: int) -> list[SoakMark]:
    """Runs in a fresh process (memory freed by earlier corpora would hide growth): opens the cached corpus
    and searches made-up words through DocsService.search, noting RSS and latency at each mark."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lodestar").setLevel(logging.WARNING)
    service = make_service(spec, cache)
    name = corpus_name(service, spec)
    rng = random.Random(8)
    marks, times = [], []
    for done in range(1, searches + 1):
        query = made_up_query(rng)
        t0 = time.perf_counter()
        service.search(query, 8, name)
        times.append(ms(time.perf_counter() - t0))
        if done in SOAK_MARKS or done == searches:
            marks.append(SoakMark(done, rss_mb(), *med_p95(times), cache_sizes(service, name)))
            log.info("%s: soak %d searches, RSS %.1f MB, %s", name, done, marks[-1].rss_mb, marks[-1].caches)
            times = []
    service.close()
    return marks


def bench_soak(spec: str | None, searches: int, report: Report) -> None:
    label = spec or "bundled"
    with tempfile.TemporaryDirectory(prefix="lodestar-soak-") as tmp:
        cache = Path(tmp) / "cache"
        service = make_service(spec, cache)  # fetch and build here, so the soak process only opens
        name = corpus_name(service, spec)
        service.close()
        log.info("=== soak %s: %d searches of made-up words", label, searches)
        with multiprocessing.get_context("spawn").Pool(1) as pool:
            marks = pool.apply(soak_marks, (spec, cache, searches))
    previous = 0
    for mark in marks:
        report.add(
            name,
            f"soak: searches {previous + 1:,}-{mark.searches:,}",
            mark.median_ms,
            mark.p95_ms,
            "ms",
            str(mark.searches - previous),
            note=f"RSS then {mark.rss_mb:.1f} MB",
        )
        previous = mark.searches
    base = marks[0].rss_mb
    growth = max(100 * (m.rss_mb / base - 1) for m in marks)
    verdict = "within" if growth <= SOAK_GROWTH else "**over**"
    report.add(
        name,
        "soak: largest RSS growth over the level at the first mark",
        round(growth, 1),
        None,
        "%",
        str(marks[-1].searches),
        note=f"{verdict} {SOAK_GROWTH:g} %; at the end: {marks[-1].caches}",
    )


# Driver


def load_queries(path: Path) -> list[str]:
    queries = [line.strip() for line in path.read_text("utf-8").splitlines()]
    return [q for q in queries if q and not q.startswith("#!")]


def timed(label: str, fn: Callable[[], Any]) -> Any:
    t0 = time.perf_counter()
    try:
        return fn()
    finally:
        log.info("[%s took %.1f s]", label, time.perf_counter() - t0)


def warm_cache(spec: str | None, cache: Path) -> tuple[Path, str]:
    """A cache folder given with --cache-dir: loaded once here (building what is missing), not measured."""
    service = make_service(spec, cache)
    name = corpus_name(service, spec)
    log.info("%s: using the cache in %s (%s)", name, cache, "; ".join(service.load_notes))
    service.close()
    return cache, name


async def bench_corpus(spec: str | None, args: argparse.Namespace, queries: list[str], report: Report) -> None:
    label = spec or "bundled"
    with tempfile.TemporaryDirectory(prefix="lodestar-bench-") as tmp:
        work = Path(tmp)
        log.info("=== %s (work dir %s)", label, work)
        if args.cache_dir:
            cache, name = warm_cache(spec, args.cache_dir)
        else:
            cache, name = timed(f"{label} builds", lambda: bench_build(spec, work, args.builds, report))
        if not args.startup_only:
            timed(f"{label} cached open", lambda: bench_cached_open(spec, cache, name, args.opens, report))
            timed(
                f"{label} in-process search",
                lambda: bench_search_inprocess(spec, cache, name, queries, args.rounds, report),
            )
        stdio = Stdio(work)
        try:
            t0 = time.perf_counter()
            await bench_startup(stdio, spec, cache, name, args, report)
            log.info("[%s start-up took %.1f s]", label, time.perf_counter() - t0)
            if not args.startup_only:
                t0 = time.perf_counter()
                await bench_stdio_search(stdio, spec, cache, name, queries[: args.stdio_queries], report)
                log.info("[%s stdio search took %.1f s]", label, time.perf_counter() - t0)
        except BaseException:
            stdio.close()
            log.error("server stderr (tail):\n%s", (work / "server-stderr.log").read_text()[-3000:])
            raise
        stdio.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--corpus",
        action="append",
        metavar="SPEC",
        help=f"corpus spec to measure besides the bundled one (default {DEFAULT_CORPUS})",
    )
    parser.add_argument("--no-bundled", action="store_true", help="skip the bundled corpus")
    parser.add_argument("--rounds", type=int, default=5, help="in-process search passes (first one cold)")
    parser.add_argument("--builds", type=int, default=3, help="full builds per corpus")
    parser.add_argument("--opens", type=int, default=5, help="cached opens per corpus")
    parser.add_argument("--spawns", type=int, default=15, help="stdio spawns per server")
    parser.add_argument(
        "--startup-only",
        action="store_true",
        help="only the stdio start-up rows (spawn to initialize, tools/list, first answer; Mastra's server beside)",
    )
    parser.add_argument(
        "--baseline",
        type=Path,
        metavar="DIR",
        help="another source tree (holding src/lodestar, e.g. a `git worktree` of main): its server is spawned too, "
        "alternating, and compared at start-up",
    )
    parser.add_argument(
        "--cache-dir", type=Path, help="a warm cache folder to use (e.g. a previous run's), instead of building anew"
    )
    parser.add_argument("--stdio-queries", type=int, default=10_000, help="at most this many queries over stdio")
    parser.add_argument("--queries", type=Path, default=DEFAULT_QUERIES, help="one query per line")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 build, 2 rounds, 3 spawns, 60 queries")
    parser.add_argument(
        "--soak",
        type=int,
        metavar="N",
        help="instead: N searches of made-up words per corpus (bundled, plus --corpus specs when given), "
        f"printing RSS and latency at {', '.join(f'{m:,}' for m in SOAK_MARKS)} searches",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("lodestar").setLevel(logging.WARNING)
    logging.getLogger("lodestar.docs.sources").setLevel(logging.INFO)  # "fetching ... with npm pack"
    if args.soak:
        soak_main(args)
        return
    queries = load_queries(args.queries)
    if args.quick:
        args.builds, args.rounds, args.spawns, args.opens = 1, 2, 3, 2
        queries = queries[:: max(1, len(queries) // 60)][:60]
    log.info("%d queries from %s", len(queries), args.queries)
    specs: list[str | None] = [] if args.no_bundled else [None]
    specs += args.corpus or [DEFAULT_CORPUS]

    started = time.perf_counter()
    report = Report()
    for spec in specs:
        asyncio.run(bench_corpus(spec, args, queries, report))
    if not args.startup_only:
        timed("huge page read", lambda: bench_read(report))
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        report.add(
            "all",
            "ru_maxrss of this benchmark process",
            rss,
            None,
            "MB",
            "1",
            note="in-process: every build, open and search above",
        )
    log.info("total %.1f s", time.perf_counter() - started)
    sys.stdout.write(f"\n{report.markdown()}\n")


def soak_main(args: argparse.Namespace) -> None:
    report = Report()
    for spec in ([] if args.no_bundled else [None]) + (args.corpus or []):
        bench_soak(spec, args.soak, report)
    sys.stdout.write(f"\n{report.markdown()}\n")


if __name__ == "__main__":
    main()
