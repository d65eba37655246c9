"""Where a runtime stores the artifacts of its outputs before it pushes the events that reference them.

A daemon-managed runtime writes straight into the daemon's artifact store (in process, in a
worker thread: ``server/local_artifacts.py``); an external runtime uploads over authenticated HTTP
(``PUT /api/artifacts/{sha256}``, which checks the hash). Either way the runtime's event pipe
awaits ``put`` before it pushes the output, so the daemon never sees a reference first.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Protocol

import httpx

from runtimed.errors import RuntimedError, from_dict

UPLOAD_TIMEOUT = 300.0
"""Seconds one upload may take (a large artifact over a slow link)."""


class ArtifactSink(Protocol):
    async def put(self, sha: str, data: bytes | Path, content_type: str) -> None:
        """Store ``data`` (bytes, or a file holding them: a spilled stream) as artifact ``sha``; raises
        RuntimedError when it cannot be stored."""

    async def close(self) -> None: ...


class HttpSink:
    """Uploads to a daemon over HTTP with the runtime's token."""

    def __init__(self, url: str, token: str) -> None:
        self.client = httpx.AsyncClient(base_url=url.rstrip("/"), headers={"Authorization": f"Bearer {token}"},
                                        timeout=UPLOAD_TIMEOUT, verify=not url.startswith("http://"))

    async def put(self, sha: str, data: bytes | Path, content_type: str) -> None:
        try:
            if (await self.client.head(f"/api/artifacts/{sha}")).status_code == 200:
                return  # the daemon holds it already (content addressing: the same bytes)
            size = data.stat().st_size if isinstance(data, Path) else len(data)
            headers = {"Content-Type": content_type, "Content-Length": str(size)}
            if isinstance(data, Path):
                response = await self.client.put(f"/api/artifacts/{sha}", content=_chunks(data), headers=headers)
            else:
                response = await self.client.put(f"/api/artifacts/{sha}", content=data, headers=headers)
        except httpx.HTTPError as exc:
            raise RuntimedError(f"could not upload artifact {sha}: {exc}", code="connection_lost") from None
        if response.status_code >= 400:
            raise from_dict(_error_of(response), response.status_code)

    async def close(self) -> None:
        await self.client.aclose()


async def _chunks(path: Path, size: int = 1024 * 1024) -> AsyncIterator[bytes]:
    """A file's bytes, a chunk at a time (a spilled stream may be gigabytes)."""
    with path.open("rb") as f:
        while chunk := await asyncio.to_thread(f.read, size):
            yield chunk


def _error_of(response: httpx.Response) -> dict[str, Any]:
    try:
        error = response.json()["error"]
        return {"code": str(error["code"]), "message": str(error["message"])}
    except (ValueError, KeyError, TypeError):
        return {"code": "http_error", "message": f"{response.status_code} {response.text[:200]}"}
