"""One Jupyter kernel driven over asyncio.

A thin layer over jupyter_client's ``AsyncKernelManager``/``AsyncKernelClient`` that the
runtime agent uses: one background reader per channel dispatches messages by parent
``msg_id`` (cheaper than a reader per execution and nothing is lost between cells), and
a watchdog turns a vanished kernel process into a prompt ``kernel_died`` reply instead of
a hang.

A request can be sent ahead (``send`` without ``on_output``) and waited for later: the kernel
queues it behind the one it runs, and whatever it answers to it is held back until ``wait``
releases it, so that its outputs follow the completion of the cell before.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import struct
import tempfile
import types
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import AsyncKernelManager
from jupyter_client.session import Session
from jupyter_core.paths import jupyter_runtime_dir

from runtimed.errors import KernelError, RuntimedError
from runtimed.home import user_umask

__all__ = [
    "CaptureCallback",
    "CommCallback",
    "ExecuteReply",
    "InputCallback",
    "KernelSession",
    "OutputCallback",
    "SentRequest",
    "UnknownKernelError",
    "list_kernelspecs",
]

log = logging.getLogger(__name__)

OutputCallback = Callable[[str, dict[str, Any]], None]
InputCallback = Callable[[str, bool], Awaitable[str]]
CommCallback = Callable[[str, dict[str, Any], list[bytes], str | None], None]
"""Called with a comm message's type, content, buffers and parent msg_id (whatever its parent)."""
CaptureCallback = Callable[[str | None, str, dict[str, Any]], bool]
"""Offered every output (parent msg_id, type, normalized content) first; True: it took it (an Output widget)."""
COMM_MESSAGES = frozenset({"comm_open", "comm_msg", "comm_close"})

OUTPUT_MESSAGE_CHARS = 1024 * 1024
"""Characters of stream text an ipykernel puts in one IOPub message at most (``kernel_side.py``)."""
OUTPUT_WINDOW_CHARS = 16 * 1024 * 1024
"""Stream characters an ipykernel may have sent ahead of what the runtime has handled (``kernel_side.py``)."""
_KERNEL_SIDE = (Path(__file__).with_name("kernel_side.py")).read_text(encoding="utf-8")


def _deserializer_with_text_dates() -> Callable[[Session, list[bytes]], dict[str, Any]]:
    """jupyter_client's ``Session.deserialize``, leaving the dates of the headers as the text they came as.

    It parses the ``date`` of every message's header and parent header with dateutil (0.2 ms of the
    0.28 ms a status message takes here, on every IOPub and shell message); nothing in the runtime reads
    those dates. This is jupyter_client's own code run with its ``extract_dates`` bound to the identity,
    so the signature check, the replay protection and the version adaptation stay exactly its own; if the
    method ever changes shape (a closure, no ``extract_dates``), the method itself is used.
    """
    fn = Session.deserialize
    if fn.__closure__ or "extract_dates" not in fn.__code__.co_names:
        return fn
    clone = types.FunctionType(fn.__code__, {**fn.__globals__, "extract_dates": lambda obj: obj}, fn.__name__,
                               fn.__defaults__)
    clone.__kwdefaults__ = fn.__kwdefaults__
    return clone


deserialize = _deserializer_with_text_dates()
"""``deserialize(session, frames)``: a kernel message as ``Session.deserialize`` gives it, header dates as text."""

_WATCHDOG_INTERVAL = 0.2  # how often the kernel process is polled
_INTERRUPT_GRACE = 2.0  # how long to wait for the reply after interrupting a timed-out cell
_MAX_IPC_PATH = 100  # unix socket paths are limited to ~107 bytes


class UnknownKernelError(RuntimedError):
    """No kernelspec of that name is installed."""

    code = "unknown_kernel"

    def __init__(self, kernel_name: str, available: list[str]) -> None:
        names = ", ".join(sorted(available)) or "none"
        super().__init__(
            f"No kernel named {kernel_name!r} is installed. Available kernels: {names}. "
            "Install one with e.g. `python -m ipykernel install --user --name NAME`."
        )
        self.kernel_name = kernel_name
        self.available = sorted(available)


NATIVE_KERNEL_NAME = "python3"


def canonical_kernel_name(name: str) -> str:
    """``python`` means the native python3 kernel, as jupyter_client's KernelManager decides it."""
    return NATIVE_KERNEL_NAME if name == "python" else name


