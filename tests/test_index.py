"""The on-disk Whoosh index: build, cache, incremental update, concurrent start-up, corpus scanning."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import PAGES, run_racers, write_corpus

from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.index import OpenedIndex, index_dir, open_index
from lodestar.docs.limits import DocsLimits
from lodestar.docs.scan import scan
from lodestar.docs.search import CorpusSearcher
from lodestar.docs.service import DocsService
from lodestar.docs.sources import CorpusSource

EXAMPLE_NAME = "example-docs"


def source_for(root: Path, name: str = "example-docs") -> CorpusSource:
    return CorpusSource(name=name, source=str(root), root=root)


def snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    """Every file below folder with its inode, size and mtime: a rewrite changes at least one."""
    found = {}
    for path in folder.rglob("*"):
        if path.is_file():
            st = path.stat()
            found[path.relative_to(folder).as_posix()] = (st.st_ino, st.st_size, st.st_mtime_ns)
    return found


def paths_for(opened: OpenedIndex, query: str) -> list[str]:
    searcher = CorpusSearcher(opened)
    try:
        return [m.path for m in searcher.search(query, 10).matches]
    finally:
        searcher.close()


def test_build_indexes_every_page(corpus_dir: Path, cache_dir: Path) -> None:
    opened = open_index(source_for(corpus_dir), cache_dir)
    assert opened.built == "built"
    assert sorted(opened.manifest.files) == sorted(PAGES)
    memory = opened.manifest.files["docs/agents/memory.md"]
    assert memory.title == "Agent memory"
    assert [s.anchor for s in memory.sections] == ["agent-memory", "threads", "semantic-recall"]
    assert memory.size == len(PAGES["docs/agents/memory.md"].encode())
    folder = index_dir(cache_dir, source_for(corpus_dir))
    assert folder.is_dir() and (folder / "manifest.json").is_file()
    assert folder.is_relative_to(cache_dir)
    assert opened.index.doc_count() == sum(len(d.sections) for d in opened.manifest.files.values())
    assert paths_for(opened, "semantic recall") == ["docs/agents/memory.md"]


def test_second_open_is_cached_and_rewrites_nothing(corpus_dir: Path, cache_dir: Path) -> None:
    source = source_for(corpus_dir)
    first = open_index(source, cache_dir)
    first.index.close()
    folder = index_dir(cache_dir, source)
    before = snapshot(folder)
    siblings = sorted(p.name for p in folder.parent.iterdir())

    second = open_index(source, cache_dir)

    assert second.built == "cached"
    assert snapshot(folder) == before
    assert sorted(p.name for p in folder.parent.iterdir()) == siblings
    assert second.manifest.files.keys() == first.manifest.files.keys()
    assert paths_for(second, "PIIDetector") == ["reference/config.md"]


def test_service_load_notes_built_then_cached(corpus_dir: Path, cache_dir: Path) -> None:
    first = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    first.load()
    assert first.load_notes == ["example-docs: built"]
    second = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    second.load()
    assert second.load_notes == ["example-docs: cached"]
    assert second.search("semantic recall").hits[0].path == "docs/agents/memory.md"
    first.close()
    second.close()


def test_modify_add_delete_updates_three_and_search_follows(corpus_dir: Path, cache_dir: Path) -> None:
    source = source_for(corpus_dir)
    assert open_index(source, cache_dir).built == "built"
    assert "docs/overview.md" in paths_for(open_index(source, cache_dir), "pip install")

    (corpus_dir / "docs/overview.md").write_text(
        "# Overview\n\nThe product now ships as a zebrafish appliance.\n", "utf-8"
    )
    (corpus_dir / "docs/new-page.md").write_text("# New page\n\nQuokka sightings are logged here.\n", "utf-8")
    (corpus_dir / "reference/config.md").unlink()

    opened = open_index(source, cache_dir)

    assert opened.built == "updated 3"
    assert sorted(opened.manifest.files) == sorted(
        ["docs/overview.md", "docs/new-page.md", "docs/agents/memory.md", "guides/quickstart.mdx"]
    )
    assert paths_for(opened, "zebrafish") == ["docs/overview.md"]
    assert paths_for(opened, "quokka") == ["docs/new-page.md"]
    assert paths_for(opened, "PIIDetector") == []
    assert paths_for(opened, "redacts phone") == []
    assert "docs/overview.md" not in paths_for(opened, "pip install")
    assert paths_for(opened, "semantic recall") == ["docs/agents/memory.md"]  # untouched pages stay
    assert opened.index.doc_count() == sum(len(d.sections) for d in opened.manifest.files.values())
    assert open_index(source, cache_dir).built == "cached"


def test_service_sees_updates_when_loaded_again(corpus_dir: Path, cache_dir: Path) -> None:
    DocsService([str(corpus_dir)], cache_dir, bundled=False).load()
    (corpus_dir / "docs/agents/memory.md").write_text("# Agent memory\n\nWombats remember everything.\n", "utf-8")
    service = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    service.load()
    assert service.load_notes == ["example-docs: updated 1"]
    assert [h.path for h in service.search("wombats").hits] == ["docs/agents/memory.md"]
    assert service.search("semantic recall").hits == []
    service.close()


def test_touching_a_file_is_not_a_change(corpus_dir: Path, cache_dir: Path) -> None:
    source = source_for(corpus_dir)
    open_index(source, cache_dir).index.close()
    folder = index_dir(cache_dir, source)
    segments = {k: v for k, v in snapshot(folder).items() if k != "manifest.json"}
    page = corpus_dir / "docs/overview.md"
    st = page.stat()
    new_mtime = st.st_mtime_ns + 5_000_000_000
    os.utime(page, ns=(st.st_atime_ns, new_mtime))

    touched = open_index(source, cache_dir)

    assert touched.built == "cached"
    assert touched.manifest.files["docs/overview.md"].mtime_ns == new_mtime
    assert {k: v for k, v in snapshot(folder).items() if k != "manifest.json"} == segments
    touched.index.close()
    # the new mtime was saved: the next open does not even hash the file
    before = snapshot(folder)
    again = open_index(source, cache_dir)
    assert again.built == "cached"
    assert snapshot(folder) == before


def test_same_size_edit_with_a_new_mtime_is_a_change(corpus_dir: Path, cache_dir: Path) -> None:
    source = source_for(corpus_dir)
    open_index(source, cache_dir).index.close()
    page = corpus_dir / "docs/agents/memory.md"
    text = page.read_text("utf-8")
    edited = text.replace("Semantic recall finds", "Semantic recall picks")  # same length
    assert len(edited) == len(text) and edited != text
    st = page.stat()
    page.write_text(edited, "utf-8")
    os.utime(page, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    opened = open_index(source, cache_dir)
    assert opened.built == "updated 1"
    assert paths_for(opened, "picks") == ["docs/agents/memory.md"]


_RACER = """
import json, sys
from pathlib import Path
from lodestar.docs.service import DocsService

