"""The artifact sink of daemon-managed runtimes: the daemon's own store, written in process."""

from __future__ import annotations

import asyncio

from runtimed.store.artifacts import ArtifactStore


class StoreSink:
    """Writes a managed runtime's artifacts into the daemon's store (in a worker thread: files may be large)."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store

    async def put(self, sha: str, data: bytes, content_type: str) -> None:
        await asyncio.to_thread(self.store.put, data, content_type, sha=sha)

    async def close(self) -> None:
        return None
