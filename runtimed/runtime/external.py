"""An external runtime: the same agent, run from any machine that reaches the daemon."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import threading
from pathlib import Path

from runtimed.client.discovery import DaemonEndpoint, Failover
from runtimed.client.sync import SyncClient
from runtimed.runtime.agent import AiExecutor, RuntimeAgent
from runtimed.runtime.artifact_sink import HttpSink
from runtimed.runtime.kernel import KernelSession
from runtimed.schema.ids import new_id


class FollowingSink:
    """Uploads artifacts to the daemon the runtime's connection is on now (it moves to another on failover)."""

    def __init__(self, client: SyncClient) -> None:
        self.client = client
        self._url = client.url
        self._sink = HttpSink(client.url, client.token)

    async def put(self, sha: str, data: bytes | Path, content_type: str) -> None:
        if self.client.url != self._url:
            old, self._url = self._sink, self.client.url
            self._sink = HttpSink(self.client.url, self.client.token)
            await old.close()
        await self._sink.put(sha, data, content_type)

    async def close(self) -> None:
        await self._sink.close()


async def run_external_runtime(endpoint: DaemonEndpoint, notebook_id: str, *, kernel_name: str = "python3",
                               displace: bool = True, cwd: str | None = None, on_ready=None,
                               input_timeout: float = 300.0, handle_signals: bool = True,
                               ai_executor: AiExecutor | None = None) -> str:
    """Run until the session ends (displaced, lost, shut down) or SIGINT/SIGTERM; return the end reason.

    With several daemons of one deployment (``endpoint.alternates``), a runtime whose daemon dies reconnects to
    another one and keeps its session (its unacknowledged events re-sent with the same ids) unless the grace
    period passed first. Cancelling the task that runs it ends the session (``shutdown``) and stops the kernel too.
    Signal handlers are installed only in the main thread, and removed again on return.
    """
    kernel = await KernelSession.start(kernel_name, cwd=cwd)
    runtime_id = new_id("rt-")
    client = SyncClient(endpoint.url, endpoint.token, notebook_id,
                        {"id": f"runtime:{runtime_id}", "kind": "runtime", "name": f"{kernel_name} (external)"},
                        client="runt-runtime", rediscover=Failover(endpoint) if endpoint.alternates else None)
    agent = RuntimeAgent(client, kernel, runtime_id=runtime_id, displace=displace, input_timeout=input_timeout,
                         artifacts=FollowingSink(client), ai_executor=ai_executor)
    try:
        await agent.start()
    except BaseException:
        await asyncio.shield(agent.stop("error"))
        raise
    if on_ready is not None:
        on_ready(agent)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    if handle_signals and threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, stop.set)
                installed.append(sig)
    waiter = asyncio.create_task(agent.wait_stopped())
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        if not waiter.done():
            await agent.stop("shutdown")
        return agent.end_reason or "shutdown"
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        for task in (waiter, stopper):
            task.cancel()
        if not agent.stopped:  # cancelled: end the session and stop the kernel all the same
            await asyncio.shield(agent.stop("shutdown"))
