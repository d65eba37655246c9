"""AI cells in the web page (issue 14, item 7): a person adds an AI cell, picks the provider and model, writes the
prompt, presses Shift-Enter, watches the answer stream and the tool steps, and approves or denies the model's
calls in place. Headless Chromium against a real daemon, real kernels and the scripted OpenAI-compatible server
of test_ai_cells (real HTTP and SSE)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess, running_daemon
from test_ai_cells import ScriptedProvider, openai_text, openai_tool
from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook, playwright_api

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

expect = playwright_api.expect
UI_TIMEOUT = 15_000  # ms: an event to reach the page


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("web-ai-home"), "--pool-size", "1") as proc:
        yield proc


@pytest.fixture(scope="module")
def api(daemon: DaemonProcess) -> Iterator[Api]:
    client = Api(daemon)
    yield client
    client.client.close()


@pytest.fixture
def provider() -> Iterator[Callable[[list[Any]], ScriptedProvider]]:
    made: list[ScriptedProvider] = []

    def make(replies: list[Any]) -> ScriptedProvider:
        made.append(ScriptedProvider(replies))
        return made[-1]

    yield make
    for p in made:
        p.close()


def created_id(body: dict[str, Any]) -> dict[str, Any]:
    for message in reversed(body["messages"]):
        found = re.search(r"created code cell (\S+)", message.get("content") or "")
        if found:
            return {"cell_id": found.group(1)}
    raise AssertionError(body["messages"])


def ai_cells(page):
    return page.locator("[data-testid=cell][data-cell-type=ai]")


def step(page, tool: str):
    return page.locator(f"[data-testid=ai-step][data-tool={tool}]")


async def choose(form, provider: str, model: str, base_url: str) -> None:
    await form.locator("[data-testid=ai-provider]").select_option(provider)
    await form.locator("[data-testid=ai-model-name]").fill(model)
    await form.locator("[data-testid=ai-base-url]").fill(base_url)
    await form.locator("[data-testid=ai-save]").click()


def approvals(api: Api, nb: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/api/notebooks/{nb}/approvals", params={"all": "true"})
    r.raise_for_status()
    return r.json()["approvals"]


async def test_write_a_prompt_pick_a_model_watch_the_stream_and_approve_in_place(
        daemon: DaemonProcess, api: Api, provider: Any) -> None:
    server = provider([
        openai_tool("create_cell", lambda _b: {"source": "print(6 * 7)"}),
        openai_tool("execute_cell", created_id),
        openai_text("The answer ", "GATE", "is **42**."),
    ])
    nb = api.create("ai in the page", [("code", "x = 6")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Alice")
        # the notebook's model, from the toolbar
        await expect(page.locator("[data-testid=ai-settings]")).to_have_text("AI: no model chosen")
        await page.locator("[data-testid=ai-settings]").click()
        await choose(page.locator("[data-testid=ai-notebook-settings]"), "openai", "scripted", f"{server.url}/v1")
        await expect(page.locator("[data-testid=ai-settings]")).to_have_text("AI: openai · scripted")
        # an AI cell from the keyboard, its prompt typed into its editor, run with Shift-Enter
        await page.keyboard.press("Alt+i")
        ai = ai_cells(page)
        await expect(ai).to_have_count(1, timeout=UI_TIMEOUT)
        await expect(ai.locator("[data-testid=ai-model]")).to_have_text("openai · scripted (notebook)")
        await expect(ai.locator(".cm-content")).to_be_focused(timeout=UI_TIMEOUT)
        await page.keyboard.type("compute x times 7 in a new cell")
        await page.keyboard.press("Shift+Enter")
        # the model's create_cell ran (no approval needed); its execute_cell waits for Alice, in the cell itself
        await expect(step(page, "create_cell")).to_have_attribute("data-status", "ok", timeout=RUN_TIMEOUT)
        asked = step(page, "execute_cell").locator("[data-testid=ai-step-approval]")
        await expect(asked).to_be_visible(timeout=RUN_TIMEOUT)
        await expect(step(page, "execute_cell")).to_have_attribute("data-status", "running")
        await asked.locator("[data-testid=ai-approve]").click()
        await expect(step(page, "execute_cell")).to_have_attribute("data-status", "ok", timeout=RUN_TIMEOUT)
        await expect(asked).to_be_hidden()
        # the answer streams: its first words show while the provider still holds the rest back
        answer = ai.locator("[data-mime='text/markdown']")
        await expect(answer).to_have_text("The answer", timeout=RUN_TIMEOUT)
        server.gate.set()
        await expect(answer).to_have_text("The answer is 42.", timeout=UI_TIMEOUT)
        await expect(answer.locator("strong")).to_have_text("42")
        await expect(ai).to_have_attribute("data-status", "success", timeout=UI_TIMEOUT)
        # a step is one line until opened: then its arguments and result
        result = step(page, "execute_cell").locator("[data-testid=ai-step-result]")
        await expect(result).to_be_hidden()
        await step(page, "execute_cell").locator("[data-testid=ai-step-summary]").click()
        await expect(result).to_contain_text("42")
        await expect(step(page, "execute_cell").locator("[data-testid=ai-step-arguments]")).to_contain_text("cell_id")
        # the created cell carries the model's name and its output
        created = created_id(server.requests[2])["cell_id"]
        await expect(cell(page, created).locator("[data-testid=outputs]")).to_contain_text("42")
        await expect(cell(page, created).locator("[data-testid=agent-badge]")).to_contain_text("ai")
        assert not page.errors, page.errors
    assert "compute x times 7" in server.requests[0]["messages"][-1]["content"]
    assert "x = 6" in server.requests[0]["messages"][-1]["content"]  # the model saw the cell above
    assert [(a["tool"], a["status"], a["resolved_by"]["name"]) for a in approvals(api, nb)] == [
        ("execute_cell", "approved", "Alice")]


async def test_a_cells_own_model_and_a_denial_in_place(daemon: DaemonProcess, api: Api, provider: Any) -> None:
    server = provider([
        openai_tool("create_cell", lambda _b: {"source": "print('must not run')"}),
        openai_tool("execute_cell", created_id),
        openai_text("Understood, I did not run it."),
    ])
    nb = api.create("ai denied")
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Bob")
        await page.locator("[data-testid=add-ai]").click()
        ai = ai_cells(page)
        await expect(ai).to_have_count(1, timeout=UI_TIMEOUT)
        await expect(ai.locator("[data-testid=ai-model]")).to_have_text("no model chosen (notebook)")
        await page.keyboard.type("run something")
        # this cell's own model (no notebook settings at all)
        await ai.locator("[data-testid=ai-model]").click()
        await choose(ai.locator("[data-testid=ai-cell-settings]"), "openai", "cell-model", f"{server.url}/v1")
        await expect(ai.locator("[data-testid=ai-model]")).to_have_text("openai · cell-model", timeout=UI_TIMEOUT)
        await ai.locator("[data-testid=run-cell]").click()
        asked = step(page, "execute_cell").locator("[data-testid=ai-step-approval]")
        await expect(asked).to_be_visible(timeout=RUN_TIMEOUT)
        await asked.locator("[data-testid=ai-deny]").click()
        await expect(step(page, "execute_cell")).to_have_attribute("data-status", "error", timeout=RUN_TIMEOUT)
        await step(page, "execute_cell").locator("[data-testid=ai-step-summary]").click()
        await expect(step(page, "execute_cell").locator("[data-testid=ai-step-result]")).to_contain_text("denied")
        await expect(ai.locator("[data-mime='text/markdown']")).to_have_text("Understood, I did not run it.",
                                                                           timeout=RUN_TIMEOUT)
        created = created_id(server.requests[1])["cell_id"]
        await expect(cell(page, created).locator("[data-testid=outputs]")).to_be_hidden()
        # back to the notebook's model (none here)
        await ai.locator("[data-testid=ai-model]").click()
        await ai.locator("[data-testid=ai-use-notebook]").click()
        await expect(ai.locator("[data-testid=ai-model]")).to_have_text("no model chosen (notebook)",
                                                                       timeout=UI_TIMEOUT)
        assert not page.errors, page.errors
    assert server.requests[0]["model"] == "cell-model"
    settings = httpx.get(f"{daemon.url}/api/notebooks/{nb}/ai-settings",
                         headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30).json()
    ai_id = next(iter(settings["cells"]))
    assert settings["notebook"] is None and settings["cells"][ai_id]["model"] == ""
    assert [(a["tool"], a["status"]) for a in approvals(api, nb)] == [("execute_cell", "denied")]


async def test_every_page_closed_during_an_answer_then_reopened_shows_it_complete(
        daemon: DaemonProcess, api: Api, provider: Any) -> None:
    server = provider([openai_text("Started ", "GATE", "and finished without anyone watching.")])
    nb = api.create("ai no browser")
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Carol")
        await page.locator("[data-testid=ai-settings]").click()
        await choose(page.locator("[data-testid=ai-notebook-settings]"), "openai", "scripted", f"{server.url}/v1")
        await page.locator("[data-testid=add-ai-end]").click()
        ai = ai_cells(page)
        await expect(ai.locator(".cm-content")).to_be_focused(timeout=UI_TIMEOUT)
        await page.keyboard.type("take your time")
        await page.keyboard.press("Shift+Enter")
        await expect(ai.locator("[data-mime='text/markdown']")).to_have_text("Started", timeout=RUN_TIMEOUT)
        assert not page.errors, page.errors
    server.gate.set()  # every browser is gone; the daemon's runtime goes on
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Carol")
        ai = ai_cells(page)
        await expect(ai.locator("[data-mime='text/markdown']")).to_have_text(
            "Started and finished without anyone watching.", timeout=RUN_TIMEOUT)
        await expect(ai).to_have_attribute("data-status", "success", timeout=UI_TIMEOUT)
        await expect(ai.locator("[data-testid=ai-model]")).to_have_text("openai · scripted (notebook)")
        assert not page.errors, page.errors
