"""Other people's cursors and selections inside a cell, between two Chromium contexts (issue 19)."""

from __future__ import annotations

import pytest

from tests.test_web import Api, cell, chromium, editor, open_notebook, playwright_api, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]
expect = playwright_api.expect


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_remote_cursor_and_selection_between_two_people(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Cursors", [("code", "alpha = 1\nbeta = 2"), ("code", "gamma = 3")])
    async with chromium() as browser:
        alice = await open_notebook(browser, daemon, nb, "Alice")
        bob = await open_notebook(browser, daemon, nb, "Bob")
        await editor(bob, "cell-0")  # Bob's editor of the cell exists (it is on screen)

        content = await editor(alice, "cell-0")
        await content.locator(".cm-line").nth(1).click()
        await alice.keyboard.press("End")
        caret = cell(bob, "cell-0").locator(".cm-ySelectionCaret")
        await expect(caret).to_have_count(1)
        assert "Alice" in await caret.locator(".cm-ySelectionInfo").inner_text()
        # The caret sits at the end of line 2 in Bob's editor: after "beta = 2".
        line = await bob.evaluate(
            "() => { const c = document.querySelector('[data-cell-id=\"cell-0\"] .cm-ySelectionCaret');"
            " return c.closest('.cm-line').textContent }")
        assert line.startswith("beta = 2")

        # A selection shows as a highlighted range; typing moves the caret with the text.
        await alice.keyboard.press("Shift+Home")
        sel = cell(bob, "cell-0").locator(".cm-ySelection")
        await expect(sel).to_have_count(1)
        assert await sel.inner_text() == "beta = 2"
        await alice.keyboard.press("End")
        await alice.keyboard.type("  # hi")
        await settled(alice)
        await expect(sel).to_have_count(0)
        await bob.wait_for_function(
            "() => { const c = document.querySelector('[data-cell-id=\"cell-0\"] .cm-ySelectionCaret');"
            " return c && c.closest('.cm-line').textContent.startsWith('beta = 2  # hi') }")

        # Alice moves to another cell: her caret leaves cell 0 and appears in cell 1; Bob's own cell shows none.
        await (await editor(alice, "cell-1")).click()
        await expect(caret).to_have_count(0)
        await editor(bob, "cell-1")
        await expect(cell(bob, "cell-1").locator(".cm-ySelectionCaret")).to_have_count(1)
        assert await cell(alice, "cell-1").locator(".cm-ySelectionCaret").count() == 0

        # Alice leaves: her cursor goes.
        await alice.context.close()
        await expect(cell(bob, "cell-1").locator(".cm-ySelectionCaret")).to_have_count(0)
        assert not bob.errors, bob.errors
