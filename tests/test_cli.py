"""The `lodestar-mcp` command line, run as `python -m lodestar` in a subprocess, and the settings precedence."""

from __future__ import annotations

import json
import os
import pty
import selectors
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PAGES, write_corpus
from pydantic import ValidationError

import lodestar
from lodestar.settings import default_cache_dir, load_settings

TIMEOUT_S = 30


def child_env(cache_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LODESTAR_")}
    return env | {"LODESTAR_CACHE_DIR": str(cache_dir)} | extra


def run(cache_dir: Path, *args: str, cwd: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "lodestar", *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=child_env(cache_dir, **env),
        cwd=cwd or cache_dir.parent,
    )


@pytest.fixture
def example(corpus_dir: Path) -> str:
    return f"example={corpus_dir}"


def test_search_json(cache_dir: Path, example: str) -> None:
    proc = run(cache_dir, "search", "streamUntilIdle background tasks", "--corpus", example, "--json")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert set(data) == {"query", "total", "hits", "suggestion", "unavailable", "notes"}
    assert data["query"] == "streamUntilIdle background tasks"
    assert data["hits"], data
    assert {hit["corpus"] for hit in data["hits"]} == {"example"}
    top = data["hits"][0]
    assert (top["path"], top["heading"], top["anchor"]) == ("docs/overview.md", "Background tasks", "background-tasks")
    assert set(top) == {"corpus", "version", "path", "title", "heading", "anchor", "score", "snippet", "also_in"}


def test_search_text(cache_dir: Path, example: str) -> None:
    proc = run(cache_dir, "search", "semantic recall", "--corpus", example)
    assert proc.returncode == 0, proc.stderr
    assert "example:docs/agents/memory.md#semantic-recall" in proc.stdout
    assert "1. Agent memory > Semantic recall" in proc.stdout
    with pytest.raises(json.JSONDecodeError):
        json.loads(proc.stdout)


def test_search_limit(cache_dir: Path, example: str) -> None:
    many = json.loads(run(cache_dir, "search", "run", "--corpus", example, "--json", "--limit", "50").stdout)
    one = json.loads(run(cache_dir, "search", "run", "--corpus", example, "--json", "--limit", "1").stdout)
    assert len(many["hits"]) >= 3
    assert one["hits"] == many["hits"][:1]
    assert one["total"] == many["total"]
    bad = run(cache_dir, "search", "run", "--corpus", example, "--limit", "0")
    assert bad.returncode != 0
    assert "limit" in bad.stderr and bad.stdout == ""


def test_read_whole_page_and_heading(cache_dir: Path, example: str) -> None:
    page = run(cache_dir, "read", "docs/overview.md", "--corpus", example)
    section = run(cache_dir, "read", "docs/overview.md", "--heading", "Installation", "--corpus", example)
    assert page.returncode == 0 and section.returncode == 0, page.stderr + section.stderr
    assert page.stdout == PAGES["docs/overview.md"]
    assert section.stdout == (
        "## Installation\n\nInstall the package with `pip install example`. Then run the `example serve` command.\n"
    )


def test_read_json_without_extension(cache_dir: Path, example: str) -> None:
    proc = run(cache_dir, "read", "docs/agents/memory", "--corpus", example, "--json", "--heading", "threads")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert (data["corpus"], data["path"], data["title"]) == ("example", "docs/agents/memory.md", "Agent memory")
    assert data["content"].startswith("## Threads") and "Semantic recall" not in data["content"]
    assert data["next_cursor"] is None


def test_list_depth(cache_dir: Path, example: str) -> None:
    shallow = run(cache_dir, "list", "--corpus", example)
    deep = run(cache_dir, "list", "--depth", "2", "--corpus", example)
    assert shallow.returncode == 0 and deep.returncode == 0
    assert shallow.stdout.splitlines() == [
        "dir  example:docs/  docs",
        "dir  example:guides/  guides",
        "dir  example:reference/  reference",
    ]
    lines = deep.stdout.splitlines()
    assert "dir  example:docs/agents/  agents" in lines
    assert "doc  example:docs/overview.md  Overview" in lines
    assert "doc  example:guides/quickstart.mdx  Quickstart" in lines
    assert not any("memory.md" in line for line in lines)
    data = json.loads(run(cache_dir, "list", "docs/agents", "--corpus", example, "--json").stdout)
    assert data == {
        "entries": [{"corpus": "example", "path": "docs/agents/memory.md", "title": "Agent memory", "kind": "doc"}]
    }


def test_corpora(cache_dir: Path, example: str, corpus_dir: Path) -> None:
    text = run(cache_dir, "corpora", "--corpus", example)
    data = json.loads(run(cache_dir, "corpora", "--corpus", example, "--json").stdout)
    assert text.returncode == 0
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"lodestar {lodestar.__version__}: ")
    assert lines[0].endswith("(bundled)")
    example_info = data["corpora"][1]
    assert example_info["name"] == "example" and example_info["documents"] == len(PAGES)
    assert lines[1] == (
        f"example {example_info['version']}: {len(PAGES)} pages, {example_info['sections']} sections ({corpus_dir})"
    )


