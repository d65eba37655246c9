"""Notebook environments: time to the first cell of a notebook with 3 dependencies, first and second run.

    python bench/bench_envs.py               # 5 rounds
    python bench/bench_envs.py --quick       # 2 rounds
    python bench/bench_envs.py --json results.json

The packages are ``tabulate``, ``toolz`` and ``six`` (tiny, pure Python, from the package registry).
uv's wheel cache is a private one for this run (``UV_CACHE_DIR`` in a temporary folder), filled once
before measuring, so both sides install from the same warm cache and nothing is downloaded while timed.

- **second run** (environment cached, pool warm): a daemon that has built the environment and holds a
  warm kernel in it (``python3@<hash>`` ready); a new notebook declaring the same 3 dependencies (set by
  a person, so approved), then the time from queueing ``import tabulate, toolz, six`` to its result.
  Next to it, the same for a notebook without dependencies (the default pool, ``import json, os``). Target (issue 21): <= 0.2 s.
- **first run** (no environment for these dependencies yet; the daemon's kernel base, built once per Python,
  exists): the time from queueing the cell to its result (building the 3-package environment, starting a
  cold kernel in it; no environment pool), each round after removing that environment,
  side by side (alternating) with ``uv run --no-project --with tabulate --with toolz --with six python
  -c "import tabulate, toolz, six"`` with uv's cached ephemeral environments removed before each round
  (so uv builds one too). Target (issue 21): <= 1.5x. For scale, also ``uv run`` with ``--with ipykernel``
  importing the kernel machinery, which is what a notebook environment needs on top.

Not collected by pytest.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from common import Figure, report  # noqa: E402
from conftest import DaemonProcess  # noqa: E402

from runtimed.client.discovery import DaemonEndpoint  # noqa: E402
from runtimed.client.http import DaemonHTTP  # noqa: E402
from runtimed.client.session import Session  # noqa: E402
from runtimed.runtime.environments import uv_bin  # noqa: E402

PACKAGES = ["tabulate", "toolz", "six"]
CODE = "import tabulate, toolz, six"


def _daemon(home: Path) -> DaemonProcess:
    os.environ["RUNTIMED_HOME"] = str(home)
    daemon = DaemonProcess(home, "--pool-size", "1")
    daemon.start(60)
    return daemon


def _wait(predicate: Any, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the pool did not warm up in time")
        time.sleep(0.05)


def _first_cell(endpoint: DaemonEndpoint, notebook_id: str, deps: list[str] | None, code: str | None = None) -> float:
    """Seconds from queueing the cell to its result, in a new notebook (dependencies set before)."""
    with Session(notebook_id, endpoint=endpoint) as s:
        if deps:
            s.set_dependencies(deps)
        cell = s.create_cell(code or (CODE if deps else "import json, os"))
        started = time.perf_counter()
        result = s.execute_cell(cell, timeout_secs=600)
        elapsed = time.perf_counter() - started
        if not result.success:
            raise RuntimeError(f"the cell failed: {result.error}")
        s.shutdown_kernel()
    return elapsed


def _pool_ready(http: DaemonHTTP, key: str | None) -> bool:
    pool = http.get("/api/status")["pool"]
    return pool.get(f"python3@{key}" if key else "python3", {}).get("ready", 0) >= 1


def second_runs(rounds: int) -> tuple[list[float], list[float]]:
    home = Path(tempfile.mkdtemp(prefix="bench-envs-"))
    daemon = _daemon(home)
    try:
        endpoint = DaemonEndpoint(daemon.url, daemon.token)
        http = DaemonHTTP(endpoint, timeout=600)
        _first_cell(endpoint, "warmup", PACKAGES)  # builds the environment
        key = http.get("/api/notebooks/warmup/environment")["request"]["hash"]
        with_deps, without = [], []
        for i in range(rounds):
            _wait(lambda: _pool_ready(http, key) and _pool_ready(http, None))
            with_deps.append(_first_cell(endpoint, f"second-{i}", PACKAGES))
            _wait(lambda: _pool_ready(http, key) and _pool_ready(http, None))
            without.append(_first_cell(endpoint, f"plain-{i}", None))
        http.close()
    finally:
        daemon.stop()
        shutil.rmtree(home, ignore_errors=True)
    return with_deps, without


def _uv_run(extra: list[str], code: str) -> float:
    for path in glob.glob(os.path.join(os.environ["UV_CACHE_DIR"], "environments-v*")):
        shutil.rmtree(path, ignore_errors=True)  # uv's cached ephemeral environments: build one again
    cmd = [uv_bin(), "run", "--no-project", "--quiet", *[a for p in extra for a in ("--with", p)],
           "python", "-c", code]
    started = time.perf_counter()
    subprocess.run(cmd, check=True, stdin=subprocess.DEVNULL)
    return time.perf_counter() - started


def first_runs(rounds: int) -> tuple[list[float], list[float], list[float], float]:
    """One daemon whose kernel base is built first (once per Python, by a notebook with another dependency);
    each round removes the 3-package environment, so it is built again. No environment pool: a cold kernel."""
    ours, uv_same, uv_kernel = [], [], []
    home = Path(tempfile.mkdtemp(prefix="bench-envs-first-"))
    os.environ["RUNTIMED_ENV_POOL_SIZE"] = "0"
    daemon = _daemon(home)
    try:
        endpoint = DaemonEndpoint(daemon.url, daemon.token)
        started = time.perf_counter()
        _first_cell(endpoint, "base", ["six"], "import six")
        base = time.perf_counter() - started
        for i in range(rounds):
            uv_same.append(_uv_run(PACKAGES, CODE))
            ours.append(_first_cell(endpoint, f"first-{i}", PACKAGES))
            for meta in glob.glob(str(home / "envs" / "*" / "runtimed-env.json")):
                if PACKAGES[0] in json.loads(Path(meta).read_text()).get("dependencies", []):
                    shutil.rmtree(Path(meta).parent)  # the next round builds it again
            uv_kernel.append(_uv_run(["ipykernel", *PACKAGES], CODE + "; import ipykernel.kernelapp"))
    finally:
        daemon.stop()
        os.environ.pop("RUNTIMED_ENV_POOL_SIZE", None)
        shutil.rmtree(home, ignore_errors=True)
    return ours, uv_same, uv_kernel, base


def bench(args: argparse.Namespace) -> dict[str, Any]:
    rounds = 2 if args.quick else args.rounds
    cache = tempfile.mkdtemp(prefix="bench-envs-uv-cache-")
    os.environ["UV_CACHE_DIR"] = cache  # the daemons inherit it
    try:
        _uv_run(["ipykernel", *PACKAGES], CODE)  # fill the wheel cache once (downloads happen here)
        with_deps, without = second_runs(rounds)
        ours, uv_same, uv_kernel, base = first_runs(rounds)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    group = "3 dependencies (tabulate, toolz, six)"
    ratio = [a / b for a, b in zip(ours, uv_same, strict=True)]
    ratio_kernel = [a / b for a, b in zip(ours, uv_kernel, strict=True)]
    figures = [
        Figure(group, "second run (environment cached, pool warm): queue -> first cell done", "s",
               with_deps).check(0.2),
        Figure(group, "the same without dependencies (default pool), for comparison", "s", without),
        Figure(group, "first run: queue -> first cell done (build the environment, start a kernel in it)", "s",
               ours),
        Figure(group, "uv run --with the 3 packages (its ephemeral environment rebuilt)", "s", uv_same),
        Figure("kernel base (once per Python)", "first notebook with dependencies on a daemon: queue -> cell done "
               "(builds the kernel base with ipykernel, then its environment)", "s", [base]),
        Figure(group, "uv run --with ipykernel + the 3 packages, importing the kernel machinery", "s", uv_kernel),
        Figure(group, "first run / uv run --with the same packages", "x", ratio).check(1.5),
        Figure(group, "first run / uv run --with ipykernel + the packages", "x", ratio_kernel),
    ]
    return {"rounds": rounds, "quick": args.quick, "figures": [f.to_json() for f in figures]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run: 2 rounds")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--json", default=None, help="write the results as JSON to this path")
    args = p.parse_args()
    results = bench(args)
    report(results, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
