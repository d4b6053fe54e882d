#!/usr/bin/env python
"""vecdr core benchmarks: snapshot size and time, incrementals, restores, read throughput.

Every target is a ratio against a baseline measured in the same run, on the same
disk, with the same data, because the machines this runs on are shared and noisy.

    .venv/bin/python benchmarks/run.py                      # 200k x 768, about 15-20 min
    .venv/bin/python benchmarks/run.py --quick              # 20k x 128 smoke test, < 1 min
    .venv/bin/python benchmarks/run.py --only full,read     # some cases only
    .venv/bin/python benchmarks/run.py --hnsw-rows 50000    # smaller HNSW32 case

Cases (``--only`` names): full, incremental, rebuild, native, ivfpq, read.
See benchmarks/README.md for what each figure means.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

CASES = ("full", "incremental", "rebuild", "native", "ivfpq", "read")
#: Cases that need the full-snapshot repositories (and their timings) of ``full``.
NEEDS_FULL = {"incremental", "read"}

#: figure name -> (comparison, threshold, what it is)
TARGETS: dict[str, tuple[str, float, str]] = {
    "full_snapshot_size_ratio": (
        "<=", 0.87, "full snapshot bytes_written / raw vector bytes (n*d*4)"),
    "full_snapshot_time_ratio": (
        "<=", 4.0, "full snapshot seconds / (faiss.write_index + fsync) seconds"),
    "tracked_incremental_bytes_ratio": (
        "<=", 0.02, "tracked incremental bytes_written / full snapshot bytes_written"),
    "diff_incremental_bytes_ratio": (
        "<=", 0.02, "diff incremental bytes_written / full snapshot bytes_written"),
    "tracked_incremental_time_ratio": (
        "<=", 0.05, "tracked incremental seconds / full snapshot seconds"),
    "diff_incremental_time_ratio": (
        "<=", 0.40, "diff incremental seconds / full snapshot seconds"),
    "hnsw_rebuild_time_ratio": (
        "<=", 1.15, "restore_index into HNSW32 from embeddings / bare HNSW32 index.add"),
    "native_restore_time_ratio": (
        "<=", 2.0, "restore_index from the native blob / faiss.read_index of a local copy"),
    "ivfpq_restore_speedup": (
        ">=", 10.0, "(train + add) seconds / restore_index with kept trained state seconds"),
    "read_throughput_gbps": (
        ">=", 0.8, "iter_live over every segment, raw vector GB per second (warm page cache)"),
}


# -- helpers ----------------------------------------------------------------------


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def settle() -> None:
    """Start every timed sample from the same state: no dirty pages, no garbage."""
    gc.collect()
    os.sync()


def drop_cache(root: Path) -> int:
    """Ask the kernel to drop ``root``'s (clean) pages from the page cache: a cold-ish read."""
    dropped = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(os.path.join(dirpath, name), os.O_RDONLY)
            try:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                dropped += 1
            finally:
                os.close(fd)
    return dropped


def dir_bytes(root: Path) -> int:
    return sum(f.stat().st_size for f in root.rglob("*") if f.is_file())


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def stats(samples: list[float], cpu: list[float] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "samples": [round(s, 6) for s in samples],
        "best": round(min(samples), 6),
        "median": round(statistics.median(samples), 6),
    }
    if cpu:
        out["cpu_samples"] = [round(s, 6) for s in cpu]
    return out


class PhaseTimer:
    """A vecdr progress reporter that records how long each reported phase took."""

    def __init__(self) -> None:
        self.phases: dict[str, float] = {}
        self.warnings: list[str] = []
        self._current: tuple[str, float] | None = None

    def start(self, phase: str, total: int | None = None, unit: str = "rows") -> None:
        self._current = (phase, time.perf_counter())

    def advance(self, amount: int = 1) -> None:
        pass

    def finish(self) -> None:
        if self._current is not None:
            phase, t0 = self._current
            self.phases[phase] = round(self.phases.get(phase, 0.0) + time.perf_counter() - t0, 6)
            self._current = None

    def warn(self, message: str) -> None:
        self.warnings.append(message)


class Bench:
    """Shared state of one run: arguments, data, work folder, results."""

    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.results: dict[str, Any] = {}
        self.figures: dict[str, dict[str, Any]] = {}
        self.profiled = args.profile is not None
        if self.profiled:
            Path(args.profile).mkdir(parents=True, exist_ok=True)

    def timed(self, label: str, fn: Callable[[], Any]) -> tuple[float, Any]:
        """Run ``fn`` once and return (wall seconds, result); under cProfile with --profile.

        The process CPU seconds (user + system, all threads) of the call are left in
        :attr:`cpu`: unlike wall time they barely move when another process competes
        for the cores, so they tell contention from extra work.
        """
        settle()
        c0 = cpu_seconds()
        if self.profiled and label:
            prof = cProfile.Profile()
            t0 = time.perf_counter()
            result = prof.runcall(fn)
            seconds = time.perf_counter() - t0
            self.cpu = cpu_seconds() - c0
            prof.dump_stats(str(Path(self.args.profile) / f"{label}.prof"))
            return seconds, result
        t0 = time.perf_counter()
        result = fn()
        seconds = time.perf_counter() - t0
        self.cpu = cpu_seconds() - c0
        return seconds, result

    def figure(self, name: str, value: float, basis: str, **extra: Any) -> None:
        record_figure(self.figures, TARGETS, name, value, basis, **extra)


