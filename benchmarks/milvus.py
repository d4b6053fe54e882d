#!/usr/bin/env python
"""vecdr Milvus benchmark: snapshot and restore of a Milvus Lite collection against pymilvus's own paths.

One Milvus Lite database (``milvus-lite`` 3, pure Python), one collection
``items (id INT64 primary key, vector FLOAT_VECTOR(d))`` with an HNSW index
(M=16, efConstruction=64, L2), measured in the same run:

- ``vecdr.restore`` against a naive restore (rows converted with ``.tolist()`` and
  inserted through ``MilvusClient.insert`` 1,000 at a time, then the same index and
  load), against the ingest ceiling (pre-built rows, pre-built insert requests) and
  against Milvus Lite's own ingest alone (pre-built rows through its embedded API);
- ``vecdr.snapshot`` time and peak RSS against reading every row through pymilvus's
  ``query_iterator``; the bytes of a diff snapshot after 1% of the rows changed;
- top-10 ids of held-out queries on the restored collection against the original's.

Every measured call runs in a fresh child process (``--worker``), so its memory is
its own: Milvus Lite allows one process per database, and in a ``milvus:PATH.db``
child the database is served in that process.

    .venv/bin/python benchmarks/milvus.py            # 100k x 384, about 12-25 min on 2 cores
    .venv/bin/python benchmarks/milvus.py --quick    # 3k x 32 smoke test, well under a minute
    .venv/bin/python benchmarks/milvus.py --server milvus://host:19530   # the same on a Milvus server

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pgvector import make_data, peak_rss_mib, run_process  # noqa: E402  (the pgvector benchmark's helpers)
from run import (  # noqa: E402  (the core benchmark's helpers)
    RunRecord,
    log,
    make_changes,
    print_figures,
    recall_at_10,
    record_figure,
    stats,
    write_results,
)

COLLECTION = "items"
HNSW = {"M": 16, "efConstruction": 64}
METRIC = "L2"
NAIVE_BATCH = 1000
RSS_LIMIT_MIB = 512

#: figure name -> (comparison, threshold, what it is)
TARGETS: dict[str, tuple[str, float, str]] = {
    "milvus_restore_rows_time_ratio": (
        "<=", 0.55,
        "vecdr.restore with the rows in (everything but building the index and loading) / the naive restore's "
        "rows in (.tolist() rows through MilvusClient.insert 1,000 at a time, then flush)",
    ),
    "milvus_restore_total_time_ratio": (
        "<=", 0.55,
        "whole vecdr.restore (create, rows, flush, HNSW index, load, count, rename) / whole naive restore "
        "(create, rows, flush, the same HNSW index, load)",
    ),
    "milvus_ingest_ceiling_ratio": (
        "<=", 1.2,
        "vecdr.restore rows in / the faster ingest ceiling: pre-built rows through MilvusClient.insert, or "
        "pre-built columnar insert requests",
    ),
    "milvus_snapshot_time_ratio": (
        "<=", 1.0,
        "vecdr.snapshot seconds / reading every row through pymilvus's query_iterator (and writing nothing)",
    ),
    "milvus_snapshot_peak_rss_mib": ("<=", RSS_LIMIT_MIB, "peak RSS of a process running vecdr.snapshot, MiB"),
    "milvus_incremental_bytes_ratio": (
        "<=", 0.02, "diff snapshot bytes_written after 1% of the rows changed / full snapshot bytes_written",
    ),
    "milvus_top10_overlap": (
        ">=", 0.99,
        "top-10 ids of held-out queries on the restored collection that are also in the original's top 10, "
        "on average (same index type and parameters, same search parameters)",
    ),
}  # fmt: skip


# -- child processes ------------------------------------------------------------------


@dataclass(frozen=True)
class Where:
    """The Milvus measured: a Milvus Lite folder (each worker opens it in its own process),
    or a server (``--server``), where every collection's name starts with ``prefix``."""

    address: str  # what MilvusClient takes: PATH.db, or http(s)://host:port
    base: str  # vecdr's URI before its query: milvus:PATH.db, milvus://host:port
    db_name: str = ""
    prefix: str = ""
    lite: bool = True

    def name(self, collection: str) -> str:
        return self.prefix + collection

    def uri(self, collection: str) -> str:
        return f"{self.base}?collection={self.name(collection)}" + (f"&db={self.db_name}" if self.db_name else "")

    def args(self) -> dict[str, str]:
        """What a worker needs to connect (the token travels in VECDR_MILVUS_TOKEN, not on a command line)."""
        return {"address": self.address, "db_name": self.db_name}


