"""DocsService: the corpora a process serves, and the search, read and list operations over them.

The MCP tools and the CLI both call this class. Loading (fetching packages, opening or building
indexes) can run on a background thread so a server answers `initialize` before its indexes are open.
"""

from __future__ import annotations

import difflib
import hashlib
import heapq
import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from lodestar import __version__
from lodestar.docs.analysis import correctable, query_words
from lodestar.docs.errors import CorpusError, DocsError
from lodestar.docs.limits import DocsLimits
from lodestar.docs.models import (
    CorporaResult,
    CorpusInfo,
    DocPage,
    ListEntry,
    ListResult,
    SearchHit,
    SearchResult,
)
from lodestar.docs.paging import CHARS_PER_TOKEN, Cursor, cut
from lodestar.docs.sources import CorpusSource, check_name, read_text, resolve, split_spec

if TYPE_CHECKING:  # the index modules import Whoosh and markdown-it: loaded on the loading thread
    from lodestar.docs.index import Manifest
    from lodestar.docs.search import CorpusSearcher, Match
    from lodestar.docs.sections import Page

log = logging.getLogger(__name__)

BUNDLED = "lodestar"
FOOTER_LINE = 64  # the words around the cursor in a partial read's text body


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
    text: str
    page: Page


class DocsService:
    def __init__(
        self, specs: list[str], cache_dir: Path, *, bundled: bool = True, limits: DocsLimits | None = None
    ) -> None:
        self.specs = list(specs)
        self.limits = limits or DocsLimits.from_env()
        self.cache_dir = cache_dir
        self.bundled = bundled
        self.corpora: dict[str, Corpus] = {}
        self.failures: dict[str, str] = {}
        self.ready = threading.Event()
        self.load_notes: list[str] = []
        self.spec_names: dict[str, str] = {}  # --corpus spec -> corpus name

    # Loading

    def load(self) -> None:
        """Resolve and open every corpus; a failing one is logged and named in later errors."""
        try:
            for source in self._sources():
                self._open(source)
        finally:
            self.ready.set()

    def _open(self, source: CorpusSource) -> str:
        from lodestar.docs.build import INLINE_LIMIT, build_in_child
        from lodestar.docs.index import open_index
        from lodestar.docs.search import CorpusSearcher

        try:
            opened = open_index(source, self.cache_dir, inline_limit=INLINE_LIMIT)
            status = opened.built if opened else ""
            if opened is None:
                build_in_child(source, self.cache_dir)  # if it failed, open_index indexes in this process
                opened = open_index(source, self.cache_dir)
                assert opened is not None
                status = "built in a child process" if opened.built == "cached" else opened.built
            searcher = CorpusSearcher(opened, self.limits)
        except CorpusError as exc:
            self._fail(source.name, str(exc))
            return f"{source.name}: failed: {exc}"
        except Exception as exc:  # one broken corpus must not take the others down with it
            log.exception("loading corpus %s", source.name)
            self._fail(source.name, f"unexpected {type(exc).__name__}: {exc}; see the server log")
            return f"{source.name}: failed: {exc}"
        # A replaced searcher is left to the garbage collector: a search on the event loop may still hold it.
        self.corpora[source.name] = Corpus(source, opened.manifest, searcher)
        self.failures.pop(source.name, None)
        note = f"{source.name}: {status}"
        self.load_notes.append(note)
        return note

    def refresh(self, name: str) -> str:
        """Re-scan one loaded corpus and update its index for the files that changed since it opened."""
        source = self.select(name)[0].source
        note = self._open(source)
        if source.name in self.failures:  # the previous index stays in use
            raise DocsError(f"refreshing {source.name} failed: {self.failures.pop(source.name)}")
        return note

    def load_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.load, name="lodestar-docs-load", daemon=True)
        thread.start()
        return thread

    def _sources(self) -> list[CorpusSource]:
        sources: list[CorpusSource] = []
        if self.bundled:
            sources.append(CorpusSource(name=BUNDLED, source="bundled", root=bundled_root(), version=__version__))
        for spec in self.specs:
            try:
                source = resolve(spec, self.cache_dir)
            except CorpusError as exc:
                self._fail(split_spec(spec)[0] or spec, str(exc))
                continue
            if any(s.name == source.name for s in sources):
                self._fail(spec, f"corpus name {source.name!r} is taken: give another with NAME={source.source}")
                continue
            sources.append(source)
            self.spec_names[spec] = source.name
        return sources

    def _fail(self, name: str, message: str) -> None:
        log.error("corpus %s not loaded: %s", name, message)
        self.failures[name] = message

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
        words = query_words(query)
        corrected = _corrections(words, selected)
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
        return SearchResult(query=query, total=total, hits=hits, suggestion=_suggestion(query, corrected))

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
        resume = Cursor.decode(cursor) if cursor else None
        if resume is not None:
            corpus, path, heading = resume.corpus, resume.path, resume.heading or None
        page = self._page(path, corpus)
        digest = hashlib.sha1(page.text.encode("utf-8", "surrogatepass")).hexdigest()[:12]
        if resume is not None and resume.digest != digest:
            raise DocsError(f"{page.path} changed since this cursor was issued: read it again without a cursor")
        start, end, anchor = self._range(page, heading)
        offset = start + (resume.offset if resume else 0)
        if offset > end:
            raise DocsError("invalid cursor: it points past the end of the page; omit it to start again")
        budget = max_tokens * CHARS_PER_TOKEN
        if end - offset > budget:  # a partial read keeps room for the line that says how to continue
            longest = Cursor(page.corpus.name, page.path, anchor, end - start, digest).encode()
            budget = max(budget - len(longest) - FOOTER_LINE, budget // 2)
        stop = cut(page.text, offset, end, budget)
        next_cursor = None
        if stop < end:
            next_cursor = Cursor(page.corpus.name, page.path, anchor, stop - start, digest).encode()
        return DocPage(
            corpus=page.corpus.name,
            version=page.corpus.version,
            path=page.path,
            title=page.page.title,
            content=page.text[offset:stop],
            headings=page.page.headings,
            next_cursor=next_cursor,
        )

    def read_all(self, corpus: str, path: str) -> str:
        """The whole page, for the docs:// resource."""
        return self._page(path, corpus).text

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

    def list_corpora(self) -> CorporaResult:
        return CorporaResult(corpora=[c.info() for c in self.corpora.values()])

    # Lookup

    def select(self, name: str | None) -> list[Corpus]:
        self.ready.wait()
        if name is None or name == "":
            return list(self.corpora.values())
        if name in self.corpora:
            return [self.corpora[name]]
        if name in self.failures:
            raise DocsError(f"corpus {name!r} failed to load: {self.failures[name]}")
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
            text = read_text(root, relative)
        except OSError as exc:
            raise DocsError(f"cannot read {relative}: {exc.strerror}; run `lodestar-mcp index` to refresh") from exc
        from lodestar.docs.sections import parse_page

        fallback = PurePosixPath(relative).stem
        return PageText(corpus, relative, text, parse_page(text, fallback))

    def _range(self, page: PageText, heading: str | None) -> tuple[int, int, str]:
        from lodestar.docs.sections import slugify

        if not heading:
            return 0, len(page.text), ""
        wanted = heading.strip().lstrip("#").strip()
        sections = page.page.sections
        index = next((i for i, s in enumerate(sections) if s.level and s.anchor == wanted), None)
        if index is None:
            lowered = wanted.lower()
            index = next(
                (i for i, s in enumerate(sections) if s.level and lowered in (s.heading.lower(), slugify(s.heading))),
                None,
            )
        if index is None:
            anchors = ", ".join(s.anchor for s in sections if s.level) or "none"
            raise DocsError(f"no heading {heading!r} in {page.path}; its headings (anchors): {anchors}")
        section = sections[index]
        end = next((s.start for s in sections[index + 1 :] if s.level <= section.level), len(page.text))
        return section.start, end, section.anchor


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
    files = corpus.manifest.files
    stem = relative.rstrip("/")
    for candidate in (relative, f"{stem}.md", f"{stem}.mdx", f"{stem}/index.md", f"{stem}/index.mdx"):
        if candidate in files:
            return candidate
    return None


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


def _corrections(words: list[str], corpora: list[Corpus]) -> dict[str, str]:
    """Words no searched corpus knows, mapped to the closest word any of them knows."""
    corrected: dict[str, str] = {}
    for word in {w.lower() for w in words}:
        if not correctable(word) or any(c.searcher.known(word) for c in corpora):
            continue
        best = min(filter(None, (c.searcher.closest(word) for c in corpora)), default=None)
        if best is not None:
            corrected[word] = best[2]
    return corrected


def _suggestion(query: str, corrected: dict[str, str]) -> str | None:
    if not corrected:
        return None
    return re.sub(r"\w+", lambda m: corrected.get(m.group().lower(), m.group()), query)
