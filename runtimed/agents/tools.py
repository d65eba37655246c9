"""The agent tools, each defined once: name, argument model (its JSON schema), description, handler.

Handlers work over ``AsyncSession`` (the agent is a peer of the log like any client) and
return plain :class:`ToolResult` parts; the MCP server (``mcp_server.py``) and AI cells
adapt them to their protocol. Every cell is addressed by its id, every read returns each
cell's revision, and every edit accepts ``expected_revision`` so an agent never clobbers
a change it has not seen. :func:`call_tool` validates arguments, asks a person for
approval when the notebook's policy says so, and turns every failure into a clear error.
"""

from __future__ import annotations

import asyncio
import difflib
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from runtimed.agents import approvals as approval
from runtimed.agents import executions, search
from runtimed.agents.approvals import Progress
from runtimed.agents.render import (
    Paging,
    Part,
    TextPart,
    cell_parts,
    clip,
    merge_text,
    notebook_parts,
    revision,
)
from runtimed.agents.workspace import AgentWorkspace
from runtimed.client.session import AsyncSession
from runtimed.errors import CellNotFoundError, RuntimedError
from runtimed.schema import approvals, views
from runtimed.schema.events import EXECUTABLE_CELL_TYPES, make_event
from runtimed.schema.ids import new_id
from runtimed.schema.limits import DEFAULT_LIMITS

MAX_SOURCE = DEFAULT_LIMITS.max_source_chars
MAX_PATTERN = 10_000
MAX_TIMEOUT = 600.0
IdText = Annotated[str, StringConstraints(min_length=1, max_length=128)]
"""A notebook, cell or execution id as a tool argument."""
T = TypeVar("T")


@dataclass
class ToolResult:
    """What a tool returns: parts for a model, structured data for programs, and whether it failed."""

    content: list[Part]
    structured: dict[str, Any] | None = None
    is_error: bool = False


@dataclass
class ToolContext:
    """One call's context: the agent's workspace and how to tell the caller about progress."""

    workspace: AgentWorkspace
    progress: Progress | None = None

    async def report(self, done: float, total: float | None, message: str) -> None:
        if self.progress is not None:
            await self.progress(done, total, message)


def text(message: str, structured: dict[str, Any] | None = None) -> ToolResult:
    return ToolResult([TextPart(message)], structured)


# --- arguments -----------------------------------------------------------------------------------


ARTIFACT_READ_MAX = 200_000
"""Bytes ``read_artifact`` returns at most in one call."""


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NotebookArgs(Args):
    notebook_id: IdText = Field(..., description="The notebook's id (see list_notebooks).")


class CellArgs(NotebookArgs):
    cell_id: IdText = Field(..., description="The cell's id (from get_notebook); ids never change.")


class GuardedArgs(CellArgs):
    expected_revision: str | None = Field(
        None, max_length=64,
        description="The cell's revision from your last read. If the cell changed since, nothing is done and "
                    "the current source is returned: re-read and redo the change on it.")


class OutputArgs(Args):
    full_output: bool = Field(False, description="Return long outputs in pages of 50,000 characters instead of "
                                                 "head and tail.")
    output_offset: int = Field(0, ge=0, le=1_000_000_000,
                               description="Start long outputs at this character (to read what a truncated "
                                           "output omitted).")

    @property
    def paging(self) -> Paging:
        return Paging(self.full_output, self.output_offset)


class ListNotebooks(Args):
    pass


class CreateNotebook(Args):
    title: str = Field("", max_length=1000, description="The notebook's title.")
    notebook_id: IdText | None = Field(None, description="An id for it (letters, digits, . _ : -); "
                                                             "generated when omitted.")


class OpenNotebook(Args):
    path: str = Field(..., min_length=1, max_length=4096,
                      description="A local .ipynb, .yaml or .yml file (absolute, or relative to the MCP "
                                  "server's working directory).")
    notebook_id: IdText | None = Field(None, description="An id for the new notebook; generated when omitted.")
    title: str | None = Field(None, max_length=1000, description="Its title (default: from the file).")


class GetNotebook(NotebookArgs, OutputArgs):
    include_outputs: bool = Field(True, description="Include the cells' outputs.")


class GetCell(CellArgs, OutputArgs):
    pass


