"""Cells and outputs as content a model can read: text, images, errors without ANSI codes.

Long texts come back as head and tail with the total size and how to read the rest
(``output_offset`` / ``full_output``), so one huge output never floods an agent's context.
Everything here is plain data in, plain parts out: no MCP types (AI cells reuse it).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any

HEAD_CHARS = 4000
TAIL_CHARS = 2000
PAGE_CHARS = 50_000
"""One page of an output read with ``output_offset`` or ``full_output``."""
MAX_IMAGE_CHARS = 2_000_000
"""Base64 characters of one image sent inline; larger images are described, not sent."""
MAX_IMAGES = 8
NOTEBOOK_BUDGET = 100_000
"""Characters of a whole-notebook read before the remaining cells are listed without content."""
IMAGE_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


@dataclass(frozen=True)
class TextPart:
    text: str


@dataclass(frozen=True)
class ImagePart:
    data: str
    """Base64 of the image bytes."""
    mime_type: str


Part = TextPart | ImagePart


@dataclass(frozen=True)
class Paging:
    """How to show long output texts: head and tail (default), or a page from ``offset``."""

    full: bool = False
    offset: int = 0

    @property
    def paged(self) -> bool:
        return self.full or self.offset > 0


def revision(source: str) -> str:
    """A cell's revision: 12 hex digits of the SHA-256 of its source (the same on every replica)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:12]


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


