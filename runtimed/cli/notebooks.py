"""Notebooks of the daemon: ``runt notebooks [rm]``, ``open``, ``import``, ``export``, ``history``, ``query``."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import click

from runtimed.cli.common import daemon_http, in_ci, note, out_console, print_json, table, when
from runtimed.cli.errors import FAILURE, NOT_FOUND, REFUSED, CliError, report
from runtimed.errors import NotFoundError, RuntimedError


def _missing(notebook_id: str) -> CliError:
    return CliError(f"no notebook with id {notebook_id!r}", NOT_FOUND, hint="list them with `runt notebooks`")


def _get_notebook(http: Any, notebook_id: str, **params: Any) -> dict[str, Any]:
    try:
        return http.get(f"/api/notebooks/{notebook_id}", params=params or None)
    except NotFoundError:
        raise _missing(notebook_id) from None


@click.group(invoke_without_command=True)
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def notebooks(ctx: click.Context, as_json: bool) -> None:
    """List the daemon's notebooks (newest first), with their runtime and peers; `rm` removes some.

    \b
    Example:
      runt notebooks
      runt notebooks --json
      runt notebooks rm nb-01J… nb-01K…
    """
    if ctx.invoked_subcommand is not None:
        return
    with daemon_http() as http:
        items = http.get("/api/notebooks")
    if as_json:
        print_json(items)
        return
    if not items:
        click.echo("no notebooks (create one with `runt console`, `runt start` or `runt import FILE`)")
        return
    rows = []
    for nb in items:
        runtime = nb.get("runtime") or {}
        rt = f"{runtime.get('kernel_name')} ({runtime.get('status')})" if runtime else ""
        rows.append([nb["id"], nb.get("title") or "", nb.get("cells"), nb.get("head_seq"), rt,
                     len(nb.get("peers") or []), when(nb.get("updated_at"))])
    table(["ID", "TITLE", "CELLS", "SEQ", "RUNTIME", "PEERS", "UPDATED"], rows)


def remove_notebooks(http: Any, ids: list[str]) -> tuple[list[str], list[tuple[str, RuntimedError]]]:
    """Delete each notebook through the daemon (which stops its runtime first); one failure does not
    stop the others. Returns the removed ids and the (id, error) of the rest."""
    removed: list[str] = []
    failures: list[tuple[str, RuntimedError]] = []
    for notebook_id in dict.fromkeys(ids):  # an id given twice is removed once
        try:
            http.request("DELETE", f"/api/notebooks/{quote(notebook_id, safe='')}")
        except NotFoundError:
            failures.append((notebook_id, _missing(notebook_id)))
        except RuntimedError as exc:
            failures.append((notebook_id, exc))
        else:
            removed.append(notebook_id)
    return removed, failures


@notebooks.command("rm")
@click.argument("notebook_ids", metavar="ID...", nargs=-1, required=True)
def rm(notebook_ids: tuple[str, ...]) -> None:
    """Remove notebooks from the daemon, printing each removed id.

    A notebook goes with its whole history; a runtime still running for it is stopped first.
    An unknown id is an error (exit 4); the others are still removed.

    \b
    Example:
      runt notebooks rm nb-01J… nb-01K…
    """
    with daemon_http() as http:
        removed, failures = remove_notebooks(http, list(notebook_ids))
    for notebook_id in removed:
        click.echo(f"removed {notebook_id}")
    codes = [report(exc) for _, exc in failures]
    if removed:
        note(f"removed {len(removed)} notebook{'s' if len(removed) != 1 else ''}")
    if codes:
        raise click.exceptions.Exit(codes[0])


def can_open_browser() -> bool:
    if in_ci():
        return False
    return sys.platform == "darwin" or bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


@click.command("open")
@click.argument("notebook_id", metavar="ID")
@click.option("--no-browser", is_flag=True, help="Only print the URL.")
def open_(notebook_id: str, no_browser: bool) -> None:
    """Print the live URL of a notebook (it carries the token) and open it in a browser when one is available.

    \b
    Example:
      runt open nb-01J…
    """
    with daemon_http() as http:
        _get_notebook(http, notebook_id)
        endpoint = http.endpoint
    from urllib.parse import urlencode

    url = f"{endpoint.url}/?{urlencode({'notebook': notebook_id, 'token': endpoint.token})}"
    click.echo(url)
    if not no_browser and can_open_browser():
        import webbrowser

        if webbrowser.open(url):
            note("opened in your browser")


@click.command("import")
@click.argument("file", type=click.Path(dir_okay=False, allow_dash=True))
@click.option("--id", "notebook_id", metavar="ID", help="The new notebook's id (default: generated).")
@click.option("--title", default=None, help="The notebook's title (default: from the file).")
def import_(file: str, notebook_id: str | None, title: str | None) -> None:
    """Import an .ipynb (or .yaml/.yml) notebook file into the daemon and print the new notebook's id.

    FILE '-' reads an .ipynb from stdin.

    \b
    Example:
      runt import analysis.ipynb
      runt import pipeline.yaml --id pipeline
    """
    if file == "-":
        data = sys.stdin.buffer.read()
    else:
        path = Path(file)
        if not path.exists():
            raise CliError(f"no such file: {file}", NOT_FOUND)
        data = path.read_bytes()
        if path.suffix.lower() in (".yaml", ".yml"):
            import nbformat

            from runtimed.formats import read_yaml_notebook

            try:
                text = data.decode("utf-8-sig")
            except UnicodeDecodeError as exc:
                raise CliError(f"{file}: not UTF-8 text ({exc})") from None
            nb, _parameters = read_yaml_notebook(text)
            data = nbformat.writes(nb).encode()
    params = {k: v for k, v in (("id", notebook_id), ("title", title)) if v is not None}
    with daemon_http() as http:
        info = http.post("/api/notebooks/import", params=params or None, content=data,
                         headers={"Content-Type": "application/x-ipynb+json"})
    click.echo(info["id"])
    note(f"imported {file} as {info['id']} ({info.get('cells', '?')} cells); open it with `runt open {info['id']}`")


@click.command()
@click.argument("notebook_id", metavar="ID")
@click.option("-o", "--output", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write to this file (.ipynb, or .yaml/.yml for a YAML notebook); default stdout.")
@click.option("--at", "at_seq", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Export the notebook as it was after this seq.")
def export(notebook_id: str, output: str | None, at_seq: int | None) -> None:
    """Export a notebook as .ipynb (to stdout, or to a file with -o).

    \b
    Example:
      runt export nb-01J… -o analysis.ipynb
      runt export nb-01J… --at 42 > then.ipynb
    """
    with daemon_http() as http:
        try:
            text = http.request("GET", f"/api/notebooks/{notebook_id}/export",
                                params={"at": at_seq} if at_seq is not None else None).text
        except NotFoundError:
            raise _missing(notebook_id) from None
    if output and output != "-" and Path(output).suffix.lower() in (".yaml", ".yml"):
        import nbformat

        from runtimed.formats import write_yaml_notebook

        text = write_yaml_notebook(nbformat.reads(text, as_version=4))
    if not output or output == "-":
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
        return
    Path(output).write_text(text if text.endswith("\n") else text + "\n")
    note(f"wrote {output}")


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 1] + "…"


def summarize(args: dict[str, Any]) -> str:
    """A one-line digest of an event's args (the Yjs update of a source edit is not shown)."""
    parts = []
    for key, value in args.items():
        if key == "update":
            parts.append(f"update=<{len(str(value))} b64>")
            continue
        parts.append(f"{key}={_short(value, 40)}")
    return _short(" ".join(parts), 90)