def _client(a: dict[str, Any]) -> Any:
    from pymilvus import MilvusClient

    from vecdr.backends.milvus.uri import TOKEN_ENV

    return MilvusClient(uri=a["address"], token=os.environ.get(TOKEN_ENV, ""), db_name=a.get("db_name", ""))


def _rows(ids: np.ndarray, x: np.ndarray) -> list[dict[str, Any]]:
    """Rows as a naive client builds them: ``.tolist()`` vectors in dicts."""
    return [{"id": i, "vector": v} for i, v in zip(ids.tolist(), x.tolist(), strict=True)]


def _row_batches(ids: np.ndarray, x: np.ndarray) -> list[list[dict[str, Any]]]:
    """:func:`_rows` of every ``NAIVE_BATCH`` rows, built ahead (the ingest ceilings)."""
    return [_rows(ids[at : at + NAIVE_BATCH], x[at : at + NAIVE_BATCH]) for at in range(0, len(x), NAIVE_BATCH)]


def _create(client: Any, name: str, d: int, index: bool) -> None:
    from pymilvus import DataType, MilvusClient

    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False)
    schema.add_field("id", DataType.INT64, is_primary=True)
    schema.add_field("vector", DataType.FLOAT_VECTOR, dim=d)
    client.create_collection(name, schema=schema)
    if index:
        _index_and_load(client, name)


def _index_and_load(client: Any, name: str) -> None:
    params = client.prepare_index_params()
    # Nested under "params": the form Milvus Lite keeps (pymilvus 3 would send flat keys it ignores).
    params.add_index("vector", index_type="HNSW", metric_type=METRIC, params={"params": HNSW})
    client.create_index(name, params)
    client.load_collection(name)


