"""The daemon's home folder: where clients find the daemon (``daemon.json``) and its token.

Deliberately light (stdlib only) so that the CLI and bindings can locate a daemon
without importing the server stack.
"""

from __future__ import annotations

import json
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtimed import home_files
from runtimed.home_files import home_folder
from runtimed.home_files import pid_alive as pid_alive  # where the clients have always imported it from

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8730
PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700
PRIVATE_UMASK = 0o077


def _warn(message: str, *args: Any) -> None:
    """A warning on runtimed's logger (logging loads only then: ``runt run`` starts without it)."""
    import logging

    logging.getLogger("runtimed").warning(message, *args)


_user_umask: int | None = None


def default_home() -> Path:
    return Path(home_folder())


@dataclass(frozen=True)
class Home:
    path: Path

    @classmethod
    def resolve(cls, path: str | os.PathLike[str] | None = None) -> Home:
        return cls(Path(path).expanduser() if path else default_home())

    @property
    def daemon_file(self) -> Path:
        return self.path / "daemon.json"

    @property
    def token_file(self) -> Path:
        return self.path / "token"

    @property
    def lock_file(self) -> Path:
        return self.path / "daemon.lock"

    @property
    def log_file(self) -> Path:
        return self.path / "daemon.log"

    @property
    def artifacts_dir(self) -> Path:
        return self.path / "artifacts"

    @property
    def envs_dir(self) -> Path:
        """uv-managed notebook environments, one folder per request hash (docs/environments.md)."""
        return self.path / "envs"

    def ensure(self) -> None:
        """Create the home and make everything in it private (files 0600, folders 0700).

        The home holds the token and every notebook, so whatever mode it had before (a home made by
        hand with 0755, a file copied in with 0644) is narrowed here, at daemon start."""
        self._mkdir()
        make_private(self.path)

    def _mkdir(self) -> None:
        if not self.path.is_dir():
            self.path.mkdir(parents=True, exist_ok=True)
            os.chmod(self.path, PRIVATE_DIR)  # mkdir's mode is masked by the umask

    @staticmethod
    def make_process_private() -> None:
        """From now on every file this process creates is private (umask 077): the daemon calls
        this first, so notebooks, their ``-wal``/``-shm``, logs and future files need no care.
        Kernels it starts get the user's umask back (:func:`user_umask`)."""
        global _user_umask
        previous = os.umask(PRIVATE_UMASK)
        if _user_umask is None:
            _user_umask = previous

    def read_token(self) -> str | None:
        return home_files.read_token(self.path)

    def ensure_token(self) -> str:
        """The home's token, created with mode 0600 on first use."""
        token = self.read_token()
        if token:
            os.chmod(self.token_file, 0o600)
            return token
        self._mkdir()
        import secrets

        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    def daemon_token(self) -> str:
        """The token the daemon accepts: ``RUNTIMED_TOKEN`` when set (several daemons of one deployment share
        it; clients given the same variable use it too), else the home's own token."""
        shared = os.environ.get("RUNTIMED_TOKEN", "").strip()
        return shared or self.ensure_token()

    def read_daemon_info(self) -> dict[str, Any] | None:
        return home_files.read_daemon_info(self.path)

    def write_daemon_info(self, info: dict[str, Any]) -> None:
        self._mkdir()
        tmp = self.daemon_file.with_suffix(".tmp")
        tmp.unlink(missing_ok=True)  # a leftover would keep its old mode
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
        with os.fdopen(fd, "w") as f:
            f.write(json.dumps(info, indent=2))
        tmp.replace(self.daemon_file)

    def clear_daemon_info(self, pid: int) -> None:
        info = self.read_daemon_info()
        if info is not None and info.get("pid") == pid:
            self.daemon_file.unlink(missing_ok=True)


def make_private(root: Path) -> None:
    """Narrow ``root`` and everything under it to this user: folders 0700, regular files 0600.

    Symlinks are left alone (their target may be outside the home); a path that cannot be changed
    (owned by another user) is logged, not fatal, so the daemon still starts. A home that is the
    user's home folder (or above it) is refused: that would lock up unrelated files."""
    resolved, user_home = root.resolve(), Path.home().resolve()
    if resolved == user_home or resolved in user_home.parents:
        _warn("not making %s private: it is (or contains) your home folder; "
              "set RUNTIMED_HOME to a folder of its own", root)
        return
    _chmod(root, PRIVATE_DIR)
    for folder, dirs, files in os.walk(root, onerror=_walk_error):
        for name in dirs:
            path = Path(folder, name)
            if not path.is_symlink():
                _chmod(path, PRIVATE_DIR)
        for name in files:
            path = Path(folder, name)
            try:
                st = path.lstat()
            except FileNotFoundError:  # removed meanwhile (a -wal checkpointed away)
                continue
            if stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) != PRIVATE_FILE:
                _chmod(path, PRIVATE_FILE)


def _chmod(path: Path, mode: int) -> None:
    try:
        if stat.S_IMODE(path.stat().st_mode) != mode:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass
    except OSError as exc:
        _warn("cannot make %s private (mode %o): %s; change its owner or mode by hand", path, mode, exc)


def _walk_error(exc: OSError) -> None:
    _warn("cannot make %s private: %s", exc.filename, exc.strerror)


def user_umask() -> int:
    """The umask this process had before :meth:`Home.make_process_private` (-1: unchanged), for the
    processes it starts on the user's behalf (kernels): their files are the user's, not the home's."""
    return -1 if _user_umask is None else _user_umask
