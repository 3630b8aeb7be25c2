"""Untrusted packages: tarballs and npm: packages unpack under limits; npm pack runs safely and in bounded time."""

from __future__ import annotations

import gzip
import io
import json
import logging
import sys
import tarfile
import time
from pathlib import Path

import pytest
from conftest import PAGES, make_tgz, npm_on_path, raw_tgz

from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits
from lodestar.docs.service import DocsService
from lodestar.docs.sources import resolve


def package_json(name: str = "pkg", version: str = "1.0.0") -> dict[str, str]:
    return {"package/package.json": json.dumps({"name": name, "version": version})}


def leftovers(cache_dir: Path) -> list[str]:
    packages = cache_dir / "packages"
    return sorted(p.name for p in packages.iterdir()) if packages.is_dir() else []


# Tarballs


@pytest.mark.parametrize(
    ("limits", "files", "variable"),
    [
        (
            DocsLimits(max_package_members=4),
            {**package_json(), **{f"package/.docs/{i}.md": f"# Page {i}\n" for i in range(4)}},
            "LODESTAR_MAX_PACKAGE_MEMBERS",
        ),
        (
            DocsLimits(max_package_member_bytes=2048),
            {**package_json(), "package/.docs/a.md": "# A\n", "package/lib/blob.wasm": "x" * 4096},
            "LODESTAR_MAX_PACKAGE_MEMBER_BYTES",
        ),
        (
            DocsLimits(max_package_bytes=8192),
            {**package_json(), **{f"package/.docs/{i}.md": "y" * 2000 for i in range(5)}},
            "LODESTAR_MAX_PACKAGE_BYTES",
        ),
    ],
    ids=["members", "member bytes", "total bytes"],
)
def test_a_tarball_over_a_limit_is_refused_by_name(
    limits: DocsLimits, files: dict[str, str], variable: str, tmp_path: Path, cache_dir: Path
) -> None:
    tgz = raw_tgz(tmp_path / "big.tgz", files)
    with pytest.raises(CorpusError, match=r"refused npm tarball big\.tgz") as info:
        resolve(str(tgz), cache_dir, limits)
    field = variable.removeprefix("LODESTAR_").lower()
    assert f"{field}={getattr(limits, field)}" in str(info.value)
    assert variable in str(info.value)
    assert leftovers(cache_dir) == []  # nothing half-unpacked stays behind
    resolve(str(tgz), cache_dir)  # the default limits let it through


def test_a_gzip_bomb_stops_at_max_package_bytes(tmp_path: Path, cache_dir: Path) -> None:
    """64 MiB of zeros in one entry packs to about 64 KiB: unpacking stops at the limit, not at the end."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, size in (("package/.docs/a.md", 4), ("package/zeros.bin", 64 * 1024 * 1024)):
            info = tarfile.TarInfo(name)
            info.size = size
            tar.addfile(info, io.BytesIO(b"# A\n" if size == 4 else bytes(size)))
    tgz = tmp_path / "bomb.tgz"
    tgz.write_bytes(gzip.compress(buffer.getvalue()))
    assert tgz.stat().st_size < 1024 * 1024
    limits = DocsLimits(max_package_bytes=1024 * 1024, max_package_member_bytes=128 * 1024 * 1024)
    with pytest.raises(CorpusError, match=r"its unpacked size exceeds max_package_bytes=1048576") as info:
        resolve(str(tgz), cache_dir, limits)
    assert "LODESTAR_MAX_PACKAGE_BYTES" in str(info.value)


@pytest.mark.parametrize("tar_format", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT], ids=["pax", "gnu"])
def test_a_huge_header_is_not_read_into_memory(tar_format: int, tmp_path: Path, cache_dir: Path) -> None:
    """tarfile reads a pax or GNU long-name header whole: a header past max_package_member_bytes is refused."""
    tgz = tmp_path / "header.tgz"
    with tarfile.open(tgz, "w:gz", format=tar_format) as tar:
        info = tarfile.TarInfo("package/.docs/" + "n" * 8000 + ".md")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"# N\n"))
    with pytest.raises(CorpusError, match="a header at offset 512") as info:
        resolve(str(tgz), cache_dir, DocsLimits(max_package_member_bytes=4096))
    assert "LODESTAR_MAX_PACKAGE_MEMBER_BYTES" in str(info.value)


def test_pages_over_max_page_bytes_are_left_out_of_a_tarball(
    tmp_path: Path, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "pkg", "1.0.0", pages={**PAGES, "huge.md": "# Huge\n" + "z" * 3000})
    caplog.set_level(logging.WARNING)
    source = resolve(str(tgz), cache_dir, DocsLimits(max_page_bytes=2048))
    assert not (source.root / "huge.md").exists()
    assert (source.root / "docs/overview.md").read_text("utf-8") == PAGES["docs/overview.md"]
    (message,) = [r.getMessage() for r in caplog.records if "huge.md" in r.getMessage()]
    assert "max_page_bytes=2048" in message and "LODESTAR_MAX_PAGE_BYTES" in message


def test_the_service_names_the_variable_and_honours_it(
    tmp_path: Path, cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tgz = make_tgz(tmp_path / "pkg.tgz", "pkg", "1.0.0")
    monkeypatch.setenv("LODESTAR_MAX_PACKAGE_MEMBERS", "3")
    refused = DocsService([str(tgz)], cache_dir, bundled=False)
    refused.load()
    assert "LODESTAR_MAX_PACKAGE_MEMBERS" in refused.failures[str(tgz)]
    monkeypatch.setenv("LODESTAR_MAX_PACKAGE_MEMBERS", str(len(PAGES) + 1))
    allowed = DocsService([str(tgz)], cache_dir, bundled=False)
    allowed.load()
    assert allowed.failures == {}
    assert allowed.search("semantic recall").hits[0].corpus == "pkg"
    allowed.close()


# npm: with a fake npm on PATH

FAKE_NPM = """#!{python}
import json, os, shutil, sys
from pathlib import Path

