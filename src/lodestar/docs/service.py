"""DocsService: the corpora a process serves, and the search, read and list operations over them.

The MCP tools and the CLI both call this class. Loading (fetching packages, opening or building
indexes) can run on a background thread so a server answers `initialize` before its indexes are open.
"""

from __future__ import annotations

import builtins
import difflib
import logging
import re
import threading
import time
import unicodedata
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lodestar import __version__
from lodestar.docs.analysis import correctable, query_words
from lodestar.docs.errors import CorpusError, CorpusLoading, DocsError
from lodestar.docs.limits import MIB, DocsLimits, env_var
from lodestar.docs.merge import Ranked, merge
from lodestar.docs.models import (
    CorporaResult,
    CorpusInfo,
    DocPage,
    HealthReport,
    ListEntry,
    ListResult,
    SearchHit,
    SearchResult,
)
from lodestar.docs.pages import PageCache, ParsedPage, read_page, stamp
from lodestar.docs.paging import CHARS_PER_TOKEN, Cursor, cut
from lodestar.docs.sources import CorpusSource, check_name, provisional_name, resolve, split_spec

if TYPE_CHECKING:  # the index modules import Whoosh and markdown-it: loaded on the loading thread
    from lodestar.docs.index import Manifest
    from lodestar.docs.search import CorpusSearcher

log = logging.getLogger(__name__)

BUNDLED = "lodestar"
FOOTER_LINE = 64  # the words around the cursor in a partial read's text body
HEADINGS_SHARE = 4  # a headings list too long for the answer gets 1/4 of max_tokens
ANCHORS_IN_ERROR = 50  # anchors an unknown heading's error lists
MERGE_WINDOWS = 8  # a merged search asks each corpus for up to 8x the hits wanted, when pages fold together
LOAD_THREADS = 4  # corpora fetched, unpacked or indexed at once
OPENING_WAIT_S = 5.0  # a corpus still opening after this long is treated as slow: requests stop waiting on it


def bundled_root() -> Path:
    """The wheel carries the corpus inside the package; a source checkout keeps it at the top."""
    packaged = Path(__file__).resolve().parents[1] / "docs_corpus"
    return packaged if packaged.is_dir() else Path(__file__).resolve().parents[3] / "docs_corpus"


@dataclass(slots=True)
class Corpus:
    source: CorpusSource
    manifest: Manifest
    searcher: CorpusSearcher

    @property
    def name(self) -> str:
        return self.source.name

    @property
    def version(self) -> str:
        return self.source.version or self.manifest.content_hash

    def info(self) -> CorpusInfo:
        files = self.manifest.files
        sections = sum(len(doc.sections) for doc in files.values())
        return CorpusInfo(
            name=self.name, version=self.version, source=self.source.source, documents=len(files), sections=sections
        )


@dataclass(slots=True)
class PageText:
    corpus: Corpus
    path: str
    parsed: ParsedPage


