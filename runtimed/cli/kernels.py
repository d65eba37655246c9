"""Runtimes and kernels: ``runt ps``, ``start``, ``stop``/``kill``, ``rm``, ``interrupt``, ``exec``."""

from __future__ import annotations

import os
import sys
import uuid
from typing import Any

import click

from runtimed.cli.common import (
    START_HINT,
    daemon_http,
    find_endpoint,
    home,
    note,
    print_json,
    table,
    when,
)
from runtimed.cli.errors import DAEMON_NOT_RUNNING, FAILURE, NOT_FOUND, REFUSED, CliError
from runtimed.errors import NotFoundError

DEFAULT_KERNEL = "python3"


# -- ps ------------------------------------------------------------------------------------------


def _ports(k: Any) -> str:
    if not k.ports:
        return ""
    where = "ipc" if k.transport == "ipc" else f"{k.transport}://{k.ip}"
    from runtimed.cli.jupyter_kernels import PORT_NAMES

    return f"{where} " + ",".join(str(k.ports[n]) for n in PORT_NAMES if n in k.ports)


def collect(timeout: float = 1.0) -> dict[str, Any]:
    """Everything `runt ps` shows: the daemon's runtimes (managed and external) and the kernels on disk."""
    from runtimed.cli import jupyter_kernels

    endpoint = find_endpoint()
    runtimes: list[dict[str, Any]] = []
    if endpoint is not None:
        from runtimed.client.http import DaemonHTTP

        http = DaemonHTTP(endpoint, timeout=10)
        try:
            for r in http.get("/api/runtimes"):
                runtimes.append({**r, "type": "managed"})
            managed_ids = {r["runtime_id"] for r in runtimes}
            for nb in http.get("/api/notebooks"):
                session = nb.get("runtime")
                if session and session.get("runtime_id") not in managed_ids:
                    runtimes.append({
                        "type": "external", "runtime_id": session.get("runtime_id"),
                        "session_id": session.get("session_id"), "notebook_id": nb["id"],
                        "kernel_name": session.get("kernel_name"), "language": session.get("language"),
                        "status": session.get("status"), "pid": None, "host": session.get("host"),
                        "started_at": session.get("started_at"), "connection_file": None,
                    })
        finally:
            http.close()
    kernels = jupyter_kernels.discover(timeout)
    by_file = {os.path.realpath(k.connection_file): k for k in kernels}
    for r in runtimes:
        k = by_file.pop(os.path.realpath(r["connection_file"]), None) if r.get("connection_file") else None
        r["ports"] = _ports(k) if k is not None else ""
        r["heartbeat"] = k.status if k is not None else None
    standalone = []
    for k in by_file.values():
        d = k.to_dict()
        pooled = endpoint is not None and endpoint.pid is not None and k.parent_pid == endpoint.pid
        d["type"] = "pooled" if pooled else "standalone"
        d["started_at"] = k.mtime
        d["ports_text"] = _ports(k)
        standalone.append(d)
    return {
        "daemon": {"running": endpoint is not None, "url": endpoint.url if endpoint else None,
                   "pid": endpoint.pid if endpoint else None, "home": str(home().path)},
        "runtimes": runtimes,
        "kernels": standalone,
    }


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("-v", "--verbose", is_flag=True, help="Also show ports, connection files and pooled kernels.")
@click.option("--timeout", default=1.0, show_default=True, help="Heartbeat timeout per kernel, in seconds.")
def ps(as_json: bool, verbose: bool, timeout: float) -> None:
    """List the daemon's runtimes and the standalone Jupyter kernels of this machine.

    Standalone kernels are found through the connection files (kernel-*.json) in the Jupyter
    runtime directory and probed with a heartbeat: `alive` or `unresponsive` (a stale file,
    which `runt rm ID` removes). Works without a daemon (showing standalone kernels only).

    \b
    Example:
      runt ps
      runt ps -v --json
    """
    info = collect(timeout)
    if as_json:
        print_json(info)
        return
    if not info["daemon"]["running"]:
        note(f"no daemon is running for {info['daemon']['home']} ({START_HINT}); showing standalone kernels only")
    kernels = [k for k in info["kernels"] if verbose or k["type"] != "pooled"]
    rows = []
    for r in info["runtimes"]:
        row = [r["runtime_id"], r["type"], r.get("kernel_name"), r.get("language"), r.get("status"),
               r.get("notebook_id"), r.get("pid"), when(r.get("started_at"), short=True)]
        if verbose:
            row += [r.get("ports"), r.get("connection_file") or (f"host {r['host']}" if r.get("host") else "")]
        rows.append(row)
    for k in kernels:
        status = k["status"]
        colour = "green" if status == "alive" else "red"
        row = [k["id"], k["type"], k["kernel_name"], k["language"], f"[{colour}]{status}[/]", "", k["pid"],
               when(k["started_at"], short=True)]
        if verbose:
            row += [k["ports_text"], k["connection_file"]]
        rows.append(row)
    if not rows:
        click.echo("no runtimes or kernels")
    else:
        columns = ["ID", "TYPE", "KERNEL", "LANGUAGE", "STATUS", "NOTEBOOK", "PID", "STARTED"]
        if verbose:
            columns += ["PORTS (shell,iopub,stdin,control,hb)", "CONNECTION FILE"]
        table(columns, rows)
    hidden = len(info["kernels"]) - len(kernels)
    if hidden:
        note(f"(+{hidden} prewarmed kernel{'s' if hidden > 1 else ''} in the daemon's pool; -v shows them)")