class CreateCell(NotebookArgs):
    source: str = Field("", max_length=MAX_SOURCE, description="The cell's text.")
    cell_type: str = Field("code", pattern="^(code|markdown|raw)$", description="code, markdown or raw.")
    after_cell_id: IdText | None = Field(None, description="Insert just after this cell; at the end when "
                                                               "omitted (move_cell puts it at the top).")


class SetCell(GuardedArgs):
    source: str | None = Field(None, max_length=MAX_SOURCE, description="The new source (the whole text).")
    cell_type: str | None = Field(None, pattern="^(code|markdown|raw)$", description="A new type.")

    @model_validator(mode="after")
    def _something(self) -> SetCell:
        if self.source is None and self.cell_type is None:
            raise ValueError("give source, cell_type or both")
        return self


class ReplaceMatch(GuardedArgs):
    match: str = Field(..., min_length=1, max_length=MAX_SOURCE, description="Exact text to find in the source.")
    replacement: str = Field(..., max_length=MAX_SOURCE, description="Text to put instead.")
    replace_all: bool = Field(False, description="Replace every occurrence (otherwise the match must be unique).")


class ReplaceRegex(GuardedArgs):
    pattern: str = Field(..., min_length=1, max_length=MAX_PATTERN,
                         description="A Python regular expression (inline flags like (?m) or (?i) work).")
    replacement: str = Field(..., max_length=MAX_SOURCE, description="Replacement; \\1 or \\g<name> refer to groups.")
    count: int = Field(0, ge=0, le=1_000_000, description="At most this many replacements; 0 replaces all.")


class DeleteCell(GuardedArgs):
    pass


class MoveCell(CellArgs):
    after_cell_id: IdText | None = Field(None, description="Put the cell just after this one; at the top "
                                                               "when omitted.")


class ExecuteCell(GuardedArgs):
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT,
                           description="Seconds to wait for the result. The cell goes on running after that; "
                                       "get_results picks it up.")


class RunAllCells(NotebookArgs):
    timeout: float = Field(60.0, gt=0, le=MAX_TIMEOUT,
                           description="Seconds to wait for all cells. They go on running after that; "
                                       "get_results with the returned execution_id picks them up.")


class GetResults(NotebookArgs, OutputArgs):
    execution_id: IdText = Field(..., description="From execute_cell or run_all_cells.")
    timeout: float = Field(0.0, ge=0, le=MAX_TIMEOUT, description="Seconds to wait for it to finish (0: now).")


class ReadArtifact(NotebookArgs):
    sha: str = Field(..., pattern="^[0-9a-f]{64}$", description="The artifact's id (a sha256), as an output "
                                                               "names it.")
    offset: int = Field(0, ge=-(10**12), le=10**12, description="The first byte to read; negative counts from "
                                                                "the end (-5000: the last 5,000 bytes).")
    length: int = Field(50_000, ge=1, le=ARTIFACT_READ_MAX, description="Bytes to read (at most 200,000).")


class ExportNotebook(NotebookArgs):
    path: str = Field(..., min_length=1, max_length=4096,
                      description="A local .ipynb, .yaml or .yml path (absolute, or relative to the MCP server's "
                                  "working directory).")
    overwrite: bool = Field(False, description="Replace an existing file.")


class GetHistory(NotebookArgs):
    since_seq: int | None = Field(None, ge=0, description="Events after this seq, oldest first; the latest "
                                                          "events when omitted.")
    limit: int = Field(50, ge=1, le=1000, description="At most this many events.")
    actor_kind: str | None = Field(None, pattern="^(human|agent|runtime|automation|system)$",
                                   description="Only events by this kind of actor.")
    actor_name: str | None = Field(None, max_length=256, description="Only events by the actor of this name.")
    event: str | None = Field(None, max_length=64, description="Only events of this name (e.g. cellSourceEdited).")
    cell_id: IdText | None = Field(None, description="Only events about this cell.")


class NotebookAt(NotebookArgs, OutputArgs):
    seq: int = Field(..., ge=1, description="The seq after which to show the notebook (see get_history).")
    include_outputs: bool = Field(True, description="Include the cells' outputs.")


