"""Search quality on judged queries: hit@1, hit@5 and MRR@5, overall and per kind.

    uv run python scripts/eval_search.py [--corpus SPEC] [--queries scripts/eval_queries.json] [-v]

Each judged query is {query, expected: [paths], kind}. A query hits at rank r when the r-th page returned
(hits are one per page) is one of its expected paths; MRR counts the first expected page in the top 5.
The search runs through DocsService over that one corpus only, with limit 5. The markdown table goes to
stdout; progress (and with -v, every query not answered at rank 1 with what came back) to stderr.
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
DEFAULT_CORPUS = "mastra=npm:@mastra/mcp-docs-server@1.2.27"
TOP = 5


def rank_of(paths: list[str], expected: list[str]) -> int | None:
    wanted = set(expected)
    return next((i for i, path in enumerate(paths[:TOP], 1) if path in wanted), None)


def table(groups: dict[str, list[int | None]]) -> str:
    lines = ["| kind | queries | hit@1 | hit@5 | MRR@5 |", "|---|---:|---:|---:|---:|"]
    for kind, ranks in groups.items():
        n = len(ranks)
        hit1 = sum(r == 1 for r in ranks) / n
        hit5 = sum(r is not None for r in ranks) / n
        mrr = sum(1 / r for r in ranks if r) / n
        name = f"**{kind}**" if kind == "all" else kind
        lines.append(f"| {name} | {n} | {hit1:.3f} | {hit5:.3f} | {mrr:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", default=DEFAULT_CORPUS, help=f"corpus spec, or 'lodestar' for the bundled one "
                        f"(default {DEFAULT_CORPUS})")  # fmt: skip
    parser.add_argument("--queries", type=Path, default=HERE / "eval_queries.json")
    parser.add_argument("--cache-dir", type=Path, default=None, help="index cache (default: the user cache)")
    parser.add_argument("-v", "--verbose", action="store_true", help="list the queries not answered at rank 1")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(message)s")
    logging.getLogger("lodestar").setLevel(logging.WARNING)
    logging.getLogger("lodestar.docs.sources").setLevel(logging.INFO)

    judged = json.loads(args.queries.read_text("utf-8"))
    cache = args.cache_dir or default_cache_dir()
    bundled = args.corpus in (BUNDLED, "bundled")
    started = time.perf_counter()
    service = DocsService([] if bundled else [args.corpus], cache, bundled=bundled)
    service.load()
    if service.failures:
        sys.exit(f"eval_search: corpus failed to load: {service.failures}")
    name = BUNDLED if bundled else service.spec_names[args.corpus]
    info = service.corpora[name].info()
    log.info("%s %s: %d pages, %d sections, loaded in %.2f s (%s)", name, info.version, info.documents,
             info.sections, time.perf_counter() - started, "; ".join(service.load_notes))  # fmt: skip

    known = service.corpora[name].manifest.files
    for item in judged:
        missing = [p for p in item["expected"] if p not in known]
        if missing:
            log.warning("judged query %r expects pages the corpus lacks: %s", item["query"], missing)

    groups: dict[str, list[int | None]] = defaultdict(list)
    misses: list[tuple[str, str, int | None, list[str], list[str]]] = []
    latencies = []
    for item in judged:
        t0 = time.perf_counter()
        result = service.search(item["query"], TOP, name)
        latencies.append((time.perf_counter() - t0) * 1000)
        paths = [hit.path for hit in result.hits]
        rank = rank_of(paths, item["expected"])
        groups["all"].append(rank)
        groups[item["kind"]].append(rank)
        if rank != 1:
            misses.append((item["kind"], item["query"], rank, item["expected"], paths))
    service.close()
    log.info("%d judged queries, search median %.1f ms, max %.1f ms; %.1f s in all", len(judged),
             statistics.median(latencies), max(latencies), time.perf_counter() - started)  # fmt: skip

    if args.verbose:
        for kind, query, rank, expected, paths in sorted(misses, key=lambda m: (m[2] or 99, m[0])):
            where = f"rank {rank}" if rank else "MISS"
            log.info("\n[%s] %s %r\n  expected: %s\n  got:\n%s", kind, where, query, ", ".join(expected),
                     "\n".join(f"    {i}. {p}" for i, p in enumerate(paths, 1)) or "    (nothing)")  # fmt: skip

    order = ["all", *sorted(k for k in groups if k != "all")]
    sys.stdout.write(table({k: groups[k] for k in order}) + "\n")


if __name__ == "__main__":
    main()
