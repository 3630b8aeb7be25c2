"""`--corpus [NAME=]SOURCE` specs: folders, npm tarballs, npm packages (validation and offline paths only)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from conftest import PAGES, make_tgz, raw_tgz, write_corpus

from lodestar.docs.errors import CorpusError
from lodestar.docs.service import DocsService
from lodestar.docs.sources import check_name, package_corpus_name, resolve, split_spec


def doc_files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture
def no_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


# Folders


def test_name_equals_dir(corpus_dir: Path, cache_dir: Path) -> None:
    source = resolve(f"mydocs={corpus_dir}", cache_dir)
    assert source.name == "mydocs"
    assert source.root == corpus_dir.resolve()
    assert source.source == str(corpus_dir)
    assert source.version is None  # a folder is versioned by its content hash


def test_bare_dir_is_named_after_the_folder(corpus_dir: Path, cache_dir: Path) -> None:
    source = resolve(str(corpus_dir), cache_dir)
    assert source.name == "example-docs"
    assert source.root == corpus_dir.resolve()


def test_relative_dir_with_trailing_slash(corpus_dir: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(corpus_dir.parent)
    source = resolve("./example-docs/", cache_dir)
    assert source.name == "example-docs"
    assert source.root == corpus_dir.resolve()


def test_spaces_around_the_source_are_ignored(corpus_dir: Path, cache_dir: Path) -> None:
    assert resolve(f"mydocs= {corpus_dir} ", cache_dir).root == corpus_dir.resolve()


def test_missing_folder_is_a_clear_corpus_error(tmp_path: Path, cache_dir: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(CorpusError, match="does not exist") as info:
        resolve(f"docs={missing}", cache_dir)
    assert str(missing) in str(info.value)
    assert "npm:PACKAGE" in str(info.value)  # says what a source may be


def test_a_file_is_not_a_folder(tmp_path: Path, cache_dir: Path) -> None:
    file = tmp_path / "notes.md"
    file.write_text("# Notes\n", "utf-8")
    with pytest.raises(CorpusError, match="is not a folder"):
        resolve(str(file), cache_dir)


@pytest.mark.parametrize("spec", ["", "   ", "docs=", "docs=  "])
def test_empty_source_is_rejected(spec: str, cache_dir: Path) -> None:
    with pytest.raises(CorpusError, match="empty corpus source"):
        resolve(spec, cache_dir)


# Names


@pytest.mark.parametrize("name", ["docs", "my-docs", "my_docs.v2", "A1", "0day"])
def test_valid_names(name: str) -> None:
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["", "my docs", "-docs", ".docs", "docs/x", "dö", "a=b", "x:y"])
def test_invalid_names_are_rejected(name: str) -> None:
    with pytest.raises(CorpusError, match="invalid corpus name") as info:
        check_name(name)
    assert "--corpus mydocs=./docs" in str(info.value)


def test_a_folder_name_that_is_no_valid_corpus_name_is_made_into_one(tmp_path: Path, cache_dir: Path) -> None:
    assert resolve(str(write_corpus(tmp_path / "my docs", {"a.md": "# A\n"})), cache_dir).name == "my-docs"
    assert resolve(str(write_corpus(tmp_path / "pkg" / ".docs", {"a.md": "# A\n"})), cache_dir).name == "docs"
    assert resolve(f"mine={tmp_path / 'my docs'}", cache_dir).name == "mine"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("mastra=npm:@mastra/x", ("mastra", "npm:@mastra/x")),
        ("docs=./d", ("docs", "./d")),
        ("./d", (None, "./d")),
        ("my docs=./d", (None, "my docs=./d")),  # not a name: the whole spec is a path
        ("./a=b", (None, "./a=b")),
        ("npm:x", (None, "npm:x")),
    ],
)
def test_split_spec(spec: str, expected: tuple[str | None, str]) -> None:
    assert split_spec(spec) == expected


@pytest.mark.parametrize(
    ("package", "name"),
    [("@mastra/mcp-docs-server", "mastra-mcp-docs-server"), ("left-pad", "left-pad"), ("@a/b", "a-b")],
)
def test_package_corpus_names(package: str, name: str) -> None:
    assert package_corpus_name(package) == name


# Tarballs


@pytest.mark.parametrize("docs_dir", ["package/.docs/", "package/dist/docs/", "package/docs/"])
def test_tarball_layouts(docs_dir: str, tmp_path: Path, cache_dir: Path) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "@mastra/mcp-docs-server", "1.2.3", docs_dir)
    source = resolve(str(tgz), cache_dir)
    assert source.name == "mastra-mcp-docs-server"
    assert source.version == "1.2.3"
    assert source.source == str(tgz)
    assert source.root.is_relative_to(cache_dir)
    assert doc_files(source.root) == sorted(PAGES)
    for relative, text in PAGES.items():
        assert (source.root / relative).read_text("utf-8") == text


def test_tarball_with_an_explicit_name(tmp_path: Path, cache_dir: Path) -> None:
    tgz = make_tgz(tmp_path / "pkg.tar.gz", "left-pad", "0.0.9")
    source = resolve(f"pad={tgz}", cache_dir)
    assert (source.name, source.version) == ("pad", "0.0.9")


def test_dot_docs_wins_over_other_layouts(tmp_path: Path, cache_dir: Path) -> None:
    tgz = raw_tgz(
        tmp_path / "pkg.tgz",
        {
            "package/package.json": json.dumps({"name": "both", "version": "2.0.0"}),
            "package/docs/old.md": "# Old\n",
            "package/.docs/new.md": "# New\n",
            "package/dist/docs/dist.md": "# Dist\n",
        },
    )
    assert doc_files(resolve(str(tgz), cache_dir).root) == ["new.md"]


def test_only_markdown_of_the_docs_folder_is_extracted(tmp_path: Path, cache_dir: Path) -> None:
    tgz = raw_tgz(
        tmp_path / "pkg.tgz",
        {
            "package/package.json": json.dumps({"name": "pkg", "version": "1.0.0"}),
            "package/.docs/a.md": "# A\n",
            "package/.docs/b.mdx": "# B\n",
            "package/.docs/data.json": "{}",
            "package/index.js": "module.exports = 1;",
            "package/README.md": "# Readme\n",
        },
    )
    assert doc_files(resolve(str(tgz), cache_dir).root) == ["a.md", "b.mdx"]


def test_tarball_members_cannot_escape(tmp_path: Path, cache_dir: Path) -> None:
    tgz = raw_tgz(
        tmp_path / "evil.tgz",
        {
            "package/package.json": json.dumps({"name": "evil", "version": "6.6.6"}),
            "package/.docs/ok.md": "# Fine\n",
            "package/.docs/../../../escaped.md": "# Escaped\n",
            "package/.docs/sub/../../../../escaped2.md": "# Escaped\n",
        },
    )
    source = resolve(str(tgz), cache_dir)
    assert doc_files(source.root) == ["ok.md"]
    assert list(tmp_path.rglob("escaped*.md")) == []


def test_tarball_is_extracted_once(tmp_path: Path, cache_dir: Path) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "pkg", "1.0.0")
    first = resolve(str(tgz), cache_dir)
    marker = first.root / "marker.md"
    marker.write_text("# Marker\n", "utf-8")
    second = resolve(str(tgz), cache_dir)
    assert second.root == first.root
    assert marker.exists()  # not extracted again over the cached copy


def test_version_falls_back_to_a_digest(tmp_path: Path, cache_dir: Path) -> None:
    tgz = raw_tgz(
        tmp_path / "noversion.tgz",
        {"package/package.json": json.dumps({"name": "nov"}), "package/.docs/a.md": "# A\n"},
    )
    source = resolve(str(tgz), cache_dir)
    assert source.name == "nov"
    assert source.version and len(source.version) == 16
    int(source.version, 16)


def test_tarball_without_docs_is_a_clear_corpus_error(tmp_path: Path, cache_dir: Path) -> None:
    tgz = make_tgz(tmp_path / "nodocs.tgz", "nodocs", "1.0.0", "package/lib/")
    with pytest.raises(CorpusError, match=r"nodocs\.tgz has no docs") as info:
        resolve(str(tgz), cache_dir)
    for layout in ("package/.docs/", "package/dist/docs/", "package/docs/"):
        assert layout in str(info.value)
    assert not list((cache_dir / "packages").glob("*/docs"))  # nothing half-extracted is left


def test_missing_tarball_is_a_corpus_error(tmp_path: Path, cache_dir: Path) -> None:
    with pytest.raises(CorpusError, match="does not exist"):
        resolve(str(tmp_path / "missing.tgz"), cache_dir)


def test_corrupt_tarball_is_a_corpus_error(tmp_path: Path, cache_dir: Path) -> None:
    bad = tmp_path / "bad.tgz"
    bad.write_bytes(b"this is not gzip data")
    with pytest.raises(CorpusError, match="cannot read npm tarball"):
        resolve(str(bad), cache_dir)


def test_tarball_without_package_json(tmp_path: Path, cache_dir: Path) -> None:
    """Regression (fixed in b5bfea5): a missing package.json raised FileNotFoundError out of resolve()."""
    tgz = raw_tgz(tmp_path / "handmade.tgz", {"package/.docs/a.md": "# A\n"})
    source = resolve(str(tgz), cache_dir)
    assert source.name == "handmade"
    assert source.version and re.fullmatch(r"[0-9a-f]{16}", source.version)
    assert doc_files(source.root) == ["a.md"]
    broken = raw_tgz(tmp_path / "broken.tgz", {"package/package.json": "{not json", "package/docs/b.md": "# B\n"})
    assert resolve(str(broken), cache_dir).name == "broken"


def test_service_reports_the_package_version(tmp_path: Path, cache_dir: Path) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "@mastra/mcp-docs-server", "1.2.3")
    service = DocsService([str(tgz)], cache_dir, bundled=False)
    service.load()
    (info,) = service.list_corpora().corpora
    assert (info.name, info.version, info.documents) == ("mastra-mcp-docs-server", "1.2.3", len(PAGES))
    hit = service.search("semantic recall").hits[0]
    assert (hit.corpus, hit.version, hit.path) == ("mastra-mcp-docs-server", "1.2.3", "docs/agents/memory.md")
    service.close()


# npm:


@pytest.mark.parametrize(
    "spec",
    [
        "npm:",
        "npm:Bad Name",
        "npm:@scope",
        "npm:@scope/",
        "npm:../etc",
        "npm:foo@",
        "npm:foo@1.0.0/../../x",
        "npm:@/x",
        "npm:-x",
        "npm:foo bar",
        "npm:https://example.com/x.tgz",
    ],
)
def test_invalid_npm_specs(spec: str, cache_dir: Path, no_npm: None) -> None:
    with pytest.raises(CorpusError, match="invalid npm package spec") as info:
        resolve(spec, cache_dir)
    assert "npm:PACKAGE@VERSION" in str(info.value)


@pytest.mark.parametrize("spec", ["npm:left-pad", "npm:left-pad@1.3.0", "mastra=npm:@mastra/mcp-docs-server@latest"])
def test_missing_npm_cli_is_a_clear_error(spec: str, cache_dir: Path, no_npm: None) -> None:
    with pytest.raises(CorpusError, match="needs the npm CLI on PATH") as info:
        resolve(spec, cache_dir)
    assert "pass a .tgz file" in str(info.value)


def _cached_package(cache_dir: Path, folder: str) -> Path:
    root = write_corpus(cache_dir / "packages" / folder / "docs", {"a.md": "# A\n"})
    (cache_dir / "packages" / folder / ".complete").touch()
    return root


def test_exact_version_already_fetched_needs_no_npm(cache_dir: Path, no_npm: None) -> None:
    root = _cached_package(cache_dir, "npm-mastra-mcp-docs-server@1.2.3")
    source = resolve("npm:@mastra/mcp-docs-server@1.2.3", cache_dir)
    assert (source.name, source.version, source.root) == ("mastra-mcp-docs-server", "1.2.3", root)
    assert source.source == "npm:@mastra/mcp-docs-server@1.2.3"


def test_recently_resolved_tag_needs_no_npm(cache_dir: Path, no_npm: None) -> None:
    root = _cached_package(cache_dir, "npm-left-pad@1.3.0")
    (cache_dir / "packages" / "resolved.json").write_text(
        json.dumps({"left-pad@latest": {"version": "1.3.0", "at": time.time()}}), "utf-8"
    )
    source = resolve("npm:left-pad", cache_dir)
    assert (source.version, source.root) == ("1.3.0", root)


def test_a_stale_resolved_tag_asks_npm_again(cache_dir: Path, no_npm: None) -> None:
    _cached_package(cache_dir, "npm-left-pad@1.3.0")
    (cache_dir / "packages" / "resolved.json").write_text(
        json.dumps({"left-pad@latest": {"version": "1.3.0", "at": time.time() - 2 * 24 * 3600}}), "utf-8"
    )
    with pytest.raises(CorpusError, match="needs the npm CLI"):
        resolve("npm:left-pad", cache_dir)
