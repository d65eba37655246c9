"""An external runtime: the same agent, run from any machine that reaches the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import signal

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.sync import SyncClient
from runtimed.runtime.agent import RuntimeAgent
from runtimed.runtime.kernel import KernelSession
from runtimed.schema.ids import new_id


async def run_external_runtime(endpoint: DaemonEndpoint, notebook_id: str, *, kernel_name: str = "python3",
                               displace: bool = True, cwd: str | None = None,
                               on_ready=None) -> str:
    """Run until the session ends (displaced, lost, shut down) or SIGINT/SIGTERM; return the end reason."""
    kernel = await KernelSession.start(kernel_name, cwd=cwd)
    runtime_id = new_id("rt-")
    client = SyncClient(endpoint.url, endpoint.token, notebook_id,
                        {"id": f"runtime:{runtime_id}", "kind": "runtime", "name": f"{kernel_name} (external)"},
                        client="runt-runtime")
    agent = RuntimeAgent(client, kernel, runtime_id=runtime_id, displace=displace)
    try:
        await agent.start()
    except BaseException:
        await agent.stop("error")
        raise
    if on_ready is not None:
        on_ready(agent)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    waiter = asyncio.create_task(agent.wait_stopped())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
    if stopper.done():
        await agent.stop("shutdown")
        return "shutdown"
    stopper.cancel()
    return "ended"
