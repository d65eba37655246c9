"""The materializer's preconditions: execution state machine (DESIGN 5), fencing, outputs."""

from __future__ import annotations

import threading

import pytest

from runtimed.schema import views
from runtimed.schema.events import make_event
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "alice", "kind": "human"}
RT1 = {"id": "rt1", "kind": "runtime"}
RT2 = {"id": "rt2", "kind": "runtime"}
SYSTEM = {"id": "daemon", "kind": "system"}


class Doc:
    """A notebook log with helpers that assert acceptance, or rejection that leaves no trace."""

    def __init__(self, log) -> None:
        self.log = log

    def push(self, event: str, actor=HUMAN, /, **args) -> dict:
        return self.log.append([make_event(event, **args)], actor)[0]

    def ok(self, event: str, actor=HUMAN, /, **args) -> int:
        result = self.push(event, actor, **args)
        assert "error" not in result, result
        return result["seq"]

    def err(self, event: str, code: str, actor=HUMAN, /, **args) -> str:
        head, before = self.log.head, self.log.state_at().dump()
        result = self.push(event, actor, **args)
        assert result.get("error", {}).get("code") == code, result
        assert self.log.head == head
        assert self.log.state_at().dump() == before
        return result["error"]["message"]

    def status(self, queue_id: str) -> str:
        return self.execution(queue_id)["status"]

    def execution(self, queue_id: str) -> dict:
        (row,) = views.executions(self.log._conn, queue_id=queue_id)
        return row

    def outputs(self, cell_id: str) -> list[dict]:
        return views.outputs_by_cell(self.log._conn, cell_id).get(cell_id, [])

    # -- common sequences ------------------------------------------------------------------------

    def session(self, session_id: str = "s1", actor=RT1) -> None:
        self.ok(
            "runtimeSessionStarted", actor, sessionId=session_id, runtimeId=actor["id"], kernelName="python3"
        )

    def run_to(
        self, queue_id: str, cell_id: str, state: str, session: str = "s1", actor=RT1, batch=None
    ) -> None:
        """Request an execution and drive it to pending, assigned or running."""
        self.ok(
            "executionRequested", queueId=queue_id, cellId=cell_id, **({"batchId": batch} if batch else {})
        )
        if state in ("assigned", "running"):
            self.ok("executionAssigned", actor, queueId=queue_id, sessionId=session)
        if state == "running":
            self.ok("executionStarted", actor, queueId=queue_id, sessionId=session, source="print(1)")

    def stream(self, output_id: str, cell_id: str, queue_id: str | None, text: str, actor=RT1) -> None:
        extra = {"queueId": queue_id} if queue_id else {}
        self.ok(
            "outputAdded",
            actor,
            outputId=output_id,
            cellId=cell_id,
            outputType="stream",
            name="stdout",
            text=text,
            **extra,
        )


@pytest.fixture
def doc(tmp_path):
    store = SQLiteEventStore(tmp_path)
    d = Doc(store.log("nb"))
    d.ok("notebookCreated", title="T")
    for i, cid in enumerate(("c1", "c2", "c3", "c4")):
        d.ok("cellCreated", cellId=cid, cellType="code", fractionalIndex=f"a{i}", source=f"x = {i}")
    d.ok("cellCreated", cellId="m1", cellType="markdown", fractionalIndex="a9", source="# hi")
    yield d
    store.close()


# --- the legal path -------------------------------------------------------------------------------


def test_legal_path_to_success(doc):
    doc.session()
    doc.stream("old", "c1", None, "stale output", actor=HUMAN)
    doc.run_to("q1", "c1", "pending")
    assert doc.status("q1") == "pending"
    doc.ok("executionAssigned", RT1, queueId="q1", sessionId="s1")
    assert doc.execution("q1")["session_id"] == "s1"
    doc.ok("executionStarted", RT1, queueId="q1", sessionId="s1", source="x = 0")
    assert doc.outputs("c1") == []  # executionStarted clears the cell's outputs
    assert doc.execution("q1")["source"] == "x = 0"
    doc.stream("o1", "c1", "q1", "1\n")
    doc.ok("executionCompleted", RT1, queueId="q1", status="success", executionCount=7, durationMs=12)
    row = doc.execution("q1")
    assert row["status"] == "success" and row["execution_count"] == 7
    assert views.cell(doc.log._conn, "c1")["execution_count"] == 7
    assert [o["text"] for o in doc.outputs("c1")] == ["1\n"]


