"""The REST API of a real daemon: every route, its errors, and token auth on all of them."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import BENCH_NOTEBOOKS, DaemonProcess, running_daemon
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica
from runtimed.server.auth import cookie_name

ALICE = {"id": "alice", "kind": "human", "name": "Alice"}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    """One daemon without runtimes for the whole module (each test uses notebooks of its own)."""
    home = tmp_path_factory.mktemp("rest") / "home"
    home.mkdir()
    with running_daemon(home, "--no-runtimes") as proc:
        yield proc


@pytest.fixture
def api(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30) as c:
        yield c


@pytest.fixture
def anon(daemon: DaemonProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=daemon.url, timeout=30) as c:
        yield c


@pytest.fixture
def nb(request: pytest.FixtureRequest) -> str:
    """A notebook id of this test's own."""
    return "nb-" + re.sub(r"[^A-Za-z0-9]+", "-", request.node.name).strip("-")[:100]


def cell(cell_id: str, source: str = "", after: str | None = None) -> dict[str, Any]:
    return make_event("cellCreated", cellId=cell_id, cellType="code", fractionalIndex=key_between(after, None),
                      source=source)


def push(api: httpx.Client, notebook_id: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    r = api.post(f"/api/notebooks/{notebook_id}/events", json={"events": events})
    assert r.status_code == 200, r.text
    return r.json()["results"]


def create(api: httpx.Client, notebook_id: str, title: str = "T", **extra: Any) -> dict[str, Any]:
    r = api.post("/api/notebooks", json={"id": notebook_id, "title": title, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def assert_error(r: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    error = r.json()["error"]
    assert error["code"] == code and error["message"]
    return error


def with_cells(api: httpx.Client, notebook_id: str) -> list[dict[str, Any]]:
    """A notebook with two cells and some metadata: 5 events."""
    create(api, notebook_id)
    a = cell("a", "print(1)")
    b = cell("b", "x = 2", after=a["args"]["fractionalIndex"])
    results = push(api, notebook_id, [a, b, make_event("cellMetadataSet", cellId="a", key="tags", value=["p"]),
                                      make_event("notebookMetadataSet", key="kernelspec", value={"name": "python3"})])
    assert [r["seq"] for r in results] == [2, 3, 4, 5]
    return results


# -- daemon ----------------------------------------------------------------------------------------


def test_health_needs_no_token(anon: httpx.Client) -> None:
    r = anon.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["version"]


def test_status(api: httpx.Client, daemon: DaemonProcess) -> None:
    status = api.get("/api/status").json()
    assert status["pid"] == daemon.proc.pid and status["url"] == daemon.url
    assert status["home"] == str(daemon.home.path) and status["uptime_s"] >= 0
    assert {"version", "started_at", "notebooks", "open_notebooks", "connections", "runtimes"} <= status.keys()


def test_openapi_lists_the_routes(api: httpx.Client) -> None:
    spec = api.get("/openapi.json").json()
    paths = spec["paths"]
    expected = {
        "/health": {"get"},
        "/api/status": {"get"},
        "/api/shutdown": {"post"},
        "/api/notebooks": {"get", "post"},
        "/api/notebooks/{notebook_id}": {"get", "delete"},
        "/api/notebooks/import": {"post"},
        "/api/notebooks/{notebook_id}/export": {"get"},
        "/api/notebooks/{notebook_id}/events": {"get", "post"},
        "/api/notebooks/{notebook_id}/snapshot": {"get"},
        "/api/notebooks/{notebook_id}/query": {"post"},
        "/api/notebooks/{notebook_id}/peers": {"get"},
    }
    for path, methods in expected.items():
        assert path in paths, path
        assert methods <= set(paths[path]), (path, set(paths[path]))
    params = {p["name"] for p in paths["/api/notebooks/{notebook_id}/events"]["get"]["parameters"]}
    assert {"since", "until"} <= params


# -- notebooks -------------------------------------------------------------------------------------


def test_create_list_get_delete(api: httpx.Client, nb: str) -> None:
    info = create(api, nb, "My notebook", kernelspec={"name": "python3", "display_name": "Python 3"})
    assert info["id"] == nb and info["title"] == "My notebook" and info["head_seq"] == 1 and info["cells"] == 0
    listed = {item["id"]: item for item in api.get("/api/notebooks").json()}
    assert listed[nb]["title"] == "My notebook" and listed[nb]["peers"] == []
    view = api.get(f"/api/notebooks/{nb}").json()
    assert view["id"] == nb and view["cells"] == [] and view["head_seq"] == 1
    assert api.delete(f"/api/notebooks/{nb}").json() == {"deleted": nb}
    assert_error(api.get(f"/api/notebooks/{nb}"), 404, "notebook_not_found")
    assert nb not in {item["id"] for item in api.get("/api/notebooks").json()}
    assert_error(api.delete(f"/api/notebooks/{nb}"), 404, "notebook_not_found")
    create(api, nb, "again")  # the id is free again
    assert api.get(f"/api/notebooks/{nb}").json()["title"] == "again"


def test_create_without_id_generates_one(api: httpx.Client) -> None:
    info = create(api, None, "anonymous")  # type: ignore[arg-type]
    assert info["id"].startswith("nb-")
    assert api.get(f"/api/notebooks/{info['id']}").json()["title"] == "anonymous"


def test_create_with_actor_records_it(api: httpx.Client, nb: str) -> None:
    create(api, nb, actor={"id": "bot", "kind": "automation", "name": "Bot"})
    [event] = api.get(f"/api/notebooks/{nb}/events").json()["events"]
    assert event["actor"] == {"id": "bot", "kind": "automation", "name": "Bot"}


def test_duplicate_id_is_409(api: httpx.Client, nb: str) -> None:
    create(api, nb)
    error = assert_error(api.post("/api/notebooks", json={"id": nb}), 409, "notebook_exists")
    assert nb in error["message"]


@pytest.mark.parametrize("bad", ["-dash-first", "has space", "x" * 129, "semi;colon", "dot/slash"])
def test_invalid_id_is_400(api: httpx.Client, bad: str) -> None:
    error = assert_error(api.post("/api/notebooks", json={"id": bad}), 400, "invalid_notebook_id")
    assert "letters, digits" in error["message"]


@pytest.mark.parametrize("bad", ["-dash-first", "has%20space", "x" * 129, "semi;colon"])
def test_invalid_id_in_path_is_400(api: httpx.Client, bad: str) -> None:
    assert_error(api.get(f"/api/notebooks/{bad}"), 400, "invalid_notebook_id")
    assert_error(api.get(f"/api/notebooks/{bad}/events"), 400, "invalid_notebook_id")
    assert_error(api.post(f"/api/notebooks/{bad}/events", json={"events": []}), 400, "invalid_notebook_id")


@pytest.mark.parametrize("route", ["", "/events", "/snapshot", "/peers", "/export"])
def test_unknown_notebook_is_404(api: httpx.Client, route: str) -> None:
    error = assert_error(api.get(f"/api/notebooks/no-such-notebook{route}"), 404, "notebook_not_found")
    assert "no-such-notebook" in error["message"]


def test_unknown_notebook_query_and_delete_are_404(api: httpx.Client) -> None:
    assert_error(api.post("/api/notebooks/no-such-notebook/query", json={"sql": "SELECT 1"}), 404, "notebook_not_found")
    assert_error(api.delete("/api/notebooks/no-such-notebook"), 404, "notebook_not_found")


def test_invalid_body_is_422_with_message(api: httpx.Client) -> None:
    error = assert_error(api.post("/api/notebooks", json={"title": 5}), 422, "invalid_request")
    assert "title" in error["message"]
    assert_error(api.post("/api/notebooks", content=b"{not json", headers={"content-type": "application/json"}),
                 422, "invalid_request")


def test_get_state_now_and_at_seq(api: httpx.Client, nb: str) -> None:
    with_cells(api, nb)
    push(api, nb, [make_event("cellDeleted", cellId="a")])
    now = api.get(f"/api/notebooks/{nb}").json()
    assert [c["id"] for c in now["cells"]] == ["b"] and now["head_seq"] == 6
    assert now["metadata"] == {"kernelspec": {"name": "python3"}}
    at3 = api.get(f"/api/notebooks/{nb}", params={"at": 3}).json()
    assert [(c["id"], c["source"]) for c in at3["cells"]] == [("a", "print(1)"), ("b", "x = 2")]
    assert at3["head_seq"] == 3 and at3["metadata"] == {} and at3["cells"][0]["metadata"] == {}
    at4 = api.get(f"/api/notebooks/{nb}", params={"at": 4}).json()
    assert at4["cells"][0]["metadata"] == {"tags": ["p"]}
    assert api.get(f"/api/notebooks/{nb}", params={"at": 1}).json()["cells"] == []
    assert api.get(f"/api/notebooks/{nb}", params={"at": 1000}).json() == now  # past the head: now
    assert_error(api.get(f"/api/notebooks/{nb}", params={"at": -1}), 422, "invalid_request")


def test_events_since_until_limit(api: httpx.Client, nb: str) -> None:
    with_cells(api, nb)
    body = api.get(f"/api/notebooks/{nb}/events").json()
    assert body["head"] == 5 and [e["seq"] for e in body["events"]] == [1, 2, 3, 4, 5]
    first = body["events"][0]
    assert first["name"] == "notebookCreated" and first["v"] == 1 and first["id"] and first["ts"].endswith("Z")
    assert first["actor"]["id"] == "rest"
    seqs = [e["seq"] for e in api.get(f"/api/notebooks/{nb}/events", params={"since": 2}).json()["events"]]
    assert seqs == [3, 4, 5]
    seqs = [e["seq"] for e in api.get(f"/api/notebooks/{nb}/events", params={"since": 1, "until": 3}).json()["events"]]
    assert seqs == [2, 3]
    seqs = [e["seq"] for e in api.get(f"/api/notebooks/{nb}/events", params={"since": 1, "limit": 2}).json()["events"]]
    assert seqs == [2, 3]
    assert api.get(f"/api/notebooks/{nb}/events", params={"since": 5}).json() == {"head": 5, "events": []}
    assert_error(api.get(f"/api/notebooks/{nb}/events", params={"since": -1}), 422, "invalid_request")
    assert_error(api.get(f"/api/notebooks/{nb}/events", params={"limit": 0}), 422, "invalid_request")


def test_post_events_ok_rejected_and_idempotent(api: httpx.Client, nb: str) -> None:
    create(api, nb)
    good = cell("c1", "1")
    bad = make_event("cellDeleted", cellId="missing")
    results = push(api, nb, [good, bad, {"id": "x1", "name": "bogus", "v": 1, "args": {}}, "not an event"])
    assert results[0] == {"id": good["id"], "seq": 2}
    assert results[1]["error"]["code"] == "cell_not_found"
    assert results[2]["error"]["code"] == "unknown_event"
    assert results[3]["error"]["code"] == "invalid_event"
    assert push(api, nb, [good]) == [{"id": good["id"], "seq": 2}]  # a retry does not duplicate
    assert api.get(f"/api/notebooks/{nb}/events").json()["head"] == 2


def test_post_events_with_actor(api: httpx.Client, nb: str) -> None:
    create(api, nb)
    r = api.post(f"/api/notebooks/{nb}/events", json={"events": [cell("c1")], "actor": ALICE})
    assert r.json()["results"][0]["seq"] == 2
    assert api.get(f"/api/notebooks/{nb}/events", params={"since": 1}).json()["events"][0]["actor"] == ALICE


def test_post_events_creates_a_notebook_with_its_first_event(api: httpx.Client, nb: str) -> None:
    [result] = push(api, nb, [make_event("notebookCreated", title="by events")])
    assert result["seq"] == 1
    assert api.get(f"/api/notebooks/{nb}").json()["title"] == "by events"


def test_post_events_to_empty_notebook_needs_notebook_created(api: httpx.Client, nb: str) -> None:
    [result] = push(api, nb, [cell("c1")])
    assert result["error"]["code"] == "notebook_not_created"
    assert_error(api.get(f"/api/notebooks/{nb}"), 404, "notebook_not_found")
    create(api, nb)  # a rejected first push does not reserve the id


def test_snapshot_equals_replay(api: httpx.Client, nb: str) -> None:
    with_cells(api, nb)
    r = api.get(f"/api/notebooks/{nb}/snapshot")
    assert r.status_code == 200 and r.headers["content-type"] == "application/vnd.sqlite3"
    assert r.headers["x-runtimed-seq"] == "5"
    snap = Replica.from_snapshot(nb, r.content)
    replay = Replica(nb)
    replay.apply_wire(api.get(f"/api/notebooks/{nb}/events").json()["events"])
    assert snap.head == replay.head == 5 and snap.dump() == replay.dump()


def test_query_reads_and_refuses_writes(api: httpx.Client, nb: str) -> None:
    with_cells(api, nb)
    r = api.post(f"/api/notebooks/{nb}/query", json={"sql": "SELECT id, source FROM cells ORDER BY id"})
    assert r.json() == {"columns": ["id", "source"], "rows": [["a", "print(1)"], ["b", "x = 2"]],
                        "truncated": False}
    r = api.post(f"/api/notebooks/{nb}/query", json={"sql": "SELECT count(*) AS n FROM events WHERE seq > ?",
                                                     "params": [2]})
    assert r.json()["rows"] == [[3]]
    for sql in ("DELETE FROM cells", "UPDATE cells SET source = 'hacked'", "DROP TABLE cells",
                "INSERT INTO notebook_metadata VALUES ('k', '1')", "CREATE TABLE t (x)"):
        error = assert_error(api.post(f"/api/notebooks/{nb}/query", json={"sql": sql}), 403, "read_only")
        assert "read-only" in error["message"]
    assert_error(api.post(f"/api/notebooks/{nb}/query", json={"sql": "SELEC nonsense"}), 400, "sql_error")
    rows = api.post(f"/api/notebooks/{nb}/query", json={"sql": "SELECT source FROM cells ORDER BY id"}).json()["rows"]
    assert rows == [["print(1)"], ["x = 2"]]  # nothing changed


def test_peers_lists_sync_connections(api: httpx.Client, daemon: DaemonProcess, nb: str) -> None:
    create(api, nb)
    assert api.get(f"/api/notebooks/{nb}/peers").json() == []

    async def connected() -> list[dict[str, Any]]:
        url = f"ws{daemon.url[4:]}/api/notebooks/{nb}/sync"
        async with connect(url, additional_headers={"Authorization": f"Bearer {daemon.token}"}) as ws:
            await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE, "client": "rest-test"}).decode())
            await ws.send(orjson.dumps({"type": "presence", "cellId": "c7"}).decode())
            await ws.send(orjson.dumps({"type": "ping"}).decode())
            while orjson.loads(await ws.recv())["type"] != "pong":
                pass
            async with httpx.AsyncClient(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}) as c:
                return (await c.get(f"/api/notebooks/{nb}/peers")).json()

    [peer] = asyncio.run(connected())
    assert peer["actor"] == ALICE and peer["client"] == "rest-test" and peer["cellId"] == "c7" and peer["connectionId"]
    listed = {item["id"]: item for item in api.get("/api/notebooks").json()}
    assert listed[nb]["peers"] == []  # gone after the disconnect


