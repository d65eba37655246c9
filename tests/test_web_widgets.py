"""Widgets in the browser: real daemon, real kernel, headless Chromium, two pages.

A slider moved in one page changes the other page and the kernel's value; interact re-runs its function;
an anywidget counter counts; a dragged slider writes a bounded number of events; closing every page and
reloading keeps the state, and a stopped runtime leaves the last state shown as not connected.
"""

from __future__ import annotations

import time
import uuid

import pytest
from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def run(api: Api, nb: str, cell_id: str) -> str:
    queue_id = f"q-{uuid.uuid4().hex[:10]}"
    api.push(nb, [{"id": str(uuid.uuid4()), "name": "executionRequested", "v": 1,
                   "args": {"queueId": queue_id, "cellId": cell_id}}])
    return queue_id


def wait_done(api: Api, nb: str, cell_id: str, queue_id: str) -> dict:
    deadline = time.monotonic() + RUN_TIMEOUT / 1000
    while time.monotonic() < deadline:
        c = next(c for c in api.get(nb)["cells"] if c["id"] == cell_id)
        if c["execution"] and c["execution"]["queue_id"] == queue_id and c["execution"]["status"] in (
                "success", "error", "cancelled"):
            assert c["execution"]["status"] == "success", c
            return c
        time.sleep(0.1)
    raise AssertionError(f"{cell_id} did not finish")


def stdout(c: dict) -> str:
    return "".join(o.get("text", "") for o in c["outputs"] if o["output_type"] == "stream")


def widget(api: Api, nb: str, model_name: str) -> dict:
    return next(w for w in api.get(nb)["widgets"] if w["state"].get("_model_name") == model_name)


async def shown(page, cell_id: str):
    """The frame of the cell's (first) widget output, once its manager rendered the view."""
    view = cell(page, cell_id).locator("[data-testid=widget-view]").first
    await view.wait_for(timeout=RUN_TIMEOUT)
    await page.wait_for_function(
        "(id) => document.querySelector(`[data-cell-id='${id}'] [data-testid=widget-view]`)?.dataset.rendered === '1'",
        arg=cell_id, timeout=60_000)
    return cell(page, cell_id).frame_locator("iframe[data-testid=widget-frame]").first


async def set_readout(frame, value: int) -> None:
    """Type a value into an ipywidgets slider's readout, as a person would."""
    readout = frame.locator(".widget-readout").first
    await readout.click()
    await readout.press("Control+a")
    await readout.type(str(value))
    await readout.press("Enter")


SLIDER = "import ipywidgets as w\nslider = w.IntSlider(value=3, max=100, description='n')\nslider"


