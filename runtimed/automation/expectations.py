"""``runt run`` result validation: expectations about the cells' outputs, variables and durations.

Given per cell in the notebook (metadata ``runtimed.expect``; YAML notebooks: ``expect:``) or in a
file (``--expect checks.yaml``)::

    cells:
      train:                          # a cell id, or tag:NAME for every cell with that tag
        stdout_contains: "epoch 3"    # a string or a list of strings
        stdout_matches: "loss=0\\.\\d+"  # a regular expression (re.search), or a list
        no_stderr: true
        result_equals: 42             # the execute_result's text/plain (a non-string: its Python repr)
        variables: {accuracy: "0.8 <= accuracy <= 1"}   # evaluated in the kernel right after the cell
        max_duration: 60              # seconds
    variables: {rows: "rows > 0"}     # evaluated in the kernel after the last cell
    max_duration: 600                 # the whole run

A failed expectation fails the run (exit 1); every result is in the output notebook's
``runtimed_run`` metadata (the notebook's lists the failures) and in the run summary.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtimed.errors import RuntimedError

CHECKS = ("stdout_contains", "stdout_matches", "no_stderr", "result_equals", "variables", "max_duration")
NOTEBOOK_CHECKS = ("variables", "max_duration")
NOTEBOOK = "notebook"
"""The key of notebook-level checks (variables after the last cell, the run's duration)."""


class ExpectationError(RuntimedError):
    code = "invalid_expectations"


@dataclass
class Plan:
    cells: dict[str, dict[str, Any]] = field(default_factory=dict)
    """cell id -> its checks (the notebook's and the file's, merged)."""
    notebook: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.cells or self.notebook)

    def variable_cells(self) -> set[str]:
        return {cell_id for cell_id, checks in self.cells.items() if checks.get("variables")}


def _strings(value: Any, where: str) -> list[str]:
    items = value if isinstance(value, list) else [value]
    if not items or not all(isinstance(v, str) for v in items):
        raise ExpectationError(f"{where}: expected a string or a list of strings, not {value!r}")
    return items


def _validate(checks: Any, where: str, allowed: Sequence[str] = CHECKS) -> dict[str, Any]:
    if not isinstance(checks, Mapping):
        raise ExpectationError(f"{where}: expected a mapping of checks ({', '.join(allowed)}), not {checks!r}")
    unknown = sorted(set(checks) - set(allowed))
    if unknown:
        raise ExpectationError(f"{where}: unknown checks {unknown}; known: {', '.join(allowed)}")
    out = dict(checks)
    for key in ("stdout_contains", "stdout_matches"):
        if key in out:
            out[key] = _strings(out[key], f"{where}.{key}")
    for pattern in out.get("stdout_matches", []):
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ExpectationError(f"{where}.stdout_matches: {pattern!r} is not a regular expression ({exc})") from None
    if "no_stderr" in out and not isinstance(out["no_stderr"], bool):
        raise ExpectationError(f"{where}.no_stderr: expected true or false, not {out['no_stderr']!r}")
    if "max_duration" in out:
        value = out["max_duration"]
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ExpectationError(f"{where}.max_duration: expected a positive number of seconds, not {value!r}")
    if "variables" in out:
        variables = out["variables"]
        if not isinstance(variables, Mapping) or not all(
                isinstance(k, str) and k.isidentifier() and isinstance(v, str) and v.strip()
                for k, v in variables.items()):
            raise ExpectationError(f"{where}.variables: expected a mapping of variable name: Python expression "
                                   f"(e.g. {{accuracy: 'accuracy > 0.8'}}), not {variables!r}")
    return out


def _cell_checks(cell: Mapping[str, Any]) -> Any:
    own = cell.get("metadata", {}).get("runtimed")
    return own.get("expect") if isinstance(own, Mapping) else None


