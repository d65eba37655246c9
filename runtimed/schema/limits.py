"""Limits on what one event, push or notebook may hold. Each has a default and a clear error."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Limits:
    max_event_bytes: int = 8 * 1024 * 1024
    """Encoded size of one event (its JSON); larger MIME values belong in artifacts."""
    max_batch_events: int = 5000
    """Events in one push."""
    max_message_bytes: int = 32 * 1024 * 1024
    """One sync-protocol message."""
    max_source_chars: int = 2_000_000
    """Characters in one cell's source."""
    max_cells: int = 100_000
    """Cells in one notebook."""
    max_outbox_bytes: int = 8 * 1024 * 1024
    """Replies (acks, errors) waiting to be sent to one connection; past this it is closed as a slow consumer."""
    max_json_depth: int = 64
    """Nesting of arrays and objects in one event's args; deeper values could not be served back (the
    serializers stop at a few hundred levels), so they are refused when pushed."""

    @classmethod
    def from_env(cls) -> Limits:
        """Defaults, overridden by ``RUNTIMED_LIMIT_<FIELD>`` environment variables."""
        overrides = {}
        for f in fields(cls):
            raw = os.environ.get(f"RUNTIMED_LIMIT_{f.name.upper()}")
            if raw:
                overrides[f.name] = int(raw)
        return cls(**overrides)


DEFAULT_LIMITS = Limits()


def json_depth(value: object, limit: int) -> int:
    """The nesting depth of a JSON value, counted only up to ``limit + 1`` (no recursion, so any input is safe)."""
    deepest = 0
    stack: list[tuple[object, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item  # type: ignore[assignment]
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest
