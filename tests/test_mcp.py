"""The MCP server, driven by the ``mcp`` SDK's own client over stdio (``runt mcp``) and HTTP (``/mcp``).

A real daemon serves the module; every tool is called against real notebooks and real
kernels. Each test runs once per transport (a module-scoped client per transport).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import mcp_types as types
import nbformat
import pytest
from conftest import DaemonProcess, running_daemon
from mcp_clients import TRANSPORTS, Agent, eventually, mcp_client, text_of

from runtimed import AsyncSession
from runtimed.client.http import DaemonHTTP
from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.limits import DEFAULT_LIMITS

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

TOOL_NAMES = {
    "list_notebooks", "create_notebook", "open_notebook", "get_notebook", "get_cell", "create_cell", "set_cell",
    "replace_match", "replace_regex", "delete_cell", "move_cell", "execute_cell", "run_all_cells", "get_results",
    "interrupt_kernel", "restart_kernel", "export_notebook", "get_history", "notebook_at", "search_notebooks",
    "read_artifact",
}
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("mcp-home"), "--pool-size", "1") as proc:
        yield proc


@pytest.fixture(scope="module", params=TRANSPORTS)
async def agent(request: pytest.FixtureRequest, daemon: DaemonProcess) -> AsyncIterator[Agent]:
    name = f"test-agent-{request.param}"
    async with mcp_client(daemon, request.param, name) as session:
        yield Agent(session, name, request.param)


@pytest.fixture
def rest(daemon: DaemonProcess) -> Iterator[DaemonHTTP]:
    http = DaemonHTTP(daemon.endpoint)
    yield http
    http.close()


@pytest.fixture
async def nb(agent: Agent) -> str:
    result = await agent.ok("create_notebook", title="agent notebook")
    return result.structured_content["notebook_id"]


@pytest.fixture
async def human(nb: str) -> AsyncIterator[AsyncSession]:
    """A person on the agent's notebook (a second client); ends the notebook's kernel afterwards."""
    session = AsyncSession(nb, peer_label="alice")
    await session.connect()
    yield session
    active = session._active_session()
    if active is not None:
        with contextlib.suppress(RuntimedError):
            await session.client.commit([make_event("runtimeSessionEnded", session_id=active["session_id"],
                                                    reason="shutdown")])
    await session.close()


async def allow_all(agent: Agent, human: AsyncSession, nb: str) -> None:
    """Approval policy ``off`` (set by the person), once the agent's replica has it."""
    await human.set_metadata("runtimed", {"approvals": "off"})

    async def seen() -> bool:
        return "approval policy: off" in text_of(await agent.ok("get_notebook", notebook_id=nb, include_outputs=False))

    await eventually(seen, what="the agent to see the policy")


async def cell_ids(agent: Agent, nb: str) -> list[str]:
    result = await agent.ok("get_notebook", notebook_id=nb, include_outputs=False)
    return [c["id"] for c in result.structured_content["cells"]]


async def create(agent: Agent, nb: str, source: str, **args: Any) -> str:
    return (await agent.ok("create_cell", notebook_id=nb, source=source, **args)).structured_content["cell_id"]


def rev(source: str) -> str:
    return hashlib.sha256(source.encode()).hexdigest()[:12]


def events(rest: DaemonHTTP, nb: str) -> list[dict[str, Any]]:
    return rest.get(f"/api/notebooks/{nb}/events")["events"]


# --- the tool list -------------------------------------------------------------------------------


async def test_every_tool_is_listed_with_a_schema_and_a_description(agent: Agent) -> None:
    tools = (await agent.session.list_tools()).tools
    assert {t.name for t in tools} == TOOL_NAMES
    for t in tools:
        assert len(t.description or "") > 30, t.name
        assert t.input_schema["type"] == "object" and t.input_schema.get("additionalProperties") is False, t.name


# --- edits, reads, files, the past ---------------------------------------------------------------


