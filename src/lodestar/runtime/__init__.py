"""The agent runtime: agents, tools, chunks, model providers, memory, processors."""

from __future__ import annotations

from .agent import Agent
from .background import AgentBackgroundConfig, ToolBackgroundConfig
from .chunks import BaseChunk, Chunk, DataChunk, parse_chunk
from .context import ToolContext, ToolWriter
from .dispatch import InlineDispatcher, ToolDispatcher, ToolOutcome
from .memory import Memory, ThreadError
from .messages import Message, ReasoningPart, TextPart, ToolCallPart, ToolResultPart
from .models import ModelError, ModelSettings, resolve_model
from .options import RunOptions
from .plan import RunPlan, RunState
from .processors import InputResult, Processor, StepOverrides, TripWire, TripwireInfo
from .result import RunError, RunResult, StepResult, ToolCallRecord, ToolResultRecord
from .stream import AgentStream
from .structured import StructuredOutputError
from .subagents import Delegation, DelegationComplete, DelegationDecision, DelegationStart
from .tools import Tool, ToolArgumentsError, tool
from .usage import Usage

__all__ = [
    "Agent",
    "AgentBackgroundConfig",
    "AgentStream",
    "BaseChunk",
    "Chunk",
    "DataChunk",
    "Delegation",
    "DelegationComplete",
    "DelegationDecision",
    "DelegationStart",
    "InlineDispatcher",
    "InputResult",
    "Memory",
    "Message",
    "ModelError",
    "ModelSettings",
    "Processor",
    "ReasoningPart",
    "RunError",
    "RunOptions",
    "RunPlan",
    "RunResult",
    "RunState",
    "StepOverrides",
    "StepResult",
    "StructuredOutputError",
    "TextPart",
    "ThreadError",
    "Tool",
    "ToolArgumentsError",
    "ToolBackgroundConfig",
    "ToolCallPart",
    "ToolCallRecord",
    "ToolContext",
    "ToolDispatcher",
    "ToolOutcome",
    "ToolResultPart",
    "ToolResultRecord",
    "ToolWriter",
    "TripWire",
    "TripwireInfo",
    "Usage",
    "parse_chunk",
    "resolve_model",
    "tool",
]
