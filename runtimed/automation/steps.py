"""A run that stops between cells: per-cell retries, ``run_if`` conditions, checks after a cell, ``--retries``.

A plain run requests every cell as one stop-on-error batch (run.py). When a cell has a policy
(runtime/cell_policy.py) or expectations need the kernel's state after a cell, or ``--retries``
is set, the run goes in segments instead: a segment is a stop-on-error batch that ends at a
cell with retries or checks and starts at a cell with ``run_if``. Between segments the run
evaluates conditions in the kernel (``POST /api/notebooks/{id}/evaluate``), retries a failed
cell after its backoff, and runs the checks. Every attempt is its own execution in the log;
skips and attempts are also recorded as the cells' ``runtimed_run`` metadata (so the live
notebook and the output notebook show them), and run-level restarts as the notebook's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtimed.client.sync import SyncClient
from runtimed.errors import RuntimedError
from runtimed.runtime.cell_policy import CellPolicy
from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.schema.ids import new_id

RECORD_KEY = "runtimed_run"
"""Cell and notebook metadata key of what a run did beyond papermill (attempts, skips, expectations)."""
RESTART_KINDS = frozenset({"KernelDied", "KernelRestarted", "RuntimeLost"})
"""Errors after which the kernel's state is gone: ``--retries`` runs the notebook again from the start."""
EVALUATE_TIMEOUT_S = 60.0

Request = tuple[str, dict[str, Any]]
Evaluate = Callable[[dict[str, str]], Awaitable[dict[str, Any]]]
"""name -> expression in, name -> Jupyter user_expressions result out."""
AfterCell = Callable[[str], Awaitable[None]]


def policies(requests: Sequence[Request]) -> dict[str, CellPolicy]:
    """Each requested cell's policy; a malformed one is a usage error before anything runs."""
    return {cell["id"]: CellPolicy.of(cell["metadata"], f"cell {cell['id']}") for _, cell in requests}


def check(cells: Sequence[Mapping[str, Any]]) -> None:
    """Before a run: every code cell's policy parses (else :class:`CellPolicyError`, a usage error)."""
    for index, cell in enumerate(cells):
        if cell["cell_type"] == "code":
            CellPolicy.of(cell["metadata"], f"cell {index}" + (f" (id {cell['id']})" if cell.get("id") else ""))


def needed(requests: Sequence[Request], retries: int, check_after: set[str]) -> bool:
    return retries > 0 or bool(check_after) or not all(p.plain for p in policies(requests).values())


def clear_records(nb: Any) -> None:
    """A notebook that is the output of an earlier run starts without that run's records."""
    nb.metadata.pop(RECORD_KEY, None)
    for cell in nb.cells:
        cell.metadata.pop(RECORD_KEY, None)


@dataclass
class Outcome:
    final: dict[str, str] = field(default_factory=dict)
    """cell id -> queue id of its last attempt, in run order."""
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    skipped: dict[str, dict[str, Any]] = field(default_factory=dict)
    restarts: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    """A failure no execution shows (a ``run_if`` that could not be evaluated): cell id, ename, evalue."""

    def requests(self, requests: Sequence[Request]) -> list[Request]:
        """The last attempt of every cell that was requested, as (queue id, cell), in notebook order."""
        return [(self.final[cell["id"]], cell) for _, cell in requests if cell["id"] in self.final]


def _segments(requests: Sequence[Request], rules: Mapping[str, CellPolicy], check_after: set[str]
              ) -> list[list[dict[str, Any]]]:
    segments: list[list[dict[str, Any]]] = []
    current: list[dict[str, Any]] = []
    for _, cell in requests:
        rule = rules[cell["id"]]
        if rule.run_if is not None and current:
            segments.append(current)
            current = []
        current.append(cell)
        if rule.retries or cell["id"] in check_after:
            segments.append(current)
            current = []
    if current:
        segments.append(current)
    return segments