def record_figure(
    figures: dict[str, Any],
    targets: dict[str, tuple[str, float, str]],
    name: str,
    value: float,
    basis: str,
    **extra: Any,
) -> None:
    """Judge ``value`` against ``targets[name]`` (op, threshold, meaning) and record it in ``figures``."""
    op, threshold, meaning = targets[name]
    ok = value <= threshold if op == "<=" else value >= threshold
    figures[name] = {
        "value": round(value, 6),
        "target": f"{op} {threshold}",
        "pass": bool(ok),
        "meaning": meaning,
        "basis": basis,
        **extra,
    }
    log(f"{name} = {value:.4f} (target {op} {threshold}): {'PASS' if ok else 'MISS'}")


def recall_at_10(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the true top-10 ids found, over all queries."""
    return sum(len(set(f) & set(t)) for f, t in zip(found.tolist(), truth.tolist(), strict=True)) / truth.size


def make_vectors(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def make_changes(n: int, d: int, fraction: float, seed: int) -> dict[str, np.ndarray]:
    """``fraction`` of n rows changed: a third updated, a third inserted, a third deleted."""
    rng = np.random.default_rng(seed + 1)
    total = max(3, round(n * fraction))
    updates = deletes = total // 3
    inserts = total - updates - deletes
    picked = rng.choice(n, size=updates + deletes, replace=False)
    return {
        "update_ids": np.sort(picked[:updates]).astype(np.int64),
        "update_vectors": make_vectors(rng, updates, d),
        "insert_ids": np.arange(n, n + inserts, dtype=np.int64),
        "insert_vectors": make_vectors(rng, inserts, d),
        "delete_ids": np.sort(picked[updates:]).astype(np.int64),
    }


def apply_changes_plain(index: Any, ch: dict[str, np.ndarray]) -> None:
    """Change an IndexIDMap2 directly (no journal): overwrite, insert, delete."""
    index.remove_ids(ch["update_ids"])
    index.add_with_ids(ch["update_vectors"], ch["update_ids"])
    index.add_with_ids(ch["insert_vectors"], ch["insert_ids"])
    index.remove_ids(ch["delete_ids"])


def apply_changes_tracked(tracked: Any, ch: dict[str, np.ndarray]) -> None:
    """The same changes through ``vecdr.faiss.TrackedIndex`` (journaled)."""
    tracked.upsert(ch["update_vectors"], ch["update_ids"])
    tracked.add_with_ids(ch["insert_vectors"], ch["insert_ids"])
    tracked.remove_ids(ch["delete_ids"])


def new_bytes(repo: Any, before: Any, after: Any) -> dict[str, int]:
    """Bytes of the objects ``after`` references that ``before`` did not, by kind."""
    old = {e.object.key for e in before.segments}
    old |= {e.deletions.key for e in before.segments if e.deletions}
    old |= {r.key for r in before.artifacts.values()}
    old |= {e.hashes.key for e in before.segments if getattr(e, "hashes", None)}
    out = {"segments": 0, "row_hash_sidecars": 0, "deletion_vectors": 0}
    for ref in {e.deletions.key: e.deletions.object for e in after.segments if e.deletions}.values():
        if ref.key not in old:
            out["deletion_vectors"] += ref.size
    for e in after.segments:
        if e.object.key not in old:
            out["segments"] += e.object.size
        hashes = getattr(e, "hashes", None)
        if hashes is not None and hashes.key not in old:
            out["row_hash_sidecars"] += hashes.size
    for name, ref in after.artifacts.items():
        if ref.key not in old:
            out[f"artifact:{name}"] = out.get(f"artifact:{name}", 0) + ref.size
    return out


def machine_info() -> dict[str, Any]:
    import faiss
    import pyarrow as pa

    import vecdr

    info: dict[str, Any] = {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pyarrow": pa.__version__,
        "faiss": faiss.__version__,
        "faiss_omp_threads": faiss.omp_get_max_threads(),
        "pyarrow_cpu_threads": pa.cpu_count(),
        "pyarrow_io_threads": pa.io_thread_count(),
        "vecdr_path": os.path.dirname(vecdr.__file__),
    }
    try:
        from importlib.metadata import version

        info["vecdr"] = version("vecdr")
    except Exception:  # noqa: BLE001
        pass
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    info["cpu_model"] = line.split(":", 1)[1].strip()
                    break
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal"):
                    info["mem_total_gib"] = round(int(line.split()[1]) / 2**20, 1)
                    break
    except OSError:
        pass
    try:
        info["git_commit"] = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], cwd=ROOT, capture_output=True,
            text=True, check=True,
        ).stdout.splitlines()
        info["src_uncommitted_changes"] = [line.strip() for line in dirty]
    except (OSError, subprocess.CalledProcessError):
        pass
    return info


# -- cases ------------------------------------------------------------------------


def case_full(b: Bench, x: np.ndarray, source: Any) -> dict[str, Any]:
    """Items 1 and 2: full snapshot size and time vs faiss.write_index + fsync."""
    import faiss

    import vecdr

    n, d = x.shape
    raw = n * d * 4
    base_t: list[float] = []
    base_cpu: list[float] = []
    base_size = 0
    snap_t: list[float] = []
    snap_cpu: list[float] = []
    snaps: list[dict[str, Any]] = []
    repos: list[Path] = []
    for rep in range(b.args.repeats):

        def baseline(rep: int = rep) -> None:
            nonlocal base_size
            path = b.work / f"baseline-{rep}.faiss"

            def write() -> None:
                faiss.write_index(source, str(path))
                fsync_path(path)
                fsync_path(path.parent)

            seconds, _ = b.timed("", write)
            base_t.append(seconds)
            base_cpu.append(b.cpu)
            base_size = path.stat().st_size
            path.unlink()

        def vecdr_full(rep: int = rep) -> None:
            root = b.work / f"full-{rep}"
            repo = vecdr.init(root)
            timer = PhaseTimer()
            seconds, res = b.timed(
                f"full_snapshot_{rep}",
                lambda: vecdr.snapshot(repo, source, collection="bench", reporter=timer),
            )
            if res.mode != "full" or res.rows != n:
                raise AssertionError(f"unexpected full snapshot result {res}")
            manifest = vecdr.engines.open_snapshot(repo, res.snapshot)
            snap_t.append(seconds)
            snap_cpu.append(b.cpu)
            snaps.append({
                "seconds": round(seconds, 6),
                "cpu_seconds": round(b.cpu, 6),
                "engine_seconds": res.seconds,
                "bytes_written": res.bytes_written,
                "segments": len(manifest.segments),
                "segment_bytes": sum(e.object.size for e in manifest.segments),
                "row_hash_sidecar_bytes": sum(
                    e.hashes.size for e in manifest.segments if getattr(e, "hashes", None)),
                "artifact_bytes": {k: r.size for k, r in manifest.artifacts.items()},
                "repository_bytes_on_disk": dir_bytes(root),
                "phases": {**timer.phases,
                           "after_scan (finish, manifest, commit)": round(
                               seconds - sum(timer.phases.values()), 6)},
                "warnings": timer.warnings,
            })
            repos.append(root)

        # Alternate the order so drift on a shared machine does not favour either side.
        for step in ((baseline, vecdr_full) if rep % 2 == 0 else (vecdr_full, baseline)):
            step()
        log(f"full rep {rep}: write_index+fsync {base_t[-1]:.3f}s, "
            f"vecdr snapshot {snap_t[-1]:.3f}s ({snaps[-1]['bytes_written'] / raw:.3f} of raw)")

    full_bytes = snaps[0]["bytes_written"]
    b.figure("full_snapshot_size_ratio", full_bytes / raw,
             f"{full_bytes} bytes_written / {raw} raw bytes ({n} x {d} float32)",
             segments_only_ratio=round(snaps[0]["segment_bytes"] / raw, 6))
    b.figure("full_snapshot_time_ratio", min(snap_t) / min(base_t),
             f"best of {len(snap_t)}: {min(snap_t):.3f}s vecdr.snapshot / "
             f"{min(base_t):.3f}s faiss.write_index+fsync",
             median_ratio=round(statistics.median(snap_t) / statistics.median(base_t), 6),
             vecdr_cpu_seconds_best_sample=round(snap_cpu[snap_t.index(min(snap_t))], 3))
    return {
        "source_index": "IndexIDMap2(IndexFlatL2)",
        "raw_vector_bytes": raw,
        "baseline_write_index_fsync": {**stats(base_t, base_cpu), "file_bytes": base_size},
        "vecdr_full_snapshot": {**stats(snap_t, snap_cpu), "runs": snaps},
        "_repos": repos,
    }


def case_incremental(b: Bench, x: np.ndarray, source: Any, full: dict[str, Any]) -> dict[str, Any]:
    """Item 3: 1% changed rows, tracked (journal) and diff (rescan) incrementals."""
    import faiss

    import vecdr
    from vecdr.faiss import TrackedIndex

    n, d = x.shape
    ch = make_changes(n, d, b.args.change_fraction, b.args.seed)
    expect_rows = n + len(ch["insert_ids"]) - len(ch["delete_ids"])
    full_best = full["vecdr_full_snapshot"]["best"]
    full_median = full["vecdr_full_snapshot"]["median"]
    full_bytes = full["vecdr_full_snapshot"]["runs"][0]["bytes_written"]

    tracked_t: list[float] = []
    tracked_runs: list[dict[str, Any]] = []
    diff_t: list[float] = []
    diff_runs: list[dict[str, Any]] = []
    tracked_full_t: list[float] = []
    for rep in range(b.args.repeats):
        # Tracked: a fresh repository, a full snapshot through the wrapper, the changes
        # through the wrapper, then the timed incremental.
        root = b.work / f"tracked-{rep}"
        repo = vecdr.init(root)
        tracked = TrackedIndex(faiss.clone_index(source), b.work / f"tracked-{rep}.journal")
        seconds, first = b.timed("", partial(vecdr.snapshot, repo, tracked, collection="bench"))
        tracked_full_t.append(seconds)
        t0 = time.perf_counter()
        apply_changes_tracked(tracked, ch)
        apply_seconds = time.perf_counter() - t0
        timer = PhaseTimer()
        seconds, res = b.timed(
            f"tracked_incremental_{rep}",
            partial(vecdr.snapshot, repo, tracked, collection="bench", reporter=timer),
        )
        if res.mode != "tracked" or res.rows != expect_rows:
            raise AssertionError(f"expected a tracked snapshot of {expect_rows} rows, got {res}")
        m0 = vecdr.engines.open_snapshot(repo, first.snapshot)
        m1 = vecdr.engines.open_snapshot(repo, res.snapshot)
        tracked_t.append(seconds)
        tracked_runs.append({
            "seconds": round(seconds, 6), "cpu_seconds": round(b.cpu, 6),
            "engine_seconds": res.seconds,
            "bytes_written": res.bytes_written, "added": res.added, "changed": res.changed,
            "deleted": res.deleted, "new_object_bytes": new_bytes(repo, m0, m1),
            "phases": timer.phases, "warnings": timer.warnings,
            "apply_changes_through_wrapper_seconds": round(apply_seconds, 6),
        })
        del tracked
        shutil.rmtree(root)
        shutil.rmtree(b.work / f"tracked-{rep}.journal")

        # Diff: the index changed directly (no journal), snapshotted again on top of the
        # full snapshot measured in `full`.
        root = full["_repos"][rep]
        repo = vecdr.open_repository(root)
        changed = faiss.clone_index(source)
        apply_changes_plain(changed, ch)
        before = repo.commits()[-1]
        timer = PhaseTimer()
        seconds, res = b.timed(
            f"diff_incremental_{rep}",
            partial(vecdr.snapshot, repo, changed, collection="bench", reporter=timer),
        )
        if res.mode != "diff" or res.rows != expect_rows:
            raise AssertionError(f"expected a diff snapshot of {expect_rows} rows, got {res}")
        m0 = vecdr.engines.open_snapshot(repo, before.snapshot)
        m1 = vecdr.engines.open_snapshot(repo, res.snapshot)
        diff_t.append(seconds)
        diff_runs.append({
            "seconds": round(seconds, 6), "cpu_seconds": round(b.cpu, 6),
            "engine_seconds": res.seconds,
            "bytes_written": res.bytes_written, "added": res.added, "changed": res.changed,
            "deleted": res.deleted, "new_object_bytes": new_bytes(repo, m0, m1),
            "phases": timer.phases, "warnings": timer.warnings,
        })
        del changed
        log(f"incremental rep {rep}: tracked {tracked_t[-1]:.3f}s "
            f"{tracked_runs[-1]['bytes_written']} B, diff {diff_t[-1]:.3f}s "
            f"{diff_runs[-1]['bytes_written']} B")

    b.figure("tracked_incremental_bytes_ratio", tracked_runs[0]["bytes_written"] / full_bytes,
             f"{tracked_runs[0]['bytes_written']} / {full_bytes} bytes")
    b.figure("diff_incremental_bytes_ratio", diff_runs[0]["bytes_written"] / full_bytes,
             f"{diff_runs[0]['bytes_written']} / {full_bytes} bytes")
    b.figure("tracked_incremental_time_ratio", min(tracked_t) / full_best,
             f"best of {len(tracked_t)}: {min(tracked_t):.3f}s / {full_best:.3f}s full snapshot",
             median_ratio=round(statistics.median(tracked_t) / full_median, 6))
    b.figure("diff_incremental_time_ratio", min(diff_t) / full_best,
             f"best of {len(diff_t)}: {min(diff_t):.3f}s / {full_best:.3f}s full snapshot",
             median_ratio=round(statistics.median(diff_t) / full_median, 6))
    return {
        "changes": {"fraction": b.args.change_fraction,
                    "updated": len(ch["update_ids"]), "inserted": len(ch["insert_ids"]),
                    "deleted": len(ch["delete_ids"])},
        "tracked": {"source_index": "TrackedIndex(IndexIDMap2(IndexFlatL2))",
                    **stats(tracked_t), "runs": tracked_runs,
                    "full_snapshot_through_wrapper": stats(tracked_full_t)},
        "diff": {"source_index": "IndexIDMap2(IndexFlatL2), changed without a journal",
                 **stats(diff_t), "runs": diff_runs},
    }


def case_hnsw(b: Bench, x: np.ndarray, do_rebuild: bool, do_native: bool) -> dict[str, Any]:
    """Item 4: restore into HNSW32 from embeddings, and from the native blob."""
    import faiss

    import vecdr

    rows = min(b.args.hnsw_rows or len(x), len(x))
    xh = x[:rows]
    d = x.shape[1]
    out: dict[str, Any] = {"rows": rows, "full_rows": len(x), "dimension": d,
                           "factory": "HNSW32", "faiss_omp_threads": faiss.omp_get_max_threads()}
    root = b.work / "hnsw"
    repo = vecdr.init(root)
    state: dict[str, Any] = {}

    # Baseline: a bare add of every row, in one call, into a fresh HNSW32. The first
    # index built is also the source the snapshots are taken from.
    add_t: list[float] = []
    add_cpu: list[float] = []

    def bare_add(rep: int) -> None:
        fresh = faiss.index_factory(d, "HNSW32")
        seconds, _ = b.timed("", lambda: fresh.add(xh))
        add_t.append(seconds)
        add_cpu.append(b.cpu)
        log(f"hnsw rep {rep}: bare HNSW32 add of {rows} rows {seconds:.2f}s (cpu {b.cpu:.1f}s)")
        if "source" in state:
            return
        state["source"] = fresh
        t0 = time.perf_counter()
        state["plain"] = vecdr.snapshot(repo, fresh, collection="hnsw")
        out["snapshot_seconds"] = round(time.perf_counter() - t0, 6)
        t0 = time.perf_counter()
        state["with_blob"] = vecdr.snapshot(repo, fresh, collection="hnsw", with_index=True)
        out["snapshot_with_index_seconds"] = round(time.perf_counter() - t0, 6)
        out["native_blob_bytes"] = vecdr.engines.open_snapshot(
            repo, state["with_blob"].snapshot).artifacts["native_index"].size

    rebuild_t: list[float] = []
    rebuild_runs: list[dict[str, Any]] = []

    def rebuild(rep: int) -> None:
        timer = PhaseTimer()
        seconds, restored = b.timed(
            f"hnsw_rebuild_{rep}",
            lambda: vecdr.restore_index(repo, state["plain"].snapshot, reporter=timer))
        inner = faiss.downcast_index(restored)
        ok = (restored.ntotal == rows and isinstance(inner, faiss.IndexHNSW)
              and np.array_equal(restored.reconstruct_n(0, rows), xh))
        if not ok:
            raise AssertionError("HNSW restore from embeddings did not give back the vectors")
        rebuild_t.append(seconds)
        rebuild_runs.append({
            "seconds": round(seconds, 6), "cpu_seconds": round(b.cpu, 6),
            "index": type(inner).__name__, "efConstruction": int(inner.hnsw.efConstruction),
            "phases": {**timer.phases, "after_stream (build, publish)": round(
                seconds - sum(timer.phases.values()), 6)},
            "warnings": timer.warnings,
        })
        log(f"hnsw rep {rep}: vecdr.restore_index (rebuild) {seconds:.2f}s (cpu {b.cpu:.1f}s)")

    bare_add(0)
    if do_rebuild:
        rebuild(0)
        # Later samples alternate (A B, B A, A B, ...) so drift favours neither side.
        for rep in range(1, b.args.hnsw_repeats):
            for step in ((rebuild, bare_add) if rep % 2 else (bare_add, rebuild)):
                step(rep)
                gc.collect()
    out["bare_add"] = stats(add_t, add_cpu)
    if do_rebuild:
        out["rebuild"] = {**stats(rebuild_t), "runs": rebuild_runs}
        b.figure("hnsw_rebuild_time_ratio", min(rebuild_t) / min(add_t),
                 f"best of {len(rebuild_t)}: {min(rebuild_t):.2f}s restore_index / best of "
                 f"{len(add_t)} {min(add_t):.2f}s HNSW32.add, {rows} x {d}",
                 rows=rows, full_rows=len(x),
                 median_ratio=round(statistics.median(rebuild_t) / statistics.median(add_t), 6),
                 cpu_ratio_of_medians=round(
                     statistics.median(r["cpu_seconds"] for r in rebuild_runs)
                     / statistics.median(add_cpu), 6))

    if do_native:
        copy = b.work / "hnsw-local-copy.faiss"
        faiss.write_index(state["source"], str(copy))
        fsync_path(copy)
        read_t: list[float] = []
        read_cpu: list[float] = []
        native_t: list[float] = []
        native_cpu: list[float] = []
        for rep in range(b.args.repeats):

            def read_local() -> None:
                seconds, idx = b.timed("", lambda: faiss.read_index(str(copy)))
                assert idx.ntotal == rows
                read_t.append(seconds)
                read_cpu.append(b.cpu)

            def native(rep: int = rep) -> None:
                seconds, idx = b.timed(
                    f"native_restore_{rep}",
                    lambda: vecdr.restore_index(repo, state["with_blob"].snapshot))
                if idx.ntotal != rows or not isinstance(faiss.downcast_index(idx), faiss.IndexHNSW):
                    raise AssertionError("native restore did not return the HNSW index")
                native_t.append(seconds)
                native_cpu.append(b.cpu)

            for step in ((read_local, native) if rep % 2 == 0 else (native, read_local)):
                step()
                gc.collect()
            log(f"native rep {rep}: faiss.read_index {read_t[-1]:.3f}s, "
                f"vecdr.restore_index {native_t[-1]:.3f}s")
        out["native"] = {
            "index_file_bytes": copy.stat().st_size,
            "faiss_read_index": stats(read_t, read_cpu),
            "vecdr_restore_index": stats(native_t, native_cpu),
        }
        b.figure("native_restore_time_ratio", min(native_t) / min(read_t),
                 f"best of {len(native_t)}: {min(native_t):.3f}s restore_index / "
                 f"{min(read_t):.3f}s faiss.read_index (warm page cache), HNSW32 {rows} x {d}",
                 median_ratio=round(statistics.median(native_t) / statistics.median(read_t), 6),
                 rows=rows)
        copy.unlink()
    state.clear()
    shutil.rmtree(root)
    return out


def case_ivfpq(b: Bench, x: np.ndarray) -> dict[str, Any]:
    """Item 5: IVF-PQ restore with the kept trained state vs train + add."""
    import faiss

    import vecdr

    n, d = x.shape
    factory = b.args.ivf_factory
    index = faiss.index_factory(d, factory)
    train_s, _ = b.timed("", lambda: index.train(x))
    train_cpu = b.cpu
    add_s, _ = b.timed("", lambda: index.add(x))
    add_cpu = b.cpu
    log(f"ivfpq: {factory} train {train_s:.2f}s, add {add_s:.2f}s")
    root = b.work / "ivfpq"
    repo = vecdr.init(root)
    t0 = time.perf_counter()
    snap = vecdr.snapshot(repo, index, collection="ivfpq", embeddings=x)
    snapshot_s = time.perf_counter() - t0
    manifest = vecdr.engines.open_snapshot(repo, snap.snapshot)
    if "trained" not in manifest.artifacts:
        raise AssertionError("the IVF-PQ snapshot kept no trained state")
    restore_t: list[float] = []
    restore_cpu: list[float] = []
    identical = None
    queries = x[:: max(1, n // 200)][:200]
    for rep in range(b.args.repeats):
        seconds, restored = b.timed(f"ivfpq_restore_{rep}", lambda: vecdr.restore_index(repo))
        if restored.ntotal != n:
            raise AssertionError(f"IVF-PQ restore gave {restored.ntotal} rows, expected {n}")
        restore_t.append(seconds)
        restore_cpu.append(b.cpu)
        if identical is None:
            nprobe = 16
            faiss.extract_index_ivf(restored).nprobe = nprobe
            faiss.extract_index_ivf(index).nprobe = nprobe
            d1, i1 = restored.search(queries, 10)
            d0, i0 = index.search(queries, 10)
            identical = bool(np.array_equal(i0, i1) and np.array_equal(d0, d1))
        del restored
        log(f"ivfpq rep {rep}: vecdr.restore_index {seconds:.2f}s")
    baseline = train_s + add_s
    b.figure("ivfpq_restore_speedup", baseline / min(restore_t),
             f"({train_s:.2f}s train + {add_s:.2f}s add) / best of {len(restore_t)} "
             f"{min(restore_t):.2f}s restore_index, {factory}, {n} x {d}",
             median_speedup=round(baseline / statistics.median(restore_t), 6),
             cpu_speedup=round((train_cpu + add_cpu) / min(restore_cpu), 6))
    shutil.rmtree(root)
    return {
        "factory": factory,
        "train_seconds": round(train_s, 6),
        "train_cpu_seconds": round(train_cpu, 6),
        "add_seconds": round(add_s, 6),
        "add_cpu_seconds": round(add_cpu, 6),
        "snapshot_seconds": round(snapshot_s, 6),
        "trained_artifact_bytes": manifest.artifacts["trained"].size,
        "restore": stats(restore_t, restore_cpu),
        "search_results_identical_to_source": identical,
    }


def case_read(b: Bench, x: np.ndarray, full: dict[str, Any]) -> dict[str, Any]:
    """Item 6: read + decode throughput of a full snapshot through iter_live."""
    import pyarrow as pa

    import vecdr
    from vecdr.engines.segments import iter_live
    from vecdr.format.hashing import sha256_hex
    from vecdr.format.segment import decode_segment

    n, d = x.shape
    root = full["_repos"][-1]
    repo = vecdr.open_repository(root)
    manifest = vecdr.engines.open_snapshot(repo, repo.commits()[0].snapshot)
    raw = manifest.rows * d * 4
    stored = sum(e.object.size for e in manifest.segments)

    def read_all() -> int:
        rows = 0
        for table in iter_live(repo, manifest):
            rows += len(table.column("vector"))
        return rows

    read_all()  # warm the page cache
    warm: list[float] = []
    warm_cpu: list[float] = []
    for rep in range(b.args.repeats):
        seconds, rows = b.timed(f"read_warm_{rep}", read_all)
        assert rows == manifest.rows
        warm.append(seconds)
        warm_cpu.append(b.cpu)
    cold: list[float] = []
    if hasattr(os, "posix_fadvise"):
        for _rep in range(min(2, b.args.repeats)):
            drop_cache(root / "segments")
            seconds, rows = b.timed("", read_all)
            cold.append(seconds)
    best = min(warm)
    log(f"read: warm best {best:.3f}s = {raw / best / 1e9:.2f} GB/s raw")
    b.figure("read_throughput_gbps", raw / best / 1e9,
             f"{raw} raw vector bytes / best of {len(warm)} {best:.3f}s (warm page cache)",
             median_gbps=round(raw / statistics.median(warm) / 1e9, 6))

    # Where the time goes, single-threaded, on bytes already in memory.
    blobs = [repo.store.read(e.object.key) for e in manifest.segments]
    t0 = time.perf_counter()
    for blob in blobs:
        sha256_hex(blob)
    sha_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for blob in blobs:
        decode_segment(blob)
    decode_s = time.perf_counter() - t0
    return {
        "segments": len(manifest.segments),
        "rows": manifest.rows,
        "raw_vector_bytes": raw,
        "stored_segment_bytes": stored,
        "workers": "iter_live default",
        "warm": {**stats(warm, warm_cpu), "raw_gbps_best": round(raw / best / 1e9, 4)},
        "cold_ish": ({**stats(cold), "raw_gbps_best": round(raw / min(cold) / 1e9, 4),
                      "how": "fsync + posix_fadvise(DONTNEED) on every segment file first"}
                     if cold else None),
        "components_in_memory": {
            "sha256_seconds": round(sha_s, 6),
            "sha256_gbps_of_stored": round(stored / sha_s / 1e9, 4),
            "decode_segment_seconds": round(decode_s, 6),
            "decode_raw_gbps": round(raw / decode_s / 1e9, 4),
            "pyarrow_threads": pa.cpu_count(),
        },
    }


# -- driver -------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=None, help="vectors (default 200000; --quick 20000)")
    p.add_argument("--dim", type=int, default=None, help="dimension (default 768; --quick 128)")
    p.add_argument("--seed", type=int, default=0, help="numpy default_rng seed (default 0)")
    p.add_argument("--quick", action="store_true", help="small smoke test (20k x 128)")
    p.add_argument("--only", default=None,
                   help=f"comma-separated cases among {', '.join(CASES)} (default: all)")
    p.add_argument("--out", default=None,
                   help="results JSON (default benchmarks/results/core.json; "
                        "--quick: benchmarks/results/quick.json)")
    p.add_argument("--repeats", type=int, default=3, help="samples per cheap measurement (3)")
    p.add_argument("--hnsw-rows", type=int, default=None,
                   help="rows for the HNSW32 cases (default: all rows)")
    p.add_argument("--hnsw-repeats", type=int, default=2,
                   help="samples of bare add and of rebuild restore for HNSW32, taken in "
                        "A B B A order (default 2)")
    p.add_argument("--ivf-factory", default=None,
                   help="IVF-PQ factory (default IVF1024,PQ32; --quick IVF128,PQ16)")
    p.add_argument("--change-fraction", type=float, default=0.01,
                   help="fraction of rows changed for the incrementals (0.01)")
    p.add_argument("--workdir", default=None,
                   help="folder for the temp repositories and baseline files (default: $TMPDIR)")
    p.add_argument("--keep", action="store_true", help="keep the temp folder")
    p.add_argument("--profile", default=None, metavar="DIR",
                   help="run every timed vecdr call under cProfile and dump DIR/<label>.prof "
                        "(timings are then inflated and flagged as such)")
    args = p.parse_args(argv)
    args.rows = args.rows or (20_000 if args.quick else 200_000)
    args.dim = args.dim or (128 if args.quick else 768)
    args.ivf_factory = args.ivf_factory or ("IVF128,PQ16" if args.quick else "IVF1024,PQ32")
    default_out = "quick.json" if args.quick else "core.json"
    args.out = Path(args.out or HERE / "results" / default_out)
    only = CASES if args.only is None else tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in CASES]
    if unknown:
        p.error(f"unknown case(s) {', '.join(unknown)}; choose among {', '.join(CASES)}")
    args.cases = [c for c in CASES if c in only or (c == "full" and NEEDS_FULL & set(only))]
    return args


def print_figures(figures: dict[str, Any]) -> None:
    """The figures as a table: name, value, target, PASS/MISS, basis."""
    rows = [("figure", "value", "target", "result", "basis")]
    for name, f in figures.items():
        rows.append((name, f"{f['value']:.4f}", f["target"], "PASS" if f["pass"] else "MISS",
                     f["basis"]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for i, r in enumerate(rows):
        print("  ".join(c.ljust(w) for c, w in zip(r[:4], widths, strict=False)) + "  " + r[4])
        if i == 0:
            print("  ".join("-" * w for w in widths) + "  " + "-" * 5)


class RunRecord:
    """What every benchmark's results file shares: when and for how long it ran, the
    machine and the vecdr source measured (with a warning if src/ changed during the
    run), and an atomic write."""

    def __init__(self) -> None:
        self.started_at = datetime.now(UTC).isoformat(timespec="seconds")
        self.wall0 = time.perf_counter()
        self.load0 = os.getloadavg()
        self.machine = machine_info()  # before the run: the vecdr source measured

    def document(self, name: str, argv: list[str] | None, out: Path, config: dict[str, Any],
                 figures: dict[str, Any], cases: dict[str, Any]) -> dict[str, Any]:
        wall = time.perf_counter() - self.wall0
        machine = dict(self.machine)
        after = machine_info()
        if (after.get("git_commit"), after.get("src_uncommitted_changes")) != (
                machine.get("git_commit"), machine.get("src_uncommitted_changes")):
            # vecdr modules are imported lazily: a run that straddles a source change may mix both.
            machine["src_changed_during_run"] = {"git_commit_after": after.get("git_commit"),
                                                 "src_uncommitted_changes_after":
                                                     after.get("src_uncommitted_changes")}
            log("warning: src/ changed while the benchmark ran; see machine.src_changed_during_run")
        return {
            "benchmark": name,
            "started_at": self.started_at,
            "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "wall_seconds": round(wall, 1),
            "command": " ".join([Path(sys.executable).name, *(argv if argv is not None else sys.argv)]),
            "out": str(out),
            "config": config,
            "machine": {**machine, "loadavg_start": self.load0, "loadavg_end": os.getloadavg()},
            "figures": figures,
            "all_pass": all(f["pass"] for f in figures.values()),
            "cases": cases,
        }


def write_results(doc: dict[str, Any], out: Path) -> None:
    """Write a results file whole or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str) + "\n")
    os.replace(tmp, out)


