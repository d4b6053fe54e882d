#!/usr/bin/env python
"""vecdr rebuild-time sweep: restore time across N, dimension, index type, backend and repository.

For every (N, dimension, index type, backend) the source is built once (and its
build timed: the baseline), snapshotted once into a local repository and once into
an S3 repository (moto's server), and restored from each, the restores timed with
their phases. The baselines are measured in the same run, on the same vectors:

- FAISS: the bare build (``index_factory``, ``train``, ``add`` from numpy), and
  ``faiss.write_index`` (+ fsync) / ``faiss.read_index`` of the built index;
- pgvector: the table loaded by binary COPY with its index built after, and
  ``pg_dump -Fc`` / ``pg_restore`` of it (up to ``--pg-dump-max-rows``);
- Milvus (Milvus Lite, served): the naive restore, rows converted with ``.tolist()``
  and inserted 1,000 at a time, then flush, the same index and load.

    .venv/bin/python -m benchmarks rebuild                      # 10k and 100k x 128, every index and backend
    .venv/bin/python -m benchmarks rebuild --rows 10000,100000,1000000
    .venv/bin/python -m benchmarks rebuild --quick --out /tmp/rebuild   # smoke test, well under a minute
    .venv/bin/python -m benchmarks rebuild --replot             # redraw plots and rebuild.md from rebuild.json

Writes ``rebuild.json``, the PNG plots and ``rebuild.md`` into ``--out``
(default benchmarks/results/). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from rebuild_cases import (  # noqa: E402
    BACKEND_INDEXES,
    BACKENDS,
    INDEX_TYPES,
    OPCLASS,
    PG_BUILD_SETTINGS,
    STORES,
    TABLE,
    Case,
    FaissCase,
    MilvusCase,
    PgvectorCase,
    Stores,
    measured,
    milvus_supports,
)
from run import RunRecord, log, make_vectors, stats, write_results  # noqa: E402  (the core benchmark's helpers)

# -- the sweep --------------------------------------------------------------------------


def run_case(case: Case, stores: Stores, store_names: tuple[str, ...], repeats: int) -> dict[str, Any]:
    """Baseline, snapshots, restores; repeats alternate the order (A B, B A) so drift favours neither."""
    baselines: dict[str, list[dict[str, Any]]] = {}
    restores: dict[str, list[dict[str, Any]]] = {s: [] for s in store_names}
    snapshots: dict[str, Any] = {}
    urls: dict[str, tuple[str, dict[str, Any] | None]] = {}

    def baseline(rep: int) -> None:
        for name, sample in case.baseline(rep).items():
            baselines.setdefault(name, []).append(sample)

    def restore(store: str) -> None:
        url, options = urls[store]
        sample = case.restore(url, options)
        if sample["rows"] != case.n or sample["target_rows"] != case.n:
            raise RuntimeError(f"{case.name} from {store}: restored {sample['rows']} rows "
                               f"({sample['target_rows']} in the target), expected {case.n}")
        restores[store].append(sample)
        log(f"{case.name} restore from {store}: {sample['seconds']:.3f}s {sample['breakdown']}")

    baseline(0)
    log(f"{case.name} baseline: " + ", ".join(f"{k} {v[0]['seconds']:.3f}s" for k, v in baselines.items()))
    for store in store_names:
        import vecdr

        url, options = stores.location(store, case.name)
        urls[store] = (url, options)
        repo = vecdr.init(url, options)
        sample, res = measured(lambda repo=repo: case.snapshot(repo))
        sample.update(rows=res.rows, bytes_written=res.bytes_written, mode=res.mode)
        snapshots[store] = sample
        log(f"{case.name} snapshot to {store}: {sample['seconds']:.3f}s, {res.bytes_written:,} bytes")
    for rep in range(repeats):  # rep 0's baseline came first: it built the source
        if rep % 2 == 0:
            if rep:
                baseline(rep)
            for store in store_names:
                restore(store)
        else:
            for store in reversed(store_names):
                restore(store)
            baseline(rep)
    out: dict[str, Any] = {
        "backend": case.backend, "index": case.index, "spec": case.spec(), "rows": case.n, "dim": case.d,
        "repeats": repeats, "snapshots": snapshots,
        "restores": {s: {**stats([r["seconds"] for r in runs]), "runs": runs} for s, runs in restores.items()},
        "baselines": {k: {**stats([r["seconds"] for r in runs]), "runs": runs} for k, runs in baselines.items()},
        **case.extra(),
    }
    out["ratios"] = ratios(out)
    return out


def ratios(case: dict[str, Any]) -> dict[str, float]:
    """Best vecdr restore over the best of each baseline: below 1, vecdr is the faster."""
    out = {}
    for store, r in case["restores"].items():
        for name, b in case["baselines"].items():
            if name != "write_index" and b["best"] > 0:
                out[f"{store}/{name}"] = round(r["best"] / b["best"], 4)
    return out


def summary_row(case: dict[str, Any]) -> dict[str, Any]:
    """One line of the results table."""
    def best(group: str, name: str) -> float | None:
        entry = case[group].get(name)
        return entry["best"] if entry else None

    return {
        "backend": case["backend"], "index": case["index"], "spec": case["spec"], "rows": case["rows"],
        "dim": case["dim"],
        "vecdr_local_seconds": best("restores", "local"), "vecdr_s3_seconds": best("restores", "s3"),
        "build_seconds": best("baselines", "build"),
        "read_index_seconds": best("baselines", "read_index"),
        "write_index_seconds": best("baselines", "write_index"),
        "pg_restore_seconds": best("baselines", "pg_restore"),
        "pg_dump_seconds": case["pg_dump"]["seconds"] if case.get("pg_dump") else None,
        "snapshot_local_seconds": case["snapshots"].get("local", {}).get("seconds"),
        "snapshot_s3_seconds": case["snapshots"].get("s3", {}).get("seconds"),
        "ratios": case["ratios"],
    }


@contextmanager
def servers(backends: tuple[str, ...], stores: tuple[str, ...], work: Path, keep: bool) -> Iterator[dict[str, Any]]:
    """Start what the run needs (S3, PostgreSQL, Milvus Lite), side by side, and stop it at the end."""
    from vecdr.testing.milvus import start as start_milvus
    from vecdr.testing.postgres import start as start_pg
    from vecdr.testing.s3 import start as start_s3

    wanted: dict[str, Callable[[], Any]] = {}
    if "pgvector" in backends:
        # A short folder: the server's socket lives in it.
        wanted["pg"] = lambda: start_pg(tempfile.mkdtemp(prefix="vb-pg-", dir="/tmp"))
    if "milvus" in backends:
        wanted["milvus"] = lambda: start_milvus(work / "milvus")
    started: dict[str, Any] = {}
    try:
        # Each server takes seconds to start, mostly waiting: start them together. moto's server is started
        # from this thread: it is told to stop when the thread that started it ends (PR_SET_PDEATHSIG).
        with ThreadPoolExecutor(len(wanted) or 1) as pool:
            futures = {name: pool.submit(fn) for name, fn in wanted.items()}
            if "s3" in stores:
                started["s3"] = start_s3()
            failures = []
            for name, future in futures.items():
                try:
                    started[name] = future.result()
                except Exception as exc:  # noqa: BLE001  (the others started are stopped below)
                    failures.append(exc)
            if failures:
                raise failures[0]
        yield started
    finally:
        if "milvus" in started:
            started["milvus"].stop(remove=not keep)
        if "pg" in started:
            started["pg"].stop(remove=not keep)
        if "s3" in started:
            started["s3"].stop()


def plan(args: argparse.Namespace, milvus: Any) -> tuple[list[tuple[str, str, int, int]], list[dict[str, Any]]]:
    """Every (backend, index, rows, dim) to measure, and the combinations skipped with the reason."""
    cases: list[tuple[str, str, int, int]] = []
    skipped: list[dict[str, Any]] = []
    unsupported: dict[tuple[str, int], str | None] = {}
    for d in args.dims:
        for n in args.rows:
            for backend in args.backends:
                for index in args.indexes:
                    why = None
                    if index not in BACKEND_INDEXES[backend]:
                        why = f"{backend} has no {index} index here"
                    elif backend == "pgvector" and args.pgvector_max_rows and n > args.pgvector_max_rows:
                        why = f"pgvector only up to --pgvector-max-rows {args.pgvector_max_rows}"
                    elif backend == "milvus" and args.milvus_max_rows and n > args.milvus_max_rows:
                        why = f"Milvus only up to --milvus-max-rows {args.milvus_max_rows}"
                    elif backend == "milvus":
                        if (index, d) not in unsupported:
                            unsupported[(index, d)] = milvus_supports(milvus, index, d)
                        problem = unsupported[(index, d)]
                        why = f"Milvus Lite refuses it ({problem})" if problem else None
                    if why:
                        skipped.append({"backend": backend, "index": index, "rows": n, "dim": d, "reason": why})
                    else:
                        cases.append((backend, index, n, d))
    return cases, skipped


def make_case(backend: str, index: str, x: np.ndarray, work: Path, started: dict[str, Any],
              args: argparse.Namespace) -> Case:
    if backend == "faiss":
        return FaissCase(index, x, work)
    if backend == "pgvector":
        return PgvectorCase(index, x, work, started["pg"], args.pg_dump_max_rows)
    return MilvusCase(index, x, work, started["milvus"])


def config_of(args: argparse.Namespace, work: Path, started: dict[str, Any]) -> dict[str, Any]:
    import faiss

    cfg: dict[str, Any] = {
        "rows": args.rows, "dims": args.dims, "indexes": args.indexes, "backends": args.backends,
        "stores": args.stores, "quick": args.quick, "seed": args.seed,
        "repeats": args.repeats or "2 below 50,000 rows, else 1",
        "pg_dump_max_rows": args.pg_dump_max_rows,
        "pg_index_build_settings": "COPY + CREATE INDEX and pg_restore (through PGOPTIONS) both run with "
                                   + ", ".join(f"{k} = {v}" for k, v in PG_BUILD_SETTINGS.items())
                                   + ", what vecdr's restore sets", "pgvector_max_rows": args.pgvector_max_rows,
        "milvus_max_rows": args.milvus_max_rows,
        "data": "numpy default_rng(seed).standard_normal((rows, dim), float32), rows L2-normalized; "
                "each N is the first N rows of the largest",
        "index_specs": {
            "faiss": "Flat, HNSW32 (efConstruction 40), IVF{nlist},Flat, IVF{nlist},PQ{m}: nlist the power of two "
                     "nearest 4*sqrt(N) with at least 39 rows a list, m the largest divisor of d up to d/8",
            "pgvector": f"hnsw ({OPCLASS}) WITH (m = 16, ef_construction = 64), ivfflat (lists = nlist)",
            "milvus": "FLAT, HNSW (M 16, efConstruction 64), IVF_FLAT (nlist), IVF_PQ (nlist, m, nbits 8), L2",
        },
        "timing": "wall clock around the call (time.perf_counter) after gc.collect() + os.sync() (pgvector: "
                  "CHECKPOINT too); a restore's time includes opening the repository from its URL; best of the "
                  "repeats, medians beside; repeats alternate baseline and restores (A B, B A)",
        "restore_targets": {
            "faiss": "an in-memory index (FaissTarget(None)), as the bare build is",
            "pgvector": f"table {TABLE} in a new database with the vector extension (the same as pg_restore gets); "
                        "checked against the source: rows, id sum, every vector's text hash, index definitions",
            "milvus": "a new collection in the same Milvus Lite server; rows counted, index described",
        },
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "workdir": str(work.parent),
        "workdir_same_device_as_checkout": os.stat(work).st_dev == os.stat(ROOT).st_dev,
    }
    if "pg" in started:
        with started["pg"].connect() as conn:
            cfg["postgres"] = {s: conn.execute(f"SHOW {s}").fetchone()[0]
                               for s in ("server_version", "shared_buffers", "maintenance_work_mem",
                                         "max_parallel_maintenance_workers")}
            cfg["postgres"]["pgvector"] = conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()[0]
    if "milvus" in started:
        import milvus_lite
        import pymilvus

        cfg["milvus"] = (f"milvus-lite {milvus_lite.__version__} served by `milvus-lite server` in its own "
                         f"process, reached through pymilvus {pymilvus.__version__} over gRPC")
    if "s3" in started:
        cfg["s3"] = "moto's S3 server on 127.0.0.1 in its own process, through s3fs (default storage options)"
    return cfg


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--rows", default=None, help="comma-separated N (default 10000,100000; --quick 2000,5000)")
    p.add_argument("--dim", default=None, help="comma-separated dimensions (default 128; --quick 16)")
    p.add_argument("--indexes", default=None,
                   help=f"comma-separated among {','.join(INDEX_TYPES)} (default all; --quick flat,hnsw)")
    p.add_argument("--backends", default=",".join(BACKENDS), help=f"comma-separated among {','.join(BACKENDS)}")
    p.add_argument("--stores", default=",".join(STORES), help=f"comma-separated among {','.join(STORES)}")
    p.add_argument("--repeats", type=int, default=None,
                   help="restores (and baselines) per case, best kept (default 2 below 50,000 rows, else 1; "
                        "--quick 1)")
    p.add_argument("--pg-dump-max-rows", type=int, default=100_000,
                   help="pg_dump / pg_restore only up to this N (default 100000: it is slow)")
    p.add_argument("--pgvector-max-rows", type=int, default=None, help="pgvector cases only up to this N (all)")
    p.add_argument("--milvus-max-rows", type=int, default=None,
                   help="Milvus cases only up to this N (default 100000: Milvus Lite is pure Python; "
                        "--quick: the smallest N)")
    p.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (0)")
    p.add_argument("--quick", action="store_true",
                   help="smoke test: 2k and 5k x 16, flat and hnsw, pgvector and Milvus at 2k only, 1 repeat")
    p.add_argument("--out", type=Path, default=None,
                   help="folder for rebuild.json, the plots and rebuild.md (default benchmarks/results; "
                        "--quick: benchmarks/results/rebuild-quick, not committed)")
    p.add_argument("--workdir", default=None, help="folder for the repositories and baseline files ($TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the work folder and the servers' data")
    p.add_argument("--replot", action="store_true", help="only redraw the plots and rebuild.md from rebuild.json")
    args = p.parse_args(argv)

    def listed(value: str | None, default: str, allowed: tuple[str, ...] | None = None) -> list[str]:
        items = [v.strip() for v in (value or default).split(",") if v.strip()]
        bad = [v for v in items if allowed is not None and v not in allowed]
        if bad:
            p.error(f"unknown {', '.join(bad)}; choose among {', '.join(allowed or ())}")
        return items

    args.rows = sorted({int(v) for v in listed(args.rows, "2000,5000" if args.quick else "10000,100000")})
    args.dims = sorted({int(v) for v in listed(args.dim, "16" if args.quick else "128")})
    args.indexes = listed(args.indexes, "flat,hnsw" if args.quick else ",".join(INDEX_TYPES), INDEX_TYPES)
    args.backends = tuple(listed(args.backends, "", BACKENDS))
    args.stores = tuple(listed(args.stores, "", STORES))
    if args.quick:
        args.repeats = args.repeats or 1
        args.pgvector_max_rows = args.pgvector_max_rows or args.rows[0]
        args.milvus_max_rows = args.milvus_max_rows or args.rows[0]
    else:
        args.milvus_max_rows = args.milvus_max_rows or 100_000
    args.out = args.out or HERE / "results" / ("rebuild-quick" if args.quick else "")
    return args


def repeats_for(args: argparse.Namespace, n: int) -> int:
    return int(args.repeats or (2 if n < 50_000 else 1))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rebuild_report import write_report

    out_json = args.out / "rebuild.json"
    if args.replot:
        for path in write_report(json.loads(out_json.read_text()), args.out):
            log(f"wrote {path}")
        return 0

    import faiss  # noqa: F401  (fail early if the extra is missing)

    import vecdr  # noqa: F401
    import vecdr.backends.faiss  # noqa: F401

    record = RunRecord()
    work = Path(tempfile.mkdtemp(prefix="vecdr-rebuild-", dir=args.workdir))
    log(f"work folder {work}; rows {args.rows}, dims {args.dims}, {args.indexes}, {args.backends}, {args.stores}")
    results: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    doc: dict[str, Any] = {}
    try:
        with servers(args.backends, args.stores, work, args.keep) as started:
            stores = Stores(work, started.get("s3"), started["s3"].make_bucket() if "s3" in started else "")
            config = config_of(args, work, started)
            cases, skipped = plan(args, started.get("milvus"))
            for s in skipped:
                log(f"skipped {s['backend']} {s['index']} at {s['rows']}x{s['dim']}: {s['reason']}")
            data = {d: make_vectors(np.random.default_rng(args.seed), max(args.rows), d) for d in args.dims}
            for backend, index, n, d in cases:
                case = make_case(backend, index, np.ascontiguousarray(data[d][:n]), work, started, args)
                log(f"-- {case.name}: {case.spec()}")
                try:
                    results.append(run_case(case, stores, args.stores, repeats_for(args, n)))
                except Exception as exc:  # noqa: BLE001  (one failed case must not cost the rest of a long sweep)
                    failed.append(failure(backend, index, n, d, exc))
                    log(f"{case.name} FAILED: {failed[-1]['error']}")
                finally:
                    try:
                        case.close()
                    except Exception as exc:  # noqa: BLE001
                        log(f"{case.name}: cleaning up failed: {exc}")
                doc = document(record, argv, args, config, results, skipped, failed)
                write_results(doc, out_json)  # after every case: a cut-off run keeps what it measured
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    doc = document(record, argv, args, config, results, skipped, failed)
    write_results(doc, out_json)
    for path in [out_json, *write_report(doc, args.out)]:
        log(f"wrote {path}")
    print(f"{len(results)} cases, {len(skipped)} skipped, {len(failed)} failed, {doc['wall_seconds']:.0f}s wall; "
          f"results: {args.out}")
    return 1 if failed else 0


def failure(backend: str, index: str, n: int, d: int, exc: BaseException) -> dict[str, Any]:
    lines = traceback.format_exception(exc)
    return {"backend": backend, "index": index, "rows": n, "dim": d,
            "error": f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}",
            "traceback": "".join(lines)[-4000:]}


def document(record: RunRecord, argv: list[str] | None, args: argparse.Namespace, config: dict[str, Any],
             results: list[dict[str, Any]], skipped: list[dict[str, Any]],
             failed: list[dict[str, Any]]) -> dict[str, Any]:
    # The sweep measures and asserts nothing: no figure has a target (the ratios are in `summary`).
    doc = record.document("vecdr rebuild sweep", argv, args.out / "rebuild.json", config, {},
                          {"runs": results, "skipped": skipped, "failed": failed})
    doc["all_pass"] = None
    doc["summary"] = [summary_row(c) for c in results]
    return doc


if __name__ == "__main__":
    sys.exit(main())
