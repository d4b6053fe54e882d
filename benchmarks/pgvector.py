#!/usr/bin/env python
"""vecdr pgvector benchmark: snapshot and restore of a PostgreSQL table against pg_dump / pg_restore.

One real PostgreSQL 16 + pgvector (``vecdr.testing.postgres``, i.e. pgserver), one
table ``items (id bigint primary key, embedding vector(d))`` with an HNSW index
(m=16, ef_construction=64, ``vector_l2_ops``), measured in the same run:

- ``vecdr.snapshot`` time and bytes against ``pg_dump -Fc -t items`` time and file size;
- ``vecdr.restore`` (rows, primary key and HNSW index) into a new empty database against
  ``pg_restore`` of that dump into an empty database that has the vector extension;
- recall@10 of the restored table's index against the original's, through SQL;
- peak RSS of the vecdr snapshot and restore processes.

    .venv/bin/python benchmarks/pgvector.py            # 100k x 384, about 10-15 min on 2 cores
    .venv/bin/python benchmarks/pgvector.py --quick    # 10k x 64 smoke test, about 1 min

See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402  (the core benchmark's helpers)
    PhaseTimer,
    RunRecord,
    dir_bytes,
    log,
    print_figures,
    recall_at_10,
    record_figure,
    stats,
    write_results,
)

TABLE = "items"
SOURCE_DB = "bench"
HNSW = {"m": 16, "ef_construction": 64}
OPCLASS = "vector_l2_ops"
RSS_LIMIT_MIB = 512

#: figure name -> (comparison, threshold, what it is)
TARGETS: dict[str, tuple[str, float, str]] = {
    "pg_snapshot_time_ratio": ("<=", 0.1, "vecdr.snapshot seconds / pg_dump -Fc -t items seconds"),
    "pg_snapshot_size_ratio": ("<=", 0.9, "snapshot bytes_written / pg_dump -Fc file bytes"),
    "pg_restore_time_ratio": (
        "<=",
        0.4,
        "vecdr.restore seconds (rows, primary key, HNSW index) / pg_restore of the dump seconds",
    ),
    "pg_recall_at_10_difference": (
        "<=",
        0.01,
        "|recall@10 of the restored table - recall@10 of the original| on held-out queries, via SQL",
    ),
    "pg_snapshot_peak_rss_mib": ("<=", RSS_LIMIT_MIB, "peak RSS of a process running vecdr.snapshot, MiB"),
    "pg_restore_peak_rss_mib": ("<=", RSS_LIMIT_MIB, "peak RSS of a process running vecdr.restore, MiB"),
}

SERVER_SETTINGS = (
    "server_version",
    "shared_buffers",
    "maintenance_work_mem",
    "max_parallel_maintenance_workers",
    "max_worker_processes",
    "max_parallel_workers",
    "work_mem",
    "wal_level",
    "synchronous_commit",
    "fsync",
    "max_wal_size",
)


# -- data ---------------------------------------------------------------------------


def make_data(n: int, nq: int, d: int, seed: int, kind: str) -> tuple[np.ndarray, np.ndarray]:
    """``n`` table rows and ``nq`` held-out queries, float32, L2-normalized, from one rng.

    ``clusters``: a mixture of 1,000 Gaussian clusters (centers N(0, 1), spread 0.5),
    closer to real embeddings than isotropic noise; ``gaussian``: standard normal.
    The queries are drawn after the rows, from the same distribution, and are not in
    the table.
    """
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, d), dtype=np.float32) if kind == "clusters" else None
    out = []
    for count in (n, nq):
        x = np.empty((count, d), np.float32)
        for at in range(0, count, 1 << 16):
            m = min(1 << 16, count - at)
            if centers is None:
                x[at : at + m] = rng.standard_normal((m, d), dtype=np.float32)
            else:
                x[at : at + m] = centers[rng.integers(1000, size=m)]
                x[at : at + m] += 0.5 * rng.standard_normal((m, d), dtype=np.float32)
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        out.append(x)
    return out[0], out[1]


def copy_binary(x: np.ndarray) -> bytes:
    """``(id bigint, embedding vector(d))`` rows, ids 0..n-1, as one binary COPY stream."""
    n, d = x.shape
    row = np.dtype(
        [("count", ">i2"), ("len0", ">i4"), ("id", ">i8"), ("len1", ">i4"), ("dim", ">i2"), ("pad", ">i2"),
         ("v", ">f4", (d,))]
    )  # fmt: skip
    rows = np.zeros(n, row)
    rows["count"], rows["len0"], rows["len1"], rows["dim"] = 2, 8, 4 + 4 * d, d
    rows["id"] = np.arange(n)
    rows["v"] = x
    return b"PGCOPY\n\xff\r\n\x00" + bytes(8) + rows.tobytes() + b"\xff\xff"


def load_source(pg: Any, x: np.ndarray) -> dict[str, Any]:
    """Create and fill the source table and its HNSW index (not measured)."""
    d = x.shape[1]
    pg.create_database(SOURCE_DB)
    t0 = time.perf_counter()
    with pg.connect(SOURCE_DB) as conn:
        conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector({d}) NOT NULL)")
        data = copy_binary(x)
        with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (id, embedding) FROM STDIN (FORMAT BINARY)") as copy:
            for at in range(0, len(data), 8 << 20):
                copy.write(data[at : at + (8 << 20)])
        del data
        loaded = time.perf_counter() - t0
        conn.execute("SET maintenance_work_mem = '1GB'")
        conn.execute("SET max_parallel_maintenance_workers = 1")
        params = ", ".join(f"{k} = {v}" for k, v in HNSW.items())
        ddl = f"CREATE INDEX {TABLE}_embedding_idx ON {TABLE} USING hnsw (embedding {OPCLASS}) WITH ({params})"
        t1 = time.perf_counter()
        conn.execute(ddl)
        indexed = time.perf_counter() - t1
        conn.execute(f"VACUUM (ANALYZE) {TABLE}")  # hint bits set: no sample pays for them
        conn.execute("CHECKPOINT")
        sizes = conn.execute(
            "SELECT pg_table_size(%s), pg_relation_size(%s), pg_relation_size(%s)",
            (TABLE, f"{TABLE}_embedding_idx", f"{TABLE}_pkey"),
        ).fetchone()
    return {
        "load_seconds": round(loaded, 3),
        "index_build_seconds": round(indexed, 3),
        "index_ddl": ddl,
        "index_build_settings": {"maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": 1},
        "table_bytes": sizes[0],
        "hnsw_index_bytes": sizes[1],
        "pkey_index_bytes": sizes[2],
    }


def fingerprint(pg: Any, db: str) -> dict[str, Any]:
    """Row count, id sum, a hash of every vector's text, and the table's indexes."""
    with pg.connect(db) as conn:
        count, ids, vec = conn.execute(
            f"SELECT count(*), sum(id), sum(hashtext(embedding::text)::bigint) FROM {TABLE}"
        ).fetchone()
        indexes = [
            r[0]
            for r in conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE tablename = %s ORDER BY indexname", (TABLE,)
            ).fetchall()
        ]
    return {"rows": count, "id_sum": int(ids), "vector_text_hash_sum": int(vec), "indexes": indexes}


def same_table(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def shape(indexdef: str) -> tuple[str, list[str]]:
        """Method, columns, opclasses and storage parameters (in any order); names may differ."""
        using = indexdef.split(" USING ", 1)[1]
        head, _, params = using.partition(" WITH (")
        return head, sorted(params.rstrip(")").split(", ")) if params else []

    keys = ("rows", "id_sum", "vector_text_hash_sum")
    same_rows = all(a[k] == b[k] for k in keys)
    return same_rows and sorted(map(shape, a["indexes"])) == sorted(map(shape, b["indexes"]))


# -- measurement helpers ------------------------------------------------------------


def settle(pg: Any) -> None:
    """Every timed sample starts from the same state: no dirty pages, no pending WAL."""
    with pg.connect() as conn:
        conn.execute("CHECKPOINT")
    os.sync()


def run_process(
    cmd: list[str], lines: list[tuple[float, str]] | None = None, env: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run ``cmd``; its wall seconds, exit status and CPU seconds (``os.wait4``).

    With ``lines``, stderr is read as it comes and each line kept with its time since
    the start (pg_restore -v says which object it is working on).
    """
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})}
    )
    out: list[str] = []
    err: list[str] = []

    def drain(stream: Any, sink: list[str], stamp: bool) -> None:
        for line in stream:
            sink.append(line)
            if stamp and lines is not None:
                lines.append((round(time.perf_counter() - t0, 3), line.rstrip()))

    readers = [
        threading.Thread(target=drain, args=(proc.stdout, out, False)),
        threading.Thread(target=drain, args=(proc.stderr, err, True)),
    ]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    for r in readers:
        r.join()
    return {
        "seconds": seconds,
        "rc": proc.returncode,
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 3),
        "loadavg_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # before, after: contention
        "stdout": "".join(out),
        "stderr": "".join(err),
    }


