"""Runs as daemon jobs (issue 16, items 1, 2, 3, 7): a real daemon, real kernels, `runt` as subprocesses.

kill -9 of the CLI mid-run, --detach, cancel, the output written as the run goes, resume in the kept
kernel (a variable defined before the failure survives), a kernel gone after the grace period, runs
listed after a daemon restart, and a schedule firing on a short interval.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, write

from runtimed.client.http import DaemonHTTP

pytestmark = pytest.mark.timeout(240)

RUNT = [sys.executable, "-m", "runtimed.cli.main"]


def runt(daemon: DaemonProcess, *args: str, cwd: Path | None = None, timeout: float = 150
         ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*RUNT, *args], env=daemon.env(), capture_output=True, text=True, cwd=cwd, timeout=timeout)


def wait_until(predicate: Callable[[], Any], timeout: float = 120, what: str = "condition") -> Any:
    """Poll ``predicate`` until truthy (bounded); the runs are in another process, so polling is the way."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def http(daemon: DaemonProcess) -> Iterator[DaemonHTTP]:
    client = DaemonHTTP(daemon.endpoint)
    yield client
    client.close()


def run_of(http: DaemonHTTP, run_id: str) -> dict[str, Any]:
    return http.get(f"/api/runs/{run_id}")


def finished(http: DaemonHTTP, run_id: str) -> dict[str, Any]:
    return wait_until(lambda: (r := run_of(http, run_id))["status"] not in ("queued", "starting", "running") and r,
                      what=f"run {run_id} to end")


def gated(tmp_path: Path, *before: str, after: str = "print('after')") -> tuple[Path, Path]:
    """A notebook whose cell waits for a flag file (bounded), so a test can act while the run is mid-way."""
    flag = tmp_path / "go"
    wait = (f"import os, time\nfor _ in range(2400):\n    if os.path.exists({str(flag)!r}):\n        break\n"
            "    time.sleep(0.05)\nelse:\n    raise RuntimeError('no go')")
    nb = make_notebook(*(("code", b) for b in before), ("code", wait), ("code", after))
    return write(nb, tmp_path / "gated.ipynb"), flag


def outputs_text(path: Path) -> list[str]:
    nb = nbformat.read(str(path), 4)
    return ["".join(o.get("text", "") for o in c.get("outputs", [])) for c in nb.cells if c.cell_type == "code"]


def test_kill_9_of_the_cli_mid_run_the_run_completes_and_writes_its_output(daemon: DaemonProcess, http: DaemonHTTP,
                                                                           tmp_path: Path) -> None:
    src, flag = gated(tmp_path, "print('before')", after="print('after')")
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen([*RUNT, "run", str(src), "out.ipynb", "--no-progress-bar"], env=daemon.env(),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, cwd=tmp_path)
    try:
        assert proc.stderr is not None
        for raw in proc.stderr:
            if raw.startswith(b"Live notebook: "):
                break
        run = wait_until(lambda: next((r for r in http.get("/api/runs")["runs"] if r["status"] == "running"), None),
                         what="the run to be running")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    flag.touch()
    done = finished(http, run["id"])
    assert done["status"] == "success" and done["exit_code"] == 0
    texts = outputs_text(out)  # written by the daemon, relative to where runt ran
    assert texts[0] == "before\n" and texts[-1] == "after\n"
    assert nbformat.read(str(out), 4).metadata.papermill["exception"] is None