class SearchNotebooks(Args):
    query: str = Field(..., min_length=1, max_length=1000, description="Text to find (case-insensitive).")
    notebook_ids: list[str] | None = Field(None, max_length=200, description="Only these notebooks.")
    limit: int = Field(20, ge=1, le=200, description="At most this many matching cells.")


# --- the registry --------------------------------------------------------------------------------

Handler = Callable[[ToolContext, Any], Awaitable[ToolResult]]
Preview = Callable[[AsyncSession, Any], tuple[str | None, str | None, str | None]]
"""(cell id, text shown to the person approving, the cell's revision to hold the call to)."""


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    args: type[Args]
    handler: Handler
    level: approvals.Level | None = None
    """What the call does to its notebook (for the approval policy); None for daemon-wide tools."""
    preview: Preview | None = None

    def input_schema(self) -> dict[str, Any]:
        return self.args.model_json_schema()


TOOLS: dict[str, Tool] = {}


def tool(name: str, args: type[Args], level: approvals.Level | None = None,
         preview: Preview | None = None) -> Callable[[Handler], Handler]:
    """Register a handler as a tool; its docstring is the description a model reads."""
    def register(handler: Handler) -> Handler:
        description = " ".join((handler.__doc__ or "").split())
        TOOLS[name] = Tool(name, description, args, handler, level, preview)
        return handler
    return register


def _problems(exc: ValidationError) -> str:
    out = []
    for item in exc.errors():
        where = ".".join(str(p) for p in item["loc"]) or "arguments"
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown argument"
        out.append(f"{where}: {message}")
    return "; ".join(out)


def error(message: str, code: str) -> ToolResult:
    return ToolResult([TextPart(f"Error ({code}): {message}")], {"error": {"code": code, "message": message}}, True)


async def call_tool(ctx: ToolContext, name: str, arguments: dict[str, Any] | None) -> ToolResult:
    """Run one tool call: validate, ask for approval when the policy wants it, run; never raises RuntimedError."""
    found = TOOLS.get(name)
    if found is None:
        return error(f"no tool named {name!r}; the tools are: {', '.join(sorted(TOOLS))}", "unknown_tool")
    try:
        args = found.args.model_validate(arguments or {})
    except ValidationError as exc:
        return error(f"invalid arguments for {name}: {_problems(exc)}", "invalid_arguments")
    try:
        if found.level is not None:
            assert isinstance(args, NotebookArgs)  # every notebook-level tool takes a notebook_id
            session = await ctx.workspace.session(args.notebook_id)
            if approval.needed(session, name, found.level):
                cell_id, shown, held = found.preview(session, args) if found.preview else (None, None, None)
                await approval.request(session, name, args.model_dump(exclude_none=True), cell_id=cell_id,
                                       preview=shown, progress=ctx.progress)
                if held is not None and getattr(args, "expected_revision", "") is None:
                    args = args.model_copy(update={"expected_revision": held})  # run what the person approved
        return await found.handler(ctx, args)
    except RuntimedError as exc:
        return error(exc.message, exc.code)


# --- helpers -------------------------------------------------------------------------------------


def _view(session: AsyncSession, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A projection view on the agent's replica of the notebook."""
    return session.client.replica.view(fn, *args, **kwargs)


def _cell(session: AsyncSession, cell_id: str) -> views.CellRow:
    cell = _view(session, views.cell, cell_id)
    if cell is None:
        raise CellNotFoundError(f"no cell {cell_id!r} in notebook {session.notebook_id!r}; call get_notebook "
                                "for the cell ids")
    return cell


def _guarded(session: AsyncSession, args: GuardedArgs) -> views.CellRow:
    """The cell, if it is still at the revision the agent read."""
    cell = _cell(session, args.cell_id)
    current = revision(cell["source"])
    if args.expected_revision is not None and args.expected_revision != current:
        raise RuntimedError(
            f"cell {args.cell_id} changed since you read it (expected revision {args.expected_revision}, now "
            f"{current}); nothing was changed. Redo your change on its current source:\n"
            f"{clip(cell['source'], Paging(), 'get_cell')}", code="stale_revision")
    return cell


def _diff(old: str, new: str) -> str:
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), "before", "after", n=2)
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines) or "(no change)\n"


def _policy_line(session: AsyncSession) -> str:
    metadata = _view(session, views.notebook_metadata)
    return (f"approval policy: {approvals.policy(metadata)} (calls that need approval wait up to "
            f"{approvals.timeout(metadata):g} s for a person)")


