"""``runt gc``: remove the notebooks of old ``runt run`` runs.

Every ``runt run`` leaves its run as a live notebook in the daemon (so it can be watched and
inspected afterwards); on a machine that runs notebooks on a schedule they pile up. A run
notebook is recognised by its log: ``runt run`` imports it with the actor id ``runt-run``,
so its first event (``notebookCreated``) names that actor. Notebooks imported or created any
other way are never touched, nor is one whose runtime is still active (``--keep-runtime``).

``--artifacts`` also sweeps the daemon's artifact store (``POST /api/artifacts/gc``, the code of its
own schedule): artifacts no notebook's log references at any seq, written longer than ``--grace`` ago.
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
@click.option("--older-than", "older_than", type=Duration(), metavar="DURATION",
              help="Remove run notebooks not updated for this long: 30m, 12h, 7d, 2w, 1d12h.")
@click.option("--artifacts", is_flag=True,
              help="Also remove stored artifacts that no notebook references (at any point of its history).")
@click.option("--grace", type=Duration(), metavar="DURATION",
              help="With --artifacts: keep artifacts written less than this long ago (default: the daemon's "
                   "RUNTIMED_ARTIFACT_GC_GRACE, 1h).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def gc(older_than: str | None, artifacts: bool, grace: str | None, dry_run: bool, as_json: bool) -> None:
    """Remove the notebooks of `runt run` runs not updated for DURATION, and with --artifacts the
    artifacts no notebook references.

    Only notebooks created by `runt run` are removed, never one whose runtime is still active
    (a run with --keep-runtime): stop it first with `runt stop`.

    \b
    Example:
      runt gc --older-than 7d --dry-run
      runt gc --older-than 12h
      runt gc --artifacts
      runt gc --older-than 7d --artifacts --grace 0s
    """
    if older_than is None and not artifacts:
        raise click.UsageError("say what to collect: --older-than DURATION (run notebooks, e.g. --older-than 7d) "
                               "and/or --artifacts (unreferenced artifacts)")
    if grace is not None and not artifacts:
        raise click.UsageError("--grace applies to --artifacts only; add --artifacts")
    output: dict[str, Any] = {}
    if older_than is not None:
        output.update(_collect_runs(older_than, dry_run, as_json))
    if artifacts:  # after the runs: artifacts only they referenced go too (once past the grace)
        output["artifacts"] = _collect_artifacts(grace, dry_run, as_json)
    if as_json:
        print_json(output)


def _collect_runs(older_than: str, dry_run: bool, as_json: bool) -> dict[str, Any]:
    """Remove (or list) old run notebooks; returns the JSON report's part."""
    with daemon_http() as http:  # the daemon selects and removes (the same code as its retention schedule)
        result = http.post("/api/gc", json={"older_than": older_than, "dry_run": dry_run})
    removable: list[dict[str, Any]] = result["old"]
    removed: list[str] = result["removed"]
    kept: list[str] = result["kept_active"]
    if as_json:
        key = "would_remove" if dry_run else "removed"
        return {key: [item["id"] for item in removable] if dry_run else removed, "kept_active": kept}
    if dry_run:
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
    return {}


def _collect_artifacts(grace: str | None, dry_run: bool, as_json: bool) -> dict[str, Any]:
    """Sweep (or count) unreferenced artifacts through the daemon; returns its report."""
    body: dict[str, Any] = {"dry_run": dry_run}
    if grace is not None:
        body["grace"] = grace
    with daemon_http() as http:
        result: dict[str, Any] = http.post("/api/artifacts/gc", json=body)
    if as_json:
        return result
    kept = f"{result['referenced']} referenced"
    young = result["unreferenced"] - result["collectable"]
    if young:
        kept += f", {young} unreferenced but written within the grace period"
    if dry_run:
        note(f"would remove {_count(result['collectable'])}; kept {kept}; run again without --dry-run to remove them")
    else:
        click.echo(f"removed {_count(result['removed'])} ({_size(result['freed_bytes'])})")
        note(f"kept {kept}")
    return result


def _count(n: int) -> str:
    return f"{n} artifact{'s' if n != 1 else ''}"


def _size(n: int) -> str:
    if n < 1024:
        return f"{n} bytes"
    value = n / 1024
    for unit in ("KiB", "MiB"):
        if value < 1024:
            return f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GiB"
