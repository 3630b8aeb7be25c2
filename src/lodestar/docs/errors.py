"""Errors of the docs service; each message names what went wrong and what to do."""

from lodestar.errors import LodestarError


class DocsError(LodestarError):
    """A request the docs service cannot serve (an argument out of range, an unknown corpus, page or heading, a
    failed corpus); the message is meant for the caller, who fixes the call as it says."""


class CorpusError(DocsError):
    """A corpus source that cannot be loaded; fix the spec or the source, then load it again."""


class CorpusLoading(DocsError):
    """The request needs corpora that are still being fetched or indexed; wait for them and ask again."""

    retryable = True

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names
