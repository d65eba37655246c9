"""Notebook automation (``runtimed.run_notebook`` and its parts), checked against papermill itself.

papermill is a test dependency: on the same inputs, the injected cell, the notebook-level and
per-cell ``metadata.papermill`` keys and the error cells must be the ones papermill writes.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import time
from pathlib import Path
from typing import Any

import fsspec
import nbformat
import papermill
import pytest
from conftest import BENCH_NOTEBOOKS, make_notebook, write
from papermill.translators import PythonTranslator

import runtimed
from runtimed.automation.parameters import (
    INJECTED_TAG,
    ParameterError,
    codify,
    collect_parameters,
    inject_parameters,
    inspect_parameters,
    parameterize_path,
    parse_grid,
    resolve_type,
)
from runtimed.automation.run import RunResult
from runtimed.errors import ExitCode

pytestmark = pytest.mark.timeout(180)

ERROR_TAG = "papermill-error-cell-tag"


# -- helpers ----------------------------------------------------------------------------------------


def run_papermill(input_path: Path, output_path: Path, **kwargs: Any) -> tuple[nbformat.NotebookNode, Exception | None]:
    try:
        papermill.execute_notebook(str(input_path), str(output_path), progress_bar=False, **kwargs)
        error = None
    except papermill.PapermillExecutionError as exc:
        error = exc
    return nbformat.read(str(output_path), as_version=4), error


def assert_papermill_compatible(ours: nbformat.NotebookNode, theirs: nbformat.NotebookNode) -> None:
    """Same cells (type, tags, source), same papermill metadata keys and statuses, same kinds of output."""
    assert set(ours.metadata.papermill) == set(theirs.metadata.papermill)
    for key in ("parameters", "default_parameters", "environment_variables", "input_path", "exception"):
        assert ours.metadata.papermill[key] == theirs.metadata.papermill[key], key
    assert len(ours.cells) == len(theirs.cells), ([c.source[:30] for c in ours.cells],
                                                   [c.source[:30] for c in theirs.cells])
    for index, (a, b) in enumerate(zip(ours.cells, theirs.cells, strict=True)):
        where = f"cell {index} ({b.source[:40]!r})"
        assert a.cell_type == b.cell_type, where
        assert a.source == b.source, where
        assert a.metadata.get("tags", []) == b.metadata.get("tags", []), where
        assert set(a.metadata.get("papermill", {})) == set(b.metadata.get("papermill", {})), where
        if "papermill" not in b.metadata:  # papermill's error cells carry only their tag
            assert a.metadata == b.metadata, where
            continue
        for key in ("status", "exception"):
            assert a.metadata.papermill[key] == b.metadata.papermill[key], f"{where}: {key}"
        for key in ("start_time", "end_time", "duration"):
            assert (a.metadata.papermill[key] is None) == (b.metadata.papermill[key] is None), f"{where}: {key}"
        if b.metadata.get("jupyter"):
            assert a.metadata.get("jupyter") == b.metadata.jupyter, where
        if ERROR_TAG not in b.metadata.get("tags", []) and INJECTED_TAG not in b.metadata.get("tags", []):
            assert a.get("id") == b.get("id"), where
        if b.cell_type == "code":
            assert a.execution_count == b.execution_count, where
            assert [o.output_type for o in a.outputs] == [o.output_type for o in b.outputs], where
            for oa, ob in zip(a.outputs, b.outputs, strict=True):
                if ob.output_type == "stream":
                    assert (oa.name, oa.text) == (ob.name, ob.text), where
                elif ob.output_type == "error":
                    assert (oa.ename, oa.evalue) == (ob.ename, ob.evalue), where
                else:
                    assert set(oa.data) == set(ob.data), where


def error_cells(nb: nbformat.NotebookNode) -> list[tuple[int, str, list[str]]]:
    return [(i, c.source, c.metadata.tags) for i, c in enumerate(nb.cells) if ERROR_TAG in c.metadata.get("tags", [])]


# -- parameters: papermill's parsing, translation, injection and inspection ---------------------------


@pytest.mark.parametrize("text", ["True", "False", "None", "1", "-7", "1.5", "1e3", "nan", "inf", "0x10", "abc",
                                  "1_000", " 2 ", "", "[1, 2]"])
def test_resolve_type_matches_papermill(text: str) -> None:
    from papermill.cli import _resolve_type

    ours, theirs = resolve_type(text), _resolve_type(text)
    assert type(ours) is type(theirs)
    assert ours == theirs or (isinstance(ours, float) and math.isnan(ours) and math.isnan(theirs))


VALUES = {
    "s": 'a "quoted"\nline \u00e9 \\ back',
    "i": 3, "f": 1.25, "neg": -2, "big": 10**20, "t": True, "n": None,
    "nan": float("nan"), "inf": float("inf"), "minf": float("-inf"),
    "l": [1, "two", [3.0, None], {"k": False}],
    "d": {"a": 1, 2: "int key", "nested": {"x": [1]}},
    "empty": "", "date_like": "2024-01-02",
}


def test_codify_is_byte_identical_to_papermill() -> None:
    assert codify(VALUES) == PythonTranslator.codify(VALUES)
    assert codify({}) == PythonTranslator.codify({})


def test_parameter_precedence_b_f_y_p_r(tmp_path: Path) -> None:
    """-b < -f < -y < -p < -r, each later source overriding the earlier ones."""
    keys = ["b", "f", "y", "p", "r"]
    b64 = base64.b64encode(json.dumps({k: "b" for k in keys}).encode()).decode()
    params_file = tmp_path / "params.yaml"
    params_file.write_text("\n".join(f"{k}: f" for k in keys[1:]) + "\n")
    merged = collect_parameters(
        base64_yaml=[b64], files=[str(params_file)], yaml_strings=["{y: y, p: y, r: y}"],
        params=[("p", "p"), ("r", "p")], raw=[("r", "r")],
    )
    assert merged == {k: k for k in keys}
    # -p is typed like papermill, -r stays a string; YAML keeps dates as strings (papermill's loader)
    typed = collect_parameters(params=[("n", "3"), ("x", "0.5"), ("t", "True")], raw=[("raw", "3")],
                               yaml_strings=["when: 2024-01-02"])
    assert typed == {"n": 3, "x": 0.5, "t": True, "raw": "3", "when": "2024-01-02"}


@pytest.mark.parametrize("bad", [dict(base64_yaml=["%%%"]), dict(yaml_strings=["[1, 2]"]),
                                 dict(yaml_strings=["a: [1"]), dict(files=["/nonexistent/params.yaml"])])
def test_bad_parameters_are_parameter_errors(bad: dict[str, Any]) -> None:
    with pytest.raises(ParameterError):
        collect_parameters(**bad)


def test_injection_matches_papermill_after_parameters_cell() -> None:
    from papermill.parameterize import parameterize_notebook

    nb = make_notebook(("markdown", "# T"), ("code", "a = 1\nb = 'x'", ["parameters"]), ("code", "print(a)"))
    nb.metadata.papermill = {"default_parameters": {}, "parameters": {}, "environment_variables": {},
                             "version": "x"}
    params = {"a": 2, "b": "y", "extra": [1, {"k": None}]}
    ours = inject_parameters(nb, params)
    copy = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in copy.cells:  # as papermill's loader leaves them
        cell.metadata.setdefault("tags", [])
    theirs = parameterize_notebook(copy, params)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert [c.metadata.get("tags") for c in ours.cells] == [c.metadata.get("tags") for c in theirs.cells]
    assert ours.cells[2].metadata.tags == [INJECTED_TAG]
    assert ours.metadata.papermill["parameters"] == theirs.metadata.papermill["parameters"] == params


def test_injection_replaces_an_earlier_injected_cell() -> None:
    nb = make_notebook(("code", "a = 1", ["parameters"]), ("code", "# Parameters\na = 5\n", [INJECTED_TAG]),
                       ("code", "print(a)"))
    once = inject_parameters(nb, {"a": 2})
    twice = inject_parameters(once, {"a": 3})
    assert [c.source for c in twice.cells] == ["a = 1", "# Parameters\na = 3\n", "print(a)"]
    assert sum(INJECTED_TAG in c.metadata.tags for c in twice.cells) == 1


def test_injection_at_the_top_warns_without_a_parameters_cell(caplog: pytest.LogCaptureFixture) -> None:
    nb = make_notebook(("code", "print(1)"))
    with caplog.at_level(logging.WARNING):
        out = inject_parameters(nb, {"a": 1})
    assert out.cells[0].metadata.tags == [INJECTED_TAG]
    assert out.cells[0].source == "# Parameters\na = 1\n"
    assert "does not contain a cell with tag 'parameters'" in caplog.text


def test_unknown_parameter_warns_and_magics_do_not_break_inspection(caplog: pytest.LogCaptureFixture) -> None:
    nb = make_notebook(("code", "%matplotlib inline\nx = 1  # the x", ["parameters"]))
    with caplog.at_level(logging.WARNING):
        inject_parameters(nb, {"x": 2, "y": 3})
    assert "Passed unknown parameter: y" in caplog.text
    assert "Passed unknown parameter: x" not in caplog.text
    assert [p.name for p in inspect_parameters(nb)] == ["x"]


def test_injection_refuses_non_python_kernels() -> None:
    nb = make_notebook(("code", "x <- 1", ["parameters"]))
    nb.metadata.kernelspec = {"name": "ir", "language": "R", "display_name": "R"}
    with pytest.raises(ParameterError, match="Python"):
        inject_parameters(nb, {"x": 2})


def test_inspect_names_defaults_and_help_match_papermill(tmp_path: Path) -> None:
    source = ('# the parameters\nalpha: float = 0.5  # learning rate\nname = "world"  # who to greet\n'
              "count = 3\nflag = True  # type: bool a flag\nitems = [1, 2]\nnothing = None\n")
    path = write(make_notebook(("code", source, ["parameters"]), ("code", "print(name)")), tmp_path / "p.ipynb")
    ours = {p.name: p for p in inspect_parameters(nbformat.read(str(path), 4))}
    theirs = papermill.inspect_notebook(str(path))
    assert list(ours) == list(theirs)
    for name, p in theirs.items():
        assert ours[name].default == p["default"], name
        assert ours[name].help == p["help"], name
    # types: papermill's annotation/type comment, and otherwise inferred from the literal
    assert {n: p.inferred_type_name for n, p in ours.items()} == {
        "alpha": "float", "name": "str", "count": "int", "flag": "bool", "items": "list", "nothing": "NoneType"}


def test_parameterize_path_and_grid() -> None:
    assert parameterize_path("out_{a}_{b}.ipynb", {"a": 1, "b": "x"}) == "out_1_x.ipynb"
    assert parameterize_path("-", {}) == "-"
    assert parameterize_path(None, {}) is None
    run_uuid = parameterize_path("out_{pm[run_uuid]}.ipynb", {})
    assert run_uuid.startswith("out_") and len(run_uuid) == len("out_.ipynb") + 36
    with pytest.raises(ParameterError, match="missing"):
        parameterize_path("out_{missing}.ipynb", {"a": 1})
    assert parse_grid(["a=1,2", "b=x,True"]) == [{"a": 1, "b": "x"}, {"a": 1, "b": True},
                                                 {"a": 2, "b": "x"}, {"a": 2, "b": True}]
    with pytest.raises(ParameterError):
        parse_grid(["nonsense"])


def test_prepare_only_matches_papermill(tmp_path: Path) -> None:
    """No daemon needed: the prepared notebook is papermill's, with the output written as-is."""
    nb = make_notebook(("code", "a = 1", ["parameters"]), ("code", "print(a)"))
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", name="stdout", text="old\n")]
    src = write(nb, tmp_path / "in.ipynb")
    result = runtimed.run_notebook(str(src), str(tmp_path / "ours.ipynb"), {"a": 2}, prepare_only=True,
                                   report_mode=True)
    assert result.status == "prepared" and result.exit_code == ExitCode.OK
    theirs = papermill.execute_notebook(str(src), str(tmp_path / "theirs.ipynb"), {"a": 2}, prepare_only=True,
                                        report_mode=True)
    ours = nbformat.read(str(tmp_path / "ours.ipynb"), 4)
    assert [c.source for c in ours.cells] == [c.source for c in theirs.cells]
    assert [c.metadata for c in ours.cells[1:]] == [c.metadata for c in theirs.cells[1:]]
    assert ours.cells[2].outputs == theirs.cells[2].outputs  # prepare-only keeps outputs, like papermill
    assert set(ours.metadata.papermill) == set(theirs.metadata.papermill)


