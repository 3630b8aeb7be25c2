"""Turn a `--corpus [NAME=]SOURCE` spec into a local markdown tree: a folder, an npm tarball, an npm package."""

from __future__ import annotations

import atexit
import errno
import gzip
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
import threading
import time
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits, env_var

log = logging.getLogger(__name__)

DOC_SUFFIXES = (".md", ".mdx")
TARBALL_DOC_DIRS = ("package/.docs/", "package/dist/docs/", "package/docs/")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_NPM_SPEC = re.compile(r"^(?P<name>(?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)(?:@(?P<version>.*))?$", re.I)
# What `npm:PACKAGE@VERSION` accepts: an exact version, a semver range or a dist-tag. Anything else (a URL,
# a git or github spec, a file path, an `npm:` alias) would make `npm pack` fetch from elsewhere.
_EXACT = re.compile(r"\d+\.\d+\.\d+(?:[-+][\w.-]+)?")
_PARTIAL = r"v?(?:\d+|[xX*])(?:\.(?:\d+|[xX*])){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
_COMPARATOR = rf"(?:[<>]=?|=|\^|~>?)?\s*{_PARTIAL}"
_VERSION = re.compile(rf"{_COMPARATOR}(?:(?:\s*\|\|\s*|\s+-\s+|\s+){_COMPARATOR})*|[A-Za-z][\w-]*")
_TARBALL_NAME = re.compile(r"\.(?:tgz|tar|tar\.gz)$", re.I)  # npm reads `x@1.0.0-a.tgz` as a file
_RESOLVE_TTL_S = 24 * 3600


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


_fallback_lock = threading.Lock()
_fallbacks: dict[Path, Path] = {}  # cache folder -> where this process writes instead (itself when writable)


def writable_cache(cache_dir: Path) -> Path:
    """`cache_dir`, or when its indexes or packages cannot be written there, a temporary folder for this
    process (removed at exit), so a read-only cache costs rebuilds instead of failing the corpora."""
    with _fallback_lock:
        if cache_dir not in _fallbacks:
            _fallbacks[cache_dir] = _check_writable(cache_dir)
        return _fallbacks[cache_dir]


def cache_roots(cache_dir: Path) -> list[Path]:
    """Where cached indexes and packages may be found: the cache, then this process's fallback if it has one."""
    fallback = _fallbacks.get(cache_dir, cache_dir)
    return [cache_dir] if fallback == cache_dir else [cache_dir, fallback]


def _check_writable(cache_dir: Path) -> Path:
    try:
        for sub in ("indexes", "packages"):
            (cache_dir / sub).mkdir(parents=True, exist_ok=True)
            tempfile.TemporaryFile(dir=cache_dir / sub).close()
        return cache_dir
    except OSError as exc:
        fallback = Path(tempfile.mkdtemp(prefix="lodestar-cache-"))
        atexit.register(shutil.rmtree, fallback, ignore_errors=True)
        log.warning(
            "cache folder %s is not writable (%s): indexes and packages go to %s until this process exits; "
            "set LODESTAR_CACHE_DIR to a writable folder to keep them",
            cache_dir,
            exc.strerror or exc,
            fallback,
        )
        return fallback


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


def resolve(spec: str, cache_dir: Path, limits: DocsLimits | None = None) -> CorpusSource:
    limits = limits or DocsLimits()
    name, source = split_spec(spec)
    if not source:
        raise CorpusError(f"empty corpus source in {spec!r}: give a folder, a .tgz file or npm:PACKAGE")
    if source.startswith("npm:"):
        corpus = _from_npm(source.removeprefix("npm:"), cache_dir, limits)
    elif source.endswith((".tgz", ".tar.gz")):
        corpus = _from_tarball(Path(source).expanduser(), cache_dir, limits)
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


def _from_tarball(path: Path, cache_dir: Path, limits: DocsLimits) -> CorpusSource:
    if not path.is_file():
        raise CorpusError(f"npm tarball {str(path)!r} does not exist")
    with open(path, "rb") as handle:
        digest = hashlib.file_digest(handle, "sha256").hexdigest()[:16]
    target = _package_dir(cache_dir, digest)
    if not (target / ".complete").exists():
        _extract_docs(path, target, limits)
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


