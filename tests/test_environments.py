"""Notebook environments: declared dependencies, uv-built environments, trust, the pool, the CLI.

Real uv installs small real packages from the package registry into real environments under the
daemon's home; real daemons and kernels run the cells. The packages are ones the daemon's own
environment lacks (checked first), so an import can only succeed inside the notebook's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest
from conftest import DaemonProcess, make_notebook, running_daemon

from runtimed import AsyncSession
from runtimed.client.http import DaemonHTTP
from runtimed.errors import RuntimedError
from runtimed.schema import dependencies as deps

pytestmark = [pytest.mark.anyio, pytest.mark.timeout(600)]

ABSENT = ("tabulate", "toolz", "six")
"""Tiny pure-Python packages from the registry that the daemon's environment does not have."""
AGENT = {"id": "agent:helper", "kind": "agent", "name": "helper"}


def test_the_test_packages_are_absent_from_the_daemons_environment() -> None:
    assert [name for name in ABSENT if importlib.util.find_spec(name) is not None] == []


# --- declaring: sources, precedence, validation (no daemon) ------------------------------------------


def test_precedence_runtimed_then_runt_uv_then_pep723_then_pyproject(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "x"\ndependencies = ["toolz"]\n'
                                             'requires-python = ">=3.11"\n')
    block = '# /// script\n# dependencies = ["six>=1.10"]\n# ///\nimport six\n'
    nteract = {"runt": {"uv": {"dependencies": ["tabulate"], "requires-python": ">=3.10"}}}
    ours = {"runtimed": {"dependencies": ["Toolz == 1.0"], "index_url": "https://pypi.org/simple"}}

    got = deps.resolve({**nteract, **ours}, block, str(tmp_path))
    assert got is not None and (got.source, got.dependencies, got.index_url) == (
        "runtimed", ("Toolz==1.0",), "https://pypi.org/simple")
    got = deps.resolve(nteract, block, str(tmp_path))
    assert got is not None and (got.source, got.dependencies, got.requires_python) == ("runt.uv", ("tabulate",),
                                                                                        ">=3.10")
    got = deps.resolve({}, block, str(tmp_path))
    assert got is not None and (got.source, got.dependencies) == ("pep723", ("six>=1.10",))
    got = deps.resolve({}, "import os", str(tmp_path))
    assert got is not None and (got.source, got.dependencies, got.requires_python) == ("pyproject", ("toolz",),
                                                                                       ">=3.11")
    assert deps.resolve({}, "import os", str(tmp_path / "nowhere")) is None
    assert deps.resolve({}, "import os") is None  # no folder recorded (runt run's cwd is not one)
    # an explicit empty list stops the search: the daemon's own environment
    assert deps.resolve({"runtimed": {"dependencies": []}}, block, str(tmp_path)) is None


def test_the_hash_is_the_request_not_its_spelling() -> None:
    a = deps.resolve({"runtimed": {"dependencies": ["toolz", "tabulate"]}})
    b = deps.resolve({"runt": {"uv": {"dependencies": ["tabulate", "toolz"]}}})
    c = deps.resolve({"runtimed": {"dependencies": ["toolz", "tabulate>=0.9"]}})
    d = deps.resolve({"runtimed": {"dependencies": ["toolz", "tabulate"], "requires_python": "3.12"}})
    assert a is not None and b is not None and c is not None and d is not None
    assert a.key == b.key
    assert len({a.key, c.key, d.key}) == 3


@pytest.mark.parametrize(("metadata", "needle"), [
    ({"runtimed": {"dependencies": ["pandas>=>2"]}}, "not a valid PEP 508 requirement"),
    ({"runtimed": {"dependencies": "pandas"}}, "must be a list"),
    ({"runtimed": {"dependencies": ["six"], "requires_python": "three"}}, "requires_python"),
    ({"runtimed": {"dependencies": ["six"], "index_url": "https://me:secret@example.com/simple"}}, "credentials"),
])
def test_bad_declarations_are_clear_errors(metadata: dict[str, Any], needle: str) -> None:
    with pytest.raises(RuntimedError) as info:
        deps.resolve(metadata)
    assert info.value.code == "invalid_dependency"
    assert needle in info.value.message
    assert "secret" not in info.value.message