# -- runs on a daemon (Python API) -------------------------------------------------------------------


def test_seven_with_parameters_matches_papermill(daemon: Any, tmp_path: Path) -> None:
    src = BENCH_NOTEBOOKS / "seven.ipynb"
    result = runtimed.run_notebook(str(src), str(tmp_path / "ours.ipynb"), {"data_size": 1000})
    assert isinstance(result, RunResult)
    assert result.status == "success" and result.exit_code == ExitCode.OK, result.message
    assert result.url and result.url.startswith(daemon.url) and result.notebook_id in result.url
    ours = nbformat.read(str(tmp_path / "ours.ipynb"), 4)
    assert ours == result.notebook
    theirs, error = run_papermill(src, tmp_path / "theirs.ipynb", parameters={"data_size": 1000})
    assert error is None
    assert_papermill_compatible(ours, theirs)
    injected = [c for c in ours.cells if INJECTED_TAG in c.metadata.tags]
    assert len(injected) == 1 and injected[0].source == "# Parameters\ndata_size = 1000\n"
    assert ours.cells.index(injected[0]) == 1  # right after the parameters cell
    assert ours.metadata.papermill["parameters"] == {"data_size": 1000}
    for key in ("start_time", "end_time", "duration"):
        assert ours.metadata.papermill[key]
    assert ours.metadata.papermill["exception"] is None


