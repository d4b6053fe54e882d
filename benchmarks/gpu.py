#!/usr/bin/env python
"""vecdr GPU benchmark: FAISS restores rebuilt with ``gpu="require"`` against the CPU.

Same run, same machine, same snapshot: each case restores one snapshot into the
same index twice, once on the CPU (``gpu="off"``) and once on the GPU, and reports
the seconds, the speedup, and recall@10 of both restored indexes on the same
held-out queries (the GPU-built index must be within 0.02 of the CPU one).

    python benchmarks/gpu.py                                 # 1M x 128: HNSW32, IVF4096,PQ32
    python benchmarks/gpu.py --dims 768 --append             # add 1M x 768 to the same file
    python benchmarks/gpu.py --rows 50000 --dims 32 --out /tmp/smoke.json   # smoke test

Needs a GPU build of faiss and a GPU (docs/gpu.md). See benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import log, machine_info, recall_at_10, settle  # noqa: E402  (the core benchmark's helpers)

#: case name -> (index factory, search parameter, value) used to measure recall
CASES: dict[str, tuple[str, str, int]] = {
    "hnsw": ("HNSW32", "efSearch", 128),
    "ivfpq": ("IVF4096,PQ32", "nprobe", 32),
}
RECALL_TOLERANCE = 0.02


def make_data(n: int, nq: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` base and ``nq`` query vectors from one mixture of 1,000 Gaussian clusters."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((1000, d), dtype=np.float32)
    out = []
    for count in (n, nq):
        x = np.empty((count, d), np.float32)
        for at in range(0, count, 1 << 18):
            m = min(1 << 18, count - at)
            x[at : at + m] = centers[rng.integers(1000, size=m)]
            x[at : at + m] += 0.5 * rng.standard_normal((m, d), dtype=np.float32)
        out.append(x)
    return out[0], out[1]


def restore_once(repo: Any, path: Path, factory: str, mode: str) -> tuple[float, Any]:
    import vecdr

    settle()
    t0 = time.perf_counter()
    result = vecdr.restore(repo, f"faiss:{path}", factory=factory, gpu=mode, force=True)
    return time.perf_counter() - t0, result


def measure(index_path: Path, param: str, value: int, queries: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    import faiss

    loaded = faiss.read_index(str(index_path))  # owns the index: keep it while the views are used
    index = faiss.downcast_index(loaded)
    mapped = isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2)
    inner = faiss.downcast_index(index.index) if mapped else index
    if param == "efSearch":
        inner.hnsw.efSearch = value
    else:
        faiss.extract_index_ivf(inner).nprobe = value
    found = index.search(queries, 10)[1]
    return {
        "recall_at_10": round(recall_at_10(found, truth), 6),
        "index_class": type(inner).__name__,
        "ntotal": int(index.ntotal),
        "file_bytes": index_path.stat().st_size,
    }


def gpu_info() -> dict[str, Any]:
    from vecdr.backends import faiss_gpu

    found, problem = faiss_gpu.devices()
    info: dict[str, Any] = {
        "problem": problem,
        "devices": [{"index": d.index, "free_bytes": d.free, "total_bytes": d.total} for d in found],
        "cagra": faiss_gpu.has_cagra(),
    }
    try:
        info["nvidia_smi"] = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pass
    return info


def run_dim(args: argparse.Namespace, d: int, work: Path) -> dict[str, Any]:
    import faiss

    import vecdr

    n = args.rows
    log(f"d={d}: generating {n:,} + {args.queries:,} vectors")
    x, queries = make_data(n, args.queries, d, args.seed + d)
    t0 = time.perf_counter()
    truth = faiss.knn(queries, x, 10)[1]
    truth_s = time.perf_counter() - t0
    source = faiss.IndexIDMap2(faiss.IndexFlatL2(d))
    source.add_with_ids(x, np.arange(n, dtype=np.int64))
    repo = vecdr.init(work / f"repo-{d}")
    t0 = time.perf_counter()
    snap = vecdr.snapshot(repo, source, collection=f"bench{d}")
    snapshot_s = time.perf_counter() - t0
    del source, x
    log(f"d={d}: snapshot {snapshot_s:.1f}s, exact neighbours {truth_s:.1f}s")
    out: dict[str, Any] = {"rows": n, "dimension": d, "queries": args.queries, "snapshot": snap.snapshot,
                           "snapshot_seconds": round(snapshot_s, 3), "cases": {}}
    for turn, name in enumerate(args.cases):
        factory, param, value = CASES[name]
        if name == "ivfpq" and args.ivf_factory:
            factory = args.ivf_factory
        sides: dict[str, Any] = {}
        # Alternate which side goes first, so neither always gets the warmer machine.
        order = ("cpu", "gpu") if turn % 2 == 0 else ("gpu", "cpu")
        for side_name in order:
            mode = args.gpu_mode if side_name == "gpu" else "off"
            path = work / f"{name}-{d}-{side_name}.faiss"
            seconds, result = restore_once(repo, path, factory, mode)
            side = {"seconds": round(seconds, 3), "engine_seconds": result.seconds, "phases": result.phases,
                    **measure(path, param, value, queries, truth)}
            path.unlink()
            sides[side_name] = side
            log(f"d={d} {factory} {side_name.upper()}: {seconds:.2f}s, "
                f"recall@10 {side['recall_at_10']:.4f} ({side['index_class']})")
        speedup = sides["cpu"]["seconds"] / sides["gpu"]["seconds"]
        gap = sides["gpu"]["recall_at_10"] - sides["cpu"]["recall_at_10"]
        out["cases"][name] = {
            "factory": factory,
            "search": {param: value},
            "order": list(order),
            **sides,
            "speedup": round(speedup, 3),
            "recall_gap": round(gap, 6),
            "recall_within_tolerance": bool(gap >= -RECALL_TOLERANCE),
        }
        log(f"d={d} {factory}: speedup {speedup:.2f}x, recall gap {gap:+.4f}")
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--dims", default="128", help="comma-separated dimensions, run in turn")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--cases", default="hnsw,ivfpq", help=f"comma-separated: {', '.join(CASES)}")
    p.add_argument("--ivf-factory", default=None, help=f"instead of {CASES['ivfpq'][0]}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=HERE / "results" / "gpu.json")
    p.add_argument("--append", action="store_true", help="keep the dimensions already in --out")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--gpu-mode", default="require", help="gpu= of the GPU side (off: a CPU-only smoke test)")
    args = p.parse_args(argv)
    args.cases = [c for c in args.cases.split(",") if c]
    unknown = set(args.cases) - set(CASES)
    if unknown:
        p.error(f"unknown cases {sorted(unknown)}")
    return args


def write(doc: dict[str, Any], out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, out)


def main(argv: list[str] | None = None) -> int:
    import faiss

    args = parse_args(argv)
    previous = json.loads(args.out.read_text()) if args.append and args.out.exists() else {}
    doc: dict[str, Any] = {
        "benchmark": "gpu",
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "config": {"rows": args.rows, "queries": args.queries, "seed": args.seed,
                   "data": "mixture of 1,000 Gaussian clusters (unit normal centres, sigma 0.5), float32",
                   "cpu_side": "vecdr.restore(..., gpu='off')",
                   "gpu_side": f"vecdr.restore(..., gpu={args.gpu_mode!r})",
                   "timing": "wall seconds around vecdr.restore into a faiss:PATH target, one sample per side",
                   "recall_tolerance": RECALL_TOLERANCE},
        "machine": {**machine_info(), "faiss_omp_threads": faiss.omp_get_max_threads(), "gpu": gpu_info()},
        "results": previous.get("results", {}),
    }
    if doc["machine"]["gpu"]["problem"] and args.gpu_mode != "off":
        log(f"no GPU: {doc['machine']['gpu']['problem']}")
        return 1
    with tempfile.TemporaryDirectory(dir=args.workdir, prefix="vecdr-gpu-bench-") as tmp:
        for d in (int(v) for v in args.dims.split(",")):
            key = f"{args.rows}x{d}"
            measured = run_dim(args, d, Path(tmp))
            if key in doc["results"]:  # --append: keep the cases this run did not measure
                measured["cases"] = {**doc["results"][key]["cases"], **measured["cases"]}
            doc["results"][key] = measured
            write(doc, args.out)  # after every dimension: a cut-off run keeps what it measured
    doc["all_within_recall_tolerance"] = all(
        case["recall_within_tolerance"] for res in doc["results"].values() for case in res["cases"].values())
    write(doc, args.out)
    log(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