def test_index_prints_one_line_per_corpus(cache_dir: Path, example: str) -> None:
    first = run(cache_dir, "index", "--corpus", example)
    again = run(cache_dir, "index", "--corpus", example)
    assert first.returncode == 0 and again.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert lines[:2] == ["lodestar: built", "example: built"]
    assert len(lines) == 3 and lines[2].startswith("ready in ") and lines[2].endswith("s")
    assert again.stdout.splitlines()[:2] == ["lodestar: cached", "example: cached"]


def test_corpus_name_selects_a_loaded_corpus(cache_dir: Path, corpus_dir: Path) -> None:
    """With the example corpus loaded from LODESTAR_CORPORA, `--corpus lodestar` selects the bundled one."""
    query = "streamUntilIdle background tasks corpus"
    env = {"LODESTAR_CORPORA": f"example={corpus_dir}"}
    everything = json.loads(run(cache_dir, "search", query, "--json", "--limit", "50", **env).stdout)
    bundled = json.loads(
        run(cache_dir, "search", query, "--json", "--limit", "50", "--corpus", "lodestar", **env).stdout
    )
    example = json.loads(
        run(cache_dir, "search", query, "--json", "--limit", "50", "--corpus", "example", **env).stdout
    )
    assert {hit["corpus"] for hit in everything["hits"]} == {"lodestar", "example"}
    assert bundled["hits"] and {hit["corpus"] for hit in bundled["hits"]} == {"lodestar"}
    assert example["hits"] and {hit["corpus"] for hit in example["hits"]} == {"example"}


