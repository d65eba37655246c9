"""``runt deps`` (a notebook's dependencies) and ``runt env`` (the daemon's uv environments)."""

from __future__ import annotations

import time
from typing import Any

import click

from runtimed.cli.common import daemon_http, note, print_json, table, when
from runtimed.client.actors import terminal_person
from runtimed.schema.dependencies import add_dependency, remove_dependency


def _env(http: Any, notebook_id: str) -> dict[str, Any]:
    result: dict[str, Any] = http.get(f"/api/notebooks/{notebook_id}/environment")
    return result


def _metadata(http: Any, notebook_id: str) -> dict[str, Any]:
    view = http.get(f"/api/notebooks/{notebook_id}")
    metadata = view.get("metadata")
    return metadata if isinstance(metadata, dict) else {}


def _put(http: Any, notebook_id: str, settings: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = http.put(
        f"/api/notebooks/{notebook_id}/dependencies",
        json={"dependencies": settings["dependencies"], "requires_python": settings.get("requires_python"),
              "index_url": settings.get("index_url"), "actor": terminal_person()})
    return result


def _show(env: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print_json(env)
        return
    request = env.get("request")
    if not request:
        click.echo("no dependencies: the notebook runs in the daemon's own environment")
        return
    for dep in request["dependencies"]:
        click.echo(dep)
    extra = [f"from {request['source']}", f"hash {request['hash']}"]
    if request.get("requires_python"):
        extra.append(f"python {request['requires_python']}")
    state = "approved" if env.get("trusted") else "NOT approved (`runt deps approve ID`)"
    built = "built" if env.get("built") else "not built yet"
    note(f"{', '.join(extra)}; {state}; {built}")
    status = env.get("status") or {}
    if status.get("state") == "failed":
        note(f"last build failed: {status.get('detail')}")


@click.group()
def deps() -> None:
    """A notebook's Python dependencies (installed into a uv environment its kernel runs in).

    \b
    Example:
      runt deps add nb-01J… 'pandas>=2' tabulate
      runt deps list nb-01J…
      runt deps rm nb-01J… tabulate
      runt deps sync nb-01J…
    """


@deps.command("list")
@click.argument("notebook_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(notebook_id: str, as_json: bool) -> None:
    """List the dependencies, where they come from, and whether they are approved and built."""
    with daemon_http() as http:
        _show(_env(http, notebook_id), as_json)


@deps.command("add")
@click.argument("notebook_id", metavar="ID")
@click.argument("requirements", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def add(notebook_id: str, requirements: tuple[str, ...], as_json: bool) -> None:
    """Add PEP 508 requirements (as the person at this terminal: they count as approved)."""
    with daemon_http() as http:
        metadata = _metadata(http, notebook_id)
        for requirement in requirements:
            metadata = {**metadata, "runtimed": add_dependency(metadata, requirement)}
        _show(_put(http, notebook_id, metadata["runtimed"]), as_json)


@deps.command("rm")
@click.argument("notebook_id", metavar="ID")
@click.argument("packages", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def rm(notebook_id: str, packages: tuple[str, ...], as_json: bool) -> None:
    """Remove dependencies by package name."""
    with daemon_http() as http:
        metadata = _metadata(http, notebook_id)
        missing = []
        for package in packages:
            settings, removed = remove_dependency(metadata, package)
            metadata = {**metadata, "runtimed": settings}
            if not removed:
                missing.append(package)
        env = _put(http, notebook_id, metadata["runtimed"])
        _show(env, as_json)
    if missing:
        note(f"not a dependency: {', '.join(missing)}")


@deps.command("approve")
@click.argument("notebook_id", metavar="ID")
def approve(notebook_id: str) -> None:
    """Approve the notebook's current dependency list for installing (e.g. after importing a file)."""
    with daemon_http() as http:
        env = http.post(f"/api/notebooks/{notebook_id}/environment/approve", json={"actor": terminal_person()})
        _show(env, False)


@deps.command("sync")
@click.argument("notebook_id", metavar="ID")
@click.option("--timeout", type=float, default=600.0, show_default=True, help="Seconds to wait for the build.")
def sync(notebook_id: str, timeout: float) -> None:
    """Build (or reuse) the notebook's environment now."""
    started = time.monotonic()
    with daemon_http(timeout=timeout) as http:
        env = http.post(f"/api/notebooks/{notebook_id}/environment/sync", timeout=timeout)
    _show(env, False)
    note(f"ready in {time.monotonic() - started:.1f} s" + (f": {env['path']}" if env.get("path") else ""))


@click.group()
def env() -> None:
    """The daemon's uv-managed notebook environments ($RUNTIMED_HOME/envs).

    \b
    Example:
      runt env list
      runt env gc --days 7
    """


@env.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def env_list(as_json: bool) -> None:
    """List built environments: hash, dependencies, last use."""
    with daemon_http() as http:
        body = http.get("/api/environments")
    if as_json:
        print_json(body)
        return
    items = body["environments"]
    if not items:
        click.echo("no environments")
        return
    rows = [[i["hash"], ", ".join(i.get("dependencies") or []), i.get("requires_python") or "",
             when(i.get("last_used")), "yes" if i.get("pooled") else ""] for i in items]
    table(["HASH", "DEPENDENCIES", "PYTHON", "LAST USED", "POOLED"], rows, title=body["root"])


@env.command("gc")
@click.option("--days", type=float, default=30.0, show_default=True, help="Remove environments unused this long.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
def env_gc(days: float, dry_run: bool) -> None:
    """Remove environments not used for a while (the daemon also does so by itself, RUNTIMED_ENV_MAX_AGE_DAYS)."""
    with daemon_http() as http:
        body = http.post("/api/environments/gc", json={"max_age_days": days, "dry_run": dry_run})
    removed = body["removed"]
    verb = "would remove" if dry_run else "removed"
    click.echo(f"{verb} {len(removed)} environment{'s' if len(removed) != 1 else ''}"
               + (f": {', '.join(removed)}" if removed else ""))


__all__ = ["deps", "env"]
