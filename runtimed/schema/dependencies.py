"""A notebook's declared Python dependencies: where they are read from, validated, and hashed.

One place for the rules every peer applies the same way (the daemon that builds environments,
``Session``, the CLI, the YAML format). Sources, first match wins:

1. ``metadata.runtimed.dependencies`` (with ``runtimed.requires_python``, ``runtimed.index_url``);
2. nteract's ``metadata.runt.uv.dependencies`` (with ``runt.uv.requires-python``);
3. a PEP 723 ``# /// script`` block in the first code cell;
4. ``pyproject.toml`` next to a notebook opened from disk (``runtimed.notebook_dir``, which
   ``Session.open_notebook`` records), ``[project] dependencies`` and ``requires-python``.

A request is identified by a hash of its normalized content, so notebooks that declare the same
dependencies share one environment, and an approval is bound to that exact list.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import tomllib
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from runtimed.errors import RuntimedError

__all__ = [
    "APPROVAL_TOOL",
    "EnvRequest",
    "add_dependency",
    "declared",
    "parse_pep723",
    "remove_dependency",
    "resolve",
    "validate_requirement",
]

APPROVAL_TOOL = "install_dependencies"
"""The tool name of the approval that lets the daemon install a notebook's dependencies."""
KERNEL_PACKAGE = "ipykernel"
"""Added to every environment: the kernel runs inside it."""
_PEP723 = re.compile(r"(?m)^# /// (?P<type>[a-zA-Z0-9-]+)$\s(?P<content>(^#(| .*)$\s)+)^# ///$")
_PYTHON_VERSION = re.compile(r"^\d+(\.\d+){0,2}$")


class DependencyError(RuntimedError):
    """A declared dependency, Python version or index URL is not valid."""

    code = "invalid_dependency"


def validate_requirement(text: str) -> str:
    """A PEP 508 requirement in its normalized form; a clear error when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise DependencyError(f"{text!r} is not a dependency: give a PEP 508 requirement such as 'pandas>=2'")
    try:
        return str(Requirement(text.strip()))
    except InvalidRequirement as exc:
        raise DependencyError(f"{text!r} is not a valid PEP 508 requirement ({exc}); write e.g. 'pandas', "
                              "'pandas>=2,<3' or 'pandas[excel]==2.2'") from None


def _validate_python(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        text = value.strip()
        if _PYTHON_VERSION.match(text):
            return text
        try:
            SpecifierSet(text)
            return text
        except InvalidSpecifier:
            pass
    raise DependencyError(f"requires_python {value!r} is neither a version ('3.12') nor a specifier ('>=3.11')")


def _validate_index(value: Any) -> str | None:
    if value is None or value == "":
        return None
    parts = urlsplit(value) if isinstance(value, str) else None
    if parts is None or parts.scheme not in ("http", "https", "file") or not (parts.netloc or parts.path):
        raise DependencyError(f"index_url {value!r} is not an http(s) or file URL")
    if parts.username or parts.password:
        raise DependencyError("index_url must not carry credentials (the notebook's log keeps it forever); give "
                              "them to the daemon instead (UV_INDEX_URL or a netrc file in its environment)")
    return str(value)


@dataclass(frozen=True)
class EnvRequest:
    """What an environment must hold: normalized requirements, a Python, an index."""

    dependencies: tuple[str, ...]
    requires_python: str | None = None
    index_url: str | None = None
    source: str = "runtimed"
    """Where it was declared: ``runtimed``, ``runt.uv``, ``pep723`` or ``pyproject``."""

    @property
    def key(self) -> str:
        """The cache key: same dependencies, Python and index give the same environment."""
        python = self.requires_python or f"{sys.version_info[0]}.{sys.version_info[1]}"
        blob = json.dumps({"deps": sorted(set(self.dependencies)), "python": python, "index": self.index_url,
                           "kernel": KERNEL_PACKAGE, "layout": 2}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    @property
    def names(self) -> tuple[str, ...]:
        """The requirements' distribution names."""
        return tuple(Requirement(d).name for d in self.dependencies)

    def describe(self) -> dict[str, Any]:
        return {"dependencies": list(self.dependencies), "requires_python": self.requires_python,
                "index_url": self.index_url, "source": self.source, "hash": self.key}