def test_unknown_page_names_closest_paths(cache_dir: Path, example: str) -> None:
    proc = run(cache_dir, "read", "docs/overveiw.md", "--corpus", example)
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert "docs/overveiw.md" in proc.stderr and "docs/overview.md" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_missing_corpus_folder(cache_dir: Path, tmp_path: Path) -> None:
    missing = tmp_path / "no-such-docs"
    proc = run(cache_dir, "search", "anything", "--corpus", f"mine={missing}")
    assert proc.returncode != 0
    assert proc.stdout == ""
    assert str(missing) in proc.stderr and "does not exist" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_unknown_corpus_name(cache_dir: Path) -> None:
    proc = run(cache_dir, "search", "anything", "--corpus", "nope")
    assert proc.returncode != 0
    assert "nope" in proc.stderr and "lodestar" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_logs_go_to_stderr_and_stdout_has_only_results(cache_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("# Outside\n", "utf-8")
    (corpus_dir / "docs" / "outside.md").symlink_to(outside)  # logged as a warning while indexing
    proc = run(cache_dir, "corpora", "--corpus", f"example={corpus_dir}")
    assert proc.returncode == 0
    assert [line.split(" ", 1)[0] for line in proc.stdout.splitlines()] == ["lodestar", "example"]
    assert "WARNING" in proc.stderr and "outside.md" in proc.stderr


def test_environment_corpora_add_to_command_flags(cache_dir: Path, corpus_dir: Path, tmp_path: Path) -> None:
    other = write_corpus(tmp_path / "other", {"notes.md": "# Notes\n\nSome notes.\n"})
    env_only = run(cache_dir, "corpora", "--json", LODESTAR_CORPORA=f"envdocs={other}")
    both = run(cache_dir, "corpora", "--json", "--corpus", f"example={corpus_dir}", LODESTAR_CORPORA=f"envdocs={other}")
    plain = run(cache_dir, "corpora", "--json")
    names = [[c["name"] for c in json.loads(p.stdout)["corpora"]] for p in (env_only, both, plain)]
    assert names == [["lodestar", "envdocs"], ["lodestar", "envdocs", "example"], ["lodestar"]]


def test_flag_beats_environment_for_log_level(cache_dir: Path) -> None:
    bad_env = run(cache_dir, "corpora", LODESTAR_LOG_LEVEL="LOUD")
    flag_wins = run(cache_dir, "corpora", "--log-level", "warning", LODESTAR_LOG_LEVEL="LOUD")
    bad_flag = run(cache_dir, "corpora", "--log-level", "LOUD")
    assert bad_env.returncode != 0 and "log" in bad_env.stderr.lower()
    assert "Traceback" not in bad_env.stderr
    assert flag_wins.returncode == 0, flag_wins.stderr
    assert bad_flag.returncode != 0 and "log level must be one of" in bad_flag.stderr


def test_version(cache_dir: Path) -> None:
    proc = run(cache_dir, "--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"lodestar-mcp {lodestar.__version__}"


def test_serve_on_a_terminal_prints_connect_instructions(cache_dir: Path) -> None:
    primary, secondary = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "lodestar", "serve"],
        stdin=secondary,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env(cache_dir),
    )
    os.close(secondary)
    assert proc.stderr is not None and proc.stdout is not None
    seen = b""
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stderr, selectors.EVENT_READ)
            deadline = time.monotonic() + TIMEOUT_S
            while b"Waiting for an MCP client" not in seen and time.monotonic() < deadline:
                if selector.select(timeout=deadline - time.monotonic()):
                    chunk = os.read(proc.stderr.fileno(), 4096)
                    if not chunk:
                        break
                    seen += chunk
        assert proc.poll() is None, "the server should be waiting on its terminal"
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=10)
        os.close(primary)
    text = seen.decode()
    assert "Waiting for an MCP client on stdin" in text
    assert f"claude mcp add lodestar -- uvx --from {Path(__file__).resolve().parents[1]} lodestar-mcp" in text
    assert "lodestar-mcp --http" in text
    assert out == b""  # stdout is the protocol channel: the help never goes there


def test_serve_with_piped_stdin_prints_no_instructions(cache_dir: Path) -> None:
    proc = run(cache_dir, "serve")  # stdin is /dev/null: an MCP client, not a person
    assert proc.returncode == 0, proc.stderr
    assert "Waiting for an MCP client" not in proc.stderr
    assert proc.stdout == ""


# lodestar.settings.load_settings, unit tests with an explicit environment.


def test_settings_defaults() -> None:
    settings = load_settings({}, env={})
    assert settings.port == 8765
    assert settings.host == "127.0.0.1"
    assert settings.http is False
    assert settings.corpora == [] and settings.apps == [] and settings.allowed_hosts == []
    assert settings.auth_token is None and settings.model is None
    assert settings.no_bundled is False
    assert settings.log_level == "INFO"
    assert settings.cache_dir == default_cache_dir()


def test_settings_from_environment() -> None:
    env = {
        "LODESTAR_PORT": "9001",
        "LODESTAR_HOST": "0.0.0.0",
        "LODESTAR_AUTH_TOKEN": "tok",
        "LODESTAR_MODEL": "openai/gpt-5-mini",
        "LODESTAR_CACHE_DIR": "/tmp/lodestar-cache",
        "LODESTAR_LOG_LEVEL": "debug",
        "LODESTAR_CORPORA": "a=./docs, npm:@scope/pkg@1.2.3,, ,b=x.tgz",
        "LODESTAR_APPS": "pkg.mod:app",
        "LODESTAR_ALLOWED_HOSTS": "docs.internal,example.org",
    }
    settings = load_settings({}, env=env)
    assert settings.port == 9001
    assert settings.host == "0.0.0.0"
    assert settings.auth_token == "tok"
    assert settings.model == "openai/gpt-5-mini"
    assert settings.cache_dir == Path("/tmp/lodestar-cache")
    assert settings.log_level == "DEBUG"
    assert settings.corpora == ["a=./docs", "npm:@scope/pkg@1.2.3", "b=x.tgz"]
    assert settings.apps == ["pkg.mod:app"]
    assert settings.allowed_hosts == ["docs.internal", "example.org"]


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1", True), ("true", True), ("TRUE", True), ("yes", True), (" on ", True), ("0", False), ("false", False),
     ("no", False), ("off", False)],
)  # fmt: skip
def test_settings_boolean_parsing(value: str, expected: bool) -> None:
    env = {"LODESTAR_HTTP": value, "LODESTAR_NO_BUILTIN_AGENTS": value, "LODESTAR_NO_BUNDLED": value}
    settings = load_settings({}, env=env)
    assert settings.http is expected
    assert settings.no_builtin_agents is expected
    assert settings.no_bundled is expected


