"""A daemon that accepts connections but does not answer (stopped with SIGSTOP) gives a bounded, clear error."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from conftest import DaemonProcess

import runtimed
from runtimed.client.http import DaemonHTTP
from runtimed.errors import ErrorCode, ExitCode


@pytest.fixture
def stuck(daemon: DaemonProcess) -> Iterator[DaemonProcess]:
    assert daemon.proc is not None
    os.kill(daemon.proc.pid, signal.SIGSTOP)
    try:
        yield daemon
    finally:
        os.kill(daemon.proc.pid, signal.SIGCONT)


def test_a_request_the_daemon_does_not_answer_is_a_daemon_timeout(stuck: DaemonProcess) -> None:
    assert stuck.endpoint is not None
    http = DaemonHTTP(stuck.endpoint, timeout=1.0)
    try:
        with pytest.raises(runtimed.ConnectionLostError) as caught:  # what Session callers already catch
            http.get("/api/notebooks")
    finally:
        http.close()
    error = caught.value
    assert error.code == "daemon_timeout" and ErrorCode.lookup(error.code).exit_code == ExitCode.TIMEOUT
    assert f"the daemon at {stuck.url} did not answer GET /api/notebooks within 1 s" in error.message
    assert "runt daemon logs" in error.message


def test_discovery_does_not_offer_a_daemon_that_does_not_answer(stuck: DaemonProcess) -> None:
    done = subprocess.run([sys.executable, "-m", "runtimed.cli.main", "daemon", "status"], env=stuck.env(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == ExitCode.DAEMON_NOT_RUNNING, done.stderr
    assert "Traceback" not in done.stderr
