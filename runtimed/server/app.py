"""The ASGI app: REST (OpenAPI at /openapi.json), the sync WebSocket, and the web UI's static files."""

from __future__ import annotations

import base64
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import Depends, FastAPI, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from runtimed import __version__
from runtimed.errors import AuthError, NotFoundError, RuntimedError
from runtimed.schema.events import make_event
from runtimed.schema.views import notebook_view
from runtimed.server.auth import COOKIE_NAME
from runtimed.server.daemon import Daemon
from runtimed.server.sync import sync_endpoint
from runtimed.store.sqlite import check_notebook_id

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"

HTTP_STATUS = {
    "unauthorized": 401,
    "not_found": 404,
    "notebook_not_found": 404,
    "cell_not_found": 404,
    "artifact_not_found": 404,
    "runtime_not_found": 404,
    "notebook_exists": 409,
    "read_only": 403,
    "payload_too_large": 413,
}

REST_ACTOR = {"id": "rest", "kind": "human", "name": "REST API"}


class Actor(BaseModel):
    id: str
    kind: str = "human"
    name: str = ""


class NotebookCreate(BaseModel):
    id: str | None = Field(None, description="client-chosen id (letters, digits, . _ : -); generated when omitted")
    title: str = ""
    kernelspec: dict[str, Any] | None = None
    actor: Actor | None = None


class EventsPush(BaseModel):
    events: list[Any]
    actor: Actor | None = None


class QueryBody(BaseModel):
    sql: str
    params: list[Any] = Field(default_factory=list)


def error_response(code: str, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status or HTTP_STATUS.get(code, 400))


def _actor(actor: Actor | None) -> dict[str, Any]:
    return actor.model_dump() if actor is not None else REST_ACTOR


