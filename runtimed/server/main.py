"""The ``runtimed`` daemon process: one per home, found by clients through ``daemon.json``."""

from __future__ import annotations

import argparse
import asyncio
import errno
import fcntl
import gc
import logging
import os
import signal
import socket
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING

from runtimed import __version__
from runtimed.errors import ExitCode
from runtimed.home import DEFAULT_HOST, DEFAULT_PORT, Home
from runtimed.server.header_timeout import DEFAULT_HEADER_TIMEOUT

if TYPE_CHECKING:
    from runtimed.server.daemon import Daemon

EXIT_ALREADY_RUNNING = ExitCode.REFUSED
EXIT_PORT_IN_USE = ExitCode.START_FAILED

log = logging.getLogger("runtimed")


class AlreadyRunning(Exception):
    pass


def acquire_lock(home: Home) -> IO[str]:
    """Hold an exclusive lock on the home for the daemon's lifetime (one daemon per home)."""
    home.ensure()
    handle = open(home.lock_file, "a+")  # noqa: SIM115 - held open for the process lifetime
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        info = home.read_daemon_info() or {}
        handle.close()
        raise AlreadyRunning(
            f"a daemon is already running for {home.path} (pid {info.get('pid', '?')}, {info.get('url', '?')}); "
            "stop it with `runt daemon stop`"
        ) from None
    return handle


def bind(host: str, port: int | str) -> socket.socket:
    """Bind the listening socket; 'auto' tries the default port and falls back to any free one."""
    candidates = [DEFAULT_PORT, 0] if port == "auto" else [int(port)]
    last_error: OSError | None = None
    for candidate in candidates:
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # inherited by accepted sockets on Linux
        try:
            sock.bind((host, candidate))
        except OSError as exc:
            sock.close()
            last_error = exc
            if exc.errno == errno.EADDRINUSE and port == "auto":
                log.info("port %d is in use; falling back to a free port", candidate)
                continue
            raise
        sock.listen(512)
        sock.setblocking(False)
        return sock
    assert last_error is not None
    raise last_error