async def test_edit_read_export_open_history_and_search(agent: Agent, nb: str, human: AsyncSession,
                                                        rest: DaemonHTTP, tmp_path: Path) -> None:
    listed = await agent.ok("list_notebooks")
    assert nb in [n["id"] for n in listed.structured_content["notebooks"]]
    a = await create(agent, nb, "x = 1")
    b = await create(agent, nb, "print(x)\n")
    c = await create(agent, nb, "# Title", cell_type="markdown", after_cell_id=a)
    assert await cell_ids(agent, nb) == [a, c, b]

    got = await agent.ok("get_cell", notebook_id=nb, cell_id=c)
    assert got.structured_content["source"] == "# Title" and got.structured_content["revision"] == rev("# Title")
    assert f"revision {rev('# Title')}" in text_of(got)

    await agent.ok("set_cell", notebook_id=nb, cell_id=c, source="# Heading", cell_type="raw",
                   expected_revision=rev("# Title"))
    await eventually(lambda: _source_is(human, c, "# Heading"), what="the person to see the edit")
    assert (await human.get_cell(c)).cell_type == "raw"

    edited = await agent.ok("replace_match", notebook_id=nb, cell_id=b, match="x", replacement="x + 1")
    assert "-print(x)" in text_of(edited) and "+print(x + 1)" in text_of(edited)
    assert edited.structured_content["revision"] == rev("print(x + 1)\n")
    await agent.fails("replace_match", "no_match", notebook_id=nb, cell_id=a, match="absent", replacement="y")
    await create(agent, nb, "x = x + x")
    await agent.ok("replace_regex", notebook_id=nb, cell_id=a, pattern=r"(\w+) = (\d+)", replacement=r"\1 = \2 * 10")
    assert (await agent.ok("get_cell", notebook_id=nb, cell_id=a)).structured_content["source"] == "x = 1 * 10"

    await agent.ok("move_cell", notebook_id=nb, cell_id=b)
    await agent.ok("move_cell", notebook_id=nb, cell_id=a, after_cell_id=b)
    ids = await cell_ids(agent, nb)
    assert ids[:3] == [b, a, c]
    await agent.ok("delete_cell", notebook_id=nb, cell_id=ids[3])
    before_delete = max(e["seq"] for e in events(rest, nb))
    await agent.ok("delete_cell", notebook_id=nb, cell_id=c, expected_revision=rev("# Heading"))
    assert await cell_ids(agent, nb) == [b, a]

    # files: export (ipynb and YAML), refuse to overwrite, open them again as new notebooks
    path = tmp_path / "out.ipynb"
    written = await agent.ok("export_notebook", notebook_id=nb, path=str(path))
    assert written.structured_content["path"] == str(path)
    assert [cell.source for cell in nbformat.read(path, as_version=4).cells] == ["print(x + 1)\n", "x = 1 * 10"]
    await agent.fails("export_notebook", "notebook_exists", notebook_id=nb, path=str(path))
    yaml_path = tmp_path / "out.yaml"
    await agent.ok("export_notebook", notebook_id=nb, path=str(yaml_path))
    for source in (path, yaml_path):
        opened = await agent.ok("open_notebook", path=str(source))
        copy = opened.structured_content["notebook_id"]
        got = await agent.ok("get_notebook", notebook_id=copy)
        assert "x = 1 * 10" in text_of(got) and len(got.structured_content["cells"]) == 2
    await agent.fails("open_notebook", "not_found", path=str(tmp_path / "missing.ipynb"))

    # the past: history filtered by actor and event, the notebook before the deletion
    history = await agent.ok("get_history", notebook_id=nb, actor_kind="agent", limit=1000)
    mine = history.structured_content["events"]
    assert mine and all(e["actor"]["kind"] == "agent" and e["actor"]["name"] == agent.name for e in mine)
    assert f"by {agent.name} (agent)" in text_of(history)
    deleted = await agent.ok("get_history", notebook_id=nb, event="cellDeleted", cell_id=c)
    assert [e["args"]["cellId"] for e in deleted.structured_content["events"]] == [c]
    people = await agent.ok("get_history", notebook_id=nb, actor_kind="human")
    assert people.structured_content["events"] == []
    past = await agent.ok("notebook_at", notebook_id=nb, seq=before_delete)
    assert c in [x["id"] for x in past.structured_content["cells"]] and "# Heading" in text_of(past)
    await agent.fails("notebook_at", "invalid_seq", notebook_id=nb, seq=10**6)

    found = await agent.ok("search_notebooks", query="X + 1", notebook_ids=[nb])
    assert [(m["cell_id"], m["where"]) for m in found.structured_content["matches"]] == [(b, "source")]


async def _source_is(session: AsyncSession, cell_id: str, source: str) -> bool:
    return (await session.get_cell(cell_id)).source == source