def _package_dir(cache_dir: Path, name: str) -> Path:
    """An unpacked package already in the cache (or this process's fallback), else where to unpack it."""
    for root in cache_roots(cache_dir):
        if (root / "packages" / name / ".complete").exists():
            return root / "packages" / name
    return writable_cache(cache_dir) / "packages" / name


def _extract_docs(tarball: Path, target: Path, limits: DocsLimits) -> None:
    """Extract package.json and the docs folder only, into a temporary folder renamed into place.

    The tarball is untrusted: its entry count, entry sizes and unpacked size are bounded by `limits`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with (
            gzip.open(tarball, "rb") as raw,
            tarfile.open(fileobj=_BoundedStream(raw, tarball, limits), mode="r:") as tar,
        ):
            members = _members(tar, tarball, limits)
            names = {m.name for m in members}
            docs_dir = next((d for d in TARBALL_DOC_DIRS if any(n.startswith(d) for n in names)), None)
            if docs_dir is None:
                raise CorpusError(
                    f"{tarball.name} has no docs: looked for {', '.join(TARBALL_DOC_DIRS)} inside the tarball"
                )
            (staging / "docs").mkdir()
            for member in members:
                _extract_member(tar, member, docs_dir, staging, limits.max_page_bytes)
        (staging / ".complete").touch()
        _replace_dir(staging, target)
    except (tarfile.TarError, OSError, EOFError, zlib.error) as exc:
        raise CorpusError(f"cannot read npm tarball {tarball}: {exc}") from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _members(tar: tarfile.TarFile, tarball: Path, limits: DocsLimits) -> list[tarfile.TarInfo]:
    """The tarball's regular files, read header by header so a limit stops it before the rest is unpacked."""
    files = []
    for count, member in enumerate(tar, 1):
        if count > limits.max_package_members:
            raise _over_limit(tarball, "max_package_members", limits, "its number of entries")
        if member.size > limits.max_package_member_bytes:
            what = f"entry {member.name} ({member.size} bytes)"
            raise _over_limit(tarball, "max_package_member_bytes", limits, what)
        if member.offset_data + member.size > limits.max_package_bytes:
            raise _over_limit(tarball, "max_package_bytes", limits, "its unpacked size")
        if member.isfile():
            files.append(member)
    return files


def _over_limit(tarball: Path, field: str, limits: DocsLimits, what: str) -> CorpusError:
    return CorpusError(
        f"refused npm tarball {tarball.name}: {what} exceeds {field}={getattr(limits, field)}; "
        f"if you trust the package, set {env_var(field)} higher"
    )


