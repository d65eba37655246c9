"""MCP clients for the agent tests: the ``mcp`` SDK's own clients, over stdio (``runt mcp``) and HTTP (``/mcp``)."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx2
import mcp_types as types
from conftest import DaemonProcess
from mcp import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

TRANSPORTS = ("stdio", "http")
T = TypeVar("T")


@contextlib.asynccontextmanager
async def mcp_client(daemon: DaemonProcess, transport: str, name: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session named ``name`` (its clientInfo), over ``transport``."""
    info = types.Implementation(name=name, version="1.0")
    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            params = StdioServerParameters(command=sys.executable, args=["-m", "runtimed.cli.main", "mcp"],
                                           env={"RUNTIMED_HOME": str(daemon.home.path)})
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            http = await stack.enter_async_context(httpx2.AsyncClient(
                headers={"Authorization": f"Bearer {daemon.token}"}, timeout=httpx2.Timeout(30.0, read=300.0)))
            read, write = await stack.enter_async_context(streamable_http_client(f"{daemon.url}/mcp", http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write, client_info=info))
        await session.initialize()
        yield session


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(c.text for c in result.content if isinstance(c, types.TextContent))


class Agent:
    """Calls tools and checks their outcome (with the transcript in the assertion message)."""

    def __init__(self, session: ClientSession, name: str, transport: str) -> None:
        self.session = session
        self.name = name
        self.transport = transport
        self.progress: list[tuple[float, float | None, str | None]] = []

    async def raw(self, tool: str, **args: Any) -> types.CallToolResult:
        async def on_progress(done: float, total: float | None, message: str | None) -> None:
            self.progress.append((done, total, message))

        return await self.session.call_tool(tool, args, progress_callback=on_progress)

    async def ok(self, tool: str, **args: Any) -> types.CallToolResult:
        result = await self.raw(tool, **args)
        assert not result.is_error, f"{tool}({json.dumps(args)[:300]}) failed: {text_of(result)}"
        return result

    async def fails(self, tool: str, code: str, **args: Any) -> str:
        result = await self.raw(tool, **args)
        assert result.is_error, f"{tool} should have failed with {code}: {text_of(result)}"
        assert (result.structured_content or {}).get("error", {}).get("code") == code, text_of(result)
        return text_of(result)


async def eventually(check: Callable[[], Awaitable[T]], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll ``check`` until it returns something truthy (bounded)."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.05)
