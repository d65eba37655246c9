"""Sync benchmark: the event log, its fan-out and its clients, against a real daemon.

    python bench/bench_sync.py                 # full run
    python bench/bench_sync.py --quick         # smoke run (tiny sizes; numbers are not meaningful)
    python bench/bench_sync.py --json out.json

Starts ``runtimed --no-runtimes`` in a temporary home and measures:

1. fan-out latency from one writer to 1, 10 and 50 readers: the time from pushing an event to each
   reader's replica having applied it (p50 and p99 over every event x reader). The writer and all the
   readers are ``SyncClient``s in this one asyncio process, so a reader's latency includes the client-side
   work of the readers served before it (JSON, validation, SQLite apply): with 50 readers on a 2-core
   machine that queueing is a large part of p99. A second figure with raw WebSocket readers (no replica)
   isolates the daemon's part;
2. sustained ingest: ``cellMetadataSet`` and ``cellSourceEdited`` (one typed character each) pushed in
   batches of 500, acknowledged, one push in flight and four in flight;
3. opening a 100,000-event notebook (cells, typing, metadata, outputs): a new ``SyncClient`` from
   connect to a fully materialized replica (it asks for a snapshot), and for comparison a replay of the
   whole log through the protocol without a snapshot;
4. replay speed: ``Replica.apply_wire`` over that log, in this process;
5. the daemon's resident memory (``VmRSS``) idle and with 100 notebooks open (a connected client each).

Targets: fan-out p50 <= 3 ms and p99 <= 15 ms at 50 readers; ingest >= 20,000 events/s; open a
100k-event notebook <= 0.5 s; RSS with 100 notebooks <= 150 MiB. Not collected by pytest.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
from websockets.asyncio.client import ClientConnection, connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from common import Figure, machine_info  # noqa: E402

from runtimed.client.discovery import DaemonEndpoint, find_daemon  # noqa: E402
from runtimed.client.sync import SyncClient  # noqa: E402
from runtimed.home import Home  # noqa: E402
from runtimed.schema.crdt import SourceDoc, encode_update  # noqa: E402
from runtimed.schema.ordering import keys_between  # noqa: E402
from runtimed.schema.replica import Replica  # noqa: E402

WRITER = {"id": "bench-writer", "kind": "automation", "name": "bench writer"}
TARGETS = {"fanout_p50_ms": 3.0, "fanout_p99_ms": 15.0, "ingest_events_per_s": 20_000.0, "open_100k_s": 0.5,
           "rss_100_notebooks_mib": 150.0}
BATCH = 500

FULL = {"fanout_readers": (1, 10, 50), "fanout_events": 200, "ingest_events": 40_000, "big_events": 100_000,
        "big_cells": 200, "open_rounds": 5, "notebooks": 100, "notebook_cells": 20}
QUICK = {"fanout_readers": (1, 10, 50), "fanout_events": 10, "ingest_events": 2_000, "big_events": 5_000,
         "big_cells": 20, "open_rounds": 2, "notebooks": 100, "notebook_cells": 3}


def ev(event_id: str, event_name: str, /, **args: Any) -> dict[str, Any]:
    """A wire event built directly (client-side validation is not what is measured here)."""
    return {"id": event_id, "name": event_name, "v": 1, "args": args}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


# -- the daemon ------------------------------------------------------------------------------------


class Daemon:
    """``runtimed --no-runtimes`` in a temporary home, started and stopped by the benchmark."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="rt-bench-sync-"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.endpoint: DaemonEndpoint | None = None

    def start(self, timeout: float = 60) -> DaemonEndpoint:
        os.environ.pop("RUNTIMED_URL", None)
        os.environ.pop("RUNTIMED_TOKEN", None)
        with open(self.home / "bench-daemon.stderr", "ab") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "runtimed.server.main", "--home", str(self.home), "--port", "0",
                 "--no-runtimes"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the daemon exited with {self.proc.returncode}; see {self.home}")
            found = find_daemon(Home(self.home))
            if found is not None and found.pid == self.proc.pid:
                self.endpoint = found
                return found
            time.sleep(0.05)
        raise RuntimeError("the daemon did not start")

    def rss_mib(self) -> float:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(httpx.HTTPError):
            assert self.endpoint is not None
            httpx.post(f"{self.endpoint.url}/api/shutdown", headers=self.endpoint.headers(), timeout=5)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(10)

    def cleanup(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)