def test_import_and_export_ipynb(api: httpx.Client, nb: str) -> None:
    pytest.importorskip("runtimed.formats")
    source = (BENCH_NOTEBOOKS / "seven.ipynb").read_bytes()
    r = api.post("/api/notebooks/import", params={"id": nb, "title": "Seven"}, content=source)
    assert r.status_code == 201, r.text
    info = r.json()
    assert info["id"] == nb and info["title"] == "Seven" and info["cells"] == len(json.loads(source)["cells"])
    assert_error(api.post("/api/notebooks/import", params={"id": nb}, content=source), 409, "notebook_exists")
    assert_error(api.post("/api/notebooks/import", params={"id": "bad id"}, content=source), 400, "invalid_notebook_id")
    r = api.get(f"/api/notebooks/{nb}/export")
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-ipynb+json")
    assert f'filename="{nb}.ipynb"' in r.headers["content-disposition"]
    exported = r.json()
    original = json.loads(source)
    assert ["".join(c["source"]) if isinstance(c["source"], list) else c["source"] for c in exported["cells"]] == [
        "".join(c["source"]) for c in original["cells"]
    ]
    assert exported["cells"][0]["metadata"].get("tags") == ["parameters"]
    at1 = api.get(f"/api/notebooks/{nb}/export", params={"at": 1}).json()
    assert at1["cells"] == []


