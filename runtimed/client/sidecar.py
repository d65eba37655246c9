"""``runtimed.sidecar()`` / ``%load_ext runtimed``: a terminal IPython session mirrored, live, into a notebook.

The terminal stays where code is typed and runs (in this process, not in a kernel). Each
executed input becomes a code cell of a runtimed notebook with its execution count, and its
outputs follow as they happen: printed text (streamed), ``display()`` calls and results with
every MIME type the objects offer (HTML, images, dataframes), errors with tracebacks, and
matplotlib figures created by the input. A browser at the printed URL shows it; any other
client (``Session(notebook_id)``) reads it.

Events are pushed in order by one task on the sessions' background loop, so mirroring
never blocks the terminal; ``flush()`` waits until everything is stored.
"""

from __future__ import annotations

import asyncio
import base64
import io
import logging
import sys
import traceback
from typing import Any, TextIO

from runtimed.client.session import Session, _LoopThread
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id
from runtimed.schema.ordering import key_between

log = logging.getLogger(__name__)

MAX_QUEUED = 10_000
"""Pushes waiting to be sent; beyond it the oldest mirrored outputs are dropped (the terminal never waits)."""

_active: Sidecar | None = None


class _Tee(io.TextIOBase):
    """Writes to the terminal and hands the text to the sidecar."""

    def __init__(self, original: TextIO, name: str, sidecar: Sidecar) -> None:
        self.original = original
        self.name = name
        self.sidecar = sidecar

    def write(self, text: str) -> int:
        written = self.original.write(text)
        self.sidecar._stream(self.name, text)
        return written

    def flush(self) -> None:
        self.original.flush()

    def isatty(self) -> bool:
        return self.original.isatty()

    def fileno(self) -> int:
        return self.original.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", "utf-8")


