"""The `runt` command line, run as subprocesses against real daemons in temporary homes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed.cli import errors as exit_codes
from runtimed.cli.main import COMMANDS

pytestmark = pytest.mark.timeout(180)

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE_IPYNB = ROOT / "examples" / "params.ipynb"
EXAMPLE_YAML = ROOT / "examples" / "params.yaml"
HEAVY_MODULES = ("fastapi", "uvicorn", "pycrdt", "jupyter_client.manager", "runtimed.server",
                 "runtimed.client.session", "runtimed.client.sync")


def runt(*args: str, env: dict[str, str], input: str | None = None, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=timeout)


def popen_runt(*args: str, env: dict[str, str], **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "runtimed.cli.main", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def clean_env(home: Path, runtime_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("RUNTIMED_URL", "RUNTIMED_TOKEN", "DISPLAY", "WAYLAND_DISPLAY")}
    env.update(RUNTIMED_HOME=str(home), JUPYTER_RUNTIME_DIR=str(runtime_dir), CI="1", **extra)
    return env


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, dict[str, str]]]:
    """One daemon for the module (its own home and Jupyter runtime dir), and the env for runt."""
    base = tmp_path_factory.mktemp("cli")
    home, runtime_dir = base / "home", base / "jrt"
    home.mkdir()
    runtime_dir.mkdir()
    env = clean_env(home, runtime_dir)
    # the daemon's kernels write their connection files into runtime_dir
    with running_daemon(home, env={"JUPYTER_RUNTIME_DIR": str(runtime_dir)}) as proc:
        yield proc, env


@pytest.fixture
def env(shared: tuple[DaemonProcess, dict[str, str]]) -> dict[str, str]:
    return shared[1]


@pytest.fixture
def empty_env(tmp_path: Path) -> dict[str, str]:
    """A home where no daemon runs (and an empty Jupyter runtime dir)."""
    (tmp_path / "home").mkdir()
    (tmp_path / "jrt").mkdir()
    return clean_env(tmp_path / "home", tmp_path / "jrt")


# -- help, version, start-up ---------------------------------------------------------------------


def test_help_version_and_every_command_help(empty_env: dict[str, str]) -> None:
    result = runt("--help", env=empty_env)
    assert result.returncode == 0
    for name in COMMANDS:
        assert name in result.stdout
    version = runt("--version", env=empty_env)
    assert version.returncode == 0 and version.stdout.startswith("runt ")
    assert runt("daemon", "start", "--help", env=empty_env).returncode == 0
    # every command (in-process: quicker than a subprocess each)
    from click.testing import CliRunner

    from runtimed.cli.main import cli

    names = [n for n in COMMANDS if n not in ("run", "inspect")]
    names += [f"daemon {c}" for c in ("start", "stop", "restart", "status", "logs", "ping", "flush-pool")]
    names += ["runtime connect", "kill"]
    runner = CliRunner()
    for name in names:
        r = runner.invoke(cli, [*name.split(), "--help"], env={"RUNTIMED_HOME": empty_env["RUNTIMED_HOME"]})
        assert r.exit_code == 0, (name, r.output)
        assert "Usage:" in r.output and "Example" in r.output or name in ("daemon", "runtime"), name
    # `run` and `inspect` are listed without importing their module (the lead's run_cmd.py)
    for name in ("run", "inspect"):
        assert runner.invoke(cli, [name, "--help"]).exit_code == 0


def _imported(env: dict[str, str], *args: str) -> set[str]:
    r = subprocess.run([sys.executable, "-X", "importtime", "-m", "runtimed.cli.main", *args], env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    modules = set()
    for line in r.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            modules.add(line.rsplit("|", 1)[1].strip())
    return modules


def test_help_and_ps_do_not_import_the_heavy_stack(empty_env: dict[str, str]) -> None:
    for args in (("--help",), ("ps",)):
        modules = _imported(empty_env, *args)
        assert "click" in modules
        heavy = sorted(m for m in modules if any(m == h or m.startswith(h + ".") for h in HEAVY_MODULES))
        assert not heavy, f"`runt {' '.join(args)}` imported {heavy}"


def test_usage_errors_exit_2(empty_env: dict[str, str]) -> None:
    assert runt("no-such-command", env=empty_env).returncode == exit_codes.USAGE
    assert runt("stop", env=empty_env).returncode == exit_codes.USAGE  # neither ID nor --all
    assert runt("stop", "x", "--all", env=empty_env).returncode == exit_codes.USAGE
    assert runt("rm", env=empty_env).returncode == exit_codes.USAGE
    assert runt("history", "nb", "--at", "-1", env=empty_env).returncode == exit_codes.USAGE
    assert runt("daemon", "logs", "-n", "many", env=empty_env).returncode == exit_codes.USAGE
    assert runt("daemon", "start", "--port", "http", env=empty_env).returncode == exit_codes.USAGE
    assert runt("query", "nb", env=empty_env).returncode == exit_codes.USAGE  # SQL missing
    assert runt("runtime", "connect", env=empty_env).returncode == exit_codes.USAGE  # --notebook missing


# -- no daemon -----------------------------------------------------------------------------------


def test_commands_that_do_not_start_a_daemon(empty_env: dict[str, str]) -> None:
    home = Path(empty_env["RUNTIMED_HOME"])
    status = runt("daemon", "status", env=empty_env)
    assert status.returncode == exit_codes.DAEMON_NOT_RUNNING
    assert "no daemon is running" in status.stderr and "runt daemon start" in status.stderr
    status_json = runt("daemon", "status", "--json", env=empty_env)
    assert status_json.returncode == exit_codes.DAEMON_NOT_RUNNING
    assert json.loads(status_json.stdout)["running"] is False
    ping = runt("daemon", "ping", env=empty_env)
    assert ping.returncode == exit_codes.DAEMON_NOT_RUNNING and "runt daemon start" in ping.stderr
    stop = runt("daemon", "stop", env=empty_env)
    assert stop.returncode == 0 and "no daemon is running" in stop.stderr
    logs = runt("daemon", "logs", env=empty_env)
    assert logs.returncode == exit_codes.DAEMON_NOT_RUNNING
    ps = runt("ps", env=empty_env)
    assert ps.returncode == 0 and "no daemon is running" in ps.stderr
    ps_json = json.loads(runt("ps", "--json", env=empty_env).stdout)
    assert ps_json["daemon"]["running"] is False and ps_json["runtimes"] == [] and ps_json["kernels"] == []
    for args in (("stop", "rt-x"), ("interrupt", "rt-x")):
        r = runt(*args, env=empty_env)
        assert r.returncode == exit_codes.DAEMON_NOT_RUNNING and "runt daemon start" in r.stderr
    assert not (home / "daemon.json").exists()  # none of these started one


def test_daemon_lifecycle(tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "jrt").mkdir()
    env = clean_env(tmp_path / "home", tmp_path / "jrt", RUNTIMED_POOL_SIZE="0")
    try:
        # a command that needs a daemon starts the embedded default
        auto = runt("notebooks", "--json", env=env)
        assert auto.returncode == 0, auto.stderr
        assert json.loads(auto.stdout) == [] and "starting" in auto.stderr
        assert runt("daemon", "stop", env=env).returncode == 0

        started = runt("daemon", "start", "--port", "0", env=env)
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip()
        assert url.startswith("http://127.0.0.1:")
        again = runt("daemon", "start", env=env)
        assert again.returncode == 0 and again.stdout.strip() == url and "already running" in again.stderr
        status = json.loads(runt("daemon", "status", "--json", env=env).stdout)
        assert status["running"] is True and status["url"] == url
        table = runt("daemon", "status", env=env)
        assert table.returncode == 0 and url in table.stdout
        ping = runt("daemon", "ping", env=env)
        assert ping.returncode == 0 and "pong" in ping.stdout
        logs = runt("daemon", "logs", "-n", "5", env=env)
        assert logs.returncode == 0 and "listening on" in logs.stdout
        pool = runt("daemon", "flush-pool", "--json", env=env)
        assert pool.returncode == 0, pool.stderr
        restarted = runt("daemon", "restart", env=env)
        assert restarted.returncode == 0, restarted.stderr
        assert restarted.stdout.strip() == url  # same port
        assert json.loads(runt("daemon", "status", "--json", env=env).stdout)["pid"] != status["pid"]
        stopped = runt("daemon", "stop", env=env)
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert runt("daemon", "status", env=env).returncode == exit_codes.DAEMON_NOT_RUNNING

        # --foreground runs in the process until stopped
        fg = popen_runt("daemon", "start", "--foreground", "--port", "0", env=env)
        deadline = time.monotonic() + 30
        while runt("daemon", "ping", env=env).returncode != 0:
            assert fg.poll() is None, fg.stderr.read() if fg.stderr else ""
            assert time.monotonic() < deadline
            time.sleep(0.2)
        assert runt("daemon", "stop", env=env).returncode == 0
        assert fg.wait(20) == 0
        assert "listening on" in (fg.stderr.read() if fg.stderr else "")
    finally:
        runt("daemon", "stop", env=env)


# -- runtimes ------------------------------------------------------------------------------------


def test_start_exec_interrupt_stop(env: dict[str, str]) -> None:
    started = runt("start", "python3", env=env)
    assert started.returncode == 0, started.stderr
    rt = started.stdout.strip()
    assert rt.startswith("rt-")

    ps = json.loads(runt("ps", "--json", env=env).stdout)
    mine = [r for r in ps["runtimes"] if r["runtime_id"] == rt]
    assert mine and mine[0]["type"] == "managed" and mine[0]["kernel_name"] == "python3"
    assert mine[0]["notebook_id"].startswith("kernel-") and mine[0]["pid"]
    table = runt("ps", "-v", env=env)
    assert table.returncode == 0 and rt in table.stdout and "CONNECTION FILE" in table.stdout
    assert mine[0]["connection_file"] in table.stdout

    out = runt("exec", rt, "import sys; print('to out'); print('to err', file=sys.stderr); x = 41", env=env)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "to out\n" and "to err" in out.stderr
    state = runt("exec", rt, "print(x + 1)", env=env)  # same kernel, same state
    assert state.stdout == "42\n"
    piped = runt("exec", rt, env=env, input="for i in range(3):\n    print(i)\n")
    assert piped.returncode == 0 and piped.stdout == "0\n1\n2\n"
    failed = runt("exec", rt, "1/0", env=env)
    assert failed.returncode == exit_codes.FAILURE
    assert "ZeroDivisionError" in failed.stderr and "\x1b[" not in failed.stderr  # no colours in a pipe
    # the notebook id works too
    assert runt("exec", mine[0]["notebook_id"], "print('nb')", env=env).stdout == "nb\n"

    # streaming: the first line arrives long before the cell ends
    proc = popen_runt("exec", rt, "import time\nprint('first', flush=True)\ntime.sleep(3)\nprint('second')", env=env)
    assert proc.stdout is not None
    t0 = time.monotonic()
    assert proc.stdout.readline() == "first\n"
    first_at = time.monotonic() - t0
    assert proc.wait(60) == 0
    assert time.monotonic() - t0 - first_at > 1.5
    assert proc.stdout.read() == "second\n"

    # interrupt a running cell from another command
    proc = popen_runt("exec", rt, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)", env=env)
    assert proc.stdout is not None and proc.stdout.readline() == "sleeping\n"
    interrupted = runt("interrupt", rt, env=env)
    assert interrupted.returncode == 0, interrupted.stderr
    assert proc.wait(30) == exit_codes.FAILURE
    assert "KeyboardInterrupt" in (proc.stderr.read() if proc.stderr else "")

    stopped = runt("stop", rt, env=env)
    assert stopped.returncode == 0 and rt in stopped.stdout
    ps = json.loads(runt("ps", "--json", env=env).stdout)
    assert rt not in [r["runtime_id"] for r in ps["runtimes"]]
    for args in (("stop", rt), ("kill", rt), ("interrupt", rt), ("exec", rt, "1")):
        r = runt(*args, env=env)
        assert r.returncode == exit_codes.NOT_FOUND, (args, r.stderr)
        assert "no runtime" in r.stderr and "runt ps" in r.stderr


def test_start_json_kill_all_and_unknown_kernel(env: dict[str, str]) -> None:
    unknown = runt("start", "no-such-kernel", env=env)
    assert unknown.returncode == exit_codes.NOT_FOUND
    assert "no-such-kernel" in unknown.stderr and "python3" in unknown.stderr  # lists the available ones
    described = runt("start", "--json", env=env)
    assert described.returncode == 0, described.stderr
    info = json.loads(described.stdout)
    assert info["runtime_id"].startswith("rt-") and info["kernel_name"] == "python3"
    killed = runt("kill", "--all", env=env)
    assert killed.returncode == 0 and info["runtime_id"] in killed.stdout
    assert json.loads(runt("ps", "--json", env=env).stdout)["runtimes"] == []


def _write_connection_file(directory: Path, kernel_id: str, hb_port: int) -> Path:
    path = directory / f"kernel-{kernel_id}.json"
    path.write_text(json.dumps({
        "shell_port": hb_port + 1, "iopub_port": hb_port + 2, "stdin_port": hb_port + 3,
        "control_port": hb_port + 4, "hb_port": hb_port, "ip": "127.0.0.1", "transport": "tcp",
        "signature_scheme": "hmac-sha256", "key": "", "kernel_name": "python3",
    }))
    return path


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_ps_and_rm_standalone_kernels(empty_env: dict[str, str]) -> None:
    from jupyter_client.manager import KernelManager

    runtime_dir = Path(empty_env["JUPYTER_RUNTIME_DIR"])
    stale = _write_connection_file(runtime_dir, "stale-one", _free_port())
    km = KernelManager(kernel_name="python3", connection_file=str(runtime_dir / "kernel-live-one.json"))
    km.start_kernel()
    try:
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.stop_channels()
        ps = runt("ps", "--json", env=empty_env)
        assert ps.returncode == 0
        kernels = {k["id"]: k for k in json.loads(ps.stdout)["kernels"]}
        assert kernels["stale-one"]["status"] == "unresponsive"
        assert kernels["live-one"]["status"] == "alive" and kernels["live-one"]["type"] == "standalone"
        assert kernels["live-one"]["pid"] == km.provisioner.pid
        assert kernels["live-one"]["language"] == "python"
        table = runt("ps", "-v", env=empty_env)
        assert "unresponsive" in table.stdout and "alive" in table.stdout and str(stale) in table.stdout
        assert "no daemon is running" in table.stderr

        refused = runt("rm", "live-one", env=empty_env)
        assert refused.returncode == exit_codes.REFUSED and "alive" in refused.stderr
        assert (runtime_dir / "kernel-live-one.json").exists()
        removed = runt("rm", "stale-one", env=empty_env)
        assert removed.returncode == 0 and not stale.exists()
        assert runt("rm", "stale-one", env=empty_env).returncode == exit_codes.NOT_FOUND
        other = _write_connection_file(runtime_dir, "stale-two", _free_port())
        swept = runt("rm", "--stale", env=empty_env)
        assert swept.returncode == 0 and not other.exists()
        assert (runtime_dir / "kernel-live-one.json").exists()
    finally:
        km.shutdown_kernel(now=True)


def test_runtime_connect(env: dict[str, str]) -> None:
    created = runt("import", str(EXAMPLE_IPYNB), "--id", "external-nb", env=env)
    assert created.returncode == 0, created.stderr
    proc = popen_runt("runtime", "connect", "--notebook", "external-nb", env=env)
    try:
        assert proc.stdout is not None
        rt = proc.stdout.readline().strip()
        assert rt.startswith("rt-"), proc.stderr.read() if proc.stderr else ""
        ps = json.loads(runt("ps", "--json", env=env).stdout)
        assert {"runtime_id": rt, "type": "external"}.items() <= next(
            r for r in ps["runtimes"] if r["runtime_id"] == rt).items()
        ran = runt("exec", "external-nb", "import os; print(os.getpid())", env=env)
        assert ran.returncode == 0 and ran.stdout.strip().isdigit()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    missing = runt("runtime", "connect", "--notebook", "no-such-notebook", env=env)
    assert missing.returncode == exit_codes.NOT_FOUND


# -- notebooks -----------------------------------------------------------------------------------


def test_import_export_notebooks_open(env: dict[str, str], tmp_path: Path) -> None:
    imported = runt("import", str(EXAMPLE_IPYNB), "--id", "params-nb", env=env)
    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == "params-nb"
    duplicate = runt("import", str(EXAMPLE_IPYNB), "--id", "params-nb", env=env)
    assert duplicate.returncode == exit_codes.REFUSED and "already exists" in duplicate.stderr
    generated = runt("import", str(EXAMPLE_YAML), env=env)
    assert generated.returncode == 0, generated.stderr
    yaml_id = generated.stdout.strip()
    assert runt("import", str(tmp_path / "missing.ipynb"), env=env).returncode == exit_codes.NOT_FOUND
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert runt("import", str(bad), env=env).returncode == exit_codes.FAILURE

    listed = json.loads(runt("notebooks", "--json", env=env).stdout)
    ids = {nb["id"] for nb in listed}
    assert {"params-nb", yaml_id} <= ids
    table = runt("notebooks", env=env)
    assert table.returncode == 0 and "params-nb" in table.stdout and "Parameters demo" in table.stdout

    stdout_export = runt("export", "params-nb", env=env)
    assert stdout_export.returncode == 0
    nb = nbformat.reads(stdout_export.stdout, as_version=4)
    nbformat.validate(nb)
    original = nbformat.read(EXAMPLE_IPYNB, as_version=4)
    assert [c.source for c in nb.cells] == [c.source for c in original.cells]
    target = tmp_path / "out.ipynb"
    assert runt("export", yaml_id, "-o", str(target), env=env).returncode == 0
    assert [c.source for c in nbformat.read(target, as_version=4).cells] == [c.source for c in nb.cells]
    as_yaml = tmp_path / "out.yaml"
    assert runt("export", "params-nb", "-o", str(as_yaml), env=env).returncode == 0
    assert "cells:" in as_yaml.read_text()
    assert runt("export", "no-such-nb", env=env).returncode == exit_codes.NOT_FOUND

    opened = runt("open", "params-nb", env=env)
    assert opened.returncode == 0
    url = opened.stdout.strip()
    home_token = (Path(env["RUNTIMED_HOME"]) / "token").read_text().strip()
    assert url.startswith("http://127.0.0.1:") and "notebook=params-nb" in url and f"token={home_token}" in url
    missing = runt("open", "no-such-nb", env=env)
    assert missing.returncode == exit_codes.NOT_FOUND and "no notebook" in missing.stderr


def test_history_and_query(env: dict[str, str]) -> None:
    assert runt("import", str(EXAMPLE_IPYNB), "--id", "hist-nb", env=env).returncode == 0
    ran = runt("exec", "hist-nb", "print('hello history')", env=env)
    assert ran.returncode == 0 and ran.stdout == "hello history\n"

    history = json.loads(runt("history", "hist-nb", "--json", env=env).stdout)
    events = history["events"]
    assert events[0]["seq"] == 1 and events[0]["name"] == "notebookCreated"
    assert all({"seq", "name", "actor", "ts"} <= e.keys() for e in events)
    names = [e["name"] for e in events]
    assert "executionRequested" in names and "executionCompleted" in names
    table = runt("history", "hist-nb", env=env)
    assert table.returncode == 0 and "notebookCreated" in table.stdout and "cellCreated" in table.stdout
    assert len(json.loads(runt("history", "hist-nb", "-n", "2", "--json", env=env).stdout)["events"]) == 2

    at_one = json.loads(runt("history", "hist-nb", "--at", "1", "--json", env=env).stdout)
    assert at_one["cells"] == [] and at_one["head_seq"] == 1
    now = json.loads(runt("history", "hist-nb", "--at", str(history["head"]), "--json", env=env).stdout)
    assert any("hello history" in c["source"] for c in now["cells"])
    state = runt("history", "hist-nb", "--at", str(history["head"]), env=env)
    assert state.returncode == 0 and "hello history" in state.stdout
    assert runt("history", "no-such-nb", env=env).returncode == exit_codes.NOT_FOUND
    assert runt("history", "no-such-nb", "--at", "1", env=env).returncode == exit_codes.NOT_FOUND

    rows = json.loads(runt("query", "hist-nb", "SELECT id, cell_type FROM cells", "--json", env=env).stdout)
    assert len(rows) == len(nbformat.read(EXAMPLE_IPYNB, as_version=4).cells) + 1
    assert all(set(r) == {"id", "cell_type"} for r in rows)
    table = runt("query", "hist-nb", "SELECT COUNT(*) AS n FROM cells", env=env)
    assert table.returncode == 0 and table.stdout.splitlines()[0].strip() == "n"
    assert table.stdout.splitlines()[-1].strip() == str(len(rows))
    for sql in ("DELETE FROM cells", "UPDATE cells SET source = 'x'", "DROP TABLE cells"):
        refused = runt("query", "hist-nb", sql, env=env)
        assert refused.returncode == exit_codes.REFUSED, (sql, refused.stderr)
        assert "read-only" in refused.stderr
    assert runt("query", "hist-nb", "SELEC nonsense", env=env).returncode == exit_codes.FAILURE
    assert runt("query", "no-such-nb", "SELECT 1", env=env).returncode == exit_codes.NOT_FOUND
    assert json.loads(runt("query", "hist-nb", "SELECT COUNT(*) AS n FROM cells", "--json", env=env).stdout)[0]["n"] == \
        len(rows)
