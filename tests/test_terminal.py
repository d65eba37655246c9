"""StreamTerminal: terminal-like rendering of stream text and cheap change tracking."""

from __future__ import annotations

import time

from hypothesis import given, settings
from hypothesis import strategies as st

from runtimed.runtime.terminal import StreamTerminal

RED, RESET = "\x1b[31m", "\x1b[0m"


def render(*chunks: str) -> str:
    term = StreamTerminal()
    for chunk in chunks:
        term.feed(chunk)
    return term.text


def reference(text: str) -> str:
    """Naive char-by-char terminal for plain text with \\r, \\n, \\b."""
    lines: list[list[str]] = [[]]
    col = 0
    for ch in text:
        line = lines[-1]
        if ch == "\n":
            lines.append([])
            col = 0
        elif ch == "\r":
            col = 0
        elif ch == "\b":
            col = max(0, col - 1)
        else:
            if col < len(line):
                line[col] = ch
            else:
                line.append(ch)
            col += 1
    return "\n".join("".join(line) for line in lines)


def test_carriage_return_overwrites_in_place() -> None:
    assert render("hello\rJ") == "Jello"
    assert render("hello", "\r", "HEY") == "HEYlo"
    assert render("abc\r\rxy\n") == "xyc\n"


def test_crlf_is_a_plain_newline() -> None:
    assert render("a\r\nb\r\n") == "a\nb\n"
    assert render("a\r", "\nb") == "a\nb"


def test_backspace_moves_left_not_past_line_start() -> None:
    assert render("abc\b\bX") == "aXc"
    assert render("ab\b\b\b\bZ") == "Zb"
    assert render("x\ny\bZ") == "x\nZ"


def test_ansi_colours_are_kept_and_take_no_column() -> None:
    assert render(f"{RED}red{RESET} plain") == f"{RED}red{RESET} plain"
    # The overwrite counts visible columns only; the colour stays on its column.
    assert render(f"{RED}abc{RESET}\rX") == f"{RED}Xbc{RESET}"
    # An escape split across two feeds is reassembled.
    assert render("a\x1b[3", "1mb") == f"a{RED}b"


def test_erase_line_sequences() -> None:
    assert render("hello world\r\x1b[2Kbye") == "bye"
    assert render("hello world\rhey\x1b[K") == "hey"
    assert render("one\ntwo\x1b[A\rONE") == "ONE\ntwo"


def test_other_controls_are_dropped() -> None:
    assert render("a\x07b\x00c") == "abc"


def progress_bar(steps: int) -> list[str]:
    return [f"\r{i * 100 // steps:3d}%|{'#' * (i * 20 // steps):<20}| {i}/{steps}" for i in range(steps + 1)]


def check_bar(steps: int) -> None:
    term = StreamTerminal()
    term.feed("start\n")
    text = ""
    total_tail = 0
    for i, chunk in enumerate(progress_bar(steps), start=1):
        term.feed(chunk)
        if i % 100 == 0:
            change = term.take_change()
            if change is not None:
                offset, tail = change
                text = text[:offset] + tail
                total_tail += len(tail)
    term.feed("\n")
    offset, tail = term.take_change() or (len(text), "")
    text = text[:offset] + tail
    final = f"100%|{'#' * 20}| {steps}/{steps}"
    assert term.text == f"start\n{final}\n"
    assert text == term.text
    assert total_tail <= 60 * (steps // 100 + 1) + 10


def test_progress_bar_100_steps_ends_as_final_line() -> None:
    check_bar(100)


def test_progress_bar_10000_steps_stays_small() -> None:
    check_bar(10_000)


def test_take_change_reports_only_the_changed_tail() -> None:
    term = StreamTerminal()
    assert term.take_change() is None
    term.feed("line one\nline two\n")
    assert term.take_change() == (0, "line one\nline two\n")
    assert term.take_change() is None
    term.feed("50%")
    assert term.take_change() == (18, "50%")
    term.feed("\r99%")
    assert term.take_change() == (18, "99%")


def test_200k_lines_are_fast() -> None:
    """CPU time, not wall time, so other load on the machine does not fail it."""
    term = StreamTerminal()
    chunk = "".join(f"line {i}\n" for i in range(1000))
    start = time.process_time()
    for _ in range(200):
        term.feed(chunk)
        term.take_change()
    elapsed = time.process_time() - start
    assert term.text.count("\n") == 200_000
    assert elapsed < 0.5, elapsed


def test_many_small_writes_are_fast() -> None:
    term = StreamTerminal()
    start = time.process_time()
    for i in range(200_000):
        term.feed(f"line {i}\n")
        if i % 100 == 0:
            term.take_change()
    elapsed = time.process_time() - start
    assert elapsed < 1.5, elapsed


ALPHABET = st.sampled_from(
    ["a", "b", "xyz", "\r", "\n", "\b", "\r\n", RED, RESET, "\x1b[K", "\x1b[2K", "\x1b[A", "c\n" * 10]
)
PLAIN = st.sampled_from(["a", "b", "xyz", "\r", "\n", "\b", "\r\n", "\t"])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(ALPHABET, max_size=12).map("".join), max_size=30), st.data())
def test_changes_reconstruct_text(chunks: list[str], data: st.DataObject) -> None:
    term = StreamTerminal()
    mirror = ""
    for chunk in chunks:
        term.feed(chunk)
        if data.draw(st.booleans()):
            change = term.take_change()
            if change is None:
                assert mirror == term.text
            else:
                offset, tail = change
                assert 0 <= offset <= len(mirror)
                mirror = mirror[:offset] + tail
                assert mirror == term.text
    change = term.take_change()
    if change is not None:
        mirror = mirror[: change[0]] + change[1]
    assert mirror == term.text


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(PLAIN, max_size=12).map("".join), max_size=30))
def test_plain_text_matches_naive_terminal(chunks: list[str]) -> None:
    assert render(*chunks) == reference("".join(chunks))


@given(st.lists(st.sampled_from(["line\n", "\n", "a" * 3, "b\n" * 20, "\r", "c\x1b[A"]), max_size=40))
def test_bulk_newlines_match_slow_path(chunks: list[str]) -> None:
    """Feeding whole chunks (fast path) equals feeding one character at a time."""
    joined = "".join(chunks)
    assert render(*chunks) == render(*joined)


def test_long_line_growing_in_chunks_is_fast() -> None:
    """Takes on a 1 MB line that only grows must not re-measure the whole line."""
    term = StreamTerminal()
    mirror = ""
    start = time.process_time()
    for _ in range(1000):
        term.feed("." * 1000)
        offset, tail = term.take_change() or (0, "")
        assert offset == len(mirror) and len(tail) == 1000
        mirror += tail
    term.feed("\n")
    for i in range(1000):
        term.feed(f"\r{i}%")
        term.take_change()
    assert time.process_time() - start < 1.0
    assert term.text == "." * 1_000_000 + "\n999%"