# -- start / stop / interrupt --------------------------------------------------------------------


def kernel_spec(http: Any, name: str) -> dict[str, Any]:
    specs = http.get("/api/kernelspecs")
    if name not in specs:
        available = ", ".join(sorted(specs)) or "none"
        raise CliError(f"no kernel named {name!r}; available kernels: {available}", NOT_FOUND,
                       hint="install one with e.g. `python -m ipykernel install --user --name NAME`")
    return {"name": name, "display_name": specs[name].get("display_name", name),
            "language": specs[name].get("language", "")}


@click.command()
@click.argument("kernel", default=DEFAULT_KERNEL, metavar="[KERNEL]")
@click.option("--notebook", "notebook_id", metavar="ID", help="Start the runtime of this existing notebook instead.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole runtime description as JSON.")
def start(kernel: str, notebook_id: str | None, as_json: bool) -> None:
    """Start a runtime with KERNEL (default python3) and print its id.

    The runtime belongs to a new notebook `kernel-<uuid>`; run code in it with `runt exec ID`.

    \b
    Example:
      runt start python3
      rt=$(runt start) && runt exec $rt 'print(42)'
    """
    with daemon_http(timeout=120) as http:
        if notebook_id is None:
            spec = kernel_spec(http, kernel)
            notebook_id = f"kernel-{uuid.uuid4()}"
            http.post("/api/notebooks", json={"id": notebook_id, "title": f"{kernel} runtime", "kernelspec": spec})
        else:
            try:
                http.get(f"/api/notebooks/{notebook_id}")
            except NotFoundError:
                raise CliError(f"no notebook with id {notebook_id!r}", NOT_FOUND,
                               hint="list them with `runt notebooks`") from None
        runtime = http.post(f"/api/notebooks/{notebook_id}/runtime")
    if as_json:
        print_json(runtime)
        return
    click.echo(runtime["runtime_id"])
    note(f"started {runtime.get('kernel_name')} runtime {runtime['runtime_id']} (pid {runtime.get('pid')}) "
         f"in notebook {notebook_id}")


def runtimes(http: Any) -> list[dict[str, Any]]:
    return list(http.get("/api/runtimes"))