def test_import_rejects_a_broken_file_and_keeps_nothing(api: httpx.Client, nb: str) -> None:
    pytest.importorskip("runtimed.formats")
    r = api.post("/api/notebooks/import", params={"id": nb}, content=b"{this is not a notebook")
    assert 400 <= r.status_code < 500, r.text
    assert r.json()["error"]["message"]
    assert_error(api.get(f"/api/notebooks/{nb}"), 404, "notebook_not_found")


def test_delete_ends_live_connections(api: httpx.Client, daemon: DaemonProcess, nb: str) -> None:
    """A client connected to a notebook that is deleted is told so, and cannot write into the void."""
    create(api, nb)

    async def scenario() -> tuple[int | None, list[dict[str, Any]]]:
        url = f"ws{daemon.url[4:]}/api/notebooks/{nb}/sync"
        received: list[dict[str, Any]] = []
        async with connect(url, additional_headers={"Authorization": f"Bearer {daemon.token}"}, close_timeout=2) as ws:
            await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE}).decode())
            assert orjson.loads(await ws.recv())["type"] == "welcome"
            async with httpx.AsyncClient(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}) as c:
                assert (await c.delete(f"/api/notebooks/{nb}")).status_code == 200
            try:
                await ws.send(orjson.dumps({"type": "push", "ref": 1, "events": [cell("c1")]}).decode())
                async with asyncio.timeout(10):
                    while True:
                        received.append(orjson.loads(await ws.recv()))
            except ConnectionClosed:
                pass
            return ws.close_code, received

    close_code, received = asyncio.run(scenario())
    acks = [m for m in received if m["type"] == "ack"]
    assert not any("seq" in r for a in acks for r in a["results"]), received
    assert close_code is not None and close_code >= 4000, (close_code, received)
    assert_error(api.get(f"/api/notebooks/{nb}"), 404, "notebook_not_found")
    assert api.get("/health").status_code == 200


