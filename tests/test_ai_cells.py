"""AI cells against scripted providers: a real OpenAI-compatible and a real Anthropic Messages server in the test
(real HTTP, real SSE, real tool-call deltas), a real daemon running the cell in the notebook's runtime, real kernels."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import AsyncSession
from runtimed.agents.ai_cell import TOOL_CALL_MIME, AiCellExecutor, build_messages
from runtimed.agents.providers import scrub
from runtimed.client.discovery import DaemonEndpoint
from runtimed.errors import RuntimedError
from runtimed.formats.ipynb import notebook_from_projection, notebook_to_events, read_ipynb, write_ipynb
from runtimed.runtime.external import run_external_runtime
from runtimed.schema import approvals, views
from runtimed.schema.events import make_event

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(180)]

SECRET = "sk-test-secret-0123456789abcdef"
Reply = Callable[[dict[str, Any]], list[str]]
"""Given the request body, the SSE frames to send (a frame "GATE" waits for the test to open the gate)."""


class ScriptedProvider:
    """An HTTP server that answers each POST with the next scripted reply, streamed as SSE frames."""

    def __init__(self, replies: list[Reply], status: int = 200) -> None:
        self.replies = list(replies)
        self.status = status
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.gate = threading.Event()
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - the http.server API
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                provider.requests.append(body)
                provider.headers.append({k.lower(): v for k, v in self.headers.items()})
                if provider.status != 200:
                    payload = json.dumps({"error": {"message": f"Incorrect API key provided: {SECRET}",
                                                    "type": "invalid_request_error"}}).encode()
                    self.send_response(provider.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                frames = provider.replies.pop(0)(body) if provider.replies else []
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Connection", "close")
                self.end_headers()
                for frame in frames:
                    if frame == "GATE":
                        provider.gate.wait(60)
                        continue
                    self.wfile.write(frame.encode())
                    self.wfile.flush()
                self.close_connection = True

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


# --- wire formats --------------------------------------------------------------------------------


def _openai_chunk(delta: dict[str, Any], finish: str | None = None) -> str:
    chunk = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 0, "model": "scripted",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(chunk)}\n\n"


def openai_text(*pieces: str) -> Reply:
    def reply(_body: dict[str, Any]) -> list[str]:
        frames = [_openai_chunk({"role": "assistant", "content": ""})]
        frames += [p if p == "GATE" else _openai_chunk({"content": p}) for p in pieces]
        return [*frames, _openai_chunk({}, "stop"), "data: [DONE]\n\n"]
    return reply


def openai_tool(name: str, arguments: Callable[[dict[str, Any]], dict[str, Any]]) -> Reply:
    """A tool call whose arguments arrive in several deltas (computed from the request, e.g. an id it holds)."""
    def reply(body: dict[str, Any]) -> list[str]:
        raw = json.dumps(arguments(body))
        half = len(raw) // 2
        return [
            _openai_chunk({"role": "assistant", "content": None, "tool_calls": [
                {"index": 0, "id": f"call_{len(body['messages'])}", "type": "function",
                 "function": {"name": name, "arguments": ""}}]}),
            _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[:half]}}]}),
            _openai_chunk({"tool_calls": [{"index": 0, "function": {"arguments": raw[half:]}}]}),
            _openai_chunk({}, "tool_calls"), "data: [DONE]\n\n",
        ]
    return reply


def _sse(event: dict[str, Any]) -> str:
    return f"event: {event['type']}\ndata: {json.dumps(event)}\n\n"


def anthropic_reply(text: str, tool: tuple[str, dict[str, Any]] | None = None) -> Reply:
    def reply(_body: dict[str, Any]) -> list[str]:
        frames = [_sse({"type": "message_start", "message": {
            "id": "msg_1", "type": "message", "role": "assistant", "model": "scripted", "content": [],
            "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 1, "output_tokens": 0}}})]
        frames.append(_sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}))
        for word in text.split(" "):
            frames.append(_sse({"type": "content_block_delta", "index": 0,
                                "delta": {"type": "text_delta", "text": word + " "}}))
        frames.append(_sse({"type": "content_block_stop", "index": 0}))
        if tool is not None:
            raw = json.dumps(tool[1])
            frames.append(_sse({"type": "content_block_start", "index": 1, "content_block": {
                "type": "tool_use", "id": "toolu_1", "name": tool[0], "input": {}}}))
            for piece in (raw[:5], raw[5:]):
                frames.append(_sse({"type": "content_block_delta", "index": 1,
                                    "delta": {"type": "input_json_delta", "partial_json": piece}}))
            frames.append(_sse({"type": "content_block_stop", "index": 1}))
        frames.append(_sse({"type": "message_delta", "delta": {"stop_reason": "tool_use" if tool else "end_turn",
                                                              "stop_sequence": None}, "usage": {"output_tokens": 5}}))
        frames.append(_sse({"type": "message_stop"}))
        return frames
    return reply


# --- fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    env = {"OPENAI_API_KEY": SECRET, "ANTHROPIC_API_KEY": SECRET}
    with running_daemon(tmp_path_factory.mktemp("ai-home"), "--pool-size", "1", env=env) as proc:
        yield proc


@pytest.fixture
async def session(daemon: DaemonProcess, request: pytest.FixtureRequest) -> AsyncIterator[AsyncSession]:
    nb = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:60]
    s = AsyncSession(nb, peer_label="alice")
    await s.connect()
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def provider(request: pytest.FixtureRequest) -> Iterator[Callable[..., ScriptedProvider]]:
    made: list[ScriptedProvider] = []

    def make(replies: list[Reply], status: int = 200) -> ScriptedProvider:
        made.append(ScriptedProvider(replies, status))
        return made[-1]

    yield make
    for p in made:
        p.close()


async def _settings(session: AsyncSession, provider: str, base_url: str, **more: Any) -> None:
    await session.client.commit([make_event("aiSettingsSet", provider=provider, model="scripted",
                                            settings={"base_url": base_url, **more})])


async def _policy(session: AsyncSession, name: str) -> None:
    await session.client.commit([make_event("notebookMetadataSet", key="runtimed", value={"approvals": name})])


def _outputs(session: AsyncSession, cell_id: str) -> list[dict[str, Any]]:
    return session.client.replica.view(views.outputs_by_cell, cell_id).get(cell_id, [])


def _markdown(session: AsyncSession, cell_id: str) -> str:
    return "".join((o.get("data") or {}).get("text/markdown", "") for o in _outputs(session, cell_id))


def _tool_records(session: AsyncSession, cell_id: str) -> list[dict[str, Any]]:
    return [o["data"][TOOL_CALL_MIME] for o in _outputs(session, cell_id) if TOOL_CALL_MIME in (o.get("data") or {})]


def _error(result: Any) -> dict[str, str]:
    error = result.error
    return {"ename": error.ename, "evalue": error.evalue} if error is not None else {}


def _log_text(session: AsyncSession) -> str:
    return json.dumps(session.client.replica.view(views.notebook_view), default=str)


# --- the context ---------------------------------------------------------------------------------


def test_the_context_of_a_fixture_notebook_is_pinned() -> None:
    view = {"id": "nb-fixture", "cells": [
        {"id": "c1", "cell_type": "markdown", "source": "# Sales", "execution_count": None, "outputs": []},
        {"id": "c2", "cell_type": "code", "source": "x = 6 * 7\nprint(x)", "execution_count": 1,
         "execution": {"status": "success"},
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "42\n"}]},
        {"id": "c3", "cell_type": "ai", "source": "what is x?", "execution_count": None,
         "outputs": [{"output_type": "display_data", "data": {"text/markdown": "x is **42**."}, "metadata": {}}]},
        {"id": "c4", "cell_type": "code", "source": "1/0", "execution_count": 2, "execution": {"status": "error"},
         "outputs": [{"output_type": "error", "ename": "ZeroDivisionError", "evalue": "division by zero",
                      "traceback": ["\x1b[31mZeroDivisionError\x1b[0m: division by zero"]}]},
        {"id": "c5", "cell_type": "ai", "source": "fix the error", "execution_count": None, "outputs": []},
        {"id": "c6", "cell_type": "code", "source": "below = True", "execution_count": None, "outputs": []},
    ]}
    messages = build_messages(view, "c5")
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert messages[0]["content"].endswith("Notebook id: nb-fixture.")
    assert messages[1:3] == [{"role": "user", "content": "what is x?"}, {"role": "assistant", "content": "x is **42**."}]
    assert messages[3]["content"] == (
        "# The notebook above this AI cell (c5)\n"
        "## cell c1 (markdown, revision 463bc63e203b)\n```\n# Sales\n```\n"
        "## cell c2 (code, revision 0a2f46a4492a, execution_count 1)\n```python\nx = 6 * 7\nprint(x)\n```\n"
        "outputs:\n[stdout]\n42\n\n"
        "## cell c4 (code, revision 18d6e1cac2a8, execution_count 2, last run error)\n```python\n1/0\n```\n"
        "outputs:\n[error] ZeroDivisionError: division by zero\nZeroDivisionError: division by zero\n\n"
        "# Prompt\nfix the error")
    assert build_messages(view, "c5") == messages  # deterministic


# --- against the daemon --------------------------------------------------------------------------


async def test_a_streamed_answer_from_an_openai_compatible_server(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_text("Hello ", "GATE", *[f"w{i} " for i in range(50)], "**done**")])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("say hello", "ai")
    queue_id = await session.queue_cell(cell)
    # the first words are in a second client's replica while the provider still holds the rest back
    await session.client.wait_for(lambda: "Hello" in _markdown(session, cell), 60)
    assert "**done**" not in _markdown(session, cell)
    server.gate.set()
    result = await session.wait_for_execution(queue_id, 60)
    assert result.status == "success"
    expected = "Hello " + "".join(f"w{i} " for i in range(50)) + "**done**"
    assert _markdown(session, cell) == expected
    assert len([o for o in _outputs(session, cell) if "text/markdown" in (o.get("data") or {})]) == 1
    request = server.requests[0]
    assert request["stream"] is True and request["model"] == "scripted"
    assert "say hello" in request["messages"][-1]["content"]
    assert {t["function"]["name"] for t in request["tools"]} >= {"create_cell", "execute_cell", "get_notebook"}
    assert server.headers[0]["authorization"] == f"Bearer {SECRET}"  # the daemon's environment supplies the key
    assert SECRET not in _log_text(session)


async def test_a_tool_call_creates_and_runs_a_cell_and_the_next_turn_reads_its_output(
        session: AsyncSession, provider: Any) -> None:
    def created_id(body: dict[str, Any]) -> dict[str, Any]:
        found = re.search(r"created code cell (\S+)", body["messages"][-1]["content"])
        assert found, body["messages"][-1]
        return {"cell_id": found.group(1)}

    server = provider([
        openai_tool("create_cell", lambda _b: {"source": "print(6 * 7)"}),
        openai_tool("execute_cell", created_id),
        openai_text("The answer is ", "42."),
    ])
    await _policy(session, "off")
    await _settings(session, "openai", f"{server.url}/v1")
    await session.create_cell("x = 1")
    cell = await session.create_cell("compute 6*7", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "success", _outputs(session, cell)
    records = _tool_records(session, cell)
    assert [(r["tool"], r["status"]) for r in records] == [("create_cell", "ok"), ("execute_cell", "ok")]
    assert "42" in records[1]["result"]
    # the second model turn got the cell's output back as the tool result
    assert server.requests[2]["messages"][-1]["role"] == "tool" and "42" in server.requests[2]["messages"][-1]["content"]
    assert _markdown(session, cell) == "The answer is 42."
    created = created_id(server.requests[1])["cell_id"]
    assert "42" in json.dumps(_outputs(session, created))
    (run,) = session.client.replica.view(views.executions, cell_id=created)
    assert run["status"] == "success" and run["requested_by"].startswith("agent:ai-openai")


async def test_anthropic_streams_an_answer_and_uses_a_tool(session: AsyncSession, provider: Any) -> None:
    server = provider([anthropic_reply("Let me look.", ("create_cell", {"source": "y = 2", "cell_type": "code"})),
                       anthropic_reply("I added a cell.")])
    await _settings(session, "anthropic", server.url)
    cell = await session.create_cell("add a cell", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "success", _outputs(session, cell)
    assert _markdown(session, cell) == "Let me look. I added a cell. "
    assert [r["tool"] for r in _tool_records(session, cell)] == ["create_cell"]
    second = server.requests[1]
    assert second["system"].startswith("You are an assistant")
    tool_result = second["messages"][-1]["content"][0]
    assert tool_result["type"] == "tool_result" and tool_result["tool_use_id"] == "toolu_1"
    sent = server.headers[0]
    assert SECRET in sent.get("x-api-key", "") + sent.get("authorization", "")  # (the header depends on the SDK)
    assert [c["source"] for c in session.client.replica.view(views.ordered_cells)][-1] == "y = 2"


async def test_an_unreachable_provider_is_an_error_output(session: AsyncSession, provider: Any) -> None:
    server = provider([])
    url = server.url
    server.close()  # nothing listens there any more
    await _settings(session, "openai", f"{url}/v1")
    cell = await session.create_cell("hello?", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "error"
    error = _error(result)
    assert error.get("ename") == "AiProviderUnreachable" and url in error.get("evalue", ""), error


async def test_a_refused_key_never_shows_in_the_error(session: AsyncSession, provider: Any) -> None:
    server = provider([], status=401)
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("hello?", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "error"
    assert _error(result).get("ename") == "AiAuthenticationError"
    assert SECRET not in _log_text(session) and SECRET[:12] not in json.dumps(_error(result))


async def test_a_malformed_response_is_an_error_output(session: AsyncSession, provider: Any) -> None:
    server = provider([lambda _b: ["data: {this is not json\n\n", "data: [DONE]\n\n"]])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("hello?", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "error"
    assert _error(result).get("ename") == "AiBadResponse", result.error


async def test_the_tool_call_loop_is_bounded(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_tool("get_notebook", lambda _b: {}) for _ in range(30)])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("loop forever", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "error"
    assert _error(result).get("ename") == "AiToolCallLimit"
    assert len(_tool_records(session, cell)) == 20 and len(server.requests) == 21


async def test_an_interrupt_stops_a_streaming_answer(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_text("Thinking ", "GATE", "never shown")])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("think", "ai")
    queue_id = await session.queue_cell(cell)
    await session.client.wait_for(lambda: "Thinking" in _markdown(session, cell), 60)
    await session.interrupt()
    result = await session.wait_for_execution(queue_id, 60)
    assert result.status == "error" and _error(result).get("ename") == "KeyboardInterrupt"
    assert "never shown" not in _markdown(session, cell)
    follow = await session.run("print('still here')", 60)  # the runtime goes on with the next cell
    assert follow.status == "success" and "still here" in follow.stdout


async def test_an_ai_cell_exports_to_ipynb_as_markdown_and_comes_back(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_tool("get_notebook", lambda _b: {}), openai_text("It is **empty**.")])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("what is in here?", "ai")
    assert (await session.execute_cell(cell, 120)).status == "success"
    exported = session.client.replica.view(notebook_from_projection)
    (md,) = [c for c in exported.cells if c.cell_type == "markdown"]
    assert md.source == "what is in here?\n\n---\n\nIt is **empty**."  # readable in any Jupyter
    assert md.metadata["runtimed"]["cell_type"] == "ai" and md.metadata["runtimed"]["prompt"] == "what is in here?"
    back = notebook_to_events(read_ipynb(write_ipynb(exported)))
    (created,) = [e["args"] for e in back if e["name"] == "cellCreated"]
    assert (created["cellType"], created["source"], created["metadata"]) == ("ai", "what is in here?", {})
    outputs = [e["args"] for e in back if e["name"] == "outputAdded"]
    original = _outputs(session, cell)
    assert [o.get("data") for o in outputs] == [o.get("data") for o in original]
    assert TOOL_CALL_MIME in outputs[0]["data"] and outputs[1]["data"]["text/markdown"] == "It is **empty**."
    assert exported.metadata["runtimed"]["ai"]["provider"] == "openai"  # the notebook's AI settings travel too
    assert [e["args"]["provider"] for e in back if e["name"] == "aiSettingsSet"] == ["openai"]


async def test_the_execution_timeout_stops_an_ai_cell(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_text("Slow ", "GATE", "never shown")])  # the provider holds the answer back
    await session.client.commit([make_event("notebookMetadataSet", key="runtimed", value={"execution_timeout": 1})])
    await _settings(session, "openai", f"{server.url}/v1")
    cell = await session.create_cell("take your time", "ai")
    result = await session.execute_cell(cell, 120)
    assert result.status == "error" and _error(result).get("ename") == "ExecutionTimeout"
    assert "never shown" not in _markdown(session, cell)


def test_keys_are_scrubbed_from_provider_messages() -> None:
    assert scrub(f"Incorrect API key provided: {SECRET}.", SECRET) == "Incorrect API key provided: [redacted]."
    assert "proj" not in scrub("Incorrect API key provided: sk-proj-abc***wxyz", None)  # a masked echo of another key
    assert scrub("see api.openai.com/keys", "sk-x") == "see api.openai.com/keys"


async def test_an_execute_waits_for_a_person_who_denies_then_approves(session: AsyncSession, provider: Any) -> None:
    def created_id(body: dict[str, Any]) -> dict[str, Any]:
        for message in reversed(body["messages"]):
            found = re.search(r"created code cell (\S+)", message.get("content") or "")
            if found:
                return {"cell_id": found.group(1)}
        raise AssertionError(body["messages"])

    server = provider([
        openai_tool("create_cell", lambda _b: {"source": "print('ran')"}),
        openai_tool("execute_cell", created_id),
        openai_tool("execute_cell", created_id),
        openai_text("Done."),
    ])
    await _settings(session, "openai", f"{server.url}/v1")  # the default policy: executing needs approval
    cell = await session.create_cell("run something", "ai")
    queue_id = await session.queue_cell(cell)

    def pending() -> list[dict[str, Any]]:
        return session.client.replica.view(approvals.list_approvals)

    for decision in ("denied", "approved"):
        (asked,) = await session.client.wait_for(pending, 60)
        assert asked["tool"] == "execute_cell" and asked["requested_by"]["id"].startswith("agent:ai-openai")
        await session.client.commit([make_event("toolApprovalResolved", approval_id=asked["approval_id"],
                                                decision=decision)])
    result = await session.wait_for_execution(queue_id, 120)
    assert result.status == "success", _outputs(session, cell)
    records = _tool_records(session, cell)
    assert [(r["tool"], r["status"]) for r in records] == [("create_cell", "ok"), ("execute_cell", "error"),
                                                           ("execute_cell", "ok")]
    assert "denied" in records[1]["result"] and "ran" in records[2]["result"]
    assert "denied" in server.requests[2]["messages"][-1]["content"]  # the model was told


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="


def test_image_outputs_are_image_parts_unless_the_model_takes_text_only() -> None:
    view = {"id": "nb", "cells": [
        {"id": "p", "cell_type": "code", "source": "plot()", "execution_count": 1,
         "outputs": [{"output_type": "display_data", "data": {"image/png": PNG, "text/plain": "<Figure>"},
                      "metadata": {}}]},
        {"id": "a", "cell_type": "ai", "source": "describe the plot", "execution_count": None, "outputs": []},
    ]}
    (text, image) = build_messages(view, "a")[-1]["content"]
    assert text["type"] == "text" and "(image 1 of this message: image/png)" in text["text"]
    assert image == {"type": "image", "mime_type": "image/png", "data": PNG}
    only_text = build_messages(view, "a", images=False)[-1]["content"]
    assert isinstance(only_text, str) and "(image/png image not sent: the model takes text only)" in only_text


async def test_a_plot_above_reaches_the_model_as_an_image(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_text("A single pixel.")])
    await _settings(session, "openai", f"{server.url}/v1")
    plot = await session.run(f"from base64 import b64decode\nfrom IPython.display import Image, display\n"
                             f"display(Image(data=b64decode({PNG!r})))", 60)
    assert plot.status == "success"
    cell = await session.create_cell("what does the plot show?", "ai")
    assert (await session.execute_cell(cell, 120)).status == "success"
    content = server.requests[0]["messages"][-1]["content"]
    assert {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}} in content


async def test_a_failing_ai_cell_stops_a_run_all_batch(session: AsyncSession, provider: Any) -> None:
    server = provider([])
    url = server.url
    server.close()
    await _settings(session, "openai", f"{url}/v1")
    ai = await session.create_cell("hello?", "ai")
    after = await session.create_cell("print('after')")
    results = await session.run_all(120)
    assert [(r.cell_id, r.status) for r in results] == [(ai, "error"), (after, "cancelled")]


async def test_the_answer_completes_with_every_client_gone(daemon: DaemonProcess, provider: Any) -> None:
    server = provider([openai_text("Started ", "GATE", "and finished.")])
    first = AsyncSession("ai-no-clients", peer_label="alice")
    await first.connect()
    await _settings(first, "openai", f"{server.url}/v1")
    cell = await first.create_cell("take a while", "ai")
    queue_id = await first.queue_cell(cell)
    await first.client.wait_for(lambda: "Started" in _markdown(first, cell), 60)
    await first.close()  # nobody is connected to the notebook any more
    server.gate.set()
    again = AsyncSession("ai-no-clients", peer_label="alice")
    await again.connect()
    try:
        result = await again.wait_for_execution(queue_id, 60)
        assert result.status == "success"
        assert _markdown(again, cell) == "Started and finished."
    finally:
        await again.close()


async def test_an_external_runtime_runs_ai_cells_with_the_executor_it_is_given(
        daemon: DaemonProcess, provider: Any) -> None:
    server = provider([openai_text("From ", "outside.")])
    endpoint = DaemonEndpoint(daemon.url, daemon.token)
    async with AsyncSession("ai-external", endpoint=endpoint) as s:
        await _settings(s, "openai", f"{server.url}/v1")
        ready: list[Any] = []
        task = asyncio.create_task(run_external_runtime(endpoint, "ai-external", on_ready=ready.append,
                                                        handle_signals=False, ai_executor=AiCellExecutor(endpoint)))
        try:
            await s.client.wait_for(lambda: s.client.replica.view(views.active_session) is not None, 60)
            cell = await s.create_cell("who runs this?", "ai")
            result = await s.execute_cell(cell, 120)
            assert result.status == "success" and _markdown(s, cell) == "From outside."
            active = s.client.replica.view(views.active_session)
            assert ready and active is not None and active["runtime_id"] == ready[0].runtime_id
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimedError):
                await task


async def test_a_cell_overrides_the_notebooks_ai_settings(session: AsyncSession, provider: Any) -> None:
    server = provider([openai_text("From the cell's server.")])
    await _settings(session, "openai", "http://127.0.0.1:9/v1", temperature=0.5)  # nothing listens on port 9
    cell = await session.create_cell("which server?", "ai")
    await session.client.commit([make_event("aiSettingsSet", cell_id=cell, provider="openai", model="cell-model",
                                            settings={"base_url": f"{server.url}/v1"})])
    result = await session.execute_cell(cell, 120)
    assert result.status == "success" and _markdown(session, cell) == "From the cell's server."
    assert server.requests[0]["model"] == "cell-model" and server.requests[0]["temperature"] == 0.5  # key by key


# --- YAML notebooks, runt run ----------------------------------------------------------------------

AI_YAML = """\
metadata:
  title: Ask
  kernel: python3
  ai: {provider: openai, model: gpt-4o-mini, settings: {base_url: "http://127.0.0.1:11434/v1"}}
