"""Text search in a notebook's projection: the read-only queries behind the agents' ``search_notebooks``.

They run through the daemon's bounded query endpoint (``POST /api/notebooks/{id}/query``), so a
search needs no replica of every notebook; the SQL lives here, with the other reads of the projection.
"""

from __future__ import annotations

import json

SOURCE_MATCHES = ("SELECT id, cell_type, source FROM cells WHERE source LIKE ? ESCAPE '\\' "
                  "ORDER BY fractional_index, id")
"""Cells whose source contains the text (``LIKE`` is case-insensitive for ASCII); params: one pattern."""
OUTPUT_MATCHES = ("SELECT cell_id, content FROM outputs WHERE content LIKE ? ESCAPE '\\' "
                  "OR content LIKE ? ESCAPE '\\' LIMIT 200")
"""Outputs whose stored JSON contains the text as is or JSON-escaped; params: :func:`output_patterns`."""


def _like(text: str) -> str:
    return "%" + text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def source_patterns(text: str) -> list[str]:
    return [_like(text)]


def output_patterns(text: str) -> list[str]:
    """The text as typed, and as it appears inside a JSON string (quotes, newlines, backslashes escaped)."""
    return [_like(text), _like(json.dumps(text, ensure_ascii=False)[1:-1])]