def actor_text(actor: dict[str, Any]) -> str:
    name = actor.get("name") or actor.get("id", "")
    kind = actor.get("kind", "")
    return f"{name} ({kind})" if kind else str(name)


@click.command()
@click.argument("notebook_id", metavar="ID")
@click.option("--at", "at_seq", type=click.IntRange(min=0), default=None, metavar="SEQ",
              help="Show the notebook's state (cells and outputs) after this seq instead of the events.")
@click.option("--since", type=click.IntRange(min=0), default=0, show_default=True, help="Events after this seq.")
@click.option("-n", "--limit", type=click.IntRange(min=1), default=None, help="Show at most this many (latest) events.")
@click.option("--actor", "actor_kind", type=click.Choice(["human", "agent", "runtime", "automation", "system"]),
              default=None, metavar="KIND", help="Only events by this kind of actor (human, agent, runtime, …).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def history(notebook_id: str, at_seq: int | None, since: int, limit: int | None, actor_kind: str | None,
            as_json: bool) -> None:
    """Show a notebook's event log (seq, time, event, actor), or its state at a seq with --at.

    \b
    Example:
      runt history nb-01J…
      runt history nb-01J… --at 12
      runt history nb-01J… --actor agent
    """
    with daemon_http() as http:
        if at_seq is not None:
            view = _get_notebook(http, notebook_id, at=at_seq)
        else:
            try:
                body = http.get(f"/api/notebooks/{notebook_id}/events", params={"since": since, "limit": 100_000})
            except NotFoundError:
                raise _missing(notebook_id) from None
    if at_seq is not None:
        _show_state(view, at_seq, as_json)
        return
    events = [e for e in body["events"] if actor_kind in (None, (e.get("actor") or {}).get("kind"))]
    events = events[-limit:] if limit else events
    if as_json:
        print_json({"head": body["head"], "events": events})
        return
    rows = [[e["seq"], when(e.get("ts")), e["name"], actor_text(e.get("actor") or {}), summarize(e.get("args") or {})]
            for e in events]
    table(["SEQ", "TIME", "EVENT", "ACTOR", "ARGS"], rows)
    note(f"head seq {body['head']}; `runt history {notebook_id} --at SEQ` shows the notebook as it was then")


