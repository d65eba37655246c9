"""Papermill-compatible parameters: parsing, inspection, injection and path templating.

The injected cell, its tag and ``metadata.papermill`` follow papermill exactly, so
notebooks and tooling written for papermill keep working.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Any

from runtimed import __version__
from runtimed.automation.param_values import resolve_type as resolve_type  # its home since issue 16
from runtimed.errors import RuntimedError

if TYPE_CHECKING:  # nbformat, yaml, fsspec (and ast, copy, base64) load when used: `runt run` parses -p without them
    import nbformat

log = logging.getLogger(__name__)

Warn = Callable[[str], None]
"""Where papermill's warnings about a notebook's parameters go (the log by default; a daemon job's record)."""

PARAMETERS_TAG = "parameters"
INJECTED_TAG = "injected-parameters"
ERROR_MARKER_TAG = "papermill-error-cell-tag"


class ParameterError(RuntimedError):
    code = "invalid_parameters"


# -- reading parameters from the command line --------------------------------------------------------


@cache
def _no_dates_loader() -> Any:
    """papermill's YAML loader: dates stay strings (``2024-01-01`` is not turned into a ``date``)."""
    import yaml

    class NoDatesSafeLoader(yaml.SafeLoader):
        yaml_implicit_resolvers = {
            key: [r for r in resolvers if r[0] != "tag:yaml.org,2002:timestamp"]
            for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
        }

    return NoDatesSafeLoader


def _yaml_mapping(text: str | bytes, where: str) -> dict[str, Any]:
    import yaml

    try:
        value = yaml.load(text, Loader=_no_dates_loader())  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        raise ParameterError(f"{where}: not valid YAML ({exc})") from None
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ParameterError(f"{where}: expected a mapping of name: value, got {type(value).__name__}")
    return value


def collect_parameters(
    *,
    base64_yaml: Iterable[str] = (),
    files: Iterable[str] = (),
    yaml_strings: Iterable[str] = (),
    params: Iterable[tuple[str, str]] = (),
    raw: Iterable[tuple[str, str]] = (),
    base: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Merge parameters with papermill's precedence: ``base`` < -b < -f < -y < -p < -r."""
    merged: dict[str, Any] = dict(base or {})
    for item in base64_yaml:
        import base64

        try:
            decoded = base64.b64decode(item, validate=True).decode()
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParameterError(f"-b: not base64-encoded YAML ({exc})") from None
        merged.update(_yaml_mapping(decoded, "-b"))
    for path in files:
        import fsspec

        try:
            with fsspec.open(path, "r", encoding="utf-8") as f:
                text = f.read()
        except (FileNotFoundError, IsADirectoryError) as exc:
            raise ParameterError(f"-f {path}: cannot read the parameters file ({exc})") from None
        merged.update(_yaml_mapping(text, f"-f {path}"))
    for text in yaml_strings:
        merged.update(_yaml_mapping(text, "-y"))
    for name, value in params:
        merged[name] = resolve_type(value)
    for name, value in raw:
        merged[name] = value
    return merged


def parse_grid(specs: Iterable[str]) -> list[dict[str, Any]]:
    """``name=v1,v2`` specs -> the cartesian product of parameter dicts (values typed like ``-p``)."""
    axes: list[tuple[str, list[Any]]] = []
    for spec in specs:
        name, sep, raw = spec.partition("=")
        if not sep or not name.isidentifier() or not raw:
            raise ParameterError(f"--grid {spec!r}: expected NAME=V1,V2,...")
        axes.append((name, [resolve_type(v) for v in raw.split(",")]))
    combos: list[dict[str, Any]] = [{}]
    for name, values in axes:
        combos = [{**combo, name: value} for combo in combos for value in values]
    return combos


def builtin_path_parameters() -> dict[str, Any]:
    """papermill's ``pm`` values for path templates: ``out_{pm[run_uuid]}.ipynb``."""
    import uuid
    from datetime import UTC, datetime

    return {"pm": {"run_uuid": str(uuid.uuid4()), "current_datetime_local": datetime.now(),
                   "current_datetime_utc": datetime.now(UTC)}}


def parameterize_path(path: str | None, parameters: Mapping[str, Any]) -> str | None:
    """Template an input or output path with parameters (``out_{alpha}.ipynb``, papermill's ``pm``)."""
    if path is None or path == "-" or ("{" not in path and "}" not in path):
        return path
    try:
        return path.format(**{**builtin_path_parameters(), **parameters})
    except KeyError as exc:
        raise ParameterError(f"path {path!r} uses parameter {exc} which was not given (pass it with -p)") from None
    except (IndexError, ValueError) as exc:
        raise ParameterError(f"path {path!r} is not a valid template ({exc})") from None


# -- translating values to Python source ------------------------------------------------------------


def _escaped(value: Any) -> str:
    if isinstance(value, str):
        value = value.encode("unicode_escape").decode("utf-8").replace('"', r'\"')
    return f'"{value}"'


def translate(value: Any) -> str:
    """A Python literal for a JSON/YAML value, byte-for-byte as papermill's PythonTranslator writes it."""
    if value is None:
        return "None"
    if isinstance(value, str):
        return _escaped(value)
    if isinstance(value, bool | int):
        return f"{value}"
    if isinstance(value, float):
        if math.isfinite(value):
            return f"{value}"
        return "float('nan')" if math.isnan(value) else ("float('-inf')" if value < 0 else "float('inf')")
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_escaped(k)}: {translate(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(translate(v) for v in value) + "]"
    return _escaped(value)  # papermill's last resort: the value's text as a string


def codify(parameters: Mapping[str, Any], comment: str = "Parameters") -> str:
    return f"# {comment}\n" + "".join(f"{name} = {translate(value)}\n" for name, value in parameters.items())


# -- inspecting a notebook's parameters -------------------------------------------------------------


@dataclass(frozen=True)
class Parameter:
    name: str
    inferred_type_name: str
    default: str
    help: str


def first_tagged_cell(nb: nbformat.NotebookNode, tag: str) -> int:
    for index, cell in enumerate(nb.cells):
        if tag in cell.get("metadata", {}).get("tags", []):
            return index
    return -1


_COMMENT = re.compile(r"#\s*(?:type:\s*(?P<type>[^\s]*)\s*)?(?P<help>.*)$")


def inspect_parameters(nb: nbformat.NotebookNode) -> list[Parameter]:
    """The parameters declared in the first ``parameters``-tagged cell: name, type, default, help."""
    index = first_tagged_cell(nb, PARAMETERS_TAG)
    if index < 0:
        return []
    source = nb.cells[index].source
    # IPython magics and shell escapes are not Python: blank them out (keeping line numbers)
    source = "\n".join("" if line.lstrip().startswith(("%", "!")) else line for line in source.split("\n"))
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:  # papermill reads such a cell line by line, and so do we
        return _inspect_lines(nb.cells[index].source)
    lines = source.splitlines()
    out = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name, value, annotation = node.targets[0].id, node.value, None
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None:
            name, value, annotation = node.target.id, node.value, ast.get_source_segment(source, node.annotation)
        else:
            continue
        default = ast.get_source_segment(source, value) or ""
        last_line = lines[(node.end_lineno or node.lineno) - 1]
        tail = last_line[(node.end_col_offset or 0):]  # a comment after the value is its help
        match = _COMMENT.search(tail)
        if annotation:
            type_name = annotation.strip("'\"")
        elif match and match.group("type"):
            type_name = match.group("type")
        else:
            try:  # papermill's convention: "None" is unknown, "NoneType" a null default
                type_name = type(ast.literal_eval(value)).__name__
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                type_name = "None"
        out.append(Parameter(name, type_name, default, match.group("help").strip() if match else ""))
    return out


_ASSIGNMENT = re.compile(
    r"^(?P<target>\w[\w_]*)\s*(:\s*[\"']?(?P<annotation>\w[\w_\[\],\s]*)[\"']?\s*)?=\s*(?P<value>.*?)"
    r"(\s*#\s*(type:\s*(?P<type_comment>[^\s]*)\s*)?(?P<help>.*))?$")


def _inspect_lines(source: str) -> list[Parameter]:
    """papermill's inspection of a parameters cell that is not valid Python: one assignment per line
    (continuation lines joined to the assignment above), types only from annotations or type comments."""
    groups: list[list[str]] = []
    for line in source.splitlines():
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if "=" in line:
            if line.count("=") > 1:
                log.warning("Unable to parse line %r.", line)
                groups.append([])  # its continuation lines belong to no parameter
                continue
            groups.append([line])
        elif groups:
            groups[-1].append(line)
    out = []
    for group in groups:
        if not group:
            continue
        flat = "".join(part.split("#", 1)[0].strip() for part in group[:-1]) + group[-1].strip()
        match = _ASSIGNMENT.match(flat)
        if match is None:
            continue
        type_name = match.group("annotation") or match.group("type_comment") or "None"
        out.append(Parameter(match.group("target").strip(), type_name.strip(), (match.group("value") or "").strip(),
                             (match.group("help") or "").strip()))
    return out


# -- preparing a notebook for a run -----------------------------------------------------------------


def ensure_papermill_metadata(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Upgrade to the latest nbformat and add papermill's notebook and cell metadata skeleton."""
    import nbformat

    nb = nbformat.v4.upgrade(nb) or nb
    nb.metadata.setdefault("papermill", {
        "default_parameters": {}, "parameters": {}, "environment_variables": {}, "version": __version__,
    })
    for cell in nb.cells:
        cell.metadata.setdefault("tags", [])
        cell.metadata.setdefault("papermill", {})
    return nb


def inject_parameters(nb: nbformat.NotebookNode, parameters: Mapping[str, Any], *, report_mode: bool = False,
                      language: str | None = None, warn: Warn | None = None) -> nbformat.NotebookNode:
    """Add the ``injected-parameters`` cell after the ``parameters`` cell (or replace an earlier one).

    ``language`` (papermill's ``-l``) overrides the notebook's."""
    import copy

    nb = ensure_papermill_metadata(copy.deepcopy(nb))
    language = (language or nb.metadata.get("kernelspec", {}).get("language")
                or nb.metadata.get("language_info", {}).get("name") or "python")
    if language.lower() != "python":
        raise ParameterError(f"parameters can only be injected into Python notebooks; this one is {language}")
    try:
        declared: set[str] | None = {p.name for p in inspect_parameters(nb)}
    except ParameterError:  # papermill ignores inspection errors too
        declared = None
    for name in parameters:
        if declared is not None and name not in declared:
            (warn or log.warning)(f"Passed unknown parameter: {name}")
    import nbformat

    cell = nbformat.v4.new_code_cell(source=codify(parameters))
    cell.metadata["tags"] = [INJECTED_TAG]
    if report_mode:
        cell.metadata["jupyter"] = {"source_hidden": True}
    injected = first_tagged_cell(nb, INJECTED_TAG)
    declared_at = first_tagged_cell(nb, PARAMETERS_TAG)
    if injected >= 0:
        nb.cells = nb.cells[:injected] + [cell] + nb.cells[injected + 1:]
    elif declared_at >= 0:
        nb.cells = nb.cells[: declared_at + 1] + [cell] + nb.cells[declared_at + 1:]
    else:
        (warn or log.warning)("Input notebook does not contain a cell with tag 'parameters'")
        nb.cells = [cell, *nb.cells]
    nb.metadata.papermill["parameters"] = dict(parameters)
    return nb


def prepare_notebook(nb: nbformat.NotebookNode, parameters: Mapping[str, Any], *, input_path: str | None,
                     output_path: str | None, report_mode: bool = False, kernel_name: str | None = None,
                     language: str | None = None, warn: Warn | None = None) -> nbformat.NotebookNode:
    """Everything papermill does before executing: parameters, report mode, paths, no old error markers."""
    import copy

    import nbformat

    nb = copy.deepcopy(nb)
    if kernel_name:
        from runtimed.runtime.kernel import canonical_kernel_name, list_kernelspecs

        kernel_name = canonical_kernel_name(kernel_name)
        specs = list_kernelspecs()
        if kernel_name not in specs:
            raise RuntimedError(f"no kernel named {kernel_name!r}; available kernels: {', '.join(sorted(specs))}",
                                code="unknown_kernel")
        nb.metadata["kernelspec"] = nbformat.from_dict({
            "name": kernel_name, "display_name": specs[kernel_name]["display_name"],
            "language": specs[kernel_name]["language"]})
    nb = inject_parameters(nb, parameters, report_mode=report_mode, language=language, warn=warn) if parameters \
        else ensure_papermill_metadata(nb)
    if report_mode:
        for cell in nb.cells:
            if cell.cell_type == "code":
                cell.metadata.setdefault("jupyter", {})["source_hidden"] = True
    nb.metadata.papermill["input_path"] = input_path
    nb.metadata.papermill["output_path"] = output_path
    nb.cells = [c for c in nb.cells if ERROR_MARKER_TAG not in c.metadata.get("tags", [])]
    return nb
