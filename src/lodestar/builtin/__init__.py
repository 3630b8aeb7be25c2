"""The agents Lodestar serves without an app: the `docs` agent over the loaded corpora.

This module is only what the server needs to describe the agent (the `ask_docs` tool) at start-up; it imports
nothing, so serving the docs tools alone stays as fast to start. The agent itself is built by
`lodestar.builtin.docs_agent`, which imports the runtime when an agent tool is first needed.
"""

from __future__ import annotations

DOCS_AGENT_ID = "docs"
DOCS_AGENT_NAME = "Docs"
DOCS_AGENT_DESCRIPTION = (
    "Answers a question from the documentation corpora loaded into this server: it searches and reads the docs, "
    "cites each claim as corpus:path#anchor, and says plainly when the docs do not cover the question."
)
DOCS_AGENT_TOOLS = ("search_docs", "read_doc", "research")  # in the order the agent offers them
DOCS_BACKGROUND_TOOLS = ("research",)  # the tools that run as background tasks when the app enables them