async def test_slider_in_two_pages_the_kernel_and_after_every_page_closed(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Widgets", [("code", SLIDER), ("code", "print('kernel sees', slider.value)")])
    wait_done(api, nb, "cell-0", run(api, nb, "cell-0"))
    async with chromium() as browser:
        alice = await open_notebook(browser, daemon, nb, "Alice")
        bob = await open_notebook(browser, daemon, nb, "Bob")
        a_frame, b_frame = await shown(alice, "cell-0"), await shown(bob, "cell-0")
        await b_frame.locator(".widget-readout", has_text="3").wait_for()

        await set_readout(a_frame, 42)
        await b_frame.locator(".widget-readout", has_text="42").wait_for(timeout=30_000)  # the other page
        assert widget(api, nb, "IntSliderModel")["state"]["value"] == 42  # the document
        c = wait_done(api, nb, "cell-1", run(api, nb, "cell-1"))
        assert stdout(c).strip() == "kernel sees 42"  # the kernel

        # A drag: many slide events in a row; the page sends at most one change per 100 ms.
        before = len(api.client.get(f"/api/notebooks/{nb}/events").json()["events"])
        handle = a_frame.locator(".noUi-handle").first
        box = await handle.bounding_box()
        track = await a_frame.locator(".noUi-target").first.bounding_box()
        await alice.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        started = time.monotonic()
        await alice.mouse.down()
        moves = 150
        await alice.mouse.move(track["x"] + track["width"] * 0.2, box["y"] + box["height"] / 2, steps=moves)
        await alice.mouse.up()
        await alice.wait_for_function("() => window.__runtimed.sync.unacked === 0")
        elapsed = time.monotonic() - started
        final = await a_frame.locator(".widget-readout").first.inner_text()
        await b_frame.locator(".widget-readout", has_text=final).wait_for(timeout=30_000)
        events = api.client.get(f"/api/notebooks/{nb}/events", params={"since": before}).json()["events"]
        requested = [e for e in events if e["name"] == "commUpdateRequested"]
        # at most one change per 100 ms while dragging (however slow the machine), and fewer than the moves
        assert 1 <= len(requested) <= elapsed / 0.1 + 3, f"{len(requested)} events in {elapsed:.1f} s"
        assert len(requested) < moves, f"{len(requested)} events for {moves} slide moves"
        assert widget(api, nb, "IntSliderModel")["state"]["value"] == int(final)

        # Every page closed, then a new one: the state is the document's.
        await alice.context.close()
        await bob.context.close()
        carol = await open_notebook(browser, daemon, nb, "Carol")
        c_frame = await shown(carol, "cell-0")
        await c_frame.locator(".widget-readout", has_text=final).wait_for()
        assert await cell(carol, "cell-0").locator("[data-testid=widget-offline]").is_hidden()

        # The runtime stops: the last state stays, marked as not connected to a live kernel.
        runtime_id = api.get(nb)["runtime"]["runtime_id"]
        api.client.delete(f"/api/runtimes/{runtime_id}").raise_for_status()
        await cell(carol, "cell-0").locator("[data-testid=widget-offline]").wait_for(timeout=30_000)
        await carol.reload()
        await carol.wait_for_selector("#app[data-connection=live]")
        c_frame = await shown(carol, "cell-0")
        await c_frame.locator(".widget-readout", has_text=final).wait_for()
        assert await cell(carol, "cell-0").locator("[data-testid=widget-offline]").is_visible()

        # The history view shows the widget as it was: before the first change, the slider was at 3.
        log = api.client.get(f"/api/notebooks/{nb}/events").json()["events"]
        first_change = next(e["seq"] for e in log if e["name"] == "commUpdateRequested")
        await carol.locator("[data-testid=history-slider]").fill(str(first_change - 1))
        await carol.wait_for_selector("[data-testid=history-cell] [data-testid=widget-view][data-rendered='1']",
                                      timeout=60_000)
        past = carol.locator("[data-testid=history-cell]").first.frame_locator("iframe[data-testid=widget-frame]")
        await past.locator(".widget-readout", has_text="3").wait_for()
        await carol.locator("[data-testid=history-live]").click()
        await c_frame.locator(".widget-readout", has_text=final).wait_for()
        assert not carol.errors, carol.errors


INTERACT = """from ipywidgets import interact
@interact(x=5)
def double(x):
    print('double', x * 2)
"""

COUNTER = """import anywidget, traitlets
class Counter(anywidget.AnyWidget):
    _esm = '''
    export default { render({ model, el }) {
      const b = document.createElement('button'); b.className = 'counter';
      const show = () => { b.textContent = 'count ' + model.get('count') };
      b.onclick = () => { model.set('count', model.get('count') + 1); model.save_changes() };
      model.on('change:count', show); show(); el.append(b);
    } }'''
    count = traitlets.Int(0).tag(sync=True)
counter = Counter()
counter
"""


async def test_interact_and_an_anywidget_counter(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Interact", [("code", INTERACT), ("code", COUNTER), ("code", "print('count is', counter.count)")])
    wait_done(api, nb, "cell-0", run(api, nb, "cell-0"))
    wait_done(api, nb, "cell-1", run(api, nb, "cell-1"))
    async with chromium() as browser:
        alice = await open_notebook(browser, daemon, nb, "Alice")
        bob = await open_notebook(browser, daemon, nb, "Bob")
        a_frame, b_frame = await shown(alice, "cell-0"), await shown(bob, "cell-0")
        await a_frame.get_by_text("double 10").wait_for(timeout=30_000)  # the Output widget's captured print
        await set_readout(a_frame, 7)  # interact(x=5): a slider from -5 to 15
        await a_frame.get_by_text("double 14").wait_for(timeout=30_000)  # interact re-ran the function
        await b_frame.get_by_text("double 14").wait_for(timeout=30_000)

        a_counter, b_counter = await shown(alice, "cell-1"), await shown(bob, "cell-1")
        button = a_counter.locator("button.counter")
        await button.wait_for()
        for _ in range(3):
            await button.click()
        await b_counter.locator("button.counter", has_text="count 3").wait_for(timeout=30_000)
        await alice.wait_for_function("() => window.__runtimed.sync.unacked === 0")
        c = wait_done(api, nb, "cell-2", run(api, nb, "cell-2"))
        assert stdout(c).strip() == "count is 3"
        assert not alice.errors and not bob.errors, alice.errors + bob.errors


async def test_widget_state_saved_by_nbclient_renders_after_import(daemon, tmp_path) -> None:
    """A notebook executed by nbclient (which stores metadata.widgets) shows its widgets' saved state, not live."""
    import json

    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        "import ipywidgets as w\nw.IntSlider(value=7, max=10, description='saved')")])
    NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert "application/vnd.jupyter.widget-state+json" in nb.metadata.widgets
    api = Api(daemon)
    r = api.client.post("/api/notebooks/import", params={"id": "from-nbclient"}, content=json.dumps(nb))
    assert r.status_code == 201, r.text
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, "from-nbclient")
        cell_id = api.get("from-nbclient")["cells"][0]["id"]
        frame = await shown(page, cell_id)
        await frame.locator(".widget-readout", has_text="7").wait_for()
        await frame.get_by_text("saved").wait_for()
        assert await cell(page, cell_id).locator("[data-testid=widget-offline]").is_visible()
        assert not page.errors, page.errors
