DOCS_AGENT_ID = "docs"
DOCS_AGENT_NAME = "Docs"
DOCS_AGENT_DESCRIPTION = "Answers questions from the loaded documentation, with citations."
DOCS_AGENT_TOOLS = ("search_docs", "read_doc", "research")
DOCS_BACKGROUND_TOOLS = ("research",)
