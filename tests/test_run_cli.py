"""``runt run`` and ``runt inspect`` as a user runs them: subprocesses against the test's daemon.

Every papermill flag ``runt run`` takes has a test here (or, where only the Python API can
reach it, in ``test_automation.py``), as do the exit codes, batch and grid runs and --notify.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import nbformat
import papermill
import pytest
from conftest import BENCH_NOTEBOOKS, make_notebook, write

from runtimed.automation.papermill_compat import banner

pytestmark = pytest.mark.timeout(180)

ERROR_TAG = "papermill-error-cell-tag"
RUNT = [sys.executable, "-m", "runtimed.cli.main"]


def runt(*args: str, env: dict[str, str] | None = None, input: bytes | None = None, cwd: Path | None = None,
         timeout: float = 150) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*RUNT, *args], env=env, input=input, capture_output=True, cwd=cwd, timeout=timeout)


def text(proc: subprocess.CompletedProcess[bytes]) -> str:
    return proc.stderr.decode(errors="replace")


@pytest.fixture
def params_nb(tmp_path: Path) -> Path:
    """A notebook that declares a, b, c and prints what it received."""
    nb = make_notebook(("code", "a = 1  # the a\nb = 'x'  # the b\nc = 0.5", ["parameters"]),
                       ("code", "print(repr(a), repr(b), repr(c))"))
    return write(nb, tmp_path / "params.ipynb")


@pytest.fixture
def fail_nb(tmp_path: Path) -> Path:
    nb = make_notebook(("markdown", "# T"), ("code", "a = 1", ["parameters"]), ("code", "print(a)"),
                       ("code", "raise ValueError('boom')"), ("code", "print('never')"))
    return write(nb, tmp_path / "fail.ipynb")


def injected_source(path: Path) -> str:
    nb = nbformat.read(str(path), 4)
    return next(c.source for c in nb.cells if "injected-parameters" in c.metadata.get("tags", []))


def stdout_of(path: Path, index: int) -> str:
    return "".join(o.get("text", "") for o in nbformat.read(str(path), 4).cells[index].outputs)


# -- a run ----------------------------------------------------------------------------------------------


def test_run_with_parameters_exit_0_and_papermill_output(daemon: Any, tmp_path: Path) -> None:
    src = BENCH_NOTEBOOKS / "seven.ipynb"
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "-p", "data_size", "1000", "--no-progress-bar", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert f"Live notebook: {daemon.url}/?notebook=run-seven-" in text(proc)
    ours = nbformat.read(str(out), 4)
    theirs = papermill.execute_notebook(str(src), str(tmp_path / "pm.ipynb"), {"data_size": 1000},
                                        progress_bar=False)
    assert injected_source(out) == injected_source(tmp_path / "pm.ipynb") == "# Parameters\ndata_size = 1000\n"
    assert set(ours.metadata.papermill) == set(theirs.metadata.papermill)
    assert [set(c.metadata.papermill) for c in ours.cells] == [set(c.metadata.papermill) for c in theirs.cells]
    assert [c.metadata.papermill["status"] for c in ours.cells] == ["completed"] * len(ours.cells)
    assert [c.get("outputs") and [o.output_type for o in c.outputs] for c in ours.cells] == \
           [c.get("outputs") and [o.output_type for o in c.outputs] for c in theirs.cells]


def test_parameter_flags_precedence_b_f_y_p_r(params_nb: Path, tmp_path: Path) -> None:
    """--prepare-only needs no daemon: -b < -f < -y < -p < -r, -p typed, -r raw."""
    (tmp_path / "p.yaml").write_text("a: from-file\nb: from-file\nc: from-file\n")
    b64 = base64.b64encode(b"{a: from-b64, b: from-b64, c: from-b64, d: from-b64}").decode()
    out = tmp_path / "prepared.ipynb"
    proc = runt("run", str(params_nb), str(out), "--prepare-only", "-b", b64, "-f", str(tmp_path / "p.yaml"),
                "-y", "{b: from-yaml, c: from-yaml}", "-p", "c", "3", "-p", "b", "True", "-r", "b", "4")
    assert proc.returncode == 0, text(proc)
    assert injected_source(out) == ('# Parameters\na = "from-file"\nb = "4"\nc = 3\nd = "from-b64"\n')
    theirs = tmp_path / "pm.ipynb"
    subprocess.run([sys.executable, "-m", "papermill", str(params_nb), str(theirs), "--prepare-only", "-b", b64,
                    "-f", str(tmp_path / "p.yaml"), "-y", "{b: from-yaml, c: from-yaml}", "-p", "c", "3",
                    "-p", "b", "True", "-r", "b", "4"], check=True, capture_output=True)
    assert injected_source(out) == injected_source(theirs)
    prepared = nbformat.read(str(out), 4)
    assert prepared.metadata.papermill["parameters"] == nbformat.read(str(theirs), 4).metadata.papermill["parameters"]
    assert all("outputs" not in c or c.outputs == [] for c in prepared.cells)  # nothing ran


def test_long_option_names_and_report_mode(params_nb: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared.ipynb"
    proc = runt("run", str(params_nb), str(out), "--prepare-only", "--parameters", "a", "2",
                "--parameters_raw", "b", "raw", "--parameters-yaml", "c: 1.5", "--report-mode")
    assert proc.returncode == 0, text(proc)
    assert injected_source(out) == '# Parameters\nc = 1.5\na = 2\nb = "raw"\n'  # -y, then -p, then -r
    nb = nbformat.read(str(out), 4)
    assert all(c.metadata.jupyter == {"source_hidden": True} for c in nb.cells if c.cell_type == "code")


def test_inject_input_or_output_path_alone(params_nb: Path, tmp_path: Path) -> None:
    out = tmp_path / "prepared.ipynb"
    proc = runt("run", str(params_nb), str(out), "--prepare-only", "--inject-input-path")
    assert proc.returncode == 0, text(proc)
    assert injected_source(out) == f'# Parameters\nPAPERMILL_INPUT_PATH = "{params_nb}"\n'
    proc = runt("run", str(params_nb), str(out), "--prepare-only", "--inject-output-path", "-p", "a", "1")
    assert proc.returncode == 0, text(proc)
    assert injected_source(out) == f'# Parameters\nPAPERMILL_OUTPUT_PATH = "{out}"\na = 1\n'


def test_no_parameters_cell_injects_at_the_top_with_a_warning(tmp_path: Path) -> None:
    src = write(make_notebook(("code", "print(1)")), tmp_path / "plain.ipynb")
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "--prepare-only", "-p", "x", "1")
    assert proc.returncode == 0
    assert "does not contain a cell with tag 'parameters'" in text(proc)
    assert nbformat.read(str(out), 4).cells[0].metadata.tags == ["injected-parameters"]


def test_inspect_and_help_notebook(params_nb: Path) -> None:
    for args in (["inspect", str(params_nb)], ["run", str(params_nb), "--help-notebook"]):
        proc = runt(*args)
        assert proc.returncode == 0, text(proc)
        out = proc.stdout.decode()
        assert "  a: int (default 1)              the a\n" in out  # papermill's columns
        assert "  b: str (default 'x')            the b\n" in out
        assert "  c: float (default 0.5)" in out
    as_json = json.loads(runt("inspect", str(params_nb), "--json").stdout)
    assert as_json["b"] == {"name": "b", "inferred_type_name": "str", "default": "'x'", "help": "the b"}
    missing = runt("inspect", str(params_nb.with_name("nope.ipynb")))
    assert missing.returncode == 4


def test_failing_cell_exit_1_error_cells_and_message(daemon: Any, fail_nb: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(fail_nb), str(out), "-p", "a", "2", env=daemon.env())
    assert proc.returncode == 1
    cell_id = nbformat.read(str(fail_nb), 4).cells[3].id
    assert f"cell 4 (id {cell_id}) raised ValueError: boom" in text(proc)
    pm_out = tmp_path / "pm.ipynb"
    pm = subprocess.run([sys.executable, "-m", "papermill", str(fail_nb), str(pm_out), "-p", "a", "2"],
                        capture_output=True)
    assert pm.returncode == 1

    def errors(path: Path) -> list[tuple[int, str, list[str]]]:
        nb = nbformat.read(str(path), 4)
        return [(i, c.source, c.metadata.tags) for i, c in enumerate(nb.cells) if ERROR_TAG in c.metadata.tags]

    assert errors(out) == errors(pm_out) and len(errors(out)) == 2


def test_kernel_death_exits_6_and_timeout_exits_7(daemon: Any, tmp_path: Path) -> None:
    died = write(make_notebook(("code", "import os\nos._exit(1)")), tmp_path / "died.ipynb")
    proc = runt("run", str(died), env=daemon.env())
    assert proc.returncode == 6, text(proc)
    assert "KernelDied" in text(proc)
    slow = write(make_notebook(("code", "import time\ntime.sleep(60)")), tmp_path / "slow.ipynb")
    started = time.monotonic()
    proc = runt("run", str(slow), "--execution-timeout", "1", env=daemon.env())
    assert proc.returncode == 7, text(proc)
    assert "ExecutionTimeout" in text(proc) and time.monotonic() - started < 40


@pytest.mark.parametrize("args", [
    ["run"],
    ["run", "a.ipynb", "b.ipynb", "c.ipynb"],
    ["run", "x.ipynb", "--no-such-flag"],
    ["run", "x.ipynb", "-p", "only-name"],
    ["run", "PARAMS", "-b", "%%%not-base64"],
    ["run", "PARAMS", "-y", "[1, 2]"],
    ["run", "PARAMS", "out_{missing}.ipynb", "-p", "a", "1"],
    ["run", "PARAMS", "--grid", "nonsense"],
    ["run", "PARAMS", "same.ipynb", "--grid", "a=1,2"],
])
def test_usage_errors_exit_2(args: list[str], params_nb: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    proc = runt(*[str(params_nb) if a == "PARAMS" else a for a in args],
                env={**os.environ, "RUNTIMED_HOME": str(home)}, cwd=tmp_path)
    assert proc.returncode == 2, text(proc)
    assert "Traceback" not in text(proc)
    assert not (home / "daemon.json").exists(), "a usage error must not start a daemon"


def test_stdin_to_stdout(daemon: Any, params_nb: Path) -> None:
    proc = runt("run", "-", "-", "-p", "a", "5", "--log-output", input=params_nb.read_bytes(), env=daemon.env())
    assert proc.returncode == 0, text(proc)
    nb = nbformat.reads(proc.stdout.decode(), 4)  # stdout holds only the notebook
    assert nb.cells[2].outputs[0].text == "5 'x' 0.5\n"
    assert nb.metadata.papermill["input_path"] == "-" and nb.metadata.papermill["output_path"] == "-"
    assert "5 'x' 0.5" in text(proc)  # --log-output goes to stderr when stdout is the notebook


def test_yaml_notebook_via_cli(daemon: Any, tmp_path: Path) -> None:
    src = tmp_path / "nb.yaml"
    src.write_text("metadata: {kernel: python3}\nparameters: {who: world}\ncells:\n  - source: print('hi', who)\n")
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "-p", "who", "yaml", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert stdout_of(out, 2) == "hi yaml\n"


def test_output_path_templated_with_parameters(daemon: Any, params_nb: Path, tmp_path: Path) -> None:
    proc = runt("run", str(params_nb), str(tmp_path / "out_{a}_{b}.ipynb"), "-p", "a", "9", "-r", "b", "q",
                env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert stdout_of(tmp_path / "out_9_q.ipynb", 2) == "9 'q' 0.5\n"


def test_log_output_stdout_stderr_files(daemon: Any, tmp_path: Path) -> None:
    src = write(make_notebook(("code", "import sys\nprint('to out')\nprint('to err', file=sys.stderr)\n6*7")),
                tmp_path / "streams.ipynb")
    proc = runt("run", str(src), "--log-output", "--stdout-file", str(tmp_path / "o.txt"),
                "--stderr-file", str(tmp_path / "e.txt"), env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert "to out" in text(proc) and "42" in text(proc) and "to err" in text(proc)  # papermill logs to stderr
    assert proc.stdout == b""
    assert (tmp_path / "o.txt").read_text() == "to out\n"
    assert (tmp_path / "e.txt").read_text() == "to err\n"
    quiet = runt("run", str(src), "--no-log-output", env=daemon.env())
    assert "to out" not in text(quiet) and "to out" not in quiet.stdout.decode()


def test_log_output_follows_the_live_url_and_shows_the_last_output(daemon: Any, tmp_path: Path) -> None:
    """The live log starts once the live URL is announced (it never cuts into that line, even while the first cells
    run), and it shows the last cell's output, which may reach it after the run's end was reported."""
    flag = tmp_path / "go"
    src = write(make_notebook(("code", "print('first cell')"),
                              ("code", f"import os, time\nfor _ in range(1200):\n    if os.path.exists({str(flag)!r}):"
                                       "\n        break\n    time.sleep(0.05)\nprint('last cell')")), tmp_path / "two.ipynb")
    out = tmp_path / "out.ipynb"
    proc = subprocess.Popen([*RUNT, "run", str(src), str(out), "--log-output", "--no-progress-bar"], env=daemon.env(),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert proc.stderr is not None
        lines = []
        for raw in proc.stderr:  # until the live URL: the second cell waits for the flag meanwhile
            lines.append(raw.decode().rstrip("\n"))
            if lines[-1].startswith("Live notebook: "):
                break
        flag.touch()
        _, rest = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, lines + rest.decode().splitlines()
    assert lines == [f"Input notebook:  {src}", f"Output notebook: {out}", lines[-1]]
    rest_lines = rest.decode().splitlines()
    assert rest_lines[0] == "Executing notebook with kernel: python3"
    assert rest_lines.index("first cell") < rest_lines.index("last cell") < rest_lines.index(banner("end", 2))


def test_progress_bar_flags(daemon: Any, params_nb: Path) -> None:
    shown = runt("run", str(params_nb), "--progress-bar", env=daemon.env())
    assert shown.returncode == 0 and "Executing" in text(shown) and "2/2" in text(shown)
    hidden = runt("run", str(params_nb), "--no-progress-bar", env=daemon.env())
    assert hidden.returncode == 0 and "Executing" not in text(hidden)


def test_cwd_inject_paths_and_kernel(daemon: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "wd"
    workdir.mkdir()
    nb = make_notebook(("code", "import os\nprint(os.getcwd())\nprint(PAPERMILL_INPUT_PATH)\n"
                                "print(PAPERMILL_OUTPUT_PATH)"))
    nb.metadata.kernelspec = {"name": "no-such-kernel", "language": "python", "display_name": "?"}
    src = write(nb, tmp_path / "cwd.ipynb")
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "--cwd", str(workdir), "--inject-paths", "-k", "python3",
                env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert stdout_of(out, 1) == f"{workdir}\n{src}\n{out}\n"  # cell 0: the injected paths
    assert nbformat.read(str(out), 4).metadata.kernelspec.name == "python3"
    unknown = runt("run", str(src), "--kernel", "no-such-kernel", env=daemon.env())
    assert unknown.returncode == 4 and "no-such-kernel" in text(unknown)


def test_kernel_runs_where_runt_runs_and_relative_cwd(daemon: Any, tmp_path: Path) -> None:
    """papermill's kernel inherits the caller's directory; a relative --cwd is relative to it too."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "data.txt").write_text("here\n")
    src = write(make_notebook(("code", "import os\nprint(os.getcwd())\nprint(os.path.exists('data.txt'))")),
                tmp_path / "where.ipynb")
    proc = runt("run", "where.ipynb", "out.ipynb", cwd=tmp_path, env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert stdout_of(tmp_path / "out.ipynb", 0) == f"{tmp_path}\nTrue\n"
    proc = runt("run", str(src), str(tmp_path / "out2.ipynb"), "--cwd", "sub", cwd=tmp_path, env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert stdout_of(tmp_path / "out2.ipynb", 0) == f"{tmp_path / 'sub'}\nFalse\n"
    missing = runt("run", str(src), "--cwd", str(tmp_path / "nope"), env=daemon.env())
    assert missing.returncode == 8 and "nope" in text(missing)


def test_allow_errors(daemon: Any, fail_nb: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(fail_nb), str(out), "--allow-errors", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    nb = nbformat.read(str(out), 4)
    assert stdout_of(out, 4) == "never\n" and not any(ERROR_TAG in c.metadata.tags for c in nb.cells)


def test_start_timeout(slow_kernelspec: str, daemon: Any, tmp_path: Path) -> None:
    src = write(make_notebook(("code", "1")), tmp_path / "x.ipynb")
    proc = runt("run", str(src), "-k", slow_kernelspec, "--start-timeout", "2", env=daemon.env())
    assert proc.returncode == 8, text(proc)
    assert "--start-timeout 2" in text(proc)


def test_live_url_is_printed_before_the_first_cell_runs(daemon: Any, tmp_path: Path) -> None:
    flag = tmp_path / "go"
    src = write(make_notebook(("code", f"import os, time\nfor _ in range(600):\n    if os.path.exists({str(flag)!r}):"
                                       "\n        break\n    time.sleep(0.05)\nelse:\n    raise RuntimeError('no go')"),
                              ("code", "print('done')")), tmp_path / "live.ipynb")
    proc = subprocess.Popen([*RUNT, "run", str(src), "--no-progress-bar"], env=daemon.env(),
                            stderr=subprocess.PIPE, stdout=subprocess.PIPE)
    try:
        url = None
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode()
            if line.startswith("Live notebook: "):
                url = line.split(": ", 1)[1].strip()
                break
        assert url and url.startswith(daemon.url)
        notebook_id = url.split("notebook=")[1]
        from runtimed.client.http import DaemonHTTP

        http = DaemonHTTP(daemon.endpoint)
        try:  # the notebook is live in the daemon and its first cell has not finished
            view = http.get(f"/api/notebooks/{notebook_id}")
            statuses = [(c["execution"] or {}).get("status") for c in view["cells"]]
            assert statuses[0] in (None, "pending", "assigned", "running"), statuses
            assert statuses[1] in (None, "pending", "assigned"), statuses  # maybe claimed ahead, not started
        finally:
            http.close()
        flag.touch()
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()


def test_json_summary_and_keep_runtime(daemon: Any, params_nb: Path) -> None:
    proc = runt("run", str(params_nb), "--json", "--keep-runtime", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    summary = json.loads(proc.stdout)
    assert summary["status"] == "success" and summary["exit_code"] == 0 and summary["url"].startswith(daemon.url)
    from runtimed.client.http import DaemonHTTP

    http = DaemonHTTP(daemon.endpoint)
    try:
        assert any(summary["notebook_id"] in json.dumps(r) for r in http.get("/api/runtimes"))
    finally:
        http.close()


# -- batch, grid, notify ------------------------------------------------------------------------------------


def test_batch_parallel_summary_and_failure(daemon: Any, params_nb: Path, fail_nb: Path, tmp_path: Path) -> None:
    outdir = tmp_path / "outs"
    outdir.mkdir()
    proc = runt("run", "--batch", str(params_nb), str(fail_nb), "--parallel", "2", "--output-dir", str(outdir),
                "-p", "a", "3", env=daemon.env())
    assert proc.returncode == 1, text(proc)  # one of them failed
    err = text(proc)
    assert "runt run" in err and "success" in err and "error" in err  # the summary table
    assert sorted(p.name for p in outdir.iterdir()) == ["fail.ipynb", "params.ipynb"]
    assert stdout_of(outdir / "params.ipynb", 2) == "3 'x' 0.5\n"
    ok = runt("run", "--batch", str(params_nb), str(params_nb.with_name("params.ipynb")), "--json",
              env=daemon.env())
    assert ok.returncode == 0, text(ok)
    assert [r["status"] for r in json.loads(ok.stdout)] == ["success", "success"]


def test_grid_runs_every_combination_in_parallel(daemon: Any, params_nb: Path, tmp_path: Path) -> None:
    proc = runt("run", str(params_nb), str(tmp_path / "g_{a}_{b}.ipynb"), "--grid", "a=1,2", "--grid", "b=x,y",
                "-p", "c", "9", "--parallel", "3", "--json", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    results = json.loads(proc.stdout)
    assert sorted((r["parameters"]["a"], r["parameters"]["b"]) for r in results) == \
           [(1, "x"), (1, "y"), (2, "x"), (2, "y")]
    assert len({r["notebook_id"] for r in results}) == 4  # one notebook (and runtime) each
    for a in (1, 2):
        for b in ("x", "y"):
            assert stdout_of(tmp_path / f"g_{a}_{b}.ipynb", 2) == f"{a} {b!r} 9\n"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append({"path": self.path, "json": json.loads(body),
                                    "type": self.headers["Content-Type"]})
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Any:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Receiver.received
    server.shutdown()
    server.server_close()


def test_notify_posts_a_json_summary(daemon: Any, params_nb: Path, fail_nb: Path, receiver: Any) -> None:
    url, received = receiver
    proc = runt("run", str(fail_nb), "--notify", f"{url}/hook", env=daemon.env())
    assert proc.returncode == 1
    assert len(received) == 1 and received[0]["path"] == "/hook" and received[0]["type"] == "application/json"
    summary = received[0]["json"]
    assert summary["status"] == "error" and summary["exit_code"] == 1
    assert summary["failed_cell"]["ename"] == "ValueError" and summary["url"].startswith(daemon.url)
    received.clear()
    proc = runt("run", "--batch", str(params_nb), str(fail_nb), "--notify", url, env=daemon.env())
    assert proc.returncode == 1 and len(received) == 1
    batch = received[0]["json"]
    assert batch["total"] == 2 and batch["failed"] == 1 and len(batch["runs"]) == 2

