"""Widget models as the ``application/vnd.jupyter.widget-state+json`` document nbformat keeps in
``metadata.widgets``: the format nbclient writes (and JupyterLab's "save widget state"), so other tools
render an exported notebook's widgets with their last state."""

from __future__ import annotations

import base64
from collections.abc import Callable
from typing import Any

from runtimed.errors import InvalidNotebookError
from runtimed.schema.views import WidgetRow

WIDGET_STATE_MIME = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW_MIME = "application/vnd.jupyter.widget-view+json"


def widget_state_document(rows: list[WidgetRow], resolve: Callable[[str], bytes] | None = None,
                          base: dict[str, Any] | None = None) -> dict[str, Any] | None:
    """The widget-state document of ``rows`` (over ``base``, an imported one); None when there are no models.

    Buffers held as artifacts are inlined with ``resolve`` (sha -> bytes); without it, as for outputs, the export
    is refused (``artifact_unresolved``) rather than silently missing them."""
    state: dict[str, Any] = dict((base or {}).get("state") or {})
    for row in rows:
        s = row["state"]
        if "_model_name" not in s:
            continue
        entry: dict[str, Any] = {"model_name": s.get("_model_name"), "model_module": s.get("_model_module"),
                                 "model_module_version": s.get("_model_module_version"), "state": s}
        buffers = []
        for b in row["buffers"]:
            if "data" in b:
                buffers.append({"data": b["data"], "encoding": "base64", "path": b["path"]})
            elif resolve is None:
                raise InvalidNotebookError(f"widget {row['comm_id']} has a buffer stored as artifact {b['artifact']}; "
                                           "pass resolve_artifact to export it", code="artifact_unresolved")
            else:
                buffers.append({"data": base64.b64encode(resolve(b["artifact"])).decode(), "encoding": "base64",
                                "path": b["path"]})
        if buffers:
            entry["buffers"] = buffers
        state[row["comm_id"]] = entry
    if not state:
        return None
    return {"state": state, "version_major": 2, "version_minor": 0}
