"""`lodestar-mcp agents`, `ask` and `tasks`, run as `python -m lodestar` subprocesses against a user app written
into the test's folder, on a real SQLite file, with the `scripted` model. Its background tool waits for a file named
after its topic, so a test holds a task running for as long as it needs and ends it by creating the file."""

from __future__ import annotations

import io
import json
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from test_cli import TIMEOUT_S, child_env, run

from lodestar.cli_agents import AskView
from lodestar.runtime.chunks import (
    BackgroundTaskCompletedChunk,
    BackgroundTaskStartedChunk,
    TextDeltaChunk,
    TextStartChunk,
)
from lodestar.server.agent_tools import AskResult

APP = '''
import asyncio
import os
from pathlib import Path

from lodestar import Agent, Lodestar, tool
from lodestar.runtime.models.scripted import ScriptedModel, ScriptedTurn, call, calls

GATES = Path(os.environ["GATES"])


@tool(background=True)
async def research(topic: str) -> str:
    """Research a topic at length."""
    while not (GATES / topic).exists():
        await asyncio.sleep(0.01)
    return f"notes on {topic}"


@tool
def lookup(word: str) -> str:
    """Look a word up."""
    return f"{word}: a word"


def script(request):
    last = request.messages[-1]
    if last.role == "user" and last.text.startswith("[background tasks finished]"):
        return ScriptedTurn(text="Here is what I found.")
    if last.role == "user" and last.text.split()[0] in ("research", "lookup"):
        name, word = last.text.split()
        return calls(call(name, {"topic" if name == "research" else "word": word}))
    if last.role == "user":
        return ScriptedTurn(text="You said: " + " | ".join(m.text for m in request.messages if m.role == "user"))
    return ScriptedTurn(text="Research started." if last.content[0].tool_name == "research" else "Looked it up.")


app = Lodestar(
    agents=[
        Agent("researcher", description="Researches topics.", model=ScriptedModel(script), tools=[research, lookup]),
        Agent("bare", description="Has no model of its own."),
    ],
    background_tasks=True,
)
plain = Lodestar(agents=[Agent("echo", model=ScriptedModel())])
not_an_app = 42
'''
APP_FLAGS = ("--app", "cliapp:app", "--no-builtin-agents")


