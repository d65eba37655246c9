"""Schema evolution: stored events of an older version, and projections of an older layout.

Old event versions: a test-only v2 of ``cellMetadataSet`` changes the model for real (v1 sets one
key, ``{cellId, key, value}``; v2 sets several, ``{cellId, entries: {key: value}}``), with the
upcaster v1 -> v2. The materializer handles only the current version of each event, so an honest
evolution brings three things, and the test registers all three: the new model and its upcaster
(``events.add_version``), and the handler of the new version (here it applies each entry through
the v1 handler, so both versions mean exactly the same to the projection). Events are written while
only v1 exists, then v2 is registered and the store reopened.

Old projection version: ``tests/fixtures/legacy-v1.db`` is a notebook database written by the first
wave (no ``projection_meta``); a copy is opened in-process and by a real daemon, which must rebuild
its projection from the untouched log before serving it.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import DaemonProcess

from runtimed.schema import events as ev
from runtimed.schema import materializer, views
from runtimed.schema.events import Args, EventSpec, Id, make_event
from runtimed.schema.ids import new_id
from runtimed.schema.ordering import key_between
from runtimed.schema.replica import Replica
from runtimed.schema.tables import PROJECTION_VERSION, stored_projection_version
from runtimed.store.sqlite import SQLiteEventStore, SQLiteNotebookLog

HUMAN = {"id": "alice", "kind": "human", "name": "Alice"}
LEGACY = Path(__file__).resolve().parent / "fixtures" / "legacy-v1.db"
LEGACY_ID = "legacy-v1"


# -- a test-only v2 of cellMetadataSet ------------------------------------------------------------


class CellMetadataSetV2(Args):
    """v2: set several keys at once (a null value removes its key)."""

    cell_id: Id
    entries: dict[str, Any]


def metadata_v1_to_v2(args: dict[str, Any]) -> dict[str, Any]:
    return {"cellId": args["cellId"], "entries": {args["key"]: args.get("value")}}


V1_HANDLER = materializer.HANDLERS["cellMetadataSet"]


def cell_metadata_set_v2(p: materializer.Projection, env: materializer.Envelope, a: CellMetadataSetV2) -> None:
    for key, value in a.entries.items():
        V1_HANDLER(p, env, ev.CellMetadataSet(cell_id=a.cell_id, key=key, value=value))


@contextlib.contextmanager
def evolved_catalog() -> Iterator[Callable[[], None]]:
    """Yields ``upgrade()``, which makes v2 of cellMetadataSet current; on exit the catalog is as before.

    ``CATALOG``, ``VERSIONS`` and ``HANDLERS`` are module globals that other modules hold by reference
    (``from runtimed.schema.events import CATALOG`` included), so they are restored in place (cleared
    and refilled with their old items), never rebound to new dicts.
    """
    tables: list[dict[Any, Any]] = [ev.CATALOG, ev.VERSIONS, materializer.HANDLERS]
    saved = [(table, dict(table)) for table in tables]

    def upgrade() -> None:
        ev.add_version(EventSpec("cellMetadataSet", 2, CellMetadataSetV2, metadata_v1_to_v2))
        materializer.HANDLERS["cellMetadataSet"] = cell_metadata_set_v2

    try:
        yield upgrade
    finally:
        for table, items in saved:
            table.clear()
            table.update(items)


@pytest.fixture
def upgrade() -> Iterator[Callable[[], None]]:
    with evolved_catalog() as fn:
        yield fn


def test_the_evolved_catalog_is_restored_in_place():
    catalog, versions, handlers = ev.CATALOG, ev.VERSIONS, materializer.HANDLERS
    before = (dict(catalog), dict(versions), dict(handlers))
    with evolved_catalog() as upgrade:
        upgrade()
        assert make_event("cellMetadataSet", cellId="c1", entries={"k": 1})["v"] == 2
        assert ("cellMetadataSet", 1) in ev.VERSIONS and ("cellMetadataSet", 2) in ev.VERSIONS
    assert before == (ev.CATALOG, ev.VERSIONS, materializer.HANDLERS)
    assert ev.CATALOG is catalog and ev.VERSIONS is versions and materializer.HANDLERS is handlers
    assert make_event("cellMetadataSet", cellId="c1", key="k", value=1)["v"] == 1


def test_add_version_refuses_a_gap_or_a_missing_upcaster(upgrade):
    with pytest.raises(ValueError, match="must follow v1"):
        ev.add_version(EventSpec("cellMetadataSet", 3, CellMetadataSetV2, metadata_v1_to_v2))
    with pytest.raises(ValueError, match="bring its upcaster"):
        ev.add_version(EventSpec("cellMetadataSet", 2, CellMetadataSetV2))
    with pytest.raises(ValueError, match="starts at version 1"):
        ev.add_version(EventSpec("somethingNew", 2, CellMetadataSetV2, metadata_v1_to_v2))
    assert ev.CATALOG["cellMetadataSet"].version == 1  # nothing was registered


def v1_metadata(cell_id: str, key: str, value: Any) -> dict[str, Any]:
    """A cellMetadataSet v1 on the wire, as a client built before v2 sends it (a null value is left out)."""
    args = {"cellId": cell_id, "key": key} if value is None else {"cellId": cell_id, "key": key, "value": value}
    return {"id": new_id(), "name": "cellMetadataSet", "v": 1, "args": args}


def replay(nb_log: SQLiteNotebookLog, until: int | None = None) -> Replica:
    replica = Replica(nb_log.notebook_id, record_events=False)
    replica.apply_wire(nb_log.read(0, until))
    return replica


def stored_rows(path: Path) -> list[tuple[Any, ...]]:
    """The events table exactly as stored (read-only, beside the store): what no upgrade may change."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT seq, id, name, v, args, actor, ts FROM events ORDER BY seq").fetchall()
    finally:
        conn.close()


