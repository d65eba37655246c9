"""The architecture, checked: who may import whom, where SQL lives, and one error registry.

Imports go one way (schema <- store <- server/runtime/client <- automation/agents/cli), counted
with function-level imports too, so that a cycle cannot hide behind a late import.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from runtimed.errors import ErrorCode, ExitCode

PACKAGE = Path(__file__).resolve().parent.parent / "runtimed"

# package -> the packages it may import (besides itself); the top-level modules count as packages
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "settings": set(),
    "tasks": set(),
    "home_files": set(),  # os and json only: the plain runt run reads the home before anything else loads
    "home": {"errors", "home_files"},
    "durations": {"errors"},
    "schema": {"errors", "settings"},
    "store": {"schema", "errors"},
    "formats": {"schema", "errors"},
    "client": {"tasks", "schema", "formats", "errors", "home"},
    "runtime": {"tasks", "client", "schema", "errors", "home", "settings"},
    "agents": {"client", "formats", "schema", "errors", "home"},
    "automation": {"tasks", "client", "runtime", "formats", "schema", "errors", "home", "settings"},
    # the daemon hosts the store, the supervised runtimes and the MCP endpoint (which speaks as a client)
    "server": {"tasks", "store", "schema", "runtime", "client", "formats", "agents", "errors", "home", "durations", "settings"},
    "cli": {"server", "runtime", "client", "agents", "automation", "formats", "schema", "store", "errors", "home",
            "home_files", "durations", "tasks"},
    "web": set(),
    "__init__": {"client", "automation", "errors"},
}
SQL_PACKAGES = {"schema", "store"}
"""Only these may touch a database connection or hold SQL: everyone else reads through views."""


def _modules() -> list[tuple[str, Path, ast.Module]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE)
        package = rel.parts[0].removesuffix(".py") if len(rel.parts) > 1 else rel.stem
        out.append((package, path, ast.parse(path.read_text(), str(path))))
    return out


def _imported_packages(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            parts = name.split(".")
            if parts[0] == "runtimed" and len(parts) > 1 and parts[1] != "__version__":
                found.add(parts[1])
    return found


def test_imports_follow_the_layers() -> None:
    wrong = []
    for package, path, tree in _modules():
        allowed = ALLOWED.get(package)
        assert allowed is not None, f"{package} (from {path}) is a new package: give it a place in ALLOWED"
        for target in _imported_packages(tree) - {package}:
            if target not in allowed:
                wrong.append(f"{path.relative_to(PACKAGE.parent)} imports runtimed.{target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_the_package_graph_has_no_cycle() -> None:
    edges: dict[str, set[str]] = {}
    for package, _path, tree in _modules():
        edges.setdefault(package, set()).update(_imported_packages(tree) - {package})
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> None:
        if node in done:
            return
        assert node not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(node):], node])
        visiting.append(node)
        for target in edges.get(node, ()):
            visit(target)
        visiting.pop()
        done.add(node)

    for node in edges:
        visit(node)


def test_the_ledger_of_allowed_edges_cannot_pass_a_cycle() -> None:
    """The checker itself: a cycle put into a copy of the graph is found."""
    with pytest.raises(AssertionError, match="import cycle"):
        edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}}
        visiting: list[str] = []

        def visit(node: str) -> None:
            assert node not in visiting, "import cycle: " + " -> ".join([*visiting, node])
            visiting.append(node)
            for target in edges[node]:
                visit(target)
            visiting.pop()

        visit("a")


def test_only_schema_and_store_touch_the_database() -> None:
    wrong = []
    sql = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b[\s\S]*\b(FROM|INTO|SET)\b")
    for package, path, tree in _modules():
        if package in SQL_PACKAGES:
            continue
        for node in ast.walk(tree):
            where = f"{path.relative_to(PACKAGE.parent)}:{getattr(node, 'lineno', '?')}"
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                if "sqlite3" in names:
                    wrong.append(f"{where} imports sqlite3")
            elif isinstance(node, ast.Attribute) and node.attr in ("conn", "_conn"):
                wrong.append(f"{where} uses .{node.attr}")
            elif (isinstance(node, ast.Constant) and isinstance(node.value, str) and sql.search(node.value)
                  and not (package == "cli" and "runt query" in node.value)):
                wrong.append(f"{where} holds SQL: {node.value[:60]!r}")
    assert not wrong, "reads of the projection belong in schema/views.py:\n" + "\n".join(wrong)


def _error_codes_used() -> set[tuple[str, str]]:
    """Every error code written as a literal: code="…", reject("…", …), ProtocolError("…", …), code = "…"."""
    used = set()
    for _package, path, tree in _modules():
        for node in ast.walk(tree):
            where = str(path.relative_to(PACKAGE.parent))
            if isinstance(node, ast.Call):
                for kw in node.keywords:
                    if kw.arg == "code" and isinstance(kw.value, ast.Constant) and isinstance(kw.value.value, str):
                        used.add((kw.value.value, where))
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                if name in ("reject", "ProtocolError", "close_with_error", "error_response") and node.args:
                    first = node.args[0] if name != "close_with_error" else (node.args[1] if len(node.args) > 1 else None)
                    if isinstance(first, ast.Constant) and isinstance(first.value, str):
                        used.add((first.value, where))
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if (isinstance(item, ast.Assign) and len(item.targets) == 1
                            and isinstance(item.targets[0], ast.Name) and item.targets[0].id == "code"
                            and isinstance(item.value, ast.Constant) and isinstance(item.value.value, str)):
                        used.add((item.value.value, where))
    return used


def test_every_error_code_is_registered() -> None:
    used = _error_codes_used()
    assert len(used) > 50  # the scan really finds the codes
    missing = sorted(f"{code} ({where})" for code, where in used if not ErrorCode.known(code))
    assert not missing, "codes missing from runtimed.errors.ErrorCode:\n" + "\n".join(missing)


def test_the_registry_is_consistent() -> None:
    codes = [member.code for member in ErrorCode]
    assert len(codes) == len(set(codes)), "a code is registered twice"
    for member in ErrorCode:
        assert re.fullmatch(r"[a-z][a-z_]*", member.code), member
        assert 400 <= member.http_status < 600, member
        assert isinstance(member.exit_code, ExitCode), member
    assert ErrorCode.lookup("no_such_code_from_a_newer_daemon") is ErrorCode.RUNTIMED_ERROR


def test_exit_codes_are_documented() -> None:
    cli_doc = (PACKAGE.parent / "docs" / "cli.md").read_text()
    for code in ExitCode:
        assert re.search(rf"^\|\s*{code.value}\s*\|", cli_doc, re.M), f"docs/cli.md lists no exit code {code.value}"
