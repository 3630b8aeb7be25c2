"""Token usage, summed across steps and runs."""

from __future__ import annotations

from pydantic import BaseModel


class Usage(BaseModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )

    @classmethod
    def of(cls, input_tokens: int | None, output_tokens: int | None) -> Usage:
        given_in, given_out = input_tokens or 0, output_tokens or 0
        return cls(input_tokens=given_in, output_tokens=given_out, total_tokens=given_in + given_out)
