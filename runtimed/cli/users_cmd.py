"""``runt users`` and ``runt share``: people, their roles, and read-only links (the daemon owner's commands)."""

from __future__ import annotations

import click

from runtimed.cli.common import daemon_http, note, print_json, table
from runtimed.cli.errors import USAGE, CliError

ROLES = ("viewer", "runner", "editor", "owner")


@click.group()
def users() -> None:
    """Add, remove and list the people (and agents, runtimes) who may use this daemon.

    The daemon's first token (in $RUNTIMED_HOME/token) is the owner's. Every other token belongs
    to a user with a role on every notebook (--role) or on single notebooks (--notebook ID=ROLE).
    Roles: viewer (read), runner (run, interrupt), editor (change), owner (everything).

    \b
    Example:
      runt users add ada --role editor
      runt users list
      runt users rm ada
    """


def _grants(values: tuple[str, ...]) -> dict[str, str]:
    grants = {}
    for value in values:
        notebook_id, _, role = value.partition("=")
        role = role or "editor"
        if not notebook_id or role not in ROLES:
            raise CliError(f"--notebook {value!r}: use ID or ID=ROLE with a role of {', '.join(ROLES)}", USAGE)
        grants[notebook_id] = role
    return grants


@users.command("add")
@click.argument("name")
@click.option("--role", type=click.Choice(ROLES), help="Role on every notebook.")
@click.option("--notebook", "notebooks", multiple=True, metavar="ID[=ROLE]",
              help="A role on one notebook (default editor); repeat for several.")
@click.option("--kind", type=click.Choice(["human", "agent", "runtime", "automation"]), default="human",
              show_default=True, help="What kind of actor this token writes as.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def add(name: str, role: str | None, notebooks: tuple[str, ...], kind: str, as_json: bool) -> None:
    """Add NAME and print its token (shown once; give it to that person or agent).

    \b
    Example:
      runt users add ada --role editor
      runt users add ci-bot --kind agent --notebook nb-report=runner
    """
    if role is None and not notebooks:
        raise CliError("give --role (every notebook) or --notebook ID[=ROLE] (single notebooks)", USAGE)
    with daemon_http() as http:
        person = http.post("/api/people", json={"name": name, "kind": kind, "role": role,
                                                "notebooks": _grants(notebooks)})
    if as_json:
        print_json(person)
        return
    click.echo(person["token"])
    note(f"added {name} ({kind}); the token above is shown only now: clients use it as RUNTIMED_TOKEN")


@users.command("rm")
@click.argument("names", nargs=-1, required=True)
def rm(names: tuple[str, ...]) -> None:
    """Remove people or share links (their tokens stop working at once).

    \b
    Example:
      runt users rm ada share-1a2b3c4d
    """
    with daemon_http() as http:
        for name in names:
            http.delete(f"/api/people/{name}")
            click.echo(f"removed {name}")


@users.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def list_(as_json: bool) -> None:
    """List people and share links (never their tokens).

    \b
    Example:
      runt users list --json
    """
    with daemon_http() as http:
        people = http.get("/api/people")
    if as_json:
        print_json(people)
        return
    rows = [[p["name"], p["kind"], p.get("role") or "", ", ".join(f"{k}={v}" for k, v in p["notebooks"].items()),
             p.get("share_of") or "", (p.get("created_at") or "")[:19]] for p in people]
    table(["NAME", "KIND", "ROLE", "NOTEBOOKS", "SHARE OF", "CREATED"], rows)


@click.command()
@click.argument("notebook_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def share(notebook_id: str, as_json: bool) -> None:
    """Print a read-only link to notebook ID (revoke it with `runt users rm NAME`).

    \b
    Example:
      runt share nb-01J…
    """
    with daemon_http() as http:
        link = http.post(f"/api/notebooks/{notebook_id}/shares")
    if as_json:
        print_json(link)
        return
    click.echo(link["url"])
    note(f"read-only link {link['name']}; revoke it with `runt users rm {link['name']}`")
