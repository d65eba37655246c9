"""The page's dependency panel (issue 21): a person adds a package in headless Chromium, real uv builds the
notebook's environment, a real kernel imports it; a list someone else declared waits for the Approve button."""

from __future__ import annotations

import re
from collections.abc import Iterator

import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon
from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook, playwright_api

from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(400)]

expect = playwright_api.expect
UI_TIMEOUT = 15_000
BUILD_TIMEOUT = 240_000  # ms: a uv build plus a kernel start on a loaded machine


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("web-deps-home"), "--pool-size", "0") as proc:
        yield proc


@pytest.fixture(scope="module")
def api(daemon: DaemonProcess) -> Iterator[Api]:
    client = Api(daemon)
    yield client
    client.client.close()


def run(api: Api, nb: str) -> str:
    """Queue the notebook's first cell (as the page's Shift+Enter would); its id."""
    cell_id = api.client.get(f"/api/notebooks/{nb}").json()["cells"][0]["id"]
    api.push(nb, [make_event("executionRequested", queue_id=new_id("q-"), cell_id=cell_id)])
    return str(cell_id)


async def test_add_a_dependency_in_the_page_and_import_it(daemon: DaemonProcess, api: Api) -> None:
    nb = api.create("deps", [("code", "import toolz; print('has', toolz.__name__)")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Alice")
        panel = page.get_by_test_id("deps-panel")
        await expect(panel).to_be_hidden()
        await page.get_by_test_id("deps-toggle").click()
        await expect(panel).to_be_visible()
        await page.get_by_test_id("deps-input").fill("toolz")
        await page.get_by_test_id("deps-add").click()
        await expect(page.locator("[data-testid=deps-item][data-package=toolz]")).to_be_visible(timeout=UI_TIMEOUT)
        await expect(page.get_by_test_id("deps-toggle")).to_have_text("Dependencies (1)")
        await expect(panel).to_have_attribute("data-trusted", "true")  # a person chose it: approved
        await expect(page.get_by_test_id("deps-approve")).to_be_hidden()
        first = cell(page, run(api, nb))
        await expect(first.locator("[data-testid=outputs]")).to_contain_text("has toolz", timeout=BUILD_TIMEOUT)
        await expect(panel).to_have_attribute("data-built", "true", timeout=UI_TIMEOUT)
        metadata = api.client.get(f"/api/notebooks/{nb}").json()["metadata"]
        assert metadata["runtimed"]["dependencies"] == ["toolz"]
        await page.get_by_test_id("deps-remove").click()
        await expect(page.get_by_test_id("deps-item")).to_have_count(0, timeout=UI_TIMEOUT)
        assert page.errors == []


async def test_an_imported_list_waits_for_the_approve_button(daemon: DaemonProcess, api: Api) -> None:
    nb = make_notebook(("code", "import six; print('six', six.__name__)"))
    nb.metadata["runtimed"] = {"dependencies": ["six"]}
    r = api.client.post("/api/notebooks/import", params={"id": "deps-imported"}, content=nbformat.writes(nb).encode())
    r.raise_for_status()
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, "deps-imported", "Alice")
        await expect(page.get_by_test_id("deps-toggle")).to_have_text("Dependencies (1)", timeout=UI_TIMEOUT)
        await page.get_by_test_id("deps-toggle").click()
        panel = page.get_by_test_id("deps-panel")
        await expect(panel).to_have_attribute("data-trusted", "false")
        first = cell(page, run(api, "deps-imported"))
        await expect(first).to_have_attribute("data-status", "error", timeout=RUN_TIMEOUT)
        await expect(first.locator(".cell-status")).to_have_attribute("title", re.compile("DependenciesNotApproved"))
        await page.get_by_test_id("deps-approve").click()
        await expect(panel).to_have_attribute("data-trusted", "true", timeout=UI_TIMEOUT)
        run(api, "deps-imported")
        await expect(first.locator("[data-testid=outputs]")).to_contain_text("six six", timeout=BUILD_TIMEOUT)
        assert page.errors == []
