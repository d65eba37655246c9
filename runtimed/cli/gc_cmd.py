"""``runt gc``: remove the notebooks of old ``runt run`` runs.

Every ``runt run`` leaves its run as a live notebook in the daemon (so it can be watched and
inspected afterwards); on a machine that runs notebooks on a schedule they pile up. A run
notebook is recognised by its log: ``runt run`` imports it with the actor id ``runt-run``,
so its first event (``notebookCreated``) names that actor. Notebooks imported or created any
other way are never touched, nor is one whose runtime is still active (``--keep-runtime``).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

import click

from runtimed.cli.common import daemon_http, note, print_json, table, when
from runtimed.cli.errors import NOT_FOUND, exit_code_for, report
from runtimed.cli.notebooks import remove_notebooks
from runtimed.errors import NotFoundError, RuntimedError

RUN_IMPORT_ACTOR = "runt-run"
"""The actor id ``runt run`` imports its notebooks with (``runtimed/automation/run.py``)."""

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """``30m``, ``12h``, ``7d``, ``2w`` or a sum like ``1d12h`` -> a timedelta (bounded: at most 100 years)."""
    value = text.strip().lower()
    if not value or _PART.sub("", value) != "":
        raise click.BadParameter(f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
                                 "e.g. 7d, 12h, 30m or 1d12h")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(value))
    if seconds > MAX_DURATION.total_seconds():
        raise click.BadParameter(f"{text!r} is longer than 100 years; use a shorter duration")
    return timedelta(seconds=seconds)


class Duration(click.ParamType):
    name = "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> timedelta:
        return value if isinstance(value, timedelta) else parse_duration(str(value))


def _updated(item: dict[str, Any]) -> datetime | None:
    try:
        return datetime.fromisoformat(str(item.get("updated_at")).replace("Z", "+00:00"))
    except ValueError:
        return None


def _is_run_notebook(http: Any, notebook_id: str) -> bool:
    """Whether ``runt run`` created this notebook: its first event's actor (one small request)."""
    try:
        body = http.get(f"/api/notebooks/{notebook_id}/events", params={"since": 0, "limit": 1})
    except NotFoundError:  # deleted meanwhile
        return False
    events = body.get("events") or []
    return bool(events) and (events[0].get("actor") or {}).get("id") == RUN_IMPORT_ACTOR


def select_old_runs(http: Any, older_than: timedelta) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The run notebooks last updated before now - ``older_than``: (removable, kept for an active runtime)."""
    cutoff = datetime.now(UTC) - older_than
    removable, active = [], []
    for item in http.get("/api/notebooks"):
        updated = _updated(item)
        if updated is None or updated >= cutoff or not _is_run_notebook(http, item["id"]):
            continue
        (active if item.get("runtime") else removable).append(item)
    return removable, active


def _still_idle(http: Any, candidates: list[dict[str, Any]]) -> list[str]:
    """Of ``candidates``, the ids that are still unchanged and without a runtime just before removing.

    The listing is read again so that a run notebook that got a runtime (or a change) since it
    was selected is left alone."""
    fresh = {item["id"]: item for item in http.get("/api/notebooks")}
    return [c["id"] for c in candidates
            if c["id"] in fresh and not fresh[c["id"]].get("runtime")
            and fresh[c["id"]].get("updated_at") == c.get("updated_at")]


@click.command()
@click.option("--older-than", "older_than", type=Duration(), required=True, metavar="DURATION",
              help="Remove run notebooks not updated for this long: 30m, 12h, 7d, 2w, 1d12h.")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(older_than: timedelta, dry_run: bool, as_json: bool) -> None:
    """Remove the notebooks of `runt run` runs not updated for DURATION.

    Only notebooks created by `runt run` are removed, never one whose runtime is still active
    (a run with --keep-runtime): stop it first with `runt stop`.

    \b
    Example:
      runt gc --older-than 7d --dry-run
      runt gc --older-than 12h
    """
    with daemon_http() as http:
        removable, active = select_old_runs(http, older_than)
        if dry_run:
            removed: list[str] = []
            failures: list[tuple[str, RuntimedError]] = []
        else:
            ids = _still_idle(http, removable) if removable else []
            removed, failures = remove_notebooks(http, ids)
    kept = [item["id"] for item in active]
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
    # a notebook that vanished meanwhile is already gone: that is what gc wanted
    errors = [exc for _, exc in failures if exit_code_for(exc) != NOT_FOUND]
    for exc in errors:
        report(exc)
    if errors:
        raise click.exceptions.Exit(exit_code_for(errors[0]))