@contextlib.asynccontextmanager
async def raw(endpoint: DaemonEndpoint, notebook_id: str, since: int = 0, **hello: Any) -> AsyncIterator[ClientConnection]:
    """A raw protocol connection, welcomed."""
    url = f"{endpoint.ws_url}/api/notebooks/{notebook_id}/sync"
    async with connect(url, additional_headers=endpoint.headers(), max_size=None, close_timeout=2) as ws:
        await ws.send(orjson.dumps({"type": "hello", "since": since, "actor": WRITER, "client": "bench",
                                    **hello}).decode())
        welcome = orjson.loads(await ws.recv())
        assert welcome["type"] == "welcome", welcome
        yield ws


class Pusher:
    """Pushes over a raw connection with up to ``depth`` pushes in flight; ignores the events coming back."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.acks: dict[int, asyncio.Future[list[dict[str, Any]]]] = {}
        self.ref = 0
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            if message.startswith('{"type":"events"'):
                continue
            data = orjson.loads(message)
            if data["type"] == "ack":
                fut = self.acks.pop(data["ref"], None)
                if fut is not None:
                    fut.set_result(data["results"])
            elif data["type"] == "error":
                raise RuntimeError(data)

    async def push_all(self, batches: list[list[dict[str, Any]]], depth: int = 1) -> None:
        window: list[asyncio.Future[list[dict[str, Any]]]] = []
        for batch in batches:
            if len(window) >= depth:
                check(await window.pop(0))
            self.ref += 1
            fut = asyncio.get_running_loop().create_future()
            self.acks[self.ref] = fut
            window.append(fut)
            await self.ws.send(orjson.dumps({"type": "push", "ref": self.ref, "events": batch}).decode())
        for fut in window:
            check(await fut)

    def close(self) -> None:
        self.reader.cancel()


def check(results: list[dict[str, Any]]) -> None:
    bad = [r for r in results if "error" in r]
    if bad:
        raise RuntimeError(f"{len(bad)} events rejected, first: {bad[0]}")


# -- 1. fan-out ------------------------------------------------------------------------------------


async def fanout_replicas(endpoint: DaemonEndpoint, readers_n: int, events_n: int) -> list[float]:
    """Latencies (ms) from push to each reader's replica applying the event."""
    notebook_id = f"fanout-{readers_n}"
    writer = SyncClient(endpoint.url, endpoint.token, notebook_id, WRITER)
    await writer.connect()
    await writer.commit([ev("fo-created", "notebookCreated", title="fan-out"),
                         ev("fo-cell", "cellCreated", cellId="c1", cellType="code", fractionalIndex="a0")])
    readers = [SyncClient(endpoint.url, endpoint.token, notebook_id,
                          {"id": f"reader{i}", "kind": "human", "name": f"reader {i}"}) for i in range(readers_n)]
    for reader in readers:
        await reader.connect()
    sent: dict[str, float] = {}
    seen: dict[str, int] = {}
    samples: list[float] = []
    done = asyncio.Event()

    def applied(envelopes: list[Any]) -> None:
        now = time.perf_counter()
        for env in envelopes:
            start = sent.get(env.id)
            if start is None:
                continue
            samples.append((now - start) * 1000)
            seen[env.id] = seen.get(env.id, 0) + 1
            if seen[env.id] == readers_n:
                done.set()

    for reader in readers:
        reader.on_events(applied)
    try:
        for i in range(events_n + 5):  # the first five warm up and are not counted
            event = ev(f"fo{readers_n}-{i}", "cellMetadataSet", cellId="c1", key="k", value=i)
            done.clear()
            sent[event["id"]] = time.perf_counter()
            check(await writer.push([event]))
            await asyncio.wait_for(done.wait(), 30)
            if i == 4:
                samples.clear()
    finally:
        for client in [writer, *readers]:
            await client.close()
    return samples