def test_markdown_skip_and_empty_cells_match_papermill(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("markdown", "# Title"), ("code", "x = 1", ["parameters"]), ("code", ""),
                       ("code", "print('skipped')", ["skip-execution"]), ("markdown", "between"),
                       ("code", "print(x)\nx"), ("markdown", "end"))
    nb.cells[3].outputs = [nbformat.v4.new_output("stream", name="stdout", text="stale\n")]
    src = write(nb, tmp_path / "in.ipynb")
    result = runtimed.run_notebook(str(src), str(tmp_path / "ours.ipynb"), {"x": 5})
    assert result.status == "success", result.message
    theirs, error = run_papermill(src, tmp_path / "theirs.ipynb", parameters={"x": 5})
    assert error is None
    assert_papermill_compatible(result.notebook, theirs)
    assert result.notebook.cells[4].outputs == []  # the skipped cell: not run, old outputs cleared


def test_failing_notebook_error_cells_match_papermill(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("markdown", "# T"), ("code", "a = 1", ["parameters"]), ("code", "print(a)"),
                       ("code", "raise ValueError('boom')"), ("markdown", "after"), ("code", "print('never')"))
    src = write(nb, tmp_path / "fail.ipynb")
    result = runtimed.run_notebook(str(src), str(tmp_path / "ours.ipynb"), {"a": 2})
    assert result.status == "error" and result.exit_code == ExitCode.FAILURE
    failed_id = nb.cells[3].id
    assert result.failed_cell["index"] == 4 and result.failed_cell["id"] == failed_id
    assert result.failed_cell["ename"] == "ValueError" and result.failed_cell["evalue"] == "boom"
    assert "cell 4" in result.message and failed_id in result.message and "ValueError: boom" in result.message
    theirs, error = run_papermill(src, tmp_path / "theirs.ipynb", parameters={"a": 2})
    assert isinstance(error, papermill.PapermillExecutionError)
    ours = nbformat.read(str(tmp_path / "ours.ipynb"), 4)
    assert error_cells(ours) == error_cells(theirs)
    assert [i for i, _s, _t in error_cells(ours)] == [0, 5]  # banner at the top, anchor before the failure
    assert_papermill_compatible(ours, theirs)
    assert ours.metadata.papermill["exception"] is True
    assert ours.cells[-1].metadata.papermill["status"] == "pending"


