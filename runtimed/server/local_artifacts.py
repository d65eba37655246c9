"""Writing into the daemon's own artifact store: managed runtimes' outputs, and imported notebooks."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any

from runtimed.schema.artifact_refs import OUTPUT_EVENTS, offload, threshold_setting
from runtimed.store.artifacts import ArtifactStore


class StoreSink:
    """Writes a managed runtime's artifacts into the daemon's store (in a worker thread: files may be large)."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    async def put(self, sha: str, data: bytes | Path, content_type: str) -> None:
        if isinstance(data, Path):
            await asyncio.to_thread(self._put_file, sha, data, content_type)
        else:
            await asyncio.to_thread(self.store.put, data, content_type, sha=sha)

    def _put_file(self, sha: str, path: Path, content_type: str) -> None:
        """Copy a spool file into the store a chunk at a time (hash checked on commit, as every write)."""
        with path.open("rb") as src, self.store.writer(sha, content_type) as dst:
            shutil.copyfileobj(src, dst, 1024 * 1024)

    async def close(self) -> None:
        return None


def offload_events(events: list[dict[str, Any]], store: ArtifactStore, threshold: int | None = None
                   ) -> list[dict[str, Any]]:
    """Imported output events with their large MIME values stored as artifacts (an ``.ipynb`` import: the
    log stays small whatever the file holds)."""
    limit = threshold or threshold_setting()
    for event in events:
        args = event.get("args")
        if event.get("name") in OUTPUT_EVENTS and isinstance(args, dict) and isinstance(args.get("data"), dict):
            data, blobs = offload(args["data"], limit)
            for sha, raw, content_type in blobs:
                store.put(raw, content_type, sha=sha)
            args["data"] = data
    return events