def test_events_stored_as_v1_are_read_and_replayed_as_v2(tmp_path, upgrade):
    # snapshot_every is larger than the log: state_at replays every event from the log
    store = SQLiteEventStore(tmp_path, snapshot_every=1000)
    nb_log = store.log("nb")
    nb_log.append([make_event("notebookCreated", title="T"),
                   make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0", source="x"),
                   v1_metadata("c1", "k", 1), v1_metadata("c1", "tags", ["a"])], HUMAN)
    nb_log.append([v1_metadata("c1", "k", None)], HUMAN)  # v1's way to remove a key
    states = {seq: nb_log.state_at(seq).dump() for seq in range(nb_log.head + 1)}
    v1_events = nb_log.read()
    assert [e["v"] for e in v1_events if e["name"] == "cellMetadataSet"] == [1, 1, 1]
    store.close()
    on_disk = stored_rows(store.dir / "nb.db")

    upgrade()
    store = SQLiteEventStore(tmp_path, snapshot_every=1000)
    nb_log = store.log("nb")
    events = nb_log.read()
    assert [(e["seq"], e["id"]) for e in events] == [(e["seq"], e["id"]) for e in v1_events]
    assert [(e["v"], e["args"]) for e in events if e["name"] == "cellMetadataSet"] == [
        (2, {"cellId": "c1", "entries": {"k": 1}}),
        (2, {"cellId": "c1", "entries": {"tags": ["a"]}}),
        (2, {"cellId": "c1", "entries": {"k": None}}),
    ]
    assert [e for e in events if e["name"] != "cellMetadataSet"] == [
        e for e in v1_events if e["name"] != "cellMetadataSet"]
    assert [orjson.loads(b) for b in nb_log.read_encoded()] == events
    assert [orjson.loads(b) for b in nb_log.read_encoded(3, 4)] == events[3:4]
    # replaying the upcast events through the v2 handler gives the state the v1 events gave
    for seq, dump in states.items():
        assert nb_log.state_at(seq).dump() == dump, seq
        assert replay(nb_log, seq).dump() == dump, seq
    assert nb_log.view(views.cell, "c1")["metadata"] == {"tags": ["a"]}  # type: ignore[index]

    # a client that still speaks v1 may push it: accepted, upcast, stored as v2
    old_client = v1_metadata("c1", "n", 5)
    assert ev.CATALOG["cellMetadataSet"].version == 2 and old_client["v"] == 1
    new_client = make_event("cellMetadataSet", cellId="c1", entries={"a": 1, "b": 2, "tags": None})
    assert [r.get("seq") for r in nb_log.append([old_client, new_client], HUMAN)] == [6, 7]
    assert [(e["v"], e["args"]) for e in nb_log.read(5)] == [
        (2, {"cellId": "c1", "entries": {"n": 5}}),
        (2, {"cellId": "c1", "entries": {"a": 1, "b": 2, "tags": None}}),
    ]
    assert nb_log.view(views.cell, "c1")["metadata"] == {"n": 5, "a": 1, "b": 2}  # type: ignore[index]
    assert replay(nb_log).dump() == nb_log.state_at().dump()
    # the stored v1 rows are untouched: upcasting happens on read, the log never changes
    assert stored_rows(store.dir / "nb.db")[:5] == on_disk
    store.close()


