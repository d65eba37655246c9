"""Stream offload (issue 15, item 3): a stream past the stream cap keeps its head and live tail in the log and
the text between as one artifact, written incrementally; every reader resolves it.

The writer tests drive ``OutputWriter`` directly (the stage callback stores the spool like the runtime's
pipe does) and rebuild the text from the events and the artifact. The daemon tests run real kernels in a
real daemon: a small cap (``RUNTIMED_STREAM_CAP``) for the readers (Session, export, ``runt exec``, MCP,
live events), the default cap for a 200 MB print (daemon memory and log stay bounded) and a 100 MB
``display(JSON)``.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from conftest import DaemonProcess, running_daemon
from hypothesis import given, settings
from hypothesis import strategies as st

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.models import SpilledStream
from runtimed.client.session import AsyncSession
from runtimed.runtime.outputs import TAIL_CHARS, OutputWriter
from runtimed.runtime.terminal import StreamTerminal
from runtimed.schema.artifact_refs import is_ref

MB = 1024 * 1024
SMALL_CAP = 64 * 1024


# -- the writer, without a daemon ------------------------------------------------------------------------


class SpillReplay:
    """Applies stream events as the materializer does; the staged artifacts are kept as the store would."""

    def __init__(self) -> None:
        self.outputs: dict[str, dict[str, Any]] = {}
        self.artifacts: dict[str, bytes] = {}
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)
        args = event["args"]
        if event["name"] == "outputAdded":
            self.outputs[args["outputId"]] = {"text": args["text"]}
        elif event["name"] == "streamTextChanged":
            out = self.outputs[args["outputId"]]
            assert "omitted" not in out, "a spilled output is only changed by streamTailSet"
            assert args["offset"] <= len(out["text"])
            out["text"] = out["text"][: args["offset"]] + args["text"]
        else:
            assert event["name"] == "streamTailSet", event["name"]
            out = self.outputs[args["outputId"]]
            out.update(text=args["text"], omitted=args["omitted"], data=args.get("data"))

    def stage(self, event: dict[str, Any], blobs: list[tuple[str, Any, str]]) -> None:
        for sha, data, _ in blobs:
            raw = data.read_bytes()
            data.unlink()  # the pipe removes the spool once stored
            assert hashlib.sha256(raw).hexdigest() == sha
            self.artifacts[sha] = raw
        self.emit(event)

    @property
    def text(self) -> str:
        parts = []
        for out in self.outputs.values():
            ref = (out.get("data") or {}).get("text/plain")
            if ref is not None:
                raw = self.artifacts[ref["artifact"]]
                assert len(raw) == ref["size"] and out["omitted"] == len(raw.decode())
                parts.append(raw.decode())
            parts.append(out["text"])
        return "".join(parts)


def spill(chunks: list[str], cap: int, flush_every: int = 1) -> tuple[SpillReplay, OutputWriter]:
    replay = SpillReplay()

    async def run() -> OutputWriter:
        writer = OutputWriter(replay.emit, cell_id="c-1", queue_id="q-1", stage=replay.stage, stream_cap=cap)
        for i, chunk in enumerate(chunks):
            writer.on_output("stream", {"name": "stdout", "text": chunk})
            if i % flush_every == 0:
                writer.flush()
        writer.close()
        return writer

    loop = asyncio.new_event_loop()
    try:
        return replay, loop.run_until_complete(run())
    finally:
        loop.close()


def rendered(chunks: list[str]) -> str:
    terminal = StreamTerminal()
    for chunk in chunks:
        terminal.feed(chunk)
    return terminal.text


line_text = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=120)
pieces = st.one_of(
    line_text.map(lambda t: t + "\n"),
    st.integers(0, 100).map(lambda i: f"\r{i:3d}% " + "#" * (i // 5)),  # a progress bar
    st.sampled_from(["\x1b[31mred\x1b[0m", "\x1b[1A", "\x1b[2K", "\b", "\r", "tab\tbed\n"]),
    st.integers(200, 3000).map(lambda n: "".join(f"{i:06d} {'y' * 40}\n" for i in range(n))),  # a big block
)


@settings(max_examples=40, deadline=None)
@given(st.lists(pieces, min_size=1, max_size=60), st.integers(1, 6))
def test_spilled_events_and_artifact_rebuild_exactly_the_terminal_text(chunks: list[str], flush_every: int) -> None:
    replay, _ = spill(chunks, cap=4096, flush_every=flush_every)
    assert replay.text == rendered(chunks)
    for event in replay.events:
        if event["name"] == "streamTailSet":
            assert len(event["args"]["text"]) <= 4 * TAIL_CHARS + 2 * 3000 * 48  # a tail, never the whole text


def test_a_long_stream_keeps_head_and_tail_in_the_log_and_little_in_memory() -> None:
    block = "".join(f"{i:09d} {'x' * 89}\n" for i in range(10_000))  # 1 MB
    chunks = [block] * 40
    replay = SpillReplay()
    held: list[int] = []

    async def run() -> None:
        writer = OutputWriter(replay.emit, cell_id="c-1", queue_id="q-1", stage=replay.stage, stream_cap=MB)
        for chunk in chunks:
            writer.on_output("stream", {"name": "stdout", "text": chunk})
            writer.flush()
            assert writer._stream is not None
            held.append(len(writer._stream.terminal.held_text()))
        writer.close()

    asyncio.run(run())
    assert replay.text == block * 40
    head, tail = replay.outputs.values()
    assert len(head["text"]) == MB - MB % 100 and head["text"] == (block * 2)[: len(head["text"])]  # at a line end
    assert len(tail["text"]) <= TAIL_CHARS and tail["text"].endswith(block[-100:])
    assert max(held[1:]) <= 2 * TAIL_CHARS  # past the cap the spooled text is given away: memory does not grow
    log = sum(len(orjson.dumps(e)) for e in replay.events)
    assert log < MB + 40 * 2 * TAIL_CHARS, log  # the head, and a tail per flush
    (data,) = replay.artifacts.values()
    assert len(data) == 40 * len(block) - len(head["text"]) - len(tail["text"])


def test_without_an_artifact_store_the_writer_does_not_spill() -> None:
    events: list[dict[str, Any]] = []

    async def run() -> None:
        writer = OutputWriter(events.append, cell_id="c-1", queue_id="q-1", stream_cap=1000)
        writer.on_output("stream", {"name": "stdout", "text": "z" * 50 + "\n" * 3000})
        writer.close()

    asyncio.run(run())
    assert {e["name"] for e in events} == {"outputAdded"}


# -- a real daemon, a small cap: every reader --------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("spill-home"), env={"RUNTIMED_STREAM_CAP": str(SMALL_CAP)}) as proc:
        yield proc


def numbered(first: int, count: int) -> str:
    return "".join(f"{i:07d} {'w' * 52}\n" for i in range(first, first + count))


LINES = 40_000  # 60-character lines: 2.4 MB
SPILL_CODE = f"""
import sys
for b in range({LINES} // 1000):
    sys.stdout.write("".join(f"{{i:07d}} {{'w' * 52}}\\n" for i in range(b * 1000, b * 1000 + 1000)))
print("\\x1b[32mdone\\x1b[0m", end="")
"""
SPILL_TEXT = numbered(0, LINES) + "\x1b[32mdone\x1b[0m"


def events_of(d: DaemonProcess, notebook_id: str) -> list[dict[str, Any]]:
    with httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=120) as c:
        return c.get(f"/api/notebooks/{notebook_id}/events").json()["events"]


def exported_stdout(d: DaemonProcess, notebook_id: str) -> str:
    """The stdout text of the notebook's last cell in its ``.ipynb`` export."""
    with httpx.Client(base_url=d.url, headers={"Authorization": f"Bearer {d.token}"}, timeout=300) as c:
        nb = json.loads(c.get(f"/api/notebooks/{notebook_id}/export").text)
    return "".join("".join(o["text"]) for o in nb["cells"][-1].get("outputs", [])
                   if o["output_type"] == "stream" and o["name"] == "stdout")


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_readers_resolve_a_spilled_stream(small: DaemonProcess) -> None:
    notebook = "spilled"
    async with AsyncSession(notebook, endpoint=DaemonEndpoint(small.url, small.token)) as s:
        result = await s.run(SPILL_CODE, timeout_secs=240)
        assert result.success, result.outputs
        head, tail = result.outputs
        assert isinstance(tail, SpilledStream) and not isinstance(head, SpilledStream)
        assert tail.artifact is not None and tail.omitted == len(SPILL_TEXT) - len(head.text or "") - len(tail.tail)
        assert tail.tail.endswith("\x1b[32mdone\x1b[0m") and len(tail.tail) <= TAIL_CHARS
        assert len(head.text or "") <= SMALL_CAP
        assert result.stdout == SPILL_TEXT  # fetched on first read
        cell = (await s.get_cells())[-1]
        assert "".join(o.text or "" for o in cell.outputs) == SPILL_TEXT
        assert cell.outputs[-1].to_dict() == {"output_type": "stream", "name": "stdout", "text": tail.text}

    events = events_of(small, notebook)
    tails = [e for e in events if e["name"] == "streamTailSet"]
    assert tails and is_ref(tails[-1]["args"]["data"]["text/plain"])
    assert all(len(orjson.dumps(e)) < SMALL_CAP + 16 * 1024 for e in events)
    sha = tails[-1]["args"]["data"]["text/plain"]["artifact"]
    with httpx.Client(base_url=small.url, headers={"Authorization": f"Bearer {small.token}"}, timeout=60) as c:
        served = c.get(f"/api/artifacts/{sha}")
    assert served.headers["content-type"].startswith("text/plain")
    assert (head.text or "") + served.content.decode() + tail.tail == SPILL_TEXT
    assert exported_stdout(small, notebook) == SPILL_TEXT  # the .ipynb holds the exact text again


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_a_running_stream_shows_its_tail_as_it_grows(small: DaemonProcess) -> None:
    """Before the stream ends, the log has the live tail and the count of omitted characters (no artifact yet)."""
    code = ("import sys, time\nn = 0\nwhile n < 400:\n"
            "    sys.stdout.write(''.join(f'{i:07d} {\"v\" * 52}\\n' for i in range(n * 1000, n * 1000 + 1000)))\n"
            "    n += 1\n    time.sleep(0.01 if n < 200 else 0.02)\n")
    async with AsyncSession("growing", endpoint=DaemonEndpoint(small.url, small.token)) as s:
        cell_id = await s.create_cell(code)
        live: list[tuple[int, bool]] = []
        async for event in await s.stream_execute(cell_id, timeout_secs=240):
            if event.event_type == "output" and isinstance(event.output, SpilledStream):
                live.append((event.output.omitted, event.output.artifact is not None))
        assert live and not live[0][1] and live[-1][1]
        growing = [omitted for omitted, stored in live if not stored]
        assert len(set(growing)) >= 2 and growing == sorted(growing)  # the tail moved on while it ran
        result = (await s.get_cells())[-1]
        assert "".join(o.text or "" for o in result.outputs) == "".join(
            f"{i:07d} {'v' * 52}\n" for i in range(400_000))


def runt_env(d: DaemonProcess) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RUNTIMED_URL", "RUNTIMED_TOKEN")}
    env["RUNTIMED_HOME"] = str(d.home.path)
    return env


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_runt_exec_prints_a_spilled_stream_exactly(small: DaemonProcess) -> None:
    """``runt exec`` prints the head live and the rest once stored: the exact text, in order (colours stripped
    in a pipe, and a final newline after a stream that ended mid-line, as for any output)."""
    async with AsyncSession("spilled-cli", endpoint=DaemonEndpoint(small.url, small.token)) as s:
        assert (await s.run("print('ready')")).success
    out = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "runtimed.cli.main", "exec", "spilled-cli", SPILL_CODE],
        env=runt_env(small), capture_output=True, timeout=240)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.decode() == numbered(0, LINES) + "done\n"


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_mcp_returns_head_and_tail_and_reads_the_rest(small: DaemonProcess) -> None:
    from mcp_clients import mcp_client, text_of

    async with AsyncSession("spilled-mcp", endpoint=DaemonEndpoint(small.url, small.token)) as s:
        result = await s.run(SPILL_CODE, timeout_secs=240)
        assert result.success
        ref = result.outputs[-1].artifact  # type: ignore[attr-defined]
        cell_id = result.cell_id
    async with mcp_client(small, "http", "reader") as mcp:
        shown = text_of(await mcp.call_tool("get_cell", {"notebook_id": "spilled-mcp", "cell_id": cell_id}))
        assert numbered(0, 3) in shown and "\x1b[32mdone" not in shown and "done" in shown  # head, tail (no ANSI)
        assert f"read_artifact sha={ref['artifact']}" in shown and f"{ref['size']:,} bytes" in shown
        first = await mcp.call_tool("read_artifact", {"notebook_id": "spilled-mcp", "sha": ref["artifact"],
                                                      "offset": 0, "length": 120})
        middle = SPILL_TEXT[len(result.outputs[0].text or ""):]
        assert text_of(first).split("\n", 1)[1] == middle[:120]
        assert first.structured_content == {"sha": ref["artifact"], "offset": 0, "end": 120, "size": ref["size"]}
        last = await mcp.call_tool("read_artifact", {"notebook_id": "spilled-mcp", "sha": ref["artifact"],
                                                     "offset": -60})
        assert text_of(last).split("\n", 1)[1] == middle[: ref["size"]][-60:]
        denied = await mcp.call_tool("read_artifact", {"notebook_id": "spilled-mcp", "sha": "0" * 64})
        assert denied.is_error


