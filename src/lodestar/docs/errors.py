"""Errors of the docs service; each message names what went wrong and what to do."""


class DocsError(Exception):
    """A request the docs service cannot serve; the message is meant for the caller."""


class CorpusError(DocsError):
    """A corpus source that cannot be loaded."""
