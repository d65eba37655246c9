"""All benchmarks in one command: a table on the terminal and ``docs/benchmarks.md``.

    python bench/run.py                      # everything; writes docs/benchmarks.md
    python bench/run.py --quick              # smoke run: prints the table, writes nothing unless --output
    python bench/run.py --only notebooks     # one suite (notebooks, sync, runtime; comma-separated)

Suites (each a script of its own, run as a subprocess with ``--json``):

- notebooks: ``bench/bench_notebooks.py`` — runt run vs papermill vs jupyter execute vs a raw
  jupyter_client loop, cold and warm daemon;
- sync: ``bench/bench_sync.py``;
- runtime: ``bench/bench_runtime.py``;
- web: ``bench/bench_web.py``;
- streams: ``bench/bench_streams.py`` — a 50 MB print, wall time and the daemon's RSS;
- mcp: ``bench/bench_mcp.py``;
- artifacts: ``bench/bench_artifacts.py`` — 40 outputs of 2 MB: log size, opening with ``Session``, the page;
- multidaemon: ``bench/bench_multi_daemon.py`` — three daemons on a throwaway PostgreSQL: fan-out across
  daemons, ingest through several daemons, a team's load;
- ai: ``bench/bench_ai.py`` — an AI cell's first streamed token, provider -> a second client's replica, vs the bare SDK.

A run of some suites (``--only``) rewrites their sections of ``docs/benchmarks.md`` and carries the
others over from the existing report as they are (hand-written notes under a suite's section included).

Every figure is the median with min – max over repeated runs; comparisons are measured side by
side (alternating) and reported as ratios, next to their targets.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, ROOT, fmt_figure, fold_suite, load_json, machine_info, verdict  # noqa: E402

SUITES = {
    "notebooks": ("bench_notebooks.py", "Notebook runs: runt run vs papermill vs jupyter execute vs raw jupyter_client"),
    "sync": ("bench_sync.py", "Sync: the event log and its clients"),
    "runtime": ("bench_runtime.py", "Runtime: what runtimed adds to a raw jupyter_client round trip"),
    "web": ("bench_web.py", "Web UI: a 500-cell notebook becoming interactive, keystroke latency (Chromium)"),
    "mcp": ("bench_mcp.py", "MCP: tool-call overhead over AsyncSession, execute_cell through runt mcp"),
    "streams": ("bench_streams.py", "Big streams: printing 50 MB through runtimed vs a bare kernel, daemon memory"),
    "artifacts": ("bench_artifacts.py", "Artifacts: 40 outputs of 2 MB — log size, opening with Session, the page"),
    "multidaemon": ("bench_multi_daemon.py", "Many daemons on one PostgreSQL: fan-out, ingest, a team's load"),
    "envs": ("bench_envs.py", "Notebook environments: time to first cell with 3 dependencies, first and second run"),
    "ai": ("bench_ai.py", "AI cells: the provider's first token in a second client's replica"),
}
DOC = ROOT / "docs" / "benchmarks.md"


# -- running the suites -----------------------------------------------------------------------------------


def run_suite(name: str, args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    script, title = SUITES[name]
    path = BENCH / script
    entry: dict[str, Any] = {"suite": name, "title": title, "script": f"bench/{script}"}
    if not path.exists():
        entry["error"] = f"bench/{script} is not there (yet)"
        return entry
    out = workdir / f"{name}.json"
    cmd = [sys.executable, str(path), "--json", str(out)]
    if args.quick:
        cmd.append("--quick")
    if name == "notebooks":
        if args.rounds:
            cmd += ["--rounds", str(args.rounds)]
        if args.notebooks:
            cmd += ["--notebooks", args.notebooks]
        if args.profile:
            cmd += ["--profile", args.profile]
    print(f"\n== {title} ({' '.join(['python', f'bench/{script}', *cmd[2:]])})", flush=True)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, timeout=args.timeout, stdin=subprocess.DEVNULL)
    entry["seconds"] = round(time.monotonic() - started, 1)
    if proc.returncode != 0 or not out.exists():
        entry["error"] = f"bench/{script} exited with code {proc.returncode} (its output is above)"
        return entry
    data = load_json(out)
    entry["data"] = data
    entry["figures"] = fold_suite(name, data)
    return entry


# -- the terminal table ------------------------------------------------------------------------------------


def print_table(suites: list[dict[str, Any]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:  # plain text
        for suite in suites:
            print(f"\n{suite['title']}")
            for f in suite.get("figures", []):
                print(f"  {f['group']:<36} {f['name']:<60} {fmt_figure(f):>30}  {verdict(f)}")
            if suite.get("error"):
                print(f"  {suite['error']}")
        return
    console = Console()
    if not console.is_terminal:  # a log or a pipe: wide enough that rows do not wrap
        console = Console(width=170)
    for suite in suites:
        table = Table(title=suite["title"], title_justify="left", show_lines=False)
        for column, justify in (("group", "left"), ("figure", "left"), ("median (min – max)", "right"),
                                ("target", "left")):
            table.add_column(column, justify=justify)
        for f in suite.get("figures", []):
            mark = verdict(f)
            style = "green" if f.get("met") else ("red" if f.get("target") else None)
            table.add_row(f["group"], f["name"], fmt_figure(f), mark, style=style)
        if suite.get("error"):
            table.add_row("–", suite["error"], "", "", style="yellow")
        console.print(table)


# -- docs/benchmarks.md -----------------------------------------------------------------------------------------


def _md_escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def machine_section(machine: dict[str, Any]) -> list[str]:
    packages = ", ".join(f"{k} {v}" for k, v in machine["packages"].items())
    load = ", ".join(str(x) for x in machine["load_average"]) if machine.get("load_average") else "n/a"
    return [
        "## Machine", "",
        "| | |", "| --- | --- |",
        f"| date | {machine['date']} |",
        f"| CPU | {machine['cores']} cores ({_md_escape(machine['cpu'])}) |",
        f"| memory | {machine['memory_gib']} GiB |",
        f"| OS | {machine['os']} |",
        f"| Python | {machine['python']} |",
        f"| packages | {packages} |",
        f"| load average at start (1, 5, 15 min) | {load} |",
        "",
    ]


def figures_table(figures: list[dict[str, Any]], with_group: bool = False) -> list[str]:
    head = "| group | figure | median (min – max) | target |" if with_group else \
        "| figure | median (min – max) | target |"
    lines = [head, "| --- " * (4 if with_group else 3) + "|"]
    for f in figures:
        mark = ""
        if f.get("target"):
            mark = ("✅ met" if f.get("met") else "❌ **missed**") + f" (target {_md_escape(f['target'])})"
        cells = [_md_escape(f["name"]), fmt_figure(f), mark]
        if with_group:
            cells.insert(0, _md_escape(f["group"]))
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def measured_line(machine: dict[str, Any]) -> list[str]:
    """Each section says when it was measured and under what load: a partial run carries the other sections
    over as they are, so the report's machine table alone would date them wrongly."""
    load = ", ".join(str(x) for x in machine["load_average"]) if machine.get("load_average") else "n/a"
    return [f"_Measured {machine['date']}, load average at start {load}._", ""]


