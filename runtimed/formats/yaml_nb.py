"""YAML notebooks: a small hand-written format for parameterized runs.

    metadata: {title: Greeting, kernel: python3}      # or runtime: python3
    parameters: {name: world, count: 3}
    dependencies: [tabulate, "toolz>=0.12"]          # optional; requires_python: ">=3.11"
    cells:
      - id: greet
        source: print(f"hello {name}")
      - {id: notes, cell_type: markdown, source: "# Notes", tags: [doc]}
      - {id: ask, cell_type: ai, source: "Summarize the output above"}
      - {id: check, source: "print(total)", expect: {stdout_contains: "42"}, retry: 2, timeout: 30}

A code cell's ``expect``, ``retry``, ``timeout`` and ``run_if`` (automation: expectations.py,
runtime/cell_policy.py) are stored as its metadata ``runtimed.<key>``.

An ``ai`` cell's source is its prompt. ``metadata.ai`` (the notebook's) and a cell's ``ai``
key are AI settings, ``{provider, model, settings}``: they become ``aiSettingsSet`` on import.

Parameters become a first ``parameters``-tagged code cell of Python assignments
(papermill's convention), so the result runs and exports like any notebook.
``dependencies`` (PEP 508 strings) and ``requires_python`` become ``metadata.runtimed``'s
``dependencies`` / ``requires_python``: the notebook runs in a uv environment (docs/environments.md).
"""

from __future__ import annotations

import json
import math
from typing import Any

import nbformat
import yaml
from nbformat import v4

from runtimed.errors import InvalidNotebookError, RuntimedError
from runtimed.formats.ipynb import AI_SETTINGS_KEY, NATIVE_TYPE_KEY, NBFORMAT_ID
from runtimed.schema.dependencies import declared

TOP_KEYS = {"metadata", "parameters", "cells", "dependencies", "requires_python"}
RUN_KEYS = ("expect", "retry", "timeout", "run_if")
"""A cell's run policy and expectations (automation): stored as its metadata ``runtimed.<key>``."""
CELL_KEYS = {"id", "source", "cell_type", "tags", "metadata", "ai", *RUN_KEYS}
CELL_TYPES = ("code", "markdown", "raw", "ai")
PARAMETERS_TAG = "parameters"
KNOWN_KERNELS = {
    "python3": ("Python 3 (ipykernel)", "python"),
    "python": ("Python 3 (ipykernel)", "python"),
    "ir": ("R", "R"),
    "julia": ("Julia", "julia"),
}


def _fail(where: str, problem: str) -> InvalidNotebookError:
    return InvalidNotebookError(f"{where}: {problem}")


def _type_name(value: Any) -> str:
    names: dict[type, str] = {dict: "a mapping", list: "a list", str: "a string"}
    return names.get(type(value), type(value).__name__)


