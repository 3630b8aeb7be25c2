"""Turn a `--corpus [NAME=]SOURCE` spec into a local markdown tree: a folder, an npm tarball, an npm package."""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from lodestar.docs import npm
from lodestar.docs.cache import package_dir
from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits
from lodestar.docs.npm import package_corpus_name
from lodestar.docs.tarball import extract_docs, package_json

log = logging.getLogger(__name__)

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
TARBALL_SUFFIXES = (".tgz", ".tar.gz")  # a source ending so is an npm tarball


@dataclass(frozen=True, slots=True)
class CorpusSource:
    name: str
    source: str
    root: Path
    version: str | None = None  # package version; None means "content hash of the files"


def read_text(root: Path, relative: str, max_bytes: int | None = None) -> str:
    """A page exactly as stored (no newline translation), so offsets and paging round-trip.

    Raises OSError for anything but a regular file (opening a FIFO would block) or one over `max_bytes`."""

    def open_regular(path: str, flags: int) -> int:
        fd = os.open(path, flags | getattr(os, "O_NONBLOCK", 0))
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or (max_bytes is not None and st.st_size > max_bytes):
            os.close(fd)
            why = "not a regular file" if not stat.S_ISREG(st.st_mode) else f"larger than {max_bytes} bytes"
            raise OSError(errno.EINVAL, why, path)
        return fd

    with open(root / relative, encoding="utf-8", errors="replace", newline="", opener=open_regular) as handle:
        return handle.read()


def split_spec(spec: str) -> tuple[str | None, str]:
    """`mastra=npm:@mastra/x` -> ("mastra", "npm:@mastra/x"); a bare source has no name."""
    name, sep, rest = spec.partition("=")
    if sep and _NAME.match(name):
        return name, rest.strip()
    return None, spec.strip()


def is_valid_name(name: str) -> bool:
    return bool(_NAME.match(name))


def check_name(name: str) -> str:
    if not is_valid_name(name):
        raise CorpusError(
            f"invalid corpus name {name!r}: use letters, digits, '.', '_' or '-', as in --corpus mydocs=./docs"
        )
    return name


def provisional_name(spec: str) -> str | None:
    """The name a corpus will have, known before it is fetched; None for a tarball without NAME=, whose
    name is in its package.json."""
    name, source = split_spec(spec)
    if name:
        return name
    if source.startswith("npm:"):
        package = npm.package_name(source.removeprefix("npm:"))
        return package_corpus_name(package) if package else spec
    if source.endswith(TARBALL_SUFFIXES):
        return None
    return _folder_name(Path(source).expanduser().resolve())


Stage = Callable[[str], None]  # told "fetching" or "unpacking" before a slow step


def resolve(
    spec: str, cache_dir: Path, limits: DocsLimits | None = None, on_stage: Stage | None = None
) -> CorpusSource:
    limits = limits or DocsLimits()
    name, source = split_spec(spec)
    stage = on_stage or (lambda _: None)
    if not source:
        raise CorpusError(f"empty corpus source in {spec!r}: give a folder, a .tgz file or npm:PACKAGE")
    if source.startswith("npm:"):
        package, version, folder = npm.fetch(source.removeprefix("npm:"), cache_dir, limits, lambda: stage("fetching"))
        corpus = CorpusSource(package_corpus_name(package), source, folder / "docs", version)
    elif source.endswith(TARBALL_SUFFIXES):
        corpus = _from_tarball(Path(source).expanduser(), cache_dir, limits, stage)
    else:
        corpus = _from_dir(Path(source).expanduser())
    final = check_name(name or corpus.name)
    return CorpusSource(name=final, source=source, root=corpus.root, version=corpus.version)


def _from_dir(path: Path) -> CorpusSource:
    if not path.is_dir():
        what = "is not a folder" if path.exists() else "does not exist"
        raise CorpusError(
            f"corpus source {str(path)!r} {what}: give a folder of markdown files, a .tgz file or npm:PACKAGE"
        )
    root = path.resolve()
    return CorpusSource(name=_folder_name(root), source=str(path), root=root)


def _folder_name(root: Path) -> str:
    """`.docs` or `My Docs` make no valid name as they are: `docs`, `My-Docs`."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip(".-_") or "docs"


def _from_tarball(path: Path, cache_dir: Path, limits: DocsLimits, stage: Stage) -> CorpusSource:
    if not path.is_file():
        raise CorpusError(f"npm tarball {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    target = package_dir(cache_dir, digest)
    if not (target / ".complete").exists():
        stage("unpacking")
        extract_docs(path, target, limits)
    meta = package_json(target)
    return CorpusSource(
        name=package_corpus_name(str(meta.get("name") or path.stem)),
        source=str(path),
        root=target / "docs",
        version=str(meta.get("version") or digest),
    )
