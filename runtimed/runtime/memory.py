"""Give memory back to the operating system after a burst of large outputs.

Freed Python objects and SQLite pages go back to the C allocator, and glibc keeps most
of it in its heaps and arenas: after a 50 MB print the daemon's RSS would stay hundreds
of megabytes above its idle figure although nothing references the data any more.
``malloc_trim(0)`` returns the free pages. Elsewhere (musl, macOS) there is nothing to call.
"""

from __future__ import annotations

import asyncio
import ctypes
import ctypes.util
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

LARGE_OUTPUT_BYTES = 16 * 1024 * 1024
"""Stream text an execution must have produced before its runtime trims the allocator afterwards."""


def _load_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        trim = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _load_trim()


def trim_memory() -> None:
    """Return the allocator's free pages to the OS (glibc only; it may take a while on a large heap)."""
    if _TRIM is not None:
        try:
            _TRIM(0)
        except OSError:  # pragma: no cover - a libc without a working malloc_trim
            log.debug("malloc_trim failed", exc_info=True)


def release_memory_soon() -> asyncio.Future[None]:
    """Trim in a worker thread (it releases the GIL): the event loop goes on meanwhile."""
    return asyncio.get_running_loop().run_in_executor(None, trim_memory)
