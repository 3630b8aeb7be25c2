"""Turn a `--corpus [NAME=]SOURCE` spec into a local markdown tree: a folder, an npm tarball, an npm package."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from lodestar.docs.errors import CorpusError

log = logging.getLogger(__name__)

DOC_SUFFIXES = (".md", ".mdx")
TARBALL_DOC_DIRS = ("package/.docs/", "package/dist/docs/", "package/docs/")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NPM_SPEC = re.compile(r"^(?P<name>(?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)(?:@(?P<version>[^\s/]+))?$", re.I)
_RESOLVE_TTL_S = 24 * 3600


@dataclass(frozen=True, slots=True)
class CorpusSource:
    name: str
    source: str
    root: Path
    version: str | None = None  # package version; None means "content hash of the files"


def read_text(root: Path, relative: str) -> str:
    """A page exactly as stored (no newline translation), so offsets and paging round-trip."""
    with open(root / relative, encoding="utf-8", errors="replace", newline="") as handle:
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


def package_corpus_name(package: str) -> str:
    return package.lstrip("@").replace("/", "-")


def resolve(spec: str, cache_dir: Path) -> CorpusSource:
    name, source = split_spec(spec)
    if not source:
        raise CorpusError(f"empty corpus source in {spec!r}: give a folder, a .tgz file or npm:PACKAGE")
    if source.startswith("npm:"):
        corpus = _from_npm(source.removeprefix("npm:"), cache_dir)
    elif source.endswith((".tgz", ".tar.gz")):
        corpus = _from_tarball(Path(source).expanduser(), cache_dir)
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
    # `.docs` or `My Docs` make no valid name as they are: `docs`, `My-Docs`.
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", root.name).strip(".-_") or "docs"
    return CorpusSource(name=name, source=str(path), root=root)


def _from_tarball(path: Path, cache_dir: Path) -> CorpusSource:
    if not path.is_file():
        raise CorpusError(f"npm tarball {str(path)!r} does not exist")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    target = cache_dir / "packages" / digest
    if not (target / ".complete").exists():
        _extract_docs(path, target)
    meta = _package_json(target)
    return CorpusSource(
        name=package_corpus_name(meta.get("name") or path.stem),
        source=str(path),
        root=target / "docs",
        version=str(meta.get("version") or digest),
    )


def _package_json(folder: Path) -> dict[str, object]:
    """The tarball's package.json, or {} when it has none or a broken one (names then come from the file)."""
    try:
        meta = json.loads((folder / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _extract_docs(tarball: Path, target: Path) -> None:
    """Extract package.json and the docs folder only, into a temporary folder renamed into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with tarfile.open(tarball, "r:gz") as tar:
            members = [m for m in tar.getmembers() if m.isfile()]
            names = {m.name for m in members}
            docs_dir = next((d for d in TARBALL_DOC_DIRS if any(n.startswith(d) for n in names)), None)
            if docs_dir is None:
                raise CorpusError(
                    f"{tarball.name} has no docs: looked for {', '.join(TARBALL_DOC_DIRS)} inside the tarball"
                )
            (staging / "docs").mkdir()
            for member in members:
                _extract_member(tar, member, docs_dir, staging)
        (staging / ".complete").touch()
        _replace_dir(staging, target)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise CorpusError(f"cannot read npm tarball {tarball}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, docs_dir: str, staging: Path) -> None:
    if member.name == "package/package.json":
        relative = "package.json"
    elif member.name.startswith(docs_dir) and member.name.endswith(DOC_SUFFIXES):
        relative = "docs/" + member.name.removeprefix(docs_dir)
    else:
        return
    if ".." in relative.split("/"):
        return
    member = member.replace(name=relative)
    tar.extract(member, staging, filter="data")


def _replace_dir(staging: Path, target: Path) -> None:
    try:
        staging.rename(target)
    except OSError:
        if not (target / ".complete").exists():  # a half-extracted leftover, not a concurrent success
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)


def _from_npm(spec: str, cache_dir: Path) -> CorpusSource:
    match = _NPM_SPEC.match(spec)
    if not match:
        raise CorpusError(f"invalid npm package spec {spec!r}: expected npm:PACKAGE or npm:PACKAGE@VERSION")
    package, wanted = match.group("name"), match.group("version") or "latest"
    packages = cache_dir / "packages"
    version = _resolved_version(packages, package, wanted)
    if version is None or not (packages / _npm_dir(package, version) / ".complete").exists():
        version = _npm_pack(package, wanted, packages)
    target = packages / _npm_dir(package, version)
    return CorpusSource(name=package_corpus_name(package), source=f"npm:{spec}", root=target / "docs", version=version)


def _npm_dir(package: str, version: str) -> str:
    return f"npm-{package_corpus_name(package)}@{version}"


def _resolved_version(packages: Path, package: str, wanted: str) -> str | None:
    """An exact version needs no lookup; a range or tag is remembered for a day, so restarts stay offline."""
    if re.fullmatch(r"\d+\.\d+\.\d+(?:[-+][\w.-]+)?", wanted):
        return wanted
    try:
        entry = json.loads((packages / "resolved.json").read_text("utf-8"))[f"{package}@{wanted}"]
    except (OSError, ValueError, KeyError):
        return None
    return entry["version"] if time.time() - entry["at"] < _RESOLVE_TTL_S else None


def _remember(packages: Path, package: str, wanted: str, version: str) -> None:
    path = packages / "resolved.json"
    try:
        known = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError):
        known = {}
    known[f"{package}@{wanted}"] = {"version": version, "at": time.time()}
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(known), "utf-8")
    os.replace(tmp, path)


def _npm_pack(package: str, wanted: str, packages: Path) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(f"npm:{package} needs the npm CLI on PATH (install Node.js), or pass a .tgz file")
    packages.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=packages, prefix=".pack-") as tmp:
        log.info("fetching %s@%s with npm pack", package, wanted)
        proc = subprocess.run(
            [npm, "pack", f"{package}@{wanted}", "--json", "--pack-destination", tmp],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise CorpusError(f"npm pack {package}@{wanted} failed: {' '.join(detail)}")
        info = json.loads(proc.stdout)[0]
        version = str(info["version"])
        _extract_docs(Path(tmp) / info["filename"], packages / _npm_dir(package, version))
    _remember(packages, package, wanted, version)
    return version