# -- auth ------------------------------------------------------------------------------------------

PROTECTED = [
    ("GET", "/api/status", None),
    ("POST", "/api/shutdown", None),
    ("GET", "/api/notebooks", None),
    ("POST", "/api/notebooks", {"id": "auth-nb"}),
    ("GET", "/api/notebooks/auth-nb", None),
    ("DELETE", "/api/notebooks/auth-nb", None),
    ("GET", "/api/notebooks/auth-nb?at=1", None),
    ("POST", "/api/notebooks/import?id=auth-import", None),
    ("GET", "/api/notebooks/auth-nb/export", None),
    ("GET", "/api/notebooks/auth-nb/events?since=0", None),
    ("POST", "/api/notebooks/auth-nb/events", {"events": []}),
    ("GET", "/api/notebooks/auth-nb/snapshot", None),
    ("POST", "/api/notebooks/auth-nb/query", {"sql": "SELECT 1"}),
    ("GET", "/api/notebooks/auth-nb/peers", None),
    ("GET", "/openapi.json", None),
    ("GET", "/docs", None),
]


@pytest.mark.parametrize(("method", "path", "body"), PROTECTED, ids=[f"{m} {p}" for m, p, _ in PROTECTED])
@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["no-token", "wrong-token"])
def test_every_route_requires_the_token(
    anon: httpx.Client, api: httpx.Client, method: str, path: str, body: Any, token: str | None
) -> None:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = anon.request(method, path, json=body, headers=headers)
    error = assert_error(r, 401, "unauthorized")
    assert "token" in error["message"]
    if token:  # a wrong token in the query string or the cookie is refused too
        assert anon.request(method, path + ("&" if "?" in path else "?") + f"token={token}", json=body).status_code == 401
        anon.cookies.set(cookie_name(anon.base_url.port), token)
        assert anon.request(method, path, json=body).status_code == 401
        anon.cookies.clear()
    assert api.get("/health").status_code == 200  # nothing was done: the daemon is still up
    assert_error(api.get("/api/notebooks/auth-nb"), 404, "notebook_not_found")


