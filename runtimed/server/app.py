"""The ASGI app: REST (OpenAPI at /openapi.json), the sync WebSocket, and the web UI's static files."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from html import escape
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
from runtimed.durations import parse_duration
from runtimed.errors import ErrorCode, RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.server.access import ActorBody, bound_actor, needs, needs_everywhere, owner_only, principal
from runtimed.server.daemon import Daemon
from runtimed.server.idle_notebooks import IdleNotebooks, max_open_setting, notebook_idle_setting
from runtimed.server.imports import import_notebook as import_into
from runtimed.server.imports import push_all
from runtimed.server.openapi import document_errors
from runtimed.server.people import Principal, forbidden
from runtimed.server.retention import RunRetention, collect_runs, retention_setting
from runtimed.server.runtimes import RuntimeSupervisor
from runtimed.server.security import SecurityMiddleware, SecurityPolicy
from runtimed.server.service import NotebookService
from runtimed.server.sync import sync_endpoint
from runtimed.store.base import QueryLimits
from runtimed.store.sqlite import check_notebook_id

STATIC_DIR = Path(__file__).resolve().parent.parent / "web" / "static"
MAX_CONCURRENT_QUERIES = 4
"""Read-only queries run in worker threads, this many at once; the rest wait (bounded by their timeout)."""

class NotebookCreate(BaseModel):
    id: str | None = Field(None, description="client-chosen id (letters, digits, . _ : -); generated when omitted")
    title: str = ""
    kernelspec: dict[str, Any] | None = None
    actor: ActorBody | None = None


class EventsPush(BaseModel):
    events: list[Any]
    actor: ActorBody | None = None


class GcRequest(BaseModel):
    older_than: str = Field(description="a duration: 30m, 12h, 7d, 2w or a sum such as 1d12h")
    dry_run: bool = False


class QueryBody(BaseModel):
    sql: str
    params: list[Any] = Field(default_factory=list)


def error_response(code: str, message: str, status: int | None = None) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}},
                        status_code=status or ErrorCode.lookup(code).http_status)


def create_app(daemon: Daemon, policy: SecurityPolicy | None = None) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if daemon.runtimes is not None:
            await daemon.runtimes.start()
        if daemon.runs is not None:
            await daemon.runs.start()
        retention = retention_setting()
        collector = RunRetention(daemon, retention) if retention is not None else None
        if collector is not None:
            collector.start()
        idle_notebooks = IdleNotebooks(daemon, notebook_idle_setting(), max_open_setting())
        idle_notebooks.start()
        try:
            yield
        finally:
            await idle_notebooks.stop()
            if collector is not None:
                await collector.stop()
            if daemon.runs is not None:
                await daemon.runs.stop()
            if daemon.runtimes is not None:
                await daemon.runtimes.stop()
            daemon.close()

    # The schema and docs routes are declared below, behind the token like everything but /health.
    app = FastAPI(title="runtimed", version=__version__, lifespan=lifespan, openapi_url=None, docs_url=None,
                  redoc_url=None, description="Event-sourced notebooks: REST API of the runtimed daemon")
    app.state.daemon = daemon
    policy = policy or SecurityPolicy.for_daemon(daemon)
    daemon.auth.bind_port(policy.port)
    # Host, Origin, token and body size are checked before FastAPI reads a byte of the body.
    app.add_middleware(SecurityMiddleware, auth=daemon.auth, policy=policy)

    @app.exception_handler(RuntimedError)
    async def _runtimed_error(request: Request, exc: RuntimedError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        return error_response("invalid_request", problems, 422)

    auth = [Depends(principal)]

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
    async def status() -> dict[str, Any]:
        return daemon.status()

    @app.post("/api/shutdown", dependencies=[owner_only("stop the daemon")], tags=["daemon"])
    async def shutdown() -> dict[str, Any]:
        if daemon.request_shutdown is not None:
            daemon.request_shutdown()
        return {"status": "shutting down"}

    # -- notebooks -------------------------------------------------------------------------------

    def _exists(notebook_id: str) -> bool:
        """A notebook exists once it has events (a connection that never pushed leaves an empty log)."""
        return daemon.store.exists(notebook_id)

    def _require(notebook_id: str) -> NotebookService:
        """The service of an existing notebook (NotFoundError otherwise)."""
        daemon.store.require(notebook_id)
        return daemon.service(notebook_id)

    async def _push_all(notebook_id: str, events: list[dict[str, Any]], actor: dict[str, Any]) -> list[Any]:
        return await push_all(daemon, notebook_id, events, actor)

    queries = asyncio.Semaphore(MAX_CONCURRENT_QUERIES)

    @app.get("/api/notebooks", tags=["notebooks"])
    async def list_notebooks(caller: Principal = Depends(principal)) -> list[dict[str, Any]]:
        out = [nb for nb in daemon.store.list_notebooks() if caller.role_on(nb["id"]) is not None]
        for item in out:
            service = daemon.services.get(item["id"])
            item["peers"] = service.describe_peers() if service else []
        return out

    @app.post("/api/notebooks", tags=["notebooks"], status_code=201)
    async def create_notebook(body: NotebookCreate,
                              caller: Principal = needs_everywhere("editor", "create notebooks")) -> dict[str, Any]:
        from runtimed.schema.ids import new_id

        notebook_id = check_notebook_id(body.id) if body.id else new_id("nb-")
        if _exists(notebook_id):
            raise RuntimedError(f"notebook {notebook_id!r} already exists", code="notebook_exists")
        event = make_event("notebookCreated", title=body.title, kernelspec=body.kernelspec)
        await _push_all(notebook_id, [event], bound_actor(caller, body.actor))
        info = await daemon.service(notebook_id).view(views.notebook_summary)
        return dict(info) if info is not None else {}

    @app.get("/api/notebooks/{notebook_id}", dependencies=[needs("viewer", "read")], tags=["notebooks"])
    async def get_notebook(notebook_id: str, at: int | None = Query(None, ge=0, description="the state after this seq"),
                           ystate: bool = Query(False, description="include each cell's Yjs state (base64)")) -> dict:
        service = _require(notebook_id)
        if at is None:
            return await service.view(views.page_view, ystate=ystate)
        replica = await service.state_at(at)
        try:
            return replica.view(views.page_view, ystate=ystate)
        finally:
            replica.close()

    @app.delete("/api/notebooks/{notebook_id}", dependencies=[needs("owner", "delete")], tags=["notebooks"])
    async def delete_notebook(notebook_id: str) -> dict[str, Any]:
        _require(notebook_id)
        if daemon.runtimes is not None:
            await daemon.runtimes.stop_notebook(notebook_id)
        daemon.forget_service(notebook_id, ("notebook_deleted", f"notebook {notebook_id!r} was deleted"))
        daemon.store.delete(notebook_id)
        return {"deleted": notebook_id}

    @app.post("/api/notebooks/import", tags=["notebooks"], status_code=201)
    async def import_notebook(request: Request, id: str | None = None, title: str | None = None,
                              caller: Principal = needs_everywhere("editor", "import notebooks")) -> dict[str, Any]:
        from runtimed.formats import read_ipynb

        nb = read_ipynb(await request.body())
        actor = bound_actor(caller, {"id": request.headers.get("x-runtimed-actor", "import"), "kind": "human",
                                     "name": "import"})
        return await import_into(daemon, nb, notebook_id=id, actor=actor, title=title)

    @app.get("/api/notebooks/{notebook_id}/export", dependencies=[needs("viewer", "export")], tags=["notebooks"])
    async def export_notebook(notebook_id: str, at: int | None = Query(None, ge=0)) -> Response:
        from runtimed.formats import notebook_from_projection, write_ipynb

        replica = await _require(notebook_id).state_at(at)
        try:
            text = write_ipynb(replica.view(notebook_from_projection, resolve_artifact=daemon.artifacts.read))
        finally:
            replica.close()
        return Response(text, media_type="application/x-ipynb+json",
                        headers={"Content-Disposition": f'attachment; filename="{notebook_id}.ipynb"'})

    @app.get("/api/notebooks/{notebook_id}/events", dependencies=[needs("viewer", "read")], tags=["events"])
    async def read_events(notebook_id: str, since: int = Query(0, ge=0), until: int | None = Query(None, ge=0),
                          limit: int = Query(10_000, ge=1, le=100_000)) -> Response:
        service = _require(notebook_id)
        items = await service.read_encoded(since, until, limit)
        body = b'{"head":%d,"events":[' % service.head + b",".join(items) + b"]}"
        return Response(body, media_type="application/json")

    @app.post("/api/notebooks/{notebook_id}/events", tags=["events"])
    async def push_events(notebook_id: str, body: EventsPush,
                          caller: Principal = Depends(principal)) -> dict[str, Any]:
        check_notebook_id(notebook_id)
        actor = bound_actor(caller, body.actor)
        return {"results": await daemon.service(notebook_id).append(body.events, actor, principal=caller)}

    @app.get("/api/notebooks/{notebook_id}/snapshot", dependencies=[needs("viewer", "read")], tags=["events"])
    async def snapshot(notebook_id: str) -> Response:
        seq, data = await _require(notebook_id).snapshot()
        return Response(data, media_type="application/vnd.sqlite3", headers={"X-Runtimed-Seq": str(seq)})

    @app.post("/api/notebooks/{notebook_id}/query", dependencies=[needs("viewer", "query")], tags=["notebooks"])
    async def query(notebook_id: str, body: QueryBody) -> dict[str, Any]:
        nb_log = _require(notebook_id).log
        limits = QueryLimits.from_env()
        try:
            await asyncio.wait_for(queries.acquire(), limits.timeout)
        except TimeoutError:
            raise RuntimedError(f"{MAX_CONCURRENT_QUERIES} queries are running; try again when one is done",
                                code="query_timeout") from None
        try:  # in a worker thread: a slow query never holds up the event loop
            result = await asyncio.to_thread(nb_log.query, body.sql, body.params, limits)
        finally:
            queries.release()
        return {"columns": result.columns, "rows": [list(r) for r in result.rows], "truncated": result.truncated}

    @app.get("/api/notebooks/{notebook_id}/peers", dependencies=[needs("viewer", "read")], tags=["notebooks"])
    async def peers(notebook_id: str) -> list[dict[str, Any]]:
        return _require(notebook_id).describe_peers()

    # -- runtimes and kernels --------------------------------------------------------------------

    def _runtimes() -> RuntimeSupervisor:
        if daemon.runtimes is None:
            raise RuntimedError("this daemon runs without managed runtimes (--no-runtimes)", code="runtimes_disabled")
        return daemon.runtimes

    @app.get("/api/kernelspecs", dependencies=auth, tags=["runtimes"])
    async def kernelspecs() -> dict[str, Any]:
        from runtimed.runtime.kernel import list_kernelspecs

        return await asyncio.to_thread(list_kernelspecs)

    @app.get("/api/runtimes", dependencies=auth, tags=["runtimes"])
    async def list_runtimes() -> list[dict[str, Any]]:
        return daemon.runtimes.describe() if daemon.runtimes is not None else []

    @app.post("/api/notebooks/{notebook_id}/runtime", dependencies=[needs("runner", "start a runtime for")],
              tags=["runtimes"])
    async def start_runtime(notebook_id: str) -> dict[str, Any]:
        _require(notebook_id)
        return await _runtimes().start_runtime(notebook_id)

    def _runner_of(caller: Principal, runtime_id: str) -> None:
        """Stopping or interrupting a runtime needs ``runner`` on its notebook."""
        found = next((r for r in _runtimes().describe() if r.get("runtime_id") == runtime_id), None)
        if found is not None and not caller.may(found["notebook_id"], "runner"):
            raise forbidden(caller, f"stop or interrupt the runtime of notebook {found['notebook_id']!r}")

    @app.delete("/api/runtimes/{runtime_id}", tags=["runtimes"])
    async def stop_runtime(runtime_id: str, caller: Principal = Depends(principal)) -> dict[str, Any]:
        _runner_of(caller, runtime_id)
        if not await _runtimes().stop_runtime(runtime_id):
            raise RuntimedError(f"no managed runtime {runtime_id!r}; list them with `runt ps`", code="runtime_not_found")
        return {"stopped": runtime_id}

    @app.post("/api/runtimes/{runtime_id}/interrupt", tags=["runtimes"])
    async def interrupt_runtime(runtime_id: str, caller: Principal = Depends(principal)) -> dict[str, Any]:
        _runner_of(caller, runtime_id)
        if not await _runtimes().interrupt_runtime(runtime_id):
            raise RuntimedError(f"no managed runtime {runtime_id!r}; list them with `runt ps`", code="runtime_not_found")
        return {"interrupted": runtime_id}

    @app.post("/api/gc", dependencies=[owner_only("collect run notebooks")], tags=["notebooks"])
    async def gc(body: GcRequest) -> dict[str, Any]:
        """Remove (or list, with ``dry_run``) the notebooks of `runt run` runs not updated for ``older_than``."""
        return await collect_runs(daemon, parse_duration(body.older_than), dry_run=body.dry_run)

    @app.post("/api/pool/flush", dependencies=[owner_only("flush the kernel pool")], tags=["runtimes"])
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
                return _sign_in_page(request, "That token is not valid for this daemon.")
            params = [(k, v) for k, v in request.query_params.multi_items() if k != "token"]
            target = "/" + ("?" + urlencode(params) if params else "")
            response = RedirectResponse(target, status_code=303)
            # Named after the port (browsers share a host's cookies across its ports), sent only to this host.
            response.set_cookie(daemon.auth.cookie_name, token, path="/", httponly=True, samesite="strict",
                                secure=policy.scheme == "https")
            return response
        if not daemon.auth.request_ok(request):
            return _sign_in_page(request, "Not signed in.")
        index_file = STATIC_DIR / "index.html"
        if not index_file.exists():
            return HTMLResponse("<h1>runtimed</h1><p>The web UI is not built.</p>", 503)
        return HTMLResponse(index_file.read_text())

    if STATIC_DIR.exists():
        app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def _sign_in_page(request: Request, reason: str) -> HTMLResponse:
        """A form that signs this browser in with a token (the live URLs printed by `runt run` and
        `Session.url` carry no token, so that none lands in a log)."""
        hidden = "".join(f'<input type="hidden" name="{escape(k)}" value="{escape(v)}">'
                         for k, v in request.query_params.multi_items() if k != "token")
        body = (f"<!doctype html><meta charset=utf-8><title>runtimed: sign in</title><h1>runtimed</h1>"
                f"<p>{escape(reason)} Paste the token (<code>runt open ID</code> prints a link that carries it; "
                f"it is also in <code>$RUNTIMED_HOME/token</code>, or ask the daemon's owner for one).</p>"
                f'<form method="get" action="/">{hidden}<label>Token <input type="password" name="token" '
                f'autocomplete="current-password" required autofocus></label> <button>Sign in</button></form>')
        # this page alone may submit its form (to the daemon itself); everything else as on the app page
        csp = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        return HTMLResponse(body, 401, headers={"Content-Security-Policy": csp})

    from runtimed.server.ai_api import ai_router
    from runtimed.server.approvals_api import approvals_router
    from runtimed.server.artifacts_api import artifacts_router
    from runtimed.server.environments_api import environments_router
    from runtimed.server.kernel_requests import kernel_requests_router
    from runtimed.server.mcp_http import mount_mcp
    from runtimed.server.people_api import people_router
    from runtimed.server.runs_api import runs_router

    app.include_router(ai_router(daemon))
    app.include_router(approvals_router(daemon))
    app.include_router(runs_router(daemon))
    app.include_router(artifacts_router(daemon))
    app.include_router(environments_router(daemon))
    app.include_router(kernel_requests_router(daemon))
    app.include_router(people_router(daemon))
    mount_mcp(app, daemon)
    document_errors(app)
    return app

