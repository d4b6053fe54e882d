"""``make demo``: one disaster and one recovery, end to end, on embedded defaults.

Builds a FAISS HNSW index over synthetic embeddings, snapshots it, changes about
1% of the vectors, snapshots again (incremental), destroys the index, restores it
from the repository, and checks that held-out queries return exactly what they
returned before the disaster. Then, where the ``pgvector`` extra is installed, the
same story in PostgreSQL: the FAISS snapshot restored into a pgvector table (a
local server started by pgserver), change tracking, a tracked incremental
snapshot, ``DROP TABLE``, and a restore that brings back every row bit for bit.
Where the ``milvus`` extra is installed, once more in Milvus Lite: the FAISS snapshot
restored into a collection, a snapshot, 1% changed through the Milvus client, a diff
snapshot, the collection dropped and restored, and the held-out queries' top 10
compared with those before the drop.

    python -m vecdr.demo [--rows 100000] [--dim 128] [--dir demo-output] [--no-pgvector] [--no-milvus]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

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
    parser.add_argument("--no-pgvector", action="store_true", help="skip the PostgreSQL part")
    parser.add_argument("--no-milvus", action="store_true", help="skip the Milvus Lite part")
    args = parser.parse_args(argv)
    warnings.showwarning = lambda message, *rest, **kw: print(f"    warning: {message}")

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
    # On the CPU: a GPU (CAGRA) build makes a different, equally good graph, and this
    # check is that search results are exactly the ones from before the disaster.
    result = vecdr.restore(repo, f"faiss:{live_path}", "latest", collection="products", gpu="off")
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
    pg_ok = True if args.no_pgvector else pgvector_part(repo, repo_url, say)
    milvus_ok = True if args.no_milvus else milvus_part(repo, repo_url, work / "milvus.db", queries, say)
    if not (same_ids and same_dist and report.ok and pg_ok and milvus_ok):
        raise SystemExit(1)


def pgvector_part(repo: vecdr.Repository, repo_url: str, say: Any) -> bool:
    """The same disaster in PostgreSQL; True when every row came back bit for bit."""
    try:
        from vecdr.backends.pgvector import enable_tracking
        from vecdr.testing.postgres import start
    except ImportError:
        print("\n(PostgreSQL part skipped: pip install 'vecdr[pgvector]')")
        return True
    say("PostgreSQL + pgvector: start a local server (pgserver, PostgreSQL 16 with pgvector)")
    pg = start(tempfile.mkdtemp(prefix="vecdr-demo-pg-"))
    try:
        uri = pg.uri("products")
        checksum = (
            "SELECT count(*), md5(string_agg(id::text || ':' || embedding::text, ',' ORDER BY id)) FROM products"
        )
        say(f"vecdr restore {repo_url} latest '{uri}'   (FAISS snapshot -> pgvector table)")
        moved = vecdr.restore(repo, uri, "latest", collection="products")
        phases = ", ".join(f"{name} {sec:.2f}s" for name, sec in moved.phases.items() if sec >= 0.01)
        print(f"    {moved.rows:,} rows and an HNSW index in table products in {moved.seconds:.1f}s ({phases})")

        say("vecdr pgvector enable-tracking, a full snapshot, then 1% of the rows change in SQL")
        enable_tracking(uri)
        first = vecdr.snapshot(repo, uri, collection="products-pg")
        with pg.connect() as conn:
            conn.execute("DELETE FROM products WHERE id % 300 = 1")
            conn.execute("INSERT INTO products SELECT id + 100000000, embedding FROM products WHERE id % 300 = 2")
            conn.execute(
                "UPDATE products p SET embedding = q.embedding FROM products q WHERE p.id % 300 = 3 AND q.id = p.id + 1"
            )
            before = conn.execute(checksum).fetchone()
        second = vecdr.snapshot(repo, uri, collection="products-pg")
        print(f"    full {first.snapshot[:12]}: {first.rows:,} rows, {human_bytes(first.bytes_written)}, "
              f"{first.seconds:.2f}s")
        print(f"    {second.mode} {second.snapshot[:12]}: +{second.added:,} ~{second.changed:,} -{second.deleted:,}, "
              f"{human_bytes(second.bytes_written)}, {second.seconds:.2f}s")

        say("Disaster: DROP TABLE products;  then vecdr restore … latest (collection products-pg)")
        with pg.connect() as conn:
            conn.execute("DROP TABLE products CASCADE")
        back = vecdr.restore(repo, uri, "latest", collection="products-pg")
        with pg.connect() as conn:
            after = conn.execute(checksum).fetchone()
            indexes = [r[0] for r in conn.execute("SELECT indexdef FROM pg_indexes WHERE tablename = 'products'")]
        same = before == after
        print(f"    restored {back.rows:,} rows in {back.seconds:.1f}s (RPO {back.snapshot_age_seconds:.1f}s); "
              f"rows and vectors {'IDENTICAL' if same else 'DIFFERENT'} (checksum over every row)")
        for definition in indexes:
            print(f"    {definition}")
        return same
    finally:
        pg.stop()


def milvus_part(repo: vecdr.Repository, repo_url: str, db: Path, queries: np.ndarray, say: Any) -> bool:
    """The same disaster in Milvus Lite; True when the restored collection answers as before."""
    try:
        from pymilvus import MilvusClient
    except ImportError:
        print("\n(Milvus part skipped: pip install 'vecdr[milvus]')")
        return True
    uri = f"milvus:{db}?collection=products"
    say(f"vecdr restore {repo_url} latest '{uri}'   (FAISS snapshot -> Milvus Lite collection)")
    moved = vecdr.restore(repo, uri, "latest", collection="products")
    client = MilvusClient(str(db))  # the same Milvus Lite, already open in this process
    index = client.describe_index("products", "vector")
    print(f"    {moved.rows:,} rows and a {index['index_type']} {index['params']} index in {moved.seconds:.1f}s "
          f"(insert {moved.phases.get('insert', 0):.1f}s, index {moved.phases.get('index', 0):.1f}s)")

    say("vecdr snapshot (full), 1% of the rows change through the Milvus client, vecdr snapshot (diff)")
    first = vecdr.snapshot(repo, uri, collection="products-milvus")
    rng = np.random.default_rng(11)
    k = max(1, first.rows // 300)
    rows = client.get("products", ids=rng.choice(first.rows, 3 * k, replace=False).tolist())[: 2 * k]
    client.upsert("products", [{"id": r["id"], "vector": [-v for v in r["vector"]]} for r in rows[:k]])
    client.delete("products", ids=[r["id"] for r in rows[k:]])
    fresh = embeddings_like(queries, k, rng)
    client.insert("products", [{"id": 10**9 + i, "vector": v} for i, v in enumerate(fresh.tolist())])
    second = vecdr.snapshot(repo, uri, collection="products-milvus")
    print(f"    full {first.snapshot[:12]}: {first.rows:,} rows, {human_bytes(first.bytes_written)}, "
          f"{first.seconds:.2f}s")
    print(f"    {second.mode} {second.snapshot[:12]}: +{second.added:,} ~{second.changed:,} -{second.deleted:,}, "
          f"{human_bytes(second.bytes_written)}, {second.seconds:.2f}s")

    # A wide search (ef 1024): near-exact on both graphs, so the comparison is of the data.
    params = {"metric_type": index["metric_type"], "params": {"ef": 1024}}
    before = search_ids(client, queries, params)
    say("Disaster: client.drop_collection('products');  then vecdr restore … latest (collection products-milvus)")
    client.drop_collection("products")
    back = vecdr.restore(repo, uri, "latest", collection="products-milvus")
    after = search_ids(client, queries, params)
    same = int((np.sort(before, axis=1) == np.sort(after, axis=1)).all(axis=1).sum())
    overlap = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(before.tolist(), after.tolist(), strict=True)]))
    print(f"    restored {back.rows:,} rows in {back.seconds:.1f}s (RPO {back.snapshot_age_seconds:.1f}s)")
    print(f"    {len(queries):,} held-out queries, top-10 ids: {same:,} identical, {overlap:.4f} overlap "
          "(each rebuilt HNSW graph misses a few different true neighbours)")
    # Each rebuilt HNSW graph misses a different ~0.5% of true neighbours even at ef 1024
    # (measured), so about one query in ten differs in one id: 0.98 allows for that.
    return back.rows == second.rows and overlap >= 0.98


def embeddings_like(queries: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """New rows near existing ones: held-out query vectors with a little noise."""
    x = queries[rng.integers(0, len(queries), n)] + 0.05 * rng.standard_normal((n, queries.shape[1]))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def search_ids(client: Any, queries: np.ndarray, params: dict[str, Any]) -> np.ndarray:
    hits = client.search("products", data=queries.tolist(), limit=10, anns_field="vector", search_params=params)
    return np.asarray([[h["id"] for h in row] for row in hits], np.int64)


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