def test_detach_prints_the_id_at_once_then_attach_follows_to_the_end(daemon: DaemonProcess, http: DaemonHTTP,
                                                                     tmp_path: Path) -> None:
    src, flag = gated(tmp_path, "x = 1")
    proc = runt(daemon, "run", str(src), str(tmp_path / "out.ipynb"), "--detach", "-p", "x", "2")
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert run_id.startswith("r-") and run_of(http, run_id)["status"] in ("queued", "starting", "running")
    listed = json.loads(runt(daemon, "runs", "--json").stdout)
    assert [r["id"] for r in listed] == [run_id] and listed[0]["parameters"] == {"x": 2}
    assert listed[0]["url"].startswith(daemon.url) and listed[0]["input_path"] == str(src)
    table = runt(daemon, "runs").stdout
    assert run_id in table and "gated.ipynb" in table
    flag.touch()
    attached = runt(daemon, "runs", "attach", run_id, "--json")
    assert attached.returncode == 0, attached.stderr
    assert json.loads(attached.stdout)["status"] == "success"
    shown = json.loads(runt(daemon, "runs", "show", run_id).stdout)
    assert shown["status"] == "success" and shown["duration_s"] > 0 and shown["failed_cell"] is None


def test_cancel_stops_the_run_and_the_output_shows_how_far_it_got(daemon: DaemonProcess, http: DaemonHTTP,
                                                                  tmp_path: Path) -> None:
    src, _flag = gated(tmp_path, "print('first')")
    out = tmp_path / "out.ipynb"
    run_id = runt(daemon, "run", str(src), str(out), "--detach").stdout.strip()
    wait_until(lambda: (run_of(http, run_id).get("done") or 0) >= 1, what="the first cell to finish")
    proc = runt(daemon, "runs", "cancel", run_id)
    assert proc.returncode == 0, proc.stderr
    done = finished(http, run_id)
    assert done["status"] == "cancelled" and done["exit_code"] == 1
    assert done["failed_cell"]["ename"] == "Cancelled" and done["resumable_until"]
    nb = nbformat.read(str(out), 4)
    statuses = [c.metadata.papermill["status"] for c in nb.cells]
    assert outputs_text(out)[0] == "first\n"
    assert statuses[0] == "completed" and statuses[-1] == "pending"
    exported = runt(daemon, "runs", "export", run_id)
    assert "".join(json.loads(exported.stdout)["cells"][0]["outputs"][0]["text"]) == "first\n"


def test_the_output_is_written_as_the_run_goes(daemon: DaemonProcess, http: DaemonHTTP, tmp_path: Path) -> None:
    src, flag = gated(tmp_path, "print('one')", "print('two')")
    out = tmp_path / "out.ipynb"
    nb = nbformat.read(str(src), 4)
    run = http.post("/api/runs", json={"notebook": nb, "options": {
        "input_path": str(src), "output_path": str(out), "autosave_cell_every": 0}})
    # while the third cell waits, the output already holds the first two cells' output
    wait_until(lambda: out.exists() and outputs_text(out)[:2] == ["one\n", "two\n"], what="the autosave")
    assert run_of(http, run["id"])["status"] == "running"
    assert [c.metadata.papermill["status"] for c in nbformat.read(str(out), 4).cells][-1] == "pending"
    flag.touch()
    assert finished(http, run["id"])["status"] == "success"
    assert outputs_text(out)[-1] == "after\n"
    # the run's own copy (runt runs export) is the notebook of the output file, serialized once for both
    assert http.get(f"/api/runs/{run['id']}/notebook") == json.loads(out.read_text())


def test_resume_continues_in_the_same_kernel_after_the_fix(daemon: DaemonProcess, http: DaemonHTTP,
                                                           tmp_path: Path) -> None:
    nb = make_notebook(("code", "import uuid\nstate = uuid.uuid4().hex\nprint(state)"),
                       ("code", "raise ValueError('broken')"), ("code", "print('last', state)"))
    src = write(nb, tmp_path / "fails.ipynb")
    out = tmp_path / "out.ipynb"
    proc = runt(daemon, "run", str(src), str(out))
    assert proc.returncode == 1 and "runt runs resume" in proc.stderr
    run = http.get("/api/runs")["runs"][0]
    assert run["status"] == "error" and run["failed_cell"]["index"] == 1 and run["resumable_until"]
    state = outputs_text(out)[0].strip()
    resumed = runt(daemon, "runs", "resume", run["id"], "--set-source", "print('fixed', state)")
    assert resumed.returncode == 0, resumed.stderr
    texts = outputs_text(out)
    assert texts == [f"{state}\n", f"fixed {state}\n", f"last {state}\n"]  # the variable of the first cell survived
    nb_out = nbformat.read(str(out), 4)
    assert [c.metadata.papermill["status"] for c in nb_out.cells] == ["completed"] * 3
    assert not any("papermill-error-cell-tag" in c.metadata.get("tags", []) for c in nb_out.cells)
    again = runt(daemon, "runs", "resume", run["id"])
    assert again.returncode == 5 and "only a failed or cancelled run resumes" in again.stderr


