"""Widget comms: the kernel's ``jupyter.widget`` comm messages as events, and viewers' changes back to the kernel.

The runtime plays the part a Jupyter frontend plays for ipywidgets and anywidget: it receives every
``comm_open`` / ``comm_msg`` / ``comm_close`` of the widget target and writes them to the log
(``commOpened``, ``commStateChanged``, ``commCustomMessage``, ``commClosed``), so the document holds each
model's current state whether or not a browser is open. Three jobs besides the mapping:

- **Coalescing.** A kernel that updates a model in a loop (a slider dragged for 10 s, a progress bar)
  would write one event per update. State updates are merged per model and written at most once per
  ``interval`` (the first at once, then the merged rest at the end of the interval), and every pending
  update is flushed before an execution's completion, a custom message or a close: the final state is
  always stored, and in order.
- **Binary buffers** (``buffer_paths``) travel as base64 in the event, or as artifacts when larger than
  the artifact threshold (the pipe stores them before it pushes the event).
- **Output widgets.** ipywidgets' ``Output`` captures what the kernel prints while its ``msg_id`` is set
  (``with out:``, ``interact``): in JupyterLab the frontend does it; here the runtime does, appending those
  outputs to the widget's ``outputs`` state instead of the cell's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Callable
from typing import Any

from runtimed.runtime.kernel import KernelSession
from runtimed.schema.artifact_refs import threshold_setting
from runtimed.schema.events import WIDGET_TARGET, make_event

log = logging.getLogger(__name__)

Emit = Callable[[dict[str, Any]], None]
Stage = Callable[[dict[str, Any], list[tuple[str, bytes, str]]], None]

COALESCE_INTERVAL = 0.2
"""Seconds between two state events of one model while the kernel keeps updating it."""


def nb_output(msg_type: str, content: dict[str, Any]) -> dict[str, Any] | None:
    """A kernel output (normalized IOPub content) as an nbformat output, as an Output widget stores it."""
    if msg_type == "stream":
        return {"output_type": "stream", "name": content.get("name", "stdout"), "text": content.get("text", "")}
    if msg_type == "display_data":
        return {"output_type": "display_data", "data": content.get("data") or {}, "metadata": content.get("metadata") or {}}
    if msg_type == "execute_result":
        return {"output_type": "execute_result", "data": content.get("data") or {},
                "metadata": content.get("metadata") or {}, "execution_count": content.get("execution_count")}
    if msg_type == "error":
        return {"output_type": "error", "ename": content.get("ename", ""), "evalue": content.get("evalue", ""),
                "traceback": list(content.get("traceback") or [])}
    return None


class _Pending:
    __slots__ = ("buffers", "state", "timer")

    def __init__(self) -> None:
        self.state: dict[str, Any] = {}
        self.buffers: dict[tuple[Any, ...], bytes] = {}
        self.timer: asyncio.TimerHandle | None = None


class CommRelay:
    """Maps one kernel's widget comms to events (see the module docstring)."""

    def __init__(self, emit: Emit, *, stage: Stage | None = None, current_cell: Callable[[], str | None] = lambda: None,
                 interval: float = COALESCE_INTERVAL, artifact_threshold: int | None = None) -> None:
        self.emit = emit
        self.stage = stage
        self.current_cell = current_cell
        self.interval = interval
        self.artifact_threshold = artifact_threshold or threshold_setting()
        self.live: set[str] = set()
        """The comm ids of widget models this kernel holds."""
        self._pending: dict[str, _Pending] = {}
        self._flushed_at: dict[str, float] = {}
        self._capturing: dict[str, str] = {}  # parent msg_id -> Output widget comm id
        self._outputs: dict[str, list[dict[str, Any]]] = {}  # Output widget comm id -> its outputs
        self._clear_wait: set[str] = set()
        self.state_events = 0
        """commStateChanged events written (what coalescing saves is measured against kernel updates)."""
        self.kernel_updates = 0

    def attach(self, kernel: KernelSession) -> None:
        kernel.on_comm = self.on_comm
        kernel.capture = self.capture

    # -- kernel -> log -----------------------------------------------------------------------------

    def on_comm(self, msg_type: str, content: dict[str, Any], buffers: list[bytes], parent_id: str | None) -> None:
        comm_id = content.get("comm_id")
        if not isinstance(comm_id, str):
            return
        data = content.get("data") or {}
        if msg_type == "comm_open":
            if content.get("target_name") != WIDGET_TARGET:
                return
            state = dict(data.get("state") or {})
            self.live.add(comm_id)
            self._track(comm_id, state)
            encoded, blobs = self._buffers(self._by_path(data.get("buffer_paths"), buffers))
            self._emit(make_event("commOpened", comm_id=comm_id, target_name=WIDGET_TARGET, state=state,
                                  buffers=encoded, cell_id=self.current_cell()), blobs)
            return
        if comm_id not in self.live:
            return
        if msg_type == "comm_close":
            self.flush(comm_id)
            self.live.discard(comm_id)
            self._forget(comm_id)
            self.emit(make_event("commClosed", comm_id=comm_id))
            return
        method = data.get("method")
        if method == "update":
            self.kernel_updates += 1
            state = dict(data.get("state") or {})
            self._track(comm_id, state)
            self._queue(comm_id, state, self._by_path(data.get("buffer_paths"), buffers))
        elif method == "custom":
            self.flush(comm_id)
            encoded, blobs = self._buffers(self._by_path([[i] for i in range(len(buffers))], buffers))
            self._emit(make_event("commCustomMessage", comm_id=comm_id, content=data.get("content"),
                                  buffers=encoded), blobs)
        # 'echo_update' confirms a viewer's change the log already holds (commUpdateRequested): nothing to write

    def kernel_gone(self) -> None:
        """The kernel restarted or stopped: its models keep their last state but are no longer live."""
        for comm_id in sorted(self.live):
            self.flush(comm_id)
            self.emit(make_event("commClosed", comm_id=comm_id, keep=True))
            self._forget(comm_id)
        self.live.clear()
        self._capturing.clear()

    # -- coalescing --------------------------------------------------------------------------------

    def _queue(self, comm_id: str, state: dict[str, Any], buffers: dict[tuple[Any, ...], bytes]) -> None:
        pending = self._pending.setdefault(comm_id, _Pending())
        for key in state:
            pending.buffers = {p: b for p, b in pending.buffers.items() if p[0] != key}
        pending.state.update(state)
        pending.buffers.update(buffers)
        loop = asyncio.get_running_loop()
        wait = self._flushed_at.get(comm_id, -self.interval) + self.interval - loop.time()
        if wait <= 0:  # also checked here, not only by the timer: a burst of messages may keep the loop busy
            self.flush(comm_id)
        elif pending.timer is None:
            pending.timer = loop.call_later(wait, self.flush, comm_id)

    def flush(self, comm_id: str) -> None:
        """Write a model's pending state now (one merged commStateChanged)."""
        pending = self._pending.pop(comm_id, None)
        if pending is None:
            return
        if pending.timer is not None:
            pending.timer.cancel()
        self._flushed_at[comm_id] = asyncio.get_running_loop().time()
        if comm_id not in self.live:
            return
        encoded, blobs = self._buffers(pending.buffers)
        self.state_events += 1
        self._emit(make_event("commStateChanged", comm_id=comm_id, state=pending.state, buffers=encoded), blobs)

    def flush_all(self) -> None:
        for comm_id in list(self._pending):
            self.flush(comm_id)

    def _forget(self, comm_id: str) -> None:
        pending = self._pending.pop(comm_id, None)
        if pending is not None and pending.timer is not None:
            pending.timer.cancel()
        self._flushed_at.pop(comm_id, None)
        self._outputs.pop(comm_id, None)
        self._clear_wait.discard(comm_id)
        self._capturing = {m: c for m, c in self._capturing.items() if c != comm_id}

    # -- Output widgets ----------------------------------------------------------------------------

    def _track(self, comm_id: str, state: dict[str, Any]) -> None:
        """Follow an Output widget's ``msg_id`` (what it captures) and ``outputs`` (set by the kernel)."""
        if "outputs" in state and isinstance(state["outputs"], list | tuple):
            self._outputs[comm_id] = list(state["outputs"])
        if "msg_id" in state:
            self._capturing = {m: c for m, c in self._capturing.items() if c != comm_id}
            if state["msg_id"]:
                self._capturing[str(state["msg_id"])] = comm_id
                self._outputs.setdefault(comm_id, [])

    def capture(self, parent_id: str | None, msg_type: str, content: dict[str, Any]) -> bool:
        comm_id = self._capturing.get(parent_id or "")
        if comm_id is None:
            return False
        outputs = self._outputs.setdefault(comm_id, [])
        if msg_type == "clear_output":
            if content.get("wait"):
                self._clear_wait.add(comm_id)
            else:
                outputs.clear()
                self._queue(comm_id, {"outputs": list(outputs)}, {})
            return True
        out = nb_output(msg_type, content)
        if out is None:
            return True  # update_display_data inside an Output widget: not tracked
        if comm_id in self._clear_wait:
            self._clear_wait.discard(comm_id)
            outputs.clear()
        last = outputs[-1] if outputs else None
        if out["output_type"] == "stream" and last and last.get("output_type") == "stream" and last.get("name") == out["name"]:
            outputs[-1] = {**last, "text": last.get("text", "") + out["text"]}
        else:
            outputs.append(out)
        self._queue(comm_id, {"outputs": list(outputs)}, {})
        return True

    # -- buffers -----------------------------------------------------------------------------------

    @staticmethod
    def _by_path(paths: Any, buffers: list[bytes]) -> dict[tuple[Any, ...], bytes]:
        if not isinstance(paths, list):
            return {}
        return {tuple(p): b for p, b in zip(paths, buffers, strict=False) if isinstance(p, list) and p}

    def _buffers(self, buffers: dict[tuple[Any, ...], bytes]) -> tuple[list[dict[str, Any]], list[tuple[str, bytes, str]]]:
        encoded: list[dict[str, Any]] = []
        blobs: list[tuple[str, bytes, str]] = []
        for path, data in buffers.items():
            if self.stage is not None and len(data) > self.artifact_threshold:
                sha = hashlib.sha256(data).hexdigest()
                encoded.append({"path": list(path), "artifact": sha, "size": len(data)})
                blobs.append((sha, data, "application/octet-stream"))
            else:
                encoded.append({"path": list(path), "data": base64.b64encode(data).decode()})
        return encoded, blobs

    def _emit(self, event: dict[str, Any], blobs: list[tuple[str, bytes, str]]) -> None:
        if blobs and self.stage is not None:
            self.stage(event, blobs)
        else:
            self.emit(event)


def forward(kernel: KernelSession, args: Any) -> None:
    """Send a viewer's ``commUpdateRequested`` to the kernel as the comm_msg a Jupyter frontend would send."""
    paths = [list(b.path) for b in args.buffers if b.data is not None]
    raw = [base64.b64decode(b.data) for b in args.buffers if b.data is not None]
    if args.state is not None:
        kernel.send_comm(args.comm_id, {"method": "update", "state": args.state, "buffer_paths": paths}, raw)
    if args.content is not None:
        kernel.send_comm(args.comm_id, {"method": "custom", "content": args.content}, raw)