def worker_command(action: str, *args: str) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), "--worker", action, *args]


def worker(argv: list[str]) -> int:
    """Child process: run one vecdr call, print what it returned and how long it took, as JSON.

    ``snapshot REPO URI [DIFF_PASS_ROWS]``, ``restore REPO URI`` or ``imports``."""
    action, repo_path, uri, *options = argv
    snapshot_options = {"diff_pass_rows": int(options[0])} if options else {}
    import vecdr

    if action == "imports":  # what the interpreter and the modules a snapshot uses cost alone
        import psycopg  # noqa: F401
        import pyarrow.parquet  # noqa: F401

        import vecdr.backends.pgvector.source  # noqa: F401
        import vecdr.backends.pgvector.target  # noqa: F401
        import vecdr.engines.snapshot  # noqa: F401

        print(json.dumps(peak_rss_mib()))
        return 0

    timer = PhaseTimer()
    t0 = time.perf_counter()
    if action == "snapshot":
        res = vecdr.snapshot(vecdr.open_repository(repo_path), uri, reporter=timer, **snapshot_options)
        seconds = time.perf_counter() - t0
        phases = {**timer.phases, "after_scan (encode, write, manifest, commit)": seconds - sum(timer.phases.values())}
        out = {"rows": res.rows, "bytes_written": res.bytes_written, "mode": res.mode, "phases": phases}
    else:
        res = vecdr.restore(vecdr.open_repository(repo_path), uri, "latest", force=True, reporter=timer)
        seconds = time.perf_counter() - t0
        out = {"rows": res.rows, "phases": res.phases, "reported_phases": timer.phases}
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                **out,
                "seconds": seconds,
                "engine_seconds": res.seconds,
                "cpu_seconds_process": usage.ru_utime + usage.ru_stime,
                "peak_rss_mib": peak_rss_mib(),
                "warnings": timer.warnings,
            }
        )
    )
    return 0