def resume_shows_what_ran(daemon: DaemonProcess, http: DaemonHTTP, out: Path, behind: int) -> None:
    """Resume a stopped run with its stopped cell printing ``ran``: none of the ``behind`` cells the kernel was sent
    ahead of their turn ran (each appends to ``ran``); after it they all run, in order."""
    run = http.get("/api/runs")["runs"][0]
    assert run["status"] in ("error", "cancelled") and run["resumable_until"]
    assert outputs_text(out)[-behind:] == [""] * behind
    sent_ahead = [r["sent_ahead"] for r in http.get("/api/runtimes") if r["notebook_id"] == run["notebook_id"]]
    assert sent_ahead and sent_ahead[0] >= behind  # they were in the kernel's queue when the run stopped
    resumed = runt(daemon, "runs", "resume", run["id"], "--set-source", "print('ran', ran)")
    assert resumed.returncode == 0, resumed.stderr
    texts = outputs_text(out)
    assert texts[-behind - 1:] == ["ran []\n", *(f"{i}\n" for i in range(behind))]


def test_a_failure_stops_the_cells_the_kernel_was_sent_ahead(daemon: DaemonProcess, http: DaemonHTTP,
                                                             tmp_path: Path) -> None:
    nb = make_notebook(("code", "ran = []"), ("code", "print('one')"), ("code", "raise ValueError('broken')"),
                       *(("code", f"ran.append({i})\nprint({i})") for i in range(12)))
    out = tmp_path / "out.ipynb"
    proc = runt(daemon, "run", str(write(nb, tmp_path / "fails.ipynb")), str(out))
    assert proc.returncode == 1 and "ValueError" in proc.stderr
    resume_shows_what_ran(daemon, http, out, 12)


def test_a_cancel_stops_the_cells_the_kernel_was_sent_ahead(daemon: DaemonProcess, http: DaemonHTTP,
                                                            tmp_path: Path) -> None:
    src, _flag = gated(tmp_path, "ran = []", "print('one')", after="ran.append(0)\nprint(0)")
    nb = nbformat.read(str(src), 4)
    nb.cells.extend(nbformat.v4.new_code_cell(f"ran.append({i})\nprint({i})") for i in range(1, 8))
    out = tmp_path / "out.ipynb"
    run_id = runt(daemon, "run", str(write(nb, src)), str(out), "--detach").stdout.strip()
    wait_until(lambda: (run_of(http, run_id).get("done") or 0) >= 2, what="the gated cell to start")
    assert runt(daemon, "runs", "cancel", run_id).returncode == 0
    assert finished(http, run_id)["status"] == "cancelled"
    resume_shows_what_ran(daemon, http, out, 8)


def test_a_run_of_many_cells_keeps_each_cells_outputs_and_counts_in_order(daemon: DaemonProcess, http: DaemonHTTP,
                                                                          tmp_path: Path) -> None:
    cells = [("code", f"print('out', {i})\n{i} * 10") for i in range(40)]
    out = tmp_path / "out.ipynb"
    proc = runt(daemon, "run", str(write(make_notebook(*cells), tmp_path / "many.ipynb")), str(out))
    assert proc.returncode == 0, proc.stderr
    nb = nbformat.read(str(out), 4)
    assert [c.execution_count for c in nb.cells] == list(range(1, 41))
    assert [[o.get("text") or o["data"]["text/plain"] for o in c.outputs] for c in nb.cells] == \
        [[f"out {i}\n", str(i * 10)] for i in range(40)]


