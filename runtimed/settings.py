"""Numeric settings read from the environment: one rule for a missing, malformed or out-of-range value."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

N = TypeVar("N", int, float)


def env_number(name: str, default: N, cast: Callable[[str], N], *, allow_zero: bool = False) -> N:
    """``$name`` as a number; the default when it is unset, not a number or out of range (logged).

    Negative values are out of range; zero too unless ``allow_zero`` (e.g. a grace period of 0 s).
    """
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = cast(raw)
    except ValueError:
        log.warning("%s=%r is not a number; using %s", name, raw, default)
        return default
    if value < 0 or (value == 0 and not allow_zero):
        log.warning("%s=%r is out of range; using %s", name, raw, default)
        return default
    return value