cells:
  - {id: data, source: "x = 42"}
  - id: ask
    cell_type: ai
    source: What is x?
    ai: {provider: anthropic, model: claude-x, settings: {max_tokens: 100}}
  - {id: plain, cell_type: ai, source: "And twice x?"}
"""


def test_yaml_ai_cells_and_settings_round_trip() -> None:
    from runtimed.formats.yaml_nb import read_yaml_notebook, write_yaml_notebook

    nb, _ = read_yaml_notebook(AI_YAML)
    events = notebook_to_events(nb)
    cells = [(e["args"]["cellId"], e["args"]["cellType"], e["args"]["source"]) for e in events
             if e["name"] == "cellCreated"]
    assert cells == [("data", "code", "x = 42"), ("ask", "ai", "What is x?"), ("plain", "ai", "And twice x?")]
    settings = [e["args"] for e in events if e["name"] == "aiSettingsSet"]
    assert settings == [
        {"provider": "openai", "model": "gpt-4o-mini", "settings": {"base_url": "http://127.0.0.1:11434/v1"}},
        {"cellId": "ask", "provider": "anthropic", "model": "claude-x", "settings": {"max_tokens": 100}}]
    assert not [e for e in events if e["name"] == "notebookMetadataSet" and e["args"]["key"] == "runtimed"]
    again = write_yaml_notebook(nb)
    assert read_yaml_notebook(again)[0] == nb  # YAML -> notebook -> YAML -> the same notebook
    assert "cell_type: ai" in again and "max_tokens: 100" in again and "prompt" not in again


@pytest.mark.parametrize(("text", "expected"), [
    ("cells:\n  - {id: a, source: hi, ai: {provider: openai, model: m}}\n", "cells[0].ai: AI settings belong"),
    ("cells:\n  - {id: a, cell_type: ai, source: hi, ai: {provider: 3}}\n", "cells[0].ai.provider"),
    ("metadata: {ai: {provider: openai}}\ncells: []\n", "metadata.ai.model"),
    ("metadata: {ai: openai}\ncells: []\n", "metadata.ai: expected a mapping"),
])
def test_yaml_ai_settings_errors_name_the_path(text: str, expected: str) -> None:
    from runtimed.errors import InvalidNotebookError
    from runtimed.formats.yaml_nb import read_yaml_notebook

    with pytest.raises(InvalidNotebookError, match=re.escape(expected)):
        read_yaml_notebook(text)


def test_a_key_in_yaml_ai_settings_is_refused() -> None:
    from runtimed.errors import InvalidNotebookError
    from runtimed.formats.yaml_nb import read_yaml_notebook

    nb, _ = read_yaml_notebook(f"metadata: {{ai: {{provider: openai, model: m, settings: {{api_key: {SECRET}}}}}}}\n"
                               "cells: []\n")
    with pytest.raises(InvalidNotebookError) as raised:
        notebook_to_events(nb)
    assert SECRET not in str(raised.value)


def _runt(*args: str, timeout: float = 150) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], capture_output=True, timeout=timeout)


def test_runt_run_runs_an_ai_cell_headless_with_its_tool_calls_approved(
        daemon: DaemonProcess, provider: Any, tmp_path: Path) -> None:
    def created_id(body: dict[str, Any]) -> dict[str, Any]:
        found = re.search(r"created code cell (\S+)", body["messages"][-1]["content"])
        assert found, body["messages"][-1]
        return {"cell_id": found.group(1)}

    server = provider([
        openai_tool("create_cell", lambda _b: {"source": "print(n * 7)"}),
        openai_tool("execute_cell", created_id),
        openai_text("n times 7 is ", "**42**."),
    ])
    source = tmp_path / "ask.yaml"
    source.write_text(f"metadata: {{kernel: python3, ai: {{provider: openai, model: scripted, "
                      f"settings: {{base_url: '{server.url}/v1'}}}}}}\nparameters: {{n: 1}}\n"
                      "cells:\n  - {id: ask, cell_type: ai, source: 'compute n * 7 in a new cell'}\n")
    out = tmp_path / "out.ipynb"
    proc = _runt("run", str(source), str(out), "-p", "n", "6", "--approve", "create_cell,execute_cell")
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    assert "n = 6" in server.requests[0]["messages"][-1]["content"]  # the model saw the injected parameters
    nb = nbformat.read(str(out), 4)
    ask = next(c for c in nb.cells if c.get("id") == "ask")
    assert ask.cell_type == "markdown" and ask.source.endswith("n times 7 is **42**.")
    assert ask.metadata["papermill"]["status"] == "completed"
    records = [o["data"][TOOL_CALL_MIME] for o in ask.metadata["runtimed"]["outputs"] if TOOL_CALL_MIME in o["data"]]
    assert [(r["tool"], r["status"]) for r in records] == [("create_cell", "ok"), ("execute_cell", "ok")]
    created = nb.cells[-1]
    assert created.source == "print(n * 7)" and "42" in "".join(o.get("text", "") for o in created.outputs)
    assert nb.metadata["runtimed"]["approve_tools"] == ["create_cell", "execute_cell"]  # recorded in the notebook


def test_runt_run_refuses_an_unknown_tool_to_approve(tmp_path: Path) -> None:
    source = tmp_path / "x.yaml"
    source.write_text("cells: []\n")
    proc = _runt("run", str(source), "--approve", "execute_cel", timeout=60)
    assert proc.returncode == 2 and "execute_cel" in proc.stderr.decode() and "execute_cell" in proc.stderr.decode()


# --- settings from a Session and over REST -----------------------------------------------------------


async def test_a_session_sets_and_reads_ai_settings(session: AsyncSession, daemon: DaemonProcess) -> None:
    import httpx

    from runtimed.agents.providers import PROVIDERS
    from runtimed.errors import EventRejected
    from runtimed.server.ai_api import PROVIDERS as LISTED

    assert await session.ai_settings() is None
    await session.set_ai_settings("openai", "gpt-4o-mini", {"base_url": "http://127.0.0.1:9/v1", "temperature": 0.2})
    cell = await session.create_cell("hi", "ai")
    await session.set_ai_settings("anthropic", "claude-x", {"max_tokens": 10}, cell_id=cell)
    notebook = {"provider": "openai", "model": "gpt-4o-mini",
                "settings": {"base_url": "http://127.0.0.1:9/v1", "temperature": 0.2}}
    assert await session.ai_settings() == notebook
    assert await session.ai_settings(cell) == {"provider": "anthropic", "model": "claude-x", "settings": {
        "base_url": "http://127.0.0.1:9/v1", "temperature": 0.2, "max_tokens": 10}}  # the cell's over the notebook's
    with pytest.raises(EventRejected):
        await session.set_ai_settings("openai", "gpt-4o-mini", {"api_key": SECRET})
    with pytest.raises(RuntimedError, match="needs a provider"):
        await session.set_ai_settings("openai", "")
    back = await session.create_cell("back to the notebook's model", "ai")
    await session.set_ai_settings("anthropic", "claude-x", cell_id=back)
    await session.set_ai_settings("", "", {"temperature": 0.9}, cell_id=back)  # empty: the notebook's model
    assert await session.ai_settings(back) == {"provider": "openai", "model": "gpt-4o-mini", "settings": {
        "base_url": "http://127.0.0.1:9/v1", "temperature": 0.9}}
    assert SECRET not in _log_text(session)
    r = httpx.get(f"{daemon.url}/api/notebooks/{session.notebook_id}/ai-settings",
                  headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30)
    assert r.status_code == 200
    assert r.json() == {"notebook": notebook, "providers": list(PROVIDERS), "cells": {
        cell: {"provider": "anthropic", "model": "claude-x", "settings": {"max_tokens": 10}},
        back: {"provider": "", "model": "", "settings": {"temperature": 0.9}}}}
    assert list(LISTED) == list(PROVIDERS)


def test_the_blocking_session_has_the_same_ai_settings_helpers(daemon: DaemonProcess) -> None:
    from runtimed import Session

    with Session("ai-settings-blocking", peer_label="alice") as s:
        s.set_ai_settings("openai", "llama3", {"base_url": "http://127.0.0.1:11434/v1"})
        assert s.ai_settings() == {"provider": "openai", "model": "llama3",
                                   "settings": {"base_url": "http://127.0.0.1:11434/v1"}}


def test_approve_all_turns_the_runs_approval_policy_off(tmp_path: Path) -> None:
    from runtimed.automation.run import RunOptions, prepare
    from runtimed.schema.approvals import needs_approval, policy, preapproved

    source = tmp_path / "a.yaml"
    source.write_text("cells:\n  - {id: ask, cell_type: ai, source: go}\n")
    everything, _ = prepare(RunOptions(input_path=str(source), approve=("all",)))
    assert policy(everything.metadata) == "off" and not needs_approval("off", "execute")
    listed, _ = prepare(RunOptions(input_path=str(source), approve=("execute_cell",)))
    assert policy(listed.metadata) == "execute" and preapproved(listed.metadata) == {"execute_cell"}
    plain, _ = prepare(RunOptions(input_path=str(source)))
    assert "runtimed" not in plain.metadata or not preapproved(plain.metadata)
