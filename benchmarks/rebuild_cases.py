"""The rebuild sweep's cases (``benchmarks/rebuild.py``): one class per backend, each building its source,
timing its baselines, snapshotting it and timing restores, with the index specs sized to N.
"""

from __future__ import annotations

import math
import os
import time
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from milvus import NAIVE_BATCH, _create  # the Milvus benchmark's helpers
from pgvector import (  # the pgvector benchmark's helpers
    copy_binary,
    fingerprint,
    pg_args,
    restore_phases,
    run_process,
    same_table,
)
from pgvector import settle as pg_settle
from run import PhaseTimer, cpu_seconds, fsync_path, make_vectors, settle  # the core benchmark's helpers

INDEX_TYPES = ("flat", "hnsw", "ivf_flat", "ivf_pq")
BACKENDS = ("faiss", "pgvector", "milvus")
STORES = ("local", "s3")

#: The index types each backend has. Milvus Lite has no IVF_PQ (probed at run time: see milvus_supports).
BACKEND_INDEXES: dict[str, tuple[str, ...]] = {
    "faiss": INDEX_TYPES,
    "pgvector": ("hnsw", "ivf_flat"),
    "milvus": ("flat", "hnsw", "ivf_flat", "ivf_pq"),
}

#: pgvector's and Milvus's HNSW as the other benchmarks build it: pgvector's defaults.
PG_HNSW = {"m": 16, "ef_construction": 64}
MILVUS_HNSW = {"M": 16, "efConstruction": 64}
OPCLASS = "vector_l2_ops"
#: The index-build settings vecdr's pgvector restore uses (one less parallel worker than the 2 cores), given to
#: the COPY + CREATE INDEX baseline and to pg_restore alike: with the server's 64MB, pg_restore is slower for
#: HNSW and fails outright for ivfflat with 1,024 lists at 100k x 128 ("memory required is 231 MB").
PG_BUILD_SETTINGS = {"maintenance_work_mem": "1GB", "max_parallel_maintenance_workers": "1"}
TABLE = "items"  # pgvector.fingerprint's table

#: Restore phases a backend's target reports from its finish() (the rest happen while rows stream).
FINISH_PHASES: dict[str, tuple[str, ...]] = {
    "faiss": ("to_host", "write"),
    "pgvector": ("convert", "primary_key", "index", "publish"),
    "milvus": ("insert_wait", "flush", "index", "load", "count", "publish"),
}
#: What is left of finish() once its named phases are taken out.
FINISH_REST = {"faiss": "build", "pgvector": "finish, other", "milvus": "finish, other"}


# -- index specs sized to N -------------------------------------------------------------


