"""Errors of the docs service; each message names what went wrong and what to do."""


class DocsError(Exception):
    """A request the docs service cannot serve; the message is meant for the caller."""


class CorpusError(DocsError):
    """A corpus source that cannot be loaded."""


class CorpusLoading(DocsError):
    """The request needs corpora that are still being fetched or indexed; wait for them and ask again."""

    def __init__(self, names: list[str], message: str) -> None:
        super().__init__(message)
        self.names = names
