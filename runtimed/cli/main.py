"""``runt``: the command line of runtimed (the console script's entry point).

It only dispatches. A plain ``runt run NOTEBOOK [OUTPUT] [-p NAME VALUE]...`` goes straight to the run's
code (``cli/run_plain.py``: no click, and no asyncio before the run is submitted, since the cell cannot start
before the submit); every other command line goes to the click group in ``cli/group.py``.
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
    from typing import Any

_GROUP_NAMES = ("cli", "COMMANDS", "ALIASES", "LazyGroup", "load", "CONTEXT_SETTINGS")


def __getattr__(name: str) -> Any:
    """``from runtimed.cli.main import cli`` (or COMMANDS...) still works: the group loads on first use."""
    if name in _GROUP_NAMES:
        from runtimed.cli import group

        return getattr(group, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_skip_teardown = False


def skip_teardown() -> None:
    """Asked by a command that leaves nothing to clean up (``runt run``'s thin client): the program then ends
    without Python's interpreter teardown, which takes about 0.1 s after a run (module and object cleanup)."""
    global _skip_teardown
    _skip_teardown = True


def main(argv: list[str] | None = None) -> int:
    from runtimed.cli.run_plain import plain_run_arguments

    arguments = plain_run_arguments(sys.argv[1:] if argv is None else argv)
    if arguments is not None:
        from runtimed.cli.run_plain import run_plain

        code = run_plain(arguments)
    else:
        from runtimed.cli.group import cli

        try:
            cli.main(args=argv, prog_name="runt", standalone_mode=True)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    if argv is None and _skip_teardown:  # the program itself (not a caller in process): flush, then end now
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    sys.exit(main())