@pytest.mark.timeout(300)
def test_runt_run_writes_the_whole_stream_and_logs_its_tail(small: DaemonProcess, tmp_path: Any) -> None:
    import nbformat

    src, out = tmp_path / "in.ipynb", tmp_path / "out.ipynb"
    nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SPILL_CODE)]), str(src))
    proc = subprocess.run([sys.executable, "-m", "runtimed.cli.main", "run", str(src), str(out), "--log-output",
                           "--stdout-file", str(tmp_path / "o.txt")],
                          env=runt_env(small), capture_output=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (tmp_path / "o.txt").read_text() == SPILL_TEXT
    (code,) = [c for c in nbformat.read(str(out), 4).cells if c.cell_type == "code"]
    assert "".join(o["text"] for o in code.outputs if o["output_type"] == "stream") == SPILL_TEXT
    err = proc.stderr.decode()  # the live log is on stderr between papermill's banners, as papermill's
    log = err[err.index("Executing Cell 1-"):].split("\n", 1)[1]
    log = log[: log.rindex("Ending Cell 1-")]
    # Live, the log holds every character once and in order, except where it fell behind the spill: there a note
    # says how many characters it skipped, and the text goes on from exactly there.
    pieces = re.split(r"\n\[… ([\d,]+) characters not logged live …\]\n", log)
    at = 0
    for k, piece in enumerate(pieces):
        if k % 2:
            at += int(piece.replace(",", ""))
        else:
            assert piece == SPILL_TEXT[at : at + len(piece)], (at, piece[:80])
            at += len(piece)
    assert at == len(SPILL_TEXT) and log.startswith(numbered(0, 3))


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_the_page_shows_head_omitted_note_and_live_tail(small: DaemonProcess) -> None:
    from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook

    api = Api(small)
    nb = api.create("Spilled", [("code", SPILL_CODE)])
    async with chromium() as browser:
        page = await open_notebook(browser, small, nb)
        await page.locator("[data-testid=run-all]").click()
        link = cell(page, "cell-0").locator("[data-testid=output-omitted] a")
        await link.wait_for(timeout=RUN_TIMEOUT)
        streams = cell(page, "cell-0").locator("[data-testid=output-stream]")
        assert await streams.count() == 2
        head, tail = await streams.nth(0).inner_text(), await streams.nth(1).inner_text()
        assert head.startswith(numbered(0, 3)) and tail.endswith("done")  # colours rendered, not shown as codes
        note = await cell(page, "cell-0").locator("[data-testid=output-omitted]").inner_text()
        href = await link.get_attribute("href")
        assert href and href.startswith("/api/artifacts/") and "bytes omitted" in note
        middle = await page.evaluate("(href) => fetch(href).then((r) => r.text())", href)  # the page's cookie
        assert head + middle + tail == SPILL_TEXT.replace("\x1b[32m", "").replace("\x1b[0m", "")
        assert f"{len(middle.encode()):,} bytes omitted" in note
        assert not page.errors, page.errors


# -- the default cap: 200 MB printed, 100 MB of JSON ---------------------------------------------------------


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("big-home")) as proc:
        yield proc


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for pid {pid}")