def peak_rss_mib() -> float:
    """This process's peak RSS (``VmHWM``), in MiB.

    Not ``ru_maxrss``: Linux carries the parent's high-water mark into a child
    across fork and exec, so a child of a large parent reports the parent's size.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmHWM in /proc/self/status")


def run_worker(
    action: str, repo: Path, uri: str, env: dict[str, str] | None = None, *options: str
) -> dict[str, Any]:
    proc = run_process(worker_command(action, str(repo), uri, *options), env=env)
    if proc["rc"] != 0:
        raise RuntimeError(f"vecdr {action} failed ({proc['rc']}):\n{proc['stderr'][-3000:]}")
    inner = json.loads(proc["stdout"].strip().splitlines()[-1])
    return {
        "seconds": round(inner.pop("seconds"), 6),  # around the public call, in the child
        "process_seconds": round(proc["seconds"], 6),  # the whole child: interpreter, imports, call
        "process_cpu_seconds": proc["cpu_seconds"],
        "loadavg_1min": proc["loadavg_1min"],
        **inner,
    }


def pg_args(pg: Any, db: str) -> list[str]:
    return ["-h", str(pg.folder), "-U", "postgres", "-d", db]


def restore_phases(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """pg_restore -v's steps, each lasting until the next line: data, constraints, indexes."""
    phases: dict[str, float] = {}
    for i, (at, text) in enumerate(lines):
        end = lines[i + 1][0] if i + 1 < len(lines) else total
        message = text.removeprefix("pg_restore: ")
        if message.startswith("processing data for table"):
            key = "data (COPY text)"
        elif message.startswith("creating CONSTRAINT"):
            key = "primary key"
        elif message.startswith("creating INDEX"):
            key = "index: " + message.split('"')[1] if '"' in message else "index"
        else:
            key = "other"
        phases[key] = round(phases.get(key, 0.0) + end - at, 3)
    return phases


def figure(figures: dict[str, Any], name: str, value: float, basis: str, **extra: Any) -> None:
    record_figure(figures, TARGETS, name, value, basis, **extra)