def resolve_runtime(http: Any, ident: str) -> dict[str, Any]:
    """A managed runtime by id, by its notebook's id, or by a unique prefix of its id."""
    items = runtimes(http)
    for r in items:
        if ident == r["runtime_id"]:
            return r
    for r in items:
        if ident == r.get("notebook_id"):
            return r
    matches = [r for r in items if r["runtime_id"].startswith(ident)]
    if len(matches) == 1:
        return matches[0]
    if len(matches) > 1:
        raise CliError(f"{ident!r} matches several runtimes: {', '.join(r['runtime_id'] for r in matches)}", FAILURE)
    raise not_a_runtime(ident)


def not_a_runtime(ident: str) -> CliError:
    from runtimed.cli import jupyter_kernels

    for k in jupyter_kernels.list_connection_files():
        if ident in (k.id, f"kernel-{k.id}"):
            return CliError(f"{ident!r} is a standalone Jupyter kernel, not a runtime of the daemon", NOT_FOUND,
                            hint="stop it from the program that started it; `runt rm ID` removes a stale one")
    return CliError(f"no runtime {ident!r}", NOT_FOUND, hint="list them with `runt ps`")


def _daemon_or_exit(what: str) -> None:
    if find_endpoint() is None:
        raise CliError(f"no daemon is running for {home().path}, so there is no runtime to {what}",
                       DAEMON_NOT_RUNNING, hint=START_HINT)


@click.command()
@click.argument("runtime_id", required=False, metavar="[ID]")
@click.option("--all", "all_", is_flag=True, help="Stop every runtime of the daemon.")
def stop(runtime_id: str | None, all_: bool) -> None:
    """Stop a runtime of the daemon (alias: `runt kill`), or all of them with --all.

    ID is a runtime id (or a unique prefix of one, or the id of its notebook).

    \b
    Example:
      runt stop rt-01J…
      runt kill --all
    """
    if bool(runtime_id) == all_:
        raise click.UsageError("give a runtime ID or --all (not both)")
    if all_ and find_endpoint() is None:
        note(f"no daemon is running for {home().path}; nothing to stop")
        return
    _daemon_or_exit("stop")
    with daemon_http(start=False, timeout=60) as http:
        targets = runtimes(http) if all_ else [resolve_runtime(http, runtime_id or "")]
        for r in targets:
            try:
                http.delete(f"/api/runtimes/{r['runtime_id']}")
            except NotFoundError:
                if not all_:
                    raise
                continue
            click.echo(f"stopped {r['runtime_id']}")
    if all_ and not targets:
        note("no runtimes to stop")


@click.command()
@click.argument("runtime_id", metavar="ID")
def interrupt(runtime_id: str) -> None:
    """Interrupt the code a runtime is running (like Ctrl-C in a notebook).

    \b
    Example:
      runt interrupt rt-01J…
    """
    _daemon_or_exit("interrupt")
    with daemon_http(start=False, timeout=30) as http:
        r = resolve_runtime(http, runtime_id)
        http.post(f"/api/runtimes/{r['runtime_id']}/interrupt")
    click.echo(f"interrupted {r['runtime_id']}")


