"""``runt runtime connect``: an external runtime for a notebook, from any machine that reaches the daemon."""

from __future__ import annotations

import os

import click

from runtimed.cli.common import ensure_endpoint, home, note
from runtimed.cli.errors import USAGE, CliError


@click.group()
def runtime() -> None:
    """External runtimes (a kernel on this machine working for a notebook of a daemon)."""


@runtime.command()
@click.option("--notebook", "notebook_id", required=True, metavar="ID", help="The notebook to work for.")
@click.option("--url", default=None, metavar="URL",
              help="The daemon's URL, or several daemons of one deployment separated by commas (failover) "
                   "(default: $RUNTIMED_URL, else the daemon of the home, started if needed).")
@click.option("--token", default=None, metavar="TOKEN", help="The daemon's token (default: $RUNTIMED_TOKEN or the home's).")
@click.option("--kernel", "kernel_name", default="python3", show_default=True, help="The kernelspec to run.")
@click.option("--wait", is_flag=True, help="Wait for the notebook's active runtime to end instead of displacing it.")
@click.option("--cwd", default=None, type=click.Path(file_okay=False), help="The kernel's working directory.")
def connect(notebook_id: str, url: str | None, token: str | None, kernel_name: str, wait: bool,
            cwd: str | None) -> None:
    """Run a runtime for a notebook until it is stopped (Ctrl-C, SIGTERM, displaced); print its id when ready.

    \b
    Example:
      runt runtime connect --notebook nb-01J…
      runt runtime connect --notebook nb-01J… --url http://gpu-box:8730 --token $TOKEN --kernel python3
    """
    import asyncio
    import dataclasses

    from runtimed.agents.ai_cell import AiCellExecutor
    from runtimed.client.discovery import endpoint_for
    from runtimed.runtime.external import run_external_runtime

    if url:
        token = token or os.environ.get("RUNTIMED_TOKEN") or home().read_token()
        if not token:
            raise CliError(f"no token for {url}", USAGE, hint="pass --token or set RUNTIMED_TOKEN")
        endpoint = endpoint_for(url, token)  # several daemons of one deployment: the first that answers
    else:
        endpoint = ensure_endpoint()
        if token:
            endpoint = dataclasses.replace(endpoint, token=token)

    def ready(agent: object) -> None:
        click.echo(getattr(agent, "runtime_id"))  # noqa: B009
        note(f"runtime {getattr(agent, 'runtime_id')} ({kernel_name}) is working for {notebook_id} "  # noqa: B009
             f"at {endpoint.url}; Ctrl-C stops it")

    reason = asyncio.run(run_external_runtime(endpoint, notebook_id, kernel_name=kernel_name, displace=not wait,
                                              cwd=cwd, on_ready=ready, ai_executor=AiCellExecutor(endpoint)))
    note(f"runtime stopped ({reason})")