async def test_export_inlines_outputs_stored_as_artifacts(agent: Agent, rest: DaemonHTTP, tmp_path: Path) -> None:
    import json

    html = "<p>" + "imported " * 40_000 + "</p>"  # over the artifact threshold: stored as an artifact on import
    source = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "id": "c1", "cell_type": "code", "source": "x", "metadata": {}, "execution_count": 1,
        "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"text/html": html}}]}]}
    nb = f"mcp-artifacts-{agent.transport}"
    rest.request("POST", "/api/notebooks/import", params={"id": nb}, content=json.dumps(source))
    (stored,) = [e["args"]["data"]["text/html"] for e in events(rest, nb) if e["name"] == "outputAdded"]
    assert "artifact" in stored and stored["size"] == len(html)  # the log holds a reference, not the text
    path = tmp_path / "exported.ipynb"
    await agent.ok("export_notebook", notebook_id=nb, path=str(path))
    (output,) = nbformat.read(path, as_version=4).cells[0].outputs
    assert output.data["text/html"] == html


async def test_ids_stay_valid_while_a_person_inserts_cells_above(agent: Agent, nb: str, human: AsyncSession) -> None:
    a = await create(agent, nb, "a = 1")
    b = await create(agent, nb, "b = 2")
    for i in range(3):
        await human.create_cell(f"# person {i}", "markdown", index=0)
    await agent.ok("set_cell", notebook_id=nb, cell_id=b, source="b = 3")
    new = await create(agent, nb, "between = True", after_cell_id=a)
    await eventually(lambda: _source_is(human, b, "b = 3"), what="the person to see the edit")
    order = [c.source for c in await human.get_cells()]
    assert order == ["# person 2", "# person 1", "# person 0", "a = 1", "between = True", "b = 3"]
    assert (await agent.ok("get_cell", notebook_id=nb, cell_id=new)).structured_content["source"] == "between = True"


async def test_a_stale_edit_is_refused_with_the_current_source(agent: Agent, nb: str, human: AsyncSession) -> None:
    a = await create(agent, nb, "value = 1")
    read = (await agent.ok("get_cell", notebook_id=nb, cell_id=a)).structured_content["revision"]
    await human.set_source(a, "value = 2  # alice's fix")

    async def agent_sees() -> bool:
        return (await agent.ok("get_cell", notebook_id=nb, cell_id=a)).structured_content["revision"] != read

    await eventually(agent_sees, what="the agent's replica to get the person's edit")
    for tool, args in (("set_cell", {"source": "value = 3"}),
                       ("replace_match", {"match": "value", "replacement": "v"}),
                       ("replace_regex", {"pattern": "v.*", "replacement": "v"}),
                       ("delete_cell", {}),
                       ("execute_cell", {})):
        message = await agent.fails(tool, "stale_revision", notebook_id=nb, cell_id=a, expected_revision=read, **args)
        assert "value = 2  # alice's fix" in message and rev("value = 2  # alice's fix") in message, tool
    assert (await human.get_cell(a)).source == "value = 2  # alice's fix"
    await agent.ok("set_cell", notebook_id=nb, cell_id=a, source="value = 3", expected_revision=rev(
        "value = 2  # alice's fix"))
    await eventually(lambda: _source_is(human, a, "value = 3"), what="the person to see the agent's edit")


# --- execution -----------------------------------------------------------------------------------


