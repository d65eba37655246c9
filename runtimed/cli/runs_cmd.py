"""``runt runs`` and ``runt schedule``: the daemon's run jobs (list, show, attach, cancel, export, resume)
and the cron schedules that submit them."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import click

from runtimed.cli.common import daemon_http, duration, note, print_json, table, when


def _parameters_text(params: dict[str, Any]) -> str:
    text = " ".join(f"{k}={v!r}" for k, v in params.items())
    return text if len(text) <= 40 else text[:39] + "…"


def _failing(run: dict[str, Any]) -> str:
    cell = run.get("failed_cell") or {}
    if not cell:
        return ""
    return f"{cell.get('index')} {cell.get('ename', '')}".strip()


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True, help="Most recent runs.")
@click.pass_context
def runs(ctx: click.Context, as_json: bool, limit: int) -> None:
    """List the daemon's runs (`runt run`, `POST /api/runs`, schedules), most recent first.

    \b
    Example:
      runt runs
      runt runs show r-20261130-101500-1a2b3c
      runt runs resume r-… --set-source "x = 1"
    """
    if ctx.invoked_subcommand is not None:
        return
    with daemon_http() as http:
        found = http.get("/api/runs", params={"limit": limit})["runs"]
    if as_json:
        print_json(found)
        return
    if not found:
        note("no runs yet; start one with `runt run NOTEBOOK [OUTPUT]`")
        return
    table(["id", "notebook", "parameters", "status", "failing cell", "duration", "started", "live URL"],
          [[r["id"], r["input_path"], _parameters_text(r.get("parameters") or {}),
            r["status"] + (f" {r['done']}/{r['total']}" if r["status"] == "running" and r.get("total") else ""),
            _failing(r), duration(r["duration_s"]) if r.get("duration_s") is not None else "",
            when(r.get("started_at"), short=True), r["url"]] for r in found])


@runs.command("show")
@click.argument("run_id")
def show(run_id: str) -> None:
    """Everything about one run, as JSON."""
    with daemon_http() as http:
        print_json(http.get(f"/api/runs/{run_id}"))


@runs.command("attach")
@click.argument("run_id")
@click.option("--log-output/--no-log-output", default=False, help="Stream cell output to this terminal.")
@click.option("--progress-bar/--no-progress-bar", default=None, help="Progress bar (default: on a terminal).")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON when it ends.")
def attach(run_id: str, log_output: bool, progress_bar: bool | None, as_json: bool) -> None:
    """Follow a run to its end (Ctrl-C cancels it); exit with the run's exit code."""
    sys.exit(asyncio.run(_attach(run_id, log_output, progress_bar, as_json)))


async def _attach(run_id: str, log_output: bool, progress_bar: bool | None, as_json: bool) -> int:
    from runtimed.cli.common import ensure_endpoint
    from runtimed.cli.run_client import RunClient, follow
    from runtimed.cli.run_flow import _say, report_run

    client = RunClient.of(ensure_endpoint())
    try:
        run = await client.call("GET", f"/api/runs/{run_id}")
        _say(f"Live notebook: {run['url']}")
        if progress_bar is None:
            progress_bar = sys.stderr.isatty() and not log_output
        run = await follow(client, run, progress_bar=progress_bar, log_output=log_output, say=_say)
    finally:
        await client.close()
    return report_run(run, as_json)


@runs.command("cancel")
@click.argument("run_id")
def cancel(run_id: str) -> None:
    """Cancel a run: its running cell is interrupted, the rest dropped; the output shows how far it got."""
    with daemon_http() as http:
        run = http.post(f"/api/runs/{run_id}/cancel")
    note(f"cancel requested for {run_id} ({run['status']}); `runt runs resume {run_id}` continues it")


@runs.command("export")
@click.argument("run_id")
@click.argument("output", default="-")
def export(run_id: str, output: str) -> None:
    """Write a run's output notebook (as far as it got) to OUTPUT (default: stdout)."""
    from runtimed.cli.run_client import write_notebook

    with daemon_http() as http:
        nb = http.get(f"/api/runs/{run_id}/notebook")
    write_notebook(nb, output)


