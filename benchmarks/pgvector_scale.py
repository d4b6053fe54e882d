#!/usr/bin/env python
"""vecdr pgvector memory at scale: peak RSS of full and diff snapshots as the table grows.

One real PostgreSQL (pgserver). For each size N, a table ``items (id bigint primary
key, embedding vector(d), tag int)`` is filled in SQL, then each of these runs in a
fresh child process whose ``VmHWM`` is its peak RSS:

- a full snapshot;
- a diff snapshot after about 1% of the rows changed (updates, deletes, inserts),
  with the default id-range passes;
- the same diff in one pass (``diff_pass_rows`` above N), the memory a diff would
  take if it held the previous snapshot's whole row index: the baseline.

The figures are the largest peak RSS over every N of the full and the diff
snapshots (target: 512 MiB whatever N), and, beside them, how much the one-pass
diff grows from the smallest to the largest N against the id-range diff.

    .venv/bin/python benchmarks/pgvector_scale.py                 # 1M, 3M, 10M x 16, about 15 min on 2 cores
    .venv/bin/python benchmarks/pgvector_scale.py --quick         # 20k, 60k x 8 with 10k-row passes, seconds
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from pgvector import RSS_LIMIT_MIB, run_worker  # noqa: E402
from run import RunRecord, log, print_figures, record_figure, write_results  # noqa: E402

TARGETS: dict[str, tuple[str, float, str]] = {
    "pg_full_snapshot_peak_rss_mib": ("<=", RSS_LIMIT_MIB, "largest peak RSS of a full snapshot over every N, MiB"),
    "pg_diff_snapshot_peak_rss_mib": (
        "<=",
        RSS_LIMIT_MIB,
        "largest peak RSS of a diff snapshot (1% changed, id-range passes) over every N, MiB",
    ),
}


def fill(pg: Any, n: int, d: int) -> float:
    """A fresh table of ``n`` rows, ids 0..n-1, random vectors, made by the server itself."""
    t0 = time.perf_counter()
    with pg.connect() as conn:
        conn.execute("DROP TABLE IF EXISTS items")
        conn.execute(f"CREATE TABLE items (id bigint PRIMARY KEY, embedding vector({d}) NOT NULL, tag int)")
        conn.execute(
            f"INSERT INTO items SELECT g, ARRAY(SELECT random() FROM generate_series(1, {d}) WHERE g >= 0)"
            f"::vector({d}), g % 7 FROM generate_series(0, {n - 1}) g"
        )
        conn.execute("VACUUM (ANALYZE) items")
    return time.perf_counter() - t0


def change(pg: Any, n: int, d: int, round_: int) -> None:
    """About 1% of the rows: a third updated, a third deleted, a third inserted."""
    step = 300
    with pg.connect() as conn:
        conn.execute(f"UPDATE items SET tag = tag + 100 WHERE id % {step} = {3 * round_}")
        conn.execute(f"DELETE FROM items WHERE id % {step} = {3 * round_ + 1}")
        fresh = n * (round_ + 1) * 10
        conn.execute(
            f"INSERT INTO items SELECT g, ARRAY(SELECT random() FROM generate_series(1, {d}) WHERE g >= 0)"
            f"::vector({d}), 0 FROM generate_series({fresh}, {fresh + n // step - 1}) g"
        )


def measure(pg: Any, work: Path, n: int, d: int, pass_rows: int | None) -> dict[str, Any]:
    loaded = fill(pg, n, d)
    log(f"{n} x {d}: table filled in {loaded:.1f}s")
    repo = work / f"repo-{n}"
    import vecdr

    vecdr.init(repo)
    uri = pg.uri("items")
    options = [str(pass_rows)] if pass_rows else []
    out: dict[str, Any] = {"rows": n, "fill_seconds": round(loaded, 3)}
    for name, round_, opts in (
        ("full", None, []),
        ("diff", 0, options),
        ("diff_one_pass", 1, [str(4 * n)]),
    ):
        if round_ is not None:
            change(pg, n, d, round_)
        res = run_worker("snapshot", repo, uri, None, *opts)
        expected = "full" if round_ is None else "diff"
        if res["mode"] != expected:
            raise RuntimeError(f"{name}: a {res['mode']} snapshot, expected {expected}")
        out[name] = {k: res[k] for k in ("seconds", "peak_rss_mib", "rows", "bytes_written", "mode")}
        log(f"{n}: {name} {res['seconds']:.1f}s, peak RSS {res['peak_rss_mib']} MiB")
    shutil.rmtree(repo)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, nargs="+", default=None, help="table sizes (default 1M 3M 10M)")
    p.add_argument("--dim", type=int, default=None, help="dimension (default 16; --quick 8)")
    p.add_argument("--quick", action="store_true", help="20k and 60k rows with 10k-row passes: a smoke test")
    p.add_argument("--out", default=None, help="results JSON (default benchmarks/results/pgvector-scale.json)")
    args = p.parse_args(argv)
    sizes = args.rows or ([20_000, 60_000] if args.quick else [1_000_000, 3_000_000, 10_000_000])
    dim = args.dim or (8 if args.quick else 16)
    pass_rows = 10_000 if args.quick else None  # None: vecdr's default
    out = Path(args.out or HERE / "results" / ("quick-pgvector-scale.json" if args.quick else "pgvector-scale.json"))

    from vecdr.engines.snapshot import DIFF_PASS_ROWS
    from vecdr.testing.postgres import start

    record = RunRecord()
    work = Path(tempfile.mkdtemp(prefix="vecdr-pgscale-"))
    pgdir = tempfile.mkdtemp(prefix="vs-pg-", dir="/tmp")  # short: the server's socket lives in it
    pg = start(pgdir)
    try:
        runs = [measure(pg, work, n, dim, pass_rows) for n in sorted(sizes)]
    finally:
        pg.stop()
        shutil.rmtree(work, ignore_errors=True)

    figures: dict[str, Any] = {}
    for kind in ("full", "diff"):
        peaks = {r["rows"]: r[kind]["peak_rss_mib"] for r in runs}
        record_figure(figures, TARGETS, f"pg_{kind}_snapshot_peak_rss_mib", max(peaks.values()),
                      f"VmHWM per table size: {peaks} MiB")
    small, large = runs[0], runs[-1]
    figures["pg_diff_snapshot_peak_rss_mib"]["growth_mib"] = round(
        large["diff"]["peak_rss_mib"] - small["diff"]["peak_rss_mib"], 1)
    figures["pg_diff_snapshot_peak_rss_mib"]["one_pass_growth_mib"] = round(
        large["diff_one_pass"]["peak_rss_mib"] - small["diff_one_pass"]["peak_rss_mib"], 1)
    config = {
        "rows": sorted(sizes),
        "dim": dim,
        "diff_pass_rows": pass_rows or DIFF_PASS_ROWS,
        "change": "per diff: ids with id % 300 = k updated (an attribute), = k+1 deleted, n/300 new ids inserted",
        "peak_rss": "VmHWM of a fresh child process running vecdr.snapshot (the client; the server's memory is "
        "PostgreSQL's)",
    }
    doc = record.document("vecdr pgvector scale", argv, out, config, figures, {"runs": runs})
    write_results(doc, out)
    print_figures(figures)
    for r in runs:
        print(f"{r['rows']:>10,} rows: full {r['full']['peak_rss_mib']} MiB, diff {r['diff']['peak_rss_mib']} MiB, "
              f"one-pass diff {r['diff_one_pass']['peak_rss_mib']} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
