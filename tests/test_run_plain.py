"""The plain ``runt run NOTEBOOK [OUTPUT] [-p NAME VALUE]...`` that ``cli/main.py`` runs without click.

It must be the same command as click's: the same keyword arguments for the same command line (checked
against click's own parse), the same outputs, messages and exit codes (checked against click's path on the
same run, reached by adding a flag that changes nothing), and every other command line still goes to click.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import make_notebook, write

from runtimed.cli.run_cmd import run
from runtimed.cli.run_plain import plain_run_arguments
from runtimed.errors import ExitCode

pytestmark = pytest.mark.timeout(240)

RUNT = [sys.executable, "-m", "runtimed.cli.main"]

PLAIN = [
    ["run", "in.ipynb"],
    ["run", "in.ipynb", "out.ipynb"],
    ["run", "dir/in put.ipynb", "other dir/OUT.IPYNB", "-p", "alpha", "0.5"],
    ["run", "in.ipynb", "out.ipynb", "-p", "a", "1", "--parameters", "b", "-2", "-p", "c", "None", "-p", "s",
     "two words"],
]
NOT_PLAIN = [
    ["run"],
    ["ps"],
    ["--home", "h", "run", "in.ipynb"],
    ["run", "in.ipynb", "out.ipynb", "--allow-errors"],
    ["run", "in.ipynb", "out.ipynb", "--no-progress-bar"],
    ["run", "--json", "in.ipynb", "out.ipynb"],
    ["run", "in.ipynb", "-"],
    ["run", "-", "out.ipynb"],
    ["run", "in.yaml", "out.ipynb"],
    ["run", "python3"],
    ["run", "s3://bucket/in.ipynb", "out.ipynb"],
    ["run", "in.ipynb", "out_{alpha}.ipynb", "-p", "alpha", "1"],
    ["run", "in.ipynb", "out.ipynb", "-p", "alpha"],
    ["run", "in.ipynb", "out.ipynb", "-r", "alpha", "1"],
    ["run", "in.ipynb", "out.ipynb", "-p", "alpha", "--help"],
    ["run", "in.ipynb", "out.ipynb", "--", "-p", "a", "1"],
    ["run", "a.ipynb", "b.ipynb", "c.ipynb"],
]


HEAVY = {"typing", "dataclasses", "http.client", "asyncio", "logging", "pathlib", "runtimed.errors",
         "runtimed.automation.options", "runtimed.automation.parameters", "runtimed.client.discovery"}
"""What the plain ``runt run`` of a notebook that succeeds never loads (each costs the run's start 5-40 ms)."""


def _normal(arguments: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(tuple(x) if isinstance(x, list | tuple) else x for x in v) if isinstance(v, list | tuple) else v
            for k, v in arguments.items()}


@pytest.fixture
def no_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", io.StringIO())


def test_plain_command_lines_get_clicks_arguments(no_terminal: None) -> None:
    for argv in PLAIN:
        ours = plain_run_arguments(argv)
        assert ours is not None, argv
        clicks = run.make_context("run", argv[1:]).params
        assert _normal(ours) == _normal(clicks), argv


def test_other_command_lines_are_left_to_click(no_terminal: None, monkeypatch: pytest.MonkeyPatch) -> None:
    for argv in NOT_PLAIN:
        assert plain_run_arguments(argv) is None, argv
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a terminal gets click's path (and a progress bar)
    assert plain_run_arguments(PLAIN[1]) is None


def _runt(*args: str, env: dict[str, str], importtime: bool = False) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, *(["-X", "importtime"] if importtime else []), *RUNT[1:], *args]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)


def _messages(proc: subprocess.CompletedProcess[str], out: Path) -> list[str]:
    """What runt run said, without the import times, the output's name and the run's ids, URLs and durations."""
    lines = [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]
    text = "\n".join(lines).replace(str(out), "OUT")
    text = re.sub(r"run-[\w.-]+-[0-9a-f]{8}", "RUN", text)
    text = re.sub(r"r-\d{8}-\d{6}-[0-9a-f]{6}", "RID", text)
    text = re.sub(r"http://\S+", "URL", text)
    text = re.sub(r"in \d+\.\d+ s", "in T s", text)
    text = re.sub(r"\(kernel kept until [^)]*\)", "(kernel kept until T)", text)
    return text.splitlines()


