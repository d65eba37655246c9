"""Record the event logs that tests/test_reducer_parity.py replays (tests/fixtures/logs/*.json).

Each scenario drives a real daemon with real kernels (its own temporary RUNTIMED_HOME) through
the Python bindings, then stores the notebook's log exactly as ``GET /api/notebooks/{id}/events``
returns it. The logs are committed so the parity test needs no kernel; rerun this script to
regenerate them after a change to the event catalog or the runtime:

    .venv/bin/python tests/record_logs.py              # every scenario
    .venv/bin/python tests/record_logs.py progress     # only some
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import sys
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import nbformat

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import DaemonProcess  # noqa: E402

from runtimed.client.session import AsyncSession  # noqa: E402
from runtimed.schema import views  # noqa: E402
from runtimed.schema.crdt import SourceDoc, encode_update  # noqa: E402
from runtimed.schema.events import make_event  # noqa: E402
from runtimed.schema.ordering import key_for_position  # noqa: E402

LOGS = Path(__file__).resolve().parent / "fixtures" / "logs"
MAX_BYTES = 200_000
SPILL_CAP = 4096  # RUNTIMED_STREAM_CAP of the recording daemon
WAIT = 90.0  # seconds: bound of every wait (the first run of a notebook starts its kernel)
ALICE = {"id": "alice", "kind": "human", "name": "Alice"}
BOB = {"id": "bob", "kind": "human", "name": "Bob"}
# a 1x1 PNG, for attachments and image outputs
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


class Recording:
    """One scenario's sessions on one notebook of the recording daemon."""

    def __init__(self, daemon: DaemonProcess, notebook_id: str) -> None:
        self.daemon = daemon
        self.notebook_id = notebook_id
        self.sessions: list[AsyncSession] = []

    async def session(self, actor: dict[str, Any]) -> AsyncSession:
        s = AsyncSession(self.notebook_id, actor=actor, endpoint=self.daemon.endpoint)
        await s.connect()
        self.sessions.append(s)
        return s

    async def close(self) -> None:
        for s in self.sessions:
            await s.close()


# -- waiting on the replica (bounded) -------------------------------------------------------------------


def conn(s: AsyncSession) -> sqlite3.Connection:
    return s.client.replica.conn


def order_keys(s: AsyncSession) -> list[str]:
    return [c["fractional_index"] for c in views.ordered_cells(conn(s))]


async def until(s: AsyncSession, predicate: Callable[[sqlite3.Connection], Any], what: str) -> Any:
    try:
        return await s.client.wait_for(lambda: predicate(conn(s)), WAIT)
    except TimeoutError:
        raise RuntimeError(f"{s.notebook_id}: gave up waiting for {what}") from None


def status(c: sqlite3.Connection, queue_id: str) -> str | None:
    found = views.executions(c, queue_id=queue_id)
    return found[0]["status"] if found else None


async def until_status(s: AsyncSession, queue_id: str, *wanted: str) -> str:
    return await until(s, lambda c: status(c, queue_id) in wanted and status(c, queue_id), f"{queue_id} {wanted}")


async def until_output(s: AsyncSession, cell_id: str, text: str) -> None:
    def seen(c: sqlite3.Connection) -> bool:
        return any(text in json.dumps(o, ensure_ascii=False) for o in views.outputs_by_cell(c, cell_id).get(cell_id, []))

    await until(s, seen, f"output {text!r} in {cell_id}")


async def until_input(s: AsyncSession, queue_id: str) -> None:
    await until(s, lambda c: any(i["queue_id"] == queue_id for i in views.pending_inputs(c)), f"input of {queue_id}")


async def settle(s: AsyncSession) -> None:
    """No work queued or running, and the runtime (if any) idle: the log has come to rest."""
    def quiet(c: sqlite3.Connection) -> bool:
        busy = [e for e in views.executions(c) if e["status"] in ("pending", "assigned", "running")]
        runtime = views.active_session(c)
        return not busy and (runtime is None or runtime["status"] == "idle")

    await until(s, quiet, "the notebook to come to rest")