# -- cases ----------------------------------------------------------------------------


def case_snapshot(pg: Any, work: Path, repeats: int, figures: dict[str, Any]) -> dict[str, Any]:
    """vecdr.snapshot vs pg_dump -Fc -t items, alternating; keeps dump-0 and repo-0."""
    dumps: list[dict[str, Any]] = []
    snaps: list[dict[str, Any]] = []
    uri = pg.uri(TABLE, SOURCE_DB)
    for rep in range(repeats):

        def dump(rep: int = rep) -> None:
            path = work / f"dump-{rep}.dump"
            settle(pg)
            res = run_process([str(pg.bin / "pg_dump"), "-Fc", "-t", TABLE, "-f", str(path), *pg_args(pg, SOURCE_DB)])
            if res["rc"] != 0:
                raise RuntimeError(f"pg_dump failed: {res['stderr']}")
            dumps.append(
                {
                    "seconds": round(res["seconds"], 6),
                    "cpu_seconds_pg_dump_process": res["cpu_seconds"],
                    "loadavg_1min": res["loadavg_1min"],
                    "file_bytes": path.stat().st_size,
                }
            )

        def snap(rep: int = rep) -> None:
            import vecdr

            root = work / f"repo-{rep}"
            vecdr.init(root)
            settle(pg)
            res = run_worker("snapshot", root, uri)
            if res["rows"] != pg_rows(pg) or res["mode"] != "full":
                raise RuntimeError(f"unexpected snapshot {res}")
            res["repository_bytes_on_disk"] = dir_bytes(root)
            snaps.append(res)

        for step in (dump, snap) if rep % 2 == 0 else (snap, dump):
            step()
        log(
            f"snapshot rep {rep}: pg_dump {dumps[-1]['seconds']:.2f}s {dumps[-1]['file_bytes']} B, "
            f"vecdr snapshot {snaps[-1]['seconds']:.2f}s ({snaps[-1]['process_seconds']:.2f}s process) "
            f"{snaps[-1]['bytes_written']} B, peak RSS {snaps[-1]['peak_rss_mib']} MiB"
        )
    for rep in range(1, repeats):  # keep one dump and one repository for the restores
        (work / f"dump-{rep}.dump").unlink()
        shutil.rmtree(work / f"repo-{rep}")

    dump_t = [s["seconds"] for s in dumps]
    snap_t = [s["seconds"] for s in snaps]
    proc_t = [s["process_seconds"] for s in snaps]
    dump_bytes, snap_bytes = dumps[0]["file_bytes"], snaps[0]["bytes_written"]
    figure(
        figures,
        "pg_snapshot_time_ratio",
        min(snap_t) / min(dump_t),
        f"best of {len(snap_t)}: {min(snap_t):.3f}s vecdr.snapshot / {min(dump_t):.3f}s pg_dump -Fc -t {TABLE}",
        median_ratio=round(statistics.median(snap_t) / statistics.median(dump_t), 6),
        process_ratio=round(min(proc_t) / min(dump_t), 6),
        process_basis=f"best {min(proc_t):.3f}s for the whole vecdr process (interpreter start, imports, call)",
    )
    figure(
        figures,
        "pg_snapshot_size_ratio",
        snap_bytes / dump_bytes,
        f"{snap_bytes} bytes_written / {dump_bytes} bytes pg_dump -Fc file",
        repository_bytes_on_disk=snaps[0]["repository_bytes_on_disk"],
    )
    rss = [s["peak_rss_mib"] for s in snaps]
    diagnosis = rss_diagnosis(pg, work, uri, repeats)
    figure(
        figures,
        "pg_snapshot_peak_rss_mib",
        max(rss),
        f"max of {len(rss)} samples' VmHWM: {rss} MiB, each a fresh Python process running vecdr.snapshot",
        imports_only_mib=diagnosis["imports_only_peak_rss_mib"],
        with_malloc_trim_threshold_0_mib=diagnosis["MALLOC_TRIM_THRESHOLD_=0"]["peak_rss_mib"],
    )
    return {
        "pg_dump": {**stats(dump_t), "runs": dumps, "command": f"pg_dump -Fc -t {TABLE} -f FILE"},
        "vecdr_snapshot": {**stats(snap_t), "process_seconds": stats(proc_t), "runs": snaps},
        "rss_diagnosis": diagnosis,
    }