def test_error_markers_of_an_earlier_run_are_removed(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("code", "flag = False", ["parameters"]), ("code", "assert flag, 'flag is off'"))
    src = write(nb, tmp_path / "in.ipynb")
    first = runtimed.run_notebook(str(src), str(tmp_path / "first.ipynb"))
    assert first.status == "error" and len(error_cells(first.notebook)) == 2
    second = runtimed.run_notebook(str(tmp_path / "first.ipynb"), str(tmp_path / "second.ipynb"), {"flag": True})
    assert second.status == "success", second.message
    assert error_cells(second.notebook) == []
    assert [INJECTED_TAG in c.metadata.tags for c in second.notebook.cells] == [False, True, False]


def test_raises_exception_tag_and_allow_errors(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("code", "1/0", ["raises-exception"]), ("code", "print('went on')"))
    result = runtimed.run_notebook(nb)
    assert result.status == "success", result.message
    assert result.notebook.cells[0].outputs[0].ename == "ZeroDivisionError"
    assert result.notebook.cells[0].metadata.papermill["status"] == "completed"
    assert result.notebook.cells[1].outputs[0].text == "went on\n"

    nb = make_notebook(("code", "1/0"), ("code", "print('went on')"))
    stopped = runtimed.run_notebook(nb)
    assert stopped.status == "error" and stopped.notebook.cells[-1].get("outputs") == []
    allowed = runtimed.run_notebook(nb, allow_errors=True)
    assert allowed.status == "success" and allowed.exit_code == ExitCode.OK
    assert allowed.notebook.cells[1].outputs[0].text == "went on\n"
    assert error_cells(allowed.notebook) == []


