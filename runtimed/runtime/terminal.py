"""Render stream text the way a terminal would.

Kernels write progress bars as ``\\r``-overwritten lines; storing the raw bytes would make
a 10,000-step bar 10,000 lines long. ``StreamTerminal`` keeps only what a terminal would
show, and reports each change as ``(offset, tail)`` so callers can send small deltas
without diffing the whole (possibly huge) text.

Model: lines far above the cursor are frozen strings (a block of many lines written at
once stays one string: ``_frozen`` items are joined by newlines); a small window of recent lines
stays editable (``ESC[A`` can move the cursor up into it). Each editable line is a list
of cells, one per column; a cell is a visible character preceded by any escape
sequences (colours) written at that column, so escapes are kept but take no column.
"""

from __future__ import annotations

import re

__all__ = ["StreamTerminal"]

# Lines kept editable above the cursor (for ESC[A, used by nested tqdm bars).
_WINDOW = 8
# Escapes piled on one cell or line end are capped so repeated colour codes stay bounded.
_MAX_PREFIX = 256

_TOKEN = re.compile(
    r"\x1b\[([0-?]*)[ -/]*([@-~])"  # CSI: params, final byte
    r"|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"  # OSC (hyperlinks, titles)
    r"|\x1b[@-Z\\-_]"  # other two-byte escapes
    r"|[\n\r\b]"
    r"|[\x00-\x08\x0b-\x1f\x7f]"  # other controls, stray ESC: dropped
)
# An escape cut off at the end of a chunk; completed by the next feed.
_PARTIAL = re.compile(r"\x1b(?:\[[0-?]*[ -/]*|\][^\x07\x1b]*)?$")
# Control characters other than newline and tab, as a byte table (1 = special): UTF-8 encodes these characters as themselves and no other
# character uses such bytes, and scanning megabytes this way is several times faster than the regex.
_SPECIAL_BYTES = bytes(int(b < 0x20 and b not in (0x09, 0x0A) or b == 0x7F) for b in range(256))


def _is_plain(text: str) -> bool:
    """No control characters but newlines and tabs (then the fast path applies)."""
    return text.encode("utf-8", "surrogatepass").translate(_SPECIAL_BYTES).find(1) < 0


class _Line:
    __slots__ = ("cells", "size", "tail")

    def __init__(self, cells: list[str] | None = None, tail: str = "") -> None:
        self.cells: list[str] = [] if cells is None else cells
        self.tail = tail  # escapes written after the last cell
        self.size: int | None = None  # cached len(render()), reset on every change

    def render(self) -> str:
        return "".join(self.cells) + self.tail

    def length(self) -> int:
        if self.size is None:
            self.size = len("".join(self.cells)) + len(self.tail)
        return self.size


def _cap(escapes: str) -> str:
    if len(escapes) <= _MAX_PREFIX:
        return escapes
    cut = escapes[-_MAX_PREFIX:]
    start = cut.find("\x1b")
    return cut[start:] if start >= 0 else ""


def _add_escape(prefix: str, esc: str) -> str:
    return prefix if prefix.endswith(esc) else _cap(prefix + esc)