class PeakRss:
    """Samples a process's resident memory in a thread until stopped; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.peak = max(self.peak, rss_mb(self.pid))

    def stop(self) -> float:
        self._stop.set()
        self._thread.join(5)
        return self.peak


BLOCKS = 200  # 1 MB each: 200 MB
BLOCK_LINES = 10_000
PRINT_CODE = f"""
import sys
for b in range({BLOCKS}):
    sys.stdout.write("".join(f"{{i:09d}} {{'x' * 89}}\\n" for i in range(b * {BLOCK_LINES}, (b + 1) * {BLOCK_LINES})))
"""


def printed_hash() -> tuple[str, int]:
    digest, size = hashlib.sha256(), 0
    for b in range(BLOCKS):
        block = "".join(f"{i:09d} {'x' * 89}\n" for i in range(b * BLOCK_LINES, (b + 1) * BLOCK_LINES)).encode()
        digest.update(block)
        size += len(block)
    return digest.hexdigest(), size


@pytest.mark.anyio
@pytest.mark.timeout(600)
async def test_200_mb_printed_keeps_the_log_and_the_daemon_small(big: DaemonProcess) -> None:
    assert big.proc is not None
    endpoint = DaemonEndpoint(big.url, big.token)
    async with AsyncSession("print-200mb", endpoint=endpoint) as s:
        warm = await s.run("for _ in range(30_000): print('w' * 99)")
        assert warm.success  # the kernel and every code path (a spill too: 3 MB) loaded once
        idle = rss_mb(big.proc.pid)
        sampler = PeakRss(big.proc.pid)
        result = await s.run(PRINT_CODE, timeout_secs=540)
        peak = sampler.stop()
        assert result.success, result.outputs
        head, tail = result.outputs
        assert isinstance(tail, SpilledStream) and tail.artifact is not None
        head_text, tail_text, ref = head.text or "", tail.tail, tail.artifact
    expected_sha, expected_size = printed_hash()
    grew = peak - idle  # judged at the end, once the bytes are checked

    events = [e for e in events_of(big, "print-200mb") if e["name"] in ("outputAdded", "streamTextChanged",
                                                                          "streamTailSet")]
    assert max(len(orjson.dumps(e)) for e in events) < MB + 64 * 1024  # the head at most; tails are small
    assert sum(len(orjson.dumps(e)) for e in events) < 3 * MB  # the log holds head and tails, not 200 MB

    digest, size = hashlib.sha256(head_text.encode()), len(head_text.encode())
    with (httpx.Client(base_url=big.url, headers={"Authorization": f"Bearer {big.token}"}, timeout=300) as c,
          c.stream("GET", f"/api/artifacts/{ref['artifact']}") as served):
        assert served.status_code == 200
        for chunk in served.iter_bytes(4 * MB):
            digest.update(chunk)
            size += len(chunk)
    digest.update(tail_text.encode())
    size += len(tail_text.encode())
    assert (digest.hexdigest(), size) == (expected_sha, expected_size)  # the bytes served are the bytes printed
    exported = exported_stdout(big, "print-200mb").encode()
    assert len(exported) == expected_size and hashlib.sha256(exported).hexdigest() == expected_sha
    # the kernel sends at most 1 MiB per message and runs at most 16 MiB ahead of the runtime (kernel_side.py),
    # and the writer spools as it goes: the daemon's memory does not grow with the print (+16..+23 MB measured
    # for 100 MB to 1 GB printed on an idle machine; without flow control +476 / +547 / +791 MB for 100 / 200 /
    # 400 MB). This test's own measure (idle after a warm-up cell, peak sampled, the suite's load) spreads from
    # +56 to +142 MB over six runs of one afternoon on several commits, in no order of the commits: up to the
    # window (16 MiB) of 1 MiB messages queued and parsed in the runtime. 200 MB still fails without flow
    # control by far
    assert grew < 200, f"daemon RSS went from {idle:.0f} MB to {peak:.0f} MB while 200 MB were printed"


JSON_CODE = """
import hashlib, json
from IPython.display import JSON, display
value = {"rows": [{"i": i, "name": f"row {i}", "tags": ["é", "ü"], "note": "ünïcödé " * 84 + str(i)}
                  for i in range(100_000)]}
