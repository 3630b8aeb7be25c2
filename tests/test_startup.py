"""What a server's first answer must not pay for, checked by what is imported and how the collector is left
rather than by timing (scripts/bench_docs.py --startup-only measures it against Mastra's docs server)."""

from __future__ import annotations

import gc
import json
import subprocess
import sys
from pathlib import Path

from conftest import write_corpus
from whoosh.codec.whoosh3 import LENGTHS_COLUMN, _lenfield
from whoosh.util.numeric import byte_to_length

from lodestar.docs.index import open_index
from lodestar.docs.search import FIELD_BOOSTS, CorpusSearcher
from lodestar.docs.service import DocsService
from lodestar.docs.sources import CorpusSource
from lodestar.server.app import collector_paused

LAZY = ("mcp", "whoosh", "markdown_it", "uvicorn", "starlette", "lodestar.docs.sections")


def imported_after(code: str, *args: str) -> list[str]:
    """Which of LAZY a fresh interpreter has imported after running `code`."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {LAZY!r} if m in sys.modules]))"
    done = subprocess.run([sys.executable, "-c", probe, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.splitlines()[-1])


def test_the_server_module_leaves_the_sdk_to_run() -> None:
    """`run` pauses the collector before the SDK is imported: importing the module must not import it."""
    assert imported_after("import lodestar.cli, lodestar.server.app") == []


def test_opening_a_cached_index_and_searching_leave_the_markdown_parser_out(corpus_dir: Path, cache_dir: Path) -> None:
    built = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    built.load()
    assert built.load_notes == ["example-docs: built"]
    built.close()
    code = (
        "import sys\nfrom pathlib import Path\nfrom lodestar.docs.service import DocsService\n"
        "docs = DocsService([sys.argv[1]], Path(sys.argv[2]), bundled=False)\ndocs.load()\n"
        "assert docs.load_notes == ['example-docs: cached'], docs.load_notes\n"
        "assert docs.search('semantic recall').hits"
    )
    assert imported_after(code, str(corpus_dir), str(cache_dir)) == ["whoosh"]


def test_start_up_pauses_the_collector_then_freezes_what_it_built() -> None:
    frozen = gc.get_freeze_count()
    try:
        with collector_paused():
            assert not gc.isenabled()
            built = [[n] for n in range(1000)]
        assert gc.isenabled()
        assert gc.get_freeze_count() >= frozen + len(built)
    finally:
        gc.unfreeze()


def test_field_lengths_read_at_once_match_whooshs_own(tmp_path: Path, cache_dir: Path) -> None:
    """The last page has no code, so the code column ends before the last sections: they must read as 0."""
    root = write_corpus(
        tmp_path / "docs",
        {"a.md": "# Alpha\n\n```py\nalpha_call()\n```\n\n## Beta\n\nWords.\n", "z.md": "# Zeta\n\nPlain words."},
    )
    searcher = CorpusSearcher(open_index(CorpusSource(name="docs", source=str(root), root=root), cache_dir))
    try:
        for leaf, _ in searcher.reader.leaf_readers():
            for field in FIELD_BOOSTS:
                column = leaf._perdoc._cached_reader(_lenfield(field), LENGTHS_COLUMN)
                whoosh = [byte_to_length(b) for b in column.load()] if column else [0] * leaf.doc_count_all()
                assert searcher._lengths(leaf, field) == whoosh, field
            code = searcher._lengths(leaf, "code")
            assert code[-1] == 0 and any(code), code
    finally:
        searcher.close()
