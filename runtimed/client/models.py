"""The plain objects the bindings return: cells, outputs, execution results.

They are snapshots (dataclasses): reading one never contacts the daemon, except for an output
value stored as an artifact, fetched once when first read (``ArtifactData``). Call
``Session.get_cell`` again to see later changes.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtimed.schema.artifact_refs import from_bytes, is_ref, spilled_ref, stream_text


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


ArtifactFetch = Callable[[str], bytes]
"""Fetches an artifact's bytes by sha256 (the session's REST client)."""


class ArtifactData(dict[str, Any]):
    """An output's MIME bundle whose artifact references are fetched the first time a value is read.

    Opening a notebook costs nothing for large outputs; ``data["image/png"]`` fetches that one value
    (``GET /api/artifacts/{sha}``) and keeps it. ``raw(mime)`` gives the stored reference itself.
    """

    def __init__(self, data: dict[str, Any], fetch: ArtifactFetch) -> None:
        super().__init__(data)
        self._fetch = fetch
        self._refs: dict[str, dict[str, Any]] = {}

    def raw(self, mime: str) -> Any:
        """The value as stored in the event: an artifact reference for an offloaded value."""
        return self._refs.get(mime, dict.__getitem__(self, mime))

    def __getitem__(self, mime: str) -> Any:
        value = dict.__getitem__(self, mime)
        if is_ref(value):
            self._refs[mime] = value
            value = from_bytes(mime, self._fetch(value["artifact"]), value)
            dict.__setitem__(self, mime, value)
        return value

    def get(self, mime: str, default: Any = None) -> Any:
        return self[mime] if dict.__contains__(self, mime) else default

    def values(self) -> list[Any]:  # type: ignore[override]
        return [self[mime] for mime in self]

    def items(self) -> list[tuple[str, Any]]:  # type: ignore[override]
        return [(mime, self[mime]) for mime in self]


@dataclass
class Output:
    """One output of a code cell, shaped like an nbformat output.

    ``output_type`` is ``"stream"`` (``name``, ``text``), ``"display_data"`` or
    ``"execute_result"`` (``data``: MIME type -> value, ``metadata``; execute results also
    have ``execution_count``) or ``"error"`` (``ename``, ``evalue``, ``traceback``).
    Stream text is rendered the way a terminal shows it (carriage returns and backspaces
    applied, ANSI colour codes kept).
    """

    output_type: str
    name: str | None = None
    text: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    metadata: dict[str, Any] = field(default_factory=dict)
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    execution_count: int | None = None
    display_id: str | None = None
    output_id: str | None = None

    @classmethod
    def from_dict(cls, d: dict[str, Any], fetch: ArtifactFetch | None = None) -> Output:
        """Build an Output from an nbformat-style dict (extra keys are ignored); with ``fetch``, artifact
        references in ``data`` resolve to their values when read."""
        if d.get("output_type") == "stream" and d.get("omitted"):
            return SpilledStream.from_content(d, fetch)
        data: dict[str, Any] = dict(d.get("data") or {})
        if fetch is not None and any(is_ref(v) for v in data.values()):
            data = ArtifactData(data, fetch)
        return cls(
            output_type=d["output_type"], name=d.get("name"), text=d.get("text"), data=data,
            metadata=dict(d.get("metadata") or {}), ename=d.get("ename"), evalue=d.get("evalue"),
            traceback=list(d.get("traceback") or []), execution_count=d.get("execution_count"),
            display_id=d.get("display_id"), output_id=d.get("output_id"),
        )

    def to_dict(self) -> dict[str, Any]:
        """The nbformat dict of this output."""
        if self.output_type == "stream":
            return {"output_type": "stream", "name": self.name, "text": self.text or ""}
        if self.output_type == "error":
            return {"output_type": "error", "ename": self.ename or "", "evalue": self.evalue or "",
                    "traceback": list(self.traceback)}
        data = dict(self.data.items()) if isinstance(self.data, ArtifactData) else dict(self.data)
        out: dict[str, Any] = {"output_type": self.output_type, "data": data,
                               "metadata": dict(self.metadata)}
        if self.output_type == "execute_result":
            out["execution_count"] = self.execution_count
        return out

    def __repr__(self) -> str:
        if self.output_type == "stream":
            detail = f"name={self.name!r}, text={_short(self.text or '')!r}"
        elif self.output_type == "error":
            detail = f"ename={self.ename!r}, evalue={_short(self.evalue or '')!r}"
        else:
            detail = f"data=[{', '.join(self.data)}]"
            if self.execution_count is not None:
                detail += f", execution_count={self.execution_count}"
        return f"Output({self.output_type!r}, {detail})"


class SpilledStream(Output):
    """A stream output past the stream cap: the log holds its ``tail`` and the rest is an artifact, fetched the
    first time ``text`` is read (before it is stored, a note stands for it: the stream is still running).
    ``omitted`` characters precede the tail; ``artifact`` is the reference (or None)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._content: dict[str, Any] = {}
        self._fetch: ArtifactFetch | None = None
        self._full: str | None = None
        super().__init__(*args, **kwargs)

    @classmethod
    def from_content(cls, d: dict[str, Any], fetch: ArtifactFetch | None) -> SpilledStream:
        out = cls(output_type="stream", name=d.get("name"), text=d.get("text"), output_id=d.get("output_id"))
        out._content = {k: d.get(k) for k in ("output_type", "text", "data", "omitted")}
        out._fetch = fetch
        return out

    @property
    def text(self) -> str | None:
        if self._full is None:
            self._full = stream_text(self._content, self._fetch if self.artifact is not None else None)
        return self._full

    @text.setter
    def text(self, value: str | None) -> None:
        self.tail = value or ""
        self._full = None
        if hasattr(self, "_content"):
            self._content["text"] = self.tail

    @property
    def omitted(self) -> int:
        return int(self._content.get("omitted") or 0)

    @property
    def artifact(self) -> dict[str, Any] | None:
        return spilled_ref(self._content)

    def __repr__(self) -> str:
        return f"Output('stream', name={self.name!r}, omitted={self.omitted}, tail={_short(self.tail)!r})"


