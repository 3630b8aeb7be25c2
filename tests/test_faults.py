"""Ordinary filesystem faults in a corpus folder and in the index cache: skipped or healed, never fatal or hanging."""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
from conftest import PAGES, make_tgz, run_racers, write_corpus

from lodestar.docs import index as index_module
from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.index import index_dir, open_index
from lodestar.docs.limits import DocsLimits
from lodestar.docs.render import render_list
from lodestar.docs.service import DocsService
from lodestar.docs.sources import CorpusSource

EXAMPLE = "example-docs"
SKIPPED = "lodestar.docs.skipped"
T = TypeVar("T")


def bounded(call: Callable[[], T], timeout: float = 60) -> T:
    """Runs `call` on a thread and fails the test if it does not return: the point is that nothing hangs."""
    done = threading.Event()
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(call())
        except BaseException as exc:
            outcome.append(exc)
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(timeout), f"{call} did not return within {timeout} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]  # type: ignore[return-value]


def warnings_about(caplog: pytest.LogCaptureFixture, name: str, logger: str = SKIPPED) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == logger and name in r.getMessage()]


@pytest.fixture
def service_for(cache_dir: Path) -> Iterator[Callable[..., DocsService]]:
    made: list[DocsService] = []

    def make(*specs: str, limits: DocsLimits | None = None) -> DocsService:
        service = DocsService(list(specs), cache_dir, bundled=False, limits=limits)
        made.append(service)
        bounded(service.load)
        return service

    yield make
    for service in made:
        service.close()


def source_for(root: Path) -> CorpusSource:
    return CorpusSource(name=root.name, source=str(root), root=root)


# Odd entries in a corpus folder


def _device(path: Path) -> bool:
    try:
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # what /dev/null is
    except (OSError, AttributeError):
        return False
    return True


def test_links_fifos_and_devices_are_skipped_once_each(
    corpus_dir: Path, service_for: Callable[..., DocsService], caplog: pytest.LogCaptureFixture
) -> None:
    docs = corpus_dir / "docs"
    (docs / ".#overview.md").symlink_to("alice@laptop.4242:1700000000")  # an emacs lock file
    (docs / "gone.md").symlink_to(docs / "deleted.md")
    (docs / "loop-a.md").symlink_to(docs / "loop-b.md")
    (docs / "loop-b.md").symlink_to(docs / "loop-a.md")
    os.mkfifo(docs / "pipe.md")
    odd = [".#overview.md", "gone.md", "loop-a.md", "loop-b.md", "pipe.md"]
    if _device(docs / "null.md"):
        odd.append("null.md")

    caplog.set_level(logging.WARNING)
    service = service_for(str(corpus_dir))
    assert service.failures == {}
    assert bounded(lambda: service.refresh(EXAMPLE)) == f"{EXAMPLE}: cached"

    for name in odd:
        assert len(warnings_about(caplog, f"docs/{name}'")) == 1, name  # load and refresh: one warning
    assert "leads nowhere" in warnings_about(caplog, "gone.md")[0]
    assert "leads nowhere" in warnings_about(caplog, "loop-a.md")[0]
    assert "not a regular file" in warnings_about(caplog, "pipe.md")[0]
    listed = {e.path for e in service.list("docs/", depth=3).entries}
    assert listed == {"docs/overview.md", "docs/agents/", "docs/agents/memory.md"}
    assert service.search("semantic recall").hits[0].path == "docs/agents/memory.md"


def test_read_doc_of_a_page_that_became_a_fifo_is_an_error_not_a_hang(
    corpus_dir: Path, service_for: Callable[..., DocsService]
) -> None:
    service = service_for(str(corpus_dir))
    page = corpus_dir / "docs" / "overview.md"
    page.unlink()
    os.mkfifo(page)
    with pytest.raises(DocsError, match="not a regular file"):
        bounded(lambda: service.read("docs/overview.md"))