def _spec_manager(spec_dirs: Sequence[str] | None) -> KernelSpecManager:
    """The default kernelspec search, or only ``spec_dirs`` (a notebook environment's own kernel)."""
    if spec_dirs is None:
        return KernelSpecManager()
    return KernelSpecManager(kernel_dirs=list(spec_dirs), ensure_native_kernel=False)


def list_kernelspecs(spec_dirs: Sequence[str] | None = None) -> dict[str, dict[str, str]]:
    """Installed kernelspecs (or those in ``spec_dirs``): name -> {display_name, language}."""
    specs = _spec_manager(spec_dirs).get_all_specs()
    return {
        name: {"display_name": s["spec"].get("display_name", name), "language": s["spec"].get("language", "")}
        for name, s in specs.items()
    }


@dataclass
class ExecuteReply:
    """How one execution ended (outputs went to the ``on_output`` callback)."""

    status: str = "ok"  # 'ok' | 'error' | 'aborted'
    execution_count: int | None = None
    ename: str | None = None
    evalue: str | None = None
    traceback: list[str] = field(default_factory=list)
    timed_out: bool = False
    input_timed_out: bool = False
    kernel_died: bool = False


class _Execution:
    """State of one in-flight execute_request, filled in by the channel readers."""

    __slots__ = (
        "code",
        "died",
        "done",
        "held",
        "idle",
        "input_task",
        "input_timed_out",
        "input_timeout",
        "msg_id",
        "on_input",
        "on_output",
        "reply",
        "stop_on_error",
    )

    def __init__(
        self, code: str, on_output: OutputCallback | None, on_input: InputCallback | None, input_timeout: float,
        stop_on_error: bool = True,
    ) -> None:
        self.code = code
        self.stop_on_error = stop_on_error
        """If it fails, the kernel aborts the requests queued behind it."""
        self.msg_id = ""
        self.on_output: OutputCallback = on_output if on_output is not None else _ignore_output
        self.held: list[tuple[Callable[[dict[str, Any]], None], dict[str, Any]]] | None = (
            [] if on_output is None else None
        )
        """The kernel's messages for a request sent ahead, until ``KernelSession.wait`` releases them."""
        self.on_input = on_input
        self.input_timeout = input_timeout
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.reply: dict[str, Any] | None = None
        self.idle = False
        self.died: str | None = None
        self.input_timed_out = False
        self.input_task: asyncio.Task[None] | None = None

    def emit(self, kind: str, content: dict[str, Any]) -> None:
        try:
            self.on_output(kind, content)
        except Exception:
            log.exception("on_output callback failed for %s", kind)

    def maybe_finish(self) -> None:
        if self.done.done() or self.reply is None or not self.idle:
            return
        for payload in self.reply.get("payload") or ():
            if payload.get("source") == "page" and payload.get("data"):
                self.emit("display_data", {"data": payload["data"], "metadata": {}})
        self.finish()

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)
        if self.input_task is not None and not self.input_task.done():
            self.input_task.cancel()

    def result(self, timeout: float | None, timed_out: bool) -> ExecuteReply:
        out = ExecuteReply(timed_out=timed_out, input_timed_out=self.input_timed_out)
        if self.reply is not None:
            out.status = self.reply.get("status", "error")
            out.execution_count = self.reply.get("execution_count")
            if out.status == "error":
                out.ename = self.reply.get("ename")
                out.evalue = self.reply.get("evalue")
                out.traceback = list(self.reply.get("traceback") or [])
        if self.died is not None:
            out.status, out.ename, out.evalue, out.kernel_died = "error", "KernelDied", self.died, True
        elif self.input_timed_out:
            out.status, out.ename = "error", "InputTimeout"
            out.evalue = (
                f"No answer to the input prompt within {self.input_timeout:g} s; the kernel was interrupted."
            )
        elif timed_out:
            out.status, out.ename = "error", "ExecutionTimeout"
            out.evalue = f"The execution exceeded its {timeout:g} s timeout; the kernel was interrupted."
        return out


SentRequest = _Execution
"""A request sent to the kernel (``KernelSession.send``), to wait for with ``KernelSession.wait``."""


