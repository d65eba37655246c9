"""The event catalog (DESIGN 3.1): names, validation messages, limits, and rejection without a trace."""

from __future__ import annotations

import base64

import orjson
import pytest

from runtimed.errors import EventRejected
from runtimed.schema import events as ev
from runtimed.schema.events import make_event, validate_actor, validate_args
from runtimed.schema.limits import Limits
from runtimed.schema.materializer import HANDLERS, Envelope
from runtimed.store.sqlite import SQLiteEventStore, SQLiteNotebookLog

HUMAN = {"id": "alice", "kind": "human", "name": "Alice"}

DESIGN_CATALOG = [
    "notebookCreated",
    "notebookMetadataSet",
    "cellCreated",
    "cellSourceEdited",
    "cellTypeChanged",
    "cellMoved",
    "cellMetadataSet",
    "cellAttachmentsSet",
    "cellDeleted",
    "executionRequested",
    "executionAssigned",
    "executionStarted",
    "executionCompleted",
    "executionCancelRequested",
    "executionRequeued",
    "outputAdded",
    "streamTextChanged",
    "streamTailSet",
    "displayUpdated",
    "outputsCleared",
    "runtimeSessionStarted",
    "runtimeStatusChanged",
    "runtimeSessionEnded",
    "runtimeInterruptRequested",
    "runtimeRestartRequested",
    "inputRequested",
    "inputReplied",
    "actorProfileSet",
    "toolApprovalRequested",
    "toolApprovalResolved",
    "aiSettingsSet",
    "commOpened",
    "commStateChanged",
    "commCustomMessage",
    "commClosed",
    "commUpdateRequested",
]

# One valid args example per event, to prove each is accepted and round-trips its wire form.
EXAMPLES: dict[str, dict] = {
    "notebookCreated": {"title": "T", "kernelspec": {"name": "python3", "display_name": "Python 3"}},
    "notebookMetadataSet": {"key": "papermill", "value": {"parameters": {"a": 1}}},
    "cellCreated": {"cellId": "c1", "cellType": "code", "fractionalIndex": "a0", "source": "x = 1"},
    "cellSourceEdited": {"cellId": "c1", "update": base64.b64encode(b"\x00\x00").decode()},
    "cellTypeChanged": {"cellId": "c1", "cellType": "markdown"},
    "cellMoved": {"cellId": "c1", "fractionalIndex": "a1"},
    "cellMetadataSet": {"cellId": "c1", "key": "tags", "value": ["x"]},
    "cellAttachmentsSet": {"cellId": "c1", "attachments": {"a.png": {"image/png": "iVBO"}}},
    "cellDeleted": {"cellId": "c1"},
    "executionRequested": {"queueId": "q1", "cellId": "c1", "batchId": "b1"},
    "executionAssigned": {"queueId": "q1", "sessionId": "s1"},
    "executionStarted": {"queueId": "q1", "sessionId": "s1", "source": "x = 1"},
    "executionCompleted": {
        "queueId": "q1",
        "status": "error",
        "durationMs": 3.5,
        "error": {"ename": "E", "evalue": "v", "traceback": ["t"]},
    },
    "executionCancelRequested": {},
    "executionRequeued": {"queueId": "q1", "reason": "runtime lost"},
    "outputAdded": {
        "outputId": "o1",
        "cellId": "c1",
        "queueId": "q1",
        "outputType": "stream",
        "name": "stdout",
        "text": "hi\n",
    },
    "streamTextChanged": {"outputId": "o1", "offset": 0, "text": "x"},
    "streamTailSet": {"outputId": "o1", "text": "tail\n", "omitted": 5, "omittedBytes": 5},
    "displayUpdated": {"displayId": "d1", "data": {"text/plain": "1"}},
    "outputsCleared": {"cellId": "c1", "wait": True},
    "runtimeSessionStarted": {"sessionId": "s1", "runtimeId": "r1", "kernelName": "python3"},
    "runtimeStatusChanged": {"sessionId": "s1", "status": "busy"},
    "runtimeSessionEnded": {"sessionId": "s1", "reason": "displaced"},
    "runtimeInterruptRequested": {},
    "runtimeRestartRequested": {},
    "inputRequested": {"queueId": "q1", "prompt": "name?", "password": False},
    "inputReplied": {"queueId": "q1", "value": "bob"},
    "actorProfileSet": {"actorId": "alice", "kind": "human", "displayName": "Alice"},
    "toolApprovalRequested": {"approvalId": "a1", "tool": "shell", "arguments": {"cmd": "ls"}},
    "toolApprovalResolved": {"approvalId": "a1", "decision": "approved_always"},
    "aiSettingsSet": {"provider": "anthropic", "model": "m", "settings": {"t": 0}},
    "commOpened": {"commId": "m1", "targetName": "jupyter.widget", "state": {"value": 1},
                   "buffers": [{"path": ["data"], "data": "AAE="}]},
    "commStateChanged": {"commId": "m1", "state": {"value": 2}},
    "commCustomMessage": {"commId": "m1", "content": {"event": "click"}},
    "commClosed": {"commId": "m1", "keep": True},
    "commUpdateRequested": {"commId": "m1", "state": {"value": 3}},
}


