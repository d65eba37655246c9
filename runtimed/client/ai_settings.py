"""AI cells' settings on a Session: which provider and model answer an ``ai`` cell (``aiSettingsSet``).

Mixed into :class:`~runtimed.client.session.AsyncSession` and ``Session`` (kept out of
session.py, which is long enough). Settings are events in the notebook's log, shared with
every peer and kept forever: API keys never go here (the event refuses them); the daemon's
environment supplies them (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``).
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event

if TYPE_CHECKING:
    from runtimed.client.session import AsyncSession
    from runtimed.client.sync import SyncClient

T = TypeVar("T")
AiSettings = dict[str, Any]
"""``{"provider": "openai" | "anthropic", "model": str, "settings": {"base_url", "temperature", "max_tokens",
"images", ...}}``."""


class AsyncAiSettings:
    """``set_ai_settings`` / ``ai_settings`` of :class:`AsyncSession`."""

    if TYPE_CHECKING:
        async def _connected(self) -> SyncClient: ...

        async def _commit(self, events: list[dict[str, Any]]) -> list[int]: ...

    async def set_ai_settings(self, provider: str, model: str, settings: dict[str, Any] | None = None, *,
                              cell_id: str | None = None) -> None:
        """Choose the model that answers this notebook's AI cells, or one cell's (``cell_id``).

        A cell's settings override the notebook's key by key (its provider and model, and each key
        of ``settings``); for a cell, an empty provider or model keeps the notebook's
        (``set_ai_settings("", "", cell_id=c)`` puts the cell back on the notebook's model). ``settings``: ``base_url`` (an OpenAI-compatible server such as Ollama's
        ``http://127.0.0.1:11434/v1``), ``temperature`` (openai), ``max_tokens`` (anthropic),
        ``images`` (false for a text-only model).

        Raises:
            RuntimedError: ``provider`` or ``model`` is empty for the notebook (``invalid_args``).
            EventRejected: the settings look like a credential, or ``cell_id`` is not a cell.
        """
        if cell_id is None and (not provider or not model):
            raise RuntimedError("set_ai_settings needs a provider ('openai' or 'anthropic') and a model name",
                                code="invalid_args")
        await self._commit([make_event("aiSettingsSet", cell_id=cell_id, provider=provider, model=model,
                                       settings=dict(settings or {}))])

    async def ai_settings(self, cell_id: str | None = None) -> AiSettings | None:
        """The settings that apply to the notebook's AI cells, or to one cell (its own merged over the
        notebook's); None when none are set (running an AI cell then fails with ``AiSettingsError``)."""
        client = await self._connected()
        return client.replica.view(views.ai_settings, cell_id)


class SyncAiSettings:
    """``set_ai_settings`` / ``ai_settings`` of the blocking ``Session``."""

    if TYPE_CHECKING:
        _async: AsyncSession

        def _run(self, coro: Coroutine[Any, Any, T]) -> T: ...

    def set_ai_settings(self, provider: str, model: str, settings: dict[str, Any] | None = None, *,
                        cell_id: str | None = None) -> None:
        """Choose the model for this notebook's AI cells or one cell's (see :meth:`AsyncSession.set_ai_settings`)."""
        self._run(self._async.set_ai_settings(provider, model, settings, cell_id=cell_id))

    def ai_settings(self, cell_id: str | None = None) -> AiSettings | None:
        """The AI settings that apply (see :meth:`AsyncSession.ai_settings`)."""
        return self._run(self._async.ai_settings(cell_id))
