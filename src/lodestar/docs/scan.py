"""Finding the pages of a corpus folder: regular markdown files whose names survive a round trip.

Ordinary folders hold editor lock files, dangling links, FIFOs and odd names; each is left out with one
warning, so a corpus never fails or hangs on them (opening a FIFO blocks forever: only stat is used here).
"""

from __future__ import annotations

import logging
import os
import stat
import unicodedata
from pathlib import Path

from lodestar.docs.limits import env_var

skip_log = logging.getLogger("lodestar.docs.skipped")  # files left out of a corpus; see skip

DOC_SUFFIXES = (".md", ".mdx")
SKIP_DIRS = frozenset({"node_modules", "__pycache__"})
_BAD_NAME_CHARS = frozenset({"Cc", "Cs", "Zl", "Zp"})  # controls, undecodable bytes, line breaks
_MAX_SKIPPED = 10_000  # remembered warnings (see skip): forgotten all at once past this many
_skipped: set[tuple[str, str]] = set()


def scan(root: Path, max_page_bytes: int) -> dict[str, os.stat_result]:
    """Markdown files below root, by forward-slash relative path.

    Whatever cannot be read back as a page is skipped with a warning: links that leave root or lead nowhere,
    FIFOs (opening one blocks forever), devices, unreadable or oversized files, names a path cannot carry."""
    found: dict[str, os.stat_result] = {}
    real_root = root.resolve()
    top = str(root)

    def unreadable(exc: OSError) -> None:
        skip(exc.filename, f"the folder cannot be read ({exc.strerror})")

    # Plain strings, not Path objects: a scan runs on every start, and pathlib doubles its cost on 1,000 pages.
    for folder, dirs, files in os.walk(top, onerror=unreadable):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in SKIP_DIRS)
        within = os.path.relpath(folder, top).replace(os.sep, "/")
        prefix = "" if within == "." else within + "/"
        for name in files:
            if not name.endswith(DOC_SUFFIXES):
                continue
            full = os.path.join(folder, name)
            relative = prefix + name
            found_stat = _name_problem(relative) or _page_stat(full, real_root, max_page_bytes)
            if isinstance(found_stat, str):
                skip(full, found_stat)
            else:
                found[relative] = found_stat
    return found


def _name_problem(relative: str) -> str | None:
    """Why a path could not round-trip through search hits, read_doc and one-entry-per-line text."""
    if "\\" in relative:
        return "its name has a backslash, which read_doc takes for a folder separator"
    if relative != relative.strip():
        return "its name starts or ends with white space"
    if not relative.isprintable() and any(unicodedata.category(c) in _BAD_NAME_CHARS for c in relative):
        return "its name has control characters, line breaks or bytes that are not UTF-8"
    return None


def _page_stat(full: str, real_root: Path, max_page_bytes: int) -> os.stat_result | str:
    """The stat of a page that can be indexed, or why it cannot."""
    try:
        st = os.lstat(full)
    except OSError as exc:
        return f"it cannot be read ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        try:
            inside = Path(full).resolve(strict=True).is_relative_to(real_root)
            st = os.stat(full)
        except (OSError, RuntimeError) as exc:  # RuntimeError: a symlink loop, before Python 3.13
            return f"it is a link that leads nowhere ({getattr(exc, 'strerror', None) or exc})"
        if not inside:
            return "it links outside the corpus root"
    if not stat.S_ISREG(st.st_mode):
        return "it is not a regular file (a FIFO, device or socket)"
    if st.st_size > max_page_bytes:
        return (
            f"{st.st_size} bytes is over max_page_bytes={max_page_bytes} (set {env_var('max_page_bytes')} to index it)"
        )
    if not os.access(full, os.R_OK):
        return "permission denied"
    return st


def skip(path: object, why: str) -> None:
    """One warning per file and reason in a process, however often the corpus is scanned again."""
    key = (str(path), why)
    if key in _skipped:
        return
    if len(_skipped) >= _MAX_SKIPPED:
        _skipped.clear()
    _skipped.add(key)
    skip_log.warning("skipping %r: %s", str(path), why)
