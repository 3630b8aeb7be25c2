"""The `lodestar-mcp` command. No subcommand means `serve` over stdio, so a client config is one line.

Heavy modules (the MCP SDK, Whoosh) are imported inside the commands that need them: start-up is measured.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn

if TYPE_CHECKING:
    from lodestar.docs.service import DocsService
    from lodestar.settings import Settings

COMMANDS = ("serve", "search", "read", "list", "corpora", "index", "agents", "ask", "tasks")
AGENT_COMMANDS = ("agents", "ask", "tasks")  # lodestar.cli_agents runs them
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


EXAMPLES = """\
examples:
  lodestar-mcp search "how do I add a corpus"
  lodestar-mcp read docs/corpora.md --heading "Adding corpora"
  # serve your docs to an MCP client over stdio:
  lodestar-mcp --corpus mydocs=/abs/path/to/docs
  # serve over HTTP at http://127.0.0.1:8765/mcp:
  lodestar-mcp serve --http --port 8765

Without a command, lodestar-mcp runs `serve`.
Run lodestar-mcp COMMAND --help for the options of a command.
"""
WHERE_HELP = """\
where it looks:
  In every loaded corpus: the bundled "lodestar", those in LODESTAR_CORPORA
  and each --corpus source. But --corpus NAME, a plain name that is not a
  folder, looks only in the loaded corpus NAME; and a single --corpus source,
  when no NAME is given, looks only in that source.

"""
SERVE_EXAMPLES = """\
examples:
  lodestar-mcp                         # stdio, as an MCP client starts it
  lodestar-mcp --corpus mydocs=/abs/path/to/docs
  lodestar-mcp --corpus mydocs=/abs/path/to/docs --no-bundled
  lodestar-mcp serve --http --port 8765 --auth-token "$TOKEN"
"""
SEARCH_EXAMPLES = """\
examples:
  lodestar-mcp search "how do I add a corpus"
  lodestar-mcp search max_tokens --path-prefix reference/ --limit 3
  lodestar-mcp search "background tasks" --corpus mastra=npm:@mastra/mcp-docs-server
  # add two folders and search only b:
  lodestar-mcp search release --corpus a=./docs-a --corpus b=./docs-b --corpus b
"""
READ_EXAMPLES = """\
examples:
  lodestar-mcp read docs/corpora.md
  lodestar-mcp read reference/cli --heading "Flags shared by the subcommands"
  # a long page in parts; each part ends by naming the --cursor of the next:
  lodestar-mcp read docs/search.md --max-tokens 500
"""
LIST_EXAMPLES = """\
examples:
  lodestar-mcp list
  lodestar-mcp list reference --depth 2 --corpus lodestar
"""
CORPORA_EXAMPLES = """\
examples:
  lodestar-mcp corpora
  lodestar-mcp corpora --corpus handbook=./handbook/docs --json
"""
INDEX_EXAMPLES = """\
examples:
  lodestar-mcp index
  lodestar-mcp index --corpus mastra=npm:@mastra/mcp-docs-server
"""
AGENTS_EXAMPLES = """\
examples:
  lodestar-mcp agents
  lodestar-mcp agents --app mypkg.agents:app --json
"""
ASK_EXAMPLES = """\
examples:
  lodestar-mcp ask docs "how do I add a corpus" --model openai/gpt-5-mini
  lodestar-mcp ask researcher "compare solana and near" --app mypkg.agents:app --thread t1
  # go on with the conversation of thread t1:
  lodestar-mcp ask researcher "and avalanche?" --app mypkg.agents:app --thread t1
  # the structured result, as the MCP tool ask_researcher gives it:
  lodestar-mcp ask researcher "compare solana and near" --app mypkg.agents:app --json
"""
TASKS_EXAMPLES = """\
examples:
  lodestar-mcp tasks list --app mypkg.agents:app --status running
  lodestar-mcp tasks get task_abc123 --app mypkg.agents:app --json
  lodestar-mcp tasks cancel task_abc123 --app mypkg.agents:app
  # follow the tasks of thread t1 until they end (exit 0) or 60 s pass (exit 124):
  lodestar-mcp tasks watch --app mypkg.agents:app --thread t1 --timeout 60
