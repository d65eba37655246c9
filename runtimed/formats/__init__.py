"""Notebook file formats: ``.ipynb`` (nbformat) and YAML notebooks, loaded from paths or fsspec URLs."""

from runtimed.formats.files import load_notebook, notebook_format, save_notebook
from runtimed.formats.ipynb import notebook_from_projection, notebook_to_events, read_ipynb, write_ipynb
from runtimed.formats.yaml_nb import parameters_source, read_yaml_notebook, write_yaml_notebook

__all__ = [
    "load_notebook",
    "notebook_format",
    "notebook_from_projection",
    "notebook_to_events",
    "parameters_source",
    "read_ipynb",
    "read_yaml_notebook",
    "save_notebook",
    "write_ipynb",
    "write_yaml_notebook",
]