def notebooks_section(entry: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    data = entry["data"]
    lines = [f"## {entry['title']}", "", *measured_line(machine),
             f"`bench/bench_notebooks.py`, {data['rounds']} alternating round(s) per notebook"
             f"{' (quick smoke run)' if data.get('quick') else ''}. Each tool runs as a user runs it, as a "
             "subprocess of its command line, and its wall time is measured from launch to exit:", "",
             "- **runt run (cold daemon)**: `runt run IN OUT -p …` with a fresh `RUNTIMED_HOME` every run, so "
             "the daemon's start and the kernel's start are inside the measurement;",
             "- **runt run (warm daemon)**: the same command against a daemon that is already running, its "
             "prewarmed kernel pool ready (the default pool: one python3 kernel that has already imported "
             "numpy, pandas and matplotlib, those installed);",
             "- **papermill**: `papermill IN OUT -p …`;",
             "- **jupyter execute (nbclient)**: `jupyter execute --output=OUT IN` on the notebook with the same "
             "injected parameters cell (nbclient takes no parameters);",
             "- **raw jupyter_client loop**: a minimal script (in `bench_notebooks.py`): start a kernel, execute "
             "each code cell, read IOPub until idle, write the notebook.", "",
             "The order of the tools rotates every round; ratios are computed per round (A and B measured side by "
             "side) and then summarised.", ""]
    groups: dict[str, list[dict[str, Any]]] = {}
    for f in entry["figures"]:
        groups.setdefault(f["group"], []).append(f)
    for group, figures in groups.items():
        lines += [f"### {group}", ""]
        for unit in ("s", "ms", "x"):
            if any(f["unit"] == unit for f in figures):
                lines += [*figures_table([f for f in figures if f["unit"] == unit]), ""]
    for note in data.get("notes") or []:  # the suite's own prose: part of its section, so a regeneration keeps it
        lines += [str(note), ""]
    return lines


def generic_section(entry: dict[str, Any], machine: dict[str, Any]) -> list[str]:
    lines = [f"## {entry['title']}", "", *measured_line(machine), f"`{entry['script']}`" + (" (quick smoke run)" if entry.get("quick") else "")
             + ", folded from its JSON.", ""]
    if entry.get("error"):
        return [*lines, f"Not measured: {entry['error']}.", ""]
    figures = entry["figures"]
    with_samples = [f for f in figures if f.get("samples")]
    targets = [f for f in figures if not f.get("samples")]
    lines += figures_table(with_samples, with_group=len({f["group"] for f in with_samples}) > 1)
    if targets:
        lines += ["", "Targets as the suite judges them:", ""]
        lines += ["| target (the figure it judges) | value | limit | met |", "| --- | --- | --- | --- |"]
        lines += [f"| {_md_escape(f['name'].removeprefix('target: '))} | {fmt_figure(f)} | {_md_escape(f['target'])} "
                  f"| {'✅ met' if f.get('met') else '❌ **missed**'} |" for f in targets]
    lines.append("")
    notes = entry.get("data", {}).get("notes") if isinstance(entry.get("data"), dict) else None
    for note in notes or []:  # the suite's own prose: part of its section, so a regeneration keeps it
        lines += [str(note), ""]
    return lines


def _median_of(figures: list[dict[str, Any]], group_prefix: str, name: str) -> float | None:
    for f in figures:
        if f["group"].startswith(group_prefix) and f["name"] == name:
            return f["median"]
    return None


def profile_section(entry: dict[str, Any]) -> list[str]:
    """Why a notebook target is missed, from the profiling pass of bench_notebooks.py."""
    data = entry["data"]
    profile = data.get("profile")
    missed = [f for f in entry["figures"] if f.get("target") and not f.get("met")]
    if not missed:
        return ["## Notebook targets", "", "Every notebook target is met.", ""]
    lines = ["## Why notebook targets are missed, and what would close them", ""]
    if not profile:
        return [*lines, "No profile in this run (quick runs skip it; `python bench/bench_notebooks.py --profile "
                        "always` makes one).", ""]
    figures = entry["figures"]
    startup = profile["startup"]
    lines += ["A profiling pass (after the measurements, not timed with them) runs `runt run --json` against a "
              "fresh warm daemon, then the `runt run` client under pyinstrument, then one more run against a warm "
              "daemon started under pyinstrument. "
              "`--json` reports the wall time of each phase of the run; the output notebook's per-cell times give "
              "the time inside cells and between them. The full profiles are in `bench/profiles/*.txt`. The daemon's "
              "profile covers its whole life (start, pool warm-up, the run, shutdown).", "",
              f"Process start: a bare `python` takes {startup['python_s']:.3f} s; importing what `runt run` "
              f"imports adds {startup['runt_imports_s']:.3f} s (papermill's imports: "
              f"{startup['papermill_imports_s']:.3f} s)"
              + (". Module execution time by package (`python -X importtime`): "
                 + ", ".join(f"{r['package']} {r['seconds']:.3f} s" for r in startup.get("runt_import_breakdown", []))
                 if startup.get("runt_import_breakdown") else "") + ".", ""]
    for name in ("seven", "trivial200"):
        p = profile.get(name)
        if not p:
            continue
        nb_file = f"{name}.ipynb"
        paper = _median_of(figures, nb_file, "papermill")
        warm = _median_of(figures, nb_file, "runt run (warm daemon)")
        raw = _median_of(figures, nb_file, "raw jupyter_client loop")
        target = next((f for f in figures if f["group"].startswith(nb_file) and f.get("target")), None)
        phases = p["phases"]
        outside = max(0.0, p["wall_s"] - p["run_s"])
        lines += [f"### {nb_file}", ""]
        if paper and warm and target:
            limit = float(target["target"].split()[1].rstrip("x"))
            lines += [f"papermill takes {paper:.2f} s (median); the target ({target['target']}) leaves "
                      f"runt run {limit * paper:.2f} s; the warm runs took {warm:.2f} s (median). The raw "
                      f"jupyter_client loop, which has no overhead to speak of but starts its own kernel, took "
                      f"{raw:.2f} s." if raw else "", ""]
        lines += ["| phase of one warm `runt run` (profiling pass) | seconds |", "| --- | --- |",
                  f"| interpreter start and imports (wall time outside the run) | {outside:.3f} |"]
        labels = {"prepare": "read the notebook, inject parameters", "daemon": "find the daemon",
                  "import": "import the notebook into the daemon (REST)", "connect": "open the sync connection",
                  "request": "request every code cell (one push)", "start": "until the runtime session is active",
                  "execute": "execute", "export": "export and papermill metadata",
                  "stop": "stop the runtime (not awaited)", "write": "write the output", "notify": "--notify"}
        for key, value in phases.items():
            label = labels.get(key, key)
            if key == "execute":
                label += (f" — {p['in_cells_s']:.3f} s inside {p['cells']} cells (median {p['cell_median_ms']:.1f} "
                          f"ms), {p['gaps_total_s']:.3f} s between them (median gap {p['gap_median_ms']:.1f} ms)")
            lines.append(f"| {_md_escape(label)} | {value:.3f} |")
        lines.append(f"| **total wall time** | **{p['wall_s']:.3f}** |")
        lines.append("")
        for side in ("client", "daemon"):
            top = p.get(f"{side}_top")
            if not top:
                continue
            head, rows = top[0], top[1:8]
            who = "`runt run`" if side == "client" else "the daemon, with its managed runtime agent"
            lines += [f"Top self time in {who} ({head['duration_s']:.2f} s wall, {head['cpu_s']:.2f} s CPU; waiting "
                      "left out): " + ", ".join(f"`{r['function']}` ({r['file']}) {r['self_s']:.3f} s" for r in rows)
                      + ".", ""]
        budget = None
        if paper and target:
            budget = float(target["target"].split()[1].rstrip("x")) * paper
        lines += explain(name, p, figures, startup, budget)
    return lines


def explain(name: str, p: dict[str, Any], figures: list[dict[str, Any]], startup: dict[str, float],
            budget: float | None) -> list[str]:
    """What dominates, and what would close the gap (the reasoning is fixed; the numbers are this run's)."""
    cells, gaps, in_cells = p["cells"], p["gaps_total_s"], p["in_cells_s"]
    execute = p["phases"].get("execute", 0.0)
    fixed = max(0.0, p["wall_s"] - execute)
    imports, thin = startup["runt_imports_s"], startup.get("thin_client_imports_s")
    thin_text = (f" (measured here: the imports such a client still needs take {thin:.2f} s, against "
                 f"{imports:.2f} s today)" if thin is not None else "")
    thin_client = ("A thin `runt run` client: it needs no replica of its own — import and request over REST, "
                   "follow execution statuses and outputs as raw events on the WebSocket, export with "
                   "`GET /api/notebooks/{id}/export` — so it imports no pydantic catalog, materializer or pycrdt"
                   + thin_text + " and spends no CPU applying every event of the run. Also no TLS context for "
                   "`http://127.0.0.1`: `runt run` already skips it, discovery's health check still builds one.")
    warm = _median_of(figures, f"{name}.ipynb", "runt run (warm daemon)")
    missing = f" The warm runs miss it by {warm - budget:.2f} s." if warm and budget is not None else ""
    if name == "seven":
        pre = _median_of(figures, "seven.ipynb", "runt run (warm, pool preimports numpy+matplotlib)")
        ratio = _median_of(figures, "seven.ipynb",
                           "runt run (warm, pool preimports numpy+matplotlib) / papermill")
        pre_text = ""
        if pre and ratio:
            pre_text = f" — measured side by side here: {pre:.2f} s, {ratio:.2f}x papermill"
            if budget is not None:
                pre_text += (", within the target" if pre <= budget else
                             f", {pre - budget:.2f} s short of the target on its own")
        return [
            f"**What dominates.** The notebook's own work: {in_cells:.2f} s of the run is inside cells, most of it "
            "importing numpy and matplotlib and drawing the histogram — the same work papermill's kernel does. "
            f"Everything else together is {fixed:.2f} s: interpreter start and imports ({imports:.2f} s of imports: "
            "the client keeps a full replica of the notebook, so it imports the pydantic event catalog, the "
            "materializer and pycrdt, plus httpx — whose `__init__` also imports its command line, rich and "
            "pygments — and websockets), importing the notebook and opening the sync connection, and "
            f"{gaps:.3f} s of scheduling between cells."
            + (f" The target leaves {budget:.2f} s for the whole run, about as much as the cells alone take in a "
               "kernel that has imported nothing yet." if budget is not None and budget < in_cells * 1.25 else "")
            + missing,
            "",
            "**What would close it.** (1) Let the warm pool do the imports before the run: the daemon's "
            "`--preimport numpy,matplotlib,matplotlib.pyplot` (or `RUNTIMED_PREIMPORT`) takes that work out of the "
            f"measured run{pre_text}. Making a preimport list part of the default pool (or learning it from the "
            "notebooks a daemon has run) is the larger half of meeting the target. (2) " + thin_client,
            "",
        ]
    per_cell = (in_cells + gaps) / cells * 1000 if cells else 0.0
    saving = max(0.0, execute - cells * 0.002)
    return [
        f"**What dominates.** Both halves matter on this notebook. Per cell: {cells} one-line cells take "
        f"{in_cells:.2f} s inside executions plus {gaps:.2f} s between them, {per_cell:.1f} ms per cell, where a "
        "kernel needs about a millisecond for `x = 1`. The runtime agent claims one request at a time: the "
        "claim (`executionAssigned` + `executionStarted`) is pushed and acknowledged before the kernel sees the "
        "code, and the agent's replica catches up with it before the next claim, so every cell waits for a round "
        "trip through the daemon — a SQLite transaction, the in-process channel of the managed runtime and a "
        "WebSocket fan-out to the client (see the daemon's top self time above) — on a machine where the daemon, the kernel and the client share the "
        f"cores. Fixed: {fixed:.2f} s for interpreter start, imports, importing the notebook and connecting. "
        "papermill pays per cell as well (it writes the whole output notebook after every cell, which is why it "
        "is slow on this notebook)"
        + (f"; the target leaves runt {budget:.2f} s for the whole run." if budget is not None else ".")
        + missing,
        "",
        "**What would close it.** (1) Claim ahead in the runtime agent: claim cell *n+1* while cell *n* runs (or "
        "a whole run-all batch in one push) and hand it to the kernel as soon as cell *n* is done, so no round "
        "trip sits between two cells; the session id still fences every claim, and a lost claim discards its "
        f"outputs. At about 2 ms per cell that would take up to {saving:.2f} s off this run. (2) The managed "
        "runtime already talks to the room over an in-process channel; it still keeps a replica of its own, "
        "which it could read from the daemon's projection instead. (3) " + thin_client,
        "",
    ]


def report_sections(text: str) -> dict[str, list[str]]:
    """A report's ``## `` sections by title, each with everything under it (hand-written notes included)."""
    sections: dict[str, list[str]] = {}
    title = None
    for line in text.splitlines():
        if line.startswith("## "):
            title = line[3:].strip()
            sections[title] = [line]
        elif title is not None:
            sections[title].append(line)
    return sections


def carried_target_rows(old: dict[str, list[str]], new_groups: set[str]) -> list[str]:
    """The previous report's target rows of groups this run did not measure."""
    rows = [line for line in old.get("Targets", []) if line.startswith("| ")][2:]  # after the header and rule
    return [row for row in rows if row.split(" | ")[0].removeprefix("| ").strip() not in new_groups]


def earlier_machine(section: list[str]) -> list[str]:
    """The machine table of the sections a report carries: its last table (the carried one of an earlier partial
    run, else the report's own)."""
    tables: list[list[str]] = []
    for line in section[1:]:
        if line.startswith("|"):
            if not tables or not tables[-1] or not tables[-1][-1].startswith("|"):
                tables.append([])
            tables[-1].append(line)
        elif tables and tables[-1]:
            tables.append([])
    tables = [t for t in tables if t]
    return tables[-1] if tables else []


def write_doc(path: Path, machine: dict[str, Any], suites: list[dict[str, Any]], args: argparse.Namespace) -> None:
    ran = {entry["suite"] for entry in suites}
    old = report_sections(path.read_text()) if path.exists() and set(SUITES) - ran else {}
    carried = {name: old[title] for name, (_, title) in SUITES.items() if name not in ran and title in old}
    lines = ["# Benchmarks", "",
             "Generated by `python bench/run.py`" + (" --quick" if args.quick else "")
             + " — do not edit by hand; run the command again to refresh it. Every figure is the median with "
             "min – max over repeated runs; comparisons are measured side by side in one run (alternating A and B) "
             "and given as ratios. Targets come from the issues.", ""]
    lines += machine_section(machine)
    if carried:
        table_rows = earlier_machine(old.get("Machine", []))
        lines += ["The sections of " + ", ".join(f"`{n}`" for n in carried) + " are carried over from an earlier "
                  "run (this one ran " + ", ".join(f"`{n}`" for n in sorted(ran)) + ")"
                  + (", measured on:" if table_rows else "."), ""]
        if table_rows:
            lines += [*table_rows, ""]
    all_targets = [f for s in suites for f in s.get("figures", []) if f.get("target")]
    old_rows = carried_target_rows(old, {f["group"] for f in all_targets}) if old else []
    if all_targets or old_rows:
        lines += ["## Targets", ""]
        lines += figures_table(all_targets, with_group=True) if all_targets else \
            ["| group | figure | median (min – max) | target |", "| --- | --- | --- | --- |"]
        lines += old_rows
        lines.append("")
    by_name = {entry["suite"]: entry for entry in suites}
    for name in [*SUITES, *(n for n in by_name if n not in SUITES)]:
        entry = by_name.get(name)
        if entry is None:
            lines += carried.get(name, [])
        elif entry["suite"] == "notebooks" and entry.get("data"):
            lines += notebooks_section(entry, machine)
        else:
            lines += generic_section(entry, machine)
    for entry in suites:
        if entry["suite"] == "notebooks" and entry.get("data"):
            lines += profile_section(entry)
    if "notebooks" not in ran:
        for title in ("Why notebook targets are missed, and what would close them", "Notebook targets"):
            lines += old.get(title, [])
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines).rstrip() + "\n")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="a smoke run of every suite (1 round, small sizes)")
    p.add_argument("--only", default=",".join(SUITES), help="comma-separated suites: notebooks,sync,runtime")
    p.add_argument("--output", default=None, metavar="PATH",
                   help=f"the Markdown report (default {DOC.relative_to(ROOT)}; quick runs write one only if given)")
    p.add_argument("--json", default=None, metavar="PATH", help="also write every suite's results as one JSON")
    p.add_argument("--rounds", type=int, default=None, help="rounds of the notebooks suite (default 5)")
    p.add_argument("--notebooks", default=None, help="notebooks of the notebooks suite (default seven,trivial200)")
    p.add_argument("--profile", choices=("auto", "always", "never"), default=None,
                   help="profiling pass of the notebooks suite (default: when a target is missed)")
    p.add_argument("--timeout", type=float, default=3 * 3600, help="seconds per suite (default 3 hours)")
    p.add_argument("--from-json", default=None, metavar="PATH",
                   help="measure nothing: render the report of an earlier --json (e.g. after editing the report)")
    args = p.parse_args()
    if args.from_json:
        saved = json.loads(Path(args.from_json).read_text())
        args.quick = any(s.get("quick") for s in saved["suites"])
        for entry in saved["suites"]:  # folded again, so that changes to the folding apply
            if isinstance(entry.get("data"), dict):
                entry["figures"] = fold_suite(entry["suite"], entry["data"])
        print_table(saved["suites"])
        output = Path(args.output) if args.output else DOC
        write_doc(output, saved["machine"], saved["suites"], args)
        print(f"\nwrote {output}")
        return 0
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        p.error(f"unknown suite(s) {', '.join(unknown)}; choose from {', '.join(SUITES)}")

    machine = machine_info()
    print(f"{machine['date']}: {machine['cores']} cores, {machine['memory_gib']} GiB, Python {machine['python']}, "
          + ", ".join(f"{k} {v}" for k, v in machine["packages"].items()), flush=True)
    with tempfile.TemporaryDirectory(prefix="runtimed-bench-") as tmp:
        suites = [run_suite(name, args, Path(tmp)) for name in names]
    for entry in suites:
        if entry.get("data") is not None and isinstance(entry["data"], dict):
            entry["quick"] = bool(entry["data"].get("quick", args.quick))
    print()
    print_table(suites)
    output = Path(args.output) if args.output else (None if args.quick else DOC)
    if output is not None:
        write_doc(output, machine, suites, args)
        print(f"\nwrote {output}")
    else:
        print(f"\n(quick run: {DOC.relative_to(ROOT)} left as it is; pass --output PATH to write a report)")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": machine, "suites": suites}, indent=2, default=str))
    failed = [s["suite"] for s in suites if s.get("error") and "not there" not in s["error"]]
    for entry in suites:
        if entry.get("error"):
            print(f"{entry['suite']}: {entry['error']}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
