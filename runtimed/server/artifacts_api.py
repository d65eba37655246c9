"""REST for artifacts: serve (``GET``/``HEAD``), upload (``PUT``, external runtimes) and collect.

Serving follows HTTP's rules for immutable content: the ETag is the sha256 (strong), caching is
``immutable`` (private: the route needs a token or the sign-in cookie), single byte ranges are
answered with 206. An artifact is served to the daemon's owner and to anyone who may read a
notebook whose log references it (at any seq); to anyone else it does not exist (404, the same
answer as for a missing one, so ids cannot be probed). Every answer is sandboxed (CSP), so an
HTML artifact opened directly runs nothing on the daemon's origin.

Uploads (``PUT /api/artifacts/{sha256}``) need ``runner`` on some notebook (who may push
outputs), a ``Content-Length`` within ``RUNTIMED_MAX_ARTIFACT_BYTES`` (the security middleware
applies that limit to this route instead of the general body limit), and bytes whose sha256 is
the name; the body is streamed to a temporary file and renamed into place.
"""

from __future__ import annotations

import collections
import contextlib
import re
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel, Field

from runtimed.durations import parse_duration
from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.server.access import owner_only, principal
from runtimed.server.artifact_gc import ArtifactCollector, collect_artifacts
from runtimed.server.daemon import Daemon
from runtimed.server.people import ROLES, Principal, forbidden
from runtimed.store.artifacts import artifact_missing, check_sha

CHUNK = 1024 * 1024
CACHE_CONTROL = "private, max-age=31536000, immutable"
ARTIFACT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
ALLOWED_CACHE = 4096
"""(principal, sha) pairs remembered as readable, so a page of images does not rescan logs."""


class GcBody(BaseModel):
    dry_run: bool = False
    grace: str | None = Field(None, description="a duration (e.g. 0s, 1h): artifacts written more recently are kept; "
                                                "default RUNTIMED_ARTIFACT_GC_GRACE or 1h")


def _may_upload(caller: Principal) -> bool:
    if caller.is_owner or caller.kind == "runtime":
        return True
    rank = ROLES.index("runner")
    return any(role is not None and ROLES.index(role) >= rank for role in (caller.role, *caller.notebooks.values()))


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range asked for, or None for the whole (several ranges: served whole, as RFC 9110 allows).
    An unsatisfiable range raises ValueError."""
    if not header:
        return None
    match = RANGE.match(header.replace(" ", ""))
    if match is None:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":  # the last N bytes
        start, end = max(0, size - int(last)), size - 1
    else:
        start, end = int(first), min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise ValueError(f"range {header!r} is outside the artifact's {size} bytes")
    return start, end


def artifacts_router(daemon: Daemon) -> APIRouter:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        collector = ArtifactCollector(daemon)
        collector.start()
        try:
            yield
        finally:
            await collector.stop()

    router = APIRouter(tags=["artifacts"], lifespan=lifespan)
    store = daemon.artifacts
    readable: collections.OrderedDict[tuple[str, str], None] = collections.OrderedDict()

    async def _references(notebook_id: str, sha: str) -> bool:
        if not daemon.store.exists(notebook_id):
            return False
        return bool(await daemon.service(notebook_id).view(views.references_artifact, sha))

    async def _may_read(caller: Principal, sha: str, hint: str | None) -> bool:
        if caller.is_owner or (caller.name, sha) in readable:
            return True
        candidates = [hint] if hint and caller.role_on(hint) is not None else []
        if caller.share_of:
            candidates.append(caller.share_of)
        elif caller.role is not None:
            candidates += [nb["id"] for nb in daemon.store.list_notebooks()]
        else:
            candidates += list(caller.notebooks)
        for notebook_id in dict.fromkeys(candidates):
            with contextlib.suppress(RuntimedError):
                if caller.role_on(notebook_id) is not None and await _references(notebook_id, sha):
                    readable[(caller.name, sha)] = None
                    while len(readable) > ALLOWED_CACHE:
                        readable.popitem(last=False)
                    return True
        return False

    @router.api_route("/api/artifacts/{sha}", methods=["GET", "HEAD"])
    async def get_artifact(sha: str, request: Request, notebook: str | None = None,
                           caller: Principal = Depends(principal)) -> Response:
        """An artifact's bytes (``?notebook=`` names the notebook it is shown in: a hint for the access check)."""
        check_sha(sha)
        info = store.info(sha)
        if info is None or not await _may_read(caller, sha, notebook):
            raise artifact_missing(sha)
        etag = f'"{sha}"'
        headers = {"ETag": etag, "Cache-Control": CACHE_CONTROL, "Accept-Ranges": "bytes",
                   "Content-Security-Policy": ARTIFACT_CSP}
        content_type = store.content_type(sha)
        if etag in [t.strip() for t in request.headers.get("if-none-match", "").split(",")]:
            return Response(status_code=304, headers=headers)
        if_range = request.headers.get("if-range")
        try:
            wanted = _parse_range(request.headers.get("range"), info.size) if if_range in (None, etag) else None
        except ValueError as exc:
            return Response(status_code=416, headers={**headers, "Content-Range": f"bytes */{info.size}"},
                            content=str(exc), media_type="text/plain")
        start, end = wanted if wanted is not None else (0, info.size - 1)
        length = max(0, end - start + 1)
        headers["Content-Length"] = str(length)
        status = 200
        if wanted is not None:
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{info.size}"
        if request.method == "HEAD":
            return Response(status_code=status, headers=headers, media_type=content_type)

        def chunks() -> Iterator[bytes]:
            with store.open(sha) as f:
                f.seek(start)
                left = length
                while left > 0:
                    data = f.read(min(CHUNK, left))
                    if not data:
                        break
                    left -= len(data)
                    yield data

        return StreamingResponse(chunks(), status_code=status, headers=headers, media_type=content_type)

    @router.put("/api/artifacts/{sha}", status_code=201)
    async def put_artifact(sha: str, request: Request, caller: Principal = Depends(principal)) -> dict[str, Any]:
        """Store the request body as artifact ``sha`` (its sha256, checked)."""
        check_sha(sha)
        if not _may_upload(caller):
            raise forbidden(caller, "upload artifacts (needs runner on some notebook)")
        length = request.headers.get("content-length")
        if length is None or not length.isdigit():
            raise RuntimedError("an artifact upload needs a Content-Length header (no chunked uploads)",
                                code="length_required")
        content_type = request.headers.get("content-type") or "application/octet-stream"
        received = 0
        with store.writer(sha, content_type) as f:
            async for chunk in request.stream():
                received += len(chunk)
                f.write(chunk)
            if received != int(length):
                raise RuntimedError(f"the upload ended after {received} of {length} bytes; send it again",
                                    code="artifact_mismatch")
        return {"artifact": sha, "size": received}

    @router.post("/api/artifacts/gc", dependencies=[owner_only("collect artifacts")])
    async def gc(body: GcBody) -> dict[str, Any]:
        """Remove the artifacts no notebook's log references (any seq), written longer than ``grace`` ago."""
        grace = parse_duration(body.grace).total_seconds() if body.grace else None
        return await collect_artifacts(daemon, grace=grace, dry_run=body.dry_run)

    return router
