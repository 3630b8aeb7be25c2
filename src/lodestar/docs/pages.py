"""Parsed pages kept for read_doc, so paging through a 20 MB page parses and hashes it once, not per part.

The cache is bounded by the memory its pages hold (`page_cache_bytes`); the least recently read page goes
first. An entry is tied to its file's stat (size, mtime, ctime, inode), so a changed file is parsed again on
its next read. Reads run on worker threads: concurrent reads of one uncached page wait for a single parse,
and pages over 1 MiB are read and parsed one at a time, since a parse briefly holds about 13 times the
page's size in markdown tokens (a 20 MB page: some 250 MB for ten seconds).
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from bisect import bisect_left, bisect_right
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from contextlib import nullcontext
from dataclasses import dataclass
from itertools import accumulate
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lodestar.docs.lru import LRU
from lodestar.docs.models import Heading
from lodestar.docs.sources import read_text

if TYPE_CHECKING:  # sections imports markdown-it: loaded by the first read, not at start-up
    from lodestar.docs.sections import Section

SECTION_BYTES = 512  # a kept section's objects: heading, anchor, path, offsets
BIG_PAGE_BYTES = 1024 * 1024  # larger pages are read and parsed one at a time
HEADING_CHARS = 34  # a heading's JSON besides its text and anchor: {"level":2,"text":"","anchor":""},

Stamp = tuple[int, int, int, int]
_big_page = threading.Lock()


def stamp(st: os.stat_result) -> Stamp:
    """What changes when a file is rewritten; ctime and inode too, since npm tarballs give every file one mtime."""
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino


@dataclass(frozen=True, slots=True)
class ParsedPage:
    text: str
    title: str
    sections: list[Section]  # bodies dropped: reading needs headings and offsets only
    headings: list[Section]  # the sections with a heading (level 1-3), in page order
    heading_starts: list[int]
    heading_costs: list[int]  # heading_costs[k]: characters the first k headings take in a result
    digest: str  # names this version of the page in cursors
    size: int  # bytes held, for the cache bound

    @classmethod
    def parse(cls, text: str, fallback_title: str) -> ParsedPage:
        from lodestar.docs.sections import parse_page

        page = parse_page(text, fallback_title)
        for section in page.sections:
            section.body, section.code = [], []
        headings = [s for s in page.sections if s.level]
        return cls(
            text=text,
            title=page.title,
            sections=page.sections,
            headings=headings,
            heading_starts=[s.start for s in headings],
            heading_costs=[0, *accumulate(len(s.heading) + len(s.anchor) + HEADING_CHARS for s in headings)],
            digest=hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()[:12],
            size=sys.getsizeof(text) + SECTION_BYTES * len(page.sections),
        )

    def headings_near(self, offset: int, budget: int) -> tuple[list[Heading], int]:
        """The headings that fit in `budget` characters, and the characters they take: all of them, or a run
        from the section holding `offset` onwards (backwards too at the end of the page): what is being read
        and what follows it."""
        costs, count = self.heading_costs, len(self.headings)
        first, last = 0, count
        if costs[count] > budget:
            first = max(0, bisect_right(self.heading_starts, offset) - 1)
            last = bisect_right(costs, costs[first] + budget) - 1
            if last == count:
                first = bisect_left(costs, costs[count] - budget)
        chosen = [Heading(level=s.level, text=s.heading, anchor=s.anchor) for s in self.headings[first:last]]
        return chosen, costs[last] - costs[first]


def read_page(root: Path, relative: str, size: int, max_bytes: int) -> ParsedPage:
    """`size` is the stat's; `max_bytes` is checked again on the open file, which may have grown since."""
    with _big_page if size > BIG_PAGE_BYTES else nullcontext():
        return ParsedPage.parse(read_text(root, relative, max_bytes), PurePosixPath(relative).stem)


class PageCache:
    """Least recently read pages first out, by bytes held; one parse per page version even under concurrency."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.lock = threading.Lock()
        self.kept: LRU[tuple[Stamp, ParsedPage]] = LRU(max_bytes, lambda entry: entry[1].size)
        self.loading: dict[tuple[Path, Stamp], Future[ParsedPage]] = {}

    @property
    def entries(self) -> OrderedDict[Hashable, tuple[Stamp, ParsedPage]]:
        return self.kept.entries

    @property
    def held(self) -> int:
        """Bytes the kept pages hold."""
        return self.kept.total

    def get(self, file: Path, version: Stamp, load: Callable[[], ParsedPage]) -> ParsedPage:
        """The kept page for this file version, else `load()`'s, run once while other callers wait for it."""
        key = (file, version)
        with self.lock:
            entry = self.kept.get(file)
            if entry is not None and entry[0] == version:
                return entry[1]
            future = self.loading.get(key)
            leader = future is None
            if future is None:
                future = self.loading[key] = Future()
        if not leader:
            return future.result()
        try:
            page = load()
        except BaseException as exc:
            with self.lock:
                del self.loading[key]
            future.set_exception(exc)
            raise
        with self.lock:
            del self.loading[key]
            self._keep(file, version, page)
        future.set_result(page)
        return page

    def _keep(self, file: Path, version: Stamp, page: ParsedPage) -> None:
        if page.size > self.max_bytes:  # read, but not kept: it would push out every other page
            self.kept.discard(file)
        else:
            self.kept.put(file, (version, page))