@pytest.fixture
def short_grace_daemon(home: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DaemonProcess]:
    monkeypatch.setenv("RUNTIMED_RUN_RESUME_GRACE", "0.5")
    proc = DaemonProcess(home)
    proc.start()
    yield proc
    proc.stop()


def test_resume_after_the_grace_period_says_the_kernel_is_gone_and_reruns_from_the_start(
        short_grace_daemon: DaemonProcess, tmp_path: Path) -> None:
    daemon = short_grace_daemon
    src = write(make_notebook(("code", "n = 1"), ("code", "assert n == 2, 'n is not 2'"), ("code", "print('n', n)")),
                tmp_path / "fails.ipynb")
    out = tmp_path / "out.ipynb"
    assert runt(daemon, "run", str(src), str(out)).returncode == 1
    http = DaemonHTTP(daemon.endpoint)
    try:
        run = http.get("/api/runs")["runs"][0]
        # the grace period ends: the runtime is stopped and the run no longer resumable in place
        wait_until(lambda: not run_of(http, run["id"])["resumable_until"]
                   and not http.get("/api/runtimes"), what="the grace period to end")
        gone = runt(daemon, "runs", "resume", run["id"])
        assert gone.returncode == 6 and "kernel" in gone.stderr and "--from-start" in gone.stderr
        rerun = runt(daemon, "runs", "resume", run["id"], "--from-start", "--set-source", "n = 2")
        assert rerun.returncode == 0, rerun.stderr
        assert outputs_text(out)[-1] == "n 2\n"
        assert run_of(http, run["id"])["attempts"] == 2
    finally:
        http.close()


def test_runs_survive_a_daemon_restart(daemon: DaemonProcess, tmp_path: Path) -> None:
    src = write(make_notebook(("code", "print('hello')")), tmp_path / "hello.ipynb")
    assert runt(daemon, "run", str(src), str(tmp_path / "out.ipynb")).returncode == 0
    before = json.loads(runt(daemon, "runs", "--json").stdout)
    daemon.stop()
    daemon.start()
    after = json.loads(runt(daemon, "runs", "--json").stdout)
    assert [(r["id"], r["status"]) for r in after] == [(r["id"], r["status"]) for r in before]
    assert after[0]["status"] == "success"


def test_a_schedule_fires_and_its_runs_are_listed(daemon: DaemonProcess, http: DaemonHTTP, tmp_path: Path) -> None:
    src = write(make_notebook(("code", "who = 'nobody'", ["parameters"]), ("code", "print('hi', who)")),
                tmp_path / "sched.ipynb")
    bad = runt(daemon, "schedule", "add", "not a cron", str(src))
    assert bad.returncode == 2 and "invalid cron" in bad.stderr
    added = runt(daemon, "schedule", "add", "* * * * * */2", "sched.ipynb", "out-{who}.ipynb", "-p", "who", "cron",
                 cwd=tmp_path)
    assert added.returncode == 0, added.stderr
    schedule_id = added.stdout.strip()
    listed = json.loads(runt(daemon, "schedule", "list", "--json").stdout)
    assert listed[0]["id"] == schedule_id and listed[0]["input_path"] == str(src) and listed[0]["next_at"]
    run = wait_until(lambda: next((r for r in http.get("/api/runs")["runs"]
                                   if r["schedule_id"] == schedule_id and r["status"] == "success"), None),
                     what="a scheduled run")
    assert run["parameters"] == {"who": "cron"}
    assert outputs_text(tmp_path / "out-cron.ipynb")[-1] == "hi cron\n"
    assert runt(daemon, "schedule", "rm", schedule_id).returncode == 0
    assert json.loads(runt(daemon, "schedule", "list", "--json").stdout) == []
    assert runt(daemon, "schedule", "rm", schedule_id).returncode == 4


