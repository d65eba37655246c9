"""The event catalog: every event a notebook log may hold, declared once.

Each event is a pydantic model of its ``args`` registered under its wire name and
version. Wire names are camelCase; Python attributes are snake_case with camelCase
aliases. The server validates pushes with :func:`validate_args`, clients build
events with :func:`make_event`, and the materializer receives the parsed models.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fractional_indexing import FIError, validate_order_key
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)
from pydantic.alias_generators import to_camel

from runtimed.errors import EventRejected

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,127}$"
Id = Annotated[str, StringConstraints(pattern=ID_PATTERN)]

CellType = Literal["code", "markdown", "raw", "ai", "sql"]
EXECUTABLE_CELL_TYPES = frozenset({"code", "ai", "sql"})
ActorKind = Literal["human", "runtime", "agent", "automation", "system"]
OutputType = Literal["stream", "display_data", "execute_result", "error"]
CompletionStatus = Literal["success", "error", "cancelled"]
RuntimeStatus = Literal["starting", "idle", "busy", "restarting", "dead"]
SessionEndReason = Literal["shutdown", "displaced", "lost", "error"]
ApprovalDecision = Literal["approved", "approved_always", "denied"]


_ORDER_KEY_RE = re.compile(r"^[0-9A-Za-z]+$")


def _check_order_key(key: str) -> str:
    # validate_order_key does not check the digits: a key like "a0 " would pass and then crash every
    # client that computes a key next to it.
    if not _ORDER_KEY_RE.match(key):
        raise ValueError("not a fractional index key (only base-62 digits 0-9, A-Z, a-z); generate one with "
                         "runtimed.schema.ordering")
    try:
        validate_order_key(key)
    except FIError as exc:
        raise ValueError(f"not a fractional index key ({exc}); generate one with runtimed.schema.ordering") from exc
    return key


def _check_base64(value: str) -> str:
    try:
        base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not valid base64 ({exc})") from exc
    return value


FractionalIndex = Annotated[str, StringConstraints(min_length=2, max_length=4096), AfterValidator(_check_order_key)]
Base64 = Annotated[str, AfterValidator(_check_base64)]


class Args(BaseModel):
    """Base of every event's arguments: camelCase on the wire, no unknown fields."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    def wire(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


# --- notebook -----------------------------------------------------------------------------------


class NotebookCreated(Args):
    title: str = Field("", max_length=1000)
    kernelspec: dict[str, Any] | None = Field(None, alias="kernelspec")
    language_info: dict[str, Any] | None = Field(None, alias="language_info")


class NotebookMetadataSet(Args):
    key: str = Field(min_length=1, max_length=256)
    value: Any = None


# --- cells --------------------------------------------------------------------------------------


class CellCreated(Args):
    cell_id: Id
    cell_type: CellType
    fractional_index: FractionalIndex
    source: str | None = None
    metadata: dict[str, Any] | None = None
    attachments: dict[str, Any] | None = None
    execution_count: int | None = Field(None, ge=0)


class CellSourceEdited(Args):
    cell_id: Id
    update: Base64


class CellTypeChanged(Args):
    cell_id: Id
    cell_type: CellType


class CellMoved(Args):
    cell_id: Id
    fractional_index: FractionalIndex


class CellMetadataSet(Args):
    cell_id: Id
    key: str = Field(min_length=1, max_length=256)
    value: Any = None


class CellAttachmentsSet(Args):
    cell_id: Id
    attachments: dict[str, Any]


class CellDeleted(Args):
    cell_id: Id


# --- execution ----------------------------------------------------------------------------------


class ExecutionRequested(Args):
    queue_id: Id
    cell_id: Id
    batch_id: Id | None = None


class ExecutionAssigned(Args):
    queue_id: Id
    session_id: Id


class ExecutionStarted(Args):
    queue_id: Id
    session_id: Id
    source: str


class ExecutionError(Args):
    ename: str
    evalue: str = ""
    traceback: list[str] = Field(default_factory=list)


class ExecutionCompleted(Args):
    queue_id: Id
    status: CompletionStatus
    execution_count: int | None = Field(None, ge=0)
    duration_ms: float = Field(0.0, ge=0)
    error: ExecutionError | None = None


class ExecutionCancelRequested(Args):
    queue_id: Id | None = None


class ExecutionRequeued(Args):
    queue_id: Id
    reason: str = Field("", max_length=1000)


# --- outputs ------------------------------------------------------------------------------------

REQUIRED_OUTPUT_FIELDS: dict[str, tuple[str, ...]] = {
    "stream": ("name", "text"),
    "display_data": ("data",),
    "execute_result": ("data",),
    "error": ("ename", "evalue", "traceback"),
}


