"""Shared fixtures: a real daemon process in a temporary RUNTIMED_HOME."""

from __future__ import annotations

import contextlib
import importlib.util
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
from pg import pg_cluster  # noqa: F401 - the session's throwaway PostgreSQL, for @pytest.mark.postgres tests

from runtimed.client.discovery import DaemonEndpoint, find_daemon
from runtimed.home import Home

ROOT = Path(__file__).resolve().parent.parent


def _bench_notebooks() -> Path:
    """The benchmark notebooks' folder, as ``bench/common.py`` defines it (one definition for both)."""
    spec = importlib.util.spec_from_file_location("runtimed_bench_common", ROOT / "bench" / "common.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.NOTEBOOKS


BENCH_NOTEBOOKS = _bench_notebooks()


class DaemonProcess:
    """A ``runtimed`` daemon started as a subprocess for one test (or module)."""

    def __init__(self, home: Path, *args: str) -> None:
        self.home = Home(home)
        self.args = args
        self.proc: subprocess.Popen | None = None
        self.endpoint: DaemonEndpoint | None = None

    def start(self, timeout: float = 90.0) -> DaemonEndpoint:
        self.home.daemon_file.unlink(missing_ok=True)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "runtimed.cli.daemon_main", "--home", str(self.home.path), "--port", "0", *self.args],
            stdout=subprocess.DEVNULL, stderr=open(self.home.path / "test-daemon.stderr", "ab"),  # noqa: SIM115
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {self.proc.returncode}: {self.stderr()}")
            found = find_daemon(self.home)
            if found is not None and found.pid == self.proc.pid:
                self.endpoint = found
                return found
            time.sleep(0.05)
        raise RuntimeError(f"daemon did not start: {self.stderr()}")

    def stderr(self) -> str:
        path = self.home.path / "test-daemon.stderr"
        return path.read_text()[-3000:] if path.exists() else ""

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    @property
    def url(self) -> str:
        assert self.endpoint is not None
        return self.endpoint.url

    @property
    def token(self) -> str:
        assert self.endpoint is not None
        return self.endpoint.token

    def env(self) -> dict[str, str]:
        """Environment for a subprocess client of this daemon."""
        return {**os.environ, "RUNTIMED_HOME": str(self.home.path)}


@contextlib.contextmanager
def running_daemon(home: Path, *args: str, env: dict[str, str] | None = None) -> Iterator[DaemonProcess]:
    """A daemon in ``home`` for longer than one test (module-scoped fixtures): started with
    ``RUNTIMED_HOME`` pointing at it (plus ``env``), stopped on exit."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RUNTIMED_HOME", str(home))
        mp.delenv("RUNTIMED_URL", raising=False)
        mp.delenv("RUNTIMED_TOKEN", raising=False)
        for key, value in (env or {}).items():
            mp.setenv(key, value)
        proc = DaemonProcess(home, *args)
        proc.start()
        try:
            yield proc
        finally:
            proc.stop()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An isolated RUNTIMED_HOME for this test."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("RUNTIMED_HOME", str(path))
    monkeypatch.delenv("RUNTIMED_URL", raising=False)
    monkeypatch.delenv("RUNTIMED_TOKEN", raising=False)
    return path


@pytest.fixture
def daemon(home: Path) -> Iterator[DaemonProcess]:
    """A real daemon (with daemon-managed runtimes) in this test's RUNTIMED_HOME."""
    proc = DaemonProcess(home)
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def bare_daemon(home: Path) -> Iterator[DaemonProcess]:
    """A real daemon without daemon-managed runtimes (document and sync tests)."""
    proc = DaemonProcess(home, "--no-runtimes")
    proc.start()
    yield proc
    proc.stop()


@pytest.fixture
def slow_kernelspec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """A kernelspec whose kernel never becomes ready (on JUPYTER_PATH before the daemon starts)."""
    spec_dir = tmp_path / "jupyter" / "kernels" / "never-ready"
    spec_dir.mkdir(parents=True)
    (spec_dir / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-c", "import time; time.sleep(20)", "{connection_file}"],
        "display_name": "Never ready", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", os.pathsep.join([str(tmp_path / "jupyter"),
                                                        os.environ.get("JUPYTER_PATH", "")]).rstrip(os.pathsep))
    return "never-ready"


KERNELSPEC = {"name": "python3", "language": "python", "display_name": "Python 3"}


def make_notebook(*cells: tuple[str, str] | tuple[str, str, list[str]]) -> nbformat.NotebookNode:
    """``("code"|"markdown", source[, tags])`` -> a v4.5 notebook with a python3 kernelspec."""
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = dict(KERNELSPEC)
    for spec in cells:
        kind, source = spec[0], spec[1]
        cell = nbformat.v4.new_code_cell(source) if kind == "code" else nbformat.v4.new_markdown_cell(source)
        if len(spec) > 2:
            cell.metadata["tags"] = list(spec[2])
        nb.cells.append(cell)
    return nb


def write(nb: nbformat.NotebookNode, path: Path) -> Path:
    nbformat.write(nb, str(path))
    return path
