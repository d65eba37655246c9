"""Cell source as a Yjs text inside the log (DESIGN 3.2): convergence, minimal diffs, bad updates."""

from __future__ import annotations

import base64
import random

import pytest

from runtimed.schema.crdt import InvalidUpdate, SourceDoc, encode_update
from runtimed.schema.events import make_event
from runtimed.schema.replica import Replica
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "alice", "kind": "human"}
BOB = {"id": "bob", "kind": "human"}


@pytest.fixture
def log(tmp_path):
    store = SQLiteEventStore(tmp_path, snapshot_every=2)
    nb = store.log("nb")
    nb.append(
        [
            make_event("notebookCreated", title="T"),
            make_event(
                "cellCreated",
                cellId="c1",
                cellType="code",
                fractionalIndex="a0",
                source="def f(x):\n    return x\n",
            ),
        ],
        HUMAN,
    )
    yield nb
    store.close()


def ystate(log, cell_id="c1") -> bytes:
    return log.query("SELECT ystate FROM cells WHERE id = ?", (cell_id,)).rows[0][0]


def source(log, cell_id="c1") -> str:
    return log.query("SELECT source FROM cells WHERE id = ?", (cell_id,)).rows[0][0]


def edit(log, update: bytes, actor=HUMAN, cell_id="c1") -> dict:
    return log.append([make_event("cellSourceEdited", cellId=cell_id, update=encode_update(update))], actor)[
        0
    ]


class Editor:
    """A client: its own Y.Doc (own client id) fed by the log's cellSourceEdited events."""

    def __init__(self, log, client_id: int) -> None:
        self.log = log
        self.doc = SourceDoc(ystate(log), client_id=client_id)
        self.seen = log.head

    def pull(self) -> None:
        for event in self.log.read(self.seen):
            if event["name"] == "cellSourceEdited":
                self.doc.apply(base64.b64decode(event["args"]["update"]))
            self.seen = event["seq"]


def test_concurrent_edits_converge_keeping_both(log):
    alice, bob = Editor(log, 101), Editor(log, 202)
    a = alice.doc.update_to("# alice\ndef f(x):\n    return x\n")
    b = bob.doc.update_to("def f(x):\n    return x * 2  # bob\n")
    assert "seq" in edit(log, a) and "seq" in edit(log, b, BOB)
    expected = "# alice\ndef f(x):\n    return x * 2  # bob\n"
    assert source(log) == expected
    alice.pull()
    bob.pull()
    assert alice.doc.source == bob.doc.source == expected
    replica = Replica("nb")
    replica.apply_wire(log.read())
    assert replica.query("SELECT source FROM cells")[0]["source"] == expected
    assert replica.dump() == log.state_at().dump()


def test_same_position_concurrent_inserts_converge(log):
    alice, bob = Editor(log, 1001), Editor(log, 1002)
    a = alice.doc.update_to("def f(x):\n    return x + 1\n")
    b = bob.doc.update_to("def f(x):\n    return x + 2\n")
    edit(log, a)
    edit(log, b, BOB)
    alice.pull()
    bob.pull()
    final = source(log)
    assert alice.doc.source == bob.doc.source == final
    assert "+ 1" in final and "+ 2" in final


def test_offline_edits_merge_on_reconnect(log):
    online, offline = Editor(log, 11), Editor(log, 12)
    pending = [
        offline.doc.update_to(s)
        for s in ("def f(x):\n    return x\n# a\n", "def f(x):\n    return x\n# ab\n")
    ]
    for s in ("def g(x):\n    return x\n", "def g(y):\n    return x\n"):
        edit(log, online.doc.update_to(s))
    for update in pending:
        assert "seq" in edit(log, update, BOB)
    assert source(log) == "def g(y):\n    return x\n# ab\n"


def test_whole_source_replacement_is_a_minimal_diff(log):
    """An API client replacing the source must not clobber a concurrent keystroke elsewhere."""
    api, typist = Editor(log, 21), Editor(log, 22)
    replace = api.doc.update_to("def f(x):\n    return x\n\nprint(f(1))\n")
    keystroke = typist.doc.update_to("def f(xs):\n    return x\n")
    edit(log, keystroke, BOB)
    edit(log, replace)
    assert source(log) == "def f(xs):\n    return x\n\nprint(f(1))\n"