async def test_execution_outputs_for_models(agent: Agent, nb: str, human: AsyncSession) -> None:
    await allow_all(agent, human, nb)
    code = await create(agent, nb, "print('hello from the kernel'); 40 + 2")
    result = await agent.ok("execute_cell", notebook_id=nb, cell_id=code)
    assert result.structured_content["done"] and result.structured_content["executions"][0]["status"] == "success"
    assert "hello from the kernel" in text_of(result) and "42" in text_of(result)

    failing = await create(agent, nb, "def f():\n    return 1 / 0\nf()")
    failed = await agent.ok("execute_cell", notebook_id=nb, cell_id=failing)
    assert failed.structured_content["executions"][0]["status"] == "error"
    assert "ZeroDivisionError: division by zero" in text_of(failed) and "return 1 / 0" in text_of(failed)
    assert "\x1b" not in text_of(failed)

    shows = await create(agent, nb, (
        "from IPython.display import Image, display\nimport base64\n"
        f"display(Image(data=base64.b64decode('{PNG}')))\n"
        "display({'text/html': '<table><tr><td>alpha</td><td>beta</td></tr></table><script>evil()</script>'}, raw=True)\n"
        "display({'text/markdown': '**bold** words'}, raw=True)"))
    shown = await agent.ok("execute_cell", notebook_id=nb, cell_id=shows)
    images = [c for c in shown.content if isinstance(c, types.ImageContent)]
    assert [(i.mime_type, base64.b64decode(i.data)) for i in images] == [("image/png", base64.b64decode(PNG))]
    assert "alpha\tbeta" in text_of(shown) and "evil" not in text_of(shown) and "**bold** words" in text_of(shown)

    long = await create(agent, nb, "print('\\n'.join(f'line {i:05d}' for i in range(20000)))")
    head_tail = text_of(await agent.ok("execute_cell", notebook_id=nb, cell_id=long))
    assert "line 00000" in head_tail and "line 19999" in head_tail and "line 10000" not in head_tail
    assert "of 220,000 characters omitted" in head_tail and "output_offset=4000" in head_tail
    offset, pages = 4000, []
    while offset is not None:
        page = text_of(await agent.ok("get_cell", notebook_id=nb, cell_id=long, output_offset=offset))
        pages.append(page)
        more = re.search(r"read on with output_offset=(\d+)", page)
        offset = int(more.group(1)) if more else None
    assert len(pages) == 5 and "line 10000" in "".join(pages) and "line 19999" in pages[-1]
    full = text_of(await agent.ok("get_cell", notebook_id=nb, cell_id=long, full_output=True))
    assert "line 00000" in full and "characters 0-50,000 of 220,000" in full

    found = await agent.ok("search_notebooks", query="hello from the KERNEL", notebook_ids=[nb])
    assert {(m["cell_id"], m["where"]) for m in found.structured_content["matches"]} == {(code, "source"),
                                                                                          (code, "output")}


async def test_a_long_cell_returns_partial_output_and_get_results_gets_the_rest(
        agent: Agent, nb: str, human: AsyncSession) -> None:
    await allow_all(agent, human, nb)
    warm = await create(agent, nb, "import time")
    await agent.ok("execute_cell", notebook_id=nb, cell_id=warm)
    slow = await create(agent, nb, "for i in range(12):\n    print(f'tick {i}', flush=True)\n    time.sleep(1)")
    agent.progress.clear()
    partial = await agent.ok("execute_cell", notebook_id=nb, cell_id=slow, timeout=3)
    status = partial.structured_content
    assert not status["done"] and status["executions"][0]["status"] == "running"
    assert "tick 0" in text_of(partial) and "tick 11" not in text_of(partial)
    assert "get_results" in text_of(partial) and status["execution_id"] in text_of(partial)
    assert agent.progress and all(total == 1 for _, total, _ in agent.progress)
    rest = await agent.ok("get_results", notebook_id=nb, execution_id=status["execution_id"], timeout=60)
    assert rest.structured_content["done"] and rest.structured_content["executions"][0]["status"] == "success"
    assert "tick 0" in text_of(rest) and "tick 11" in text_of(rest)
    await agent.fails("get_results", "execution_not_found", notebook_id=nb, execution_id="q-nope")


async def test_run_all_cells_stops_at_an_error(agent: Agent, nb: str, human: AsyncSession) -> None:
    await allow_all(agent, human, nb)
    for source in ("a = 1", "raise ValueError('boom')", "b = 2"):
        await create(agent, nb, source)
    await create(agent, nb, "notes", cell_type="markdown")
    ran = await agent.ok("run_all_cells", notebook_id=nb)
    statuses = [e["status"] for e in ran.structured_content["executions"]]
    assert statuses == ["success", "error", "cancelled"] and "ValueError: boom" in text_of(ran)
    again = await agent.ok("get_results", notebook_id=nb, execution_id=ran.structured_content["execution_id"])
    assert [e["status"] for e in again.structured_content["executions"]] == statuses


