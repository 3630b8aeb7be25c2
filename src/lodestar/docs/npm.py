"""Fetching `npm:PACKAGE[@VERSION]` with the npm CLI (`npm pack`, scripts off, under a time limit), so the
registry and credentials are npm's own configuration; resolved ranges and tags are remembered for a day."""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lodestar.docs.cache import cache_roots, package_dir, writable_cache
from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits, env_var
from lodestar.docs.tarball import extract_docs

log = logging.getLogger(__name__)

_NPM_SPEC = re.compile(r"^(?P<name>(?:@[a-z0-9][\w.-]*/)?[a-z0-9][\w.-]*)(?:@(?P<version>.*))?$", re.I)
# What `npm:PACKAGE@VERSION` accepts: an exact version, a semver range or a dist-tag. Anything else (a URL,
# a git or github spec, a file path, an `npm:` alias) would make `npm pack` fetch from elsewhere.
_EXACT = re.compile(r"\d+\.\d+\.\d+(?:[-+][\w.-]+)?")
_PARTIAL = r"v?(?:\d+|[xX*])(?:\.(?:\d+|[xX*])){0,2}(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?"
_COMPARATOR = rf"(?:(?:[<>]=?|=|\^|~>?)\s*)?{_PARTIAL}"  # spaces only after an operator: linear
_VERSION = re.compile(rf"{_COMPARATOR}(?:(?:\s*\|\|\s*|\s+-\s+|\s+){_COMPARATOR})*|[A-Za-z][\w-]*")
_TARBALL_NAME = re.compile(r"\.(?:tgz|tar|tar\.gz)$", re.I)  # npm reads `x@1.0.0-a.tgz` as a file
_RESOLVE_TTL_S = 24 * 3600


def package_corpus_name(package: str) -> str:
    return package.lstrip("@").replace("/", "-")


def package_name(spec: str) -> str | None:
    """The package a `PACKAGE[@VERSION]` spec names, or None when it is no valid spec."""
    match = _NPM_SPEC.match(spec)
    return match.group("name") if match else None


def fetch(
    spec: str, cache_dir: Path, limits: DocsLimits, on_fetch: Callable[[], None] | None = None
) -> tuple[str, str, Path]:
    """(package, version, unpacked folder) of `PACKAGE[@VERSION]`, from the cache when it is there;
    `on_fetch` is told before npm is asked, which takes seconds."""
    match = _NPM_SPEC.match(spec)
    if not match or not _valid_version(match.group("version")):
        raise CorpusError(
            f"invalid npm package spec {spec!r}: expected npm:PACKAGE or npm:PACKAGE@VERSION, where VERSION is an "
            "exact version, a semver range or a dist-tag (URLs, git specs, file paths and npm: aliases are refused)"
        )
    package, wanted = match.group("name"), match.group("version") or "latest"
    version = _resolved_version(cache_dir, package, wanted)
    target = package_dir(cache_dir, _npm_dir(package, version)) if version else None
    if version is None or target is None or not (target / ".complete").exists():
        packages = writable_cache(cache_dir) / "packages"
        if on_fetch is not None:
            on_fetch()
        version = _npm_pack(package, wanted, packages, limits)
        target = packages / _npm_dir(package, version)
    return package, version, target


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
            raise CorpusError(f"npm pack {spec} failed: {_npm_reason(out, err)}")
        try:
            info = json.loads(out)[0]
            version, filename = str(info["version"]), Path(str(info["filename"])).name
        except (ValueError, LookupError, TypeError) as exc:
            raise CorpusError(f"npm pack {spec} printed no package details ({exc}): {out.strip()[:200]!r}") from exc
        extract_docs(Path(tmp) / filename, packages / _npm_dir(package, version), limits)
    _remember(packages, package, wanted, version)
    return version


def _npm_reason(out: str, err: str) -> str:
    """npm's own words for a failure: the code, summary and first paragraph of detail of its --json error
    (`E404 Not Found - GET ...: The requested resource ... could not be found`), else its error lines."""
    try:
        error = json.loads(out)["error"]
        parts = [str(error.get("code") or ""), str(error.get("summary") or "")]
        detail = str(error.get("detail") or "").strip().split("\n\n")[0]
        reason = " ".join(p for p in parts if p) + (f": {' '.join(detail.split())}" if detail else "")
        if reason:
            return reason
    except (ValueError, LookupError, TypeError, AttributeError):
        pass
    lines = [line.removeprefix("npm error").removeprefix("npm ERR!").strip() for line in err.splitlines()]
    kept = [line for line in lines if line and not line.startswith("A complete log of this run")]
    return " ".join(kept) or out.strip() or "no reason given"


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
