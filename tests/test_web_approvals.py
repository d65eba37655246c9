"""Agents in the web page (issue 13, items 7 and 8): a real MCP agent (the ``mcp`` SDK's client over the
daemon's ``/mcp``) asks to run code or edit, a person answers in headless Chromium, real kernels run it;
cells an agent changed carry its name, and the history view says who did each step."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from conftest import DaemonProcess, running_daemon
from mcp_clients import Agent, eventually, mcp_client, text_of
from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook, playwright_api, settled

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

expect = playwright_api.expect
AGENT = "page-test-agent"
UI_TIMEOUT = 15_000  # ms: an event to reach the page
CALL_TIMEOUT = 120  # s: an agent's call, including a kernel start


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("web-approvals-home"), "--pool-size", "1") as proc:
        yield proc


@pytest.fixture(scope="module")
async def agent(daemon: DaemonProcess) -> AsyncIterator[Agent]:
    async with mcp_client(daemon, "http", AGENT) as session:
        yield Agent(session, AGENT, "http")


@pytest.fixture(scope="module")
def api(daemon: DaemonProcess) -> Iterator[Api]:
    client = Api(daemon)
    yield client
    client.client.close()


async def notebook_with_cell(agent: Agent, source: str) -> tuple[str, str]:
    """A notebook the agent made (default policy: running code needs approval) with one cell of its own."""
    nb = (await agent.ok("create_notebook", title="agent at work")).structured_content["notebook_id"]
    cell_id = (await agent.ok("create_cell", notebook_id=nb, source=source)).structured_content["cell_id"]
    return nb, cell_id


def events(api: Api, nb: str) -> list[dict[str, Any]]:
    r = api.client.get(f"/api/notebooks/{nb}/events")
    r.raise_for_status()
    return r.json()["events"]


def count(api: Api, nb: str, name: str) -> int:
    return sum(e["name"] == name for e in events(api, nb))


def request_in(page, tool: str):
    return page.locator(f"[data-testid=approval][data-tool={tool}]")


async def test_approve_in_the_page_runs_the_agents_code(daemon: DaemonProcess, agent: Agent, api: Api) -> None:
    code = "print('approved in the page')"
    nb, cell_id = await notebook_with_cell(agent, code)
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Alice")
        panel = page.locator("[data-testid=approvals-panel]")
        await expect(panel).to_be_hidden()
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell_id))
        asked = request_in(page, "execute_cell")
        await expect(asked).to_be_visible(timeout=UI_TIMEOUT)
        await expect(asked.locator("[data-testid=approval-agent]")).to_have_text(AGENT)
        await expect(asked.locator("[data-testid=approval-preview]")).to_have_text(code)
        await expect(asked.locator("[data-testid=approval-preview]")).to_have_attribute("data-kind", "code")
        await expect(asked.locator("[data-testid=approval-args]")).to_contain_text(cell_id)
        await expect(page.locator("[data-testid=approvals-count]")).to_have_text("1 to approve")
        # both marks, in whichever order the page added them (the approval can arrive before the agent's mark)
        await expect(cell(page, cell_id)).to_have_class(re.compile(r"(?=.*\bby-agent\b)(?=.*\bawaiting-approval\b)"))
        assert not call.done() and count(api, nb, "executionRequested") == 0  # nothing runs before the answer

        await asked.locator("[data-testid=approve]").click()
        await expect(cell(page, cell_id).locator("[data-testid=outputs]")).to_contain_text(
            "approved in the page", timeout=RUN_TIMEOUT)
        await expect(panel).to_be_hidden()
        result = await asyncio.wait_for(call, CALL_TIMEOUT)
        assert not result.is_error and "approved in the page" in text_of(result), text_of(result)
        assert not page.errors, page.errors

    listed = api.client.get(f"/api/notebooks/{nb}/approvals", params={"all": "true"}).json()["approvals"]
    assert [(a["status"], a["resolved_by"]["kind"], a["resolved_by"]["name"]) for a in listed] == [
        ("approved", "human", "Alice")]


async def test_deny_in_the_page_runs_nothing(daemon: DaemonProcess, agent: Agent, api: Api) -> None:
    nb, cell_id = await notebook_with_cell(agent, "print('must not run')")
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Bob")
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell_id))
        asked = request_in(page, "execute_cell")
        await expect(asked).to_be_visible(timeout=UI_TIMEOUT)
        await asked.locator("[data-testid=deny]").click()
        result = await asyncio.wait_for(call, CALL_TIMEOUT)
        assert result.is_error and result.structured_content["error"]["code"] == "approval_denied", text_of(result)
        assert "Bob denied execute_cell" in text_of(result) and "nothing ran" in text_of(result)
        await expect(page.locator("[data-testid=approvals-panel]")).to_be_hidden()
        assert count(api, nb, "executionRequested") == 0
        assert api.get(nb)["cells"][0]["outputs"] == []
        await expect(cell(page, cell_id).locator("[data-testid=outputs]")).to_be_hidden()
        assert not page.errors, page.errors


async def test_always_in_the_page_lets_the_next_call_run_without_asking(daemon: DaemonProcess, agent: Agent,
                                                                        api: Api) -> None:
    nb, cell_id = await notebook_with_cell(agent, "n = globals().get('n', 0) + 1\nprint(f'run {n}')")
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Carol")
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell_id))
        asked = request_in(page, "execute_cell")
        await expect(asked).to_be_visible(timeout=UI_TIMEOUT)
        await asked.locator("[data-testid=approve-always]").click()
        first = await asyncio.wait_for(call, CALL_TIMEOUT)
        assert not first.is_error and "run 1" in text_of(first), text_of(first)
        assert count(api, nb, "toolApprovalRequested") == 1

        second = await asyncio.wait_for(agent.raw("execute_cell", notebook_id=nb, cell_id=cell_id), CALL_TIMEOUT)
        assert not second.is_error and "run 2" in text_of(second), text_of(second)
        assert count(api, nb, "toolApprovalRequested") == 1  # the second call asked nobody
        await expect(cell(page, cell_id).locator("[data-testid=outputs]")).to_contain_text("run 2", timeout=UI_TIMEOUT)
        await expect(page.locator("[data-testid=approvals-panel]")).to_be_hidden()
        assert not page.errors, page.errors


async def test_an_edit_shows_its_diff_and_the_agents_cells_carry_its_name(daemon: DaemonProcess, agent: Agent,
                                                                           api: Api) -> None:
    """The page sets the policy to `edits`; the agent's edit is shown as a diff, approved, and marked; the
    history lists who did each step."""
    nb = api.create("a person's notebook", [("code", "x = 1\nprint(x)\n"), ("markdown", "# notes")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Dana")
        for cell_id in ("cell-0", "cell-1"):  # made by a person: no mark
            await expect(cell(page, cell_id).locator("[data-testid=agent-badge]")).to_be_hidden()
        await page.locator("[data-testid=approval-policy]").select_option("edits")
        await settled(page)
        assert api.get(nb)["metadata"]["runtimed"] == {"approvals": "edits"}

        async def agent_sees_the_policy() -> bool:
            return "approval policy: edits" in text_of(await agent.ok("get_notebook", notebook_id=nb))

        await eventually(agent_sees_the_policy, what="the agent's replica to get the page's policy")

        call = asyncio.create_task(agent.raw("replace_match", notebook_id=nb, cell_id="cell-0", match="x = 1",
                                             replacement="x = 2"))
        asked = request_in(page, "replace_match")
        await expect(asked).to_be_visible(timeout=UI_TIMEOUT)
        preview = asked.locator("[data-testid=approval-preview]")
        await expect(preview).to_have_attribute("data-kind", "diff")
        await expect(preview.locator(".diff-line.del")).to_have_text(["-x = 1\n"])
        await expect(preview.locator(".diff-line.add")).to_have_text(["+x = 2\n"])
        await expect(asked.locator("[data-testid=approval-args]")).to_contain_text("x = 2")
        await asked.locator("[data-testid=approve]").click()
        result = await asyncio.wait_for(call, CALL_TIMEOUT)
        assert not result.is_error, text_of(result)

        badge = cell(page, "cell-0").locator("[data-testid=agent-badge]")
        await expect(badge).to_have_text(AGENT, timeout=UI_TIMEOUT)  # live, from the edit's event
        await expect(badge).to_have_attribute("title", re.compile(rf"^Last changed by the agent {AGENT}; created by "))
        await expect(cell(page, "cell-1").locator("[data-testid=agent-badge]")).to_be_hidden()
        assert api.get(nb)["cells"][0]["source"] == "x = 2\nprint(x)\n"

        # A page opened now learns the marks from the server (no live event to see).
        call = asyncio.create_task(agent.raw("create_cell", notebook_id=nb, source="print('new')"))
        asked = request_in(page, "create_cell")
        await expect(asked.locator("[data-testid=approval-preview]")).to_have_text("print('new')", timeout=UI_TIMEOUT)
        await asked.locator("[data-testid=approve]").click()
        created = await asyncio.wait_for(call, CALL_TIMEOUT)
        assert not created.is_error, text_of(created)
        added = created.structured_content["cell_id"]
        fresh = await open_notebook(browser, daemon, nb, "Eve")
        await expect(cell(fresh, "cell-0").locator("[data-testid=agent-badge]")).to_have_text(AGENT)
        await expect(cell(fresh, added).locator("[data-testid=agent-badge]")).to_have_text(AGENT)
        await expect(cell(fresh, "cell-1").locator("[data-testid=agent-badge]")).to_be_hidden()

        # The history view says who did each step: the agent's request, Dana's answer, the agent's edit.
        log = events(api, nb)
        resolved = next(e["seq"] for e in log if e["name"] == "toolApprovalResolved")
        edited = next(e["seq"] for e in log if e["name"] == "cellSourceEdited" and e["seq"] > resolved)
        await fresh.evaluate("seq => window.__runtimed.showAt(seq)", edited)
        steps = fresh.locator("[data-testid=history-step]")
        await expect(fresh.locator("[data-testid=history-step].current")).to_have_attribute("data-seq", str(edited))
        current = fresh.locator("[data-testid=history-step].current")
        await expect(current).to_have_attribute("data-actor-kind", "agent")
        await expect(current).to_have_attribute("data-actor-name", AGENT)
        answer = steps.and_(fresh.locator(f"[data-seq='{resolved}']"))
        await expect(answer).to_have_attribute("data-actor-kind", "human")
        await expect(answer).to_have_attribute("data-actor-name", "Dana")
        await expect(answer).to_contain_text("approved a tool call")
        asked_seq = next(e["seq"] for e in log if e["name"] == "toolApprovalRequested")
        await expect(steps.and_(fresh.locator(f"[data-seq='{asked_seq}']"))).to_contain_text(
            "asked for approval to call replace_match")
        assert not page.errors and not fresh.errors, (page.errors, fresh.errors)
