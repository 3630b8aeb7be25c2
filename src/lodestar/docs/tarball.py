"""Unpacking the docs of an npm tarball, which is untrusted: its entry count, entry sizes and unpacked size
are bounded, pages over the page limit are left out, and nothing is written outside a staging folder."""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path

from lodestar.docs.errors import CorpusError
from lodestar.docs.limits import DocsLimits, env_var
from lodestar.docs.scan import DOC_SUFFIXES

log = logging.getLogger(__name__)

TARBALL_DOC_DIRS = ("package/.docs/", "package/dist/docs/", "package/docs/")


def extract_docs(tarball: Path, target: Path, limits: DocsLimits) -> None:
    """Extract package.json and the docs folder only, into a temporary folder renamed into place.

    The tarball is untrusted: its entry count, entry sizes and unpacked size are bounded by `limits`."""
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with (
            gzip.open(tarball, "rb") as raw,
            # typeshed's fileobj protocol wants write() and close() too; tarfile calls neither when reading
            tarfile.open(fileobj=_BoundedStream(raw, tarball, limits), mode="r:") as tar,  # type: ignore[call-overload]
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

    def __init__(self, raw: gzip.GzipFile, tarball: Path, limits: DocsLimits) -> None:
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


def package_json(folder: Path) -> dict[str, object]:
    """The tarball's package.json, or {} when it has none or a broken one (names then come from the file)."""
    try:
        meta = json.loads((folder / "package.json").read_text("utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}
