"""The tool layer as an MCP server (official ``mcp`` SDK): stdio for ``runt mcp``, streamable HTTP for the daemon.

Only the adaptation lives here: tool list and schemas from :data:`~runtimed.agents.tools.TOOLS`,
the caller's ``clientInfo.name`` as the agent's name, progress notifications, and parts
turned into MCP content. Everything else is the tool layer's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from collections.abc import Awaitable, Callable
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from runtimed import __version__
from runtimed.agents.render import ImagePart, Part, TextPart
from runtimed.agents.tools import TOOLS, ToolContext, ToolResult, call_tool
from runtimed.agents.workspace import AgentWorkspace, Workspaces
from runtimed.client.discovery import DaemonEndpoint

log = logging.getLogger(__name__)

INSTRUCTIONS = (
    "runtimed notebooks, shared live with people and other agents. Address cells by id (get_notebook lists them); "
    "pass the revision from your last read as expected_revision when you edit, and re-read when an edit is refused. "
    "execute_cell and run_all_cells return after their timeout with an execution_id for get_results. A notebook's "
    "approval policy may make a call wait for a person's decision."
)
MAX_HTTP_BODY = 32 * 1024 * 1024
"""Bytes of one MCP request over HTTP: a whole cell source fits (the tool layer checks sizes itself)."""

WorkspaceFor = Callable[[str | None, str | None], Awaitable[AgentWorkspace]]
"""(the client's name, the Bearer token of its HTTP request or None) -> the agent's workspace."""


def _content(part: Part) -> types.TextContent | types.ImageContent:
    if isinstance(part, ImagePart):
        return types.ImageContent(type="image", data=part.data, mime_type=part.mime_type)
    assert isinstance(part, TextPart)
    return types.TextContent(type="text", text=part.text)


def to_mcp(result: ToolResult) -> types.CallToolResult:
    return types.CallToolResult(content=[_content(p) for p in result.content], structured_content=result.structured,
                                is_error=result.is_error)


def client_name(ctx: ServerRequestContext[Any, Any]) -> str | None:
    params = ctx.session.client_params
    return params.client_info.name if params is not None and params.client_info is not None else None


def bearer_token(ctx: ServerRequestContext[Any, Any]) -> str | None:
    """The token of the HTTP request carrying this call (None over stdio)."""
    headers = getattr(ctx.request, "headers", None)
    header = headers.get("authorization", "") if headers is not None else ""
    return header[7:].strip() or None if header.lower().startswith("bearer ") else None


def build_server(workspace_for: WorkspaceFor) -> Server[Any]:
    """An MCP server exposing every tool; ``workspace_for(client name, token)`` gives the agent's workspace."""
    tools = [types.Tool(name=t.name, description=t.description, input_schema=t.input_schema()) for t in TOOLS.values()]

    async def list_tools(ctx: ServerRequestContext[Any, Any], params: Any) -> types.ListToolsResult:
        return types.ListToolsResult(tools=tools)

    async def call(ctx: ServerRequestContext[Any, Any], params: types.CallToolRequestParams) -> types.CallToolResult:
        workspace = await workspace_for(client_name(ctx), bearer_token(ctx))

        async def progress(done: float, total: float | None, message: str) -> None:
            try:
                await ctx.session.report_progress(done, total, message)
            except Exception as exc:  # a client that went away must not fail the call itself
                log.debug("progress notification not sent: %s", exc)

        try:
            result = await call_tool(ToolContext(workspace, progress), params.name, params.arguments)
        except Exception as exc:  # a bug, not bad input: say so instead of dropping the connection
            log.exception("tool %s failed", params.name)
            return to_mcp(ToolResult([TextPart(f"Error (internal_error): {params.name} failed: {exc!r}")],
                                     {"error": {"code": "internal_error", "message": repr(exc)}}, True))
        return to_mcp(result)

    return Server("runtimed", version=__version__, instructions=INSTRUCTIONS, on_list_tools=list_tools,
                  on_call_tool=call)


MAX_STDIO_LINE = 64 * 1024 * 1024
"""Bytes of one JSON-RPC line on stdin (a whole cell source fits)."""


class _PipeLines:
    """stdin as an async iterator of text lines, read by the event loop (no thread per line)."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self.reader = reader

    def __aiter__(self) -> _PipeLines:
        return self

    async def __anext__(self) -> str:
        line = await self.reader.readline()
        if not line:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


class _PipeWriter:
    """stdout written by the event loop: ``write`` queues, ``flush`` waits for the pipe to drain."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer

    async def write(self, text: str) -> None:
        self.writer.write(text.encode("utf-8"))

    async def flush(self) -> None:
        await self.writer.drain()


async def _pipes() -> tuple[_PipeLines, _PipeWriter] | None:
    """stdin and stdout as event-loop pipes, when both are pipes or sockets (an MCP client's usual setup).

    The SDK's default reads stdin and writes stdout in worker threads, one hop per line; on a
    loaded machine that is most of a tool call's cost. fd 1 is then pointed at stderr, so stray
    prints cannot corrupt the protocol.
    """
    loop = asyncio.get_running_loop()
    if not all(stat.S_ISFIFO(os.fstat(fd).st_mode) or stat.S_ISSOCK(os.fstat(fd).st_mode) for fd in (0, 1)):
        return None
    wire_in = os.fdopen(os.dup(0), "rb", buffering=0)
    wire_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)
    reader = asyncio.StreamReader(limit=MAX_STDIO_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), wire_in)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, wire_out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    return _PipeLines(reader), _PipeWriter(writer)


async def serve_stdio(endpoint: DaemonEndpoint) -> None:
    """Serve one MCP client over stdin/stdout until it disconnects."""
    from mcp.server.stdio import stdio_server

    workspaces = Workspaces(endpoint, limit=4)
    server = build_server(workspaces.get)
    pipes = await _pipes()
    streams = stdio_server(*pipes) if pipes is not None else stdio_server()  # type: ignore[arg-type]
    try:
        async with streams as (read_stream, write_stream):
            await server.run(read_stream, write_stream, server.create_initialization_options())
    finally:
        await workspaces.close()


def http_handler(endpoint: DaemonEndpoint) -> tuple[Any, Any, Workspaces]:
    """The streamable-HTTP ASGI handler, its session manager (run it in the app's lifespan), and the workspaces.

    DNS-rebinding checks are off: every request must carry a Bearer token of the daemon, which a
    page from another origin cannot send (the mounting code checks it). The tools then act with
    that token, so the daemon grants an agent what the token may do, nothing more.
    """
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
    from mcp.server.transport_security import TransportSecuritySettings

    workspaces = Workspaces(endpoint)
    server = build_server(workspaces.get)
    manager = StreamableHTTPSessionManager(
        app=server, security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
        max_request_body_size=MAX_HTTP_BODY)
    return manager.handle_request, manager, workspaces
