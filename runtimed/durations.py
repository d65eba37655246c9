"""Durations written as people write them: ``30m``, ``12h``, ``7d``, ``2w`` or a sum such as ``1d12h``."""

from __future__ import annotations

import re
from datetime import timedelta

from runtimed.errors import RuntimedError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_PART = re.compile(r"(\d+)([smhdw])")
MAX_DURATION = timedelta(days=100 * 365)


def parse_duration(text: str) -> timedelta:
    """A duration (bounded: at most 100 years); a clear ``invalid_request`` error otherwise."""
    value = text.strip().lower()
    if not value or _PART.sub("", value) != "":
        raise RuntimedError(f"{text!r} is not a duration; write a number and a unit (s, m, h, d, w), "
                            "e.g. 7d, 12h, 30m or 1d12h", code="invalid_request")
    seconds = sum(int(n) * UNITS[unit] for n, unit in _PART.findall(value))
    if seconds > MAX_DURATION.total_seconds():
        raise RuntimedError(f"{text!r} is longer than 100 years; use a shorter duration", code="invalid_request")
    return timedelta(seconds=seconds)