def test_illegal_transitions_are_rejected(doc):
    doc.session()
    doc.run_to("q1", "c1", "pending")
    doc.err("executionStarted", "not_assigned", RT1, queueId="q1", sessionId="s1", source="")
    doc.err("executionCompleted", "not_started", RT1, queueId="q1", status="success")
    doc.err("executionRequeued", "not_assigned", SYSTEM, queueId="q1", reason="x")
    doc.err("executionRequested", "queue_id_exists", queueId="q1", cellId="c2")
    doc.err("executionRequested", "not_executable", queueId="q9", cellId="m1")
    doc.err("executionAssigned", "execution_not_found", RT1, queueId="nope", sessionId="s1")
    doc.ok("executionAssigned", RT1, queueId="q1", sessionId="s1")
    doc.err("executionAssigned", "not_pending", RT1, queueId="q1", sessionId="s1")
    doc.ok("executionStarted", RT1, queueId="q1", sessionId="s1", source="")
    doc.err("executionStarted", "not_assigned", RT1, queueId="q1", sessionId="s1", source="")
    doc.err("executionAssigned", "not_pending", RT1, queueId="q1", sessionId="s1")
    doc.err("executionRequeued", "not_assigned", SYSTEM, queueId="q1", reason="x")
    doc.ok("executionCompleted", RT1, queueId="q1", status="success")
    for name, args in [
        ("executionCompleted", {"status": "error"}),
        ("executionCancelRequested", {}),
        ("executionAssigned", {"sessionId": "s1"}),
    ]:
        code = {"executionAssigned": "not_pending"}.get(name, "terminal_state")
        doc.err(name, code, RT1, queueId="q1", **args)
    assert doc.status("q1") == "success"


def test_only_the_session_owner_may_act_for_it(doc):
    doc.session()
    doc.run_to("q1", "c1", "pending")
    msg = doc.err("executionAssigned", "not_session_owner", RT2, queueId="q1", sessionId="s1")
    assert "'rt1'" in msg and "'rt2'" in msg
    doc.err("executionAssigned", "session_not_found", RT1, queueId="q1", sessionId="s9")
    doc.err("runtimeSessionStarted", "runtime_active", RT2, sessionId="s2", runtimeId="rt2", kernelName="k")


def test_terminal_states_are_sticky(doc):
    doc.session()
    # cancelled while pending: a late claim, start and completion cannot resurrect it
    doc.run_to("q0", "c1", "pending")
    doc.ok("executionCancelRequested", queueId="q0")
    assert doc.status("q0") == "cancelled"
    doc.err("executionAssigned", "not_pending", RT1, queueId="q0", sessionId="s1")
    doc.err("executionStarted", "not_assigned", RT1, queueId="q0", sessionId="s1", source="")
    doc.err("executionCompleted", "terminal_state", RT1, queueId="q0", status="success")
    # cancelled while claimed (assigned, not started): flagged; its runtime completes it as cancelled
    doc.run_to("q1", "c1", "assigned")
    doc.ok("executionCancelRequested", queueId="q1")
    assert doc.status("q1") == "assigned" and doc.execution("q1")["cancel_requested"]
    doc.ok("executionCompleted", RT1, queueId="q1", status="cancelled")
    assert doc.status("q1") == "cancelled"
    doc.err("executionStarted", "not_assigned", RT1, queueId="q1", sessionId="s1", source="")
    doc.err("executionCompleted", "terminal_state", RT1, queueId="q1", status="success")
    # cancelled while running: flagged for interruption, the runtime reports the end
    doc.run_to("q2", "c2", "running")
    doc.ok("executionCancelRequested", queueId="q2")
    assert doc.status("q2") == "running" and doc.execution("q2")["cancel_requested"]
    doc.ok("executionCompleted", RT1, queueId="q2", status="cancelled")
    doc.err("executionCompleted", "terminal_state", RT1, queueId="q2", status="success")
    assert doc.status("q2") == "cancelled"