def test_a_page_over_max_page_bytes_is_skipped(
    corpus_dir: Path, service_for: Callable[..., DocsService], caplog: pytest.LogCaptureFixture
) -> None:
    (corpus_dir / "big.md").write_text("# Big\n\n" + "walrus " * 400, "utf-8")
    caplog.set_level(logging.WARNING)
    service = service_for(str(corpus_dir), limits=DocsLimits(max_page_bytes=1024))
    (message,) = warnings_about(caplog, "big.md")
    assert "max_page_bytes=1024" in message and "LODESTAR_MAX_PAGE_BYTES" in message
    assert service.search("walrus").hits == []
    assert service.list_corpora().corpora[0].documents == len(PAGES)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="needs POSIX permissions that bind the user")
def test_an_unreadable_page_is_skipped(
    corpus_dir: Path, service_for: Callable[..., DocsService], caplog: pytest.LogCaptureFixture
) -> None:
    secret = corpus_dir / "docs" / "secret.md"
    secret.write_text("# Secret\n\nOkapi.\n", "utf-8")
    secret.chmod(0)
    caplog.set_level(logging.WARNING)
    service = service_for(str(corpus_dir))
    assert "permission denied" in warnings_about(caplog, "secret.md")[0]
    assert service.search("okapi").hits == []
    assert service.failures == {}


