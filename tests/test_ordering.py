"""Cell order by fractional index strings, ties broken by cell id."""

from __future__ import annotations

import random

import pytest

from runtimed.errors import EventRejected
from runtimed.schema import views
from runtimed.schema.events import make_event, validate_args
from runtimed.schema.ordering import key_between, key_for_position, keys_between
from runtimed.store.sqlite import SQLiteEventStore

HUMAN = {"id": "alice", "kind": "human"}


@pytest.fixture
def log(tmp_path):
    store = SQLiteEventStore(tmp_path)
    nb = store.log("nb")
    nb.append([make_event("notebookCreated", title="T")], HUMAN)
    yield nb
    store.close()


def order(log) -> list[str]:
    return [c["id"] for c in views.ordered_cells(log._conn)]


def test_two_thousand_inserts_at_one_spot_keep_order(log):
    keys = keys_between(None, None, 2)  # a first and a last cell
    ids = ["first", "last"]
    expected = list(ids)
    events = [
        make_event("cellCreated", cellId=i, cellType="code", fractionalIndex=k)
        for i, k in zip(ids, keys, strict=True)
    ]
    for n in range(2000):
        # always insert right after "first": between it and the previously inserted cell
        key = key_between(keys[0], keys[1])
        assert keys[0] < key < keys[1]
        keys.insert(1, key)
        expected.insert(1, f"c{n}")
        events.append(make_event("cellCreated", cellId=f"c{n}", cellType="code", fractionalIndex=key))
    assert keys == sorted(keys)
    assert max(map(len, keys)) < 4096  # the catalog's bound on a key
    results = log.append(events, HUMAN)
    assert all("seq" in r for r in results)
    assert order(log) == expected


def test_inserts_at_random_positions(log):
    rng = random.Random(7)
    cells: list[tuple[str, str]] = []  # (key, id) in order
    events = []
    for n in range(500):
        position = rng.randint(0, len(cells))
        key = key_for_position([k for k, _ in cells], position)
        cells.insert(position, (key, f"c{n}"))
        events.append(make_event("cellCreated", cellId=f"c{n}", cellType="code", fractionalIndex=key))
    assert [k for k, _ in cells] == sorted(k for k, _ in cells)
    log.append(events, HUMAN)
    assert order(log) == [i for _, i in cells]


def test_moves(log):
    keys = keys_between(None, None, 4)
    log.append(
        [
            make_event("cellCreated", cellId=f"c{i}", cellType="code", fractionalIndex=k)
            for i, k in enumerate(keys)
        ],
        HUMAN,
    )
    assert order(log) == ["c0", "c1", "c2", "c3"]
    log.append([make_event("cellMoved", cellId="c3", fractionalIndex=key_between(keys[0], keys[1]))], HUMAN)
    assert order(log) == ["c0", "c3", "c1", "c2"]
    log.append([make_event("cellMoved", cellId="c0", fractionalIndex=key_between(keys[3], None))], HUMAN)
    assert order(log) == ["c3", "c1", "c2", "c0"]
    first = views.ordered_cells(log._conn)[0]["fractional_index"]
    log.append([make_event("cellMoved", cellId="c2", fractionalIndex=key_between(None, first))], HUMAN)
    assert order(log) == ["c2", "c3", "c1", "c0"]


def test_ties_are_broken_by_cell_id(log):
    """Two clients that pick the same key concurrently still get one deterministic order."""
    log.append(
        [
            make_event("cellCreated", cellId=cid, cellType="code", fractionalIndex="a1")
            for cid in ("zeta", "alpha", "mid")
        ],
        HUMAN,
    )
    log.append([make_event("cellCreated", cellId="before", cellType="code", fractionalIndex="a0")], HUMAN)
    assert order(log) == ["before", "alpha", "mid", "zeta"]
    # inserting "between" a tie lands after it
    key = key_between("a1", "a1")
    assert key > "a1"


def test_key_for_position():
    assert key_for_position([], None) == key_for_position([], 0) == key_for_position([], -1)
    keys = keys_between(None, None, 3)
    assert key_for_position(keys, 0) < keys[0]
    assert keys[0] < key_for_position(keys, 1) < keys[1]
    assert key_for_position(keys, 99) > keys[-1]
    assert key_for_position(keys, None) > keys[-1]
    assert keys[1] < key_for_position(keys, -1) < keys[2]
    assert key_for_position(keys, -99) < keys[0]


def test_keys_between_counts_and_bounds():
    assert keys_between(None, None, 0) == []
    keys = keys_between("a0", "a1", 50)
    assert len(keys) == 50 and keys == sorted(keys) and len(set(keys)) == 50
    assert all("a0" < k < "a1" for k in keys)
    # reversed neighbours (a stale view) still produce usable keys after `before`
    assert all(k > "a5" for k in keys_between("a5", "a1", 3))


@pytest.mark.parametrize("key", ["", "a", "0", "a00", "a0 ", "a0é", "a0-", "zz not a key"])
def test_invalid_keys_are_rejected_by_the_catalog(key):
    with pytest.raises(EventRejected) as info:
        validate_args("cellMoved", 1, {"cellId": "c1", "fractionalIndex": key})
    assert "fractionalIndex" in info.value.message