def rejected(name, args, v=1) -> EventRejected:
    with pytest.raises(EventRejected) as info:
        validate_args(name, v, args)
    return info.value


@pytest.fixture
def log(tmp_path):
    store = SQLiteEventStore(tmp_path)
    nb = store.log("nb")
    assert "seq" in nb.append([make_event("notebookCreated", title="T")], HUMAN)[0]
    yield nb
    store.close()


def test_every_design_event_is_in_the_catalog_with_a_handler():
    assert set(DESIGN_CATALOG) == set(ev.CATALOG)
    for name in DESIGN_CATALOG:
        assert ev.CATALOG[name].version == 1
        assert name in HANDLERS
    assert set(EXAMPLES) == set(DESIGN_CATALOG)


@pytest.mark.parametrize("name", DESIGN_CATALOG)
def test_examples_validate_and_round_trip(name):
    parsed = validate_args(name, 1, EXAMPLES[name])
    again = validate_args(name, 1, parsed.wire())
    assert again == parsed
    event = make_event(name, **EXAMPLES[name])
    assert event["name"] == name and event["v"] == 1 and ev.is_valid_id(event["id"])


def test_errors_name_the_event_the_field_and_the_problem():
    err = rejected("cellCreated", {"cellId": "c1", "cellType": "python", "fractionalIndex": "a0"})
    assert err.code == "invalid_args"
    assert err.message.startswith("cellCreated: ")
    assert "cellType" in err.message and "'code'" in err.message

    err = rejected("cellCreated", {"cellType": "code", "fractionalIndex": "a0"})
    assert "cellId" in err.message and "required" in err.message.lower()

    err = rejected("cellMoved", {"cellId": "c1", "fractionalIndex": "zz not a key"})
    assert "cellMoved: fractionalIndex" in err.message and "fractional index" in err.message

    err = rejected("cellDeleted", {"cellId": "c1", "extra": 1})
    assert "extra" in err.message and "not permitted" in err.message

    err = rejected("executionRequested", {"queueId": "has space", "cellId": "c1"})
    assert "queueId" in err.message and "pattern" in err.message

    err = rejected("outputAdded", {"outputId": "o", "cellId": "c", "outputType": "error", "ename": "E"})
    assert "outputAdded" in err.message and "evalue" in err.message and "traceback" in err.message


def test_bad_base64_is_rejected():
    err = rejected("cellSourceEdited", {"cellId": "c1", "update": "not base64!"})
    assert err.code == "invalid_args"
    assert "cellSourceEdited: update" in err.message and "base64" in err.message


@pytest.mark.parametrize("name", ["cellMade", "", None, 3])
def test_unknown_event_names(name):
    err = rejected(name, {})
    assert err.code == "unknown_event"
    assert "notebookCreated" in err.message  # it lists what exists


@pytest.mark.parametrize("version", [0, 2, "1", True, 1.0, None])
def test_unknown_versions(version):
    err = rejected("cellDeleted", {"cellId": "c1"}, v=version)
    assert err.code == "unsupported_version"
    assert "cellDeleted" in err.message and "v1" in err.message


@pytest.mark.parametrize("args", [[], "x", None, 5])
def test_args_must_be_an_object(args):
    assert rejected("cellDeleted", args).code == "invalid_args"


def test_actor_validation():
    with pytest.raises(EventRejected) as info:
        validate_actor({"id": "a", "kind": "robot"})
    assert info.value.code == "invalid_actor" and "kind" in info.value.message
    assert validate_actor(HUMAN).kind == "human"


def test_store_rejects_bad_actor_and_bad_event_ids(log):
    results = log.append([make_event("cellDeleted", cellId="x")], {"id": "", "kind": "human"})
    assert results[0]["error"]["code"] == "invalid_actor"
    results = log.append([{"id": "bad id", "name": "cellDeleted", "v": 1, "args": {"cellId": "x"}}, 7], HUMAN)
    assert results[0]["error"]["code"] == "invalid_event_id"
    assert results[1]["error"]["code"] == "invalid_event"
    assert log.head == 1