raw = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
ordered = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
print(hashlib.sha256(raw).hexdigest(), len(raw), hashlib.sha256(ordered).hexdigest())
display(JSON(value))
del value, raw
"""


@pytest.mark.anyio
@pytest.mark.timeout(600)
async def test_100_mb_display_json_is_an_artifact_served_and_exported_whole(big: DaemonProcess) -> None:
    async with AsyncSession("json-100mb", endpoint=DaemonEndpoint(big.url, big.token)) as s:
        result = await s.run(JSON_CODE, timeout_secs=540)
        assert result.success, result.outputs
    sha, size, ordered_sha = result.stdout.split()
    assert int(size) > 100 * 1000 * 1000
    events = [e for e in events_of(big, "json-100mb") if e["name"] == "outputAdded"]
    assert max(len(orjson.dumps(e)) for e in events) < 80 * 1024  # the log keeps a reference only
    refs = [v for e in events for v in (e["args"].get("data") or {}).values() if is_ref(v)]
    assert [(r["artifact"], r["size"]) for r in refs] == [(sha, int(size))]
    with httpx.Client(base_url=big.url, headers={"Authorization": f"Bearer {big.token}"}, timeout=300) as c:
        digest = hashlib.sha256()
        with c.stream("GET", f"/api/artifacts/{sha}") as served:
            for chunk in served.iter_bytes(4 * MB):
                digest.update(chunk)
        assert digest.hexdigest() == sha
        nb = json.loads(c.get("/api/notebooks/json-100mb/export").text)
    value = next(o["data"]["application/json"] for cell in nb["cells"] for o in cell.get("outputs", [])
                 if "application/json" in o.get("data", {}))
    # the export holds the very value displayed (nbformat writes keys sorted)
    again = json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()
    assert hashlib.sha256(again).hexdigest() == ordered_sha

