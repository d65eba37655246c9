"""`runt notebooks rm` and `runt gc`, run as subprocesses against a real daemon."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon, write
from test_cli import clean_env, runt

from runtimed.cli import errors as exit_codes
from runtimed.cli.common import duration
from runtimed.durations import parse_duration
from runtimed.errors import RuntimedError

pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[DaemonProcess, dict[str, str], Path]]:
    base = tmp_path_factory.mktemp("housekeeping")
    home, runtime_dir = base / "home", base / "jrt"
    home.mkdir()
    runtime_dir.mkdir()
    source = write(make_notebook(("code", "x = 1 + 1"), ("code", "print(x)")), base / "input.ipynb")
    with running_daemon(home, env={"JUPYTER_RUNTIME_DIR": str(runtime_dir)}) as proc:
        yield proc, clean_env(home, runtime_dir), source


@pytest.fixture
def env(shared: tuple[DaemonProcess, dict[str, str], Path]) -> dict[str, str]:
    return shared[1]


def listed(env: dict[str, str]) -> dict[str, dict]:
    result = runt("notebooks", "--json", env=env)
    assert result.returncode == 0, result.stderr
    return {nb["id"]: nb for nb in json.loads(result.stdout)}


def import_notebook(env: dict[str, str], source: Path, notebook_id: str) -> None:
    result = runt("import", str(source), "--id", notebook_id, env=env)
    assert result.returncode == 0, result.stderr


def run_notebook(env: dict[str, str], source: Path, tmp_path: Path, notebook_id: str, *extra: str) -> None:
    out = tmp_path / f"{notebook_id}.ipynb"
    result = runt("run", str(source), str(out), "--id", notebook_id, "--no-progress-bar", *extra, env=env, timeout=150)
    assert result.returncode == 0, result.stderr


def age(home: Path, notebook_id: str, days: int) -> None:
    """Make a notebook look last updated ``days`` ago: its projection's ``updated_at``, the time gc reads.

    (No test can wait a week; the daemon reads this column on every listing.)"""
    then = (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    conn = sqlite3.connect(home / "notebooks" / f"{notebook_id}.db", timeout=30)
    try:
        with conn:
            conn.execute("UPDATE notebooks SET updated_at = ?", (then,))
    finally:
        conn.close()


# -- runt notebooks rm --------------------------------------------------------------------------------


def test_rm_removes_every_id_and_prints_each(env: dict[str, str], shared: tuple, tmp_path: Path) -> None:
    proc, _, source = shared
    for notebook_id in ("rm-a", "rm-b"):
        import_notebook(env, source, notebook_id)
    assert {"rm-a", "rm-b"} <= listed(env).keys()

    result = runt("notebooks", "rm", "rm-a", "rm-b", "rm-a", env=env)

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["removed rm-a", "removed rm-b"]
    assert not {"rm-a", "rm-b"} & listed(env).keys()
    assert not list((proc.home.path / "notebooks").glob("rm-[ab].db*"))


def test_rm_of_an_unknown_id_fails_with_4_and_still_removes_the_others(env: dict[str, str], shared: tuple) -> None:
    _, _, source = shared
    for notebook_id in ("rm-c", "rm-d"):
        import_notebook(env, source, notebook_id)

    result = runt("notebooks", "rm", "rm-c", "no-such-notebook", "rm-d", env=env)

    assert result.returncode == exit_codes.NOT_FOUND, (result.stdout, result.stderr)
    assert result.stdout.splitlines() == ["removed rm-c", "removed rm-d"]
    assert "no notebook with id 'no-such-notebook'" in result.stderr
    assert not {"rm-c", "rm-d"} & listed(env).keys()


def test_rm_needs_an_id_and_plain_notebooks_still_lists(env: dict[str, str]) -> None:
    result = runt("notebooks", "rm", env=env)
    assert result.returncode == exit_codes.USAGE
    assert "Missing argument" in result.stderr
    table = runt("notebooks", env=env)
    assert table.returncode == 0 and "removed" not in table.stdout


# -- runt gc ------------------------------------------------------------------------------------------


def test_gc_removes_only_old_run_notebooks_without_a_runtime(env: dict[str, str], shared: tuple,
                                                              tmp_path: Path) -> None:
    proc, _, source = shared
    run_notebook(env, source, tmp_path, "gc-old-run")
    run_notebook(env, source, tmp_path, "gc-fresh-run")
    run_notebook(env, source, tmp_path, "gc-live-run", "--keep-runtime")
    import_notebook(env, source, "gc-old-import")
    for notebook_id in ("gc-old-run", "gc-live-run", "gc-old-import"):
        age(proc.home.path, notebook_id, days=10)
    before = listed(env)
    assert before["gc-live-run"]["runtime"] and not before["gc-old-run"]["runtime"]

    dry = runt("gc", "--older-than", "7d", "--dry-run", "--json", env=env)
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout) == {"would_remove": ["gc-old-run"], "kept_active": ["gc-live-run"]}
    dry_text = runt("gc", "--older-than", "7d", "--dry-run", env=env)
    assert dry_text.returncode == 0, dry_text.stderr
    assert "gc-old-run" in dry_text.stdout and "gc-fresh-run" not in dry_text.stdout
    assert "would remove 1 run notebook" in dry_text.stderr and "gc-live-run" in dry_text.stderr
    assert listed(env).keys() == before.keys()  # a dry run removes nothing

    # a longer horizon than their age keeps them all
    kept = runt("gc", "--older-than", "2w", "--json", env=env)
    assert json.loads(kept.stdout) == {"removed": [], "kept_active": []}

    result = runt("gc", "--older-than", "7d", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["removed gc-old-run"]
    after = listed(env)
    assert "gc-old-run" not in after
    assert {"gc-fresh-run", "gc-live-run", "gc-old-import"} <= after.keys()
    assert not list((proc.home.path / "notebooks").glob("gc-old-run.db*"))

    again = runt("gc", "--older-than", "7d", "--json", env=env)
    assert json.loads(again.stdout) == {"removed": [], "kept_active": ["gc-live-run"]}


@pytest.mark.parametrize("bad", ["7", "7x", "d", "-1d", "1.5h", "", "99999999w"])
def test_gc_rejects_a_bad_duration_with_an_example(env: dict[str, str], bad: str) -> None:
    result = runt("gc", "--older-than", bad, env=env)
    assert result.returncode == exit_codes.USAGE, result.stderr
    assert "--older-than" in result.stderr
    assert "7d" in result.stderr or "100 years" in result.stderr


def test_gc_needs_older_than(env: dict[str, str]) -> None:
    result = runt("gc", "--dry-run", env=env)
    assert result.returncode == exit_codes.USAGE
    assert "--older-than" in result.stderr



@pytest.mark.parametrize(("seconds", "shown"), [(0.0, "0.0s"), (0.54, "0.5s"), (9.94, "9.9s"), (9.96, "10s"),
                                               (59.4, "59s"), (59.6, "1m00s"), (61, "1m01s"), (7322, "2h02m")])
def test_durations_are_shown_in_tenths_under_ten_seconds(seconds: float, shown: str) -> None:
    assert duration(seconds) == shown


@pytest.mark.parametrize(("text", "seconds"), [("30m", 1800), ("12h", 43200), ("7d", 604800), ("2w", 1209600),
                                               ("1d12h", 129600), ("45s", 45), (" 7D ", 604800)])
def test_parse_duration(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


def test_parse_duration_says_what_a_duration_looks_like() -> None:
    with pytest.raises(RuntimedError, match="e.g. 7d, 12h, 30m"):
        parse_duration("a week")


def test_the_daemon_collects_old_run_notebooks_by_itself(tmp_path: Path) -> None:
    """RUNTIMED_RUN_RETENTION: run notebooks older than it go on the daemon's own schedule; others stay."""
    (tmp_path / "home").mkdir()
    with running_daemon(tmp_path / "home", "--no-runtimes", env={"RUNTIMED_RUN_RETENTION": "2s"}) as daemon:
        headers = {"Authorization": f"Bearer {daemon.token}"}
        body = nbformat.writes(nbformat.v4.new_notebook()).encode()
        with httpx.Client(base_url=daemon.url, headers=headers, timeout=30) as api:
            run = api.post("/api/notebooks/import", params={"id": "a-run"}, content=body,
                           headers={"x-runtimed-actor": "runt-run"})
            other = api.post("/api/notebooks/import", params={"id": "not-a-run"}, content=body)
            assert run.status_code == other.status_code == 201
            deadline = time.monotonic() + 60
            while "a-run" in {nb["id"] for nb in api.get("/api/notebooks").json()}:
                assert time.monotonic() < deadline, "the run notebook was not collected"
                time.sleep(0.2)
            assert {nb["id"] for nb in api.get("/api/notebooks").json()} == {"not-a-run"}
        assert "run retention (0:00:02): removed 1 run notebook(s)" in (daemon.home.path / "daemon.log").read_text()


