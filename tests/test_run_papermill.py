"""``runt run`` as a drop-in for papermill, tried as a new user would: each papermill flag and behaviour
side by side with the real papermill (installed as a test dependency), on the same notebooks."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import write
from test_run_cli import runt, text

pytestmark = pytest.mark.timeout(300)

PAPERMILL = [sys.executable, "-m", "papermill"]
BANNER = re.compile(r"^(Executing notebook with kernel: .*|(Executing|Ending) Cell \d+-+)$")


def papermill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*PAPERMILL, *args], capture_output=True, cwd=cwd, timeout=240)


def _notebook(kernelspec: dict[str, str], *sources: str, params: str = "x = 1") -> nbformat.NotebookNode:
    nb = nbformat.v4.new_notebook()
    nb.metadata.kernelspec = kernelspec
    nb.metadata.language_info = {"name": "python", "version": "2.7.0"}  # stale: the kernel's replaces it
    cell = nbformat.v4.new_code_cell(params)
    cell.metadata.tags = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# Title"), cell, *map(nbformat.v4.new_code_cell, sources)]
    return nb


FANCY = {"name": "python3", "display_name": "My Fancy Python", "language": "python"}


@pytest.fixture
def fancy_nb(tmp_path: Path) -> Path:
    return write(_notebook(FANCY, "print('out', x)", "import sys; print('err', file=sys.stderr); 6 * 7"),
                 tmp_path / "fancy.ipynb")


def test_papermills_remaining_flags_are_accepted(daemon: Any, fancy_nb: Path, tmp_path: Path) -> None:
    flags = ["-p", "x", "3", "--engine", "nbclient", "-l", "python", "--log-level", "WARNING",
             "--autosave-cell-every", "5", "--no-request-save-on-cell-execute", "--prepare-execute"]
    theirs = papermill(str(fancy_nb), str(tmp_path / "pm.ipynb"), *flags)
    assert theirs.returncode == 0, theirs.stderr.decode()
    ours = runt("run", str(fancy_nb), str(tmp_path / "ours.ipynb"), *flags, env=daemon.env())
    assert ours.returncode == 0, text(ours)
    for nb in (tmp_path / "pm.ipynb", tmp_path / "ours.ipynb"):
        assert "".join(o.get("text", "") for o in nbformat.read(str(nb), 4).cells[3].outputs) == "out 3\n"
    # --log-level WARNING hides runt run's INFO lines, as papermill's
    assert "Input Notebook" not in theirs.stderr.decode()
    bad = runt("run", str(fancy_nb), str(tmp_path / "x.ipynb"), "--engine", "dask", env=daemon.env())
    assert bad.returncode == 2 and "--engine dask" in text(bad)
    bad = runt("run", str(fancy_nb), str(tmp_path / "x.ipynb"), "-l", "R", "-p", "x", "1", env=daemon.env())
    assert bad.returncode == 2 and "Python notebooks only" in text(bad)


def test_warnings_about_parameters_reach_the_user_like_papermills(daemon: Any, fancy_nb: Path, tmp_path: Path) -> None:
    """The run is a daemon job, but its warnings (an unknown parameter, no parameters cell) are printed by
    `runt run` as papermill prints them, and --log-level ERROR hides them as papermill's does."""
    warning = "Passed unknown parameter: typo"
    theirs = papermill(str(fancy_nb), str(tmp_path / "pm.ipynb"), "-p", "typo", "1")
    assert theirs.returncode == 0 and warning in theirs.stderr.decode()
    ours = runt("run", str(fancy_nb), str(tmp_path / "ours.ipynb"), "-p", "typo", "1", env=daemon.env())
    assert ours.returncode == 0 and ours.stderr.decode().count(warning) == 1, text(ours)
    quiet = runt("run", str(fancy_nb), str(tmp_path / "q.ipynb"), "-p", "typo", "1", "--log-level", "ERROR",
                 env=daemon.env())
    assert quiet.returncode == 0 and warning not in text(quiet)
    plain = nbformat.v4.new_notebook()
    plain.metadata.kernelspec = FANCY
    plain.cells = [nbformat.v4.new_code_cell("print(x)")]
    no_cell = runt("run", str(write(plain, tmp_path / "plain.ipynb")), str(tmp_path / "p.ipynb"), "-p", "x", "2",
                   env=daemon.env())
    assert no_cell.returncode == 0 and "does not contain a cell with tag 'parameters'" in no_cell.stderr.decode()


def test_version_like_papermills() -> None:
    pattern = re.compile(r"^\S+ from \S+ \(\d+\.\d+\.\d+\)$")
    assert pattern.match(papermill("--version").stdout.decode().strip())
    ours = runt("run", "--version")
    assert ours.returncode == 0 and pattern.match(ours.stdout.decode().strip().removeprefix("runtimed "))
    assert ours.stdout.decode().startswith("runtimed ")


def test_python_means_the_native_python3_kernel(daemon: Any, tmp_path: Path) -> None:
    nb = write(_notebook({"name": "python", "display_name": "Python", "language": "python"}, "print(x + 1)"),
               tmp_path / "py.ipynb")
    theirs = papermill(str(nb), str(tmp_path / "pm.ipynb"))
    assert theirs.returncode == 0, theirs.stderr.decode()
    ours = runt("run", str(nb), str(tmp_path / "ours.ipynb"), env=daemon.env())
    assert ours.returncode == 0, text(ours)
    assert nbformat.read(str(tmp_path / "ours.ipynb"), 4).cells[2].outputs[0]["text"] == "2\n"
    ours = runt("run", str(nb), str(tmp_path / "ours.ipynb"), "-k", "python", env=daemon.env())
    assert ours.returncode == 0, text(ours)


