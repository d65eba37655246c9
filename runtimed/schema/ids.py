"""Identifiers: time-ordered, unique, within the catalog's safe charset."""

from __future__ import annotations

import os
import time


def new_id(prefix: str = "") -> str:
    """A ULID-like id: 12 hex digits of milliseconds, then 16 of randomness (sortable by creation)."""
    return f"{prefix}{int(time.time() * 1000):012x}{os.urandom(8).hex()}"
