"""``runt run`` and ``runt inspect``: papermill's flags and semantics, on a live notebook in the daemon.

The flags are parsed here (click); what the run does with them is ``cli/run_flow.py``, shared with the plain
``runt run NOTEBOOK [OUTPUT] [-p NAME VALUE]...`` that ``cli/main.py`` sends there without click.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import click

from runtimed.cli.errors import report
from runtimed.cli.run_flow import _read_stdin_notebook, invoke
from runtimed.cli.run_plain import RUN_DEFAULTS as D


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
@click.option("--start-timeout", "--start_timeout", type=float, default=D["start_timeout"], show_default=True,
              help="Seconds to wait for the runtime.")
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
@click.option("--parallel", type=click.IntRange(1, 64), default=D["parallel"], show_default=True,
              help="Concurrent runs.")
@click.option("--output-dir", metavar="DIR", help="Where batch and grid runs write their outputs.")
@click.option("--notify", "notify_url", metavar="URL",
              help="POST a JSON summary to URL when done; slack+https://... posts a Slack incoming-webhook message.")
@click.option("--notify-on", type=click.Choice(["always", "success", "failure"]), default=D["notify_on"],
              show_default=True, help="Which outcomes --notify reports.")
@click.option("--retries", type=click.IntRange(0, 100), default=D["retries"], show_default=True,
              help="Run again from the start (up to N times) when the kernel dies or the runtime is lost.")
@click.option("--expect", "expect_file", metavar="PATH", help="YAML file of expectations about the cells' results.")
@click.option("--approve", metavar="all|TOOL,...", help="Let AI cells call these agent tools (e.g. execute_cell) "
              "without a person's approval in this run; 'all' for every tool. See docs/ai.md for the risks.")
@click.option("--no-deps", is_flag=True, help="Ignore the notebook's dependencies: run in the daemon's environment.")
@click.option("-l", "--language", help="papermill: the notebook's language for parameters (only python is supported).")
@click.option("--engine", help="papermill: the execution engine; only nbclient (papermill's default), which "
              "runt run behaves as.")
@click.option("--log-level", type=click.Choice(["NOTSET", "DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
              default=D["log_level"], show_default=True, help="Level of runt run's log messages (on stderr).")
@click.option("--autosave-cell-every", type=int, default=D["autosave_cell_every"], show_default=True, metavar="S",
              help="papermill: while a cell runs, save OUTPUT at most every S seconds (0: not during a cell).")
@click.option("--request-save-on-cell-execute/--no-request-save-on-cell-execute",
              default=D["request_save_on_cell_execute"],
              help="papermill: save OUTPUT after each cell.")
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=_print_version,
              help="Print runtimed's version and exit (as papermill --version).")
@click.option("--keep-runtime", is_flag=True, help="Keep the kernel running after the run (default: stop it).")
@click.option("--id", "notebook_id", help="Notebook id to use in the daemon (default run-<name>-<random>).")
@click.option("--detach", is_flag=True, help="Submit the run to the daemon, print its id and return at once.")
@click.option("--json", "as_json", is_flag=True, help="Print the run summary as JSON.")
def run(**arguments: Any) -> None:
    """Run NOTEBOOK (.ipynb or YAML; - for stdin) with parameters, papermill-style, as a live notebook.

    OUTPUT (optional; - for stdout; fsspec URLs work) receives the executed notebook. A
    kernel name instead of a notebook opens a console (like `runt console KERNEL`).
    """
    sys.exit(invoke(arguments))


def print_parameters(notebook: str, as_json: bool) -> int:
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
        sys.exit(print_parameters(notebook, as_json))
    except Exception as exc:
        from runtimed.errors import RuntimedError

        if not isinstance(exc, RuntimedError):
            raise
        sys.exit(report(exc))