class DocsService:
    """Corpora load side by side; each is listed as `loading`, then `ready` or `failed`. A request needing
    a corpus that is fetched or indexed raises CorpusLoading at once (waiting is the caller's choice, see
    docs.waiting); one that is merely opening a cached index is waited for, briefly."""

    def __init__(
        self, specs: list[str], cache_dir: Path, *, bundled: bool = True, limits: DocsLimits | None = None
    ) -> None:
        self.specs = list(specs)
        self.limits = limits or DocsLimits.from_env()
        self.cache_dir = cache_dir
        self.bundled = bundled
        self.corpora: dict[str, Corpus] = {}
        self.failed: dict[str, CorpusInfo] = {}  # corpora that could not be loaded, by name
        self.loading: dict[str, CorpusInfo] = {}  # corpora being loaded, by (provisional) name
        self.ready = threading.Event()  # set once every corpus is ready or failed
        self.changed = threading.Condition()  # notified whenever a corpus changes state
        self._unnamed: set[str] = set()  # loading corpora listed under their spec: their name is not known yet
        self._started = time.monotonic()
        self._claimed = False  # load() or load_in_background() was called
        self._order: list[str] = []  # corpus names in the order given
        self._specs: dict[str, str | None] = {}  # corpus name -> its spec (None: bundled), to load it again
        self.load_notes: list[str] = []
        self.spec_names: dict[str, str] = {}  # --corpus spec -> corpus name
        self.pages = PageCache(self.limits.page_cache_bytes)

    # Loading

    def load(self) -> None:
        """Load every corpus, side by side; a failing one is logged and listed with its error."""
        self._load(self._claim())

    def load_in_background(self, then: Callable[[], None] | None = None) -> threading.Thread:
        """Load on a thread, calling `then` once every corpus is ready or failed. The corpora are listed as
        loading before this returns, so a request made at once waits for them rather than finding none."""
        claims = self._claim()

        def load() -> None:
            self._load(claims)
            if then is not None:
                then()

        thread = threading.Thread(target=load, name="lodestar-docs-load", daemon=True)
        thread.start()
        return thread

    @property
    def started(self) -> bool:
        """Whether load() or load_in_background() was called."""
        return self._claimed

    def _load(self, claims: list[tuple[str, str | None]]) -> None:
        try:
            if claims:
                with ThreadPoolExecutor(min(LOAD_THREADS, len(claims)), thread_name_prefix="lodestar-load") as pool:
                    list(pool.map(lambda claim: self._load_one(*claim), claims))
            rank = {name: i for i, name in enumerate(self._order)}
            self.load_notes.sort(key=lambda note: rank.get(note.partition(":")[0], len(rank)))
        finally:
            self.ready.set()
            with self.changed:
                self.changed.notify_all()

    def _claim(self) -> list[tuple[str, str | None]]:
        """Lists each corpus as loading, under the name it will have, in the order given: of two specs
        that would take one name, the first keeps it."""
        claims: list[tuple[str, str | None]] = [(BUNDLED, None)] if self.bundled else []
        for spec in self.specs:
            name = provisional_name(spec)
            if name is None:  # listed under its spec until its package.json names it
                name = spec
                self._unnamed.add(spec)
            if name == BUNDLED or any(name == taken for taken, _ in claims):
                self._fail(spec, split_spec(spec)[1], f"corpus name {name!r} is taken: give another with NAME={spec}")
                continue
            claims.append((name, spec))
        with self.changed:
            if self._claimed:
                raise RuntimeError("this DocsService is already loaded or loading: call load() once")
            self._claimed = True
            self._started = time.monotonic()
            self._order = [name for name, _ in claims]
            self._specs = dict(claims)
            for name, claimed in claims:
                source = "bundled" if claimed is None else split_spec(claimed)[1]
                self.loading[name] = CorpusInfo(
                    name=name, version="", source=source, documents=0, sections=0, status="loading", stage="opening"
                )
        return claims

    def _load_one(self, name: str, spec: str | None) -> str | CorpusInfo:
        """Loads one claimed corpus: its load note, or its entry in `failed`."""
        raw = "bundled" if spec is None else split_spec(spec)[1]
        try:
            if spec is None:
                source = CorpusSource(name=BUNDLED, source="bundled", root=bundled_root(), version=__version__)
            else:
                source = resolve(spec, self.cache_dir, self.limits, lambda stage: self._stage(name, stage))
                self._rename(name, source.name, spec)
                name = source.name
            return self._open(source, lambda stage: self._stage(name, stage))
        except CorpusError as exc:
            return self._fail(name, raw, str(exc))
        except Exception as exc:  # one bad corpus must not keep the others from loading
            log.exception("loading corpus %s", name)
            return self._fail(name, raw, f"unexpected {type(exc).__name__}: {exc}; see the server log")

    def _stage(self, name: str, stage: str) -> None:
        with self.changed:
            if name in self.loading:
                self.loading[name] = self.loading[name].model_copy(update={"stage": stage})
                self.changed.notify_all()

    def _rename(self, claimed: str, name: str, spec: str) -> None:
        """A tarball's name is known once its package.json is read; it must not be one already in use."""
        with self.changed:
            if name != claimed:
                if name in self.loading or name in self.corpora or name in self.failed:
                    raise CorpusError(f"corpus name {name!r} is taken: give another with NAME={split_spec(spec)[1]}")
                self.loading[name] = self.loading.pop(claimed).model_copy(update={"name": name})
                self._unnamed.discard(claimed)
                self._order = [name if n == claimed else n for n in self._order]
                self._specs[name] = self._specs.pop(claimed)
                self.changed.notify_all()
            self.spec_names[spec] = name

    def _open(self, source: CorpusSource, on_stage: Callable[[str], None] | None = None) -> str:
        """Open (building or updating) one corpus and put it in service; any failure is a CorpusError."""
        from lodestar.docs.build import build_in_child
        from lodestar.docs.index import open_index
        from lodestar.docs.search import CorpusSearcher

        try:
            opened = open_index(source, self.cache_dir, self.limits, inline_limit=self.limits.child_build_bytes)
            status = opened.built if opened else ""
            if opened is None:
                if on_stage is not None:
                    on_stage("indexing")
                build_in_child(source, self.cache_dir, self.limits)  # if it failed, open_index indexes here
                opened = open_index(source, self.cache_dir, self.limits)
                assert opened is not None
                status = "built in a child process" if opened.built == "cached" else opened.built
            searcher = CorpusSearcher(opened, self.limits)
        except CorpusError:
            raise
        except Exception as exc:  # one broken corpus must not take the others down with it
            log.exception("loading corpus %s", source.name)
            raise CorpusError(f"unexpected {type(exc).__name__}: {exc}; see the server log") from exc
        # A replaced searcher is left to the garbage collector: a search on another thread may still hold it.
        with self.changed:
            corpora = {**self.corpora, source.name: Corpus(source, opened.manifest, searcher)}
            order = {name: i for i, name in enumerate(self._order)}  # listed in the order given, not the order loaded
            self.corpora = dict(sorted(corpora.items(), key=lambda item: order.get(item[0], len(order))))
            self.loading.pop(source.name, None)
            self.changed.notify_all()
        note = f"{source.name}: {status}"
        self.load_notes.append(note)
        return note

    def refresh(self, name: str) -> str:
        """Re-scan one loaded corpus and update its index for the files that changed since it opened;
        when that fails, the previous index stays in use. A corpus that failed to load is loaded again."""
        with self.changed:
            again, spec = name in self.failed and name in self._specs, self._specs.get(name)
        if again:
            return self._retry(name, spec)
        source = self.select(name)[0].source
        try:
            return self._open(source)
        except CorpusError as exc:
            raise DocsError(f"refreshing {source.name} failed: {exc}") from exc

    def refreshable(self, corpus: str | None) -> list[str]:
        """The corpora `refresh` would take up for a request: the one named, or every loaded corpus and
        every failed one that can be loaded again."""
        with self.changed:
            if corpus and corpus in self.failed and corpus in self._specs:
                return [corpus]
            again = [] if corpus else [name for name in self.failed if name in self._specs]
        return [c.name for c in self.select(corpus)] + again

    def _retry(self, name: str, spec: str | None) -> str:
        with self.changed:
            info = self.failed.pop(name)
            self.loading[name] = info.model_copy(update={"status": "loading", "stage": "opening", "error": None})
            self.changed.notify_all()
        outcome = self._load_one(name, spec)
        if isinstance(outcome, CorpusInfo):
            raise DocsError(f"loading {name} failed again: {outcome.error}")
        return outcome

    def _fail(self, name: str, source: str, message: str) -> CorpusInfo:
        log.error("corpus %s not loaded: %s", name, message)
        info = CorpusInfo(name=name, version="", source=source, documents=0, sections=0, status="failed", error=message)
        with self.changed:
            self.loading.pop(name, None)
            self.failed[name] = info
            self.changed.notify_all()
        return info

    @property
    def failures(self) -> dict[str, str]:
        """Why each corpus that could not be loaded failed, by name."""
        return {name: info.error or "" for name, info in self.failed.items()}

    def close(self) -> None:
        for corpus in self.corpora.values():
            corpus.searcher.close()

    # Operations

    def search(
        self, query: str, limit: int = 8, corpus: str | None = None, path_prefix: str | None = None, offset: int = 0
    ) -> SearchResult:
        _check_range("limit", limit, 1, 50)
        _check_range("offset", offset, 0, 1000)
        prefix = _clean_prefix(path_prefix or "")
        selected = self.select(corpus)
        query, words, notes = _bounded(query, self.limits)
        corrected = _corrections(words, selected, self.limits)
        text = " ".join(corrected.get(w.lower(), w) for w in words)
        ranked, total, terms = _ranked(selected, text, prefix or None, offset + limit)
        hits = [self._hit(r, terms) for r in ranked[offset:]]
        if hits and not terms:
            notes.append("the query has only common words, so these are entry pages (overviews, introductions);"
                         " add a word for the subject to search for it")  # fmt: skip
        unavailable = [] if corpus else self._unavailable(notes)
        if offset and not hits and total:
            pages = "1 page matches" if total == 1 else f"{total} pages match"
            notes.append(f"offset {offset} is past the last hit: {pages}; use a smaller offset")
        return SearchResult(
            query=query,
            total=total,
            hits=hits,
            suggestion=_suggestion(query, corrected),
            unavailable=unavailable,
            notes=notes,
        )

    def _unavailable(self, notes: list[str]) -> list[str]:
        """The corpora a search over all of them left out, each with a note saying why."""
        with self.changed:
            loading, failed = list(self.loading.values()), list(self.failed.values())
        for info in loading:
            notes.append(
                f"corpus {info.name} was not searched: it is still loading ({info.stage}); pass corpus={info.name}"
                " to wait for it"
            )
        notes += [f"corpus {info.name} was not searched: it failed to load ({info.error})" for info in failed]
        return [info.name for info in loading + failed]

    async def asearch(
        self, query: str, limit: int = 8, corpus: str | None = None, path_prefix: str | None = None, offset: int = 0
    ) -> SearchResult:
        """search() for async code (an agent's tool, a web handler): it runs on a worker thread, so the event
        loop never blocks, and waits for the corpora it needs when they are still loading."""
        from lodestar.docs.waiting import call_when_loaded

        return await call_when_loaded(self, lambda: self.search(query, limit, corpus, path_prefix, offset))

    def _hit(self, ranked: Ranked, terms: list[str]) -> SearchHit:
        from lodestar.docs.search import snippet

        corpus, match = ranked.corpus, ranked.match
        section = corpus.manifest.files[match.path].sections[match.ordinal]
        return SearchHit(
            corpus=corpus.name,
            version=corpus.version,
            path=match.path,
            title=ranked.title,
            heading=section.heading,
            anchor=section.anchor,
            score=round(match.score, 4),
            snippet=snippet(match.body, terms, fallback=section.heading),
            also_in=ranked.also_in,
        )

    def read(
        self,
        path: str,
        corpus: str | None = None,
        heading: str | None = None,
        cursor: str | None = None,
        max_tokens: int = 6000,
    ) -> DocPage:
        _check_range("max_tokens", max_tokens, 100, 100_000)
        if cursor:
            page, start, end, anchor, offset = self._resume(Cursor.decode(cursor))
        else:
            page = self._page(path, corpus)
            start, end, anchor = self._range(page, heading)
            offset = start
        parsed = page.parsed
        budget = max_tokens * CHARS_PER_TOKEN  # bounds content and headings together
        headings, cost = parsed.headings_near(offset, budget // HEADINGS_SHARE)
        budget -= cost
        if end - offset > budget:  # a partial read keeps room for the line that says how to continue
            longest = Cursor(page.corpus.name, page.path, anchor, end - start, parsed.digest).encode()
            budget = max(budget - len(longest) - FOOTER_LINE, budget // 2)
        stop = cut(parsed.text, offset, end, budget)
        next_cursor = None
        if stop < end:
            next_cursor = Cursor(page.corpus.name, page.path, anchor, stop - start, parsed.digest).encode()
        return DocPage(
            corpus=page.corpus.name,
            version=page.corpus.version,
            path=page.path,
            title=parsed.title,
            content=parsed.text[offset:stop],
            headings=headings,
            headings_total=len(parsed.headings) if len(headings) < len(parsed.headings) else None,
            next_cursor=next_cursor,
        )

    async def aread(
        self,
        path: str,
        corpus: str | None = None,
        heading: str | None = None,
        cursor: str | None = None,
        max_tokens: int = 6000,
    ) -> DocPage:
        """read() for async code, like asearch()."""
        from lodestar.docs.waiting import call_when_loaded

        return await call_when_loaded(self, lambda: self.read(path, corpus, heading, cursor, max_tokens))

    def _resume(self, cursor: Cursor) -> tuple[PageText, int, int, str, int]:
        """The page, section range and offset a cursor points at; whatever it names must still exist."""
        try:
            page = self._page(cursor.path, cursor.corpus)
        except DocsError as exc:
            raise _invalid_cursor(exc) from exc
        if cursor.digest != page.parsed.digest:
            raise DocsError(f"{page.path} changed since this cursor was issued: read it again without a cursor")
        try:
            start, end, anchor = self._range(page, cursor.heading or None)
        except DocsError as exc:
            raise _invalid_cursor(exc) from exc
        if start + cursor.offset > end:
            raise DocsError("invalid cursor: it points past the end of the page; omit it to start again")
        return page, start, end, anchor, start + cursor.offset

    def read_all(self, corpus: str, path: str) -> str:
        """The whole page, for the docs:// resource."""
        return self._page(path, corpus).parsed.text

    def list(self, path_prefix: str = "", corpus: str | None = None, depth: int = 1) -> ListResult:
        _check_range("depth", depth, 1, 10)
        prefix = _clean_prefix(path_prefix)
        entries: list[ListEntry] = []
        for item in self.select(corpus):
            entries.extend(_list_corpus(item, prefix, depth))
        if not entries and prefix:
            self._unless_loading(corpus)
            paths = [(item.name, p) for item in self.select(corpus) for p in _folders_and_docs(item)]
            raise DocsError(f"nothing under {path_prefix!r}. {_closest_hint(prefix, paths)}")
        return ListResult(entries=entries)

    def health(self) -> HealthReport:
        with self.changed:
            ready, loading, failed = len(self.corpora), sorted(self.loading), dict(self.failures)
        if not self.ready.is_set():
            return HealthReport(status="loading", corpora=ready, loading=loading)
        if not failed:
            return HealthReport(status="ok", corpora=ready)
        reason = "; ".join(f"corpus {name} failed to load: {error}" for name, error in failed.items())
        return HealthReport(status="degraded", corpora=ready, reason=reason, failed=sorted(failed))

    def list_corpora(self) -> CorporaResult:
        """Every corpus with its status; never waits on one being fetched or indexed."""
        self._settle(None)
        with self.changed:
            ready = [c.info() for c in self.corpora.values()]
            return CorporaResult(corpora=ready + list(self.loading.values()) + list(self.failed.values()))

    # Lookup

    def select(self, name: str | None) -> builtins.list[Corpus]:
        """The ready corpora a request covers: all of them, or the one named. Waits for those opening a
        cached index; a named corpus (or the only ones left) still being fetched or indexed raises
        CorpusLoading."""
        self._settle({name} if name else None)
        with self.changed:
            if not self._claimed:
                raise DocsError("the corpora are not loaded: call load() or load_in_background() first")
            if not name:
                if not self.corpora and self.loading:
                    raise self._still_loading(list(self.loading))
                return list(self.corpora.values())
            if name in self.corpora:
                return [self.corpora[name]]
            if name in self.failed:
                raise DocsError(f"corpus {name!r} failed to load: {self.failed[name].error}")
            waiting = [name] if name in self.loading else sorted(self._unnamed & self.loading.keys())
            if waiting:
                raise self._still_loading(waiting)
            known = ", ".join(self.corpora) or "none"
        raise DocsError(f"unknown corpus {name!r}; loaded corpora: {known}")

    def _settle(self, names: set[str] | None) -> None:
        """Waits for the corpora (all, or those named) still opening, for at most OPENING_WAIT_S after
        loading began: opening a cached index takes milliseconds, so answering without them would be wrong."""

        def opening() -> bool:
            return any(
                info.stage == "opening" and (names is None or name in names or name in self._unnamed)
                for name, info in self.loading.items()
            )

        with self.changed:
            while opening() and (left := self._started + OPENING_WAIT_S - time.monotonic()) > 0:
                self.changed.wait(left)

    def _still_loading(self, names: builtins.list[str]) -> CorpusLoading:
        verb = "is" if len(names) == 1 else "are"
        message = f"{self.describe_loading(names)} {verb} still loading: list_corpora shows progress; ask again shortly"
        return CorpusLoading(names, message)

    def describe_loading(self, names: builtins.list[str]) -> str:
        """`corpus mastra (fetching npm:@mastra/x)`: what a waiting caller is told."""
        with self.changed:
            states = [f"{n} ({i.stage} {i.source})" for n in names if (i := self.loading.get(n)) is not None]
        return ("corpus " if len(states) == 1 else "corpora ") + ", ".join(states or names)

    def wait_loaded(self, names: builtins.list[str], timeout: float | None = None) -> bool:
        """Blocks until none of `names` is loading (True) or `timeout` passes (False)."""
        with self.changed:
            return self.changed.wait_for(lambda: not self.loading.keys() & set(names), timeout)

    def _page(self, path: str, corpus: str | None) -> PageText:
        corpus_name, relative = _split_uri(path, corpus)
        relative = _safe_relative(relative)
        # The bundled docs are looked at last, so a user's docs/overview.md is not hidden by ours.
        candidates = sorted(self.select(corpus_name), key=lambda c: c.name == BUNDLED)
        for item in candidates:
            found = _find_doc(item, relative)
            if found is not None:
                return self._load_page(item, found)
        self._unless_loading(corpus_name)
        paths = [(item.name, p) for item in candidates for p in item.manifest.files]
        raise DocsError(f"no page {path!r}. {_closest_hint(relative, paths)}")

    def _unless_loading(self, corpus: str | None) -> None:
        """Before saying a page or folder is missing from every corpus: it may be in one still loading."""
        with self.changed:
            if not corpus and self.loading:
                raise self._still_loading(list(self.loading))

    def _load_page(self, corpus: Corpus, relative: str) -> PageText:
        root = corpus.source.root.resolve()
        full = (root / relative).resolve()
        if not full.is_relative_to(root):
            raise DocsError(f"refused: {relative!r} leads outside the corpus root")
        try:
            st = full.stat()  # before reading: a write after it changes the stamp, so no stale page is kept
            if st.st_size > self.limits.max_page_bytes:
                raise DocsError(
                    f"{relative} is {st.st_size / MIB:.1f} MiB, over the {self.limits.max_page_bytes / MIB:.1f} MiB"
                    f" page limit: set {env_var('max_page_bytes')} to read it"
                )
            limit = self.limits.max_page_bytes
            parsed = self.pages.get(full, stamp(st), lambda: read_page(root, relative, st.st_size, limit))
        except OSError as exc:
            raise DocsError(f"cannot read {relative}: {exc.strerror}; run `lodestar-mcp index` to refresh") from exc
        return PageText(corpus, relative, parsed)

    def _range(self, page: PageText, heading: str | None) -> tuple[int, int, str]:
        from lodestar.docs.sections import find_heading

        sections = page.parsed.sections
        if not heading:
            return 0, len(page.parsed.text), ""
        index = find_heading(heading, [(s.anchor, s.heading) if s.level else None for s in sections])
        if index is None:
            anchors = [s.anchor for s in page.parsed.headings[:ANCHORS_IN_ERROR]]
            more = len(page.parsed.headings) - len(anchors)
            listed = ", ".join(anchors) + (f" and {more} more" if more else "")
            raise DocsError(f"no heading {heading!r} in {page.path}; its headings (anchors): {listed or 'none'}")
        section = sections[index]
        end = next((s.start for s in sections[index + 1 :] if s.level <= section.level), len(page.parsed.text))
        return section.start, end, section.anchor


def _invalid_cursor(exc: DocsError) -> DocsError:
    return DocsError(f"invalid cursor: {exc}. Omit the cursor to start again")


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise DocsError(f"{name} must be between {low} and {high}, got {value}")


def _clean_prefix(prefix: str) -> str:
    cleaned = prefix.strip().replace("\\", "/").removeprefix("./")
    if cleaned.startswith("/") or ".." in cleaned.split("/"):
        raise DocsError(f"refused path prefix {prefix!r}: use a path relative to the corpus root, like docs/")
    return cleaned


def _split_uri(path: str, corpus: str | None) -> tuple[str | None, str]:
    """`docs://corpus/path` names its corpus; a plain path uses the `corpus` argument."""
    if path.startswith("docs://"):
        name, _, rest = path.removeprefix("docs://").partition("/")
        return check_name(name), rest
    return corpus, path


_DRIVE = re.compile(r"^[A-Za-z]:")


def _safe_relative(path: str) -> str:
    cleaned = path.strip().replace("\\", "/")
    if not cleaned or "\0" in cleaned:
        raise DocsError("path is empty: give a page path such as docs/overview.md (list_docs shows them)")
    if cleaned.startswith("/") or _DRIVE.match(cleaned) or ".." in cleaned.split("/"):
        raise DocsError(f"refused path {path!r}: paths are relative to the corpus root and may not contain '..'")
    return cleaned.removeprefix("./")


def _find_doc(corpus: Corpus, relative: str) -> str | None:
    """The page `relative` names, as given or with its extension or index page implied; failing that, the same
    up to Unicode normalisation (macOS stores `é` decomposed in file names, a model types it composed)."""
    files = corpus.manifest.files
    stem = relative.rstrip("/")
    candidates = (relative, f"{stem}.md", f"{stem}.mdx", f"{stem}/index.md", f"{stem}/index.mdx")
    for candidate in candidates:
        if candidate in files:
            return candidate
    composed = {unicodedata.normalize("NFC", p): p for p in files if not p.isascii()}
    return next((composed[c] for c in (unicodedata.normalize("NFC", c) for c in candidates) if c in composed), None)


def _closest_hint(wanted: str, found: list[tuple[str, str]]) -> str:
    """Names the existing paths nearest to `wanted`; `found` holds (corpus, path) pairs."""
    corpora: dict[str, list[str]] = {}
    for corpus, path in found:
        corpora.setdefault(path, []).append(corpus)
    close = difflib.get_close_matches(wanted, list(corpora), n=5, cutoff=0.4)
    name = PurePosixPath(wanted).name
    close += [p for p in corpora if name and PurePosixPath(p).name.startswith(name) and p not in close][:3]
    if not close:
        return "Use list_docs or search_docs to find pages."
    several = len({corpus for corpus, _ in found}) > 1
    labels = [f"{c}:{p}" if several else p for p in close[:5] for c in corpora[p]]
    return "Closest: " + ", ".join(labels)


def _folders_and_docs(corpus: Corpus) -> list[str]:
    folders = {str(PurePosixPath(p).parent) + "/" for p in corpus.manifest.files}
    return sorted(folders | corpus.manifest.files.keys())


def _list_corpus(corpus: Corpus, prefix: str, depth: int) -> list[ListEntry]:
    files = corpus.manifest.files
    if prefix in files:
        return [ListEntry(corpus=corpus.name, path=prefix, title=files[prefix].title, kind="doc")]
    base = prefix.rstrip("/") + "/" if prefix else ""
    entries: dict[str, ListEntry] = {}
    for path, doc in files.items():
        if not path.startswith(base):
            continue
        parts = path[len(base) :].split("/")
        for level in range(min(depth, len(parts) - 1)):
            folder = base + "/".join(parts[: level + 1]) + "/"
            entries.setdefault(folder, ListEntry(corpus=corpus.name, path=folder, title=parts[level], kind="dir"))
        if len(parts) <= depth:
            entries[path] = ListEntry(corpus=corpus.name, path=path, title=doc.title, kind="doc")
    return [entries[key] for key in sorted(entries)]


def _bounded(query: str, limits: DocsLimits) -> tuple[str, list[str], list[str]]:
    """The query within the character and word bounds (cut at a word end when there is one), its words,
    and notes saying what was cut: work on a query stays bounded whatever a client sends."""
    notes: list[str] = []
    if len(query) > limits.max_query_chars:
        kept = query[: limits.max_query_chars]
        if query[len(kept)].isalnum() and re.search(r"\W", kept):
            kept = re.sub(r"\w+$", "", kept)
        notes.append(f"the query was cut from {len(query)} to {len(kept)} characters ({env_var('max_query_chars')})")
        query = kept
    words = query_words(query)
    if len(words) > limits.max_query_words:
        searched = f"only the first {limits.max_query_words} of {len(words)} words were searched"
        notes.append(f"{searched} ({env_var('max_query_words')})")
        words = words[: limits.max_query_words]
    return query, words, notes


def _ranked(corpora: list[Corpus], text: str, prefix: str | None, wanted: int) -> tuple[list[Ranked], int, list[str]]:
    """The best `wanted` hits of all corpora merged (see docs.merge), the pages matching, and the query terms.
    Pages folded together leave gaps, so each corpus is asked for more until the list is full or they run out."""
    window = wanted
    while True:
        found: list[Ranked] = []
        total, terms, more = 0, [], False
        for item in corpora:
            matches = item.searcher.search(text, window, prefix)
            total, terms = total + matches.total, matches.terms
            more = more or matches.total > window
            files = item.manifest.files
            found.extend(Ranked(item, m, files[m.path].title) for m in matches.matches)
        ranked = merge(found, BUNDLED, wanted)
        if len(ranked) >= wanted or not more or window >= wanted * MERGE_WINDOWS:
            return ranked, total, terms
        window *= 2


def _corrections(words: list[str], corpora: list[Corpus], limits: DocsLimits) -> dict[str, str]:
    """Words no searched corpus knows, mapped to the closest word any of them knows. A spelling lookup
    costs milliseconds, so one query makes a bounded number of them, on words of a bounded length."""
    corrected: dict[str, str] = {}
    lookups = 0
    for word in dict.fromkeys(w.lower() for w in words):
        if lookups >= limits.max_spelling_lookups:
            break
        if len(word) > limits.max_spelling_word_chars or not correctable(word):
            continue
        if any(c.searcher.known(word) for c in corpora):
            continue
        lookups += 1
        best = min(filter(None, (c.searcher.closest(word) for c in corpora)), default=None)
        if best is not None:
            corrected[word] = best[2]
    return corrected


def _suggestion(query: str, corrected: dict[str, str]) -> str | None:
    if not corrected:
        return None
    return re.sub(r"\w+", lambda m: corrected.get(m.group().lower(), m.group()), query)