def print_table(doc: dict[str, Any]) -> None:
    print_figures(doc["figures"])
    cfg = doc["config"]
    print(f"\n{cfg['rows']} x {cfg['dim']}, HNSW rows {cfg.get('hnsw_rows_used')}, "
          f"{doc['wall_seconds']:.0f}s wall; all pass: {doc['all_pass']}; results: {doc['out']}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    import faiss  # noqa: F401  (fail early if the extra is missing)

    # Import every vecdr module used up front, so a run measures one version of the source.
    import vecdr  # noqa: F401
    import vecdr.engines.segments  # noqa: F401
    import vecdr.faiss  # noqa: F401
    import vecdr.format.hashing  # noqa: F401
    import vecdr.format.segment  # noqa: F401

    record = RunRecord()
    work = Path(tempfile.mkdtemp(prefix="vecdr-bench-", dir=args.workdir))
    b = Bench(args, work)
    same_device = os.stat(work).st_dev == os.stat(ROOT).st_dev
    log(f"work folder {work} (repositories and baseline files), cases {', '.join(args.cases)}")
    cases: dict[str, Any] = {}
    try:
        t0 = time.perf_counter()
        x = make_vectors(np.random.default_rng(args.seed), args.rows, args.dim)
        log(f"generated {args.rows} x {args.dim} float32 in {time.perf_counter() - t0:.1f}s")
        source = None
        if {"full", "incremental"} & set(args.cases):
            source = faiss.IndexIDMap2(faiss.IndexFlatL2(args.dim))
            source.add_with_ids(x, np.arange(args.rows, dtype=np.int64))
        full = None
        if "full" in args.cases:
            full = case_full(b, x, source)
            cases["full"] = full
        if "incremental" in args.cases:
            cases["incremental"] = case_incremental(b, x, source, full)
        if "read" in args.cases:
            cases["read"] = case_read(b, x, full)
        if full is not None:
            for root in full.pop("_repos"):
                shutil.rmtree(root, ignore_errors=True)
        del source
        if "ivfpq" in args.cases:
            cases["ivfpq"] = case_ivfpq(b, x)
        if "rebuild" in args.cases or "native" in args.cases:
            cases["hnsw"] = case_hnsw(b, x, "rebuild" in args.cases, "native" in args.cases)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    hnsw_rows = cases.get("hnsw", {}).get("rows")
    config = {
        "rows": args.rows, "dim": args.dim, "seed": args.seed, "quick": args.quick,
        "cases": args.cases, "repeats": args.repeats, "hnsw_rows_used": hnsw_rows,
        "hnsw_repeats": args.hnsw_repeats, "ivf_factory": args.ivf_factory,
        "change_fraction": args.change_fraction,
        "data": "numpy default_rng(seed).standard_normal((rows, dim), float32), rows L2-normalized",
        "timing": "wall clock per call (time.perf_counter) after gc.collect() + os.sync(); "
                  "ratios use the best sample of each side, medians reported beside",
        "profiled": b.profiled,
        "workdir": str(work.parent),
        "workdir_same_device_as_checkout": same_device,
    }
    doc = record.document("vecdr core", argv, args.out, config, b.figures, cases)
    write_results(doc, args.out)
    print_table(doc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