class StreamTerminal:
    """Terminal-style renderer for one output stream with cheap change tracking."""

    def __init__(self) -> None:
        self._frozen: list[str] = []
        self._frozen_len = 0  # len("\n".join(frozen)) + 1 when frozen is non-empty
        self._active: list[_Line] = [_Line()]
        self._row = 0  # cursor row, index into _active
        self._col = 0  # cursor column; may lie beyond the end of the line
        self._partial = ""
        # Lowest changed position since the last take: either (abs_row, col) in the
        # editable window, or (frozen line index, offset in line, absolute offset).
        self._dirty: tuple[int, int] | None = None
        self._dirty_frozen: tuple[int, int, int] | None = None
        # A clean prefix of one line as of the last take, (abs_row, cells, chars), so a long
        # line that only grows is not re-measured on every take.
        self._known: tuple[int, int, int] = (-1, 0, 0)
        # Frozen text handed out by ``release`` (a spilled stream keeps it in a file): items before
        # ``_released_index`` are "" and ``_released`` characters of the text are gone from memory.
        self._released = 0
        self._released_index = 0

    # -- public API -------------------------------------------------------------

    def feed(self, text: str) -> None:
        """Apply ``text`` written to the stream."""
        if self._partial:
            text = self._partial + text
            self._partial = ""
        if "\x1b" in text:
            m = _PARTIAL.search(text, max(0, len(text) - _MAX_PREFIX))
            if m is not None:
                self._partial = text[m.start() :]
                text = text[: m.start()]
        if not text:
            return
        if _is_plain(text):
            self._feed_plain(text)
            return
        pos = 0
        for m in _TOKEN.finditer(text):
            if m.start() > pos:
                self._write(text[pos : m.start()])
            pos = m.end()
            tok = m.group()
            if tok == "\n":
                self._newline()
            elif tok == "\r":
                self._col = 0
            elif tok == "\b":
                self._col = max(0, self._col - 1)
            elif tok[0] == "\x1b" and len(tok) > 1:
                self._escape(tok, m.group(1), m.group(2))
        if pos < len(text):
            self._write(text[pos:])

    @property
    def text(self) -> str:
        """The rendered text (pending partial escapes excluded; before any ``release``)."""
        return "\n".join([*self._frozen, *(line.render() for line in self._active)])

    @property
    def final_length(self) -> int:
        """How much of the text can never change again: the frozen lines (and the newline after them)."""
        return self._frozen_len

    def text_from(self, position: int) -> str:
        """``text[position:]`` for a position at or after ``final_length`` (only the live lines are rendered)."""
        if position < self._frozen_len:
            raise ValueError(f"text_from({position}) reaches into the frozen lines (final_length {self._frozen_len})")
        live = "\n".join(line.render() for line in self._active)
        return live[position - self._frozen_len :]

    @property
    def released(self) -> int:
        """Characters at the start of the text given away by ``release`` (no longer held)."""
        return self._released

    def release(self, upto: int) -> str:
        """``text[released:upto]`` (within the frozen lines), forgotten from now on: a long stream's writer keeps
        it elsewhere, so memory holds only what is recent. ``text`` then starts at ``released``. Call it only
        right after ``take_change`` (a pending change may point into the frozen lines)."""
        upto = min(upto, self._frozen_len)
        pieces: list[str] = []
        frozen = self._frozen
        while self._released < upto:
            item = frozen[self._released_index]
            room = len(item) + 1  # the item and the newline after it
            take = upto - self._released
            if take >= room:
                pieces.append(item)
                pieces.append("\n")
                frozen[self._released_index] = ""
                self._released_index += 1
                self._released += room
            else:
                pieces.append(item[:take])
                frozen[self._released_index] = item[take:]
                self._released += take
        if self._released_index > 1024 and self._dirty is None and self._dirty_frozen is None:
            del frozen[: self._released_index]  # rows are counted from here on: a cached row would be wrong
            self._released_index = 0
            self._known = (-1, 0, 0)
        return "".join(pieces)

    def held_text(self) -> str:
        """``text[released:]``: what is still held (the recent frozen lines and the live ones)."""
        return "\n".join([*self._frozen[self._released_index :], *(line.render() for line in self._active)])

    def take_change(self) -> tuple[int, str] | None:
        """What changed since the last take: ``(offset, tail)`` with ``prev[:offset] + tail == text``."""
        active = self._active
        if self._dirty_frozen is not None:
            index, in_line, offset = self._dirty_frozen
            parts = [self._frozen[index][in_line:], *self._frozen[index + 1 :]]
            parts.extend(line.render() for line in active)
        elif self._dirty is not None:
            abs_row, col = self._dirty
            row = abs_row - len(self._frozen)
            line = active[row]
            in_line = self._prefix_len(abs_row, line.cells, col)
            offset = self._frozen_len + sum(other.length() + 1 for other in active[:row]) + in_line
            rest = "".join(line.cells[col:])
            parts = [rest + line.tail]
            parts.extend(other.render() for other in active[row + 1 :])
        else:
            return None
        last = active[-1]
        if self._dirty is not None and self._dirty[0] - len(self._frozen) == len(active) - 1:
            self._known = (self._dirty[0], len(last.cells), in_line + len(rest))
        else:  # parts[-1] is the whole last line
            self._known = (
                len(self._frozen) + len(active) - 1,
                len(last.cells),
                len(parts[-1]) - len(last.tail),
            )
        self._dirty = None
        self._dirty_frozen = None
        return offset, "\n".join(parts)

    def _prefix_len(self, abs_row: int, cells: list[str], col: int) -> int:
        """len("".join(cells[:col])), reusing the clean prefix measured at the last take."""
        row, n, chars = self._known
        if row == abs_row and n <= col:
            return chars + len("".join(cells[n:col]))
        return len("".join(cells[:col]))

    # -- editing ------------------------------------------------------------------

    def _mark(self, row: int, col: int) -> None:
        """Record a change starting at editable ``row`` (window index), cell ``col``."""
        line = self._active[row]
        line.size = None
        if self._dirty_frozen is not None:
            return
        pos = (len(self._frozen) + row, min(col, len(line.cells)))
        if self._dirty is None or pos < self._dirty:
            self._dirty = pos

    def _write(self, run: str) -> None:
        if not run:
            return
        line = self._active[self._row]
        cells = line.cells
        col = self._col
        self._mark(self._row, col)
        if col > len(cells):  # cursor moved past the end: pad like a terminal shows blanks
            cells.extend(" " * (col - len(cells)))
        n_over = min(len(run), len(cells) - col)
        if n_over > 0:
            old = cells[col : col + n_over]
            if len("".join(old)) == n_over:  # no escapes on these cells
                cells[col : col + n_over] = run[:n_over]
            else:
                cells[col : col + n_over] = [o[:-1] + ch for o, ch in zip(old, run, strict=False)]
        rest = run[n_over:] if n_over > 0 else run
        if rest:
            if line.tail:
                cells.append(line.tail + rest[0])
                cells.extend(rest[1:])
                line.tail = ""
            else:
                cells.extend(rest)
        self._col = col + len(run)

    def _newline(self) -> None:
        self._col = 0
        if self._row < len(self._active) - 1:
            self._row += 1
            return
        self._mark(self._row, len(self._active[self._row].cells))
        self._active.append(_Line())
        self._row += 1
        while len(self._active) > _WINDOW:
            self._freeze_first()

    def _freeze_first(self) -> None:
        line = self._active.pop(0)
        self._row -= 1
        rendered = line.render()
        index = len(self._frozen)
        if self._dirty is not None and self._dirty[0] == index:
            in_line = self._prefix_len(index, line.cells, self._dirty[1])
            self._dirty_frozen = (index, in_line, self._frozen_len + in_line)
            self._dirty = None
        self._frozen.append(rendered)
        self._frozen_len += len(rendered) + 1

    def _feed_plain(self, text: str) -> None:
        """Fast path for text with newlines but no other control characters."""
        first = text.find("\n")
        if first < 0:
            self._write(text)
            return
        self._write(text[:first])
        count = text.count("\n")  # the new lines
        if self._row < len(self._active) - 1 or count < _WINDOW:
            for piece in text[first + 1 :].split("\n"):
                self._newline()
                self._write(piece)
            return
        # Many new lines at the bottom: lines that would be frozen at once skip the cells, and are
        # kept as one block of text (never split into lines at all).
        self._mark(self._row, len(self._active[self._row].cells))
        rest = text[first + 1 :]
        direct = len(self._active) + count - _WINDOW
        while self._active and direct > 0:
            self._freeze_first()
            direct -= 1
        end = len(rest)
        for _ in range(count - direct):  # the lines that stay editable are the last ones
            end = rest.rfind("\n", 0, end)
        if direct > 0:
            block = rest[:end]
            self._frozen.append(block)
            self._frozen_len += len(block) + 1
        keep = rest[end + 1 :].split("\n") if direct > 0 else rest.split("\n")
        self._active.extend(_Line(list(piece)) for piece in keep)
        self._row = len(self._active) - 1
        self._col = len(keep[-1])

    def _escape(self, esc: str, params: str | None, final: str | None) -> None:
        line = self._active[self._row]
        if final is None:  # not CSI: keep verbatim
            self._keep_escape(esc)
            return
        n = int(params) if params and params.isdigit() else None
        if final == "m" or (params and not params.replace(";", "").isdigit()):
            self._keep_escape(esc)  # colours, private modes like ESC[?25l
        elif final == "K":
            self._erase_line(n or 0)
        elif final == "A":
            self._row = max(0, self._row - (n or 1))
        elif final == "B":
            self._row = min(len(self._active) - 1, self._row + (n or 1))
        elif final == "C":
            self._col += n or 1
        elif final == "D":
            self._col = max(0, min(self._col, len(line.cells)) - (n or 1))
        elif final == "G":
            self._col = max(0, (n or 1) - 1)
        elif final == "F":
            self._row, self._col = max(0, self._row - (n or 1)), 0
        elif final == "E":
            self._row, self._col = min(len(self._active) - 1, self._row + (n or 1)), 0
        else:
            self._keep_escape(esc)

    def _keep_escape(self, esc: str) -> None:
        line = self._active[self._row]
        if self._col >= len(line.cells):
            self._mark(self._row, len(line.cells))
            line.tail = _add_escape(line.tail, esc)
        else:
            self._mark(self._row, self._col)
            cell = line.cells[self._col]
            line.cells[self._col] = _add_escape(cell[:-1], esc) + cell[-1]

    def _erase_line(self, mode: int) -> None:
        line = self._active[self._row]
        cells = line.cells
        col = min(self._col, len(cells))
        if mode == 0:  # cursor to end
            self._mark(self._row, col)
            del cells[col:]
        elif mode == 1:  # start to cursor
            self._mark(self._row, 0)
            end = min(col + 1, len(cells))
            cells[:end] = [c[:-1] + " " for c in cells[:end]]
        else:  # whole line; the cursor column stays
            self._mark(self._row, 0)
            cells[:] = [" "] * col