"""
JSON_HELP = "print the structured result, the fields of the MCP tool, instead of text"
SHELL_MODEL_HELP = (
    "model for agents without their own, e.g. openai/gpt-5-mini (env LODESTAR_MODEL); sampling, the client's "
    "model, is for MCP clients, not a shell"
)
NO_BUILTIN_HELP = "leave out the built-in docs agent, ask_docs (env LODESTAR_NO_BUILTIN_AGENTS)"


def _common(default: object, corpus_help: str) -> argparse.ArgumentParser:
    """Flags every command takes, before or after its name; subcommands pass SUPPRESS as the default
    so that a flag given before the subcommand is not reset by it."""
    common = argparse.ArgumentParser(add_help=False, argument_default=default)
    common.add_argument("--corpus", action="append", metavar="[NAME=]SOURCE", help=corpus_help)
    common.add_argument(
        "--no-bundled",
        action="store_true",
        help="leave out Lodestar's own documentation, the 'lodestar' corpus (env LODESTAR_NO_BUNDLED)",
    )
    common.add_argument(
        "--app",
        action="append",
        dest="apps",
        metavar="MODULE:ATTR",
        help="serve the agents of a Lodestar app, e.g. mypkg.agents:app (repeatable; env LODESTAR_APPS)",
    )
    common.add_argument(
        "--cache-dir", help="index cache folder (default: the user cache directory; env LODESTAR_CACHE_DIR)"
    )
    common.add_argument(
        "--log-level", help="DEBUG, INFO, WARNING or ERROR, to stderr (default INFO; env LODESTAR_LOG_LEVEL)"
    )
    return common


SERVE_CORPUS = (
    "add a corpus: a folder, a .tgz file or npm:PACKAGE[@VERSION], named NAME (repeatable; "
    "these replace LODESTAR_CORPORA)"
)
COMMAND_CORPUS = (
    "add a corpus: a folder, a .tgz file or npm:PACKAGE[@VERSION], named NAME, to those in LODESTAR_CORPORA "
    "(repeatable); on search, read and list a plain NAME picks a loaded corpus instead"
)
HTTP_ONLY = (
    "--host", "--port", "--auth-token", "--allowed-host", "--session-idle-timeout", "--max-sessions",
    "--header-timeout", "--body-timeout", "--max-connections",
)  # fmt: skip


def _parser() -> tuple[argparse.ArgumentParser, frozenset[str]]:
    """The parser, and the flags that take a value (the word after one is not a command)."""
    common = _common(argparse.SUPPRESS, COMMAND_CORPUS)
    serve_common = _common(argparse.SUPPRESS, SERVE_CORPUS)
    layout: dict[str, Any] = {"formatter_class": argparse.RawDescriptionHelpFormatter, "allow_abbrev": False}
    parser = argparse.ArgumentParser(
        prog="lodestar-mcp",
        description="An MCP server that searches and reads documentation, and commands that do\nthe same from a shell.",
        epilog=EXAMPLES,
        parents=[_common(None, SERVE_CORPUS)],
        **layout,
    )
    parser.add_argument("--version", action="version", version=f"lodestar-mcp {_version()}")
    sub = parser.add_subparsers(dest="command", title="commands", metavar="COMMAND")
    serve = sub.add_parser(
        "serve",
        parents=[serve_common],
        help="serve MCP over stdio (the default command) or HTTP",
        description="Serve the docs tools over MCP: on stdin/stdout to the client that starts\n"
        "this process, or over streamable HTTP with --http. The HTTP flags need --http\n"
        "(or LODESTAR_HTTP=1).",
        epilog=SERVE_EXAMPLES,
        **layout,
    )
    agents = serve.add_argument_group("agents")
    agents.add_argument(
        "--model",
        help="model for agents without their own, e.g. openai/gpt-5-mini (default: the client's, through sampling; "
        "env LODESTAR_MODEL)",
    )
    agents.add_argument("--no-builtin-agents", action="store_true", help=NO_BUILTIN_HELP)
    agents.add_argument(
        "--result-max-tokens",
        type=int,
        metavar="N",
        help="size budget of an ask tool's result; long tool results are cut to fit (default 20000)",
    )
    http = serve.add_argument_group("HTTP")
    http.add_argument("--http", action="store_true", help="serve streamable HTTP instead of stdio (env LODESTAR_HTTP)")
    http.add_argument("--host", help="address to listen on (default 127.0.0.1; env LODESTAR_HOST)")
    http.add_argument("--port", type=int, help="port (default 8765; 0 picks a free one; env LODESTAR_PORT)")
    http.add_argument("--auth-token", help="bearer token clients must send (default none; env LODESTAR_AUTH_TOKEN)")
    http.add_argument(
        "--allowed-host",
        action="append",
        dest="allowed_hosts",
        metavar="HOST",
        help="extra Host name to accept, repeatable (env LODESTAR_ALLOWED_HOSTS)",
    )
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

    search = sub.add_parser(
        "search",
        parents=[common],
        help="search the docs",
        description="Search the docs and print the best section of each matching page, with a\nsnippet.",
        epilog=WHERE_HELP + SEARCH_EXAMPLES,
        **layout,
    )
    search.add_argument("query", metavar="QUERY", help="words, a question or an identifier; quote it if it has spaces")
    search.add_argument(
        "--limit", type=int, default=8, metavar="N", help="number of hits, 1 to 50 (default %(default)s)"
    )
    search.add_argument(
        "--offset", type=int, default=0, metavar="N", help="skip this many hits, to page (default %(default)s)"
    )
    search.add_argument("--path-prefix", metavar="PREFIX", help="only pages whose path starts with PREFIX")
    search.add_argument("--json", action="store_true", help=JSON_HELP)

    read = sub.add_parser(
        "read",
        parents=[common],
        help="read a page, or one section of it",
        description="Print a page, or one section of it, as markdown. A page longer than\n"
        "--max-tokens is printed in parts: each part ends, on stderr, with the --cursor\n"
        "that reads the next.",
        epilog=WHERE_HELP + READ_EXAMPLES,
        **layout,
    )
    read.add_argument(
        "path", metavar="PATH", help="page path from search or list, e.g. docs/overview.md (.md optional)"
    )
    read.add_argument("--heading", help="read one section: its heading text or anchor")
    read.add_argument("--cursor", help="read the next part of a long page: the cursor the previous read printed")
    read.add_argument(
        "--max-tokens",
        type=int,
        default=100_000,
        metavar="N",
        help="size of a part, 100 to 100000 (default %(default)s)",
    )
    read.add_argument("--json", action="store_true", help=JSON_HELP)

    listing = sub.add_parser(
        "list",
        parents=[common],
        help="list pages and folders",
        description="List the folders and pages under a path.",
        epilog=WHERE_HELP + LIST_EXAMPLES,
        **layout,
    )
    listing.add_argument("path_prefix", nargs="?", default="", metavar="PATH", help="folder to list (default: the top)")
    listing.add_argument(
        "--depth", type=int, default=1, metavar="N", help="folder levels to expand, 1 to 10 (default %(default)s)"
    )
    listing.add_argument("--json", action="store_true", help=JSON_HELP)

    corpora = sub.add_parser(
        "corpora",
        parents=[common],
        help="list the loaded corpora",
        description="List the loaded corpora: name, version, pages, sections and source, or the\n"
        "error of one that failed to load.",
        epilog=CORPORA_EXAMPLES,
        **layout,
    )
    corpora.add_argument("--json", action="store_true", help=JSON_HELP)
    sub.add_parser(
        "index",
        parents=[common],
        help="build or refresh every corpus index",
        description="Build the index of every corpus, or bring it up to date, and print what was\n"
        "done and how long it took. Run it after adding a corpus, so that the server's\n"
        "first search is fast.",
        epilog=INDEX_EXAMPLES,
        **layout,
    )
    tasks_commands = _agent_commands(sub, [common, _agent_common()], layout)
    return parser, _value_flags([parser, *sub.choices.values(), *tasks_commands])


def _agent_common() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    common.add_argument("--no-builtin-agents", action="store_true", help=NO_BUILTIN_HELP)
    return common


def _between(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from `low` to `high` (no limit when None)."""

    def number(text: str) -> int:
        value = int(text)
        if value < low or (high is not None and value > high):
            wanted = f"from {low} to {high}" if high is not None else f"of {low} or more"
            raise argparse.ArgumentTypeError(f"{text}: give a whole number {wanted}")
        return value

    number.__name__ = "number"  # argparse names the type in its errors
    return number


