"""The daemon's home folder: where clients find the daemon (``daemon.json``) and its token.

Deliberately light (stdlib only) so that the CLI and bindings can locate a daemon
without importing the server stack.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8730


def default_home() -> Path:
    env = os.environ.get("RUNTIMED_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "runtimed"


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

    def ensure(self) -> None:
        self.path.mkdir(parents=True, exist_ok=True, mode=0o700)

    def read_token(self) -> str | None:
        try:
            return self.token_file.read_text().strip() or None
        except FileNotFoundError:
            return None

    def ensure_token(self) -> str:
        """The home's token, created with mode 0600 on first use."""
        token = self.read_token()
        if token:
            os.chmod(self.token_file, 0o600)
            return token
        self.ensure()
        token = secrets.token_urlsafe(32)
        fd = os.open(self.token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(token)
        return token

    def read_daemon_info(self) -> dict[str, Any] | None:
        try:
            info = json.loads(self.daemon_file.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        return info if isinstance(info, dict) and "url" in info else None

    def write_daemon_info(self, info: dict[str, Any]) -> None:
        self.ensure()
        tmp = self.daemon_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(info, indent=2))
        tmp.replace(self.daemon_file)

    def clear_daemon_info(self, pid: int) -> None:
        info = self.read_daemon_info()
        if info is not None and info.get("pid") == pid:
            self.daemon_file.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