class Sidecar:
    """A live mirror of this process's IPython session into one notebook (see the module docstring)."""

    def __init__(self, session: Session, shell: Any | None) -> None:
        self.session = session
        self.shell = shell
        self._loop = _LoopThread.loop()
        self._queue: asyncio.Queue[list[dict[str, Any]]] = asyncio.Queue()
        self._writer: asyncio.Future[None] | None = None
        self._cell: str | None = None
        self._last_key: str | None = None
        self._open_stream: tuple[str, str, int] | None = None  # (name, output id, characters so far)
        self._muted = 0
        self._figures: set[int] = set()
        self._restore: list[tuple[Any, str, Any]] = []
        self.dropped = 0

    # -- lifecycle ---------------------------------------------------------------------------------

    @property
    def notebook_id(self) -> str:
        return self.session.notebook_id

    @property
    def url(self) -> str:
        """The live notebook in a browser (signed in by its token, like ``runt open``)."""
        endpoint = self.session.async_session._endpoint
        assert endpoint is not None
        return f"{endpoint.url}/?notebook={self.notebook_id}&token={endpoint.token}"

    def start(self) -> Sidecar:
        self.session.connect()
        keys = self.session.client.replica.view(views.order_keys)
        self._last_key = keys[-1][1] if keys else None
        self._writer = asyncio.run_coroutine_threadsafe(self._write(), self._loop)  # type: ignore[assignment]
        self._patch(sys, "stdout", _Tee(sys.stdout, "stdout", self))
        self._patch(sys, "stderr", _Tee(sys.stderr, "stderr", self))
        if self.shell is not None:
            self._hook_ipython(self.shell)
            raw = getattr(getattr(self.shell, "history_manager", None), "input_hist_raw", None) or [""]
            self.begin_cell(str(raw[-1]).rstrip("\n"), self.shell.execution_count - 1)  # the input that started us
        return self

    def _patch(self, owner: Any, name: str, value: Any) -> None:
        self._restore.append((owner, name, getattr(owner, name)))
        setattr(owner, name, value)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop mirroring, push what is queued, and disconnect (the notebook stays)."""
        global _active
        self._end_cell()
        if self.shell is not None:
            for event, callback in (("pre_run_cell", self._pre_run), ("post_run_cell", self._post_run)):
                try:
                    self.shell.events.unregister(event, callback)
                except ValueError:
                    pass
        for owner, name, value in reversed(self._restore):
            setattr(owner, name, value)
        self._restore.clear()
        self.flush(timeout)
        if self._writer is not None:
            self._writer.cancel()
        self.session.close()
        if _active is self:
            _active = None

    def flush(self, timeout: float = 10.0) -> None:
        """Block until every mirrored change is stored in the daemon."""
        self.session._run(asyncio.wait_for(self._queue.join(), timeout))

    async def _write(self) -> None:
        client = self.session.async_session
        while True:
            events = await self._queue.get()
            try:
                await client._commit(events)
            except Exception as exc:  # a refused output must not end the mirror
                log.warning("sidecar: could not mirror %d event(s): %s", len(events), exc)
            finally:
                self._queue.task_done()

    def _emit(self, *events: dict[str, Any]) -> None:
        def put() -> None:
            if self._queue.qsize() >= MAX_QUEUED:
                self.dropped += 1
                return
            self._queue.put_nowait(list(events))

        self._loop.call_soon_threadsafe(put)

    # -- what is mirrored ------------------------------------------------------------------------

    def begin_cell(self, source: str, execution_count: int | None = None) -> str:
        """A new code cell at the end of the notebook; outputs go to it until the next one."""
        self._end_cell()
        key = key_between(self._last_key, None)
        self._last_key = key
        cell_id = new_id("c-")
        self._emit(make_event("cellCreated", cell_id=cell_id, cell_type="code", fractional_index=key, source=source,
                              execution_count=execution_count))
        self._cell = cell_id
        return cell_id

    def _end_cell(self) -> None:
        self._open_stream = None
        self._cell = None

    def _stream(self, name: str, text: str) -> None:
        if self._cell is None and self.shell is None:  # a plain script: all of its output, in one cell
            self.begin_cell(f"# output of {' '.join(sys.argv) or 'python'}")
        if self._muted or not text or self._cell is None:  # between inputs: prompts, not output
            return
        if self._open_stream is not None and self._open_stream[0] == name:
            _, output_id, length = self._open_stream
            self._emit(make_event("streamTextChanged", output_id=output_id, offset=length, text=text))
            self._open_stream = (name, output_id, length + len(text))
            return
        output_id = new_id("o-")
        self._emit(make_event("outputAdded", output_id=output_id, cell_id=self._cell, output_type="stream", name=name,
                              text=text))
        self._open_stream = (name, output_id, len(text))

    def display(self, data: dict[str, Any], metadata: dict[str, Any] | None = None, *, result: bool = False,
                execution_count: int | None = None) -> None:
        """Mirror one display (a MIME bundle) into the current cell."""
        if self._cell is None:
            self.begin_cell("# display outside any input")
        assert self._cell is not None
        self._open_stream = None
        kind = "execute_result" if result else "display_data"
        self._emit(make_event("outputAdded", output_id=new_id("o-"), cell_id=self._cell, output_type=kind,
                              data=_jsonable(data), metadata=_jsonable(metadata or {}),
                              execution_count=execution_count if result else None))

    def error(self, exc: BaseException) -> None:
        if self._cell is None:
            return
        self._open_stream = None
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        self._emit(make_event("outputAdded", output_id=new_id("o-"), cell_id=self._cell, output_type="error",
                              ename=type(exc).__name__, evalue=str(exc), traceback=[line.rstrip("\n") for line in tb]))

    # -- IPython ---------------------------------------------------------------------------------

    def _hook_ipython(self, shell: Any) -> None:
        formatter = shell.display_formatter
        # the terminal asks only for text/plain; the notebook wants every type the object offers
        self._patch(formatter, "active_types", list(formatter.format_types))
        publish = shell.display_pub.publish

        def mirrored_publish(data: dict[str, Any], metadata: dict[str, Any] | None = None, *args: Any,
                             **kwargs: Any) -> Any:
            self.display(data, metadata)
            self._muted += 1
            try:
                return publish(data, metadata, *args, **kwargs)
            finally:
                self._muted -= 1

        self._patch(shell.display_pub, "publish", mirrored_publish)
        hook = shell.displayhook
        write = hook.write_format_data

        def mirrored_result(format_dict: dict[str, Any], md_dict: dict[str, Any] | None = None) -> Any:
            self.display(format_dict, md_dict, result=True, execution_count=hook.prompt_count)
            self._muted += 1
            try:
                return write(format_dict, md_dict)
            finally:
                self._muted -= 1

        self._patch(hook, "write_format_data", mirrored_result)
        for name in ("write_output_prompt", "finish_displayhook"):  # "Out[n]: " and its newline are not output
            self._patch(hook, name, self._muting(getattr(hook, name)))
        shell.events.register("pre_run_cell", self._pre_run)
        shell.events.register("post_run_cell", self._post_run)

    def _muting(self, fn: Any) -> Any:
        def muted(*args: Any, **kwargs: Any) -> Any:
            self._muted += 1
            try:
                return fn(*args, **kwargs)
            finally:
                self._muted -= 1

        return muted

    def _pre_run(self, info: Any) -> None:
        source = getattr(info, "raw_cell", "") or ""
        self._figures = _figure_ids()
        # IPython counts an input before announcing it: the input's own number is one less
        shell = self.shell
        assert shell is not None
        count = shell.execution_count - 1 if getattr(info, "store_history", True) else None
        self.begin_cell(source.rstrip("\n"), count)

    def _post_run(self, result: Any) -> None:
        for figure in _new_figures(self._figures):
            self.display(figure)
        failure = getattr(result, "error_in_exec", None) or getattr(result, "error_before_exec", None)
        if failure is not None:
            self.error(failure)
        self._end_cell()


def _jsonable(value: Any) -> Any:
    """Bytes (raw images from some formatters) become base64 text, as nbformat stores them."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def _open_figures() -> list[Any]:
    """matplotlib's open figures, without touching the current figure (none when it is not imported)."""
    helpers = sys.modules.get("matplotlib._pylab_helpers")
    if helpers is None or "matplotlib.pyplot" not in sys.modules:
        return []
    return [manager.canvas.figure for manager in helpers.Gcf.get_all_fig_managers()]


