"""Everything in RUNTIMED_HOME is private to its user (files 0600, folders 0700), whatever it was before."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import DaemonProcess

import runtimed
from runtimed.home import Home

pytestmark = pytest.mark.timeout(120)

USER_UMASK = 0o022


@pytest.fixture
def user_umask() -> Iterator[int]:
    """A permissive umask, as most users have: without the home's own care files would be 0644."""
    previous = os.umask(USER_UMASK)
    try:
        yield USER_UMASK
    finally:
        os.umask(previous)


@pytest.fixture
def open_home(tmp_path: Path, user_umask: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home made by hand with 0755, holding a 0644 file and a 0755 ``notebooks/`` folder."""
    home = tmp_path / "home"
    home.mkdir()
    os.chmod(home, 0o755)
    (home / "notes.txt").write_text("left here by hand")
    os.chmod(home / "notes.txt", 0o644)
    (home / "notebooks").mkdir()
    os.chmod(home / "notebooks", 0o755)
    monkeypatch.setenv("RUNTIMED_HOME", str(home))
    monkeypatch.delenv("RUNTIMED_URL", raising=False)
    monkeypatch.delenv("RUNTIMED_TOKEN", raising=False)
    return home


def modes(root: Path) -> dict[str, int]:
    """Permission bits of the root and every path under it, keyed by path relative to the root."""
    out = {".": stat.S_IMODE(root.stat().st_mode)}
    for path in root.rglob("*"):
        out[str(path.relative_to(root))] = stat.S_IMODE(path.lstat().st_mode)
    return out


def not_private(root: Path) -> dict[str, str]:
    wrong = {}
    for rel, mode in modes(root).items():
        path = root / rel
        want = 0o700 if path.is_dir() else 0o600
        if mode != want:
            wrong[rel] = f"{mode:o} (want {want:o})"
    return wrong


def test_a_daemon_makes_its_home_and_everything_it_writes_private(open_home: Path, tmp_path: Path) -> None:
    proc = DaemonProcess(open_home)
    proc.start()
    try:
        headers = {"Authorization": f"Bearer {proc.token}"}
        with httpx.Client(base_url=proc.url, headers=headers, timeout=30) as http:
            created = http.post("/api/notebooks", json={"id": "private-nb", "title": "private"})
            assert created.status_code == 201, created.text
        written = tmp_path / "written-by-a-kernel.txt"
        with runtimed.Session(notebook_id="private-nb") as session:
            result = session.run(f"open({str(written)!r}, 'w').write('hi')")
            assert result.success, result
            # while the notebook is open: its database, -wal and -shm exist (and are checked below)
            files = {p.name for p in (open_home / "notebooks").iterdir()}
            assert {"private-nb.db", "private-nb.db-wal", "private-nb.db-shm"} <= files, files
            for name in ("daemon.json", "daemon.log", "token", "notes.txt", "test-daemon.stderr"):
                assert (open_home / name).is_file(), name
            assert not_private(open_home) == {}
        # files the user's code writes are the user's: kernels keep the user's umask
        assert stat.S_IMODE(written.stat().st_mode) == 0o666 & ~USER_UMASK
    finally:
        proc.stop()
    assert not_private(open_home) == {}


def test_ensure_narrows_an_existing_home_but_not_what_its_symlinks_point_to(open_home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside.txt"
    outside.write_text("not the home's")
    os.chmod(outside, 0o644)
    nested = open_home / "notebooks" / "deeper"
    nested.mkdir()
    (nested / "x.db").write_text("")
    os.chmod(nested / "x.db", 0o664)
    (open_home / "link").symlink_to(outside)
    assert not_private(open_home)  # the setup is open

    Home(open_home).ensure()

    assert {rel: mode for rel, mode in not_private(open_home).items() if rel != "link"} == {}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644


def test_a_new_home_is_created_private(tmp_path: Path, user_umask: int) -> None:
    home = Home(tmp_path / "a" / "new-home")
    home.ensure()
    home.ensure_token()
    home.write_daemon_info({"url": "http://127.0.0.1:1", "pid": 1})
    assert not_private(home.path) == {}
