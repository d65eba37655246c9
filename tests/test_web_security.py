"""Attacks from a real Chromium holding the daemon's sign-in cookie (issue 18, item 1).

A page served by another server on another port of 127.0.0.1 (same site, so the SameSite=Strict
cookie travels) tries to run code through the sync WebSocket and to store a notebook through a
cross-origin POST; both must fail, while the very same script on the daemon's own page works.
Also: markdown cannot carry a form that navigates the tab, and the page runs under its CSP.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from test_web import CHROMIUM, CHROMIUM_ARGS, RUN_TIMEOUT, Api, chromium, playwright_api

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(240)]

REBIND_NAME = "rebind.test"

# Runs in a page: (a) a WebSocket that pushes executionRequested, (b) a no-cors POST (no preflight)
# that imports a notebook. Resolves with what each attempt saw.
ATTACK = r"""
async ([daemon, notebookId, cellId, importId]) => {
  const uuid = () => 'xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx'.replace(/[xy]/g, (c) => {
    const r = (Math.random() * 16) | 0
    return (c === 'x' ? r : (r & 0x3) | 0x8).toString(16)
  })
  const ws = await new Promise((resolve) => {
    let socket
    try {
      socket = new WebSocket(`ws://${daemon}/api/notebooks/${notebookId}/sync`)
    } catch (e) {
      resolve('throw:' + e)
      return
    }
    socket.onopen = () => socket.send(JSON.stringify(
      { type: 'hello', since: 0, actor: { id: 'mallory', kind: 'human', name: 'Mallory' } }))
    socket.onmessage = (m) => {
      const d = JSON.parse(m.data)
      if (d.type === 'welcome') {
        socket.send(JSON.stringify({ type: 'push', ref: 'r1', events: [
          { id: uuid(), name: 'executionRequested', v: 1, args: { queueId: 'q-' + uuid(), cellId } }] }))
      } else if (d.type === 'ack') {
        resolve('ack:' + JSON.stringify(d.results))
        socket.close()
      }
    }
    socket.onclose = (e) => resolve('closed:' + e.code)
  })
  const ipynb = { nbformat: 4, nbformat_minor: 5, metadata: {},
                  cells: [{ cell_type: 'markdown', metadata: {}, source: 'planted' }] }
  const post = await fetch(`http://${daemon}/api/notebooks/import?id=${importId}`, {
    method: 'POST', mode: 'no-cors', credentials: 'include', referrerPolicy: 'same-origin',
    body: JSON.stringify(ipynb),
  }).then((r) => 'sent:' + r.type, (e) => 'error:' + e)
  return { ws, post }
}
"""


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@contextlib.contextmanager
def other_server() -> Iterator[str]:
    """A plain http.server on another port of 127.0.0.1: the attacker's (or any local dev server's) page."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server API
            body = b"<!doctype html><title>some local page</title><p>hello</p>"
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def event_names(api: Api, notebook_id: str) -> list[str]:
    r = api.client.get(f"/api/notebooks/{notebook_id}/events")
    r.raise_for_status()
    return [e["name"] for e in r.json()["events"]]


def notebook_exists(api: Api, notebook_id: str) -> bool:
    return api.client.get(f"/api/notebooks/{notebook_id}").status_code == 200


async def wait_for_file(path: Path, timeout: float) -> bool:
    import anyio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists():
            return True
        await anyio.sleep(0.1)  # polling a condition, bounded by the deadline
    return False


