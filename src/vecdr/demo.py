"""``make demo``: one disaster and one recovery, end to end, on embedded defaults.

Builds a FAISS HNSW index over synthetic embeddings, snapshots it, changes about
1% of the vectors, snapshots again (incremental), destroys the index, restores it
from the repository, and checks that held-out queries return exactly what they
returned before the disaster.

    python -m vecdr.demo [--rows 100000] [--dim 128] [--dir demo-output]
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import faiss
import numpy as np

import vecdr
from vecdr.cli.output import human_bytes


def embeddings(rng: np.random.Generator, n: int, d: int, centers: np.ndarray) -> np.ndarray:
    """Clustered, normalized float32 vectors: a stand-in for real text embeddings."""
    x = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.standard_normal((n, d))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def build(ids: np.ndarray, vectors: np.ndarray, d: int) -> faiss.Index:
    hnsw = faiss.IndexHNSWFlat(d, 32)
    hnsw.hnsw.efSearch = 64
    index = faiss.IndexIDMap2(hnsw)
    index.add_with_ids(vectors, ids)
    return index


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--dir", default="demo-output")
    args = parser.parse_args(argv)

    n, d = args.rows, args.dim
    work = Path(args.dir)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    live_path, repo_url = work / "live.faiss", str(work / "repository")
    rng = np.random.default_rng(7)
    centers = rng.standard_normal((256, d))
    step = 0

    def say(text: str) -> None:
        nonlocal step
        step += 1
        print(f"\n[{step}] {text}")

    say(f"Build the live index: FAISS IDMap2,HNSW32 over {n:,} synthetic {d}-d embeddings")
    ids = np.arange(n, dtype=np.int64)
    vectors = embeddings(rng, n, d, centers)
    t0 = time.perf_counter()
    faiss.write_index(build(ids, vectors, d), str(live_path))
    raw = vectors.nbytes
    print(f"    built in {time.perf_counter() - t0:.1f}s; {live_path} is {human_bytes(live_path.stat().st_size)} "
          f"({human_bytes(raw)} of raw vectors)")

    say(f"vecdr init {repo_url}  +  vecdr snapshot {repo_url} faiss:{live_path}")
    repo = vecdr.init(repo_url)
    full = vecdr.snapshot(repo, f"faiss:{live_path}", collection="products", tags=["initial"])
    print(f"    full snapshot {full.snapshot[:12]}: {full.rows:,} rows, "
          f"{human_bytes(full.bytes_written)} written ({full.bytes_written / raw:.2f} of raw) "
          f"in {full.seconds:.2f}s")

    say("A day of traffic: about 1% of the vectors change (updates, inserts, deletes)")
    k = max(3, n // 300)
    touched = rng.choice(n, 2 * k, replace=False)
    updated, deleted = touched[:k], touched[k:]
    vectors[updated] = embeddings(rng, k, d, centers)
    keep = np.ones(n, dtype=bool)
    keep[updated] = keep[deleted] = False
    new_ids = np.arange(n, n + k, dtype=np.int64)
    live_ids = np.concatenate([ids[keep], ids[updated], new_ids])
    live_vectors = np.concatenate([vectors[keep], vectors[updated], embeddings(rng, k, d, centers)])
    t0 = time.perf_counter()
    live = build(live_ids, live_vectors, d)
    faiss.write_index(live, str(live_path))
    print(f"    {k:,} updated, {k:,} inserted, {k:,} deleted; index rebuilt and saved "
          f"in {time.perf_counter() - t0:.1f}s")

    say(f"vecdr snapshot {repo_url} faiss:{live_path}   (incremental)")
    inc = vecdr.snapshot(repo, f"faiss:{live_path}", collection="products")
    print(f"    incremental snapshot {inc.snapshot[:12]} ({inc.mode}): +{inc.added:,} ~{inc.changed:,} "
          f"-{inc.deleted:,}, {human_bytes(inc.bytes_written)} written "
          f"({inc.bytes_written / full.bytes_written:.1%} of the full snapshot) in {inc.seconds:.2f}s")

    queries = embeddings(np.random.default_rng(99), args.queries, d, centers)
    before_d, before_i = live.search(queries, 10)

    say(f"Disaster: the index is gone  (rm {live_path})")
    live_path.unlink()
    del live

    say(f"vecdr restore {repo_url} latest faiss:{live_path}")
    result = vecdr.restore(repo, f"faiss:{live_path}", "latest", collection="products")
    phases = ", ".join(f"{name} {sec:.2f}s" for name, sec in result.phases.items())
    print(f"    restored {result.rows:,} rows from snapshot {result.snapshot[:12]} ({phases})")

    say("Check: held-out queries against the restored index")
    restored = faiss.read_index(str(live_path))
    after_d, after_i = restored.search(queries, 10)
    same_ids = bool(np.array_equal(before_i, after_i))
    same_dist = bool(np.array_equal(before_d, after_d))
    report = vecdr.verify(repo, read_data=True)
    print(f"    {args.queries:,} queries, top-10: ids identical: {same_ids}, distances identical: {same_dist}")
    print(f"    vecdr verify --read-data: {report.objects} objects, "
          f"{'ok' if report.ok else f'{len(report.errors)} errors'}")

    print("\nSummary")
    print(f"    full snapshot      {human_bytes(full.bytes_written):>12}  "
          f"({full.bytes_written / raw:.2f} × raw vectors)")
    print(f"    incremental        {human_bytes(inc.bytes_written):>12}  "
          f"({inc.bytes_written / full.bytes_written:.1%} of full)")
    print(f"    RTO (restore time) {result.seconds:>10.2f} s")
    print(f"    RPO (snapshot age) {result.snapshot_age_seconds:>10.2f} s  "
          "(age of the restored snapshot when serving resumed)")
    print(f"    search results     {'IDENTICAL' if same_ids and same_dist else 'DIFFERENT'} to the pre-disaster index")
    if not (same_ids and same_dist and report.ok):
        raise SystemExit(1)


if __name__ == "__main__":
    import os
    import sys

    # Leave without interpreter teardown, as the CLI does (see vecdr.cli.main.entry).
    try:
        main()
        status = 0
    except SystemExit as exc:
        status = exc.code if isinstance(exc.code, int) else 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)
