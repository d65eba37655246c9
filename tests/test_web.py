"""The browser UI against a real daemon, driven by Playwright in headless Chromium.

Needs the ``playwright`` package and a system Chromium at /usr/bin/chromium (never downloads a
browser: ``playwright install`` is not used). The whole module is skipped when Chromium is missing.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from runtimed.schema.ordering import keys_between

CHROMIUM = os.environ.get("RUNTIMED_TEST_CHROMIUM", "/usr/bin/chromium")
if not Path(CHROMIUM).exists():
    pytest.skip(f"web UI tests need a system Chromium at {CHROMIUM} (apt-get install -y chromium)",
                allow_module_level=True)
playwright_api = pytest.importorskip("playwright.async_api", reason="web UI tests need `pip install playwright`")

ROOT = Path(__file__).resolve().parent.parent
SCREENSHOT = ROOT / "docs" / "screenshots" / "notebook.png"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
RUN_TIMEOUT = 90_000  # ms: the first run of a notebook starts its runtime

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


# -- helpers ---------------------------------------------------------------------------------------


class Api:
    def __init__(self, daemon) -> None:
        self.url = daemon.url
        self.client = httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30)

    def create(self, title: str, cells: list[tuple[str, str]] = ()) -> str:
        r = self.client.post("/api/notebooks", json={"title": title})
        r.raise_for_status()
        notebook_id = r.json()["id"]
        if cells:
            keys = keys_between(None, None, len(cells))
            events = [
                {"id": str(uuid.uuid4()), "name": "cellCreated", "v": 1,
                 "args": {"cellId": f"cell-{i}", "cellType": cell_type, "fractionalIndex": key, "source": source}}
                for i, ((cell_type, source), key) in enumerate(zip(cells, keys, strict=True))
            ]
            self.push(notebook_id, events)
        return notebook_id

    def push(self, notebook_id: str, events: list[dict]) -> list[dict]:
        r = self.client.post(f"/api/notebooks/{notebook_id}/events", json={"events": events})
        r.raise_for_status()
        results = r.json()["results"]
        assert all("seq" in x for x in results), results
        return results

    def get(self, notebook_id: str, **params) -> dict:
        r = self.client.get(f"/api/notebooks/{notebook_id}", params=params)
        r.raise_for_status()
        return r.json()


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator:
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            await browser.close()


async def open_notebook(browser, daemon, notebook_id: str, name: str = "Tester", viewport=None):
    context = await browser.new_context(viewport=viewport or {"width": 1200, "height": 900})
    page = await context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.errors = errors
    await page.goto(f"{daemon.url}/?token={daemon.token}&notebook={notebook_id}&as={name}")
    await page.wait_for_selector("#app[data-connection=live]")
    return page


def cell(page, cell_id: str):
    return page.locator(f'[data-testid=cell][data-cell-id="{cell_id}"]')


async def editor(page, cell_id: str):
    """The cell's CodeMirror content, created on demand by clicking the source."""
    c = cell(page, cell_id)
    content = c.locator(".cm-content")
    if not await content.count():
        await c.locator("[data-testid=source-preview]").click()
    await content.wait_for()
    return content


async def settled(page) -> None:
    """Everything this page pushed is acknowledged."""
    await page.wait_for_function("() => window.__runtimed && window.__runtimed.sync.unacked === 0")


# -- tests -----------------------------------------------------------------------------------------


async def test_two_people_typing_in_one_cell_both_keep_their_text(daemon) -> None:
    import asyncio

    api = Api(daemon)
    nb = api.create("Typing together", [("code", "# alice:\n# bob:")])
    async with chromium() as browser:
        alice = await open_notebook(browser, daemon, nb, "Alice")
        bob = await open_notebook(browser, daemon, nb, "Bob")
        for page, line in ((alice, 1), (bob, 2)):
            content = await editor(page, "cell-0")
            await content.locator(".cm-line").nth(line - 1).click()
            await page.keyboard.press("End")
        # Both type at once: keystrokes interleave while each page's edits are in flight.
        await asyncio.gather(
            alice.keyboard.type(" alpha beta gamma delta", delay=15),
            bob.keyboard.type(" one two three four five", delay=15),
        )
        await settled(alice)
        await settled(bob)
        expected = "# alice: alpha beta gamma delta\n# bob: one two three four five"
        source = api.get(nb)["cells"][0]["source"]
        assert source == expected, source
        # Both screens converge to the stored text.
        for page in (alice, bob):
            await page.wait_for_function(
                "([id, text]) => { const c = window.__runtimed.state.cells.get(id); return c && c.text.toString() === text }",
                arg=["cell-0", expected])
            lines = await cell(page, "cell-0").locator(".cm-line").evaluate_all(  # the text, without the other's caret
                "(ls) => ls.map((l) => { const c = l.cloneNode(true);"
                " c.querySelectorAll('.cm-ySelectionCaret').forEach((n) => n.remove()); return c.textContent })")
            assert "\n".join(lines) == expected
        # Presence: each sees the other in that cell.
        await alice.locator('[data-testid=peer][data-cell-id="cell-0"]', has_text="Bob").wait_for()
        await bob.locator('[data-testid=peer][data-cell-id="cell-0"]', has_text="Alice").wait_for()
        assert not alice.errors and not bob.errors, alice.errors + bob.errors