@pytest.mark.parametrize(("version", "args", "code"), [
    (3, {"cellId": "c1", "entries": {"k": 1}}, "unsupported_version"),
    (0, {"cellId": "c1", "key": "k", "value": 1}, "unsupported_version"),
    ("1", {"cellId": "c1", "key": "k", "value": 1}, "unsupported_version"),
    (True, {"cellId": "c1", "key": "k", "value": 1}, "unsupported_version"),
    (None, {"cellId": "c1", "key": "k", "value": 1}, "unsupported_version"),
    (1, {"cellId": "c1", "entries": {"k": 1}}, "invalid_args"),  # v2 args labelled v1: checked as v1
    (2, {"cellId": "c1", "key": "k", "value": 1}, "invalid_args"),
])
def test_unknown_versions_and_mislabelled_args_are_rejected(tmp_path, upgrade, version, args, code):
    upgrade()
    store = SQLiteEventStore(tmp_path)
    nb_log = store.log("nb")
    nb_log.append([make_event("notebookCreated", title="T"),
                   make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0")], HUMAN)
    result = nb_log.append([{"id": "e1", "name": "cellMetadataSet", "v": version, "args": args}], HUMAN)[0]
    assert result["error"]["code"] == code
    if code == "unsupported_version":
        assert "this server reads v1, v2 (current v2)" in result["error"]["message"]
    assert nb_log.head == 2
    store.close()


# -- an old projection version --------------------------------------------------------------------


def legacy_copy(folder: Path) -> Path:
    """A copy of the legacy database as ``folder/notebooks/legacy-v1.db`` (the fixture is never opened)."""
    target = folder / "notebooks" / f"{LEGACY_ID}.db"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(LEGACY, target)
    return target


def legacy_view(path: Path) -> dict[str, Any]:
    """The notebook as the first wave's projection holds it (before any rebuild)."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        assert stored_projection_version(conn) == 1
        return views.notebook_view(conn)
    finally:
        conn.close()


def check_legacy_notebook(view: dict[str, Any]) -> None:
    cells = view["cells"]
    assert [(c["cell_type"], c["source"]) for c in cells] == [
        ("code", "x = 21\nprint('hello é')"), ("code", "x * 2  # doubled"), ("markdown", "# Title\n\nsome *markdown*")]
    first, second, third = cells
    assert [(o["output_type"], o["name"], o["text"]) for o in first["outputs"]] == [("stream", "stdout", "hello é\n")]
    assert [(o["output_type"], o["data"], o["execution_count"]) for o in second["outputs"]] == [
        ("execute_result", {"text/plain": "42"}, 3)]
    assert second["execution_count"] == 3 and second["execution"]["status"] == "success"
    assert third["outputs"] == [] and third["execution"] is None
    assert view["title"] == LEGACY_ID and view["head_seq"] == 25 and view["runtime"] is None


def test_a_legacy_projection_is_rebuilt_in_process(tmp_path, caplog):
    path = legacy_copy(tmp_path)
    before = legacy_view(path)
    check_legacy_notebook(before)
    rows = stored_rows(path)
    assert len(rows) == 25
    with caplog.at_level(logging.INFO, logger="runtimed.store.sqlite"):
        nb_log = SQLiteNotebookLog(path, LEGACY_ID)
    progress = [r.getMessage() for r in caplog.records]
    assert f"notebook {LEGACY_ID}: projection v1 is older than v{PROJECTION_VERSION}; rebuilding it from 25 events" \
        in progress
    assert f"notebook {LEGACY_ID}: rebuilt 25 of 25 events" in progress
    assert nb_log.view(stored_projection_version) == PROJECTION_VERSION
    assert nb_log.view(views.notebook_view) == before
    assert nb_log.head == 25 and [(e["seq"], e["id"]) for e in nb_log.read()] == [(r[0], r[1]) for r in rows]
    assert replay(nb_log).dump() == nb_log.state_at().dump()
    last = nb_log.view(views.ordered_cells)[-1]["fractional_index"]
    created = make_event("cellCreated", cellId="c-new", cellType="code", fractionalIndex=key_between(last, None))
    assert nb_log.append([created], HUMAN)[0]["seq"] == 26
    nb_log.close()
    assert stored_rows(path)[:25] == rows  # the log itself was not touched
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="runtimed.store.sqlite"):
        reopened = SQLiteNotebookLog(path, LEGACY_ID)  # current now: no second rebuild
    assert not [r for r in caplog.records if "rebuil" in r.getMessage()]
    assert reopened.head == 26 and len(reopened.view(views.ordered_cells)) == 4
    reopened.close()


def test_migrate_rebuilds_only_older_projections(tmp_path):
    legacy_copy(tmp_path)
    store = SQLiteEventStore(tmp_path)
    store.log("current").append([make_event("notebookCreated", title="now")], HUMAN)
    assert store.migrate() == [LEGACY_ID]
    assert store.require(LEGACY_ID).view(stored_projection_version) == PROJECTION_VERSION
    store.close()
    again = SQLiteEventStore(tmp_path)
    assert again.migrate() == []
    check_legacy_notebook(again.require(LEGACY_ID).view(views.notebook_view))
    again.close()


def test_a_daemon_rebuilds_a_legacy_projection_before_serving_it(tmp_path):
    home = tmp_path / "home"
    path = legacy_copy(home)
    rows = stored_rows(path)
    daemon = DaemonProcess(home, "--no-runtimes")
    daemon.start()
    try:
        log_text = daemon.home.log_file.read_text()
        assert f"notebook {LEGACY_ID}: projection v1 is older than v{PROJECTION_VERSION}; rebuilding it from 25 " \
               "events" in log_text
        assert f"notebook {LEGACY_ID}: rebuilt 25 of 25 events" in log_text
        assert f"rebuilt the projections of 1 notebook(s) from their logs: {LEGACY_ID}" in log_text
        with httpx.Client(base_url=daemon.url, headers={"Authorization": f"Bearer {daemon.token}"}, timeout=30) as api:
            r = api.get(f"/api/notebooks/{LEGACY_ID}")
            assert r.status_code == 200, r.text
            view = r.json()
            check_legacy_notebook(view)
            r = api.get(f"/api/notebooks/{LEGACY_ID}/events")
            assert r.status_code == 200, r.text
            served = r.json()
            assert served["head"] == 25
            assert [(e["seq"], e["id"], e["name"]) for e in served["events"]] == [(s, i, n) for s, i, n, *_ in rows]
            created = make_event("cellCreated", cellId="c-new", cellType="code", source="print(1)",
                                 fractionalIndex=key_between(view["cells"][-1]["fractional_index"], None))
            r = api.post(f"/api/notebooks/{LEGACY_ID}/events", json={"events": [created], "actor": HUMAN})
            assert r.status_code == 200 and r.json()["results"] == [{"id": created["id"], "seq": 26}], r.text
            after = api.get(f"/api/notebooks/{LEGACY_ID}").json()
            assert [c["id"] for c in after["cells"]][-1] == "c-new" and after["head_seq"] == 26
    finally:
        daemon.stop()
    assert stored_rows(path)[:25] == rows  # the first 25 events exactly as the first wave wrote them
    # a second start finds the projection current: no rebuild
    daemon.start()
    try:
        assert daemon.home.log_file.read_text().count("rebuilding it from") == 1
    finally:
        daemon.stop()