async def test_interrupt_and_restart_the_kernel(agent: Agent, nb: str, human: AsyncSession) -> None:
    await allow_all(agent, human, nb)
    first = await create(agent, nb, "x = 41")
    await agent.ok("execute_cell", notebook_id=nb, cell_id=first)
    await agent.ok("restart_kernel", notebook_id=nb)
    probe = await create(agent, nb, "x")
    gone = await agent.ok("execute_cell", notebook_id=nb, cell_id=probe)
    assert "NameError" in text_of(gone)
    sleeper = await create(agent, nb, "import time\nprint('sleeping', flush=True)\ntime.sleep(120)")

    async def running() -> dict[str, Any]:
        partial = await agent.ok("execute_cell", notebook_id=nb, cell_id=sleeper, timeout=5)
        return partial.structured_content if "sleeping" in text_of(partial) else {}

    started = await running()
    assert started, "the cell did not start within its 5 s bound"
    await agent.ok("interrupt_kernel", notebook_id=nb)
    stopped = await agent.ok("get_results", notebook_id=nb, execution_id=started["execution_id"], timeout=30)
    assert stopped.structured_content["executions"][0]["status"] == "error" and "KeyboardInterrupt" in text_of(stopped)


# --- bad input -----------------------------------------------------------------------------------


async def test_bad_input_gets_clear_errors_and_stores_nothing(agent: Agent, nb: str, human: AsyncSession,
                                                              rest: DaemonHTTP) -> None:
    a = await create(agent, nb, "a = 1")
    head = views.notebook_info(human.client.replica.conn)["head_seq"]
    notebooks = {n["id"] for n in rest.get("/api/notebooks")}
    for tool, args in (("get_cell", {}), ("set_cell", {"source": "x"}), ("replace_match", {"match": "a", "replacement": "b"}),
                       ("delete_cell", {}), ("move_cell", {}), ("execute_cell", {})):
        message = await agent.fails(tool, "cell_not_found", notebook_id=nb, cell_id="c-missing", **args)
        assert "c-missing" in message and "get_notebook" in message
    await agent.fails("create_cell", "cell_not_found", notebook_id=nb, source="x", after_cell_id="c-missing")
    await agent.fails("move_cell", "cell_not_found", notebook_id=nb, cell_id=a, after_cell_id="c-missing")
    bad = await agent.fails("replace_regex", "invalid_regex", notebook_id=nb, cell_id=a, pattern="(unclosed",
                            replacement="x")
    assert "(unclosed" in bad and "missing )" in bad
    await agent.fails("replace_regex", "invalid_regex", notebook_id=nb, cell_id=a, pattern="a", replacement=r"\9")
    huge = "x" * (DEFAULT_LIMITS.max_source_chars + 1)
    message = await agent.fails("set_cell", "invalid_arguments", notebook_id=nb, cell_id=a, source=huge)
    assert "source" in message and f"{DEFAULT_LIMITS.max_source_chars}" in message
    await agent.fails("create_cell", "invalid_arguments", notebook_id=nb, source=huge)
    await agent.fails("set_cell", "invalid_arguments", notebook_id=nb, cell_id=a)
    unknown = await agent.fails("get_cell", "invalid_arguments", notebook_id=nb, cell_id=a, colour="red")
    assert "colour: unknown argument" in unknown
    await agent.fails("no_such_tool", "unknown_tool")
    for tool, args in (("get_notebook", {}), ("create_cell", {"source": "x"}), ("execute_cell", {"cell_id": a}),
                       ("get_history", {})):
        message = await agent.fails(tool, "notebook_not_found", notebook_id="no-such-notebook", **args)
        assert "no-such-notebook" in message and "list_notebooks" in message
    await agent.fails("get_notebook", "notebook_not_found", notebook_id="../../etc/passwd")
    # nothing stored: same head, no approval asked, no notebook created
    assert (await agent.ok("get_notebook", notebook_id=nb)).structured_content["head_seq"] == head
    assert await human.approvals(pending_only=False) == []
    assert {n["id"] for n in rest.get("/api/notebooks")} == notebooks


def test_the_http_endpoint_needs_the_bearer_token(daemon: DaemonProcess) -> None:
    import httpx

    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
    for headers, params in (({}, {}), ({"Authorization": "Bearer wrong"}, {}), ({}, {"token": daemon.token})):
        response = httpx.post(f"{daemon.url}/mcp", json=body, headers=headers, params=params, timeout=10)
        assert response.status_code == 401, (headers, params, response.text)
        assert response.json()["error"]["code"] == "unauthorized"