def expect(s: AsyncSession, queue_id: str, wanted: str, ename: str | None = None) -> None:
    """The recorder checks its own scenario, so a regenerated log still shows what it is named for."""
    (item,) = views.executions(conn(s), queue_id=queue_id)
    got = item["error"]["ename"] if item["error"] else None
    if item["status"] != wanted or (ename is not None and got != ename):
        raise RuntimeError(f"{s.notebook_id}: {queue_id} ended {item['status']} ({got}), expected {wanted} ({ename})")


async def run(s: AsyncSession, cell_id: str, wanted: str = "success", ename: str | None = None) -> str:
    queue_id = await s.queue_cell(cell_id)
    await until_status(s, queue_id, "success", "error", "cancelled")
    expect(s, queue_id, wanted, ename)
    return queue_id


async def reply(s: AsyncSession, queue_id: str, value: str) -> None:
    await until_input(s, queue_id)
    await s.client.commit([make_event("inputReplied", queue_id=queue_id, value=value)])


async def push(s: AsyncSession, name: str, **args: Any) -> None:
    await s.client.commit([make_event(name, **args)])


# -- scenarios ---------------------------------------------------------------------------------------


async def outputs(rec: Recording) -> None:
    """stream (stdout/stderr, ANSI), display_data, execute_result, error; unicode everywhere; a re-run."""
    s = await rec.session(ALICE)
    await s.set_metadata("title", "Sorties — ünïcødé 📓")
    streams = await s.create_cell(
        'print("héllo wörld 🌍")\nimport sys\nprint("\\x1b[31mwarn\\x1b[0m ⚠", file=sys.stderr)\nprint("back to stdout")')
    await s.create_cell("# Überschrift 🎈\n*emphasis* and `code`", "markdown")
    rich = await s.create_cell(
        "from IPython.display import display, HTML, Markdown, Image\n"
        'display(Markdown("**fett** ✓"))\n'
        'display(HTML("<b>bold</b> — ok"), metadata={"isolated": True})\n'
        f'display(Image(data=__import__("base64").b64decode("{PNG}")))\n'
        '{"ключ": "значение", "n": 1.5}')
    await s.create_cell("x = 'no output'", "code")
    failing = await s.create_cell("def f():\n    return 1 / 0\nf()")
    emoji = await s.create_cell('"😀" * 3')
    for cell_id in (streams, rich):
        await run(s, cell_id)
    await run(s, failing, "error", "ZeroDivisionError")
    await run(s, emoji)
    await run(s, streams)  # a re-run clears the outputs and gets a new execution count
    await settle(s)


async def progress(rec: Recording) -> None:
    """``\\r`` progress (streamTextChanged rewrites), update_display (displayUpdated, also across cells),
    clear_output(wait=True) frames, a wait-clear left pending, a plain clear, a human clear."""
    s = await rec.session(ALICE)
    bar = await s.create_cell(
        'import time\nprint("start 🚀", flush=True)\ntime.sleep(0.15)\nfor i in range(1, 6):\n'
        '    print(f"\\r⏳ {i * 20:3d}% " + "█" * i, end="", flush=True)\n    time.sleep(0.15)\n'
        'print("\\r✅ done" + " " * 12)\nprint("second line 🙂")\n'
        'for i in range(3):\n    print(f"line {i}", flush=True)\n    time.sleep(0.08)')
    shown = await s.create_cell(
        "import time\nfrom IPython.display import display, update_display\n"
        'display("step 0", display_id="steps")\n'
        'for i in range(1, 4):\n    time.sleep(0.05)\n    update_display(f"step {i} ✓", display_id="steps")')
    other = await s.create_cell('from IPython.display import display\ndisplay("shared 0", display_id="shared")')
    updater = await s.create_cell(
        'from IPython.display import update_display\nupdate_display({"text/plain": "shared 1 ✓", "text/html": "<i>1</i>"},'
        ' raw=True, display_id="shared")\nprint("updated the other cell")')
    frames = await s.create_cell(
        "import time\nfrom IPython.display import clear_output\nfor i in range(4):\n    clear_output(wait=True)\n"
        '    print(f"frame {i} 🎞")\n    time.sleep(0.05)')
    pending = await s.create_cell(
        'print("stays until the next output")\nfrom IPython.display import clear_output\nclear_output(wait=True)')
    plain = await s.create_cell('print("gone")\nfrom IPython.display import clear_output\nclear_output()\nprint("after clear")')
    for cell_id in (bar, shown, other, updater, frames, pending, plain):
        await run(s, cell_id)
    await run(s, pending)  # a clear still waiting when its cell runs again
    await s.clear_outputs(bar)
    await settle(s)
    await s.shutdown_kernel()


