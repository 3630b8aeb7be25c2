"""The Python API as documented: the examples of the docs-from-Python guide and of the python-api
reference run and print what the text says, and the names the reference gives exist.

Convention for examples: a ```python block followed by a ```text block, before the next heading or
code block of any other kind, is an example, and that text block is its exact output. Each example runs
in its own process, in a folder holding a `handbook` corpus (conftest.PAGES), with the user cache
directory moved into that folder. Other python blocks are fragments or signatures and are not run.
"""

from __future__ import annotations

import itertools
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import write_corpus
from pydantic import BaseModel

from lodestar.docs import models
from lodestar.docs.service import DocsService

DOCS = Path(__file__).resolve().parents[1] / "docs_corpus"
GUIDE = DOCS / "guides" / "docs-from-python.md"
REFERENCE = DOCS / "reference" / "python-api.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\n", re.M | re.S)


@dataclass(frozen=True)
class Example:
    page: str
    line: int
    code: str
    output: str


def blocks(text: str) -> list[tuple[int, str, str, str]]:
    """Each fenced block as (line, language, body, text since the previous block)."""
    found, last = [], 0
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1), match.group(2), text[last : match.start()]))
        last = match.end()
    return found


def examples(path: Path) -> list[Example]:
    found = blocks(path.read_text("utf-8"))
    return [
        Example(path.name, line, code, output)
        for (line, lang, code, _), (_, next_lang, output, between) in itertools.pairwise(found)
        if lang == "python" and next_lang == "text" and not re.search(r"^#", between, re.M)
    ]


def lodestar_docs_section() -> str:
    text = REFERENCE.read_text("utf-8")
    start = text.index("\n## lodestar.docs\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


ALL_EXAMPLES = examples(GUIDE) + examples(REFERENCE)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("docs-api")
    write_corpus(root / "handbook")
    return root


def test_the_pages_have_examples() -> None:
    """Guards the convention: a reworded page must not silently leave its examples untested."""
    assert len(examples(GUIDE)) >= 5
    assert len(examples(REFERENCE)) >= 1


@pytest.mark.parametrize("example", ALL_EXAMPLES, ids=lambda e: f"{e.page}:{e.line}")
def test_example_prints_what_the_page_says(example: Example, workdir: Path) -> None:
    home = workdir / "home"
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / ".cache"), "LOCALAPPDATA": str(home)}
    env.pop("LODESTAR_CACHE_DIR", None)
    done = subprocess.run(
        [sys.executable, "-c", example.code], cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip("\n") == example.output.rstrip("\n")
    assert sorted(p.name for p in workdir.iterdir()) == ["handbook", "home"]  # the cache went to the user's


def test_guide_fragments_are_python() -> None:
    for line, lang, code, _ in blocks(GUIDE.read_text("utf-8")):
        if lang == "python":
            compile(code, f"{GUIDE.name}:{line}", "exec")


def test_every_docs_service_name_in_the_reference_exists(tmp_path: Path) -> None:
    names = set(re.findall(r"`(?:await )?docs\.(\w+)", lodestar_docs_section()))
    assert {"load", "asearch", "aread", "wait_loaded", "failures"} <= names  # the pattern still matches
    service = DocsService([], tmp_path, bundled=False)
    missing = sorted(name for name in names if not hasattr(service, name))
    assert not missing, f"the reference names DocsService members that do not exist: {missing}"


def field_table(section: str, heading: str) -> set[str]:
    """The field names in the first column of the table under `### heading`."""
    body = section.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    cells = re.findall(r"^\| ((?:`\w+`(?:, )?)+) \|", body, re.M)
    return {name for cell in cells for name in re.findall(r"`(\w+)`", cell)}


@pytest.mark.parametrize(
    ("heading", "model"),
    [
        ("SearchResult", models.SearchResult),
        ("SearchHit", models.SearchHit),
        ("DocPage", models.DocPage),
        ("Heading", models.Heading),
        ("ListResult and ListEntry", models.ListEntry),
        ("CorporaResult and CorpusInfo", models.CorpusInfo),
        ("HealthReport", models.HealthReport),
    ],
)
def test_result_tables_list_every_field(heading: str, model: type[BaseModel]) -> None:
    assert field_table(lodestar_docs_section(), heading) == set(model.model_fields)


def test_one_field_wrappers_are_as_documented() -> None:
    section = lodestar_docs_section()
    assert set(models.ListResult.model_fields) == {"entries"} and "`entries: list[ListEntry]`" in section
    assert set(models.CorporaResult.model_fields) == {"corpora"} and "`corpora: list[CorpusInfo]`" in section