def rss_diagnosis(pg: Any, work: Path, uri: str, repeats: int) -> dict[str, Any]:
    """Untimed: how much of the snapshot's peak RSS is the interpreter and imports, and how
    much glibc keeps of what was freed (the same snapshot with ``MALLOC_TRIM_THRESHOLD_=0``,
    which returns freed heap to the kernel at once)."""
    import vecdr

    base = run_process(worker_command("imports", "-", "-"))
    out: dict[str, Any] = {"imports_only_peak_rss_mib": json.loads(base["stdout"].strip().splitlines()[-1])}
    runs = []
    for rep in range(repeats):
        root = work / f"repo-rss-{rep}"
        vecdr.init(root)
        settle(pg)
        runs.append(run_worker("snapshot", root, uri, env={"MALLOC_TRIM_THRESHOLD_": "0"}))
        shutil.rmtree(root)
    rss = [r["peak_rss_mib"] for r in runs]
    out["MALLOC_TRIM_THRESHOLD_=0"] = {"peak_rss_mib": max(rss), "samples_mib": rss,
                                       "seconds": [r["seconds"] for r in runs]}  # fmt: skip
    log(f"snapshot peak RSS: imports only {out['imports_only_peak_rss_mib']} MiB, "
        f"with MALLOC_TRIM_THRESHOLD_=0 {rss} MiB")  # fmt: skip
    return out


def pg_rows(pg: Any, db: str = SOURCE_DB) -> int:
    with pg.connect(db) as conn:
        return int(conn.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])


def case_restore(pg: Any, work: Path, repeats: int, figures: dict[str, Any], source: dict[str, Any]) -> dict[str, Any]:
    """vecdr.restore vs pg_restore, each into a new database, alternating.

    Keeps the last sample's databases (``r_pg``, ``r_vecdr``) for the recall case.
    """
    pg_runs: list[dict[str, Any]] = []
    vecdr_runs: list[dict[str, Any]] = []
    dump = work / "dump-0.dump"
    repo = work / "repo-0"

    def drop(db: str) -> None:
        with pg.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')

    for rep in range(repeats):

        def baseline(rep: int = rep) -> None:
            db = "r_pg"
            drop(db)
            pg.create_database(db, vector=True)  # as a user would: the dump does not create it with -t
            settle(pg)
            lines: list[tuple[float, str]] = []
            res = run_process([str(pg.bin / "pg_restore"), "-v", *pg_args(pg, db), str(dump)], lines)
            if res["rc"] != 0:
                raise RuntimeError(f"pg_restore failed: {res['stderr'][-3000:]}")
            check = fingerprint(pg, db)
            if not same_table(check, source):
                raise RuntimeError(f"pg_restore gave a different table: {check} vs {source}")
            pg_runs.append(
                {
                    "seconds": round(res["seconds"], 6),
                    "cpu_seconds_pg_restore_process": res["cpu_seconds"],
                    "loadavg_1min": res["loadavg_1min"],
                    "phases_from_verbose_output": restore_phases(lines, res["seconds"]),
                    "verbose_output": lines,
                }
            )

        def ours(rep: int = rep) -> None:
            db = "r_vecdr"
            drop(db)
            pg.create_database(db, vector=False)  # empty: vecdr creates the extension itself, timed
            settle(pg)
            res = run_worker("restore", repo, pg.uri(TABLE, db))
            check = fingerprint(pg, db)
            if not same_table(check, source):
                raise RuntimeError(f"vecdr restore gave a different table: {check} vs {source}")
            vecdr_runs.append(res)

        for step in (baseline, ours) if rep % 2 == 0 else (ours, baseline):
            step()
        log(
            f"restore rep {rep}: pg_restore {pg_runs[-1]['seconds']:.2f}s "
            f"{pg_runs[-1]['phases_from_verbose_output']}, vecdr restore {vecdr_runs[-1]['seconds']:.2f}s "
            f"{vecdr_runs[-1]['phases']}, peak RSS {vecdr_runs[-1]['peak_rss_mib']} MiB"
        )

    pg_t = [r["seconds"] for r in pg_runs]
    ours_t = [r["seconds"] for r in vecdr_runs]
    proc_t = [r["process_seconds"] for r in vecdr_runs]
    figure(
        figures,
        "pg_restore_time_ratio",
        min(ours_t) / min(pg_t),
        f"best of {len(ours_t)}: {min(ours_t):.3f}s vecdr.restore / {min(pg_t):.3f}s pg_restore, "
        "each into a new database, primary key and HNSW index included",
        median_ratio=round(statistics.median(ours_t) / statistics.median(pg_t), 6),
        process_ratio=round(min(proc_t) / min(pg_t), 6),
    )
    rss = [r["peak_rss_mib"] for r in vecdr_runs]
    figure(
        figures,
        "pg_restore_peak_rss_mib",
        max(rss),
        f"max of {len(rss)} samples' VmHWM: {rss} MiB, each a fresh Python process running vecdr.restore "
        "(the client; the server's memory is PostgreSQL's)",
    )
    return {
        "pg_restore": {
            **stats(pg_t),
            "runs": pg_runs,
            "command": "pg_restore -v -d DB FILE (DB new, CREATE EXTENSION vector first, untimed)",
        },
        "vecdr_restore": {
            **stats(ours_t),
            "process_seconds": stats(proc_t),
            "runs": vecdr_runs,
            "target": "a new database without the vector extension (vecdr creates it, timed)",
        },
    }


