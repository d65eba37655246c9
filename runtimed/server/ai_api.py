"""REST for AI cells' settings: what ``aiSettingsSet`` set, for the page's provider/model picker.

Writing goes through the log (``aiSettingsSet`` over sync, ``Session.set_ai_settings``); this
only reads. Settings never hold keys (the event refuses them), so they are safe to show.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends

from runtimed.schema import views
from runtimed.server.access import needs, principal
from runtimed.server.daemon import Daemon

PROVIDERS = ("openai", "anthropic")
"""As ``runtimed.agents.providers.PROVIDERS`` (the server does not import the agents' SDKs to list them)."""


def ai_router(daemon: Daemon) -> APIRouter:
    router = APIRouter(tags=["ai"], dependencies=[Depends(principal)])

    @router.get("/api/notebooks/{notebook_id}/ai-settings", dependencies=[needs("viewer", "read the AI settings of")])
    async def ai_settings(notebook_id: str) -> dict[str, Any]:
        """The notebook's AI settings (``notebook``, null when unset) and each cell's own (``cells``), as set."""
        daemon.store.require(notebook_id)
        scopes = await daemon.service(notebook_id).view(views.ai_settings_scopes)
        return {"notebook": scopes.pop("", None), "cells": scopes, "providers": list(PROVIDERS)}

    return router