@click.command()
@click.argument("kernel_id", required=False, metavar="[ID]")
@click.option("--stale", is_flag=True, help="Remove every unresponsive connection file.")
@click.option("--force", is_flag=True, help="Remove the file even when the kernel answers its heartbeat.")
@click.option("--timeout", default=1.0, show_default=True, help="Heartbeat timeout in seconds.")
def rm(kernel_id: str | None, stale: bool, force: bool, timeout: float) -> None:
    """Remove the connection file of a stale (unresponsive) standalone kernel.

    ID is the id shown by `runt ps` (the part of kernel-<id>.json), the file name or its path.
    A kernel that still answers is refused (exit 5) unless --force.

    \b
    Example:
      runt rm 3c253ca20e1e
      runt rm --stale
    """
    from runtimed.cli import jupyter_kernels

    if bool(kernel_id) == stale:
        raise click.UsageError("give a kernel ID or --stale (not both)")
    kernels = jupyter_kernels.list_connection_files()
    if stale:
        jupyter_kernels.probe(kernels, timeout)
        targets = [k for k in kernels if k.status != "alive"]
        for k in targets:
            jupyter_kernels.remove(k)
            click.echo(f"removed {k.connection_file}")
        if not targets:
            note("no stale connection files")
        return
    assert kernel_id is not None
    wanted = os.path.realpath(kernel_id) if os.sep in kernel_id else None
    match = [k for k in kernels if kernel_id in (k.id, f"kernel-{k.id}", f"kernel-{k.id}.json")
             or (wanted is not None and os.path.realpath(k.connection_file) == wanted)]
    if not match:
        raise CliError(f"no kernel connection file {kernel_id!r} in {jupyter_kernels.runtime_dir()}", NOT_FOUND,
                       hint="list kernels with `runt ps`")
    kernel = match[0]
    jupyter_kernels.probe([kernel], timeout)
    if kernel.status == "alive" and not force:
        raise CliError(f"kernel {kernel.id} is alive (it answers its heartbeat); not removing its connection file",
                       REFUSED, hint="stop the kernel first, or pass --force")
    jupyter_kernels.remove(kernel)
    click.echo(f"removed {kernel.connection_file}")


# -- exec ----------------------------------------------------------------------------------------


def resolve_notebook_for_exec(http: Any, ident: str) -> str:
    """The notebook to run code in: a runtime's notebook, or a notebook id."""
    for r in runtimes(http):
        if ident in (r["runtime_id"], r.get("notebook_id")):
            return str(r["notebook_id"])
    matches = [r for r in runtimes(http) if r["runtime_id"].startswith(ident)]
    if len(matches) == 1:
        return str(matches[0]["notebook_id"])
    try:
        http.get(f"/api/notebooks/{ident}")
        return ident
    except NotFoundError:
        pass
    except Exception as exc:  # an invalid id: not a notebook either
        if getattr(exc, "code", "") != "invalid_notebook_id":
            raise
    raise not_a_runtime(ident)


@click.command("exec")
@click.argument("runtime_id", metavar="ID")
@click.argument("code", required=False)
@click.option("--timeout", type=float, default=None, help="Interrupt and fail after this many seconds.")
def exec_(runtime_id: str, code: str | None, timeout: float | None) -> None:
    """Run CODE (or stdin when CODE is omitted) in a runtime and print what it prints.

    ID is a runtime id (see `runt ps`) or a notebook id. The code becomes a cell of that
    notebook. stdout and stderr stream as they arrive; an exception prints its traceback on
    stderr and exits 1. Ctrl-C interrupts the code.

    \b
    Example:
      runt exec rt-01J… 'print(1 + 1)'
      echo 'import sys; print(sys.version)' | runt exec rt-01J…
    """
    from runtimed.cli.execution import OutputPrinter, run_streaming, terminal_input
    from runtimed.client.session import Session

    if code is None:
        if sys.stdin.isatty():
            note("reading code from stdin; end it with Ctrl-D")
        code = sys.stdin.read()
    with daemon_http() as http:
        notebook_id = resolve_notebook_for_exec(http, runtime_id)
        endpoint = http.endpoint
    session = Session(notebook_id, endpoint=endpoint, actor=_actor())
    try:
        session.connect()
        result = run_streaming(session, code, OutputPrinter(), timeout=timeout, stdin=terminal_input,
                               on_interrupt=lambda: note("interrupting…"))
    finally:
        session.close()
    if not result.ok:
        if result.status == "cancelled" and result.error is None:
            click.echo("the execution was cancelled", err=True)
        sys.exit(FAILURE)


def _actor() -> dict[str, Any]:
    user = os.environ.get("USER") or "user"
    return {"id": f"runt-{user}-{uuid.uuid4().hex[:8]}", "kind": "human", "name": f"{user} (runt)"}
