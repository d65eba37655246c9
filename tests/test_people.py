"""People and roles: every route and every pushed event is checked against the caller's role, and the
actor of every event is bound to the caller's token."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import websockets
from conftest import DaemonProcess, running_daemon

from runtimed.errors import ExitCode
from runtimed.schema.events import make_event

OWNER_ACTOR = {"id": "owner-script", "kind": "human", "name": "owner"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("home"), "--no-runtimes") as proc:
        yield proc


def client(daemon: DaemonProcess, token: str) -> httpx.Client:
    return httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


@pytest.fixture(scope="module")
def owner(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with client(daemon, daemon.token) as c:
        for nb in ("team", "private"):
            assert c.post("/api/notebooks", json={"id": nb, "title": nb}).status_code == 201
            c.post(f"/api/notebooks/{nb}/events", json={"events": [make_event(
                "cellCreated", cell_id="c1", cell_type="code", fractional_index="a0", source="1")],
                "actor": OWNER_ACTOR})
        yield c


def add(owner: httpx.Client, name: str, **body: object) -> str:
    r = owner.post("/api/people", json={"name": name, **body})
    assert r.status_code == 201, r.text
    return r.json()["token"]


def push(c: httpx.Client, nb: str, *events: dict, actor: dict | None = None) -> list[dict]:
    r = c.post(f"/api/notebooks/{nb}/events", json={"events": list(events), "actor": actor})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def cell(cell_id: str, source: str = "") -> dict:
    return make_event("cellCreated", cell_id=cell_id, cell_type="code", fractional_index="a" + cell_id[-1], source=source)


def head(owner: httpx.Client, nb: str) -> int:
    return owner.get(f"/api/notebooks/{nb}").json()["head_seq"]


def test_a_viewer_reads_and_changes_nothing(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "vera", role="viewer")
    before = head(owner, "team")
    with client(daemon, token) as vera:
        assert vera.get("/api/notebooks/team").status_code == 200
        assert vera.get("/api/notebooks/team/export").status_code == 200
        results = push(vera, "team", cell("c9"), make_event("executionRequested", queue_id="q-v", cell_id="c1"))
        assert [r["error"]["code"] for r in results] == ["forbidden", "forbidden"]
        assert "vera" in results[0]["error"]["message"]
        assert vera.delete("/api/notebooks/team").status_code == 403
        assert vera.post("/api/notebooks", json={"id": "mine"}).status_code == 403
        assert vera.post("/api/shutdown").status_code == 403
    assert head(owner, "team") == before


def test_a_runner_runs_but_does_not_edit(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "rudi", role="runner")
    with client(daemon, token) as rudi:
        edit, run = push(rudi, "team", cell("c8"), make_event("executionRequested", queue_id="q-r", cell_id="c1"))
        assert edit["error"]["code"] == "forbidden" and "seq" in run
        events = owner.get("/api/notebooks/team/events", params={"since": run["seq"] - 1}).json()["events"]
        assert events[0]["name"] == "executionRequested" and events[0]["actor"]["id"].startswith("rudi")


def test_an_editor_edits_and_the_actor_is_bound_to_the_token(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "edna", role="editor")
    with client(daemon, token) as edna:
        # claims to be somebody else, of another kind: recorded as edna all the same
        (result,) = push(edna, "team", cell("c7", "by edna"), actor={"id": "runtimed", "kind": "system", "name": "x"})
        assert "seq" in result
        (event,) = owner.get("/api/notebooks/team/events", params={"since": result["seq"] - 1}).json()["events"]
        assert event["actor"] == {"id": "edna:runtimed", "kind": "human", "name": "edna"}
        # outputs and claims are a runtime's, not an editor's
        forged = make_event("outputAdded", output_id="o-f", cell_id="c1", output_type="stream", name="stdout",
                            text="forged")
        assert push(edna, "team", forged)[0]["error"]["code"] == "forbidden"
        assert edna.delete("/api/notebooks/team").status_code == 403
        assert edna.post("/api/notebooks", json={"id": "ednas"}).status_code == 201


def test_per_notebook_roles_and_listing(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "agent-7", kind="agent", notebooks={"team": "editor"})
    with client(daemon, token) as agent:
        ids = {nb["id"] for nb in agent.get("/api/notebooks").json()}
        assert ids == {"team"}
        assert agent.get("/api/notebooks/private").status_code == 403
        assert push(agent, "private", cell("c6"))[0]["error"]["code"] == "forbidden"
        (result,) = push(agent, "team", cell("c5"))
        (event,) = owner.get("/api/notebooks/team/events", params={"since": result["seq"] - 1}).json()["events"]
        assert event["actor"]["kind"] == "agent" and event["actor"]["id"].startswith("agent-7")
        assert agent.get("/api/whoami").json()["notebooks"] == {"team": "editor"}


def test_the_sync_protocol_enforces_the_same_roles(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "wes", role="viewer")
    url = daemon.url.replace("http", "ws") + "/api/notebooks/team/sync"

    async def main() -> tuple[dict, dict]:
        async with websockets.connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(json.dumps({"type": "hello", "since": 0, "actor": {"id": "someone", "kind": "runtime"}}))
            welcome = None
            while True:
                message = json.loads(await asyncio.wait_for(ws.recv(), 30))
                if message["type"] == "welcome":
                    welcome = message
                    await ws.send(json.dumps({"type": "push", "ref": 1, "events": [cell("c4")]}))
                elif message["type"] == "ack":
                    assert welcome is not None
                    return welcome, message

    welcome, ack = asyncio.run(main())
    assert welcome["actor"] == {"id": "wes:someone", "kind": "human", "name": "wes"}
    assert ack["results"][0]["error"]["code"] == "forbidden"

    async def nobody() -> int | None:
        async with websockets.connect(url.replace("/team/", "/private/"),
                                      additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(json.dumps({"type": "hello", "since": 0, "actor": {"id": "w", "kind": "human"}}))
            try:
                while True:
                    await asyncio.wait_for(ws.recv(), 30)
            except websockets.ConnectionClosed as exc:
                return exc.rcvd.code if exc.rcvd else None

    other = add(owner, "wes2", notebooks={"team": "viewer"})
    token = other
    assert asyncio.run(nobody()) == 4403


def test_share_links_are_read_only_and_revocable(daemon: DaemonProcess, owner: httpx.Client) -> None:
    link = owner.post("/api/notebooks/team/shares").json()
    assert link["url"].endswith(f"?notebook=team&token={link['token']}")
    with client(daemon, link["token"]) as guest:
        assert guest.get("/api/notebooks/team").status_code == 200
        assert guest.get("/api/notebooks/private").status_code == 403
        assert push(guest, "team", cell("c3"))[0]["error"]["code"] == "forbidden"
        assert owner.delete(f"/api/people/{link['name']}").status_code == 200
        assert guest.get("/api/notebooks/team").status_code == 401


def test_only_the_owner_manages_people(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "eve", role="editor")
    with client(daemon, token) as eve:
        assert eve.get("/api/people").status_code == 403
        assert eve.post("/api/people", json={"name": "mallory", "role": "owner"}).status_code == 403
        assert eve.post("/api/notebooks/team/shares").status_code == 403
    assert owner.post("/api/people", json={"name": "eve", "role": "viewer"}).status_code == 409
    bad = owner.post("/api/people", json={"name": "x y", "role": "viewer"})
    assert bad.status_code == 422 and "invalid name" in bad.json()["error"]["message"]
    tokens = (daemon.home.path / "people.json").read_text()
    assert token not in tokens and oct((daemon.home.path / "people.json").stat().st_mode)[-3:] == "600"


def test_runt_users_and_share(daemon: DaemonProcess) -> None:
    env = {**os.environ, "RUNTIMED_HOME": str(daemon.home.path)}
    env.pop("RUNTIMED_URL", None)
    env.pop("RUNTIMED_TOKEN", None)

    def runt(*args: str, token: str | None = None) -> subprocess.CompletedProcess:
        extra = {"RUNTIMED_TOKEN": token} if token else {}
        return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env={**env, **extra},
                              capture_output=True, text=True, timeout=60)

    added = runt("users", "add", "cli-ann", "--notebook", "team=runner")
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip()
    listing = runt("users", "list", "--json")
    assert any(p["name"] == "cli-ann" and p["notebooks"] == {"team": "runner"} for p in json.loads(listing.stdout))
    assert token not in listing.stdout
    assert runt("users", "add", "bad", "--notebook", "team=boss").returncode == ExitCode.USAGE
    # the new token works, within its role
    assert runt("notebooks", "--json", token=token).returncode == 0
    assert runt("users", "list", token=token).returncode == ExitCode.REFUSED
    shared = runt("share", "team")
    assert shared.returncode == 0 and "token=" in shared.stdout
    assert runt("users", "rm", "cli-ann").returncode == 0
    assert runt("notebooks", token=token).returncode == ExitCode.REFUSED


def test_a_fresh_browser_can_sign_in_from_a_live_url(daemon: DaemonProcess, owner: httpx.Client) -> None:
    token = add(owner, "pia", role="viewer")
    with httpx.Client(base_url=daemon.url, timeout=30) as browser:
        page = browser.get("/", params={"notebook": "team"})
        assert page.status_code == 401 and '<form method="get" action="/">' in page.text
        assert '<input type="hidden" name="notebook" value="team">' in page.text
        assert "form-action 'self'" in page.headers["content-security-policy"]
        wrong = browser.get("/", params={"notebook": "team", "token": "nope"})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        signed = browser.get("/", params={"notebook": "team", "token": token})
        assert signed.status_code == 303 and signed.headers["location"] == "/?notebook=team"
        assert browser.get("/", params={"notebook": "team"}).status_code == 200  # the cookie signs it in
