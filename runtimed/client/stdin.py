"""Answering a cell's ``input()``/``getpass()`` from the client that asked for the run.

An input handler is a callable ``handler(prompt)`` or ``handler(prompt, password)`` (sync
or async) returning the answer, or a list of answers used in order. Answers are
``inputReplied`` events, so every peer sees them in the log (a password's value too: use
the page or a console for secrets you do not want stored).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from runtimed.errors import RuntimedError

InputHandler = Callable[..., str | Awaitable[str]] | Iterable[str]
"""``handler(prompt)`` / ``handler(prompt, password)`` returning the answer, or answers in order."""


def _arity(fn: Callable[..., Any]) -> int:
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return 2
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return 2
    return sum(1 for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


class Answerer:
    """One execution's input handler, normalized to ``await answerer(prompt, password)``."""

    def __init__(self, handler: InputHandler) -> None:
        if isinstance(handler, str):
            raise TypeError("stdin must be a callable or a list of answers, not a str (wrap it: stdin=[answer])")
        if callable(handler):
            self._fn: Callable[..., Any] | None = handler
            self._two = _arity(handler) >= 2
            self._answers: list[str] = []
        elif isinstance(handler, Iterable):
            self._fn = None
            self._two = False
            self._answers = [str(a) for a in handler]
        else:
            raise TypeError(f"stdin must be a callable or a list of answers, got {type(handler).__name__}")
        self.asked = 0

    async def __call__(self, prompt: str, password: bool) -> str:
        self.asked += 1
        if self._fn is None:
            if not self._answers:
                raise RuntimedError(f"the cell asked for input #{self.asked} ({prompt!r}) but the list of answers "
                                    "ran out; pass one more answer", code="no_input_pending")
            return self._answers.pop(0)
        value = self._fn(prompt, password) if self._two else self._fn(prompt)
        if inspect.isawaitable(value):
            value = await value
        return str(value)