def _attempt(item: Mapping[str, Any], run_attempt: int) -> dict[str, Any]:
    error = item["error"] or {}
    return {"queue_id": item["queue_id"], "status": item["status"], "ename": error.get("ename"),
            "evalue": error.get("evalue"), "start_time": item["started_at"], "end_time": item["completed_at"],
            "run_attempt": run_attempt}


async def condition(evaluate: Evaluate, expression: str) -> tuple[bool | None, str]:
    """Evaluate ``bool(expression)`` in the kernel: (True/False, its text) or (None, the error)."""
    results = await evaluate({"run_if": f"bool({expression})"})
    result = results.get("run_if") or {}
    if result.get("status") != "ok":
        return None, f"{result.get('ename', 'Error')}: {result.get('evalue', '')}"
    text = (result.get("data") or {}).get("text/plain", "")
    return text == "True", text


async def run(client: SyncClient, requests: Sequence[Request], *, allow_errors: bool, retries: int,
              start_timeout: float, evaluate: Evaluate, is_failure: Callable[[Mapping[str, Any], Mapping[str, Any]], bool],
              check_after: set[str] | None = None, after_cell: AfterCell | None = None,
              progress: Callable[[int], None] | None = None) -> Outcome:
    """Run ``requests`` in segments; TimeoutError when no runtime started within ``start_timeout``."""
    rules = policies(requests)
    check_after = check_after or set()
    outcome = Outcome()
    started = False

    async def wait(queue_ids: set[str]) -> None:
        nonlocal started

        def done() -> bool:
            return client.replica.view(views.count_finished, queue_ids) == len(queue_ids)

        if not started:
            await client.wait_for(lambda: client.replica.view(views.active_session) is not None or done(),
                                  start_timeout)
            started = True
        await client.wait_for(done, None)

    for run_attempt in range(retries + 1):
        outcome.final.clear()
        outcome.skipped.clear()
        restart: dict[str, Any] | None = None
        stop = False
        for segment in _segments(requests, rules, check_after):
            cells = list(segment)
            rule = rules[cells[0]["id"]]
            if rule.run_if is not None:
                verdict, text = await condition(evaluate, rule.run_if)
                if verdict is None:
                    error_name, _, error_value = text.partition(": ")
                    outcome.failure = {"cell_id": cells[0]["id"], "ename": error_name,
                                       "evalue": f"{error_value} (evaluating run_if {rule.run_if!r})"}
                    stop = True
                    break
                if not verdict:
                    outcome.skipped[cells[0]["id"]] = {"skipped": True, "run_if": rule.run_if, "value": text}
                    cells = cells[1:]
            tries = 0
            while cells:
                batch_id = new_id("b-")
                queued = [(new_id("q-"), cell) for cell in cells]
                await client.commit([
                    make_event("executionRequested", queue_id=q, cell_id=c["id"],
                               batch_id=None if allow_errors or c["expects_error"] else batch_id)
                    for q, c in queued])
                await wait({q for q, _ in queued})
                items = {i["queue_id"]: i for i in client.replica.view(views.executions,
                                                                        queue_ids={q for q, _ in queued})}
                retry_cell: dict[str, Any] | None = None
                for q, cell in queued:
                    item = items[q]
                    if item["started_at"] is None:  # cancelled by the batch's stop before it started
                        continue
                    outcome.final[cell["id"]] = q
                    outcome.attempts.setdefault(cell["id"], []).append(_attempt(item, run_attempt + 1))
                    ename = (item["error"] or {}).get("ename")
                    if ename in RESTART_KINDS and run_attempt < retries:
                        restart = {"cell_id": cell["id"], "ename": ename, "evalue": (item["error"] or {}).get("evalue"),
                                   "run_attempt": run_attempt + 1}
                        break
                    failed = item["status"] == "error" and not cell["expects_error"]
                    if failed and rules[cell["id"]].retries > tries and ename not in RESTART_KINDS:
                        retry_cell = cell
                        break
                    if is_failure(item, cell):
                        stop = True
                        break
                if progress is not None:
                    progress(len(outcome.final))
                if restart is not None or stop:
                    break
                if retry_cell is not None:
                    tries += 1
                    await asyncio.sleep(rules[retry_cell["id"]].delay(tries))
                    cells = [retry_cell]
                    continue
                cells = []
            if restart is not None or stop:
                break
            if after_cell is not None and segment[-1]["id"] in check_after and segment[-1]["id"] in outcome.final:
                await after_cell(segment[-1]["id"])
        if restart is None:
            break
        outcome.restarts.append(restart)
        started = False  # a new runtime may have to start: --start-timeout bounds it again
    await _record(client, outcome, rules)
    return outcome


