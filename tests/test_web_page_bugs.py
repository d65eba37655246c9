"""Regression tests for bugs seen on the notebook page (issue 19), in real Chromium against a real daemon."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.test_web import RUN_TIMEOUT, Api, cell, chromium, editor, open_notebook, playwright_api, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


SOURCES_JS = "() => window.__runtimed.state.order.map((id) => window.__runtimed.state.cells.get(id).text.toString())"


def event_names(daemon, notebook_id: str, since: int) -> list[str]:
    """The names of the events after seq `since` in the daemon's log."""
    r = httpx.get(f"{daemon.url}/api/notebooks/{notebook_id}/events", params={"since": since},
                  headers={"Authorization": f"Bearer {daemon.token}"})
    r.raise_for_status()
    return [e["name"] for e in r.json()["events"]]


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


MATH_MARKDOWN = r"""Inline $x^2$ and a display formula:

$$a\,b_{1} * c_{2} * d$$

Prices stay text: $5 and $6, `echo $HOME` too."""

THIN_SPACE = '.mspace[style*="0.1667em"]'  # how KaTeX renders `\\,`

MATH_OUTPUTS = r"""from IPython.display import Latex, Markdown, Math, display
display(Math(r'\sqrt{x}\,y^2'))
display(Latex(r'$$\alpha\,\beta$$'))
display(Markdown(r'Output with $y_1$ and $$p\,q$$'))"""


async def test_math_renders_with_katex_in_markdown_and_outputs(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Math", [("markdown", MATH_MARKDOWN), ("code", MATH_OUTPUTS)])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        csp: list[str] = []
        page.on("console", lambda m: csp.append(m.text) if "Content Security Policy" in m.text else None)
        md = cell(page, "cell-0").locator("[data-testid=markdown-rendered]")
        await md.locator(".katex").first.wait_for()
        inline = md.locator(".katex:not(.katex-display .katex)")
        assert await md.locator(".katex-display").count() == 1
        assert await inline.count() == 1
        assert "x2" in (await inline.locator(".katex-html").inner_text()).replace("\n", "")
        display = md.locator(".katex-display .katex-html")
        # `\,` reached KaTeX (a thin space), `_` and `*` were not read as markdown emphasis.
        assert await display.locator(THIN_SPACE).count() == 1
        assert "," not in await display.inner_text()
        assert await md.locator("em, strong").count() == 0
        text = await md.inner_text()
        assert "$5 and $6" in text and "echo $HOME" in text
        # KaTeX's fonts come from the daemon under the page's CSP.
        assert await page.evaluate("() => document.fonts.load('16px KaTeX_Main').then((f) => f.length)") > 0

        await cell(page, "cell-1").locator("[data-testid=run-cell]").click()
        outputs = cell(page, "cell-1").locator("[data-testid=output]")
        await page.wait_for_function(
            "() => document.querySelectorAll('[data-cell-id=\"cell-1\"] [data-testid=output]').length === 3",
            timeout=RUN_TIMEOUT)
        latex = cell(page, "cell-1").locator("[data-testid=output-latex]")
        assert await latex.count() == 2
        for i in range(2):
            assert await latex.nth(i).locator(f".katex-display {THIN_SPACE}").count() == 1
        assert "Math object" not in await outputs.nth(0).inner_text()
        md_out = outputs.nth(2).locator(".output-markdown")
        assert await md_out.locator(".katex").count() == 2
        assert await md_out.locator(f".katex-display {THIN_SPACE}").count() == 1
        assert not csp, csp
        assert not page.errors, page.errors


async def test_interrupt_cancels_the_rest_of_a_run_all_and_restart_asks_first(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Interrupt", [("code", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"),
                                  ("code", "print('second')"), ("code", "print('third')")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await page.locator("[data-testid=run-all]").click()
        first = cell(page, "cell-0")
        await first.locator("[data-testid=output-stream]", has_text="sleeping").wait_for(timeout=RUN_TIMEOUT)
        await page.locator("[data-testid=interrupt]").click()
        for cell_id in ("cell-1", "cell-2"):
            await playwright_api.expect(cell(page, cell_id)).to_have_attribute("data-status", "cancelled", timeout=30_000)
        assert await first.get_attribute("data-status") in ("error", "cancelled")
        view = api.get(nb)
        assert all(not c["outputs"] for c in view["cells"][1:]), view["cells"]

        # Cancelling the running cell of a run-all (the runtime interrupts it) cancels the rest of the batch too.
        await page.locator("[data-testid=run-all]").click()
        await playwright_api.expect(first).to_have_attribute("data-status", "running", timeout=RUN_TIMEOUT)
        await first.locator("[data-testid=output-stream]", has_text="sleeping").wait_for(timeout=30_000)
        queue_id = await page.evaluate("() => window.__runtimed.state.cells.get('cell-0').execution.queue_id")
        api.push(nb, [{"id": str(uuid.uuid4()), "name": "executionCancelRequested", "v": 1, "args": {"queueId": queue_id}}])
        await playwright_api.expect(first).to_have_attribute("data-status", "cancelled", timeout=30_000)
        for cell_id in ("cell-1", "cell-2"):
            await playwright_api.expect(cell(page, cell_id)).to_have_attribute("data-status", "cancelled", timeout=30_000)
        queue = [(c["id"], (c.get("execution") or {}).get("status"), c["outputs"]) for c in api.get(nb)["cells"]]
        assert [q[1] for q in queue] == ["cancelled"] * 3 and not queue[1][2] and not queue[2][2], queue

        # Restart asks first: dismissing changes nothing, accepting restarts.
        head = api.get(nb)["head_seq"]
        dialogs: list[str] = []

        async def answer(dialog, accept: bool) -> None:
            dialogs.append(dialog.message)
            await (dialog.accept() if accept else dialog.dismiss())

        page.once("dialog", lambda d: answer(d, False))
        await page.locator("[data-testid=restart]").click()
        await frames(page)
        await settled(page)
        assert len(dialogs) == 1 and "Restart" in dialogs[0]
        assert "runtimeRestartRequested" not in event_names(daemon, nb, head)
        page.once("dialog", lambda d: answer(d, True))
        await page.locator("[data-testid=restart]").click()
        await settled(page)
        assert len(dialogs) == 2
        assert "runtimeRestartRequested" in event_names(daemon, nb, head)
        assert not page.errors, page.errors
