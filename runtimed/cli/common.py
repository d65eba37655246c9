"""Helpers shared by the ``runt`` commands: consoles, the daemon endpoint, tables, JSON."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from runtimed.cli.errors import DAEMON_NOT_RUNNING, CliError
from runtimed.home import Home

if TYPE_CHECKING:
    from rich.console import Console

    from runtimed.client.discovery import DaemonEndpoint
    from runtimed.client.http import DaemonHTTP

START_HINT = "start one with `runt daemon start`"


@functools.cache
def out_console() -> Console:
    from rich.console import Console

    # piped output is not cut to 80 columns: tables stay whole for grep and friends
    return Console(highlight=False, soft_wrap=False, width=None if sys.stdout.isatty() else 400)


@functools.cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, highlight=False)


def note(message: str) -> None:
    """A side remark on stderr (never mixed into output meant for pipes)."""
    from rich.markup import escape

    err_console().print(f"[dim]{escape(message)}[/]", soft_wrap=True)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


def home() -> Home:
    return Home.resolve()


def find_endpoint() -> DaemonEndpoint | None:
    from runtimed.client.discovery import find_daemon

    return find_daemon(home())


def require_endpoint() -> DaemonEndpoint:
    """The running daemon, or exit 3 saying how to start one (for commands that never start it)."""
    found = find_endpoint()
    if found is None:
        raise CliError(f"no daemon is running for {home().path}", DAEMON_NOT_RUNNING, hint=START_HINT)
    return found


def ensure_endpoint() -> DaemonEndpoint:
    """The running daemon, starting the embedded default for this home when none runs."""
    from runtimed.client.discovery import start_daemon

    found = find_endpoint()
    if found is not None:
        return found
    h = home()
    note(f"no daemon is running for {h.path}; starting one…")
    endpoint = start_daemon(h)
    note(f"daemon started at {endpoint.url}")
    return endpoint


@contextlib.contextmanager
def daemon_http(*, start: bool = True, timeout: float = 60.0) -> Iterator[DaemonHTTP]:
    from runtimed.client.http import DaemonHTTP

    endpoint = ensure_endpoint() if start else require_endpoint()
    http = DaemonHTTP(endpoint, timeout=timeout)
    try:
        yield http
    finally:
        http.close()


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None) -> None:
    from rich import box
    from rich.table import Table

    t = Table(*columns, title=title, box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
              header_style="bold", title_style="bold", title_justify="left")
    for column in t.columns[:1]:
        column.no_wrap = True
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    out_console().print(t)


def when(value: Any, short: bool = False) -> str:
    """A timestamp (epoch seconds or ISO 8601) as local 'YYYY-mm-dd HH:MM:SS' (only the time for today if short)."""
    if value is None or value == "":
        return ""
    try:
        if isinstance(value, int | float):
            dt = datetime.fromtimestamp(value)
        else:
            dt = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except (ValueError, OSError, OverflowError):
        return str(value)
    if short and dt.date() == datetime.now(dt.tzinfo).date():
        return dt.strftime("%H:%M:%S")
    return dt.strftime("%Y-%m-%d %H:%M:%S")


def duration(seconds: float) -> str:
    """A short human duration: tenths under 10 s (most runs of a small notebook take less than a second)."""
    if round(seconds, 1) < 10:
        return f"{max(seconds, 0.0):.1f}s"
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def wait_until(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def stdout_is_tty() -> bool:
    return sys.stdout.isatty()


def in_ci() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("GITHUB_ACTIONS"))
