"""The plain ``runt run NOTEBOOK.ipynb [OUTPUT.ipynb] [-p NAME VALUE]...``, without click.

It is the most common command line and the one whose start matters (issue 16: <= 0.1 s before the
first cell on a warm daemon, on a machine where Python's own start takes a quarter of that).
:func:`plain_run_arguments` only recognizes that one shape and gives the exact keyword arguments click
gives ``run_cmd.run`` for it (``tests/test_run_plain.py`` checks both against each other). Any other
command line (another flag, ``-``, a URL, a template, a terminal that wants a progress bar) is left to click.

:func:`run_plain` submits the run with nothing loaded but ``os``, ``json`` and ``socket`` when the home's
daemon is local and everything is as expected (:func:`_submission`); its cell starts while this process
loads the rest. Anything else, found before the submit (no daemon running, a notebook that is not JSON,
a missing output folder, ``RUNTIMED_URL``...), goes to the one full code path, ``run_flow.invoke``, which
then does and says what it always does. ``tests/test_run_plain.py`` checks that both submit the same run.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
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


LOCAL_URLS = ("http://127.0.0.1:", "http://localhost:", "http://[::1]:")
"""A daemon the submit may reach without a health check (``runt run`` writes the output file there)."""


def _submission(arguments: dict[str, Any]) -> tuple[str, str, dict[str, Any]] | None:
    """The daemon's URL, its token and the ``POST /api/runs`` body of a plain ``runt run``, when the home's
    daemon runs on this machine and the input is a JSON file; None sends the command to the full path.

    The options are the ones the full path submits for this command line, fields at their default left
    out (the daemon fills them in). No health check: the submit itself is one, and a refused connection
    (a daemon gone since it wrote ``daemon.json``) sends the command to the full path, which starts one."""
    from runtimed import home_files

    if os.environ.get("RUNTIMED_URL"):
        return None  # a daemon elsewhere, maybe several with failover: the full path
    folder = home_files.home_folder()
    info = home_files.read_daemon_info(folder)
    token = os.environ.get("RUNTIMED_TOKEN") or home_files.read_token(folder)
    if info is None or not token or not isinstance(info.get("pid"), int) or not home_files.pid_alive(info["pid"]):
        return None
    url = str(info["url"])
    if not url.startswith(LOCAL_URLS):
        return None
    input_path, output_path = arguments["notebooks"][0], (arguments["notebooks"][1:] or [None])[0]
    if output_path and not os.path.isdir(os.path.dirname(os.path.abspath(os.path.expanduser(output_path)))):
        return None  # papermill's error, as the full path words it
    import json

    try:
        with open(input_path, "rb") as f:
            notebook = json.loads(f.read())
    except (OSError, ValueError):
        return None  # missing, unreadable or not JSON: the full path's reader says what is wrong
    if not isinstance(notebook, dict):
        return None
    from runtimed.automation.param_values import resolve_type

    parameters = {name: resolve_type(value) for name, value in arguments["params"]}
    options = {"input_path": input_path, "output_path": output_path, "parameters": parameters,
               "client_cwd": os.getcwd(), "write_output_file": True}
    return url, token, {"options": options, "notebook": notebook}


def _run_quickly(arguments: dict[str, Any]) -> int | None:
    """Submit and follow the run on the lightest modules (see the module's docstring); None when the full path
    is to run the command instead (nothing was submitted)."""
    submission = _submission(arguments)
    if submission is None:
        return None
    url, token, body = submission
    from runtimed.client import light_http

    try:
        status, content = light_http.request(url, "POST", "/api/runs", headers=light_http.bearer(token),
                                             body=body, timeout=60.0)
    except light_http.Timeout:
        status, content = 0, b""
    except Exception as exc:
        from runtimed.errors import DaemonNotRunningError

        if isinstance(exc, DaemonNotRunningError):
            return None  # not there after all: the full path starts the daemon
        raise
    # from here on the cell runs: what this process loads no longer delays it
    from runtimed.cli.main import skip_teardown
    from runtimed.cli.run_flow import _say, announce, report_failure, report_run

    skip_teardown()
    try:
        if not status:
            raise light_http.daemon_timeout(url, "POST", "/api/runs", 60.0)
        run = light_http.json_or_error(status, content)  # a refusal is raised, and reported as the full path does
        from runtimed.cli.run_client import RunClient, follow_plainly

        live = announce(arguments["notebooks"][0], body["options"]["output_path"], run)
        run = follow_plainly(RunClient(url, token), run, log_level=arguments["log_level"], on_change=live, say=_say)
        live({**run, "total": 0})
        return report_run(run, arguments["as_json"])
    except Exception as exc:  # noqa: BLE001 - every failure is reported with its exit code, as the full path does
        return report_failure(exc)


def run_plain(arguments: dict[str, Any]) -> int:
    """Run it as click would: the same code, the same messages and exit codes (Ctrl-C: 130)."""
    try:
        quick = _run_quickly(arguments)
        if quick is not None:
            return quick
        from runtimed.cli.run_flow import invoke

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