async def cell_ops(rec: Recording) -> None:
    """Create (with metadata, attachments, an execution count), edit, move, change type (which clears
    outputs and cancels queued runs), metadata set/delete, attachments, delete (with outputs, and while queued)."""
    s = await rec.session(ALICE)
    first = await s.create_cell("x = 21\nprint(x * 2)")
    second = await s.create_cell("print('second')")
    notes = await s.create_cell("Some *notes* 📝", "markdown")
    raw = await s.create_cell("raw text", "raw")
    keys = order_keys(s)
    await push(s, "cellCreated", cell_id="c-imported-like", cell_type="markdown", fractional_index=key_for_position(keys, 1),
               source="![img](attachment:dot.png)", metadata={"tags": ["setup"], "collapsed": False},
               attachments={"dot.png": {"image/png": PNG}}, execution_count=None)
    await push(s, "cellCreated", cell_id="c-counted", cell_type="code", fractional_index=key_for_position(keys, None),
               source="y = 1", execution_count=7)
    await run(s, first)
    await run(s, second)
    await s.set_metadata("tags", ["report", "ünï"], cell_id=second)
    await s.set_metadata("collapsed", True, cell_id=second)
    await s.set_metadata("collapsed", None, cell_id=second)
    await s.set_metadata("authors", [{"name": "Zoë"}])
    await s.set_metadata("scratch", {"a": [1, 2, {"b": None}]})
    await s.set_metadata("scratch", None)
    await s.set_metadata("title", "Cell operations")
    await s.move_cell(second, index=0)
    await s.move_cell(notes, index=-1)
    await s.move_cell(raw, after_cell_id=first)
    await s.set_cell_type(second, "markdown")  # had outputs and an execution count
    await s.set_cell_type(second, "code")
    await s.set_cell_type(notes, "raw")
    await push(s, "cellAttachmentsSet", cell_id=notes, attachments={"a.png": {"image/png": PNG}})
    await s.set_source(first, "x = 21  # the answer, halved\nprint(x * 2)")
    # queued work on cells that get deleted or stop being code is cancelled; a runner waiting for
    # input keeps the queue still meanwhile, so the order of events does not depend on timing
    blocker = await s.create_cell("input('hold the queue ')")
    doomed = await s.create_cell("print('never runs')")
    retyped = await s.create_cell("print('becomes markdown')")
    held = await s.queue_cell(blocker)
    await until_input(s, held)
    doomed_q = await s.queue_cell(doomed)
    retyped_q = await s.queue_cell(retyped)
    await s.delete_cell(doomed)
    await s.set_cell_type(retyped, "markdown")
    await reply(s, held, "ok")
    await until_status(s, held, "success")
    for queue_id in (doomed_q, retyped_q):
        expect(s, queue_id, "cancelled")
    await s.delete_cell(first)  # with outputs
    await s.delete_cell(raw)
    await settle(s)
    await s.shutdown_kernel()


async def run_all(rec: Recording) -> None:
    """A run-all batch stopped by an error; an interrupted cell re-queued while it ran; a queued cell
    cancelled by id; cancel-all while a cell runs (cancel requested, then cancelled); a kernel that dies."""
    s = await rec.session(ALICE)
    await s.create_cell("a = 1")
    await s.create_cell("print('before the error')\nraise ValueError('nope ✗')")
    await s.create_cell("print('never printed')")
    last = await s.create_cell("b = 2")
    queue_ids = await run_batch(s)
    for queue_id, wanted in zip(queue_ids, ("success", "error", "cancelled", "cancelled"), strict=True):
        await until_status(s, queue_id, "success", "error", "cancelled")
        expect(s, queue_id, wanted)
    sleeper = await s.create_cell("import time\nprint('sleeping 💤', flush=True)\ntime.sleep(60)")
    interrupted = await s.queue_cell(sleeper)
    await until_output(s, sleeper, "sleeping")
    again = await s.queue_cell(sleeper)  # queued again while it runs
    await s.interrupt()
    await until_status(s, interrupted, "error")
    expect(s, interrupted, "error", "KeyboardInterrupt")
    await until_status(s, again, "running")
    await until_output(s, sleeper, "sleeping")
    queued = await s.queue_cell(last)
    await push(s, "executionCancelRequested", queue_id=queued)
    await until_status(s, queued, "cancelled")  # claimed ahead: its runtime completes it as cancelled
    expect(s, queued, "cancelled")
    await push(s, "executionCancelRequested")
    await until_status(s, again, "cancelled")
    dying = await s.create_cell("import os\nprint('bye', flush=True)\nos._exit(1)")
    await run(s, dying, "error", "KernelDied")
    await run(s, last)
    await settle(s)