def _python_literal(value: Any, where: str) -> str:
    """A Python expression for a YAML value (only JSON-like values: they must round-trip as source)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid Python string literal
    if value is None or isinstance(value, bool | int):
        return repr(value)
    if isinstance(value, float):
        if math.isfinite(value):
            return repr(value)
        return f"float({str(value)!r})"
    if isinstance(value, list):
        return "[" + ", ".join(_python_literal(v, f"{where}[{i}]") for i, v in enumerate(value)) + "]"
    if isinstance(value, dict):
        items = []
        for k, v in value.items():
            if not isinstance(k, str):
                raise _fail(where, f"keys must be strings, got {k!r}")
            items.append(f"{k!r}: {_python_literal(v, f'{where}.{k}')}")
        return "{" + ", ".join(items) + "}"
    raise _fail(
        where,
        f"unsupported value {value!r} ({type(value).__name__}); use strings, numbers, lists or mappings",
    )


def parameters_source(parameters: dict[str, Any]) -> str:
    """Python assignments of the parameter defaults, one per line."""
    lines = []
    for name, value in parameters.items():
        if not isinstance(name, str) or not name.isidentifier():
            raise _fail(f"parameters.{name}", "not a valid Python identifier")
        lines.append(f"{name} = {_python_literal(value, f'parameters.{name}')}")
    return "\n".join(lines)


def _kernelspec(metadata: dict[str, Any]) -> dict[str, str] | None:
    kernel, runtime = metadata.get("kernel"), metadata.get("runtime")
    if kernel is not None and runtime is not None and kernel != runtime:
        raise _fail("metadata", f"kernel {kernel!r} and runtime {runtime!r} disagree; give one of them")
    name = kernel if kernel is not None else runtime
    if name is None:
        return None
    if not isinstance(name, str) or not name:
        raise _fail("metadata.kernel", f"expected a kernel name string, got {_type_name(name)}")
    display, language = KNOWN_KERNELS.get(name, (name, None))
    spec = {"name": name, "display_name": display}
    if language:
        spec["language"] = language
    return spec


def _ai_settings(value: Any, where: str, *, cell: bool = False) -> dict[str, Any]:
    """``{provider, model, settings}``; a cell may leave provider or model out (it keeps the notebook's)."""
    if not isinstance(value, dict):
        raise _fail(where, f"expected a mapping {{provider, model, settings}}, got {_type_name(value)}")
    unknown = set(value) - {"provider", "model", "settings"}
    if unknown:
        raise _fail(where, f"unknown keys {sorted(map(str, unknown))}; allowed: provider, model, settings")
    for key in ("provider", "model"):
        if cell and value.get(key, "") == "":
            continue
        if not isinstance(value.get(key), str) or not value[key]:
            raise _fail(f"{where}.{key}", "expected a non-empty string (e.g. provider: openai, model: gpt-4o-mini)")
    if not isinstance(value.get("settings", {}), dict):
        raise _fail(f"{where}.settings", f"expected a mapping, got {_type_name(value['settings'])}")
    return {"provider": value.get("provider", ""), "model": value.get("model", ""),
            "settings": dict(value.get("settings") or {})}


def _cell(item: Any, i: int, used: set[str]) -> nbformat.NotebookNode:
    where = f"cells[{i}]"
    if not isinstance(item, dict):
        raise _fail(where, f"expected a mapping with id and source, got {_type_name(item)}")
    unknown = set(item) - CELL_KEYS
    if unknown:
        raise _fail(where, f"unknown keys {sorted(map(str, unknown))}; allowed: {sorted(CELL_KEYS)}")
    cell_id = item.get("id", f"cell-{i + 1}")
    if not isinstance(cell_id, str) or not NBFORMAT_ID.match(cell_id):
        raise _fail(f"{where}.id", f"{cell_id!r} is not a valid cell id (1-64 letters, digits, '-' or '_')")
    if cell_id in used:
        raise _fail(f"{where}.id", f"duplicate cell id {cell_id!r}")
    used.add(cell_id)
    if "source" not in item:
        raise _fail(f"{where}.source", "missing")
    source = item["source"]
    if not isinstance(source, str):
        raise _fail(f"{where}.source", f"expected a string, got {_type_name(source)}")
    cell_type = item.get("cell_type", "code")
    if cell_type not in CELL_TYPES:
        raise _fail(f"{where}.cell_type", f"expected one of {', '.join(CELL_TYPES)}, got {cell_type!r}")
    metadata = item.get("metadata", {})
    if not isinstance(metadata, dict):
        raise _fail(f"{where}.metadata", f"expected a mapping, got {_type_name(metadata)}")
    metadata = dict(metadata)
    tags = item.get("tags")
    if tags is not None:
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise _fail(f"{where}.tags", "expected a list of strings")
        metadata["tags"] = list(tags)
    run = {key: item[key] for key in RUN_KEYS if key in item}
    if run:
        metadata["runtimed"] = {**dict(metadata.get("runtimed") or {}), **run}
    if "ai" in item and cell_type != "ai":
        raise _fail(f"{where}.ai", "AI settings belong to a cell with cell_type: ai")
    if cell_type == "ai":  # stored as the .ipynb export stores it: a markdown cell remembering its type
        native: dict[str, Any] = {"cell_type": "ai", "prompt": source}
        if "ai" in item:
            native[AI_SETTINGS_KEY] = _ai_settings(item["ai"], f"{where}.ai", cell=True)
        metadata[NATIVE_TYPE_KEY] = {**dict(metadata.get(NATIVE_TYPE_KEY) or {}), **native}
        return v4.new_markdown_cell(source=source, id=cell_id, metadata=metadata)
    maker = {"code": v4.new_code_cell, "markdown": v4.new_markdown_cell, "raw": v4.new_raw_cell}[cell_type]
    return maker(source=source, id=cell_id, metadata=metadata)


def _dependencies(doc: dict[str, Any], nb_metadata: dict[str, Any]) -> None:
    """Top-level ``dependencies`` / ``requires_python`` into ``metadata.runtimed`` (validated)."""
    if "dependencies" not in doc and "requires_python" not in doc:
        return
    deps = doc.get("dependencies") or []
    settings = dict(nb_metadata.get("runtimed") or {}) if isinstance(nb_metadata.get("runtimed"), dict) else {}
    settings["dependencies"] = deps
    if doc.get("requires_python") is not None:
        settings["requires_python"] = doc["requires_python"]
    try:
        declared({"runtimed": settings})
    except RuntimedError as exc:
        raise _fail("dependencies", exc.message) from None
    nb_metadata["runtimed"] = settings


def read_yaml_notebook(text: str) -> tuple[nbformat.NotebookNode, dict[str, Any]]:
    """Parse a YAML notebook; return the nbformat notebook and its parameter defaults."""
    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise InvalidNotebookError(f"not valid YAML: {where}{problem}") from None
    if not isinstance(doc, dict):
        raise InvalidNotebookError(
            f"a YAML notebook is a mapping with metadata, parameters and cells; got {_type_name(doc)}"
        )
    unknown = set(doc) - TOP_KEYS
    if unknown:
        raise InvalidNotebookError(
            f"unknown top-level keys {sorted(map(str, unknown))}; allowed: {sorted(TOP_KEYS)}"
        )
    metadata = doc.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise _fail("metadata", f"expected a mapping, got {_type_name(metadata)}")
    parameters = doc.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise _fail("parameters", f"expected a mapping of name: default, got {_type_name(parameters)}")
    cells = doc.get("cells")
    if cells is None:
        cells = []
    if not isinstance(cells, list):
        raise _fail("cells", f"expected a list, got {_type_name(cells)}")

    nb_metadata: dict[str, Any] = {k: v for k, v in metadata.items() if k not in ("kernel", "runtime", "ai")}
    if "ai" in metadata:
        settings = nb_metadata.get(NATIVE_TYPE_KEY)
        nb_metadata[NATIVE_TYPE_KEY] = {**(settings if isinstance(settings, dict) else {}),
                                        AI_SETTINGS_KEY: _ai_settings(metadata["ai"], "metadata.ai")}
    title = nb_metadata.get("title")
    if title is not None and not isinstance(title, str):
        raise _fail("metadata.title", f"expected a string, got {_type_name(title)}")
    _dependencies(doc, nb_metadata)
    kernelspec = _kernelspec(metadata)
    if kernelspec is not None:
        nb_metadata["kernelspec"] = kernelspec
        if "language" in kernelspec:
            nb_metadata.setdefault("language_info", {"name": kernelspec["language"]})
    used: set[str] = set()
    nb_cells = [_cell(item, i, used) for i, item in enumerate(cells)]
    if parameters:
        param_id = PARAMETERS_TAG
        n = 1
        while param_id in used:
            param_id, n = f"{PARAMETERS_TAG}-{n}", n + 1
        param_cell = v4.new_code_cell(
            source=parameters_source(parameters), id=param_id, metadata={"tags": [PARAMETERS_TAG]}
        )
        nb_cells.insert(0, param_cell)
    try:
        nb = v4.new_notebook(metadata=nbformat.from_dict(nb_metadata), cells=nb_cells)
        nbformat.validate(nb)
    except nbformat.ValidationError as exc:
        raise InvalidNotebookError(f"metadata: not valid notebook metadata: {exc.message}") from None
    return nb, dict(parameters)


def _literal_block(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


class _Dumper(yaml.SafeDumper):
    pass


_Dumper.add_representer(str, _literal_block)


def write_yaml_notebook(nb: Any) -> str:
    """The cells and kernel of ``nb`` as a YAML notebook (outputs are not part of the format)."""
    metadata = dict(nb.get("metadata") or {})
    out_meta: dict[str, Any] = {}
    if isinstance(metadata.get("title"), str):
        out_meta["title"] = metadata["title"]
    kernel = (metadata.get("kernelspec") or {}).get("name")
    if kernel:
        out_meta["kernel"] = kernel
    native_meta = metadata.get(NATIVE_TYPE_KEY)
    ai = native_meta.get(AI_SETTINGS_KEY) if isinstance(native_meta, dict) else None
    if isinstance(ai, dict):
        out_meta["ai"] = json.loads(json.dumps(ai))  # plain data (a NotebookNode is not representable)
    cells = []
    for cell in nb.get("cells") or []:
        item: dict[str, Any] = {"id": cell.get("id")}
        cell_meta = dict(cell.get("metadata") or {})
        native = cell_meta.get(NATIVE_TYPE_KEY)
        source = cell.get("source", "")
        source = "".join(source) if isinstance(source, list) else source
        if isinstance(native, dict) and native.get("cell_type") == "ai":  # the prompt; the answer is an output
            native = {k: v for k, v in native.items() if k not in ("cell_type", "prompt", "outputs",
                                                                     "execution_count", AI_SETTINGS_KEY)}
            item["cell_type"] = "ai"
            source = cell_meta[NATIVE_TYPE_KEY].get("prompt", source)
            if isinstance(cell_meta[NATIVE_TYPE_KEY].get(AI_SETTINGS_KEY), dict):
                item["ai"] = json.loads(json.dumps(cell_meta[NATIVE_TYPE_KEY][AI_SETTINGS_KEY]))
            if native:
                cell_meta[NATIVE_TYPE_KEY] = native
            else:
                cell_meta.pop(NATIVE_TYPE_KEY)
        elif cell.get("cell_type", "code") != "code":
            item["cell_type"] = cell["cell_type"]
        item["source"] = source
        own = cell_meta.get(NATIVE_TYPE_KEY)
        if isinstance(own, dict) and any(key in own for key in RUN_KEYS):  # expect, retry, ...: cell keys again
            item.update({key: json.loads(json.dumps(own[key])) for key in RUN_KEYS if key in own})
            rest = {k: v for k, v in own.items() if k not in RUN_KEYS}
            if rest:
                cell_meta[NATIVE_TYPE_KEY] = rest
            else:
                cell_meta.pop(NATIVE_TYPE_KEY)
        tags = cell_meta.pop("tags", None)
        if tags:
            item["tags"] = list(tags)
        if cell_meta:
            item["metadata"] = cell_meta
        cells.append(item)
    doc: dict[str, Any] = {"metadata": out_meta} if out_meta else {}
    settings = metadata.get("runtimed")
    if isinstance(settings, dict) and isinstance(settings.get("dependencies"), list):
        doc["dependencies"] = list(settings["dependencies"])
        if isinstance(settings.get("requires_python"), str):
            doc["requires_python"] = settings["requires_python"]
    doc["cells"] = cells
    return yaml.dump(doc, Dumper=_Dumper, sort_keys=False, allow_unicode=True)
