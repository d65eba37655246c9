"""Big streams: printing 50 MB from a cell, through runtimed versus a bare kernel, and the daemon's memory.

    python bench/bench_streams.py            # full run (3 alternating rounds, 50 MB)
    python bench/bench_streams.py --quick    # smoke run (1 round, 5 MB)
    python bench/bench_streams.py --json results.json
    python bench/bench_streams.py --profile prof/   # also run the daemon under pyinstrument

Two cells, each measured side by side (alternating) with a bare ``jupyter_client`` kernel
(execute, read IOPub until idle, read the reply — ``RawKernel`` of ``bench_runtime.py``):

- **one write**: ``sys.stdout.write(text)`` of the whole 50 MB at once (500,000 numbered
  100-byte lines joined first): the kernel's own cost is smallest here, so this is the case
  where the pipeline's cost shows most (the issue's 0.34 s bare figure is of this kind);
- **line writes**: the same 500,000 lines written one ``sys.stdout.write`` at a time, as a
  program that logs would.

Through runtimed each round opens a new notebook with ``AsyncSession`` against a daemon in a
temporary ``RUNTIMED_HOME``, warms its runtime with ``pass``, then times ``execute_cell`` until
the result (with the whole text, checked byte for byte) is in the session's replica. It then
stops the runtime and closes the session. The daemon's RSS (``VmRSS`` of ``/proc/<pid>/status``)
is read when idle (started, after a warm-up notebook whose runtime was stopped), sampled every
10 ms during the cell (peak), after the cell, and after the runtime is stopped and the session
closed; the database and its WAL are measured after the cell.

Targets (issue 18): runtimed <= 3x the bare kernel (one write); daemon RSS after all rounds within
50 MB of its idle figure. Not collected by pytest (no test_ prefix).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_runtime import ROOT, Daemon, RawKernel, stream_stats  # noqa: E402
from common import Figure  # noqa: E402

sys.path.insert(0, str(ROOT))

from runtimed.client.session import AsyncSession  # noqa: E402

LINE_CHARS = 100
"""Every line is ``<9-digit number> <89 x>\\n``: numbered, so that a lost or repeated piece shows."""
ONE_WRITE = ("import sys\n_ = sys.stdout.write(''.join(f\"{{i:09d}} {{'x' * 89}}\\n\" for i in range({n})))")
LINE_WRITES = "import sys\nfor i in range({n}):\n    sys.stdout.write(f\"{{i:09d}} {{'x' * 89}}\\n\")"
CASES = {"one write": ONE_WRITE, "line writes": LINE_WRITES}
TARGET_RATIO = 3.0
TARGET_RSS_MB = 50.0
MB = 1024 * 1024


def expected_text(lines: int) -> str:
    return "".join(f"{i:09d} {'x' * 89}\n" for i in range(lines))


def rss_mb(pid: int) -> float:
    """The resident set of a process, from ``/proc/<pid>/status`` (VmRSS)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def settled_rss_mb(pid: int, seconds: float = 10.0) -> float:
    """RSS once it stops falling (memory is given back a moment after the objects go), bounded in time."""
    deadline = time.monotonic() + seconds
    last = rss_mb(pid)
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = rss_mb(pid)
        if abs(now - last) < 1.0:
            return now
        last = now
    return last


class PeakSampler:
    """Samples a process's RSS every 10 ms in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = rss_mb(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.01):
            self.peak = max(self.peak, rss_mb(self.pid))


def db_bytes(home: Path, notebook_id: str) -> int:
    base = home / "notebooks" / f"{notebook_id}.db"
    return sum(p.stat().st_size for p in (base, Path(f"{base}-wal")) if p.exists())


async def warm_notebook(endpoint: Any) -> None:
    """A tiny notebook whose runtime runs ``pass`` and is stopped: the daemon's code paths are warm."""
    async with AsyncSession(f"streams-warm-{uuid.uuid4().hex[:8]}", endpoint=endpoint) as s:
        assert (await s.run("pass", timeout_secs=120)).success
        await s.shutdown_kernel()


