"""Jupyter ``.ipynb`` import and export.

Import turns a notebook file into the wire events that create it in an empty log,
so an imported notebook is an ordinary log like any other. Export reads the
projection (never the events) and writes nbformat 4.5, inlining artifacts again.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import nbformat
from nbformat import v4
from nbformat.validator import normalize

from runtimed.errors import EventRejected, InvalidNotebookError
from runtimed.formats.widget_state import WIDGET_STATE_MIME, widget_state_document
from runtimed.schema import views
from runtimed.schema.artifact_refs import from_bytes, is_ref, omitted_note, spilled_ref
from runtimed.schema.events import is_valid_id, make_event
from runtimed.schema.ids import new_id
from runtimed.schema.ordering import keys_between
from runtimed.schema.views import Reader

NBFORMAT_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ESCAPE_PREFIX = "nb:"
"""nbformat ids our charset refuses (leading '-' or '_') are imported as ``nb:<id>`` and exported back."""
NATIVE_TYPE_KEY = "runtimed"
"""Cell metadata key remembering a cell type nbformat lacks (ai, sql); import restores it."""
TRANSIENT_METADATA = ("orig_nbformat", "orig_nbformat_minor", "signature")
NOTEBOOK_CREATED_KEYS = ("kernelspec", "language_info")
AI_SETTINGS_KEY = "ai"
"""Under ``runtimed`` metadata (the notebook's, an AI cell's): its ``aiSettingsSet`` {provider, model, settings}."""
OUTPUT_FIELDS = ("name", "text", "data", "metadata", "ename", "evalue", "traceback")

ArtifactResolver = Callable[[str], Any]


# --- reading --------------------------------------------------------------------------------------


def _json_error(exc: json.JSONDecodeError) -> InvalidNotebookError:
    if not exc.doc.strip():
        return InvalidNotebookError("not a notebook: the file is empty")
    return InvalidNotebookError(f"not valid JSON: line {exc.lineno} column {exc.colno}: {exc.msg}")


def _path(parts: Any) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "notebook"


def read_ipynb(data: str | bytes) -> nbformat.NotebookNode:
    """Parse a notebook of any nbformat version, upgrade it to 4.5 and validate it."""
    if isinstance(data, bytes | bytearray):
        try:
            data = bytes(data).decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidNotebookError(f"not a notebook: not UTF-8 text ({exc})") from None
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as exc:
        raise _json_error(exc) from None
    if not isinstance(raw, dict):
        raise InvalidNotebookError(
            f"not a notebook: the top level is a JSON {type(raw).__name__}, expected an object"
        )
    if "nbformat" not in raw:
        raise InvalidNotebookError("not a notebook: the top-level object has no 'nbformat' key")
    major, minor = raw.get("nbformat"), raw.get("nbformat_minor", 0)
    if not isinstance(major, int) or major not in nbformat.versions or not isinstance(minor, int):
        raise InvalidNotebookError(
            f"unsupported nbformat version {major!r}.{minor!r}; this reads versions 1 to 4"
        )
    try:
        nb = nbformat.versions[major].to_notebook_json(raw, minor=minor)
        nb = nbformat.convert(nb, 4)
        if nb.get("nbformat_minor", 0) < v4.nbformat_minor:
            nb = v4.upgrade(nb, from_version=4, from_minor=nb.get("nbformat_minor", 0))
    except Exception as exc:  # nbformat raises ValueError, KeyError, AttributeError... on malformed input
        raise InvalidNotebookError(
            f"invalid nbformat {major}.{minor} notebook: {type(exc).__name__}: {exc}"
        ) from None
    return _validated(nb)


def _validated(nb: Any) -> nbformat.NotebookNode:
    """Repair what nbformat repairs (missing or duplicate cell ids), then validate strictly."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _changes, nb = normalize(nb)
        nb = nbformat.from_dict(nb)
        for key in TRANSIENT_METADATA:
            nb.get("metadata", {}).pop(key, None)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = _path(getattr(exc, "absolute_path", ()))
        raise InvalidNotebookError(f"invalid notebook at {where}: {getattr(exc, 'message', exc)}") from None
    except Exception as exc:
        raise InvalidNotebookError(f"invalid notebook: {type(exc).__name__}: {exc}") from None
    return nb