def ivf_lists(n: int) -> int:
    """The power of two nearest 4·sqrt(n), with at least 39 rows per list (FAISS's k-means minimum)."""
    nearest = 2 ** round(math.log2(4 * math.sqrt(n)))
    most = 2 ** int(math.log2(max(1, n // 39)))
    return max(1, min(nearest, most))


def pq_subquantizers(d: int) -> int:
    """The largest divisor of d not above d/8 (16 bytes a vector at d=128), at most 64."""
    top = max(1, min(64, d // 8))
    return max(m for m in range(1, top + 1) if d % m == 0)


def faiss_factory(index: str, n: int, d: int) -> str:
    return {
        "flat": "Flat",
        "hnsw": "HNSW32",
        "ivf_flat": f"IVF{ivf_lists(n)},Flat",
        "ivf_pq": f"IVF{ivf_lists(n)},PQ{pq_subquantizers(d)}",
    }[index]


def pg_index(index: str, n: int) -> tuple[str, dict[str, int]]:
    return ("hnsw", dict(PG_HNSW)) if index == "hnsw" else ("ivfflat", {"lists": ivf_lists(n)})


def milvus_index(index: str, n: int, d: int) -> tuple[str, dict[str, int]]:
    return {
        "flat": ("FLAT", {}),
        "hnsw": ("HNSW", dict(MILVUS_HNSW)),
        "ivf_flat": ("IVF_FLAT", {"nlist": ivf_lists(n)}),
        "ivf_pq": ("IVF_PQ", {"nlist": ivf_lists(n), "m": pq_subquantizers(d), "nbits": 8}),
    }[index]


# -- measurement ------------------------------------------------------------------------


def measured(fn: Callable[[], Any], before: Callable[[], None] = settle) -> tuple[dict[str, Any], Any]:
    """Run ``fn`` once from a settled state: wall and process CPU seconds, 1-minute load before and after."""
    before()
    load0 = os.getloadavg()[0]
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - t0
    sample = {
        "seconds": round(seconds, 6),
        "cpu_seconds": round(cpu_seconds() - c0, 3),  # this process only: servers work in their own
        "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
    }
    return sample, out


def time_finish(target: Any) -> list[float]:
    """Time the target's finish() (index build, publish…) from outside: the seconds land in the list."""
    box: list[float] = []
    inner = target.finish

    def finish() -> dict[str, float]:
        t0 = time.perf_counter()
        try:
            return inner()  # type: ignore[no-any-return]
        finally:
            box.append(time.perf_counter() - t0)

    target.finish = finish
    return box


def breakdown(backend: str, wall: float, phases: dict[str, float], finish: float) -> dict[str, float]:
    """A restore's wall time in disjoint parts that add up to it (the stacked-phase plot).

    The engine's own phases (prepare, sample + train, stream) do not overlap; within
    the stream, ``read_wait`` is time spent waiting on fetching and decoding segments
    and the rest is the target taking rows (FAISS adds, COPY, Milvus inserts sent).
    finish() is timed from outside and split into the target's named phases.
    """
    parts = {
        "prepare": phases.get("prepare", 0.0),
        "train": phases.get("sample", 0.0) + phases.get("train", 0.0),
        "read (waited)": phases.get("read_wait", 0.0),
        "rows in": max(0.0, phases.get("stream", 0.0) - phases.get("read_wait", 0.0)),
    }
    named = {name: phases[name] for name in FINISH_PHASES[backend] if name in phases}
    parts.update(named)
    parts[FINISH_REST[backend]] = max(0.0, finish - sum(named.values()))
    parts["open, other"] = max(0.0, wall - sum(parts.values()))
    return {k: round(v, 6) for k, v in parts.items() if v > 0}


@dataclass
class Stores:
    """Where the repositories go: local disk under the work folder, and one S3 bucket."""

    work: Path
    s3: Any  # vecdr.testing.s3.LocalS3
    bucket: str

    def location(self, store: str, name: str) -> tuple[str, dict[str, Any] | None]:
        if store == "local":
            return str(self.work / "repos" / name), None
        return f"s3://{self.bucket}/{name}", self.s3.storage_options()


# -- backends ---------------------------------------------------------------------------


class Case(ABC):
    """One (backend, index type, N, dimension): its source, baselines, snapshots and restores."""

    backend: str

    def __init__(self, index: str, x: np.ndarray, work: Path) -> None:
        self.index, self.x, self.work = index, x, work
        self.n, self.d = x.shape
        self.name = f"{self.backend}-{index.replace('_', '-')}-{self.n}x{self.d}"

    @abstractmethod
    def spec(self) -> str:
        """The index as the backend names it, with its build parameters."""

    @abstractmethod
    def baseline(self, rep: int) -> dict[str, dict[str, Any]]:
        """Rebuild without vecdr (rep 0 also makes the source): baseline name -> sample."""

    @abstractmethod
    def snapshot(self, repo: Any) -> Any:
        """Snapshot the source into ``repo``."""

    @abstractmethod
    def restore(self, repo_url: str, options: dict[str, Any] | None) -> dict[str, Any]:
        """Restore the latest snapshot into a fresh target: the sample, rows checked."""

    def extra(self) -> dict[str, Any]:
        """One-off measurements beside the baselines (pg_dump)."""
        return {}

    def close(self) -> None:
        pass

    def _restore(self, repo_url: str, options: dict[str, Any] | None, target: Any,
                 before: Callable[[], None] = settle) -> tuple[dict[str, Any], Any]:
        """Open the repository and restore into ``target``, both timed (a restore starts from a URL)."""
        import vecdr

        finish = time_finish(target)
        sample, res = measured(
            lambda: vecdr.restore(vecdr.open_repository(repo_url, options), target, "latest", force=True),
            before)
        sample.update(engine_seconds=res.seconds, rows=res.rows, phases=res.phases,
                      finish_seconds=round(finish[0], 6) if finish else 0.0,
                      breakdown=breakdown(self.backend, sample["seconds"], res.phases, finish[0] if finish else 0.0))
        return sample, res


class FaissCase(Case):
    backend = "faiss"

    def __init__(self, index: str, x: np.ndarray, work: Path) -> None:
        super().__init__(index, x, work)
        self.factory = faiss_factory(index, self.n, self.d)
        self.source: Any = None

    def spec(self) -> str:
        return self.factory

    def baseline(self, rep: int) -> dict[str, dict[str, Any]]:
        import faiss

        def build() -> tuple[Any, dict[str, float]]:
            t0 = time.perf_counter()
            index = faiss.index_factory(self.d, self.factory)
            index.train(self.x)
            t1 = time.perf_counter()
            index.add(self.x)
            return index, {"train": round(t1 - t0, 6), "add": round(time.perf_counter() - t1, 6)}

        built, (index, phases) = measured(build)
        built["phases"] = phases
        # index_factory turns on polysemous training for 8-bit PQ: most of an IVF-PQ train, which a restore
        # with the kept trained state skips.
        built["polysemous_training"] = bool(getattr(index, "do_polysemous_training", False))
        path = self.work / f"{self.name}.faiss"

        def write() -> None:
            faiss.write_index(index, str(path))
            fsync_path(path)
            fsync_path(path.parent)

        written, _ = measured(write)
        written["file_bytes"] = path.stat().st_size
        read, loaded = measured(lambda: faiss.read_index(str(path)))
        read["rows"] = int(loaded.ntotal)
        del loaded
        path.unlink()
        self.source = index  # the last one built: the snapshots' source
        return {"build": built, "write_index": written, "read_index": read}

    def snapshot(self, repo: Any) -> Any:
        import vecdr

        # An IVF-PQ index does not keep the vectors: the snapshot takes them beside it.
        embeddings = self.x if self.index == "ivf_pq" else None
        return vecdr.snapshot(repo, self.source, collection=self.name, embeddings=embeddings, quality_sample=0,
                              reporter=PhaseTimer())

    def restore(self, repo_url: str, options: dict[str, Any] | None) -> dict[str, Any]:
        from vecdr.backends.faiss import FaissTarget

        target = FaissTarget(None)  # in memory, as the bare build is
        sample, _ = self._restore(repo_url, options, target)
        sample["target_rows"] = int(target.index.ntotal)
        sample["restored_index"] = type(target.index).__name__
        target.index = None
        return sample

    def close(self) -> None:
        self.source = None


class PgvectorCase(Case):
    backend = "pgvector"

    def __init__(self, index: str, x: np.ndarray, work: Path, pg: Any, dump_max_rows: int) -> None:
        super().__init__(index, x, work)
        self.pg = pg
        self.method, self.params = pg_index(index, self.n)
        self.source_db = self.name.replace("-", "_")
        self.dump = work / f"{self.name}.dump" if self.n <= dump_max_rows else None
        self.dump_sample: dict[str, Any] | None = None
        self.fingerprint: dict[str, Any] = {}

    def spec(self) -> str:
        params = ", ".join(f"{k} = {v}" for k, v in self.params.items())
        return f"{self.method} ({OPCLASS}) WITH ({params})"

    def _settle(self) -> None:
        settle()
        pg_settle(self.pg)  # CHECKPOINT: no sample pays for an earlier one's dirty buffers

    def _drop(self, db: str) -> None:
        with self.pg.connect() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{db}"')

    def _build(self, db: str) -> dict[str, Any]:
        """Load the rows by binary COPY, then build the index: loading it yourself from numpy."""
        self._drop(db)
        self.pg.create_database(db, vector=True)
        params = ", ".join(f"{k} = {v}" for k, v in self.params.items())

        def build() -> dict[str, float]:
            with self.pg.connect(db) as conn:
                t0 = time.perf_counter()
                data = copy_binary(self.x)
                conn.execute(f"CREATE TABLE {TABLE} (id bigint PRIMARY KEY, embedding vector({self.d}) NOT NULL)")
                with conn.cursor() as cur, cur.copy(f"COPY {TABLE} (id, embedding) FROM STDIN (FORMAT BINARY)") as cp:
                    for at in range(0, len(data), 8 << 20):
                        cp.write(data[at : at + (8 << 20)])
                t1 = time.perf_counter()
                for name, value in PG_BUILD_SETTINGS.items():
                    conn.execute(f"SET {name} = '{value}'")
                conn.execute(f"CREATE INDEX {TABLE}_embedding_idx ON {TABLE} USING {self.method} "
                             f"(embedding {OPCLASS}) WITH ({params})")
                return {"copy (and primary key)": round(t1 - t0, 6), "index": round(time.perf_counter() - t1, 6)}

        sample, phases = measured(build, self._settle)
        sample["phases"] = phases
        return sample

    def baseline(self, rep: int) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        db = self.source_db if rep == 0 else "rebuild_baseline"
        out["build"] = self._build(db)
        if rep == 0:
            with self.pg.connect(db) as conn:
                conn.execute(f"VACUUM (ANALYZE) {TABLE}")  # hint bits set: no later sample pays for them
            self.fingerprint = fingerprint(self.pg, db)
            out["build"]["rows"] = self.fingerprint["rows"]
            if self.dump is not None:
                self.dump_sample = self._pg_dump()
        else:
            self._drop(db)
        if self.dump is not None:
            out["pg_restore"] = self._pg_restore()
        return out

    def _pg_dump(self) -> dict[str, Any]:
        assert self.dump is not None
        self._settle()
        res = run_process([str(self.pg.bin / "pg_dump"), "-Fc", "-t", TABLE, "-f", str(self.dump),
                           *pg_args(self.pg, self.source_db)])
        if res["rc"] != 0:
            raise RuntimeError(f"pg_dump failed: {res['stderr'][-3000:]}")
        return {"seconds": round(res["seconds"], 6), "cpu_seconds_pg_dump_process": res["cpu_seconds"],
                "loadavg_1min": res["loadavg_1min"], "file_bytes": self.dump.stat().st_size}

    def _pg_restore(self) -> dict[str, Any]:
        assert self.dump is not None
        db = "rebuild_pg_restore"
        self._drop(db)
        self.pg.create_database(db, vector=True)  # as a user would: a -t dump does not carry the extension
        self._settle()
        lines: list[tuple[float, str]] = []
        options = " ".join(f"-c {name}={value}" for name, value in PG_BUILD_SETTINGS.items())
        res = run_process([str(self.pg.bin / "pg_restore"), "-v", *pg_args(self.pg, db), str(self.dump)], lines,
                          env={"PGOPTIONS": options})
        if res["rc"] != 0:
            raise RuntimeError(f"pg_restore failed: {res['stderr'][-3000:]}")
        check = fingerprint(self.pg, db)
        if not same_table(check, self.fingerprint):
            raise RuntimeError(f"pg_restore gave a different table: {check} vs {self.fingerprint}")
        self._drop(db)
        return {"seconds": round(res["seconds"], 6), "cpu_seconds_pg_restore_process": res["cpu_seconds"],
                "loadavg_1min": res["loadavg_1min"], "rows": check["rows"],
                "phases": restore_phases(lines, res["seconds"])}

    def extra(self) -> dict[str, Any]:
        return {"pg_dump": self.dump_sample} if self.dump_sample else {}

    def snapshot(self, repo: Any) -> Any:
        import vecdr

        return vecdr.snapshot(repo, self.pg.uri(TABLE, self.source_db), collection=self.name, quality_sample=0,
                              reporter=PhaseTimer())

    def restore(self, repo_url: str, options: dict[str, Any] | None) -> dict[str, Any]:
        from vecdr.backends.registry import open_target

        db = "rebuild_vecdr"
        self._drop(db)
        self.pg.create_database(db, vector=True)  # the same empty database pg_restore gets
        sample, _ = self._restore(repo_url, options, open_target(self.pg.uri(TABLE, db)), self._settle)
        check = fingerprint(self.pg, db)
        if not same_table(check, self.fingerprint):
            raise RuntimeError(f"vecdr restore gave a different table: {check} vs {self.fingerprint}")
        sample["target_rows"] = check["rows"]
        sample["indexes"] = check["indexes"]
        self._drop(db)
        return sample

    def close(self) -> None:
        self._drop(self.source_db)
        if self.dump is not None:
            self.dump.unlink(missing_ok=True)


class MilvusCase(Case):
    backend = "milvus"

    def __init__(self, index: str, x: np.ndarray, work: Path, milvus: Any) -> None:
        super().__init__(index, x, work)
        self.milvus = milvus
        self.client = milvus.client()
        self.index_type, self.params = milvus_index(index, self.n, self.d)
        self.source = self.name.replace("-", "_")

    def spec(self) -> str:
        return f"{self.index_type} {self.params} L2" if self.params else f"{self.index_type} L2"

    def _count(self, name: str) -> int:
        return int(self.client.query(name, output_fields=["count(*)"], consistency_level="Strong")[0]["count(*)"])

    def _naive(self, name: str) -> dict[str, Any]:
        """What a hand-written restore does: .tolist() rows, 1,000 per insert, flush, index, load."""
        ids = np.arange(self.n, dtype=np.int64)

        def rebuild() -> dict[str, float]:
            t0 = time.perf_counter()
            _create(self.client, name, self.d, index=False)
            for at in range(0, self.n, NAIVE_BATCH):
                end = at + NAIVE_BATCH
                rows = [{"id": i, "vector": v} for i, v in zip(ids[at:end].tolist(), self.x[at:end].tolist(),
                                                               strict=True)]
                self.client.insert(name, rows)
            self.client.flush(name)
            t1 = time.perf_counter()
            params = self.client.prepare_index_params()
            # Nested under "params": the form Milvus Lite reads (see benchmarks/milvus.py).
            params.add_index("vector", index_type=self.index_type, metric_type="L2", params={"params": self.params})
            self.client.create_index(name, params)
            self.client.load_collection(name)
            return {"rows (insert, flush)": round(t1 - t0, 6), "index and load": round(time.perf_counter() - t1, 6)}

        self._drop(name)
        sample, phases = measured(rebuild)
        sample["phases"] = phases
        sample["rows"] = self._count(name)
        return sample

    def _drop(self, name: str) -> None:
        if self.client.has_collection(name):
            self.client.drop_collection(name)

    def baseline(self, rep: int) -> dict[str, dict[str, Any]]:
        name = self.source if rep == 0 else "rebuild_naive"
        sample = self._naive(name)
        if rep:
            self._drop(name)
        return {"build": sample}

    def snapshot(self, repo: Any) -> Any:
        import vecdr

        with warnings.catch_warnings():
            # A served Milvus Lite cannot pin a read timestamp: vecdr warns that concurrent writes may or may
            # not be in the snapshot. Nothing writes during the benchmark.
            warnings.simplefilter("ignore", UserWarning)
            return vecdr.snapshot(repo, self.milvus.uri(self.source), collection=self.name, quality_sample=0,
                                  reporter=PhaseTimer())

    def restore(self, repo_url: str, options: dict[str, Any] | None) -> dict[str, Any]:
        from vecdr.backends.registry import open_target

        name = "rebuild_vecdr"
        self._drop(name)
        sample, _ = self._restore(repo_url, options, open_target(self.milvus.uri(name)))
        sample["target_rows"] = self._count(name)
        described = self.client.describe_index(name, "vector")
        sample["index"] = {k: described.get(k) for k in ("index_type", "metric_type", "params")}
        self._drop(name)
        return sample

    def close(self) -> None:
        self._drop(self.source)
        self.client.close()


def milvus_supports(milvus: Any, index: str, d: int) -> str | None:
    """None if this Milvus builds ``index``, else why not (Milvus Lite lacks some index types)."""
    from milvus import _create

    client = milvus.client()
    name = "rebuild_probe"
    rows = 512
    index_type, params = milvus_index(index, rows, d)
    x = make_vectors(np.random.default_rng(1), rows, d)
    try:
        if client.has_collection(name):
            client.drop_collection(name)
        _create(client, name, d, index=False)
        client.insert(name, [{"id": i, "vector": v} for i, v in enumerate(x.tolist())])
        client.flush(name)
        spec = client.prepare_index_params()
        spec.add_index("vector", index_type=index_type, metric_type="L2", params={"params": params})
        client.create_index(name, spec)
        client.load_collection(name)
        return None
    except Exception as exc:  # noqa: BLE001  (any refusal means: not supported here)
        message = str(getattr(exc, "message", "") or exc).strip()
        return f"{index_type}: {message.splitlines()[0] if message else type(exc).__name__}"
    finally:
        if client.has_collection(name):
            client.drop_collection(name)
        client.close()
