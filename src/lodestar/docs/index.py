"""The on-disk Whoosh index of one corpus and its manifest (the catalog of pages and sections).

An index lives in the user cache under a key derived from the corpus root. The manifest records each
file's size, mtime and content hash, so an unchanged corpus opens without reading a page, a touched but
unchanged file costs one hash, and changed files are re-indexed one by one. Writers take a file lock;
full builds go to a temporary folder renamed into place, so concurrent processes never see half an index.
An index that will not open is rebuilt once, under the lock; a cache that cannot be written falls back to
a temporary one (cache.writable_cache).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel
from whoosh import index as whoosh_index
from whoosh.codec import whoosh3
from whoosh.fields import ID, KEYWORD, STORED, TEXT, Schema

from lodestar import __version__
from lodestar.docs.analysis import analyzer
from lodestar.docs.cache import cache_roots, writable_cache
from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits
from lodestar.docs.progress import Progress
from lodestar.docs.scan import scan
from lodestar.docs.sources import CorpusSource, read_text

if TYPE_CHECKING:  # sections imports markdown-it, which only indexing needs: opening a cached index does not
    from lodestar.docs.sections import Page

log = logging.getLogger(__name__)

SCHEMA_VERSION = f"5/{__version__}"  # analysis may change between releases: rebuild on upgrade
MANIFEST = "manifest.json"


class SectionRecord(BaseModel):
    heading: str
    level: int
    anchor: str


class DocRecord(BaseModel):
    size: int
    mtime_ns: int
    sha: str
    title: str
    sections: list[SectionRecord]


class Manifest(BaseModel):
    schema_version: str = SCHEMA_VERSION
    files: dict[str, DocRecord] = {}

    @property
    def content_hash(self) -> str:
        digest = hashlib.sha256()
        for path in sorted(self.files):
            digest.update(f"{path}\0{self.files[path].sha}\n".encode())
        return digest.hexdigest()[:12]


def _cached_length_reader(self: whoosh3.W3PerDocReader, fieldname: str, column: object) -> object:
    """Whoosh's reader caches found length columns but stats the disk again for each missing one,
    once per posting of an unscored field while a segment is written: a third of a full build."""
    try:
        return self._readers[fieldname]
    except KeyError:
        reader = self.column_reader(fieldname, column) if self.has_column(fieldname) else None
        self._readers[fieldname] = reader
        return reader


whoosh3.W3PerDocReader._cached_reader = _cached_length_reader


def schema() -> Schema:
    text = analyzer()
    return Schema(
        path=ID(stored=True, sortable=True),
        ordinal=STORED(),
        title=TEXT(analyzer=text, phrase=False),
        headings=TEXT(analyzer=text, phrase=False),
        body=TEXT(analyzer=text, phrase=False, stored=True, spelling=True),
        code=TEXT(analyzer=text, phrase=False),
        pathtext=TEXT(analyzer=text, phrase=False),
        names=KEYWORD(),  # identifier keys (analysis.identifier_key) of the headings that are code names
    )


@dataclass(slots=True)
class OpenedIndex:
    index: whoosh_index.Index
    manifest: Manifest
    built: str  # "cached", "updated N", "built"


def index_dir(cache_dir: Path, source: CorpusSource) -> Path:
    key = hashlib.sha256(str(source.root).encode()).hexdigest()[:12]
    return cache_dir / "indexes" / f"{source.name}-{key}"


def open_index(
    source: CorpusSource, cache_dir: Path, limits: DocsLimits | None = None, inline_limit: int | None = None
) -> OpenedIndex | None:
    """Open the corpus index, building or updating it first when the files changed; heal a damaged one.

    With `inline_limit`, returns None instead of reading more bytes than that in this process."""
    limits = limits or DocsLimits()
    stats = scan(source.root, limits.max_page_bytes)
    if not stats:
        raise CorpusError(f"corpus {source.name!r} has no .md or .mdx files under {source.root}")
    for root in cache_roots(cache_dir):
        opened = _open_cached(index_dir(root, source), stats)
        if opened is not None:
            return opened
    folder = index_dir(writable_cache(cache_dir), source)
    manifest, _ = _load_manifest(folder)
    if manifest is not None and _unchanged(manifest, stats):
        manifest = None  # its index did not open: it will be rebuilt
    if inline_limit is not None and _pending_bytes(manifest, stats) > inline_limit:
        return None
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _locked(folder.with_name(f"{folder.name}.lock")):
        return _open_locked(source, folder, stats, limits)


def _open_cached(folder: Path, stats: dict[str, os.stat_result]) -> OpenedIndex | None:
    """The index as it is, without the lock, when it matches the files and opens."""
    manifest, _ = _load_manifest(folder)
    if manifest is None or not _unchanged(manifest, stats):
        return None
    try:
        return OpenedIndex(_open_checked(folder, manifest), manifest, "cached")
    except Exception:  # damaged, or replaced by another process meanwhile: looked at again under the lock
        return None


def _open_locked(
    source: CorpusSource, folder: Path, stats: dict[str, os.stat_result], limits: DocsLimits
) -> OpenedIndex:
    """Update the index, or build it when there is none or it is damaged (once: a second failure is an error)."""
    manifest, why = _load_manifest(folder)
    if manifest is not None:
        try:
            changed = _update(source, folder, manifest, stats, limits)
            status = f"updated {changed}" if changed else "cached"
            return OpenedIndex(_open_checked(folder, manifest), manifest, status)
        except Exception as exc:
            why = f"it is damaged ({type(exc).__name__}: {exc})"
    if why:
        log.warning("rebuilding the index of %s in %s: %s", source.name, folder, why)
    manifest = _build(source, folder, stats, limits)
    try:
        index = _open_checked(folder, manifest)
    except Exception as exc:
        raise CorpusError(
            f"the index of {source.name} in {folder} does not open even after a rebuild ({type(exc).__name__}: "
            f"{exc}); delete that folder, or set LODESTAR_CACHE_DIR to another one"
        ) from exc
    return OpenedIndex(index, manifest, "rebuilt" if why else "built")


def _open_checked(folder: Path, manifest: Manifest) -> whoosh_index.Index:
    """Open the index and read what every search needs, so a damaged one fails here, where it can be rebuilt."""
    index = whoosh_index.open_dir(folder)
    with index.reader() as reader:
        sections = sum(len(doc.sections) for doc in manifest.files.values())
        if reader.doc_count() != sections:
            raise ValueError(f"it holds {reader.doc_count()} sections, its manifest {sections}")
        missing = manifest.files.keys() - set(reader.column_reader("path")) if sections else set()
        if missing:
            raise ValueError(f"{len(missing)} pages of the manifest are not in it")
    return index


def _pending_bytes(manifest: Manifest | None, stats: dict[str, os.stat_result]) -> int:
    """Bytes an update would read: every file for a build, else the added and changed ones."""
    if manifest is None:
        return sum(st.st_size for st in stats.values())
    files = manifest.files
    return sum(st.st_size for p, st in stats.items() if p not in files or files[p].mtime_ns != st.st_mtime_ns)


def _load_manifest(folder: Path) -> tuple[Manifest | None, str]:
    """The manifest, or None and why the index must be built again ("" when that is no damage)."""
    try:
        manifest = Manifest.model_validate_json((folder / MANIFEST).read_bytes())
    except FileNotFoundError:
        return None, "its manifest is missing" if folder.is_dir() else ""
    except OSError as exc:
        return None, f"its manifest cannot be read ({exc.strerror})"
    except ValueError:
        return None, "its manifest is damaged"
    if manifest.schema_version != SCHEMA_VERSION:
        return None, ""  # made by another release: rebuilt without a warning
    return manifest, ""


def _save_manifest(folder: Path, manifest: Manifest) -> None:
    tmp = folder / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(manifest.model_dump_json(), "utf-8")
    os.replace(tmp, folder / MANIFEST)


def _unchanged(manifest: Manifest, stats: dict[str, os.stat_result]) -> bool:
    files = manifest.files
    return files.keys() == stats.keys() and all(
        files[p].size == st.st_size and files[p].mtime_ns == st.st_mtime_ns for p, st in stats.items()
    )


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    with open(path, "a+b") as handle:
        _lock(handle.fileno())
        try:
            yield
        finally:
            _unlock(handle.fileno())


if sys.platform != "win32":
    import fcntl

    def _lock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_EX)

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)

else:  # Windows
    import msvcrt

    def _lock(fd: int) -> None:
        while True:
            try:
                msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                return
            except OSError:
                continue

    def _unlock(fd: int) -> None:
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)


def _build(source: CorpusSource, folder: Path, stats: dict[str, os.stat_result], limits: DocsLimits) -> Manifest:
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    try:
        index = whoosh_index.create_in(staging, schema())
        manifest = Manifest()
        _write(source, index, manifest, sorted(stats), stats, limits.max_page_bytes, replace=False)
        _save_manifest(staging, manifest)
        index.close()
        if folder.exists():
            trash = folder.with_name(f".{folder.name}.old-{os.getpid()}")
            folder.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _update(
    source: CorpusSource, folder: Path, manifest: Manifest, stats: dict[str, os.stat_result], limits: DocsLimits
) -> int:
    removed = [p for p in manifest.files if p not in stats]
    changed: list[str] = []
    for path, st in stats.items():
        old = manifest.files.get(path)
        if old is not None and old.size == st.st_size and old.mtime_ns == st.st_mtime_ns:
            continue
        if old is not None and old.sha == _read_sha(source.root, path, limits.max_page_bytes):
            old.mtime_ns, old.size = st.st_mtime_ns, st.st_size  # touched, same content
            continue
        changed.append(path)
    if removed or changed:
        index = whoosh_index.open_dir(folder)
        for path in removed:
            del manifest.files[path]
        _write(source, index, manifest, changed + removed, stats, limits.max_page_bytes, replace=True)
        index.close()
    _save_manifest(folder, manifest)
    return len(removed) + len(changed)


def _write(
    source: CorpusSource,
    index: whoosh_index.Index,
    manifest: Manifest,
    paths: list[str],
    stats: dict[str, os.stat_result],
    max_page_bytes: int,
    *,
    replace: bool,
) -> None:
    progress = Progress(f"indexing {source.name}", len(paths))
    writer = index.writer(limitmb=256)
    try:
        for path in paths:
            if replace:
                writer.delete_by_term("path", path)
            text = _read(source.root, path, max_page_bytes) if path in stats else None
            if text is not None:
                page = _parse(path, text)
                manifest.files[path] = _record(page, text, stats[path])
                _add_sections(writer, path, page)
            else:
                manifest.files.pop(path, None)
            progress.advance()
        writer.commit()
    except BaseException:
        writer.cancel()
        raise
    finally:
        progress.close()


def _read(root: Path, path: str, max_page_bytes: int) -> str | None:
    """The page, or None with a warning when it vanished, became unreadable or grew since the scan."""
    try:
        return read_text(root, path, max_page_bytes)
    except OSError as exc:
        log.warning("skipping %r: it cannot be read any more (%s)", path, exc.strerror or exc)
        return None


def _read_sha(root: Path, path: str, max_page_bytes: int) -> str | None:
    try:
        return _sha(read_text(root, path, max_page_bytes))
    except OSError:
        return None  # indexed again, where the failure is reported


def _parse(path: str, text: str) -> Page:
    """A page the markdown parser chokes on is still indexed, as one section of plain text."""
    from lodestar.docs.sections import Page, Section, parse_page

    title = _title_from_path(path)
    try:
        return parse_page(text, fallback_title=title)
    except Exception:
        log.warning("indexing %s as plain text: its markdown could not be parsed", path, exc_info=True)
        return Page(title, "", [Section(title, 0, "", [title], 0, len(text), [text])])


def _add_sections(writer: object, path: str, page: Page) -> None:
    pathtext = path.rsplit(".", 1)[0].replace("/", " ").replace("-", " ").replace("_", " ")
    for ordinal, section in enumerate(page.sections):
        writer.add_document(  # type: ignore[attr-defined]
            path=path,
            ordinal=ordinal,
            title=page.title,
            headings=" ".join(section.path),
            body=section.text,
            code=section.code_text,
            pathtext=pathtext,
            names=" ".join(section.names),
        )


def _record(page: Page, text: str, st: os.stat_result) -> DocRecord:
    return DocRecord(
        size=st.st_size,
        mtime_ns=st.st_mtime_ns,
        sha=_sha(text),
        title=page.title,
        sections=[SectionRecord(heading=s.heading, level=s.level, anchor=s.anchor) for s in page.sections],
    )


def _sha(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


def _title_from_path(path: str) -> str:
    return path.rsplit("/", 1)[-1].rsplit(".", 1)[0].replace("-", " ").replace("_", " ").capitalize()
