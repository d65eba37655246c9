"""The page's view reducer (reducer.js) against the Python materializer, on recorded real logs.

The browser keeps its own reducer for display; the Python materializer (server and client
replicas) is the authority. Every log in tests/fixtures/logs (recorded from a real daemon with
real kernels by tests/record_logs.py) is replayed through a ``Replica`` and through
tests/js/replay_reducer.mjs under Node, and the two views must be equal after every event, not
only at the end. Node is a test-time tool only; its packages come from ``npm ci`` of the
frontend, run once here when ``node_modules`` is missing.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtimed.schema.replica import Replica
from runtimed.schema.views import notebook_view

ROOT = Path(__file__).resolve().parent.parent
FRONTEND = ROOT / "runtimed" / "web" / "frontend"
SCRIPT = ROOT / "tests" / "js" / "replay_reducer.mjs"
SHAPE = json.loads((ROOT / "tests" / "js" / "view_shape.json").read_text())  # what both sides are cut to
LOGS = sorted((ROOT / "tests" / "fixtures" / "logs").glob("*.json"))
NEEDED_MODULES = ("yjs", "fractional-indexing")  # what reducer.js imports, directly or through order.js
NODE_TIMEOUT = 120  # seconds, for one replay
NPM_TIMEOUT = 600

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 120)

View = dict[str, Any]


# -- the two sides ------------------------------------------------------------------------------------


@contextlib.contextmanager
def _install_lock() -> Iterator[None]:
    """Two test runs in one checkout must not run ``npm ci`` into the same folder at once."""
    with open(Path(tempfile.gettempdir()) / "runtimed-frontend-npm-ci.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _modules_missing() -> list[str]:
    return [m for m in NEEDED_MODULES if not (FRONTEND / "node_modules" / m / "package.json").exists()]


@pytest.fixture(scope="module")
def node() -> str:
    """The Node executable, with the frontend's packages installed (``npm ci`` once when missing)."""
    node = shutil.which("node")
    if node is None:
        pytest.fail("the reducer parity test needs Node.js >= 18 on PATH (apt-get install -y nodejs npm)")
    if _modules_missing():
        npm = shutil.which("npm")
        if npm is None:
            pytest.fail(f"{FRONTEND}/node_modules is missing and npm is not on PATH to install it (apt-get install -y npm)")
        with _install_lock():
            if _modules_missing():
                done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=FRONTEND, capture_output=True,
                                      text=True, timeout=NPM_TIMEOUT)
                if done.returncode != 0 or _modules_missing():
                    pytest.fail(f"`npm ci` in {FRONTEND} failed ({done.returncode}): {done.stderr[-2000:]}")
    return node


def load(path: Path) -> tuple[str, list[dict[str, Any]]]:
    log = json.loads(path.read_text(encoding="utf-8"))
    return log["notebook_id"], log["events"]


def pick(item: dict[str, Any], kind: str) -> dict[str, Any]:
    """``item`` cut to the fields of view_shape.json (a field the view lost is an error, not a silent null)."""
    missing = [f for f in SHAPE[kind] if f not in item]
    assert not missing, f"notebook_view no longer has the {kind} field(s) {missing}: update tests/js/view_shape.json"
    return {f: item[f] for f in SHAPE[kind]}


def shaped(view: dict[str, Any]) -> View:
    """notebook_view cut to the compared shape, as JSON data."""
    out = pick(view, "notebook")
    out["cells"] = [pick(c, "cell") for c in view["cells"]]
    for c in out["cells"]:
        c["execution"] = c["execution"] and pick(c["execution"], "execution")
    out["runtime"] = view["runtime"] and pick(view["runtime"], "runtime")
    out["inputs"] = [pick(i, "input") for i in view["inputs"]]
    return json.loads(json.dumps(out))


def materializer_views(notebook_id: str, events: list[dict[str, Any]],
                       loads_at: set[int] = frozenset()) -> tuple[dict[int, View], dict[int, dict[str, Any]]]:
    """notebook_view after each event, replayed through a client replica (the same materializer as the
    server); and at each seq of ``loads_at``, the whole view the page loads (GET /api/notebooks/{id}?ystate=1)."""
    replica = Replica(notebook_id)
    views, loads = {}, {}
    try:
        for event in events:
            replica.apply_wire([event])
            view = notebook_view(replica.conn)
            views[event["seq"]] = shaped(view)
            if event["seq"] in loads_at:
                states = {r["id"]: r["ystate"] for r in replica.query("SELECT id, ystate FROM cells")}
                for c in view["cells"]:
                    c["ystate"] = base64.b64encode(states[c["id"]]).decode()
                loads[event["seq"]] = json.loads(json.dumps(view))
    finally:
        replica.close()
    return views, loads