def _after_scan(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Changes the corpus right after open_index scanned it, before any page is read."""
    real_scan = index_module.scan

    def scan_then_change(root: Path, max_page_bytes: int) -> dict[str, os.stat_result]:
        found = real_scan(root, max_page_bytes)
        change()
        return found

    monkeypatch.setattr(index_module, "scan", scan_then_change)


@pytest.mark.parametrize("fault", ["vanishes", "becomes a FIFO", "grows too big"])
@pytest.mark.parametrize("when", ["build", "update"])
def test_a_page_that_changes_between_scan_and_read_is_skipped(
    fault: str,
    when: str,
    corpus_dir: Path,
    cache_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    page = corpus_dir / "docs" / "overview.md"
    source = source_for(corpus_dir)
    limits = DocsLimits(max_page_bytes=4096)
    if when == "update":
        open_index(source, cache_dir, limits).index.close()
        page.write_text("# Overview\n\nNarwhal.\n", "utf-8")

    def change() -> None:
        page.unlink()
        if fault == "becomes a FIFO":
            os.mkfifo(page)
        elif fault == "grows too big":
            page.write_text("x" * 5000, "utf-8")

    _after_scan(monkeypatch, change)
    caplog.set_level(logging.WARNING)
    opened = bounded(lambda: open_index(source, cache_dir, limits))
    assert opened is not None
    assert "docs/overview.md" not in opened.manifest.files
    assert sorted(opened.manifest.files) == sorted(p for p in PAGES if p != "docs/overview.md")
    assert "cannot be read any more" in warnings_about(caplog, "docs/overview.md", "lodestar.docs.index")[0]
    assert opened.index.doc_count() == sum(len(d.sections) for d in opened.manifest.files.values())


def test_odd_names_read_back_exactly_or_are_skipped(
    corpus_dir: Path, service_for: Callable[..., DocsService], caplog: pytest.LogCaptureFixture
) -> None:
    composed = unicodedata.normalize("NFC", "names/café.md")
    decomposed = unicodedata.normalize("NFD", "names/naïve.md")
    assert composed != unicodedata.normalize("NFD", composed) and decomposed != unicodedata.normalize("NFC", decomposed)
    write_corpus(
        corpus_dir,
        {
            composed: "# Cafe\n\nEspresso machines.\n",
            decomposed: "# Naive\n\nEspresso beginners.\n",
            "names/back\\slash.md": "# Backslash\n\nEspresso slash.\n",
            "names/new\nline.md": "# Newline\n\nEspresso line.\n",
            "names/ spaced.md": "# Spaced\n\nEspresso space.\n",
            " top.md": "# Top\n\nEspresso top.\n",
        },
    )
    os.close(os.open(os.fsencode(corpus_dir / "names") + b"/bad\xff.md", os.O_CREAT | os.O_WRONLY))
    caplog.set_level(logging.WARNING)
    service = service_for(str(corpus_dir))

    hits = {h.path for h in service.search("espresso", limit=20).hits}
    assert hits == {composed, decomposed, "names/ spaced.md"}
    for path in hits:  # a search hit's path reads back as it is
        assert "Espresso" in service.read(path).content
    # and as the other normalisation form: what a model types need not match what macOS stored
    assert service.read(unicodedata.normalize("NFD", composed)).path == composed
    assert service.read(unicodedata.normalize("NFC", decomposed)).path == decomposed
    assert service.read(unicodedata.normalize("NFC", "names/naïve")).path == decomposed

    listing = service.list("names/")
    assert {e.path for e in listing.entries} == hits
    assert len(render_list(listing).splitlines()) == len(listing.entries)
    for skipped in ("back\\\\slash.md", "new\\nline.md", "bad\\udcff.md", " top.md'"):
        assert len(warnings_about(caplog, skipped)) == 1, skipped


# Damaged index cache


def _segment(folder: Path) -> Path:
    return next(folder.glob("*.seg"))


def _toc(folder: Path) -> Path:
    return next(folder.glob("_MAIN_*.toc"))


DAMAGE: dict[str, Callable[[Path], None]] = {
    "truncated segment": lambda f: os.truncate(_segment(f), _segment(f).stat().st_size // 2),
    "missing segment": lambda f: _segment(f).unlink(),
    "garbage TOC": lambda f: _toc(f).write_bytes(b"\x00garbage" * 64),
    "missing TOC": lambda f: _toc(f).unlink(),
    "garbage manifest": lambda f: (f / "manifest.json").write_text('{"files": {"a.md": 3}', "utf-8"),
    "missing manifest": lambda f: (f / "manifest.json").unlink(),
    "manifest of other pages": lambda f: (f / "manifest.json").write_text(_other_manifest(f), "utf-8"),
}


def _other_manifest(folder: Path) -> str:
    """The manifest of this index with one page's sections gone: it no longer describes the index."""
    manifest = index_module.Manifest.model_validate_json((folder / "manifest.json").read_bytes())
    manifest.files["docs/agents/memory.md"].sections.pop()
    return manifest.model_dump_json()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_index_is_rebuilt_once(
    damage: str, corpus_dir: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    first.load()
    first.close()
    folder = index_dir(cache_dir, source_for(corpus_dir))
    DAMAGE[damage](folder)

    caplog.set_level(logging.WARNING)
    healed = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    healed.load()
    assert healed.failures == {}
    assert healed.load_notes == [f"{EXAMPLE}: rebuilt"]
    (warning,) = [r.getMessage() for r in caplog.records if r.name == "lodestar.docs.index"]
    assert warning.startswith(f"rebuilding the index of {EXAMPLE}")
    assert healed.search("semantic recall").hits[0].path == "docs/agents/memory.md"
    assert healed.read("reference/config.md", heading="maxSteps").content.startswith("## maxSteps")
    healed.close()

    again = DocsService([str(corpus_dir)], cache_dir, bundled=False)
    again.load()
    assert again.load_notes == [f"{EXAMPLE}: cached"]
    again.close()


def test_an_index_that_stays_broken_is_a_corpus_error_not_a_loop(
    corpus_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    builds: list[Path] = []
    real_build = index_module._build

    def build(*args: object) -> index_module.Manifest:
        builds.append(args[1])  # type: ignore[arg-type]
        return real_build(*args)  # type: ignore[arg-type]

    def never_opens(folder: Path, manifest: index_module.Manifest) -> None:
        raise ValueError("unreadable")

    monkeypatch.setattr(index_module, "_build", build)
    monkeypatch.setattr(index_module, "_open_checked", never_opens)
    with pytest.raises(CorpusError, match="does not open even after a rebuild") as info:
        open_index(source_for(corpus_dir), cache_dir)
    assert "LODESTAR_CACHE_DIR" in str(info.value)
    assert len(builds) == 1


_RACER = """
import json, sys
from pathlib import Path
from lodestar.docs.service import DocsService

print("ready", flush=True)
sys.stdin.readline()  # the barrier: the parent releases both processes at once
service = DocsService([sys.argv[1]], Path(sys.argv[2]), bundled=False)
service.load()
hits = service.search("semantic recall").hits
print(json.dumps({"notes": service.load_notes, "failures": service.failures, "paths": [h.path for h in hits]}))
"""


def test_two_processes_heal_one_damaged_index_once(corpus_dir: Path, cache_dir: Path, tmp_path: Path) -> None:
    DocsService([str(corpus_dir)], cache_dir, bundled=False).load()
    DAMAGE["truncated segment"](index_dir(cache_dir, source_for(corpus_dir)))
    outputs = [(out, err) for _, out, err in run_racers(tmp_path, _RACER, [str(corpus_dir), str(cache_dir)])]
    results = [json.loads(out) for out, _ in outputs]
    assert all(r["failures"] == {} and r["paths"][0] == "docs/agents/memory.md" for r in results)
    assert sorted(n for r in results for n in r["notes"]) == [f"{EXAMPLE}: cached", f"{EXAMPLE}: rebuilt"]
    assert sum(err.count("rebuilding the index") for _, err in outputs) == 1
    assert [p.name for p in (cache_dir / "indexes").iterdir() if p.name.startswith(".")] == []


# A cache that cannot be written


def _block_cache(cache_dir: Path) -> None:
    """Makes the cache unwritable in a way that binds root too: its indexes folder is a file."""
    cache_dir.mkdir(parents=True)
    (cache_dir / "indexes").write_text("not a folder", "utf-8")


_UNWRITABLE = """
import json, sys
from pathlib import Path
from lodestar.docs.limits import DocsLimits
from lodestar.docs.service import DocsService

limits = DocsLimits(child_build_bytes=int(sys.argv[4]))
service = DocsService(sys.argv[1:3], Path(sys.argv[3]), bundled=False, limits=limits)
service.load()
print(json.dumps({
    "notes": service.load_notes,
    "failures": service.failures,
    "hits": [c for h in service.search("semantic recall").hits for c in (h.corpus, *h.also_in)],
    "roots": [str(c.source.root) for c in service.corpora.values()],
}), flush=True)
"""


@pytest.mark.parametrize("child_build_bytes", [0, 2**30], ids=["child build", "inline build"])
def test_an_unwritable_cache_falls_back_to_a_temporary_one(
    child_build_bytes: int, corpus_dir: Path, cache_dir: Path, tmp_path: Path
) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "pkg", "1.0.0")
    _block_cache(cache_dir)
    script = tmp_path / "unwritable.py"
    script.write_text(_UNWRITABLE, "utf-8")
    command = [sys.executable, str(script), str(corpus_dir), str(tgz), str(cache_dir), str(child_build_bytes)]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["failures"] == {}
    built = "built in a child process" if child_build_bytes == 0 else "built"
    assert result["notes"] == [f"{EXAMPLE}: {built}", f"pkg: {built}"]
    assert sorted(result["hits"]) == [EXAMPLE, "pkg"]
    assert proc.stderr.count("is not writable") == 1
    package_root = Path(result["roots"][1])
    assert not package_root.is_relative_to(cache_dir)
    assert not package_root.exists()  # the temporary cache went away with the process


def test_a_fresh_index_in_a_cache_that_cannot_be_written_is_used_as_it_is(
    corpus_dir: Path, cache_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = source_for(corpus_dir)
    seed = tmp_path / "seed"  # built elsewhere: this process has not yet found the cache writable
    open_index(source, seed).index.close()
    shutil.copytree(index_dir(seed, source), index_dir(cache_dir, source))
    manifest = index_dir(cache_dir, source) / "manifest.json"
    before = manifest.read_bytes()
    (cache_dir / "packages").write_text("not a folder", "utf-8")
    caplog.set_level(logging.WARNING)

    assert open_index(source, cache_dir).built == "cached"
    assert not [r for r in caplog.records if "not writable" in r.getMessage()]

    (corpus_dir / "docs" / "overview.md").write_text("# Overview\n\nPangolin.\n", "utf-8")
    opened = open_index(source, cache_dir)
    assert opened.built == "built"  # into the temporary cache, which has no index yet
    assert [r for r in caplog.records if "not writable" in r.getMessage()]
    assert manifest.read_bytes() == before
    assert open_index(source, cache_dir).built == "cached"  # found again in the temporary cache
