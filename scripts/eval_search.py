"""Search quality on judged queries: hit@1, hit@5 and MRR@5 per corpus and overall, by kind.

    uv run python scripts/eval_search.py [--corpus NAME ...] [--queries scripts/eval_queries.json] [-v]

The judged file is a list of groups, {corpus: SPEC, queries: [{query, expected: [paths], kind}]}, each SPEC a
pinned `NAME=npm:PACKAGE@VERSION` (or `lodestar` for the bundled corpus) so figures are reproducible. A query
hits at rank r when the r-th page returned (hits are one per page) is one of its expected paths; MRR counts
the first expected page in the top 5. Each search runs through DocsService over its group's corpus only, with
limit 5. Markdown tables (one per corpus, then all corpora) go to stdout; progress (and with -v, every query
not answered at rank 1 with what came back) to stderr.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

from lodestar.docs.service import BUNDLED, DocsService
from lodestar.settings import default_cache_dir

log = logging.getLogger("eval_search")

HERE = Path(__file__).resolve().parent
TOP = 5

Ranks = dict[str, list[int | None]]


def rank_of(paths: list[str], expected: list[str]) -> int | None:
    wanted = set(expected)
    return next((i for i, path in enumerate(paths[:TOP], 1) if path in wanted), None)


def table(groups: Ranks) -> str:
    lines = ["| kind | queries | hit@1 | hit@5 | MRR@5 |", "|---|---:|---:|---:|---:|"]
    order = ["all", *sorted(k for k in groups if k != "all")]
    for kind in order:
        ranks = groups[kind]
        n = len(ranks)
        hit1 = sum(r == 1 for r in ranks) / n
        hit5 = sum(r is not None for r in ranks) / n
        mrr = sum(1 / r for r in ranks if r) / n
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {name} | {n} | {hit1:.3f} | {hit5:.3f} | {mrr:.3f} |")
    return "\n".join(lines)


def load(specs: list[str], cache: Path) -> tuple[DocsService, dict[str, str]]:
    """One service over every judged corpus, and the corpus name of each spec."""
    bundled = BUNDLED in specs
    service = DocsService([s for s in specs if s != BUNDLED], cache, bundled=bundled)
    started = time.perf_counter()
    service.load()
    if service.failures:
        sys.exit(f"eval_search: corpora failed to load: {service.failures}")
    names = {spec: BUNDLED if spec == BUNDLED else service.spec_names[spec] for spec in specs}
    for name in names.values():
        info = service.corpora[name].info()
        log.info("%s %s: %d pages, %d sections", name, info.version, info.documents, info.sections)
    log.info("loaded in %.2f s (%s)", time.perf_counter() - started, "; ".join(service.load_notes))
    return service, names


def evaluate(service: DocsService, name: str, judged: list[dict], overall: Ranks, verbose: bool) -> Ranks:
    """Ranks of one corpus's judged queries by kind (also added to `overall`); -v logs the misses."""
    known = service.corpora[name].manifest.files
    groups: Ranks = defaultdict(list)
    misses = []
    latencies = []
    for item in judged:
        missing = [p for p in item["expected"] if p not in known]
        if missing:
            log.warning("judged query %r expects pages %s lacks: %s", item["query"], name, missing)
        t0 = time.perf_counter()
        paths = [hit.path for hit in service.search(item["query"], TOP, name).hits]
        latencies.append((time.perf_counter() - t0) * 1000)
        rank = rank_of(paths, item["expected"])
        for kind in ("all", item["kind"]):
            groups[kind].append(rank)
            overall[kind].append(rank)
        if rank != 1:
            misses.append((item["kind"], item["query"], rank, item["expected"], paths))
    log.info("%s: %d judged queries, search median %.1f ms, max %.1f ms", name, len(judged),
             statistics.median(latencies), max(latencies))  # fmt: skip
    if verbose:
        for kind, query, rank, expected, paths in sorted(misses, key=lambda m: (m[2] or 99, m[0])):
            where = f"rank {rank}" if rank else "MISS"
            log.info("\n[%s %s] %s %r\n  expected: %s\n  got:\n%s", name, kind, where, query, ", ".join(expected),
                     "\n".join(f"    {i}. {p}" for i, p in enumerate(paths, 1)) or "    (nothing)")  # fmt: skip
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", action="append", metavar="NAME", help="only the groups of this corpus name")
    parser.add_argument("--queries", type=Path, default=HERE / "eval_queries.json")
    parser.add_argument("--cache-dir", type=Path, default=None, help="index cache (default: the user cache)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the queries not answered at rank 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("lodestar").setLevel(logging.WARNING)
    logging.getLogger("lodestar.docs.sources").setLevel(logging.INFO)

    groups = json.loads(args.queries.read_text("utf-8"))
    if args.corpus:
        groups = [g for g in groups if g["corpus"].split("=", 1)[0] in args.corpus]
        if not groups:
            sys.exit(f"eval_search: no judged queries for corpus {', '.join(args.corpus)} in {args.queries}")
    started = time.perf_counter()
    service, names = load([g["corpus"] for g in groups], args.cache_dir or default_cache_dir())
    overall: Ranks = defaultdict(list)
    out = []
    try:
        for group in groups:
            name = names[group["corpus"]]
            ranks = evaluate(service, name, group["queries"], overall, args.verbose)
            out.append(f"### {name} ({group['corpus'].split('=', 1)[-1]})\n\n{table(ranks)}\n")
    finally:
        service.close()
    if len(groups) > 1:
        out.append(f"### all corpora\n\n{table(overall)}\n")
    log.info("%.1f s in all", time.perf_counter() - started)
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
