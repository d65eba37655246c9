"""Find the daemon for a home, or start the embedded default in the background and wait for it.

``RUNTIMED_URL`` may list several daemons of one deployment, comma-separated: a client uses the first
that answers and fails over to another when its daemon dies (``DaemonEndpoint.alternates``, ``failover``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from runtimed.errors import DaemonNotRunningError, DaemonStartError, ExitCode
from runtimed.home import Home, pid_alive


@dataclass(frozen=True)
class DaemonEndpoint:
    url: str
    token: str
    pid: int | None = None
    alternates: tuple[str, ...] = ()
    """Every daemon of the deployment in the order given (``url`` among them): where a client goes when
    ``url`` stops answering. Empty for a single daemon."""

    @property
    def urls(self) -> tuple[str, ...]:
        """The daemons to try, ``url`` first."""
        return (self.url, *(u for u in self.alternates if u != self.url))

    def at(self, url: str) -> DaemonEndpoint:
        """The same deployment reached through ``url`` (one of ``urls``)."""
        return replace(self, url=url, pid=None)

    @property
    def ws_url(self) -> str:
        return "ws" + self.url[4:] if self.url.startswith("http") else self.url

    def headers(self) -> dict[str, str]:
        from runtimed.client.light_http import bearer

        return bearer(self.token)


def _healthy(url: str, timeout: float = 1.0) -> bool:
    from runtimed.client.light_http import Timeout, request

    try:
        return request(url, "GET", "/health", timeout=timeout)[0] == 200
    except (Timeout, DaemonNotRunningError, OSError):
        return False


def parse_urls(text: str) -> tuple[str, ...]:
    """The daemon URLs of a comma-separated list (``RUNTIMED_URL``, ``--url``), trailing slashes dropped."""
    urls = tuple(dict.fromkeys(u.strip().rstrip("/") for u in text.split(",") if u.strip()))
    for url in urls:
        if not url.startswith(("http://", "https://")):
            raise DaemonNotRunningError(f"{url!r} is not a daemon URL: give http://HOST:PORT or https://HOST:PORT "
                                        "(several daemons of one deployment separated by commas)")
    if not urls:
        raise DaemonNotRunningError(f"no daemon URL in {text!r}: give http://HOST:PORT (several separated by commas)")
    return urls


def endpoint_for(urls: str | Iterable[str], token: str) -> DaemonEndpoint:
    """An endpoint for daemon URLs (a comma-separated list or a sequence): the first that answers, else the
    first given (its caller then reports that it does not answer). One URL is used without a health check."""
    found = parse_urls(urls) if isinstance(urls, str) else tuple(u.rstrip("/") for u in urls)
    endpoint = DaemonEndpoint(found[0], token, alternates=found if len(found) > 1 else ())
    if len(found) > 1:
        return failover(endpoint, exclude=None) or endpoint
    return endpoint


def failover(endpoint: DaemonEndpoint, exclude: str | None = "current", timeout: float = 1.0) -> DaemonEndpoint | None:
    """The first daemon of ``endpoint.urls`` that answers, the current one last (``exclude="current"``: it just
    failed) or in order (``exclude=None``); None when none answers. Blocking (a health check per daemon)."""
    urls = endpoint.urls
    if exclude == "current":
        urls = (*urls[1:], urls[0])
    for url in urls:
        if _healthy(url, timeout):
            return endpoint if url == endpoint.url else endpoint.at(url)
    return None


class Failover:
    """A sync client's ``rediscover`` for an endpoint of several daemons: the next one that answers."""

    def __init__(self, endpoint: DaemonEndpoint) -> None:
        self.endpoint = endpoint

    async def __call__(self) -> tuple[str, str] | None:
        import asyncio

        found = await asyncio.to_thread(failover, self.endpoint)
        if found is None:
            return None
        self.endpoint = found
        return found.url, found.token


def find_daemon(home: Home | None = None) -> DaemonEndpoint | None:
    """The running daemon: ``RUNTIMED_URL``/``RUNTIMED_TOKEN`` if set (the first of its daemons that answers),
    else the home's ``daemon.json``."""
    home = home or Home.resolve()
    env_url = os.environ.get("RUNTIMED_URL")
    if env_url:
        token = os.environ.get("RUNTIMED_TOKEN") or home.read_token()
        if not token:
            raise DaemonNotRunningError(f"RUNTIMED_URL is {env_url} but no token: set RUNTIMED_TOKEN")
        return endpoint_for(env_url, token)
    info = home.read_daemon_info()
    # RUNTIMED_TOKEN wins over the home's token: a wrong one must fail loudly, not be replaced silently
    token = os.environ.get("RUNTIMED_TOKEN") or home.read_token()
    if info is None or token is None:
        return None
    pid = info.get("pid")
    if isinstance(pid, int) and not pid_alive(pid):
        return None
    if not _healthy(info["url"]):
        return None
    return DaemonEndpoint(info["url"], token, pid)


def _tail(path: Path, offset: int, lines: int = 3) -> str:
    """The last lines a failed daemon wrote to stderr after ``offset`` (the cause, shown to the user)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            text = handle.read()[-4000:].decode(errors="replace")
    except OSError:
        return ""
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:] if line.strip())


def start_daemon(home: Home, *, timeout: float = 30.0, extra_args: list[str] | None = None) -> DaemonEndpoint:
    """Start a daemon for ``home`` in the background (port: the default, else any free one) and wait for it."""
    home.ensure()
    log_path = home.log_file
    stderr_path = home.path / "daemon.stderr"
    import subprocess

    with open(stderr_path, "ab") as err:
        start_offset = err.tell()
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtimed.cli.daemon_main", "--home", str(home.path), "--port", "auto", *(extra_args or [])],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True,
        )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = find_daemon(home)
        if found is not None:
            return found
        code = proc.poll()
        if code is not None and code != ExitCode.REFUSED:  # another client's daemon won the lock: wait for it
            cause = _tail(stderr_path, start_offset)
            raise DaemonStartError(
                f"the daemon for {home.path} exited with code {code} while starting"
                + (f": {cause}" if cause else "") + f" (full output: {stderr_path} and {log_path})"
            )
        time.sleep(0.05)
    raise DaemonStartError(f"the daemon for {home.path} did not become ready within {timeout:.0f} s; see {log_path}")


def ensure_daemon(home: Home | None = None, *, start: bool = True, timeout: float = 30.0) -> DaemonEndpoint:
    """The daemon for this home, starting the embedded default when there is none (and ``start``)."""
    home = home or Home.resolve()
    found = find_daemon(home)
    if found is not None:
        return found
    if not start:
        raise DaemonNotRunningError(f"no daemon is running for {home.path}; start one with `runt daemon start`")
    return start_daemon(home, timeout=timeout)