def test_add_and_remove_by_package_name_keep_other_settings() -> None:
    metadata: dict[str, Any] = {"runtimed": {"cwd": "/tmp", "dependencies": ["six"]}}
    settings = deps.add_dependency(metadata, "Six>=1.16")
    assert settings == {"cwd": "/tmp", "dependencies": ["Six>=1.16"]}
    settings = deps.add_dependency({"runtimed": settings}, "toolz")
    settings, removed = deps.remove_dependency({"runtimed": settings}, "SIX")
    assert removed and settings == {"cwd": "/tmp", "dependencies": ["toolz"]}
    assert deps.remove_dependency({"runtimed": settings}, "absent") == (settings, False)
    # nteract's list is carried into ours when one is added
    carried = deps.add_dependency({"runt": {"uv": {"dependencies": ["tabulate"]}}}, "six")
    assert carried["dependencies"] == ["tabulate", "six"]
    with pytest.raises(RuntimedError):
        deps.add_dependency({}, "not a requirement!")


# --- against a real daemon --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("envs-home"), "--pool-size", "0",
                        env={"RUNTIMED_ENV_POOL_SIZE": "1"}) as proc:
        yield proc


@pytest.fixture
def rest(daemon: DaemonProcess) -> Iterator[DaemonHTTP]:
    http = DaemonHTTP(daemon.endpoint, timeout=300)
    yield http
    http.close()


@contextlib.asynccontextmanager
async def person_on(notebook_id: str, **kwargs: Any) -> AsyncIterator[AsyncSession]:
    session = AsyncSession(notebook_id, peer_label="alice", **kwargs)
    await session.connect()
    try:
        yield session
    finally:
        await session.close()


def _statuses(rest: DaemonHTTP, notebook_id: str) -> list[str]:
    events = rest.get(f"/api/notebooks/{notebook_id}/events")["events"]
    return [e["args"].get("detail") or "" for e in events if e["name"] == "runtimeStatusChanged"]