async def run_batch(s: AsyncSession) -> list[str]:
    """Run all cells as one batch; its queue ids in order."""
    await s.run_all_cells()
    batch = views.executions(conn(s))[-1]["batch_id"]
    return [e["queue_id"] for e in views.executions(conn(s)) if e["batch_id"] == batch]


async def collab(rec: Recording) -> None:
    """Two clients editing one cell at once (concurrent Yjs updates from the same base), keystroke
    edits, concurrent inserts at the same position, a delete racing an insert; two cells created at
    the same position at once; then the merged source runs."""
    alice = await rec.session(ALICE)
    bob = await rec.session(BOB)
    cell_id = await alice.create_cell("def greet(name):\n    return 'hi ' + name\n")
    await until(bob, lambda c: views.cell(c, cell_id) is not None, "bob to see the cell")

    async def together(edits: dict[AsyncSession, str]) -> None:
        """Each session edits from the same base state; the updates are pushed concurrently."""
        states = {s: conn(s).execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()[0] for s in edits}
        if len(set(states.values())) != 1:
            raise RuntimeError("collab: the sessions do not share the base state")
        events = {}
        for s, text in edits.items():
            update = SourceDoc(states[s]).update_to(text)
            assert update is not None
            events[s] = [make_event("cellSourceEdited", cell_id=cell_id, update=encode_update(update))]
        await asyncio.gather(*(s.client.commit(e) for s, e in events.items()))
        head = max(s.client.replica.head for s in edits)
        for s in edits:
            await until(s, lambda c: views.notebook_info(c)["head_seq"] >= head, "the other session's edit")

    base = "def greet(name):\n    return 'hi ' + name\n"
    await together({alice: "# 👋 greeting\n" + base,
                    bob: base.replace("'hi '", "'hello '") + "print(greet('Zoë'))\n"})
    merged = views.cell(conn(alice), cell_id)["source"]
    await together({alice: merged + "# A 🅰\n", bob: merged + "# B 🅱\n"})  # same position: the CRDT orders them
    merged = views.cell(conn(alice), cell_id)["source"]
    await together({alice: merged.replace("# 👋 greeting\n", ""), bob: merged.replace("👋", "👋🌍")})
    for ch in "# typed by bob ✍":
        source = views.cell(conn(bob), cell_id)["source"]
        await bob.set_source(cell_id, source + ch)
    await until(alice, lambda c: views.cell(c, cell_id)["source"].endswith("✍"), "bob's keystrokes")
    # both add a cell at the end at once: the same fractional index, ordered by id
    key = key_for_position(order_keys(alice), None)
    await asyncio.gather(
        push(alice, "cellCreated", cell_id="c-from-alice", cell_type="code", fractional_index=key, source="'alice'"),
        push(bob, "cellCreated", cell_id="c-from-bob", cell_type="code", fractional_index=key, source="'bob'"))
    # bob's insert inside the line alice deleted survives the merge (glued to `def`): alice repairs it
    merged = views.cell(conn(alice), cell_id)["source"]
    await alice.set_source(cell_id, merged.replace("🌍def", "world = '🌍'\ndef"))
    await run(alice, cell_id)
    await settle(alice)
    await alice.shutdown_kernel()


