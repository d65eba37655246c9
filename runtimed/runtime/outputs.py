"""Map a kernel's IOPub output for one execution to output events.

Consecutive writes to one stream coalesce into a single output whose text is
rendered like a terminal (``StreamTerminal``); its growth is sent as
``streamTextChanged`` tail rewrites at most every ``flush_interval`` seconds, so a
200,000-line print stays a few events. While a stream only rewrites its tail (a
``\\r`` progress bar), the interval doubles up to ``MAX_REWRITE_INTERVAL``: the bar
stays live but its events stay few, however long it runs.

An event must stay under the store's size limit: a huge stream chunk is split over
several events, and a rich output too large for one event is replaced by a short
error output that says so (rather than being rejected and silently lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from runtimed.runtime.terminal import StreamTerminal
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.limits import Limits

Emit = Callable[[dict[str, Any]], None]

MAX_REWRITE_INTERVAL = 0.5
"""Seconds between the events of a stream that keeps rewriting its tail (progress bars)."""
STREAM_CHUNK_CHARS = 256 * 1024
"""Stream text per event; JSON escaping can grow a character to 6 bytes, which stays far below the event limit."""


class _Stream:
    __slots__ = ("announced", "name", "output_id", "rewrites", "sent", "terminal")

    def __init__(self, name: str) -> None:
        self.name = name
        self.output_id = new_id("o-")
        self.terminal = StreamTerminal()
        self.announced = False
        self.sent = 0  # length of the text as of the last event
        self.rewrites = 0  # consecutive flushes that rewrote already-sent text


class OutputWriter:
    """Turns ``on_output(kind, content)`` calls into events passed to ``emit`` (in order)."""

    def __init__(self, emit: Emit, *, cell_id: str, queue_id: str, flush_interval: float = 0.05,
                 max_event_bytes: int | None = None) -> None:
        self.emit = emit
        self.cell_id = cell_id
        self.queue_id = queue_id
        self.flush_interval = flush_interval
        self.max_event_bytes = max_event_bytes or Limits.from_env().max_event_bytes
        self.chunk_chars = max(1024, min(STREAM_CHUNK_CHARS, (self.max_event_bytes - 4096) // 6))
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
                event = make_event("displayUpdated", display_id=content["display_id"], data=content.get("data", {}),
                                   metadata=content.get("metadata") or {})
                if self._fits(event):
                    self.emit(event)
                else:
                    self._too_large("update_display_data", event)
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
        event = make_event("outputAdded", output_id=new_id("o-"), cell_id=self.cell_id, queue_id=self.queue_id,
                           output_type=kind, **fields)
        if self._fits(event):
            self.emit(event)
        else:
            self._too_large(kind, event)

    def _fits(self, event: dict[str, Any]) -> bool:
        return len(orjson.dumps(event)) <= self.max_event_bytes - 1024  # room for the envelope

    def _too_large(self, kind: str, event: dict[str, Any]) -> None:
        size = len(orjson.dumps(event))
        mimes = ", ".join(sorted((event["args"].get("data") or {}).keys())) or "?"
        self.emit(make_event(
            "outputAdded", output_id=new_id("o-"), cell_id=self.cell_id, queue_id=self.queue_id,
            output_type="error", ename="OutputTooLarge",
            evalue=f"a {kind} output ({mimes}) of {size} bytes exceeds the event limit of {self.max_event_bytes} "
                   "bytes and was not stored", traceback=[],
        ))

    def _write_stream(self, name: str, text: str) -> None:
        stream = self._stream
        if stream is None or stream.name != name:
            self.flush()
            stream = self._stream = _Stream(name)
        stream.terminal.feed(text)
        if not stream.announced:
            self.flush()  # the first chunk goes out at once: output appears without delay
        elif self._timer is None:
            interval = self.flush_interval
            if stream.rewrites:
                interval = min(MAX_REWRITE_INTERVAL, interval * 2 ** min(stream.rewrites, 16))
            self._timer = asyncio.get_running_loop().call_later(interval, self.flush)

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
        if stream.announced:
            stream.rewrites = stream.rewrites + 1 if offset < stream.sent else 0
        stream.sent = offset + len(tail)
        chunk = self.chunk_chars
        first, rest = tail[:chunk], tail[chunk:]
        if not stream.announced:
            stream.announced = True
            self.emit(make_event("outputAdded", output_id=stream.output_id, cell_id=self.cell_id,
                                 queue_id=self.queue_id, output_type="stream", name=stream.name, text=first))
        else:
            self.emit(make_event("streamTextChanged", output_id=stream.output_id, offset=offset, text=first))
        offset += len(first)
        while rest:  # a huge chunk: appended over several events, each under the size limit
            first, rest = rest[:chunk], rest[chunk:]
            self.emit(make_event("streamTextChanged", output_id=stream.output_id, offset=offset, text=first))
            offset += len(first)

    def close(self) -> None:
        self.flush()
        self._stream = None