def create_app(daemon: Daemon) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if daemon.runtimes is not None:
            await daemon.runtimes.start()
        try:
            yield
        finally:
            if daemon.runtimes is not None:
                await daemon.runtimes.stop()
            daemon.close()

    # The schema and docs routes are declared below, behind the token like everything but /health.
    app = FastAPI(title="runtimed", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Event-sourced notebooks: REST API of the runtimed daemon")
    app.state.daemon = daemon

    def require_token(request: Request) -> None:
        if not daemon.auth.request_ok(request):
            raise AuthError("missing or wrong token: send 'Authorization: Bearer <token>' "
                            "(the token is in $RUNTIMED_HOME/token)")

    @app.exception_handler(RuntimedError)
    async def _runtimed_error(request: Request, exc: RuntimedError) -> JSONResponse:
        return error_response(exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response("invalid_request", problems, 422)

    auth = [Depends(require_token)]

    @app.get("/health", tags=["daemon"])
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__}

    @app.get("/openapi.json", dependencies=auth, include_in_schema=False)
    def openapi() -> dict[str, Any]:
        return app.openapi()

    @app.get("/docs", dependencies=auth, include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="runtimed API")

    @app.get("/api/status", dependencies=auth, tags=["daemon"])
    def status() -> dict[str, Any]:
        return daemon.status()

    @app.post("/api/shutdown", dependencies=auth, tags=["daemon"])
    def shutdown() -> dict[str, Any]:
        if daemon.request_shutdown is not None:
            daemon.request_shutdown()
        return {"status": "shutting down"}

    # -- notebooks -------------------------------------------------------------------------------

    def _exists(notebook_id: str) -> bool:
        """A notebook exists once it has events (a connection that never pushed leaves an empty log file)."""
        return daemon.store.exists(notebook_id) and daemon.store.log(notebook_id).head > 0

    def _require(notebook_id: str):
        check_notebook_id(notebook_id)
        nb_log = daemon.store.require(notebook_id)
        if nb_log.head == 0:
            raise NotFoundError(f"no notebook with id {notebook_id!r}; list them with `runt notebooks`",
                                code="notebook_not_found")
        return nb_log

    @app.get("/api/notebooks", dependencies=auth, tags=["notebooks"])
    def list_notebooks() -> list[dict[str, Any]]:
        out = daemon.store.list_notebooks()
        for item in out:
            room = daemon.rooms.get(item["id"])
            item["peers"] = room.describe_peers() if room else []
        return out

    @app.post("/api/notebooks", dependencies=auth, tags=["notebooks"], status_code=201)
    def create_notebook(body: NotebookCreate) -> dict[str, Any]:
        from runtimed.schema.ids import new_id

        notebook_id = check_notebook_id(body.id) if body.id else new_id("nb-")
        if _exists(notebook_id):
            raise RuntimedError(f"notebook {notebook_id!r} already exists", code="notebook_exists")
        event = make_event("notebookCreated", title=body.title, kernelspec=body.kernelspec)
        _push_all(notebook_id, [event], _actor(body.actor))
        return daemon.store.log(notebook_id).info() or {}

    def _push_all(notebook_id: str, events: list[dict[str, Any]], actor: dict[str, Any]) -> list[dict[str, Any]]:
        results = daemon.room(notebook_id).push(events, actor)
        failed = [r for r in results if "error" in r]
        if failed:
            raise RuntimedError(failed[0]["error"]["message"], code=failed[0]["error"]["code"])
        return results

    @app.get("/api/notebooks/{notebook_id}", dependencies=auth, tags=["notebooks"])
    def get_notebook(notebook_id: str, at: int | None = Query(None, ge=0, description="the state after this seq"),
                     ystate: bool = Query(False, description="include each cell's Yjs state (base64)")) -> dict:
        nb_log = _require(notebook_id)
        replica = None if at is None else nb_log.state_at(at)
        conn = nb_log.conn if replica is None else replica.conn
        try:
            view = notebook_view(conn)
            if ystate:
                states = dict(conn.execute("SELECT id, ystate FROM cells"))
                for cell in view["cells"]:
                    cell["ystate"] = base64.b64encode(states.get(cell["id"]) or b"").decode()
            return view
        finally:
            if replica is not None:
                replica.close()

    @app.delete("/api/notebooks/{notebook_id}", dependencies=auth, tags=["notebooks"])
    async def delete_notebook(notebook_id: str) -> dict[str, Any]:
        _require(notebook_id)
        if daemon.runtimes is not None:
            await daemon.runtimes.stop_notebook(notebook_id)
        daemon.forget_room(notebook_id, ("notebook_deleted", f"notebook {notebook_id!r} was deleted"))
        daemon.store.delete(notebook_id)
        return {"deleted": notebook_id}

    @app.post("/api/notebooks/import", dependencies=auth, tags=["notebooks"], status_code=201)
    async def import_notebook(request: Request, id: str | None = None, title: str | None = None) -> dict[str, Any]:
        from runtimed.formats import notebook_to_events, read_ipynb
        from runtimed.schema.ids import new_id

        notebook_id = check_notebook_id(id) if id else new_id("nb-")
        if _exists(notebook_id):
            raise RuntimedError(f"notebook {notebook_id!r} already exists; pick another id", code="notebook_exists")
        nb = read_ipynb(await request.body())
        events = notebook_to_events(nb, title=title)
        actor = {"id": request.headers.get("x-runtimed-actor", "import"), "kind": "human", "name": "import"}
        limit = daemon.limits.max_batch_events
        try:
            for i in range(0, len(events), limit):
                _push_all(notebook_id, events[i : i + limit], actor)
        except RuntimedError:
            if daemon.store.exists(notebook_id):  # a partial import is removed: nothing half-stored
                daemon.forget_room(notebook_id)
                daemon.store.delete(notebook_id)
            raise
        return daemon.store.log(notebook_id).info() or {}

    @app.get("/api/notebooks/{notebook_id}/export", dependencies=auth, tags=["notebooks"])
    def export_notebook(notebook_id: str, at: int | None = Query(None, ge=0)) -> Response:
        from runtimed.formats import notebook_from_projection, write_ipynb

        nb_log = _require(notebook_id)
        replica = nb_log.state_at(at)
        try:
            text = write_ipynb(notebook_from_projection(replica.conn))
        finally:
            replica.close()
        return Response(text, media_type="application/x-ipynb+json",
                        headers={"Content-Disposition": f'attachment; filename="{notebook_id}.ipynb"'})

    @app.get("/api/notebooks/{notebook_id}/events", dependencies=auth, tags=["events"])
    def read_events(notebook_id: str, since: int = Query(0, ge=0), until: int | None = Query(None, ge=0),
                    limit: int = Query(10_000, ge=1, le=100_000)) -> Response:
        nb_log = _require(notebook_id)
        items = nb_log.read_encoded(since, until, limit)
        body = b'{"head":%d,"events":[' % nb_log.head + b",".join(items) + b"]}"
        return Response(body, media_type="application/json")

    @app.post("/api/notebooks/{notebook_id}/events", dependencies=auth, tags=["events"])
    def push_events(notebook_id: str, body: EventsPush) -> dict[str, Any]:
        check_notebook_id(notebook_id)
        return {"results": daemon.room(notebook_id).push(body.events, _actor(body.actor))}

    @app.get("/api/notebooks/{notebook_id}/snapshot", dependencies=auth, tags=["events"])
    def snapshot(notebook_id: str) -> Response:
        seq, data = _require(notebook_id).snapshot()
        return Response(data, media_type="application/vnd.sqlite3", headers={"X-Runtimed-Seq": str(seq)})

    @app.post("/api/notebooks/{notebook_id}/query", dependencies=auth, tags=["notebooks"])
    def query(notebook_id: str, body: QueryBody) -> dict[str, Any]:
        columns, rows = _require(notebook_id).query(body.sql, body.params)
        return {"columns": columns, "rows": [list(r) for r in rows]}

    @app.get("/api/notebooks/{notebook_id}/peers", dependencies=auth, tags=["notebooks"])
    def peers(notebook_id: str) -> list[dict[str, Any]]:
        _require(notebook_id)
        room = daemon.rooms.get(notebook_id)
        return room.describe_peers() if room else []

    # -- runtimes and kernels --------------------------------------------------------------------

    def _runtimes():
        if daemon.runtimes is None:
            raise RuntimedError("this daemon runs without managed runtimes (--no-runtimes)", code="runtimes_disabled")
        return daemon.runtimes

    @app.get("/api/kernelspecs", dependencies=auth, tags=["runtimes"])
    def kernelspecs() -> dict[str, Any]:
        from runtimed.runtime.kernel import list_kernelspecs

        return list_kernelspecs()

    @app.get("/api/runtimes", dependencies=auth, tags=["runtimes"])
    def list_runtimes() -> list[dict[str, Any]]:
        return daemon.runtimes.describe() if daemon.runtimes is not None else []

    @app.post("/api/notebooks/{notebook_id}/runtime", dependencies=auth, tags=["runtimes"])
    async def start_runtime(notebook_id: str) -> dict[str, Any]:
        _require(notebook_id)
        agent = await _runtimes().start_runtime(notebook_id)
        return agent.describe()

    @app.delete("/api/runtimes/{runtime_id}", dependencies=auth, tags=["runtimes"])
    async def stop_runtime(runtime_id: str) -> dict[str, Any]:
        if not await _runtimes().stop_runtime(runtime_id):
            raise RuntimedError(f"no managed runtime {runtime_id!r}; list them with `runt ps`", code="runtime_not_found")
        return {"stopped": runtime_id}

    @app.post("/api/runtimes/{runtime_id}/interrupt", dependencies=auth, tags=["runtimes"])
    async def interrupt_runtime(runtime_id: str) -> dict[str, Any]:
        agent = _runtimes().find(runtime_id)
        if agent is None:
            raise RuntimedError(f"no managed runtime {runtime_id!r}; list them with `runt ps`", code="runtime_not_found")
        await agent.kernel.interrupt()
        return {"interrupted": runtime_id}

    @app.post("/api/pool/flush", dependencies=auth, tags=["runtimes"])
    async def flush_pool() -> dict[str, Any]:
        return await _runtimes().flush_pool()

    @app.websocket("/api/notebooks/{notebook_id}/sync")
    async def sync(ws: WebSocket, notebook_id: str) -> None:
        await sync_endpoint(ws, notebook_id, daemon)

    # -- web UI ----------------------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def index(request: Request, token: str | None = None) -> Response:
        if token is not None:
            if not daemon.auth.matches(token):
                return HTMLResponse("<h1>Wrong token</h1><p>Use the URL printed by <code>runt open</code>.</p>", 401)
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = "/" + ("?" + urlencode(params) if params else "")
            response = RedirectResponse(target, status_code=303)
            response.set_cookie(COOKIE_NAME, token, httponly=True, samesite="strict")
            return response
        if not daemon.auth.request_ok(request):
            return HTMLResponse("<h1>runtimed</h1><p>Not signed in: open the URL printed by "
                                "<code>runt open</code> (it carries the token once).</p>", 401)
        index_file = STATIC_DIR / "index.html"
        if not index_file.exists():
            return HTMLResponse("<h1>runtimed</h1><p>The web UI is not built.</p>", 503)
        return HTMLResponse(index_file.read_text())

    if STATIC_DIR.exists():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    from runtimed.server.approvals_api import approvals_router
    from runtimed.server.mcp_http import mount_mcp

    app.include_router(approvals_router(daemon))
    mount_mcp(app, daemon)
    return app