def _import_cell_id(cell_id: Any) -> str:
    if not isinstance(cell_id, str) or not cell_id:
        return new_id("c")
    return cell_id if is_valid_id(cell_id) else ESCAPE_PREFIX + cell_id


def _join(source: Any) -> str:
    return "".join(source) if isinstance(source, list) else (source or "")


def notebook_to_events(nb: Any, *, title: str | None = None) -> list[dict[str, Any]]:
    """The wire events that create ``nb`` in an empty log, in order (notebookCreated first)."""
    metadata = dict(nb.get("metadata") or {})
    if title is None:
        title = metadata.get("title") if isinstance(metadata.get("title"), str) else None
    created = {k: metadata.pop(k) for k in NOTEBOOK_CREATED_KEYS if isinstance(metadata.get(k), dict)}
    for key in TRANSIENT_METADATA:
        metadata.pop(key, None)
    ai = _pop_ai_settings(metadata, NATIVE_TYPE_KEY)
    try:
        events = [make_event("notebookCreated", title=(title or "Untitled")[:1000], **created)]
        events += [
            make_event("notebookMetadataSet", key=k, value=v) for k, v in metadata.items() if v is not None
        ]
        if ai is not None:
            events.append(_ai_settings_event(ai, None))
    except EventRejected as exc:
        raise InvalidNotebookError(f"metadata: cannot import: {exc.message}") from None
    cells = nb.get("cells") or []
    for i, (cell, index) in enumerate(zip(cells, keys_between(None, None, len(cells)), strict=True)):
        try:
            events += _cell_events(cell, index)
        except EventRejected as exc:  # a valid nbformat value our catalog refuses (e.g. a stream named "log")
            raise InvalidNotebookError(f"cells[{i}]: cannot import: {exc.message}") from None
    return events


def _pop_ai_settings(metadata: dict[str, Any], key: str) -> Any:
    """Take ``metadata[key]["ai"]`` out (it becomes an ``aiSettingsSet``, not metadata); None when absent."""
    native = metadata.get(key)
    if not isinstance(native, dict) or AI_SETTINGS_KEY not in native:
        return None
    native = dict(native)
    ai = native.pop(AI_SETTINGS_KEY)
    if native:
        metadata[key] = native
    else:
        metadata.pop(key)
    return ai


def _ai_settings_event(ai: Any, cell_id: str | None) -> dict[str, Any]:
    if not isinstance(ai, dict) or not isinstance(ai.get("provider"), str) or not isinstance(ai.get("model"), str):
        raise InvalidNotebookError(f"{'cell ' + cell_id if cell_id else 'notebook'} metadata runtimed.ai: expected "
                                   "{provider, model, settings}, e.g. {provider: openai, model: gpt-4o-mini}")
    return make_event("aiSettingsSet", cell_id=cell_id, provider=ai["provider"], model=ai["model"],
                      settings=ai.get("settings") or {})


def _cell_events(cell: Any, index: str) -> list[dict[str, Any]]:
    cell_id = _import_cell_id(cell.get("id"))
    cell_type = cell.get("cell_type", "code")
    metadata = copy.deepcopy(dict(cell.get("metadata") or {}))
    native = metadata.get(NATIVE_TYPE_KEY)
    source, outputs, count = _join(cell.get("source")), cell.get("outputs") or [], cell.get("execution_count")
    ai = None
    if isinstance(native, dict) and native.get("cell_type") in ("ai", "sql"):
        native = dict(native)
        cell_type = native.pop("cell_type")
        ai = native.pop(AI_SETTINGS_KEY, None) if cell_type == "ai" else None
        if cell_type == "ai" and isinstance(native.get("prompt"), str):  # exported as markdown (_export_ai_cell)
            source = native.pop("prompt")
            saved, count = native.pop("outputs", None), native.pop("execution_count", None)
            outputs = saved if isinstance(saved, list) else []
        if native:
            metadata[NATIVE_TYPE_KEY] = native
        else:
            metadata.pop(NATIVE_TYPE_KEY)
    args: dict[str, Any] = {
        "cellId": cell_id,
        "cellType": cell_type,
        "fractionalIndex": index,
        "source": source,
        "metadata": metadata,
    }
    if cell.get("attachments") is not None:
        args["attachments"] = cell["attachments"]
    if count is not None:
        args["executionCount"] = count
    events = [make_event("cellCreated", **args)]
    if ai is not None:
        events.append(_ai_settings_event(ai, cell_id))
    events += [_output_event(cell_id, output) for output in outputs]
    return events