def test_oversized_events_are_rejected_with_a_configurable_limit(tmp_path):
    nb = SQLiteNotebookLog(tmp_path / "nb.db", "nb", limits=Limits(max_event_bytes=2000, max_batch_events=3))
    try:
        nb.append([make_event("notebookCreated", title="T")], HUMAN)
        big = make_event("cellCreated", cellId="c1", cellType="code", fractionalIndex="a0", source="x" * 3000)
        small = make_event("cellCreated", cellId="c2", cellType="code", fractionalIndex="a1", source="x" * 10)
        results = nb.append([big, small], HUMAN)
        assert results[0]["error"]["code"] == "event_too_large"
        assert "2000" in results[0]["error"]["message"] and "cellCreated" in results[0]["error"]["message"]
        assert results[1]["seq"] == 2
        assert nb.query("SELECT id FROM cells").rows == [("c2",)]

        batch = [make_event("cellMetadataSet", cellId="c2", key=f"k{i}", value=i) for i in range(4)]
        results = nb.append(batch, HUMAN)
        assert all(r["error"]["code"] == "batch_too_large" for r in results)
        assert nb.head == 2
    finally:
        nb.close()


def test_limits_from_env(monkeypatch):
    monkeypatch.setenv("RUNTIMED_LIMIT_MAX_EVENT_BYTES", "1234")
    assert Limits.from_env().max_event_bytes == 1234
    assert Limits.from_env().max_cells == Limits().max_cells


CELL_EVENTS = [
    ("cellSourceEdited", {"update": base64.b64encode(b"\x00\x00").decode()}),
    ("cellTypeChanged", {"cellType": "markdown"}),
    ("cellMoved", {"fractionalIndex": "a1"}),
    ("cellMetadataSet", {"key": "k", "value": 1}),
    ("cellAttachmentsSet", {"attachments": {}}),
    ("cellDeleted", {}),
    ("executionRequested", {"queueId": "q1"}),
    ("outputAdded", {"outputId": "o1", "outputType": "stream", "name": "stdout", "text": "x"}),
    ("outputsCleared", {"wait": False}),
    ("toolApprovalRequested", {"approvalId": "a1", "tool": "t"}),
    ("aiSettingsSet", {"provider": "p", "model": "m"}),
]


@pytest.mark.parametrize(("name", "extra"), CELL_EVENTS)
def test_events_for_unknown_cells_are_rejected_and_leave_nothing(log, name, extra):
    before = log.state_at().dump()
    results = log.append([make_event(name, cellId="ghost", **extra)], HUMAN)
    assert results[0]["error"]["code"] == "cell_not_found"
    assert "'ghost'" in results[0]["error"]["message"]
    assert log.head == 1
    assert log.query("SELECT COUNT(*) FROM events").rows == [(1,)]
    assert log.state_at().dump() == before


def test_events_before_notebook_created_and_a_second_notebook_created(tmp_path):
    store = SQLiteEventStore(tmp_path)
    nb = store.log("fresh")
    r = nb.append([make_event("notebookMetadataSet", key="k", value=1)], HUMAN)
    assert r[0]["error"]["code"] == "notebook_not_created"
    assert nb.head == 0
    r = nb.append([make_event("notebookCreated", title="A"), make_event("notebookCreated", title="B")], HUMAN)
    assert r[0]["seq"] == 1 and r[1]["error"]["code"] == "notebook_exists"
    store.close()


def test_envelope_wire_round_trip_and_encoded_reads_match(log):
    log.append([make_event(name, **EXAMPLES[name]) for name in ("cellCreated", "cellMetadataSet")], HUMAN)
    stored = log.read()
    for event in stored:
        env = Envelope.from_wire(event)
        assert env.to_wire() == event
    assert [orjson.loads(b) for b in log.read_encoded()] == stored


@pytest.mark.parametrize("name", ["api_key", "apiKey", "OPENAI_API_KEY", "secret", "token", "access_token", "password"])
def test_ai_settings_refuse_credentials(name: str) -> None:
    """Keys never enter the log: they belong in the daemon's environment."""
    with pytest.raises(EventRejected, match="looks like a secret"):
        make_event("aiSettingsSet", provider="openai", model="m", settings={name: "sk-123"})


def test_ai_settings_keep_ordinary_settings() -> None:
    event = make_event("aiSettingsSet", provider="openai", model="m",
                       settings={"base_url": "http://127.0.0.1:1/v1", "max_tokens": 100, "temperature": 0})
    assert event["args"]["settings"]["max_tokens"] == 100
