"""Smoke test of the benchmark harness: ``bench/run.py --quick --only notebooks`` produces its table.

No timing assertions: this only checks that the one-command harness runs every tool and reports.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.timeout(600)


def test_quick_notebook_benchmark_prints_a_table_and_writes_a_report(tmp_path: Path) -> None:
    report = tmp_path / "benchmarks.md"
    results = tmp_path / "results.json"
    doc = ROOT / "docs" / "benchmarks.md"
    before = doc.stat().st_mtime if doc.exists() else None
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--only", "notebooks", "--notebooks", "seven",
         "--output", str(report), "--json", str(results)],
        cwd=ROOT, capture_output=True, text=True, timeout=540,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    out = proc.stdout
    for tool in ("runt run (warm daemon)", "runt run (cold daemon)", "papermill", "jupyter execute", "raw"):
        assert tool in out, tool
    assert "median (min – max)" in out and "target" in out

    text = report.read_text()
    assert text.startswith("# Benchmarks")
    assert "## Machine" in text and "papermill 2." in text and "cores" in text
    assert "| runt run (warm daemon) / papermill |" in text and "0.35x" in text

    data = json.loads(results.read_text())
    figures = data["suites"][0]["figures"]
    names = {f["name"] for f in figures}
    assert "runt run (warm daemon) / papermill" in names
    assert all(f["samples"] for f in figures)
    assert (doc.stat().st_mtime if doc.exists() else None) == before  # --output: docs/benchmarks.md untouched
