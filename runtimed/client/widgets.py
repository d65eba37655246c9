"""Widgets from Python: read a widget model's state from the document and change it like a viewer would.

``session.widgets.set(model_id, value=7)`` pushes ``commUpdateRequested``: the model changes in the log at
once (every page shows it) and the runtime forwards it to the kernel as a ``comm_msg``, so the kernel's
``slider.value`` is 7 too (its observers run, ``interact`` re-runs). Reads come from the session's replica.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from runtimed.errors import RuntimedError
from runtimed.schema import views
from runtimed.schema.events import make_event

if TYPE_CHECKING:
    from runtimed.client.session import AsyncSession, Session

T = TypeVar("T")


class AsyncWidgets:
    """The widget models of an :class:`~runtimed.AsyncSession`'s notebook (``session.widgets``)."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def list(self, model_name: str | None = None) -> list[views.WidgetRow]:
        """Every model (``comm_id``, ``state``, ``live``, ``cell_id`` …), oldest first; optionally of one
        ``_model_name`` (``"IntSliderModel"``, ``"AnyModel"``)."""
        client = await self._session._connected()
        rows = client.replica.view(views.widgets)
        return [r for r in rows if model_name is None or r["state"].get("_model_name") == model_name]

    async def get(self, model_id: str) -> dict[str, Any]:
        """A model's current state (raises ``comm_not_found`` when the notebook has no such model)."""
        client = await self._session._connected()
        row = client.replica.view(views.widget, model_id)
        if row is None:
            raise RuntimedError(f"no widget model {model_id!r} in this notebook", code="comm_not_found")
        return row["state"]

    async def set(self, model_id: str, **values: Any) -> None:
        """Change a live model's state (the kernel sees it); ``comm_not_live`` when its kernel is gone."""
        await self._session._commit([make_event("commUpdateRequested", comm_id=model_id, state=values)])

    async def send(self, model_id: str, content: Any) -> None:
        """Send a custom message to the model's kernel side (``widget.on_msg`` handlers receive it)."""
        await self._session._commit([make_event("commUpdateRequested", comm_id=model_id, content=content)])

    async def wait(self, model_id: str, timeout: float = 30.0, **values: Any) -> dict[str, Any]:
        """Wait until the model's state has ``values`` (e.g. the kernel answered a change); its state."""
        client = await self._session._connected()

        def matches() -> list[dict[str, Any]]:
            row = client.replica.view(views.widget, model_id)
            if row is not None and all(row["state"].get(k) == v for k, v in values.items()):
                return [row["state"]]
            return []

        return (await client.wait_for(matches, timeout))[0]


class Widgets:
    """The blocking twin of :class:`AsyncWidgets` (``Session.widgets``)."""

    def __init__(self, session: Session) -> None:
        self._session = session
        self._async = AsyncWidgets(session.async_session)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._session._run(coro)

    def list(self, model_name: str | None = None) -> list[views.WidgetRow]:
        return self._run(self._async.list(model_name))

    def get(self, model_id: str) -> dict[str, Any]:
        return self._run(self._async.get(model_id))

    def set(self, model_id: str, **values: Any) -> None:
        self._run(self._async.set(model_id, **values))

    def send(self, model_id: str, content: Any) -> None:
        self._run(self._async.send(model_id, content))

    def wait(self, model_id: str, timeout: float = 30.0, **values: Any) -> dict[str, Any]:
        return self._run(self._async.wait(model_id, timeout, **values))
