#!/usr/bin/env python
"""vecdr on S3: snapshot and restore throughput against a real S3 endpoint, and bytes PUT.

One moto S3 server on 127.0.0.1 in its own process (``vecdr.testing.s3``), reached
through s3fs as AWS would be; the same data (200k x 768 normalized float32, a
FAISS ``IDMap2,Flat`` index in memory) in the same run:

- full snapshot and restore on a local repository (the reference);
- the same on S3 with ``concurrency`` 1 and 8: throughput of each, straight to the
  server and through a proxy that holds every request ``--latency-ms`` (30) before
  forwarding it; the speedup of 8 transfers at once over 1 is measured with the
  latency. The server on 127.0.0.1 answers in microseconds and shares the two cores
  with vecdr, so there concurrency has nothing to hide; a bucket in another region
  is tens of milliseconds away, per request;
- a diff snapshot after 1% of the rows changed, through a counting proxy: the bytes
  actually PUT, against the full snapshot's bytes PUT through the same proxy.

    .venv/bin/python benchmarks/s3.py            # 200k x 768, a few minutes on 2 cores
    .venv/bin/python benchmarks/s3.py --quick    # 20k x 128 smoke test, seconds
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import (  # noqa: E402
    RunRecord,
    apply_changes_plain,
    log,
    make_changes,
    make_vectors,
    print_figures,
    record_figure,
    settle,
    write_results,
)

TARGETS: dict[str, tuple[str, float, str]] = {
    "s3_snapshot_speedup_c8_over_c1": (">=", 1.2, "full snapshot seconds to S3 at concurrency 1 / at concurrency 8"),
    "s3_restore_speedup_c8_over_c1": (">=", 1.2, "restore seconds from S3 at concurrency 1 / at concurrency 8"),
    "s3_incremental_put_bytes_ratio": (
        "<=",
        0.02,
        "bytes PUT by a diff snapshot after 1% changed / bytes PUT by the full snapshot (counted by a proxy)",
    ),
}


def timed(fn: Any, repeats: int) -> tuple[list[float], Any]:
    samples, out = [], None
    for _ in range(repeats):
        settle()
        t0 = time.perf_counter()
        out = fn()
        samples.append(time.perf_counter() - t0)
    return samples, out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=None, help="rows (default 200000; --quick 20000)")
    p.add_argument("--dim", type=int, default=None, help="dimension (default 768; --quick 128)")
    p.add_argument("--repeats", type=int, default=2, help="samples of each timing (2)")
    p.add_argument("--latency-ms", type=float, default=30.0,
                   help="added to every request for the concurrency speedups (30: a cross-region round trip)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quick", action="store_true", help="20k x 128 smoke test")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/s3.json)")
    args = p.parse_args(argv)
    rows = args.rows or (20_000 if args.quick else 200_000)
    dim = args.dim or (128 if args.quick else 768)
    out = Path(args.out or HERE / "results" / ("quick-s3.json" if args.quick else "s3.json"))

    import faiss

    import vecdr
    from vecdr.testing.s3 import FaultProxy, start

    record = RunRecord()
    x = make_vectors(np.random.default_rng(args.seed), rows, dim)
    raw = x.nbytes
    index = faiss.IndexIDMap2(faiss.IndexFlatL2(dim))
    index.add_with_ids(x, np.arange(rows, dtype=np.int64))
    work = Path(tempfile.mkdtemp(prefix="vecdr-s3bench-"))
    server = start()
    proxy = FaultProxy(server.endpoint)
    cases: dict[str, Any] = {}
    try:
        def measure(name: str, url: str, options: dict[str, Any] | None) -> dict[str, Any]:
            """Full snapshots (each into a fresh repository) and restores of the last one."""
            repos = []

            def snap() -> Any:
                target = f"{url}-{len(repos)}"
                repos.append(vecdr.init(target, options))
                return vecdr.snapshot(repos[-1], index)

            snap_t, result = timed(snap, args.repeats)
            restore_t, restored = timed(lambda: vecdr.restore_index(repos[-1]), args.repeats)
            assert restored.ntotal == rows
            case = {
                "snapshot_seconds": [round(t, 3) for t in snap_t],
                "restore_seconds": [round(t, 3) for t in restore_t],
                "snapshot_mb_s": round(raw / min(snap_t) / 1e6, 1),
                "restore_mb_s": round(raw / min(restore_t) / 1e6, 1),
                "bytes_written": result.bytes_written,
            }
            log(f"{name}: snapshot {min(snap_t):.2f}s ({case['snapshot_mb_s']} MB/s), "
                f"restore {min(restore_t):.2f}s ({case['restore_mb_s']} MB/s)")
            return case

        cases["local"] = measure("local", str(work / "repo"), None)
        latency = args.latency_ms / 1000
        slow = FaultProxy(server.endpoint, plan=lambda request: latency)
        try:
            for c in (1, 8):
                bucket = server.make_bucket()
                cases[f"s3_c{c}"] = measure(f"s3 concurrency {c}", f"s3://{bucket}/repo",
                                            server.storage_options(concurrency=c))
                bucket = server.make_bucket()
                cases[f"s3_c{c}_latency"] = measure(
                    f"s3 concurrency {c}, {args.latency_ms:g} ms a request", f"s3://{bucket}/repo",
                    server.storage_options(concurrency=c, endpoint=slow.endpoint))
            cases["latency_requests"] = len(slow.seen)
        finally:
            slow.stop()

        # Bytes actually PUT, counted by the proxy in front of the server.
        bucket = server.make_bucket()
        repo = vecdr.init(f"s3://{bucket}/repo", server.storage_options(endpoint=proxy.endpoint))
        proxy.reset_counts()
        full = vecdr.snapshot(repo, index)
        full_put = proxy.put_bytes
        apply_changes_plain(index, make_changes(rows, dim, 0.01, args.seed))
        proxy.reset_counts()
        incremental = vecdr.snapshot(repo, index)
        incremental_put = proxy.put_bytes
        puts = len(proxy.actions("PUT"))
        cases["incremental"] = {
            "full_put_bytes": full_put, "full_bytes_written": full.bytes_written,
            "incremental_put_bytes": incremental_put, "incremental_bytes_written": incremental.bytes_written,
            "incremental_puts": puts, "mode": incremental.mode,
            "added": incremental.added, "changed": incremental.changed, "deleted": incremental.deleted,
        }
        log(f"incremental ({incremental.mode}): {incremental_put} B PUT in {puts} requests, full {full_put} B")
    finally:
        proxy.stop()
        server.stop()
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, Any] = {}
    c1, c8 = cases["s3_c1_latency"], cases["s3_c8_latency"]
    for op in ("snapshot", "restore"):
        key = f"{op}_seconds"
        record_figure(figures, TARGETS, f"s3_{op}_speedup_c8_over_c1",
                      min(c1[key]) / min(c8[key]),
                      f"best {min(c1[key]):.2f}s at concurrency 1 / {min(c8[key]):.2f}s at 8, "
                      f"{args.latency_ms:g} ms added to each request",
                      local_seconds=min(cases["local"][key]),
                      median_ratio=round(statistics.median(c1[key]) / statistics.median(c8[key]), 3),
                      without_latency_ratio=round(min(cases["s3_c1"][key]) / min(cases["s3_c8"][key]), 3))
    inc = cases["incremental"]
    record_figure(figures, TARGETS, "s3_incremental_put_bytes_ratio",
                  inc["incremental_put_bytes"] / inc["full_put_bytes"],
                  f"{inc['incremental_put_bytes']} B / {inc['full_put_bytes']} B PUT bodies "
                  f"({inc['incremental_puts']} PUT requests; +{inc['added']} ~{inc['changed']} -{inc['deleted']})")
    config = {
        "rows": rows, "dim": dim, "repeats": args.repeats, "seed": args.seed, "quick": args.quick,
        "raw_vector_bytes": raw,
        "server": "moto's S3 server (python -m moto.server) on 127.0.0.1 in its own process, through s3fs",
        "latency_ms": args.latency_ms,
        "latency": "the *_latency cases reach the server through vecdr.testing.s3.FaultProxy, which holds "
                   "every request latency_ms before forwarding it; the concurrency speedups are theirs",
        "throughput": "raw vector bytes / best wall seconds of vecdr.snapshot (a fresh repository each) and "
                      "vecdr.restore_index (into Flat)",
        "put_bytes": "request bodies of successful PUTs, counted by vecdr.testing.s3.FaultProxy in front of "
                     "the server (no faults injected)",
    }
    doc = record.document("vecdr s3", argv, out, config, figures, cases)
    write_results(doc, out)
    print_figures(figures)
    for name in ("local", "s3_c1", "s3_c8", "s3_c1_latency", "s3_c8_latency"):
        c = cases[name]
        print(f"{name:>14}: snapshot {c['snapshot_mb_s']:>7} MB/s, restore {c['restore_mb_s']:>7} MB/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
