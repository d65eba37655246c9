"""The artifact store: large output values kept beside the log, addressed by their sha256.

Events stay small: a MIME value above the offload threshold is written here and the event
carries ``{"artifact": sha256, "size": n, ...}``. The store is content-addressed, so the same
value written twice is stored once, and a name is only ever bound to its own bytes (every write
is hashed and checked against the name it is stored under).

Writes are atomic: bytes go to a temporary file and are renamed into place only once complete and
verified, so a crash mid-write leaves at most a stray temporary file (swept by ``collect``) and
never a half artifact under a real name. ``LocalArtifactStore`` is a directory
(``$RUNTIMED_HOME/artifacts`` by default); ``FsspecArtifactStore`` is any fsspec URL
(``RUNTIMED_ARTIFACTS_URL``: a shared directory, ``s3://…``), so several daemons can share one.
Layout in both: ``<sha[:2]>/<sha>`` (the bytes) and ``<sha[:2]>/<sha>.type`` (its content type,
written first), temporary files under ``tmp/``.
"""

from __future__ import annotations

import abc
import contextlib
import hashlib
import os
import re
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol

from runtimed.errors import NotFoundError, RuntimedError

SHA256 = re.compile(r"^[0-9a-f]{64}$")
DEFAULT_MAX_TOTAL_BYTES = 50 * 1024**3
"""Global quota of a store (``RUNTIMED_ARTIFACTS_MAX_BYTES``)."""
DEFAULT_CONTENT_TYPE = "application/octet-stream"


def check_sha(sha: str) -> str:
    """``sha`` if it is a lowercase hex sha256; a clear error otherwise (it becomes a file name)."""
    if not isinstance(sha, str) or not SHA256.match(sha):
        raise RuntimedError(f"{str(sha)[:80]!r} is not an artifact id: expected 64 lowercase hex digits (a sha256)",
                            code="invalid_artifact")
    return sha


def artifact_missing(sha: str) -> NotFoundError:
    return NotFoundError(f"artifact {sha} is not in the artifact store (it was never uploaded, or was collected)",
                         code="artifact_not_found")


@dataclass(frozen=True)
class ArtifactInfo:
    sha: str
    size: int
    mtime: float
    """When it was last written (or written again: a deduplicated write refreshes it)."""


class ArtifactStore(Protocol):
    """What the daemon, runtimes and exporters need from an artifact store."""

    max_total_bytes: int

    def has(self, sha: str) -> bool: ...

    def info(self, sha: str) -> ArtifactInfo | None: ...

    def content_type(self, sha: str) -> str: ...

    def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE, *, sha: str | None = None) -> str:
        """Store ``data`` (checked against ``sha`` when given); its sha256."""

    def writer(self, sha: str, content_type: str = DEFAULT_CONTENT_TYPE) -> contextlib.AbstractContextManager[IO[bytes]]:
        """A file to stream an artifact's bytes into; committed (hash checked) when the block ends without error."""

    def open(self, sha: str) -> IO[bytes]: ...

    def read(self, sha: str) -> bytes: ...

    def list(self) -> Iterator[ArtifactInfo]: ...

    def delete(self, sha: str) -> bool: ...

    def total_bytes(self) -> int: ...

    def sweep_temporary(self, older_than: float) -> int:
        """Remove temporary files of writes that never finished (a crash); how many."""


