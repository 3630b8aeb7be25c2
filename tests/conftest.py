"""Shared fixtures: small markdown corpora built per test, and an isolated index cache."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

pytest_plugins = ["llm_servers"]

PAGES = {
    "docs/overview.md": """---
title: Overview
description: What the example product does.
---

# Overview

The example product indexes documentation and answers questions about it.

## Installation

Install the package with `pip install example`. Then run the `example serve` command.

## Background tasks

Long tool calls run as background tasks. The `streamUntilIdle` method waits until every task finishes.
""",
    "docs/agents/memory.md": """# Agent memory

Agents remember previous conversations through threads.

## Threads

A thread stores messages for one conversation. Use `resource_id` to group threads by user.

## Semantic recall

Semantic recall finds older messages similar to the new message.
""",
    "reference/config.md": """# Configuration reference

## maxSteps

`maxSteps` limits how many model calls one run may make.

## PIIDetector

The `PIIDetector` processor redacts emails and phone numbers.

```ts
const detector = new PIIDetector({ strategy: "redact" });
```
""",
    "guides/quickstart.mdx": """import Tabs from '@theme/Tabs';

# Quickstart

<Tabs>
<TabItem value="npm">

Run the quickstart wizard.

</TabItem>
</Tabs>
""",
}


def write_corpus(root: Path, pages: dict[str, str] = PAGES) -> Path:
    for relative, text in pages.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, "utf-8")
    return root


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    return write_corpus(tmp_path / "example-docs")


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("LODESTAR_CACHE_DIR", str(path))
    return path


def raw_tgz(path: Path, files: dict[str, str]) -> Path:
    """A gzipped tarball holding exactly `files` (member name -> text)."""
    with tarfile.open(path, "w:gz") as tar:
        for member, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def make_tgz(
    path: Path, name: str, version: str, docs_dir: str = "package/.docs/", pages: dict[str, str] = PAGES
) -> Path:
    """An npm-style tarball: package/package.json plus the docs under docs_dir."""
    files = {"package/package.json": json.dumps({"name": name, "version": version})}
    files.update({docs_dir + relative: text for relative, text in pages.items()})
    return raw_tgz(path, files)


def npm_on_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str) -> Path:
    """An executable `npm` first on PATH; returns its folder."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    npm = bin_dir / "npm"
    npm.write_text(script, "utf-8")
    npm.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    return bin_dir


@pytest.fixture
def anyio_backend() -> str:
    """The runtime streams through asyncio tasks and queues, so async tests run on asyncio."""
    return "asyncio"


def run_racers(tmp_path: Path, script: str, args: list[str], count: int = 2) -> list[tuple[int, str, str]]:
    """Runs `count` copies of a script that prints "ready" then waits on stdin, releases them at once (the
    barrier), and returns each one's (exit code, stdout, stderr)."""
    path = tmp_path / "racer.py"
    path.write_text(script, "utf-8")
    command = [sys.executable, str(path), *args]
    pipes = {"stdin": subprocess.PIPE, "stdout": subprocess.PIPE, "stderr": subprocess.PIPE}
    procs = [subprocess.Popen(command, text=True, **pipes) for _ in range(count)]  # type: ignore[call-overload]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        outputs = [proc.communicate(timeout=60) for proc in procs]
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, out, err) for proc, (out, err) in zip(procs, outputs, strict=True)]
