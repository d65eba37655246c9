"""papermill's type inference for ``-p NAME VALUE``, apart from the rest of ``parameters.py`` so that the plain
``runt run`` can apply it before it submits, without loading that module's imports (issue 16)."""

from __future__ import annotations

TYPE_CHECKING = False  # typing's flag without importing typing (see runtimed/__init__.py)
if TYPE_CHECKING:
    from typing import Any


def resolve_type(value: str) -> Any:
    """Papermill's ``-p`` type inference: True/False/None, int, float, else the string itself."""
    if value == "True":
        return True
    if value == "False":
        return False
    if value == "None":
        return None
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
