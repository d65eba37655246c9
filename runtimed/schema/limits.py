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