def test_settings_flag_beats_environment_beats_default() -> None:
    env = {"LODESTAR_PORT": "9001", "LODESTAR_CORPORA": "env=./a", "LODESTAR_HOST": "127.0.0.2", "LODESTAR_HTTP": "1"}
    flags = {"port": 1234, "corpora": ["flag=./b"], "host": None, "http": False, "log_level": None}
    settings = load_settings(flags, env=env)
    assert settings.port == 1234  # flag
    assert settings.corpora == ["flag=./b"]  # flag
    assert settings.host == "127.0.0.2"  # unset flag: environment
    assert settings.http is True  # a store_true flag left off does not override the environment
    assert settings.log_level == "INFO"  # neither: default
    assert load_settings({"corpora": []}, env=env).corpora == ["env=./a"]  # an empty list is "not given"


def test_settings_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LODESTAR_PORT", "4321")
    assert load_settings({}).port == 4321
    assert load_settings({}, env={}).port == 8765


@pytest.mark.parametrize(
    ("flags", "env"),
    [
        ({"log_level": "LOUD"}, {}),
        ({}, {"LODESTAR_LOG_LEVEL": "verbose"}),
        ({}, {"LODESTAR_PORT": "70000"}),
        ({}, {"LODESTAR_PORT": "eighty"}),
        ({"port": -1}, {}),
    ],
)
def test_settings_invalid_values_are_rejected(flags: dict[str, object], env: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        load_settings(flags, env=env)


def test_settings_valid_flag_overrides_invalid_environment() -> None:
    settings = load_settings({"log_level": "warning"}, env={"LODESTAR_LOG_LEVEL": "verbose"})
    assert settings.log_level == "WARNING"


# Defects found while writing these tests.


def test_shared_flags_before_the_subcommand(cache_dir: Path, example: str) -> None:
    proc = run(cache_dir, "--corpus", example, "search", "semantic recall", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["hits"][0]["path"] == "docs/agents/memory.md"


def test_the_banner_names_the_checkout_it_runs_from(monkeypatch: pytest.MonkeyPatch) -> None:
    from importlib import metadata

    from lodestar.cli import connect_help, launch_command

    checkout = Path(__file__).resolve().parents[1]
    assert launch_command() == ["uvx", "--from", str(checkout), "lodestar-mcp"]  # uv sync installs the checkout
    assert f"claude mcp add lodestar -- uvx --from {checkout} lodestar-mcp\n" in connect_help()

    def published(name: str) -> metadata.Distribution:
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "distribution", published)
    assert launch_command() == ["uvx", "lodestar-mcp"]
    assert 'command "uvx" and args ["lodestar-mcp"]' in connect_help()


# A CLI that teaches (issue 9, point 9).


@pytest.mark.parametrize("command", ["serve", "search", "read", "list", "corpora", "index"])
def test_every_command_help_has_a_description_defaults_and_examples(cache_dir: Path, command: str) -> None:
    proc = run(cache_dir, command, "--help")
    assert proc.returncode == 0, proc.stderr
    usage, description = proc.stdout.split("\n\n")[:2]
    assert usage.startswith(f"usage: lodestar-mcp {command}")
    assert len(description) > 30 and not description.startswith(("options", "positional"))
    assert "(default" in proc.stdout
    examples = proc.stdout.split("examples:\n", 1)[1].splitlines()
    assert [line for line in examples if line.strip().startswith(f"lodestar-mcp {command}")] or command == "serve"
    assert all(len(line) <= 90 for line in proc.stdout.splitlines()), "help lines fit a terminal"


def test_top_level_help_lists_commands_and_examples(cache_dir: Path) -> None:
    proc = run(cache_dir, "--help")
    assert proc.returncode == 0
    for command in ("serve", "search", "read", "list", "corpora", "index"):
        assert f"\n    {command} " in proc.stdout
    assert 'examples:\n  lodestar-mcp search "' in proc.stdout
    assert "Without a command, lodestar-mcp runs `serve`." in proc.stdout


@pytest.mark.parametrize(
    ("args", "word", "guess"),
    [(["serch", "tasks"], "serch", "search"), (["lst"], "lst", "list"),
     (["--corpus", "x=./docs", "raed", "p.md"], "raed", "read"),
     (["--log-level", "warning", "coprora"], "coprora", "corpora")],
)  # fmt: skip
def test_unknown_command_suggests_the_closest(cache_dir: Path, args: list[str], word: str, guess: str) -> None:
    proc = run(cache_dir, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith(f"lodestar-mcp: unknown command {word!r}; did you mean {guess!r}?")
    assert "Commands: serve, search, read, list, corpora, index" in proc.stderr


def test_unknown_word_without_a_close_command_lists_the_commands(cache_dir: Path) -> None:
    proc = run(cache_dir, "how do I add a corpus")
    assert proc.returncode == 2
    assert proc.stderr == (
        "lodestar-mcp: unknown command 'how do I add a corpus'. Commands: serve, search, read, list, corpora, index, "
        "agents, ask, tasks (lodestar-mcp --help describes them)\n"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [(["serve", "--port", "9000"], "--port only applies"), (["--port", "9000"], "--port only applies"),
     (["serve", "--host=0.0.0.0", "--port", "1"], "--host and --port only apply"),
     (["serve", "--auth-token", "a-long-enough-token-for-sure"], "--auth-token only applies")],
)  # fmt: skip
def test_http_flags_without_http_are_an_error(cache_dir: Path, args: list[str], named: str) -> None:
    proc = run(cache_dir, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert named in proc.stderr
    assert "add --http (or set LODESTAR_HTTP=1)" in proc.stderr


def test_http_flags_with_http_from_the_environment_are_accepted(cache_dir: Path) -> None:
    """LODESTAR_HTTP=1 counts as --http: the run goes on to check the port itself (70000 is out of range)."""
    proc = run(cache_dir, "serve", "--port", "70000", LODESTAR_HTTP="1")
    assert proc.returncode != 0
    assert "only applies" not in proc.stderr
    assert "invalid port" in proc.stderr


def test_no_bundled_leaves_out_the_bundled_corpus(cache_dir: Path, example: str) -> None:
    flag = run(cache_dir, "corpora", "--json", "--no-bundled", "--corpus", example)
    env = run(cache_dir, "corpora", "--json", "--corpus", example, LODESTAR_NO_BUNDLED="1")
    both = run(cache_dir, "corpora", "--json", "--corpus", example)
    names = [[c["name"] for c in json.loads(p.stdout)["corpora"]] for p in (flag, env, both)]
    assert names == [["example"], ["example"], ["lodestar", "example"]]


@pytest.mark.parametrize("args", [["search", "tasks", "--no-bundled"], ["--no-bundled"], ["index", "--no-bundled"]])
def test_no_corpus_at_all_is_a_start_up_error(cache_dir: Path, args: list[str]) -> None:
    proc = run(cache_dir, *args)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.startswith("lodestar-mcp: no corpus to use: --no-bundled (or LODESTAR_NO_BUNDLED)")
    assert "--corpus NAME=SOURCE" in proc.stderr


def test_read_in_a_shell_says_how_to_continue_with_cursor(cache_dir: Path, tmp_path: Path) -> None:
    text = "# Long\n\n" + "".join(f"## Part {i}\n\n" + "Words about lighthouses. " * 30 + "\n\n" for i in range(6))
    docs = write_corpus(tmp_path / "long", {"long.md": text})
    base = ["read", "long.md", "--corpus", f"long={docs}", "--max-tokens", "200"]
    parts, cursor = [], None
    for _ in range(50):
        proc = run(cache_dir, *base, *(["--cursor", cursor] if cursor else []))
        assert proc.returncode == 0, proc.stderr
        parts.append(proc.stdout)
        if "[continues" not in proc.stderr:
            break
        assert "read_doc" not in proc.stderr and "continues" not in proc.stdout
        cursor = proc.stderr.split("--cursor ", 1)[1].split(" for the next part]", 1)[0]
    assert len(parts) >= 3
    assert "".join(parts).replace("\n", "") == text.replace("\n", "")  # each part ends in one newline, added
    as_json = json.loads(run(cache_dir, *base, "--json").stdout)
    assert as_json["next_cursor"]


def test_search_text_in_a_shell_has_no_markdown_bold(cache_dir: Path, example: str) -> None:
    text = run(cache_dir, "search", "semantic recall", "--corpus", example)
    data = json.loads(run(cache_dir, "search", "semantic recall", "--corpus", example, "--json").stdout)
    assert "**" in data["hits"][0]["snippet"]
    assert text.returncode == 0 and "**" not in text.stdout
    assert data["hits"][0]["snippet"].replace("**", "") in text.stdout


def test_counts_of_one_are_singular_in_a_shell(cache_dir: Path, tmp_path: Path) -> None:
    single = write_corpus(tmp_path / "single", {"one.md": "# Only page\n\nA lone quokka lives here.\n"})
    search = run(cache_dir, "search", "quokka", "--corpus", f"single={single}")
    corpora = run(cache_dir, "corpora", "--corpus", f"single={single}", "--no-bundled")
    assert search.stdout.startswith("1 result for 'quokka' (1 matching page):\n"), search.stdout
    assert corpora.stdout.endswith(f": 1 page, 1 section ({single})\n"), corpora.stdout


@pytest.fixture
def two_corpora(tmp_path: Path) -> tuple[str, str]:
    """Two corpora that both answer "release"; folders named like the corpora, to test that a name still picks."""
    write_corpus(tmp_path / "a", {"notes.md": "# Alpha notes\n\n## Release\n\nHow alpha makes a release.\n"})
    write_corpus(tmp_path / "b", {"notes.md": "# Beta notes\n\n## Release\n\nHow beta makes a release.\n"})
    return "a=./a", "b=./b"


def test_search_one_of_several_corpora(cache_dir: Path, two_corpora: tuple[str, str]) -> None:
    a, b = two_corpora

    def corpora_of(*args: str, **env: str) -> set[str]:
        proc = run(cache_dir, "search", "release", "--json", "--limit", "50", *args, **env)
        assert proc.returncode == 0, proc.stderr
        return {hit["corpus"] for hit in json.loads(proc.stdout)["hits"]}

    assert corpora_of("--corpus", a, "--corpus", b) >= {"a", "b"}
    assert corpora_of("--corpus", a, "--corpus", b, "--corpus", "b") == {"b"}  # ./b is a folder, yet b is named
    assert corpora_of("--corpus", "a", "--corpus", a, "--corpus", b) == {"a"}  # the order does not matter
    assert corpora_of("--corpus", "b", LODESTAR_CORPORA=f"{a},{b}") == {"b"}
    assert corpora_of("--corpus", a) == {"a"}  # one source: only it


def test_two_corpus_names_or_an_unknown_one_are_errors(cache_dir: Path, two_corpora: tuple[str, str]) -> None:
    a, b = two_corpora
    two = run(cache_dir, "search", "release", "--corpus", a, "--corpus", b, "--corpus", "a", "--corpus", "b")
    unknown = run(cache_dir, "search", "release", "--corpus", a, "--corpus", "nope")
    assert two.returncode == 2 and two.stdout == ""
    assert "--corpus a and --corpus b: a command looks in one corpus" in two.stderr
    assert unknown.returncode == 2 and unknown.stdout == ""
    assert "no corpus named 'nope' is loaded (loaded: lodestar, a)" in unknown.stderr
    assert "pass --corpus nope=SOURCE" in unknown.stderr
