"""AI cells: a model that reads the notebook above it, answers in the cell, and works through the agent tools.

The notebook's runtime agent runs an ``ai`` cell like a code cell (queue order, cancel,
interrupt and timeouts apply); it calls :class:`AiCellExecutor` (injected by the daemon:
the runtime layer does not know about agents). The executor builds the context
(:func:`build_messages`, deterministic), streams the answer into one markdown display
output (updated at most every ``UPDATE_INTERVAL``), and runs the model's tool calls through
``call_tool`` with the notebook's approval policy, each recorded as an output of MIME
``application/vnd.runtimed.tool-call+json``. Cells the model asks to run are run by the
same runtime agent meanwhile (``serve``). At most ``MAX_TOOL_CALLS`` calls per execution.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from runtimed.agents.providers import Message, Provider, ProviderError, make_provider
from runtimed.agents.render import MAX_IMAGES, ImagePart, Paging, TextPart, cell_parts
from runtimed.agents.tools import TOOLS, ToolContext, call_tool
from runtimed.agents.workspace import AgentWorkspace, agent_actor
from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.sync import SyncClient
from runtimed.schema import views
from runtimed.schema.ids import new_id

TOOL_CALL_MIME = "application/vnd.runtimed.tool-call+json"
MAX_TOOL_CALLS = 20
UPDATE_INTERVAL = 0.1
"""Seconds between two updates of the streamed answer (the number of events stays bounded)."""
MAX_RESULT_CHARS = 20_000
"""Characters of a tool result sent back to the model and recorded in the cell."""
AI_TOOLS = ("get_notebook", "get_cell", "create_cell", "set_cell", "replace_match", "delete_cell", "move_cell",
            "execute_cell", "get_results")
"""The tools a model in an AI cell may call, always on its own notebook."""
SYSTEM_PROMPT = (
    "You are an assistant inside a computational notebook (runtimed). The user writes a prompt in an AI cell; "
    "you see the cells above it with their sources and outputs. Answer in Markdown. You can read, create, edit "
    "and run cells with the tools; cells are addressed by id. Run code to check facts rather than guessing."
)

Output = Callable[[str, dict[str, Any]], None]
"""``OutputWriter.on_output``: (kind, nbformat-shaped content)."""


def _answer(outputs: list[dict[str, Any]]) -> str:
    """An AI cell's answer: the text of its markdown outputs."""
    texts = []
    for output in outputs:
        value = (output.get("data") or {}).get("text/markdown")
        if value:
            texts.append(value if isinstance(value, str) else "".join(value))
    return "\n\n".join(texts)


def build_messages(view: dict[str, Any], cell_id: str, *, images: bool = True) -> list[Message]:
    """The conversation for the AI cell ``cell_id`` of a notebook view: deterministic (pinned by a test).

    Earlier AI cells are earlier turns (their prompt, their answer); the last user message holds the
    cells above the AI cell (rendered as the MCP tools render them) and its prompt. Image outputs become
    image parts (``{"type": "image", "mime_type", "data"}``, the content then a list of parts) unless
    ``images`` is False (a model that takes text only)."""
    messages: list[Message] = [{"role": "system", "content": f"{SYSTEM_PROMPT}\nNotebook id: {view.get('id')}."}]
    context: list[str] = []
    pictures: list[ImagePart] = []
    budget = [MAX_IMAGES]
    prompt = ""
    for cell in view.get("cells") or []:
        if cell["id"] == cell_id:
            prompt = cell.get("source") or ""
            break
        if cell["cell_type"] == "ai":
            messages.append({"role": "user", "content": cell.get("source") or ""})
            messages.append({"role": "assistant", "content": _answer(cell.get("outputs") or []) or "(no answer)"})
            continue
        for part in cell_parts(cell, Paging(), f"get_cell(cell_id={cell['id']!r})", images=budget):
            if isinstance(part, TextPart):
                context.append(part.text)
            elif images:
                pictures.append(part)
                context.append(f"(image {len(pictures)} of this message: {part.mime_type})")
            else:
                context.append(f"({part.mime_type} image not sent: the model takes text only)")
    above = "\n".join(context) if context else "(no cells above this one)"
    text = f"# The notebook above this AI cell ({cell_id})\n{above}\n\n# Prompt\n{prompt}"
    if not pictures:
        messages.append({"role": "user", "content": text})
    else:
        messages.append({"role": "user", "content": [{"type": "text", "text": text}, *(
            {"type": "image", "mime_type": p.mime_type, "data": p.data} for p in pictures)]})
    return messages


def tool_specs() -> list[dict[str, Any]]:
    """The AI tools' JSON schemas without ``notebook_id`` (the executor fills it in)."""
    specs = []
    for name in AI_TOOLS:
        found = TOOLS[name]
        schema = found.input_schema()
        schema["properties"] = {k: v for k, v in schema.get("properties", {}).items() if k != "notebook_id"}
        schema["required"] = [r for r in schema.get("required", []) if r != "notebook_id"]
        specs.append({"name": name, "description": found.description, "parameters": schema})
    return specs


