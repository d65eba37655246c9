"""Pure helpers behind the published package's method shapes (no I/O): metadata paths,
completion and history replies, the queue, presence and notebook ids for files."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path
from typing import Any

from runtimed.client.models import CompletionItem, CompletionResult, HistoryEntry, QueueEntry, QueueState
from runtimed.errors import RuntimedError
from runtimed.schema import views


def parse_json_arg(value: Any, what: str) -> Any:
    """A JSON string (the published package's way) or a Python value (ours)."""
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise RuntimedError(f"{what} is not valid JSON ({exc.msg} at position {exc.pos}); pass a JSON string or a "
                            "Python value", code="invalid_request") from None


def metadata_changes(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any]]:
    """``(key, value)`` settings that turn ``old`` into ``new`` (``None`` deletes a key)."""
    changes = [(k, v) for k, v in new.items() if old.get(k) != v or k not in old]
    changes += [(k, None) for k in old if k not in new]
    return changes


def set_at_path(metadata: dict[str, Any], path: list[str], value: Any) -> tuple[str, Any]:
    """The new value of the top-level key that setting ``metadata[path[0]][path[1]]... = value`` changes."""
    if not path or not all(isinstance(p, str) and p for p in path):
        raise RuntimedError("path must be a non-empty list of keys, e.g. ['jupyter', 'source_hidden']",
                            code="invalid_request")
    top = path[0]
    if len(path) == 1:
        return top, value
    root = copy.deepcopy(metadata.get(top))
    root = root if isinstance(root, dict) else {}
    node = root
    for key in path[1:-1]:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    if value is None:
        node.pop(path[-1], None)
    else:
        node[path[-1]] = value
    return top, root


def completion(reply: dict[str, Any]) -> CompletionResult:
    """A kernel's ``complete_reply`` (with IPython's experimental types when present)."""
    types = {t.get("text"): t for t in reply.get("metadata", {}).get("_jupyter_types_experimental", []) or []
             if isinstance(t, dict)}
    items = []
    for match in reply.get("matches", []):
        info = types.get(match, {})
        items.append(CompletionItem(label=match, kind=info.get("type") or None, detail=info.get("signature") or None))
    return CompletionResult(items=items, cursor_start=int(reply["cursor_start"]), cursor_end=int(reply["cursor_end"]),
                            metadata=dict(reply.get("metadata") or {}))


def history(reply: dict[str, Any]) -> list[HistoryEntry]:
    return [HistoryEntry(session=s, line=line, source=src) for s, line, src in reply.get("history", [])]


def queue_state(items: list[views.ExecutionRow]) -> QueueState:
    """The running execution and those waiting (pending or assigned), in queue order."""
    running = [QueueEntry(i["cell_id"], i["queue_id"]) for i in items if i["status"] == "running"]
    waiting = [QueueEntry(i["cell_id"], i["queue_id"]) for i in items if i["status"] in ("pending", "assigned")]
    return QueueState(executing=running[0] if running else None, queued=running[1:] + waiting)


def peer_label(actor: dict[str, Any]) -> str:
    return str(actor.get("name") or actor.get("id") or "")


def remote_cursors(peers: dict[str, dict[str, Any]], own_connection: str | None) -> list[tuple[str, str, str, int, int]]:
    """``(peer id, label, cell id, line, column)`` of every other peer that shows a cursor."""
    out = []
    for connection_id, message in peers.items():
        cursor = message.get("cursor")
        cell_id = message.get("cellId")
        if connection_id == own_connection or not cell_id or not isinstance(cursor, dict):
            continue
        out.append((connection_id, peer_label(message.get("actor") or {}), str(cell_id),
                    int(cursor.get("line", 0)), int(cursor.get("column", 0))))
    return out


def notebook_id_for_file(path: Path) -> str:
    """A stable notebook id for a file: the same path opens the same live notebook."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", path.stem).strip("-.")[:80] or "notebook"
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:10]
    return f"file-{stem}-{digest}"
