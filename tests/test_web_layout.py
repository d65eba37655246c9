"""The page on a phone (390 px) and a tablet (768 px), in real Chromium against a real daemon (issue 19)."""

from __future__ import annotations

import pytest

from tests.test_web import Api, cell, chromium, editor, open_notebook, playwright_api

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(300)]
expect = playwright_api.expect

PHONE = {"width": 390, "height": 844}
TABLET = {"width": 768, "height": 1024}

NO_OVERFLOW_JS = "() => document.documentElement.scrollWidth <= window.innerWidth"
WIDE_JS = """() => [...document.querySelectorAll('#app *')].filter((n) => {
  const r = n.getBoundingClientRect(); return r.width > 0 && r.right > window.innerWidth + 1
}).map((n) => n.className || n.tagName).slice(0, 5)"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


LONG_LINE = "x = '" + "a" * 300 + "'"
WIDE_MARKDOWN = "| a | b | c | d | e | f |\n|---|---|---|---|---|---|\n" + "| " + " | ".join(["wide-cell-text"] * 6) + " |"


async def boxes(page, selector: str) -> list[dict]:
    return await page.evaluate(
        "(s) => [...document.querySelectorAll(s)].filter((n) => n.offsetParent).map((n) => {"
        " const r = n.getBoundingClientRect(); return {w: r.width, h: r.height, top: r.top, bottom: r.bottom, t: n.textContent} })",
        selector)


async def test_phone_layout_fits_and_works(daemon) -> None:
    api = Api(daemon)
    nb = api.create("A notebook with a rather long title for a phone screen",
                    [("code", LONG_LINE + "\nprint(len(x))"), ("markdown", WIDE_MARKDOWN), ("code", "y = 1")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, viewport=PHONE)
        await cell(page, "cell-1").locator("[data-testid=markdown-rendered] table").wait_for()
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)

        # The toolbar and the history bar are folded into the header's menu.
        toolbar = page.locator(".toolbar")
        await expect(toolbar).to_be_hidden()
        menu = page.locator("[data-testid=menu-button]")
        await expect(menu).to_be_visible()
        box = await menu.bounding_box()
        assert box["width"] >= 40 and box["height"] >= 40
        await menu.click()
        assert await menu.get_attribute("aria-expanded") == "true"
        await expect(page.locator("[data-testid=run-all]")).to_be_visible()
        await expect(page.locator("[data-testid=history-slider]")).to_be_visible()
        for b in await boxes(page, ".toolbar button, .toolbar .button, .toolbar select"):
            assert b["h"] >= 40 and b["w"] >= 40, b
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)

        # Only the header is sticky: scrolled down, nothing else covers the cells.
        await menu.click()
        await page.evaluate("() => window.scrollTo(0, document.body.scrollHeight)")
        sticky = await page.evaluate(
            "() => [...document.querySelectorAll('#app *')].filter((n) => { const r = n.getBoundingClientRect();"
            " return r.height > 2 && r.width > 2 && r.bottom > 0 && r.top < innerHeight"
            " && ['sticky', 'fixed'].includes(getComputedStyle(n).position) }).map((n) => n.className)")
        assert sticky == ["topbar"], sticky

        # Run a cell and read its output; the active cell's controls are touch-sized.
        first = cell(page, "cell-0")
        await first.scroll_into_view_if_needed()
        run = first.locator("[data-testid=run-cell]")
        run_box = await run.bounding_box()
        assert run_box["width"] >= 40 and run_box["height"] >= 40
        await run.click()
        await expect(first.locator("[data-testid=output]")).to_contain_text("300", timeout=90_000)
        await first.locator("[data-testid=exec-count]").click()
        for b in await boxes(page, '[data-cell-id="cell-0"] .cell-toolbar button'):
            assert b["h"] >= 40 and b["w"] >= 40, b
        add = first.locator("[data-testid=add-below]")
        await expect(add).to_be_visible()
        await add.click()
        await page.wait_for_function("() => window.__runtimed.state.order.length === 4")
        await page.keyboard.type("z = 3")
        await page.wait_for_function(
            "() => window.__runtimed.state.cells.get(window.__runtimed.state.order[1]).text.toString() === 'z = 3'")
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)
        assert not page.errors, page.errors

        # The list page too.
        await page.goto(f"{daemon.url}/")
        await page.locator("[data-testid=notebook-row]").first.wait_for()
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)
        await expect(page.locator("[data-testid=create-notebook]")).to_be_visible()


async def test_tablet_and_desktop_layouts(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Tablet", [("code", LONG_LINE), ("markdown", WIDE_MARKDOWN)])
    async with chromium() as browser:
        # A tablet (768 px) folds the toolbar into the menu like a phone; nothing overflows.
        page = await open_notebook(browser, daemon, nb, viewport=TABLET)
        await cell(page, "cell-1").locator("[data-testid=markdown-rendered] table").wait_for()
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)
        await page.locator("[data-testid=menu-button]").click()
        await expect(page.locator("[data-testid=run-all]")).to_be_visible()
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)
        assert not page.errors, page.errors
        # A desktop (1280 px): the toolbar is always there, no menu.
        page = await open_notebook(browser, daemon, nb, viewport={"width": 1280, "height": 900})
        await cell(page, "cell-1").locator("[data-testid=markdown-rendered] table").wait_for()
        await expect(page.locator("[data-testid=menu-button]")).to_be_hidden()
        await expect(page.locator("[data-testid=run-all]")).to_be_visible()
        assert await page.evaluate(NO_OVERFLOW_JS), await page.evaluate(WIDE_JS)
        assert not page.errors, page.errors


async def test_list_page_search_and_sort(daemon) -> None:
    api = Api(daemon)
    api.create("Banana bread", [("code", "a"), ("code", "b"), ("code", "c")])
    api.create("apple pie")
    api.create("Cherry tart", [("code", "x")])
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1200, "height": 900})
        page = await context.new_page()
        await page.goto(f"{daemon.url}/?token={daemon.token}")
        rows = page.locator("[data-testid=notebook-link]")
        await expect(rows).to_have_count(3)
        # Default: the last changed first.
        assert await rows.all_inner_texts() == ["Cherry tart", "apple pie", "Banana bread"]
        await page.locator("[data-testid=list-sort]").select_option("title")
        await expect(rows).to_have_text(["apple pie", "Banana bread", "Cherry tart"])
        await page.locator("[data-testid=list-sort]").select_option("cells")
        await expect(rows).to_have_text(["Banana bread", "Cherry tart", "apple pie"])
        await page.locator("[data-testid=list-search]").fill("TAR")
        await expect(rows).to_have_text(["Cherry tart"])
        assert "q=TAR" in page.url and "sort=cells" in page.url
        # A reload keeps the search and the order.
        await page.reload()
        await expect(rows).to_have_text(["Cherry tart"])
        await page.locator("[data-testid=list-search]").fill("nothing like it")
        await expect(page.locator("[data-testid=no-match]")).to_be_visible()
        await expect(rows).to_have_count(0)


# The contrast of every visible text against the background it is drawn on (WCAG 2 relative luminance).
CONTRAST_JS = """(root) => {
  const parse = (c) => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(/[ ,/]+/).filter(Boolean).map(Number); return [p[0], p[1], p[2], p.length > 3 ? p[3] : 1] }
  const lum = ([r, g, b]) => { const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b) }
  const blend = (top, under) => { const a = top[3]; return [0, 1, 2].map((i) => top[i] * a + under[i] * (1 - a)).concat(1) }
  const background = (n) => { const layers = [];
    for (let e = n; e; e = e.parentElement) { const c = parse(getComputedStyle(e).backgroundColor); if (c && c[3] > 0) layers.push(c); if (c && c[3] >= 1) break }
    let bg = [255, 255, 255, 1]; if (layers.length && layers[layers.length - 1][3] >= 1) bg = layers.pop();
    for (const l of layers.reverse()) bg = blend(l, bg); return bg }
  const bad = []
  const walker = document.createTreeWalker(document.querySelector(root), NodeFilter.SHOW_TEXT)
  for (let t = walker.nextNode(); t; t = walker.nextNode()) {
    const n = t.parentElement
    if (!t.textContent.trim() || !n || n.closest('.cm-editor, iframe, .katex, [aria-hidden=true], .output, .ansi-black-fg')) continue
    const r = n.getBoundingClientRect(); const s = getComputedStyle(n)
    if (!r.width || !r.height || s.visibility === 'hidden' || r.bottom < 0 || r.top > innerHeight) continue
    let opacity = 1; for (let e = n; e; e = e.parentElement) opacity *= Number(getComputedStyle(e).opacity)
    if (opacity < 0.99) continue  // hidden until hovered, or a disabled control
    const bg = background(n); const fg = blend(parse(s.color), bg)
    const [a, b] = [lum(fg) + 0.05, lum(bg) + 0.05]; const ratio = Math.max(a, b) / Math.min(a, b)
    if (ratio < 4.5) bad.push([n.className || n.tagName, t.textContent.trim().slice(0, 30), Math.round(ratio * 100) / 100])
  }
  return bad
}"""


@pytest.mark.parametrize("scheme", ["light", "dark"])
async def test_text_contrast_and_dark_theme(daemon, scheme: str) -> None:
    api = Api(daemon)
    nb = api.create("Contrast", [("code", "x = 1"), ("markdown", "# Title\n\nSome *text* and `code`."), ("code", "y = 2")])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb, "Yellow Person")
        await page.emulate_media(color_scheme=scheme)
        other = await open_notebook(browser, daemon, nb, "Other Person")
        await (await editor(other, "cell-0")).click()
        await cell(page, "cell-0").locator("[data-testid=cell-peers] .peer-chip").wait_for()
        await cell(page, "cell-1").locator("[data-testid=markdown-rendered] h1").wait_for()
        body = await page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert body == ("rgb(13, 17, 23)" if scheme == "dark" else "rgb(246, 247, 249)"), body
        bad = await page.evaluate(CONTRAST_JS, "#app")
        assert not bad, bad
        # The name chips: white on every actor colour (the hue comes from the actor id).
        ratios = await page.evaluate("""() => { const out = [];
          for (let h = 0; h < 360; h += 15) { const d = document.createElement('span'); d.style.color = `hsl(${h} 65% 28%)`;
            document.body.append(d); const m = getComputedStyle(d).color.match(/\\d+/g).map(Number); d.remove();
            const f = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4 };
            const l = 0.2126 * f(m[0]) + 0.7152 * f(m[1]) + 0.0722 * f(m[2]); out.push(1.05 / (l + 0.05)) } return Math.min(...out) }""")
        assert ratios >= 4.5, ratios
        assert not page.errors, page.errors


PNG_1PX = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="


async def test_accessible_names_of_cells_editors_and_images(daemon) -> None:
    import uuid

    api = Api(daemon)
    nb = api.create("A11y", [("code", "plot()")])
    api.push(nb, [{"id": str(uuid.uuid4()), "name": "outputAdded", "v": 1, "args": {
        "outputId": "o-img", "cellId": "cell-0", "outputType": "display_data",
        "data": {"image/png": PNG_1PX, "text/plain": "<Figure size 640x480 with 1 Axes>"}}}])
    async with chromium() as browser:
        page = await open_notebook(browser, daemon, nb)
        assert await page.locator("[data-testid=cells]").get_attribute("role") == "list"
        img = cell(page, "cell-0").locator("[data-testid=output] img")
        await expect(img).to_have_attribute("alt", "<Figure size 640x480 with 1 Axes>")
        content = await editor(page, "cell-0")
        assert await content.get_attribute("aria-label") == "Cell 1 (code)"
        assert not page.errors, page.errors