def search_sql(pg: Any, db: str, queries: np.ndarray, ef_search: int) -> tuple[np.ndarray, float, str]:
    found = np.full((len(queries), 10), -1, np.int64)
    sql = f"SELECT id FROM {TABLE} ORDER BY embedding <-> %s::vector LIMIT 10"
    with pg.connect(db) as conn:
        conn.execute(f"SET hnsw.ef_search = {int(ef_search)}")
        literal = "[" + ",".join(repr(float(v)) for v in queries[0]) + "]"
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN " + sql, (literal,)).fetchall())
        if "Index Scan" not in plan:
            raise RuntimeError(f"the query does not use the HNSW index in {db}:\n{plan}")
        t0 = time.perf_counter()
        with conn.cursor() as cur:
            for i, q in enumerate(queries):
                literal = "[" + ",".join(repr(float(v)) for v in q) + "]"
                ids = [r[0] for r in cur.execute(sql, (literal,)).fetchall()]
                found[i, : len(ids)] = ids
        seconds = time.perf_counter() - t0
    return found, seconds, plan


def case_recall(pg: Any, x: np.ndarray, queries: np.ndarray, ef_search: int, figures: dict[str, Any]) -> dict[str, Any]:
    import faiss

    exact = faiss.IndexFlatL2(x.shape[1])
    exact.add(x)
    _, truth = exact.search(queries, 10)
    out: dict[str, Any] = {
        "queries": len(queries),
        "k": 10,
        "ef_search": ef_search,
        "ground_truth": "faiss.IndexFlatL2",
    }
    recall: dict[str, float] = {}
    for name, db in (("original", SOURCE_DB), ("vecdr_restored", "r_vecdr"), ("pg_restored", "r_pg")):
        found, seconds, plan = search_sql(pg, db, queries, ef_search)
        recall[name] = recall_at_10(found, truth)
        out[name] = {"database": db, "recall_at_10": round(recall[name], 6), "query_seconds": round(seconds, 3)}
        log(f"recall@10 {name} ({db}): {recall[name]:.4f}, {len(queries)} queries in {seconds:.1f}s")
    out["plan"] = plan
    diff = abs(recall["vecdr_restored"] - recall["original"])
    figure(
        figures,
        "pg_recall_at_10_difference",
        diff,
        f"|{recall['vecdr_restored']:.4f} vecdr-restored - {recall['original']:.4f} original|, "
        f"{len(queries)} held-out queries, SQL ORDER BY embedding <-> q LIMIT 10, hnsw.ef_search = {ef_search}",
        restored=round(recall["vecdr_restored"], 6),
        original=round(recall["original"], 6),
        pg_restored=round(recall["pg_restored"], 6),
    )
    return out


