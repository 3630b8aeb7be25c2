"""Cutting a page into parts under a token budget, and the opaque cursors that resume a read."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass

from lodestar.docs.errors import DocsError

CHARS_PER_TOKEN = 4
_RETRY = "pass next_cursor exactly as read_doc returned it, or omit it to start again"


@dataclass(frozen=True, slots=True)
class Cursor:
    corpus: str
    path: str
    heading: str
    offset: int
    digest: str

    def encode(self) -> str:
        raw = json.dumps([self.corpus, self.path, self.heading, self.offset, self.digest], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, token: str) -> Cursor:
        """Any string is either a cursor read_doc issued (or one shaped like it) or an "invalid cursor" error."""
        try:
            fields = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        except (ValueError, RecursionError) as exc:  # bad base64, UTF-8 or JSON, huge numbers, deep nesting
            raise DocsError(f"invalid cursor: {_RETRY}") from exc
        if not isinstance(fields, list) or [type(f) for f in fields] != [str, str, str, int, str]:
            raise DocsError(f"invalid cursor: it is not one read_doc returned; {_RETRY}")
        cursor = cls(*fields)
        if cursor.offset < 0:
            raise DocsError("invalid cursor: negative offset; omit the cursor to start again")
        return cursor


def cut(text: str, start: int, end: int, budget_chars: int) -> int:
    """Where the part that begins at `start` ends: at most `budget_chars` on, at a line end when one is
    in the second half of the window, so parts split between lines rather than inside them."""
    if end - start <= budget_chars:
        return end
    limit = start + budget_chars
    newline = text.rfind("\n", start + budget_chars // 2, limit)
    return newline + 1 if newline != -1 else limit
