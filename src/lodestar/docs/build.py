"""Index builds in a child process: a big build peaks at over 200 MB, which a long-lived server
would otherwise keep (CPython rarely hands freed memory back). Run as `python -m lodestar.docs.build`.

Whether a build goes to a child is decided by the bytes it would read (DocsLimits.child_build_bytes)."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
from pathlib import Path

from lodestar.docs.cache import writable_cache
from lodestar.docs.limits import DocsLimits
from lodestar.docs.sources import CorpusSource

log = logging.getLogger(__name__)


def build_in_child(source: CorpusSource, cache_dir: Path, limits: DocsLimits) -> None:
    """Index `source` in a child process; a failure is logged, and the caller then indexes itself."""
    command = [sys.executable, "-m", "lodestar.docs.build", "--name", source.name, "--root", str(source.root)]
    # The child writes where this process would: into its fallback when the cache is read-only.
    command += ["--source", source.source, "--cache-dir", str(writable_cache(cache_dir))]
    command += ["--limits", limits.model_dump_json()]
    if source.version:
        command += ["--version", source.version]
    # stdout may be an MCP stdio channel: the child writes only to stderr.
    result = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, check=False)
    if result.returncode != 0:
        log.warning("index build for %s in a child process failed (exit %s)", source.name, result.returncode)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m lodestar.docs.build")
    for flag in ("--name", "--root", "--source", "--cache-dir", "--limits"):
        parser.add_argument(flag, required=True)
    parser.add_argument("--version")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    from lodestar.docs.index import open_index
    from lodestar.docs.scan import skip_log

    skip_log.setLevel(logging.ERROR)  # the parent scanned the same folder a moment ago and warned already
    source = CorpusSource(name=args.name, source=args.source, root=Path(args.root), version=args.version)
    open_index(source, Path(args.cache_dir), DocsLimits.model_validate_json(args.limits))


if __name__ == "__main__":
    main()
