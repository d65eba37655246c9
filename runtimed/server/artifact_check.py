"""The append path's artifact preconditions: a reference must name a stored artifact, within the quota.

The materializer stays deterministic (it never looks at the artifact store); this check runs in
``NotebookService.append`` before the store call, so an output that references an artifact the
daemon does not hold is refused with ``artifact_not_found`` and nothing dangling reaches the log.
The per-notebook quota counts the distinct artifacts a notebook's log references (at any seq).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.artifact_refs import COMM_EVENTS, event_refs, refs_in
from runtimed.schema.materializer import Envelope
from runtimed.server.service import NotebookService
from runtimed.store.artifacts import ArtifactStore

DEFAULT_NOTEBOOK_MAX_BYTES = 10 * 1024**3
"""Artifacts one notebook may reference (``RUNTIMED_ARTIFACTS_NOTEBOOK_MAX_BYTES``)."""


def notebook_quota_setting() -> int:
    raw = os.environ.get("RUNTIMED_ARTIFACTS_NOTEBOOK_MAX_BYTES", "").strip()
    try:
        value = int(raw) if raw else DEFAULT_NOTEBOOK_MAX_BYTES
    except ValueError:
        raise RuntimedError(f"RUNTIMED_ARTIFACTS_NOTEBOOK_MAX_BYTES={raw!r} is not a number of bytes",
                            code="invalid_request") from None
    return value if value > 0 else DEFAULT_NOTEBOOK_MAX_BYTES


class ArtifactCheck:
    """Attached to every notebook service of a daemon (``attach``)."""

    def __init__(self, store: ArtifactStore, notebook_max_bytes: int | None = None) -> None:
        self.store = store
        self.notebook_max_bytes = notebook_max_bytes or notebook_quota_setting()
        self._usage: dict[str, dict[str, int]] = {}
        """Per open notebook: the artifacts its log references (sha -> size), loaded on first need."""

    def attach(self, service: NotebookService) -> None:
        service.append_checks.append(self.check)
        service.append_hooks.append(self._on_append)

    def forget(self, notebook_id: str) -> None:
        self._usage.pop(notebook_id, None)

    async def _usage_of(self, service: NotebookService) -> dict[str, int]:
        usage = self._usage.get(service.notebook_id)
        if usage is None:
            usage = self._usage[service.notebook_id] = await service.view(views.artifact_refs)
        return usage

    async def check(self, service: NotebookService, events: Sequence[Any]) -> dict[int, dict[str, Any]]:
        refused: dict[int, dict[str, Any]] = {}
        usage: dict[str, int] | None = None
        added: dict[str, int] = {}
        for index, event in enumerate(events):
            refs = event_refs(event)
            if not refs:
                continue
            if usage is None:
                usage = await self._usage_of(service)
            event_id = str(event.get("id") or "")
            for ref in refs:
                sha = ref["artifact"]
                info = self.store.info(sha)
                if info is None:
                    refused[index] = _refusal(event_id, "artifact_not_found",
                                              f"the output references artifact {sha}, which this daemon does not hold: "
                                              "upload it first (PUT /api/artifacts/{sha256}), then push the event")
                    break
                if info.size != ref["size"]:
                    refused[index] = _refusal(event_id, "artifact_mismatch",
                                              f"the output says artifact {sha} has {ref['size']} bytes; it has "
                                              f"{info.size}")
                    break
                if sha not in usage and sha not in added:
                    total = sum(usage.values()) + sum(added.values())
                    if total + info.size > self.notebook_max_bytes:
                        refused[index] = _refusal(
                            event_id, "artifact_quota",
                            f"notebook {service.notebook_id!r} references {total:,} bytes of artifacts; this output "
                            f"would add {info.size:,} and pass the notebook quota of {self.notebook_max_bytes:,} "
                            "bytes: clear outputs into a new notebook, or raise RUNTIMED_ARTIFACTS_NOTEBOOK_MAX_BYTES")
                        break
                    added[sha] = info.size
        return refused

    def _on_append(self, service: NotebookService, stored: Sequence[Envelope]) -> None:
        usage = self._usage.get(service.notebook_id)
        if usage is None:
            return
        for env in stored:
            if env.name in ("outputAdded", "displayUpdated"):
                for ref in refs_in(getattr(env.args, "data", None)):
                    usage[ref["artifact"]] = ref["size"]
            elif env.name in COMM_EVENTS:  # a widget's large binary buffers
                for ref in event_refs({"name": env.name, "args": env.args.wire()}):
                    usage[ref["artifact"]] = ref["size"]


def _refusal(event_id: str, code: str, message: str) -> dict[str, Any]:
    return {"id": event_id, "error": {"code": code, "message": message}}
