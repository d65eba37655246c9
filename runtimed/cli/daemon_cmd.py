"""``runt daemon``: start, stop, restart, status, logs, ping, flush-pool."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import deque
from typing import Any, NoReturn

import click

from runtimed.cli.common import (
    START_HINT,
    daemon_http,
    duration,
    find_endpoint,
    home,
    note,
    out_console,
    print_json,
    table,
    wait_until,
    when,
)
from runtimed.cli.errors import DAEMON_NOT_RUNNING, FAILURE, CliError
from runtimed.home import DEFAULT_HOST, DEFAULT_PORT, pid_alive


@click.group()
def daemon() -> None:
    """Start, stop and inspect the daemon of the home ($RUNTIMED_HOME)."""


def _port_arg(value: str | None) -> str | None:
    if value is None or value == "auto":
        return value
    try:
        port = int(value)
    except ValueError:
        raise click.BadParameter(f"expected a number or 'auto', got {value!r}") from None
    if not 0 <= port <= 65535:
        raise click.BadParameter(f"{port} is not a port number")
    return str(port)


def _start_background(port: str | None, host: str | None) -> Any:
    from runtimed.client.discovery import start_daemon

    extra: list[str] = []
    if port is not None:
        extra += ["--port", port]
    if host is not None:
        extra += ["--host", host]
    return start_daemon(home(), extra_args=extra)


@daemon.command()
@click.option("--foreground", is_flag=True, help="Run in this process (logs on stderr) until Ctrl-C.")
@click.option("--port", callback=lambda c, p, v: _port_arg(v), metavar="PORT",
              help=f"Port (default {DEFAULT_PORT}, or a free one when it is taken); 0 for any free port.")
@click.option("--host", default=None, metavar="HOST", help=f"Interface to bind (default {DEFAULT_HOST}).")
def start(foreground: bool, port: str | None, host: str | None) -> None:
    """Start the daemon (in the background unless --foreground) and print its URL.

    \b
    Example:
      runt daemon start            # background, http://127.0.0.1:8730
      runt daemon start --port 0   # any free port
    """
    running = find_endpoint()
    if running is not None:
        click.echo(running.url)
        note(f"a daemon is already running for {home().path} (pid {running.pid}); "
             "`runt daemon restart` restarts it")
        return
    if foreground:
        from runtimed.cli.daemon_main import main as server_main

        argv = ["--home", str(home().path), "--foreground", "--port", port or str(DEFAULT_PORT)]
        if host:
            argv += ["--host", host]
        sys.exit(server_main(argv))
    endpoint = _start_background(port, host)
    click.echo(endpoint.url)
    note(f"daemon started (pid {endpoint.pid}, home {home().path}); stop it with `runt daemon stop`")


def _stop(timeout: float = 20.0) -> bool:
    """Stop the running daemon; False when none ran."""
    from runtimed.client.http import DaemonHTTP

    endpoint = find_endpoint()
    info = home().read_daemon_info() or {}
    pid = endpoint.pid if endpoint is not None and endpoint.pid else info.get("pid")
    if endpoint is None and not (isinstance(pid, int) and _alive(pid)):
        return False
    if endpoint is not None:
        http = DaemonHTTP(endpoint, timeout=10)
        try:
            http.post("/api/shutdown")
        except Exception as exc:  # fall back to a signal
            note(f"the daemon did not accept /api/shutdown ({exc}); sending SIGTERM")
            if isinstance(pid, int):
                _signal(pid, signal.SIGTERM)
        finally:
            http.close()
    elif isinstance(pid, int):
        _signal(pid, signal.SIGTERM)
    if not isinstance(pid, int):
        return wait_until(lambda: find_endpoint() is None, timeout)
    if wait_until(lambda: not _alive(pid), timeout * 0.75):
        return True
    _signal(pid, signal.SIGTERM)
    if wait_until(lambda: not _alive(pid), timeout * 0.25):
        return True
    raise CliError(f"the daemon (pid {pid}) did not stop within {timeout:.0f} s", FAILURE,
                   hint=f"kill it with `kill -9 {pid}`")


def _alive(pid: int) -> bool:
    """pid_alive, but an exited process that its parent has not reaped yet (a zombie) counts as gone."""
    if not pid_alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rpartition(")")[2].split()[0] != "Z"
    except (OSError, IndexError):
        pass
    try:
        import psutil

        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except Exception:
        return True


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


@daemon.command()
@click.option("--timeout", default=20.0, show_default=True, help="Seconds to wait for the daemon to exit.")
def stop(timeout: float) -> None:
    """Stop the daemon (POST /api/shutdown, else SIGTERM) and wait until it has exited.

    \b
    Example:
      runt daemon stop
    """
    if not _stop(timeout):
        note(f"no daemon is running for {home().path}; nothing to stop")
        return
    click.echo("daemon stopped")


@daemon.command()
@click.option("--port", callback=lambda c, p, v: _port_arg(v), metavar="PORT",
              help="Port for the new daemon (default: the port it had).")
@click.option("--host", default=None, metavar="HOST", help="Interface for the new daemon (default: as before).")
def restart(port: str | None, host: str | None) -> None:
    """Stop the daemon (if it runs) and start it again in the background, on the same port.

    \b
    Example:
      runt daemon restart
    """
    info = home().read_daemon_info() or {}
    if _stop():
        if port is None and info.get("port"):
            port = str(info["port"])
        if host is None and info.get("host"):
            host = str(info["host"])
    endpoint = _start_background(port, host)
    click.echo(endpoint.url)
    note(f"daemon restarted (pid {endpoint.pid})")


def _not_running(as_json: bool) -> NoReturn:
    if as_json:
        print_json({"running": False, "home": str(home().path)})
        sys.exit(DAEMON_NOT_RUNNING)
    raise CliError(f"no daemon is running for {home().path}", DAEMON_NOT_RUNNING, hint=START_HINT)


@daemon.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(as_json: bool) -> None:
    """Show whether the daemon runs, and its version, URL, notebooks, runtimes and pool.

    Exits 3 when no daemon is running.

    \b
    Example:
      runt daemon status --json
    """
    if find_endpoint() is None:
        _not_running(as_json)
    with daemon_http(start=False, timeout=10) as http:
        info = http.get("/api/status")
    if as_json:
        print_json({"running": True, **info})
        return
    pool = ", ".join(f"{name}: {p.get('ready', 0)} ready, {p.get('starting', 0)} starting"
                     for name, p in (info.get("pool") or {}).items()) or "none"
    rows = [
        ("status", "[green]running[/]"),
        ("url", info.get("url")),
        ("pid", info.get("pid")),
        ("version", info.get("version")),
        ("home", info.get("home")),
        ("started", when(info.get("started_at"))),
        ("uptime", duration(info.get("uptime_s") or 0)),
        ("notebooks", f"{info.get('notebooks')} ({info.get('open_notebooks')} open, "
                      f"{info.get('connections')} connections)"),
        ("runtimes", len(info.get("runtimes") or [])),
        ("kernel pool", pool),
    ]
    console = out_console()
    for key, value in rows:
        console.print(f"[bold]{key:<12}[/] {value}", soft_wrap=True)


@daemon.command()
def ping() -> None:
    """Check that the daemon answers (exit 0), else exit 3.

    \b
    Example:
      runt daemon ping
    """
    from runtimed.client.http import DaemonHTTP
    from runtimed.errors import RuntimedError

    endpoint = find_endpoint()
    if endpoint is None:
        _not_running(False)
    t0 = time.perf_counter()
    http = DaemonHTTP(endpoint, timeout=5)
    try:
        body = http.get("/health")
    except (RuntimedError, ValueError) as exc:
        raise CliError(f"the daemon at {endpoint.url} does not answer: {exc}", DAEMON_NOT_RUNNING,
                       hint=START_HINT) from None
    finally:
        http.close()
    ms = (time.perf_counter() - t0) * 1000
    click.echo(f"pong from {endpoint.url} (runtimed {body.get('version')}, {ms:.1f} ms)")


@daemon.command()
@click.option("-f", "--follow", is_flag=True, help="Keep printing new lines (Ctrl-C stops).")
@click.option("-n", "--lines", "lines", default=50, show_default=True, type=click.IntRange(min=0),
              help="How many of the last lines to show.")
def logs(follow: bool, lines: int) -> None:
    """Show the daemon's log ($RUNTIMED_HOME/daemon.log).

    \b
    Example:
      runt daemon logs -n 100
      runt daemon logs -f
    """
    path = home().log_file
    if not path.exists():
        raise CliError(f"no daemon log at {path}: no daemon has run for {home().path}", DAEMON_NOT_RUNNING,
                       hint=START_HINT)
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in deque(f, maxlen=lines) if lines else ():
            click.echo(line, nl=False)
        if not follow:
            return
        try:
            while True:
                line = f.readline()
                if line:
                    click.echo(line, nl=False)
                    continue
                if path.exists() and path.stat().st_size < f.tell():  # truncated or rotated
                    f.seek(0)
                time.sleep(0.2)
        except KeyboardInterrupt:
            return


@daemon.command("flush-pool")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def flush_pool(as_json: bool) -> None:
    """Replace every prewarmed kernel (e.g. after installing packages).

    \b
    Example:
      runt daemon flush-pool
    """
    with daemon_http() as http:
        pool = http.post("/api/pool/flush")
    if as_json:
        print_json(pool)
        return
    click.echo("kernel pool flushed")
    table(["KERNEL", "READY", "STARTING"], [(k, v.get("ready"), v.get("starting")) for k, v in pool.items()])