def _imported(proc: subprocess.CompletedProcess[str]) -> set[str]:
    return {line.rsplit("|", 1)[1].strip() for line in proc.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def _cells(path: Path) -> list[tuple[str, list[Any]]]:
    nb = nbformat.read(str(path), 4)
    return [(c.source, [{k: v for k, v in o.items() if k != "execution_count"} for o in c.get("outputs", [])])
            for c in nb.cells]


def test_plain_run_and_clicks_give_the_same_results(daemon: Any, tmp_path: Path) -> None:
    ok = write(make_notebook(("code", "a = 1\nb = 'x'", ["parameters"]), ("code", "print(repr(a), repr(b))")),
               tmp_path / "ok.ipynb")
    fail = write(make_notebook(("code", "a = 1", ["parameters"]), ("code", "raise ValueError(f'boom {a}')"),
                               ("code", "print('never')")), tmp_path / "fail.ipynb")
    cases = [  # (args, expected exit code)
        ([str(ok), "OUT", "-p", "a", "-7", "-p", "b", "two words"], ExitCode.OK),
        ([str(fail), "OUT", "-p", "a", "2"], ExitCode.FAILURE),
        ([str(tmp_path / "missing.ipynb"), "OUT"], ExitCode.NOT_FOUND),
        ([str(ok), str(tmp_path / "no-such-dir" / "out.ipynb")], ExitCode.NOT_FOUND),
    ]
    for args, expected in cases:
        outputs = {}
        messages = {}
        for path, extra in (("plain", []), ("click", ["--no-progress-bar"])):  # stderr is no terminal: no bar either way
            out = tmp_path / f"{path}.ipynb"
            out.unlink(missing_ok=True)
            argv = [str(out) if a == "OUT" else a for a in args]
            proc = _runt("run", *argv, *extra, env=daemon.env(), importtime=True)
            assert proc.returncode == expected, (path, args, proc.stderr[-3000:])
            imported = _imported(proc)
            if path == "plain":  # click loads only to show a failure (in red)
                assert ("click" in imported) == (expected != ExitCode.OK), (args, sorted(imported))
                if expected == ExitCode.OK:  # submitted and followed on the lightest modules (run_plain.py)
                    assert not imported & HEAVY, (args, sorted(imported & HEAVY))
            else:
                assert "click" in imported
            if expected == ExitCode.FAILURE:  # the kernel's grace period in local time, not the daemon's ISO stamp
                assert re.search(r"\(kernel kept until (\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d\)", proc.stderr), proc.stderr
            messages[path] = _messages(proc, out)
            outputs[path] = _cells(out) if out.exists() else None
        assert messages["plain"] == messages["click"], args
        assert outputs["plain"] == outputs["click"], args
        if expected == ExitCode.OK:
            assert outputs["plain"] is not None and "-7 'two words'" in outputs["plain"][-1][1][0]["text"]
        if expected == ExitCode.FAILURE:
            assert outputs["plain"] is not None and "'evalue': 'boom 2'" in str(outputs["plain"])


def test_unusual_flags_still_go_through_click(daemon: Any, tmp_path: Path) -> None:
    fail = write(make_notebook(("code", "a = 1", ["parameters"]), ("code", "raise ValueError(f'boom {a}')"),
                               ("code", "print('after', repr(a))")), tmp_path / "fail.ipynb")
    out = tmp_path / "out.ipynb"
    proc = _runt("run", str(fail), str(out), "-r", "a", "7", "--allow-errors", "--json", env=daemon.env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert '"status": "success"' in proc.stdout
    assert "after '7'" in str(_cells(out)[-1][1])
    usage = _runt("run", str(fail), str(out), "-p", "a", env=daemon.env())  # -p takes NAME VALUE
    assert usage.returncode == ExitCode.USAGE and "requires 2 arguments" in usage.stderr


def test_plain_and_clicks_submit_the_same_run(daemon: Any, tmp_path: Path) -> None:
    """The plain path sends only the options that differ from their defaults: the daemon must end up with the
    options the full path sends for the same command line."""
    nb = write(make_notebook(("code", "x = 1", ["parameters"]), ("code", "print(x)")), tmp_path / "nb.ipynb")
    for path, extra in (("plain", []), ("click", ["--no-progress-bar"])):
        proc = _runt("run", str(nb), str(tmp_path / "out.ipynb"), "-p", "x", "2.5", "-p", "y", "True", *extra,
                     env=daemon.env())
        assert proc.returncode == 0, (path, proc.stderr[-3000:])
    listed = subprocess.run([*RUNT, "runs", "--json"], env=daemon.env(), capture_output=True, text=True,
                            timeout=60)
    runs = json.loads(listed.stdout)
    assert len(runs) == 2, listed.stdout
    first, second = (runt_run["options"] for runt_run in runs)
    assert first.pop("notebook_id").startswith("run-nb-") and second.pop("notebook_id").startswith("run-nb-")
    assert first == second
    assert first["parameters"] == {"x": 2.5, "y": True} and first["write_output_file"] is True


def test_a_daemon_gone_since_it_wrote_daemon_json_is_replaced(home: Path, tmp_path: Path) -> None:
    """``daemon.json`` names a live process (its pid reused) and a port where nothing listens: the plain path's
    submit is refused, and the full path starts a daemon and runs the notebook."""
    import os
    import socket

    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    (home / "token").write_text("a-token-of-this-home")
    (home / "daemon.json").write_text(json.dumps({"url": f"http://127.0.0.1:{port}", "pid": os.getpid()}))
    nb = write(make_notebook(("code", "print('ran')")), tmp_path / "nb.ipynb")
    out = tmp_path / "out.ipynb"
    env = {**os.environ, "RUNTIMED_HOME": str(home)}
    try:
        proc = _runt("run", str(nb), str(out), env=env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert "ran" in str(_cells(out)[0][1])
        info = json.loads((home / "daemon.json").read_text())
        assert info["pid"] != os.getpid() and info["url"] != f"http://127.0.0.1:{port}"
    finally:
        subprocess.run([*RUNT, "daemon", "stop"], env=env, capture_output=True, timeout=60)