def load(nb: Any, path: str | None = None) -> Plan:
    """The expectations of a prepared notebook and of ``--expect PATH``; ExpectationError names what is wrong."""
    plan = Plan()
    ids = [cell.get("id") for cell in nb.cells]
    for index, cell in enumerate(nb.cells):
        checks = _cell_checks(cell)
        if checks is not None:
            plan.cells[cell["id"]] = _validate(checks, f"cell {index} (id {cell['id']}) metadata runtimed.expect")
    if path is None:
        return plan
    import fsspec
    import yaml

    try:
        with fsspec.open(path, "r", encoding="utf-8") as f:
            doc = yaml.safe_load(f.read())
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise ExpectationError(f"--expect {path}: cannot read the file ({exc})") from None
    except yaml.YAMLError as exc:
        raise ExpectationError(f"--expect {path}: not valid YAML ({exc})") from None
    if not isinstance(doc, Mapping):
        raise ExpectationError(f"--expect {path}: expected a mapping with cells, variables and max_duration")
    unknown = sorted(set(doc) - {"cells", *NOTEBOOK_CHECKS})
    if unknown:
        raise ExpectationError(f"--expect {path}: unknown keys {unknown}; known: cells, variables, max_duration")
    plan.notebook = _validate({k: v for k, v in doc.items() if k != "cells"}, f"--expect {path}", NOTEBOOK_CHECKS)
    cells = doc.get("cells") or {}
    if not isinstance(cells, Mapping):
        raise ExpectationError(f"--expect {path}: cells: expected a mapping of cell id (or tag:NAME): checks")
    for key, checks in cells.items():
        where = f"--expect {path}: cells.{key}"
        key = str(key)
        if key.startswith("tag:"):
            targets = [c["id"] for c in nb.cells if key[4:] in c.get("metadata", {}).get("tags", [])]
        else:
            targets = [key] if key in ids else []
        if not targets:
            raise ExpectationError(f"{where}: no such cell in the notebook (cell ids: {', '.join(map(str, ids))})")
        valid = _validate(checks, where)
        for cell_id in targets:
            plan.cells[cell_id] = {**plan.cells.get(cell_id, {}), **valid}
    return plan


def variable_expressions(variables: Mapping[str, str]) -> dict[str, str]:
    """The user_expressions that check ``variables``: each variable's repr and the expression's truth."""
    out = {}
    for i, (name, expression) in enumerate(variables.items()):
        out[f"value{i}"] = name
        out[f"ok{i}"] = f"bool({expression})"
    return out


def variable_results(variables: Mapping[str, str], results: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for i, (name, expression) in enumerate(variables.items()):
        value, ok = results.get(f"value{i}") or {}, results.get(f"ok{i}") or {}
        check = f"variables.{name}"
        if value.get("status") != "ok":
            out.append(_result(check, False, f"{name} is not defined ({value.get('ename')}: {value.get('evalue')})"))
        elif ok.get("status") != "ok":
            out.append(_result(check, False, f"{expression!r} raised {ok.get('ename')}: {ok.get('evalue')}"))
        else:
            shown = (value.get("data") or {}).get("text/plain", "")
            passed = (ok.get("data") or {}).get("text/plain") == "True"
            out.append(_result(check, passed, f"{expression!r} is {'true' if passed else 'false'} ({name} = "
                                              f"{shown[:200]})"))
    return out


def _result(check: str, ok: bool, message: str) -> dict[str, Any]:
    return {"check": check, "ok": ok, "message": message}


def _text(outputs: Sequence[Mapping[str, Any]], name: str) -> str:
    return "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream" and o.get("name") == name)


