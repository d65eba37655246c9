"""An in-memory replica of a notebook: the same tables and materializer as the server.

Clients keep one per open notebook (fed by the sync protocol); the store uses one to
answer "the notebook as it was at seq N" (a snapshot plus a replay).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import Any, Concatenate, ParamSpec, TypeVar

from runtimed.schema.materializer import Envelope, Projection
from runtimed.schema.tables import PROJECTION_TABLES, create_tables, new_memory_database

P = ParamSpec("P")
T = TypeVar("T")


class Replica:
    def __init__(self, notebook_id: str, *, record_events: bool = True) -> None:
        self.notebook_id = notebook_id
        self.record_events = record_events
        self.conn = new_memory_database()
        self.projection = Projection(self.conn, notebook_id)
        self.head = 0

    @classmethod
    def from_snapshot(cls, notebook_id: str, data: bytes, **kwargs: Any) -> Replica:
        replica = cls(notebook_id, **kwargs)
        replica.load_snapshot(data)
        return replica

    def load_snapshot(self, data: bytes) -> None:
        """Replace the whole state by a snapshot (a serialized projection database)."""
        self.conn.deserialize(data)
        create_tables(self.conn)  # snapshots of older schema versions gain new tables
        self.projection.forget_cache()
        self.head = self.projection.head

    def apply_wire(self, events: Iterable[dict[str, Any]]) -> list[Envelope]:
        """Apply stored events (from the server) in order; events at or below the head are skipped."""
        applied = []
        for event in events:
            if event["seq"] <= self.head:
                continue
            if event["seq"] != self.head + 1:
                raise ValueError(f"gap in the log: replica at seq {self.head}, next event is seq {event['seq']}")
            env = Envelope.from_wire(event)
            self.projection.apply(env, record=self.record_events)
            self.head = env.seq
            applied.append(env)
        return applied

    def apply(self, env: Envelope) -> None:
        self.projection.apply(env, record=self.record_events)
        self.head = env.seq

    # -- reading ---------------------------------------------------------------------------------

    def view(self, fn: Callable[Concatenate[sqlite3.Connection, P], T], *args: P.args, **kwargs: P.kwargs) -> T:
        """Run a projection view (a function of ``schema/views.py``) against this replica."""
        return fn(self.conn, *args, **kwargs)

    def query(self, sql: str, params: Iterable[Any] = ()) -> list[dict[str, Any]]:
        cur = self.conn.execute(sql, tuple(params))
        names = [d[0] for d in cur.description or ()]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]

    def dump(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every projection row, in a stable order: equal dumps mean identical state."""
        out = {}
        for table in PROJECTION_TABLES:
            out[table] = self.conn.execute(f"SELECT * FROM {table} ORDER BY 1").fetchall()
        return out

    def close(self) -> None:
        self.conn.close()

