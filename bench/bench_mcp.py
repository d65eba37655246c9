"""MCP benchmark: what a tool call through ``runt mcp`` costs over the same ``AsyncSession`` operation.

    python bench/bench_mcp.py            # full run
    python bench/bench_mcp.py --quick    # smoke run
    python bench/bench_mcp.py --json results.json

Against a daemon started in a temporary home, with the ``mcp`` SDK's own client:

1. reads: ``get_cell`` over MCP (stdio, and HTTP for comparison) versus ``AsyncSession.get_cell``;
2. edits: ``set_cell`` over MCP (stdio) versus ``AsyncSession.set_source`` (both wait for the
   daemon's acknowledgement), each on a notebook of its own;
3. ``execute_cell`` of ``1+1`` end to end over MCP (stdio) on a warm runtime, next to
   ``AsyncSession.execute_cell`` of the same cell.

Calls alternate (MCP, direct, MCP, …) so both see the same machine state. The overhead of a
round is the median MCP call minus the median direct call; the figure is over rounds.
Targets (issue 13): overhead <= 2 ms for reads and edits; ``execute_cell`` <= 15 ms.
Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import httpx2  # noqa: E402
import mcp_types as types  # noqa: E402
from bench_runtime import Daemon  # noqa: E402
from common import Figure  # noqa: E402
from mcp import ClientSession  # noqa: E402
from mcp.client.stdio import StdioServerParameters, stdio_client  # noqa: E402
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

from runtimed.client.discovery import DaemonEndpoint  # noqa: E402
from runtimed.client.session import AsyncSession  # noqa: E402

TARGETS = {"read_overhead_ms": 2.0, "edit_overhead_ms": 2.0, "execute_ms": 15.0}
Call = Callable[[], Awaitable[Any]]


@contextlib.asynccontextmanager
async def mcp_session(transport: str, home: Path, endpoint: DaemonEndpoint) -> AsyncIterator[ClientSession]:
    info = types.Implementation(name=f"bench-{transport}", version="1")
    async with contextlib.AsyncExitStack() as stack:
        if transport == "stdio":
            params = StdioServerParameters(command=sys.executable, args=["-m", "runtimed.cli.main", "mcp"],
                                           env={"RUNTIMED_HOME": str(home)})
            read, write = await stack.enter_async_context(stdio_client(params))
        else:
            http = await stack.enter_async_context(httpx2.AsyncClient(headers=endpoint.headers(),
                                                                      timeout=httpx2.Timeout(30.0, read=300.0)))
            read, write = await stack.enter_async_context(streamable_http_client(f"{endpoint.url}/mcp",
                                                                                 http_client=http))
        session = await stack.enter_async_context(ClientSession(read, write, client_info=info))
        await session.initialize()
        yield session


def tool(session: ClientSession, name: str, **args: Any) -> Call:
    async def call() -> Any:
        result = await session.call_tool(name, args)
        if result.is_error:
            raise RuntimeError(f"{name} failed: {result.content}")
        return result
    return call


async def timed(call: Call) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def alternate(a: Call, b: Call, calls: int) -> tuple[list[float], list[float]]:
    """``calls`` timings of each, alternating which goes first."""
    ta, tb = [], []
    for i in range(calls):
        for which in ((0, 1) if i % 2 == 0 else (1, 0)):
            (ta if which == 0 else tb).append(await timed(a if which == 0 else b))
    return ta, tb


async def overhead(name: str, mcp_call: Call, direct: Call, rounds: int, calls: int,
                   target: float | None) -> list[Figure]:
    for _ in range(20):  # warm both paths
        await mcp_call()
        await direct()
    over, mcp_all, direct_all = [], [], []
    for _ in range(rounds):
        tm, td = await alternate(mcp_call, direct, calls)
        over.append(statistics.median(tm) - statistics.median(td))
        mcp_all += tm
        direct_all += td
    figure = Figure("tool-call overhead", f"{name}: MCP minus AsyncSession, per call", "ms", over)
    if target is not None:
        figure.check(target)
    print(f"{name}: MCP {statistics.median(mcp_all):.3f} ms, AsyncSession {statistics.median(direct_all):.3f} ms, "
          f"overhead {figure.median:.3f} ms (rounds {', '.join(f'{x:.3f}' for x in over)})", flush=True)
    return [figure,
            Figure("per call", f"{name}: MCP", "ms", [statistics.median(mcp_all)]),
            Figure("per call", f"{name}: AsyncSession", "ms", [statistics.median(direct_all)])]


async def edits(stdio: ClientSession, endpoint: DaemonEndpoint, rounds: int, calls: int) -> list[Figure]:
    """set_cell over MCP versus set_source, each on a notebook of its own that no other client has open
    (every process with a replica of a notebook applies each edit of it, which would otherwise land on
    one path's clock and not the other's), on a fresh cell per round (a cell's CRDT state grows with
    every edit, and so does the cost of the next one, on both paths alike)."""
    async with AsyncSession(f"bench-mcp-edits-{uuid.uuid4().hex[:8]}", endpoint=endpoint) as s:
        return await _edits(stdio, s, rounds, calls)


async def _edits(stdio: ClientSession, s: AsyncSession, rounds: int, calls: int) -> list[Figure]:
    created = await tool(stdio, "create_notebook", title="bench edits")()
    agents_nb = created.structured_content["notebook_id"]
    counter = iter(range(10**9))
    mcp_cell = direct_cell = ""

    def mcp_edit() -> Awaitable[Any]:
        return tool(stdio, "set_cell", notebook_id=agents_nb, cell_id=mcp_cell, source=f"x = {next(counter)}")()

    def direct_edit() -> Awaitable[Any]:
        return s.set_source(direct_cell, f"x = {next(counter)}")

    over, mcp_all, direct_all = [], [], []
    for _ in range(rounds):
        made = await tool(stdio, "create_cell", notebook_id=agents_nb, source="x = 0")()
        mcp_cell, direct_cell = made.structured_content["cell_id"], await s.create_cell("x = 0")
        for _ in range(5):
            await mcp_edit()
            await direct_edit()
        tm, td = await alternate(mcp_edit, direct_edit, calls // 2)
        over.append(statistics.median(tm) - statistics.median(td))
        mcp_all += tm
        direct_all += td
    figure = Figure("tool-call overhead", "set_cell (stdio): MCP minus AsyncSession, per call", "ms", over)
    figure.check(TARGETS["edit_overhead_ms"])
    print(f"set_cell (stdio): MCP {statistics.median(mcp_all):.3f} ms, AsyncSession.set_source "
          f"{statistics.median(direct_all):.3f} ms, overhead {figure.median:.3f} ms "
          f"(rounds {', '.join(f'{x:.3f}' for x in over)})", flush=True)
    return [figure, Figure("per call", "set_cell (stdio): MCP", "ms", [statistics.median(mcp_all)]),
            Figure("per call", "set_cell: AsyncSession.set_source", "ms", [statistics.median(direct_all)])]


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    rounds, calls = (2, 30) if args.quick else (args.rounds, args.calls)
    daemon = Daemon(None)
    endpoint = daemon.start()
    figures: list[Figure] = []
    try:
        async with AsyncSession(f"bench-mcp-{uuid.uuid4().hex[:8]}", endpoint=endpoint) as s:
            await s.set_metadata("runtimed", {"approvals": "off"})
            cell = await s.create_cell("1+1")
            assert (await s.execute_cell(cell, timeout_secs=120)).success  # the runtime is up
            nb = s.notebook_id
            async with mcp_session("stdio", daemon.home, endpoint) as stdio, \
                    mcp_session("http", daemon.home, endpoint) as http:
                figures += await overhead("get_cell (stdio)", tool(stdio, "get_cell", notebook_id=nb, cell_id=cell),
                                          lambda: s.get_cell(cell), rounds, calls, TARGETS["read_overhead_ms"])
                figures += await overhead("get_cell (HTTP)", tool(http, "get_cell", notebook_id=nb, cell_id=cell),
                                          lambda: s.get_cell(cell), rounds, calls, None)
                figures += await edits(stdio, endpoint, rounds, calls)
                run = tool(stdio, "execute_cell", notebook_id=nb, cell_id=cell)
                for _ in range(10):
                    await run()
                tm, td = await alternate(run, lambda: s.execute_cell(cell), rounds * calls // 2)
                figures.append(Figure("execute_cell of 1+1, warm runtime", "MCP over stdio, end to end", "ms",
                                      tm).check(TARGETS["execute_ms"]))
                figures.append(Figure("execute_cell of 1+1, warm runtime", "AsyncSession.execute_cell", "ms", td))
                print(f"execute_cell 1+1: MCP {statistics.median(tm):.3f} ms, AsyncSession "
                      f"{statistics.median(td):.3f} ms (target <= {TARGETS['execute_ms']} ms)", flush=True)
    finally:
        daemon.stop(endpoint)
    return {"suite": "mcp", "quick": args.quick, "rounds": rounds, "calls": calls,
            "figures": [f.to_json() for f in figures]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run (2 rounds of 30 calls)")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    p.add_argument("--rounds", type=int, default=5, help="rounds per comparison (default 5)")
    p.add_argument("--calls", type=int, default=100, help="calls of each kind per round (default 100)")
    args = p.parse_args()
    results = asyncio.run(bench(args))
    print(json.dumps({f["name"]: f["met"] for f in results["figures"] if f.get("target")}))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