def _seconds(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of seconds above 0")
    return value


def _agent_commands(
    sub: Any, parents: list[argparse.ArgumentParser], layout: dict[str, Any]
) -> list[argparse.ArgumentParser]:
    """`agents`, `ask` and `tasks`; the `tasks` subcommands' parsers, whose flags take values too."""
    agents = sub.add_parser(
        "agents",
        parents=parents,
        help="list the agents: the --app apps' and the built-in docs agent",
        description="List the agents that `ask` (and the server's ask_<agent> tools) run: each one's\n"
        "model, tools and background tools.",
        epilog=AGENTS_EXAMPLES,
        **layout,
    )
    agents.add_argument("--model", help=SHELL_MODEL_HELP)
    agents.add_argument("--json", action="store_true", help=JSON_HELP)

    ask = sub.add_parser(
        "ask",
        parents=parents,
        help="ask an agent, printing its answer as it streams",
        description="Run an agent here, without MCP, and print its answer on stdout as it streams.\n"
        "Tool calls, tool results and background task events are short lines on stderr,\n"
        "with a live line while background tasks run. By default the command stays until\n"
        "those tasks end and the agent has read their results. Ctrl-C stops the run (exit\n"
        "130); tasks that had not ended go back to the queue of the app's database.",
        epilog=ASK_EXAMPLES,
        **layout,
    )
    ask.add_argument("agent", metavar="AGENT", help="agent id, as `lodestar-mcp agents` lists them")
    ask.add_argument("message", metavar="MESSAGE", help="what to ask; quote it if it has spaces")
    ask.add_argument("--thread", metavar="ID", help="memory thread to continue (and to save to); default: none")
    ask.add_argument("--resource", metavar="ID", help="who the thread belongs to, e.g. a user id")
    ask.add_argument("--model", help=SHELL_MODEL_HELP)
    ask.add_argument(
        "--no-until-idle",
        action="store_false",
        dest="until_idle",
        help="return after the first turn, leaving background tasks to the queue, rather than waiting for them",
    )
    ask.add_argument("--max-steps", type=_between(1, 100), metavar="N", help="at most N model steps, 1 to 100")
    ask.add_argument(
        "--json",
        action="store_true",
        help="print the structured result, the fields of the MCP tool ask_<agent>, instead of streaming text",
    )

    tasks = sub.add_parser(
        "tasks",
        parents=parents,
        help="list, read, cancel or watch background tasks",
        description="The background tasks of the --app apps (and of the built-in docs agent), read\n"
        "from the app's database: those that servers and ask commands on it dispatched.",
        epilog=TASKS_EXAMPLES,
        **layout,
    )
    actions = tasks.add_subparsers(dest="tasks_command", title="commands", metavar="COMMAND", required=True)
    filters = argparse.ArgumentParser(add_help=False)
    filters.add_argument("--status", help="pending, running, completed, failed, timed_out or cancelled")
    filters.add_argument("--agent", metavar="ID", help="tasks this agent dispatched")
    filters.add_argument("--run", metavar="ID", help="tasks of this agent run")
    filters.add_argument("--thread", metavar="ID", help="tasks of this memory thread")
    filters.add_argument("--resource", metavar="ID", help="tasks of this resource (user)")
    filters.add_argument("--tool", metavar="NAME", help="tasks running this tool")
    listing = actions.add_parser(
        "list",
        parents=[*parents, filters],
        help="list tasks, newest first",
        description="List background tasks, newest first: id, status, tool, agent and run.",
        epilog=TASKS_EXAMPLES,
        **layout,
    )
    listing.add_argument("--limit", type=_between(1, 100), default=20, metavar="N", help="1 to 100 (default 20)")
    listing.add_argument("--offset", type=_between(0), default=0, metavar="N", help="skip N tasks (default 0)")
    listing.add_argument("--json", action="store_true", help=JSON_HELP)
    get = actions.add_parser(
        "get",
        parents=parents,
        help="read one task",
        description="Print one background task: status, arguments, result or error.",
        epilog=TASKS_EXAMPLES,
        **layout,
    )
    get.add_argument("task_id", metavar="TASK_ID", help="a task id, as `tasks list` shows it")
    get.add_argument("--json", action="store_true", help=JSON_HELP + ", with retries and times")
    cancel = actions.add_parser(
        "cancel",
        parents=parents,
        help="cancel a pending or running task",
        description="Cancel a pending or running background task. A running one stops shortly after,\n"
        "in whichever process runs it.",
        epilog=TASKS_EXAMPLES,
        **layout,
    )
    cancel.add_argument("task_id", metavar="TASK_ID", help="a task id, as `tasks list` shows it")
    watch = actions.add_parser(
        "watch",
        parents=[*parents, filters],
        help="print task events as they happen, until none is left",
        description="Print each event of the matching tasks (running, output, completed, failed,\n"
        "cancelled) as it happens, until none is pending or running (exit 0) or --timeout\n"
        "passes (exit 124). While it watches, this process also runs queued tasks of the\n"
        "apps, like a server would: those an interrupted ask left, for instance.",
        epilog=TASKS_EXAMPLES,
        **layout,
    )
    watch.add_argument("--timeout", type=_seconds, metavar="SECONDS", help="stop after this long (default: no limit)")
    return list(actions.choices.values())


def _value_flags(parsers: list[argparse.ArgumentParser]) -> frozenset[str]:
    return frozenset(
        option
        for parser in parsers
        for action in parser._actions
        if action.nargs != 0
        for option in action.option_strings
    )


def _command_word(argv: list[str], value_flags: frozenset[str]) -> str | None:
    """The first word that is neither a flag nor a flag's value: the command, when one is named."""
    tokens = iter(argv)
    for token in tokens:
        if token in value_flags:
            next(tokens, None)
        elif not token.startswith("-"):
            return token
    return None


def _usage_error(message: str) -> NoReturn:
    sys.stderr.write(f"lodestar-mcp: {message}\n")
    sys.exit(2)


def _unknown_command(word: str) -> str:
    close = difflib.get_close_matches(word, COMMANDS, n=1)
    guess = f"; did you mean {close[0]!r}?" if close else "."
    return f"unknown command {word!r}{guess} Commands: {', '.join(COMMANDS)} (lodestar-mcp --help describes them)"


def _version() -> str:
    from lodestar import __version__

    return __version__


def main(argv: list[str] | None = None) -> None:
    args_list = list(sys.argv[1:] if argv is None else argv)
    parser, value_flags = _parser()
    word = _command_word(args_list, value_flags)
    if word is None and not {"-h", "--help", "--version"} & set(args_list):
        args_list.insert(0, "serve")
    elif word is not None and word not in COMMANDS:
        _usage_error(_unknown_command(word))
    args = parser.parse_args(args_list)
    from pydantic import ValidationError

    from lodestar.errors import LodestarError
    from lodestar.settings import Settings, env_var, load_settings

    flags = {k: v for k, v in vars(args).items() if k in Settings.model_fields}
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
    if settings.model:  # subagents without a model of their own take it too
        os.environ["LODESTAR_MODEL"] = settings.model
    try:
        if args.command == "serve":
            _check_http_flags(args_list, settings)
            _check_some_corpus(settings, settings.corpora)
            _serve(settings)
        elif args.command in AGENT_COMMANDS:
            from lodestar.cli_agents import run

            sys.exit(run(args, settings))
        else:
            _run_command(args, settings)
    except LodestarError as exc:
        sys.exit(f"lodestar-mcp: {exc}")
    except KeyboardInterrupt:
        sys.exit(130)


def _flags_given(argv: list[str], flags: tuple[str, ...]) -> list[str]:
    """Those of `flags` on the command line, as `--flag VALUE` or `--flag=VALUE`."""
    return [flag for flag in flags if any(t == flag or t.startswith(flag + "=") for t in argv)]


def _check_http_flags(argv: list[str], settings: Settings) -> None:
    """An HTTP flag without --http would be ignored, and the user left wondering why nothing listens."""
    given = _flags_given(argv, HTTP_ONLY)
    if given and not settings.http:
        names = " and ".join(given) if len(given) <= 2 else ", ".join(given[:-1]) + " and " + given[-1]
        verb = "applies" if len(given) == 1 else "apply"
        _usage_error(
            f"{names} only {verb} when serving over HTTP: add --http (or set LODESTAR_HTTP=1), "
            f"or leave {'it' if len(given) == 1 else 'them'} out to serve over stdio"
        )


def _check_some_corpus(settings: Settings, specs: list[str]) -> None:
    if settings.no_bundled and not specs:
        _usage_error(
            "no corpus to use: --no-bundled (or LODESTAR_NO_BUNDLED) leaves out the bundled docs and no other "
            "corpus is given; add one with --corpus NAME=SOURCE (a folder, a .tgz file or npm:PACKAGE) "
            "or LODESTAR_CORPORA"
        )


def _serve(settings: Settings) -> None:
    if sys.stdin.isatty() and not settings.http:
        sys.stderr.write(connect_help())
    from lodestar.server.app import run

    run(settings)


def _service(settings: Settings, specs: list[str]) -> DocsService:
    from lodestar.docs.service import DocsService

    service = DocsService(specs, settings.cache_dir, bundled=not settings.no_bundled)
    service.load()
    return service


def _run_command(args: argparse.Namespace, settings: Settings) -> None:
    """One-shot commands. Here `--corpus NAME` naming a loaded corpus selects it rather than adding one."""
    specs, names, sources = _split_corpus_flags(args.corpus or [], settings)
    _check_some_corpus(settings, specs)
    started = time.perf_counter()
    service = _service(settings, specs)
    for failure in service.failures.values():
        sys.exit(f"lodestar-mcp: {failure}")
    corpus = _selected_name(service, names, sources)
    from lodestar.docs import render

    result: Any
    note = ""
    if args.command == "search":
        result = service.search(args.query, args.limit, corpus, args.path_prefix, args.offset)
        text = render.render_search(result, shell=True)
    elif args.command == "read":
        result = service.read(args.path, corpus, args.heading, args.cursor, args.max_tokens)
        text = result.content
        if result.next_cursor:
            note = (
                f"[continues: run the same command with --cursor {shlex.quote(result.next_cursor)} for the next part]"
            )
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
        text, note = result.model_dump_json(indent=2), ""
    sys.stdout.write(text.rstrip("\n") + "\n")
    if note:  # on stderr, so that stdout holds the page alone; after it, so that it reads as its end
        sys.stdout.flush()
        sys.stderr.write(note + "\n")


def _split_corpus_flags(values: list[str], settings: Settings) -> tuple[list[str], list[str], list[str]]:
    """Every spec to load, the plain names given (which pick a corpus) and the sources given (which add one).
    A value naming a corpus that another spec names (`--corpus b=./docs-b --corpus b`) picks it even when a
    folder of that name exists; any other plain word that is not a folder picks a corpus too."""
    from lodestar.docs.service import BUNDLED
    from lodestar.docs.sources import TARBALL_SUFFIXES, is_valid_name, split_spec

    declared = {split_spec(spec)[0] for spec in [*settings.corpora, *values]} | {BUNDLED}
    names: list[str] = []
    sources: list[str] = []
    for value in values:
        name, source = split_spec(value)
        plain = name is None and is_valid_name(source) and not source.endswith(TARBALL_SUFFIXES)
        (names if plain and (source in declared or not os.path.isdir(source)) else sources).append(value)
    if len(names) > 1:
        _usage_error(
            f"--corpus {' and --corpus '.join(names)}: a command looks in one corpus, or in all when no "
            "plain --corpus NAME is given"
        )
    return [*settings.corpora, *sources], names, sources


def _selected_name(service: DocsService, names: list[str], sources: list[str]) -> str | None:
    """The plain name given; else the one source given; else None, every corpus."""
    if names:
        name = names[0]
        if name not in service.corpora:
            loaded = ", ".join(service.corpora) or "none"
            _usage_error(
                f"--corpus {name}: no corpus named {name!r} is loaded (loaded: {loaded}), and there is no folder "
                f"{name!r} here; to add one, pass --corpus {name}=SOURCE (a folder, a .tgz file or npm:PACKAGE)"
            )
        return name
    return service.spec_names.get(sources[0]) if len(sources) == 1 else None
