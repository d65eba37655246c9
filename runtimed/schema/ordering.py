"""Cell order by fractional index strings (never array positions).

Keys come from the ``fractional-indexing`` algorithm: a key exists between any two
distinct keys, so inserts never exhaust the space; ties (two clients choosing the
same key concurrently) are broken by cell id, which makes the order deterministic.
"""

from __future__ import annotations

from collections.abc import Sequence

from fractional_indexing import generate_key_between, generate_n_keys_between


def key_between(before: str | None, after: str | None) -> str:
    """A key strictly between two neighbours (None: open end).

    Equal neighbours (a tie) get a key just after ``before``.
    """
    if before is not None and after is not None and before >= after:
        after = None
    return str(generate_key_between(before, after))


def keys_between(before: str | None, after: str | None, n: int) -> list[str]:
    if before is not None and after is not None and before >= after:
        after = None
    return [str(k) for k in generate_n_keys_between(before, after, n)]


def key_for_position(ordered_keys: Sequence[str], index: int | None) -> str:
    """The key that places a new cell at ``index`` among cells ordered by ``ordered_keys``.

    ``None`` or an index past the end appends; negative indexes count from the end.
    """
    n = len(ordered_keys)
    if index is None or index >= n or n == 0:
        return key_between(ordered_keys[-1] if n else None, None)
    if index < 0:
        index = max(0, n + index)
    before = ordered_keys[index - 1] if index > 0 else None
    return key_between(before, ordered_keys[index])