class _BoundedStream:
    """The unpacked tar stream, read no further than max_package_bytes and in reads no larger than
    max_package_member_bytes (tarfile reads a pax or long-name header whole, whatever size it claims)."""

    def __init__(self, raw: IO[bytes], tarball: Path, limits: DocsLimits) -> None:
        self.raw, self.tarball, self.limits = raw, tarball, limits

    def read(self, size: int = -1) -> bytes:
        if not 0 <= size <= self.limits.max_package_member_bytes:
            what = f"a header at offset {self.raw.tell()} ({size} bytes)"
            raise _over_limit(self.tarball, "max_package_member_bytes", self.limits, what)
        self._check(self.raw.tell() + size)
        return self.raw.read(size)

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        self._check(offset if whence == os.SEEK_SET else self.raw.tell() + offset)
        return self.raw.seek(offset, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def _check(self, position: int) -> None:
        # _members checks each entry's end; this catches headers that claim more. A tar stream ends with
        # two empty blocks and is padded to whole records: allow for them.
        if position > self.limits.max_package_bytes + tarfile.RECORDSIZE:
            raise _over_limit(self.tarball, "max_package_bytes", self.limits, "its unpacked size")


def _extract_member(
    tar: tarfile.TarFile, member: tarfile.TarInfo, docs_dir: str, staging: Path, max_page_bytes: int
) -> None:
    if member.name == "package/package.json":
        relative = "package.json"
    elif member.name.startswith(docs_dir) and member.name.endswith(DOC_SUFFIXES):
        relative = "docs/" + member.name.removeprefix(docs_dir)
    else:
        return
    if ".." in relative.split("/"):
        return
    if member.size > max_page_bytes:
        log.warning(
            "skipping %s in the package: %d bytes is over max_page_bytes=%d (set %s to index it)",
            member.name,
            member.size,
            max_page_bytes,
            env_var("max_page_bytes"),
        )
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


def _from_npm(spec: str, cache_dir: Path, limits: DocsLimits) -> CorpusSource:
    match = _NPM_SPEC.match(spec)
    if not match or not _valid_version(match.group("version")):
        raise CorpusError(
            f"invalid npm package spec {spec!r}: expected npm:PACKAGE or npm:PACKAGE@VERSION, where VERSION is an "
            "exact version, a semver range or a dist-tag (URLs, git specs, file paths and npm: aliases are refused)"
        )
    package, wanted = match.group("name"), match.group("version") or "latest"
    version = _resolved_version(cache_dir, package, wanted)
    target = _package_dir(cache_dir, _npm_dir(package, version)) if version else None
    if version is None or target is None or not (target / ".complete").exists():
        packages = writable_cache(cache_dir) / "packages"
        version = _npm_pack(package, wanted, packages, limits)
        target = packages / _npm_dir(package, version)
    return CorpusSource(name=package_corpus_name(package), source=f"npm:{spec}", root=target / "docs", version=version)


def _valid_version(wanted: str | None) -> bool:
    return wanted is None or bool(_VERSION.fullmatch(wanted) and not _TARBALL_NAME.search(wanted))


def _npm_dir(package: str, version: str) -> str:
    return f"npm-{package_corpus_name(package)}@{version}"


def _resolved_version(cache_dir: Path, package: str, wanted: str) -> str | None:
    """An exact version needs no lookup; a range or tag is remembered for a day, so restarts stay offline."""
    if _EXACT.fullmatch(wanted):
        return wanted
    for root in cache_roots(cache_dir):
        try:
            entry = json.loads((root / "packages" / "resolved.json").read_text("utf-8"))[f"{package}@{wanted}"]
        except (OSError, ValueError, KeyError):
            continue
        if time.time() - entry["at"] < _RESOLVE_TTL_S:
            return str(entry["version"])
    return None


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


def _npm_pack(package: str, wanted: str, packages: Path, limits: DocsLimits) -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise CorpusError(f"npm:{package} needs the npm CLI on PATH (install Node.js), or pass a .tgz file")
    packages.mkdir(parents=True, exist_ok=True)
    spec = f"{package}@{wanted}"
    with tempfile.TemporaryDirectory(dir=packages, prefix=".pack-") as tmp:
        log.info("fetching %s with npm pack", spec)
        command = [npm, "pack", spec, "--ignore-scripts", "--json", "--pack-destination", tmp]
        returncode, out, err = _run(command, spec, limits.npm_timeout_s)
        if returncode != 0:
            detail = (err or out).strip().splitlines()[-3:]
            raise CorpusError(f"npm pack {spec} failed: {' '.join(detail)}")
        try:
            info = json.loads(out)[0]
            version, filename = str(info["version"]), Path(str(info["filename"])).name
        except (ValueError, LookupError, TypeError) as exc:
            raise CorpusError(f"npm pack {spec} printed no package details ({exc}): {out.strip()[:200]!r}") from exc
        _extract_docs(Path(tmp) / filename, packages / _npm_dir(package, version), limits)
    _remember(packages, package, wanted, version)
    return version


def _run(command: list[str], spec: str, timeout_s: float) -> tuple[int, str, str]:
    """Runs npm in a process group of its own, so a timeout also ends the helpers that hold its pipes open."""
    with subprocess.Popen(
        command,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            if hasattr(os, "killpg"):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.kill()
            proc.communicate()
            raise CorpusError(
                f"npm pack {spec} did not finish within npm_timeout_s={timeout_s:g} s: check the network and "
                f"registry, or set {env_var('npm_timeout_s')} higher"
            ) from None
    return proc.returncode, out, err