async def _record(client: SyncClient, outcome: Outcome, rules: Mapping[str, CellPolicy]) -> None:
    """Write skips, attempts (of cells that may retry or ran more than once) and restarts into the log."""
    events = []
    for cell_id, attempts in outcome.attempts.items():
        if len(attempts) > 1 or rules[cell_id].retries:
            events.append(make_event("cellMetadataSet", cell_id=cell_id, key=RECORD_KEY, value={"attempts": attempts}))
    for cell_id, skip in outcome.skipped.items():
        events.append(make_event("cellMetadataSet", cell_id=cell_id, key=RECORD_KEY, value=skip))
    if outcome.restarts:
        events.append(make_event("notebookMetadataSet", key=RECORD_KEY,
                                 value={"run_attempts": len(outcome.restarts) + 1, "restarts": outcome.restarts}))
    if events:
        await client.commit(events)


def http_evaluator(http: Any, notebook_id: str, start_timeout: float) -> Evaluate:
    """``evaluate`` over the daemon's REST API; starts the notebook's runtime first if it has none yet."""
    import httpx

    path = f"/api/notebooks/{notebook_id}"

    def call(expressions: dict[str, str]) -> dict[str, Any]:
        body = {"expressions": expressions, "timeout": EVALUATE_TIMEOUT_S}
        timeout = httpx.Timeout(10.0, read=EVALUATE_TIMEOUT_S + 10)
        try:
            response = http.request("POST", f"{path}/evaluate", json=body, timeout=timeout)
        except RuntimedError as exc:
            if exc.code != "no_runtime":
                raise
            http.request("POST", f"{path}/runtime", timeout=httpx.Timeout(10.0, read=start_timeout))
            response = http.request("POST", f"{path}/evaluate", json=body, timeout=timeout)
        return dict(response.json()["results"])

    async def evaluate(expressions: dict[str, str]) -> dict[str, Any]:
        return await asyncio.to_thread(call, expressions)

    return evaluate


def finish(result: Any, outcome: Outcome) -> Any:
    """Mark skipped cells ``skipped`` in papermill's cell metadata, and fail a run whose ``run_if`` could
    not be evaluated (no execution shows that failure). ``result`` is run.py's RunResult."""
    cells = result.notebook.cells
    for cell in cells:
        if cell.get("id") in outcome.skipped:
            cell.metadata.setdefault("papermill", {}).update(status="skipped", exception=False)
    failure = outcome.failure
    if failure is None or not result.success:
        return result
    index = next((i for i, c in enumerate(cells) if c.get("id") == failure["cell_id"]), None)
    if index is not None:
        cells[index].metadata.setdefault("papermill", {}).update(status="failed", exception=True)
        for cell in cells[index + 1:]:
            cell.metadata.setdefault("papermill", {}).update(status="pending", exception=None, start_time=None,
                                                             end_time=None, duration=None)
    result.notebook.metadata.setdefault("papermill", {})["exception"] = True
    result.failed_cell = {"index": index, "id": failure["cell_id"], "ename": failure["ename"],
                          "evalue": failure["evalue"], "execution_count": None}
    result.status = "error"
    result.message = f"cell {index} (id {failure['cell_id']}) raised {failure['ename']}: {failure['evalue']}"
    return result
