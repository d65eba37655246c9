"""Map a kernel's IOPub output for one execution to output events.

Consecutive writes to one stream coalesce into a single output whose text is
rendered like a terminal (``StreamTerminal``); its growth is sent as
``streamTextChanged`` tail rewrites at most every ``flush_interval`` seconds, so a
progress bar stays one short line and a 200,000-line print stays a few events.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from runtimed.runtime.terminal import StreamTerminal
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id

Emit = Callable[[dict[str, Any]], None]


class _Stream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.output_id = new_id("o-")
        self.terminal = StreamTerminal()
        self.announced = False


class OutputWriter:
    """Turns ``on_output(kind, content)`` calls into events passed to ``emit`` (in order)."""

    def __init__(self, emit: Emit, *, cell_id: str, queue_id: str, flush_interval: float = 0.05) -> None:
        self.emit = emit
        self.cell_id = cell_id
        self.queue_id = queue_id
        self.flush_interval = flush_interval
        self._stream: _Stream | None = None
        self._timer: asyncio.TimerHandle | None = None

    def on_output(self, kind: str, content: dict[str, Any]) -> None:
        if kind == "stream":
            self._write_stream(content.get("name", "stdout"), content.get("text", ""))
            return
        self.flush()
        self._stream = None
        if kind in ("display_data", "execute_result", "error"):
            self._add(kind, content)
        elif kind == "update_display_data":
            if content.get("display_id"):
                self.emit(make_event("displayUpdated", display_id=content["display_id"], data=content.get("data", {}),
                                     metadata=content.get("metadata") or {}))
        elif kind == "clear_output":
            self.emit(make_event("outputsCleared", cell_id=self.cell_id, wait=bool(content.get("wait"))))

    def _add(self, kind: str, content: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        if kind == "error":
            fields.update(ename=content.get("ename", ""), evalue=content.get("evalue", ""),
                          traceback=list(content.get("traceback", [])))
        else:
            fields.update(data=content.get("data", {}), metadata=content.get("metadata") or {})
            if content.get("display_id"):
                fields["display_id"] = content["display_id"]
            if kind == "execute_result":
                fields["execution_count"] = content.get("execution_count")
        self.emit(make_event("outputAdded", output_id=new_id("o-"), cell_id=self.cell_id, queue_id=self.queue_id,
                             output_type=kind, **fields))

    def _write_stream(self, name: str, text: str) -> None:
        if self._stream is None or self._stream.name != name:
            self.flush()
            self._stream = _Stream(name)
        self._stream.terminal.feed(text)
        if not self._stream.announced:
            self.flush()  # the first chunk goes out at once: output appears without delay
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.flush_interval, self.flush)

    def flush(self) -> None:
        """Send what the current stream gained since its last event."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        stream = self._stream
        if stream is None:
            return
        change = stream.terminal.take_change()
        if change is None:
            return
        offset, tail = change
        if not stream.announced:
            stream.announced = True
            self.emit(make_event("outputAdded", output_id=stream.output_id, cell_id=self.cell_id,
                                 queue_id=self.queue_id, output_type="stream", name=stream.name, text=tail))
        else:
            self.emit(make_event("streamTextChanged", output_id=stream.output_id, offset=offset, text=tail))

    def close(self) -> None:
        self.flush()
        self._stream = None
