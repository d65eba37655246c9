"""Human approval of agents' tool calls, as audited events: the materializer's rules, and the whole loop
(an MCP agent asks, a person answers from a Session, REST or the CLI) against a real daemon and kernels."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import DaemonProcess, running_daemon
from mcp_clients import TRANSPORTS, Agent, eventually, mcp_client, text_of

from runtimed import AsyncSession
from runtimed.client.http import DaemonHTTP
from runtimed.errors import RuntimedError
from runtimed.schema import approvals
from runtimed.schema.events import make_event
from runtimed.store.sqlite import SQLiteEventStore

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

PERSON = {"id": "alice", "kind": "human", "name": "alice"}
AGENT = {"id": "agent:claude", "kind": "agent", "name": "claude"}
OTHER_AGENT = {"id": "agent:cursor", "kind": "agent", "name": "cursor"}
RUNTIME = {"id": "rt1", "kind": "runtime"}


# --- the materializer's rules (a real store, no daemon) -------------------------------------------


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Any]:
    store = SQLiteEventStore(tmp_path)
    nb_log = store.log("nb")
    nb_log.append([make_event("notebookCreated", title="t")], PERSON)
    yield nb_log
    store.close()


def push(nb_log: Any, actor: dict[str, Any], name: str, **args: Any) -> dict[str, Any]:
    return dict(nb_log.append([make_event(name, **args)], actor)[0])


def request(nb_log: Any, approval_id: str, actor: dict[str, Any] = AGENT) -> None:
    assert "error" not in push(nb_log, actor, "toolApprovalRequested", approval_id=approval_id, tool="execute_cell")


@pytest.mark.parametrize("resolver", [AGENT, OTHER_AGENT, RUNTIME], ids=["itself", "another agent", "a runtime"])
def test_only_a_person_approves_an_agents_request(log: Any, resolver: dict[str, Any]) -> None:
    request(log, "a1")
    head = log.head
    for decision in ("approved", "approved_always"):
        result = push(log, resolver, "toolApprovalResolved", approval_id="a1", decision=decision)
        assert result["error"]["code"] == "approval_self", result
    assert log.head == head
    assert log.view(approvals.get_approval, "a1")["status"] == "pending"


def test_a_person_approves_once_and_the_requester_may_withdraw(log: Any) -> None:
    request(log, "a1")
    assert "error" not in push(log, PERSON, "toolApprovalResolved", approval_id="a1", decision="approved_always")
    again = push(log, PERSON, "toolApprovalResolved", approval_id="a1", decision="denied")
    assert again["error"]["code"] == "approval_resolved"
    assert log.view(approvals.always_allowed, "execute_cell", AGENT["id"])
    assert not log.view(approvals.always_allowed, "execute_cell", OTHER_AGENT["id"])
    request(log, "a2")
    other = push(log, OTHER_AGENT, "toolApprovalResolved", approval_id="a2", decision="denied")
    assert other["error"]["code"] == "approval_self"
    assert "error" not in push(log, AGENT, "toolApprovalResolved", approval_id="a2", decision="denied")
    assert [(a["approval_id"], a["status"]) for a in log.view(approvals.list_approvals, pending_only=False)] == [
        ("a1", "approved_always"), ("a2", "withdrawn")]


def test_policy_levels() -> None:
    assert approvals.policy({}) == "execute"
    assert approvals.policy({"runtimed": {"approvals": "edits"}}) == "edits"
    assert approvals.policy({"runtimed": {"approvals": "sometimes"}}) == "all"  # a typo does not open the door
    needs = {p: [lvl for lvl in ("read", "edit", "execute") if approvals.needs_approval(p, lvl)]
             for p in approvals.POLICIES}
    assert needs == {"off": [], "execute": ["execute"], "edits": ["edit", "execute"],
                     "all": ["read", "edit", "execute"]}
    assert approvals.timeout({"runtimed": {"approval_timeout": 5}}) == 5.0
    assert approvals.timeout({"runtimed": {"approval_timeout": "soon"}}) == approvals.DEFAULT_TIMEOUT


# --- the loop against a daemon -------------------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("approvals-home"), "--pool-size", "1") as proc:
        yield proc


@pytest.fixture(scope="module", params=TRANSPORTS)
async def agent(request: pytest.FixtureRequest, daemon: DaemonProcess) -> AsyncIterator[Agent]:
    name = f"approval-agent-{request.param}"
    async with mcp_client(daemon, request.param, name) as session:
        yield Agent(session, name, request.param)


@pytest.fixture
async def stdio_agent(daemon: DaemonProcess) -> AsyncIterator[Agent]:
    async with mcp_client(daemon, "stdio", "approval-agent-stdio") as session:
        yield Agent(session, "approval-agent-stdio", "stdio")


@pytest.fixture
def rest(daemon: DaemonProcess) -> Iterator[DaemonHTTP]:
    http = DaemonHTTP(daemon.endpoint)
    yield http
    http.close()


@contextlib.asynccontextmanager
async def person_on(notebook_id: str) -> AsyncIterator[AsyncSession]:
    session = AsyncSession(notebook_id, peer_label="alice")
    await session.connect()
    try:
        yield session
    finally:
        active = session._active_session()
        if active is not None:
            with contextlib.suppress(RuntimedError):
                await session.client.commit([make_event("runtimeSessionEnded", session_id=active["session_id"],
                                                        reason="shutdown")])
        await session.close()


async def notebook_with_cell(agent: Agent, source: str) -> tuple[str, str]:
    nb = (await agent.ok("create_notebook", title="needs approval")).structured_content["notebook_id"]
    cell = (await agent.ok("create_cell", notebook_id=nb, source=source)).structured_content["cell_id"]
    return nb, cell


@contextlib.asynccontextmanager
async def person_notebook(source: str, **settings: Any) -> AsyncIterator[tuple[AsyncSession, str]]:
    """A notebook a person made, with ``runtimed`` settings, before any agent opened it (so the agent's
    first read already has them)."""
    async with person_on(f"approvals-{uuid.uuid4().hex[:12]}") as person:
        await person.set_metadata("runtimed", settings)
        yield person, await person.create_cell(source)


async def pending(person: AsyncSession, tool: str) -> dict[str, Any]:
    """The first pending request for ``tool``, once the person's replica has it."""
    def find() -> dict[str, Any] | None:
        found = [a for a in person.client.replica.view(approvals.list_approvals) if a["tool"] == tool]
        return found[0] if found else None

    return await person.client.wait_for(find, 30.0)


