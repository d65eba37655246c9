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

A stream past ``stream_cap`` characters (``RUNTIMED_STREAM_CAP``, default 1 MiB) spills when the writer can
store artifacts: its output ends at the cap (the head, at a line end), and a new output holds only the live
tail (``TAIL_CHARS``, from a line start) set by ``streamTailSet`` events, at most every ``TAIL_INTERVAL`` (growing
with the time spent spilling, so an hour-long log stays a few hundred small events). Everything between head and
tail is released by the terminal (``StreamTerminal.release``) and written to a spool file as it becomes final,
hashed on the way; when the stream ends (another output, the end of the cell) the spool becomes one artifact,
referenced by the last ``streamTailSet`` (``data["text/plain"]``). Memory holds the head once, the tail and the
text that arrived since the last flush, whatever the stream's size; a crash before the stream ends loses the
spooled middle (the log says how many characters were omitted).

An event must stay under the store's size limit: a huge stream chunk is split over
several events. A rich MIME value above the artifact threshold is offloaded: with a
``stage`` callback the writer replaces it by an artifact reference and hands the bytes
to ``stage`` (the runtime's pipe stores them before it pushes the event); without one,
or if the output is still too large, it is replaced by a short error output that says so
(rather than being rejected and silently lost).
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from runtimed.runtime.memory import release_memory_soon
from runtimed.runtime.terminal import StreamTerminal
from runtimed.schema.artifact_refs import offload, threshold_setting
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.limits import Limits
from runtimed.settings import env_number

Emit = Callable[[dict[str, Any]], None]
Blob = tuple[str, bytes | Path, str]
"""An artifact to store: sha256, its bytes (or a spool file holding them, removed once stored), content type."""
Stage = Callable[[dict[str, Any], Sequence[Blob]], None]
"""Takes an event and the artifacts it references; emits it once they are stored."""

DEFAULT_STREAM_CAP = 1024 * 1024
"""Characters of one stream kept in the log before it spills to an artifact (``RUNTIMED_STREAM_CAP``)."""
TAIL_CHARS = 8192
"""Characters of a spilled stream's live tail kept in the log."""
TAIL_INTERVAL = 0.5
"""Seconds between a spilled stream's tail events at first; grows to ``MAX_TAIL_INTERVAL`` over its run."""
MAX_TAIL_INTERVAL = 10.0
TRIM_EVERY = 32 * 1024 * 1024
"""Spooled bytes between two allocator trims while a stream spills (``runtime/memory.py``)."""
SPOOL_CHARS = 1024 * 1024
"""Final text a spilled stream holds at most before it moves it to the spool (without waiting for a tail event)."""
STREAM_TEXT_TYPE = "text/plain; charset=utf-8"


def stream_cap_setting() -> int:
    return env_number("RUNTIMED_STREAM_CAP", DEFAULT_STREAM_CAP, int)

MAX_REWRITE_INTERVAL = 0.5
"""Seconds between the events of a stream that keeps rewriting its tail (progress bars)."""
REWRITE_BYTES_PER_SECOND = 8 * 1024 * 1024
"""A stream's events come at most as often as its output's text, rewritten by every replica, stays under this rate."""
EVENT_ROOM = 4096
"""Bytes of an event left for its envelope and fields other than the text."""


class _Spill:
    """A stream past the cap: its tail output, and the spool file its omitted text goes to (hashed as written)."""

    def __init__(self, output_id: str, head_end: int) -> None:
        self.output_id = output_id
        self.head_end = head_end  # where the omitted text starts (a position in the stream's text)
        fd, name = tempfile.mkstemp(prefix="runtimed-stream-", suffix=".txt")
        self.path = Path(name)
        self.file = os.fdopen(fd, "wb")
        self.hash = hashlib.sha256()
        self.chars = 0
        self.bytes = 0
        self.started = time.monotonic()
        self.last: tuple[str, int] | None = None  # (tail, omitted) of the last event

    def write(self, text: str) -> None:
        data = text.encode("utf-8", "replace")
        self.hash.update(data)
        self.file.write(data)
        self.chars += len(text)
        self.bytes += len(data)

    def interval(self) -> float:
        return min(MAX_TAIL_INTERVAL, max(TAIL_INTERVAL, (time.monotonic() - self.started) / 30))

    def discard(self) -> None:
        self.file.close()
        self.path.unlink(missing_ok=True)


class _Stream:
    """One stream's terminal and the output that holds its text from ``base`` on (earlier outputs hold the rest)."""

    __slots__ = ("announced", "base", "name", "output_id", "rewrites", "sent", "spill", "terminal")

    def __init__(self, name: str) -> None:
        self.name = name
        self.terminal = StreamTerminal()
        self.rewrites = 0  # consecutive flushes that rewrote already-sent text
        self.spill: _Spill | None = None
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
                 artifact_threshold: int | None = None, stream_cap: int | None = None) -> None:
        self.emit = emit
        self.stage = stage
        self.artifact_threshold = artifact_threshold or threshold_setting()
        self.stream_cap = stream_cap or stream_cap_setting()
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
        self._end_stream()
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
        blobs: list[Blob] = []
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

    def _offload(self, data: Any) -> tuple[dict[str, Any], list[Blob]]:
        """``data`` with its large values replaced by artifact references (when this writer can store artifacts)."""
        if self.stage is None or not isinstance(data, dict):
            return data, []
        data, blobs = offload(data, self.artifact_threshold)
        return data, list(blobs)

    def _emit_output(self, kind: str, event: dict[str, Any], blobs: list[Blob]) -> None:
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
            self._end_stream()
            stream = self._stream = _Stream(name)
        if len(text) > SPOOL_CHARS and self.stage is not None:  # a huge message that will spill (a kernel that
            # sends all it buffered at once): in slices, so the terminal and the spool copy one slice at a time
            for start in range(0, len(text), SPOOL_CHARS):
                self._feed(stream, text[start : start + SPOOL_CHARS])
        else:
            self._feed(stream, text)

    def _feed(self, stream: _Stream, text: str) -> None:
        stream.terminal.feed(text)
        self.stream_chars += len(text)
        terminal = stream.terminal
        if stream.spill is not None and terminal.final_length - terminal.released > SPOOL_CHARS:
            terminal.take_change()  # a spilled stream's tail is read whole (held_text), not from the change
            self._spool(terminal, stream.spill, end=False)  # between tail events: memory holds a bounded amount
        elif stream.spill is None and self.stage is not None and terminal.final_length > self.stream_cap:
            self.flush()  # past the cap: spill now rather than hold the text until the next flush
        if not stream.announced:
            self.flush()  # the first chunk goes out at once: output appears without delay
        elif self._timer is None and stream.spill is not None:
            self._timer = asyncio.get_running_loop().call_later(stream.spill.interval(), self.flush)
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
        if stream.spill is not None:
            stream.terminal.take_change()
            self._update_spill(stream, stream.spill, end=False)  # sends only if the tail moved
            return
        change = stream.terminal.take_change()
        if change is None:
            return
        offset, tail = change
        if self.stage is not None and stream.terminal.final_length > self.stream_cap:
            self._start_spill(stream, offset, tail)
            return
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

    def _start_spill(self, stream: _Stream, offset: int, tail: str) -> None:
        """End the stream's output at the cap (a line end, if one is near) and go on in a spilled tail output."""
        head = stream.terminal.release(self.stream_cap)  # text[:cap]: already final
        newline = head.rfind("\n", max(0, len(head) - TAIL_CHARS))
        head_end = newline + 1 if newline >= stream.base else len(head)
        if not stream.announced or offset < head_end:
            start = min(offset, head_end) if stream.announced else stream.base
            self._send(stream, start, head[start:head_end])
        else:
            self._send(stream, head_end, "")
        spill = stream.spill = _Spill(new_id("o-"), head_end)
        spill.write(head[head_end:])
        del head
        self.emit(make_event("outputAdded", output_id=spill.output_id, cell_id=self.cell_id, queue_id=self.queue_id,
                             output_type="stream", name=stream.name, text=""))
        self._update_spill(stream, spill, end=False)

    def _spool(self, terminal: StreamTerminal, spill: _Spill, *, end: bool) -> str:
        """Move the text that left the tail into the spool (only final text, unless the stream ended); the tail."""
        held = terminal.held_text()
        limit = len(held) if end else terminal.final_length - terminal.released
        cut = min(limit, len(held) - TAIL_CHARS)
        if cut <= 0:
            return held
        newline = held.rfind("\n", max(0, cut - TAIL_CHARS), cut)
        if newline >= 0:
            cut = newline + 1  # the tail starts at a line start
        before = spill.bytes
        tail = held[cut:]
        if end:
            spill.write(held[:cut])
        else:
            del held  # the released text is that very piece: one copy less of a large message
            spill.write(terminal.release(terminal.released + cut))
        if before // TRIM_EVERY != spill.bytes // TRIM_EVERY:
            release_memory_soon()  # the kernel's messages went through the allocator: give their pages back
        return tail

    def _update_spill(self, stream: _Stream, spill: _Spill, *, end: bool) -> None:
        """Spool the text that left the tail; send the tail (and, at the end, the artifact of the spool)."""
        tail = self._spool(stream.terminal, spill, end=end)
        shown, hidden = tail, 0
        if len(tail) > 4 * TAIL_CHARS and not end:  # a huge live line: show its end until it is final
            shown, hidden = tail[-TAIL_CHARS:], len(tail) - TAIL_CHARS
        omitted = spill.chars + hidden
        if not end:
            if spill.last != (shown, omitted):
                spill.last = (shown, omitted)
                self.emit(make_event("streamTailSet", output_id=spill.output_id, text=shown, omitted=omitted,
                                     omitted_bytes=spill.bytes + hidden))
            return
        spill.file.close()
        if not spill.bytes:
            spill.discard()
            self.emit(make_event("streamTailSet", output_id=spill.output_id, text=shown, omitted=0, omitted_bytes=0))
            return
        sha = spill.hash.hexdigest()
        ref = {"artifact": sha, "size": spill.bytes, "mime": "text/plain"}
        event = make_event("streamTailSet", output_id=spill.output_id, text=shown, omitted=omitted,
                           omitted_bytes=spill.bytes, data={"text/plain": ref})
        assert self.stage is not None
        self.stage(event, [(sha, spill.path, STREAM_TEXT_TYPE)])

    def _end_stream(self) -> None:
        """The current stream is over (another output, or the end of the cell): flush it; a spilled one is stored."""
        self.flush()
        stream, self._stream = self._stream, None
        if stream is not None and stream.spill is not None:
            try:
                self._update_spill(stream, stream.spill, end=True)
            except OSError as exc:  # the spool could not be written (disk full): say so rather than lose it silently
                stream.spill.discard()
                self.emit(make_event("streamTailSet", output_id=stream.spill.output_id,
                                     text=f"\n[the omitted text could not be kept: {exc}]\n",
                                     omitted=stream.spill.chars, omitted_bytes=stream.spill.bytes))

    def close(self) -> None:
        self._end_stream()


def artifact_not_stored(event: dict[str, Any], reason: str) -> dict[str, Any]:
    """What goes to the log instead of an output whose artifacts could not be stored: an error output that
    says so (a display update shows the reason as its text instead)."""
    args = event["args"]
    if event["name"] == "streamTailSet":  # the tail stays; the omitted text is said to be lost
        text = f"{args['text']}\n[the omitted text could not be stored as an artifact: {reason}]\n"
        return {**event, "args": {k: v for k, v in args.items() if k != "data"} | {"text": text}}
    if event["name"] != "outputAdded":
        note = f"(this display update was too large for the log and could not be stored: {reason})"
        return {**event, "args": {**args, "data": {"text/plain": note}}}
    return make_event("outputAdded", output_id=args["outputId"], cell_id=args["cellId"], queue_id=args.get("queueId"),
                      output_type="error", ename="ArtifactNotStored",
                      evalue=f"this output was too large for the log and could not be stored as an artifact: {reason}",
                      traceback=[])
