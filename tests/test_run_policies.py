"""``runt run`` beyond papermill (issue #16): Slack notifications, per-cell retries and timeouts, run_if,
expectations. Real daemon, real kernels; only Slack is replaced, by a local server speaking its webhook protocol.
"""

from __future__ import annotations

import http.server
import json
import threading
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import make_notebook, write
from test_run_cli import runt, text

pytestmark = pytest.mark.timeout(240)

SECRET = "T00000000/B00000000/XXXXsecretXXXXXXXXXXXX"


class _Slack(http.server.BaseHTTPRequestHandler):
    """Slack's incoming webhook: POST JSON to /services/..., answers 200 ``ok`` (or 404 ``no_service``)."""

    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        known = self.path == f"/services/{SECRET}"
        type(self).received.append({"path": self.path, "json": json.loads(body),
                                    "type": self.headers["Content-Type"]})
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"ok" if known else b"no_service")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def slack() -> Any:
    _Slack.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Slack)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}", _Slack.received
    server.shutdown()
    server.server_close()


@pytest.fixture
def ok_nb(tmp_path: Path) -> Path:
    return write(make_notebook(("code", "x = 1", ["parameters"]), ("code", "print(x)")), tmp_path / "ok.ipynb")


@pytest.fixture
def fail_nb(tmp_path: Path) -> Path:
    nb = make_notebook(("code", "a = 1", ["parameters"]), ("code", "print(a)"), ("code", "raise ValueError('boom')"))
    return write(nb, tmp_path / "fail.ipynb")


# -- notifications ---------------------------------------------------------------------------------------


def test_slack_message_on_failure_only(daemon: Any, ok_nb: Path, fail_nb: Path, slack: Any) -> None:
    url, received = slack
    hook = f"slack+{url}/services/{SECRET}"
    proc = runt("run", str(ok_nb), "--notify", hook, "--notify-on", "failure", env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert received == []  # a success is not reported with --notify-on failure
    proc = runt("run", str(fail_nb), "--notify", hook, "--notify-on", "failure", env=daemon.env())
    assert proc.returncode == 1, text(proc)
    assert len(received) == 1 and received[0]["type"] == "application/json"
    message = received[0]["json"]
    assert set(message) == {"text", "blocks"}
    assert "error" in message["text"] and "fail.ipynb" in message["text"]
    assert "ValueError: boom" in message["text"] and "Failing cell:* 2" in message["text"]
    assert f"{daemon.url}/?notebook=run-fail-" in message["text"]
    assert all(b["type"] == "section" and b["text"]["type"] == "mrkdwn" for b in message["blocks"])
    assert SECRET not in text(proc)


def test_slack_on_success_and_json_on_both(daemon: Any, ok_nb: Path, slack: Any) -> None:
    url, received = slack
    proc = runt("run", str(ok_nb), "--notify", f"slack+{url}/services/{SECRET}", "--notify-on", "success",
                env=daemon.env())
    assert proc.returncode == 0, text(proc)
    assert len(received) == 1 and "success" in received[0]["json"]["text"]
    assert "Failing cell" not in received[0]["json"]["text"]
    received.clear()
    proc = runt("run", str(ok_nb), "--notify", f"{url}/services/{SECRET}", env=daemon.env())  # plain JSON
    assert proc.returncode == 0 and received[0]["json"]["status"] == "success"


def test_webhook_secrets_never_printed(daemon: Any, ok_nb: Path, slack: Any) -> None:
    url, received = slack
    proc = runt("run", str(ok_nb), "--notify", f"slack+{url}/services/WRONG-{SECRET}", env=daemon.env())
    assert proc.returncode == 0  # a failed notification does not fail the run
    assert len(received) == 1
    err = text(proc)
    assert "--notify slack+http://127.0.0.1:" in err and "failed" in err and SECRET not in err
    logged = daemon.stderr()  # the run (a daemon job) notifies: its log says why, without the secret
    assert "HTTP 404" in logged and SECRET not in logged
    # nobody listening: the error names the host only
    token = SECRET.replace("/", "")
    proc = runt("run", str(ok_nb), "--notify", f"http://user:pw-{token}@127.0.0.1:9/x/{token}?token={token}",
                env=daemon.env())
    assert proc.returncode == 0
    assert "--notify http://127.0.0.1:9/…" in text(proc) and token not in text(proc) and "pw-" not in text(proc)
    assert "ConnectError" in daemon.stderr() and token not in daemon.stderr() and "pw-" not in daemon.stderr()
    # not a URL at all: a usage error before the run, still without the secret
    for bad in (f"ftp://h/{SECRET}", f"http://user:pw-{SECRET}@127.0.0.1:9/x"):
        proc = runt("run", str(ok_nb), "--notify", bad, env=daemon.env())
        assert proc.returncode == 2 and "--notify" in text(proc), text(proc)
        assert SECRET not in text(proc) and "pw-" not in text(proc)


# -- retries, timeouts, run_if ---------------------------------------------------------------------------


def _nb(*cells: tuple[str, dict[str, Any]] | str) -> nbformat.NotebookNode:
    """Code cells: a source, or (source, metadata)."""
    nb = make_notebook(*[("code", c if isinstance(c, str) else c[0]) for c in cells])
    for cell, spec in zip(nb.cells, cells, strict=True):
        if not isinstance(spec, str):
            cell.metadata.update(spec[1])
    return nb


def _run(daemon: Any, nb: nbformat.NotebookNode, tmp_path: Path, *args: str) -> tuple[Any, nbformat.NotebookNode,
                                                                                      dict[str, Any]]:
    src = write(nb, tmp_path / "in.ipynb")
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "--cwd", str(tmp_path), "--json", *args, env=daemon.env())
    summary = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc, nbformat.read(str(out), 4) if out.exists() else nbformat.v4.new_notebook(), summary