def names(rest: DaemonHTTP, nb: str) -> list[tuple[str, str, str]]:
    body = rest.get(f"/api/notebooks/{nb}/events")
    return [(e["name"], e["actor"]["kind"], e["actor"].get("name", "")) for e in body["events"]]


async def test_approval_required_then_given_by_a_person_then_executed(agent: Agent, rest: DaemonHTTP) -> None:
    nb, cell = await notebook_with_cell(agent, "print('approved and ran')")
    agent.progress.clear()
    async with person_on(nb) as person:
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell))
        asked = await pending(person, "execute_cell")
        assert asked["cell_id"] == cell and asked["arguments"]["preview"] == "print('approved and ran')"
        assert asked["requested_by"] == {"id": f"agent:{agent.name}", "kind": "agent", "name": agent.name}
        await person.resolve_approval(asked["approval_id"], "approved")
        result = await asyncio.wait_for(call, 60)
        assert not result.is_error and "approved and ran" in text_of(result), text_of(result)
        assert any("waiting for a person to approve execute_cell" in (m or "") for _, _, m in agent.progress)
        resolved = (await person.approvals(pending_only=False))[0]
        assert resolved["status"] == "approved" and resolved["resolved_by"]["name"] == "alice"
    trail = names(rest, nb)
    assert ("toolApprovalRequested", "agent", agent.name) in trail
    assert ("toolApprovalResolved", "human", "alice") in trail
    asked_at = trail.index(("toolApprovalRequested", "agent", agent.name))
    resolved_at = trail.index(("toolApprovalResolved", "human", "alice"))
    assert asked_at < resolved_at < trail.index(("executionRequested", "agent", agent.name))