def _requests(name: str, ids: np.ndarray, x: np.ndarray, db_name: str = "") -> list[Any]:
    """Columnar insert requests of vecdr's batch size, as its restore sends them."""
    import pyarrow as pa

    from vecdr.backends.milvus import wire
    from vecdr.backends.milvus.target import INSERT_BATCH_BYTES
    from vecdr.backends.milvus.types import FieldSpec
    from vecdr.format.segment import vectors_to_arrow

    pk = FieldSpec("id", "INT64", is_primary=True)
    vector = FieldSpec("vector", "FLOAT_VECTOR", {"dim": x.shape[1]})
    rows = max(1, INSERT_BATCH_BYTES // (4 * x.shape[1] + 8))
    return [
        wire.insert_request(name, "_default", db_name, len(ids[at : at + rows]), [
            wire.encode(pa.array(ids[at : at + rows]), pk), wire.encode(vectors_to_arrow(x[at : at + rows]), vector)])
        for at in range(0, len(ids), rows)
    ]  # fmt: skip


def _send(client: Any, requests: list[Any]) -> None:
    from vecdr.backends.milvus.client import stub

    for request in requests:
        status = stub(client).Insert(request).status
        if status.code:
            raise RuntimeError(status.reason)


def cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def worker(action: str, a: dict[str, Any]) -> dict[str, Any]:
    """One measured call in this fresh process; the seconds are around the call alone, and
    ``cpu_seconds`` the CPU time of every thread meanwhile (Milvus Lite's included)."""
    out: dict[str, Any] = {}
    if action == "floor_embedded":  # Milvus Lite's own ingest, without pymilvus or gRPC
        from milvus_lite import CollectionSchema, DataType, FieldSchema, MilvusLite

        x = np.load(a["x"], mmap_mode="r")
        ids = np.arange(len(x), dtype=np.int64)
        prebuilt = _row_batches(ids, x)
        schema = CollectionSchema([FieldSchema("id", DataType.INT64, is_primary=True),
                                   FieldSchema("vector", DataType.FLOAT_VECTOR, dim=x.shape[1])])
        lite = MilvusLite(a["address"])
        t0, c0 = time.perf_counter(), cpu()
        col = lite.create_collection(a["collection"], schema)
        for rows in prebuilt:
            col.insert(rows)
        col.flush()
        out["rows_seconds"] = time.perf_counter() - t0
        out["rows_cpu_seconds"] = cpu() - c0
        out["rows"] = col.num_entities
        lite.drop_collection(a["collection"])
        lite.close()
    elif action in ("setup", "naive", "ceiling_rows", "ceiling_requests"):
        x = np.load(a["x"], mmap_mode="r")
        ids = np.arange(len(x), dtype=np.int64)
        client = _client(a)
        name = a["collection"]
        if action == "setup":  # not measured: the original collection, loaded the fast way
            _create(client, name, x.shape[1], index=False)
            _send(client, _requests(name, ids, np.asarray(x), a["db_name"]))
            client.flush(name)
            t0 = time.perf_counter()
            _index_and_load(client, name)
            out["index_and_load_seconds"] = time.perf_counter() - t0
            return out
        prebuilt: Any = None
        if action == "ceiling_rows":
            prebuilt = _row_batches(ids, x)
        elif action == "ceiling_requests":
            prebuilt = _requests(name, ids, np.asarray(x), a["db_name"])
        t0, c0 = time.perf_counter(), cpu()
        _create(client, name, x.shape[1], index=False)
        if action == "naive":
            for at in range(0, len(x), NAIVE_BATCH):
                client.insert(name, _rows(ids[at : at + NAIVE_BATCH], x[at : at + NAIVE_BATCH]))
        elif action == "ceiling_rows":
            for rows in prebuilt:
                client.insert(name, rows)
        else:
            _send(client, prebuilt)
        client.flush(name)
        out["rows_seconds"] = time.perf_counter() - t0
        out["rows_cpu_seconds"] = cpu() - c0
        if action == "naive":
            t1 = time.perf_counter()
            _index_and_load(client, name)
            out["index_and_load_seconds"] = time.perf_counter() - t1
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = cpu() - c0
        out["rows"] = client.query(name, output_fields=["count(*)"])[0]["count(*)"]
        client.drop_collection(name)
    elif action in ("snapshot", "restore"):
        from run import PhaseTimer

        import vecdr
        timer = PhaseTimer()
        # Connected (Milvus Lite started in this process) before the clock starts, as on the
        # naive side; a snapshot's collection loaded, as a served collection is.
        client = _client(a)
        if action == "snapshot":
            client.load_collection(a["collection"])
        repo = vecdr.open_repository(a["repo"])
        t0, c0 = time.perf_counter(), cpu()
        if action == "snapshot":
            res = vecdr.snapshot(repo, a["uri"], collection=COLLECTION, reporter=timer)
            out.update(rows=res.rows, bytes_written=res.bytes_written, mode=res.mode, added=res.added,
                       changed=res.changed, deleted=res.deleted)  # fmt: skip
        else:
            res = vecdr.restore(repo, a["uri"], a.get("snapshot", "latest"), collection=COLLECTION, reporter=timer)
            phases = res.phases
            after_rows = sum(phases.get(k, 0.0) for k in ("index", "load", "count", "publish"))
            out.update(rows=res.rows, phases=phases, after_rows_seconds=after_rows)
        out["seconds"] = time.perf_counter() - t0
        out["cpu_seconds"] = cpu() - c0
        out["engine_seconds"] = res.seconds
        out["warnings"] = timer.warnings
        if action == "restore":
            out["rows_seconds"] = out["seconds"] - out["after_rows_seconds"]
            if a.get("drop"):
                client.drop_collection(a["drop"])
    elif action == "iterate":  # the baseline export: every row through pymilvus's iterator
        client = _client(a)
        client.load_collection(a["collection"])
        t0, c0 = time.perf_counter(), cpu()
        it = client.query_iterator(a["collection"], batch_size=a["batch"], output_fields=["id", "vector"])
        rows = 0
        while page := it.next():
            rows += len(page)
            for row in page:  # what an export does with each row: take its vector
                row["vector"]
        it.close()
        out.update(seconds=time.perf_counter() - t0, cpu_seconds=cpu() - c0, rows=rows)
    elif action == "change":
        changes = np.load(a["changes"])
        client = _client(a)
        name = a["collection"]
        client.upsert(name, _rows(changes["update_ids"], changes["update_vectors"]))
        client.insert(name, _rows(changes["insert_ids"], changes["insert_vectors"]))
        client.delete(name, ids=changes["delete_ids"].tolist())
        client.flush(name)
    elif action == "search":
        client = _client(a)
        queries = np.load(a["queries"]).tolist()
        for i, name in enumerate(a["collections"]):
            client.load_collection(name)
            hits = client.search(name, data=queries, limit=10, anns_field="vector",
                                 search_params={"metric_type": METRIC, "params": {"ef": a["ef"]}})  # fmt: skip
            found = np.full((len(queries), 10), -1, np.int64)
            for q, row in enumerate(hits):
                found[q, : len(row)] = [h["id"] for h in row]
            np.save(a["out"][i], found)
            desc = client.describe_index(name, "vector")
            out[name] = {k: desc.get(k) for k in ("index_type", "metric_type", "params")}
    out["cpu_seconds_process"] = cpu()
    out["peak_rss_mib"] = peak_rss_mib()
    return out


def run_worker(action: str, **args: Any) -> dict[str, Any]:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", action, json.dumps(args)]
    proc = run_process(cmd)
    if proc["rc"] != 0:
        raise RuntimeError(f"{action} failed ({proc['rc']}):\n{proc['stderr'][-3000:]}")
    inner: dict[str, Any] = json.loads(proc["stdout"].strip().splitlines()[-1])
    inner["process_seconds"] = round(proc["seconds"], 3)
    inner["loadavg_1min"] = proc["loadavg_1min"]
    return inner


# -- cases ------------------------------------------------------------------------------


def case_snapshot(work: Path, where: Where, repeats: int, figures: dict[str, Any], batch: int) -> dict[str, Any]:
    """vecdr.snapshot vs pymilvus's query_iterator, each against a server: on Milvus Lite, a
    milvus-lite server process, so that the snapshot process's memory is vecdr's own."""
    import vecdr
    from vecdr.testing.milvus import start

    server = start(where.address) if where.lite else None
    served = Where(server.address, f"milvus://127.0.0.1:{server.port}", lite=False) if server else where
    snaps: list[dict[str, Any]] = []
    reads: list[dict[str, Any]] = []
    try:
        for rep in range(repeats):
            def snap(rep: int = rep) -> None:
                root = work / f"repo-{rep}"
                vecdr.init(root)
                snaps.append(run_worker("snapshot", repo=str(root), uri=served.uri(COLLECTION),
                                        collection=served.name(COLLECTION), **served.args()))  # fmt: skip

            def read() -> None:
                reads.append(run_worker("iterate", collection=served.name(COLLECTION), batch=batch, **served.args()))

            for step in (snap, read) if rep % 2 == 0 else (read, snap):
                step()
            log(f"snapshot rep {rep}: vecdr {snaps[-1]['seconds']:.2f}s ({snaps[-1]['peak_rss_mib']} MiB), "
                f"query_iterator {reads[-1]['seconds']:.2f}s ({reads[-1]['peak_rss_mib']} MiB)")  # fmt: skip
    finally:
        if server:
            server.stop(remove=False)
    for rep in range(1, repeats):
        shutil.rmtree(work / f"repo-{rep}")
    snap_t, read_t = [s["seconds"] for s in snaps], [r["seconds"] for r in reads]
    rows = snaps[0]["rows"]
    figure(figures, "milvus_snapshot_time_ratio", min(snap_t) / min(read_t),
           f"best of {len(snap_t)}: {min(snap_t):.3f}s vecdr.snapshot ({rows / min(snap_t):,.0f} rows/s) / "
           f"{min(read_t):.3f}s query_iterator(batch_size={batch}) ({rows / min(read_t):,.0f} rows/s)",
           median_ratio=round(statistics.median(snap_t) / statistics.median(read_t), 6),
           rows_per_second=round(rows / min(snap_t), 1))  # fmt: skip
    rss = [s["peak_rss_mib"] for s in snaps]
    figure(figures, "milvus_snapshot_peak_rss_mib", max(rss),
           f"max of {len(rss)} samples' VmHWM: {rss} MiB, each a fresh Python process running vecdr.snapshot "
           f"against {'a milvus-lite server process' if where.lite else where.base}")  # fmt: skip
    return {"vecdr_snapshot": {**stats(snap_t), "rows_per_second": round(rows / min(snap_t), 1), "runs": snaps},
            "query_iterator": {**stats(read_t), "batch_size": batch, "runs": reads}}  # fmt: skip


def case_incremental(work: Path, where: Where, changes: Path, figures: dict[str, Any]) -> dict[str, Any]:
    full = json.loads((work / "repo-0" / "full.json").read_text())
    run_worker("change", collection=where.name(COLLECTION), changes=str(changes), **where.args())
    inc = run_worker("snapshot", repo=str(work / "repo-0"), uri=where.uri(COLLECTION),
                     collection=where.name(COLLECTION), **where.args())  # fmt: skip
    figure(figures, "milvus_incremental_bytes_ratio", inc["bytes_written"] / full["bytes_written"],
           f"{inc['bytes_written']} bytes_written by the {inc['mode']} snapshot (+{inc['added']} ~{inc['changed']} "
           f"-{inc['deleted']}) / {full['bytes_written']} of the full one")  # fmt: skip
    return {"full": full, "incremental": inc}


def case_restore(work: Path, where: Where, x_path: Path, repeats: int, figures: dict[str, Any]) -> dict[str, Any]:
    """vecdr.restore vs the naive restore, the two ingest ceilings and (on Milvus Lite) its own ingest,
    every one in every round, the order rotated round by round."""
    naive: list[dict[str, Any]] = []
    ours: list[dict[str, Any]] = []
    ceilings: dict[str, list[dict[str, Any]]] = {"prebuilt_rows": [], "prebuilt_requests": []}
    floor: list[dict[str, Any]] = []
    kept = f"{COLLECTION}_restored"
    for rep in range(repeats):
        def base(rep: int = rep) -> None:
            naive.append(run_worker("naive", collection=where.name(f"naive_{rep}"), x=str(x_path), **where.args()))

        def mine(rep: int = rep) -> None:
            name = kept if rep == repeats - 1 else f"vecdr_{rep}"
            ours.append(run_worker("restore", repo=str(work / "repo-0"), uri=where.uri(name),
                                   drop=None if name == kept else where.name(name), **where.args()))  # fmt: skip

        def rows() -> None:
            ceilings["prebuilt_rows"].append(run_worker("ceiling_rows", collection=where.name("ceiling_rows"),
                                                        x=str(x_path), **where.args()))  # fmt: skip

        def requests() -> None:
            ceilings["prebuilt_requests"].append(run_worker("ceiling_requests", x=str(x_path),
                                                            collection=where.name("ceiling_requests"),
                                                            **where.args()))  # fmt: skip

        def embedded() -> None:
            floor.append(run_worker("floor_embedded", collection="floor_embedded", x=str(x_path), **where.args()))

        steps = [base, mine, rows, requests] + ([embedded] if where.lite else [])
        for step in steps[rep % len(steps):] + steps[: rep % len(steps)]:
            step()
        log(f"restore rep {rep}: naive {naive[-1]['seconds']:.2f}s (rows {naive[-1]['rows_seconds']:.2f}s), "
            f"vecdr {ours[-1]['seconds']:.2f}s (rows {ours[-1]['rows_seconds']:.2f}s) {ours[-1]['phases']}; "
            f"pre-built rows {ceilings['prebuilt_rows'][-1]['rows_seconds']:.2f}s, pre-built requests "
            f"{ceilings['prebuilt_requests'][-1]['rows_seconds']:.2f}s"
            + (f", Milvus Lite's own ingest {floor[-1]['rows_seconds']:.2f}s" if floor else ""))
    n_rows, o_rows = [r["rows_seconds"] for r in naive], [r["rows_seconds"] for r in ours]
    n_all, o_all = [r["seconds"] for r in naive], [r["seconds"] for r in ours]
    f_rows = [r["rows_seconds"] for r in floor]
    own: dict[str, Any] = {} if not floor else {
        "floor_ratio": round(min(f_rows) / min(n_rows), 6),
        "floor_basis": f"best of {len(f_rows)}: {min(f_rows):.3f}s for Milvus Lite's own ingest alone (pre-built "
                       f"rows through its embedded API, Collection.insert {NAIVE_BATCH} at a time, then flush: no "
                       f"pymilvus, no gRPC) / {min(n_rows):.3f}s naive: no client can restore faster than this",
    }  # fmt: skip
    figure(figures, "milvus_restore_rows_time_ratio", min(o_rows) / min(n_rows),
           f"best of {len(o_rows)}: {min(o_rows):.3f}s vecdr.restore rows in / {min(n_rows):.3f}s naive "
           f"(.tolist(), MilvusClient.insert {NAIVE_BATCH} at a time, flush)",
           median_ratio=round(statistics.median(o_rows) / statistics.median(n_rows), 6), **own)  # fmt: skip
    figure(figures, "milvus_restore_total_time_ratio", min(o_all) / min(n_all),
           f"best of {len(o_all)}: {min(o_all):.3f}s whole vecdr.restore / {min(n_all):.3f}s whole naive restore "
           f"(index and load: vecdr {min(r['after_rows_seconds'] for r in ours):.1f}s, naive "
           f"{min(r['index_and_load_seconds'] for r in naive):.1f}s)",
           median_ratio=round(statistics.median(o_all) / statistics.median(n_all), 6),
           cpu_ratio=round(min(r["cpu_seconds"] for r in ours) / min(r["cpu_seconds"] for r in naive), 6),
           cpu_basis="least CPU seconds (every thread, Milvus Lite's included) of a whole vecdr.restore / "
                     "of a whole naive restore: the work done, whatever else ran on the machine")  # fmt: skip
    best_of = {k: min(r["rows_seconds"] for r in runs) for k, runs in ceilings.items()}
    which = min(best_of, key=best_of.__getitem__)
    figure(figures, "milvus_ingest_ceiling_ratio", min(o_rows) / best_of[which],
           f"best of {len(o_rows)}: {min(o_rows):.3f}s vecdr.restore rows in / {best_of[which]:.3f}s "
           f"{which.replace('_', ' ')} (the other ceiling: {max(best_of.values()):.3f}s)")  # fmt: skip
    return {"naive": {**stats(n_all), "rows_seconds": stats(n_rows), "runs": naive},
            "vecdr_restore": {**stats(o_all), "rows_seconds": stats(o_rows), "runs": ours},
            "ceilings": {k: {"rows_seconds": stats([r["rows_seconds"] for r in runs]), "runs": runs}
                         for k, runs in ceilings.items()},
            **({"milvus_lite_own_ingest": {"rows_seconds": stats(f_rows), "runs": floor}} if floor else {}),
            "restored_collection": kept}  # fmt: skip


def case_search(work: Path, where: Where, truth_rows: tuple[np.ndarray, np.ndarray], queries: np.ndarray, ef: int,
                restored: str, figures: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    import faiss

    np.save(work / "queries.npy", queries)
    outs = [str(work / "found-original.npy"), str(work / "found-restored.npy")]
    original_name, restored = where.name(COLLECTION), where.name(restored)
    described = run_worker("search", collections=[original_name, restored], queries=str(work / "queries.npy"),
                           ef=ef, out=outs, **where.args())  # fmt: skip
    original, restored_ids = np.load(outs[0]), np.load(outs[1])
    ids, x = truth_rows
    exact = faiss.IndexIDMap(faiss.IndexFlatL2(x.shape[1]))
    exact.add_with_ids(x, ids)
    _, truth = exact.search(queries, 10)
    pairs = list(zip(original.tolist(), restored_ids.tolist(), strict=True))
    same = sum(set(a) == set(b) for a, b in pairs)
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in pairs]))
    if described[original_name] != described[restored]:
        raise RuntimeError(f"the restored index differs: {described}")
    recall = {"original": round(recall_at_10(original, truth), 6),
              "restored": round(recall_at_10(restored_ids, truth), 6)}  # fmt: skip
    figure(figures, "milvus_top10_overlap", overlap,
           f"{len(pairs)} held-out queries, {same} with identical top-10 ids; "
           f"{described[original_name]['index_type']} {described[original_name]['params']} on both, ef={ef}; "
           f"recall@10 {recall['restored']:.4f} restored, {recall['original']:.4f} original",
           identical_queries=same, recall_at_10_original=recall["original"],
           recall_at_10_restored=recall["restored"])  # fmt: skip
    return {"queries": len(queries), "ef": ef, "indexes": described, "identical_queries": same,
            "mean_overlap": round(overlap, 6), "recall_at_10": recall, "ground_truth": "faiss.IndexFlatL2"}