def _wake_reader(channel: Any) -> None:
    """After a send on ``channel``: have pyzmq look for messages waiting on its socket.

    jupyter_client sends through a synchronous shadow of the asyncio socket; the send can take the edge that would
    have woken the pending receive on that socket, and a reply then sits unread (seen with requests sent while a reply
    was awaited: execute_requests sent ahead, a widget change, an input reply). pyzmq's own asyncio sends do this
    check; ``tests/test_kernel.py`` checks that the method still exists."""
    schedule = getattr(channel.socket, "_schedule_remaining_events", None)
    if schedule is not None:
        schedule()


def _ignore_output(_kind: str, _content: dict[str, Any]) -> None:
    pass


def _normalize(msg_type: str, c: dict[str, Any]) -> dict[str, Any] | None:
    """IOPub content reduced to the fields outputs are made of (None: not an output)."""
    if msg_type == "stream":
        return {"name": c.get("name", "stdout"), "text": c.get("text", "")}
    if msg_type in ("display_data", "update_display_data"):
        out = {"data": c.get("data") or {}, "metadata": c.get("metadata") or {}}
        display_id = (c.get("transient") or {}).get("display_id")
        if display_id is not None:
            out["display_id"] = display_id
        elif msg_type == "update_display_data":
            return None
        return out
    if msg_type == "execute_result":
        return {
            "data": c.get("data") or {},
            "metadata": c.get("metadata") or {},
            "execution_count": c.get("execution_count"),
        }
    if msg_type == "error":
        return {
            "ename": c.get("ename", ""),
            "evalue": c.get("evalue", ""),
            "traceback": c.get("traceback") or [],
        }
    if msg_type == "clear_output":
        return {"wait": bool(c.get("wait", False))}
    return None


def _connection_file() -> str:
    """A connection file path whose IPC socket names fit the unix socket path limit."""
    name = f"kernel-{uuid.uuid4().hex[:12]}.json"
    for directory in (jupyter_runtime_dir(), os.path.join(tempfile.gettempdir(), f"runtimed-{os.getuid()}")):
        path = os.path.join(directory, name)
        if len(path) + len("-ipc-65535") <= _MAX_IPC_PATH:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            return path
    raise KernelError(f"No directory short enough for kernel IPC sockets (tried {jupyter_runtime_dir()})")


