"""The page renders artifact-backed outputs as if they were inline (issue 15, item 4), in a real Chromium.

A real kernel displays a matplotlib PNG, a long text, an HTML table and a JSON value, each over the
offload threshold, so the log holds references; the page loads them from ``/api/artifacts/{sha}`` with
its sign-in cookie. An output far below the fold is fetched only once it scrolls into view.
"""

from __future__ import annotations

import pytest
from test_web import RUN_TIMEOUT, Api, cell, chromium, open_notebook

from runtimed.schema.artifact_refs import is_ref

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def png_code(seed: int) -> str:
    """A noisy matplotlib figure at a high dpi: a PNG of several hundred KiB (noise does not compress)."""
    return f"""
import io
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
fig = plt.figure(figsize=(4, 3), dpi=200)
plt.imshow(np.random.default_rng({seed}).random((300, 400, 3)))
buf = io.BytesIO()
fig.savefig(buf, format="png")
display(Image(data=buf.getvalue()))
"""


TEXT_CODE = """
from IPython.display import display
display({"text/plain": "THE HEAD\\n" + "".join(f"line {i:06d}\\n" for i in range(12_000)) + "THE TAIL"}, raw=True)
"""
HTML_CODE = """
from IPython.display import HTML, display
display(HTML("<table>" + "".join(f"<tr><td>{i}</td><td>{'.' * 80}</td></tr>" for i in range(1500))
             + "</table><p id='last-row'>html tail</p>"))
"""
JSON_CODE = """
from IPython.display import JSON, display
display(JSON({"rows": list(range(20_000)), "marker": "json tail"}))
"""
SPACER = "\n\n".join(f"paragraph {i}" for i in range(250))  # a markdown cell several screens tall


def artifact_mimes(api: Api, notebook_id: str) -> dict[str, int]:
    """How many outputs of the notebook hold an artifact reference, by MIME type."""
    r = api.client.get(f"/api/notebooks/{notebook_id}/events")
    r.raise_for_status()
    counts: dict[str, int] = {}
    for e in r.json()["events"]:
        if e["name"] in ("outputAdded", "displayUpdated"):
            for mime, value in (e["args"].get("data") or {}).items():
                if is_ref(value):
                    counts[mime] = counts.get(mime, 0) + 1
    return counts


async def test_the_page_renders_artifact_outputs_lazily_with_its_cookie(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Artifacts", [("code", png_code(1)), ("code", TEXT_CODE), ("code", HTML_CODE),
                                  ("code", JSON_CODE), ("markdown", SPACER), ("code", png_code(2))])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, viewport={"width": 1100, "height": 900})
        fetched: list[str] = []
        page.on("requestfinished", lambda req: fetched.append(req.url) if "/api/artifacts/" in req.url else None)
        await page.locator("[data-testid=run-all]").click()
        last = cell(page, "cell-5").locator("[data-testid=output-image]")
        await last.wait_for(state="attached", timeout=RUN_TIMEOUT)
        assert artifact_mimes(api, nb) == {"image/png": 2, "text/plain": 1, "text/html": 1, "application/json": 1}

        # Visible outputs load from the artifact route and render as inline ones would.
        first = cell(page, "cell-0").locator("[data-testid=output-image]")
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await first.element_handle(), timeout=RUN_TIMEOUT)
        src = await first.get_attribute("src")
        assert src and src.startswith("/api/artifacts/"), src
        text = cell(page, "cell-1").locator("pre.output-text")
        await text.filter(has_text="THE TAIL").wait_for()
        shown = await text.inner_text()
        assert shown.startswith("THE HEAD\nline 000000\n") and "line 011999\n" in shown, shown[:200]
        # The long text pushed the rest far down: the HTML frame mounts once it scrolls into view.
        await cell(page, "cell-2").scroll_into_view_if_needed()
        frame = page.frame_locator('[data-cell-id="cell-2"] iframe[data-testid=output-frame]')
        assert await frame.locator("#last-row").inner_text() == "html tail"
        assert await frame.locator("tr").count() == 1500
        await cell(page, "cell-3").scroll_into_view_if_needed()
        json_out = cell(page, "cell-3").locator("[data-testid=output-json]")
        await json_out.filter(has_text="json tail").wait_for()

        # The image below the fold has not been asked for: it loads once it scrolls into view.
        assert await last.get_attribute("src") is None
        last_sha = await cell(page, "cell-5").locator("[data-testid=output]").get_attribute("data-artifact")
        assert last_sha and not any(last_sha in url for url in fetched)
        await last.scroll_into_view_if_needed()
        await page.wait_for_function(
            "(img) => img.complete && img.naturalWidth > 0", arg=await last.element_handle(), timeout=RUN_TIMEOUT)
        assert await last.get_attribute("src") == f"/api/artifacts/{last_sha}"
        assert not await page.locator("[data-testid=output-artifact-error]").count()
        assert not page.errors, page.errors
