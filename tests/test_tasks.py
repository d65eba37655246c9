"""runtimed.tasks: stopping a task is bounded and never swallows the stopper's own cancellation."""

from __future__ import annotations

import asyncio

import pytest

from runtimed.tasks import cancel_and_wait

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(30)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_a_task_is_cancelled_and_awaited() -> None:
    finished = asyncio.Event()

    async def work() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            finished.set()

    task = asyncio.create_task(work())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task)
    assert task.cancelled() and finished.is_set()


async def test_the_tasks_own_failure_is_not_raised_to_the_stopper() -> None:
    async def fails_on_cancel() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            raise ValueError("cleanup failed")  # noqa: B012 - the behaviour under test

    task = asyncio.create_task(fails_on_cancel())
    await asyncio.sleep(0)
    assert await cancel_and_wait(task)
    assert isinstance(task.exception(), ValueError)


async def test_a_task_that_ignores_its_cancel_is_left_behind_after_the_bound() -> None:
    release = asyncio.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await release.wait()
            except asyncio.CancelledError:
                continue  # swallows every cancel

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    assert not await cancel_and_wait(task, timeout=0.2)
    assert not task.done()
    release.set()
    await asyncio.wait_for(task, 5)


async def test_a_cancel_of_the_stopper_reaches_the_stopper() -> None:
    """The defect this replaces: ``with suppress(CancelledError): await task`` swallowed the caller's cancel too."""
    release = asyncio.Event()

    async def slow_to_stop() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            await release.wait()  # its cleanup takes a while

    inner = asyncio.create_task(slow_to_stop())
    await asyncio.sleep(0)
    stopper_reached_the_end = False

    async def stopper() -> None:
        nonlocal stopper_reached_the_end
        await cancel_and_wait(inner)
        stopper_reached_the_end = True

    outer = asyncio.create_task(stopper())
    while not inner.cancelling():  # the stopper has cancelled the inner task and waits for it
        await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(outer, 5)
    assert not stopper_reached_the_end
    release.set()
    await asyncio.wait({inner}, timeout=5)
    assert inner.done()