async def _wait(predicate: Any, timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met in time")


PREFIX = "import sys, tabulate, toolz; print(sys.prefix)"


async def test_a_notebook_imports_packages_the_daemon_lacks_and_a_second_shares_the_environment(
        daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    async with person_on("env-a") as a:
        result = await a.run("import tabulate", timeout_secs=120)
        assert not result.success and result.error is not None and result.error.ename == "ModuleNotFoundError"
        assert await a.add_dependency("tabulate") == ["tabulate"]
        assert await a.add_uv_dependency("toolz") is None  # the published package's name
        assert await a.get_uv_dependencies() == ["tabulate", "toolz"]
        env = await a.get_environment()
        assert env["trusted"] and env["request"]["source"] == "runtimed"  # a person set them: approved
        await a.shutdown_kernel()  # the next kernel starts in the new environment
        result = await a.run(PREFIX, timeout_secs=300)
        assert result.success, result.error
        prefix_a = result.stdout.strip()
        assert prefix_a.startswith(str(daemon.home.path / "envs"))
        assert any(d.startswith("installing 2 packages") for d in _statuses(rest, "env-a"))
        env = await a.get_environment()
        assert env["built"] and env["path"] == prefix_a and env["status"]["state"] == "ready"

    async with person_on("env-b") as b:
        await b.set_dependencies(["toolz", "tabulate"])  # same request, other order
        result = await b.run(PREFIX, timeout_secs=300)
        assert result.success, result.error
        assert result.stdout.strip() == prefix_a  # one environment, shared
        assert not any(d.startswith("installing") for d in _statuses(rest, "env-b"))  # nothing was built
    listed = rest.get("/api/environments")["environments"]
    assert [e["path"] for e in listed].count(prefix_a) == 1


async def test_a_pool_kernel_runs_in_the_notebooks_environment(daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    async with person_on("env-pool") as s:
        await s.set_dependencies(["tabulate", "toolz"])
        key = (await s.get_environment())["request"]["hash"]
        result = await s.run(PREFIX, timeout_secs=300)
        assert result.success, result.error
        # the environment's own pool keeps a warm kernel behind the one just taken
        await _wait(lambda: rest.get("/api/status")["pool"].get(f"python3@{key}", {}).get("ready") == 1)
        before = rest.get("/api/status")["pool"][f"python3@{key}"]
        await s.shutdown_kernel()
        result = await s.run("import os, sys; print(os.getpid(), sys.prefix, 'tabulate' in sys.modules, "
                             "'_runtimed_preimport' in dir())", timeout_secs=120)
        assert result.success, result.error
        pid, prefix, preimported, leftover = result.stdout.split()
        assert prefix == str(daemon.home.path / "envs" / key)
        assert before["ready"] == 1
        # the warm kernel came from the environment's pool, which imported its packages ahead of time
        assert (preimported, leftover) == ("True", "False")


async def test_imported_dependencies_wait_for_a_persons_approval_bound_to_the_exact_list(
        daemon: DaemonProcess, rest: DaemonHTTP, tmp_path: Path) -> None:
    block = '# /// script\n# dependencies = ["six"]\n# ///\nimport six; print("six", six.__version__)'
    nb = make_notebook(("code", block))
    rest.request("POST", "/api/notebooks/import", params={"id": "env-imported"},
                 content=nbformat.writes(nb).encode())
    async with person_on("env-imported") as s:
        cell = (await s.get_cells())[0].id
        started = time.monotonic()
        result = await s.execute_cell(cell, timeout_secs=120)
        assert not result.success and result.error is not None
        assert result.error.ename == "DependenciesNotApproved"
        assert "six" in result.error.evalue and "runt deps approve env-imported" in result.error.evalue
        assert time.monotonic() - started < 120  # failed at once, no hang
        assert not (daemon.home.path / "envs" / deps.EnvRequest(("six",), source="pep723").key).exists()
        pending = await s.approvals()
        assert [(p["tool"], p["arguments"]["dependencies"]) for p in pending] == [("install_dependencies", ["six"])]
        # running again does not pile up requests
        assert not (await s.execute_cell(cell, timeout_secs=120)).success
        assert len(await s.approvals()) == 1
        await s.resolve_approval(pending[0]["approval_id"], "approved")
        result = await s.execute_cell(cell, timeout_secs=300)
        assert result.success, result.error
        assert result.stdout.startswith("six ")
        # another list is another request: the approval does not carry over
        await s.set_source(cell, block.replace('["six"]', '["six", "toolz"]'))
        await s.shutdown_kernel()
        result = await s.execute_cell(cell, timeout_secs=120)
        assert result.error is not None and result.error.ename == "DependenciesNotApproved"


async def test_dependencies_set_by_an_agent_are_not_installed_without_approval(
        daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    async with person_on("env-agent") as s:
        cell = await s.create_cell("import toolz")
    async with person_on("env-agent", actor=AGENT) as agent:
        await agent.set_metadata("runtimed", {"dependencies": ["toolz"]})
        result = await agent.execute_cell(cell, timeout_secs=120)
        assert result.error is not None and result.error.ename == "DependenciesNotApproved"
        with pytest.raises(RuntimedError) as info:  # the agent cannot approve them itself
            await agent.approve_dependencies()
        assert info.value.code == "approval_self"
    async with person_on("env-agent") as s:
        env = await s.approve_dependencies()
        assert env["trusted"]
        result = await s.execute_cell(cell, timeout_secs=300)
        assert result.success, result.error


async def test_a_failing_resolution_is_a_clear_error_on_the_execution(
        daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    async with person_on("env-bad") as s:
        await s.set_dependencies(["runtimed-surely-no-such-package-3141"])
        result = await s.run("print('never')", timeout_secs=300)
        assert not result.success and result.error is not None
        assert result.error.ename == "EnvironmentFailed"
        assert "runtimed-surely-no-such-package-3141" in result.error.evalue
        env = await s.get_environment()
        assert env["status"]["state"] == "failed" and not env["built"]
        # the kernel started while uv was installing is stopped, not left running
        await _wait(lambda: not _kernels_in_unbuilt_environments(daemon))
        await s.set_dependencies(["six==1.16.0", "six==1.15.0"])  # conflicting pins
        with pytest.raises(RuntimedError) as info:
            await s.sync_environment()
        assert info.value.code == "environment_failed"
        assert "six" in info.value.message
    assert not list((daemon.home.path / "envs").glob("*/runtimed-kernels")) or all(
        (p.parent / "runtimed-env.json").exists() for p in (daemon.home.path / "envs").glob("*/runtimed-kernels"))


def _kernels_in_unbuilt_environments(daemon: DaemonProcess) -> list[str]:
    """Command lines of running processes whose Python is that of an environment not (or no longer) built."""
    envs = str(daemon.home.path / "envs") + "/"
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            argv = cmdline.read_bytes().decode(errors="replace").split("\0")
            if argv and argv[0].startswith(envs):
                env = Path(argv[0]).parent.parent
                if not (env / "runtimed-env.json").exists():
                    found.append(" ".join(argv))
    return found


async def test_a_package_the_kernel_machinery_already_imported_is_the_notebooks_version(
        daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    """The first kernel of a new environment starts while uv installs; if the notebook pins a package that
    kernel already imported (traitlets, from the kernel base), it is replaced by one started after the install."""
    async with person_on("env-pin") as s:
        await s.set_dependencies(["traitlets==5.14.3"])
        result = await s.run("import traitlets, ipykernel; print(traitlets.__version__, "
                             "ipykernel.__file__.startswith(traitlets.__file__.split('traitlets')[0]))",
                             timeout_secs=300)
        assert result.success, result.error
        assert result.stdout.split() == ["5.14.3", "False"]  # the pin, installed in the notebook's env


def _runt(daemon: DaemonProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "runtimed.cli.main", *args], env=daemon.env(), text=True,
                          capture_output=True, timeout=300)


async def test_runt_deps_and_env(daemon: DaemonProcess, rest: DaemonHTTP) -> None:
    rest.post("/api/notebooks", json={"id": "env-cli"})
    done = _runt(daemon, "deps", "add", "env-cli", "six", "toolz", "tabulate")
    assert done.returncode == 0, done.stderr
    listed = json.loads(_runt(daemon, "deps", "list", "env-cli", "--json").stdout)
    assert listed["request"]["dependencies"] == ["six", "toolz", "tabulate"] and listed["trusted"]
    assert _runt(daemon, "deps", "rm", "env-cli", "toolz").returncode == 0
    listed = json.loads(_runt(daemon, "deps", "list", "env-cli", "--json").stdout)
    assert listed["request"]["dependencies"] == ["six", "tabulate"]  # a list no other test uses
    bad = _runt(daemon, "deps", "add", "env-cli", "not a requirement!")
    assert bad.returncode == 2 and "PEP 508" in bad.stderr
    synced = _runt(daemon, "deps", "sync", "env-cli")
    assert synced.returncode == 0, synced.stderr
    key = listed["request"]["hash"]
    envs = json.loads(_runt(daemon, "env", "list", "--json").stdout)["environments"]
    assert key in [e["hash"] for e in envs]
    dry = _runt(daemon, "env", "gc", "--days", "0", "--dry-run")
    assert dry.returncode == 0 and key in dry.stdout
    assert (daemon.home.path / "envs" / key).is_dir()
    assert _runt(daemon, "env", "gc", "--days", "0").returncode == 0
    assert not (daemon.home.path / "envs" / key).exists()  # built, never used by a kernel: not pooled


def test_yaml_notebooks_carry_dependencies() -> None:
    from runtimed.errors import InvalidNotebookError
    from runtimed.formats.yaml_nb import read_yaml_notebook, write_yaml_notebook

    nb, _ = read_yaml_notebook('dependencies: [toolz, "tabulate>=0.9"]\nrequires_python: ">=3.11"\n'
                               'cells:\n  - {id: a, source: import toolz}\n')
    assert nb.metadata["runtimed"] == {"dependencies": ["toolz", "tabulate>=0.9"], "requires_python": ">=3.11"}
    again, _ = read_yaml_notebook(write_yaml_notebook(nb))
    assert again.metadata["runtimed"] == nb.metadata["runtimed"]
    with pytest.raises(InvalidNotebookError) as info:
        read_yaml_notebook("dependencies: ['pandas>=>2']\ncells: []\n")
    assert "dependencies" in info.value.message and "PEP 508" in info.value.message


def test_runt_run_creates_or_reuses_the_environment_and_no_deps_opts_out(
        daemon: DaemonProcess, tmp_path: Path) -> None:
    source = tmp_path / "report.yaml"
    source.write_text("dependencies: [toolz]\ncells:\n  - {id: a, source: 'import sys, toolz; print(sys.prefix)'}\n")
    done = _runt(daemon, "run", str(source), str(tmp_path / "out.ipynb"))
    assert done.returncode == 0, done.stderr
    out = nbformat.read(tmp_path / "out.ipynb", as_version=4)
    assert out.cells[0].outputs[0]["text"].strip().startswith(str(daemon.home.path / "envs"))
    plain = _runt(daemon, "run", str(source), str(tmp_path / "plain.ipynb"), "--no-deps")
    assert plain.returncode == 1 and "ModuleNotFoundError" in plain.stderr + plain.stdout


async def test_a_pyproject_next_to_a_notebook_opened_from_disk(daemon: DaemonProcess, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[project]\nname = "analysis"\nversion = "0"\ndependencies = ["toolz"]\n')
    path = tmp_path / "analysis.ipynb"
    nbformat.write(make_notebook(("code", "import toolz; print('ok', toolz.__name__)")), str(path))
    session = await AsyncSession.open_notebook(path, peer_label="alice")
    try:
        env = await session.get_environment()
        assert env["request"]["source"] == "pyproject" and env["request"]["dependencies"] == ["toolz"]
        assert not env["trusted"]  # read from a file, not chosen here: a person approves it first
        assert await session.get_dependencies() == ["toolz"]
        await session.approve_dependencies()
        cell = (await session.get_cells())[0].id
        result = await session.execute_cell(cell, timeout_secs=300)
        assert result.success, result.error
        assert result.stdout.strip() == "ok toolz"
    finally:
        await session.close()