# --- notebooks -----------------------------------------------------------------------------------


@tool("list_notebooks", ListNotebooks)
async def list_notebooks(ctx: ToolContext, a: ListNotebooks) -> ToolResult:
    """List the daemon's notebooks (newest first): id, title, number of cells, head seq, runtime."""
    items = await ctx.workspace.rest("GET", "/api/notebooks")
    lines = []
    for nb in items:
        runtime = nb.get("runtime") or {}
        rt = f", kernel {runtime.get('kernel_name')} ({runtime.get('status')})" if runtime else ""
        lines.append(f"- {nb['id']}: {nb.get('title') or '(untitled)'} — {nb.get('cells')} cells, "
                     f"seq {nb.get('head_seq')}{rt}, updated {nb.get('updated_at')}")
    structured = {"notebooks": [{k: nb.get(k) for k in ("id", "title", "cells", "head_seq", "updated_at")}
                                for nb in items]}
    return text("\n".join(lines) or "no notebooks yet: create_notebook or open_notebook makes one", structured)


@tool("create_notebook", CreateNotebook)
async def create_notebook(ctx: ToolContext, a: CreateNotebook) -> ToolResult:
    """Create an empty notebook (Python kernel) and return its id."""
    body: dict[str, Any] = {"title": a.title, "actor": ctx.workspace.actor,
                            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    if a.notebook_id:
        body["id"] = a.notebook_id
    info = await ctx.workspace.rest("POST", "/api/notebooks", json=body)
    return text(f"created notebook {info['id']} ({a.title or 'untitled'}); add cells with create_cell",
                {"notebook_id": info["id"]})


@tool("open_notebook", OpenNotebook)
async def open_notebook(ctx: ToolContext, a: OpenNotebook) -> ToolResult:
    """Import a local .ipynb or YAML notebook file as a new notebook (its cells, outputs and metadata)."""
    from runtimed.formats import load_notebook, notebook_to_events

    if "://" in a.path:
        raise RuntimedError(f"{a.path!r} is not a local path; give a file path", code="invalid_request")
    path = Path(a.path).expanduser().absolute()
    if not path.is_file():
        raise RuntimedError(f"no such file: {path}", code="not_found")
    nb = await asyncio.to_thread(load_notebook, str(path))
    events = notebook_to_events(nb, title=a.title)
    notebook_id = a.notebook_id or new_id("nb-")
    if await ctx.workspace.exists(notebook_id):
        raise RuntimedError(f"notebook {notebook_id!r} already exists; pick another id", code="notebook_exists")
    limit = DEFAULT_LIMITS.max_batch_events
    try:
        for i in range(0, len(events), limit):
            body = await ctx.workspace.rest("POST", f"/api/notebooks/{notebook_id}/events",
                                            json={"events": events[i:i + limit], "actor": ctx.workspace.actor})
            failed = [r["error"] for r in body["results"] if "error" in r]
            if failed:
                raise RuntimedError(f"cannot import {path}: {failed[0]['message']}", code=failed[0]["code"])
    except RuntimedError:
        if await ctx.workspace.exists(notebook_id):  # nothing half-imported stays behind
            await ctx.workspace.rest("DELETE", f"/api/notebooks/{notebook_id}")
        raise
    cells = sum(e["name"] == "cellCreated" for e in events)
    return text(f"opened {path} as notebook {notebook_id} ({cells} cells); read it with get_notebook",
                {"notebook_id": notebook_id, "cells": cells})


@tool("get_notebook", GetNotebook, "read")
async def get_notebook(ctx: ToolContext, a: GetNotebook) -> ToolResult:
    """Read a whole notebook: every cell in order with its id, type, revision, source and outputs.
    Long outputs show head and tail; get_cell with output_offset reads the rest."""
    session = await ctx.workspace.session(a.notebook_id)
    view = _view(session, views.notebook_view)
    more = f"get_cell(notebook_id='{a.notebook_id}', cell_id='{{cell_id}}')"
    parts = notebook_parts(view, a.paging, more, with_outputs=a.include_outputs, subtitle=_policy_line(session))
    cells = [{"id": c["id"], "cell_type": c["cell_type"], "revision": revision(c["source"]),
              "execution_count": c["execution_count"]} for c in view["cells"]]
    return ToolResult(merge_text(parts), {"notebook_id": a.notebook_id, "head_seq": view.get("head_seq"),
                                          "cells": cells})


def _cell_result(cell: Mapping[str, Any], outputs: list[dict[str, Any]], a: GetCell | None) -> ToolResult:
    paging = a.paging if a is not None else Paging()
    more = f"get_cell(cell_id={cell['id']!r})"
    parts = cell_parts({**cell, "outputs": outputs}, paging, more)
    return ToolResult(parts, {"cell_id": cell["id"], "cell_type": cell["cell_type"], "source": cell["source"],
                              "revision": revision(cell["source"]), "execution_count": cell["execution_count"]})


@tool("get_cell", GetCell, "read")
async def get_cell(ctx: ToolContext, a: GetCell) -> ToolResult:
    """Read one cell: its type, revision, source and outputs (full_output or output_offset for long ones)."""
    session = await ctx.workspace.session(a.notebook_id)
    cell = _cell(session, a.cell_id)
    return _cell_result(cell, _view(session, views.outputs_by_cell, a.cell_id).get(a.cell_id, []), a)


# --- edits ---------------------------------------------------------------------------------------


def _show_source(session: AsyncSession, a: Any) -> tuple[str | None, str | None, str | None]:
    cell = _cell(session, a.cell_id)
    return a.cell_id, cell["source"], revision(cell["source"])


def _show_new_cell(session: AsyncSession, a: CreateCell) -> tuple[str | None, str | None, str | None]:
    if a.after_cell_id is not None:
        _cell(session, a.after_cell_id)
    return None, a.source, None


def _source_edit(transform: Callable[[str, Any], str]) -> tuple[Preview, Handler]:
    """The approval preview (a diff) and the handler of a tool that rewrites a cell's source."""
    def preview(session: AsyncSession, a: Any) -> tuple[str | None, str | None, str | None]:
        cell = _guarded(session, a)
        new = transform(cell["source"], a)
        return a.cell_id, _diff(cell["source"], new), revision(cell["source"])

    async def handler(ctx: ToolContext, a: Any) -> ToolResult:
        session = await ctx.workspace.session(a.notebook_id)
        cell = _guarded(session, a)
        new = transform(cell["source"], a)
        if getattr(a, "cell_type", None) not in (None, cell["cell_type"]):
            await session.set_cell_type(a.cell_id, a.cell_type)
        await session.set_source(a.cell_id, new)
        now = _cell(session, a.cell_id)
        diff = clip(_diff(cell["source"], now["source"]), Paging(), "get_cell")
        return text(f"updated cell {a.cell_id}: revision {revision(cell['source'])} -> {revision(now['source'])}\n"
                    f"{diff}", {"cell_id": a.cell_id, "revision": revision(now["source"])})

    return preview, handler


def _set(source: str, a: SetCell) -> str:
    return source if a.source is None else a.source


def _replace_match(source: str, a: ReplaceMatch) -> str:
    found = source.count(a.match)
    if found == 0:
        raise RuntimedError(f"the text to replace does not occur in cell {a.cell_id}; nothing was changed. Its "
                            f"source (revision {revision(source)}):\n{clip(source, Paging(), 'get_cell')}",
                            code="no_match")
    if found > 1 and not a.replace_all:
        raise RuntimedError(f"the text to replace occurs {found} times in cell {a.cell_id}; nothing was changed. "
                            "Include more context to make it unique, or pass replace_all=true", code="no_match")
    return source.replace(a.match, a.replacement)


def _replace_regex(source: str, a: ReplaceRegex) -> str:
    try:
        new, count = re.compile(a.pattern).subn(a.replacement, source, count=a.count)
    except re.error as exc:
        raise RuntimedError(f"invalid regular expression or replacement: {exc} (pattern {a.pattern!r}); "
                            "nothing was changed", code="invalid_regex") from None
    except IndexError as exc:
        raise RuntimedError(f"invalid replacement {a.replacement!r}: {exc}; nothing was changed",
                            code="invalid_regex") from None
    if count == 0:
        raise RuntimedError(f"the pattern {a.pattern!r} matches nothing in cell {a.cell_id}; nothing was changed. "
                            f"Its source (revision {revision(source)}):\n{clip(source, Paging(), 'get_cell')}",
                            code="no_match")
    return new


_preview_set, _handle_set = _source_edit(_set)
_preview_match, _handle_match = _source_edit(_replace_match)
_preview_regex, _handle_regex = _source_edit(_replace_regex)


@tool("create_cell", CreateCell, "edit", _show_new_cell)
async def create_cell(ctx: ToolContext, a: CreateCell) -> ToolResult:
    """Create a cell after a given cell (or at the end) and return its id and revision."""
    session = await ctx.workspace.session(a.notebook_id)
    index = None
    if a.after_cell_id is not None:
        _cell(session, a.after_cell_id)
        order = [c["id"] for c in _view(session, views.ordered_cells)]
        index = order.index(a.after_cell_id) + 1
    cell_id = await session.create_cell(a.source, a.cell_type, index)
    where = f"after {a.after_cell_id}" if a.after_cell_id else "at the end"
    return text(f"created {a.cell_type} cell {cell_id} {where} (revision {revision(a.source)})",
                {"cell_id": cell_id, "revision": revision(a.source)})


@tool("set_cell", SetCell, "edit", _preview_set)
async def set_cell(ctx: ToolContext, a: SetCell) -> ToolResult:
    """Replace a cell's whole source and/or change its type (code, markdown, raw; a type change clears its
    outputs). Pass expected_revision from your last read so a concurrent edit is never overwritten."""
    return await _handle_set(ctx, a)


@tool("replace_match", ReplaceMatch, "edit", _preview_match)
async def replace_match(ctx: ToolContext, a: ReplaceMatch) -> ToolResult:
    """Replace an exact piece of a cell's source (unique unless replace_all) — smaller and safer than set_cell
    for a local change. Returns the diff and the new revision."""
    return await _handle_match(ctx, a)


@tool("replace_regex", ReplaceRegex, "edit", _preview_regex)
async def replace_regex(ctx: ToolContext, a: ReplaceRegex) -> ToolResult:
    """Replace the matches of a Python regular expression in a cell's source. Returns the diff and the new
    revision; an invalid pattern or no match changes nothing."""
    return await _handle_regex(ctx, a)


@tool("delete_cell", DeleteCell, "edit", _show_source)
async def delete_cell(ctx: ToolContext, a: DeleteCell) -> ToolResult:
    """Delete a cell (its queued executions are cancelled). The log keeps it: notebook_at shows the past."""
    session = await ctx.workspace.session(a.notebook_id)
    _guarded(session, a)
    await session.delete_cell(a.cell_id)
    return text(f"deleted cell {a.cell_id}", {"cell_id": a.cell_id})


@tool("move_cell", MoveCell, "edit")
async def move_cell(ctx: ToolContext, a: MoveCell) -> ToolResult:
    """Move a cell just after another one, or to the top when after_cell_id is omitted."""
    session = await ctx.workspace.session(a.notebook_id)
    _cell(session, a.cell_id)
    if a.after_cell_id is not None:
        _cell(session, a.after_cell_id)
    await session.move_cell(a.cell_id, a.after_cell_id)
    where = f"after {a.after_cell_id}" if a.after_cell_id else "to the top"
    return text(f"moved cell {a.cell_id} {where}", {"cell_id": a.cell_id})


# --- execution -----------------------------------------------------------------------------------


def _show_code(session: AsyncSession, a: ExecuteCell) -> tuple[str | None, str | None, str | None]:
    cell = _guarded(session, a)
    return a.cell_id, cell["source"], revision(cell["source"])


def _show_all_code(session: AsyncSession, a: RunAllCells) -> tuple[str | None, str | None, str | None]:
    cells = [c for c in _view(session, views.ordered_cells) if c["cell_type"] in EXECUTABLE_CELL_TYPES]
    shown = "\n\n".join(f"# cell {c['id']}\n{c['source']}" for c in cells)
    return None, clip(shown, Paging(), "get_notebook"), None


@tool("execute_cell", ExecuteCell, "execute", _show_code)
async def execute_cell(ctx: ToolContext, a: ExecuteCell) -> ToolResult:
    """Run a code cell in the notebook's kernel (started when none runs) and return its outputs. Waits up to
    timeout seconds with progress notifications; a longer run returns the outputs so far and its execution_id:
    call get_results with it later (the cell keeps running). Errors come back as name, value and traceback."""
    session = await ctx.workspace.session(a.notebook_id)
    cell = _guarded(session, a)
    if cell["cell_type"] not in EXECUTABLE_CELL_TYPES:
        raise RuntimedError(f"cell {a.cell_id} is a {cell['cell_type']} cell; only code cells run",
                            code="not_executable")
    queue_id = await session.queue_cell(a.cell_id)
    items = await executions.wait(session, [queue_id], a.timeout, ctx.progress)
    parts, structured = executions.report(session, items, Paging())
    return ToolResult(parts, structured)


@tool("run_all_cells", RunAllCells, "execute", _show_all_code)
async def run_all_cells(ctx: ToolContext, a: RunAllCells) -> ToolResult:
    """Run every code cell in order as one batch (an error cancels the cells after it). Waits up to timeout
    seconds with progress notifications, then returns each execution's status and outputs so far, and an
    execution_id for get_results."""
    session = await ctx.workspace.session(a.notebook_id)
    cells = [c for c in _view(session, views.ordered_cells) if c["cell_type"] in EXECUTABLE_CELL_TYPES]
    if not cells:
        return text(f"notebook {a.notebook_id} has no code cells to run", {"execution_id": None, "done": True,
                                                                          "executions": []})
    batch_id = new_id("b-")
    queue_ids = [new_id("q-") for _ in cells]
    await session.client.commit([make_event("executionRequested", queue_id=q, cell_id=c["id"], batch_id=batch_id)
                                 for q, c in zip(queue_ids, cells, strict=True)])
    items = await executions.wait(session, queue_ids, a.timeout, ctx.progress)
    parts, structured = executions.report(session, items, Paging(), batch_id)
    return ToolResult(parts, structured)


@tool("get_results", GetResults, "read")
async def get_results(ctx: ToolContext, a: GetResults) -> ToolResult:
    """The status and outputs of an execution (or of a run_all_cells batch) by its execution_id; with a
    timeout, wait for it to finish first."""
    session = await ctx.workspace.session(a.notebook_id)
    queue_ids = executions.resolve_ids(session, a.execution_id)
    items = await executions.wait(session, queue_ids, a.timeout, ctx.progress)
    parts, structured = executions.report(session, items, a.paging, a.execution_id)
    return ToolResult(parts, structured)


@tool("interrupt_kernel", NotebookArgs, "edit")
async def interrupt_kernel(ctx: ToolContext, a: NotebookArgs) -> ToolResult:
    """Interrupt the cell running now (it ends with KeyboardInterrupt); queued cells still run."""
    session = await ctx.workspace.session(a.notebook_id)
    await session.interrupt()
    return text(f"interrupt requested for notebook {a.notebook_id}")


@tool("restart_kernel", NotebookArgs, "execute")
async def restart_kernel(ctx: ToolContext, a: NotebookArgs) -> ToolResult:
    """Restart the notebook's kernel: every variable and import is gone (for everyone on the notebook)."""
    session = await ctx.workspace.session(a.notebook_id)
    await session.restart_kernel(timeout_secs=60.0)
    return text(f"kernel of notebook {a.notebook_id} restarted")


# --- files and the past --------------------------------------------------------------------------


@tool("read_artifact", ReadArtifact, "read")
async def read_artifact(ctx: ToolContext, a: ReadArtifact) -> ToolResult:
    """A piece of a large output stored as an artifact (a long stream's omitted text, a big HTML or JSON value),
    by byte offset and length: the outputs name the artifact and its size."""
    session = await ctx.workspace.session(a.notebook_id)
    if a.offset < 0:  # from the end: its size first (a one-byte range answers with it)
        _, size = await asyncio.to_thread(session._fetch_artifact_range, a.sha, 0, 1)
        start = max(0, size + a.offset)
    else:
        start = a.offset
    data, size = await asyncio.to_thread(session._fetch_artifact_range, a.sha, start, a.length)
    end = start + len(data)
    more = f"; read on with offset={end}" if end < size else "; end"
    body = data.decode("utf-8", "replace")  # a range may cut a character in two at either end
    return text(f"[bytes {start:,}-{end:,} of {size:,} of artifact {a.sha}{more}]\n{body}",
                {"sha": a.sha, "offset": start, "end": end, "size": size})


@tool("export_notebook", ExportNotebook, "edit")
async def export_notebook(ctx: ToolContext, a: ExportNotebook) -> ToolResult:
    """Write the notebook to a local .ipynb or YAML file (by extension) and return the absolute path."""
    from runtimed.formats import notebook_format, save_notebook

    if "://" in a.path:
        raise RuntimedError(f"{a.path!r} is not a local path; give a file path", code="invalid_request")
    session = await ctx.workspace.session(a.notebook_id)
    path = Path(a.path).expanduser().absolute()
    notebook_format(str(path))
    if path.exists() and not a.overwrite:
        raise RuntimedError(f"{path} exists; pass overwrite=true to replace it", code="notebook_exists")
    if not path.parent.is_dir():
        raise RuntimedError(f"no such directory: {path.parent}", code="not_found")
    nb = await session.to_ipynb()  # artifact-backed values inlined, as the REST export does
    await asyncio.to_thread(save_notebook, nb, str(path))
    return text(f"wrote {path}", {"path": str(path)})


@tool("get_history", GetHistory, "read")
async def get_history(ctx: ToolContext, a: GetHistory) -> ToolResult:
    """The notebook's event log: who (person, agent, runtime, automation) did what and when, filterable by
    actor kind or name, event name and cell. Seqs work with notebook_at."""
    session = await ctx.workspace.session(a.notebook_id)
    head = (_view(session, views.notebook_info) or {}).get("head_seq") or 0
    filters = {"actor_kind": a.actor_kind, "actor_name": a.actor_name, "event": a.event, "cell_id": a.cell_id}
    events, reached = await search.history(ctx.workspace, a.notebook_id, head, a.since_seq, a.limit, filters)
    lines = [search.history_line(e) for e in events]
    tail = f"\n[scanned to seq {reached} of {head}; since_seq={reached} reads on]" if reached < head else ""
    structured = {"head_seq": head, "events": [{"seq": e["seq"], "ts": e.get("ts"), "name": e["name"],
                                                "actor": e.get("actor"), "args": e.get("args")} for e in events]}
    return text(("\n".join(lines) or "no matching events") + tail, structured)


@tool("notebook_at", NotebookAt, "read")
async def notebook_at(ctx: ToolContext, a: NotebookAt) -> ToolResult:
    """The notebook as it was right after a past seq (cells, sources, outputs), e.g. before someone's change."""
    session = await ctx.workspace.session(a.notebook_id)
    head = (_view(session, views.notebook_info) or {}).get("head_seq") or 0
    if a.seq > head:
        raise RuntimedError(f"seq {a.seq} is after the notebook's head ({head})", code="invalid_seq")
    view = await ctx.workspace.rest("GET", f"/api/notebooks/{a.notebook_id}", params={"at": a.seq})
    more = f"notebook_at(seq={a.seq}) with"
    parts = notebook_parts({**view, "head_seq": a.seq, "runtime": None}, a.paging, more,
                           with_outputs=a.include_outputs)
    cells = [{"id": c["id"], "cell_type": c["cell_type"], "revision": revision(c["source"]), "source": c["source"]}
             for c in view["cells"]]
    return ToolResult(parts, {"seq": a.seq, "cells": cells})


@tool("search_notebooks", SearchNotebooks)
async def search_notebooks(ctx: ToolContext, a: SearchNotebooks) -> ToolResult:
    """Find text (case-insensitive) in the sources and outputs of the daemon's notebooks; returns notebook and
    cell ids with the matching lines."""
    matches, skipped = await search.search(ctx.workspace, a.query, a.notebook_ids, a.limit)
    lines = [f"- {m['notebook_id']} / cell {m['cell_id']} ({m['where']}): " + " | ".join(m["snippets"])
             for m in matches]
    note = (f"\n[{len(skipped)} notebooks not searched (approval policy 'all'): {', '.join(skipped)}]"
            if skipped else "")
    return text(("\n".join(lines) or f"no cell contains {a.query!r}") + note, {"matches": matches,
                                                                                "skipped": skipped})

__all__ = ["TOOLS", "Tool", "ToolContext", "ToolResult", "call_tool"]
