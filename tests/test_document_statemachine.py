"""Random event sequences against the real store: determinism, time travel, idempotency, clean rejections.

Each step pushes events (valid or not: the materializer decides) and the machine checks
that a rejected event changed nothing, that replicas fed the same log are identical to
the live projection, and at the end that every past state replays exactly and that a
re-push is a no-op.
"""

from __future__ import annotations

import shutil
import tempfile
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from runtimed.schema.crdt import SourceDoc, encode_update
from runtimed.schema.events import make_event
from runtimed.schema.ordering import key_for_position
from runtimed.schema.replica import Replica
from runtimed.schema.tables import PROJECTION_TABLES
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "alice", "kind": "human"}
BOB = {"id": "bob", "kind": "agent"}
RUNTIMES = [{"id": "rt1", "kind": "runtime"}, {"id": "rt2", "kind": "runtime"}]
SYSTEM = {"id": "daemon", "kind": "system"}
ACTORS = [HUMAN, BOB, SYSTEM, *RUNTIMES]

texts = st.text(alphabet="ab é🎉\n=1", max_size=12)
small_json = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.text("xyz", max_size=3),
    st.lists(st.integers(0, 2), max_size=2),
)


def live_dump(log) -> dict[str, list[tuple]]:
    """The store's own projection, read like ``Replica.dump`` (cheaper than a snapshot per step)."""
    return {t: log._conn.execute(f"SELECT * FROM {t} ORDER BY 1").fetchall() for t in PROJECTION_TABLES}


def pick(data: st.DataObject, items: list[str], fallback: str) -> str:
    """Mostly an existing id; sometimes one that does not exist (the event must then be rejected)."""
    if items and data.draw(st.integers(0, 9)) > 0:
        return data.draw(st.sampled_from(items))
    return fallback


class DocumentMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp(prefix="runtimed-sm-")
        self.store = SQLiteEventStore(self.dir, snapshot_every=4)
        self.log = self.store.log("nb")
        self.follower = Replica("nb")
        self.cells: list[str] = []
        self.queue: list[str] = []
        self.sessions: list[tuple[str, dict]] = []
        self.outputs: list[str] = []
        self.counter = 0
        self.live: dict[int, dict] = {0: Replica("nb").dump()}
        self.current = self.live[0]
        self.push([make_event("notebookCreated", title="sm")], HUMAN)

    def new_id(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    # -- pushing and per-push checks -------------------------------------------------------------

    def push(self, events: list[dict[str, Any]], actor: dict) -> list[dict]:
        head = self.log.head
        results = self.log.append(events, actor)
        assert len(results) == len(events)
        stored = [r for r in results if "seq" in r]
        assert [r["seq"] for r in stored] == list(range(head + 1, head + 1 + len(stored)))
        after = live_dump(self.log)
        if not stored:
            assert self.log.head == head
            assert after == self.current, "a rejected event changed the state"
        else:
            self.live[self.log.head] = after
        self.current = after
        return results

    def one(self, name: str, actor: dict = HUMAN, /, **args: Any) -> bool:
        return "seq" in self.push([make_event(name, **args)], actor)[0]

    def ordered_keys(self) -> list[str]:
        return [r[0] for r in self.log._conn.execute("SELECT fractional_index FROM cells ORDER BY 1, id")]

    # -- cells -----------------------------------------------------------------------------------

    @rule(data=st.data(), cell_type=st.sampled_from(["code", "code", "markdown", "raw", "sql"]), source=texts)
    def create_cell(self, data, cell_type, source):
        keys = self.ordered_keys()
        key = key_for_position(keys, data.draw(st.integers(-1, len(keys) + 1)))
        reuse = self.cells and data.draw(st.integers(0, 9)) == 0
        cell_id = data.draw(st.sampled_from(self.cells)) if reuse else self.new_id("c")
        if self.one(
            "cellCreated", HUMAN, cellId=cell_id, cellType=cell_type, fractionalIndex=key, source=source
        ):
            assert cell_id not in self.cells
            self.cells.append(cell_id)

    @rule(data=st.data(), text=texts, client=st.integers(100, 103))
    def edit_source(self, data, text, client):
        cell_id = pick(data, self.cells, "ghost")
        row = self.log._conn.execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()
        doc = SourceDoc(row[0] if row else None, client_id=client)
        update = doc.update_to(text) or doc.update_to(text + "!")
        accepted = self.one("cellSourceEdited", HUMAN, cellId=cell_id, update=encode_update(update))
        assert accepted == (row is not None)

    @rule(data=st.data(), a=texts, b=texts)
    def concurrent_edits(self, data, a, b):
        """Two editors from the same base state; both updates go through the log."""
        if not self.cells:
            return
        cell_id = data.draw(st.sampled_from(self.cells))
        (state,) = self.log._conn.execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()
        one, two = SourceDoc(state, client_id=201), SourceDoc(state, client_id=202)
        updates = [u for u in (one.update_to(a), two.update_to(b)) if u]
        events = [make_event("cellSourceEdited", cellId=cell_id, update=encode_update(u)) for u in updates]
        if events:
            assert all("seq" in r for r in self.push(events, BOB))
            for u in updates:
                one.apply(u)
                two.apply(u)
            (source,) = self.log._conn.execute("SELECT source FROM cells WHERE id = ?", (cell_id,)).fetchone()
            assert one.source == two.source == source

    @rule(data=st.data(), text=texts)
    def edit_with_a_missing_base(self, data, text):
        """An update built on an edit the log never got is rejected (it would sit pending)."""
        if not self.cells:
            return
        cell_id = data.draw(st.sampled_from(self.cells))
        (state,) = self.log._conn.execute("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).fetchone()
        doc = SourceDoc(state, client_id=300)
        doc.update_to(doc.source + "lost")
        later = doc.update_to(text + "later")
        assert not self.one("cellSourceEdited", HUMAN, cellId=cell_id, update=encode_update(later))

    @rule(data=st.data())
    def move_cell(self, data):
        keys = self.ordered_keys()
        key = key_for_position(keys, data.draw(st.integers(-1, len(keys) + 1)))
        self.one("cellMoved", HUMAN, cellId=pick(data, self.cells, "ghost"), fractionalIndex=key)

    @rule(data=st.data())
    def delete_cell(self, data):
        cell_id = pick(data, self.cells, "ghost")
        if self.one("cellDeleted", HUMAN, cellId=cell_id):
            self.cells.remove(cell_id)

    @rule(data=st.data(), cell_type=st.sampled_from(["code", "markdown", "raw", "ai"]))
    def change_type(self, data, cell_type):
        self.one("cellTypeChanged", HUMAN, cellId=pick(data, self.cells, "ghost"), cellType=cell_type)

    @rule(data=st.data(), key=st.sampled_from(["tags", "collapsed", "x"]), value=small_json)
    def set_cell_metadata(self, data, key, value):
        self.one("cellMetadataSet", HUMAN, cellId=pick(data, self.cells, "ghost"), key=key, value=value)

    @rule(key=st.sampled_from(["title", "kernelspec", "papermill"]), value=small_json)
    def set_notebook_metadata(self, key, value):
        assert self.one("notebookMetadataSet", HUMAN, key=key, value=value)

    @rule(data=st.data())
    def set_attachments(self, data):
        self.one(
            "cellAttachmentsSet",
            HUMAN,
            cellId=pick(data, self.cells, "ghost"),
            attachments={"a.png": {"image/png": "iVBORw0KGgo="}},
        )

    # -- runtimes and executions -----------------------------------------------------------------

    @rule(runtime=st.sampled_from(RUNTIMES))
    def start_session(self, runtime):
        session_id = self.new_id("s")
        if self.one(
            "runtimeSessionStarted",
            runtime,
            sessionId=session_id,
            runtimeId=runtime["id"],
            kernelName="python3",
        ):
            self.sessions.append((session_id, runtime))

    @rule(data=st.data(), reason=st.sampled_from(["shutdown", "displaced", "lost", "error"]))
    def end_session(self, data, reason):
        if self.sessions:
            session_id, _ = data.draw(st.sampled_from(self.sessions))
            self.one("runtimeSessionEnded", SYSTEM, sessionId=session_id, reason=reason)

    @rule(data=st.data(), batch=st.sampled_from([None, "b1", "b2"]))
    def request(self, data, batch):
        queue_id = self.new_id("q")
        extra = {"batchId": batch} if batch else {}
        if self.one(
            "executionRequested", HUMAN, queueId=queue_id, cellId=pick(data, self.cells, "ghost"), **extra
        ):
            self.queue.append(queue_id)

    def session_and_actor(self, data) -> tuple[str, dict]:
        """Mostly the active session and its runtime; sometimes an ended, foreign or unknown one."""
        row = self.log._conn.execute(
            "SELECT session_id, actor_id FROM runtime_sessions WHERE active = 1"
        ).fetchone()
        roll = data.draw(st.integers(0, 9))
        if row is not None and roll < 7:
            return row[0], next(r for r in RUNTIMES if r["id"] == row[1])
        if self.sessions and roll < 9:
            return data.draw(st.sampled_from(self.sessions))
        return "s-none", data.draw(st.sampled_from(RUNTIMES))

    def queue_id(self, data, status: str | None = None) -> str:
        """Mostly a queue item in ``status``; sometimes any."""
        if status is not None and data.draw(st.integers(0, 4)) > 0:
            rows = self.log._conn.execute(
                "SELECT queue_id FROM execution_queue WHERE status = ?", (status,)
            ).fetchall()
            if rows:
                return data.draw(st.sampled_from([r[0] for r in rows]))
        return data.draw(st.sampled_from(self.queue))

    @rule(
        data=st.data(),
        stop=st.sampled_from(["pending", "assigned", "running", "done", "done"]),
        batch=st.sampled_from([None, "b1"]),
        text=texts,
    )
    def run_cycle(self, data, stop, batch, text):
        """A legal run of a cell by the active runtime, stopped at a random stage (random steps rarely get far)."""
        code = [
            c
            for c in self.cells
            if self.log._conn.execute(
                "SELECT 1 FROM cells WHERE id = ? AND cell_type IN ('code', 'sql', 'ai')", (c,)
            ).fetchone()
        ]
        if not code:
            return
        row = self.log._conn.execute(
            "SELECT session_id, actor_id FROM runtime_sessions WHERE active = 1"
        ).fetchone()
        if row is None:
            self.start_session(data.draw(st.sampled_from(RUNTIMES)))
            row = self.log._conn.execute(
                "SELECT session_id, actor_id FROM runtime_sessions WHERE active = 1"
            ).fetchone()
        session_id, actor = row[0], next(r for r in RUNTIMES if r["id"] == row[1])
        cell_id, queue_id = data.draw(st.sampled_from(code)), self.new_id("q")
        assert self.one(
            "executionRequested",
            HUMAN,
            queueId=queue_id,
            cellId=cell_id,
            **({"batchId": batch} if batch else {}),
        )
        self.queue.append(queue_id)
        if stop == "pending":
            return
        assert self.one("executionAssigned", actor, queueId=queue_id, sessionId=session_id)
        if stop == "assigned":
            return
        assert self.one("executionStarted", actor, queueId=queue_id, sessionId=session_id, source=text)
        out = self.new_id("o")
        assert self.one(
            "outputAdded",
            actor,
            outputId=out,
            cellId=cell_id,
            queueId=queue_id,
            outputType="stream",
            name="stdout",
            text=text,
        )
        self.outputs.append(out)
        cleared = data.draw(st.booleans())
        if cleared:  # the stream output goes when the display arrives
            assert self.one("outputsCleared", actor, cellId=cell_id, wait=True)
        display = self.new_id("o")
        assert self.one(
            "outputAdded",
            actor,
            outputId=display,
            cellId=cell_id,
            queueId=queue_id,
            outputType="display_data",
            data={"text/plain": text},
            displayId="d1",
        )
        self.outputs.append(display)
        if data.draw(st.booleans()):
            assert self.one("streamTextChanged", actor, outputId=out, offset=0, text=text + "\r") != cleared
        if stop == "running":
            return
        status = data.draw(st.sampled_from(["success", "error", "cancelled"]))
        assert self.one(
            "executionCompleted", actor, queueId=queue_id, status=status, executionCount=self.counter
        )

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def assign(self, data):
        session_id, actor = self.session_and_actor(data)
        self.one("executionAssigned", actor, queueId=self.queue_id(data, "pending"), sessionId=session_id)

    @precondition(lambda self: self.queue)
    @rule(data=st.data(), source=texts)
    def start(self, data, source):
        session_id, actor = self.session_and_actor(data)
        self.one(
            "executionStarted",
            actor,
            queueId=self.queue_id(data, "assigned"),
            sessionId=session_id,
            source=source,
        )

    @precondition(lambda self: self.queue)
    @rule(data=st.data(), status=st.sampled_from(["success", "error", "cancelled"]), count=st.integers(1, 9))
    def complete(self, data, status, count):
        _, actor = self.session_and_actor(data)
        queue_id = self.queue_id(data, "running")
        before = self.log._conn.execute(
            "SELECT status FROM execution_queue WHERE queue_id = ?", (queue_id,)
        ).fetchone()
        accepted = self.one(
            "executionCompleted", actor, queueId=queue_id, status=status, executionCount=count
        )
        if before[0] in ("success", "error", "cancelled"):
            assert not accepted, "a terminal state changed"

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def cancel(self, data):
        if data.draw(st.integers(0, 3)) > 0:
            self.one("executionCancelRequested", HUMAN, queueId=self.queue_id(data, "pending"))
        else:
            assert self.one("executionCancelRequested", HUMAN)

    @precondition(lambda self: self.queue)
    @rule(data=st.data())
    def requeue(self, data):
        self.one("executionRequeued", SYSTEM, queueId=self.queue_id(data, "assigned"), reason="lost")

    # -- outputs ---------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        kind=st.sampled_from(["stream", "display_data", "execute_result", "error"]),
        text=texts,
    )
    def add_output(self, data, kind, text):
        actor = self.output_actor(data)
        running = self.log._conn.execute(
            "SELECT queue_id, cell_id FROM execution_queue WHERE status = 'running'"
        ).fetchall()
        extra: dict[str, Any] = {}
        if running and data.draw(st.booleans()):
            queue_id, cell_id = data.draw(st.sampled_from(running))
            extra["queueId"] = queue_id
        else:
            cell_id = pick(data, self.cells, "ghost")
        fields = {
            "stream": {"name": "stdout", "text": text},
            "display_data": {
                "data": {"text/plain": text},
                "displayId": data.draw(st.sampled_from(["d1", "d2"])),
            },
            "execute_result": {"data": {"text/plain": text}, "executionCount": 1},
            "error": {"ename": "E", "evalue": text, "traceback": ["\x1b[31mE\x1b[0m"]},
        }[kind]
        output_id = self.new_id("o")
        if self.one(
            "outputAdded", actor, outputId=output_id, cellId=cell_id, outputType=kind, **extra, **fields
        ):
            self.outputs.append(output_id)

    def output_actor(self, data) -> dict:
        if data.draw(st.booleans()):
            return self.session_and_actor(data)[1]
        return data.draw(st.sampled_from(ACTORS))

    @precondition(lambda self: self.outputs)
    @rule(data=st.data(), text=texts, offset=st.integers(0, 14))
    def change_stream(self, data, text, offset):
        actor = self.output_actor(data)
        self.one(
            "streamTextChanged",
            actor,
            outputId=data.draw(st.sampled_from(self.outputs)),
            offset=offset,
            text=text,
        )

    @rule(data=st.data(), text=texts)
    def update_display(self, data, text):
        actor = self.output_actor(data)
        self.one(
            "displayUpdated",
            actor,
            displayId=data.draw(st.sampled_from(["d1", "d2", "d3"])),
            data={"text/plain": text},
        )

    @rule(data=st.data(), wait=st.booleans())
    def clear_outputs(self, data, wait):
        actor = self.output_actor(data)
        self.one("outputsCleared", actor, cellId=pick(data, self.cells, "ghost"), wait=wait)

    @precondition(lambda self: self.queue)
    @rule(data=st.data(), value=texts)
    def input_round_trip(self, data, value):
        _, actor = self.session_and_actor(data)
        queue_id = self.queue_id(data, "running")
        self.one("inputRequested", actor, queueId=queue_id, prompt="?")
        self.one("inputReplied", HUMAN, queueId=queue_id, value=value)

    # -- idempotency -----------------------------------------------------------------------------

    @rule(data=st.data())
    def repush(self, data):
        stored = self.log.read()
        event = data.draw(st.sampled_from(stored))
        head = self.log.head
        again = self.log.append([{k: event[k] for k in ("id", "name", "v", "args")}], HUMAN)
        assert again == [{"id": event["id"], "seq": event["seq"]}]
        assert self.log.head == head
        assert live_dump(self.log) == self.current

    # -- invariants and the end ------------------------------------------------------------------

    @invariant()
    def follower_matches_live(self):
        self.follower.apply_wire(self.log.read(self.follower.head))
        assert self.follower.head == self.log.head
        assert self.follower.dump() == self.current

    def teardown(self):
        try:
            fresh = Replica("nb")
            fresh.apply_wire(self.log.read())
            assert fresh.dump() == self.current == self.log.state_at().dump()
            seqs = sorted(self.live)
            for seq in seqs[:: max(1, len(seqs) // 8)]:  # a spread of past states (each is a replay)
                assert self.log.state_at(seq).dump() == self.live[seq], (
                    f"state_at({seq}) differs from the live state"
                )
            # a restarted store (empty caches) continues identically
            self.store.close()
            reopened = SQLiteEventStore(self.dir, snapshot_every=4)
            assert reopened.log("nb").state_at().dump() == self.current
            reopened.close()
        finally:
            self.store.close()
            shutil.rmtree(self.dir, ignore_errors=True)


DocumentMachine.TestCase.settings = settings(
    max_examples=50,
    stateful_step_count=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
TestDocument = DocumentMachine.TestCase
