"""Ephemeral questions to a notebook's kernel, answered over REST and never written to the log.

* ``POST /api/notebooks/{id}/complete``, ``/inspect`` and ``/history``: a completion, inspection or history request on
  the kernel of the notebook's managed runtime. They go through a short-lived kernel client
  of their own (its own shell socket), so the runtime's execution channel is untouched; a
  kernel busy with a cell answers when the cell ends, within the request's bound.
* ``POST /api/notebooks/{id}/evaluate``: expressions evaluated in the kernel's namespace (``user_expressions``
  of a silent execute), for a run's ``run_if`` conditions and expectations; ``/kernel-info``: the kernel's
  ``kernel_info_reply`` (a run writes its ``language_info`` into the notebook, as nbclient does).
* ``POST /api/notebooks/{id}/stdin``: a client says it will answer ``input()`` for some of
  its executions. The managed runtime lets a cell read stdin only when someone can answer:
  such a registered execution, or a page or console connected to the notebook. Otherwise
  the kernel raises ``StdinNotImplementedError`` at once (as nbclient does) instead of
  waiting for the input timeout.
"""

from __future__ import annotations

import asyncio
import collections
import weakref
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from runtimed.errors import KernelError, RuntimedError
from runtimed.server.access import needs

if TYPE_CHECKING:
    from runtimed.server.daemon import Daemon

ANSWERING_CLIENTS = frozenset({"web", "runt-console"})
"""Peers (the ``client`` of their hello) that a person is behind, who can answer ``input()``."""
MAX_REGISTERED = 10_000
"""Executions remembered as answerable per daemon (the oldest are forgotten first)."""
REQUEST_TIMEOUT = 10.0


class CompleteBody(BaseModel):
    code: str = Field(max_length=1_000_000)
    cursor_pos: int | None = Field(None, ge=0, description="default: the end of the code")
    timeout: float = Field(REQUEST_TIMEOUT, gt=0, le=60)


class InspectBody(BaseModel):
    code: str = Field(max_length=1_000_000)
    cursor_pos: int | None = Field(None, ge=0, description="default: the end of the code")
    detail_level: int = Field(0, ge=0, le=1, description="1: with the source, as IPython's ``??``")
    timeout: float = Field(REQUEST_TIMEOUT, gt=0, le=60)


class HistoryBody(BaseModel):
    pattern: str | None = Field(None, max_length=1000, description="glob pattern (IPython's history search)")
    n: int = Field(100, ge=1, le=10_000)
    unique: bool = True
    timeout: float = Field(REQUEST_TIMEOUT, gt=0, le=60)


class EvaluateBody(BaseModel):
    expressions: dict[str, str] = Field(max_length=1000, description="name -> expression (Jupyter user_expressions)")
    timeout: float = Field(REQUEST_TIMEOUT, gt=0, le=3600)


class StdinBody(BaseModel):
    queue_ids: list[str] = Field(max_length=1000)


_registered: weakref.WeakKeyDictionary[Any, collections.OrderedDict[tuple[str, str], None]] = weakref.WeakKeyDictionary()


def _answerable(daemon: Any) -> collections.OrderedDict[tuple[str, str], None]:
    table = _registered.get(daemon)
    if table is None:
        table = _registered[daemon] = collections.OrderedDict()
    return table


def register_answerable(daemon: Any, notebook_id: str, queue_ids: list[str]) -> None:
    table = _answerable(daemon)
    for queue_id in queue_ids:
        table[(notebook_id, queue_id)] = None
        table.move_to_end((notebook_id, queue_id))
    while len(table) > MAX_REGISTERED:
        table.popitem(last=False)


def stdin_answerable(daemon: Any, notebook_id: str, queue_id: str) -> bool:
    """Whether anyone can answer ``input()`` for this execution (decided when it starts)."""
    if _answerable(daemon).pop((notebook_id, queue_id), "no") is None:
        return True
    service = daemon.services.get(notebook_id)
    peers = service.peers.values() if service is not None else ()
    return any(peer.client in ANSWERING_CLIENTS for peer in peers)


FAST_PYTHON_COMPLETER = "get_ipython().Completer.use_jedi = False"
"""Sent (silently) before a completion on an IPython kernel: jedi's first answer takes 20 s and more;
IPython's own completer answers names, attributes, keys and paths at once."""


def _kernel(daemon: Any, notebook_id: str) -> Any:
    agents = getattr(daemon.runtimes, "agents", None)
    if agents is None:
        raise RuntimedError("this daemon runs without managed runtimes (--no-runtimes)", code="runtimes_disabled")
    agent = agents.get(notebook_id)
    if agent is None or agent.status == "dead":
        raise RuntimedError(f"notebook {notebook_id!r} has no running kernel: start one first (start_kernel(), or "
                            f"`runt start {notebook_id}`)", code="no_runtime")
    return agent.kernel