def _figure_ids() -> set[int]:
    return {id(figure) for figure in _open_figures()}


def _new_figures(before: set[int]) -> list[dict[str, Any]]:
    """PNG bundles of the matplotlib figures an input created (a terminal shows none of them)."""
    bundles = []
    for figure in _open_figures():
        if id(figure) in before:
            continue
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        bundles.append({"image/png": base64.b64encode(buffer.getvalue()).decode(), "text/plain": repr(figure)})
    return bundles


def sidecar(notebook_id: str | None = None, *, shell: Any | None = None, quiet: bool = False,
            **session_kwargs: Any) -> Sidecar:
    """Mirror this IPython session (or, outside IPython, this script's output) into a live notebook.

    Returns the running :class:`Sidecar` (``.url``, ``.notebook_id``, ``.stop()``); a second call
    returns the same one. ``notebook_id`` continues an existing notebook (default: a new
    ``sidecar-<id>``); other keywords go to :class:`~runtimed.Session`.
    """
    global _active
    if _active is not None:
        return _active
    if shell is None:
        try:
            from IPython import get_ipython

            shell = get_ipython()
        except ImportError:
            shell = None
    session = Session(notebook_id or new_id("sidecar-"), **session_kwargs)
    running = Sidecar(session, shell).start()
    _active = running
    if not quiet:
        print(f"runtimed sidecar: notebook {running.notebook_id} — open {running.url}", file=sys.__stdout__, flush=True)
    return running


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext runtimed``: start the sidecar for this IPython session."""
    sidecar(shell=ipython)


def unload_ipython_extension(ipython: Any) -> None:
    """``%unload_ext runtimed``: stop mirroring (the notebook stays in the daemon)."""
    if _active is not None:
        _active.stop()


__all__ = ["Sidecar", "load_ipython_extension", "sidecar", "unload_ipython_extension"]