def test_sys_exit_zero_stops_without_failing(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("code", "import sys\nsys.exit(0)"), ("code", "print('never')"))
    result = runtimed.run_notebook(nb)
    assert result.status == "success" and error_cells(result.notebook) == []


def test_kernel_death_exit_code(daemon: Any) -> None:
    nb = make_notebook(("code", "print('before')"), ("code", "import os\nos._exit(1)"), ("code", "print('never')"))
    result = runtimed.run_notebook(nb)
    assert result.status == "kernel_died" and result.exit_code == ExitCode.KERNEL_DIED == 6
    assert result.failed_cell["index"] == 1 and result.failed_cell["ename"] == "KernelDied"
    cells = result.notebook.cells  # banner, cell 0, anchor, the cell that died, the one never run
    assert [i for i, _s, _t in error_cells(result.notebook)] == [0, 2]
    assert cells[3].metadata.papermill["status"] == "failed"
    assert cells[4].metadata.papermill["status"] == "pending"


def test_execution_timeout_is_per_cell(daemon: Any) -> None:
    nb = make_notebook(("code", "import time\ntime.sleep(0.5)\nprint('short')"), ("code", "time.sleep(60)"),
                       ("code", "print('never')"))
    result = runtimed.run_notebook(nb, execution_timeout=2)
    assert result.status == "timeout" and result.exit_code == ExitCode.TIMEOUT == 7
    assert result.failed_cell["index"] == 1 and result.failed_cell["ename"] == "ExecutionTimeout"
    assert result.notebook.cells[1].outputs[0].text == "short\n"
    assert result.duration_s < 30