async def test_denied_over_rest_runs_nothing(agent: Agent, rest: DaemonHTTP, daemon: DaemonProcess) -> None:
    nb, cell = await notebook_with_cell(agent, "print('must not run')")
    async with person_on(nb) as person:
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell))
        asked = await pending(person, "execute_cell")
        listed = rest.get(f"/api/notebooks/{nb}/approvals")
        assert listed["policy"] == "execute" and [a["approval_id"] for a in listed["approvals"]] == [asked["approval_id"]]
        answer = rest.post(f"/api/notebooks/{nb}/approvals/{asked['approval_id']}", json={"decision": "denied"})
        assert answer["approval"]["status"] == "denied"
        result = await asyncio.wait_for(call, 60)
    assert result.is_error and result.structured_content["error"]["code"] == "approval_denied"
    assert "REST API denied execute_cell" in text_of(result) and "nothing ran" in text_of(result)
    assert "executionRequested" not in [n for n, _, _ in names(rest, nb)]
    again = httpx.post(f"{daemon.url}/api/notebooks/{nb}/approvals/{asked['approval_id']}",
                       json={"decision": "approved"}, headers=daemon.endpoint.headers())
    assert again.status_code == 409 and again.json()["error"]["code"] == "approval_resolved"
    missing = httpx.post(f"{daemon.url}/api/notebooks/{nb}/approvals/ap-nope", json={"decision": "approved"},
                         headers=daemon.endpoint.headers())
    assert missing.status_code == 404 and "runt approvals" in missing.json()["error"]["message"]
    wrong = httpx.post(f"{daemon.url}/api/notebooks/{nb}/approvals/{asked['approval_id']}",
                       json={"decision": "maybe"}, headers=daemon.endpoint.headers())
    assert wrong.status_code == 422


async def test_nobody_answers_so_the_request_times_out_and_is_withdrawn(agent: Agent, rest: DaemonHTTP) -> None:
    async with person_notebook("print('must not run')", approvals="execute", approval_timeout=1.5) as (person, cell):
        nb = person.notebook_id
        agent.progress.clear()
        message = await agent.fails("execute_cell", "approval_timeout", notebook_id=nb, cell_id=cell)
        assert "nobody answered within 1.5 s" in message and "nothing ran" in message
        assert agent.progress and all(total == 1.5 for _, total, _ in agent.progress)
        (withdrawn,) = await person.client.wait_for(
            lambda: [a for a in person.client.replica.view(approvals.list_approvals, pending_only=False)
                     if a["status"] == "withdrawn"], 10.0)
        assert withdrawn["resolved_by"]["kind"] == "agent" and await person.approvals() == []
        assert "executionRequested" not in [n for n, _, _ in names(rest, nb)]


async def _cli(daemon: DaemonProcess, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "runtimed.cli.main", *args, env=daemon.env(),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    return proc.returncode or 0, out.decode(), err.decode()


async def test_approved_always_from_the_cli_covers_that_tool_only(stdio_agent: Agent, rest: DaemonHTTP,
                                                                  daemon: DaemonProcess) -> None:
    agent = stdio_agent
    nb, cell = await notebook_with_cell(agent, "print('always')")
    async with person_on(nb) as person:
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell))
        asked = await pending(person, "execute_cell")
        code, out, err = await _cli(daemon, "approvals", nb)
        assert code == 0 and asked["approval_id"] in out and "execute_cell" in out and agent.name in out, err
        code, out, err = await _cli(daemon, "approvals", "--json")
        assert code == 0 and asked["approval_id"] in [a["approval_id"] for a in json.loads(out)]
        code, out, err = await _cli(daemon, "approve", nb, asked["approval_id"], "--always")
        assert code == 0 and "approved_always" in out, err
        first = await asyncio.wait_for(call, 60)
        assert not first.is_error and "always" in text_of(first)
        requests = sum(n == "toolApprovalRequested" for n, _, _ in names(rest, nb))
        second = await agent.ok("execute_cell", notebook_id=nb, cell_id=cell)
        assert "always" in text_of(second)
        assert sum(n == "toolApprovalRequested" for n, _, _ in names(rest, nb)) == requests
        # another tool still asks
        call = asyncio.create_task(agent.raw("run_all_cells", notebook_id=nb))
        asked = await pending(person, "run_all_cells")
        assert "print('always')" in asked["arguments"]["preview"]
        await person.resolve_approval(asked["approval_id"], "denied")
        assert (await asyncio.wait_for(call, 60)).structured_content["error"]["code"] == "approval_denied"
        code, out, err = await _cli(daemon, "approve", nb, "ap-missing")
        assert code == 4 and "ap-missing" in err
    code, out, err = await _cli(daemon, "history", nb, "--actor", "agent", "--json")
    listed = json.loads(out)["events"]
    assert code == 0 and listed and {(e["actor"]["kind"], e["actor"]["name"]) for e in listed} == {
        ("agent", agent.name)}
    code, out, err = await _cli(daemon, "history", nb, "--actor", "human")
    assert code == 0 and "toolApprovalResolved" in out and "cellCreated" not in out


