"""The sidecar: a terminal IPython session (driven through a pty) mirrored into a notebook that a
second client reads while the terminal goes on."""

from __future__ import annotations

import os
import pty
import re
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import Session
from runtimed.client.discovery import DaemonEndpoint

pytestmark = pytest.mark.timeout(120)
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("sidecar-home")) as proc:
        yield proc


class Terminal:
    """IPython in a pseudo-terminal, as a person would run it."""

    def __init__(self, env: dict[str, str], cwd: Path) -> None:
        master, slave = pty.openpty()
        self.proc = subprocess.Popen([sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner",
                                      "--colors=NoColor", "--HistoryManager.enabled=False"],
                                     stdin=slave, stdout=slave, stderr=slave, env=env, cwd=cwd, close_fds=True)
        os.close(slave)
        self.master = master
        self.seen = ""

    def read_until(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            found = regex.search(ANSI.sub("", self.seen))
            if found:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{pattern!r} did not appear; the terminal shows:\n{self.seen[-2000:]}")
            ready, _, _ = select.select([self.master], [], [], remaining)
            if ready:
                try:
                    self.seen += os.read(self.master, 65536).decode(errors="replace")
                except OSError:
                    pass

    def send(self, line: str) -> None:
        os.write(self.master, line.encode() + b"\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.send("exit")
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        os.close(self.master)


def eventually(predicate: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not met in time")


def test_ipython_session_mirrored_into_a_live_notebook(daemon: DaemonProcess, tmp_path: Path) -> None:
    env = {**daemon.env(), "IPYTHONDIR": str(tmp_path / "ipython"), "MPLBACKEND": "Agg", "TERM": "xterm",
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    term = Terminal(env, tmp_path)
    try:
        term.read_until(r"In \[1\]:")
        term.send("%load_ext runtimed")
        notebook_id = term.read_until(r"runtimed sidecar: notebook (\S+) — open (\S+)").group(1)
        assert daemon.url in term.seen
        term.send("print('hello from the terminal')")
        term.read_until(r"hello from the terminal")
        term.send("from IPython.display import HTML, display; display(HTML('<b>bold</b>')); 6 * 7")
        term.read_until(r"Out\[\d+\]: 42")
        term.send("1 / 0")
        term.read_until(r"ZeroDivisionError")
        term.send("import matplotlib.pyplot as plt; fig = plt.figure(); plt.plot([1, 2, 3]);")
        term.send("print('done')")
        term.read_until(r"[^']done\r?\n")

        reader = Session(notebook_id, endpoint=DaemonEndpoint(daemon.url, daemon.token))
        try:
            def mirrored() -> list[Any] | None:
                cells = reader.get_cells()
                return cells if len(cells) >= 6 and cells[5].outputs else None

            cells = eventually(mirrored)
            sources = [c.source for c in cells]
            assert sources[0] == "%load_ext runtimed"
            assert sources[1] == "print('hello from the terminal')"
            printed = cells[1]
            assert [(o.output_type, o.text) for o in printed.outputs] == [("stream", "hello from the terminal\n")]
            assert printed.execution_count == 2
            shown = cells[2].outputs
            assert shown[0].output_type == "display_data" and shown[0].data["text/html"] == "<b>bold</b>"
            assert shown[1].output_type == "execute_result" and shown[1].data["text/plain"] == "42"
            assert cells[2].execution_count == 3 and shown[1].execution_count == 3
            error = cells[3].outputs[-1]
            assert error.output_type == "error" and error.ename == "ZeroDivisionError"
            assert any("1 / 0" in line for line in error.traceback)
            figure = [o for o in cells[4].outputs if o.output_type == "display_data"]
            assert figure and figure[0].data["image/png"].startswith("iVBOR")  # a PNG, base64
            assert cells[5].outputs[0].text == "done\n"
            assert not reader.kernel_started  # the code ran in the terminal, not in a kernel
        finally:
            reader.close()
        term.send("%unload_ext runtimed")
        term.send("print('after')")
        term.read_until(r"[^']after\r?\n")
    finally:
        term.close()
    assert term.proc.returncode == 0