def check_cell(cell: Mapping[str, Any], checks: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The output checks of one executed cell (its variables are checked in the kernel, not here)."""
    outputs = cell.get("outputs", [])
    stdout = _text(outputs, "stdout")
    results = []
    for needle in checks.get("stdout_contains", []):
        results.append(_result("stdout_contains", needle in stdout,
                               f"stdout {'contains' if needle in stdout else 'does not contain'} {needle!r}"))
    for pattern in checks.get("stdout_matches", []):
        found = re.search(pattern, stdout) is not None
        results.append(_result("stdout_matches", found, f"stdout {'matches' if found else 'does not match'} "
                                                        f"{pattern!r}"))
    if checks.get("no_stderr"):
        stderr = _text(outputs, "stderr")
        results.append(_result("no_stderr", not stderr, "no stderr" if not stderr else
                               f"stderr: {stderr.strip()[:200]!r}"))
    if "result_equals" in checks:
        want = checks["result_equals"]
        want = want if isinstance(want, str) else repr(want)
        got = next((o.get("data", {}).get("text/plain") for o in outputs if o.get("output_type") == "execute_result"),
                   None)
        if isinstance(got, list):
            got = "".join(got)
        results.append(_result("result_equals", got == want, f"result is {got!r}" + ("" if got == want else
                                                                                    f", expected {want!r}")))
    if "max_duration" in checks:
        duration = (cell.get("metadata", {}).get("papermill") or {}).get("duration")
        ok = duration is not None and duration <= checks["max_duration"]
        results.append(_result("max_duration", ok, f"ran {duration:.3f} s (at most {checks['max_duration']:g} s)"
                               if duration is not None else "did not run"))
    return results


def evaluate(nb: Any, plan: Plan, variables: Mapping[str, list[dict[str, Any]]], run_duration: float
             ) -> list[dict[str, Any]]:
    """Check ``nb`` (the output notebook) against ``plan``; record the results in its ``runtimed_run``
    metadata and return the failures: ``{cell_id, index, check, message}`` (cell_id None for the notebook's).

    A cell that did not run (the run stopped before it, or it was skipped) is not checked."""
    from runtimed.automation.steps import RECORD_KEY

    failures: list[dict[str, Any]] = []
    total = 0
    for index, cell in enumerate(nb.cells):
        checks = plan.cells.get(cell.get("id"))
        status = (cell.get("metadata", {}).get("papermill") or {}).get("status")
        if not checks or status not in ("completed", "failed"):
            continue
        results = check_cell(cell, checks) + variables.get(cell["id"], [])
        total += len(results)
        record = dict(cell.metadata.get(RECORD_KEY) or {})
        record["expectations"] = results
        cell.metadata[RECORD_KEY] = record
        failures += [{"cell_id": cell["id"], "index": index, "check": r["check"], "message": r["message"]}
                     for r in results if not r["ok"]]
    notebook_results = list(variables.get(NOTEBOOK, []))
    if "max_duration" in plan.notebook:
        limit = plan.notebook["max_duration"]
        notebook_results.append(_result("max_duration", run_duration <= limit,
                                        f"the run took {run_duration:.3f} s (at most {limit:g} s)"))
    total += len(notebook_results)
    failures += [{"cell_id": None, "index": None, "check": r["check"], "message": r["message"]}
                 for r in notebook_results if not r["ok"]]
    if total:
        record = dict(nb.metadata.get(RECORD_KEY) or {})
        record["expectations"] = {"checked": total, "passed": total - len(failures), "failed": failures,
                                  "notebook": notebook_results}
        nb.metadata[RECORD_KEY] = record
    return failures


class Checker:
    """A run's expectations: variables checked in the kernel as the run goes, outputs once it is done."""

    def __init__(self, plan: Plan, evaluate: Any) -> None:
        self.plan = plan
        self.evaluate = evaluate
        self.variables: dict[str, list[dict[str, Any]]] = {}

    async def _variables(self, key: str, variables: Mapping[str, str]) -> None:
        results = await self.evaluate(variable_expressions(variables))
        self.variables[key] = variable_results(variables, results)

    async def after_cell(self, cell_id: str) -> None:
        variables = self.plan.cells.get(cell_id, {}).get("variables")
        if variables:
            await self._variables(cell_id, variables)

    async def at_end(self) -> None:
        """After the last cell, while the kernel is still there: the notebook-level variables."""
        if self.plan.notebook.get("variables"):
            await self._variables(NOTEBOOK, self.plan.notebook["variables"])

    def finish(self, nb: Any, run_duration: float) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The failures, and the metadata events that record every result in the log."""
        from runtimed.automation.steps import RECORD_KEY
        from runtimed.schema.events import make_event

        failures = evaluate(nb, self.plan, self.variables, run_duration)
        events = [make_event("cellMetadataSet", cell_id=cell["id"], key=RECORD_KEY, value=cell.metadata[RECORD_KEY])
                  for cell in nb.cells if "expectations" in (cell.get("metadata", {}).get(RECORD_KEY) or {})]
        if RECORD_KEY in nb.metadata:
            events.append(make_event("notebookMetadataSet", key=RECORD_KEY, value=nb.metadata[RECORD_KEY]))
        return failures, events