class KernelSession:
    """A running kernel plus the client channels and readers that drive it."""

    def __init__(self, km: AsyncKernelManager, kernel_name: str, language: str) -> None:
        self._km = km
        self._kc: Any = None
        self._ack_path = os.path.splitext(km.connection_file)[0] + "-ack"
        self._ack_fd: int | None = None
        self._acked = 0  # stream characters handled, told to the kernel (``kernel_side.py``)
        self._kernel_name = kernel_name
        self._language = language
        self._pending: dict[str, _Execution] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()
        self._state = "starting"
        self._dead: str | None = None
        self._cwd: str | None = None
        self.on_comm: CommCallback | None = None
        """Receives the kernel's comm messages (widgets); None: they are dropped."""
        self.capture: CaptureCallback | None = None
        """Sees outputs before the execution they belong to (Output widgets capture by parent msg_id)."""

    # -- lifecycle ----------------------------------------------------------------

    @classmethod
    async def start(
        cls,
        kernel_name: str = "python3",
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: dict[str, str] | None = None,
        startup_timeout: float = 60.0,
        spec_dirs: Sequence[str] | None = None,
    ) -> KernelSession:
        """Launch a kernel (IPC transport) and wait until it answers.

        ``spec_dirs`` limits the kernelspec search to those folders: a notebook environment's own
        kernelspec, whose ``argv`` is the environment's Python."""
        kernel_name = canonical_kernel_name(kernel_name)
        ksm = _spec_manager(spec_dirs)
        specs = list_kernelspecs(spec_dirs)
        if kernel_name not in specs:
            raise UnknownKernelError(kernel_name, list(specs))
        conn = _connection_file()
        km = AsyncKernelManager(
            kernel_spec_manager=ksm,
            kernel_name=kernel_name,
            transport="ipc",
            connection_file=conn,
            ip=os.path.splitext(conn)[0] + "-ipc",
        )
        kwargs: dict[str, Any] = {"umask": user_umask()}  # the daemon's own umask keeps its home private
        if cwd is not None:
            kwargs["cwd"] = os.fspath(cwd)
        if env:
            kwargs["env"] = {**os.environ, **env}
        session = cls(km, kernel_name, specs[kernel_name]["language"])
        try:
            await asyncio.wait_for(km.start_kernel(**kwargs), startup_timeout)
            await session._connect(startup_timeout)
        except BaseException as exc:
            await session._kill()
            if isinstance(exc, Exception) and not isinstance(exc, RuntimedError):
                raise KernelError(f"Kernel {kernel_name!r} failed to start: {exc}") from exc
            raise
        return session

    async def _connect(self, timeout: float) -> None:
        """Open fresh client channels, wait for kernel_info, then start the readers."""
        kc = self._km.client()
        # No receive high-water mark: with the default (1000) a burst of output while the loop is busy
        # makes the kernel's PUB socket drop IOPub messages, the final 'idle' among them, and the
        # execution would never finish.
        kc.context.setsockopt(zmq.RCVHWM, 0)
        kc.start_channels(hb=False, control=False)
        self._kc = kc
        try:
            await kc.wait_for_ready(timeout=timeout)
        except RuntimeError as exc:
            raise KernelError(f"Kernel {self._kernel_name!r} did not become ready: {exc}") from exc
        self._state = "idle"
        self._dead = None
        loop = asyncio.get_running_loop()
        self._tasks = [
            loop.create_task(self._read(kc.iopub_channel, self._on_iopub)),
            loop.create_task(self._read(kc.shell_channel, self._on_shell)),
            loop.create_task(self._read(kc.stdin_channel, self._on_stdin)),
            loop.create_task(self._watchdog()),
        ]
        if self._language == "python":
            self._acknowledge(0)  # a restarted kernel counts from zero
            install = (f"install({OUTPUT_MESSAGE_CHARS}, {OUTPUT_WINDOW_CHARS}, {self._ack_path!r})")
            code = f"exec({_KERNEL_SIDE + chr(10) + install!r}, {{'__name__': '_runtimed_kernel_side'}})"
            await self.execute(code, lambda _kind, _content: None, silent=True, timeout=timeout)

    async def _disconnect(self, reason: str) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._fail_pending(reason)
        if self._kc is not None:
            self._kc.stop_channels()
            self._kc = None

    def _acknowledge(self, chars: int) -> None:
        """Tell the kernel how many stream characters are handled (it waits when too far ahead)."""
        self._acked = chars
        try:
            if self._ack_fd is None:
                self._ack_fd = os.open(self._ack_path, os.O_RDWR | os.O_CREAT, 0o600)
            os.pwrite(self._ack_fd, struct.pack("<Q", chars), 0)
        except OSError:  # the kernel then waits at most its max_wait per window
            log.debug("could not write %s", self._ack_path, exc_info=True)

    def _release_ack(self) -> None:
        if self._ack_fd is not None:
            os.close(self._ack_fd)
            self._ack_fd = None
        with contextlib.suppress(OSError):
            os.unlink(self._ack_path)

    async def restart(self) -> None:
        """Restart the kernel process; all its state is gone, the working directory is kept."""
        await self._disconnect("The kernel was restarted while this cell was running.")
        self._state = "starting"
        await self._km.restart_kernel(now=True)
        await self._connect(60.0)
        if self._cwd is not None:
            await self.set_cwd(self._cwd)

    async def shutdown(self, now: bool = False) -> None:
        """Stop the kernel and release its channels and connection files."""
        await self._disconnect("The kernel was shut down while this cell was running.")
        self._state = "dead"
        if self._km.has_kernel:
            await self._km.shutdown_kernel(now=now)
        else:
            self._km.cleanup_resources()
        self._release_ack()

    async def _kill(self) -> None:
        await self._disconnect("The kernel failed to start.")
        with contextlib.suppress(Exception):
            await self._km.shutdown_kernel(now=True)
        self._release_ack()

    async def interrupt(self) -> None:
        await self._km.interrupt_kernel()

    async def is_alive(self) -> bool:
        return self._dead is None and await self._km.is_alive()

    # -- properties ---------------------------------------------------------------

    @property
    def kernel_name(self) -> str:
        return self._kernel_name

    @property
    def language(self) -> str:
        return self._language

    @property
    def pid(self) -> int | None:
        return getattr(self._km.provisioner, "pid", None)

    @property
    def connection_file(self) -> str:
        return self._km.connection_file

    @property
    def aborts_queue_on_error(self) -> bool:
        """An ipykernel: a request that fails with ``stop_on_error`` aborts every request queued behind it
        (the Jupyter protocol asks it of every kernel; ipykernel is the one checked here)."""
        spec = self._km.kernel_spec
        return spec is not None and any("ipykernel" in part for part in spec.argv)

    @property
    def execution_state(self) -> str:
        """'starting' | 'idle' | 'busy' | 'dead', from IOPub status and the watchdog."""
        return self._state

    # -- execution ------------------------------------------------------------------

    async def execute(
        self,
        code: str,
        on_output: OutputCallback,
        *,
        on_input: InputCallback | None = None,
        timeout: float | None = None,
        input_timeout: float = 60.0,
        silent: bool = False,
    ) -> ExecuteReply:
        """Run ``code``; returns once the reply and the final IOPub idle have both arrived."""
        async with self._lock:
            request = self.send(code, on_output, on_input=on_input, input_timeout=input_timeout, silent=silent)
            return await self.wait(request, timeout)

    def send(
        self,
        code: str,
        on_output: OutputCallback | None = None,
        *,
        on_input: InputCallback | None = None,
        input_timeout: float = 60.0,
        silent: bool = False,
        stop_on_error: bool = True,
    ) -> SentRequest:
        """Send an execute_request now and wait for it later (``wait``). Without ``on_output`` it is sent ahead:
        the kernel runs it after what it runs now, and its messages are held until ``wait`` gives them a
        callback. ``stop_on_error``: if it fails, the kernel aborts the requests queued behind it."""
        ex = _Execution(code, on_output, on_input, input_timeout, stop_on_error)
        if self._dead is not None or self._kc is None:
            ex.died = self._dead or "The kernel is not running."
            ex.finish()
            return ex
        ex.msg_id = self._kc.execute(
            code, silent=silent, store_history=not silent, allow_stdin=on_input is not None,
            stop_on_error=stop_on_error,
        )
        _wake_reader(self._kc.shell_channel)
        self._pending[ex.msg_id] = ex
        return ex

    async def wait(
        self, request: SentRequest, timeout: float | None, *, on_output: OutputCallback | None = None
    ) -> ExecuteReply:
        """Wait for a sent request (``timeout`` counts from now); a request sent ahead gets its ``on_output``
        here, and what the kernel answered to it so far is handled first."""
        ex = request
        self.release(ex, on_output)
        timed_out = False
        try:
            if timeout is None:
                await ex.done
            else:
                done, _ = await asyncio.wait((ex.done,), timeout=timeout)
                if not done:
                    timed_out = True
                    await self.interrupt()
                    await asyncio.wait((ex.done,), timeout=_INTERRUPT_GRACE)
        finally:
            self._pending.pop(ex.msg_id, None)
            if ex.input_task is not None and not ex.input_task.done():
                ex.input_task.cancel()
        return ex.result(timeout, timed_out)

    def release(self, request: SentRequest, on_output: OutputCallback | None = None) -> None:
        """Hand a request sent ahead its kernel messages held so far, and the next ones as they come."""
        if on_output is not None:
            request.on_output = on_output
        held, request.held = request.held, None
        for handle, msg in held or ():
            handle(msg)

    def discard(self, request: SentRequest) -> None:
        """Forget a sent request: whatever the kernel still answers to it is dropped."""
        self._pending.pop(request.msg_id, None)
        request.held = None
        if request.input_task is not None and not request.input_task.done():
            request.input_task.cancel()

    def send_comm(self, comm_id: str, data: dict[str, Any], buffers: list[bytes] | None = None) -> str | None:
        """Send a comm_msg to the kernel (a widget change from a viewer); its msg_id, or None if not running.

        Not under the execution lock: the kernel handles it between or, for a busy kernel, after cells."""
        if self._dead is not None or self._kc is None:
            return None
        msg = self._kc.session.msg("comm_msg", {"comm_id": comm_id, "data": data})
        self._kc.session.send(self._kc.shell_channel.socket, msg, buffers=buffers or None)
        _wake_reader(self._kc.shell_channel)
        return str(msg["header"]["msg_id"])

    async def set_cwd(self, path: str | os.PathLike[str]) -> None:
        """Change the kernel's working directory (python kernels: a silent ``os.chdir``)."""
        path = os.fspath(path)
        if self._language != "python":
            raise KernelError(
                f"Changing the working directory of a running {self._language} kernel is not supported."
            )
        reply = await self.execute(
            f"__import__('os').chdir({path!r})", lambda kind, content: None, silent=True
        )
        if reply.status != "ok":
            raise KernelError(
                f"Could not change the kernel's directory to {path}: {reply.ename}: {reply.evalue}"
            )
        self._cwd = path

    # -- readers --------------------------------------------------------------------

    async def _read(self, channel: Any, handle: Callable[[dict[str, Any]], None]) -> None:
        socket, session = channel.socket, channel.session
        while True:
            frames = await socket.recv_multipart()
            try:
                msg = deserialize(session, session.feed_identities(frames)[1])
                del frames  # the raw message: a large output is held once (parsed) while it is handled
                handle(msg)
            except Exception:
                log.exception("Dropped a malformed or unhandled kernel message")

    def _held(self, ex: _Execution | None, handle: Callable[[dict[str, Any]], None], msg: dict[str, Any]) -> bool:
        """Hold a message for a request sent ahead (True), until it is released."""
        if ex is None or ex.held is None:
            return False
        ex.held.append((handle, msg))
        return True

    def _on_iopub(self, msg: dict[str, Any]) -> None:
        msg_type = msg["header"]["msg_type"]
        parent_id = msg["parent_header"].get("msg_id")
        ex = self._pending.get(parent_id)
        if self._held(ex, self._on_iopub, msg):
            return
        if msg_type == "status":
            self._state = msg["content"].get("execution_state", self._state)
            if ex is not None and self._state == "idle":
                ex.idle = True
                ex.maybe_finish()
            return
        if msg_type in COMM_MESSAGES:
            if self.on_comm is not None:
                buffers = [bytes(b) for b in msg.get("buffers") or ()]
                self.on_comm(msg_type, msg["content"], buffers, parent_id)
            return
        content = _normalize(msg_type, msg["content"])
        if content is None:
            return
        try:
            if self.capture is not None and self.capture(parent_id, msg_type, content):
                return
            if ex is not None:
                ex.emit(msg_type, content)
        finally:
            if msg_type == "stream" and self._language == "python":
                self._acknowledge(self._acked + len(content["text"]))

    def _on_shell(self, msg: dict[str, Any]) -> None:
        ex = self._pending.get(msg["parent_header"].get("msg_id"))
        if self._held(ex, self._on_shell, msg):
            return
        if ex is not None and msg["header"]["msg_type"] == "execute_reply":
            ex.reply = msg["content"]
            ex.maybe_finish()

    def _on_stdin(self, msg: dict[str, Any]) -> None:
        ex = self._pending.get(msg["parent_header"].get("msg_id"))
        if self._held(ex, self._on_stdin, msg):
            return
        if ex is None or ex.on_input is None or msg["header"]["msg_type"] != "input_request":
            return
        content = msg["content"]
        ex.input_task = asyncio.get_running_loop().create_task(
            self._answer_input(ex, content.get("prompt", ""), bool(content.get("password", False)))
        )

    async def _answer_input(self, ex: _Execution, prompt: str, password: bool) -> None:
        assert ex.on_input is not None
        try:
            value = await asyncio.wait_for(ex.on_input(prompt, password), ex.input_timeout)
        except TimeoutError:
            ex.input_timed_out = True
            await self.interrupt()
            return
        except Exception:
            log.exception("on_input callback failed; interrupting the kernel")
            await self.interrupt()
            return
        if self._kc is not None and not ex.done.done():
            self._kc.input(str(value))
            _wake_reader(self._kc.stdin_channel)

    async def _watchdog(self) -> None:
        while True:
            await asyncio.sleep(_WATCHDOG_INTERVAL)
            if not await self._km.is_alive():
                code = await self._km.provisioner.poll() if self._km.provisioner else None
                self._dead = (
                    f"The kernel process exited unexpectedly (exit code {code}); its state is lost. "
                    "Restart the kernel to continue."
                )
                self._state = "dead"
                self._fail_pending(self._dead)
                return

    def _fail_pending(self, reason: str) -> None:
        for ex in self._pending.values():
            ex.died = reason
            ex.finish()
