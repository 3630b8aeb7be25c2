"""`lodestar-mcp agents`, `ask` and `tasks`: the agents and background tasks of the `--app` apps, from a shell.

cli.py imports this module only for these commands, so the docs commands never load the runtime.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import json
import shlex
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from lodestar.builtin import DOCS_AGENT_ID
from lodestar.errors import UnknownNameError, UsageError
from lodestar.server.agent_host import AgentHost, host_for, model_for

if TYPE_CHECKING:
    from lodestar.background.manager import BackgroundTaskManager
    from lodestar.runtime.agent import Agent
    from lodestar.runtime.chunks import Chunk
    from lodestar.runtime.result import RunResult
    from lodestar.runtime.stream import AgentStream
    from lodestar.settings import Settings

WATCH_TIMED_OUT = 124
"""`tasks watch`'s exit code when --timeout passed with tasks still pending or running, as timeout(1)'s."""
INTERRUPTED = 130
SHOWN = ("tool-call", "tool-result", "tool-error", "tool-output", "error", "tripwire")
"""Chunks `ask` shows as lines on stderr, besides every background-task chunk but progress (the live line's)."""
TICK_S = 1.0
NO_MODEL = (
    "agent {agent!r} has no model of its own and none was given: pass --model (e.g. --model openai/gpt-5-mini), set "
    "LODESTAR_MODEL, or give the agent one (Agent(model=...)); the client's model, through sampling, is there only "
    "when an MCP client calls the agent"
)
NO_SAMPLING = (
    "--model sampling: sampling borrows an MCP client's model, and from a shell there is none; give a model, "
    "e.g. --model openai/gpt-5-mini"
)


def run(args: argparse.Namespace, settings: Settings) -> int:
    """Runs one of AGENT_COMMANDS; its exit code."""
    from lodestar.docs.service import DocsService

    specs = [*settings.corpora, *(getattr(args, "corpus", None) or [])]
    docs = DocsService(specs, settings.cache_dir, bundled=not settings.no_bundled)
    try:
        host = host_for(settings, docs)
        if args.command == "agents":
            return list_agents(host, settings, args.json)
        if args.command == "ask":
            return ask(host, settings, args)
        return asyncio.run(tasks(host, settings, args))
    finally:
        docs.close()


def _apps(settings: Settings) -> str:
    """The --app flags that name these apps again, for a command the user is told to run."""
    return "".join(f" --app {shlex.quote(spec)}" for spec in settings.apps)


# --- agents ---------------------------------------------------------------------------------------------------------


def list_agents(host: AgentHost, settings: Settings, as_json: bool) -> int:
    if as_json:
        print(json.dumps({"agents": [info.model_dump(mode="json") for info in host.infos]}, indent=2))
        return 0
    if not host.infos:
        print(
            "no agents: load an app's with --app MODULE:ATTR (--no-builtin-agents leaves out the built-in docs agent)"
        )
    given = (
        f"{settings.model} (--model or LODESTAR_MODEL)"
        if settings.model
        else "(server's model: --model, LODESTAR_MODEL or an MCP client's through sampling; none given)"
    )
    for info in host.infos:
        print(f"{info.id}: {info.description or info.name}")
        print(f"  model: {info.model or given}")
        print(f"  tools: {info.tool_list()}")
    return 0


# --- ask ------------------------------------------------------------------------------------------------------------


def ask(host: AgentHost, settings: Settings, args: argparse.Namespace) -> int:
    known = [info.id for info in host.infos]
    if args.agent not in known:  # before the apps open: their workers would claim queued tasks only to stop them
        close = difflib.get_close_matches(args.agent, known, n=1)
        guess = f"; did you mean {close[0]!r}?" if close else ""
        sys.stderr.write(
            f"lodestar-mcp: no agent {args.agent!r}; the agents are: {', '.join(known) or 'none'}{guess}\n"
        )
        return 2
    view = AskView(sys.stdout, sys.stderr, stream_text=not args.json)
    try:
        return asyncio.run(_ask(host, settings, args, view))
    except KeyboardInterrupt:
        view.end_text()
        sys.stderr.write(f"lodestar-mcp: {_interrupted(args, settings, view.running)}\n")
        return INTERRUPTED


async def _ask(host: AgentHost, settings: Settings, args: argparse.Namespace, view: AskView) -> int:
    try:
        await host.open(own_runs_only=True)
        agent = await host.agent(args.agent)
        options = {
            "thread": args.thread,
            "resource": args.resource,
            "max_steps": args.max_steps,
            "model": _model(agent, settings.model),
        }
        if agent.id == DOCS_AGENT_ID and not host.docs.started:
            host.docs.load_in_background()
        result = await view.follow(agent.stream_until_idle if args.until_idle else agent.stream, args.message, options)
        return await _answer(host, settings, args, view, result)
    finally:
        await host.aclose()


def _model(agent: Agent, given: str | None) -> str | None:
    """The model to pass: None when the agent has its own; a shell has no client to sample from."""
    if given == "sampling":
        raise UsageError(NO_SAMPLING)
    return model_for(agent, given, None, NO_MODEL)


async def _answer(
    host: AgentHost, settings: Settings, args: argparse.Namespace, view: AskView, result: RunResult
) -> int:
    view.end_text()
    if args.json:  # a failed run's too: what it did before the failure
        from lodestar.server.agent_tools import answer_of

        print(answer_of(result, settings.result_max_tokens).model_dump_json(indent=2))
    if result.error is not None:
        sys.stderr.write(f"lodestar-mcp: agent {result.agent_id} failed: {result.error.message}\n")
        return 1
    if not args.json and not view.printed:
        sys.stderr.write(f"(no text; the run ended: {result.finish_reason})\n")
    left = await _unfinished(host, list(view.running))
    if left:
        names = ", ".join(f"{tool} ({task_id})" for task_id, tool in left.items())
        sys.stderr.write(f"[{_tasks_phrase(len(left))} still running: {names}; {_requeued(len(left), settings)}]\n")
    return 0


async def _unfinished(host: AgentHost, task_ids: list[str]) -> dict[str, str]:
    """Those of these tasks still pending or running, by id, with their tool."""
    left: dict[str, str] = {}
    for manager in host.task_managers() if task_ids else []:
        for task_id in task_ids:
            task = await manager.get_task(task_id)
            if task is not None and not task.terminal:
                left[task_id] = task.tool_name
    return left


def _tasks_phrase(count: int) -> str:
    return f"{count} background task{'s' if count != 1 else ''}"


def _requeued(count: int, settings: Settings) -> str:
    it, goes, runs = ("it", "goes", "runs") if count == 1 else ("they", "go", "run")
    return (
        f"{it} {goes} back in the queue of the app's database as this command exits, and {runs} on in the next "
        f"process with this app, e.g. `lodestar-mcp tasks watch{_apps(settings)}`"
    )


def _interrupted(args: argparse.Namespace, settings: Settings, running: dict[str, str]) -> str:
    kept = f" (thread {args.thread} keeps what was said)" if args.thread else ""
    message = f"interrupted: the run stopped{kept}."
    if running:
        names = ", ".join(f"{tool} ({task_id})" for task_id, tool in running.items())
        message += f" {_tasks_phrase(len(running))} had not ended: {names}; {_requeued(len(running), settings)}."
    return message


class AskView:
    """What `ask` prints: text deltas on stdout as they stream; tool calls and background task events as lines on
    stderr; while background tasks run, a live line on stderr, redrawn in place on a terminal (`\\r`) and printed
    as a plain line whenever the tasks change otherwise."""

    def __init__(self, out: TextIO, err: TextIO, *, stream_text: bool) -> None:
        self.out = out
        self.err = err
        self.stream_text = stream_text
        self.live = err.isatty()
        self.shared = self.live and out.isatty()  # one terminal: the live line must not land inside the text
        self.running: dict[str, str] = {}  # task id -> tool name, in start order
        self.since: float | None = None
        self.printed = False  # some text is on stdout
        self.mid_line = False  # on one terminal, the streamed text has not ended its line
        self.broke_line = False  # ... and stderr ended it since
        self.new_block = False
        self.in_text = False
        self.shown = False  # the live line is on the terminal's last line

    async def follow(self, run: Callable[..., AgentStream], message: str, options: dict[str, Any]) -> RunResult:
        ticker = asyncio.create_task(self._tick()) if self.live else None
        try:
            async with run(message, **options) as stream:
                async for chunk in stream:
                    self.chunk(chunk)
                return await stream.result()
        finally:
            if ticker is not None:
                ticker.cancel()

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(TICK_S)
            self._indicate(changed=False)

    def chunk(self, chunk: Chunk) -> None:
        from lodestar.runtime.chunks.lines import chunk_line

        kind = chunk.type
        if kind == "text-delta":
            self._text(chunk.payload.text)  # type: ignore[union-attr]
        elif kind in ("text-start", "text-end"):
            self.new_block = self.in_text = kind == "text-start"
        elif kind in SHOWN or (kind.startswith("background-task-") and kind != "background-task-progress"):
            before = set(self.running)
            self._track(chunk)
            self._line(chunk_line(chunk))
            self._indicate(changed=set(self.running) != before)

    def _track(self, chunk: Chunk) -> None:
        payload: Any = chunk.payload  # type: ignore[union-attr]
        if chunk.type in ("background-task-started", "background-task-running"):
            self.running.setdefault(payload.task_id, payload.tool_name)
            self.since = self.since or time.monotonic()
        elif chunk.type in ("background-task-completed", "background-task-failed", "background-task-cancelled"):
            self.running.pop(payload.task_id, None)
            self.since = self.since if self.running else None

    def indicator(self) -> str:
        names = ", ".join(dict.fromkeys(self.running.values()))
        elapsed = time.monotonic() - (self.since or time.monotonic())
        return f"[{_tasks_phrase(len(self.running))} running: {names}… {elapsed:.0f} s]"

    def _text(self, text: str) -> None:
        if not self.stream_text or not text:
            return
        self.clear()
        if self.new_block and self.printed:
            text = ("\n" if self.broke_line else "\n\n") + text  # as the result's text joins its turns
        self.new_block = self.broke_line = False
        self.out.write(text)
        self.out.flush()
        self.printed = True
        self.mid_line = self.shared and not text.endswith("\n")

    def _line(self, line: str) -> None:
        self.clear()
        self._end_shared_line()
        self.err.write(line + "\n")
        self.err.flush()

    def _indicate(self, *, changed: bool) -> None:
        """On a terminal, the live line is redrawn below each event (not inside streaming text); elsewhere it is a
        line of its own each time the running tasks change."""
        if not self.running:
            return
        if self.live and not (self.in_text and self.shared):
            self._draw()
        elif not self.live and changed:
            self._line(self.indicator())

    def _draw(self) -> None:
        self._end_shared_line()
        self.err.write("\r\x1b[K" + self.indicator())
        self.err.flush()
        self.shown = True

    def _end_shared_line(self) -> None:
        """On one terminal, stderr's lines start below the text streamed so far."""
        if self.mid_line:
            self.err.write("\n")
            self.mid_line = False
            self.broke_line = True

    def clear(self) -> None:
        """Take the live line off the terminal before anything else is written."""
        if self.shown:
            self.err.write("\r\x1b[K")
            self.err.flush()
            self.shown = False

    def end_text(self) -> None:
        self.clear()
        if self.printed:
            self.out.write("\n")
            self.out.flush()
            self.mid_line = False


# --- tasks ----------------------------------------------------------------------------------------------------------


def _no_tasks(host: AgentHost, settings: Settings) -> str:
    if host.apps:
        why = f"none of the apps ({', '.join(settings.apps)}) has background tasks enabled"
    else:
        why = "no --app is given and --no-builtin-agents leaves out the built-in docs agent"
    return (
        f"no background tasks to show: {why}. An app keeps them when made with "
        "Lodestar(agents=[...], background_tasks=True) on a SQLiteStorage; pass it with --app MODULE:ATTR"
    )


async def tasks(host: AgentHost, settings: Settings, args: argparse.Namespace) -> int:
    if not host.has_tasks:
        raise UsageError(_no_tasks(host, settings))
    if args.tasks_command == "watch":
        try:
            return await _watch(await host.managers(), args)
        finally:
            await host.aclose()
    managers = host.task_managers()  # not started: a one-shot command runs no worker
    try:
        if args.tasks_command == "list":
            return await _list(managers, args)
        if args.tasks_command == "get":
            return await _get(managers, args)
        return await _cancel(managers, args.task_id)
    finally:
        for _, app in host.apps:
            await app.aclose()


def _task_filters(args: argparse.Namespace) -> dict[str, str]:
    from lodestar.server.task_tools import task_filters

    return task_filters(
        status=args.status,
        agent_id=args.agent,
        run_id=args.run,
        thread_id=args.thread,
        resource_id=args.resource,
        tool_name=args.tool,
    )


async def _list(managers: list[BackgroundTaskManager], args: argparse.Namespace) -> int:
    from lodestar.server.task_tools import list_all

    result = await list_all(managers, _task_filters(args), args.limit, args.offset)
    if args.json:
        print(result.model_dump_json(indent=2))
        return 0
    shown = f"tasks {args.offset + 1}-{args.offset + len(result.tasks)} of {result.total}" if result.tasks else ""
    print("\n".join([shown or f"no tasks ({result.total} match)", *(task.line() for task in result.tasks)]))
    return 0


async def _find(managers: list[BackgroundTaskManager], task_id: str) -> tuple[BackgroundTaskManager, Any]:
    from lodestar.server.task_tools import find_task

    try:
        return await find_task(managers, task_id)
    except UnknownNameError:
        raise UnknownNameError(f"no background task {task_id!r}; `lodestar-mcp tasks list` lists them") from None


async def _get(managers: list[BackgroundTaskManager], args: argparse.Namespace) -> int:
    from lodestar.server.task_tools import TaskInfo

    _, task = await _find(managers, args.task_id)
    info = TaskInfo.of(task)
    if args.json:
        print(info.model_dump_json(indent=2))
        return 0
    print(info.line())
    print(f"args: {json.dumps(info.args, ensure_ascii=False, default=str)}")
    print(f"result: {json.dumps(info.result, ensure_ascii=False, default=str)}")
    return 0


async def _cancel(managers: list[BackgroundTaskManager], task_id: str) -> int:
    """Cancels through the store, which every process on the database reads: a started manager here would claim
    queued tasks only to put them back as the command exits."""
    from lodestar.server.task_tools import cancel_text

    manager, before = await _find(managers, task_id)
    task = await manager.store.request_cancel(task_id, manager.owner) or before
    print(cancel_text(task_id, before, task))
    return 0


async def _watch(managers: list[BackgroundTaskManager], args: argparse.Namespace) -> int:
    from lodestar.server.task_tools import watch

    async def report(_seen: float, _total: float | None, line: str) -> None:
        print(line, flush=True)

    result = await watch(managers, _task_filters(args), args.timeout, report)
    if not result.idle:
        sys.stderr.write(f"lodestar-mcp: tasks still pending or running after {args.timeout:g} s\n")
        return WATCH_TIMED_OUT
    events = len(result.events) + result.dropped
    sys.stderr.write("every matching task has ended\n" if events else "no matching task is pending or running\n")
    return 0
