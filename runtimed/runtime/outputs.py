"""Map a kernel's IOPub output for one execution to output events.

Consecutive writes to one stream coalesce into a single output whose text is
rendered like a terminal (``StreamTerminal``); its growth is sent as
``streamTextChanged`` tail rewrites at most every ``flush_interval`` seconds, so a
200,000-line print stays a few events. While a stream only rewrites its tail (a
``\\r`` progress bar), the interval doubles up to ``MAX_REWRITE_INTERVAL``: the bar
stays live but its events stay few, however long it runs.

Every replica rewrites an output's whole text for each ``streamTextChanged``, so a
stream that grew without end would cost the square of its size. Two rules keep the
cost linear: a stream's text is spread over consecutive outputs of at most one
event's size each (``segment``), cut only where the terminal can no longer change
the text (its frozen lines) — the outputs concatenated are exactly what the terminal
shows; and the flush interval grows with the size of the output being rewritten
(``REWRITE_BYTES_PER_SECOND``), so a slow stream sitting on a large output is not
rewritten twenty times a second.

An event must stay under the store's size limit: a huge stream chunk is split over
several events. A rich MIME value above the artifact threshold is offloaded: with a
``stage`` callback the writer replaces it by an artifact reference and hands the bytes
to ``stage`` (the runtime's pipe stores them before it pushes the event); without one,
or if the output is still too large, it is replaced by a short error output that says so
(rather than being rejected and silently lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson

from runtimed.runtime.terminal import StreamTerminal
from runtimed.schema.artifact_refs import offload, threshold_setting
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.limits import Limits

Emit = Callable[[dict[str, Any]], None]
Stage = Callable[[dict[str, Any], list[tuple[str, bytes, str]]], None]
"""Takes an event and the artifacts (sha, bytes, content type) it references; emits it once they are stored."""

MAX_REWRITE_INTERVAL = 0.5
"""Seconds between the events of a stream that keeps rewriting its tail (progress bars)."""
REWRITE_BYTES_PER_SECOND = 8 * 1024 * 1024
"""A stream's events come at most as often as its output's text, rewritten by every replica, stays under this rate."""
EVENT_ROOM = 4096
"""Bytes of an event left for its envelope and fields other than the text."""


class _Stream:
    """One stream's terminal and the output that holds its text from ``base`` on (earlier outputs hold the rest)."""

    __slots__ = ("announced", "base", "name", "output_id", "rewrites", "sent", "terminal")

    def __init__(self, name: str) -> None:
        self.name = name
        self.terminal = StreamTerminal()
        self.rewrites = 0  # consecutive flushes that rewrote already-sent text
        self.next_output(0)

    def next_output(self, base: int) -> None:
        """Hold the text from ``base`` on in a new output (everything before it is final and sent)."""
        self.output_id = new_id("o-")
        self.base = base
        self.announced = False
        self.sent = base  # where the output's text ends (a position in the stream's text), as of the last event