def setup_logging(home: Home, foreground: bool) -> None:
    handlers: list[logging.Handler] = [logging.FileHandler(home.log_file)]
    if foreground:
        handlers.append(logging.StreamHandler(sys.stderr))
    logging.basicConfig(level=os.environ.get("RUNTIMED_LOG_LEVEL", "INFO"), handlers=handlers,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", force=True)
    if logging.getLogger().level > logging.DEBUG:  # httpx logs each request at INFO: the runtimes' calls home
        logging.getLogger("httpx").setLevel(logging.WARNING)


def check_bind(args: argparse.Namespace) -> str | None:
    """Why this bind is refused, or None: beyond loopback, plain HTTP would carry the token in clear."""
    from runtimed.server.security import is_loopback

    if bool(args.tls_cert) != bool(args.tls_key):
        return "pass both --tls-cert and --tls-key (a certificate and its private key, PEM files)"
    if is_loopback(args.host) or args.tls_cert or args.insecure_bind:
        return None
    return (f"refusing to listen on {args.host} without TLS: anyone on the network could read the token; "
            "pass --tls-cert FILE --tls-key FILE, or --insecure-bind if the network is trusted (docs/security.md)")


Extension = Callable[["Daemon"], None]
"""Called with the daemon before it serves: how an entry point injects what the server may not import
(``runtimed/cli/daemon_main.py`` attaches the run jobs)."""


async def serve(args: argparse.Namespace, extensions: Sequence[Extension] = ()) -> int:
    import uvicorn
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    from runtimed.errors import RuntimedError
    from runtimed.server.app import create_app
    from runtimed.server.daemon import Daemon, Settings
    from runtimed.server.header_timeout import header_timeout_protocol
    from runtimed.server.security import SecurityPolicy, parse_origins

    refusal = check_bind(args)
    try:
        parse_origins(args.allowed_origins)
    except RuntimedError as exc:
        refusal = exc.message
    if refusal is not None:
        print(f"runtimed: {refusal}", file=sys.stderr)
        return ExitCode.USAGE
    Home.make_process_private()  # umask 077: every file the daemon creates in its home is private
    home = Home.resolve(args.home)
    lock = acquire_lock(home)
    setup_logging(home, args.foreground)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        msg = f"cannot listen on {args.host}:{args.port}: {exc.strerror}"
        if exc.errno == errno.EADDRINUSE:
            msg += "; pass --port N for another port, or --port auto to fall back to a free one"
        print(f"runtimed: {msg}", file=sys.stderr)
        log.error(msg)
        return EXIT_PORT_IN_USE
    host, port = sock.getsockname()[:2]
    settings = Settings(home=home, host=host, port=port, pool_size=args.pool_size,
                        preimport=args.preimport,
                        idle_timeout=args.idle_timeout, runtime_grace=args.runtime_grace,
                        slow_consumer_timeout=args.slow_consumer_timeout, store_url=args.store)
    try:
        daemon = Daemon(settings)
    except RuntimedError as exc:  # the store cannot be opened (a bad URL, PostgreSQL unreachable)
        print(f"runtimed: cannot open the store: {exc.message}", file=sys.stderr)
        log.error("cannot open the store: %s", exc.message)
        sock.close()
        return ExitCode.START_FAILED
    scheme = "https" if args.tls_cert else "http"
    daemon.url = f"{scheme}://{host}:{port}"
    rebuilt = daemon.store.migrate()  # before serving: every projection at the current version
    if rebuilt:
        log.info("rebuilt the projections of %d notebook(s) from their logs: %s", len(rebuilt), ", ".join(rebuilt))
    if not args.no_runtimes:
        from runtimed.server.runtimes import RuntimeManager

        daemon.runtimes = RuntimeManager(daemon)
    for extend in extensions:
        extend(daemon)
    app = create_app(daemon, SecurityPolicy.for_daemon(daemon, scheme=scheme, allowed_origins=args.allowed_origins,
                                                       max_body_bytes=args.max_body_bytes))
    # Headroom above the protocol's limit, so that the sync endpoint answers a too-large message with a
    # clear error and close code 4413; uvicorn's own cap (close 1009) stays as the hard backstop.
    # log_config=None: uvicorn's own messages (an exception in a request, a malformed request) go through the
    # daemon's handlers into daemon.log, not to a stderr nobody reads
    config = uvicorn.Config(app, log_level="warning", log_config=None,
                            ws_max_size=2 * daemon.limits.max_message_bytes,
                            ws_ping_interval=20.0, ws_ping_timeout=30.0, timeout_graceful_shutdown=5, lifespan="on",
                            ws_per_message_deflate=False,  # loopback: compression costs more than it saves
                            http=header_timeout_protocol(AutoHTTPProtocol, args.header_timeout),
                            ssl_certfile=args.tls_cert, ssl_keyfile=args.tls_key)
    server = uvicorn.Server(config)
    daemon.request_shutdown = lambda: setattr(server, "should_exit", True)

    async def announce() -> None:
        while not server.started:
            if server.should_exit:
                return
            await asyncio.sleep(0.01)
        home.write_daemon_info({
            "url": daemon.url, "pid": os.getpid(), "version": __version__,
            "started_at": datetime.now(UTC).isoformat(), "host": host, "port": port,
        })
        log.info("runtimed %s listening on %s (home %s)", __version__, daemon.url, home.path)
        # What exists now (modules, the app, the pool's machinery) lives as long as the daemon: out of the
        # collector's generations, a full collection during a run scans only what the runs made (it scanned
        # ~165k startup objects, 0.2-0.5 s of a 200-cell run's event loop; bench/bench_notebooks.py).
        gc.freeze()

    # uvicorn shuts down gracefully on SIGTERM and then re-raises the signal against the handler that was
    # installed before it started: make that a clean exit, so that the cleanup below (daemon.json) runs.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    announcer = asyncio.create_task(announce())
    try:
        await server.serve(sockets=[sock])
    finally:
        announcer.cancel()
        home.clear_daemon_info(os.getpid())
        log.info("runtimed stopped")
        lock.close()
    return 0


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


DEFAULT_PREIMPORT = ("numpy?", "pandas?", "matplotlib?", "matplotlib.pyplot?")
"""The scientific modules a pooled kernel imports before its first run, when they are installed in it."""


def preimport_setting(value: str | None) -> list[str]:
    """``--preimport``: 'auto' the installed scientific modules, 'none' (or empty) nothing, else the list given."""
    value = (value or "").strip()
    if value == "auto":
        return list(DEFAULT_PREIMPORT)
    if value in ("", "none"):
        return []
    from runtimed.runtime.pool import is_module_name

    names = [m.strip() for m in value.split(",") if m.strip()]
    bad = [n for n in names if not is_module_name(n)]
    if bad:
        raise argparse.ArgumentTypeError(
            f"not a module name: {', '.join(map(repr, bad))}; give 'auto', 'none' or a comma-separated list of "
            "dotted module names (a trailing '?' makes one optional), e.g. --preimport numpy,pandas?")
    return names


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="runtimed", description="The runtimed daemon (same as `runt daemon start --foreground`).")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"interface to bind (default {DEFAULT_HOST})")
    p.add_argument("--port", default=str(DEFAULT_PORT),
                   help=f"port (default {DEFAULT_PORT}); 0 for any free port; 'auto' for the default or a free one")
    p.add_argument("--home", default=None, help="home folder (default $RUNTIMED_HOME or a per-user data dir)")
    p.add_argument("--pool-size", type=int, default=int(os.environ.get("RUNTIMED_POOL_SIZE", "1")),
                   help="prewarmed kernels per kernelspec (default 1)")
    p.add_argument("--preimport", type=preimport_setting, default=os.environ.get("RUNTIMED_PREIMPORT", "auto"),
                   help="modules to import in pooled kernels: 'auto' (default: numpy, pandas, matplotlib and "
                        "matplotlib.pyplot, those installed in the kernel), 'none', or a comma-separated list")
    p.add_argument("--idle-timeout", type=float, default=float(os.environ.get("RUNTIMED_IDLE_TIMEOUT", "1800")),
                   help="seconds before an idle daemon-managed runtime stops (default 1800)")
    p.add_argument("--runtime-grace", type=float, default=float(os.environ.get("RUNTIMED_RUNTIME_GRACE", "5")),
                   help="seconds a runtime may be disconnected before its session is ended as lost (default 5)")
    p.add_argument("--slow-consumer-timeout", type=float,
                   default=float(os.environ.get("RUNTIMED_SLOW_CONSUMER_TIMEOUT", "30")),
                   help="seconds one send to a client may block before it is disconnected as slow (default 30)")
    p.add_argument("--store", default=os.environ.get("RUNTIMED_STORE_URL", "sqlite:"), metavar="URL",
                   help="where notebooks live: sqlite: (the home's files, default; $RUNTIMED_STORE_URL), or "
                        "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB shared by several daemons (docs/architecture.md)")
    p.add_argument("--no-runtimes", action="store_true", help="do not start daemon-managed runtimes")
    p.add_argument("--header-timeout", type=float,
                   default=float(os.environ.get("RUNTIMED_HEADER_TIMEOUT", str(DEFAULT_HEADER_TIMEOUT))),
                   help=f"seconds a request's headers may take to arrive (default {DEFAULT_HEADER_TIMEOUT:g})")
    p.add_argument("--max-body-bytes", type=int, default=None,
                   help="largest REST request body (default $RUNTIMED_MAX_BODY_BYTES, else one sync message's limit)")
    p.add_argument("--allowed-origins", default=os.environ.get("RUNTIMED_ALLOWED_ORIGINS", ""),
                   help="comma-separated extra origins (scheme://host[:port]) whose pages may use the daemon")
    p.add_argument("--tls-cert", default=None, help="PEM certificate: serve HTTPS (needed to bind beyond loopback)")
    p.add_argument("--tls-key", default=None, help="PEM private key of --tls-cert")
    p.add_argument("--insecure-bind", action="store_true",
                   help="allow plain HTTP on a non-loopback --host (the token crosses the network in clear)")
    p.add_argument("--foreground", action="store_true", help="also log to stderr")
    p.add_argument("--version", action="version", version=f"runtimed {__version__}")
    return p


OPEN_FILES_WANTED = 65536


def raise_open_files_limit() -> None:
    """Raise this process's soft limit of open files toward its hard limit (as servers do): each open notebook,
    connection and kernel holds files, and desktop defaults are low (1024 on Linux, 256 on macOS)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = OPEN_FILES_WANTED if hard == resource.RLIM_INFINITY else min(hard, OPEN_FILES_WANTED)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (ValueError, OSError) as exc:  # e.g. macOS caps it below the hard limit: keep the default
            log.warning("cannot raise the open files limit from %d to %d: %s", soft, wanted, exc)


def main(argv: list[str] | None = None, extensions: Sequence[Extension] = ()) -> int:
    """The bare daemon (``python -m runtimed.server.main``): no run jobs unless ``extensions`` attach them."""
    args = parser().parse_args(argv)
    if args.port != "auto":
        try:
            int(args.port)
        except ValueError:
            parser().error(f"--port must be a number or 'auto', got {args.port!r}")
    raise_open_files_limit()
    try:
        return asyncio.run(serve(args, extensions))
    except AlreadyRunning as exc:
        print(f"runtimed: {exc}", file=sys.stderr)
        return EXIT_ALREADY_RUNNING
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
