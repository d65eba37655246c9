"""Flow control for a cell's printed output, installed inside an ipykernel (``KernelSession`` sends this file's
source and calls ``install``; it runs in the kernel's Python, which need not have runtimed).

An ipykernel puts everything a cell wrote between two of its flushes (every 0.2 s) into one IOPub message, and
IOPub has no back pressure: a fast writer makes messages of tens of MB and runs as far ahead of the runtime as it
likes, and the runtime, which must hold each message while it renders and spools it, grows with the print.
Installed, the kernel's ``stdout``/``stderr``:

- send at most ``limit`` characters per message (a larger buffer goes out as several messages);
- before each message, wait while more than ``window`` characters are sent but not yet acknowledged by the
  runtime, which writes the count of stream characters it has handled to ``ack_path`` (8 bytes, little-endian).
  A wait lasts at most ``max_wait`` seconds, and after one runs out the kernel stops waiting until the runtime
  reads on: a runtime that stops reading slows a cell down, never hangs it;
- make the writer itself flush (and so wait for the IO thread, which waits for the runtime) once ``limit``
  characters are buffered, checked every 64 writes so that a plain write pays almost nothing.

Only the message boundaries change: the text, its order and its parent are the same. Kernels other than an
ipykernel with ``_flush_buffers`` (ipykernel 7) are left as they are.
"""

from __future__ import annotations

import os
import struct
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any


def install(limit: int, window: int, ack_path: str, max_wait: float = 10.0) -> None:
    try:
        from ipykernel.iostream import OutStream
    except ImportError:
        return
    if not hasattr(OutStream, "_flush_buffers") or not hasattr(OutStream, "_schedule_flush"):
        return
    try:
        ack_fd = os.open(ack_path, os.O_RDONLY)
    except OSError:
        return
    sent = [0]  # stream characters sent by both streams (counted in the IO thread)
    stalled = [-1]  # the acknowledged count when a wait last ran out: the runtime is not reading

    def acknowledged() -> int:
        try:
            return int(struct.unpack("<Q", os.pread(ack_fd, 8, 0))[0])
        except (OSError, struct.error):
            return sent[0]  # unreadable: do not wait

    def wait_for_runtime() -> None:
        acked = acknowledged()
        if sent[0] - acked <= window or acked == stalled[0]:
            return
        deadline, delay = time.monotonic() + max_wait, 0.001
        while sent[0] - acked > window:
            if time.monotonic() > deadline:
                stalled[0] = acked  # do not wait again until the runtime reads on
                return
            time.sleep(delay)
            delay = min(delay * 2, 0.05)
            acked = acknowledged()

    for name in ("stdout", "stderr"):
        stream = getattr(sys, name, None)
        if not isinstance(stream, OutStream) or getattr(stream, "_runtimed_flow", False):
            continue
        base: Any = type(stream)

        class Bounded(base):
            _runtimed_flow = True
            _runtimed_writes = 0
            _runtimed_sent = sent

            def _flush_buffers(self) -> Iterator[tuple[dict[str, Any], str]]:
                for parent, data in super()._flush_buffers():
                    for start in range(0, len(data), limit):
                        wait_for_runtime()  # in the IO thread: a huge buffer goes out at the runtime's pace
                        piece = data[start : start + limit]
                        sent[0] += len(piece)
                        yield parent, piece

            def _schedule_flush(self) -> None:
                super()._schedule_flush()
                self._runtimed_writes += 1
                if self._runtimed_writes % 64:  # every write pays only this; the buffer is measured now and then
                    return
                if threading.get_ident() == getattr(getattr(self.pub_thread, "thread", None), "ident", None):
                    return
                try:
                    buffered = sum(buffer.tell() for buffer in list(self._buffers.values()))
                except (AttributeError, RuntimeError, ValueError):
                    return
                if buffered >= limit:
                    self.flush()  # the writer waits until the IO thread has sent it, at the runtime's pace

        Bounded.__name__, Bounded.__qualname__, Bounded.__module__ = base.__name__, base.__qualname__, base.__module__
        stream.__class__ = Bounded