def _executions(daemon: Any, notebook_id: str, cell_id: str) -> list[dict[str, Any]]:
    """The cell's executions as the daemon's log recorded them (queue order)."""
    from runtimed.client.http import DaemonHTTP

    http = DaemonHTTP(daemon.endpoint)
    try:
        body = http.request("POST", f"/api/notebooks/{notebook_id}/query", json={
            "sql": "SELECT queue_id, status, error FROM execution_queue WHERE cell_id = ? ORDER BY rowid",
            "params": [cell_id]}).json()
    finally:
        http.close()
    return [dict(zip(body["columns"], row, strict=True)) for row in body["rows"]]


def _stdout(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")


FLAKY = "n = globals().get('n', 0) + 1\nif n < 3:\n    raise RuntimeError(f'attempt {n}')\nprint('ok after', n)"


def test_cell_retry_until_it_passes_each_attempt_logged(daemon: Any, tmp_path: Path) -> None:
    nb = _nb("before = 'kept'", (FLAKY, {"runtimed": {"retry": {"count": 3, "backoff": 0.05}}}), "print(before, n)")
    proc, out, summary = _run(daemon, nb, tmp_path)
    assert proc.returncode == 0, text(proc)
    assert _stdout(out.cells[1]) == "ok after 3\n" and _stdout(out.cells[2]) == "kept 3\n"  # kernel state kept
    attempts = out.cells[1].metadata["runtimed_run"]["attempts"]
    assert [(a["status"], a["ename"]) for a in attempts] == \
           [("error", "RuntimeError"), ("error", "RuntimeError"), ("success", None)]
    assert out.cells[1].metadata.papermill["status"] == "completed"
    logged = _executions(daemon, summary["notebook_id"], out.cells[1].id)
    assert [e["status"] for e in logged] == ["error", "error", "success"]
    assert [e["queue_id"] for e in logged] == [a["queue_id"] for a in attempts]


def test_retries_exhausted_fail_the_run_with_the_last_error(daemon: Any, tmp_path: Path) -> None:
    nb = _nb("x = 1", ("raise ValueError('always')", {"tags": ["retry=1"]}), "print('never')")
    proc, out, summary = _run(daemon, nb, tmp_path)
    assert proc.returncode == 1, text(proc)
    assert summary["failed_cell"]["ename"] == "ValueError"
    failed = next(c for c in out.cells if c.get("id") == summary["failed_cell"]["id"])
    assert len(failed.metadata["runtimed_run"]["attempts"]) == 2
    assert out.cells[-1].metadata.papermill["status"] == "pending" and out.cells[-1].outputs == []


def test_cell_timeout_interrupts_and_a_retry_can_pass(daemon: Any, tmp_path: Path) -> None:
    slow_once = ("import os, time\nif not os.path.exists('slow-once'):\n    open('slow-once', 'w').close()\n"
                 "    time.sleep(120)\nprint('fast now')")
    nb = _nb(("import time; time.sleep(0.2); print('under')", {"timeout": 60}),
             (slow_once, {"tags": ["timeout=1", "retry=1"]}))
    proc, out, _ = _run(daemon, nb, tmp_path)
    assert proc.returncode == 0, text(proc)
    assert _stdout(out.cells[1]) == "fast now\n"
    assert [a["ename"] for a in out.cells[1].metadata["runtimed_run"]["attempts"]] == ["ExecutionTimeout", None]
    nb = _nb("print('first')", ("import time; time.sleep(120)", {"runtimed": {"timeout": 1}}), "print('never')")
    proc, out, summary = _run(daemon, nb, tmp_path)
    assert proc.returncode == 7, text(proc)  # the timeout exit code, as for --execution-timeout
    assert summary["failed_cell"]["ename"] == "ExecutionTimeout" and "(1 s)" in summary["failed_cell"]["evalue"]


def test_bad_policy_is_a_usage_error_before_the_run(daemon: Any, tmp_path: Path) -> None:
    proc, _, _ = _run(daemon, _nb(("print(1)", {"runtimed": {"retry": "often"}})), tmp_path)
    assert proc.returncode == 2 and "retry must be a whole number" in text(proc)
    proc, _, _ = _run(daemon, _nb(("print(1)", {"tags": ["timeout=-1"]})), tmp_path)
    assert proc.returncode == 2 and "timeout must be a positive number of seconds" in text(proc)


def test_run_if_skips_cells_and_records_it(daemon: Any, tmp_path: Path) -> None:
    nb = _nb(("print('first')", {"runtimed": {"run_if": "1 + 1 == 2"}}),  # before any kernel exists
             "mode = 'a'",
             ("print('B')", {"runtimed": {"run_if": "mode == 'b'"}}),
             ("print('A')", {"runtimed": {"run_if": "mode == 'a'"}}),
             "print('end')")
    nb.cells[1].metadata["tags"] = ["parameters"]
    proc, out, summary = _run(daemon, nb, tmp_path, "-p", "mode", "b")
    assert proc.returncode == 0, text(proc)
    code = [c for c in out.cells if "injected-parameters" not in c.metadata.get("tags", [])]
    assert [_stdout(c) for c in code] == ["first\n", "", "B\n", "", "end\n"]
    assert code[3].metadata.papermill["status"] == "skipped" and code[3].execution_count is None
    assert code[3].metadata["runtimed_run"] == {"skipped": True, "run_if": "mode == 'a'", "value": "False"}
    assert "runtimed_run" not in code[2].metadata
    assert _executions(daemon, summary["notebook_id"], code[3].id) == []  # never requested
    # the live notebook has the record too (it was written to the log)
    from runtimed.client.http import DaemonHTTP

    http = DaemonHTTP(daemon.endpoint)
    try:
        body = http.request("POST", f"/api/notebooks/{summary['notebook_id']}/query", json={
            "sql": "SELECT json_extract(metadata, '$.runtimed_run.skipped') FROM cells WHERE id = ?",
            "params": [code[3].id]}).json()
    finally:
        http.close()
    assert body["rows"] == [[1]]


def test_run_if_that_raises_fails_the_run(daemon: Any, tmp_path: Path) -> None:
    nb = _nb("x = 1", ("print('no')", {"runtimed": {"run_if": "undefined_name > 1"}}), "print('never')")
    proc, out, summary = _run(daemon, nb, tmp_path)
    assert proc.returncode == 1, text(proc)
    assert summary["failed_cell"]["ename"] == "NameError" and "run_if" in summary["failed_cell"]["evalue"]
    assert [c.metadata.papermill["status"] for c in out.cells] == ["completed", "failed", "pending"]


DIES_ONCE = "import os\nif not os.path.exists('died-once'):\n    open('died-once', 'w').close()\n    os._exit(1)"


def test_run_retries_from_the_start_after_the_kernel_died(daemon: Any, tmp_path: Path) -> None:
    nb = _nb("setup = 'done'", DIES_ONCE, "print(setup)")
    proc, out, summary = _run(daemon, nb, tmp_path)
    assert proc.returncode == 6, text(proc)  # without --retries: the kernel died
    (tmp_path / "died-once").unlink()
    proc, out, summary = _run(daemon, nb, tmp_path, "--retries", "2")
    assert proc.returncode == 0, text(proc)
    assert _stdout(out.cells[2]) == "done\n"  # the setup cell ran again in the new kernel
    record = out.metadata["runtimed_run"]
    assert record["run_attempts"] == 2 and record["restarts"][0]["ename"] == "KernelDied"
    assert [e["status"] for e in _executions(daemon, summary["notebook_id"], out.cells[0].id)] == \
           ["success", "success"]


# -- expectations ----------------------------------------------------------------------------------------


def test_expectations_in_metadata_pass_and_are_recorded(daemon: Any, tmp_path: Path) -> None:
    nb = _nb(("x = 1\nprint('epoch 3 loss=0.25')", {"runtimed": {"expect": {
                 "stdout_contains": ["epoch 3"], "stdout_matches": r"loss=0\.\d+", "no_stderr": True,
                 "variables": {"x": "x == 1"}, "max_duration": 120}}}),
             ("x = 2\n6 * 7", {"runtimed": {"expect": {"result_equals": 42}}}))
    (tmp_path / "checks.yaml").write_text("variables: {x: 'x == 2'}\nmax_duration: 600\n")
    proc, out, summary = _run(daemon, nb, tmp_path, "--expect", str(tmp_path / "checks.yaml"))
    assert proc.returncode == 0, text(proc)
    assert summary["failed_expectations"] == []
    first = out.cells[0].metadata["runtimed_run"]["expectations"]
    assert [r["check"] for r in first] == ["stdout_contains", "stdout_matches", "no_stderr", "max_duration",
                                           "variables.x"]
    assert all(r["ok"] for r in first)  # x was 1 right after the first cell, 2 at the end
    record = out.metadata["runtimed_run"]["expectations"]
    assert record["checked"] == record["passed"] == 8 and record["failed"] == []


def test_failed_expectations_fail_the_run(daemon: Any, tmp_path: Path) -> None:
    src = tmp_path / "nb.yaml"
    src.write_text(
        "metadata: {kernel: python3}\n"
        "cells:\n"
        "  - id: load\n"
        "    source: |\n"
        "      import sys\n"
        "      rows = 3\n"
        "      print('loaded', rows)\n"
        "      print('careful', file=sys.stderr)\n"
        "    expect: {stdout_contains: 'loaded 3', no_stderr: true}\n"
        "  - id: total\n"
        "    tags: [report]\n"
        "    source: rows * 2\n"
        "    expect: {result_equals: '6'}\n")
    (tmp_path / "checks.yaml").write_text(
        "cells:\n  'tag:report': {result_equals: 7}\n  load: {stdout_matches: 'loaded \\d{2}'}\n"
        "variables: {rows: 'rows > 10'}\n")
    out = tmp_path / "out.ipynb"
    proc = runt("run", str(src), str(out), "--expect", str(tmp_path / "checks.yaml"), "--json", env=daemon.env())
    assert proc.returncode == 1, text(proc)
    summary = json.loads(proc.stdout)
    assert summary["status"] == "expectations_failed" and summary["failed_cell"] is None
    failed = {(f["cell_id"], f["check"]): f["message"] for f in summary["failed_expectations"]}
    assert failed == {
        ("load", "no_stderr"): "stderr: 'careful'",
        ("load", "stdout_matches"): "stdout does not match 'loaded \\\\d{2}'",
        ("total", "result_equals"): "result is '6', expected '7'",  # the file's check replaced the notebook's
        (None, "variables.rows"): "'rows > 10' is false (rows = 3)",
    }
    assert "4 expectation(s) failed" in text(proc) and "cell 0 no_stderr: stderr: 'careful'" in text(proc)
    nb = nbformat.read(str(out), 4)
    assert len(nb.metadata["runtimed_run"]["expectations"]["failed"]) == 4
    assert [c.metadata.papermill["status"] for c in nb.cells] == ["completed", "completed"]


def test_bad_expectations_are_a_usage_error(daemon: Any, tmp_path: Path) -> None:
    nb = _nb("print(1)")
    (tmp_path / "checks.yaml").write_text("cells:\n  nope: {stdout_contains: x}\n")
    proc, _, _ = _run(daemon, nb, tmp_path, "--expect", str(tmp_path / "checks.yaml"))
    assert proc.returncode == 2 and "cells.nope: no such cell" in text(proc)
    proc, _, _ = _run(daemon, _nb(("print(1)", {"runtimed": {"expect": {"stdout_has": "1"}}})), tmp_path)
    assert proc.returncode == 2 and "unknown checks ['stdout_has']" in text(proc)


def test_yaml_cells_carry_expect_and_policy_keys_both_ways() -> None:
    from runtimed.formats.yaml_nb import read_yaml_notebook, write_yaml_notebook

    nb, _ = read_yaml_notebook("cells:\n  - id: a\n    source: print(1)\n    expect: {stdout_contains: '1'}\n"
                               "    retry: {count: 2, backoff: 1}\n    timeout: 5\n    run_if: 'x > 0'\n")
    assert nb.cells[0].metadata["runtimed"] == {"expect": {"stdout_contains": "1"}, "retry": {"count": 2, "backoff": 1},
                                                "timeout": 5, "run_if": "x > 0"}
    again, _ = read_yaml_notebook(write_yaml_notebook(nb))
    assert again.cells[0].metadata == nb.cells[0].metadata
    assert "expect:" in write_yaml_notebook(nb) and "metadata" not in write_yaml_notebook(nb)
