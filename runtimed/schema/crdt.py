"""Cell source as a Yjs ``Y.Text`` (pycrdt), carried inside the log (DESIGN 3.2).

A cell created with a source is seeded by a fixed client id so every replica builds
the identical CRDT state from ``cellCreated``; editors then load that state into a
document of their own (random client id) and emit updates for minimal diffs.
"""

from __future__ import annotations

import base64
import difflib

from pycrdt import Doc, Text

TEXT_KEY = "source"
SEED_CLIENT_ID = 1
# Above this many characters of changed middle, a diff is one replacement rather than difflib's.
_FINE_DIFF_LIMIT = 20_000


class InvalidUpdate(ValueError):
    """Bytes that are not a Yjs update."""


class SourceDoc:
    """One cell's Y.Text, with helpers to apply, encode and diff."""

    def __init__(self, state: bytes | None = None, *, client_id: int | None = None) -> None:
        self.doc = Doc(client_id=client_id) if client_id is not None else Doc()
        self.text = self.doc.get(TEXT_KEY, type=Text)
        if state:
            self.apply(state)

    @classmethod
    def seeded(cls, source: str) -> SourceDoc:
        """The deterministic initial document of a cell created with ``source``."""
        sd = cls(client_id=SEED_CLIENT_ID)
        if source:
            sd.text += source
        return sd

    def apply(self, update: bytes) -> None:
        try:
            self.doc.apply_update(update)
        except Exception as exc:  # pycrdt raises ValueError, or a Rust panic wrapper
            raise InvalidUpdate(f"not a Yjs update: {exc}") from None

    @property
    def source(self) -> str:
        return str(self.text)

    def state(self) -> bytes:
        return self.doc.get_update()

    def update_to(self, new_source: str) -> bytes | None:
        """Edit the text to ``new_source`` with a minimal diff; return the Yjs update (None: no change)."""
        old = self.source
        if old == new_source:
            return None
        before = self.doc.get_state()
        with self.doc.transaction():
            for _op, i1, i2, j1, j2 in reversed(list(_diff_ops(old, new_source))):
                if i2 > i1:
                    del self.text[i1:i2]
                if j2 > j1:
                    self.text.insert(i1, new_source[j1:j2])
        return self.doc.get_update(before)


def _diff_ops(old: str, new: str):
    """Opcodes turning ``old`` into ``new``: common prefix/suffix trimmed, difflib in between."""
    prefix = 0
    limit = min(len(old), len(new))
    while prefix < limit and old[prefix] == new[prefix]:
        prefix += 1
    suffix = 0
    while suffix < limit - prefix and old[-1 - suffix] == new[-1 - suffix]:
        suffix += 1
    a, b = old[prefix : len(old) - suffix], new[prefix : len(new) - suffix]
    if len(a) + len(b) > _FINE_DIFF_LIMIT or not a or not b:
        yield ("replace", prefix, prefix + len(a), prefix, prefix + len(b))
        return
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if op != "equal":
            yield (op, prefix + i1, prefix + i2, prefix + j1, prefix + j2)


def encode_update(update: bytes) -> str:
    return base64.b64encode(update).decode("ascii")


def decode_update(update: str) -> bytes:
    return base64.b64decode(update, validate=True)