def test_cancel_everything(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.run_to("q2", "c2", "assigned")
    doc.run_to("q3", "c3", "pending")
    doc.ok("executionCancelRequested")
    # pending work ends at once; claimed and running work is flagged for its runtime (it may be starting it)
    assert [doc.status(q) for q in ("q1", "q2", "q3")] == ["running", "assigned", "cancelled"]
    assert doc.execution("q1")["cancel_requested"] and doc.execution("q2")["cancel_requested"]
    assert doc.execution("q3")["session_id"] is None


def test_events_of_a_displaced_session_are_fenced(doc):
    doc.session("s1", RT1)
    doc.run_to("q1", "c1", "running")
    doc.run_to("q2", "c2", "assigned")
    doc.run_to("q3", "c3", "pending")
    doc.stream("o1", "c1", "q1", "partial")
    doc.ok("runtimeSessionEnded", SYSTEM, sessionId="s1", reason="displaced")
    doc.session("s2", RT2)
    assert views.active_session(doc.log._conn)["session_id"] == "s2"

    doc.err("runtimeStatusChanged", "session_inactive", RT1, sessionId="s1", status="idle")
    doc.err("executionAssigned", "session_inactive", RT1, queueId="q3", sessionId="s1")
    doc.err(
        "outputAdded",
        "not_running",
        RT1,
        outputId="o2",
        cellId="c1",
        queueId="q1",
        outputType="stream",
        name="stdout",
        text="late",
    )
    doc.err("streamTextChanged", "not_running", RT1, outputId="o1", offset=0, text="late")
    doc.err("executionCompleted", "terminal_state", RT1, queueId="q1", status="success")
    # events that name no session are fenced by the runtime actor's session
    doc.err("displayUpdated", "session_inactive", RT1, displayId="d", data={"text/plain": "x"})
    doc.err("outputsCleared", "session_inactive", RT1, cellId="c1", wait=False)
    doc.err(
        "outputAdded",
        "session_inactive",
        RT1,
        outputId="o3",
        cellId="c1",
        outputType="stream",
        name="stdout",
        text="late",
    )
    doc.err("runtimeSessionEnded", "session_inactive", RT1, sessionId="s1", reason="shutdown")
    # the new session picks up the requeued and the pending work
    doc.ok("executionAssigned", RT2, queueId="q2", sessionId="s2")
    doc.ok("executionAssigned", RT2, queueId="q3", sessionId="s2")
    doc.ok("displayUpdated", RT2, displayId="d", data={"text/plain": "x"})


def test_runtime_session_ended_fails_running_and_requeues_assigned(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.ok("inputRequested", RT1, queueId="q1", prompt="name?")
    doc.run_to("q2", "c2", "assigned")
    doc.run_to("q3", "c3", "pending")
    doc.ok("runtimeSessionEnded", SYSTEM, sessionId="s1", reason="lost")
    q1 = doc.execution("q1")
    assert (
        q1["status"] == "error" and q1["error"]["ename"] == "RuntimeLost" and "lost" in q1["error"]["evalue"]
    )
    assert views.pending_inputs(doc.log._conn) == []
    assert doc.status("q2") == "pending" and doc.execution("q2")["session_id"] is None
    assert doc.status("q3") == "pending"
    assert views.active_session(doc.log._conn) is None
    doc.err("runtimeInterruptRequested", "no_runtime")


def test_competing_assignments_exactly_one_wins(doc):
    doc.session()
    doc.run_to("q1", "c1", "pending")
    first = doc.push("executionAssigned", RT1, queueId="q1", sessionId="s1")
    second = doc.push("executionAssigned", RT1, queueId="q1", sessionId="s1")
    assert "seq" in first and second["error"]["code"] == "not_pending"


def test_competing_assignments_from_threads(doc):
    doc.session()
    queue = [f"q{i}" for i in range(40)]
    for q in queue:
        doc.ok("executionRequested", queueId=q, cellId="c1")
    wins: list[str] = []
    failures: list[object] = []

    def claim() -> None:
        for q in queue:
            try:
                result = doc.push("executionAssigned", RT1, queueId=q, sessionId="s1")
            except Exception as exc:  # a crash (not a rejection) is a bug
                failures.append(exc)
                continue
            if "seq" in result:
                wins.append(q)
            else:
                assert result["error"]["code"] == "not_pending"

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert sorted(wins) == sorted(queue)
    seqs = [e["seq"] for e in doc.log.read()]
    assert seqs == list(range(1, len(seqs) + 1))


def test_batch_stops_on_error(doc):
    doc.session()
    doc.run_to("b1-1", "c1", "running", batch="b1")
    doc.run_to("b1-2", "c2", "assigned", batch="b1")
    doc.run_to("b1-3", "c3", "pending", batch="b1")
    doc.run_to("other", "c4", "pending", batch="b2")
    doc.run_to("loose", "c4", "pending")
    doc.ok(
        "executionCompleted",
        RT1,
        queueId="b1-1",
        status="error",
        error={"ename": "ZeroDivisionError", "evalue": "division by zero", "traceback": []},
    )
    assert [doc.status(q) for q in ("b1-1", "b1-2", "b1-3", "other", "loose")] == [
        "error",
        "cancelled",
        "cancelled",
        "pending",
        "pending",
    ]
    assert doc.execution("b1-1")["error"]["ename"] == "ZeroDivisionError"


def test_a_cancelled_claim_stops_nothing_else(doc):
    """A claimed-ahead execution cancelled before it started ends as cancelled without stopping its batch
    (as a pending one would); a session that ends cancels its flagged claims and requeues the others."""
    doc.session()
    doc.run_to("b1-1", "c1", "running", batch="b1")
    doc.run_to("b1-2", "c2", "assigned", batch="b1")
    doc.run_to("b1-3", "c3", "assigned", batch="b1")
    doc.ok("executionCancelRequested", queueId="b1-2")
    doc.ok("executionCompleted", RT1, queueId="b1-2", status="cancelled")
    assert [doc.status(q) for q in ("b1-1", "b1-2", "b1-3")] == ["running", "cancelled", "assigned"]
    doc.ok("executionCompleted", RT1, queueId="b1-1", status="success")
    doc.ok("executionStarted", RT1, queueId="b1-3", sessionId="s1", source="")  # a claimed one starts
    doc.run_to("q4", "c4", "assigned")
    doc.run_to("q5", "c4", "assigned")
    doc.ok("executionCancelRequested", queueId="q4")
    doc.ok("runtimeSessionEnded", RT1, sessionId="s1", reason="shutdown")
    assert [doc.status(q) for q in ("b1-3", "q4", "q5")] == ["error", "cancelled", "pending"]
    assert doc.execution("q5")["session_id"] is None


def test_requeue_of_a_cancelled_claim_cancels_it(doc):
    doc.session()
    doc.run_to("q1", "c1", "assigned")
    doc.run_to("q2", "c2", "assigned")
    doc.ok("executionCancelRequested", queueId="q1")
    doc.ok("executionRequeued", SYSTEM, queueId="q1", reason="runtime lost")
    doc.ok("executionRequeued", SYSTEM, queueId="q2", reason="runtime lost")
    assert [doc.status(q) for q in ("q1", "q2")] == ["cancelled", "pending"]


def test_batch_success_does_not_cancel(doc):
    doc.session()
    doc.run_to("b1-1", "c1", "running", batch="b1")
    doc.run_to("b1-2", "c2", "pending", batch="b1")
    doc.ok("executionCompleted", RT1, queueId="b1-1", status="success")
    assert doc.status("b1-2") == "pending"


def test_lost_runtime_error_also_stops_the_batch(doc):
    doc.session()
    doc.run_to("b1-1", "c1", "running", batch="b1")
    doc.run_to("b1-2", "c2", "assigned", batch="b1")
    doc.run_to("b2-1", "c3", "assigned", batch="b2")
    doc.ok("runtimeSessionEnded", SYSTEM, sessionId="s1", reason="lost")
    assert [doc.status(q) for q in ("b1-1", "b1-2", "b2-1")] == ["error", "cancelled", "pending"]


def test_cell_deleted_cancels_its_pending_work_and_drops_outputs(doc):
    doc.session()
    doc.run_to("q1", "c1", "pending")
    doc.run_to("q2", "c1", "assigned")
    doc.run_to("q3", "c2", "pending")
    doc.stream("o1", "c1", None, "x", actor=HUMAN)
    doc.ok("cellDeleted", cellId="c1")
    assert [doc.status(q) for q in ("q1", "q2", "q3")] == ["cancelled", "assigned", "pending"]
    assert doc.execution("q2")["cancel_requested"]  # claimed: its runtime completes it as cancelled
    doc.ok("executionCompleted", RT1, queueId="q2", status="cancelled")
    assert doc.log.query("SELECT COUNT(*) FROM outputs WHERE cell_id = 'c1'").rows == [(0,)]
    doc.err("cellDeleted", "cell_not_found", cellId="c1")
    # a running execution of a deleted cell is flagged; its outputs have nowhere to go
    doc.run_to("q4", "c2", "running")
    doc.ok("cellDeleted", cellId="c2")
    assert doc.status("q3") == "cancelled" and doc.execution("q4")["cancel_requested"]
    doc.err(
        "outputAdded",
        "cell_not_found",
        RT1,
        outputId="o9",
        cellId="c2",
        queueId="q4",
        outputType="stream",
        name="stdout",
        text="x",
    )
    doc.ok("executionCompleted", RT1, queueId="q4", status="cancelled")


def test_cell_type_change_to_markdown_cancels_queued_runs(doc):
    doc.session()
    doc.run_to("q1", "c1", "pending")
    doc.stream("o1", "c1", None, "x", actor=HUMAN)
    doc.ok("cellTypeChanged", cellId="c1", cellType="markdown")
    assert doc.status("q1") == "cancelled" and doc.outputs("c1") == []


def test_clear_output_wait(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.stream("o1", "c1", "q1", "first")
    doc.ok("outputsCleared", RT1, cellId="c1", wait=True)
    assert [o["output_id"] for o in doc.outputs("c1")] == ["o1"]  # still shown until the next output
    doc.stream("o2", "c1", "q1", "second")
    assert [o["output_id"] for o in doc.outputs("c1")] == ["o2"]
    doc.stream("o3", "c1", "q1", "third")
    assert [o["output_id"] for o in doc.outputs("c1")] == ["o2", "o3"]
    doc.ok("outputsCleared", RT1, cellId="c1", wait=False)
    assert doc.outputs("c1") == []


def test_stream_text_changed_offsets(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.stream("o1", "c1", "q1", "progress 1/3")
    doc.ok("streamTextChanged", RT1, outputId="o1", offset=len("progress 1/3"), text="\n")
    doc.ok("streamTextChanged", RT1, outputId="o1", offset=9, text="3/3\n")  # rewrite the tail like '\r'
    assert doc.outputs("c1")[0]["text"] == "progress 3/3\n"
    doc.err("streamTextChanged", "bad_offset", RT1, outputId="o1", offset=100, text="x")
    doc.err("streamTextChanged", "output_not_found", RT1, outputId="nope", offset=0, text="x")
    doc.err("streamTextChanged", "not_session_owner", RT2, outputId="o1", offset=0, text="x")
    doc.ok(
        "outputAdded",
        RT1,
        outputId="d1",
        cellId="c1",
        queueId="q1",
        outputType="display_data",
        data={"text/plain": "x"},
    )
    doc.err("streamTextChanged", "not_a_stream", RT1, outputId="d1", offset=0, text="x")
    doc.ok("executionCompleted", RT1, queueId="q1", status="success")
    doc.err("streamTextChanged", "not_running", RT1, outputId="o1", offset=0, text="x")


def test_outputs_need_the_running_execution_of_that_cell(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.err(
        "outputAdded",
        "wrong_cell",
        RT1,
        outputId="o1",
        cellId="c2",
        queueId="q1",
        outputType="stream",
        name="stdout",
        text="x",
    )
    doc.stream("o1", "c1", "q1", "x")
    doc.err(
        "outputAdded",
        "output_exists",
        RT1,
        outputId="o1",
        cellId="c1",
        queueId="q1",
        outputType="stream",
        name="stdout",
        text="x",
    )


def test_display_updated(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    for oid, cid in (("o1", "c1"), ("o2", "c1")):
        doc.ok(
            "outputAdded",
            RT1,
            outputId=oid,
            cellId=cid,
            queueId="q1",
            outputType="display_data",
            data={"text/plain": "0%"},
            displayId="bar",
        )
    doc.ok(
        "outputAdded",
        RT1,
        outputId="o3",
        cellId="c1",
        queueId="q1",
        outputType="display_data",
        data={"text/plain": "other"},
        displayId="other",
    )
    doc.ok("executionCompleted", RT1, queueId="q1", status="success")
    # a display is updated even after its execution finished (update_display from later cells)
    doc.ok("displayUpdated", RT1, displayId="bar", data={"text/plain": "100%"}, metadata={"m": 1})
    outs = {o["output_id"]: o for o in doc.outputs("c1")}
    assert outs["o1"]["data"] == outs["o2"]["data"] == {"text/plain": "100%"}
    assert outs["o1"]["metadata"] == {"m": 1}
    assert outs["o3"]["data"] == {"text/plain": "other"}
    before = doc.log.state_at().dump()["outputs"]
    doc.ok("displayUpdated", RT1, displayId="unknown", data={"text/plain": "x"})  # a no-op, as in Jupyter
    assert doc.log.state_at().dump()["outputs"] == before


def test_input_request_and_reply(doc):
    doc.session()
    doc.run_to("q1", "c1", "running")
    doc.err("inputReplied", "no_input_pending", queueId="q1", value="x")
    doc.ok("inputRequested", RT1, queueId="q1", prompt="name?", password=False)
    assert views.pending_inputs(doc.log._conn) == [{"queue_id": "q1", "prompt": "name?", "password": False}]
    doc.ok("inputReplied", queueId="q1", value="bob")
    assert views.pending_inputs(doc.log._conn) == []
    doc.err("inputReplied", "no_input_pending", queueId="q1", value="again")


def test_requeue_by_the_server(doc):
    doc.session()
    doc.run_to("q1", "c1", "assigned")
    doc.ok("executionRequeued", SYSTEM, queueId="q1", reason="runtime lost before start")
    assert doc.status("q1") == "pending" and doc.execution("q1")["session_id"] is None
    doc.ok("executionAssigned", RT1, queueId="q1", sessionId="s1")


def test_metadata_and_title(doc):
    doc.ok("notebookMetadataSet", key="title", value="New title")
    assert views.notebook_info(doc.log._conn)["title"] == "New title"
    doc.ok("cellMetadataSet", cellId="c1", key="tags", value=["a"])
    doc.ok("cellMetadataSet", cellId="c1", key="collapsed", value=True)
    doc.ok("cellMetadataSet", cellId="c1", key="collapsed", value=None)
    assert views.cell(doc.log._conn, "c1")["metadata"] == {"tags": ["a"]}
    doc.ok("notebookMetadataSet", key="k", value=1)
    doc.ok("notebookMetadataSet", key="k", value=None)
    assert "k" not in views.notebook_metadata(doc.log._conn)


def test_approvals(doc):
    doc.ok("toolApprovalRequested", approvalId="a1", tool="shell", cellId="c1")
    doc.err("toolApprovalRequested", "approval_exists", approvalId="a1", tool="shell")
    doc.ok("toolApprovalResolved", approvalId="a1", decision="denied")
    doc.err("toolApprovalResolved", "approval_resolved", approvalId="a1", decision="approved")
    doc.err("toolApprovalResolved", "approval_not_found", approvalId="a2", decision="approved")


def test_a_request_to_an_idle_session_that_asks_for_it_is_assigned_at_once(doc):
    """``assign_when_idle``: a request queued while the session has no work is claimed by the request itself
    (its runtime starts it with no claim round trip); anything queued behind work stays pending to be claimed."""
    doc.ok("runtimeSessionStarted", RT1, sessionId="s1", runtimeId="rt1", kernelName="python3",
           capabilities={"assign_when_idle": True})
    assert views.active_session(doc.log._conn)["assign_when_idle"]
    doc.ok("executionRequested", queueId="q1", cellId="c1")
    assert (doc.status("q1"), doc.execution("q1")["session_id"]) == ("assigned", "s1")
    doc.err("executionAssigned", "not_pending", RT1, queueId="q1", sessionId="s1")  # already its own
    doc.ok("executionRequested", queueId="q2", cellId="c2")  # behind q1: left for the runtime to claim ahead
    assert doc.status("q2") == "pending"
    doc.ok("executionStarted", RT1, queueId="q1", sessionId="s1", source="x = 0")
    doc.ok("executionCompleted", RT1, queueId="q1", status="success")
    doc.ok("executionRequested", queueId="q3", cellId="c3")  # q2 is still pending: not idle
    assert doc.status("q3") == "pending"
    doc.ok("executionCancelRequested", queueId="q2")
    doc.ok("executionCancelRequested", queueId="q3")
    doc.ok("executionRequested", queueId="q4", cellId="c4")  # idle again
    assert doc.status("q4") == "assigned"
    # a cancel flags it (its runtime may be starting it), and a session that ends puts it back in the queue
    doc.ok("executionCancelRequested", queueId="q4")
    assert doc.status("q4") == "assigned" and doc.execution("q4")["cancel_requested"]
    doc.ok("executionRequested", queueId="q5", cellId="c1")
    doc.ok("runtimeSessionEnded", RT1, sessionId="s1", reason="shutdown")
    assert [doc.status(q) for q in ("q4", "q5")] == ["cancelled", "pending"]
    doc.ok("executionRequested", queueId="q6", cellId="c2")  # no active session: pending
    assert doc.status("q6") == "pending"


def test_a_session_that_does_not_ask_for_assignment_claims_everything(doc):
    doc.session()
    assert not views.active_session(doc.log._conn)["assign_when_idle"]
    doc.ok("executionRequested", queueId="q1", cellId="c1")
    assert doc.status("q1") == "pending"


def test_the_notebooks_finished_count_determines_a_runs(doc):
    """automation/run.py recounts a run's finished executions only when ``finished_total`` moved: along a
    log, each value of it must stand for one set of finished executions (terminal states never change)."""
    doc.session()
    run = {"b-1", "b-2", "b-3", "q5"}
    doc.run_to("b-1", "c1", "running", batch="b")
    doc.run_to("b-2", "c2", "assigned", batch="b")
    doc.run_to("b-3", "c3", "pending", batch="b")
    doc.run_to("other", "c4", "pending")  # not the run's
    doc.ok("executionCompleted", RT1, queueId="b-1", status="success")
    doc.ok("executionCancelRequested", queueId="other")
    doc.ok("executionStarted", RT1, queueId="b-2", sessionId="s1", source="")
    doc.ok("executionCompleted", RT1, queueId="b-2", status="error")  # stops the batch: b-3 cancelled with it
    doc.run_to("q5", "c4", "assigned")
    doc.ok("runtimeSessionEnded", RT1, sessionId="s1", reason="shutdown")  # q5 back to pending
    doc.session("s2")
    doc.run_to("q6", "c1", "pending")
    doc.ok("executionAssigned", RT1, queueId="q5", sessionId="s2")
    doc.ok("executionStarted", RT1, queueId="q5", sessionId="s2", source="")
    doc.ok("executionCompleted", RT1, queueId="q5", status="success")
    seen: dict[int, int] = {}
    last = (0, 0)
    for seq in range(1, doc.log.head + 1):
        state = doc.log.state_at(seq)
        total, mine = state.view(views.finished_total), state.view(views.count_finished, run)
        assert seen.setdefault(total, mine) == mine, f"seq {seq}: {total} finished stands for two counts"
        assert (total, mine) >= last and mine >= last[1]
        last = (total, mine)
    assert last == (5, 4)
