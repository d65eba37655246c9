"""Cell source as a Yjs ``Y.Text`` (pycrdt), carried inside the log (DESIGN 3.2).

A cell created with a source is seeded by a fixed client id so every replica builds
the identical CRDT state from ``cellCreated``; editors then load that state into a
document of their own (random client id) and emit updates for minimal diffs.
"""

from __future__ import annotations

import base64
import difflib
from collections.abc import Iterator
from typing import Any

from pycrdt import Doc, Text, get_update

TEXT_KEY = "source"
SEED_CLIENT_ID = 1
# Above this many characters of changed middle, a diff is one replacement rather than difflib's.
_FINE_DIFF_LIMIT = 20_000


class InvalidUpdate(ValueError):
    """Bytes that are not a Yjs update."""


class SourceDoc:
    """One cell's Y.Text, with helpers to apply, encode and diff."""

    def __init__(self, state: bytes | None = None, *, client_id: int | None = None) -> None:
        self.doc: Doc[Any] = Doc(client_id=client_id) if client_id is not None else Doc()
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

    def apply_edit(self, update: bytes) -> None:
        """Apply a client's edit, refusing one that depends on edits this document lacks.

        Yjs keeps such an update pending in memory, outside the encoded state, so a replica
        that loaded the stored state would later diverge from one that kept the pending part.
        """
        self.apply(update)
        known = self.doc.get_state()
        try:
            # What of the update the document still lacks: structs it could not integrate, then the delete set.
            structs, deletes = _split_diff(get_update(update, known))
        except Exception as exc:
            raise InvalidUpdate(f"not a Yjs update: {exc}") from None
        clocks = _read_state_vector(known)
        if structs:
            raise InvalidUpdate(
                "the update depends on edits this cell does not have; resync the cell source and edit again"
            )
        for client, end in deletes.items():
            if clocks.get(client, 0) < end:
                raise InvalidUpdate(
                    f"the update deletes text this cell does not have (client {client} up to clock {end}); "
                    "resync the cell source and edit again"
                )

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
            # pycrdt indexes text by UTF-8 byte offsets, not code points; edits go from the end backwards,
            # so offsets into ``old`` stay valid.
            for _op, i1, i2, j1, j2 in reversed(list(_diff_ops(old, new_source))):
                start = _utf8_len(old[:i1])
                if i2 > i1:
                    del self.text[start : start + _utf8_len(old[i1:i2])]
                if j2 > j1:
                    self.text.insert(start, new_source[j1:j2])
        return self.doc.get_update(before)


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _diff_ops(old: str, new: str) -> Iterator[tuple[str, int, int, int, int]]:
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


def _read_var_uint(data: bytes, pos: int) -> tuple[int, int]:
    """lib0's unsigned LEB128 integer at ``pos``; returns (value, next position)."""
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _read_state_vector(data: bytes) -> dict[int, int]:
    count, pos = _read_var_uint(data, 0)
    out = {}
    for _ in range(count):
        client, pos = _read_var_uint(data, pos)
        out[client], pos = _read_var_uint(data, pos)
    return out


def _split_diff(update: bytes) -> tuple[int, dict[int, int]]:
    """The number of clients with structs in an update and, when none, its delete set's end clock per client."""
    structs, pos = _read_var_uint(update, 0)
    out: dict[int, int] = {}
    if structs:
        return structs, out
    clients, pos = _read_var_uint(update, pos)
    for _ in range(clients):
        client, pos = _read_var_uint(update, pos)
        ranges, pos = _read_var_uint(update, pos)
        for _ in range(ranges):
            clock, pos = _read_var_uint(update, pos)
            length, pos = _read_var_uint(update, pos)
            out[client] = max(out.get(client, 0), clock + length)
    return 0, out


def encode_update(update: bytes) -> str:
    return base64.b64encode(update).decode("ascii")


def decode_update(update: str) -> bytes:
    return base64.b64decode(update, validate=True)
