"""bench/bench_sync.py --quick runs end to end and reports every figure (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_bench_sync_quick_runs_and_reports(tmp_path: Path) -> None:
    out = tmp_path / "sync.json"
    proc = subprocess.run([sys.executable, str(ROOT / "bench" / "bench_sync.py"), "--quick", "--json", str(out)],
                          cwd=ROOT, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for label in ("fan-out to 50 readers", "ingest cellMetadataSet", "open the", "Replica.apply_wire",
                  "RSS with 100 notebooks open", "figure"):
        assert label in proc.stdout, (label, proc.stdout)
    report = json.loads(out.read_text())
    assert report["suite"] == "sync" and report["quick"] is True
    results = report["results"]
    assert set(results["fanout"]) == {"1", "10", "50"}
    for level in results["fanout"].values():
        assert level["p50_ms"] > 0 and level["p99_ms"] >= level["p50_ms"] and level["samples"] > 0
    assert results["ingest"]["cellMetadataSet_depth1_events_per_s"] > 0
    assert results["open_big_s"] > 0 and results["replay_events_per_s"] > 0
    assert results["rss_idle_mib"] > 0 and results["rss_100_notebooks_mib"] >= results["rss_idle_mib"] * 0.5
    names = {f["name"] for f in report["figures"]}
    assert "p99 push -> replica applied" in names
    assert all({"group", "name", "unit", "median", "samples"} <= f.keys() for f in report["figures"])
    assert set(report["targets"]) == {"fanout_p50_ms", "fanout_p99_ms", "ingest_events_per_s", "open_100k_s",
                                      "rss_100_notebooks_mib"}
