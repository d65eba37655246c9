"""Artifact references in output events: their shape, and the value <-> bytes mapping.

An output MIME value too large for the log is stored as an artifact and the event's ``data``
holds ``{"artifact": sha256, "size": n, "mime": ..., "encoding"?: "base64", "preview"?: ...}``
instead. The bytes are what a reader wants to fetch: an image's decoded bytes (so
``<img src=/api/artifacts/sha>`` works), text as UTF-8, a JSON value as JSON. ``encoding`` says
how to turn the bytes back into the exact nbformat value (base64 again, byte-identical: it is
only used when re-encoding gives back the original string). Pure functions: the runtime,
formats, clients and the server share them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Iterator
from typing import Any

from runtimed.settings import env_number

SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_THRESHOLD = 64 * 1024
"""MIME values larger than this (bytes) go to the artifact store (``RUNTIMED_ARTIFACT_THRESHOLD``)."""
PREVIEW_CHARS = 2000
"""Characters of a long text kept in the event as its preview (its head)."""
OUTPUT_EVENTS = frozenset({"outputAdded", "displayUpdated", "streamTailSet"})
"""The events whose ``data`` may hold artifact references."""
COMM_EVENTS = frozenset({"commOpened", "commStateChanged", "commCustomMessage", "commUpdateRequested"})
"""The widget events whose ``buffers`` may hold artifact references (large binary buffers)."""


def threshold_setting() -> int:
    return env_number("RUNTIMED_ARTIFACT_THRESHOLD", DEFAULT_THRESHOLD, int)


def is_ref(value: Any) -> bool:
    return (isinstance(value, dict) and isinstance(value.get("artifact"), str)
            and SHA256.match(value["artifact"]) is not None and isinstance(value.get("size"), int))


def is_json_mime(mime: str) -> bool:
    return mime == "application/json" or (mime.startswith("application/") and mime.endswith("+json"))


def _is_binary_mime(mime: str) -> bool:
    return (mime.startswith("image/") and mime != "image/svg+xml") or mime in ("application/pdf",)


def to_bytes(mime: str, value: Any) -> tuple[bytes, str | None, str]:
    """A MIME value as artifact bytes, the ``encoding`` that restores it, and the content type to serve."""
    if is_json_mime(mime) and not isinstance(value, str):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode(), None, "application/json"
    if isinstance(value, list):  # nbformat's multiline strings
        value = "".join(str(v) for v in value)
    text = value if isinstance(value, str) else json.dumps(value)
    if _is_binary_mime(mime):
        try:
            raw = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raw = None
        if raw is not None and base64.b64encode(raw).decode() == text:
            return raw, "base64", mime
    kind = mime if mime.startswith("text/") or mime == "image/svg+xml" else "text/plain"
    return text.encode(), None, f"{kind}; charset=utf-8"


def from_bytes(mime: str, data: bytes, ref: dict[str, Any]) -> Any:
    """The exact MIME value an artifact's bytes were made from (``to_bytes`` reversed)."""
    if ref.get("encoding") == "base64":
        return base64.b64encode(data).decode()
    if is_json_mime(mime) and ref.get("kind") != "text":
        try:
            return json.loads(data)
        except ValueError:
            return data.decode("utf-8")
    return data.decode("utf-8")


def offload(data: dict[str, Any], threshold: int) -> tuple[dict[str, Any], list[tuple[str, bytes, str]]]:
    """``data`` with each value over ``threshold`` bytes replaced by a reference, and the artifacts to store
    (sha, bytes, content type). Values already referenced are left alone."""
    out: dict[str, Any] = {}
    blobs: list[tuple[str, bytes, str]] = []
    for mime, value in data.items():
        if is_ref(value) or (_is_text(value) and _text_size(value) <= threshold):
            out[mime] = value
            continue
        raw, encoding, content_type = to_bytes(mime, value)  # a JSON value is measured by encoding it once
        if len(raw) <= threshold:
            out[mime] = value
            continue
        sha = hashlib.sha256(raw).hexdigest()
        ref: dict[str, Any] = {"artifact": sha, "size": len(raw), "mime": mime}
        if encoding:
            ref["encoding"] = encoding
        if is_json_mime(mime) and isinstance(value, str):
            ref["kind"] = "text"  # a JSON MIME value that was a string stays a string
        if content_type.startswith("text/") and encoding is None:
            ref["preview"] = raw[: PREVIEW_CHARS * 4].decode("utf-8", "ignore")[:PREVIEW_CHARS]
        out[mime] = ref
        blobs.append((sha, raw, content_type))
    return out, blobs


def _is_text(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list) and all(isinstance(v, str) for v in value))


def _text_size(value: str | list[str]) -> int:
    """A lower bound of a text's size in bytes that costs nothing (its characters)."""
    return len(value) if isinstance(value, str) else sum(len(v) for v in value)


def refs_in(data: Any) -> Iterator[dict[str, Any]]:
    """The artifact references in an output's ``data``."""
    if isinstance(data, dict):
        for value in data.values():
            if is_ref(value):
                yield value


def event_refs(event: Any) -> list[dict[str, Any]]:
    """The artifact references an output event (wire form) carries."""
    if not isinstance(event, dict) or event.get("name") not in OUTPUT_EVENTS | COMM_EVENTS:
        return []
    args = event.get("args")
    if event["name"] in COMM_EVENTS:
        buffers = args.get("buffers") if isinstance(args, dict) else None
        return [b for b in buffers or () if is_ref(b)]
    return list(refs_in(args.get("data"))) if isinstance(args, dict) else []


def spilled_ref(output: Any) -> dict[str, Any] | None:
    """The artifact holding a spilled stream output's omitted text (``streamTailSet``), if it is stored."""
    if not isinstance(output, dict) or output.get("output_type") != "stream":
        return None
    value = (output.get("data") or {}).get("text/plain") if isinstance(output.get("data"), dict) else None
    return value if is_ref(value) else None


def omitted_note(output: dict[str, Any]) -> str:
    """What stands for a spilled stream's omitted text not (yet) stored: the stream is still running, or was cut."""
    return f"[… {output.get('omitted', 0):,} characters omitted …]\n" if output.get("omitted") else ""


def stream_text(output: dict[str, Any], fetch: Any = None) -> str:
    """A stream output's whole text: a spilled one's artifact (``fetch(sha) -> bytes``) + its tail. Without
    ``fetch`` (or while the omitted text is not stored yet) a note stands for what is omitted."""
    ref = spilled_ref(output)
    tail = output.get("text") or ""
    if ref is not None and fetch is not None:
        return str(from_bytes("text/plain", fetch(ref["artifact"]), ref)) + tail
    return omitted_note(output) + tail