async def fanout_raw(endpoint: DaemonEndpoint, readers_n: int, events_n: int,
                     readers_at: Sequence[DaemonEndpoint] = ()) -> list[float]:
    """Latencies (ms) from push to each raw reader receiving and parsing the events message (the readers spread
    over ``readers_at`` when given: other daemons of the writer's deployment)."""
    notebook_id = f"fanout-raw-{readers_n}-{os.urandom(3).hex()}"
    sent: dict[str, float] = {}
    samples: list[float] = []
    counts: dict[str, int] = {}
    done = asyncio.Event()

    async def read(ws: ClientConnection) -> None:
        async for message in ws:
            now = time.perf_counter()
            data = orjson.loads(message)
            if data["type"] != "events":
                continue
            for event in data["events"]:
                start = sent.get(event["id"])
                if start is not None:
                    samples.append((now - start) * 1000)
                    counts[event["id"]] = counts.get(event["id"], 0) + 1
                    if counts[event["id"]] == readers_n:
                        done.set()

    async with contextlib.AsyncExitStack() as stack:
        ws = await stack.enter_async_context(raw(endpoint, notebook_id))
        pusher = Pusher(ws)
        await pusher.push_all([[ev("fr-created", "notebookCreated", title="raw fan-out"),
                                ev("fr-cell", "cellCreated", cellId="c1", cellType="code", fractionalIndex="a0")]])
        readers = [await stack.enter_async_context(raw(readers_at[i % len(readers_at)] if readers_at else endpoint,
                                                       notebook_id, since=2)) for i in range(readers_n)]
        tasks = [asyncio.create_task(read(r)) for r in readers]
        try:
            for i in range(events_n + 5):
                event = ev(f"fr{readers_n}-{i}", "cellMetadataSet", cellId="c1", key="k", value=i)
                done.clear()
                sent[event["id"]] = time.perf_counter()
                await pusher.push_all([[event]])
                await asyncio.wait_for(done.wait(), 30)
                if i == 4:
                    samples.clear()
        finally:
            pusher.close()
            for task in tasks:
                task.cancel()
    return samples


# -- 2. ingest -------------------------------------------------------------------------------------


def metadata_batches(prefix: str, total: int) -> list[list[dict[str, Any]]]:
    events = [ev(f"{prefix}-{i}", "cellMetadataSet", cellId="c1", key=f"k{i % 10}", value=i) for i in range(total)]
    return [events[i : i + BATCH] for i in range(0, total, BATCH)]


def typing_batches(prefix: str, total: int, cell_id: str = "c1") -> list[list[dict[str, Any]]]:
    """One typed character per event, as an editor sends them (a Yjs update each)."""
    doc = SourceDoc(SourceDoc.seeded("").state())
    events = []
    for i in range(total):
        update = doc.update_to(doc.source + ("\n" if i % 40 == 39 else "abcdefghij"[i % 10]))
        assert update is not None
        events.append(ev(f"{prefix}-{i}", "cellSourceEdited", cellId=cell_id, update=encode_update(update)))
    return [events[i : i + BATCH] for i in range(0, total, BATCH)]


async def ingest(endpoint: DaemonEndpoint, name: str, batches: list[list[dict[str, Any]]], depth: int) -> float:
    """Events per second, from the first push to the last acknowledgement."""
    notebook_id = f"ingest-{name}-{depth}"
    async with raw(endpoint, notebook_id) as ws:
        pusher = Pusher(ws)
        try:
            await pusher.push_all([[ev(f"{notebook_id}-created", "notebookCreated", title="ingest"),
                                    ev(f"{notebook_id}-cell", "cellCreated", cellId="c1", cellType="code",
                                       fractionalIndex="a0")]])
            prefix = f"{notebook_id}-"
            batches = [[{**e, "id": prefix + e["id"]} for e in batch] for batch in batches]
            started = time.perf_counter()
            await pusher.push_all(batches, depth)
            elapsed = time.perf_counter() - started
        finally:
            pusher.close()
    return sum(len(b) for b in batches) / elapsed


# -- 3. and 4. a big notebook ----------------------------------------------------------------------


