"""Widgets (ipywidgets, anywidget) as document state: real daemon, real ipykernel, real Session.

The runtime maps the kernel's widget comms to events; these tests check what lands in the log and in
the projection, that a change made through the log reaches the kernel, that kernel-side update floods
are coalesced, that Output widgets capture, that a runtime restart keeps the last state (not live), and
that export writes nbclient's widget-state format and import keeps it.
"""

from __future__ import annotations

import json
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import nbformat
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed import EventRejected, Session
from runtimed.formats.widget_state import WIDGET_STATE_MIME, WIDGET_VIEW_MIME
from runtimed.runtime.comms import COALESCE_INTERVAL
from runtimed.schema import views

pytestmark = pytest.mark.timeout(180)
T = TypeVar("T")


@pytest.fixture(scope="module")
def shared_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    home = tmp_path_factory.mktemp("widgets-home")
    with running_daemon(home, "--pool-size", "1") as proc:
        yield proc


@pytest.fixture
def session(shared_daemon: DaemonProcess) -> Iterator[Session]:
    s = Session()
    yield s
    s.shutdown_kernel()
    s.close()


def eventually(check: Callable[[], T], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s (last value {value!r})")
        time.sleep(0.05)


def run_ok(s: Session, code: str) -> Any:
    result = s.run(textwrap.dedent(code), timeout_secs=90)
    assert result.success, result
    return result


def text_of(result: Any) -> str:
    return "".join(o.text or "" for o in result.outputs if o.output_type == "stream")


def view_id(result: Any) -> str:
    """The model id of the widget a cell displayed."""
    for o in result.outputs:
        if o.data and WIDGET_VIEW_MIME in o.data:
            return str(o.data[WIDGET_VIEW_MIME]["model_id"])
    raise AssertionError(f"no widget view in {result.outputs}")


def test_slider_state_in_document_and_set_from_session(session: Session) -> None:
    result = run_ok(session, "import ipywidgets as w\nslider = w.IntSlider(value=3, max=50)\nslider")
    model = view_id(result)
    state = session.widgets.get(model)
    assert state["_model_name"] == "IntSliderModel" and state["value"] == 3 and state["max"] == 50
    row = next(r for r in session.widgets.list("IntSliderModel") if r["comm_id"] == model)
    assert row["live"] and row["cell_id"] is not None

    session.widgets.set(model, value=17)  # as a page would: the log first, then the kernel
    assert session.widgets.get(model)["value"] == 17
    assert text_of(run_ok(session, "print(slider.value)")).strip() == "17"

    run_ok(session, "slider.value = 21")  # the kernel's change reaches the document
    assert session.widgets.get(model)["value"] == 21


def test_kernel_update_flood_is_coalesced(session: Session) -> None:
    model = view_id(run_ok(session, "import ipywidgets as w\ns = w.IntSlider(max=10_000)\ns"))
    before = len([n for n in session.client.replica.view(views.event_names, 0) if n == "commStateChanged"])
    started = time.monotonic()
    run_ok(session, "for i in range(5000):\n    s.value = i")
    elapsed = time.monotonic() - started
    assert session.widgets.get(model)["value"] == 4999  # the final state is always stored
    names = session.client.replica.view(views.event_names, 0)
    written = len([n for n in names if n == "commStateChanged"]) - before
    # at most one event per model per interval (however slow the machine), the final one included
    assert 1 <= written <= elapsed / COALESCE_INTERVAL + 2, f"{written} state events in {elapsed:.1f} s"
    assert written < 500, f"{written} state events for 5000 kernel updates"


def test_output_widget_and_interact(session: Session) -> None:
    result = run_ok(session, """
        import ipywidgets as w
        from IPython.display import display
        out = w.Output()
        display(out)
        with out:
            print("captured")
        print("in the cell")
    """)
    out_id = view_id(result)
    assert "in the cell" in text_of(result) and "captured" not in text_of(result)
    outputs = eventually(lambda: session.widgets.get(out_id).get("outputs"))
    assert outputs[0]["output_type"] == "stream" and outputs[0]["text"] == "captured\n"

    result = run_ok(session, """
        from ipywidgets import interact
        @interact(x=5)
        def double(x):
            print("double", x * 2)
    """)
    box = session.widgets.get(view_id(result))
    children = [c.removeprefix("IPY_MODEL_") for c in box["children"]]
    slider = next(c for c in children if session.widgets.get(c)["_model_name"] == "IntSliderModel")
    output = next(c for c in children if session.widgets.get(c)["_model_name"] == "OutputModel")
    eventually(lambda: "double 10" in json.dumps(session.widgets.get(output)["outputs"]))
    session.widgets.set(slider, value=8)
    eventually(lambda: "double 16" in json.dumps(session.widgets.get(output)["outputs"]))


def test_anywidget_counter(session: Session) -> None:
    result = run_ok(session, """
        import anywidget, traitlets
        class Counter(anywidget.AnyWidget):
            _esm = "export default { render({ model, el }) { el.textContent = model.get('count') } }"
            count = traitlets.Int(0).tag(sync=True)
        counter = Counter()
        counter
    """)
    model = view_id(result)
    state = session.widgets.get(model)
    assert state["_model_name"] == "AnyModel" and "render" in state["_esm"] and state["count"] == 0
    session.widgets.set(model, count=4)
    assert text_of(run_ok(session, "print(counter.count)")).strip() == "4"


def test_runtime_restart_keeps_last_state_not_live(session: Session, tmp_path: Path) -> None:
    model = view_id(run_ok(session, "import ipywidgets as w\nt = w.Text(value='kept')\nt"))
    session.shutdown_kernel()
    row = eventually(lambda: next(r for r in session.widgets.list() if r["comm_id"] == model and not r["live"]))
    assert row["state"]["value"] == "kept"
    with pytest.raises(EventRejected, match="not connected to a live kernel"):
        session.widgets.set(model, value="changed")

    nb = session.to_ipynb()
    document = nb["metadata"]["widgets"][WIDGET_STATE_MIME]
    assert document["version_major"] == 2 and document["version_minor"] == 0
    entry = document["state"][model]
    assert entry["model_name"] == "TextModel" and entry["model_module"] == "@jupyter-widgets/controls"
    assert entry["state"]["value"] == "kept"
    nbformat.validate(nbformat.from_dict(nb))

    path = tmp_path / "widgets.ipynb"
    path.write_text(json.dumps(nb))
    imported = Session.open_notebook(path)
    try:
        again = imported.to_ipynb()["metadata"]["widgets"][WIDGET_STATE_MIME]
        assert again["state"][model]["state"]["value"] == "kept"
    finally:
        imported.close()


def test_large_buffer_goes_to_an_artifact_and_export_inlines_it(session: Session, shared_daemon: DaemonProcess) -> None:
    import base64

    import httpx

    model = view_id(run_ok(session, """
        import ipywidgets as w
        data = bytes(range(256)) * 1024  # 256 KiB: over the artifact threshold
        image = w.Image(value=data, format='png')
        image
    """))
    row = next(r for r in session.widgets.list("ImageModel") if r["comm_id"] == model)
    (buffer,) = row["buffers"]
    assert buffer["path"] == ["value"] and buffer["size"] == 256 * 1024 and "data" not in buffer  # an artifact

    r = httpx.get(f"{shared_daemon.url}/api/notebooks/{session.notebook_id}/export",
                  headers={"Authorization": f"Bearer {shared_daemon.token}"}, timeout=60)
    r.raise_for_status()
    nb = r.json() if r.headers["content-type"].startswith("application/json") else json.loads(r.text)
    entry = nb["metadata"]["widgets"][WIDGET_STATE_MIME]["state"][model]
    (exported,) = entry["buffers"]
    assert exported["path"] == ["value"] and exported["encoding"] == "base64"
    assert base64.b64decode(exported["data"]) == bytes(range(256)) * 1024
    nbformat.validate(nbformat.from_dict(nb))
    local = session.to_ipynb()  # the client export fetches the buffer artifact as the REST export does
    assert local["metadata"]["widgets"][WIDGET_STATE_MIME]["state"][model] == entry


def test_kernel_restart_keeps_the_models_not_live(session: Session) -> None:
    model = view_id(run_ok(session, "import ipywidgets as w\nb = w.Checkbox(value=True)\nb"))
    session.restart_kernel()
    row = eventually(lambda: next(r for r in session.widgets.list() if r["comm_id"] == model and not r["live"]))
    assert row["state"]["value"] is True
    with pytest.raises(EventRejected, match="not connected to a live kernel"):
        session.widgets.set(model, value=False)


def test_runt_run_writes_widget_state_like_papermill(shared_daemon: DaemonProcess, tmp_path: Path) -> None:
    import subprocess
    import sys

    import papermill

    src = tmp_path / "w.ipynb"
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import ipywidgets as w\nbox = w.VBox([w.IntSlider(value=4), w.Text(value='t')])\nbox")])
    nb.metadata.kernelspec = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, str(src))
    out = tmp_path / "out.ipynb"
    proc = subprocess.run([sys.executable, "-m", "runtimed.cli.main", "run", str(src), str(out), "--no-progress-bar"],
                          env=shared_daemon.env(), capture_output=True, timeout=150)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    ours = nbformat.read(str(out), 4)
    theirs = papermill.execute_notebook(str(src), str(tmp_path / "pm.ipynb"), {}, progress_bar=False)
    nbformat.validate(ours)

    def models(notebook: Any) -> list[tuple[str, Any]]:
        state = notebook.metadata.widgets[WIDGET_STATE_MIME]["state"]
        return sorted((m["model_name"], m["state"].get("value")) for m in state.values())

    assert models(ours) == models(theirs)
    assert ("IntSliderModel", 4) in models(ours) and ("TextModel", "t") in models(ours)
