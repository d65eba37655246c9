"""``runt gc``: remove the notebooks of old ``runt run`` runs.

Every ``runt run`` leaves its run as a live notebook in the daemon (so it can be watched and
inspected afterwards); on a machine that runs notebooks on a schedule they pile up. A run
notebook is recognised by its log: ``runt run`` imports it with the actor id ``runt-run``,
so its first event (``notebookCreated``) names that actor. Notebooks imported or created any
other way are never touched, nor is one whose runtime is still active (``--keep-runtime``).
"""

from __future__ import annotations

from typing import Any

import click

from runtimed.cli.common import daemon_http, note, print_json, table, when
from runtimed.durations import parse_duration
from runtimed.errors import RuntimedError


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            parse_duration(str(value))  # checked here, so that a typo is a usage error (exit 2)
        except RuntimedError as exc:
            raise click.BadParameter(exc.message) from None
        return str(value)


@click.command()
@click.option("--older-than", "older_than", type=Duration(), required=True, metavar="DURATION",
              help="Remove run notebooks not updated for this long: 30m, 12h, 7d, 2w, 1d12h.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(older_than: str, dry_run: bool, as_json: bool) -> None:
    """Remove the notebooks of `runt run` runs not updated for DURATION.

    Only notebooks created by `runt run` are removed, never one whose runtime is still active
    (a run with --keep-runtime): stop it first with `runt stop`.

    \b
    Example:
      runt gc --older-than 7d --dry-run
      runt gc --older-than 12h
    """
    with daemon_http() as http:  # the daemon selects and removes (the same code as its retention schedule)
        result = http.post("/api/gc", json={"older_than": older_than, "dry_run": dry_run})
    removable: list[dict[str, Any]] = result["old"]
    removed: list[str] = result["removed"]
    kept: list[str] = result["kept_active"]
    if as_json:
        key = "would_remove" if dry_run else "removed"
        print_json({key: [item["id"] for item in removable] if dry_run else removed, "kept_active": kept})
    elif dry_run:
        if removable:
            table(["ID", "TITLE", "UPDATED"], [[i["id"], i.get("title") or "", when(i.get("updated_at"))]
                                               for i in removable])
        note(f"would remove {len(removable)} run notebook{'s' if len(removable) != 1 else ''}; "
             "run again without --dry-run to remove them")
    else:
        for notebook_id in removed:
            click.echo(f"removed {notebook_id}")
        note(f"removed {len(removed)} run notebook{'s' if len(removed) != 1 else ''}")
    if kept:
        note(f"kept {len(kept)} with an active runtime ({', '.join(kept)}); stop it with `runt stop` to collect it")
