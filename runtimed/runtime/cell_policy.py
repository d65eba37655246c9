"""A cell's run policy: how often to retry it, how long it may run, and whether it runs at all.

Read from the cell's metadata (``runtimed: {retry, timeout, run_if}``, or ``retry``/``timeout``
at the top level) or its tags (``retry=3``, ``backoff=2``, ``timeout=30``). ``retry`` is a count
or ``{count, backoff}``; the n-th retry waits ``backoff * 2**(n-1)`` seconds. The runtime applies
``timeout`` (it interrupts the cell, as the notebook-wide execution timeout does); a run
(``runt run``) applies ``retry`` and ``run_if`` (automation/steps.py).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from runtimed.errors import RuntimedError

MAX_RETRIES = 100
MAX_BACKOFF_S = 3600.0


class CellPolicyError(RuntimedError):
    code = "invalid_cell_policy"


@dataclass(frozen=True)
class CellPolicy:
    retries: int = 0
    backoff: float = 0.0
    timeout: float | None = None
    run_if: str | None = None

    @property
    def plain(self) -> bool:
        """Nothing a run has to do between this cell and its neighbours."""
        return not self.retries and self.run_if is None

    def delay(self, retry: int) -> float:
        """Seconds before the ``retry``-th retry (1-based)."""
        return min(MAX_BACKOFF_S, self.backoff * 2 ** (retry - 1))

    @classmethod
    def of(cls, metadata: Mapping[str, Any] | None, where: str = "cell") -> CellPolicy:
        """The policy a cell's metadata and tags declare; :class:`CellPolicyError` says what is malformed."""
        metadata = metadata or {}
        own = metadata.get("runtimed")
        own = own if isinstance(own, Mapping) else {}
        tags = metadata.get("tags")
        tagged = _tag_values(tags if isinstance(tags, Sequence) and not isinstance(tags, str) else [])

        def pick(key: str) -> Any:
            for source in (own, metadata, tagged):
                if key in source:
                    return source[key]
            return None

        retries, backoff = 0, 0.0
        retry = pick("retry")
        if isinstance(retry, Mapping):
            retries = _count(retry.get("count", 1), f"{where}: retry.count")
            backoff = _seconds(retry.get("backoff", 0), f"{where}: retry.backoff", allow_zero=True)
        elif retry is not None:
            retries = _count(retry, f"{where}: retry")
        if pick("backoff") is not None:
            backoff = _seconds(pick("backoff"), f"{where}: backoff", allow_zero=True)
        timeout = pick("timeout")
        run_if = pick("run_if")
        if run_if is not None and (not isinstance(run_if, str) or not run_if.strip()):
            raise CellPolicyError(f"{where}: runtimed.run_if must be a Python expression (a non-empty string), "
                                  f"not {run_if!r}")
        return cls(retries=retries, backoff=min(backoff, MAX_BACKOFF_S),
                   timeout=None if timeout is None else _seconds(timeout, f"{where}: timeout"),
                   run_if=run_if.strip() if isinstance(run_if, str) else None)


def cell_timeout(metadata: Mapping[str, Any] | None) -> float | None:
    """The cell's own timeout for the runtime; a malformed policy counts as none (the run reports it)."""
    try:
        return CellPolicy.of(metadata).timeout
    except CellPolicyError:
        return None


def _tag_values(tags: Sequence[Any]) -> dict[str, str]:
    out = {}
    for tag in tags:
        if isinstance(tag, str) and "=" in tag:
            key, _, value = tag.partition("=")
            if key in ("retry", "backoff", "timeout"):
                out[key] = value
    return out


def _count(value: Any, what: str) -> int:
    try:
        number = int(value) if not isinstance(value, bool) and float(value) == int(float(value)) else -1
    except (TypeError, ValueError):
        number = -1
    if not 0 <= number <= MAX_RETRIES:
        raise CellPolicyError(f"{what} must be a whole number of retries from 0 to {MAX_RETRIES}, not {value!r}")
    return number


def _seconds(value: Any, what: str, *, allow_zero: bool = False) -> float:
    try:
        number = float(value) if not isinstance(value, bool) else math.nan
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number) or number < 0 or (number == 0 and not allow_zero):
        raise CellPolicyError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} number of seconds, "
                              f"not {value!r}")
    return number