def _request(deps: Any, python: Any, index: Any, source: str) -> EnvRequest:
    if not isinstance(deps, list):
        raise DependencyError(f"{source} dependencies must be a list of PEP 508 strings, not {type(deps).__name__}")
    return EnvRequest(tuple(validate_requirement(d) for d in deps), _validate_python(python), _validate_index(index),
                      source)


def parse_pep723(source: str) -> dict[str, Any] | None:
    """The ``script`` metadata of a PEP 723 block in ``source`` (None when there is none)."""
    found = [m for m in _PEP723.finditer(source if source.endswith("\n") else source + "\n")
             if m.group("type") == "script"]
    if not found:
        return None
    if len(found) > 1:
        raise DependencyError("the first code cell has more than one '# /// script' block; keep one")
    content = "".join(line[2:] if line.startswith("# ") else line[1:]
                      for line in found[0].group("content").splitlines(keepends=True))
    try:
        return tomllib.loads(content)
    except tomllib.TOMLDecodeError as exc:
        raise DependencyError(f"the '# /// script' block of the first code cell is not valid TOML: {exc}") from None


def _pyproject(directory: str) -> dict[str, Any] | None:
    path = os.path.join(directory, "pyproject.toml")
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise DependencyError(f"{path} cannot be read as TOML: {exc}") from None
    project = data.get("project")
    return project if isinstance(project, dict) and "dependencies" in project else None


def declared(metadata: dict[str, Any]) -> EnvRequest | None:
    """The dependencies declared in the notebook's metadata (``runtimed`` first, then nteract's ``runt.uv``)."""
    settings = metadata.get("runtimed")
    if isinstance(settings, dict) and "dependencies" in settings:
        return _request(settings["dependencies"], settings.get("requires_python"), settings.get("index_url"),
                        "runtimed")
    runt = metadata.get("runt")
    uv = runt.get("uv") if isinstance(runt, dict) else None
    if isinstance(uv, dict) and "dependencies" in uv:
        return _request(uv["dependencies"], uv.get("requires-python"), uv.get("index-url"), "runt.uv")
    return None


def resolve(metadata: dict[str, Any], first_code: str | None = None, notebook_dir: str | None = None
            ) -> EnvRequest | None:
    """The notebook's dependency request by precedence (module docstring); None: it declares none.

    An empty list counts as declared "no dependencies" and stops the search (the default environment).
    """
    request = declared(metadata)
    if request is None and first_code:
        script = parse_pep723(first_code)
        if script is not None:
            request = _request(script.get("dependencies", []), script.get("requires-python"), None, "pep723")
    if request is None and notebook_dir:
        project = _pyproject(notebook_dir)
        if project is not None:
            request = _request(project["dependencies"], project.get("requires-python"), None, "pyproject")
    if request is None or not request.dependencies:
        return None
    return request


def _name(requirement: str) -> str:
    return canonicalize_name(Requirement(requirement).name)


def add_dependency(metadata: dict[str, Any], requirement: str) -> dict[str, Any]:
    """The new ``runtimed`` metadata value with ``requirement`` added (replacing one of the same package name).

    Dependencies declared only in nteract's ``runt.uv`` are carried over, so adding one keeps the rest."""
    normalized = validate_requirement(requirement)
    settings = dict(metadata.get("runtimed") or {}) if isinstance(metadata.get("runtimed"), dict) else {}
    current = declared(metadata)
    deps = list(current.dependencies) if current is not None else []
    if current is not None and current.source == "runt.uv" and current.requires_python:
        settings.setdefault("requires_python", current.requires_python)
    name = _name(normalized)
    deps = [d for d in deps if _name(d) != name] + [normalized]
    return {**settings, "dependencies": deps}


def remove_dependency(metadata: dict[str, Any], package: str) -> tuple[dict[str, Any], bool]:
    """The new ``runtimed`` metadata value without the package (by name, case-insensitive); and whether it was there."""
    settings = dict(metadata.get("runtimed") or {}) if isinstance(metadata.get("runtimed"), dict) else {}
    current = declared(metadata)
    deps = list(current.dependencies) if current is not None else []
    try:
        name = canonicalize_name(Requirement(package.strip()).name)
    except InvalidRequirement:
        name = canonicalize_name(package.strip())
    kept = [d for d in deps if _name(d) != name]
    return {**settings, "dependencies": kept}, len(kept) != len(deps)
