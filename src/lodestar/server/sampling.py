"""The `sampling` model's MCP side: runs agent work with the calling client's model, on every protocol."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from mcp.server.mcpserver import Context
from mcp.shared.message import ServerMessageMetadata
from mcp.types import CreateMessageRequest, CreateMessageResult, CreateMessageResultWithTools, InputRequiredResult
from mcp_types.version import is_version_at_least

from ..runtime.models.sampling import Sampler
from .progress import ChunkProgress
from .sampling_rounds import run_in_rounds
from .sampling_wire import ClientSampler, SamplingResult

T = TypeVar("T")
ROUNDS_VERSION = "2026-07-28"
"""From this protocol on the server cannot send requests; it asks through input-required rounds."""


async def run_with_sampling(
    ctx: Context[Any, Any],
    work: Callable[[Sampler | None], Coroutine[Any, Any, T]],
    progress: ChunkProgress | None = None,
) -> T | InputRequiredResult:
    """Runs `work` with a sampler for the client's model, or `None` when the client offers no sampling.

    On 2025-11-25 the sampler asks the client mid-call. On 2026-07-28 the tool call returns
    `InputRequiredResult` for each model turn and the client's SDK calls again with the answer, so the
    tool must declare `-> ... | InputRequiredResult`; `progress` then reports to the round in progress.
    """
    caps = ctx.client_capabilities
    sampling = caps.sampling if caps is not None else None
    version = ctx.protocol_version
    if sampling is not None and version is not None and is_version_at_least(version, ROUNDS_VERSION):
        return await run_in_rounds(ctx, work, with_tools=sampling.tools is not None, progress=progress)
    if progress is not None:
        await progress.attach(ctx)
    if sampling is None or not ctx.session.can_send_request:
        return await work(None)
    return await work(BackChannelSampler(ctx, with_tools=sampling.tools is not None))


class BackChannelSampler(ClientSampler):
    """Asks with a sampling/createMessage request in the middle of the tool call (2025-11-25 and older)."""

    def __init__(self, ctx: Context[Any, Any], *, with_tools: bool) -> None:
        super().__init__(with_tools=with_tools)
        self.ctx = ctx

    async def ask(self, message: CreateMessageRequest) -> SamplingResult:
        result_type = CreateMessageResultWithTools if message.params.tools else CreateMessageResult
        metadata = ServerMessageMetadata(related_request_id=self.ctx.request_id)
        return await self.ctx.session.send_request(message, result_type, metadata=metadata)