async def input_runtime(rec: Recording) -> None:
    """input() and getpass requested and replied; kernel restarts (idle, and while a cell runs);
    shutdown; a new runtime; input() twice in one cell; a runtime ended while a cell of a run-all
    batch waits for input (RuntimeLost, the rest of the batch cancelled)."""
    s = await rec.session(ALICE)
    ask = await s.create_cell('name = input("Wie heißt du? ")\nprint(f"Hallo {name} 👋")')
    secret = await s.create_cell('import getpass\npw = getpass.getpass("Passwort: ")\nprint(len(pw), "chars")')
    sleeper = await s.create_cell("import time\nprint('working', flush=True)\ntime.sleep(60)")
    queue_id = await s.queue_cell(ask)
    await reply(s, queue_id, "Zoë 🦊")
    await until_status(s, queue_id, "success")
    queue_id = await s.queue_cell(secret)
    await reply(s, queue_id, "s3cret")
    await until_status(s, queue_id, "success")
    await s.restart_kernel()
    queue_id = await s.queue_cell(sleeper)
    await until_output(s, sleeper, "working")
    await s.restart_kernel()
    await until_status(s, queue_id, "error")
    expect(s, queue_id, "error", "KernelRestarted")
    await settle(s)
    await s.shutdown_kernel()
    twice = await s.create_cell('a = input("first? ")\nb = input("second? ")\nprint(a + b)')
    queue_id = await s.queue_cell(twice)  # starts a new runtime session
    await reply(s, queue_id, "ein ")
    await reply(s, queue_id, "zwei ✌")
    await until_status(s, queue_id, "success")
    batch = await run_batch(s)  # `ask` first: the session ends while it waits for input
    await until_input(s, batch[0])
    await s.shutdown_kernel()
    await until_status(s, batch[0], "error")
    expect(s, batch[0], "error", "RuntimeLost")
    for queue_id in batch[1:]:  # the error stops the rest of the batch
        expect(s, queue_id, "cancelled")


