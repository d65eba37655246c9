"""Details of the notebook page that JupyterLab users expect (issue 19): "Clear outputs" resets counts and
durations, JSON outputs as a collapsible tree, the kinds of the people in the presence list, and Z undoing a
merge. Real Chromium against a real daemon with real kernels."""

from __future__ import annotations

import pytest

from tests.test_web import Api, cell, chromium, open_notebook, playwright_api, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]

expect = playwright_api.expect
RUN_TIMEOUT = 120_000


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def prompt(page, cell_id: str):
    return cell(page, cell_id).locator("[data-testid=exec-count]")


def status(page, cell_id: str):
    return cell(page, cell_id).locator("[data-testid=cell-status]")


async def test_clear_outputs_resets_counts_and_durations(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Clear", [("code", "print('one')"), ("code", "2 + 2"), ("code", "x = 1")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await page.locator("[data-testid=run-all]").click()
        for cid, n in (("cell-0", 1), ("cell-1", 2), ("cell-2", 3)):
            await expect(prompt(page, cid)).to_have_text(f"[{n}]", timeout=RUN_TIMEOUT)
            await expect(status(page, cid)).to_contain_text("✓", timeout=RUN_TIMEOUT)

        # One cell's "Clear outputs": its outputs, its count and its run's status and duration go.
        await cell(page, "cell-0").hover()
        await cell(page, "cell-0").locator("[data-testid=clear-outputs]").click()
        await expect(prompt(page, "cell-0")).to_have_text("[ ]")
        await expect(status(page, "cell-0")).to_have_text("")
        await expect(cell(page, "cell-0").locator("[data-testid=output]")).to_have_count(0)
        await expect(prompt(page, "cell-1")).to_have_text("[2]")
        await settled(page)
        view = {c["id"]: c for c in api.get(nb)["cells"]}
        assert view["cell-0"]["execution_count"] is None and view["cell-0"]["execution"] is None
        assert view["cell-1"]["execution_count"] == 2 and view["cell-1"]["execution"]["status"] == "success"

        # "Clear outputs" for all: also the cell without outputs loses its count.
        await page.locator("[data-testid=clear-all]").click()
        for cid in ("cell-1", "cell-2"):
            await expect(prompt(page, cid)).to_have_text("[ ]")
            await expect(status(page, cid)).to_have_text("")
        await settled(page)
        assert all(c["execution_count"] is None and c["execution"] is None and not c["outputs"]
                   for c in api.get(nb)["cells"])

        # A reload shows the same (the projection agrees with the page), and a new run counts on.
        await page.reload()
        await expect(prompt(page, "cell-1")).to_have_text("[ ]")
        await expect(status(page, "cell-1")).to_have_text("")
        await cell(page, "cell-1").hover()
        await cell(page, "cell-1").locator("[data-testid=run-cell]").click()
        await expect(prompt(page, "cell-1")).to_have_text("[4]", timeout=RUN_TIMEOUT)
        await expect(status(page, "cell-1")).to_contain_text("✓")
        assert not page.errors, page.errors


JSON_CELL = "from IPython.display import JSON\nJSON({'name': 'box', 'size': {'w': 3, 'h': 4}, 'tags': ['a', 'b'], 'ok': True, 'none': None})"
BIG_JSON_CELL = ("from IPython.display import JSON, display\n"
                 "display(JSON({'rows': list(range(20_000)), 'marker': 'json tail'}))")


async def test_json_output_is_a_collapsible_tree(daemon) -> None:
    api = Api(daemon)
    nb = api.create("JSON", [("code", JSON_CELL), ("code", BIG_JSON_CELL)])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await page.locator("[data-testid=run-all]").click()
        tree = cell(page, "cell-0").locator("[data-testid=output-json]")
        await tree.wait_for(timeout=RUN_TIMEOUT)
        # The root is open: its keys and leaves show, typed; nested objects and arrays are closed with a count.
        text = await tree.inner_text()
        assert '"name": "box"' in text and '"ok": true' in text and '"none": null' in text, text
        branches = tree.locator("[data-testid=json-branch]")
        size = branches.filter(has_text='"size"').last
        assert await size.evaluate("(d) => d.open") is False
        assert "{…} 2 keys" in await size.locator("summary").inner_text()
        assert "[…] 2 items" in await branches.filter(has_text='"tags"').last.locator("summary").inner_text()
        assert '"w"' not in await tree.inner_text()  # closed: the children are not even built
        # A click opens a node, another closes it.
        await size.locator("summary").click()
        await expect(size).to_contain_text('"w": 3')
        await expect(size).to_contain_text('"h": 4')
        await size.locator("summary").click()
        await expect(size.locator(".json-children")).to_be_hidden()

        # A JSON output stored as an artifact is a tree too, once fetched; a 20,000-item array opens on demand.
        big = cell(page, "cell-1").locator("[data-testid=output]")
        await cell(page, "cell-1").scroll_into_view_if_needed()
        big_tree = big.locator("[data-testid=output-json]")
        await expect(big_tree).to_contain_text('"marker": "json tail"', timeout=RUN_TIMEOUT)
        assert await big.get_attribute("data-artifact")
        rows = big_tree.locator("[data-testid=json-branch]").filter(has_text='"rows"').last
        assert "[…] 20000 items" in await rows.locator("summary").inner_text()
        assert await rows.locator("li").count() == 0
        await rows.locator("summary").click()
        await expect(rows.locator("li")).to_have_count(20_000)
        await expect(rows.locator("li").last).to_have_text("19999: 19999")
        assert not page.errors, page.errors


async def test_presence_list_shows_each_peers_kind(daemon) -> None:
    from runtimed.client.session import AsyncSession

    api = Api(daemon)
    nb = api.create("Who", [("code", "1 + 1")])
    async with chromium() as browser:
        alice = await open_notebook(browser, daemon, nb, name="Alice")
        bob = await open_notebook(browser, daemon, nb, name="Bob")
        chips = alice.locator("[data-testid=peers] [data-testid=peer]")
        await expect(chips.filter(has_text="Bob")).to_have_attribute("data-kind", "person", timeout=30_000)
        await expect(chips.filter(has_text="Bob").locator("[data-testid=peer-kind]")).to_have_text("person")

        # A Python session and an agent that never send presence are listed with their kind.
        py = AsyncSession(nb, peer_label="pyuser", endpoint=daemon.endpoint)
        agent = AsyncSession(nb, actor={"id": "agent:helper", "kind": "agent", "name": "Helper"},
                             endpoint=daemon.endpoint, client_name="mcp")
        await py.connect()
        await agent.connect()
        try:
            await expect(chips.filter(has_text="pyuser")).to_have_attribute("data-kind", "Python session", timeout=30_000)
            await expect(chips.filter(has_text="Helper")).to_have_attribute("data-kind", "agent", timeout=30_000)
            await expect(chips.filter(has_text="Helper")).to_have_attribute("title", "Helper (agent)")

            # The runtime that connects to run a cell is listed as a runtime.
            await cell(alice, "cell-0").hover()
            await cell(alice, "cell-0").locator("[data-testid=run-cell]").click()
            await expect(prompt(alice, "cell-0")).to_have_text("[1]", timeout=RUN_TIMEOUT)
            await expect(chips.locator(":scope[data-kind=runtime]")).to_have_count(1, timeout=30_000)
            await expect(bob.locator("[data-testid=peers] [data-testid=peer]").filter(has_text="Alice")).to_have_attribute(
                "data-kind", "person", timeout=30_000)
        finally:
            await py.close()
        # A silent peer that leaves goes from the list.
        await expect(chips.filter(has_text="pyuser")).to_have_count(0, timeout=30_000)
        await agent.close()
        await expect(chips.filter(has_text="Helper")).to_have_count(0, timeout=30_000)
        assert not alice.errors, alice.errors


async def test_z_undoes_a_merge(daemon) -> None:
    from tests.test_web_commands import command_mode_on, wait_cells

    api = Api(daemon)
    nb = api.create("Merge", [("code", "a = 1"), ("code", "b = 2"), ("markdown", "# c"), ("code", "d = 4")])
    cells = {c["id"]: c for c in api.get(nb)["cells"]}
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        await command_mode_on(page, "cell-1")
        await page.keyboard.press("Shift+J")
        await page.keyboard.press("Shift+M")
        await wait_cells(page, 3)
        await settled(page)
        assert [c["source"] for c in api.get(nb)["cells"]] == ["a = 1", "b = 2\n\n# c", "d = 4"]

        # Z: the merged cell gets its own text back and the merged-away cell returns in place, with its id and type.
        await page.keyboard.press("z")
        await wait_cells(page, 4)
        await page.wait_for_function("() => window.__runtimed.state.cells.get('cell-1').text.toString() === 'b = 2'")
        await settled(page)
        after = api.get(nb)["cells"]
        assert [(c["id"], c["cell_type"], c["source"]) for c in after] == [
            (c["id"], c["cell_type"], c["source"]) for c in cells.values()]
        # The log keeps the merge and its undo (nothing rewritten).
        r = api.client.get(f"/api/notebooks/{nb}/events", params={"since": 0, "limit": 1000})
        r.raise_for_status()
        names = [e["name"] for e in r.json()["events"]]
        assert names.count("cellDeleted") == 1 and names.count("cellCreated") == 5, names
        # Typing after the undo is still the cell's own text (the undo is an ordinary edit).
        await page.keyboard.press("Enter")
        await page.keyboard.press("End")
        await page.keyboard.type("  # x")
        await page.wait_for_function("() => window.__runtimed.state.cells.get('cell-1').text.toString() === 'b = 2  # x'")
        assert not page.errors, page.errors