class _HashingFile:
    """A write-only file that hashes and counts what goes through it."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.hash = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.hash.update(data)
        self.size += len(data)
        return self.raw.write(data)


class _BaseStore(abc.ABC):
    """The shared logic: verification, quota, dedup; subclasses move bytes and names."""

    max_total_bytes: int
    _total: int | None = None

    # -- what a backend provides -------------------------------------------------------------
    @abc.abstractmethod
    def _tmp_open(self) -> tuple[str, IO[bytes]]:
        ...

    @abc.abstractmethod
    def _commit(self, tmp: str, sha: str, content_type: str) -> None:
        ...

    @abc.abstractmethod
    def _discard(self, tmp: str) -> None:
        ...

    @abc.abstractmethod
    def _touch(self, sha: str) -> None:
        ...

    @abc.abstractmethod
    def info(self, sha: str) -> ArtifactInfo | None:
        ...

    @abc.abstractmethod
    def list(self) -> Iterator[ArtifactInfo]:
        ...

    # -- the contract ------------------------------------------------------------------------
    def has(self, sha: str) -> bool:
        return self.info(check_sha(sha)) is not None

    def total_bytes(self) -> int:
        if self._total is None:
            self._total = sum(item.size for item in self.list())
        return self._total

    def put(self, data: bytes, content_type: str = DEFAULT_CONTENT_TYPE, *, sha: str | None = None) -> str:
        sha = sha or hashlib.sha256(data).hexdigest()
        with self.writer(sha, content_type) as f:
            f.write(data)
        return sha

    @contextlib.contextmanager
    def writer(self, sha: str, content_type: str = DEFAULT_CONTENT_TYPE) -> Iterator[IO[bytes]]:
        check_sha(sha)
        tmp, raw = self._tmp_open()
        hashing = _HashingFile(raw)
        committed = False
        try:
            try:
                yield hashing  # type: ignore[misc]
            finally:
                raw.close()
            got = hashing.hash.hexdigest()
            if got != sha:
                raise RuntimedError(f"the bytes sent for artifact {sha} hash to {got}: an artifact is named by the "
                                    "sha256 of its exact bytes; send them again", code="artifact_mismatch")
            if self.info(sha) is not None:  # already stored (dedup): keep it, and keep it from a sweep for a while
                self._touch(sha)
                return
            total = self.total_bytes()
            if total + hashing.size > self.max_total_bytes:
                raise RuntimedError(
                    f"the artifact store holds {total:,} bytes; {hashing.size:,} more would pass its quota of "
                    f"{self.max_total_bytes:,} bytes: delete notebooks and run `runt gc --artifacts`, or raise "
                    "RUNTIMED_ARTIFACTS_MAX_BYTES", code="artifact_quota")
            self._commit(tmp, sha, content_type)
            committed = True
            if self._total is not None:
                self._total += hashing.size
        finally:
            if not committed:
                self._discard(tmp)

    def read(self, sha: str) -> bytes:
        with self.open(sha) as f:  # type: ignore[attr-defined]
            data: bytes = f.read()
            return data

    def _forget(self, size: int) -> None:
        if self._total is not None:
            self._total = max(0, self._total - size)


class LocalArtifactStore(_BaseStore):
    """Artifacts as files in a local directory (renames are atomic within it; files are fsynced first)."""

    def __init__(self, root: Path | str, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES) -> None:
        self.root = Path(root)
        self.tmp = self.root / "tmp"
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.max_total_bytes = max_total_bytes

    def path(self, sha: str) -> Path:
        return self.root / sha[:2] / sha

    def _tmp_open(self) -> tuple[str, IO[bytes]]:
        name = str(self.tmp / uuid.uuid4().hex)
        return name, open(name, "xb")  # noqa: SIM115 - closed by writer()

    def _commit(self, tmp: str, sha: str, content_type: str) -> None:
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        final = self.path(sha)
        final.parent.mkdir(exist_ok=True)
        type_tmp = self.tmp / f"{uuid.uuid4().hex}.type"
        type_tmp.write_text(content_type)
        os.replace(type_tmp, final.with_name(f"{sha}.type"))  # the type first: a blob always has its type
        os.replace(tmp, final)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)

    def _touch(self, sha: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.utime(self.path(sha))

    def info(self, sha: str) -> ArtifactInfo | None:
        try:
            st = self.path(check_sha(sha)).stat()
        except FileNotFoundError:
            return None
        return ArtifactInfo(sha, st.st_size, st.st_mtime)

    def content_type(self, sha: str) -> str:
        try:
            return self.path(check_sha(sha)).with_name(f"{sha}.type").read_text() or DEFAULT_CONTENT_TYPE
        except FileNotFoundError:
            return DEFAULT_CONTENT_TYPE

    def open(self, sha: str) -> IO[bytes]:
        try:
            return open(self.path(check_sha(sha)), "rb")  # noqa: SIM115 - the caller closes it
        except FileNotFoundError:
            raise artifact_missing(sha) from None

    def list(self) -> Iterator[ArtifactInfo]:
        for folder in self.root.iterdir():
            if len(folder.name) != 2 or not folder.is_dir():
                continue
            for entry in os.scandir(folder):
                if SHA256.match(entry.name):
                    with contextlib.suppress(FileNotFoundError):
                        st = entry.stat()
                        yield ArtifactInfo(entry.name, st.st_size, st.st_mtime)

    def delete(self, sha: str) -> bool:
        found = self.info(sha)
        if found is None:
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(sha))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path(sha).with_name(f"{sha}.type"))
        self._forget(found.size)
        return True

    def sweep_temporary(self, older_than: float) -> int:
        removed = 0
        cutoff = time.time() - older_than
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
        return removed


class FsspecArtifactStore(_BaseStore):
    """Artifacts under any fsspec URL. A temporary object is moved into place once complete: on a filesystem
    that is a rename, on object storage a server-side copy (objects appear whole either way)."""

    def __init__(self, url: str, *, max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES, **options: Any) -> None:
        import fsspec

        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **options)
        self.root = root.rstrip("/")
        self.fs.makedirs(f"{self.root}/tmp", exist_ok=True)
        self.max_total_bytes = max_total_bytes

    def _path(self, sha: str) -> str:
        return f"{self.root}/{sha[:2]}/{sha}"

    def _tmp_open(self) -> tuple[str, IO[bytes]]:
        name = f"{self.root}/tmp/{uuid.uuid4().hex}"
        return name, self.fs.open(name, "wb")

    def _commit(self, tmp: str, sha: str, content_type: str) -> None:
        final = self._path(sha)
        self.fs.makedirs(f"{self.root}/{sha[:2]}", exist_ok=True)
        self.fs.pipe_file(f"{final}.type", content_type.encode())
        self.fs.mv(tmp, final)

    def _discard(self, tmp: str) -> None:
        with contextlib.suppress(FileNotFoundError, OSError):
            self.fs.rm_file(tmp)

    def _touch(self, sha: str) -> None:
        with contextlib.suppress(NotImplementedError, OSError):
            self.fs.touch(self._path(sha), truncate=False)

    def _mtime(self, entry: dict[str, Any]) -> float:
        value = entry.get("mtime") or entry.get("LastModified") or entry.get("created") or 0
        return value.timestamp() if hasattr(value, "timestamp") else float(value)

    def info(self, sha: str) -> ArtifactInfo | None:
        try:
            entry = self.fs.info(self._path(check_sha(sha)))
        except FileNotFoundError:
            return None
        return ArtifactInfo(sha, int(entry["size"]), self._mtime(entry))

    def content_type(self, sha: str) -> str:
        try:
            return bytes(self.fs.cat_file(f"{self._path(check_sha(sha))}.type")).decode() or DEFAULT_CONTENT_TYPE
        except FileNotFoundError:
            return DEFAULT_CONTENT_TYPE

    def open(self, sha: str) -> IO[bytes]:
        try:
            f: IO[bytes] = self.fs.open(self._path(check_sha(sha)), "rb")
            return f
        except FileNotFoundError:
            raise artifact_missing(sha) from None

    def list(self) -> Iterator[ArtifactInfo]:
        for entry in self.fs.find(self.root, detail=True, withdirs=False).values():
            name = entry["name"].rsplit("/", 1)[-1]
            if SHA256.match(name) and not entry["name"].startswith(f"{self.root}/tmp/"):
                yield ArtifactInfo(name, int(entry["size"]), self._mtime(entry))

    def delete(self, sha: str) -> bool:
        found = self.info(sha)
        if found is None:
            return False
        for name in (self._path(sha), f"{self._path(sha)}.type"):
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm_file(name)
        self._forget(found.size)
        return True

    def sweep_temporary(self, older_than: float) -> int:
        removed = 0
        cutoff = time.time() - older_than
        for entry in self.fs.ls(f"{self.root}/tmp", detail=True):
            if self._mtime(entry) < cutoff:
                with contextlib.suppress(FileNotFoundError):
                    self.fs.rm_file(entry["name"])
                    removed += 1
        return removed


def _bytes_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise RuntimedError(f"{name}={raw!r} is not a number of bytes", code="invalid_request") from None
    if value <= 0:
        raise RuntimedError(f"{name} must be a positive number of bytes, not {value}", code="invalid_request")
    return value


def open_artifact_store(default_dir: Path, url: str | None = None) -> ArtifactStore:
    """The store named by ``url`` (or ``RUNTIMED_ARTIFACTS_URL``), else the local directory ``default_dir``."""
    url = url if url is not None else os.environ.get("RUNTIMED_ARTIFACTS_URL", "").strip()
    quota = _bytes_setting("RUNTIMED_ARTIFACTS_MAX_BYTES", DEFAULT_MAX_TOTAL_BYTES)
    if not url:
        return LocalArtifactStore(default_dir, max_total_bytes=quota)
    if url.startswith("file://"):
        return LocalArtifactStore(Path(url[len("file://"):]), max_total_bytes=quota)
    return FsspecArtifactStore(url, max_total_bytes=quota)