def test_cwd_stdout_stderr_files_and_inject_paths(daemon: Any, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    workdir.mkdir()
    nb = make_notebook(("code", "x = 0", ["parameters"]),
                       ("code", "import os, sys\nprint(os.getcwd())\nprint('to stderr', file=sys.stderr)\n"
                                "print(PAPERMILL_INPUT_PATH, PAPERMILL_OUTPUT_PATH)"))
    src = write(nb, tmp_path / "in.ipynb")
    out = tmp_path / "out_{x}.ipynb"
    result = runtimed.run_notebook(str(src), str(out), {"x": 7}, cwd=str(workdir), inject_paths=True,
                                   stdout_file=str(tmp_path / "stdout.txt"), stderr_file=str(tmp_path / "err.txt"))
    assert result.status == "success", result.message
    assert result.output_path == str(tmp_path / "out_7.ipynb") and (tmp_path / "out_7.ipynb").exists()
    stdout = (tmp_path / "stdout.txt").read_text()
    assert stdout.splitlines() == [str(workdir), f"{src} {tmp_path / 'out_7.ipynb'}"]
    assert (tmp_path / "err.txt").read_text() == "to stderr\n"
    injected = result.notebook.cells[1]
    assert injected.source.startswith("# Parameters\nPAPERMILL_INPUT_PATH = ")
    assert list(result.notebook.metadata.papermill["parameters"]) == ["PAPERMILL_INPUT_PATH",
                                                                      "PAPERMILL_OUTPUT_PATH", "x"]


def test_report_mode_hides_inputs_like_papermill(daemon: Any, tmp_path: Path) -> None:
    nb = make_notebook(("markdown", "# T"), ("code", "a = 1", ["parameters"]), ("code", "print(a)"))
    src = write(nb, tmp_path / "in.ipynb")
    result = runtimed.run_notebook(str(src), str(tmp_path / "ours.ipynb"), {"a": 3}, report_mode=True)
    assert result.status == "success"
    theirs, _ = run_papermill(src, tmp_path / "theirs.ipynb", parameters={"a": 3}, report_mode=True)
    assert_papermill_compatible(result.notebook, theirs)
    assert [c.metadata.get("jupyter") for c in result.notebook.cells] == [c.metadata.get("jupyter")
                                                                          for c in theirs.cells]


def test_memory_urls_and_notebook_node_input(daemon: Any) -> None:
    nb = make_notebook(("code", "n = 1", ["parameters"]), ("code", "print(n * 2)"))
    with fsspec.open("memory://automation/in.ipynb", "w") as f:
        f.write(nbformat.writes(nb))
    result = runtimed.run_notebook("memory://automation/in.ipynb", "memory://automation/out_{n}.ipynb", {"n": 21})
    assert result.status == "success", result.message
    with fsspec.open("memory://automation/out_21.ipynb", "r") as f:
        written = nbformat.reads(f.read(), 4)
    assert written.cells[2].outputs[0].text == "42\n"
    assert written.metadata.papermill["input_path"] == "memory://automation/in.ipynb"
    assert written.metadata.papermill["output_path"] == "memory://automation/out_21.ipynb"
    direct = runtimed.run_notebook(nb, parameters={"n": 5})  # a NotebookNode in, no output file
    assert direct.status == "success" and direct.notebook.cells[2].outputs[0].text == "10\n"
    assert direct.output_path is None


def test_yaml_notebook_runs_the_same_way(daemon: Any, tmp_path: Path) -> None:
    src = tmp_path / "greet.yaml"
    src.write_text("metadata: {title: Greeting, kernel: python3}\nparameters: {name: world, count: 2}\n"
                   "cells:\n  - id: greet\n    source: print(f'hello {name}' * count)\n")
    result = runtimed.run_notebook(str(src), str(tmp_path / "out.ipynb"), {"name": "yaml"})
    assert result.status == "success", result.message
    tags = [c.metadata.get("tags", []) for c in result.notebook.cells]
    assert tags[0] == ["parameters"] and tags[1] == [INJECTED_TAG]
    assert result.notebook.cells[-1].outputs[0].text == "hello yamlhello yaml\n"
    yaml_out = runtimed.run_notebook(str(src), str(tmp_path / "out.yaml"), {"count": 1})
    assert yaml_out.status == "success" and (tmp_path / "out.yaml").read_text().startswith(("metadata", "cells"))


def test_runtime_is_stopped_after_the_run_unless_kept(daemon: Any) -> None:
    from runtimed.client.http import DaemonHTTP

    http = DaemonHTTP(daemon.endpoint)
    try:
        result = runtimed.run_notebook(make_notebook(("code", "1")))
        assert result.status == "success"
        deadline = time.monotonic() + 15  # the daemon finishes the shutdown after the run hangs up
        while [r for r in http.get("/api/runtimes") if result.notebook_id in json.dumps(r)]:
            assert time.monotonic() < deadline, "the run's runtime is still running"
            time.sleep(0.1)
        kept = runtimed.run_notebook(make_notebook(("code", "1")), keep_runtime=True)
        assert [r for r in http.get("/api/runtimes") if kept.notebook_id in json.dumps(r)]
        # the run's notebook stays in the daemon, outputs and all
        assert http.get(f"/api/notebooks/{result.notebook_id}")
    finally:
        http.close()


def test_start_timeout(slow_kernelspec: str, daemon: Any) -> None:
    nb = make_notebook(("code", "1"))
    result = runtimed.run_notebook(nb, kernel_name=slow_kernelspec, start_timeout=2)
    assert result.status == "start_failed" and result.exit_code == 8
    assert "start-timeout" in result.message

