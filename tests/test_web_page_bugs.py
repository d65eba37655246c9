"""Regression tests for bugs seen on the notebook page (issue 19), in real Chromium against a real daemon."""

from __future__ import annotations

import pytest

from tests.test_web import Api, chromium, editor, open_notebook, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SOURCES_JS = "() => window.__runtimed.state.order.map((id) => window.__runtimed.state.cells.get(id).text.toString())"


async def frames(page, n: int = 3) -> None:
    """Let the page run `n` animation frames (DOM observers and microtasks after a key press have run)."""
    await page.evaluate("(n) => new Promise((ok) => { const f = () => (--n ? requestAnimationFrame(f) : ok()); requestAnimationFrame(f) })", n)


async def test_ctrl_z_outside_an_editor_changes_no_cell(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Stray undo", [("code", "a = 1"), ("code", "b = 2")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        for cell_id, typed in (("cell-0", "  # one"), ("cell-1", "  # two")):
            content = await editor(page, cell_id)
            await content.click()
            await page.keyboard.press("End")
            await page.keyboard.type(typed)
        await settled(page)
        expected = ["a = 1  # one", "b = 2  # two"]
        assert await page.evaluate(SOURCES_JS) == expected
        # Click the page background: no editor has the focus any more.
        await page.mouse.click(5, 880)
        assert await page.evaluate("() => !document.activeElement.closest('.cm-editor')")
        for key in ("Control+z", "Control+z", "Control+Shift+z", "Control+y"):
            await page.keyboard.press(key)
            await frames(page)
        await settled(page)
        assert await page.evaluate(SOURCES_JS) == expected
        assert [c["source"] for c in api.get(nb)["cells"]] == expected
        # In the focused editor, Ctrl-Z still undoes that editor's own typing (and only that).
        await (await editor(page, "cell-0")).click()
        await page.keyboard.press("Control+z")
        await page.wait_for_function(f"() => ({SOURCES_JS})()[0] === 'a = 1'")
        await settled(page)
        assert [c["source"] for c in api.get(nb)["cells"]] == ["a = 1", "b = 2  # two"]
        assert not page.errors, page.errors
