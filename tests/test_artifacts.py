"""Artifacts (issue 15): large output values live in a content-addressed store beside a small log.

The store tests drive the real store (files on disk; fsspec's memory filesystem for the fsspec
backend) and kill a real writer process mid-write. The daemon tests run real kernels in a real
daemon: a matplotlib PNG, a large HTML and a large ``display(JSON)`` are offloaded, events stay
small, the bytes served are the bytes produced, exports equal the original values, the route
checks who asks, references to missing artifacts are refused, GC keeps what time travel needs,
and an external runtime uploads over HTTP.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from conftest import DaemonProcess, running_daemon

from runtimed.client.discovery import DaemonEndpoint
from runtimed.client.session import AsyncSession, Session
from runtimed.errors import RuntimedError
from runtimed.formats import write_ipynb
from runtimed.runtime.external import run_external_runtime
from runtimed.schema import views
from runtimed.schema.artifact_refs import is_ref
from runtimed.schema.events import make_event
from runtimed.store.artifacts import FsspecArtifactStore, LocalArtifactStore

MB = 1024 * 1024
INLINE_LIMIT = 64 * 1024 + 16 * 1024
"""An offloaded output event stays near the threshold: its other fields and a short preview."""


# -- the store -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["local", "fsspec"])
def test_the_store_is_content_addressed_deduplicated_and_checks_hashes(tmp_path: Path, kind: str) -> None:
    store = LocalArtifactStore(tmp_path / "a") if kind == "local" else FsspecArtifactStore(f"memory://{tmp_path}")
    data = os.urandom(300_000)
    sha = store.put(data, "image/png")
    assert sha == hashlib.sha256(data).hexdigest()
    assert store.read(sha) == data and store.content_type(sha) == "image/png"
    assert store.put(data, "image/png") == sha  # the same bytes again: stored once
    assert [a.sha for a in store.list()] == [sha] and store.total_bytes() == len(data)
    with pytest.raises(RuntimedError) as wrong:
        store.put(b"other bytes", sha=sha)
    assert wrong.value.code == "artifact_mismatch" and store.read(sha) == data
    assert store.delete(sha) and not store.has(sha) and store.total_bytes() == 0


def test_the_global_quota_refuses_with_a_clear_error(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "a", max_total_bytes=1000)
    store.put(b"x" * 600)
    with pytest.raises(RuntimedError) as over:
        store.put(b"y" * 600)
    assert over.value.code == "artifact_quota" and "RUNTIMED_ARTIFACTS_MAX_BYTES" in over.value.message
    assert len(list(store.list())) == 1 and not any((tmp_path / "a" / "tmp").iterdir())


WRITER = """
import hashlib, sys, time
from runtimed.store.artifacts import LocalArtifactStore
store = LocalArtifactStore(sys.argv[1])
data = b"z" * (8 * 1024 * 1024)
with store.writer(hashlib.sha256(data).hexdigest(), "text/plain") as f:
    f.write(data[: len(data) // 2])
    print("half", flush=True)
    time.sleep(600)
    f.write(data[len(data) // 2 :])
"""


def test_a_writer_killed_mid_write_leaves_no_artifact(tmp_path: Path) -> None:
    root = tmp_path / "a"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(root)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "half"
    finally:
        proc.kill()
        proc.wait(10)
    store = LocalArtifactStore(root)
    sha = hashlib.sha256(b"z" * (8 * 1024 * 1024)).hexdigest()
    assert not store.has(sha) and list(store.list()) == []  # no half file under the real name
    assert len(list((root / "tmp").iterdir())) == 1  # the stray temporary, swept later
    assert store.sweep_temporary(older_than=0) == 1 and not any((root / "tmp").iterdir())


# -- a real daemon with real kernels ---------------------------------------------------------------------


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def d(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("artifacts-home")) as proc:
        yield proc


def http(d: DaemonProcess, token: str | None = None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token or d.token}"} if token != "" else {}
    return httpx.Client(base_url=d.url, headers=headers, timeout=120)


def stored_output_events(d: DaemonProcess, notebook_id: str) -> list[dict[str, Any]]:
    with http(d) as c:
        events = c.get(f"/api/notebooks/{notebook_id}/events").json()["events"]
    return [e for e in events if e["name"] in ("outputAdded", "displayUpdated")]


PNG_CODE = """
import base64, hashlib, io
import matplotlib
matplotlib.use("agg")
import matplotlib.pyplot as plt
import numpy as np
from IPython.display import Image, display
fig = plt.figure(figsize=(17, 17), dpi=100)
plt.imshow(np.random.default_rng(1).random((1700, 1700, 3)))
buf = io.BytesIO()
fig.savefig(buf, format="png")
png = buf.getvalue()
print(hashlib.sha256(png).hexdigest(), len(png))
display(Image(data=png))
"""
HTML_CODE = """
import hashlib
from IPython.display import HTML, display
html = "<table>" + "".join(f"<tr><td>{i}</td><td>{'é' * 290}</td></tr>" for i in range(50_000)) + "</table>"
print(hashlib.sha256(html.encode()).hexdigest(), len(html.encode()))
display(HTML(html))
"""
JSON_CODE = """
from IPython.display import JSON, display
display(JSON({"rows": [{"i": i, "name": f"row {i}", "values": list(range(20))} for i in range(60_000)]}))
"""


def artifact_refs_in(d: DaemonProcess, notebook_id: str) -> list[tuple[str, dict[str, Any]]]:
    return [(mime, value) for e in stored_output_events(d, notebook_id)
            for mime, value in (e["args"].get("data") or {}).items() if is_ref(value)]


@pytest.mark.anyio
@pytest.mark.timeout(300)
async def test_large_outputs_become_artifacts_served_and_exported_byte_identical(d: DaemonProcess) -> None:
    notebook = "big-outputs"
    async with AsyncSession(notebook, endpoint=DaemonEndpoint(d.url, d.token)) as s:
        png = await s.run(PNG_CODE, timeout_secs=180)
        assert png.success, png.outputs
        html = await s.run(HTML_CODE, timeout_secs=180)
        assert html.success, html.outputs
        big_json = await s.run(JSON_CODE, timeout_secs=180)
        assert big_json.success, big_json.outputs
    png_sha, png_size = png.stdout.split()
    html_sha, html_size = html.stdout.split()
    assert int(png_size) > 4.5 * MB and int(html_size) > 29 * MB

    events = stored_output_events(d, notebook)
    assert max(len(orjson.dumps(e)) for e in events) < INLINE_LIMIT  # the log stays small
    refs = dict(artifact_refs_in(d, notebook))
    assert set(refs) >= {"image/png", "text/html", "application/json"}
    assert refs["image/png"]["artifact"] == png_sha and refs["image/png"]["encoding"] == "base64"
    assert refs["text/html"]["artifact"] == html_sha and refs["text/html"]["preview"].startswith("<table><tr>")

    with http(d) as c:
        served = c.get(f"/api/artifacts/{png_sha}")
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
        assert hashlib.sha256(served.content).hexdigest() == png_sha and len(served.content) == int(png_size)
        assert served.headers["etag"] == f'"{png_sha}"' and "immutable" in served.headers["cache-control"]
        page = c.get(f"/api/artifacts/{html_sha}")
        assert page.headers["content-type"].startswith("text/html") and "sandbox" in page.headers[
            "content-security-policy"]
        assert hashlib.sha256(page.content).hexdigest() == html_sha
        part = c.get(f"/api/artifacts/{html_sha}", headers={"Range": "bytes=100-1099"})
        assert part.status_code == 206 and part.content == page.content[100:1100]
        assert part.headers["content-range"] == f"bytes 100-1099/{html_size}"
        tail = c.get(f"/api/artifacts/{html_sha}", headers={"Range": "bytes=-10"})
        assert tail.status_code == 206 and tail.content == page.content[-10:]
        assert c.get(f"/api/artifacts/{html_sha}", headers={"Range": f"bytes={int(html_size)}-"}).status_code == 416
        assert c.get(f"/api/artifacts/{png_sha}", headers={"If-None-Match": f'"{png_sha}"'}).status_code == 304

        exported = json.loads(c.get(f"/api/notebooks/{notebook}/export").text)
    data = [o["data"] for cell in exported["cells"] for o in cell.get("outputs", []) if "data" in o]
    png_value = next(v["image/png"] for v in data if "image/png" in v)
    assert base64.b64decode(png_value) == served.content and not is_ref(png_value)
    html_value = next(v["text/html"] for v in data if "text/html" in v)
    assert hashlib.sha256("".join(html_value).encode()).hexdigest() == html_sha
    json_value = next(v["application/json"] for v in data if "application/json" in v)
    assert json_value["rows"][59_999] == {"i": 59_999, "name": "row 59999", "values": list(range(20))}


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_the_route_serves_only_readers_of_a_notebook_that_references_it(d: DaemonProcess) -> None:
    async with AsyncSession("auth-nb", endpoint=DaemonEndpoint(d.url, d.token)) as s:
        result = await s.run("from IPython.display import HTML\nHTML('<b>' + 'a' * 200_000 + '</b>')", timeout_secs=120)
        assert result.success, result.outputs
    ((_, ref),) = artifact_refs_in(d, "auth-nb")
    sha = ref["artifact"]
    with http(d) as owner:
        other = owner.post("/api/notebooks", json={"id": "auth-other"}).json()
        reader = owner.post("/api/people", json={"name": "reader", "role": None,
                                                 "notebooks": {"auth-nb": "viewer"}}).json()["token"]
        stranger = owner.post("/api/people", json={"name": "stranger", "role": None,
                                                   "notebooks": {other["id"]: "editor"}}).json()["token"]
        share = owner.post("/api/notebooks/auth-nb/shares").json()["token"]
    with http(d, "") as anonymous:
        assert anonymous.get(f"/api/artifacts/{sha}").status_code == 401
    for token, status in ((reader, 200), (share, 200), (stranger, 404)):
        with http(d, token) as c:
            assert c.get(f"/api/artifacts/{sha}").status_code == status, token
    with http(d, stranger) as c:  # an editor elsewhere may upload, but only bytes that match their name
        assert c.put(f"/api/artifacts/{'0' * 64}", content=b"abc").json()["error"]["code"] == "artifact_mismatch"
    with http(d, reader) as c:
        assert c.put(f"/api/artifacts/{hashlib.sha256(b'abc').hexdigest()}", content=b"abc").status_code == 403


@pytest.mark.anyio
@pytest.mark.timeout(120)
async def test_an_output_referencing_a_missing_artifact_is_refused(d: DaemonProcess) -> None:
    async with AsyncSession("dangling", endpoint=DaemonEndpoint(d.url, d.token)) as s:
        cell_id = await s.create_cell("x")
    missing = hashlib.sha256(b"never uploaded").hexdigest()
    event = make_event("outputAdded", output_id="o-dangling", cell_id=cell_id, output_type="display_data",
                       data={"text/html": {"artifact": missing, "size": 14, "mime": "text/html"}}, metadata={})
    with http(d) as c:
        (result,) = c.post("/api/notebooks/dangling/events", json={"events": [event]}).json()["results"]
        assert result["error"]["code"] == "artifact_not_found" and "upload it first" in result["error"]["message"]
        sha = hashlib.sha256(b"uploaded now").hexdigest()
        assert c.put(f"/api/artifacts/{sha}", content=b"uploaded now",
                     headers={"Content-Type": "text/plain"}).status_code == 201
        event["args"]["data"] = {"text/plain": {"artifact": sha, "size": 12, "mime": "text/plain"}}
        event["id"] = "ev-now-stored"
        (result,) = c.post("/api/notebooks/dangling/events", json={"events": [event]}).json()["results"]
        assert "seq" in result, result


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_gc_keeps_what_time_travel_needs_and_collects_deleted_notebooks(d: DaemonProcess) -> None:
    notebook = "gc-nb"
    async with AsyncSession(notebook, endpoint=DaemonEndpoint(d.url, d.token)) as s:
        cell_id = await s.create_cell("print('x' * 10)\nfrom IPython.display import HTML\nHTML('<i>' + 'v1' * 100_000)")
        first = await s.execute_cell(cell_id, timeout_secs=120)
        assert first.success, first.outputs
        at = s.client.replica.head
        await s.set_source(cell_id, "'small now'")
        second = await s.execute_cell(cell_id, timeout_secs=120)
        assert second.success, second.outputs
    ((_, ref),) = artifact_refs_in(d, notebook)
    sha = ref["artifact"]
    with http(d) as c:
        current = c.get(f"/api/notebooks/{notebook}").json()
        assert sha not in json.dumps(current)  # no longer shown ...
        assert sha in json.dumps(c.get(f"/api/notebooks/{notebook}", params={"at": at}).json())  # ... but in the past
        swept = c.post("/api/artifacts/gc", json={"grace": "0s"}).json()
        assert swept["referenced"] >= 1
        assert c.get(f"/api/artifacts/{sha}").status_code == 200  # time travel still finds it
        assert c.delete(f"/api/notebooks/{notebook}").status_code == 200
        assert c.post("/api/artifacts/gc", json={"grace": "1h"}).json()["removed"] == 0  # too fresh to sweep
        swept = c.post("/api/artifacts/gc", json={"grace": "0s"}).json()
        assert swept["removed"] >= 1
        assert c.get(f"/api/artifacts/{sha}").status_code == 404


@pytest.mark.anyio
@pytest.mark.timeout(180)
async def test_an_external_runtime_uploads_its_artifacts_over_http(d: DaemonProcess) -> None:
    notebook = "external-artifacts"
    endpoint = DaemonEndpoint(d.url, d.token)
    async with AsyncSession(notebook, endpoint=endpoint) as s:
        ready: list[Any] = []
        task = asyncio.create_task(run_external_runtime(endpoint, notebook, on_ready=ready.append,
                                                        handle_signals=False))
        try:
            deadline = time.monotonic() + 60
            while not ready and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert ready, "the external runtime did not start"
            code = "from IPython.display import Markdown\nMarkdown('# ext\\n' + 'w ' * 100_000)"
            result = await s.run(code, timeout_secs=120)
            assert result.success, result.outputs
            (output,) = [o for o in result.outputs if o.output_type == "execute_result"]
            assert is_ref(output.data.raw("text/markdown"))  # stored as a reference, fetched when read:
            assert output.data["text/markdown"] == "# ext\n" + "w " * 100_000
            session = views.active_session(s.client.replica.conn)
            assert session is not None and session["runtime_id"] == ready[0].runtime_id
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, RuntimedError):
                await task
    ((mime, ref),) = artifact_refs_in(d, notebook)
    assert mime == "text/markdown"
    with http(d) as c:
        served = c.get(f"/api/artifacts/{ref['artifact']}")
    assert served.content.decode() == "# ext\n" + "w " * 100_000


def test_import_offloads_large_values_and_export_gives_them_back(d: DaemonProcess) -> None:
    png = base64.b64encode(os.urandom(200_000)).decode()
    html = "<p>" + "imported " * 40_000 + "</p>"
    nb = {"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [{
        "id": "c1", "cell_type": "code", "source": "x", "metadata": {}, "execution_count": 1,
        "outputs": [{"output_type": "display_data", "metadata": {}, "data": {"image/png": png, "text/html": html,
                                                                             "text/plain": "small"}}]}]}
    with http(d) as c:
        assert c.post("/api/notebooks/import", params={"id": "imported"}, content=json.dumps(nb)).status_code == 201
        refs = dict(artifact_refs_in(d, "imported"))
        assert set(refs) == {"image/png", "text/html"}
        assert max(len(orjson.dumps(e)) for e in stored_output_events(d, "imported")) < INLINE_LIMIT
        exported = json.loads(c.get("/api/notebooks/imported/export").text)
    data = exported["cells"][0]["outputs"][0]["data"]
    assert data["image/png"] == png and "".join(data["text/html"]) == html and "".join(data["text/plain"]) == "small"
    with Session("imported", endpoint=DaemonEndpoint(d.url, d.token)) as s:  # the client export resolves them too
        local = json.loads(write_ipynb(s.to_ipynb()))
    assert local["cells"][0]["outputs"] == exported["cells"][0]["outputs"]