async def imported(rec: Recording) -> None:
    """An .ipynb imported over REST (outputs without an execution, execution counts, attachments,
    metadata), then edited and partly re-run."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.update(kernelspec={"name": "python3", "language": "python", "display_name": "Python 3"},
                       language_info={"name": "python"}, authors=[{"name": "Zoë"}])
    md = nbformat.v4.new_markdown_cell("# Importiert 📥\n![dot](attachment:dot.png)",
                                       attachments={"dot.png": {"image/png": PNG}})
    code = nbformat.v4.new_code_cell("print('old')\n6 * 7", execution_count=3, metadata={"tags": ["keep"]}, outputs=[
        nbformat.v4.new_output("stream", name="stdout", text="old\n"),
        nbformat.v4.new_output("execute_result", {"text/plain": "42"}, execution_count=3),
    ])
    pic = nbformat.v4.new_code_cell("show()", execution_count=4, outputs=[
        nbformat.v4.new_output("display_data", {"image/png": PNG, "text/plain": "<Figure>"}, metadata={"image/png": {"width": 1}}),
        nbformat.v4.new_output("error", ename="NameError", evalue="name 'show' is not defined", traceback=["NameError ✗"]),
    ])
    raw = nbformat.v4.new_raw_cell("raw ✓")
    nb.cells = [md, code, pic, raw]
    response = httpx.post(f"{rec.daemon.url}/api/notebooks/import", params={"id": rec.notebook_id, "title": "Importiert"},
                          content=nbformat.writes(nb).encode(), headers=headers(rec.daemon), timeout=30)
    response.raise_for_status()
    s = await rec.session(ALICE)
    cells = views.ordered_cells(conn(s))
    code_id, pic_id = cells[1]["id"], cells[2]["id"]
    await s.set_source(code_id, "print('new ✓')\n6 * 7")
    await run(s, code_id)
    await s.clear_outputs(pic_id)
    await settle(s)
    await s.shutdown_kernel()


async def spill(rec: Recording) -> None:
    """Streams past the cap (RUNTIMED_STREAM_CAP=4096 while recording): the head output, a live tail set
    again and again (streamTailSet) while the cell prints, then the omitted middle as an artifact; a stderr
    stream that spills after stdout ended; a re-run of a spilled cell; a stream that stays under the cap."""
    s = await rec.session(ALICE)
    live = await s.create_cell(
        "import sys, time\nfor block in range(6):\n"
        "    print('\\n'.join(f'{block}.{i:03d} ünïcødé ✓' for i in range(200)), flush=True)\n"
        "    time.sleep(0.6)\n")
    both = await s.create_cell(
        "import sys\nprint('x' * 5000)\nprint('\\n'.join(f'err {i} ⚠' for i in range(700)), file=sys.stderr)")
    small = await s.create_cell("print('small 🙂')")
    await run(s, live)
    await run(s, both)
    await run(s, small)
    await run(s, both)  # a re-run replaces the spilled outputs
    await settle(s)


async def cleared(rec: Recording) -> None:
    """"Clear outputs" as in JupyterLab (outputsCleared with execution): the count and a finished run's
    status go; a clear while the cell still runs keeps the running execution, and its result shows; a
    clear without execution keeps the count; a cell cleared then run again."""
    s = await rec.session(ALICE)
    done = await s.create_cell("print('done ✓')\n41 + 1")
    failed = await s.create_cell("raise KeyError('gone')")
    slow = await s.create_cell("import time\nprint('working', flush=True)\ntime.sleep(1)\n'finished'")
    kept = await s.create_cell("print('count stays')")
    await run(s, done)
    await run(s, failed, "error", "KeyError")
    await run(s, kept)
    await push(s, "outputsCleared", cell_id=done, wait=False, execution=True)
    await push(s, "outputsCleared", cell_id=failed, wait=False, execution=True)
    await push(s, "outputsCleared", cell_id=kept, wait=False)
    running = await s.queue_cell(slow)
    await until_output(s, slow, "working")
    await push(s, "outputsCleared", cell_id=slow, wait=False, execution=True)
    await until_status(s, running, "success")
    await run(s, done)
    await settle(s)


SCENARIOS: dict[str, Callable[[Recording], Awaitable[None]]] = {
    "outputs": outputs,
    "progress": progress,
    "cell_ops": cell_ops,
    "run_all": run_all,
    "collab": collab,
    "input_runtime": input_runtime,
    "imported": imported,
    "spill": spill,
    "cleared": cleared,
}


# -- recording ---------------------------------------------------------------------------------------


def headers(daemon: DaemonProcess) -> dict[str, str]:
    return {"Authorization": f"Bearer {daemon.token}"}


def fetch_events(daemon: DaemonProcess, notebook_id: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{daemon.url}/api/notebooks/{notebook_id}/events", headers=headers(daemon), timeout=30)
    response.raise_for_status()
    body = response.json()
    if len(body["events"]) != body["head"]:
        raise RuntimeError(f"{notebook_id}: got {len(body['events'])} events of {body['head']}")
    return body["events"]


def write_log(path: Path, notebook_id: str, scenario: str, events: list[dict[str, Any]]) -> int:
    """One event per line, so a regenerated log diffs readably."""
    lines = ",\n".join(json.dumps(e, ensure_ascii=False, sort_keys=True) for e in events)
    text = (f'{{"notebook_id": {json.dumps(notebook_id)},\n "scenario": {json.dumps(scenario, ensure_ascii=False)},\n'
            f' "events": [\n{lines}\n]}}\n')
    size = len(text.encode())
    if size > MAX_BYTES:
        raise RuntimeError(f"{path.name} would be {size} bytes; keep recorded logs under {MAX_BYTES} (shorten the scenario)")
    path.write_text(text, encoding="utf-8")
    return size


async def record(daemon: DaemonProcess, name: str) -> None:
    scenario = SCENARIOS[name]
    notebook_id = f"parity-{name.replace('_', '-')}"
    rec = Recording(daemon, notebook_id)
    try:
        await scenario(rec)
    finally:
        await rec.close()
    events = fetch_events(daemon, notebook_id)
    doc = " ".join((scenario.__doc__ or "").split())
    size = write_log(LOGS / f"{name}.json", notebook_id, doc, events)
    print(f"{name}: {len(events)} events, {size} bytes")


def main(argv: list[str]) -> int:
    names = argv or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}", file=sys.stderr)
        return 2
    LOGS.mkdir(parents=True, exist_ok=True)
    os.environ["RUNTIMED_STREAM_CAP"] = str(SPILL_CAP)  # small enough for the spill scenario's log (the others
    # print far less, so they are recorded as with the default)
    with tempfile.TemporaryDirectory(prefix="runtimed-record-") as tmp:
        daemon = DaemonProcess(Path(tmp))
        daemon.start()
        try:
            for name in names:
                asyncio.run(record(daemon, name))
        finally:
            daemon.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