def test_update_for_a_small_change_in_a_long_text_is_small():
    text = "".join(f"line {i}: {'x' * 60}\n" for i in range(2000))
    doc = SourceDoc(SourceDoc.seeded(text).state(), client_id=5)
    update = doc.update_to(text[:70_000] + "!" + text[70_000:])
    assert update is not None and len(update) < 64, len(update)
    assert doc.update_to(doc.source) is None


@pytest.mark.parametrize("new", ["héllo 🎉 big wörld", "🎉", "", "日本語 héllo 🎉 wörld!", "a\u0301 wörld"])
def test_update_to_handles_non_ascii(new):
    doc = SourceDoc(SourceDoc.seeded("héllo 🎉 wörld").state(), client_id=6)
    update = doc.update_to(new)
    assert doc.source == new
    other = SourceDoc(SourceDoc.seeded("héllo 🎉 wörld").state(), client_id=7)
    other.apply_edit(update)
    assert other.source == new


def test_random_edits_round_trip_through_the_log(log):
    rng = random.Random(4)
    alphabet = "ab é日🎉\n"
    editors = [Editor(log, 300 + i) for i in range(3)]
    for _ in range(60):
        editor = rng.choice(editors)
        editor.pull()
        text = editor.doc.source
        i = rng.randint(0, len(text))
        j = rng.randint(i, min(len(text), i + 3))
        new = text[:i] + "".join(rng.choices(alphabet, k=rng.randint(0, 3))) + text[j:]
        update = editor.doc.update_to(new)
        if update is not None:
            assert "seq" in edit(log, update)
    for editor in editors:
        editor.pull()
        assert editor.doc.source == source(log)
    # replay, and snapshot-plus-replay, give the same state bytes as the live projection
    live = log.state_at().dump()
    replica = Replica("nb")
    replica.apply_wire(log.read())
    assert replica.dump() == live
    for seq in range(2, log.head):
        partial = log.state_at(seq)
        partial.apply_wire(log.read(seq))
        assert partial.dump() == live


@pytest.mark.parametrize("garbage", [b"\x01", b"garbage!", b"\xff" * 16, bytes(range(40))])
def test_invalid_yjs_bytes_are_rejected(log, garbage):
    before = log.state_at().dump()
    result = edit(log, garbage)
    assert result["error"]["code"] == "invalid_update"
    assert "c1" in result["error"]["message"]
    assert log.head == 2 and log.state_at().dump() == before


def test_update_that_depends_on_missing_edits_is_rejected(log):
    """A pending (unintegrated) update would live only in one replica's memory and fork the state."""
    editor = Editor(log, 77)
    first = editor.doc.update_to("def f(x):\n    return x  # one\n")
    second = editor.doc.update_to("def f(x):\n    return x  # one two\n")
    result = edit(log, second)
    assert result["error"]["code"] == "invalid_update" and "does not have" in result["error"]["message"]
    deleting = editor.doc.update_to("def f(x):\n    return x\n")  # deletes text the log never got
    assert edit(log, deleting)["error"]["code"] == "invalid_update"
    assert "seq" in edit(log, first)
    assert "seq" in edit(log, second)
    assert "seq" in edit(log, deleting)
    assert source(log) == "def f(x):\n    return x\n"


def test_invalid_update_raises_in_source_doc():
    with pytest.raises(InvalidUpdate):
        SourceDoc.seeded("x").apply(b"\x05\x05\x05")


def test_seeded_documents_are_identical_everywhere():
    assert SourceDoc.seeded("abc").state() == SourceDoc.seeded("abc").state()


def test_source_size_limit(tmp_path):
    from runtimed.schema.limits import Limits
    from runtimed.store.sqlite import SQLiteNotebookLog

    nb = SQLiteNotebookLog(tmp_path / "nb.db", "nb", limits=Limits(max_source_chars=10))
    nb.append(
        [
            make_event("notebookCreated", title="T"),
            make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0", source="12345"),
        ],
        HUMAN,
    )
    editor = SourceDoc(ystate(nb), client_id=9)
    result = edit(nb, editor.update_to("12345678901"))
    assert result["error"]["code"] == "source_too_large"
    assert source(nb) == "12345"
    # the rejected edit left no trace in the cached document either
    assert "seq" in edit(nb, SourceDoc(ystate(nb), client_id=10).update_to("123456"))
    assert source(nb) == "123456"
    nb.close()