class _TextOfHtml(HTMLParser):
    BLOCKS = {"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "pre", "hr", "section"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in ("script", "style"):
            self.skip += 1
        elif tag in self.BLOCKS:
            self.parts.append("\n")
        elif tag in ("td", "th"):
            self.parts.append("\t")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style"):
            self.skip = max(0, self.skip - 1)
        elif tag in self.BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """The readable text of an HTML output (tables become tab-separated lines; scripts are dropped)."""
    parser = _TextOfHtml()
    parser.feed(html)
    parser.close()
    lines = [re.sub(r"[ \t]*\t[ \t]*", "\t", re.sub(r" {2,}", " ", line)).strip() for line in "".join(parser.parts).splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def clip(text: str, paging: Paging, more: str) -> str:
    """``text`` as head + tail with a note on how to read the rest, or one page of it."""
    total = len(text)
    if paging.paged:
        start = min(paging.offset, total)
        end = min(total, start + PAGE_CHARS)
        page = text[start:end]
        if start == 0 and end == total:
            return page
        note = f"[characters {start:,}-{end:,} of {total:,}"
        note += f"; read on with output_offset={end}]" if end < total else "; end]"
        return f"{note}\n{page}" if end == total else f"{page}\n{note}"
    if total <= HEAD_CHARS + TAIL_CHARS:
        return text
    omitted = total - HEAD_CHARS - TAIL_CHARS
    return (f"{text[:HEAD_CHARS]}\n[… {omitted:,} of {total:,} characters omitted; read them with "
            f"{more} output_offset={HEAD_CHARS} (pages of {PAGE_CHARS:,}) or full_output=true]\n{text[-TAIL_CHARS:]}")


def _joined(value: Any) -> str:
    if isinstance(value, list):
        return "".join(str(v) for v in value)
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)


def _is_artifact(value: Any) -> bool:
    return isinstance(value, dict) and "artifact" in value and "size" in value


def _spilled_note(output: dict[str, Any]) -> str:
    """What a spilled stream (past the stream cap) says about the text between its head and its tail."""
    ref = (output.get("data") or {}).get("text/plain")
    omitted = f"[… {output['omitted']:,} characters after the output above and before this tail"
    if ref is None or not _is_artifact(ref):
        return omitted + " are not in the log (the stream is still running: they are stored when it ends)]"
    return (f"{omitted} are stored as artifact {ref['artifact']} ({ref['size']:,} bytes): read them with "
            f"read_artifact sha={ref['artifact']} offset=N length=M]")


def _artifact_text(mime: str, ref: dict[str, Any]) -> str:
    """A text stored as an artifact: its head (the preview in the event) and how to read the rest."""
    head = ref.get("preview") or ""
    return (f"{head}\n[… this {mime} value is {ref['size']:,} bytes, stored as artifact {ref['artifact']}; read it "
            f"with read_artifact sha={ref['artifact']} offset=N length=M (a negative offset counts from the end)]")


def _data_text(data: dict[str, Any]) -> str | None:
    for mime in ("text/markdown", "text/plain"):
        if mime in data and not _is_artifact(data[mime]):
            return _joined(data[mime])
    for mime in ("text/markdown", "text/plain", "text/html", "application/json"):
        if mime in data and _is_artifact(data[mime]):
            return _artifact_text(mime, data[mime])
    if "text/html" in data and not _is_artifact(data["text/html"]):
        return html_to_text(_joined(data["text/html"]))
    for mime, value in data.items():
        if (mime == "application/json" or mime.endswith("+json")) and not _is_artifact(value):
            return json.dumps(value, ensure_ascii=False, indent=1)
    if "text/latex" in data:
        return _joined(data["text/latex"])
    return None


def _image_parts(data: dict[str, Any], budget: list[int]) -> tuple[list[Part], list[str]]:
    parts: list[Part] = []
    notes: list[str] = []
    for mime in IMAGE_TYPES:
        value = data.get(mime)
        if value is None:
            continue
        if _is_artifact(value):
            notes.append(f"({mime} image stored as artifact {value['artifact']}, {value['size']:,} bytes)")
        elif not isinstance(value, str):
            notes.append(f"({mime} image in an unexpected shape)")
        elif len(value) > MAX_IMAGE_CHARS:
            notes.append(f"({mime} image of {len(value) * 3 // 4:,} bytes, too large to send)")
        elif budget[0] <= 0:
            notes.append(f"({mime} image not sent: at most {MAX_IMAGES} images per answer)")
        else:
            budget[0] -= 1
            parts.append(ImagePart("".join(value.split()), mime))
        break  # one image per output: the same picture in several formats is sent once
    return parts, notes


def output_parts(output: dict[str, Any], paging: Paging, more: str, images: list[int] | None = None) -> list[Part]:
    """One output (nbformat-shaped dict) as parts: a labelled text, plus an image when it has one."""
    images = images if images is not None else [MAX_IMAGES]
    kind = output.get("output_type")
    if kind == "stream":
        label = f"[{output.get('name') or 'stream'}]"
        if output.get("omitted"):
            label += "\n" + _spilled_note(output)
        return [TextPart(f"{label}\n{clip(strip_ansi(output.get('text') or ''), paging, more)}")]
    if kind == "error":
        traceback = strip_ansi("\n".join(output.get("traceback") or []))
        head = f"[error] {output.get('ename') or 'Error'}: {strip_ansi(output.get('evalue') or '')}"
        return [TextPart(f"{head}\n{clip(traceback, paging, more)}" if traceback else head)]
    data = output.get("data") or {}
    label = f"[Out[{output['execution_count']}]]" if kind == "execute_result" and output.get("execution_count") else "[display]"
    parts, notes = _image_parts(data, images)
    text = _data_text(data)
    if text is None and not parts and not notes:
        text = f"(output of types {', '.join(sorted(data)) or 'none'}, not shown as text)"
    body = "\n".join(x for x in (clip(strip_ansi(text), paging, more) if text is not None else None, *notes) if x)
    return [TextPart(f"{label}\n{body}" if body else label), *parts]


def output_text(output: dict[str, Any]) -> str:
    """The plain text of an output (for search): stream text, error, or its best text representation."""
    kind = output.get("output_type")
    if kind == "stream":
        return strip_ansi(output.get("text") or "")
    if kind == "error":
        lines = [f"{output.get('ename')}: {output.get('evalue')}", *(output.get("traceback") or [])]
        return strip_ansi("\n".join(lines))
    return strip_ansi(_data_text(output.get("data") or {}) or "")


def cell_header(cell: dict[str, Any]) -> str:
    count = cell.get("execution_count")
    extra = f", execution_count {count}" if count is not None else ""
    execution = cell.get("execution") or {}
    if execution.get("status") and execution["status"] != "success":
        extra += f", last run {execution['status']}"
    return f"## cell {cell['id']} ({cell['cell_type']}, revision {revision(cell.get('source') or '')}{extra})"


def cell_parts(cell: dict[str, Any], paging: Paging, more: str, *, with_outputs: bool = True,
               images: list[int] | None = None) -> list[Part]:
    """A cell: header (id, type, revision), its source, then its outputs."""
    images = images if images is not None else [MAX_IMAGES]
    fence = "```python" if cell["cell_type"] == "code" else "```"
    parts: list[Part] = [TextPart(f"{cell_header(cell)}\n{fence}\n{cell.get('source') or ''}\n```")]
    outputs = cell.get("outputs") or []
    if with_outputs and outputs:
        parts.append(TextPart("outputs:"))
        for output in outputs:
            parts.extend(output_parts(output, paging, more, images))
    return merge_text(parts)


def notebook_parts(view: dict[str, Any], paging: Paging, more: str, *, with_outputs: bool = True,
                   subtitle: str = "") -> list[Part]:
    """A notebook view (``views.notebook_view``-shaped): title, policy, cells in order, within a budget."""
    cells = view.get("cells") or []
    runtime = view.get("runtime") or {}
    kernel = f"kernel {runtime.get('kernel_name')} ({runtime.get('status')})" if runtime else "no kernel running"
    parts: list[Part] = [TextPart(f"# notebook {view.get('id')}: {view.get('title') or '(untitled)'} — "
                                  f"{len(cells)} cells, seq {view.get('head_seq')}, {kernel}"
                                  + (f"\n{subtitle}" if subtitle else ""))]
    used, images = 0, [MAX_IMAGES]
    for i, cell in enumerate(cells):
        if used > NOTEBOOK_BUDGET:
            rest = [f"{c['id']} ({c['cell_type']}, revision {revision(c.get('source') or '')})" for c in cells[i:]]
            parts.append(TextPart(f"[{len(rest)} more cells not shown (answer size bound); read them with get_cell]\n"
                                  + "\n".join(rest)))
            break
        more_cell = more.format(cell_id=cell["id"])
        these = cell_parts(cell, paging, more_cell, with_outputs=with_outputs, images=images)
        used += sum(len(p.text) for p in these if isinstance(p, TextPart))
        parts.extend(these)
    return merge_text(parts)


def merge_text(parts: list[Part]) -> list[Part]:
    """Adjacent text parts joined with newlines (fewer, larger content blocks)."""
    out: list[Part] = []
    for part in parts:
        if isinstance(part, TextPart) and out and isinstance(out[-1], TextPart):
            out[-1] = TextPart(f"{out[-1].text}\n{part.text}")
        else:
            out.append(part)
    return out


def summarize_args(args: dict[str, Any], width: int = 160) -> str:
    """An event's args in one line (a Yjs update shows as its size)."""
    items = []
    for key, value in args.items():
        if key == "update":
            items.append(f"update=<{len(str(value))} chars>")
        else:
            text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
            items.append(f"{key}={text if len(text) <= 60 else text[:59] + '…'}")
    line = " ".join(items).replace("\n", "\\n")
    return line if len(line) <= width else line[: width - 1] + "…"
