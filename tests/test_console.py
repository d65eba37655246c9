"""`runt console`: the REPL driven through a pseudo-terminal (pexpect), against a real daemon."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pexpect
import pytest
from conftest import running_daemon

pytestmark = pytest.mark.timeout(180)

PROMPT = r"In \[(\d+)\]:"


def runt(*args: str, env: dict[str, str], input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env=env, input=input,
                          capture_output=True, text=True, timeout=90)


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """One daemon for the module, and the environment for `runt` (no CPR probes, no browser)."""
    base = tmp_path_factory.mktemp("console")
    home, runtime_dir = base / "home", base / "jrt"
    home.mkdir()
    runtime_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("RUNTIMED_URL", "RUNTIMED_TOKEN")}
    env.update(RUNTIMED_HOME=str(home), JUPYTER_RUNTIME_DIR=str(runtime_dir), PROMPT_TOOLKIT_NO_CPR="1",
               TERM="xterm", CI="1")
    with running_daemon(home, env={"JUPYTER_RUNTIME_DIR": str(runtime_dir)}):
        yield env


def spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    child = pexpect.spawn(sys.executable, ["-m", "runtimed.cli.main", "console", *args], env=env,
                          encoding="utf-8", timeout=60, dimensions=(40, 160))
    return child


def test_console_repl(env: dict[str, str]) -> None:
    child = spawn(env)
    try:
        child.expect(PROMPT)
        assert child.match.group(1) == "1"
        child.sendline("1+1")
        child.expect(r"Out\[1\]: 2")
        child.expect(PROMPT)
        assert child.match.group(1) == "2"

        child.sendline("print('hello from the kernel')")
        child.expect("hello from the kernel")
        child.expect(PROMPT)

        # a block over several lines: the continuation prompt, then an empty line runs it
        child.sendline("for i in range(2):")
        child.expect(r"\.\.\.:")
        child.sendline("    print('line', i)")
        child.expect(r"\.\.\.:")
        child.sendline("")
        child.expect("line 1")
        child.expect(PROMPT)

        # an exception shows its traceback, the prompt comes back
        child.sendline("1/0")
        child.expect("ZeroDivisionError")
        child.expect(PROMPT)

        # Ctrl-C interrupts the running cell
        child.sendline("import time; time.sleep(30)")
        time.sleep(2.0)  # let it start running in the kernel
        started = time.monotonic()
        child.sendintr()
        child.expect("KeyboardInterrupt")
        child.expect(PROMPT)
        assert time.monotonic() - started < 20

        # the kernel is still usable (same state)
        child.sendline("x = 20; x * 2")
        child.expect(r"Out\[\d+\]: 40")
        child.expect(PROMPT)

        # Ctrl-C at the prompt does nothing harmful; Ctrl-D exits with the export hint
        child.sendintr()
        child.expect(PROMPT)
        # a Ctrl-D that lands while prompt_toolkit is redrawing after the Ctrl-C can be swallowed
        # by the terminal driver; a person would press it again, and so does the test
        for _attempt in range(3):
            child.sendeof()
            if child.expect([r"runt export (\S+) -o session\.ipynb", pexpect.TIMEOUT], timeout=10) == 0:
                break
        notebook_id = re.sub(r"\x1b\[[0-9;]*m", "", child.match.group(1))
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0

    exported = runt("export", notebook_id, env=env)
    assert exported.returncode == 0, exported.stderr
    nb = json.loads(exported.stdout)
    sources = ["".join(c["source"]) for c in nb["cells"]]
    assert sources[:2] == ["1+1", "print('hello from the kernel')"]
    assert "x = 20; x * 2" in sources
    assert nb["metadata"]["kernelspec"]["name"] == "python3"


def test_console_piped_stdin(env: dict[str, str]) -> None:
    """Without a terminal, the console reads lines with plain input() and still runs them."""
    result = runt("console", env=env, input="1+2\nprint('piped')\nraise ValueError('boom')\n")
    assert result.returncode == 0, result.stderr
    assert "Out[1]: 3" in result.stdout and "piped" in result.stdout
    assert "ValueError" in result.stderr and "boom" in result.stderr
    assert "runt export console-" in result.stderr


def test_console_unknown_kernel(env: dict[str, str]) -> None:
    before = {nb["id"] for nb in json.loads(runt("notebooks", "--json", env=env).stdout)}
    result = runt("console", "no-such-kernel", env=env, input="")
    assert result.returncode == 4
    assert "no-such-kernel" in result.stderr and "python3" in result.stderr
    after = {nb["id"] for nb in json.loads(runt("notebooks", "--json", env=env).stdout)}
    assert after == before  # no notebook was left behind


def test_console_main_is_importable_for_runt_run() -> None:
    from runtimed.cli.console import console_main

    assert callable(console_main)
    assert Path(sys.modules["runtimed.cli.console"].__file__ or "").name == "console.py"