@runs.command("resume")
@click.argument("run_id")
@click.option("--set-source", metavar="SOURCE", help="New source of the failing cell (the fix); @FILE reads a file.")
@click.option("--from-start", is_flag=True, help="Rerun every cell on a new kernel (when the kernel is gone).")
@click.option("--detach", is_flag=True, help="Return at once; follow with `runt runs attach ID`.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON when it ends.")
def resume(run_id: str, set_source: str | None, from_start: bool, detach: bool, as_json: bool) -> None:
    """Continue a failed or cancelled run from its failing cell, in the kernel it left running.

    Fix the cell first, in the live notebook's page or with --set-source. A failed run keeps its
    kernel for 10 minutes (RUNTIMED_RUN_RESUME_GRACE on the daemon); after that, resume says the
    kernel is gone, and --from-start reruns the whole notebook.
    """
    from runtimed.errors import RuntimedError

    if set_source is not None and set_source.startswith("@"):
        with open(os.path.expanduser(set_source[1:]), encoding="utf-8") as handle:
            set_source = handle.read()
    with daemon_http() as http:
        try:
            run = http.post(f"/api/runs/{run_id}/resume", json={"set_source": set_source, "from_start": from_start})
        except RuntimedError as exc:
            if exc.code == "kernel_gone" and sys.stdin.isatty() and sys.stderr.isatty() and click.confirm(
                    f"{exc.message}. Rerun run {run_id} from the start?", err=True):
                run = http.post(f"/api/runs/{run_id}/resume", json={"from_start": True})
            else:
                raise
    if detach:
        click.echo(run["id"])
        return
    sys.exit(asyncio.run(_attach(run_id, False, None, as_json)))


# -- schedules ----------------------------------------------------------------------------------------


@click.group()
def schedule() -> None:
    """Run notebooks on a cron schedule, in the daemon (history in `runt runs`).

    \b
    Example:
      runt schedule add "0 6 * * *" report.ipynb "out/report-{pm[current_datetime_utc]:%Y%m%d}.ipynb" -p region eu
      runt schedule list
      runt schedule rm s-1a2b3c4d
    """


@schedule.command("add")
@click.argument("cron")
@click.argument("notebook")
@click.argument("output", required=False)
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Parameter, typed like papermill.")
@click.option("-r", "--parameters-raw", "raw", nargs=2, multiple=True, metavar="NAME VALUE", help="Raw string parameter.")
@click.option("-f", "--parameters-file", "files", multiple=True, metavar="PATH", help="YAML or JSON file of parameters.")
@click.option("-y", "--parameters-yaml", "yamls", multiple=True, metavar="YAML", help="YAML string of parameters.")
@click.option("-k", "--kernel", "kernel_name", help="Kernel name (default: the notebook's kernelspec).")
@click.option("--cwd", help="Working directory of the kernel (default: here).")
@click.option("--execution-timeout", type=float, help="Seconds a cell may run.")
@click.option("--missed", type=click.Choice(["once", "skip"]), default="once", show_default=True,
              help="A firing missed while the daemon was down: run once at start, or skip it.")
@click.option("--json", "as_json", is_flag=True, help="Print the schedule as JSON.")
def schedule_add(cron: str, notebook: str, output: str | None, params: Any, raw: Any, files: Any, yamls: Any,
                 kernel_name: str | None, cwd: str | None, execution_timeout: float | None, missed: str,
                 as_json: bool) -> None:
    """Run NOTEBOOK on CRON (5 fields, the daemon's local time; a 6th is seconds), writing OUTPUT.

    OUTPUT is a papermill path template ({name} of a parameter, {pm[current_datetime_utc]:%Y%m%d}, ...),
    so that each run writes its own file.
    """
    from runtimed.automation.parameters import collect_parameters

    parameters = collect_parameters(base64_yaml=(), files=files, yaml_strings=yamls, params=params, raw=raw)
    here = os.getcwd()
    options = {k: v for k, v in (("kernel_name", kernel_name), ("cwd", cwd), ("execution_timeout", execution_timeout))
               if v is not None}
    options["client_cwd"] = here
    input_path = notebook if "://" in notebook else os.path.abspath(notebook)
    if "://" not in notebook and not os.path.exists(input_path):
        raise click.UsageError(f"notebook {notebook!r} not found")
    with daemon_http() as http:
        created = http.post("/api/schedules", json={"cron": cron, "input_path": input_path, "output_path": output,
                                                    "parameters": parameters, "options": options, "missed": missed})
    if as_json:
        print_json(created)
        return
    click.echo(created["id"])
    note(f"scheduled {notebook} on {cron!r}; `runt schedule list` shows the next run")


@schedule.command("list")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def schedule_list(as_json: bool) -> None:
    """The schedules, with their next firing and last run."""
    with daemon_http() as http:
        found = http.get("/api/schedules")["schedules"]
    if as_json:
        print_json(found)
        return
    if not found:
        note('no schedules; add one with `runt schedule add "CRON" NOTEBOOK [OUTPUT]`')
        return
    table(["id", "cron", "notebook", "output", "parameters", "next", "last run"],
          [[s["id"], s["cron"], s["input_path"], s.get("output_path") or "", json.dumps(s.get("parameters") or {}),
            when(s.get("next_at")), s.get("last_run_id") or ""] for s in found])


@schedule.command("rm")
@click.argument("schedule_ids", nargs=-1, required=True, metavar="ID...")
def schedule_rm(schedule_ids: tuple[str, ...]) -> None:
    """Remove schedules (their past runs stay in `runt runs`)."""
    with daemon_http() as http:
        for schedule_id in schedule_ids:
            http.delete(f"/api/schedules/{schedule_id}")
            note(f"removed schedule {schedule_id}")
