"""Stopping asyncio tasks without hanging and without swallowing the stopper's own cancellation."""

from __future__ import annotations

import asyncio

STOP_TIMEOUT = 10.0
"""How long a stop waits for a cancelled task; a task that ignores its cancel is left behind, not awaited forever."""


async def cancel_and_wait(task: asyncio.Future | None, timeout: float = STOP_TIMEOUT) -> bool:
    """Cancel ``task`` and wait (bounded) until it has finished; True if it did.

    ``task.cancel(); with suppress(CancelledError): await task`` swallows a cancel aimed at the *caller* as well,
    so a stop that is itself cancelled goes on (and a runner's teardown waits for it forever). ``asyncio.wait``
    raises neither the task's error nor its CancelledError, only the caller's own.
    """
    if task is None:
        return True
    if not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=timeout)
    if task.done() and not task.cancelled():
        task.exception()  # retrieved: the task's failure was already reported where it happened
    return task.done()
