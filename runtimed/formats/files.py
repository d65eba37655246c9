"""Load and save notebooks by path or fsspec URL, choosing the format by extension.

Going through fsspec means ``memory://``, ``s3://``, ``http(s)://`` (with the
matching fsspec backend installed) work everywhere a local path does.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import fsspec
import nbformat

from runtimed.errors import InvalidNotebookError
from runtimed.formats.ipynb import read_ipynb, write_ipynb
from runtimed.formats.yaml_nb import read_yaml_notebook, write_yaml_notebook

FORMATS = {".ipynb": "ipynb", ".yaml": "yaml", ".yml": "yaml"}


def notebook_format(path_or_url: str) -> str:
    """``ipynb`` or ``yaml`` from the path's extension (a URL's query and fragment are ignored)."""
    path = urlsplit(path_or_url).path if "://" in path_or_url else path_or_url
    lowered = path.lower()
    for ext, fmt in FORMATS.items():
        if lowered.endswith(ext):
            return fmt
    raise InvalidNotebookError(
        f"cannot tell the notebook format of {path_or_url!r}: use a .ipynb, .yaml or .yml file",
        code="unknown_format",
    )


def load_notebook(path_or_url: str) -> nbformat.NotebookNode:
    """Read an ``.ipynb`` or YAML notebook. Missing files raise FileNotFoundError."""
    fmt = notebook_format(path_or_url)
    with fsspec.open(path_or_url, "rb") as f:
        data = f.read()
    if fmt == "ipynb":
        return read_ipynb(data)
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidNotebookError(f"{path_or_url}: not UTF-8 text ({exc})") from None
    nb, _parameters = read_yaml_notebook(text)
    return nb


def save_notebook(nb: Any, path_or_url: str, *, ipynb_text: str | None = None) -> str:
    """Write ``nb`` as ``.ipynb`` or YAML (by extension) and return the text written. Writing to stdout
    ("-") is the caller's job. ``ipynb_text``: ``nb`` already serialized by ``write_ipynb`` (a second copy
    of one notebook is written without serializing it again)."""
    fmt = notebook_format(path_or_url)
    if fmt == "ipynb":
        text = ipynb_text if ipynb_text is not None else write_ipynb(nb)
    else:
        text = write_yaml_notebook(nb)
    with fsspec.open(path_or_url, "wb") as f:
        f.write(text.encode("utf-8"))
    return text
