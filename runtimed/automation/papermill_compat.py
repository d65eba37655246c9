"""What ``runt run`` does only to behave as papermill does for a user who swaps one for the other.

papermill's flags that have no effect of their own here (``--engine nbclient``), its log level
and log banners, and its checks on the output path.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

from runtimed.automation.parameters import ParameterError
from runtimed.errors import RuntimedError

ENGINES = ("nbclient",)
"""papermill's engine names that runt run stands in for (papermill's default engine is nbclient)."""
LOGGER = "runtimed"


def check_engine(engine: str | None) -> None:
    if engine is not None and engine.lower() not in ENGINES:
        raise ParameterError(f"--engine {engine}: runt run executes like papermill's default engine "
                             f"({', '.join(ENGINES)}); other papermill engines are not available")


def check_language(language: str | None) -> None:
    if language is not None and language.lower() != "python":
        raise ParameterError(f"--language {language}: runt run injects parameters into Python notebooks only")


def setup_logging(level: str, *, to_stdout: bool = False) -> None:
    """papermill's ``--log-level``: runtimed's messages on stderr, as bare lines; with the notebook going to
    stdout, INFO means ERROR (papermill keeps a piped notebook clean the same way)."""
    if to_stdout and level == "INFO":
        level = "ERROR"
    logger = logging.getLogger(LOGGER)
    if not any(getattr(h, "_runt_run", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler._runt_run = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.setLevel(level)


def check_output_dir(output_path: str | None) -> None:
    """papermill refuses to write into a folder that does not exist; runt run says so before running."""
    if not output_path or output_path == "-" or "://" in output_path:
        return
    folder = os.path.dirname(os.path.abspath(os.path.expanduser(output_path)))
    if not os.path.isdir(folder):
        raise RuntimedError(f"output folder {os.path.dirname(output_path) or folder} doesn't exist.",
                            code="not_found")


def banner(kind: str, index: int) -> str:
    """papermill's ``--log-output`` banners around each cell (1-based index of the cell in the notebook)."""
    if kind == "start":
        return f"Executing Cell {index:-<40}"
    return f"Ending Cell {index:-<43}"


def kernel_info_language(reply: dict[str, Any]) -> dict[str, Any] | None:
    """The ``language_info`` of a kernel_info reply (what nbclient writes into the output notebook)."""
    info = reply.get("language_info")
    return dict(info) if isinstance(info, dict) and info.get("name") else None


async def kernel_language(http: Any, notebook_id: str) -> dict[str, Any] | None:
    """The running kernel's ``language_info`` (None when it is gone or does not answer in time). A run asks
    while its cells run, so that the answer is there when they end."""
    import asyncio

    import httpx

    try:
        response = await asyncio.to_thread(http.request, "POST", f"/api/notebooks/{notebook_id}/kernel-info",
                                           timeout=httpx.Timeout(5.0, read=15.0))
    except (RuntimedError, httpx.HTTPError):
        return None
    return kernel_info_language(response.json())


async def update_language_info(client: Any, http: Any, notebook_id: str, asked: Any = None) -> None:
    """As nbclient does after a run: the notebook's ``language_info`` becomes the kernel's (an event, so the
    live notebook has it too). Nothing when the kernel is gone or does not answer. ``asked``: the answer to
    a :func:`kernel_language` asked earlier (a task), else the kernel is asked now."""
    from runtimed.schema import views
    from runtimed.schema.events import make_event

    info = await asked if asked is not None else None
    if info is None:
        if client.replica.view(views.active_session) is None:
            return
        info = await kernel_language(http, notebook_id)
    if info is not None and info != client.replica.view(views.notebook_metadata).get("language_info"):
        await client.commit([make_event("notebookMetadataSet", key="language_info", value=info)])
