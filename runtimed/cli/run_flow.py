"""What ``runt run`` does once its flags are parsed (by click in ``cli/run_cmd.py``, or for the plain form by
``cli/run_plain.py``): one code path for both.

Nothing here imports click or asyncio at import time: the plain ``runt run`` imports asyncio only after
the run is submitted (the cell can start meanwhile), and click only for a usage error or a failure message.
"""

from __future__ import annotations

import json
import os
import sys

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py): the plain runt run
if TYPE_CHECKING:      # loads this module while its cell starts
    from collections.abc import Callable
    from typing import Any, NoReturn

NOTEBOOK_SUFFIXES = (".ipynb", ".yaml", ".yml")


def _usage(message: str) -> NoReturn:
    import click

    raise click.UsageError(message)


def _echo(line: str) -> None:
    """A line on stdout, as click.echo writes it."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _is_kernel_name(arg: str) -> bool:
    if arg == "-" or arg.lower().endswith(NOTEBOOK_SUFFIXES) or os.path.exists(arg) or "://" in arg:
        return False
    from runtimed.runtime.kernel import canonical_kernel_name, list_kernelspecs

    return canonical_kernel_name(arg) in list_kernelspecs()


def _read_stdin_notebook():
    from runtimed.formats import read_ipynb

    return read_ipynb(sys.stdin.buffer.read())


def _say(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


def _output_for(template: str | None, output_dir: str | None, input_path: str, params: dict[str, Any]) -> str | None:
    if template:
        return template
    if not output_dir:
        return None
    from pathlib import PurePath

    stem = PurePath(input_path).stem
    suffix = "".join(f"-{k}={v}" for k, v in params.items())
    return os.path.join(output_dir, f"{stem}{suffix}.ipynb")



def invoke(arguments: dict[str, Any]) -> int:
    """``runt run`` with its parsed flags (the keyword arguments of ``run_cmd.run``): its exit code.

    A usage error is raised as click.UsageError (click shows it); any other failure is reported with its
    exit code, never a traceback."""
    notebooks = arguments["notebooks"]
    if not notebooks:
        _usage("give a NOTEBOOK to run (or a kernel name for a console)")
    if len(notebooks) == 1 and not any(arguments[k] for k in ("params", "raw", "files", "yamls", "b64s")) \
            and _is_kernel_name(notebooks[0]):
        from runtimed.cli.console import console_main

        return console_main(notebooks[0])
    try:
        return _run(**arguments)
    except Exception as exc:  # every failure is reported with its exit code, never a traceback
        return report_failure(exc)


def report_failure(exc: Exception) -> int:
    """A failure of ``runt run`` shown as its message, and its exit code (a usage error as click shows it)."""
    from runtimed.automation.parameters import ParameterError
    from runtimed.errors import RuntimedError

    if isinstance(exc, ParameterError):  # bad -p/-y/-f/-b/--grid or a path template: a usage error
        _usage(exc.message)
    if not isinstance(exc, RuntimedError | OSError | ValueError):
        raise exc
    from runtimed.cli.errors import report

    return report(exc)


def _run(notebooks, params, raw, files, yamls, b64s, kernel_name, cwd, start_timeout, execution_timeout,
         allow_errors, prepare_only, report_mode, log_output, stdout_file, stderr_file, progress_bar,
         inject_paths, inject_input_path, inject_output_path, help_notebook, grid, batch, parallel, output_dir,
         notify_url, approve, no_deps, keep_runtime, notebook_id, detach, as_json, notify_on, retries,
         expect_file, language, engine, log_level, autosave_cell_every, request_save_on_cell_execute) -> int:
    from runtimed.automation.options import RunOptions
    from runtimed.automation.parameters import collect_parameters, parse_grid

    if help_notebook:
        from runtimed.cli.run_cmd import print_parameters

        return print_parameters(notebooks[0], as_json)
    from runtimed.automation import papermill_compat

    papermill_compat.check_engine(engine)
    papermill_compat.setup_logging(log_level, to_stdout=len(notebooks) == 2 and notebooks[1] == "-")
    if len(notebooks) > 2 and not batch:
        _usage("give NOTEBOOK [OUTPUT], or several notebooks with --batch")
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
            _usage(problem)

    if batch or grid:
        if batch and "-" in notebooks:
            _usage("--batch reads notebook files, not stdin")
        inputs = list(notebooks) if batch else [notebooks[0]]
        template = None if batch else (notebooks[1] if len(notebooks) == 2 else None)
        if notebook_id:
            _usage("--id names one run; batch and grid runs get an id each")
        if stdout_file or stderr_file:
            _usage("--stdout-file/--stderr-file are for a single run")
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
        import asyncio

        summaries = asyncio.run(_submit_many(options, parallel))
        _print_summary(summaries, as_json)
        failed = sum(1 for r in summaries if r["exit_code"] != 0)
        if notify_url:
            from runtimed.automation.notify import notify

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
        import asyncio

        from runtimed.automation.run import run_async

        result = asyncio.run(run_async(opts, report=_say))
        _say(f"runt run: {result.message}")
        return result.exit_code
    return _submit(opts, detach=detach, as_json=as_json)


def _submit(opts: Any, *, detach: bool, as_json: bool) -> int:
    """Submit the run to the daemon (a job there) and, unless --detach, follow it to its end.

    The submit is plain blocking code: the run's first cell starts once the daemon has it, so everything
    this process can do later (asyncio's import, the follow) waits until then."""
    from runtimed.automation.options import is_local, submittable, submitted_notebook
    from runtimed.automation.papermill_compat import check_output_dir
    from runtimed.automation.parameters import parameterize_path
    from runtimed.cli.run_client import RunClient
    from runtimed.client.discovery import ensure_daemon
    from runtimed.home import Home

    notebook = submitted_notebook(opts)  # read here: the daemon may not see this machine's files or stdin
    # as papermill, before anything runs: a bad template or output directory starts no daemon either
    check_output_dir(parameterize_path(opts.output_path, opts.parameters))
    endpoint = ensure_daemon(Home.resolve(opts.home))
    opts.client_cwd = os.getcwd()
    client_writes = opts.output_path == "-" or not is_local(endpoint)
    opts.write_output_file = not client_writes
    client = RunClient.of(endpoint)
    run = client.request("POST", "/api/runs", json={"options": submittable(opts), "notebook": notebook})
    if detach:
        _echo(run["id"])
        _say(f"Run {run['id']} submitted; live notebook: {run['url']}")
        _say(f"  follow it with `runt runs attach {run['id']}`, list runs with `runt runs`")
        return 0
    import asyncio

    return asyncio.run(_follow(client, run, opts, client_writes=client_writes, as_json=as_json))


async def _follow(client: Any, run: dict[str, Any], opts: Any, *, client_writes: bool, as_json: bool) -> int:
    """Show the submitted run's progress to its end, write its output if the daemon cannot; its exit code."""
    from runtimed.cli.run_client import fetch_notebook, follow, write_notebook

    live = announce(opts.input_path, opts.output_path, run)
    run = await follow(client, run, progress_bar=bool(opts.progress_bar), log_output=opts.log_output,
                       log_to_stderr=opts.output_path == "-", on_change=live, say=_say)
    live({**run, "total": 0})
    if client_writes and opts.output_path:
        from runtimed.automation.parameters import parameterize_path

        path = parameterize_path(opts.output_path, opts.parameters)
        write_notebook(await fetch_notebook(client, run["id"]), path or "-")
    return report_run(run, as_json and opts.output_path != "-")


def announce(input_path: str, output_path: str | None, run: dict[str, Any]) -> Callable[[dict[str, Any]], None]:
    """Say what runs where, as papermill does; the returned function says where to watch it live once the
    daemon has the notebook and its cells are requested (call it with each new state of the run)."""
    from runtimed.cli.run_client import cells_requested

    _say(f"Input notebook:  {input_path}")
    if output_path:
        _say(f"Output notebook: {output_path}")
    announced: list[bool] = []

    def live(current: dict[str, Any]) -> None:
        if not announced and cells_requested(current):
            announced.append(True)
            _say(f"Live notebook: {current['url']}")

    live(run)
    return live


async def _submit_many(options: list[Any], parallel: int) -> list[dict[str, Any]]:
    """Batch and grid runs: each a daemon job, at most ``parallel`` going at once; one bad run stops no other."""
    import asyncio

    from runtimed.automation.options import is_local, submittable, submitted_notebook
    from runtimed.cli.run_client import RunClient, follow
    from runtimed.client.discovery import ensure_daemon
    from runtimed.errors import RuntimedError
    from runtimed.home import Home

    endpoint = await asyncio.to_thread(ensure_daemon, Home.resolve(options[0].home if options else None))
    client = RunClient.of(endpoint)
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


def report_run(run: dict[str, Any], as_json: bool) -> int:
    summary = _summary(run)
    if as_json:
        _echo(json.dumps(summary, indent=2))
    code = int(run["exit_code"] if run["exit_code"] is not None else 1)
    if code == 0:
        duration = run.get("duration_s")
        _say(f"runt run: {run['message']}" + (f" in {duration:.2f} s" if duration else ""))
    else:
        import click

        from runtimed.cli.common import when

        click.secho(f"runt run: {run['message']}", fg="red", err=True)
        _say(f"  see the notebook at {run['url']}")
        if run.get("resumable_until"):
            _say(f"  fix the cell and continue with `runt runs resume {run['id']}` "
                 f"(kernel kept until {when(run['resumable_until'], short=True)})")
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
        _usage(f"--approve: unknown tool(s) {', '.join(unknown) or value!r}; give 'all' or tool "
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
            _usage(
                f"several runs would write {path!r}: template OUTPUT with the grid's parameters "
                "(out_{name}.ipynb) or use --output-dir")
        seen[path] = opts


def _print_summary(results: list[dict[str, Any]], as_json: bool) -> None:
    if as_json:
        _echo(json.dumps(results, indent=2))
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
