"""Regression tests for bugs seen on the notebook page (issue 19), in real Chromium against a real daemon."""

from __future__ import annotations

import uuid

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


async def test_history_view_is_read_only_for_the_keyboard_too(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Past", [("code", "x = 1"), ("markdown", "notes")])  # seq 2, 3
    api.push(nb, [{"id": str(uuid.uuid4()), "name": "notebookMetadataSet", "v": 1,
                   "args": {"key": "title", "value": "Past (renamed)"}}])  # seq 4
    head = api.get(nb)["head_seq"]
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await (await editor(page, "cell-0")).click()  # an editor has the focus when the past is shown
        await page.locator("[data-testid=history-slider]").fill("2")
        await page.locator("[data-testid=history-banner][data-seq='2']").wait_for()
        await page.wait_for_function("() => document.querySelectorAll('[data-testid=history-cell]').length === 1")
        # The header says the page shows the past, not "live".
        status = await page.locator("[data-testid=connection-status]").inner_text()
        assert status != "live" and "seq 2" in status and "read-only" in status, status

        # Keyboard: Enter on the toolbar's "+ Code", typing in the title and in an editor, Shift-Enter.
        await page.locator("[data-testid=add-cell]").focus()
        await page.keyboard.press("Enter")
        await page.locator("[data-testid=notebook-title]").focus()
        await page.keyboard.type("changed")
        await page.keyboard.press("Enter")
        await page.evaluate("() => document.querySelector('[data-cell-id=\"cell-0\"] .cm-content').focus()")
        await page.keyboard.type("y = 2")
        await page.keyboard.press("Shift+Enter")
        await page.keyboard.press("Control+Enter")
        await frames(page)
        await settled(page)
        view = api.get(nb)
        assert view["head_seq"] == head
        assert [(c["id"], c["source"]) for c in view["cells"]] == [("cell-0", "x = 1"), ("cell-1", "notes")]
        assert view["title"] == "Past (renamed)"

        # "seq N of M" follows the live log while the past is shown.
        api.push(nb, [{"id": str(uuid.uuid4()), "name": "notebookMetadataSet", "v": 1,
                       "args": {"key": "title", "value": "Past (again)"}}])
        await page.wait_for_function(
            "(m) => document.querySelector('[data-testid=history-label]').textContent === `seq 2 of ${m}`"
            " && document.querySelector('[data-testid=history-heading]').textContent.includes(`seq 2 of ${m}`)",
            arg=head + 1)
        await page.locator("[data-testid=history-live]").click()
        await page.wait_for_function("() => document.querySelector('[data-testid=connection-status]').textContent === 'live'")
        await (await editor(page, "cell-0")).click()
        await page.keyboard.press("End")
        await page.keyboard.type("  # live again")
        await settled(page)
        assert api.get(nb)["cells"][0]["source"] == "x = 1  # live again"
        assert not page.errors, page.errors