def _output_event(cell_id: str, output: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "outputId": new_id("o"),
        "cellId": cell_id,
        "outputType": output.get("output_type"),
    }
    for field in OUTPUT_FIELDS:
        if output.get(field) is not None:
            args[field] = output[field]
    if "text" in args:
        args["text"] = _join(args["text"])
    if isinstance(args.get("data"), dict):
        args["data"] = {
            mime: _join(v) if isinstance(v, list) and not _is_json_mime(mime) else v
            for mime, v in args["data"].items()
        }
    if output.get("output_type") == "execute_result" and output.get("execution_count") is not None:
        args["executionCount"] = output["execution_count"]
    display_id = (output.get("transient") or {}).get("display_id")
    if display_id:
        args["displayId"] = display_id
    return make_event("outputAdded", **args)


# --- writing --------------------------------------------------------------------------------------


def _is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))




def _export_ids(cell_ids: list[str]) -> dict[str, str]:
    """Map our cell ids to nbformat ids: valid ones unchanged, others sanitized, always unique."""
    mapping: dict[str, str] = {}
    used: set[str] = set()
    for cid in cell_ids:
        if NBFORMAT_ID.match(cid):
            mapping[cid] = cid
            used.add(cid)
    for cid in cell_ids:
        if cid in mapping:
            continue
        stripped = cid[len(ESCAPE_PREFIX) :] if cid.startswith(ESCAPE_PREFIX) else ""
        if NBFORMAT_ID.match(stripped) and stripped not in used:
            candidate = stripped
        else:
            candidate = re.sub(r"[^a-zA-Z0-9_-]", "-", cid)[:64]
            if candidate in used or len(cid) > 64:
                candidate = f"{candidate[:55]}-{hashlib.sha256(cid.encode()).hexdigest()[:8]}"
            n = 1
            while candidate in used:  # only on a contrived collision
                candidate = f"{candidate[:55]}-{hashlib.sha256(f'{cid}{n}'.encode()).hexdigest()[:8]}"
                n += 1
        mapping[cid] = candidate
        used.add(candidate)
    return mapping


def _inline(mime: str, value: Any, resolve: ArtifactResolver | None) -> Any:
    """The value itself: an artifact reference is resolved to the exact value it was made from."""
    if not is_ref(value) or (resolve is None and _is_json_mime(mime) and set(value) == {"artifact", "size"}):
        return value  # without a resolver, a JSON value of that bare shape may be data, not a reference
    if resolve is None:
        raise InvalidNotebookError(
            f"output {mime} is stored as artifact {value['artifact']}; pass resolve_artifact to export it",
            code="artifact_unresolved",
        )
    resolved = resolve(value["artifact"])
    if isinstance(resolved, bytes | bytearray):
        return from_bytes(mime, bytes(resolved), value)
    return resolved


def _export_output(item: dict[str, Any], resolve: ArtifactResolver | None) -> dict[str, Any]:
    if item.get("output_type") == "stream":  # a spilled stream: its omitted text (an artifact) + its tail
        ref = spilled_ref(item)
        head = _inline("text/plain", ref, resolve) if ref is not None else omitted_note(item)
        return {"output_type": "stream", "name": item.get("name"), "text": head + (item.get("text") or "")}
    out = {k: v for k, v in item.items() if k not in ("output_id", "display_id")}
    if isinstance(out.get("data"), dict):
        out["data"] = {mime: _inline(mime, v, resolve) for mime, v in out["data"].items()}
    if out["output_type"] in ("display_data", "execute_result"):
        out.setdefault("metadata", {})
    return out


