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
