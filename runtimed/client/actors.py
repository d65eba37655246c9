"""Who a command-line decision is recorded as: the person at this terminal."""

from __future__ import annotations

import getpass


def terminal_person() -> dict[str, str]:
    """The person at this terminal as the actor of a decision (an approval, a dependency change)."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "user"
    return {"id": f"{user}-cli", "kind": "human", "name": user}