def _export_cell(
    c: Mapping[str, Any], cell_id: str, outputs: list[dict[str, Any]], resolve: ArtifactResolver | None,
    ai: dict[str, Any] | None = None,
):
    metadata = c["metadata"] or {}
    cell_type = c["cell_type"]
    if cell_type == "ai":
        return _export_ai_cell(c, cell_id, outputs, resolve, ai)
    if cell_type == "sql":
        native = dict(metadata.get(NATIVE_TYPE_KEY) or {})
        metadata = {**metadata, NATIVE_TYPE_KEY: {**native, "cell_type": cell_type}}
        cell_type = "code"
    elif cell_type not in ("code", "markdown"):
        cell_type = "raw"
    cell: dict[str, Any] = {
        "id": cell_id,
        "cell_type": cell_type,
        "metadata": metadata,
        "source": c["source"],
    }
    if cell_type == "code":
        cell["execution_count"] = c["execution_count"]
        cell["outputs"] = [_export_output(o, resolve) for o in outputs]
    elif c["attachments"] is not None:  # nbformat allows attachments on markdown and raw cells only
        cell["attachments"] = c["attachments"]
    return cell


def _export_ai_cell(
    c: Mapping[str, Any], cell_id: str, outputs: list[dict[str, Any]], resolve: ArtifactResolver | None,
    ai: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An AI cell as a markdown cell: prompt and answer readable in any Jupyter; the prompt, the outputs (answer
    and tool steps) and the execution count kept in its ``runtimed`` metadata, so an import restores the cell."""
    metadata = c["metadata"] or {}
    exported = [_export_output(o, resolve) for o in outputs]
    answer = "\n\n".join(_join(o["data"]["text/markdown"]) for o in exported
                          if "text/markdown" in (o.get("data") or {}))
    native = {**dict(metadata.get(NATIVE_TYPE_KEY) or {}), "cell_type": "ai", "prompt": c["source"],
              "outputs": exported, "execution_count": c["execution_count"]}
    if ai is not None:
        native[AI_SETTINGS_KEY] = ai
    return {
        "id": cell_id,
        "cell_type": "markdown",
        "metadata": {**metadata, NATIVE_TYPE_KEY: native},
        "source": f"{c['source']}\n\n---\n\n{answer}" if answer else c["source"],
    }


def notebook_from_projection(
    conn: Reader, *, resolve_artifact: ArtifactResolver | None = None
) -> nbformat.NotebookNode:
    """An nbformat 4.5 notebook of the projection on ``conn``, valid for ``nbformat.validate``.

    Built as plain data and validated once: nbformat's per-cell constructors validate each cell
    with the slow schema validator (seconds for a few thousand cells).
    """
    cells = views.ordered_cells(conn)
    outputs = views.outputs_by_cell(conn)
    ids = _export_ids([c["id"] for c in cells])
    metadata = views.notebook_metadata(conn)
    ai = views.ai_settings_scopes(conn)
    if "" in ai:  # the notebook's AI settings travel in its runtimed metadata; an import restores them
        native = metadata.get(NATIVE_TYPE_KEY)
        metadata[NATIVE_TYPE_KEY] = {**(native if isinstance(native, dict) else {}), AI_SETTINGS_KEY: ai[""]}
    widgets = views.widgets(conn)
    if widgets:  # the models' current state, over the one an import brought (nbclient's format)
        imported = (metadata.get("widgets") or {}).get(WIDGET_STATE_MIME)
        resolve = None if resolve_artifact is None else (lambda sha: _artifact_bytes(resolve_artifact, sha))
        document = widget_state_document(widgets, resolve, imported if isinstance(imported, dict) else None)
        if document is not None:
            metadata = {**metadata, "widgets": {WIDGET_STATE_MIME: document}}
    nb = nbformat.from_dict(
        {
            "nbformat": v4.nbformat,
            "nbformat_minor": v4.nbformat_minor,
            "metadata": metadata,
            "cells": [
                _export_cell(c, ids[c["id"]], outputs.get(c["id"], []), resolve_artifact, ai.get(c["id"]))
                for c in cells
            ],
        }
    )
    try:
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        where = _path(getattr(exc, "absolute_path", ()))
        raise InvalidNotebookError(f"export produced an invalid notebook at {where}: {exc.message}") from None
    return nb


def _artifact_bytes(resolve: ArtifactResolver, sha: str) -> bytes:
    value = resolve(sha)
    return value if isinstance(value, bytes) else str(value).encode()


def write_ipynb(nb: Any) -> str:
    """The notebook as ``.ipynb`` JSON text (nbformat's layout, trailing newline)."""
    return nbformat.writes(nbformat.from_dict(nb), version=4) + "\n"