class OutputWriter:
    """Turns ``on_output(kind, content)`` calls into events passed to ``emit`` (in order)."""

    def __init__(self, emit: Emit, *, cell_id: str, queue_id: str, flush_interval: float = 0.05,
                 max_event_bytes: int | None = None, stage: Stage | None = None,
                 artifact_threshold: int | None = None) -> None:
        self.emit = emit
        self.stage = stage
        self.artifact_threshold = artifact_threshold or threshold_setting()
        self.cell_id = cell_id
        self.queue_id = queue_id
        self.flush_interval = flush_interval
        self.max_event_bytes = max_event_bytes or Limits.from_env().max_event_bytes
        self.text_bytes = max(1024, self.max_event_bytes - EVENT_ROOM)
        """Encoded stream text one event may carry."""
        self.segment = self.text_bytes // 2
        """Characters of final text an output holds before the stream goes on in a new one (one event's worth,
        with room for JSON escapes)."""
        self._stream: _Stream | None = None
        self._timer: asyncio.TimerHandle | None = None
        self.stream_chars = 0
        """Characters written to streams so far (before terminal rendering)."""

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
                data, blobs = self._offload(content.get("data", {}))
                event = make_event("displayUpdated", display_id=content["display_id"], data=data,
                                   metadata=content.get("metadata") or {})
                self._emit_output("update_display_data", event, blobs)
        elif kind == "clear_output":
            self.emit(make_event("outputsCleared", cell_id=self.cell_id, wait=bool(content.get("wait"))))

    def _add(self, kind: str, content: dict[str, Any]) -> None:
        fields: dict[str, Any] = {}
        blobs: list[tuple[str, bytes, str]] = []
        if kind == "error":
            fields.update(ename=content.get("ename", ""), evalue=content.get("evalue", ""),
                          traceback=list(content.get("traceback", [])))
        else:
            data, blobs = self._offload(content.get("data", {}))
            fields.update(data=data, metadata=content.get("metadata") or {})
            if content.get("display_id"):
                fields["display_id"] = content["display_id"]
            if kind == "execute_result":
                fields["execution_count"] = content.get("execution_count")
        event = make_event("outputAdded", output_id=new_id("o-"), cell_id=self.cell_id, queue_id=self.queue_id,
                           output_type=kind, **fields)
        self._emit_output(kind, event, blobs)

    def _offload(self, data: Any) -> tuple[dict[str, Any], list[tuple[str, bytes, str]]]:
        """``data`` with its large values replaced by artifact references (when this writer can store artifacts)."""
        if self.stage is None or not isinstance(data, dict):
            return data, []
        return offload(data, self.artifact_threshold)

    def _emit_output(self, kind: str, event: dict[str, Any], blobs: list[tuple[str, bytes, str]]) -> None:
        if not self._fits(event):
            self._too_large(kind, event)
        elif blobs and self.stage is not None:
            self.stage(event, blobs)
        else:
            self.emit(event)

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
        self.stream_chars += len(text)
        if not stream.announced:
            self.flush()  # the first chunk goes out at once: output appears without delay
        elif self._timer is None:
            interval = self.flush_interval
            if stream.rewrites:
                interval = min(MAX_REWRITE_INTERVAL, interval * 2 ** min(stream.rewrites, 16))
            interval = max(interval, (stream.sent - stream.base) / REWRITE_BYTES_PER_SECOND)
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
        self._deliver(stream, offset, tail)

    def _deliver(self, stream: _Stream, offset: int, tail: str) -> None:
        """Make the stream's outputs hold ``text[:offset] + tail``, rolling over to new outputs at final text."""
        final = stream.terminal.final_length  # text[:final] can never change again
        start = 0  # tail[start:] is what is left to send, from ``offset`` on
        while offset + len(tail) - start - stream.base > self.segment and final > stream.base:
            if offset > final:  # the change is in the live lines: end the output at the final text
                self._send(stream, final, "")
                offset, tail, start = final, stream.terminal.text_from(final), 0
            else:
                end = min(final, stream.base + self.segment)
                if end <= offset:
                    cut = offset  # the output is full before the change: it ends there
                else:
                    newline = tail.rfind("\n", start, start + end - offset)
                    cut = offset + newline + 1 - start if newline >= 0 else end
                self._send(stream, offset, tail[start : start + cut - offset])
                start += cut - offset
                offset = cut
            stream.next_output(offset)
        self._send(stream, offset, tail[start:] if start else tail)

    def _send(self, stream: _Stream, offset: int, text: str) -> None:
        """Make the current output's text ``old[:offset - base] + text``, over as many events as the size limit needs."""
        if stream.announced and offset == stream.sent and not text:
            return  # nothing changes
        pieces = self._pieces(text)
        if not stream.announced:
            stream.announced = True
            self.emit(make_event("outputAdded", output_id=stream.output_id, cell_id=self.cell_id,
                                 queue_id=self.queue_id, output_type="stream", name=stream.name, text=pieces[0]))
        else:
            self.emit(make_event("streamTextChanged", output_id=stream.output_id, offset=offset - stream.base,
                                 text=pieces[0]))
        offset += len(pieces[0])
        for piece in pieces[1:]:  # a huge change: appended over several events, each under the size limit
            self.emit(make_event("streamTextChanged", output_id=stream.output_id, offset=offset - stream.base,
                                 text=piece))
            offset += len(piece)
        stream.sent = offset

    def _pieces(self, text: str) -> list[str]:
        """``text`` cut so that each piece, JSON-encoded, fits in one event (at least one piece, maybe empty)."""
        budget = self.text_bytes
        pieces = []
        while len(text) > budget // 6:  # six bytes per character is the worst escaping: shorter always fits
            piece = text[:budget]
            size = len(orjson.dumps(piece))
            while size > budget:
                piece = piece[: max(1, len(piece) * budget // size - 16)]
                size = len(orjson.dumps(piece))
            pieces.append(piece)
            text = text[len(piece) :]
        if text or not pieces:
            pieces.append(text)
        return pieces

    def close(self) -> None:
        self.flush()
        self._stream = None


def artifact_not_stored(event: dict[str, Any], reason: str) -> dict[str, Any]:
    """What goes to the log instead of an output whose artifacts could not be stored: an error output that
    says so (a display update shows the reason as its text instead)."""
    args = event["args"]
    if event["name"] != "outputAdded":
        note = f"(this display update was too large for the log and could not be stored: {reason})"
        return {**event, "args": {**args, "data": {"text/plain": note}}}
    return make_event("outputAdded", output_id=args["outputId"], cell_id=args["cellId"], queue_id=args.get("queueId"),
                      output_type="error", ename="ArtifactNotStored",
                      evalue=f"this output was too large for the log and could not be stored as an artifact: {reason}",
                      traceback=[])