def test_a_firing_missed_while_the_daemon_was_down_runs_once_at_start(daemon: DaemonProcess, http: DaemonHTTP,
                                                                       tmp_path: Path) -> None:
    src = write(make_notebook(("code", "print('caught up')")), tmp_path / "yearly.ipynb")
    added = runt(daemon, "schedule", "add", "0 0 1 1 *", str(src), str(tmp_path / "out.ipynb"))
    skipped = runt(daemon, "schedule", "add", "0 0 1 1 *", str(src), str(tmp_path / "skip.ipynb"), "--missed", "skip")
    assert added.returncode == 0 and skipped.returncode == 0
    daemon.stop()
    path = daemon.home.path / "schedules.json"  # as if the daemon had been down on new year's eve
    schedules = json.loads(path.read_text())
    for s in schedules:
        s["created_at"] = "2020-06-01T00:00:00+00:00"
    path.write_text(json.dumps(schedules))
    daemon.start()
    http.endpoint = daemon.endpoint
    http.client = http._client()
    run = wait_until(lambda: next((r for r in http.get("/api/runs")["runs"] if r["status"] == "success"), None),
                     what="the catch-up run")
    assert run["schedule_id"] == added.stdout.strip()
    assert [r["schedule_id"] for r in http.get("/api/runs")["runs"]] == [added.stdout.strip()]
    assert not (tmp_path / "skip.ipynb").exists() and os.path.exists(tmp_path / "out.ipynb")


def test_a_bare_daemon_answers_runs_disabled(tmp_path: Path) -> None:
    home = tmp_path / "bare"
    home.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "runtimed.server.main", "--home", str(home), "--port", "0",
                             "--no-runtimes"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        from runtimed.client.discovery import find_daemon
        from runtimed.errors import RuntimedError
        from runtimed.home import Home

        endpoint = wait_until(lambda: find_daemon(Home(home)), what="the bare daemon")
        client = DaemonHTTP(endpoint)
        with pytest.raises(RuntimedError) as info:
            client.get("/api/runs")
        assert info.value.code == "runs_disabled"
        client.close()
    finally:
        proc.terminate()
        proc.wait(15)