def test_token_in_query_or_cookie_is_accepted(anon: httpx.Client, daemon: DaemonProcess) -> None:
    assert anon.get("/api/status", params={"token": daemon.token}).status_code == 200
    anon.cookies.set(cookie_name(anon.base_url.port), daemon.token)
    assert anon.get("/api/status").status_code == 200


def test_login_url_sets_httponly_cookie_and_redirects(anon: httpx.Client, daemon: DaemonProcess) -> None:
    r = anon.get("/", params={"token": daemon.token, "notebook": "nb-1", "q": "a b&c"})
    assert r.status_code in (302, 303, 307)
    target = httpx.URL(r.headers["location"])
    assert target.path == "/" and "token" not in str(target)
    assert target.params.get("notebook") == "nb-1" and target.params.get("q") == "a b&c"
    cookie = r.headers["set-cookie"]
    assert cookie.startswith(f"{cookie_name(anon.base_url.port)}=") and "httponly" in cookie.lower() and "samesite=strict" in cookie.lower()
    page = anon.get("/")  # the cookie now signs the browser in
    assert page.status_code in (200, 503)
    assert anon.get("/api/status").status_code == 200


def test_login_url_with_wrong_token_is_401(anon: httpx.Client) -> None:
    r = anon.get("/", params={"token": "nope"})
    assert r.status_code == 401 and "set-cookie" not in r.headers
    assert anon.get("/").status_code == 401


