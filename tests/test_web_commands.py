"""Command mode, undo of cell deletions and moves, and restore/fork from the history view (issue 19),
in real Chromium against a real daemon."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.test_web import Api, cell, chromium, editor, open_notebook, playwright_api, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

expect = playwright_api.expect


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


ORDER_JS = "() => window.__runtimed.state.order"
CELLS_JS = ("() => window.__runtimed.state.order.map((id) => { const c = window.__runtimed.state.cells.get(id);"
            " return [id, c.cell_type, c.text.toString()] })")


def event(event_name: str, **args) -> dict:
    return {"id": str(uuid.uuid4()), "name": event_name, "v": 1, "args": args}


def sources(api: Api, nb: str) -> list[tuple[str, str]]:
    return [(c["cell_type"], c["source"]) for c in api.get(nb)["cells"]]


async def command_mode_on(page, cell_id: str) -> None:
    """Edit the cell, then Escape: the cell itself has the focus (command mode)."""
    await (await editor(page, cell_id)).click()
    await page.keyboard.press("Escape")
    await page.wait_for_function(
        "(id) => document.activeElement && document.activeElement.dataset.cellId === id", arg=cell_id)


async def wait_cells(page, n: int) -> None:
    await page.wait_for_function(f"() => window.__runtimed.state.order.length === {n}")


async def keys(page, *presses: str) -> None:
    for key in presses:
        await page.keyboard.press(key)


async def test_command_mode_keyboard_map(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Keys", [("code", "a = 1"), ("code", "b = 2"), ("code", "c = 3")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await command_mode_on(page, "cell-0")
        assert await page.evaluate("() => !document.activeElement.closest('.cm-editor')")

        # J/K and the arrows move the selection; typing in command mode never reaches an editor.
        await keys(page, "j", "j")
        assert await page.evaluate("() => window.__runtimed.activeCellId") == "cell-2"
        await keys(page, "k", "ArrowUp", "ArrowDown")
        assert await page.evaluate("() => window.__runtimed.activeCellId") == "cell-1"
        assert await page.evaluate("() => document.activeElement.dataset.cellId") == "cell-1"

        # A / B insert above / below (the new cell is selected, still in command mode).
        await page.keyboard.press("b")
        await wait_cells(page, 4)
        order = await page.evaluate(ORDER_JS)
        new_below = order[2]
        assert order[:2] == ["cell-0", "cell-1"] and order[3] == "cell-2"
        await page.wait_for_function("(id) => document.activeElement.dataset.cellId === id", arg=new_below)
        await page.keyboard.press("a")
        await wait_cells(page, 5)
        order = await page.evaluate(ORDER_JS)
        assert order[3] == new_below and order[4] == "cell-2"
        new_above = order[2]

        # M / Y / R change the type; D D deletes the selected cell.
        await page.wait_for_function("(id) => document.activeElement.dataset.cellId === id", arg=new_above)
        await page.keyboard.press("m")
        await page.wait_for_function("(id) => window.__runtimed.state.cells.get(id).cell_type === 'markdown'", arg=new_above)
        await page.keyboard.press("r")
        await page.wait_for_function("(id) => window.__runtimed.state.cells.get(id).cell_type === 'raw'", arg=new_above)
        await page.keyboard.press("y")
        await page.wait_for_function("(id) => window.__runtimed.state.cells.get(id).cell_type === 'code'", arg=new_above)
        await keys(page, "d", "d")
        await wait_cells(page, 4)
        assert new_above not in await page.evaluate(ORDER_JS)
        # The cell after it is selected: D D again deletes the other new cell.
        assert await page.evaluate("() => window.__runtimed.activeCellId") == new_below
        await keys(page, "d", "d")
        await wait_cells(page, 3)
        await settled(page)
        assert [c["id"] for c in api.get(nb)["cells"]] == ["cell-0", "cell-1", "cell-2"]

        # Enter edits the selected cell; typing goes into it; Escape leaves it again.
        await page.wait_for_function("() => document.activeElement.dataset.cellId === 'cell-2'")
        await page.keyboard.press("Enter")
        await page.wait_for_function("() => !!document.activeElement.closest('[data-cell-id=\"cell-2\"] .cm-editor')")
        await page.keyboard.press("End")
        await page.keyboard.type("  # edited")
        await page.keyboard.press("Escape")
        await page.wait_for_function("() => document.activeElement.dataset.cellId === 'cell-2'")

        # C / V copy and paste below; X cuts; Shift-V pastes above.
        await page.keyboard.press("c")
        await page.keyboard.press("v")
        await wait_cells(page, 4)
        order = await page.evaluate(ORDER_JS)
        assert order[:3] == ["cell-0", "cell-1", "cell-2"]
        assert (await page.evaluate(CELLS_JS))[3][2] == "c = 3  # edited"
        await command_mode_on(page, "cell-0")
        await page.keyboard.press("x")
        await wait_cells(page, 3)
        await page.wait_for_function("() => document.activeElement.dataset.cellId === 'cell-1'")
        await page.keyboard.press("Shift+V")
        await wait_cells(page, 4)
        assert [c[2] for c in await page.evaluate(CELLS_JS)] == ["a = 1", "b = 2", "c = 3  # edited", "c = 3  # edited"]

        # Shift-J extends the selection; Shift-M merges the selected cells into the first.
        await command_mode_on(page, "cell-1")
        await page.keyboard.press("Shift+J")
        assert await page.evaluate("() => document.querySelectorAll('.cell.selected').length") == 2
        await page.keyboard.press("Shift+M")
        await wait_cells(page, 3)
        await settled(page)
        merged = api.get(nb)["cells"]
        assert [c["source"] for c in merged] == ["a = 1", "b = 2\n\nc = 3  # edited", "c = 3  # edited"]

        # Shift-click selects a range; D D deletes all of it; Z brings every cell back, in place.
        await cell(page, merged[0]["id"]).locator("[data-testid=exec-count]").click()
        await cell(page, merged[2]["id"]).locator("[data-testid=exec-count]").click(modifiers=["Shift"])
        assert await page.evaluate("() => document.querySelectorAll('.cell.selected').length") == 3
        await keys(page, "d", "d")
        await wait_cells(page, 0)
        await page.keyboard.press("z")
        await wait_cells(page, 3)
        await settled(page)
        assert [(c["id"], c["source"]) for c in api.get(nb)["cells"]] == [(c["id"], c["source"]) for c in merged]

        # Ctrl-Shift-Down moves the cell; Z moves it back.
        await command_mode_on(page, merged[0]["id"])
        await page.keyboard.press("Control+Shift+ArrowDown")
        await page.wait_for_function("(id) => window.__runtimed.state.order[1] === id", arg=merged[0]["id"])
        await page.keyboard.press("z")
        await page.wait_for_function("(id) => window.__runtimed.state.order[0] === id", arg=merged[0]["id"])

        # ArrowDown on an editor's last line goes to the next cell's editor; ArrowUp on the first line comes back.
        content = await editor(page, merged[0]["id"])
        await content.click()
        await page.keyboard.press("ArrowDown")
        await page.wait_for_function(
            "(id) => !!document.activeElement.closest(`[data-cell-id=\"${id}\"] .cm-editor`)", arg=merged[1]["id"])
        await page.keyboard.press("ArrowDown")  # line 1 of 3: stays in the cell
        assert await page.evaluate(
            "(id) => !!document.activeElement.closest(`[data-cell-id=\"${id}\"] .cm-editor`)", merged[1]["id"])
        await page.keyboard.press("ArrowUp")
        await page.keyboard.press("ArrowUp")
        await page.wait_for_function(
            "(id) => !!document.activeElement.closest(`[data-cell-id=\"${id}\"] .cm-editor`)", arg=merged[0]["id"])

        # H (or ?) lists the keys; Escape closes the list and command mode goes on.
        await page.keyboard.press("Escape")
        await page.keyboard.press("h")
        dialog = page.locator("[data-testid=shortcuts]")
        await expect(dialog).to_be_visible()
        assert "merge the selected cells" in await dialog.inner_text()
        await page.keyboard.press("Escape")
        await expect(dialog).to_be_hidden()
        await settled(page)
        assert len(api.get(nb)["cells"]) == 3
        assert not page.errors, page.errors


async def test_run_keys_in_command_mode(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Run keys", [("code", "x = 6 * 7\nx"), ("code", "x + 1")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await command_mode_on(page, "cell-0")
        # Shift-Enter runs and selects the next cell (in command mode), Ctrl-Enter runs in place.
        await page.keyboard.press("Shift+Enter")
        await cell(page, "cell-0").locator("[data-testid=output]", has_text="42").wait_for(timeout=90_000)
        assert await page.evaluate("() => window.__runtimed.activeCellId") == "cell-1"
        assert await page.evaluate("() => document.activeElement.dataset.cellId") == "cell-1"
        await page.keyboard.press("Control+Enter")
        await cell(page, "cell-1").locator("[data-testid=output]", has_text="43").wait_for(timeout=60_000)
        assert await page.evaluate("() => window.__runtimed.state.order.length") == 2
        # Alt-Enter runs and inserts a cell below, whose editor gets the focus.
        await page.keyboard.press("Alt+Enter")
        await wait_cells(page, 3)
        new = (await page.evaluate(ORDER_JS))[2]
        await page.wait_for_function(
            "(id) => !!document.activeElement.closest(`[data-cell-id=\"${id}\"] .cm-editor`)", arg=new)
        assert not page.errors, page.errors


async def test_undo_a_delete_with_outputs_and_restore_another_persons_delete(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Undo", [("code", "print('kept')"), ("code", "y = 2"), ("markdown", "# end")])
    api.push(nb, [event("outputAdded", outputId="o-1", cellId="cell-0", outputType="stream", name="stdout", text="kept\n")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        # The toolbar's delete: a toast offers Undo, which re-creates the cell with its outputs in place.
        await cell(page, "cell-0").hover()
        await cell(page, "cell-0").locator("[data-testid=delete-cell]").click()
        await wait_cells(page, 2)
        toast = page.locator("[data-testid=toast]", has_text="Cell deleted")
        await toast.locator("[data-testid=toast-action]").click()
        await wait_cells(page, 3)
        await settled(page)
        view = api.get(nb)
        assert [c["id"] for c in view["cells"]] == ["cell-0", "cell-1", "cell-2"]
        assert view["cells"][0]["source"] == "print('kept')"
        assert [o.get("text") for o in view["cells"][0]["outputs"]] == ["kept\n"]
        await cell(page, "cell-0").locator("[data-testid=output]", has_text="kept").wait_for()
        # The log keeps the deletion and the restore.
        r = httpx.get(f"{daemon.url}/api/notebooks/{nb}/events", headers={"Authorization": f"Bearer {daemon.token}"})
        names = [e["name"] for e in r.json()["events"]]
        assert names.count("cellDeleted") == 1 and names.count("cellCreated") == 4

        # Someone else deletes a cell: the page names them and offers to restore it.
        api.client.post(f"/api/notebooks/{nb}/events", json={
            "events": [event("cellDeleted", cellId="cell-1")],
            "actor": {"id": "bob-1", "kind": "human", "name": "Bob"}}).raise_for_status()
        await wait_cells(page, 2)
        toast = page.locator("[data-testid=toast]", has_text="Bob deleted a cell")
        await toast.locator("[data-testid=toast-action]").click()
        await wait_cells(page, 3)
        await settled(page)
        assert [(c["id"], c["source"]) for c in api.get(nb)["cells"]] == [
            ("cell-0", "print('kept')"), ("cell-1", "y = 2"), ("cell-2", "# end")]
        # Z has nothing of Bob's to undo: only this page's deletions and moves.
        await command_mode_on(page, "cell-1")
        await page.keyboard.press("z")
        await page.locator("[data-testid=notice]", has_text="Nothing to undo").wait_for()
        assert not page.errors, page.errors


async def test_restore_and_fork_from_the_history_view(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Versions", [("code", "v = 1"), ("code", "w = 1"), ("markdown", "notes")])
    api.push(nb, [event("outputAdded", outputId="o-v", cellId="cell-0", outputType="stream", name="stdout", text="one\n")])
    old_seq = api.get(nb)["head_seq"]
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        for cell_id, text in (("cell-0", "  # changed"), ("cell-1", "  # changed too")):
            await (await editor(page, cell_id)).click()
            await page.keyboard.press("End")
            await page.keyboard.type(text)
        await settled(page)
        api.push(nb, [event("outputsCleared", cellId="cell-0", wait=False), event("cellDeleted", cellId="cell-2"),
                      event("notebookMetadataSet", key="title", value="Versions (later)")])
        await wait_cells(page, 2)

        async def show(seq: int) -> None:
            await page.locator("[data-testid=history-slider]").fill(str(seq))
            await page.locator(f"[data-testid=history-banner][data-seq='{seq}']").wait_for()
            await page.locator("[data-testid=restore-cell]").first.wait_for()

        # Exporting from the history view exports the state shown.
        await show(old_seq)
        href = await page.locator("[data-testid=export-link]").get_attribute("href")
        assert href.endswith(f"/export?at={old_seq}")
        r = api.client.get(href)
        assert [("".join(c["source"]) if isinstance(c["source"], list) else c["source"]) for c in r.json()["cells"]] == [
            "v = 1", "w = 1", "notes"]

        # Restore one cell: its old source and outputs come back as new events; the other cell keeps its change.
        await cell_in_history(page, "cell-0").locator("[data-testid=restore-cell]").click()
        await page.wait_for_function("() => document.getElementById('app').dataset.view === 'live'")
        await settled(page)
        await page.wait_for_function("() => window.__runtimed.state.cells.get('cell-0').outputs.length === 1")
        await settled(page)
        view = api.get(nb)
        assert [(c["id"], c["source"]) for c in view["cells"]] == [("cell-0", "v = 1"), ("cell-1", "w = 1  # changed too")]
        assert [o.get("text") for o in view["cells"][0]["outputs"]] == ["one\n"]
        assert await page.locator("[data-testid=export-link]").get_attribute("href") == f"/api/notebooks/{nb}/export"

        # A cell deleted since is marked as such and restored in its old place.
        await show(old_seq)
        deleted = cell_in_history(page, "cell-2")
        assert "deleted since" in await deleted.inner_text()
        await deleted.locator("[data-testid=restore-cell]").click()
        await wait_cells(page, 3)
        await settled(page)
        assert [(c["id"], c["source"]) for c in api.get(nb)["cells"]] == [
            ("cell-0", "v = 1"), ("cell-1", "w = 1  # changed too"), ("cell-2", "notes")]

        # Restore the whole notebook: every cell, the order and the title as they were.
        await cell(page, "cell-2").locator("[data-testid=markdown-rendered]").wait_for()
        api.push(nb, [event("cellDeleted", cellId="cell-0")])
        await wait_cells(page, 2)
        await page.locator("[data-testid=add-cell]").click()
        await wait_cells(page, 3)
        await settled(page)
        await show(old_seq)
        await page.locator("[data-testid=restore-notebook]").click()
        await page.wait_for_function("() => document.getElementById('app').dataset.view === 'live'")
        await settled(page)
        await page.wait_for_function("() => window.__runtimed.state.order.join() === 'cell-0,cell-1,cell-2'")
        await settled(page)
        view = api.get(nb)
        assert view["title"] == "Versions"
        assert [(c["id"], c["cell_type"], c["source"]) for c in view["cells"]] == [
            ("cell-0", "code", "v = 1"), ("cell-1", "code", "w = 1"), ("cell-2", "markdown", "notes")]
        assert [o.get("text") for o in view["cells"][0]["outputs"]] == ["one\n"]

        # Fork at the old seq: a new notebook with that state; the original is untouched.
        head = view["head_seq"]
        await show(old_seq - 1)  # before the output was added
        await page.locator("[data-testid=fork-notebook]").click()
        await page.wait_for_url(lambda url: "notebook=" in url and nb not in url, timeout=30_000)
        await page.wait_for_selector("#app[data-connection=live]")
        fork_id = await page.evaluate("() => window.__runtimed.notebookId")
        fork = api.get(fork_id)
        assert fork["title"] == f"Versions (fork at seq {old_seq - 1})"
        assert [(c["cell_type"], c["source"], c["outputs"]) for c in fork["cells"]] == [
            ("code", "v = 1", []), ("code", "w = 1", []), ("markdown", "notes", [])]
        assert api.get(nb)["head_seq"] == head
        assert not page.errors, page.errors


def cell_in_history(page, cell_id: str):
    return page.locator(f'[data-testid=history-cell][data-cell-id="{cell_id}"]')


async def test_completion_and_inspection_from_the_kernel(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Complete", [("code", "import math"), ("code", "")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await command_mode_on(page, "cell-0")
        await page.keyboard.press("Control+Enter")
        await expect(cell(page, "cell-0").locator("[data-testid=exec-count]")).to_have_text("[1]", timeout=90_000)

        await (await editor(page, "cell-1")).click()
        await page.keyboard.type("math.sq")
        await page.keyboard.press("Tab")
        popup = page.locator(".cm-tooltip-autocomplete")
        await expect(popup).to_contain_text("sqrt", timeout=30_000)
        await page.keyboard.press("Tab")  # accepts the selected completion
        await page.wait_for_function("() => window.__runtimed.state.cells.get('cell-1').text.toString() === 'math.sqrt'")

        # Shift-Tab: the kernel's help for the name at the cursor; Escape closes it and stays in the editor.
        await page.keyboard.press("Shift+Tab")
        help_box = page.locator("[data-testid=kernel-help]")
        await expect(help_box).to_contain_text("square root", timeout=30_000)
        await page.keyboard.press("Escape")
        await expect(help_box).to_have_count(0)
        assert await page.evaluate("() => !!document.activeElement.closest('[data-cell-id=\"cell-1\"] .cm-editor')")

        # Tab after whitespace indents (no completion request).
        await page.keyboard.press("Enter")
        await page.keyboard.press("Tab")
        await page.wait_for_function(
            "() => window.__runtimed.state.cells.get('cell-1').text.toString() === 'math.sqrt\\n    '")
        assert await popup.count() == 0
        await settled(page)
        assert not page.errors, page.errors


async def test_output_collapse_scroll_and_stream_follow(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Outputs", [("code", "# outputs")])
    text = "".join(f"line {i}\n" for i in range(200))
    api.push(nb, [event("outputAdded", outputId="o-s", cellId="cell-0", outputType="stream", name="stdout", text=text)])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        c = cell(page, "cell-0")
        outputs = c.locator("[data-testid=outputs]")
        await expect(outputs).to_contain_text("line 199")

        # The bar left of the outputs hides them (metadata `collapsed`, for everyone); the note shows them again.
        await c.locator("[data-testid=output-collapser]").click()
        await expect(outputs).to_be_hidden()
        await expect(c.locator("[data-testid=outputs-hidden]")).to_have_text("1 output hidden · show")
        await settled(page)
        assert api.get(nb)["cells"][0]["metadata"].get("collapsed") is True
        await c.locator("[data-testid=outputs-hidden]").click()
        await expect(outputs).to_be_visible()
        await settled(page)
        assert "collapsed" not in api.get(nb)["cells"][0]["metadata"]

        # O and Shift-O in command mode.
        await command_mode_on(page, "cell-0")
        await page.keyboard.press("o")
        await expect(outputs).to_be_hidden()
        await page.keyboard.press("o")
        await expect(outputs).to_be_visible()
        await page.keyboard.press("Shift+O")
        await expect(outputs).to_have_class("cell-outputs scrolled")
        await settled(page)
        assert api.get(nb)["cells"][0]["metadata"].get("scrolled") is True

        # A stream scrolled to its end follows new lines; scrolled up, it stays where the reader is.
        stream = c.locator("[data-testid=output-stream]")
        await stream.evaluate("(n) => { n.scrollTop = n.scrollHeight }")
        api.push(nb, [event("streamTextChanged", outputId="o-s", offset=len(text), text="line 200\n")])
        await expect(stream).to_contain_text("line 200")
        assert await stream.evaluate("(n) => n.scrollHeight - n.scrollTop - n.clientHeight < 4")
        await stream.evaluate("(n) => { n.scrollTop = 10 }")
        api.push(nb, [event("streamTextChanged", outputId="o-s", offset=len(text) + 9, text="line 201\n")])
        await expect(stream).to_contain_text("line 201")
        assert await stream.evaluate("(n) => n.scrollTop") == 10
        assert not page.errors, page.errors