async def through_runtimed(daemon: Daemon, endpoint: Any, code: str, text: str) -> dict[str, Any]:
    pid = daemon.proc.pid  # type: ignore[union-attr]
    notebook_id = f"streams-{uuid.uuid4().hex[:8]}"
    async with AsyncSession(notebook_id, endpoint=endpoint) as s:
        assert (await s.run("pass", timeout_secs=120)).success  # the runtime is up: not part of the measurement
        cell_id = await s.create_cell(code)
        before = rss_mb(pid)
        with PeakSampler(pid) as sampler:
            t0 = time.perf_counter()
            result = await s.execute_cell(cell_id, timeout_secs=1800)
            seconds = time.perf_counter() - t0
        after_cell = rss_mb(pid)
        got = result.stdout
        assert result.success, result
        assert got == text, f"wrong text: {len(got)} characters, expected {len(text)}; tail {got[-200:]!r}"
        events, stored = stream_stats(s, cell_id)
        disk = db_bytes(daemon.home, notebook_id)
        await s.shutdown_kernel()
    after_stop = settled_rss_mb(pid)
    return {"seconds": seconds, "rss_before_mb": before, "rss_peak_mb": sampler.peak, "rss_after_cell_mb": after_cell,
            "rss_after_stop_mb": after_stop, "events": events, "event_bytes": stored, "db_wal_bytes": disk}


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    lines = (args.mb * MB) // LINE_CHARS
    rounds = args.rounds
    text = expected_text(lines)
    daemon = Daemon(Path(args.profile) if args.profile else None)
    endpoint = daemon.start()
    pid = daemon.proc.pid  # type: ignore[union-attr]
    raw = RawKernel()
    await raw.start()
    rss_started = settled_rss_mb(pid)
    await warm_notebook(endpoint)
    rss_idle = settled_rss_mb(pid)
    samples: dict[str, dict[str, list[float]]] = {case: {"bare": [], "runtimed": [], "ratio": []} for case in CASES}
    runs: list[dict[str, Any]] = []
    try:
        for r in range(rounds):
            for case, template in CASES.items():
                code = template.format(n=lines)
                order = ("bare", "runtimed") if r % 2 == 0 else ("runtimed", "bare")
                measured: dict[str, float] = {}
                for which in order:
                    if which == "bare":
                        t0 = time.perf_counter()
                        await raw.execute(code)
                        measured["bare"] = time.perf_counter() - t0
                    else:
                        run = await through_runtimed(daemon, endpoint, code, text)
                        run.update(case=case, round=r)
                        runs.append(run)
                        measured["runtimed"] = run["seconds"]
                for key in ("bare", "runtimed"):
                    samples[case][key].append(measured[key])
                samples[case]["ratio"].append(measured["runtimed"] / measured["bare"])
                last = runs[-1]
                print(f"round {r + 1}/{rounds}, {case}: bare {measured['bare']:.3f} s, runtimed "
                      f"{measured['runtimed']:.3f} s ({measured['runtimed'] / measured['bare']:.2f}x); "
                      f"{last['events']} events; db+WAL {last['db_wal_bytes'] / MB:.1f} MB; daemon RSS "
                      f"{last['rss_before_mb']:.0f} -> peak {last['rss_peak_mb']:.0f} -> after cell "
                      f"{last['rss_after_cell_mb']:.0f} -> after stop {last['rss_after_stop_mb']:.0f} MB", flush=True)
    finally:
        await raw.stop()
        rss_final = settled_rss_mb(pid)
        daemon.stop(endpoint)
    size = f"{args.mb} MB"
    figures: list[Figure] = []
    for case in CASES:
        group = f"{size}, {case}"
        figures += [
            Figure(group, "bare jupyter_client kernel", "s", samples[case]["bare"]),
            Figure(group, "runtimed (AsyncSession, managed runtime)", "s", samples[case]["runtimed"]),
            Figure(group, "runtimed / bare", "x", samples[case]["ratio"]),
        ]
        of_case = [run for run in runs if run["case"] == case]
        figures += [
            Figure(group, "stream events", "", [run["events"] for run in of_case]),
            Figure(group, "db + WAL after the cell", "MB", [run["db_wal_bytes"] / MB for run in of_case]),
            Figure(group, "daemon RSS peak during the cell", "MB", [run["rss_peak_mb"] for run in of_case]),
            Figure(group, "daemon RSS after the cell", "MB", [run["rss_after_cell_mb"] for run in of_case]),
            Figure(group, "daemon RSS after the runtime stopped and the session closed", "MB",
                   [run["rss_after_stop_mb"] for run in of_case]),
        ]
    figures[2].check(TARGET_RATIO)  # one write: the pipeline's cost shows most
    memory = "daemon memory"
    figures += [
        Figure(memory, "RSS just started", "MB", [rss_started]),
        Figure(memory, "RSS idle (after a warm-up notebook, its runtime stopped)", "MB", [rss_idle]),
        Figure(memory, f"RSS after all {rounds * len(CASES)} big cells, runtimes stopped, sessions closed", "MB",
               [rss_final]),
        Figure(memory, "RSS growth over idle after all rounds", "MB", [rss_final - rss_idle]).check(TARGET_RSS_MB),
    ]
    return {"suite": "streams", "quick": args.quick,
            "config": {"mb": args.mb, "lines": lines, "rounds": rounds, "cpus": os.cpu_count(),
                       "loadavg": os.getloadavg()},
            "runs": runs, "figures": [f.to_json() for f in figures], "notes": NOTES}