here = Path(__file__).parent
with open(here / "calls.jsonl", "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
destination = sys.argv[sys.argv.index("--pack-destination") + 1]
shutil.copy(here / "package.tgz", Path(destination) / "pkg-1.2.3.tgz")
print(json.dumps([{{"name": "pkg", "version": "1.2.3", "filename": "pkg-1.2.3.tgz"}}]))
"""


@pytest.fixture
def fake_npm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `npm` that records its arguments and packs a local tarball: no network."""
    bin_dir = npm_on_path(tmp_path, monkeypatch, FAKE_NPM.format(python=sys.executable))
    make_tgz(bin_dir / "package.tgz", "pkg", "1.2.3")
    return bin_dir


def npm_calls(bin_dir: Path) -> list[list[str]]:
    calls = bin_dir / "calls.jsonl"
    return [json.loads(line) for line in calls.read_text("utf-8").splitlines()] if calls.exists() else []


@pytest.mark.parametrize(
    "version",
    ["1.2.3", "1.2.3-beta.1", "^1.2.0", "~1.2", ">=1.0.0 <2.0.0", "1.x || 2.x", "1.0.0 - 2.0.0", "*", "latest", "next"],
)
def test_npm_accepts_versions_ranges_and_tags(version: str, fake_npm: Path, cache_dir: Path) -> None:
    source = resolve(f"npm:pkg@{version}", cache_dir)
    assert (source.name, source.version) == ("pkg", "1.2.3")
    assert (source.root / "docs/overview.md").read_text("utf-8") == PAGES["docs/overview.md"]
    (call,) = npm_calls(fake_npm)
    assert call[:2] == ["pack", f"pkg@{version}"]
    assert "--ignore-scripts" in call


@pytest.mark.parametrize(
    "version",
    [
        "https://example.com/pkg.tgz",
        "git+ssh://git@github.com/a/pkg.git",
        "github:a/pkg",
        "a/pkg",
        "file:../pkg",
        "../pkg",
        "./pkg",
        ".",
        "~/pkg",
        "npm:other@1.0.0",
        "1.0.0-a.tgz",
        "pkg.tar.gz",
        "1.0.0#main",
    ],
)
def test_npm_refuses_anything_but_registry_versions(version: str, fake_npm: Path, cache_dir: Path) -> None:
    with pytest.raises(CorpusError, match="invalid npm package spec") as info:
        resolve(f"npm:pkg@{version}", cache_dir)
    assert "exact version, a semver range or a dist-tag" in str(info.value)
    assert npm_calls(fake_npm) == []


def test_npm_packages_unpack_under_the_limits(fake_npm: Path, cache_dir: Path) -> None:
    with pytest.raises(CorpusError, match="LODESTAR_MAX_PACKAGE_MEMBERS"):
        resolve("npm:pkg@1.2.3", cache_dir, DocsLimits(max_package_members=2))


def test_a_hanging_npm_is_stopped_at_npm_timeout_s(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A helper process holds npm's output open: killing npm alone would leave the read waiting for it.
    npm_on_path(tmp_path, monkeypatch, "#!/bin/sh\nsleep 300 &\nwait\n")
    started = time.monotonic()
    with pytest.raises(CorpusError, match=r"did not finish within npm_timeout_s=0\.5 s") as info:
        resolve("npm:pkg@latest", tmp_path / "cache", DocsLimits(npm_timeout_s=0.5))
    assert "LODESTAR_NPM_TIMEOUT_S" in str(info.value)
    assert time.monotonic() - started < 60  # a sanity bound: without the group kill this takes 300 s


def test_npm_output_without_package_details_is_a_corpus_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    npm_on_path(tmp_path, monkeypatch, "#!/bin/sh\necho 'npm notice something'\n")
    with pytest.raises(CorpusError, match="printed no package details"):
        resolve("npm:pkg@latest", tmp_path / "cache")
