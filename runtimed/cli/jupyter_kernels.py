"""Standalone Jupyter kernels: connection files in the Jupyter runtime directory, probed by heartbeat.

Only the standard library, jupyter_core and pyzmq: no jupyter_client (whose package import
pulls in the kernel manager), so ``runt ps`` stays quick.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

PORT_NAMES = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")


@dataclass
class KernelFile:
    id: str  # the part of kernel-<id>.json
    connection_file: str
    kernel_name: str
    transport: str
    ip: str
    ports: dict[str, int]
    mtime: float
    status: str = "unknown"  # alive | unresponsive | unreadable
    pid: int | None = None
    parent_pid: int | None = None
    language: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def endpoint(self, port_name: str) -> str:
        port = self.ports.get(port_name)
        if self.transport == "ipc":
            return f"ipc://{self.ip}-{port}"
        return f"{self.transport}://{self.ip}:{port}"

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("extra")
        return d


def runtime_dir() -> Path:
    from jupyter_core.paths import jupyter_runtime_dir

    return Path(jupyter_runtime_dir())


def read_connection_file(path: Path) -> KernelFile:
    stem = path.stem
    kernel_id = stem[len("kernel-"):] if stem.startswith("kernel-") else stem
    try:
        mtime = path.stat().st_mtime
    except OSError:
        mtime = 0.0
    try:
        info = json.loads(path.read_text())
        if not isinstance(info, dict):
            raise ValueError("not an object")
    except (OSError, ValueError):
        return KernelFile(kernel_id, str(path), "", "", "", {}, mtime, status="unreadable")
    ports = {name: int(info[name]) for name in PORT_NAMES if isinstance(info.get(name), int)}
    return KernelFile(kernel_id, str(path), str(info.get("kernel_name") or ""), str(info.get("transport") or "tcp"),
                      str(info.get("ip") or "127.0.0.1"), ports, mtime)


def list_connection_files(directory: Path | None = None) -> list[KernelFile]:
    directory = directory or runtime_dir()
    try:
        paths = sorted(directory.glob("kernel-*.json"), key=lambda p: p.stat().st_mtime)
    except OSError:
        return []
    return [read_connection_file(p) for p in paths if p.is_file()]


def probe(kernels: list[KernelFile], timeout: float = 1.0) -> None:
    """Set each kernel's status: ``alive`` when it answers a heartbeat ping within ``timeout``."""
    candidates = [k for k in kernels if k.status != "unreadable"]
    if not candidates:
        return
    import zmq

    ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
    sockets: dict[Any, KernelFile] = {}
    poller = zmq.Poller()
    try:
        for k in candidates:
            if "hb_port" not in k.ports:
                k.status = "unresponsive"
                continue
            if k.transport == "ipc" and not os.path.exists(f"{k.ip}-{k.ports['hb_port']}"):
                k.status = "unresponsive"  # its socket file is gone: the kernel is too
                continue
            sock = ctx.socket(zmq.REQ)
            sock.linger = 0
            try:
                sock.connect(k.endpoint("hb_port"))
                sock.send(b"ping", zmq.NOBLOCK)
            except zmq.ZMQError:
                sock.close()
                k.status = "unresponsive"
                continue
            sockets[sock] = k
            poller.register(sock, zmq.POLLIN)
        import time

        deadline = time.monotonic() + timeout
        waiting = set(sockets)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            for sock, _ in poller.poll(int(left * 1000)):
                if sock in waiting:
                    sock.recv()
                    sockets[sock].status = "alive"
                    waiting.discard(sock)
                    poller.unregister(sock)
        for sock in waiting:
            sockets[sock].status = "unresponsive"
    finally:
        for sock in sockets:
            sock.close(0)


def _process_table() -> dict[str, tuple[int, int]]:
    """Map each connection file named on a process's command line to (pid, parent pid) — Linux/macOS."""
    found: dict[str, tuple[int, int]] = {}
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        for proc in psutil.process_iter(["pid", "ppid", "cmdline"]):
            for arg in proc.info.get("cmdline") or ():
                if arg.endswith(".json") and "kernel-" in arg:
                    found[os.path.realpath(arg)] = (proc.info["pid"], proc.info["ppid"])
        return found
    proc_dir = Path("/proc")
    if not proc_dir.is_dir():
        return found
    for entry in proc_dir.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        for raw in args:
            if raw.endswith(b".json") and b"kernel-" in raw:
                ppid = int(stat.rpartition(")")[2].split()[1])
                found[os.path.realpath(raw.decode(errors="replace"))] = (int(entry.name), ppid)
    return found


def attach_processes(kernels: list[KernelFile]) -> None:
    table = _process_table()
    for k in kernels:
        hit = table.get(os.path.realpath(k.connection_file))
        if hit is not None:
            k.pid, k.parent_pid = hit


def kernel_languages() -> dict[str, str]:
    """Installed kernelspec name -> language, read from kernel.json files (no jupyter_client import)."""
    from jupyter_core.paths import jupyter_path

    out: dict[str, str] = {}
    for directory in reversed(jupyter_path("kernels")):
        base = Path(directory)
        if not base.is_dir():
            continue
        for spec in base.glob("*/kernel.json"):
            try:
                out[spec.parent.name.lower()] = str(json.loads(spec.read_text()).get("language") or "")
            except (OSError, ValueError):
                continue
    out.setdefault("python3", "python")
    return out


def discover(timeout: float = 1.0) -> list[KernelFile]:
    kernels = list_connection_files()
    probe(kernels, timeout)
    attach_processes(kernels)
    languages = kernel_languages()
    for k in kernels:
        k.language = languages.get(k.kernel_name.lower(), "")
    return kernels


def remove(kernel: KernelFile) -> list[str]:
    """Delete a connection file and, for IPC kernels, its leftover socket files."""
    removed = []
    paths = [kernel.connection_file]
    if kernel.transport == "ipc" and kernel.ip:
        paths += [f"{kernel.ip}-{port}" for port in kernel.ports.values()]
    for path in paths:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


if __name__ == "__main__":  # a quick look: python -m runtimed.cli.jupyter_kernels
    for k in discover():
        print(k.id, k.kernel_name, k.status, k.pid, k.connection_file, file=sys.stdout)