def reducer_views(node: str, notebook_id: str, events: list[dict[str, Any]],
                  starts: list[dict[str, Any] | None]) -> list[dict[int, View]]:
    """For each start (None: an empty page; else a loaded view), the page's view after each event it
    applies, from reducer.js under Node (one process for all starts)."""
    request = json.dumps({"notebook_id": notebook_id, "events": events, "starts": starts})
    done = subprocess.run([node, str(SCRIPT)], input=request, capture_output=True, text=True, timeout=NODE_TIMEOUT,
                          cwd=ROOT)
    assert done.returncode == 0, f"{SCRIPT.name} failed ({done.returncode}): {done.stderr[-3000:]}"
    return [{int(seq): view for seq, view in run.items()} for run in json.loads(done.stdout)["runs"]]


# -- comparing ----------------------------------------------------------------------------------------


def first_difference(expected: Any, actual: Any, path: str = "view") -> str | None:
    """Where two JSON values first differ (None: equal); a bool never equals a number."""
    if isinstance(expected, dict) and isinstance(actual, dict):
        for key in sorted(expected.keys() | actual.keys()):
            if key not in actual:
                return f"{path}.{key}: the reducer lacks it (materializer: {expected[key]!r})"
            if key not in expected:
                return f"{path}.{key}: only the reducer has it ({actual[key]!r})"
            found = first_difference(expected[key], actual[key], f"{path}.{key}")
            if found:
                return found
        return None
    if isinstance(expected, list) and isinstance(actual, list):
        for i, (e, a) in enumerate(zip(expected, actual, strict=False)):
            label = f"{path}[{i}]" + (f"<{e['id']}>" if isinstance(e, dict) and "id" in e else "")
            found = first_difference(e, a, label)
            if found:
                return found
        if len(expected) != len(actual):
            return f"{path}: {len(expected)} items in the materializer, {len(actual)} in the reducer"
        return None
    if expected != actual or isinstance(expected, bool) != isinstance(actual, bool):
        return f"{path}: materializer {expected!r}, reducer {actual!r}"
    return None


def mismatches(events: list[dict[str, Any]], expected: dict[int, View], actual: dict[int, View]) -> list[str]:
    """Each seq whose views differ, with the event that produced it and the first difference."""
    out = []
    for event in events:
        seq = event["seq"]
        found = first_difference(expected.get(seq), actual.get(seq))
        if found:
            out.append(f"after seq {seq} ({event['name']} {json.dumps(event['args'], ensure_ascii=False)[:200]}): {found}")
    return out


# -- the tests ----------------------------------------------------------------------------------------


def test_recorded_logs_are_present_and_cover_what_the_page_shows() -> None:
    """The fixtures exist and still hold the cases they were recorded for (a regeneration must not lose one)."""
    assert 5 <= len(LOGS) <= 12, [p.name for p in LOGS]
    names: set[str] = set()
    rewrites = wait_clears = concurrent_edits = execution_clears = spilled = assigned_by_request = 0
    for path in LOGS:
        assert path.stat().st_size < 200_000, f"{path.name} is too large for a fixture"
        _, events = load(path)
        assert [e["seq"] for e in events] == list(range(1, len(events) + 1)), f"{path.name}: not a whole log"
        names |= {e["name"] for e in events}
        rewrites += sum(e["name"] == "streamTextChanged" and e["args"]["offset"] > 0 for e in events)
        wait_clears += sum(e["name"] == "outputsCleared" and e["args"].get("wait", False) for e in events)
        execution_clears += sum(e["name"] == "outputsCleared" and e["args"].get("execution", False) for e in events)
        spilled += sum(e["name"] == "streamTailSet" and "data" in e["args"] for e in events)  # the artifact's ref
        claimed = {e["args"]["queueId"] for e in events if e["name"] == "executionAssigned"}
        assigned_by_request += sum(e["name"] == "executionStarted" and e["args"]["queueId"] not in claimed
                                   for e in events)  # assign_when_idle: started with no claim of its own
        editors = {(e["args"]["cellId"], e["actor"]["id"]) for e in events if e["name"] == "cellSourceEdited"}
        concurrent_edits += len({cell for cell, _ in editors}) < len(editors)
    assert {"streamTextChanged", "displayUpdated", "outputsCleared", "cellMoved", "cellTypeChanged", "cellDeleted",
            "cellMetadataSet", "cellAttachmentsSet", "notebookMetadataSet", "executionCancelRequested",
            "runtimeInterruptRequested", "runtimeRestartRequested", "inputRequested", "inputReplied",
            "runtimeSessionEnded", "streamTailSet"} <= names
    assert rewrites and wait_clears and concurrent_edits and execution_clears and spilled and assigned_by_request
    for gap in VIEW_GAPS:  # the gap tests below need a page load in each case
        assert any(load_points(*load(path))[gap] for path in LOGS), f"no recorded log opens in the {gap} case"