def figure(figures: dict[str, Any], name: str, value: float, basis: str, **extra: Any) -> None:
    record_figure(figures, TARGETS, name, value, basis, **extra)


# -- driver -----------------------------------------------------------------------------


def _where(server: str | None, work: Path) -> Where:
    if server is None:
        folder = str(work / "bench.db")
        return Where(folder, f"milvus:{folder}")
    from vecdr.backends.milvus.uri import TOKEN_ENV, endpoint

    if "?" in server:
        raise SystemExit("--server takes milvus://host:port (and a database as /NAME), no query")
    ep = endpoint(server, None, None, None)
    if ep.lite_path is not None:
        raise SystemExit(f"--server needs a server URI (milvus://host:port), not {server}")
    if ep.token:  # the workers read it from the environment, never from their command line
        os.environ[TOKEN_ENV] = ep.token
    return Where(ep.address, ep.shown.split("?", 1)[0], ep.db, f"vecdr_bench_{uuid.uuid4().hex[:8]}_", lite=False)


def _drop_collections(where: Where) -> None:
    client = _client(where.args())
    for name in client.list_collections():
        if name.startswith(where.prefix):
            client.drop_collection(name)


def _server_version(where: Where) -> str:
    return str(_client(where.args()).get_server_version())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="collection rows (default 100000; --quick 3000)")
    p.add_argument("--dim", type=int, default=None, help="dimension (default 384; --quick 32)")
    p.add_argument("--queries", type=int, default=200, help="held-out queries for the top-10 comparison (200)")
    p.add_argument("--ef", type=int, default=512, help="HNSW ef of the top-10 searches (512: near-exact)")
    p.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (0)")
    p.add_argument("--repeats", type=int, default=None, help="samples of each side, alternating (2; --quick 1)")
    p.add_argument("--change-fraction", type=float, default=0.01, help="rows changed before the incremental")
    p.add_argument("--quick", action="store_true", help="3k x 32 smoke test")
    p.add_argument("--out", default=None,
                   help="results JSON (default benchmarks/results/milvus.json, with --server milvus-server.json; "
                        "--quick: quick-milvus.json, quick-milvus-server.json)")
    p.add_argument("--workdir", default=None, help="folder for the database and repositories (default: $TMPDIR)")
    p.add_argument("--server", default=None, metavar="URI",
                   help="measure on a Milvus server (milvus://host:19530, milvus+https://…; the token from "
                        "VECDR_MILVUS_TOKEN) instead of Milvus Lite: collections named vecdr_bench_<random>_*, "
                        "dropped at the end")  # fmt: skip
    p.add_argument("--keep", action="store_true", help="keep the work folder")
    args = p.parse_args(argv)
    args.rows = args.rows or (3_000 if args.quick else 100_000)
    args.dim = args.dim or (32 if args.quick else 384)
    args.repeats = args.repeats or (1 if args.quick else 2)
    if args.quick:
        args.queries = min(args.queries, 50)
    default = "milvus-server.json" if args.server else "milvus.json"
    args.out = Path(args.out or HERE / "results" / (f"quick-{default}" if args.quick else default))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import faiss  # noqa: F401  (ground truth; fail early if missing)
    import milvus_lite
    import pymilvus

    import vecdr  # noqa: F401
    import vecdr.backends.milvus  # noqa: F401

    record = RunRecord()
    work = Path(tempfile.mkdtemp(prefix="vecdr-milvusbench-", dir=args.workdir))
    where = _where(args.server, work)
    log(f"work folder {work}, {args.rows} x {args.dim}, on {where.base}")
    figures: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    try:
        x, queries = make_data(args.rows, args.queries, args.dim, args.seed, "clusters")
        np.save(work / "x.npy", x)
        changes = make_changes(args.rows, args.dim, args.change_fraction, args.seed)
        np.savez(work / "changes.npz", **changes)
        cases["setup"] = run_worker("setup", collection=where.name(COLLECTION), x=str(work / "x.npy"), **where.args())
        log(f"original collection: HNSW {HNSW} built and loaded in {cases['setup']['index_and_load_seconds']:.1f}s")
        cases["snapshot"] = case_snapshot(work, where, args.repeats, figures, batch=1000)
        (work / "repo-0" / "full.json").write_text(json.dumps(cases["snapshot"]["vecdr_snapshot"]["runs"][0]))
        cases["incremental"] = case_incremental(work, where, work / "changes.npz", figures)
        cases["restore"] = case_restore(work, where, work / "x.npy", args.repeats, figures)
        # The original as it is now: 1% updated, inserted and deleted.
        keep = ~np.isin(np.arange(args.rows), changes["delete_ids"])
        x[changes["update_ids"]] = changes["update_vectors"]
        now = (np.concatenate([np.arange(args.rows)[keep], changes["insert_ids"]]),
               np.concatenate([x[keep], changes["insert_vectors"]]))  # fmt: skip
        cases["search"] = case_search(work, where, now, queries, args.ef, cases["restore"]["restored_collection"],
                                      figures)  # fmt: skip
    finally:
        if not where.lite:
            _drop_collections(where)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    config = {
        "rows": args.rows, "dim": args.dim, "queries": args.queries, "ef": args.ef, "seed": args.seed,
        "quick": args.quick, "repeats": args.repeats, "change_fraction": args.change_fraction,
        "data": make_data.__doc__.split("\n\n")[1].replace("\n", " ").strip(),
        "collection": f"{COLLECTION} (id INT64 primary key, vector FLOAT_VECTOR({args.dim})), "
                      f"HNSW {HNSW} {METRIC}",
        "milvus": (f"milvus-lite {milvus_lite.__version__} (pure Python)" if where.lite else
                   f"the server {where.base} ({_server_version(where)})") + f" through pymilvus {pymilvus.__version__}",
        "timing": "wall clock around the measured call inside a fresh child process (process_seconds: the "
                  "whole child). On Milvus Lite, restores and the naive side use milvus:PATH.db (Milvus Lite "
                  "in the child); snapshots and the query_iterator baseline a milvus-lite server process. "
                  "Samples alternate; ratios use the best sample of each side, medians reported beside.",
        "peak_rss": "VmHWM from /proc/self/status at the end of the child (not ru_maxrss, which Linux carries "
                    "from the parent across fork and exec)",
        "workdir": str(work.parent),
    }  # fmt: skip
    doc = record.document("vecdr milvus", argv, args.out, config, figures, cases)
    write_results(doc, args.out)
    print_figures(doc["figures"])
    print(f"\n{args.rows} x {args.dim}, {doc['wall_seconds']:.0f}s wall; all pass: {doc['all_pass']}; "
          f"results: {doc['out']}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        result = worker(sys.argv[2], json.loads(sys.argv[3]))
        print(json.dumps(result, default=str))
        sys.stdout.flush()
        os._exit(0)  # as the CLI does: no interpreter teardown (Arrow's and Milvus Lite's threads)
    sys.exit(main())
