"""``runt store copy``: move notebooks, with their whole logs, from one store to another.

The copy keeps every event as stored (seq, id, actor, time), replayed through the materializer
into the destination, and is verified per notebook by a checksum of the whole log read back from
both stores. Running it again copies only what is new: a notebook whose destination log is a prefix
of the source's is continued; one whose log differs is refused and left alone.
"""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import Any

import click
import orjson

from runtimed.cli.common import home, print_json, table
from runtimed.cli.errors import USAGE, CliError
from runtimed.errors import RuntimedError
from runtimed.store.base import NotebookLog
from runtimed.store.urls import is_postgres, open_store

CHUNK = 2000


def checksum(nb_log: NotebookLog, until: int | None = None) -> str:
    """SHA-256 of the log up to ``until`` (canonical JSON of each event, in seq order)."""
    digest = hashlib.sha256()
    since = 0
    while True:
        events = nb_log.read(since, until, CHUNK)
        if not events:
            return digest.hexdigest()
        for event in events:
            digest.update(orjson.dumps(event, option=orjson.OPT_SORT_KEYS))
            digest.update(b"\n")
        since = events[-1]["seq"]


def copy_notebook(source: NotebookLog, dest: Any) -> tuple[str, int]:
    """Copy what ``dest`` lacks of ``source``'s log; (what was done, events copied)."""
    head = dest.head
    if head > source.head or head and checksum(dest) != checksum(source, head):
        raise RuntimedError(f"notebook {source.notebook_id!r} exists in the destination with a different log; "
                            "delete it there first (`runt notebooks rm`) to copy it again", code="notebook_exists")
    copied = 0
    while dest.head < source.head:
        events = source.read(dest.head, None, CHUNK)
        dest.import_events(events)
        copied += len(events)
    return ("copied" if head == 0 else "continued" if copied else "up to date"), copied


@click.group()
def store() -> None:
    """Copy notebooks between stores (SQLite homes, PostgreSQL).

    \b
    Example: runt store copy --from sqlite: --to postgresql://runtimed@db.example/notebooks
    """


@store.command()
@click.option("--from", "source_url", required=True, metavar="URL",
              help="The store to read: sqlite:HOME (a home folder; sqlite: is this home), or postgresql://...")
@click.option("--to", "dest_url", required=True, metavar="URL", help="The PostgreSQL store to write: postgresql://...")
@click.option("--notebook", "notebook_ids", multiple=True, metavar="ID", help="Copy only these notebooks (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def copy(source_url: str, dest_url: str, notebook_ids: tuple[str, ...], as_json: bool) -> None:
    """Copy notebooks with their full logs from --from to --to, verified by a checksum per notebook.

    Stop the daemons that write to the source first: events appended during the copy are copied
    only by the next run.

    \b
    Example: runt store copy --from sqlite:~/.local/share/runtimed --to postgresql://runtimed@db/notebooks
    """
    if not is_postgres(dest_url):
        raise CliError(f"--to must be a postgresql:// URL, got {dest_url!r}", USAGE,
                       hint="copying into a SQLite home is not supported yet")
    with tempfile.TemporaryDirectory(prefix="runt-store-copy-") as cache:
        source = open_store(source_url, home().path)
        try:
            dest = open_store(dest_url, Path(cache))
            try:
                ids = list(notebook_ids) or [info["id"] for info in source.list_notebooks()]
                rows: list[dict[str, Any]] = []
                for notebook_id in ids:
                    src_log = source.require(notebook_id)
                    dest_log = dest.log(notebook_id)
                    try:
                        status, copied = copy_notebook(src_log, dest_log)
                    except RuntimedError as exc:
                        rows.append({"id": notebook_id, "status": "refused", "events": 0, "head": src_log.head,
                                     "checksum": "", "error": exc.message})
                        continue
                    src_sum, dest_sum = checksum(src_log), checksum(dest_log)
                    rows.append({"id": notebook_id, "status": status if src_sum == dest_sum else "MISMATCH",
                                 "events": copied, "head": dest_log.head, "checksum": dest_sum})
            finally:
                dest.close()
        finally:
            source.close()
    if as_json:
        print_json(rows)
    else:
        table(["notebook", "status", "copied", "head", "sha256"],
              [[r["id"], r["status"], str(r["events"]), str(r["head"]), r["checksum"][:16] or r.get("error", "")]
               for r in rows])
    bad = [r for r in rows if r["status"] in ("refused", "MISMATCH")]
    if bad:
        raise CliError(f"{len(bad)} notebook(s) not copied: " + "; ".join(f"{r['id']}: {r.get('error') or 'checksum differs'}"
                                                                         for r in bad))