async def test_an_agent_cannot_approve(agent: Agent, rest: DaemonHTTP, daemon: DaemonProcess) -> None:
    nb, cell = await notebook_with_cell(agent, "1")
    impostor = AsyncSession(nb, actor={"id": f"agent:{agent.name}", "kind": "agent", "name": agent.name})
    other = AsyncSession(nb, actor={"id": "agent:someone-else", "kind": "agent", "name": "someone-else"})
    async with person_on(nb) as person:
        call = asyncio.create_task(agent.raw("execute_cell", notebook_id=nb, cell_id=cell))
        asked = await pending(person, "execute_cell")
        for session in (impostor, other):
            with pytest.raises(RuntimedError) as caught:
                await session.resolve_approval(asked["approval_id"], "approved")
            assert caught.value.code == "approval_self"
            await session.close()
        over_rest = httpx.post(f"{daemon.url}/api/notebooks/{nb}/approvals/{asked['approval_id']}",
                               json={"decision": "approved_always", "actor": {"id": "bot", "kind": "agent"}},
                               headers=daemon.endpoint.headers())
        assert over_rest.status_code == 403 and over_rest.json()["error"]["code"] == "approval_self"
        assert (await person.approvals())[0]["status"] == "pending"
        await person.resolve_approval(asked["approval_id"], "denied")
        assert (await asyncio.wait_for(call, 60)).is_error


async def test_edits_policy_shows_the_diff_and_runs_what_was_approved(agent: Agent) -> None:
    async with person_notebook("total = 1\nprint(total)\n", approvals="edits") as (person, cell):
        nb = person.notebook_id
        call = asyncio.create_task(agent.raw("replace_match", notebook_id=nb, cell_id=cell, match="total = 1",
                                             replacement="total = 2"))
        asked = await pending(person, "replace_match")
        assert "-total = 1\n+total = 2\n" in asked["arguments"]["preview"]
        await person.resolve_approval(asked["approval_id"])
        assert not (await asyncio.wait_for(call, 60)).is_error
        assert (await person.get_cell(cell)).source == "total = 2\nprint(total)\n"

        # what the person approved is what runs: an edit in between makes the approved call stale
        call = asyncio.create_task(agent.raw("set_cell", notebook_id=nb, cell_id=cell, source="total = 3\n"))
        asked = await pending(person, "set_cell")
        await person.set_source(cell, "total = 2  # alice\nprint(total)\n")

        async def agent_has_it() -> bool:
            return "# alice" in text_of(await agent.ok("get_notebook", notebook_id=nb))

        await eventually(agent_has_it, what="the agent's replica to get the person's edit")
        await person.resolve_approval(asked["approval_id"])
        stale = await asyncio.wait_for(call, 60)
        assert stale.structured_content["error"]["code"] == "stale_revision", text_of(stale)
        assert (await person.get_cell(cell)).source == "total = 2  # alice\nprint(total)\n"


async def test_all_policy_guards_reads_and_search(agent: Agent) -> None:
    async with person_notebook("secret = 42", approvals="all") as (person, cell):
        nb = person.notebook_id
        call = asyncio.create_task(agent.raw("get_cell", notebook_id=nb, cell_id=cell))
        asked = await pending(person, "get_cell")
        await person.resolve_approval(asked["approval_id"], "denied")
        assert (await asyncio.wait_for(call, 60)).structured_content["error"]["code"] == "approval_denied"
        found = await agent.ok("search_notebooks", query="secret", notebook_ids=[nb])
        assert found.structured_content["matches"] == [] and found.structured_content["skipped"] == [nb]