def big_notebook_events(total: int, n_cells: int) -> list[dict[str, Any]]:
    """A notebook's life: cells, then typing (60 %), metadata (20 %) and outputs (20 %) spread over them."""
    rng = random.Random(42)
    cells = [f"cell{i}" for i in range(n_cells)]
    keys = keys_between(None, None, n_cells)
    events = [ev("big-created", "notebookCreated", title="big")]
    events += [ev(f"big-c{i}", "cellCreated", cellId=c, cellType="code", fractionalIndex=k)
               for i, (c, k) in enumerate(zip(cells, keys, strict=True))]
    docs = {c: SourceDoc(SourceDoc.seeded("").state()) for c in cells}
    i = 0
    while len(events) < total:
        i += 1
        cell = rng.choice(cells)
        roll = i % 10
        if roll < 6:
            doc = docs[cell]
            char = "\n" if rng.random() < 0.05 else rng.choice("abcdefghijklmnopqrstuvwxyz =()")
            update = doc.update_to(doc.source + char)
            assert update is not None
            events.append(ev(f"big-{i}", "cellSourceEdited", cellId=cell, update=encode_update(update)))
        elif roll < 8:
            events.append(ev(f"big-{i}", "cellMetadataSet", cellId=cell, key=f"k{i % 5}", value={"n": i}))
        elif roll == 8:
            events.append(ev(f"big-{i}", "outputAdded", outputId=f"o{i}", cellId=cell, outputType="stream",
                             name="stdout", text=f"line {i}\n"))
        else:
            events.append(ev(f"big-{i}", "outputAdded", outputId=f"o{i}", cellId=cell, outputType="display_data",
                             data={"text/plain": f"<result {i}>"}, metadata={}))
    return events


async def build(endpoint: DaemonEndpoint, notebook_id: str, events: list[dict[str, Any]]) -> float:
    async with raw(endpoint, notebook_id) as ws:
        pusher = Pusher(ws)
        try:
            started = time.perf_counter()
            await pusher.push_all([events[i : i + 5000] for i in range(0, len(events), 5000)], depth=2)
            return len(events) / (time.perf_counter() - started)
        finally:
            pusher.close()


async def open_with_client(endpoint: DaemonEndpoint, notebook_id: str, head: int) -> float:
    """Seconds from a new SyncClient's connect to a replica at the head."""
    client = SyncClient(endpoint.url, endpoint.token, notebook_id, {"id": "opener", "kind": "human", "name": ""})
    started = time.perf_counter()
    try:
        await client.connect(timeout=300)
        elapsed = time.perf_counter() - started
        assert client.replica.head == head, (client.replica.head, head)
        return elapsed
    finally:
        await client.close()


async def open_by_replay(endpoint: DaemonEndpoint, notebook_id: str, head: int) -> tuple[float, list[dict[str, Any]]]:
    """Seconds to catch up from seq 0 without a snapshot (events in batches), applying them to a replica."""
    replica = Replica(notebook_id)
    events: list[dict[str, Any]] = []
    started = time.perf_counter()
    async with raw(endpoint, notebook_id) as ws:
        while replica.head < head:
            data = orjson.loads(await ws.recv())
            if data["type"] == "events":
                replica.apply_wire(data["events"])
                events.extend(data["events"])
    elapsed = time.perf_counter() - started
    replica.close()
    return elapsed, events


def replay_rate(notebook_id: str, events: list[dict[str, Any]], record: bool) -> float:
    replica = Replica(notebook_id, record_events=record)
    started = time.perf_counter()
    replica.apply_wire(events)
    elapsed = time.perf_counter() - started
    replica.close()
    return len(events) / elapsed


# -- 5. memory -------------------------------------------------------------------------------------


async def open_notebooks(endpoint: DaemonEndpoint, n: int, cells: int, stack: contextlib.AsyncExitStack) -> None:
    """``n`` notebooks of ``cells`` cells each, every one with a connected client (kept open on ``stack``)."""
    async with httpx.AsyncClient(base_url=endpoint.url, headers=endpoint.headers(), timeout=60) as api:
        for j in range(n):
            notebook_id = f"mem-{j}"
            r = await api.post("/api/notebooks", json={"id": notebook_id, "title": f"notebook {j}"})
            r.raise_for_status()
            keys = keys_between(None, None, cells)
            events = [ev(f"mem-{j}-{i}", "cellCreated", cellId=f"c{i}", cellType="code", fractionalIndex=k,
                         source=f"x{i} = {i}\nprint(x{i})\n") for i, k in enumerate(keys)]
            r = await api.post(f"/api/notebooks/{notebook_id}/events", json={"events": events})
            check(r.json()["results"])
    for j in range(n):
        await stack.enter_async_context(raw(endpoint, f"mem-{j}"))