class OutputAdded(Args):
    output_id: Id
    cell_id: Id
    queue_id: Id | None = None
    output_type: OutputType
    name: Literal["stdout", "stderr"] | None = None
    text: str | None = None
    data: dict[str, Any] | None = None
    metadata: dict[str, Any] | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] | None = None
    execution_count: int | None = Field(None, ge=0)
    display_id: str | None = Field(None, max_length=256)

    @model_validator(mode="after")
    def _fields_of_output_type(self) -> OutputAdded:
        missing = [f for f in REQUIRED_OUTPUT_FIELDS[self.output_type] if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a {self.output_type} output needs {', '.join(missing)}")
        return self


class StreamTextChanged(Args):
    """Rewrite the tail of a stream output: new text = old[:offset] + text."""

    output_id: Id
    offset: int = Field(ge=0)
    text: str


class StreamTailSet(Args):
    """A stream output past the stream cap: its text before ``text`` (``omitted`` characters, ``omitted_bytes``
    of UTF-8) is not in the log; ``data["text/plain"]`` references it as an artifact once it is stored (the
    stream ended). Full text = the artifact's text + ``text`` (the live tail, replaced by each event)."""

    output_id: Id
    text: str
    omitted: int = Field(ge=0)
    omitted_bytes: int = Field(ge=0)
    data: dict[str, Any] | None = None


class DisplayUpdated(Args):
    display_id: str = Field(min_length=1, max_length=256)
    data: dict[str, Any]
    metadata: dict[str, Any] = Field(default_factory=dict)


class OutputsCleared(Args):
    """``execution``: also reset the cell's execution count and its last run's status and duration, as
    JupyterLab's "Clear Outputs" does (a kernel's ``clear_output`` leaves them)."""

    cell_id: Id
    wait: bool = False
    execution: bool = False


# --- runtimes -----------------------------------------------------------------------------------


ASSIGN_WHEN_IDLE = "assign_when_idle"
"""A runtime session capability: a request queued while the session has no work at all (nothing pending, claimed
or running) is assigned to it by the ``executionRequested`` itself, as if claimed in the same append; the runtime
starts it with no claim round trip (a lone ``execute_cell``). Runtimes that do not declare it claim everything."""


class RuntimeSessionStarted(Args):
    session_id: Id
    runtime_id: Id
    kernel_name: str = Field(min_length=1, max_length=256)
    language: str = Field("", max_length=256)
    capabilities: dict[str, Any] = Field(default_factory=dict)
    host: str = Field("", max_length=256)


class RuntimeStatusChanged(Args):
    session_id: Id
    status: RuntimeStatus
    detail: str | None = Field(None, max_length=10_000)


class RuntimeSessionEnded(Args):
    session_id: Id
    reason: SessionEndReason


class RuntimeInterruptRequested(Args):
    pass


class RuntimeRestartRequested(Args):
    pass


class InputRequested(Args):
    queue_id: Id
    prompt: str = ""
    password: bool = False


class InputReplied(Args):
    queue_id: Id
    value: str


# --- widgets (Jupyter comms of the target ``jupyter.widget``) ------------------------------------

WIDGET_TARGET = "jupyter.widget"
"""The comm target ipywidgets and anywidget open; comms of other targets are not recorded."""


class CommBuffer(Args):
    """A binary buffer of a widget's state, at ``path`` in the state: inline base64 or an artifact (large)."""

    path: list[str | int] = Field(max_length=64)
    data: Base64 | None = None
    artifact: str | None = Field(None, pattern=r"^[0-9a-f]{64}$")
    size: int | None = Field(None, ge=0)

    @model_validator(mode="after")
    def _one_source(self) -> CommBuffer:
        if (self.data is None) == (self.artifact is None):
            raise ValueError("a buffer has either data (base64) or an artifact reference (artifact + size)")
        return self


class CommOpened(Args):
    """The kernel opened a widget model (comm_open): its full state. Pushed by the runtime."""

    comm_id: Id
    target_name: str = Field(min_length=1, max_length=256)
    state: dict[str, Any]
    buffers: list[CommBuffer] = Field(default_factory=list)
    cell_id: Id | None = None


class CommStateChanged(Args):
    """The kernel changed a widget's state (comm_msg ``update``, coalesced): merged into the model."""

    comm_id: Id
    state: dict[str, Any]
    buffers: list[CommBuffer] = Field(default_factory=list)


class CommCustomMessage(Args):
    """A custom widget message from the kernel (comm_msg ``custom``): delivered to the views, not stored state."""

    comm_id: Id
    content: Any = None
    buffers: list[CommBuffer] = Field(default_factory=list)


class CommClosed(Args):
    """The kernel closed the comm (``keep`` false: the model is gone), or the kernel itself went away
    (``keep`` true: the model stays with its last state, no longer live)."""

    comm_id: Id
    keep: bool = False


class CommUpdateRequested(Args):
    """A viewer (page, Session) changes a live widget (``state``) or sends it a custom message (``content``);
    the runtime forwards it to the kernel as a comm_msg. A state change applies to the model at once."""

    comm_id: Id
    state: dict[str, Any] | None = None
    content: Any = None
    buffers: list[CommBuffer] = Field(default_factory=list)

    @model_validator(mode="after")
    def _something(self) -> CommUpdateRequested:
        if self.state is None and self.content is None:
            raise ValueError("give state (an update) or content (a custom message)")
        return self


# --- collaboration, AI, approvals ---------------------------------------------------------------


class ActorProfileSet(Args):
    actor_id: Id
    kind: ActorKind
    display_name: str = Field(max_length=256)


class ToolApprovalRequested(Args):
    approval_id: Id
    tool: str = Field(min_length=1, max_length=256)
    arguments: dict[str, Any] = Field(default_factory=dict)
    cell_id: Id | None = None


class ToolApprovalResolved(Args):
    approval_id: Id
    decision: ApprovalDecision


_SECRET_NAME = re.compile(r"api[_-]?key|secret|password|authorization|^token$|(access|auth|bearer|refresh)[_-]?token",
                          re.IGNORECASE)
"""Settings names that hold credentials (``max_tokens`` is not one)."""


class AiSettingsSet(Args):
    cell_id: Id | None = None
    provider: str = Field(max_length=256)
    model: str = Field(max_length=256)
    settings: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _no_secrets(self) -> AiSettingsSet:
        """The log is shared and kept forever: keys belong in the daemon's environment, never here."""
        secret = next((k for k in self.settings if _SECRET_NAME.search(k)), None)
        if secret is not None:
            raise ValueError(f"settings.{secret} looks like a secret: the log keeps it forever; set the "
                             "provider's key in the daemon's environment (OPENAI_API_KEY, ANTHROPIC_API_KEY)")
        return self


# --- the catalog --------------------------------------------------------------------------------


Upcaster = Callable[[dict[str, Any]], dict[str, Any]]
"""Turns the wire args of version N of an event into the wire args of version N + 1."""


@dataclass(frozen=True)
class EventSpec:
    """One version of one event: its args model and, from version 2 on, the upcaster from the one before."""

    name: str
    version: int
    args: type[Args]
    upcast_from_previous: Upcaster | None = None


def _catalog(*specs: EventSpec) -> dict[str, EventSpec]:
    return {spec.name: spec for spec in specs}


CATALOG: dict[str, EventSpec] = _catalog(
    EventSpec("notebookCreated", 1, NotebookCreated),
    EventSpec("notebookMetadataSet", 1, NotebookMetadataSet),
    EventSpec("cellCreated", 1, CellCreated),
    EventSpec("cellSourceEdited", 1, CellSourceEdited),
    EventSpec("cellTypeChanged", 1, CellTypeChanged),
    EventSpec("cellMoved", 1, CellMoved),
    EventSpec("cellMetadataSet", 1, CellMetadataSet),
    EventSpec("cellAttachmentsSet", 1, CellAttachmentsSet),
    EventSpec("cellDeleted", 1, CellDeleted),
    EventSpec("executionRequested", 1, ExecutionRequested),
    EventSpec("executionAssigned", 1, ExecutionAssigned),
    EventSpec("executionStarted", 1, ExecutionStarted),
    EventSpec("executionCompleted", 1, ExecutionCompleted),
    EventSpec("executionCancelRequested", 1, ExecutionCancelRequested),
    EventSpec("executionRequeued", 1, ExecutionRequeued),
    EventSpec("outputAdded", 1, OutputAdded),
    EventSpec("streamTextChanged", 1, StreamTextChanged),
    EventSpec("streamTailSet", 1, StreamTailSet),
    EventSpec("displayUpdated", 1, DisplayUpdated),
    EventSpec("outputsCleared", 1, OutputsCleared),
    EventSpec("runtimeSessionStarted", 1, RuntimeSessionStarted),
    EventSpec("runtimeStatusChanged", 1, RuntimeStatusChanged),
    EventSpec("runtimeSessionEnded", 1, RuntimeSessionEnded),
    EventSpec("runtimeInterruptRequested", 1, RuntimeInterruptRequested),
    EventSpec("runtimeRestartRequested", 1, RuntimeRestartRequested),
    EventSpec("inputRequested", 1, InputRequested),
    EventSpec("inputReplied", 1, InputReplied),
    EventSpec("actorProfileSet", 1, ActorProfileSet),
    EventSpec("toolApprovalRequested", 1, ToolApprovalRequested),
    EventSpec("toolApprovalResolved", 1, ToolApprovalResolved),
    EventSpec("aiSettingsSet", 1, AiSettingsSet),
    EventSpec("commOpened", 1, CommOpened),
    EventSpec("commStateChanged", 1, CommStateChanged),
    EventSpec("commCustomMessage", 1, CommCustomMessage),
    EventSpec("commClosed", 1, CommClosed),
    EventSpec("commUpdateRequested", 1, CommUpdateRequested),
)
"""The current version of every event: what the materializer handles and what readers receive."""

VERSIONS: dict[tuple[str, int], EventSpec] = {(spec.name, spec.version): spec for spec in CATALOG.values()}
"""Every version of every event, current or older: what the log may hold and a client may still push."""


def add_version(spec: EventSpec) -> None:
    """Evolve an event: ``spec`` becomes its current version, and the previous one stays readable.

    The new version must follow the current one and bring the upcaster from it; stored events of
    older versions are upcast step by step on every read and replay (the log itself never changes).
    """
    current = CATALOG.get(spec.name)
    if current is None:
        if spec.version != 1:
            raise ValueError(f"a new event {spec.name} starts at version 1")
    elif spec.version != current.version + 1 or spec.upcast_from_previous is None:
        raise ValueError(f"{spec.name} v{spec.version} must follow v{current.version} and bring its upcaster")
    CATALOG[spec.name] = spec
    VERSIONS[(spec.name, spec.version)] = spec


def upcast(name: str, version: int, args: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Wire args of any known version of an event, upcast to its current version."""
    current = CATALOG[name].version
    while version < current:
        version += 1
        step = VERSIONS[(name, version)].upcast_from_previous
        assert step is not None
        args = step(args)
    return version, args


def is_current(name: str, version: int) -> bool:
    spec = CATALOG.get(name)
    return spec is not None and spec.version == version


RUN_IMPORT_ACTOR = "runt-run"
"""The actor id ``runt run`` imports its notebooks with: how run notebooks are told apart (retention, gc)."""


class Actor(BaseModel):
    """Who appended an event. Recorded on every event: the log is the audit trail."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: Id
    kind: ActorKind
    name: str = Field("", max_length=256)


def _describe(error: ValidationError, name: str) -> str:
    problems = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "args"
        problems.append(f"{where}: {item['msg']}")
    return f"{name}: " + "; ".join(problems)


def validate_args(name: Any, version: Any, args: Any) -> Args:
    """Parse an event's args against the catalog; raise EventRejected naming event, field and problem."""
    spec = CATALOG.get(name) if isinstance(name, str) else None
    if spec is None:
        raise EventRejected(
            f"unknown event name {name!r}; known events: {', '.join(sorted(CATALOG))}", code="unknown_event"
        )
    if not isinstance(version, int) or isinstance(version, bool) or (name, version) not in VERSIONS:
        known = ", ".join(f"v{v}" for (n, v) in sorted(VERSIONS) if n == name)
        raise EventRejected(
            f"{name}: unsupported version {version!r}; this server reads {known} (current v{spec.version})",
            code="unsupported_version",
        )
    if not isinstance(args, dict):
        raise EventRejected(f"{name}: args must be a JSON object, got {type(args).__name__}", code="invalid_args")
    try:
        if version != spec.version:  # an older version: valid as it was, then upcast to the current one
            old = VERSIONS[(name, version)].args.model_validate(args)
            _, args = upcast(name, version, old.wire())
        return spec.args.model_validate(args)
    except ValidationError as exc:
        raise EventRejected(_describe(exc, name), code="invalid_args") from None


def validate_actor(actor: Any) -> Actor:
    try:
        return Actor.model_validate(actor)
    except ValidationError as exc:
        raise EventRejected(_describe(exc, "actor"), code="invalid_actor") from None


_ID_RE = re.compile(ID_PATTERN)


def is_valid_id(value: Any) -> bool:
    return isinstance(value, str) and _ID_RE.fullmatch(value) is not None


def make_event(name: str, /, event_id: str | None = None, **args: Any) -> dict[str, Any]:
    """Build a wire event ``{id, name, v, args}``, validating it locally first.

    ``name`` is positional-only: a stream output's args have a ``name`` of their own.
    """
    from runtimed.schema.ids import new_id

    spec = CATALOG[name]
    parsed = validate_args(name, spec.version, args)
    return {"id": event_id or new_id(), "name": name, "v": spec.version, "args": parsed.wire()}