async def test_run_a_cell_and_see_its_output(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Run", [("code", "")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        content = await editor(page, "cell-0")
        await content.click()
        await page.keyboard.type("print('the answer is', 6 * 7)")
        await page.keyboard.press("Shift+Enter")
        out = cell(page, "cell-0").locator("[data-testid=output-stream]")
        await out.wait_for(timeout=RUN_TIMEOUT)
        assert (await out.inner_text()).strip() == "the answer is 42"
        status = cell(page, "cell-0").locator("[data-testid=cell-status]")
        await page.wait_for_function(
            "() => document.querySelector('[data-cell-id=\"cell-0\"] [data-testid=exec-count]').textContent === '[1]'")
        assert "✓" in await status.inner_text()
        # Shift-Enter on the last cell added a new cell below.
        await page.wait_for_function("() => document.querySelectorAll('[data-testid=cell]').length === 2")
        assert not page.errors, page.errors


async def test_closing_every_page_does_not_stop_a_running_cell(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Long run", [("code", "import time; time.sleep(3); print('done')")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await cell(page, "cell-0").locator("[data-testid=run-cell]").click()
        await page.wait_for_function(
            "() => document.querySelector('[data-cell-id=\"cell-0\"]').dataset.status === 'running'", timeout=RUN_TIMEOUT)
        await page.context.close()  # every page of this notebook is gone while the cell runs

        import anyio

        await anyio.sleep(4)
        page = await open_notebook(browser, daemon, nb)
        out = cell(page, "cell-0").locator("[data-testid=output-stream]")
        await out.wait_for(timeout=30_000)
        assert (await out.inner_text()).strip() == "done"
        assert await cell(page, "cell-0").get_attribute("data-status") == "success"


SANDBOX_PROBE = r'''from IPython.display import HTML
HTML("""<div id="probe">pending</div><script>
var r = [];
try { r.push("title=" + parent.document.title) } catch (e) { r.push("title-blocked:" + e.name) }
try { r.push("dom=" + parent.document.querySelectorAll("[data-testid=cell]").length) } catch (e) { r.push("dom-blocked:" + e.name) }
try { r.push("cookie=[" + document.cookie + "]") } catch (e) { r.push("cookie-blocked:" + e.name) }
try { r.push("storage=" + localStorage.length) } catch (e) { r.push("storage-blocked:" + e.name) }
document.getElementById("probe").textContent = r.join(";");
</script>""")'''

SHOWCASE = [
    ("markdown", "# Sales report\nQuarterly numbers, rendered from **markdown** (sanitized), with `inline code`.\n\n"
                 "- streams with ANSI colour\n- HTML in a sandboxed frame\n- SVG, JSON, errors"),
    ("code", "import sys\nfor q, v in [('Q1', 12), ('Q2', 17), ('Q3', 9)]:\n"
             "    print(f'\\x1b[1;32m{q}\\x1b[0m', '#' * v, v)\nprint('\\x1b[33mwarning:\\x1b[0m Q3 is low', file=sys.stderr)"),
    ("code", SANDBOX_PROBE),
    ("code", "from IPython.display import SVG, JSON, display\n"
             "display(SVG('<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"220\" height=\"60\">"
             "<rect width=\"70\" height=\"40\" y=\"10\" fill=\"#2f6feb\"/><rect x=\"80\" width=\"70\" height=\"54\" y=\"3\" "
             "fill=\"#1a7f37\"/><rect x=\"160\" width=\"50\" height=\"25\" y=\"30\" fill=\"#cf222e\"/></svg>'))\n"
             "display(HTML('<table><thead><tr><th>quarter</th><th>sales</th></tr></thead><tbody>'"
             " + ''.join(f'<tr><td>{q}</td><td>{v}</td></tr>' for q, v in [('Q1', 12), ('Q2', 17), ('Q3', 9)])"
             " + '</tbody></table>'))\n"
             "JSON({'total': 38, 'quarters': ['Q1', 'Q2', 'Q3']})"),
    ("code", "from IPython.display import display\nh = display('draft', display_id=True)\nh.update('final')"),
    ("code", "from IPython.display import clear_output\nfor i in range(3):\n    clear_output(wait=True)\n    print('tick', i)"),
    ("code", "{'Q1': 12, 'Q2': 17}['Q4']"),
]


async def test_html_output_is_sandboxed_and_outputs_render(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Sales report", SHOWCASE)
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, viewport={"width": 1100, "height": 1400})
        await page.locator("[data-testid=run-all]").click()
        # The last cell fails (KeyError) with an ANSI traceback.
        await cell(page, "cell-6").locator("[data-testid=output-error]").wait_for(timeout=RUN_TIMEOUT)

        frame_el = cell(page, "cell-2").locator("iframe[data-testid=output-frame]")
        await frame_el.wait_for()
        assert await frame_el.get_attribute("sandbox") == "allow-scripts"
        probe = page.frame_locator('[data-cell-id="cell-2"] iframe[data-testid=output-frame]').locator("#probe")
        await probe.filter(has_not_text="pending").wait_for()
        text = await probe.inner_text()
        assert "title-blocked:SecurityError" in text, text
        assert "dom-blocked:SecurityError" in text, text
        assert "cookie-blocked" in text or "cookie=[]" in text, text
        assert daemon.token not in text
        assert "runtimed" in await page.title()  # the frame could not touch the app

        stream = cell(page, "cell-1").locator("[data-testid=output-stream]").first
        assert await stream.locator(".ansi-green-fg").count() == 3
        await cell(page, "cell-3").locator("[data-testid=output-svg]").wait_for()
        await cell(page, "cell-5").locator("[data-testid=output-stream]", has_text="tick 2").wait_for()
        assert '"total": 38' in await cell(page, "cell-3").locator("[data-testid=output-json]").inner_text()
        assert await cell(page, "cell-6").locator("[data-testid=output-error] .ansi-red-fg").count() >= 1
        assert (await cell(page, "cell-4").locator("[data-testid=output]").all_inner_texts()) == ["'final'"]
        assert [t.strip() for t in await cell(page, "cell-5").locator("[data-testid=output]").all_inner_texts()] == ["tick 2"]
        table = page.frame_locator('[data-cell-id="cell-3"] iframe[data-testid=output-frame]').locator("td")
        assert await table.count() == 6
        assert await cell(page, "cell-0").locator("[data-testid=markdown-rendered] h1").inner_text() == "Sales report"

        # Chromium paints no offscreen cross-origin frame (the outputs' sandbox): show the whole page at once.
        height = await page.evaluate("() => document.documentElement.scrollHeight")
        await page.set_viewport_size({"width": 1100, "height": height})
        await page.wait_for_timeout(600)  # frames report their height
        await page.mouse.move(0, 0)
        SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(SCREENSHOT), full_page=True)
        if os.environ.get("RUNTIMED_SCREENSHOT_COPY"):
            shutil.copy(SCREENSHOT, os.environ["RUNTIMED_SCREENSHOT_COPY"])
        assert not page.errors, page.errors


async def test_history_slider_shows_an_earlier_state(daemon) -> None:
    api = Api(daemon)
    nb = api.create("History", [("code", "x = 'first version'")])  # seq 2
    api.push(nb, [{"id": str(uuid.uuid4()), "name": "cellCreated", "v": 1,
                   "args": {"cellId": "cell-1", "cellType": "markdown", "fractionalIndex": "a5", "source": "added later"}}])
    api.push(nb, [{"id": str(uuid.uuid4()), "name": "notebookMetadataSet", "v": 1,
                   "args": {"key": "title", "value": "History (renamed)"}}])  # seq 4
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        assert await page.locator("[data-testid=notebook-title]").input_value() == "History (renamed)"
        slider = page.locator("[data-testid=history-slider]")
        assert await slider.get_attribute("max") == "4"
        await slider.fill("2")
        banner = page.locator("[data-testid=history-banner]")
        await banner.wait_for()
        assert await banner.get_attribute("data-seq") == "2"
        hist = page.locator("[data-testid=history-cell]")
        await page.wait_for_function("() => document.querySelectorAll('[data-testid=history-cell]').length === 1")
        assert "first version" in await hist.first.inner_text()
        assert not await page.locator("[data-testid=cells]").is_visible()

        # Live changes keep arriving while looking at the past; "back to live" shows them.
        api.push(nb, [{"id": str(uuid.uuid4()), "name": "cellDeleted", "v": 1, "args": {"cellId": "cell-1"}}])
        await page.wait_for_function("() => document.querySelector('[data-testid=history-slider]').max === '5'")
        assert await page.locator("[data-testid=history-cell]").count() == 1
        await page.locator("[data-testid=history-live]").click()
        await page.locator("[data-testid=cells]").wait_for()
        assert await page.locator("[data-testid=cell]").count() == 1
        assert await slider.input_value() == "5"
        assert not page.errors, page.errors


async def test_cell_actions_and_input_prompt(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Actions", [("code", "name = input('Your name? ')\nprint('hello', name)")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        first = cell(page, "cell-0")
        await first.locator("[data-testid=run-cell]").click()
        field = first.locator("[data-testid=input-value]")
        await field.wait_for(timeout=RUN_TIMEOUT)
        await field.fill("Ada")
        await field.press("Enter")
        await first.locator("[data-testid=output-stream]", has_text="hello Ada").wait_for(timeout=30_000)

        # add below, type markdown, move it up, change its type, delete it
        await first.locator("[data-testid=add-below]").click()
        await page.wait_for_function("() => document.querySelectorAll('[data-testid=cell]').length === 2")
        await page.keyboard.type("## Notes")
        await settled(page)
        cells = api.get(nb)["cells"]
        new_id = cells[1]["id"]
        assert cells[1]["source"] == "## Notes"
        await cell(page, new_id).locator("[data-testid=move-up]").click()
        await page.wait_for_function(f"() => window.__runtimed.state.order[0] === '{new_id}'")
        await cell(page, new_id).locator("[data-testid=cell-type]").select_option("markdown")
        await cell(page, new_id).locator("[data-testid=markdown-rendered] h2").wait_for()
        assert [c["id"] for c in api.get(nb)["cells"]] == [new_id, "cell-0"]
        await cell(page, new_id).locator("[data-testid=delete-cell]").click()
        await page.wait_for_function("() => document.querySelectorAll('[data-testid=cell]').length === 1")
        await first.locator("[data-testid=clear-outputs]").click()
        await page.wait_for_function("() => !document.querySelector('[data-cell-id=\"cell-0\"] [data-testid=output]')")
        await settled(page)
        view = api.get(nb)
        assert len(view["cells"]) == 1 and view["cells"][0]["outputs"] == []
        assert not page.errors, page.errors


async def test_title_interrupt_and_restart(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Old title", [("code", "import time\nprint('sleeping', flush=True)\ntime.sleep(60)"),
                                  ("code", "print('after restart')")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        title = page.locator("[data-testid=notebook-title]")
        await title.fill("New title")
        await title.press("Enter")
        await page.wait_for_function("() => document.title.startsWith('New title')")
        await settled(page)
        assert api.get(nb)["title"] == "New title"

        first = cell(page, "cell-0")
        await first.locator("[data-testid=run-cell]").click()
        await first.locator("[data-testid=output-stream]", has_text="sleeping").wait_for(timeout=RUN_TIMEOUT)
        await page.locator("[data-testid=interrupt]").click()
        await first.locator("[data-testid=output-error]", has_text="KeyboardInterrupt").wait_for(timeout=30_000)
        # the error output can arrive just before the completion event: wait for the status itself
        await playwright_api.expect(first).to_have_attribute("data-status", "error", timeout=30_000)

        page.once("dialog", lambda dialog: dialog.accept())  # Restart asks first
        await page.locator("[data-testid=restart]").click()
        await cell(page, "cell-1").locator("[data-testid=run-cell]").click()
        await cell(page, "cell-1").locator("[data-testid=output-stream]", has_text="after restart").wait_for(timeout=RUN_TIMEOUT)
        assert await page.locator("[data-testid=runtime-status]").inner_text() != ""
        assert not page.errors, page.errors


async def test_list_page_create_and_delete(daemon) -> None:
    api = Api(daemon)
    api.create("Existing notebook")
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        await page.goto(f"{daemon.url}/?token={daemon.token}")
        await page.locator("[data-testid=notebook-row]", has_text="Existing notebook").wait_for()
        await page.locator("[data-testid=new-title]").fill("Made in the browser")
        await page.locator("[data-testid=create-notebook]").click()
        await page.wait_for_url("**/?notebook=*")
        await page.wait_for_selector("#app[data-connection=live]")
        assert await page.locator("[data-testid=notebook-title]").input_value() == "Made in the browser"
        new_id = await page.evaluate("() => window.__runtimed.notebookId")  # it starts with one empty code cell
        assert [(c["cell_type"], c["source"]) for c in api.get(new_id)["cells"]] == [("code", "")]
        await page.goto(f"{daemon.url}/")
        row = page.locator("[data-testid=notebook-row]", has_text="Existing notebook")
        await row.wait_for()
        page.once("dialog", lambda d: d.accept())
        await row.locator("[data-testid=delete-notebook]").click()
        await row.wait_for(state="detached")
        titles = [n["title"] for n in api.client.get("/api/notebooks").json()]
        assert titles == ["Made in the browser"]


async def test_unacked_edits_are_repushed_after_reconnect(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Reconnect", [("code", "")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        content = await editor(page, "cell-0")
        await content.click()
        # Drop the socket, type while it is down, then let the client reconnect and re-push.
        await page.evaluate("() => { const s = window.__runtimed.sync; s.ws.close(); }")
        await page.keyboard.type("offline = True")
        await page.wait_for_selector("#app[data-connection=live]")
        await settled(page)
        assert api.get(nb)["cells"][0]["source"] == "offline = True"


async def test_import_an_ipynb_upload(daemon, tmp_path) -> None:
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Imported"),
                nbformat.v4.new_code_cell("1 + 1", execution_count=1, outputs=[
                    nbformat.v4.new_output("execute_result", {"text/plain": "2"}, execution_count=1)])]
    path = tmp_path / "upload.ipynb"
    path.write_text(nbformat.writes(nb))
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{daemon.url}/?token={daemon.token}")
        await page.locator("[data-testid=import-file]").set_input_files(str(path))
        await page.wait_for_url("**/?notebook=*")
        await page.wait_for_selector("#app[data-connection=live]")
        assert await page.locator("[data-testid=notebook-title]").input_value() == "upload"
        await page.locator("[data-testid=markdown-rendered] h1", has_text="Imported").wait_for()
        assert (await page.locator("[data-testid=output] pre").inner_text()).strip() == "2"


# -- performance report (not a pass/fail test: RUNTIMED_WEB_PERF=1 pytest -s -k perf) -------------


def _big_ipynb(n: int = 500) -> bytes:
    import nbformat

    nb = nbformat.v4.new_notebook()
    for i in range(n):
        if i % 5 == 0:
            nb.cells.append(nbformat.v4.new_markdown_cell(f"## Section {i // 5}\nSome *notes* about step {i}, with `code`."))
            continue
        outputs = [nbformat.v4.new_output("stream", name="stdout", text="".join(f"step {i} line {k}\n" for k in range(3)))]
        if i % 10 == 1:
            rows = "".join(f"<tr><td>{r}</td><td>{r * i}</td></tr>" for r in range(5))
            outputs.append(nbformat.v4.new_output("display_data", {"text/html": f"<table>{rows}</table>", "text/plain": "table"}))
        outputs.append(nbformat.v4.new_output("execute_result", {"text/plain": f"{i * i}"}, execution_count=i))
        nb.cells.append(nbformat.v4.new_code_cell(f"x_{i} = {i}\ny_{i} = x_{i} ** 2\ny_{i}", execution_count=i,
                                                  outputs=outputs))
    return nbformat.writes(nb).encode()


MEASURE_LOCAL = """(cellId) => {
  const content = document.querySelector(`[data-cell-id="${cellId}"] .cm-content`)
  window.__lat = []
  content.addEventListener('keydown', (e) => {
    const t0 = e.timeStamp, before = content.textContent.length
    const check = () => content.textContent.length > before ? window.__lat.push(performance.now() - t0) : requestAnimationFrame(check)
    requestAnimationFrame(check)
  }, true)
}"""

RECORD_KEYS = """(cellId) => {
  const content = document.querySelector(`[data-cell-id="${cellId}"] .cm-content`)
  window.__keys = []
  content.addEventListener('keydown', (e) => window.__keys.push(performance.timeOrigin + e.timeStamp), true)
}"""

WATCH_REMOTE = """(cellId) => {
  const content = document.querySelector(`[data-cell-id="${cellId}"] .cm-content`)
  const base = content.textContent.length
  window.__seen = []
  new MutationObserver(() => {
    const n = content.textContent.length - base
    const t = performance.timeOrigin + performance.now()
    while (window.__seen.length < n) window.__seen.push(t)
  }).observe(content, { subtree: true, childList: true, characterData: true })
}"""
