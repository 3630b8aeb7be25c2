"""Where indexes and unpacked packages are kept: the cache folder, or a temporary one when it is not writable."""

from __future__ import annotations

import atexit
import logging
import shutil
import tempfile
import threading
from pathlib import Path

log = logging.getLogger(__name__)

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


def package_dir(cache_dir: Path, name: str) -> Path:
    """An unpacked package already in the cache (or this process's fallback), else where to unpack it."""
    for root in cache_roots(cache_dir):
        if (root / "packages" / name / ".complete").exists():
            return root / "packages" / name
    return writable_cache(cache_dir) / "packages" / name
