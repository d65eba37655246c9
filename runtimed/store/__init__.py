"""Event stores: the append-only per-notebook log and its projection."""

from runtimed.store.base import AppendResult, EventStore, NotebookLog
from runtimed.store.sqlite import SQLiteEventStore

__all__ = ["AppendResult", "EventStore", "NotebookLog", "SQLiteEventStore"]
