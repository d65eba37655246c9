"""Where the home folder is and what its daemon files say, read with ``os`` and ``json`` alone.

``runt run`` reads them before anything else loads (issue 16: its start counts against the first cell);
:class:`runtimed.home.Home` reads them through the same functions.
"""

from __future__ import annotations

import json
import os

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def home_folder() -> str:
    """``RUNTIMED_HOME``, else ``$XDG_DATA_HOME/runtimed`` (``~/.local/share/runtimed``)."""
    env = os.environ.get("RUNTIMED_HOME")
    if env:
        return os.path.expanduser(env)
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return os.path.join(base, "runtimed")


def read_token(folder: str | os.PathLike[str]) -> str | None:
    """The home's token (its ``token`` file), None when there is none yet."""
    try:
        with open(os.path.join(folder, "token")) as f:
            return f.read().strip() or None
    except FileNotFoundError:
        return None


def read_daemon_info(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """What the running daemon wrote to ``daemon.json`` (its ``url`` and ``pid``), None when absent or unreadable."""
    try:
        with open(os.path.join(folder, "daemon.json"), "rb") as f:
            info = json.loads(f.read())
    except (FileNotFoundError, ValueError):
        return None
    return info if isinstance(info, dict) and "url" in info else None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