async def ask_kernel(kernel: Any, msg_type: str, content: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Send one shell request on a client of our own and return the reply's content (bounded)."""
    from jupyter_client.asynchronous.client import AsyncKernelClient

    client = AsyncKernelClient(connection_file=kernel.connection_file)
    client.load_connection_file()
    client.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        if msg_type == "complete_request" and kernel.language == "python":
            client.shell_channel.send(client.session.msg("execute_request", {
                "code": FAST_PYTHON_COMPLETER, "silent": True, "store_history": False, "user_expressions": {},
                "allow_stdin": False, "stop_on_error": False}))
        msg = client.session.msg(msg_type, content)
        client.shell_channel.send(msg)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise KernelError(f"the kernel did not answer the {msg_type} within {timeout:g} s (is a cell "
                                  "still running?)", code="execution_timeout")
            try:
                reply = await client.get_shell_msg(timeout=remaining)
            except Exception:  # queue.Empty on a timeout
                continue
            if reply.get("parent_header", {}).get("msg_id") == msg["header"]["msg_id"]:
                return dict(reply["content"])
    finally:
        client.stop_channels()


def kernel_requests_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["runtimes"])

    @router.post("/api/notebooks/{notebook_id}/complete", dependencies=[needs("runner", "complete code in")])
    async def complete(notebook_id: str, body: CompleteBody) -> dict[str, Any]:
        """The kernel's completions at ``cursor_pos``: ``{matches, cursor_start, cursor_end, metadata}``."""
        daemon.store.require(notebook_id)
        cursor = len(body.code) if body.cursor_pos is None else min(body.cursor_pos, len(body.code))
        reply = await ask_kernel(_kernel(daemon, notebook_id), "complete_request",
                                 {"code": body.code, "cursor_pos": cursor}, body.timeout)
        if reply.get("status") != "ok":
            raise KernelError(f"the kernel could not complete: {reply.get('ename')}: {reply.get('evalue')}")
        return {"matches": list(reply.get("matches") or []), "cursor_start": int(reply.get("cursor_start", cursor)),
                "cursor_end": int(reply.get("cursor_end", cursor)), "metadata": dict(reply.get("metadata") or {})}

    @router.post("/api/notebooks/{notebook_id}/inspect", dependencies=[needs("runner", "inspect code in")])
    async def inspect(notebook_id: str, body: InspectBody) -> dict[str, Any]:
        """The kernel's help for the name at ``cursor_pos`` (Shift-Tab): ``{found, data, metadata}``."""
        daemon.store.require(notebook_id)
        cursor = len(body.code) if body.cursor_pos is None else min(body.cursor_pos, len(body.code))
        reply = await ask_kernel(_kernel(daemon, notebook_id), "inspect_request",
                                 {"code": body.code, "cursor_pos": cursor, "detail_level": body.detail_level}, body.timeout)
        if reply.get("status") != "ok":
            raise KernelError(f"the kernel could not inspect: {reply.get('ename')}: {reply.get('evalue')}")
        return {"found": bool(reply.get("found")), "data": dict(reply.get("data") or {}),
                "metadata": dict(reply.get("metadata") or {})}

    @router.post("/api/notebooks/{notebook_id}/history", dependencies=[needs("runner", "read the history of")])
    async def history(notebook_id: str, body: HistoryBody) -> dict[str, Any]:
        """The kernel's input history, oldest first: ``{history: [[session, line, source], ...]}``."""
        daemon.store.require(notebook_id)
        content: dict[str, Any] = {"output": False, "raw": True, "unique": body.unique, "n": body.n}
        if body.pattern:
            content.update(hist_access_type="search", pattern=body.pattern)
        else:
            content.update(hist_access_type="tail")
        reply = await ask_kernel(_kernel(daemon, notebook_id), "history_request", content, body.timeout)
        rows = [[int(s), int(line), str(src)] for s, line, src in reply.get("history") or []]
        return {"history": rows}

    @router.post("/api/notebooks/{notebook_id}/evaluate", dependencies=[needs("runner", "evaluate code in")])
    async def evaluate(notebook_id: str, body: EvaluateBody) -> dict[str, Any]:
        """Evaluate expressions in the kernel's namespace (Jupyter ``user_expressions`` of a silent execute):
        ``{results: {name: {status, data | ename, evalue}}}``. For runs' ``run_if`` and expectations; a kernel
        busy with a cell answers when the cell ends, within the request's bound."""
        daemon.store.require(notebook_id)
        reply = await ask_kernel(_kernel(daemon, notebook_id), "execute_request", {
            "code": "", "silent": True, "store_history": False, "user_expressions": body.expressions,
            "allow_stdin": False, "stop_on_error": False}, body.timeout)
        if reply.get("status") != "ok":
            raise KernelError(f"the kernel could not evaluate: {reply.get('ename')}: {reply.get('evalue')}")
        return {"results": dict(reply.get("user_expressions") or {})}

    @router.post("/api/notebooks/{notebook_id}/kernel-info", dependencies=[needs("viewer", "read")])
    async def kernel_info(notebook_id: str) -> dict[str, Any]:
        """The kernel's ``kernel_info_reply`` (language_info, implementation, banner, ...)."""
        daemon.store.require(notebook_id)
        return await ask_kernel(_kernel(daemon, notebook_id), "kernel_info_request", {}, REQUEST_TIMEOUT)

    @router.post("/api/notebooks/{notebook_id}/stdin", dependencies=[needs("runner", "answer input in")])
    async def stdin(notebook_id: str, body: StdinBody) -> dict[str, Any]:
        """Say that the caller answers ``input()`` for these executions (register before queueing them)."""
        daemon.store.require(notebook_id)
        register_answerable(daemon, notebook_id, body.queue_ids)
        return {"registered": len(body.queue_ids)}

    return router