# -- runt gc --artifacts --------------------------------------------------------------------------------


def test_gc_artifacts_removes_only_unreferenced_ones(env: dict[str, str], shared: tuple, tmp_path: Path) -> None:
    """An imported notebook's large output is an artifact; it stays while a notebook references it and
    goes with `runt gc --artifacts` once the notebook is removed (past the grace period)."""
    proc, _, _ = shared
    nb = make_notebook(("code", "show()"), ("code", "show()"))
    html = "<p>" + "big " * 50_000 + "</p>"
    nb.cells[0].outputs = [nbformat.v4.new_output("display_data", {"text/html": html})]
    nb.cells[1].outputs = [nbformat.v4.new_output("display_data", {"text/html": html + "<i>kept</i>"})]
    source = write(nb, tmp_path / "big.ipynb")
    import_notebook(env, source, "gc-artifacts-gone")
    kept_source = write(nbformat.v4.new_notebook(cells=[nb.cells[1]]), tmp_path / "kept.ipynb")
    import_notebook(env, kept_source, "gc-artifacts-kept")
    shas = [hashlib.sha256(h.encode()).hexdigest() for h in (html, html + "<i>kept</i>")]
    stored = [proc.home.path / "artifacts" / sha[:2] / sha for sha in shas]
    assert all(p.exists() for p in stored)
    assert runt("notebooks", "rm", "gc-artifacts-gone", env=env).returncode == 0

    fresh = runt("gc", "--artifacts", "--json", env=env)  # the default grace (1h) keeps what was just written
    assert fresh.returncode == 0, fresh.stderr
    assert json.loads(fresh.stdout)["artifacts"]["removed"] == 0 and stored[0].exists()

    dry = runt("gc", "--artifacts", "--grace", "0s", "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert "would remove 1 artifact;" in dry.stderr and stored[0].exists()

    result = runt("gc", "--artifacts", "--grace", "0s", env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("removed 1 artifact (195.3 KiB)"), result.stdout
    assert not stored[0].exists() and stored[1].exists()


def test_gc_grace_needs_artifacts(env: dict[str, str]) -> None:
    result = runt("gc", "--grace", "0s", env=env)
    assert result.returncode == exit_codes.USAGE
    assert "--artifacts" in result.stderr