# -- the run ---------------------------------------------------------------------------------------


def figure(group: str, name: str, unit: str, value: float, target: tuple[float, str] | None = None,
           note: str = "", samples: list[float] | None = None) -> Figure:
    f = Figure(group, name, unit, samples if samples is not None else [round(value, 4)], note=note)
    if samples is not None:  # the figure is a percentile of the samples, not their median
        f.median = value
    if target is not None:
        limit, op = target
        if op == ">=":
            f.target = f">= {limit:g} {unit}"
            f.met = value >= limit
        else:
            f.target = f"<= {limit:g} {unit}"
            f.met = value <= limit
    return f


async def run(quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    sizes = QUICK if quick else FULL
    results: dict[str, Any] = {"quick": quick}
    figures: list[Figure] = []
    daemon = Daemon()
    endpoint = daemon.start()
    try:
        await asyncio.sleep(0.5)
        results["rss_idle_mib"] = round(daemon.rss_mib(), 1)
        log(f"daemon pid {daemon.proc.pid if daemon.proc else '?'}, idle RSS {results['rss_idle_mib']} MiB")

        n = sizes["notebooks"]
        async with contextlib.AsyncExitStack() as stack:
            await open_notebooks(endpoint, n, sizes["notebook_cells"], stack)
            await asyncio.sleep(0.5)
            results[f"rss_{n}_notebooks_mib"] = round(daemon.rss_mib(), 1)
        log(f"RSS with {n} notebooks open: {results[f'rss_{n}_notebooks_mib']} MiB")
        figures.append(figure("memory", "daemon RSS, idle", "MiB", results["rss_idle_mib"]))
        figures.append(figure("memory", f"daemon RSS, {n} notebooks open ({sizes['notebook_cells']} cells, "
                              "a client each)", "MiB", results[f"rss_{n}_notebooks_mib"],
                              (TARGETS["rss_100_notebooks_mib"], "<=") if n == 100 else None))

        results["fanout"] = {}
        for readers_n in sizes["fanout_readers"]:
            samples = await fanout_replicas(endpoint, readers_n, sizes["fanout_events"])
            p50, p99 = percentile(samples, 0.5), percentile(samples, 0.99)
            raw_samples = await fanout_raw(endpoint, readers_n, sizes["fanout_events"])
            rp50, rp99 = percentile(raw_samples, 0.5), percentile(raw_samples, 0.99)
            results["fanout"][str(readers_n)] = {"p50_ms": round(p50, 3), "p99_ms": round(p99, 3),
                                                 "raw_p50_ms": round(rp50, 3), "raw_p99_ms": round(rp99, 3),
                                                 "samples": len(samples)}
            log(f"fan-out to {readers_n:>2} readers: replicas p50 {p50:.2f} ms, p99 {p99:.2f} ms; "
                f"raw sockets p50 {rp50:.2f} ms, p99 {rp99:.2f} ms ({len(samples)} samples)")
            judged = readers_n == 50
            group = f"fan-out, {readers_n} reader{'s' if readers_n > 1 else ''}"
            figures.append(figure(group, "p50 push -> replica applied", "ms", p50,
                                  (TARGETS["fanout_p50_ms"], "<=") if judged else None))
            figures.append(figure(group, "p99 push -> replica applied", "ms", p99,
                                  (TARGETS["fanout_p99_ms"], "<=") if judged else None,
                                  note="all readers in one asyncio process"))
            figures.append(figure(group, "p50 push -> raw socket received", "ms", rp50))
            figures.append(figure(group, "p99 push -> raw socket received", "ms", rp99))

        results["ingest"] = {}
        total = sizes["ingest_events"]
        for kind, make in (("cellMetadataSet", metadata_batches), ("cellSourceEdited", typing_batches)):
            batches = make("e", total)
            for depth in (1, 4):
                rate = await ingest(endpoint, kind, batches, depth)
                results["ingest"][f"{kind}_depth{depth}_events_per_s"] = round(rate)
                log(f"ingest {kind}, batches of {BATCH}, {depth} in flight: {rate:,.0f} events/s")
                judged = kind == "cellMetadataSet" and depth == 1
                figures.append(figure("ingest", f"{kind}, batches of {BATCH}, {depth} push(es) in flight",
                                      "events/s", rate, (TARGETS["ingest_events_per_s"], ">=") if judged else None))

        big = sizes["big_events"]
        started = time.perf_counter()
        events = big_notebook_events(big, sizes["big_cells"])
        log(f"generated a {big:,}-event notebook in {time.perf_counter() - started:.1f} s")
        rate = await build(endpoint, "big", events)
        results["big_build_events_per_s"] = round(rate)
        log(f"built it at {rate:,.0f} events/s (mixed events, batches of 5000)")
        figures.append(figure("ingest", "mixed notebook events, batches of 5000, 2 in flight", "events/s", rate))
        opens = [await open_with_client(endpoint, "big", len(events)) for _ in range(sizes["open_rounds"])]
        results["open_big_s"] = round(statistics.median(opens), 4)
        log(f"open the {big:,}-event notebook (SyncClient, snapshot): median {statistics.median(opens):.3f} s "
            f"of {[round(o, 3) for o in opens]}")
        figures.append(figure(f"open a {big:,}-event notebook", "SyncClient connect -> materialized replica", "s",
                              statistics.median(opens), (TARGETS["open_100k_s"], "<=") if big == 100_000 else None,
                              samples=opens))
        replay_s, wire = await open_by_replay(endpoint, "big", len(events))
        results["open_big_replay_s"] = round(replay_s, 3)
        log(f"catch up from seq 0 without a snapshot: {replay_s:.2f} s")
        figures.append(figure(f"open a {big:,}-event notebook", "catch-up from seq 0 without snapshot", "s", replay_s))

        rates = {record: replay_rate("big", wire, record) for record in (True, False)}
        results["replay_events_per_s"] = round(rates[True])
        results["replay_no_event_rows_events_per_s"] = round(rates[False])
        log(f"Replica.apply_wire: {rates[True]:,.0f} events/s ({rates[False]:,.0f} without storing event rows)")
        figures.append(figure("replay", "Replica.apply_wire", "events/s", rates[True]))
        figures.append(figure("replay", "Replica.apply_wire, record_events=False", "events/s", rates[False]))

        gc.collect()
        results["rss_end_mib"] = round(daemon.rss_mib(), 1)
        figures.append(figure("memory", "daemon RSS at the end (all of the above open)", "MiB", results["rss_end_mib"]))
        log(f"RSS at the end: {results['rss_end_mib']} MiB")
    finally:
        daemon.stop()
        daemon.cleanup()

    met = {f"{f.group}: {f.name}": f.met for f in figures if f.target}
    return {"suite": "sync", "quick": quick, "results": results, "targets": TARGETS, "met": met,
            "figures": [f.to_json() for f in figures], "machine": machine_info(),
            "note": "fan-out readers are SyncClients in the benchmark's one asyncio process"}


def print_table(report: dict[str, Any]) -> None:
    rows = [(f["group"], f["name"], f["median"], f["unit"], f.get("target") or "",
             "" if f.get("met") is None else ("met" if f["met"] else "MISSED")) for f in report["figures"]]
    width = max(len(f"{g}: {n}") for g, n, *_ in rows)
    print(f"\n{'figure':<{width}}  {'value':>14}  target")
    for group, name, value, unit, target, verdict in rows:
        shown = f"{value:,.0f} {unit}" if unit == "events/s" else f"{value:.3f} {unit}" if unit == "s" else \
            f"{value:.2f} {unit}"
        print(f"{group + ': ' + name:<{width}}  {shown:>14}  {verdict} {target}".rstrip())
    print(f"\n({report['note']}{'; quick smoke run: sizes are tiny' if report['quick'] else ''})")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run")
    parser.add_argument("--json", metavar="PATH", help="write the results as JSON to PATH")
    args = parser.parse_args(argv)
    report = asyncio.run(run(args.quick, lambda line: print(line, flush=True)))
    print_table(report)
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