class Project:
    """The test's folder: the app module, its database and the gates its research tool waits for."""

    def __init__(self, tmp_path: Path) -> None:
        self.root = tmp_path
        self.gates = tmp_path / "gates"
        self.gates.mkdir()
        (tmp_path / "cliapp.py").write_text(APP)
        (tmp_path / "broken.py").write_text("raise RuntimeError('boom')\n")
        self.env = {"LODESTAR_DB": str(tmp_path / "app.db"), "GATES": str(self.gates), "LODESTAR_LOG_LEVEL": "WARNING"}

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run(self.root / "cache", *args, cwd=self.root, **self.env)

    def app(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(*args, *APP_FLAGS)

    def start(self, *args: str) -> Running:
        return Running(self, [*args, *APP_FLAGS])

    def open_gate(self, topic: str) -> None:
        (self.gates / topic).touch()

    def tasks(self, *filters: str) -> list[dict[str, object]]:
        listed = self.app("tasks", "list", "--json", *filters)
        assert listed.returncode == 0, listed.stderr
        tasks: list[dict[str, object]] = json.loads(listed.stdout)["tasks"]
        return tasks


class Running:
    """A command left running, each of its output streams read line by line as it comes, so that a test waits for
    a line rather than for a time."""

    def __init__(self, project: Project, args: list[str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "lodestar", *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=child_env(project.root / "cache", **project.env),
            cwd=project.root,
        )
        self.seen: dict[str, list[str]] = {"out": [], "err": []}
        self.lines: dict[str, queue.Queue[str | None]] = {"out": queue.Queue(), "err": queue.Queue()}
        for name, stream in (("out", self.proc.stdout), ("err", self.proc.stderr)):
            threading.Thread(target=self._read, args=(name, stream), daemon=True).start()

    def _read(self, name: str, stream: io.TextIOBase) -> None:
        for line in stream:
            self.lines[name].put(line)
        self.lines[name].put(None)

    def wait_for(self, text: str, stream: str = "err") -> str:
        deadline = time.monotonic() + TIMEOUT_S
        while (line := self.lines[stream].get(timeout=max(0.0, deadline - time.monotonic()))) is not None:
            self.seen[stream].append(line)
            if text in line:
                return line
        raise AssertionError(f"the command ended before printing {text!r}: {self.seen}")

    def finish(self) -> tuple[int, str, str]:
        code = self.proc.wait(TIMEOUT_S)
        for name, lines in self.lines.items():
            while (line := lines.get(timeout=TIMEOUT_S)) is not None:
                self.seen[name].append(line)
        return code, "".join(self.seen["out"]), "".join(self.seen["err"])


@pytest.fixture
def project(tmp_path: Path) -> Project:
    return Project(tmp_path)


def test_agents_lists_each_agent_with_its_model_and_tools(project: Project) -> None:
    listed = project.app("agents")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.splitlines() == [
        "researcher: Researches topics.",
        "  model: scripted/scripted",
        "  tools: research (background), lookup",
        "bare: Has no model of its own.",
        "  model: (server's model: --model, LODESTAR_MODEL or an MCP client's through sampling; none given)",
        "  tools: none",
    ]
    given = project.app("agents", "--model", "openai/gpt-5-mini")
    assert "  model: openai/gpt-5-mini (--model or LODESTAR_MODEL)" in given.stdout.splitlines()

    data = json.loads(project.app("agents", "--json").stdout)
    assert [(a["id"], a["model"], a["tools"], a["background_tools"]) for a in data["agents"]] == [
        ("researcher", "scripted/scripted", ["research", "lookup"], ["research"]),
        ("bare", None, [], []),
    ]


def test_agents_lists_the_builtin_docs_agent(project: Project) -> None:
    data = json.loads(project.run("agents", "--json").stdout)
    assert [(a["id"], a["tools"], a["background_tools"]) for a in data["agents"]] == [
        ("docs", ["search_docs", "read_doc", "research"], ["research"])
    ]
    none = project.run("agents", "--no-builtin-agents")
    assert none.returncode == 0 and none.stdout.startswith("no agents: load an app's with --app MODULE:ATTR")


def test_ask_streams_the_text_of_every_turn_and_tool_and_task_lines(project: Project) -> None:
    asking = project.start("ask", "researcher", "research solana")
    asking.wait_for("background-task-running research")
    project.open_gate("solana")
    code, out, err = asking.finish()
    assert code == 0, err
    assert out == "Research started.\n\nHere is what I found.\n"
    lines = err.splitlines()
    assert 'tool-call research {"topic": "solana"}' in lines
    assert lines.index("background-task-started research") < lines.index("background-task-completed research")
    assert any(line.startswith("[1 background task running: research… ") for line in lines), err
    assert any(line.startswith('tool-result research {"task_id": "task_') for line in lines), err


def test_ask_json_prints_the_ask_tools_result(project: Project) -> None:
    asked = project.app("ask", "researcher", "lookup cat", "--json")
    assert asked.returncode == 0, asked.stderr
    result = json.loads(asked.stdout)
    assert set(result) == set(AskResult.model_fields)
    assert result["text"] == "Looked it up." and result["agent_id"] == "researcher" and result["steps"] == 2
    assert [(c["tool_name"], c["args"], c["result"]) for c in result["tool_calls"]] == [
        ("lookup", {"word": "cat"}, "cat: a word")
    ]
    assert result["background_tasks"] == [] and result["thread_id"] is None
    assert "tool-result lookup cat: a word" in asked.stderr.splitlines()


def test_ask_keeps_a_thread_across_commands(project: Project) -> None:
    first = project.app("ask", "researcher", "hello", "--thread", "t1", "--resource", "u1")
    assert first.stdout == "You said: hello\n", first.stderr
    again = project.app("ask", "researcher", "again", "--thread", "t1", "--resource", "u1")
    assert again.stdout == "You said: hello | again\n", again.stderr
    alone = project.app("ask", "researcher", "alone")
    assert alone.stdout == "You said: alone\n"


def test_ask_without_a_model_says_how_to_give_one(project: Project) -> None:
    failed = project.app("ask", "bare", "hi")
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith(
        "lodestar-mcp: agent 'bare' has no model of its own and none was given: pass --model (e.g. --model "
        "openai/gpt-5-mini), set LODESTAR_MODEL"
    )
    sampling = project.app("ask", "bare", "hi", "--model", "sampling")
    assert sampling.returncode == 1 and "from a shell there is none" in sampling.stderr
    echoed = project.app("ask", "bare", "hi there", "--model", "scripted")
    assert echoed.returncode == 0 and echoed.stdout == "hi there\n"


def test_ask_an_unknown_agent_names_the_agents(project: Project) -> None:
    failed = project.app("ask", "nobody", "hi")
    assert failed.returncode == 2
    assert failed.stderr == "lodestar-mcp: no agent 'nobody'; the agents are: researcher, bare\n"
    typo = project.app("ask", "reseacher", "hi")
    assert typo.returncode == 2 and typo.stderr.endswith("bare; did you mean 'researcher'?\n")


@pytest.mark.parametrize(
    ("command", "spec", "message"),
    [
        (["agents"], "broken:app", "--app broken:app: importing broken failed: RuntimeError: boom"),
        (["ask", "echo", "hi"], "cliapp:nope", "--app cliapp:nope: cliapp has no 'nope'; its Lodestar apps: app"),
        (["tasks", "list"], "cliapp:not_an_app", "--app cliapp:not_an_app: not_an_app is of type int, not a Lodestar"),
    ],
)
def test_an_app_that_cannot_load_is_one_line(project: Project, command: list[str], spec: str, message: str) -> None:
    failed = project.run(*command, "--app", spec)
    assert failed.returncode == 1 and failed.stdout == ""
    assert failed.stderr.startswith(f"lodestar-mcp: {message}") and failed.stderr.count("\n") == 1


def test_tasks_list_and_get_read_a_running_task_and_watch_follows_it_to_its_end(project: Project) -> None:
    asking = project.start("ask", "researcher", "research alpha", "--thread", "t1")
    asking.wait_for("background-task-running research")
    [task] = project.tasks()
    assert (task["status"], task["tool_name"], task["args"], task["thread_id"]) == (
        "running",
        "research",
        {"topic": "alpha"},
        "t1",
    )
    listed = project.app("tasks", "list", "--thread", "t1")
    assert listed.stdout.splitlines() == [
        "tasks 1-1 of 1",
        f"{task['id']} running research (agent researcher, run {task['run_id']})",
    ]
    assert project.app("tasks", "list", "--status", "completed").stdout == "no tasks (0 match)\n"
    got = project.app("tasks", "get", str(task["id"]))
    assert got.stdout.splitlines()[1:] == ['args: {"topic": "alpha"}', "result: null"]
    fields = json.loads(project.app("tasks", "get", str(task["id"]), "--json").stdout)
    assert {"id", "status", "retry_count", "max_retries", "created_at", "completed_at"} <= set(fields)

    watching = project.start("tasks", "watch", "--thread", "t1")
    watching.wait_for("background-task-running research", stream="out")
    project.open_gate("alpha")
    code, out, err = watching.finish()
    assert code == 0, err
    assert out.splitlines()[-1] == "background-task-completed research"
    assert err == "every matching task has ended\n"
    assert asking.finish()[1] == "Research started.\n\nHere is what I found.\n"
    done = json.loads(project.app("tasks", "get", str(task["id"]), "--json").stdout)
    assert (done["status"], done["result"]) == ("completed", "notes on alpha")


def test_tasks_cancel_stops_a_task_running_in_another_process(project: Project) -> None:
    asking = project.start("ask", "researcher", "research beta")
    asking.wait_for("background-task-running research")
    [task] = project.tasks("--status", "running")
    cancelled = project.app("tasks", "cancel", str(task["id"]))
    assert cancelled.returncode == 0
    assert cancelled.stdout == f"task {task['id']} is being cancelled: it stops shortly\n"
    code, out, err = asking.finish()
    assert code == 0 and "background-task-cancelled research" in err.splitlines()
    assert out.endswith("Here is what I found.\n")  # the agent read that its task was cancelled
    again = project.app("tasks", "cancel", str(task["id"]))
    assert again.stdout == f"task {task['id']} had already ended: cancelled\n"

    unknown = project.app("tasks", "get", "task_nope")
    assert unknown.returncode == 1
    assert unknown.stderr == "lodestar-mcp: no background task 'task_nope'; `lodestar-mcp tasks list` lists them\n"


def test_tasks_watch_times_out_with_124_while_a_task_runs(project: Project) -> None:
    asking = project.start("ask", "researcher", "research gamma")
    asking.wait_for("background-task-running research")
    watched = project.app("tasks", "watch", "--timeout", "0.2")
    assert watched.returncode == 124
    assert watched.stdout == "background-task-running research\n"
    assert watched.stderr == "lodestar-mcp: tasks still pending or running after 0.2 s\n"
    idle = project.app("tasks", "watch", "--status", "pending")
    assert idle.returncode == 0 and idle.stderr == "no matching task is pending or running\n"
    project.open_gate("gamma")
    assert asking.finish()[0] == 0


def test_ctrl_c_stops_the_run_and_the_task_runs_on_in_the_next_process(project: Project) -> None:
    asking = project.start("ask", "researcher", "research delta", "--thread", "t2")
    asking.wait_for("background-task-running research")
    asking.proc.send_signal(signal.SIGINT)
    code, _, err = asking.finish()
    assert code == 130
    [task] = project.tasks()
    assert err.splitlines()[-1] == (
        "lodestar-mcp: interrupted: the run stopped (thread t2 keeps what was said). 1 background task had not "
        f"ended: research ({task['id']}); it goes back in the queue of the app's database as this command exits, "
        "and runs on in the next process with this app, e.g. `lodestar-mcp tasks watch --app cliapp:app`."
    )
    assert task["status"] == "pending"

    watching = project.start("tasks", "watch")
    watching.wait_for("background-task-running research", stream="out")
    project.open_gate("delta")
    assert watching.finish()[0] == 0
    assert [(t["status"], t["result"]) for t in project.tasks()] == [("completed", "notes on delta")]


def test_ask_no_until_idle_returns_after_the_first_turn_and_says_what_still_runs(project: Project) -> None:
    asked = project.app("ask", "researcher", "research epsilon", "--no-until-idle")
    assert asked.returncode == 0 and asked.stdout == "Research started.\n"
    [task] = project.tasks()
    assert asked.stderr.splitlines()[-1] == (
        f"[1 background task still running: research ({task['id']}); it goes back in the queue of the app's "
        "database as this command exits, and runs on in the next process with this app, e.g. "
        "`lodestar-mcp tasks watch --app cliapp:app`]"
    )
    assert task["status"] == "pending"


def test_tasks_without_background_tasks_say_how_to_enable_them(project: Project) -> None:
    plain = project.run("tasks", "list", "--app", "cliapp:plain", "--no-builtin-agents")
    assert plain.returncode == 1
    assert plain.stderr.startswith(
        "lodestar-mcp: no background tasks to show: none of the apps (cliapp:plain) has background tasks enabled. "
        "An app keeps them when made with Lodestar(agents=[...], background_tasks=True)"
    )
    none = project.run("tasks", "watch", "--no-builtin-agents")
    assert none.returncode == 1 and "no --app is given and --no-builtin-agents leaves out" in none.stderr


def test_task_flags_are_checked(project: Project) -> None:
    status = project.app("tasks", "list", "--status", "done")
    assert status.returncode == 1 and "unknown task status 'done'" in status.stderr
    limit = project.app("tasks", "list", "--limit", "0")
    assert limit.returncode == 2 and "argument --limit: 0: give a whole number from 1 to 100" in limit.stderr
    typo = project.run("task", "list")
    assert typo.returncode == 2 and "did you mean 'tasks'?" in typo.stderr
    for command in ("agents", "ask", "tasks"):
        assert f"examples:\n  lodestar-mcp {command}" in project.run(command, "--help").stdout


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_on_a_terminal_the_live_line_is_redrawn_in_place_and_kept_out_of_the_text() -> None:
    out, err = Terminal(), Terminal()
    view = AskView(out, err, stream_text=True)
    task = {"task_id": "task_1", "tool_name": "research", "tool_call_id": "call_1"}
    view.chunk(BackgroundTaskStartedChunk(run_id="run_1", payload=task))
    assert err.getvalue() == "background-task-started research\n\r\x1b[K[1 background task running: research… 0 s]"
    view.chunk(TextStartChunk(run_id="run_1", payload={"id": "t"}))
    view.chunk(TextDeltaChunk(run_id="run_1", payload={"id": "t", "text": "Started."}))
    assert err.getvalue().endswith("\r\x1b[K") and out.getvalue() == "Started."  # the live line went first
    done = {**task, "run_id": "run_1", "agent_id": "a", "result": "notes", "completed_at": "2026-01-01T00:00:00Z"}
    view.chunk(BackgroundTaskCompletedChunk(run_id="run_1", payload=done))
    assert err.getvalue().endswith("\r\x1b[K\nbackground-task-completed research\n")  # below the text; no live line
    assert view.running == {}


def test_an_ask_leaves_the_queued_tasks_of_other_runs_alone(tmp_path: Path) -> None:
    """A one-shot ask runs only what it dispatches: claiming another run's queued task would start it only to put
    it back, an attempt spent, when the command exits."""
    project = Project(tmp_path)
    first = project.app("ask", "researcher", "research slow", "--no-until-idle")
    assert first.returncode == 0, first.stderr
    [queued] = project.tasks()
    assert queued["status"] == "pending"  # the first ask put its unfinished task back as it exited
    second = project.app("ask", "researcher", "lookup star")
    assert second.returncode == 0, second.stderr
    [after] = project.tasks()
    assert (after["status"], after["retry_count"]) == ("pending", queued["retry_count"])