@pytest.mark.parametrize("path", LOGS, ids=[p.stem for p in LOGS])
def test_reducer_matches_materializer_after_every_event(node: str, path: Path) -> None:
    """Replayed from the first event, as the history view and a page open since the start see it."""
    notebook_id, events = load(path)
    expected, _ = materializer_views(notebook_id, events)
    (actual,) = reducer_views(node, notebook_id, events, [None])
    assert sorted(actual) == sorted(expected) == list(range(1, len(events) + 1))
    problems = mismatches(events, expected, actual)
    assert not problems, f"{path.name}: reducer.js and the materializer disagree {len(problems)} time(s):\n" + "\n".join(
        problems[:10])


# Page loads in states that need more than each cell's latest execution (the view's clear_pending and queue).
VIEW_GAPS = {
    # a clear_output(wait=True) is waiting: the view says so per cell (clear_pending)
    "clear_pending": "SELECT 1 FROM cells WHERE clear_pending = 1",
    # an older execution of a cell is still queued or running: the view's queue lists it
    "hidden_execution": "SELECT 1 FROM execution_queue q WHERE q.status IN ('pending', 'assigned', 'running') AND "
                        "EXISTS (SELECT 1 FROM execution_queue l WHERE l.cell_id = q.cell_id "
                        "AND l.requested_seq > q.requested_seq)",
}


def load_points(notebook_id: str, events: list[dict[str, Any]]) -> dict[str, list[int]]:
    """Every seq a page could open at (but the last, which leaves nothing to apply), by the view gap
    it falls in ("plain": none)."""
    replica = Replica(notebook_id)
    points: dict[str, list[int]] = {"plain": [], **{gap: [] for gap in VIEW_GAPS}}
    try:
        for event in events[:-1]:
            replica.apply_wire([event])
            gap = next((g for g, sql in VIEW_GAPS.items() if replica.query(sql)), "plain")
            points[gap].append(event["seq"])
    finally:
        replica.close()
    return points


def check_loaded_mid_log(node: str, path: Path, points: list[int]) -> None:
    """A page that loads the REST view at each of ``points`` and applies the events after it shows the same views."""
    notebook_id, events = load(path)
    expected, loads = materializer_views(notebook_id, events, set(points))
    runs = reducer_views(node, notebook_id, events, [loads[seq] for seq in points])
    for seq, actual in zip(points, runs, strict=True):
        after = [e for e in events if e["seq"] > seq]
        assert sorted(actual) == [e["seq"] for e in after]
        problems = mismatches(after, expected, actual)
        assert not problems, f"{path.name}, page loaded at seq {seq}: {len(problems)} difference(s):\n" + "\n".join(
            problems[:10])


@pytest.mark.parametrize("path", LOGS, ids=[p.stem for p in LOGS])
def test_page_loaded_mid_log_matches_materializer(node: str, path: Path) -> None:
    """A page loads the REST view at some seq, then applies the events after it: still the same views."""
    points = load_points(*load(path))["plain"]
    assert points
    check_loaded_mid_log(node, path, points)


def check_gap(node: str, gap: str) -> None:
    """Mid-log loads in one view gap (test_recorded_logs_are_present_and_cover_what_the_page_shows makes sure there are some)."""
    for path in LOGS:
        points = load_points(*load(path))[gap]
        if points:
            check_loaded_mid_log(node, path, points)


def test_page_loaded_while_a_clear_waits_matches_materializer(node: str) -> None:
    check_gap(node, "clear_pending")


def test_page_loaded_while_an_older_run_is_live_matches_materializer(node: str) -> None:
    check_gap(node, "hidden_execution")


def test_parity_check_sees_a_difference(node: str) -> None:
    """The comparison is not vacuous: an event only one side saw, or one the reducer missed, shows up."""
    path = next(p for p in LOGS if p.stem == "progress")
    notebook_id, events = load(path)
    head = events[-1]["seq"]
    python_side, _ = materializer_views(notebook_id, events)

    cell_id = next(e["args"]["cellId"] for e in events if e["name"] == "cellCreated")
    extra = {**events[-1], "seq": head + 1, "id": "parity-extra", "name": "cellMetadataSet", "v": 1,
             "args": {"cellId": cell_id, "key": "tags", "value": ["only-one-side"]}}
    (js_side,) = reducer_views(node, notebook_id, [*events, extra], [None])
    found = first_difference(python_side[head], js_side[head + 1])
    assert found is not None and ".metadata.tags" in found, found
    both, _ = materializer_views(notebook_id, [*events, extra])
    assert first_difference(both[head + 1], js_side[head + 1]) is None

    dropped = [e for e in events if e["name"] == "streamTextChanged"][-1]
    (lacking,) = reducer_views(node, notebook_id, [e for e in events if e is not dropped], [None])
    found = first_difference(python_side[dropped["seq"] + 1], lacking[dropped["seq"] + 1])
    assert found is not None and ".outputs[0].text: materializer" in found, found
