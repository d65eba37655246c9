"""Artifacts: a notebook with 40 outputs of 2 MB each — the log's size, opening it with ``Session``, the page.

    python bench/bench_artifacts.py            # 40 outputs of 2 MB, 5 rounds
    python bench/bench_artifacts.py --quick    # 10 outputs, 2 rounds
    python bench/bench_artifacts.py --json results.json

The notebook is built here (no file is read): 40 code cells, each with one 2 MB output — half PNG
images (valid PNGs of random pixels, base64 in the notebook), a quarter HTML, a quarter plain text —
and imported into a daemon in a temporary ``RUNTIMED_HOME`` (``POST /api/notebooks/import``, which
offloads every value over the threshold into the artifact store; the 80 MB file is over the default
request body limit of 32 MiB, so this daemon runs with ``--max-body-bytes`` raised). Then:

- **log**: the bytes of every stored event (``GET /events``, JSON) and of the notebook's database
  and WAL on disk;
- **Session open**: ``Session(id).connect()`` plus ``get_cells()`` (every cell with its outputs, whose
  values are artifact references fetched only when read); then, for contrast, reading every output's
  value (which fetches all of them);
- **page**: Chromium (Debian's, via Playwright, helpers of ``tests/test_web.py``) loads the notebook;
  navigation until the editors are ready (the page's own ``timings``), and until the first image, which
  is in view, has loaded from ``/api/artifacts/``.

Targets (issue 15): log < 1 MiB, Session open <= 0.2 s, page interactive <= 1 s. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import struct
import sys
import tempfile
import time
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

import nbformat  # noqa: E402
import test_web as web  # noqa: E402
from common import Figure, report  # noqa: E402
from conftest import DaemonProcess  # noqa: E402

from runtimed.client.discovery import DaemonEndpoint  # noqa: E402
from runtimed.client.session import Session  # noqa: E402

MB = 1024 * 1024
OUTPUT_BYTES = 2 * MB
IMPORT_BODY_LIMIT = 256 * MB


def png(seed: int, size: int) -> bytes:
    """A valid PNG of random RGB pixels (noise: it does not compress) of about ``size`` bytes."""
    rng = random.Random(seed)
    width = 800
    height = max(1, size // (width * 3 + 1))
    raw = b"".join(b"\x00" + rng.randbytes(width * 3) for _ in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b"")


def big_notebook(outputs: int) -> bytes:
    """``outputs`` code cells with one ~2 MB output each (nbformat JSON)."""
    nb = nbformat.v4.new_notebook()
    for i in range(outputs):
        if i % 2 == 0:
            data = {"image/png": base64.b64encode(png(i, OUTPUT_BYTES * 3 // 4)).decode(), "text/plain": "<Figure>"}
        elif i % 4 == 1:
            rows = "".join(f"<tr><td>{i}</td><td>{r}</td><td>{'cell ' * 8}</td></tr>" for r in range(OUTPUT_BYTES // 70))
            data = {"text/html": f"<table>{rows}</table>"[:OUTPUT_BYTES], "text/plain": "<table>"}
        else:
            data = {"text/plain": "".join(f"{i:03d} line {r:08d} {'.' * 60}\n" for r in range(OUTPUT_BYTES // 80))}
        nb.cells.append(nbformat.v4.new_code_cell(f"show({i})", execution_count=i + 1, outputs=[
            nbformat.v4.new_output("display_data", data)]))
    return nbformat.writes(nb).encode()


def log_bytes(api: web.Api, notebook_id: str) -> int:
    r = api.client.get(f"/api/notebooks/{notebook_id}/events")
    r.raise_for_status()
    return sum(len(json.dumps(e, separators=(",", ":"))) for e in r.json()["events"])


def db_bytes(home: Path, notebook_id: str) -> int:
    base = home / "notebooks" / f"{notebook_id}.db"
    return sum(p.stat().st_size for p in (base, Path(f"{base}-wal")) if p.exists())


def session_open(endpoint: DaemonEndpoint, notebook_id: str, outputs: int, baseline_id: str) -> tuple[float, ...]:
    """Seconds to open the notebook and list its cells and outputs; then seconds to read every value; and the
    same open of an empty notebook (what a session costs whatever the notebook holds)."""
    t0 = time.perf_counter()
    with Session(baseline_id, endpoint=endpoint) as s:
        assert s.get_cells() == []
        empty = time.perf_counter() - t0
    t0 = time.perf_counter()
    with Session(notebook_id, endpoint=endpoint) as s:
        cells = s.get_cells()
        opened = time.perf_counter() - t0
        assert len(cells) == outputs and all(len(c.outputs) == 1 for c in cells)
        t1 = time.perf_counter()
        fetched = sum(len(str(value)) for c in cells for value in c.outputs[0].data.values())
        read_all = time.perf_counter() - t1
    assert fetched > outputs * OUTPUT_BYTES // 2, fetched
    return opened, read_all, empty


async def page_times(daemon: DaemonProcess, notebook_id: str, rounds: int) -> tuple[list[float], list[float]]:
    """Per round: ms from navigation to editors ready, and to the first (visible) image loaded."""
    interactive: list[float] = []
    first_image: list[float] = []
    async with web.chromium() as browser:
        page = await web.open_notebook(browser, daemon, notebook_id, "Reader")
        for _ in range(rounds):
            await page.reload()
            await page.wait_for_selector("#app[data-connection=live]")
            await page.wait_for_function("() => window.__runtimed.timings.editors != null")
            await page.wait_for_function(
                "() => { const i = document.querySelector('[data-testid=output-image]'); "
                "return i && i.complete && i.naturalWidth > 0 }", timeout=60_000)
            t = await page.evaluate(
                "() => ({editors: window.__runtimed.timings.editors, image: performance.getEntriesByType('resource')"
                ".filter((e) => e.name.includes('/api/artifacts/')).map((e) => e.responseEnd)})")
            interactive.append(t["editors"])
            first_image.append(min(t["image"]))
        assert not page.errors, page.errors
    return interactive, first_image


def bench(args: argparse.Namespace) -> dict[str, Any]:
    outputs = 10 if args.quick else args.outputs
    rounds = 2 if args.quick else args.rounds
    body = big_notebook(outputs)
    with tempfile.TemporaryDirectory() as home:
        daemon = DaemonProcess(Path(home), "--no-runtimes", "--max-body-bytes", str(IMPORT_BODY_LIMIT))
        daemon.start()
        try:
            api = web.Api(daemon)
            t0 = time.perf_counter()
            r = api.client.post("/api/notebooks/import", params={"id": "artifacts-bench"}, content=body, timeout=300)
            r.raise_for_status()
            imported = time.perf_counter() - t0
            notebook_id = r.json()["id"]
            log, disk = log_bytes(api, notebook_id), db_bytes(Path(home), notebook_id)
            empty = nbformat.writes(nbformat.v4.new_notebook()).encode()
            api.client.post("/api/notebooks/import", params={"id": "empty"}, content=empty).raise_for_status()
            endpoint = DaemonEndpoint(daemon.url, daemon.token)
            opens, reads, empties = zip(*(session_open(endpoint, notebook_id, outputs, "empty") for _ in range(rounds)),
                                        strict=True)
            interactive, first_image = asyncio.run(page_times(daemon, notebook_id, rounds))
        finally:
            daemon.stop()
    group = f"{outputs} outputs of 2 MB"
    figures = [
        Figure(group, "notebook (.ipynb) imported", "MB", [len(body) / MB]),
        Figure(group, "import (offloads every output)", "s", [imported]),
        Figure(group, "log: stored events (JSON)", "MB", [log / MB]).check(1.0, "<"),
        Figure(group, "log: database + WAL on disk", "MB", [disk / MB]),
        Figure(group, "Session open + get_cells() (nothing fetched)", "s", list(opens)).check(0.2),
        Figure(group, "Session open + get_cells() of an empty notebook (baseline)", "s", list(empties)),
        Figure(group, "then reading every output's value (fetches all)", "s", list(reads)),
        Figure(group, "page: navigation -> editors ready", "ms", interactive).check(1000),
        Figure(group, "page: navigation -> first image loaded from /api/artifacts", "ms", first_image),
    ]
    return {"outputs": outputs, "rounds": rounds, "quick": args.quick, "figures": [f.to_json() for f in figures]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 10 outputs, 2 rounds")
    p.add_argument("--outputs", type=int, default=40)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    args = p.parse_args()
    results = bench(args)
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