# -- driver ---------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=None, help="table rows (default 100000; --quick 10000)")
    p.add_argument("--dim", type=int, default=None, help="dimension (default 384; --quick 64)")
    p.add_argument("--queries", type=int, default=1000, help="held-out queries for recall@10 (1000)")
    p.add_argument("--ef-search", type=int, default=40, help="hnsw.ef_search for the recall queries (40)")
    p.add_argument("--data", choices=("clusters", "gaussian"), default="clusters", help="vector distribution")
    p.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (0)")
    p.add_argument("--repeats", type=int, default=2, help="samples of each side, alternating (2)")
    p.add_argument("--quick", action="store_true", help="10k x 64 smoke test")
    p.add_argument(
        "--out",
        default=None,
        help="results JSON (default benchmarks/results/pgvector.json; --quick: quick-pgvector.json)",
    )
    p.add_argument("--workdir", default=None, help="folder for the dump and repositories (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work folder and the server's data folder")
    args = p.parse_args(argv)
    args.rows = args.rows or (10_000 if args.quick else 100_000)
    args.dim = args.dim or (64 if args.quick else 384)
    args.out = Path(args.out or HERE / "results" / ("quick-pgvector.json" if args.quick else "pgvector.json"))
    return args


def print_table(doc: dict[str, Any]) -> None:
    print_figures(doc["figures"])
    cfg = doc["config"]
    print(
        f"\n{cfg['rows']} x {cfg['dim']} ({cfg['data']}), {doc['wall_seconds']:.0f}s wall; "
        f"all pass: {doc['all_pass']}; results: {doc['out']}"
    )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import faiss  # noqa: F401  (ground truth; fail early if missing)

    import vecdr  # noqa: F401
    from vecdr.testing.postgres import start

    record = RunRecord()
    work = Path(tempfile.mkdtemp(prefix="vecdr-pgbench-", dir=args.workdir))
    pgdir = tempfile.mkdtemp(prefix="vb-pg-", dir="/tmp")  # short: the server's socket lives in it
    log(f"work folder {work}, server folder {pgdir}")
    figures: dict[str, Any] = {}
    cases: dict[str, Any] = {}
    pg = start(pgdir)
    try:
        with pg.connect() as conn:
            server = {s: conn.execute(f"SHOW {s}").fetchone()[0] for s in SERVER_SETTINGS}
            server["pgvector"] = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()[0]
        server["pg_dump"] = subprocess.run(
            [str(pg.bin / "pg_dump"), "--version"], capture_output=True, text=True
        ).stdout.strip()
        server["same_device_as_workdir"] = os.stat(pgdir).st_dev == os.stat(work).st_dev
        t0 = time.perf_counter()
        x, queries = make_data(args.rows, args.queries, args.dim, args.seed, args.data)
        log(f"generated {args.rows} + {args.queries} x {args.dim} float32 in {time.perf_counter() - t0:.1f}s")
        cases["source"] = load_source(pg, x)
        source = fingerprint(pg, SOURCE_DB)
        cases["source"]["fingerprint"] = source
        log(f"source table: {cases['source']}")
        cases["snapshot"] = case_snapshot(pg, work, args.repeats, figures)
        cases["restore"] = case_restore(pg, work, args.repeats, figures, source)
        cases["recall"] = case_recall(pg, x, queries, args.ef_search, figures)
    finally:
        pg.stop(remove=not args.keep)
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    config = {
        "rows": args.rows,
        "dim": args.dim,
        "queries": args.queries,
        "ef_search": args.ef_search,
        "seed": args.seed,
        "data": args.data,
        "data_detail": make_data.__doc__.split("\n\n")[1].replace("\n", " ").strip(),
        "quick": args.quick,
        "repeats": args.repeats,
        "table": f"{TABLE} (id bigint primary key, embedding vector({args.dim}) not null), ids 0..rows-1",
        "index": f"hnsw (embedding {OPCLASS}) WITH (m = {HNSW['m']}, ef_construction = {HNSW['ef_construction']})",
        "timing": "pg_dump / pg_restore: wall clock of the process; vecdr: wall clock around the public call "
        "(vecdr.snapshot / vecdr.restore) in a fresh child process, whose whole wall time is reported "
        "beside as process_seconds. Before every sample: CHECKPOINT and os.sync(). Samples alternate "
        "(A B, B A, ...); ratios use the best sample of each side, medians reported beside.",
        "peak_rss": "VmHWM from /proc/self/status at the end of the child process running the vecdr call "
        "(the vecdr client; the server's memory is PostgreSQL's). Not ru_maxrss, which on Linux carries the "
        "parent's high-water mark into the child.",
        "server": server,
        "workdir": str(work.parent),
    }
    doc = record.document("vecdr pgvector", argv, args.out, config, figures, cases)
    write_results(doc, args.out)
    print_table(doc)
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sys.exit(worker(sys.argv[2:]))
    sys.exit(main())
