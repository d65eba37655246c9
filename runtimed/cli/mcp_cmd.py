"""``runt mcp``: an MCP server on stdin/stdout for AI agents (Claude Desktop, Claude Code, Cursor, …)."""

from __future__ import annotations

import click

from runtimed.cli.common import ensure_endpoint


@click.command()
def mcp() -> None:
    """Serve the notebook tools to an MCP client over stdio (finds or starts the daemon).

    The agent is named after the client (its MCP clientInfo); its changes are recorded as
    an actor of kind `agent`. Running code needs a person's approval unless the notebook's
    `runtimed.approvals` metadata says otherwise (see docs/mcp.md). Logs go to stderr.

    \b
    Example (an MCP client's configuration):
      {"mcpServers": {"runtimed": {"command": "runt", "args": ["mcp"]}}}
    """
    import asyncio
    import logging

    from runtimed.agents.mcp_server import serve_stdio

    logging.basicConfig(level=logging.WARNING, format="runt mcp: %(message)s")  # stderr: stdout is the protocol
    endpoint = ensure_endpoint()
    asyncio.run(serve_stdio(endpoint))
