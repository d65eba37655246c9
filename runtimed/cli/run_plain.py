"""The plain ``runt run NOTEBOOK.ipynb [OUTPUT.ipynb] [-p NAME VALUE]...``, without click.

It is the most common command line and the one whose start matters (issue 16: <= 0.1 s before the
first cell on a warm daemon; importing click costs a third of that). :func:`plain_run_arguments` only
recognizes that one shape and gives the exact keyword arguments click gives ``run_cmd.run`` for it
(``tests/test_run_plain.py`` checks both against each other); the run itself is the shared
``run_flow.invoke``. Any other command line (another flag, ``-``, a URL, a template, a terminal that
wants a progress bar) is left to click.
"""

from __future__ import annotations

import sys
from typing import Any

RUN_DEFAULTS: dict[str, Any] = {
    "notebooks": (), "params": (), "raw": (), "files": (), "yamls": (), "b64s": (), "kernel_name": None,
    "cwd": None, "start_timeout": 60.0, "execution_timeout": None, "allow_errors": False, "prepare_only": False,
    "report_mode": False, "log_output": False, "stdout_file": None, "stderr_file": None, "progress_bar": None,
    "inject_paths": False, "inject_input_path": False, "inject_output_path": False, "help_notebook": False,
    "grid": (), "batch": False, "parallel": 1, "output_dir": None, "notify_url": None, "notify_on": "always",
    "retries": 0, "expect_file": None, "approve": None, "no_deps": False, "language": None, "engine": None,
    "log_level": "INFO", "autosave_cell_every": 30, "request_save_on_cell_execute": True, "keep_runtime": False,
    "notebook_id": None, "detach": False, "as_json": False,
}
"""``runt run``'s flags with their defaults, as ``run_cmd.run`` receives them (its decorators use these)."""

PARAMETER_FLAGS = ("-p", "--parameters")


def _plain_path(arg: str) -> bool:
    """A local ``.ipynb`` path that click could not read as anything else, and that is no path template."""
    return (arg.lower().endswith(".ipynb") and not arg.startswith("-") and "://" not in arg
            and "{" not in arg and "}" not in arg)


def plain_run_arguments(args: list[str]) -> dict[str, Any] | None:
    """``run_cmd.run``'s keyword arguments for a plain ``runt run`` command line (``args`` without the program
    name), or None when it is anything else."""
    if len(args) < 2 or args[0] != "run" or "--" in args:
        return None
    positional = 1
    while positional < len(args) and positional < 3 and _plain_path(args[positional]):
        positional += 1
    notebooks, rest = tuple(args[1:positional]), args[positional:]
    if not notebooks or len(rest) % 3:
        return None
    params = []
    for i in range(0, len(rest), 3):
        flag, name, value = rest[i:i + 3]
        if flag not in PARAMETER_FLAGS or name.startswith("-") or value.startswith("--"):
            return None
        params.append((name, value))
    if sys.stderr.isatty():  # a progress bar (rich): click's path, where its import matters less
        return None
    return {**RUN_DEFAULTS, "notebooks": notebooks, "params": tuple(params)}


def run_plain(arguments: dict[str, Any]) -> int:
    """Run it as click would: the same code, the same messages and exit codes (Ctrl-C: 130)."""
    from runtimed.cli.run_flow import invoke

    try:
        return invoke(arguments)
    except KeyboardInterrupt:
        sys.stderr.write("\n")
        return 130
    except Exception as exc:
        click = sys.modules.get("click")
        if click is not None and isinstance(exc, click.UsageError):  # not expected for this form; as click shows it
            exc.show()
            return int(exc.exit_code)
        raise