corpus, cache = sys.argv[1], Path(sys.argv[2])
print("ready", flush=True)
sys.stdin.readline()  # the barrier: the parent releases both processes at once
service = DocsService([corpus], cache)
service.load()
hits = service.search("redact phone numbers", corpus="example-docs").hits
bundled = service.search("search_docs", corpus="lodestar").hits
print(json.dumps({
    "notes": service.load_notes,
    "failures": service.failures,
    "paths": [h.path for h in hits],
    "bundled": len(bundled),
}), flush=True)
"""


def test_two_processes_starting_on_one_empty_cache(corpus_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    assert not cache_dir.exists()
    results = []
    for returncode, out, err in run_racers(tmp_path, _RACER, [str(corpus_dir), str(cache_dir)]):
        assert returncode == 0, err
        results.append(json.loads(out))
    for result in results:
        assert result["failures"] == {}
        assert result["paths"][0] == "reference/config.md"
        assert result["bundled"] > 0
    for name in ("example-docs", "lodestar"):
        notes = sorted(n for r in results for n in r["notes"] if n.startswith(name + ":"))
        assert notes == [f"{name}: built", f"{name}: cached"]  # one built it, the other waited and reused it

    indexes = cache_dir / "indexes"
    leftovers = [p.name for p in indexes.iterdir() if p.name.startswith(".")]
    assert leftovers == []
    after = open_index(source_for(corpus_dir), cache_dir)
    assert after.built == "cached"
    assert paths_for(after, "semantic recall") == ["docs/agents/memory.md"]


def test_symlink_out_of_the_corpus_is_skipped(corpus_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.md").write_text("# Secret\n\nThe xylophone password.\n", "utf-8")
    (outside / "more").mkdir()
    (outside / "more" / "hidden.md").write_text("# Hidden\n\nXylophone again.\n", "utf-8")
    try:
        (corpus_dir / "docs" / "leak.md").symlink_to(outside / "secret.md")
        (corpus_dir / "linked").symlink_to(outside / "more", target_is_directory=True)
        (corpus_dir / "docs" / "alias.md").symlink_to(corpus_dir / "docs" / "overview.md")
    except OSError:
        pytest.skip("symlinks are not available here")

    found = scan(corpus_dir, DocsLimits().max_page_bytes)
    assert "docs/leak.md" not in found
    assert not any(p.startswith("linked/") for p in found)
    assert "docs/alias.md" in found  # a link that stays inside the corpus is a page

    service = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    service.load()
    assert service.search("xylophone").hits == []
    with pytest.raises(DocsError, match="no page"):
        service.read("docs/leak.md")
    with pytest.raises(DocsError, match="no page"):
        service.read("linked/hidden.md")
    service.close()


def test_hidden_and_dependency_folders_are_not_scanned(corpus_dir: Path) -> None:
    write_corpus(
        corpus_dir,
        {".git/notes.md": "# x\n", "node_modules/pkg/readme.md": "# y\n", "docs/notes.txt": "not markdown\n"},
    )
    assert sorted(scan(corpus_dir, DocsLimits().max_page_bytes)) == sorted(PAGES)


def test_a_corpus_without_markdown_is_a_corpus_error(tmp_path: Path, cache_dir: Path) -> None:
    root = tmp_path / "empty-docs"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "readme.txt").write_text("plain text\n", "utf-8")
    with pytest.raises(CorpusError, match=r"no \.md or \.mdx files") as info:
        open_index(source_for(root, "empty-docs"), cache_dir)
    assert "empty-docs" in str(info.value)
    assert str(root) in str(info.value)

    service = DocsService([str(root)], cache_dir, bundled=False)
    service.load()
    assert service.corpora == {}
    with pytest.raises(DocsError, match=r"failed to load: .*no \.md or \.mdx files"):
        service.search("anything", corpus="empty-docs")


def test_one_bad_page_does_not_abort_loading(corpus_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    """Regression (fixed in b5bfea5): an IndexError from one CR-only page aborted DocsService.load()."""
    other = write_corpus(tmp_path / "other-docs", {"a.md": "# Alpha\n\nAardvark notes.\n"})
    (corpus_dir / "docs" / "classic-mac.md").write_bytes(b"# Old\r\rtext\r## Part\rmore\r")
    service = DocsService([str(corpus_dir), str(other)], cache_dir, bundled=False)
    service.load()
    assert service.failures == {}
    assert service.search("aardvark", corpus="other-docs").hits
    assert [h.path for h in service.search("more", corpus=EXAMPLE_NAME).hits] == ["docs/classic-mac.md"]
    assert service.read("docs/classic-mac.md", heading="part").content == "## Part\rmore\r"
    service.close()


def test_a_fresh_searcher_counts_pages(corpus_dir: Path, cache_dir: Path) -> None:
    """Regression: at fd08d90 `total` came from a table only `warm()` filled, so this raised IndexError."""
    searcher = CorpusSearcher(open_index(source_for(corpus_dir), cache_dir))
    try:
        assert searcher.search("agent", 5).total == 1  # three sections of one page
    finally:
        searcher.close()


def test_builds_reading_more_than_child_build_bytes_go_to_a_child(corpus_dir: Path, cache_dir: Path) -> None:
    """The child gets this process's limits: the page over max_page_bytes stays out of its index too."""
    (corpus_dir / "big.md").write_text("# Big\n\n" + "walrus " * 300, "utf-8")
    sizes = sum(len(text.encode()) for text in PAGES.values())
    limits = DocsLimits(max_page_bytes=1024, child_build_bytes=sizes - 1)
    service = DocsService([str(corpus_dir)], cache_dir, bundled=False, limits=limits)
    service.load()
    assert service.load_notes == [f"{EXAMPLE_NAME}: built in a child process"]
    assert service.list_corpora().corpora[0].documents == len(PAGES)
    service.close()

    (corpus_dir / "docs" / "overview.md").write_text("# Overview\n\nA short page now.\n", "utf-8")
    inline = DocsService([str(corpus_dir)], cache_dir, bundled=False, limits=limits)
    inline.load()
    assert inline.load_notes == [f"{EXAMPLE_NAME}: updated 1"]  # a few bytes to read: done in this process
    inline.close()

    now = sum(p.stat().st_size for p in corpus_dir.rglob("*.md*") if p.name != "big.md")
    exact = DocsLimits(max_page_bytes=1024, child_build_bytes=now)  # not more than the limit: inline
    fresh = DocsService([str(corpus_dir)], cache_dir / "fresh", bundled=False, limits=exact)
    fresh.load()
    assert fresh.load_notes == [f"{EXAMPLE_NAME}: built"]
    fresh.close()