@dataclass
class Cell:
    """A cell as the document held it when it was read."""

    id: str
    cell_type: str
    source: str
    execution_count: int | None = None
    outputs: list[Output] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    position: str = ""
    """The cell's fractional index (cells sort by it)."""

    @property
    def tags(self) -> list[str]:
        """The cell's ``metadata.tags``."""
        tags = self.metadata.get("tags")
        return list(tags) if isinstance(tags, list) else []

    @property
    def metadata_json(self) -> str:
        """The metadata as a JSON string (the published package's spelling)."""
        return json.dumps(self.metadata, sort_keys=True)

    def _jupyter_flag(self, key: str) -> bool:
        jupyter = self.metadata.get("jupyter")
        return bool(jupyter.get(key)) if isinstance(jupyter, dict) else False

    @property
    def is_source_hidden(self) -> bool:
        """``metadata.jupyter.source_hidden`` (JupyterLab's "collapse input")."""
        return self._jupyter_flag("source_hidden")

    @property
    def is_outputs_hidden(self) -> bool:
        """``metadata.jupyter.outputs_hidden`` (JupyterLab's "collapse outputs")."""
        return self._jupyter_flag("outputs_hidden")

    @property
    def is_collapsed(self) -> bool:
        """``metadata.collapsed`` (classic Notebook's output collapse)."""
        return bool(self.metadata.get("collapsed"))

    def __repr__(self) -> str:
        return (f"Cell(id={self.id!r}, cell_type={self.cell_type!r}, source={_short(self.source)!r}, "
                f"execution_count={self.execution_count}, outputs={len(self.outputs)})")