def _show_state(view: dict[str, Any], at_seq: int, as_json: bool) -> None:
    if as_json:
        print_json(view)
        return
    from rich.markup import escape
    from rich.panel import Panel
    from rich.text import Text

    console = out_console()
    head = min(at_seq, view.get("head_seq") or at_seq)
    console.print(f"[bold]{escape(str(view.get('id')))}[/] {escape(view.get('title') or '')} — state at seq {head}")
    kernel = (view.get("metadata") or {}).get("kernelspec") or {}
    if kernel:
        console.print(f"kernel: {escape(str(kernel.get('name')))}")
    for i, cell in enumerate(view.get("cells") or []):
        count = cell.get("execution_count")
        label = f"[{i}] {cell['cell_type']} {cell['id']}" + (f"  In [{count}]" if count else "")
        body = Text(cell.get("source") or "")
        outputs = []
        for o in cell.get("outputs") or []:
            if o.get("output_type") == "stream":
                outputs.append(o.get("text") or "")
            elif o.get("output_type") == "error":
                outputs.append(f"{o.get('ename')}: {o.get('evalue')}")
            else:
                data = o.get("data") or {}
                outputs.append(str(data.get("text/plain") or ", ".join(data)))
        if outputs:
            body.append("\n── output ──\n", style="dim")
            body.append("".join(x if x.endswith("\n") else x + "\n" for x in outputs).rstrip("\n"))
        console.print(Panel(body, title=escape(label), title_align="left", expand=False))
    if not view.get("cells"):
        console.print("(no cells)")


@click.command()
@click.argument("notebook_id", metavar="ID")
@click.argument("sql")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def query(notebook_id: str, sql: str, as_json: bool) -> None:
    """Run a read-only SQL query on a notebook's projection (tables: cells, outputs, events, …).

    A query that would write, or reach outside the notebook (ATTACH, VACUUM INTO), is refused
    (exit 5); one that runs longer than RUNTIMED_QUERY_TIMEOUT (10 s) is stopped (exit 7); at most
    RUNTIMED_QUERY_MAX_ROWS rows (100,000) come back, and the output says when it was cut.

    \b
    Example:
      runt query nb-01J… "SELECT id, cell_type, source FROM cells"
      runt query nb-01J… "SELECT name, COUNT(*) FROM events GROUP BY name" --json
    """
    with daemon_http() as http:
        try:
            result = http.post(f"/api/notebooks/{notebook_id}/query", json={"sql": sql})
        except NotFoundError:
            raise _missing(notebook_id) from None
        except RuntimedError as exc:
            if exc.code == "read_only":
                raise CliError(f"refused: {exc.message}", REFUSED,
                               hint="the notebook can only change through events (runt exec, the web UI, the API)") \
                    from None
            if exc.code == "sql_error":
                raise CliError(exc.message, FAILURE) from None
            raise
    if as_json:
        print_json([dict(zip(result["columns"], row, strict=False)) for row in result["rows"]])
        return
    table(result["columns"] or ["(no columns)"], result["rows"])
    count = len(result["rows"])
    cut = "; more rows matched: add a LIMIT (the daemon returns at most RUNTIMED_QUERY_MAX_ROWS)" \
        if result.get("truncated") else ""
    note(f"{count} row{'s' if count != 1 else ''}{cut}")