class _Answer:
    """The streamed answer: one markdown display output, updated at most every UPDATE_INTERVAL seconds."""

    def __init__(self, output: Output) -> None:
        self.output = output
        self.display_id: str | None = None
        self.text = ""
        self.sent = ""
        self.last = 0.0

    def start_turn(self) -> None:
        self.flush()
        self.display_id, self.text, self.sent = None, "", ""

    async def add(self, chunk: str) -> None:
        self.text += chunk
        if time.monotonic() - self.last >= UPDATE_INTERVAL:
            self.flush()

    def flush(self) -> None:
        if self.text == self.sent:
            return
        content = {"data": {"text/markdown": self.text}, "metadata": {}}
        if self.display_id is None:
            self.display_id = new_id("ai-")
            self.output("display_data", {**content, "display_id": self.display_id})
        else:
            self.output("update_display_data", {**content, "display_id": self.display_id})
        self.sent, self.last = self.text, time.monotonic()


def _record(output: Output, display_id: str, record: dict[str, Any], *, update: bool) -> None:
    summary = f"{record['tool']}({json.dumps(record['arguments'], ensure_ascii=False)[:200]})"
    if "result" in record:
        summary += f" -> {record['status']}"
    content = {"data": {TOOL_CALL_MIME: record, "text/plain": summary}, "metadata": {}, "display_id": display_id}
    output("update_display_data" if update else "display_data", content)


class AiCellExecutor:
    """Runs AI cells for the runtime agents of one daemon (called with the cell to run; returns None on
    success or the error ``{"ename", "evalue"}``)."""

    def __init__(self, endpoint: DaemonEndpoint, *, max_tool_calls: int = MAX_TOOL_CALLS) -> None:
        self.endpoint = endpoint
        self.max_tool_calls = max_tool_calls

    async def __call__(self, *, client: SyncClient, cell_id: str, queue_id: str, output: Output,
                       serve: Callable[[str], None]) -> dict[str, Any] | None:
        settings = client.replica.view(views.ai_settings, cell_id)
        if settings is None:
            return {"ename": "AiSettingsError", "evalue": "no AI provider is set for this notebook: set one with "
                    "aiSettingsSet (provider 'openai' or 'anthropic', and a model)"}
        try:
            provider = make_provider(settings["provider"], settings["model"], settings["settings"])
        except ProviderError as exc:
            return {"ename": exc.ename, "evalue": exc.message}
        actor = agent_actor(f"ai {settings['provider']}/{settings['model']}")
        serve(actor["id"])  # the runtime runs the cells this model asks for while the AI cell runs
        workspace = AgentWorkspace(self.endpoint, actor)
        try:
            return await self._converse(client, cell_id, provider, workspace, output,
                                        images=settings["settings"].get("images", True) is not False)
        except ProviderError as exc:
            return {"ename": exc.ename, "evalue": exc.message}
        finally:
            await workspace.close()
            await provider.close()

    async def _converse(self, client: SyncClient, cell_id: str, provider: Provider, workspace: AgentWorkspace,
                        output: Output, *, images: bool) -> dict[str, Any] | None:
        notebook_id = client.notebook_id
        messages = build_messages(client.replica.view(views.notebook_view), cell_id, images=images)
        specs = tool_specs()
        answer = _Answer(output)
        calls = 0
        while True:
            answer.start_turn()
            turn = await provider.turn(messages, specs, answer.add)
            answer.flush()
            messages.append({"role": "assistant", "content": turn.text, "tool_calls": turn.tool_calls})
            if not turn.tool_calls:
                return None
            for call in turn.tool_calls:
                if calls >= self.max_tool_calls:
                    return {"ename": "AiToolCallLimit", "evalue": f"the model made more than {self.max_tool_calls} "
                            "tool calls in one execution and was stopped; rerun the cell to continue"}
                calls += 1
                messages.append(await self._call(workspace, notebook_id, call.id, call.name, call.arguments, output))

    async def _call(self, workspace: AgentWorkspace, notebook_id: str, call_id: str, name: str,
                    arguments: dict[str, Any], output: Output) -> Message:
        """One tool call through the shared tool layer, recorded before and after it runs."""
        display_id = new_id("tc-")
        record: dict[str, Any] = {"id": call_id, "tool": name, "arguments": arguments}
        _record(output, display_id, record, update=False)
        if name not in AI_TOOLS:
            result_text, is_error = f"Error: no tool named {name!r}; the tools are: {', '.join(AI_TOOLS)}", True
        else:
            result = await call_tool(ToolContext(workspace), name, {**arguments, "notebook_id": notebook_id})
            result_text = "\n".join(p.text for p in result.content if isinstance(p, TextPart))
            is_error = result.is_error
        if len(result_text) > MAX_RESULT_CHARS:
            result_text = result_text[:MAX_RESULT_CHARS] + f"\n[… {len(result_text) - MAX_RESULT_CHARS} more characters]"
        _record(output, display_id, {**record, "status": "error" if is_error else "ok", "result": result_text},
                update=True)
        return {"role": "tool", "tool_call_id": call_id, "name": name, "content": result_text}
