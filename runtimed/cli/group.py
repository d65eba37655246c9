"""``runt``'s click group: every command line except the plain ``runt run`` (see ``cli/main.py``).

Subcommands are registered as ``"module:attribute"`` strings and imported only when they
run, with their one-line help kept here, so ``runt --help`` imports nothing but click.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from runtimed import __version__
from runtimed.errors import RuntimedError

# name -> (import path, one-line help shown by `runt --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "daemon": ("runtimed.cli.daemon_cmd:daemon", "Start, stop and inspect the daemon."),
    "ps": ("runtimed.cli.kernels:ps", "List runtimes of the daemon and standalone Jupyter kernels."),
    "start": ("runtimed.cli.kernels:start", "Start a runtime with a kernel; print its id."),
    "stop": ("runtimed.cli.kernels:stop", "Stop a runtime, or --all of them (alias: kill)."),
    "rm": ("runtimed.cli.kernels:rm", "Remove a stale kernel connection file."),
    "interrupt": ("runtimed.cli.kernels:interrupt", "Interrupt what a runtime is running."),
    "exec": ("runtimed.cli.kernels:exec_", "Run code (argument or stdin) in a runtime."),
    "console": ("runtimed.cli.console:console", "An interactive REPL on a kernel, kept as a notebook."),
    "run": ("runtimed.cli.run_cmd:run", "Run a notebook file, or a console on a kernel."),
    "inspect": ("runtimed.cli.run_cmd:inspect", "Inspect a notebook file."),
    "runs": ("runtimed.cli.runs_cmd:runs", "List runs; show, attach, cancel, export or resume one."),
    "schedule": ("runtimed.cli.runs_cmd:schedule", "Run notebooks on a cron schedule (add, list, rm)."),
    "notebooks": ("runtimed.cli.notebooks:notebooks", "List the daemon's notebooks; `rm ID...` removes some."),
    "gc": ("runtimed.cli.gc_cmd:gc", "Remove `runt run` notebooks not updated for a while."),
    "open": ("runtimed.cli.notebooks:open_", "Print (and open) the live URL of a notebook."),
    "import": ("runtimed.cli.notebooks:import_", "Import an .ipynb or YAML notebook file."),
    "export": ("runtimed.cli.notebooks:export", "Export a notebook as .ipynb (or YAML)."),
    "history": ("runtimed.cli.notebooks:history", "Show a notebook's event log, or its state at a seq."),
    "query": ("runtimed.cli.notebooks:query", "Run a read-only SQL query on a notebook's projection."),
    "runtime": ("runtimed.cli.runtime_cmd:runtime", "Run an external runtime for a notebook."),
    "users": ("runtimed.cli.users_cmd:users", "Add, remove and list people and their roles."),
    "share": ("runtimed.cli.users_cmd:share", "Print a read-only link to a notebook."),
    "mcp": ("runtimed.cli.mcp_cmd:mcp", "Serve the notebook tools to an AI agent over MCP (stdio)."),
    "approvals": ("runtimed.cli.approvals_cmd:approvals", "List agents' requests waiting for approval."),
    "approve": ("runtimed.cli.approvals_cmd:approve", "Approve (or --deny, --always) an agent's request."),
    "deps": ("runtimed.cli.deps_cmd:deps", "A notebook's Python dependencies: list, add, rm, approve, sync."),
    "env": ("runtimed.cli.deps_cmd:env", "The daemon's uv environments: list, gc."),
    "store": ("runtimed.cli.store_cmd:store", "Copy notebooks with their logs between stores (`store copy`)."),
}
ALIASES = {"kill": "stop"}


def load(path: str) -> Any:
    module, _, attr = path.partition(":")
    return getattr(importlib.import_module(module), attr)


class LazyGroup(click.Group):
    """A group whose subcommands are imported on use; also turns errors into runt's exit codes."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]] | None = None,
                 aliases: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})
        self.aliases = dict(aliases or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        cmd_name = self.aliases.get(cmd_name, cmd_name)
        if cmd_name in self.commands:
            return self.commands[cmd_name]
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return None
        try:
            command = load(entry[0])
        except (ImportError, AttributeError) as exc:
            # a command whose module is missing (or broken) must not break the others
            reason = str(exc)
            @click.command(cmd_name, help=entry[1], context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def unavailable(args: tuple[str, ...]) -> None:
                from runtimed.cli.errors import CliError

                raise CliError(f"`runt {cmd_name}` is not available in this installation ({reason})")

            return unavailable
        self.commands[cmd_name] = command
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            if name in self.lazy:
                help_text = self.lazy[name][1]
            else:
                cmd = self.commands[name]
                if cmd.hidden:
                    continue
                help_text = cmd.get_short_help_str(formatter.width)
            rows.append((name, help_text))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RuntimedError as exc:
            from runtimed.cli.errors import report

            ctx.exit(report(exc))
        except OSError as exc:  # e.g. a file that cannot be read or written
            from runtimed.cli.errors import report

            ctx.exit(report(exc))
        except KeyboardInterrupt:
            click.echo("", err=True)
            ctx.exit(130)


CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


def _set_home(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if value:
        os.environ["RUNTIMED_HOME"] = value


def _exit_codes_epilog() -> str:
    from runtimed.cli.errors import exit_codes_help

    return "\b\nExit codes:\n" + exit_codes_help()


@click.group(cls=LazyGroup, lazy=COMMANDS, aliases=ALIASES, context_settings=CONTEXT_SETTINGS,
             epilog=_exit_codes_epilog())
@click.version_option(__version__, "-V", "--version", prog_name="runt", message="%(prog)s %(version)s")
@click.option("--home", metavar="DIR", expose_value=False, callback=_set_home, is_eager=True,
              help="The daemon's home (default $RUNTIMED_HOME, else a per-user data dir).")
def cli() -> None:
    """runt: the command line of runtimed (event-sourced notebooks on real Jupyter kernels).

    Commands that need a daemon start the embedded default for the home when none runs,
    except `runt daemon status|ping|stop|logs` and `runt ps`.

    """