def test_log_output_on_stderr_with_papermills_banners(daemon: Any, fancy_nb: Path, tmp_path: Path) -> None:
    theirs = papermill(str(fancy_nb), str(tmp_path / "pm.ipynb"), "-p", "x", "3", "--log-output")
    ours = runt("run", str(fancy_nb), str(tmp_path / "ours.ipynb"), "-p", "x", "3", "--log-output",
                "--no-progress-bar", env=daemon.env())
    assert theirs.returncode == 0 and ours.returncode == 0, text(ours)
    assert ours.stdout == b"" and theirs.stdout == b""

    def banners(err: bytes) -> list[str]:
        return [line for line in err.decode().splitlines() if BANNER.match(line)]

    assert banners(ours.stderr) == banners(theirs.stderr)
    assert banners(ours.stderr)[0] == "Executing notebook with kernel: python3"
    assert len(banners(ours.stderr)) == 1 + 2 * 5  # markdown, parameters, injected, and two code cells
    err = text(ours)
    err = err[err.index("Executing Cell 4---"):]  # the paths printed before may contain "42" (pytest-442)
    assert err.index("Executing Cell 4---") < err.index("out 3") < err.index("Ending Cell 4---")
    assert err.index("Executing Cell 5---") < err.index("err\n") < err.index("42") < err.index("Ending Cell 5---")


def test_missing_kernel_still_writes_the_output_with_parameters(daemon: Any, tmp_path: Path) -> None:
    nb = write(_notebook({"name": "nosuchkernel", "display_name": "X", "language": "python"}, "print(x)"),
               tmp_path / "nokernel.ipynb")
    theirs = papermill(str(nb), str(tmp_path / "pm.ipynb"), "-p", "x", "5")
    assert theirs.returncode != 0 and "nosuchkernel" in theirs.stderr.decode()
    ours = runt("run", str(nb), str(tmp_path / "ours.ipynb"), "-p", "x", "5", env=daemon.env())
    assert ours.returncode == 8, text(ours)  # the kernel could not start (papermill: 1)

    def injected(path: Path) -> str:
        return next(c.source for c in nbformat.read(str(path), 4).cells
                    if "injected-parameters" in c.metadata.get("tags", []))

    assert injected(tmp_path / "ours.ipynb") == injected(tmp_path / "pm.ipynb") == "# Parameters\nx = 5\n"
    (tmp_path / "ours.ipynb").unlink()
    ours = runt("run", str(tmp_path / "pm.ipynb"), str(tmp_path / "ours.ipynb"), "-k", "nosuchkernel", "-p", "x", "6",
                env=daemon.env())
    assert ours.returncode == 4 and "no kernel named 'nosuchkernel'" in text(ours)
    assert injected(tmp_path / "ours.ipynb") == "# Parameters\nx = 6\n"


def test_language_info_from_the_kernel_and_display_name_kept(daemon: Any, fancy_nb: Path, tmp_path: Path) -> None:
    assert papermill(str(fancy_nb), str(tmp_path / "pm.ipynb")).returncode == 0
    ours = runt("run", str(fancy_nb), str(tmp_path / "ours.ipynb"), env=daemon.env())
    assert ours.returncode == 0, text(ours)
    pm, us = (nbformat.read(str(tmp_path / name), 4).metadata for name in ("pm.ipynb", "ours.ipynb"))
    assert us.language_info == pm.language_info and us.language_info["version"] != "2.7.0"
    assert us.kernelspec == pm.kernelspec == FANCY
    # the job asked its kernel over HTTP; the daemon's log has the runtime's start, not a line per request
    log_text = daemon.home.log_file.read_text()
    assert "started runtime" in log_text and "HTTP Request:" not in log_text


def test_missing_output_folder_is_an_error_like_papermills(daemon: Any, fancy_nb: Path, tmp_path: Path) -> None:
    target = str(tmp_path / "nope" / "out.ipynb")
    theirs = papermill(str(fancy_nb), target)
    assert theirs.returncode != 0
    message = f"output folder {tmp_path / 'nope'} doesn't exist."
    assert message in theirs.stderr.decode()
    ours = runt("run", str(fancy_nb), target, env=daemon.env())
    assert ours.returncode == 4 and message in text(ours), text(ours)
    assert "Live notebook" not in text(ours)  # refused before anything ran
    prepared = runt("run", str(fancy_nb), target, "--prepare-only")
    assert prepared.returncode == 4 and message in text(prepared)


def test_help_notebook_with_a_parameters_cell_that_is_not_python(tmp_path: Path) -> None:
    nb = write(_notebook(FANCY, "print(a)", params="a = 1  # the a\nb = [\nc: int = %magic\nd == e = 3"),
               tmp_path / "bad.ipynb")
    theirs = papermill("--help-notebook", str(nb))
    ours = runt("run", "--help-notebook", str(nb))
    assert theirs.returncode == ours.returncode == 0, text(ours)

    def listing(out: bytes) -> list[str]:
        lines = out.decode().splitlines()
        return [line.rstrip() for line in lines[lines.index(next(x for x in lines if "Parameters inferred" in x)):]]

    assert listing(ours.stdout) == listing(theirs.stdout)
    assert "  a: Unknown type (default 1)     the a" in listing(ours.stdout)