def test_ctrl_c_cancels_the_run_and_leaves_the_output_as_far_as_it_got(daemon: DaemonProcess, http: DaemonHTTP,
                                                                        tmp_path: Path) -> None:
    src, _flag = gated(tmp_path, "print('before')")
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen([*RUNT, "run", str(src), str(out), "--no-progress-bar"], env=daemon.env(),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        run = wait_until(lambda: next((r for r in http.get("/api/runs")["runs"] if (r.get("done") or 0) >= 1), None),
                         what="the first cell to finish")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(120) == 1
        assert proc.stderr is not None and b"runt runs resume" in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
    done = run_of(http, run["id"])
    assert done["status"] == "cancelled" and done["failed_cell"]["index"] == 1
    assert outputs_text(out)[0] == "before\n"
    statuses = [c.metadata.papermill["status"] for c in nbformat.read(str(out), 4).cells]
    assert statuses[0] == "completed" and statuses[-1] == "pending"


def test_the_daemon_writes_to_an_fsspec_url_and_stdout_goes_through_the_client(daemon: DaemonProcess,
                                                                                 tmp_path: Path) -> None:
    src = write(make_notebook(("code", "print('via url')")), tmp_path / "url.ipynb")
    url = f"file://{tmp_path / 'sub-out.ipynb'}"
    proc = runt(daemon, "run", str(src), url)
    assert proc.returncode == 0, proc.stderr
    assert outputs_text(tmp_path / "sub-out.ipynb") == ["via url\n"]
    piped = runt(daemon, "run", str(src), "-")
    assert piped.returncode == 0, piped.stderr
    assert "".join(nbformat.reads(piped.stdout, 4).cells[0].outputs[0].text) == "via url\n"


def test_a_submitted_approve_must_be_a_list_of_tool_names(daemon: DaemonProcess, http: DaemonHTTP,
                                                          tmp_path: Path) -> None:
    from runtimed.errors import RuntimedError

    src = write(make_notebook(("code", "print(1)")), tmp_path / "approve.ipynb")
    before = len(http.get("/api/runs", params={"limit": 10_000})["runs"])
    with pytest.raises(RuntimedError) as bad:  # a bare string: "all" in "install_package" would turn approvals off
        http.post("/api/runs", json={"options": {"input_path": str(src), "approve": "install_package"}})
    assert bad.value.code == "invalid_request" and "list of agent tool names" in bad.value.message
    assert len(http.get("/api/runs", params={"limit": 10_000})["runs"]) == before  # nothing was started


def test_resume_of_a_run_with_an_output_stored_as_an_artifact(daemon: DaemonProcess, http: DaemonHTTP,
                                                              tmp_path: Path) -> None:
    big = "from IPython.display import HTML, display\ndisplay(HTML('<p>' + 'big ' * 40_000 + '</p>'))"
    src = write(make_notebook(("code", big), ("code", "raise ValueError('broken')"), ("code", "print('last')")),
                tmp_path / "big.ipynb")
    out = tmp_path / "out.ipynb"
    proc = runt(daemon, "run", str(src), str(out))
    assert proc.returncode == 1 and "runt runs resume" in proc.stderr, proc.stderr
    run = http.get("/api/runs")["runs"][0]
    resumed = runt(daemon, "runs", "resume", run["id"], "--set-source", "print('fixed')")
    assert resumed.returncode == 0, resumed.stderr
    cells = nbformat.read(str(out), 4).cells
    assert "".join(cells[0].outputs[0].data["text/html"]) == "<p>" + "big " * 40_000 + "</p>"
    assert outputs_text(out)[1:] == ["fixed\n", "last\n"]


def test_the_autosave_and_the_live_notebook_of_a_run_inline_artifacts_without_stalling_the_daemon(
        daemon: DaemonProcess, http: DaemonHTTP, tmp_path: Path) -> None:
    # the job runs in the daemon and fetches the artifact from the daemon itself: off the loop, or it deadlocks
    big = "from IPython.display import HTML, display\ndisplay(HTML('<p>' + 'big ' * 40_000 + '</p>'))"
    src, flag = gated(tmp_path, big)
    out = tmp_path / "out.ipynb"
    run = http.post("/api/runs", json={"notebook": nbformat.read(str(src), 4), "options": {
        "input_path": str(src), "output_path": str(out), "autosave_cell_every": 0}})

    def html_of(cells: list[Any]) -> str:
        return "".join(o.get("data", {}).get("text/html", "") for o in cells[0].get("outputs", []))

    wait_until(lambda: out.exists() and html_of(nbformat.read(str(out), 4).cells), timeout=60, what="the autosave")
    assert html_of(nbformat.read(str(out), 4).cells) == "<p>" + "big " * 40_000 + "</p>"
    live = DaemonHTTP(daemon.endpoint, timeout=20)  # a stalled daemon would not answer this in time
    try:
        assert html_of(live.get(f"/api/runs/{run['id']}/notebook")["cells"]) == "<p>" + "big " * 40_000 + "</p>"
        assert live.get(f"/api/runs/{run['id']}")["status"] == "running"
    finally:
        live.close()
    flag.touch()
    assert finished(http, run["id"])["status"] == "success"
    assert outputs_text(out)[-1] == "after\n"
    # the run's own copy (runt runs export) is the notebook of the output file, serialized once for both
    assert http.get(f"/api/runs/{run['id']}/notebook") == json.loads(out.read_text())
