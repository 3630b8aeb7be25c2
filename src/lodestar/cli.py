"""The `lodestar-mcp` command. No subcommand means `serve` over stdio, so a client config is one line.

Heavy modules (the MCP SDK, Whoosh) are imported inside the commands that need them: start-up is measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shlex
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from lodestar.docs.service import DocsService
    from lodestar.settings import Settings

COMMANDS = ("serve", "search", "read", "list", "corpora", "index")
CONNECT_HELP = """\
Lodestar is an MCP server: it speaks the MCP protocol on stdin/stdout, so it is meant to be
started by an MCP client rather than typed at. To connect it:
  Claude Code:     claude mcp add lodestar -- {launch}
  Claude Desktop, Cursor, VS Code: add a server with command "{command}" and args {args}
  Over HTTP:       {launch} --http   (then point the client at http://127.0.0.1:8765/mcp)
Try it from the shell:  {launch} search "how do I add a corpus"
Waiting for an MCP client on stdin; press Ctrl-C to quit.
"""


def launch_command() -> list[str]:
    """How a client starts this very installation: from a local checkout (uv records its folder in
    the installed package's direct_url.json, PEP 610) `uvx --from PATH lodestar-mcp`, else the
    published `uvx lodestar-mcp`."""
    from importlib import metadata
    from urllib.parse import unquote, urlparse

    try:
        origin = json.loads(metadata.distribution("lodestar-mcp").read_text("direct_url.json") or "{}")
    except (metadata.PackageNotFoundError, ValueError):
        origin = {}
    url = urlparse(origin.get("url", "")) if isinstance(origin, dict) else urlparse("")
    if url.scheme == "file" and "dir_info" in origin:
        return ["uvx", "--from", unquote(url.path), "lodestar-mcp"]
    return ["uvx", "lodestar-mcp"]


def connect_help() -> str:
    command, *args = launch_command()
    return CONNECT_HELP.format(launch=shlex.join([command, *args]), command=command, args=json.dumps(args))


def _common(default: object) -> argparse.ArgumentParser:
    """Flags every command takes, before or after its name; subcommands pass SUPPRESS as the default
    so that a flag given before the subcommand is not reset by it."""
    common = argparse.ArgumentParser(add_help=False, argument_default=default)
    common.add_argument("--corpus", action="append", metavar="[NAME=]SOURCE", help="add a corpus (repeatable)")
    common.add_argument("--app", action="append", dest="apps", metavar="MODULE:ATTR", help="serve an app's agents")
    common.add_argument("--cache-dir", help="index cache folder (default: the user cache directory)")
    common.add_argument("--log-level", help="DEBUG, INFO, WARNING or ERROR (default INFO)")
    return common


_VALUE_FLAGS = frozenset({"--corpus", "--app", "--cache-dir", "--log-level"})


def _needs_serve(argv: list[str]) -> bool:
    """True when no subcommand is named: the first word that is not a flag or a flag's value."""
    tokens = iter(argv)
    for token in tokens:
        if token in ("-h", "--help", "--version"):
            return False
        if token in _VALUE_FLAGS:
            next(tokens, None)
        elif not token.startswith("-"):
            return token not in COMMANDS
    return True


def _parser() -> argparse.ArgumentParser:
    common = _common(argparse.SUPPRESS)
    parser = argparse.ArgumentParser(
        prog="lodestar-mcp", description="MCP server for documentation search and agents.", parents=[_common(None)]
    )
    parser.add_argument("--version", action="version", version=f"lodestar-mcp {_version()}")
    sub = parser.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[common], help="serve MCP over stdio (default) or HTTP")
    serve.add_argument("--model", help="model id for the built-in agent, e.g. openai/gpt-5-mini")
    serve.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio")
    serve.add_argument("--host", help="HTTP host (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="HTTP port (default 8765; 0 picks a free one)")
    serve.add_argument("--auth-token", help="bearer token HTTP clients must send")
    serve.add_argument("--allowed-host", action="append", dest="allowed_hosts", help="extra Host name to accept")
    serve.add_argument("--no-builtin-agents", action="store_true", help="do not serve the built-in agents")
    limits = serve.add_argument_group("HTTP limits")
    limits.add_argument(
        "--session-idle-timeout", type=float, metavar="SECONDS", help="close a session idle this long (default 600)"
    )
    limits.add_argument(
        "--max-sessions", type=int, metavar="N", help="open sessions; at the limit the idlest closes (default 100)"
    )
    limits.add_argument(
        "--header-timeout", type=float, metavar="SECONDS", help="time a client has to send its headers (default 10)"
    )
    limits.add_argument(
        "--body-timeout", type=float, metavar="SECONDS", help="time a client has to send a body (default 30)"
    )
    limits.add_argument(
        "--max-connections",
        type=int,
        metavar="N",
        help="open connections (default min(1000, half the open-file limit))",
    )

    search = sub.add_parser("search", parents=[common], help="search the docs")
    search.add_argument("query")
    search.add_argument("--limit", type=int, default=8)
    search.add_argument("--offset", type=int, default=0)
    search.add_argument("--path-prefix")
    search.add_argument("--json", action="store_true", help="print the structured result")

    read = sub.add_parser("read", parents=[common], help="read a page, or one section of it")
    read.add_argument("path")
    read.add_argument("--heading")
    read.add_argument("--cursor")
    read.add_argument("--max-tokens", type=int, default=100_000)
    read.add_argument("--json", action="store_true")

    listing = sub.add_parser("list", parents=[common], help="list pages and folders")
    listing.add_argument("path_prefix", nargs="?", default="")
    listing.add_argument("--depth", type=int, default=1)
    listing.add_argument("--json", action="store_true")

    corpora = sub.add_parser("corpora", parents=[common], help="list the loaded corpora")
    corpora.add_argument("--json", action="store_true")
    sub.add_parser("index", parents=[common], help="build or refresh every corpus index")
    return parser


def _version() -> str:
    from lodestar import __version__

    return __version__


def main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if _needs_serve(args_list):
        args_list.insert(0, "serve")
    args = _parser().parse_args(args_list)
    from pydantic import ValidationError

    from lodestar.docs.errors import DocsError
    from lodestar.settings import env_var, load_settings

    flags = {k: v for k, v in vars(args).items() if k in _SETTING_FLAGS}
    if args.command == "serve":  # serving: --corpus flags replace LODESTAR_CORPORA; commands add to it
        flags["corpora"] = args.corpus
    try:
        settings = load_settings(flags)
    except ValidationError as exc:
        error = exc.errors()[0]
        field = str(error["loc"][0])
        sys.exit(f"lodestar-mcp: invalid {field} (--{field.replace('_', '-')} or {env_var(field)}): {error['msg']}")
    # Our level applies to our loggers; libraries (markdown-it logs every rule at DEBUG) stay at WARNING.
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lodestar").setLevel(settings.log_level)
    try:
        if args.command == "serve":
            _serve(settings)
        else:
            _run_command(args, settings)
    except DocsError as exc:
        sys.exit(f"lodestar-mcp: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)


_SETTING_FLAGS = frozenset(
    {"corpora", "apps", "model", "http", "host", "port", "auth_token", "allowed_hosts", "no_builtin_agents",
     "cache_dir", "log_level", "session_idle_timeout", "max_sessions", "header_timeout", "body_timeout",
     "max_connections"}
)  # fmt: skip


def _serve(settings: Settings) -> None:
    if sys.stdin.isatty() and not settings.http:
        sys.stderr.write(connect_help())
    from lodestar.server.app import run

    run(settings)


def _service(settings: Settings, specs: list[str]) -> DocsService:
    from lodestar.docs.service import DocsService

    service = DocsService(specs, settings.cache_dir)
    service.load()
    return service


def _run_command(args: argparse.Namespace, settings: Settings) -> None:
    """One-shot commands. Here `--corpus NAME` naming a loaded corpus selects it rather than adding one."""
    specs, selected = _split_corpus_flags(args.corpus or [], settings)
    started = time.perf_counter()
    service = _service(settings, specs)
    for failure in service.failures.values():
        sys.exit(f"lodestar-mcp: {failure}")
    corpus = _selected_name(service, selected)
    from lodestar.docs import render

    result: Any
    if args.command == "search":
        result = service.search(args.query, args.limit, corpus, args.path_prefix, args.offset)
        text = render.render_search(result)
    elif args.command == "read":
        result = service.read(args.path, corpus, args.heading, args.cursor, args.max_tokens)
        text = render.render_page(result)
    elif args.command == "list":
        result = service.list(args.path_prefix, corpus, args.depth)
        text = render.render_list(result)
    elif args.command == "corpora":
        result = service.list_corpora()
        text = render.render_corpora(result)
    else:
        elapsed = time.perf_counter() - started
        text = "\n".join(service.load_notes) + f"\nready in {elapsed:.2f}s"
        result = None
    if getattr(args, "json", False) and result is not None:
        text = result.model_dump_json(indent=2)
    sys.stdout.write(text.rstrip("\n") + "\n")


def _split_corpus_flags(values: list[str], settings: Settings) -> tuple[list[str], list[str]]:
    from lodestar.docs.sources import split_spec

    specs, selected = list(settings.corpora), []
    for value in values:
        name, source = split_spec(value)
        if name is None and _is_plain_name(source):
            selected.append(source)
        else:
            specs.append(value)
            selected.append(value)
    return specs, selected


def _is_plain_name(value: str) -> bool:
    from lodestar.docs.sources import is_valid_name

    return is_valid_name(value) and not value.endswith((".tgz", ".tar.gz")) and not os.path.isdir(value)


def _selected_name(service: DocsService, selected: list[str]) -> str | None:
    names = [service.spec_names.get(item, item) for item in selected]
    return names[0] if len(names) == 1 else None
