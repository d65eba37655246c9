"""Shared helpers of the benchmarks: inputs, the machine, statistics, figures, targets and tables.

Every benchmark script writes its results as JSON (``--json PATH``). ``bench/run.py`` folds
them into one report; the shape it understands best is::

    {"suite": "notebooks",
     "figures": [{"group": "seven.ipynb", "name": "runt run (warm)", "unit": "s",
                  "samples": [1.2, 1.3, 1.1], "median": 1.2, "min": 1.1, "max": 1.3,
                  "target": "<= 0.35", "met": true, "note": "..."}],
     ...anything else...}

Other shapes are folded generically: every number becomes a row, and ``targets``/``met``
mappings (``{"lines": 1.5}`` / ``{"lines": true}``) become target rows.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
NOTEBOOKS = BENCH / "notebooks"
"""The benchmark notebooks (``seven.ipynb``, ``trivial200.ipynb``), committed here; tests use them too."""
PACKAGES = ("runtimed", "papermill", "nbclient", "jupyter_client", "ipykernel")


def inputs_dir() -> Path:
    """Where the benchmark notebooks are: inside the repository, so a checkout is self-contained."""
    return NOTEBOOKS


def bin_path(name: str) -> str:
    """An executable of this Python environment (``runt``, ``papermill``, ``jupyter``)."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else name


# -- the machine ------------------------------------------------------------------------------------


def _memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names: Iterable[str] = PACKAGES) -> dict[str, str]:
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def machine_info() -> dict[str, Any]:
    memory = _memory_bytes()
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu": _cpu_model(),
        "memory_gib": round(memory / 2**30, 1) if memory else None,
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "packages": package_versions(),
        "load_average": load,
    }


# -- statistics and figures -------------------------------------------------------------------------


@dataclass
class Figure:
    group: str
    name: str
    unit: str
    samples: list[float]
    target: str | None = None
    met: bool | None = None
    note: str = ""
    median: float = field(init=False)
    min: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        self.median = statistics.median(self.samples) if self.samples else float("nan")
        self.min = min(self.samples) if self.samples else float("nan")
        self.max = max(self.samples) if self.samples else float("nan")

    def check(self, limit: float, op: str = "<=") -> Figure:
        """Judge the median against a target (``<=`` or ``<``)."""
        self.target = f"{op} {limit:g}{'x' if self.unit == 'x' else ' ' + self.unit}"
        self.met = self.median <= limit if op == "<=" else self.median < limit
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def fmt_value(value: float | None, unit: str) -> str:
    if value is None or value != value:  # NaN
        return "–"
    if unit == "x":
        return f"{value:.2f}x"
    if unit == "s":
        return f"{value:.3f} s" if value < 10 else f"{value:.2f} s"
    if unit == "ms":
        return f"{value:.2f} ms"
    if unit in ("B", "bytes"):
        return f"{value:,.0f} B"
    if float(value).is_integer():
        return f"{value:,.0f}{(' ' + unit) if unit else ''}"
    return f"{value:.4g}{(' ' + unit) if unit else ''}"


def fmt_figure(f: Mapping[str, Any]) -> str:
    unit = f.get("unit", "")
    median = fmt_value(f.get("median"), unit)
    samples = f.get("samples") or []
    if len(samples) > 1:
        lo, hi = fmt_value(f.get("min"), unit), fmt_value(f.get("max"), unit)
        return f"{median} ({lo} – {hi})"
    return median


def verdict(f: Mapping[str, Any]) -> str:
    if not f.get("target"):
        return ""
    return ("met " if f.get("met") else "MISSED ") + f"(target {f['target']})"


def report(results: Mapping[str, Any], json_path: str | None) -> None:
    """Print every figure with its verdict, and write the results as JSON when asked."""
    for f in results["figures"]:
        mark = f" ({f['target']}: {'met' if f['met'] else 'MISSED'})" if f.get("target") else ""
        print(f"{f['group']}: {f['name']} = {fmt_figure(f)}{mark}")
    if json_path:
        Path(json_path).write_text(json.dumps(results, indent=2))


# -- running tools ----------------------------------------------------------------------------------


class ToolFailed(RuntimeError):
    pass


def timed(cmd: Sequence[str], *, env: Mapping[str, str] | None = None, cwd: Path | str | None = None,
          timeout: float = 900, expect: int = 0) -> tuple[float, subprocess.CompletedProcess[bytes]]:
    """Run a command as the user would; return (wall seconds, completed process)."""
    start = time.perf_counter()
    proc = subprocess.run(list(cmd), env=dict(env) if env is not None else None, cwd=cwd, capture_output=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    if proc.returncode != expect:
        tail = proc.stderr.decode(errors="replace")[-3000:]
        raise ToolFailed(f"{' '.join(map(str, cmd))} exited with {proc.returncode} (expected {expect}):\n{tail}")
    return elapsed, proc


# -- generic folding of other suites' JSON -------------------------------------------------------------


def _flatten(prefix: str, value: Any, out: list[tuple[str, float]]) -> None:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        out.append((prefix, float(value)))
    elif isinstance(value, Mapping):
        for key, sub in value.items():
            if key in ("targets", "met", "machine", "figures"):
                continue
            _flatten(f"{prefix}.{key}" if prefix else str(key), sub, out)


def _unit_of(name: str) -> str:
    lowered = name.lower()
    for suffix, unit in (("_ms", "ms"), ("_s", "s"), ("_bytes", "B"), ("ratio", "x"), ("_x", "x")):
        if lowered.endswith(suffix):
            return unit
    return ""


def fold_suite(suite: str, data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Figures of a suite's JSON: its ``figures`` if it has them, else every number it reports."""
    if isinstance(data.get("figures"), list):
        figures = []
        for f in data["figures"]:
            f = dict(f)
            f.setdefault("group", suite)
            samples = f.get("samples") or ([f["median"]] if "median" in f else [])
            f["samples"] = samples
            for key in ("median", "min", "max"):
                if key not in f and samples:
                    f[key] = {"median": statistics.median, "min": min, "max": max}[key](samples)
            figures.append(f)
        return figures
    rows: list[tuple[str, float]] = []
    _flatten("", data, rows)
    figures = [{"group": suite, "name": name, "unit": _unit_of(name), "samples": [v], "median": v, "min": v,
                "max": v} for name, v in rows]
    targets = data.get("targets") if isinstance(data.get("targets"), Mapping) else {}
    met = data.get("met") if isinstance(data.get("met"), Mapping) else {}
    for key, ok in met.items():
        target_key = key if key in targets else next(
            (k for k in targets if k.startswith(str(key)) or str(key).startswith(k)), None)  # "overhead_ms"
        limit = targets.get(target_key) if target_key is not None else None
        # the figure a target judges: the row whose name has every part of the target's key ("lines.ratio")
        parts = str(target_key or key).split("_")
        row = next(((n, v) for n, v in rows if all(part in n for part in parts)), None)
        value = row[1] if row else float("nan")
        unit = _unit_of(row[0]) if row else ""
        figures.append({"group": suite, "name": f"target: {key}" + (f" ({row[0]})" if row else ""), "unit": unit,
                        "samples": [], "median": value, "min": value, "max": value,
                        "target": f"{limit:g}" if isinstance(limit, int | float) else "see the suite",
                        "met": bool(ok)})
    return figures


def load_json(path: Path) -> Any:
    with open(path) as f:
        return json.load(f)
