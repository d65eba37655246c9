"""``runt approvals`` and ``runt approve``: see and answer agents' requests to run tools."""

from __future__ import annotations

from typing import Any

import click

from runtimed.cli.common import daemon_http, note, print_json, table
from runtimed.cli.errors import NOT_FOUND, CliError
from runtimed.client.actors import terminal_person
from runtimed.errors import NotFoundError


def _arguments_text(item: dict[str, Any]) -> str:
    args = dict(item.get("arguments") or {})
    args.pop("preview", None)
    args.pop("notebook_id", None)
    text = " ".join(f"{k}={v!r}" for k, v in args.items()).replace("\n", "\\n")
    return text if len(text) <= 70 else text[:69] + "…"


def _fetch(http: Any, notebook_id: str, include_all: bool) -> dict[str, Any]:
    try:
        return http.get(f"/api/notebooks/{notebook_id}/approvals", params={"all": str(include_all).lower()})
    except NotFoundError as exc:
        raise CliError(exc.message, NOT_FOUND, hint="list notebooks with `runt notebooks`") from None


@click.command()
@click.argument("notebook_id", metavar="[ID]", required=False)
@click.option("--all", "include_all", is_flag=True, help="Include resolved requests.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def approvals(notebook_id: str | None, include_all: bool, as_json: bool) -> None:
    """List agents' requests waiting for approval (of one notebook, or of every notebook).

    \b
    Example:
      runt approvals
      runt approvals nb-01J… --all
    """
    with daemon_http() as http:
        ids = [notebook_id] if notebook_id else [nb["id"] for nb in http.get("/api/notebooks")]
        found = []
        for nb_id in ids:
            for item in _fetch(http, nb_id, include_all)["approvals"]:
                found.append({"notebook_id": nb_id, **item})
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no approvals waiting" if not include_all else "no approvals")
        return
    rows = [[i["notebook_id"], i["approval_id"], i["tool"], (i.get("requested_by") or {}).get("name"),
             i.get("cell_id") or "", i["status"], _arguments_text(i)] for i in found]
    table(["NOTEBOOK", "APPROVAL", "TOOL", "AGENT", "CELL", "STATUS", "ARGUMENTS"], rows)
    pending = [i for i in found if i["status"] == "pending"]
    if pending:
        first = pending[0]
        note(f"answer with `runt approve {first['notebook_id']} {first['approval_id']}` (--always, --deny); "
             "--json shows the code or diff")


@click.command()
@click.argument("notebook_id", metavar="ID")
@click.argument("approval_id", metavar="APPROVAL_ID")
@click.option("--always", "decision", flag_value="approved_always",
              help="Allow this tool for this agent on this notebook from now on.")
@click.option("--deny", "decision", flag_value="denied", help="Refuse: the agent's call does nothing.")
def approve(notebook_id: str, approval_id: str, decision: str | None) -> None:
    """Approve (or --deny, or approve --always) an agent's request, as the person at this terminal.

    \b
    Example:
      runt approve nb-01J… ap-01J…
      runt approve nb-01J… ap-01J… --always
      runt approve nb-01J… ap-01J… --deny
    """
    decision = decision or "approved"
    with daemon_http() as http:
        try:
            body = http.post(f"/api/notebooks/{notebook_id}/approvals/{approval_id}",
                             json={"decision": decision, "actor": terminal_person()})
        except NotFoundError as exc:
            raise CliError(exc.message, NOT_FOUND, hint=f"list them with `runt approvals {notebook_id}`") from None
    item = body["approval"]
    click.echo(f"{item['approval_id']}: {item['status']} ({item['tool']} for "
               f"{(item.get('requested_by') or {}).get('name')})")