def ws_close_code(daemon: DaemonProcess, path: str, headers: dict[str, str] | None = None) -> tuple[int | None, list]:
    async def run() -> tuple[int | None, list]:
        received = []
        async with connect(f"ws{daemon.url[4:]}{path}", additional_headers=headers or {}, close_timeout=2) as ws:
            try:
                async with asyncio.timeout(10):
                    while True:
                        received.append(orjson.loads(await ws.recv()))
            except ConnectionClosed:
                pass
            return ws.close_code, received

    return asyncio.run(run())


@pytest.mark.parametrize("headers", [None, {"Authorization": "Bearer wrong"}, {"Cookie": "{cookie}=wrong"}],
                         ids=["no-token", "wrong-bearer", "wrong-cookie"])
def test_websocket_without_the_token_is_closed_with_4401(daemon: DaemonProcess, headers: dict[str, str] | None) -> None:
    if headers and "Cookie" in headers:
        headers = {"Cookie": headers["Cookie"].format(cookie=cookie_name(httpx.URL(daemon.url).port))}
    code, received = ws_close_code(daemon, "/api/notebooks/auth-ws/sync", headers)
    assert code == 4401
    assert received[0]["type"] == "error" and received[0]["code"] == "unauthorized" and "token" in received[0]["message"]
    code, _ = ws_close_code(daemon, "/api/notebooks/auth-ws/sync?token=wrong")
    assert code == 4401


@pytest.mark.parametrize("how", ["bearer", "query", "cookie"])
def test_websocket_with_the_token_is_welcomed(daemon: DaemonProcess, how: str) -> None:
    path = "/api/notebooks/auth-ws-ok/sync"
    headers: dict[str, str] = {}
    if how == "bearer":
        headers["Authorization"] = f"Bearer {daemon.token}"
    elif how == "query":
        path += f"?token={daemon.token}"
    else:
        # the page's cookie: a browser sends the page's Origin with it (without one it is refused, see test_security)
        headers["Cookie"] = f"{cookie_name(httpx.URL(daemon.url).port)}={daemon.token}"
        headers["Origin"] = daemon.url

    async def run() -> dict[str, Any]:
        async with connect(f"ws{daemon.url[4:]}{path}", additional_headers=headers) as ws:
            await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE}).decode())
            return orjson.loads(await ws.recv())

    assert asyncio.run(run())["type"] == "welcome"


def test_unknown_websocket_path_is_refused(daemon: DaemonProcess) -> None:
    async def run() -> None:
        async with connect(f"ws{daemon.url[4:]}/api/nowhere", additional_headers={"Authorization": "Bearer x"}):
            pass

    with pytest.raises((InvalidStatus, ConnectionClosed)):
        asyncio.run(run())


def test_token_file_is_private(daemon: DaemonProcess) -> None:
    mode = Path(daemon.home.token_file).stat().st_mode & 0o777
    assert mode == 0o600


@pytest.mark.parametrize("first", ["get", "create"])
def test_connecting_without_pushing_does_not_create_a_notebook(home: Path, first: str) -> None:
    """A hello for a new id leaves no notebook behind, even after a restart (404, and the id is free)."""
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()

    async def connect_only() -> None:
        url = f"ws{proc.url[4:]}/api/notebooks/ghost/sync"
        async with connect(url, additional_headers={"Authorization": f"Bearer {proc.token}"}) as ws:
            await ws.send(orjson.dumps({"type": "hello", "since": 0, "actor": ALICE}).decode())
            assert orjson.loads(await ws.recv())["head"] == 0

    try:
        asyncio.run(connect_only())
        proc.stop()
        proc.start()
        with httpx.Client(base_url=proc.url, headers={"Authorization": f"Bearer {proc.token}"}) as api:
            if first == "get":
                assert_error(api.get("/api/notebooks/ghost"), 404, "notebook_not_found")
                assert_error(api.get("/api/notebooks/ghost/events"), 404, "notebook_not_found")
            assert create(api, "ghost", "real")["head_seq"] == 1
            assert [n["id"] for n in api.get("/api/notebooks").json()] == ["ghost"]
    finally:
        proc.stop()
