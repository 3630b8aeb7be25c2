"""Bounds on the work and memory one docs request or one corpus may cost, each changeable by a variable.

A docs server shared over HTTP meets hostile queries and untrusted packages: every loop over input and
every cache has a bound here. `LODESTAR_<FIELD>` (upper case) overrides a default, e.g.
`LODESTAR_MAX_PAGE_BYTES=67108864`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from lodestar.docs.errors import DocsError

MIB = 1024 * 1024


class DocsLimits(BaseModel):
    model_config = ConfigDict(frozen=True)

    # Queries
    max_query_chars: int = Field(1_000, ge=16, description="a longer query is trimmed to this many characters")
    max_query_words: int = Field(32, ge=1, description="a query with more words keeps the first ones")
    max_spelling_lookups: int = Field(4, ge=0, description="unknown words one query may look up for corrections")
    max_spelling_word_chars: int = Field(24, ge=4, description="longer unknown words are not spell-corrected")
    # Caches
    term_cache_entries: int = Field(400_000, ge=1_000, description="scored postings kept per corpus")
    spelling_cache_entries: int = Field(4_096, ge=16, description="spelling lookups kept per corpus")
    page_cache_bytes: int = Field(64 * MIB, ge=0, description="parsed pages kept for read_doc, by text size")
    # Pages and packages
    max_page_bytes: int = Field(32 * MIB, ge=1_024, description="larger files are skipped with a warning")
    max_package_members: int = Field(50_000, ge=1, description="entries an npm tarball may hold")
    max_package_member_bytes: int = Field(32 * MIB, ge=1_024, description="size of one unpacked tarball entry")
    max_package_bytes: int = Field(512 * MIB, ge=1_024, description="total unpacked size of a tarball")
    npm_timeout_s: float = Field(120.0, gt=0, description="time `npm pack` may take to fetch a package")
    # Index builds
    child_build_bytes: int = Field(2 * MIB, ge=0, description="builds reading more than this run in a child process")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> DocsLimits:
        env = os.environ if env is None else env
        values = {name: env[var] for name in cls.model_fields if (var := env_var(name)) in env and env[var].strip()}
        try:
            return cls.model_validate(values)
        except ValidationError as exc:
            error = exc.errors()[0]
            name = str(error["loc"][0])
            raise DocsError(f"invalid {env_var(name)}={env[env_var(name)]!r}: {error['msg']}") from None


def env_var(field: str) -> str:
    return f"LODESTAR_{field.upper()}"
