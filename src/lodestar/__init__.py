"""Lodestar: an MCP server for documentation search and agents."""

__version__ = "0.1.0"