NOTES = [
    "One write: the kernel writes 50 MB of numbered 100-byte lines with one `sys.stdout.write`; line writes: "
    "500,000 `sys.stdout.write` calls. The comparison alternates within each round, so the load of the machine "
    "weighs on both sides.",
    "**Flow control** (issue 15, 2026-11-30, load 3): every Python kernel a runtime starts sends at most 1 MiB of "
    "stream text per IOPub message and at most 16 MiB more than the runtime has handled "
    "(`runtime/kernel_side.py`). Before it, ipykernel sent all it had buffered since its last flush as one "
    "message (the one-write case: one 50 MB message, ~360 MB daemon peak) and a writer faster than the runtime "
    "piled its print up in the daemon's socket buffers (+476 / +547 / +791 MB over idle for 100 / 200 / 400 MB "
    "printed on an idle machine). After: the one-write peak is ~165 MB (~60 MB over idle) and runtimed / bare "
    "went from 2.63x (at load 11-13) to 1.88x; printing 100 MB, 200 MB, 400 MB and 1 GB in 100 KB writes "
    "raises the daemon's RSS by 16, 20, 20 and 23 MB. Line writes cost 1.63x the bare kernel here; the kernel "
    "itself spends ~9 us per write (500,000 writes take 4-5 s inside it), which both sides pay.",
    "**Before the stream work** (commit 82c400f): one write 487.9 s (184x the bare kernel), line writes "
    "362.9 s (49x), 256 MB of db + WAL, +993 MB daemon RSS after two cells. What changed since is told in "
    "`docs/architecture.md` §7 (outputs of one event's size cut at frozen text, the terminal's fast path, no "
    "log copy in the runtime's replica, `malloc_trim`, WAL checkpoints every 64 MiB, spilling past 1 MiB to one "
    "artifact, flow control).",
]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 5 MB")
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    p.add_argument("--rounds", type=int, default=None, help="alternating rounds (default 3; quick 1)")
    p.add_argument("--mb", type=int, default=None, help="megabytes printed by each cell (default 50; quick 5)")
    p.add_argument("--profile", default=None, metavar="DIR", help="run the daemon under pyinstrument (DIR/daemon.txt)")
    args = p.parse_args()
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.mb = args.mb or (5 if args.quick else 50)
    results = asyncio.run(bench(args))
    for f in results["figures"]:
        if f.get("target"):
            print(f"{f['group']}: {f['name']} = {statistics.median(f['samples']):.2f} ({f['target']}): "
                  f"{'met' if f['met'] else 'MISSED'}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