@dataclass
class ExecutionResult:
    """What one execution of a cell produced.

    ``success`` is True when the code ran without an exception; ``status`` is
    ``"success"``, ``"error"`` or ``"cancelled"`` (stopped before or while running, e.g. by
    an earlier error in the same run-all batch).
    """

    cell_id: str
    outputs: list[Output]
    success: bool
    execution_count: int | None = None
    status: str = "success"
    queue_id: str | None = None
    source: str | None = None
    """The source the runtime ran (recorded when the execution started)."""

    @property
    def execution_id(self) -> str | None:
        """The published package's name for :attr:`queue_id`."""
        return self.queue_id

    @property
    def stdout(self) -> str:
        """All stdout text, in order."""
        return "".join(o.text or "" for o in self.outputs if o.output_type == "stream" and o.name == "stdout")

    @property
    def stderr(self) -> str:
        """All stderr text, in order."""
        return "".join(o.text or "" for o in self.outputs if o.output_type == "stream" and o.name == "stderr")

    @property
    def display_data(self) -> list[Output]:
        """The ``display_data`` and ``execute_result`` outputs, in order."""
        return [o for o in self.outputs if o.output_type in ("display_data", "execute_result")]

    @property
    def execute_result(self) -> Output | None:
        """The value of the cell's last expression, if it had one."""
        return next((o for o in self.outputs if o.output_type == "execute_result"), None)

    @property
    def error(self) -> Output | None:
        """The error output, if the cell failed (the last one: a runtime that stops a cell for a
        timeout adds its own after the kernel's ``KeyboardInterrupt``)."""
        return next((o for o in reversed(self.outputs) if o.output_type == "error"), None)

    def __repr__(self) -> str:
        return (f"ExecutionResult(cell_id={self.cell_id!r}, success={self.success}, status={self.status!r}, "
                f"execution_count={self.execution_count}, outputs={len(self.outputs)})")


@dataclass
class ExecutionEvent:
    """One change seen by :meth:`~runtimed.Session.stream_execute` or :meth:`~runtimed.Session.subscribe`.

    ``event_type`` is one of :data:`EVENT_TYPES`. Execution events carry ``queue_id``; ``output``
    events the output as it is now (a growing stream is sent again with the same
    ``output_index``); ``done``/``error`` the final ``status``, ``execution_count`` and, for
    errors, ``error_message``.
    """

    event_type: str
    cell_id: str | None = None
    queue_id: str | None = None
    output: Output | None = None
    output_index: int | None = None
    execution_count: int | None = None
    error_message: str | None = None
    status: str | None = None
    seq: int = 0
    """The log position of the event that caused it."""
    name: str = ""
    """The log event's name (``outputAdded``, ``cellCreated``, ...)."""

    @property
    def execution_id(self) -> str | None:
        """The published package's name for :attr:`queue_id`."""
        return self.queue_id


EVENT_TYPES = ("execution_queued", "execution_started", "output", "done", "error", "kernel_status",
               "cell_created", "cell_changed", "cell_deleted", "outputs_cleared", "metadata_changed")
"""Every ``ExecutionEvent.event_type``: execution events (the first five: ``error`` is a failed or
cancelled execution, ``done`` a successful one) and document events."""


@dataclass
class CompletionItem:
    """One completion the kernel offered."""

    label: str
    kind: str | None = None
    detail: str | None = None
    source: str | None = "kernel"


@dataclass
class CompletionResult:
    """The kernel's answer to :meth:`~runtimed.Session.complete`: replace ``code[cursor_start:cursor_end]``."""

    items: list[CompletionItem]
    cursor_start: int
    cursor_end: int
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def matches(self) -> list[str]:
        """The labels, as the Jupyter protocol names them."""
        return [item.label for item in self.items]


@dataclass
class HistoryEntry:
    """One input of the kernel's history (IPython's ``session``/``line`` numbering)."""

    session: int
    line: int
    source: str


class QueueEntry(str):
    """A queued execution: the cell id (a ``str``, as the Session-era package returned it) that also
    carries ``cell_id`` and ``execution_id`` (as the later package's ``PyQueueEntry`` does)."""

    execution_id: str

    def __new__(cls, cell_id: str, execution_id: str) -> QueueEntry:
        entry = super().__new__(cls, cell_id)
        entry.execution_id = execution_id
        return entry

    @property
    def cell_id(self) -> str:
        return str(self)

    @property
    def queue_id(self) -> str:
        return self.execution_id


@dataclass
class QueueState:
    """What the notebook's runtime is doing: the running execution and those waiting, in order."""

    executing: QueueEntry | None
    queued: list[QueueEntry]


@dataclass
class NotebookConnectionInfo:
    """What a session is connected to (the published package's ``connection_info``)."""

    notebook_id: str
    cell_count: int
    connection_id: str | None = None
    url: str = ""
    protocol: str = "runtimed-sync"
    protocol_version: int | None = 1
    daemon_version: str | None = None
    needs_trust_approval: bool = False


__all__ = ["EVENT_TYPES", "NotebookConnectionInfo", "Cell", "CompletionItem", "CompletionResult", "ExecutionEvent", "ExecutionResult",
           "HistoryEntry", "Output", "QueueEntry", "QueueState"]
