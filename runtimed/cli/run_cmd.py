"""``runt run`` and ``runt inspect``: papermill's flags and semantics, on a live notebook in the daemon."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import PurePath
from typing import Any

import click

from runtimed.cli.errors import report

NOTEBOOK_SUFFIXES = (".ipynb", ".yaml", ".yml")


def _is_kernel_name(arg: str) -> bool:
    if arg == "-" or arg.lower().endswith(NOTEBOOK_SUFFIXES) or os.path.exists(arg) or "://" in arg:
        return False
    from runtimed.runtime.kernel import canonical_kernel_name, list_kernelspecs

    return canonical_kernel_name(arg) in list_kernelspecs()


def _read_stdin_notebook():
    from runtimed.formats import read_ipynb

    return read_ipynb(sys.stdin.buffer.read())


def _say(line: str) -> None:
    click.echo(line, err=True)


def _output_for(template: str | None, output_dir: str | None, input_path: str, params: dict[str, Any]) -> str | None:
    if template:
        return template
    if not output_dir:
        return None
    stem = PurePath(input_path).stem
    suffix = "".join(f"-{k}={v}" for k, v in params.items())
    return os.path.join(output_dir, f"{stem}{suffix}.ipynb")


def _print_version(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    """``runt run --version``, as papermill prints its own: version, where from, which Python."""
    if not value or ctx.resilient_parsing:
        return
    import platform

    from runtimed import __version__

    click.echo(f"runtimed {__version__} from {__file__} ({platform.python_version()})")
    ctx.exit()


@click.command("run", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("notebooks", nargs=-1, metavar="NOTEBOOK [OUTPUT]")
@click.option("-p", "--parameters", "params", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Parameter, typed like papermill (True/False/None, int, float, else string).")
@click.option("-r", "--parameters_raw", "--parameters-raw", "raw", nargs=2, multiple=True, metavar="NAME VALUE",
              help="Parameter passed as a raw string.")
@click.option("-f", "--parameters_file", "--parameters-file", "files", multiple=True, metavar="PATH",
              help="YAML or JSON file of parameters.")
@click.option("-y", "--parameters_yaml", "--parameters-yaml", "yamls", multiple=True, metavar="YAML",
              help="YAML string of parameters.")
@click.option("-b", "--parameters_base64", "--parameters-base64", "b64s", multiple=True, metavar="B64",
              help="Base64-encoded YAML string of parameters.")
@click.option("-k", "--kernel", "kernel_name", help="Kernel name (default: the notebook's kernelspec).")
@click.option("--cwd", help="Working directory of the kernel.")
@click.option("--start-timeout", "--start_timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for the runtime.")
@click.option("--execution-timeout", type=float, help="Seconds a cell may run before it is interrupted.")
@click.option("--allow-errors", is_flag=True, help="Run every cell even after errors; exit 0.")
@click.option("--prepare-only/--prepare-execute", default=False,
              help="Inject parameters and write OUTPUT without executing.")
@click.option("--report-mode/--no-report-mode", default=False, help="Hide code cells' input in the output.")
@click.option("--log-output/--no-log-output", default=False, help="Stream cell output to this terminal.")
@click.option("--stdout-file", metavar="PATH", help="Write the cells' stdout to PATH.")
@click.option("--stderr-file", metavar="PATH", help="Write the cells' stderr to PATH.")
@click.option("--progress-bar/--no-progress-bar", default=None, help="Progress bar (default: on a terminal).")
@click.option("--inject-paths", is_flag=True, help="Inject PAPERMILL_INPUT_PATH and PAPERMILL_OUTPUT_PATH.")
@click.option("--inject-input-path", is_flag=True, help="Inject PAPERMILL_INPUT_PATH as a parameter.")
@click.option("--inject-output-path", is_flag=True, help="Inject PAPERMILL_OUTPUT_PATH as a parameter.")
@click.option("--help-notebook", is_flag=True, help="List the notebook's parameters and exit.")
@click.option("--grid", multiple=True, metavar="NAME=V1,V2", help="Run once per combination of values.")
@click.option("--batch", is_flag=True, help="Every NOTEBOOK argument is an input (no OUTPUT argument).")
@click.option("--parallel", type=click.IntRange(1, 64), default=1, show_default=True, help="Concurrent runs.")
@click.option("--output-dir", metavar="DIR", help="Where batch and grid runs write their outputs.")
@click.option("--notify", "notify_url", metavar="URL",
              help="POST a JSON summary to URL when done; slack+https://... posts a Slack incoming-webhook message.")
@click.option("--notify-on", type=click.Choice(["always", "success", "failure"]), default="always",
              show_default=True, help="Which outcomes --notify reports.")
@click.option("--retries", type=click.IntRange(0, 100), default=0, show_default=True,
              help="Run again from the start (up to N times) when the kernel dies or the runtime is lost.")
@click.option("--expect", "expect_file", metavar="PATH", help="YAML file of expectations about the cells' results.")
@click.option("--approve", metavar="all|TOOL,...", help="Let AI cells call these agent tools (e.g. execute_cell) "
              "without a person's approval in this run; 'all' for every tool. See docs/ai.md for the risks.")
@click.option("--no-deps", is_flag=True, help="Ignore the notebook's dependencies: run in the daemon's environment.")
@click.option("-l", "--language", help="papermill: the notebook's language for parameters (only python is supported).")
@click.option("--engine", help="papermill: the execution engine; only nbclient (papermill's default), which "
              "runt run behaves as.")
@click.option("--log-level", type=click.Choice(["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
              default="INFO", show_default=True, help="Level of runt run's log messages (on stderr).")
@click.option("--autosave-cell-every", type=int, default=30, show_default=True, metavar="S",
              help="papermill: while a cell runs, save OUTPUT at most every S seconds (0: not during a cell).")
@click.option("--request-save-on-cell-execute/--no-request-save-on-cell-execute", default=True,
              help="papermill: save OUTPUT after each cell.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print runtimed's version and exit (as papermill --version).")
@click.option("--keep-runtime", is_flag=True, help="Keep the kernel running after the run (default: stop it).")
@click.option("--id", "notebook_id", help="Notebook id to use in the daemon (default run-<name>-<random>).")
@click.option("--detach", is_flag=True, help="Submit the run to the daemon, print its id and return at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def run(notebooks: tuple[str, ...], params, raw, files, yamls, b64s, kernel_name, cwd, start_timeout,
        execution_timeout, allow_errors, prepare_only, report_mode, log_output, stdout_file, stderr_file,
        progress_bar, inject_paths, inject_input_path, inject_output_path, help_notebook, grid, batch, parallel,
        output_dir, notify_url, approve, no_deps, keep_runtime, notebook_id, detach, as_json, notify_on, retries,
        expect_file, language, engine, log_level, autosave_cell_every, request_save_on_cell_execute) -> None:
    """Run NOTEBOOK (.ipynb or YAML; - for stdin) with parameters, papermill-style, as a live notebook.

    OUTPUT (optional; - for stdout; fsspec URLs work) receives the executed notebook. A
    kernel name instead of a notebook opens a console (like `runt console KERNEL`).
    """
    if not notebooks:
        raise click.UsageError("give a NOTEBOOK to run (or a kernel name for a console)")
    if len(notebooks) == 1 and not (params or raw or files or yamls or b64s) and _is_kernel_name(notebooks[0]):
        from runtimed.cli.console import console_main

        sys.exit(console_main(notebooks[0]))
    try:
        sys.exit(_run(**locals()))
    except click.UsageError:
        raise
    except Exception as exc:  # every failure is reported with its exit code, never a traceback
        from runtimed.automation.parameters import ParameterError
        from runtimed.errors import RuntimedError

        if isinstance(exc, ParameterError):  # bad -p/-y/-f/-b/--grid or a path template: a usage error
            raise click.UsageError(exc.message) from None
        if not isinstance(exc, RuntimedError | OSError | ValueError):
            raise
        sys.exit(report(exc))


def _run(notebooks, params, raw, files, yamls, b64s, kernel_name, cwd, start_timeout, execution_timeout,
         allow_errors, prepare_only, report_mode, log_output, stdout_file, stderr_file, progress_bar,
         inject_paths, inject_input_path, inject_output_path, help_notebook, grid, batch, parallel, output_dir,
         notify_url, approve, no_deps, keep_runtime, notebook_id, detach, as_json, notify_on, retries,
         expect_file, language, engine, log_level, autosave_cell_every, request_save_on_cell_execute) -> int:
    from runtimed.automation.notify import notify
    from runtimed.automation.options import RunOptions
    from runtimed.automation.parameters import collect_parameters, parse_grid

    if help_notebook:
        return _print_parameters(notebooks[0], as_json)
    from runtimed.automation import papermill_compat

    papermill_compat.check_engine(engine)
    papermill_compat.setup_logging(log_level, to_stdout=len(notebooks) == 2 and notebooks[1] == "-")
    if len(notebooks) > 2 and not batch:
        raise click.UsageError("give NOTEBOOK [OUTPUT], or several notebooks with --batch")
    base = collect_parameters(base64_yaml=b64s, files=files, yaml_strings=yamls, params=params, raw=raw)
    if progress_bar is None:
        progress_bar = sys.stderr.isatty() and not log_output
    common = dict(kernel_name=kernel_name, cwd=cwd, start_timeout=start_timeout, execution_timeout=execution_timeout,
                  allow_errors=allow_errors, prepare_only=prepare_only, report_mode=report_mode,
                  log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file,
                  inject_paths=inject_paths, inject_input_path=inject_input_path,
                  inject_output_path=inject_output_path, keep_runtime=keep_runtime, approve=_approve_tools(approve),
                  no_deps=no_deps,
                  retries=retries, language=language,  # the daemon reads --expect: an absolute path
                  expect_file=os.path.abspath(expect_file) if expect_file and "://" not in expect_file else expect_file,
                  autosave_cell_every=autosave_cell_every, request_save_on_cell_execute=request_save_on_cell_execute)
    if notify_url:
        from runtimed.automation.notify import check_url

        problem = check_url(notify_url)
        if problem:
            raise click.UsageError(problem)

    if batch or grid:
        if batch and "-" in notebooks:
            raise click.UsageError("--batch reads notebook files, not stdin")
        inputs = list(notebooks) if batch else [notebooks[0]]
        template = None if batch else (notebooks[1] if len(notebooks) == 2 else None)
        if notebook_id:
            raise click.UsageError("--id names one run; batch and grid runs get an id each")
        if stdout_file or stderr_file:
            raise click.UsageError("--stdout-file/--stderr-file are for a single run")
        combos = parse_grid(grid) if grid else [{}]
        options = [
            RunOptions(input_path=path, output_path=_output_for(template, output_dir, path, combo),
                       parameters={**base, **combo}, **common)
            for path in inputs for combo in combos
        ]
        _check_distinct_outputs(options)
        if inputs == ["-"]:
            notebook = _read_stdin_notebook()
            for opts in options:
                opts.input_notebook = notebook
        summaries = asyncio.run(_submit_many(options, parallel))
        _print_summary(summaries, as_json)
        failed = sum(1 for r in summaries if r["exit_code"] != 0)
        if notify_url:
            notify(notify_url, {"runs": summaries, "total": len(summaries), "failed": failed,
                                "status": "success" if not failed else "failed"}, notify_on)
        return 0 if not failed else 1

    input_path = notebooks[0]
    output_path = notebooks[1] if len(notebooks) == 2 else _output_for(None, output_dir, input_path, {})
    opts = RunOptions(input_path=input_path, output_path=output_path, parameters=base, notebook_id=notebook_id,
                      progress_bar=progress_bar, notify_url=notify_url, notify_on=notify_on, **common)
    if input_path == "-":
        opts.input_notebook = _read_stdin_notebook()
    from runtimed.cli.main import skip_teardown

    skip_teardown()  # a thin client: nothing to clean up once the run's output is written
    if prepare_only:  # nothing runs: no daemon needed
        _say(f"Input notebook:  {input_path}")
        from runtimed.automation.run import run_async

        result = asyncio.run(run_async(opts, report=_say))
        _say(f"runt run: {result.message}")
        return result.exit_code
    return asyncio.run(_submit(opts, detach=detach, as_json=as_json))


async def _submit(opts: Any, *, detach: bool, as_json: bool) -> int:
    """Submit the run to the daemon (a job there) and, unless --detach, follow it to its end."""
    from runtimed.automation.options import is_local, submittable, submitted_notebook
    from runtimed.cli.run_client import RunClient, fetch_notebook, follow, write_notebook
    from runtimed.client.discovery import ensure_daemon
    from runtimed.home import Home

    notebook = submitted_notebook(opts)  # read here: the daemon may not see this machine's files or stdin
    endpoint = await asyncio.to_thread(ensure_daemon, Home.resolve(opts.home))
    opts.client_cwd = os.getcwd()
    client_writes = opts.output_path == "-" or not is_local(endpoint)
    opts.write_output_file = not client_writes
    from runtimed.automation.papermill_compat import check_output_dir
    from runtimed.automation.parameters import parameterize_path

    check_output_dir(parameterize_path(opts.output_path, opts.parameters))  # as papermill, before anything runs
    client = RunClient(endpoint)
    try:
        run = await client.call("POST", "/api/runs", json={"options": submittable(opts), "notebook": notebook})
        if detach:
            click.echo(run["id"])
            _say(f"Run {run['id']} submitted; live notebook: {run['url']}")
            _say(f"  follow it with `runt runs attach {run['id']}`, list runs with `runt runs`")
            return 0
        _say(f"Input notebook:  {opts.input_path}")
        if opts.output_path:
            _say(f"Output notebook: {opts.output_path}")
        announced: list[bool] = []

        def live(current: dict[str, Any]) -> None:  # once the notebook is in the daemon, its cells requested
            if not announced and (current.get("total") is not None or current["status"] not in ("queued", "starting")):
                announced.append(True)
                _say(f"Live notebook: {current['url']}")

        live(run)
        run = await follow(client, run, progress_bar=bool(opts.progress_bar), log_output=opts.log_output,
                           log_to_stderr=opts.output_path == "-", on_change=live, say=_say)
        live({**run, "total": 0})
        if client_writes and opts.output_path:
            from runtimed.automation.parameters import parameterize_path

            path = parameterize_path(opts.output_path, opts.parameters)
            write_notebook(await fetch_notebook(client, run["id"]), path or "-")
    finally:
        await client.close()
    return _report_run(run, as_json and opts.output_path != "-")


async def _submit_many(options: list[Any], parallel: int) -> list[dict[str, Any]]:
    """Batch and grid runs: each a daemon job, at most ``parallel`` going at once; one bad run stops no other."""
    from runtimed.automation.options import is_local, submittable, submitted_notebook
    from runtimed.cli.run_client import RunClient, follow
    from runtimed.client.discovery import ensure_daemon
    from runtimed.errors import RuntimedError
    from runtimed.home import Home

    endpoint = await asyncio.to_thread(ensure_daemon, Home.resolve(options[0].home if options else None))
    client = RunClient(endpoint)
    limit = asyncio.Semaphore(max(1, parallel))

    async def one(opts: Any) -> dict[str, Any]:
        async with limit:
            try:
                notebook = submitted_notebook(opts)
                opts.client_cwd = os.getcwd()
                opts.write_output_file = is_local(endpoint)
                run = await client.call("POST", "/api/runs", json={"options": submittable(opts), "notebook": notebook})
                _say(f"Run {run['id']}: {opts.input_path} {json.dumps(opts.parameters)} -> {run['url']}")
                return _summary(await follow(client, run, say=_say))
            except (RuntimedError, OSError, ValueError) as exc:
                message = exc.message if isinstance(exc, RuntimedError) else f"{type(exc).__name__}: {exc}"
                return {"input_path": opts.input_path, "notebook_id": None, "url": None, "status": "failed",
                        "exit_code": 1, "duration_s": 0.0, "failed_cell": None, "output_path": opts.output_path,
                        "message": f"{opts.input_path}: {message}", "parameters": dict(opts.parameters)}

    try:
        return list(await asyncio.gather(*(one(o) for o in options)))
    finally:
        await client.close()


def _summary(run: dict[str, Any]) -> dict[str, Any]:
    summary = {**(run.get("summary") or {}), "run_id": run["id"], "status": run["status"],
               "exit_code": run["exit_code"] if run["exit_code"] is not None else 1, "url": run["url"],
               "message": run["message"]}
    summary.setdefault("notebook_id", run["notebook_id"])
    summary.setdefault("failed_cell", run.get("failed_cell"))
    summary.setdefault("parameters", run.get("parameters") or {})
    summary.setdefault("duration_s", run.get("duration_s") or 0.0)
    return summary


def _report_run(run: dict[str, Any], as_json: bool) -> int:
    summary = _summary(run)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
    code = int(run["exit_code"] if run["exit_code"] is not None else 1)
    if code == 0:
        duration = run.get("duration_s")
        _say(f"runt run: {run['message']}" + (f" in {duration:.2f} s" if duration else ""))
    else:
        click.secho(f"runt run: {run['message']}", fg="red", err=True)
        _say(f"  see the notebook at {run['url']}")
        if run.get("resumable_until"):
            _say(f"  fix the cell and continue with `runt runs resume {run['id']}` "
                 f"(kernel kept until {run['resumable_until']})")
    return code


def _approve_tools(value: str | None) -> tuple[str, ...]:
    """``--approve all`` or a comma-separated list of agent tool names (checked: a typo must not pass silently)."""
    if not value:
        return ()
    names = tuple(n.strip() for n in value.split(",") if n.strip())
    if "all" in names:
        return ("all",)
    from runtimed.agents.tools import TOOLS

    unknown = [n for n in names if n not in TOOLS]
    if unknown or not names:
        raise click.UsageError(f"--approve: unknown tool(s) {', '.join(unknown) or value!r}; give 'all' or tool "
                               f"names from: {', '.join(sorted(TOOLS))}")
    return names


def _check_distinct_outputs(options: list[Any]) -> None:
    from runtimed.automation.parameters import parameterize_path

    seen: dict[str, Any] = {}
    for opts in options:
        path = parameterize_path(opts.output_path, opts.parameters) if opts.output_path else None
        if path is None:
            continue
        if path == "-" or path in seen:
            raise click.UsageError(
                f"several runs would write {path!r}: template OUTPUT with the grid's parameters "
                "(out_{name}.ipynb) or use --output-dir")
        seen[path] = opts


def _print_summary(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title="runt run")
    for column in ("notebook", "parameters", "status", "seconds", "url / message"):
        table.add_column(column)
    for r in results:
        table.add_row(r.get("notebook_id") or "-", json.dumps(r.get("parameters") or {}), r["status"],
                      f"{r.get('duration_s') or 0.0:.2f}", r["url"] if r["exit_code"] == 0 else r["message"])
    Console(stderr=True).print(table)


def _print_parameters(notebook: str, as_json: bool) -> int:
    from runtimed.automation.parameters import inspect_parameters
    from runtimed.formats.files import load_notebook

    try:
        nb = _read_stdin_notebook() if notebook == "-" else load_notebook(notebook)
    except FileNotFoundError:
        from runtimed.cli.errors import NOT_FOUND

        click.secho(f"error: notebook {notebook!r} not found", fg="red", err=True)
        return NOT_FOUND
    parameters = inspect_parameters(nb)
    if as_json:
        click.echo(json.dumps({p.name: p.__dict__ for p in parameters}, indent=2))
        return 0
    click.echo(f"Parameters inferred for notebook '{notebook}':")  # papermill's layout, line for line
    if not parameters:
        click.echo("\n  No cell tagged 'parameters'" if not any(
            "parameters" in c.get("metadata", {}).get("tags", []) for c in nb.cells) else
            "\n  Can't infer anything about this notebook's parameters. It may not have any parameter defined.")
        return 0
    for p in parameters:
        type_name = "Unknown type" if p.inferred_type_name == "None" else p.inferred_type_name
        default = re.sub(r"\s*\n\s*", " ", p.default)
        line = f"  {p.name}: {type_name} (default {default})"
        if len(line) > 30:
            click.echo(f"{line}\n{34 * ' '}{p.help}" if p.help else line)
        else:
            click.echo(f"{line:<34}{p.help}")
    return 0


@click.command("inspect")
@click.argument("notebook")
@click.option("--json", "as_json", is_flag=True, help="Print the parameters as JSON.")
def inspect(notebook: str, as_json: bool) -> None:
    """List NOTEBOOK's parameters with inferred types, defaults and help comments."""
    try:
        sys.exit(_print_parameters(notebook, as_json))
    except Exception as exc:
        from runtimed.errors import RuntimedError

        if not isinstance(exc, RuntimedError):
            raise
        sys.exit(report(exc))