async def test_a_page_on_another_port_cannot_run_code_or_write(daemon, tmp_path: Path) -> None:
    api = Api(daemon)
    marker = tmp_path / "marker"
    nb = api.create("Target", [("code", f"open({str(marker)!r}, 'w').write('ran')")])
    host = daemon.url.removeprefix("http://")
    async with chromium() as browser:
        context = await browser.new_context()
        own = await context.new_page()
        csp_violations: list[str] = []
        own.on("console", lambda m: csp_violations.append(m.text) if "Content Security Policy" in m.text else None)
        await own.goto(f"{daemon.url}/?token={daemon.token}&notebook={nb}")  # the live URL signs the browser in
        await own.wait_for_selector("#app[data-connection=live]")
        cookies = {c["name"]: c for c in await context.cookies(daemon.url)}
        assert cookies[f"runtimed_token_{daemon.url.rsplit(':', 1)[1]}"]["httpOnly"]

        with other_server() as attacker_url:
            attacker = await context.new_page()
            await attacker.goto(attacker_url)
            # The browser does send the cookie to the other port (same site): only the daemon's checks stop this.
            assert await context.cookies(attacker_url)
            seen = await attacker.evaluate(ATTACK, [host, nb, "cell-0", f"{nb}-planted"])
        assert not seen["ws"].startswith("ack:"), seen
        assert seen["ws"].startswith("closed:"), seen
        assert seen["post"] == "sent:opaque", seen  # the request went out; the daemon refused it
        assert "executionRequested" not in event_names(api, nb)
        assert not notebook_exists(api, f"{nb}-planted")
        assert not marker.exists()

        # The very same script on the daemon's own page: it is the daemon's checks, not the script, that failed.
        seen = await own.evaluate(ATTACK, [host, nb, "cell-0", f"{nb}-own"])
        assert seen["ws"].startswith("ack:") and '"seq"' in seen["ws"], seen
        assert notebook_exists(api, f"{nb}-own")
        assert await wait_for_file(marker, RUN_TIMEOUT / 1000)
        assert not csp_violations, csp_violations


async def test_a_rebound_dns_name_gets_nothing_from_the_daemon(daemon) -> None:
    port = daemon.url.rsplit(":", 1)[1]
    async with playwright_api.async_playwright() as p:
        browser = await p.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
            *CHROMIUM_ARGS, f"--host-resolver-rules=MAP {REBIND_NAME} 127.0.0.1"])
        try:
            page = await browser.new_page()
            response = await page.goto(f"http://{REBIND_NAME}:{port}/?token={daemon.token}")
            assert response is not None and response.status == 400
            assert "invalid_host" in await page.content()
            cookies = await page.context.cookies(f"http://{REBIND_NAME}:{port}")
            assert not cookies  # no sign-in happened under the rebound name
        finally:
            await browser.close()


MARKDOWN_FORMS = """# Click me

<form action="https://example.com/steal" method="post"><input name="q" value="x"><button id="go">Go</button></form>
<button formaction="https://example.com/other" id="go2">Also go</button>
<select><option>one</option></select><textarea>t</textarea>
<a href="#anchor" id="anchor-link">an anchor</a>
"""


async def test_markdown_cannot_carry_a_form_that_navigates_the_tab(daemon) -> None:
    api = Api(daemon)
    nb = api.create("Forms", [("markdown", MARKDOWN_FORMS)])
    async with chromium() as browser:
        page = await (await browser.new_context()).new_page()
        await page.goto(f"{daemon.url}/?token={daemon.token}&notebook={nb}")
        rendered = page.locator("[data-testid=markdown-rendered]")
        await rendered.locator("h1", has_text="Click me").wait_for()
        for tag in ("form", "button", "input", "select", "textarea", "[formaction]"):
            assert await rendered.locator(tag).count() == 0, tag
        assert await rendered.locator("#anchor-link").count() == 1  # ordinary markup stays
        url = page.url
        await rendered.locator("h1").click()
        assert page.url == url


async def test_a_wrong_token_in_the_live_url_sets_no_cookie(daemon) -> None:
    async with chromium() as browser:
        context = await browser.new_context()
        page = await context.new_page()
        response = await page.goto(f"{daemon.url}/?token=wrong-{uuid.uuid4().hex}")
        assert response is not None and response.status == 401
        assert not await context.cookies(daemon.url)
        assert httpx.get(f"{daemon.url}/health").status_code == 200
