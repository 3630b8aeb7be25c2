"""DocsService: the corpora a process serves, and the search, read and list operations over them.

The MCP tools and the CLI both call this class. Loading (fetching packages, opening or building
indexes) can run on a background thread so a server answers `initialize` before its indexes are open.
"""

from __future__ import annotations

import difflib
import gc
import heapq
import logging
import re
import threading
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lodestar import __version__
from lodestar.docs.analysis import correctable, query_words
from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.limits import MIB, DocsLimits, env_var
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
from lodestar.docs.sources import CorpusSource, check_name, resolve, split_spec

if TYPE_CHECKING:  # the index modules import Whoosh and markdown-it: loaded on the loading thread
    from lodestar.docs.index import Manifest
    from lodestar.docs.search import CorpusSearcher, Match

log = logging.getLogger(__name__)

BUNDLED = "lodestar"
FOOTER_LINE = 64  # the words around the cursor in a partial read's text body
HEADINGS_SHARE = 4  # a headings list too long for the answer gets 1/4 of max_tokens
ANCHORS_IN_ERROR = 50  # anchors an unknown heading's error lists


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
    def __init__(
        self, specs: list[str], cache_dir: Path, *, bundled: bool = True, limits: DocsLimits | None = None
    ) -> None:
        self.specs = list(specs)
        self.limits = limits or DocsLimits.from_env()
        self.cache_dir = cache_dir
        self.bundled = bundled
        self.corpora: dict[str, Corpus] = {}
        self.failed: dict[str, CorpusInfo] = {}  # corpora that could not be loaded, by name
        self.ready = threading.Event()
        self.load_notes: list[str] = []
        self.spec_names: dict[str, str] = {}  # --corpus spec -> corpus name
        self.pages = PageCache(self.limits.page_cache_bytes)

    # Loading

    def load(self) -> None:
        """Resolve and open every corpus; a failing one is logged and named in later errors. Only loading
        writes `failures`, before `ready` is set, so the threads that read it later see a settled map."""
        try:
            for source in self._sources():
                try:
                    self._open(source)
                except CorpusError as exc:
                    self._fail(source.name, source.source, str(exc))
        finally:
            self.ready.set()

    def _open(self, source: CorpusSource) -> str:
        """Open (building or updating) one corpus and put it in service; any failure is a CorpusError."""
        from lodestar.docs.build import build_in_child
        from lodestar.docs.index import open_index
        from lodestar.docs.search import CorpusSearcher

        try:
            opened = open_index(source, self.cache_dir, self.limits, inline_limit=self.limits.child_build_bytes)
            status = opened.built if opened else ""
            if opened is None:
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
        self.corpora[source.name] = Corpus(source, opened.manifest, searcher)
        note = f"{source.name}: {status}"
        self.load_notes.append(note)
        return note

    def refresh(self, name: str) -> str:
        """Re-scan one loaded corpus and update its index for the files that changed since it opened;
        when that fails, the previous index stays in use."""
        source = self.select(name)[0].source
        try:
            return self._open(source)
        except CorpusError as exc:
            raise DocsError(f"refreshing {source.name} failed: {exc}") from exc

    def load_in_background(self) -> threading.Thread:
        """For a long-lived server: once loaded, what is in memory (the SDK, indexes) is frozen out of the
        garbage collector's full passes, which otherwise stall every request for tens of milliseconds."""

        def load_and_freeze() -> None:
            self.load()
            gc.freeze()

        thread = threading.Thread(target=load_and_freeze, name="lodestar-docs-load", daemon=True)
        thread.start()
        return thread

    def _sources(self) -> list[CorpusSource]:
        sources: list[CorpusSource] = []
        if self.bundled:
            sources.append(CorpusSource(name=BUNDLED, source="bundled", root=bundled_root(), version=__version__))
        for spec in self.specs:
            try:
                source = resolve(spec, self.cache_dir, self.limits)
            except Exception as exc:  # one bad spec must not keep the other corpora from loading
                if not isinstance(exc, CorpusError):
                    log.exception("resolving corpus %s", spec)
                    exc = CorpusError(f"unexpected {type(exc).__name__}: {exc}; see the server log")
                name, raw = split_spec(spec)
                self._fail(name or spec, raw, str(exc))
                continue
            if any(s.name == source.name for s in sources):
                self._fail(
                    spec, source.source, f"corpus name {source.name!r} is taken: give another with NAME={source.source}"
                )
                continue
            sources.append(source)
            self.spec_names[spec] = source.name
        return sources

    def _fail(self, name: str, source: str, message: str) -> None:
        log.error("corpus %s not loaded: %s", name, message)
        self.failed[name] = CorpusInfo(
            name=name, version="", source=source, documents=0, sections=0, status="failed", error=message
        )

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
        found: list[tuple[float, Corpus, Match]] = []
        total, terms = 0, []
        for item in selected:
            matches = item.searcher.search(text, offset + limit, prefix or None)
            total += matches.total
            terms = matches.terms
            found.extend((m.score, item, m) for m in matches.matches)
        ranked = heapq.nlargest(offset + limit, found, key=lambda f: f[0])[offset:]
        hits = [self._hit(item, match, terms) for _, item, match in ranked]
        unavailable = [] if corpus else list(self.failed)
        notes += [
            f"corpus {name} was not searched: it failed to load ({self.failed[name].error})" for name in unavailable
        ]
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

    def _hit(self, corpus: Corpus, match: Match, terms: list[str]) -> SearchHit:
        from lodestar.docs.search import snippet

        doc = corpus.manifest.files[match.path]
        section = doc.sections[match.ordinal]
        return SearchHit(
            corpus=corpus.name,
            version=corpus.version,
            path=match.path,
            title=doc.title,
            heading=section.heading,
            anchor=section.anchor,
            score=round(match.score, 4),
            snippet=snippet(match.body, terms, fallback=section.heading),
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
            paths = [(item.name, p) for item in self.select(corpus) for p in _folders_and_docs(item)]
            raise DocsError(f"nothing under {path_prefix!r}. {_closest_hint(prefix, paths)}")
        return ListResult(entries=entries)

    def health(self) -> HealthReport:
        if not self.ready.is_set():
            return HealthReport(status="loading", corpora=len(self.corpora))
        failed = self.failures
        if not failed:
            return HealthReport(status="ok", corpora=len(self.corpora))
        reason = "; ".join(f"corpus {name} failed to load: {error}" for name, error in failed.items())
        return HealthReport(status="degraded", corpora=len(self.corpora), reason=reason, failed=sorted(failed))

    def list_corpora(self) -> CorporaResult:
        self.ready.wait()
        return CorporaResult(corpora=[c.info() for c in self.corpora.values()] + list(self.failed.values()))

    # Lookup

    def select(self, name: str | None) -> list[Corpus]:
        self.ready.wait()
        if name is None or name == "":
            return list(self.corpora.values())
        if name in self.corpora:
            return [self.corpora[name]]
        if name in self.failed:
            raise DocsError(f"corpus {name!r} failed to load: {self.failed[name].error}")
        known = ", ".join(self.corpora) or "none"
        raise DocsError(f"unknown corpus {name!r}; loaded corpora: {known}")

    def _page(self, path: str, corpus: str | None) -> PageText:
        corpus_name, relative = _split_uri(path, corpus)
        relative = _safe_relative(relative)
        # The bundled docs are looked at last, so a user's docs/overview.md is not hidden by ours.
        candidates = sorted(self.select(corpus_name), key=lambda c: c.name == BUNDLED)
        for item in candidates:
            found = _find_doc(item, relative)
            if found is not None:
                return self._load_page(item, found)
        paths = [(item.name, p) for item in candidates for p in item.manifest.files]
        raise DocsError(f"no page {path!r}. {_closest_hint(relative, paths)}")

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
        from lodestar.docs.sections import slugify

        sections = page.parsed.sections
        if not heading:
            return 0, len(page.parsed.text), ""
        wanted = heading.strip().lstrip("#").strip()
        index = next((i for i, s in enumerate(sections) if s.level and s.anchor == wanted), None)
        if index is None:
            lowered = wanted.lower()
            index = next(
                (i for i, s in enumerate(sections) if s.level and lowered in (s.heading.lower(), slugify(s.heading))),
                None,
            )
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
